/* cg_gpu_gemm.c - the GPU back end's f32 matmul: each block of 16 x 16 threads computes a
 * 16 x 16 tile of y, stepping over k in tiles of 16 that its threads first copy into
 * shared memory (two [256 x float] arrays in address space 3), with a barrier before and
 * after each tile is used. Each output element is still one sum over k in order (the
 * padding beyond M, N or K adds exact zeros), as in cg_lower.c's lower_matmul. Batch dims
 * broadcast as there. Called by cg_ptx.c for every f32 matmul outside a region kernel. */
#include "cg_gpu.h"

#include <stdio.h>
#include <string.h>

enum { TILE = CG_GPU_TILE, TILE2 = CG_GPU_TILE * CG_GPU_TILE };

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

static LLVMValueRef tile_at(CgCpu *cg, LLVMValueRef g, LLVMValueRef i)
{
    LLVMValueRef idx[2] = { cg_i64(cg, 0), i };
    return LLVMBuildInBoundsGEP2(cg->b, LLVMArrayType2(cg->t_f32, TILE2), g, idx, 2, "tile.p");
}

void cg_gpu_barrier(CgCpu *cg)
{
    const char *nm = "llvm.nvvm.barrier0";
    unsigned id = LLVMLookupIntrinsicID(nm, strlen(nm));
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, NULL, 0);
    LLVMBuildCall2(cg->b, LLVMIntrinsicGetType(cg->llctx, id, NULL, 0), f, NULL, 0, "");
}

/* v at idx when ok, else 0 (no load out of bounds). */
static LLVMValueRef load_if(CgCpu *cg, LLVMValueRef ok, const IrValue *v, LLVMValueRef *idx)
{
    LLVMValueRef tmp = cg_alloca(cg, cg->t_f32, "ld");
    LLVMBuildStore(cg->b, cg_f32c(cg, 0.0), tmp);
    LLVMBasicBlockRef in = cg_block(cg, "ld.in"), join = cg_block(cg, "ld.join");
    LLVMBuildCondBr(cg->b, ok, in, join);
    LLVMPositionBuilderAtEnd(cg->b, in);
    LLVMBuildStore(cg->b, cg_load(cg, v, cg_offset(cg, v, idx)), tmp);
    LLVMBuildBr(cg->b, join);
    LLVMPositionBuilderAtEnd(cg->b, join);
    return LLVMBuildLoad2(cg->b, cg->t_f32, tmp, "v");
}

/* The tile grid of y: batch entries, tiles along M and N. */
typedef struct Tiles {
    LLVMValueRef batch, M, N, K, tm, tn;
} Tiles;

static void tiles(CgCpu *cg, IrOp *op, Tiles *t)
{
    IrValue *y = op->results[0], *a = op->operands[0];
    int r = y->shape.rank;
    t->batch = cg_i64(cg, 1);
    for (int j = 0; j < r - 2; j++)
        t->batch = LLVMBuildMul(cg->b, t->batch, cg_dim(cg, y->shape.dims[j]), "batch");
    t->M = cg_dim(cg, y->shape.dims[r - 2]);
    t->N = cg_dim(cg, y->shape.dims[r - 1]);
    t->K = cg_dim(cg, a->shape.dims[a->shape.rank - 1]);
    LLVMValueRef m1 = LLVMBuildAdd(cg->b, t->M, cg_i64(cg, TILE - 1), "m.up");
    t->tm = LLVMBuildSDiv(cg->b, m1, cg_i64(cg, TILE), "tiles.m");
    LLVMValueRef n1 = LLVMBuildAdd(cg->b, t->N, cg_i64(cg, TILE - 1), "n.up");
    t->tn = LLVMBuildSDiv(cg->b, n1, cg_i64(cg, TILE), "tiles.n");
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

static LLVMValueRef and2(CgCpu *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildAnd(cg->b, a, b, "ok");
}

static LLVMValueRef lt(CgCpu *cg, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, "lt");
}

/* The k loop: stage a's and b's tiles, barrier, accumulate, barrier. */
static void k_tiles(CgCpu *cg, IrOp *op, const Tiles *t, LLVMValueRef *yidx, LLVMValueRef m,
                    LLVMValueRef n, LLVMValueRef tx, LLVMValueRef ty, LLVMValueRef acc)
{
    IrValue *y = op->results[0], *a = op->operands[0], *bm = op->operands[1];
    LLVMValueRef sa = cg_gpu_shared(cg, "tfx.tile.a", TILE2), sb = cg_gpu_shared(cg, "tfx.tile.b", TILE2);
    LLVMValueRef k1 = LLVMBuildAdd(cg->b, t->K, cg_i64(cg, TILE - 1), "k.up");
    LLVMValueRef tk = LLVMBuildSDiv(cg->b, k1, cg_i64(cg, TILE), "tiles.k");
    LLVMValueRef mine = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, ty, cg_i64(cg, TILE), "ty.row"),
                                     tx, "mine");
    CgFor kt, kk;
    cg_for_begin(cg, &kt, tk, "ktile");
    LLVMValueRef k0 = LLVMBuildMul(cg->b, kt.i, cg_i64(cg, TILE), "k0");
    LLVMValueRef ka = LLVMBuildAdd(cg->b, k0, tx, "ka");
    LLVMValueRef ia[IR_MAX_RANK], ib[IR_MAX_RANK];
    cg_gpu_operand_idx(a, y, yidx, m, ka, ia);
    LLVMValueRef va = load_if(cg, and2(cg, lt(cg, m, t->M), lt(cg, ka, t->K)), a, ia);
    LLVMBuildStore(cg->b, va, tile_at(cg, sa, mine));
    LLVMValueRef kb = LLVMBuildAdd(cg->b, k0, ty, "kb");
    cg_gpu_operand_idx(bm, y, yidx, kb, n, ib);
    LLVMValueRef vb = load_if(cg, and2(cg, lt(cg, kb, t->K), lt(cg, n, t->N)), bm, ib);
    LLVMBuildStore(cg->b, vb, tile_at(cg, sb, mine));
    cg_gpu_barrier(cg);
    cg_for_begin(cg, &kk, cg_i64(cg, TILE), "kk");
    LLVMValueRef pa = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, ty, cg_i64(cg, TILE), "ra"), kk.i, "pa");
    LLVMValueRef pb = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, kk.i, cg_i64(cg, TILE), "rb"), tx, "pb");
    LLVMValueRef xa = LLVMBuildLoad2(cg->b, cg->t_f32, tile_at(cg, sa, pa), "xa");
    LLVMValueRef xb = LLVMBuildLoad2(cg->b, cg->t_f32, tile_at(cg, sb, pb), "xb");
    LLVMValueRef p = LLVMBuildFMul(cg->b, xa, xb, "prod");
    LLVMValueRef s0 = LLVMBuildLoad2(cg->b, cg->t_f32, acc, "acc");
    LLVMBuildStore(cg->b, LLVMBuildFAdd(cg->b, s0, p, "acc.next"), acc);
    cg_for_end(cg, &kk);
    cg_gpu_barrier(cg);
    cg_for_end(cg, &kt);
}

void cg_gpu_tiled_matmul(CgCpu *cg, IrOp *op)
{
    IrValue *y = op->results[0];
    int r = y->shape.rank;
    Tiles t;
    tiles(cg, op, &t);
    LLVMValueRef blocks = LLVMBuildMul(cg->b, t.batch, t.tm, "blocks");
    blocks = LLVMBuildMul(cg->b, blocks, t.tn, "blocks");
    LLVMValueRef threads = LLVMBuildMul(cg->b, blocks, cg_i64(cg, TILE2), "threads");
    char nm[160];
    snprintf(nm, sizeof nm, "matmul.tiled.%s", cg_name(cg, y));
    CgPar par;
    cg_gpu_kernel_begin(cg, &par, op, threads, nm, TILE2, false);
    tiles(cg, op, &t);   // again, from the kernel's own symbols
    LLVMValueRef tid = cg_gpu_sreg(cg, "llvm.nvvm.read.ptx.sreg.tid.x");
    LLVMValueRef cta = cg_gpu_sreg(cg, "llvm.nvvm.read.ptx.sreg.ctaid.x");
    LLVMValueRef tx = LLVMBuildURem(cg->b, tid, cg_i64(cg, TILE), "tx");
    LLVMValueRef ty = LLVMBuildUDiv(cg->b, tid, cg_i64(cg, TILE), "ty");
    LLVMValueRef bn = LLVMBuildURem(cg->b, cta, t.tn, "tile.n");
    LLVMValueRef rest = LLVMBuildUDiv(cg->b, cta, t.tn, "rest");
    LLVMValueRef bm = LLVMBuildURem(cg->b, rest, t.tm, "tile.m");
    rest = LLVMBuildUDiv(cg->b, rest, t.tm, "batch.i");
    LLVMValueRef yidx[IR_MAX_RANK];
    cg_gpu_batch_index(cg, y, rest, yidx);
    LLVMValueRef m = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, bm, cg_i64(cg, TILE), "m0"), ty, "m");
    LLVMValueRef n = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, bn, cg_i64(cg, TILE), "n0"), tx, "n");
    LLVMValueRef acc = cg_alloca(cg, cg->t_f32, "acc");
    LLVMBuildStore(cg->b, cg_f32c(cg, 0.0), acc);
    k_tiles(cg, op, &t, yidx, m, n, tx, ty, acc);
    // every thread reached both barriers of every tile; only those inside y store
    LLVMBasicBlockRef st = cg_block(cg, "store"), done = cg_block(cg, "done");
    LLVMBuildCondBr(cg->b, and2(cg, lt(cg, m, t.M), lt(cg, n, t.N)), st, done);
    LLVMPositionBuilderAtEnd(cg->b, st);
    yidx[r - 2] = m;
    yidx[r - 1] = n;
    cg_store(cg, y, cg_offset(cg, y, yidx), LLVMBuildLoad2(cg->b, cg->t_f32, acc, "sum"));
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
    cg_gpu_par_end(cg, &par);
}
