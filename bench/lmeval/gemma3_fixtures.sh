#!/bin/sh
# Golden fixtures of Gemma 3 270M for tests/eval/test_gemma3_lmeval.c: the
# lm-evaluation-harness peer run (run_lmeval.sh: HF backend, CPU, float32)
# on the Q4_K_M GGUF dequantized into a Hugging Face checkpoint by
# make_hf_model.py (transformers' GGUF loader, the path of
# tests/fixtures/gemma3/make_gemma3_logits.py), on the first LIMIT examples
# of arc_easy (multiple choice, 3-5 answers) and winogrande (schema: one
# context per option, the same continuation), converted to
# tests/fixtures/eval/lmeval_gemma3_<task>.jsonl and lmeval_gemma3_summary.json.
#
# The HF tokenizer rebuilt from the GGUF adds <bos> (its post-processor),
# and lm-eval 0.4.13 leaves add_special_tokens to the tokenizer, so every
# context starts with <bos>, as mend's tokenizer does for this file
# (tokenizer.ggml.add_bos_token).
#
# usage: bench/lmeval/gemma3_fixtures.sh [OUT_DIR] [LIMIT] [BATCH]
#   OUT_DIR  lm-eval's output (default /tmp/lme_gemma3)
#   LIMIT    first N examples of each task (default 200)
#   BATCH    lm-eval --batch_size (default 16; right padding leaves a causal
#            model's logits at the real positions as they are)
# env: MEND_HOME (default ~/.cache/mend; the GGUF is its
#      models/gemma-3-270m-q4_k_m.gguf, from scripts/fetch_model.sh gemma3-270m),
#      MEND_HF_MODEL (default $MEND_HOME/hf/gemma-3-270m-q4_k_m, made when
#      absent), PY, MEND_DATA, THREADS as for run_lmeval.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-/tmp/lme_gemma3}
limit=${2:-200}
batch=${3:-16}
home=${MEND_HOME:-$HOME/.cache/mend}
py=${PY:-$("$repo/scripts/pyenv.sh")}
gguf=$home/models/gemma-3-270m-q4_k_m.gguf
if [ ! -f "$gguf" ]; then
  echo "gemma3_fixtures.sh: $gguf not found (scripts/fetch_model.sh gemma3-270m)" >&2
  exit 1
fi
MEND_GGUF=$gguf MEND_HF_MODEL=${MEND_HF_MODEL:-$home/hf/gemma-3-270m-q4_k_m} PY=$py \
  "$here/run_lmeval.sh" "$out" arc_easy,winogrande "$limit" "$batch"
"$py" "$here/samples_to_fixture.py" "$out" "$repo/tests/fixtures/eval" --name gemma3
ls -l "$repo"/tests/fixtures/eval/lmeval_gemma3_*
