/* cg_fuse.c - elementwise fusion on the CPU at -O1 and above.
 *
 * A fused group is a tree of elementwise ops (IRT_ELEMWISE) computed in one loop nest: its
 * root is an elementwise op whose result is stored; each inner member is an elementwise
 * op whose result has exactly one use, by another member or the root, in the same region,
 * with the root's shape (so no member is recomputed for broadcast elements) and an f32 or
 * i32 dtype (so keeping it in a register changes no rounding). Everything else the group
 * reads is a leaf, loaded from its buffer with broadcasting. The planner marks the
 * members' results in cg->absorbed: they get no workspace buffer and cg_lower_region
 * skips their ops.
 *
 * The root is lowered as one loop over the rows of its result (all axes but the last),
 * split over the runtime's pool (run directly when the group touches fewer than
 * CG_PAR_MIN_WORK elements), and an inner loop over the last axis whose body loads each
 * leaf, evaluates the tree with cg_elem_value and stores the root. The inner loop has
 * unit-stride loads and stores and only inlinable arithmetic (exp, tanh and erf are our
 * own at -O1 and above, see use_ours in cg_common.c), so LLVM's loop vectoriser turns it
 * into vector code. Each element is computed by the same instructions whatever the row
 * split, so results do not depend on the thread count. See docs/codegen.md "Fusion". */
#include "cg_int.h"

#include <stdio.h>
#include <stdlib.h>

/* A group's leaves: the values it reads, at most CG_PAR_MAX_VALS - 1 (the root's result
 * takes the last slot of an outlined loop's context). FUSE_MAX_MEMBERS bounds the ops
 * computed per element. */
enum { FUSE_MAX_LEAVES = CG_PAR_MAX_VALS - 1, FUSE_MAX_MEMBERS = 64 };

typedef struct Group {
    const IrValue *leaf[FUSE_MAX_LEAVES];
    uint32_t       nleaves;
    IrValue       *member[FUSE_MAX_MEMBERS];   /* results computed in registers */
    uint32_t       nmembers;
} Group;

bool cg_fuse_applies(const CgCpu *cg)
{
    return cg->opt_level >= 1 && !cg->gpu;
}

static bool is_elemwise(const IrOp *op)
{
    return op && (ir_op_info[op->kind].traits & IRT_ELEMWISE) && op->nres == 1;
}

/* Whether v may be computed inside the group rooted at `root`. */
static bool can_absorb(const CgCpu *cg, const IrValue *v, const IrOp *root)
{
    const IrOp *d = v->def;
    return is_elemwise(d) && !cg->absorbed[v->id] && v->nuses == 1 && d->parent == root->parent
           && (v->dtype == DT_F32 || v->dtype == DT_I32)
           && shape_eq(&v->shape, &root->results[0]->shape);
}

static bool add_leaf(Group *g, const IrValue *v)
{
    for (uint32_t i = 0; i < g->nleaves; i++)
        if (g->leaf[i] == v)
            return true;
    if (g->nleaves == FUSE_MAX_LEAVES)
        return false;
    g->leaf[g->nleaves++] = v;
    return true;
}

/* Adds op's operands to g: as members (recursively) where they can be, else as leaves. A
 * member whose subtree does not fit is taken back and read as a leaf; false when even
 * that does not fit. */
static bool grow(const CgCpu *cg, Group *g, const IrOp *op, const IrOp *root)
{
    for (uint32_t i = 0; i < op->nops; i++) {
        IrValue *v = op->operands[i];
        if (g->nmembers < FUSE_MAX_MEMBERS && can_absorb(cg, v, root)) {
            uint32_t nl = g->nleaves, nm = g->nmembers;
            g->member[g->nmembers++] = v;
            if (grow(cg, g, v->def, root))
                continue;
            g->nleaves = nl, g->nmembers = nm;
        }
        if (!add_leaf(g, v))
            return false;
    }
    return true;
}

static void plan_region(CgCpu *cg, IrRegion *r)
{
    for (IrOp *op = r->last; op; op = op->prev) {
        if (op->body)
            plan_region(cg, op->body);
        if (!is_elemwise(op) || cg->absorbed[op->results[0]->id])
            continue;
        Group g = { .nleaves = 0 };
        if (grow(cg, &g, op, op))
            for (uint32_t i = 0; i < g.nmembers; i++)
                cg->absorbed[g.member[i]->id] = true;
    }
}

static void plan_epilogues(CgCpu *cg, IrRegion *r);

void cg_fuse_plan(CgCpu *cg)
{
    if (!cg_fuse_applies(cg))
        return;
    for (uint32_t i = 0; i < cg->m->nfuncs; i++) {   // @main, and @step when there is one
        plan_region(cg, cg->m->funcs[i]->body);
        plan_epilogues(cg, cg->m->funcs[i]->body);
    }
}

/* ---- lowering a group's root ---- */

/* The leaves of the group rooted at op, found through the absorbed marks. */
static void collect_leaves(const CgCpu *cg, Group *g, const IrOp *op)
{
    for (uint32_t i = 0; i < op->nops; i++) {
        const IrValue *v = op->operands[i];
        if (cg->absorbed[v->id] && is_elemwise(v->def))
            collect_leaves(cg, g, v->def);
        else if (!add_leaf(g, v)) {   // cg_fuse_plan kept every group within the bound
            fputs("tfxc: internal error: fused group has too many leaves\n", stderr);
            exit(3);
        }
    }
}

/* The per-element state of the inner loop: each leaf's offset at column 0 of the row and
 * whether it advances with the column (its last axis is the root's, not broadcast). */
typedef struct Row {
    const Group *g;
    LLVMValueRef base[FUSE_MAX_LEAVES];
    bool         unit[FUSE_MAX_LEAVES];
    LLVMValueRef j;   /* column (i64) */
} Row;

static LLVMValueRef eval(CgCpu *cg, const Row *row, const IrValue *v);

static LLVMValueRef eval_op(CgCpu *cg, const Row *row, const IrOp *op)
{
    LLVMValueRef x[3];
    for (uint32_t i = 0; i < op->nops; i++)
        x[i] = eval(cg, row, op->operands[i]);
    return cg_elem_value(cg, op, x);
}

static LLVMValueRef eval(CgCpu *cg, const Row *row, const IrValue *v)
{
    if (cg->absorbed[v->id] && is_elemwise(v->def))
        return eval_op(cg, row, v->def);
    for (uint32_t i = 0; i < row->g->nleaves; i++)
        if (row->g->leaf[i] == v) {
            LLVMValueRef off = row->base[i];
            if (row->unit[i])
                off = LLVMBuildAdd(cg->b, off, row->j, "off");
            return cg_load(cg, v, off);
        }
    fputs("tfxc: internal error: fused value is neither member nor leaf\n", stderr);
    exit(3);
}

/* Whether leaf v, read at the root's index (rank r), moves with the last axis. */
static bool moves_with_last(const IrValue *v, const Shape *ys)
{
    int r = ys->rank, rv = v->shape.rank;
    if (rv == 0 || r == 0)
        return false;
    Dim last = v->shape.dims[rv - 1];
    return !(dim_is_const(last) && last.c == 1 && !(dim_is_const(ys->dims[r - 1]) && ys->dims[r - 1].c == 1));
}

void cg_fuse_lower(CgCpu *cg, IrOp *root)
{
    if (cg->epi_gemm[root->results[0]->id])   // the GEMM computes it (plan_epilogues)
        return;
    Group g = { .nleaves = 0 };
    collect_leaves(cg, &g, root);
    IrValue *y = root->results[0];
    const Shape *ys = &y->shape;
    int r = ys->rank;
    const IrValue *vals[CG_PAR_MAX_VALS];
    for (uint32_t i = 0; i < g.nleaves; i++)
        vals[i] = g.leaf[i];
    vals[g.nleaves] = y;

    LLVMValueRef cols = r > 0 ? cg_dim(cg, ys->dims[r - 1]) : cg_i64(cg, 1);
    LLVMValueRef rows = cg_i64(cg, 1);
    for (int k = 0; k + 1 < r; k++)
        rows = LLVMBuildMul(cg->b, rows, cg_dim(cg, ys->dims[k]), "rows");
    LLVMValueRef work = LLVMBuildMul(cg->b, rows, cols, "work");
    char name[160];
    snprintf(name, sizeof name, "fused.%s", cg_name(cg, y));
    CgPar par;
    cg_par_begin_vals(cg, &par, vals, g.nleaves + 1, rows, work, name);
    cols = r > 0 ? cg_dim(cg, ys->dims[r - 1]) : cg_i64(cg, 1);   // the body's symbols

    CgFor rl;
    cg_for_range(cg, &rl, par.begin, par.end, "row");
    LLVMValueRef idx[IR_MAX_RANK] = { 0 };
    LLVMValueRef rest = rl.i;   // the row's index over axes 0 .. r-2
    for (int k = r - 2; k > 0; k--) {
        LLVMValueRef d = cg_dim(cg, ys->dims[k]);
        idx[k] = LLVMBuildURem(cg->b, rest, d, "ix");
        rest = LLVMBuildUDiv(cg->b, rest, d, "rest");
    }
    if (r >= 2)
        idx[0] = rest;
    if (r >= 1)
        idx[r - 1] = cg_i64(cg, 0);
    Row row = { .g = &g };
    for (uint32_t i = 0; i < g.nleaves; i++) {
        row.base[i] = cg_bcast_offset(cg, g.leaf[i], idx, r);
        row.unit[i] = moves_with_last(g.leaf[i], ys);
    }
    LLVMValueRef ybase = cg_offset(cg, y, idx);

    CgFor cl;
    cg_for_begin(cg, &cl, cols, "col");
    row.j = cl.i;
    LLVMValueRef v = eval_op(cg, &row, root);
    cg_store(cg, y, LLVMBuildAdd(cg->b, ybase, cl.i, "yoff"), v);
    cg_for_end(cg, &cl);
    cg_for_end(cg, &rl);
    cg_par_end(cg, &par);
}

/* ---- GEMM epilogues ---- */

/* Whether v exists when op g runs: defined in an enclosing region, or before g in its,
 * or a `const` or a `weight` whose indices do: the GEMM then fills the constant or looks
 * the weight up itself before the product (gemm_par_begin); the memory plan starts such
 * a constant's buffer at g (cg->epi_gemm). */
static bool ready_before(const IrValue *v, const IrOp *g)
{
    if (!v->def || v->def->parent != g->parent)
        return true;   // an argument or a value of an enclosing region (visible at g)
    for (const IrOp *o = g->prev; o; o = o->prev)
        if (o == v->def)
            return true;
    if (v->def->kind == IR_OP_CONST)
        return true;   // filled early by the GEMM (plan_epilogues)
    if (v->def->kind != IR_OP_WEIGHT)
        return false;
    for (uint32_t i = 0; i < v->def->nops; i++)
        if (!ready_before(v->def->operands[i], g))
            return false;
    return true;
}

/* The matmul result among the group's leaves that the GEMM can finish with the group, or
 * NULL. */
static IrValue *epilogue_source(const CgCpu *cg, const Group *g, const IrOp *root)
{
    const IrValue *y0 = root->results[0];
    if (y0->shape.rank != 2 || y0->dtype != DT_F32 || g->nleaves + 3 > CG_PAR_MAX_VALS)
        return NULL;
    for (uint32_t i = 0; i < g->nleaves; i++) {
        IrValue *y = (IrValue *)g->leaf[i];
        IrOp *mm = y->def;
        if (!mm || mm->kind != IR_OP_MATMUL || y->nuses != 1 || mm->parent != root->parent
            || cg->absorbed[y->id]
            || !cg_gemm_applies(cg, mm) || !shape_eq(&y->shape, &y0->shape)
            || cg->epi_root[y->id])
            continue;
        bool ready = true;
        for (uint32_t j = 0; j < g->nleaves && ready; j++)
            ready = j == i || ready_before(g->leaf[j], mm);
        if (ready)
            return y;
    }
    return NULL;
}

static void plan_epilogues(CgCpu *cg, IrRegion *r)
{
    for (IrOp *op = r->first; op; op = op->next) {
        if (op->body)
            plan_epilogues(cg, op->body);
        if (!is_elemwise(op) || cg->absorbed[op->results[0]->id])
            continue;
        Group g = { .nleaves = 0 };
        collect_leaves(cg, &g, op);
        IrValue *y = epilogue_source(cg, &g, op);
        if (!y)
            continue;
        cg->epi_root[y->id] = op;
        cg->epi_gemm[op->results[0]->id] = y->def;
        for (uint32_t i = 0; i < g.nleaves; i++)   // constants it fills before the product
            if (g.leaf[i]->def && g.leaf[i]->def->kind == IR_OP_CONST    // (the first GEMM
                && !cg->epi_gemm[g.leaf[i]->id])                        // to fill one)
                cg->epi_gemm[g.leaf[i]->id] = y->def;
    }
}

uint32_t cg_fuse_values(const CgCpu *cg, const IrOp *root, const IrValue **vals)
{
    Group g = { .nleaves = 0 };
    collect_leaves(cg, &g, root);
    for (uint32_t i = 0; i < g.nleaves; i++)
        vals[i] = g.leaf[i];
    vals[g.nleaves] = root->results[0];
    return g.nleaves + 1;
}

void cg_fuse_emit_cols(CgCpu *cg, const IrOp *root, LLVMValueRef row, LLVMValueRef c0,
                       LLVMValueRef c1)
{
    Group g = { .nleaves = 0 };
    collect_leaves(cg, &g, root);
    const IrValue *y = root->results[0];
    LLVMValueRef idx[IR_MAX_RANK] = { row, cg_i64(cg, 0) };
    Row rw = { .g = &g };
    for (uint32_t i = 0; i < g.nleaves; i++) {
        rw.base[i] = cg_bcast_offset(cg, g.leaf[i], idx, 2);
        rw.unit[i] = moves_with_last(g.leaf[i], &y->shape);
    }
    LLVMValueRef ybase = cg_offset(cg, y, idx);
    CgFor cl;
    cg_for_range(cg, &cl, c0, c1, "epi.col");
    rw.j = cl.i;
    LLVMValueRef v = eval_op(cg, &rw, root);
    cg_store(cg, y, LLVMBuildAdd(cg->b, ybase, cl.i, "epi.off"), v);
    cg_for_end(cg, &cl);
}
