/* cg_gpu_flash.c - the GPU back end's fused attention ("flash" style). The chain
 *
 *     s = matmul(q, kT)           [B..., Tq, Tk]   kT: [B..., d, Tk]
 *     s = div(s, c) | mul(s, c)   optional, c a scalar const
 *     p = softmax(s, axis = -1)   mask none, causal, band(w), causal_band(w)
 *     y = matmul(p, v)            [B..., Tq, dv]
 *
 * with one use of each intermediate becomes one kernel: one block of FL_BQ threads per
 * (batch entry, tile of FL_BQ queries), one thread per query row. The block walks the key
 * tiles that the mask leaves visible to its queries (causal: none after the query tile;
 * band: only those inside the window), staging each tile of k and v (FL_BK keys) in
 * shared memory between two barriers, and keeps per row the running maximum m, the sum l
 * of exp(s - m) and the accumulator of exp(s - m) * v, rescaled by exp(m_old - m_new)
 * when the maximum grows (online softmax). The row's result is acc / l; a row with no
 * visible key gives zeros, as the CPU's softmax does. The scores and probabilities never
 * reach memory, so s, p (and the scaled s) get no device buffer. A transpose feeding q,
 * kT or v with that one use is read through (gpt2's k transpose [T, h, d] -> [h, d, T]).
 * The sums over d and over keys run in the CPU's order; the only difference from the
 * CPU's -O0 lowering is the rescaling (about 1e-7 relative). See docs/gpu.md. */
#include "cg_gpu.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Queries per block (one thread each) and keys per staged tile. The kernel stages a tile
 * with FL_BK * d / FL_BQ loads a thread, so FL_BK is a multiple of FL_BQ. */
enum { FL_BQ = 32, FL_BK = 32, FL_MAX_D = 128 };

/* A matmul operand as the kernel reads it: the value, or the operand of one transpose, or
 * of two in a row (split_heads' [1, 0, 2] then k^T's swap), read through the composed
 * permutation. */
typedef struct FlView {
    const IrValue *v;       /* the logical operand ([..., rows, cols]) */
    const IrValue *src;     /* the buffer read: v, or the transposes' operand */
    bool           has_perm; /* false: src == v */
    uint8_t        perm[IR_MAX_RANK]; /* src index perm[i] is v's index i */
    IrOp          *tr, *tr2; /* the transposes read through (outer, inner), or NULL */
} FlView;

typedef struct Flash {
    IrOp  *qk, *scale, *sm, *pv;   /* scale: the div/mul, or NULL */
    IrOp  *cnst;                   /* the const c, or NULL */
    double c;
    bool   div;
    FlView q, kt, v;
    int64_t d, dv;
} Flash;

static bool is_f32(const IrValue *v)
{
    return v->dtype == DT_F32;
}

static bool one_use(const IrValue *v)
{
    return v->nuses == 1 && v->def != NULL && v->def->nres == 1;
}

static void view_of(const IrValue *v, FlView *w)
{
    *w = (FlView){ .v = v, .src = v };
    IrOp *t = v->def;
    if (!t || t->kind != IR_OP_TRANSPOSE || v->nuses != 1 || !is_f32(t->operands[0]))
        return;
    int r = v->shape.rank;
    w->src = t->operands[0];
    w->has_perm = true;
    memcpy(w->perm, t->attrs.perm, (size_t)r);
    w->tr = t;
    IrOp *u = w->src->def;   // a transpose of a transpose: read through both
    if (u && u->kind == IR_OP_TRANSPOSE && w->src->nuses == 1 && is_f32(u->operands[0])) {
        for (int i = 0; i < r; i++)
            w->perm[i] = u->attrs.perm[t->attrs.perm[i]];
        w->src = u->operands[0];
        w->tr2 = u;
    }
}

/* The scalar of a const op with every dim 1, or false. */
static bool scalar_const(const IrValue *c, double *out)
{
    if (!c->def || c->def->kind != IR_OP_CONST || !is_f32(c))
        return false;
    for (int i = 0; i < c->shape.rank; i++)
        if (!dim_is_const(c->shape.dims[i]) || c->shape.dims[i].c != 1)
            return false;
    *out = c->def->attrs.f;
    return true;
}

/* Whether pv ends a chain the kernel handles; fills f. */
static bool flash_match(IrOp *pv, Flash *f)
{
    if (pv->kind != IR_OP_MATMUL || !is_f32(pv->results[0]) || !is_f32(pv->operands[1]))
        return false;
    IrValue *p = pv->operands[0];
    if (!one_use(p) || p->def->kind != IR_OP_SOFTMAX || !is_f32(p))
        return false;
    IrOp *sm = p->def;
    IrMask mk = sm->attrs.mask;
    if (sm->nops != 1 || sm->attrs.axis != p->shape.rank - 1 || mk == IR_MASK_PADDING)
        return false;
    IrValue *s = sm->operands[0];
    if (!one_use(s) || !is_f32(s))
        return false;
    memset(f, 0, sizeof *f);
    f->sm = sm;
    f->pv = pv;
    f->c = 1.0;
    IrOp *def = s->def;
    if (def->kind == IR_OP_DIV || def->kind == IR_OP_MUL) {
        IrValue *a = def->operands[0], *b = def->operands[1];
        if (def->kind == IR_OP_MUL && scalar_const(a, &f->c)) {
            IrValue *t = a;
            a = b;
            b = t;
        } else if (!scalar_const(b, &f->c)) {
            return false;
        }
        if (!shape_eq(&a->shape, &s->shape) || !one_use(a))
            return false;
        f->scale = def;
        f->div = def->kind == IR_OP_DIV;
        f->cnst = b->nuses == 1 ? b->def : NULL;
        def = a->def;
    }
    if (def->kind != IR_OP_MATMUL || !is_f32(def->results[0]) || !is_f32(def->operands[0]) ||
        !is_f32(def->operands[1]))
        return false;
    f->qk = def;
    const IrValue *y = pv->results[0], *m = def->results[0];
    int r = y->shape.rank;
    if (m->shape.rank != r || r < 2)
        return false;
    for (int i = 0; i < r - 2; i++)
        if (!dim_eq(m->shape.dims[i], y->shape.dims[i]))
            return false;
    view_of(def->operands[0], &f->q);
    view_of(def->operands[1], &f->kt);
    view_of(pv->operands[1], &f->v);
    Dim d = f->q.v->shape.dims[f->q.v->shape.rank - 1], dv = y->shape.dims[r - 1];
    if (!dim_is_const(d) || !dim_is_const(dv) || d.c < 1 || dv.c < 1 || d.c > FL_MAX_D ||
        dv.c > FL_MAX_D)
        return false;
    f->d = d.c;
    f->dv = dv.c;
    return true;
}

static void mark(CgCpu *cg, IrOp *op)
{
    if (op)
        cg->absorbed[op->results[0]->id] = true;
}

static void plan_region(CgCpu *cg, IrRegion *r)
{
    for (IrOp *op = r->first; op; op = op->next) {
        Flash f;
        if (op->kind == IR_OP_LOOP && !op->attrs.has_until)   // cg_ptx.c drives these
            plan_region(cg, op->body);
        else if (flash_match(op, &f)) {
            mark(cg, f.qk);
            mark(cg, f.scale);
            mark(cg, f.cnst);
            mark(cg, f.sm);
            mark(cg, f.q.tr);
            mark(cg, f.kt.tr);
            mark(cg, f.v.tr);
            mark(cg, f.q.tr2);
            mark(cg, f.kt.tr2);
            mark(cg, f.v.tr2);
        }
    }
}

void cg_gpu_plan(CgCpu *cg)
{
    plan_region(cg, cg->m->funcs[0]->body);
}

/* Whether pv ends a chain cg_gpu_plan marked. */
static bool planned(const CgCpu *cg, const IrOp *pv, Flash *f)
{
    return flash_match((IrOp *)pv, f) && cg->absorbed[f->sm->results[0]->id];
}

uint32_t cg_gpu_flash_values(const CgCpu *cg, const IrOp *pv, const IrValue **out)
{
    Flash f;
    if (!planned(cg, pv, &f))
        return 0;
    out[0] = f.q.src;
    out[1] = f.kt.src;
    out[2] = f.v.src;
    out[3] = pv->results[0];
    return CG_GPU_FLASH_MAX_VALS;
}

/* ---- the kernel ---- */

/* Element (batch index yidx of the result y, row, col) of operand w. */
static LLVMValueRef view_load(CgCpu *cg, const FlView *w, const IrValue *y, LLVMValueRef *yidx,
                              LLVMValueRef row, LLVMValueRef col)
{
    LLVMValueRef vi[IR_MAX_RANK], si[IR_MAX_RANK];
    cg_gpu_operand_idx(w->v, y, yidx, row, col, vi);
    if (!w->has_perm)
        return cg_load(cg, w->src, cg_offset(cg, w->src, vi));
    for (int i = 0; i < w->v->shape.rank; i++)
        si[w->perm[i]] = vi[i];
    return cg_load(cg, w->src, cg_offset(cg, w->src, si));
}

static LLVMValueRef slt(CgCpu *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, "lt");
}

static LLVMValueRef smin(CgCpu *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(cg->b, slt(cg, a, b), a, b, "min");
}

static LLVMValueRef smax(CgCpu *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(cg->b, slt(cg, a, b), b, a, "max");
}

/* Whether key j is visible to query i (cg_lower.c's mask_allows, per batch entry). */
static LLVMValueRef visible(CgCpu *cg, const IrOp *sm, LLVMValueRef i, LLVMValueRef j)
{
    LLVMValueRef w = cg_i64(cg, sm->attrs.band);
    LLVMValueRef causal = LLVMBuildICmp(cg->b, LLVMIntSLE, j, i, "causal");
    LLVMValueRef near_lo = slt(cg, LLVMBuildSub(cg->b, i, j, "i-j"), w);
    switch (sm->attrs.mask) {
    case IR_MASK_CAUSAL:
        return causal;
    case IR_MASK_BAND:
        return LLVMBuildAnd(cg->b, near_lo, slt(cg, LLVMBuildSub(cg->b, j, i, "j-i"), w), "band");
    case IR_MASK_CAUSAL_BAND:
        return LLVMBuildAnd(cg->b, causal, near_lo, "causal_band");
    default:
        return LLVMConstInt(cg->t_i1, 1, false);
    }
}

/* The keys [lo, hi) that some query of [q0, q1) may see (q1 > q0). */
static void key_range(CgCpu *cg, const IrOp *sm, LLVMValueRef q0, LLVMValueRef q1,
                      LLVMValueRef Tk, LLVMValueRef *lo, LLVMValueRef *hi)
{
    LLVMValueRef w = cg_i64(cg, sm->attrs.band);
    LLVMValueRef zero = cg_i64(cg, 0);
    LLVMValueRef first = smax(cg, zero, LLVMBuildAdd(cg->b, LLVMBuildSub(cg->b, q0, w, "q0-w"),
                                                     cg_i64(cg, 1), "first"));
    *lo = zero;
    *hi = Tk;
    switch (sm->attrs.mask) {
    case IR_MASK_CAUSAL:
        *hi = smin(cg, Tk, q1);
        break;
    case IR_MASK_BAND:   // j < i + w for the last query i = q1 - 1
        *lo = first;
        *hi = smin(cg, Tk, LLVMBuildAdd(cg->b, LLVMBuildSub(cg->b, q1, cg_i64(cg, 1), "last"), w, "hi"));
        break;
    case IR_MASK_CAUSAL_BAND:
        *lo = first;
        *hi = smin(cg, Tk, q1);
        break;
    default:
        break;
    }
}

/* Pointer to element i of a shared array. */
static LLVMValueRef sh_at(CgCpu *cg, LLVMValueRef g, LLVMValueRef i)
{
    return LLVMBuildInBoundsGEP2(cg->b, cg->t_f32, g, &i, 1, "sh.p");
}

/* Pointer to element i (a constant) of a thread's [n x float] array. */
static LLVMValueRef reg_at(CgCpu *cg, LLVMValueRef a, int64_t n, int64_t i)
{
    LLVMValueRef idx[2] = { cg_i64(cg, 0), cg_i64(cg, i) };
    return LLVMBuildInBoundsGEP2(cg->b, LLVMArrayType2(cg->t_f32, (uint64_t)n), a, idx, 2, "r.p");
}

static LLVMValueRef fload(CgCpu *cg, LLVMValueRef p, const char *name)
{
    return LLVMBuildLoad2(cg->b, cg->t_f32, p, name);
}

/* Copies one tile of FL_BK keys starting at k0 of operand w (rows: keys; cols: n; for
 * kT the keys are its columns) into shared array sh, zeros past Tk: each thread copies
 * FL_BK * n / FL_BQ elements, consecutive threads consecutive elements. */
static void stage(CgCpu *cg, const FlView *w, bool keys_are_cols, LLVMValueRef sh, int64_t n,
                  const IrValue *y, LLVMValueRef *yidx, LLVMValueRef tid, LLVMValueRef k0,
                  LLVMValueRef Tk)
{
    CgFor r;
    cg_for_begin(cg, &r, cg_i64(cg, FL_BK / FL_BQ * n), "stage");
    LLVMValueRef e = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, r.i, cg_i64(cg, FL_BQ), "e0"), tid, "e");
    LLVMValueRef j = LLVMBuildUDiv(cg->b, e, cg_i64(cg, n), "j");
    LLVMValueRef c = LLVMBuildURem(cg->b, e, cg_i64(cg, n), "c");
    LLVMValueRef key = LLVMBuildAdd(cg->b, k0, j, "key");
    LLVMValueRef tmp = cg_alloca(cg, cg->t_f32, "st");
    LLVMBuildStore(cg->b, cg_f32c(cg, 0.0), tmp);
    LLVMBasicBlockRef in = cg_block(cg, "st.in"), join = cg_block(cg, "st.join");
    LLVMBuildCondBr(cg->b, slt(cg, key, Tk), in, join);
    LLVMPositionBuilderAtEnd(cg->b, in);
    LLVMValueRef x = keys_are_cols ? view_load(cg, w, y, yidx, c, key) : view_load(cg, w, y, yidx, key, c);
    LLVMBuildStore(cg->b, x, tmp);
    LLVMBuildBr(cg->b, join);
    LLVMPositionBuilderAtEnd(cg->b, join);
    LLVMBuildStore(cg->b, fload(cg, tmp, "st.v"), sh_at(cg, sh, e));
    cg_for_end(cg, &r);
}

/* The kernel's per-thread state. */
typedef struct FlState {
    LLVMValueRef q, acc;      /* [d], [dv] float arrays */
    LLVMValueRef m, l;        /* running maximum and sum */
    LLVMValueRef ks, vs, ss;  /* shared: k tile [FL_BK][d], v tile [FL_BK][dv], scores [FL_BQ][FL_BK+1] */
} FlState;

/* Pass 1 over a staged tile: the row's scores (-inf where hidden) into ss, and their
 * maximum. */
static LLVMValueRef tile_scores(CgCpu *cg, const Flash *f, const FlState *st, LLVMValueRef tid,
                                LLVMValueRef i, LLVMValueRef k0, LLVMValueRef Tk)
{
    LLVMValueRef mt = cg_alloca(cg, cg->t_f32, "tile.max");
    LLVMBuildStore(cg->b, cg_f32c(cg, -INFINITY), mt);
    LLVMValueRef srow = LLVMBuildMul(cg->b, tid, cg_i64(cg, FL_BK + 1), "s.row");
    CgFor j;
    cg_for_begin(cg, &j, cg_i64(cg, FL_BK), "score");
    LLVMValueRef key = LLVMBuildAdd(cg->b, k0, j.i, "key");
    LLVMValueRef ok = LLVMBuildAnd(cg->b, slt(cg, key, Tk), visible(cg, f->sm, i, key), "seen");
    LLVMValueRef kb = LLVMBuildMul(cg->b, j.i, cg_i64(cg, f->d), "k.row");
    LLVMValueRef dot = cg_f32c(cg, 0.0);
    for (int64_t c = 0; c < f->d; c++) {   // unrolled: q stays in registers
        LLVMValueRef kc = fload(cg, sh_at(cg, st->ks, LLVMBuildAdd(cg->b, kb, cg_i64(cg, c), "kc")), "k");
        LLVMValueRef qc = fload(cg, reg_at(cg, st->q, f->d, c), "q");
        dot = LLVMBuildFAdd(cg->b, dot, LLVMBuildFMul(cg->b, qc, kc, "qk"), "dot");
    }
    LLVMValueRef s = dot;
    if (f->scale)
        s = f->div ? LLVMBuildFDiv(cg->b, dot, cg_f32c(cg, f->c), "s")
                   : LLVMBuildFMul(cg->b, dot, cg_f32c(cg, f->c), "s");
    s = LLVMBuildSelect(cg->b, ok, s, cg_f32c(cg, -INFINITY), "s.m");
    LLVMBuildStore(cg->b, s, sh_at(cg, st->ss, LLVMBuildAdd(cg->b, srow, j.i, "s.at")));
    LLVMValueRef m0 = fload(cg, mt, "mt");
    LLVMValueRef gt = LLVMBuildFCmp(cg->b, LLVMRealOGT, s, m0, "gt");
    LLVMBuildStore(cg->b, LLVMBuildSelect(cg->b, gt, s, m0, "mt.next"), mt);
    cg_for_end(cg, &j);
    return fload(cg, mt, "tile.max");
}

/* Online softmax step for one staged tile: rescale l and acc to the new maximum, then add
 * exp(s - m) and exp(s - m) * v of each visible key. */
static void tile_accumulate(CgCpu *cg, const Flash *f, const FlState *st, LLVMValueRef tid,
                            LLVMValueRef mt)
{
    LLVMValueRef ninf = cg_f32c(cg, -INFINITY);
    LLVMValueRef m0 = fload(cg, st->m, "m");
    LLVMValueRef m1 = LLVMBuildSelect(cg->b, LLVMBuildFCmp(cg->b, LLVMRealOGT, mt, m0, "gt"), mt, m0, "m.new");
    LLVMValueRef any = LLVMBuildFCmp(cg->b, LLVMRealOGT, m1, ninf, "any");
    LLVMValueRef dm = LLVMBuildFSub(cg->b, m0, m1, "dm");
    LLVMValueRef e = cg_call_intrinsic(cg, "llvm.exp", &dm, 1, "corr");
    LLVMValueRef corr = LLVMBuildSelect(cg->b, any, e, cg_f32c(cg, 1.0), "corr");
    LLVMBuildStore(cg->b, m1, st->m);
    LLVMBuildStore(cg->b, LLVMBuildFMul(cg->b, fload(cg, st->l, "l"), corr, "l.r"), st->l);
    for (int64_t c = 0; c < f->dv; c++) {
        LLVMValueRef p = reg_at(cg, st->acc, f->dv, c);
        LLVMBuildStore(cg->b, LLVMBuildFMul(cg->b, fload(cg, p, "a"), corr, "a.r"), p);
    }
    LLVMValueRef srow = LLVMBuildMul(cg->b, tid, cg_i64(cg, FL_BK + 1), "s.row");
    CgFor j;
    cg_for_begin(cg, &j, cg_i64(cg, FL_BK), "pv");
    LLVMValueRef s = fload(cg, sh_at(cg, st->ss, LLVMBuildAdd(cg->b, srow, j.i, "s.at")), "s");
    LLVMValueRef ds = LLVMBuildFSub(cg->b, s, m1, "sm");
    LLVMValueRef ex = cg_call_intrinsic(cg, "llvm.exp", &ds, 1, "e");
    LLVMValueRef seen = LLVMBuildFCmp(cg->b, LLVMRealOGT, s, ninf, "seen");
    LLVMValueRef pr = LLVMBuildSelect(cg->b, seen, ex, cg_f32c(cg, 0.0), "p");
    LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, fload(cg, st->l, "l"), pr, "l.next"), st->l);
    LLVMValueRef vb = LLVMBuildMul(cg->b, j.i, cg_i64(cg, f->dv), "v.row");
    for (int64_t c = 0; c < f->dv; c++) {   // unrolled: acc stays in registers
        LLVMValueRef vc = fload(cg, sh_at(cg, st->vs, LLVMBuildAdd(cg->b, vb, cg_i64(cg, c), "vc")), "v");
        LLVMValueRef p = reg_at(cg, st->acc, f->dv, c);
        LLVMValueRef a = LLVMBuildFAdd(cg->b, fload(cg, p, "a"), LLVMBuildFMul(cg->b, pr, vc, "pv"), "a.next");
        LLVMBuildStore(cg->b, a, p);
    }
    cg_for_end(cg, &j);
}

static LLVMValueRef div_up(CgCpu *cg, LLVMValueRef n, int64_t by)
{
    LLVMValueRef n1 = LLVMBuildAdd(cg->b, n, cg_i64(cg, by - 1), "up");
    return LLVMBuildSDiv(cg->b, n1, cg_i64(cg, by), "tiles");
}

/* Batch entries and query tiles of y. */
static LLVMValueRef grid_blocks(CgCpu *cg, const IrValue *y, LLVMValueRef *nqt)
{
    int r = y->shape.rank;
    LLVMValueRef batch = cg_i64(cg, 1);
    for (int j = 0; j < r - 2; j++)
        batch = LLVMBuildMul(cg->b, batch, cg_dim(cg, y->shape.dims[j]), "batch");
    *nqt = div_up(cg, cg_dim(cg, y->shape.dims[r - 2]), FL_BQ);
    return LLVMBuildMul(cg->b, batch, *nqt, "blocks");
}

void cg_gpu_flash(CgCpu *cg, IrOp *pv)
{
    Flash f;
    bool ok = planned(cg, pv, &f);
    assert(ok && "cg_gpu_flash on a chain cg_gpu_plan did not mark");
    (void)ok;
    IrValue *y = pv->results[0];
    int r = y->shape.rank;
    LLVMValueRef nqt;
    LLVMValueRef threads = LLVMBuildMul(cg->b, grid_blocks(cg, y, &nqt), cg_i64(cg, FL_BQ), "threads");
    char nm[160];
    snprintf(nm, sizeof nm, "flash.%s", cg_name(cg, y));
    CgPar par;
    cg_gpu_kernel_begin(cg, &par, pv, threads, nm, FL_BQ, false);
    grid_blocks(cg, y, &nqt);   // again, from the kernel's own symbols
    LLVMValueRef Tq = cg_dim(cg, y->shape.dims[r - 2]);
    LLVMValueRef Tk = cg_dim(cg, f.sm->results[0]->shape.dims[r - 1]);
    LLVMValueRef tid = cg_gpu_sreg(cg, "llvm.nvvm.read.ptx.sreg.tid.x");
    LLVMValueRef cta = cg_gpu_sreg(cg, "llvm.nvvm.read.ptx.sreg.ctaid.x");
    LLVMValueRef qt = LLVMBuildURem(cg->b, cta, nqt, "q.tile");
    LLVMValueRef rest = LLVMBuildUDiv(cg->b, cta, nqt, "batch.i");
    LLVMValueRef yidx[IR_MAX_RANK];
    cg_gpu_batch_index(cg, y, rest, yidx);
    LLVMValueRef q0 = LLVMBuildMul(cg->b, qt, cg_i64(cg, FL_BQ), "q0");
    LLVMValueRef i = LLVMBuildAdd(cg->b, q0, tid, "i");
    LLVMValueRef row_ok = slt(cg, i, Tq);
    LLVMValueRef irow = LLVMBuildSelect(cg->b, row_ok, i, cg_i64(cg, 0), "i.in");

    FlState st;
    char sn[64];
    snprintf(sn, sizeof sn, "tfx.flash.k%lld", (long long)f.d);
    st.ks = cg_gpu_shared(cg, sn, (uint64_t)(FL_BK * f.d));
    snprintf(sn, sizeof sn, "tfx.flash.v%lld", (long long)f.dv);
    st.vs = cg_gpu_shared(cg, sn, (uint64_t)(FL_BK * f.dv));
    st.ss = cg_gpu_shared(cg, "tfx.flash.s", FL_BQ * (FL_BK + 1));
    st.q = cg_alloca(cg, LLVMArrayType2(cg->t_f32, (uint64_t)f.d), "q");
    st.acc = cg_alloca(cg, LLVMArrayType2(cg->t_f32, (uint64_t)f.dv), "acc");
    st.m = cg_alloca(cg, cg->t_f32, "m");
    st.l = cg_alloca(cg, cg->t_f32, "l");
    LLVMBuildStore(cg->b, cg_f32c(cg, -INFINITY), st.m);
    LLVMBuildStore(cg->b, cg_f32c(cg, 0.0), st.l);
    // the row's q (a thread past Tq reads row 0 and stores nothing)
    for (int64_t c = 0; c < f.d; c++)
        LLVMBuildStore(cg->b, view_load(cg, &f.q, y, yidx, irow, cg_i64(cg, c)), reg_at(cg, st.q, f.d, c));
    for (int64_t c = 0; c < f.dv; c++)
        LLVMBuildStore(cg->b, cg_f32c(cg, 0.0), reg_at(cg, st.acc, f.dv, c));

    // the key tiles some query of the tile sees; the same for every thread of the block
    LLVMValueRef q1 = smin(cg, LLVMBuildAdd(cg->b, q0, cg_i64(cg, FL_BQ), "q.end"), Tq);
    LLVMValueRef lo, hi;
    key_range(cg, f.sm, q0, q1, Tk, &lo, &hi);
    LLVMValueRef t0 = LLVMBuildSDiv(cg->b, lo, cg_i64(cg, FL_BK), "kt.lo");
    LLVMValueRef t1 = smax(cg, t0, div_up(cg, hi, FL_BK));
    CgFor kt;
    cg_for_range(cg, &kt, t0, t1, "ktile");
    LLVMValueRef k0 = LLVMBuildMul(cg->b, kt.i, cg_i64(cg, FL_BK), "k0");
    stage(cg, &f.kt, true, st.ks, f.d, y, yidx, tid, k0, Tk);
    stage(cg, &f.v, false, st.vs, f.dv, y, yidx, tid, k0, Tk);
    cg_gpu_barrier(cg);
    LLVMValueRef mt = tile_scores(cg, &f, &st, tid, i, k0, Tk);
    tile_accumulate(cg, &f, &st, tid, mt);
    cg_gpu_barrier(cg);   // before the next tile overwrites ks and vs
    cg_for_end(cg, &kt);

    // y[b..., i, :] = acc / l, or zeros when the row saw no key
    LLVMBasicBlockRef store = cg_block(cg, "store"), done = cg_block(cg, "done");
    LLVMBuildCondBr(cg->b, row_ok, store, done);
    LLVMPositionBuilderAtEnd(cg->b, store);
    LLVMValueRef l = fload(cg, st.l, "l");
    LLVMValueRef any = LLVMBuildFCmp(cg->b, LLVMRealOGT, l, cg_f32c(cg, 0.0), "any");
    yidx[r - 2] = i;
    for (int64_t c = 0; c < f.dv; c++) {
        LLVMValueRef a = fload(cg, reg_at(cg, st.acc, f.dv, c), "a");
        LLVMValueRef o = LLVMBuildSelect(cg->b, any, LLVMBuildFDiv(cg->b, a, l, "o"), cg_f32c(cg, 0.0), "o");
        yidx[r - 1] = cg_i64(cg, c);
        cg_store(cg, y, cg_offset(cg, y, yidx), o);
    }
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    cg_gpu_par_end(cg, &par);
}
