/* compile.c - tfx_compile(): runs the stages in order over one arena and one
 * DiagEngine and stops after the first stage that reported errors. */
#include "compile.h"

#include <string.h>
#include <unistd.h>

#include "codegen/cg.h"
#include "front/parse.h"
#include "front/source.h"
#include "passes/pass.h"

void compile_options_init(CompileOptions *o)
{
    memset(o, 0, sizeof *o);
    o->locs = true;
    o->opt_level = 2;
}

const char *tfx_default_stdlib_dir(void)
{
    if (access(TFX_STDLIB_DIR, F_OK) == 0)
        return TFX_STDLIB_DIR;
    return TFX_INSTALL_STDLIB_DIR;
}

void compile_result_dispose(CompileResult *r)
{
    buf_dispose(&r->out);
    buf_dispose(&r->diags);
}

static bool run_front(const CompileOptions *o, Arena *a, DiagEngine *d, CompileResult *r,
                      IrModule *m)
{
    uint32_t fid;
    if (o->source)
        fid = source_add_string(a, d, o->input, o->source, (uint32_t)strlen(o->source));
    else if (!source_read(a, d, o->input, (SrcSpan){ 0 }, &fid))
        return false;
    AstNode *ast = parse_file(a, d, fid);
    if (d->nerrors)
        return false;
    if (o->emit == TFX_EMIT_AST) {
        ast_print(&r->out, ast);
        return true;
    }
    SemaOptions so = { o->defines, o->ndefines, o->include_dirs, o->ninclude,
                       o->stdlib_dir ? o->stdlib_dir : tfx_default_stdlib_dir() };
    ir_module_init(m, a, "model");
    return sema_lower(a, d, ast, fid, &so, m);
}

static bool run_passes(const CompileOptions *o, DiagEngine *d, CompileResult *r, IrModule *m)
{
    Buf errs;
    buf_init(&errs);
    if (ir_verify(m, &errs) > 0) {
        diag_report(d, DIAG_ERROR, (SrcSpan){ 0 }, "internal error: invalid IR after lowering:\n%s", buf_str(&errs));
        buf_dispose(&errs);
        return false;
    }
    if (o->dump_after && (strcmp(o->dump_after, "all") == 0 || strcmp(o->dump_after, "lower") == 0)) {
        const char *hdr = arena_printf(m->arena, "tfxc ir after 'lower' (0/%d): %s", pass_count, o->input);
        IrPrintOpts po = { .locs = o->locs, .diag = d, .header = hdr };
        ir_print(&r->out, m, &po);
    }
    PassCtx pc = { .opt_level = o->opt_level, .diag = d, .dump_after = o->dump_after,
                   .dump_locs = o->locs, .dump = &r->out, .src_path = o->input,
                   .verify = true, .errs = &errs };
    bool ok = pipeline_run(m, &pc);
    if (!ok)
        diag_report(d, DIAG_ERROR, (SrcSpan){ 0 }, "internal error: a pass produced invalid IR:\n%s", buf_str(&errs));
    buf_dispose(&errs);
    return ok;
}

void tfx_compile(const CompileOptions *o, CompileResult *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->out);
    buf_init(&r->diags);
    Arena a;
    arena_init(&a);
    DiagEngine d;
    diag_init(&d, o->diag_out);
    d.max_errors = 50;
    IrModule m;
    bool ok = run_front(o, &a, &d, r, &m);
    if (ok && o->emit != TFX_EMIT_AST) {
        ok = run_passes(o, &d, r, &m);
        if (!ok)
            r->status = 3;
    }
    if (ok && o->emit == TFX_EMIT_IR) {
        IrPrintOpts po = { .locs = o->locs, .diag = &d,
                           .header = arena_printf(&a, "tfxc ir: %s", o->input) };
        ir_print(&r->out, &m, &po);
    } else if (ok && o->emit == TFX_EMIT_DOT) {
        ir_print_dot(&r->out, &m);
    } else if (ok && o->emit >= TFX_EMIT_LLVM) {
        static const CgOutput kinds[] = { CG_OUT_LLVM, CG_OUT_ASM, CG_OUT_OBJ, CG_OUT_SO, CG_OUT_PTX };
        static const CgTarget targets[] = { CG_TARGET_CPU, CG_TARGET_PTX, CG_TARGET_CUDA };
        CgOptions co = { .kind = kinds[o->emit - TFX_EMIT_LLVM], .opt_level = o->opt_level,
                         .module_name = o->input, .so_path = o->output, .verbose = o->verbose,
                         .cpu = o->cpu, .serial = o->serial, .target = targets[o->target],
                         .gpu_arch = o->gpu_arch };
        // PTX text, and the NVPTX module's LLVM IR for --target=ptx, come from cg_ptx.c
        if (o->target != TFX_TARGET_CPU)   // the GPU back end has no step entry yet
            ir_drop_step(&m, "the GPU targets have no step entry yet");
        bool ptx = o->emit == TFX_EMIT_PTX || (o->target == TFX_TARGET_PTX && o->emit == TFX_EMIT_LLVM);
        r->status = ptx ? cg_ptx_emit(&m, &d, &co, &r->out) : cg_cpu_emit(&m, &d, &co, &r->out);
        ok = r->status == 0;
    }
    if (!ok && r->status == 0)
        r->status = 1;
    r->nerrors = d.nerrors;
    if (!o->diag_out)
        buf_puts(&r->diags, buf_str(&d.buf));
    diag_dispose(&d);
    arena_dispose(&a);
}
