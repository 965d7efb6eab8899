/* cg_gemm.c - the -O1..3 lowering of f32 `matmul`: a cache-blocked GEMM with packed B panels
 * and a register-blocked micro-kernel on LLVM vector types (<16 x float> with AVX-512,
 * <8 x float> with AVX2+FMA, scalar otherwise), split over the runtime's pool in tiles of
 * at most MC rows x NC columns. All arithmetic is generated here; the runtime only runs
 * the tiles.
 * Called by lower_matmul (cg_lower.c); -O0 keeps the plain triple loop as the oracle.
 * See docs/codegen.md "GEMM" for the block sizes and why each element's sum is the same
 * instructions in the same order whatever the thread count. */
#include "cg_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GEMM_MAX_MR = 14, GEMM_MAX_NV = 4 };

/* Compile-time shape of the GEMM for one target. */
typedef struct GemmBlock {
    int vw;   /* floats per vector register: 16, 8 or 1 (scalar) */
    int mr;   /* micro-tile rows: accumulators are mr x nv vectors */
    int nv;   /* vectors per micro-tile row */
    int nr;   /* micro-tile columns = nv * vw */
    int mc;   /* most rows of C per tile (M is split evenly into ceil(M/mc) tiles); B's
               * panels are packed once per tile, so once per mc rows */
    int kc;   /* depth of one packed B panel: K is summed kc at a time */
    int nc;   /* most columns of C per tile and of B per packed panel (a multiple of nr) */
} GemmBlock;

/* Run-time values of one matmul inside its outlined body. */
typedef struct Gemm {
    GemmBlock    bl;
    LLVMTypeRef  t_vec;      /* <vw x float>, or float when vw == 1 */
    LLVMValueRef M, N, K;    /* i64 */
    LLVMValueRef bp;         /* packed B: [nc/nr panels][kc][nr] floats */
    LLVMValueRef tile;       /* [mr][nr] floats: a micro-tile cut by the right edge of C */
    LLVMValueRef ukr[GEMM_MAX_MR + 1]; /* micro-kernel for 1..mr rows */
    LLVMTypeRef  ukr_type;
    bool         trans;      /* B's buffer holds B^T ([N, K] rows): see cg_gemm_plan */
    bool         heads;      /* B (or B^T) is read through a [1, 0, 2] transpose of a
                              * [rows, H, cols] buffer: batch h starts at h * cols and
                              * rows are H * cols apart (cg_gemm_plan) */
    LLVMValueRef ldb;        /* i64: the distance between rows of B's (or B^T's) buffer */
} Gemm;

/* ---- target ---- */

/* Whether the comma-separated LLVM feature list holds "+name" (whole entries only, so
 * "+avx512f" does not match "+avx512fp16"). */
static bool has_feature(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n + 1 && p[0] == '+' && memcmp(p + 1, name, n) == 0)
            return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

static bool in_list(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(name, *list) == 0)
            return true;
    return false;
}

/* x86 CPU names of LLVM 19 with AVX-512F, and with AVX2 and FMA but no AVX-512F. The C API
 * cannot ask LLVM for a named CPU's features, hence the tables; a name in neither gets the
 * scalar kernel, which is correct on any CPU. */
static const char *const cpus_avx512[] = {
    "x86-64-v4", "skylake-avx512", "cascadelake", "cooperlake", "cannonlake",
    "icelake-client", "icelake-server", "rocketlake", "tigerlake", "sapphirerapids",
    "emeraldrapids", "graniterapids", "graniterapids-d", "znver4", "znver5", NULL,
};
static const char *const cpus_avx2[] = {
    "x86-64-v3", "haswell", "broadwell", "skylake", "alderlake", "raptorlake", "meteorlake",
    "arrowlake", "arrowlake-s", "lunarlake", "gracemont", "sierraforest", "grandridge",
    "znver1", "znver2", "znver3", NULL,
};

/* Floats per vector for the target: cg->cpu's from the tables, else the host's features. */
int cg_vector_width(CgCpu *cg)
{
    if (cg->cpu)
        return in_list(cg->cpu, cpus_avx512) ? 16 : in_list(cg->cpu, cpus_avx2) ? 8 : 1;
    char *f = LLVMGetHostCPUFeatures();
    int vw = has_feature(f, "avx512f") ? 16
           : has_feature(f, "avx2") && has_feature(f, "fma") ? 8 : 1;
    LLVMDisposeMessage(f);
    return vw;
}

/* Block sizes for a 48 KiB L1d and a 2 MiB L2 per core (the development host); see
 * docs/codegen.md. The micro-tile holds 28 (AVX-512: 32 registers) or 12 (AVX2: 16
 * registers) vector accumulators, plus the two B vectors and one broadcast of A. */
static GemmBlock gemm_block(CgCpu *cg)
{
    int vw = cg_vector_width(cg);
    GemmBlock bl = { .vw = vw, .mc = 512, .kc = 256, .nc = 256 };
    if (vw == 16) {
        bl.mr = 14, bl.nv = 2;
    } else if (vw == 8) {
        bl.mr = 6, bl.nv = 2;
    } else {
        bl.mr = 4, bl.nv = 4;
    }
    bl.nr = bl.nv * vw;
    return bl;
}

/* ---- small builders ---- */

static LLVMValueRef fgep(CgCpu *cg, LLVMValueRef p, LLVMValueRef off, const char *nm)
{
    return LLVMBuildInBoundsGEP2(cg->b, cg->t_f32, p, &off, 1, nm);
}

static LLVMValueRef imin(CgCpu *cg, LLVMValueRef a, LLVMValueRef b, const char *nm)
{
    LLVMValueRef lt = LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, "lt");
    return LLVMBuildSelect(cg->b, lt, a, b, nm);
}

/* (a + b - 1) / b for a >= 0 and a constant b > 0. */
static LLVMValueRef ceil_div(CgCpu *cg, LLVMValueRef a, int64_t b, const char *nm)
{
    LLVMValueRef s = LLVMBuildAdd(cg->b, a, cg_i64(cg, b - 1), "ceil.sum");
    return LLVMBuildSDiv(cg->b, s, cg_i64(cg, b), nm);
}

static LLVMValueRef mul(CgCpu *cg, LLVMValueRef a, LLVMValueRef b, const char *nm)
{
    return LLVMBuildMul(cg->b, a, b, nm);
}

static LLVMValueRef add(CgCpu *cg, LLVMValueRef a, LLVMValueRef b, const char *nm)
{
    return LLVMBuildAdd(cg->b, a, b, nm);
}

/* llvm.lifetime.start/end of an alloca: with --serial every matmul's buffers are allocas
 * of forward itself, and the markers let LLVM give them all the same stack slot. */
static void lifetime(CgCpu *cg, const char *name, LLVMValueRef p, int64_t bytes)
{
    LLVMTypeRef t = cg->t_ptr;
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef ft = LLVMIntrinsicGetType(cg->llctx, id, &t, 1);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, &t, 1);
    LLVMValueRef args[2] = { cg_i64(cg, bytes), p };
    LLVMBuildCall2(cg->b, ft, f, args, 2, "");
}

static LLVMValueRef aligned_array(CgCpu *cg, int64_t n, const char *nm)
{
    LLVMValueRef p = cg_alloca(cg, LLVMArrayType2(cg->t_f32, (uint64_t)n), nm);
    LLVMSetAlignment(p, 64);
    return p;
}

/* A vector (or scalar) load/store of t_vec at p, 4-byte aligned. */
static LLVMValueRef vload(CgCpu *cg, Gemm *g, LLVMValueRef p, const char *nm)
{
    LLVMValueRef v = LLVMBuildLoad2(cg->b, g->t_vec, p, nm);
    LLVMSetAlignment(v, 4);
    return v;
}

static void vstore(CgCpu *cg, LLVMValueRef v, LLVMValueRef p)
{
    LLVMValueRef s = LLVMBuildStore(cg->b, v, p);
    LLVMSetAlignment(s, 4);
}

/* x broadcast to every lane of t_vec. */
static LLVMValueRef splat(CgCpu *cg, Gemm *g, LLVMValueRef x)
{
    if (g->bl.vw == 1)
        return x;
    LLVMValueRef ins = LLVMBuildInsertElement(cg->b, LLVMGetPoison(g->t_vec), x,
                                              LLVMConstInt(cg->t_i32, 0, false), "a.ins");
    LLVMValueRef mask = LLVMConstNull(LLVMVectorType(cg->t_i32, (unsigned)g->bl.vw));
    return LLVMBuildShuffleVector(cg->b, ins, LLVMGetPoison(g->t_vec), mask, "a.splat");
}

/* acc + a * b: llvm.fma on vectors; a separate multiply and add in the scalar fallback,
 * whose targets may lack FMA (llvm.fma would become a call of libm's fmaf there). */
static LLVMValueRef fma_acc(CgCpu *cg, Gemm *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef acc)
{
    if (g->bl.vw == 1) {
        LLVMValueRef p = LLVMBuildFMul(cg->b, a, b, "prod");
        return LLVMBuildFAdd(cg->b, acc, p, "acc.next");
    }
    unsigned id = LLVMLookupIntrinsicID("llvm.fma", 8);
    LLVMTypeRef ft = LLVMIntrinsicGetType(cg->llctx, id, &g->t_vec, 1);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, &g->t_vec, 1);
    LLVMValueRef args[3] = { a, b, acc };
    return LLVMBuildCall2(cg->b, ft, f, args, 3, "acc.next");
}

/* ---- the micro-kernel ---- */

/* Parameters of every micro-kernel function. */
enum { UKR_KC, UKR_A, UKR_LDA, UKR_BP, UKR_LDB, UKR_C, UKR_LDC, UKR_FIRST, UKR_NPARAMS };

/* Emits the body of `void tfx.gemm.vVW.rROWS(i64 kc, ptr a, i64 lda, ptr bp, i64 ldb,
 * ptr c, i64 ldc, i1 first)`:
 *   c[r, j] = (first ? 0 : c[r, j]) + sum_{k < kc} a[r*lda + k] * bp[k*ldb + j]
 * for r < rows and j < nr, summed in k order with one fma per term. The accumulators are
 * allocas that mem2reg turns into rows x nv vector registers. */
static void emit_ukr_body(CgCpu *cg, Gemm *g, int rows, LLVMValueRef fn)
{
    const GemmBlock *bl = &g->bl;
    LLVMValueRef p[UKR_NPARAMS];
    for (int i = 0; i < UKR_NPARAMS; i++)
        p[i] = LLVMGetParam(fn, (unsigned)i);
    LLVMValueRef acc[GEMM_MAX_MR][GEMM_MAX_NV];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < bl->nv; v++)
            acc[r][v] = cg_alloca(cg, g->t_vec, "acc");

    // acc = first ? 0 : c
    LLVMBasicBlockRef zero = cg_block(cg, "init.zero"), load = cg_block(cg, "init.load");
    LLVMBasicBlockRef body = cg_block(cg, "kloop");
    LLVMBuildCondBr(cg->b, p[UKR_FIRST], zero, load);
    LLVMPositionBuilderAtEnd(cg->b, zero);
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < bl->nv; v++)
            LLVMBuildStore(cg->b, LLVMConstNull(g->t_vec), acc[r][v]);
    LLVMBuildBr(cg->b, body);
    LLVMPositionBuilderAtEnd(cg->b, load);
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < bl->nv; v++) {
            LLVMValueRef off = add(cg, mul(cg, cg_i64(cg, r), p[UKR_LDC], "c.row"),
                                   cg_i64(cg, v * bl->vw), "c.off");
            LLVMBuildStore(cg->b, vload(cg, g, fgep(cg, p[UKR_C], off, "c.p"), "c"), acc[r][v]);
        }
    LLVMBuildBr(cg->b, body);
    LLVMPositionBuilderAtEnd(cg->b, body);

    LLVMValueRef arow[GEMM_MAX_MR];
    for (int r = 0; r < rows; r++)
        arow[r] = fgep(cg, p[UKR_A], mul(cg, cg_i64(cg, r), p[UKR_LDA], "a.row"), "a.r");
    CgFor k;
    cg_for_begin(cg, &k, p[UKR_KC], "k");
    LLVMValueRef pb = fgep(cg, p[UKR_BP], mul(cg, k.i, p[UKR_LDB], "b.off"), "b.k");
    LLVMValueRef bv[GEMM_MAX_NV];
    for (int v = 0; v < bl->nv; v++)
        bv[v] = vload(cg, g, fgep(cg, pb, cg_i64(cg, v * bl->vw), "b.p"), "b");
    for (int r = 0; r < rows; r++) {
        LLVMValueRef pa = fgep(cg, arow[r], k.i, "a.p");
        LLVMValueRef x = LLVMBuildLoad2(cg->b, cg->t_f32, pa, "a");
        LLVMValueRef xs = splat(cg, g, x);
        for (int v = 0; v < bl->nv; v++) {
            LLVMValueRef s = LLVMBuildLoad2(cg->b, g->t_vec, acc[r][v], "acc");
            LLVMBuildStore(cg->b, fma_acc(cg, g, xs, bv[v], s), acc[r][v]);
        }
    }
    cg_for_end(cg, &k);

    for (int r = 0; r < rows; r++)
        for (int v = 0; v < bl->nv; v++) {
            LLVMValueRef off = add(cg, mul(cg, cg_i64(cg, r), p[UKR_LDC], "c.row"),
                                   cg_i64(cg, v * bl->vw), "c.off");
            LLVMValueRef s = LLVMBuildLoad2(cg->b, g->t_vec, acc[r][v], "acc");
            vstore(cg, s, fgep(cg, p[UKR_C], off, "c.p"));
        }
    LLVMBuildRetVoid(cg->b);
}

/* The micro-kernel for `rows` rows, emitted once per module. The builders and the current
 * function are saved around its emission and restored. */
static LLVMValueRef ukr_get(CgCpu *cg, Gemm *g, int rows)
{
    char name[64];
    snprintf(name, sizeof name, "tfx.gemm.v%d.r%d", g->bl.vw, rows);
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
    if (fn)
        return fn;
    fn = LLVMAddFunction(cg->mod, name, g->ukr_type);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    // one copy per row count in the module: inlined into every matmul's row switch they
    // made each matmul body ~1800 lines and GPT-2's -O2 compile 2 s; a call per micro-tile
    // (kc FMA steps) costs nothing measurable
    unsigned kind = LLVMGetEnumAttributeKindForName("noinline", 8);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                            LLVMCreateEnumAttribute(cg->llctx, kind, 0));
    LLVMValueRef saved_fn = cg->fn;
    LLVMBasicBlockRef saved_entry = cg->entry, saved_block = LLVMGetInsertBlock(cg->b);
    cg_fn_begin(cg, fn);
    emit_ukr_body(cg, g, rows, fn);
    cg_fn_end(cg);
    cg->fn = saved_fn;
    cg->entry = saved_entry;
    LLVMPositionBuilderAtEnd(cg->ab, cg->entry);
    LLVMPositionBuilderAtEnd(cg->b, saved_block);
    return fn;
}

static void gemm_init(CgCpu *cg, Gemm *g)
{
    memset(g, 0, sizeof *g);
    g->bl = gemm_block(cg);
    g->t_vec = g->bl.vw == 1 ? cg->t_f32 : LLVMVectorType(cg->t_f32, (unsigned)g->bl.vw);
    LLVMTypeRef params[UKR_NPARAMS] = { cg->t_i64, cg->t_ptr, cg->t_i64, cg->t_ptr, cg->t_i64,
                                        cg->t_ptr, cg->t_i64, cg->t_i1 };
    g->ukr_type = LLVMFunctionType(cg->t_void, params, UKR_NPARAMS, false);
    for (int r = 1; r <= g->bl.mr; r++)
        g->ukr[r] = ukr_get(cg, g, r);
}

/* Calls the micro-kernel for `rows` (1..mr, a run-time value) rows through a switch. */
static void call_ukr(CgCpu *cg, Gemm *g, LLVMValueRef rows, LLVMValueRef *args)
{
    LLVMBasicBlockRef done = cg_block(cg, "ukr.done");
    LLVMValueRef sw = LLVMBuildSwitch(cg->b, rows, done, (unsigned)g->bl.mr);
    for (int r = 1; r <= g->bl.mr; r++) {
        char nm[32];
        snprintf(nm, sizeof nm, "ukr.r%d", r);
        LLVMBasicBlockRef bb = cg_block(cg, nm);
        LLVMAddCase(sw, cg_i64(cg, r), bb);
        LLVMPositionBuilderAtEnd(cg->b, bb);
        LLVMBuildCall2(cg->b, g->ukr_type, g->ukr[r], args, UKR_NPARAMS, "");
        LLVMBuildBr(cg->b, done);
    }
    LLVMPositionBuilderAtEnd(cg->b, done);
}

/* ---- packing ---- */

/* Copies the whole panels of B's block: bp[p*kc*nr + k*nr + j] = b[(pc+k)*N + n0 + p*nr + j]
 * for p < npanels; k outside, so each row of b is read in one contiguous run. */
static void pack_b_whole(CgCpu *cg, Gemm *g, LLVMValueRef b, LLVMValueRef n0,
                         LLVMValueRef npanels, LLVMValueRef pc, LLVMValueRef kc)
{
    const GemmBlock *bl = &g->bl;
    LLVMValueRef nr = cg_i64(cg, bl->nr);
    CgFor lk, lp;
    cg_for_begin(cg, &lk, kc, "pack.b.k");
    LLVMValueRef row = mul(cg, add(cg, pc, lk.i, "k"), g->ldb, "b.row");
    LLVMValueRef src = fgep(cg, b, add(cg, row, n0, "src.off"), "src");
    LLVMValueRef dst = fgep(cg, g->bp, mul(cg, lk.i, nr, "k.nr"), "dst");
    cg_for_begin(cg, &lp, npanels, "pack.b.panel");
    LLVMValueRef s = fgep(cg, src, mul(cg, lp.i, nr, "j0"), "src.p");
    LLVMValueRef d = fgep(cg, dst, mul(cg, mul(cg, lp.i, kc, "pk"), nr, "pkn"), "dst.p");
    for (int v = 0; v < bl->nv; v++) {
        LLVMValueRef o = cg_i64(cg, v * bl->vw);
        LLVMValueRef x = vload(cg, g, fgep(cg, s, o, "src.v"), "b");
        vstore(cg, x, fgep(cg, d, o, "dst.v"));
    }
    cg_for_end(cg, &lp);
    cg_for_end(cg, &lk);
}

/* Packs B's block for one k block: bp[(j/nr)*kc*nr + k*nr + j%nr] = b[(pc+k)*N + n0 + j] for
 * j < nc, and 0 for the columns that pad nc up to a multiple of nr.  b: [K, N] of one batch
 * entry. With `direct` the whole panels are left out (the kernel reads them in place). */
static void pack_b(CgCpu *cg, Gemm *g, LLVMValueRef b, LLVMValueRef n0, LLVMValueRef nc,
                   LLVMValueRef pc, LLVMValueRef kc, LLVMValueRef direct)
{
    const GemmBlock *bl = &g->bl;
    LLVMValueRef nr = cg_i64(cg, bl->nr);
    LLVMValueRef nwhole = LLVMBuildSDiv(cg->b, nc, nr, "b.whole");
    LLVMBasicBlockRef whole = cg_block(cg, "pack.b.whole"), after = cg_block(cg, "pack.b.after");
    LLVMBuildCondBr(cg->b, direct, after, whole);
    LLVMPositionBuilderAtEnd(cg->b, whole);
    pack_b_whole(cg, g, b, n0, nwhole, pc, kc);
    LLVMBuildBr(cg->b, after);
    LLVMPositionBuilderAtEnd(cg->b, after);

    // the last, partial panel: ncols < nr real columns, zeros after them
    LLVMValueRef j0 = mul(cg, nwhole, nr, "j0");
    LLVMValueRef ncols = LLVMBuildSub(cg->b, nc, j0, "ncols");
    LLVMValueRef partial = LLVMBuildICmp(cg->b, LLVMIntSGT, ncols, cg_i64(cg, 0), "partial");
    LLVMBasicBlockRef edge = cg_block(cg, "pack.b.edge"), done = cg_block(cg, "pack.b.done");
    LLVMBuildCondBr(cg->b, partial, edge, done);
    LLVMPositionBuilderAtEnd(cg->b, edge);
    LLVMValueRef dst = fgep(cg, g->bp, mul(cg, j0, kc, "pk"), "dst");
    LLVMValueRef row = mul(cg, pc, g->ldb, "b.row");
    LLVMValueRef src = fgep(cg, b, add(cg, row, add(cg, n0, j0, "n"), "src.off"), "src");
    CgFor lk, lj;
    cg_for_begin(cg, &lk, kc, "pack.b.ek");
    LLVMValueRef s = fgep(cg, src, mul(cg, lk.i, g->ldb, "k.n"), "src.k");
    LLVMValueRef d = fgep(cg, dst, mul(cg, lk.i, nr, "k.nr"), "dst.k");
    cg_for_begin(cg, &lj, nr, "pack.b.ej");
    LLVMValueRef in = LLVMBuildICmp(cg->b, LLVMIntSLT, lj.i, ncols, "in");
    // clamp the column so the load stays inside b; the select drops it
    LLVMValueRef jc = LLVMBuildSelect(cg->b, in, lj.i, cg_i64(cg, 0), "jc");
    LLVMValueRef x = LLVMBuildLoad2(cg->b, cg->t_f32, fgep(cg, s, jc, "src.j"), "b");
    LLVMValueRef y = LLVMBuildSelect(cg->b, in, x, cg_f32c(cg, 0.0), "b.or0");
    LLVMBuildStore(cg->b, y, fgep(cg, d, lj.i, "dst.j"));
    cg_for_end(cg, &lj);
    cg_for_end(cg, &lk);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
}

/* pack_b for a B read through its transpose: b holds S = B^T, [N, K] of one batch entry, so
 * bp[(j/nr)*kc*nr + k*nr + j%nr] = S[(n0+j)*K + pc + k] for j < nc (each S row read
 * contiguously), and 0 for the columns that pad nc up to a multiple of nr. */
static void pack_b_trans(CgCpu *cg, Gemm *g, LLVMValueRef b, LLVMValueRef n0, LLVMValueRef nc,
                         LLVMValueRef pc, LLVMValueRef kc)
{
    LLVMValueRef nr = cg_i64(cg, g->bl.nr);
    LLVMValueRef npad = mul(cg, ceil_div(cg, nc, g->bl.nr, "t.panels"), nr, "t.cols");
    CgFor lj, lk;
    cg_for_begin(cg, &lj, npad, "pack.bt.j");
    LLVMValueRef in = LLVMBuildICmp(cg->b, LLVMIntSLT, lj.i, nc, "in");
    // a padding column reads row n0 (inside S) and the select stores 0
    LLVMValueRef jc = LLVMBuildSelect(cg->b, in, lj.i, cg_i64(cg, 0), "jc");
    LLVMValueRef srow = mul(cg, add(cg, n0, jc, "n"), g->ldb, "s.row");
    LLVMValueRef src = fgep(cg, b, add(cg, srow, pc, "s.off"), "s.jk");
    LLVMValueRef panel = LLVMBuildSDiv(cg->b, lj.i, nr, "panel");
    LLVMValueRef col = LLVMBuildSRem(cg->b, lj.i, nr, "col");
    LLVMValueRef dst = fgep(cg, g->bp, add(cg, mul(cg, mul(cg, panel, kc, "pk"), nr, "pkn"), col,
                                           "d.off"), "d.j");
    cg_for_begin(cg, &lk, kc, "pack.bt.k");
    LLVMValueRef x = LLVMBuildLoad2(cg->b, cg->t_f32, fgep(cg, src, lk.i, "s.k"), "bt");
    LLVMValueRef y = LLVMBuildSelect(cg->b, in, x, cg_f32c(cg, 0.0), "bt.or0");
    LLVMBuildStore(cg->b, y, fgep(cg, dst, mul(cg, lk.i, nr, "k.nr"), "d.k"));
    cg_for_end(cg, &lk);
    cg_for_end(cg, &lj);
}

/* ---- one tile ---- */

/* i * n / parts: where part i of n things split evenly into `parts` begins. */
static LLVMValueRef even_split(CgCpu *cg, LLVMValueRef i, LLVMValueRef n, LLVMValueRef parts,
                               const char *nm)
{
    return LLVMBuildSDiv(cg->b, mul(cg, i, n, "split"), parts, nm);
}

/* Copies a rows x cols block between c (row stride ldc) and g->tile (row stride nr). */
static void copy_tile(CgCpu *cg, Gemm *g, LLVMValueRef c, LLVMValueRef ldc, LLVMValueRef rows,
                      LLVMValueRef cols, bool to_tile)
{
    CgFor lr, lc;
    cg_for_begin(cg, &lr, rows, to_tile ? "tile.in.r" : "tile.out.r");
    cg_for_begin(cg, &lc, cols, to_tile ? "tile.in.c" : "tile.out.c");
    LLVMValueRef pc = fgep(cg, c, add(cg, mul(cg, lr.i, ldc, "c.row"), lc.i, "c.off"), "c.p");
    LLVMValueRef t_off = add(cg, mul(cg, lr.i, cg_i64(cg, g->bl.nr), "t.row"), lc.i, "t.off");
    LLVMValueRef pt = fgep(cg, g->tile, t_off, "t.p");
    LLVMValueRef x = LLVMBuildLoad2(cg->b, cg->t_f32, to_tile ? pc : pt, "x");
    LLVMBuildStore(cg->b, x, to_tile ? pt : pc);
    cg_for_end(cg, &lc);
    cg_for_end(cg, &lr);
}

/* Runs the micro-kernel on C's micro-tile at c (rows x cols of it are real; row stride
 * N). A tile cut by the right edge goes through g->tile so the kernel always writes nr
 * columns. */
static void micro_tile(CgCpu *cg, Gemm *g, LLVMValueRef *args, LLVMValueRef rows,
                       LLVMValueRef cols, LLVMValueRef first)
{
    LLVMValueRef c = args[UKR_C];
    LLVMValueRef edge = LLVMBuildICmp(cg->b, LLVMIntNE, cols, cg_i64(cg, g->bl.nr), "edge");
    LLVMValueRef need_in = LLVMBuildAnd(cg->b, edge, LLVMBuildNot(cg->b, first, "not.first"), "in");
    LLVMBasicBlockRef in = cg_block(cg, "tile.in"), call = cg_block(cg, "tile.call");
    LLVMBuildCondBr(cg->b, need_in, in, call);
    LLVMPositionBuilderAtEnd(cg->b, in);
    copy_tile(cg, g, c, g->N, rows, cols, true);
    LLVMBuildBr(cg->b, call);
    LLVMPositionBuilderAtEnd(cg->b, call);
    args[UKR_C] = LLVMBuildSelect(cg->b, edge, g->tile, c, "c.or.tile");
    args[UKR_LDC] = LLVMBuildSelect(cg->b, edge, cg_i64(cg, g->bl.nr), g->N, "ldc");
    call_ukr(cg, g, rows, args);
    LLVMBasicBlockRef out = cg_block(cg, "tile.out"), done = cg_block(cg, "tile.done");
    LLVMBuildCondBr(cg->b, edge, out, done);
    LLVMPositionBuilderAtEnd(cg->b, out);
    copy_tile(cg, g, c, g->N, rows, cols, false);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
}

/* C[m0 .. m0+mc, n0 .. n0+nc] of one batch entry over the whole of K, kc at a time: pack
 * B's panel, then every micro-tile, micro-rows outside so the kernel's A rows (mr x kc,
 * read in place from a) stay in L1 while B's packed panel streams from L2. A block of at
 * most mr rows uses each B element once, so whole B panels are then read in place too. */
static void tile_block(CgCpu *cg, Gemm *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef y,
                       LLVMValueRef m0, LLVMValueRef mc, LLVMValueRef n0, LLVMValueRef nc)
{
    const GemmBlock *bl = &g->bl;
    // at least one k block, so K = 0 still stores zeros
    LLVMValueRef nkb = ceil_div(cg, g->K, bl->kc, "k.blocks");
    LLVMValueRef one = cg_i64(cg, 1), nr = cg_i64(cg, bl->nr);
    LLVMValueRef small = LLVMBuildICmp(cg->b, LLVMIntSLT, nkb, one, "no.k");
    nkb = LLVMBuildSelect(cg->b, small, one, nkb, "k.blocks");
    // B^T is never read in place: its rows are B's columns
    LLVMValueRef direct = g->trans ? LLVMConstInt(cg->t_i1, 0, false)
                                   : LLVMBuildICmp(cg->b, LLVMIntSLE, mc, cg_i64(cg, bl->mr), "direct");
    CgFor lp, li, lj;
    cg_for_begin(cg, &lp, nkb, "kb");
    LLVMValueRef pc = mul(cg, lp.i, cg_i64(cg, bl->kc), "pc");
    LLVMValueRef kc = imin(cg, cg_i64(cg, bl->kc), LLVMBuildSub(cg->b, g->K, pc, "k.left"), "kc");
    LLVMValueRef first = LLVMBuildICmp(cg->b, LLVMIntEQ, lp.i, cg_i64(cg, 0), "first");
    if (g->trans)
        pack_b_trans(cg, g, b, n0, nc, pc, kc);
    else
        pack_b(cg, g, b, n0, nc, pc, kc, direct);
    LLVMValueRef nip = ceil_div(cg, mc, bl->mr, "m.panels");
    LLVMValueRef njp = ceil_div(cg, nc, bl->nr, "n.panels");
    cg_for_begin(cg, &li, nip, "ir");
    cg_for_begin(cg, &lj, njp, "jr");
    // the mc rows split evenly over the nip micro-panels (no 1- or 2-row leftover)
    LLVMValueRef i0 = even_split(cg, li.i, mc, nip, "i0");
    LLVMValueRef i1 = even_split(cg, add(cg, li.i, cg_i64(cg, 1), "ip.next"), mc, nip, "i1");
    LLVMValueRef rows = LLVMBuildSub(cg->b, i1, i0, "rows");
    LLVMValueRef m = add(cg, m0, i0, "m");
    LLVMValueRef pa = fgep(cg, a, add(cg, mul(cg, m, g->K, "a.row"), pc, "a.off"), "a.ik");
    LLVMValueRef crow = mul(cg, m, g->N, "c.row");
    LLVMValueRef j0 = mul(cg, lj.i, nr, "j0");
    LLVMValueRef cols = imin(cg, nr, LLVMBuildSub(cg->b, nc, j0, "n.left"), "cols");
    LLVMValueRef n = add(cg, n0, j0, "n");
    // B in place (row stride N) for a whole panel of a direct block, else packed
    LLVMValueRef whole = LLVMBuildICmp(cg->b, LLVMIntEQ, cols, nr, "whole");
    LLVMValueRef in_place = LLVMBuildAnd(cg->b, direct, whole, "in.place");
    LLVMValueRef bsrc = fgep(cg, b, add(cg, mul(cg, pc, g->ldb, "b.row"), n, "b.off"), "b.kj");
    LLVMValueRef bpk = fgep(cg, g->bp, mul(cg, j0, kc, "b.panel"), "bp.j");
    LLVMValueRef bsel = LLVMBuildSelect(cg->b, in_place, bsrc, bpk, "b.src");
    LLVMValueRef ldb = LLVMBuildSelect(cg->b, in_place, g->ldb, nr, "ldb");
    LLVMValueRef c = fgep(cg, y, add(cg, crow, n, "c.off"), "c.ij");
    LLVMValueRef args[UKR_NPARAMS] = {
        [UKR_KC] = kc, [UKR_A] = pa, [UKR_LDA] = g->K, [UKR_BP] = bsel, [UKR_LDB] = ldb,
        [UKR_C] = c, [UKR_LDC] = g->N, [UKR_FIRST] = first,
    };
    micro_tile(cg, g, args, rows, cols, first);
    cg_for_end(cg, &lj);
    cg_for_end(cg, &li);
    cg_for_end(cg, &lp);
}

/* ---- the op ---- */

/* The offset of v's [batch..., 0, 0] for the result's batch index idx[0 .. nb) (numpy
 * broadcasting: v's constant-1 batch dims are read at 0). */
static LLVMValueRef batch_offset(CgCpu *cg, const IrValue *v, LLVMValueRef *idx, int nb)
{
    int r = v->shape.rank;
    LLVMValueRef vi[IR_MAX_RANK];
    for (int j = 0; j < r - 2; j++) {
        Dim d = v->shape.dims[j];
        vi[j] = dim_is_const(d) && d.c == 1 ? NULL : idx[j + nb - (r - 2)];
    }
    vi[r - 2] = vi[r - 1] = NULL;
    return cg_offset(cg, v, vi);
}

/* Number of tiles: batch x N-blocks x M-blocks, with this function's dims. N is cut into
 * ceil(N/nc) blocks; when that gives fewer than 16 tiles, their number is rounded up to a
 * multiple of 6 (capped at one block per nr columns) so that 2 and 3 threads get equal
 * shares: gcd(g, 6) for g = batch x M-blocks is (g even ? 2 : 1) x (3 divides g ? 3 : 1).
 * The tiling does not change what any element computes (docs/codegen.md). */
static LLVMValueRef tile_count(CgCpu *cg, Gemm *g, const IrValue *y, LLVMValueRef *nmb,
                               LLVMValueRef *nnb)
{
    int r = y->shape.rank;
    LLVMValueRef nb = cg_i64(cg, 1), zero = cg_i64(cg, 0);
    for (int j = 0; j < r - 2; j++)
        nb = mul(cg, nb, cg_dim(cg, y->shape.dims[j]), "batch");
    *nmb = ceil_div(cg, g->M, g->bl.mc, "m.blocks");
    LLVMValueRef gr = mul(cg, nb, *nmb, "groups");
    LLVMValueRef base = ceil_div(cg, g->N, g->bl.nc, "n.blocks");
    LLVMValueRef even = LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMBuildSRem(cg->b, gr, cg_i64(cg, 2), "g2"),
                                      zero, "g.even");
    LLVMValueRef by3 = LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMBuildSRem(cg->b, gr, cg_i64(cg, 3), "g3"),
                                     zero, "g.by3");
    LLVMValueRef q = mul(cg, LLVMBuildSelect(cg->b, even, cg_i64(cg, 1), cg_i64(cg, 2), "q2"),
                         LLVMBuildSelect(cg->b, by3, cg_i64(cg, 1), cg_i64(cg, 3), "q3"), "q");
    LLVMValueRef rounded = mul(cg, LLVMBuildSDiv(cg->b, add(cg, base, LLVMBuildSub(cg->b, q,
                               cg_i64(cg, 1), "q1"), "bq"), q, "nq"), q, "n.rounded");
    rounded = imin(cg, rounded, ceil_div(cg, g->N, g->bl.nr, "n.units"), "n.rounded");
    LLVMValueRef few = LLVMBuildICmp(cg->b, LLVMIntSLT, mul(cg, gr, base, "t0"), cg_i64(cg, 16),
                                     "few");
    *nnb = LLVMBuildSelect(cg->b, few, rounded, base, "n.blocks");
    // N = 0: one (empty) block, so the tile count stays well defined
    *nnb = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, *nnb, cg_i64(cg, 1), "nn0"),
                           cg_i64(cg, 1), *nnb, "n.blocks");
    return mul(cg, gr, *nnb, "tiles");
}

static void load_dims(CgCpu *cg, Gemm *g, const IrValue *y, const IrValue *a)
{
    int r = y->shape.rank;
    g->M = cg_dim(cg, y->shape.dims[r - 2]);
    g->N = cg_dim(cg, y->shape.dims[r - 1]);
    g->K = cg_dim(cg, a->shape.dims[a->shape.rank - 1]);
    g->ldb = g->trans ? g->K : g->N;
    if (g->heads)   // B's batch dim is the H of the [rows, H, cols] buffer read through
        g->ldb = mul(cg, g->ldb, cg_dim(cg, y->shape.dims[0]), "ldb.heads");
}

/* Whether matmul op is lowered by cg_gemm_lower: f32 at -O1 and above. */
bool cg_gemm_applies(const CgCpu *cg, const IrOp *op)
{
    return cg->opt_level >= 1 && op->results[0]->dtype == DT_F32
           && op->operands[0]->dtype == DT_F32 && op->operands[1]->dtype == DT_F32;
}

/* Points *pa, *pb and *py at batch entry bi of a, bm and y (numpy broadcasting). */
static void batch_ptrs(CgCpu *cg, Gemm *g, IrOp *op, LLVMValueRef bi, LLVMValueRef *pa,
                       LLVMValueRef *pb, LLVMValueRef *py)
{
    IrValue *y = op->results[0], *a = op->operands[0], *bm = op->operands[1];
    int r = y->shape.rank;
    LLVMValueRef idx[IR_MAX_RANK];
    LLVMValueRef left = bi;
    for (int j = r - 3; j >= 0; j--) {
        LLVMValueRef d = cg_dim(cg, y->shape.dims[j]);
        idx[j] = j > 0 ? LLVMBuildSRem(cg->b, left, d, "bix") : left;
        left = LLVMBuildSDiv(cg->b, left, d, "bleft");
    }
    *pa = fgep(cg, cg->buf[a->id], batch_offset(cg, a, idx, r - 2), "a.batch");
    LLVMValueRef boff = g->heads ? mul(cg, idx[0], g->trans ? g->K : g->N, "b.head")
                                 : batch_offset(cg, bm, idx, r - 2);
    *pb = fgep(cg, cg->buf[bm->id], boff, "b.batch");
    *py = fgep(cg, cg->buf[y->id], mul(cg, bi, mul(cg, g->M, g->N, "mn"), "y.off"), "y.batch");
}

/* Starts the outlined body of op's GEMM or GEMV: its operands and result, and the buffers
 * of its epilogue group when it has one. */
static void gemm_par_begin(CgCpu *cg, CgPar *par, IrOp *op, LLVMValueRef n, const char *fname)
{
    const IrOp *epi = cg->epi_root[op->results[0]->id];
    if (!epi || cg->gpu) {
        cg_par_begin(cg, par, op, n, fname);
        return;
    }
    const IrValue *vals[CG_PAR_MAX_VALS];
    vals[0] = op->operands[0], vals[1] = op->operands[1], vals[2] = op->results[0];
    uint32_t nv = 3 + cg_fuse_values(cg, epi, vals + 3);
    for (uint32_t i = 3; i < nv; i++) {   // a weight or constant the group reads may come
        const IrOp *d = vals[i]->def;     // after op: look it up, fill it, now
        if (d && (d->kind == IR_OP_WEIGHT || d->kind == IR_OP_CONST))
            cg_lower_op(cg, (IrOp *)d);
    }
    cg_par_begin_vals(cg, par, vals, nv, n, NULL, fname);
}

/* The epilogue of op (a fused group of its result, cg_fuse_plan) over rows [m0, m0+mc)
 * and columns [n0, n1) of the result, whose product is final. */
static void epilogue(CgCpu *cg, IrOp *op, LLVMValueRef m0, LLVMValueRef mc, LLVMValueRef n0,
                     LLVMValueRef n1)
{
    const IrOp *epi = cg->epi_root[op->results[0]->id];
    if (!epi)
        return;
    CgFor lr;
    cg_for_range(cg, &lr, m0, add(cg, m0, mc, "epi.m1"), "epi.row");
    cg_fuse_emit_cols(cg, epi, lr.i, n0, n1);
    cg_for_end(cg, &lr);
}

/* The tiles of y = a @ bm. Tile t is (batch entry, N-block, M-block) with the M-block
 * varying fastest; each pool thread gets a contiguous run of tiles and each tile computes
 * its block of y over all of K. */
static void gemm_region(CgCpu *cg, IrOp *op, Gemm *g, const char *fname)
{
    IrValue *y = op->results[0], *a = op->operands[0];
    LLVMValueRef nmb, nnb;
    LLVMValueRef ntiles = tile_count(cg, g, y, &nmb, &nnb);
    CgPar par;
    gemm_par_begin(cg, &par, op, ntiles, fname);

    load_dims(cg, g, y, a);   // the body has its own symbol values
    tile_count(cg, g, y, &nmb, &nnb);
    g->bp = aligned_array(cg, (int64_t)g->bl.kc * g->bl.nc, "pack.b");
    g->tile = aligned_array(cg, (int64_t)g->bl.mr * g->bl.nr, "tile");
    int64_t bp_bytes = (int64_t)g->bl.kc * g->bl.nc * 4;
    int64_t tile_bytes = (int64_t)g->bl.mr * g->bl.nr * 4;
    lifetime(cg, "llvm.lifetime.start", g->bp, bp_bytes);
    lifetime(cg, "llvm.lifetime.start", g->tile, tile_bytes);
    CgFor lt;
    cg_for_range(cg, &lt, par.begin, par.end, "tile");
    LLVMValueRef ib = LLVMBuildSRem(cg->b, lt.i, nmb, "ib");
    LLVMValueRef rest = LLVMBuildSDiv(cg->b, lt.i, nmb, "rest");
    LLVMValueRef jb = LLVMBuildSRem(cg->b, rest, nnb, "jb");
    LLVMValueRef bi = LLVMBuildSDiv(cg->b, rest, nnb, "bi");
    LLVMValueRef pa, pb, py;
    batch_ptrs(cg, g, op, bi, &pa, &pb, &py);
    LLVMValueRef m0 = even_split(cg, ib, g->M, nmb, "m0");
    LLVMValueRef m1 = even_split(cg, add(cg, ib, cg_i64(cg, 1), "ib.next"), g->M, nmb, "m1");
    // N-block jb: units of nr columns split evenly, the last block cut at N
    LLVMValueRef units = ceil_div(cg, g->N, g->bl.nr, "n.units"), nr = cg_i64(cg, g->bl.nr);
    LLVMValueRef n0 = mul(cg, even_split(cg, jb, units, nnb, "u0"), nr, "n0");
    LLVMValueRef n1 = mul(cg, even_split(cg, add(cg, jb, cg_i64(cg, 1), "jb.next"), units, nnb,
                                         "u1"), nr, "n1");
    LLVMValueRef mc = LLVMBuildSub(cg->b, m1, m0, "mc");
    LLVMValueRef nc = LLVMBuildSub(cg->b, imin(cg, n1, g->N, "n.end"), n0, "nc");
    tile_block(cg, g, pa, pb, py, m0, mc, n0, nc);
    epilogue(cg, op, m0, mc, n0, add(cg, n0, nc, "n1"));
    cg_for_end(cg, &lt);
    lifetime(cg, "llvm.lifetime.end", g->bp, bp_bytes);
    lifetime(cg, "llvm.lifetime.end", g->tile, tile_bytes);
    cg_par_end(cg, &par);
}

/* ---- M = 1: matrix-vector products that stream B once ---- */

enum {
    GEMV_CHUNK = 64,    /* columns of y per pool work item */
    GEMV_SPAN = 1024,   /* columns of y kept in L1 while B's rows stream past */
};

/* acc + a * b on scalars with the rounding of one lane of fma_acc: fused on the vector
 * targets (which have FMA), fmul + fadd in the scalar fallback. */
static LLVMValueRef fma_scalar(CgCpu *cg, Gemm *g, LLVMValueRef a, LLVMValueRef b,
                               LLVMValueRef acc)
{
    if (g->bl.vw == 1)
        return fma_acc(cg, g, a, b, acc);
    unsigned id = LLVMLookupIntrinsicID("llvm.fma", 8);
    LLVMTypeRef ft = LLVMIntrinsicGetType(cg->llctx, id, &cg->t_f32, 1);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, &cg->t_f32, 1);
    LLVMValueRef args[3] = { a, b, acc };
    return LLVMBuildCall2(cg->b, ft, f, args, 3, "acc.next");
}

/* y[n] = sum_k a[k] * B[k, n] for n0 <= n < n1, B = b: [K, N] read in place, row after row
 * (each row's slice once, in order), in spans of at most GEMV_SPAN columns whose partial
 * sums stay in y (L1): y = 0, then for each k in order y[n] = fma(a[k], B[k, n], y[n]) --
 * the GEMM's sequence for every element. */
static void gemv_rows(CgCpu *cg, Gemm *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef y,
                      LLVMValueRef n0, LLVMValueRef n1)
{
    int vw = g->bl.vw;
    LLVMValueRef cols = LLVMBuildSub(cg->b, n1, n0, "gv.cols");
    CgFor ls, lz, lk, lv, lt;
    cg_for_begin(cg, &ls, ceil_div(cg, cols, GEMV_SPAN, "gv.spans"), "gv.span");
    LLVMValueRef s0 = add(cg, n0, mul(cg, ls.i, cg_i64(cg, GEMV_SPAN), "gv.s"), "gv.s0");
    LLVMValueRef len = LLVMBuildSub(cg->b, imin(cg, add(cg, s0, cg_i64(cg, GEMV_SPAN), "gv.e"),
                                                n1, "gv.s1"), s0, "gv.len");
    LLVMValueRef nvec = LLVMBuildSDiv(cg->b, len, cg_i64(cg, vw), "gv.nvec");
    LLVMValueRef ys = fgep(cg, y, s0, "gv.y");
    cg_for_begin(cg, &lz, len, "gv.zero");
    LLVMBuildStore(cg->b, cg_f32c(cg, 0.0), fgep(cg, ys, lz.i, "gv.yz"));
    cg_for_end(cg, &lz);
    cg_for_begin(cg, &lk, g->K, "gv.k");
    LLVMValueRef x = LLVMBuildLoad2(cg->b, cg->t_f32, fgep(cg, a, lk.i, "gv.a.p"), "gv.a");
    LLVMValueRef xs = splat(cg, g, x);
    LLVMValueRef bk = fgep(cg, b, add(cg, mul(cg, lk.i, g->ldb, "gv.brow"), s0, "gv.boff"), "gv.b");
    cg_for_begin(cg, &lv, nvec, "gv.v");
    LLVMValueRef o = mul(cg, lv.i, cg_i64(cg, vw), "gv.o");
    LLVMValueRef py = fgep(cg, ys, o, "gv.yp");
    LLVMValueRef bv = vload(cg, g, fgep(cg, bk, o, "gv.bp"), "gv.bv");
    vstore(cg, fma_acc(cg, g, xs, bv, vload(cg, g, py, "gv.yv")), py);
    cg_for_end(cg, &lv);
    // the last len mod vw columns (only at N's end: spans start at multiples of GEMV_CHUNK)
    cg_for_range(cg, &lt, mul(cg, nvec, cg_i64(cg, vw), "gv.t0"), len, "gv.t");
    LLVMValueRef pt = fgep(cg, ys, lt.i, "gv.yt");
    LLVMValueRef bt = LLVMBuildLoad2(cg->b, cg->t_f32, fgep(cg, bk, lt.i, "gv.btp"), "gv.bt");
    LLVMValueRef yt = LLVMBuildLoad2(cg->b, cg->t_f32, pt, "gv.yt.v");
    LLVMBuildStore(cg->b, fma_scalar(cg, g, x, bt, yt), pt);
    cg_for_end(cg, &lt);
    cg_for_end(cg, &lk);
    cg_for_end(cg, &ls);
}

/* y[n] = dot(a, S[n, :]) for n0 <= n < n1, where b holds S = B^T: [N, K] (a tied LM head's
 * wte), each row read once, contiguously. Lane l of one vector accumulator sums the terms
 * k = l (mod vw) in order with fma, the lanes are then added in lane order and the last
 * K mod vw terms fused in order: a fixed sequence per element, whatever the thread count,
 * but not the GEMM's k order (docs/codegen.md). */
static void gemv_trans(CgCpu *cg, Gemm *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef y,
                       LLVMValueRef n0, LLVMValueRef n1)
{
    int vw = g->bl.vw;
    LLVMValueRef acc = cg_alloca(cg, g->t_vec, "gt.acc"), sum = cg_alloca(cg, cg->t_f32, "gt.sum");
    LLVMValueRef nvec = LLVMBuildSDiv(cg->b, g->K, cg_i64(cg, vw), "gt.nvec");
    CgFor ln, lv, lt;
    cg_for_range(cg, &ln, n0, n1, "gt.n");
    LLVMValueRef row = fgep(cg, b, mul(cg, ln.i, g->ldb, "gt.roff"), "gt.row");
    LLVMBuildStore(cg->b, LLVMConstNull(g->t_vec), acc);
    cg_for_begin(cg, &lv, nvec, "gt.v");
    LLVMValueRef o = mul(cg, lv.i, cg_i64(cg, vw), "gt.o");
    LLVMValueRef av = vload(cg, g, fgep(cg, a, o, "gt.ap"), "gt.av");
    LLVMValueRef sv = vload(cg, g, fgep(cg, row, o, "gt.sp"), "gt.sv");
    LLVMBuildStore(cg->b, fma_acc(cg, g, av, sv, LLVMBuildLoad2(cg->b, g->t_vec, acc, "gt.a")), acc);
    cg_for_end(cg, &lv);
    LLVMValueRef v = LLVMBuildLoad2(cg->b, g->t_vec, acc, "gt.acc.v");
    LLVMValueRef s = v;
    if (vw > 1) {
        s = LLVMBuildExtractElement(cg->b, v, LLVMConstInt(cg->t_i32, 0, false), "gt.l");
        for (int l = 1; l < vw; l++)
            s = LLVMBuildFAdd(cg->b, s, LLVMBuildExtractElement(cg->b, v,
                              LLVMConstInt(cg->t_i32, (unsigned long long)l, false), "gt.l"),
                              "gt.s");
    }
    LLVMBuildStore(cg->b, s, sum);
    cg_for_range(cg, &lt, mul(cg, nvec, cg_i64(cg, vw), "gt.t0"), g->K, "gt.t");
    LLVMValueRef at = LLVMBuildLoad2(cg->b, cg->t_f32, fgep(cg, a, lt.i, "gt.atp"), "gt.at");
    LLVMValueRef st = LLVMBuildLoad2(cg->b, cg->t_f32, fgep(cg, row, lt.i, "gt.stp"), "gt.st");
    LLVMValueRef cur = LLVMBuildLoad2(cg->b, cg->t_f32, sum, "gt.cur");
    LLVMBuildStore(cg->b, fma_scalar(cg, g, at, st, cur), sum);
    cg_for_end(cg, &lt);
    LLVMBuildStore(cg->b, LLVMBuildLoad2(cg->b, cg->t_f32, sum, "gt.y"),
                   fgep(cg, y, ln.i, "gt.yp"));
    cg_for_end(cg, &ln);
}

/* y = a @ bm for M = 1: work item t is (batch entry, GEMV_CHUNK columns of y); a thread's
 * contiguous run of items is done as one column range per batch entry, so B's rows are
 * read in long runs, once, and never packed. */
static void gemv_region(CgCpu *cg, IrOp *op, Gemm *g, const char *fname)
{
    IrValue *y = op->results[0], *a = op->operands[0];
    int r = y->shape.rank;
    LLVMValueRef nb = cg_i64(cg, 1);
    for (int j = 0; j < r - 2; j++)
        nb = mul(cg, nb, cg_dim(cg, y->shape.dims[j]), "batch");
    LLVMValueRef items = mul(cg, nb, ceil_div(cg, g->N, GEMV_CHUNK, "gv.chunks"), "gv.items");
    CgPar par;
    gemm_par_begin(cg, &par, op, items, fname);

    load_dims(cg, g, y, a);   // the body has its own symbol values
    LLVMValueRef nch = ceil_div(cg, g->N, GEMV_CHUNK, "gv.chunks");
    LLVMValueRef tv = cg_alloca(cg, cg->t_i64, "gv.t");
    LLVMBuildStore(cg->b, par.begin, tv);
    LLVMBasicBlockRef head = cg_block(cg, "gv.run"), body = cg_block(cg, "gv.body");
    LLVMBasicBlockRef done = cg_block(cg, "gv.done");
    LLVMBuildBr(cg->b, head);
    LLVMPositionBuilderAtEnd(cg->b, head);
    LLVMValueRef t = LLVMBuildLoad2(cg->b, cg->t_i64, tv, "gv.t.v");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, t, par.end, "gv.more"), body, done);
    LLVMPositionBuilderAtEnd(cg->b, body);
    LLVMValueRef bi = LLVMBuildSDiv(cg->b, t, nch, "gv.bi");
    LLVMValueRef c0 = LLVMBuildSRem(cg->b, t, nch, "gv.c0");
    LLVMValueRef c1 = imin(cg, nch, add(cg, c0, LLVMBuildSub(cg->b, par.end, t, "gv.left"), "gv.c"),
                           "gv.c1");
    LLVMValueRef pa, pb, py;
    batch_ptrs(cg, g, op, bi, &pa, &pb, &py);
    LLVMValueRef n0 = mul(cg, c0, cg_i64(cg, GEMV_CHUNK), "gv.n0");
    LLVMValueRef n1 = imin(cg, mul(cg, c1, cg_i64(cg, GEMV_CHUNK), "gv.n"), g->N, "gv.n1");
    if (g->trans)
        gemv_trans(cg, g, pa, pb, py, n0, n1);
    else
        gemv_rows(cg, g, pa, pb, py, n0, n1);
    epilogue(cg, op, cg_i64(cg, 0), cg_i64(cg, 1), n0, n1);
    LLVMBuildStore(cg->b, add(cg, t, LLVMBuildSub(cg->b, c1, c0, "gv.step"), "gv.next"), tv);
    LLVMBuildBr(cg->b, head);
    LLVMPositionBuilderAtEnd(cg->b, done);
    cg_par_end(cg, &par);
}

/* y = a @ bm: the GEMV for M = 1, else the blocked GEMM; a symbolic M chooses at run time
 * (both bodies are emitted). */
void cg_gemm_lower(CgCpu *cg, IrOp *op)
{
    IrValue *y = op->results[0], *a = op->operands[0], *bm = op->operands[1];
    Gemm g;
    gemm_init(cg, &g);
    g.trans = cg->gemm_tb && cg->gemm_tb[bm->id] == GEMM_TB_SWAP;
    const IrValue *bsrc = g.trans ? bm->def->operands[0] : bm;
    g.heads = cg->gemm_tb && cg->gemm_tb[bsrc->id] == GEMM_TB_HEADS;
    char fname[160], vname[180];
    snprintf(fname, sizeof fname, "%s.%s", ir_op_info[op->kind].name, cg_name(cg, y));
    snprintf(vname, sizeof vname, "%s.gemv", fname);
    Dim m = y->shape.dims[y->shape.rank - 2];
    load_dims(cg, &g, y, a);
    if (dim_is_const(m)) {
        if (m.c == 1)
            gemv_region(cg, op, &g, vname);
        else
            gemm_region(cg, op, &g, fname);
        return;
    }
    LLVMValueRef one = LLVMBuildICmp(cg->b, LLVMIntEQ, g.M, cg_i64(cg, 1), "m.is1");
    LLVMBasicBlockRef bv = cg_block(cg, "mm.gemv"), bm_ = cg_block(cg, "mm.gemm");
    LLVMBasicBlockRef join = cg_block(cg, "mm.done");
    LLVMBuildCondBr(cg->b, one, bv, bm_);
    LLVMPositionBuilderAtEnd(cg->b, bv);
    gemv_region(cg, op, &g, vname);
    LLVMBuildBr(cg->b, join);
    LLVMPositionBuilderAtEnd(cg->b, bm_);
    load_dims(cg, &g, y, a);   // forward's values again (gemv_region left the body's in g)
    gemm_region(cg, op, &g, fname);
    LLVMBuildBr(cg->b, join);
    LLVMPositionBuilderAtEnd(cg->b, join);
}

/* ---- reading B through a transpose ---- */

bool cg_swaps_last_two(const IrOp *t)
{
    int r = t->results[0]->shape.rank;
    if (r < 2 || t->attrs.perm[r - 2] != r - 1 || t->attrs.perm[r - 1] != r - 2)
        return false;
    for (int j = 0; j < r - 2; j++)
        if (t->attrs.perm[j] != j)
            return false;
    return true;
}

/* A [rows, H, cols] -> [H, rows, cols] transpose (split_heads) with v as its one use. */
static bool is_heads(const IrValue *v)
{
    const IrOp *t = v->def;
    return t && t->kind == IR_OP_TRANSPOSE && v->nuses == 1 && v->shape.rank == 3
           && t->attrs.perm[0] == 1 && t->attrs.perm[1] == 0 && t->attrs.perm[2] == 2
           && t->operands[0]->dtype == DT_F32;
}

static void plan_op(IrOp *op, void *vcg)
{
    CgCpu *cg = vcg;
    // a matmul inside a flash-attention chain is not a GEMM (cg_flash_plan ran first)
    if (op->kind != IR_OP_MATMUL || !cg_gemm_applies(cg, op) || cg->absorbed[op->results[0]->id]
        || cg_flash_root(cg, op))
        return;
    IrValue *a = op->operands[0], *bm = op->operands[1];
    const IrOp *t = bm->def;
    if (t && t->kind == IR_OP_TRANSPOSE && bm->nuses == 1 && a != bm && cg_swaps_last_two(t)
        && t->operands[0]->dtype == DT_F32) {
        cg->gemm_tb[bm->id] = GEMM_TB_SWAP;
        bm = t->operands[0];
    }
    // B (or B^T) as heads of a [rows, H, cols] buffer, in a batched product over those H
    // heads: read in place with a row stride of H * cols (the cached keys and values of a
    // decode step are transposed to heads like this every token)
    const IrValue *y = op->results[0];
    if (y->shape.rank == 3 && a != bm && is_heads(bm) && dim_eq(bm->shape.dims[0], y->shape.dims[0]))
        cg->gemm_tb[bm->id] = GEMM_TB_HEADS;
}

void cg_gemm_plan(CgCpu *cg)
{
    if (cg->gpu || cg->opt_level < 1)
        return;
    cg->gemm_tb = calloc(cg->m->next_value_id + 1, sizeof *cg->gemm_tb);
    if (!cg->gemm_tb) {
        fputs("tfxc: out of memory\n", stderr);
        exit(3);
    }
    for (uint32_t i = 0; i < cg->m->nfuncs; i++)   // @main and @step
        ir_region_walk(cg->m->funcs[i]->body, plan_op, cg);
}

bool cg_gemm_reads_through(const CgCpu *cg, const IrValue *v)
{
    return cg->gemm_tb && cg->gemm_tb[v->id] != GEMM_TB_NONE;
}
