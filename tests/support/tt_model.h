/* tt_model.h - a model.so compiled in-process from .tfx text and driven through the
 * runtime API it exports (dlopen, tfx_model_open, tfx_model_bind_weight,
 * tfx_model_forward): for tests that check generated code against C references. Weights
 * are bound to seeded random values stored in each weight's dtype (f32, f16 or bf16
 * halves, i32). */
#ifndef TFX_TESTS_SUPPORT_TT_MODEL_H
#define TFX_TESTS_SUPPORT_TT_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "tfx.h"
#include "tfx_abi.h"

enum { TT_MODEL_MAX_WEIGHTS = 64 };

typedef struct TtModel {
    void               *h;      /* the dlopen handle */
    const TfxModelDesc *d;      /* its descriptor */
    tfx_model          *m;
    int (*forward)(tfx_model *, const void *const *, const int64_t (*)[6], void *const *,
                   tfx_error *);
    void (*close)(tfx_model *);
    uint32_t            nw;
    void               *w[TT_MODEL_MAX_WEIGHTS];   /* bound data, in each weight's dtype */
    char                so[128];                   /* the .so in /tmp */
} TtModel;

/* A deterministic uniform value in [-a, a); tt_seed restarts the sequence. */
void  tt_seed(uint64_t seed);
float tt_frand(float a);

/* f16 and bf16 bit patterns: round to nearest even (NaN stays NaN), and back (exact). */
uint16_t tt_f32_to_f16(float f);
float    tt_f16_to_f32(uint16_t h);
uint16_t tt_f32_to_bf16(float f);
float    tt_bf16_to_f32(uint16_t h);

/* Compiles .tfx text (named m.tfx in messages) at -O`opt` to a fresh .so; fails the test
 * with the diagnostics when the compiler does. */
void tt_model_build(TtModel *mo, const char *src, int opt);
/* The same with --serial and --cpu=CPU (NULL: the host). */
void tt_model_build_with(TtModel *mo, const char *src, int opt, bool serial, const char *cpu);
/* Opens the .so with a pool of nthreads (0: one per core) and binds every weight to
 * tt_frand(scale) values after tt_seed(seed), rounded to the weight's dtype. */
void tt_model_open(TtModel *mo, uint64_t seed, float scale, int nthreads);
/* The usual trio of an optimisation test: m[0] at -O0 and m[1] at -O2 with one thread,
 * m[2] at -O2 with two, all bound to the same weights (seed, scale). */
void tt_model_trio(TtModel m[3], const char *src, uint64_t seed, float scale);
/* Closes the three. */
void tt_model_trio_close(TtModel m[3]);
/* The data bound to the weight called name (fails the test if there is none). */
const void *tt_model_weight(const TtModel *mo, const char *name);
/* forward on inputs in[i] of shape shapes[i]; returns the status. */
int  tt_model_run(TtModel *mo, const void **in, int64_t (*shapes)[6], void **out);
/* Closes the model and the .so and removes the file. */
void tt_model_close(TtModel *mo);

#endif
