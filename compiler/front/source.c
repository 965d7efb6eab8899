/* source.c - reading whole source files safely; see source.h. */
#include "source.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void report(DiagEngine *d, SrcSpan from, const char *path, const char *why)
{
    diag_error(d, from, "cannot read '%s': %s", path, why);
}

bool source_read(Arena *a, DiagEngine *d, const char *path, SrcSpan from, uint32_t *file_id)
{
    return source_read_as(a, d, path, path, from, file_id);
}

bool source_read_as(Arena *a, DiagEngine *d, const char *path, const char *shown, SrcSpan from,
                    uint32_t *file_id)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        report(d, from, path, strerror(errno));
        return false;
    }
    if (S_ISDIR(st.st_mode)) {
        report(d, from, path, "is a directory");
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        report(d, from, path, "not a regular file");
        return false;
    }
    if (st.st_size > SOURCE_MAX_BYTES) {
        report(d, from, path, "file is larger than 64 MiB");
        return false;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        report(d, from, path, strerror(errno));
        return false;
    }
    size_t cap = (size_t)st.st_size;
    char *text = arena_alloc(a, cap + 1);
    size_t n = fread(text, 1, cap, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        report(d, from, path, "read error");
        return false;
    }
    text[n] = '\0';
    *file_id = diag_add_file(d, arena_strdup(a, shown), text, (uint32_t)n);
    return true;
}

uint32_t source_add_string(Arena *a, DiagEngine *d, const char *path, const char *text, uint32_t len)
{
    char *copy = arena_alloc(a, (size_t)len + 1);
    memcpy(copy, text, len);
    return diag_add_file(d, arena_strdup(a, path), copy, len);
}
