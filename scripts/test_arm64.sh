#!/usr/bin/env bash
# The ARM64 (AArch64) stage of the suite. On an x86-64 machine it
# cross-compiles mend with Debian's aarch64-linux-gnu toolchain into
# build-arm64 (cmake/aarch64-linux-gnu.cmake) and runs the kernel tests
# (test_quants, test_qmatmul, test_qgemm, test_sgemm) under qemu-user at
# every ARM instruction-set level: NEON with the dot-product extension
# (qemu's "max" CPU has it), the same with MEND_ISA=neon-nodotprod, the
# portable C with MEND_ISA=scalar, and NEON on a CPU without the extension
# (qemu's cortex-a53), where detection must leave it out. It also checks
# what `mend --version` reports on both emulated CPUs and that
# MEND_ISA=neon-dotprod is refused on the one without it. Under emulation
# this proves correctness only: no timing here says anything about ARM
# hardware. On an ARM64 machine it builds natively into build-arm64 and
# runs the same levels on the CPU itself.
#
#   scripts/test_arm64.sh                   # kernel tests at every level (a few minutes)
#   MEND_ARM64_SUITE=1 scripts/test_arm64.sh   # then the unit tests once, NEON + dotprod
#                                           # (about 10 more minutes on 2 cores)
#
# Missing packages (the cross compiler, qemu-user and the arm64 libraries of
# Debian multiarch: OpenBLAS, LAPACKE, jansson, PCRE2, libgomp) are
# installed with apt-get, after `dpkg --add-architecture arm64` and
# `apt-get update`; their output, cmake's and ninja's go to
# $MEND_HOME/logs/test_arm64.log (the end of it is printed when a step
# fails). Where apt-get cannot run (not root and no sudo, or
# MEND_SKIP_APT=1) and a package is missing, the stage says so and is
# skipped (exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/log.sh
log_open test_arm64
start=$SECONDS

KERNEL_TESTS=(test_quants test_qmatmul test_qgemm test_sgemm)
native=0
[ "$(uname -m)" = aarch64 ] && native=1

if [ "$native" = 1 ]; then
    PKGS=(build-essential cmake ninja-build pkg-config libopenblas-dev liblapacke-dev libjansson-dev libpcre2-dev)
else
    PKGS=(cmake ninja-build pkg-config gcc-aarch64-linux-gnu qemu-user libc6-dev:arm64 libopenblas-dev:arm64
          liblapacke-dev:arm64 libjansson-dev:arm64 libpcre2-dev:arm64 libgomp1:arm64)
fi
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; else SUDO=none; fi
    fi
    if [ "${MEND_SKIP_APT:-0}" = 1 ] || [ "$SUDO" = none ] || ! command -v apt-get >/dev/null; then
        say "SKIPPED: the ARM64 stage needs ${missing[*]}, and apt-get cannot install them here" \
            "(not root and no sudo, MEND_SKIP_APT=1, or no apt-get); install them and run scripts/test_arm64.sh"
        exit 0
    fi
    say "installing ${missing[*]} (apt-get; log: $LOG_FILE)"
    if [ "$native" = 0 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
        quietly "dpkg --add-architecture arm64" $SUDO dpkg --add-architecture arm64
    fi
    quietly "apt-get update" $SUDO apt-get update
    quietly "apt-get install" $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

cfg=(-S . -B build-arm64 -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEND_SHARED=OFF)
[ "$native" = 0 ] && cfg+=(-DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake)
quietly "cmake (configure, arm64)" cmake "${cfg[@]}"
targets=(mend "${KERNEL_TESTS[@]}")
[ "${MEND_ARM64_SUITE:-0}" = 1 ] && targets=(all)
quietly "the arm64 build" cmake --build build-arm64 -j2 --target "${targets[@]}"
say "built build-arm64 ($((SECONDS - start)) s; log: $LOG_FILE)"

# One kernel-test pass: QEMU_CPU picks the emulated CPU (ignored natively),
# MEND_ISA the level.
tests_re="^($(IFS='|'; echo "${KERNEL_TESTS[*]}"))\$"
pass() {
    local cpu=$1 isa=$2 what=$3
    echo "== arm64 kernel tests: $what"
    QEMU_CPU=$cpu MEND_ISA=$isa ctest --test-dir build-arm64 -R "$tests_re" -j2 --output-on-failure
}

# the isa line of `mend --version` on an emulated CPU
isa_of() { QEMU_CPU=$1 qemu-aarch64 -L / build-arm64/mend --version | sed -n 's/^isa: //p'; }

if [ "$native" = 1 ]; then
    dotprod=0
    grep -qw asimddp /proc/cpuinfo && dotprod=1
    if [ "$dotprod" = 1 ]; then
        pass host "" "this CPU, neon + dotprod"
        pass host neon-nodotprod "this CPU, MEND_ISA=neon-nodotprod"
    else
        pass host "" "this CPU, neon (no dotprod)"
    fi
    pass host scalar "this CPU, MEND_ISA=scalar"
    exit 0
fi

# detection on both emulated CPUs, as mend reports it
got_max=$(isa_of max) got_a53=$(isa_of cortex-a53)
echo "== arm64 detection: qemu max -> '$got_max', qemu cortex-a53 -> '$got_a53'"
if [ "$got_max" != "neon (dotprod)" ] || [ "$got_a53" != neon ]; then
    say "FAILED: mend --version reports '$got_max' on qemu's max CPU (want 'neon (dotprod)')" \
        "and '$got_a53' on cortex-a53 (want 'neon')"
    exit 1
fi
if QEMU_CPU=cortex-a53 MEND_ISA=neon-dotprod qemu-aarch64 -L / build-arm64/mend --version >/dev/null 2>&1; then
    say "FAILED: MEND_ISA=neon-dotprod was accepted on a CPU without the dot-product extension"
    exit 1
fi

pass max "" "qemu max CPU, neon + dotprod"
pass max neon-nodotprod "qemu max CPU, MEND_ISA=neon-nodotprod"
pass max scalar "qemu max CPU, MEND_ISA=scalar"
pass cortex-a53 "" "qemu cortex-a53 (no dotprod), neon"

# The tests start mend through build-arm64/mend-emulated (tests/CMakeLists.txt);
# `mend repair` starts itself again through /proc/self/exe, which only a host
# with qemu registered in binfmt_misc can run, so the two tests of repair
# are left out.
if [ "${MEND_ARM64_SUITE:-0}" = 1 ]; then
    echo "== arm64: every unit test but the repair ones, qemu max CPU (neon + dotprod)"
    QEMU_CPU=max ctest --test-dir build-arm64 -L unit -E '^test_(cli_fingerprint|kill_resume)$' -j2 \
        --output-on-failure
fi
say "passed ($((SECONDS - start)) s)"
