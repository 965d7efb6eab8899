/* cg_lower.c - the plain (-O0-style) lowering of IR ops to LLVM IR. Every value has its
 * own dense row-major buffer (cg->buf, laid out by cg_cpu.c); each op becomes a loop
 * nest over its result's elements with explicit index arithmetic. Nothing is fused and
 * views are copies: this lowering is the oracle later optimisations are tested against.
 * Arithmetic is f32 (i32 for index tensors). Called by cg_cpu.c for @main's body. */
#include "cg_int.h"

#include <math.h>
#include <stdio.h>

static const double SQRT1_2 = 0.70710678118654752440;   /* 1/sqrt(2) */
static const double SQRT_2_OVER_PI = 0.79788456080286535588; /* sqrt(2/pi) */

/* ---- scalar arithmetic ---- */

static LLVMValueRef bool_to(CgCpu *cg, DType t, LLVMValueRef c)
{
    if (t == DT_I32)
        return LLVMBuildZExt(cg->b, c, cg->t_i32, "b");
    return LLVMBuildUIToFP(cg->b, c, cg->t_f32, "b");
}

static LLVMValueRef int_binary(CgCpu *cg, IrOpKind k, LLVMValueRef a, LLVMValueRef b)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef zero = LLVMConstInt(cg->t_i32, 0, false);
    LLVMValueRef one = LLVMConstInt(cg->t_i32, 1, false);
    LLVMValueRef mone = LLVMConstInt(cg->t_i32, (unsigned long long)-1, true);
    switch (k) {
    case IR_OP_ADD: return LLVMBuildAdd(B, a, b, "add");
    case IR_OP_SUB: return LLVMBuildSub(B, a, b, "sub");
    case IR_OP_MUL: return LLVMBuildMul(B, a, b, "mul");
    case IR_OP_DIV: case IR_OP_MOD: {
        // Division by 0 gives 0 and by -1 negates, so no input traps or is undefined.
        LLVMValueRef bz = LLVMBuildICmp(B, LLVMIntEQ, b, zero, "bz");
        LLVMValueRef bm = LLVMBuildICmp(B, LLVMIntEQ, b, mone, "bm");
        LLVMValueRef bad = LLVMBuildOr(B, bz, bm, "bad");
        LLVMValueRef sb = LLVMBuildSelect(B, bad, one, b, "sb");
        if (k == IR_OP_DIV) {
            LLVMValueRef q = LLVMBuildSDiv(B, a, sb, "q");
            LLVMValueRef na = LLVMBuildSub(B, zero, a, "na");
            LLVMValueRef r = LLVMBuildSelect(B, bm, na, q, "q1");
            return LLVMBuildSelect(B, bz, zero, r, "div");
        }
        // floor modulo: the result has the divisor's sign
        LLVMValueRef r = LLVMBuildSRem(B, a, sb, "r");
        LLVMValueRef rnz = LLVMBuildICmp(B, LLVMIntNE, r, zero, "rnz");
        LLVMValueRef rneg = LLVMBuildICmp(B, LLVMIntSLT, r, zero, "rneg");
        LLVMValueRef bneg = LLVMBuildICmp(B, LLVMIntSLT, b, zero, "bneg");
        LLVMValueRef diff = LLVMBuildXor(B, rneg, bneg, "diff");
        LLVMValueRef fix = LLVMBuildAnd(B, rnz, diff, "fix");
        LLVMValueRef rb = LLVMBuildAdd(B, r, b, "rb");
        LLVMValueRef r1 = LLVMBuildSelect(B, fix, rb, r, "r1");
        return LLVMBuildSelect(B, bad, zero, r1, "mod");
    }
    case IR_OP_POW: {
        LLVMValueRef fa = LLVMBuildSIToFP(B, a, cg->t_f32, "fa");
        LLVMValueRef fb = LLVMBuildSIToFP(B, b, cg->t_f32, "fb");
        LLVMValueRef args[2] = { fa, fb };
        LLVMValueRef p = cg_call_intrinsic(cg, "llvm.pow", args, 2, "pow");
        return LLVMBuildFPToSI(B, p, cg->t_i32, "ipow");
    }
    case IR_OP_MAX: {
        LLVMValueRef c = LLVMBuildICmp(B, LLVMIntSGT, a, b, "gt");
        return LLVMBuildSelect(B, c, a, b, "max");
    }
    case IR_OP_MIN: {
        LLVMValueRef c = LLVMBuildICmp(B, LLVMIntSLT, a, b, "lt");
        return LLVMBuildSelect(B, c, a, b, "min");
    }
    case IR_OP_LT: return bool_to(cg, DT_I32, LLVMBuildICmp(B, LLVMIntSLT, a, b, "c"));
    case IR_OP_LE: return bool_to(cg, DT_I32, LLVMBuildICmp(B, LLVMIntSLE, a, b, "c"));
    case IR_OP_GT: return bool_to(cg, DT_I32, LLVMBuildICmp(B, LLVMIntSGT, a, b, "c"));
    case IR_OP_GE: return bool_to(cg, DT_I32, LLVMBuildICmp(B, LLVMIntSGE, a, b, "c"));
    case IR_OP_EQ: return bool_to(cg, DT_I32, LLVMBuildICmp(B, LLVMIntEQ, a, b, "c"));
    case IR_OP_NE: return bool_to(cg, DT_I32, LLVMBuildICmp(B, LLVMIntNE, a, b, "c"));
    default: return NULL;
    }
}

static LLVMValueRef float_binary(CgCpu *cg, IrOpKind k, LLVMValueRef a, LLVMValueRef b)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef args[2] = { a, b };
    switch (k) {
    case IR_OP_ADD: return LLVMBuildFAdd(B, a, b, "add");
    case IR_OP_SUB: return LLVMBuildFSub(B, a, b, "sub");
    case IR_OP_MUL: return LLVMBuildFMul(B, a, b, "mul");
    case IR_OP_DIV: return LLVMBuildFDiv(B, a, b, "div");
    case IR_OP_POW: return cg_call_intrinsic(cg, "llvm.pow", args, 2, "pow");
    case IR_OP_MAX: return cg_call_intrinsic(cg, "llvm.maxnum", args, 2, "max");
    case IR_OP_MIN: return cg_call_intrinsic(cg, "llvm.minnum", args, 2, "min");
    case IR_OP_MOD: {
        // a - floor(a / b) * b: the result has the divisor's sign (torch.remainder)
        LLVMValueRef q = LLVMBuildFDiv(B, a, b, "q");
        LLVMValueRef fl = cg_call_intrinsic(cg, "llvm.floor", &q, 1, "fl");
        LLVMValueRef m = LLVMBuildFMul(B, fl, b, "m");
        return LLVMBuildFSub(B, a, m, "mod");
    }
    case IR_OP_LT: return bool_to(cg, DT_F32, LLVMBuildFCmp(B, LLVMRealOLT, a, b, "c"));
    case IR_OP_LE: return bool_to(cg, DT_F32, LLVMBuildFCmp(B, LLVMRealOLE, a, b, "c"));
    case IR_OP_GT: return bool_to(cg, DT_F32, LLVMBuildFCmp(B, LLVMRealOGT, a, b, "c"));
    case IR_OP_GE: return bool_to(cg, DT_F32, LLVMBuildFCmp(B, LLVMRealOGE, a, b, "c"));
    case IR_OP_EQ: return bool_to(cg, DT_F32, LLVMBuildFCmp(B, LLVMRealOEQ, a, b, "c"));
    case IR_OP_NE: return bool_to(cg, DT_F32, LLVMBuildFCmp(B, LLVMRealUNE, a, b, "c"));
    default: return NULL;
    }
}

/* 1 / (1 + exp(-x)) */
static LLVMValueRef sigmoid(CgCpu *cg, LLVMValueRef x)
{
    LLVMValueRef nx = LLVMBuildFNeg(cg->b, x, "nx");
    LLVMValueRef e = cg_call_intrinsic(cg, "llvm.exp", &nx, 1, "e");
    LLVMValueRef d = LLVMBuildFAdd(cg->b, cg_f32c(cg, 1.0), e, "d");
    return LLVMBuildFDiv(cg->b, cg_f32c(cg, 1.0), d, "sigmoid");
}

static LLVMValueRef float_unary(CgCpu *cg, IrOpKind k, LLVMValueRef x)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef zero = cg_f32c(cg, 0.0), one = cg_f32c(cg, 1.0), half = cg_f32c(cg, 0.5);
    switch (k) {
    case IR_OP_NEG:  return LLVMBuildFNeg(B, x, "neg");
    case IR_OP_EXP:  return cg_call_intrinsic(cg, "llvm.exp", &x, 1, "exp");
    case IR_OP_LOG:  return cg_call_intrinsic(cg, "llvm.log", &x, 1, "log");
    case IR_OP_SQRT: return cg_call_intrinsic(cg, "llvm.sqrt", &x, 1, "sqrt");
    case IR_OP_ABS:  return cg_call_intrinsic(cg, "llvm.fabs", &x, 1, "abs");
    case IR_OP_TANH: return cg_call_libm(cg, "tanhf", x, "tanh");
    case IR_OP_RSQRT: {
        LLVMValueRef s = cg_call_intrinsic(cg, "llvm.sqrt", &x, 1, "sqrt");
        return LLVMBuildFDiv(B, one, s, "rsqrt");
    }
    case IR_OP_RELU: {
        LLVMValueRef c = LLVMBuildFCmp(B, LLVMRealOGT, x, zero, "pos");
        return LLVMBuildSelect(B, c, x, zero, "relu");
    }
    case IR_OP_SIGMOID: return sigmoid(cg, x);
    case IR_OP_SILU: {
        LLVMValueRef s = sigmoid(cg, x);
        return LLVMBuildFMul(B, x, s, "silu");
    }
    case IR_OP_ELU: {
        LLVMValueRef c = LLVMBuildFCmp(B, LLVMRealOGT, x, zero, "pos");
        LLVMValueRef e = cg_call_intrinsic(cg, "llvm.exp", &x, 1, "e");
        LLVMValueRef em1 = LLVMBuildFSub(B, e, one, "em1");
        return LLVMBuildSelect(B, c, x, em1, "elu");
    }
    case IR_OP_GELU: {
        // 0.5 x (1 + erf(x / sqrt 2))
        LLVMValueRef s = LLVMBuildFMul(B, x, cg_f32c(cg, SQRT1_2), "xs");
        LLVMValueRef e = cg_call_libm(cg, "erff", s, "erf");
        LLVMValueRef t = LLVMBuildFAdd(B, one, e, "t");
        LLVMValueRef hx = LLVMBuildFMul(B, half, x, "hx");
        return LLVMBuildFMul(B, hx, t, "gelu");
    }
    case IR_OP_GELU_TANH: {
        // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        LLVMValueRef x2 = LLVMBuildFMul(B, x, x, "x2");
        LLVMValueRef x3 = LLVMBuildFMul(B, x2, x, "x3");
        LLVMValueRef c3 = LLVMBuildFMul(B, cg_f32c(cg, 0.044715), x3, "c3");
        LLVMValueRef in = LLVMBuildFAdd(B, x, c3, "in");
        LLVMValueRef u = LLVMBuildFMul(B, cg_f32c(cg, SQRT_2_OVER_PI), in, "u");
        LLVMValueRef th = cg_call_libm(cg, "tanhf", u, "th");
        LLVMValueRef t = LLVMBuildFAdd(B, one, th, "t");
        LLVMValueRef hx = LLVMBuildFMul(B, half, x, "hx");
        return LLVMBuildFMul(B, hx, t, "gelu_tanh");
    }
    default: return NULL;
    }
}

static LLVMValueRef int_unary(CgCpu *cg, IrOpKind k, LLVMValueRef x)
{
    LLVMValueRef zero = LLVMConstInt(cg->t_i32, 0, false);
    switch (k) {
    case IR_OP_NEG: return LLVMBuildSub(cg->b, zero, x, "neg");
    case IR_OP_ABS: {
        LLVMValueRef c = LLVMBuildICmp(cg->b, LLVMIntSLT, x, zero, "negv");
        LLVMValueRef n = LLVMBuildSub(cg->b, zero, x, "n");
        return LLVMBuildSelect(cg->b, c, n, x, "abs");
    }
    case IR_OP_RELU: {
        LLVMValueRef c = LLVMBuildICmp(cg->b, LLVMIntSGT, x, zero, "pos");
        return LLVMBuildSelect(cg->b, c, x, zero, "relu");
    }
    default: return NULL;
    }
}

static LLVMValueRef is_true(CgCpu *cg, DType t, LLVMValueRef c)
{
    if (t == DT_I32)
        return LLVMBuildICmp(cg->b, LLVMIntNE, c, LLVMConstInt(cg->t_i32, 0, false), "true");
    return LLVMBuildFCmp(cg->b, LLVMRealUNE, c, cg_f32c(cg, 0.0), "true");
}

static LLVMValueRef cast(CgCpu *cg, DType from, DType to, LLVMValueRef x)
{
    if (from == to || (from != DT_I32 && to != DT_I32))
        return x;   // f32, f16 and bf16 all compute in f32; the store rounds
    if (to == DT_I32)
        return LLVMBuildFPToSI(cg->b, x, cg->t_i32, "cast");
    return LLVMBuildSIToFP(cg->b, x, cg->t_f32, "cast");
}

/* ---- elementwise ops: one loop nest over the result, operands broadcast ---- */

LLVMValueRef cg_elem_value(CgCpu *cg, const IrOp *op, LLVMValueRef *x)
{
    DType t = op->operands[op->nops == 3 ? 1 : 0]->dtype;
    if (op->kind == IR_OP_WHERE) {
        LLVMValueRef c = is_true(cg, op->operands[0]->dtype, x[0]);
        return LLVMBuildSelect(cg->b, c, x[1], x[2], "where");
    }
    if (op->kind == IR_OP_CAST)
        return cast(cg, t, op->results[0]->dtype, x[0]);
    if (op->nops == 2)
        return t == DT_I32 ? int_binary(cg, op->kind, x[0], x[1]) : float_binary(cg, op->kind, x[0], x[1]);
    return t == DT_I32 ? int_unary(cg, op->kind, x[0]) : float_unary(cg, op->kind, x[0]);
}

static void lower_elemwise(CgCpu *cg, IrOp *op)
{
    if (cg_fuse_applies(cg)) {   // -O1..3: the op is the root of a fused group
        cg_fuse_lower(cg, op);
        return;
    }
    IrValue *y = op->results[0];
    int r = y->shape.rank;
    CgNest n;
    cg_nest_begin(cg, &n, &y->shape, cg_name(cg, y));
    LLVMValueRef x[3];
    for (uint32_t i = 0; i < op->nops; i++) {
        LLVMValueRef off = cg_bcast_offset(cg, op->operands[i], n.idx, r);
        x[i] = cg_load(cg, op->operands[i], off);
    }
    LLVMValueRef v = cg_elem_value(cg, op, x);
    LLVMValueRef off = cg_offset(cg, y, n.idx);
    cg_store(cg, y, off, v);
    cg_nest_end(cg, &n);
}

/* Adds for f32 or i32 (matmul and reductions work for both). */
static LLVMValueRef add_any(CgCpu *cg, DType t, LLVMValueRef a, LLVMValueRef b, const char *nm)
{
    return t == DT_I32 ? LLVMBuildAdd(cg->b, a, b, nm) : LLVMBuildFAdd(cg->b, a, b, nm);
}

static LLVMValueRef zero_of(CgCpu *cg, DType t)
{
    return t == DT_I32 ? LLVMConstInt(cg->t_i32, 0, false) : cg_f32c(cg, 0.0);
}

/* The product of dims [0, nd) of s. */
static LLVMValueRef lead_numel(CgCpu *cg, const Shape *s, int nd, const char *nm)
{
    LLVMValueRef n = cg_i64(cg, 1);
    for (int j = 0; j < nd; j++)
        n = LLVMBuildMul(cg->b, n, cg_dim(cg, s->dims[j]), nm);
    return n;
}

/* Splits the row-major flat index `flat` over dims [0, nd) of s into idx[0 .. nd). */
static void unflatten(CgCpu *cg, const Shape *s, int nd, LLVMValueRef flat, LLVMValueRef *idx)
{
    LLVMValueRef rest = flat;
    for (int j = nd - 1; j > 0; j--) {
        LLVMValueRef d = cg_dim(cg, s->dims[j]);
        idx[j] = LLVMBuildURem(cg->b, rest, d, "ix");
        rest = LLVMBuildUDiv(cg->b, rest, d, "rest");
    }
    if (nd > 0)
        idx[0] = rest;
}

/* A name for an op's outlined body: "<op>.<result>", e.g. "matmul.h5". */
static const char *body_name(CgCpu *cg, IrOp *op, char *buf, size_t n)
{
    snprintf(buf, n, "%s.%s", ir_op_info[op->kind].name, cg_name(cg, op->results[0]));
    return buf;
}

/* y[b..., m, n] = sum_k a[b..., m, k] * b[b..., k, n]; batch dims broadcast. The rows of
 * y (the flattened batch x M index space) are split over the pool's threads; each element
 * is still one sum over k in order. */
static void lower_matmul(CgCpu *cg, IrOp *op)
{
    if (cg_gemm_applies(cg, op)) {   // -O1..3: the blocked GEMM of cg_gemm.c
        cg_gemm_lower(cg, op);
        return;
    }
    IrValue *y = op->results[0], *a = op->operands[0], *bm = op->operands[1];
    int r = y->shape.rank, ra = a->shape.rank, rb = bm->shape.rank;
    LLVMTypeRef et = cg_arith_type(cg, y->dtype);
    char fname[160], nm[96];
    LLVMValueRef rows = lead_numel(cg, &y->shape, r - 1, "rows");
    CgPar par;
    cg_par_begin(cg, &par, op, rows, body_name(cg, op, fname, sizeof fname));
    LLVMValueRef acc = cg_alloca(cg, et, "acc");
    CgFor lr, lc;
    snprintf(nm, sizeof nm, "%s.row", cg_name(cg, y));
    cg_for_range(cg, &lr, par.begin, par.end, nm);
    LLVMValueRef idx[IR_MAX_RANK];
    unflatten(cg, &y->shape, r - 1, lr.i, idx);
    snprintf(nm, sizeof nm, "%s.d%d", cg_name(cg, y), r - 1);
    cg_for_begin(cg, &lc, cg_dim(cg, y->shape.dims[r - 1]), nm);
    idx[r - 1] = lc.i;
    LLVMBuildStore(cg->b, zero_of(cg, y->dtype), acc);
    CgFor kl;
    LLVMValueRef K = cg_dim(cg, a->shape.dims[ra - 1]);
    cg_for_begin(cg, &kl, K, "k");
    LLVMValueRef ia[IR_MAX_RANK], ib[IR_MAX_RANK];
    for (int j = 0; j < ra - 2; j++) {
        Dim d = a->shape.dims[j];
        ia[j] = dim_is_const(d) && d.c == 1 ? NULL : idx[j + r - ra];
    }
    for (int j = 0; j < rb - 2; j++) {
        Dim d = bm->shape.dims[j];
        ib[j] = dim_is_const(d) && d.c == 1 ? NULL : idx[j + r - rb];
    }
    ia[ra - 2] = idx[r - 2];
    ia[ra - 1] = kl.i;
    ib[rb - 2] = kl.i;
    ib[rb - 1] = idx[r - 1];
    LLVMValueRef va = cg_load(cg, a, cg_offset(cg, a, ia));
    LLVMValueRef vb = cg_load(cg, bm, cg_offset(cg, bm, ib));
    LLVMValueRef p = y->dtype == DT_I32 ? LLVMBuildMul(cg->b, va, vb, "prod")
                                        : LLVMBuildFMul(cg->b, va, vb, "prod");
    LLVMValueRef s = LLVMBuildLoad2(cg->b, et, acc, "acc");
    LLVMValueRef s1 = add_any(cg, y->dtype, s, p, "acc.next");
    LLVMBuildStore(cg->b, s1, acc);
    cg_for_end(cg, &kl);
    LLVMValueRef sum = LLVMBuildLoad2(cg->b, et, acc, "sum");
    cg_store(cg, y, cg_offset(cg, y, idx), sum);
    cg_for_end(cg, &lc);
    cg_for_end(cg, &lr);
    cg_par_end(cg, &par);
}

/* Views a shape as [outer, A, inner] around `axis`. */
static void split3(CgCpu *cg, const Shape *s, int axis, LLVMValueRef *outer, LLVMValueRef *A,
                   LLVMValueRef *inner)
{
    *outer = cg_i64(cg, 1);
    *inner = cg_i64(cg, 1);
    for (int j = 0; j < axis; j++)
        *outer = LLVMBuildMul(cg->b, *outer, cg_dim(cg, s->dims[j]), "outer");
    *A = cg_dim(cg, s->dims[axis]);
    for (int j = axis + 1; j < s->rank; j++)
        *inner = LLVMBuildMul(cg->b, *inner, cg_dim(cg, s->dims[j]), "inner");
}

/* (o * A + a) * inner + in */
static LLVMValueRef off3(CgCpu *cg, LLVMValueRef o, LLVMValueRef A, LLVMValueRef a,
                         LLVMValueRef inner, LLVMValueRef in)
{
    LLVMValueRef t = LLVMBuildMul(cg->b, o, A, "oa");
    t = LLVMBuildAdd(cg->b, t, a, "oa");
    t = LLVMBuildMul(cg->b, t, inner, "oai");
    return LLVMBuildAdd(cg->b, t, in, "off");
}

/* et is the storage type (cg_elem_type): f16/bf16 convert to and from f32. */
static LLVMValueRef load_at(CgCpu *cg, LLVMTypeRef et, LLVMValueRef base, LLVMValueRef off,
                            const char *nm)
{
    return cg_load_as(cg, et, base, off, nm);
}

static void store_at(CgCpu *cg, LLVMTypeRef et, LLVMValueRef base, LLVMValueRef off,
                     LLVMValueRef x)
{
    cg_store_as(cg, et, base, off, x);
}

/* Whether key j is visible to the query of row o (see docs/ir.md, masks): an i1. */
static LLVMValueRef mask_allows(CgCpu *cg, IrOp *op, LLVMValueRef o, LLVMValueRef j)
{
    IrValue *x = op->operands[0];
    int r = x->shape.rank;
    if (op->attrs.mask == IR_MASK_NONE)
        return LLVMConstInt(cg->t_i1, 1, false);
    if (op->attrs.mask == IR_MASK_PADDING) {
        IrValue *len = op->operands[1];
        LLVMValueRef bi = cg_i64(cg, 0);
        if (len->shape.rank == 1) {
            // scores [B, ..., Tq, Tk]: the row's batch is o / (dims 1 .. r-2)
            LLVMValueRef per = cg_i64(cg, 1);
            for (int k = 1; k < r - 1; k++)
                per = LLVMBuildMul(cg->b, per, cg_dim(cg, x->shape.dims[k]), "per");
            bi = LLVMBuildSDiv(cg->b, o, per, "batch");
        }
        LLVMValueRef n = cg_load(cg, len, bi);
        LLVMValueRef n64 = LLVMBuildSExt(cg->b, n, cg->t_i64, "len");
        return LLVMBuildICmp(cg->b, LLVMIntSLT, j, n64, "visible");
    }
    LLVMValueRef Tq = cg_dim(cg, x->shape.dims[r - 2]);
    LLVMValueRef i = LLVMBuildSRem(cg->b, o, Tq, "q");
    Dim qoff = ir_softmax_qoff(op);   // @step: query i is position P + i among the keys
    if (!dim_is_const(qoff) || qoff.c != 0)
        i = LLVMBuildAdd(cg->b, i, cg_dim(cg, qoff), "q.pos");
    LLVMValueRef w = cg_i64(cg, op->attrs.band);
    LLVMValueRef causal = LLVMBuildICmp(cg->b, LLVMIntSLE, j, i, "causal");
    LLVMValueRef d = LLVMBuildSub(cg->b, i, j, "d");
    switch (op->attrs.mask) {
    case IR_MASK_CAUSAL: return causal;
    case IR_MASK_BAND: {
        LLVMValueRef nd = LLVMBuildSub(cg->b, j, i, "nd");
        LLVMValueRef c1 = LLVMBuildICmp(cg->b, LLVMIntSLT, d, w, "c1");
        LLVMValueRef c2 = LLVMBuildICmp(cg->b, LLVMIntSLT, nd, w, "c2");
        return LLVMBuildAnd(cg->b, c1, c2, "band");
    }
    case IR_MASK_CAUSAL_BAND: {
        LLVMValueRef c1 = LLVMBuildICmp(cg->b, LLVMIntSLT, d, w, "c1");
        return LLVMBuildAnd(cg->b, causal, c1, "causal_band");
    }
    default: return causal;
    }
}

/* Numerically stable softmax along `axis` over the visible keys; masked entries are 0
 * and a row with no visible key is all zeros. */
static void lower_softmax(CgCpu *cg, IrOp *op)
{
    IrValue *x = op->operands[0], *y = op->results[0];
    LLVMTypeRef xt = cg_elem_type(cg, x->dtype), yt = cg_elem_type(cg, y->dtype);
    LLVMValueRef outer, A, inner;
    split3(cg, &x->shape, (int)op->attrs.axis, &outer, &A, &inner);
    char fname[160];
    CgPar par;
    cg_par_begin(cg, &par, op, outer, body_name(cg, op, fname, sizeof fname));
    if (par.outlined)   // the body function evaluates the dims from its own symbols
        split3(cg, &x->shape, (int)op->attrs.axis, &outer, &A, &inner);
    LLVMValueRef mx = cg_alloca(cg, cg->t_f32, "max");
    LLVMValueRef sum = cg_alloca(cg, cg->t_f32, "sum");
    LLVMValueRef cnt = cg_alloca(cg, cg->t_i64, "nvisible");
    LLVMTypeRef f = cg->t_f32;
    CgFor lo, li, la;
    cg_for_range(cg, &lo, par.begin, par.end, "sm.row");
    cg_for_begin(cg, &li, inner, "sm.in");
    LLVMBuildStore(cg->b, cg_f32c(cg, -INFINITY), mx);
    LLVMBuildStore(cg->b, cg_f32c(cg, 0.0), sum);
    LLVMBuildStore(cg->b, cg_i64(cg, 0), cnt);
    // pass 1: the maximum over visible keys
    cg_for_begin(cg, &la, A, "sm.max");
    {
        LLVMValueRef ok = mask_allows(cg, op, lo.i, la.i);
        LLVMValueRef v = load_at(cg, xt, cg->buf[x->id], off3(cg, lo.i, A, la.i, inner, li.i), "x");
        LLVMValueRef m = LLVMBuildLoad2(cg->b, f, mx, "m");
        LLVMValueRef gt = LLVMBuildFCmp(cg->b, LLVMRealOGT, v, m, "gt");
        LLVMValueRef take = LLVMBuildAnd(cg->b, ok, gt, "take");
        LLVMValueRef m1 = LLVMBuildSelect(cg->b, take, v, m, "m1");
        LLVMBuildStore(cg->b, m1, mx);
        LLVMValueRef c = LLVMBuildLoad2(cg->b, cg->t_i64, cnt, "c");
        LLVMValueRef inc = LLVMBuildZExt(cg->b, ok, cg->t_i64, "inc");
        LLVMValueRef c1 = LLVMBuildAdd(cg->b, c, inc, "c1");
        LLVMBuildStore(cg->b, c1, cnt);
    }
    cg_for_end(cg, &la);
    // pass 2: y = exp(x - max) on visible keys, 0 elsewhere; accumulate the sum
    cg_for_begin(cg, &la, A, "sm.exp");
    {
        LLVMValueRef ok = mask_allows(cg, op, lo.i, la.i);
        LLVMValueRef off = off3(cg, lo.i, A, la.i, inner, li.i);
        LLVMValueRef v = load_at(cg, xt, cg->buf[x->id], off, "x");
        LLVMValueRef m = LLVMBuildLoad2(cg->b, f, mx, "m");
        LLVMValueRef dlt = LLVMBuildFSub(cg->b, v, m, "xm");
        LLVMValueRef e = cg_call_intrinsic(cg, "llvm.exp", &dlt, 1, "e");
        LLVMValueRef e1 = LLVMBuildSelect(cg->b, ok, e, cg_f32c(cg, 0.0), "e1");
        store_at(cg, yt, cg->buf[y->id], off, e1);
        LLVMValueRef s = LLVMBuildLoad2(cg->b, f, sum, "s");
        LLVMValueRef s1 = LLVMBuildFAdd(cg->b, s, e1, "s1");
        LLVMBuildStore(cg->b, s1, sum);
    }
    cg_for_end(cg, &la);
    // pass 3: normalise rows that have a visible key
    LLVMValueRef c = LLVMBuildLoad2(cg->b, cg->t_i64, cnt, "c");
    LLVMValueRef any = LLVMBuildICmp(cg->b, LLVMIntSGT, c, cg_i64(cg, 0), "any");
    LLVMBasicBlockRef norm = cg_block(cg, "sm.norm");
    LLVMBasicBlockRef done = cg_block(cg, "sm.done");
    LLVMBuildCondBr(cg->b, any, norm, done);
    LLVMPositionBuilderAtEnd(cg->b, norm);
    LLVMValueRef s = LLVMBuildLoad2(cg->b, f, sum, "s");
    cg_for_begin(cg, &la, A, "sm.div");
    {
        LLVMValueRef off = off3(cg, lo.i, A, la.i, inner, li.i);
        LLVMValueRef e = load_at(cg, yt, cg->buf[y->id], off, "e");
        LLVMValueRef q = LLVMBuildFDiv(cg->b, e, s, "p");
        store_at(cg, yt, cg->buf[y->id], off, q);
    }
    cg_for_end(cg, &la);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    cg_for_end(cg, &li);
    cg_for_end(cg, &lo);
    cg_par_end(cg, &par);
}

/* layernorm: (x - mean) / sqrt(var + eps) [* w + b]; rmsnorm: x / sqrt(mean(x^2) + eps)
 * [* w]; over the last axis, two passes, biased variance. */
static void lower_norm(CgCpu *cg, IrOp *op)
{
    IrValue *x = op->operands[0], *y = op->results[0];
    bool ln = op->kind == IR_OP_LAYERNORM;
    LLVMTypeRef f = cg->t_f32;
    LLVMTypeRef xt = cg_elem_type(cg, x->dtype), yt = cg_elem_type(cg, y->dtype);
    int r = x->shape.rank;
    LLVMValueRef rows, one, D;
    split3(cg, &x->shape, r - 1, &rows, &D, &one);
    char fname[160];
    CgPar par;
    cg_par_begin(cg, &par, op, rows, body_name(cg, op, fname, sizeof fname));
    if (par.outlined)
        split3(cg, &x->shape, r - 1, &rows, &D, &one);
    LLVMValueRef Df = LLVMBuildSIToFP(cg->b, D, f, "D");
    LLVMValueRef acc = cg_alloca(cg, f, "acc");
    CgFor lr, lc;
    cg_for_range(cg, &lr, par.begin, par.end, ln ? "ln.row" : "rms.row");
    LLVMValueRef base = LLVMBuildMul(cg->b, lr.i, D, "row");
    LLVMValueRef mean = cg_f32c(cg, 0.0);
    if (ln) {
        LLVMBuildStore(cg->b, cg_f32c(cg, 0.0), acc);
        cg_for_begin(cg, &lc, D, "ln.sum");
        LLVMValueRef off = LLVMBuildAdd(cg->b, base, lc.i, "off");
        LLVMValueRef v = load_at(cg, xt, cg->buf[x->id], off, "x");
        LLVMValueRef s = LLVMBuildLoad2(cg->b, f, acc, "s");
        LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, s, v, "s1"), acc);
        cg_for_end(cg, &lc);
        LLVMValueRef tot = LLVMBuildLoad2(cg->b, f, acc, "total");
        mean = LLVMBuildFDiv(cg->b, tot, Df, "mean");
    }
    LLVMBuildStore(cg->b, cg_f32c(cg, 0.0), acc);
    cg_for_begin(cg, &lc, D, ln ? "ln.var" : "rms.sq");
    {
        LLVMValueRef off = LLVMBuildAdd(cg->b, base, lc.i, "off");
        LLVMValueRef v = load_at(cg, xt, cg->buf[x->id], off, "x");
        LLVMValueRef dv = LLVMBuildFSub(cg->b, v, mean, "xm");
        LLVMValueRef sq = LLVMBuildFMul(cg->b, dv, dv, "sq");
        LLVMValueRef s = LLVMBuildLoad2(cg->b, f, acc, "s");
        LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, s, sq, "s1"), acc);
    }
    cg_for_end(cg, &lc);
    LLVMValueRef ss = LLVMBuildLoad2(cg->b, f, acc, "ss");
    LLVMValueRef var = LLVMBuildFDiv(cg->b, ss, Df, "var");
    LLVMValueRef ve = LLVMBuildFAdd(cg->b, var, cg_f32c(cg, op->attrs.f), "var.eps");
    LLVMValueRef sd = cg_call_intrinsic(cg, "llvm.sqrt", &ve, 1, "std");
    LLVMValueRef rstd = LLVMBuildFDiv(cg->b, cg_f32c(cg, 1.0), sd, "rstd");
    cg_for_begin(cg, &lc, D, ln ? "ln.out" : "rms.out");
    {
        LLVMValueRef off = LLVMBuildAdd(cg->b, base, lc.i, "off");
        LLVMValueRef v = load_at(cg, xt, cg->buf[x->id], off, "x");
        LLVMValueRef dv = LLVMBuildFSub(cg->b, v, mean, "xm");
        LLVMValueRef o = LLVMBuildFMul(cg->b, dv, rstd, "norm");
        if (op->nops > 1) {
            LLVMValueRef w = cg_load(cg, op->operands[1], lc.i);
            o = LLVMBuildFMul(cg->b, o, w, "scaled");
        }
        if (op->nops > 2) {
            LLVMValueRef bb = cg_load(cg, op->operands[2], lc.i);
            o = LLVMBuildFAdd(cg->b, o, bb, "shifted");
        }
        store_at(cg, yt, cg->buf[y->id], off, o);
    }
    cg_for_end(cg, &lc);
    cg_for_end(cg, &lr);
    cg_par_end(cg, &par);
}

/* y[..., h] = silu(x[..., h]) * x[..., H + h] */
static void lower_swiglu(CgCpu *cg, IrOp *op)
{
    IrValue *x = op->operands[0], *y = op->results[0];
    LLVMValueRef rows, one, H;
    split3(cg, &y->shape, y->shape.rank - 1, &rows, &H, &one);
    char fname[160];
    CgPar par;
    cg_par_begin(cg, &par, op, rows, body_name(cg, op, fname, sizeof fname));
    if (par.outlined)
        split3(cg, &y->shape, y->shape.rank - 1, &rows, &H, &one);
    LLVMValueRef H2 = LLVMBuildMul(cg->b, H, cg_i64(cg, 2), "H2");
    CgFor lr, lc;
    cg_for_range(cg, &lr, par.begin, par.end, "swiglu.row");
    cg_for_begin(cg, &lc, H, "swiglu.col");
    LLVMValueRef xb = LLVMBuildMul(cg->b, lr.i, H2, "xrow");
    LLVMValueRef oa = LLVMBuildAdd(cg->b, xb, lc.i, "oa");
    LLVMValueRef ob = LLVMBuildAdd(cg->b, oa, H, "ob");
    LLVMValueRef a = load_at(cg, cg_elem_type(cg, x->dtype), cg->buf[x->id], oa, "a");
    LLVMValueRef b = load_at(cg, cg_elem_type(cg, x->dtype), cg->buf[x->id], ob, "b");
    LLVMValueRef s = float_unary(cg, IR_OP_SILU, a);
    LLVMValueRef v = LLVMBuildFMul(cg->b, s, b, "swiglu");
    LLVMValueRef yo = LLVMBuildMul(cg->b, lr.i, H, "yrow");
    yo = LLVMBuildAdd(cg->b, yo, lc.i, "yo");
    store_at(cg, cg_elem_type(cg, y->dtype), cg->buf[y->id], yo, v);
    cg_for_end(cg, &lc);
    cg_for_end(cg, &lr);
    cg_par_end(cg, &par);
}

/* sum / mean / reduce_max / reduce_min along axis; keepdim does not change the layout. */
static void lower_reduce(CgCpu *cg, IrOp *op)
{
    IrValue *x = op->operands[0], *y = op->results[0];
    DType t = x->dtype;
    LLVMTypeRef et = cg_elem_type(cg, t), at = cg_arith_type(cg, t);   // storage, accumulator
    LLVMValueRef outer, A, inner;
    split3(cg, &x->shape, (int)op->attrs.axis, &outer, &A, &inner);
    LLVMValueRef acc = cg_alloca(cg, at, "acc");
    LLVMValueRef init = zero_of(cg, t);
    bool ismax = op->kind == IR_OP_REDMAX, ismin = op->kind == IR_OP_REDMIN;
    if (ismax)
        init = t == DT_I32 ? LLVMConstInt(cg->t_i32, (unsigned long long)INT32_MIN, true)
                           : cg_f32c(cg, -INFINITY);
    if (ismin)
        init = t == DT_I32 ? LLVMConstInt(cg->t_i32, INT32_MAX, true) : cg_f32c(cg, INFINITY);
    CgFor lo, li, la;
    cg_for_begin(cg, &lo, outer, "red.out");
    cg_for_begin(cg, &li, inner, "red.in");
    LLVMBuildStore(cg->b, init, acc);
    cg_for_begin(cg, &la, A, "red.axis");
    LLVMValueRef v = load_at(cg, et, cg->buf[x->id], off3(cg, lo.i, A, la.i, inner, li.i), "x");
    LLVMValueRef s = LLVMBuildLoad2(cg->b, at, acc, "s");
    LLVMValueRef s1;
    if (ismax || ismin)
        s1 = t == DT_I32 ? int_binary(cg, ismax ? IR_OP_MAX : IR_OP_MIN, s, v)
                         : float_binary(cg, ismax ? IR_OP_MAX : IR_OP_MIN, s, v);
    else
        s1 = add_any(cg, t, s, v, "s1");
    LLVMBuildStore(cg->b, s1, acc);
    cg_for_end(cg, &la);
    LLVMValueRef res = LLVMBuildLoad2(cg->b, at, acc, "r");
    if (op->kind == IR_OP_MEAN) {
        LLVMValueRef n = LLVMBuildSIToFP(cg->b, A, cg->t_f32, "n");
        res = LLVMBuildFDiv(cg->b, res, n, "mean");
    }
    LLVMValueRef yo = LLVMBuildMul(cg->b, lo.i, inner, "yo");
    yo = LLVMBuildAdd(cg->b, yo, li.i, "yo");
    store_at(cg, cg_elem_type(cg, y->dtype), cg->buf[y->id], yo, res);
    cg_for_end(cg, &li);
    cg_for_end(cg, &lo);
}

static void lower_cumsum(CgCpu *cg, IrOp *op)
{
    IrValue *x = op->operands[0], *y = op->results[0];
    DType t = x->dtype;
    LLVMTypeRef et = cg_elem_type(cg, t), at = cg_arith_type(cg, t);   // storage, accumulator
    LLVMValueRef outer, A, inner;
    split3(cg, &x->shape, (int)op->attrs.axis, &outer, &A, &inner);
    LLVMValueRef acc = cg_alloca(cg, at, "acc");
    CgFor lo, li, la;
    cg_for_begin(cg, &lo, outer, "cumsum.out");
    cg_for_begin(cg, &li, inner, "cumsum.in");
    LLVMBuildStore(cg->b, zero_of(cg, t), acc);
    cg_for_begin(cg, &la, A, "cumsum.axis");
    LLVMValueRef off = off3(cg, lo.i, A, la.i, inner, li.i);
    LLVMValueRef v = load_at(cg, et, cg->buf[x->id], off, "x");
    LLVMValueRef s = LLVMBuildLoad2(cg->b, at, acc, "s");
    LLVMValueRef s1 = add_any(cg, t, s, v, "s1");
    LLVMBuildStore(cg->b, s1, acc);
    store_at(cg, et, cg->buf[y->id], off, s1);
    cg_for_end(cg, &la);
    cg_for_end(cg, &li);
    cg_for_end(cg, &lo);
}

/* ---- data movement: a loop nest over the result reading the operand ---- */

static void lower_transpose(CgCpu *cg, IrOp *op)
{
    IrValue *x = op->operands[0], *y = op->results[0];
    CgNest n;
    cg_nest_begin(cg, &n, &y->shape, cg_name(cg, y));
    LLVMValueRef xi[IR_MAX_RANK];
    for (int i = 0; i < y->shape.rank; i++)
        xi[op->attrs.perm[i]] = n.idx[i];
    LLVMValueRef v = cg_load(cg, x, cg_offset(cg, x, xi));
    cg_store(cg, y, cg_offset(cg, y, n.idx), v);
    cg_nest_end(cg, &n);
}

static void lower_slice(CgCpu *cg, IrOp *op)
{
    IrValue *x = op->operands[0], *y = op->results[0];
    int axis = (int)op->attrs.axis;
    CgNest n;
    cg_nest_begin(cg, &n, &y->shape, cg_name(cg, y));
    LLVMValueRef xi[IR_MAX_RANK];
    for (int i = 0; i < y->shape.rank; i++)
        xi[i] = n.idx[i];
    LLVMValueRef start = cg_dim(cg, op->attrs.start);
    xi[axis] = LLVMBuildAdd(cg->b, n.idx[axis], start, "src");
    LLVMValueRef v = cg_load(cg, x, cg_offset(cg, x, xi));
    cg_store(cg, y, cg_offset(cg, y, n.idx), v);
    cg_nest_end(cg, &n);
}

/* Loads an i32[] (or one element of an i32 tensor) as an i64 index. */
static LLVMValueRef load_index(CgCpu *cg, const IrValue *v, LLVMValueRef off)
{
    LLVMValueRef i = cg_load(cg, v, off);
    if (v->dtype != DT_I32)
        i = LLVMBuildFPToSI(cg->b, i, cg->t_i32, "fi");
    return LLVMBuildSExt(cg->b, i, cg->t_i64, "idx");
}

static void lower_index(CgCpu *cg, IrOp *op)
{
    IrValue *x = op->operands[0], *y = op->results[0];
    int axis = (int)op->attrs.axis;
    LLVMValueRef i = load_index(cg, op->operands[1], cg_i64(cg, 0));
    cg_check_index(cg, i, cg_dim(cg, x->shape.dims[axis]), "index.ok");
    CgNest n;
    cg_nest_begin(cg, &n, &y->shape, cg_name(cg, y));
    LLVMValueRef xi[IR_MAX_RANK];
    for (int j = 0, k = 0; j < x->shape.rank; j++)
        xi[j] = j == axis ? i : n.idx[k++];
    LLVMValueRef v = cg_load(cg, x, cg_offset(cg, x, xi));
    cg_store(cg, y, cg_offset(cg, y, n.idx), v);
    cg_nest_end(cg, &n);
}

/* y = x.shape[:axis] + idx.shape + x.shape[axis+1:] */
static void lower_gather(CgCpu *cg, IrOp *op)
{
    IrValue *x = op->operands[0], *ix = op->operands[1], *y = op->results[0];
    int axis = (int)op->attrs.axis, ri = ix->shape.rank;
    CgNest n;
    cg_nest_begin(cg, &n, &y->shape, cg_name(cg, y));
    LLVMValueRef ii[IR_MAX_RANK], xi[IR_MAX_RANK];
    for (int j = 0; j < ri; j++)
        ii[j] = n.idx[axis + j];
    LLVMValueRef i = load_index(cg, ix, cg_offset(cg, ix, ii));
    cg_check_index(cg, i, cg_dim(cg, x->shape.dims[axis]), "gather.ok");
    for (int j = 0; j < x->shape.rank; j++)
        xi[j] = j < axis ? n.idx[j] : j == axis ? i : n.idx[j - 1 + ri];
    LLVMValueRef v = cg_load(cg, x, cg_offset(cg, x, xi));
    cg_store(cg, y, cg_offset(cg, y, n.idx), v);
    cg_nest_end(cg, &n);
}

/* concat (to_result) or split (!to_result): part p of `whole` along axis starts at base. */
static void copy_part(CgCpu *cg, IrValue *whole, IrValue *part, int axis, LLVMValueRef base,
                      bool to_whole)
{
    CgNest n;
    cg_nest_begin(cg, &n, &part->shape, cg_name(cg, part));
    LLVMValueRef wi[IR_MAX_RANK];
    for (int j = 0; j < part->shape.rank; j++)
        wi[j] = n.idx[j];
    wi[axis] = LLVMBuildAdd(cg->b, n.idx[axis], base, "at");
    LLVMValueRef wo = cg_offset(cg, whole, wi), po = cg_offset(cg, part, n.idx);
    if (to_whole)
        cg_store(cg, whole, wo, cg_load(cg, part, po));
    else
        cg_store(cg, part, po, cg_load(cg, whole, wo));
    cg_nest_end(cg, &n);
}

static void lower_concat_split(CgCpu *cg, IrOp *op)
{
    bool concat = op->kind == IR_OP_CONCAT;
    IrValue *whole = concat ? op->results[0] : op->operands[0];
    uint32_t nparts = concat ? op->nops : op->nres;
    int axis = (int)op->attrs.axis;
    LLVMValueRef base = cg_i64(cg, 0);
    for (uint32_t p = 0; p < nparts; p++) {
        IrValue *part = concat ? op->operands[p] : op->results[p];
        copy_part(cg, whole, part, axis, base, concat);
        LLVMValueRef d = cg_dim(cg, part->shape.dims[axis]);
        base = LLVMBuildAdd(cg->b, base, d, "base");
    }
}

/* const fills, arange counts, reshape copies, broadcast copies with broadcasting. */
/* A dim such as T/4 is exact only when T is a multiple of 4; for another T a reshape's
 * two element counts differ, and forward fails rather than read past the operand (copy
 * or view alike). */
static void check_reshape(CgCpu *cg, IrOp *op)
{
    LLVMValueRef n = cg_numel(cg, &op->results[0]->shape);
    LLVMValueRef nx = cg_numel(cg, &op->operands[0]->shape);
    LLVMValueRef same = LLVMBuildICmp(cg->b, LLVMIntEQ, nx, n, "same.count");
    LLVMBasicBlockRef ok = cg_block(cg, "reshape.ok");
    LLVMBuildCondBr(cg->b, same, ok, cg->fail);
    LLVMPositionBuilderAtEnd(cg->b, ok);
}

static void lower_fill(CgCpu *cg, IrOp *op)
{
    IrValue *y = op->results[0];
    LLVMTypeRef et = cg_elem_type(cg, y->dtype);
    CgFor l;
    LLVMValueRef n = cg_numel(cg, &y->shape);
    if (op->kind == IR_OP_RESHAPE)
        check_reshape(cg, op);
    cg_for_begin(cg, &l, n, cg_name(cg, y));
    LLVMValueRef v;
    if (op->kind == IR_OP_CONST)
        v = y->dtype == DT_I32 ? LLVMConstInt(cg->t_i32, (unsigned long long)(int64_t)op->attrs.f, true)
                               : cg_f32c(cg, (float)op->attrs.f);
    else if (op->kind == IR_OP_ARANGE)
        v = y->dtype == DT_I32 ? LLVMBuildTrunc(cg->b, l.i, cg->t_i32, "i")
                               : LLVMBuildSIToFP(cg->b, l.i, cg->t_f32, "i");
    else
        v = load_at(cg, et, cg->buf[op->operands[0]->id], l.i, "x");  // reshape
    store_at(cg, et, cg->buf[y->id], l.i, v);
    cg_for_end(cg, &l);
}

static void lower_broadcast(CgCpu *cg, IrOp *op)
{
    IrValue *x = op->operands[0], *y = op->results[0];
    CgNest n;
    cg_nest_begin(cg, &n, &y->shape, cg_name(cg, y));
    LLVMValueRef v = cg_load(cg, x, cg_bcast_offset(cg, x, n.idx, y->shape.rank));
    cg_store(cg, y, cg_offset(cg, y, n.idx), v);
    cg_nest_end(cg, &n);
}

/* weights[wbase + row-major member index] */
static void lower_weight(CgCpu *cg, IrOp *op)
{
    const IrWeight *w = &cg->m->weights[op->attrs.weight];
    LLVMValueRef flat = cg_i64(cg, 0);
    for (uint32_t l = 0; l < w->nlevels; l++) {
        LLVMValueRef i = load_index(cg, op->operands[l], cg_i64(cg, 0));
        cg_check_index(cg, i, cg_i64(cg, w->count[l]), "member.ok");
        flat = LLVMBuildMul(cg->b, flat, cg_i64(cg, w->count[l]), "member");
        flat = LLVMBuildAdd(cg->b, flat, i, "member");
    }
    LLVMValueRef k = LLVMBuildAdd(cg->b, flat, cg_i64(cg, cg->wbase[op->attrs.weight]), "wk");
    LLVMValueRef f0 = LLVMBuildStructGEP2(cg->b, cg->t_args, cg->args, 0, "weights.p");
    LLVMValueRef tab = LLVMBuildLoad2(cg->b, cg->t_ptr, f0, "weights");
    LLVMValueRef pp = LLVMBuildInBoundsGEP2(cg->b, cg->t_ptr, tab, &k, 1, "wp");
    cg->buf[op->results[0]->id] = LLVMBuildLoad2(cg->b, cg->t_ptr, pp, cg_name(cg, op->results[0]));
}

static void copy_value(CgCpu *cg, const IrValue *dst, const IrValue *src, const char *nm)
{
    LLVMValueRef n = cg_numel(cg, &src->shape);
    cg_copy(cg, cg->buf[dst->id], cg->buf[src->id], n, cg_elem_type(cg, src->dtype), nm);
}

/* Elements per row of v (all dims but the first). */
static LLVMValueRef row_size(CgCpu *cg, const IrValue *v)
{
    LLVMValueRef n = cg_i64(cg, 1);
    for (int j = 1; j < v->shape.rank; j++)
        n = LLVMBuildMul(cg->b, n, cg_dim(cg, v->shape.dims[j]), "row");
    return n;
}

/* For an `until` loop after the body: tokens not yet halted take the yielded rows, then
 * tokens whose flag is set halt; leaves the builder where the loop continues, after a
 * branch to `exit` when every token has halted. */
static void until_step(CgCpu *cg, IrOp *op, IrOp *yield, LLVMValueRef halted, LLVMBasicBlockRef exit)
{
    IrValue *flag = yield->operands[yield->nops - 1];
    LLVMValueRef T = cg_dim(cg, op->results[0]->shape.dims[0]);
    LLVMValueRef active = cg_alloca(cg, cg->t_i64, "nactive");
    LLVMBuildStore(cg->b, cg_i64(cg, 0), active);
    CgFor lt;
    cg_for_begin(cg, &lt, T, "until.tok");
    LLVMValueRef h = load_at(cg, cg->t_i32, halted, lt.i, "halted");
    LLVMValueRef live = LLVMBuildICmp(cg->b, LLVMIntEQ, h, LLVMConstInt(cg->t_i32, 0, false), "live");
    LLVMBasicBlockRef upd = cg_block(cg, "until.update"), next = cg_block(cg, "until.next");
    LLVMBuildCondBr(cg->b, live, upd, next);
    LLVMPositionBuilderAtEnd(cg->b, upd);
    for (uint32_t k = 0; k < op->nres; k++) {
        IrValue *res = op->results[k], *src = yield->operands[k];
        LLVMTypeRef et = cg_elem_type(cg, res->dtype);
        LLVMValueRef rs = row_size(cg, res);
        LLVMValueRef at = LLVMBuildMul(cg->b, lt.i, rs, "at");
        LLVMValueRef d = LLVMBuildInBoundsGEP2(cg->b, et, cg->buf[res->id], &at, 1, "drow");
        LLVMValueRef s = LLVMBuildInBoundsGEP2(cg->b, et, cg->buf[src->id], &at, 1, "srow");
        cg_copy(cg, d, s, rs, et, "until.row");
    }
    LLVMValueRef fv = cg_load(cg, flag, lt.i);
    LLVMValueRef stop = is_true(cg, flag->dtype, fv);
    LLVMValueRef h1 = LLVMBuildZExt(cg->b, stop, cg->t_i32, "h1");
    store_at(cg, cg->t_i32, halted, lt.i, h1);
    LLVMValueRef a = LLVMBuildLoad2(cg->b, cg->t_i64, active, "a");
    LLVMValueRef inc = LLVMBuildZExt(cg->b, LLVMBuildNot(cg->b, stop, "go"), cg->t_i64, "inc");
    LLVMBuildStore(cg->b, LLVMBuildAdd(cg->b, a, inc, "a1"), active);
    LLVMBuildBr(cg->b, next);
    LLVMPositionBuilderAtEnd(cg->b, next);
    cg_for_end(cg, &lt);
    LLVMValueRef na = LLVMBuildLoad2(cg->b, cg->t_i64, active, "nactive");
    LLVMValueRef more = LLVMBuildICmp(cg->b, LLVMIntSGT, na, cg_i64(cg, 0), "more");
    LLVMBasicBlockRef cont = cg_block(cg, "until.cont");
    LLVMBuildCondBr(cg->b, more, cont, exit);
    LLVMPositionBuilderAtEnd(cg->b, cont);
}

/* Results hold the carried values: initialised from the operands, copied into the body's
 * arguments at the start of each step and replaced by the yielded values at its end
 * (two copies, so a yield that permutes carried values is still right). */
static bool lower_loop(CgCpu *cg, IrOp *op)
{
    IrRegion *body = op->body;
    IrOp *yield = body->last;
    for (uint32_t k = 0; k < op->nres; k++)
        copy_value(cg, op->results[k], op->operands[k], "loop.init");
    LLVMValueRef halted = NULL;
    if (op->attrs.has_until) {
        // the halt flags live after the step index in %i's buffer (see cg_cpu.c layout)
        halted = LLVMBuildInBoundsGEP2(cg->b, cg->t_i32, cg->buf[body->args[0]->id],
                                       (LLVMValueRef[]){ cg_i64(cg, 1) }, 1, "halted");
        LLVMValueRef T = cg_dim(cg, op->results[0]->shape.dims[0]);
        CgFor lz;
        cg_for_begin(cg, &lz, T, "until.init");
        store_at(cg, cg->t_i32, halted, lz.i, LLVMConstInt(cg->t_i32, 0, false));
        cg_for_end(cg, &lz);
    }
    CgFor l;
    LLVMValueRef n = cg_dim(cg, op->attrs.trips);
    cg_for_begin(cg, &l, n, cg_name(cg, body->args[0]));
    LLVMValueRef i32 = LLVMBuildTrunc(cg->b, l.i, cg->t_i32, "step");
    store_at(cg, cg->t_i32, cg->buf[body->args[0]->id], cg_i64(cg, 0), i32);
    for (uint32_t k = 0; k < op->nres; k++)
        copy_value(cg, body->args[k + 1], op->results[k], "loop.in");
    if (!cg_lower_region(cg, body))
        return false;
    if (halted) {
        until_step(cg, op, yield, halted, l.exit);
    } else {
        for (uint32_t k = 0; k < op->nres; k++)
            copy_value(cg, op->results[k], yield->operands[k], "loop.out");
    }
    cg_for_end(cg, &l);
    return true;
}

static void lower_return(CgCpu *cg, IrOp *op)
{
    LLVMValueRef f2 = LLVMBuildStructGEP2(cg->b, cg->t_args, cg->args, 2, "outputs.p");
    LLVMValueRef tab = LLVMBuildLoad2(cg->b, cg->t_ptr, f2, "outputs");
    for (uint32_t k = 0; k < op->nops; k++) {
        IrValue *v = op->operands[k];
        LLVMValueRef kk = cg_i64(cg, k);
        LLVMValueRef pp = LLVMBuildInBoundsGEP2(cg->b, cg->t_ptr, tab, &kk, 1, "outp");
        LLVMValueRef dst = LLVMBuildLoad2(cg->b, cg->t_ptr, pp, "out");
        LLVMValueRef n = cg_numel(cg, &v->shape);
        cg_copy(cg, dst, cg->buf[v->id], n, cg_elem_type(cg, v->dtype), "return");
    }
}

static bool lower_op(CgCpu *cg, IrOp *op)
{
    if (ir_op_info[op->kind].traits & IRT_ELEMWISE) {
        lower_elemwise(cg, op);
        return true;
    }
    switch (op->kind) {
    case IR_OP_RESHAPE:
        if (cg_reshape_view(cg, op->results[0])) {   // the operand's bytes, in place
            check_reshape(cg, op);
            cg->buf[op->results[0]->id] = cg->buf[op->operands[0]->id];
        } else
            lower_fill(cg, op);
        return true;
    case IR_OP_CONST: case IR_OP_ARANGE: lower_fill(cg, op); return true;
    case IR_OP_WEIGHT:    lower_weight(cg, op); return true;
    case IR_OP_CACHE:     cg_lower_cache(cg, op); return true;   // cg_step.c
    case IR_OP_MATMUL:
        if (cg_flash_root(cg, op))   // softmax(q @ k^T) @ v as one kernel (cg_flash.c)
            cg_flash_lower(cg, op);
        else
            lower_matmul(cg, op);
        return true;
    case IR_OP_SOFTMAX:   lower_softmax(cg, op); return true;
    case IR_OP_BAND_SCORES: case IR_OP_BAND_APPLY: return cg_lower_band(cg, op);
    case IR_OP_LAYERNORM: case IR_OP_RMSNORM: lower_norm(cg, op); return true;
    case IR_OP_SWIGLU:    lower_swiglu(cg, op); return true;
    case IR_OP_SUM: case IR_OP_MEAN: case IR_OP_REDMAX: case IR_OP_REDMIN:
        lower_reduce(cg, op);
        return true;
    case IR_OP_CUMSUM:    lower_cumsum(cg, op); return true;
    case IR_OP_TRANSPOSE:
        if (cg_gemm_reads_through(cg, op->results[0]))   // the GEMM packs from the operand
            cg->buf[op->results[0]->id] = cg->buf[op->operands[0]->id];
        else
            lower_transpose(cg, op);
        return true;
    case IR_OP_SLICE:     lower_slice(cg, op); return true;
    case IR_OP_INDEX:     lower_index(cg, op); return true;
    case IR_OP_GATHER:    lower_gather(cg, op); return true;
    case IR_OP_CONCAT: case IR_OP_SPLIT: lower_concat_split(cg, op); return true;
    case IR_OP_BROADCAST: lower_broadcast(cg, op); return true;
    case IR_OP_LOOP:      return lower_loop(cg, op);
    case IR_OP_TOPK:      cg_lower_topk(cg, op); return true;
    case IR_OP_SCATTER_ADD: cg_lower_scatter_add(cg, op); return true;
    case IR_OP_MOE:       return cg_lower_moe(cg, op);
    case IR_OP_RETURN:    lower_return(cg, op); return true;
    case IR_OP_YIELD:     return true;   // handled by lower_loop
    default:   // check_op and the ops above cover every op kind
        diag_error(cg->d, op->span, "internal error: no CPU lowering for '%s'",
                   ir_op_info[op->kind].name);
        cg->failed = true;
        return false;
    }
}

bool cg_absorbed_op(const CgCpu *cg, const IrOp *op)
{
    if (op->nres == 0 || op->body)
        return false;
    for (uint32_t i = 0; i < op->nres; i++)
        if (!cg->absorbed[op->results[i]->id])
            return false;
    return true;
}

bool cg_lower_region(CgCpu *cg, IrRegion *r)
{
    for (IrOp *op = r->first; op; op = op->next)
        if (!cg_absorbed_op(cg, op) && !lower_op(cg, op))
            return false;
    return true;
}

bool cg_lower_op(CgCpu *cg, IrOp *op)
{
    return lower_op(cg, op);
}
