/* Perplexity protocols (eval/ppl.c). The public entry points are in mend.h
 * (mend_ppl_run, mend_perplexity); this header holds the protocol constants
 * and the option resolution shared with tests.
 *
 * gptq     windows [i*n_ctx, (i+1)*n_ctx), i < n_tokens / n_ctx (last partial
 *          window dropped); positions 0..n_ctx-2 predict tokens 1..n_ctx-1
 *          (n_ctx - 1 scores per window); window loss L_i = mean of its nll;
 *          ppl = exp(sum_i (L_i * n_ctx) / (n_windows * n_ctx)) = exp(mean_i L_i),
 *          exactly the GPTQ repository's eval loop.
 * llamacpp chunks as above; at least 2 * n_ctx tokens are required; token 0 of
 *          each chunk is replaced by BOS when the model adds BOS; positions
 *          first = n_ctx/2 .. n_ctx-2 predict tokens first+1 .. n_ctx-1
 *          (n_ctx - 1 - n_ctx/2 scores per chunk); ppl = exp(sum nll / count),
 *          +/- = ppl * sqrt((mean(nll^2) - mean(nll)^2) / (count - 1)).
 */
#ifndef MEND_EVAL_PPL_H
#define MEND_EVAL_PPL_H

#include "mend.h"

/* The protocol constants, mend_ppl_resolve_opts and mend_ppl_first are
 * public (mend.h). */

#endif
