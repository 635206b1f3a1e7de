/* mend bank build as a job: one prompt per domain trained on the frozen
 * model (a finished adapter is kept after checking the model and length it
 * records, a partial one resumes from its checkpoint), the router centroids,
 * bank.json, the attention calibration and the learned router, all through
 * events. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs_int.h"
#include "util/util.h"

#define MAX_DOMAINS 64

void mend_bank_job_init(mend_bank_job *j) {
    memset(j, 0, sizeof *j);
    j->steps = 200;
    j->seqlen = 256;
    j->batch = 1;
    j->n_virtual = 20;
    j->eval_every = 50;
    j->val_seqs = 8;
    j->lr = 3e-3;
    j->seed = 1234;
    j->layer0 = 0;
    j->layer1 = -1;
    j->router_windows = 16;
    j->router_window = 256;
    j->learned = 1;
}

static int check_job(const mend_bank_job *j) {
    if (!j->model || !*j->model) return mend_set_error(MEND_EINVAL, "bank job: model is not set");
    if (!j->out || !*j->out) return mend_set_error(MEND_EINVAL, "bank job: out is not set");
    if (j->n_domains < 1 || !j->names || !j->corpora)
        return mend_set_error(MEND_EINVAL, "bank job: names, corpora: no domain given (n_domains %d)", j->n_domains);
    if (j->n_domains > MAX_DOMAINS)
        return mend_set_error(MEND_EINVAL, "bank job: n_domains %d: at most %d", j->n_domains, MAX_DOMAINS);
    for (int k = 0; k < j->n_domains; k++) {
        if (!j->names[k] || !mend_bank_name_ok(j->names[k]))
            return mend_set_error(MEND_EINVAL, "bank job: names[%d] '%s' must be 1..64 characters of [A-Za-z0-9_.-]",
                                  k, j->names[k] ? j->names[k] : "(null)");
        if (!j->corpora[k] || !*j->corpora[k]) return mend_set_error(MEND_EINVAL, "bank job: corpora[%d] is not set", k);
        for (int i = 0; i < k; i++)
            if (!strcmp(j->names[i], j->names[k]))
                return mend_set_error(MEND_EINVAL, "bank job: names[%d]: domain '%s' given twice", k, j->names[k]);
    }
    if (j->teacher && j->no_distill)
        return mend_set_error(MEND_EINVAL, "bank job: teacher and no_distill: give one, not both");
#define AT_LEAST(f, lo)                                                                              \
    if (j->f < (lo)) return mend_set_error(MEND_EINVAL, "bank job: " #f " %d: at least %d", (int)j->f, (int)(lo));
    AT_LEAST(steps, 1)
    AT_LEAST(seqlen, 2)
    AT_LEAST(batch, 1)
    AT_LEAST(n_virtual, 1)
    AT_LEAST(eval_every, 0)
    AT_LEAST(val_seqs, 0)
    AT_LEAST(layer0, 0)
    AT_LEAST(router_windows, 1)
    AT_LEAST(router_window, 2)
    AT_LEAST(learned_windows, 0)
    AT_LEAST(learned_window, 0)
#undef AT_LEAST
    if (j->learned_window == 1) return mend_set_error(MEND_EINVAL, "bank job: learned_window 1: at least 2 (0: default)");
    if (j->layer1 >= 0 && j->layer1 <= j->layer0)
        return mend_set_error(MEND_EINVAL, "bank job: layer0 %d, layer1 %d: layer1 must be above layer0 (or < 0: the "
                              "default)", j->layer0, j->layer1);
    if (!(j->lr > 0) || !isfinite(j->lr)) return mend_set_error(MEND_EINVAL, "bank job: lr %g: a positive number", j->lr);
    return 0;
}

/* ---- the trained selectors ---- */

static const char *prompt_name(const mend_bank *b, int k) {
    mend_bank_prompt_info pi;
    return mend_bank_get_prompt(b, k, &pi) ? "?" : pi.name;
}

typedef struct router_cb {
    mend_event_fn fn;
    void *user;
    int started, cancelled;
} router_cb;

static int on_router(void *user, int done, int total) {
    router_cb *c = user;
    if (!c->started) {
        c->started = 1;
        if (job_progress_start(c->fn, c->user, "router: labelled", "window", total, 0)) c->cancelled = 1;
    }
    if (!c->cancelled && job_progress(c->fn, c->user, done, NULL)) c->cancelled = 1;
    return c->cancelled;
}

/* The line "HEAD name value name value ...\n" with one pair per prompt. */
static int emit_per_prompt(mend_event_fn fn, void *user, const char *head, const mend_bank *b, int n,
                           const double *dv, const int *iv) {
    const size_t cap = strlen(head) + (size_t)n * 96 + 2;
    char *s = malloc(cap);
    if (!s) return 0;   /* out of memory: the line is lost, the job goes on */
    size_t len = (size_t)snprintf(s, cap, "%s", head);
    for (int k = 0; k < n && len < cap; k++) {
        if (dv) len += (size_t)snprintf(s + len, cap - len, " %s %.5f", prompt_name(b, k), dv[k]);
        else len += (size_t)snprintf(s + len, cap - len, " %s %d", prompt_name(b, k), iv[k]);
    }
    int r = job_emit(fn, user, MEND_EV_TEXT, "%s\n", s);
    free(s);
    return r;
}

int mend_bank_selectors_add(const char *bank_dir, const mend_model *m, const char *const *texts, const size_t *lens,
                            int n_texts, int calibrate, const mend_router_opts *ro, mend_event_fn fn, void *user) {
    if (!bank_dir || !m || !texts || !lens || n_texts < 1)
        return mend_set_error(MEND_EINVAL, "bank selectors: %s", !bank_dir ? "bank_dir is not set" : !m ? "no model"
                              : "no corpus given");
    mend_bank *b = NULL;
    mend_model_info info;
    mend_model_get_info(m, &info);
    int rc = mend_bank_read(bank_dir, &b);
    if (!rc) rc = mend_bank_load_prompts(b, info.dim);
    if (rc) {
        mend_bank_free(b);
        return mend_error_prefix(rc, "%s", bank_dir);
    }
    mend_bank_info bi;
    mend_bank_get_info(b, &bi);
    double t0 = mend_now();
    if (calibrate) {
        if ((rc = mend_select_calibrate(m, b, texts, lens, n_texts, 16, 128))) {
            mend_error_prefix(rc, "attention calibration");
            goto done;
        }
        mend_bank_get_info(b, &bi);
        char head[160];
        snprintf(head, sizeof head, "attention calibration: %d windows, layers %d:%d, %.1f s; mean score per prompt:",
                 bi.attn_windows, bi.attn_layer0, bi.attn_layer1, mend_now() - t0);
        double off[MEND_BANK_MAX_PROMPTS];
        for (int k = 0; k < bi.n_prompts && k < MEND_BANK_MAX_PROMPTS; k++) off[k] = bi.attn_offsets[k];
        if (emit_per_prompt(fn, user, head, b, bi.n_prompts, off, NULL)) {
            rc = job_cancelled("bank selectors");
            goto done;
        }
    }
    if (ro) {
        mend_router_stats st;
        mend_learned_router *r = NULL;
        router_cb cb = {.fn = fn, .user = user};
        t0 = mend_now();
        rc = mend_router_train(m, b, texts, lens, n_texts, ro, on_router, &cb, &r, &st);
        if (cb.started && job_progress_end(fn, user)) cb.cancelled = 1;
        if (cb.cancelled) {
            if (!rc) mend_learned_router_free(r);
            rc = job_cancelled("bank selectors");
            goto done;
        }
        if (rc) {
            mend_error_prefix(rc, "learned router");
            goto done;
        }
        mend_bank_set_learned_router(b, r);
        if (job_emit(fn, user, MEND_EV_TEXT, "learned router: %d windows of %d tokens (%d trained, %d held out) in "
                     "%.1f s\n", st.n_windows, ro->window, st.n_train, st.n_heldout, mend_now() - t0) ||
            job_emit(fn, user, MEND_EV_TEXT, "agreement with the loss selector: train %.4f, held out %.4f\n",
                     st.train_acc, st.heldout_acc) ||
            emit_per_prompt(fn, user, "loss selector's picks (labels):", b, bi.n_prompts, NULL, st.label_hist)) {
            rc = job_cancelled("bank selectors");
            goto done;
        }
    }
    if ((rc = mend_bank_write(bank_dir, b))) mend_error_prefix(rc, "bank.json");
    else if (ro) job_emit(fn, user, MEND_EV_TEXT, "wrote %s/%s with the learned router\n", bank_dir, MEND_BANK_FILE);
done:
    mend_bank_free(b);
    return rc;
}

/* ---- one domain's prompt ---- */

typedef struct dom_cb {
    mend_event_fn fn;
    void *user;
    char tag[96];        /* "[k/K name]", the counter's label */
    int counting, cancelled;
    int zero;            /* a resumed prompt's first step: the counter's 0 */
} dom_cb;

static int on_dom_info(void *user, const mend_tune_info *in) {
    dom_cb *c = user;
    if (job_emit(c->fn, c->user, MEND_EV_NOTE, "%s %d paragraphs (%d held out), %lld training tokens in %d "
                 "sequences, %d validation sequences", c->tag, in->n_paragraphs, in->n_val_paragraphs,
                 (long long)in->n_train_tokens, in->n_train_seqs, in->n_val_seqs))
        c->cancelled = 1;
    return c->cancelled;
}

/* A counter over the domain's steps; an item every 10 steps, at each
 * validation and at the last step ("[50]2.3456 val 2.1234 (best 2.1234 @50),"). */
static int on_dom_step(void *user, const mend_tune_progress *p) {
    dom_cb *c = user;
    if (!c->counting) {
        /* a resumed prompt's first step is the counter's zero (its time was
         * not seen), as in mend tune */
        c->counting = 1;
        c->zero = p->resumed_from > 0 ? p->step : 0;
        if (job_progress_start(c->fn, c->user, c->tag, "step", p->steps - c->zero, 5)) c->cancelled = 1;
    }
    if (c->cancelled) return 1;
    char item[160];
    const char *it = NULL;
    if (p->step == 0) {
        if (p->evaluated) {
            snprintf(item, sizeof item, "[0]val %.4f,", p->val_loss);
            it = item;
        }
    } else if (p->evaluated || p->step % 10 == 0 || p->step == p->steps) {
        int n = snprintf(item, sizeof item, "[%d]%.4f", p->step, p->loss);
        if (p->evaluated)
            n += snprintf(item + n, sizeof item - (size_t)n, " val %.4f (best %.4f @%d)", p->val_loss, p->best_val,
                          p->best_step);
        snprintf(item + n, sizeof item - (size_t)n, ",");
        it = item;
    }
    if (job_progress(c->fn, c->user, p->step - c->zero, it)) c->cancelled = 1;
    return c->cancelled;
}

/* What bank.json records of one domain's prompt. */
typedef struct dom_result {
    int steps;          /* -1: unknown */
    double best_val;    /* NaN: unknown */
    float *centroid;    /* dim floats */
} dom_result;

int mend_bank_build_run(const mend_bank_job *j, mend_event_fn fn, void *user) {
    if (!j) return mend_set_error(MEND_EINVAL, "bank job: no job given");
    int rc = check_job(j);
    if (rc) return rc;
    const int n_dom = j->n_domains, nv = j->n_virtual;
    const char *model_path = j->model, *out_dir = j->out;
    char model_base[256];
    mend_basename(model_path, model_base, sizeof model_base);
    job_train_inputs in = {0};
    mend_bank *bank = NULL;
    char *ad = NULL;
    dom_result *bp = calloc((size_t)n_dom, sizeof *bp);
    char **texts = calloc((size_t)n_dom, sizeof *texts);
    size_t *lens = calloc((size_t)n_dom, sizeof *lens);
    if (!bp || !texts || !lens) {
        rc = mend_set_error(MEND_ENOMEM, "bank build: out of memory");
        goto out;
    }
    /* corpora first: a bad path fails before the model loads */
    for (int k = 0; k < n_dom; k++)
        if ((rc = mend_read_file(j->corpora[k], (size_t)1 << 31, &texts[k], &lens[k]))) {
            mend_error_prefix(rc, "%s", j->corpora[k]);
            goto out;
        }
    if ((rc = mend_mkdir_p(out_dir))) {
        mend_error_prefix(rc, "%s", out_dir);
        goto out;
    }
    if ((rc = job_train_inputs_load(&in, model_path, j->teacher, j->no_distill, j->models_dir, j->init_adapter, fn,
                                    user)))
        goto out;
    const mend_model *m = in.m, *teacher = in.teacher;
    const char *teacher_path = in.teacher_path;
    const float *start = in.start;
    const int64_t start_tokens = in.start_tokens;
    const mend_model_info info = in.info;
    if (j->init_adapter && in.start_nv != nv) {
        rc = mend_set_error(MEND_EINVAL, "init_adapter %s has %d virtual tokens, the bank %d (n_virtual, "
                            "--n-virtual)", j->init_adapter, in.start_nv, nv);
        goto out;
    }
    int l0 = j->layer0, l1 = j->layer1;
    if (l1 < 0) l1 = info.n_layers < 3 ? info.n_layers : 3;   /* the default, or all layers of a shallow model */
    if (l1 > info.n_layers || l0 >= l1) {
        rc = mend_set_error(MEND_EINVAL, "selector layers %d:%d (layer0, layer1; --select-layers): the model has %d "
                            "layers", l0, l1, info.n_layers);
        goto out;
    }
    mend_fp mfp;   /* recorded in bank.json (every adapter records it too) */
    if ((rc = mend_model_fingerprint(m, &mfp))) {
        mend_error_prefix(rc, "%s", model_path);
        goto out;
    }
    if (job_emit(fn, user, MEND_EV_TEXT, "model:  %s (%d layers, dim %d)\n", model_path, info.n_layers, info.dim) ||
        job_emit(fn, user, MEND_EV_TEXT, "bank:   %s, %d prompts of %d virtual tokens; %d steps x %d x %d tokens, "
                 "lr %g\n", out_dir, n_dom, nv, j->steps, j->batch, j->seqlen, j->lr) ||
        job_emit(fn, user, MEND_EV_TEXT, "objective: %s%s; start: %s\n",
                 teacher_path ? "KL(teacher || model + prompt), teacher " : "next-token cross-entropy",
                 teacher_path ? teacher_path : "", j->init_adapter ? j->init_adapter : "sampled vocabulary")) {
        rc = job_cancelled("bank build");
        goto out;
    }
    const double t_all = mend_now();
    for (int k = 0; k < n_dom; k++) {
        const char *name = j->names[k];
        dom_result *p = &bp[k];
        p->steps = -1;
        p->best_val = NAN;
        ad = mend_path_join(out_dir, name);
        char *st = ad ? mend_path_join(ad, "adapter_model.safetensors") : NULL;
        if (!ad || !st) {
            free(st);
            rc = mend_set_error(MEND_ENOMEM, "bank build: out of memory");
            goto out;
        }
        const int finished = mend_file_exists(st);
        free(st);
        dom_cb cb = {.fn = fn, .user = user};
        snprintf(cb.tag, sizeof cb.tag, "[%d/%d %s]", k + 1, n_dom, name);
        if (finished) {
            if (job_emit(fn, user, MEND_EV_NOTE, "%s adapter present in %s: skipped", cb.tag, ad)) {
                rc = job_cancelled("bank build");
                goto out;
            }
            float *e = NULL;
            int got = 0;
            mend_fp rec;
            if ((rc = mend_adapter_read_fp(ad, info.dim, &e, &got, &rec))) {
                mend_error_prefix(rc, "existing adapter");
                goto out;
            }
            free(e);
            if (mend_fp_compare(&mfp, &rec) != MEND_FP_SAME) {
                char a[64], b[64];
                rc = mend_set_error(MEND_EINVAL, "%s was trained on model fingerprint %s, this model is %s: remove it "
                                    "to train it for this model", ad, mend_fp_describe(&rec, a, sizeof a),
                                    mend_fp_describe(&mfp, b, sizeof b));
                goto out;
            }
            if (got != nv) {
                rc = mend_set_error(MEND_EINVAL, "%s holds %d virtual tokens, this build uses %d: remove it or pass "
                                    "--n-virtual %d", ad, got, nv, got);
                goto out;
            }
            p->steps = j->steps;
        } else {
            mend_tune_opts o;
            mend_tune_opts_default(&o);
            o.n_virtual = nv;
            o.seqlen = j->seqlen;
            o.batch = j->batch;
            o.steps = j->steps;
            o.lr = j->lr;
            o.seed = j->seed + (uint64_t)k;
            o.val_seqs = j->val_seqs;
            o.eval_every = j->eval_every;
            o.ckpt_every = j->eval_every > 0 ? j->eval_every : 50;
            o.resume = 1;
            o.out_dir = ad;
            o.base_model = model_base;
            if (teacher) o.objective = MEND_TUNE_KL;
            if (start) {
                o.init = MEND_TUNE_INIT_PROMPT;
                o.init_prompt = start;
                o.start_tokens = start_tokens;
            }
            const char *tx = texts[k];
            mend_tune_result res;
            const double t0 = mend_now();
            rc = mend_tune_run(m, teacher, &tx, &lens[k], 1, &o, on_dom_info, on_dom_step, &cb, &res);
            if (cb.counting && job_progress_end(fn, user)) cb.cancelled = 1;
            if (cb.cancelled) {
                rc = job_cancelled("bank build");
                goto out;
            }
            if (rc) {
                mend_error_prefix(rc, "%s", name);
                goto out;
            }
            if (job_emit(fn, user, MEND_EV_NOTE, "%s done: %d steps, best val %.4f at step %d (first %.4f), %.1f s",
                         cb.tag, res.steps_done, res.best_val, res.best_step, res.first_val, mend_now() - t0)) {
                rc = job_cancelled("bank build");
                goto out;
            }
            p->steps = res.steps_done;
            p->best_val = res.best_val;
        }
        free(ad);
        ad = NULL;
        /* router centroid of the domain (the model without any prompt) */
        p->centroid = malloc((size_t)info.dim * sizeof(float));
        int used = 0;
        if (!p->centroid) {
            rc = mend_set_error(MEND_ENOMEM, "router centroid: out of memory");
            goto out;
        }
        if ((rc = mend_select_centroid(m, texts[k], lens[k], j->router_windows, j->router_window, p->centroid,
                                       &used))) {
            mend_error_prefix(rc, "router centroid");
            goto out;
        }
        if (job_emit(fn, user, MEND_EV_NOTE, "%s router centroid from %d windows of %d tokens", cb.tag, used,
                     j->router_window)) {
            rc = job_cancelled("bank build");
            goto out;
        }
    }
    if ((rc = mend_bank_new(&bank, info.dim, nv, model_base, &mfp, l0, l1))) {
        mend_error_prefix(rc, "bank.json");
        goto out;
    }
    mend_bank_set_router_tokens(bank, j->router_windows * j->router_window);
    for (int k = 0; k < n_dom; k++) {
        int at = mend_bank_add_prompt(bank, j->names[k], j->names[k], j->names[k], j->corpora[k], bp[k].steps,
                                      bp[k].best_val, bp[k].centroid);
        if (at < 0) {
            rc = mend_error_prefix(at, "bank.json");
            goto out;
        }
    }
    if ((rc = mend_bank_write(out_dir, bank))) {
        mend_error_prefix(rc, "bank.json");
        goto out;
    }
    if (job_emit(fn, user, MEND_EV_TEXT, "wrote %s/%s (%d prompts) in %.1f s\n", out_dir, MEND_BANK_FILE, n_dom,
                 mend_now() - t_all)) {
        rc = job_cancelled("bank build");
        goto out;
    }
    mend_router_opts ro;
    mend_router_opts_default(&ro);
    if (j->learned_windows > 0) ro.n_windows = j->learned_windows;
    if (j->learned_window > 0) ro.window = j->learned_window;
    rc = mend_bank_selectors_add(out_dir, m, (const char *const *)texts, lens, n_dom, 1, j->learned ? &ro : NULL, fn,
                                 user);
out:
    free(ad);
    mend_bank_free(bank);
    if (bp)
        for (int k = 0; k < n_dom; k++) free(bp[k].centroid);
    free(bp);
    if (texts)
        for (int k = 0; k < n_dom; k++) free(texts[k]);
    free(texts);
    free(lens);
    job_train_inputs_free(&in);
    return rc;
}
