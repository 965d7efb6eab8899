/* test_robust.c - no input crashes, hangs or trips a sanitizer: every proper prefix of
 * every example and stdlib module, binary garbage, NUL bytes, invalid UTF-8, an empty
 * file, 100,000 nested parentheses and a 10 MB file. Each must end in diagnostics (or
 * success, for a prefix that lacks only trailing blanks and comments). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "tfx_test.h"

/* True if text holds only blanks, newlines and comments. */
static bool only_trivia(const char *p)
{
    while (*p) {
        if (*p == '#') {
            while (*p && *p != '\n')
                p++;
        } else if (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') {
            p++;
        } else {
            return false;
        }
    }
    return true;
}

static void compile_text(const char *name, const char *text, TfxEmit emit, CompileResult *r)
{
    CompileOptions o;
    compile_options_init(&o);
    o.input = name;
    o.source = text;
    o.emit = emit;
    o.stdlib_dir = "stdlib";
    tfx_compile(&o, r);
}

static void check_prefixes(const char *rel)
{
    char *path = tt_src_path(rel);
    size_t len;
    char *text = tt_slurp(path, &len);
    cr_assert_not_null(text, "cannot read %s", path);
    char *prefix = malloc(len + 1);
    for (size_t n = 0; n < len; n++) {
        memcpy(prefix, text, n);
        prefix[n] = '\0';
        CompileResult r;
        compile_text(rel, prefix, TFX_EMIT_IR, &r);
        if (r.status == 0)
            cr_assert(only_trivia(text + n), "%s: prefix of %zu bytes compiled without error", rel, n);
        else
            cr_assert(r.nerrors > 0 && r.diags.len > 0, "%s: prefix of %zu bytes failed silently", rel, n);
        cr_assert_neq(r.status, 3, "%s: internal error on a prefix of %zu bytes:\n%s", rel, n, buf_str(&r.diags));
        compile_result_dispose(&r);
    }
    free(prefix);
    free(text);
    free(path);
}

Test(robust, every_prefix_of_gpt2) { check_prefixes("examples/gpt2.tfx"); }
Test(robust, every_prefix_of_encoder) { check_prefixes("examples/encoder.tfx"); }
Test(robust, every_prefix_of_looped) { check_prefixes("examples/looped.tfx"); }

/* stdlib modules hold no model: prefixes must end in an error ("no model" at least). */
static void check_module_prefixes(const char *rel)
{
    char *path = tt_src_path(rel);
    size_t len;
    char *text = tt_slurp(path, &len);
    cr_assert_not_null(text);
    char *prefix = malloc(len + 1);
    for (size_t n = 0; n <= len; n++) {
        memcpy(prefix, text, n);
        prefix[n] = '\0';
        CompileResult r;
        compile_text(rel, prefix, TFX_EMIT_IR, &r);
        cr_assert_eq(r.status, 1, "%s: prefix of %zu bytes: status %d", rel, n, r.status);
        compile_result_dispose(&r);
    }
    free(prefix);
    free(text);
    free(path);
}

Test(robust, every_prefix_of_std_nn) { check_module_prefixes("stdlib/nn.tfx"); }
Test(robust, every_prefix_of_std_attention) { check_module_prefixes("stdlib/attention.tfx"); }

Test(robust, binary_garbage)
{
    char text[4096];
    unsigned x = 12345;
    for (size_t i = 0; i + 1 < sizeof text; i++) {
        x = x * 1103515245u + 12345u;
        text[i] = (char)((x >> 16) & 0xff);
        if (text[i] == 0)
            text[i] = 1;
    }
    text[sizeof text - 1] = '\0';
    CompileResult r;
    compile_text("garbage.tfx", text, TFX_EMIT_IR, &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(buf_str(&r.diags), "garbage.tfx:1:") != NULL, "%.300s", buf_str(&r.diags));
    compile_result_dispose(&r);
}

Test(robust, empty_file)
{
    CompileResult r;
    compile_text("empty.tfx", "", TFX_EMIT_IR, &r);
    cr_expect_eq(r.status, 1);
    cr_expect_str_eq(buf_str(&r.diags),
                     "tfxc: error: empty.tfx: no model to compile (a file needs one 'model NAME(...) { ... }')\n");
    compile_result_dispose(&r);
}

Test(robust, hundred_thousand_nested_parentheses)
{
    size_t n = 100000;
    const char *head = "model m() {\n input x: f32[T]\n output y = ";
    size_t hl = strlen(head);
    char *text = malloc(hl + 2 * n + 8);
    memcpy(text, head, hl);
    memset(text + hl, '(', n);
    text[hl + n] = 'x';
    memset(text + hl + n + 1, ')', n);
    strcpy(text + hl + 2 * n + 1, "\n}\n");
    CompileResult r;
    compile_text("deep.tfx", text, TFX_EMIT_IR, &r);
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(buf_str(&r.diags), "nesting deeper than 256 levels") != NULL, "%.300s", buf_str(&r.diags));
    compile_result_dispose(&r);
    free(text);
}

Test(robust, ten_megabyte_file)
{
    const char *head = "model m() {\n input x: f32[T]\n";
    const char *line = " x = x + x * 2.0\n";
    size_t hl = strlen(head), ll = strlen(line), nlines = 10 * 1024 * 1024 / ll;
    char *text = malloc(hl + nlines * ll + 32);
    char *p = text;
    memcpy(p, head, hl);
    p += hl;
    for (size_t i = 0; i < nlines; i++, p += ll)
        memcpy(p, line, ll);
    strcpy(p, " output y = x\n}\n");
    CompileResult r;
    compile_text("big.tfx", text, TFX_EMIT_CHECK, &r);
    cr_expect_eq(r.status, 0, "%.300s", buf_str(&r.diags));
    compile_result_dispose(&r);
    free(text);
}
