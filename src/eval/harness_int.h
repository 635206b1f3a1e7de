/* What the parts of the evaluation harness share among themselves
 * (text.c, loglik.c, generate.c, harness.c, backend.c); harness.h is what
 * the rest of mend sees. */
#ifndef MEND_EVAL_HARNESS_INT_H
#define MEND_EVAL_HARNESS_INT_H

#include <stddef.h>
#include <stdint.h>
#include "eval/harness.h"
#include "util/util.h"

/* ---- text (text.c) ---- */

/* The code point at p (NUL-terminated, end its end): its length, with
 * *cp = EVAL_BAD_CP for a byte that does not start a well-formed sequence
 * (taken as one byte). */
#define EVAL_BAD_CP 0xFFFFFFFFu
static inline int eval_utf8_next(const unsigned char *p, const unsigned char *end, uint32_t *cp) {
    int k = mend_utf8_decode((const char *)p, (size_t)(end - p), cp);
    if (k) return k;
    *cp = EVAL_BAD_CP;
    return 1;
}

/* Python's str.isspace() for the code points that occur in text. */
int eval_is_space(uint32_t c);

/* ---- log-likelihood planning and packing (loglik.c) ---- */

/* One request: its tokens and where it is scored. */
typedef struct eval_seq {
    int32_t *full;  /* ctx ++ cont, truncated to window + 1 */
    int len;        /* tokens in full */
    int n_cont;
    int m;          /* input length = len - 1 */
    int f;          /* first scoring position in the input */
} eval_seq;

/* The requests of one example, tokenized, with their common prefix. */
typedef struct eval_plan {
    int n;
    eval_seq *sq;
    int L;          /* longest common prefix of the inputs */
    int s;          /* first position scored by any request (<= L) */
    int max_m;
    mend_eval_ll *out;
} eval_plan;

/* Tokenize the n requests into p (out: n results, zeroed here). */
int eval_plan_build(mend_eval_backend *b, int n, const char *const *contexts, const char *const *continuations,
                    mend_eval_ll *out, mend_eval_stats *stats, eval_plan *p);
void eval_plan_free(eval_plan *p);
/* Rows one packed forward of this plan needs: the prefix once, then every
 * request's tail. */
int eval_plan_rows(const eval_plan *p);
/* One example through forward: the prefix once, then each request's tail. */
int eval_plan_run(mend_eval_backend *b, eval_plan *p, int want_argmax, mend_eval_stats *stats);
/* Several examples' plans in one forward_rows call (rows <= max_batch):
 * each plan's prefix at consecutive slots, then its requests' tails, each
 * tail attending to its prefix and to itself. */
int eval_plans_run_packed(mend_eval_backend *b, int lane, eval_plan *const *ps, int np, int want_argmax,
                          mend_eval_stats *stats);
/* Free the argmax arrays of n results. */
void eval_ll_release(mend_eval_ll *out, int n);
/* First maximum of a row (torch.argmax). */
int32_t eval_row_argmax(const float *row, int n_vocab);
/* forward in chunks of max_batch; logits (rows x n_vocab) when wanted. */
int eval_run_span(const mend_eval_backend *b, const int32_t *toks, int from, int to, float *logits,
                  mend_eval_stats *st);
/* The logits scratch grown to at least n floats (fresh large mallocs would
 * be page-faulted and zeroed by the kernel on every call); a lane's own
 * (lane 0: the backend's). */
float *eval_scratch(mend_eval_backend *b, size_t n);
float *eval_lane_scratch(mend_eval_backend *b, int lane, size_t n);

/* ---- generation (generate.c) ---- */

/* The tokens generation conditions on: the context left-truncated to
 * window - max_tokens (counted in stats), an empty one replaced by the
 * prefix token. *ids is malloc'd; *ctx points into it. */
int eval_gen_context(const mend_eval_backend *b, const char *context, int max_tokens, int32_t **ids,
                     const int32_t **ctx, int *n_ctx, int *truncated, mend_eval_stats *stats);
/* One greedy step of generation: am is the argmax of the last logits.
 * Returns 1 when generation has ended (end-of-generation token, a stop
 * string in the text so far, or max_tokens generated), 0 to go on with
 * gen[*ng - 1], < 0 on error. *text: the decoded generation so far. */
int eval_gen_step(const mend_eval_backend *b, int32_t am, int32_t *gen, int *ng, int max_tokens,
                  const char *const *until, int n_until, char **text);
/* lm-eval: for each stop string, generation = generation.split(term)[0].
 * Takes text (NULL: nothing generated) into *raw; *cut is the cut copy. */
int eval_gen_cut(char *text, const char *const *until, int n_until, char **raw, char **cut);

#endif
