/* rt_pool.c - the thread pool that generated code parallelises over through
 * tfx_pool_parallel_for. A model's pool has nthreads - 1 pthread workers, started at
 * tfx_model_open and joined at tfx_model_close; the calling thread is thread 0. Work is
 * split into one fixed contiguous chunk per thread, so chunking is deterministic. */
#include "rt.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

typedef void (*PoolFn)(void *ctx, int64_t begin, int64_t end);

typedef struct PoolWorker {
    struct TfxPool *pool;
    int             index;      /* 1 .. nthreads-1; runs chunk `index` */
    pthread_t       thread;
} PoolWorker;

/* How long a worker polls for the next job, and the caller for the workers to finish,
 * before sleeping on a condition variable: about 50 us of `pause`. A forward pass runs
 * its parallel loops back to back, so the next job usually comes within that window and
 * nobody pays a futex wake-up (~10 us each way on the development host). */
enum { POOL_SPIN = 2000 };

struct TfxPool {
    RtAlloc          a;
    int              nthreads;  /* workers + the caller */
    int              nstarted;  /* workers actually running */
    PoolWorker      *workers;   /* [nthreads - 1] */
    pthread_mutex_t  mu;        /* guards busy, the sleeps and the wake-ups */
    pthread_cond_t   work_cv;   /* workers sleep here for a new generation or stop */
    pthread_cond_t   done_cv;   /* the caller sleeps here for pending == 0 */
    _Atomic uint64_t generation; /* bumped for each parallel_for (after fn, ctx, n are set) */
    _Atomic int      pending;   /* workers still running the current job */
    _Atomic int      stop;
    int              busy;      /* a parallel_for is in progress (nested calls run inline) */
    PoolFn           fn;        /* the current job */
    void            *ctx;
    int64_t          n;
};

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

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
    for (;;) {
        uint64_t g = atomic_load_explicit(&p->generation, memory_order_acquire);
        for (int i = 0; g == seen && i < POOL_SPIN && !atomic_load(&p->stop); i++) {
            cpu_relax();
            g = atomic_load_explicit(&p->generation, memory_order_acquire);
        }
        if (g == seen) {   // nothing came: sleep until a job or stop
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->work_cv, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->stop))
            break;
        seen = g;
        run_chunk(p->fn, p->ctx, p->n, p->nthreads, w->index);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);   // the caller may be asleep
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
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
    atomic_store(&p->pending, p->nthreads - 1);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->work_cv);   // wakes the workers that went to sleep
    pthread_mutex_unlock(&p->mu);

    run_chunk(fn, ctx, n, p->nthreads, 0);

    for (int i = 0; i < POOL_SPIN && atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++)
        cpu_relax();
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0)
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
    atomic_store(&p->stop, 1);
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
