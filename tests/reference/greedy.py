#!/usr/bin/python3
"""Greedy continuation of a byte-level prompt by the demo model in PyTorch, printed
as token ids (one line, space-separated), for comparison with tfxrun's --generate.

    /usr/bin/python3 tests/reference/greedy.py models/demo.safetensors "PROMPT" N
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import gpt  # noqa: E402
import st   # noqa: E402


def main():
    path, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    w, meta = st.load(path)
    hp = dict(kv[2:].split("=") for kv in meta["hparams"].split())
    model = gpt.GPT(**{k: int(v) for k, v in hp.items()}).eval()
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w.items()})
    tokens = list(prompt.encode())
    out = []
    with torch.no_grad():
        for _ in range(n):
            if len(tokens) >= model.ctx:
                break
            logits = model(torch.tensor([tokens]))[0, -1]
            t = int(torch.argmax(logits))
            tokens.append(t)
            out.append(t)
    print(" ".join(str(t) for t in out))


if __name__ == "__main__":
    main()
