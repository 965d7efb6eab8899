/* tfxrun.c - runs a model compiled by tfxc: opens MODEL.so with dlopen, takes the
 * runtime's tfx_* API from it, binds weights from a safetensors file, reads inputs (token
 * ids, a text prompt for byte-level models, or .npy tensors), runs forward and prints or
 * saves the outputs; for language models it generates text (greedy, or top-k sampling
 * with a temperature and a seed), through the model's step entry and a KV cache when it
 * has one (--no-cache recomputes the whole context per token). Exit status: 0 success, 1 run-time error, 2 usage. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/tfx.h"
#include "../runtime/tfx_abi.h"

/* The runtime API, looked up in the model's .so. */
typedef struct Api {
    void *so;
    const TfxModelDesc *(*desc)(void);
    tfx_model *(*open)(const TfxModelDesc *, const tfx_options *, tfx_error *);
    void (*close)(tfx_model *);
    int (*load)(tfx_model *, const char *, tfx_error *);
    const char *(*warnings)(const tfx_model *);
    int (*forward)(tfx_model *, const void *const *, const int64_t (*)[6], void *const *, tfx_error *);
    int (*out_shape)(const tfx_model *, uint32_t, const int64_t *, int64_t[6], int *);
    const char *(*status_name)(int);
    uint32_t (*ninputs)(const tfx_model *);
    const char *(*input_name)(const tfx_model *, uint32_t);
    int (*input_dtype)(const tfx_model *, uint32_t);
    int (*input_rank)(const tfx_model *, uint32_t);
    uint32_t (*noutputs)(const tfx_model *);
    const char *(*output_name)(const tfx_model *, uint32_t);
    uint32_t (*nsyms)(const tfx_model *);
    int64_t (*sym_max)(const tfx_model *, uint32_t);
    /* the step API: looked up without failing, since only generation uses it */
    tfx_cache *(*cache_new)(tfx_model *, int64_t, tfx_error *);
    void (*cache_free)(tfx_cache *);
    void (*cache_reset)(tfx_cache *);
    int (*step)(tfx_model *, tfx_cache *, const void *const *, const int64_t (*)[6],
                void *const *, tfx_error *);
} Api;

typedef struct Opts {
    const char *model, *weights, *tokens, *tokens_file, *prompt, *save;
    const char *inputs[8];
    int ninputs, threads, strict, generate, top_k, print_all, slide, no_cache, time;
    double temperature;
    uint64_t seed;
} Opts;

static int usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "tfxrun: error: %s\n", msg);
    fputs("usage: tfxrun MODEL.so --weights FILE.safetensors [inputs] [options]\n"
          "inputs (for the model's inputs, in order):\n"
          "  --tokens \"1 2 3\"      token ids for an i32[T] input\n"
          "  --tokens-file FILE    the same, read from a file\n"
          "  --prompt TEXT         a byte-level prompt (token id = byte value)\n"
          "  --input NAME=X.npy    a float32 tensor from a .npy file\n"
          "options:\n"
          "  --generate N          generate N tokens from the first output's last row\n"
          "  --temperature T       sampling temperature (0 = greedy, the default)\n"
          "  --top-k K             sample among the K most likely tokens (0 = all)\n"
          "  --seed S              random seed for sampling (default 1)\n"
          "  --slide               when the context is full, drop the oldest token and go on\n"
          "  --no-cache            generate by running forward on the whole context per token,\n"
          "                        not prefill + one-token steps with a KV cache\n"
          "  --time                print the prefill time and the time per generated token\n"
          "                        (default: stop)\n"
          "  --save FILE.npy       write the first output as float32 .npy\n"
          "  --print               print every output value (default: shape and a summary)\n"
          "  --threads N           threads for forward (default: all cores)\n"
          "  --strict              tensors in the weights file that the model lacks are errors\n",
          msg ? stderr : stdout);
    return msg ? 2 : 0;
}

static int parse_args(int argc, char **argv, Opts *o)
{
    memset(o, 0, sizeof *o);
    o->seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(NULL);
        else if (!strcmp(a, "--weights") && v) o->weights = v;
        else if (!strcmp(a, "--tokens") && v) o->tokens = v;
        else if (!strcmp(a, "--tokens-file") && v) o->tokens_file = v;
        else if (!strcmp(a, "--prompt") && v) o->prompt = v;
        else if (!strcmp(a, "--save") && v) o->save = v;
        else if (!strcmp(a, "--input") && v && o->ninputs < 8) o->inputs[o->ninputs++] = v;
        else if (!strcmp(a, "--generate") && v) o->generate = atoi(v);
        else if (!strcmp(a, "--temperature") && v) o->temperature = atof(v);
        else if (!strcmp(a, "--top-k") && v) o->top_k = atoi(v);
        else if (!strcmp(a, "--seed") && v) o->seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--threads") && v) o->threads = atoi(v);
        else if (!strcmp(a, "--strict")) { o->strict = 1; takes = 0; }
        else if (!strcmp(a, "--print")) { o->print_all = 1; takes = 0; }
        else if (!strcmp(a, "--slide")) { o->slide = 1; takes = 0; }
        else if (!strcmp(a, "--no-cache")) { o->no_cache = 1; takes = 0; }
        else if (!strcmp(a, "--time")) { o->time = 1; takes = 0; }
        else if (a[0] != '-' && !o->model) { o->model = a; takes = 0; }
        else {
            fprintf(stderr, "tfxrun: error: unknown option or missing value: %s (see tfxrun --help)\n", a);
            return 2;
        }
        i += takes;
    }
    if (!o->model) return usage("no model given");
    if (!o->weights) return usage("--weights is required");
    if (o->generate < 0 || o->top_k < 0 || o->temperature < 0) return usage("negative --generate, --top-k or --temperature");
    return -1;
}

static int load_api(Api *api, const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s%s", strchr(path, '/') ? "" : "./", path);
    api->so = dlopen(buf, RTLD_NOW | RTLD_LOCAL);
    if (!api->so) {
        fprintf(stderr, "tfxrun: error: cannot load '%s': %s\n", path, dlerror());
        return 1;
    }
#define SYM(field, name)                                                          \
    do {                                                                          \
        *(void **)&api->field = dlsym(api->so, name);                             \
        if (!api->field) {                                                        \
            fprintf(stderr, "tfxrun: error: '%s' is not a tfxc model (no %s)\n", path, name); \
            return 1;                                                             \
        }                                                                         \
    } while (0)
    SYM(desc, "tfx_model_desc");
    SYM(open, "tfx_model_open");
    SYM(close, "tfx_model_close");
    SYM(load, "tfx_model_load_weights");
    SYM(warnings, "tfx_model_warnings");
    SYM(forward, "tfx_model_forward");
    SYM(out_shape, "tfx_model_output_shape");
    SYM(status_name, "tfx_status_name");
    SYM(ninputs, "tfx_model_ninputs");
    SYM(input_name, "tfx_model_input_name");
    SYM(input_dtype, "tfx_model_input_dtype");
    SYM(input_rank, "tfx_model_input_rank");
    SYM(noutputs, "tfx_model_noutputs");
    SYM(output_name, "tfx_model_output_name");
    SYM(nsyms, "tfx_model_nsyms");
    SYM(sym_max, "tfx_model_sym_max");
#undef SYM
    *(void **)&api->cache_new = dlsym(api->so, "tfx_cache_new");
    *(void **)&api->cache_free = dlsym(api->so, "tfx_cache_free");
    *(void **)&api->cache_reset = dlsym(api->so, "tfx_cache_reset");
    *(void **)&api->step = dlsym(api->so, "tfx_model_step");
    return 0;
}

/* ---- inputs ---- */

typedef struct Tensor {
    void   *data;
    int64_t shape[6];
    int     rank;
    size_t  cap;  /* elements allocated */
} Tensor;

static int read_tokens(const char *text, Tensor *t)
{
    size_t cap = 64, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == ',' || *p == '\r')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "tfxrun: error: bad token id near '%.20s'\n", p);
            free(ids);
            return 1;
        }
        if (n == cap)
            ids = realloc(ids, (cap *= 2) * sizeof *ids);
        ids[n++] = (int32_t)v;
        p = end;
    }
    t->data = ids;
    t->cap = cap;
    t->rank = 1;
    t->shape[0] = (int64_t)n;
    return 0;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)(n < 0 ? 0 : n) + 1);
    size_t got = n > 0 ? fread(s, 1, (size_t)n, f) : 0;
    s[got] = '\0';
    fclose(f);
    return s;
}

/* Reads a little-endian float32 C-order .npy (format 1.0 or 2.0). */
static int read_npy(const char *path, Tensor *t)
{
    FILE *f = fopen(path, "rb");
    unsigned char pre[12];
    if (!f || fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        fprintf(stderr, "tfxrun: error: '%s' is not a .npy file\n", path);
        if (f) fclose(f);
        return 1;
    }
    size_t hlen = pre[8] | (size_t)pre[9] << 8;
    if (pre[6] >= 2) {
        if (fread(pre + 10, 1, 2, f) != 2) { fclose(f); return 1; }
        hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    }
    char *h = calloc(1, hlen + 1);
    int bad = fread(h, 1, hlen, f) != hlen || !strstr(h, "'descr': '<f4'") || strstr(h, "'fortran_order': True");
    char *sp = strstr(h, "'shape': (");
    t->rank = 0;
    size_t n = 1;
    for (char *p = sp ? sp + 10 : NULL; !bad && p && *p && *p != ')' && t->rank < 6;) {
        long v = strtol(p, &p, 10);
        t->shape[t->rank++] = v;
        n *= (size_t)v;
        while (*p == ',' || *p == ' ') p++;
    }
    free(h);
    if (bad || !sp) {
        fprintf(stderr, "tfxrun: error: '%s': only float32 little-endian C-order .npy files are read\n", path);
        fclose(f);
        return 1;
    }
    t->data = malloc(n * 4 + 4);
    t->cap = n;
    if (fread(t->data, 4, n, f) != n) {
        fprintf(stderr, "tfxrun: error: '%s' is truncated\n", path);
        fclose(f);
        return 1;
    }
    fclose(f);
    return 0;
}

static int write_npy(const char *path, const float *data, const int64_t *shape, int rank)
{
    char h[256];
    int k = snprintf(h, sizeof h, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        k += snprintf(h + k, sizeof h - (size_t)k, "%s%lld%s", i ? ", " : "", (long long)shape[i],
                      rank == 1 ? "," : "");
        n *= (size_t)shape[i];
    }
    k += snprintf(h + k, sizeof h - (size_t)k, "), }");
    while ((k + 11) % 64) h[k++] = ' ';
    h[k++] = '\n';
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "tfxrun: error: cannot write '%s'\n", path);
        return 1;
    }
    unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(k & 0xff), (unsigned char)(k >> 8) };
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(h, 1, (size_t)k, f) == (size_t)k &&
             fwrite(data, 4, n, f) == n;
    ok = (fclose(f) == 0) && ok;
    if (!ok)
        fprintf(stderr, "tfxrun: error: cannot write '%s'\n", path);
    return !ok;
}

/* ---- running ---- */

typedef struct Run {
    Api                *api;
    const TfxModelDesc *desc;
    tfx_model          *m;
    Tensor              in[8];
    uint32_t            nin;
    float              *out[8];
    int64_t             out_shape[8][6];
    int                 out_rank[8];
} Run;

static int fail(Run *r, const tfx_error *e)
{
    fprintf(stderr, "tfxrun: error: %s: %s\n", r->api->status_name(e->code), e->message);
    return 1;
}

/* Symbol values from the input shapes: a dimension that is exactly one symbol binds it
 * (the runtime checks everything again in forward). */
static void bind_syms(const Run *r, int64_t *syms)
{
    for (uint32_t i = 0; i < r->desc->nsyms && i < 16; i++)
        syms[i] = 1;
    for (uint32_t i = 0; i < r->nin; i++) {
        const TfxTensorDesc *t = &r->desc->inputs[i];
        for (int d = 0; d < t->rank && d < r->in[i].rank; d++) {
            const TfxDimDesc *dd = &t->dims[d];
            if (dd->sym >= 0 && dd->sym < 16 && dd->coef == 1 && dd->c == 0 && dd->div == 1)
                syms[dd->sym] = r->in[i].shape[d];
        }
    }
}

/* Sizes r->out for the outputs at these symbol values. */
static int alloc_outputs(Run *r, const int64_t *syms)
{
    uint32_t nout = r->desc->noutputs < 8 ? r->desc->noutputs : 8;
    for (uint32_t i = 0; i < nout; i++) {
        if (r->api->out_shape(r->m, i, syms, r->out_shape[i], &r->out_rank[i]) != TFX_OK) {
            fprintf(stderr, "tfxrun: error: the inputs' shapes do not fit the model\n");
            return 1;
        }
        size_t n = 1;
        for (int d = 0; d < r->out_rank[i]; d++)
            n *= (size_t)r->out_shape[i][d];
        free(r->out[i]);
        r->out[i] = calloc(n + 1, sizeof(float));
    }
    return 0;
}

static int forward(Run *r)
{
    const void *ins[8];
    int64_t shapes[8][6] = { { 0 } };
    for (uint32_t i = 0; i < r->nin; i++) {
        ins[i] = r->in[i].data;
        memcpy(shapes[i], r->in[i].shape, sizeof shapes[i]);
    }
    int64_t syms[16];
    bind_syms(r, syms);
    tfx_error e = { 0 };
    if (alloc_outputs(r, syms))
        return 1;
    if (r->api->forward(r->m, ins, (const int64_t(*)[6])shapes, (void *const *)r->out, &e) != TFX_OK)
        return fail(r, &e);
    return 0;
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Picks the next token from one row of logits [V]. */
static int32_t pick(const float *logits, int64_t V, const Opts *o, uint64_t *rng)
{
    int64_t best = 0;
    for (int64_t v = 1; v < V; v++)
        if (logits[v] > logits[best])
            best = v;
    if (o->temperature <= 0)
        return (int32_t)best;
    int64_t k = o->top_k > 0 && o->top_k < V ? o->top_k : V;
    /* the k largest, by repeated selection (k is small in practice) */
    int64_t *idx = malloc((size_t)k * sizeof *idx);
    double *p = malloc((size_t)k * sizeof *p);
    char *used = calloc((size_t)V, 1);
    double sum = 0;
    for (int64_t j = 0; j < k; j++) {
        int64_t b = -1;
        for (int64_t v = 0; v < V; v++)
            if (!used[v] && (b < 0 || logits[v] > logits[b]))
                b = v;
        used[b] = 1;
        idx[j] = b;
        p[j] = exp((logits[b] - logits[best]) / o->temperature);
        sum += p[j];
    }
    double u = (double)(rng_next(rng) >> 11) / 9007199254740992.0 * sum;
    int64_t choice = idx[k - 1];
    for (int64_t j = 0; j < k; j++) {
        if (u < p[j]) {
            choice = idx[j];
            break;
        }
        u -= p[j];
    }
    free(idx);
    free(p);
    free(used);
    return (int32_t)choice;
}

static void put_token(int32_t t, int text)
{
    if (text)
        putchar(t >= 32 || t == '\n' || t == '\t' ? t : '?');
    else
        printf(" %d", t);
    fflush(stdout);
}

/* Runs tokens [from, T) of the token input (the only input) as one step after the `from`
 * tokens in the cache; the outputs get their rows. */
static int step(Run *r, tfx_cache *c, int64_t from)
{
    const Tensor *t = &r->in[0];
    int64_t n = t->shape[0] - from, shapes[8][6] = { { n } }, syms[16];
    for (uint32_t i = 0; i < 16; i++)
        syms[i] = 1;
    syms[r->desc->step_sym] = n;
    if (alloc_outputs(r, syms))
        return 1;
    const void *ins[1] = { (const int32_t *)t->data + from };
    tfx_error e = { 0 };
    if (r->api->step(r->m, c, ins, (const int64_t(*)[6])shapes, (void *const *)r->out, &e) != TFX_OK)
        return fail(r, &e);
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Whether generation can use the step entry: the model has one, the runtime exports the
 * API, the token ids are the only input and --no-cache was not given. */
static int use_cache(const Run *r, const Opts *o)
{
    return !o->no_cache && r->desc->step && r->api->step && r->api->cache_new &&
           r->nin == 1 && r->desc->step_sym >= 0 && (uint32_t)r->desc->step_sym < 16;
}

/* Generates o->generate tokens from the last row of the first output. With the cache, a
 * call runs only the tokens the cache lacks (the prompt first, then one at a time); when
 * the context is full and --slide drops the oldest token, every position shifts, so the
 * cache starts over with the remaining tokens. */
static int generate(Run *r, const Opts *o, int text)
{
    Tensor *t = &r->in[0];
    int cached_path = use_cache(r, o);
    int64_t max = r->desc->nsyms ? r->desc->syms[cached_path ? r->desc->step_sym : 0].max : 0;
    uint64_t rng = o->seed ? o->seed : 1;
    tfx_cache *cache = NULL;
    if (cached_path) {
        tfx_error e = { 0 };
        if (!(cache = r->api->cache_new(r->m, 0, &e)))
            return fail(r, &e);
    }
    int64_t cached = 0;   // tokens of t the cache holds
    double t0 = now_ms(), t_first = 0;
    int g = 0, status = 0;
    for (; g < o->generate && status == 0; g++) {
        if (max && t->shape[0] >= max) {
            if (!o->slide) {
                fprintf(stderr, "\ntfxrun: stopped: the context is full (%lld tokens)\n", (long long)max);
                break;
            }
            int32_t *ids = t->data;  /* [T]: keep the newest max-1 tokens */
            memmove(ids, ids + 1, (size_t)(t->shape[0] - 1) * sizeof *ids);
            t->shape[0]--;
            if (cache)
                r->api->cache_reset(cache);
            cached = 0;
        }
        if (cache ? step(r, cache, cached) : forward(r)) {
            status = 1;
            break;
        }
        cached = t->shape[0];
        if (g == 0)
            t_first = now_ms() - t0;
        int64_t T = r->out_shape[0][0], V = r->out_shape[0][r->out_rank[0] - 1];
        int32_t next = pick(r->out[0] + (T - 1) * V, V, o, &rng);
        if ((size_t)t->shape[0] + 1 > t->cap)
            t->data = realloc(t->data, (t->cap = t->cap * 2 + 8) * sizeof(int32_t));
        ((int32_t *)t->data)[t->shape[0]++] = next;
        put_token(next, text);
    }
    putchar('\n');
    if (o->time && g > 0)
        fprintf(stderr, "tfxrun: %s: first token %.2f ms; %d more in %.2f ms (%.3f ms/token)\n",
                cache ? "KV cache" : "recompute", t_first, g - 1, now_ms() - t0 - t_first,
                g > 1 ? (now_ms() - t0 - t_first) / (g - 1) : 0.0);
    if (cache)
        r->api->cache_free(cache);
    return status;
}

static void print_outputs(const Run *r, const Opts *o)
{
    for (uint32_t i = 0; i < r->desc->noutputs && i < 8; i++) {
        size_t n = 1;
        printf("%s: [", r->desc->outputs[i].name);
        for (int d = 0; d < r->out_rank[i]; d++) {
            printf("%s%lld", d ? ", " : "", (long long)r->out_shape[i][d]);
            n *= (size_t)r->out_shape[i][d];
        }
        printf("]");
        size_t show = o->print_all ? n : (n < 8 ? n : 8);
        for (size_t k = 0; k < show; k++)
            printf("%s%.6g", k ? " " : " ", r->out[i][k]);
        printf("%s\n", show < n ? " ..." : "");
    }
}

static int read_inputs(Run *r, const Opts *o, int *text)
{
    r->nin = r->desc->ninputs;
    if (r->nin > 8) {
        fprintf(stderr, "tfxrun: error: models with more than 8 inputs are not supported\n");
        return 1;
    }
    uint32_t next_npy = 0;
    for (uint32_t i = 0; i < r->nin; i++) {
        const TfxTensorDesc *t = &r->desc->inputs[i];
        if (t->dtype == TFX_I32 && t->rank == 1 && (o->tokens || o->tokens_file || o->prompt)) {
            if (o->prompt) {
                size_t n = strlen(o->prompt);
                int32_t *ids = malloc((n + 1) * sizeof *ids);
                for (size_t k = 0; k < n; k++)
                    ids[k] = (unsigned char)o->prompt[k];
                r->in[i] = (Tensor){ .data = ids, .shape = { (int64_t)n }, .rank = 1, .cap = n + 1 };
                *text = 1;
            } else {
                char *s = o->tokens ? strdup(o->tokens) : slurp(o->tokens_file);
                if (!s) {
                    fprintf(stderr, "tfxrun: error: cannot read '%s'\n", o->tokens_file);
                    return 1;
                }
                int bad = read_tokens(s, &r->in[i]);
                free(s);
                if (bad)
                    return 1;
            }
            continue;
        }
        const char *spec = next_npy < (uint32_t)o->ninputs ? o->inputs[next_npy++] : NULL;
        const char *eq = spec ? strchr(spec, '=') : NULL;
        if (!eq) {
            fprintf(stderr, "tfxrun: error: no value for input '%s' (give --input %s=FILE.npy)\n", t->name, t->name);
            return 1;
        }
        if (read_npy(eq + 1, &r->in[i]))
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    Opts o;
    int st = parse_args(argc, argv, &o);
    if (st >= 0)
        return st;
    Api api = { 0 };
    if (load_api(&api, o.model))
        return 1;
    Run r = { .api = &api, .desc = api.desc() };
    tfx_error e = { 0 };
    tfx_options opt = { .nthreads = o.threads, .strict = o.strict };
    int status = 1, text = 0;
    r.m = api.open(r.desc, &opt, &e);
    if (!r.m) {
        fail(&r, &e);
        goto out;
    }
    if (api.load(r.m, o.weights, &e) != TFX_OK) {
        fail(&r, &e);
        goto out;
    }
    if (*api.warnings(r.m))
        fprintf(stderr, "tfxrun: warning: %s", api.warnings(r.m));
    if (read_inputs(&r, &o, &text))
        goto out;
    if (o.generate > 0) {
        if (r.in[0].rank != 1 || r.desc->inputs[0].dtype != TFX_I32) {
            fprintf(stderr, "tfxrun: error: --generate needs a model whose first input is i32[T] token ids\n");
            goto out;
        }
        if (text)
            fwrite(o.prompt, 1, strlen(o.prompt), stdout);
        status = generate(&r, &o, text);
        goto out;
    }
    if (forward(&r))
        goto out;
    print_outputs(&r, &o);
    status = o.save ? write_npy(o.save, r.out[0], r.out_shape[0], r.out_rank[0]) : 0;
out:
    for (uint32_t i = 0; i < 8; i++) {
        free(r.in[i].data);
        free(r.out[i]);
    }
    if (r.m)
        api.close(r.m);
    if (api.so)
        dlclose(api.so);
    return status;
}
