/* cg_common.c - small builders every op lowering uses: constants, symbolic dims
 * evaluated from the syms array, counted loops and loop nests (counters in allocas, so
 * -O0 code is obviously correct and mem2reg cleans it up at -O1+), row-major element
 * offsets with broadcasting, element loads and stores, intrinsics and libm calls. */
#include "cg_int.h"
#include "cg_gpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *cg_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fputs("tfxc: out of memory\n", stderr);
        exit(3);
    }
    return p;
}

LLVMValueRef cg_i64(CgCpu *cg, int64_t v)
{
    return LLVMConstInt(cg->t_i64, (unsigned long long)v, true);
}

LLVMValueRef cg_f32c(CgCpu *cg, double v)
{
    return LLVMConstReal(cg->t_f32, v);
}

/* f32 and i32 are the only element types the CPU backend computes in; f16 and bf16 are
 * stored in two bytes and widened on load. */
LLVMTypeRef cg_elem_type(CgCpu *cg, DType t)
{
    switch (t) {
    case DT_I32:  return cg->t_i32;
    case DT_F16:  return cg->t_f16;
    case DT_BF16: return cg->t_bf16;
    default:      return cg->t_f32;
    }
}

LLVMTypeRef cg_arith_type(CgCpu *cg, DType t)
{
    return t == DT_I32 ? cg->t_i32 : cg->t_f32;
}

int cg_elem_size(DType t)
{
    return t == DT_F16 || t == DT_BF16 ? 2 : 4;
}

LLVMValueRef cg_load_as(CgCpu *cg, LLVMTypeRef et, LLVMValueRef base, LLVMValueRef off,
                        const char *nm)
{
    LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, et, base, &off, 1, "p");
    LLVMValueRef x = LLVMBuildLoad2(cg->b, et, p, nm);
    return et == cg->t_f16 || et == cg->t_bf16 ? cg_f32_from_half(cg, et, x) : x;
}

void cg_store_as(CgCpu *cg, LLVMTypeRef et, LLVMValueRef base, LLVMValueRef off, LLVMValueRef x)
{
    if (et == cg->t_f16 || et == cg->t_bf16)
        x = cg_half_from_f32(cg, et, x);
    LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, et, base, &off, 1, "p");
    LLVMBuildStore(cg->b, x, p);
}

/* The IR printer's name of v, so LLVM values read like the IR dump. */
const char *cg_name(CgCpu *cg, const IrValue *v)
{
    return ir_names_get(&cg->names, v);
}

/* An alloca in the entry block of the current function. */
LLVMValueRef cg_alloca(CgCpu *cg, LLVMTypeRef t, const char *name)
{
    return LLVMBuildAlloca(cg->ab, t, name);
}

LLVMBasicBlockRef cg_block(CgCpu *cg, const char *name)
{
    return LLVMAppendBasicBlockInContext(cg->llctx, cg->fn, name);
}

/* (c + sum coef*sym) / div as an i64, from the symbol values loaded at function entry. */
LLVMValueRef cg_dim(CgCpu *cg, Dim d)
{
    LLVMValueRef v = cg_i64(cg, d.c);
    for (uint32_t i = 0; i < d.nterms; i++) {
        LLVMValueRef t = LLVMBuildMul(cg->b, cg_i64(cg, d.coef[i]), cg->syms[d.sym[i]], "dim.term");
        v = LLVMBuildAdd(cg->b, v, t, "dim.sum");
    }
    if (d.div != 1)
        v = LLVMBuildSDiv(cg->b, v, cg_i64(cg, d.div), "dim");
    return v;
}

LLVMValueRef cg_numel(CgCpu *cg, const Shape *s)
{
    LLVMValueRef n = cg_i64(cg, 1);
    for (int i = 0; i < s->rank; i++) {
        LLVMValueRef d = cg_dim(cg, s->dims[i]);
        n = LLVMBuildMul(cg->b, n, d, "numel");
    }
    return n;
}

/* Starts a function: an entry block that holds only allocas (cg->ab appends there), then
 * a "start" block where cg->b continues. */
void cg_fn_begin(CgCpu *cg, LLVMValueRef fn)
{
    cg->fn = fn;
    cg->entry = LLVMAppendBasicBlockInContext(cg->llctx, fn, "entry");
    LLVMPositionBuilderAtEnd(cg->ab, cg->entry);
    LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(cg->llctx, fn, "start");
    LLVMPositionBuilderAtEnd(cg->b, start);
}

/* Closes the entry block with its branch to "start". */
void cg_fn_end(CgCpu *cg)
{
    LLVMBasicBlockRef start = LLVMGetNextBasicBlock(cg->entry);
    LLVMBuildBr(cg->ab, start);
}

/* Opens `for (i = lo; i < hi; i++) {` and leaves the builder in the body; l->i is the
 * counter's value there. */
void cg_for_range(CgCpu *cg, CgFor *l, LLVMValueRef lo, LLVMValueRef hi, const char *name)
{
    char nm[96];
    snprintf(nm, sizeof nm, "%s.i", name);
    l->var = cg_alloca(cg, cg->t_i64, nm);
    LLVMBuildStore(cg->b, lo, l->var);
    snprintf(nm, sizeof nm, "%s.cond", name);
    l->cond = cg_block(cg, nm);
    snprintf(nm, sizeof nm, "%s.body", name);
    LLVMBasicBlockRef body = cg_block(cg, nm);
    snprintf(nm, sizeof nm, "%s.exit", name);
    l->exit = cg_block(cg, nm);
    LLVMBuildBr(cg->b, l->cond);
    LLVMPositionBuilderAtEnd(cg->b, l->cond);
    snprintf(nm, sizeof nm, "%s.i", name);
    l->i = LLVMBuildLoad2(cg->b, cg->t_i64, l->var, nm);
    LLVMValueRef more = LLVMBuildICmp(cg->b, LLVMIntSLT, l->i, hi, "more");
    LLVMBuildCondBr(cg->b, more, body, l->exit);
    LLVMPositionBuilderAtEnd(cg->b, body);
}

/* Opens `for (i = 0; i < n; i++) {` (see cg_for_range). */
void cg_for_begin(CgCpu *cg, CgFor *l, LLVMValueRef n, const char *name)
{
    cg_for_range(cg, l, cg_i64(cg, 0), n, name);
}

/* Closes the loop opened by cg_for_begin; the builder continues after it. */
void cg_for_end(CgCpu *cg, CgFor *l)
{
    LLVMValueRef i = LLVMBuildLoad2(cg->b, cg->t_i64, l->var, "i");
    LLVMValueRef next = LLVMBuildAdd(cg->b, i, cg_i64(cg, 1), "i.next");
    LLVMBuildStore(cg->b, next, l->var);
    LLVMBuildBr(cg->b, l->cond);
    LLVMPositionBuilderAtEnd(cg->b, l->exit);
}

void cg_nest_begin(CgCpu *cg, CgNest *n, const Shape *s, const char *name)
{
    if (cg->gpu && cg_gpu_nest_begin(cg, n, s, name))   // one GPU thread per element
        return;
    n->rank = s->rank;
    for (int i = 0; i < s->rank; i++) {
        char nm[96];
        snprintf(nm, sizeof nm, "%s.d%d", name, i);
        LLVMValueRef d = cg_dim(cg, s->dims[i]);
        cg_for_begin(cg, &n->loops[i], d, nm);
        n->idx[i] = n->loops[i].i;
    }
}

void cg_nest_end(CgCpu *cg, CgNest *n)
{
    if (cg->gpu && cg_gpu_nest_end(cg, n))
        return;
    for (int i = n->rank - 1; i >= 0; i--)
        cg_for_end(cg, &n->loops[i]);
}

LLVMValueRef cg_offset(CgCpu *cg, const IrValue *v, LLVMValueRef *idx)
{
    LLVMValueRef off = cg_i64(cg, 0);
    for (int j = 0; j < v->shape.rank; j++) {
        LLVMValueRef d = cg_dim(cg, v->shape.dims[j]);
        off = LLVMBuildMul(cg->b, off, d, "off");
        if (idx[j])
            off = LLVMBuildAdd(cg->b, off, idx[j], "off");
    }
    return off;
}

/* numpy broadcasting: v's dims align with the result's last ones; a constant-1 dim of v
 * is read at index 0. */
LLVMValueRef cg_bcast_offset(CgCpu *cg, const IrValue *v, LLVMValueRef *oidx, int orank)
{
    LLVMValueRef idx[IR_MAX_RANK];
    int r = v->shape.rank;
    for (int j = 0; j < r; j++) {
        Dim d = v->shape.dims[j];
        bool one = dim_is_const(d) && d.c == 1;
        idx[j] = one ? NULL : oidx[j + orank - r];
    }
    return cg_offset(cg, v, idx);
}

LLVMValueRef cg_load(CgCpu *cg, const IrValue *v, LLVMValueRef off)
{
    return cg_load_as(cg, cg_elem_type(cg, v->dtype), cg->buf[v->id], off, cg_name(cg, v));
}

void cg_store(CgCpu *cg, const IrValue *v, LLVMValueRef off, LLVMValueRef x)
{
    cg_store_as(cg, cg_elem_type(cg, v->dtype), cg->buf[v->id], off, x);
}

void cg_check_index(CgCpu *cg, LLVMValueRef i, LLVMValueRef n, const char *name)
{
    // One unsigned compare covers both i < 0 and i >= n.
    LLVMValueRef ok = LLVMBuildICmp(cg->b, LLVMIntULT, i, n, "in.range");
    LLVMBasicBlockRef cont = cg_block(cg, name);
    LLVMBuildCondBr(cg->b, ok, cont, cg->fail);
    LLVMPositionBuilderAtEnd(cg->b, cont);
}

/* Calls an overloaded f32 intrinsic such as llvm.exp.f32. */
/* Whether the math function `name` (an intrinsic or libm name) is computed by our own
 * code (cg_gpu_math.c) rather than the intrinsic or libm. Always on the GPU, which has no
 * libm. On the CPU from -O1 on for exp, tanh and erf: plain arithmetic that is inlined
 * and vectorised by LLVM's loop vectoriser, where a libm call per element stays scalar
 * (gelu_tanh's tanhf was a quarter of GPT-2's forward). -O0 keeps libm: the oracle. */
static bool use_ours(const CgCpu *cg, const char *name)
{
    if (cg->gpu)
        return true;
    return cg->opt_level >= 1 && (strcmp(name, "llvm.exp") == 0 || strcmp(name, "tanhf") == 0
                                  || strcmp(name, "erff") == 0);
}

LLVMValueRef cg_call_intrinsic(CgCpu *cg, const char *name, LLVMValueRef *args, unsigned nargs,
                               const char *vname)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef ft = LLVMIntrinsicGetType(cg->llctx, id, &cg->t_f32, 1);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, &cg->t_f32, 1);
    LLVMValueRef gpu = use_ours(cg, name) ? cg_gpu_call_math(cg, name, args, nargs, vname) : NULL;
    if (gpu)   // NVPTX cannot select llvm.exp, llvm.log, llvm.pow: ours (cg_gpu_math.c)
        return gpu;
    return LLVMBuildCall2(cg->b, ft, f, args, nargs, vname);
}

/* Calls float fname(float) from libm (erff, tanhf), declaring it on first use. */
LLVMValueRef cg_call_libm(CgCpu *cg, const char *fname, LLVMValueRef x, const char *vname)
{
    LLVMValueRef gpu = use_ours(cg, fname) ? cg_gpu_call_math(cg, fname, &x, 1, vname) : NULL;
    if (gpu)   // no libm on the GPU: ours (cg_gpu_math.c)
        return gpu;
    LLVMTypeRef ft = LLVMFunctionType(cg->t_f32, &cg->t_f32, 1, false);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, fname);
    if (!f)
        f = LLVMAddFunction(cg->mod, fname, ft);
    return LLVMBuildCall2(cg->b, ft, f, &x, 1, vname);
}

void cg_copy(CgCpu *cg, LLVMValueRef dst, LLVMValueRef src, LLVMValueRef n, LLVMTypeRef et,
             const char *name)
{
    CgFor l;
    cg_for_begin(cg, &l, n, name);
    LLVMValueRef ps = LLVMBuildInBoundsGEP2(cg->b, et, src, &l.i, 1, "src");
    LLVMValueRef x = LLVMBuildLoad2(cg->b, et, ps, "x");
    LLVMValueRef pd = LLVMBuildInBoundsGEP2(cg->b, et, dst, &l.i, 1, "dst");
    LLVMBuildStore(cg->b, x, pd);
    cg_for_end(cg, &l);
}

/* ---- outlining a loop for the thread pool ---- */

/* void tfx_pool_parallel_for(struct TfxPool *, int64_t, void (*)(void *, int64_t, int64_t),
 * void *), declared on first use. The runtime linked into the same model.so defines it
 * with hidden visibility, so the declaration is hidden too (a direct call, no PLT). */
static LLVMValueRef pool_parallel_for(CgCpu *cg, LLVMTypeRef *ft)
{
    LLVMTypeRef params[4] = { cg->t_ptr, cg->t_i64, cg->t_ptr, cg->t_ptr };
    *ft = LLVMFunctionType(cg->t_void, params, 4, false);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, "tfx_pool_parallel_for");
    if (!f) {
        f = LLVMAddFunction(cg->mod, "tfx_pool_parallel_for", *ft);
        LLVMSetVisibility(f, LLVMHiddenVisibility);
    }
    return f;
}

static void par_add_value(CgPar *p, const IrValue *v)
{
    for (uint32_t i = 0; i < p->nvals; i++)
        if (p->vals[i] == v)
            return;
    if (p->nvals >= CG_PAR_MAX_VALS) {   // callers stay below the bound
        fputs("tfxc: internal error: too many values in an outlined loop\n", stderr);
        exit(3);
    }
    p->vals[p->nvals++] = v;
}

void cg_par_begin(CgCpu *cg, CgPar *p, IrOp *op, LLVMValueRef n, const char *name)
{
    if (cg->gpu && !cg->serial) {   // a kernel with one thread per row (cg_ptx.c)
        memset(p, 0, sizeof *p);
        cg_gpu_par_begin(cg, p, op, n, name);
        return;
    }
    const IrValue *vals[2 * CG_PAR_MAX_VALS];
    uint32_t nv = 0;
    for (uint32_t i = 0; i < op->nops && nv < 2 * CG_PAR_MAX_VALS; i++)
        vals[nv++] = op->operands[i];
    for (uint32_t i = 0; i < op->nres && nv < 2 * CG_PAR_MAX_VALS; i++)
        vals[nv++] = op->results[i];
    cg_par_begin_vals(cg, p, vals, nv, n, NULL, name);
}

void cg_par_begin_vals(CgCpu *cg, CgPar *p, const IrValue *const *vals, uint32_t nv,
                       LLVMValueRef n, LLVMValueRef work, const char *name)
{
    memset(p, 0, sizeof *p);
    if (cg->serial) {
        p->begin = cg_i64(cg, 0);
        p->end = n;
        return;
    }
    p->outlined = true;
    for (uint32_t i = 0; i < nv; i++)
        par_add_value(p, vals[i]);
    uint32_t nsyms = cg->m->nsyms, nf = p->nvals + nsyms;

    // the context: { ptr buffers[nvals], i64 syms[nsyms] } on forward's stack
    LLVMTypeRef *ft = malloc((nf + 1) * sizeof *ft);
    if (!ft) {
        fputs("tfxc: out of memory\n", stderr);
        exit(3);
    }
    for (uint32_t i = 0; i < nf; i++)
        ft[i] = i < p->nvals ? cg->t_ptr : cg->t_i64;
    char nm[160];
    snprintf(nm, sizeof nm, "%s.ctx", name);
    LLVMTypeRef t_ctx = LLVMStructCreateNamed(cg->llctx, nm);
    LLVMStructSetBody(t_ctx, ft, nf, false);
    free(ft);
    LLVMValueRef ctx = cg_alloca(cg, t_ctx, nm);
    for (uint32_t i = 0; i < nf; i++) {
        LLVMValueRef f = LLVMBuildStructGEP2(cg->b, t_ctx, ctx, i, "ctx.f");
        LLVMValueRef v = i < p->nvals ? cg->buf[p->vals[i]->id] : cg->syms[i - p->nvals];
        LLVMBuildStore(cg->b, v, f);
    }

    // the body function and forward's call of it through the pool
    LLVMTypeRef params[3] = { cg->t_ptr, cg->t_i64, cg->t_i64 };
    LLVMTypeRef bt = LLVMFunctionType(cg->t_void, params, 3, false);
    LLVMValueRef body = LLVMAddFunction(cg->mod, name, bt);
    LLVMSetLinkage(body, LLVMInternalLinkage);
    LLVMValueRef poolp = LLVMBuildStructGEP2(cg->b, cg->t_args, cg->args, 5, "pool.p");
    LLVMValueRef pool = LLVMBuildLoad2(cg->b, cg->t_ptr, poolp, "pool");
    LLVMTypeRef pft;
    LLVMValueRef pf = pool_parallel_for(cg, &pft);
    LLVMValueRef cargs[4] = { pool, n, body, ctx };
    if (work) {   // too little work to wake the pool for: run the body here
        LLVMBasicBlockRef direct = cg_block(cg, "par.direct"), pooled = cg_block(cg, "par.pool"),
                          join = cg_block(cg, "par.join");
        LLVMValueRef small = LLVMBuildICmp(cg->b, LLVMIntULT, work, cg_i64(cg, CG_PAR_MIN_WORK),
                                           "par.small");
        LLVMBuildCondBr(cg->b, small, direct, pooled);
        LLVMPositionBuilderAtEnd(cg->b, direct);
        LLVMValueRef dargs[3] = { ctx, cg_i64(cg, 0), n };
        LLVMBuildCall2(cg->b, bt, body, dargs, 3, "");
        LLVMBuildBr(cg->b, join);
        LLVMPositionBuilderAtEnd(cg->b, pooled);
        LLVMBuildCall2(cg->b, pft, pf, cargs, 4, "");
        LLVMBuildBr(cg->b, join);
        LLVMPositionBuilderAtEnd(cg->b, join);
    } else {
        LLVMBuildCall2(cg->b, pft, pf, cargs, 4, "");
    }

    // switch to the body
    p->fwd_fn = cg->fn;
    p->fwd_entry = cg->entry;
    p->fwd_block = LLVMGetInsertBlock(cg->b);
    p->fwd_fail = cg->fail;
    cg->fail = NULL;
    cg_fn_begin(cg, body);
    LLVMValueRef bctx = LLVMGetParam(body, 0);
    LLVMSetValueName2(bctx, "ctx", 3);
    p->begin = LLVMGetParam(body, 1);
    LLVMSetValueName2(p->begin, "begin", 5);
    p->end = LLVMGetParam(body, 2);
    LLVMSetValueName2(p->end, "end", 3);
    LLVMValueRef *fwd_syms = cg->syms;
    cg->syms = cg->par_syms;
    cg->par_syms = fwd_syms;
    for (uint32_t i = 0; i < nf; i++) {
        LLVMValueRef f = LLVMBuildStructGEP2(cg->b, t_ctx, bctx, i, "ctx.f");
        if (i < p->nvals) {
            const IrValue *v = p->vals[i];
            p->saved[i] = cg->buf[v->id];
            cg->buf[v->id] = LLVMBuildLoad2(cg->b, cg->t_ptr, f, cg_name(cg, v));
        } else {
            cg->syms[i - p->nvals] = LLVMBuildLoad2(cg->b, cg->t_i64, f,
                                                    cg->m->syms[i - p->nvals].name);
        }
    }
}

void cg_par_end(CgCpu *cg, CgPar *p)
{
    if (!p->outlined)
        return;
    if (cg->gpu) {
        cg_gpu_par_end(cg, p);
        return;
    }
    LLVMBuildRetVoid(cg->b);
    cg_fn_end(cg);
    for (uint32_t i = 0; i < p->nvals; i++)
        cg->buf[p->vals[i]->id] = p->saved[i];
    LLVMValueRef *body_syms = cg->syms;
    cg->syms = cg->par_syms;
    cg->par_syms = body_syms;
    cg->fn = p->fwd_fn;
    cg->entry = p->fwd_entry;
    cg->fail = p->fwd_fail;
    LLVMPositionBuilderAtEnd(cg->ab, cg->entry);
    LLVMPositionBuilderAtEnd(cg->b, p->fwd_block);
}
