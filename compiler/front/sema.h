/* sema.h - semantic analysis: the one entry point from the compile driver. Loads the
 * main file and every `use`d module, resolves names, evaluates constants and
 * hyperparameters, infers and checks dtypes and symbolic shapes, and lowers the typed
 * program to the graph IR (one IrFunc per block call site, @main for the model). */
#ifndef TFX_FRONT_SEMA_H
#define TFX_FRONT_SEMA_H

#include <stdbool.h>

#include "../ir/ir.h"
#include "ast.h"

/* A -Dname=value from the command line; value is the text after '=', parsed by sema
 * as an int or float literal so errors can name the hyperparameter. */
typedef struct SemaDefine {
    const char *name;
    const char *value;
} SemaDefine;

typedef struct SemaOptions {
    const SemaDefine *defines;     /* -Dname=value */
    uint32_t          ndefines;
    const char *const *include_dirs; /* -I, searched in order */
    uint32_t          ninclude;
    const char       *stdlib_dir;  /* searched after the -I dirs */
} SemaOptions;

/* Checks the program and lowers it into m (initialised by the caller). Returns false
 * when errors were reported; m is then incomplete and must not be used. */
bool sema_lower(Arena *a, DiagEngine *d, const AstNode *main_file, uint32_t main_file_id,
                const SemaOptions *o, IrModule *m);

#endif
