/* Results files: one JSON object per evaluated example, appended and flushed
 * as soon as it is scored, so that a killed run loses nothing and resumes.
 * Every summary (end of `mend eval`, `mend report`) is derived from these
 * lines alone.
 *
 * Line fields: task, index (0-based example), line (in the task file), kind,
 * model, prompt (null when none), then by kind
 *   multiple_choice / schema: ll[], is_greedy[], n_tokens[], n_chars[], gold,
 *                             pred, acc (+ pred_norm, acc_norm for MC)
 *   language_modeling:        ll[1], is_greedy[1], n_tokens[1], pred (greedy
 *                             text), acc
 *   generation_qa:            pred (filtered answer), raw, answer, em
 * plus truncated (sequences left-truncated to the window).
 */
#ifndef MEND_EVAL_RESULTS_H
#define MEND_EVAL_RESULTS_H

#include <stddef.h>
#include "eval/harness.h"

/* mend_result_json, the results records, summaries and paired differences
 * are public (mend/eval.h). */
/* lm-eval's bootstrap standard error of exp(-mean ll): iters resamples in
 * chunks of 1000, chunk i drawn with Python's random.Random(i).choices
 * (MT19937), reproduced draw for draw (lm-eval's default iters: 100000). */
double mend_bootstrap_stderr_ppl(const double *ll, size_t n, int iters);

#endif
