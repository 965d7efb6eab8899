#!/usr/bin/env bash
# The main job: build tfxc, compile the GPT-2 example and show what it becomes.
# (Native code generation arrives with the CPU backend; today the pipeline ends at the
# optimised graph IR.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build >/dev/null
./build/tfxc examples/gpt2.tfx --emit=ir -o build/gpt2.ir
./build/tfxc examples/gpt2.tfx --emit=dot -o build/gpt2.dot
dot -Tsvg build/gpt2.dot -o build/gpt2.svg
echo "== weights of examples/gpt2.tfx (first 12) =="
grep '^weight' build/gpt2.ir | head -12
echo "== the graph IR: build/gpt2.ir ($(wc -l < build/gpt2.ir) lines), the picture: build/gpt2.svg =="
sed -n '/^func @main/,$p' build/gpt2.ir | head -40
