/* mend_compress_job_run (mend/jobs.h): `mend compress` as one call. The
 * calibration windows are drawn here (from the given texts, or from the six
 * corpora of corpus_dir), the checkpoint is chosen, mend_compress runs with
 * its progress sent as a counter, and the summary the command prints is
 * the job's report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compress/driver.h"
#include "jobs/jobs_int.h"
#include "mend.h"
#include "mend/jobs.h"

/* the default calibration texts, in the order their windows are drawn */
static const char *const CORPORA[] = {"dialog.txt", "fiction.txt", "lore.txt", "news.txt", "science.txt", "wiki.txt"};
#define N_CORPORA (int)(sizeof CORPORA / sizeof CORPORA[0])
#define MAX_CALIB 64

void mend_compress_job_init(mend_compress_job *j) {
    memset(j, 0, sizeof *j);
    mend_compress_opts_init(&j->opts);
    j->opts.method = MEND_COMPRESS_GPTQ;
    j->nsamples = 128;
    j->seqlen = 2048;
}

typedef struct ui {
    mend_event_fn fn;
    void *user;
    int started, stop_after, stopped;
} ui;

/* mend_compress's progress as a counter that starts at the first event
 * with the total it names; a finished layer shows its error */
static int on_progress(void *user, const mend_compress_event *ev) {
    ui *u = user;
    if (!u->started) {
        u->started = 1;
        if (job_progress_start(u->fn, u->user, "compress", "step", ev->total, 6)) return 1;
    }
    char item[64] = "";
    const int layer_done = ev->stage && !strcmp(ev->stage, "layer done");
    if (layer_done) snprintf(item, sizeof item, "[%d]%.4g,", ev->layer, ev->loss);
    if (job_progress(u->fn, u->user, ev->done, item[0] ? item : NULL)) return 1;
    if (layer_done && u->stop_after > 0 && ev->layer + 1 >= u->stop_after) return u->stopped = 1;
    return 0;
}

/* The options mend_compress gets: a float target is a conversion (RTN). */
static mend_compress_opts job_opts(const mend_compress_job *j) {
    mend_compress_opts o = j->opts;
    if (mend_type_is_float(o.fmt.type)) o.method = MEND_COMPRESS_RTN;
    return o;
}

static int check(const mend_compress_job *j) {
    if (!j->model || !j->out) return mend_set_error(MEND_EINVAL, "compress job: model and out are required");
    if (j->n_calib < 0 || j->n_calib > MAX_CALIB || (j->n_calib && !j->calib))
        return mend_set_error(MEND_EINVAL, "compress job: n_calib is %d, expected 0..%d with calib given", j->n_calib,
                              MAX_CALIB);
    if (j->nsamples < 1 || j->seqlen < 2)
        return mend_set_error(MEND_EINVAL, "compress job: calibration of %d windows of %d tokens (>= 1 and >= 2 "
                              "expected)", j->nsamples, j->seqlen);
    if (j->resume && (j->restart || j->no_checkpoint))
        return mend_set_error(MEND_EINVAL, "compress job: resume excludes restart and no_checkpoint");
    if (j->stop_after < 0) return mend_set_error(MEND_EINVAL, "compress job: stop_after is %d", j->stop_after);
    const mend_compress_opts o = job_opts(j);   /* refused settings fail before the windows are drawn */
    mend_compress_opts resolved;
    return mend_compress_resolve(&o, &resolved);
}

/* The calibration windows into cal and their description ("seed S: a.txt
 * b.txt") into desc. */
static int calibrate(const mend_compress_job *j, mend_calib *cal, char *desc, size_t cap, mend_event_fn fn,
                     void *user) {
    const char *paths[MAX_CALIB];
    char *owned[N_CORPORA] = {0};
    int n = 0, rc = 0;
    if (j->n_calib) {
        for (int i = 0; i < j->n_calib; i++) paths[n++] = j->calib[i];
    } else if (!j->corpus_dir) {
        return mend_set_error(MEND_EINVAL, "compress: %s needs calibration text: give calibration files or the "
                              "corpus directory", j->opts.method == MEND_COMPRESS_GPTQ ? "GPTQ" : "pruning");
    } else {
        for (int i = 0; i < N_CORPORA && !rc; i++)
            if (!(owned[i] = mend_path_join(j->corpus_dir, CORPORA[i]))) rc = mend_set_error(MEND_ENOMEM, "out of memory");
            else paths[n++] = owned[i];
    }
    size_t k = (size_t)snprintf(desc, cap, "seed %llu:", (unsigned long long)j->seed);
    for (int i = 0; i < n && k + 2 < cap; i++) {
        char bn[256];
        k += (size_t)snprintf(desc + k, cap - k, " %s", mend_basename(paths[i], bn, sizeof bn));
    }
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 1, .no_repack = 1};   /* the tokenizer only: mend_compress loads the weights */
    const double t0 = mend_now();
    if (!rc) rc = mend_model_load(&m, j->model, &lo);
    if (!rc) rc = mend_calib_build(cal, mend_model_tokenizer(m), paths, n, j->nsamples, j->seqlen, j->seed);
    if (!rc && job_emit(fn, user, MEND_EV_NOTE, "calibration: %d x %d tokens from %d file(s) in %.1f s",
                        cal->nsamples, cal->seqlen, n, mend_now() - t0))
        rc = job_cancelled("compress");
    if (!rc && j->save_calib) {
        char *text = NULL;
        size_t len = 0;
        rc = mend_calib_text(cal, mend_model_tokenizer(m), &text, &len);
        if (!rc) rc = mend_write_file_atomic(j->save_calib, text, len);
        free(text);
    }
    mend_model_free(m);
    for (int i = 0; i < N_CORPORA; i++) free(owned[i]);
    return rc;
}

static int report(const mend_compress_job *j, const mend_compress_opts *o, const mend_compress_result *res,
                  mend_event_fn fn, void *user) {
    char fmt[64], sz[32], qsz[32], dur[32];
    mend_qfmt_name(&o->fmt, fmt, sizeof fmt);
    int st = job_emit(fn, user, MEND_EV_TEXT, "wrote %s: %s (%s), %s\n", j->out, fmt,
                      o->method == MEND_COMPRESS_GPTQ ? "gptq" : "rtn",
                      mend_fmt_bytes((double)res->file_bytes, sz, sizeof sz));
    st = st || job_emit(fn, user, MEND_EV_TEXT, "  linear layers: %lld weights in %s, %.3f bits per weight\n",
                        (long long)res->n_quantized, mend_fmt_bytes((double)res->bytes_quantized, qsz, sizeof qsz),
                        res->n_quantized ? 8.0 * (double)res->bytes_quantized / (double)res->n_quantized : 0.0);
    if (res->n_fallback)
        st = st || job_emit(fn, user, MEND_EV_TEXT, "  %d matrices in %s: rows not a multiple of the %s block "
                            "(llama.cpp's fallback)\n", res->n_fallback, mend_type_name(res->fallback_type), fmt);
    const mend_prune_opts *po = o->prune;
    if (po && po->method != MEND_PRUNE_NONE) {
        char sp[32];
        st = st || job_emit(fn, user, MEND_EV_TEXT, "  pruned: %s, %s%s (mend info --sparsity shows the zeros per "
                            "matrix)\n", mend_prune_method_name(po->method), mend_sparsity_name(&po->sp, sp, sizeof sp),
                            po->joint ? ", joint with GPTQ" : "");
    }
    if (res->resumed_layers)
        st = st || job_emit(fn, user, MEND_EV_TEXT, "  resumed after %d finished layers\n", res->resumed_layers);
    st = st || job_emit(fn, user, MEND_EV_TEXT, "  time %s (%.1f s)\n",
                        mend_fmt_duration(res->seconds, dur, sizeof dur), res->seconds);
    return st ? job_cancelled("compress") : 0;
}

int mend_compress_job_run(const mend_compress_job *j, mend_compress_result *res, mend_event_fn fn, void *user) {
    mend_compress_result dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    if (!j) return mend_set_error(MEND_EINVAL, "compress job: NULL job");
    int rc = check(j);
    if (rc) return rc;
    mend_compress_opts o = job_opts(j);
    mend_calib cal = {0};
    char desc[1024] = "", *ckpt = NULL;
    if (o.method == MEND_COMPRESS_GPTQ || mend_prune_needs_calib(o.prune)) {
        if ((rc = calibrate(j, &cal, desc, sizeof desc, fn, user))) goto out;
        o.calib = cal.tokens;
        o.nsamples = cal.nsamples;
        o.seqlen = cal.seqlen;
        o.calib_desc = desc;
    }
    if (!j->no_checkpoint) {
        ckpt = j->checkpoint ? job_pathf("%s", j->checkpoint) : job_pathf("%s.ckpt", j->out);
        if (!ckpt) {
            rc = mend_set_error(MEND_ENOMEM, "out of memory");
            goto out;
        }
        if (j->restart) unlink(ckpt);
        if (j->resume && !mend_file_exists(ckpt)) {
            rc = mend_set_error(MEND_EIO, "compress: no checkpoint %s to resume from", ckpt);
            goto out;
        }
        if (mend_file_exists(ckpt) && job_emit(fn, user, MEND_EV_NOTE, "resuming from %s", ckpt)) {
            rc = job_cancelled("compress");
            goto out;
        }
        o.checkpoint = ckpt;
    }
    ui u = {.fn = fn, .user = user, .stop_after = j->stop_after};
    o.progress = on_progress;
    o.progress_user = &u;
    rc = mend_compress(j->model, j->out, &o, res);
    if (u.started && job_progress_end(fn, user) && !rc) rc = job_cancelled("compress");
    if (rc && u.stopped) {   /* the requested stop: the checkpoint holds every finished layer */
        rc = job_emit(fn, user, MEND_EV_NOTE, "%s; checkpoint %s kept (run again to resume)", mend_last_error(),
                      ckpt ? ckpt : "(none)") ? job_cancelled("compress") : 0;
        goto out;
    }
    if (!rc) rc = report(j, &o, res, fn, user);
out:
    free(ckpt);
    mend_calib_free(&cal);
    return rc;
}
