#!/bin/sh
# Inference-time dynamic prompting on a compressed SmolLM2: build the bank,
# then one pass per measurement that scores every example / window with no
# prompt, with each prompt of the bank, and records the picks of every
# selector (docs/idp.md). Rows of the table come from those lines.
#
#   bench/idp/run_idp.sh MEND MODEL.gguf OUT_DIR [LIMIT] [PPL_CHUNKS] [PPL_CTX]
set -eu
MEND=$1; MODEL=$2; OUT=$3; LIMIT=${4:-200}; CHUNKS=${5:-40}; CTX=${6:-512}
DATA=${MEND_DATA:-$(dirname "$0")/../../../shared/data}
BANK=$OUT/bank
SEL=attention,router,loss,oracle
LAYERS=${SEL_LAYERS:-0:3}
mkdir -p "$OUT"
# 1. the bank (resumable): one prompt per corpus domain
MEND_DATA=$DATA "$MEND" bank build "$MODEL" -o "$BANK" ${BANK_OPTS:-} 2>"$OUT/bank.log"
# 2. perplexity of wikitext-2 windows, every row at once
"$MEND" ppl "$MODEL" --text "$DATA/ppl/wiki.test.raw" --ctx "$CTX" --chunks "$CHUNKS" \
    --bank "$BANK" --select $SEL --select-layers "$LAYERS" --per-prompt > "$OUT/ppl.txt" 2>"$OUT/ppl.log"
# 3. zero-shot tasks, the first LIMIT examples of each
for t in arc_easy boolq copa hellaswag lambada_openai piqa triviaqa winogrande; do
    "$MEND" eval "$MODEL" --task "$DATA/tasks/$t.jsonl" --limit "$LIMIT" --out "$OUT/$t.jsonl" --resume \
        --bank "$BANK" --select $SEL --select-layers "$LAYERS" --per-prompt > "$OUT/$t.txt" 2>"$OUT/$t.log"
done
python3 "$(dirname "$0")/idp_table.py" "$OUT"/*.jsonl > "$OUT/table.md"
