/* bench_model.c - times tfx_model_forward of any model.so compiled by tfxc (dlopen'ed),
 * for the benchmark harness (bench/bench.py runs it; see docs/performance.md).
 *
 *   bench_model MODEL.so [--weights W.safetensors] [--threads N] [--warmup N] [--reps N]
 *               [--cap SECONDS] [--save OUT.f32] [--plan] SYM=VALUE ...
 *
 * --plan prints only `RESULT workspace_bytes=.. weight_bytes=..` for these symbol values
 * and runs nothing (the harness uses it to skip cases that would not fit in memory).
 * Without --weights every weight is bound to seeded random values. i32 inputs get token
 * ids below 1000, f32 inputs seeded values in [-1, 1). Runs --warmup untimed forwards,
 * then up to --reps timed ones, stopping early once --cap seconds of timed runs are spent
 * (at least one always runs). Prints one line:
 *   RESULT median_ms=.. min_ms=.. reps=.. weight_bytes=.. workspace_bytes=.. io_bytes=..
 *          maxrss_kb=..
 * io_bytes are the caller's input and output buffers (this program's, not the runtime's).
 * maxrss_kb is this program's peak resident set after the last forward: VmHWM from
 * /proc/self/status, which starts afresh at exec (getrusage's ru_maxrss does not: after a
 * fork and exec it still holds the parent's peak, a large Python process's here).
 *
 * --decode times the step entry instead (a model with one i32[T] input and a KV cache,
 * docs/runtime.md): with T=C it prefills C - warmup - reps tokens, then runs one-token
 * steps up to context C, the last `reps` timed, and prints
 *   RESULT decode_ms=.. (median per token) decode_min_ms=.. prefill_ms=.. context=C reps=.. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfx_abi.h"
#include "tfx_dl.h"

#define MAXT 16     /* inputs, outputs, symbols, timed runs are bounded by these */
#define MAXREPS 1000

typedef struct Opts {
    const char *model, *weights, *save;
    int threads, warmup, reps;
    int is_plan;              /* --plan: report sizes, run nothing */
    int is_decode;            /* --decode: time one-token steps with a KV cache */
    double cap;
    int nsyms;
    const char *syms[MAXT];   /* "NAME=VALUE" arguments */
} Opts;

static int64_t numel(const int64_t *shape, int rank)
{
    int64_t n = 1;
    for (int k = 0; k < rank; k++)
        n *= shape[k];
    return n;
}

static int parse(int argc, char **argv, Opts *o)
{
    memset(o, 0, sizeof *o);
    o->warmup = 1;
    o->reps = 5;
    o->cap = 30.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--weights") && v) o->weights = argv[++i];
        else if (!strcmp(a, "--save") && v) o->save = argv[++i];
        else if (!strcmp(a, "--threads") && v) o->threads = atoi(argv[++i]);
        else if (!strcmp(a, "--warmup") && v) o->warmup = atoi(argv[++i]);
        else if (!strcmp(a, "--reps") && v) o->reps = atoi(argv[++i]);
        else if (!strcmp(a, "--cap") && v) o->cap = atof(argv[++i]);
        else if (!strcmp(a, "--plan")) o->is_plan = 1;
        else if (!strcmp(a, "--decode")) o->is_decode = 1;
        else if (strchr(a, '=') && a[0] != '-' && o->nsyms < MAXT) o->syms[o->nsyms++] = a;
        else if (a[0] != '-' && !o->model) o->model = a;
        else {
            fprintf(stderr, "bench_model: unknown option or missing value: %s\n", a);
            return -1;
        }
    }
    if (!o->model || o->reps < 1 || o->reps > MAXREPS || o->warmup < 0) {
        fprintf(stderr, "usage: bench_model MODEL.so [--weights W] [--threads N] [--warmup N] "
                        "[--reps N<=%d] [--cap S] [--save F] SYM=VALUE ...\n", MAXREPS);
        return -1;
    }
    return 0;
}

/* Binds every weight to seeded random values in [-0.02, 0.02); the buffers are kept in
 * bufs (freed by the caller). Returns the total bytes bound, or -1. */
static int64_t bind_random(const BenchApi *api, tfx_model *m, float **bufs, tfx_error *err)
{
    unsigned long long seed = 42;
    int64_t bytes = 0;
    for (uint32_t w = 0; w < api->nweights(m); w++) {
        int64_t shape[6];
        int64_t n = numel(shape, api->weight_shape(m, w, shape));
        bufs[w] = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (!bufs[w])
            return -1;
        for (int64_t k = 0; k < n; k++)
            bufs[w][k] = 0.02f * bench_rand(&seed);
        if (api->bind(m, api->weight_name(m, w), bufs[w], err) != TFX_OK)
            return -1;
        bytes += n * (int64_t)sizeof(float);
    }
    return bytes;
}

static int64_t weight_bytes(const BenchApi *api, tfx_model *m)
{
    int64_t bytes = 0;
    for (uint32_t w = 0; w < api->nweights(m); w++) {
        int64_t shape[6];
        bytes += numel(shape, api->weight_shape(m, w, shape)) * 4;   // f32 or i32
    }
    return bytes;
}

/* Reads "NAME=VALUE" arguments into syms (in the model's symbol order); -1 if one is
 * unknown or a symbol is left without a value. */
static int parse_syms(const BenchApi *api, tfx_model *m, const Opts *o, int64_t *syms)
{
    uint32_t ns = api->nsyms(m);
    for (uint32_t s = 0; s < ns; s++)
        syms[s] = -1;
    for (int a = 0; a < o->nsyms; a++) {
        const char *eq = strchr(o->syms[a], '=');
        uint32_t s = 0;
        while (s < ns && (strlen(api->sym_name(m, s)) != (size_t)(eq - o->syms[a]) ||
                          strncmp(api->sym_name(m, s), o->syms[a], (size_t)(eq - o->syms[a]))))
            s++;
        if (s == ns) {
            fprintf(stderr, "bench_model: the model has no symbol '%s'\n", o->syms[a]);
            return -1;
        }
        syms[s] = strtoll(eq + 1, NULL, 10);
    }
    for (uint32_t s = 0; s < ns; s++) {
        if (syms[s] < 0) {
            fprintf(stderr, "bench_model: give a value for symbol '%s'\n", api->sym_name(m, s));
            return -1;
        }
    }
    return 0;
}

/* Peak resident set in KiB (VmHWM), or -1 where /proc is missing. */
static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmHWM:", 6))
            kb = strtol(line + 6, NULL, 10);
    }
    if (f)
        fclose(f);
    return kb;
}

typedef int (*StepFn)(tfx_model *, tfx_cache *, const void *const *, const int64_t (*)[6],
                      void *const *, tfx_error *);

/* --decode: prefill, then time one-token steps (see the banner). ids [C], out [C * V]. */
static int bench_decode(const BenchApi *api, tfx_model *m, const Opts *o, const int32_t *ids,
                        int64_t C, void **outputs)
{
    tfx_cache *(*cache_new)(tfx_model *, int64_t, tfx_error *);
    void (*cache_free)(tfx_cache *);
    StepFn step;
    *(void **)&cache_new = dlsym(api->so, "tfx_cache_new");
    *(void **)&cache_free = dlsym(api->so, "tfx_cache_free");
    *(void **)&step = dlsym(api->so, "tfx_model_step");
    int64_t n = o->warmup + o->reps, P = C - n;
    tfx_error err;
    tfx_cache *c = cache_new && cache_free && step ? cache_new(m, C, &err) : NULL;
    if (!c || P < 1 || api->ninputs(m) != 1) {
        fprintf(stderr, "bench_model: --decode: %s\n", !c ? (cache_new ? err.message : "no step API")
                                                         : "needs one input and C > warmup + reps");
        if (c)
            cache_free(c);
        return 1;
    }
    static double times[MAXREPS];
    double prefill = 0;
    int nt = 0, rc = 0;
    for (int64_t at = 0; at < C && rc == 0; at += at ? 1 : P) {
        const void *in[1] = { ids + at };
        int64_t shape[1][6] = { { at ? 1 : P } };
        double ts = bench_now();
        rc = step(m, c, in, (const int64_t(*)[6])shape, outputs, &err) != TFX_OK;
        double dt = bench_now() - ts;
        if (at == 0)
            prefill = dt;
        else if (at >= P + o->warmup)
            times[nt++] = dt;
    }
    cache_free(c);
    if (rc) {
        fprintf(stderr, "bench_model: step: %s\n", err.message);
        return 1;
    }
    double med = bench_median(times, nt);
    printf("RESULT decode_ms=%.4f decode_min_ms=%.4f prefill_ms=%.4f context=%" PRId64
           " reps=%d\n", 1e3 * med, 1e3 * times[0], 1e3 * prefill, C, nt);
    return 0;
}

static int bench(const BenchApi *api, tfx_model *m, const Opts *o, int64_t wbytes)
{
    int64_t syms[MAXT], shapes[MAXT][6];
    void *inputs[MAXT] = { 0 }, *outputs[MAXT] = { 0 };
    int64_t out0_n = 0, io_bytes = 0;
    int rc = 1;
    tfx_error err;
    if (api->nsyms(m) > MAXT || api->ninputs(m) > MAXT || api->noutputs(m) > MAXT ||
        parse_syms(api, m, o, syms) != 0)
        return 1;
    const TfxModelDesc *d = api->desc();
    size_t ws = d->workspace_bytes ? d->workspace_bytes(syms) : 0;
    if (o->is_plan) {
        printf("RESULT workspace_bytes=%zu weight_bytes=%" PRId64 "\n", ws, wbytes);
        return 0;
    }
    unsigned long long seed = 7;
    for (uint32_t i = 0; i < api->ninputs(m); i++) {
        int rank;
        if (api->in_shape(m, i, syms, shapes[i], &rank) != TFX_OK)
            goto done;
        int64_t n = numel(shapes[i], rank);
        inputs[i] = malloc((size_t)(n ? n : 1) * 4);
        io_bytes += n * 4;
        if (!inputs[i])
            goto done;
        for (int64_t k = 0; k < n; k++) {
            if (api->input_dtype(m, i) == TFX_DTYPE_I32)
                ((int32_t *)inputs[i])[k] = (int32_t)((k * 7919 + 13) % 1000);
            else
                ((float *)inputs[i])[k] = bench_rand(&seed);
        }
    }
    for (uint32_t i = 0; i < api->noutputs(m); i++) {
        int64_t shape[6];
        int rank;
        if (api->out_shape(m, i, syms, shape, &rank) != TFX_OK)
            goto done;
        int64_t n = numel(shape, rank);
        if (i == 0)
            out0_n = n;
        outputs[i] = calloc((size_t)(n ? n : 1), 4);
        io_bytes += n * 4;
        if (!outputs[i])
            goto done;
    }
    if (o->is_decode) {
        rc = bench_decode(api, m, o, inputs[0], shapes[0][0], outputs);
        goto done;
    }
    static double times[MAXREPS];
    int nt = 0;
    double spent = 0;
    for (int r = 0; r < o->warmup + o->reps; r++) {
        if (r >= o->warmup && nt > 0 && spent >= o->cap)
            break;
        double t0 = bench_now();
        if (api->forward(m, (const void *const *)inputs, (const int64_t (*)[6])shapes, outputs,
                         &err) != TFX_OK) {
            fprintf(stderr, "bench_model: forward: %s\n", err.message);
            goto done;
        }
        double dt = bench_now() - t0;
        if (r >= o->warmup) {
            times[nt++] = dt;
            spent += dt;
        }
    }
    double med = bench_median(times, nt);   // sorts: times[0] is the minimum
    printf("RESULT median_ms=%.4f min_ms=%.4f reps=%d weight_bytes=%" PRId64
           " workspace_bytes=%zu io_bytes=%" PRId64 " maxrss_kb=%ld\n",
           1e3 * med, 1e3 * times[0], nt, wbytes, ws, io_bytes, peak_rss_kb());
    if (o->save) {
        FILE *f = fopen(o->save, "wb");
        if (!f || fwrite(outputs[0], 4, (size_t)out0_n, f) != (size_t)out0_n) {
            fprintf(stderr, "bench_model: cannot write '%s'\n", o->save);
            if (f)
                fclose(f);
            goto done;
        }
        fclose(f);
    }
    rc = 0;
done:
    for (int i = 0; i < MAXT; i++) {
        free(inputs[i]);
        free(outputs[i]);
    }
    return rc;
}

int main(int argc, char **argv)
{
    Opts o;
    BenchApi api;
    if (parse(argc, argv, &o) != 0)
        return 2;
    if (bench_api_load(&api, o.model) != 0)
        return 1;
    tfx_error err;
    tfx_options opt = { .nthreads = o.threads };
    tfx_model *m = api.open(api.desc(), &opt, &err);
    if (!m) {
        fprintf(stderr, "bench_model: open: %s\n", err.message);
        return 1;
    }
    uint32_t nw = api.nweights(m);
    float **bufs = calloc(nw ? nw : 1, sizeof *bufs);
    int64_t wbytes = -1;
    if (o.is_plan || (o.weights && api.load(m, o.weights, &err) == TFX_OK))
        wbytes = weight_bytes(&api, m);
    else if (!o.weights && bufs)
        wbytes = bind_random(&api, m, bufs, &err);
    int rc = 1;
    if (wbytes < 0)
        fprintf(stderr, "bench_model: weights: %s\n", err.message);
    else
        rc = bench(&api, m, &o, wbytes);
    api.close(m);
    for (uint32_t w = 0; bufs && w < nw; w++)
        free(bufs[w]);
    free(bufs);
    return rc;
}
