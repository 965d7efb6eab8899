/* test_runtime_fixture.h - shared by the test_runtime_*.c files: a fake generated model
 * ("lin": y = (x @ W + b) * scale for x [T, 4], T <= 16) with a hand-written forward that
 * uses the pool and the workspace, and a small safetensors writer. Header-only (static
 * functions) because each test file is its own executable. */
#ifndef TFX_TESTS_UNIT_TEST_RUNTIME_FIXTURE_H
#define TFX_TESTS_UNIT_TEST_RUNTIME_FIXTURE_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tfx.h"
#include "tfx_abi.h"

#define LIN_TMAX 16

/* ---- the fake model ---- */

static const float lin_w[12] = {     /* [4, 3]: W[i][j] = 0.5*(i - j) + 0.25 */
    0.25f, -0.25f, -0.75f, 0.75f, 0.25f, -0.25f, 1.25f, 0.75f, 0.25f, 1.75f, 1.25f, 0.75f,
};
static const float lin_b[3] = { 1.0f, -2.0f, 0.5f };    /* [3] */
static const float lin_scale[1] = { 2.0f };             /* [1] */

static const TfxSymDesc lin_syms[] = { { "T", LIN_TMAX } };
static const TfxTensorDesc lin_inputs[] = {
    { "x", TFX_F32, 2, { { 0, 0, 1, 1 }, { 4, -1, 0, 1 } } },
};
static const TfxTensorDesc lin_outputs[] = {
    { "y", TFX_F32, 2, { { 0, 0, 1, 1 }, { 3, -1, 0, 1 } } },
};
static const TfxWeightDesc lin_weights[] = {
    { "fc.weight", TFX_F32, 2, { 4, 3 }, 0, 0.0f },
    { "fc.bias", TFX_F32, 1, { 3 }, 0, 0.0f },
    { "fc.scale", TFX_F32, 1, { 1 }, 1, 2.0f },
};

typedef struct LinCtx {
    const float *x;      /* [T, 4] */
    const float *w;      /* [4, 3] */
    const float *b;      /* [3] */
    const float *scale;  /* [1] */
    float       *y;      /* [T, 3] */
    float       *tmp;    /* [T, 3] in the workspace */
} LinCtx;

static void lin_rows(void *ctx, int64_t begin, int64_t end)
{
    LinCtx *c = ctx;
    for (int64_t t = begin; t < end; t++) {
        for (int j = 0; j < 3; j++) {
            float acc = c->b[j];
            for (int i = 0; i < 4; i++)
                acc += c->x[t * 4 + i] * c->w[i * 3 + j];
            c->tmp[t * 3 + j] = acc;
            c->y[t * 3 + j] = acc * c->scale[0];
        }
    }
}

static size_t lin_workspace_bytes(const int64_t *syms)
{
    return (size_t)syms[0] * 3 * sizeof(float);
}

static int32_t lin_forward(const TfxKernelArgs *a)
{
    if ((uintptr_t)a->workspace % 64 != 0)
        return 99;
    LinCtx c = { a->inputs[0], a->weights[0], a->weights[1], a->weights[2], a->outputs[0],
                 a->workspace };
    tfx_pool_parallel_for(a->pool, a->syms[0], lin_rows, &c);
    return 0;
}

static const TfxModelDesc lin_desc = {
    TFX_ABI_VERSION, "lin", 1, lin_syms, 1, lin_inputs, 1, lin_outputs, 3, lin_weights,
    lin_workspace_bytes, lin_forward,
    TFX_NO_STEP,
};

/* The expected output for input row pattern x[t][i] = t - i * 0.5. */
static inline void lin_input(float *x, int64_t T)   /* x: [T, 4] */
{
    for (int64_t t = 0; t < T; t++)
        for (int i = 0; i < 4; i++)
            x[t * 4 + i] = (float)t - (float)i * 0.5f;
}

static inline void lin_reference(const float *x, float *y, int64_t T)  /* [T, 4] -> [T, 3] */
{
    for (int64_t t = 0; t < T; t++)
        for (int j = 0; j < 3; j++) {
            float acc = lin_b[j];
            for (int i = 0; i < 4; i++)
                acc += x[t * 4 + i] * lin_w[i * 3 + j];
            y[t * 3 + j] = acc * lin_scale[0];
        }
}

/* Runs lin forward on T rows and checks the result against lin_reference. */
static inline void lin_check_forward(tfx_model *m, int64_t T)
{
    float x[LIN_TMAX * 4], y[LIN_TMAX * 3], want[LIN_TMAX * 3];
    lin_input(x, T);
    lin_reference(x, want, T);
    const void *in[1] = { x };
    void *out[1] = { y };
    int64_t shapes[1][6] = { { T, 4 } };
    tfx_error err = { 0 };
    int rc = tfx_model_forward(m, in, (const int64_t (*)[6])shapes, out, &err);
    cr_assert_eq(rc, TFX_OK, "forward: %s: %s", tfx_status_name(rc), err.message);
    for (int64_t k = 0; k < T * 3; k++)
        cr_assert_eq(y[k], want[k], "y[%lld] = %g, want %g", (long long)k, y[k], want[k]);
}

/* ---- a small safetensors writer ---- */

typedef struct RttTensor {
    const char *name;
    const char *dtype;     /* "F32", "F16", ... */
    int         rank;
    int64_t     shape[6];
    const void *data;
    size_t      nbytes;
} RttTensor;

static inline uint16_t rtt_f32_to_bf16(float f)   /* exact for the values used here */
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    return (uint16_t)(bits >> 16);
}

static inline uint16_t rtt_f32_to_f16(float f)    /* normal numbers without rounding */
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7FFFFFFFu) == 0)
        return (uint16_t)(bits >> 16);
    uint32_t sign = (bits >> 16) & 0x8000u, exp = (bits >> 23) & 0xFFu, man = bits & 0x7FFFFFu;
    return (uint16_t)(sign | ((exp - 127 + 15) << 10) | (man >> 13));
}

/* Converts n floats to 16-bit little-endian f16 or bf16 in out (2n bytes). */
static inline void rtt_to16(const float *src, int n, int bf16, unsigned char *out)
{
    for (int i = 0; i < n; i++) {
        uint16_t h = bf16 ? rtt_f32_to_bf16(src[i]) : rtt_f32_to_f16(src[i]);
        out[2 * i] = (unsigned char)(h & 0xFF);
        out[2 * i + 1] = (unsigned char)(h >> 8);
    }
}

/* Builds a file image: 8-byte length, header JSON, data. The header is padded with spaces
 * so that the data section starts at a multiple of 8 plus `misalign`. */
static inline unsigned char *rtt_image_raw(const char *json, const void *data, size_t ndata,
                                           int misalign, size_t *len)
{
    size_t n = strlen(json);
    while ((8 + n) % 8 != (size_t)misalign)
        n++;
    *len = 8 + n + ndata;
    unsigned char *img = malloc(*len);
    cr_assert_not_null(img);
    for (int i = 0; i < 8; i++)
        img[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memset(img + 8, ' ', n);
    memcpy(img + 8, json, strlen(json));
    if (ndata)
        memcpy(img + 8 + n, data, ndata);
    return img;
}

/* Builds an image holding the tensors packed in order (offsets computed). */
static inline unsigned char *rtt_image(const RttTensor *ts, int n, int misalign, size_t *len)
{
    char json[8192];
    size_t off = 0, pos = 0, total = 0;
    for (int i = 0; i < n; i++)
        total += ts[i].nbytes;
    unsigned char *data = malloc(total ? total : 1);
    cr_assert_not_null(data);
    pos += (size_t)snprintf(json + pos, sizeof json - pos, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        pos += (size_t)snprintf(json + pos, sizeof json - pos, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                ts[i].name, ts[i].dtype);
        for (int k = 0; k < ts[i].rank; k++)
            pos += (size_t)snprintf(json + pos, sizeof json - pos, "%s%lld", k ? "," : "",
                                    (long long)ts[i].shape[k]);
        pos += (size_t)snprintf(json + pos, sizeof json - pos, "],\"data_offsets\":[%zu,%zu]}",
                                off, off + ts[i].nbytes);
        memcpy(data + off, ts[i].data, ts[i].nbytes);
        off += ts[i].nbytes;
    }
    snprintf(json + pos, sizeof json - pos, "}");
    unsigned char *img = rtt_image_raw(json, data, total, misalign, len);
    free(data);
    return img;
}

/* Writes bytes to a fresh temporary file; returns its malloc'd path. */
static inline char *rtt_write(const void *bytes, size_t len)
{
    char *path = strdup("/tmp/tfxrt-test-XXXXXX");
    cr_assert_not_null(path);
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp failed");
    cr_assert_eq(len ? write(fd, bytes, len) : 0, (ssize_t)len);
    close(fd);
    return path;
}

static inline void rtt_remove(char *path)
{
    unlink(path);
    free(path);
}

/* The three lin weights in dtype "F32", "F16" or "BF16"; buf must hold 64 bytes. */
static inline int rtt_lin_tensors(RttTensor *ts, const char *dtype, unsigned char *buf)
{
    int is16 = strcmp(dtype, "F32") != 0, bf = strcmp(dtype, "BF16") == 0;
    const float *src[3] = { lin_w, lin_b, lin_scale };
    int counts[3] = { 12, 3, 1 };
    const char *names[3] = { "fc.weight", "fc.bias", "fc.scale" };
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        size_t nb = (size_t)counts[i] * (is16 ? 2 : 4);
        if (is16)
            rtt_to16(src[i], counts[i], bf, buf + off);
        else
            memcpy(buf + off, src[i], nb);
        ts[i] = (RttTensor){ names[i], dtype, i == 0 ? 2 : 1, { 0 }, buf + off, nb };
        off += nb;
    }
    ts[0].shape[0] = 4, ts[0].shape[1] = 3;
    ts[1].shape[0] = 3;
    ts[2].shape[0] = 1;
    return 3;
}

/* Writes a good lin weights file in the given dtype; returns its path. */
static inline char *rtt_lin_file(const char *dtype, int misalign)
{
    RttTensor ts[3];
    unsigned char buf[64];
    int n = rtt_lin_tensors(ts, dtype, buf);
    size_t len;
    unsigned char *img = rtt_image(ts, n, misalign, &len);
    char *path = rtt_write(img, len);
    free(img);
    return path;
}

static inline tfx_model *rtt_open(const TfxModelDesc *d, int nthreads, int strict)
{
    tfx_options opt = { .nthreads = nthreads, .strict = strict };
    tfx_error err = { 0 };
    tfx_model *m = tfx_model_open(d, &opt, &err);
    cr_assert_not_null(m, "open: %s", err.message);
    return m;
}

#endif
