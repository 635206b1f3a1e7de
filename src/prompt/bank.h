/* Prompt banks (prompt/bank.c): K soft prompts, one per domain, for
 * inference-time dynamic prompting.
 *
 * A bank is a directory:
 *   bank.json         the index (below)
 *   <adapter>/        one PEFT prompt-tuning adapter per prompt (prompt/adapter.h)
 *
 * bank.json (version 1):
 *   {
 *     "format": "mend-prompt-bank", "version": 1,
 *     "base_model": "SmolLM2-135M-Instruct.Q4_1.gguf",   (string or null)
 *     "model_fingerprint": "0123456789abcdef",           (optional, string or null:
 *     "model_recipe": "0123456789abcdef",                 the model the prompts were
 *                                                         trained on, mend.h; 16 hex digits)
 *     "dim": 576, "num_virtual_tokens": 20,              (every prompt has this shape)
 *     "prompts": [
 *       {"name": "wiki", "adapter": "wiki", "domain": "wiki",
 *        "corpus": "/path/wiki.txt",                      (string or null)
 *        "centroid": [576 floats] | null,                 (router feature of the domain)
 *        "steps": 200, "best_val": 3.21}                  (optional, informational)
 *     ],
 *     "selector": {"default": "attention", "layers": [0, 3]},
 *     "router": {"feature": "mean_final_norm_hidden", "metric": "cosine",
 *                "tokens": 4096},                         (optional)
 *     "learned_router": {"feature": "mean_token_embedding",
 *                        "normalize": true,               (L2 norm of the feature; default false)
 *                        "weights": [K*dim floats],       (row k: prompt k's weights)
 *                        "bias": [K floats],
 *                        "train_windows": 288, "train_accuracy": 0.97,
 *                        "heldout_accuracy": 0.9}         (optional; see prompt/router.h)
 *     "attention_calibration": {"layers": [0, 3], "windows": 96,
 *                               "offsets": [K floats]}     (optional; the mean attention
 *                                                            score of each prompt, see
 *                                                            mend_select_calibrate)
 *   }
 * name: 1..64 characters of [A-Za-z0-9_.-], unique; adapter: a relative path
 * inside the bank (no "..", no leading "/"); selector.default: attention,
 * router, loss, none or fixed:NAME; selector.layers [A, B): 0 <= A < B. */
#ifndef MEND_PROMPT_BANK_H
#define MEND_PROMPT_BANK_H

#include <stddef.h>
#include "mend.h"

/* MEND_BANK_FILE, MEND_BANK_MAX_PROMPTS and the functions on banks as a
 * whole are public (mend/bank.h); the layout below is the library's. */

typedef struct mend_bank_prompt {
    char *name;
    char *adapter;      /* directory relative to the bank */
    char *domain;
    char *corpus;       /* NULL when unknown */
    float *centroid;    /* dim floats or NULL */
    int steps;          /* -1 when unknown */
    double best_val;    /* NaN when unknown */
    float *emb;         /* nv x dim, after mend_bank_load_prompts; else NULL */
} mend_bank_prompt;

/* The learned router of a bank (prompt/router.h): multinomial logistic
 * regression on the mean token embedding of the input. */
typedef struct mend_learned_router {
    int K, dim;
    int normalize;          /* L2-normalise the feature before the weights */
    float *w;               /* (K, dim) */
    float *b;               /* (K) */
    int train_windows;      /* windows it was trained and held out on */
    double train_acc;       /* agreement with the loss selector on the training windows */
    double heldout_acc;     /* ... on the held-out windows (NaN when none) */
} mend_learned_router;

typedef struct mend_bank {
    char *dir;          /* NULL for a bank built in memory */
    char *base_model;
    mend_fp trained_on; /* has_model 0 for banks built before fingerprints */
    int dim, nv;
    int n;
    mend_bank_prompt *p;
    char *default_selector;
    int layer0, layer1;
    char *router_feature;
    int router_tokens;
    mend_learned_router *learned;   /* NULL when the bank has none */
    /* attention calibration (mend_select_calibrate): the mean attention
     * score of each prompt over corpus windows, measured on layers
     * [attn_layer0, attn_layer1); NULL when the bank has none */
    float *attn_offsets;            /* (n) */
    int attn_layer0, attn_layer1, attn_windows;
} mend_bank;

/* Parse bank.json text; path names the file in errors. *out is malloc'd. */
int mend_bank_parse(const char *path, const char *json, size_t len, mend_bank **out);
/* bank.json's optional "attention_calibration" object, written and read by
 * mend_bank_write / mend_bank_parse:
 *   {"layers": [A, B], "windows": N, "offsets": [n floats]} */

#endif
