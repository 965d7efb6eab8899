#!/usr/bin/env bash
# The main job: build tfxc, compile examples/gpt2.tfx at the demo model's size into a
# native model.so, and generate text with tfxrun from the weights in models/ (a tiny
# byte-level GPT-2 trained by scripts/train_demo.py on Debian's fortunes-min).
#   bash scripts/demo.sh ["PROMPT"] [TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh >/dev/null
cmake -S . -B build -G Ninja >/dev/null
cmake --build build >/dev/null
hp="-Dvocab=256 -Dctx=128 -Dd=128 -Dheads=4 -Dlayers=4"
echo "+ build/tfxc examples/gpt2.tfx $hp -o build/demo.so"
./build/tfxc examples/gpt2.tfx $hp -o build/demo.so
echo "+ build/tools/tfxrun build/demo.so --weights models/demo.safetensors --prompt ... --generate ${2:-300} --slide"
./build/tools/tfxrun build/demo.so --weights models/demo.safetensors \
    --prompt "${1:-Q: What is the meaning of life?}" --generate "${2:-300}" --slide
