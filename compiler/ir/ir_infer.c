/* ir_infer.c - the dtype and shape rule of every IR op (docs/ir.md, "Shape rules").
 * ir_infer_types() computes result types from operands and attributes without touching
 * the op; ir_infer() stores them. Sema calls ir_infer() on each op it builds and turns
 * a returned message into a user error; ir_verify() re-runs the rules after passes.
 * Ops whose result types cannot be derived (reshape, split, const, arange, broadcast,
 * and the parts of call/moe not yet built) read them from the pre-set results. */
#include "ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef const char *Err;  // NULL = fine, else a static message

static bool is_float(DType t)
{
    return t == DT_F32 || t == DT_F16 || t == DT_BF16;
}

static bool is_const1(Dim d)
{
    return dim_is_const(d) && d.c == 1;
}

static bool type_is(const IrValue *v, DType dt, const Shape *s)
{
    return v->dtype == dt && shape_eq(&v->shape, s);
}

static bool same_type(const IrValue *a, const IrValue *b)
{
    return type_is(a, b->dtype, &b->shape);
}

static bool is_i32_scalar(const IrValue *v)
{
    return v->dtype == DT_I32 && v->shape.rank == 0;
}

static void set_type(IrType *t, DType dt, const Shape *s)
{
    t->dtype = dt;
    t->shape = *s;
}

static Err check_axis(const IrOp *op, int rank)
{
    return op->attrs.axis >= 0 && op->attrs.axis < rank ? NULL : "axis out of range";
}

/* Shape s without dimension `axis`. */
static Shape shape_drop(const Shape *s, int axis)
{
    Shape r = { .rank = (uint8_t)(s->rank - 1) };
    for (int i = 0, j = 0; i < s->rank; i++)
        if (i != axis)
            r.dims[j++] = s->dims[i];
    return r;
}

/* numpy broadcasting: align at the last dim; equal dims, or one is the constant 1. */
bool ir_broadcast(const Shape *a, const Shape *b, Shape *out)
{
    const Shape *big = a->rank >= b->rank ? a : b, *small = big == a ? b : a;
    Shape r = { .rank = big->rank };
    int off = big->rank - small->rank;
    for (int i = 0; i < big->rank; i++) {
        Dim x = big->dims[i];
        if (i >= off) {
            Dim y = small->dims[i - off];
            if (is_const1(x))
                x = y;
            else if (!is_const1(y) && !dim_eq(x, y))
                return false;
        }
        r.dims[i] = x;
    }
    *out = r;
    return true;
}

/* ------------------------------------------------------ elementwise ---- */

/* a op b: one dtype, shapes broadcast; comparisons keep the dtype too. */
static Err infer_binary(const IrOp *op, IrType *res)
{
    const IrValue *a = op->operands[0], *b = op->operands[1];
    if (a->dtype != b->dtype)
        return "operand dtypes differ";
    if (!ir_broadcast(&a->shape, &b->shape, &res[0].shape))
        return "operand shapes do not broadcast";
    res[0].dtype = a->dtype;  // comparisons too: 1 for true, 0 for false
    return NULL;
}

/* where(c, a, b): a and b of one dtype; all three shapes broadcast. */
static Err infer_where(const IrOp *op, IrType *res)
{
    const IrValue *c = op->operands[0], *a = op->operands[1], *b = op->operands[2];
    if (a->dtype != b->dtype)
        return "operand dtypes differ";
    Shape ab;
    if (!ir_broadcast(&a->shape, &b->shape, &ab) || !ir_broadcast(&c->shape, &ab, &res[0].shape))
        return "operand shapes do not broadcast";
    res[0].dtype = a->dtype;
    return NULL;
}

/* Unary ops whose math needs a floating-point operand. */
static bool needs_float(IrOpKind k)
{
    switch (k) {
    case IR_OP_EXP: case IR_OP_LOG: case IR_OP_SQRT: case IR_OP_RSQRT: case IR_OP_TANH:
    case IR_OP_GELU: case IR_OP_GELU_TANH: case IR_OP_SILU: case IR_OP_SIGMOID: case IR_OP_ELU:
        return true;
    default:
        return false;
    }
}

/* Same type as the operand; cast takes its dtype from attrs.to. */
static Err infer_unary(const IrOp *op, IrType *res)
{
    const IrValue *x = op->operands[0];
    if (needs_float(op->kind) && !is_float(x->dtype))
        return "operand must be floating-point";
    set_type(&res[0], x->dtype, &x->shape);
    if (op->kind == IR_OP_CAST) {
        if ((unsigned)op->attrs.to >= DT_COUNT_)
            return "cast to an unknown dtype";
        res[0].dtype = op->attrs.to;
    }
    return NULL;
}

/* --------------------------------------- contractions, normalisations ---- */

/* [..., M, K] @ [..., K, N] -> [batch..., M, N], batch dims broadcast. */
static Err infer_matmul(const IrOp *op, IrType *res)
{
    const Shape *a = &op->operands[0]->shape, *b = &op->operands[1]->shape;
    if (a->rank < 2 || b->rank < 2)
        return "matmul operands need rank 2 or more";
    if (op->operands[0]->dtype != op->operands[1]->dtype)
        return "operand dtypes differ";
    if (!dim_eq(a->dims[a->rank - 1], b->dims[b->rank - 2]))
        return "inner dimensions differ";
    Shape ba = { .rank = (uint8_t)(a->rank - 2) }, bb = { .rank = (uint8_t)(b->rank - 2) };
    memcpy(ba.dims, a->dims, ba.rank * sizeof(Dim));
    memcpy(bb.dims, b->dims, bb.rank * sizeof(Dim));
    Shape *r = &res[0].shape;
    if (!ir_broadcast(&ba, &bb, r))
        return "batch dimensions do not broadcast";
    r->dims[r->rank++] = a->dims[a->rank - 2];
    r->dims[r->rank++] = b->dims[b->rank - 1];
    res[0].dtype = op->operands[0]->dtype;
    return NULL;
}

/* Masks apply to scores [..., Tq, Tk] along the last axis; only padding takes a
 * second operand (the valid key counts). */
static Err check_mask(const IrOp *op, const Shape *x)
{
    IrMask k = op->attrs.mask;
    if ((unsigned)k >= IR_MASK_COUNT_)
        return "unknown mask kind";
    if ((op->nops == 2) != (k == IR_MASK_PADDING))
        return "a padding mask takes a lengths operand, other masks none";
    if (k == IR_MASK_NONE)
        return NULL;
    if (x->rank < 2 || op->attrs.axis != x->rank - 1)
        return "a mask needs a [.., query, key] softmax over the last axis";
    if ((k == IR_MASK_BAND || k == IR_MASK_CAUSAL_BAND) && op->attrs.band <= 0)
        return "band width must be positive";
    return NULL;
}

/* softmax(x [, lengths]) keeps x's type. */
static Err infer_softmax(const IrOp *op, IrType *res)
{
    if (op->nops != 1 && op->nops != 2)
        return "wrong number of operands";
    const IrValue *x = op->operands[0];
    Err e = check_axis(op, x->shape.rank);
    if (!e)
        e = check_mask(op, &x->shape);
    if (e)
        return e;
    if (!is_float(x->dtype))
        return "operand must be floating-point";
    const IrValue *len = op->nops == 2 ? op->operands[1] : NULL;
    if (len && (len->dtype != DT_I32 || len->shape.rank > 1))
        return "padding lengths must be i32[] or i32[B]";
    set_type(&res[0], x->dtype, &x->shape);
    return NULL;
}

bool ir_band_offsets(const IrAttrs *a, int64_t *lo, int64_t *hi)
{
    if ((a->mask != IR_MASK_BAND && a->mask != IR_MASK_CAUSAL_BAND) || a->band < 1 ||
        a->band > INT32_MAX)
        return false;
    *lo = -(a->band - 1);
    *hi = a->mask == IR_MASK_BAND ? a->band - 1 : 0;
    return true;
}

/* band_scores(q: [..., T, d], k: [..., T, d]) -> [..., T, W], W = hi - lo + 1: entry
 * [i, o] is q_i . k_(i+lo+o), -inf where that key is outside [0, T). */
static Err infer_band_scores(const IrOp *op, IrType *res)
{
    const IrValue *q = op->operands[0], *k = op->operands[1];
    int64_t lo, hi;
    if (!ir_band_offsets(&op->attrs, &lo, &hi))
        return "the window must be band(w) or causal_band(w) with w >= 1";
    if (!is_float(q->dtype) || q->dtype != k->dtype)
        return "q and k must be floating-point tensors of one dtype";
    if (q->shape.rank < 2 || !shape_eq(&q->shape, &k->shape))
        return "q and k must have one shape [..., T, d]";
    set_type(&res[0], q->dtype, &q->shape);
    res[0].shape.dims[q->shape.rank - 1] = dim_const(hi - lo + 1);
    return NULL;
}

/* band_apply(p: [..., T, W], v: [..., T, dv]) -> [..., T, dv]: row i is
 * sum_o p[i, o] * v[i+lo+o] over the keys inside [0, T). */
static Err infer_band_apply(const IrOp *op, IrType *res)
{
    const IrValue *p = op->operands[0], *v = op->operands[1];
    int64_t lo, hi;
    if (!ir_band_offsets(&op->attrs, &lo, &hi))
        return "the window must be band(w) or causal_band(w) with w >= 1";
    if (!is_float(p->dtype) || p->dtype != v->dtype)
        return "p and v must be floating-point tensors of one dtype";
    int r = p->shape.rank;
    if (r < 2 || v->shape.rank != r)
        return "p and v must be [..., T, W] and [..., T, dv]";
    for (int i = 0; i < r - 1; i++)
        if (!dim_eq(p->shape.dims[i], v->shape.dims[i]))
            return "p and v must agree on [..., T]";
    Dim w = p->shape.dims[r - 1];
    if (!dim_is_const(w) || w.c != hi - lo + 1)
        return "the last axis of p must have one entry per offset of the window";
    set_type(&res[0], v->dtype, &v->shape);
    return NULL;
}

/* layernorm (x) or (x, w, b); rmsnorm (x) or (x, w): w and b are [last dim of x]. */
static Err infer_norm(const IrOp *op, IrType *res)
{
    uint32_t full = op->kind == IR_OP_LAYERNORM ? 3 : 2;
    if (op->nops != 1 && op->nops != full)
        return "wrong number of operands";
    const IrValue *x = op->operands[0];
    if (x->shape.rank < 1 || !is_float(x->dtype))
        return "operand must be a floating-point tensor of rank 1 or more";
    Shape last = { .rank = 1, .dims = { x->shape.dims[x->shape.rank - 1] } };
    for (uint32_t i = 1; i < op->nops; i++)
        if (!type_is(op->operands[i], x->dtype, &last))
            return "scale and bias must match the last dimension";
    set_type(&res[0], x->dtype, &x->shape);
    return NULL;
}

/* Whether d is divisible by 2 as written: an even constant, or a symbolic dim whose
 * numerator has only even coefficients and an even constant. */
static bool halves(Dim d, Dim *out)
{
    if (d.nterms == 0)
        return d.c % 2 == 0 && dim_div(d, dim_const(2), out);
    for (int i = 0; i < d.nterms; i++)
        if (d.coef[i] % 2 != 0)
            return false;
    return d.c % 2 == 0 && dim_div(d, dim_const(2), out);
}

/* swiglu gates one half of the last dim with the other: that dim halves. */
static Err infer_swiglu(const IrOp *op, IrType *res)
{
    const IrValue *x = op->operands[0];
    if (x->shape.rank < 1 || !is_float(x->dtype))
        return "operand must be a floating-point tensor of rank 1 or more";
    set_type(&res[0], x->dtype, &x->shape);
    Dim *last = &res[0].shape.dims[x->shape.rank - 1];
    return halves(*last, last) ? NULL : "last dimension must be even";
}

/* sum/mean/reduce_max/reduce_min along axis: the axis goes, or stays as 1. */
static Err infer_reduce(const IrOp *op, IrType *res)
{
    const IrValue *x = op->operands[0];
    Err e = check_axis(op, x->shape.rank);
    if (e)
        return e;
    if (op->kind == IR_OP_MEAN && !is_float(x->dtype))
        return "operand must be floating-point";
    set_type(&res[0], x->dtype, &x->shape);
    if (op->attrs.keepdim)
        res[0].shape.dims[op->attrs.axis] = dim_const(1);
    else
        res[0].shape = shape_drop(&x->shape, (int)op->attrs.axis);
    return NULL;
}

/* cumsum along axis keeps the type. */
static Err infer_cumsum(const IrOp *op, IrType *res)
{
    const IrValue *x = op->operands[0];
    set_type(&res[0], x->dtype, &x->shape);
    return check_axis(op, x->shape.rank);
}

/* topk along the last axis: values [..., k] and i32 indices [..., k]; k is a constant
 * or a run-time dim (then the last dim must be run-time too; k <= it is checked when the
 * op runs). */
static Err infer_topk(const IrOp *op, IrType *res)
{
    const IrValue *x = op->operands[0];
    if (x->shape.rank < 1)
        return "operand needs rank 1 or more";
    Dim last = x->shape.dims[x->shape.rank - 1], k = ir_topk_k(op);
    if (dim_is_const(k) && (k.c < 1 || (dim_is_const(last) && k.c > last.c)))
        return "k must be between 1 and the last dimension";
    if (!dim_is_const(k) && dim_is_const(last))
        return "a run-time k needs a run-time last dimension";
    set_type(&res[0], x->dtype, &x->shape);
    res[0].shape.dims[x->shape.rank - 1] = k;
    set_type(&res[1], DT_I32, &res[0].shape);
    return NULL;
}

/* ---------------------------------------------------- data movement ---- */

/* Result dim i is operand dim perm[i]. */
static Err infer_transpose(const IrOp *op, IrType *res)
{
    const IrValue *x = op->operands[0];
    bool seen[IR_MAX_RANK] = { false };
    set_type(&res[0], x->dtype, &x->shape);
    for (int i = 0; i < x->shape.rank; i++) {
        uint8_t p = op->attrs.perm[i];
        if (p >= x->shape.rank || seen[p])
            return "perm is not a permutation of the axes";
        seen[p] = true;
        res[0].shape.dims[i] = x->shape.dims[p];
    }
    return NULL;
}

/* An element count as (num/den) * the product of primitive linear forms. Products of
 * linear polynomials factor uniquely, so two counts are equal for every value of the
 * symbols exactly when these parts are equal. */
typedef struct Numel {
    int64_t num, den;
    int     nfactors;
    Dim     factors[IR_MAX_RANK];
} Numel;

static bool numel_scale(Numel *n, int64_t num, int64_t den)
{
    if (__builtin_mul_overflow(n->num, num, &n->num) || __builtin_mul_overflow(n->den, den, &n->den))
        return false;
    int64_t a = n->num < 0 ? -n->num : n->num, b = n->den;
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    if (a > 1) {
        n->num /= a;
        n->den /= a;
    }
    return true;
}

/* Splits a symbolic dim into its content (gcd of the numerator, signed so that the
 * first coefficient of the rest is positive) over its divisor, and a primitive form. */
static bool numel_factor(Numel *n, Dim d)
{
    int64_t g = d.c < 0 ? -d.c : d.c;
    for (int i = 0; i < d.nterms; i++) {
        int64_t a = d.coef[i] < 0 ? -d.coef[i] : d.coef[i];
        while (a) {
            int64_t t = g % a;
            g = a;
            a = t;
        }
    }
    if (d.coef[0] < 0)
        g = -g;
    Dim p = { .c = d.c / g, .div = 1, .nterms = d.nterms };
    for (int i = 0; i < d.nterms; i++) {
        p.sym[i] = d.sym[i];
        p.coef[i] = d.coef[i] / g;
    }
    n->factors[n->nfactors++] = p;
    return numel_scale(n, g, d.div);
}

/* Splits s's element count into constant and primitive factors; false on overflow. */
static bool numel_of(const Shape *s, Numel *n)
{
    *n = (Numel){ .num = 1, .den = 1 };
    for (int i = 0; i < s->rank; i++) {
        Dim d = s->dims[i];
        if (!(d.nterms == 0 ? numel_scale(n, d.c, 1) : numel_factor(n, d)))
            return false;
    }
    return true;
}

/* Equal constants and equal multisets of factors (zero counts: both zero). */
static bool numel_eq(const Numel *a, const Numel *b)
{
    if (a->num == 0 || b->num == 0)
        return a->num == b->num;
    if (a->num != b->num || a->den != b->den || a->nfactors != b->nfactors)
        return false;
    bool used[IR_MAX_RANK] = { false };
    for (int i = 0; i < a->nfactors; i++) {
        int j = 0;
        while (j < b->nfactors && (used[j] || !dim_eq(a->factors[i], b->factors[j])))
            j++;
        if (j == b->nfactors)
            return false;
        used[j] = true;
    }
    return true;
}

/* The builder sets the shape; the element counts must agree for all symbols. */
static Err infer_reshape(const IrOp *op, IrType *res)
{
    const IrValue *x = op->operands[0];
    Numel a, b;
    if (!numel_of(&x->shape, &a) || !numel_of(&res[0].shape, &b))
        return "element count too large to compare";
    res[0].dtype = x->dtype;
    return numel_eq(&a, &b) ? NULL : "element counts differ";
}

/* Whether the dim is a negative constant. */
static bool is_negative(Dim d)
{
    return dim_is_const(d) && d.c < 0;
}

/* [start, end) along axis; dim becomes end - start. Known-negative parts are errors. */
static Err infer_slice(const IrOp *op, IrType *res)
{
    const IrValue *x = op->operands[0];
    Err e = check_axis(op, x->shape.rank);
    if (e)
        return e;
    Dim len, rest, dim = x->shape.dims[op->attrs.axis];
    if (!dim_sub(op->attrs.end, op->attrs.start, &len) || !dim_sub(dim, op->attrs.end, &rest))
        return "slice length is not representable";
    if (is_negative(op->attrs.start) || is_negative(len) || is_negative(rest))
        return "slice range out of bounds";
    set_type(&res[0], x->dtype, &x->shape);
    res[0].shape.dims[op->attrs.axis] = len;
    return NULL;
}

/* x[i] along axis with i: i32[] removes the axis. */
static Err infer_index(const IrOp *op, IrType *res)
{
    const IrValue *x = op->operands[0];
    Err e = check_axis(op, x->shape.rank);
    if (e)
        return e;
    if (!is_i32_scalar(op->operands[1]))
        return "index must be i32[]";
    Shape s = shape_drop(&x->shape, (int)op->attrs.axis);
    set_type(&res[0], x->dtype, &s);
    return NULL;
}

/* gather: x.shape[:axis] + idx.shape + x.shape[axis+1:] */
static Err infer_gather(const IrOp *op, IrType *res)
{
    const Shape *x = &op->operands[0]->shape, *idx = &op->operands[1]->shape;
    Err e = check_axis(op, x->rank);
    if (e)
        return e;
    if (op->operands[1]->dtype != DT_I32)
        return "indices must be i32";
    if (x->rank - 1 + idx->rank > IR_MAX_RANK)
        return "result rank too large";
    Shape *r = &res[0].shape;
    r->rank = 0;
    for (int i = 0; i < x->rank; i++) {
        if (i != op->attrs.axis) {
            r->dims[r->rank++] = x->dims[i];
            continue;
        }
        for (int j = 0; j < idx->rank; j++)
            r->dims[r->rank++] = idx->dims[j];
    }
    res[0].dtype = op->operands[0]->dtype;
    return NULL;
}

/* base + src scattered at idx along axis: src is base with that dim = len(idx). */
static Err infer_scatter_add(const IrOp *op, IrType *res)
{
    const IrValue *base = op->operands[0], *idx = op->operands[1], *src = op->operands[2];
    Err e = check_axis(op, base->shape.rank);
    if (e)
        return e;
    if (idx->dtype != DT_I32 || idx->shape.rank != 1)
        return "indices must be i32 of rank 1";
    Shape want = base->shape;
    want.dims[op->attrs.axis] = idx->shape.dims[0];
    if (!type_is(src, base->dtype, &want))
        return "source must be the base with the axis sized like the indices";
    set_type(&res[0], base->dtype, &base->shape);
    return NULL;
}

/* Whether a and b agree in every dimension but `axis`. */
static bool same_but_axis(const Shape *a, const Shape *b, int64_t axis)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (i != axis && !dim_eq(a->dims[i], b->dims[i]))
            return false;
    return true;
}

/* Operands equal outside axis; the axis dims add. */
static Err infer_concat(const IrOp *op, IrType *res)
{
    if (op->nops < 1)
        return "wrong number of operands";
    const IrValue *x = op->operands[0];
    Err e = check_axis(op, x->shape.rank);
    if (e)
        return e;
    set_type(&res[0], x->dtype, &x->shape);
    Dim *sum = &res[0].shape.dims[op->attrs.axis];
    for (uint32_t i = 1; i < op->nops; i++) {
        const IrValue *y = op->operands[i];
        if (y->dtype != x->dtype || !same_but_axis(&x->shape, &y->shape, op->attrs.axis))
            return "operands differ outside the concatenation axis";
        if (!dim_add(*sum, y->shape.dims[op->attrs.axis], sum))
            return "concatenated size is not representable";
    }
    return NULL;
}

/* Results set by the builder: equal to x outside axis, axis dims adding up to x's. */
static Err infer_split(const IrOp *op, IrType *res)
{
    const IrValue *x = op->operands[0];
    Err e = check_axis(op, x->shape.rank);
    if (e)
        return e;
    if (op->nres < 1)
        return "wrong number of results";
    Dim sum = dim_const(0);
    for (uint32_t i = 0; i < op->nres; i++) {
        res[i].dtype = x->dtype;
        if (!same_but_axis(&x->shape, &res[i].shape, op->attrs.axis))
            return "a part differs from the operand outside the split axis";
        if (!dim_add(sum, res[i].shape.dims[op->attrs.axis], &sum))
            return "split sizes are not representable";
    }
    return dim_eq(sum, x->shape.dims[op->attrs.axis]) ? NULL : "split sizes do not add up";
}

/* The builder sets the result shape; x must broadcast to exactly that shape. */
static Err infer_broadcast(const IrOp *op, IrType *res)
{
    const IrValue *x = op->operands[0];
    Shape b;
    if (!ir_broadcast(&x->shape, &res[0].shape, &b) || !shape_eq(&b, &res[0].shape))
        return "operand does not broadcast to the result shape";
    res[0].dtype = x->dtype;
    return NULL;
}

/* ------------------------------------------------------- structure ---- */

/* weight $w[idx...]: one i32[] index per family level; the declared type. */
static Err infer_weight(const IrModule *m, const IrOp *op, IrType *res)
{
    if (op->attrs.weight >= m->nweights)
        return "unknown weight";
    const IrWeight *w = &m->weights[op->attrs.weight];
    if (op->nops != w->nlevels)
        return "a weight family needs one index per level";
    for (uint32_t i = 0; i < op->nops; i++)
        if (!is_i32_scalar(op->operands[i]))
            return "weight indices must be i32[]";
    set_type(&res[0], w->dtype, &w->shape);
    return NULL;
}

/* The region's terminator, when it ends in one of that kind. */
static const IrOp *terminator(const IrRegion *r, IrOpKind kind)
{
    return r && r->last && r->last->kind == kind ? r->last : NULL;
}

/* Arguments match the callee's parameters; results are what its return returns. */
static Err infer_call(const IrOp *op, IrType *res)
{
    const IrFunc *f = op->attrs.callee;
    if (!f || !f->body)
        return "call without a callee";
    if (op->nops != f->body->nargs)
        return "wrong number of arguments";
    for (uint32_t i = 0; i < op->nops; i++)
        if (!same_type(op->operands[i], f->body->args[i]))
            return "argument type differs from the callee's parameter";
    const IrOp *ret = terminator(f->body, IR_OP_RETURN);
    if (!ret)
        return NULL;  // callee still being built: keep the pre-set result types
    if (ret->nops != op->nres)
        return "wrong number of results";
    for (uint32_t i = 0; i < ret->nops; i++)
        if (ret->operands[i])
            set_type(&res[i], ret->operands[i]->dtype, &ret->operands[i]->shape);
    return NULL;
}

/* The halt flag of an until loop: [T] or [T, 1], T the first dim of every carried value. */
static Err check_halt(const IrOp *op, const Shape *h)
{
    if (h->rank < 1 || h->rank > 2 || (h->rank == 2 && !is_const1(h->dims[1])))
        return "halt flag must be [T] or [T, 1]";
    for (uint32_t i = 0; i < op->nops; i++) {
        const Shape *c = &op->operands[i]->shape;
        if (c->rank == 0 || !dim_eq(c->dims[0], h->dims[0]))
            return "halt flag must match the first dimension of the carried values";
    }
    return NULL;
}

/* The yield of a finished loop body: next carried values, then the halt flag. */
static Err check_loop_yield(const IrOp *op)
{
    const IrOp *y = terminator(op->body, IR_OP_YIELD);
    if (!y)
        return NULL;  // the verifier reports a missing terminator
    if (y->nops != op->nops + (op->attrs.has_until ? 1 : 0))
        return "yield needs one value per carried value (and a halt flag with until)";
    for (uint32_t i = 0; i < y->nops; i++)
        if (!y->operands[i])
            return "missing operand";
    for (uint32_t i = 0; i < op->nops; i++)
        if (!same_type(y->operands[i], op->operands[i]))
            return "yielded type differs from the carried value";
    return op->attrs.has_until ? check_halt(op, &y->operands[op->nops]->shape) : NULL;
}

/* loop: body args (%i: i32[], carried...), results = carried types. */
static Err infer_loop(const IrOp *op, IrType *res)
{
    const IrRegion *b = op->body;
    if (!b)
        return "loop without a body";
    if (b->nargs != op->nops + 1 || op->nres != op->nops)
        return "loop needs an index argument and one argument and result per carried value";
    if (!is_i32_scalar(b->args[0]))
        return "loop index must be i32[]";
    if (op->attrs.loop_kind != IR_LOOP_SHARED && op->attrs.loop_kind != IR_LOOP_STACKED)
        return "unknown loop kind";
    if (is_negative(op->attrs.trips))
        return "negative trip count";
    for (uint32_t i = 0; i < op->nops; i++) {
        if (!same_type(b->args[i + 1], op->operands[i]))
            return "loop argument type differs from its initial value";
        set_type(&res[i], op->operands[i]->dtype, &op->operands[i]->shape);
    }
    return check_loop_yield(op);
}

/* moe(x: [T, D], scores: [T, E]) with body (%e: i32[], %h: [N, D]) -> yield [N, D'];
 * result [T, D']. */
static Err infer_moe(const IrOp *op, IrType *res)
{
    const IrValue *x = op->operands[0], *s = op->operands[1];
    const IrRegion *b = op->body;
    if (!b)
        return "moe without a body";
    if (x->shape.rank != 2 || s->shape.rank != 2 || !dim_eq(x->shape.dims[0], s->shape.dims[0]))
        return "moe needs x [T, D] and scores [T, E]";
    Dim e = s->shape.dims[1];
    if (op->attrs.k < 1 || (dim_is_const(e) && op->attrs.k > e.c))
        return "k must be between 1 and the number of experts";
    if (b->nargs != 2 || !is_i32_scalar(b->args[0]))
        return "moe body needs arguments (%e: i32[], %h)";
    const IrValue *h = b->args[1];
    if (h->dtype != x->dtype || h->shape.rank != 2 || !dim_eq(h->shape.dims[1], x->shape.dims[1]))
        return "moe body argument must be [N, D] like x";
    const IrOp *y = terminator(b, IR_OP_YIELD);
    if (!y)
        return NULL;  // body still being built: keep the pre-set result type
    if (y->nops != 1 || !y->operands[0])
        return "moe body yields one value";
    const Shape *ys = &y->operands[0]->shape;
    if (ys->rank != 2 || !dim_eq(ys->dims[0], h->shape.dims[0]))
        return "moe body must yield [N, D']";
    Shape r = { .rank = 2, .dims = { x->shape.dims[0], ys->dims[1] } };
    set_type(&res[0], y->operands[0]->dtype, &r);
    return NULL;
}

/* const and arange: the builder sets the type; arange is rank 1. */
static Err infer_preset(const IrOp *op, const IrType *res)
{
    if ((unsigned)res[0].dtype >= DT_COUNT_)
        return "unknown dtype";
    if (op->kind == IR_OP_ARANGE && res[0].shape.rank != 1)
        return "arange result must have rank 1";
    return NULL;
}

/* ------------------------------------------------------- dispatch ---- */

/* Fixed operand and result counts from ir_ops.def; variadic ones are per op. */
static Err check_arity(const IrOp *op)
{
    const IrOpInfo *info = &ir_op_info[op->kind];
    if (info->nin >= 0 && op->nops != (uint32_t)info->nin)
        return "wrong number of operands";
    if (info->nout >= 0 && op->nres != (uint32_t)info->nout)
        return "wrong number of results";
    for (uint32_t i = 0; i < op->nops; i++)
        if (!op->operands[i])
            return "missing operand";
    return NULL;
}

/* cache(x, loop indices...) {range = [start, end)}: x's rows become rows [start, end) of
 * the slot, and the result is the slot's rows [0, end): x's type with dims[0] = end. */
static Err infer_cache(const IrOp *op, IrType *res)
{
    if (op->nops < 1)
        return "wrong number of operands";
    const IrValue *x = op->operands[0];
    for (uint32_t i = 1; i < op->nops; i++)
        if (!is_i32_scalar(op->operands[i]))
            return "cache indices must be i32[]";
    Dim len;
    if (x->shape.rank < 1 || !dim_sub(op->attrs.end, op->attrs.start, &len) ||
        !dim_eq(len, x->shape.dims[0]))
        return "the cached rows must be the operand's first axis";
    set_type(&res[0], x->dtype, &x->shape);
    res[0].shape.dims[0] = op->attrs.end;
    return NULL;
}

/* Ops with regions, callees, weights or builder-set types. */
static Err infer_structural(const IrModule *m, const IrOp *op, IrType *res)
{
    switch (op->kind) {
    case IR_OP_CONST: case IR_OP_ARANGE: return infer_preset(op, res);
    case IR_OP_WEIGHT:    return infer_weight(m, op, res);
    case IR_OP_CALL:      return infer_call(op, res);
    case IR_OP_LOOP:      return infer_loop(op, res);
    case IR_OP_MOE:       return infer_moe(op, res);
    case IR_OP_CACHE:     return infer_cache(op, res);
    case IR_OP_YIELD: case IR_OP_RETURN: return NULL;
    default:              return "unknown op";
    }
}

/* Dispatch by op family: elementwise by trait, the rest by kind. */
static Err infer_kind(const IrModule *m, const IrOp *op, IrType *res)
{
    const IrOpInfo *info = &ir_op_info[op->kind];
    if (info->traits & IRT_ELEMWISE)
        return op->kind == IR_OP_WHERE ? infer_where(op, res)
             : info->nin == 2          ? infer_binary(op, res)
                                       : infer_unary(op, res);
    switch (op->kind) {
    case IR_OP_MATMUL:    return infer_matmul(op, res);
    case IR_OP_SOFTMAX:   return infer_softmax(op, res);
    case IR_OP_LAYERNORM: case IR_OP_RMSNORM: return infer_norm(op, res);
    case IR_OP_SWIGLU:    return infer_swiglu(op, res);
    case IR_OP_SUM: case IR_OP_MEAN: case IR_OP_REDMAX: case IR_OP_REDMIN:
        return infer_reduce(op, res);
    case IR_OP_CUMSUM:    return infer_cumsum(op, res);
    case IR_OP_TOPK:      return infer_topk(op, res);
    case IR_OP_BAND_SCORES: return infer_band_scores(op, res);
    case IR_OP_BAND_APPLY:  return infer_band_apply(op, res);
    case IR_OP_TRANSPOSE: return infer_transpose(op, res);
    case IR_OP_RESHAPE:   return infer_reshape(op, res);
    case IR_OP_SLICE:     return infer_slice(op, res);
    case IR_OP_INDEX:     return infer_index(op, res);
    case IR_OP_GATHER:    return infer_gather(op, res);
    case IR_OP_SCATTER_ADD: return infer_scatter_add(op, res);
    case IR_OP_CONCAT:    return infer_concat(op, res);
    case IR_OP_SPLIT:     return infer_split(op, res);
    case IR_OP_BROADCAST: return infer_broadcast(op, res);
    default:              return infer_structural(m, op, res);
    }
}

/* Checks the op table's counts, then applies the op's rule into res. */
const char *ir_infer_types(const IrModule *m, const IrOp *op, IrType *res)
{
    if ((unsigned)op->kind >= IR_OP_COUNT_)
        return "unknown op";
    Err e = check_arity(op);
    return e ? e : infer_kind(m, op, res);
}

/* ir_infer_types() on a copy of the result types, written back on success. */
const char *ir_infer(IrModule *m, IrOp *op)
{
    IrType small[8];
    IrType *res = small;
    if (op->nres > 8 && !(res = malloc(op->nres * sizeof *res))) {
        fputs("tfxc: fatal: out of memory\n", stderr);
        abort();
    }
    for (uint32_t i = 0; i < op->nres; i++)
        set_type(&res[i], op->results[i]->dtype, &op->results[i]->shape);
    Err e = ir_infer_types(m, op, res);
    for (uint32_t i = 0; !e && i < op->nres; i++) {
        op->results[i]->dtype = res[i].dtype;
        op->results[i]->shape = res[i].shape;
    }
    if (res != small)
        free(res);
    return e;
}
