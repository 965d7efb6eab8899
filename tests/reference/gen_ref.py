#!/usr/bin/python3
"""Writes PyTorch reference data for an example model: seeded random weights as
safetensors under the example's checkpoint names, inputs and expected outputs.

    /usr/bin/python3 tests/reference/gen_ref.py gpt2 OUTDIR --T 1,7 [-Dname=value ...]
    /usr/bin/python3 tests/reference/gen_ref.py encoder OUTDIR --T 5 [-Dpost=0]
    /usr/bin/python3 tests/reference/gen_ref.py looped OUTDIR --T 9

OUTDIR gets weights.safetensors, and per T: tokens_T.txt (token ids) or x_T.npy (float
input), and out_T.npy (the first output). PyTorch's own modules are used where they
exist: nn.LayerNorm and F.gelu in gpt.py, nn.TransformerEncoder for the encoder."""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import gpt  # noqa: E402
import cli  # noqa: E402
import st   # noqa: E402

DEFAULTS = {
    "gpt2": dict(vocab=50257, ctx=1024, d=768, heads=12, layers=12),
    "encoder": dict(d=256, heads=4, ff=1024, layers=4, post=1),
    "looped": dict(d=128, heads=4, steps=6),
}


class LoopedRef(nn.Module):
    """examples/looped.tfx: one pre-LN block (MHA + GELU MLP) applied `steps` times with
    shared weights, a learned per-step embedding added before each step, final LN."""

    def __init__(self, d, heads, steps):
        super().__init__()
        self.steps = steps
        self.step_emb = nn.Parameter(torch.randn(steps, d) * 0.1)
        self.block = gpt.Block(d, heads)
        self.ln_f = nn.LayerNorm(d)

    def forward(self, x):                      # x: [T, d]
        for i in range(self.steps):
            x = self.block.forward_bidir(x + self.step_emb[i])
        return self.ln_f(x)


def block_forward_bidir(self, x):
    """gpt.Block without the causal mask, names as std.nn's mha/mlp (qkv, proj, fc)."""
    D = x.shape[-1]
    h = self.ln_1(x)
    q, k, v = (h @ self.attn.c_attn.weight + self.attn.c_attn.bias).split(D, dim=-1)
    H = self.attn.heads
    q, k, v = (t.view(-1, H, D // H).transpose(0, 1) for t in (q, k, v))
    a = F.softmax(q @ k.transpose(-2, -1) / (D // H) ** 0.5, dim=-1) @ v
    x = x + a.transpose(0, 1).reshape(-1, D) @ self.attn.c_proj.weight + self.attn.c_proj.bias
    h = F.gelu(self.ln_2(x) @ self.mlp.c_fc.weight + self.mlp.c_fc.bias)
    return x + h @ self.mlp.c_proj.weight + self.mlp.c_proj.bias


gpt.Block.forward_bidir = block_forward_bidir


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            scale = 0.02 if p.dim() >= 2 else 0.1
            p.copy_(torch.randn(p.shape, generator=g) * scale + (1.0 if name.endswith("norm1.weight") or
                    name.endswith("norm2.weight") or name.endswith("ln_1.weight") or
                    name.endswith("ln_2.weight") or name.endswith("ln_f.weight") else 0.0))


def looped_names(w):
    """gpt.Block's names -> the names examples/looped.tfx gives (block.attn.qkv.weight...)."""
    ren = {"attn.c_attn.": "attn.qkv.", "attn.c_proj.": "attn.proj.", "mlp.c_fc.": "mlp.fc.",
           "mlp.c_proj.": "mlp.proj."}
    out = {}
    for k, v in w.items():
        for a, b in ren.items():
            k = k.replace(a, b)
        out[k] = v
    return out


def main():
    args, hp, Ts = cli.parse("gen_ref.py", DEFAULTS, default_T="1,7", strict=False)
    torch.manual_seed(args.seed)
    if args.model == "gpt2":
        m = gpt.GPT(**hp).eval()
        randomize(m, args.seed)
        weights = m.weights()
    elif args.model == "encoder":
        layer = nn.TransformerEncoderLayer(hp["d"], hp["heads"], hp["ff"], dropout=0.0,
                                           activation="relu", batch_first=True,
                                           norm_first=not hp["post"])
        m = nn.TransformerEncoder(layer, hp["layers"], enable_nested_tensor=False).eval()
        randomize(m, args.seed)
        weights = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    else:
        m = LoopedRef(hp["d"], hp["heads"], hp["steps"]).eval()
        randomize(m, args.seed)
        weights = looped_names({k: v.detach().numpy() for k, v in m.state_dict().items()})
    st.save(os.path.join(args.outdir, "weights.safetensors"), weights)
    g = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        for T in Ts:
            if args.model == "gpt2":
                tok = torch.randint(hp["vocab"], (1, T), generator=g)
                out = m(tok)[0]
                np.savetxt(os.path.join(args.outdir, f"tokens_{T}.txt"), tok[0].numpy()[None], fmt="%d")
            else:
                x = torch.randn(T, hp["d"], generator=g)
                out = m(x[None])[0] if args.model == "encoder" else m(x)
                np.save(os.path.join(args.outdir, f"x_{T}.npy"), x.numpy().astype(np.float32))
            np.save(os.path.join(args.outdir, f"out_{T}.npy"), out.numpy().astype(np.float32))
    print("wrote", args.outdir, "for T =", Ts)


if __name__ == "__main__":
    main()
