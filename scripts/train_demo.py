#!/usr/bin/python3
"""Trains the demo model: a tiny byte-level GPT-2 (examples/gpt2.tfx with
-Dvocab=256 -Dctx=128 -Dd=128 -Dheads=4 -Dlayers=4) on the fortune cookies, literature
quotes and riddles of Debian's `fortunes-min` package (BSD-3-Clause, Regents of the
University of California; see /usr/share/doc/fortunes-min/copyright), and writes
models/demo.safetensors. Deterministic for a given torch build: seeded, one thread.

    apt-get install fortunes-min python3-torch
    /usr/bin/python3 scripts/train_demo.py [--steps N]
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "reference"))
import gpt  # noqa: E402
import st   # noqa: E402

HP = dict(vocab=256, ctx=128, d=128, heads=4, layers=4)
CORPUS = ["/usr/share/games/fortunes/fortunes", "/usr/share/games/fortunes/literature",
          "/usr/share/games/fortunes/riddles"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "models", "demo.safetensors"))
    args = ap.parse_args()
    torch.manual_seed(1234)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    data = b"".join(open(p, "rb").read() for p in CORPUS)
    data = torch.tensor(list(data), dtype=torch.long)
    model = gpt.GPT(**HP)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.steps, pct_start=0.05)
    B, T = 32, HP["ctx"]
    g = torch.Generator().manual_seed(42)
    t0 = time.time()
    for step in range(args.steps):
        ix = torch.randint(len(data) - T - 1, (B,), generator=g)
        x = torch.stack([data[i:i + T] for i in ix])
        y = torch.stack([data[i + 1:i + T + 1] for i in ix])
        loss = F.cross_entropy(model(x).reshape(-1, HP["vocab"]), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.time() - t0:.0f}s", flush=True)
    w = model.weights()
    st.save(args.out, w, metadata={"hparams": " ".join(f"-D{k}={v}" for k, v in HP.items()),
                                   "corpus": "Debian fortunes-min (BSD-3-Clause)",
                                   "tokenizer": "bytes"})
    print("wrote", args.out, sum(v.size for v in w.values()), "parameters")


if __name__ == "__main__":
    main()
