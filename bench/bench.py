"""bench.py - the benchmark harness of tfxc (docs/performance.md). bench/run.sh sets up,
builds tfxc and the C drivers into build-bench/, then runs this with the venv's Python:

    bench/.venv/bin/python bench/bench.py --build build-bench [--quick] [--cap SECONDS]

In one run on one machine it measures the machine (peak FMA rate, triad bandwidth), GEMM
(tfxc vs OpenBLAS), GPT-2 small forward and decode (tfxc vs PyTorch eager vs ONNX
Runtime, the same seeded weights for all), attention alone (tfxc vs PyTorch), the compile
time of examples/gpt2.tfx and the peak RSS of a forward. Every time is the median of
repeated runs after a warm-up. It prints a markdown report and writes it to
bench/results/. Figures are what this machine gave; nothing is assumed or carried over."""
import argparse
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import gpt       # noqa: E402  GPT-2 in PyTorch under the checkpoint names
import st        # noqa: E402  safetensors writer
from gen_ref import randomize   # noqa: E402  the seeded weights the reference tests use

GEMM_SIZES = [(128, 768, 768), (128, 3072, 768), (512, 2304, 768), (1024, 1024, 1024)]
GPT2 = dict(vocab=50257, ctx=1024, d=768, heads=12, layers=12)


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def run_result(cmd, timeout=None, env=None):
    """Runs a driver and returns the key=value pairs of its RESULT lines (a list of dicts).
    env: extra environment variables for it."""
    full_env = dict(os.environ, **env) if env else None
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    out = []
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            d = {}
            for kv in line.split()[1:]:
                if "=" in kv:
                    k, v = kv.split("=", 1)
                    d[k] = v
                else:
                    d["what"] = kv
            out.append(d)
    return out


def time_fn(fn, reps, cap, warmup=1):
    """Median seconds of fn() over up to reps timed calls after warmup calls; stops early
    when cap seconds of timed calls are spent (at least one timed call runs)."""
    for _ in range(warmup):
        fn()
    ts = []
    while len(ts) < reps and (not ts or sum(ts) < cap):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), len(ts)


def fmt_ms(s):
    if s is None:
        return "—"
    return f"{s * 1e3:.2f}" if s < 10 else f"{s * 1e3:.0f}"


def ratio(base, ours):
    """tfxc speedup over a baseline: base time / tfxc time (>1 means tfxc is faster)."""
    if base is None or ours is None:
        return "—"
    return f"{base / ours:.3f}×"


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.work = os.path.join(self.build, "bench")
        self.tfxc = os.path.join(self.build, "tfxc")
        self.cores = os.cpu_count() or 1
        self.quick = args.quick
        self.cap = args.cap
        self.reps = 3 if self.quick else 5
        self.md = []          # report lines
        self.notes = []       # skipped cases and caveats, printed at the end
        os.makedirs(self.work, exist_ok=True)

    def out(self, line=""):
        self.md.append(line)
        print(line, flush=True)

    # --- the machine ---------------------------------------------------------------
    def machine(self):
        cpu = "unknown"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        res = run_result([os.path.join(self.work, "machine"), str(self.cores)])
        self.peak = {int(r["threads"]): float(r["value"]) for r in res
                     if r.get("what") == "peak_gflops"}
        self.triad = {int(r["threads"]): float(r["value"]) for r in res
                      if r.get("what") == "triad_gbs"}
        isa = next(r["isa"] for r in res if "isa" in r)
        self.bw = max(self.triad.values())
        self.out("## Machine")
        self.out()
        self.out("| | |")
        self.out("|---|---|")
        self.out(f"| CPU | {cpu} ({platform.machine()}) |")
        self.out(f"| cores (online) | {self.cores} |")
        self.out(f"| memory | {mem_gb:.1f} GiB |")
        self.out(f"| load average at start (1/5/15 min) | {self.load0} |")
        for t, v in sorted(self.peak.items()):
            self.out(f"| peak f32 FMA rate, {t} thread{'s' if t > 1 else ''} ({isa}) | "
                     f"{v:.1f} GFLOP/s |")
        for t, v in sorted(self.triad.items()):
            self.out(f"| triad bandwidth, {t} thread{'s' if t > 1 else ''} | {v:.1f} GB/s |")
        self.out(f"| versions | Python {platform.python_version()}, PyTorch {torch.__version__}"
                 f", NumPy {np.__version__}, ONNX Runtime {self.ort_version()} |")
        self.out()

    def ort_version(self):
        try:
            import onnxruntime
            return onnxruntime.__version__
        except ImportError:
            return "not installed"

    def compile(self, src, so, defines=()):
        cmd = [self.tfxc, "-O2", src, *defines, "-o", so]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        return time.perf_counter() - t0

    # --- GEMM ----------------------------------------------------------------------
    def gemm(self):
        self.out("## GEMM: y[M,N] = x[M,K] @ w[K,N], f32 (GFLOP/s, median)")
        self.out()
        self.out("| M×N×K | threads | tfxc | OpenBLAS | tfxc / OpenBLAS |")
        self.out("|---|---|---|---|---|")
        drv = os.path.join(self.work, "bench_gemm")
        threads = sorted({1, min(2, self.cores)})
        self.gemm_top = []    # (size, tfxc/OpenBLAS) at the largest thread count
        for M, N, K in GEMM_SIZES:
            so = os.path.join(self.work, f"gemm_{M}x{N}x{K}.so")
            self.compile(os.path.join(ROOT, "bench", "models", "gemm.tfx"), so,
                         [f"-DM={M}", f"-DN={N}", f"-DK={K}"])
            for t in threads:
                # bench_gemm links OpenBLAS, whose idle pool threads spin (sched_yield) on
                # the same cores while tfxc runs: with one OpenBLAS thread there are none
                a = run_result([drv, "tfxc", so, str(M), str(N), str(K), str(t),
                                str(self.reps), str(self.cap)],
                               env={"OPENBLAS_NUM_THREADS": "1"})[0]
                b = run_result([drv, "openblas", str(M), str(N), str(K), str(t),
                                str(3 * self.reps), str(self.cap)])[0]
                for r in (a, b):
                    if float(r["max_rel_err"]) > 1e-3:
                        self.notes.append(f"GEMM {M}x{N}x{K} {r['impl']}: max relative error "
                                          f"{r['max_rel_err']} on sampled entries")
                ga, gb = float(a["gflops"]), float(b["gflops"])
                if t == max(threads):
                    self.gemm_top.append((f"{M}×{N}×{K}", ga / gb))
                self.out(f"| {M}×{N}×{K} | {t} | {ga:.2f} | {gb:.2f} | {ga / gb:.3f}× |")
        self.out()

    # --- GPT-2 small ---------------------------------------------------------------
    def gpt2_setup(self):
        """Seeded weights (gen_ref.randomize, seed 0) written once as safetensors under the
        checkpoint names; the PyTorch module keeps the same tensors."""
        torch.manual_seed(0)
        self.model = gpt.GPT(**GPT2).eval()
        randomize(self.model, 0)
        self.weights = os.path.join(self.work, "gpt2_seed0.safetensors")
        if not os.path.exists(self.weights):
            log("writing", self.weights)
            st.save(self.weights + ".tmp", self.model.weights())
            os.replace(self.weights + ".tmp", self.weights)
        self.weight_bytes = sum(p.numel() * 4 for p in self.model.state_dict().values())
        self.gpt2_so = os.path.join(self.work, "gpt2.so")
        ts = []
        for _ in range(3):
            ts.append(self.compile(os.path.join(ROOT, "examples", "gpt2.tfx"), self.gpt2_so))
        self.compile_s = statistics.median(ts)

    @staticmethod
    def tokens(T):
        """The token ids bench_model feeds a model with an i32 input: (k*7919 + 13) % 1000."""
        return [(k * 7919 + 13) % 1000 for k in range(T)]

    def tfxc_forward(self, T, save=None):
        cmd = [os.path.join(self.work, "bench_model"), self.gpt2_so, "--weights", self.weights,
               "--threads", str(self.cores), "--reps", str(self.reps), "--cap", str(self.cap),
               f"T={T}"]
        if save:
            cmd += ["--save", save]
        return run_result(cmd)[0]

    def ort_session(self):
        """Exports the PyTorch model to ONNX (dynamic T) once and opens it with
        intra-op threads = cores; None with a note if ONNX Runtime is missing or fails."""
        try:
            import onnxruntime as ort
        except ImportError:
            self.notes.append("ONNX Runtime skipped: onnxruntime is not installed in bench/.venv"
                              " (no network when bench/setup.sh ran?)")
            return None
        path = os.path.join(self.work, "gpt2_seed0.onnx")
        try:
            if not os.path.exists(path):
                log("exporting", path)
                with torch.no_grad():
                    torch.onnx.export(self.model, torch.zeros(1, 8, dtype=torch.long),
                                      path + ".tmp", input_names=["tokens"],
                                      output_names=["logits"], opset_version=14,
                                      dynamic_axes={"tokens": {1: "T"}, "logits": {1: "T"}})
                os.replace(path + ".tmp", path)
            so = ort.SessionOptions()
            so.intra_op_num_threads = self.cores
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        except Exception as e:   # noqa: BLE001  any export or load failure only skips ORT
            self.notes.append(f"ONNX Runtime skipped: {type(e).__name__}: {e}")
            return None

    def kv_decode_step(self, cache, pos):
        """One PyTorch decode step with a KV cache: the token at position pos attends to
        the pos cached keys and itself. cache[l] = (K, V), each [H, pos+1, Dh] with the
        first pos rows filled; the new row is written at pos. Returns the logits [vocab]."""
        t = self.model.transformer
        D, H = GPT2["d"], GPT2["heads"]
        x = t.wte.weight[7] + t.wpe.weight[pos]                      # [D]
        for blk, (K, V) in zip(t.h, cache):
            q, k, v = blk.attn.c_attn(blk.ln_1(x)).split(D)           # [D] each
            K[:, pos] = k.view(H, D // H)
            V[:, pos] = v.view(H, D // H)
            s = (K[:, :pos + 1] @ q.view(H, D // H, 1)).squeeze(-1) / math.sqrt(D // H)
            a = (torch.softmax(s, -1).unsqueeze(1) @ V[:, :pos + 1]).reshape(D)
            x = x + blk.attn.c_proj(a)
            x = x + blk.mlp(blk.ln_2(x))
        return t.ln_f(x) @ t.wte.weight.T

    def gpt2(self):
        self.gpt2_setup()
        Ts = [128] if self.quick else [128, 512]
        sess = self.ort_session()
        fwd = {}
        for T in Ts:
            log(f"GPT-2 forward T={T}")
            save = os.path.join(self.work, f"gpt2_logits_T{T}.f32")
            r = self.tfxc_forward(T, save)
            tok = torch.tensor([self.tokens(T)], dtype=torch.long)
            with torch.no_grad():
                ref = self.model(tok)[0].numpy()
                got = np.fromfile(save, dtype=np.float32).reshape(ref.shape)
                err = float(np.abs(got - ref).max())
                pt, _ = time_fn(lambda: self.model(tok), self.reps, self.cap)
            ot = None
            if sess is not None:
                feed = {"tokens": tok.numpy()}
                o = sess.run(None, feed)[0][0]
                oerr = float(np.abs(o - ref).max())
                if oerr > 1e-2:
                    self.notes.append(f"ONNX Runtime logits differ from PyTorch by {oerr:.2e}"
                                      f" at T={T}")
                ot, _ = time_fn(lambda: sess.run(None, feed), self.reps, self.cap)
            fwd[T] = dict(tfxc=float(r["median_ms"]) / 1e3, reps=int(r["reps"]), torch=pt,
                          ort=ot, err=err, rss_kb=int(r["maxrss_kb"]),
                          ws=int(r["workspace_bytes"]), io=int(r["io_bytes"]))
        self.out("## GPT-2 small forward (batch 1, 12 layers, d 768, vocab 50257; ms, median)")
        self.out()
        self.out("| T | tfxc | PyTorch eager | ONNX Runtime | tfxc vs PyTorch | tfxc vs ORT |"
                 " max abs(tfxc − PyTorch) logits |")
        self.out("|---|---|---|---|---|---|---|")
        for T, f in fwd.items():
            self.out(f"| {T} | {fmt_ms(f['tfxc'])} ({f['reps']} runs) | {fmt_ms(f['torch'])} |"
                     f" {fmt_ms(f['ort'])} | {ratio(f['torch'], f['tfxc'])} |"
                     f" {ratio(f['ort'], f['tfxc'])} | {f['err']:.2e} |")
        self.out()
        self.fwd = fwd
        self.decode(fwd, Ts)
        self.compile_and_memory(fwd, Ts)

    def tfxc_decode(self, T):
        """ms per one-token step of the generated step entry (KV cache) at context T."""
        cmd = [os.path.join(self.work, "bench_model"), self.gpt2_so, "--weights", self.weights,
               "--threads", str(self.cores), "--decode", "--warmup", "2",
               "--reps", str(3 * self.reps), "--cap", str(self.cap), f"T={T}"]
        return float(run_result(cmd)[0]["decode_ms"]) / 1e3   # seconds, like time_fn

    def decode(self, fwd, Ts):
        bound = self.weight_bytes / (self.bw * 1e9)
        rows = []
        for T in Ts:
            H, Dh = GPT2["heads"], GPT2["d"] // GPT2["heads"]
            cache = [(torch.randn(H, T + 1, Dh) * 0.1, torch.randn(H, T + 1, Dh) * 0.1)
                     for _ in range(GPT2["layers"])]
            # The cached rows are random: the step's cost does not depend on their values.
            with torch.no_grad():
                kv, _ = time_fn(lambda: self.kv_decode_step(cache, T), 3 * self.reps, self.cap)
            rows.append((T, self.tfxc_decode(T), fwd[T]["tfxc"], kv, fwd[T]["torch"],
                         fwd[T]["ort"]))
        self.dec_rows, self.bound = rows, bound
        self.out("## Autoregressive decoding (ms per token, median)")
        self.out()
        self.out("tfxc runs its generated step entry: one token after `context` cached ones"
                 " (prefill once, then one-token steps; docs/runtime.md \"KV cache\")."
                 " Its full-recompute figure is the forward time above. PyTorch is shown"
                 " with a KV cache (one token through the layers, attending to the cached"
                 " keys) and with full recompute; ONNX Runtime runs the exported full forward"
                 " (full recompute; no KV-cache export). The bound is the weight bytes"
                 f" ({self.weight_bytes / 1e6:.0f} MB, f32) ÷ triad bandwidth"
                 f" ({self.bw:.1f} GB/s): {bound * 1e3:.1f} ms.")
        self.out()
        self.out("| context | tfxc KV cache | tfxc full recompute | PyTorch KV cache |"
                 " PyTorch full recompute | ORT full recompute | bandwidth bound |"
                 " tfxc / bound | tfxc vs PyTorch KV |")
        self.out("|---|---|---|---|---|---|---|---|---|")
        for T, t, tf, kv, pf, of in rows:
            self.out(f"| {T} | {fmt_ms(t)} | {fmt_ms(tf)} | {fmt_ms(kv)} | {fmt_ms(pf)} |"
                     f" {fmt_ms(of)} | {bound * 1e3:.1f} | {t / bound:.2f}× | {ratio(kv, t)} |")
        self.out()

    def compile_and_memory(self, fwd, Ts):
        T = Ts[-1]
        f = fwd[T]
        budget = self.weight_bytes + f["ws"] + (64 << 20)
        rss = f["rss_kb"] * 1024
        self.rss = (T, rss - f["io"], budget)
        self.out("## Compile time and memory")
        self.out()
        self.out("| | |")
        self.out("|---|---|")
        self.out(f"| `tfxc -O2 examples/gpt2.tfx -o gpt2.so` (median of 3) |"
                 f" {self.compile_s:.2f} s |")
        self.out(f"| peak RSS of bench_model, GPT-2 forward T={T} (VmHWM) |"
                 f" {rss / 2**20:.0f} MiB |")
        self.out(f"| of which the caller's token and logits buffers | {f['io'] / 2**20:.0f} MiB |")
        self.out(f"| weights + workspace + 64 MiB | {self.weight_bytes / 2**20:.0f} +"
                 f" {f['ws'] / 2**20:.0f} + 64 = {budget / 2**20:.0f} MiB |")
        self.out(f"| peak RSS less the caller's buffers within that | "
                 f"{'yes' if rss - f['io'] <= budget else 'no'} |")
        self.out()

    # --- attention alone -------------------------------------------------------------
    def attention(self):
        H, Dh, W = 12, 64, 64
        Ts = [256, 512, 1024] if self.quick else [1024, 2048, 4096, 8192, 16384]
        # (label, tfxc mode of bench/models/attention.tfx, PyTorch mask)
        kinds = [("full", 0, "full"), ("causal", 1, "causal"),
                 ("band(64), dense masked softmax", 2, "band"),
                 ("band(64), band_scores/band_apply", 3, "band")]
        # FMMformer (another stdlib block) against PyTorch's full attention, which it replaces.
        has_fmm = os.path.exists(os.path.join(ROOT, "stdlib", "fmm.tfx"))
        if has_fmm:
            kinds.append(("FMM: band(64) near + elu far field (std.fmm)", 4, "full"))
        sos = {}
        for label, mode, _ in kinds:
            sos[mode] = os.path.join(self.work, f"attention_{mode}.so")
            self.compile(os.path.join(ROOT, "bench", "models", "attention.tfx"), sos[mode],
                         [f"-Dmode={mode}", f"-Dwidth={W}"])
        sdpa = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
        drv = os.path.join(self.work, "bench_model")
        res = {}
        seen = {}      # (impl, key) -> [(T, seconds)] of the cases run, to predict the next

        def predicted(key, T):
            """Seconds for T from the last two cases run (exponent clamped to [1, 2]), or
            quadratic from one; 0 with none."""
            pts = seen.get(key, [])
            if not pts:
                return 0.0
            e = 2.0
            if len(pts) >= 2:
                (T0, s0), (T1, s1) = pts[-2], pts[-1]
                e = min(2.0, max(1.0, math.log(s1 / s0) / math.log(T1 / T0)))
            return pts[-1][1] * (T / pts[-1][0]) ** e

        def gate(key, T, need):
            """None when the case may run, else why it is skipped."""
            if need > 0.6 * self.mem_available():
                return f"skipped: needs ~{need / 2**30:.1f} GiB"
            est = predicted(key, T)
            if est > self.case_cap():
                return f"skipped: ~{est:.0f} s > cap"
            return None

        for T in Ts:
            qkv = 3 * H * T * Dh * 4
            scores = H * T * T * 4             # one [H, T, T] f32 tensor
            for label, mode, tmask in kinds:
                key = ("tfxc", mode)
                plan = run_result([drv, sos[mode], "--plan", f"T={T}"])[0]
                why = gate(key, T, int(plan["workspace_bytes"]) + 2 * qkv)
                if why:
                    res[key + (T,)] = why
                else:
                    long = predicted(key, T) > 5
                    r = run_result([drv, sos[mode], "--threads", str(self.cores),
                                    "--warmup", "0" if long else "1",
                                    "--reps", "1" if long else str(self.reps),
                                    "--cap", str(self.cap), f"T={T}"])[0]
                    res[key + (T,)] = float(r["median_ms"]) / 1e3
                    seen.setdefault(key, []).append((T, res[key + (T,)]))
                for impl in ("torch", "sdpa"):
                    key = (impl, tmask)
                    if key + (T,) in res:
                        continue          # the two band rows share the PyTorch figures
                    if impl == "sdpa" and sdpa is None:
                        res[key + (T,)] = "n/a"
                        continue
                    # scores, their softmax and the masked copy; a bool [T, T] mask
                    why = gate(key, T, 3 * scores + T * T + 2 * qkv)
                    if why:
                        res[key + (T,)] = why
                        continue
                    s = self.torch_attention(impl, tmask, T, H, Dh, W, sdpa,
                                             predicted(key, T) > 5)
                    res[key + (T,)] = s
                    seen.setdefault(key, []).append((T, s))
                log(f"attention T={T} {label}: tfxc", res[("tfxc", mode, T)],
                    "torch", res[("torch", tmask, T)])
        self.att = res
        self.out("## Attention alone (12 heads × 64, q/k/v [12, T, 64]; ms, median)")
        self.out()
        self.out("PyTorch masked = `softmax(q k^T / 8 + mask) v` with an explicit [T, T] boolean"
                 " mask (none for full; the band rows both use the dense band mask)."
                 " PyTorch SDPA = `F.scaled_dot_product_attention`"
                 f" ({'present' if sdpa else 'absent in PyTorch ' + torch.__version__})."
                 f" A case is skipped when its time, predicted from the previous T, exceeds"
                 f" {self.case_cap():.0f} s, or when it needs more than 60% of the available"
                 " memory; cases predicted over 5 s run once without warm-up.")
        self.out()
        self.out("| T | mask | tfxc | PyTorch masked | PyTorch SDPA | tfxc vs masked |")
        self.out("|---|---|---|---|---|---|")
        for T in Ts:
            for label, mode, tmask in kinds:
                a, b, c = res[("tfxc", mode, T)], res[("torch", tmask, T)], res[("sdpa", tmask, T)]
                cell = [fmt_ms(v) if isinstance(v, float) else v for v in (a, b, c)]
                num = isinstance(a, float) and isinstance(b, float)
                self.out(f"| {T} | {label} | {cell[0]} | {cell[1]} | {cell[2]} |"
                         f" {ratio(b, a) if num else '—'} |")
        self.out()
        self.att_band = seen.get(("tfxc", 3), [])
        if has_fmm:
            self.out("The FMM row is `fmm_blend(fmm_near(q, k, v, 64), fmm_far(q, k, v, \"elu\"))`"
                     " from stdlib/fmm.tfx (bidirectional; weights random); its PyTorch columns"
                     " are full softmax attention, the computation FMM approximates.")
        else:
            self.out("FMM attention: not yet (no stdlib/fmm.tfx).")
        self.out()

    def targets(self):
        """The issue's targets next to what this run measured."""
        def verdict(ok):
            return "met" if ok else "not met"

        rows = []
        worst = min(self.gemm_top, key=lambda x: x[1])
        rows.append(("GEMM ≥ 1.0× OpenBLAS, 2 threads", f"lowest {worst[1]:.2f}× ({worst[0]})",
                     verdict(worst[1] >= 1.0)))
        for T, f in self.fwd.items():
            if f["ort"] is not None:
                r = f["ort"] / f["tfxc"]
                rows.append((f"GPT-2 forward T={T} ≥ 1.2× ONNX Runtime", f"{r:.2f}×",
                             verdict(r >= 1.2)))
            r = f["torch"] / f["tfxc"]
            rows.append((f"GPT-2 forward T={T} ≥ 1.6× PyTorch", f"{r:.2f}×", verdict(r >= 1.6)))
        for T, t, _, kv, _, _ in self.dec_rows:
            rows.append((f"decode at {T} within 1.3× of the bandwidth bound",
                         f"{t / self.bound:.2f}× the bound",
                         verdict(t <= 1.3 * self.bound)))
            rows.append((f"decode at {T} ≥ 2× PyTorch (KV cache)", f"{kv / t:.2f}×",
                         verdict(kv / t >= 2)))
        a, b = self.att.get(("tfxc", 1, 8192)), self.att.get(("torch", "causal", 8192))
        if isinstance(a, float) and isinstance(b, float):
            rows.append(("causal attention T=8192 ≥ 8× PyTorch masked", f"{b / a:.2f}×",
                         verdict(b / a >= 8)))
        else:
            why = "T=8192 is not run with --quick" if a is None else f"tfxc: {a}, PyTorch: {b}"
            rows.append(("causal attention T=8192 ≥ 8× PyTorch masked",
                         f"not measured ({why})", "—"))
        band = self.att_band
        if len(band) >= 2:
            # least-squares slope of log(time) on log(T): one noisy point moves it less
            x = np.log([b[0] for b in band])
            y = np.log([b[1] for b in band])
            e = float(np.polyfit(x, y, 1)[0])
            rows.append(("banded attention linear in T (band_scores/band_apply)",
                         f"time ∝ T^{e:.2f} (fit over T={band[0][0]}..{band[-1][0]})",
                         verdict(e < 1.2)))
        rows.append(("compile of examples/gpt2.tfx < 1.5 s", f"{self.compile_s:.2f} s",
                     verdict(self.compile_s < 1.5)))
        T, rss, budget = self.rss
        rows.append((f"peak RSS ≤ weights + workspace + 64 MB (forward T={T})",
                     f"{rss / 2**20:.0f} MiB (less the caller's buffers) vs"
                     f" {budget / 2**20:.0f} MiB",
                     verdict(rss <= budget)))
        self.out("## Targets of the issue")
        self.out()
        self.out("| target | measured | |")
        self.out("|---|---|---|")
        for r in rows:
            self.out(f"| {r[0]} | {r[1]} | {r[2]} |")
        self.out()

    def case_cap(self):
        return 20.0 if self.quick else 120.0

    @staticmethod
    def mem_available():
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        return 4 << 30

    def torch_attention(self, impl, kind, T, H, Dh, W, sdpa, long):
        g = torch.Generator().manual_seed(T)
        q, k, v = (torch.rand(1, H, T, Dh, generator=g) * 2 - 1 for _ in range(3))
        i = torch.arange(T)
        mask = None              # kind: "full", "causal" or "band"
        if kind == "causal":
            mask = i[None, :] <= i[:, None]
        elif kind == "band":
            mask = (i[None, :] - i[:, None]).abs() < W

        def masked():
            s = q @ k.transpose(-2, -1) / math.sqrt(Dh)
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            return torch.softmax(s, -1) @ v

        def fused():
            if kind == "causal":
                return sdpa(q, k, v, is_causal=True)
            return sdpa(q, k, v, attn_mask=mask)

        with torch.no_grad():
            s, _ = time_fn(masked if impl == "torch" else fused, 1 if long else self.reps,
                           self.cap, warmup=0 if long else 1)
        return s

    def run(self):
        self.load0 = " / ".join(f"{x:.2f}" for x in os.getloadavg())
        t0 = time.time()
        torch.set_num_threads(self.cores)
        stamp = datetime.datetime.now(datetime.timezone.utc)
        self.out(f"# tfxc benchmark, {stamp:%Y-%m-%d %H:%M} UTC"
                 f" ({'--quick' if self.quick else 'full run'})")
        self.out()
        self.out(f"tfxc {subprocess.run([self.tfxc, '--version'], capture_output=True, text=True).stdout.strip()}"
                 f", commit {self.git_rev()}. Ratios are tfxc's speedup (baseline time ÷ tfxc"
                 " time, or tfxc GFLOP/s ÷ OpenBLAS GFLOP/s): above 1× tfxc is faster."
                 f" Threads: {self.cores} (all cores) unless stated.")
        self.out()
        self.machine()
        self.gemm()
        self.gpt2()
        self.attention()
        self.targets()
        self.gpu()
        self.out("## Notes")
        self.out()
        self.out(f"- load average at end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())};"
                 f" the run took {time.time() - t0:.0f} s.")
        busy = max(os.getloadavg()[0], float(self.load0.split(" / ")[0]))
        if busy > 0.5 * self.cores:
            self.out(f"- **The machine was loaded** (1-minute load average up to {busy:.1f} on"
                     f" {self.cores} cores at start or end): other processes competed for the"
                     " cores and memory bandwidth, so these figures are noisy and the ratios"
                     " may be off in either direction. Rerun on a quiet machine.")
        for n in self.notes:
            self.out(f"- {n}")
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        path = os.path.join(ROOT, "bench", "results",
                            f"{stamp:%Y-%m-%d-%H%M}{'-quick' if self.quick else ''}.md")
        with open(path, "w") as f:
            f.write("\n".join(self.md) + "\n")
        log("wrote", os.path.relpath(path, ROOT))

    def gpu(self):
        """bench/bench_gpu.py's section, or its one line saying why it was skipped."""
        cmd = [sys.executable, os.path.join(ROOT, "bench", "bench_gpu.py"), "--tfxc", self.tfxc,
               "--work", self.work] + (["--quick"] if self.quick else [])
        p = subprocess.run(cmd, capture_output=True, text=True)
        lines = p.stdout.rstrip("\n").split("\n") if p.stdout.strip() else []
        if p.returncode != 0:
            lines.append(f"GPU cases failed: {p.stderr.strip().splitlines()[-1:]}")
        for line in lines:
            self.out(line)
        self.out()

    @staticmethod
    def git_rev():
        """The commit measured; BENCH_REV names it where the tree is no git checkout (a
        `git archive` copy)."""
        if os.environ.get("BENCH_REV"):
            return os.environ["BENCH_REV"] + " (exported copy)"
        p = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return p.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--quick", action="store_true", help="smaller T, fewer runs")
    ap.add_argument("--cap", type=float, default=60.0,
                    help="seconds of timed runs after which a case stops repeating")
    args = ap.parse_args()
    Bench(args).run()


if __name__ == "__main__":
    main()
