"""The command line every reference script takes, as test_*.c and scripts call them:

    SCRIPT MODEL OUTDIR [--T 1,5] [--seed N] [-Dname=value ...]

The -D overrides are the model's hyperparameters as given to tfxc."""
import argparse
import os
import sys


def number(v):
    """An int when the text is one, else a float."""
    try:
        return int(v)
    except ValueError:
        return float(v)


def parse(script, defaults, default_T="1,5", strict=True):
    """defaults: model name -> hyperparameter dict. Returns (args, hp, Ts) and creates
    args.outdir. With strict, a -D that names no hyperparameter of the model exits with
    `SCRIPT: MODEL has no hyperparameter 'NAME'`."""
    ap = argparse.ArgumentParser(prog=script)
    ap.add_argument("model", choices=sorted(defaults))
    ap.add_argument("outdir")
    ap.add_argument("--T", default=default_T)
    ap.add_argument("--seed", type=int, default=0)
    args, defines = ap.parse_known_args()
    hp = dict(defaults[args.model])
    for d in defines:
        k, v = d[2:].split("=")
        if strict and k not in hp:
            sys.exit(f"{script}: {args.model} has no hyperparameter '{k}'")
        hp[k] = number(v)
    os.makedirs(args.outdir, exist_ok=True)
    return args, hp, [int(t) for t in args.T.split(",")]
