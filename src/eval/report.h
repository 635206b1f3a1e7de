/* Markdown tables and bar charts over task summaries (tasks x runs). */
#ifndef MEND_EVAL_REPORT_H
#define MEND_EVAL_REPORT_H

#include <stddef.h>
#include "eval/results.h"

typedef struct mend_report_run {
    const char *name;               /* column title */
    const mend_task_summary *s;
    size_t n;
} mend_report_run;

/* A Markdown table: one row per (task, metric) — acc, acc_norm (multiple
 * choice), ppl (language modelling), em (generation) — one column per run,
 * cells "value ± stderr"; *md is malloc'd. */
int mend_report_markdown(const mend_report_run *runs, size_t n_runs, char **md);

/* The gnuplot script (inline data) drawing the headline metric of every task
 * (acc_norm for multiple choice, acc, em) as clustered bars with error bars,
 * one cluster per task, one bar per run, written to png_path. malloc'd. */
int mend_report_gnuplot_script(const mend_report_run *runs, size_t n_runs, const char *png_path,
                               char **script);
/* Run gnuplot on that script. */
int mend_report_plot(const mend_report_run *runs, size_t n_runs, const char *png_path);
/* Run gnuplot on any script that writes png_path; its messages are quoted
 * in the error when it fails or writes nothing. */
int mend_gnuplot_run(const char *script, const char *png_path);

#endif
