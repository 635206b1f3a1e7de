#!/usr/bin/env bash
# CPU time of one full task scored through the Python package against the
# mend command, side by side, alternating, one thread each:
#   bench/python/bench_overhead.sh [TASK.jsonl] [REPS]
# (default: COPA from $MEND_DATA or ../shared/data, 3 rounds). Needs the
# package installed by scripts/python_test.sh. Prints user+sys CPU seconds per
# run, each round's ratio, and the ratio of the means with the spread of the
# rounds (the side that runs first alternates by round); the two results files must be identical. MEND_ISA (scalar, avx2,
# avx512) caps both sides: the command reads it, the Python side passes it to
# mend.set_isa, and the last line names the level each side ran at.
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
runs=""
for r in $(seq 1 "$REPS"); do
    rm -f "$tmp/cli.jsonl" "$tmp/py.jsonl"
    run_cli() { cpu build/mend eval "$MODEL" --task "$TASK" --out "$tmp/cli.jsonl" -t 1; }
    run_py() {
        cpu "$PY" -c "import mend, os, sys; mend.set_isa(os.environ.get('MEND_ISA')); mend.set_threads(1); mend.evaluate(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)" \
            "$MODEL" "$TASK" "$tmp/py.jsonl"
    }
    # which side runs first alternates by round: a run right after another
    # can be slower or faster on a busy machine, and that must not fall on
    # one side only
    if [ $((r % 2)) = 1 ]; then c=$(run_cli); p=$(run_py); else p=$(run_py); c=$(run_cli); fi
    cmp -s "$tmp/cli.jsonl" "$tmp/py.jsonl" || { echo "round $r: the results files differ"; exit 1; }
    echo "round $r: mend eval $c s, Python $p s, Python / CLI $(awk -v c="$c" -v p="$p" 'BEGIN { printf "%.3f", p / c }')"
    runs="$runs $c $p"
done
echo "$runs" | awk '{
    n = NF / 2
    for (i = 1; i <= NF; i += 2) {
        c = $i; p = $(i + 1); r = p / c; sc += c; sp += p
        if (i == 1 || c < cmin) cmin = c; if (i == 1 || c > cmax) cmax = c
        if (i == 1 || p < pmin) pmin = p; if (i == 1 || p > pmax) pmax = p
        if (i == 1 || r < rmin) rmin = r; if (i == 1 || r > rmax) rmax = r
        d[i] = p - c; sd += p - c
    }
    # the standard error of the paired difference (Python - CLI), over the
    # mean CLI time: the uncertainty of the ratio from the rounds
    for (i = 1; i <= NF; i += 2) ss += (d[i] - sd / n) ^ 2
    se = n > 1 ? sqrt(ss / (n - 1) / n) / (sc / n) : 0
    printf "mean: mend eval %.2f s (%.2f-%.2f), Python %.2f s (%.2f-%.2f), Python / CLI %.3f +- %.3f (rounds %.3f-%.3f)\n",
           sc / n, cmin, cmax, sp / n, pmin, pmax, sp / sc, se, rmin, rmax }'
echo "isa: mend eval $(build/mend --version | awk '/^isa:/ {sub(/^isa: /, ""); print}'), Python $("$PY" -c \
    "import mend, os; mend.set_isa(os.environ.get('MEND_ISA')); print(mend.isa_describe())")"
