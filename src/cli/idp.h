/* Inference-time dynamic prompting in the CLI (idp.c): --bank DIR --select S
 * for eval, ppl and generate.
 *
 * S is one selector (attention, router, loss, learned, oracle, fixed:NAME,
 * none) or a comma-separated list: the first is used, the others are only
 * computed and recorded (their picks, for analysis). With per_prompt (or when the
 * first is oracle) every example is also scored with no prompt and with
 * every prompt of the bank, and those outcomes are recorded too. */
#ifndef MEND_CLI_IDP_H
#define MEND_CLI_IDP_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "eval/harness.h"
#include "eval/tasks.h"
#include "mend.h"
#include "prompt/bank.h"

#define CLI_IDP_MAX_SEL 8
#define CLI_IDP_BATCH 32   /* examples per cli_idp_eval_examples call */

typedef struct cli_idp cli_idp;

/* Load the bank and its prompts for model m (loaded from model_path; a bank
 * trained on another model is reported, cli_check_trained_on), parse the selector list;
 * layers: NULL or "A:B" for the attention selector; max_tokens: selection
 * inputs cut to their last max_tokens tokens (0: 512). Prints errors. */
int cli_idp_open(cli_idp **out, const char *cmd, const mend_model *m, const char *model_path, const char *bank_dir,
                 const char *select, const char *layers, int max_tokens, int per_prompt);
void cli_idp_close(cli_idp *x);
const mend_bank *cli_idp_bank(const cli_idp *x);
/* "BANKNAME:SELECTOR" (the label of results lines) */
const char *cli_idp_label(const cli_idp *x);
int cli_idp_per_prompt(const cli_idp *x);
int cli_idp_n_sel(const cli_idp *x);
const char *cli_idp_sel_name(const cli_idp *x, int j);
/* Bytes of prompt keys/values cached by the selectors. */
size_t cli_idp_kv_bytes(const cli_idp *x);

/* Picks of every selector for an input; choice[j] for selector j (-1: none;
 * oracle: -2, decided later by the caller). Times each selector. */
int cli_idp_pick_all(cli_idp *x, const int32_t *tokens, int n, int *choice);

/* ---- eval ---- */
/* K + 1 backends (no prompt, then each prompt) for mend_eval_example. */
int cli_idp_eval_setup(cli_idp *x, int window, int max_batch);
/* The backend of prompt k (k = -1: no prompt). */
const mend_eval_backend *cli_idp_backend(const cli_idp *x, int k);
/* Select and score example i of t; r is the outcome under the first
 * selector's pick. The annotation of the example is kept for
 * cli_idp_annotate. */
int cli_idp_eval_example(cli_idp *x, const mend_task *t, size_t i, mend_eval_result *r, mend_eval_stats *stats);
/* Add the selection record of the last example ("idp": {...}) to a results line. */
int cli_idp_annotate(cli_idp *x, char **line);
/* Without per-prompt scoring or the oracle (cli_idp_can_batch), examples can
 * go CLI_IDP_BATCH at a time: each is selected alone, then the examples that
 * chose the same prompt are scored together in packed forwards
 * (mend_eval_examples), as a single-prompt run scores them. r: n results in
 * idx order; cli_idp_annotate_batch(x, q, line) annotates the q-th. */
int cli_idp_can_batch(const cli_idp *x);
int cli_idp_eval_examples(cli_idp *x, const mend_task *t, const size_t *idx, int n, mend_eval_result *r,
                          mend_eval_stats *stats);
int cli_idp_annotate_batch(cli_idp *x, int q, char **line);
/* Per task, how often each selector chose each prompt, and the time spent
 * selecting vs scoring. */
void cli_idp_print_summary(const cli_idp *x, FILE *f);

/* ---- ppl ---- */
/* Perplexity with a prompt chosen per window from the window's first
 * select_tokens tokens (every state keeps its prompt's KV at [0, nv)).
 * With per_prompt every window is also scored with no prompt and each
 * prompt, and the perplexity of every row (none, each prompt, each
 * selector's picks, the per-window oracle) is printed to f and, when rows
 * is a JSON array, appended to it as {row, ppl, stderr}. res: the first
 * selector's run. */
int cli_idp_perplexity(cli_idp *x, const int32_t *tokens, size_t n_tokens, const mend_ppl_opts *opts,
                       int select_tokens, mend_ppl_progress_fn progress, void *progress_user, mend_ppl_result *res,
                       FILE *f, json_t *rows);

/* ---- generate ---- */
/* Prompt k's embeddings (nv x dim) or NULL for k = -1. */
const float *cli_idp_prompt(const cli_idp *x, int k);
int cli_idp_nv(const cli_idp *x);
/* Name of prompt k, "none" for -1. */
const char *cli_idp_prompt_name(const cli_idp *x, int k);

#endif
