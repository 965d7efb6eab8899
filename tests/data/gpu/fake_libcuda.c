/* fake_libcuda.c - a stand-in for libcuda.so.1 that runs no kernel: test_ptx builds it
 * with cc -shared and points TFX_LIBCUDA at it, so a --target=cuda model.so goes through
 * rt_cuda.c and its generated launch code on a machine without a GPU. "Device" memory is
 * host memory; every copy must stay inside one allocation, every launch parameter must
 * be a live allocation's address or a small integer (a symbol or a step), and every
 * kernel must be an .entry of the loaded PTX with that many parameters. Each check that
 * fails makes the call return an error, which the runtime reports as TFX_ERR_DEVICE. The
 * fake_* functions let the test read what happened. */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long long CUdeviceptr;

enum { MAX_ALLOCS = 4096, MAX_KERNELS = 4096, BAD = 1 };

static struct { char *p; size_t n; } allocs[MAX_ALLOCS];
static const char *ptx;                 /* the loaded module's text (the caller keeps it) */
static char names[MAX_KERNELS][128];   /* cuModuleGetFunction handles: index + 1 (static:
                                          * nothing to free when the fake is dlclose()d) */
static int nparams[MAX_KERNELS];
static int nnames;
static long launches, htod, live;
static size_t largest;                 /* the largest allocation so far, in bytes */
static char launch_log[1 << 16];
static size_t log_len;

/* Set by a test to run kernels on the host (an emulator of its own); NULL: launches only
 * check and log. Returns 0, or nonzero for an error. */
static int (*launcher)(const char *name, unsigned grid, unsigned block, void **params, int n);

void fake_set_launcher(int (*fn)(const char *, unsigned, unsigned, void **, int))
{
    launcher = fn;
}

long fake_launches(void) { return launches; }
long fake_htod(void) { return htod; }
long fake_live_allocs(void) { return live; }
size_t fake_largest_alloc(void) { return largest; }
const char *fake_launch_log(void) { return launch_log; }

int cuInit(unsigned flags) { (void)flags; return 0; }
int cuDeviceGetCount(int *n) { *n = 1; return 0; }
int cuDeviceGet(int *d, int i) { *d = i; return 0; }
int cuDevicePrimaryCtxRetain(void **c, int d) { (void)d; *c = (void *)&allocs; return 0; }
int cuDevicePrimaryCtxRelease_v2(int d) { (void)d; return 0; }
int cuCtxSetCurrent(void *c) { return c == (void *)&allocs ? 0 : BAD; }
int cuCtxSynchronize(void) { return 0; }
int cuModuleUnload(void *m) { (void)m; return 0; }

int cuGetErrorString(int e, const char **s)
{
    *s = e == 0 ? "no error" : "fake driver: a check failed";
    return 0;
}

int cuModuleLoadData(void **m, const void *image)
{
    ptx = image;
    *m = (void *)&ptx;
    return strncmp(ptx, "// tfxc launch table: ", 22) == 0 && strstr(ptx, ".entry") ? 0 : BAD;
}

/* Counts the .param lines of `.entry name(` ... `)`; -1 if there is no such entry. */
static int count_params(const char *name)
{
    char pat[256];
    snprintf(pat, sizeof pat, ".entry %s(", name);
    const char *p = strstr(ptx, pat);
    if (!p)
        return -1;
    const char *end = strchr(p, ')');
    int n = 0;
    for (const char *q = strstr(p, ".param"); q && q < end; q = strstr(q + 1, ".param"))
        n++;
    return n;
}

int cuModuleGetFunction(void **f, void *m, const char *name)
{
    (void)m;
    int n = count_params(name);
    if (n < 0 || nnames == MAX_KERNELS || strlen(name) >= sizeof names[0])
        return BAD;
    memcpy(names[nnames], name, strlen(name) + 1);
    nparams[nnames] = n;
    *f = (void *)(intptr_t)(++nnames);
    return 0;
}

int cuMemAlloc_v2(CUdeviceptr *p, size_t n)
{
    for (int i = 0; i < MAX_ALLOCS; i++)
        if (!allocs[i].p) {
            allocs[i].p = calloc(1, n);
            allocs[i].n = n;
            largest = n > largest ? n : largest;
            *p = (CUdeviceptr)(uintptr_t)allocs[i].p;
            live++;
            return allocs[i].p ? 0 : BAD;
        }
    return BAD;
}

int cuMemFree_v2(CUdeviceptr p)
{
    for (int i = 0; i < MAX_ALLOCS; i++)
        if ((CUdeviceptr)(uintptr_t)allocs[i].p == p) {
            free(allocs[i].p);
            allocs[i].p = NULL;
            live--;
            return 0;
        }
    return BAD;
}

/* Whether [p, p + n) lies inside one live allocation. */
static int inside(CUdeviceptr p, size_t n)
{
    for (int i = 0; i < MAX_ALLOCS; i++) {
        CUdeviceptr b = (CUdeviceptr)(uintptr_t)allocs[i].p;
        if (allocs[i].p && p >= b && p + n <= b + allocs[i].n)
            return 1;
    }
    return 0;
}

int cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n)
{
    if (!inside(dst, n))
        return BAD;
    memcpy((void *)(uintptr_t)dst, src, n);
    htod++;
    return 0;
}

int cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n)
{
    if (!inside(src, n))
        return BAD;
    memcpy(dst, (const void *)(uintptr_t)src, n);
    return 0;
}

int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                   unsigned bz, unsigned shmem, void *stream, void **params, void **extra)
{
    (void)stream;
    intptr_t k = (intptr_t)f - 1;
    if (k < 0 || k >= nnames || gx == 0 || gy != 1 || gz != 1 || bx == 0 || by != 1 || bz != 1 ||
        shmem != 0 || extra != NULL)
        return BAD;
    for (int i = 0; i < nparams[k]; i++) {
        uint64_t v;
        memcpy(&v, params[i], sizeof v);
        // an address must point into an allocation (one byte suffices for the slots); a
        // symbol or step value is small
        if (v >= (1u << 20) && !inside(v, 1))
            return BAD;
        if (i < 2 && !inside(v, 4))   // status and args are always device buffers
            return BAD;
    }
    launches++;
    if (launcher && launcher(names[k], gx, bx, params, nparams[k]) != 0)
        return BAD;
    int n = snprintf(launch_log + log_len, sizeof launch_log - log_len, "%s %ux%u\n", names[k],
                     gx, bx);
    if (n > 0 && (size_t)n < sizeof launch_log - log_len)
        log_len += (size_t)n;
    return 0;
}
