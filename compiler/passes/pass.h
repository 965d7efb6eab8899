/* pass.h - the pass interface and the pipeline. Each pass is one file exporting
 * `bool pass_NAME(IrModule *m, PassCtx *pc)` that returns whether it changed anything.
 * passes/pipeline.c holds the one table that orders them. */
#ifndef TFX_PASSES_PASS_H
#define TFX_PASSES_PASS_H

#include <stdbool.h>

#include "../ir/ir.h"

typedef struct PassCtx {
    int         opt_level;     /* 0..3 */
    const DiagEngine *diag;    /* for printing source locations in dumps */
    /* --dump-after: "all", a pass name, or NULL */
    const char *dump_after;
    bool        dump_locs;
    Buf        *dump;          /* where dumps go */
    const char *src_path;      /* for the dump headers */
    bool        verify;        /* run ir_verify after each pass */
    Buf        *errs;          /* verifier messages (internal errors) */
} PassCtx;

typedef bool (*PassFn)(IrModule *m, PassCtx *pc);

typedef struct PassInfo {
    const char *name;
    PassFn      run;
    int         min_opt;       /* runs when opt_level >= min_opt */
    const char *summary;       /* one line for `tfxc --help` */
} PassInfo;

bool pass_inline(IrModule *m, PassCtx *pc);
bool pass_simplify(IrModule *m, PassCtx *pc);
bool pass_decode(IrModule *m, PassCtx *pc);

extern const PassInfo pass_table[];
extern const int      pass_count;

/* Runs the table in order. Returns false if the verifier failed after some pass (the
 * message is in pc->errs). */
bool pipeline_run(IrModule *m, PassCtx *pc);
/* Whether name is a pass in the table, or "all". */
bool pipeline_knows(const char *name);

#endif
