#!/usr/bin/python3
"""PyTorch reference for Mixture-of-Recursions with expert-choice routing
(docs/architectures.md section 4.2, Bae et al. 2025), written from the equations, not
from the .tfx. With h^0 = x, the active set A_0 = all T positions, and for r = 1..3:

    g_t   = sigmoid(h_t W_r)                  for t in A_{r-1}
    A_r   = the k_r tokens of A_{r-1} with the largest g,  k_r = max(1, floor(beta_r T))
    h_t  <- h_t + g_t f(h_{A_r})_t             for t in A_r (others unchanged)

f is the shared block's residual update on the kept tokens only (in their original order,
attention among them, causal when decoder = 1):

    a = MHA(RMSNorm(h; n1)) Wo,   f = a + SwiGLU(RMSNorm(h + a; n2) W_in) W_out

and the output is RMSNorm(h; norm_f). Computed with a boolean active mask and index
lists (torch.argsort, torch.sort), no code shared with the compiled model.

    /usr/bin/python3 tests/reference/arch_mor.py mor OUTDIR --T 1,5,33 [-Dbeta2=0.4 ...]

OUTDIR gets weights.safetensors and, per T, x_T.npy, out_T.npy and depth_T.txt (the
number of steps each token got). It exits with an error when the tokens' depths are all
equal at T >= 4 (the test would not show routing), or when a kept and a dropped token's
scores lie within 1e-4 (f32 rounding could then flip the choice). Float64 computation;
float32 files."""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from arch_attn import DT, Weights  # noqa: E402
import cli  # noqa: E402
import st  # noqa: E402

DEFAULTS = dict(d=32, heads=4, ff=64, decoder=1, beta1=1.0, beta2=0.5, beta3=0.25)
MARGIN = 1e-4


def rmsnorm(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * w


def update(W, h, hp):
    """f(h) on the N kept tokens h: [N, d]."""
    N, d = h.shape
    H = hp["heads"]
    q, k, v = (rmsnorm(h, W.get("n1", (d,), "scale")) @ W.get("qkv", (d, 3 * d))).split(d, dim=-1)
    q, k, v = (t.reshape(N, H, d // H).transpose(0, 1) for t in (q, k, v))
    s = q @ k.transpose(1, 2) / math.sqrt(d // H)
    if hp["decoder"]:
        s = s.masked_fill(~torch.ones(N, N, dtype=torch.bool).tril(), float("-inf"))
    a = (F.softmax(s, dim=-1) @ v).transpose(0, 1).reshape(N, d) @ W.get("wo", (d, d))
    u = rmsnorm(h + a, W.get("n2", (d,), "scale")) @ W.get("w_in", (d, 2 * hp["ff"]))
    gate, up = u.split(hp["ff"], dim=-1)
    return a + (F.silu(gate) * up) @ W.get("w_out", (hp["ff"], d))


def mor(W, x, hp):
    T, d = x.shape
    if "router" not in W.w:                     # [3, d, 1], N(0, 1/d): logits O(1)
        W.w["router"] = (torch.randn((3, d, 1), generator=W.g, dtype=DT) / math.sqrt(d)).float().double()
    router = W.w["router"]
    h = x.clone()
    act = torch.arange(T)                       # A_0, ascending positions
    depth = torch.zeros(T, dtype=torch.long)
    for r, beta in enumerate((hp["beta1"], hp["beta2"], hp["beta3"])):
        k = max(1, int(math.floor(beta * T)))
        g = torch.sigmoid(h[act] @ router[r]).reshape(-1)    # scores of the active tokens
        order = torch.argsort(g, descending=True)
        if k < len(act) and g[order[k - 1]] - g[order[k]] < MARGIN:
            sys.exit(f"arch_mor.py: T = {T}, step {r + 1}: kept and dropped scores within {MARGIN}")
        top = order[:k]
        sel = act[top].sort().values               # kept tokens in their original order
        gs = torch.sigmoid(h[sel] @ router[r])     # [k, 1], the gates of the kept tokens
        h = h.clone()
        h[sel] = h[sel] + gs * update(W, h[sel], hp)
        depth[sel] += 1
        act = sel
    return rmsnorm(h, W.get("norm_f", (d,), "scale")), depth


def main():
    args, hp, Ts = cli.parse("arch_mor.py", {"mor": DEFAULTS})
    W = Weights(args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    with torch.no_grad():
        for T in Ts:
            x = torch.randn(T, hp["d"], generator=g, dtype=DT).float().double()
            out, depth = mor(W, x, hp)
            if T >= 4 and len(set(depth.tolist())) < 2:
                sys.exit(f"arch_mor.py: T = {T}: every token got {depth[0]} steps")
            np.save(os.path.join(args.outdir, f"x_{T}.npy"), x.numpy().astype(np.float32))
            np.save(os.path.join(args.outdir, f"out_{T}.npy"), out.numpy().astype(np.float32))
            with open(os.path.join(args.outdir, f"depth_{T}.txt"), "w") as f:
                f.write(" ".join(str(v) for v in depth.tolist()) + "\n")
    st.save(os.path.join(args.outdir, "weights.safetensors"), W.numpy())
    print("wrote", args.outdir, "for T =", Ts)


if __name__ == "__main__":
    main()
