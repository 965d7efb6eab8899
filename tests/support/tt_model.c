/* tt_model.c - compiling .tfx text to a model.so and running it; see tt_model.h. */
#include "tt_model.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "compile.h"

static uint64_t rng_state;

void tt_seed(uint64_t seed)
{
    rng_state = seed;
}

float tt_frand(float a)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return a * (2.0f * (float)((rng_state >> 40) & 0xffffff) / 16777216.0f - 1.0f);
}

uint16_t tt_f32_to_f16(float f)
{
    __extension__ _Float16 v = (_Float16)f;   // GCC and Clang on x86-64: IEEE, nearest even
    uint16_t h;
    memcpy(&h, &v, 2);
    return h;
}

float tt_f16_to_f32(uint16_t h)
{
    __extension__ _Float16 v;
    memcpy(&v, &h, 2);
    return (float)v;
}

uint16_t tt_f32_to_bf16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if (f != f)
        return (uint16_t)((bits >> 16) | 0x40);
    bits += 0x7fff + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

float tt_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void tt_model_build(TtModel *mo, const char *src, int opt)
{
    tt_model_build_with(mo, src, opt, false, NULL);
}

void tt_model_build_with(TtModel *mo, const char *src, int opt, bool serial, const char *cpu)
{
    static int counter;
    memset(mo, 0, sizeof *mo);
    snprintf(mo->so, sizeof mo->so, "/tmp/tfxc_tt_%d_%d.so", (int)getpid(), counter++);
    CompileOptions o;
    compile_options_init(&o);
    o.input = "m.tfx";
    o.source = src;
    o.emit = TFX_EMIT_SO;
    o.output = mo->so;
    o.opt_level = opt;
    o.serial = serial;
    o.cpu = cpu;
    CompileResult r;
    tfx_compile(&o, &r);
    cr_assert_eq(r.status, 0, "%s", buf_str(&r.diags));
    compile_result_dispose(&r);
}

static void *sym(void *h, const char *name)
{
    void *p = dlsym(h, name);
    cr_assert_not_null(p, "missing %s", name);
    return p;
}

void tt_model_open(TtModel *mo, uint64_t seed, float scale, int nthreads)
{
    const TfxModelDesc *(*desc)(void);
    tfx_model *(*open)(const TfxModelDesc *, const tfx_options *, tfx_error *);
    int (*bind)(tfx_model *, const char *, const float *, tfx_error *);
    mo->h = dlopen(mo->so, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(mo->h, "%s", dlerror());
    *(void **)&desc = sym(mo->h, "tfx_model_desc");
    *(void **)&open = sym(mo->h, "tfx_model_open");
    *(void **)&bind = sym(mo->h, "tfx_model_bind_weight");
    *(void **)&mo->forward = sym(mo->h, "tfx_model_forward");
    *(void **)&mo->close = sym(mo->h, "tfx_model_close");
    tfx_error err = { 0 };
    mo->d = desc();
    tfx_options opt = { .nthreads = nthreads };
    mo->m = open(mo->d, &opt, &err);
    cr_assert_not_null(mo->m, "%s", err.message);
    tt_seed(seed);
    mo->nw = mo->d->nweights;
    cr_assert(mo->nw <= TT_MODEL_MAX_WEIGHTS);
    for (uint32_t i = 0; i < mo->nw; i++) {
        const TfxWeightDesc *w = &mo->d->weights[i];
        int64_t n = 1;
        for (int j = 0; j < w->rank; j++)
            n *= w->dims[j];
        if (w->dtype == TFX_F16 || w->dtype == TFX_BF16) {
            uint16_t *p = malloc((size_t)n * 2);
            for (int64_t k = 0; k < n; k++)
                p[k] = w->dtype == TFX_F16 ? tt_f32_to_f16(tt_frand(scale))
                                           : tt_f32_to_bf16(tt_frand(scale));
            mo->w[i] = p;
        } else {
            float *p = malloc((size_t)n * 4);
            for (int64_t k = 0; k < n; k++)
                p[k] = tt_frand(scale);
            mo->w[i] = p;
        }
        cr_assert_eq(bind(mo->m, w->name, mo->w[i], &err), TFX_OK, "%s", err.message);
    }
}

const void *tt_model_weight(const TtModel *mo, const char *name)
{
    for (uint32_t i = 0; i < mo->nw; i++)
        if (strcmp(mo->d->weights[i].name, name) == 0)
            return mo->w[i];
    cr_assert_fail("no weight %s", name);
    return NULL;
}

int tt_model_run(TtModel *mo, const void **in, int64_t (*shapes)[6], void **out)
{
    tfx_error err = { 0 };
    return mo->forward(mo->m, in, (const int64_t (*)[6])shapes, out, &err);
}

void tt_model_close(TtModel *mo)
{
    mo->close(mo->m);
    for (uint32_t i = 0; i < mo->nw; i++)
        free(mo->w[i]);
    dlclose(mo->h);
    remove(mo->so);
}

void tt_model_trio(TtModel m[3], const char *src, uint64_t seed, float scale)
{
    static const int opt[3] = { 0, 2, 2 }, threads[3] = { 1, 1, 2 };
    for (int i = 0; i < 3; i++) {
        tt_model_build(&m[i], src, opt[i]);
        tt_model_open(&m[i], seed, scale, threads[i]);
    }
}

void tt_model_trio_close(TtModel m[3])
{
    for (int i = 0; i < 3; i++)
        tt_model_close(&m[i]);
}
