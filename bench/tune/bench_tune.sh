#!/usr/bin/env bash
# Prompt-tuning throughput, mend vs PyTorch + PEFT, side by side on one
# machine: the same model (the Q4_1 GGUF as f32; for PyTorch its HF float32
# export), 20 virtual tokens, batch 4 x 256 text tokens, cross-entropy,
# AdamW, gradient clipping, the same thread count. The tools alternate,
# ROUNDS times, each in its own process; every run prints its own summary
# (wall and CPU seconds per step over steps 2..STEPS; step 1 warms up).
#
# usage: bench/tune/bench_tune.sh MEND_BIN MODEL.gguf HF_DIR [THREADS]
#   env: ROUNDS (2), STEPS (6), PY (the peer venv's python,
#        made by scripts/pyenv.sh),
#        CORPUS (../shared/data/corpus/wiki.txt)
# The environment is passed through as it is (OPENBLAS_CORETYPE included):
# mend's linear products run on its own kernels (MEND_ISA caps their
# level; ATEN_CPU_CAPABILITY=avx2 does the same for PyTorch). HF_DIR is made
# from MODEL by bench/lmeval/make_hf_model.py when it has no config.json.
set -euo pipefail
MEND=${1:?mend binary}
MODEL=${2:?model gguf}
HF=${3:?HF export directory}
THREADS=${4:-2}
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-6}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PY:-$("$HERE/../../scripts/pyenv.sh")}
CORPUS=${CORPUS:-$HERE/../../../shared/data/corpus/wiki.txt}
if [ ! -f "$HF/config.json" ]; then   # the HF float32 export of MODEL, made once
    "$PY" "$HERE/../lmeval/make_hf_model.py" "$MODEL" "$HF"
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "# $(date -u +%FT%TZ) threads=$THREADS steps=$STEPS rounds=$ROUNDS OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} MEND_ISA=${MEND_ISA:-unset} ATEN_CPU_CAPABILITY=${ATEN_CPU_CAPABILITY:-unset}"
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
    "$PY" "$HERE/bench_tune_torch.py" "$HF" --threads "$THREADS" --steps "$STEPS" --corpus "$CORPUS" 2>/dev/null |
        grep '^torch:' | sed "s/^/round $r /"
    "$MEND" -t "$THREADS" tune "$MODEL" --corpus "$CORPUS" -o "$OUT/a$r" --tokens 20 --seqlen 256 --batch 4 \
        --steps "$STEPS" --val-frac 0 2>/dev/null | grep '^speed:' | sed "s/^/round $r mend /"
    echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
