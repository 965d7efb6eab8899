/* ir.h - the graph IR: SSA tensor ops with dtype, symbolic shape and source span.
 *
 * Read this file before any pass. An IrModule owns (all in one arena):
 *   - symbols: the symbolic dimensions bound at run time (T, and N for routed token
 *     counts), each with an optional upper bound;
 *   - weights: every parameter tensor with its full hierarchical checkpoint name. A
 *     weight declared inside a `for` loop is a *family*: its name holds `{l}` and it has
 *     one tensor per step (`transformer.h.{l}.attn.c_attn.weight`, count 12). The
 *     `weight` op reads one member, indexed by loop-index operands;
 *   - funcs: @main (the model) and, before the inline pass, one func per block call site.
 * Each IrFunc has one IrRegion. A region is a list of IrOps ending in a terminator
 * (`return` in a func, `yield` in a loop or moe body) plus region arguments. Ops may use
 * any value defined earlier in the same region or in an enclosing region (implicit
 * capture), never a value of a nested region. Loops stay loops: shared-weight loops and
 * per-step-weight stacks are both `loop` ops, so code size is O(1) in depth.
 *
 * Invariants checked by ir_verify(): every operand is defined before use and visible;
 * operand/result counts match ir_ops.def; result dtype and shape agree with the op's
 * shape rule (ir_infer_*); regions end in the right terminator; weight ops index
 * families with as many i32 scalars as the family has loop levels. */
#ifndef TFX_IR_IR_H
#define TFX_IR_IR_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/arena.h"
#include "../base/buf.h"
#include "../front/diag.h" /* SrcSpan only; the IR prints no diagnostics itself */

typedef struct IrValue  IrValue;
typedef struct IrOp     IrOp;
typedef struct IrRegion IrRegion;
typedef struct IrFunc   IrFunc;
typedef struct IrModule IrModule;

typedef enum DType { DT_F32, DT_F16, DT_BF16, DT_I32, DT_COUNT_ } DType;

/* ---- symbolic dimensions ----
 * A Dim is a linear form over run-time symbols divided exactly by a positive divisor:
 *     value = (c + sum_i coef[i] * sym[i]) / div
 * Kept canonical (terms sorted by symbol id, no zero coefficients, gcd(all, div) == 1)
 * so two equal dims compare equal with dim_eq(). A constant has nterms == 0, div == 1.
 * Symbol ids index IrModule.syms (0-based). */
enum { DIM_MAX_TERMS = 3, IR_MAX_RANK = 6 };

typedef struct Dim {
    int64_t  c;
    int64_t  div;
    uint8_t  nterms;
    uint32_t sym[DIM_MAX_TERMS];
    int64_t  coef[DIM_MAX_TERMS];
} Dim;

Dim  dim_const(int64_t c);
Dim  dim_sym(uint32_t sym);
bool dim_is_const(Dim d);               /* nterms == 0 && div == 1 */
bool dim_eq(Dim a, Dim b);
/* Arithmetic; returns false when the result is not representable (product of two
 * symbolic dims, too many terms, division of a constant that is not exact). */
bool dim_add(Dim a, Dim b, Dim *out);
bool dim_sub(Dim a, Dim b, Dim *out);
bool dim_mul(Dim a, Dim b, Dim *out);   /* at most one side symbolic */
bool dim_div(Dim a, Dim b, Dim *out);   /* b must be a positive constant */
/* Writes the dim in .tfx syntax ("T", "768", "2*T + 1", "T/4") using symbol names. */
void dim_print(Buf *out, const IrModule *m, Dim d);

typedef struct Shape {
    uint8_t rank;
    Dim     dims[IR_MAX_RANK];
} Shape;

bool shape_eq(const Shape *a, const Shape *b);
/* "f32[T, 768]" */
void type_print(Buf *out, const IrModule *m, DType dt, const Shape *s);
const char *dtype_name(DType t);
/* Added: a result type as one value, used by ir_infer_types() and the verifier. */
typedef struct IrType {
    DType dtype;
    Shape shape;
} IrType;

/* ---- values ---- */
struct IrValue {
    uint32_t    id;       /* unique in the module; printing renumbers densely */
    DType       dtype;
    Shape       shape;
    const char *name;     /* user's name (%q) or NULL for anonymous values */
    IrOp       *def;      /* defining op, or NULL for a region argument */
    IrRegion   *owner;    /* the region argument's region (when def == NULL) */
    uint32_t    index;    /* result index in def, or argument index in owner */
    uint32_t    nuses;    /* maintained by the builders and ir_replace_uses */
};

/* ---- attributes ---- */
typedef enum IrAttrBit {
    IRA_VALUE   = 1u << 0,  /* const: fill value (f) */
    IRA_WEIGHT  = 1u << 1,  /* weight: index into IrModule.weights */
    IRA_CALLEE  = 1u << 2,  /* call: callee func */
    IRA_TRIPS   = 1u << 3,  /* loop: trip count (Dim, usually constant) */
    IRA_LOOP    = 1u << 4,  /* loop: kind (shared/stacked) and until */
    IRA_K       = 1u << 5,  /* topk, moe: k */
    IRA_RENORM  = 1u << 6,  /* moe: renormalise gates over the k selected */
    IRA_AXIS    = 1u << 7,  /* axis (>= 0 after sema) */
    IRA_KEEPDIM = 1u << 8,
    IRA_MASK    = 1u << 9,  /* softmax: mask kind + width; padding takes an operand */
    IRA_EPS     = 1u << 10,
    IRA_PERM    = 1u << 11, /* transpose: permutation */
    IRA_RANGE   = 1u << 12, /* slice: [start, end) as Dims; cache: the rows it writes */
    IRA_SLOT    = 1u << 13, /* cache: which cache slot (passes/decode.c) */
    IRA_QOFF    = 1u << 14, /* softmax: query offset of a causal mask (printed when not 0) */
} IrAttrBit;

typedef enum IrMask {
    IR_MASK_NONE, IR_MASK_CAUSAL, IR_MASK_BAND, IR_MASK_CAUSAL_BAND, IR_MASK_PADDING,
    IR_MASK_COUNT_
} IrMask;

typedef enum IrLoopKind { IR_LOOP_SHARED, IR_LOOP_STACKED } IrLoopKind;

typedef struct IrAttrs {
    double      f;        /* const value, eps */
    int64_t     axis;
    int64_t     k;        /* moe: k; topk: k when constant (> 0), else 0 and kdim */
    Dim         kdim;     /* topk: a run-time k (a symbolic dim, e.g. a capacity symbol) */
    bool        keepdim, renorm;
    IrMask      mask;
    int64_t     band;     /* band half-width w: keys with |i - j| < w (causal: i-w < j <= i) */
    uint8_t     perm[IR_MAX_RANK];
    Dim         start, end;  /* slice */
    Dim         trips;       /* loop */
    IrLoopKind  loop_kind;
    bool        has_until;   /* loop: the yield's last operand is a per-token halt flag */
    uint32_t    weight;      /* weight */
    IrFunc     *callee;      /* call */
    DType       to;          /* cast target (also the result dtype) */
    uint32_t    slot;        /* cache: the cache slot written (0 .. number of cache ops) */
    Dim         qoff;        /* softmax: the first query's position for causal/band masks
                              * (P in @step, where the T queries follow P cached tokens);
                              * zero-filled (div 0) or 0 means none, see ir_softmax_qoff */
} IrAttrs;

/* ---- ops ---- */
typedef enum IrOpKind {
#define X(e, name, nin, nout, traits, attrs) IR_OP_##e,
#include "ir_ops.def"
#undef X
    IR_OP_COUNT_
} IrOpKind;

enum IrTrait {
    IRT_PURE = 1u << 0,       /* no side effects: may be CSE'd or deleted when unused */
    IRT_ELEMWISE = 1u << 1,   /* broadcasting elementwise: fusible */
    IRT_VIEW = 1u << 2,       /* result may alias the operand's storage */
    IRT_REGION = 1u << 3,     /* has a body region */
    IRT_TERMINATOR = 1u << 4, /* ends a region */
};

typedef struct IrOpInfo {
    const char *name;
    int         nin, nout;  /* -1 = variadic */
    unsigned    traits;
    unsigned    attrs;
} IrOpInfo;

extern const IrOpInfo ir_op_info[IR_OP_COUNT_];

struct IrOp {
    IrOpKind  kind;
    IrValue **operands;
    uint32_t  nops;
    IrValue **results;
    uint32_t  nres;
    IrAttrs   attrs;
    IrRegion *body;       /* loop/moe body, or NULL */
    IrRegion *parent;     /* region holding this op */
    IrOp     *prev, *next;
    SrcSpan   span;
};

/* A region: arguments, then ops in order, the last one a terminator.
 *   loop body:  args = (%i: i32[], carried...)  yield = (next carried..., [halt])
 *   moe body:   args = (%e: i32[], %h: f32[N, D]) yield = (out: f32[N, D'])
 *   func body:  args = func inputs             return = func results */
struct IrRegion {
    IrValue **args;
    uint32_t  nargs;
    IrOp     *first, *last;
    IrOp     *parent_op;  /* loop/moe op owning it, NULL for a func body */
    IrFunc   *func;       /* the function it belongs to */
};

struct IrFunc {
    const char *name;     /* "main" for the model; printed @name */
    IrRegion   *body;
    SrcSpan     span;
    IrModule   *module;
};

typedef struct IrSym {
    const char *name;     /* "T" */
    bool        has_max;
    Dim         max;      /* upper bound, e.g. ctx (a constant) */
    /* A *capacity* symbol is not bound by the caller: its value is derived from earlier
     * symbols as max(least, floor(ratio * of)), computed in double (language
     * `capacity(n, ratio, least)`). Printed `C = capacity(T, 0.5, 1)`. */
    bool        is_capacity;
    Dim         of;       /* capacity: the count it is a fraction of (over earlier symbols) */
    double      ratio;    /* capacity: the fraction, > 0 */
    int64_t     least;    /* capacity: the smallest value, >= 0 */
} IrSym;

typedef struct IrWeight {
    const char *name;     /* full name; families contain one "{var}" per level */
    DType       dtype;
    Shape       shape;    /* of one member */
    uint32_t    nlevels;  /* 0 = a single tensor; else family depth */
    int64_t     count[IR_MAX_RANK]; /* members per level */
    bool        has_init;
    double      init;     /* the declared fill value, used when a checkpoint lacks it */
    SrcSpan     span;
} IrWeight;

typedef struct IrIO {
    const char *name;
    IrValue    *value;    /* input: region arg of @main; output: returned value */
} IrIO;

struct IrModule {
    Arena     *arena;     /* owned by the caller */
    const char *name;     /* model name */
    IrSym     *syms;     uint32_t nsyms;
    IrWeight  *weights;  uint32_t nweights;
    IrFunc   **funcs;    uint32_t nfuncs;   /* funcs[0] is @main */
    IrIO      *inputs;   uint32_t ninputs;
    IrIO      *outputs;  uint32_t noutputs;
    uint32_t   next_value_id;
    /* Added by passes/decode.c: @step, the incremental-decoding twin of @main (NULL when
     * the model has none), the symbol P it adds (tokens already in the KV cache) and,
     * when there is no @step, the one-line reason (printed as a comment by ir_print). */
    IrFunc    *step;
    uint32_t   past_sym;
    const char *no_step;
};

/* ---- building (ir.c) ---- */
void      ir_module_init(IrModule *m, Arena *a, const char *name);
uint32_t  ir_add_sym(IrModule *m, const char *name);
/* Added: the capacity symbol max(least, floor(ratio * of)) (see IrSym), reusing an
 * existing one with the same definition; `name` is used for a new one. */
uint32_t  ir_add_capacity_sym(IrModule *m, const char *name, Dim of, double ratio, int64_t least);
/* Added: topk's k as a dim: the constant attrs.k, or attrs.kdim when attrs.k is 0. */
Dim       ir_topk_k(const IrOp *op);
uint32_t  ir_add_weight(IrModule *m, const IrWeight *w);
IrFunc   *ir_add_func(IrModule *m, const char *name, SrcSpan span);
IrRegion *ir_region_new(IrModule *m, IrFunc *f, IrOp *parent_op);
IrValue  *ir_region_add_arg(IrModule *m, IrRegion *r, DType dt, const Shape *s, const char *name);
IrValue  *ir_value_new(IrModule *m, DType dt, const Shape *s);
/* Creates an op with the given operands and nres fresh results (types filled by the
 * caller or by ir_infer) and appends it to region r. Updates use counts. */
IrOp     *ir_op_append(IrModule *m, IrRegion *r, IrOpKind kind, IrValue **ops, uint32_t nops,
                       uint32_t nres, SrcSpan span);
/* Same, inserted before `before` (which must be in r). */
IrOp     *ir_op_insert_before(IrModule *m, IrRegion *r, IrOp *before, IrOpKind kind,
                              IrValue **ops, uint32_t nops, uint32_t nres, SrcSpan span);
void      ir_op_set_operand(IrOp *op, uint32_t i, IrValue *v);
/* Unlinks op from its region and drops the use counts of its operands (and of ops in
 * its body). Its results must be unused. */
void      ir_op_erase(IrOp *op);
/* Replaces every use of `from` (in the whole function holding it) by `to`. */
void      ir_replace_uses(IrFunc *f, IrValue *from, IrValue *to);
/* Recomputes nuses of every value in the module from scratch. */
void      ir_recount_uses(IrModule *m);
/* Added: declares a model input (the value is an argument of @main's region) or an
 * output (a value returned by @main, in return-operand order). The module's arrays
 * grow only through the ir_add_* functions, which keep their capacity implicit. */
void      ir_add_input(IrModule *m, const char *name, IrValue *value);
void      ir_add_output(IrModule *m, const char *name, IrValue *value);
/* Added: calls fn on every op of r in order, visiting an op before the ops of its body.
 * fn must not erase or move ops (collect them first). */
typedef void (*IrOpVisitor)(IrOp *op, void *ctx);
void      ir_region_walk(IrRegion *r, IrOpVisitor fn, void *ctx);

/* ---- shape rules (ir_infer.c): compute result dtype/shape of an op from its operands
 * and attributes. Return NULL on success or a static message naming the problem; sema
 * uses them to report user errors, the verifier to check passes. ---- */
const char *ir_infer(IrModule *m, IrOp *op);
/* Added: the same rule without touching the op. `res` (op->nres entries) holds the
 * current result types on entry (pre-set results are read from it) and the inferred
 * ones on success; on failure its contents are unspecified. */
const char *ir_infer_types(const IrModule *m, const IrOp *op, IrType *res);
/* Broadcast two shapes numpy-style (dims equal, or one of them the constant 1). */
bool        ir_broadcast(const Shape *a, const Shape *b, Shape *out);
/* Added: the key offsets of band_scores / band_apply: keys i+lo .. i+hi of query i, so
 * the band axis has hi - lo + 1 entries. band(w) gives [-(w-1), w-1], causal_band(w)
 * gives [-(w-1), 0]. False for any other mask or a width below 1. */
bool        ir_band_offsets(const IrAttrs *a, int64_t *lo, int64_t *hi);

/* Added: removes @step and P (passes/decode.c made them), with `why` for IrModule.no_step:
 * for back ends that have no step entry (the GPU). */
void        ir_drop_step(IrModule *m, const char *why);
/* Added: softmax's query offset as a dim: attrs.qoff, or the constant 0 when unset. */
Dim         ir_softmax_qoff(const IrOp *op);

/* ---- printing, checking ---- */
typedef struct IrPrintOpts {
    bool        locs;       /* trailing "# file:line:col" comments */
    const DiagEngine *diag; /* to turn spans into file:line:col; may be NULL */
    const char *header;     /* added: first line "# HEADER" (e.g. "tfxc ir: a.tfx"), or NULL */
} IrPrintOpts;
void ir_print(Buf *out, const IrModule *m, const IrPrintOpts *o);
void ir_print_dot(Buf *out, const IrModule *m);
/* Returns the number of problems found; each is described on a line in `errs`. */
int  ir_verify(const IrModule *m, Buf *errs);

/* Added: the names ir_print gives the values of one function, shared by the printer,
 * the dot writer and the verifier's messages. User names are kept (".1", ".2" on
 * clashes), anonymous values are numbered densely in print order. */
typedef struct IrNames {
    Arena        arena;  /* owns the strings */
    const char **name;   /* by IrValue.id; NULL for values not defined in the function */
    uint32_t     n;
} IrNames;
void        ir_names_init(IrNames *nm, const IrModule *m, const IrFunc *f);
/* The printed name without its '%' sigil; "?" for a value not defined in the function. */
const char *ir_names_get(const IrNames *nm, const IrValue *v);
void        ir_names_dispose(IrNames *nm);

#endif
