/* mend public API: prompt banks, selectors and inference-time dynamic
 * prompting (IDP). Included by mend.h; see docs/api.md and docs/idp.md. */
#ifndef MEND_BANK_API_H
#define MEND_BANK_API_H

#include "mend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- prompt banks -------------------------------------------------------------
 * A bank is a directory: bank.json (names, domains, selector settings, the
 * fingerprint of the model the prompts were trained on) and one PEFT
 * prompt-tuning adapter per prompt (docs/formats.md). */
#define MEND_BANK_FILE "bank.json"
#define MEND_BANK_MAX_PROMPTS 256

typedef struct mend_bank mend_bank;                     /* opaque */
typedef struct mend_learned_router mend_learned_router; /* opaque */

/* Read dir/bank.json (adapters are not read). *out is freed with mend_bank_free. */
int mend_bank_read(const char *dir, mend_bank **out);
/* Read every prompt's adapter; dim must be the model's hidden size and equal
 * the bank's; every adapter must have the bank's number of virtual tokens. */
int mend_bank_load_prompts(mend_bank *b, int dim);
/* Write dir/bank.json atomically (adapters are written separately, e.g. by
 * mend_tune_run into dir/ADAPTER). */
int mend_bank_write(const char *dir, const mend_bank *b);
void mend_bank_free(mend_bank *b);
/* Index of the prompt called name, or -1. */
int mend_bank_find(const mend_bank *b, const char *name);
/* Is name a valid prompt name (1..64 characters of [A-Za-z0-9_.-])? */
int mend_bank_name_ok(const char *name);

typedef struct mend_bank_info {
    const char *dir;               /* NULL for a bank built in memory */
    const char *base_model;        /* NULL when unknown */
    mend_fp trained_on;            /* has_model 0 for banks built before fingerprints */
    int n_prompts, nv, dim;
    const char *default_selector;
    int layer0, layer1;            /* attention selector layers [layer0, layer1) */
    int router_tokens;
    int has_attn_calibration;      /* attn_* below are valid */
    int attn_layer0, attn_layer1, attn_windows;
    const float *attn_offsets;     /* (n_prompts), NULL without calibration */
    int has_learned_router;        /* learned_* below are valid */
    int learned_normalize, learned_train_windows;
    double learned_train_acc, learned_heldout_acc;
} mend_bank_info;
/* Everything bank.json says; the strings and arrays are borrowed from b. */
void mend_bank_get_info(const mend_bank *b, mend_bank_info *info);

typedef struct mend_bank_prompt_info {
    const char *name, *adapter, *domain;
    const char *corpus;            /* NULL when unknown */
    const float *centroid;         /* dim floats, NULL when none */
    int steps;                     /* -1 when unknown */
    double best_val;               /* NaN when unknown */
    const float *emb;              /* nv x dim after mend_bank_load_prompts, else NULL */
} mend_bank_prompt_info;
/* Prompt k (0 <= k < n_prompts; MEND_ERANGE otherwise); borrowed from b. */
int mend_bank_get_prompt(const mend_bank *b, int k, mend_bank_prompt_info *out);

/* ---- building a bank ---- */
/* An empty bank for prompts of nv virtual tokens of dim floats. base_model
 * and trained_on may be NULL; both are copied. The default selector is
 * "attention" on layers [layer0, layer1). */
int mend_bank_new(mend_bank **out, int dim, int nv, const char *base_model, const mend_fp *trained_on,
                  int layer0, int layer1);
/* Append a prompt (name, adapter directory relative to the bank, domain,
 * corpus path or NULL); steps -1 / best_val NaN when unknown. centroid: NULL
 * or dim floats (copied). Returns the new index (>= 0) or a status. */
int mend_bank_add_prompt(mend_bank *b, const char *name, const char *adapter, const char *domain,
                         const char *corpus, int steps, double best_val, const float *centroid);
/* The router's token budget recorded in bank.json (windows x tokens). */
void mend_bank_set_router_tokens(mend_bank *b, int tokens);
/* Give the bank a learned router (it takes ownership, freeing the old one). */
void mend_bank_set_learned_router(mend_bank *b, mend_learned_router *r);
void mend_learned_router_free(mend_learned_router *r);

/* ---- trained selectors ---- */
/* The router feature of a domain: the mean over n_windows windows of window
 * tokens at evenly spaced paragraph starts of text of the model's final
 * hidden state; centroid (dim); *n_used windows had text. */
int mend_select_centroid(const mend_model *m, const char *text, size_t len, int n_windows, int window,
                         float *centroid, int *n_used);
/* Measure the attention calibration of bank b (prompts loaded): the mean
 * attention score of each prompt over n_windows windows of window tokens of
 * each corpus; stored in b (mend_bank_get_info). */
int mend_select_calibrate(const mend_model *m, mend_bank *b, const char *const *texts, const size_t *lens,
                          int n_texts, int n_windows, int window);

typedef struct mend_router_opts {
    int n_windows;      /* windows per corpus (default 48) */
    int window;         /* tokens per window (default 128) */
    int normalize;      /* L2-normalise the feature (default 1) */
    double l2;          /* weight decay on W (default 1e-2) */
    int iters;          /* gradient steps (default 500) */
} mend_router_opts;
/* Fill the defaults above; call it before setting fields. */
void mend_router_opts_default(mend_router_opts *o);

typedef struct mend_router_stats {
    int n_windows, n_train, n_heldout;
    double train_acc, heldout_acc;          /* agreement with the loss selector (held out: NaN when none) */
    int label_hist[MEND_BANK_MAX_PROMPTS];  /* windows the loss selector gave to each prompt */
} mend_router_stats;
/* Called after each labelled window; a nonzero return cancels (MEND_EINVAL). */
typedef int (*mend_router_progress_fn)(void *user, int done, int total);
/* Train the learned router: windows of the corpora labelled by the loss
 * selector over the bank's prompts (loaded), then a logistic regression on
 * the mean token embedding. *out: mend_bank_set_learned_router or
 * mend_learned_router_free. st may be NULL. */
int mend_router_train(const mend_model *m, const mend_bank *b, const char *const *texts, const size_t *lens,
                      int n_texts, const mend_router_opts *o, mend_router_progress_fn progress, void *user,
                      mend_learned_router **out, mend_router_stats *st);

/* ---- selectors ----------------------------------------------------------------
 * attention, attention-calibrated, router, loss, learned, oracle (by the
 * label; analysis only, decided by the scorer), fixed:NAME, none. Every
 * selector picks the argmax of its scores, the lowest index on ties. */
enum mend_select_kind {
    MEND_SELECT_NONE = 0,
    MEND_SELECT_FIXED = 1,
    MEND_SELECT_ATTENTION = 2,
    MEND_SELECT_ROUTER = 3,
    MEND_SELECT_LOSS = 4,
    MEND_SELECT_ORACLE = 5,
    MEND_SELECT_LEARNED = 6
};

typedef struct mend_select_spec {
    int kind;               /* enum mend_select_kind */
    int fixed;              /* MEND_SELECT_FIXED: prompt index */
    int layer0, layer1;     /* MEND_SELECT_ATTENTION: probed layers [layer0, layer1) */
    int calibrated;         /* attention-calibrated: scores minus the bank's calibration offsets */
    int max_tokens;         /* inputs are cut to their last max_tokens tokens for selection (0: 512) */
} mend_select_spec;

/* Parse a selector name against a bank (layers from the bank's settings;
 * the caller may override them afterwards); MEND_EINVAL naming the text. */
int mend_select_parse(const char *s, const mend_bank *b, mend_select_spec *out);
/* "A:B" -> [A, B); MEND_EINVAL otherwise. */
int mend_select_parse_layers(const char *s, int *l0, int *l1);
const char *mend_select_kind_name(int kind);

typedef struct mend_selector mend_selector;   /* opaque */
/* A selector for model m over the bank's prompts (loaded). Both must
 * outlive it. */
int mend_selector_new(mend_selector **out, const mend_model *m, const mend_bank *b, const mend_select_spec *spec);
void mend_selector_free(mend_selector *s);
/* Bytes of cached prompt keys / values (attention selector; 0 otherwise). */
size_t mend_selector_kv_bytes(const mend_selector *s);
/* Pick a prompt for an input of n tokens: *choice = k in [0, K) or -1 for
 * none. scores: NULL or K floats (every prompt's score). */
int mend_selector_pick(mend_selector *s, const int32_t *tokens, int n, int *choice, float *scores);
/* The picks of n_inputs inputs at once: choice (n_inputs), scores NULL or
 * (n_inputs, K); equal to mend_selector_pick on each input. */
int mend_selector_pick_many(mend_selector *s, const int32_t *const *tokens, const int *n, int n_inputs, int *choice,
                            float *scores);

#ifdef __cplusplus
}
#endif
#endif
