/* cg_common.c - small builders every op lowering uses: constants, symbolic dims
 * evaluated from the syms array, counted loops and loop nests (counters in allocas, so
 * -O0 code is obviously correct and mem2reg cleans it up at -O1+), row-major element
 * offsets with broadcasting, element loads and stores, intrinsics and libm calls. */
#include "cg_int.h"

#include <stdio.h>
#include <string.h>

LLVMValueRef cg_i64(CgCpu *cg, int64_t v)
{
    return LLVMConstInt(cg->t_i64, (unsigned long long)v, true);
}

LLVMValueRef cg_f32c(CgCpu *cg, double v)
{
    return LLVMConstReal(cg->t_f32, v);
}

/* f32 and i32 are the only element types the CPU backend computes in. */
LLVMTypeRef cg_elem_type(CgCpu *cg, DType t)
{
    return t == DT_I32 ? cg->t_i32 : cg->t_f32;
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

/* Opens `for (i = 0; i < n; i++) {` and leaves the builder in the body; l->i is the
 * counter's value there. */
void cg_for_begin(CgCpu *cg, CgFor *l, LLVMValueRef n, const char *name)
{
    char nm[96];
    snprintf(nm, sizeof nm, "%s.i", name);
    l->var = cg_alloca(cg, cg->t_i64, nm);
    LLVMBuildStore(cg->b, cg_i64(cg, 0), l->var);
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
    LLVMValueRef more = LLVMBuildICmp(cg->b, LLVMIntSLT, l->i, n, "more");
    LLVMBuildCondBr(cg->b, more, body, l->exit);
    LLVMPositionBuilderAtEnd(cg->b, body);
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
    LLVMTypeRef et = cg_elem_type(cg, v->dtype);
    LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, et, cg->buf[v->id], &off, 1, "p");
    return LLVMBuildLoad2(cg->b, et, p, cg_name(cg, v));
}

void cg_store(CgCpu *cg, const IrValue *v, LLVMValueRef off, LLVMValueRef x)
{
    LLVMTypeRef et = cg_elem_type(cg, v->dtype);
    LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, et, cg->buf[v->id], &off, 1, "p");
    LLVMBuildStore(cg->b, x, p);
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
LLVMValueRef cg_call_intrinsic(CgCpu *cg, const char *name, LLVMValueRef *args, unsigned nargs,
                               const char *vname)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef ft = LLVMIntrinsicGetType(cg->llctx, id, &cg->t_f32, 1);
    LLVMValueRef f = LLVMGetIntrinsicDeclaration(cg->mod, id, &cg->t_f32, 1);
    return LLVMBuildCall2(cg->b, ft, f, args, nargs, vname);
}

/* Calls float fname(float) from libm (erff, tanhf), declaring it on first use. */
LLVMValueRef cg_call_libm(CgCpu *cg, const char *fname, LLVMValueRef x, const char *vname)
{
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
