/* cg_cpu.c - the CPU backend driver: builds one LLVM module for an IrModule (the model
 * descriptor tfx__model, the workspace-size function and the forward function), verifies
 * it, optimises it for the host, and writes LLVM IR text, assembly, an object file, or a
 * model.so linked with the runtime (cc -shared). The op lowering is in cg_lower.c.
 * Called by tfx_compile() through cg_cpu_emit(). See docs/codegen.md. */
#include "cg_int.h"
#include "cg_gpu.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

extern char **environ;

enum { CG_ALIGN = 64 };   /* every buffer starts on a 64-byte boundary */

void cg_init(CgCpu *cg, IrModule *m, DiagEngine *d, const char *name)
{
    memset(cg, 0, sizeof *cg);
    cg->m = m;
    cg->d = d;
    cg->llctx = LLVMContextCreate();
    cg->mod = LLVMModuleCreateWithNameInContext(name, cg->llctx);
    LLVMSetSourceFileName(cg->mod, name, strlen(name));
    cg->b = LLVMCreateBuilderInContext(cg->llctx);
    cg->ab = LLVMCreateBuilderInContext(cg->llctx);
    cg->t_void = LLVMVoidTypeInContext(cg->llctx);
    cg->t_i1 = LLVMInt1TypeInContext(cg->llctx);
    cg->t_i8 = LLVMInt8TypeInContext(cg->llctx);
    cg->t_i32 = LLVMInt32TypeInContext(cg->llctx);
    cg->t_i64 = LLVMInt64TypeInContext(cg->llctx);
    cg->t_f32 = LLVMFloatTypeInContext(cg->llctx);
    cg->t_ptr = LLVMPointerTypeInContext(cg->llctx, 0);
    cg->t_f16 = LLVMHalfTypeInContext(cg->llctx);
    cg->t_bf16 = LLVMInt16TypeInContext(cg->llctx);
    LLVMTypeRef args[6] = { cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr };
    cg->t_args = LLVMStructCreateNamed(cg->llctx, "TfxKernelArgs");
    LLVMStructSetBody(cg->t_args, args, 6, false);
    ir_names_init(&cg->names, m, m->funcs[0]);
    cg->buf = calloc(m->next_value_id + 1, sizeof *cg->buf);
    cg->wbase = calloc(m->nweights + 1, sizeof *cg->wbase);
    cg->syms = calloc(m->nsyms + 1, sizeof *cg->syms);
    cg->par_syms = calloc(m->nsyms + 1, sizeof *cg->par_syms);
    cg->sym_slot = calloc(m->nsyms + 1, sizeof *cg->sym_slot);
    cg->absorbed = calloc(m->next_value_id + 1, sizeof *cg->absorbed);
    cg->epi_root = cg_xcalloc(m->next_value_id + 1, sizeof *cg->epi_root);
    cg->epi_gemm = cg_xcalloc(m->next_value_id + 1, sizeof *cg->epi_gemm);
    if (!cg->buf || !cg->wbase || !cg->syms || !cg->par_syms || !cg->sym_slot || !cg->absorbed) {
        fputs("tfxc: out of memory\n", stderr);
        exit(3);
    }
}

void cg_dispose(CgCpu *cg)
{
    free(cg->buf);
    free(cg->wbase);
    free(cg->syms);
    free(cg->par_syms);
    free(cg->sym_slot);
    free(cg->gemm_tb);
    free(cg->absorbed);
    free(cg->epi_root);
    free(cg->epi_gemm);
    ir_names_dispose(&cg->names);
    if (cg->tm)
        LLVMDisposeTargetMachine(cg->tm);
    LLVMDisposeBuilder(cg->ab);
    LLVMDisposeBuilder(cg->b);
    LLVMDisposeModule(cg->mod);
    LLVMContextDispose(cg->llctx);
}

/* ---- what the backend accepts: checked before anything is built ---- */

typedef struct CheckCtx {
    CgCpu *cg;
} CheckCtx;

static void check_op(IrOp *op, void *vctx)
{
    CgCpu *cg = ((CheckCtx *)vctx)->cg;
    if (cg->failed)
        return;
    if (op->kind == IR_OP_CALL) {   // the inline pass removes every call before codegen
        diag_error(cg->d, op->span, "internal error: '%s' left for code generation",
                   ir_op_info[op->kind].name);
        cg->failed = true;
    } else if (op->kind == IR_OP_MOE &&
               (op->operands[0]->dtype == DT_I32 || op->operands[1]->dtype == DT_I32)) {
        diag_error(cg->d, op->span, "code generation does not support moe on i32 %s yet "
                   "(convert with to_f32)", op->operands[1]->dtype == DT_I32 ? "scores" : "tokens");
        cg->failed = true;
    }
}

static bool check_module(CgCpu *cg)
{
    IrModule *m = cg->m;
    CheckCtx cc = { cg };
    for (uint32_t i = 0; i < m->nweights && !cg->failed; i++) {
        const IrWeight *w = &m->weights[i];
        bool konst = true;
        for (int j = 0; j < w->shape.rank; j++)
            konst = konst && dim_is_const(w->shape.dims[j]);
        if (!konst) {
            // sema rejects these: a weight's shape is over hyperparameters only
            diag_error(cg->d, w->span, "internal error: weight '%s' has a symbolic shape",
                       w->name);
            cg->failed = true;
        }
    }
    for (uint32_t i = 0; i < m->ninputs + m->noutputs && !cg->failed; i++) {
        const IrValue *v = i < m->ninputs ? m->inputs[i].value : m->outputs[i - m->ninputs].value;
        for (int j = 0; j < v->shape.rank; j++)
            if (v->shape.dims[j].nterms > 1) {
                diag_error(cg->d, m->funcs[0]->span, "internal error: an input or output "
                           "dimension over two symbols has no TfxDimDesc");
                cg->failed = true;
            } else if (v->shape.dims[j].nterms == 1
                       && m->syms[v->shape.dims[j].sym[0]].is_capacity) {
                // the caller cannot size a buffer by a symbol the descriptor does not list
                bool in = i < m->ninputs;
                diag_error(cg->d, m->funcs[0]->span, "code generation does not support a "
                           "capacity() dimension on model %s '%s' yet", in ? "input" : "output",
                           in ? m->inputs[i].name : m->outputs[i - m->ninputs].name);
                cg->failed = true;
            }
    }
    if (!cg->failed)
        ir_region_walk(m->funcs[0]->body, check_op, &cc);
    if (!cg->failed)
        cg_route_number_syms(cg);
    if (m->step)   // P is @step's alone: forward neither reads it nor lists it
        cg->sym_slot[m->past_sym] = -1;
    return !cg->failed;
}

/* ---- workspace layout: one 64-byte-aligned buffer per value, in walk order ---- */

typedef struct Layout {
    CgCpu       *cg;
    LLVMValueRef ws;     /* workspace base, or NULL when only the size is wanted */
    LLVMValueRef off;    /* running byte offset (i64); with a plan, the plan's total */
    /* the memory plan (cg->mem_plan): sizes are stored, offsets come from the runtime */
    bool           plan;
    LLVMValueRef   sizes;   /* i64 [nbuf] alloca */
    uint32_t       nbuf;
    const IrValue **vals;   /* by buffer index; room for every value of the module */
    IrFunc        *func;    /* the function laid out */
} Layout;

static void layout_add(Layout *lo, const IrValue *v, LLVMValueRef extra)
{
    CgCpu *cg = lo->cg;
    LLVMValueRef n = cg_numel(cg, &v->shape);
    if (extra)
        n = LLVMBuildAdd(cg->b, n, extra, "n.extra");
    LLVMValueRef bytes = LLVMBuildMul(cg->b, n, cg_i64(cg, cg_elem_size(v->dtype)), "bytes");
    if (lo->plan) {   // sizes now; offsets when every size is known (plan_finish)
        lo->vals[lo->nbuf++] = v;
        cg->buf[v->id] = bytes;   // a placeholder: replaced by plan_finish
        return;
    }
    if (lo->ws)
        cg->buf[v->id] = LLVMBuildInBoundsGEP2(cg->b, cg->t_i8, lo->ws, &lo->off, 1, cg_name(cg, v));
    LLVMValueRef end = LLVMBuildAdd(cg->b, lo->off, bytes, "end");
    LLVMValueRef up = LLVMBuildAdd(cg->b, end, cg_i64(cg, CG_ALIGN - 1), "end.up");
    lo->off = LLVMBuildAnd(cg->b, up, cg_i64(cg, -CG_ALIGN), "off");
}

static void layout_region(Layout *lo, IrRegion *r)
{
    for (IrOp *op = r->first; op; op = op->next) {
        if (op->kind != IR_OP_WEIGHT && op->kind != IR_OP_CACHE)   // they point elsewhere
            for (uint32_t i = 0; i < op->nres; i++)
                if (!cg_gemm_reads_through(lo->cg, op->results[i])   // no copy is made
                    && !cg_reshape_view(lo->cg, op->results[i])
                    && !lo->cg->absorbed[op->results[i]->id])         // never stored
                    layout_add(lo, op->results[i], NULL);
        if (op->kind == IR_OP_LOOP || op->kind == IR_OP_MOE) {
            IrRegion *b = op->body;
            // %i's buffer also holds one halt flag per token for an `until` loop, and %e's
            // the routing tables of a moe
            LLVMValueRef extra = NULL;
            if (op->attrs.has_until)
                extra = cg_dim(lo->cg, op->results[0]->shape.dims[0]);
            if (op->kind == IR_OP_MOE) {
                extra = cg_moe_scratch(lo->cg, op);
                cg_moe_bound_syms(lo->cg, op);
            }
            for (uint32_t i = 0; i < b->nargs; i++)
                layout_add(lo, b->args[i], i == 0 ? extra : NULL);
            layout_region(lo, b);
        }
    }
}

/* ---- the memory plan (-O1..3): buffers share memory by liveness ---- */

/* int64_t tfx_plan_offsets(int64_t, const int64_t *, const int32_t *, const int32_t *,
 * int64_t *, int32_t *) of the runtime (rt_plan.c), hidden like tfx_pool_parallel_for. */
static LLVMValueRef plan_fn(CgCpu *cg, LLVMTypeRef *ft)
{
    LLVMTypeRef params[6] = { cg->t_i64, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_ptr };
    *ft = LLVMFunctionType(cg->t_i64, params, 6, false);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, "tfx_plan_offsets");
    if (!f) {
        f = LLVMAddFunction(cg->mod, "tfx_plan_offsets", *ft);
        LLVMSetVisibility(f, LLVMHiddenVisibility);
    }
    return f;
}

/* An internal constant i32 array. */
static LLVMValueRef const_i32_array(CgCpu *cg, const char *name, const int32_t *v, uint32_t n)
{
    LLVMValueRef *el = cg_xcalloc(n, sizeof *el);
    for (uint32_t i = 0; i < n; i++)
        el[i] = LLVMConstInt(cg->t_i32, (unsigned long long)v[i], true);
    LLVMTypeRef t = LLVMArrayType2(cg->t_i32, n);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, t, name);
    LLVMSetInitializer(g, LLVMConstArray2(cg->t_i32, el, n));
    LLVMSetGlobalConstant(g, true);
    LLVMSetLinkage(g, LLVMInternalLinkage);
    free(el);
    return g;
}

/* The plan's walk has stored every buffer's size in cg->buf: stores them in an array,
 * calls tfx_plan_offsets with the live intervals of cg_plan_live, and points each buffer
 * at ws + its offset. lo->off becomes the plan's total. */
static void plan_finish(Layout *lo, const char *tag)
{
    CgCpu *cg = lo->cg;
    uint32_t n = lo->nbuf;
    if (n == 0) {
        lo->off = cg_i64(cg, 0);
        return;
    }
    CgLive live;
    cg_plan_live(cg, lo->func, &live);
    int32_t *st = cg_xcalloc(2 * (size_t)n, sizeof *st);
    for (uint32_t k = 0; k < n; k++) {
        st[k] = live.start[lo->vals[k]->id];
        st[n + k] = live.end[lo->vals[k]->id];
    }
    cg_live_dispose(&live);
    char nm[64];
    snprintf(nm, sizeof nm, "tfx.plan.start.%s", tag);
    LLVMValueRef gs = const_i32_array(cg, nm, st, n);
    snprintf(nm, sizeof nm, "tfx.plan.end.%s", tag);
    LLVMValueRef ge = const_i32_array(cg, nm, st + n, n);
    free(st);
    LLVMValueRef sizes = cg_alloca(cg, LLVMArrayType2(cg->t_i64, n), "plan.sizes");
    LLVMValueRef offs = cg_alloca(cg, LLVMArrayType2(cg->t_i64, n), "plan.offsets");
    LLVMValueRef scratch = cg_alloca(cg, LLVMArrayType2(cg->t_i32, 2 * n), "plan.scratch");
    for (uint32_t k = 0; k < n; k++) {
        LLVMValueRef i = cg_i64(cg, k);
        LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, cg->t_i64, sizes, &i, 1, "size.p");
        LLVMBuildStore(cg->b, cg->buf[lo->vals[k]->id], p);
    }
    LLVMTypeRef ft;
    LLVMValueRef f = plan_fn(cg, &ft);
    LLVMValueRef args[6] = { cg_i64(cg, n), sizes, gs, ge, offs, scratch };
    lo->off = LLVMBuildCall2(cg->b, ft, f, args, 6, "plan.total");
    for (uint32_t k = 0; k < n; k++) {
        const IrValue *v = lo->vals[k];
        if (!lo->ws) {
            cg->buf[v->id] = NULL;
            continue;
        }
        LLVMValueRef i = cg_i64(cg, k);
        LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, cg->t_i64, offs, &i, 1, "off.p");
        LLVMValueRef off = LLVMBuildLoad2(cg->b, cg->t_i64, p, "off");
        cg->buf[v->id] = LLVMBuildInBoundsGEP2(cg->b, cg->t_i8, lo->ws, &off, 1, cg_name(cg, v));
    }
}

/* Lays out the buffers of function f (@main or @step): one after another (-O0, and the
 * GPU), or by the plan. tag names the plan's constant arrays. */
static LLVMValueRef layout_func(CgCpu *cg, IrFunc *f, LLVMValueRef ws, const char *tag)
{
    Layout lo = { cg, ws, cg_i64(cg, 0), .plan = cg->mem_plan, .func = f };
    if (lo.plan)
        lo.vals = cg_xcalloc(cg->m->next_value_id + 1, sizeof *lo.vals);
    layout_region(&lo, f->body);
    if (lo.plan)
        plan_finish(&lo, tag);
    free(lo.vals);
    return lo.off;
}

/* A capacity symbol: max(least, (i64)(ratio * (double)of)); `of` is over earlier symbols
 * (already loaded) and never negative, so the truncation is the floor. */
static LLVMValueRef capacity_value(CgCpu *cg, const IrSym *s)
{
    LLVMTypeRef t_f64 = LLVMDoubleTypeInContext(cg->llctx);
    LLVMValueRef n = LLVMBuildSIToFP(cg->b, cg_dim(cg, s->of), t_f64, "cap.n");
    LLVMValueRef x = LLVMBuildFMul(cg->b, n, LLVMConstReal(t_f64, s->ratio), "cap.x");
    LLVMValueRef c = LLVMBuildFPToSI(cg->b, x, cg->t_i64, "cap.floor");
    LLVMValueRef least = cg_i64(cg, s->least);
    LLVMValueRef small = LLVMBuildICmp(cg->b, LLVMIntSLT, c, least, "cap.small");
    return LLVMBuildSelect(cg->b, small, least, c, s->name);
}

static void load_syms(CgCpu *cg, LLVMValueRef syms)
{
    for (uint32_t i = 0; i < cg->m->nsyms; i++) {
        if (cg->m->syms[i].is_capacity) {   // derived, not the caller's
            cg->syms[i] = capacity_value(cg, &cg->m->syms[i]);
            continue;
        }
        if (cg->sym_slot[i] < 0) {   // a moe's routed count: set by layout and the moe
            cg->syms[i] = cg_i64(cg, 0);
            continue;
        }
        LLVMValueRef k = cg_i64(cg, cg->sym_slot[i]);
        LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, cg->t_i64, syms, &k, 1, "sym.p");
        cg->syms[i] = LLVMBuildLoad2(cg->b, cg->t_i64, p, cg->m->syms[i].name);
    }
}

/* size_t tfx__workspace_bytes(const int64_t *syms) for @main (fname = "workspace_bytes"),
 * or another function f of the module. */
LLVMValueRef cg_emit_workspace_fn(CgCpu *cg, IrFunc *f, const char *fname)
{
    char name[64];
    snprintf(name, sizeof name, "tfx__%s", fname);
    LLVMTypeRef ft = LLVMFunctionType(cg->t_i64, &cg->t_ptr, 1, false);
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, ft);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_fn_begin(cg, fn);
    load_syms(cg, LLVMGetParam(fn, 0));
    LLVMBuildRet(cg->b, layout_func(cg, f, NULL, fname));
    cg_fn_end(cg);
    return fn;
}

/* int32_t tfx__forward(const TfxKernelArgs *a): 0, or 1 when an index is out of range.
 * The same for another function f with the model's inputs and outputs (fname "step"). */
LLVMValueRef cg_emit_forward_fn(CgCpu *cg, IrFunc *f, const char *fname)
{
    IrModule *m = cg->m;
    char name[64];
    snprintf(name, sizeof name, "tfx__%s", fname);
    LLVMTypeRef ft = LLVMFunctionType(cg->t_i32, &cg->t_ptr, 1, false);
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, ft);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    cg_fn_begin(cg, fn);
    cg->args = LLVMGetParam(fn, 0);
    LLVMSetValueName2(cg->args, "args", 4);
    LLVMValueRef sp = LLVMBuildStructGEP2(cg->b, cg->t_args, cg->args, 3, "syms.p");
    LLVMValueRef syms = LLVMBuildLoad2(cg->b, cg->t_ptr, sp, "syms");
    load_syms(cg, syms);
    LLVMValueRef wp = LLVMBuildStructGEP2(cg->b, cg->t_args, cg->args, 4, "workspace.p");
    LLVMValueRef ws = LLVMBuildLoad2(cg->b, cg->t_ptr, wp, "workspace");
    LLVMValueRef ip = LLVMBuildStructGEP2(cg->b, cg->t_args, cg->args, 1, "inputs.p");
    LLVMValueRef in = LLVMBuildLoad2(cg->b, cg->t_ptr, ip, "inputs");
    for (uint32_t i = 0; i < m->ninputs; i++) {
        IrValue *v = f->body->args[i];   // @main's are m->inputs[i].value
        LLVMValueRef k = cg_i64(cg, i);
        LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, cg->t_ptr, in, &k, 1, "in.p");
        cg->buf[v->id] = LLVMBuildLoad2(cg->b, cg->t_ptr, p, cg_name(cg, v));
    }
    layout_func(cg, f, ws, fname);
    LLVMBasicBlockRef body = LLVMGetInsertBlock(cg->b);
    cg->fail = LLVMAppendBasicBlockInContext(cg->llctx, fn, "fail");
    LLVMPositionBuilderAtEnd(cg->b, cg->fail);
    LLVMBuildRet(cg->b, LLVMConstInt(cg->t_i32, 1, false));
    LLVMPositionBuilderAtEnd(cg->b, body);
    bool ok = cg_lower_region(cg, f->body);
    if (ok)
        LLVMBuildRet(cg->b, LLVMConstInt(cg->t_i32, 0, false));
    else
        LLVMBuildUnreachable(cg->b);
    LLVMMoveBasicBlockAfter(cg->fail, LLVMGetLastBasicBlock(fn));
    cg_fn_end(cg);
    return fn;
}

/* ---- the descriptor: constant tables the runtime reads ---- */

static LLVMValueRef const_str(CgCpu *cg, const char *s, const char *gname)
{
    LLVMValueRef init = LLVMConstStringInContext(cg->llctx, s, (unsigned)strlen(s), false);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), gname);
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, true);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
    return g;
}

static LLVMValueRef const_array(CgCpu *cg, LLVMTypeRef et, LLVMValueRef *elems, unsigned n,
                                const char *gname)
{
    if (n == 0)
        return LLVMConstNull(cg->t_ptr);
    LLVMValueRef init = LLVMConstArray2(et, elems, n);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), gname);
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, true);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    return g;
}

static LLVMValueRef ci32(CgCpu *cg, int64_t v)
{
    return LLVMConstInt(cg->t_i32, (unsigned long long)v, true);
}

/* TfxTensorDesc { name, dtype, rank, dims[6] of TfxDimDesc { c, sym, coef, div } } */
static LLVMValueRef tensor_desc(CgCpu *cg, LLVMTypeRef t_td, LLVMTypeRef t_dim, const IrIO *io,
                                const char *kind, uint32_t i)
{
    char gname[64];
    snprintf(gname, sizeof gname, "%s.%u.name", kind, i);
    LLVMValueRef dims[IR_MAX_RANK];
    for (int j = 0; j < IR_MAX_RANK; j++) {
        Dim d = j < io->value->shape.rank ? io->value->shape.dims[j] : dim_const(0);
        bool sym = d.nterms == 1;
        LLVMValueRef f[4] = { cg_i64(cg, d.c), ci32(cg, sym ? (int64_t)cg->sym_slot[d.sym[0]] : -1),
                              cg_i64(cg, sym ? d.coef[0] : 0), cg_i64(cg, d.div) };
        dims[j] = LLVMConstNamedStruct(t_dim, f, 4);
    }
    // TFX_F32 .. TFX_I32 are numbered like DType
    LLVMValueRef f[4] = { const_str(cg, io->name, gname), ci32(cg, (int64_t)io->value->dtype),
                          ci32(cg, io->value->shape.rank), LLVMConstArray2(t_dim, dims, IR_MAX_RANK) };
    return LLVMConstNamedStruct(t_td, f, 4);
}

/* A family's member name: each "{var}" in order replaced by that level's index. */
static void member_name(char *out, size_t outsz, const IrWeight *w, const int64_t *idx)
{
    size_t n = 0;
    uint32_t level = 0;
    for (const char *p = w->name; *p && n + 24 < outsz; p++) {
        if (*p == '{' && level < w->nlevels) {
            const char *q = strchr(p, '}');
            if (q) {
                n += (size_t)snprintf(out + n, outsz - n, "%lld", (long long)idx[level++]);
                p = q;
                continue;
            }
        }
        out[n++] = *p;
    }
    out[n] = 0;
}

static unsigned emit_weight_descs(CgCpu *cg, LLVMTypeRef t_wd, LLVMValueRef **out)
{
    IrModule *m = cg->m;
    unsigned total = 0;
    for (uint32_t i = 0; i < m->nweights; i++) {
        cg->wbase[i] = total;
        int64_t members = 1;
        for (uint32_t l = 0; l < m->weights[i].nlevels; l++)
            members *= m->weights[i].count[l];
        total += (unsigned)members;
    }
    LLVMValueRef *ws = calloc(total + 1, sizeof *ws);
    if (!ws) {
        fputs("tfxc: out of memory\n", stderr);
        exit(3);
    }
    for (uint32_t i = 0; i < m->nweights; i++) {
        const IrWeight *w = &m->weights[i];
        int64_t idx[IR_MAX_RANK] = { 0 };
        for (unsigned k = cg->wbase[i]; k < (i + 1 < m->nweights ? cg->wbase[i + 1] : total); k++) {
            char name[1024], gname[32];
            member_name(name, sizeof name, w, idx);
            snprintf(gname, sizeof gname, "weight.%u.name", k);
            LLVMValueRef dims[IR_MAX_RANK];
            for (int j = 0; j < IR_MAX_RANK; j++)
                dims[j] = cg_i64(cg, j < w->shape.rank ? w->shape.dims[j].c : 0);
            LLVMValueRef f[6] = { const_str(cg, name, gname), ci32(cg, (int64_t)w->dtype),
                                  ci32(cg, w->shape.rank), LLVMConstArray2(cg->t_i64, dims, IR_MAX_RANK),
                                  ci32(cg, w->has_init), LLVMConstReal(cg->t_f32, w->init) };
            ws[k] = LLVMConstNamedStruct(t_wd, f, 6);
            // next member, row-major over the levels
            for (int l = (int)w->nlevels - 1; l >= 0; l--) {
                if (++idx[l] < w->count[l])
                    break;
                idx[l] = 0;
            }
        }
    }
    *out = ws;
    return total;
}

static LLVMTypeRef struct_type(CgCpu *cg, const char *name, LLVMTypeRef *f, unsigned n)
{
    LLVMTypeRef t = LLVMStructCreateNamed(cg->llctx, name);
    LLVMStructSetBody(t, f, n, false);
    return t;
}

/* const TfxModelDesc tfx__model (hidden): see runtime/tfx_abi.h. */
static void emit_desc(CgCpu *cg, LLVMValueRef ws_fn, LLVMValueRef fwd_fn, LLVMValueRef *wdescs,
                      unsigned nw, LLVMTypeRef t_wd, const CgStepDesc *sd)
{
    IrModule *m = cg->m;
    LLVMTypeRef I32 = cg->t_i32, I64 = cg->t_i64, P = cg->t_ptr;
    LLVMTypeRef t_sym = struct_type(cg, "TfxSymDesc", (LLVMTypeRef[]){ P, I64 }, 2);
    LLVMTypeRef t_dim = struct_type(cg, "TfxDimDesc", (LLVMTypeRef[]){ I64, I32, I64, I64 }, 4);
    LLVMTypeRef t_td = struct_type(cg, "TfxTensorDesc",
                                   (LLVMTypeRef[]){ P, I32, I32, LLVMArrayType2(t_dim, IR_MAX_RANK) }, 4);
    LLVMTypeRef t_md = struct_type(cg, "TfxModelDesc",
                                   (LLVMTypeRef[]){ I32, P, I32, P, I32, P, I32, P, I32, P, P, P,
                                                    P, P, I32, P, I32, P }, 18);
    LLVMValueRef syms[64], ins[64], outs[64];
    uint32_t nsyms = 0;   // routed moe counts are not the caller's: left out
    for (uint32_t i = 0; i < m->nsyms && nsyms < 64; i++) {
        if (cg->sym_slot[i] < 0)
            continue;
        char gname[32];
        snprintf(gname, sizeof gname, "sym.%u.name", nsyms);
        const IrSym *s = &m->syms[i];
        int64_t max = s->has_max && dim_is_const(s->max) ? s->max.c : 0;
        LLVMValueRef f[2] = { const_str(cg, s->name, gname), cg_i64(cg, max) };
        syms[nsyms++] = LLVMConstNamedStruct(t_sym, f, 2);
    }
    uint32_t nin = m->ninputs < 64 ? m->ninputs : 64, nout = m->noutputs < 64 ? m->noutputs : 64;
    for (uint32_t i = 0; i < nin; i++)
        ins[i] = tensor_desc(cg, t_td, t_dim, &m->inputs[i], "input", i);
    for (uint32_t i = 0; i < nout; i++)
        outs[i] = tensor_desc(cg, t_td, t_dim, &m->outputs[i], "output", i);
    LLVMValueRef f[18] = {
        ci32(cg, 2), const_str(cg, m->name ? m->name : "model", "model.name"),
        ci32(cg, nsyms), const_array(cg, t_sym, syms, nsyms, "syms"),
        ci32(cg, nin), const_array(cg, t_td, ins, nin, "inputs"),
        ci32(cg, nout), const_array(cg, t_td, outs, nout, "outputs"),
        ci32(cg, nw), const_array(cg, t_wd, wdescs, nw, "weights"),
        ws_fn, fwd_fn,
        sd->step_fn, sd->ws_fn, ci32(cg, sd->ncache), sd->cache, ci32(cg, sd->step_sym),
        const_str(cg, sd->no_step, "model.no_step"),
    };
    LLVMValueRef init = LLVMConstNamedStruct(t_md, f, 18);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, t_md, "tfx__model");
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, true);
    LLVMSetVisibility(g, LLVMHiddenVisibility);
}

/* ---- target, passes, output ---- */

static bool make_target(CgCpu *cg, int opt, const char *cpu_name)
{
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    char *triple = LLVMGetDefaultTargetTriple();
    /* --cpu=NAME targets another machine (or valgrind, which lacks AVX-512) with that
     * CPU's own features; the default is this host with all of its features */
    char *cpu = cpu_name ? LLVMCreateMessage(cpu_name) : LLVMGetHostCPUName();
    char *features = cpu_name ? LLVMCreateMessage("") : LLVMGetHostCPUFeatures();
    LLVMTargetRef target;
    char *err = NULL;
    bool ok = !LLVMGetTargetFromTriple(triple, &target, &err);
    if (ok) {
        LLVMCodeGenOptLevel lvl = opt == 0 ? LLVMCodeGenLevelNone
                                : opt == 1 ? LLVMCodeGenLevelLess
                                : opt == 2 ? LLVMCodeGenLevelDefault : LLVMCodeGenLevelAggressive;
        cg->tm = LLVMCreateTargetMachine(target, triple, cpu, features, lvl, LLVMRelocPIC,
                                         LLVMCodeModelDefault);
        LLVMSetTarget(cg->mod, triple);
        LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(cg->tm);
        LLVMSetModuleDataLayout(cg->mod, dl);
        LLVMDisposeTargetData(dl);
    } else {
        diag_error(cg->d, (SrcSpan){ 0 }, "internal error: no LLVM target for '%s': %s", triple, err);
        LLVMDisposeMessage(err);
    }
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    return ok;
}

static bool optimise(CgCpu *cg, const CgOptions *o)
{
    if (o->opt_level == 0)
        return true;
    char pipeline[32];
    snprintf(pipeline, sizeof pipeline, "default<O%d>", o->opt_level);
    if (o->verbose)
        fprintf(stderr, "tfxc: LLVM pass pipeline %s\n", pipeline);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMErrorRef e = LLVMRunPasses(cg->mod, pipeline, cg->tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) {
        char *msg = LLVMGetErrorMessage(e);
        diag_error(cg->d, (SrcSpan){ 0 }, "internal error: LLVM passes failed: %s", msg);
        LLVMDisposeErrorMessage(msg);
        return false;
    }
    return true;
}

static bool emit_machine(CgCpu *cg, LLVMCodeGenFileType kind, Buf *out)
{
    LLVMMemoryBufferRef mb = NULL;
    char *err = NULL;
    if (LLVMTargetMachineEmitToMemoryBuffer(cg->tm, cg->mod, kind, &err, &mb)) {
        diag_error(cg->d, (SrcSpan){ 0 }, "internal error: LLVM code generation failed: %s", err);
        LLVMDisposeMessage(err);
        return false;
    }
    buf_putn(out, LLVMGetBufferStart(mb), LLVMGetBufferSize(mb));
    LLVMDisposeMemoryBuffer(mb);
    return true;
}

/* ---- linking model.so ---- */

static const char *first_existing(const char *a, const char *b)
{
    return access(a, R_OK) == 0 ? a : b;
}

/* Runs argv (argv[0] looked up in PATH); returns its exit status, or -1 if it could not
 * be started (errno-style code in *err). */
static int run_command(char *const *argv, int *err)
{
    pid_t pid;
    *err = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
    if (*err)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int link_so(CgCpu *cg, const CgOptions *o, const Buf *obj)
{
    const char *tmp = getenv("TMPDIR");
    char objpath[4096];
    snprintf(objpath, sizeof objpath, "%s/tfxc-obj-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(objpath);   // no suffix: cc passes unknown files to the linker
    bool ok = fd >= 0 && write(fd, obj->data, obj->len) == (ssize_t)obj->len;
    ok = fd >= 0 && close(fd) == 0 && ok;
    if (!ok) {
        diag_error(cg->d, (SrcSpan){ 0 }, "cannot create a temporary object file '%s': %s",
                   objpath, strerror(errno));
        if (fd >= 0)
            unlink(objpath);
        return 1;
    }
    const char *lib = getenv("TFX_RUNTIME_LIB");
    if (!lib)
        lib = first_existing(TFX_RUNTIME_LIB, TFX_INSTALL_RUNTIME_LIB);
    const char *entry = first_existing(TFX_MODEL_ENTRY_SRC, TFX_INSTALL_MODEL_ENTRY_SRC);
    char incdir[4096];
    snprintf(incdir, sizeof incdir, "-I%s", entry);
    char *slash = strrchr(incdir, '/');
    if (slash)
        *slash = 0;
    const char *cc = getenv("CC");
    if (!cc || !*cc)
        cc = "cc";
    int status = 1;
    if (access(lib, R_OK) != 0 || access(entry, R_OK) != 0) {
        diag_error(cg->d, (SrcSpan){ 0 }, "cannot find the tfx runtime ('%s', '%s')", lib, entry);
    } else {
        char *argv[] = { (char *)cc, "-shared", "-fPIC", "-fvisibility=hidden", "-O2", "-o",
                         (char *)o->so_path, objpath, (char *)entry, incdir,
                         "-Wl,--whole-archive", (char *)lib, "-Wl,--no-whole-archive",
                         "-lm", "-lpthread", NULL };
        if (o->verbose) {
            for (char **a = argv; *a; a++)
                fprintf(stderr, "%s%s", a == argv ? "tfxc: " : " ", *a);
            fputc('\n', stderr);
        }
        int err = 0;
        int rc = run_command(argv, &err);
        if (rc < 0)
            diag_error(cg->d, (SrcSpan){ 0 }, "cannot run the C compiler '%s' to link '%s': %s",
                       cc, o->so_path, strerror(err ? err : errno));
        else if (rc != 0)
            diag_error(cg->d, (SrcSpan){ 0 }, "linking '%s' failed ('%s' exited with status %d)",
                       o->so_path, cc, rc);
        else
            status = 0;
    }
    unlink(objpath);
    return status;
}

/* Verifies the module; on failure writes it to a temporary file for the bug report. */
static bool verify(CgCpu *cg)
{
    char *msg = NULL;
    if (!LLVMVerifyModule(cg->mod, LLVMReturnStatusAction, &msg)) {
        LLVMDisposeMessage(msg);
        return true;
    }
    char path[] = "/tmp/tfxc-invalid-ll-XXXXXX";
    int fd = mkstemp(path);
    char *err = NULL;
    if (fd >= 0) {
        close(fd);
        if (LLVMPrintModuleToFile(cg->mod, path, &err))
            LLVMDisposeMessage(err);
    }
    diag_error(cg->d, (SrcSpan){ 0 }, "internal error: generated LLVM IR is invalid (module "
               "written to %s):\n%s", fd >= 0 ? path : "<none>", msg);
    LLVMDisposeMessage(msg);
    return false;
}

int cg_cpu_emit(IrModule *m, DiagEngine *d, const CgOptions *o, Buf *out)
{
    CgCpu cg;
    cg_init(&cg, m, d, o->module_name ? o->module_name : "model");
    cg.serial = o->serial;
    cg.opt_level = o->opt_level;
    cg.cpu = o->cpu;
    int status = 0;
    if (!check_module(&cg)) {
        status = 1;
        goto done;
    }
    if (o->target != CG_TARGET_CUDA) {   // the GPU lays out its own buffers (cg_ptx.c)
        cg_flash_plan(&cg);   // first: its matmuls are not GEMMs, its scale not fused
        cg_gemm_plan(&cg);
        cg_fuse_plan(&cg);
        cg.mem_plan = o->opt_level >= 1;
    } else {
        cg_gpu_plan(&cg);   // values fused GPU kernels keep to themselves get no buffer
    }
    LLVMTypeRef t_wd = struct_type(&cg, "TfxWeightDesc",
                                   (LLVMTypeRef[]){ cg.t_ptr, cg.t_i32, cg.t_i32,
                                                    LLVMArrayType2(cg.t_i64, IR_MAX_RANK),
                                                    cg.t_i32, cg.t_f32 }, 6);
    LLVMValueRef *wdescs = NULL;
    unsigned nw = emit_weight_descs(&cg, t_wd, &wdescs);
    LLVMValueRef ws_fn = cg_emit_workspace_fn(&cg, m->funcs[0], "workspace_bytes");
    // --target=cuda: forward launches the kernels of cg_ptx.c; the runtime sizes the
    // device workspace itself, so the descriptor has no workspace_bytes
    bool cuda = o->target == CG_TARGET_CUDA;
    LLVMValueRef fwd_fn = cuda ? cg_cuda_declare_forward(&cg) : cg_emit_forward_fn(&cg, m->funcs[0], "forward");
    CgStepDesc sd;
    cg_step_emit(&cg, cuda, &sd);
    emit_desc(&cg, cuda ? LLVMConstNull(cg.t_ptr) : ws_fn, fwd_fn, wdescs, nw, t_wd, &sd);
    free(wdescs);
    if (cuda && !cg.failed && (status = cg_cuda_define(&cg, o, ws_fn, fwd_fn)) != 0)
        goto done;
    if (cg.failed) {
        status = 1;
        goto done;
    }
    if (!make_target(&cg, o->opt_level, o->cpu)) {
        status = 3;
        goto done;
    }
    if (!verify(&cg) || !optimise(&cg, o)) {
        status = 3;
        goto done;
    }
    if (o->kind == CG_OUT_LLVM) {
        char *s = LLVMPrintModuleToString(cg.mod);
        buf_puts(out, s);
        LLVMDisposeMessage(s);
    } else if (o->kind == CG_OUT_ASM) {
        status = emit_machine(&cg, LLVMAssemblyFile, out) ? 0 : 3;
    } else {
        Buf obj;
        buf_init(&obj);
        status = emit_machine(&cg, LLVMObjectFile, o->kind == CG_OUT_OBJ ? out : &obj) ? 0 : 3;
        if (status == 0 && o->kind == CG_OUT_SO)
            status = link_so(&cg, o, &obj);
        buf_dispose(&obj);
    }
done:
    cg_dispose(&cg);
    return status;
}

/* ---- shared with the GPU back end (cg_ptx.c) ---- */

bool cg_check(CgCpu *cg)
{
    return check_module(cg);
}

bool cg_verify(CgCpu *cg)
{
    return verify(cg);
}

bool cg_optimise(CgCpu *cg, const CgOptions *o)
{
    return optimise(cg, o);
}

bool cg_emit_machine(CgCpu *cg, LLVMCodeGenFileType kind, Buf *out)
{
    return emit_machine(cg, kind, out);
}

void cg_layout_main(CgCpu *cg, LLVMValueRef ws)
{
    Layout lo = { cg, ws, cg_i64(cg, 0), .plan = false };
    layout_region(&lo, cg->m->funcs[0]->body);
}
