/* cg_gpu_math.c - f32 exp, log, pow, tanh and erf for the PTX backend, written in plain
 * LLVM IR. NVPTX has no libm, and LLVM 19 cannot select llvm.exp, llvm.log, llvm.pow or
 * llvm.exp2 for it (llc aborts with "no libcall available"), while sqrt, fma, fabs,
 * maxnum, minnum, floor and rint lower to single PTX instructions. Each function is an
 * internal `float tfx.NAME(float)` of the module, defined on first use, so the same IR can
 * be built into a host module and checked against libm (tests/unit/test_ptx.c). The
 * accuracy of each is stated above it and in docs/gpu.md. Called through the hooks in
 * cg_call_intrinsic and cg_call_libm (cg_common.c): for every math call on the GPU, and
 * for exp, tanh and erf on the CPU from -O1 on, where LLVM inlines and vectorises them
 * (docs/codegen.md "Fusion"). */
#include "cg_gpu.h"

#include <math.h>
#include <string.h>

/* A function body under construction: its own builder, so the caller's stays put. */
typedef struct MathFn {
    CgCpu         *cg;
    LLVMBuilderRef b;
    LLVMValueRef   fn;
} MathFn;

static LLVMValueRef fk(MathFn *f, double v)
{
    return LLVMConstReal(f->cg->t_f32, v);
}

static LLVMValueRef ik(MathFn *f, int64_t v)
{
    return LLVMConstInt(f->cg->t_i32, (unsigned long long)v, true);
}

/* An f32 intrinsic (llvm.fma, llvm.rint, ...) called with f's builder. */
static LLVMValueRef intr(MathFn *f, const char *name, LLVMValueRef *args, unsigned n)
{
    CgCpu *cg = f->cg;
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef ft = LLVMIntrinsicGetType(cg->llctx, id, &cg->t_f32, 1);
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, &cg->t_f32, 1);
    return LLVMBuildCall2(f->b, ft, fn, args, n, "");
}

static LLVMValueRef fma3(MathFn *f, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    LLVMValueRef args[3] = { a, b, c };
    return intr(f, "llvm.fma", args, 3);
}

static LLVMValueRef fabs1(MathFn *f, LLVMValueRef x)
{
    return intr(f, "llvm.fabs", &x, 1);
}

/* c[0] + x*(c[1] + x*(... + x*c[n-1])) by fma, highest degree first. */
static LLVMValueRef horner(MathFn *f, LLVMValueRef x, const double *c, int n)
{
    LLVMValueRef p = fk(f, c[n - 1]);
    for (int i = n - 2; i >= 0; i--)
        p = fma3(f, p, x, fk(f, c[i]));
    return p;
}

static LLVMValueRef fsel(MathFn *f, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(f->b, c, a, b, "");
}

static LLVMValueRef fcmp(MathFn *f, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildFCmp(f->b, p, a, b, "");
}

/* Declares `float NAME(float)`; returns true (and f->fn) when the body is still to write. */
static bool math_begin(MathFn *f, CgCpu *cg, const char *name)
{
    f->cg = cg;
    f->fn = LLVMGetNamedFunction(cg->mod, name);
    if (f->fn)
        return false;
    LLVMTypeRef ft = LLVMFunctionType(cg->t_f32, &cg->t_f32, 1, false);
    f->fn = LLVMAddFunction(cg->mod, name, ft);
    LLVMSetLinkage(f->fn, LLVMInternalLinkage);
    f->b = LLVMCreateBuilderInContext(cg->llctx);
    LLVMPositionBuilderAtEnd(f->b, LLVMAppendBasicBlockInContext(cg->llctx, f->fn, "entry"));
    return true;
}

static LLVMValueRef math_end(MathFn *f, LLVMValueRef result)
{
    LLVMBuildRet(f->b, result);
    LLVMDisposeBuilder(f->b);
    return f->fn;
}

static LLVMValueRef call1(MathFn *f, LLVMValueRef fn, LLVMValueRef x)
{
    LLVMTypeRef ft = LLVMFunctionType(f->cg->t_f32, &f->cg->t_f32, 1, false);
    return LLVMBuildCall2(f->b, ft, fn, &x, 1, "");
}

/* 2^k for an i32 k in [-126, 127], built from its exponent bits. */
static LLVMValueRef pow2i(MathFn *f, LLVMValueRef k)
{
    LLVMValueRef e = LLVMBuildAdd(f->b, k, ik(f, 127), "");
    LLVMValueRef bits = LLVMBuildShl(f->b, e, ik(f, 23), "");
    return LLVMBuildBitCast(f->b, bits, f->cg->t_f32, "");
}

/* exp(x): x = n*ln2 + r with |r| <= ln2/2 (Cody-Waite, ln2 in two parts), exp(r) by its
 * Taylor polynomial of degree 7 (truncation below 6e-9 relative), times 2^n applied as
 * two exact powers of two so that results down to the subnormals and up to overflow come
 * out right. Within 2 ulp of the correctly rounded result; NaN stays NaN, +-inf give
 * inf and 0. */
static LLVMValueRef gpu_exp_fn(CgCpu *cg)
{
    MathFn f;
    if (!math_begin(&f, cg, "tfx.expf"))
        return f.fn;
    LLVMValueRef x = LLVMGetParam(f.fn, 0);
    LLVMValueRef lo[2] = { x, fk(&f, -104.0) };
    LLVMValueRef xc = intr(&f, "llvm.maxnum", lo, 2);
    LLVMValueRef hi[2] = { xc, fk(&f, 89.0) };
    xc = intr(&f, "llvm.minnum", hi, 2);
    LLVMValueRef t = LLVMBuildFMul(f.b, xc, fk(&f, 1.4426950408889634), "");
    LLVMValueRef n = intr(&f, "llvm.rint", &t, 1);
    LLVMValueRef r = fma3(&f, n, fk(&f, -0.693145751953125), xc);
    r = fma3(&f, n, fk(&f, -1.4286067653302e-06), r);
    static const double c[8] = { 1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720,
                                 1.0 / 5040 };
    LLVMValueRef p = horner(&f, r, c, 8);
    LLVMValueRef ni = LLVMBuildFPToSI(f.b, n, cg->t_i32, "");
    LLVMValueRef a = LLVMBuildAShr(f.b, ni, ik(&f, 1), "");
    LLVMValueRef bb = LLVMBuildSub(f.b, ni, a, "");
    LLVMValueRef y = LLVMBuildFMul(f.b, p, pow2i(&f, a), "");
    y = LLVMBuildFMul(f.b, y, pow2i(&f, bb), "");
    LLVMValueRef nan = fcmp(&f, LLVMRealUNO, x, x);
    return math_end(&f, fsel(&f, nan, x, y));
}

/* log(x): x = m*2^e with m in [sqrt(1/2), sqrt(2)) (subnormals scaled by 2^23 first),
 * log(m) = 2 atanh(s) with s = (m-1)/(m+1), |s| <= 0.172, by its odd series to s^11
 * (truncation below 1e-9 relative), plus e*ln2 in two parts. Within 2 ulp; log(0) = -inf,
 * log(x < 0) = NaN, log(inf) = inf. */
static LLVMValueRef gpu_log_fn(CgCpu *cg)
{
    MathFn f;
    if (!math_begin(&f, cg, "tfx.logf"))
        return f.fn;
    LLVMValueRef x = LLVMGetParam(f.fn, 0);
    LLVMValueRef sub = fcmp(&f, LLVMRealOLT, x, fk(&f, 0x1p-126));
    LLVMValueRef xs = fsel(&f, sub, LLVMBuildFMul(f.b, x, fk(&f, 0x1p23), ""), x);
    LLVMValueRef eadj = LLVMBuildSelect(f.b, sub, ik(&f, -23), ik(&f, 0), "");
    LLVMValueRef bits = LLVMBuildBitCast(f.b, xs, cg->t_i32, "");
    LLVMValueRef e = LLVMBuildLShr(f.b, bits, ik(&f, 23), "");
    e = LLVMBuildAnd(f.b, e, ik(&f, 0xff), "");
    e = LLVMBuildSub(f.b, e, ik(&f, 127), "");
    e = LLVMBuildAdd(f.b, e, eadj, "");
    LLVMValueRef mb = LLVMBuildAnd(f.b, bits, ik(&f, 0x7fffff), "");
    mb = LLVMBuildOr(f.b, mb, ik(&f, 0x3f800000), "");
    LLVMValueRef m = LLVMBuildBitCast(f.b, mb, cg->t_f32, "");
    LLVMValueRef big = fcmp(&f, LLVMRealOGT, m, fk(&f, 1.41421356237309505));
    m = fsel(&f, big, LLVMBuildFMul(f.b, m, fk(&f, 0.5), ""), m);
    e = LLVMBuildAdd(f.b, e, LLVMBuildZExt(f.b, big, cg->t_i32, ""), "");
    LLVMValueRef num = LLVMBuildFSub(f.b, m, fk(&f, 1.0), "");
    LLVMValueRef den = LLVMBuildFAdd(f.b, m, fk(&f, 1.0), "");
    LLVMValueRef s = LLVMBuildFDiv(f.b, num, den, "");
    LLVMValueRef s2 = LLVMBuildFMul(f.b, s, s, "");
    static const double c[6] = { 0.0, 1.0 / 3, 1.0 / 5, 1.0 / 7, 1.0 / 9, 1.0 / 11 };
    LLVMValueRef poly = horner(&f, s2, c, 6);                 // s2/3 + s2^2/5 + ...
    LLVMValueRef s_2 = LLVMBuildFMul(f.b, s, fk(&f, 2.0), "");
    LLVMValueRef logm = fma3(&f, s_2, poly, s_2);             // 2s (1 + poly)
    LLVMValueRef ef = LLVMBuildSIToFP(f.b, e, cg->t_f32, "");
    LLVMValueRef y = fma3(&f, ef, fk(&f, 1.4286067653302e-06), logm);
    y = fma3(&f, ef, fk(&f, 0.693145751953125), y);
    // specials: NaN and x < 0 give NaN, 0 gives -inf, +inf gives +inf
    y = fsel(&f, fcmp(&f, LLVMRealOEQ, x, fk(&f, INFINITY)), x, y);
    y = fsel(&f, fcmp(&f, LLVMRealOEQ, x, fk(&f, 0.0)), fk(&f, -INFINITY), y);
    y = fsel(&f, fcmp(&f, LLVMRealULT, x, fk(&f, 0.0)), fk(&f, NAN), y);
    return math_end(&f, y);
}

/* tanh(x): for |x| < 0.4 the odd Taylor polynomial to x^13 (truncation below 5e-9
 * relative), else sign(x) (1 - 2/(exp(2|x|) + 1)), where the subtraction at most doubles
 * exp's error. Within 4 ulp; +-inf give +-1, NaN stays NaN. */
static LLVMValueRef gpu_tanh_fn(CgCpu *cg)
{
    MathFn f;
    if (!math_begin(&f, cg, "tfx.tanhf"))
        return f.fn;
    LLVMValueRef ex = gpu_exp_fn(cg);
    LLVMValueRef x = LLVMGetParam(f.fn, 0);
    LLVMValueRef ax = fabs1(&f, x);
    LLVMValueRef x2 = LLVMBuildFMul(f.b, x, x, "");
    static const double c[7] = { 1.0, -1.0 / 3, 2.0 / 15, -17.0 / 315, 62.0 / 2835,
                                 -1382.0 / 155925, 21844.0 / 6081075 };
    LLVMValueRef small = LLVMBuildFMul(f.b, x, horner(&f, x2, c, 7), "");
    LLVMValueRef e = call1(&f, ex, LLVMBuildFMul(f.b, ax, fk(&f, 2.0), ""));
    LLVMValueRef q = LLVMBuildFDiv(f.b, fk(&f, 2.0), LLVMBuildFAdd(f.b, e, fk(&f, 1.0), ""), "");
    LLVMValueRef t = LLVMBuildFSub(f.b, fk(&f, 1.0), q, "");
    LLVMValueRef neg = fcmp(&f, LLVMRealOLT, x, fk(&f, 0.0));
    LLVMValueRef big = fsel(&f, neg, LLVMBuildFNeg(f.b, t, ""), t);
    return math_end(&f, fsel(&f, fcmp(&f, LLVMRealOLT, ax, fk(&f, 0.4)), small, big));
}

/* erf(x): for |x| < 0.5 the Maclaurin series to x^13 (truncation below 3e-8 relative);
 * else Abramowitz & Stegun 7.1.26, 1 - t(a1 + t(a2 + ...))exp(-x^2) with
 * t = 1/(1 + 0.3275911|x|), whose absolute error is at most 1.5e-7, i.e. below 3e-7
 * relative since erf(0.5) = 0.52. +-inf give +-1, NaN stays NaN. */
static LLVMValueRef gpu_erf_fn(CgCpu *cg)
{
    MathFn f;
    if (!math_begin(&f, cg, "tfx.erff"))
        return f.fn;
    LLVMValueRef ex = gpu_exp_fn(cg);
    LLVMValueRef x = LLVMGetParam(f.fn, 0);
    LLVMValueRef ax = fabs1(&f, x);
    LLVMValueRef x2 = LLVMBuildFMul(f.b, x, x, "");
    const double k = 1.1283791670955126;   // 2/sqrt(pi)
    const double c[7] = { k, -k / 3, k / 10, -k / 42, k / 216, -k / 1320, k / 9360 };
    LLVMValueRef small = LLVMBuildFMul(f.b, x, horner(&f, x2, c, 7), "");
    LLVMValueRef den = fma3(&f, ax, fk(&f, 0.3275911), fk(&f, 1.0));
    LLVMValueRef t = LLVMBuildFDiv(f.b, fk(&f, 1.0), den, "");
    static const double a[5] = { 0.254829592, -0.284496736, 1.421413741, -1.453152027,
                                 1.061405429 };
    LLVMValueRef p = LLVMBuildFMul(f.b, t, horner(&f, t, a, 5), "");
    LLVMValueRef e = call1(&f, ex, LLVMBuildFNeg(f.b, LLVMBuildFMul(f.b, ax, ax, ""), ""));
    LLVMValueRef y = fma3(&f, LLVMBuildFNeg(f.b, p, ""), e, fk(&f, 1.0));
    LLVMValueRef neg = fcmp(&f, LLVMRealOLT, x, fk(&f, 0.0));
    LLVMValueRef big = fsel(&f, neg, LLVMBuildFNeg(f.b, y, ""), y);
    return math_end(&f, fsel(&f, fcmp(&f, LLVMRealOLT, ax, fk(&f, 0.5)), small, big));
}

/* pow(a, b) = exp(b log|a|), with the sign of a negative base for odd integer b, NaN for
 * a negative base and non-integer b, pow(a, 0) = pow(1, b) = 1. The relative error grows
 * with |b log a|: about (|b ln a| + 4) ulp, so within 1e-6 for |b ln a| < 4. */
static LLVMValueRef gpu_pow_fn(CgCpu *cg)
{
    LLVMValueRef ex = gpu_exp_fn(cg), lg = gpu_log_fn(cg);
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, "tfx.powf");
    if (fn)
        return fn;
    LLVMTypeRef params[2] = { cg->t_f32, cg->t_f32 };
    fn = LLVMAddFunction(cg->mod, "tfx.powf", LLVMFunctionType(cg->t_f32, params, 2, false));
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    MathFn f = { cg, LLVMCreateBuilderInContext(cg->llctx), fn };
    LLVMPositionBuilderAtEnd(f.b, LLVMAppendBasicBlockInContext(cg->llctx, fn, "entry"));
    LLVMValueRef a = LLVMGetParam(fn, 0), b = LLVMGetParam(fn, 1);
    LLVMValueRef l = call1(&f, lg, fabs1(&f, a));
    LLVMValueRef y = call1(&f, ex, LLVMBuildFMul(f.b, b, l, ""));
    LLVMValueRef bint = fcmp(&f, LLVMRealOEQ, intr(&f, "llvm.rint", &b, 1), b);
    LLVMValueRef half = LLVMBuildFMul(f.b, b, fk(&f, 0.5), "");
    LLVMValueRef hint = fcmp(&f, LLVMRealOEQ, intr(&f, "llvm.rint", &half, 1), half);
    LLVMValueRef odd = LLVMBuildAnd(f.b, bint, LLVMBuildNot(f.b, hint, ""), "");
    LLVMValueRef neg = fcmp(&f, LLVMRealOLT, a, fk(&f, 0.0));
    y = fsel(&f, LLVMBuildAnd(f.b, neg, odd, ""), LLVMBuildFNeg(f.b, y, ""), y);
    y = fsel(&f, LLVMBuildAnd(f.b, neg, LLVMBuildNot(f.b, bint, ""), ""), fk(&f, NAN), y);
    y = fsel(&f, fcmp(&f, LLVMRealOEQ, a, fk(&f, 1.0)), fk(&f, 1.0), y);
    y = fsel(&f, fcmp(&f, LLVMRealOEQ, b, fk(&f, 0.0)), fk(&f, 1.0), y);
    return math_end(&f, y);
}

LLVMValueRef cg_gpu_math_fn(CgCpu *cg, const char *name)
{
    if (strcmp(name, "exp") == 0) return gpu_exp_fn(cg);
    if (strcmp(name, "log") == 0) return gpu_log_fn(cg);
    if (strcmp(name, "tanh") == 0) return gpu_tanh_fn(cg);
    if (strcmp(name, "erf") == 0) return gpu_erf_fn(cg);
    if (strcmp(name, "pow") == 0) return gpu_pow_fn(cg);
    return NULL;
}

/* Maps an LLVM intrinsic or libm name to ours: NULL when NVPTX lowers it itself. */
static const char *gpu_name(const char *name)
{
    static const char *const map[][2] = {
        { "llvm.exp", "exp" }, { "llvm.log", "log" }, { "llvm.pow", "pow" },
        { "expf", "exp" }, { "logf", "log" }, { "powf", "pow" },
        { "tanhf", "tanh" }, { "erff", "erf" },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i][0], name) == 0)
            return map[i][1];
    return NULL;
}

LLVMValueRef cg_gpu_call_math(CgCpu *cg, const char *name, LLVMValueRef *args, unsigned nargs,
                              const char *vname)
{
    const char *ours = gpu_name(name);
    if (!ours)
        return NULL;
    LLVMValueRef fn = cg_gpu_math_fn(cg, ours);
    LLVMTypeRef params[2] = { cg->t_f32, cg->t_f32 };
    LLVMTypeRef ft = LLVMFunctionType(cg->t_f32, params, nargs, false);
    return LLVMBuildCall2(cg->b, ft, fn, args, nargs, vname);
}
