/* test_codegen_gemm.c - the blocked GEMM of compiler/codegen/cg_gemm.c (matmul at -O1..3)
 * against the plain -O0 lowering and a double-precision C reference: many shapes (edge
 * tiles, K = 1, M = 1, blocks crossed in every dimension, symbolic M, N and K, broadcast
 * batches), 1, 2 and 3 threads (bitwise the same), and the three kernels: the host's vector
 * width, --cpu=x86-64-v3 (AVX2) and --cpu=x86-64-v2 (scalar fallback).
 *
 * Tolerance: each output element is a sum of K products of f32 values. Its rounding error
 * is at most gamma_K * sum|a_k b_k| <= K*u/(1-K*u) * K * max|a| max|b| (Higham 3.1; u =
 * 2^-24), a worst case reached only when every rounding goes the same way. For random
 * signs the error grows like sqrt(K)*u*K*max|a||b| (Higham & Mary 2019), so
 *     |got - exact| <= TOL_K * K * max|a| * max|b|,   TOL_K = 1e-5,
 * is ~100x above the typical error at K = 768 (sqrt(768)*6e-8 = 1.7e-6) and still above the
 * worst case up to K = 166; -O2 against -O0 is allowed twice that (both err). */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tfx.h"
#include "tfx_abi.h"
#include "tfx_test.h"

#define TOL_K 1e-5

enum { MAX_IO = 8 };

/* A compiled model.so, opened with some thread count and bound to seeded weights. */
typedef struct Lib {
    char path[128];
    void *h;
    const TfxModelDesc *d;
    tfx_model *m;
    float *w[MAX_IO];   /* the bound weights, in descriptor order */
    int (*forward)(tfx_model *, const void *const *, const int64_t (*)[6], void *const *,
                   tfx_error *);
    void (*close)(tfx_model *);
} Lib;

static uint64_t rng;
static float urand(void)   /* uniform in [-1, 1), deterministic */
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return 2.0f * (float)((rng >> 40) & 0xffffff) / 16777216.0f - 1.0f;
}

static float *rand_floats(int64_t n)
{
    float *p = malloc((size_t)n * sizeof *p);
    cr_assert_not_null(p);
    for (int64_t i = 0; i < n; i++)
        p[i] = urand();
    return p;
}

/* Compiles src at -O`opt` for `cpu` (NULL: the host) to `emit`, into r. */
static void compile_to(CompileResult *r, const char *src, TfxEmit emit, const char *output,
                       int opt, const char *cpu)
{
    CompileOptions o;
    compile_options_init(&o);
    o.input = "gemm.tfx";
    o.source = src;
    o.emit = emit;
    o.output = output;
    o.opt_level = opt;
    o.cpu = cpu;
    tfx_compile(&o, r);
    cr_assert_eq(r->status, 0, "%s", buf_str(&r->diags));
}

/* Compiles src at -O`opt` for `cpu` (NULL: the host) into the model.so lib->path. */
static void compile(Lib *lib, const char *src, int opt, const char *cpu)
{
    static int counter;
    snprintf(lib->path, sizeof lib->path, "/tmp/tfxc_gemm_%d_%d.so", (int)getpid(), counter++);
    CompileResult r;
    compile_to(&r, src, TFX_EMIT_SO, lib->path, opt, cpu);
    compile_result_dispose(&r);
}

static void *sym(void *h, const char *name)
{
    void *p = dlsym(h, name);
    cr_assert_not_null(p, "missing %s", name);
    return p;
}

/* Opens lib with nthreads and binds every weight to values from `seed`. */
static void lib_open(Lib *lib, int nthreads, uint64_t seed)
{
    lib->h = dlopen(lib->path, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(lib->h, "%s", dlerror());
    const TfxModelDesc *(*desc)(void);
    tfx_model *(*open)(const TfxModelDesc *, const tfx_options *, tfx_error *);
    int (*bind)(tfx_model *, const char *, const float *, tfx_error *);
    *(void **)&desc = sym(lib->h, "tfx_model_desc");
    *(void **)&open = sym(lib->h, "tfx_model_open");
    *(void **)&bind = sym(lib->h, "tfx_model_bind_weight");
    *(void **)&lib->forward = sym(lib->h, "tfx_model_forward");
    *(void **)&lib->close = sym(lib->h, "tfx_model_close");
    lib->d = desc();
    tfx_options opt = { .nthreads = nthreads };
    tfx_error err = { 0 };
    lib->m = open(lib->d, &opt, &err);
    cr_assert_not_null(lib->m, "%s", err.message);
    cr_assert(lib->d->nweights <= MAX_IO);
    rng = seed;
    for (uint32_t i = 0; i < lib->d->nweights; i++) {
        const TfxWeightDesc *w = &lib->d->weights[i];
        int64_t n = 1;
        for (int j = 0; j < w->rank; j++)
            n *= w->dims[j];
        lib->w[i] = rand_floats(n);
        cr_assert_eq(bind(lib->m, w->name, lib->w[i], &err), TFX_OK, "%s", err.message);
    }
}

static void lib_close(Lib *lib)
{
    lib->close(lib->m);
    for (uint32_t i = 0; i < lib->d->nweights; i++)
        free(lib->w[i]);
    dlclose(lib->h);
}

/* ---- the reference ---- */

/* A tensor of rank <= 4 seen as rank 4 with leading 1s. */
typedef struct Ten {
    const float *p;
    int64_t d[4];
} Ten;

static Ten ten(const float *p, int rank, const int64_t *dims)
{
    Ten t = { p, { 1, 1, 1, 1 } };
    for (int j = 0; j < rank; j++)
        t.d[4 - rank + j] = dims[j];
    return t;
}

static float ten_at(const Ten *t, int64_t b0, int64_t b1, int64_t i, int64_t j)
{
    b0 = t->d[0] == 1 ? 0 : b0;
    b1 = t->d[1] == 1 ? 0 : b1;
    return t->p[((b0 * t->d[1] + b1) * t->d[2] + i) * t->d[3] + j];
}

static float max_abs(const Ten *t)
{
    float m = 0;
    int64_t n = t->d[0] * t->d[1] * t->d[2] * t->d[3];
    for (int64_t i = 0; i < n; i++)
        m = fmaxf(m, fabsf(t->p[i]));
    return m;
}

/* y = a @ b in double with numpy broadcasting of the two batch dims; y has
 * max(a.d[0], b.d[0]) x max(a.d[1], b.d[1]) x M x N elements. */
static double *ref_matmul(const Ten *a, const Ten *b)
{
    int64_t B0 = a->d[0] > b->d[0] ? a->d[0] : b->d[0];
    int64_t B1 = a->d[1] > b->d[1] ? a->d[1] : b->d[1];
    int64_t M = a->d[2], K = a->d[3], N = b->d[3];
    double *y = malloc((size_t)(B0 * B1 * M * N) * sizeof *y);
    cr_assert_not_null(y);
    for (int64_t b0 = 0; b0 < B0; b0++)
        for (int64_t b1 = 0; b1 < B1; b1++)
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double s = 0;
                    for (int64_t k = 0; k < K; k++)
                        s += (double)ten_at(a, b0, b1, i, k) * ten_at(b, b0, b1, k, j);
                    y[((b0 * B1 + b1) * M + i) * N + j] = s;
                }
    return y;
}

/* Largest |got - want| over n elements must be <= tol. */
static void expect_within(const float *got, const double *want, int64_t n, double tol,
                          const char *what)
{
    double worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= worst)) {
            worst = e;
            at = i;
        }
    }
    cr_expect(worst <= tol, "%s: max abs error %g > %g at %lld (got %.9g, want %.9g)", what,
              worst, tol, (long long)at, (double)got[at], want[at]);
}

/* ---- one matmul per output, run at every build and thread count ---- */

/* A model whose outputs are matmuls; `prep` fills inputs and the references. */
typedef struct Case {
    const char *src;
    const int64_t *Ts;   /* values of the symbol T to run with */
    int nT;
    /* Fills in[] and shapes[] for T (inputs from urand, weights lib->w), and for each
     * output its reference want[o], element count n[o] and its K * max|a| * max|b|. */
    void (*prep)(const Lib *lib, int64_t T, float **in, int64_t (*shapes)[6], double **want,
                 int64_t *n, double *scale);
} Case;

typedef struct Run {
    float *out[MAX_IO];
    int64_t n[MAX_IO];
} Run;

static void run_forward(Lib *lib, const Case *c, int64_t T, float **in, int64_t (*shapes)[6],
                        Run *r, const int64_t *n)
{
    uint32_t nout = lib->d->noutputs;
    void *outs[MAX_IO];
    for (uint32_t o = 0; o < nout; o++) {
        r->n[o] = n[o];
        r->out[o] = malloc((size_t)(n[o] > 0 ? n[o] : 1) * sizeof(float));
        outs[o] = r->out[o];
    }
    tfx_error err = { 0 };
    int st = lib->forward(lib->m, (const void *const *)in, (const int64_t (*)[6])shapes, outs, &err);
    cr_assert_eq(st, TFX_OK, "%s: T = %lld: %s", c->src, (long long)T, err.message);
}

static void run_free(Run *r, uint32_t nout)
{
    for (uint32_t o = 0; o < nout; o++)
        free(r->out[o]);
}

/* Builds c at -O0 and at -O2 for the host, x86-64-v3 and x86-64-v2; for each T runs -O0
 * and each -O2 build with 1, 2 and 3 threads; checks every -O2 result against the
 * reference and -O0, and that the thread counts agree bit for bit. */
static void check_case(const Case *c)
{
    static const char *const cpus[] = { NULL, "x86-64-v3", "x86-64-v2" };
    Lib o0, o2[3];
    compile(&o0, c->src, 0, NULL);
    for (int i = 0; i < 3; i++)
        compile(&o2[i], c->src, 2, cpus[i]);
    for (int t = 0; t < c->nT; t++) {
        int64_t T = c->Ts[t];
        float *in[MAX_IO] = { 0 };
        int64_t shapes[MAX_IO][6] = { { 0 } }, n[MAX_IO];
        double *want[MAX_IO] = { 0 }, scale[MAX_IO];
        lib_open(&o0, 1, 11);
        rng = 1000 + (uint64_t)T;
        c->prep(&o0, T, in, shapes, want, n, scale);
        uint32_t nout = o0.d->noutputs;
        Run r0;
        run_forward(&o0, c, T, in, shapes, &r0, n);
        lib_close(&o0);
        for (uint32_t o = 0; o < nout; o++)
            expect_within(r0.out[o], want[o], n[o], TOL_K * scale[o], "-O0 vs reference");
        for (int i = 0; i < 3; i++) {
            Run first;
            for (int th = 1; th <= 3; th++) {
                char what[160];
                snprintf(what, sizeof what, "-O2 --cpu=%s, %d threads, T = %lld, output %%u",
                         cpus[i] ? cpus[i] : "host", th, (long long)T);
                Run r;
                lib_open(&o2[i], th, 11);
                run_forward(&o2[i], c, T, in, shapes, &r, n);
                lib_close(&o2[i]);
                for (uint32_t o = 0; o < nout; o++) {
                    char w2[200];
                    snprintf(w2, sizeof w2, what, o);
                    expect_within(r.out[o], want[o], n[o], TOL_K * scale[o], w2);
                    double *d0 = malloc((size_t)(n[o] > 0 ? n[o] : 1) * sizeof *d0);
                    for (int64_t k = 0; k < n[o]; k++)
                        d0[k] = r0.out[o][k];
                    expect_within(r.out[o], d0, n[o], 2 * TOL_K * scale[o], w2);
                    free(d0);
                    if (th > 1)
                        cr_expect(memcmp(r.out[o], first.out[o], (size_t)n[o] * sizeof(float)) == 0,
                                  "%s: not bitwise equal to 1 thread", w2);
                }
                if (th == 1)
                    first = r;
                else
                    run_free(&r, nout);
            }
            run_free(&first, nout);
        }
        run_free(&r0, nout);
        for (uint32_t o = 0; o < nout; o++)
            free(want[o]);
        for (int i = 0; i < MAX_IO; i++)
            free(in[i]);
    }
    remove(o0.path);
    for (int i = 0; i < 3; i++)
        remove(o2[i].path);
}

/* ---- cases ---- */

/* y_i = x_i @ w_i for (K, N) in PAIRS, every x_i of shape [T, K]. */
static const int64_t PAIRS[][2] = { { 1, 1 }, { 768, 768 }, { 13, 5 }, { 100, 33 }, { 1, 40 },
                                    { 257, 129 } };
enum { NPAIRS = sizeof PAIRS / sizeof PAIRS[0] };

static void prep_2d(const Lib *lib, int64_t T, float **in, int64_t (*shapes)[6], double **want,
                    int64_t *n, double *scale)
{
    for (int i = 0; i < NPAIRS; i++) {
        int64_t K = PAIRS[i][0], N = PAIRS[i][1];
        in[i] = rand_floats(T * K);
        shapes[i][0] = T, shapes[i][1] = K;
        Ten a = ten(in[i], 2, (int64_t[]){ T, K }), b = ten(lib->w[i], 2, (int64_t[]){ K, N });
        want[i] = ref_matmul(&a, &b);
        n[i] = T * N;
        scale[i] = (double)K * max_abs(&a) * max_abs(&b);
    }
}

/* M = T from 1 (decoding: the GEMV) to 150; K crosses KC = 256 and N = 768 crosses
 * NC = 256 (symbolic_n_and_k's T = 600 crosses MC = 512). */
Test(gemm, shapes_2d_match_O0_and_reference, .timeout = 600)
{
    const char *src =
        "model m() {\n"
        "    input x0: f32[T, 1]\n    input x1: f32[T, 768]\n    input x2: f32[T, 13]\n"
        "    input x3: f32[T, 100]\n    input x4: f32[T, 1]\n    input x5: f32[T, 257]\n"
        "    param w0: f32[1, 1]\n    param w1: f32[768, 768]\n    param w2: f32[13, 5]\n"
        "    param w3: f32[100, 33]\n    param w4: f32[1, 40]\n    param w5: f32[257, 129]\n"
        "    output y0 = x0 @ w0\n    output y1 = x1 @ w1\n    output y2 = x2 @ w2\n"
        "    output y3 = x3 @ w3\n    output y4 = x4 @ w4\n    output y5 = x5 @ w5\n"
        "}\n";
    static const int64_t Ts[] = { 1, 7, 17, 150 };
    Case c = { src, Ts, 4, prep_2d };
    check_case(&c);
}

/* [2, 3, T, 40] @ [40, 36] (b broadcast over both batch dims) and [3, T, 40] @ [3, 40, 36]
 * and [T, 40] @ [3, 40, 36] (a broadcast). */
static void prep_batched(const Lib *lib, int64_t T, float **in, int64_t (*shapes)[6],
                         double **want, int64_t *n, double *scale)
{
    const int64_t K = 40, N = 36, H = 3;
    in[0] = rand_floats(2 * 3 * T * K);
    in[1] = rand_floats(H * T * K);
    in[2] = rand_floats(T * K);
    int64_t s0[6] = { 2, 3, T, K }, s1[6] = { H, T, K }, s2[6] = { T, K };
    memcpy(shapes[0], s0, sizeof s0);
    memcpy(shapes[1], s1, sizeof s1);
    memcpy(shapes[2], s2, sizeof s2);
    Ten a[3] = { ten(in[0], 4, s0), ten(in[1], 3, s1), ten(in[2], 2, s2) };
    Ten b[3] = { ten(lib->w[0], 2, (int64_t[]){ K, N }), ten(lib->w[1], 3, (int64_t[]){ H, K, N }),
                 ten(lib->w[1], 3, (int64_t[]){ H, K, N }) };
    int64_t nbatch[3] = { 6, H, H };
    for (int i = 0; i < 3; i++) {
        want[i] = ref_matmul(&a[i], &b[i]);
        n[i] = nbatch[i] * T * N;
        scale[i] = (double)K * max_abs(&a[i]) * max_abs(&b[i]);
    }
}

Test(gemm, batched_and_broadcast_match_O0_and_reference, .timeout = 600)
{
    const char *src =
        "model m() {\n"
        "    input x: f32[2, 3, T, 40]\n    input z: f32[3, T, 40]\n    input u: f32[T, 40]\n"
        "    param w: f32[40, 36]\n    param v: f32[3, 40, 36]\n"
        "    output y0 = x @ w\n    output y1 = z @ v\n    output y2 = u @ v\n"
        "}\n";
    static const int64_t Ts[] = { 1, 9, 20 };
    Case c = { src, Ts, 3, prep_batched };
    check_case(&c);
}

/* x @ x^T (N = T) and x^T @ x (K = T): symbolic N and K. */
static void prep_symbolic(const Lib *lib, int64_t T, float **in, int64_t (*shapes)[6],
                          double **want, int64_t *n, double *scale)
{
    (void)lib;
    const int64_t D = 24;
    in[0] = rand_floats(T * D);
    shapes[0][0] = T, shapes[0][1] = D;
    float *xt = malloc((size_t)(T * D) * sizeof *xt);
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < D; j++)
            xt[j * T + i] = in[0][i * D + j];
    Ten x = ten(in[0], 2, (int64_t[]){ T, D }), t = ten(xt, 2, (int64_t[]){ D, T });
    want[0] = ref_matmul(&x, &t);
    n[0] = T * T;
    scale[0] = (double)D * max_abs(&x) * max_abs(&x);
    want[1] = ref_matmul(&t, &x);
    n[1] = D * D;
    scale[1] = (double)T * max_abs(&x) * max_abs(&x);
    free(xt);
}

Test(gemm, symbolic_n_and_k_match_O0_and_reference, .timeout = 600)
{
    const char *src =
        "model m() {\n"
        "    input x: f32[T, 24]\n"
        "    output g = x @ x^T\n    output c = x^T @ x\n"
        "}\n";
    static const int64_t Ts[] = { 1, 5, 33, 300, 600 };   // 600: M crosses MC = 512
    Case c = { src, Ts, 5, prep_symbolic };
    check_case(&c);
}

/* A transposed right operand (a tied LM head's `h @ wte^T`): read through by the GEMM,
 * with no transposed copy, when the transpose's one use is the matmul; a transpose used
 * twice is materialised as before. [T, 257] @ [129, 257]^T crosses KC and the N edge,
 * [3, T, 40] @ [3, 36, 40]^T is batched, and u^T is both a matmul operand and an output. */
static float *transposed(const float *p, int64_t batch, int64_t rows, int64_t cols)
{
    float *t = malloc((size_t)(batch * rows * cols) * sizeof *t);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++)
                t[(b * cols + j) * rows + i] = p[(b * rows + i) * cols + j];
    return t;
}

static void prep_transposed(const Lib *lib, int64_t T, float **in, int64_t (*shapes)[6],
                            double **want, int64_t *n, double *scale)
{
    in[0] = rand_floats(T * 257);
    in[1] = rand_floats(3 * T * 40);
    int64_t s0[6] = { T, 257 }, s1[6] = { 3, T, 40 };
    memcpy(shapes[0], s0, sizeof s0);
    memcpy(shapes[1], s1, sizeof s1);
    float *wt = transposed(lib->w[0], 1, 129, 257), *vt = transposed(lib->w[1], 3, 36, 40);
    float *ut = transposed(lib->w[2], 1, 20, 257);
    Ten x = ten(in[0], 2, s0), z = ten(in[1], 3, s1);
    Ten tw = ten(wt, 2, (int64_t[]){ 257, 129 }), tv = ten(vt, 3, (int64_t[]){ 3, 40, 36 });
    Ten tu = ten(ut, 2, (int64_t[]){ 257, 20 });
    want[0] = ref_matmul(&x, &tw);
    n[0] = T * 129;
    scale[0] = 257.0 * max_abs(&x) * max_abs(&tw);
    want[1] = ref_matmul(&z, &tv);
    n[1] = 3 * T * 36;
    scale[1] = 40.0 * max_abs(&z) * max_abs(&tv);
    want[2] = ref_matmul(&x, &tu);
    n[2] = T * 20;
    scale[2] = 257.0 * max_abs(&x) * max_abs(&tu);
    n[3] = 257 * 20;
    want[3] = malloc((size_t)n[3] * sizeof *want[3]);
    for (int64_t k = 0; k < n[3]; k++)
        want[3][k] = ut[k];
    scale[3] = 0;   // a copy: exact
    free(wt);
    free(vt);
    free(ut);
}

Test(gemm, transposed_right_operand_matches_O0_and_reference, .timeout = 600)
{
    const char *src =
        "model m() {\n"
        "    input x: f32[T, 257]\n    input z: f32[3, T, 40]\n"
        "    param w: f32[129, 257]\n    param v: f32[3, 36, 40]\n    param u: f32[20, 257]\n"
        "    output y0 = x @ w^T\n    output y1 = z @ v^T\n"
        "    ut = u^T\n    output y2 = x @ ut\n    output y3 = ut\n"
        "}\n";
    static const int64_t Ts[] = { 1, 7, 150 };
    Case c = { src, Ts, 3, prep_transposed };
    check_case(&c);
}

/* The GEMM reads w^T in place: no transposed copy is emitted at -O2 (there is at -O0),
 * and the copy used twice above stays. */
Test(gemm, transposed_weight_is_not_copied)
{
    const char *src =
        "model m() {\n    input x: f32[T, 64]\n    param w: f32[96, 64]\n"
        "    wt = w^T\n    output y = x @ wt\n}\n";
    for (int opt = 0; opt <= 2; opt += 2) {
        CompileOptions o;
        compile_options_init(&o);
        o.input = "t.tfx";
        o.source = src;
        o.emit = TFX_EMIT_LLVM;
        o.opt_level = opt;
        CompileResult r;
        tfx_compile(&o, &r);
        cr_assert_eq(r.status, 0, "%s", buf_str(&r.diags));
        bool copy = strstr(buf_str(&r.out), "%wt.d1") != NULL;   // the copy's loop nest
        cr_expect(copy == (opt == 0), "-O%d: transpose copy %s", opt, copy ? "emitted" : "missing");
        compile_result_dispose(&r);
    }
}

/* One GPT-2-sized projection: 128 x 3072 x 768 (M x N x K), host kernel, 2 threads. */
Test(gemm, gpt2_mlp_projection_matches_reference, .timeout = 600)
{
    const char *src =
        "model m() {\n    input x: f32[T, 768]\n    param w: f32[768, 3072]\n"
        "    output y = x @ w\n}\n";
    const int64_t T = 128, K = 768, N = 3072;
    Lib lib;
    compile(&lib, src, 2, NULL);
    lib_open(&lib, 2, 5);
    rng = 99;
    float *x = rand_floats(T * K), *y = malloc((size_t)(T * N) * sizeof *y);
    int64_t shapes[1][6] = { { T, K } };
    const void *in[1] = { x };
    void *out[1] = { y };
    tfx_error err = { 0 };
    cr_assert_eq(lib.forward(lib.m, in, (const int64_t (*)[6])shapes, out, &err), TFX_OK);
    Ten a = ten(x, 2, (int64_t[]){ T, K }), b = ten(lib.w[0], 2, (int64_t[]){ K, N });
    double *want = ref_matmul(&a, &b);
    expect_within(y, want, T * N, TOL_K * (double)K * max_abs(&a) * max_abs(&b), "128x3072x768");
    free(want);
    free(x);
    free(y);
    lib_close(&lib);
    remove(lib.path);
}

/* The kernel's vector type follows the target: <16 x float> with AVX-512, <8 x float>
 * with AVX2, none for x86-64-v2; -O0 has no GEMM at all. */
Test(gemm, emit_llvm_vector_width_follows_cpu)
{
    static const struct { const char *cpu; int opt; const char *want, *not; } cases[] = {
        { "x86-64-v4", 2, "@llvm.fma.v16f32", "@llvm.fma.v8f32" },
        { "x86-64-v3", 2, "@llvm.fma.v8f32", "@llvm.fma.v16f32" },
        { "x86-64-v2", 2, "define internal void @matmul.y", "@llvm.fma.v" },
        { "x86-64-v4", 0, "define internal void @matmul.y", "tfx.gemm" },
    };
    const char *src =
        "model m() {\n    input x: f32[T, 64]\n    param w: f32[64, 64]\n"
        "    output y = x @ w\n}\n";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CompileResult r;
        compile_to(&r, src, TFX_EMIT_LLVM, NULL, cases[i].opt, cases[i].cpu);
        const char *ll = buf_str(&r.out);
        cr_expect(strstr(ll, cases[i].want) != NULL, "%s -O%d: no %s", cases[i].cpu,
                  cases[i].opt, cases[i].want);
        cr_expect(strstr(ll, cases[i].not) == NULL, "%s -O%d: has %s", cases[i].cpu,
                  cases[i].opt, cases[i].not);
        compile_result_dispose(&r);
    }
}

/* M = 1 takes the GEMV: a constant M = 1 emits only its body, a symbolic M both bodies
 * (forward branches on M == 1), a constant M > 1 only the tiled GEMM. */
Test(gemm, m1_uses_the_gemv_body)
{
    static const struct { const char *rows; bool gemv, gemm; } cases[] = {
        { "1", true, false }, { "T", true, true }, { "8", false, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char src[256];
        snprintf(src, sizeof src, "model m() {\n    input x: f32[%s, 64]\n"
                 "    param w: f32[64, 48]\n    output y = x @ w\n}\n", cases[i].rows);
        CompileResult r;
        compile_to(&r, src, TFX_EMIT_LLVM, NULL, 2, "x86-64-v4");
        const char *ll = buf_str(&r.out);
        bool gemv = strstr(ll, "define internal void @matmul.y.gemv(") != NULL;
        bool gemm = strstr(ll, "define internal void @matmul.y(") != NULL;
        cr_expect(gemv == cases[i].gemv && gemm == cases[i].gemm,
                  "M = %s: gemv body %d, gemm body %d", cases[i].rows, gemv, gemm);
        compile_result_dispose(&r);
    }
}
