/* run_model.c - a complete program using the tfxc runtime API (docs/runtime.md): open the
 * model compiled into model.so, load its weights from a safetensors file, size the inputs
 * from symbol values given on the command line, run forward and print the outputs.
 *
 *   tfxc examples/gpt2.tfx -o gpt2.so
 *   cc -std=c11 -I runtime docs/examples/run_model.c ./gpt2.so -Wl,-rpath,. -o run_model
 *   ./run_model gpt2.safetensors T=8
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tfx.h"

/* Parses "NAME=VALUE" arguments into syms (indexed like the model's symbols); 1 by default. */
static int parse_syms(const tfx_model *m, int argc, char **argv, int64_t *syms)
{
    for (uint32_t s = 0; s < tfx_model_nsyms(m); s++)
        syms[s] = 1;
    for (int a = 0; a < argc; a++) {
        const char *eq = strchr(argv[a], '=');
        uint32_t s = 0;
        while (eq && s < tfx_model_nsyms(m) &&
               (strlen(tfx_model_sym_name(m, s)) != (size_t)(eq - argv[a]) ||
                strncmp(tfx_model_sym_name(m, s), argv[a], (size_t)(eq - argv[a])) != 0))
            s++;
        if (!eq || s == tfx_model_nsyms(m)) {
            fprintf(stderr, "run_model: '%s' is not SYMBOL=VALUE for a symbol of the model\n",
                    argv[a]);
            return -1;
        }
        syms[s] = strtoll(eq + 1, NULL, 10);
    }
    return 0;
}

static int64_t numel(const int64_t *shape, int rank)
{
    int64_t n = 1;
    for (int k = 0; k < rank; k++)
        n *= shape[k];
    return n;
}

/* Allocates every input (filled with small values) and sets its shape; 4-byte elements
 * (f32 or i32) are the only input dtypes tfxc generates today. */
static int make_inputs(const tfx_model *m, const int64_t *syms, void **inputs,
                       int64_t (*shapes)[6])
{
    for (uint32_t i = 0; i < tfx_model_ninputs(m); i++) {
        int rank;
        if (tfx_model_input_shape(m, i, syms, shapes[i], &rank) != TFX_OK)
            return -1;
        int64_t n = numel(shapes[i], rank);
        inputs[i] = calloc((size_t)n ? (size_t)n : 1, 4);
        if (!inputs[i])
            return -1;
        for (int64_t k = 0; k < n; k++) {
            if (tfx_model_input_dtype(m, i) == TFX_DTYPE_I32)
                ((int32_t *)inputs[i])[k] = (int32_t)(k % 7);
            else
                ((float *)inputs[i])[k] = 0.01f * (float)(k % 13);
        }
    }
    return 0;
}

static int make_outputs(const tfx_model *m, const int64_t *syms, void **outputs)
{
    for (uint32_t i = 0; i < tfx_model_noutputs(m); i++) {
        int64_t shape[6];
        int rank;
        if (tfx_model_output_shape(m, i, syms, shape, &rank) != TFX_OK)
            return -1;
        outputs[i] = calloc((size_t)numel(shape, rank) + 1, 4);
        if (!outputs[i])
            return -1;
    }
    return 0;
}

static void print_outputs(const tfx_model *m, void *const *outputs)
{
    for (uint32_t i = 0; i < tfx_model_noutputs(m); i++) {
        int64_t shape[6];
        int rank;
        tfx_model_output_shape(m, i, NULL, shape, &rank);
        printf("%s: %s[", tfx_model_output_name(m, i),
               tfx_dtype_name(tfx_model_output_dtype(m, i)));
        for (int k = 0; k < rank; k++)
            printf("%s%" PRId64, k ? ", " : "", shape[k]);
        printf("] =");
        int64_t n = numel(shape, rank);
        for (int64_t k = 0; k < n && k < 8; k++)
            printf(" %g", (double)((const float *)outputs[i])[k]);
        printf("%s\n", n > 8 ? " ..." : "");
    }
}

static int run(tfx_model *m, int argc, char **argv, tfx_error *err)
{
    int64_t syms[64];
    void *inputs[64] = { 0 }, *outputs[64] = { 0 };
    int64_t shapes[64][6];
    int rc = -1;
    if (tfx_model_nsyms(m) > 64 || tfx_model_ninputs(m) > 64 || tfx_model_noutputs(m) > 64)
        fprintf(stderr, "run_model: too many symbols, inputs or outputs for this example\n");
    else if (parse_syms(m, argc, argv, syms) == 0 && make_inputs(m, syms, inputs, shapes) == 0 &&
             make_outputs(m, syms, outputs) == 0)
        rc = tfx_model_forward(m, (const void *const *)inputs, (const int64_t (*)[6])shapes,
                               outputs, err);
    if (rc == TFX_OK)
        print_outputs(m, outputs);
    else if (rc > 0)
        fprintf(stderr, "run_model: %s: %s\n", tfx_status_name(rc), err->message);
    for (int i = 0; i < 64; i++) {
        free(inputs[i]);
        free(outputs[i]);
    }
    return rc == TFX_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: run_model WEIGHTS.safetensors [SYMBOL=VALUE ...]\n");
        return 2;
    }
    tfx_error err;
    tfx_options opt = { .nthreads = 0 };   // all cores; unexpected tensors only warn
    tfx_model *m = tfx_model_open(tfx_model_desc(), &opt, &err);
    if (!m) {
        fprintf(stderr, "run_model: %s: %s\n", tfx_status_name(err.code), err.message);
        return 1;
    }
    int status = 1;
    if (tfx_model_load_weights(m, argv[1], &err) != TFX_OK) {
        fprintf(stderr, "run_model: %s: %s\n", tfx_status_name(err.code), err.message);
    } else {
        fputs(tfx_model_warnings(m), stderr);
        status = run(m, argc - 2, argv + 2, &err);
    }
    tfx_model_close(m);
    return status;
}
