#!/usr/bin/env bash
# The test suite: set up (packages, model, build), run every default test
# (labels unit + model), then the unit tests again on each narrower
# instruction set the CPU has (MEND_ISA=avx2, MEND_ISA=scalar: the kernels'
# other paths), then rebuild with AddressSanitizer + UBSan and run the
# unit tests again under the sanitizers, then fuzz every reader briefly and
# reproducibly (fuzz/, clang + libFuzzer: `scripts/fuzz.sh ci` replays the
# committed seeds and crash reproducers, then runs a fixed number of
# executions from a fixed seed; MEND_FUZZ_SEED picks another seed,
# MEND_FUZZ=0 skips the stage).
# After the instruction-set passes, the ARM64 stage (scripts/test_arm64.sh:
# cross-compiled, the kernel tests under qemu-user at every ARM level;
# MEND_ARM64=0 skips it). Then the Python package:
# scripts/python_test.sh installs ./python (pip, which builds libmend.so) into
# a venv over the peer venv of scripts/pyenv.sh (created on first use: torch
# and transformers, the references of python/tests) and runs pytest;
# MEND_PYTHON=0 skips the stage.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir build -LE slow -j2 --output-on-failure

# `mend info --isa` lists the levels narrowest first; the last is the one the
# run above used. The scalar pass leaves out the compress / prune / kill-and-
# resume tests: minutes each on the portable kernels, and what they run on
# top of the kernels is the same code at every level (test_sgemm and
# test_quants compare the kernels level against level, test_cli_idp the
# batched scoring).
isa_levels=$(build/mend info --isa)
isa_top=$(printf '%s\n' "$isa_levels" | tail -n 1)
for isa in $(printf '%s\n' "$isa_levels" | tac); do
    [ "$isa" = "$isa_top" ] && continue
    echo "== tests on MEND_ISA=$isa (this CPU: $isa_top)"
    # avx2: the whole default suite (unit + model), as an AVX2-only CPU runs it
    labels=(-LE slow)
    skip=()
    if [ "$isa" = scalar ]; then
        labels=(-L unit)
        skip=(-E '^test_(kill_resume|compress|prune|prune_compress|gptq)$')
    fi
    MEND_ISA=$isa ctest --test-dir build "${labels[@]}" ${skip[@]+"${skip[@]}"} -j2 --output-on-failure
done

# ARM64: the kernels cross-compiled for AArch64 and their tests run under
# qemu-user at every ARM level (neon + dotprod, neon, scalar; detection on a
# CPU with and one without the dot product). A few minutes; MEND_ARM64=0
# skips it.
if [ "${MEND_ARM64:-1}" != 0 ]; then
    echo "== ARM64 kernels (scripts/test_arm64.sh)"
    scripts/test_arm64.sh
fi

if [ "${MEND_PYTHON:-1}" != 0 ]; then
    echo "== the Python package (python/)"
    scripts/python_test.sh
fi

if [ "${MEND_NO_SANITIZE:-0}" != 1 ]; then
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMEND_SANITIZE=ON >&2
    cmake --build build-asan -j"$(nproc)" >&2
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir build-asan -L unit -j2 --output-on-failure
fi

# (MEND_FUZZ_SECONDS=0, the older switch, also skips it; time-bounded
# campaigns with random seeds are scripts/fuzz.sh TARGET SECONDS)
if [ "${MEND_FUZZ:-1}" != 0 ] && [ "${MEND_FUZZ_SECONDS:-}" != 0 ] && command -v clang >/dev/null; then
    scripts/fuzz.sh ci all
fi
