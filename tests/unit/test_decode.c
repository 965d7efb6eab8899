/* test_decode.c - the step entry (passes/decode.c, cg_step.c, runtime/rt_step.c): a
 * GPT-2-shaped model with random weights gives, through prefill and one-token steps with a
 * KV cache, the rows the plain forward (the -O0 lowering, the oracle) gives on the whole
 * sequence, within 1e-5 max abs (measured about 1e-6: only the summation order of the
 * shorter softmax rows and of the GEMM differ). Models that are not causal have no step
 * entry and say why; a full cache and bad capacities are clear errors. */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "tfx_test.h"
#include "tt_e2e.h"
#include "tt_model.h"

/* examples/gpt2.tfx at a small size (vocab 64, ctx 24, d 32, 4 heads, 2 layers). */
static const char *gpt2_small =
    "use std.nn, std.attention\n"
    "model gpt2(vocab = 64, ctx = 24, d = 32, heads = 4, layers = 2) {\n"
    "    input tokens: i32[T] where T <= ctx\n"
    "    param wte: f32[vocab, d] as \"transformer.wte.weight\"\n"
    "    param wpe: f32[ctx, d] as \"transformer.wpe.weight\"\n"
    "    x = wte[tokens] + wpe[0:T]\n"
    "    for l in 0..layers scope \"transformer.h.{l}\" {\n"
    "        x = x + mha(layernorm(x) scope \"ln_1\", heads, mask = causal) scope \"attn\"\n"
    "        x = x + mlp(layernorm(x) scope \"ln_2\", 4 * d, act = gelu_tanh) scope \"mlp\"\n"
    "    }\n"
    "    output logits = layernorm(x) scope \"transformer.ln_f\" @ wte^T\n"
    "}\n";

enum { V = 64, N = 20 };

/* The runtime's step API, taken from the model's .so. */
typedef struct StepApi {
    tfx_cache *(*cache_new)(tfx_model *, int64_t, tfx_error *);
    void (*cache_free)(tfx_cache *);
    int64_t (*cache_len)(const tfx_cache *);
    void (*cache_reset)(tfx_cache *);
    int (*step)(tfx_model *, tfx_cache *, const void *const *, const int64_t (*)[6],
                void *const *, tfx_error *);
    int (*has_step)(const tfx_model *);
    const char *(*why)(const tfx_model *);
} StepApi;

static void load_step_api(const TtModel *mo, StepApi *a)
{
    *(void **)&a->cache_new = dlsym(mo->h, "tfx_cache_new");
    *(void **)&a->cache_free = dlsym(mo->h, "tfx_cache_free");
    *(void **)&a->cache_len = dlsym(mo->h, "tfx_cache_len");
    *(void **)&a->cache_reset = dlsym(mo->h, "tfx_cache_reset");
    *(void **)&a->step = dlsym(mo->h, "tfx_model_step");
    *(void **)&a->has_step = dlsym(mo->h, "tfx_model_has_step");
    *(void **)&a->why = dlsym(mo->h, "tfx_model_no_step_reason");
    cr_assert(a->cache_new && a->cache_free && a->cache_len && a->cache_reset && a->step &&
              a->has_step && a->why, "the model .so lacks the step API");
}

static void tokens(int32_t *ids)
{
    for (int i = 0; i < N; i++)
        ids[i] = (int32_t)((i * 37 + 11) % V);
}

/* logits [N, V] of forward over all N tokens. */
static void full_forward(TtModel *mo, const int32_t *ids, float *out)
{
    const void *in[1] = { ids };
    int64_t shapes[1][6] = { { N } };
    void *o[1] = { out };
    cr_assert_eq(tt_model_run(mo, in, shapes, o), TFX_OK);
}

/* Runs tokens [from, from + T) as one step; returns the status. */
static int step(const StepApi *a, TtModel *mo, tfx_cache *c, const int32_t *ids, int64_t T,
                float *out, tfx_error *err)
{
    const void *in[1] = { ids };
    int64_t shapes[1][6] = { { T } };
    void *o[1] = { out };
    return a->step(mo->m, c, in, (const int64_t(*)[6])shapes, o, err);
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

/* Prefill 7 tokens, one 3-token step, then one token at a time: every row against the
 * oracle's row at the same position. */
static void check_steps_match(int opt)
{
    TtModel oracle, mo;
    tt_model_build(&oracle, gpt2_small, 0);
    tt_model_open(&oracle, 7, 0.3f, 1);
    tt_model_build(&mo, gpt2_small, opt);
    tt_model_open(&mo, 7, 0.3f, 2);
    StepApi a;
    load_step_api(&mo, &a);
    cr_assert_eq(a.has_step(mo.m), 1);
    int32_t ids[N];
    tokens(ids);
    static float want[N * V], got[N * V];
    full_forward(&oracle, ids, want);
    tfx_error err = { 0 };
    tfx_cache *c = a.cache_new(mo.m, 0, &err);
    cr_assert_not_null(c, "%s", err.message);
    const int64_t chunks[] = { 7, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    int64_t at = 0;
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
        int64_t T = chunks[k];
        cr_assert_eq(step(&a, &mo, c, ids + at, T, got + at * V, &err), TFX_OK, "%s", err.message);
        at += T;
        cr_assert_eq(a.cache_len(c), at);
    }
    cr_assert_eq(at, N);
    double d = max_abs_diff(got, want, (size_t)N * V);
    cr_expect_leq(d, 1e-5, "-O%d: step logits differ from the -O0 forward by %g", opt, d);
    // the cache starts over after a reset: prefill all N at once
    a.cache_reset(c);
    cr_assert_eq(step(&a, &mo, c, ids, N, got, &err), TFX_OK, "%s", err.message);
    d = max_abs_diff(got, want, (size_t)N * V);
    cr_expect_leq(d, 1e-5, "-O%d: prefill logits differ from the -O0 forward by %g", opt, d);
    a.cache_free(c);
    tt_model_close(&mo);
    tt_model_close(&oracle);
}

Test(decode, gpt2_steps_match_the_O0_forward_at_O0)
{
    check_steps_match(0);
}

Test(decode, gpt2_steps_match_the_O0_forward_at_O2)
{
    check_steps_match(2);
}

Test(decode, full_cache_and_bad_capacity_are_clear_errors)
{
    TtModel mo;
    tt_model_build(&mo, gpt2_small, 1);
    tt_model_open(&mo, 3, 0.3f, 1);
    StepApi a;
    load_step_api(&mo, &a);
    int32_t ids[N];
    tokens(ids);
    static float out[N * V];
    tfx_error err = { 0 };
    cr_assert_null(a.cache_new(mo.m, 25, &err));
    cr_assert_eq(err.code, TFX_ERR_ARG);
    cr_assert_str_eq(err.message, "model 'gpt2': a cache of 25 tokens; the capacity must be "
                     "1 .. 24 (the bound of 'T')");
    tfx_cache *c = a.cache_new(mo.m, 8, &err);
    cr_assert_not_null(c, "%s", err.message);
    cr_assert_eq(step(&a, &mo, c, ids, 6, out, &err), TFX_OK, "%s", err.message);
    cr_assert_eq(step(&a, &mo, c, ids + 6, 3, out, &err), TFX_ERR_CACHE_FULL);
    cr_assert_str_eq(err.message, "model 'gpt2': the cache holds 6 of 8 tokens; 3 more do not fit");
    cr_assert_eq(a.cache_len(c), 6, "a refused step leaves the cache as it was");
    cr_assert_eq(step(&a, &mo, c, ids + 6, 2, out, &err), TFX_OK, "%s", err.message);
    cr_assert_eq(step(&a, &mo, c, ids + 8, 1, out, &err), TFX_ERR_CACHE_FULL);
    cr_assert_eq(step(&a, &mo, NULL, ids, 1, out, &err), TFX_ERR_ARG);
    a.cache_free(c);
    tt_model_close(&mo);
}

Test(decode, encoder_has_no_step_entry)
{
    size_t len;
    char *path = tt_src_path("examples/encoder.tfx");
    char *src = tt_slurp(path, &len);
    free(path);
    cr_assert_not_null(src);
    TtModel mo;
    tt_model_build(&mo, src, 1);
    free(src);
    tt_model_open(&mo, 3, 0.3f, 1);
    StepApi a;
    load_step_api(&mo, &a);
    cr_assert_eq(a.has_step(mo.m), 0);
    const char *why = "attention over the token axis without a causal mask: the model is not causal";
    cr_assert_str_eq(a.why(mo.m), why);
    tfx_error err = { 0 };
    cr_assert_null(a.cache_new(mo.m, 0, &err));
    cr_assert_eq(err.code, TFX_ERR_NO_STEP);
    float x[4 * 64] = { 0 }, y[4 * 64];
    const void *in[1] = { x };
    int64_t shapes[1][6] = { { 4, 64 } };
    void *o[1] = { y };
    cr_assert_eq(a.step(mo.m, NULL, in, (const int64_t(*)[6])shapes, o, &err), TFX_ERR_NO_STEP);
    char want[256];
    snprintf(want, sizeof want, "model '%s' has no step entry: %s", mo.d->name, why);
    cr_assert_str_eq(err.message, want);
    tt_model_close(&mo);
}

/* The IR: one cache slot per key and value per layer, qoff on the causal softmax, and a
 * one-line reason where there is no @step. */
Test(decode, ir_dump_shows_step_or_why_not)
{
    CompileResult r;
    tt_compile_string("m.tfx", gpt2_small, TFX_EMIT_IR, &r);
    cr_assert_eq(r.status, 0, "%s", buf_str(&r.diags));
    const char *ir = buf_str(&r.out);
    cr_assert_not_null(strstr(ir, "func @step(%tokens: i32[T])"));
    cr_assert_not_null(strstr(ir, "cache %k, %l {range = [P, T + P], slot = 0} : f32[T + P, 32]"));
    cr_assert_not_null(strstr(ir, "cache %v, %l {range = [P, T + P], slot = 1} : f32[T + P, 32]"));
    cr_assert_not_null(strstr(ir, "{axis = 2, mask = causal, qoff = P} : f32[4, T, T + P]"));
    cr_assert_not_null(strstr(ir, "slice %wpe {axis = 0, range = [P, T + P]} : f32[T, 32]"));
    cr_assert_null(strstr(ir, "# no @step"));
    compile_result_dispose(&r);
    const char *cumsum = "model m() {\n input x: f32[T, 4]\n output y = cumsum(x, axis = 0)\n}\n";
    tt_compile_string("c.tfx", cumsum, TFX_EMIT_IR, &r);
    cr_assert_eq(r.status, 0, "%s", buf_str(&r.diags));
    cr_assert_not_null(strstr(buf_str(&r.out), "\n# no @step: 'cumsum' works along the token axis\n"),
                       "%s", buf_str(&r.out));
    compile_result_dispose(&r);
}

/* tfxrun generates the same greedy tokens with the KV cache as by recomputing the whole
 * context, on the demo checkpoint, past the context so that --slide restarts the cache. */
Test(decode, tfxrun_cached_generation_matches_recompute, .timeout = 600)
{
    const char *tfxc = getenv("TFXC"), *tfxrun = getenv("TFXRUN");
    cr_assert(tfxc && tfxrun, "TFXC and TFXRUN must be set (run through ctest)");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/decode", TFX_BINARY_DIR);
    cr_assert_eq(tt_sh("mkdir -p %s && %s examples/gpt2.tfx -Dvocab=256 -Dctx=128 -Dd=128 "
                       "-Dheads=4 -Dlayers=4 -o %s/demo.so", dir, tfxc, dir), 0);
    const char *run = "%s %s/demo.so --weights models/demo.safetensors --prompt 'Q: Why?' "
                      "--generate 150 --slide %s > %s/%s.txt";
    cr_assert_eq(tt_sh(run, tfxrun, dir, "", dir, "cache"), 0);
    cr_assert_eq(tt_sh(run, tfxrun, dir, "--no-cache", dir, "recompute"), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/cache.txt", dir);
    char *got = tt_slurp(path, NULL);
    snprintf(path, sizeof path, "%s/recompute.txt", dir);
    char *want = tt_slurp(path, NULL);
    cr_assert(got && want);
    cr_expect_gt(strlen(want), 150, "150 generated bytes expected");
    cr_expect_str_eq(got, want);
    free(got);
    free(want);
}
