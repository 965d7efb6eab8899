/* test_runtime_weights.c - tfx_model_load_weights and tfx_model_bind_weight: good files in
 * f32/f16/bf16 (aligned and not), f16/bf16 weights (in place, copied, narrowed with
 * round to nearest even), then every class of bad file with its exact status code
 * and message: missing, unexpected, wrong shape or dtype, truncation at every byte,
 * malformed header JSON, bad header structure, bad offsets. */
#include <math.h>

#include "test_runtime_fixture.h"

static tfx_model *model;
static tfx_error  err;

static void setup(void)
{
    model = rtt_open(&lin_desc, 2, 0);
    memset(&err, 0, sizeof err);
}

static void teardown(void)
{
    tfx_model_close(model);
}

TestSuite(runtime_weights, .init = setup, .fini = teardown);

/* Loads the image from a temporary file; returns the status. */
static int load_image(const unsigned char *img, size_t len)
{
    char *path = rtt_write(img, len);
    int rc = tfx_model_load_weights(model, path, &err);
    rtt_remove(path);
    return rc;
}

static int load_json(const char *json, const void *data, size_t ndata)
{
    size_t len;
    unsigned char *img = rtt_image_raw(json, data, ndata, 0, &len);
    int rc = load_image(img, len);
    free(img);
    return rc;
}

static int load_tensors(const RttTensor *ts, int n)
{
    size_t len;
    unsigned char *img = rtt_image(ts, n, 0, &len);
    int rc = load_image(img, len);
    free(img);
    return rc;
}

static void expect(int rc, int code, const char *fragment)
{
    cr_assert_eq(rc, code, "got %s (%s), want %s", tfx_status_name(rc), err.message,
                 tfx_status_name(code));
    if (code != TFX_OK)
        cr_assert_eq(err.code, code);
    cr_assert(strstr(err.message, fragment), "message '%s' lacks '%s'", err.message, fragment);
}

/* A failed load must leave the weights unbound. */
static void expect_unbound(void)
{
    float x[4] = { 0 }, y[3];
    const void *in[1] = { x };
    void *out[1] = { y };
    int64_t shapes[1][6] = { { 1, 4 } };
    tfx_error e2;
    cr_assert_eq(tfx_model_forward(model, in, (const int64_t (*)[6])shapes, out, &e2),
                 TFX_ERR_MISSING_WEIGHT);
}

/* ---- good files ---- */

static void load_lin(const char *dtype, int misalign)
{
    char *path = rtt_lin_file(dtype, misalign);
    int rc = tfx_model_load_weights(model, path, &err);
    cr_assert_eq(rc, TFX_OK, "%s: %s", tfx_status_name(rc), err.message);
    rtt_remove(path);
    lin_check_forward(model, 5);
    cr_assert_str_eq(tfx_model_warnings(model), "");
}

Test(runtime_weights, loads_f32_in_place) { load_lin("F32", 0); }
Test(runtime_weights, loads_f16_converted) { load_lin("F16", 0); }
Test(runtime_weights, loads_bf16_converted) { load_lin("BF16", 0); }
Test(runtime_weights, copies_misaligned_f32) { load_lin("F32", 1); }
Test(runtime_weights, converts_misaligned_f16) { load_lin("F16", 3); }

Test(runtime_weights, reload_replaces_bindings)
{
    load_lin("F16", 0);
    load_lin("F32", 0);
    load_lin("BF16", 2);
}

Test(runtime_weights, f16_specials_convert_exactly)
{
    // Normal, subnormal, largest and signed-zero halves (finite: the kernel multiplies
    // every entry by 0 or 1) into the 12 entries of fc.weight.
    uint16_t h[12] = { 0x3C00, 0xC000, 0x0001, 0x7BFF, 0xFBFF, 0x3800,
                       0x0000, 0x8000, 0x03FF, 0x0400, 0x3BFF, 0x3555 };
    float want[12] = { 1.0f, -2.0f, 0x1p-24f, 65504.0f, -65504.0f, 0.5f,
                       0.0f, -0.0f, 0x3FFp-24f, 0x1p-14f, 0x1.ffcp-1f, 0x1.554p-2f };
    unsigned char buf[64];
    RttTensor ts[3];
    rtt_lin_tensors(ts, "F16", buf);
    ts[0].data = h;
    cr_assert_eq(load_tensors(ts, 3), TFX_OK, "%s", err.message);
    // Run with x = e_i rows to read W back through the kernel: y = (W[i] + b) * 2.
    for (int i = 0; i < 4; i++) {
        float x[4] = { 0 }, y[3];
        x[i] = 1.0f;
        const void *in[1] = { x };
        void *out[1] = { y };
        int64_t shapes[1][6] = { { 1, 4 } };
        cr_assert_eq(tfx_model_forward(model, in, (const int64_t (*)[6])shapes, out, &err),
                     TFX_OK);
        for (int j = 0; j < 3; j++) {
            float w = want[i * 3 + j], v = (w + lin_b[j]) * 2.0f;
            cr_assert_eq(y[j], v, "W[%d][%d]: %a vs %a", i, j, y[j], v);
        }
    }
}

Test(runtime_weights, weights_already_bound_may_be_absent)
{
    cr_assert_eq(tfx_model_bind_weight(model, "fc.bias", lin_b, &err), TFX_OK);
    unsigned char buf[64];
    RttTensor ts[3];
    rtt_lin_tensors(ts, "F32", buf);
    ts[1] = ts[2];   // drop fc.bias
    cr_assert_eq(load_tensors(ts, 2), TFX_OK, "%s", err.message);
    lin_check_forward(model, 3);
}

Test(runtime_weights, bind_weight_from_memory)
{
    cr_assert_eq(tfx_model_bind_weight(model, "fc.weight", lin_w, &err), TFX_OK);
    cr_assert_eq(tfx_model_bind_weight(model, "fc.bias", lin_b, &err), TFX_OK);
    cr_assert_eq(tfx_model_bind_weight(model, "fc.scale", lin_scale, &err), TFX_OK);
    lin_check_forward(model, 16);
    expect(tfx_model_bind_weight(model, "fc.nope", lin_b, &err), TFX_ERR_ARG,
           "model 'lin' has no weight named 'fc.nope'");
    expect(tfx_model_bind_weight(model, "fc.bias", NULL, &err), TFX_ERR_ARG, "the data is NULL");
}

/* ---- missing, unexpected, shape, dtype ---- */

Test(runtime_weights, missing_weight_is_named_with_count)
{
    unsigned char buf[64];
    RttTensor ts[3];
    rtt_lin_tensors(ts, "F32", buf);
    expect(load_tensors(ts, 1), TFX_ERR_MISSING_WEIGHT,
           "missing weight 'fc.bias' (expected f32 [3]); 2 of 3 weights missing in all");
    cr_assert(strstr(err.message, "/tmp/tfxrt-test-"), "file not named: %s", err.message);
    expect_unbound();
}

Test(runtime_weights, missing_weight_with_init_needs_the_option)
{
    unsigned char buf[64];
    RttTensor ts[3];
    rtt_lin_tensors(ts, "F32", buf);
    expect(load_tensors(ts, 2), TFX_ERR_MISSING_WEIGHT,
           "missing weight 'fc.scale' (expected f32 [1]); 1 of 3");
    tfx_model_close(model);
    tfx_options opt = { .nthreads = 1, .allow_missing_with_init = 1 };
    model = tfx_model_open(&lin_desc, &opt, &err);
    cr_assert_not_null(model);
    cr_assert_eq(load_tensors(ts, 2), TFX_OK, "%s", err.message);
    lin_check_forward(model, 4);   // fc.scale filled with its init 2.0
    expect(load_tensors(ts, 1), TFX_OK, "");   // fc.bias has no init, but is bound now
}

Test(runtime_weights, unexpected_tensor_warns_by_default)
{
    unsigned char buf[64];
    float extra[2] = { 1, 2 };
    RttTensor ts[4];
    rtt_lin_tensors(ts, "F32", buf);
    ts[3] = (RttTensor){ "fc.extra", "F32", 1, { 2 }, extra, 8 };
    cr_assert_eq(load_tensors(ts, 4), TFX_OK, "%s", err.message);
    const char *w = tfx_model_warnings(model);
    cr_assert(strstr(w, ": unexpected tensor 'fc.extra' ignored: model 'lin' has no such "
                        "weight\n"), "warnings: '%s'", w);
    lin_check_forward(model, 2);
}

Test(runtime_weights, unexpected_tensor_is_an_error_when_strict)
{
    tfx_model_close(model);
    model = rtt_open(&lin_desc, 1, 1);
    unsigned char buf[64];
    float extra[2] = { 1, 2 };
    RttTensor ts[5];
    rtt_lin_tensors(ts, "F32", buf);
    ts[3] = (RttTensor){ "fc.extra", "F32", 1, { 2 }, extra, 8 };
    ts[4] = (RttTensor){ "fc.more", "F32", 1, { 1 }, extra, 4 };
    expect(load_tensors(ts, 5), TFX_ERR_UNEXPECTED_WEIGHT,
           "unexpected tensor 'fc.extra': model 'lin' has no such weight; 2 unexpected in all");
    expect_unbound();
    cr_assert_str_eq(tfx_model_warnings(model), "");
}

Test(runtime_weights, wrong_shape_shows_both_shapes)
{
    unsigned char buf[64];
    RttTensor ts[3];
    rtt_lin_tensors(ts, "F32", buf);
    ts[0].shape[0] = 3, ts[0].shape[1] = 4;
    expect(load_tensors(ts, 3), TFX_ERR_SHAPE,
           "tensor 'fc.weight': expected shape [4, 3], found [3, 4]");
    ts[0].rank = 1, ts[0].shape[0] = 12;
    expect(load_tensors(ts, 3), TFX_ERR_SHAPE, "expected shape [4, 3], found [12]");
    expect_unbound();
}

Test(runtime_weights, wrong_dtype_names_accepted_ones)
{
    unsigned char buf[64];
    RttTensor ts[3];
    rtt_lin_tensors(ts, "F32", buf);
    ts[1].dtype = "I32";
    expect(load_tensors(ts, 3), TFX_ERR_DTYPE,
           "tensor 'fc.bias': expected dtype F32, F16 or BF16, found I32");
    double d[3] = { 1, 2, 3 };
    ts[1] = (RttTensor){ "fc.bias", "F64", 1, { 3 }, d, sizeof d };
    expect(load_tensors(ts, 3), TFX_ERR_DTYPE, "found F64");
    expect_unbound();
}

Test(runtime_weights, missing_file_is_io_error)
{
    expect(tfx_model_load_weights(model, "/nonexistent/w.safetensors", &err), TFX_ERR_IO,
           "/nonexistent/w.safetensors: cannot open: No such file or directory");
    expect(tfx_model_load_weights(model, NULL, &err), TFX_ERR_ARG, "the path is NULL");
}

Test(runtime_weights, failed_load_keeps_previous_bindings)
{
    load_lin("F32", 0);
    unsigned char buf[64];
    RttTensor ts[3];
    rtt_lin_tensors(ts, "F16", buf);
    ts[2].shape[0] = 2;
    ts[2].nbytes = 8;
    float two[2] = { 9, 9 };
    ts[2].data = two;
    ts[2].dtype = "F32";
    cr_assert_eq(load_tensors(ts, 3), TFX_ERR_SHAPE);
    lin_check_forward(model, 7);
}

/* ---- truncation ---- */

Test(runtime_weights, truncation_at_every_byte_is_reported)
{
    unsigned char buf[64];
    RttTensor ts[3];
    rtt_lin_tensors(ts, "F32", buf);
    size_t len;
    unsigned char *img = rtt_image(ts, 3, 0, &len);
    for (size_t cut = 0; cut < len; cut++) {
        memset(&err, 0, sizeof err);
        int rc = load_image(img, cut);
        cr_assert_eq(rc, TFX_ERR_TRUNCATED, "cut at %zu of %zu: %s (%s)", cut, len,
                     tfx_status_name(rc), err.message);
        cr_assert(strstr(err.message, "truncated") || strstr(err.message, "shorter than"),
                  "cut at %zu: %s", cut, err.message);
    }
    free(img);
    expect_unbound();
}

Test(runtime_weights, header_length_past_end_of_file)
{
    size_t len;
    unsigned char *img = rtt_image_raw("{}", NULL, 0, 0, &len);
    img[0] = 0x00, img[1] = 0x10;   // 4096
    expect(load_image(img, len), TFX_ERR_TRUNCATED,
           "file is truncated: the header length is 4096 bytes, but only 8 bytes follow");
    memset(img, 0xFF, 8);           // 2^64 - 1
    expect(load_image(img, len), TFX_ERR_TRUNCATED, "the header length is 18446744073709551615");
    free(img);
}

Test(runtime_weights, data_cut_short_names_the_tensor)
{
    unsigned char buf[64];
    RttTensor ts[3];
    rtt_lin_tensors(ts, "F32", buf);
    size_t len;
    unsigned char *img = rtt_image(ts, 3, 0, &len);
    expect(load_image(img, len - 2), TFX_ERR_TRUNCATED,
           "file is truncated: tensor 'fc.scale' needs data bytes 60..64, but the data section "
           "has only 62 bytes");
    free(img);
}

/* ---- malformed JSON ---- */

typedef struct BadJson {
    const char *json;
    const char *fragment;
} BadJson;

static const BadJson bad_json[] = {
    { "", "at byte 8: expected a value" },
    { "[]", "header must be a JSON object, found an array" },
    { "\"x\"", "header must be a JSON object, found a string" },
    { "{\"a\": 01}", "at byte 14: bad number: leading zero" },
    { "{\"a\": 1.}", "bad number: digit expected after '.'" },
    { "{\"a\": 1e}", "bad number: digit expected in exponent" },
    { "{\"a\": -}", "at byte 14: bad number" },
    { "{\"a\": +1}", "unexpected character" },
    { "{\"a\": tru}", "unexpected character" },
    { "{\"abc", "unterminated string" },
    { "{\"a\": \"x}", "unterminated string" },
    { "{\"a\": \"\\q\"}", "invalid escape in string" },
    { "{\"a\": \"\\u12G4\"}", "invalid \\u escape" },
    { "{\"a\": \"\\ud800\"}", "unpaired surrogate" },
    { "{\"a\": \"\\udc00\"}", "unpaired surrogate" },
    { "{\"a\": \"\\u0000\"}", "\\u0000 is not allowed" },
    { "{\"a\": \"\x01\"}", "control character in string" },
    { "{\"a\": \"\xC0\xAF\"}", "invalid UTF-8 in string" },
    { "{\"a\": \"\xED\xA0\x80\"}", "invalid UTF-8 in string" },
    { "{\"a\": \"\xE2\x82\"}", "invalid UTF-8 in string" },
    { "{} x", "at byte 11: unexpected text after the top-level value" },
    { "{}{}", "unexpected text after the top-level value" },
    { "{,}", "expected a member name (a string)" },
    { "{\"a\" 1}", "expected ':' after the member name" },
    { "{\"a\": 1,}", "expected a member name (a string)" },
    { "{\"a\": 1 \"b\": 2}", "expected ',' or '}' in object" },
    { "{\"a\": [1 2]}", "expected ',' or ']' in array" },
    { "{\"a\": [1,]}", "unexpected character" },
    { "{\"a\": [", "expected a value" },
    { "{\"a\": {}", "expected ',' or '}' in object" },
    { "{'a': 1}", "expected a member name (a string)" },
};

Test(runtime_weights, malformed_json_is_a_header_error)
{
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        memset(&err, 0, sizeof err);
        int rc = load_json(bad_json[i].json, NULL, 0);
        cr_assert_eq(rc, TFX_ERR_HEADER, "case %zu '%s': %s (%s)", i, bad_json[i].json,
                     tfx_status_name(rc), err.message);
        cr_assert(strstr(err.message, bad_json[i].fragment), "case %zu '%s': message '%s' "
                  "lacks '%s'", i, bad_json[i].json, err.message, bad_json[i].fragment);
        cr_assert(strstr(err.message, "/tmp/tfxrt-test-"), "file not named: %s", err.message);
    }
    expect_unbound();
}

Test(runtime_weights, deep_nesting_is_rejected_without_recursion_blowup)
{
    size_t depth = 10000;
    char *json = malloc(2 * depth + 16);
    cr_assert_not_null(json);
    strcpy(json, "{\"a\":");
    size_t n = strlen(json);
    for (size_t i = 0; i < depth; i++)
        json[n++] = '[';
    for (size_t i = 0; i < depth; i++)
        json[n++] = ']';
    json[n++] = '}';
    json[n] = '\0';
    expect(load_json(json, NULL, 0), TFX_ERR_HEADER, "nesting deeper than 64 levels");
    free(json);
}

Test(runtime_weights, valid_json_forms_are_accepted)
{
    cr_assert_eq(tfx_model_bind_weight(model, "fc.weight", lin_w, &err), TFX_OK);
    cr_assert_eq(tfx_model_bind_weight(model, "fc.bias", lin_b, &err), TFX_OK);
    cr_assert_eq(tfx_model_bind_weight(model, "fc.scale", lin_scale, &err), TFX_OK);
    // Whitespace everywhere, escapes, unicode, nested metadata-like values in strings.
    expect(load_json(" \t\r\n{ \"__metadata__\" : { \"k\\u00e9\\ud83d\\ude00\" : \"v\\n\\\"\\/\" } ,"
                     "\"fc.extra\":{\"shape\":[],\"dtype\":\"F32\",\"data_offsets\":[0,4]}}\n ",
                     "\0\0\0\0", 4), TFX_OK, "");
    cr_assert(strstr(tfx_model_warnings(model), "'fc.extra'"));
}

/* ---- header structure ---- */

static const BadJson bad_header[] = {
    { "{\"w\": 1}", "tensor 'w': expected an object, found a number" },
    { "{\"w\": {\"dtype\":\"F32\",\"shape\":[1]}}", "tensor 'w': missing field 'data_offsets'" },
    { "{\"w\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}",
      "tensor 'w': unknown field 'x'" },
    { "{\"w\": {\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
      "tensor 'w': duplicate field 'dtype'" },
    { "{\"w\": {\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}",
      "tensor 'w': unknown dtype 'F33'" },
    { "{\"w\": {\"dtype\":1,\"shape\":[1],\"data_offsets\":[0,4]}}",
      "tensor 'w': 'dtype' must be a string, found a number" },
    { "{\"w\": {\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
      "tensor 'w': 'shape' entry 0 must be a non-negative integer" },
    { "{\"w\": {\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}",
      "'shape' entry 0 must be a non-negative integer" },
    { "{\"w\": {\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}",
      "'shape' entry 0 must be a non-negative integer" },
    { "{\"w\": {\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}",
      "'shape' must be an array, found an object" },
    { "{\"w\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
      "'data_offsets' must have 2 entries, found 1" },
    { "{\"w\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}",
      "'data_offsets' has 3 entries, at most 2 allowed" },
    { "{\"w\": {\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"
      "\"data_offsets\":[0,4]}}", "'shape' has 17 entries, at most 16 allowed" },
    { "{\"w\": {\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
      "tensor 'w': shape [4294967296, 4294967296] is too large" },
    { "{\"w\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
      "\"w\": {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
      "duplicate tensor name 'w'" },
    { "{\"__metadata__\": []}", "'__metadata__' must be an object, found an array" },
    { "{\"__metadata__\": {\"a\": 1}}", "'__metadata__' entry 'a' must be a string, found a number" },
};

Test(runtime_weights, bad_header_structure_is_a_header_error)
{
    static const unsigned char data[8] = { 0 };
    for (size_t i = 0; i < sizeof bad_header / sizeof bad_header[0]; i++) {
        memset(&err, 0, sizeof err);
        int rc = load_json(bad_header[i].json, data, sizeof data);
        cr_assert_eq(rc, TFX_ERR_HEADER, "case %zu: %s (%s)", i, tfx_status_name(rc),
                     err.message);
        cr_assert(strstr(err.message, bad_header[i].fragment), "case %zu: message '%s' lacks "
                  "'%s'", i, err.message, bad_header[i].fragment);
    }
}

/* ---- offsets ---- */

static int load_lin_offsets(const char *w_off, const char *b_off, const char *s_off)
{
    char json[1024];
    snprintf(json, sizeof json, "{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[4,3],"
             "\"data_offsets\":%s},\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[3],"
             "\"data_offsets\":%s},\"fc.scale\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":%s}}", w_off, b_off, s_off);
    float data[16] = { 0 };
    return load_json(json, data, sizeof data);
}

Test(runtime_weights, good_offsets_in_any_order)
{
    expect(load_lin_offsets("[16,64]", "[0,12]", "[12,16]"), TFX_OK, "");
}

Test(runtime_weights, overlapping_offsets)
{
    expect(load_lin_offsets("[0,48]", "[44,56]", "[56,60]"), TFX_ERR_OFFSETS,
           "tensor 'fc.bias' (bytes 44..56) overlaps tensor 'fc.weight' (bytes 0..48)");
    expect(load_lin_offsets("[0,48]", "[48,60]", "[48,52]"), TFX_ERR_OFFSETS,
           "tensor 'fc.bias' (bytes 48..60) overlaps tensor 'fc.scale' (bytes 48..52)");
    expect_unbound();
}

Test(runtime_weights, out_of_range_offsets)
{
    expect(load_lin_offsets("[0,48]", "[48,60]", "[1000,1004]"), TFX_ERR_OFFSETS,
           "tensor 'fc.scale': data_offsets [1000, 1004] lie outside the data section (64 bytes)");
    expect(load_lin_offsets("[0,48]", "[48,60]", "[9223372036854775800,9223372036854775804]"),
           TFX_ERR_OFFSETS, "data_offsets [9223372036854775800, 9223372036854775804] lie outside");
    expect(load_lin_offsets("[0,48]", "[48,60]", "[60,18446744073709551616]"),
           TFX_ERR_HEADER, "'data_offsets' entry 1 must be a non-negative integer");
    expect_unbound();
}

Test(runtime_weights, reversed_offsets)
{
    expect(load_lin_offsets("[48,0]", "[48,60]", "[60,64]"), TFX_ERR_OFFSETS,
           "tensor 'fc.weight': data_offsets [48, 0] are reversed");
}

Test(runtime_weights, offsets_size_must_match_shape)
{
    expect(load_lin_offsets("[0,44]", "[44,56]", "[56,60]"), TFX_ERR_OFFSETS,
           "tensor 'fc.weight': data_offsets [0, 44] hold 44 bytes, but F32 [4, 3] needs 48");
    expect(load_lin_offsets("[0,48]", "[48,64]", "[60,64]"), TFX_ERR_OFFSETS,
           "tensor 'fc.bias': data_offsets [48, 64] hold 16 bytes, but F32 [3] needs 12");
}

/* ---- f16 and bf16 weights ---- */

/* "half": weights h f16[5], b bf16[3] and fill f16[2] (init 1.5); forward copies each
 * weight's bytes to the output of the same dtype and shape, so the bound bits are seen. */
static const TfxSymDesc half_syms[] = { { "T", 0 } };
static const TfxTensorDesc half_inputs[] = { { "x", TFX_F32, 1, { { 0, 0, 1, 1 } } } };
static const TfxTensorDesc half_outputs[] = {
    { "h", TFX_F16, 1, { { 5, -1, 0, 1 } } },
    { "b", TFX_BF16, 1, { { 3, -1, 0, 1 } } },
    { "fill", TFX_F16, 1, { { 2, -1, 0, 1 } } },
};
static const TfxWeightDesc half_weights[] = {
    { "h", TFX_F16, 1, { 5 }, 0, 0.0f },
    { "b", TFX_BF16, 1, { 3 }, 0, 0.0f },
    { "fill", TFX_F16, 1, { 2 }, 1, 1.5f },
};

static int32_t half_forward(const TfxKernelArgs *a)
{
    memcpy(a->outputs[0], a->weights[0], 10);
    memcpy(a->outputs[1], a->weights[1], 6);
    memcpy(a->outputs[2], a->weights[2], 4);
    return 0;
}

static const TfxModelDesc half_desc = {
    TFX_ABI_VERSION, "half", 1, half_syms, 1, half_inputs, 3, half_outputs, 3, half_weights,
    NULL, half_forward,
    TFX_NO_STEP,
};

/* The allocation hooks note whether a 10-byte buffer (h's size) was allocated. */
static int saw_10_bytes;
static void *note_alloc(size_t size, void *ctx)
{
    (void)ctx;
    saw_10_bytes |= size == 10;
    return malloc(size);
}
static void note_free(void *p, void *ctx)
{
    (void)ctx;
    free(p);
}

/* Loads h, b (fill absent: its init) from tensors of the given dtypes; returns the bits
 * forward sees. */
static void load_half(const char *hdtype, const void *hdata, size_t hbytes, const char *bdtype,
                      const void *bdata, size_t bbytes, int misalign, uint16_t *h, uint16_t *b,
                      uint16_t *fill)
{
    tfx_options opt = { .nthreads = 1, .allow_missing_with_init = 1, .alloc = note_alloc,
                        .free = note_free };
    tfx_error e = { 0 };
    tfx_model *hm = tfx_model_open(&half_desc, &opt, &e);
    cr_assert_not_null(hm, "%s", e.message);
    RttTensor ts[2] = { { "h", hdtype, 1, { 5 }, hdata, hbytes }, { "b", bdtype, 1, { 3 }, bdata, bbytes } };
    size_t len;
    unsigned char *img = rtt_image(ts, 2, misalign, &len);
    char *path = rtt_write(img, len);
    free(img);
    saw_10_bytes = 0;
    int rc = tfx_model_load_weights(hm, path, &e);
    cr_assert_eq(rc, TFX_OK, "%s: %s", tfx_status_name(rc), e.message);
    rtt_remove(path);
    float x[1] = { 0 };
    const void *in[1] = { x };
    void *out[3] = { h, b, fill };
    int64_t shapes[1][6] = { { 1 } };
    cr_assert_eq(tfx_model_forward(hm, in, (const int64_t (*)[6])shapes, out, &e), TFX_OK, "%s",
                 e.message);
    tfx_model_close(hm);
}

Test(runtime_weights, f16_weight_binds_f16_data_in_place_or_copied)
{
    // a NaN with a payload and a subnormal: any trip through f32 and back would show
    uint16_t hf[5] = { 0x3C00, 0x7D55, 0x0001, 0xFBFF, 0x8000 }, bf[3] = { 0x3F80, 0xFF81, 0x0001 };
    uint16_t h[5], b[3], fill[2];
    for (int misalign = 0; misalign < 2; misalign++) {
        load_half("F16", hf, 10, "BF16", bf, 6, misalign, h, b, fill);
        cr_expect(memcmp(h, hf, 10) == 0 && memcmp(b, bf, 6) == 0, "bits changed (misalign %d)",
                  misalign);
        // aligned: used in place from the mapping; misaligned (odd offset): copied
        cr_expect_eq(saw_10_bytes, misalign, "misalign %d: 10-byte buffer allocated: %d",
                     misalign, saw_10_bytes);
        cr_expect(fill[0] == 0x3E00 && fill[1] == 0x3E00, "init 1.5 as f16: %#x", fill[0]);
    }
}

Test(runtime_weights, f32_file_narrows_to_f16_and_bf16_rounding_to_even)
{
    // f16: 1 + 2^-11 ties to 1, 1 + 3*2^-11 up, 65520 to inf, 2^-25 ties to 0, 3*2^-26 to
    // the least subnormal; bf16: 1 + 2^-8 ties to 1, 1 + 3*2^-8 up, NaN stays NaN
    float hf[5] = { 1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65520.0f, 0x1p-25f, 3 * 0x1p-26f };
    float bf[3] = { 1.0f + 0x1p-8f, -(1.0f + 3 * 0x1p-8f), NAN };
    uint16_t h[5], b[3], fill[2];
    load_half("F32", hf, 20, "F32", bf, 12, 0, h, b, fill);
    uint16_t wh[5] = { 0x3C00, 0x3C02, 0x7C00, 0x0000, 0x0001 };
    for (int i = 0; i < 5; i++)
        cr_expect_eq(h[i], wh[i], "h[%d] = %#x, want %#x", i, h[i], wh[i]);
    cr_expect_eq(b[0], 0x3F80);
    cr_expect_eq(b[1], 0xBF82);
    cr_expect((b[2] & 0x7F80) == 0x7F80 && (b[2] & 0x7F), "NaN: %#x", b[2]);
    // and across the half types: bf16 file -> f16 weight, f16 file -> bf16 weight
    uint16_t hb[5] = { 0x3F80, 0x4049, 0xC2C8, 0x0000, 0x7F80 };   /* 1, 3.140625, -100, 0, inf */
    uint16_t bh[3] = { 0x3C00, 0x3555, 0xFC00 };                   /* 1, 0.33325195, -inf */
    load_half("BF16", hb, 10, "F16", bh, 6, 0, h, b, fill);
    uint16_t wh2[5] = { 0x3C00, 0x4248, 0xD640, 0x0000, 0x7C00 };
    uint16_t wb2[3] = { 0x3F80, 0x3EAB, 0xFF80 };   /* 0x3EAAA000 rounds up */
    for (int i = 0; i < 5; i++)
        cr_expect_eq(h[i], wh2[i], "h[%d] = %#x, want %#x", i, h[i], wh2[i]);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(b[i], wb2[i], "b[%d] = %#x, want %#x", i, b[i], wb2[i]);
}

Test(runtime_weights, i32_file_cannot_feed_an_f16_weight)
{
    tfx_model *hm = rtt_open(&half_desc, 1, 0);
    int32_t data[5] = { 0 };
    uint16_t bf[3] = { 0 };
    RttTensor ts[2] = { { "h", "I32", 1, { 5 }, data, 20 }, { "b", "BF16", 1, { 3 }, bf, 6 } };
    size_t len;
    unsigned char *img = rtt_image(ts, 2, 0, &len);
    char *path = rtt_write(img, len);
    free(img);
    tfx_error e = { 0 };
    cr_expect_eq(tfx_model_load_weights(hm, path, &e), TFX_ERR_DTYPE);
    cr_expect(strstr(e.message, "tensor 'h': expected dtype F32, F16 or BF16, found I32"), "%s",
              e.message);
    rtt_remove(path);
    tfx_model_close(hm);
}
