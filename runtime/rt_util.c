/* rt_util.c - small helpers every runtime file uses: allocation through the model's hook,
 * error reporting into a caller's tfx_error, growable warning text, status and dtype
 * names. */
#include "rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const status_names[TFX_STATUS_COUNT_] = {
    [TFX_OK]                    = "TFX_OK",
    [TFX_ERR_IO]                = "TFX_ERR_IO",
    [TFX_ERR_NOMEM]             = "TFX_ERR_NOMEM",
    [TFX_ERR_ARG]               = "TFX_ERR_ARG",
    [TFX_ERR_HEADER]            = "TFX_ERR_HEADER",
    [TFX_ERR_TRUNCATED]         = "TFX_ERR_TRUNCATED",
    [TFX_ERR_OFFSETS]           = "TFX_ERR_OFFSETS",
    [TFX_ERR_MISSING_WEIGHT]    = "TFX_ERR_MISSING_WEIGHT",
    [TFX_ERR_UNEXPECTED_WEIGHT] = "TFX_ERR_UNEXPECTED_WEIGHT",
    [TFX_ERR_SHAPE]             = "TFX_ERR_SHAPE",
    [TFX_ERR_DTYPE]             = "TFX_ERR_DTYPE",
    [TFX_ERR_DIM]               = "TFX_ERR_DIM",
    [TFX_ERR_ABI]               = "TFX_ERR_ABI",
    [TFX_ERR_KERNEL]            = "TFX_ERR_KERNEL",
    [TFX_ERR_DEVICE]            = "TFX_ERR_DEVICE",
    [TFX_ERR_NO_STEP]           = "TFX_ERR_NO_STEP",
    [TFX_ERR_CACHE_FULL]        = "TFX_ERR_CACHE_FULL",
};

TFX_API const char *tfx_status_name(int code)
{
    if (code < 0 || code >= TFX_STATUS_COUNT_)
        return "TFX_ERR_UNKNOWN";
    return status_names[code];
}

TFX_API const char *tfx_dtype_name(int dtype)
{
    switch (dtype) {
    case TFX_F32:  return "f32";
    case TFX_F16:  return "f16";
    case TFX_BF16: return "bf16";
    case TFX_I32:  return "i32";
    default:       return "?";
    }
}

void *rt_alloc(const RtAlloc *a, size_t size)
{
    return a->alloc(size ? size : 1, a->ctx);
}

void *rt_alloc_array(const RtAlloc *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    size_t bytes = n * size;
    void *p = rt_alloc(a, bytes);
    if (p && bytes > 0)
        memset(p, 0, bytes);
    return p;
}

void rt_free(const RtAlloc *a, void *p)
{
    if (p)
        a->free(p, a->ctx);
}

char *rt_strdup(const RtAlloc *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = rt_alloc(a, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

int rt_fail(tfx_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return code;
}

void rt_format_shape(char *buf, size_t cap, int rank, const int64_t *dims)
{
    size_t len = 0;
    buf[0] = '\0';
    len += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "",
                                (long long)dims[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, "]");
}

int rt_text_appendf(RtText *t, const RtAlloc *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return TFX_ERR_ARG;
    size_t need = t->len + (size_t)n + 1;
    if (need > t->cap) {
        size_t cap = t->cap ? t->cap : 128;
        while (cap < need)
            cap *= 2;
        char *s = rt_alloc(a, cap);
        if (!s)
            return TFX_ERR_NOMEM;
        if (t->s)
            memcpy(s, t->s, t->len + 1);
        rt_free(a, t->s);
        t->s = s;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
    return TFX_OK;
}

void rt_text_dispose(RtText *t, const RtAlloc *a)
{
    rt_free(a, t->s);
    *t = (RtText){ 0 };
}

int rt_dim_eval(const TfxDimDesc *d, const int64_t *syms, int64_t *out)
{
    int64_t v = d->c;
    if (d->sym >= 0) {
        int64_t term;
        if (__builtin_mul_overflow(d->coef, syms[d->sym], &term) ||
            __builtin_add_overflow(v, term, &v) || d->div <= 0)
            return -1;
        v /= d->div;
    }
    if (v < 0)
        return -1;
    *out = v;
    return 0;
}
