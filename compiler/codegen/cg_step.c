/* cg_step.c - the step entry of a model with @step (passes/decode.c): tfx__step and
 * tfx__step_workspace_bytes, generated from @step exactly as forward is from @main, the
 * cache-slot table of the descriptor, and the lowering of the `cache` op. Called by
 * cg_cpu_emit (cg_step_emit) and cg_lower.c (cg_lower_cache). See docs/codegen.md,
 * "Step entry", and docs/runtime.md, "KV cache". */
#include "cg_int.h"

#include <string.h>

/* TfxKernelArgs with its trailing fields: weights, inputs, outputs, syms, workspace, pool,
 * device, cache (runtime/tfx_abi.h). cg->t_args declares the first six. */
enum { ARGS_SYMS = 3, ARGS_CACHE = 7, ARGS_NFIELDS = 8 };

static LLVMTypeRef step_args_type(CgCpu *cg)
{
    LLVMTypeRef t = LLVMGetTypeByName2(cg->llctx, "TfxKernelArgs.step");
    if (t)
        return t;
    LLVMTypeRef f[ARGS_NFIELDS];
    for (int i = 0; i < ARGS_NFIELDS; i++)
        f[i] = cg->t_ptr;
    t = LLVMStructCreateNamed(cg->llctx, "TfxKernelArgs.step");
    LLVMStructSetBody(t, f, ARGS_NFIELDS, false);
    return t;
}

/* Loads pointer field `field` of the step's TfxKernelArgs. */
static LLVMValueRef args_field(CgCpu *cg, unsigned field, const char *name)
{
    LLVMTypeRef t = step_args_type(cg);
    LLVMValueRef p = LLVMBuildStructGEP2(cg->b, t, cg->args, field, name);
    return LLVMBuildLoad2(cg->b, cg->t_ptr, p, name);
}

/* The number of loop steps a cache op's index operand ranges over (its loop's trips). */
static int64_t index_count(const IrValue *idx)
{
    const IrOp *lp = idx->owner ? idx->owner->parent_op : NULL;
    return lp && dim_is_const(lp->attrs.trips) ? lp->attrs.trips.c : 1;
}

/* cache %x, %l... {range = [P, P + T], slot = s}: member = row-major index over the loop
 * steps; base = cache[s] + member * capacity * row; x's T rows go to rows [P, P + T) of
 * base, and the result's buffer is base itself (rows [0, P + T)). */
void cg_lower_cache(CgCpu *cg, IrOp *op)
{
    IrValue *x = op->operands[0], *y = op->results[0];
    LLVMTypeRef et = cg_elem_type(cg, x->dtype);
    LLVMValueRef flat = cg_i64(cg, 0);
    for (uint32_t l = 1; l < op->nops; l++) {
        LLVMValueRef i = cg_load(cg, op->operands[l], cg_i64(cg, 0));
        i = LLVMBuildSExt(cg->b, i, cg->t_i64, "cache.idx");
        int64_t n = index_count(op->operands[l]);
        cg_check_index(cg, i, cg_i64(cg, n), "cache.member.ok");
        flat = LLVMBuildMul(cg->b, flat, cg_i64(cg, n), "cache.member");
        flat = LLVMBuildAdd(cg->b, flat, i, "cache.member");
    }
    // the capacity follows P in the symbol array (tfx_abi.h, TfxModelDesc.step)
    LLVMValueRef syms = args_field(cg, ARGS_SYMS, "syms");
    LLVMValueRef ci = cg_i64(cg, cg->sym_slot[cg->m->past_sym] + 1);
    LLVMValueRef cp = LLVMBuildInBoundsGEP2(cg->b, cg->t_i64, syms, &ci, 1, "capacity.p");
    LLVMValueRef cap = LLVMBuildLoad2(cg->b, cg->t_i64, cp, "capacity");
    LLVMValueRef tab = args_field(cg, ARGS_CACHE, "cache");
    LLVMValueRef si = cg_i64(cg, op->attrs.slot);
    LLVMValueRef sp = LLVMBuildInBoundsGEP2(cg->b, cg->t_ptr, tab, &si, 1, "slot.p");
    LLVMValueRef slot = LLVMBuildLoad2(cg->b, cg->t_ptr, sp, "slot");
    LLVMValueRef row = cg_i64(cg, 1);   // elements per token row
    for (int k = 1; k < x->shape.rank; k++)
        row = LLVMBuildMul(cg->b, row, cg_dim(cg, x->shape.dims[k]), "cache.row");
    LLVMValueRef per = LLVMBuildMul(cg->b, cap, row, "member.elems");
    LLVMValueRef at = LLVMBuildMul(cg->b, flat, per, "member.at");
    LLVMValueRef base = LLVMBuildInBoundsGEP2(cg->b, et, slot, &at, 1, cg_name(cg, y));
    LLVMValueRef past = LLVMBuildMul(cg->b, cg_dim(cg, op->attrs.start), row, "past.elems");
    LLVMValueRef dst = LLVMBuildInBoundsGEP2(cg->b, et, base, &past, 1, "cache.new");
    LLVMValueRef n = cg_numel(cg, &x->shape);
    cg_copy(cg, dst, cg->buf[x->id], n, et, "cache.store");
    cg->buf[y->id] = base;
}

/* ---- the descriptor's cache table ---- */

typedef struct SlotScan {
    int64_t row_bytes[256];
    int64_t members[256];
    uint32_t n;
    bool     too_many;
} SlotScan;

static void scan_cache_op(IrOp *op, void *ctx)
{
    SlotScan *s = ctx;
    if (op->kind != IR_OP_CACHE)
        return;
    if (op->attrs.slot >= 256) {
        s->too_many = true;
        return;
    }
    const IrValue *x = op->operands[0];
    int64_t row = cg_elem_size(x->dtype), members = 1;
    for (int k = 1; k < x->shape.rank; k++)
        row *= x->shape.dims[k].c;   // constant: the decode pass checked it
    for (uint32_t l = 1; l < op->nops; l++)
        members *= index_count(op->operands[l]);
    s->row_bytes[op->attrs.slot] = row;
    s->members[op->attrs.slot] = members;
    if (op->attrs.slot + 1 > s->n)
        s->n = op->attrs.slot + 1;
}

static LLVMValueRef cache_table(CgCpu *cg, const SlotScan *s)
{
    if (s->n == 0)
        return LLVMConstNull(cg->t_ptr);
    LLVMTypeRef f[2] = { cg->t_i64, cg->t_i64 };
    LLVMTypeRef t = LLVMStructCreateNamed(cg->llctx, "TfxCacheSlotDesc");
    LLVMStructSetBody(t, f, 2, false);
    LLVMValueRef elems[256];
    for (uint32_t i = 0; i < s->n; i++) {
        LLVMValueRef v[2] = { cg_i64(cg, s->row_bytes[i]), cg_i64(cg, s->members[i]) };
        elems[i] = LLVMConstNamedStruct(t, v, 2);
    }
    LLVMValueRef init = LLVMConstArray2(t, elems, s->n);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), "cache.slots");
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, true);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    return g;
}

/* The number of symbols the descriptor lists (P, last in the module, is not one). */
static int32_t desc_syms(const CgCpu *cg)
{
    int32_t n = 0;
    for (uint32_t i = 0; i < cg->m->nsyms; i++)
        n += cg->sym_slot[i] >= 0;
    return n;
}

void cg_step_emit(CgCpu *cg, bool cuda, CgStepDesc *sd)
{
    IrModule *m = cg->m;
    memset(sd, 0, sizeof *sd);
    sd->step_fn = sd->ws_fn = sd->cache = LLVMConstNull(cg->t_ptr);
    sd->step_sym = -1;
    sd->no_step = m->no_step ? m->no_step : "the decode pass did not run";
    if (!m->step || cg->failed)
        return;
    if (cuda) {   // tfx_compile drops @step for the GPU targets; this is the safety net
        sd->no_step = "the GPU targets have no step entry yet";
        return;
    }
    SlotScan scan = { .n = 0 };
    ir_region_walk(m->step->body, scan_cache_op, &scan);
    if (scan.too_many) {
        sd->no_step = "the model needs more than 256 cache slots";
        return;
    }
    // P is read from syms[nsyms] while the step's functions are built (see load_syms)
    int32_t n = desc_syms(cg);
    cg->sym_slot[m->past_sym] = n;
    ir_names_dispose(&cg->names);
    ir_names_init(&cg->names, m, m->step);
    sd->ws_fn = cg_emit_workspace_fn(cg, m->step, "step_workspace_bytes");
    sd->step_fn = cg_emit_forward_fn(cg, m->step, "step");
    ir_names_dispose(&cg->names);
    ir_names_init(&cg->names, m, m->funcs[0]);
    cg->sym_slot[m->past_sym] = -1;
    sd->ncache = scan.n;
    sd->cache = cache_table(cg, &scan);
    sd->no_step = "";
    // the token symbol: the one the inputs name (the decode pass checked there is one)
    for (uint32_t i = 0; i < m->ninputs && sd->step_sym < 0; i++) {
        const Shape *s = &m->inputs[i].value->shape;
        for (int k = 0; k < s->rank && sd->step_sym < 0; k++)
            if (s->dims[k].nterms == 1)
                sd->step_sym = cg->sym_slot[s->dims[k].sym[0]];
    }
}
