/* test_tfxrun.c - the tfxrun command on a hand-written model.so (tests/data/fake_lm.c,
 * whose greedy continuation of token t is t+1 mod 4): token and prompt input, greedy and
 * seeded sampling, --save, and each error path with its status and exit code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "tfx_test.h"

typedef struct Run {
    int  status;
    char out[8192];
    char err[8192];
} Run;

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/tfxrun_test.%d", (int)getpid());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    cr_assert_eq(system(cmd), 0);
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Writes a safetensors file holding `bias` [4] f32 (or nothing when bias is NULL),
 * truncated to `keep` bytes when keep > 0. */
static void write_weights(const char *name, const float *bias, long keep)
{
    char path[128], json[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int n = bias ? snprintf(json, sizeof json,
                            "{\"bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}")
                 : snprintf(json, sizeof json, "{}");
    while (n % 8)
        json[n++] = ' ';
    unsigned char buf[256];
    unsigned long long hl = (unsigned long long)n;
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(hl >> (8 * i));
    memcpy(buf + 8, json, (size_t)n);
    size_t len = 8 + (size_t)n;
    if (bias) {
        memcpy(buf + len, bias, 16);
        len += 16;
    }
    if (keep > 0 && (size_t)keep < len)
        len = (size_t)keep;
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static void run(Run *r, const char *args)
{
    const char *tfxrun = getenv("TFXRUN"), *so = getenv("FAKE_LM");
    cr_assert(tfxrun && so, "TFXRUN and FAKE_LM must be set (run through ctest)");
    char cmd[4096], errpath[128];
    snprintf(errpath, sizeof errpath, "%s/stderr", dir);
    snprintf(cmd, sizeof cmd, "cd %s && %s %s %s 2>%s", dir, tfxrun, so, args, errpath);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(r->out, 1, sizeof r->out - 1, p);
    r->out[n] = '\0';
    int st = pclose(p);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char *e = tt_slurp(errpath, NULL);
    snprintf(r->err, sizeof r->err, "%s", e ? e : "");
    free(e);
}

static const float zero_bias[4] = { 0, 0, 0, 0 };
static Run r;

TestSuite(tfxrun, .init = make_dir, .fini = remove_dir);

Test(tfxrun, greedy_generation_follows_the_model)
{
    write_weights("w.safetensors", zero_bias, 0);
    run(&r, "--weights w.safetensors --tokens \"1\" --generate 5");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, " 2 3 0 1 2\n");
}

Test(tfxrun, forward_prints_the_output_shape)
{
    write_weights("w.safetensors", zero_bias, 0);
    run(&r, "--weights w.safetensors --tokens \"0 1 2\" --print");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, "logits: [3, 4] 0 1 0 0 0 0 1 0 0 0 0 1\n");
}

Test(tfxrun, weights_are_applied)
{
    const float bias[4] = { 5, 0, 0, 0 };   /* token 0 always wins */
    write_weights("w.safetensors", bias, 0);
    run(&r, "--weights w.safetensors --tokens \"2\" --generate 3");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, " 0 0 0\n");
}

Test(tfxrun, seeded_sampling_is_reproducible)
{
    write_weights("w.safetensors", zero_bias, 0);
    run(&r, "--weights w.safetensors --tokens \"1\" --generate 12 --temperature 2 --seed 7");
    cr_assert_eq(r.status, 0, "%s", r.err);
    char first[8192];
    strcpy(first, r.out);
    run(&r, "--weights w.safetensors --tokens \"1\" --generate 12 --temperature 2 --seed 7");
    cr_expect_str_eq(r.out, first);
    run(&r, "--weights w.safetensors --tokens \"1\" --generate 12 --temperature 2 --seed 8");
    cr_expect(strcmp(r.out, first) != 0, "another seed gave the same 12 samples: %s", first);
}

Test(tfxrun, top_k_1_is_greedy)
{
    write_weights("w.safetensors", zero_bias, 0);
    run(&r, "--weights w.safetensors --tokens \"1\" --generate 4 --temperature 5 --top-k 1");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, " 2 3 0 1\n");
}

Test(tfxrun, save_writes_npy)
{
    write_weights("w.safetensors", zero_bias, 0);
    run(&r, "--weights w.safetensors --tokens \"3\" --save out.npy");
    cr_assert_eq(r.status, 0, "%s", r.err);
    char path[128];
    snprintf(path, sizeof path, "%s/out.npy", dir);
    size_t len;
    char *npy = tt_slurp(path, &len);
    cr_assert_not_null(npy);
    size_t data = 10 + ((unsigned char)npy[8] | (size_t)(unsigned char)npy[9] << 8);
    cr_expect_eq(data % 64, 0, "the data starts on a 64-byte boundary");
    cr_expect_eq(len, data + 16, "then 4 floats");
    cr_expect(strstr(npy + 10, "'shape': (1, 4)") != NULL, "%.60s", npy + 10);
    float v[4];
    memcpy(v, npy + data, 16);
    cr_expect(v[0] == 1.0f && v[1] == 0.0f && v[2] == 0.0f && v[3] == 0.0f);
    free(npy);
}

Test(tfxrun, context_bound_stops_generation)
{
    write_weights("w.safetensors", zero_bias, 0);
    run(&r, "--weights w.safetensors --tokens \"0 1 2 3 0 1 2 3 0 1 2 3 0 1\" --generate 5");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, " 2 3\n");
    cr_expect(strstr(r.err, "the context is full (16 tokens)") != NULL, "%s", r.err);
}

Test(tfxrun, slide_keeps_generating_past_the_context)
{
    write_weights("w.safetensors", zero_bias, 0);
    run(&r, "--weights w.safetensors --tokens \"0 1 2 3 0 1 2 3 0 1 2 3 0 1\" --generate 6 --slide");
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_expect_str_eq(r.out, " 2 3 0 1 2 3\n");
}

Test(tfxrun, too_many_tokens_is_a_dim_error)
{
    write_weights("w.safetensors", zero_bias, 0);
    run(&r, "--weights w.safetensors --tokens \"0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\"");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "tfxrun: error: TFX_ERR_DIM") != NULL, "%s", r.err);
}

Test(tfxrun, missing_weight)
{
    write_weights("empty.safetensors", NULL, 0);
    run(&r, "--weights empty.safetensors --tokens \"1\"");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "tfxrun: error: TFX_ERR_MISSING_WEIGHT") != NULL, "%s", r.err);
    cr_expect(strstr(r.err, "bias") != NULL, "%s", r.err);
}

Test(tfxrun, truncated_weights)
{
    write_weights("cut.safetensors", zero_bias, 70);
    run(&r, "--weights cut.safetensors --tokens \"1\"");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "TFX_ERR_TRUNCATED") != NULL, "%s", r.err);
}

Test(tfxrun, missing_weights_file)
{
    run(&r, "--weights nowhere.safetensors --tokens \"1\"");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "TFX_ERR_IO") != NULL, "%s", r.err);
}

Test(tfxrun, token_out_of_range_fails_in_the_kernel)
{
    write_weights("w.safetensors", zero_bias, 0);
    run(&r, "--weights w.safetensors --tokens \"9\"");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "TFX_ERR_KERNEL") != NULL, "%s", r.err);
}

Test(tfxrun, bad_token_text)
{
    write_weights("w.safetensors", zero_bias, 0);
    run(&r, "--weights w.safetensors --tokens \"1 x\"");
    cr_expect_eq(r.status, 1);
    cr_expect(strstr(r.err, "bad token id near 'x'") != NULL, "%s", r.err);
}

Test(tfxrun, usage_errors_exit_2)
{
    run(&r, "--tokens \"1\"");
    cr_expect_eq(r.status, 2, "no --weights");
    run(&r, "--weights w.safetensors --frobnicate");
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "unknown option or missing value: --frobnicate") != NULL, "%s", r.err);
}

Test(tfxrun, not_a_model)
{
    const char *tfxrun = getenv("TFXRUN");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s /etc/hostname --weights x 2>/dev/null", tfxrun);
    int st = system(cmd);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 1);
}
