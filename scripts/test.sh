#!/usr/bin/env bash
# The test suite: set up (packages, model, build), run every default test
# (labels unit + model), then rebuild with AddressSanitizer + UBSan and run the
# unit tests again under the sanitizers, then fuzz every reader briefly
# (fuzz/, clang + libFuzzer; MEND_FUZZ_SECONDS per target, default 25, 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir build -LE slow -j2 --output-on-failure

if [ "${MEND_NO_SANITIZE:-0}" != 1 ]; then
    cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMEND_SANITIZE=ON >&2
    cmake --build build-asan -j"$(nproc)" >&2
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir build-asan -L unit -j2 --output-on-failure
fi

fuzz_secs=${MEND_FUZZ_SECONDS:-25}
if [ "$fuzz_secs" != 0 ] && command -v clang >/dev/null; then
    scripts/fuzz.sh all "$fuzz_secs"
fi
