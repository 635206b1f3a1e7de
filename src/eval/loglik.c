/* Log-likelihood requests with lm-eval's rules (harness.h): encoding a
 * (context, continuation) pair, planning the requests of an example around
 * their shared prefix, and running plans one by one or packed into one
 * forward. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "util/util.h"
#include "kernels/ops.h"
#include "eval/harness_int.h"

/* Length of the context without its trailing whitespace (Python rstrip()). */
static size_t rstrip_len(const char *s) {
    size_t keep = 0;
    const unsigned char *p = (const unsigned char *)s, *e = p + strlen(s);
    while (*p) {
        uint32_t c;
        int used = eval_utf8_next(p, e, &c);
        p += used;
        if (!eval_is_space(c)) keep = (size_t)((const char *)p - s);
    }
    return keep;
}

int mend_eval_encode_pair(const mend_eval_backend *b, const char *context,
                          const char *continuation, int32_t **ctx_ids, size_t *n_ctx,
                          int32_t **cont_ids, size_t *n_cont) {
    *ctx_ids = *cont_ids = NULL;
    *n_ctx = *n_cont = 0;
    size_t lc = strlen(context), lk = strlen(continuation);
    int rc;
    if (lc == 0) {
        /* lm-eval: context_enc = [prefix], unless the continuation starts with it */
        int32_t *c = NULL;
        size_t nc = 0;
        if ((rc = b->tokenize(b->user, continuation, lk, &c, &nc))) return rc;
        int32_t *x = malloc(sizeof *x);
        if (!x) {
            free(c);
            return mend_set_error(MEND_ENOMEM, "encode pair: out of memory");
        }
        if (nc > 0 && c[0] == b->prefix_token) {
            x[0] = c[0];
            memmove(c, c + 1, (nc - 1) * sizeof *c);
            nc--;
        } else {
            x[0] = b->prefix_token;
        }
        *ctx_ids = x;
        *n_ctx = 1;
        *cont_ids = c;
        *n_cont = nc;
        return 0;
    }
    size_t keep = rstrip_len(context);
    char *whole = malloc(lc + lk + 1);
    if (!whole) return mend_set_error(MEND_ENOMEM, "encode pair: out of memory");
    memcpy(whole, context, lc);
    memcpy(whole + lc, continuation, lk);
    whole[lc + lk] = 0;
    int32_t *w = NULL, *c = NULL;
    size_t nw = 0, nc = 0;
    rc = b->tokenize(b->user, whole, lc + lk, &w, &nw);
    if (!rc) rc = b->tokenize(b->user, context, keep, &c, &nc);
    free(whole);
    if (rc) {
        free(w);
        free(c);
        return rc;
    }
    size_t ncont = nw > nc ? nw - nc : 0;
    int32_t *k = malloc((ncont ? ncont : 1) * sizeof *k);
    if (!k) {
        free(w);
        free(c);
        return mend_set_error(MEND_ENOMEM, "encode pair: out of memory");
    }
    if (ncont) memcpy(k, w + nc, ncont * sizeof *k);
    free(w);
    *ctx_ids = c;
    *n_ctx = nc;
    *cont_ids = k;
    *n_cont = ncont;
    return 0;
}

/* ---- log-softmax --------------------------------------------------------- */

/* First maximum of a row (torch.argmax). */
int32_t eval_row_argmax(const float *row, int n_vocab) {
    float mx = row[0];
    int32_t am = 0;
    for (int j = 1; j < n_vocab; j++)
        if (row[j] > mx) {
            mx = row[j];
            am = j;
        }
    return am;
}

/* log sum exp of a logits row (max-subtracted; exponentials in float by the
 * vector kernel, 2048 at a time, partial sums added in double) and its first
 * argmax (as torch.argmax). The row is left unchanged. */
static double row_lse(const float *row, int n_vocab, int32_t *argmax) {
    const int32_t am = eval_row_argmax(row, n_vocab);
    const float mx = row[am];
    float tmp[2048];
    double s = 0.0;
    for (int j = 0; j < n_vocab; j += 2048) {
        const int len = n_vocab - j < 2048 ? n_vocab - j : 2048;
        memcpy(tmp, row + j, (size_t)len * sizeof(float));
        s += (double)vec_exp_sum(len, tmp, mx);
    }
    *argmax = am;
    return (double)mx + log(s);
}

/* ---- loglikelihood with a shared prefix ---------------------------------- */

void eval_plan_free(eval_plan *p) {
    if (p->sq)
        for (int i = 0; i < p->n; i++) free(p->sq[i].full);
    free(p->sq);
    p->sq = NULL;
}

/* Rows one packed forward of this plan needs: the prefix once, then every
 * request's tail. */
int eval_plan_rows(const eval_plan *p) {
    int r = p->L;
    for (int i = 0; i < p->n; i++) r += p->sq[i].m - p->L;
    return r;
}

/* forward in chunks of max_batch; logits (rows x n_vocab) when want. */
int eval_run_span(const mend_eval_backend *b, const int32_t *toks, int from, int to,
                    float *logits, mend_eval_stats *st) {
    int mb = b->max_batch > 0 ? b->max_batch : 256;
    for (int p = from; p < to; p += mb) {
        int n = to - p < mb ? to - p : mb;
        float *lg = logits ? logits + (size_t)(p - from) * (size_t)b->n_vocab : NULL;
        int rc = b->forward(b->user, toks + p, n, p, lg, lg != NULL);
        if (rc) return rc;
        if (st) st->tokens_run += n;
    }
    return 0;
}

void mend_eval_scratch_free(mend_eval_backend *b) {
    if (!b) return;
    free(b->scratch);
    b->scratch = NULL;
    b->scratch_cap = 0;
    for (int l = 0; l < MEND_EVAL_MAX_LANES; l++) {
        free(b->lane_scratch[l]);
        b->lane_scratch[l] = NULL;
        b->lane_scratch_cap[l] = 0;
    }
}

/* The scratch grown to at least n floats (fresh large mallocs would be
 * page-faulted and zeroed by the kernel on every call). */
float *eval_scratch(mend_eval_backend *b, size_t n) {
    if (b->scratch_cap < n) {
        free(b->scratch);
        b->scratch = malloc(n * sizeof(float));
        b->scratch_cap = b->scratch ? n : 0;
    }
    return b->scratch;
}

/* The logits scratch of a lane (lane 0: the backend's). */
float *eval_lane_scratch(mend_eval_backend *b, int lane, size_t n) {
    if (lane <= 0) return eval_scratch(b, n);
    if (b->lane_scratch_cap[lane] < n) {
        free(b->lane_scratch[lane]);
        b->lane_scratch[lane] = malloc(n * sizeof(float));
        b->lane_scratch_cap[lane] = b->lane_scratch[lane] ? n : 0;
    }
    return b->lane_scratch[lane];
}

/* Tokenize the n requests into p (out: n results, zeroed here). */
int eval_plan_build(mend_eval_backend *b, int n, const char *const *contexts,
                      const char *const *continuations, mend_eval_ll *out, mend_eval_stats *stats,
                      eval_plan *p) {
    memset(p, 0, sizeof *p);
    if (n <= 0) return mend_set_error(MEND_EINVAL, "loglikelihood: no requests");
    memset(out, 0, (size_t)n * sizeof *out);
    p->n = n;
    p->out = out;
    p->sq = calloc((size_t)n, sizeof *p->sq);
    if (!p->sq) return mend_set_error(MEND_ENOMEM, "loglikelihood: out of memory");
    eval_seq *sq = p->sq;
    int window = b->window;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        int32_t *ci = NULL, *ki = NULL;
        size_t nci = 0, nki = 0;
        rc = mend_eval_encode_pair(b, contexts[i], continuations[i], &ci, &nci, &ki, &nki);
        if (rc) goto fail;
        if (nki == 0) {
            free(ci);
            free(ki);
            rc = mend_set_error(MEND_EINVAL, "continuation \"%.40s\" encodes to no tokens",
                                continuations[i]);
            goto fail;
        }
        if (nki > (size_t)window) {
            free(ci);
            free(ki);
            rc = mend_set_error(MEND_ERANGE,
                                "continuation of %zu tokens does not fit the window of %d tokens",
                                nki, window);
            goto fail;
        }
        size_t total = nci + nki, keep = total;
        if (total > (size_t)window + 1) {
            keep = (size_t)window + 1;
            out[i].truncated = 1;
            if (stats) stats->truncated++;
        }
        sq[i].full = malloc(keep * sizeof(int32_t));
        if (!sq[i].full) {
            free(ci);
            free(ki);
            rc = mend_set_error(MEND_ENOMEM, "loglikelihood: out of memory");
            goto fail;
        }
        /* last `keep` tokens of ci ++ ki */
        size_t skip = total - keep;
        size_t w = 0;
        for (size_t j = skip; j < nci; j++) sq[i].full[w++] = ci[j];
        size_t kstart = skip > nci ? skip - nci : 0;
        for (size_t j = kstart; j < nki; j++) sq[i].full[w++] = ki[j];
        free(ci);
        free(ki);
        sq[i].len = (int)keep;
        sq[i].n_cont = (int)nki;
        sq[i].m = (int)keep - 1;
        sq[i].f = sq[i].m - (int)nki;
        if (sq[i].m > p->max_m) p->max_m = sq[i].m;
        out[i].n_tokens = (int)nki;
        if (stats) stats->tokens_naive += sq[i].m;
    }
    /* longest common prefix of the inputs */
    int L = sq[0].m;
    for (int i = 1; i < n; i++) {
        int l = 0, lim = sq[i].m < L ? sq[i].m : L;
        while (l < lim && sq[i].full[l] == sq[0].full[l]) l++;
        L = l;
    }
    int s = L;
    for (int i = 0; i < n; i++)
        if (sq[i].f < s) s = sq[i].f;
    if (s < 0) s = 0;
    p->L = L;
    p->s = s;
    return 0;
fail:
    eval_plan_free(p);
    return rc;
}

/* Request i's ll from its logits rows: row(p) for input position p. */
static int plan_score(const mend_eval_backend *b, eval_plan *p, int i, int want_argmax,
                      const float *const *rows) {
    const eval_seq *q = &p->sq[i];
    mend_eval_ll *o = &p->out[i];
    if (want_argmax) {
        o->argmax = malloc((size_t)q->n_cont * sizeof(int32_t));
        if (!o->argmax) return mend_set_error(MEND_ENOMEM, "loglikelihood: out of memory");
    }
    double ll = 0.0;
    int greedy = 1;
    for (int k = 0; k < q->n_cont; k++) {
        const float *row = rows[k];
        int32_t target = q->full[q->f + k + 1], am;
        if (target < 0 || target >= b->n_vocab)
            return mend_set_error(MEND_ERANGE, "token id %d outside the vocabulary of %d", target,
                                  b->n_vocab);
        ll += (double)row[target] - row_lse(row, b->n_vocab, &am);
        if (am != target) greedy = 0;
        if (want_argmax) o->argmax[k] = am;
    }
    o->ll = ll;
    o->greedy = greedy;
    return 0;
}

/* One example through forward: the prefix once, then each request's tail. */
int eval_plan_run(mend_eval_backend *b, eval_plan *p, int want_argmax, mend_eval_stats *stats) {
    eval_seq *sq = p->sq;
    const int n = p->n, L = p->L, s = p->s;
    int max_rows = L - s, rc = 0;
    for (int i = 0; i < n; i++) {
        int c = sq[i].f > L ? sq[i].f : L;
        if (sq[i].m - c > max_rows) max_rows = sq[i].m - c;
    }
    size_t vocab = (size_t)b->n_vocab;
    size_t rows_p = (size_t)(L - s), rows_q = (size_t)(max_rows > 0 ? max_rows : 1);
    float *buf = eval_scratch(b, ((rows_p ? rows_p : 1) + rows_q) * vocab);
    if (!buf)
        return mend_set_error(MEND_ENOMEM, "loglikelihood: out of memory for %zu logits rows",
                              rows_p + rows_q);
    float *buf_p = buf, *buf_q = buf + (rows_p ? rows_p : 1) * vocab;
    int max_cont = 1;
    for (int i = 0; i < n; i++)
        if (sq[i].n_cont > max_cont) max_cont = sq[i].n_cont;
    const float **rows = malloc((size_t)max_cont * sizeof *rows);
    if (!rows) return mend_set_error(MEND_ENOMEM, "loglikelihood: out of memory");
    if (b->reserve && (rc = b->reserve(b->user, p->max_m))) goto done;
    /* shared prefix: [0, s) without logits, [s, L) with */
    if ((rc = eval_run_span(b, sq[0].full, 0, s, NULL, stats))) goto done;
    if ((rc = eval_run_span(b, sq[0].full, s, L, buf_p, stats))) goto done;
    for (int i = 0; i < n; i++) {
        int c = sq[i].f > L ? sq[i].f : L;
        if ((rc = eval_run_span(b, sq[i].full, L, c, NULL, stats))) goto done;
        if ((rc = eval_run_span(b, sq[i].full, c, sq[i].m, buf_q, stats))) goto done;
        for (int q = sq[i].f; q < sq[i].m; q++)
            rows[q - sq[i].f] = q < L ? buf_p + (size_t)(q - s) * vocab : buf_q + (size_t)(q - c) * vocab;
        if ((rc = plan_score(b, p, i, want_argmax, rows))) goto done;
    }
done:
    free(rows);
    return rc;
}

void eval_ll_release(mend_eval_ll *out, int n) {
    for (int i = 0; i < n; i++) {
        free(out[i].argmax);
        out[i].argmax = NULL;
    }
}

int mend_eval_loglikelihood(mend_eval_backend *b, int n, const char *const *contexts,
                            const char *const *continuations, int want_argmax,
                            mend_eval_ll *out, mend_eval_stats *stats) {
    eval_plan p;
    int rc = eval_plan_build(b, n, contexts, continuations, out, stats, &p);
    if (rc) return rc;
    rc = eval_plan_run(b, &p, want_argmax, stats);
    eval_plan_free(&p);
    if (rc) eval_ll_release(out, n);
    return rc;
}

/* Several examples' plans in one forward_rows call (rows <= max_batch):
 * each plan's prefix at consecutive slots, then its requests' tails, each
 * tail attending to its prefix and to itself. */
int eval_plans_run_packed(mend_eval_backend *b, int lane, eval_plan *const *ps, int np,
                            int want_argmax, mend_eval_stats *stats) {
    int n = 0, n_out = 0, max_cont = 1, rc = 0;
    for (int k = 0; k < np; k++) {
        const eval_plan *p = ps[k];
        n += eval_plan_rows(p);
        n_out += p->L - p->s;
        for (int i = 0; i < p->n; i++) {
            int c = p->sq[i].f > p->L ? p->sq[i].f : p->L;
            n_out += p->sq[i].m - c;
            if (p->sq[i].n_cont > max_cont) max_cont = p->sq[i].n_cont;
        }
    }
    const size_t vocab = (size_t)b->n_vocab;
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    mend_eval_row *rw = malloc((size_t)n * sizeof *rw);
    int *out_rows = malloc((size_t)(n_out ? n_out : 1) * sizeof *out_rows);
    int *lrow = malloc((size_t)n * sizeof *lrow);       /* row -> logits index, or -1 */
    const float **rows = malloc((size_t)max_cont * sizeof *rows);
    float *lg = eval_lane_scratch(b, lane, (size_t)(n_out ? n_out : 1) * vocab);
    if (!tok || !rw || !out_rows || !lrow || !rows || !lg) {
        rc = mend_set_error(MEND_ENOMEM, "loglikelihood: out of memory for %d rows", n);
        goto done;
    }
    int r = 0, o = 0;
    for (int k = 0; k < np; k++) {
        const eval_plan *p = ps[k];
        const int base = r;
        for (int j = 0; j < p->L; j++, r++) {
            tok[r] = p->sq[0].full[j];
            rw[r] = (mend_eval_row){.pos = j, .ctx0 = base, .ctx1 = base, .own0 = base};
            lrow[r] = j >= p->s ? o : -1;
            if (j >= p->s) out_rows[o++] = r;
        }
        for (int i = 0; i < p->n; i++) {
            const eval_seq *q = &p->sq[i];
            const int t0 = r, c = q->f > p->L ? q->f : p->L;
            for (int j = p->L; j < q->m; j++, r++) {
                tok[r] = q->full[j];
                rw[r] = (mend_eval_row){.pos = j, .ctx0 = base, .ctx1 = base + p->L, .own0 = t0};
                lrow[r] = j >= c ? o : -1;
                if (j >= c) out_rows[o++] = r;
            }
        }
    }
    if ((rc = b->forward_rows(b->user, lane, tok, n, NULL, rw, n_out ? lg : NULL, out_rows, n_out)))
        goto done;
    if (stats) stats->tokens_run += n;
    r = 0;
    for (int k = 0; k < np && !rc; k++) {
        eval_plan *p = ps[k];
        const int base = r;
        r += p->L;
        for (int i = 0; i < p->n && !rc; i++) {
            const eval_seq *q = &p->sq[i];
            const int t0 = r;
            r += q->m - p->L;
            for (int j = q->f; j < q->m; j++) {
                const int row = j < p->L ? base + j : t0 + (j - p->L);
                rows[j - q->f] = lg + (size_t)lrow[row] * vocab;
            }
            rc = plan_score(b, p, i, want_argmax, rows);
        }
    }
done:
    free(tok);
    free(rw);
    free(out_rows);
    free(lrow);
    free(rows);
    return rc;
}
