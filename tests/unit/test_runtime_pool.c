/* test_runtime_pool.c - the thread pool behind tfx_pool_parallel_for: every index covered
 * exactly once for many sizes and thread counts, deterministic chunk boundaries, inline
 * execution without a pool and for nested calls, many calls in a row. */
#include <stdatomic.h>

#include "rt.h"
#include "test_runtime_fixture.h"

#define MAX_N 20000

typedef struct Cover {
    _Atomic int     hits[MAX_N];   /* [n] how often each index was visited */
    _Atomic int64_t calls;
    int64_t         nthreads;      /* for the chunk boundary check */
    int64_t         n;
} Cover;

static void *test_alloc(size_t size, void *ctx)
{
    (void)ctx;
    return malloc(size);
}

static void test_free(void *p, void *ctx)
{
    (void)ctx;
    free(p);
}

static struct TfxPool *new_pool(int nthreads)
{
    RtAlloc a = { test_alloc, test_free, NULL };
    struct TfxPool *p = NULL;
    tfx_error err = { 0 };
    cr_assert_eq(rt_pool_new(&a, nthreads, &p, &err), TFX_OK, "%s", err.message);
    cr_assert_eq(tfx_pool_nthreads(p), nthreads);
    return p;
}

/* Checks that [begin, end) is exactly one of the documented chunks k*n/t. */
static int is_documented_chunk(const Cover *c, int64_t begin, int64_t end)
{
    int64_t n = c->n, t = c->nthreads;
    for (int64_t k = 0; k < t; k++) {
        int64_t b = k * (n / t) + (k < n % t ? k : n % t);
        int64_t e = b + n / t + (k < n % t);
        if (b == begin && e == end)
            return 1;
    }
    return 0;
}

static void cover(void *ctx, int64_t begin, int64_t end)
{
    Cover *c = ctx;
    cr_assert_lt(begin, end, "empty chunk [%lld, %lld)", (long long)begin, (long long)end);
    cr_assert(is_documented_chunk(c, begin, end), "chunk [%lld, %lld) of n=%lld t=%lld",
              (long long)begin, (long long)end, (long long)c->n, (long long)c->nthreads);
    for (int64_t i = begin; i < end; i++)
        atomic_fetch_add(&c->hits[i], 1);
    atomic_fetch_add(&c->calls, 1);
}

static void run_and_check(struct TfxPool *p, int nthreads, int64_t n, Cover *c)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    c->nthreads = nthreads;
    tfx_pool_parallel_for(p, n, cover, c);
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(atomic_load(&c->hits[i]), 1, "n=%lld threads=%d: index %lld hit %d times",
                     (long long)n, nthreads, (long long)i, atomic_load(&c->hits[i]));
    int64_t want_calls = n < nthreads ? n : nthreads;
    cr_assert_eq(atomic_load(&c->calls), want_calls, "n=%lld threads=%d", (long long)n, nthreads);
}

TestSuite(runtime_pool);

Test(runtime_pool, covers_every_index_exactly_once)
{
    static Cover c;
    static const int64_t sizes[] = { 0, 1, 2, 3, 5, 7, 8, 9, 16, 63, 100, 1000, 4097, MAX_N };
    for (int nt = 1; nt <= 9; nt++) {
        struct TfxPool *p = new_pool(nt);
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            run_and_check(p, nt, sizes[i], &c);
        rt_pool_free(p);
    }
}

Test(runtime_pool, null_pool_runs_inline)
{
    static Cover c;
    run_and_check(NULL, 1, 1234, &c);
    cr_assert_eq(tfx_pool_nthreads(NULL), 1);
}

Test(runtime_pool, many_calls_in_a_row)
{
    static Cover c;
    struct TfxPool *p = new_pool(4);
    for (int rep = 0; rep < 2000; rep++)
        run_and_check(p, 4, rep % 37, &c);
    rt_pool_free(p);
}

typedef struct Nested {
    struct TfxPool *pool;
    _Atomic int64_t sum;
} Nested;

static void inner(void *ctx, int64_t begin, int64_t end)
{
    Nested *n = ctx;
    for (int64_t i = begin; i < end; i++)
        atomic_fetch_add(&n->sum, i);
}

static void outer(void *ctx, int64_t begin, int64_t end)
{
    Nested *n = ctx;
    for (int64_t i = begin; i < end; i++)
        tfx_pool_parallel_for(n->pool, 100, inner, n);   // runs inline: the pool is busy
}

Test(runtime_pool, nested_calls_run_inline)
{
    struct TfxPool *p = new_pool(3);
    Nested n = { .pool = p };
    tfx_pool_parallel_for(p, 10, outer, &n);
    cr_assert_eq(atomic_load(&n.sum), 10 * 4950);
    rt_pool_free(p);
}

Test(runtime_pool, rejects_zero_threads)
{
    RtAlloc a = { test_alloc, test_free, NULL };
    struct TfxPool *p = (struct TfxPool *)&a;
    tfx_error err = { 0 };
    cr_assert_eq(rt_pool_new(&a, 0, &p, &err), TFX_ERR_ARG);
    cr_assert_null(p);
    rt_pool_free(NULL);
}

Test(runtime_pool, pool_reaches_forward)
{
    // The lin kernel splits its rows over the model's pool; 16 rows over 7 threads.
    tfx_model *m = rtt_open(&lin_desc, 7, 0);
    tfx_error err;
    cr_assert_eq(tfx_model_bind_weight(m, "fc.weight", lin_w, &err), TFX_OK);
    cr_assert_eq(tfx_model_bind_weight(m, "fc.bias", lin_b, &err), TFX_OK);
    cr_assert_eq(tfx_model_bind_weight(m, "fc.scale", lin_scale, &err), TFX_OK);
    for (int rep = 0; rep < 50; rep++)
        lin_check_forward(m, 1 + rep % LIN_TMAX);
    tfx_model_close(m);
}
