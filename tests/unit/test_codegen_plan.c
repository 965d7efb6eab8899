/* test_codegen_plan.c - the memory plan of -O1..3 (docs/codegen.md "Memory plan"):
 *   - tfx_plan_offsets (runtime/rt_plan.c) on random sizes and intervals: buffers live at
 *     the same time never overlap, every offset is 64-byte aligned, the total covers every
 *     buffer and is at most the sum of the aligned sizes, and the plan is a pure function
 *     of its inputs;
 *   - generated code: a looped model (stacked and shared loops, an `until` loop, a tied
 *     transpose read by the GEMM, fused chains, several outputs) gives the same outputs
 *     at -O2, where buffers share memory, as at -O0, where none does, for several T, and
 *     its -O2 workspace is smaller. The -O2-against--O0 tests of the architectures and of
 *     GPT-2 (test_arch_*.c, test_e2e.c) run with the plan too. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tfx.h"
#include "tfx_abi.h"
#include "tfx_test.h"
#include "tt_model.h"

static uint64_t state;
static int64_t rnd(int64_t n)
{
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return (int64_t)((state >> 33) % (uint64_t)n);
}

Test(codegen_plan, offsets_never_overlap_for_live_buffers)
{
    enum { N = 200 };
    static int64_t size[N], off[N], off2[N];
    static int32_t start[N], end[N], scratch[2 * N];
    for (int trial = 0; trial < 50; trial++) {
        state = 1000 + (uint64_t)trial;
        int64_t n = 1 + rnd(N), sum = 0;
        for (int64_t i = 0; i < n; i++) {
            size[i] = rnd(5) == 0 ? 0 : 1 + rnd(trial % 2 ? 100000 : 300);
            start[i] = (int32_t)rnd(400);
            end[i] = start[i] + (int32_t)rnd(rnd(4) == 0 ? 400 : 20);
            sum += (size[i] + 63) & -64;
        }
        int64_t total = tfx_plan_offsets(n, size, start, end, off, scratch);
        cr_assert_leq(total, sum, "trial %d: total %lld above the sum %lld", trial,
                      (long long)total, (long long)sum);
        for (int64_t i = 0; i < n; i++) {
            cr_assert_eq(off[i] % 64, 0, "trial %d: offset %lld", trial, (long long)off[i]);
            cr_assert_leq(off[i] + size[i], total);
            for (int64_t j = 0; j < i; j++) {
                bool live = start[i] <= end[j] && start[j] <= end[i];
                bool disjoint = off[i] + size[i] <= off[j] || off[j] + size[j] <= off[i];
                cr_assert(!live || disjoint || size[i] == 0 || size[j] == 0,
                          "trial %d: buffers %lld and %lld overlap while both are live", trial,
                          (long long)i, (long long)j);
            }
        }
        cr_assert_eq(tfx_plan_offsets(n, size, start, end, off2, scratch), total);
        cr_assert(memcmp(off, off2, (size_t)n * sizeof *off) == 0, "trial %d: not deterministic",
                  trial);
    }
}

/* Everything the plan's liveness rules have a case for. */
static const char *looped_src =
    "use std.nn, std.attention\n"
    "model m(d = 16, heads = 2, layers = 3) {\n"
    "    input x: f32[T, d]\n"
    "    param e: f32[20, d]\n"
    "    h = x * 0.5 + 0.1\n"
    "    for l in 0..layers scope \"b.{l}\" {\n"
    "        a = mha(layernorm(h) scope \"ln\", heads, mask = causal) scope \"attn\"\n"
    "        h = h + a\n"
    "        h = h + mlp(layernorm(h) scope \"ln2\", 2 * d, act = gelu) scope \"mlp\"\n"
    "    }\n"
    "    param g: f32[d, d]\n"
    "    repeat 2 {\n"
    "        h = h + tanh(h) @ g\n"
    "    }\n"
    "    param q: f32[d]\n"
    "    repeat 4 as i until sum(h * q, axis = -1) > 0.0 {\n"
    "        h = h * 0.9 + sigmoid(h)\n"
    "    }\n"
    "    output y = h @ e^T\n"
    "    output z = exp(h) - h\n"
    "}\n";

Test(codegen_plan, looped_model_matches_O0_with_less_workspace)
{
    TtModel o0, o2;
    tt_model_build(&o0, looped_src, 0);
    tt_model_open(&o0, 5, 0.5f, 1);
    tt_model_build(&o2, looped_src, 2);
    tt_model_open(&o2, 5, 0.5f, 2);
    const int64_t Ts[] = { 1, 5, 33, 100 };
    for (size_t c = 0; c < sizeof Ts / sizeof Ts[0]; c++) {
        int64_t T = Ts[c];
        float *x = malloc((size_t)(T * 16) * sizeof *x);
        float *y0 = malloc((size_t)(T * 20) * sizeof *y0), *y2 = malloc((size_t)(T * 20) * sizeof *y2);
        float *z0 = malloc((size_t)(T * 16) * sizeof *z0), *z2 = malloc((size_t)(T * 16) * sizeof *z2);
        cr_assert(x && y0 && y2 && z0 && z2);
        tt_seed(7 + (uint64_t)T);
        for (int64_t i = 0; i < T * 16; i++)
            x[i] = tt_frand(1.0f);
        const void *in[1] = { x };
        int64_t shapes[1][6] = { { T, 16 } };
        void *out0[2] = { y0, z0 }, *out2[2] = { y2, z2 };
        cr_assert_eq(tt_model_run(&o0, in, shapes, out0), TFX_OK);
        cr_assert_eq(tt_model_run(&o2, in, shapes, out2), TFX_OK);
        // GEMM rounding (fma) and our own exp/tanh/erf make -O2 differ from -O0 by a few
        // ulp per op; a buffer reused too early would give O(1) errors
        double worst = 0;
        for (int64_t i = 0; i < T * 20; i++)
            worst = fmax(worst, fabs((double)y2[i] - y0[i]) / (1 + fabs((double)y0[i])));
        for (int64_t i = 0; i < T * 16; i++)
            worst = fmax(worst, fabs((double)z2[i] - z0[i]) / (1 + fabs((double)z0[i])));
        cr_expect(worst <= 1e-4, "T %lld: |O2 - O0| / (1 + |O0|) = %g", (long long)T, worst);
        int64_t syms[1] = { T };
        size_t w0 = o0.d->workspace_bytes(syms), w2 = o2.d->workspace_bytes(syms);
        cr_expect_lt(w2, w0 / 2, "T %lld: -O2 workspace %zu, -O0 %zu", (long long)T, w2, w0);
        free(x), free(y0), free(y2), free(z0), free(z2);
    }
    tt_model_close(&o0);
    tt_model_close(&o2);
}
