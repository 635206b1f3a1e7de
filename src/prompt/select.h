/* Per-input prompt selection over a bank (prompt/select.c): inference-time
 * dynamic prompting (IDP).
 *
 * Selectors (the name is what --select takes):
 *   attention   all K prompts before the input (model/attn_probe.h); the
 *               score of prompt k is the attention mass its block receives,
 *               averaged over the probed layers [A, B), every query head and
 *               every input token:
 *                 score_k = mean_{l in [A,B), h, i} sum_{t in block k} p_lhi[t]
 *               All prompts have the same length nv, so this ranks exactly as
 *               the mean attention per prompt token (score_k / nv). The
 *               probe stops after layer B-1.
 *   router      cosine similarity between the input's mean final hidden
 *               state (after the output norm, no prompt) and each prompt's
 *               centroid (the same feature averaged over its domain's text)
 *   loss        the prompt under which the input itself is most likely: mean
 *               next-token NLL of input tokens 1..n-1 behind the prompt (no
 *               labels involved); score_k = -NLL
 *   learned     the bank's learned router (prompt/router.h): logistic
 *               regression on the input's mean token embedding, trained to
 *               pick what the loss selector picks; score_k = logit_k. Costs
 *               n embedding-row lookups and K dot products.
 *   oracle      the best prompt per example by its label (analysis only:
 *               needs the answer; done by the caller, see
 *               mend_select_oracle_pick)
 *   fixed:NAME  always that prompt
 *   none        no prompt
 * Every selector picks the argmax of its scores, the lowest index on ties. */
#ifndef MEND_PROMPT_SELECT_H
#define MEND_PROMPT_SELECT_H

#include <stddef.h>
#include <stdint.h>
#include "mend.h"
#include "eval/harness.h"
#include "prompt/bank.h"

/* The kinds, mend_select_spec, parsing and the selector handle are public
 * (mend/bank.h). */

/* Index of the largest value, the lowest index on ties (NaN never wins);
 * -1 when n < 1. */
int mend_select_argmax(const float *v, int n);

/* Oracle over K outcomes of the same example, one per prompt: the one
 * that is correct (acc, or em for generation) wins; among equals, the
 * largest margin ll[gold] - max_{j != gold} ll[j] (multiple choice, schema)
 * or the largest continuation ll (language modelling); then the lowest
 * index. */
int mend_select_oracle_pick(const mend_eval_result *r, int K);

/* Window w of n_windows of a text: the first `window` tokens (no BOS) from
 * the paragraph start at or after byte w*len/n_windows. *ids malloc'd (may
 * be set with *n == 0: no paragraph there); *n <= window. */
int mend_select_window(const mend_tokenizer *tok, const char *text, size_t len, int w, int n_windows, int window,
                       int32_t **ids, int *n);

/* mend_select_calibrate and mend_select_centroid are public (mend/bank.h). */

#endif
