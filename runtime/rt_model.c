/* rt_model.c - the life cycle of a tfx_model (open: check the descriptor, allocate the
 * binding tables, start the pool; close: undo all of it) and the metadata getters. */
#include "rt.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Upper limit on tfx_options.nthreads and on the core count used for 0. */
#define MAX_THREADS 256

static void *default_alloc(size_t size, void *ctx)
{
    (void)ctx;
    return malloc(size);
}

static void default_free(void *p, void *ctx)
{
    (void)ctx;
    free(p);
}

/* ---- descriptor checks ---- */

static int check_tensor_desc(const TfxModelDesc *d, const TfxTensorDesc *t, const char *what,
                             uint32_t i, tfx_error *err)
{
    if (!t->name || t->dtype < TFX_F32 || t->dtype > TFX_I32 || t->rank < 0 ||
        t->rank > TFX_MAX_RANK)
        return rt_fail(err, TFX_ERR_ABI, "model '%s': %s %u has no name, a bad dtype or a bad "
                       "rank", d->name, what, i);
    for (int k = 0; k < t->rank; k++) {
        const TfxDimDesc *dim = &t->dims[k];
        if (dim->sym >= (int32_t)d->nsyms || (dim->sym >= 0 && dim->div <= 0) ||
            (dim->sym < 0 && dim->c < 0))
            return rt_fail(err, TFX_ERR_ABI, "model '%s': %s '%s' dimension %d is malformed",
                           d->name, what, t->name, k);
    }
    return TFX_OK;
}

static int check_weight_desc(const TfxModelDesc *d, const TfxWeightDesc *w, uint32_t i,
                             tfx_error *err)
{
    int ok = w->name && w->dtype >= TFX_F32 && w->dtype <= TFX_I32 && w->rank >= 0 &&
             w->rank <= TFX_MAX_RANK;
    int64_t n = 1;
    for (int k = 0; ok && k < w->rank; k++)
        ok = w->dims[k] >= 0 && !__builtin_mul_overflow(n, w->dims[k], &n) &&
             (uint64_t)n <= SIZE_MAX / 4;
    if (!ok)
        return rt_fail(err, TFX_ERR_ABI, "model '%s': weight %u is malformed", d->name, i);
    return TFX_OK;
}

/* Rejects descriptors of another ABI version or with inconsistent tables. */
static int check_desc(const TfxModelDesc *d, tfx_error *err)
{
    if (d->abi_version != TFX_ABI_VERSION)
        return rt_fail(err, TFX_ERR_ABI, "model descriptor has ABI version %u, this runtime "
                       "expects %u (recompile the model with a matching tfxc)",
                       d->abi_version, TFX_ABI_VERSION);
    if (!d->name || !d->forward || (d->nsyms && !d->syms) || (d->ninputs && !d->inputs) ||
        (d->noutputs && !d->outputs) || (d->nweights && !d->weights))
        return rt_fail(err, TFX_ERR_ABI, "model descriptor '%s' is incomplete",
                       d->name ? d->name : "?");
    int rc = TFX_OK;
    for (uint32_t i = 0; rc == TFX_OK && i < d->nsyms; i++)
        if (!d->syms[i].name || d->syms[i].max < 0)
            rc = rt_fail(err, TFX_ERR_ABI, "model '%s': symbol %u is malformed", d->name, i);
    for (uint32_t i = 0; rc == TFX_OK && i < d->ninputs; i++)
        rc = check_tensor_desc(d, &d->inputs[i], "input", i, err);
    for (uint32_t i = 0; rc == TFX_OK && i < d->noutputs; i++)
        rc = check_tensor_desc(d, &d->outputs[i], "output", i, err);
    for (uint32_t i = 0; rc == TFX_OK && i < d->nweights; i++)
        rc = check_weight_desc(d, &d->weights[i], i, err);
    return rc == TFX_OK ? rt_check_step_desc(d, err) : rc;
}

/* Fills m->opt and m->a from the caller's options (NULL = defaults). */
static int resolve_options(tfx_options *o, RtAlloc *a, const tfx_options *given, tfx_error *err)
{
    *o = given ? *given : (tfx_options){ 0 };
    if (o->nthreads < 0 || o->nthreads > MAX_THREADS)
        return rt_fail(err, TFX_ERR_ARG, "nthreads is %d; expected 0 (all cores) to %d",
                       o->nthreads, MAX_THREADS);
    if (!o->alloc != !o->free)
        return rt_fail(err, TFX_ERR_ARG, "the alloc and free hooks must be given together");
    if (!o->alloc) {
        o->alloc = default_alloc;
        o->free = default_free;
    }
    if (o->nthreads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        o->nthreads = cores < 1 ? 1 : cores > MAX_THREADS ? MAX_THREADS : (int)cores;
    }
    *a = (RtAlloc){ .alloc = o->alloc, .free = o->free, .ctx = o->alloc_ctx };
    return TFX_OK;
}

/* ---- open and close ---- */

static int alloc_tables(tfx_model *m, tfx_error *err)
{
    const TfxModelDesc *d = m->desc;
    m->weights = rt_alloc_array(&m->a, d->nweights, sizeof *m->weights);
    m->owned = rt_alloc_array(&m->a, d->nweights, sizeof *m->owned);
    m->syms = rt_alloc_array(&m->a, d->nsyms, sizeof *m->syms);
    m->scratch_syms = rt_alloc_array(&m->a, d->nsyms, sizeof *m->scratch_syms);
    if (!m->weights || !m->owned || !m->syms || !m->scratch_syms)
        return rt_fail(err, TFX_ERR_NOMEM, "out of memory opening model '%s'", d->name);
    return TFX_OK;
}

TFX_API tfx_model *tfx_model_open(const TfxModelDesc *desc, const tfx_options *opt,
                                  tfx_error *err)
{
    if (!desc)
        return rt_fail(err, TFX_ERR_ARG, "tfx_model_open: the model descriptor is NULL"), NULL;
    tfx_options o;
    RtAlloc a;
    if (resolve_options(&o, &a, opt, err) != TFX_OK || check_desc(desc, err) != TFX_OK)
        return NULL;
    tfx_model *m = rt_alloc_array(&a, 1, sizeof *m);
    if (!m)
        return rt_fail(err, TFX_ERR_NOMEM, "out of memory opening model '%s'", desc->name), NULL;
    *m = (tfx_model){ .desc = desc, .a = a, .opt = o };
    int rc = alloc_tables(m, err);
    if (rc == TFX_OK)
        rc = rt_pool_new(&m->a, o.nthreads, &m->pool, err);
    if (rc != TFX_OK) {
        tfx_model_close(m);
        return NULL;
    }
    return m;
}

TFX_API void tfx_model_close(tfx_model *m)
{
    if (!m)
        return;
    rt_pool_free(m->pool);
    rt_cuda_free(m->device);
    for (uint32_t i = 0; m->owned && i < m->desc->nweights; i++)
        rt_free(&m->a, m->owned[i]);
    while (m->mappings) {
        RtMapping *next = m->mappings->next;
        munmap(m->mappings->base, m->mappings->size);
        rt_free(&m->a, m->mappings);
        m->mappings = next;
    }
    rt_text_dispose(&m->warnings, &m->a);
    rt_free(&m->a, m->workspace_raw);
    rt_free(&m->a, m->weights);
    rt_free(&m->a, m->owned);
    rt_free(&m->a, m->syms);
    rt_free(&m->a, m->scratch_syms);
    RtAlloc a = m->a;
    rt_free(&a, m);
}

/* ---- metadata ---- */

TFX_API const char *tfx_model_name(const tfx_model *m)
{
    return m ? m->desc->name : NULL;
}

TFX_API int tfx_model_nthreads(const tfx_model *m)
{
    return m ? m->opt.nthreads : -1;
}

TFX_API uint32_t tfx_model_nsyms(const tfx_model *m)
{
    return m ? m->desc->nsyms : 0;
}

TFX_API const char *tfx_model_sym_name(const tfx_model *m, uint32_t i)
{
    return m && i < m->desc->nsyms ? m->desc->syms[i].name : NULL;
}

TFX_API int64_t tfx_model_sym_max(const tfx_model *m, uint32_t i)
{
    return m && i < m->desc->nsyms ? m->desc->syms[i].max : -1;
}

TFX_API int64_t tfx_model_sym_value(const tfx_model *m, uint32_t i)
{
    return m && m->has_run && i < m->desc->nsyms ? m->syms[i] : -1;
}

TFX_API uint32_t tfx_model_ninputs(const tfx_model *m)
{
    return m ? m->desc->ninputs : 0;
}

TFX_API const char *tfx_model_input_name(const tfx_model *m, uint32_t i)
{
    return m && i < m->desc->ninputs ? m->desc->inputs[i].name : NULL;
}

TFX_API int tfx_model_input_dtype(const tfx_model *m, uint32_t i)
{
    return m && i < m->desc->ninputs ? m->desc->inputs[i].dtype : -1;
}

TFX_API int tfx_model_input_rank(const tfx_model *m, uint32_t i)
{
    return m && i < m->desc->ninputs ? m->desc->inputs[i].rank : -1;
}

TFX_API uint32_t tfx_model_noutputs(const tfx_model *m)
{
    return m ? m->desc->noutputs : 0;
}

TFX_API const char *tfx_model_output_name(const tfx_model *m, uint32_t i)
{
    return m && i < m->desc->noutputs ? m->desc->outputs[i].name : NULL;
}

TFX_API int tfx_model_output_dtype(const tfx_model *m, uint32_t i)
{
    return m && i < m->desc->noutputs ? m->desc->outputs[i].dtype : -1;
}

TFX_API int tfx_model_output_rank(const tfx_model *m, uint32_t i)
{
    return m && i < m->desc->noutputs ? m->desc->outputs[i].rank : -1;
}

TFX_API uint32_t tfx_model_nweights(const tfx_model *m)
{
    return m ? m->desc->nweights : 0;
}

TFX_API const char *tfx_model_weight_name(const tfx_model *m, uint32_t i)
{
    return m && i < m->desc->nweights ? m->desc->weights[i].name : NULL;
}

TFX_API int tfx_model_weight_shape(const tfx_model *m, uint32_t i, int64_t out[6])
{
    if (!m || !out || i >= m->desc->nweights)
        return -1;
    const TfxWeightDesc *w = &m->desc->weights[i];
    for (int k = 0; k < w->rank; k++)
        out[k] = w->dims[k];
    return w->rank;
}
