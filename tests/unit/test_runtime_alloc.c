/* test_runtime_alloc.c - fault injection through the allocation hook (Lua's failnext): fail
 * the Nth allocation of open + load + forward for every N until the sequence succeeds;
 * each failure must be TFX_ERR_NOMEM, leave the model usable, and leak nothing. */
#include "test_runtime_fixture.h"

typedef struct FailAlloc {
    long   count;     /* allocations made so far */
    long   fail_at;   /* the allocation number that fails (1-based); 0 = never */
    long   live;      /* allocations not yet freed */
} FailAlloc;

static void *fail_alloc(size_t size, void *ctx)
{
    FailAlloc *f = ctx;
    if (++f->count == f->fail_at)
        return NULL;
    void *p = malloc(size);
    if (p)
        f->live++;
    return p;
}

static void fail_free(void *p, void *ctx)
{
    FailAlloc *f = ctx;
    f->live--;
    free(p);
}

/* One attempt: returns the status of the first failing step, or TFX_OK. */
static int attempt(FailAlloc *fa, const char *path, int nthreads)
{
    tfx_options opt = { .nthreads = nthreads, .alloc = fail_alloc, .free = fail_free,
                        .alloc_ctx = fa };
    tfx_error err = { 0 };
    tfx_model *m = tfx_model_open(&lin_desc, &opt, &err);
    if (!m) {
        cr_assert_eq(err.code, TFX_ERR_NOMEM, "open: %s", err.message);
        return err.code;
    }
    int rc = tfx_model_load_weights(m, path, &err);
    if (rc == TFX_OK) {
        float x[8 * 4], y[8 * 3];
        lin_input(x, 8);
        const void *in[1] = { x };
        void *out[1] = { y };
        int64_t shapes[1][6] = { { 8, 4 } };
        rc = tfx_model_forward(m, in, (const int64_t (*)[6])shapes, out, &err);
    }
    if (rc != TFX_OK) {
        cr_assert_eq(rc, TFX_ERR_NOMEM, "%s: %s", tfx_status_name(rc), err.message);
        // The model stays usable: with allocation working again, everything succeeds.
        long saved = fa->fail_at;
        fa->fail_at = 0;
        cr_assert_eq(tfx_model_load_weights(m, path, &err), TFX_OK, "%s", err.message);
        lin_check_forward(m, 8);
        fa->fail_at = saved;
    }
    tfx_model_close(m);
    return rc;
}

static void fail_every_allocation(const char *dtype, int misalign, int nthreads)
{
    char *path = rtt_lin_file(dtype, misalign);
    long n = 1;
    for (;; n++) {
        FailAlloc fa = { .fail_at = n };
        int rc = attempt(&fa, path, nthreads);
        cr_assert_eq(fa.live, 0, "fail at %ld: %ld allocations leaked", n, fa.live);
        if (rc == TFX_OK) {
            cr_assert_lt(fa.count, n, "success although allocation %ld failed", n);
            break;
        }
        cr_assert_lt(n, 10000, "no success after 10000 allocations");
    }
    cr_assert_gt(n, 10, "only %ld allocations: is the hook used?", n);
    rtt_remove(path);
}

TestSuite(runtime_alloc);

Test(runtime_alloc, every_failure_is_nomem_f32) { fail_every_allocation("F32", 0, 1); }
Test(runtime_alloc, every_failure_is_nomem_f16) { fail_every_allocation("F16", 0, 3); }
Test(runtime_alloc, every_failure_is_nomem_misaligned) { fail_every_allocation("BF16", 1, 2); }

Test(runtime_alloc, json_parser_failures_do_not_leak)
{
    // A header with more nodes: unexpected tensors, metadata, escapes.
    const char *json = "{\"__metadata__\":{\"a\":\"b\\u00e9\",\"c\":\"d\"},"
                       "\"x\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[0,4]},"
                       "\"y\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}";
    size_t len;
    unsigned char *img = rtt_image_raw(json, "\0\0\0\0\0\0\0\0", 8, 0, &len);
    char *path = rtt_write(img, len);
    free(img);
    for (long n = 1;; n++) {
        FailAlloc fa = { 0 };
        tfx_options opt = { .nthreads = 1, .alloc = fail_alloc, .free = fail_free,
                            .alloc_ctx = &fa };
        tfx_error err;
        tfx_model *m = tfx_model_open(&lin_desc, &opt, &err);
        cr_assert_not_null(m);
        fa.fail_at = fa.count + n;
        int rc = tfx_model_load_weights(m, path, &err);
        tfx_model_close(m);
        cr_assert_eq(fa.live, 0, "fail at %ld: leak", n);
        if (rc == TFX_ERR_MISSING_WEIGHT)   // got past parsing: every allocation survived
            break;
        cr_assert_eq(rc, TFX_ERR_NOMEM, "%s: %s", tfx_status_name(rc), err.message);
    }
    rtt_remove(path);
}
