#!/usr/bin/env bash
# Cost of IDP against a single prompt, side by side: for every task, `mend
# eval` with one prompt of the bank (--prompt BANK/PROMPT) and with the bank
# and a selector (--bank BANK --select SELECT), alternating, REPS times each,
# every run its own process under /usr/bin/time; then `mend generate` the
# same way. Prints Markdown: CPU seconds (user + sys, model and bank set-up
# included) and wall seconds per run (median over REPS), and the overhead.
#
#   bench/idp/cost.sh MEND MODEL BANK [PROMPT]
#
# Environment: TASKS ("arc_easy:200 boolq:100 lambada_openai:100
#   winogrande:200", task:limit), REPS (3), THREADS (1), SELECT (attention),
#   LAYERS (the attention selector's layers A:B; default the bank's),
#   MEND_DATA (../shared/data), GEN_TEXT (a fixed prompt), GEN_N (128).
set -euo pipefail
MEND=${1:?mend binary}; MODEL=${2:?model}; BANK=${3:?bank dir}; PROMPT=${4:-fiction}
DATA=${MEND_DATA:-$(cd "$(dirname "$0")/../../.." && pwd)/shared/data}
TASKS=${TASKS:-"arc_easy:200 boolq:100 lambada_openai:100 winogrande:200"}
REPS=${REPS:-3}; T=${THREADS:-1}; SEL=${SELECT:-attention}
SELARGS=(--bank "$BANK" --select "$SEL")
[[ -n "${LAYERS:-}" ]] && SELARGS+=(--select-layers "$LAYERS")
GEN_TEXT=${GEN_TEXT:-"The history of the printing press begins in"}
GEN_N=${GEN_N:-128}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

timed() {  # out_file cmd... -> appends "wall cpu" to out_file
    local out=$1; shift
    /usr/bin/time -f "%e %U %S" -o "$TMP/t" "$@" > "$TMP/stdout" 2> "$TMP/stderr" ||
        { echo "cost.sh: failed: $*" >&2; tail -3 "$TMP/stderr" >&2; exit 1; }
    awk '{printf "%s %.3f\n", $1, $2 + $3}' "$TMP/t" >> "$out"
}
median() {  # column file
    sort -g -k"$1" "$2" | awk -v c="$1" '{v[NR] = $c} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

echo "# $(date -u +%FT%TZ) threads=$T reps=$REPS select=$SEL layers=${LAYERS:-bank} prompt=$PROMPT load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | one prompt: CPU s (wall s) | IDP $SEL: CPU s (wall s) | CPU overhead | wall overhead |"
echo "|---|---:|---:|---:|---:|"
for tl in $TASKS; do
    task=${tl%%:*}; lim=${tl##*:}
    a="$TMP/$task.one"; b="$TMP/$task.idp"; : > "$a"; : > "$b"
    for r in $(seq 1 "$REPS"); do
        timed "$a" "$MEND" -t "$T" eval "$MODEL" --task "$DATA/tasks/$task.jsonl" --limit "$lim" \
            --out "$TMP/r.jsonl" --prompt "$BANK/$PROMPT"
        rm -f "$TMP/r.jsonl"
        timed "$b" "$MEND" -t "$T" eval "$MODEL" --task "$DATA/tasks/$task.jsonl" --limit "$lim" \
            --out "$TMP/r.jsonl" "${SELARGS[@]}"
        rm -f "$TMP/r.jsonl"
    done
    ca=$(median 2 "$a"); cb=$(median 2 "$b"); wa=$(median 1 "$a"); wb=$(median 1 "$b")
    awk -v n="eval $task, $lim" -v ca="$ca" -v cb="$cb" -v wa="$wa" -v wb="$wb" 'BEGIN {
        printf "| %s | %.2f (%.2f) | %.2f (%.2f) | %+.1f%% | %+.1f%% |\n", n, ca, wa, cb, wb, 100 * (cb / ca - 1), 100 * (wb / wa - 1) }'
done

# generation: tokens/s as mend generate reports it, and the process's CPU
a="$TMP/gen.one"; b="$TMP/gen.idp"; : > "$a"; : > "$b"; : > "$TMP/tps.one"; : > "$TMP/tps.idp"
for r in $(seq 1 "$REPS"); do
    timed "$a" "$MEND" -t "$T" generate "$MODEL" -p "$GEN_TEXT" -n "$GEN_N" --soft-prompt "$BANK/$PROMPT"
    awk '/^generation:/ {print $(NF - 4)}' "$TMP/stderr" >> "$TMP/tps.one"
    timed "$b" "$MEND" -t "$T" generate "$MODEL" -p "$GEN_TEXT" -n "$GEN_N" "${SELARGS[@]}"
    awk '/^generation:/ {print $(NF - 4)}' "$TMP/stderr" >> "$TMP/tps.idp"
done
ca=$(median 2 "$a"); cb=$(median 2 "$b"); wa=$(median 1 "$a"); wb=$(median 1 "$b")
awk -v n="generate $GEN_N tokens" -v ca="$ca" -v cb="$cb" -v wa="$wa" -v wb="$wb" 'BEGIN {
    printf "| %s | %.2f (%.2f) | %.2f (%.2f) | %+.1f%% | %+.1f%% |\n", n, ca, wa, cb, wb, 100 * (cb / ca - 1), 100 * (wb / wa - 1) }'
echo
echo "generation speed (mend's own figure, per run): one prompt $(paste -sd' ' "$TMP/tps.one") tok/s; IDP $(paste -sd' ' "$TMP/tps.idp") tok/s"
