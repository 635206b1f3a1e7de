/* Markdown tables and bar charts over task summaries (tasks x runs). */
#ifndef MEND_EVAL_REPORT_H
#define MEND_EVAL_REPORT_H

#include <stddef.h>
#include "eval/results.h"

/* mend_report_run, mend_report_markdown, mend_report_plot and
 * mend_gnuplot_run are public (mend/eval.h). */

/* The gnuplot script (inline data) drawing the headline metric of every task
 * (acc_norm for multiple choice, acc, em) as clustered bars with error bars,
 * one cluster per task, one bar per run, written to png_path. malloc'd. */
int mend_report_gnuplot_script(const mend_report_run *runs, size_t n_runs, const char *png_path,
                               char **script);

#endif
