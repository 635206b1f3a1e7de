#!/usr/bin/env bash
# mend's main job on the default model (SmolLM2-135M-Instruct, Q4_1 GGUF):
# set up, describe the model, answer a question, and measure WikiText-2
# perplexity with llama.cpp's protocol.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
MODEL="$(scripts/fetch_model.sh)"
DATA="${MEND_DATA:-$(pwd)/../shared/data}"
build/mend info "$MODEL"
build/mend generate "$MODEL" --f32 --chat -p "What is the capital of France?" -n 48
build/mend ppl "$MODEL" --text "$DATA/ppl/wiki.test.raw" --protocol llamacpp --ctx 512 ${MEND_PPL_CHUNKS:+--chunks $MEND_PPL_CHUNKS}
