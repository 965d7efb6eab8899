#!/usr/bin/python3
"""PyTorch references for the basic research architectures of docs/architectures.md
(sections 4-8), written from the papers' equations, under the checkpoint names of the
examples:

    /usr/bin/python3 tests/reference/arch_basic.py MODEL OUTDIR --T 1,5,33 [-Dname=value ...]

MODEL is one of norms, activations, matformer, relaxed_recursive, universal_act (the
example examples/MODEL.tfx). OUTDIR gets weights.safetensors (seeded random weights) and,
per T, x_T.npy (the input) and out_T.npy (the first output); universal_act also writes
ponder_T.txt, the number of steps each token took, and checks that the tokens halt at
different steps and that no token is within 1e-4 of the halting threshold (so f32
rounding cannot flip a halting decision between this script and tfxc).

PyTorch's own modules are used where they exist: nn.LayerNorm, nn.RMSNorm (torch >= 2.4;
written out for older torch, such as Debian's 1.13), F.gelu (erf and approximate='tanh'),
F.silu, F.softmax."""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import cli  # noqa: E402
import st  # noqa: E402

DEFAULTS = {
    "norms": dict(d=32, heads=4, ff=64, layers=2, place=1, rms=0),
    "activations": dict(d=32, heads=4, ff=64, layers=2, act=0),
    "matformer": dict(d=32, heads=4, ff=128, f0=1, f1=1),
    "relaxed_recursive": dict(d=32, heads=4, ff=64, layers=4, blocks=2, r=4, alpha=8.0),
    "universal_act": dict(d=32, heads=4, ff=64, steps=6, eps=0.01),
}

ACTS = ["gelu", "gelu_tanh", "silu", "swiglu", "geglu", "polyrelu", "polynorm"]


# ---- building blocks, laid out as std.nn / std.attention name and store them ----

class Linear(nn.Module):
    """y = x W + b with W stored [in, out] (std.nn's linear)."""

    def __init__(self, i, o, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(i, o))
        self.bias = nn.Parameter(torch.empty(o)) if bias else None

    def forward(self, x):
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y


def attention(q, k, v, heads, causal):
    """softmax(q k^T / sqrt(dh)) v per head; q, k, v: [T, D]."""
    T, D = q.shape
    q, k, v = (t.view(T, heads, D // heads).transpose(0, 1) for t in (q, k, v))
    s = q @ k.transpose(-2, -1) / math.sqrt(D // heads)
    if causal:
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    a = F.softmax(s, dim=-1) @ v
    return a.transpose(0, 1).reshape(T, D)


class MHA(nn.Module):
    """std.attention's mha: fused qkv [D, 3D], proj [D, D]."""

    def __init__(self, d, heads, causal=False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.qkv = Linear(d, 3 * d)
        self.proj = Linear(d, d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(attention(q, k, v, self.heads, self.causal))


class PolyReLU(nn.Module):
    """PolyCom (Zhuo et al. 2024), order 3: sum_{i=0..3} a_i ReLU(x)^i, with a_0 = bias,
    a_i = weight[i - 1]."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(3))
        self.bias = nn.Parameter(torch.empty(1))

    def forward(self, x):
        r = F.relu(x)
        return self.weight[0] * r + self.weight[1] * r ** 2 + self.weight[2] * r ** 3 + self.bias


class PolyNorm(nn.Module):
    """PolyCom, order 3: a_0 N(x^3) + a_1 N(x^2) + a_2 N(x) + b, N(u) = u / rms(u) over the
    hidden axis (eps = 1e-6)."""

    def __init__(self, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(3))
        self.bias = nn.Parameter(torch.empty(1))

    def norm(self, u):
        return u * torch.rsqrt(u.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        w = self.weight
        return w[0] * self.norm(x ** 3) + w[1] * self.norm(x ** 2) + w[2] * self.norm(x) + self.bias


class MLP(nn.Module):
    """act(x W1 + b1) W2 + b2 (std.nn's mlp); PolyReLU/PolyNorm carry their own weights."""

    def __init__(self, d, hidden, act):
        super().__init__()
        self.fc = Linear(d, hidden)
        self.proj = Linear(hidden, d)
        self.act = act
        if act == "polyrelu":
            self.polyrelu = PolyReLU()
        elif act == "polynorm":
            self.polynorm = PolyNorm()

    def forward(self, x):
        h = self.fc(x)
        if self.act in ("polyrelu", "polynorm"):
            h = getattr(self, self.act)(h)
        elif self.act == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        else:
            h = {"gelu": F.gelu, "silu": F.silu, "relu": F.relu}[self.act](h)
        return self.proj(h)


class GLU(nn.Module):
    """(act(x Wg + bg) * (x Wu + bu)) Wd + bd: SwiGLU (SiLU) or GeGLU (GELU, erf)."""

    def __init__(self, d, hidden, act):
        super().__init__()
        self.gate, self.up, self.down = Linear(d, hidden), Linear(d, hidden), Linear(hidden, d)
        self.act = F.silu if act == "swiglu" else F.gelu

    def forward(self, x):
        return self.down(self.act(self.gate(x)) * self.up(x))


def ffn(d, hidden, act):
    return GLU(d, hidden, act) if act in ("swiglu", "geglu") else MLP(d, hidden, act)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight; nn.RMSNorm where torch has it (2.4 and later;
    Debian's torch is older), else the same formula written out."""

    def __init__(self, d, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def make_norm(d, rms):
    if not rms:
        return nn.LayerNorm(d, eps=1e-5)
    return nn.RMSNorm(d, eps=1e-5) if hasattr(nn, "RMSNorm") else RMSNorm(d, 1e-5)


# ---- section 6: norm placement ----

class NormLayer(nn.Module):
    """One encoder layer with the placement of examples/norms.tfx:
    post: x = N(x + F(x)); pre: x = x + F(N(x)); peri: x = x + N'(F(N(x)))."""

    def __init__(self, d, heads, ff, place, rms):
        super().__init__()
        self.place = place
        self.attn = MHA(d, heads)
        self.mlp = MLP(d, ff, "gelu")
        if place != "post":
            self.ln_1, self.ln_2 = make_norm(d, rms), make_norm(d, rms)
        if place != "pre":
            self.ln_1_out, self.ln_2_out = make_norm(d, rms), make_norm(d, rms)

    def sub(self, x, f, n_in, n_out):
        if self.place == "post":
            return n_out(x + f(x))
        if self.place == "pre":
            return x + f(n_in(x))
        return x + n_out(f(n_in(x)))

    def forward(self, x):
        x = self.sub(x, self.attn, getattr(self, "ln_1", None), getattr(self, "ln_1_out", None))
        return self.sub(x, self.mlp, getattr(self, "ln_2", None), getattr(self, "ln_2_out", None))


class Norms(nn.Module):
    def __init__(self, d, heads, ff, layers, place, rms):
        super().__init__()
        p = ["post", "pre", "peri"][place]
        self.layers = nn.ModuleList(NormLayer(d, heads, ff, p, rms) for _ in range(layers))
        self.ln_f = make_norm(d, rms) if p != "post" else None

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.ln_f(x) if self.ln_f is not None else x


# ---- section 7: activations ----

class PreLNLayer(nn.Module):
    """x = x + attn(LN(x)); x = x + FFN(LN(x))."""

    def __init__(self, d, heads, mlp, causal=False):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = MHA(d, heads, causal)
        self.mlp = mlp

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Activations(nn.Module):
    def __init__(self, d, heads, ff, layers, act):
        super().__init__()
        name = ACTS[act]
        self.layers = nn.ModuleList(PreLNLayer(d, heads, ffn(d, ff, name)) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.ln_f(x)


# ---- section 8: MatFormer ----

class NestedMLP(nn.Module):
    """act(x W1[:, :w] + b1[:w]) W2[:w, :] + b2 with one full-width W1 [d, ff], W2 [ff, d]."""

    def __init__(self, d, ff, width):
        super().__init__()
        self.width = width
        self.fc, self.proj = Linear(d, ff), Linear(ff, d)

    def forward(self, x):
        w = self.width
        h = F.gelu(x @ self.fc.weight[:, :w] + self.fc.bias[:w])
        return h @ self.proj.weight[:w, :] + self.proj.bias


class MatFormer(nn.Module):
    def __init__(self, d, heads, ff, f0, f1):
        super().__init__()
        self.layers = nn.ModuleList(PreLNLayer(d, heads, NestedMLP(d, ff, ff // f)) for f in (f0, f1))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.ln_f(x)


# ---- section 5: Relaxed Recursive Transformer ----

class LoRALinear(nn.Module):
    """y = x W + b + (alpha / r) (x A_i) B_i: W tied across loop steps, A_i [in, r] and
    B_i [r, out] one per step i."""

    def __init__(self, i, o, steps, r, alpha):
        super().__init__()
        self.scale = alpha / r
        self.weight = nn.Parameter(torch.empty(i, o))
        self.bias = nn.Parameter(torch.empty(o))
        self.lora_a = nn.Parameter(torch.empty(steps, i, r))
        self.lora_b = nn.Parameter(torch.empty(steps, r, o))

    def forward(self, x, step):
        return x @ self.weight + self.bias + self.scale * ((x @ self.lora_a[step]) @ self.lora_b[step])


class RelaxedLayer(nn.Module):
    """Pre-LN causal decoder layer with a LoRALinear for every projection."""

    def __init__(self, d, heads, ff, steps, r, alpha):
        super().__init__()
        self.heads = heads
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.qkv = LoRALinear(d, 3 * d, steps, r, alpha)
        self.attn.proj = LoRALinear(d, d, steps, r, alpha)
        self.mlp = nn.Module()
        self.mlp.fc = LoRALinear(d, ff, steps, r, alpha)
        self.mlp.proj = LoRALinear(ff, d, steps, r, alpha)

    def forward(self, x, i):
        q, k, v = self.attn.qkv(self.ln_1(x), i).chunk(3, dim=-1)
        x = x + self.attn.proj(attention(q, k, v, self.heads, causal=True), i)
        return x + self.mlp.proj(F.gelu(self.mlp.fc(self.ln_2(x), i)), i)


class RelaxedRecursive(nn.Module):
    """`blocks` distinct layers looped layers / blocks times (CYCLE: 0, 1, 0, 1, ...)."""

    def __init__(self, d, heads, ff, layers, blocks, r, alpha):
        super().__init__()
        assert layers % blocks == 0
        self.loops = layers // blocks
        self.layers = nn.ModuleList(RelaxedLayer(d, heads, ff, self.loops, r, alpha) for _ in range(blocks))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, x):
        for i in range(self.loops):
            for layer in self.layers:
                x = layer(x, i)
        return self.ln_f(x)


# ---- section 4: Universal Transformer with ACT ----

class UniversalACT(nn.Module):
    """Graves' ACT over a shared pre-LN block, as in the Universal Transformer: at step t,
    s = h + e_t, p_t = sigmoid(s w_h + b_h), h_t = F(s). A token halts at the first t where
    sum_{i<=t} p_i >= 1 - eps (or at the last step); the halting step's weight is the
    remainder R = 1 - sum_{i<t} p_i. Output LN(sum_t w_t h_t); halted tokens stop changing."""

    def __init__(self, d, heads, ff, steps, eps):
        super().__init__()
        self.steps, self.eps = steps, eps
        self.step_emb = nn.Parameter(torch.empty(steps, d))
        self.halt = Linear(d, 1)
        self.block = PreLNLayer(d, heads, MLP(d, ff, "gelu"))
        self.ln_f = nn.LayerNorm(d)

    def forward(self, x):
        T, d = x.shape
        h, c, y, n = x, torch.zeros(T, 1), torch.zeros(T, d), torch.zeros(T, 1)
        halted = torch.zeros(T, 1, dtype=torch.bool)
        margin = math.inf
        for i in range(self.steps):
            s = h + self.step_emb[i]
            p = torch.sigmoid(self.halt(s))
            reach = c + p >= 1 - self.eps
            halt = reach | (i == self.steps - 1)
            w = torch.where(halt, 1 - c, p)
            hn = self.block(s)
            live = ~halted
            if live.any():
                margin = min(margin, (c + p - (1 - self.eps)).abs()[live].min().item())
            y = torch.where(live, y + w * hn, y)
            c = torch.where(live, c + w, c)
            n = torch.where(live, n + 1, n)
            h = torch.where(live, hn, h)
            halted = halted | (halt & live)
            if halted.all():
                break
        self.margin = margin
        return self.ln_f(y), n


# ---- weights and data ----

def randomize(model, seed, hp):
    """Seeded weights of unit-scale activations: matrices N(0, 1/fan_in) (fan_in is the
    second-to-last axis; LoRA B matrices 0.2 times that, so the update stays a correction
    of the tied weight at alpha / r up to 8), norm scales 1 + N(0, 0.1^2), biases N(0, 0.1^2), PolyCom
    coefficients 1/3 + N(0, 0.1^2), step embeddings N(0, 0.5^2); the ACT halting unit gets
    a larger spread (N(0, 4/d)) so that tokens halt at different steps."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            z = torch.randn(p.shape, generator=g)
            if name == "step_emb":
                p.copy_(z * 0.5)
            elif name == "halt.weight":
                p.copy_(z * 2.0 / math.sqrt(p.shape[0]))
            elif name.endswith("lora_b"):
                p.copy_(z * 0.2 / math.sqrt(p.shape[-2]))
            elif p.dim() >= 2:
                p.copy_(z / math.sqrt(p.shape[-2]))
            elif ".poly" in name and name.endswith("weight"):
                p.copy_(z * 0.1 + 1.0 / 3)
            elif name.endswith("weight"):
                p.copy_(z * 0.1 + 1.0)
            else:
                p.copy_(z * 0.1)


def build(name, hp):
    if name == "norms":
        return Norms(**hp)
    if name == "activations":
        return Activations(**hp)
    if name == "matformer":
        return MatFormer(**hp)
    if name == "relaxed_recursive":
        return RelaxedRecursive(**hp)
    return UniversalACT(**hp)


def main():
    args, hp, Ts = cli.parse("arch_basic.py", DEFAULTS)
    torch.manual_seed(args.seed)
    m = build(args.model, hp).eval()
    randomize(m, args.seed, hp)
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in m.state_dict().items()}
    st.save(os.path.join(args.outdir, "weights.safetensors"), weights)
    g = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        for T in Ts:
            x = torch.randn(T, hp["d"], generator=g)
            out = m(x)
            if args.model == "universal_act":
                out, n = out
                steps = [int(v) for v in n[:, 0].tolist()]
                np.savetxt(os.path.join(args.outdir, f"ponder_{T}.txt"), np.array(steps)[None], fmt="%d")
                if m.margin < 1e-4:
                    sys.exit(f"arch_basic.py: T={T}: a token is {m.margin:.2g} from the halting "
                             "threshold; pick another --seed")
                if T >= 5 and len(set(steps)) < 2:
                    sys.exit(f"arch_basic.py: T={T}: every token took {steps[0]} steps; the test "
                             "needs tokens that halt at different steps")
                print(f"T={T}: steps per token {steps}, threshold margin {m.margin:.3g}")
            np.save(os.path.join(args.outdir, f"x_{T}.npy"), x.numpy().astype(np.float32))
            np.save(os.path.join(args.outdir, f"out_{T}.npy"), out.numpy().astype(np.float32))
    print("wrote", args.outdir)


if __name__ == "__main__":
    main()
