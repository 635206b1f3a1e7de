/* A bank of expert prompts trained by hard EM: see experts.h. */
#define _GNU_SOURCE
#include "prompt/experts.h"
#include "prompt/router.h"
#include "prompt/tune.h"

#include <jansson.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "prompt/adapter.h"
#include "prompt/bank.h"
#include "prompt/select.h"
#include "util/util.h"

void mend_experts_opts_default(mend_experts_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_experts = 4;
    o->rounds = 3;
    o->kmeans_iters = 20;
    mend_tune_opts_default(&o->tune);
    o->tune.windows = MEND_TUNE_WINDOWS_PARAGRAPH;
    mend_router_opts_default(&o->router);
}

/* ---- balanced assignment and k-means ---- */

typedef struct row_order {
    float margin;
    int row;
} row_order;

static int by_margin(const void *a, const void *b) {
    const row_order *x = a, *y = b;
    if (x->margin != y->margin) return x->margin > y->margin ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

static float cost_at(const float *cost, int K, int i, int k) {
    const float c = cost[(size_t)i * K + k];
    return isnan(c) ? INFINITY : c;
}

int mend_experts_balance(const float *cost, int n, int K, int *label) {
    if (!cost || !label || n < 0 || K < 1)
        return mend_set_error(MEND_EINVAL, "experts: balance needs costs, labels, n >= 0 and K >= 1");
    if (n == 0) return 0;
    row_order *ord = malloc(sizeof *ord * (size_t)n);
    int *room = malloc(sizeof *room * (size_t)K);
    if (!ord || !room) {
        free(ord);
        free(room);
        return mend_set_error(MEND_ENOMEM, "experts: out of memory");
    }
    const int cap = (n + K - 1) / K;
    for (int k = 0; k < K; k++) room[k] = cap;
    for (int i = 0; i < n; i++) {
        float b1 = INFINITY, b2 = INFINITY;
        for (int k = 0; k < K; k++) {
            const float c = cost_at(cost, K, i, k);
            if (c < b1) b2 = b1, b1 = c;
            else if (c < b2) b2 = c;
        }
        float mg = b2 - b1;   /* inf - inf: no preference at all */
        ord[i] = (row_order){isnan(mg) ? 0.0f : mg, i};
    }
    qsort(ord, (size_t)n, sizeof *ord, by_margin);
    for (int r = 0; r < n; r++) {
        const int i = ord[r].row;
        int best = -1;
        for (int k = 0; k < K; k++)
            if (room[k] > 0 && (best < 0 || cost_at(cost, K, i, k) < cost_at(cost, K, i, best))) best = k;
        label[i] = best;   /* cap * K >= n: some label always has room */
        room[best]--;
    }
    free(ord);
    free(room);
    return 0;
}

static double sqdist(const float *a, const float *b, int dim) {
    double s = 0;
    for (int d = 0; d < dim; d++) {
        const double t = (double)a[d] - b[d];
        s += t * t;
    }
    return s;
}

/* k-means++: the first centre uniformly, each next one with probability
 * proportional to the squared distance to the nearest chosen centre */
static void kmeanspp(const float *x, int n, int dim, int K, mend_rng *r, float *ctr, double *near) {
    int first = (int)mend_rng_below(r, (uint64_t)n);
    memcpy(ctr, x + (size_t)first * dim, sizeof(float) * (size_t)dim);
    for (int i = 0; i < n; i++) near[i] = sqdist(x + (size_t)i * dim, ctr, dim);
    for (int k = 1; k < K; k++) {
        double tot = 0;
        for (int i = 0; i < n; i++) tot += near[i];
        int pick = n - 1;
        if (tot > 0) {
            double u = mend_rng_unit(r) * tot;
            for (int i = 0; i < n; i++)
                if ((u -= near[i]) < 0) {
                    pick = i;
                    break;
                }
        } else {
            pick = (int)mend_rng_below(r, (uint64_t)n);
        }
        float *c = ctr + (size_t)k * dim;
        memcpy(c, x + (size_t)pick * dim, sizeof(float) * (size_t)dim);
        for (int i = 0; i < n; i++) {
            const double d = sqdist(x + (size_t)i * dim, c, dim);
            if (d < near[i]) near[i] = d;
        }
    }
}

int mend_experts_kmeans(const float *x, int n, int dim, int K, int iters, uint64_t seed, int *label) {
    if (!x || !label || n < 1 || dim < 1 || K < 1 || K > n || iters < 0)
        return mend_set_error(MEND_EINVAL, "experts: k-means needs 1 <= K <= n points (K %d, n %d)", K, n);
    float *ctr = malloc(sizeof(float) * (size_t)K * dim), *cost = malloc(sizeof(float) * (size_t)n * K);
    double *acc = malloc(sizeof(double) * ((size_t)K * dim + (size_t)n));
    int *cnt = malloc(sizeof(int) * (size_t)K), *prev = malloc(sizeof(int) * (size_t)n);
    int rc = 0;
    if (!ctr || !cost || !acc || !cnt || !prev) {
        rc = mend_set_error(MEND_ENOMEM, "experts: out of memory");
        goto done;
    }
    mend_rng r;
    mend_rng_seed(&r, seed);
    kmeanspp(x, n, dim, K, &r, ctr, acc);
    for (int it = 0; it <= iters; it++) {
        for (int i = 0; i < n; i++)
            for (int k = 0; k < K; k++)
                cost[(size_t)i * K + k] = (float)sqdist(x + (size_t)i * dim, ctr + (size_t)k * dim, dim);
        if (it > 0) memcpy(prev, label, sizeof(int) * (size_t)n);
        if ((rc = mend_experts_balance(cost, n, K, label))) goto done;
        if (it > 0 && !memcmp(prev, label, sizeof(int) * (size_t)n)) break;
        memset(acc, 0, sizeof(double) * (size_t)K * dim);
        memset(cnt, 0, sizeof(int) * (size_t)K);
        for (int i = 0; i < n; i++) {
            cnt[label[i]]++;
            for (int d = 0; d < dim; d++) acc[(size_t)label[i] * dim + d] += x[(size_t)i * dim + d];
        }
        for (int k = 0; k < K; k++)
            if (cnt[k] > 0)
                for (int d = 0; d < dim; d++) ctr[(size_t)k * dim + d] = (float)(acc[(size_t)k * dim + d] / cnt[k]);
    }
done:
    free(ctr);
    free(cost);
    free(acc);
    free(cnt);
    free(prev);
    return rc;
}

/* ---- the run ---- */

typedef struct ex_run {
    const mend_model *m, *teacher;
    const mend_experts_opts *o;
    mend_experts_progress_fn progress;
    void *user;
    int K, nv, dim, L, P;
    int32_t *train, *val;   /* chunks (n, L) */
    int n_train, n_val;
    int *perm;              /* training chunk order */
    float *E;               /* experts (K, nv, dim) */
} ex_run;

static const int32_t *pool_chunk(const ex_run *x, int round, int i) {
    return x->train + (size_t)x->perm[(size_t)round * x->P + i] * x->L;
}

static int report(const ex_run *x, const char *phase, int round, int expert, int done, int total, double loss) {
    if (!x->progress) return 0;
    mend_experts_progress p = {phase, round, x->o->rounds, expert, x->K, done, total, loss};
    return x->progress(x->user, &p) ? mend_set_error(MEND_EINVAL, "experts: cancelled") : 0;
}

/* the router's feature of each chunk -> X (n, dim) */
static int features(const ex_run *x, const int32_t *const *chunks, int n, float *X) {
    for (int i = 0; i < n; i++) {
        int rc = mend_router_feature(x->m, chunks[i], x->L, x->o->router.normalize, X + (size_t)i * x->dim);
        if (rc) return rc;
    }
    return 0;
}

/* cost (n, K): the loss selector's mean NLL of each chunk under each expert */
static int loss_costs(const ex_run *x, const int32_t *const *chunks, int n, int round, float *cost) {
    mend_bank_prompt p[MEND_BANK_MAX_PROMPTS];
    memset(p, 0, sizeof(mend_bank_prompt) * (size_t)x->K);
    char names[MEND_BANK_MAX_PROMPTS][8];
    for (int k = 0; k < x->K; k++) {
        snprintf(names[k], sizeof names[k], "e%d", k);
        p[k].name = names[k];
        p[k].emb = x->E + (size_t)k * x->nv * x->dim;
    }
    mend_bank b = {.dim = x->dim, .nv = x->nv, .n = x->K, .p = p};
    mend_select_spec spec = {.kind = MEND_SELECT_LOSS, .max_tokens = x->L};
    mend_selector *s = NULL;
    int rc = mend_selector_new(&s, x->m, &b, &spec);
    int *lens = malloc(sizeof(int) * 16), choice[16];
    if (!rc && !lens) rc = mend_set_error(MEND_ENOMEM, "experts: out of memory");
    for (int i = 0; i < 16 && lens; i++) lens[i] = x->L;
    for (int i0 = 0; !rc && i0 < n; i0 += 16) {
        const int nb = n - i0 < 16 ? n - i0 : 16;
        if ((rc = mend_selector_pick_many(s, chunks + i0, lens, nb, choice, cost + (size_t)i0 * x->K))) break;
        rc = report(x, "label", round, -1, i0 + nb, n, NAN);
    }
    for (size_t i = 0; !rc && i < (size_t)n * x->K; i++) cost[i] = -cost[i];   /* score = -NLL */
    free(lens);
    mend_selector_free(s);
    return rc;
}

/* ---- labels.json of a round ---- */

static json_t *int_array(const int *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static int write_labels(const char *path, int round, const int *lab, int n, const int *vlab, int nv, int K) {
    int cnt[MEND_BANK_MAX_PROMPTS] = {0};
    for (int i = 0; i < n; i++) cnt[lab[i]]++;
    json_t *j = json_pack("{s:i, s:i, s:o, s:o, s:o}", "round", round, "experts", K, "train", int_array(lab, n),
                          "val", int_array(vlab, nv), "counts", int_array(cnt, K));
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    int rc = s ? mend_write_file_atomic(path, s, strlen(s)) : mend_set_error(MEND_ENOMEM, "experts: out of memory");
    free(s);
    json_decref(j);
    return rc;
}

static int read_int_array(const char *path, const json_t *j, const char *key, int n, int K, int *out) {
    const json_t *a = json_object_get(j, key);
    if (!json_is_array(a) || json_array_size(a) != (size_t)n)
        return mend_set_error(MEND_EFORMAT, "%s: field '%s' is not an array of %d labels", path, key, n);
    for (int i = 0; i < n; i++) {
        const json_t *v = json_array_get(a, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= K)
            return mend_set_error(MEND_EFORMAT, "%s: %s[%d] is not a label in 0..%d", path, key, i, K - 1);
        out[i] = (int)json_integer_value(v);
    }
    return 0;
}

static int read_labels(const char *path, int round, int n, int nv, int K, int *lab, int *vlab) {
    char *text = NULL;
    size_t len = 0;
    int rc = mend_read_file(path, (size_t)1 << 28, &text, &len);
    if (rc) return rc;
    json_error_t err;
    json_t *j = json_loadb(text, len, 0, &err);
    free(text);
    if (!j) return mend_set_error(MEND_EFORMAT, "%s: not valid JSON: %s (line %d)", path, err.text, err.line);
    const json_t *r = json_object_get(j, "round"), *k = json_object_get(j, "experts");
    if (!json_is_integer(r) || json_integer_value(r) != round || !json_is_integer(k) || json_integer_value(k) != K)
        rc = mend_set_error(MEND_EFORMAT, "%s: fields 'round' and 'experts' are not %d and %d: this directory holds "
                            "another run; use a new one", path, round, K);
    if (!rc) rc = read_int_array(path, j, "train", n, K, lab);
    if (!rc) rc = read_int_array(path, j, "val", nv, K, vlab);
    json_decref(j);
    return rc;
}

/* ---- E step ---- */

/* labels of round R's chunks and of the held-out chunks: k-means on the
 * router feature for round 0 (all experts are still the start prompt),
 * the balanced loss selector after */
static int label_round(ex_run *x, int round, int *lab, int *vlab) {
    const int n = x->P + x->n_val;
    const int32_t **ch = calloc((size_t)n, sizeof *ch);
    float *buf = malloc(sizeof(float) * (size_t)n * (round == 0 ? (size_t)x->dim : (size_t)x->K));
    int *all = malloc(sizeof(int) * (size_t)n);
    int rc = 0;
    if (!ch || !buf || !all) {
        rc = mend_set_error(MEND_ENOMEM, "experts: out of memory");
        goto done;
    }
    for (int i = 0; i < x->P; i++) ch[i] = pool_chunk(x, round, i);
    for (int i = 0; i < x->n_val; i++) ch[x->P + i] = x->val + (size_t)i * x->L;
    if (round == 0) {
        if ((rc = features(x, ch, n, buf))) goto done;
        if ((rc = report(x, "kmeans", 0, -1, 0, n, NAN))) goto done;
        /* the split is fitted on the round's chunks; held-out ones follow it */
        if ((rc = mend_experts_kmeans(buf, n, x->dim, x->K, x->o->kmeans_iters, x->o->tune.seed ^ 0x6b6dull, all)))
            goto done;
        /* balanced over all n: rebalance each part on its own so that every
         * expert gets exactly P / K training chunks */
        float *cost = malloc(sizeof(float) * (size_t)n * x->K);
        float *ctr = calloc((size_t)x->K * x->dim, sizeof(float));
        int cnt[MEND_BANK_MAX_PROMPTS] = {0};
        if (!cost || !ctr) {
            free(cost);
            free(ctr);
            rc = mend_set_error(MEND_ENOMEM, "experts: out of memory");
            goto done;
        }
        for (int i = 0; i < n; i++) {
            cnt[all[i]]++;
            for (int d = 0; d < x->dim; d++) ctr[(size_t)all[i] * x->dim + d] += buf[(size_t)i * x->dim + d];
        }
        for (int k = 0; k < x->K; k++)
            for (int d = 0; d < x->dim; d++) ctr[(size_t)k * x->dim + d] /= cnt[k] > 0 ? (float)cnt[k] : 1.0f;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < x->K; k++)
                cost[(size_t)i * x->K + k] =
                    (float)sqdist(buf + (size_t)i * x->dim, ctr + (size_t)k * x->dim, x->dim);
        rc = mend_experts_balance(cost, x->P, x->K, lab);
        if (!rc) rc = mend_experts_balance(cost + (size_t)x->P * x->K, x->n_val, x->K, vlab);
        free(cost);
        free(ctr);
    } else {
        if ((rc = loss_costs(x, ch, n, round, buf))) goto done;
        rc = mend_experts_balance(buf, x->P, x->K, lab);
        if (!rc) rc = mend_experts_balance(buf + (size_t)x->P * x->K, x->n_val, x->K, vlab);
    }
done:
    free(ch);
    free(buf);
    free(all);
    return rc;
}

/* ---- M step ---- */

typedef struct tune_cb {
    ex_run *x;
    int round, expert;
} tune_cb;

static int on_tune_progress(void *user, const mend_tune_progress *p) {
    const tune_cb *c = user;
    return c->x->progress ? report(c->x, "train", c->round, c->expert, p->step, p->steps, p->loss) != 0 : 0;
}

static char *pathf(const char *fmt, ...) MEND_PRINTF(1, 2);
static char *pathf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    if (!s) mend_set_error(MEND_ENOMEM, "experts: out of memory");
    return s;
}

/* expert k's tune run of a round on its chunks; E_k <- its adapter */
static int train_expert(ex_run *x, int round, int k, const int *lab, const int *vlab) {
    const mend_tune_opts *t = &x->o->tune;
    const int per = x->P / x->K;
    int32_t *tr = malloc(sizeof(int32_t) * (size_t)per * x->L);
    int32_t *va = malloc(sizeof(int32_t) * ((size_t)x->n_val + 1) * x->L);
    char *dir = pathf("%s/round-%d/e%d", x->o->out_dir, round, k);
    int rc = 0, nt = 0, nvv = 0;
    if (!tr || !va || !dir) {
        rc = mend_set_error(MEND_ENOMEM, "experts: out of memory");
        goto done;
    }
    for (int i = 0; i < x->P; i++)
        if (lab[i] == k && nt < per) memcpy(tr + (size_t)nt++ * x->L, pool_chunk(x, round, i), sizeof(int32_t) * x->L);
    for (int i = 0; i < x->n_val; i++)
        if (vlab[i] == k) memcpy(va + (size_t)nvv++ * x->L, x->val + (size_t)i * x->L, sizeof(int32_t) * x->L);
    float *ek = x->E + (size_t)k * x->nv * x->dim;
    char *ad = pathf("%s/adapter_model.safetensors", dir);
    if (!ad) {
        rc = MEND_ENOMEM;
        goto done;
    }
    const int finished = mend_file_exists(ad);
    free(ad);
    if (!finished) {
        mend_tune_opts o = *t;
        o.init = MEND_TUNE_INIT_PROMPT;
        o.init_prompt = ek;
        o.start_tokens = t->start_tokens + (int64_t)round * t->steps * t->batch * t->seqlen;
        o.seed = t->seed + 1000u * (uint64_t)round + (uint64_t)k;
        o.out_dir = dir;
        o.base_model = x->o->base_model;
        o.resume = 1;
        if (nvv == 0) o.val_seqs = 0;
        tune_cb cb = {x, round, k};
        mend_tune_result res;
        if ((rc = mend_tune_run_seqs(x->m, x->teacher, tr, nt, va, nvv, &o, NULL, on_tune_progress, &cb, &res)))
            goto done;
    }
    /* the expert as its round left it (dir/last), not the best by validation:
     * a few held-out chunks per expert often rank the unchanged start first,
     * and experts that never move never specialize */
    float *e = NULL;
    int got = 0;
    char *last = pathf("%s/last", dir);
    if (!last) {
        rc = MEND_ENOMEM;
        goto done;
    }
    rc = mend_adapter_read(last, x->dim, &e, &got);
    free(last);
    if (rc) goto done;
    if (got != x->nv) {
        free(e);
        rc = mend_set_error(MEND_EFORMAT, "%s: holds %d virtual tokens, the experts %d", dir, got, x->nv);
        goto done;
    }
    memcpy(ek, e, sizeof(float) * (size_t)x->nv * x->dim);
    free(e);
done:
    free(tr);
    free(va);
    free(dir);
    return rc;
}

/* ---- the final bank ---- */

static int write_expert(const ex_run *x, int k, const mend_fp *fp) {
    const mend_tune_opts *t = &x->o->tune;
    char *dir = pathf("%s/e%d", x->o->out_dir, k);
    if (!dir) return MEND_ENOMEM;
    mend_adapter_meta meta = {.base_model = x->o->base_model, .trained_on = fp, .init = "RANDOM",
                              .num_attention_heads = x->m->cfg.n_heads, .num_layers = x->m->cfg.n_layers};
    int rc = mend_adapter_write(dir, x->E + (size_t)k * x->nv * x->dim, x->nv, x->dim, &meta);
    const json_int_t steps = (json_int_t)x->o->rounds * t->steps, own = steps * t->batch * t->seqlen;
    json_t *j = json_pack("{s:I, s:i, s:i, s:i, s:I, s:I, s:I, s:s, s:i}", "steps", steps, "batch", t->batch,
                          "seqlen", t->seqlen, "num_virtual_tokens", x->nv, "train_tokens", own, "start_tokens",
                          (json_int_t)t->start_tokens, "total_tokens", own + (json_int_t)t->start_tokens, "windows",
                          "paragraph", "rounds", x->o->rounds);
    char *s = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
    char *path = pathf("%s/train.json", dir);
    if (!rc) rc = s && path ? mend_write_file_atomic(path, s, strlen(s)) : MEND_ENOMEM;
    json_decref(j);
    free(s);
    free(path);
    free(dir);
    return rc;
}

/* label a fresh set of chunks with the final experts, fit the router on
 * them, write the experts and bank.json */
static int finish(ex_run *x, mend_experts_result *res) {
    const int n = x->P;
    const int32_t **ch = calloc((size_t)n, sizeof *ch);
    float *cost = malloc(sizeof(float) * (size_t)n * x->K), *X = malloc(sizeof(float) * (size_t)n * x->dim);
    int *lab = malloc(sizeof(int) * (size_t)n);
    mend_learned_router *lr = NULL;
    mend_bank_prompt p[MEND_BANK_MAX_PROMPTS];
    char names[MEND_BANK_MAX_PROMPTS][8];
    int rc = 0;
    if (!ch || !cost || !X || !lab) {
        rc = mend_set_error(MEND_ENOMEM, "experts: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) ch[i] = pool_chunk(x, x->o->rounds, i);
    if ((rc = loss_costs(x, ch, n, x->o->rounds, cost))) goto done;
    /* the router learns the loss selector's own pick (unbalanced): that is
     * the rule it stands in for at inference */
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < x->K; k++)
            if (cost_at(cost, x->K, i, k) < cost_at(cost, x->K, i, best)) best = k;
        lab[i] = best;
        res->counts[best]++;
    }
    if ((rc = features(x, ch, n, X))) goto done;
    if ((rc = report(x, "router", x->o->rounds, -1, 0, n, NAN))) goto done;
    if ((rc = mend_router_fit(X, lab, n, x->dim, x->K, x->o->router.normalize, &x->o->router, &lr, &res->router)))
        goto done;
    mend_fp fp;
    if ((rc = mend_model_fingerprint(x->m, &fp))) goto done;
    memset(p, 0, sizeof(mend_bank_prompt) * (size_t)x->K);
    for (int k = 0; k < x->K && !rc; k++) {
        snprintf(names[k], sizeof names[k], "e%d", k);
        p[k] = (mend_bank_prompt){.name = names[k], .adapter = names[k], .domain = "expert",
                                  .steps = x->o->rounds * x->o->tune.steps, .best_val = NAN};
        rc = write_expert(x, k, &fp);
    }
    if (rc) goto done;
    const int l1 = x->m->cfg.n_layers < 3 ? x->m->cfg.n_layers : 3;
    mend_bank b = {.base_model = (char *)x->o->base_model, .trained_on = fp, .dim = x->dim, .nv = x->nv,
                   .n = x->K, .p = p, .default_selector = "learned", .layer0 = 0, .layer1 = l1, .learned = lr};
    rc = mend_bank_write(x->o->out_dir, &b);
done:
    mend_learned_router_free(lr);
    free(ch);
    free(cost);
    free(X);
    free(lab);
    return rc;
}

static int check(const mend_model *m, const mend_experts_opts *o, mend_experts_result *res) {
    if (!m || !o || !res || !o->out_dir)
        return mend_set_error(MEND_EINVAL, "experts: model, options, output directory and result must be given");
    if (o->n_experts < 2 || o->n_experts > MEND_BANK_MAX_PROMPTS || o->rounds < 1 || o->kmeans_iters < 0)
        return mend_set_error(MEND_EINVAL, "experts: %d experts (2..%d) and %d rounds (>= 1)", o->n_experts,
                              MEND_BANK_MAX_PROMPTS, o->rounds);
    if (!o->tune.init_prompt)
        return mend_set_error(MEND_EINVAL, "experts: the experts start from a trained prompt (tune.init_prompt)");
    if (o->tune.steps < 1 || o->tune.batch < 1 || o->tune.seqlen < 2 || o->tune.n_virtual < 1)
        return mend_set_error(MEND_EINVAL, "experts: steps %d, batch %d, seqlen %d, virtual tokens %d must be "
                              "positive", o->tune.steps, o->tune.batch, o->tune.seqlen, o->tune.n_virtual);
    return 0;
}

int mend_experts_build(const mend_model *m, const mend_model *teacher, const char *const *texts, const size_t *lens,
                       int n_texts, const mend_experts_opts *o, mend_experts_progress_fn progress, void *user,
                       mend_experts_result *res) {
    int rc = check(m, o, res);
    if (rc) return rc;
    memset(res, 0, sizeof *res);
    ex_run x = {.m = m, .teacher = teacher, .o = o, .progress = progress, .user = user, .K = o->n_experts,
                .nv = o->tune.n_virtual, .dim = m->cfg.dim, .L = o->tune.seqlen};
    x.P = x.K * o->tune.steps * o->tune.batch;
    int *lab = NULL, *vlab = NULL;
    char *path = NULL;
    mend_tune_opts so = o->tune;
    so.windows = MEND_TUNE_WINDOWS_PARAGRAPH;
    if ((rc = mend_tune_sequences(m, texts, lens, n_texts, &so, &x.train, &x.n_train, &x.val, &x.n_val))) goto done;
    res->n_chunks = x.n_train;
    res->n_val_chunks = x.n_val;
    res->chunks_per_round = x.P;
    res->train_tokens = (int64_t)o->rounds * o->tune.steps * o->tune.batch * o->tune.seqlen;
    if ((int64_t)x.P * (o->rounds + 1) > x.n_train) {
        rc = mend_set_error(MEND_EINVAL, "experts: %d rounds and the router need %lld chunks of %d tokens (%d per "
                            "round), the corpora give %d: fewer steps, experts or rounds", o->rounds,
                            (long long)x.P * (o->rounds + 1), x.L, x.P, x.n_train);
        goto done;
    }
    x.perm = malloc(sizeof(int) * (size_t)x.n_train);
    x.E = malloc(sizeof(float) * (size_t)x.K * x.nv * x.dim);
    lab = malloc(sizeof(int) * (size_t)x.P);
    vlab = malloc(sizeof(int) * ((size_t)x.n_val + 1));
    if (!x.perm || !x.E || !lab || !vlab) {
        rc = mend_set_error(MEND_ENOMEM, "experts: out of memory");
        goto done;
    }
    mend_rng r;
    mend_rng_seed(&r, o->tune.seed ^ 0x6578706572747321ull);
    for (int i = 0; i < x.n_train; i++) x.perm[i] = i;
    mend_rng_shuffle(x.perm, x.n_train, &r);
    for (int k = 0; k < x.K; k++)
        memcpy(x.E + (size_t)k * x.nv * x.dim, o->tune.init_prompt, sizeof(float) * (size_t)x.nv * x.dim);
    for (int round = 0; round < o->rounds; round++) {
        free(path);
        if (!(path = pathf("%s/round-%d", o->out_dir, round))) {
            rc = MEND_ENOMEM;
            goto done;
        }
        if ((rc = mend_mkdir_p(path))) goto done;
        free(path);
        if (!(path = pathf("%s/round-%d/labels.json", o->out_dir, round))) {
            rc = MEND_ENOMEM;
            goto done;
        }
        if (mend_file_exists(path)) {
            if ((rc = read_labels(path, round, x.P, x.n_val, x.K, lab, vlab))) goto done;
        } else {
            if ((rc = label_round(&x, round, lab, vlab))) goto done;
            if ((rc = write_labels(path, round, lab, x.P, vlab, x.n_val, x.K))) goto done;
        }
        for (int k = 0; k < x.K; k++)
            if ((rc = train_expert(&x, round, k, lab, vlab))) goto done;
    }
    rc = finish(&x, res);
done:
    free(path);
    free(lab);
    free(vlab);
    free(x.perm);
    free(x.E);
    free(x.train);
    free(x.val);
    return rc;
}
