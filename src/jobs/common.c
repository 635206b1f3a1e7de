/* What every job shares: events, the model a prompt or bank was trained on,
 * the default teacher, opening a prompt or a bank for a model. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_int.h"
#include "util/util.h"

/* ---- events ---- */

int job_emit(mend_event_fn fn, void *user, int kind, const char *fmt, ...) {
    if (!fn) return 0;
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) return 0;   /* out of memory: the event is lost, the job goes on */
    mend_event ev = {.kind = kind, .text = s};
    int r = fn(user, &ev);
    free(s);
    return r;
}

int job_progress_start(mend_event_fn fn, void *user, const char *label, const char *unit, int64_t total,
                       int row_items) {
    if (!fn) return 0;
    mend_event ev = {.kind = MEND_EV_PROGRESS_START, .label = label, .unit = unit, .total = total,
                     .row_items = row_items};
    return fn(user, &ev);
}

int job_progress(mend_event_fn fn, void *user, int64_t done, const char *item) {
    if (!fn) return 0;
    mend_event ev = {.kind = MEND_EV_PROGRESS, .done = done, .item = item};
    return fn(user, &ev);
}

int job_progress_end(mend_event_fn fn, void *user) {
    if (!fn) return 0;
    mend_event ev = {.kind = MEND_EV_PROGRESS_END};
    return fn(user, &ev);
}

char *job_pathf(const char *fmt, ...) {
    char *p = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&p, fmt, ap) < 0) p = NULL;
    va_end(ap);
    return p;
}

int job_cancelled(const char *what) { return mend_set_error(MEND_EINVAL, "%s: stopped by the caller", what); }

/* ---- the model a prompt was trained on ---- */

const char *mend_fp_describe(const mend_fp *fp, char *buf, size_t cap) {
    char m[17], r[17];
    if (!fp->has_model) {
        snprintf(buf, cap, "(none recorded)");
        return buf;
    }
    mend_fp_hex(fp->model, m);
    mend_fp_hex(fp->recipe, r);
    snprintf(buf, cap, "%s%s%s%s", m, fp->has_recipe ? " (recipe " : "", fp->has_recipe ? r : "",
             fp->has_recipe ? ")" : "");
    return buf;
}

const char *mend_retrain_dir(const char *dir, const mend_fp *model, char *buf, size_t cap) {
    char hx[17];
    mend_fp_hex(model->model, hx);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    snprintf(buf, cap, "%.*s-%.8s", (int)n, dir, hx);
    return buf;
}

const char *mend_retrain_cmd(int bank, const char *model_path, const char *dir, const mend_fp *model, char *buf,
                            size_t cap) {
    char out[4096];
    mend_retrain_dir(dir, model, out, sizeof out);
    if (bank) snprintf(buf, cap, "mend bank build %s -o %s --domain NAME=FILE ...", model_path, out);
    else snprintf(buf, cap, "mend tune %s --corpus FILE -o %s", model_path, out);
    return buf;
}

int mend_check_trained_on(const mend_model *m, const char *model_path, int bank, const char *dir,
                          const mend_fp *rec, mend_event_fn fn, void *user) {
    const char *kind = bank ? "bank" : "prompt";
    mend_fp fp;
    if (mend_model_fingerprint(m, &fp)) {
        job_emit(fn, user, MEND_EV_NOTE, "cannot check %s %s against the model: %s", kind, dir, mend_last_error());
        return MEND_FP_UNKNOWN;
    }
    char a[64], b[64], c[8192];
    const int match = mend_fp_compare(&fp, rec);
    switch (match) {
    case MEND_FP_SAME: break;
    case MEND_FP_SAME_RECIPE:
        job_emit(fn, user, MEND_EV_NOTE, "%s %s was trained on model fingerprint %s, this model is %s: another file "
                 "made by the same recipe (same source and compression settings)", kind, dir,
                 mend_fp_describe(rec, a, sizeof a), mend_fp_describe(&fp, b, sizeof b));
        break;
    case MEND_FP_OTHER:
        job_emit(fn, user, MEND_EV_WARNING, "%s %s was trained on model fingerprint %s, this model is %s: retrain it "
                 "with `%s`%s", kind, dir, mend_fp_describe(rec, a, sizeof a), mend_fp_describe(&fp, b, sizeof b),
                 mend_retrain_cmd(bank, model_path, dir, &fp, c, sizeof c),
                 bank ? " (scripts/train_bank.sh makes the shipped bank)" : "");
        break;
    default:
        job_emit(fn, user, MEND_EV_NOTE, "%s %s records no model fingerprint (made before mend recorded them), so "
                 "it cannot be checked against this model (%s)", kind, dir, mend_fp_describe(&fp, b, sizeof b));
    }
    return match;
}

int mend_prompt_read_checked(const mend_model *m, const char *model_path, const char *dir, float **emb, int *n_virtual,
                    mend_event_fn fn, void *user) {
    mend_model_info info;
    mend_model_get_info(m, &info);
    mend_fp rec;
    int rc = mend_adapter_read_fp(dir, info.dim, emb, n_virtual, &rec);
    if (rc) return rc;
    mend_check_trained_on(m, model_path, 0, dir, &rec, fn, user);
    return 0;
}

/* ---- the default teacher ---- */

/* Is path a model whose fingerprint is fp? (loaded packed, without the
 * interleaved copy: only its tensors are hashed) */
static int is_model(const char *path, uint64_t fp) {
    if (!mend_file_exists(path) && !mend_is_dir(path)) return 0;
    mend_load_opts lo = {.keep_packed = 1, .no_repack = 1};
    mend_model *t = NULL;
    mend_fp f;
    const int ok = !mend_model_load(&t, path, &lo) && !mend_model_fingerprint(t, &f) && f.has_model && f.model == fp;
    if (t) mend_model_free(t);
    return ok;
}

int mend_default_teacher(const mend_model *m, const char *model_path, const char *models_dir, char *out, size_t cap,
                         mend_event_fn fn, void *user) {
    const char *name = mend_model_meta_str(m, "mend.compress.source");
    mend_fp fp;
    if (!name || !*name || strchr(name, '/') || mend_model_fingerprint(m, &fp) || !fp.has_source) {
        job_emit(fn, user, MEND_EV_NOTE, "%s records no source model (it was not written by mend compress): "
                 "training on next-token cross-entropy; --distill ORIGINAL trains on KL to the original instead",
                 model_path);
        return 0;
    }
    const char *slash = strrchr(model_path, '/');
    char cand[2][4096];
    int n = 1;
    snprintf(cand[0], sizeof cand[0], "%.*s%s", slash ? (int)(slash - model_path + 1) : 0, model_path, name);
    if (models_dir && *models_dir) snprintf(cand[n++], sizeof cand[1], "%s/%s", models_dir, name);
    for (int i = 0; i < n; i++)
        if (is_model(cand[i], fp.source)) {
            snprintf(out, cap, "%s", cand[i]);
            return 1;
        }
    char hx[17];
    mend_fp_hex(fp.source, hx);
    job_emit(fn, user, MEND_EV_NOTE, "the source of %s (%s, fingerprint %s) is neither beside it nor in %s: "
             "training on next-token cross-entropy; --distill ORIGINAL trains on KL to the original instead",
             model_path, name, hx, n > 1 ? models_dir : "a models directory");
    return 0;
}

/* ---- what a training job loads ---- */

int job_train_inputs_load(job_train_inputs *in, const char *model_path, const char *teacher, int no_distill,
                          const char *models_dir, const char *init_adapter, mend_event_fn fn, void *user) {
    memset(in, 0, sizeof *in);
    mend_load_opts lo = {.keep_packed = 0};
    int rc = mend_model_load(&in->m, model_path, &lo);
    if (rc) return mend_error_prefix(rc, "%s", model_path);
    in->teacher_path = teacher;
    if (!teacher && !no_distill &&
        mend_default_teacher(in->m, model_path, models_dir, in->teacher_buf, sizeof in->teacher_buf, fn, user))
        in->teacher_path = in->teacher_buf;
    if (in->teacher_path && (rc = mend_model_load(&in->teacher, in->teacher_path, &lo)))
        return mend_error_prefix(rc, "%s", in->teacher_path);
    mend_model_get_info(in->m, &in->info);
    if (init_adapter) {
        if ((rc = mend_adapter_read(init_adapter, in->info.dim, &in->start, &in->start_nv)))
            return mend_error_prefix(rc, "%s", init_adapter);
        mend_tune_record rec;
        if ((rc = mend_tune_read_record(init_adapter, &rec, &in->start_has_record)))
            return mend_error_prefix(rc, "%s", init_adapter);
        in->start_tokens = rec.train_tokens + rec.start_tokens;
    }
    return 0;
}

void job_train_inputs_free(job_train_inputs *in) {
    free(in->start);
    mend_model_free(in->teacher);
    mend_model_free(in->m);
    memset(in, 0, sizeof *in);
}

/* ---- a prompt bank for a model ---- */

/* Add the selector called name (its layers and token budget overridden when
 * l0 >= 0 / max_tokens > 0). */
static int add_one(mend_idp *x, const char *name, int l0, int l1, int max_tokens) {
    mend_select_spec sp;
    if (mend_select_parse(name, mend_idp_bank(x), &sp))
        return mend_set_error(MEND_EINVAL, "--select: %s", mend_last_error());
    if (l0 >= 0) {
        sp.layer0 = l0;
        sp.layer1 = l1;
    }
    if (max_tokens > 0) sp.max_tokens = max_tokens;
    if (mend_idp_n_sel(x) >= MEND_IDP_MAX_SEL)
        return mend_set_error(MEND_EINVAL, "--select: at most %d selectors", MEND_IDP_MAX_SEL);
    return mend_idp_add_selector(x, name, &sp);
}

static int add_list(mend_idp *x, const char *s, int l0, int l1, int max_tokens) {
    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        char name[128];
        if (len >= sizeof name) return mend_set_error(MEND_EINVAL, "--select: '%.*s' is too long", (int)len, s);
        memcpy(name, s, len);
        name[len] = 0;
        int rc = add_one(x, name, l0, l1, max_tokens);
        if (rc || !e) return rc;
        s = e + 1;
    }
    return 0;
}

int mend_idp_open_checked(mend_idp **out, const mend_model *m, const char *model_path, const char *bank_dir,
                 const char *select, const char *layers, int max_tokens, int per_prompt, mend_event_fn fn,
                 void *user) {
    *out = NULL;
    mend_idp *x = NULL;
    int rc = mend_idp_open(&x, m, bank_dir);
    if (rc) return rc;
    mend_bank_info bi;
    mend_bank_get_info(mend_idp_bank(x), &bi);
    mend_check_trained_on(m, model_path, 1, bank_dir, &bi.trained_on, fn, user);
    int l0 = -1, l1 = -1;
    if (layers && mend_select_parse_layers(layers, &l0, &l1))
        rc = mend_set_error(MEND_EINVAL, "--select-layers: %s", mend_last_error());
    if (!rc) rc = add_list(x, select ? select : bi.default_selector, l0, l1, max_tokens);
    if (!rc && mend_idp_n_sel(x) == 0) rc = mend_set_error(MEND_EINVAL, "--select: no selector given");
    if (!rc) rc = mend_idp_start(x, per_prompt);
    if (rc) {
        mend_idp_close(x);
        return rc;
    }
    *out = x;
    return 0;
}
