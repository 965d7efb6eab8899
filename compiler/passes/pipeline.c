/* pipeline.c - the one table that orders the passes, and the loop that runs them:
 * skips passes above the optimisation level, appends --dump-after sections to
 * pc->dump and runs ir_verify() after every pass when asked (tfx_compile() verifies
 * sema's output before calling pipeline_run()). Called between sema_lower() and codegen. */
#include "pass.h"

#include <string.h>

const PassInfo pass_table[] = {
    { "inline",   pass_inline,   0, "replace block calls by their bodies; drop unused funcs" },
    { "simplify", pass_simplify, 1, "fold constants, apply identities, CSE, delete dead ops" },
    { "decode",   pass_decode,   0, "build @step (prefill and decode with a KV cache) when causal" },
};
const int pass_count = (int)(sizeof pass_table / sizeof pass_table[0]);

/* Whether --dump-after/--disable-pass may name it. */
bool pipeline_knows(const char *name)
{
    if (strcmp(name, "all") == 0)
        return true;
    for (int i = 0; i < pass_count; i++)
        if (strcmp(pass_table[i].name, name) == 0)
            return true;
    return false;
}

static bool wants_dump(const PassCtx *pc, const char *pass)
{
    return pc->dump && pc->dump_after &&
           (strcmp(pc->dump_after, "all") == 0 || strcmp(pc->dump_after, pass) == 0);
}

/* Appends "# tfxc ir after 'NAME' (i/n): SRC_PATH" and the module. */
static void dump_after(const IrModule *m, const PassCtx *pc, const char *pass, int i, int n)
{
    Buf header;
    buf_init(&header);
    buf_printf(&header, "tfxc ir after '%s' (%d/%d)", pass, i, n);
    if (pc->src_path)
        buf_printf(&header, ": %s", pc->src_path);
    IrPrintOpts o = { .locs = pc->dump_locs, .diag = pc->diag, .header = buf_str(&header) };
    if (pc->dump->len > 0)
        buf_putc(pc->dump, '\n');
    ir_print(pc->dump, m, &o);
    buf_dispose(&header);
}

/* Runs the verifier; on failure writes "ir verification failed WHEN:" and its lines to
 * pc->errs and returns false. */
static bool verify(const IrModule *m, const PassCtx *pc, const char *when)
{
    Buf lines;
    buf_init(&lines);
    int n = ir_verify(m, &lines);
    if (n > 0 && pc->errs)
        buf_printf(pc->errs, "ir verification failed %s:\n%s", when, buf_str(&lines));
    buf_dispose(&lines);
    return n == 0;
}

/* Runs each pass at or below the opt level in table order; dumps and verifies after
 * each. Returns false, with the verifier's lines in pc->errs, on the first failure. */
bool pipeline_run(IrModule *m, PassCtx *pc)
{
    int n = 0;
    for (int i = 0; i < pass_count; i++)
        n += pc->opt_level >= pass_table[i].min_opt;
    for (int i = 0, k = 0; i < pass_count; i++) {
        const PassInfo *p = &pass_table[i];
        if (pc->opt_level < p->min_opt)
            continue;
        k++;
        p->run(m, pc);
        if (wants_dump(pc, p->name))
            dump_after(m, pc, p->name, k, n);
        if (pc->verify) {
            Buf when;
            buf_init(&when);
            buf_printf(&when, "after pass '%s'", p->name);
            bool ok = verify(m, pc, buf_str(&when));
            buf_dispose(&when);
            if (!ok)
                return false;
        }
    }
    return true;
}
