/* cg_gpu_gemm.c - the GPU back end's f32 matmul. A block of 16 x 16 = 256 threads computes
 * a BM x BN tile of y, BM = 16 * tm and BN = 16 * tn, each thread tm x tn elements held in
 * registers (rows ty + 16 i, columns tx + 16 j of the tile). The schedule (gemm_schedule)
 * takes tm = tn = 4, a 64 x 64 tile, unless M or N is a constant below 64, where that side
 * drops to 1 (a 16-wide tile). The block steps over k in slices of 16: its threads copy the
 * slice of a (BM x 16, stored k-major with one float of padding a row so neither the copy
 * nor the reads meet bank conflicts) and of b (16 x BN) into shared memory, meet at a
 * barrier, each thread adds its tm * tn * 16 products, and the block meets again before
 * the next slice. Each output element is still one sum over k in order (the padding beyond
 * M, N or K adds exact zeros), as in cg_lower.c's lower_matmul. Batch dims broadcast as
 * there. Called by cg_ptx.c for every f32 matmul outside a region kernel. */
#include "cg_gpu.h"

#include <stdio.h>
#include <string.h>

enum { TILE = CG_GPU_TILE, TILE2 = CG_GPU_TILE * CG_GPU_TILE, GEMM_MAX_T = 4 };

/* Elements a thread computes along M (tm) and N (tn). */
typedef struct GemmSched {
    int tm, tn;
} GemmSched;

static int side(Dim d)
{
    return dim_is_const(d) && d.c < TILE * GEMM_MAX_T ? 1 : GEMM_MAX_T;
}

static GemmSched gemm_schedule(const IrOp *op)
{
    const IrValue *y = op->results[0];
    int r = y->shape.rank;
    return (GemmSched){ side(y->shape.dims[r - 2]), side(y->shape.dims[r - 1]) };
}

bool cg_gpu_tiled_applies(const IrOp *op)
{
    return op->results[0]->dtype == DT_F32 && op->operands[0]->dtype == DT_F32 &&
           op->operands[1]->dtype == DT_F32;
}

LLVMValueRef cg_gpu_shared(CgCpu *cg, const char *name, uint64_t n)
{
    LLVMValueRef g = LLVMGetNamedGlobal(cg->mod, name);
    if (g)
        return g;
    LLVMTypeRef t = LLVMArrayType2(cg->t_f32, n);
    g = LLVMAddGlobalInAddressSpace(cg->mod, t, name, 3);
    LLVMSetInitializer(g, LLVMGetUndef(t));
    LLVMSetLinkage(g, LLVMInternalLinkage);
    LLVMSetAlignment(g, 16);
    return g;
}

void cg_gpu_barrier(CgCpu *cg)
{
    const char *nm = "llvm.nvvm.barrier0";
    unsigned id = LLVMLookupIntrinsicID(nm, strlen(nm));
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, NULL, 0);
    LLVMBuildCall2(cg->b, LLVMIntrinsicGetType(cg->llctx, id, NULL, 0), f, NULL, 0, "");
}

void cg_gpu_batch_index(CgCpu *cg, const IrValue *y, LLVMValueRef b, LLVMValueRef *yidx)
{
    int r = y->shape.rank;
    for (int j = r - 3; j > 0; j--) {
        LLVMValueRef d = cg_dim(cg, y->shape.dims[j]);
        yidx[j] = LLVMBuildURem(cg->b, b, d, "ix");
        b = LLVMBuildUDiv(cg->b, b, d, "rest");
    }
    if (r > 2)
        yidx[0] = b;
}

void cg_gpu_operand_idx(const IrValue *v, const IrValue *y, LLVMValueRef *yidx, LLVMValueRef row,
                        LLVMValueRef col, LLVMValueRef *out)
{
    int r = y->shape.rank, rv = v->shape.rank;
    for (int j = 0; j < rv - 2; j++) {
        Dim d = v->shape.dims[j];
        out[j] = dim_is_const(d) && d.c == 1 ? NULL : yidx[j + r - rv];
    }
    out[rv - 2] = row;
    out[rv - 1] = col;
}

/* The tile grid of y: batch entries, tiles along M and N. */
typedef struct Tiles {
    LLVMValueRef batch, M, N, K, tm, tn;
} Tiles;

static LLVMValueRef div_up(CgCpu *cg, LLVMValueRef n, int64_t by)
{
    LLVMValueRef n1 = LLVMBuildAdd(cg->b, n, cg_i64(cg, by - 1), "up");
    return LLVMBuildSDiv(cg->b, n1, cg_i64(cg, by), "tiles");
}

static void tiles(CgCpu *cg, IrOp *op, GemmSched s, Tiles *t)
{
    IrValue *y = op->results[0], *a = op->operands[0];
    int r = y->shape.rank;
    t->batch = cg_i64(cg, 1);
    for (int j = 0; j < r - 2; j++)
        t->batch = LLVMBuildMul(cg->b, t->batch, cg_dim(cg, y->shape.dims[j]), "batch");
    t->M = cg_dim(cg, y->shape.dims[r - 2]);
    t->N = cg_dim(cg, y->shape.dims[r - 1]);
    t->K = cg_dim(cg, a->shape.dims[a->shape.rank - 1]);
    t->tm = div_up(cg, t->M, TILE * s.tm);
    t->tn = div_up(cg, t->N, TILE * s.tn);
}

static LLVMValueRef and2(CgCpu *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildAnd(cg->b, a, b, "ok");
}

static LLVMValueRef lt(CgCpu *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, "lt");
}

static LLVMValueRef sh_at(CgCpu *cg, LLVMValueRef g, LLVMValueRef i)
{
    return LLVMBuildInBoundsGEP2(cg->b, cg->t_f32, g, &i, 1, "sh.p");
}

/* Element (row, col) of matmul operand v, 0 outside [0, rows) x [0, cols). */
static LLVMValueRef load_if(CgCpu *cg, const IrValue *v, const IrValue *y, LLVMValueRef *yidx,
                            LLVMValueRef row, LLVMValueRef col, LLVMValueRef rows, LLVMValueRef cols)
{
    LLVMValueRef tmp = cg_alloca(cg, cg->t_f32, "ld");
    LLVMBuildStore(cg->b, cg_f32c(cg, 0.0), tmp);
    LLVMBasicBlockRef in = cg_block(cg, "ld.in"), join = cg_block(cg, "ld.join");
    LLVMBuildCondBr(cg->b, and2(cg, lt(cg, row, rows), lt(cg, col, cols)), in, join);
    LLVMPositionBuilderAtEnd(cg->b, in);
    LLVMValueRef idx[IR_MAX_RANK];
    cg_gpu_operand_idx(v, y, yidx, row, col, idx);
    LLVMBuildStore(cg->b, cg_load(cg, v, cg_offset(cg, v, idx)), tmp);
    LLVMBuildBr(cg->b, join);
    LLVMPositionBuilderAtEnd(cg->b, join);
    return LLVMBuildLoad2(cg->b, cg->t_f32, tmp, "v");
}

/* The block's origin (m0, n0) and its threads' coordinates in the tile. */
typedef struct Block {
    LLVMValueRef m0, n0, tid, tx, ty;
    LLVMValueRef *yidx;
} Block;

/* Copies slice k0 of a (BM x 16, as as[k][row], rows BM + 1 apart) and of b (16 x BN, as
 * bs[k][col]) into shared memory: every thread tm resp. tn elements. */
static void stage(CgCpu *cg, IrOp *op, GemmSched s, const Tiles *t, const Block *bl,
                  LLVMValueRef k0, LLVMValueRef as, LLVMValueRef bs)
{
    IrValue *y = op->results[0], *a = op->operands[0], *bm = op->operands[1];
    int64_t lda = TILE * s.tm + 1;
    for (int r = 0; r < s.tm; r++) {   // element e = tid + 256 r: row e / 16, k e % 16
        LLVMValueRef e = LLVMBuildAdd(cg->b, bl->tid, cg_i64(cg, (int64_t)TILE2 * r), "e");
        LLVMValueRef row = LLVMBuildUDiv(cg->b, e, cg_i64(cg, TILE), "a.row");
        LLVMValueRef k = LLVMBuildURem(cg->b, e, cg_i64(cg, TILE), "a.k");
        LLVMValueRef x = load_if(cg, a, y, bl->yidx, LLVMBuildAdd(cg->b, bl->m0, row, "m"),
                                 LLVMBuildAdd(cg->b, k0, k, "k"), t->M, t->K);
        LLVMValueRef at = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, k, cg_i64(cg, lda), "ak"), row, "at");
        LLVMBuildStore(cg->b, x, sh_at(cg, as, at));
    }
    int64_t bn = TILE * s.tn;
    for (int r = 0; r < s.tn; r++) {   // element e: k e / BN, column e % BN
        LLVMValueRef e = LLVMBuildAdd(cg->b, bl->tid, cg_i64(cg, (int64_t)TILE2 * r), "e");
        LLVMValueRef k = LLVMBuildUDiv(cg->b, e, cg_i64(cg, bn), "b.k");
        LLVMValueRef col = LLVMBuildURem(cg->b, e, cg_i64(cg, bn), "b.col");
        LLVMValueRef x = load_if(cg, bm, y, bl->yidx, LLVMBuildAdd(cg->b, k0, k, "k"),
                                 LLVMBuildAdd(cg->b, bl->n0, col, "n"), t->K, t->N);
        LLVMBuildStore(cg->b, x, sh_at(cg, bs, e));
    }
}

/* Pointer to accumulator (i, j) of the thread's [tm * tn] array. */
static LLVMValueRef acc_at(CgCpu *cg, LLVMValueRef acc, GemmSched s, int i, int j)
{
    LLVMValueRef idx[2] = { cg_i64(cg, 0), cg_i64(cg, (int64_t)i * s.tn + j) };
    LLVMTypeRef at = LLVMArrayType2(cg->t_f32, (uint64_t)(s.tm * s.tn));
    return LLVMBuildInBoundsGEP2(cg->b, at, acc, idx, 2, "acc.p");
}

/* The k loop: stage a slice, barrier, accumulate tm x tn sums over its 16 k, barrier. */
static void k_slices(CgCpu *cg, IrOp *op, GemmSched s, const Tiles *t, const Block *bl,
                     LLVMValueRef acc)
{
    char an[64], bn[64];
    snprintf(an, sizeof an, "tfx.gemm.a%d", s.tm);
    snprintf(bn, sizeof bn, "tfx.gemm.b%d", s.tn);
    int64_t lda = TILE * s.tm + 1, ldb = TILE * s.tn;
    LLVMValueRef as = cg_gpu_shared(cg, an, (uint64_t)(TILE * lda));
    LLVMValueRef bs = cg_gpu_shared(cg, bn, (uint64_t)(TILE * ldb));
    CgFor kt, kk;
    cg_for_begin(cg, &kt, div_up(cg, t->K, TILE), "kslice");
    LLVMValueRef k0 = LLVMBuildMul(cg->b, kt.i, cg_i64(cg, TILE), "k0");
    stage(cg, op, s, t, bl, k0, as, bs);
    cg_gpu_barrier(cg);
    cg_for_begin(cg, &kk, cg_i64(cg, TILE), "kk");
    LLVMValueRef xa[GEMM_MAX_T], xb[GEMM_MAX_T];
    LLVMValueRef arow = LLVMBuildMul(cg->b, kk.i, cg_i64(cg, lda), "a.kk");
    LLVMValueRef brow = LLVMBuildMul(cg->b, kk.i, cg_i64(cg, ldb), "b.kk");
    for (int i = 0; i < s.tm; i++) {
        LLVMValueRef r = LLVMBuildAdd(cg->b, bl->ty, cg_i64(cg, TILE * i), "r");
        xa[i] = LLVMBuildLoad2(cg->b, cg->t_f32, sh_at(cg, as, LLVMBuildAdd(cg->b, arow, r, "pa")), "xa");
    }
    for (int j = 0; j < s.tn; j++) {
        LLVMValueRef c = LLVMBuildAdd(cg->b, bl->tx, cg_i64(cg, TILE * j), "c");
        xb[j] = LLVMBuildLoad2(cg->b, cg->t_f32, sh_at(cg, bs, LLVMBuildAdd(cg->b, brow, c, "pb")), "xb");
    }
    for (int i = 0; i < s.tm; i++)
        for (int j = 0; j < s.tn; j++) {
            LLVMValueRef p = acc_at(cg, acc, s, i, j);
            LLVMValueRef s0 = LLVMBuildLoad2(cg->b, cg->t_f32, p, "acc");
            LLVMValueRef prod = LLVMBuildFMul(cg->b, xa[i], xb[j], "prod");
            LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, s0, prod, "acc.next"), p);
        }
    cg_for_end(cg, &kk);
    cg_gpu_barrier(cg);
    cg_for_end(cg, &kt);
}

void cg_gpu_tiled_matmul(CgCpu *cg, IrOp *op)
{
    IrValue *y = op->results[0];
    int r = y->shape.rank;
    GemmSched s = gemm_schedule(op);
    Tiles t;
    tiles(cg, op, s, &t);
    LLVMValueRef blocks = LLVMBuildMul(cg->b, t.batch, t.tm, "blocks");
    blocks = LLVMBuildMul(cg->b, blocks, t.tn, "blocks");
    LLVMValueRef threads = LLVMBuildMul(cg->b, blocks, cg_i64(cg, TILE2), "threads");
    char nm[160];
    snprintf(nm, sizeof nm, "matmul.tiled.%s", cg_name(cg, y));
    CgPar par;
    cg_gpu_kernel_begin(cg, &par, op, threads, nm, TILE2, false);
    tiles(cg, op, s, &t);   // again, from the kernel's own symbols
    Block bl;
    LLVMValueRef yidx[IR_MAX_RANK];
    bl.yidx = yidx;
    bl.tid = cg_gpu_sreg(cg, "llvm.nvvm.read.ptx.sreg.tid.x");
    LLVMValueRef cta = cg_gpu_sreg(cg, "llvm.nvvm.read.ptx.sreg.ctaid.x");
    bl.tx = LLVMBuildURem(cg->b, bl.tid, cg_i64(cg, TILE), "tx");
    bl.ty = LLVMBuildUDiv(cg->b, bl.tid, cg_i64(cg, TILE), "ty");
    LLVMValueRef tile_n = LLVMBuildURem(cg->b, cta, t.tn, "tile.n");
    LLVMValueRef rest = LLVMBuildUDiv(cg->b, cta, t.tn, "rest");
    LLVMValueRef tile_m = LLVMBuildURem(cg->b, rest, t.tm, "tile.m");
    rest = LLVMBuildUDiv(cg->b, rest, t.tm, "batch.i");
    cg_gpu_batch_index(cg, y, rest, yidx);
    bl.m0 = LLVMBuildMul(cg->b, tile_m, cg_i64(cg, TILE * s.tm), "m0");
    bl.n0 = LLVMBuildMul(cg->b, tile_n, cg_i64(cg, TILE * s.tn), "n0");
    LLVMValueRef acc = cg_alloca(cg, LLVMArrayType2(cg->t_f32, (uint64_t)(s.tm * s.tn)), "acc");
    for (int i = 0; i < s.tm; i++)
        for (int j = 0; j < s.tn; j++)
            LLVMBuildStore(cg->b, cg_f32c(cg, 0.0), acc_at(cg, acc, s, i, j));
    k_slices(cg, op, s, &t, &bl, acc);
    // every thread reached both barriers of every slice; only elements inside y are stored
    for (int i = 0; i < s.tm; i++)
        for (int j = 0; j < s.tn; j++) {
            LLVMValueRef m = LLVMBuildAdd(cg->b, bl.m0, LLVMBuildAdd(cg->b, bl.ty, cg_i64(cg, TILE * i), "r"), "m");
            LLVMValueRef n = LLVMBuildAdd(cg->b, bl.n0, LLVMBuildAdd(cg->b, bl.tx, cg_i64(cg, TILE * j), "c"), "n");
            LLVMBasicBlockRef st = cg_block(cg, "store"), done = cg_block(cg, "stored");
            LLVMBuildCondBr(cg->b, and2(cg, lt(cg, m, t.M), lt(cg, n, t.N)), st, done);
            LLVMPositionBuilderAtEnd(cg->b, st);
            yidx[r - 2] = m;
            yidx[r - 1] = n;
            cg_store(cg, y, cg_offset(cg, y, yidx), LLVMBuildLoad2(cg->b, cg->t_f32, acc_at(cg, acc, s, i, j), "sum"));
            LLVMBuildBr(cg->b, done);
            LLVMPositionBuilderAtEnd(cg->b, done);
        }
    cg_gpu_par_end(cg, &par);
}
