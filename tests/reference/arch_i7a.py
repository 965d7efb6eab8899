#!/usr/bin/python3
"""PyTorch references for docs/architectures.md sections 10 (SReT), 11 (looped block with
hyper-connections) and 15 (SATFormer value residual), written from the equations there,
under the checkpoint names of the examples:

    /usr/bin/python3 tests/reference/arch_i7a.py MODEL OUTDIR --T 2,6,32 [-Dname=value ...]

MODEL is one of sret, hyperloop, satformer (the example examples/MODEL.tfx). OUTDIR gets
weights.safetensors (seeded random weights) and, per T, x_T.npy (the input) and out_T.npy
(the output); sret also writes perm_T.txt, the seeded token permutation (its `perm` input).

The weights are plain tensors in a dict keyed by the checkpoint name; the forward passes
are written out with torch ops (F.layer_norm, F.gelu, F.softmax; RMSNorm by hand, as
torch 1.13 has no nn.RMSNorm)."""
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
    "sret": dict(d=32, heads=4, ff=64, groups=2, blocks=2, loops=2, width=16, is_causal=0),
    "hyperloop": dict(d=32, heads=4, ff=64, n=4, loops=3, is_causal=0),
    "satformer": dict(d=32, heads=4, ff=64, layers=4, is_causal=0),
}


class Weights:
    """Seeded weights created on first use, by name: matrices N(0, 1/fan_in) (fan_in the
    second-to-last axis), norm scales 1 + N(0, 0.1^2), biases N(0, 0.1^2), residual
    scalars 1 + N(0, 0.2^2), loop position embeddings N(0, 0.5^2). Names are sorted
    before drawing so the draw does not depend on the order of first use."""

    def __init__(self, specs, seed):
        g = torch.Generator().manual_seed(seed)
        self.w = {}
        for name in sorted(specs):
            shape, kind = specs[name]
            z = torch.randn(shape, generator=g)
            if kind == "mat":
                self.w[name] = z / math.sqrt(shape[-2])
            elif kind == "scale":
                self.w[name] = 1.0 + 0.1 * z
            elif kind == "coef":
                self.w[name] = 1.0 + 0.2 * z
            elif kind == "pos":
                self.w[name] = 0.5 * z
            else:
                self.w[name] = 0.1 * z

    def __getitem__(self, k):
        return self.w[k]


# ---- weight specs (name -> (shape, kind)) ----

def spec_linear(s, p, i, o, bias=True):
    s[p + ".weight"] = ((i, o), "mat")
    if bias:
        s[p + ".bias"] = ((o,), "bias")


def spec_ln(s, p, d):
    s[p + ".weight"] = ((d,), "scale")
    s[p + ".bias"] = ((d,), "bias")


def spec_mlp(s, p, d, h):
    spec_linear(s, p + ".fc", d, h)
    spec_linear(s, p + ".proj", h, d)


def spec_layer(s, p, d, ff):
    """std.hyper's hc_update: ln_1, attn (fused qkv, proj), ln_2, mlp."""
    spec_ln(s, p + ".ln_1", d)
    spec_linear(s, p + ".attn.qkv", d, 3 * d)
    spec_linear(s, p + ".attn.proj", d, d)
    spec_ln(s, p + ".ln_2", d)
    spec_mlp(s, p + ".mlp", d, ff)


# ---- shared pieces ----

def lin(W, p, x):
    y = x @ W[p + ".weight"]
    b = p + ".bias"
    return y + W[b] if b in W.w else y


def ln(W, p, x):
    return F.layer_norm(x, (x.shape[-1],), W[p + ".weight"], W[p + ".bias"], 1e-5)


def rmsnorm(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def mlp(W, p, x):
    return lin(W, p + ".proj", F.gelu(lin(W, p + ".fc", x)))


def heads_of(x, H):
    """[..., T, D] -> [..., H, T, D/H]"""
    *b, T, D = x.shape
    return x.reshape(*b, T, H, D // H).transpose(-3, -2)


def merge(x):
    """[..., H, T, Dh] -> [..., T, H*Dh]"""
    *b, H, T, Dh = x.shape
    return x.transpose(-3, -2).reshape(*b, T, H * Dh)


def sdpa(q, k, v, causal):
    T = q.shape[-2]
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return F.softmax(s, dim=-1) @ v


def mha(W, p, x, H, causal):
    q, k, v = lin(W, p + ".qkv", x).chunk(3, dim=-1)
    return lin(W, p + ".proj", merge(sdpa(heads_of(q, H), heads_of(k, H), heads_of(v, H), causal)))


# ---- 10 SReT ----

def sret_specs(d, heads, ff, groups, blocks, loops, width, is_causal):
    s = {}
    for b in range(blocks):
        p = f"blocks.{b}"
        s[p + ".nlp.fc.weight"] = ((loops, d, width), "mat")
        s[p + ".nlp.fc.bias"] = ((loops, width), "bias")
        s[p + ".nlp.proj.weight"] = ((loops, width, d), "mat")
        s[p + ".nlp.proj.bias"] = ((loops, d), "bias")
        s[p + ".block.coef"] = ((4,), "coef")
        spec_layer(s, p + ".block", d, ff)
    spec_ln(s, "ln_f", d)
    return s


def group_attention(W, p, x, H, G, causal):
    """Tokens in G contiguous groups of T/G; full (or causal) attention inside each."""
    T, D = x.shape
    assert T % G == 0
    q, k, v = lin(W, p + ".qkv", x).chunk(3, dim=-1)
    q, k, v = (heads_of(t.reshape(G, T // G, D), H) for t in (q, k, v))   # [G, H, T/G, Dh]
    a = merge(sdpa(q, k, v, causal))                                       # [G, T/G, D]
    return lin(W, p + ".proj", a.reshape(T, D))


def sret(W, x, perm, hp):
    x = x[perm]
    for b in range(hp["blocks"]):
        p = f"blocks.{b}"
        c = W[p + ".block.coef"]
        for i in range(hp["loops"]):
            q = p + ".block"
            x = c[0] * x + c[1] * group_attention(W, q + ".attn", ln(W, q + ".ln_1", x),
                                                  hp["heads"], hp["groups"], hp["is_causal"])
            x = c[2] * x + c[3] * mlp(W, q + ".mlp", ln(W, q + ".ln_2", x))
            if i < hp["loops"] - 1:   # the non-linear projection between loops
                h = F.gelu(x @ W[p + ".nlp.fc.weight"][i] + W[p + ".nlp.fc.bias"][i])
                x = x + h @ W[p + ".nlp.proj.weight"][i] + W[p + ".nlp.proj.bias"][i]
    y = torch.empty_like(x)
    y[perm] = x                       # un-permute
    return ln(W, "ln_f", y)


# ---- 11 looped block with hyper-connections ----

def hyperloop_specs(d, heads, ff, n, loops, is_causal):
    s = {}
    spec_layer(s, "begin", d, ff)
    spec_layer(s, "middle.block", d, ff)
    spec_layer(s, "end", d, ff)
    s["middle.loop_pos"] = ((loops, d), "pos")
    s["middle.norm.weight"] = ((n * d,), "scale")
    for g in ("pre", "post", "res"):
        s[f"middle.{g}.weight"] = ((n * d, n), "mat")
    spec_ln(s, "ln_f", d)
    return s


def update(W, p, x, H, causal):
    """A pre-LN layer minus its identity: f(x) - x."""
    a = mha(W, p + ".attn", ln(W, p + ".ln_1", x), H, causal)
    return a + mlp(W, p + ".mlp", ln(W, p + ".ln_2", x + a))


def hyperloop(W, x, hp):
    H, c, n = hp["heads"], hp["is_causal"], hp["n"]
    T, D = x.shape
    x = x + update(W, "begin", x, H, c)
    Y = x.unsqueeze(0).repeat(n, 1, 1)                                  # [n, T, D]
    for i in range(hp["loops"]):
        z = rmsnorm(Y.permute(1, 0, 2).reshape(T, n * D), W["middle.norm.weight"])
        h_pre = torch.sigmoid(z @ W["middle.pre.weight"])               # [T, n]
        h_post = 2 * torch.sigmoid(z @ W["middle.post.weight"])
        h_res = torch.sigmoid(z @ W["middle.res.weight"])
        x_mid = torch.einsum("tk,ktd->td", h_pre, Y) + W["middle.loop_pos"][i]
        f = update(W, "middle.block", x_mid, H, c)
        Y = h_res.t().unsqueeze(-1) * Y + h_post.t().unsqueeze(-1) * f.unsqueeze(0)
    x = Y.mean(0)
    x = x + update(W, "end", x, H, c)
    return ln(W, "ln_f", x)


# ---- 15 SATFormer value residual ----

def satformer_specs(d, heads, ff, layers, is_causal):
    s = {}
    for l in range(layers):
        p = "first" if l == 0 else f"layers.{l - 1}"
        spec_ln(s, p + ".ln_1", d)
        for m in ("q", "k", "v", "proj"):
            spec_linear(s, f"{p}.attn.{m}", d, d)
        if l > 0:
            spec_linear(s, p + ".attn.gate", d, heads, bias=False)
        spec_ln(s, p + ".ln_2", d)
        spec_mlp(s, p + ".mlp", d, ff)
    spec_ln(s, "ln_f", d)
    return s


def satformer(W, x, hp):
    H, c = hp["heads"], hp["is_causal"]
    v0 = None
    for l in range(hp["layers"]):
        p = "first" if l == 0 else f"layers.{l - 1}"
        h = ln(W, p + ".ln_1", x)
        q, k, v = (heads_of(lin(W, f"{p}.attn.{m}", h), H) for m in "qkv")   # [H, T, Dh]
        if l == 0:
            v0 = v
        else:
            g = F.relu(h @ W[p + ".attn.gate.weight"])                       # [T, H]
            v = v + g.t().unsqueeze(-1) * v0
        x = x + lin(W, p + ".attn.proj", merge(sdpa(q, k, v, c)))
        x = x + mlp(W, p + ".mlp", ln(W, p + ".ln_2", x))
    return ln(W, "ln_f", x)


SPECS = {"sret": sret_specs, "hyperloop": hyperloop_specs, "satformer": satformer_specs}


def main():
    args, hp, Ts = cli.parse("arch_i7a.py", DEFAULTS, default_T="2,6")
    W = Weights(SPECS[args.model](**hp), args.seed)
    st.save(os.path.join(args.outdir, "weights.safetensors"),
            {k: v.numpy().astype(np.float32) for k, v in W.w.items()})
    g = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        for T in Ts:
            x = torch.randn(T, hp["d"], generator=g)
            if args.model == "sret":
                if T % hp["groups"]:
                    sys.exit(f"arch_i7a.py: T={T} is not a multiple of groups={hp['groups']}")
                perm = torch.randperm(T, generator=g)
                np.savetxt(os.path.join(args.outdir, f"perm_{T}.txt"), perm.numpy()[None], fmt="%d")
                out = sret(W, x, perm, hp)
            elif args.model == "hyperloop":
                out = hyperloop(W, x, hp)
            else:
                out = satformer(W, x, hp)
            np.save(os.path.join(args.outdir, f"x_{T}.npy"), x.numpy().astype(np.float32))
            np.save(os.path.join(args.outdir, f"out_{T}.npy"), out.numpy().astype(np.float32))
    print("wrote", args.outdir)


if __name__ == "__main__":
    main()
