#!/usr/bin/python3
"""PyTorch references for docs/architectures.md sections 12-14 (LT2-style looped mixer,
TokenFormer Pattention, Flowformer flow attention), written from the equations, not from
the .tfx: seeded random weights as safetensors under the example's checkpoint names,
inputs and expected outputs.

    /usr/bin/python3 tests/reference/arch_i7b.py lt2 OUTDIR --T 1,5,33 [-Dmixer=1 ...]
    /usr/bin/python3 tests/reference/arch_i7b.py tokenformer OUTDIR --T 1,5 [-Dcausal=1]
    /usr/bin/python3 tests/reference/arch_i7b.py flowformer OUTDIR --T 1,5 [-Dcausal=1]

OUTDIR gets weights.safetensors and, per T, x_T.npy (the input [T, d]) and out_T.npy
(the output after the final LayerNorm), as arch_attn.py does (its weight, norm and
linear helpers are reused). Computation is in float64; the files are float32."""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from arch_attn import DT, heads_of, layernorm, linear, merge, mlp, run_main  # noqa: E402

DEFAULTS = {
    "lt2": dict(d=64, heads=4, loops=3, mixer=0, window=8, causal=1),
    "tokenformer": dict(d=64, heads=4, layers=2, n_attn=48, n_ffn=96, causal=0),
    "flowformer": dict(d=64, heads=4, layers=2, causal=0),
}


def causal_keep(T):
    """[T, T] boolean: key j <= query i"""
    return torch.ones(T, T, dtype=torch.bool).tril()


# ---- LT2-style looped mixer ----

def window_attention(q, k, v, w, causal):
    """Softmax attention over keys i - w < j <= i (bidirectional |i - j| < w), dense."""
    T, Dh = q.shape[-2], q.shape[-1]
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    keep = (i - j < w) & (j - i < w)
    if causal:
        keep = keep & (j <= i)
    s = (q @ k.transpose(-2, -1) / math.sqrt(Dh)).masked_fill(~keep, float("-inf"))
    return F.softmax(s, dim=-1) @ v


def linear_attention(q, k, v, causal):
    """out_i = phi(q_i) S_i / (phi(q_i) . z_i), phi = elu + 1, written as the quadratic
    form A = phi(Q) phi(K)^T (lower triangle when causal), out = A V / rowsum(A); the
    causal prefix-sum form is computed too and must agree."""
    fq, fk = F.elu(q) + 1, F.elu(k) + 1
    A = fq @ fk.transpose(-2, -1)
    if causal:
        A = A * causal_keep(q.shape[-2])
    out = (A @ v) / A.sum(-1, keepdim=True)
    if causal:
        S = torch.cumsum(fk[..., :, None] * v[..., None, :], dim=-3)
        z = torch.cumsum(fk, dim=-2)
        alt = torch.einsum("htd,htde->hte", fq, S) / (fq * z).sum(-1, keepdim=True)
        assert torch.allclose(out, alt, rtol=1e-10, atol=1e-10)
    return out


def lt2(W, x, hp):
    """h' = h + Mixer(LN(h)), h = h' + FFN(LN(h')), `loops` times with the same weights."""
    H, D, causal = hp["heads"], x.shape[-1], hp["causal"] == 1
    for _ in range(hp["loops"]):
        a = layernorm(W, "block.ln_1", x)
        q, k, v = (heads_of(t, H) for t in linear(W, "block.mixer.qkv", a, 3 * D).split(D, dim=-1))
        if hp["mixer"] == 1:
            y = linear_attention(q, k, v, causal)
        else:
            y = window_attention(q, k, v, hp["window"], causal)
        x = x + linear(W, "block.mixer.proj", merge(y), D)
        x = x + mlp(W, "block.ffn", layernorm(W, "block.ln_2", x))
    return layernorm(W, "ln_f", x)


# ---- TokenFormer ----

def pattention(W, name, x, n, out):
    """Theta(X K_P^T) V_P, Theta(S) = GELU(S / ||S_row||_2 * sqrt(n))."""
    kp = W.get(name + ".key_param_tokens", (n, x.shape[-1]))
    vp = W.get(name + ".value_param_tokens", (n, out))
    s = x @ kp.T
    s = s / torch.linalg.vector_norm(s, dim=-1, keepdim=True) * math.sqrt(n)
    return F.gelu(s) @ vp


def tokenformer(W, x, hp):
    H, D, na, nf = hp["heads"], x.shape[-1], hp["n_attn"], hp["n_ffn"]
    ln = lambda t: F.layer_norm(t, (D,), eps=1e-5)   # noqa: E731  non-parametric
    for l in range(hp["layers"]):
        p = f"layers.{l}"
        a = ln(x)
        q, k, v = (heads_of(pattention(W, f"{p}.attn.{s}", a, na, D), H) for s in ("query", "key", "value"))
        s = q @ k.transpose(-2, -1) / math.sqrt(D // H)
        if hp["causal"] == 1:
            s = s.masked_fill(~causal_keep(x.shape[0]), float("-inf"))
        x = x + pattention(W, f"{p}.attn.out", merge(F.softmax(s, dim=-1) @ v), na, D)
        x = x + pattention(W, f"{p}.ffn", ln(x), nf, D)
    return ln(x)


# ---- Flowformer ----

EPS = 1e-6


def flow_bidirectional(Q, K, V):
    """The official Flow_Attention with Q, K already sigmoid'ed, per head [H, T, Dh]."""
    T = Q.shape[-2]
    I = torch.einsum("htd,hd->ht", Q + EPS, K.sum(-2) + EPS)
    O = torch.einsum("htd,hd->ht", K + EPS, Q.sum(-2) + EPS)
    Ic = torch.einsum("htd,hd->ht", Q + EPS, (K / O[..., None]).sum(-2) + EPS)
    Oc = torch.einsum("htd,hd->ht", K + EPS, (Q / I[..., None]).sum(-2) + EPS).clamp(-1.0, 1.0)
    alloc = torch.sigmoid(Ic)
    comp = torch.softmax(Oc, dim=-1) * T
    out = (Q / I[..., None]) @ (K.transpose(-2, -1) @ (V * comp[..., None]))
    return out * alloc[..., None]


def flow_causal(Q, K, V):
    """The official causal flow attention, prefix sums written as products with the lower
    triangular matrix of ones L (the quadratic form); the same with torch.cumsum must
    agree (a check of the reference itself)."""
    T = Q.shape[-2]
    L = torch.ones(T, T, dtype=DT).tril()
    n = torch.arange(T, dtype=DT) + 1.0                                  # i + 1

    def run(prefix):
        I = ((Q + EPS) * (prefix(K) + EPS)).sum(-1)
        O = ((K + EPS) * (prefix(Q) + EPS)).sum(-1)
        Ic = ((Q + EPS) * (prefix(K * (n / O)[..., None]) + EPS)).sum(-1) / n
        Oc = ((K + EPS) * (prefix(Q * (n / I)[..., None]) + EPS)).sum(-1) / n
        e = torch.exp(Oc.clamp(-1.0, 1.0))
        comp = e / prefix(e[..., None])[..., 0] * n
        alloc = torch.sigmoid(Ic)
        return Ic, Oc, comp, alloc, I

    Ic, Oc, comp, alloc, I = run(lambda t: L @ t)
    A = ((Q / I[..., None]) @ K.transpose(-2, -1)) * L                  # causal dot, quadratic
    out = (A @ (V * comp[..., None])) * alloc[..., None]
    # cross-check: cumsum form of every prefix sum and of the causal dot product
    Ic2, Oc2, comp2, alloc2, I2 = run(lambda t: torch.cumsum(t, dim=-2))
    kv = torch.cumsum(K[..., :, None] * (V * comp2[..., None])[..., None, :], dim=-3)
    out2 = torch.einsum("htd,htde->hte", Q / I2[..., None], kv) * alloc2[..., None]
    assert torch.allclose(out, out2, rtol=1e-9, atol=1e-10)
    return out


def flowformer(W, x, hp):
    H, D = hp["heads"], x.shape[-1]
    for l in range(hp["layers"]):
        p = f"layers.{l}"
        a = layernorm(W, p + ".ln_1", x)
        Q = torch.sigmoid(heads_of(linear(W, p + ".attn.query", a, D), H))
        K = torch.sigmoid(heads_of(linear(W, p + ".attn.key", a, D), H))
        V = heads_of(linear(W, p + ".attn.value", a, D), H)
        y = flow_causal(Q, K, V) if hp["causal"] == 1 else flow_bidirectional(Q, K, V)
        x = x + linear(W, p + ".attn.out", merge(y), D)
        x = x + mlp(W, p + ".mlp", layernorm(W, p + ".ln_2", x))
    return layernorm(W, "ln_f", x)


MODELS = {"lt2": lt2, "tokenformer": tokenformer, "flowformer": flowformer}


def main():
    run_main(MODELS, DEFAULTS, "arch_i7b.py")


if __name__ == "__main__":
    main()
