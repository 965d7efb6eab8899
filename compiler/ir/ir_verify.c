/* ir_verify.c - the structural checker run after sema and between passes (QBE's
 * invariant checker). It checks links, definition before use and visibility, arity,
 * terminators, use counts, the module's inputs and outputs, call cycles, and that
 * re-running each op's shape rule gives the types it carries. Each problem becomes one
 * line `@func: %N = opname: message` in errs, with ir_print's value names. */
#include "ir.h"

#include <stdarg.h>
#include <string.h>

typedef struct Verifier {
    const IrModule *m;
    Buf            *errs;     /* may be NULL: count only */
    int             count;
    Arena           arena;    /* scratch for the whole run */
    const IrFunc   *f;        /* function being checked */
    IrNames         names;    /* its value names */
    uint8_t        *visible;  /* by IrValue.id: defined and in scope at this point */
    uint32_t       *uses;     /* by IrValue.id: operand slots that hold the value */
} Verifier;

static void report_start(Verifier *vf)
{
    vf->count++;
    if (vf->errs)
        buf_printf(vf->errs, "@%s: ", vf->f && vf->f->name ? vf->f->name : "?");
}

static void report_end(Verifier *vf, const char *fmt, va_list ap)
{
    if (!vf->errs)
        return;
    buf_vprintf(vf->errs, fmt, ap);
    buf_putc(vf->errs, '\n');
}

/* "@f: message" */
static void report(Verifier *vf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(Verifier *vf, const char *fmt, ...)
{
    va_list ap;
    report_start(vf);
    va_start(ap, fmt);
    report_end(vf, fmt, ap);
    va_end(ap);
}

/* "@f: %1, %2 = opname: message" */
static void report_op(Verifier *vf, const IrOp *op, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report_op(Verifier *vf, const IrOp *op, const char *fmt, ...)
{
    va_list ap;
    report_start(vf);
    if (vf->errs) {
        for (uint32_t i = 0; i < op->nres; i++)
            buf_printf(vf->errs, "%s%%%s", i ? ", " : "", ir_names_get(&vf->names, op->results[i]));
        buf_printf(vf->errs, "%s%s: ", op->nres ? " = " : "",
                   (unsigned)op->kind < IR_OP_COUNT_ ? ir_op_info[op->kind].name : "?");
    }
    va_start(ap, fmt);
    report_end(vf, fmt, ap);
    va_end(ap);
}

static const char *vname(const Verifier *vf, const IrValue *v)
{
    return ir_names_get(&vf->names, v);
}

/* ------------------------------------------------------- definitions ---- */

/* Marks v defined (op is its defining op, NULL for an argument) and checks its count
 * of uses against the operands that hold it. */
static void define(Verifier *vf, const IrValue *v, const IrOp *op)
{
    if (v->id >= vf->m->next_value_id) {
        report(vf, "value %%%s has an id outside the module", vname(vf, v));
        return;
    }
    if (vf->visible[v->id]) {
        report(vf, "value %%%s is defined twice", vname(vf, v));
        return;
    }
    vf->visible[v->id] = 1;
    if (v->nuses == vf->uses[v->id])
        return;
    if (op)
        report_op(vf, op, "%%%s records %u uses but has %u", vname(vf, v), (unsigned)v->nuses,
                  (unsigned)vf->uses[v->id]);
    else
        report(vf, "argument %%%s records %u uses but has %u", vname(vf, v), (unsigned)v->nuses,
               (unsigned)vf->uses[v->id]);
}

static void undefine(Verifier *vf, const IrValue *v)
{
    if (v && v->id < vf->m->next_value_id)
        vf->visible[v->id] = 0;
}

/* Whether region `inner` is `outer` or nested in it. */
static bool region_within(const IrRegion *inner, const IrRegion *outer)
{
    for (const IrRegion *r = inner; r; r = r->parent_op ? r->parent_op->parent : NULL)
        if (r == outer)
            return true;
    return false;
}

/* An operand must be present, of this module, and visible: defined earlier in the
 * op's region or an enclosing one. The message tells "too early" from "elsewhere". */
static void check_operand(Verifier *vf, const IrOp *op, uint32_t i)
{
    const IrValue *v = op->operands[i];
    if (!v) {
        report_op(vf, op, "operand %u is missing", (unsigned)i);
        return;
    }
    if (v->id >= vf->m->next_value_id) {
        report_op(vf, op, "operand %u is not a value of this module", (unsigned)i);
        return;
    }
    if (vf->visible[v->id])
        return;
    const IrRegion *home = v->def ? v->def->parent : v->owner;
    if (home && region_within(op->parent, home))
        report_op(vf, op, "operand %%%s is used before its definition", vname(vf, v));
    else
        report_op(vf, op, "operand %%%s is not visible here", vname(vf, v));
}

/* ---------------------------------------------------------------- ops ---- */

static bool check_arity(Verifier *vf, const IrOp *op)
{
    const IrOpInfo *info = &ir_op_info[op->kind];
    bool ok = true;
    if (info->nin >= 0 && op->nops != (uint32_t)info->nin) {
        report_op(vf, op, "has %u operands, expects %d", (unsigned)op->nops, info->nin);
        ok = false;
    }
    if (info->nout >= 0 && op->nres != (uint32_t)info->nout) {
        report_op(vf, op, "has %u results, expects %d", (unsigned)op->nres, info->nout);
        ok = false;
    }
    bool wants_body = (info->traits & IRT_REGION) != 0;
    if (wants_body != (op->body != NULL)) {
        report_op(vf, op, wants_body ? "has no body" : "has a body but takes none");
        ok = false;
    }
    return ok;
}

/* Each result must point back to op at its index. */
static bool check_results(Verifier *vf, const IrOp *op)
{
    for (uint32_t i = 0; i < op->nres; i++) {
        const IrValue *v = op->results[i];
        if (!v || v->def != op || v->index != i) {
            report_op(vf, op, "result %u is not linked to its op", (unsigned)i);
            return false;
        }
    }
    return true;
}

static bool type_eq(const IrValue *v, const IrType *t)
{
    return v->dtype == t->dtype && shape_eq(&v->shape, &t->shape);
}

/* Re-runs the op's shape rule and compares with the types it carries. */
static void check_types(Verifier *vf, const IrOp *op)
{
    IrType *res = ARENA_ARRAY(&vf->arena, IrType, op->nres);
    for (uint32_t i = 0; i < op->nres; i++)
        res[i] = (IrType){ op->results[i]->dtype, op->results[i]->shape };
    const char *e = ir_infer_types(vf->m, op, res);
    if (e) {
        report_op(vf, op, "%s", e);
        return;
    }
    for (uint32_t i = 0; i < op->nres; i++) {
        const IrValue *v = op->results[i];
        if (type_eq(v, &res[i]))
            continue;
        Buf have, want;
        buf_init(&have);
        buf_init(&want);
        type_print(&have, vf->m, v->dtype, &v->shape);
        type_print(&want, vf->m, res[i].dtype, &res[i].shape);
        report_op(vf, op, "result %%%s is %s but the shape rule gives %s", vname(vf, v),
                  buf_str(&have), buf_str(&want));
        buf_dispose(&have);
        buf_dispose(&want);
    }
}

static bool is_module_func(const IrModule *m, const IrFunc *f)
{
    for (uint32_t i = 0; i < m->nfuncs; i++)
        if (m->funcs[i] == f)
            return true;
    return false;
}

/* Checks r's arguments, links and ops in order, then its terminator, and finally
 * takes r's values out of scope again. */
static void verify_region(Verifier *vf, const IrRegion *r, IrOpKind term, const IrOp *owner);

static void verify_body(Verifier *vf, const IrOp *op)
{
    if (op->body->parent_op != op || op->body->func != vf->f)
        report_op(vf, op, "body is not linked to its op");
    verify_region(vf, op->body, IR_OP_YIELD, op);
}

/* Checks one op; its body is checked before its results are defined, so the body
 * cannot use them. Types are checked only when the op is well-formed enough. */
static void verify_op(Verifier *vf, const IrOp *op)
{
    if ((unsigned)op->kind >= IR_OP_COUNT_) {
        report(vf, "op of unknown kind %d", (int)op->kind);
        return;
    }
    bool linked = check_results(vf, op);
    bool ok = check_arity(vf, op) && linked;
    for (uint32_t i = 0; i < op->nops; i++) {
        uint32_t before = (uint32_t)vf->count;
        check_operand(vf, op, i);
        ok = ok && (uint32_t)vf->count == before;
    }
    if (op->kind == IR_OP_CALL && op->attrs.callee && !is_module_func(vf->m, op->attrs.callee)) {
        report_op(vf, op, "callee is not a function of the module");
        ok = false;
    }
    if (op->body)
        verify_body(vf, op);
    if (ok)
        check_types(vf, op);
    for (uint32_t i = 0; linked && i < op->nres; i++)  // even when wrong: no cascades
        define(vf, op->results[i], op);
}

/* ----------------------------------------------------------- regions ---- */

static void check_args(Verifier *vf, const IrRegion *r)
{
    for (uint32_t i = 0; i < r->nargs; i++) {
        const IrValue *v = r->args[i];
        if (!v || v->def || v->owner != r || v->index != i)
            report(vf, "argument %u of a region is not linked to it", (unsigned)i);
        else
            define(vf, v, NULL);
    }
}

static void check_terminator(Verifier *vf, const IrRegion *r, IrOpKind term, const IrOp *owner)
{
    const IrOp *last = r->last;
    if (last && last->kind == term)
        return;
    const char *want = ir_op_info[term].name;
    if (owner)
        report_op(vf, owner, "body does not end in %s", want);
    else
        report(vf, "body does not end in %s", want);
}

static void verify_region(Verifier *vf, const IrRegion *r, IrOpKind term, const IrOp *owner)
{
    check_args(vf, r);
    const IrOp *prev = NULL;
    for (const IrOp *op = r->first; op; prev = op, op = op->next) {
        if (op->parent != r || op->prev != prev)
            report_op(vf, op, "op is not linked into its region");
        if (prev && (unsigned)prev->kind < IR_OP_COUNT_ &&
            (ir_op_info[prev->kind].traits & IRT_TERMINATOR))
            report_op(vf, op, "op after the terminator of its region");
        if (op->kind == IR_OP_RETURN && term != IR_OP_RETURN)
            report_op(vf, op, "return inside a loop or moe body");
        verify_op(vf, op);
    }
    if (r->last != prev)
        report(vf, "region's last op is not its final op");
    check_terminator(vf, r, term, owner);
    for (uint32_t i = 0; i < r->nargs; i++)
        undefine(vf, r->args[i]);
    for (const IrOp *op = r->first; op; op = op->next)
        for (uint32_t i = 0; i < op->nres; i++)
            undefine(vf, op->results[i]);
}

/* ------------------------------------------------------------ module ---- */

/* @main's arguments and returned values must be the module's inputs and outputs. */
static void check_io(Verifier *vf, const IrRegion *body)
{
    const IrModule *m = vf->m;
    if (m->ninputs > 0 && m->ninputs != body->nargs)
        report(vf, "%u inputs declared but %u arguments", (unsigned)m->ninputs,
               (unsigned)body->nargs);
    for (uint32_t i = 0; i < m->ninputs && i < body->nargs; i++)
        if (m->inputs[i].value != body->args[i])
            report(vf, "input '%s' is not argument %u", m->inputs[i].name, (unsigned)i);
    const IrOp *ret = body->last;
    if (m->noutputs == 0 || !ret || ret->kind != IR_OP_RETURN)
        return;
    if (ret->nops != m->noutputs)
        report(vf, "%u outputs declared but %u values returned", (unsigned)m->noutputs,
               (unsigned)ret->nops);
    for (uint32_t i = 0; i < m->noutputs && i < ret->nops; i++)
        if (m->outputs[i].value != ret->operands[i])
            report(vf, "output '%s' is not returned value %u", m->outputs[i].name, (unsigned)i);
}

static void verify_func(Verifier *vf, const IrFunc *f)
{
    vf->f = f;
    if (!f->body || f->module != vf->m || f->body->func != f || f->body->parent_op) {
        report(vf, "function is not linked to its module and body");
        return;
    }
    ir_names_init(&vf->names, vf->m, f);
    verify_region(vf, f->body, IR_OP_RETURN, NULL);
    if (vf->m->funcs[0] == f)
        check_io(vf, f->body);
    ir_names_dispose(&vf->names);
}

/* ir_region_walk visitor: counts operand slots by value id. */
static void count_uses(IrOp *op, void *ctx)
{
    Verifier *vf = ctx;
    for (uint32_t i = 0; i < op->nops; i++) {
        const IrValue *v = op->operands[i];
        if (v && v->id < vf->m->next_value_id)
            vf->uses[v->id]++;
    }
}

/* ------------------------------------------------------- call cycles ---- */

typedef struct CallDfs {
    Verifier *vf;
    uint8_t  *state;  /* by func index: 0 new, 1 on the stack, 2 done */
} CallDfs;

static uint32_t func_index(const IrModule *m, const IrFunc *f)
{
    for (uint32_t i = 0; i < m->nfuncs; i++)
        if (m->funcs[i] == f)
            return i;
    return m->nfuncs;
}

static void dfs_func(CallDfs *dfs, uint32_t fi);

/* A call to a function on the DFS stack closes a cycle. */
static void dfs_op(IrOp *op, void *ctx)
{
    CallDfs *dfs = ctx;
    const IrModule *m = dfs->vf->m;
    if (op->kind != IR_OP_CALL)
        return;
    uint32_t ci = func_index(m, op->attrs.callee);
    if (ci == m->nfuncs)
        return;  // reported by verify_op
    if (dfs->state[ci] == 1) {
        dfs->vf->f = op->parent ? op->parent->func : NULL;
        report(dfs->vf, "call cycle through @%s", m->funcs[ci]->name);
    } else if (dfs->state[ci] == 0) {
        dfs_func(dfs, ci);
    }
}

static void dfs_func(CallDfs *dfs, uint32_t fi)
{
    dfs->state[fi] = 1;
    ir_region_walk(dfs->vf->m->funcs[fi]->body, dfs_op, dfs);
    dfs->state[fi] = 2;
}

static void check_call_cycles(Verifier *vf)
{
    CallDfs dfs = { vf, ARENA_ARRAY(&vf->arena, uint8_t, vf->m->nfuncs) };
    for (uint32_t i = 0; i < vf->m->nfuncs; i++)
        if (dfs.state[i] == 0 && vf->m->funcs[i] && vf->m->funcs[i]->body)
            dfs_func(&dfs, i);
}

/* Counts uses across the module first (a value may be used in any function, which
 * is itself an error reported as "not visible"), then checks function by function
 * and finally the call graph. */
int ir_verify(const IrModule *m, Buf *errs)
{
    Verifier vf = { .m = m, .errs = errs };
    arena_init(&vf.arena);
    vf.visible = ARENA_ARRAY(&vf.arena, uint8_t, m->next_value_id);
    vf.uses = ARENA_ARRAY(&vf.arena, uint32_t, m->next_value_id);
    for (uint32_t i = 0; i < m->nfuncs; i++)
        if (m->funcs[i] && m->funcs[i]->body)
            ir_region_walk(m->funcs[i]->body, count_uses, &vf);
    for (uint32_t i = 0; i < m->nfuncs; i++) {
        if (m->funcs[i])
            verify_func(&vf, m->funcs[i]);
        else
            report(&vf, "function %u is missing", (unsigned)i);
    }
    check_call_cycles(&vf);
    arena_dispose(&vf.arena);
    return vf.count;
}
