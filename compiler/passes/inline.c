/* inline.c - pass "inline": replaces every call by a copy of the callee's body, then
 * deletes the functions @main no longer reaches.
 *   requires:   a verified module; funcs[0] is @main.
 *   guarantees: no call ops remain in functions reachable from @main (except calls
 *               inside a call cycle, which the verifier reports); only @main and what it
 *               still calls remain in IrModule.funcs, in their old order.
 *   preserves:  spans (copied ops keep the span of the op in the block they came from),
 *               value names (a call's result name moves to the copied returned value),
 *               loops and moe bodies (copied region by region).
 * Callees are inlined before their callers (depth-first over the call graph), so a
 * copied body never holds calls and each call is handled once. */
#include "pass.h"

#include <assert.h>

typedef struct Inliner {
    IrModule *m;
    Arena     scratch;
    uint8_t  *state;   /* by func index: 0 not visited, 1 being inlined, 2 done */
    IrValue **map;     /* by callee value id: its copy in the caller */
    uint32_t  nmap;
    bool      changed;
} Inliner;

static uint32_t func_index(const IrModule *m, const IrFunc *f)
{
    for (uint32_t i = 0; i < m->nfuncs; i++)
        if (m->funcs[i] == f)
            return i;
    return m->nfuncs;
}

/* ----------------------------------------------------------- copying ---- */

static IrValue *mapped(const Inliner *in, IrValue *v)
{
    return v && v->id < in->nmap && in->map[v->id] ? in->map[v->id] : v;
}

static void map_to(Inliner *in, const IrValue *from, IrValue *to)
{
    assert(from->id < in->nmap);
    in->map[from->id] = to;
}

static void copy_type_and_name(IrValue *to, const IrValue *from)
{
    to->dtype = from->dtype;
    to->shape = from->shape;
    to->name = from->name;
}

static IrOp *copy_op(Inliner *in, const IrOp *src, IrRegion *dst, IrOp *before);

/* Copies src (a loop or moe body) as the body of `op`. */
static void copy_body(Inliner *in, const IrRegion *src, IrOp *op)
{
    IrRegion *r = ir_region_new(in->m, op->parent->func, op);
    for (uint32_t i = 0; i < src->nargs; i++) {
        const IrValue *a = src->args[i];
        map_to(in, a, ir_region_add_arg(in->m, r, a->dtype, &a->shape, a->name));
    }
    for (const IrOp *o = src->first; o; o = o->next)
        copy_op(in, o, r, NULL);
}

/* Copies src into dst, before `before` or at the end when it is NULL. */
static IrOp *copy_op(Inliner *in, const IrOp *src, IrRegion *dst, IrOp *before)
{
    IrValue **ops = ARENA_ARRAY(&in->scratch, IrValue *, src->nops);
    for (uint32_t i = 0; i < src->nops; i++)
        ops[i] = mapped(in, src->operands[i]);
    IrOp *op = before
        ? ir_op_insert_before(in->m, dst, before, src->kind, ops, src->nops, src->nres, src->span)
        : ir_op_append(in->m, dst, src->kind, ops, src->nops, src->nres, src->span);
    op->attrs = src->attrs;
    for (uint32_t i = 0; i < src->nres; i++) {
        copy_type_and_name(op->results[i], src->results[i]);
        map_to(in, src->results[i], op->results[i]);
    }
    if (src->body)
        copy_body(in, src->body, op);
    return op;
}

/* ---------------------------------------------------------- inlining ---- */

static bool callable(const IrOp *call)
{
    const IrFunc *f = call->attrs.callee;
    const IrOp *ret = f && f->body ? f->body->last : NULL;
    return ret && ret->kind == IR_OP_RETURN && ret->nops == call->nres &&
           f->body->nargs == call->nops;
}

/* Copies the callee's body (all but its return) before the call, with parameters
 * mapped to the call's operands, points the call's users at the copied returned
 * values, and erases the call. The map is sized for every value existing now. */
static void inline_call(Inliner *in, IrOp *call)
{
    const IrRegion *src = call->attrs.callee->body;
    if (in->nmap < in->m->next_value_id) {  // room for every value that exists now
        in->nmap = 2 * in->m->next_value_id;
        in->map = ARENA_ARRAY(&in->scratch, IrValue *, in->nmap);
    }
    uint32_t first_copy = in->m->next_value_id;
    for (uint32_t i = 0; i < src->nargs; i++)
        map_to(in, src->args[i], call->operands[i]);
    for (const IrOp *o = src->first; o != src->last; o = o->next)
        copy_op(in, o, call->parent, call);
    IrFunc *f = call->parent->func;
    for (uint32_t i = 0; i < call->nres; i++) {
        IrValue *res = call->results[i], *v = mapped(in, src->last->operands[i]);
        if (res->name && v->id >= first_copy)
            v->name = res->name;  // the caller's name for the value beats the block's
        ir_replace_uses(f, res, v);
    }
    ir_op_erase(call);
    in->changed = true;
}

typedef struct CallList {
    IrOp   **ops;
    uint32_t n, cap;
    Arena   *arena;
} CallList;

/* ir_region_walk visitor: gathers call ops, since inlining mutates the region. */
static void collect_call(IrOp *op, void *ctx)
{
    CallList *l = ctx;
    if (op->kind != IR_OP_CALL)
        return;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? 2 * l->cap : 16;
        l->ops = arena_grow(l->arena, l->ops, l->n * sizeof *l->ops, cap * sizeof *l->ops);
        l->cap = cap;
    }
    l->ops[l->n++] = op;
}

/* Inlines every call in funcs[fi], its callees first. */
static void inline_func(Inliner *in, uint32_t fi)
{
    in->state[fi] = 1;
    CallList calls = { .arena = &in->scratch };
    ir_region_walk(in->m->funcs[fi]->body, collect_call, &calls);
    for (uint32_t i = 0; i < calls.n; i++) {
        IrOp *call = calls.ops[i];
        uint32_t ci = func_index(in->m, call->attrs.callee);
        if (ci == in->m->nfuncs || in->state[ci] == 1)
            continue;  // not a module func, or a call cycle: left for the verifier
        if (in->state[ci] == 0)
            inline_func(in, ci);
        if (callable(call))
            inline_call(in, call);
    }
    in->state[fi] = 2;
}

/* ------------------------------------------------ unreachable funcs ---- */

typedef struct Reach {
    const IrModule *m;
    uint8_t        *seen;  /* by func index */
} Reach;

static void reach_func(Reach *r, uint32_t fi);

static void reach_op(IrOp *op, void *ctx)
{
    Reach *r = ctx;
    uint32_t ci = op->kind == IR_OP_CALL ? func_index(r->m, op->attrs.callee) : r->m->nfuncs;
    if (ci < r->m->nfuncs && !r->seen[ci])
        reach_func(r, ci);
}

static void reach_func(Reach *r, uint32_t fi)
{
    r->seen[fi] = 1;
    ir_region_walk(r->m->funcs[fi]->body, reach_op, r);
}

/* Keeps the funcs @main reaches through calls, in their order. */
static void drop_unreachable(Inliner *in)
{
    IrModule *m = in->m;
    Reach r = { m, ARENA_ARRAY(&in->scratch, uint8_t, m->nfuncs) };
    reach_func(&r, 0);
    uint32_t n = 0;
    for (uint32_t i = 0; i < m->nfuncs; i++)
        if (r.seen[i])
            m->funcs[n++] = m->funcs[i];
    in->changed |= n != m->nfuncs;
    m->nfuncs = n;
}

/* Inlines everything @main reaches, then drops what it no longer reaches. */
bool pass_inline(IrModule *m, PassCtx *pc)
{
    (void)pc;
    if (m->nfuncs == 0)
        return false;
    Inliner in = { .m = m };
    arena_init(&in.scratch);
    in.state = ARENA_ARRAY(&in.scratch, uint8_t, m->nfuncs);
    inline_func(&in, 0);
    drop_unreachable(&in);
    arena_dispose(&in.scratch);
    return in.changed;
}
