/* --bank / --select for the CLI (see idp.h). */
#include "cli/idp.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval/ppl.h"
#include "prompt/select.h"
#include "util/util.h"

#define IDP_MAX_TASKS 64

typedef struct task_hist {
    char name[128];
    int64_t n;
    int64_t *count;         /* (n_sel, K + 1): [j][k + 1], k = -1 none */
} task_hist;

struct cli_idp {
    const mend_model *m;
    mend_bank *bank;
    int K, per_prompt, n_sel;
    char label[256];
    char *names[CLI_IDP_MAX_SEL];
    mend_select_spec spec[CLI_IDP_MAX_SEL];
    mend_selector *sel[CLI_IDP_MAX_SEL];
    double sel_time[CLI_IDP_MAX_SEL];
    int64_t sel_tokens[CLI_IDP_MAX_SEL];
    mend_eval_backend **be;     /* K + 1: [0] none, [k + 1] prompt k */
    double score_time;
    /* last example */
    int choice[CLI_IDP_MAX_SEL];
    float *scores;              /* (n_sel, K) */
    int have_pp;
    double *pp_acc, *pp_acc_norm, *pp_ll;   /* (K + 1) */
    int pp_has_norm, pp_has_ll;
    int oracle;                 /* oracle's pick (-1 none), or -2 when not computed */
    task_hist hist[IDP_MAX_TASKS];
    int n_hist;
    /* examples of the last cli_idp_eval_examples call: choices and scores */
    int bchoice[CLI_IDP_BATCH][CLI_IDP_MAX_SEL];
    float *bscores;             /* (CLI_IDP_BATCH, n_sel, K) */
};

const mend_bank *cli_idp_bank(const cli_idp *x) { return x->bank; }
const char *cli_idp_label(const cli_idp *x) { return x->label; }
int cli_idp_per_prompt(const cli_idp *x) { return x->per_prompt; }
int cli_idp_n_sel(const cli_idp *x) { return x->n_sel; }
const char *cli_idp_sel_name(const cli_idp *x, int j) { return j >= 0 && j < x->n_sel ? x->names[j] : "?"; }
const float *cli_idp_prompt(const cli_idp *x, int k) { return k >= 0 && k < x->K ? x->bank->p[k].emb : NULL; }
int cli_idp_nv(const cli_idp *x) { return x->bank->nv; }
const char *cli_idp_prompt_name(const cli_idp *x, int k) {
    return k >= 0 && k < x->K ? x->bank->p[k].name : "none";
}

size_t cli_idp_kv_bytes(const cli_idp *x) {
    size_t t = 0;
    for (int j = 0; j < x->n_sel; j++) t += mend_selector_kv_bytes(x->sel[j]);
    return t;
}

void cli_idp_close(cli_idp *x) {
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

int cli_idp_open(cli_idp **out, const char *cmd, const mend_model *m, const char *model_path, const char *bank_dir,
                 const char *select,
                 const char *layers, int max_tokens, int per_prompt) {
    *out = NULL;
    cli_idp *x = calloc(1, sizeof *x);
    if (!x) {
        fprintf(stderr, "mend %s: out of memory\n", cmd);
        return CLI_EXIT_ERROR;
    }
    x->m = m;
    x->oracle = -2;
    mend_model_info info;
    mend_model_get_info(m, &info);
    if (mend_bank_read(bank_dir, &x->bank) || mend_bank_load_prompts(x->bank, info.dim)) {
        cli_idp_close(x);
        return cli_fail(cmd, bank_dir);
    }
    cli_check_trained_on(cmd, m, model_path, 1, bank_dir, &x->bank->trained_on);
    x->K = x->bank->n;
    int l0 = -1, l1 = -1;
    if (layers && mend_select_parse_layers(layers, &l0, &l1)) {
        cli_idp_close(x);
        return cli_usage_error(cmd, "--select-layers: %s", mend_last_error());
    }
    const char *s = select ? select : x->bank->default_selector;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (x->n_sel >= CLI_IDP_MAX_SEL) {
            cli_idp_close(x);
            return cli_usage_error(cmd, "--select: at most %d selectors", CLI_IDP_MAX_SEL);
        }
        char *nm = mend_strndup(s, len);
        x->names[x->n_sel] = nm;
        mend_select_spec *sp = &x->spec[x->n_sel];
        if (!nm || mend_select_parse(nm, x->bank, sp)) {
            int rc = cli_usage_error(cmd, "--select: %s", mend_last_error());
            x->n_sel++;
            cli_idp_close(x);
            return rc;
        }
        x->n_sel++;
        if (l0 >= 0) {
            sp->layer0 = l0;
            sp->layer1 = l1;
        }
        if (max_tokens > 0) sp->max_tokens = max_tokens;
        if (mend_selector_new(&x->sel[x->n_sel - 1], m, x->bank, sp)) {
            int rc = cli_fail(cmd, nm);
            cli_idp_close(x);
            return rc;
        }
        if (!e) break;
        s = e + 1;
    }
    if (x->n_sel == 0) {
        cli_idp_close(x);
        return cli_usage_error(cmd, "--select: no selector given");
    }
    x->per_prompt = per_prompt || x->spec[0].kind == MEND_SELECT_ORACLE;
    x->scores = calloc((size_t)x->n_sel * x->K, sizeof *x->scores);
    x->pp_acc = calloc((size_t)x->K + 1, sizeof(double));
    x->pp_acc_norm = calloc((size_t)x->K + 1, sizeof(double));
    x->pp_ll = calloc((size_t)x->K + 1, sizeof(double));
    x->bscores = calloc((size_t)CLI_IDP_BATCH * x->n_sel * x->K, sizeof(float));
    if (!x->scores || !x->pp_acc || !x->pp_acc_norm || !x->pp_ll || !x->bscores) {
        cli_idp_close(x);
        fprintf(stderr, "mend %s: out of memory\n", cmd);
        return CLI_EXIT_ERROR;
    }
    char bn[128];
    snprintf(x->label, sizeof x->label, "%s:%s", cli_base_name(bank_dir, bn, sizeof bn), x->names[0]);
    *out = x;
    return 0;
}

int cli_idp_pick_all(cli_idp *x, const int32_t *tokens, int n, int *choice) {
    for (int j = 0; j < x->n_sel; j++) {
        float *sc = x->scores + (size_t)j * x->K;
        if (x->spec[j].kind == MEND_SELECT_ORACLE) {
            choice[j] = -2;
            for (int k = 0; k < x->K; k++) sc[k] = NAN;
            continue;
        }
        double t0 = mend_now();
        int rc = mend_selector_pick(x->sel[j], tokens, n, &choice[j], sc);
        x->sel_time[j] += mend_now() - t0;
        x->sel_tokens[j] += n < x->spec[j].max_tokens ? n : x->spec[j].max_tokens;
        if (rc) return rc;
    }
    return 0;
}

int cli_idp_eval_setup(cli_idp *x, int window, int max_batch) {
    x->be = calloc((size_t)x->K + 1, sizeof *x->be);
    if (!x->be) return mend_set_error(MEND_ENOMEM, "idp: out of memory");
    for (int k = -1; k < x->K; k++) {
        int rc = mend_eval_backend_model(&x->be[k + 1], x->m, k < 0 ? NULL : x->bank->p[k].emb, k < 0 ? 0 : x->bank->nv,
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

const mend_eval_backend *cli_idp_backend(const cli_idp *x, int k) {
    return x->be && k >= -1 && k < x->K ? x->be[k + 1] : NULL;
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

static task_hist *hist_for(cli_idp *x, const char *task) {
    for (int t = 0; t < x->n_hist; t++)
        if (!strcmp(x->hist[t].name, task)) return &x->hist[t];
    if (x->n_hist >= IDP_MAX_TASKS) return NULL;
    task_hist *h = &x->hist[x->n_hist];
    h->count = calloc((size_t)x->n_sel * (x->K + 1), sizeof *h->count);
    if (!h->count) return NULL;
    snprintf(h->name, sizeof h->name, "%s", task);
    x->n_hist++;
    return h;
}

/* The tokens a selector sees for example i of t (malloc'd, n >= 1). */
static int example_tokens(cli_idp *x, const mend_task *t, size_t i, int32_t **ids, size_t *n_ids) {
    char *text = NULL;
    *ids = NULL;
    *n_ids = 0;
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
static int pick_example(cli_idp *x, const mend_task *t, size_t i, int *choice) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = example_tokens(x, t, i, &ids, &n_ids);
    if (!rc) rc = cli_idp_pick_all(x, ids, (int)n_ids, choice);
    free(ids);
    return rc;
}

/* Every selector's picks for n examples at once (bchoice, bscores): the
 * attention selector probes many inputs per pass (mend_selector_pick_many). */
static int pick_examples(cli_idp *x, const mend_task *t, const size_t *idx, int n) {
    int32_t *ids[CLI_IDP_BATCH] = {0};
    int len[CLI_IDP_BATCH];
    int choice[CLI_IDP_BATCH];
    float *sc = malloc((size_t)CLI_IDP_BATCH * x->K * sizeof *sc);
    int rc = sc ? 0 : mend_set_error(MEND_ENOMEM, "idp: out of memory");
    for (int q = 0; q < n && !rc; q++) {
        size_t nq = 0;
        rc = example_tokens(x, t, idx[q], &ids[q], &nq);
        len[q] = (int)nq;
    }
    const size_t per = (size_t)x->n_sel * x->K;
    for (int j = 0; j < x->n_sel && !rc; j++) {
        if (x->spec[j].kind == MEND_SELECT_ORACLE) {
            rc = mend_set_error(MEND_EINVAL, "idp: the oracle picks per example");
            break;
        }
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

static void count_choices(cli_idp *x, const char *task, const int *choice) {
    task_hist *h = hist_for(x, task);
    if (!h) return;
    h->n++;
    for (int j = 0; j < x->n_sel; j++)
        if (choice[j] >= -1) h->count[(size_t)j * (x->K + 1) + choice[j] + 1]++;
}

int cli_idp_can_batch(const cli_idp *x) {
    if (x->per_prompt) return 0;
    for (int j = 0; j < x->n_sel; j++)
        if (x->spec[j].kind == MEND_SELECT_ORACLE) return 0;
    return 1;
}

int cli_idp_eval_examples(cli_idp *x, const mend_task *t, const size_t *idx, int n, mend_eval_result *r,
                          mend_eval_stats *stats) {
    if (n > CLI_IDP_BATCH || !cli_idp_can_batch(x))
        return mend_set_error(MEND_EINVAL, "idp: %d examples at once (at most %d, no oracle, no per-prompt)", n,
                              CLI_IDP_BATCH);
    memset(r, 0, (size_t)n * sizeof *r);
    int rc = pick_examples(x, t, idx, n);
    if (rc) return rc;
    /* the examples that chose the same prompt are scored together */
    double t0 = mend_now();
    size_t sub[CLI_IDP_BATCH];
    int pos[CLI_IDP_BATCH];
    mend_eval_result rs[CLI_IDP_BATCH];
    for (int k = -1; k < x->K && rc == 0; k++) {
        int m = 0;
        for (int q = 0; q < n; q++)
            if (x->bchoice[q][0] == k) sub[m] = idx[q], pos[m++] = q;
        if (m == 0) continue;
        rc = mend_eval_examples(x->be[k + 1], t, sub, m, rs, stats);
        for (int u = 0; u < m && rc == 0; u++) r[pos[u]] = rs[u];
    }
    x->score_time += mend_now() - t0;
    if (rc) {
        for (int q = 0; q < n; q++) mend_eval_result_free(&r[q]);
        return rc;
    }
    for (int q = 0; q < n; q++) count_choices(x, t->name, x->bchoice[q]);
    return 0;
}

int cli_idp_eval_example(cli_idp *x, const mend_task *t, size_t i, mend_eval_result *r, mend_eval_stats *stats) {
    memset(r, 0, sizeof *r);
    int rc = pick_example(x, t, i, x->choice);
    if (rc) return rc;
    x->have_pp = 0;
    x->oracle = -2;
    double t0 = mend_now();
    if (x->per_prompt) {
        mend_eval_result *all = calloc((size_t)x->K + 1, sizeof *all);
        if (!all) return mend_set_error(MEND_ENOMEM, "idp: out of memory");
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
    } else {
        rc = mend_eval_example(x->be[x->choice[0] + 1], t, i, r, stats);
    }
    x->score_time += mend_now() - t0;
    if (rc) return rc;
    count_choices(x, t->name, x->choice);
    return 0;
}

static json_t *num_or_null(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static int annotate_with(cli_idp *x, const int *choice, const float *scores_all, int have_pp, char **line);

int cli_idp_annotate(cli_idp *x, char **line) { return annotate_with(x, x->choice, x->scores, x->have_pp, line); }

int cli_idp_annotate_batch(cli_idp *x, int q, char **line) {
    if (q < 0 || q >= CLI_IDP_BATCH) return mend_set_error(MEND_EINVAL, "idp: no example %d in the batch", q);
    return annotate_with(x, x->bchoice[q], x->bscores + (size_t)q * x->n_sel * x->K, 0, line);
}

static int annotate_with(cli_idp *x, const int *choice, const float *scores_all, int have_pp, char **line) {
    json_error_t jerr;
    json_t *o = json_loads(*line, 0, &jerr);
    if (!o) return mend_set_error(MEND_EFORMAT, "idp: results line does not parse: %s", jerr.text);
    json_t *d = json_object();
    char bn[128];
    json_object_set_new(d, "bank", json_string(cli_base_name(x->bank->dir, bn, sizeof bn)));
    json_object_set_new(d, "select", json_string(x->names[0]));
    json_object_set_new(d, "choice", json_string(cli_idp_prompt_name(x, choice[0])));
    if (x->spec[0].kind == MEND_SELECT_ORACLE) json_object_set_new(d, "analysis_only", json_true());
    json_t *picks = json_object(), *scores = json_object();
    for (int j = 0; j < x->n_sel; j++) {
        json_object_set_new(picks, x->names[j],
                            choice[j] >= -1 ? json_string(cli_idp_prompt_name(x, choice[j])) : json_null());
        json_t *a = json_array();
        for (int k = 0; k < x->K; k++) json_array_append_new(a, num_or_null(scores_all[(size_t)j * x->K + k]));
        json_object_set_new(scores, x->names[j], a);
    }
    json_object_set_new(d, "picks", picks);
    json_object_set_new(d, "scores", scores);
    if (have_pp) {
        json_t *pp = json_object();
        for (int k = -1; k < x->K; k++) {
            json_t *e = json_object();
            json_object_set_new(e, "acc", num_or_null(x->pp_acc[k + 1]));
            if (x->pp_has_norm) json_object_set_new(e, "acc_norm", num_or_null(x->pp_acc_norm[k + 1]));
            if (x->pp_has_ll) json_object_set_new(e, "ll", num_or_null(x->pp_ll[k + 1]));
            json_object_set_new(pp, cli_idp_prompt_name(x, k), e);
        }
        json_object_set_new(d, "per_prompt", pp);
        json_object_set_new(d, "oracle", json_string(cli_idp_prompt_name(x, x->oracle)));
    }
    json_object_set_new(o, "idp", d);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!s) return mend_set_error(MEND_ENOMEM, "idp: out of memory");
    free(*line);
    *line = s;
    return 0;
}

void cli_idp_print_summary(const cli_idp *x, FILE *f) {
    char b1[32];
    fprintf(f, "\nprompt bank: %s, %d prompts x %d virtual tokens; prompt KV cached by the selectors: %s\n",
            x->bank->dir, x->K, x->bank->nv, cli_fmt_bytes((double)cli_idp_kv_bytes(x), b1, sizeof b1));
    for (int j = 0; j < x->n_sel; j++) {
        fprintf(f, "\nselector %s%s: choices per task\n\n| task | n |", x->names[j],
                x->spec[j].kind == MEND_SELECT_ORACLE ? " (uses labels: analysis only)" : "");
        for (int k = -1; k < x->K; k++) fprintf(f, " %s |", cli_idp_prompt_name(x, k));
        fprintf(f, "\n|---|---|");
        for (int k = -1; k < x->K; k++) fprintf(f, "---|");
        fprintf(f, "\n");
        for (int t = 0; t < x->n_hist; t++) {
            fprintf(f, "| %s | %lld |", x->hist[t].name, (long long)x->hist[t].n);
            for (int k = -1; k < x->K; k++)
                fprintf(f, " %lld |", (long long)x->hist[t].count[(size_t)j * (x->K + 1) + k + 1]);
            fprintf(f, "\n");
        }
        if (x->sel_tokens[j] > 0)
            fprintf(f, "selection time %.2f s for %lld input tokens (%.1f tokens/s)\n", x->sel_time[j],
                    (long long)x->sel_tokens[j], x->sel_time[j] > 0 ? x->sel_tokens[j] / x->sel_time[j] : 0.0);
    }
    fprintf(f, "scoring time %.2f s%s\n", x->score_time,
            x->per_prompt ? " (every example scored with no prompt and with each prompt)" : "");
}

/* ---- perplexity with per-window selection ---- */

typedef struct idp_ppl {
    cli_idp *x;
    mend_state **st;        /* K + 1: [0] none, [k + 1] prompt k at [0, nv) */
    int n_vocab, n_batch, select_tokens;
    float *logits;
    double *buf;            /* (K + 1, n_ctx) nll of each backend for the window */
    double *row_nll;        /* rows: K + 1 backends, n_sel selectors, oracle */
    double *row_nll2;       /* the same rows' sums of squared token nll (for the +/-) */
    int64_t row_n;
    int64_t *hist;          /* (n_sel + 1, K + 1): selectors, then oracle */
    int n_windows;
    double sel_time, score_time;
} idp_ppl;

static int ppl_score_one(idp_ppl *pp, int b, const int32_t *win, int n, int first, double *nll) {
    mend_state *s = pp->st[b];
    const int P = b == 0 ? 0 : pp->x->bank->nv, V = pp->n_vocab;
    int pos = 0, rc;
    while (pos < first) {
        int nb = first - pos < pp->n_batch ? first - pos : pp->n_batch;
        if ((rc = mend_forward(s, win + pos, NULL, nb, P + pos, NULL, 0))) return rc;
        pos += nb;
    }
    while (pos < n - 1) {
        int nb = n - 1 - pos < pp->n_batch ? n - 1 - pos : pp->n_batch;
        if ((rc = mend_forward(s, win + pos, NULL, nb, P + pos, pp->logits, 1))) return rc;
#pragma omp parallel for schedule(static)
        for (int j = 0; j < nb; j++)
            nll[pos + j - first] = mend_nll_from_logits(pp->logits + (size_t)j * V, V, win[pos + j + 1]);
        pos += nb;
    }
    return 0;
}

/* Add a window's token nll w[0..ns) to row r. */
static void row_add(idp_ppl *pp, int r, const double *w, int ns) {
    double s = 0, s2 = 0;
    for (int j = 0; j < ns; j++) s += w[j], s2 += w[j] * w[j];
    pp->row_nll[r] += s;
    pp->row_nll2[r] += s2;
}

/* Perplexity of row r and its +/- as mend_ppl_run gives them. */
static void row_ppl(const idp_ppl *pp, int r, double *ppl, double *err) {
    const double n = (double)pp->row_n, m = pp->row_nll[r] / n, v = pp->row_nll2[r] / n - m * m;
    *ppl = exp(m);
    *err = n > 1 && v > 0 ? *ppl * sqrt(v / (n - 1)) : 0.0;
}

static int ppl_score(void *user, const int32_t *win, int n, int first, double *nll) {
    idp_ppl *pp = user;
    cli_idp *x = pp->x;
    const int K = x->K, ns = n - 1 - first;
    double t0 = mend_now();
    int sel_n = n < pp->select_tokens ? n : pp->select_tokens;
    int rc = cli_idp_pick_all(x, win, sel_n, x->choice);
    pp->sel_time += mend_now() - t0;
    if (rc) return rc;
    t0 = mend_now();
    if (x->per_prompt) {
        double best = INFINITY;
        int oracle = 0;
        for (int b = 0; b <= K; b++) {
            double *w = pp->buf + (size_t)b * ns;
            if ((rc = ppl_score_one(pp, b, win, n, first, w))) return rc;
            double sum = 0;
            for (int j = 0; j < ns; j++) sum += w[j];
            row_add(pp, b, w, ns);
            if (b > 0 && sum < best) best = sum, oracle = b - 1;
        }
        for (int j = 0; j < x->n_sel; j++) {
            if (x->choice[j] == -2) x->choice[j] = oracle;
            row_add(pp, K + 1 + j, pp->buf + (size_t)(x->choice[j] + 1) * ns, ns);
        }
        row_add(pp, K + 1 + x->n_sel, pp->buf + (size_t)(oracle + 1) * ns, ns);
        pp->hist[(size_t)x->n_sel * (K + 1) + oracle + 1]++;
        memcpy(nll, pp->buf + (size_t)(x->choice[0] + 1) * ns, (size_t)ns * sizeof *nll);
    } else {
        if (x->choice[0] == -2)
            return mend_set_error(MEND_EINVAL, "the oracle selector needs --per-prompt");
        if ((rc = ppl_score_one(pp, x->choice[0] + 1, win, n, first, nll))) return rc;
    }
    pp->score_time += mend_now() - t0;
    for (int j = 0; j < x->n_sel; j++)
        if (x->choice[j] >= -1) pp->hist[(size_t)j * (K + 1) + x->choice[j] + 1]++;
    pp->row_n += ns;
    pp->n_windows++;
    return 0;
}

/* Name of perplexity row r: rows 0..K are "none" and the prompts, then the
 * selectors ("IDP NAME"), then the per-window oracle. */
static const char *idp_row_name(const cli_idp *x, int r, char *buf, size_t cap) {
    const int K = x->K;
    if (r == 0) snprintf(buf, cap, "no prompt");
    else if (r <= K) snprintf(buf, cap, "%s", x->bank->p[r - 1].name);
    else if (r < K + 1 + x->n_sel) snprintf(buf, cap, "IDP %s", x->names[r - K - 1]);
    else snprintf(buf, cap, "oracle per window (uses the scored text: analysis only)");
    return buf;
}

int cli_idp_perplexity(cli_idp *x, const int32_t *tokens, size_t n_tokens, const mend_ppl_opts *opts,
                       int select_tokens, mend_ppl_progress_fn progress, void *progress_user, mend_ppl_result *res,
                       FILE *f, json_t *rows) {
    mend_ppl_opts o = *opts;
    mend_model_info info;
    mend_model_get_info(x->m, &info);
    const int K = x->K, nv = x->bank->nv;
    idp_ppl pp = {.x = x, .n_vocab = info.n_vocab, .n_batch = o.n_batch,
                  .select_tokens = select_tokens > 0 ? select_tokens : 128};
    int rc = 0;
    pp.st = calloc((size_t)K + 1, sizeof *pp.st);
    pp.logits = malloc((size_t)o.n_batch * info.n_vocab * sizeof(float));
    pp.buf = malloc((size_t)(K + 1) * o.n_ctx * sizeof(double));
    pp.row_nll = calloc((size_t)K + 2 + x->n_sel, sizeof(double));
    pp.row_nll2 = calloc((size_t)K + 2 + x->n_sel, sizeof(double));
    pp.hist = calloc((size_t)(x->n_sel + 1) * (K + 1), sizeof(int64_t));
    if (!pp.st || !pp.logits || !pp.buf || !pp.row_nll || !pp.row_nll2 || !pp.hist) {
        rc = mend_set_error(MEND_ENOMEM, "perplexity with a prompt bank: out of memory");
        goto done;
    }
    for (int b = 0; b <= K && rc == 0; b++) {
        const int P = b == 0 ? 0 : nv;
        /* states only for the backends that can be used */
        int used = x->per_prompt;
        for (int j = 0; j < x->n_sel && !used; j++)
            used = x->spec[j].kind == MEND_SELECT_ATTENTION || x->spec[j].kind == MEND_SELECT_ROUTER ||
                   x->spec[j].kind == MEND_SELECT_LOSS || x->spec[j].kind == MEND_SELECT_LEARNED ||
                   (x->spec[j].kind == MEND_SELECT_FIXED && x->spec[j].fixed == b - 1) ||
                   (x->spec[j].kind == MEND_SELECT_NONE && b == 0);
        if (!used) continue;
        rc = mend_state_new(&pp.st[b], x->m, P + o.n_ctx, o.n_batch > P ? o.n_batch : P);
        if (rc == 0 && P > 0) rc = mend_forward(pp.st[b], NULL, x->bank->p[b - 1].emb, P, 0, NULL, 0);
    }
    if (rc == 0) rc = mend_ppl_run(tokens, n_tokens, &o, ppl_score, &pp, progress, progress_user, res);
    if (rc == 0 && f) {
        char b1[32];
        fprintf(f, "\nprompt bank %s: %d prompts x %d virtual tokens, selection on the first %d tokens of each "
                   "window; prompt KV cached by the selectors %s\n", x->bank->dir, K, nv, pp.select_tokens,
                cli_fmt_bytes((double)cli_idp_kv_bytes(x), b1, sizeof b1));
        fprintf(f, "selection %.2f s, scoring %.2f s over %d windows\n", pp.sel_time, pp.score_time, pp.n_windows);
        if (x->per_prompt && pp.row_n > 0) {
            fprintf(f, "\n| row | ppl |\n|---|---:|\n");
            for (int r = 0; r < K + 2 + x->n_sel; r++) {
                if (r > K && r < K + 1 + x->n_sel && x->spec[r - K - 1].kind == MEND_SELECT_ORACLE) continue;
                double v, e;
                row_ppl(&pp, r, &v, &e);
                char name[96];
                fprintf(f, "| %s | %.4f |\n", idp_row_name(x, r, name, sizeof name), v);
            }
        }
        fprintf(f, "\n| selector |");
        for (int k = -1; k < K; k++) fprintf(f, " %s |", cli_idp_prompt_name(x, k));
        fprintf(f, "\n|---|");
        for (int k = -1; k < K; k++) fprintf(f, "---|");
        fprintf(f, "\n");
        for (int j = 0; j <= x->n_sel; j++) {
            if (j == x->n_sel && !x->per_prompt) break;
            fprintf(f, "| %s |", j < x->n_sel ? x->names[j] : "oracle (per window)");
            for (int k = -1; k < K; k++) fprintf(f, " %lld |", (long long)pp.hist[(size_t)j * (K + 1) + k + 1]);
            fprintf(f, "\n");
        }
    }
    if (rc == 0 && rows && x->per_prompt && pp.row_n > 0) {
        for (int r = 0; r < K + 2 + x->n_sel; r++) {
            if (r > K && r < K + 1 + x->n_sel && x->spec[r - K - 1].kind == MEND_SELECT_ORACLE) continue;
            double v, e;
            row_ppl(&pp, r, &v, &e);
            char name[96];
            json_t *o = json_pack("{s:s, s:f, s:f}", "row", idp_row_name(x, r, name, sizeof name), "ppl", v,
                                  "stderr", e);
            if (!o || json_array_append_new(rows, o)) {
                rc = mend_set_error(MEND_ENOMEM, "perplexity rows: out of memory");
                break;
            }
        }
    }
done:
    if (pp.st)
        for (int b = 0; b <= K; b++) mend_state_free(pp.st[b]);
    free(pp.st);
    free(pp.logits);
    free(pp.buf);
    free(pp.row_nll);
    free(pp.row_nll2);
    free(pp.hist);
    return rc;
}
