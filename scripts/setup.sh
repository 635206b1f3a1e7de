#!/usr/bin/env bash
# Set up mend on a fresh Debian machine: system packages, the default model,
# and a Release build in ./build. Idempotent: re-running skips what is done.
#
#   scripts/setup.sh              # packages + model + build
#   MEND_SKIP_APT=1 scripts/setup.sh   # when the packages are known present
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake ninja-build pkg-config git python3 python3-pip python3-venv
      libopenblas-dev liblapacke-dev libjansson-dev libpcre2-dev gnuplot-nox clang)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${MEND_SKIP_APT:-0}" != 1 ] && [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

scripts/fetch_model.sh

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >&2
cmake --build build -j"$(nproc)" >&2
echo "setup: build ready in build/ (mend binary: build/mend)" >&2
