/* driver.c - main() of tfxc: argv -> CompileOptions -> tfx_compile(); nothing else.
 * Exit status: 0 success, 1 errors in the input, 2 usage errors, 3 internal error. */
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "passes/pass.h"
#include "tfx_abi.h"

enum { MAX_DEFINES = 256, MAX_INCLUDES = 64 };

static void usage(FILE *out)
{
    fputs("usage: tfxc FILE [-o OUT] [--emit=ast|ir|dot|llvm|asm|obj|ptx] [--dump-after=PASS|all]\n"
          "            [--target=cpu|ptx|cuda] [--gpu-arch=sm_80|sm_90]\n"
          "            [-Dname=value] [-I dir] [-O0|-O1|-O2|-O3] [--no-locs] [--help] [--version]\n"
          "\n"
          "Compiles a .tfx transformer model.\n"
          "\n"
          "  -o OUT             write the output to OUT instead of standard output; with no\n"
          "                     --emit, OUT is a shared library for the host CPU (model.so)\n"
          "  --emit=ast         print the syntax tree\n"
          "  --emit=ir          print the graph IR after the pass pipeline\n"
          "  --emit=dot         draw the graph IR for Graphviz (dot -Tsvg)\n"
          "  --emit=llvm        print the LLVM IR of the CPU backend (after -O1..3 passes)\n"
          "  --emit=asm         print host assembly\n"
          "  --emit=obj         write a host object file (needs -o)\n"
          "  --emit=ptx         print the PTX of the GPU kernels (implies --target=ptx)\n"
          "  --target=cpu       generate for the host CPU (default)\n"
          "  --target=ptx       generate NVPTX kernels: -o OUT writes PTX text, --emit=llvm\n"
          "                     prints their LLVM IR\n"
          "  --target=cuda      -o model.so: a host library with the same tfx_ API that runs\n"
          "                     the kernels through the CUDA driver (libcuda.so.1, at run time)\n"
          "  --gpu-arch=ARCH    GPU architecture for ptx and cuda: sm_80 (default) or sm_90\n"
          "  --verbose          print the LLVM pass pipeline and the link command\n"
          "  --memory           with -o model.so: print the weight bytes and the planned\n"
          "                     workspace bytes at the symbols' upper bounds\n"
          "  --cpu=NAME         generate code for LLVM CPU NAME (x86-64, x86-64-v3, ...)\n"
          "                     instead of this host\n"
          "  --serial           generate code that never uses the thread pool (matmul,\n"
          "                     softmax and the norms otherwise run over rows in parallel)\n"
          "  --dump-after=PASS  print the IR after PASS ('lower' for sema's output, or 'all')\n"
          "  -Dname=value       override a model hyperparameter\n"
          "  -I dir             search dir for `use` modules (before the standard library)\n"
          "  -O0 .. -O3         optimisation level (default -O2; -O0 runs only required passes)\n"
          "  --no-locs          leave source locations out of IR dumps\n"
          "  --stdlib=DIR       use DIR as the standard library\n"
          "\n"
          "Passes, in order:\n"
          "  lower              (sema) typed AST -> graph IR\n", out);
    for (int i = 0; i < pass_count; i++)
        fprintf(out, "  %-18s (-O%d) %s\n", pass_table[i].name, pass_table[i].min_opt, pass_table[i].summary);
    fputs("\nWith no --emit and no -o the file is only checked; `-o model.so` links a shared\n"
          "library with the tfx runtime using the C compiler `cc` (or $CC); with --target=ptx,\n"
          "`-o model.ptx` writes PTX text. See docs/gpu.md for the GPU targets.\n"
          "Exit status: 0 success, 1 errors in the input, 2 usage error, 3 internal error.\n", out);
}

static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "tfxc: error: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    fputs("usage: tfxc FILE [-o OUT] [--emit=ast|ir|dot|llvm|asm|obj|ptx] [options]; see tfxc --help\n", stderr);
    return 2;
}

typedef struct Args {
    CompileOptions co;
    const char    *output;
    bool           has_target;   /* --target was given */
    bool           memory;       /* --memory: report weight and workspace bytes */
    SemaDefine     defines[MAX_DEFINES];
    const char    *includes[MAX_INCLUDES];
} Args;

static int parse_emit(Args *a, const char *v)
{
    if (strcmp(v, "ast") == 0) a->co.emit = TFX_EMIT_AST;
    else if (strcmp(v, "ir") == 0) a->co.emit = TFX_EMIT_IR;
    else if (strcmp(v, "dot") == 0) a->co.emit = TFX_EMIT_DOT;
    else if (strcmp(v, "llvm") == 0) a->co.emit = TFX_EMIT_LLVM;
    else if (strcmp(v, "asm") == 0) a->co.emit = TFX_EMIT_ASM;
    else if (strcmp(v, "obj") == 0) a->co.emit = TFX_EMIT_OBJ;
    else if (strcmp(v, "ptx") == 0) a->co.emit = TFX_EMIT_PTX;
    else return usage_error("unknown --emit kind (expected ast, ir, dot, llvm, asm, obj or ptx)", v);
    return 0;
}

static int parse_target(Args *a, const char *v)
{
    if (strcmp(v, "cpu") == 0) a->co.target = TFX_TARGET_CPU;
    else if (strcmp(v, "ptx") == 0) a->co.target = TFX_TARGET_PTX;
    else if (strcmp(v, "cuda") == 0) a->co.target = TFX_TARGET_CUDA;
    else return usage_error("unknown --target (expected cpu, ptx or cuda)", v);
    a->has_target = true;
    return 0;
}

static int parse_gpu_arch(Args *a, const char *v)
{
    if (strcmp(v, "sm_80") != 0 && strcmp(v, "sm_90") != 0)
        return usage_error("unknown --gpu-arch (expected sm_80 or sm_90)", v);
    a->co.gpu_arch = v;
    return 0;
}

/* Settles --target against --emit, -o and the other options; returns -1 or an exit status. */
static int check_target(Args *a)
{
    CompileOptions *co = &a->co;
    if (co->emit == TFX_EMIT_PTX && co->target == TFX_TARGET_CPU) {
        if (a->has_target)
            return usage_error("--emit=ptx needs --target=ptx or --target=cuda", NULL);
        co->target = TFX_TARGET_PTX;
    }
    bool gpu = co->target != TFX_TARGET_CPU;
    if (co->gpu_arch && !gpu)
        return usage_error("--gpu-arch needs --target=ptx or --target=cuda", NULL);
    if (gpu && co->serial)
        return usage_error("--serial is for --target=cpu (GPU kernels never use the thread pool)",
                           NULL);
    if (co->target != TFX_TARGET_PTX)
        return -1;
    if (co->emit == TFX_EMIT_ASM || co->emit == TFX_EMIT_OBJ)
        return usage_error(co->emit == TFX_EMIT_ASM
                           ? "--emit=asm is host assembly; with --target=ptx use --emit=ptx"
                           : "--emit=obj is a host object file; with --target=ptx use --emit=ptx",
                           NULL);
    if (co->cpu)
        return usage_error("--cpu names a host CPU; with --target=ptx use --gpu-arch", NULL);
    if (a->output && co->emit == TFX_EMIT_CHECK && !co->dump_after)
        co->emit = TFX_EMIT_PTX;   // -o model.ptx
    return -1;
}

static int parse_define(Args *a, const char *v)
{
    const char *eq = strchr(v, '=');
    if (!eq || eq == v || !eq[1])
        return usage_error("-D needs name=value", v);
    if (a->co.ndefines == MAX_DEFINES)
        return usage_error("too many -D options", NULL);
    char *name = strndup(v, (size_t)(eq - v));
    if (!name)
        return usage_error("out of memory", NULL);
    a->defines[a->co.ndefines++] = (SemaDefine){ name, eq + 1 };
    return 0;
}

/* Returns -1 to continue, else an exit status. */
static int parse_one(Args *a, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(arg, "--version") == 0) {
        printf("tfxc %s\n", TFX_VERSION);
        return 0;
    }
    if (strcmp(arg, "-o") == 0 || strcmp(arg, "-I") == 0) {
        if (*i + 1 >= argc)
            return usage_error("missing argument after", arg);
        const char *v = argv[++*i];
        if (arg[1] == 'o')
            a->output = v;
        else if (a->co.ninclude < MAX_INCLUDES)
            a->includes[a->co.ninclude++] = v;
        else
            return usage_error("too many -I options", NULL);
        return -1;
    }
    if (strncmp(arg, "-I", 2) == 0 && arg[2]) {
        if (a->co.ninclude == MAX_INCLUDES)
            return usage_error("too many -I options", NULL);
        a->includes[a->co.ninclude++] = arg + 2;
        return -1;
    }
    if (strncmp(arg, "--emit=", 7) == 0)
        return parse_emit(a, arg + 7) ? 2 : -1;
    if (strncmp(arg, "--dump-after=", 13) == 0) {
        const char *p = arg + 13;
        if (!pipeline_knows(p) && strcmp(p, "lower") != 0)
            return usage_error("unknown pass for --dump-after (see tfxc --help)", p);
        a->co.dump_after = p;
        return -1;
    }
    if (strncmp(arg, "--stdlib=", 9) == 0) {
        a->co.stdlib_dir = arg + 9;
        return -1;
    }
    if (strncmp(arg, "--target=", 9) == 0)
        return parse_target(a, arg + 9) ? 2 : -1;
    if (strncmp(arg, "--gpu-arch=", 11) == 0)
        return parse_gpu_arch(a, arg + 11) ? 2 : -1;
    if (strncmp(arg, "--cpu=", 6) == 0 && arg[6]) {
        a->co.cpu = arg + 6;
        return -1;
    }
    if (strcmp(arg, "--verbose") == 0) {
        a->co.verbose = true;
        return -1;
    }
    if (strcmp(arg, "--memory") == 0) {
        a->memory = true;
        return -1;
    }
    if (strcmp(arg, "--serial") == 0) {
        a->co.serial = true;
        return -1;
    }
    if (strcmp(arg, "--no-locs") == 0) {
        a->co.locs = false;
        return -1;
    }
    if (strncmp(arg, "-D", 2) == 0)
        return parse_define(a, arg + 2) ? 2 : -1;
    if (arg[0] == '-' && arg[1] == 'O' && arg[2] >= '0' && arg[2] <= '3' && !arg[3]) {
        a->co.opt_level = arg[2] - '0';
        return -1;
    }
    if (arg[0] == '-' && arg[1])
        return usage_error("unknown option", arg);
    if (a->co.input)
        return usage_error("more than one input file", arg);
    a->co.input = arg;
    return -1;
}

static int write_output(const char *path, const Buf *out)
{
    FILE *f = path ? fopen(path, "wb") : stdout;
    if (!f) {
        fprintf(stderr, "tfxc: error: cannot write '%s'\n", path);
        return 1;
    }
    size_t n = out->len;
    bool ok = (n == 0 || fwrite(out->data, 1, n, f) == n);
    ok = (path ? fclose(f) == 0 : fflush(f) == 0) && ok;
    if (!ok) {
        fprintf(stderr, "tfxc: error: cannot write '%s'\n", path ? path : "<stdout>");
        return 1;
    }
    return 0;
}

/* --memory: opens the model.so just written and prints its weight bytes and the
 * workspace its plan needs with every symbol at its upper bound (1 when it has none).
 * Only the descriptor's tables and workspace_bytes run: no model code. */
static int report_memory(const char *so)
{
    void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    const TfxModelDesc *(*desc)(void) = NULL;
    if (h)
        *(void **)&desc = dlsym(h, "tfx_model_desc");
    if (!desc) {
        fprintf(stderr, "tfxc: error: --memory: cannot open '%s': %s\n", so, dlerror());
        if (h)
            dlclose(h);
        return 1;
    }
    const TfxModelDesc *d = desc();
    int64_t syms[16] = { 0 };
    uint64_t wbytes = 0;
    printf("%s: model '%s'\n", so, d->name);
    for (uint32_t i = 0; i < d->nsyms && i < 16; i++) {
        syms[i] = d->syms[i].max > 0 ? d->syms[i].max : 1;
        printf("  %s = %" PRId64 "%s\n", d->syms[i].name, syms[i],
               d->syms[i].max > 0 ? " (upper bound)" : " (no upper bound: 1 used)");
    }
    for (uint32_t i = 0; i < d->nweights; i++) {
        const TfxWeightDesc *w = &d->weights[i];
        uint64_t n = w->dtype == TFX_F16 || w->dtype == TFX_BF16 ? 2 : 4;
        for (int j = 0; j < w->rank; j++)
            n *= (uint64_t)w->dims[j];
        wbytes += n;
    }
    uint64_t ws = d->workspace_bytes && d->nsyms <= 16 ? d->workspace_bytes(syms) : 0;
    printf("  weights:   %" PRIu64 " bytes (%.1f MiB)\n", wbytes, (double)wbytes / 1048576.0);
    printf("  workspace: %" PRIu64 " bytes (%.1f MiB)\n", ws, (double)ws / 1048576.0);
    dlclose(h);
    return 0;
}

static void free_defines(Args *a)
{
    for (uint32_t i = 0; i < a->co.ndefines; i++)
        free((char *)a->defines[i].name);
}

int main(int argc, char **argv)
{
    static Args a;
    compile_options_init(&a.co);
    for (int i = 1; i < argc; i++) {
        int st = parse_one(&a, argc, argv, &i);
        if (st >= 0) {
            free_defines(&a);
            return st;
        }
    }
    if (!a.co.input) {
        free_defines(&a);
        return usage_error("no input file", NULL);
    }
    int st = check_target(&a);
    if (st >= 0) {
        free_defines(&a);
        return st;
    }
    if (a.output && a.co.emit == TFX_EMIT_CHECK && !a.co.dump_after) {
        a.co.emit = TFX_EMIT_SO;
        a.co.output = a.output;
    }
    if (a.memory && (a.co.emit != TFX_EMIT_SO || a.co.target != TFX_TARGET_CPU || a.co.cpu)) {
        free_defines(&a);
        return usage_error("--memory needs -o model.so for this host (no --emit, --target or --cpu)",
                           NULL);
    }
    if (a.co.emit == TFX_EMIT_OBJ && !a.output) {
        free_defines(&a);
        return usage_error("--emit=obj writes a binary file: give -o FILE", NULL);
    }
    a.co.defines = a.defines;
    a.co.include_dirs = a.includes;
    a.co.diag_out = stderr;
    CompileResult r;
    tfx_compile(&a.co, &r);
    int status = r.status;
    if (status == 0 && a.co.emit != TFX_EMIT_SO)
        status = write_output(a.output, &r.out);
    else if (status == 0 && a.memory)
        status = report_memory(a.co.output);
    compile_result_dispose(&r);
    free_defines(&a);
    return status;
}
