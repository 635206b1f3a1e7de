/* Zero-shot scoring with lm-evaluation-harness rules.
 *
 * Loglikelihood requests (context, continuation) are tokenized as lm-eval's
 * `_encode_pair` does: trailing whitespace of the context moves to the front
 * of the continuation, then
 *     whole = tok(context + continuation), ctx = tok(context),
 *     cont  = whole[len(ctx):]
 * and the model sees ctx ++ cont, left-truncated to window + 1 tokens, minus
 * its last token. ll = sum of log softmax at the continuation tokens;
 * is_greedy = every continuation token is the argmax (lowest id on ties).
 *
 * All requests of one example are scored together: the longest common token
 * prefix of their inputs is run once and its KV is shared; each request then
 * runs only its own tail from there (the backend's forward at an earlier pos
 * overwrites the cache, so forking is free).
 *
 * The scorer is an abstract backend so that the sharing logic is testable
 * without a model; mend_eval_backend_model() wraps a mend_model, optionally
 * behind a soft prompt whose KV is computed once and kept at positions
 * [0, n_virtual).
 */
#ifndef MEND_EVAL_HARNESS_H
#define MEND_EVAL_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include "mend.h"
#include "eval/tasks.h"

#define MEND_EVAL_MAX_LANES 8

typedef struct mend_eval_row {
    int pos;            /* text position */
    int ctx0, ctx1;     /* text slots of the shared context */
    int own0;           /* first text slot of the row's own sequence */
} mend_eval_row;

typedef struct mend_eval_backend {
    void *user;
    int n_vocab;
    int window;             /* max tokens per sequence (lm-eval's max_length) */
    int max_batch;          /* positions per forward call */
    int32_t prefix_token;   /* conditioning token for an empty context (BOS, else EOS) */
    /* Encode text as the tokenizer does by default (BOS only when the tokenizer adds it). */
    int (*tokenize)(void *user, const char *text, size_t len, int32_t **ids, size_t *n);
    /* Decode ids to a malloc'd string, special tokens skipped. */
    int (*detokenize)(void *user, const int32_t *ids, size_t n, char **text);
    /* Make room for sequences of n text positions (before any forward of an
     * example; may drop cached text positions). */
    int (*reserve)(void *user, int n);
    /* Run n tokens at text position pos (attending to [0, pos)); logits is
     * NULL, n x n_vocab (logits_all) or n_vocab (last position). */
    int (*forward)(void *user, const int32_t *tokens, int n, int pos, float *logits,
                   int logits_all);
    /* End-of-generation token? */
    int (*is_eog)(void *user, int32_t id);
    /* Optional: several sequences in one call. Row i is written to text slot
     * slots[i] (slots NULL: slot i; the slots of earlier calls are kept
     * unless overwritten), rotated at text position rows[i].pos, and attends
     * to the slots [ctx0, ctx1) and [own0, its own slot] (plus the backend's
     * soft prompt). logits: n_out x n_vocab at the rows out_rows
     * (increasing). n <= max_batch. When NULL, examples are scored one by
     * one through forward. */
    int (*forward_rows)(void *user, int lane, const int32_t *tokens, int n, const int *slots,
                        const struct mend_eval_row *rows, float *logits, const int *out_rows,
                        int n_out);
    /* Optional, with forward_rows: make the lane's cache hold n text slots,
     * dropping what it holds (batched generation calls it before it starts,
     * then gives its rows slots; forward_rows refuses a slot past the
     * reserved ones rather than growing the cache under running generations).
     * NULL: generation runs example by example. */
    int (*reserve_lane)(void *user, int lane, int n);
    /* forward_rows lanes: independent caches that may run at the same time,
     * one call per lane (lane 0 shares its cache with forward). With more than
     * one, the packed forwards of mend_eval_examples run lanes at once, each
     * single-threaded: no barrier inside a forward, so a thread that loses
     * its core to another process holds up only its own lane. */
    int n_lanes;
    /* logits scratch reused across calls (owned by the harness; released by
     * mend_eval_backend_free or mend_eval_scratch_free) */
    float *scratch;
    size_t scratch_cap;     /* floats */
    float *lane_scratch[MEND_EVAL_MAX_LANES];   /* the same for lanes 1.. */
    size_t lane_scratch_cap[MEND_EVAL_MAX_LANES];
} mend_eval_backend;

/* Release the logits scratch of a backend the caller built itself. */
void mend_eval_scratch_free(mend_eval_backend *b);

/* mend_eval_backend_model and mend_eval_backend_free are public (mend/eval.h). */

/* lm-eval's _encode_pair: *ctx_ids and *cont_ids are malloc'd. An empty (or
 * all-whitespace) context conditions on prefix_token as lm-eval does. */
int mend_eval_encode_pair(const mend_eval_backend *b, const char *context,
                          const char *continuation, int32_t **ctx_ids, size_t *n_ctx,
                          int32_t **cont_ids, size_t *n_cont);

typedef struct mend_eval_ll {
    double ll;              /* sum of log p over the continuation tokens */
    int greedy;             /* every continuation token is the argmax */
    int n_tokens;           /* continuation tokens */
    int truncated;          /* the sequence was left-truncated to the window */
    int32_t *argmax;        /* if want_argmax: n_tokens greedy ids (malloc'd) */
} mend_eval_ll;

/* mend_eval_stats is public (mend/eval.h). */

/* Score n requests sharing their common token prefix. stats may be NULL. */
int mend_eval_loglikelihood(mend_eval_backend *b, int n, const char *const *contexts,
                            const char *const *continuations, int want_argmax,
                            mend_eval_ll *out, mend_eval_stats *stats);

/* Greedy decoding (lm-eval generate_until): the context (left-truncated to
 * window - max_tokens) is run, then tokens are taken greedily until an
 * end-of-generation token, max_tokens, or until the decoded text contains one
 * of the until strings. *raw is the decoded text, *cut the text before the
 * first stop string. */
int mend_eval_generate(mend_eval_backend *b, const char *context, int max_tokens,
                       const char *const *until, int n_until, char **raw, char **cut,
                       mend_eval_stats *stats);

/* lm-eval exact_match with ignore_case and ignore_punctuation: lowercase
 * (ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic), drop the ASCII
 * punctuation of Python's string.punctuation, compare. */
int mend_eval_exact_match(const char *pred, const char *ref);
/* malloc'd normalized form used by mend_eval_exact_match. */
char *mend_eval_normalize(const char *s);
/* Python str.strip() on ASCII and Unicode whitespace; malloc'd. */
char *mend_eval_strip(const char *s);
/* mend_utf8_len (Python len()) is in util/util.h. */

/* mend_eval_result is public (mend/eval.h). */

#define MEND_EVAL_MAX_GEN 32

/* mend_eval_example, mend_eval_examples and mend_eval_result_free are public
 * (mend/eval.h). */

#endif
