#!/usr/bin/env bash
# mend's main job on the default model (SmolLM2-135M-Instruct, Q4_1 GGUF):
# set up, then `mend repair` with the quick budget: compress with GPTQ to
# 3-bit groups of 64, repair with the prompt bank the repo ships for exactly
# that model (banks/, made by scripts/train_bank.sh), evaluate original /
# compressed / single prompt / IDP on the eight tasks and WikiText-2, and
# print the report (also in $MEND_OUT/report.md, default out/repair-quick).
# Rerunning resumes and reuses finished stages.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
MODEL="$(scripts/fetch_model.sh)"
OUT="${MEND_OUT:-out/repair-quick}"
build/mend repair "$MODEL" --compress gptq:int3g64 --budget quick \
    --bank-dir banks/smollm2-135m-gptq-int3g64 -o "$OUT"
