#!/usr/bin/env bash
# Runs tfxrun, and so the runtime linked into each model.so, under valgrind: a
# hand-written model (generation, and an error path) and examples/looped.tfx compiled by
# tfxc. Fails on any invalid access or leak. Usage: valgrind.sh TFXC TFXRUN FAKE_LM.so OUTDIR
set -euo pipefail
tfxc=$1 tfxrun=$2 fake=$3 out=$4
mkdir -p "$out"
if ! command -v valgrind >/dev/null; then
    echo "valgrind is not installed (apt-get install valgrind)"
    exit 1
fi
vg=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect)
# the fake model's weights: bias [4] = 0, written without numpy
python3 - "$out/fake.safetensors" <<'PY'
import struct, sys
h = b'{"bias":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + bytes(16))
PY
"${vg[@]}" "$tfxrun" "$fake" --weights "$out/fake.safetensors" --tokens "1 2" --generate 6 --threads 2
set +e
"${vg[@]}" "$tfxrun" "$fake" --weights "$out/missing.safetensors" --tokens "1" 2>/dev/null
st=$?
set -e
[ "$st" -eq 1 ] || { echo "expected exit 1 from a missing weights file, got $st"; exit 1; }
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    "$tfxc" examples/looped.tfx -Dsteps=2 -Dd=32 --cpu=x86-64-v2 -o "$out/looped.so"  # valgrind lacks AVX-512
    /usr/bin/python3 tests/reference/gen_ref.py looped "$out" --T 5 -Dsteps=2 -Dd=32 >/dev/null
    "${vg[@]}" "$tfxrun" "$out/looped.so" --weights "$out/weights.safetensors" --input "x=$out/x_5.npy" \
        --save "$out/got.npy" --threads 2
else
    echo "note: PyTorch missing, the compiled-model part was not run"
    [ -z "${CI:-}" ] || exit 1
fi
echo "valgrind: clean"
