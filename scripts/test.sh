#!/usr/bin/env bash
# Sets up, builds (warnings are errors) and runs the whole test suite.
#   bash scripts/test.sh            normal build in build/
#   bash scripts/test.sh --asan     AddressSanitizer + UBSan build in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/check_error_tests.sh
dir=build
flags=(-DTFX_WERROR=ON)
if [ "${1:-}" = "--asan" ]; then
    dir=build-asan
    flags+=(-DTFX_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
fi
cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
cmake --build "$dir"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$dir" --output-on-failure -j2
