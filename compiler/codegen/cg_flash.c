/* cg_flash.c - attention as one flash-style kernel on the CPU (f32, -O1 and above). The
 * planner (cg_flash_plan) finds `softmax(q @ k^T [/ c | * c], mask) @ v` chains whose
 * intermediates have no other use and marks them absorbed, so the [.., T, S] scores and
 * probabilities never get a buffer; cg_flash_lower then computes the final matmul tile by
 * tile with an online softmax (running max and sum per query, the accumulator rescaled),
 * skipping key tiles the mask hides. Called from cg_cpu_emit (plan) and lower_op (lower).
 * See docs/codegen.md "Flash attention" for the tile shapes and the arithmetic. */
#include "cg_int.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FLASH_BC keys per key tile; head dims above FLASH_MAX_D stay unfused (the Q^T and O^T
 * tiles live on the stack: 2 x FLASH_MAX_D x 64 floats at most). */
enum { FLASH_BC = 64, FLASH_MAX_D = 256, FLASH_MAX_NV = 4, FLASH_MAX_MR = 6 };

/* The ops of one recognised attention chain. */
typedef struct FlashChain {
    IrOp    *root;      /* y = matmul p, v */
    IrOp    *softmax;   /* p = softmax s {axis = last, mask} */
    IrOp    *scale;     /* s = div raw, c / mul raw, c; NULL when s is raw itself */
    IrOp    *qk;        /* raw = matmul q, kt */
    IrOp    *trans;     /* kt = transpose k (the last two axes swapped) */
    IrValue *q, *k, *v; /* q: [.., T, D], k: [.., S, D], v: [.., S, Dv] */
    float    mul;       /* the scores are (q * mul) . k: 1/c for div, c for mul */
} FlashChain;

/* Compile-time shape of the kernel for one target. */
typedef struct Flash {
    FlashChain   c;
    int          vw;      /* floats per vector: 16 (AVX-512), 8 (AVX2) or 1 (scalar) */
    int          nv;      /* vectors per query tile */
    int          br;      /* queries per tile = nv * vw: one per vector lane */
    int          mr;      /* keys per register block of S = Q K^T */
    int          md;      /* head-dim rows per register block of O += P V */
    int64_t      D, Dv;   /* head dims of q/k and of v */
    LLVMTypeRef  t_vec;   /* <vw x float>, or float when vw == 1 */
    LLVMTypeRef  t_ivec;  /* <vw x i32>, or i32 */
    LLVMValueRef qt;      /* [D][br] floats: the query tile transposed, times c.mul */
    LLVMValueRef st;      /* [FLASH_BC + mr][br]: scores, then probabilities, key-major */
    LLVMValueRef ot;      /* [Dv][br]: the output tile transposed (unnormalised) */
    LLVMValueRef inv;     /* [br]: 1 / sum per query, 0 for a query with no visible key */
    LLVMValueRef m[FLASH_MAX_NV], l[FLASH_MAX_NV]; /* running max and sum, one vector each */
} Flash;

/* ---- recognising the chain ---- */

static bool is_f32(const IrValue *v)
{
    return v->dtype == DT_F32;
}

/* Whether v is an f32 `const` with one element; its value in *out. */
static bool scalar_const(const IrValue *v, double *out)
{
    const IrOp *d = v->def;
    if (!d || d->kind != IR_OP_CONST || !is_f32(v))
        return false;
    for (int j = 0; j < v->shape.rank; j++)
        if (!dim_is_const(v->shape.dims[j]) || v->shape.dims[j].c != 1)
            return false;
    *out = d->attrs.f;
    return true;
}

/* Whether head dim d is a constant the kernel's stack tiles hold. */
static bool small_const_dim(Dim d)
{
    return dim_is_const(d) && d.c >= 1 && d.c <= FLASH_MAX_D;
}

/* s = raw, raw / c, raw * c or c * raw with a scalar constant c: fills c->scale, c->mul
 * and returns raw (NULL when s is none of these). */
static IrValue *match_scale(IrValue *s, FlashChain *c)
{
    IrOp *d = s->def;
    c->scale = NULL;
    c->mul = 1.0f;
    if (!d || (d->kind != IR_OP_DIV && d->kind != IR_OP_MUL))
        return s;
    double k;
    IrValue *raw = NULL;
    if (scalar_const(d->operands[1], &k))
        raw = d->operands[0];
    else if (d->kind == IR_OP_MUL && scalar_const(d->operands[0], &k))
        raw = d->operands[1];
    if (!raw || !shape_eq(&raw->shape, &s->shape) || raw->nuses != 1)
        return NULL;
    if (d->kind == IR_OP_DIV && k == 0.0)
        return NULL;   // x / 0 is inf or NaN: leave that to the plain lowering
    c->scale = d;
    c->mul = d->kind == IR_OP_DIV ? (float)(1.0 / k) : (float)k;
    return raw;
}

/* Whether root is y = softmax(q @ k^T [scaled], mask) @ v as the kernel computes it. */
static bool match_chain(const CgCpu *cg, IrOp *root, FlashChain *c)
{
    memset(c, 0, sizeof *c);
    if (root->kind != IR_OP_MATMUL || cg->opt_level < 1 || cg->gpu || !is_f32(root->results[0]))
        return false;
    IrValue *p = root->operands[0];
    c->root = root;
    c->v = root->operands[1];
    c->softmax = p->def;
    if (!c->softmax || c->softmax->kind != IR_OP_SOFTMAX || p->nuses != 1 || p == c->v)
        return false;
    IrValue *s = c->softmax->operands[0];
    // Not @step's softmax (a query offset P, passes/decode.c): its one-token decode steps
    // would fill one of the kernel's 64 query lanes and waste the rest, where the plain
    // lowering runs two matrix-vector products; its prefill stays unfused with it.
    Dim qoff = ir_softmax_qoff(c->softmax);
    if (c->softmax->attrs.mask == IR_MASK_PADDING || s->nuses != 1 || !is_f32(s) || !is_f32(p)
        || c->softmax->attrs.axis != s->shape.rank - 1 || s->shape.rank < 2
        || !dim_is_const(qoff) || qoff.c != 0)
        return false;
    IrValue *raw = match_scale(s, c);
    if (!raw || !raw->def || raw->def->kind != IR_OP_MATMUL)
        return false;
    c->qk = raw->def;
    c->q = c->qk->operands[0];
    IrValue *kt = c->qk->operands[1];
    c->trans = kt->def;
    if (!c->trans || c->trans->kind != IR_OP_TRANSPOSE || !cg_swaps_last_two(c->trans))
        return false;
    c->k = c->trans->operands[0];
    if (!is_f32(c->q) || !is_f32(c->k) || !is_f32(c->v) || !is_f32(raw)
        || c->q->shape.rank < 2 || c->k->shape.rank < 2 || c->v->shape.rank < 2)
        return false;
    const Shape *qs = &c->q->shape, *vs = &c->v->shape;
    return small_const_dim(qs->dims[qs->rank - 1]) && small_const_dim(vs->dims[vs->rank - 1]);
}

static void plan_op(IrOp *op, void *vcg)
{
    CgCpu *cg = vcg;
    FlashChain c;
    if (!match_chain(cg, op, &c))
        return;
    cg->absorbed[c.softmax->results[0]->id] = true;
    cg->absorbed[c.softmax->operands[0]->id] = true;
    cg->absorbed[c.qk->results[0]->id] = true;
    if (c.trans->results[0]->nuses == 1)   // else another op reads k^T: it is still made
        cg->absorbed[c.trans->results[0]->id] = true;
}

void cg_flash_plan(CgCpu *cg)
{
    if (cg->gpu || cg->opt_level < 1)
        return;
    for (uint32_t i = 0; i < cg->m->nfuncs; i++)   // @main, and @step when there is one
        ir_region_walk(cg->m->funcs[i]->body, plan_op, cg);
}

bool cg_flash_root(const CgCpu *cg, IrOp *op)
{
    FlashChain c;
    return match_chain(cg, op, &c) && cg->absorbed[op->operands[0]->id];
}

/* ---- small builders ---- */

static LLVMValueRef fgep(CgCpu *cg, LLVMValueRef p, LLVMValueRef off, const char *nm)
{
    return LLVMBuildInBoundsGEP2(cg->b, cg->t_f32, p, &off, 1, nm);
}

static LLVMValueRef add(CgCpu *cg, LLVMValueRef a, LLVMValueRef b, const char *nm)
{
    return LLVMBuildAdd(cg->b, a, b, nm);
}

static LLVMValueRef sub(CgCpu *cg, LLVMValueRef a, LLVMValueRef b, const char *nm)
{
    return LLVMBuildSub(cg->b, a, b, nm);
}

static LLVMValueRef mul(CgCpu *cg, LLVMValueRef a, LLVMValueRef b, const char *nm)
{
    return LLVMBuildMul(cg->b, a, b, nm);
}

static LLVMValueRef imin(CgCpu *cg, LLVMValueRef a, LLVMValueRef b, const char *nm)
{
    return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, "lt"), a, b, nm);
}

static LLVMValueRef imax(CgCpu *cg, LLVMValueRef a, LLVMValueRef b, const char *nm)
{
    return LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, a, b, "gt"), a, b, nm);
}

/* (a + b - 1) / b for a >= 0 and a constant b > 0. */
static LLVMValueRef ceil_div(CgCpu *cg, LLVMValueRef a, int64_t b, const char *nm)
{
    return LLVMBuildSDiv(cg->b, add(cg, a, cg_i64(cg, b - 1), "ceil.sum"), cg_i64(cg, b), nm);
}

/* A float array on the stack, 64-byte aligned: every vector the kernel loads or stores
 * is in such an array at a multiple of its own size, so plain (naturally aligned) vector
 * loads and stores are right. */
static LLVMValueRef stack_array(CgCpu *cg, int64_t n, const char *nm)
{
    LLVMValueRef p = cg_alloca(cg, LLVMArrayType2(cg->t_f32, (uint64_t)n), nm);
    LLVMSetAlignment(p, 64);
    return p;
}

/* x (a float or an i32) in every lane. */
static LLVMValueRef splat(CgCpu *cg, Flash *f, LLVMValueRef x)
{
    if (f->vw == 1)
        return x;
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(x), (unsigned)f->vw);
    LLVMValueRef ins = LLVMBuildInsertElement(cg->b, LLVMGetPoison(vt), x,
                                              LLVMConstInt(cg->t_i32, 0, false), "ins");
    LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(cg->t_i32, (unsigned)f->vw));
    return LLVMBuildShuffleVector(cg->b, ins, LLVMGetPoison(vt), zeros, "splat");
}

/* A constant (float or i32) in every lane. */
static LLVMValueRef lanes(Flash *f, LLVMValueRef c)
{
    if (f->vw == 1)
        return c;
    LLVMValueRef e[16];
    for (int i = 0; i < f->vw; i++)
        e[i] = c;
    return LLVMConstVector(e, (unsigned)f->vw);
}

static LLVMValueRef vconst(CgCpu *cg, Flash *f, double x)
{
    return lanes(f, cg_f32c(cg, x));
}

static LLVMValueRef iconst(CgCpu *cg, Flash *f, int32_t x)
{
    return lanes(f, LLVMConstInt(cg->t_i32, (unsigned long long)(int64_t)x, true));
}

/* <0, 1, .., vw-1>: each lane's index (0 when scalar). */
static LLVMValueRef lane_index(CgCpu *cg, Flash *f)
{
    if (f->vw == 1)
        return LLVMConstInt(cg->t_i32, 0, false);
    LLVMValueRef e[16];
    for (int i = 0; i < f->vw; i++)
        e[i] = LLVMConstInt(cg->t_i32, (unsigned long long)i, false);
    return LLVMConstVector(e, (unsigned)f->vw);
}

/* a * b + c: llvm.fma on vectors; a multiply and an add in the scalar fallback, whose
 * targets may lack FMA (llvm.fma would become a call of libm's fmaf there). */
static LLVMValueRef fmadd(CgCpu *cg, Flash *f, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    if (f->vw == 1)
        return LLVMBuildFAdd(cg->b, LLVMBuildFMul(cg->b, a, b, "prod"), c, "fma");
    unsigned id = LLVMLookupIntrinsicID("llvm.fma", 8);
    LLVMTypeRef ft = LLVMIntrinsicGetType(cg->llctx, id, &f->t_vec, 1);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, &f->t_vec, 1);
    LLVMValueRef args[3] = { a, b, c };
    return LLVMBuildCall2(cg->b, ft, fn, args, 3, "fma");
}

static LLVMValueRef fsel_gt(CgCpu *cg, LLVMValueRef a, LLVMValueRef b, const char *nm)
{
    LLVMValueRef gt = LLVMBuildFCmp(cg->b, LLVMRealOGT, a, b, "gt");
    return LLVMBuildSelect(cg->b, gt, a, b, nm);
}

/* ---- exp on float vectors ---- */

/* e^x for x <= 88.37 with a few ulp of error: x = n ln2 + r with |r| <= ln2/2 (ln2 split
 * in two so n ln2 is exact), e^r by a degree-7 polynomial (1 + r + r^2 P(r), Cephes'
 * expf coefficients) and 2^n built in the exponent bits. Below -87.33 (e^x under the
 * smallest normal float) and for -inf the result is 0. Round to nearest uses the 1.5 2^23
 * trick, so no rounding intrinsic is needed on targets without SSE4.1. */
static LLVMValueRef vexp(CgCpu *cg, Flash *f, LLVMValueRef x)
{
    LLVMBuilderRef B = cg->b;
    LLVMValueRef lo = vconst(cg, f, -87.33654), hi = vconst(cg, f, 88.37626);
    LLVMValueRef under = LLVMBuildFCmp(B, LLVMRealOLT, x, lo, "exp.under");
    LLVMValueRef xc = LLVMBuildSelect(B, under, lo, x, "exp.lo");
    xc = LLVMBuildSelect(B, LLVMBuildFCmp(B, LLVMRealOGT, xc, hi, "exp.over"), hi, xc, "exp.x");
    LLVMValueRef magic = vconst(cg, f, 12582912.0);   // 1.5 * 2^23
    LLVMValueRef t = fmadd(cg, f, xc, vconst(cg, f, 1.44269504088896341), magic);
    LLVMValueRef n = LLVMBuildFSub(B, t, magic, "exp.n");
    LLVMValueRef r = fmadd(cg, f, n, vconst(cg, f, -0.693359375), xc);
    r = fmadd(cg, f, n, vconst(cg, f, 2.12194440e-4), r);
    static const double P[] = { 1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1 };
    LLVMValueRef p = vconst(cg, f, P[0]);
    for (int i = 1; i < 6; i++)
        p = fmadd(cg, f, p, r, vconst(cg, f, P[i]));
    LLVMValueRef r2 = LLVMBuildFMul(B, r, r, "exp.r2");
    LLVMValueRef e = fmadd(cg, f, p, r2, LLVMBuildFAdd(B, r, vconst(cg, f, 1.0), "exp.r1"));
    LLVMValueRef ni = LLVMBuildFPToSI(B, n, f->t_ivec, "exp.ni");
    LLVMValueRef bits = LLVMBuildShl(B, LLVMBuildAdd(B, ni, iconst(cg, f, 127), "exp.b"),
                                     iconst(cg, f, 23), "exp.bits");
    LLVMValueRef two_n = LLVMBuildBitCast(B, bits, f->t_vec, "exp.2n");
    LLVMValueRef y = LLVMBuildFMul(B, e, two_n, "exp");
    return LLVMBuildSelect(B, under, vconst(cg, f, 0.0), y, "exp.or0");
}

/* ---- the kernel's pieces ---- */

/* Floats per vector for this target, as the GEMM picks them (cg_gemm.c). */
static void flash_init(CgCpu *cg, Flash *f, const FlashChain *c)
{
    memset(f, 0, sizeof *f);
    f->c = *c;
    f->vw = cg_vector_width(cg);
    if (f->vw == 16) {
        f->nv = 4, f->mr = 6, f->md = 6;    // 24 accumulators of 32 registers
    } else if (f->vw == 8) {
        f->nv = 2, f->mr = 6, f->md = 6;    // 12 of 16
    } else {
        f->nv = 4, f->mr = 4, f->md = 4;
    }
    f->br = f->nv * f->vw;
    const Shape *qs = &c->q->shape, *vs = &c->v->shape;
    f->D = qs->dims[qs->rank - 1].c;
    f->Dv = vs->dims[vs->rank - 1].c;
    f->t_vec = f->vw == 1 ? cg->t_f32 : LLVMVectorType(cg->t_f32, (unsigned)f->vw);
    f->t_ivec = f->vw == 1 ? cg->t_i32 : LLVMVectorType(cg->t_i32, (unsigned)f->vw);
}

/* qt[d*br + i] = q[(i0+i)*D + d] * mul for i < nq, 0 for the lanes past the last query. */
static void pack_q(CgCpu *cg, Flash *f, LLVMValueRef pq, LLVMValueRef i0, LLVMValueRef nq)
{
    CgFor li, ld;
    cg_for_begin(cg, &li, cg_i64(cg, f->br), "fl.pack.i");
    LLVMValueRef in = LLVMBuildICmp(cg->b, LLVMIntSLT, li.i, nq, "in");
    // a lane past the last query reads query i0 (inside q) and stores 0
    LLVMValueRef row = add(cg, i0, LLVMBuildSelect(cg->b, in, li.i, cg_i64(cg, 0), "ic"), "q.row");
    LLVMValueRef src = fgep(cg, pq, mul(cg, row, cg_i64(cg, f->D), "q.off"), "q.i");
    cg_for_begin(cg, &ld, cg_i64(cg, f->D), "fl.pack.d");
    LLVMValueRef x = LLVMBuildLoad2(cg->b, cg->t_f32, fgep(cg, src, ld.i, "q.d"), "q");
    x = LLVMBuildFMul(cg->b, x, cg_f32c(cg, f->c.mul), "q.scaled");
    x = LLVMBuildSelect(cg->b, in, x, cg_f32c(cg, 0.0), "q.or0");
    LLVMValueRef at = add(cg, mul(cg, ld.i, cg_i64(cg, f->br), "qt.row"), li.i, "qt.off");
    LLVMBuildStore(cg->b, x, fgep(cg, f->qt, at, "qt.p"));
    cg_for_end(cg, &ld);
    cg_for_end(cg, &li);
}

/* S^T = K Q^T for keys [j0, j0 + nk) of the tile, mr keys at a time: st[j*br + i] =
 * sum_d k[(j0+j)*D + d] * qt[d*br + i], summed in d order with one fma per term. The keys
 * of the last block past nk repeat key nk-1 (inside k); their rows are never read. */
static void tile_scores(CgCpu *cg, Flash *f, LLVMValueRef pk, LLVMValueRef j0, LLVMValueRef nk)
{
    int mr = f->mr, nv = f->nv;
    LLVMValueRef acc[FLASH_MAX_MR][FLASH_MAX_NV], kp[FLASH_MAX_MR];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            acc[r][v] = cg_alloca(cg, f->t_vec, "s.acc");
    LLVMValueRef last = sub(cg, nk, cg_i64(cg, 1), "last");
    CgFor lb, ld;
    cg_for_begin(cg, &lb, ceil_div(cg, nk, mr, "s.blocks"), "fl.s.blk");
    LLVMValueRef j = mul(cg, lb.i, cg_i64(cg, mr), "j");
    for (int r = 0; r < mr; r++) {
        LLVMValueRef jr = imin(cg, add(cg, j, cg_i64(cg, r), "jr"), last, "jr.in");
        LLVMValueRef row = mul(cg, add(cg, j0, jr, "key"), cg_i64(cg, f->D), "k.off");
        kp[r] = fgep(cg, pk, row, "k.row");
        for (int v = 0; v < nv; v++)
            LLVMBuildStore(cg->b, LLVMConstNull(f->t_vec), acc[r][v]);
    }
    cg_for_begin(cg, &ld, cg_i64(cg, f->D), "fl.s.d");
    LLVMValueRef qrow = fgep(cg, f->qt, mul(cg, ld.i, cg_i64(cg, f->br), "qt.row"), "qt.d");
    LLVMValueRef qv[FLASH_MAX_NV];
    for (int v = 0; v < nv; v++)
        qv[v] = LLVMBuildLoad2(cg->b, f->t_vec, fgep(cg, qrow, cg_i64(cg, v * f->vw), "qt.v"), "q");
    for (int r = 0; r < mr; r++) {
        LLVMValueRef x = LLVMBuildLoad2(cg->b, cg->t_f32, fgep(cg, kp[r], ld.i, "k.d"), "k");
        LLVMValueRef xs = splat(cg, f, x);
        for (int v = 0; v < nv; v++) {
            LLVMValueRef s = LLVMBuildLoad2(cg->b, f->t_vec, acc[r][v], "s");
            LLVMBuildStore(cg->b, fmadd(cg, f, xs, qv[v], s), acc[r][v]);
        }
    }
    cg_for_end(cg, &ld);
    for (int r = 0; r < mr; r++) {
        LLVMValueRef row = mul(cg, add(cg, j, cg_i64(cg, r), "jr"), cg_i64(cg, f->br), "st.row");
        for (int v = 0; v < nv; v++) {
            LLVMValueRef s = LLVMBuildLoad2(cg->b, f->t_vec, acc[r][v], "s");
            LLVMValueRef at = add(cg, row, cg_i64(cg, v * f->vw), "st.off");
            LLVMBuildStore(cg->b, s, fgep(cg, f->st, at, "st.p"));
        }
    }
    cg_for_end(cg, &lb);
}

/* The mask's w, clamped to [0, 2^40]: windows are at most T wide, and the clamp keeps
 * key +- w from overflowing. */
static int64_t band_width(const Flash *f)
{
    int64_t w = f->c.softmax->attrs.band;
    return w > ((int64_t)1 << 40) ? (int64_t)1 << 40 : w < 0 ? 0 : w;
}

/* x clamped to [0, vw], as an i32. */
static LLVMValueRef lane_bound(CgCpu *cg, Flash *f, LLVMValueRef x)
{
    x = imax(cg, imin(cg, x, cg_i64(cg, f->vw), "b.hi"), cg_i64(cg, 0), "b.lo");
    return LLVMBuildTrunc(cg->b, x, cg->t_i32, "bound");
}

/* The lanes of vector v whose query i = base + lane sees key `key` (docs/ir.md masks):
 * lo <= lane < hi with lo and hi from the mask, clamped to [0, vw]. NULL for mask none. */
static LLVMValueRef visible(CgCpu *cg, Flash *f, LLVMValueRef key, LLVMValueRef base)
{
    IrMask mk = f->c.softmax->attrs.mask;
    if (mk == IR_MASK_NONE)
        return NULL;
    int64_t w = band_width(f);
    LLVMValueRef rel = sub(cg, key, base, "rel"), lo, hi;   // j - base: j <= i iff lane >= rel
    if (mk == IR_MASK_CAUSAL) {
        lo = rel, hi = cg_i64(cg, f->vw);
    } else if (mk == IR_MASK_BAND) {   // j - w < i < j + w
        lo = add(cg, rel, cg_i64(cg, 1 - w), "lo"), hi = add(cg, rel, cg_i64(cg, w), "hi");
    } else {                            // causal_band: j <= i < j + w
        lo = rel, hi = add(cg, rel, cg_i64(cg, w), "hi");
    }
    LLVMValueRef lane = lane_index(cg, f);
    LLVMValueRef vlo = splat(cg, f, lane_bound(cg, f, lo));
    LLVMValueRef vhi = splat(cg, f, lane_bound(cg, f, hi));
    LLVMValueRef ge = LLVMBuildICmp(cg->b, LLVMIntSGE, lane, vlo, "ge");
    LLVMValueRef lt = LLVMBuildICmp(cg->b, LLVMIntSLT, lane, vhi, "lt");
    return LLVMBuildAnd(cg->b, ge, lt, "visible");
}

/* Whether the mask hides some key of tile [j0, j0 + nk) from some query of [i0, i0 + nq):
 * an i1, or NULL for mask none. */
static LLVMValueRef needs_mask(CgCpu *cg, Flash *f, LLVMValueRef i0, LLVMValueRef nq,
                               LLVMValueRef j0, LLVMValueRef nk)
{
    IrMask mk = f->c.softmax->attrs.mask;
    if (mk == IR_MASK_NONE)
        return NULL;
    int64_t w = band_width(f);
    LLVMValueRef one = cg_i64(cg, 1);
    LLVMValueRef ilast = sub(cg, add(cg, i0, nq, "i.end"), one, "i.last");
    LLVMValueRef jlast = sub(cg, add(cg, j0, nk, "j.end"), one, "j.last");
    // causal: the last key after the first query; band: a (query, key) pair w or more apart
    LLVMValueRef late = LLVMBuildICmp(cg->b, LLVMIntSGT, jlast, i0, "late");
    LLVMValueRef far_back = LLVMBuildICmp(cg->b, LLVMIntSGE, sub(cg, ilast, j0, "back"),
                                          cg_i64(cg, w), "far.back");
    LLVMValueRef far_ahead = LLVMBuildICmp(cg->b, LLVMIntSGE, sub(cg, jlast, i0, "ahead"),
                                           cg_i64(cg, w), "far.ahead");
    if (mk == IR_MASK_CAUSAL)
        return late;
    if (mk == IR_MASK_BAND)
        return LLVMBuildOr(cg->b, far_back, far_ahead, "cut");
    return LLVMBuildOr(cg->b, late, far_back, "cut");
}

/* Pass 1 of tile_softmax: tmax[v] = the max over the tile's keys of the scores; with
 * `masked`, hidden scores become -inf first (in st too, so pass 2 gives them e^-inf = 0). */
static void max_pass(CgCpu *cg, Flash *f, LLVMValueRef i0, LLVMValueRef j0, LLVMValueRef nk,
                     LLVMValueRef *tmax, bool masked)
{
    LLVMValueRef ninf = vconst(cg, f, -INFINITY);
    CgFor lj;
    cg_for_begin(cg, &lj, nk, masked ? "fl.max.masked" : "fl.max");
    LLVMValueRef row = fgep(cg, f->st, mul(cg, lj.i, cg_i64(cg, f->br), "st.row"), "st.j");
    LLVMValueRef key = add(cg, j0, lj.i, "key");
    for (int v = 0; v < f->nv; v++) {
        LLVMValueRef p = fgep(cg, row, cg_i64(cg, v * f->vw), "st.v");
        LLVMValueRef s = LLVMBuildLoad2(cg->b, f->t_vec, p, "s");
        if (masked) {
            LLVMValueRef vis = visible(cg, f, key, add(cg, i0, cg_i64(cg, v * f->vw), "base"));
            s = LLVMBuildSelect(cg->b, vis, s, ninf, "s.masked");
            LLVMBuildStore(cg->b, s, p);
        }
        LLVMValueRef m = LLVMBuildLoad2(cg->b, f->t_vec, tmax[v], "m");
        LLVMBuildStore(cg->b, fsel_gt(cg, s, m, "m.next"), tmax[v]);
    }
    cg_for_end(cg, &lj);
}

/* The online softmax step for one key tile: masks the scores (-inf), takes the tile's max
 * per query, m' = max(m, tile max), alpha = e^(m - m'), p = e^(s - m') in place of the
 * scores, l = l alpha + sum p. A query with no visible key yet keeps m = -inf and uses 0
 * in place of m', so every p and alpha is 0 rather than NaN. alpha[v] is returned. */
static void tile_softmax(CgCpu *cg, Flash *f, LLVMValueRef i0, LLVMValueRef nq, LLVMValueRef j0,
                         LLVMValueRef nk, LLVMValueRef *alpha)
{
    int nv = f->nv;
    LLVMValueRef ninf = vconst(cg, f, -INFINITY), tmax[FLASH_MAX_NV], sum[FLASH_MAX_NV];
    for (int v = 0; v < nv; v++) {
        tmax[v] = cg_alloca(cg, f->t_vec, "tile.max");
        sum[v] = cg_alloca(cg, f->t_vec, "tile.sum");
        LLVMBuildStore(cg->b, ninf, tmax[v]);
        LLVMBuildStore(cg->b, LLVMConstNull(f->t_vec), sum[v]);
    }
    LLVMValueRef need = needs_mask(cg, f, i0, nq, j0, nk);
    if (need) {   // only tiles the mask cuts pay for it
        LLVMBasicBlockRef masked = cg_block(cg, "fl.masked"), plain = cg_block(cg, "fl.plain");
        LLVMBasicBlockRef done = cg_block(cg, "fl.max.done");
        LLVMBuildCondBr(cg->b, need, masked, plain);
        LLVMPositionBuilderAtEnd(cg->b, masked);
        max_pass(cg, f, i0, j0, nk, tmax, true);
        LLVMBuildBr(cg->b, done);
        LLVMPositionBuilderAtEnd(cg->b, plain);
        max_pass(cg, f, i0, j0, nk, tmax, false);
        LLVMBuildBr(cg->b, done);
        LLVMPositionBuilderAtEnd(cg->b, done);
    } else {
        max_pass(cg, f, i0, j0, nk, tmax, false);
    }
    LLVMValueRef use[FLASH_MAX_NV];
    for (int v = 0; v < nv; v++) {
        LLVMValueRef m = LLVMBuildLoad2(cg->b, f->t_vec, f->m[v], "m.old");
        LLVMValueRef tm = LLVMBuildLoad2(cg->b, f->t_vec, tmax[v], "m.tile");
        LLVMValueRef mn = fsel_gt(cg, tm, m, "m.new");
        LLVMBuildStore(cg->b, mn, f->m[v]);
        LLVMValueRef none = LLVMBuildFCmp(cg->b, LLVMRealOEQ, mn, ninf, "none");
        use[v] = LLVMBuildSelect(cg->b, none, LLVMConstNull(f->t_vec), mn, "m.use");
        alpha[v] = vexp(cg, f, LLVMBuildFSub(cg->b, m, use[v], "m.diff"));
    }
    CgFor lj;
    cg_for_begin(cg, &lj, nk, "fl.exp");
    LLVMValueRef row = fgep(cg, f->st, mul(cg, lj.i, cg_i64(cg, f->br), "st.row"), "st.j");
    for (int v = 0; v < nv; v++) {
        LLVMValueRef p = fgep(cg, row, cg_i64(cg, v * f->vw), "st.v");
        LLVMValueRef s = LLVMBuildLoad2(cg->b, f->t_vec, p, "s");
        LLVMValueRef e = vexp(cg, f, LLVMBuildFSub(cg->b, s, use[v], "s.m"));
        LLVMBuildStore(cg->b, e, p);
        LLVMValueRef a = LLVMBuildLoad2(cg->b, f->t_vec, sum[v], "sum");
        LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, a, e, "sum.next"), sum[v]);
    }
    cg_for_end(cg, &lj);
    for (int v = 0; v < nv; v++) {
        LLVMValueRef l = LLVMBuildLoad2(cg->b, f->t_vec, f->l[v], "l");
        LLVMValueRef s = LLVMBuildLoad2(cg->b, f->t_vec, sum[v], "sum");
        LLVMBuildStore(cg->b, fmadd(cg, f, l, alpha[v], s), f->l[v]);
    }
}

/* O^T = O^T alpha + V^T P^T for the tile, md head-dim rows at a time (unrolled over the
 * constant Dv): ot[d*br + i] = ot[d*br + i] * alpha_i + sum_j v[(j0+j)*Dv + d] * st[j*br + i],
 * summed in key order with one fma per term. */
static void tile_apply(CgCpu *cg, Flash *f, LLVMValueRef pv, LLVMValueRef j0, LLVMValueRef nk,
                       LLVMValueRef *alpha)
{
    int nv = f->nv;
    LLVMValueRef acc[FLASH_MAX_MR][FLASH_MAX_NV];
    for (int r = 0; r < f->md; r++)
        for (int v = 0; v < nv; v++)
            acc[r][v] = cg_alloca(cg, f->t_vec, "o.acc");
    LLVMValueRef vbase = fgep(cg, pv, mul(cg, j0, cg_i64(cg, f->Dv), "v.off"), "v.tile");
    for (int64_t d0 = 0; d0 < f->Dv; d0 += f->md) {
        int md = f->Dv - d0 < f->md ? (int)(f->Dv - d0) : f->md;
        for (int r = 0; r < md; r++)
            for (int v = 0; v < nv; v++) {
                LLVMValueRef p = fgep(cg, f->ot, cg_i64(cg, (d0 + r) * f->br + v * f->vw), "ot.p");
                LLVMValueRef o = LLVMBuildLoad2(cg->b, f->t_vec, p, "o");
                o = LLVMBuildFMul(cg->b, o, alpha[v], "o.scaled");
                LLVMBuildStore(cg->b, o, acc[r][v]);
            }
        CgFor lj;
        cg_for_begin(cg, &lj, nk, "fl.pv");
        LLVMValueRef prow = fgep(cg, f->st, mul(cg, lj.i, cg_i64(cg, f->br), "st.row"), "st.j");
        LLVMValueRef vrow = fgep(cg, vbase, mul(cg, lj.i, cg_i64(cg, f->Dv), "v.row"), "v.j");
        LLVMValueRef pvec[FLASH_MAX_NV];
        for (int v = 0; v < nv; v++)
            pvec[v] = LLVMBuildLoad2(cg->b, f->t_vec, fgep(cg, prow, cg_i64(cg, v * f->vw), "p.v"),
                                     "p");
        for (int r = 0; r < md; r++) {
            LLVMValueRef x = LLVMBuildLoad2(cg->b, cg->t_f32, fgep(cg, vrow, cg_i64(cg, d0 + r),
                                                                 "v.d"), "v");
            LLVMValueRef xs = splat(cg, f, x);
            for (int v = 0; v < nv; v++) {
                LLVMValueRef o = LLVMBuildLoad2(cg->b, f->t_vec, acc[r][v], "o");
                LLVMBuildStore(cg->b, fmadd(cg, f, xs, pvec[v], o), acc[r][v]);
            }
        }
        cg_for_end(cg, &lj);
        for (int r = 0; r < md; r++)
            for (int v = 0; v < nv; v++) {
                LLVMValueRef p = fgep(cg, f->ot, cg_i64(cg, (d0 + r) * f->br + v * f->vw), "ot.p");
                LLVMBuildStore(cg->b, LLVMBuildLoad2(cg->b, f->t_vec, acc[r][v], "o"), p);
            }
    }
}

/* The keys query tile [i0, i0 + nq) can see, as [*jlo, *jlo + *n): every key for mask
 * none, up to the tile's last query for causal, the window around the tile for band. */
static void key_range(CgCpu *cg, Flash *f, LLVMValueRef i0, LLVMValueRef nq, LLVMValueRef S,
                      LLVMValueRef *jlo, LLVMValueRef *n)
{
    IrMask mk = f->c.softmax->attrs.mask;
    int64_t w = band_width(f);
    LLVMValueRef lo = cg_i64(cg, 0), hi = S;
    LLVMValueRef iend = add(cg, i0, nq, "i.end");   // one past the tile's last query
    if (mk == IR_MASK_CAUSAL || mk == IR_MASK_CAUSAL_BAND)
        hi = imin(cg, S, iend, "k.hi");
    else if (mk == IR_MASK_BAND)
        hi = imin(cg, S, add(cg, iend, cg_i64(cg, w - 1), "k.win"), "k.hi");
    if (mk == IR_MASK_BAND || mk == IR_MASK_CAUSAL_BAND)
        lo = imax(cg, lo, add(cg, i0, cg_i64(cg, 1 - w), "k.first"), "k.lo");
    *jlo = lo;
    *n = imax(cg, sub(cg, hi, lo, "k.n"), cg_i64(cg, 0), "k.count");
}

/* y[i0 + i, d] = ot[d*br + i] / l_i (0 when query i saw no key) for i < nq. */
static void store_out(CgCpu *cg, Flash *f, LLVMValueRef py, LLVMValueRef i0, LLVMValueRef nq)
{
    for (int v = 0; v < f->nv; v++) {
        LLVMValueRef l = LLVMBuildLoad2(cg->b, f->t_vec, f->l[v], "l");
        LLVMValueRef pos = LLVMBuildFCmp(cg->b, LLVMRealOGT, l, LLVMConstNull(f->t_vec), "pos");
        LLVMValueRef r = LLVMBuildFDiv(cg->b, vconst(cg, f, 1.0), l, "inv");
        r = LLVMBuildSelect(cg->b, pos, r, LLVMConstNull(f->t_vec), "inv.or0");
        LLVMBuildStore(cg->b, r, fgep(cg, f->inv, cg_i64(cg, v * f->vw), "inv.p"));
    }
    CgFor li, ld;
    cg_for_begin(cg, &li, nq, "fl.out.i");
    LLVMValueRef s = LLVMBuildLoad2(cg->b, cg->t_f32, fgep(cg, f->inv, li.i, "inv.i"), "inv");
    LLVMValueRef dst = fgep(cg, py, mul(cg, add(cg, i0, li.i, "y.row"), cg_i64(cg, f->Dv), "y.off"),
                            "y.i");
    cg_for_begin(cg, &ld, cg_i64(cg, f->Dv), "fl.out.d");
    LLVMValueRef at = add(cg, mul(cg, ld.i, cg_i64(cg, f->br), "ot.row"), li.i, "ot.off");
    LLVMValueRef o = LLVMBuildLoad2(cg->b, cg->t_f32, fgep(cg, f->ot, at, "ot.p"), "o");
    LLVMBuildStore(cg->b, LLVMBuildFMul(cg->b, o, s, "y"), fgep(cg, dst, ld.i, "y.p"));
    cg_for_end(cg, &ld);
    cg_for_end(cg, &li);
}

/* One query tile of one batch entry, every key tile the mask leaves. */
static void query_tile(CgCpu *cg, Flash *f, LLVMValueRef *ptr, LLVMValueRef i0, LLVMValueRef nq,
                       LLVMValueRef S)
{
    pack_q(cg, f, ptr[0], i0, nq);
    for (int v = 0; v < f->nv; v++) {
        LLVMBuildStore(cg->b, vconst(cg, f, -INFINITY), f->m[v]);
        LLVMBuildStore(cg->b, LLVMConstNull(f->t_vec), f->l[v]);
    }
    CgFor lz;
    cg_for_begin(cg, &lz, cg_i64(cg, f->Dv * f->nv), "fl.zero");
    LLVMValueRef zp = fgep(cg, f->ot, mul(cg, lz.i, cg_i64(cg, f->vw), "z.off"), "z.p");
    LLVMBuildStore(cg->b, LLVMConstNull(f->t_vec), zp);
    cg_for_end(cg, &lz);
    LLVMValueRef jlo, nkeys;
    key_range(cg, f, i0, nq, S, &jlo, &nkeys);
    CgFor lk;
    cg_for_begin(cg, &lk, ceil_div(cg, nkeys, FLASH_BC, "k.tiles"), "fl.ktile");
    LLVMValueRef off = mul(cg, lk.i, cg_i64(cg, FLASH_BC), "k.tile.off");
    LLVMValueRef j0 = add(cg, jlo, off, "j0");
    LLVMValueRef nk = imin(cg, cg_i64(cg, FLASH_BC), sub(cg, nkeys, off, "k.left"), "nk");
    LLVMValueRef alpha[FLASH_MAX_NV];
    tile_scores(cg, f, ptr[1], j0, nk);
    tile_softmax(cg, f, i0, nq, j0, nk, alpha);
    tile_apply(cg, f, ptr[2], j0, nk, alpha);
    cg_for_end(cg, &lk);
    store_out(cg, f, ptr[3], i0, nq);
}

/* ---- the op ---- */

/* Pointers to the data of q, k, v and y for batch entry bi of y (flat over y's batch
 * dims); the scores' batch index comes from y's as p's would, then q's and k's from it. */
static void batch_ptrs(CgCpu *cg, Flash *f, LLVMValueRef bi, LLVMValueRef T, LLVMValueRef *ptr)
{
    const IrValue *y = f->c.root->results[0], *s = f->c.qk->results[0];
    int nb = y->shape.rank - 2, ns = s->shape.rank - 2;
    LLVMValueRef iy[IR_MAX_RANK + 2], is[IR_MAX_RANK + 2], left = bi;
    for (int j = nb - 1; j >= 0; j--) {
        LLVMValueRef d = cg_dim(cg, y->shape.dims[j]);
        iy[j] = j > 0 ? LLVMBuildSRem(cg->b, left, d, "bix") : left;
        left = LLVMBuildSDiv(cg->b, left, d, "bleft");
    }
    for (int j = 0; j < ns; j++) {
        Dim d = s->shape.dims[j];
        is[j] = dim_is_const(d) && d.c == 1 ? NULL : iy[j + nb - ns];
    }
    // row 0, column 0 of the batch entry: cg_bcast_offset with NULL (0) for the last two
    iy[nb] = iy[nb + 1] = is[ns] = is[ns + 1] = NULL;
    ptr[0] = fgep(cg, cg->buf[f->c.q->id], cg_bcast_offset(cg, f->c.q, is, ns + 2), "q.batch");
    ptr[1] = fgep(cg, cg->buf[f->c.k->id], cg_bcast_offset(cg, f->c.k, is, ns + 2), "k.batch");
    ptr[2] = fgep(cg, cg->buf[f->c.v->id], cg_bcast_offset(cg, f->c.v, iy, nb + 2), "v.batch");
    LLVMValueRef per = mul(cg, T, cg_i64(cg, f->Dv), "y.per");
    ptr[3] = fgep(cg, cg->buf[y->id], mul(cg, bi, per, "y.off"), "y.batch");
}

/* The batch entries of y times the query tiles of each, with this function's dims. */
static LLVMValueRef unit_count(CgCpu *cg, Flash *f, LLVMValueRef *T, LLVMValueRef *S,
                               LLVMValueRef *nqt)
{
    const IrValue *y = f->c.root->results[0], *s = f->c.qk->results[0];
    int r = y->shape.rank;
    LLVMValueRef nb = cg_i64(cg, 1);
    for (int j = 0; j < r - 2; j++)
        nb = mul(cg, nb, cg_dim(cg, y->shape.dims[j]), "batch");
    *T = cg_dim(cg, y->shape.dims[r - 2]);
    *S = cg_dim(cg, s->shape.dims[s->shape.rank - 1]);
    *nqt = ceil_div(cg, *T, f->br, "q.tiles");
    return mul(cg, nb, *nqt, "units");
}

void cg_flash_lower(CgCpu *cg, IrOp *op)
{
    FlashChain c;
    bool ok = match_chain(cg, op, &c);
    assert(ok && "cg_flash_lower on a matmul that is not a flash root");
    (void)ok;
    Flash f;
    flash_init(cg, &f, &c);
    LLVMValueRef T, S, nqt;
    LLVMValueRef nunits = unit_count(cg, &f, &T, &S, &nqt);
    // The outlined body reads q, k and v (not the absorbed p): a stand-in op lists them.
    IrValue *vals[3] = { c.q, c.k, c.v };
    IrOp uses = { .kind = IR_OP_MATMUL, .operands = vals, .nops = 3, .results = op->results,
                  .nres = 1, .span = op->span };
    char fname[160];
    snprintf(fname, sizeof fname, "flash.%s", cg_name(cg, op->results[0]));
    CgPar par;
    cg_par_begin(cg, &par, &uses, nunits, fname);
    unit_count(cg, &f, &T, &S, &nqt);   // the body has its own symbol values
    f.qt = stack_array(cg, f.D * f.br, "qt");
    f.st = stack_array(cg, (FLASH_BC + f.mr) * f.br, "st");
    f.ot = stack_array(cg, f.Dv * f.br, "ot");
    f.inv = stack_array(cg, f.br, "inv");
    for (int v = 0; v < f.nv; v++) {
        f.m[v] = cg_alloca(cg, f.t_vec, "m");
        f.l[v] = cg_alloca(cg, f.t_vec, "l");
    }
    CgFor lu;
    cg_for_range(cg, &lu, par.begin, par.end, "fl.unit");
    // query tiles in the order 0, n-1, 1, n-2, ..: a thread's contiguous run of units
    // mixes cheap and costly causal tiles
    LLVMValueRef u = LLVMBuildSRem(cg->b, lu.i, nqt, "u");
    LLVMValueRef bi = LLVMBuildSDiv(cg->b, lu.i, nqt, "bi");
    LLVMValueRef half = LLVMBuildSDiv(cg->b, u, cg_i64(cg, 2), "u.half");
    LLVMValueRef u2 = LLVMBuildSRem(cg->b, u, cg_i64(cg, 2), "u.2");
    LLVMValueRef odd = LLVMBuildICmp(cg->b, LLVMIntNE, u2, cg_i64(cg, 0), "u.odd");
    LLVMValueRef back = sub(cg, sub(cg, nqt, cg_i64(cg, 1), "nqt.1"), half, "u.back");
    LLVMValueRef qtile = LLVMBuildSelect(cg->b, odd, back, half, "q.tile");
    LLVMValueRef i0 = mul(cg, qtile, cg_i64(cg, f.br), "i0");
    LLVMValueRef nq = imin(cg, cg_i64(cg, f.br), sub(cg, T, i0, "q.left"), "nq");
    LLVMValueRef ptr[4];
    batch_ptrs(cg, &f, bi, T, ptr);
    query_tile(cg, &f, ptr, i0, nq, S);
    cg_for_end(cg, &lu);
    cg_par_end(cg, &par);
}
