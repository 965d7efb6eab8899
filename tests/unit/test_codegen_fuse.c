/* test_codegen_fuse.c - elementwise fusion (compiler/codegen/cg_fuse.c, -O1..3) against the
 * plain -O0 lowering, on chains that mix broadcasting (a [d] weight, a [T, 1] column, a
 * [3, 1, d] tensor), i32 arithmetic and casts, `where`, every activation, and values with
 * two uses (which must stay stored). Also: 1 and 2 threads give the same bits, a group
 * reading more leaves than an outlined loop can carry is split and still right, the
 * absorbed values take no workspace, and a model that reaches the pool for large T and
 * runs directly for small T agrees on both sides of that threshold.
 *
 * Tolerance: -O2 computes exp, tanh and erf with our own polynomials (cg_gpu_math.c,
 * within 4 ulp of the correctly rounded value, erf within 1.5e-7 absolute), and keeps
 * fused intermediates in registers, so results differ from -O0's libm by a few ulp of the
 * values involved, amplified at most by the chain's condition number. The outputs here
 * stay below 20 in magnitude; |O2 - O0| <= 2e-5 * (1 + |O0|) is ~10x above the largest
 * difference seen and far below any wrong-operation error (>= 1e-2). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tfx.h"
#include "tfx_abi.h"
#include "tfx_test.h"
#include "tt_model.h"

#define TOL 2e-5

static const char *chain_src =
    "model m(d = 37) {\n"
    "    input x: f32[T, d]\n"
    "    input s: f32[T, 1]\n"
    "    input k: i32[T, d]\n"
    "    param w: f32[d]\n"
    "    param c: f32[3, 1, d]\n"
    "    a = x * w + s\n"
    "    b = gelu_tanh(a) + silu(x) - exp(-abs(x)) / (1.0 + a * a)\n"
    "    e = where(x > s, tanh(b), gelu(b))\n"
    "    y = b * 2.0 + e + to_f32(k % 3 - k / 5) * sigmoid(x)\n"
    "    output y1 = y\n"
    "    v = log(abs(x) + 0.5) + sqrt(abs(x)) + relu(-x) * x ** 2.0\n"
    "    output z = c * y + elu(x) + max(x, s) - min(a, 0.5) + rsqrt(abs(x) + 1.0) + v\n"
    "    output u = a + 1.0\n"
    "}\n";

enum { D = 37 };

/* Inputs of the chain model for T rows; x holds some extreme values (large magnitudes,
 * zeros, tiny numbers) so the exp/tanh/erf ranges are all reached. */
typedef struct ChainIn {
    float  *x, *s;
    int32_t *k;
} ChainIn;

static void chain_inputs(ChainIn *in, int64_t T)
{
    in->x = malloc((size_t)(T * D) * sizeof *in->x);
    in->s = malloc((size_t)T * sizeof *in->s);
    in->k = malloc((size_t)(T * D) * sizeof *in->k);
    cr_assert(in->x && in->s && in->k);
    static const float special[] = { 0.0f, -0.0f, 1e-30f, -1e-30f, 9.0f, -9.0f, 40.0f, -40.0f,
                                     90.0f, -90.0f, 0.39f, -0.41f, 0.5f, -0.5f };
    for (int64_t i = 0; i < T * D; i++) {
        size_t ns = sizeof special / sizeof special[0];
        in->x[i] = i % 5 == 0 ? special[(size_t)(i / 5) % ns] : tt_frand(3.0f);
        in->k[i] = (int32_t)(tt_frand(50.0f));
    }
    for (int64_t i = 0; i < T; i++)
        in->s[i] = tt_frand(1.0f);
}

static void chain_free(ChainIn *in)
{
    free(in->x);
    free(in->s);
    free(in->k);
}

/* Runs the chain model; out[0] = y1 [T, d], out[1] = z [3, T, d], out[2] = u [T, d]. */
static void chain_run(TtModel *mo, const ChainIn *in, int64_t T, float **out)
{
    const void *ins[3] = { in->x, in->s, in->k };
    int64_t shapes[3][6] = { { T, D }, { T, 1 }, { T, D } };
    void *outs[3];
    size_t n[3] = { (size_t)(T * D), (size_t)(3 * T * D), (size_t)(T * D) };
    for (int i = 0; i < 3; i++) {
        out[i] = calloc(n[i], sizeof **out);
        cr_assert_not_null(out[i]);
        outs[i] = out[i];
    }
    cr_assert_eq(tt_model_run(mo, ins, shapes, outs), TFX_OK, "T = %lld", (long long)T);
}

static double max_rel_diff(const float *a, const float *b, size_t n, size_t *at)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= worst)) {   // NaN counts as the worst
            worst = isnan(d) ? INFINITY : d;
            *at = i;
        }
    }
    return worst;
}

Test(codegen_fuse, chain_matches_O0_and_threads_agree)
{
    TtModel o0, o2a, o2b;
    tt_model_build(&o0, chain_src, 0);
    tt_model_open(&o0, 3, 1.0f, 1);
    tt_model_build(&o2a, chain_src, 2);
    tt_model_open(&o2a, 3, 1.0f, 1);
    tt_model_build(&o2b, chain_src, 2);
    tt_model_open(&o2b, 3, 1.0f, 2);
    const int64_t Ts[] = { 1, 2, 7, 64, 301, 700 };   // 700 * 37 > CG_PAR_MIN_WORK: pooled
    for (size_t c = 0; c < sizeof Ts / sizeof Ts[0]; c++) {
        int64_t T = Ts[c];
        tt_seed(100 + (uint64_t)T);
        ChainIn in;
        chain_inputs(&in, T);
        float *r0[3], *ra[3], *rb[3];
        chain_run(&o0, &in, T, r0);
        chain_run(&o2a, &in, T, ra);
        chain_run(&o2b, &in, T, rb);
        size_t n[3] = { (size_t)(T * D), (size_t)(3 * T * D), (size_t)(T * D) };
        for (int i = 0; i < 3; i++) {
            size_t at = 0;
            double d = max_rel_diff(ra[i], r0[i], n[i], &at);
            cr_expect(d <= TOL, "T %lld output %d: |O2 - O0| / (1 + |O0|) = %g at %zu (%g vs %g)",
                      (long long)T, i, d, at, (double)ra[i][at], (double)r0[i][at]);
            cr_expect(memcmp(ra[i], rb[i], n[i] * sizeof(float)) == 0,
                      "T %lld output %d: 1 and 2 threads differ", (long long)T, i);
            free(r0[i]);
            free(ra[i]);
            free(rb[i]);
        }
        chain_free(&in);
    }
    tt_model_close(&o0);
    tt_model_close(&o2a);
    tt_model_close(&o2b);
}

/* y = x*w0 + x*w1 + ... + x*w19: 21 distinct leaves, more than one outlined loop carries,
 * so the planner must cut the tree into several groups. */
Test(codegen_fuse, wide_group_is_split_and_right)
{
    char src[2048];
    int n = snprintf(src, sizeof src, "model m(d = 5) {\n    input x: f32[T, d]\n");
    for (int i = 0; i < 20; i++)
        n += snprintf(src + n, sizeof src - (size_t)n, "    param w%d: f32[d]\n", i);
    n += snprintf(src + n, sizeof src - (size_t)n, "    output y = x * w0");
    for (int i = 1; i < 20; i++)
        n += snprintf(src + n, sizeof src - (size_t)n, " + x * w%d", i);
    snprintf(src + n, sizeof src - (size_t)n, "\n}\n");
    TtModel o0, o2;
    tt_model_build(&o0, src, 0);
    tt_model_open(&o0, 9, 1.0f, 1);
    tt_model_build(&o2, src, 2);
    tt_model_open(&o2, 9, 1.0f, 2);
    tt_seed(4);
    float x[3 * 5], y0[3 * 5], y2[3 * 5];
    for (int i = 0; i < 15; i++)
        x[i] = tt_frand(1.0f);
    const void *in[1] = { x };
    int64_t shapes[1][6] = { { 3, 5 } };
    void *out0[1] = { y0 }, *out2[1] = { y2 };
    cr_assert_eq(tt_model_run(&o0, in, shapes, out0), TFX_OK);
    cr_assert_eq(tt_model_run(&o2, in, shapes, out2), TFX_OK);
    // the weights are the same (same seed); only additions' grouping is the same too, so
    // the sums agree to rounding
    size_t at = 0;
    double d = max_rel_diff(y2, y0, 15, &at);
    cr_expect(d <= 1e-6, "wide sum differs by %g at %zu", d, at);
    tt_model_close(&o0);
    tt_model_close(&o2);
}

/* The members of a fused chain get no buffer: -O2's workspace is smaller than -O0's by at
 * least the chain's intermediates. */
Test(codegen_fuse, absorbed_values_take_no_workspace)
{
    const char *src = "model m(d = 64) {\n"
                      "    input x: f32[T, d]\n"
                      "    output y = exp(tanh(x * 2.0 + 1.0) - 3.0) * x\n"
                      "}\n";
    TtModel o0, o2;
    tt_model_build(&o0, src, 0);
    tt_model_open(&o0, 1, 1.0f, 1);
    tt_model_build(&o2, src, 2);
    tt_model_open(&o2, 1, 1.0f, 1);
    int64_t syms[1] = { 100 };
    size_t w0 = o0.d->workspace_bytes(syms), w2 = o2.d->workspace_bytes(syms);
    // -O0 stores x*2, +1, tanh, -3, exp and y ([100, 64] f32, 25600 bytes each); -O2 only y
    cr_expect_geq(w0, 6 * 25600, "-O0 workspace %zu", w0);
    cr_expect_lt(w2, 2 * 25600, "-O2 workspace %zu: the chain's intermediates were stored", w2);
    tt_model_close(&o0);
    tt_model_close(&o2);
}

/* GEMM epilogues: bias, activation and residual computed by the GEMM right after each
 * block of the product, on the blocked path (T > 1, across the 512-row block at T = 600),
 * the GEMV path (T = 1, both B layouts: [K, N] and read through a transpose) and a
 * product used twice (no epilogue). Against -O0, and 1 against 2 threads bitwise. */
static const char *epi_src =
    "model m(d = 24, n = 40) {\n"
    "    input x: f32[T, d]\n"
    "    param w: f32[d, n]\n"
    "    param b: f32[n]\n"
    "    param w2: f32[n, d]\n"
    "    param b2: f32[d]\n"
    "    param e: f32[n, d]\n"
    "    h = gelu(x @ w + b)\n"
    "    output y = h @ w2 + b2 + x * 0.5\n"
    "    output t = tanh(x @ e^T) * 2.0\n"
    "    p = x @ w2^T\n"
    "    output u = p * p + p\n"
    "}\n";

Test(codegen_fuse, gemm_epilogues_match_O0)
{
    CompileResult r;   // at the default -O2
    tt_compile_string("m.tfx", epi_src, TFX_EMIT_LLVM, &r);
    cr_assert_eq(r.status, 0, "%s", buf_str(&r.diags));
    const char *ll = buf_str(&r.out);
    // the groups after x @ w, h @ w2 and x @ e^T have no loop of their own; p has two uses
    cr_expect(strstr(ll, "@fused.h(") == NULL, "gelu(x @ w + b) was not an epilogue");
    cr_expect(strstr(ll, "@fused.y(") == NULL, "h @ w2 + b2 + x * 0.5 was not an epilogue");
    cr_expect(strstr(ll, "@fused.t(") == NULL, "tanh(x @ e^T) * 2 was not an epilogue");
    cr_expect(strstr(ll, "@fused.u(") != NULL, "p * p + p reads p twice: no epilogue");
    compile_result_dispose(&r);

    TtModel trio[3];
    tt_model_trio(trio, epi_src, 8, 0.3f);
    TtModel *o0 = &trio[0], *o2a = &trio[1], *o2b = &trio[2];
    const int64_t Ts[] = { 1, 5, 600 };
    for (size_t c = 0; c < sizeof Ts / sizeof Ts[0]; c++) {
        int64_t T = Ts[c];
        size_t n[3] = { (size_t)(T * 24), (size_t)(T * 40), (size_t)(T * 40) };
        float *x = malloc(n[0] * sizeof *x), *res[3][3];
        cr_assert_not_null(x);
        tt_seed(50 + (uint64_t)T);
        for (size_t i = 0; i < n[0]; i++)
            x[i] = tt_frand(1.0f);
        TtModel *ms[3] = { o0, o2a, o2b };
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < 3; i++) {
                res[k][i] = calloc(n[i], sizeof(float));
                cr_assert_not_null(res[k][i]);
            }
            const void *in[1] = { x };
            int64_t shapes[1][6] = { { T, 24 } };
            void *out[3] = { res[k][0], res[k][1], res[k][2] };
            cr_assert_eq(tt_model_run(ms[k], in, shapes, out), TFX_OK);
        }
        for (int i = 0; i < 3; i++) {
            size_t at = 0;
            double d = max_rel_diff(res[1][i], res[0][i], n[i], &at);
            // the GEMM rounds each term once (fma): GEMM-level error, see test_codegen_gemm.c
            cr_expect(d <= 1e-5, "T %lld output %d: |O2 - O0| / (1 + |O0|) = %g at %zu",
                      (long long)T, i, d, at);
            cr_expect(memcmp(res[1][i], res[2][i], n[i] * sizeof(float)) == 0,
                      "T %lld output %d: 1 and 2 threads differ", (long long)T, i);
        }
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < 3; i++)
                free(res[k][i]);
        free(x);
    }
    tt_model_trio_close(trio);
}
