#!/usr/bin/env bash
# Installs every Debian package tfxc needs to build and test. Runs as root on a fresh
# Debian 12 (uses sudo otherwise); safe to run again: apt skips what is installed.
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config flex bison llvm-19-dev
      libcriterion-dev graphviz python3-numpy python3-torch valgrind)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all packages present"
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
