#!/usr/bin/env bash
# Set up mend on a fresh Debian machine: system packages, the default model,
# and a Release build in ./build. Idempotent: re-running skips what is done,
# and when everything is there it takes about a second and prints one line
# (it runs at the start of scripts/test.sh and scripts/run.sh).
#
#   scripts/setup.sh              # packages + model + build
#   MEND_SKIP_APT=1 scripts/setup.sh   # when the packages are known present
#
# It prints a few lines of its own on stderr; the output of apt-get, cmake and
# ninja goes to $MEND_HOME/logs/setup.log (MEND_HOME defaults to
# ~/.cache/mend). When a step fails, the end of that log (and the first
# compiler or CMake error, when it lies further up) is printed and the script
# exits non-zero. The count of compiler warnings is reported after a build.
#
# MEND_EXTRA_PKGS="a b" adds Debian packages to the list (a name that does not
# exist is a quick way to see the failure path).
#
# The Python peers (fixture scripts, benchmarks) have their own venv:
# scripts/pyenv.sh. mend does not need it to build, run or test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/log.sh
log_open setup
start=$SECONDS

PKGS=(build-essential cmake ninja-build pkg-config git python3 python3-pip python3-venv
      libopenblas-dev liblapacke-dev libjansson-dev libpcre2-dev gnuplot-nox clang libomp-dev)
read -ra extra <<< "${MEND_EXTRA_PKGS:-}"
PKGS+=("${extra[@]}")

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${MEND_SKIP_APT:-0}" != 1 ] && [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt-get; log: $LOG_FILE)"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    quietly "apt-get update" $SUDO apt-get update
    quietly "apt-get install" $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

model=$(scripts/fetch_model.sh)

quietly "cmake (configure)" cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
mark=$(wc -l < "$LOG_FILE")
quietly "the build" cmake --build build -j"$(nproc)"
if tail -n +"$((mark + 1))" "$LOG_FILE" | grep -q 'ninja: no work to do'; then
    say "up to date: build/mend, model $model ($((SECONDS - start)) s)"
else
    warnings=$(tail -n +"$((mark + 1))" "$LOG_FILE" | grep -c 'warning:' || true)
    note=""
    [ "$warnings" != 0 ] && note=", $warnings compiler warnings"
    say "build ready in build/ (mend binary: build/mend$note; log: $LOG_FILE), model $model ($((SECONDS - start)) s)"
fi
