/* test_runtime_forward.c - tfx_model_open's checks, tfx_model_forward (symbol binding from
 * input shapes, bounds, consistency, unbound weights, kernel failure, workspace growth),
 * tfx_model_output_shape and the metadata getters, on fake generated models. */
#include "test_runtime_fixture.h"

static tfx_error err;

static tfx_model *open_bound(const TfxModelDesc *d, int nthreads)
{
    tfx_model *m = rtt_open(d, nthreads, 0);
    for (uint32_t i = 0; i < tfx_model_nweights(m); i++) {
        static const float *const data[3] = { lin_w, lin_b, lin_scale };
        cr_assert_eq(tfx_model_bind_weight(m, tfx_model_weight_name(m, i), data[i], &err), TFX_OK);
    }
    return m;
}

static void expect(int rc, int code, const char *fragment)
{
    cr_assert_eq(rc, code, "got %s (%s), want %s", tfx_status_name(rc), err.message,
                 tfx_status_name(code));
    cr_assert_eq(err.code, code);
    cr_assert(strstr(err.message, fragment), "message '%s' lacks '%s'", err.message, fragment);
}

/* Runs lin with an input of shape [t, c] (data is ignored by the checks that fail). */
static int run_lin(tfx_model *m, int64_t t, int64_t c)
{
    static float x[64 * 8], y[64 * 3];
    const void *in[1] = { x };
    void *out[1] = { y };
    int64_t shapes[1][6] = { { t, c } };
    return tfx_model_forward(m, in, (const int64_t (*)[6])shapes, out, &err);
}

TestSuite(runtime_forward);

Test(runtime_forward, computes_for_every_length_and_thread_count)
{
    for (int nt = 1; nt <= 5; nt++) {
        tfx_model *m = open_bound(&lin_desc, nt);
        cr_assert_eq(tfx_model_nthreads(m), nt);
        for (int64_t T = 1; T <= LIN_TMAX; T++)
            lin_check_forward(m, T);
        tfx_model_close(m);
    }
}

Test(runtime_forward, zero_threads_means_all_cores)
{
    tfx_model *m = open_bound(&lin_desc, 0);
    cr_assert_geq(tfx_model_nthreads(m), 1);
    lin_check_forward(m, 9);
    tfx_model_close(m);
}

Test(runtime_forward, dimension_above_bound)
{
    tfx_model *m = open_bound(&lin_desc, 2);
    expect(run_lin(m, 17, 4), TFX_ERR_DIM,
           "input 'x' dimension 0 is 17, above the bound T <= 16");
    expect(run_lin(m, 0, 4), TFX_ERR_DIM, "input 'x' dimension 0 is 0, below the bound T >= 1");
    expect(run_lin(m, -3, 4), TFX_ERR_DIM,
           "input 'x' dimension 0 is -3; dimensions cannot be negative");
    expect(run_lin(m, 2, 5), TFX_ERR_DIM, "input 'x' dimension 1 is 5; expected 4");
    lin_check_forward(m, 16);   // still usable
    tfx_model_close(m);
}

/* ---- a model with two inputs sharing T, and one with an affine dimension ---- */

static const TfxSymDesc two_syms[] = { { "T", 0 }, { "B", 4 } };
static const TfxTensorDesc two_inputs[] = {
    { "tokens", TFX_I32, 2, { { 0, 1, 1, 1 }, { 0, 0, 1, 1 } } },   /* [B, T] */
    { "mask", TFX_F32, 1, { { 0, 0, 1, 1 } } },                      /* [T] */
    { "pairs", TFX_F32, 1, { { 1, 0, 2, 1 } } },                     /* [2*T + 1] */
};
static const TfxTensorDesc two_outputs[] = {
    { "half", TFX_F32, 2, { { 0, 1, 1, 1 }, { 1, 0, 1, 2 } } },     /* [B, (T + 1) / 2] */
};

static int32_t two_forward(const TfxKernelArgs *a)
{
    float *out = a->outputs[0];
    out[0] = (float)(a->syms[0] * 100 + a->syms[1]);
    return a->syms[0] == 13 ? 7 : 0;   // T = 13 fails, to test TFX_ERR_KERNEL
}

static const TfxModelDesc two_desc = {
    TFX_ABI_VERSION, "two", 2, two_syms, 3, two_inputs, 1, two_outputs, 0, NULL,
    NULL, two_forward,
    TFX_NO_STEP,
};

static int run_two(tfx_model *m, int64_t b, int64_t t, int64_t tm, int64_t np, float *out0)
{
    static int32_t tokens[64];
    static float mask[64], pairs[64], half[64];
    const void *in[3] = { tokens, mask, pairs };
    void *out[1] = { half };
    int64_t shapes[3][6] = { { b, t }, { tm }, { np } };
    int rc = tfx_model_forward(m, in, (const int64_t (*)[6])shapes, out, &err);
    *out0 = half[0];
    return rc;
}

Test(runtime_forward, symbols_bind_from_inputs)
{
    tfx_model *m = rtt_open(&two_desc, 1, 0);
    float v;
    cr_assert_eq(run_two(m, 3, 5, 5, 11, &v), TFX_OK, "%s", err.message);
    cr_assert_eq(v, 503.0f);
    cr_assert_eq(tfx_model_sym_value(m, 0), 5);
    cr_assert_eq(tfx_model_sym_value(m, 1), 3);
    int64_t shape[6];
    int rank;
    cr_assert_eq(tfx_model_output_shape(m, 0, NULL, shape, &rank), TFX_OK);
    cr_assert_eq(rank, 2);
    cr_assert_eq(shape[0], 3);
    cr_assert_eq(shape[1], 3);
    int64_t syms[2] = { 8, 2 };
    cr_assert_eq(tfx_model_output_shape(m, 0, syms, shape, &rank), TFX_OK);
    cr_assert_eq(shape[0], 2);
    cr_assert_eq(shape[1], 4);
    cr_assert_eq(tfx_model_output_shape(m, 1, syms, shape, &rank), TFX_ERR_ARG);
    cr_assert_eq(tfx_model_input_shape(m, 2, syms, shape, &rank), TFX_OK);
    cr_assert_eq(rank, 1);
    cr_assert_eq(shape[0], 17);
    int64_t bad[2] = { -1, 2 };
    cr_assert_eq(tfx_model_input_shape(m, 2, bad, shape, &rank), TFX_ERR_DIM);
    cr_assert_eq(tfx_model_input_shape(m, 3, syms, shape, &rank), TFX_ERR_ARG);
    tfx_model_close(m);
}

Test(runtime_forward, inconsistent_repeated_symbol)
{
    tfx_model *m = rtt_open(&two_desc, 1, 0);
    float v;
    expect(run_two(m, 3, 5, 6, 11, &v), TFX_ERR_DIM,
           "input 'mask' dimension 0 is 6, but input 'tokens' dimension 1 set T = 5");
    expect(run_two(m, 5, 5, 5, 11, &v), TFX_ERR_DIM,
           "input 'tokens' dimension 0 is 5, above the bound B <= 4");
    expect(run_two(m, 3, 5, 5, 12, &v), TFX_ERR_DIM,
           "input 'pairs' dimension 0 is 12; expected (1 + 2*T) / 1 with T = 5");
    tfx_model_close(m);
}

static const TfxTensorDesc affine_inputs[] = {
    { "pairs", TFX_F32, 1, { { 1, 0, 2, 1 } } },                     /* [2*T + 1] */
};
static int32_t no_output_forward(const TfxKernelArgs *a)
{
    return a->syms[0] > 0 ? 0 : 1;
}

static const TfxModelDesc affine_desc = {
    TFX_ABI_VERSION, "affine", 1, two_syms, 1, affine_inputs, 0, NULL, 0, NULL,
    NULL, no_output_forward,
    TFX_NO_STEP,
};
static const TfxModelDesc unbound_desc = {
    TFX_ABI_VERSION, "unbound", 2, two_syms, 1, affine_inputs, 0, NULL, 0, NULL,
    NULL, no_output_forward,
    TFX_NO_STEP,
};

Test(runtime_forward, affine_dimension_solves_its_symbol)
{
    tfx_model *m = rtt_open(&affine_desc, 1, 0);
    float pairs[32];
    const void *in[1] = { pairs };
    int64_t shapes[1][6] = { { 9 } };
    cr_assert_eq(tfx_model_forward(m, in, (const int64_t (*)[6])shapes, NULL, &err), TFX_OK,
                 "%s", err.message);
    cr_assert_eq(tfx_model_sym_value(m, 0), 4);
    shapes[0][0] = 10;
    expect(tfx_model_forward(m, in, (const int64_t (*)[6])shapes, NULL, &err), TFX_ERR_DIM,
           "symbol 'T' is not determined by the input shapes");
    tfx_model_close(m);

    m = rtt_open(&unbound_desc, 1, 0);
    shapes[0][0] = 9;
    expect(tfx_model_forward(m, in, (const int64_t (*)[6])shapes, NULL, &err), TFX_ERR_DIM,
           "symbol 'B' is not determined by the input shapes");
    tfx_model_close(m);
}

Test(runtime_forward, kernel_failure_is_reported)
{
    tfx_model *m = rtt_open(&two_desc, 1, 0);
    float v;
    expect(run_two(m, 1, 13, 13, 27, &v), TFX_ERR_KERNEL, "model 'two': forward failed with code 7");
    cr_assert_eq(tfx_model_sym_value(m, 0), -1);   // nothing succeeded yet
    int64_t shape[6];
    int rank;
    cr_assert_eq(tfx_model_output_shape(m, 0, NULL, shape, &rank), TFX_ERR_ARG);
    tfx_model_close(m);
}

Test(runtime_forward, unbound_weights_are_named)
{
    tfx_model *m = rtt_open(&lin_desc, 1, 0);
    cr_assert_eq(tfx_model_bind_weight(m, "fc.weight", lin_w, &err), TFX_OK);
    expect(run_lin(m, 2, 4), TFX_ERR_MISSING_WEIGHT,
           "model 'lin': weight 'fc.bias' is not bound (2 of 3 unbound)");
    tfx_model_close(m);
}

Test(runtime_forward, null_arguments)
{
    tfx_model *m = open_bound(&lin_desc, 1);
    float x[4];
    const void *in[1] = { x };
    void *out[1] = { NULL };
    int64_t shapes[1][6] = { { 1, 4 } };
    expect(tfx_model_forward(m, in, (const int64_t (*)[6])shapes, out, &err), TFX_ERR_ARG,
           "output 'y' is NULL");
    expect(tfx_model_forward(m, NULL, NULL, out, &err), TFX_ERR_ARG, "inputs or input shapes");
    expect(tfx_model_forward(NULL, in, NULL, out, &err), TFX_ERR_ARG, "the model is NULL");
    cr_assert_eq(tfx_model_forward(m, in, (const int64_t (*)[6])shapes, out, NULL), TFX_ERR_ARG);
    tfx_model_close(m);
}

/* ---- workspace ---- */

static size_t ws_bytes(const int64_t *syms)
{
    return (size_t)syms[0] * 1000;
}

static int32_t ws_forward(const TfxKernelArgs *a)
{
    if ((uintptr_t)a->workspace % 64 != 0)
        return 1;
    memset(a->workspace, 0x5A, ws_bytes(a->syms));   // ASan catches an undersized buffer
    return 0;
}

static const TfxModelDesc ws_desc = {
    TFX_ABI_VERSION, "ws", 1, two_syms, 1, affine_inputs, 0, NULL, 0, NULL, ws_bytes, ws_forward,
    TFX_NO_STEP,
};

Test(runtime_forward, workspace_grows_and_is_aligned)
{
    tfx_model *m = rtt_open(&ws_desc, 1, 0);
    float pairs[64];
    const void *in[1] = { pairs };
    int64_t lens[] = { 3, 9, 5, 31, 7, 31 };   // 2*T + 1
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        int64_t shapes[1][6] = { { lens[i] } };
        cr_assert_eq(tfx_model_forward(m, in, (const int64_t (*)[6])shapes, NULL, &err), TFX_OK,
                     "%s", err.message);
    }
    tfx_model_close(m);
}

/* ---- open ---- */

Test(runtime_forward, open_rejects_bad_descriptors_and_options)
{
    expect(tfx_model_open(NULL, NULL, &err) == NULL ? err.code : 0, TFX_ERR_ARG,
           "the model descriptor is NULL");
    TfxModelDesc d = lin_desc;
    d.abi_version = 1;   // before the step entry
    cr_assert_null(tfx_model_open(&d, NULL, &err));
    expect(err.code, TFX_ERR_ABI, "model descriptor has ABI version 1, this runtime expects 2");
    d = lin_desc;
    d.forward = NULL;
    cr_assert_null(tfx_model_open(&d, NULL, &err));
    expect(err.code, TFX_ERR_ABI, "model descriptor 'lin' is incomplete");
    TfxTensorDesc bad_in = lin_inputs[0];
    bad_in.dims[0].sym = 5;
    d = lin_desc;
    d.inputs = &bad_in;
    cr_assert_null(tfx_model_open(&d, NULL, &err));
    expect(err.code, TFX_ERR_ABI, "model 'lin': input 'x' dimension 0 is malformed");
    tfx_options opt = { .nthreads = -1 };
    cr_assert_null(tfx_model_open(&lin_desc, &opt, &err));
    expect(err.code, TFX_ERR_ARG, "nthreads is -1");
    opt = (tfx_options){ .free = NULL, .alloc = NULL, .alloc_ctx = &opt };
    tfx_model *m = tfx_model_open(&lin_desc, &opt, &err);
    cr_assert_not_null(m);
    tfx_model_close(m);
    tfx_model_close(NULL);
}

Test(runtime_forward, metadata_getters)
{
    tfx_model *m = rtt_open(&two_desc, 1, 0);
    cr_assert_str_eq(tfx_model_name(m), "two");
    cr_assert_eq(tfx_model_nsyms(m), 2);
    cr_assert_str_eq(tfx_model_sym_name(m, 1), "B");
    cr_assert_eq(tfx_model_sym_max(m, 1), 4);
    cr_assert_eq(tfx_model_sym_max(m, 0), 0);
    cr_assert_null(tfx_model_sym_name(m, 2));
    cr_assert_eq(tfx_model_ninputs(m), 3);
    cr_assert_str_eq(tfx_model_input_name(m, 0), "tokens");
    cr_assert_eq(tfx_model_input_dtype(m, 0), TFX_DTYPE_I32);
    cr_assert_eq(tfx_model_input_rank(m, 2), 1);
    cr_assert_eq(tfx_model_input_rank(m, 3), -1);
    cr_assert_eq(tfx_model_noutputs(m), 1);
    cr_assert_str_eq(tfx_model_output_name(m, 0), "half");
    cr_assert_eq(tfx_model_output_dtype(m, 0), TFX_DTYPE_F32);
    cr_assert_eq(tfx_model_output_rank(m, 0), 2);
    cr_assert_eq(tfx_model_nweights(m), 0);
    cr_assert_null(tfx_model_weight_name(m, 0));
    tfx_model_close(m);
    m = rtt_open(&lin_desc, 1, 0);
    int64_t shape[6];
    cr_assert_eq(tfx_model_weight_shape(m, 0, shape), 2);
    cr_assert_eq(shape[0], 4);
    cr_assert_eq(shape[1], 3);
    cr_assert_eq(tfx_model_weight_shape(m, 3, shape), -1);
    tfx_model_close(m);
}

Test(runtime_forward, status_and_dtype_names)
{
    cr_assert_str_eq(tfx_status_name(TFX_OK), "TFX_OK");
    cr_assert_str_eq(tfx_status_name(TFX_ERR_OFFSETS), "TFX_ERR_OFFSETS");
    cr_assert_str_eq(tfx_status_name(TFX_ERR_KERNEL), "TFX_ERR_KERNEL");
    cr_assert_str_eq(tfx_status_name(-1), "TFX_ERR_UNKNOWN");
    cr_assert_str_eq(tfx_status_name(TFX_STATUS_COUNT_), "TFX_ERR_UNKNOWN");
    for (int c = 0; c < TFX_STATUS_COUNT_; c++)
        cr_assert(strncmp(tfx_status_name(c), "TFX_", 4) == 0);
    cr_assert_str_eq(tfx_dtype_name(TFX_BF16), "bf16");
    cr_assert_str_eq(tfx_dtype_name(9), "?");
}
