#!/usr/bin/env bash
# CPU time of one full task scored through the Python package against the
# mend command, side by side, alternating, one thread each:
#   bench/python/bench_overhead.sh [TASK.jsonl] [REPS]
# (default: COPA from $MEND_DATA or ../shared/data, 3 rounds). Needs the
# package installed by scripts/python_test.sh. Prints user+sys CPU seconds per
# run and the ratio of the means; the two results files must be identical.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA="${MEND_DATA:-$(pwd)/../shared/data}"
TASK="${1:-$DATA/tasks/copa.jsonl}"
REPS="${2:-3}"
MODEL="$(scripts/fetch_model.sh)"
PY="${MEND_PYENV_PKG:-$HOME/.cache/mend/pyenv-pkg}/bin/python"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cpu() {   # run a command, print its user+sys CPU seconds (children included)
    local out
    out=$(bash -c 'TIMEFORMAT="%U %S"; { time "$@" >/dev/null 2>&1; } 2>&1' _ "$@")
    awk -v u="${out% *}" -v s="${out#* }" 'BEGIN { printf "%.2f", u + s }'
}
sc=0 sp=0
for r in $(seq 1 "$REPS"); do
    rm -f "$tmp/cli.jsonl" "$tmp/py.jsonl"
    c=$(cpu build/mend eval "$MODEL" --task "$TASK" --out "$tmp/cli.jsonl" -t 1)
    p=$(cpu "$PY" -c "import mend, sys; mend.set_threads(1); mend.evaluate(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)" \
        "$MODEL" "$TASK" "$tmp/py.jsonl")
    cmp -s "$tmp/cli.jsonl" "$tmp/py.jsonl" || { echo "round $r: the results files differ"; exit 1; }
    echo "round $r: mend eval $c s, Python $p s"
    sc=$(awk -v a="$sc" -v b="$c" 'BEGIN { print a + b }')
    sp=$(awk -v a="$sp" -v b="$p" 'BEGIN { print a + b }')
done
awk -v c="$sc" -v p="$sp" -v n="$REPS" 'BEGIN { printf "mean: mend eval %.2f s, Python %.2f s, Python / CLI %.3f\n", c / n, p / n, p / c }'
echo "isa: $(build/mend --version | awk '/^isa:/ {sub(/^isa: /, ""); print}')"
