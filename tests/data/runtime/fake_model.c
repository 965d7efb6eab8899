/* fake_model.c - stands in for the object file tfxc's CPU backend will generate: the
 * descriptor tfx__model of "lin" (y = (x @ W + b) * scale, x: f32[T, 4], T <= 16) and its
 * forward. Linked with runtime/model_entry.c and tfxrt into a model.so, it lets CTest run
 * docs/examples/run_model.c end to end and check the .so's exported symbols. */
#include "tfx_abi.h"

static const TfxSymDesc syms[] = { { "T", 16 } };
static const TfxTensorDesc inputs[] = {
    { "x", TFX_F32, 2, { { 0, 0, 1, 1 }, { 4, -1, 0, 1 } } },
};
static const TfxTensorDesc outputs[] = {
    { "y", TFX_F32, 2, { { 0, 0, 1, 1 }, { 3, -1, 0, 1 } } },
};
static const TfxWeightDesc weights[] = {
    { "fc.weight", TFX_F32, 2, { 4, 3 }, 0, 0.0f },
    { "fc.bias", TFX_F32, 1, { 3 }, 0, 0.0f },
    { "fc.scale", TFX_F32, 1, { 1 }, 1, 2.0f },
};

typedef struct Ctx {
    const float *x;      /* [T, 4] */
    const float *w;      /* [4, 3] */
    const float *b;      /* [3] */
    const float *scale;  /* [1] */
    float       *y;      /* [T, 3] */
} Ctx;

static void rows(void *ctx, int64_t begin, int64_t end)
{
    const Ctx *c = ctx;
    for (int64_t t = begin; t < end; t++)
        for (int j = 0; j < 3; j++) {
            float acc = c->b[j];
            for (int i = 0; i < 4; i++)
                acc += c->x[t * 4 + i] * c->w[i * 3 + j];
            c->y[t * 3 + j] = acc * c->scale[0];
        }
}

static int32_t forward(const TfxKernelArgs *a)
{
    Ctx c = { a->inputs[0], a->weights[0], a->weights[1], a->weights[2], a->outputs[0] };
    tfx_pool_parallel_for(a->pool, a->syms[0], rows, &c);
    return 0;
}

__attribute__((visibility("hidden"))) const TfxModelDesc tfx__model = {
    TFX_ABI_VERSION, "lin", 1, syms, 1, inputs, 1, outputs, 3, weights, NULL, forward,
    TFX_NO_STEP,
};
