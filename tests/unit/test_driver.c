/* test_driver.c - the tfxc command line: options, exit statuses (0 ok, 1 input errors,
 * 2 usage) and what goes to stdout/stderr. Runs the built binary ($TFXC). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tfx_test.h"

typedef struct Run {
    int  status;
    char out[65536];
    char err[8192];
} Run;

/* Runs `$TFXC args` from the source root; captures stdout and stderr (truncated). */
static void run(Run *r, const char *args)
{
    const char *tfxc = getenv("TFXC");
    cr_assert_not_null(tfxc, "TFXC is not set (run through ctest)");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s 2>/tmp/tfxc_test_err.$PPID", tfxc, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(r->out, 1, sizeof r->out - 1, p);
    r->out[n] = '\0';
    while (fread(cmd, 1, sizeof cmd, p) > 0) {
    }
    int st = pclose(p);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char path[64];
    snprintf(path, sizeof path, "/tmp/tfxc_test_err.%d", (int)getpid());
    char *e = tt_slurp(path, NULL);
    snprintf(r->err, sizeof r->err, "%s", e ? e : "");
    free(e);
    remove(path);
}

static Run r;

Test(driver, help_lists_passes_and_exits_0)
{
    run(&r, "--help");
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "usage: tfxc FILE") != NULL);
    cr_expect(strstr(r.out, "simplify") != NULL, "pass list missing:\n%s", r.out);
}

Test(driver, version)
{
    run(&r, "--version");
    cr_expect_eq(r.status, 0);
    cr_expect(strncmp(r.out, "tfxc ", 5) == 0);
}

Test(driver, no_input_is_usage_error)
{
    run(&r, "");
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "tfxc: error: no input file") != NULL, "%s", r.err);
}

Test(driver, unknown_option_is_usage_error)
{
    run(&r, "--frobnicate examples/gpt2.tfx");
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "unknown option: --frobnicate") != NULL, "%s", r.err);
}

Test(driver, bad_emit_kind)
{
    run(&r, "examples/gpt2.tfx --emit=wasm");
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "unknown --emit kind") != NULL, "%s", r.err);
}

Test(driver, bad_dump_after_pass)
{
    run(&r, "examples/gpt2.tfx --dump-after=nonsense");
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "unknown pass for --dump-after") != NULL, "%s", r.err);
}

Test(driver, missing_file_is_input_error)
{
    run(&r, "no/such/file.tfx --emit=ir");
    cr_expect_eq(r.status, 1);
    cr_expect_str_eq(r.err, "tfxc: error: cannot read 'no/such/file.tfx': No such file or directory\n");
}

Test(driver, directory_is_input_error)
{
    run(&r, "examples --emit=ir");
    cr_expect_eq(r.status, 1);
    cr_expect_str_eq(r.err, "tfxc: error: cannot read 'examples': is a directory\n");
}

Test(driver, define_overrides_hyperparameter)
{
    run(&r, "examples/gpt2.tfx --emit=ir --no-locs -Dlayers=2 -Dvocab=100");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "[2] : f32[768]") != NULL, "family count should be 2:\n%.2000s", r.out);
    cr_expect(strstr(r.out, "f32[100, 768]") != NULL);
}

Test(driver, define_of_unknown_hyperparameter)
{
    run(&r, "examples/gpt2.tfx --emit=ir -Dlayerz=2");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "-Dlayerz: model 'gpt2' has no hyperparameter 'layerz'") != NULL, "%s", r.err);
}

Test(driver, define_with_bad_value)
{
    run(&r, "examples/gpt2.tfx --emit=ir -Dlayers=two");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "-Dlayers=two: the value must be an int or a float") != NULL, "%s", r.err);
}

Test(driver, define_without_value)
{
    run(&r, "examples/gpt2.tfx -Dlayers");
    cr_expect_eq(r.status, 2);
}

Test(driver, output_so_is_a_loadable_library)
{
    char so[64];
    snprintf(so, sizeof so, "/tmp/tfxc_driver_%d.so", (int)getpid());
    char args[256];
    snprintf(args, sizeof args, "examples/looped.tfx -Dd=16 -Dheads=2 -Dsteps=2 -o %s", so);
    run(&r, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(h, "%s", dlerror());
    cr_expect_not_null(dlsym(h, "tfx_model_desc"));
    cr_expect_not_null(dlsym(h, "tfx_model_open"));
    dlclose(h);
    remove(so);
}

Test(driver, emit_obj_needs_output_file)
{
    run(&r, "examples/looped.tfx --emit=obj");
    cr_expect_eq(r.status, 2);
}

Test(driver, emit_dot_is_a_digraph)
{
    run(&r, "examples/looped.tfx --emit=dot");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strncmp(r.out, "digraph", 7) == 0, "%.200s", r.out);
}

Test(driver, include_dir_is_searched_first)
{
    run(&r, "examples/looped.tfx --emit=ir -I tests/golden/include");
    cr_expect_eq(r.status, 1, "the shadowing std.nn in tests/golden/include should be picked: %s", r.err);
    cr_expect(strstr(r.err, "tests/golden/include/nn.tfx") != NULL, "%s", r.err);
}

Test(driver, dump_after_all_prints_every_pass)
{
    run(&r, "examples/looped.tfx --dump-after=all --no-locs");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "# tfxc ir after 'lower'") != NULL);
    cr_expect(strstr(r.out, "# tfxc ir after 'inline'") != NULL);
    cr_expect(strstr(r.out, "# tfxc ir after 'simplify'") != NULL);
}

Test(driver, output_file_written)
{
    run(&r, "examples/looped.tfx --emit=ir -o /tmp/tfxc_test_looped.ir");
    cr_expect_eq(r.status, 0, "%s", r.err);
    char *ir = tt_slurp("/tmp/tfxc_test_looped.ir", NULL);
    cr_assert_not_null(ir);
    cr_expect(strstr(ir, "func @main") != NULL);
    free(ir);
    remove("/tmp/tfxc_test_looped.ir");
}

Test(driver, cpu_option_targets_another_machine)
{
    run(&r, "examples/looped.tfx --cpu=x86-64 --emit=asm");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "tfx__forward") != NULL, "no forward function in the assembly");
    cr_expect(strstr(r.out, "zmm") == NULL && strstr(r.out, "ymm") == NULL,
              "baseline x86-64 has no AVX registers");
}

Test(driver, serial_option_leaves_out_the_thread_pool)
{
    run(&r, "--help");
    cr_expect(strstr(r.out, "--serial") != NULL, "--serial is not in --help");
    run(&r, "examples/looped.tfx -O0 --emit=llvm -o /tmp/tfxc_test_par.ll");
    cr_expect_eq(r.status, 0, "%s", r.err);
    char *ll = tt_slurp("/tmp/tfxc_test_par.ll", NULL);
    cr_assert_not_null(ll);
    cr_expect(strstr(ll, "call void @tfx_pool_parallel_for(") != NULL, "no pool call");
    free(ll);
    run(&r, "examples/looped.tfx -O0 --serial --emit=llvm -o /tmp/tfxc_test_par.ll");
    cr_expect_eq(r.status, 0, "%s", r.err);
    ll = tt_slurp("/tmp/tfxc_test_par.ll", NULL);
    cr_assert_not_null(ll);
    cr_expect(strstr(ll, "tfx_pool_parallel_for") == NULL, "--serial code calls the pool");
    free(ll);
    remove("/tmp/tfxc_test_par.ll");
}

/* ---- GPU targets (docs/gpu.md) ---- */

/* Each GPU option error: exit status 2 and exactly this first line on stderr. */
static void expect_usage_error(const char *args, const char *line)
{
    run(&r, args);
    cr_expect_eq(r.status, 2, "%s: status %d", args, r.status);
    cr_expect(strncmp(r.err, line, strlen(line)) == 0 && r.err[strlen(line)] == '\n',
              "%s:\nwant: %s\ngot:  %s", args, line, r.err);
    cr_expect_str_eq(r.out, "", "%s writes nothing to stdout", args);
}

Test(driver, gpu_option_errors)
{
    expect_usage_error("examples/gpt2.tfx --target=ptx --gpu-arch=sm_75",
                       "tfxc: error: unknown --gpu-arch (expected sm_80 or sm_90): sm_75");
    expect_usage_error("examples/gpt2.tfx --target=metal",
                       "tfxc: error: unknown --target (expected cpu, ptx or cuda): metal");
    expect_usage_error("examples/gpt2.tfx --target=ptx --emit=asm",
                       "tfxc: error: --emit=asm is host assembly; with --target=ptx use --emit=ptx");
    expect_usage_error("examples/gpt2.tfx --target=ptx --emit=obj -o /tmp/tfxc_x.o",
                       "tfxc: error: --emit=obj is a host object file; with --target=ptx use "
                       "--emit=ptx");
    expect_usage_error("examples/gpt2.tfx --target=cpu --emit=ptx",
                       "tfxc: error: --emit=ptx needs --target=ptx or --target=cuda");
    expect_usage_error("examples/gpt2.tfx --gpu-arch=sm_90 --emit=llvm",
                       "tfxc: error: --gpu-arch needs --target=ptx or --target=cuda");
    expect_usage_error("examples/gpt2.tfx --target=ptx --serial --emit=ptx",
                       "tfxc: error: --serial is for --target=cpu (GPU kernels never use the "
                       "thread pool)");
    expect_usage_error("examples/gpt2.tfx --target=ptx --cpu=x86-64 --emit=ptx",
                       "tfxc: error: --cpu names a host CPU; with --target=ptx use --gpu-arch");
}

Test(driver, gpu_options_in_help)
{
    run(&r, "--help");
    cr_expect_eq(r.status, 0);
    static const char *const opts[] = { "--emit=ptx", "--target=cpu", "--target=ptx",
                                        "--target=cuda", "--gpu-arch=ARCH" };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        cr_expect(strstr(r.out, opts[i]) != NULL, "%s is not in --help", opts[i]);
}

Test(driver, target_ptx_output_file_is_ptx)
{
    run(&r, "examples/looped.tfx --target=ptx --gpu-arch=sm_90 -o /tmp/tfxc_test_looped.ptx");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "");
    char *ptx = tt_slurp("/tmp/tfxc_test_looped.ptx", NULL);
    cr_assert_not_null(ptx);
    cr_expect(strstr(ptx, ".target sm_90") != NULL);
    cr_expect(strstr(ptx, ".visible .entry") != NULL);
    free(ptx);
    remove("/tmp/tfxc_test_looped.ptx");
    // --emit=ptx alone means --target=ptx and prints to stdout (sm_80 by default)
    run(&r, "examples/looped.tfx --emit=ptx");
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, ".target sm_80") != NULL);
    cr_expect(strncmp(r.out, "// tfxc launch table: ", 22) == 0);
}

Test(driver, target_cuda_output_is_a_model_library)
{
    run(&r, "examples/looped.tfx --target=cuda -o /tmp/tfxc_test_cuda.so");
    cr_expect_eq(r.status, 0, "%s", r.err);
    void *h = dlopen("/tmp/tfxc_test_cuda.so", RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(h, "%s", dlerror());
    cr_expect_not_null(dlsym(h, "tfx_model_forward"));
    cr_expect_not_null(dlsym(h, "tfx_model_desc"));
    dlclose(h);
    remove("/tmp/tfxc_test_cuda.so");
}

/* --memory prints the weight bytes (exact: d*d + 2*d f32 for this model) and a planned
 * workspace that is smaller at -O2 than the unplanned -O0 one; it needs a host .so. */
static uint64_t memory_line(const char *out, const char *key)
{
    const char *p = strstr(out, key);
    cr_assert_not_null(p, "no '%s' in:\n%s", key, out);
    return strtoull(p + strlen(key), NULL, 10);
}

Test(driver, memory_reports_weights_and_planned_workspace)
{
    const char *src = "/tmp/tfxc_driver_mem.tfx";
    FILE *f = fopen(src, "w");
    cr_assert_not_null(f);
    fputs("model m(d = 32) {\n    input x: f32[T, d] where T <= 100\n    param w: f32[d, d]\n"
          "    param b: f32[d]\n    param g: f32[d]\n"
          "    output y = tanh(tanh(x @ w + b) * g + 1.0) * 2.0 - x\n}\n", f);
    fclose(f);
    char so[64], args[256];
    snprintf(so, sizeof so, "/tmp/tfxc_driver_mem_%d.so", (int)getpid());
    uint64_t ws[2];
    for (int opt = 0; opt < 3; opt += 2) {
        snprintf(args, sizeof args, "%s -O%d -o %s --memory", src, opt, so);
        run(&r, args);
        cr_assert_eq(r.status, 0, "%s", r.err);
        cr_expect(strstr(r.out, "T = 100 (upper bound)"), "%s", r.out);
        cr_expect_eq(memory_line(r.out, "weights:"), (32 * 32 + 2 * 32) * 4, "%s", r.out);
        ws[opt / 2] = memory_line(r.out, "workspace:");
    }
    // -O0: x@w, +b, tanh, *g, +1, tanh, *2, -x: 8 buffers of 100x32 f32; -O2: x@w and
    // the fused rest, plus the scalar constants (64 bytes each after alignment)
    cr_expect_geq(ws[0], 8 * 12800, "-O0 workspace %llu", (unsigned long long)ws[0]);
    cr_expect_leq(ws[1], 2 * 12800 + 4 * 64, "-O2 workspace %llu", (unsigned long long)ws[1]);
    remove(so);
    remove(src);
    expect_usage_error("examples/gpt2.tfx --emit=ir --memory",
                       "tfxc: error: --memory needs -o model.so for this host (no --emit, "
                       "--target or --cpu)");
}
