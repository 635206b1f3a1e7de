/* Soft prompts on disk and in use (prompt/adapter.c).
 *
 * On disk a prompt is a PEFT prompt-tuning adapter directory:
 *   adapter_model.safetensors  one tensor "prompt_embeddings" [n_virtual, dim]
 *                              (written F32; F16 / BF16 are read too)
 *   adapter_config.json        peft_type PROMPT_TUNING, task_type CAUSAL_LM,
 *                              num_virtual_tokens, token_dim,
 *                              num_transformer_submodules 1,
 *                              num_attention_heads, num_layers,
 *                              prompt_tuning_init (RANDOM | SAMPLE_VOCAB | TEXT),
 *                              prompt_tuning_init_text, tokenizer_name_or_path,
 *                              base_model_name_or_path, inference_mode true, ...
 * The safetensors __metadata__ map holds "format": "pt" and, for prompts
 * mend trained, "mend.model_fingerprint" and "mend.model_recipe" (16 hex
 * digits each; the recipe only for compressed models): the model the prompt
 * was trained on (mend.h, fingerprints). PEFT reads the tensor only,
 * so `PeftModel.from_pretrained(model, dir)` loads it, and adapters PEFT
 * writes load here. The virtual tokens come before everything else
 * (before BOS); positions count from the first virtual token. */
#ifndef MEND_PROMPT_ADAPTER_H
#define MEND_PROMPT_ADAPTER_H

#include <stddef.h>
#include <stdint.h>
#include "mend.h"

/* mend_adapter_meta, mend_adapter_write, _read and _read_fp are public
 * (mend/tune.h). */

/* mend_perplexity_prompt is public (mend.h). */

#endif
