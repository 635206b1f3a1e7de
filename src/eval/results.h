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

/* The JSON line (no newline) for one example; malloc'd. prompt may be NULL. */
int mend_result_json(const mend_task *t, size_t index, const mend_eval_result *r,
                     const char *model, const char *prompt, char **line);

typedef struct mend_result_rec {
    char *task, *model, *prompt;    /* prompt: NULL when none */
    long index;
    int kind;
    double acc, acc_norm, em, ll;   /* ll: LM only (sum over the continuation) */
    int has_acc_norm;
    int truncated;
    int line;                       /* line in the results file */
} mend_result_rec;

typedef struct mend_results {
    char *path;
    mend_result_rec *rec;
    size_t n;
    size_t valid_bytes;     /* bytes up to the end of the last complete line */
    size_t file_size;
    int partial;            /* the file ends in an incomplete line (dropped) */
} mend_results;

/* Read a results file. A final line without its newline is a partial write of
 * a killed run: it is dropped (partial = 1). A complete line that does not
 * parse is MEND_EFORMAT naming the file and line. */
int mend_results_load(const char *path, mend_results *out);
void mend_results_free(mend_results *r);

typedef struct mend_task_summary {
    char *task;
    int kind;
    size_t n;
    double acc, acc_se;
    double acc_norm, acc_norm_se;   /* MC only (has_acc_norm) */
    double ppl, ppl_se;             /* LM only */
    double em, em_se;               /* GEN only */
    int has_acc_norm;
    long truncated;
    size_t duplicates;              /* repeated (task, index) lines ignored */
} mend_task_summary;

/* One summary per task, in order of first appearance. Standard errors as
 * lm-eval reports them: mean_stderr = sample stdev (ddof = 1) / sqrt(n);
 * perplexity exp(-mean ll) with lm-eval's bootstrap error (below). */
int mend_results_summarize(const mend_results *res, mend_task_summary **out, size_t *n_out);
void mend_summaries_free(mend_task_summary *s, size_t n);
double mend_mean_stderr(const double *x, size_t n);

/* Two runs compared on the examples both hold: lines joined on (task,
 * index), the first line of a repeated index kept (as in the summary), per
 * example the headline metric (em for generation QA, acc otherwise).
 * diff = mean over the common examples of (b - a); se = the sample standard
 * deviation (ddof 1) of the per-example differences / sqrt(n) (NaN when
 * n < 2). only_a / only_b count the examples one run holds and the other
 * does not. A task scored as one kind in a and another in b is MEND_EFORMAT
 * naming both files and lines. */
typedef struct mend_paired {
    size_t n, only_a, only_b;
    double diff, se;
} mend_paired;
int mend_results_paired(const mend_results *a, const mend_results *b, mend_paired *out);
/* The same on two aligned arrays: diff = mean(b - a), se as above. */
void mend_paired_diff(const double *a, const double *b, size_t n, mend_paired *out);
/* lm-eval's bootstrap standard error of exp(-mean ll): iters resamples in
 * chunks of 1000, chunk i drawn with Python's random.Random(i).choices
 * (MT19937), reproduced draw for draw (lm-eval's default iters: 100000). */
double mend_bootstrap_stderr_ppl(const double *ll, size_t n, int iters);

#endif
