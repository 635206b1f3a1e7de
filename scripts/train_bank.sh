#!/usr/bin/env bash
# How the shipped bank banks/smollm2-135m-gptq-int3g64 was made: the model
# that `mend repair MODEL --compress gptq:int3g64 --budget quick` writes
# (GPTQ, 3-bit asymmetric groups of 64, 32 x 512 calibration tokens from the
# six corpora), then one 20-token prompt per corpus (100 AdamW steps of
# 1 x 256 tokens, lr 3e-3: the standard budget's prompt settings) and a single prompt on all six corpora together,
# with the same settings. Writes into OUT (default out/train-bank); copy
# OUT/bank without checkpoints (mend repair --bank-dir does that) to ship it.
#   scripts/train_bank.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="$(scripts/fetch_model.sh)"
OUT="${1:-out/train-bank}"
DATA="${MEND_DATA:-$(pwd)/../shared/data}"
C="$DATA/corpus"
mkdir -p "$OUT"
build/mend compress "$MODEL" -o "$OUT/model.gguf" --method gptq --bits 3 --group 64 --asym \
    --nsamples 32 --seqlen 512
MEND_DATA="$DATA" build/mend bank build "$OUT/model.gguf" -o "$OUT/bank" --steps 100 --batch 1 --seqlen 256
build/mend tune "$OUT/model.gguf" --corpus "$C/wiki.txt" --corpus "$C/news.txt" --corpus "$C/science.txt" \
    --corpus "$C/fiction.txt" --corpus "$C/dialog.txt" --corpus "$C/lore.txt" -o "$OUT/bank/single" \
    --tokens 20 --steps 100 --batch 1 --seqlen 256 --lr 3e-3 --val-seqs 8 --eval-every 50 --ckpt-every 50 --resume
