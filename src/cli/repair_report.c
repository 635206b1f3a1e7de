/* The report of `mend repair` (repair.h): original / compressed / single
 * prompt / IDP per task and on WikiText-2, the recovered share of the gap,
 * IDP's prompt choices, charts, then sizes and times. */
#define _GNU_SOURCE
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "eval/report.h"
#include "eval/results.h"
#include "eval/tasks.h"
#include "repair.h"
#include "util/util.h"

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
    d->has_ppl = 1;
    json_decref(j);
    return 0;
}

/* seconds (and resumed flag) of a finished stage; 0 when not there */
static double stage_secs(const char *out, const char *name, int *resumed) {
    char *p = cli_pathf("%s/stages/%s.json", out, name);
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

static void recovered(FILE *f, double orig, double comp, double rep, int lower_better) {
    double gap = lower_better ? comp - orig : orig - comp;
    double won = lower_better ? comp - rep : rep - comp;
    /* no gap to recover when compression did not make the metric worse */
    if (isnan(orig) || isnan(comp) || isnan(rep) || gap <= 1e-12) fprintf(f, " – |");
    else fprintf(f, " %.0f%% |", 100.0 * won / gap);
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
        char *csv = cli_pathf("%s/bank/%s/loss.csv", in->out_dir, in->prompts[i]);
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

int repair_report(const repair_report_in *in, char **md) {
    *md = NULL;
    if (in->n_tasks > 64) return mend_set_error(MEND_EINVAL, "report: at most 64 tasks");
    run_data *rd = calloc(REPAIR_NRUNS, sizeof *rd);
    if (!rd) return mend_set_error(MEND_ENOMEM, "report: out of memory");
    int rc = 0;
    for (int r = 0; r < REPAIR_NRUNS && rc == 0; r++) {
        for (int t = 0; t < in->n_tasks && rc == 0; t++) {
            char *p = cli_pathf("%s/results/%s/%s.jsonl", in->out_dir, repair_run_name[r], in->tasks[t]);
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
        char *p = cli_pathf("%s/ppl/%s.json", in->out_dir, repair_run_name[r]);
        if (rc == 0) rc = p ? read_ppl(p, &rd[r]) : mend_set_error(MEND_ENOMEM, "report: out of memory");
        free(p);
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = rc == 0 ? open_memstream(&buf, &len) : NULL;
    if (rc == 0 && !f) rc = mend_set_error(MEND_ENOMEM, "report: out of memory");
    if (rc) goto done;

    char *cpath = cli_pathf("%s/model.gguf", in->out_dir);
    double osz = file_size(in->model), csz = cpath ? file_size(cpath) : -1;
    free(cpath);
    char b1[32], b2[32];
    fprintf(f, "# mend repair\n\n");
    fprintf(f, "- model: `%s` (%s)\n", in->model, cli_fmt_bytes(osz, b1, sizeof b1));
    fprintf(f, "- compression: `%s` -> `model.gguf` (%s)\n", in->spec, cli_fmt_bytes(csz, b2, sizeof b2));
    fprintf(f, "- budget: %s: %s\n\n", in->budget, in->settings);
    fprintf(f, "## Tasks and perplexity\n\n");
    fprintf(f, "Accuracy (exact match for generation) ± standard error, as lm-evaluation-harness reports them. "
               "*recovered*: the share of what compression lost that the prompt wins back, "
               "(repaired − compressed) / (original − compressed); for perplexity "
               "(compressed − repaired) / (compressed − original); – where compression did not lower the "
               "metric.\n\n");
    fprintf(f, "| task | n | metric |");
    for (int r = 0; r < REPAIR_NRUNS; r++) fprintf(f, " %s |", repair_run_title[r]);
    fprintf(f, " recovered: single | recovered: IDP |\n|---|---:|---|");
    for (int r = 0; r < REPAIR_NRUNS + 2; r++) fprintf(f, "---:|");
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
        recovered(f, v[0], v[1], v[2], 0);
        recovered(f, v[0], v[1], v[3], 0);
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
        recovered(f, mean[0], mean[1], mean[2], 0);
        recovered(f, mean[0], mean[1], mean[3], 0);
        fprintf(f, "\n");
    }
    fprintf(f, "| WikiText-2 | | ppl |");
    for (int r = 0; r < REPAIR_NRUNS; r++)
        cell(f, rd[r].has_ppl ? rd[r].ppl : NAN, rd[r].has_ppl ? rd[r].ppl_se : NAN, 3);
    recovered(f, rd[0].has_ppl ? rd[0].ppl : NAN, rd[1].has_ppl ? rd[1].ppl : NAN, rd[2].has_ppl ? rd[2].ppl : NAN, 1);
    recovered(f, rd[0].has_ppl ? rd[0].ppl : NAN, rd[1].has_ppl ? rd[1].ppl : NAN, rd[3].has_ppl ? rd[3].ppl : NAN, 1);
    fprintf(f, "\n\n");

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
        char *p = cli_pathf("%s/results/idp/%s.jsonl", in->out_dir, in->tasks[t]);
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
    char *png = cli_pathf("%s/report.png", in->out_dir), *lpng = cli_pathf("%s/loss.png", in->out_dir);
    mend_report_run runs[REPAIR_NRUNS];
    for (int r = 0; r < REPAIR_NRUNS; r++)
        runs[r] = (mend_report_run){.name = repair_run_title[r], .s = rd[r].flat, .n = rd[r].n_flat};
    int have_plot = png && rd[0].n_flat > 0 && mend_report_plot(runs, REPAIR_NRUNS, png) == 0;
    if (png && !have_plot && rd[0].n_flat > 0)
        fprintf(stderr, "mend repair: no chart: %s\n", mend_last_error());
    int have_loss = lpng && loss_plot(in, lpng) == 0 && mend_file_exists(lpng);
    if (lpng && !have_loss) fprintf(stderr, "mend repair: no loss chart: %s\n", mend_last_error());
    free(png);
    free(lpng);
    fprintf(f, "\n");
    if (have_plot) fprintf(f, "![accuracy per task](report.png)\n\n");
    if (have_loss) fprintf(f, "![prompt training loss](loss.png)\n\n");

    /* cost: sizes and speed (timing: differs from run to run) */
    double psz = 0, bsz = 0;
    for (int i = 0; i < in->n_prompts; i++) {
        char *p = cli_pathf("%s/bank/%s/adapter_model.safetensors", in->out_dir, in->prompts[i]);
        double s = p ? file_size(p) : -1;
        free(p);
        if (s < 0) continue;
        if (!strcmp(in->prompts[i], "single")) psz = s;
        else bsz += s;
    }
    fprintf(f, "## Cost\n\n| | original | compressed | single prompt | IDP (attention) |\n|---|---:|---:|---:|---:|\n");
    char b3[32], b4[32];
    fprintf(f, "| model file | %s | %s | + %s prompt | + %s bank |\n", cli_fmt_bytes(osz, b1, sizeof b1),
            cli_fmt_bytes(csz, b2, sizeof b2), cli_fmt_bytes(psz, b3, sizeof b3), cli_fmt_bytes(bsz, b4, sizeof b4));
    fprintf(f, "| perplexity: tokens/s |");
    for (int r = 0; r < REPAIR_NRUNS; r++)
        if (rd[r].has_ppl) fprintf(f, " %.1f |", rd[r].tok_s);
        else fprintf(f, " – |");
    fprintf(f, "\n| eval wall time, all tasks |");
    for (int r = 0; r < REPAIR_NRUNS; r++)
        fprintf(f, " %s%s |", cli_fmt_duration(rd[r].eval_secs, b1, sizeof b1), rd[r].eval_resumed ? " (resumed)" : "");
    fprintf(f, "\n\nTimes are wall-clock on this machine; a stage resumed after an interruption counts only its "
               "last part.\n");
    int dummy = 0;
    double cs = stage_secs(in->out_dir, "compress", &dummy), bs = stage_secs(in->out_dir, "bank", &dummy),
           ss = stage_secs(in->out_dir, "single", &dummy);
    fprintf(f, "Compression %s", cli_fmt_duration(cs, b1, sizeof b1));
    if (bs > 0) fprintf(f, ", bank training %s", cli_fmt_duration(bs, b2, sizeof b2));
    if (ss > 0) fprintf(f, ", single prompt training %s", cli_fmt_duration(ss, b3, sizeof b3));
    fprintf(f, ".\n");
    fclose(f);
    f = NULL;
    char *rp = cli_pathf("%s/report.md", in->out_dir);
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
    free(rd);
    return rc;
}
