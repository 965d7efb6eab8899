/* rt_pool.c - the thread pool that generated code parallelises over through
 * tfx_pool_parallel_for. A model's pool has nthreads - 1 pthread workers, started at
 * tfx_model_open and joined at tfx_model_close; the calling thread is thread 0. Work is
 * split into one fixed contiguous chunk per thread, so chunking is deterministic. */
#include "rt.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

typedef void (*PoolFn)(void *ctx, int64_t begin, int64_t end);

typedef struct PoolWorker {
    struct TfxPool *pool;
    int             index;      /* 1 .. nthreads-1; runs chunk `index` */
    pthread_t       thread;
} PoolWorker;

struct TfxPool {
    RtAlloc          a;
    int              nthreads;  /* workers + the caller */
    int              nstarted;  /* workers actually running */
    PoolWorker      *workers;   /* [nthreads - 1] */
    pthread_mutex_t  mu;        /* guards everything below */
    pthread_cond_t   work_cv;   /* workers wait here for a new generation or stop */
    pthread_cond_t   done_cv;   /* the caller waits here for pending == 0 */
    uint64_t         generation; /* bumped for each parallel_for */
    int              pending;   /* workers still running the current job */
    int              busy;      /* a parallel_for is in progress (nested calls run inline) */
    int              stop;
    PoolFn           fn;        /* the current job */
    void            *ctx;
    int64_t          n;
};

/* Chunk k of [0, n) split into t parts: [k*n/t, (k+1)*n/t) without overflow. */
static void chunk_range(int64_t n, int t, int k, int64_t *begin, int64_t *end)
{
    int64_t base = n / t, rem = n % t;
    *begin = k * base + (k < rem ? k : rem);
    *end = *begin + base + (k < rem ? 1 : 0);
}

static void run_chunk(PoolFn fn, void *ctx, int64_t n, int t, int k)
{
    int64_t begin, end;
    chunk_range(n, t, k, &begin, &end);
    if (begin < end)
        fn(ctx, begin, end);
}

static void *worker_main(void *arg)
{
    PoolWorker *w = arg;
    struct TfxPool *p = w->pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->generation == seen && !p->stop)
            pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->stop)
            break;
        seen = p->generation;
        PoolFn fn = p->fn;
        void *ctx = p->ctx;
        int64_t n = p->n;
        pthread_mutex_unlock(&p->mu);
        run_chunk(fn, ctx, n, p->nthreads, w->index);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0)
            pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

void tfx_pool_parallel_for(struct TfxPool *p, int64_t n, PoolFn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (!p || p->nthreads <= 1) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&p->mu);
    if (p->busy) {   // nested call from inside fn, or a second caller
        pthread_mutex_unlock(&p->mu);
        fn(ctx, 0, n);
        return;
    }
    p->busy = 1;
    p->fn = fn, p->ctx = ctx, p->n = n;
    p->pending = p->nthreads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);

    run_chunk(fn, ctx, n, p->nthreads, 0);

    pthread_mutex_lock(&p->mu);
    while (p->pending > 0)
        pthread_cond_wait(&p->done_cv, &p->mu);
    p->busy = 0;
    pthread_mutex_unlock(&p->mu);
}

int tfx_pool_nthreads(const struct TfxPool *p)
{
    return p ? p->nthreads : 1;
}

/* Stops and joins the started workers, then frees p. */
void rt_pool_free(struct TfxPool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->nstarted; i++)
        pthread_join(p->workers[i].thread, NULL);
    pthread_cond_destroy(&p->done_cv);
    pthread_cond_destroy(&p->work_cv);
    pthread_mutex_destroy(&p->mu);
    RtAlloc a = p->a;
    rt_free(&a, p->workers);
    rt_free(&a, p);
}

static int init_sync(struct TfxPool *p)
{
    if (pthread_mutex_init(&p->mu, NULL) != 0)
        return -1;
    if (pthread_cond_init(&p->work_cv, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        return -1;
    }
    if (pthread_cond_init(&p->done_cv, NULL) != 0) {
        pthread_cond_destroy(&p->work_cv);
        pthread_mutex_destroy(&p->mu);
        return -1;
    }
    return 0;
}

int rt_pool_new(const RtAlloc *a, int nthreads, struct TfxPool **out, tfx_error *err)
{
    *out = NULL;
    if (nthreads < 1)
        return rt_fail(err, TFX_ERR_ARG, "a thread pool needs at least 1 thread, got %d",
                       nthreads);
    struct TfxPool *p = rt_alloc_array(a, 1, sizeof *p);
    if (!p)
        return rt_fail(err, TFX_ERR_NOMEM, "out of memory for the thread pool");
    p->a = *a;
    p->nthreads = nthreads;
    p->workers = rt_alloc_array(a, (size_t)nthreads, sizeof *p->workers);
    if (!p->workers || init_sync(p) != 0) {
        rt_free(a, p->workers);
        rt_free(a, p);
        return rt_fail(err, TFX_ERR_NOMEM, "out of memory for the thread pool");
    }
    for (int i = 0; i < nthreads - 1; i++) {
        p->workers[i] = (PoolWorker){ .pool = p, .index = i + 1 };
        int e = pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
        if (e != 0) {
            rt_pool_free(p);
            return rt_fail(err, TFX_ERR_NOMEM, "cannot start thread %d of %d: %s", i + 2,
                           nthreads, strerror(e));
        }
        p->nstarted++;
    }
    *out = p;
    return TFX_OK;
}
