#!/usr/bin/env bash
# Build the llama.cpp peer tools used by bench/ and docs/ppl.md.
#
# Source: the llama-cpp-python sdist from PyPI, which vendors a pinned
# llama.cpp tree. Nothing from it is committed; everything lives under
# $MEND_PEERS (default /opt/mend-peers):
#   src/     the sdist and its unpacked tree
#   build/   the CMake build directory
#   bin/     llama-perplexity llama-bench llama-simple llama-completion
#            llama-cli (when the tree builds it) llama-quantize llama-imatrix
#   VERSION  "llama-cpp-python <version>" of the build in bin/ (then " (<isa>)"
#            unless native)
#
# Idempotent: re-running with the same version only checks that bin/ is
# complete. Environment:
#   MEND_PEERS_ISA              native (default): -march=native, whatever this CPU
#                               has; avx2: AVX2 + FMA + F16C + BMI2 + AVX-VNNI and no
#                               AVX-512, the peer for mend at MEND_ISA=avx2 (an
#                               AVX2-only CPU measured on an AVX-512 one);
#                               avx512: that plus AVX-512 F/BW/VL/VBMI/VNNI/BF16 and
#                               no AMX (ggml's AMX path, which -march=native turns
#                               on, crashed in llama-bench on a Xeon with AMX)
#   MEND_PEERS                  install prefix (default /opt/mend-peers, or
#                               /opt/mend-peers-<isa> for another MEND_PEERS_ISA)
#   LLAMA_CPP_PYTHON_VERSION    sdist version (default 0.3.36; "latest" for the newest)
#   PIP                         pip command, only to download the sdist (default:
#                               the peer venv's pip when scripts/pyenv.sh made it,
#                               else python3 -m pip; the venv is not created for this)
#   JOBS                        build parallelism (default 2)
#
# A few lines of its own go to stderr; the output of pip, cmake and the build
# goes to $MEND_HOME/logs/peers.log (MEND_HOME defaults to ~/.cache/mend), and
# when a step fails its end is printed (with the first compiler error) and the
# script exits non-zero.
set -euo pipefail
. "$(dirname "$0")/lib/log.sh"

ISA="${MEND_PEERS_ISA:-native}"
case "$ISA" in
  native) PEERS="${MEND_PEERS:-/opt/mend-peers}"
          ISA_FLAGS=(-DGGML_NATIVE=ON) ;;
  avx2)   PEERS="${MEND_PEERS:-/opt/mend-peers-avx2}"
          ISA_FLAGS=(-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
                     -DGGML_BMI2=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF
                     -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF) ;;
  avx512) PEERS="${MEND_PEERS:-/opt/mend-peers-avx512}"
          ISA_FLAGS=(-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
                     -DGGML_BMI2=ON -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON
                     -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF
                     -DGGML_AMX_BF16=OFF) ;;
  *) echo "peers.sh: MEND_PEERS_ISA '$ISA' is not known (expected native, avx2 or avx512)" >&2; exit 2 ;;
esac
STAMP_ISA=""; [[ "$ISA" == native ]] || STAMP_ISA=" ($ISA)"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
JOBS="${JOBS:-2}"
if [[ -z "${PIP:-}" ]]; then
  venv="${MEND_PYENV:-${MEND_HOME:-$HOME/.cache/mend}/pyenv}"
  if [[ -x "$venv/bin/pip" ]]; then PIP="$venv/bin/pip"; else PIP="python3 -m pip"; fi
fi

# Tools we need, and the ones that are optional (target names differ across
# llama.cpp versions: llama-cli moved behind LLAMA_BUILD_SERVER).
REQUIRED=(llama-perplexity llama-bench llama-quantize llama-imatrix llama-simple)
OPTIONAL=(llama-completion llama-cli)

log_open peers
log() { say "$@"; }

stamp="llama-cpp-python ${VERSION}${STAMP_ISA}"
if [[ -f "$PEERS/VERSION" && "$(cat "$PEERS/VERSION")" == "$stamp" ]]; then
  ok=1
  for t in "${REQUIRED[@]}"; do [[ -x "$PEERS/bin/$t" ]] || ok=0; done
  if [[ $ok == 1 ]]; then
    log "up to date ($stamp) in $PEERS/bin"
    exit 0
  fi
fi

mkdir -p "$PEERS/src" "$PEERS/bin"

# 1. the sdist
spec="llama-cpp-python"
[[ "$VERSION" != latest ]] && spec="llama-cpp-python==${VERSION}"
sdist=""
if [[ "$VERSION" != latest ]]; then
  sdist=$(ls "$PEERS/src"/llama_cpp_python-"${VERSION}".tar.gz 2>/dev/null | head -1 || true)
fi
if [[ -z "$sdist" ]]; then
  log "downloading $spec (sdist) from PyPI; log: $LOG_FILE"
  quietly "pip download" $PIP download --no-binary :all: --no-deps "$spec" -d "$PEERS/src"
  sdist=$(ls -t "$PEERS/src"/llama_cpp_python-*.tar.gz | head -1)
fi
VERSION=$(basename "$sdist" .tar.gz); VERSION=${VERSION#llama_cpp_python-}
stamp="llama-cpp-python ${VERSION}${STAMP_ISA}"
tree="$PEERS/src/llama_cpp_python-${VERSION}"

# 2. unpack
if [[ ! -f "$tree/vendor/llama.cpp/CMakeLists.txt" ]]; then
  log "unpacking $(basename "$sdist")"
  quietly "unpacking" tar -xzf "$sdist" -C "$PEERS/src"
fi
[[ -f "$tree/vendor/llama.cpp/CMakeLists.txt" ]] || { log "no vendor/llama.cpp in $sdist"; exit 1; }

# 3. configure + build only the tools (static, $ISA, no network code)
build="$PEERS/build"
log "configuring llama.cpp ($ISA) from $tree/vendor/llama.cpp; log: $LOG_FILE"
quietly "cmake (configure)" cmake -S "$tree/vendor/llama.cpp" -B "$build" \
  -DCMAKE_BUILD_TYPE=Release "${ISA_FLAGS[@]}" -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF

available=$(cmake --build "$build" --target help 2>/dev/null || true)
targets=("${REQUIRED[@]}")
for t in "${OPTIONAL[@]}"; do
  if grep -qw -- "$t" <<<"$available"; then targets+=("$t"); fi
done
log "building ${targets[*]} with -j$JOBS"
quietly "the build" cmake --build "$build" --config Release -j "$JOBS" --target "${targets[@]}"

# 4. install into bin/
for t in "${targets[@]}"; do
  f=$(find "$build" -type f -name "$t" -perm -u+x | head -1)
  [[ -n "$f" ]] || { log "built $t not found under $build"; exit 1; }
  install -m 0755 "$f" "$PEERS/bin/$t"
done
printf '%s\n' "$stamp" > "$PEERS/VERSION"
log "installed ${targets[*]} ($stamp) into $PEERS/bin"
