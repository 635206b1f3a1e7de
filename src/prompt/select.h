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
    int calibrated;         /* MEND_SELECT_ATTENTION ("attention-calibrated"): each score
                               minus the prompt's mean score over corpus windows (the
                               bank's attention_calibration, measured on these layers) */
    int max_tokens;         /* inputs longer than this are cut to their last max_tokens
                               tokens for selection (0: 512) */
} mend_select_spec;

/* Parse "attention", "attention-calibrated", "router", "loss", "learned", "oracle", "fixed:NAME", "none"
 * against a bank; layers from the bank's selector settings unless the
 * caller overrides them afterwards. */
int mend_select_parse(const char *s, const mend_bank *b, mend_select_spec *out);
/* "A:B" -> [A, B) */
int mend_select_parse_layers(const char *s, int *l0, int *l1);
const char *mend_select_kind_name(int kind);

typedef struct mend_selector mend_selector;

/* A selector for model m over the bank's prompts (loaded with
 * mend_bank_load_prompts). Prompt KVs for the attention probe are computed
 * here, once. */
int mend_selector_new(mend_selector **out, const mend_model *m, const mend_bank *b, const mend_select_spec *spec);
void mend_selector_free(mend_selector *s);
/* Bytes of cached prompt keys / values (attention selector; 0 otherwise). */
size_t mend_selector_kv_bytes(const mend_selector *s);

/* Pick a prompt for an input of n tokens: *choice = k in [0, K), or -1 for
 * none. scores: NULL or K floats (the selector's scores; fixed/none: 1 for
 * the pick, 0 elsewhere). Oracle cannot pick here (MEND_EINVAL). */
int mend_selector_pick(mend_selector *s, const int32_t *tokens, int n, int *choice, float *scores);
/* The picks of n_inputs inputs (tokens[j], n[j] tokens each): choice
 * (n_inputs), scores NULL or (n_inputs, K). The attention selector probes
 * as many inputs per pass as its max_tokens holds (mend_probe_attention_many:
 * the weights are streamed once per pass, not once per input); the others
 * pick one input at a time. Picks and scores equal mend_selector_pick's on
 * each input (bit for bit where mend's sgemm runs, see attn_probe.h). */
int mend_selector_pick_many(mend_selector *s, const int32_t *const *tokens, const int *n, int n_inputs, int *choice,
                            float *scores);

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
/* The attention calibration of bank b (prompts loaded) for model m: the
 * mean attention score of each prompt (layers b->layer0..layer1) over
 * n_windows windows of window tokens at evenly spaced paragraph starts of
 * each of the n_texts corpora (mend_select_window), into b->attn_*. */
int mend_select_calibrate(const mend_model *m, mend_bank *b, const char *const *texts, const size_t *lens,
                          int n_texts, int n_windows, int window);

int mend_select_window(const mend_tokenizer *tok, const char *text, size_t len, int w, int n_windows, int window,
                       int32_t **ids, int *n);

/* The router feature of a domain: the mean, over n_windows windows of
 * window tokens taken at evenly spaced paragraph starts of text, of
 * mend_probe_hidden_mean. centroid (dim). */
int mend_select_centroid(const mend_model *m, const char *text, size_t len, int n_windows, int window,
                         float *centroid, int *n_used);

#endif
