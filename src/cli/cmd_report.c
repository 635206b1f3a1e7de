/* mend report RESULTS.jsonl... [--out table.md] [--plot chart.png]: a
 * Markdown table of tasks x runs (value ± standard error), derived from the
 * results lines of `mend eval`; --plot draws the headline metrics with
 * gnuplot. mend report --repair OUT_DIR: the report of a `mend repair` run
 * rebuilt from its outputs (repair.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mend.h"

static const char *CMD = "report";

static void help(void) {
    printf("Usage: mend report [options] RESULTS.jsonl [RESULTS.jsonl ...]\n"
           "       mend report --repair OUT_DIR\n\n"
           "Summarise results files of 'mend eval' (one column per file) as a Markdown table\n"
           "with lm-eval standard errors; or rebuild OUT_DIR/report.md of 'mend repair' from\n"
           "the results it wrote.\n\n"
           "Options:\n"
           "      --repair OUT_DIR     the report of a mend repair run (printed and written\n"
           "                           to OUT_DIR/report.md, with its charts)\n"
           "      --out FILE           also write the table to FILE\n"
           "      --plot FILE.png      bar chart of acc (em for generation) with error bars\n"
           "                           (needs gnuplot)\n"
           "  -h, --help               this help\n");
}

int cmd_report(int argc, char **argv) {
    enum { O_OUT = 256, O_PLOT, O_REPAIR };
    static const struct option longopts[] = {{"out", required_argument, 0, O_OUT},
                                             {"plot", required_argument, 0, O_PLOT},
                                             {"repair", required_argument, 0, O_REPAIR},
                                             {"threads", required_argument, 0, 't'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *out_path = NULL, *plot_path = NULL, *repair_dir = NULL;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":t:h", longopts, NULL)) != -1) {
        switch (c) {
        case O_OUT: out_path = optarg; break;
        case O_PLOT: plot_path = optarg; break;
        case O_REPAIR: repair_dir = optarg; break;
        case 't':
            if (cli_set_threads(CMD, optarg)) return CLI_EXIT_USAGE;
            break;
        case 'h': help(); return 0;
        default: return cli_getopt_error(CMD, argv, c);
        }
    }
    if (repair_dir) {
        if (optind < argc || out_path || plot_path)
            return cli_usage_error(CMD, "--repair OUT_DIR takes no results files, --out or --plot");
        char *md = NULL;
        cli_events ev = {.cmd = CMD};
        if (mend_repair_report(repair_dir, &md, cli_event, &ev)) return cli_fail(CMD, repair_dir);
        fputs(md, stdout);
        free(md);
        return 0;
    }
    if (optind >= argc) return cli_usage_error(CMD, "missing RESULTS.jsonl");
    int n_runs = argc - optind;
    int rc = CLI_EXIT_ERROR;
    mend_results *res = calloc((size_t)n_runs, sizeof *res);
    mend_report_run *runs = calloc((size_t)n_runs, sizeof *runs);
    mend_task_summary **sums = calloc((size_t)n_runs, sizeof *sums);
    size_t *n_sums = calloc((size_t)n_runs, sizeof *n_sums);
    char **names = calloc((size_t)n_runs, sizeof *names);
    char *md = NULL;
    if (!res || !runs || !sums || !n_sums || !names) {
        fprintf(stderr, "mend report: out of memory\n");
        goto out;
    }
    for (int r = 0; r < n_runs; r++) {
        const char *path = argv[optind + r];
        if (mend_results_load(path, &res[r])) {
            rc = cli_fail(CMD, path);
            goto out;
        }
        if (res[r].partial)
            fprintf(stderr, "mend report: %s: ignoring a partial last line (interrupted run)\n", path);
        if (mend_results_summarize(&res[r], &sums[r], &n_sums[r])) {
            rc = cli_fail(CMD, path);
            goto out;
        }
        char title[256];
        names[r] = strdup(cli_file_title(path, title, sizeof title));
        if (!names[r]) {
            fprintf(stderr, "mend report: out of memory\n");
            goto out;
        }
        runs[r].name = names[r];
        runs[r].s = sums[r];
        runs[r].n = n_sums[r];
    }
    if (mend_report_markdown(runs, (size_t)n_runs, &md)) {
        rc = cli_fail(CMD, "table");
        goto out;
    }
    fputs(md, stdout);
    fflush(stdout);
    if (out_path && mend_write_file_atomic(out_path, md, strlen(md))) {
        rc = cli_fail(CMD, out_path);
        goto out;
    }
    if (plot_path && mend_report_plot(runs, (size_t)n_runs, plot_path)) {
        rc = cli_fail(CMD, plot_path);
        goto out;
    }
    if (out_path) fprintf(stderr, "wrote %s\n", out_path);
    if (plot_path) fprintf(stderr, "wrote %s\n", plot_path);
    rc = 0;
out:
    free(md);
    for (int r = 0; r < n_runs; r++) {
        if (res) mend_results_free(&res[r]);
        if (sums) mend_summaries_free(sums[r], n_sums[r]);
        if (names) free(names[r]);
    }
    free(res);
    free(runs);
    free(sums);
    free(n_sums);
    free(names);
    return rc;
}
