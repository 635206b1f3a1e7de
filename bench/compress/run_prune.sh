#!/usr/bin/env bash
# Pruning table of docs/prune.md: magnitude, Wanda and SparseGPT at 50%
# unstructured, 4:8 and 2:4, SparseGPT 50% with q4_0 (joint and two-stage),
# the dense GPTQ q4_0 file for reference; gptq-protocol perplexity (ctx 2048)
# of each file and of the source.
#
# Usage: bench/compress/run_prune.sh [OUTDIR]
# Environment (defaults in brackets):
#   MEND        mend binary [build/mend]
#   MODEL       source GGUF [~/.cache/mend/models/SmolLM2-135M-Instruct.Q4_1.gguf]
#   MEND_DATA   data directory [../shared/data]
#   NSAMPLES, SEQLEN   calibration [128, 2048: mend's default]
#   CHUNKS      gptq-protocol windows of 2048 tokens [16; 0 = the whole test set]
#   THREADS     [2]
#   ONLY        an extended regex: compress only the files whose names match
# Results go to OUTDIR/results.tsv, rows
#   compress  file  bytes  seconds  cpu_seconds
#   ppl  file  chunks  ppl  err
# Steps whose output already exists are skipped, so a killed run is resumed
# by running it again. Pruned-only files keep their weights as f16.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-/tmp/mend-prune-table}"
MEND="${MEND:-build/mend}"
MODEL="${MODEL:-$HOME/.cache/mend/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
DATA="${MEND_DATA:-$(pwd)/../shared/data}"
NS="${NSAMPLES:-128}"; SL="${SEQLEN:-2048}"
CH="${CHUNKS:-16}"
T="${THREADS:-2}"
WIKI="$DATA/ppl/wiki.test.raw"
mkdir -p "$OUT"
RES="$OUT/results.tsv"
touch "$RES"
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

compress() {  # name args...
  local name=$1; shift
  [[ -f "$OUT/$name.gguf" ]] && return 0
  [[ -n "${ONLY:-}" && ! "$name" =~ ^(${ONLY})$ ]] && return 0
  log "compress $name: $*"
  /usr/bin/time -f '%e %U %S' -o "$OUT/$name.time" \
    "$MEND" -t "$T" compress "$MODEL" -o "$OUT/$name.gguf" --nsamples "$NS" --seqlen "$SL" --no-checkpoint "$@" \
    >"$OUT/$name.log" 2>"$OUT/$name.err"
  read -r wall user sys <"$OUT/$name.time"
  printf 'compress\t%s.gguf\t%s\t%s\t%.1f\n' "$name" "$(stat -c %s "$OUT/$name.gguf")" "$wall" \
    "$(echo "$user + $sys" | bc)" >>"$RES"
}

ppl() {  # name model
  local name=$1 model=$2
  grep -q "^ppl	$name	$CH	" "$RES" && return 0
  [[ -f "$model" ]] || return 0
  log "ppl $name ($CH windows)"
  local chunks=(); [[ "$CH" != 0 ]] && chunks=(--chunks "$CH")
  "$MEND" -t "$T" ppl "$model" --text "$WIKI" --protocol gptq --ctx 2048 "${chunks[@]}" >"$OUT/$name.ppl" 2>/dev/null
  local line; line=$(grep -E '^PPL = ' "$OUT/$name.ppl")
  printf 'ppl\t%s\t%s\t%s\t%s\n' "$name" "$CH" "$(awk '{print $3}' <<<"$line")" "$(awk '{print $5}' <<<"$line")" >>"$RES"
}

for m in sparsegpt wanda magnitude; do
  for s in 2:4 0.5 4:8; do
    compress "$m-${s/:/of}" --prune "$m" --sparsity "$s" --method rtn --type f16
  done
done
compress sparsegpt-0.5-joint-q4_0 --prune sparsegpt --sparsity 0.5 --joint --method gptq --type q4_0 --no-act-order
compress sparsegpt-0.5-then-gptq-q4_0 --prune sparsegpt --sparsity 0.5 --method gptq --type q4_0 --no-act-order
compress gptq-q4_0 --method gptq --type q4_0

[[ -n "${ONLY:-}" ]] && exit 0
ppl dense "$MODEL"
for f in "$OUT"/*.gguf; do ppl "$(basename "$f" .gguf)" "$f"; done
column -t "$RES" >&2
