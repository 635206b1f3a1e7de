/* mend eval as a library call (include/mend/jobs.h): task files scored with
 * lm-evaluation-harness rules (docs/eval.md), one JSON line per example
 * appended to the results file and flushed as soon as it is scored; a
 * resumed run skips every example the file already holds. The summary
 * table is derived from the results file at the end. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"
#include "jobs_int.h"

void mend_eval_job_init(mend_eval_job *j) { memset(j, 0, sizeof *j); }

/* The struct's fields, checked before anything is read: MEND_EINVAL naming
 * the field. */
static int check_job(const mend_eval_job *j) {
    if (!j) return mend_set_error(MEND_EINVAL, "eval job: no job given (NULL)");
    if (!j->model || !*j->model) return mend_set_error(MEND_EINVAL, "eval job: model: no model path given");
    if (!j->tasks || j->n_tasks < 1)
        return mend_set_error(MEND_EINVAL, "eval job: tasks: no task file given (n_tasks %d)", j->n_tasks);
    for (int t = 0; t < j->n_tasks; t++)
        if (!j->tasks[t] || !*j->tasks[t])
            return mend_set_error(MEND_EINVAL, "eval job: tasks[%d]: no task file path given", t);
    if (!j->out || !*j->out) return mend_set_error(MEND_EINVAL, "eval job: out: no results file given");
    if (j->limit > ((size_t)1 << 30))
        return mend_set_error(MEND_EINVAL, "eval job: limit %zu is out of range (0 for all, or 1 to %zu)", j->limit,
                              (size_t)1 << 30);
    if (j->ctx != 0 && (j->ctx < 40 || j->ctx > (1 << 20)))
        return mend_set_error(MEND_EINVAL, "eval job: ctx %d is out of range (0 for the model's, or 40 to %d)", j->ctx,
                              1 << 20);
    if (j->batch != 0 && (j->batch < 1 || j->batch > (1 << 16)))
        return mend_set_error(MEND_EINVAL, "eval job: batch %d is out of range (0 for the default, or 1 to %d)",
                              j->batch, 1 << 16);
    if (j->prompt && j->bank) return mend_set_error(MEND_EINVAL, "eval job: prompt and bank: give one, not both");
    if ((j->select || j->select_layers || j->per_prompt) && !j->bank)
        return mend_set_error(MEND_EINVAL, "eval job: select, select_layers and per_prompt need bank");
    return 0;
}

static int str_eq_null(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* Where mend_eval_run's lines go: appended to the results file, one flushed
 * line each, with the progress and the truncation warnings as events. */
typedef struct writer {
    FILE *out;
    const char *out_path;
    mend_event_fn fn;
    void *user;
    const mend_task *task;
    const char *path;
    int window, warned, failed;
    int64_t n_done;
} writer;

static int write_line(void *user, const mend_eval_line *l) {
    writer *w = user;
    if (l->truncated && w->warned < 10) {
        w->warned++;
        if (job_emit(w->fn, w->user, MEND_EV_WARNING, "%s:%d: input longer than the window of %d tokens, truncated "
                     "from the left as lm-eval does%s", w->path, mend_task_example_line(w->task, l->index), w->window,
                     w->warned == 10 ? " (further warnings suppressed; see the summary)" : "")) {
            w->failed = 1;
            return job_cancelled("eval");
        }
    }
    if (fputs(l->line, w->out) < 0 || fputc('\n', w->out) == EOF || fflush(w->out) != 0) {
        w->failed = 1;
        return mend_set_error(MEND_EIO, "cannot write to %s", w->out_path);
    }
    if (job_progress(w->fn, w->user, ++w->n_done, NULL)) {
        w->failed = 1;
        return job_cancelled("eval");
    }
    return 0;
}

/* The results label of a bank run: "BANK:SELECTOR" (the first selector of
 * select, or the bank's default), as mend_idp_label gives it. */
static int bank_label(const char *bank, const char *select, char *buf, size_t cap) {
    char bn[256];
    mend_basename(bank, bn, sizeof bn);
    if (select) {
        snprintf(buf, cap, "%s:%.*s", bn, (int)strcspn(select, ","), select);
        return 0;
    }
    mend_bank *b = NULL;
    int rc = mend_bank_read(bank, &b);
    if (rc) return mend_error_prefix(rc, "%s", bank);
    mend_bank_info bi;
    mend_bank_get_info(b, &bi);
    snprintf(buf, cap, "%s:%.*s", bn, (int)strcspn(bi.default_selector, ","), bi.default_selector);
    mend_bank_free(b);
    return 0;
}

/* The examples of every task the results file at path already holds (done),
 * after refusing a file scored with another model or prompt; a partial last
 * line is cut off. */
static int resume_from(const mend_eval_job *j, mend_task_info *ti, unsigned char **done, const char *model_name,
                       const char *prompt_label, mend_event_fn fn, void *user) {
    mend_results prev;
    memset(&prev, 0, sizeof prev);
    int rc = mend_results_load(j->out, &prev);
    if (rc) return mend_error_prefix(rc, "results");
    if (prev.file_size > 0 && !j->resume) {
        rc = mend_set_error(MEND_EINVAL, "%s already holds %zu results; pass --resume to continue it or choose "
                            "another --out", j->out, prev.n);
        goto out;
    }
    if (prev.partial) {
        if (job_emit(fn, user, MEND_EV_NOTE, "%s: dropping a partial last line (%zu bytes) left by an interrupted run",
                     j->out, prev.file_size - prev.valid_bytes)) {
            rc = job_cancelled("eval");
            goto out;
        }
        if (truncate(j->out, (off_t)prev.valid_bytes) != 0) {
            rc = mend_set_error(MEND_EIO, "%s: cannot truncate the partial line", j->out);
            goto out;
        }
    }
    size_t skipped = 0;
    for (size_t i = 0; i < prev.n; i++) {
        const mend_result_rec *r = &prev.rec[i];
        for (int t = 0; t < j->n_tasks; t++) {
            if (strcmp(r->task, ti[t].name)) continue;
            if (strcmp(r->model, model_name) || !str_eq_null(r->prompt, prompt_label)) {
                rc = mend_set_error(MEND_EINVAL, "%s:%d: task %s was scored with model %s, prompt %s; this run uses "
                                    "model %s, prompt %s: choose another --out", j->out, r->line, r->task, r->model,
                                    r->prompt ? r->prompt : "none", model_name, prompt_label ? prompt_label : "none");
                goto out;
            }
            if (r->kind != ti[t].kind) {
                rc = mend_set_error(MEND_EINVAL, "%s:%d: task %s is %s there but %s in %s", j->out, r->line, r->task,
                                    mend_task_kind_name(r->kind), mend_task_kind_name(ti[t].kind), ti[t].path);
                goto out;
            }
            if (r->index >= 0 && (size_t)r->index < ti[t].n && !done[t][r->index]) {
                done[t][r->index] = 1;
                skipped++;
            }
        }
    }
    if (j->resume && prev.n &&
        job_emit(fn, user, MEND_EV_NOTE, "resuming %s: %zu of the requested examples already scored", j->out, skipped))
        rc = job_cancelled("eval");
out:
    mend_results_free(&prev);
    return rc;
}

/* The report's end, from the results file alone: the summary table, the
 * tasks with truncated sequences, and the bank's choices. */
static int summary(const char *out_path, mend_idp *idp, mend_event_fn fn, void *user) {
    mend_results res;
    memset(&res, 0, sizeof res);
    mend_task_summary *sums = NULL;
    size_t n_sums = 0;
    char *md = NULL, *idp_md = NULL;
    int rc = mend_results_load(out_path, &res);
    if (!rc) rc = mend_results_summarize(&res, &sums, &n_sums);
    char title[600];
    mend_basename(out_path, title, sizeof title);
    size_t n = strlen(title);
    if (n > 6 && !strcmp(title + n - 6, ".jsonl")) title[n - 6] = 0;
    mend_report_run run = {.name = title, .s = sums, .n = n_sums};
    if (!rc) rc = mend_report_markdown(&run, 1, &md);
    if (rc) {
        mend_error_prefix(rc, "summary");
        goto out;
    }
    int stop = job_emit(fn, user, MEND_EV_TEXT, "\n%s", md);
    for (size_t k = 0; !stop && k < n_sums; k++)
        if (sums[k].truncated)
            stop = job_emit(fn, user, MEND_EV_TEXT, "note: %s: %ld sequences truncated to the window\n", sums[k].task,
                            sums[k].truncated);
    if (!stop && idp) {
        if ((rc = mend_idp_summary(idp, &idp_md))) {
            mend_error_prefix(rc, "prompt bank summary");
            goto out;
        }
        stop = job_emit(fn, user, MEND_EV_TEXT, "%s", idp_md);
    }
    if (stop) rc = job_cancelled("eval");
out:
    free(idp_md);
    free(md);
    mend_summaries_free(sums, n_sums);
    mend_results_free(&res);
    return rc;
}

int mend_eval_job_run(const mend_eval_job *j, mend_event_fn fn, void *user) {
    int rc = check_job(j);
    if (rc) return rc;
    const int n_tasks = j->n_tasks;
    const char *model_path = j->model, *out_path = j->out;
    mend_task **tasks = calloc((size_t)n_tasks, sizeof *tasks);
    mend_task_info *ti = calloc((size_t)n_tasks, sizeof *ti);
    unsigned char **done = calloc((size_t)n_tasks, sizeof *done);
    size_t *idx = NULL, max_n = 0;   /* the examples of a task still to score */
    mend_model *m = NULL;
    mend_eval_backend *be = NULL;
    mend_idp *idp = NULL;
    float *prompt = NULL;
    int n_virtual = 0;
    FILE *out = NULL;
    if (!tasks || !ti || !done) {
        rc = mend_set_error(MEND_ENOMEM, "out of memory");
        goto out;
    }
    char model_name[512], prompt_name[512];
    mend_basename(model_path, model_name, sizeof model_name);
    /* packed kernels score differently: their lines must not mix with f32 ones */
    if (j->packed && strlen(model_name) + 8 < sizeof model_name) strcat(model_name, "+packed");
    const char *prompt_label = j->prompt ? mend_basename(j->prompt, prompt_name, sizeof prompt_name) : NULL;
    if (j->bank) {
        if ((rc = bank_label(j->bank, j->select, prompt_name, sizeof prompt_name))) goto out;
        prompt_label = prompt_name;
    }

    /* tasks first: bad input fails before the model loads */
    for (int t = 0; t < n_tasks; t++) {
        if ((rc = mend_task_load(&tasks[t], j->tasks[t], j->limit))) {
            mend_error_prefix(rc, "task");
            goto out;
        }
        mend_task_get_info(tasks[t], &ti[t]);
        for (int u = 0; u < t; u++)
            if (!strcmp(ti[u].name, ti[t].name)) {
                rc = mend_set_error(MEND_EINVAL, "tasks %s and %s have the same name '%s'; results lines are keyed "
                                    "by task name", j->tasks[u], j->tasks[t], ti[t].name);
                goto out;
            }
        done[t] = calloc(ti[t].n ? ti[t].n : 1, 1);
        if (ti[t].n > max_n) max_n = ti[t].n;
        if (!done[t]) {
            rc = mend_set_error(MEND_ENOMEM, "out of memory");
            goto out;
        }
    }
    if (mend_file_exists(out_path) &&
        (rc = resume_from(j, ti, done, model_name, prompt_label, fn, user)))
        goto out;

    if (!(idx = malloc((max_n ? max_n : 1) * sizeof *idx))) {
        rc = mend_set_error(MEND_ENOMEM, "out of memory");
        goto out;
    }
    size_t todo = 0;
    for (int t = 0; t < n_tasks; t++)
        for (size_t i = 0; i < ti[t].n; i++) todo += !done[t][i];

    mend_load_opts lo = {.keep_packed = j->packed};
    if ((rc = mend_model_load(&m, model_path, &lo))) {
        mend_error_prefix(rc, "%s", model_path);
        goto out;
    }
    mend_model_info info;
    mend_model_get_info(m, &info);
    if (j->prompt && (rc = mend_prompt_read_checked(m, model_path, j->prompt, &prompt, &n_virtual, fn, user))) {
        mend_error_prefix(rc, "%s", j->prompt);
        goto out;
    }
    if ((rc = mend_eval_backend_model(&be, m, prompt, n_virtual, j->ctx, j->batch))) {
        mend_error_prefix(rc, "backend");
        goto out;
    }
    if (j->bank) {
        rc = mend_idp_open_checked(&idp, m, model_path, j->bank, j->select, j->select_layers, 0, j->per_prompt, fn,
                                   user);
        if (rc) {
            /* a bad selector keeps its "--select: ..." error, a usage error */
            if (rc != MEND_EINVAL || strncmp(mend_last_error(), "--select", 8)) mend_error_prefix(rc, "%s", j->bank);
            goto out;
        }
        if ((rc = mend_idp_eval_setup(idp, j->ctx, j->batch))) {
            mend_error_prefix(rc, "prompt bank backends");
            goto out;
        }
        mend_eval_backend_set_window(be, mend_idp_eval_window(idp));
    }
    if (!(out = fopen(out_path, "a"))) {
        rc = mend_set_error(MEND_EIO, "cannot open %s for appending", out_path);
        goto out;
    }
    const int window = mend_eval_backend_window(be);
    int stop = job_emit(fn, user, MEND_EV_TEXT, "model:   %s (%s, %d layers, dim %d, window %d tokens)\n", model_path,
                        info.arch, info.n_layers, info.dim, window);
    stop = stop || job_emit(fn, user, MEND_EV_TEXT, "weights: %s\n",
                            j->packed ? "packed (native quantized kernels, 8-bit activations)"
                                      : "dequantized to f32 (as lm-eval's HF backend)");
    stop = stop || job_emit(fn, user, MEND_EV_TEXT, "prompt:  %s\n", j->prompt ? j->prompt
                                                                     : j->bank ? prompt_label : "none");
    for (int t = 0; !stop && t < n_tasks; t++)
        stop = job_emit(fn, user, MEND_EV_TEXT, "task:    %-16s %s, %zu of %zu examples (%s)\n", ti[t].name,
                        mend_task_kind_name(ti[t].kind), ti[t].n, ti[t].n_total, ti[t].path);
    stop = stop || job_emit(fn, user, MEND_EV_TEXT, "results: %s (%zu examples to score)\n", out_path, todo);
    if (stop) {
        rc = job_cancelled("eval");
        goto out;
    }

    if (j->prompt && (rc = mend_eval_backend_reserve(be, 1))) { /* the prompt's KV, once per run */
        mend_error_prefix(rc, "soft prompt");
        goto out;
    }
    mend_eval_stats stats;
    memset(&stats, 0, sizeof stats);
    if (job_progress_start(fn, user, "eval", "ex", (int64_t)todo, 0)) {
        rc = job_cancelled("eval");
        goto out;
    }
    writer w = {.out = out, .out_path = out_path, .fn = fn, .user = user, .window = window};
    double t0 = mend_now();
    for (int t = 0; t < n_tasks; t++) {
        size_t n_idx = 0;
        for (size_t i = 0; i < ti[t].n; i++)
            if (!done[t][i]) idx[n_idx++] = i;
        w.task = tasks[t];
        w.path = ti[t].path;
        /* examples are scored in groups (packed into shared forwards), then
         * written in order, one flushed line each */
        if ((rc = mend_eval_run(be, idp, tasks[t], idx, n_idx, model_name, prompt_label, write_line, &w, &stats))) {
            job_progress_end(fn, user);
            if (!w.failed) mend_error_prefix(rc, "%s", ti[t].name);
            goto out;
        }
    }
    stop = job_progress_end(fn, user);
    double el = mend_now() - t0;
    if (fclose(out) != 0 && !rc) {
        out = NULL;
        rc = mend_set_error(MEND_EIO, "cannot write to %s", out_path);
        goto out;
    }
    out = NULL;
    if (!stop && todo && stats.tokens_naive > 0)
        stop = job_emit(fn, user, MEND_EV_NOTE, "scored %zu examples in %.1f s; forward positions %lld (%lld without "
                        "prefix sharing)", todo, el, (long long)stats.tokens_run, (long long)stats.tokens_naive);
    else if (!stop && todo)   /* generation only: no scored requests to share a prefix */
        stop = job_emit(fn, user, MEND_EV_NOTE, "scored %zu examples in %.1f s; forward positions %lld", todo, el,
                        (long long)stats.tokens_run);
    if (!stop && stats.truncated)
        stop = job_emit(fn, user, MEND_EV_WARNING, "%lld sequences were truncated from the left to the window of %d "
                        "tokens", (long long)stats.truncated, window);
    if (stop) {
        rc = job_cancelled("eval");
        goto out;
    }
    rc = summary(out_path, idp, fn, user);
out:
    if (out) fclose(out);
    mend_eval_backend_free(be);
    mend_idp_close(idp);
    free(prompt);
    if (m) mend_model_free(m);
    for (int t = 0; tasks && done && t < n_tasks; t++) {
        mend_task_free(tasks[t]);
        free(done[t]);
    }
    free(tasks);
    free(ti);
    free(done);
    free(idx);
    return rc;
}
