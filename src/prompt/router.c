/* The learned router: feature, fit and labelling (see router.h). */
#include "prompt/router.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quants.h"
#include "model/model.h"
#include "prompt/select.h"
#include "util/util.h"

#define HELDOUT_EVERY 5

/* Is window i of n held out? (none when fewer than HELDOUT_EVERY) */
static int held_out(int i, int n) { return n >= HELDOUT_EVERY && i % HELDOUT_EVERY == HELDOUT_EVERY - 1; }

void mend_router_opts_default(mend_router_opts *o) {
    o->n_windows = 48;
    o->window = 128;
    o->normalize = 1;
    o->l2 = 1e-2;
    o->iters = 500;
}

int mend_router_feature(const mend_model *m, const int32_t *tokens, int n, int normalize, float *x) {
    if (!m || !tokens || n < 1 || !x) return mend_set_error(MEND_EINVAL, "router feature: model and >= 1 token needed");
    const mend_mat *E = &m->tok_embd;
    const int dim = m->cfg.dim;
    double *acc = calloc((size_t)dim, sizeof *acc);
    float *row = malloc((size_t)dim * sizeof *row);
    int rc = 0;
    if (!acc || !row) {
        rc = mend_set_error(MEND_ENOMEM, "router feature: out of memory");
        goto done;
    }
    /* x = E[tokens].mean(0) */
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->cfg.n_vocab) {
            rc = mend_set_error(MEND_EINVAL, "router feature: token %d (at index %d) is outside the vocabulary of %d",
                                tokens[i], i, m->cfg.n_vocab);
            goto done;
        }
        const uint8_t *src = (const uint8_t *)E->data + (size_t)tokens[i] * E->row_bytes;
        if (E->type == MEND_TYPE_F32) memcpy(row, src, (size_t)dim * sizeof(float));
        else if ((rc = mend_dequantize_row(E->type, src, row, dim))) goto done;
        for (int j = 0; j < dim; j++) acc[j] += row[j];
    }
    double nrm = 0.0;
    for (int j = 0; j < dim; j++) {
        acc[j] /= n;
        nrm += acc[j] * acc[j];
    }
    /* x / ||x||_2 */
    const double scale = normalize && nrm > 0.0 ? 1.0 / sqrt(nrm) : 1.0;
    for (int j = 0; j < dim; j++) x[j] = (float)(acc[j] * scale);
done:
    free(acc);
    free(row);
    return rc;
}

void mend_router_logits(const mend_learned_router *r, const float *x, float *logits) {
    for (int k = 0; k < r->K; k++) {
        const float *w = r->w + (size_t)k * r->dim;
        double z = r->b[k];
        for (int j = 0; j < r->dim; j++) z += (double)w[j] * x[j];
        logits[k] = (float)z;
    }
}

/* Mean softmax cross-entropy gradient at (W, bias) over the rows Z (n, d),
 * plus l2 * W. g (K, d + 1): the last column is the bias's. */
static void ce_grad(const double *Z, const int *y, int n, int d, int K, const double *th, double l2, double *g,
                    double *p) {
    const int D = d + 1;
    memset(g, 0, (size_t)K * D * sizeof *g);
    for (int i = 0; i < n; i++) {
        const double *z = Z + (size_t)i * d;
        double mx = -INFINITY, s = 0.0;
        for (int k = 0; k < K; k++) {
            const double *w = th + (size_t)k * D;
            double a = w[d];
            for (int j = 0; j < d; j++) a += w[j] * z[j];
            p[k] = a;
            if (a > mx) mx = a;
        }
        for (int k = 0; k < K; k++) s += (p[k] = exp(p[k] - mx));
        /* dL/dlogit_k = softmax_k - [k == y] */
        for (int k = 0; k < K; k++) {
            const double e = (p[k] / s - (k == y[i])) / n;
            double *gk = g + (size_t)k * D;
            for (int j = 0; j < d; j++) gk[j] += e * z[j];
            gk[d] += e;
        }
    }
    for (int k = 0; k < K; k++)
        for (int j = 0; j < d; j++) g[(size_t)k * D + j] += l2 * th[(size_t)k * D + j];
}

/* Largest eigenvalue of (1/n) sum_i [z_i;1][z_i;1]^T by power iteration. */
static double top_eigenvalue(const double *Z, int n, int d, double *v, double *u) {
    const int D = d + 1;
    for (int j = 0; j < D; j++) v[j] = 1.0;
    double lam = 0.0;
    for (int it = 0; it < 100; it++) {
        memset(u, 0, (size_t)D * sizeof *u);
        for (int i = 0; i < n; i++) {
            const double *z = Z + (size_t)i * d;
            double a = v[d];
            for (int j = 0; j < d; j++) a += z[j] * v[j];
            for (int j = 0; j < d; j++) u[j] += a * z[j] / n;
            u[d] += a / n;
        }
        double nu = 0.0, nv = 0.0;
        for (int j = 0; j < D; j++) nu += u[j] * u[j], nv += v[j] * v[j];
        lam = sqrt(nu / nv);
        if (nu == 0.0) break;
        for (int j = 0; j < D; j++) v[j] = u[j] / sqrt(nu);
    }
    return lam;
}

static double accuracy(const mend_learned_router *r, const float *X, const int *y, int n, int held, float *lg) {
    int hit = 0, cnt = 0;
    for (int i = 0; i < n; i++) {
        if (held_out(i, n) != held) continue;
        mend_router_logits(r, X + (size_t)i * r->dim, lg);
        hit += mend_select_argmax(lg, r->K) == y[i];
        cnt++;
    }
    return cnt ? (double)hit / cnt : NAN;
}

int mend_router_fit(const float *X, const int *y, int n, int dim, int K, int normalize, const mend_router_opts *o,
                    mend_learned_router **out, mend_router_stats *st) {
    if (!out) return mend_set_error(MEND_EINVAL, "router fit: out is NULL");
    *out = NULL;
    if (!X || !y || !o || n < 1 || dim < 1 || K < 1 || K > MEND_BANK_MAX_PROMPTS || o->iters < 0 || !(o->l2 >= 0))
        return mend_set_error(MEND_EINVAL, "router fit: features, labels, K in 1..%d and options needed",
                              MEND_BANK_MAX_PROMPTS);
    for (int i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= K) return mend_set_error(MEND_EINVAL, "router fit: label %d of window %d is not in "
                                                         "[0, %d)", y[i], i, K);
    const int D = dim + 1;
    int nt = 0;
    for (int i = 0; i < n; i++) nt += !held_out(i, n);
    double *Z = malloc((size_t)nt * dim * sizeof *Z), *mu = calloc((size_t)dim, sizeof *mu),
           *sd = calloc((size_t)dim, sizeof *sd), *th = calloc((size_t)K * D, sizeof *th),
           *prev = calloc((size_t)K * D, sizeof *prev), *ya = calloc((size_t)K * D, sizeof *ya),
           *g = malloc((size_t)K * D * sizeof *g), *v = malloc((size_t)D * 2 * sizeof *v),
           *p = malloc((size_t)K * sizeof *p);
    int *yt = malloc((size_t)nt * sizeof *yt);
    float *lg = malloc((size_t)K * sizeof *lg);
    mend_learned_router *r = calloc(1, sizeof *r);
    int rc = 0;
    if (!Z || !mu || !sd || !th || !prev || !ya || !g || !v || !p || !yt || !lg || !r) {
        rc = mend_set_error(MEND_ENOMEM, "router fit: out of memory");
        goto done;
    }
    /* the training rows, standardized per feature: z = (x - mean) / std */
    for (int i = 0, t = 0; i < n; i++) {
        if (held_out(i, n)) continue;
        for (int j = 0; j < dim; j++) Z[(size_t)t * dim + j] = X[(size_t)i * dim + j];
        yt[t++] = y[i];
    }
    for (int t = 0; t < nt; t++)
        for (int j = 0; j < dim; j++) mu[j] += Z[(size_t)t * dim + j] / nt;
    for (int t = 0; t < nt; t++)
        for (int j = 0; j < dim; j++) sd[j] += (Z[(size_t)t * dim + j] - mu[j]) * (Z[(size_t)t * dim + j] - mu[j]) / nt;
    for (int j = 0; j < dim; j++) sd[j] = sd[j] > 1e-20 ? sqrt(sd[j]) : 1.0;
    for (int t = 0; t < nt; t++)
        for (int j = 0; j < dim; j++) Z[(size_t)t * dim + j] = (Z[(size_t)t * dim + j] - mu[j]) / sd[j];
    /* softmax cross-entropy's Hessian <= 1/2 (1/n) sum z z^T (per class) + l2 */
    const double L = 0.5 * top_eigenvalue(Z, nt, dim, v, v + D) + o->l2;
    const double step = L > 0 ? 1.0 / L : 1.0;
    /* Nesterov: th' = ya - step * grad(ya); ya' = th' + t/(t+3) (th' - th) */
    for (int it = 0; it < o->iters; it++) {
        ce_grad(Z, yt, nt, dim, K, ya, o->l2, g, p);
        memcpy(prev, th, (size_t)K * D * sizeof *th);
        for (size_t q = 0; q < (size_t)K * D; q++) th[q] = ya[q] - step * g[q];
        const double mom = (double)it / (it + 3);
        for (size_t q = 0; q < (size_t)K * D; q++) ya[q] = th[q] + mom * (th[q] - prev[q]);
    }
    /* fold the standardization: w_kj = W_kj / sd_j, b_k = b_k - sum_j W_kj mu_j / sd_j */
    r->K = K;
    r->dim = dim;
    r->normalize = normalize != 0;
    r->w = malloc((size_t)K * dim * sizeof *r->w);
    r->b = malloc((size_t)K * sizeof *r->b);
    if (!r->w || !r->b) {
        rc = mend_set_error(MEND_ENOMEM, "router fit: out of memory");
        goto done;
    }
    for (int k = 0; k < K; k++) {
        double bb = th[(size_t)k * D + dim];
        for (int j = 0; j < dim; j++) {
            const double w = th[(size_t)k * D + j] / sd[j];
            r->w[(size_t)k * dim + j] = (float)w;
            bb -= w * mu[j];
        }
        r->b[k] = (float)bb;
    }
    r->train_windows = n;
    r->train_acc = accuracy(r, X, y, n, 0, lg);
    r->heldout_acc = accuracy(r, X, y, n, 1, lg);
    if (st) {
        memset(st, 0, sizeof *st);
        st->n_windows = n;
        st->n_train = nt;
        st->n_heldout = n - nt;
        st->train_acc = r->train_acc;
        st->heldout_acc = r->heldout_acc;
        for (int i = 0; i < n; i++) st->label_hist[y[i]]++;
    }
    *out = r;
    r = NULL;
done:
    mend_learned_router_free(r);
    free(Z);
    free(mu);
    free(sd);
    free(th);
    free(prev);
    free(ya);
    free(g);
    free(v);
    free(p);
    free(yt);
    free(lg);
    return rc;
}

int mend_router_train(const mend_model *m, const mend_bank *b, const char *const *texts, const size_t *lens,
                      int n_texts, const mend_router_opts *o, mend_router_progress_fn progress, void *user,
                      mend_learned_router **out, mend_router_stats *st) {
    if (!out) return mend_set_error(MEND_EINVAL, "router train: out is NULL");
    *out = NULL;
    if (!m || !b || !texts || !lens || n_texts < 1 || !o || o->n_windows < 1 || o->window < 2)
        return mend_set_error(MEND_EINVAL, "router train: model, bank, >= 1 corpus and >= 1 window of >= 2 tokens "
                              "needed");
    const int dim = m->cfg.dim, total = n_texts * o->n_windows;
    mend_select_spec sp;
    int rc = mend_select_parse("loss", b, &sp);
    if (rc) return rc;
    sp.max_tokens = o->window;
    mend_selector *loss = NULL;
    if ((rc = mend_selector_new(&loss, m, b, &sp))) return rc;
    float *X = malloc((size_t)total * dim * sizeof *X);
    int *y = malloc((size_t)total * sizeof *y);
    int n = 0;
    if (!X || !y) {
        rc = mend_set_error(MEND_ENOMEM, "router train: out of memory");
        goto done;
    }
    for (int t = 0; t < n_texts && !rc; t++)
        for (int w = 0; w < o->n_windows && !rc; w++) {
            int32_t *ids = NULL;
            int len = 0;
            rc = mend_select_window(mend_model_tokenizer(m), texts[t], lens[t], w, o->n_windows, o->window, &ids,
                                    &len);
            if (!rc && len >= 2) {
                rc = mend_router_feature(m, ids, len, o->normalize, X + (size_t)n * dim);
                if (!rc) rc = mend_selector_pick(loss, ids, len, &y[n], NULL);
                if (!rc) n++;
            }
            free(ids);
            if (!rc && progress && progress(user, t * o->n_windows + w + 1, total))
                rc = mend_set_error(MEND_EINVAL, "router train: stopped");
        }
    if (!rc && n < 2) rc = mend_set_error(MEND_EINVAL, "router train: the corpora gave %d windows of >= 2 tokens, "
                                          "at least 2 are needed", n);
    if (!rc) rc = mend_router_fit(X, y, n, dim, b->n, o->normalize, o, out, st);
done:
    mend_selector_free(loss);
    free(X);
    free(y);
    return rc;
}
