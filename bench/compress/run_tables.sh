#!/usr/bin/env bash
# Quantization tables of docs/compress.md: mend RTN / GPTQ files, llama-quantize
# files (with and without an importance matrix from the same calibration
# text), perplexity from mend and from llama.cpp.
#
# Usage: bench/compress/run_tables.sh [OUTDIR]
# Environment (defaults in brackets):
#   MEND        mend binary [build/mend]
#   MODEL       source GGUF [~/.cache/mend/models/SmolLM2-135M-Instruct.Q4_1.gguf]
#   MEND_DATA   data directory [../shared/data]
#   PEERS       llama.cpp tools [/opt/mend-peers/bin]
#   NSAMPLES, SEQLEN   calibration of the GPTQ rows [32, 512]
#   CHUNKS_GPTQ        windows of the gptq-protocol rows (ctx 2048) [4]
#   CHUNKS_LCPP        chunks of the llama.cpp-protocol rows (ctx 512) [6]
#   IMATRIX_CHUNKS     calibration windows llama-imatrix reads [NSAMPLES]
#   THREADS     [2]
#   GPTQ_ROWS   GPTQ files to make [gptq-q4_0 gptq-q3_k gptq-q2_k gptq-int3-g64
#               gptq-int2-g64 gptqi-q4_0 gptqi-q3_k gptqi-q2_k]; gptq-q4_0
#               saves the calibration text llama-imatrix reads
#   JOBS        GPTQ processes at a time [all]; with the default calibration
#               each holds about 3 GiB
#   AGREE       1: also score every llama.cpp-protocol file with mend ppl (the
#               agreement rows) [1]; 0 skips them
# Results go to OUTDIR/results.tsv: compression rows
#   compress  file  bytes  seconds
# and perplexity rows
#   tag  protocol  ctx  chunks  ppl  err  bytes
# and steps whose output already exists are skipped (re-run to resume; ppl
# steps whose model file is missing are skipped too). SKIP_COMPRESS=1 runs
# only the perplexity steps. GPTQ runs one process per file with -t 1, all in
# parallel (on a shared machine this beats OpenMP barriers under contention).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-/tmp/mend-compress-tables}"
MEND="${MEND:-build/mend}"
MODEL="${MODEL:-$HOME/.cache/mend/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
DATA="${MEND_DATA:-$(pwd)/../shared/data}"
PEERS="${PEERS:-/opt/mend-peers/bin}"
NS="${NSAMPLES:-32}"; SL="${SEQLEN:-512}"
CG="${CHUNKS_GPTQ:-4}"; CL="${CHUNKS_LCPP:-6}"
T="${THREADS:-2}"
WIKI="$DATA/ppl/wiki.test.raw"
mkdir -p "$OUT"
RES="$OUT/results.tsv"
touch "$RES"
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
fsize() { stat -c %s "$1"; }

compress() {  # name args...
  local name=$1; shift
  [[ -n "${SKIP_COMPRESS:-}" || -f "$OUT/$name.gguf" ]] && return 0
  log "compress $name: $*"
  local t0=$(date +%s.%N)
  "$MEND" -t "${CT:-$T}" compress "$MODEL" -o "$OUT/$name.gguf" "$@" >"$OUT/$name.log" 2>"$OUT/$name.err"
  local t1=$(date +%s.%N)
  printf 'compress\t%s.gguf\t%s\t%.1f\n' "$name" "$(fsize "$OUT/$name.gguf")" "$(echo "$t1 - $t0" | bc)" >>"$RES"
}
CAL=(--nsamples "$NS" --seqlen "$SL")

# 1. sources: the dequantized original as F32 (llama-quantize's input)
compress orig-f32 --method rtn --type f32 --embd-type f32
# 2. mend files (generic rows use groups of 64: 128 does not divide 576)
for ty in q4_0 q3_k q2_k; do compress "rtn-$ty" --method rtn --type "$ty"; done
compress rtn-int3-g64 --method rtn --bits 3 --group 64
compress rtn-int2-g64 --method rtn --bits 2 --group 64
gptq_args() {  # row name -> ARGS, its compress options (gptq: ggml's plain block fits;
               # gptqi: importance-weighted block fits, mend's default for ggml types)
  case $1 in
    gptq-q4_0) ARGS=(--type q4_0 --no-fit-importance --save-calib "$OUT/calib.txt") ;;
    gptq-int3-g64) ARGS=(--bits 3 --group 64) ;;
    gptq-int2-g64) ARGS=(--bits 2 --group 64) ;;
    gptq-*) ARGS=(--type "${1#gptq-}" --no-fit-importance) ;;
    gptqi-*) ARGS=(--type "${1#gptqi-}" --fit-importance) ;;
    *) echo "unknown GPTQ row $1" >&2; return 1 ;;
  esac
}
ROWS=(${GPTQ_ROWS:-gptq-q4_0 gptq-q3_k gptq-q2_k gptq-int3-g64 gptq-int2-g64 gptqi-q4_0 gptqi-q3_k gptqi-q2_k})
for row in "${ROWS[@]}"; do
  gptq_args "$row"
  while (( $(jobs -rp | wc -l) >= ${JOBS:-${#ROWS[@]}} )); do wait -n; done
  CT=1 compress "$row" --method gptq "${ARGS[@]}" "${CAL[@]}" --no-checkpoint &
done
wait

# 3. llama.cpp files from the F32 original: --pure (every matrix one type,
#    as mend writes), token embeddings q8_0 as in the source
if [[ -z "${SKIP_COMPRESS:-}" && ! -f "$OUT/imatrix.gguf" ]]; then
  log "llama-imatrix on the calibration text"
  "$PEERS/llama-imatrix" -m "$OUT/orig-f32.gguf" -f "$OUT/calib.txt" -c "$SL" --chunks "${IMATRIX_CHUNKS:-$NS}" -t "$T" \
    -o "$OUT/imatrix.gguf" >"$OUT/imatrix.log" 2>&1
fi
for ty in q4_0 q3_k q2_k; do
  [[ -n "${SKIP_COMPRESS:-}" ]] && break
  TY=$(tr a-z A-Z <<<"$ty")
  [[ -f "$OUT/lq-$ty.gguf" ]] || "$PEERS/llama-quantize" --pure --token-embedding-type q8_0 \
      "$OUT/orig-f32.gguf" "$OUT/lq-$ty.gguf" "$TY" "$T" >"$OUT/lq-$ty.log" 2>&1
  [[ -f "$OUT/lqi-$ty.gguf" ]] || "$PEERS/llama-quantize" --pure --token-embedding-type q8_0 \
      --imatrix "$OUT/imatrix.gguf" "$OUT/orig-f32.gguf" "$OUT/lqi-$ty.gguf" "$TY" "$T" >"$OUT/lqi-$ty.log" 2>&1
done

# 4. perplexity, every run a separate single-threaded process, all in
#    parallel: gptq protocol (mend), then llama.cpp protocol (both tools)
PPL="$OUT/ppl"; mkdir -p "$PPL"
mend_job() {  # tag file protocol ctx chunks
  [[ -f "$2" && ! -s "$PPL/$1.$3.out" ]] || return 0
  "$MEND" -t 1 ppl "$2" --text "$WIKI" --protocol "$3" --ctx "$4" --chunks "$5" >"$PPL/$1.$3.out" 2>"$PPL/$1.$3.err" &
}
lcpp_job() {  # tag file
  [[ -f "$2" && ! -s "$PPL/$1.lcpp.out" ]] || return 0
  "$PEERS/llama-perplexity" -m "$2" -f "$WIKI" -c 512 --chunks "$CL" -t 1 >"$PPL/$1.lcpp.out" 2>&1 &
}
mend_job orig "$MODEL" gptq 2048 "$CG"
for f in rtn-q4_0 gptq-q4_0 rtn-q3_k gptq-q3_k rtn-q2_k gptq-q2_k rtn-int3-g64 gptq-int3-g64 rtn-int2-g64 gptq-int2-g64; do
  mend_job "$f" "$OUT/$f.gguf" gptq 2048 "$CG"
done
lcpp_job orig "$MODEL"; [[ ${AGREE:-1} == 0 ]] || mend_job orig "$MODEL" llamacpp 512 "$CL"
for f in gptq-q4_0 gptqi-q4_0 lq-q4_0 lqi-q4_0 gptq-q3_k gptqi-q3_k lq-q3_k lqi-q3_k gptq-q2_k gptqi-q2_k lq-q2_k lqi-q2_k; do
  lcpp_job "$f" "$OUT/$f.gguf"
  [[ ${AGREE:-1} == 0 ]] || mend_job "$f" "$OUT/$f.gguf" llamacpp 512 "$CL"
done
wait
# results.tsv: tag protocol ctx chunks ppl err bytes
for o in "$PPL"/*.out; do
  b=$(basename "$o" .out); tag=${b%.*}; proto=${b##*.}
  f="$OUT/$tag.gguf"; [[ $tag == orig ]] && f="$MODEL"
  if [[ $proto == lcpp ]]; then
    line=$(grep "Final estimate" "$o" || true); [[ -n $line ]] || continue
    p=$(sed -E 's/.*PPL = ([0-9.]+).*/\1/' <<<"$line"); e=$(sed -E 's/.*\+\/- ([0-9.]+).*/\1/' <<<"$line")
    printf '%s\tllama.cpp\t512\t%s\t%s\t%s\t%s\n' "$tag" "$CL" "$p" "$e" "$(fsize "$f")" >>"$RES"
  else
    line=$(tail -1 "$o"); [[ $line == PPL* ]] || continue
    read -r _ _ p _ e <<<"$line"
    ctx=2048; ch=$CG; [[ $proto == llamacpp ]] && ctx=512 && ch=$CL
    printf '%s\tmend-%s\t%s\t%s\t%s\t%s\t%s\n' "$tag" "$proto" "$ctx" "$ch" "$p" "$e" "$(fsize "$f")" >>"$RES"
  fi
done
log "done: $RES"
