/* rt_step.c - incremental decoding: the KV cache (tfx_cache_*) and tfx_model_step, which
 * runs the generated step entry on T new tokens after the P tokens already cached. The
 * cache layout comes from the descriptor (TfxModelDesc.cache, see tfx_abi.h); the model's
 * workspace is grown to the largest this T can need, so a run of one-token steps after a
 * prefill allocates nothing. See docs/runtime.md, "KV cache". */
#include "rt.h"

#include <string.h>

struct tfx_cache {
    tfx_model *m;
    int64_t    capacity;   /* tokens it can hold */
    int64_t    len;        /* tokens it holds: P of the next step */
    void     **slots;      /* [desc->ncache] slot memory, capacity rows per member */
    int64_t   *syms;       /* [desc->nsyms + 2]: the symbols, then P and the capacity */
};

int rt_check_step_desc(const TfxModelDesc *d, tfx_error *err)
{
    if (!d->step)
        return TFX_OK;
    if (!d->step_workspace_bytes || d->step_sym < 0 || (uint32_t)d->step_sym >= d->nsyms ||
        (d->ncache && !d->cache))
        return rt_fail(err, TFX_ERR_ABI, "model '%s': the step entry is malformed", d->name);
    for (uint32_t i = 0; i < d->ncache; i++)
        if (d->cache[i].row_bytes <= 0 || d->cache[i].members <= 0)
            return rt_fail(err, TFX_ERR_ABI, "model '%s': cache slot %u is malformed", d->name, i);
    return TFX_OK;
}

TFX_API int tfx_model_has_step(const tfx_model *m)
{
    return m && m->desc->step ? 1 : 0;
}

TFX_API const char *tfx_model_no_step_reason(const tfx_model *m)
{
    if (!m || m->desc->step)
        return "";
    return m->desc->no_step && *m->desc->no_step ? m->desc->no_step : "no reason recorded";
}

static int no_step(const tfx_model *m, tfx_error *err)
{
    return rt_fail(err, TFX_ERR_NO_STEP, "model '%s' has no step entry: %s", m->desc->name,
                   tfx_model_no_step_reason(m));
}

TFX_API void tfx_cache_free(tfx_cache *c)
{
    if (!c)
        return;
    const RtAlloc *a = &c->m->a;
    for (uint32_t i = 0; c->slots && i < c->m->desc->ncache; i++)
        rt_free(a, c->slots[i]);
    rt_free(a, c->slots);
    rt_free(a, c->syms);
    rt_free(a, c);
}

/* The capacity a cache gets: `want`, or the token symbol's bound for 0. */
static int pick_capacity(const tfx_model *m, int64_t want, int64_t *out, tfx_error *err)
{
    const TfxSymDesc *t = &m->desc->syms[m->desc->step_sym];
    if (want < 0 || (t->max > 0 && want > t->max))
        return rt_fail(err, TFX_ERR_ARG, "model '%s': a cache of %lld tokens; the capacity "
                       "must be 1 .. %lld (the bound of '%s')", m->desc->name,
                       (long long)want, (long long)t->max, t->name);
    if (want == 0 && t->max == 0)
        return rt_fail(err, TFX_ERR_ARG, "model '%s': '%s' has no bound, so the cache needs "
                       "an explicit capacity", m->desc->name, t->name);
    *out = want ? want : t->max;
    return TFX_OK;
}

TFX_API tfx_cache *tfx_cache_new(tfx_model *m, int64_t capacity, tfx_error *err)
{
    if (!m) {
        rt_fail(err, TFX_ERR_ARG, "tfx_cache_new: the model is NULL");
        return NULL;
    }
    const TfxModelDesc *d = m->desc;
    if (!d->step) {
        no_step(m, err);
        return NULL;
    }
    int64_t cap = 0;
    if (pick_capacity(m, capacity, &cap, err) != TFX_OK)
        return NULL;
    tfx_cache *c = rt_alloc_array(&m->a, 1, sizeof *c);
    if (c) {
        c->m = m;
        c->capacity = cap;
        c->syms = rt_alloc_array(&m->a, d->nsyms + 2, sizeof *c->syms);
        c->slots = rt_alloc_array(&m->a, d->ncache + 1, sizeof *c->slots);
    }
    int ok = c && c->syms && c->slots;
    for (uint32_t i = 0; ok && i < d->ncache; i++) {
        size_t rows, bytes;
        ok = !__builtin_mul_overflow((size_t)cap, (size_t)d->cache[i].members, &rows) &&
             !__builtin_mul_overflow(rows, (size_t)d->cache[i].row_bytes, &bytes) &&
             (c->slots[i] = rt_alloc(&m->a, bytes)) != NULL;
    }
    if (!ok) {
        tfx_cache_free(c);
        rt_fail(err, TFX_ERR_NOMEM, "model '%s': out of memory for a %lld-token cache",
                d->name, (long long)cap);
        return NULL;
    }
    return c;
}

TFX_API int64_t tfx_cache_len(const tfx_cache *c)
{
    return c ? c->len : -1;
}

TFX_API int64_t tfx_cache_capacity(const tfx_cache *c)
{
    return c ? c->capacity : -1;
}

TFX_API void tfx_cache_reset(tfx_cache *c)
{
    if (c)
        c->len = 0;
}

/* Grows the workspace to what T new tokens can need at any P: every dim of the step is a
 * constant, T or P + T, so the size is largest when P + T is the capacity. */
static int reserve_for(tfx_model *m, tfx_cache *c, int64_t T, tfx_error *err)
{
    const TfxModelDesc *d = m->desc;
    int64_t P = c->syms[d->nsyms];
    c->syms[d->nsyms] = c->capacity - T;
    size_t ws = d->step_workspace_bytes(c->syms);
    c->syms[d->nsyms] = P;
    return rt_reserve_workspace(m, ws, err);
}

TFX_API int tfx_model_step(tfx_model *m, tfx_cache *c, const void *const *inputs,
                           const int64_t (*input_shapes)[6], void *const *outputs,
                           tfx_error *err)
{
    if (!m)
        return rt_fail(err, TFX_ERR_ARG, "tfx_model_step: the model is NULL");
    const TfxModelDesc *d = m->desc;
    if (!d->step)
        return no_step(m, err);
    if (!c || c->m != m)
        return rt_fail(err, TFX_ERR_ARG, "model '%s': the cache is NULL or belongs to "
                       "another model", d->name);
    int rc = rt_prepare_call(m, inputs, input_shapes, outputs, c->syms, err);
    if (rc != TFX_OK)
        return rc;
    int64_t T = c->syms[d->step_sym];
    if (T > c->capacity - c->len)
        return rt_fail(err, TFX_ERR_CACHE_FULL, "model '%s': the cache holds %lld of %lld "
                       "tokens; %lld more do not fit", d->name, (long long)c->len,
                       (long long)c->capacity, (long long)T);
    c->syms[d->nsyms] = c->len;
    c->syms[d->nsyms + 1] = c->capacity;
    rc = reserve_for(m, c, T, err);
    if (rc != TFX_OK)
        return rc;
    TfxKernelArgs args = {
        .weights = m->weights, .inputs = inputs, .outputs = outputs,
        .syms = c->syms, .workspace = m->workspace, .pool = m->pool,
        .device = &m->device, .cache = c->slots,
    };
    int32_t code = d->step(&args);
    if (code != 0)
        return rt_fail(err, TFX_ERR_KERNEL, "model '%s': step failed with code %d", d->name,
                       (int)code);
    c->len += T;
    memcpy(m->syms, c->syms, d->nsyms * sizeof *m->syms);
    m->has_run = 1;
    return TFX_OK;
}
