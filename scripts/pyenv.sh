#!/usr/bin/env bash
# The Python environment of mend's peers: a venv that the project owns, with
# the pinned versions of scripts/pyenv-requirements.txt (torch, transformers,
# accelerate, peft, safetensors, tokenizers, numpy, lm-eval, openai, gguf and
# everything they pull in). The fixture scripts (tests/fixtures/*/*.py), the
# benchmarks (bench/) and fuzz/make_seeds.py run with its python. mend itself
# never needs Python to build, run or test.
#
#   PY=$(scripts/pyenv.sh)            # create or update; stdout: the python path
#   $(scripts/pyenv.sh) tests/fixtures/hf/make_hf_fixture.py
#   scripts/pyenv.sh --with-llama     # also llama-cpp-python (see below)
#
# Idempotent: the venv records a hash of the requirement files and of the base
# Python's version; when they match, the script only prints the path. A change
# of the pins re-runs pip over the same venv. A few lines of its own go to
# stderr; pip's output goes to $MEND_HOME/logs/pyenv.log, whose last lines are
# shown when something fails.
#
# torch: PyPI's Linux x86_64 wheel is built against CUDA and depends on the
# nvidia-* and triton wheels (about 3 GB of downloads, 6.3 GB installed, no
# GPU needed to run). Installing torch without them does not work: `import
# torch` fails to find libcudart. There is no CPU-only torch on PyPI, so the
# full wheel set is installed.
#
# llama-cpp-python has no wheel on PyPI (only an sdist that compiles llama.cpp
# with a C++ toolchain and CMake, a long build), so it is left out of the
# default set; --with-llama (or MEND_PYENV_LLAMA=1) adds the pin of
# scripts/pyenv-requirements-llama.txt, built with $JOBS (default 2) jobs.
# The fixture scripts that need it: tests/fixtures/quantize/make_ggml_blocks.py,
# tests/fixtures/tok/make_tok_fixtures.py, bench/ppl_llamacpp.py. The llama.cpp
# command-line tools are built separately by scripts/peers.sh.
#
# Environment:
#   MEND_HOME           default ~/.cache/mend
#   MEND_PYENV          the venv (default $MEND_HOME/pyenv)
#   MEND_PYENV_PYTHON   the Python that creates it (default python3, >= 3.10)
#   MEND_PYENV_LLAMA=1  same as --with-llama
#   PIP_*               pip's own settings pass through (index, cache, ...)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/log.sh"

MEND_HOME=${MEND_HOME:-$HOME/.cache/mend}
venv=${MEND_PYENV:-$MEND_HOME/pyenv}
base=${MEND_PYENV_PYTHON:-python3}
llama=${MEND_PYENV_LLAMA:-0}
for a in "$@"; do
    case $a in
    --with-llama) llama=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "pyenv: unknown argument $a (try --help)" >&2; exit 2 ;;
    esac
done

reqs=("$here/pyenv-requirements.txt")
[ "$llama" = 1 ] && reqs+=("$here/pyenv-requirements-llama.txt")

command -v "$base" >/dev/null || { echo "pyenv: $base not found (set MEND_PYENV_PYTHON)" >&2; exit 1; }
base_version=$("$base" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
"$base" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    { echo "pyenv: $base is Python $base_version; torch needs 3.10 or newer" >&2; exit 1; }
want=$({ cat "${reqs[@]}"; echo "python $base_version"; } | sha256sum | cut -d' ' -f1)

py=$venv/bin/python
stamp=$venv/.mend-pyenv
up_to_date() { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$py" -c '' 2>/dev/null; }

if up_to_date; then
    echo "$py"
    exit 0
fi

# one installer at a time (two benches started together share the venv)
mkdir -p "$(dirname "$venv")"
exec 9> "$venv.lock"
flock 9
if up_to_date; then echo "$py"; exit 0; fi

log_open pyenv
start=$SECONDS
say "setting up the peer venv $venv (Python $base_version); log: $LOG_FILE"
if ! "$py" -c '' 2>/dev/null; then
    rm -rf "$venv"
    quietly "creating the venv (Debian: apt-get install python3-venv)" "$base" -m venv "$venv"
fi
rm -f "$stamp"
[ "$llama" = 1 ] && say "llama-cpp-python is built from source: this takes a while"
pip_args=(install --disable-pip-version-check --progress-bar off)
for r in "${reqs[@]}"; do pip_args+=(-r "$r"); done
say "installing the pinned packages of ${reqs[*]##*/} (about 3 GB of downloads the first time)"
CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-2} quietly "pip install" "$py" -m pip "${pip_args[@]}"

# the set works: imports, and torch multiplies on the CPU
check='import torch, transformers, accelerate, peft, safetensors, tokenizers, numpy, lm_eval, openai, gguf
a = torch.arange(6.0).reshape(2, 3)
assert (a @ a.T).tolist() == [[5.0, 14.0], [14.0, 50.0]]
print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)'
[ "$llama" = 1 ] && check="import llama_cpp
$check"
quietly "the import check" "$py" -c "$check"
"$py" -m pip check >> "$LOG_FILE" 2>&1 || say "warning: pip check reports conflicts (see the log)"

echo "$want" > "$stamp"
say "ready in $((SECONDS - start)) s: $(du -sh "$venv" 2>/dev/null | cut -f1) in $venv"
echo "$py"
