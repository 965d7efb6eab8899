/* test_codegen_heads.c - the GEMM reading B through a split into heads (cg_gemm_plan's
 * GEMM_TB_HEADS): `q @ split_heads(x)^T` (a swap over the heads transpose: B^T read with
 * a row stride of H * Dh) and `s @ split_heads(x2)` (B read that way), as a decode step
 * does with its cached keys and values. Against -O0 for T = 1 (the M = 1 path), 5 and 300
 * (the blocked path), 1 against 2 threads bitwise, and the transposes take no workspace.
 * Tolerance: GEMM-level, |O2 - O0| <= 1e-5 * T * (1 + |O0|) on these unit-scale inputs,
 * since s @ v sums T terms (test_codegen_gemm.c derives the per-K bound). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tfx.h"
#include "tfx_abi.h"
#include "tfx_test.h"
#include "tt_model.h"

static const char *heads_src =
    "model m(d = 32, h = 4) {\n"
    "    input x: f32[T, d]\n"
    "    input x2: f32[T, d]\n"
    "    input q: f32[h, T, 8]\n"
    "    s = q @ split_heads(x, h)^T\n"
    "    output y = s @ split_heads(x2, h)\n"
    "}\n";

static void run(TtModel *mo, int64_t T, const float *x, const float *x2, const float *q, float *y)
{
    const void *in[3] = { x, x2, q };
    int64_t shapes[3][6] = { { T, 32 }, { T, 32 }, { 4, T, 8 } };
    void *out[1] = { y };
    cr_assert_eq(tt_model_run(mo, in, shapes, out), TFX_OK, "T = %lld", (long long)T);
}

Test(codegen_heads, gemm_reads_heads_in_place)
{
    CompileResult r;   // at the default -O2
    tt_compile_string("m.tfx", heads_src, TFX_EMIT_LLVM, &r);
    cr_assert_eq(r.status, 0, "%s", buf_str(&r.diags));
    // no transpose loops at all: both heads splits and the swap are read through
    cr_expect(strstr(buf_str(&r.out), "transpose") == NULL, "a transpose was materialised");
    compile_result_dispose(&r);

    TtModel trio[3];
    tt_model_trio(trio, heads_src, 1, 1.0f);
    TtModel *o0 = &trio[0], *o2a = &trio[1], *o2b = &trio[2];
    const int64_t Ts[] = { 1, 5, 300 };
    for (size_t c = 0; c < sizeof Ts / sizeof Ts[0]; c++) {
        int64_t T = Ts[c];
        size_t nx = (size_t)(T * 32), ny = (size_t)(4 * T * 8);
        float *x = malloc(nx * sizeof *x), *x2 = malloc(nx * sizeof *x2), *q = malloc(ny * sizeof *q);
        float *y0 = malloc(ny * sizeof *y0), *ya = malloc(ny * sizeof *ya), *yb = malloc(ny * sizeof *yb);
        cr_assert(x && x2 && q && y0 && ya && yb);
        tt_seed(9 + (uint64_t)T);
        for (size_t i = 0; i < nx; i++) {
            x[i] = tt_frand(1.0f);
            x2[i] = tt_frand(1.0f);
        }
        for (size_t i = 0; i < ny; i++)
            q[i] = tt_frand(1.0f);
        run(o0, T, x, x2, q, y0);
        run(o2a, T, x, x2, q, ya);
        run(o2b, T, x, x2, q, yb);
        double worst = 0;
        size_t at = 0;
        for (size_t i = 0; i < ny; i++) {
            double d = fabs((double)ya[i] - y0[i]) / (1.0 + fabs((double)y0[i]));
            if (!(d <= worst)) {
                worst = d;
                at = i;
            }
        }
        cr_expect(worst <= 1e-5 * (double)T, "T %lld: |O2 - O0| / (1 + |O0|) = %g at %zu (%g vs %g)",
                  (long long)T, worst, at, (double)ya[at], (double)y0[at]);
        cr_expect(memcmp(ya, yb, ny * sizeof *ya) == 0, "T %lld: 1 and 2 threads differ", (long long)T);
        int64_t syms[2] = { T, 0 };
        size_t w0 = o0->d->workspace_bytes(syms), w2 = o2a->d->workspace_bytes(syms);
        cr_expect_lt(w2, w0, "T %lld: workspace %zu at -O2, %zu at -O0", (long long)T, w2, w0);
        free(x), free(x2), free(q), free(y0), free(ya), free(yb);
    }
    tt_model_trio_close(trio);
}
