/* cg_ptx.c - the GPU back end: lowers @main to an NVPTX module of kernels (PTX text for
 * --target=ptx / --emit=ptx) and, for --target=cuda, the host function that launches them
 * in order through the runtime (runtime/rt_cuda.c). The op lowering is cg_lower.c's,
 * reused unchanged: each op is lowered into a single-thread kernel, and an op whose outer
 * loop goes through cg_par_begin gets a kernel of one thread per row instead (the hook in
 * cg_common.c calls cg_gpu_par_begin). Shared loops without `until` are driven from the
 * host; any other op with a region runs whole in one thread. See docs/gpu.md.
 * At about 1,000 lines: the kernels and their host launches are built in one walk over
 * the IR and share its state (CgGpu); moving the host half out is the next split. */
#include "cg_gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Target.h>

static const char *const PTX_TRIPLE = "nvptx64-nvidia-cuda";

/* Bytes of the TfxKernelArgs layout at the start of the device args block; the weight
 * pointer slots follow. */
enum { ARGS_BLOCK_BYTES = 48 };

/* A value set (the kernel parameters of an op), in first-seen order. */
typedef struct ValSet {
    const IrValue **v;
    uint32_t        n, cap;
} ValSet;

/* One kernel of the launch table. */
typedef struct GpuKernel {
    char    *name;     /* its .entry name */
    int32_t  block;    /* threads per block */
    uint32_t nvals;    /* value pointer parameters after the fixed ones */
    char    *threads;  /* the thread count as text over the symbols ("T*12") */
} GpuKernel;

struct CgGpu {
    CgCpu        *dev;        /* the device module */
    CgCpu        *host;       /* the host module (--target=cuda), or NULL */
    const char   *arch;       /* sm_80, sm_90 */
    GpuKernel    *k;
    uint32_t      nk, capk;
    uint32_t      nnames;     /* kernels named so far (numbers the names) */
    int32_t      *slot;       /* by value id: weight pointer slot, or -1 */
    uint32_t      nslots;
    /* the op being lowered */
    ValSet        vs;          /* its kernel parameters */
    uint32_t      npar;        /* kernels cg_gpu_par_begin made for it */
    LLVMValueRef  wrap_args;   /* the single-thread kernel's args parameter */
    LLVMValueRef *saved_buf;   /* [vs.n] the single-thread kernel's buffers during a par */
    IrOp         *op;          /* the op, while cg_lower_op runs */
    bool          nest_ok;     /* its loop nest may become one thread per element */
    bool          nest_open;   /* such a nest kernel is being built */
    CgPar         nest_par;    /* its state */
    /* host: the run function's values */
    LLVMValueRef  h_status, h_args, h_rt;
    LLVMBasicBlockRef h_fail;  /* `ret i32 2`: a launch failed */
};

static char *xstrdup(const char *s)
{
    char *p = cg_xcalloc(strlen(s) + 1, 1);
    return strcpy(p, s);
}

static void vs_add(ValSet *s, const IrValue *v)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (s->v[i] == v)
            return;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        const IrValue **nv = cg_xcalloc(s->cap, sizeof *nv);
        if (s->n)
            memcpy(nv, s->v, s->n * sizeof *nv);
        free(s->v);
        s->v = nv;
    }
    s->v[s->n++] = v;
}

static int32_t vs_index(const ValSet *s, const IrValue *v)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (s->v[i] == v)
            return (int32_t)i;
    return -1;
}

/* Every value op and the ops in its regions use, except the results of weight ops inside
 * (those are computed in the kernel itself). */
static void collect_values(CgGpu *G, IrOp *op, bool inner)
{
    ValSet *s = &G->vs;
    for (uint32_t i = 0; i < op->nops; i++) {
        const IrValue *v = op->operands[i];
        // a weight op without a slot yet is inside op: it runs in the same kernel
        bool inner_weight = v->def && v->def->kind == IR_OP_WEIGHT && G->slot[v->id] < 0;
        if (!inner_weight)
            vs_add(s, v);
    }
    if (!(inner && op->kind == IR_OP_WEIGHT))
        for (uint32_t i = 0; i < op->nres; i++)
            vs_add(s, op->results[i]);
    if (op->body) {
        for (uint32_t i = 0; i < op->body->nargs; i++)
            vs_add(s, op->body->args[i]);
        for (IrOp *o = op->body->first; o; o = o->next)
            collect_values(G, o, true);
    }
}

/* ---- the thread count: an i64 expression over the symbols, copied between functions ---- */

static int sym_of(LLVMValueRef v, LLVMValueRef *syms, uint32_t nsyms)
{
    for (uint32_t i = 0; i < nsyms; i++)
        if (syms[i] == v)
            return (int)i;
    return -1;
}

/* Rebuilds v (constants, symbols from `from`, + - * / %) at to->b with symbols `tsyms`;
 * sets *ok = false on anything else. */
static LLVMValueRef clone_expr(CgCpu *to, LLVMValueRef v, LLVMValueRef *from, LLVMValueRef *tsyms,
                               uint32_t nsyms, bool *ok)
{
    if (LLVMIsAConstantInt(v))
        return LLVMConstInt(to->t_i64, (unsigned long long)LLVMConstIntGetSExtValue(v), true);
    int s = sym_of(v, from, nsyms);
    if (s >= 0)
        return tsyms[s];
    if (!LLVMIsABinaryOperator(v)) {
        *ok = false;
        return LLVMConstInt(to->t_i64, 0, false);
    }
    LLVMValueRef a = clone_expr(to, LLVMGetOperand(v, 0), from, tsyms, nsyms, ok);
    LLVMValueRef b = clone_expr(to, LLVMGetOperand(v, 1), from, tsyms, nsyms, ok);
    switch (LLVMGetInstructionOpcode(v)) {
    case LLVMAdd:  return LLVMBuildAdd(to->b, a, b, "n");
    case LLVMSub:  return LLVMBuildSub(to->b, a, b, "n");
    case LLVMMul:  return LLVMBuildMul(to->b, a, b, "n");
    case LLVMSDiv: return LLVMBuildSDiv(to->b, a, b, "n");
    case LLVMUDiv: return LLVMBuildUDiv(to->b, a, b, "n");
    case LLVMSRem: return LLVMBuildSRem(to->b, a, b, "n");
    case LLVMURem: return LLVMBuildURem(to->b, a, b, "n");
    default:
        *ok = false;
        return a;
    }
}

/* The same expression as text for the launch table ("T*12"). */
static void print_expr(Buf *out, const IrModule *m, LLVMValueRef v, LLVMValueRef *syms, bool top)
{
    if (LLVMIsAConstantInt(v)) {
        buf_printf(out, "%lld", (long long)LLVMConstIntGetSExtValue(v));
        return;
    }
    int s = sym_of(v, syms, m->nsyms);
    if (s >= 0 || !LLVMIsABinaryOperator(v)) {
        buf_puts(out, s >= 0 ? m->syms[s].name : "?");
        return;
    }
    // x*1, 1*x, x+0 and 0+x print as x
    LLVMValueRef a = LLVMGetOperand(v, 0), b = LLVMGetOperand(v, 1);
    LLVMOpcode opc = LLVMGetInstructionOpcode(v);
    int64_t unit = opc == LLVMMul ? 1 : opc == LLVMAdd ? 0 : -1;
    if (unit >= 0 && LLVMIsAConstantInt(a) && LLVMConstIntGetSExtValue(a) == unit) {
        print_expr(out, m, b, syms, top);
        return;
    }
    if (unit >= 0 && LLVMIsAConstantInt(b) && LLVMConstIntGetSExtValue(b) == unit) {
        print_expr(out, m, a, syms, top);
        return;
    }
    const char *op = "?";
    switch (opc) {
    case LLVMAdd: op = "+"; break;
    case LLVMSub: op = "-"; break;
    case LLVMMul: op = "*"; break;
    case LLVMSDiv: case LLVMUDiv: op = "/"; break;
    case LLVMSRem: case LLVMURem: op = "%"; break;
    default: break;
    }
    if (!top)
        buf_putc(out, '(');
    print_expr(out, m, a, syms, false);
    buf_puts(out, op);
    print_expr(out, m, b, syms, false);
    if (!top)
        buf_putc(out, ')');
}

/* ---- device kernels ---- */

/* Marks fn a kernel: LLVM 19 reads `!nvvm.annotations = !{!{ptr @fn, !"kernel", i32 1}}`. */
static void mark_kernel(CgCpu *cg, LLVMValueRef fn)
{
    LLVMMetadataRef md[3] = {
        LLVMValueAsMetadata(fn),
        LLVMMDStringInContext2(cg->llctx, "kernel", 6),
        LLVMValueAsMetadata(LLVMConstInt(cg->t_i32, 1, false)),
    };
    LLVMValueRef node = LLVMMetadataAsValue(cg->llctx, LLVMMDNodeInContext2(cg->llctx, md, 3));
    LLVMAddNamedMetadataOperand(cg->mod, "nvvm.annotations", node);
}

LLVMValueRef cg_gpu_sreg(CgCpu *cg, const char *name)
{
    LLVMTypeRef ft = LLVMFunctionType(cg->t_i32, NULL, 0, false);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
    if (!f)
        f = LLVMAddFunction(cg->mod, name, ft);
    LLVMValueRef v = LLVMBuildCall2(cg->b, ft, f, NULL, 0, "");
    return LLVMBuildZExt(cg->b, v, cg->t_i64, "");
}

/* ctaid.x * ntid.x + tid.x as an i64. */
static LLVMValueRef global_thread(CgCpu *cg)
{
    LLVMValueRef c = cg_gpu_sreg(cg, "llvm.nvvm.read.ptx.sreg.ctaid.x");
    LLVMValueRef n = cg_gpu_sreg(cg, "llvm.nvvm.read.ptx.sreg.ntid.x");
    LLVMValueRef t = cg_gpu_sreg(cg, "llvm.nvvm.read.ptx.sreg.tid.x");
    LLVMValueRef cn = LLVMBuildMul(cg->b, c, n, "cta.base");
    return LLVMBuildAdd(cg->b, cn, t, "gtid");
}

/* Returns from the kernel unless `cond` holds. */
static void guard(CgCpu *cg, LLVMValueRef cond, const char *name)
{
    LLVMBasicBlockRef go = cg_block(cg, name), out = cg_block(cg, "out");
    LLVMBuildCondBr(cg->b, cond, go, out);
    LLVMPositionBuilderAtEnd(cg->b, out);
    LLVMBuildRetVoid(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, go);
}

/* "k<number>_<base with non-identifier bytes as '_'>" */
static char *kernel_name(CgGpu *G, const char *base)
{
    char nm[160];
    int n = snprintf(nm, sizeof nm, "k%u_%s", G->nnames++, base);
    for (int i = 0; i < n && nm[i]; i++) {
        char c = nm[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!ok)
            nm[i] = '_';
    }
    return xstrdup(nm);
}

/* Starts kernel `void NAME(ptr status, ptr args, i64 aux, ptr vals..., i64 syms...)` and
 * points cg->buf (a weight value's buffer through its slot), cg->syms, cg->args and
 * cg->fail (which sets *status = 1) at its parameters. */
static LLVMValueRef kernel_begin(CgGpu *G, const char *base, char **name_out)
{
    CgCpu *cg = G->dev;
    uint32_t nsyms = cg->m->nsyms, np = CG_GPU_FIXED_PARAMS + G->vs.n + nsyms;
    LLVMTypeRef *pt = cg_xcalloc(np, sizeof *pt);
    pt[0] = pt[1] = cg->t_ptr;
    pt[2] = cg->t_i64;
    for (uint32_t i = 0; i < G->vs.n; i++)
        pt[CG_GPU_FIXED_PARAMS + i] = cg->t_ptr;
    for (uint32_t i = 0; i < nsyms; i++)
        pt[CG_GPU_FIXED_PARAMS + G->vs.n + i] = cg->t_i64;
    char *name = kernel_name(G, base);
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, pt, np, false));
    free(pt);
    *name_out = name;
    cg_fn_begin(cg, fn);
    LLVMBasicBlockRef start = LLVMGetInsertBlock(cg->b);
    LLVMValueRef status = LLVMGetParam(fn, 0);
    LLVMSetValueName2(status, "status", 6);
    cg->args = LLVMGetParam(fn, 1);
    LLVMSetValueName2(cg->args, "args", 4);
    LLVMSetValueName2(LLVMGetParam(fn, 2), "aux", 3);
    for (uint32_t i = 0; i < G->vs.n; i++) {
        const IrValue *v = G->vs.v[i];
        LLVMValueRef p = LLVMGetParam(fn, CG_GPU_FIXED_PARAMS + i);
        const char *vn = cg_name(cg, v);
        LLVMSetValueName2(p, vn, strlen(vn));
        cg->buf[v->id] = G->slot[v->id] >= 0 ? LLVMBuildLoad2(cg->b, cg->t_ptr, p, vn) : p;
    }
    for (uint32_t i = 0; i < nsyms; i++) {
        cg->syms[i] = LLVMGetParam(fn, CG_GPU_FIXED_PARAMS + G->vs.n + i);
        LLVMSetValueName2(cg->syms[i], cg->m->syms[i].name, strlen(cg->m->syms[i].name));
    }
    cg->fail = cg_block(cg, "fail");
    LLVMPositionBuilderAtEnd(cg->b, cg->fail);
    LLVMBuildStore(cg->b, LLVMConstInt(cg->t_i32, 1, false), status);
    LLVMBuildRetVoid(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, start);
    return fn;
}

static void add_kernel(CgGpu *G, char *name, int32_t block, char *threads)
{
    if (G->nk == G->capk) {
        G->capk = G->capk ? 2 * G->capk : 32;
        GpuKernel *nk = cg_xcalloc(G->capk, sizeof *nk);
        if (G->nk)
            memcpy(nk, G->k, G->nk * sizeof *nk);
        free(G->k);
        G->k = nk;
    }
    G->k[G->nk++] = (GpuKernel){ name, block, G->vs.n, threads };
}

/* ---- host launches (--target=cuda) ---- */

/* int32_t tfx_cuda_launch(void *rt, uint32_t kernel, int64_t nthreads, const uint64_t *params) */
static LLVMValueRef launch_fn(CgCpu *h, LLVMTypeRef *ft)
{
    LLVMTypeRef p[4] = { h->t_ptr, h->t_i32, h->t_i64, h->t_ptr };
    *ft = LLVMFunctionType(h->t_i32, p, 4, false);
    LLVMValueRef f = LLVMGetNamedFunction(h->mod, "tfx_cuda_launch");
    if (!f) {
        f = LLVMAddFunction(h->mod, "tfx_cuda_launch", *ft);
        LLVMSetVisibility(f, LLVMHiddenVisibility);
    }
    return f;
}

/* The device address of value v in the host run function (a slot for a weight value). */
static LLVMValueRef host_addr(CgGpu *G, const IrValue *v)
{
    CgCpu *h = G->host;
    if (G->slot[v->id] >= 0) {
        LLVMValueRef off = LLVMConstInt(h->t_i64, ARGS_BLOCK_BYTES + 8 * (uint64_t)G->slot[v->id], false);
        return LLVMBuildAdd(h->b, G->h_args, off, "slot");
    }
    return LLVMBuildPtrToInt(h->b, h->buf[v->id], h->t_i64, "addr");
}

/* Emits, in the host run function, the launch of kernel kidx over n threads with the
 * current value set; a failed launch returns 2. */
static void host_launch(CgGpu *G, uint32_t kidx, LLVMValueRef n, LLVMValueRef aux)
{
    CgCpu *h = G->host;
    if (!h)
        return;
    uint32_t nsyms = h->m->nsyms, np = CG_GPU_FIXED_PARAMS + G->vs.n + nsyms;
    LLVMTypeRef at = LLVMArrayType2(h->t_i64, np);
    LLVMValueRef arr = cg_alloca(h, at, "params");
    for (uint32_t i = 0; i < np; i++) {
        LLVMValueRef x;
        if (i == 0) x = G->h_status;
        else if (i == 1) x = G->h_args;
        else if (i == 2) x = aux;
        else if (i < CG_GPU_FIXED_PARAMS + G->vs.n) x = host_addr(G, G->vs.v[i - CG_GPU_FIXED_PARAMS]);
        else x = h->syms[i - CG_GPU_FIXED_PARAMS - G->vs.n];
        LLVMValueRef idx[2] = { cg_i64(h, 0), cg_i64(h, i) };
        LLVMValueRef p = LLVMBuildInBoundsGEP2(h->b, at, arr, idx, 2, "param");
        LLVMBuildStore(h->b, x, p);
    }
    LLVMTypeRef ft;
    LLVMValueRef f = launch_fn(h, &ft);
    LLVMValueRef args[4] = { G->h_rt, LLVMConstInt(h->t_i32, kidx, false), n, arr };
    LLVMValueRef rc = LLVMBuildCall2(h->b, ft, f, args, 4, "launched");
    LLVMValueRef bad = LLVMBuildICmp(h->b, LLVMIntNE, rc, LLVMConstInt(h->t_i32, 0, false), "bad");
    LLVMBasicBlockRef ok = cg_block(h, "launch.ok");
    LLVMBuildCondBr(h->b, bad, G->h_fail, ok);
    LLVMPositionBuilderAtEnd(h->b, ok);
}

/* ---- single-thread kernels ---- */

typedef struct Single {
    LLVMValueRef fn;
    char        *name;
} Single;

static void single_begin(CgGpu *G, Single *s, const char *base)
{
    s->fn = kernel_begin(G, base, &s->name);
    CgCpu *cg = G->dev;
    LLVMValueRef t = global_thread(cg);
    guard(cg, LLVMBuildICmp(cg->b, LLVMIntEQ, t, cg_i64(cg, 0), "first"), "one");
}

/* Finishes the kernel, adds it to the table and launches it (one thread, step aux). */
static void single_end(CgGpu *G, Single *s, LLVMValueRef aux)
{
    CgCpu *cg = G->dev;
    LLVMBuildRetVoid(cg->b);
    cg_fn_end(cg);
    mark_kernel(cg, s->fn);
    add_kernel(G, s->name, 1, xstrdup("1"));
    if (G->host)
        host_launch(G, G->nk - 1, cg_i64(G->host, 1), aux ? aux : cg_i64(G->host, 0));
}

/* Whether fn has a store or a call other than a special-register read outside `fail`. */
static bool has_effects(LLVMValueRef fn, LLVMBasicBlockRef fail)
{
    for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(fn); bb; bb = LLVMGetNextBasicBlock(bb)) {
        if (bb == fail)
            continue;
        for (LLVMValueRef i = LLVMGetFirstInstruction(bb); i; i = LLVMGetNextInstruction(i)) {
            if (LLVMIsAStoreInst(i))
                return true;
            if (LLVMIsACallInst(i)) {
                size_t len;
                const char *nm = LLVMGetValueName2(LLVMGetCalledValue(i), &len);
                if (strncmp(nm, "llvm.nvvm.read.ptx.sreg.", 24) != 0)
                    return true;
            }
        }
    }
    return false;
}

/* ---- ops ---- */

static bool gpu_region(CgGpu *G, IrRegion *r);

static void vs_reset(CgGpu *G)
{
    G->vs.n = 0;
}

/* matmul, one thread per element of y[b..., m, n] = sum_k a[b..., m, k] * b[b..., k, n]
 * (batch dims broadcast as in cg_lower.c's lower_matmul, and the sum over k in the same
 * order, so results match the CPU's -O0 code). Called in place of cg_lower_op. */
static void gpu_matmul(CgGpu *G, IrOp *op)
{
    CgCpu *cg = G->dev;
    IrValue *y = op->results[0], *a = op->operands[0], *bm = op->operands[1];
    int r = y->shape.rank, ra = a->shape.rank, rb = bm->shape.rank;
    LLVMTypeRef et = cg_arith_type(cg, y->dtype);
    bool is_int = y->dtype == DT_I32;
    char nm[160];
    snprintf(nm, sizeof nm, "matmul.%s", cg_name(cg, y));
    CgPar par;
    cg_gpu_par_begin(cg, &par, op, cg_numel(cg, &y->shape), nm);
    LLVMValueRef idx[IR_MAX_RANK], rest = par.begin;
    for (int j = r - 1; j > 0; j--) {
        LLVMValueRef d = cg_dim(cg, y->shape.dims[j]);
        idx[j] = LLVMBuildURem(cg->b, rest, d, "ix");
        rest = LLVMBuildUDiv(cg->b, rest, d, "rest");
    }
    idx[0] = rest;
    LLVMValueRef acc = cg_alloca(cg, et, "acc");
    LLVMBuildStore(cg->b, is_int ? LLVMConstInt(cg->t_i32, 0, false) : cg_f32c(cg, 0.0), acc);
    CgFor kl;
    cg_for_begin(cg, &kl, cg_dim(cg, a->shape.dims[ra - 1]), "k");
    LLVMValueRef ia[IR_MAX_RANK], ib[IR_MAX_RANK];
    for (int j = 0; j < ra - 2; j++) {
        Dim d = a->shape.dims[j];
        ia[j] = dim_is_const(d) && d.c == 1 ? NULL : idx[j + r - ra];
    }
    for (int j = 0; j < rb - 2; j++) {
        Dim d = bm->shape.dims[j];
        ib[j] = dim_is_const(d) && d.c == 1 ? NULL : idx[j + r - rb];
    }
    ia[ra - 2] = idx[r - 2];
    ia[ra - 1] = kl.i;
    ib[rb - 2] = kl.i;
    ib[rb - 1] = idx[r - 1];
    LLVMValueRef va = cg_load(cg, a, cg_offset(cg, a, ia));
    LLVMValueRef vb = cg_load(cg, bm, cg_offset(cg, bm, ib));
    LLVMValueRef p = is_int ? LLVMBuildMul(cg->b, va, vb, "prod") : LLVMBuildFMul(cg->b, va, vb, "prod");
    LLVMValueRef s0 = LLVMBuildLoad2(cg->b, et, acc, "acc");
    LLVMValueRef s1 = is_int ? LLVMBuildAdd(cg->b, s0, p, "acc.next") : LLVMBuildFAdd(cg->b, s0, p, "acc.next");
    LLVMBuildStore(cg->b, s1, acc);
    cg_for_end(cg, &kl);
    LLVMValueRef sum = LLVMBuildLoad2(cg->b, et, acc, "sum");
    cg_store(cg, y, cg_offset(cg, y, idx), sum);
    cg_gpu_par_end(cg, &par);
}

/* Ops whose lowering is exactly one loop nest over the result with nothing computed
 * before it (see cg_lower.c), so the nest can be split over threads. */
static bool nest_parallel(const IrOp *op)
{
    if (op->body)
        return false;
    if (ir_op_info[op->kind].traits & IRT_ELEMWISE)
        return true;
    switch (op->kind) {
    case IR_OP_TRANSPOSE: case IR_OP_SLICE: case IR_OP_GATHER: case IR_OP_BROADCAST:
        return true;
    default:
        return false;
    }
}

/* An op lowered by cg_lower.c: a single-thread kernel, or the kernels of its parallel
 * loops (the single-thread one is then empty and dropped). */
static bool gpu_op(CgGpu *G, IrOp *op)
{
    CgCpu *cg = G->dev;
    vs_reset(G);
    const IrValue *fl[CG_GPU_FLASH_MAX_VALS];
    uint32_t nfl = cg_gpu_flash_values(cg, op, fl);   // the last matmul of fused attention
    for (uint32_t i = 0; i < nfl; i++)
        vs_add(&G->vs, fl[i]);
    if (nfl == 0)
        collect_values(G, op, false);
    Single s;
    single_begin(G, &s, ir_op_info[op->kind].name);
    G->npar = 0;
    G->wrap_args = cg->args;
    bool serial = cg->serial;
    cg->serial = serial || op->body != NULL;   // a region runs whole in this thread
    G->op = op;
    G->nest_ok = nest_parallel(op);
    bool ok = true;
    if (nfl > 0)
        cg_gpu_flash(cg, op);
    else if (op->kind == IR_OP_MATMUL && !cg->serial && cg_gpu_tiled_applies(op))
        cg_gpu_tiled_matmul(cg, op);
    else if (op->kind == IR_OP_MATMUL && !cg->serial)
        gpu_matmul(G, op);
    else if (cg->serial || !cg_gpu_lower_op(cg, op))
        ok = cg_lower_op(cg, op);
    G->nest_ok = false;
    cg->serial = serial;
    if (!ok)
        return false;
    if (G->npar == 0) {
        single_end(G, &s, NULL);
        return true;
    }
    if (has_effects(s.fn, cg->fail)) {
        diag_error(cg->d, op->span, "internal error: the PTX back end found work outside the "
                   "parallel loop of '%s'", ir_op_info[op->kind].name);
        cg->failed = true;
        return false;
    }
    LLVMDeleteFunction(s.fn);
    free(s.name);
    return true;
}

/* weight: a single-thread kernel stores the member's pointer into the op's slot. */
static bool gpu_weight(CgGpu *G, IrOp *op)
{
    CgCpu *cg = G->dev;
    IrValue *w = op->results[0];
    vs_reset(G);
    collect_values(G, op, false);
    Single s;
    single_begin(G, &s, "weight");
    LLVMValueRef slot = LLVMGetParam(s.fn, CG_GPU_FIXED_PARAMS + (unsigned)vs_index(&G->vs, w));
    if (!cg_lower_op(cg, op))
        return false;
    LLVMBuildStore(cg->b, cg->buf[w->id], slot);
    G->slot[w->id] = (int32_t)G->nslots++;
    single_end(G, &s, NULL);
    return true;
}

/* dst[k] = src[k] for k < n, a kernel of one thread per element for each k (the copies of
 * a loop's carried values); the values are in G->vs. */
static void par_copies(CgGpu *G, IrValue *const *dst, IrValue *const *src, uint32_t n,
                       const char *what)
{
    CgCpu *cg = G->dev;
    if (n == 0)
        return;
    Single s;
    single_begin(G, &s, what);   // a wrapper for the kernels below, then dropped
    for (uint32_t k = 0; k < n; k++) {
        char nm[160];
        snprintf(nm, sizeof nm, "%s.%s", what, cg_name(cg, dst[k]));
        CgPar par;
        cg_gpu_par_begin(cg, &par, NULL, cg_numel(cg, &src[k]->shape), nm);
        LLVMTypeRef et = cg_elem_type(cg, src[k]->dtype);
        LLVMValueRef ps = LLVMBuildInBoundsGEP2(cg->b, et, cg->buf[src[k]->id], &par.begin, 1, "src");
        LLVMValueRef x = LLVMBuildLoad2(cg->b, et, ps, "x");
        LLVMValueRef pd = LLVMBuildInBoundsGEP2(cg->b, et, cg->buf[dst[k]->id], &par.begin, 1, "dst");
        LLVMBuildStore(cg->b, x, pd);
        cg_gpu_par_end(cg, &par);
    }
    LLVMDeleteFunction(s.fn);
    free(s.name);
}

/* A loop without `until`, driven from the host: copies of the operands into the results,
 * then per step a single-thread kernel storing the step into %i, copies of the results
 * into the body's arguments, the body's kernels, and copies of the yielded values into
 * the results (the same two copies as lower_loop, so a permuting yield is right). Each
 * copy is a kernel of one thread per element. */
static bool gpu_loop(CgGpu *G, IrOp *op)
{
    CgCpu *cg = G->dev, *h = G->host;
    IrRegion *body = op->body;
    IrOp *yield = body->last;
    vs_reset(G);
    for (uint32_t k = 0; k < op->nres; k++) {
        vs_add(&G->vs, op->operands[k]);
        vs_add(&G->vs, op->results[k]);
    }
    par_copies(G, op->results, op->operands, op->nres, "loop_init");

    CgFor l = { 0 };
    if (h)
        cg_for_begin(h, &l, cg_dim(h, op->attrs.trips), "loop");
    vs_reset(G);
    vs_add(&G->vs, body->args[0]);
    Single s;
    single_begin(G, &s, "loop_step");
    LLVMValueRef step = LLVMBuildTrunc(cg->b, LLVMGetParam(s.fn, 2), cg->t_i32, "step");
    LLVMBuildStore(cg->b, step, cg->buf[body->args[0]->id]);
    single_end(G, &s, h ? l.i : NULL);
    vs_reset(G);
    for (uint32_t k = 0; k < op->nres; k++) {
        vs_add(&G->vs, op->results[k]);
        vs_add(&G->vs, body->args[k + 1]);
    }
    par_copies(G, body->args + 1, op->results, op->nres, "loop_in");
    if (!gpu_region(G, body))
        return false;
    vs_reset(G);
    for (uint32_t k = 0; k < op->nres; k++) {
        vs_add(&G->vs, yield->operands[k]);
        vs_add(&G->vs, op->results[k]);
    }
    par_copies(G, op->results, yield->operands, op->nres, "loop_next");
    if (h)
        cg_for_end(h, &l);
    return true;
}

static bool gpu_region(CgGpu *G, IrRegion *r)
{
    for (IrOp *op = r->first; op; op = op->next) {
        bool ok = true;
        if (op->kind == IR_OP_YIELD || cg_absorbed_op(G->dev, op))   // inside a fused kernel
            continue;
        if (op->kind == IR_OP_WEIGHT)
            ok = gpu_weight(G, op);
        else if (op->kind == IR_OP_LOOP && !op->attrs.has_until)
            ok = gpu_loop(G, op);
        else
            ok = gpu_op(G, op);
        if (!ok || G->dev->failed)
            return false;
    }
    return true;
}

/* ---- parallel loops: one thread per row ---- */

void cg_gpu_par_begin(CgCpu *cg, CgPar *p, IrOp *op, LLVMValueRef n, const char *name)
{
    cg_gpu_kernel_begin(cg, p, op, n, name, CG_GPU_BLOCK, true);
}

void cg_gpu_kernel_begin(CgCpu *cg, CgPar *p, IrOp *op, LLVMValueRef n, const char *name,
                         int32_t block, bool guarded)
{
    CgGpu *G = cg->gpu;
    uint32_t nsyms = cg->m->nsyms;
    (void)op;
    memset(p, 0, sizeof *p);
    p->outlined = true;
    p->fwd_fn = cg->fn;
    p->fwd_entry = cg->entry;
    p->fwd_block = LLVMGetInsertBlock(cg->b);
    p->fwd_fail = cg->fail;
    G->saved_buf = cg_xcalloc(G->vs.n, sizeof *G->saved_buf);
    for (uint32_t i = 0; i < G->vs.n; i++)
        G->saved_buf[i] = cg->buf[G->vs.v[i]->id];
    LLVMValueRef *wrap = cg->syms;    // the single-thread kernel's symbols, kept in par_syms
    cg->syms = cg->par_syms;
    cg->par_syms = wrap;

    char *kname;
    LLVMValueRef fn = kernel_begin(G, name, &kname);
    bool ok = true;
    LLVMValueRef nk = clone_expr(cg, n, wrap, cg->syms, nsyms, &ok);
    LLVMValueRef t = global_thread(cg);
    if (guarded)
        guard(cg, LLVMBuildICmp(cg->b, LLVMIntSLT, t, nk, "in.range"), "row");
    p->begin = t;
    p->end = LLVMBuildAdd(cg->b, t, cg_i64(cg, 1), "row.end");
    Buf txt;
    buf_init(&txt);
    print_expr(&txt, cg->m, n, wrap, true);
    mark_kernel(cg, fn);
    add_kernel(G, kname, block, xstrdup(buf_str(&txt)));
    buf_dispose(&txt);
    G->npar++;
    if (G->host) {
        LLVMValueRef nh = clone_expr(G->host, n, wrap, G->host->syms, nsyms, &ok);
        host_launch(G, G->nk - 1, nh, cg_i64(G->host, 0));
    }
    if (!ok) {
        diag_error(cg->d, op ? op->span : (SrcSpan){ 0 }, "internal error: the PTX back end "
                   "cannot compute the thread count of '%s' from the symbols", name);
        cg->failed = true;
    }
}

void cg_gpu_par_end(CgCpu *cg, CgPar *p)
{
    CgGpu *G = cg->gpu;
    LLVMBuildRetVoid(cg->b);
    cg_fn_end(cg);
    for (uint32_t i = 0; i < G->vs.n; i++)
        cg->buf[G->vs.v[i]->id] = G->saved_buf[i];
    free(G->saved_buf);
    G->saved_buf = NULL;
    LLVMValueRef *body = cg->syms;
    cg->syms = cg->par_syms;
    cg->par_syms = body;
    cg->fn = p->fwd_fn;
    cg->entry = p->fwd_entry;
    cg->fail = p->fwd_fail;
    cg->args = G->wrap_args;
    LLVMPositionBuilderAtEnd(cg->ab, cg->entry);
    LLVMPositionBuilderAtEnd(cg->b, p->fwd_block);
}

bool cg_gpu_nest_begin(CgCpu *cg, CgNest *n, const Shape *s, const char *name)
{
    CgGpu *G = cg->gpu;
    if (!G->nest_ok || G->nest_open || s->rank == 0 || cg->serial)
        return false;
    LLVMValueRef total = cg_numel(cg, s);
    char nm[160];
    snprintf(nm, sizeof nm, "%s.%s", ir_op_info[G->op->kind].name, name);
    cg_gpu_par_begin(cg, &G->nest_par, G->op, total, nm);
    G->nest_open = true;
    // this thread's element, row-major over s
    LLVMValueRef rest = G->nest_par.begin;
    for (int j = s->rank - 1; j > 0; j--) {
        LLVMValueRef d = cg_dim(cg, s->dims[j]);
        n->idx[j] = LLVMBuildURem(cg->b, rest, d, "ix");
        rest = LLVMBuildUDiv(cg->b, rest, d, "rest");
    }
    n->idx[0] = rest;
    n->rank = -1;   // no loops for cg_nest_end to close; marks this nest
    return true;
}

bool cg_gpu_nest_end(CgCpu *cg, CgNest *n)
{
    CgGpu *G = cg->gpu;
    if (!G->nest_open || n->rank != -1)
        return false;
    cg_gpu_par_end(cg, &G->nest_par);
    G->nest_open = false;
    return true;
}

/* ---- the device module ---- */

/* What only the GPU back end rejects (cg_check has passed). */
static void check_gpu_op(IrOp *op, void *ctx)
{
    CgCpu *cg = ctx;
    if (cg->failed || op->kind != IR_OP_MOE)
        return;
    diag_error(cg->d, op->span, "the PTX back end does not support '%s' yet",
               ir_op_info[op->kind].name);
    cg->failed = true;
}

static void gpu_init(CgGpu *G, CgCpu *dev, IrModule *m, const CgOptions *o)
{
    memset(G, 0, sizeof *G);
    G->dev = dev;
    G->arch = o->gpu_arch ? o->gpu_arch : "sm_80";
    G->slot = cg_xcalloc(m->next_value_id + 1, sizeof *G->slot);
    for (uint32_t i = 0; i <= m->next_value_id; i++)
        G->slot[i] = -1;
    dev->gpu = G;
    dev->opt_level = 0;     // cg_gemm.c's blocked GEMM is for CPUs
    dev->serial = false;
    // weight table bases, as cg_cpu.c's descriptor numbers the expanded families
    uint32_t total = 0;
    for (uint32_t i = 0; i < m->nweights; i++) {
        dev->wbase[i] = total;
        uint32_t members = 1;
        for (uint32_t l = 0; l < m->weights[i].nlevels; l++)
            members *= (uint32_t)m->weights[i].count[l];
        total += members;
    }
    cg_gpu_plan(dev);   // fused attention: which values live only inside a kernel
}

/* Whether the host module was laid out with the device module's fusion plan (cg_cpu.c
 * calls cg_gpu_plan for --target=cuda before the workspace layout): a value the kernels
 * keep to themselves must have no workspace buffer, and every other one must have one. */
static bool same_plan(const CgCpu *host, const CgCpu *dev)
{
    for (uint32_t i = 0; i <= dev->m->next_value_id; i++)
        if (host->absorbed[i] != dev->absorbed[i])
            return false;
    return true;
}

static void gpu_dispose(CgGpu *G)
{
    for (uint32_t i = 0; i < G->nk; i++) {
        free(G->k[i].name);
        free(G->k[i].threads);
    }
    free(G->k);
    free(G->vs.v);
    free(G->slot);
    free(G->saved_buf);
}

static bool ptx_target(CgCpu *cg, const char *arch, int opt)
{
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTarget();
    LLVMInitializeNVPTXTargetMC();
    LLVMInitializeNVPTXAsmPrinter();
    LLVMTargetRef target;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(PTX_TRIPLE, &target, &err)) {
        diag_error(cg->d, (SrcSpan){ 0 }, "internal error: no LLVM NVPTX target: %s", err);
        LLVMDisposeMessage(err);
        return false;
    }
    LLVMCodeGenOptLevel lvl = opt == 0 ? LLVMCodeGenLevelNone : LLVMCodeGenLevelDefault;
    cg->tm = LLVMCreateTargetMachine(target, PTX_TRIPLE, arch, "", lvl, LLVMRelocDefault,
                                     LLVMCodeModelDefault);
    LLVMSetTarget(cg->mod, PTX_TRIPLE);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(cg->tm);
    LLVMSetModuleDataLayout(cg->mod, dl);
    LLVMDisposeTargetData(dl);
    return true;
}

/* The launch table as a PTX comment: one JSON object (docs/gpu.md). */
static void table_comment(Buf *out, const CgGpu *G, const IrModule *m)
{
    buf_printf(out, "// tfxc launch table: {\"arch\": \"%s\", \"nslots\": %u, \"params\": "
               "[\"status\", \"args\", \"aux\", values..., symbols...], \"symbols\": [",
               G->arch, G->nslots);
    for (uint32_t i = 0; i < m->nsyms; i++)
        buf_printf(out, "%s\"%s\"", i ? ", " : "", m->syms[i].name);
    buf_puts(out, "], \"kernels\": [\n");
    for (uint32_t i = 0; i < G->nk; i++)
        buf_printf(out, "//   {\"name\": \"%s\", \"threads\": \"%s\", \"block\": %d, "
                   "\"values\": %u}%s\n", G->k[i].name, G->k[i].threads, G->k[i].block,
                   G->k[i].nvals, i + 1 < G->nk ? "," : "");
    buf_puts(out, "// ]}\n");
}

/* Builds every kernel of @main into dev (and the launches into G->host's run function),
 * then verifies, optimises and prints: PTX text into `ptx`, or with `llvm` the LLVM IR.
 * Returns 0, 1 (user error) or 3 (internal error). */
static int device_module(CgGpu *G, const CgOptions *o, bool llvm, Buf *out)
{
    CgCpu *dev = G->dev;
    for (uint32_t i = 0; i < dev->m->nsyms && !dev->failed; i++) {
        if (dev->m->syms[i].is_capacity) {   // the launcher reads only the caller's symbols
            diag_error(dev->d, dev->m->funcs[0]->span, "the PTX back end does not support "
                       "capacity() dimensions yet");
            dev->failed = true;
        }
    }
    ir_region_walk(dev->m->funcs[0]->body, check_gpu_op, dev);
    if (dev->failed || !gpu_region(G, dev->m->funcs[0]->body))
        return dev->failed ? 1 : 3;
    if (!ptx_target(dev, G->arch, o->opt_level))
        return 3;
    if (!cg_verify(dev) || !cg_optimise(dev, o))
        return 3;
    if (llvm) {
        char *s = LLVMPrintModuleToString(dev->mod);
        buf_puts(out, s);
        LLVMDisposeMessage(s);
        return 0;
    }
    table_comment(out, G, dev->m);
    return cg_emit_machine(dev, LLVMAssemblyFile, out) ? 0 : 3;
}

int cg_ptx_emit(IrModule *m, DiagEngine *d, const CgOptions *o, Buf *out)
{
    CgCpu dev;
    cg_init(&dev, m, d, o->module_name ? o->module_name : "model");
    int status = 1;
    if (cg_check(&dev)) {
        CgGpu G;
        gpu_init(&G, &dev, m, o);
        status = device_module(&G, o, o->kind == CG_OUT_LLVM, out);
        gpu_dispose(&G);
    }
    cg_dispose(&dev);
    return status;
}

/* ---- the host side of --target=cuda ---- */

static LLVMValueRef load_field(CgCpu *h, LLVMTypeRef st, LLVMValueRef p, unsigned i,
                               LLVMTypeRef t, const char *name)
{
    LLVMValueRef fp = LLVMBuildStructGEP2(h->b, st, p, i, name);
    return LLVMBuildLoad2(h->b, t, fp, name);
}

/* int32_t tfx__gpu_run(const TfxGpuArgs *g): symbols, device buffer addresses (the CPU
 * layout over the device workspace), then the launches. Starts the function; the ops'
 * launches follow from device_module. */
static LLVMValueRef run_begin(CgGpu *G)
{
    CgCpu *h = G->host;
    IrModule *m = h->m;
    LLVMTypeRef P = h->t_ptr, I64 = h->t_i64;
    LLVMTypeRef t_ga = LLVMStructCreateNamed(h->llctx, "TfxGpuArgs");
    LLVMStructSetBody(t_ga, (LLVMTypeRef[]){ P, P, I64, I64, I64, P }, 6, false);
    LLVMValueRef fn = LLVMAddFunction(h->mod, "tfx__gpu_run", LLVMFunctionType(h->t_i32, &P, 1, false));
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_fn_begin(h, fn);
    LLVMValueRef g = LLVMGetParam(fn, 0);
    LLVMValueRef syms = load_field(h, t_ga, g, 0, P, "syms");
    for (uint32_t i = 0; i < m->nsyms; i++) {
        LLVMValueRef k = cg_i64(h, i);
        LLVMValueRef p = LLVMBuildInBoundsGEP2(h->b, I64, syms, &k, 1, "sym.p");
        h->syms[i] = LLVMBuildLoad2(h->b, I64, p, m->syms[i].name);
    }
    LLVMValueRef ins = load_field(h, t_ga, g, 1, P, "inputs");
    for (uint32_t i = 0; i < m->ninputs; i++) {
        LLVMValueRef k = cg_i64(h, i);
        LLVMValueRef p = LLVMBuildInBoundsGEP2(h->b, I64, ins, &k, 1, "in.p");
        LLVMValueRef a = LLVMBuildLoad2(h->b, I64, p, "in.addr");
        h->buf[m->inputs[i].value->id] = LLVMBuildIntToPtr(h->b, a, P, cg_name(h, m->inputs[i].value));
    }
    LLVMValueRef ws = LLVMBuildIntToPtr(h->b, load_field(h, t_ga, g, 2, I64, "ws.addr"), P, "workspace");
    G->h_args = load_field(h, t_ga, g, 3, I64, "args");
    G->h_status = load_field(h, t_ga, g, 4, I64, "status");
    G->h_rt = load_field(h, t_ga, g, 5, P, "rt");
    cg_layout_main(h, ws);
    G->h_fail = LLVMAppendBasicBlockInContext(h->llctx, fn, "launch.fail");
    return fn;
}

static LLVMValueRef const_global(CgCpu *h, LLVMValueRef init, const char *name)
{
    LLVMValueRef g = LLVMAddGlobal(h->mod, LLVMTypeOf(init), name);
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, true);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    return g;
}

/* const TfxGpuProgram tfx__gpu_program = { ptx, nkernels, kernels, nslots,
 * workspace_bytes, run } (runtime/tfx_abi.h). */
/* The PTX text is NUL-terminated (LLVMConstStringInContext adds the NUL), as
 * cuModuleLoadData wants. */
static LLVMValueRef program_global(CgGpu *G, const Buf *ptx, LLVMValueRef ws_fn, LLVMValueRef run)
{
    CgCpu *h = G->host;
    LLVMTypeRef P = h->t_ptr, I32 = h->t_i32;
    LLVMTypeRef t_k = LLVMStructCreateNamed(h->llctx, "TfxGpuKernel");
    LLVMStructSetBody(t_k, (LLVMTypeRef[]){ P, I32, I32 }, 3, false);
    LLVMValueRef *ks = cg_xcalloc(G->nk, sizeof *ks);
    for (uint32_t i = 0; i < G->nk; i++) {
        char gname[32];
        snprintf(gname, sizeof gname, "kernel.%u.name", i);
        const char *nm = G->k[i].name;
        LLVMValueRef s = const_global(h, LLVMConstStringInContext(h->llctx, nm, (unsigned)strlen(nm), false), gname);
        LLVMValueRef f[3] = { s, LLVMConstInt(I32, (unsigned long long)G->k[i].block, false),
                              LLVMConstInt(I32, G->k[i].nvals, false) };
        ks[i] = LLVMConstNamedStruct(t_k, f, 3);
    }
    LLVMValueRef table = const_global(h, LLVMConstArray2(t_k, ks, G->nk), "kernels");
    free(ks);
    LLVMValueRef text = const_global(h, LLVMConstStringInContext(h->llctx, (const char *)ptx->data,
                                                                 (unsigned)ptx->len, false), "ptx");
    LLVMTypeRef t_p = LLVMStructCreateNamed(h->llctx, "TfxGpuProgram");
    LLVMStructSetBody(t_p, (LLVMTypeRef[]){ P, I32, P, I32, P, P }, 6, false);
    LLVMValueRef f[6] = { text, LLVMConstInt(I32, G->nk, false), table,
                          LLVMConstInt(I32, G->nslots, false), ws_fn, run };
    return const_global(h, LLVMConstNamedStruct(t_p, f, 6), "tfx__gpu_program");
}

LLVMValueRef cg_cuda_declare_forward(CgCpu *host)
{
    LLVMTypeRef ft = LLVMFunctionType(host->t_i32, &host->t_ptr, 1, false);
    return LLVMAddFunction(host->mod, "tfx__forward", ft);
}

/* int32_t tfx__forward(const TfxKernelArgs *a)
 *     { return tfx_cuda_forward(a, &tfx__model, &tfx__gpu_program); } */
static void forward_body(CgCpu *h, LLVMValueRef fwd, LLVMValueRef prog)
{
    LLVMSetLinkage(fwd, LLVMInternalLinkage);
    cg_fn_begin(h, fwd);
    LLVMTypeRef p[3] = { h->t_ptr, h->t_ptr, h->t_ptr };
    LLVMTypeRef ft = LLVMFunctionType(h->t_i32, p, 3, false);
    LLVMValueRef f = LLVMAddFunction(h->mod, "tfx_cuda_forward", ft);
    LLVMSetVisibility(f, LLVMHiddenVisibility);
    LLVMValueRef args[3] = { LLVMGetParam(fwd, 0), LLVMGetNamedGlobal(h->mod, "tfx__model"), prog };
    LLVMValueRef rc = LLVMBuildCall2(h->b, ft, f, args, 3, "rc");
    LLVMBuildRet(h->b, rc);
    cg_fn_end(h);
}

int cg_cuda_define(CgCpu *host, const CgOptions *o, LLVMValueRef ws_fn, LLVMValueRef fwd)
{
    CgCpu dev;
    cg_init(&dev, host->m, host->d, o->module_name ? o->module_name : "model");
    int status = 1;
    if (cg_check(&dev)) {
        CgGpu G;
        gpu_init(&G, &dev, host->m, o);
        G.host = host;
        if (!same_plan(host, &dev)) {
            diag_error(host->d, (SrcSpan){ 0 }, "internal error: the host workspace of "
                       "--target=cuda was not laid out with the GPU's fusion plan");
            gpu_dispose(&G);
            cg_dispose(&dev);
            return 3;
        }
        LLVMValueRef run = run_begin(&G);
        Buf ptx;
        buf_init(&ptx);
        status = device_module(&G, o, false, &ptx);
        if (status == 0) {
            LLVMBuildRet(host->b, LLVMConstInt(host->t_i32, 0, false));
            LLVMPositionBuilderAtEnd(host->b, G.h_fail);
            LLVMBuildRet(host->b, LLVMConstInt(host->t_i32, 2, false));
            cg_fn_end(host);
            LLVMValueRef prog = program_global(&G, &ptx, ws_fn, run);
            forward_body(host, fwd, prog);
        }
        buf_dispose(&ptx);
        gpu_dispose(&G);
    }
    cg_dispose(&dev);
    return status;
}
