#!/bin/sh
# The lm-evaluation-harness peer run: HF backend, CPU, float32 weights
# dequantized from the default GGUF (make_hf_model.py), the task YAMLs of this
# directory reading ../shared/data/tasks/*.jsonl, per-example outputs logged.
#
# usage: bench/lmeval/run_lmeval.sh OUT_DIR [TASKS] [LIMIT] [BATCH]
#   TASKS  comma list of piqa,arc_easy,boolq,copa,hellaswag,winogrande,
#          lambada_openai,triviaqa (default: all)
#   LIMIT  first N examples of each task (default: all)
#   BATCH  lm-eval --batch_size (default 1)
# env: MEND_HF_MODEL (default ~/.cache/mend/hf/SmolLM2-135M-Instruct-Q4_1),
#      MEND_GGUF (the file MEND_HF_MODEL is made from when it is absent;
#      default $MEND_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf),
#      MEND_DATA (default <repo>/../shared/data), PY (default: the peer venv's
#      python, made by scripts/pyenv.sh),
#      THREADS (default 2)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
tasks=${2:-piqa,arc_easy,boolq,copa,hellaswag,winogrande,lambada_openai,triviaqa}
limit=${3:-}
batch=${4:-1}
py=${PY:-$("$repo/scripts/pyenv.sh")}
data=${MEND_DATA:-$repo/../shared/data}
hf=${MEND_HF_MODEL:-$HOME/.cache/mend/hf/SmolLM2-135M-Instruct-Q4_1}
gguf=${MEND_GGUF:-${MEND_HOME:-$HOME/.cache/mend}/models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${THREADS:-2}
if [ ! -f "$hf/config.json" ]; then
  "$py" "$here/make_hf_model.py" "$gguf" "$hf"
fi
mt=$(echo "$tasks" | sed 's/\([^,]*\)/mend_\1/g')
set -- --model hf --model_args "pretrained=$hf,dtype=float32" --tasks "$mt" \
  --include_path "$here/tasks" --device cpu --batch_size "$batch" --log_samples --output_path "$out"
if [ -n "$limit" ]; then set -- "$@" --limit "$limit"; fi
cd "$data/tasks"   # the YAMLs name their JSONL files relative to here
echo "lm_eval $*" > "$out/command.txt"
OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads TOKENIZERS_PARALLELISM=false HF_DATASETS_OFFLINE=1 \
  /usr/bin/time -v "$py" -m lm_eval "$@" 2> "$out/stderr.txt"
tail -n 30 "$out/stderr.txt" | grep -E "Elapsed|Maximum resident" || true
