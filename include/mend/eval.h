/* mend public API: zero-shot evaluation with lm-evaluation-harness rules,
 * results files and reports. Included by mend.h; see docs/api.md and
 * docs/eval.md. */
#ifndef MEND_EVAL_API_H
#define MEND_EVAL_API_H

#include "mend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- task files ------------------------------------------------------------------
 * JSONL in one of four shapes (multiple choice, schema, language model,
 * generation QA); any violation is MEND_EFORMAT naming the file and line. */
enum mend_task_kind {
    MEND_TASK_MC = 0,       /* multiple choice */
    MEND_TASK_SCHEMA = 1,   /* partial scoring over context options */
    MEND_TASK_LM = 2,       /* language modelling (greedy acc + perplexity) */
    MEND_TASK_GEN = 3       /* generation QA (exact match against aliases) */
};

typedef struct mend_task mend_task;   /* opaque */
/* Load a task file; limit > 0 keeps only the first limit examples (the rest
 * are still validated). Free with mend_task_free. */
int mend_task_load(mend_task **out, const char *path, size_t limit);
void mend_task_free(mend_task *t);
/* "multiple_choice", "schema", "language_modeling", "generation_qa" */
const char *mend_task_kind_name(int kind);

typedef struct mend_task_info {
    const char *name;       /* file name without directory and ".jsonl" (borrowed) */
    const char *path;
    int kind;               /* enum mend_task_kind */
    size_t n;               /* examples loaded */
    size_t n_total;         /* examples in the file (>= n when limited) */
} mend_task_info;
/* What t holds; the strings are borrowed from t. */
void mend_task_get_info(const mend_task *t, mend_task_info *info);
/* The 1-based line of example i in its file (for messages); 0 when i is
 * out of range. */
int mend_task_example_line(const mend_task *t, size_t i);

/* ---- scoring -------------------------------------------------------------------- */
/* A scorer over a model, optionally behind a soft prompt. */
typedef struct mend_eval_backend mend_eval_backend;   /* opaque */

/* A scorer over model m (which must outlive it). prompt: NULL or n_virtual x
 * dim embeddings (copied). window <= 0: the model's context length minus
 * n_virtual. max_batch <= 0: 256. */
int mend_eval_backend_model(mend_eval_backend **out, const mend_model *m, const float *prompt,
                            int n_virtual, int window, int max_batch);
void mend_eval_backend_free(mend_eval_backend *b);
/* Tokens per scored sequence (lm-eval's max_length). */
int mend_eval_backend_window(const mend_eval_backend *b);
void mend_eval_backend_set_window(mend_eval_backend *b, int window);
/* Make room for sequences of n text positions before scoring (a backend
 * with a soft prompt computes the prompt's keys and values here, once). */
int mend_eval_backend_reserve(mend_eval_backend *b, int n);

typedef struct mend_eval_stats {
    int64_t tokens_run;     /* positions sent to forward */
    int64_t tokens_naive;   /* positions a request-by-request run would send */
    int64_t truncated;      /* sequences left-truncated */
} mend_eval_stats;

/* One example's outcome (free its arrays with mend_eval_result_free). */
typedef struct mend_eval_result {
    int kind;               /* enum mend_task_kind */
    int n;                  /* scored options (MC, SCHEMA); 1 for LM; 0 for GEN */
    double *ll;
    int *greedy;
    int *n_tokens;
    int *n_chars;           /* MC: length of each choice in code points */
    int pred, pred_norm;    /* MC, SCHEMA: argmax ll; MC: argmax ll / n_chars */
    int gold;
    double acc, acc_norm;   /* acc_norm: MC only */
    double em;              /* GEN */
    char *pred_text;        /* GEN: filtered answer; LM: greedy tokens decoded */
    char *raw_text;         /* GEN: raw generation */
    int truncated;
} mend_eval_result;

/* Score example i of t. stats (may be NULL) is added to. */
int mend_eval_example(mend_eval_backend *b, const mend_task *t, size_t i, mend_eval_result *r,
                      mend_eval_stats *stats);
/* Score examples idx[0..n) of t together (packed forwards, continuous
 * batching for generation); r: n results, equal to mend_eval_example's up to
 * float summation order. */
int mend_eval_examples(mend_eval_backend *b, const mend_task *t, const size_t *idx, int n, mend_eval_result *r,
                       mend_eval_stats *stats);
void mend_eval_result_free(mend_eval_result *r);

/* ---- a task as `mend eval` scores it ----------------------------------------------- */
struct mend_idp;   /* mend/idp.h */

/* One scored example, handed to a mend_eval_run callback. */
typedef struct mend_eval_line {
    size_t index;                   /* the example's index in its task */
    const mend_eval_result *r;      /* its outcome (borrowed for the call) */
    const char *line;               /* its results line, no newline (borrowed for the call) */
    int truncated;                  /* its input was left-truncated to the window */
} mend_eval_line;
/* Return 0 to go on. A negative return stops the run, which returns it
 * (record the reason with mend_set_error first); a positive one stops it
 * with MEND_EINVAL "evaluation stopped". */
typedef int (*mend_eval_line_fn)(void *user, const mend_eval_line *l);

/* Score the examples idx[0..n) of t exactly as `mend eval` does and hand
 * each one's results line to fn, in the order of idx: through b, or with x
 * (started, mend_idp_eval_setup done) through the bank, each line then
 * carrying its selection record. Examples go to the scorer in the same
 * groups as the command's (32; generation 128; one at a time for an IDP run
 * that cannot batch), so the lines equal the command's byte for byte. model
 * and prompt are the lines' labels (mend_result_json). stats (may be NULL)
 * is added to. */
int mend_eval_run(mend_eval_backend *b, struct mend_idp *x, const mend_task *t, const size_t *idx, size_t n,
                  const char *model, const char *prompt, mend_eval_line_fn fn, void *user, mend_eval_stats *stats);

/* ---- results files ------------------------------------------------------------------
 * One JSON object per evaluated example, appended as soon as it is scored,
 * so a killed run resumes (docs/eval.md lists the fields). */

/* The results line (no newline) of example index of t; malloc'd. model and
 * prompt are labels (prompt NULL: none). */
int mend_result_json(const mend_task *t, size_t index, const mend_eval_result *r, const char *model,
                     const char *prompt, char **line);

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

/* Read a results file; a final line without its newline (a killed run's
 * partial write) is dropped (partial = 1); a complete line that does not
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

/* One summary per task, in order of first appearance, with lm-eval's
 * standard errors. *out: mend_summaries_free. */
int mend_results_summarize(const mend_results *res, mend_task_summary **out, size_t *n_out);
void mend_summaries_free(mend_task_summary *s, size_t n);
/* Sample standard deviation (ddof 1) / sqrt(n). */
double mend_mean_stderr(const double *x, size_t n);

/* Two runs on the examples both hold: diff = mean(b - a) of the headline
 * metric, se its paired standard error (NaN when n < 2). */
typedef struct mend_paired {
    size_t n, only_a, only_b;
    double diff, se;
} mend_paired;
int mend_results_paired(const mend_results *a, const mend_results *b, mend_paired *out);
/* The same on two aligned arrays. */
void mend_paired_diff(const double *a, const double *b, size_t n, mend_paired *out);

/* ---- reports -------------------------------------------------------------------- */
typedef struct mend_report_run {
    const char *name;               /* column title */
    const mend_task_summary *s;
    size_t n;
} mend_report_run;

/* A Markdown table (one row per task and metric, one column per run, cells
 * "value ± stderr"); *md is malloc'd. */
int mend_report_markdown(const mend_report_run *runs, size_t n_runs, char **md);
/* A bar chart of the headline metric of every task, drawn by gnuplot. */
int mend_report_plot(const mend_report_run *runs, size_t n_runs, const char *png_path);
/* Run gnuplot on any script that writes png_path; its messages are quoted
 * in the error when it fails or writes nothing. */
int mend_gnuplot_run(const char *script, const char *png_path);

#ifdef __cplusplus
}
#endif
#endif
