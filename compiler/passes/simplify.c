/* simplify.c - pass "simplify": constant folding, algebraic identities, common
 * subexpression elimination and dead code elimination, repeated to a fixed point.
 *   requires:   a verified module (shapes inferred).
 *   guarantees: no elementwise op left with all-constant operands that could be folded
 *               (f32/i32 results; see docs/ir.md), no identity op (x*1, x+0, x-0, x/1,
 *               same-type cast/reshape/broadcast/slice, identity transpose), no chain of
 *               two transposes or two reshapes, no two equal pure ops where one
 *               dominates the other, no pure op (or side-effect-free loop/moe) whose
 *               results are unused. A second run changes nothing.
 *   preserves:  spans; a user name moves to the value that replaces a named one.
 *   may delete: any pure op, and loops/moes whose results are unused and whose bodies
 *               hold no call.
 * One forward walk per function rewrites operands through a replacement map (so each
 * replacement costs O(1)) while a scoped hash table holds the pure ops that dominate the
 * current point; a backward walk then deletes what became dead. */
#include "pass.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct CseEntry {
    IrOp    *op;
    uint32_t hash;
    uint32_t next;   /* index + 1 of the next entry in the bucket, 0 = none */
} CseEntry;

typedef struct Simplifier {
    IrModule *m;
    Arena     scratch;
    IrValue **repl;      /* by IrValue.id: the value that replaces it, or NULL */
    uint32_t  nrepl;
    uint32_t *heads;     /* CSE buckets: index + 1 of the newest entry, 0 = empty */
    uint32_t  nbuckets;  /* a power of two */
    CseEntry *entries;   /* a stack: leaving a region pops what it pushed */
    uint32_t  nentries, capentries;
    bool      changed;   /* by the current walk */
} Simplifier;

static bool has_trait(const IrOp *op, unsigned t)
{
    return (ir_op_info[op->kind].traits & t) != 0;
}

static bool same_type(const IrValue *a, const IrValue *b)
{
    return a->dtype == b->dtype && shape_eq(&a->shape, &b->shape);
}

/* ------------------------------------------------------- replacement ---- */

static IrValue *current(const Simplifier *s, IrValue *v)
{
    while (v && v->id < s->nrepl && s->repl[v->id])
        v = s->repl[v->id];
    return v;
}

/* Records that every later use of `from` reads `to` instead. */
static void replace_value(Simplifier *s, IrValue *from, IrValue *to)
{
    if (from->id >= s->nrepl) {
        uint32_t n = 2 * s->m->next_value_id;
        s->repl = arena_grow(&s->scratch, s->repl, s->nrepl * sizeof *s->repl, n * sizeof *s->repl);
        s->nrepl = n;
    }
    s->repl[from->id] = to;
    if (!to->name)
        to->name = from->name;
    s->changed = true;
}

/* Points op's operands at their replacements. Uses come after definitions in walk
 * order, so every use of a replaced value is rewritten before the walk ends. */
static void rewrite_operands(Simplifier *s, IrOp *op)
{
    for (uint32_t i = 0; i < op->nops; i++) {
        IrValue *v = current(s, op->operands[i]);
        if (v != op->operands[i])
            ir_op_set_operand(op, i, v);
    }
}

/* --------------------------------------------------------------- CSE ---- */

static bool attrs_equal(const IrAttrs *x, const IrAttrs *y, unsigned bits)
{
    if ((bits & (IRA_VALUE | IRA_EPS)) && memcmp(&x->f, &y->f, sizeof x->f) != 0)
        return false;  // bitwise: -0.0 and 0.0 differ, a NaN equals itself
    if ((bits & IRA_WEIGHT) && x->weight != y->weight)
        return false;
    if ((bits & IRA_K) && (x->k != y->k || !dim_eq(x->kdim, y->kdim)))
        return false;
    if ((bits & IRA_RENORM) && x->renorm != y->renorm)
        return false;
    if ((bits & IRA_AXIS) && x->axis != y->axis)
        return false;
    if ((bits & IRA_KEEPDIM) && x->keepdim != y->keepdim)
        return false;
    if ((bits & IRA_MASK) && (x->mask != y->mask || x->band != y->band))
        return false;
    if ((bits & IRA_PERM) && memcmp(x->perm, y->perm, sizeof x->perm) != 0)
        return false;
    if ((bits & IRA_RANGE) && (!dim_eq(x->start, y->start) || !dim_eq(x->end, y->end)))
        return false;
    return true;
}

/* Whether b computes exactly what a does: same kind, operand values, result types
 * and the attributes the op table gives the kind. */
static bool same_op(const IrOp *a, const IrOp *b)
{
    if (a->kind != b->kind || a->nops != b->nops || a->nres != b->nres)
        return false;
    for (uint32_t i = 0; i < a->nops; i++)
        if (a->operands[i] != b->operands[i])
            return false;
    for (uint32_t i = 0; i < a->nres; i++)
        if (!same_type(a->results[i], b->results[i]))
            return false;
    return attrs_equal(&a->attrs, &b->attrs, ir_op_info[a->kind].attrs);
}

/* A coarse hash (kind, operands, a few attributes); same_op decides. */
static uint32_t op_hash(const IrOp *op)
{
    uint64_t bits;
    memcpy(&bits, &op->attrs.f, sizeof bits);
    uint32_t h = 2166136261u ^ (uint32_t)op->kind;
    uint64_t parts[] = { bits, (uint64_t)op->attrs.axis, op->attrs.weight, op->nops };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        h = (h ^ (uint32_t)(parts[i] ^ parts[i] >> 32)) * 16777619u;
    for (uint32_t i = 0; i < op->nops; i++)
        h = (h ^ op->operands[i]->id) * 16777619u;
    return h;
}

/* Pure ops with results and no body are merged, folded or deleted by this pass. */
static bool cse_candidate(const IrOp *op)
{
    return has_trait(op, IRT_PURE) && op->nres > 0 && !op->body;
}

static IrOp *cse_find(const Simplifier *s, const IrOp *op, uint32_t h)
{
    for (uint32_t e = s->heads[h & (s->nbuckets - 1)]; e; e = s->entries[e - 1].next)
        if (s->entries[e - 1].hash == h && same_op(s->entries[e - 1].op, op))
            return s->entries[e - 1].op;
    return NULL;
}

static void cse_push(Simplifier *s, IrOp *op, uint32_t h)
{
    if (s->nentries == s->capentries) {
        uint32_t cap = s->capentries ? 2 * s->capentries : 256;
        s->entries = arena_grow(&s->scratch, s->entries, s->nentries * sizeof *s->entries,
                                cap * sizeof *s->entries);
        s->capentries = cap;
    }
    uint32_t *head = &s->heads[h & (s->nbuckets - 1)];
    s->entries[s->nentries] = (CseEntry){ op, h, *head };
    *head = ++s->nentries;
}

/* Pops entries back to `mark`; each popped entry is the head of its bucket. */
static void cse_pop_to(Simplifier *s, uint32_t mark)
{
    while (s->nentries > mark) {
        const CseEntry *e = &s->entries[--s->nentries];
        s->heads[e->hash & (s->nbuckets - 1)] = e->next;
    }
}

/* Replaces op by an equal dominating op, or makes op available to later ones. */
static void cse(Simplifier *s, IrOp *op)
{
    uint32_t h = op_hash(op);
    IrOp *same = cse_find(s, op, h);
    if (!same) {
        cse_push(s, op, h);
        return;
    }
    for (uint32_t i = 0; i < op->nres; i++)
        replace_value(s, op->results[i], same->results[i]);
}

/* ----------------------------------------------------------- folding ---- */

static bool const_operand(const IrValue *v, double *out)
{
    if (!v->def || v->def->kind != IR_OP_CONST)
        return false;
    *out = v->def->attrs.f;
    return true;
}

static bool fold_binary(IrOpKind k, double a, double b, double *out)
{
    switch (k) {
    case IR_OP_ADD: *out = a + b; return true;
    case IR_OP_SUB: *out = a - b; return true;
    case IR_OP_MUL: *out = a * b; return true;
    case IR_OP_DIV: *out = a / b; return true;
    case IR_OP_POW: *out = pow(a, b); return true;
    case IR_OP_MAX: *out = a > b ? a : b; return true;
    case IR_OP_MIN: *out = a < b ? a : b; return true;
    case IR_OP_LT:  *out = a < b; return true;
    case IR_OP_LE:  *out = a <= b; return true;
    case IR_OP_GT:  *out = a > b; return true;
    case IR_OP_GE:  *out = a >= b; return true;
    case IR_OP_EQ:  *out = a == b; return true;
    case IR_OP_NE:  *out = a != b; return true;
    default:        return false;  // mod: left to the backend's definition
    }
}

static bool fold_unary(IrOpKind k, double a, double *out)
{
    switch (k) {
    case IR_OP_NEG:       *out = -a; return true;
    case IR_OP_EXP:       *out = exp(a); return true;
    case IR_OP_LOG:       *out = log(a); return true;
    case IR_OP_SQRT:      *out = sqrt(a); return true;
    case IR_OP_RSQRT:     *out = 1.0 / sqrt(a); return true;
    case IR_OP_TANH:      *out = tanh(a); return true;
    case IR_OP_ABS:       *out = fabs(a); return true;
    case IR_OP_RELU:      *out = a > 0 ? a : 0; return true;
    case IR_OP_GELU:      *out = 0.5 * a * (1 + erf(a / sqrt(2.0))); return true;
    case IR_OP_GELU_TANH:
        *out = 0.5 * a * (1 + tanh(sqrt(2.0 / 3.14159265358979323846) * (a + 0.044715 * a * a * a)));
        return true;
    case IR_OP_SILU:      *out = a / (1 + exp(-a)); return true;
    case IR_OP_SIGMOID:   *out = 1 / (1 + exp(-a)); return true;
    case IR_OP_ELU:       *out = a > 0 ? a : expm1(a); return true;
    case IR_OP_CAST:      *out = a; return true;
    default:              return false;
    }
}

/* Rounds a folded value to the result dtype; false when it cannot be stored exactly
 * as the backend would compute it (non-finite, out of i32 range, f16/bf16). */
static bool round_to(DType dt, double *v)
{
    if (!isfinite(*v))
        return false;
    if (dt == DT_F32) {
        float f = (float)*v;
        *v = f;
        return isfinite(f);
    }
    if (dt == DT_I32) {
        *v = trunc(*v);  // cast to i32 truncates toward zero
        return *v >= INT32_MIN && *v <= INT32_MAX;
    }
    return false;
}

/* Folds an elementwise op whose operands are all constants, in double from operands
 * rounded to their own dtype, then rounded once to the result dtype. */
static bool fold_value(const IrOp *op, double *out)
{
    double in[3];
    for (uint32_t i = 0; i < op->nops; i++) {
        if (!const_operand(op->operands[i], &in[i]) || isnan(in[i]))
            return false;
        if (op->operands[i]->dtype == DT_F32)
            in[i] = (float)in[i];
    }
    DType dt = op->results[0]->dtype;
    if (dt == DT_I32 && (op->kind == IR_OP_DIV || op->kind == IR_OP_POW))
        return false;  // integer division and power: the backend's definition decides
    if (op->kind == IR_OP_WHERE)
        *out = in[0] != 0 ? in[1] : in[2];
    else if (op->nops == 2 ? !fold_binary(op->kind, in[0], in[1], out)
                           : !fold_unary(op->kind, in[0], out))
        return false;
    return round_to(dt, out);
}

/* Replaces an all-constant elementwise op by a const of its result type. */
static bool try_fold(Simplifier *s, IrOp *op)
{
    double v;
    if (!has_trait(op, IRT_ELEMWISE) || !fold_value(op, &v))
        return false;
    IrOp *c = ir_op_insert_before(s->m, op->parent, op, IR_OP_CONST, NULL, 0, 1, op->span);
    c->attrs.f = v;
    c->results[0]->dtype = op->results[0]->dtype;
    c->results[0]->shape = op->results[0]->shape;
    uint32_t h = op_hash(c);
    IrOp *same = cse_find(s, c, h);
    if (same) {
        ir_op_erase(c);
        c = same;
    } else {
        cse_push(s, c, h);
    }
    replace_value(s, op->results[0], c->results[0]);
    return true;
}

/* ------------------------------------------------------- identities ---- */

static bool is_fill(const IrValue *v, double want)
{
    double f;
    return const_operand(v, &f) && f == want;
}

/* The operand an arithmetic identity reduces op to, or NULL. */
static IrValue *arith_identity(const IrOp *op)
{
    IrValue *a = op->operands[0], *b = op->nops > 1 ? op->operands[1] : NULL;
    const IrValue *r = op->results[0];
    switch (op->kind) {
    case IR_OP_ADD:
        if (is_fill(b, 0) && same_type(a, r))
            return a;
        return is_fill(a, 0) && same_type(b, r) ? b : NULL;
    case IR_OP_MUL:
        if (is_fill(b, 1) && same_type(a, r))
            return a;
        return is_fill(a, 1) && same_type(b, r) ? b : NULL;
    case IR_OP_SUB:
        return is_fill(b, 0) && same_type(a, r) ? a : NULL;
    case IR_OP_DIV:
        return is_fill(b, 1) && same_type(a, r) ? a : NULL;
    case IR_OP_WHERE: {
        double c;
        if (!const_operand(a, &c))
            return NULL;
        IrValue *pick = c != 0 ? b : op->operands[2];
        return same_type(pick, r) ? pick : NULL;
    }
    default:
        return NULL;
    }
}

static bool is_identity_perm(const IrOp *op)
{
    for (int i = 0; i < op->operands[0]->shape.rank; i++)
        if (op->attrs.perm[i] != i)
            return false;
    return true;
}

/* The operand a data-movement or cast op reduces to when it changes nothing. */
static IrValue *move_identity(const IrOp *op)
{
    IrValue *x = op->operands[0];
    if (!same_type(x, op->results[0]))
        return NULL;
    switch (op->kind) {
    case IR_OP_CAST: case IR_OP_RESHAPE: case IR_OP_BROADCAST: case IR_OP_SLICE:
        return x;
    case IR_OP_TRANSPOSE:
        return is_identity_perm(op) ? x : NULL;
    default:
        return NULL;
    }
}

/* Whether transpose op swaps its last two axes and keeps the others in place. */
static bool swaps_last_two(const IrOp *op)
{
    int r = op->results[0]->shape.rank;
    if (r < 2 || op->attrs.perm[r - 2] != r - 1 || op->attrs.perm[r - 1] != r - 2)
        return false;
    for (int i = 0; i < r - 2; i++)
        if (op->attrs.perm[i] != i)
            return false;
    return true;
}

/* transpose(transpose(x, p), q) -> transpose(x, p o q); reshape(reshape(x)) ->
 * reshape(x). The inner op dies if nothing else reads it. Not when q alone swaps the last
 * two axes and p does not: `k^T` of attention's heads stays a swap, which the GEMM and
 * the flash-attention kernel read in place (docs/codegen.md), where the combined
 * permutation would be one more copy. */
static void combine_chain(Simplifier *s, IrOp *op)
{
    if (op->kind != IR_OP_TRANSPOSE && op->kind != IR_OP_RESHAPE)
        return;
    const IrOp *inner = op->operands[0]->def;
    if (!inner || inner->kind != op->kind)
        return;
    if (op->kind == IR_OP_TRANSPOSE && swaps_last_two(op) && !swaps_last_two(inner))
        return;
    if (op->kind == IR_OP_TRANSPOSE) {
        uint8_t perm[IR_MAX_RANK];
        for (int i = 0; i < op->results[0]->shape.rank; i++)
            perm[i] = inner->attrs.perm[op->attrs.perm[i]];
        memcpy(op->attrs.perm, perm, op->results[0]->shape.rank);
    }
    ir_op_set_operand(op, 0, inner->operands[0]);
    s->changed = true;
}

/* ------------------------------------------------------------- walk ---- */

static void simplify_op(Simplifier *s, IrOp *op)
{
    if (!cse_candidate(op) || try_fold(s, op))
        return;
    combine_chain(s, op);
    IrValue *v = op->nops > 0 ? arith_identity(op) : NULL;
    if (!v && op->nops == 1)
        v = move_identity(op);
    if (v)
        replace_value(s, op->results[0], v);
    else
        cse(s, op);
}

/* Forward walk of r: operands first, then the op's body (with the table of what
 * dominates it), then the op. Entries pushed inside r are popped on the way out. */
static void simplify_region(Simplifier *s, IrRegion *r)
{
    uint32_t mark = s->nentries;
    for (IrOp *op = r->first, *next; op; op = next) {
        next = op->next;
        rewrite_operands(s, op);
        if (op->body)
            simplify_region(s, op->body);
        simplify_op(s, op);
    }
    cse_pop_to(s, mark);
}

/* --------------------------------------------------------------- DCE ---- */

/* Whether the region holds an op with side effects (a call), at any depth. */
static bool has_side_effects(const IrRegion *r)
{
    for (const IrOp *op = r->first; op; op = op->next) {
        if (op->body && has_side_effects(op->body))
            return true;
        if (!has_trait(op, IRT_PURE | IRT_TERMINATOR | IRT_REGION))
            return true;
    }
    return false;
}

/* Unused pure ops die; so do unused loops and moes whose bodies call nothing. */
static bool is_dead(const IrOp *op)
{
    for (uint32_t i = 0; i < op->nres; i++)
        if (op->results[i]->nuses > 0)
            return false;
    if (has_trait(op, IRT_PURE))
        return op->nres > 0;
    return op->body && !has_side_effects(op->body);
}

/* Deletes dead ops last to first, so a chain dies in one sweep. */
static bool dce_region(IrRegion *r)
{
    bool changed = false;
    for (IrOp *op = r->last, *prev; op; op = prev) {
        prev = op->prev;
        if (op->body)
            changed |= dce_region(op->body);
        if (is_dead(op)) {
            ir_op_erase(op);
            changed = true;
        }
    }
    return changed;
}

/* ------------------------------------------------------------- pass ---- */

/* One forward walk over f with a fresh table and map; returns whether it changed f. */
static bool walk_func(Simplifier *s, IrFunc *f)
{
    s->changed = false;
    s->nentries = 0;
    memset(s->heads, 0, s->nbuckets * sizeof *s->heads);
    memset(s->repl, 0, s->nrepl * sizeof *s->repl);
    simplify_region(s, f->body);
    return s->changed;
}

/* Simplifies each function to a fixed point: walk (fold, identities, CSE) then DCE,
 * until neither changes anything. Buckets and map are sized from the value count. */
bool pass_simplify(IrModule *m, PassCtx *pc)
{
    (void)pc;
    Simplifier s = { .m = m, .nbuckets = 1024 };
    arena_init(&s.scratch);
    while (s.nbuckets < m->next_value_id)
        s.nbuckets *= 2;
    s.heads = ARENA_ARRAY(&s.scratch, uint32_t, s.nbuckets);
    s.nrepl = 2 * m->next_value_id + 64;
    s.repl = ARENA_ARRAY(&s.scratch, IrValue *, s.nrepl);
    bool changed = false;
    for (uint32_t i = 0; i < m->nfuncs; i++) {
        IrFunc *f = m->funcs[i];
        for (;;) {
            bool walked = walk_func(&s, f);
            bool deleted = dce_region(f->body);
            if (!walked && !deleted)
                break;
            changed = true;
        }
    }
    arena_dispose(&s.scratch);
    return changed;
}
