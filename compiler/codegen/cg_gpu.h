/* cg_gpu.h - internals of the GPU back end (cg_ptx.c, cg_gpu_math.c): the hooks through
 * which the shared op lowering (cg_lower.c, cg_common.c) builds NVPTX kernels instead of
 * thread-pool bodies and calls our math instead of libm. Only codegen files include this.
 * See docs/gpu.md. */
#ifndef TFX_CODEGEN_CG_GPU_H
#define TFX_CODEGEN_CG_GPU_H

#include "cg_int.h"

typedef struct CgGpu CgGpu;   /* cg_ptx.c: the kernels and launches being built */

/* Threads per block of every parallel kernel (single-thread kernels use 1). */
enum { CG_GPU_BLOCK = 128 };

/* Kernel parameters before the value pointers: the i32 error flag, the device args block
 * (TfxKernelArgs layout, then one 8-byte slot per weight op) and an i64 step number. */
enum { CG_GPU_FIXED_PARAMS = 3 };

/* cg_ptx.c: called by cg_par_begin/cg_par_end when cg->gpu is set (and cg->serial is
 * not): the outer loop [0, n) becomes a kernel of n threads, one row each. */
void cg_gpu_par_begin(CgCpu *cg, CgPar *p, IrOp *op, LLVMValueRef n, const char *name);
void cg_gpu_par_end(CgCpu *cg, CgPar *p);

/* cg_ptx.c, for cg_cpu_emit with CG_TARGET_CUDA: declares the host's forward function
 * (defined later), then, once the descriptor exists, builds the kernels, embeds their PTX
 * and launch table (tfx__gpu_program) and defines forward as a call of tfx_cuda_forward.
 * cg_cuda_define returns 0, 1 (a reported error in the input) or 3 (internal error). */
LLVMValueRef cg_cuda_declare_forward(CgCpu *host);
int          cg_cuda_define(CgCpu *host, const CgOptions *o, LLVMValueRef ws_fn, LLVMValueRef fwd);

/* cg_ptx.c: what cg_gpu_par_begin does with its own block size; without `guarded` every
 * thread of the last block runs on (a kernel with barriers checks bounds itself). */
void cg_gpu_kernel_begin(CgCpu *cg, CgPar *p, IrOp *op, LLVMValueRef n, const char *name,
                         int32_t block, bool guarded);

/* cg_ptx.c: special register `name` (llvm.nvvm.read.ptx.sreg.tid.x ...) as an i64. */
LLVMValueRef cg_gpu_sreg(CgCpu *cg, const char *name);

/* cg_gpu_ops.c: kernels over elements or rows for const, arange, reshape, return and the
 * reductions; false for another op (then cg_lower_op lowers it in one thread). */
bool cg_gpu_lower_op(CgCpu *cg, IrOp *op);

/* cg_gpu_gemm.c: an f32 matmul as 16 x 16 output tiles, one block of 256 threads each,
 * staged through shared memory (docs/gpu.md). */
enum { CG_GPU_TILE = 16 };
bool cg_gpu_tiled_applies(const IrOp *op);
void cg_gpu_tiled_matmul(CgCpu *cg, IrOp *op);

/* cg_gpu_gemm.c, helpers the tiled kernels share: an internal [n x float] module global in
 * shared memory (address space 3) named `name`, defined on first use; a block-wide barrier
 * (bar.sync 0); the indices of matmul operand v of result y at y's batch index yidx and
 * (row, col), a batch dim of size 1 read at 0 (a NULL index). */
LLVMValueRef cg_gpu_shared(CgCpu *cg, const char *name, uint64_t n);
/* Splits batch entry b (row-major over y's dims before the last two) into yidx. */
void cg_gpu_batch_index(CgCpu *cg, const IrValue *y, LLVMValueRef b, LLVMValueRef *yidx);
void cg_gpu_barrier(CgCpu *cg);
void cg_gpu_operand_idx(const IrValue *v, const IrValue *y, LLVMValueRef *yidx, LLVMValueRef row,
                        LLVMValueRef col, LLVMValueRef *out);

/* cg_gpu_flash.c: fused attention. cg_gpu_plan marks in cg->absorbed the values of every
 * chain matmul(q, kT) [div|mul by a scalar const] softmax(mask none, causal, band,
 * causal_band) matmul(p, v) whose intermediates have one use each (and a transpose
 * feeding q, kT or v with one use), in @main and in loops driven from the host; called for
 * the host module of --target=cuda before its workspace is laid out, and for the device
 * module. cg_gpu_flash_values gives the fused kernel's values for the chain's last matmul
 * pv (q's, k's and v's buffers and the result), 0 when pv ends no planned chain;
 * cg_gpu_flash lowers the chain as one kernel (docs/gpu.md). */
enum { CG_GPU_FLASH_MAX_VALS = 4 };
void     cg_gpu_plan(CgCpu *cg);
uint32_t cg_gpu_flash_values(const CgCpu *cg, const IrOp *pv, const IrValue **out);
void     cg_gpu_flash(CgCpu *cg, IrOp *pv);

/* cg_ptx.c: called by cg_nest_begin/cg_nest_end when cg->gpu is set. For an op whose
 * whole work is one loop nest (elementwise ops, transpose, slice, gather, broadcast), the
 * nest becomes a kernel of one thread per element: n->idx is the thread's element and
 * cg_nest_end ends the kernel. Returns false where the nest stays an ordinary loop nest. */
bool cg_gpu_nest_begin(CgCpu *cg, CgNest *n, const Shape *s, const char *name);
bool cg_gpu_nest_end(CgCpu *cg, CgNest *n);

/* cg_gpu_math.c: a call of our implementation of intrinsic or libm function `name`
 * (llvm.exp, llvm.log, llvm.pow, tanhf, erff ...) at cg->b, or NULL when NVPTX lowers
 * `name` itself. */
LLVMValueRef cg_gpu_call_math(CgCpu *cg, const char *name, LLVMValueRef *args, unsigned nargs,
                              const char *vname);
/* The internal function float tfx.NAME(float) ("exp", "log", "tanh", "erf"; "pow" takes
 * two floats) in cg->mod, defined on first use; NULL for another name. */
LLVMValueRef cg_gpu_math_fn(CgCpu *cg, const char *name);

#endif
