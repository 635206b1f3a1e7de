/* mend public API: inference-time dynamic prompting (IDP) over a prompt
 * bank: a prompt picked per input by one or more selectors, examples scored
 * grouped by their prompt, choice histograms, perplexity per window.
 * Included by mend.h; see docs/api.md and docs/idp.md. */
#ifndef MEND_IDP_API_H
#define MEND_IDP_API_H

#include "mend.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MEND_IDP_MAX_SEL 8   /* selectors per run */
#define MEND_IDP_BATCH 128   /* examples per mend_idp_eval_examples call, at most */

typedef struct mend_idp mend_idp;   /* opaque */

/* Read the bank in bank_dir and its prompts for model m (which must outlive
 * the run). Then add selectors and call mend_idp_start. The bank's record of
 * the model it was trained on is in mend_bank_get_info(mend_idp_bank(x)). */
int mend_idp_open(mend_idp **out, const mend_model *m, const char *bank_dir);
/* Add a selector (spec from mend_select_parse against mend_idp_bank(x)),
 * named name in records and tables. The first one added picks the prompt;
 * the others are computed and recorded only. MEND_ERANGE past
 * MEND_IDP_MAX_SEL; selector construction errors otherwise. */
int mend_idp_add_selector(mend_idp *x, const char *name, const mend_select_spec *spec);
/* Ready the run. per_prompt (forced by an oracle first selector): every
 * example / window is also scored with no prompt and with every prompt.
 * MEND_EINVAL when no selector was added. */
int mend_idp_start(mend_idp *x, int per_prompt);
void mend_idp_close(mend_idp *x);

const mend_bank *mend_idp_bank(const mend_idp *x);
/* "BANKNAME:SELECTOR" (the label of results lines). */
const char *mend_idp_label(const mend_idp *x);
int mend_idp_per_prompt(const mend_idp *x);
int mend_idp_n_sel(const mend_idp *x);
const char *mend_idp_sel_name(const mend_idp *x, int j);
/* Bytes of prompt keys/values cached by the selectors. */
size_t mend_idp_kv_bytes(const mend_idp *x);
/* Prompt k's embeddings (nv x dim), NULL for k = -1 (no prompt). */
const float *mend_idp_prompt(const mend_idp *x, int k);
int mend_idp_nv(const mend_idp *x);
/* Name of prompt k, "none" for -1. */
const char *mend_idp_prompt_name(const mend_idp *x, int k);

/* Every selector's pick for an input: choice[j] for selector j (-1: none;
 * -2: oracle, decided by the scorer). Times each selector. */
int mend_idp_pick_all(mend_idp *x, const int32_t *tokens, int n, int *choice);

/* ---- evaluation ---- */
/* Scorers for no prompt and each prompt (mend_eval_backend_model arguments),
 * all with the smallest of their windows. */
int mend_idp_eval_setup(mend_idp *x, int window, int max_batch);
/* The window shared by the scorers (after mend_idp_eval_setup). */
int mend_idp_eval_window(const mend_idp *x);
/* Select and score example i of t; r is the outcome under the first
 * selector's pick (free with mend_eval_result_free). */
int mend_idp_eval_example(mend_idp *x, const mend_task *t, size_t i, mend_eval_result *r, mend_eval_stats *stats);
/* Add the selection record of the last example ("idp": {...}) to a results
 * line of mend_result_json (*line is replaced). */
int mend_idp_annotate(mend_idp *x, char **line);
/* Without per-prompt scoring or an oracle, examples go MEND_IDP_BATCH at a
 * time: each is selected alone, then those that chose the same prompt are
 * scored together. */
int mend_idp_can_batch(const mend_idp *x);
int mend_idp_eval_examples(mend_idp *x, const mend_task *t, const size_t *idx, int n, mend_eval_result *r,
                           mend_eval_stats *stats);
/* Annotate the q-th result of the last mend_idp_eval_examples call. */
int mend_idp_annotate_batch(mend_idp *x, int q, char **line);
/* The run so far as Markdown: per task, how often each selector chose each
 * prompt, and the time spent selecting and scoring. *text malloc'd. */
int mend_idp_summary(const mend_idp *x, char **text);

/* ---- perplexity ---- */
typedef struct mend_idp_ppl_row {
    char name[96];       /* "no prompt", a prompt, "IDP SELECTOR", or the per-window oracle */
    double ppl, err;     /* err: llama.cpp's +/- */
} mend_idp_ppl_row;
typedef struct mend_idp_ppl_report {
    char *text;               /* Markdown: bank, timing, rows (per_prompt) and choice histograms */
    mend_idp_ppl_row *rows;   /* per_prompt only (else NULL) */
    int n_rows;
} mend_idp_ppl_report;
/* Perplexity with a prompt chosen per window from its first select_tokens
 * tokens (0: 128). res: the first selector's run. rep may be NULL; free it
 * with mend_idp_ppl_report_free. */
int mend_idp_perplexity(mend_idp *x, const int32_t *tokens, size_t n_tokens, const mend_ppl_opts *opts,
                        int select_tokens, mend_ppl_progress_fn progress, void *progress_user, mend_ppl_result *res,
                        mend_idp_ppl_report *rep);
void mend_idp_ppl_report_free(mend_idp_ppl_report *rep);

#ifdef __cplusplus
}
#endif
#endif
