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

/* ---- expert banks (prompt/experts.c) ----
 *
 * A bank of expert prompts trained by hard EM.
 *
 * A domain bank gives each prompt the text of one corpus. An expert bank
 * lets the prompts divide the text among themselves by what each repairs
 * best, and trains them on that division with the rule the bank selects by
 * at inference:
 *
 *   chunks   the pooled corpora cut into sequences of tune.seqlen tokens,
 *            one per paragraph start (MEND_TUNE_WINDOWS_PARAGRAPH), with
 *            tune.val_frac of the paragraphs held out; a seeded permutation
 *            of the training chunks gives each round its own P = K x
 *            tune.steps x tune.batch chunks, so every expert sees tune.steps
 *            x tune.batch chunks per round and no chunk is seen twice
 *   start    every expert is the same prompt (tune.init_prompt: the shared
 *            prompt of the repair recipe), so round 0 splits its chunks by
 *            balanced k-means on the learned router's feature (the mean
 *            token embedding, L2-normalised; prompt/router.h): experts
 *            begin on text the router can tell apart
 *   E step   rounds 1.. label their chunks with the loss selector over the
 *            current experts (the expert under which the chunk itself is
 *            most likely: no teacher, no labels), balanced: each expert
 *            takes at most ceil(P / K) chunks, chunks with the clearest
 *            preference first (mend_experts_balance)
 *   M step   each expert continues from where it is (tune.init =
 *            MEND_TUNE_INIT_PROMPT) for tune.steps steps on its chunks with
 *            tune's objective (KL to the teacher by default), validated on
 *            the held-out chunks labelled the same way (for the record: the
 *            expert goes on from its last step, not its best validation)
 *   router   after the last round the experts label one more fresh set of
 *            P chunks by loss, and the learned router is fitted to predict
 *            those labels from the feature (mend_router_fit): at inference
 *            the router picks what the training rule would have picked, at
 *            the cost of n embedding-row lookups
 *
 * Files in out_dir (a killed run resumes from them and repeats no finished
 * work; every file is written atomically):
 *   round-R/labels.json   the chunks of round R and each one's expert, the
 *                         held-out labels, and the per-expert counts
 *   round-R/eK/           expert K's tune run of round R (tune resumes it)
 *   eK/                   expert K after the last round (PEFT adapter,
 *                         train.json counting every round's tokens)
 *   bank.json             K prompts "eK", the learned router, selector
 *                         default "learned" (written last: its presence
 *                         means the bank is complete)
 * Training tokens: K x rounds x tune.steps x tune.batch x tune.seqlen on top
 * of the start prompt's (tune.start_tokens), the same count a domain bank
 * of K prompts with rounds x tune.steps steps each reads. */
typedef struct mend_experts_opts {
    int n_experts;          /* K (4) */
    int rounds;             /* rounds of E and M steps (3) */
    int kmeans_iters;       /* Lloyd iterations of the round-0 split (20) */
    mend_tune_opts tune;    /* each expert's M step per round; tune.init_prompt is the start
                               (required), tune.out_dir is set per expert and round */
    mend_router_opts router;   /* l2, iters, normalize of the router fit */
    const char *out_dir;
    const char *base_model; /* recorded in bank.json and the adapters */
} mend_experts_opts;

void mend_experts_opts_default(mend_experts_opts *o);

/* What the run is doing: phase "kmeans", "label", "train" or "router";
 * round (0-based; == rounds for the final labelling and the router); expert (train: 0..K-1, else -1); done of total units
 * (chunks labelled or steps trained). A nonzero return stops the run
 * (MEND_EINVAL "cancelled"); it resumes from its files. */
typedef struct mend_experts_progress {
    const char *phase;
    int round, rounds, expert, n_experts;
    int done, total;
    double loss;            /* train: the step's objective; label: NaN */
} mend_experts_progress;
typedef int (*mend_experts_progress_fn)(void *user, const mend_experts_progress *p);

typedef struct mend_experts_result {
    int n_chunks, n_val_chunks;     /* training / held-out chunks available */
    int chunks_per_round;           /* P */
    int counts[MEND_BANK_MAX_PROMPTS];      /* router labels per expert */
    mend_router_stats router;
    int64_t train_tokens;           /* per expert, all rounds */
} mend_experts_result;

/* Build the expert bank of model m (f32 matrices, prompt/train.h) on the
 * texts; teacher for tune's KL objective. */
int mend_experts_build(const mend_model *m, const mend_model *teacher, const char *const *texts, const size_t *lens,
                       int n_texts, const mend_experts_opts *o, mend_experts_progress_fn progress, void *user,
                       mend_experts_result *res);


#ifdef __cplusplus
}
#endif
#endif
