/* bench_gemm.c - times one GEMM y[M,N] = x[M,K] @ w[K,N] (f32, row-major) either through
 * a tfxc model.so (bench/models/gemm.tfx compiled at these sizes, dlopen'ed and run with
 * tfx_model_forward) or through OpenBLAS's cblas_sgemm, for bench/bench.py.
 *
 *   bench_gemm tfxc GEMM.so M N K THREADS [REPS [CAP_SECONDS]]
 *   bench_gemm openblas M N K THREADS [REPS [CAP_SECONDS]]
 *
 * Same seeded inputs for both. One untimed warm-up, then REPS timed runs (fewer once
 * CAP_SECONDS are spent). Checks 64 sampled entries against a double-precision dot
 * product and prints one line:
 *   RESULT impl=.. M=.. N=.. K=.. threads=.. median_ms=.. gflops=.. best_ms=.. cpu_best_ms=..
 *          max_rel_err=..
 * gflops is at the median; best_ms, the fastest run, is the steadier figure on a machine
 * that other jobs load (they only ever slow a run down); cpu_best_ms is the least process
 * CPU time of a run (all threads; OpenBLAS's threads may spin, ours sleep). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "tfx_dl.h"

#define MAXREPS 1000

void openblas_set_num_threads(int num_threads);   // OpenBLAS extension (not in cblas.h everywhere)

/* Largest |y - ref| / (|ref| + 1e-3) over 64 sampled entries. */
static double check(const float *x, const float *w, const float *y, int64_t M, int64_t N,
                    int64_t K)
{
    unsigned long long s = 99;
    double worst = 0;
    for (int t = 0; t < 64; t++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        int64_t i = (int64_t)((s >> 33) % (unsigned long long)M);
        int64_t j = (int64_t)((s >> 13) % (unsigned long long)N);
        double ref = 0;
        for (int64_t k = 0; k < K; k++)
            ref += (double)x[i * K + k] * (double)w[k * N + j];
        double e = fabs((double)y[i * N + j] - ref) / (fabs(ref) + 1e-3);
        worst = e > worst ? e : worst;
    }
    return worst;
}

int main(int argc, char **argv)
{
    int is_tfxc = argc > 1 && !strcmp(argv[1], "tfxc");
    int a0 = is_tfxc ? 3 : 2;   // index of M
    if (argc < a0 + 4 || (!is_tfxc && strcmp(argv[1], "openblas"))) {
        fprintf(stderr, "usage: bench_gemm tfxc GEMM.so M N K THREADS [REPS [CAP]]\n"
                        "       bench_gemm openblas M N K THREADS [REPS [CAP]]\n");
        return 2;
    }
    int64_t M = atoll(argv[a0]), N = atoll(argv[a0 + 1]), K = atoll(argv[a0 + 2]);
    int threads = atoi(argv[a0 + 3]);
    int reps = argc > a0 + 4 ? atoi(argv[a0 + 4]) : 10;
    double cap = argc > a0 + 5 ? atof(argv[a0 + 5]) : 30.0;
    if (M < 1 || N < 1 || K < 1 || threads < 1 || reps < 1 || reps > MAXREPS)
        return 2;

    float *x = malloc((size_t)(M * K) * 4);   /* [M, K] */
    float *w = malloc((size_t)(K * N) * 4);   /* [K, N] */
    float *y = calloc((size_t)(M * N), 4);    /* [M, N] */
    if (!x || !w || !y)
        return 1;
    unsigned long long seed = 1;
    for (int64_t i = 0; i < M * K; i++)
        x[i] = bench_rand(&seed);
    for (int64_t i = 0; i < K * N; i++)
        w[i] = bench_rand(&seed);

    BenchApi api;
    tfx_model *m = NULL;
    tfx_error err;
    int64_t shapes[1][6] = { { M, K } };
    const void *inputs[1] = { x };
    void *outputs[1] = { y };
    if (is_tfxc) {
        if (bench_api_load(&api, argv[2]) != 0)
            return 1;
        tfx_options opt = { .nthreads = threads };
        m = api.open(api.desc(), &opt, &err);
        if (!m || api.bind(m, "w", w, &err) != TFX_OK) {
            fprintf(stderr, "bench_gemm: %s\n", err.message);
            return 1;
        }
    } else {
        openblas_set_num_threads(threads);
    }

    static double times[MAXREPS];
    double cpu_best = INFINITY;
    int nt = 0;
    double spent = 0;
    for (int r = 0; r < 1 + reps; r++) {
        if (r >= 1 && nt > 0 && spent >= cap)
            break;
        struct timespec c0, c1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        double t0 = bench_now();
        if (is_tfxc) {
            if (api.forward(m, inputs, (const int64_t (*)[6])shapes, outputs, &err) != TFX_OK) {
                fprintf(stderr, "bench_gemm: forward: %s\n", err.message);
                return 1;
            }
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f,
                        x, (int)K, w, (int)N, 0.0f, y, (int)N);
        }
        double dt = bench_now() - t0;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        double cpu = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
        if (r >= 1) {
            cpu_best = cpu < cpu_best ? cpu : cpu_best;
            times[nt++] = dt;
            spent += dt;
        }
    }
    double med = bench_median(times, nt), best = times[0];
    for (int i = 1; i < nt; i++)
        best = times[i] < best ? times[i] : best;
    printf("RESULT impl=%s M=%lld N=%lld K=%lld threads=%d reps=%d median_ms=%.4f gflops=%.2f "
           "best_ms=%.4f cpu_best_ms=%.4f max_rel_err=%.2e\n", is_tfxc ? "tfxc" : "openblas", (long long)M, (long long)N,
           (long long)K, threads, nt, 1e3 * med, 2.0 * (double)M * (double)N * (double)K / med / 1e9,
           1e3 * best, 1e3 * cpu_best, check(x, w, y, M, N, K));
    if (m)
        api.close(m);
    free(x);
    free(w);
    free(y);
    return 0;
}
