/* cg_plan.c - the live intervals of the memory plan (-O1..3 on the CPU): for every value
 * with a workspace buffer, the position of the op that first writes it and of the last op
 * that reads it, positions numbering the ops of @main (or @step) in walk order (an op before the ops
 * of its body). The offsets themselves are computed when the model runs, from the sizes
 * (shapes are symbolic), by tfx_plan_offsets (runtime/rt_plan.c); cg_cpu.c emits the call.
 * See docs/codegen.md "Memory plan" for the rules and why each is needed. */
#include "cg_int.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct Live {
    const CgCpu *cg;
    IrOp       **ops;      /* by position */
    int32_t     *last;     /* by position: the last position inside the op's body (or itself) */
    int32_t      nops;
    IrOp       **user;     /* by value id: an op that uses it (the one, for absorbed values) */
    CgLive      *out;
} Live;

static void count_ops(IrRegion *r, int32_t *n)
{
    for (IrOp *op = r->first; op; op = op->next) {
        (*n)++;
        if (op->body)
            count_ops(op->body, n);
    }
}

static void number_ops(Live *l, IrRegion *r)
{
    for (IrOp *op = r->first; op; op = op->next) {
        int32_t p = l->nops++;
        l->ops[p] = op;
        for (uint32_t i = 0; i < op->nops; i++)
            l->user[op->operands[i]->id] = op;
        if (op->body)
            number_ops(l, op->body);
        l->last[p] = l->nops - 1;
    }
}

static int32_t pos_of(const Live *l, const IrOp *op)
{
    for (int32_t p = 0; p < l->nops; p++)
        if (l->ops[p] == op)
            return p;
    fputs("tfxc: internal error: op not in the planned function\n", stderr);
    exit(3);
}

static void extend(CgLive *o, const IrValue *v, int32_t at)
{
    if (at > o->end[v->id])
        o->end[v->id] = at;
}

static void def(CgLive *o, const IrValue *v, int32_t from, int32_t to)
{
    o->start[v->id] = from;
    o->end[v->id] = to;
}

bool cg_reshape_view(const CgCpu *cg, const IrValue *v)
{
    return cg->mem_plan && v->def && v->def->kind == IR_OP_RESHAPE;
}

/* Records that `op` reads v. */
static void use(Live *l, const IrOp *op, const IrValue *v)
{
    const CgCpu *cg = l->cg;
    // a transpose the GEMM reads through and a reshape have no buffer: their operand's
    // is read
    while (cg_gemm_reads_through(cg, v) || cg_reshape_view(cg, v))
        v = v->def->operands[0];
    // an absorbed value has no buffer (its operands are read where it is computed), nor
    // has a model input (read in place)
    if (cg->absorbed[v->id] || (!v->def && !v->owner->parent_op))
        return;
    // an absorbed op is computed inside its user, at the user's position
    while (cg_absorbed_op(cg, op))
        op = l->user[op->results[0]->id];
    const IrRegion *home = v->def ? v->def->parent : v->owner;
    int32_t at = pos_of(l, op);
    if (op->body)   // a loop or moe reads its operands while its body runs
        at = l->last[at];
    // a use inside a body that v is not defined in lasts until that body's op ends: the
    // body runs again and reads v again
    for (const IrOp *o = op; o->parent != home && o->parent->parent_op; ) {
        o = o->parent->parent_op;
        int32_t e = l->last[pos_of(l, o)];
        if (e > at)
            at = e;
    }
    extend(l->out, v, at);
}

void cg_plan_live(const CgCpu *cg, const IrFunc *f, CgLive *out)
{
    IrRegion *body = f->body;
    uint32_t nv = cg->m->next_value_id + 1;
    int32_t n = 0;
    count_ops(body, &n);
    Live l = { .cg = cg, .out = out };
    l.ops = cg_xcalloc((size_t)n, sizeof *l.ops);
    l.last = cg_xcalloc((size_t)n, sizeof *l.last);
    l.user = cg_xcalloc(nv, sizeof *l.user);
    out->start = cg_xcalloc(nv, sizeof *out->start);
    out->end = cg_xcalloc(nv, sizeof *out->end);
    number_ops(&l, body);
    for (int32_t p = 0; p < l.nops; p++) {
        IrOp *op = l.ops[p];
        for (uint32_t i = 0; i < op->nres; i++)   // written by op; a loop's results and
            def(out, op->results[i], p, op->body ? l.last[p] : p);   // body args: all along
        // an epilogue's root, and a constant it reads, are written by the GEMM
        if (op->nres == 1 && cg->epi_gemm[op->results[0]->id])
            out->start[op->results[0]->id] = pos_of(&l, cg->epi_gemm[op->results[0]->id]);
        if (op->body)
            for (uint32_t i = 0; i < op->body->nargs; i++)
                def(out, op->body->args[i], p, l.last[p]);
    }
    for (int32_t p = 0; p < l.nops; p++)
        for (uint32_t i = 0; i < l.ops[p]->nops; i++)
            use(&l, l.ops[p], l.ops[p]->operands[i]);
    free(l.ops);
    free(l.last);
    free(l.user);
}

void cg_live_dispose(CgLive *live)
{
    free(live->start);
    free(live->end);
    live->start = live->end = NULL;
}
