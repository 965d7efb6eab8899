/* cg_int.h - internals shared by the CPU backend's files: the CgCpu context (every LLVM
 * handle of one module), loop-nest and element-access helpers (cg_common.c) and the op
 * lowering (cg_lower.c). Only the backend's own files include this. */
#ifndef TFX_CODEGEN_CG_INT_H
#define TFX_CODEGEN_CG_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "cg.h"

/* One module being generated. Created by cg_init, released by cg_dispose. */
typedef struct CgCpu {
    LLVMContextRef       llctx;
    LLVMModuleRef        mod;
    LLVMBuilderRef       b;       /* the builder for code */
    LLVMBuilderRef       ab;      /* allocas: at the end of the entry block of `fn` */
    LLVMTargetMachineRef tm;
    LLVMTypeRef          t_void, t_i1, t_i8, t_i32, t_i64, t_f32, t_ptr;
    LLVMTypeRef          t_f16;   /* `half`: f16 storage (arithmetic is f32) */
    LLVMTypeRef          t_bf16;  /* i16: bf16 storage, converted by hand (cg_route.c) */
    LLVMTypeRef          t_args;  /* struct TfxKernelArgs */
    IrModule            *m;
    DiagEngine          *d;
    IrNames              names;   /* IR value names of @main, for LLVM value names */
    /* per function being built */
    LLVMValueRef         fn;
    LLVMBasicBlockRef    entry;   /* holds only allocas until the function is finished */
    LLVMBasicBlockRef    fail;    /* `ret i32 1`: an index out of range */
    LLVMValueRef         args;    /* forward's TfxKernelArgs pointer */
    LLVMValueRef        *syms;    /* [m->nsyms] i64 symbol values */
    LLVMValueRef        *buf;     /* by IrValue id: the value's data pointer */
    uint32_t            *wbase;   /* by weight index: its first entry in the weights table */
    LLVMValueRef        *par_syms; /* [m->nsyms]: the other function's symbols while outlining */
    int32_t             *sym_slot; /* [m->nsyms]: index in the descriptor's symbols, or -1
                                    * for a moe body's routed token count (cg_route.c) */
    uint8_t             *gemm_tb; /* by IrValue id: a transpose the GEMM reads through, a
                                    * GemmTb (cg_gemm_plan) */
    IrOp               **epi_root; /* by IrValue id of a matmul result: the fused group
                                    * its GEMM computes as an epilogue (cg_fuse_plan) */
    IrOp               **epi_gemm; /* by IrValue id of such a group's root result: the
                                    * matmul whose GEMM writes it */
    bool                *absorbed; /* by IrValue id: computed inside the op that uses it (a
                                    * fused group, see cg_absorbed_op): no buffer, and its
                                    * defining op is not lowered on its own */
    bool                 serial;  /* CgOptions.serial: no outlining, no pool calls */
    bool                 mem_plan; /* buffers share memory by liveness (-O1..3, CPU target) */
    int                  opt_level; /* CgOptions.opt_level: from 1 on, matmul uses cg_gemm.c */
    const char          *cpu;     /* CgOptions.cpu (NULL: the host): picks the GEMM's vector width */
    struct CgGpu        *gpu;     /* the GPU back end (cg_ptx.c); NULL: code for the CPU */
    bool                 failed;  /* a diagnostic was reported */
} CgCpu;

/* A counted loop `for (i = 0; i < n; i++)` with its counter in an alloca. */
typedef struct CgFor {
    LLVMValueRef      var;      /* i64 alloca */
    LLVMValueRef      i;        /* the counter's value in the body */
    LLVMBasicBlockRef cond, exit;
} CgFor;

/* A loop nest over every index of a shape (rank 0: no loop, one element). */
typedef struct CgNest {
    int    rank;
    CgFor  loops[IR_MAX_RANK];
    LLVMValueRef idx[IR_MAX_RANK];
} CgNest;

/* The most IR values (operands and results) an outlined op can use. */
enum { CG_PAR_MAX_VALS = 16 };
/* Below this many elements of work an outlined loop that states its work (cg_par_begin_vals)
 * runs its body directly instead of waking the pool. */
enum { CG_PAR_MIN_WORK = 16384 };

/* An op's outer loop outlined into an internal `void NAME(ptr ctx, i64 begin, i64 end)`
 * that forward runs through tfx_pool_parallel_for (see cg_par_begin). */
typedef struct CgPar {
    bool              outlined;   /* false when cg->serial: everything stays in forward */
    LLVMValueRef      begin, end; /* the i64 range [begin, end) of the outer loop to emit */
    /* forward's state, restored by cg_par_end */
    LLVMValueRef      fwd_fn;
    LLVMBasicBlockRef fwd_entry, fwd_block, fwd_fail;
    uint32_t          nvals;
    const IrValue    *vals[CG_PAR_MAX_VALS];
    LLVMValueRef      saved[CG_PAR_MAX_VALS];
} CgPar;

/* cg_common.c */
/* calloc that exits with "tfxc: out of memory" (status 3) on failure; n may be 0. */
void        *cg_xcalloc(size_t n, size_t size);
LLVMValueRef cg_i64(CgCpu *cg, int64_t v);
LLVMValueRef cg_f32c(CgCpu *cg, double v);
/* The storage type of a dtype: i32, float, half (f16) or i16 (bf16). */
LLVMTypeRef  cg_elem_type(CgCpu *cg, DType t);
/* The type arithmetic on a dtype uses: i32 for i32, float for every float dtype. */
LLVMTypeRef  cg_arith_type(CgCpu *cg, DType t);
/* Loads element `off` of storage type et at base, converted to its arithmetic type
 * (f16 and bf16 widen to f32); cg_store_as rounds to nearest even for f16/bf16. */
LLVMValueRef cg_load_as(CgCpu *cg, LLVMTypeRef et, LLVMValueRef base, LLVMValueRef off,
                        const char *nm);
void         cg_store_as(CgCpu *cg, LLVMTypeRef et, LLVMValueRef base, LLVMValueRef off,
                         LLVMValueRef x);
/* Bytes per element of a dtype's storage. */
int          cg_elem_size(DType t);
const char  *cg_name(CgCpu *cg, const IrValue *v);
LLVMValueRef cg_alloca(CgCpu *cg, LLVMTypeRef t, const char *name);
LLVMValueRef cg_dim(CgCpu *cg, Dim d);
LLVMValueRef cg_numel(CgCpu *cg, const Shape *s);
LLVMBasicBlockRef cg_block(CgCpu *cg, const char *name);
void         cg_fn_begin(CgCpu *cg, LLVMValueRef fn);
void         cg_fn_end(CgCpu *cg);
void         cg_for_begin(CgCpu *cg, CgFor *l, LLVMValueRef n, const char *name);
/* `for (i = lo; i < hi; i++)` */
void         cg_for_range(CgCpu *cg, CgFor *l, LLVMValueRef lo, LLVMValueRef hi, const char *name);
void         cg_for_end(CgCpu *cg, CgFor *l);
void         cg_nest_begin(CgCpu *cg, CgNest *n, const Shape *s, const char *name);
void         cg_nest_end(CgCpu *cg, CgNest *n);
/* Row-major offset of v at idx[0 .. rank); a NULL index counts as 0. */
LLVMValueRef cg_offset(CgCpu *cg, const IrValue *v, LLVMValueRef *idx);
/* Offset of v when read at index `oidx` of a result of rank orank it broadcasts to. */
LLVMValueRef cg_bcast_offset(CgCpu *cg, const IrValue *v, LLVMValueRef *oidx, int orank);
LLVMValueRef cg_load(CgCpu *cg, const IrValue *v, LLVMValueRef off);
void         cg_store(CgCpu *cg, const IrValue *v, LLVMValueRef off, LLVMValueRef x);
/* Branches to the fail block unless 0 <= i < n (i64 values). */
void         cg_check_index(CgCpu *cg, LLVMValueRef i, LLVMValueRef n, const char *name);
LLVMValueRef cg_call_intrinsic(CgCpu *cg, const char *name, LLVMValueRef *args, unsigned nargs,
                               const char *vname);
LLVMValueRef cg_call_libm(CgCpu *cg, const char *fname, LLVMValueRef x, const char *vname);
/* Copies n elements of type et from src to dst (dense). */
void         cg_copy(CgCpu *cg, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef n,
                     LLVMTypeRef et, const char *name);

/* Outlines what follows, up to cg_par_end, into a new internal function over rows
 * [p->begin, p->end) of [0, n), and emits in forward: a context struct on forward's stack
 * holding the buffer pointers of op's operands and results and every symbol value, and
 * `tfx_pool_parallel_for(args->pool, n, body, &ctx)`. In between, cg->b, cg->ab, cg->fn,
 * cg->buf (for op's values) and cg->syms refer to the body function, so the usual
 * helpers work unchanged; values computed in forward before the call must be recomputed.
 * The body must not branch to cg->fail (it is NULL there). With cg->serial nothing is
 * outlined: begin = 0, end = n, in forward. */
void         cg_par_begin(CgCpu *cg, CgPar *p, IrOp *op, LLVMValueRef n, const char *name);
/* The same over an explicit list of values (at most CG_PAR_MAX_VALS distinct ones): those
 * whose buffers the body reads or writes. `work` (i64, may be NULL) is the number of
 * elements the loop touches: below CG_PAR_MIN_WORK the body is called directly. */
void         cg_par_begin_vals(CgCpu *cg, CgPar *p, const IrValue *const *vals, uint32_t nv,
                               LLVMValueRef n, LLVMValueRef work, const char *name);
void         cg_par_end(CgCpu *cg, CgPar *p);

/* The transposes a GEMM reads B through, in place: a swap of the last two axes (B^T,
 * e.g. a tied LM head's `h @ wte^T`), and under it or alone a [rows, H, cols] ->
 * [H, rows, cols] split into heads (attention's cached keys and values in a decode step).
 * Neither is stored nor given workspace. */
typedef enum GemmTb { GEMM_TB_NONE, GEMM_TB_SWAP, GEMM_TB_HEADS } GemmTb;
/* Marks, in cg->gemm_tb, each `transpose` whose one use is the right operand of a matmul
 * cg_gemm_lower handles (or the swap under it) and that the GEMM reads through. Runs after
 * cg_flash_plan: a matmul of a flash chain is not a GEMM. */
void         cg_gemm_plan(CgCpu *cg);
/* Whether v is a transpose result that cg_gemm_plan marked (either kind). */
bool         cg_gemm_reads_through(const CgCpu *cg, const IrValue *v);
/* cg_gemm.c: whether the f32 matmul op gets the blocked GEMM (-O1 and above), and its
 * lowering (see docs/codegen.md "GEMM"). */
bool cg_gemm_applies(const CgCpu *cg, const IrOp *op);
void cg_gemm_lower(CgCpu *cg, IrOp *op);
/* cg_gemm.c: floats per vector for the target (16 AVX-512, 8 AVX2+FMA, 1 otherwise):
 * cg->cpu's from a table of CPU names, else the host's features. */
int  cg_vector_width(CgCpu *cg);
/* cg_gemm.c: whether transpose op t swaps the last two axes and keeps the others. */
bool cg_swaps_last_two(const IrOp *t);

/* cg_flash.c: attention as one kernel (docs/codegen.md "Flash attention"). cg_flash_plan
 * marks in cg->absorbed the scores, scaled scores, probabilities (and k^T when only they
 * read it) of every f32 `softmax(q @ k^T [/ c], mask) @ v` whose intermediates have one
 * use each (CPU, -O1 and above); cg_flash_root says whether matmul op is the end of such
 * a chain, and cg_flash_lower computes it with a tiled online softmax. */
void cg_flash_plan(CgCpu *cg);
bool cg_flash_root(const CgCpu *cg, IrOp *op);
void cg_flash_lower(CgCpu *cg, IrOp *op);

/* cg_plan.c: the live intervals of the memory plan (docs/codegen.md "Memory plan"), by
 * IrValue id, in positions of @main's ops in walk order: start is where the value's
 * buffer is first written, end the last position that reads it. */
typedef struct CgLive {
    int32_t *start, *end;
} CgLive;
void cg_plan_live(const CgCpu *cg, const IrFunc *f, CgLive *out);
/* Whether v is a reshape that shares its operand's buffer (with the memory plan, -O1..3 on
 * the CPU): every buffer is dense row-major and never written after its op, so a
 * reshape's bytes are its operand's. */
bool cg_reshape_view(const CgCpu *cg, const IrValue *v);
void cg_live_dispose(CgLive *live);

/* Whether every result of op is absorbed: cg_lower_region then skips the op, because
 * the op that uses its results computes them itself. */
bool cg_absorbed_op(const CgCpu *cg, const IrOp *op);

/* cg_lower.c: the value of elementwise op `op` (IRT_ELEMWISE) from its operands' values
 * x[0 .. op->nops), in their arithmetic types. */
LLVMValueRef cg_elem_value(CgCpu *cg, const IrOp *op, LLVMValueRef *x);

/* cg_fuse.c: elementwise fusion (-O1..3 on the CPU). cg_fuse_plan marks in cg->absorbed
 * every elementwise result that its one user, an elementwise op of the same shape in the
 * same region, computes in registers; cg_fuse_lower emits a group's root: one loop over
 * the result's rows, split over the pool, computing the whole expression per element. */
bool cg_fuse_applies(const CgCpu *cg);
void cg_fuse_plan(CgCpu *cg);
void cg_fuse_lower(CgCpu *cg, IrOp *root);
/* GEMM epilogues: cg_fuse_plan also gives a rank-2 f32 matmul whose one use is a fused
 * group of its result's shape, all of whose other leaves exist before the matmul, that
 * group as an epilogue (cg->epi_root, cg->epi_gemm): the GEMM computes the group's rows
 * right after the rows of its product, and the group's own loop is not emitted.
 * cg_fuse_values lists the buffers such a group reads and writes (at most
 * CG_PAR_MAX_VALS - 2); cg_fuse_emit_cols emits root[row, c] for c in [c0, c1). */
uint32_t cg_fuse_values(const CgCpu *cg, const IrOp *root, const IrValue **vals);
void     cg_fuse_emit_cols(CgCpu *cg, const IrOp *root, LLVMValueRef row, LLVMValueRef c0,
                           LLVMValueRef c1);

/* cg_lower.c: emits the ops of region r in order; false after a reported error. */
bool cg_lower_region(CgCpu *cg, IrRegion *r);

/* cg_band.c: band_scores and band_apply, O(rows * window) (docs/codegen.md); false after
 * a reported error. */
bool cg_lower_band(CgCpu *cg, IrOp *op);

/* cg_route.c: topk, scatter_add and moe (routing tokens to experts), f16/bf16 conversion. */
LLVMValueRef cg_f32_from_half(CgCpu *cg, LLVMTypeRef et, LLVMValueRef x);
LLVMValueRef cg_half_from_f32(CgCpu *cg, LLVMTypeRef et, LLVMValueRef x);
/* Marks the routed-token symbols (the N of every moe body) in cg->sym_slot with -1 and
 * numbers the others densely: their order in the model descriptor. */
void         cg_route_number_syms(CgCpu *cg);
/* The extra i32 elements a moe op keeps after its %e in the workspace (routing tables). */
LLVMValueRef cg_moe_scratch(CgCpu *cg, IrOp *op);
/* Before laying out a moe body: its routed symbol takes its upper bound, x's row count. */
void         cg_moe_bound_syms(CgCpu *cg, IrOp *op);
void         cg_lower_topk(CgCpu *cg, IrOp *op);
void         cg_lower_scatter_add(CgCpu *cg, IrOp *op);
bool         cg_lower_moe(CgCpu *cg, IrOp *op);

/* cg_cpu.c, shared with the GPU back end (cg_ptx.c) */
void         cg_init(CgCpu *cg, IrModule *m, DiagEngine *d, const char *name);
void         cg_dispose(CgCpu *cg);
/* What the back ends accept: reports what they do not and returns false. */
bool         cg_check(CgCpu *cg);
/* Verifies cg->mod; a failure is an internal error naming a file with the module. */
bool         cg_verify(CgCpu *cg);
/* Runs default<O1..3> with cg->tm (nothing at -O0); false after a reported error. */
bool         cg_optimise(CgCpu *cg, const CgOptions *o);
bool         cg_emit_machine(CgCpu *cg, LLVMCodeGenFileType kind, Buf *out);
/* Points cg->buf at every value's buffer in workspace ws, as forward lays them out. */
void         cg_layout_main(CgCpu *cg, LLVMValueRef ws);
/* cg_cpu.c: the workspace-size and forward functions `tfx__FNAME` of function f (@main,
 * or @step with the same inputs and outputs). */
LLVMValueRef cg_emit_workspace_fn(CgCpu *cg, IrFunc *f, const char *fname);
LLVMValueRef cg_emit_forward_fn(CgCpu *cg, IrFunc *f, const char *fname);

/* cg_step.c: the step entry of a model with @step (passes/decode.c). */
typedef struct CgStepDesc {
    LLVMValueRef step_fn, ws_fn;  /* tfx__step, tfx__step_workspace_bytes, or null pointers */
    uint32_t     ncache;          /* cache slots */
    LLVMValueRef cache;           /* the TfxCacheSlotDesc table, or a null pointer */
    int32_t      step_sym;        /* the token symbol's descriptor index, or -1 */
    const char  *no_step;         /* why there is none ("" with a step entry) */
} CgStepDesc;
/* Emits tfx__step and its workspace function when the module has @step and the target
 * runs it (the host CPU; not --target=cuda), and fills *sd for the descriptor. */
void         cg_step_emit(CgCpu *cg, bool cuda, CgStepDesc *sd);
/* Lowers a `cache` op: copies the T new rows into the slot, points the result at it. */
void         cg_lower_cache(CgCpu *cg, IrOp *op);

/* cg_lower.c: emits one op; false after a reported error. */
bool         cg_lower_op(CgCpu *cg, IrOp *op);

#endif
