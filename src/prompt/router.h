/* The learned router (prompt/router.c): a selector trained to imitate the
 * loss selector at the cost of n embedding-row lookups.
 *
 * Feature of an input of n tokens (the tokens every selector sees, cut to
 * the last max_tokens): the mean of the model's token-embedding rows,
 *   x = (1/n) sum_i E[t_i]          (dim; dequantized from tok_embd)
 * optionally divided by its L2 norm. No layer of the model runs.
 * Model: multinomial logistic regression, logit_k = w_k . x + b_k, and the
 * selector picks argmax_k logit_k.
 *
 * Training (mend_router_train): windows of `window` tokens at evenly spaced
 * paragraph starts of each domain's corpus (mend_select_window), n_windows
 * per corpus; each is labelled with the loss selector's pick over the bank
 * (the prompt under which the window is most likely). Every 5th window
 * (index % 5 == 4, in corpus-major order) is held out. The fit minimises the
 * mean softmax cross-entropy + l2/2 ||W||^2 on the standardized features by
 * Nesterov-accelerated full-batch gradient descent with step 1/L (L bounds
 * the Hessian), single-threaded in a fixed order: the same data gives the
 * same weights. The standardization is folded into w and b, so inference
 * reads the raw feature. */
#ifndef MEND_PROMPT_ROUTER_H
#define MEND_PROMPT_ROUTER_H

#include <stddef.h>
#include <stdint.h>
#include "mend.h"
#include "prompt/bank.h"

/* mend_router_opts, its defaults, mend_router_stats, the progress callback
 * and mend_router_train are public (mend/bank.h). */


/* The feature of n >= 1 tokens -> x (dim). */
int mend_router_feature(const mend_model *m, const int32_t *tokens, int n, int normalize, float *x);
/* logits (K) of the feature x (dim). */
void mend_router_logits(const mend_learned_router *r, const float *x, float *logits);

/* Fit on n features X (n, dim) with labels y in [0, K); every 5th held out.
 * *out malloc'd (free with mend_learned_router_free); st may be NULL. */
int mend_router_fit(const float *X, const int *y, int n, int dim, int K, int normalize, const mend_router_opts *o,
                    mend_learned_router **out, mend_router_stats *st);


#endif
