/* rt.h - internals shared by the runtime's files: the tfx_model struct, the allocation
 * hook wrapper, error and warning helpers, and the thread pool's life cycle. Nothing here
 * is exported from model.so (the library builds with -fvisibility=hidden). */
#ifndef TFX_RUNTIME_RT_H
#define TFX_RUNTIME_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "tfx.h"
#include "tfx_abi.h"

#define TFX_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* The allocation hook of a model (tfx_options.alloc/free, or malloc/free). */
typedef struct RtAlloc {
    void *(*alloc)(size_t size, void *ctx);
    void  (*free)(void *ptr, void *ctx);
    void *ctx;
} RtAlloc;

void *rt_alloc(const RtAlloc *a, size_t size);                 /* NULL on failure */
void *rt_alloc_array(const RtAlloc *a, size_t n, size_t size); /* zeroed; checks n*size */
void  rt_free(const RtAlloc *a, void *p);                      /* NULL is ignored */
char *rt_strdup(const RtAlloc *a, const char *s);

/* Fills *err (if not NULL) with code and a formatted message; returns code. */
int rt_fail(tfx_error *err, int code, const char *fmt, ...) TFX_PRINTF(3, 4);
/* Formats "[d0, d1, ...]" into buf (cap bytes). */
void rt_format_shape(char *buf, size_t cap, int rank, const int64_t *dims);

/* A growable NUL-terminated string built through the allocation hook. */
typedef struct RtText {
    char  *s;     /* NULL until the first append */
    size_t len, cap;
} RtText;

int  rt_text_appendf(RtText *t, const RtAlloc *a, const char *fmt, ...) TFX_PRINTF(3, 4);
void rt_text_dispose(RtText *t, const RtAlloc *a);

/* A mapped weights file kept alive because bound weights point into it. */
typedef struct RtMapping {
    struct RtMapping *next;
    void             *base;
    size_t            size;
} RtMapping;

struct tfx_model {
    const TfxModelDesc *desc;
    RtAlloc             a;
    tfx_options         opt;       /* as given, with nthreads resolved */
    void              **weights;   /* [nweights] pointers handed to forward; NULL = unbound */
    void              **owned;     /* [nweights] buffers this model allocated, else NULL */
    RtMapping          *mappings;  /* weight files that bound weights point into */
    RtText              warnings;
    int64_t            *syms;      /* [nsyms] values of the last successful forward */
    int64_t            *scratch_syms; /* [nsyms] values being derived by a forward call */
    int                 has_run;   /* a forward call succeeded, so syms is valid */
    void               *workspace_raw;  /* allocation holding the 64-byte aligned workspace */
    void               *workspace;
    size_t              workspace_size;
    struct TfxPool     *pool;
    void               *device;   /* CUDA state of a --target=cuda model, or NULL */
};

/* Thread pool life cycle (pool.c): nthreads counts the caller, so nthreads - 1 workers are
 * started. Returns TFX_OK, TFX_ERR_NOMEM or TFX_ERR_ARG with *err filled. */
int  rt_pool_new(const RtAlloc *a, int nthreads, struct TfxPool **out, tfx_error *err);
void rt_pool_free(struct TfxPool *p);   /* joins the workers; NULL is ignored */

/* Value of dimension d for the given symbol values; 0 on success, -1 on overflow or a
 * negative result. */
int rt_dim_eval(const TfxDimDesc *d, const int64_t *syms, int64_t *out);

/* rt_forward.c, shared with rt_step.c: the argument, weight and dimension checks of a
 * call (symbol values into syms[0 .. nsyms)), and growing the model's workspace. */
int rt_prepare_call(tfx_model *m, const void *const *inputs, const int64_t (*input_shapes)[6],
                    void *const *outputs, int64_t *syms, tfx_error *err);
int rt_reserve_workspace(tfx_model *m, size_t size, tfx_error *err);
/* rt_step.c: the step fields of a descriptor (checked by tfx_model_open). */
int rt_check_step_desc(const TfxModelDesc *d, tfx_error *err);

/* rt_cuda.c: the message of the last device failure, and releasing the state. */
const char *rt_cuda_error(const void *device);
void        rt_cuda_free(void *device);   /* NULL is ignored */

#endif
