#!/usr/bin/python3
"""PyTorch references for the attention variants of docs/architectures.md (sections 1,
2 and 9), written from the papers' equations, not from the .tfx: seeded random weights
as safetensors under the example's checkpoint names, inputs and expected outputs.

    /usr/bin/python3 tests/reference/arch_attn.py fmmformer OUTDIR --T 1,5,33,70 [-Dname=value ...]
    /usr/bin/python3 tests/reference/arch_attn.py nexus OUTDIR --T 1,5 [-Dm=2 ...]
    /usr/bin/python3 tests/reference/arch_attn.py combiner OUTDIR --T 1,5 [-Dcausal=1 ...]

OUTDIR gets weights.safetensors and, per T, x_T.npy (the input [T, d]) and out_T.npy
(the output, after the final LayerNorm), as tests/reference/gen_ref.py does, so
tests/unit/test_arch_attn.c runs them the same way. Computation is in float64; the
files are float32. The hyperparameters and their defaults are the example models'."""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import cli  # noqa: E402
import st  # noqa: E402

DEFAULTS = {
    "fmmformer": dict(d=64, heads=4, layers=2, band=5, causal=0, phi=0, blend=1, scale=0),
    "nexus": dict(d=64, heads=4, layers=2, m=2, causal=0),
    "combiner": dict(d=64, heads=4, layers=2, r=4, causal=0),
}

DT = torch.float64


class Weights:
    """Seeded weights, created on first use under their checkpoint names: 2-D weights
    N(0, 1/fan_in) so attention logits are O(1); biases N(0, 0.1^2); norm scales
    1 + N(0, 0.1^2); anything else through `init`."""

    def __init__(self, seed):
        self.g = torch.Generator().manual_seed(seed)
        self.w = {}

    def get(self, name, shape, kind="matrix"):
        if name not in self.w:
            r = torch.randn(shape, generator=self.g, dtype=DT)
            if kind == "matrix":
                r = r / math.sqrt(shape[0])
            elif kind == "bias":
                r = r * 0.1
            elif kind == "scale":
                r = 1.0 + r * 0.1
            elif kind == "blend":
                r = 0.5 + r * 0.2
            self.w[name] = r.float().double()   # the values the f32 checkpoint holds
        return self.w[name]

    def numpy(self):
        return {k: v.numpy().astype(np.float32) for k, v in self.w.items()}


def layernorm(W, name, x):
    d = x.shape[-1]
    return F.layer_norm(x, (d,), W.get(name + ".weight", (d,), "scale"), W.get(name + ".bias", (d,), "bias"),
                        eps=1e-5)


def linear(W, name, x, out):
    """x @ W + b with W stored [in, out], as std.nn's linear (transposed = false)."""
    return x @ W.get(name + ".weight", (x.shape[-1], out)) + W.get(name + ".bias", (out,), "bias")


def mlp(W, name, x):
    d = x.shape[-1]
    return linear(W, name + ".proj", F.gelu(linear(W, name + ".fc", x, 4 * d)), d)


def heads_of(x, H):
    """[T, D] -> [H, T, D/H]"""
    T, D = x.shape
    return x.view(T, H, D // H).transpose(0, 1)


def merge(x):
    """[H, T, Dh] -> [T, H*Dh]"""
    H, T, Dh = x.shape
    return x.transpose(0, 1).reshape(T, H * Dh)


# ---- FMMformer (Nguyen et al. 2021) ----

def fmm_near(q, k, v, b, causal):
    """Softmax attention restricted to |i - j| < b (causal: i - b < j <= i), written densely."""
    T, Dh = q.shape[-2], q.shape[-1]
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    keep = (i - j < b) & (j - i < b)
    if causal:
        keep = keep & (j <= i)
    s = (q @ k.transpose(-2, -1)) / math.sqrt(Dh)
    s = s.masked_fill(~keep, float("-inf"))
    return F.softmax(s, dim=-1) @ v


PHI = {
    "elu": lambda x: F.elu(x) + 1,
    "elu_neg": lambda x: F.elu(-x) + 1,
}


def fmm_far1(q, k, v, phi, causal, scale):
    fq, fk = PHI[phi](q), PHI[phi](k)
    T, Dh = q.shape[-2], q.shape[-1]
    # scale 0: the paper's d^(1/4); scale 1: the official LRA code's T^(1/4)
    n = Dh if scale == 0 else T
    if not causal:
        # phi(Q)/n^(1/4) . (phi(K)/n^(1/4))^T V, unnormalised
        return (fq / n ** 0.25) @ ((fk / n ** 0.25).transpose(-2, -1) @ v)
    fq, fk = fq / n ** 0.25, fk / n ** 0.25   # cancels in the normalised form below
    # out_i = phi(q_i) S_i / (phi(q_i) . z_i), S_i = sum_{j<=i} phi(k_j)^T v_j, z_i = sum_{j<=i} phi(k_j)
    S = torch.cumsum(fk[..., :, None] * v[..., None, :], dim=-3)   # [H, T, Dh, Dh]
    z = torch.cumsum(fk, dim=-2)                                   # [H, T, Dh]
    num = torch.einsum("htd,htde->hte", fq, S)
    out = num / (fq * z).sum(-1, keepdim=True)
    # the same thing as a masked quadratic form, as a check of the reference itself
    A = torch.tril(fq @ fk.transpose(-2, -1))
    assert torch.allclose(out, (A @ v) / A.sum(-1, keepdim=True), rtol=1e-10, atol=1e-10)
    return out


def fmm_attention(W, name, x, hp):
    H, D = hp["heads"], x.shape[-1]
    Dh = D // H
    causal = hp["causal"] == 1
    q, k, v = (heads_of(t, H) for t in linear(W, name + ".qkv", x, 3 * D).split(D, dim=-1))
    near = fmm_near(q, k, v, hp["band"], causal)
    phis = {0: ["elu"], 1: ["elu_neg"], 2: ["elu", "elu_neg"]}[hp["phi"]]
    far = sum(fmm_far1(q, k, v, p, causal, hp["scale"]) for p in phis)
    shape = {0: (1, 1, 1), 1: (H, 1, 1), 2: (H, 1, Dh)}[hp["blend"]]
    wn = W.get(name + ".near_weight", shape, "blend")
    wf = W.get(name + ".far_weight", shape, "blend")
    return linear(W, name + ".proj", merge(wn * near + wf * far), D)


def fmmformer(W, x, hp):
    for l in range(hp["layers"]):
        p = f"layers.{l}"
        x = x + fmm_attention(W, p + ".attn", layernorm(W, p + ".ln_1", x), hp)
        x = x + mlp(W, p + ".mlp", layernorm(W, p + ".ln_2", x))
    return layernorm(W, "ln_f", x)


# ---- Nexus higher-order attention (Chen et al.), the formulation of docs/architectures.md ----

def sdpa(q, k, v, causal):
    """softmax(q k^T / sqrt(d)) v per head, the causal mask j <= i if asked."""
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        T = q.shape[-2]
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return F.softmax(s, dim=-1) @ v


def nexus_refine(W, name, x, p, H, m, causal):
    """P^(t+1) = softmax(P^(t) W_q (x W_k)^T / sqrt(Dh)) x W_v, per head, W shared by all t."""
    D = x.shape[-1]
    wq = W.get(name + ".query.weight", (D, D))
    wk = W.get(name + ".key.weight", (D, D))
    wv = W.get(name + ".value.weight", (D, D))
    for _ in range(m):
        p = merge(sdpa(heads_of(p @ wq, H), heads_of(x @ wk, H), heads_of(x @ wv, H), causal))
    return p


def nexus_attention(W, name, x, hp):
    H, D, m, causal = hp["heads"], x.shape[-1], hp["m"], hp["causal"] == 1
    q = nexus_refine(W, name + ".q_inner", x, linear(W, name + ".q", x, D), H, m, causal)
    k = nexus_refine(W, name + ".k_inner", x, linear(W, name + ".k", x, D), H, m, causal)
    v = linear(W, name + ".v", x, D)
    return linear(W, name + ".proj", merge(sdpa(heads_of(q, H), heads_of(k, H), heads_of(v, H), causal)), D)


def nexus(W, x, hp):
    for l in range(hp["layers"]):
        p = f"layers.{l}"
        x = x + nexus_attention(W, p + ".attn", layernorm(W, p + ".ln_1", x), hp)
        x = x + mlp(W, p + ".mlp", layernorm(W, p + ".ln_2", x))
    return layernorm(W, "ln_f", x)


# ---- Combiner (Ren et al. 2021), fixed regions with max-pooled summaries ----

def combiner_core(q, k, v, r, causal):
    """Per head: query i (region g(i) = i // r) sees the keys of its own region directly
    (causal: j <= i) and every other region g (causal: g < g(i)) through the summary key
    max_{j in g} k_j and value max_{j in g} v_j; one softmax over all of those logits.
    Written densely over [T, T + n] logits with masks."""
    H, T, Dh = q.shape
    n = T // r
    assert n * r == T, "T must be a multiple of r"
    ks = k.view(H, n, r, Dh).amax(dim=2)                 # [H, n, Dh]
    vs = v.view(H, n, r, Dh).amax(dim=2)
    gi = torch.arange(T) // r                            # each token's region
    i, j, g = torch.arange(T)[:, None], torch.arange(T)[None, :], torch.arange(n)[None, :]
    direct_ok = gi[:, None] == gi[None, :]
    summary_ok = g != gi[:, None]
    if causal:
        direct_ok = direct_ok & (j <= i)
        summary_ok = g < gi[:, None]
    logits = torch.cat([(q @ k.transpose(-2, -1)).masked_fill(~direct_ok, float("-inf")),
                        (q @ ks.transpose(-2, -1)).masked_fill(~summary_ok, float("-inf"))], dim=-1)
    p = F.softmax(logits / math.sqrt(Dh), dim=-1)
    out = p[..., :T] @ v + p[..., T:] @ vs
    if r == 1 and not causal:   # one token per region: the summaries are the tokens themselves
        assert torch.allclose(out, sdpa(q, k, v, False), rtol=1e-10, atol=1e-10)
    return out


def combiner_attention(W, name, x, hp):
    H, D = hp["heads"], x.shape[-1]
    q, k, v = (heads_of(t, H) for t in linear(W, name + ".qkv", x, 3 * D).split(D, dim=-1))
    return linear(W, name + ".proj", merge(combiner_core(q, k, v, hp["r"], hp["causal"] == 1)), D)


def combiner(W, x, hp):
    for l in range(hp["layers"]):
        p = f"layers.{l}"
        x = x + combiner_attention(W, p + ".attn", layernorm(W, p + ".ln_1", x), hp)
        x = x + mlp(W, p + ".mlp", layernorm(W, p + ".ln_2", x))
    return layernorm(W, "ln_f", x)


MODELS = {"fmmformer": fmmformer, "nexus": nexus, "combiner": combiner}


def run_main(models, defaults, script):
    """The command line shared by the arch_*.py references that reuse this file:
    MODEL OUTDIR --T 1,5 [--seed N] [-Dname=value ...] over `models` (name -> function
    of (Weights, x, hp)) with hyperparameter `defaults`; writes weights.safetensors and,
    per T, x_T.npy and out_T.npy."""
    args, hp, Ts = cli.parse(script, {name: defaults[name] for name in models})
    W = Weights(args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        for T in Ts:
            x = torch.randn(T, hp["d"], generator=g, dtype=DT).float().double()
            out = models[args.model](W, x, hp)
            np.save(os.path.join(args.outdir, f"x_{T}.npy"), x.numpy().astype(np.float32))
            np.save(os.path.join(args.outdir, f"out_{T}.npy"), out.numpy().astype(np.float32))
    st.save(os.path.join(args.outdir, "weights.safetensors"), W.numpy())
    print("wrote", args.outdir, "for T =", Ts)


def main():
    run_main(MODELS, DEFAULTS, "arch_attn.py")


if __name__ == "__main__":
    main()
