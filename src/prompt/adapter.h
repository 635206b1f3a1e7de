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

typedef struct mend_adapter_meta {
    const char *base_model;     /* base_model_name_or_path (NULL: null) */
    const char *init;           /* "RANDOM", "SAMPLE_VOCAB" or "TEXT" (NULL: RANDOM) */
    const char *init_text;      /* prompt_tuning_init_text for TEXT (NULL: null) */
    int num_attention_heads;    /* of the base model */
    int num_layers;
    const mend_fp *trained_on;  /* the model's fingerprint (and recipe), or NULL */
} mend_adapter_meta;

/* Create dir (mkdir -p) and write both files atomically (each via a
 * temporary file and rename). emb (n_virtual, dim) f32. */
int mend_adapter_write(const char *dir, const float *emb, int n_virtual, int dim, const mend_adapter_meta *meta);

/* Read dir/adapter_model.safetensors (+ adapter_config.json, which must say
 * PROMPT_TUNING and, when present, agree on num_virtual_tokens / token_dim).
 * dim: the model's hidden size (the tensor's second dimension must match).
 * *emb is malloc'd (n_virtual, dim) f32; every value must be finite. */
int mend_adapter_read(const char *dir, int dim, float **emb, int *n_virtual);
/* The same, and *trained_on (when not NULL) gets the model the adapter
 * records (has_model 0 for adapters written before fingerprints or by PEFT). */
int mend_adapter_read_fp(const char *dir, int dim, float **emb, int *n_virtual, mend_fp *trained_on);

/* Perplexity (the protocols of mend_perplexity, same windows and scored
 * tokens) with a soft prompt before every window: the prompt's keys and
 * values are computed once at positions [0, n_virtual) and every window runs
 * from position n_virtual, so only the text is scored. */
int mend_perplexity_prompt(const mend_model *m, const float *prompt, int n_virtual, const int32_t *tokens,
                           size_t n_tokens, const mend_ppl_opts *opts, mend_ppl_progress_fn progress,
                           void *progress_user, mend_ppl_result *res);

#endif
