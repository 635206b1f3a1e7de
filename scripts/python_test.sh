#!/usr/bin/env bash
# The Python package's test stage: `pip install ./python` (scikit-build-core
# builds libmend.so from this checkout into the package) into a venv of its
# own that sees the peer venv's packages (torch, transformers, numpy: the
# references of python/tests), then pytest over python/tests.
#
#   scripts/python_test.sh [PYTEST ARGS...]
#
# The venv is $MEND_HOME/pyenv-pkg (or $MEND_PYPKG); it inherits the peer
# venv (scripts/pyenv.sh, created or updated first) through a .pth file, so
# installing mend there leaves the peer venv as scripts/pyenv.sh made it.
# The tests run the mend command of build/ (scripts/setup.sh builds it) for
# the perplexity comparison. pip's output goes to $MEND_HOME/logs/python.log.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/log.sh
MEND_HOME=${MEND_HOME:-$HOME/.cache/mend}
venv=${MEND_PYPKG:-$MEND_HOME/pyenv-pkg}
peer=$(scripts/pyenv.sh)
log_open python

if ! "$venv/bin/python" -c '' 2>/dev/null; then
    rm -rf "$venv"
    quietly "creating the venv $venv" "$peer" -m venv "$venv"
fi
purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
"$peer" -c "$purelib" > "$("$venv/bin/python" -c "$purelib")/mend-peers.pth"

say "pip install ./python into $venv (builds libmend.so; log: $LOG_FILE)"
CMAKE_BUILD_PARALLEL_LEVEL=${JOBS:-2} quietly "pip install ./python" \
    "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off pytest ./python
# run from elsewhere, so that `import mend` finds the installed package, not python/mend
MEND_BIN=${MEND_BIN:-$PWD/build/mend} MEND_SOURCE_DIR=$PWD \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$PWD/python" "$PWD/python/tests" "$@"
