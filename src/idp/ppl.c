/* Perplexity with a prompt of the bank chosen per window (mend_idp_perplexity,
 * include/mend/idp.h): every used scorer keeps its prompt's keys and values
 * at positions [0, nv); with per_prompt every window is also scored with no
 * prompt and with each prompt, which gives a row per prompt, per selector
 * and the per-window oracle. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idp/idp_impl.h"
#include "util/util.h"

typedef struct idp_ppl {
    mend_idp *x;
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

/* Every scorer on the window; rows and the oracle's histogram updated. */
static int score_all(idp_ppl *pp, const int32_t *win, int n, int first, double *nll) {
    mend_idp *x = pp->x;
    const int K = x->K, ns = n - 1 - first;
    double best = INFINITY;
    int oracle = 0, rc;
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
    return 0;
}

static int ppl_score(void *user, const int32_t *win, int n, int first, double *nll) {
    idp_ppl *pp = user;
    mend_idp *x = pp->x;
    const int K = x->K, ns = n - 1 - first;
    double t0 = mend_now();
    int sel_n = n < pp->select_tokens ? n : pp->select_tokens;
    int rc = mend_idp_pick_all(x, win, sel_n, x->choice);
    pp->sel_time += mend_now() - t0;
    if (rc) return rc;
    t0 = mend_now();
    if (x->per_prompt) {
        if ((rc = score_all(pp, win, n, first, nll))) return rc;
    } else {
        if (x->choice[0] == -2) return mend_set_error(MEND_EINVAL, "the oracle selector needs --per-prompt");
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
static const char *idp_row_name(const mend_idp *x, int r, char *buf, size_t cap) {
    const int K = x->K;
    if (r == 0) snprintf(buf, cap, "no prompt");
    else if (r <= K) snprintf(buf, cap, "%s", x->bank->p[r - 1].name);
    else if (r < K + 1 + x->n_sel) snprintf(buf, cap, "IDP %s", x->names[r - K - 1]);
    else snprintf(buf, cap, "oracle per window (uses the scored text: analysis only)");
    return buf;
}

/* Is row r reported? (an oracle selector's row equals the oracle row) */
static int row_shown(const mend_idp *x, int r) {
    const int K = x->K;
    return !(r > K && r < K + 1 + x->n_sel && x->spec[r - K - 1].kind == MEND_SELECT_ORACLE);
}

/* Does scorer b (0: none, k + 1: prompt k) ever run? */
static int scorer_used(const mend_idp *x, int b) {
    if (x->per_prompt) return 1;
    for (int j = 0; j < x->n_sel; j++) {
        const mend_select_spec *sp = &x->spec[j];
        if (sp->kind == MEND_SELECT_ATTENTION || sp->kind == MEND_SELECT_ROUTER || sp->kind == MEND_SELECT_LOSS ||
            sp->kind == MEND_SELECT_LEARNED || (sp->kind == MEND_SELECT_FIXED && sp->fixed == b - 1) ||
            (sp->kind == MEND_SELECT_NONE && b == 0))
            return 1;
    }
    return 0;
}

static int ppl_alloc(idp_ppl *pp, const mend_ppl_opts *o) {
    const mend_idp *x = pp->x;
    const int K = x->K, nv = x->bank->nv;
    pp->st = calloc((size_t)K + 1, sizeof *pp->st);
    pp->logits = malloc((size_t)o->n_batch * pp->n_vocab * sizeof(float));
    pp->buf = malloc((size_t)(K + 1) * o->n_ctx * sizeof(double));
    pp->row_nll = calloc((size_t)K + 2 + x->n_sel, sizeof(double));
    pp->row_nll2 = calloc((size_t)K + 2 + x->n_sel, sizeof(double));
    pp->hist = calloc((size_t)(x->n_sel + 1) * (K + 1), sizeof(int64_t));
    if (!pp->st || !pp->logits || !pp->buf || !pp->row_nll || !pp->row_nll2 || !pp->hist)
        return mend_set_error(MEND_ENOMEM, "perplexity with a prompt bank: out of memory");
    int rc = 0;
    for (int b = 0; b <= K && rc == 0; b++) {
        const int P = b == 0 ? 0 : nv;
        if (!scorer_used(x, b)) continue;
        rc = mend_state_new(&pp->st[b], x->m, P + o->n_ctx, o->n_batch > P ? o->n_batch : P);
        if (rc == 0 && P > 0) rc = mend_forward(pp->st[b], NULL, x->bank->p[b - 1].emb, P, 0, NULL, 0);
    }
    return rc;
}

static void ppl_free(idp_ppl *pp) {
    if (pp->st)
        for (int b = 0; b <= pp->x->K; b++) mend_state_free(pp->st[b]);
    free(pp->st);
    free(pp->logits);
    free(pp->buf);
    free(pp->row_nll);
    free(pp->row_nll2);
    free(pp->hist);
}

static void print_report(const idp_ppl *pp, FILE *f) {
    const mend_idp *x = pp->x;
    const int K = x->K;
    char b1[32];
    fprintf(f, "\nprompt bank %s: %d prompts x %d virtual tokens, selection on the first %d tokens of each "
               "window; prompt KV cached by the selectors %s\n", x->bank->dir, K, x->bank->nv, pp->select_tokens,
            mend_fmt_bytes((double)mend_idp_kv_bytes(x), b1, sizeof b1));
    fprintf(f, "selection %.2f s, scoring %.2f s over %d windows\n", pp->sel_time, pp->score_time, pp->n_windows);
    if (x->per_prompt && pp->row_n > 0) {
        fprintf(f, "\n| row | ppl |\n|---|---:|\n");
        for (int r = 0; r < K + 2 + x->n_sel; r++) {
            if (!row_shown(x, r)) continue;
            double v, e;
            row_ppl(pp, r, &v, &e);
            char name[96];
            fprintf(f, "| %s | %.4f |\n", idp_row_name(x, r, name, sizeof name), v);
        }
    }
    fprintf(f, "\n");
    idp_print_prompt_header(x, f, "| selector |", 1);
    for (int j = 0; j <= x->n_sel; j++) {
        if (j == x->n_sel && !x->per_prompt) break;
        fprintf(f, "| %s |", j < x->n_sel ? x->names[j] : "oracle (per window)");
        for (int k = -1; k < K; k++) fprintf(f, " %lld |", (long long)pp->hist[(size_t)j * (K + 1) + k + 1]);
        fprintf(f, "\n");
    }
}

static int make_report(const idp_ppl *pp, mend_idp_ppl_report *rep) {
    const mend_idp *x = pp->x;
    size_t len = 0;
    FILE *f = open_memstream(&rep->text, &len);
    if (!f) return mend_set_error(MEND_ENOMEM, "perplexity report: out of memory");
    print_report(pp, f);
    if (fclose(f) || !rep->text) return mend_set_error(MEND_ENOMEM, "perplexity report: out of memory");
    if (!x->per_prompt || pp->row_n == 0) return 0;
    rep->rows = calloc((size_t)x->K + 2 + x->n_sel, sizeof *rep->rows);
    if (!rep->rows) return mend_set_error(MEND_ENOMEM, "perplexity report: out of memory");
    for (int r = 0; r < x->K + 2 + x->n_sel; r++) {
        if (!row_shown(x, r)) continue;
        mend_idp_ppl_row *w = &rep->rows[rep->n_rows++];
        idp_row_name(x, r, w->name, sizeof w->name);
        row_ppl(pp, r, &w->ppl, &w->err);
    }
    return 0;
}

void mend_idp_ppl_report_free(mend_idp_ppl_report *rep) {
    if (!rep) return;
    free(rep->text);
    free(rep->rows);
    memset(rep, 0, sizeof *rep);
}

int mend_idp_perplexity(mend_idp *x, const int32_t *tokens, size_t n_tokens, const mend_ppl_opts *opts,
                        int select_tokens, mend_ppl_progress_fn progress, void *progress_user, mend_ppl_result *res,
                        mend_idp_ppl_report *rep) {
    if (rep) memset(rep, 0, sizeof *rep);
    if (!x->started) return mend_set_error(MEND_EINVAL, "idp: call mend_idp_start first");
    mend_ppl_opts o;
    int rc = mend_ppl_resolve_opts(opts, &o);
    if (rc) return rc;
    mend_model_info info;
    mend_model_get_info(x->m, &info);
    idp_ppl pp = {.x = x, .n_vocab = info.n_vocab, .n_batch = o.n_batch,
                  .select_tokens = select_tokens > 0 ? select_tokens : 128};
    rc = ppl_alloc(&pp, &o);
    if (rc == 0) rc = mend_ppl_run(tokens, n_tokens, &o, ppl_score, &pp, progress, progress_user, res);
    if (rc == 0 && rep) rc = make_report(&pp, rep);
    if (rc && rep) mend_idp_ppl_report_free(rep);
    ppl_free(&pp);
    return rc;
}
