/* decode.c - the `decode` pass: builds @step, the incremental-decoding twin of @main, for
 * any model it can prove causal along its token axis T. @step takes T new tokens after P
 * tokens whose keys and values already sit in a KV cache (P is a new symbol the caller
 * binds); prefill is the same function with P = 0. When the proof fails the module keeps
 * @main only and IrModule.no_step says why in one line. Runs last in the pipeline.
 *
 * How: @main is cloned op by op. Every axis whose dim is T gets a tag in @step:
 *   LOCAL   the axis holds the T new tokens only (x [T, 768]);
 *   FULL    it holds all P + T positions (the keys an attention reads);
 *   CAUSAL  a FULL key axis after a causal softmax: entries of keys after their query
 *           are exactly zero, so contracting over it sees no future token.
 * Row-wise ops keep LOCAL axes; `matmul` whose right operand needs its token axis (k^T's
 * last axis, v's contracted axis) gets that operand FULL through a `cache` op, which
 * writes the T new rows at rows [P, P+T) of a cache slot and whose result is the slot's
 * rows [0, P+T); views (transpose, reshape) between the cached value and the use are
 * re-applied on the full value. A causal softmax gets qoff = P (query i is position P+i).
 * Anything else that touches the token axis (a reduction, cumsum, a non-causal softmax,
 * `until`, moe, band ops, arange over T, ...) means no @step. See docs/ir.md, "@step". */
#include "pass.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum Tag { TAG_NONE, TAG_LOCAL, TAG_FULL, TAG_CAUSAL } Tag;

typedef struct Dec {
    IrModule   *m;
    IrFunc     *step;
    uint32_t    T;          /* the token symbol */
    Dim         dT, dP, dfull;   /* T, P, P + T */
    IrValue   **map;        /* by @main value id: its @step copy */
    uint32_t    nmap;
    uint8_t   (*tags)[IR_MAX_RANK];  /* by @step value id: a Tag per axis */
    IrValue   **full;       /* by @step value id: its FULL version (make_full), or NULL */
    uint32_t    cap;        /* entries of tags and full */
    uint32_t    nslots;     /* cache ops made so far */
    const char *why;        /* the first reason for no @step */
} Dec;

/* Records the first reason there can be no @step; returns false for `return fail(...)`. */
static bool fail(Dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(Dec *d, const char *fmt, ...)
{
    if (d->why)
        return false;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    d->why = arena_strdup(d->m->arena, msg);
    return false;
}

static void *grow_or_die(void *p, size_t n, size_t size)
{
    void *q = realloc(p, n * size);
    if (!q) {
        fputs("tfxc: fatal: out of memory\n", stderr);
        exit(3);
    }
    return q;
}

/* Makes the per-value tables hold every @step value id made so far. */
static void ensure_tables(Dec *d)
{
    uint32_t need = d->m->next_value_id + 1;
    if (need <= d->cap)
        return;
    uint32_t cap = need * 2;
    d->tags = grow_or_die(d->tags, cap, sizeof *d->tags);
    d->full = grow_or_die(d->full, cap, sizeof *d->full);
    memset(d->tags + d->cap, 0, (cap - d->cap) * sizeof *d->tags);
    memset(d->full + d->cap, 0, (cap - d->cap) * sizeof *d->full);
    d->cap = cap;
}

static Tag tag(const Dec *d, const IrValue *v, int axis)
{
    return (Tag)d->tags[v->id][axis];
}

static bool is_T(const Dec *d, Dim x)
{
    return dim_eq(x, d->dT);
}

/* Every dim of a @main value must be T or a constant. */
static bool check_shape(Dec *d, const IrOp *op, const Shape *s)
{
    for (int k = 0; k < s->rank; k++)
        if (!is_T(d, s->dims[k]) && !dim_is_const(s->dims[k])) {
            Buf b;
            buf_init(&b);
            dim_print(&b, d->m, s->dims[k]);
            fail(d, "'%s' has a dimension %s that is neither the token axis nor a constant",
                 op ? ir_op_info[op->kind].name : "an input", buf_str(&b));
            buf_dispose(&b);
            return false;
        }
    return true;
}

/* Gives v (a @step value) the shape `old` with its T axes per tags: LOCAL keeps T, FULL and
 * CAUSAL become P + T. */
static void set_shape(Dec *d, IrValue *v, const Shape *old, const uint8_t *tags)
{
    ensure_tables(d);
    v->shape = *old;
    for (int k = 0; k < old->rank; k++) {
        d->tags[v->id][k] = tags[k];
        if (tags[k] == TAG_FULL || tags[k] == TAG_CAUSAL)
            v->shape.dims[k] = d->dfull;
    }
}

static int count_tag(const Dec *d, const IrValue *v, Tag t)
{
    int n = 0;
    for (int k = 0; k < v->shape.rank; k++)
        n += tag(d, v, k) == t;
    return n;
}

static int count_tagged(const Dec *d, const IrValue *v)
{
    return v->shape.rank - count_tag(d, v, TAG_NONE);
}

/* ---- the cache: FULL versions of LOCAL values ---- */

/* A new op in v's region right after v's definition (at the region's start for an
 * argument), so the result is visible wherever v is. */
static IrOp *insert_after(Dec *d, IrValue *v, IrOpKind kind, IrValue **ops, uint32_t nops,
                          SrcSpan span)
{
    IrOp *def = v->def;
    IrRegion *r = def ? def->parent : v->owner;
    IrOp *next = def ? def->next : r->first;
    return next ? ir_op_insert_before(d->m, r, next, kind, ops, nops, 1, span)
                : ir_op_append(d->m, r, kind, ops, nops, 1, span);
}

/* The loop indices enclosing region r, outermost first, into idx; false (with a reason)
 * inside a moe body or a loop without a constant trip count. */
static bool loop_indices(Dec *d, IrRegion *r, IrValue **idx, uint32_t *n)
{
    IrValue *rev[IR_MAX_RANK];
    uint32_t k = 0;
    for (; r && r->parent_op; r = r->parent_op->parent) {
        IrOp *lp = r->parent_op;
        if (lp->kind != IR_OP_LOOP || !dim_is_const(lp->attrs.trips))
            return fail(d, "a cached value is computed inside a moe body or a loop of "
                        "run-time length");
        if (k == IR_MAX_RANK)
            return fail(d, "a cached value is nested in more than %d loops", IR_MAX_RANK);
        rev[k++] = r->args[0];
    }
    for (uint32_t i = 0; i < k; i++)
        idx[i] = rev[k - 1 - i];
    *n = k;
    return true;
}

/* The FULL version of v, a @step value with one LOCAL axis and no other token axis:
 * views are re-applied on the FULL version of their operand; anything else is cached (a
 * `cache` op right after v, indexed by the enclosing loops' steps). NULL on failure. */
static IrValue *make_full(Dec *d, IrValue *v)
{
    if (d->full[v->id])
        return d->full[v->id];
    if (count_tag(d, v, TAG_LOCAL) != 1 || count_tagged(d, v) != 1) {
        fail(d, "an attention operand has more than one token axis");
        return NULL;
    }
    uint8_t tags[IR_MAX_RANK];
    for (int k = 0; k < v->shape.rank; k++)
        tags[k] = tag(d, v, k) == TAG_LOCAL ? TAG_FULL : TAG_NONE;
    Shape old = v->shape;   // T on the LOCAL axis, so set_shape can re-tag it
    IrOp *def = v->def;
    IrOp *nop;
    if (def && (def->kind == IR_OP_TRANSPOSE || def->kind == IR_OP_RESHAPE) &&
        count_tag(d, def->operands[0], TAG_LOCAL) == 1) {
        IrValue *u = make_full(d, def->operands[0]);
        if (!u)
            return NULL;
        nop = insert_after(d, u, def->kind, &u, 1, def->span);
        nop->attrs = def->attrs;
    } else {
        if (tag(d, v, 0) != TAG_LOCAL) {
            fail(d, "a value the attention needs for every token does not have its token "
                 "axis first");
            return NULL;
        }
        IrValue *ops[1 + IR_MAX_RANK];
        uint32_t n = 0;
        if (!loop_indices(d, def ? def->parent : v->owner, ops + 1, &n))
            return NULL;
        ops[0] = v;
        nop = insert_after(d, v, IR_OP_CACHE, ops, 1 + n, def ? def->span : d->step->span);
        nop->attrs.start = d->dP;
        nop->attrs.end = d->dfull;
        nop->attrs.slot = d->nslots++;
    }
    IrValue *f = nop->results[0];
    f->dtype = v->dtype;
    set_shape(d, f, &old, tags);
    d->full[v->id] = f;
    return f;
}

/* ---- rules: the tags of an op's results from its operands' ---- */

/* Broadcasting elementwise ops: each result axis takes the tag of the operand axes
 * aligned with it (from the right). LOCAL and FULL never mix; CAUSAL survives only ops
 * that keep its zeros zero. */
static bool rule_elemwise(Dec *d, const IrOp *op, IrValue **ops, uint8_t *rt)
{
    int r = op->results[0]->shape.rank;
    for (int k = 0; k < r; k++) {
        Tag t = TAG_NONE;
        bool zero_kept = op->kind == IR_OP_MUL || op->kind == IR_OP_CAST ||
                         op->kind == IR_OP_NEG;
        for (uint32_t i = 0; i < op->nops; i++) {
            int a = k - (r - ops[i]->shape.rank);
            Tag ti = a >= 0 ? tag(d, ops[i], a) : TAG_NONE;
            if (op->kind == IR_OP_DIV && i == 0 && ti == TAG_CAUSAL)
                zero_kept = true;
            if (ti == TAG_NONE || ti == t)
                continue;
            if (t == TAG_NONE) {
                t = ti;
            } else if ((t == TAG_LOCAL) != (ti == TAG_LOCAL) || t == TAG_LOCAL) {
                return fail(d, "'%s' combines the new tokens with all cached ones",
                            ir_op_info[op->kind].name);
            } else {   // FULL with CAUSAL
                t = TAG_CAUSAL;
            }
        }
        rt[k] = t == TAG_CAUSAL && !zero_kept ? TAG_FULL : t;
    }
    return true;
}

/* a [.., M, K] @ b [.., K, N]. The contracted axis must be a causal key axis (or no token
 * axis); a right operand whose token axis a LOCAL query meets is made FULL. */
static bool rule_matmul(Dec *d, const IrOp *op, IrValue **ops, uint8_t *rt)
{
    IrValue *a = ops[0];
    int ra = a->shape.rank, rb = ops[1]->shape.rank, r = op->results[0]->shape.rank;
    Tag ka = tag(d, a, ra - 1);
    if (ka == TAG_LOCAL)
        return fail(d, "'matmul' sums over the new tokens (a reduction over the token axis)");
    if (ka == TAG_FULL)
        return fail(d, "'matmul' sums over all tokens without a causal mask: the model is "
                    "not causal");
    bool any_local = tag(d, a, ra - 2) == TAG_LOCAL;
    for (int k = 0; k < ra - 2; k++)
        any_local = any_local || tag(d, a, k) == TAG_LOCAL;
    Tag kb = tag(d, ops[1], rb - 2), nb = tag(d, ops[1], rb - 1);
    if ((ka == TAG_CAUSAL && kb == TAG_LOCAL) || (nb == TAG_LOCAL && any_local)) {
        if (!(ops[1] = make_full(d, ops[1])))
            return false;
        kb = tag(d, ops[1], rb - 2);
        nb = tag(d, ops[1], rb - 1);
    }
    if ((ka == TAG_NONE) != (kb == TAG_NONE))
        return fail(d, "'matmul' contracts a token axis with another axis");
    for (int k = 0; k < r - 2; k++) {   // batch axes: as elementwise, without CAUSAL
        int ia = k - (r - ra), ib = k - (r - rb);
        Tag ta = ia >= 0 ? tag(d, a, ia) : TAG_NONE, tb = ib >= 0 ? tag(d, ops[1], ib) : TAG_NONE;
        if (ta != TAG_NONE && tb != TAG_NONE && ta != tb)
            return fail(d, "'matmul' batches the new tokens with all cached ones");
        rt[k] = ta != TAG_NONE ? ta : tb;
    }
    rt[r - 2] = tag(d, a, ra - 2);
    rt[r - 1] = nb == TAG_CAUSAL ? TAG_FULL : nb;
    return true;
}

/* softmax over a FULL key axis needs a causal mask with the new tokens as queries; the
 * mask then sees query i at position P + i (qoff). */
static bool rule_softmax(Dec *d, IrOp *nop_attrs_holder, const IrOp *op, IrValue **ops,
                         uint8_t *rt)
{
    IrValue *x = ops[0];
    int r = x->shape.rank, ax = (int)op->attrs.axis;
    Tag key = tag(d, x, ax);
    for (int k = 0; k < r; k++)
        rt[k] = tag(d, x, k) == TAG_CAUSAL ? TAG_FULL : tag(d, x, k);
    if (key == TAG_NONE) {
        if (op->attrs.mask != IR_MASK_NONE && r >= 2 && tag(d, x, r - 2) != TAG_NONE)
            return fail(d, "'softmax' masks keys that are not tokens for token queries");
        return true;
    }
    if (key == TAG_LOCAL)
        return fail(d, "'softmax' normalises over the new tokens only (a reduction over the "
                    "token axis)");
    if (op->attrs.mask != IR_MASK_CAUSAL && op->attrs.mask != IR_MASK_CAUSAL_BAND)
        return fail(d, "attention over the token axis without a causal mask: the model is "
                    "not causal");
    if (ax != r - 1 || tag(d, x, r - 2) != TAG_LOCAL)
        return fail(d, "a causal mask whose queries are not the new tokens");
    rt[ax] = TAG_CAUSAL;
    nop_attrs_holder->attrs.qoff = d->dP;
    return true;
}

/* sum over a CAUSAL key axis (what a hand-written softmax does); any other reduction over
 * a token axis has no @step. */
static bool rule_reduce(Dec *d, const IrOp *op, IrValue **ops, uint8_t *rt)
{
    IrValue *x = ops[0];
    int ax = (int)op->attrs.axis;
    Tag t = tag(d, x, ax);
    if (t != TAG_NONE && !(t == TAG_CAUSAL && op->kind == IR_OP_SUM))
        return fail(d, "'%s' reduces over the token axis", ir_op_info[op->kind].name);
    for (int k = 0, j = 0; k < x->shape.rank; k++) {
        Tag tk = tag(d, x, k) == TAG_CAUSAL ? TAG_FULL : tag(d, x, k);
        if (k != ax)
            rt[j++] = tk;
        else if (op->attrs.keepdim)
            rt[j++] = TAG_NONE;
    }
    return true;
}

static bool rule_transpose(Dec *d, const IrOp *op, IrValue **ops, uint8_t *rt)
{
    for (int k = 0; k < ops[0]->shape.rank; k++)
        rt[k] = tag(d, ops[0], op->attrs.perm[k]);
    return true;
}

/* The product of dims [0, upto) when all are constant, else -1. */
static int64_t lead_product(const Shape *s, int upto)
{
    int64_t p = 1;
    for (int k = 0; k < upto; k++) {
        if (!dim_is_const(s->dims[k]))
            return -1;
        p *= s->dims[k].c;
    }
    return p;
}

/* A reshape keeps a token axis only when as many elements precede it on both sides. */
static bool rule_reshape(Dec *d, const IrOp *op, IrValue **ops, uint8_t *rt)
{
    const IrValue *x = ops[0];
    const Shape *ys = &op->results[0]->shape;
    int xa = -1, ya = -1, nx = 0, ny = 0;
    for (int k = 0; k < x->shape.rank; k++)
        if (tag(d, x, k) != TAG_NONE)
            xa = k, nx++;
    for (int k = 0; k < ys->rank; k++) {
        rt[k] = TAG_NONE;
        if (is_T(d, ys->dims[k]))
            ya = k, ny++;
    }
    if (nx == 0 && ny == 0)
        return true;
    int64_t px = nx == 1 ? lead_product(&x->shape, xa) : -1;
    if (nx != 1 || ny != 1 || px < 0 || px != lead_product(ys, ya))
        return fail(d, "'reshape' mixes the token axis with other axes");
    rt[ya] = tag(d, x, xa);
    return true;
}

/* slice along a token axis: only the whole axis; a [c, c + T] slice of an axis without
 * tokens (positional embeddings wpe[0:T]) becomes [c + P, c + P + T]. */
static bool rule_slice(Dec *d, IrOp *nop, const IrOp *op, IrValue **ops, uint8_t *rt)
{
    IrValue *x = ops[0];
    int ax = (int)op->attrs.axis;
    for (int k = 0; k < x->shape.rank; k++)
        rt[k] = tag(d, x, k);
    Dim s = op->attrs.start, e = op->attrs.end, len;
    if (rt[ax] != TAG_NONE) {
        if (dim_is_const(s) && s.c == 0 && is_T(d, e) && rt[ax] == TAG_LOCAL)
            return true;
        return fail(d, "'slice' picks some tokens out of the token axis");
    }
    if (dim_is_const(s) && dim_is_const(e))
        return true;
    if (!dim_is_const(s) || !dim_sub(e, s, &len) || !is_T(d, len))
        return fail(d, "'slice' has a range over T other than [c, c + T]");
    if (!dim_add(s, d->dP, &nop->attrs.start) || !dim_add(e, d->dP, &nop->attrs.end))
        return fail(d, "'slice' range cannot be shifted by P");
    rt[ax] = TAG_LOCAL;
    return true;
}

/* The axis attribute of ops that work along one axis of their first operand, or -1. */
static int along_axis(const IrOp *op)
{
    switch (op->kind) {
    case IR_OP_CUMSUM: case IR_OP_TOPK: case IR_OP_CONCAT: case IR_OP_SPLIT:
    case IR_OP_INDEX: case IR_OP_GATHER:
        return (int)op->attrs.axis;
    case IR_OP_LAYERNORM: case IR_OP_RMSNORM: case IR_OP_SWIGLU:
        return op->operands[0]->shape.rank - 1;
    default:
        return -1;
    }
}

/* Row-wise ops: every token axis of every operand is LOCAL and none is the op's own axis;
 * every T axis of the results is LOCAL. */
static bool rule_rowwise(Dec *d, const IrOp *op, IrValue **ops, uint8_t (*rt)[IR_MAX_RANK])
{
    const char *name = ir_op_info[op->kind].name;
    switch (op->kind) {
    case IR_OP_MOE: return fail(d, "'moe' routes tokens to experts");
    case IR_OP_SCATTER_ADD: case IR_OP_BAND_SCORES: case IR_OP_BAND_APPLY: case IR_OP_CALL:
    case IR_OP_CACHE:
        for (uint32_t i = 0; i < op->nops; i++)
            if (count_tagged(d, ops[i]))
                return fail(d, "'%s' is not supported on the token axis by @step yet", name);
        break;
    case IR_OP_ARANGE:
        if (op->results[0]->shape.rank && is_T(d, op->results[0]->shape.dims[0]))
            return fail(d, "'arange' over T would restart positions at 0 in every step");
        break;
    default:
        break;
    }
    int ax = along_axis(op);
    for (uint32_t i = 0; i < op->nops; i++) {
        if (count_tagged(d, ops[i]) != count_tag(d, ops[i], TAG_LOCAL))
            return fail(d, "'%s' applied to all cached tokens", name);
        bool own = i == 0 || op->kind == IR_OP_CONCAT;
        if (own && ax >= 0 && ax < ops[i]->shape.rank && tag(d, ops[i], ax) != TAG_NONE)
            return fail(d, "'%s' works along the token axis", name);
        if (op->kind == IR_OP_GATHER && i == 0 && count_tagged(d, ops[0]))
            return fail(d, "'gather' reads rows of a token-indexed table");
    }
    for (uint32_t j = 0; j < op->nres; j++)
        for (int k = 0; k < op->results[j]->shape.rank; k++)
            rt[j][k] = is_T(d, op->results[j]->shape.dims[k]) ? TAG_LOCAL : TAG_NONE;
    return true;
}

/* ---- cloning ---- */

static bool clone_region(Dec *d, const IrRegion *from, IrRegion *to);

static IrValue *mapped(Dec *d, const IrValue *v)
{
    IrValue *n = v && v->id < d->nmap ? d->map[v->id] : NULL;
    if (!n)
        fail(d, "internal: a value is used before @step defines it");
    return n;
}

static void map_value(Dec *d, const IrValue *from, IrValue *to)
{
    to->name = from->name;
    if (from->id < d->nmap)
        d->map[from->id] = to;
}

/* Every result axis of dim T carries a tag and no other does; a token-indexed result
 * comes from a token-indexed operand; only views and the cache hold FULL values alone. */
static bool check_results(Dec *d, const IrOp *op, IrValue **ops, uint8_t (*rt)[IR_MAX_RANK])
{
    bool in_tagged = false, out_local = false, out_full = false;
    for (uint32_t i = 0; i < op->nops; i++)
        in_tagged = in_tagged || count_tagged(d, ops[i]);
    for (uint32_t j = 0; j < op->nres; j++) {
        const Shape *s = &op->results[j]->shape;
        for (int k = 0; k < s->rank; k++) {
            if (is_T(d, s->dims[k]) != (rt[j][k] != TAG_NONE))
                return fail(d, "'%s' moves the token axis", ir_op_info[op->kind].name);
            out_local = out_local || rt[j][k] == TAG_LOCAL;
            out_full = out_full || rt[j][k] == TAG_FULL || rt[j][k] == TAG_CAUSAL;
        }
    }
    bool view = op->kind == IR_OP_TRANSPOSE || op->kind == IR_OP_RESHAPE;
    if (op->kind != IR_OP_LOOP && in_tagged && op->nres && !out_local && !(view && out_full))
        return fail(d, "'%s' turns the token axis into one value for all tokens",
                    ir_op_info[op->kind].name);
    return true;
}

/* The tags of op's results; may replace operands in ops (make_full) and set attributes
 * of the @step op `nop` (slice range, softmax qoff). */
static bool apply_rule(Dec *d, IrOp *nop, const IrOp *op, IrValue **ops,
                       uint8_t (*rt)[IR_MAX_RANK])
{
    if (ir_op_info[op->kind].traits & IRT_ELEMWISE)
        return rule_elemwise(d, op, ops, rt[0]);
    switch (op->kind) {
    case IR_OP_MATMUL:    return rule_matmul(d, op, ops, rt[0]);
    case IR_OP_SOFTMAX:   return rule_softmax(d, nop, op, ops, rt[0]);
    case IR_OP_SUM: case IR_OP_MEAN: case IR_OP_REDMAX: case IR_OP_REDMIN:
        return rule_reduce(d, op, ops, rt[0]);
    case IR_OP_TRANSPOSE: return rule_transpose(d, op, ops, rt[0]);
    case IR_OP_RESHAPE:   return rule_reshape(d, op, ops, rt[0]);
    case IR_OP_SLICE:     return rule_slice(d, nop, op, ops, rt[0]);
    default:              return rule_rowwise(d, op, ops, rt);
    }
}

/* A loop: carried values keep their tags through the body. */
static bool clone_loop(Dec *d, const IrOp *op, IrOp *nop)
{
    if (op->attrs.has_until)
        return fail(d, "the loop halts per token ('until')");
    if (!dim_is_const(op->attrs.trips))
        return fail(d, "a loop runs a run-time number of steps");
    IrRegion *body = ir_region_new(d->m, d->step, nop);
    const IrRegion *ob = op->body;
    IrValue *i = ir_region_add_arg(d->m, body, ob->args[0]->dtype, &ob->args[0]->shape,
                                   ob->args[0]->name);
    map_value(d, ob->args[0], i);
    ensure_tables(d);
    for (uint32_t k = 0; k < op->nops; k++) {
        IrValue *a = ir_region_add_arg(d->m, body, ob->args[k + 1]->dtype, NULL, NULL);
        set_shape(d, a, &ob->args[k + 1]->shape, d->tags[nop->operands[k]->id]);
        map_value(d, ob->args[k + 1], a);
        set_shape(d, nop->results[k], &op->results[k]->shape, d->tags[nop->operands[k]->id]);
        nop->results[k]->dtype = op->results[k]->dtype;
    }
    if (!clone_region(d, ob, body))
        return false;
    const IrOp *y = body->last;
    for (uint32_t k = 0; k < op->nops; k++)
        if (memcmp(d->tags[y->operands[k]->id], d->tags[nop->results[k]->id], IR_MAX_RANK))
            return fail(d, "a loop-carried value changes its token axis");
    return true;
}

static bool clone_op(Dec *d, const IrOp *op, IrRegion *to)
{
    for (uint32_t j = 0; j < op->nres; j++)
        if (!check_shape(d, op, &op->results[j]->shape))
            return false;
    IrValue *small[8], **ops = op->nops <= 8 ? small : calloc(op->nops, sizeof *ops);
    if (!ops) {
        fputs("tfxc: fatal: out of memory\n", stderr);
        exit(3);
    }
    bool ok = true;
    for (uint32_t i = 0; i < op->nops && ok; i++)
        ok = (ops[i] = mapped(d, op->operands[i])) != NULL;
    if (ok && op->kind == IR_OP_RETURN)
        for (uint32_t i = 0; i < op->nops && ok; i++)
            if (count_tagged(d, ops[i]) != count_tag(d, ops[i], TAG_LOCAL))
                ok = fail(d, "an output holds all cached tokens");
    uint8_t (*rt)[IR_MAX_RANK] = calloc(op->nres + 1, sizeof *rt);
    if (!rt) {
        fputs("tfxc: fatal: out of memory\n", stderr);
        exit(3);
    }
    IrOp holder = { .attrs = op->attrs };   // attributes the rule changes
    if (ok && op->kind != IR_OP_LOOP && op->kind != IR_OP_YIELD && op->kind != IR_OP_RETURN)
        ok = apply_rule(d, &holder, op, ops, rt) && check_results(d, op, ops, rt);
    if (ok) {
        IrOp *nop = ir_op_append(d->m, to, op->kind, ops, op->nops, op->nres, op->span);
        nop->attrs = holder.attrs;
        for (uint32_t j = 0; j < op->nres; j++)
            map_value(d, op->results[j], nop->results[j]);
        if (op->kind == IR_OP_LOOP) {
            ok = clone_loop(d, op, nop);
        } else {
            for (uint32_t j = 0; j < op->nres; j++) {
                nop->results[j]->dtype = op->results[j]->dtype;
                set_shape(d, nop->results[j], &op->results[j]->shape, rt[j]);
            }
        }
    }
    free(rt);
    if (ops != small)
        free(ops);
    return ok;
}

static bool clone_region(Dec *d, const IrRegion *from, IrRegion *to)
{
    for (const IrOp *op = from->first; op; op = op->next)
        if (!clone_op(d, op, to))
            return false;
    return true;
}

/* The token symbol: the one symbol the inputs' dims name. (Its bound, if any, caps the
 * cache's capacity at run time.) */
static bool find_token_sym(Dec *d, const IrFunc *main)
{
    bool found = false;
    for (uint32_t i = 0; i < main->body->nargs; i++) {
        const Shape *s = &main->body->args[i]->shape;
        for (int k = 0; k < s->rank; k++) {
            Dim x = s->dims[k];
            if (dim_is_const(x))
                continue;
            if (x.nterms != 1 || x.coef[0] != 1 || x.c != 0 || x.div != 1 ||
                (found && x.sym[0] != d->T))
                return fail(d, "the inputs have more than one run-time dimension");
            d->T = x.sym[0];
            found = true;
        }
    }
    if (!found)
        return fail(d, "no input has a token axis");
    return true;
}

static bool build_step(Dec *d, const IrFunc *main)
{
    IrModule *m = d->m;
    bool taken = false;
    for (uint32_t i = 0; i < m->nsyms; i++)
        taken = taken || strcmp(m->syms[i].name, "P") == 0;
    m->past_sym = ir_add_sym(m, taken ? "P.past" : "P");
    d->dT = dim_sym(d->T);
    d->dP = dim_sym(m->past_sym);
    if (!dim_add(d->dP, d->dT, &d->dfull))
        return fail(d, "internal: P + T is not a dim");
    d->step = ir_add_func(m, "step", main->span);
    for (uint32_t i = 0; i < main->body->nargs; i++) {
        const IrValue *a = main->body->args[i];
        if (!check_shape(d, NULL, &a->shape))
            return false;
        IrValue *n = ir_region_add_arg(m, d->step->body, a->dtype, NULL, a->name);
        uint8_t tags[IR_MAX_RANK] = { 0 };
        for (int k = 0; k < a->shape.rank; k++)
            tags[k] = is_T(d, a->shape.dims[k]) ? TAG_LOCAL : TAG_NONE;
        set_shape(d, n, &a->shape, tags);
        map_value(d, a, n);
    }
    return clone_region(d, main->body, d->step->body);
}

/* Deletes pure ops whose results are unused: the LOCAL views of values the attention now
 * reads through the cache. Returns whether anything was deleted. */
static bool sweep_dead(IrRegion *r)
{
    bool changed = false;
    for (IrOp *op = r->last, *prev; op; op = prev) {
        prev = op->prev;
        if (op->body) {
            changed = sweep_dead(op->body) || changed;
            continue;
        }
        bool used = !(ir_op_info[op->kind].traits & IRT_PURE);
        for (uint32_t j = 0; j < op->nres && !used; j++)
            used = op->results[j]->nuses > 0;
        if (!used) {
            ir_op_erase(op);
            changed = true;
        }
    }
    return changed;
}

/* Builds @step from @main, or records in m->no_step why it cannot. Returns whether the
 * module changed. */
bool pass_decode(IrModule *m, PassCtx *pc)
{
    (void)pc;
    if (m->nfuncs == 0 || m->step)
        return false;
    const IrFunc *main = m->funcs[0];
    Dec d = { .m = m, .nmap = m->next_value_id };
    d.map = calloc(d.nmap + 1, sizeof *d.map);
    if (!d.map) {
        fputs("tfxc: fatal: out of memory\n", stderr);
        exit(3);
    }
    ensure_tables(&d);
    uint32_t nsyms = m->nsyms, nfuncs = m->nfuncs;
    bool ok = find_token_sym(&d, main) && build_step(&d, main);
    if (ok) {
        m->step = d.step;
        while (sweep_dead(d.step->body))
            ;
    } else {   // drop what was built: nothing in @main refers to it
        m->nsyms = nsyms;
        m->nfuncs = nfuncs;
        m->no_step = d.why ? d.why : "the model could not be proved causal";
    }
    free(d.map);
    free(d.tags);
    free(d.full);
    return ok;
}
