/* Markdown tables and gnuplot bar charts over task summaries (report.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "util/util.h"
#include "eval/report.h"

static const mend_task_summary *find(const mend_report_run *r, const char *task) {
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->s[i].task, task) == 0) return &r->s[i];
    return NULL;
}

/* Distinct task names over all runs, in order of first appearance. */
static int task_list(const mend_report_run *runs, size_t n_runs, const char ***names,
                     size_t *n) {
    size_t cap = 0;
    for (size_t r = 0; r < n_runs; r++) cap += runs[r].n;
    *names = calloc(cap ? cap : 1, sizeof **names);
    *n = 0;
    if (!*names) return mend_set_error(MEND_ENOMEM, "report: out of memory");
    for (size_t r = 0; r < n_runs; r++)
        for (size_t i = 0; i < runs[r].n; i++) {
            int dup = 0;
            for (size_t k = 0; k < *n && !dup; k++)
                if (strcmp((*names)[k], runs[r].s[i].task) == 0) dup = 1;
            if (!dup) (*names)[(*n)++] = runs[r].s[i].task;
        }
    return 0;
}

enum { M_ACC, M_ACC_NORM, M_PPL, M_EM };
static const char *const METRIC_NAME[] = {"acc", "acc_norm", "ppl", "em"};

static int metric_value(const mend_task_summary *s, int m, double *v, double *se) {
    switch (m) {
    case M_ACC:
        if (s->kind == MEND_TASK_GEN) return 0;
        *v = s->acc, *se = s->acc_se;
        return 1;
    case M_ACC_NORM:
        if (!s->has_acc_norm) return 0;
        *v = s->acc_norm, *se = s->acc_norm_se;
        return 1;
    case M_PPL:
        if (s->kind != MEND_TASK_LM) return 0;
        *v = s->ppl, *se = s->ppl_se;
        return 1;
    case M_EM:
        if (s->kind != MEND_TASK_GEN) return 0;
        *v = s->em, *se = s->em_se;
        return 1;
    }
    return 0;
}

static void cell(FILE *f, int m, double v, double se) {
    const char *fmt = m == M_PPL ? " %.3f" : " %.4f";
    fprintf(f, fmt, v);
    if (!isnan(se)) {
        fprintf(f, " ±");
        fprintf(f, fmt, se);
    }
}

int mend_report_markdown(const mend_report_run *runs, size_t n_runs, char **md) {
    *md = NULL;
    const char **names = NULL;
    size_t nt = 0;
    int rc = task_list(runs, n_runs, &names, &nt);
    if (rc) return rc;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        free(names);
        return mend_set_error(MEND_ENOMEM, "report: out of memory");
    }
    fprintf(f, "| task | n | metric |");
    for (size_t r = 0; r < n_runs; r++) fprintf(f, " %s |", runs[r].name);
    fprintf(f, "\n|---|---:|---|");
    for (size_t r = 0; r < n_runs; r++) fprintf(f, "---:|");
    fprintf(f, "\n");
    for (size_t t = 0; t < nt; t++) {
        const mend_task_summary *first = NULL;
        int same_n = 1;
        for (size_t r = 0; r < n_runs; r++) {
            const mend_task_summary *s = find(&runs[r], names[t]);
            if (!s) continue;
            if (!first) first = s;
            else if (s->n != first->n) same_n = 0;
        }
        for (int m = M_ACC; m <= M_EM; m++) {
            double v, se;
            if (!metric_value(first, m, &v, &se)) continue;
            fprintf(f, "| %s | %zu%s | %s |", names[t], first->n, same_n ? "" : "*",
                    METRIC_NAME[m]);
            for (size_t r = 0; r < n_runs; r++) {
                const mend_task_summary *s = find(&runs[r], names[t]);
                if (!s || !metric_value(s, m, &v, &se)) {
                    fprintf(f, " – |");
                    continue;
                }
                cell(f, m, v, se);
                if (!same_n) fprintf(f, " (n=%zu)", s->n);
                fprintf(f, " |");
            }
            fprintf(f, "\n");
        }
    }
    fclose(f);
    free(names);
    *md = buf;
    return 0;
}

/* gnuplot single-quoted string: '' stands for one quote */
static void gp_quote(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        if (*s != '\n') fputc(*s, f);
    }
    fputc('\'', f);
}

/* headline metric: em for generation, acc otherwise */
static int headline(const mend_task_summary *s, double *v, double *se) {
    return metric_value(s, s->kind == MEND_TASK_GEN ? M_EM : M_ACC, v, se);
}

int mend_report_gnuplot_script(const mend_report_run *runs, size_t n_runs, const char *png_path,
                               char **script) {
    *script = NULL;
    if (n_runs == 0) return mend_set_error(MEND_EINVAL, "plot: no runs");
    const char **names = NULL;
    size_t nt = 0;
    int rc = task_list(runs, n_runs, &names, &nt);
    if (rc) return rc;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        free(names);
        return mend_set_error(MEND_ENOMEM, "plot: out of memory");
    }
    int width = 200 + (int)(nt * (n_runs * 28 + 40));
    if (width < 640) width = 640;
    fprintf(f, "set terminal pngcairo noenhanced size %d,480 font 'sans,10'\n", width);
    fprintf(f, "set output ");
    gp_quote(f, png_path);
    fprintf(f, "\nset datafile missing '?'\n");
    fprintf(f, "set style data histogram\nset style histogram errorbars gap 2 lw 1\n");
    fprintf(f, "set style fill solid 0.8 border -1\nset boxwidth 0.9\n");
    fprintf(f, "set yrange [0:1]\nset ylabel 'accuracy (em for generation)'\n");
    fprintf(f, "set grid ytics\nset key outside top center horizontal\n");
    fprintf(f, "set xtics rotate by -25 nomirror\n");
    fprintf(f, "$data << EOD\n");
    for (size_t t = 0; t < nt; t++) {
        fputc('"', f);
        for (const char *c = names[t]; *c; c++) fputc(*c == '"' || *c == '\n' ? '_' : *c, f);
        fputc('"', f);
        for (size_t r = 0; r < n_runs; r++) {
            const mend_task_summary *s = find(&runs[r], names[t]);
            double v, se;
            if (s && headline(s, &v, &se)) fprintf(f, " %.6f %.6f", v, isnan(se) ? 0.0 : se);
            else fprintf(f, " ? ?");
        }
        fputc('\n', f);
    }
    fprintf(f, "EOD\nplot ");
    for (size_t r = 0; r < n_runs; r++) {
        if (r == 0) fprintf(f, "$data using 2:3:xtic(1) title ");
        else fprintf(f, ", '' using %zu:%zu title ", 2 + 2 * r, 3 + 2 * r);
        gp_quote(f, runs[r].name);
    }
    fprintf(f, "\n");
    fclose(f);
    free(names);
    *script = buf;
    return 0;
}

int mend_report_plot(const mend_report_run *runs, size_t n_runs, const char *png_path) {
    char *script = NULL;
    int rc = mend_report_gnuplot_script(runs, n_runs, png_path, &script);
    if (rc) return rc;
    rc = mend_gnuplot_run(script, png_path);
    free(script);
    return rc;
}

int mend_gnuplot_run(const char *script, const char *png_path) {
    /* gnuplot's messages go to a temporary file, quoted in the error */
    char errpath[] = "/tmp/mend-gnuplot-XXXXXX";
    int efd = mkstemp(errpath);
    if (efd < 0)
        return mend_set_error(MEND_EIO, "plot: cannot create a temporary file: %s", strerror(errno));
    close(efd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "gnuplot 2>%s", errpath);
    FILE *p = popen(cmd, "w");
    if (!p) {
        unlink(errpath);
        return mend_set_error(MEND_EIO, "plot: cannot run gnuplot: %s", strerror(errno));
    }
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    size_t len = strlen(script);
    size_t w = fwrite(script, 1, len, p);
    int st = pclose(p);
    signal(SIGPIPE, old);
    char *msg = NULL;
    size_t mlen = 0;
    if (mend_read_file(errpath, 1 << 16, &msg, &mlen) != 0) msg = NULL;
    unlink(errpath);
    if (w != len || st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        int code = mend_set_error(MEND_EIO, "plot: gnuplot failed (exit status %d) writing %s: %.300s",
                                  WIFEXITED(st) ? WEXITSTATUS(st) : -1, png_path,
                                  msg && *msg ? msg : "is gnuplot installed?");
        free(msg);
        return code;
    }
    free(msg);
    if (!mend_file_exists(png_path))
        return mend_set_error(MEND_EIO, "plot: gnuplot did not write %s", png_path);
    return 0;
}
