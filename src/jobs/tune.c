/* mend tune as a job: the model and the corpora from their paths, the
 * default teacher, a start prompt from an adapter, the training with its
 * progress, loss.png and the summary, all through events. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "jobs_int.h"
#include "util/util.h"

#define MAX_CORPORA 64

void mend_tune_job_init(mend_tune_job *j) {
    memset(j, 0, sizeof *j);
    mend_tune_opts_default(&j->opts);
    j->plot = 1;
}

/* The fields a caller can get wrong, each refused by name. */
static int check_job(const mend_tune_job *j) {
    const mend_tune_opts *o = &j->opts;
    if (!j->model || !*j->model) return mend_set_error(MEND_EINVAL, "tune job: model is not set");
    if (j->n_corpora < 1 || !j->corpora)
        return mend_set_error(MEND_EINVAL, "tune job: corpora: no training text (n_corpora %d)", j->n_corpora);
    if (j->n_corpora > MAX_CORPORA)
        return mend_set_error(MEND_EINVAL, "tune job: n_corpora %d: at most %d", j->n_corpora, MAX_CORPORA);
    for (int i = 0; i < j->n_corpora; i++)
        if (!j->corpora[i] || !*j->corpora[i]) return mend_set_error(MEND_EINVAL, "tune job: corpora[%d] is not set", i);
    if (!o->out_dir || !*o->out_dir) return mend_set_error(MEND_EINVAL, "tune job: opts.out_dir is not set");
    if (j->teacher && j->no_distill)
        return mend_set_error(MEND_EINVAL, "tune job: teacher and no_distill: give one, not both");
    if (j->init_adapter && (o->init == MEND_TUNE_INIT_TEXT || o->init_text))
        return mend_set_error(MEND_EINVAL, "tune job: init_adapter and opts.init_text: give one, not both");
    if (!j->init_adapter && o->init == MEND_TUNE_INIT_PROMPT && !o->init_prompt)
        return mend_set_error(MEND_EINVAL, "tune job: opts.init is MEND_TUNE_INIT_PROMPT without init_adapter or "
                              "opts.init_prompt");
    if (o->init == MEND_TUNE_INIT_TEXT && !o->init_text)
        return mend_set_error(MEND_EINVAL, "tune job: opts.init is MEND_TUNE_INIT_TEXT without opts.init_text");
    if (o->n_virtual < 1) return mend_set_error(MEND_EINVAL, "tune job: opts.n_virtual %d: at least 1", o->n_virtual);
    if (o->seqlen < 2) return mend_set_error(MEND_EINVAL, "tune job: opts.seqlen %d: at least 2", o->seqlen);
    if (o->batch < 1) return mend_set_error(MEND_EINVAL, "tune job: opts.batch %d: at least 1", o->batch);
    if (o->steps < 1) return mend_set_error(MEND_EINVAL, "tune job: opts.steps %d: at least 1", o->steps);
    if (!(o->lr > 0) || !isfinite(o->lr)) return mend_set_error(MEND_EINVAL, "tune job: opts.lr %g: a positive number", o->lr);
    if (o->eval_every < 0 || o->ckpt_every < 0 || o->stop_after < 0)
        return mend_set_error(MEND_EINVAL, "tune job: opts.%s is negative",
                              o->eval_every < 0 ? "eval_every" : o->ckpt_every < 0 ? "ckpt_every" : "stop_after");
    if (!(o->val_frac >= 0 && o->val_frac < 1))
        return mend_set_error(MEND_EINVAL, "tune job: opts.val_frac %g: from 0 to below 1", o->val_frac);
    return 0;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

typedef struct run_state {
    mend_event_fn fn;
    void *user;
    int cancelled;                  /* the handler asked to stop */
    int counting;                   /* a progress counter is open */
    int zero;                       /* a resumed run's first step: the counter's 0 */
    char label[64];                 /* the counter's label (lives as long as it) */
    int first_step, last_step;      /* CPU time between the ends of these steps */
    double cpu_first, cpu_last, wall_first, wall_last;
} run_state;

static int on_info(void *user, const mend_tune_info *in) {
    run_state *s = user;
    char b[32];
    if (job_emit(s->fn, s->user, MEND_EV_NOTE, "data: %d paragraphs (%d held out); train %lld tokens -> %d sequences; "
                 "validation %lld tokens -> %d sequences", in->n_paragraphs, in->n_val_paragraphs,
                 (long long)in->n_train_tokens, in->n_train_seqs, (long long)in->n_val_tokens, in->n_val_seqs) ||
        job_emit(s->fn, s->user, MEND_EV_NOTE, "memory: %s (activations, scratch, packed weights)",
                 mend_fmt_bytes((double)in->trainer_bytes, b, sizeof b)))
        s->cancelled = 1;
    return s->cancelled;
}

/* Step 0 (the initial validation) is a note; every step after it moves a
 * counter whose item is the step's loss, with the validation when there
 * was one ("[50]2.3456 val 2.1234 (ppl 8.35, best 2.1234 @50),"). */
static int on_step(void *user, const mend_tune_progress *p) {
    run_state *s = user;
    if (p->step == 0) {
        if (job_emit(s->fn, s->user, MEND_EV_NOTE, "step 0: validation loss %.4f (ce %.4f, ppl %.2f) with the initial "
                     "prompt", p->val_loss, p->val_ce, exp(p->val_ce)))
            s->cancelled = 1;
        /* the counter starts with the training, so that its rate and ETA
         * count the first step (a resumed run, without step 0, opens it at
         * its first step) */
        snprintf(s->label, sizeof s->label, "step");
        s->counting = 1;
        if (!s->cancelled && job_progress_start(s->fn, s->user, s->label, "step", p->steps, 10)) s->cancelled = 1;
        return s->cancelled;
    }
    const double now = mend_now();
    if (!s->first_step) {
        s->first_step = p->step;
        s->cpu_first = cpu_seconds();
        s->wall_first = now;
    } else if (!p->evaluated) {   /* steps without validation only */
        s->last_step = p->step;
        s->cpu_last = cpu_seconds();
        s->wall_last = now;
    }
    if (!s->counting) {
        /* a resumed run's counter opens at its first step, whose time it
         * did not see: that step is its zero, so that the rate and ETA
         * count only steps it timed */
        s->zero = p->resumed_from > 0 ? p->step : 0;
        if (s->zero) snprintf(s->label, sizeof s->label, "steps %d..%d", p->resumed_from + 1, p->steps);
        else snprintf(s->label, sizeof s->label, "step");
        s->counting = 1;
        if (job_progress_start(s->fn, s->user, s->label, "step", p->steps - s->zero, 10))
            s->cancelled = 1;
    }
    char item[160];
    int n = snprintf(item, sizeof item, "[%d]%.4f", p->step, p->loss);
    if (p->evaluated)
        n += snprintf(item + n, sizeof item - (size_t)n, " val %.4f (ppl %.2f, best %.4f @%d)", p->val_loss,
                      exp(p->val_ce), p->best_val, p->best_step);
    snprintf(item + n, sizeof item - (size_t)n, ",");
    if (!s->cancelled && job_progress(s->fn, s->user, p->step - s->zero, item))
        s->cancelled = 1;
    return s->cancelled;
}

/* A path as a gnuplot single-quoted string ('' is a quote); malloc'd. */
static char *gp_path(const char *s) {
    char *q = malloc(2 * strlen(s) + 3), *o = q;
    if (!q) return NULL;
    *o++ = '\'';
    for (; *s; s++) {
        if (*s == '\'') *o++ = '\'';
        *o++ = *s;
    }
    *o++ = '\'';
    *o = 0;
    return q;
}

static int plot_loss(const char *dir) {
    char *csv = mend_path_join(dir, "loss.csv"), *png = mend_path_join(dir, "loss.png");
    char *qcsv = csv ? gp_path(csv) : NULL, *qpng = png ? gp_path(png) : NULL, *script = NULL;
    int rc;
    if (!qcsv || !qpng ||
        asprintf(&script, "set terminal pngcairo size 900,520\nset output %s\nset datafile separator ','\n"
                 "set key top right\nset xlabel 'step'\nset ylabel 'loss'\nset grid\nset title 'mend tune'\n"
                 "plot %s using 1:3 every ::1 with lines lw 1 lc rgb '#7f9fcf' title 'train loss', "
                 "'' using 1:6 with linespoints pt 7 ps 0.6 lw 2 lc rgb '#c0392b' title 'validation loss'\n",
                 qpng, qcsv) < 0) {
        script = NULL;
        rc = mend_set_error(MEND_ENOMEM, "plot: out of memory");
    } else rc = mend_gnuplot_run(script, png);
    free(script);
    free(qcsv);
    free(qpng);
    free(csv);
    free(png);
    return rc;
}

int mend_tune_job_run(const mend_tune_job *j, mend_event_fn fn, void *user) {
    if (!j) return mend_set_error(MEND_EINVAL, "tune job: no job given");
    int rc = check_job(j);
    if (rc) return rc;
    mend_tune_opts o = j->opts;
    const char *path = j->model;
    char *texts[MAX_CORPORA] = {0};
    size_t lens[MAX_CORPORA] = {0};
    job_train_inputs in = {0};
    run_state s = {.fn = fn, .user = user};
    for (int i = 0; i < j->n_corpora; i++)
        if ((rc = mend_read_file(j->corpora[i], (size_t)2 << 30, &texts[i], &lens[i]))) {
            mend_error_prefix(rc, "%s", j->corpora[i]);
            goto out;
        }
    if ((rc = job_train_inputs_load(&in, path, j->teacher, j->no_distill, j->models_dir, j->init_adapter, fn, user)))
        goto out;
    const char *teacher_path = in.teacher_path;
    if (teacher_path) o.objective = MEND_TUNE_KL;
    const mend_model_info info = in.info;
    if (j->init_adapter) {
        if (j->tokens_given && in.start_nv != o.n_virtual) {
            rc = mend_set_error(MEND_EINVAL, "init_adapter %s has %d virtual tokens, opts.n_virtual (--tokens) says %d",
                                j->init_adapter, in.start_nv, o.n_virtual);
            goto out;
        }
        o.n_virtual = in.start_nv;
        o.init = MEND_TUNE_INIT_PROMPT;
        o.init_prompt = in.start;
        o.start_tokens = in.start_tokens;
        if (!in.start_has_record && job_emit(fn, user, MEND_EV_NOTE, "%s has no train.json; its training tokens are "
                                             "not counted in this prompt's total", j->init_adapter)) {
            rc = job_cancelled("tune");
            goto out;
        }
    }
    const int warm = o.warmup >= 0 ? o.warmup : (o.steps / 10 < 100 ? o.steps / 10 : 100);
    if (job_emit(fn, user, MEND_EV_TEXT, "model:     %s (%s, %d layers, dim %d)\n", path, info.arch, info.n_layers,
                 info.dim) ||
        job_emit(fn, user, MEND_EV_TEXT, "objective: %s%s\n",
                 teacher_path ? "KL(teacher || model + prompt), teacher " : "next-token cross-entropy",
                 teacher_path ? teacher_path : "") ||
        job_emit(fn, user, MEND_EV_TEXT, "prompt:    %d virtual tokens, init %s%s%s\n", o.n_virtual,
                 o.init == MEND_TUNE_INIT_TEXT     ? "text \""
                 : o.init == MEND_TUNE_INIT_VOCAB  ? "sampled vocabulary"
                 : o.init == MEND_TUNE_INIT_PROMPT ? "the prompt of "
                                                   : "random",
                 o.init_text                           ? o.init_text
                 : j->init_adapter                     ? j->init_adapter
                 : o.init == MEND_TUNE_INIT_PROMPT     ? "the caller"
                                                       : "",
                 o.init_text ? "\"" : "") ||
        job_emit(fn, user, MEND_EV_TEXT, "training:  %d steps x %d sequences x %d tokens, AdamW lr %g (warm-up %d, %s), "
                 "wd %g, clip %g, %d threads, seed %llu\n", o.steps, o.batch, o.seqlen, o.lr, warm,
                 o.schedule == MEND_SCHED_COSINE ? "cosine" : o.schedule == MEND_SCHED_CONSTANT ? "constant" : "linear",
                 o.weight_decay, o.clip, mend_get_threads(), (unsigned long long)o.seed)) {
        rc = job_cancelled("tune");
        goto out;
    }
    mend_tune_result r;
    rc = mend_tune_run(in.m, in.teacher, (const char *const *)texts, lens, j->n_corpora, &o, on_info, on_step, &s, &r);
    if (s.counting) {
        s.counting = 0;
        if (job_progress_end(fn, user)) s.cancelled = 1;
    }
    if (s.cancelled) {
        rc = job_cancelled("tune");
        goto out;
    }
    if (rc) {
        mend_error_prefix(rc, "training");
        goto out;
    }
    if (o.stop_after > 0 && r.steps_done < o.steps) {
        if (job_emit(fn, user, MEND_EV_TEXT, "stopped after step %d (checkpoint in %s)\n", r.steps_done, o.out_dir))
            rc = job_cancelled("tune");
        goto out;
    }
    if (j->plot && plot_loss(o.out_dir)) {
        /* one line: gnuplot's own messages end in newlines */
        char why[512];
        snprintf(why, sizeof why, "%s", mend_last_error());
        size_t n = strlen(why);
        while (n && (why[n - 1] == '\n' || why[n - 1] == ' ')) why[--n] = 0;
        for (char *c = why; *c; c++)
            if (*c == '\n') *c = ' ';
        if (job_emit(fn, user, MEND_EV_WARNING, "%s; loss.csv is there", why)) {
            rc = job_cancelled("tune");
            goto out;
        }
    }
    int stop = job_emit(fn, user, MEND_EV_TEXT, "steps:     %d in %.1f s (%.1f text tokens/s, forward + backward)\n",
                        r.steps_done, r.elapsed, r.tokens_per_s);
    if (!stop && s.last_step > s.first_step && s.cpu_last > s.cpu_first) {
        const double n = s.last_step - s.first_step, toks = (double)o.batch * o.seqlen;
        stop = job_emit(fn, user, MEND_EV_TEXT, "speed:     steps %d..%d: %.2f s/step wall (%.1f tokens/s), %.2f CPU "
                        "s/step (%.1f tokens per CPU second)\n", s.first_step + 1, s.last_step,
                        (s.wall_last - s.wall_first) / n, toks * n / (s.wall_last - s.wall_first),
                        (s.cpu_last - s.cpu_first) / n, toks * n / (s.cpu_last - s.cpu_first));
    }
    if (!stop && !isnan(r.best_val))
        stop = job_emit(fn, user, MEND_EV_TEXT, "val loss:  %.4f at the start, best %.4f at step %d%s\n", r.first_val,
                        r.best_val, r.best_step, o.objective == MEND_TUNE_KL ? " (KL)" : "");
    if (!stop)
        stop = job_emit(fn, user, MEND_EV_TEXT, "adapter:   %s%s\n", o.out_dir,
                        isnan(r.best_val) ? " (last prompt)" : " (best validation prompt)");
    /* the files are written: a stop asked for now has nothing left to stop */
    rc = 0;
out:
    for (int i = 0; i < j->n_corpora; i++) free(texts[i]);
    job_train_inputs_free(&in);
    return rc;
}
