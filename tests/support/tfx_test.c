/* tfx_test.c - test helpers; see tfx_test.h. */
#include "tfx_test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>

char *tt_src_path(const char *rel)
{
    size_t n = strlen(TFX_SOURCE_DIR) + strlen(rel) + 2;
    char *p = malloc(n);
    cr_assert_not_null(p);
    snprintf(p, n, "%s/%s", TFX_SOURCE_DIR, rel);
    return p;
}

char *tt_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static void write_file_or_fail(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

void tt_golden_check(const char *actual, const char *path)
{
    if (getenv("TFX_UPDATE_GOLDEN")) {
        write_file_or_fail(path, actual);
        return;
    }
    char *expected = tt_slurp(path, NULL);
    cr_assert_not_null(expected, "%s: missing (run the tests once with TFX_UPDATE_GOLDEN=1)", path);
    const char *a = actual, *e = expected, *a_bol = a, *e_bol = e;
    size_t line = 1;
    for (; *a && *a == *e; a++, e++)
        if (*a == '\n') {
            line++;
            a_bol = a + 1;
            e_bol = e + 1;
        }
    int same = *a == *e;
    if (!same)
        cr_log_error("%s:%zu: want: %.*s\n  got:  %.*s", path, line, (int)strcspn(e_bol, "\n"),
                     e_bol, (int)strcspn(a_bol, "\n"), a_bol);
    free(expected);
    cr_assert(same, "golden mismatch in %s", path);
}

void tt_compile_string(const char *name, const char *text, TfxEmit emit, CompileResult *r)
{
    CompileOptions o;
    compile_options_init(&o);
    o.input = name;
    o.source = text;
    o.emit = emit;
    o.stdlib_dir = TFX_SOURCE_DIR "/stdlib";
    tfx_compile(&o, r);
}

void tt_compile_file(const char *relpath, TfxEmit emit, const char *dump_after, CompileResult *r)
{
    CompileOptions o;
    compile_options_init(&o);
    o.input = relpath;
    o.emit = emit;
    o.dump_after = dump_after;
    o.stdlib_dir = "stdlib";
    tfx_compile(&o, r);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t tt_count_dir(const char *reldir, const char *suffix)
{
    char *dir = tt_src_path(reldir);
    DIR *d = opendir(dir);
    free(dir);
    size_t n = 0, sl = strlen(suffix);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        n += l > sl && strcmp(de->d_name + l - sl, suffix) == 0;
    }
    if (d)
        closedir(d);
    return n;
}

size_t tt_list_dir(const char *reldir, const char *suffix, char ***names)
{
    char *dir = tt_src_path(reldir);
    DIR *d = opendir(dir);
    free(dir);
    size_t n = 0, cap = 256;
    char **tmp = malloc(sizeof(char *) * cap);
    size_t sl = strlen(suffix);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l <= sl || strcmp(de->d_name + l - sl, suffix) != 0)
            continue;
        if (n == cap)
            tmp = realloc(tmp, sizeof(char *) * (cap *= 2));
        tmp[n++] = strdup(de->d_name);
    }
    if (d)
        closedir(d);
    qsort(tmp, n, sizeof(char *), cmp_str);
    *names = cr_malloc(sizeof(char *) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        (*names)[i] = cr_malloc(strlen(tmp[i]) + 1);
        strcpy((*names)[i], tmp[i]);
        free(tmp[i]);
    }
    free(tmp);
    return n;
}
