/* rt_forward.c - one call of the generated forward function: derive the symbol values
 * (T, B, ...) from the input shapes and check them, check that every weight is bound, grow
 * the cached workspace, call desc->forward. Also tfx_model_output_shape. */
#include "rt.h"

#include <string.h>

/* Workspace alignment: a cache line, and the widest vector load (AVX-512). */
#define WORKSPACE_ALIGN 64

static int is_plain_sym(const TfxDimDesc *d)
{
    return d->sym >= 0 && d->c == 0 && d->coef == 1 && d->div == 1;
}

/* Finds the first input dimension that is plainly symbol `sym`; returns 0 if none. */
static int find_binding(const TfxModelDesc *d, int32_t sym, uint32_t *in, int *dim)
{
    for (uint32_t i = 0; i < d->ninputs; i++)
        for (int k = 0; k < d->inputs[i].rank; k++)
            if (is_plain_sym(&d->inputs[i].dims[k]) && d->inputs[i].dims[k].sym == sym) {
                *in = i, *dim = k;
                return 1;
            }
    return 0;
}

/* Binds symbol `sym` to v (taken from input i, dimension k) after checking its range. */
static int bind_sym(const tfx_model *m, int64_t *syms, int32_t sym, int64_t v, uint32_t i,
                    int k, tfx_error *err)
{
    const TfxModelDesc *d = m->desc;
    const TfxSymDesc *s = &d->syms[sym];
    if (syms[sym] >= 0 && syms[sym] != v) {
        uint32_t bi = 0;
        int bk = 0;
        find_binding(d, sym, &bi, &bk);
        return rt_fail(err, TFX_ERR_DIM, "input '%s' dimension %d is %lld, but input '%s' "
                       "dimension %d set %s = %lld", d->inputs[i].name, k, (long long)v,
                       d->inputs[bi].name, bk, s->name, (long long)syms[sym]);
    }
    if (v < 1)
        return rt_fail(err, TFX_ERR_DIM, "input '%s' dimension %d is %lld, below the bound "
                       "%s >= 1", d->inputs[i].name, k, (long long)v, s->name);
    if (s->max > 0 && v > s->max)
        return rt_fail(err, TFX_ERR_DIM, "input '%s' dimension %d is %lld, above the bound "
                       "%s <= %lld", d->inputs[i].name, k, (long long)v, s->name,
                       (long long)s->max);
    syms[sym] = v;
    return TFX_OK;
}

/* Solves (c + coef*s) / div == v for a still unbound symbol where that is exact (div 1). */
static int solve_affine(const tfx_model *m, int64_t *syms, const int64_t (*shapes)[6],
                        tfx_error *err)
{
    const TfxModelDesc *d = m->desc;
    for (uint32_t i = 0; i < d->ninputs; i++) {
        for (int k = 0; k < d->inputs[i].rank; k++) {
            const TfxDimDesc *dim = &d->inputs[i].dims[k];
            if (dim->sym < 0 || syms[dim->sym] >= 0 || dim->div != 1 || dim->coef == 0)
                continue;
            int64_t num;
            if (__builtin_sub_overflow(shapes[i][k], dim->c, &num) || num % dim->coef != 0)
                continue;   // reported by check_dims as a mismatch
            int rc = bind_sym(m, syms, dim->sym, num / dim->coef, i, k, err);
            if (rc != TFX_OK)
                return rc;
        }
    }
    return TFX_OK;
}

/* Binds every symbol that an input dimension names plainly, then the rest by solving. */
static int bind_syms(const tfx_model *m, int64_t *syms, const int64_t (*shapes)[6],
                     tfx_error *err)
{
    const TfxModelDesc *d = m->desc;
    for (uint32_t s = 0; s < d->nsyms; s++)
        syms[s] = -1;
    for (uint32_t i = 0; i < d->ninputs; i++) {
        for (int k = 0; k < d->inputs[i].rank; k++) {
            int64_t v = shapes[i][k];
            if (v < 0)
                return rt_fail(err, TFX_ERR_DIM, "input '%s' dimension %d is %lld; dimensions "
                               "cannot be negative", d->inputs[i].name, k, (long long)v);
            const TfxDimDesc *dim = &d->inputs[i].dims[k];
            int rc = is_plain_sym(dim) ? bind_sym(m, syms, dim->sym, v, i, k, err) : TFX_OK;
            if (rc != TFX_OK)
                return rc;
        }
    }
    int rc = solve_affine(m, syms, shapes, err);
    for (uint32_t s = 0; rc == TFX_OK && s < d->nsyms; s++)
        if (syms[s] < 0)
            rc = rt_fail(err, TFX_ERR_DIM, "symbol '%s' is not determined by the input shapes",
                         d->syms[s].name);
    return rc;
}

/* With every symbol bound: each input dimension must equal its expression. */
static int check_dims(const tfx_model *m, const int64_t *syms, const int64_t (*shapes)[6],
                      tfx_error *err)
{
    const TfxModelDesc *d = m->desc;
    for (uint32_t i = 0; i < d->ninputs; i++) {
        for (int k = 0; k < d->inputs[i].rank; k++) {
            const TfxDimDesc *dim = &d->inputs[i].dims[k];
            int64_t want;
            if (rt_dim_eval(dim, syms, &want) == 0 && want == shapes[i][k])
                continue;
            if (dim->sym < 0)
                return rt_fail(err, TFX_ERR_DIM, "input '%s' dimension %d is %lld; expected %lld",
                               d->inputs[i].name, k, (long long)shapes[i][k], (long long)dim->c);
            return rt_fail(err, TFX_ERR_DIM, "input '%s' dimension %d is %lld; expected "
                           "(%lld + %lld*%s) / %lld with %s = %lld", d->inputs[i].name, k,
                           (long long)shapes[i][k], (long long)dim->c, (long long)dim->coef,
                           d->syms[dim->sym].name, (long long)dim->div, d->syms[dim->sym].name,
                           (long long)syms[dim->sym]);
        }
    }
    return TFX_OK;
}

static int check_bound(const tfx_model *m, tfx_error *err)
{
    const TfxModelDesc *d = m->desc;
    uint32_t nunbound = 0, first = 0;
    for (uint32_t i = 0; i < d->nweights; i++)
        if (!m->weights[i] && nunbound++ == 0)
            first = i;
    if (nunbound == 0)
        return TFX_OK;
    return rt_fail(err, TFX_ERR_MISSING_WEIGHT, "model '%s': weight '%s' is not bound (%u of %u "
                   "unbound); load a weights file or call tfx_model_bind_weight", d->name,
                   d->weights[first].name, nunbound, d->nweights);
}

static int check_args(const tfx_model *m, const void *const *inputs,
                      const int64_t (*shapes)[6], void *const *outputs, tfx_error *err)
{
    if (!m)
        return rt_fail(err, TFX_ERR_ARG, "tfx_model_forward: the model is NULL");
    const TfxModelDesc *d = m->desc;
    if (d->ninputs && (!inputs || !shapes))
        return rt_fail(err, TFX_ERR_ARG, "model '%s': inputs or input shapes are NULL", d->name);
    if (d->noutputs && !outputs)
        return rt_fail(err, TFX_ERR_ARG, "model '%s': outputs are NULL", d->name);
    for (uint32_t i = 0; i < d->ninputs; i++)
        if (!inputs[i])
            return rt_fail(err, TFX_ERR_ARG, "input '%s' is NULL", d->inputs[i].name);
    for (uint32_t i = 0; i < d->noutputs; i++)
        if (!outputs[i])
            return rt_fail(err, TFX_ERR_ARG, "output '%s' is NULL", d->outputs[i].name);
    return TFX_OK;
}

/* Makes m->workspace hold at least size bytes; keeps the largest seen so far. */
int rt_reserve_workspace(tfx_model *m, size_t size, tfx_error *err)
{
    if (size <= m->workspace_size && (m->workspace || size == 0))
        return TFX_OK;
    rt_free(&m->a, m->workspace_raw);
    m->workspace_raw = m->workspace = NULL;
    m->workspace_size = 0;
    void *raw = size <= SIZE_MAX - WORKSPACE_ALIGN ? rt_alloc(&m->a, size + WORKSPACE_ALIGN)
                                                   : NULL;
    if (!raw)
        return rt_fail(err, TFX_ERR_NOMEM, "model '%s': out of memory for a %zu-byte workspace",
                       m->desc->name, size);
    uintptr_t p = ((uintptr_t)raw + WORKSPACE_ALIGN - 1) & ~(uintptr_t)(WORKSPACE_ALIGN - 1);
    m->workspace_raw = raw;
    m->workspace = (void *)p;
    m->workspace_size = size;
    return TFX_OK;
}

/* The checks every call of generated code starts with: arguments, bound weights, symbol
 * values from the input shapes (into syms) and the input dims. */
int rt_prepare_call(tfx_model *m, const void *const *inputs, const int64_t (*input_shapes)[6],
                    void *const *outputs, int64_t *syms, tfx_error *err)
{
    int rc = check_args(m, inputs, input_shapes, outputs, err);
    if (rc == TFX_OK)
        rc = check_bound(m, err);
    if (rc == TFX_OK)
        rc = bind_syms(m, syms, input_shapes, err);
    if (rc == TFX_OK)
        rc = check_dims(m, syms, input_shapes, err);
    return rc;
}

TFX_API int tfx_model_forward(tfx_model *m, const void *const *inputs,
                              const int64_t (*input_shapes)[6], void *const *outputs,
                              tfx_error *err)
{
    int rc = rt_prepare_call(m, inputs, input_shapes, outputs, m ? m->scratch_syms : NULL, err);
    if (rc != TFX_OK)
        return rc;
    const TfxModelDesc *d = m->desc;
    size_t ws = d->workspace_bytes ? d->workspace_bytes(m->scratch_syms) : 0;
    rc = rt_reserve_workspace(m, ws, err);
    if (rc != TFX_OK)
        return rc;
    TfxKernelArgs args = {
        .weights = m->weights, .inputs = inputs, .outputs = outputs,
        .syms = m->scratch_syms, .workspace = m->workspace, .pool = m->pool,
        .device = &m->device,
    };
    int32_t code = d->forward(&args);
    if (code == TFX_GPU_DEVICE_ERROR && m->device)
        return rt_fail(err, TFX_ERR_DEVICE, "model '%s': %s", d->name,
                       rt_cuda_error(m->device));
    if (code != 0)
        return rt_fail(err, TFX_ERR_KERNEL, "model '%s': forward failed with code %d", d->name,
                       (int)code);
    memcpy(m->syms, m->scratch_syms, d->nsyms * sizeof *m->syms);
    m->has_run = 1;
    return TFX_OK;
}

/* Evaluates the dims of t for syms (all bound) into out[0 .. rank). */
static int eval_shape(const tfx_model *m, const TfxTensorDesc *t, const int64_t *syms,
                      int64_t out[6], int *rank)
{
    if (!syms && !m->has_run)
        return TFX_ERR_ARG;
    if (!syms)
        syms = m->syms;
    for (uint32_t s = 0; s < m->desc->nsyms; s++)
        if (syms[s] < 0)
            return TFX_ERR_DIM;
    for (int k = 0; k < t->rank; k++)
        if (rt_dim_eval(&t->dims[k], syms, &out[k]) != 0)
            return TFX_ERR_DIM;
    *rank = t->rank;
    return TFX_OK;
}

TFX_API int tfx_model_output_shape(const tfx_model *m, uint32_t i, const int64_t *syms,
                                   int64_t out[6], int *rank)
{
    if (!m || !out || !rank || i >= m->desc->noutputs)
        return TFX_ERR_ARG;
    return eval_shape(m, &m->desc->outputs[i], syms, out, rank);
}

TFX_API int tfx_model_input_shape(const tfx_model *m, uint32_t i, const int64_t *syms,
                                  int64_t out[6], int *rank)
{
    if (!m || !out || !rank || i >= m->desc->ninputs)
        return TFX_ERR_ARG;
    return eval_shape(m, &m->desc->inputs[i], syms, out, rank);
}
