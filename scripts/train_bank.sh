#!/usr/bin/env bash
# How the shipped bank banks/smollm2-135m-gptq-int3g64 was made: the model
# that `mend repair MODEL --compress gptq:int3g64 --budget quick` writes
# (GPTQ, 3-bit asymmetric groups of 64, 32 x 512 calibration tokens from the
# six corpora), then the prompts of the standard budget, all distilled from
# MODEL (KL to the original model's next-token distribution):
#   shared  one 20-token prompt on all six corpora, 200 AdamW steps of
#           4 x 256 tokens, lr 3e-3 (204,800 text tokens);
#   bank    one prompt per corpus, each starting from `shared`, 20 steps of
#           4 x 256 tokens on its own corpus (6 x 20,480 tokens);
#   single  `shared` trained on for 120 more steps on all six corpora, each
#           step 16 windows of 64 tokens that start at a paragraph start
#           (--windows paragraph; a task query starts a text, and windows
#           cut from a stream mostly start mid-sentence): the same 122,880
#           tokens as the domain prompts together, so that it got the same
#           training tokens as the whole bank (327,680).
# These are the stages `mend repair` runs when no --bank-dir is given. One
# thread: the trainer's sums are bit-identical for a given thread count.
# Writes into OUT (default out/train-bank); copy OUT/bank without the
# checkpoints (mend repair --bank-dir does that) to ship it.
#   scripts/train_bank.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="$(scripts/fetch_model.sh)"
OUT="${1:-out/train-bank}"
DATA="${MEND_DATA:-$(pwd)/../shared/data}"
C="$DATA/corpus"
CORPORA=()
for d in wiki news science fiction dialog lore; do CORPORA+=(--corpus "$C/$d.txt"); done
TRAIN=(--batch 4 --seqlen 256)
mkdir -p "$OUT"
build/mend compress "$MODEL" -o "$OUT/model.gguf" --method gptq --bits 3 --group 64 --asym \
    --nsamples 32 --seqlen 512
build/mend -t 1 tune "$OUT/model.gguf" --distill "$MODEL" "${CORPORA[@]}" -o "$OUT/bank/shared" \
    --tokens 20 --steps 200 "${TRAIN[@]}" --lr 3e-3 --val-seqs 16 --resume
MEND_DATA="$DATA" build/mend -t 1 bank build "$OUT/model.gguf" -o "$OUT/bank" --distill "$MODEL" \
    --init-adapter "$OUT/bank/shared" --steps 20 "${TRAIN[@]}"
build/mend -t 1 tune "$OUT/model.gguf" --distill "$MODEL" --init-adapter "$OUT/bank/shared" --seed 1235 \
    "${CORPORA[@]}" -o "$OUT/bank/single" --steps 120 --windows paragraph --batch 16 --seqlen 64 --lr 3e-3 \
    --val-seqs 64 --resume
