#!/usr/bin/env bash
# Repair rows of docs/tune.md: a 20-token prompt trained on corpus/wiki.txt
# (the WikiText-2 validation text) with cross-entropy and with --distill from
# the original model, on each compressed model given, then each model with and
# without its prompts scored on WikiText-2 test (gptq protocol, ctx 2048, the
# first PPL_WINDOWS windows) and on the first LIMIT examples of every task.
#
# usage: bench/tune/run_repair.sh OUTDIR NAME=MODEL.gguf [NAME=MODEL.gguf ...]
#   env: MEND (build/mend), ORIGINAL (the Q4_1 source: the teacher and the
#        "original" row), MINUTES (20: training budget per prompt),
#        STEPS_CE (300), STEPS_KL (220), LIMIT (200), PPL_WINDOWS (16),
#        MEND_DATA (../shared/data)
# Prompts train two at a time, one thread each (cross-entropy and --distill of
# one model side by side); scoring runs with two threads. Every step whose
# output exists is skipped, and `mend tune --resume` / `mend eval --resume`
# continue killed ones, so re-running the script resumes it.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:?output directory}; shift
MEND=${MEND:-build/mend}
ORIGINAL=${ORIGINAL:-$HOME/.cache/mend/models/SmolLM2-135M-Instruct.Q4_1.gguf}
MINUTES=${MINUTES:-20}
LIMIT=${LIMIT:-200}
PW=${PPL_WINDOWS:-16}
DATA=${MEND_DATA:-$(pwd)/../shared/data}
mkdir -p "$OUT"
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

train() {  # dir model [--distill teacher] steps
  local dir=$1 model=$2 steps=$3; shift 3
  [[ -f "$dir/adapter_model.safetensors" && -f "$dir/done" ]] && return 0
  local resume=(); [[ -f "$dir/checkpoint.bin" ]] && resume=(--resume)
  log "tune $dir"
  "$MEND" -t 1 tune "$model" --corpus "$DATA/corpus/wiki.txt" -o "$dir" --tokens 20 --seqlen 256 --batch 4 \
    --steps "$steps" --lr 1e-2 --warmup 15 --eval-every 20 --val-seqs 8 --max-minutes "$MINUTES" "$@" \
    "${resume[@]}" >"$dir.log" 2>"$dir.err"
  touch "$dir/done"
}

score() {  # tag model [--prompt dir]
  local tag=$1 model=$2; shift 2
  mkdir -p "$OUT/scores/$tag"
  if [[ ! -f "$OUT/scores/$tag/ppl.txt" ]]; then
    log "ppl $tag"
    "$MEND" -t 2 ppl "$model" "$@" --text "$DATA/ppl/wiki.test.raw" --protocol gptq --ctx 2048 --chunks "$PW" \
      >"$OUT/scores/$tag/ppl.tmp" 2>/dev/null
    mv "$OUT/scores/$tag/ppl.tmp" "$OUT/scores/$tag/ppl.txt"
  fi
  for t in "$DATA"/tasks/*.jsonl; do
    local name; name=$(basename "$t" .jsonl)
    [[ -f "$OUT/scores/$tag/$name.done" ]] && continue
    log "eval $tag $name"
    "$MEND" -t 2 eval "$model" "$@" --task "$t" --limit "$LIMIT" --out "$OUT/scores/$tag/$name.jsonl" --resume \
      >"$OUT/scores/$tag/$name.txt" 2>/dev/null
    touch "$OUT/scores/$tag/$name.done"
  done
}

for spec in "$@"; do
  name=${spec%%=*}; model=${spec#*=}
  train "$OUT/$name-ce" "$model" "${STEPS_CE:-300}" &
  train "$OUT/$name-kl" "$model" "${STEPS_KL:-220}" --distill "$ORIGINAL" &
  wait
done
score original "$ORIGINAL"
for spec in "$@"; do
  name=${spec%%=*}; model=${spec#*=}
  score "$name" "$model"
  score "$name-ce" "$model" --prompt "$OUT/$name-ce"
  score "$name-kl" "$model" --prompt "$OUT/$name-kl"
done
log "done"
