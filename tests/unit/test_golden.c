/* test_golden.c - golden files: the AST and IR of every example, the IR of a model per
 * standard-library module (tests/golden/ir/NAME.tfx), --dump-after=all of the looped
 * example, and the exact diagnostics of every bad input in tests/golden/errors/.
 * Regenerate with TFX_UPDATE_GOLDEN=1 and review the change in `git diff`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "tfx_test.h"

static char *with_ext(const char *dir, const char *name, const char *ext)
{
    size_t n = strlen(dir) + strlen(name) + strlen(ext) + 2;
    char *p = malloc(n);
    const char *dot = strrchr(name, '.');
    snprintf(p, n, "%s/%.*s%s", dir, (int)(dot - name), name, ext);
    return p;
}

static char *joined(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static void check_one(const char *src_rel, TfxEmit emit, const char *dump_after, const char *golden_rel)
{
    CompileResult r;
    tt_compile_file(src_rel, emit, dump_after, &r);
    cr_expect_eq(r.status, 0, "%s failed:\n%s", src_rel, buf_str(&r.diags));
    if (r.status == 0)
        tt_golden_check(buf_str(&r.out), golden_rel);
    compile_result_dispose(&r);
}

ParameterizedTestParameters(golden, example_ir)
{
    char **names;
    size_t n = tt_list_dir("examples", ".tfx", &names);
    return cr_make_param_array(char *, names, n);
}

ParameterizedTest(char **name, golden, example_ir)
{
    char *src = joined("examples", *name);
    char *ir = with_ext("tests/golden/ir", *name, ".ir");
    char *ast = with_ext("tests/golden/ast", *name, ".ast");
    check_one(src, TFX_EMIT_IR, NULL, ir);
    check_one(src, TFX_EMIT_AST, NULL, ast);
    free(src);
    free(ir);
    free(ast);
}

ParameterizedTestParameters(golden, module_ir)
{
    char **names;
    size_t n = tt_list_dir("tests/golden/ir", ".tfx", &names);
    return cr_make_param_array(char *, names, n);
}

ParameterizedTest(char **name, golden, module_ir)
{
    char *src = joined("tests/golden/ir", *name);
    char *ir = with_ext("tests/golden/ir", *name, ".ir");
    check_one(src, TFX_EMIT_IR, NULL, ir);
    free(src);
    free(ir);
}

Test(golden, looped_dump_after_all)
{
    check_one("examples/looped.tfx", TFX_EMIT_CHECK, "all", "tests/golden/passes/looped.all");
}

ParameterizedTestParameters(golden, errors)
{
    char **names;
    size_t n = tt_list_dir("tests/golden/errors", ".tfx", &names);
    return cr_make_param_array(char *, names, n);
}

ParameterizedTest(char **name, golden, errors)
{
    char *src = joined("tests/golden/errors", *name);
    char *err = with_ext("tests/golden/errors", *name, ".err");
    CompileResult r;
    tt_compile_file(src, TFX_EMIT_IR, NULL, &r);
    cr_expect_eq(r.status, 1, "%s: expected exit status 1, got %d", src, r.status);
    cr_expect_gt(r.nerrors, 0, "%s: expected an error", src);
    tt_golden_check(buf_str(&r.diags), err);
    compile_result_dispose(&r);
    free(src);
    free(err);
}

Test(golden, error_corpus_is_large)
{
    size_t n = tt_count_dir("tests/golden/errors", ".tfx");
    cr_assert_geq(n, 40, "the bad-input corpus should hold at least 40 cases, has %zu", n);
}
