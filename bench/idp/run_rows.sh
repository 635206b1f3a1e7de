#!/bin/sh
# Every row of the IDP study on one compressed model and its bank, each run
# in packed forwards (the cheap way to get per-example outcomes under every
# prompt): one `mend eval --prompt` per domain prompt, then selection runs
# that record the picks and scores of the selectors in SELECT (default
# attention,router; add loss for its six prefills per input; scored with the
# first one named), one per probed layer range. Wall and CPU seconds of each run go to OUT/TASK.time.
# bench/idp/rows_table.py builds the tables, oracle and all, from the
# results lines. Every run appends with --resume, so a killed study resumes.
#
#   bench/idp/run_rows.sh MEND DIR [LIMIT] [LAYER_RANGES]
#
# DIR holds model.gguf and bank/ (a `mend repair` output directory); the runs
# go to DIR/rows/<prompt>/ and DIR/rows/select-<A>-<B>/. LIMIT: first N
# examples of each task (default 200, the standard budget of mend repair).
# LAYER_RANGES: space-separated A:B (default "0:3 0:30").
set -eu
MEND=$1; DIR=$2; LIMIT=${3:-200}; RANGES=${4:-"0:3 0:30"}
DATA=${MEND_DATA:-$(dirname "$0")/../../../shared/data}
TASKS=${TASKS:-"arc_easy boolq copa hellaswag lambada_openai piqa triviaqa winogrande"}
T=${THREADS:-1}
prompts=$(python3 -c 'import json,sys; print(" ".join(p["name"] for p in json.load(open(sys.argv[1]))["prompts"]))' "$DIR/bank/bank.json")
run() {  # out_dir options...
    out=$1; shift
    mkdir -p "$out"
    for t in $TASKS; do
        /usr/bin/time -f "%e s wall %U s user %S s sys" -o "$out/$t.time" "$MEND" -t "$T" eval "$DIR/model.gguf" --task "$DATA/tasks/$t.jsonl" --limit "$LIMIT" \
            --out "$out/$t.jsonl" --resume "$@" > "$out/$t.txt" 2> "$out/$t.log"
    done
}
for p in $prompts; do
    echo "[$(date +%T)] prompt $p" >&2
    run "$DIR/rows/$p" --prompt "$DIR/bank/$p"
done
for r in $RANGES; do
    echo "[$(date +%T)] selectors, layers $r" >&2
    run "$DIR/rows/select-$(echo "$r" | tr : -)" --bank "$DIR/bank" --select "${SELECT:-attention,router}" --select-layers "$r"
done
