"""GPU cases of the benchmark: tfxc --target=cuda libraries against PyTorch CUDA on the same
device. Prints a markdown section on stdout (bench.py adds it to its report); where no CUDA
GPU is present it prints one line saying the cases were skipped and why, and exits 0.

    python3 bench/bench_gpu.py --tfxc build-bench/tfxc --work build-bench/bench [--quick]

Cases (docs/performance.md, "GPU"): GPT-2 small forward at T = 128 and 512 (seeded random
weights, logits copied back to the host by both sides, since tfx_model_forward returns
host memory), and causal multi-head attention (d = 768, 12 heads, QKV and output
projections) against T, where tfxc runs the fused attention kernel of cg_gpu_flash.c and
PyTorch F.scaled_dot_product_attention. Never run on hardware while it was written."""
import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))

ATTN_TFX = """use std.nn, std.attention
model attn(d = 768, heads = 12) {
    input x: f32[T, d]
    output y = mha(x, heads, mask = causal)
}
"""


def gpu_reason():
    """None when a CUDA GPU is usable by both the driver and PyTorch, else why not."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "nvidia-smi not found"
    p = subprocess.run([smi, "-L"], capture_output=True, text=True)
    if p.returncode != 0 or "GPU" not in p.stdout:
        return "nvidia-smi lists no GPU"
    try:
        cu = ctypes.CDLL("libcuda.so.1")
        n = ctypes.c_int(0)
        if cu.cuInit(0) != 0 or cu.cuDeviceGetCount(ctypes.byref(n)) != 0 or n.value < 1:
            return "libcuda.so.1 reports no device"
    except OSError as e:
        return f"cannot load libcuda.so.1 ({e})"
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "PyTorch has no CUDA device"
    return None


def median_s(fn, reps, cap):
    fn()   # warm-up: the first forward uploads weights and JIT-compiles the PTX
    ts = []
    while len(ts) < reps and (not ts or sum(ts) < cap):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


class TfxError(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 512)]


class Lib:
    """A model.so through its tfx_ C API (runtime/tfx.h)."""

    def __init__(self, so):
        self.h = ctypes.CDLL(so, mode=os.RTLD_LOCAL)
        self.h.tfx_model_desc.restype = ctypes.c_void_p
        self.h.tfx_model_open.restype = ctypes.c_void_p
        self.h.tfx_model_open.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self.h.tfx_model_bind_weight.argtypes = [ctypes.c_void_p] * 4
        self.h.tfx_model_load_weights.argtypes = [ctypes.c_void_p] * 3
        self.h.tfx_model_forward.argtypes = [ctypes.c_void_p] * 5
        self.h.tfx_model_close.argtypes = [ctypes.c_void_p]
        self.err = TfxError()
        self.m = self.h.tfx_model_open(self.h.tfx_model_desc(), None, ctypes.byref(self.err))
        if not self.m:
            raise RuntimeError(self.err.message.decode())
        self.keep = []

    def check(self, rc):
        if rc != 0:
            raise RuntimeError(self.err.message.decode())

    def load(self, path):
        self.check(self.h.tfx_model_load_weights(self.m, path.encode(), ctypes.byref(self.err)))

    def bind(self, name, a):
        a = np.ascontiguousarray(a, dtype=np.float32)
        self.keep.append(a)
        self.check(self.h.tfx_model_bind_weight(self.m, name.encode(), a.ctypes.data,
                                                ctypes.byref(self.err)))

    def forward(self, x, out):
        ins = (ctypes.c_void_p * 1)(x.ctypes.data)
        shape = (ctypes.c_int64 * 6)(*(list(x.shape) + [0] * (6 - x.ndim)))
        outs = (ctypes.c_void_p * 1)(out.ctypes.data)
        self.check(self.h.tfx_model_forward(self.m, ins, ctypes.byref(shape), outs,
                                            ctypes.byref(self.err)))

    def close(self):
        self.h.tfx_model_close(self.m)


def compile_cuda(tfxc, src, so):
    subprocess.run([tfxc, "-O3", src, "--target=cuda", "-o", so], check=True)


def gpt2_case(args, out):
    import torch
    import gpt
    import st
    from gen_ref import randomize
    torch.manual_seed(0)
    model = gpt.GPT().eval()
    randomize(model, 0)
    weights = os.path.join(args.work, "gpt2_seed0.safetensors")
    if not os.path.exists(weights):
        st.save(weights + ".tmp", model.weights())
        os.replace(weights + ".tmp", weights)
    so = os.path.join(args.work, "gpt2_cuda.so")
    compile_cuda(args.tfxc, os.path.join(ROOT, "examples", "gpt2.tfx"), so)
    lib = Lib(so)
    lib.load(weights)
    dev = model.cuda()
    out("### GPT-2 small forward on the GPU (ms, median)")
    out()
    out("| T | tfxc --target=cuda | PyTorch CUDA, logits to host | PyTorch CUDA, on device |"
        " PyTorch ÷ tfxc | max abs diff of logits |")
    out("|---|---|---|---|---|---|")
    for T in ([128] if args.quick else [128, 512]):
        tok = np.array([(k * 7919 + 13) % 1000 for k in range(T)], dtype=np.int32)
        logits = np.empty((T, 50257), dtype=np.float32)
        ours = median_s(lambda: lib.forward(tok, logits), args.reps, args.cap)
        tt = torch.from_numpy(tok.astype(np.int64)).cuda()[None]

        def torch_dev():
            with torch.no_grad():
                y = dev(tt)
            torch.cuda.synchronize()
            return y

        def torch_host():
            with torch.no_grad():
                return dev(tt).cpu()
        base_h = median_s(torch_host, args.reps, args.cap)
        base_d = median_s(torch_dev, args.reps, args.cap)
        diff = float(np.abs(torch_host()[0].numpy() - logits).max())
        out(f"| {T} | {ours * 1e3:.2f} | {base_h * 1e3:.2f} | {base_d * 1e3:.2f} |"
            f" {base_h / ours:.2f}× | {diff:.2e} |")
    lib.close()
    out()


def attention_case(args, out):
    import torch
    import torch.nn.functional as F
    src = os.path.join(args.work, "attn_gpu.tfx")
    with open(src, "w") as f:
        f.write(ATTN_TFX)
    so = os.path.join(args.work, "attn_cuda.so")
    compile_cuda(args.tfxc, src, so)
    lib = Lib(so)
    g = np.random.default_rng(0)
    w = {"mha.qkv.weight": g.standard_normal((768, 2304)) * 0.02,
         "mha.qkv.bias": g.standard_normal(2304) * 0.1,
         "mha.proj.weight": g.standard_normal((768, 768)) * 0.02,
         "mha.proj.bias": g.standard_normal(768) * 0.1}
    for k, v in w.items():
        lib.bind(k, v)
    tw = {k: torch.tensor(v, dtype=torch.float32).cuda() for k, v in w.items()}

    def torch_mha(x):
        T = x.shape[0]
        q, k, v = (x @ tw["mha.qkv.weight"] + tw["mha.qkv.bias"]).split(768, dim=-1)
        q, k, v = (t.view(T, 12, 64).transpose(0, 1) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return a.transpose(0, 1).reshape(T, 768) @ tw["mha.proj.weight"] + tw["mha.proj.bias"]
    out("### Causal multi-head attention on the GPU (d = 768, 12 heads; ms, median)")
    out()
    out("| T | tfxc --target=cuda (fused kernel) | PyTorch SDPA, result to host | PyTorch ÷ tfxc |"
        " max abs diff |")
    out("|---|---|---|---|---|")
    for T in ([128, 512] if args.quick else [128, 512, 1024, 2048]):
        x = (g.standard_normal((T, 768))).astype(np.float32)
        y = np.empty((T, 768), dtype=np.float32)
        ours = median_s(lambda: lib.forward(x, y), args.reps, args.cap)
        xt = torch.from_numpy(x).cuda()

        def base():
            with torch.no_grad():
                return torch_mha(xt).cpu()
        b = median_s(base, args.reps, args.cap)
        diff = float(np.abs(base().numpy() - y).max())
        out(f"| {T} | {ours * 1e3:.2f} | {b * 1e3:.2f} | {b / ours:.2f}× | {diff:.2e} |")
    lib.close()
    out()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tfxc", default=os.path.join(ROOT, "build-bench", "tfxc"))
    ap.add_argument("--work", default=os.path.join(ROOT, "build-bench", "bench"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--cap", type=float, default=30.0)
    args = ap.parse_args()
    why = gpu_reason()
    if why:
        print(f"GPU cases skipped: no usable CUDA GPU ({why}).")
        return
    os.makedirs(args.work, exist_ok=True)

    def out(line=""):
        print(line, flush=True)
    import torch
    out(f"## GPU: {torch.cuda.get_device_name(0)}")
    out()
    gpt2_case(args, out)
    attention_case(args, out)


if __name__ == "__main__":
    main()
