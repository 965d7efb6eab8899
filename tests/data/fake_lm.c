/* fake_lm.c - a hand-written "compiled model" for testing tfxrun and the runtime's
 * .so boundary without the code generator: a language model over 4 tokens whose logits
 * at position t are bias[v] + (v == (tokens[t] + 1) % 4 ? 1 : 0), so greedy generation
 * from token 1 gives 2 3 0 1 2 ... Linked like a real model.so: runtime + model_entry.c. */
#include "tfx_abi.h"

enum { V = 4 };

static const TfxSymDesc syms[] = { { "T", 16 } };
static const TfxTensorDesc inputs[] = {
    { "tokens", TFX_I32, 1, { { 0, 0, 1, 1 } } },
};
static const TfxTensorDesc outputs[] = {
    { "logits", TFX_F32, 2, { { 0, 0, 1, 1 }, { V, -1, 0, 1 } } },
};
static const TfxWeightDesc weights[] = {
    { "bias", TFX_F32, 1, { V }, 1, 0.0f },
};

static int32_t fake_forward(const TfxKernelArgs *a)
{
    const int32_t *tok = a->inputs[0];      /* [T] */
    const float *bias = a->weights[0];      /* [V] */
    float *logits = a->outputs[0];          /* [T, V] */
    for (int64_t t = 0; t < a->syms[0]; t++) {
        if (tok[t] < 0 || tok[t] >= V)
            return 1;
        for (int v = 0; v < V; v++)
            logits[t * V + v] = bias[v] + (v == (tok[t] + 1) % V ? 1.0f : 0.0f);
    }
    return 0;
}

__attribute__((visibility("hidden"))) const TfxModelDesc tfx__model = {
    .abi_version = TFX_ABI_VERSION,
    .name = "fake_lm",
    .nsyms = 1, .syms = syms,
    .ninputs = 1, .inputs = inputs,
    .noutputs = 1, .outputs = outputs,
    .nweights = 1, .weights = weights,
    .workspace_bytes = 0,
    .forward = fake_forward,
};
