/* Inference-time dynamic prompting over a prompt bank (include/mend/idp.h):
 * every selector's pick per input, examples scored under the first
 * selector's pick (grouped by prompt when batched), the selection record of
 * each results line and the choice histograms. Perplexity: ppl.c. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idp/idp_impl.h"
#include "eval/tasks.h"
#include "util/util.h"

const mend_bank *mend_idp_bank(const mend_idp *x) { return x->bank; }
const char *mend_idp_label(const mend_idp *x) { return x->label; }
int mend_idp_per_prompt(const mend_idp *x) { return x->per_prompt; }
int mend_idp_n_sel(const mend_idp *x) { return x->n_sel; }
const char *mend_idp_sel_name(const mend_idp *x, int j) { return j >= 0 && j < x->n_sel ? x->names[j] : "?"; }
const float *mend_idp_prompt(const mend_idp *x, int k) { return k >= 0 && k < x->K ? x->bank->p[k].emb : NULL; }
int mend_idp_nv(const mend_idp *x) { return x->bank->nv; }
const char *mend_idp_prompt_name(const mend_idp *x, int k) {
    return k >= 0 && k < x->K ? x->bank->p[k].name : "none";
}

size_t mend_idp_kv_bytes(const mend_idp *x) {
    size_t t = 0;
    for (int j = 0; j < x->n_sel; j++) t += mend_selector_kv_bytes(x->sel[j]);
    return t;
}

void mend_idp_close(mend_idp *x) {
    if (!x) return;
    for (int j = 0; j < x->n_sel; j++) {
        mend_selector_free(x->sel[j]);
        free(x->names[j]);
    }
    if (x->be)
        for (int k = 0; k <= x->K; k++) mend_eval_backend_free(x->be[k]);
    free(x->be);
    free(x->scores);
    free(x->bscores);
    free(x->pp_acc);
    free(x->pp_acc_norm);
    free(x->pp_ll);
    for (int t = 0; t < x->n_hist; t++) free(x->hist[t].count);
    mend_bank_free(x->bank);
    free(x);
}

int mend_idp_open(mend_idp **out, const mend_model *m, const char *bank_dir) {
    if (!out || !m || !bank_dir) return mend_set_error(MEND_EINVAL, "idp: model and bank directory are required");
    *out = NULL;
    mend_idp *x = calloc(1, sizeof *x);
    if (!x) return mend_set_error(MEND_ENOMEM, "idp: out of memory");
    x->m = m;
    x->oracle = -2;
    mend_model_info info;
    mend_model_get_info(m, &info);
    int rc = mend_bank_read(bank_dir, &x->bank);
    if (!rc) rc = mend_bank_load_prompts(x->bank, info.dim);
    if (rc) {
        mend_idp_close(x);
        return rc;
    }
    x->K = x->bank->n;
    *out = x;
    return 0;
}

int mend_idp_add_selector(mend_idp *x, const char *name, const mend_select_spec *spec) {
    if (x->started) return mend_set_error(MEND_EINVAL, "idp: selectors are added before mend_idp_start");
    if (x->n_sel >= MEND_IDP_MAX_SEL)
        return mend_set_error(MEND_ERANGE, "idp: at most %d selectors", MEND_IDP_MAX_SEL);
    char *nm = mend_strdup(name ? name : mend_select_kind_name(spec->kind));
    if (!nm) return mend_set_error(MEND_ENOMEM, "idp: out of memory");
    int rc = mend_selector_new(&x->sel[x->n_sel], x->m, x->bank, spec);
    if (rc) {
        free(nm);
        return rc;
    }
    x->names[x->n_sel] = nm;
    x->spec[x->n_sel] = *spec;
    if (x->spec[x->n_sel].max_tokens <= 0) x->spec[x->n_sel].max_tokens = 512;
    x->n_sel++;
    return 0;
}

int mend_idp_start(mend_idp *x, int per_prompt) {
    if (x->n_sel == 0) return mend_set_error(MEND_EINVAL, "idp: no selector given");
    if (x->started) return 0;
    x->per_prompt = per_prompt || x->spec[0].kind == MEND_SELECT_ORACLE;
    x->scores = calloc((size_t)x->n_sel * x->K, sizeof *x->scores);
    x->pp_acc = calloc((size_t)x->K + 1, sizeof(double));
    x->pp_acc_norm = calloc((size_t)x->K + 1, sizeof(double));
    x->pp_ll = calloc((size_t)x->K + 1, sizeof(double));
    x->bscores = calloc((size_t)MEND_IDP_BATCH * x->n_sel * x->K, sizeof(float));
    if (!x->scores || !x->pp_acc || !x->pp_acc_norm || !x->pp_ll || !x->bscores)
        return mend_set_error(MEND_ENOMEM, "idp: out of memory");
    char bn[128];
    snprintf(x->label, sizeof x->label, "%s:%s", mend_basename(x->bank->dir, bn, sizeof bn), x->names[0]);
    x->started = 1;
    return 0;
}

static int need_started(const mend_idp *x) {
    return x->started ? 0 : mend_set_error(MEND_EINVAL, "idp: call mend_idp_start first");
}

int mend_idp_pick_all(mend_idp *x, const int32_t *tokens, int n, int *choice) {
    int rc = need_started(x);
    for (int j = 0; j < x->n_sel && !rc; j++) {
        float *sc = x->scores + (size_t)j * x->K;
        if (x->spec[j].kind == MEND_SELECT_ORACLE) {
            choice[j] = -2;
            for (int k = 0; k < x->K; k++) sc[k] = NAN;
            continue;
        }
        double t0 = mend_now();
        rc = mend_selector_pick(x->sel[j], tokens, n, &choice[j], sc);
        x->sel_time[j] += mend_now() - t0;
        x->sel_tokens[j] += n < x->spec[j].max_tokens ? n : x->spec[j].max_tokens;
    }
    return rc;
}

int mend_idp_eval_setup(mend_idp *x, int window, int max_batch) {
    int rc = need_started(x);
    if (rc) return rc;
    if (x->be) return mend_set_error(MEND_EINVAL, "idp: the scorers are already set up");
    x->be = calloc((size_t)x->K + 1, sizeof *x->be);
    if (!x->be) return mend_set_error(MEND_ENOMEM, "idp: out of memory");
    for (int k = -1; k < x->K; k++) {
        rc = mend_eval_backend_model(&x->be[k + 1], x->m, k < 0 ? NULL : x->bank->p[k].emb, k < 0 ? 0 : x->bank->nv,
                                     window, max_batch);
        if (rc) return rc;
    }
    /* one window for every backend: the smallest (the prompted ones lose nv positions) */
    int w = x->be[0]->window;
    for (int k = 1; k <= x->K; k++)
        if (x->be[k]->window < w) w = x->be[k]->window;
    for (int k = 0; k <= x->K; k++) x->be[k]->window = w;
    return 0;
}

int mend_idp_eval_window(const mend_idp *x) { return x->be ? x->be[0]->window : 0; }

static int need_scorers(const mend_idp *x) {
    return x->be ? 0 : mend_set_error(MEND_EINVAL, "idp: call mend_idp_eval_setup first");
}

/* The text a selector sees: the example's context (for schema tasks, the
 * first context option followed by the shared continuation: no label). */
static int example_text(const mend_task *t, size_t i, char **text) {
    const mend_task_ex *e = &t->ex[i];
    if (t->kind == MEND_TASK_SCHEMA) {
        const char *a = e->n_options > 0 ? e->options[0] : "", *b = e->continuation ? e->continuation : "";
        size_t la = strlen(a), lb = strlen(b);
        *text = malloc(la + lb + 2);
        if (!*text) return mend_set_error(MEND_ENOMEM, "idp: out of memory");
        memcpy(*text, a, la);
        (*text)[la] = ' ';
        memcpy(*text + la + 1, b, lb + 1);
        return 0;
    }
    *text = mend_strdup(e->context ? e->context : "");
    return *text ? 0 : mend_set_error(MEND_ENOMEM, "idp: out of memory");
}

static idp_task_hist *hist_for(mend_idp *x, const char *task) {
    for (int t = 0; t < x->n_hist; t++)
        if (!strcmp(x->hist[t].name, task)) return &x->hist[t];
    if (x->n_hist >= IDP_MAX_TASKS) return NULL;
    idp_task_hist *h = &x->hist[x->n_hist];
    h->count = calloc((size_t)x->n_sel * (x->K + 1), sizeof *h->count);
    if (!h->count) return NULL;
    snprintf(h->name, sizeof h->name, "%s", task);
    x->n_hist++;
    return h;
}

/* The tokens a selector sees for example i of t (malloc'd, n >= 1). */
static int example_tokens(mend_idp *x, const mend_task *t, size_t i, int32_t **ids, size_t *n_ids) {
    char *text = NULL;
    *ids = NULL;
    *n_ids = 0;
    if (i >= t->n) return mend_set_error(MEND_ERANGE, "%s: no example %zu (the task holds %zu)", t->path, i, t->n);
    int rc = example_text(t, i, &text);
    if (rc) return rc;
    const mend_eval_backend *b0 = x->be[0];
    rc = b0->tokenize(b0->user, text, strlen(text), ids, n_ids);
    free(text);
    if (rc) return rc;
    if (*n_ids == 0) {   /* an empty context: the conditioning token */
        free(*ids);
        *ids = malloc(sizeof **ids);
        if (!*ids) return mend_set_error(MEND_ENOMEM, "idp: out of memory");
        (*ids)[0] = b0->prefix_token;
        *n_ids = 1;
    }
    return 0;
}

/* Every selector's pick for example i of t (choice: n_sel entries). */
static int pick_example(mend_idp *x, const mend_task *t, size_t i, int *choice) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = example_tokens(x, t, i, &ids, &n_ids);
    if (!rc) rc = mend_idp_pick_all(x, ids, (int)n_ids, choice);
    free(ids);
    return rc;
}

/* Every selector's picks for n examples at once (bchoice, bscores): the
 * attention selector probes many inputs per pass (mend_selector_pick_many). */
static int pick_examples(mend_idp *x, const mend_task *t, const size_t *idx, int n) {
    int32_t *ids[MEND_IDP_BATCH] = {0};
    int len[MEND_IDP_BATCH];
    int choice[MEND_IDP_BATCH];
    float *sc = malloc((size_t)MEND_IDP_BATCH * x->K * sizeof *sc);
    int rc = sc ? 0 : mend_set_error(MEND_ENOMEM, "idp: out of memory");
    for (int q = 0; q < n && !rc; q++) {
        size_t nq = 0;
        rc = example_tokens(x, t, idx[q], &ids[q], &nq);
        len[q] = (int)nq;
    }
    const size_t per = (size_t)x->n_sel * x->K;
    for (int j = 0; j < x->n_sel && !rc; j++) {
        double t0 = mend_now();
        rc = mend_selector_pick_many(x->sel[j], (const int32_t *const *)ids, len, n, choice, sc);
        x->sel_time[j] += mend_now() - t0;
        for (int q = 0; q < n && !rc; q++) {
            x->sel_tokens[j] += len[q] < x->spec[j].max_tokens ? len[q] : x->spec[j].max_tokens;
            x->bchoice[q][j] = choice[q];
            memcpy(x->bscores + (size_t)q * per + (size_t)j * x->K, sc + (size_t)q * x->K, (size_t)x->K * sizeof *sc);
        }
    }
    for (int q = 0; q < n; q++) free(ids[q]);
    free(sc);
    return rc;
}

static void count_choices(mend_idp *x, const char *task, const int *choice) {
    idp_task_hist *h = hist_for(x, task);
    if (!h) return;
    h->n++;
    for (int j = 0; j < x->n_sel; j++)
        if (choice[j] >= -1) h->count[(size_t)j * (x->K + 1) + choice[j] + 1]++;
}

int mend_idp_can_batch(const mend_idp *x) {
    if (x->per_prompt) return 0;
    for (int j = 0; j < x->n_sel; j++)
        if (x->spec[j].kind == MEND_SELECT_ORACLE) return 0;
    return 1;
}

/* Score the n examples whose first pick is in bchoice, grouped by prompt. */
static int score_grouped(mend_idp *x, const mend_task *t, const size_t *idx, int n, mend_eval_result *r,
                         mend_eval_stats *stats) {
    size_t sub[MEND_IDP_BATCH];
    int pos[MEND_IDP_BATCH];
    mend_eval_result rs[MEND_IDP_BATCH];
    int rc = 0;
    for (int k = -1; k < x->K && rc == 0; k++) {
        int m = 0;
        for (int q = 0; q < n; q++)
            if (x->bchoice[q][0] == k) sub[m] = idx[q], pos[m++] = q;
        if (m == 0) continue;
        rc = mend_eval_examples(x->be[k + 1], t, sub, m, rs, stats);
        for (int u = 0; u < m && rc == 0; u++) r[pos[u]] = rs[u];
    }
    return rc;
}

int mend_idp_eval_examples(mend_idp *x, const mend_task *t, const size_t *idx, int n, mend_eval_result *r,
                           mend_eval_stats *stats) {
    int rc = need_scorers(x);
    if (rc) return rc;
    if (n < 1 || n > MEND_IDP_BATCH || !mend_idp_can_batch(x))
        return mend_set_error(MEND_EINVAL, "idp: %d examples at once (1 to %d, no oracle, no per-prompt)", n,
                              MEND_IDP_BATCH);
    memset(r, 0, (size_t)n * sizeof *r);
    if ((rc = pick_examples(x, t, idx, n))) return rc;
    double t0 = mend_now();
    rc = score_grouped(x, t, idx, n, r, stats);
    x->score_time += mend_now() - t0;
    if (rc) {
        for (int q = 0; q < n; q++) mend_eval_result_free(&r[q]);
        return rc;
    }
    for (int q = 0; q < n; q++) count_choices(x, t->name, x->bchoice[q]);
    return 0;
}

/* Score example i with no prompt and every prompt; r gets the outcome of
 * the first selector's pick (the oracle's picks are decided here). */
static int score_per_prompt(mend_idp *x, const mend_task *t, size_t i, mend_eval_result *r, mend_eval_stats *stats) {
    mend_eval_result *all = calloc((size_t)x->K + 1, sizeof *all);
    if (!all) return mend_set_error(MEND_ENOMEM, "idp: out of memory");
    int rc = 0;
    for (int k = 0; k <= x->K && rc == 0; k++) rc = mend_eval_example(x->be[k], t, i, &all[k], stats);
    if (rc == 0) {
        x->pp_has_norm = all[0].kind == MEND_TASK_MC;
        x->pp_has_ll = all[0].kind == MEND_TASK_LM;
        for (int k = 0; k <= x->K; k++) {
            x->pp_acc[k] = all[k].kind == MEND_TASK_GEN ? all[k].em : all[k].acc;
            x->pp_acc_norm[k] = all[k].acc_norm;
            x->pp_ll[k] = all[k].ll && all[k].n > 0 ? all[k].ll[0] : NAN;
        }
        x->have_pp = 1;
        x->oracle = mend_select_oracle_pick(all + 1, x->K);
        for (int j = 0; j < x->n_sel; j++)
            if (x->choice[j] == -2) x->choice[j] = x->oracle;
        const int use = x->choice[0] + 1;
        *r = all[use];
        memset(&all[use], 0, sizeof all[use]);
    }
    for (int k = 0; k <= x->K; k++) mend_eval_result_free(&all[k]);
    free(all);
    return rc;
}

int mend_idp_eval_example(mend_idp *x, const mend_task *t, size_t i, mend_eval_result *r, mend_eval_stats *stats) {
    memset(r, 0, sizeof *r);
    int rc = need_scorers(x);
    if (!rc) rc = pick_example(x, t, i, x->choice);
    if (rc) return rc;
    x->have_pp = 0;
    x->oracle = -2;
    double t0 = mend_now();
    if (x->per_prompt) rc = score_per_prompt(x, t, i, r, stats);
    else rc = mend_eval_example(x->be[x->choice[0] + 1], t, i, r, stats);
    x->score_time += mend_now() - t0;
    if (rc) return rc;
    count_choices(x, t->name, x->choice);
    return 0;
}

/* ---- the selection record of a results line ---- */

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *per_prompt_record(const mend_idp *x) {
    json_t *pp = json_object();
    for (int k = -1; k < x->K; k++) {
        json_t *e = json_object();
        json_object_set_new(e, "acc", num_or_null(x->pp_acc[k + 1]));
        if (x->pp_has_norm) json_object_set_new(e, "acc_norm", num_or_null(x->pp_acc_norm[k + 1]));
        if (x->pp_has_ll) json_object_set_new(e, "ll", num_or_null(x->pp_ll[k + 1]));
        json_object_set_new(pp, mend_idp_prompt_name(x, k), e);
    }
    return pp;
}

static int annotate_with(mend_idp *x, const int *choice, const float *scores_all, int have_pp, char **line) {
    json_error_t jerr;
    json_t *o = json_loads(*line, 0, &jerr);
    if (!o) return mend_set_error(MEND_EFORMAT, "idp: results line does not parse: %s", jerr.text);
    json_t *d = json_object();
    char bn[128];
    json_object_set_new(d, "bank", json_string(mend_basename(x->bank->dir, bn, sizeof bn)));
    json_object_set_new(d, "select", json_string(x->names[0]));
    json_object_set_new(d, "choice", json_string(mend_idp_prompt_name(x, choice[0])));
    if (x->spec[0].kind == MEND_SELECT_ORACLE) json_object_set_new(d, "analysis_only", json_true());
    json_t *picks = json_object(), *scores = json_object();
    for (int j = 0; j < x->n_sel; j++) {
        json_object_set_new(picks, x->names[j],
                            choice[j] >= -1 ? json_string(mend_idp_prompt_name(x, choice[j])) : json_null());
        json_t *a = json_array();
        for (int k = 0; k < x->K; k++) json_array_append_new(a, num_or_null(scores_all[(size_t)j * x->K + k]));
        json_object_set_new(scores, x->names[j], a);
    }
    json_object_set_new(d, "picks", picks);
    json_object_set_new(d, "scores", scores);
    if (have_pp) {
        json_object_set_new(d, "per_prompt", per_prompt_record(x));
        json_object_set_new(d, "oracle", json_string(mend_idp_prompt_name(x, x->oracle)));
    }
    json_object_set_new(o, "idp", d);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!s) return mend_set_error(MEND_ENOMEM, "idp: out of memory");
    free(*line);
    *line = s;
    return 0;
}

int mend_idp_annotate(mend_idp *x, char **line) {
    int rc = need_started(x);
    return rc ? rc : annotate_with(x, x->choice, x->scores, x->have_pp, line);
}

int mend_idp_annotate_batch(mend_idp *x, int q, char **line) {
    if (q < 0 || q >= MEND_IDP_BATCH) return mend_set_error(MEND_EINVAL, "idp: no example %d in the batch", q);
    int rc = need_started(x);
    return rc ? rc : annotate_with(x, x->bchoice[q], x->bscores + (size_t)q * x->n_sel * x->K, 0, line);
}

/* ---- the run's summary ---- */

void idp_print_prompt_header(const mend_idp *x, FILE *f, const char *lead, int n_lead) {
    fprintf(f, "%s", lead);
    for (int k = -1; k < x->K; k++) fprintf(f, " %s |", mend_idp_prompt_name(x, k));
    fprintf(f, "\n|");
    for (int k = -n_lead; k < x->K + 1; k++) fprintf(f, "---|");
    fprintf(f, "\n");
}

static void print_selector_hist(const mend_idp *x, FILE *f, int j) {
    fprintf(f, "\nselector %s%s: choices per task\n\n", x->names[j],
            x->spec[j].kind == MEND_SELECT_ORACLE ? " (uses labels: analysis only)" : "");
    idp_print_prompt_header(x, f, "| task | n |", 2);
    for (int t = 0; t < x->n_hist; t++) {
        fprintf(f, "| %s | %lld |", x->hist[t].name, (long long)x->hist[t].n);
        for (int k = -1; k < x->K; k++) fprintf(f, " %lld |", (long long)x->hist[t].count[(size_t)j * (x->K + 1) + k + 1]);
        fprintf(f, "\n");
    }
    if (x->sel_tokens[j] > 0)
        fprintf(f, "selection time %.2f s for %lld input tokens (%.1f tokens/s)\n", x->sel_time[j],
                (long long)x->sel_tokens[j], x->sel_time[j] > 0 ? x->sel_tokens[j] / x->sel_time[j] : 0.0);
}

int mend_idp_summary(const mend_idp *x, char **text) {
    size_t len = 0;
    *text = NULL;
    FILE *f = open_memstream(text, &len);
    if (!f) return mend_set_error(MEND_ENOMEM, "idp summary: out of memory");
    char b1[32];
    fprintf(f, "\nprompt bank: %s, %d prompts x %d virtual tokens; prompt KV cached by the selectors: %s\n",
            x->bank->dir, x->K, x->bank->nv, mend_fmt_bytes((double)mend_idp_kv_bytes(x), b1, sizeof b1));
    for (int j = 0; j < x->n_sel; j++) print_selector_hist(x, f, j);
    fprintf(f, "scoring time %.2f s%s\n", x->score_time,
            x->per_prompt ? " (every example scored with no prompt and with each prompt)" : "");
    if (fclose(f) || !*text) {
        free(*text);
        *text = NULL;
        return mend_set_error(MEND_ENOMEM, "idp summary: out of memory");
    }
    return 0;
}
