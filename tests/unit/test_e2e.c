/* test_e2e.c - end to end against PyTorch: each example is compiled to a model.so with
 * tfxc, run with tfxrun on seeded random weights that tests/reference/gen_ref.py wrote
 * as safetensors under the checkpoint names, and compared with the output of the same
 * model built from PyTorch's own modules (nn.LayerNorm, F.gelu, nn.TransformerEncoder).
 *
 * Tolerances (f32): logits max abs error <= 1e-3 (GPT-2's 50257-way logits sum 768
 * products per element after 12 layers); normalised activations (outputs of a final
 * LayerNorm) <= 1e-4. Measured errors are around 1e-6; the bounds leave room for other
 * summation orders in later optimisations.
 *
 * Needs /usr/bin/python3 with python3-torch; skips with a message where it is missing,
 * and fails instead when CI is set, so CI never skips. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tfx_test.h"

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return st;
}

static void need_torch(void)
{
    if (sh("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") == 0)
        return;
    if (getenv("CI"))
        cr_assert_fail("PyTorch (python3-torch) is required in CI; scripts/install-deps.sh installs it");
    cr_skip_test("PyTorch not found: /usr/bin/python3 -c 'import torch' failed (apt-get install python3-torch)");
}

/* Reads a float32 .npy into a malloc'd array; returns the element count. */
static size_t read_npy(const char *path, float **out)
{
    size_t len;
    char *b = tt_slurp(path, &len);
    cr_assert_not_null(b, "cannot read %s", path);
    cr_assert(len > 10 && memcmp(b, "\x93NUMPY", 6) == 0, "%s is not .npy", path);
    size_t data = 10 + ((unsigned char)b[8] | (size_t)(unsigned char)b[9] << 8);
    cr_assert(strstr(b + 10, "'<f4'") != NULL, "%s is not float32", path);
    size_t n = (len - data) / 4;
    *out = malloc(n * 4 + 4);
    memcpy(*out, b + data, n * 4);
    free(b);
    return n;
}

static double max_abs_diff(const char *a, const char *b)
{
    float *x, *y;
    size_t n = read_npy(a, &x), m = read_npy(b, &y);
    cr_assert_eq(n, m, "%s has %zu values, %s has %zu", a, n, b, m);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] > y[i] ? x[i] - y[i] : y[i] - x[i];
        if (!(d <= worst))  /* also catches NaN */
            worst = d != d ? 1e30 : d;
    }
    free(x);
    free(y);
    return worst;
}

typedef struct Case {
    const char *name;      /* directory under build/e2e */
    const char *model;     /* gen_ref.py model and examples/NAME.tfx */
    const char *defines;   /* -D flags for both tfxc and gen_ref.py */
    const char *Ts;        /* comma-separated sequence lengths */
    const char *opt;       /* tfxc optimisation flag */
    double      tol;
} Case;

static void run_case(const Case *c)
{
    need_torch();
    const char *tfxc = getenv("TFXC"), *tfxrun = getenv("TFXRUN");
    cr_assert(tfxc && tfxrun, "TFXC and TFXRUN must be set (run through ctest)");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/e2e/%s", TFX_BINARY_DIR, c->name);
    cr_assert_eq(sh("/usr/bin/python3 tests/reference/gen_ref.py %s %s --T %s %s >/dev/null",
                    c->model, dir, c->Ts, c->defines), 0, "gen_ref.py failed for %s", c->name);
    cr_assert_eq(sh("%s examples/%s.tfx %s %s -o %s/model.so", tfxc, c->model, c->defines, c->opt, dir), 0,
                 "tfxc failed for %s", c->name);
    char ts[128];
    snprintf(ts, sizeof ts, "%s", c->Ts);
    for (char *t = strtok(ts, ","); t; t = strtok(NULL, ",")) {
        char input[700], got[600], want[600];
        if (strcmp(c->model, "gpt2") == 0)
            snprintf(input, sizeof input, "--tokens-file %s/tokens_%s.txt", dir, t);
        else
            snprintf(input, sizeof input, "--input x=%s/x_%s.npy", dir, t);
        snprintf(got, sizeof got, "%s/got_%s.npy", dir, t);
        snprintf(want, sizeof want, "%s/out_%s.npy", dir, t);
        cr_assert_eq(sh("%s %s/model.so --weights %s/weights.safetensors %s --save %s >/dev/null",
                        tfxrun, dir, dir, input, got), 0, "tfxrun failed for %s at T = %s", c->name, t);
        double err = max_abs_diff(got, want);
        cr_log_info("%s T=%s: max abs error %.3g (tolerance %.0e)", c->name, t, err, c->tol);
        cr_expect_leq(err, c->tol, "%s at T = %s: max abs error %g > %g", c->name, t, err, c->tol);
    }
}

Test(e2e, gpt2_small_matches_pytorch, .timeout = 1500)
{
    Case c = { "gpt2_small", "gpt2", "", "1,7,64,128", "-O2", 1e-3 };
    run_case(&c);
}

Test(e2e, gpt2_tiny_at_O0_matches_pytorch)
{
    Case c = { "gpt2_tiny_O0", "gpt2", "-Dlayers=2 -Dvocab=64 -Dctx=32 -Dd=64 -Dheads=4", "1,7,32", "-O0", 1e-3 };
    run_case(&c);
}

Test(e2e, encoder_post_ln_matches_nn_transformer_encoder)
{
    Case c = { "encoder_post", "encoder", "-Dpost=1", "1,5,33", "-O2", 1e-4 };
    run_case(&c);
}

Test(e2e, encoder_pre_ln_matches_nn_transformer_encoder)
{
    /* norm_first=True: the output is the raw residual stream, of size ~1 here */
    Case c = { "encoder_pre", "encoder", "-Dpost=0", "1,5,33", "-O2", 1e-4 };
    run_case(&c);
}

Test(e2e, looped_matches_pytorch)
{
    Case c = { "looped", "looped", "", "1,9,40", "-O2", 1e-4 };
    run_case(&c);
}

Test(e2e, looped_at_O0_matches_pytorch)
{
    Case c = { "looped_O0", "looped", "-Dsteps=3", "1,9", "-O0", 1e-4 };
    run_case(&c);
}

/* The demo model (models/demo.safetensors, trained by scripts/train_demo.py): tfxrun's
 * greedy continuation must be token for token the one PyTorch computes. */
Test(e2e, demo_model_greedy_tokens_match_pytorch)
{
    need_torch();
    const char *tfxc = getenv("TFXC"), *tfxrun = getenv("TFXRUN");
    cr_assert(tfxc && tfxrun, "TFXC and TFXRUN must be set (run through ctest)");
    const char *hp = "-Dvocab=256 -Dctx=128 -Dd=128 -Dheads=4 -Dlayers=4";
    const char *prompt = "The quick brown fox";
    char dir[512], ids[256] = "";
    snprintf(dir, sizeof dir, "%s/e2e/demo", TFX_BINARY_DIR);
    cr_assert_eq(sh("mkdir -p %s && %s examples/gpt2.tfx %s -o %s/demo.so", dir, tfxc, hp, dir), 0);
    for (const char *p = prompt; *p; p++)
        snprintf(ids + strlen(ids), sizeof ids - strlen(ids), "%d ", (unsigned char)*p);
    cr_assert_eq(sh("%s %s/demo.so --weights models/demo.safetensors --tokens \"%s\" --generate 40 > %s/tfx.txt",
                    tfxrun, dir, ids, dir), 0);
    cr_assert_eq(sh("/usr/bin/python3 tests/reference/greedy.py models/demo.safetensors \"%s\" 40 > %s/torch.txt",
                    prompt, dir), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/tfx.txt", dir);
    char *got = tt_slurp(path, NULL);
    snprintf(path, sizeof path, "%s/torch.txt", dir);
    char *want = tt_slurp(path, NULL);
    cr_assert(got && want);
    /* tfxrun prints " 1 2 3\n", greedy.py "1 2 3\n" */
    cr_expect_str_eq(got + (got[0] == ' '), want);
    cr_expect_gt(strlen(want), 40, "40 tokens expected, got '%s'", want);
    free(got);
    free(want);
}
