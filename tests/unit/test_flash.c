/* test_flash.c - attention as one kernel (compiler/codegen/cg_flash.c): softmax(q @ k^T
 * [scaled], mask) @ v at -O2 against the plain -O0 lowering and a double-precision C
 * reference, for every mask, tile-ragged T, T = 1, several heads, a key length S != T
 * (cross-attention), a head dim of v unlike q's, broadcast batches, each scale form, the
 * AVX2 and scalar kernels, 1 and 2 threads (bitwise the same) and --serial; plus the chain
 * left unfused when an intermediate has a second use, and the emitted code (the kernel
 * present, the [H, T, S] buffers gone from the workspace).
 *
 * Tolerance: inputs are uniform in [-1, 1), so |score| <= D * scale and each output is a
 * convex combination of v rows (|y| < 1). The kernel's error against the exact value is a
 * few ulp of the exponentials (its polynomial exp is within ~2 ulp), the D-term dot
 * product's rounding (~D u |score|) and the S-term sums' (~S u): for D <= 24 and S <= 200,
 * well under 1e-5 absolute (u = 2^-24 = 6e-8; the worst-case sum bound S u = 1.2e-5 is
 * reached only when every rounding goes the same way, typical is sqrt(S) u = 1e-6). So
 * both levels must be within TOL = 2e-5 of the reference and within TOL of each other;
 * an error in masking, rescaling or the zero row is of order 1e-2 or more. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tfx_test.h"
#include "tt_model.h"

#define TOL 2e-5

/* One attention problem: q [QB, H, T, D], k [H, S, D], v [H, S, Dv] (k and v broadcast
 * over q's leading QB when QB > 1), y [QB, H, T, Dv]. */
typedef struct Case {
    const char *mask;    /* the softmax's mask text: none, causal, band(5), ... */
    const char *scale;   /* the text after `q @ k^T`: " / sqrt(dh)", " * 0.3", "" */
    double      mul;     /* what the scale multiplies the dot product by */
    int         QB, H, D, Dv;
    int64_t     T, S;
} Case;

static void case_source(const Case *c, char *src, size_t n)
{
    char qdims[32] = "";
    if (c->QB > 1)
        snprintf(qdims, sizeof qdims, "%d, ", c->QB);
    snprintf(src, n,
             "model att(heads = %d, dh = %d, dv = %d) {\n"
             "    input q: f32[%sheads, T, dh]\n"
             "    input k: f32[heads, S, dh]\n"
             "    input v: f32[heads, S, dv]\n"
             "    output y = softmax(q @ k^T%s, mask = %s) @ v\n"
             "}\n",
             c->H, c->D, c->Dv, qdims, c->scale, c->mask);
}

/* Whether key j is visible to query i under c->mask (docs/ir.md). */
static bool ref_visible(const Case *c, int64_t i, int64_t j)
{
    int w = 0;
    if (sscanf(c->mask, "causal_band(%d)", &w) == 1)
        return j <= i && i - j < w;
    if (sscanf(c->mask, "band(%d)", &w) == 1)
        return i - j < w && j - i < w;
    if (strcmp(c->mask, "causal") == 0)
        return j <= i;
    return true;
}

/* y in double, then rounded: the definition, with a row that sees no key all zeros. */
static void reference(const Case *c, const float *q, const float *k, const float *v, float *y)
{
    double *s = malloc((size_t)c->S * sizeof *s);
    for (int b = 0; b < c->QB * c->H; b++) {
        int h = b % c->H;
        for (int64_t i = 0; i < c->T; i++) {
            const float *qi = q + ((int64_t)b * c->T + i) * c->D;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < c->S; j++) {
                const float *kj = k + ((int64_t)h * c->S + j) * c->D;
                double d = 0;
                for (int e = 0; e < c->D; e++)
                    d += (double)qi[e] * kj[e];
                s[j] = d * c->mul;
                if (ref_visible(c, i, j) && s[j] > mx)
                    mx = s[j];
            }
            for (int64_t j = 0; j < c->S; j++) {
                s[j] = ref_visible(c, i, j) ? exp(s[j] - mx) : 0.0;
                sum += s[j];
            }
            for (int e = 0; e < c->Dv; e++) {
                double acc = 0;
                for (int64_t j = 0; j < c->S; j++)
                    acc += s[j] * v[((int64_t)h * c->S + j) * c->Dv + e];
                y[((int64_t)b * c->T + i) * c->Dv + e] = sum > 0 ? (float)(acc / sum) : 0.0f;
            }
        }
    }
    free(s);
}

/* The text of src compiled at -O`opt` to LLVM IR (the caller frees it). */
static char *llvm_text(const char *src, int opt, bool serial)
{
    CompileOptions o;
    compile_options_init(&o);
    o.input = "flash.tfx";
    o.source = src;
    o.emit = TFX_EMIT_LLVM;
    o.opt_level = opt;
    o.serial = serial;
    CompileResult r;
    tfx_compile(&o, &r);
    cr_assert_eq(r.status, 0, "%s", buf_str(&r.diags));
    char *s = strdup(buf_str(&r.out));
    compile_result_dispose(&r);
    return s;
}

typedef struct Data {
    float *q, *k, *v, *want;
    int64_t nq, nk, nv, ny;
} Data;

static float *rand_floats(int64_t n)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    cr_assert_not_null(p);
    for (int64_t i = 0; i < n; i++)
        p[i] = tt_frand(1.0f);
    return p;
}

static void data_init(Data *d, const Case *c, uint64_t seed)
{
    d->nq = (int64_t)c->QB * c->H * c->T * c->D;
    d->nk = (int64_t)c->H * c->S * c->D;
    d->nv = (int64_t)c->H * c->S * c->Dv;
    d->ny = (int64_t)c->QB * c->H * c->T * c->Dv;
    tt_seed(seed);
    d->q = rand_floats(d->nq);
    d->k = rand_floats(d->nk);
    d->v = rand_floats(d->nv);
    d->want = malloc((size_t)(d->ny ? d->ny : 1) * sizeof *d->want);
    reference(c, d->q, d->k, d->v, d->want);
}

static void data_free(Data *d)
{
    free(d->q), free(d->k), free(d->v), free(d->want);
}

/* Runs the model opened with nthreads on d; returns y (the caller frees it). */
static float *run(const char *so_src, const Case *c, const Data *d, int opt, bool serial,
                  const char *cpu, int nthreads)
{
    TtModel mo;
    tt_model_build_with(&mo, so_src, opt, serial, cpu);
    tt_model_open(&mo, 1, 1.0f, nthreads);
    float *y = malloc((size_t)(d->ny ? d->ny : 1) * sizeof *y);
    const void *in[3] = { d->q, d->k, d->v };
    void *out[1] = { y };
    int64_t shapes[3][6] = { { 0 } };
    int r = 0;
    if (c->QB > 1)
        shapes[0][r++] = c->QB;
    shapes[0][r] = c->H, shapes[0][r + 1] = c->T, shapes[0][r + 2] = c->D;
    shapes[1][0] = c->H, shapes[1][1] = c->S, shapes[1][2] = c->D;
    shapes[2][0] = c->H, shapes[2][1] = c->S, shapes[2][2] = c->Dv;
    cr_assert_eq(tt_model_run(&mo, in, shapes, out), TFX_OK);
    tt_model_close(&mo);
    return y;
}

static double max_err(const float *a, const float *b, int64_t n)
{
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - b[i]);
        if (!(x <= e))   // NaN counts as infinitely wrong
            e = isnan(x) ? INFINITY : x;
    }
    return e;
}

/* -O0 and -O2 (1 and 2 threads, bitwise the same) against the reference and each other. */
static void check(const Case *c)
{
    char src[1024];
    case_source(c, src, sizeof src);
    Data d;
    data_init(&d, c, 7);
    float *y0 = run(src, c, &d, 0, false, NULL, 2);
    float *y2 = run(src, c, &d, 2, false, NULL, 2);
    float *y1 = run(src, c, &d, 2, false, NULL, 1);
    double e0 = max_err(y0, d.want, d.ny), e2 = max_err(y2, d.want, d.ny);
    double e02 = max_err(y2, y0, d.ny);
    cr_expect(e0 <= TOL, "%s: -O0 is %g from the reference", c->mask, e0);
    cr_expect(e2 <= TOL, "%s: -O2 is %g from the reference", c->mask, e2);
    cr_expect(e02 <= TOL, "%s: -O2 is %g from -O0", c->mask, e02);
    cr_expect(memcmp(y1, y2, (size_t)d.ny * sizeof *y1) == 0, "%s: 1 and 2 threads differ",
              c->mask);
    free(y0), free(y1), free(y2);
    data_free(&d);
}

#define SQRT " / sqrt(dh)"

Test(flash, full_ragged_tiles)
{
    check(&(Case){ "none", SQRT, 1 / sqrt(8.0), 1, 2, 8, 8, 70, 70 });
}

Test(flash, causal_three_heads)
{
    check(&(Case){ "causal", SQRT, 0.25, 1, 3, 16, 16, 130, 130 });
}

Test(flash, band_window)
{
    check(&(Case){ "band(5)", SQRT, 0.25, 1, 2, 16, 16, 150, 150 });
}

Test(flash, band_wider_than_a_tile)
{
    check(&(Case){ "band(90)", SQRT, 0.25, 1, 1, 16, 16, 200, 200 });
}

Test(flash, causal_band_window)
{
    check(&(Case){ "causal_band(7)", SQRT, 0.25, 1, 2, 16, 16, 100, 100 });
}

Test(flash, one_query)
{
    check(&(Case){ "causal", SQRT, 0.25, 1, 2, 16, 16, 1, 1 });
    check(&(Case){ "none", SQRT, 0.25, 1, 2, 16, 16, 1, 1 });
}

/* S != T: causal queries past the last key see every key; keys past the last query are
 * hidden from all. */
Test(flash, cross_attention_more_keys)
{
    check(&(Case){ "none", SQRT, 0.25, 1, 2, 16, 16, 37, 91 });
    check(&(Case){ "causal", SQRT, 0.25, 1, 2, 16, 16, 37, 91 });
}

Test(flash, cross_attention_fewer_keys)
{
    check(&(Case){ "causal", SQRT, 0.25, 1, 2, 16, 16, 90, 20 });
}

/* With 10 keys, band(3) hides every key from queries 12 and on, causal_band(2) from 11
 * and on: those rows are all zeros, not NaN. */
Test(flash, rows_without_visible_keys_are_zero)
{
    const Case cs[] = {
        { "band(3)", SQRT, 0.25, 1, 2, 16, 16, 140, 10 },
        { "causal_band(2)", SQRT, 0.25, 1, 2, 16, 16, 40, 10 },
    };
    for (int i = 0; i < 2; i++) {
        check(&cs[i]);
        Data d;
        data_init(&d, &cs[i], 7);
        int64_t zeros = 0;
        for (int64_t e = 0; e < d.ny; e++)
            zeros += d.want[e] == 0.0f;
        cr_expect_geq(zeros, 2 * 16 * 16, "the case must have rows without keys");
        data_free(&d);
    }
}

Test(flash, value_head_dim_differs)
{
    check(&(Case){ "causal", SQRT, 1 / sqrt(8.0), 1, 2, 8, 13, 67, 67 });
}

Test(flash, scale_forms)
{
    check(&(Case){ "causal", " * 0.3", 0.3, 1, 2, 16, 16, 50, 50 });
    check(&(Case){ "causal", "", 1.0, 1, 2, 16, 16, 50, 50 });
    check(&(Case){ "none", " / 3.0", 1 / 3.0, 1, 2, 16, 16, 50, 50 });
}

Test(flash, broadcast_batch)
{
    check(&(Case){ "causal", SQRT, 0.25, 3, 2, 16, 16, 45, 45 });
}

/* The AVX2 (8 lanes) and scalar kernels, and --serial, against the reference. */
Test(flash, other_vector_widths_and_serial)
{
    const Case cs[] = {
        { "causal", SQRT, 0.25, 1, 2, 16, 16, 75, 75 },
        { "band(9)", SQRT, 0.25, 1, 2, 16, 24, 75, 75 },
    };
    const char *cpus[] = { "x86-64-v3", "x86-64-v2", NULL };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        char src[1024];
        case_source(&cs[i], src, sizeof src);
        Data d;
        data_init(&d, &cs[i], 3);
        for (size_t k = 0; k < 3; k++) {
            float *y = run(src, &cs[i], &d, 2, cpus[k] == NULL, cpus[k], 2);
            double e = max_err(y, d.want, d.ny);
            cr_expect(e <= TOL, "%s on %s: %g from the reference", cs[i].mask,
                      cpus[k] ? cpus[k] : "the host, --serial", e);
            free(y);
        }
        data_free(&d);
    }
}

/* The emitted code: the kernel is there, nothing calls the pool with --serial, and the
 * workspace no longer holds [H, T, T] scores. */
Test(flash, kernel_replaces_the_score_buffers)
{
    const Case c = { "causal", SQRT, 0.25, 1, 4, 16, 16, 256, 256 };
    char src[1024];
    case_source(&c, src, sizeof src);
    char *ll = llvm_text(src, 2, false);
    cr_expect_not_null(strstr(ll, "@flash.y"), "no flash kernel in the -O2 LLVM IR");
    free(ll);
    char *ll0 = llvm_text(src, 0, false);
    cr_expect_null(strstr(ll0, "@flash.y"), "-O0 must keep the plain lowering");
    free(ll0);
    size_t ws[2];
    for (int k = 0; k < 2; k++) {
        TtModel mo;
        tt_model_build(&mo, src, k ? 2 : 0);
        tt_model_open(&mo, 1, 1.0f, 1);
        const int64_t syms[2] = { c.T, c.S };
        ws[k] = mo.d->workspace_bytes(syms);
        tt_model_close(&mo);
    }
    size_t scores = (size_t)c.H * c.T * c.S * 4;
    cr_expect_geq(ws[0], 3 * scores, "-O0 workspace %zu", ws[0]);
    cr_expect_lt(ws[1], scores, "-O2 workspace %zu still holds a score tensor", ws[1]);
}

Test(flash, serial_calls_no_pool)
{
    const Case c = { "causal", SQRT, 0.25, 1, 2, 16, 16, 64, 64 };
    char src[1024];
    case_source(&c, src, sizeof src);
    char *ll = llvm_text(src, 2, true);
    cr_expect_not_null(strstr(ll, "fl.ktile"), "no flash kernel with --serial");
    cr_expect_null(strstr(ll, "tfx_pool_parallel_for"), "--serial code calls the pool");
    free(ll);
}

/* The scores have a second use (an output): nothing is absorbed, the plain GEMM and
 * softmax run, and y is still right. */
Test(flash, second_use_keeps_the_chain_unfused)
{
    const char *src =
        "model att(heads = 2, dh = 16) {\n"
        "    input q: f32[heads, T, dh]\n"
        "    input k: f32[heads, T, dh]\n"
        "    input v: f32[heads, T, dh]\n"
        "    s = q @ k^T / sqrt(dh)\n"
        "    output y = softmax(s, mask = causal) @ v\n"
        "    output scores = s\n"
        "}\n";
    char *ll = llvm_text(src, 2, false);
    cr_expect_null(strstr(ll, "@flash."), "a chain with a used intermediate was fused");
    free(ll);
    const Case c = { "causal", SQRT, 0.25, 1, 2, 16, 16, 50, 50 };
    Data d;
    data_init(&d, &c, 9);
    TtModel mo;
    tt_model_build(&mo, src, 2);
    tt_model_open(&mo, 1, 1.0f, 2);
    float *y = malloc((size_t)d.ny * sizeof *y), *s = malloc((size_t)(2 * 50 * 50) * sizeof *s);
    const void *in[3] = { d.q, d.k, d.v };
    void *out[2] = { y, s };
    int64_t shapes[3][6] = { { 2, 50, 16 }, { 2, 50, 16 }, { 2, 50, 16 } };
    cr_assert_eq(tt_model_run(&mo, in, shapes, out), TFX_OK);
    double e = max_err(y, d.want, d.ny);
    cr_expect(e <= TOL, "unfused -O2 is %g from the reference", e);
    tt_model_close(&mo);
    free(y), free(s);
    data_free(&d);
}

/* The chain inside a loop body (a stack of two attention layers over carried x). */
Test(flash, chain_in_a_loop_body)
{
    const char *src =
        "model att(heads = 2, dh = 16, L = 2) {\n"
        "    input x: f32[heads, T, dh]\n"
        "    for l in 0..L {\n"
        "        x = x + softmax(x @ x^T / sqrt(dh), mask = causal) @ x\n"
        "    }\n"
        "    output y = x\n"
        "}\n";
    char *ll = llvm_text(src, 2, false);
    cr_expect_not_null(strstr(ll, "@flash."), "the chain in the loop body was not fused");
    free(ll);
    tt_seed(4);
    int64_t n = 2 * 33 * 16;
    float *x = rand_floats(n), *y[2];
    for (int k = 0; k < 2; k++) {
        TtModel mo;
        tt_model_build(&mo, src, k ? 2 : 0);
        tt_model_open(&mo, 1, 1.0f, 2);
        y[k] = malloc((size_t)n * sizeof *y[k]);
        const void *in[1] = { x };
        void *out[1] = { y[k] };
        int64_t shapes[1][6] = { { 2, 33, 16 } };
        cr_assert_eq(tt_model_run(&mo, in, shapes, out), TFX_OK);
        tt_model_close(&mo);
    }
    // two layers of |scores| <= 16 * 4 / 4: the second layer's inputs carry the first's error
    double e = max_err(y[0], y[1], n);
    cr_expect(e <= 4 * TOL, "-O2 is %g from -O0", e);
    free(x), free(y[0]), free(y[1]);
}
