/* The report of `mend repair` (repair.h): original / compressed / single
 * prompt / IDP per task and on WikiText-2, their paired differences on the
 * same examples (and windows) with standard errors, the recovered share of
 * the gap where the gap is beyond noise, IDP's prompt choices, charts, then
 * training tokens, sizes and times. */
#define _GNU_SOURCE
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jobs_int.h"
#include "mend.h"
#include "repair.h"

typedef struct repair_report_in {
    const char *out_dir;
    const char *model, *spec, *budget;
    const char *settings;               /* one Markdown line describing the budget's settings */
    const char *const *tasks;           /* task names (files results/RUN/NAME.jsonl) */
    int n_tasks;
    const char *const *prompts;         /* bank prompt names (loss curves), then "single" */
    int n_prompts;
    mend_event_fn fn;                   /* notes (a chart that cannot be drawn) */
    void *user;
} repair_report_in;

const char *const repair_run_name[REPAIR_NRUNS] = {"original", "compressed", "single", "idp"};
const char *const repair_run_title[REPAIR_NRUNS] = {"original", "compressed", "single prompt", "IDP (attention)"};

#define MAX_CHOICES 32

typedef struct run_data {
    mend_results res[64];
    mend_task_summary *sum[64];     /* per task: its summary (NULL when missing) */
    size_t n_sum[64];
    mend_task_summary flat[64];     /* shallow copies for the bar chart */
    size_t n_flat;
    double ppl, ppl_se, tok_s, ppl_secs;
    int has_ppl;
    double *wnll;                   /* each window's mean nll (NULL: an older ppl file without them) */
    size_t n_wnll;
    long n_ctx;
    double eval_secs;
    int eval_resumed;
} run_data;

/* headline metric of a task (as the bar chart draws it): em for generation,
 * acc otherwise */
static void headline(const mend_task_summary *s, double *v, double *se, const char **name) {
    if (s->kind == MEND_TASK_GEN) *v = s->em, *se = s->em_se, *name = "em";
    else *v = s->acc, *se = s->acc_se, *name = "acc";
}


static double file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_size : -1.0;
}

static int read_ppl(const char *path, run_data *d) {
    if (!mend_file_exists(path)) return 0;
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) return mend_set_error(MEND_EFORMAT, "%s: not valid JSON: %s (line %d)", path, err.text, err.line);
    json_t *p = json_object_get(j, "ppl"), *e = json_object_get(j, "stderr");
    if (!json_is_number(p) || !json_is_number(e)) {
        json_decref(j);
        return mend_set_error(MEND_EFORMAT, "%s: field 'ppl' or 'stderr' is missing or not a number", path);
    }
    d->ppl = json_number_value(p);
    d->ppl_se = json_number_value(e);
    d->tok_s = json_number_value(json_object_get(j, "tokens_per_s"));
    d->ppl_secs = json_number_value(json_object_get(j, "seconds"));
    d->n_ctx = (long)json_integer_value(json_object_get(j, "n_ctx"));
    d->has_ppl = 1;
    json_t *w = json_object_get(j, "window_nll");
    int rc = 0;
    if (w && !json_is_array(w)) rc = mend_set_error(MEND_EFORMAT, "%s: field 'window_nll' is not an array", path);
    else if (w && json_array_size(w) > 0 && !(d->wnll = malloc(json_array_size(w) * sizeof *d->wnll)))
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; rc == 0 && d->wnll && i < json_array_size(w); i++) {
        json_t *x = json_array_get(w, i);
        if (!json_is_number(x) || !isfinite(json_number_value(x)))
            rc = mend_set_error(MEND_EFORMAT, "%s: field 'window_nll' item %zu is not a finite number", path, i);
        else d->wnll[d->n_wnll++] = json_number_value(x);
    }
    json_decref(j);
    return rc;
}

/* train.json of the adapter dir bank/NAME (mend tune): 0 and *found = 0
 * when there is none (an adapter trained before mend recorded it) */
static int read_train(const char *out_dir, const char *name, mend_tune_record *t, int *found) {
    char *dir = job_pathf("%s/bank/%s", out_dir, name);
    if (!dir) return mend_set_error(MEND_ENOMEM, "report: out of memory");
    const int rc = mend_tune_read_record(dir, t, found);
    free(dir);
    return rc;
}

/* the text tokens the single prompt (single = 1) or the bank's prompts
 * read in training, from their train.json: "unknown" when one lacks it.
 * Prompts that started from a trained prompt add its tokens; the bank's
 * prompts share one start, counted once. */
static int train_tokens(const repair_report_in *in, int single, char *buf, size_t cap) {
    mend_tune_record sum = {0}, first = {0};
    int n = 0, missing = 0, same = 1;
    for (int i = 0; i < in->n_prompts; i++) {
        if ((strcmp(in->prompts[i], "single") == 0) != single) continue;
        mend_tune_record t;
        int found, rc = read_train(in->out_dir, in->prompts[i], &t, &found);
        if (rc) return rc;
        if (!found) {
            missing++;
            continue;
        }
        if (n++ == 0) first = t;
        same = same && t.steps == first.steps && t.batch == first.batch && t.seqlen == first.seqlen;
        sum.train_tokens += t.train_tokens;
        if (t.start_tokens > sum.start_tokens) sum.start_tokens = t.start_tokens;
    }
    const long long total = (long long)(sum.train_tokens + sum.start_tokens);
    char from[96] = "";
    if (sum.start_tokens > 0) snprintf(from, sizeof from, " + %lld of the shared start", (long long)sum.start_tokens);
    if (missing) snprintf(buf, cap, "unknown (%d of %d prompts without train.json)", missing, missing + n);
    else if (n == 0) snprintf(buf, cap, "–");
    else if (!same) snprintf(buf, cap, "%lld (%d prompts%s)", total, n, from);
    else if (single) snprintf(buf, cap, "%lld (%lld steps × %lld × %lld%s)", total, (long long)first.steps,
                              (long long)first.batch, (long long)first.seqlen, from);
    else snprintf(buf, cap, "%lld (%d prompts × %lld steps × %lld × %lld%s)", total, n, (long long)first.steps,
                  (long long)first.batch, (long long)first.seqlen, from);
    return 0;
}

/* seconds (and resumed flag) of a finished stage; 0 when not there */
static double stage_secs(const char *out, const char *name, int *resumed) {
    char *p = job_pathf("%s/stages/%s.json", out, name);
    json_t *j = p ? json_load_file(p, 0, NULL) : NULL;
    free(p);
    double s = j ? json_number_value(json_object_get(j, "seconds")) : 0;
    if (j && json_is_true(json_object_get(j, "resumed"))) *resumed = 1;
    json_decref(j);
    return s;
}

/* IDP's choices in results/idp/TASK.jsonl: counts per prompt name */
static void count_choices(const char *path, char names[][64], int *n_names, long *counts) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        const char *c = json_string_value(json_object_get(json_object_get(j, "idp"), "choice"));
        if (!c && j) c = "none";
        if (c) {
            int k = 0;
            while (k < *n_names && strcmp(names[k], c)) k++;
            if (k == *n_names && k < MAX_CHOICES) snprintf(names[(*n_names)++], 64, "%.63s", c);
            if (k < MAX_CHOICES) counts[k]++;
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
}

static void cell(FILE *f, double v, double se, int digits) {
    if (isnan(v)) fprintf(f, " – |");
    else if (isnan(se) || se <= 0) fprintf(f, " %.*f |", digits, v);
    else fprintf(f, " %.*f ± %.*f |", digits, v, digits, se);
}

static double ppl_of(const run_data *d) {
    return d->has_ppl ? d->ppl : NAN;
}

/* ---- paired differences ---- */
enum { PAIR_CO, PAIR_SC, PAIR_IC, PAIR_IS, NPAIRS };
static const int PAIR_A[NPAIRS] = {REPAIR_ORIGINAL, REPAIR_COMPRESSED, REPAIR_COMPRESSED, REPAIR_SINGLE};
static const int PAIR_B[NPAIRS] = {REPAIR_COMPRESSED, REPAIR_SINGLE, REPAIR_IDP, REPAIR_IDP};
static const char *const PAIR_TITLE[NPAIRS] = {"compressed − original", "single − compressed", "IDP − compressed",
                                               "IDP − single"};

/* the difference is more than twice its standard error */
static int beyond_2se(const mend_paired *p) {
    return p->n > 0 && !isnan(p->diff) && !isnan(p->se) && fabs(p->diff) > 2.0 * p->se;
}

static void diff_cell(FILE *f, const mend_paired *p) {
    if (p->n == 0 || isnan(p->diff)) fprintf(f, " – |");
    else if (isnan(p->se)) fprintf(f, " %+.4f |", p->diff);
    else fprintf(f, " %+.4f ± %.4f%s |", p->diff, p->se, beyond_2se(p) ? " *" : "");
}

/* won / gap as a percentage, printed only when the gap is real: compression
 * made the metric worse by more than twice the gap's standard error */
static void recovered(FILE *f, int gap_real, double gap, double won) {
    if (!gap_real || !(gap > 0) || !isfinite(won)) fprintf(f, " – |");
    else fprintf(f, " %.0f%% |", 100.0 * won / gap);
}

/* the WikiText-2 windows two runs share (the first min(n_a, n_b) of the
 * same text and window length); n = 0 when either lacks them */
static void paired_windows(const run_data *a, const run_data *b, mend_paired *p) {
    size_t n = a->n_wnll < b->n_wnll ? a->n_wnll : b->n_wnll;
    if (!a->wnll || !b->wnll || a->n_ctx != b->n_ctx) n = 0;
    mend_paired_diff(a->wnll, b->wnll, n, p);
    p->only_a = a->n_wnll - n;
    p->only_b = b->n_wnll - n;
}

static int paired_section(FILE *f, const repair_report_in *in, const run_data *rd) {
    fprintf(f, "### Paired differences\n\n"
               "Each difference is taken example by example over the examples both runs hold (results lines "
               "joined on their example index): the mean of the per-example differences of the headline metric "
               "± its standard error (sample standard deviation of the differences / √n). **\\*** marks a "
               "difference larger than twice its standard error; an unmarked difference is within the noise "
               "of these examples. *recovered*: (repaired − compressed) / (original − compressed) from the paired "
               "means, printed only where the compression gap original − compressed exceeds twice its standard "
               "error; – where it does not (compression did not measurably lower the metric, so a share of it "
               "means nothing). *mean of N tasks*: the mean of the per-task differences over the tasks with "
               "every run, its error √(Σ SE²) / N. WikiText-2: the same for each window's mean negative "
               "log-likelihood (lower is better; windows paired by position), and recovered the share of the "
               "perplexity gap (compressed − repaired) / (compressed − original), printed only where the "
               "window NLL gap compressed − original exceeds twice its standard error.\n\n");
    fprintf(f, "| task | n | metric |");
    for (int k = 0; k < NPAIRS; k++) fprintf(f, " %s |", PAIR_TITLE[k]);
    fprintf(f, " recovered: single | recovered: IDP |\n|---|---:|---|");
    for (int k = 0; k < NPAIRS + 2; k++) fprintf(f, "---:|");
    fprintf(f, "\n");
    mend_paired mean[NPAIRS];
    memset(mean, 0, sizeof mean);
    int n_mean = 0;
    char *notes = NULL;
    size_t notes_len = 0;
    FILE *nf = open_memstream(&notes, &notes_len);
    if (!nf) return mend_set_error(MEND_ENOMEM, "report: out of memory");
    int rc = 0;
    for (int t = 0; t < in->n_tasks && rc == 0; t++) {
        mend_paired p[NPAIRS];
        for (int k = 0; k < NPAIRS && rc == 0; k++)
            rc = mend_results_paired(&rd[PAIR_A[k]].res[t], &rd[PAIR_B[k]].res[t], &p[k]);
        if (rc) break;
        const char *metric = "acc";
        for (int r = 0; r < REPAIR_NRUNS; r++)
            if (rd[r].n_sum[t] > 0 && rd[r].sum[t][0].kind == MEND_TASK_GEN) metric = "em";
        size_t lo = p[0].n, hi = p[0].n;
        int all = 1, apart = 0;
        for (int k = 0; k < NPAIRS; k++) {
            lo = p[k].n < lo ? p[k].n : lo;
            hi = p[k].n > hi ? p[k].n : hi;
            all = all && p[k].n >= 2;
            apart = apart || p[k].only_a || p[k].only_b;
        }
        if (lo == hi) fprintf(f, "| %s | %zu | %s |", in->tasks[t], lo, metric);
        else fprintf(f, "| %s | %zu–%zu | %s |", in->tasks[t], lo, hi, metric);
        for (int k = 0; k < NPAIRS; k++) diff_cell(f, &p[k]);
        recovered(f, beyond_2se(&p[PAIR_CO]), -p[PAIR_CO].diff, p[PAIR_SC].diff);
        recovered(f, beyond_2se(&p[PAIR_CO]), -p[PAIR_CO].diff, p[PAIR_IC].diff);
        fprintf(f, "\n");
        if (apart) {
            fprintf(nf, "- %s: the runs hold different examples (", in->tasks[t]);
            for (int r = 0; r < REPAIR_NRUNS; r++)
                fprintf(nf, "%s%s %zu", r ? ", " : "", repair_run_title[r], rd[r].n_sum[t] ? rd[r].sum[t][0].n : 0);
            fprintf(nf, "); each difference is over the examples both of its runs hold:");
            for (int k = 0; k < NPAIRS; k++) fprintf(nf, "%s %s %zu", k ? "," : "", PAIR_TITLE[k], p[k].n);
            fprintf(nf, ".\n");
        }
        if (all) {
            n_mean++;
            for (int k = 0; k < NPAIRS; k++) mean[k].diff += p[k].diff, mean[k].se += p[k].se * p[k].se;
        }
    }
    if (rc == 0 && n_mean > 0) {
        fprintf(f, "| **mean of %d tasks** | | |", n_mean);
        for (int k = 0; k < NPAIRS; k++) {
            mean[k].n = (size_t)n_mean;
            mean[k].diff /= n_mean;
            mean[k].se = sqrt(mean[k].se) / n_mean;
            diff_cell(f, &mean[k]);
        }
        recovered(f, beyond_2se(&mean[PAIR_CO]), -mean[PAIR_CO].diff, mean[PAIR_SC].diff);
        recovered(f, beyond_2se(&mean[PAIR_CO]), -mean[PAIR_CO].diff, mean[PAIR_IC].diff);
        fprintf(f, "\n");
    }
    if (rc == 0) {
        mend_paired p[NPAIRS];
        size_t lo = SIZE_MAX, hi = 0;
        for (int k = 0; k < NPAIRS; k++) {
            paired_windows(&rd[PAIR_A[k]], &rd[PAIR_B[k]], &p[k]);
            lo = p[k].n < lo ? p[k].n : lo;
            hi = p[k].n > hi ? p[k].n : hi;
        }
        if (lo == hi) fprintf(f, "| WikiText-2 | %zu | window NLL |", lo);
        else fprintf(f, "| WikiText-2 | %zu–%zu | window NLL |", lo, hi);
        for (int k = 0; k < NPAIRS; k++) diff_cell(f, &p[k]);
        /* the gap is real when the window NLL rose by more than twice its error */
        int real = beyond_2se(&p[PAIR_CO]) && p[PAIR_CO].diff > 0;
        double po = ppl_of(&rd[REPAIR_ORIGINAL]), pc = ppl_of(&rd[REPAIR_COMPRESSED]);
        recovered(f, real, pc - po, pc - ppl_of(&rd[REPAIR_SINGLE]));
        recovered(f, real, pc - po, pc - ppl_of(&rd[REPAIR_IDP]));
        fprintf(f, "\n");
        for (int r = 0; r < REPAIR_NRUNS; r++)
            if (rd[r].has_ppl && !rd[r].wnll)
                fprintf(nf, "- WikiText-2: ppl/%s.json has no per-window NLL (written by an older `mend ppl`), "
                            "so no paired difference with it.\n", repair_run_name[r]);
        int apart = 0;
        for (int r = 1; r < REPAIR_NRUNS; r++)
            apart = apart || (rd[r].wnll && rd[0].wnll && (rd[r].n_wnll != rd[0].n_wnll || rd[r].n_ctx != rd[0].n_ctx));
        if (apart) {
            fprintf(nf, "- WikiText-2: the runs scored different windows (");
            for (int r = 0; r < REPAIR_NRUNS; r++)
                fprintf(nf, "%s%s %zu of %ld tokens", r ? ", " : "", repair_run_title[r], rd[r].n_wnll, rd[r].n_ctx);
            fprintf(nf, "); runs with the same window length are paired over the windows both scored.\n");
        }
    }
    fclose(nf);
    if (rc == 0 && notes_len) fprintf(f, "\n%s", notes);
    free(notes);
    fprintf(f, "\n");
    return rc;
}

static int loss_plot(const repair_report_in *in, const char *png) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return mend_set_error(MEND_ENOMEM, "report: out of memory");
    fprintf(f, "set terminal pngcairo noenhanced size 900,520 font 'sans,10'\nset output '%s'\n", png);
    fprintf(f, "set datafile separator ','\nset datafile missing 'nan'\nset xlabel 'step'\n"
               "set ylabel 'loss: training (smoothed line), validation (dots)'\nset grid\n"
               "set key outside right\nplot");
    int n = 0;
    for (int i = 0; i < in->n_prompts; i++) {
        char *csv = job_pathf("%s/bank/%s/loss.csv", in->out_dir, in->prompts[i]);
        if (csv && mend_file_exists(csv) && !strchr(csv, '\''))
            fprintf(f, "%s '%s' every ::2 using 1:3 smooth bezier with lines lw 1.5 lc %d title '%s', "
                       "'' using 1:6 with points pt 7 ps 0.7 lc %d notitle", n++ ? "," : "", csv, i + 1,
                    in->prompts[i], i + 1);
        free(csv);
    }
    fprintf(f, "\n");
    fclose(f);
    int rc = n ? mend_gnuplot_run(buf, png) : 0;
    free(buf);
    return rc;
}

static int repair_report(const repair_report_in *in, char **md) {
    *md = NULL;
    if (in->n_tasks > 64) return mend_set_error(MEND_EINVAL, "report: at most 64 tasks");
    run_data *rd = calloc(REPAIR_NRUNS, sizeof *rd);
    if (!rd) return mend_set_error(MEND_ENOMEM, "report: out of memory");
    int rc = 0;
    for (int r = 0; r < REPAIR_NRUNS && rc == 0; r++) {
        for (int t = 0; t < in->n_tasks && rc == 0; t++) {
            char *p = job_pathf("%s/results/%s/%s.jsonl", in->out_dir, repair_run_name[r], in->tasks[t]);
            if (!p) rc = mend_set_error(MEND_ENOMEM, "report: out of memory");
            else if (mend_file_exists(p) && (rc = mend_results_load(p, &rd[r].res[t])) == 0 &&
                     (rc = mend_results_summarize(&rd[r].res[t], &rd[r].sum[t], &rd[r].n_sum[t])) == 0 &&
                     rd[r].n_sum[t] > 0)
                rd[r].flat[rd[r].n_flat++] = rd[r].sum[t][0];
            free(p);
            char name[192];
            snprintf(name, sizeof name, "eval-%s-%s", repair_run_name[r], in->tasks[t]);
            rd[r].eval_secs += stage_secs(in->out_dir, name, &rd[r].eval_resumed);
        }
        char *p = job_pathf("%s/ppl/%s.json", in->out_dir, repair_run_name[r]);
        if (rc == 0) rc = p ? read_ppl(p, &rd[r]) : mend_set_error(MEND_ENOMEM, "report: out of memory");
        free(p);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = rc == 0 ? open_memstream(&buf, &len) : NULL;
    if (rc == 0 && !f) rc = mend_set_error(MEND_ENOMEM, "report: out of memory");
    if (rc) goto done;

    char *cpath = job_pathf("%s/model.gguf", in->out_dir);
    double osz = file_size(in->model), csz = cpath ? file_size(cpath) : -1;
    free(cpath);
    char b1[32], b2[32];
    fprintf(f, "# mend repair\n\n");
    fprintf(f, "- model: `%s` (%s)\n", in->model, mend_fmt_bytes(osz, b1, sizeof b1));
    fprintf(f, "- compression: `%s` -> `model.gguf` (%s)\n", in->spec, mend_fmt_bytes(csz, b2, sizeof b2));
    fprintf(f, "- budget: %s: %s\n\n", in->budget, in->settings);
    fprintf(f, "## Tasks and perplexity\n\n");
    fprintf(f, "Accuracy (exact match for generation) ± standard error, as lm-evaluation-harness reports them; "
               "the mean over tasks with its error from the per-task errors. Whether two runs differ is the "
               "question of the paired differences below, not of these error bars.\n\n");
    fprintf(f, "| task | n | metric |");
    for (int r = 0; r < REPAIR_NRUNS; r++) fprintf(f, " %s |", repair_run_title[r]);
    fprintf(f, "\n|---|---:|---|");
    for (int r = 0; r < REPAIR_NRUNS; r++) fprintf(f, "---:|");
    fprintf(f, "\n");
    double mean[REPAIR_NRUNS] = {0}, var[REPAIR_NRUNS] = {0};
    int n_mean = 0;
    for (int t = 0; t < in->n_tasks; t++) {
        double v[REPAIR_NRUNS], se[REPAIR_NRUNS];
        const char *metric = "acc";
        size_t n = 0;
        int all = 1;
        for (int r = 0; r < REPAIR_NRUNS; r++) {
            v[r] = se[r] = NAN;
            if (rd[r].n_sum[t] == 0) {
                all = 0;
                continue;
            }
            headline(&rd[r].sum[t][0], &v[r], &se[r], &metric);
            if (rd[r].sum[t][0].n > n) n = rd[r].sum[t][0].n;
        }
        fprintf(f, "| %s | %zu | %s |", in->tasks[t], n, metric);
        for (int r = 0; r < REPAIR_NRUNS; r++) cell(f, v[r], se[r], 4);
        fprintf(f, "\n");
        if (all) {
            n_mean++;
            for (int r = 0; r < REPAIR_NRUNS; r++) mean[r] += v[r], var[r] += se[r] * se[r];
        }
    }
    if (n_mean > 0) {
        fprintf(f, "| **mean of %d tasks** | | |", n_mean);
        for (int r = 0; r < REPAIR_NRUNS; r++) {
            mean[r] /= n_mean;
            cell(f, mean[r], sqrt(var[r]) / n_mean, 4);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "| WikiText-2 | | ppl |");
    for (int r = 0; r < REPAIR_NRUNS; r++)
        cell(f, ppl_of(&rd[r]), rd[r].has_ppl ? rd[r].ppl_se : NAN, 3);
    fprintf(f, "\n\n");
    if ((rc = paired_section(f, in, rd))) {
        fclose(f);
        goto done;
    }

    /* IDP's choices */
    char names[MAX_CHOICES][64];
    int n_names = 0;
    long (*counts)[MAX_CHOICES] = calloc((size_t)in->n_tasks, sizeof *counts);
    if (!counts) {
        fclose(f);
        rc = mend_set_error(MEND_ENOMEM, "report: out of memory");
        goto done;
    }
    for (int i = 0; i < in->n_prompts && n_names < MAX_CHOICES; i++)
        if (strcmp(in->prompts[i], "single")) snprintf(names[n_names++], 64, "%.63s", in->prompts[i]);
    for (int t = 0; t < in->n_tasks; t++) {
        char *p = job_pathf("%s/results/idp/%s.jsonl", in->out_dir, in->tasks[t]);
        if (p) count_choices(p, names, &n_names, counts[t]);
        free(p);
    }
    fprintf(f, "## The prompts IDP chose\n\nExamples per task that the attention selector sent to each prompt "
               "of the bank.\n\n| task |");
    for (int k = 0; k < n_names; k++) fprintf(f, " %s |", names[k]);
    fprintf(f, "\n|---|");
    for (int k = 0; k < n_names; k++) fprintf(f, "---:|");
    fprintf(f, "\n");
    for (int t = 0; t < in->n_tasks; t++) {
        fprintf(f, "| %s |", in->tasks[t]);
        for (int k = 0; k < n_names; k++) fprintf(f, " %ld |", counts[t][k]);
        fprintf(f, "\n");
    }
    free(counts);

    /* charts */
    char *png = job_pathf("%s/report.png", in->out_dir), *lpng = job_pathf("%s/loss.png", in->out_dir);
    mend_report_run runs[REPAIR_NRUNS];
    for (int r = 0; r < REPAIR_NRUNS; r++)
        runs[r] = (mend_report_run){.name = repair_run_title[r], .s = rd[r].flat, .n = rd[r].n_flat};
    int have_plot = png && rd[0].n_flat > 0 && mend_report_plot(runs, REPAIR_NRUNS, png) == 0;
    if (png && !have_plot && rd[0].n_flat > 0)
        job_emit(in->fn, in->user, MEND_EV_NOTE, "no chart: %s", mend_last_error());
    /* no loss curve at all (a bank copied without them) is no failure */
    int lrc = lpng ? loss_plot(in, lpng) : 0, have_loss = lpng && lrc == 0 && mend_file_exists(lpng);
    if (lrc) job_emit(in->fn, in->user, MEND_EV_NOTE, "no loss chart: %s", mend_last_error());
    free(png);
    free(lpng);
    fprintf(f, "\n");
    if (have_plot) fprintf(f, "![accuracy per task](report.png)\n\n");
    if (have_loss) fprintf(f, "![prompt training loss](loss.png)\n\n");

    /* cost: sizes and speed (timing: differs from run to run) */
    double psz = 0, bsz = 0;
    for (int i = 0; i < in->n_prompts; i++) {
        char *p = job_pathf("%s/bank/%s/adapter_model.safetensors", in->out_dir, in->prompts[i]);
        double s = p ? file_size(p) : -1;
        free(p);
        if (s < 0) continue;
        if (!strcmp(in->prompts[i], "single")) psz = s;
        else bsz += s;
    }
    fprintf(f, "## Cost\n\n| | original | compressed | single prompt | IDP (attention) |\n|---|---:|---:|---:|---:|\n");
    char b3[32], b4[32];
    fprintf(f, "| model file | %s | %s | + %s prompt | + %s bank |\n", mend_fmt_bytes(osz, b1, sizeof b1),
            mend_fmt_bytes(csz, b2, sizeof b2), mend_fmt_bytes(psz, b3, sizeof b3), mend_fmt_bytes(bsz, b4, sizeof b4));
    char tt_single[128], tt_bank[128];
    if ((rc = train_tokens(in, 1, tt_single, sizeof tt_single)) || (rc = train_tokens(in, 0, tt_bank, sizeof tt_bank))) {
        fclose(f);
        goto done;
    }
    fprintf(f, "| prompt training: text tokens | – | – | %s | %s |\n", tt_single, tt_bank);
    fprintf(f, "| perplexity: tokens/s |");
    for (int r = 0; r < REPAIR_NRUNS; r++)
        if (rd[r].has_ppl) fprintf(f, " %.1f |", rd[r].tok_s);
        else fprintf(f, " – |");
    fprintf(f, "\n| eval wall time, all tasks |");
    for (int r = 0; r < REPAIR_NRUNS; r++)
        fprintf(f, " %s%s |", mend_fmt_duration(rd[r].eval_secs, b1, sizeof b1), rd[r].eval_resumed ? " (resumed)" : "");
    fprintf(f, "\n\nTimes are wall-clock on this machine; a stage resumed after an interruption counts only its "
               "last part.\n");
    int dummy = 0;
    double cs = stage_secs(in->out_dir, "compress", &dummy), bs = stage_secs(in->out_dir, "bank", &dummy),
           ss = stage_secs(in->out_dir, "single", &dummy);
    fprintf(f, "Compression %s", mend_fmt_duration(cs, b1, sizeof b1));
    if (bs > 0) fprintf(f, ", bank training %s", mend_fmt_duration(bs, b2, sizeof b2));
    if (ss > 0) fprintf(f, ", single prompt training %s", mend_fmt_duration(ss, b3, sizeof b3));
    fprintf(f, ".\n");
    fclose(f);
    f = NULL;
    char *rp = job_pathf("%s/report.md", in->out_dir);
    rc = rp ? mend_write_file_atomic(rp, buf, len) : mend_set_error(MEND_ENOMEM, "report: out of memory");
    free(rp);
    if (rc == 0) *md = buf, buf = NULL;
done:
    free(buf);
    for (int r = 0; r < REPAIR_NRUNS; r++)
        for (int t = 0; t < in->n_tasks; t++) {
            mend_summaries_free(rd[r].sum[t], rd[r].n_sum[t]);
            mend_results_free(&rd[r].res[t]);
        }
    for (int r = 0; r < REPAIR_NRUNS; r++) free(rd[r].wnll);
    free(rd);
    return rc;
}

/* a string field of repair.json */
static int plan_str(const char *path, const json_t *plan, const char *key, const char **out) {
    *out = json_string_value(json_object_get(plan, key));
    return *out ? 0 : mend_set_error(MEND_EFORMAT, "%s: field '%s' is missing or not a string", path, key);
}

int mend_repair_report(const char *out_dir, char **md, mend_event_fn fn, void *user) {
    *md = NULL;
    char *path = job_pathf("%s/repair.json", out_dir), *bdir = job_pathf("%s/bank", out_dir);
    char (*tbuf)[128] = calloc(64, sizeof *tbuf);
    const char *tn[64], *pn[MEND_BANK_MAX_PROMPTS + 1];
    json_t *plan = NULL;
    mend_bank *bk = NULL;
    int rc = 0, np = 0;
    if (!path || !bdir || !tbuf) {
        rc = mend_set_error(MEND_ENOMEM, "report: out of memory");
        goto done;
    }
    json_error_t err;
    if (!(plan = json_load_file(path, 0, &err))) {
        rc = mend_set_error(MEND_EFORMAT, "%s: not valid JSON: %s (line %d)", path, err.text, err.line);
        goto done;
    }
    repair_report_in in = {.out_dir = out_dir, .fn = fn, .user = user};
    if ((rc = plan_str(path, plan, "model", &in.model)) || (rc = plan_str(path, plan, "compress", &in.spec)) ||
        (rc = plan_str(path, plan, "budget", &in.budget)) || (rc = plan_str(path, plan, "settings", &in.settings)))
        goto done;
    const json_t *tasks = json_object_get(plan, "tasks");
    if (!json_is_array(tasks) || json_array_size(tasks) > 64) {
        rc = mend_set_error(MEND_EFORMAT, "%s: field 'tasks' is not an array of at most 64 task files", path);
        goto done;
    }
    for (size_t i = 0; i < json_array_size(tasks); i++) {
        const char *t = json_string_value(json_array_get(tasks, i));
        if (!t) {
            rc = mend_set_error(MEND_EFORMAT, "%s: field 'tasks' item %zu is not a string", path, i);
            goto done;
        }
        tn[in.n_tasks++] = mend_file_title(t, tbuf[i], sizeof tbuf[i]);
    }
    /* the bank's prompts (loss curves, sizes, training tokens), then the single prompt */
    char *bj = job_pathf("%s/%s", bdir, MEND_BANK_FILE);
    int have_bank = bj && mend_file_exists(bj);
    free(bj);
    if (have_bank && (rc = mend_bank_read(bdir, &bk))) goto done;
    mend_bank_info bi = {0};
    if (bk) mend_bank_get_info(bk, &bi);
    for (int i = 0; i < bi.n_prompts; i++) {
        mend_bank_prompt_info p;
        mend_bank_get_prompt(bk, i, &p);
        pn[np++] = p.adapter;
    }
    pn[np++] = "single";
    in.tasks = tn;
    in.prompts = pn;
    in.n_prompts = np;
    rc = repair_report(&in, md);
done:
    json_decref(plan);
    mend_bank_free(bk);
    free(tbuf);
    free(path);
    free(bdir);
    return rc;
}
