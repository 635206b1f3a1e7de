/* Zero-shot scoring with lm-evaluation-harness rules (see harness.h). */
#define _GNU_SOURCE
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "util/util.h"
#include "io/safetensors.h"
#include "eval/harness.h"
#include "kernels/ops.h"

/* ---- text helpers -------------------------------------------------------- */

/* The code point at p (NUL-terminated, end its end): its length, with
 * *cp = MEND_EVAL_BAD_CP for a byte that does not start a well-formed
 * sequence (decoded as one byte). */
#define MEND_EVAL_BAD_CP 0xFFFFFFFFu
static int utf8_next(const unsigned char *p, const unsigned char *end, uint32_t *cp) {
    int k = mend_utf8_decode((const char *)p, (size_t)(end - p), cp);
    if (k) return k;
    *cp = MEND_EVAL_BAD_CP;
    return 1;
}

/* Python's str.isspace() for the code points that occur in text. */
static int is_py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Simple lowercase mapping for the scripts that occur in trivia answers. */
static uint32_t lower_cp(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xC0) return c;
    if (c <= 0xDE && c != 0xD7) return c + 32;                       /* Latin-1 */
    if (c >= 0x100 && c <= 0x137) return (c & 1) ? c : c + 1;       /* Latin Ext-A */
    if (c == 0x130) return 'i';
    if (c >= 0x139 && c <= 0x148) return (c & 1) ? c + 1 : c;
    if (c >= 0x14A && c <= 0x177) return (c & 1) ? c : c + 1;
    if (c == 0x178) return 0xFF;
    if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c + 1 : c;
    if (c == 0x386) return 0x3AC;                                    /* Greek */
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;                     /* Cyrillic */
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    return c;
}

static int is_ascii_punct(uint32_t c) {
    return c < 0x80 && c > 0x20 && c != 0x7F && !(c >= '0' && c <= '9') &&
           !(c >= 'A' && c <= 'Z') && !(c >= 'a' && c <= 'z');
}

char *mend_eval_normalize(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(n * 2 + 1); /* a lowercase form is at most one byte longer per cp */
    if (!out) return NULL;
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (*p) {
        uint32_t c;
        int used = utf8_next(p, e, &c);
        if (c == MEND_EVAL_BAD_CP) {
            out[k++] = (char)*p;
            p += used;
            continue;
        }
        p += used;
        c = lower_cp(c);
        if (is_ascii_punct(c)) continue;
        k += (size_t)mend_utf8_encode(c, out + k);
    }
    out[k] = 0;
    return out;
}

int mend_eval_exact_match(const char *pred, const char *ref) {
    char *a = mend_eval_normalize(pred), *b = mend_eval_normalize(ref);
    int eq = a && b && strcmp(a, b) == 0;
    free(a);
    free(b);
    return eq;
}

char *mend_eval_strip(const char *s) {
    const unsigned char *p = (const unsigned char *)s, *e = p + strlen(s);
    const unsigned char *begin = NULL, *end = p;
    while (*p) {
        uint32_t c;
        int used = utf8_next(p, e, &c);
        if (!is_py_space(c)) {
            if (!begin) begin = p;
            end = p + used;
        }
        p += used;
    }
    if (!begin) return mend_strdup("");
    return mend_strndup((const char *)begin, (size_t)(end - begin));
}

/* ---- encode pair --------------------------------------------------------- */

/* Length of the context without its trailing whitespace (Python rstrip()). */
static size_t rstrip_len(const char *s) {
    size_t keep = 0;
    const unsigned char *p = (const unsigned char *)s, *e = p + strlen(s);
    while (*p) {
        uint32_t c;
        int used = utf8_next(p, e, &c);
        p += used;
        if (!is_py_space(c)) keep = (size_t)((const char *)p - s);
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
static int32_t row_argmax(const float *row, int n_vocab) {
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
    const int32_t am = row_argmax(row, n_vocab);
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

typedef struct seq {
    int32_t *full;  /* ctx ++ cont, truncated to window + 1 */
    int len;        /* tokens in full */
    int n_cont;
    int m;          /* input length = len - 1 */
    int f;          /* first scoring position in the input */
} seq;

/* The requests of one example, tokenized, with their common prefix. */
typedef struct ll_plan {
    int n;
    seq *sq;
    int L;          /* longest common prefix of the inputs */
    int s;          /* first position scored by any request (<= L) */
    int max_m;
    mend_eval_ll *out;
} ll_plan;

static void plan_free(ll_plan *p) {
    if (p->sq)
        for (int i = 0; i < p->n; i++) free(p->sq[i].full);
    free(p->sq);
    p->sq = NULL;
}

/* Rows one packed forward of this plan needs: the prefix once, then every
 * request's tail. */
static int plan_rows(const ll_plan *p) {
    int r = p->L;
    for (int i = 0; i < p->n; i++) r += p->sq[i].m - p->L;
    return r;
}

/* forward in chunks of max_batch; logits (rows x n_vocab) when want. */
static int run_span(const mend_eval_backend *b, const int32_t *toks, int from, int to,
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
static float *scratch_get(mend_eval_backend *b, size_t n) {
    if (b->scratch_cap < n) {
        free(b->scratch);
        b->scratch = malloc(n * sizeof(float));
        b->scratch_cap = b->scratch ? n : 0;
    }
    return b->scratch;
}

/* The logits scratch of a lane (lane 0: the backend's). */
static float *lane_scratch_get(mend_eval_backend *b, int lane, size_t n) {
    if (lane <= 0) return scratch_get(b, n);
    if (b->lane_scratch_cap[lane] < n) {
        free(b->lane_scratch[lane]);
        b->lane_scratch[lane] = malloc(n * sizeof(float));
        b->lane_scratch_cap[lane] = b->lane_scratch[lane] ? n : 0;
    }
    return b->lane_scratch[lane];
}

/* Tokenize the n requests into p (out: n results, zeroed here). */
static int plan_build(mend_eval_backend *b, int n, const char *const *contexts,
                      const char *const *continuations, mend_eval_ll *out, mend_eval_stats *stats,
                      ll_plan *p) {
    memset(p, 0, sizeof *p);
    if (n <= 0) return mend_set_error(MEND_EINVAL, "loglikelihood: no requests");
    memset(out, 0, (size_t)n * sizeof *out);
    p->n = n;
    p->out = out;
    p->sq = calloc((size_t)n, sizeof *p->sq);
    if (!p->sq) return mend_set_error(MEND_ENOMEM, "loglikelihood: out of memory");
    seq *sq = p->sq;
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
    plan_free(p);
    return rc;
}

/* Request i's ll from its logits rows: row(p) for input position p. */
static int plan_score(const mend_eval_backend *b, ll_plan *p, int i, int want_argmax,
                      const float *const *rows) {
    const seq *q = &p->sq[i];
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
static int plan_run(mend_eval_backend *b, ll_plan *p, int want_argmax, mend_eval_stats *stats) {
    seq *sq = p->sq;
    const int n = p->n, L = p->L, s = p->s;
    int max_rows = L - s, rc = 0;
    for (int i = 0; i < n; i++) {
        int c = sq[i].f > L ? sq[i].f : L;
        if (sq[i].m - c > max_rows) max_rows = sq[i].m - c;
    }
    size_t vocab = (size_t)b->n_vocab;
    size_t rows_p = (size_t)(L - s), rows_q = (size_t)(max_rows > 0 ? max_rows : 1);
    float *buf = scratch_get(b, ((rows_p ? rows_p : 1) + rows_q) * vocab);
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
    if ((rc = run_span(b, sq[0].full, 0, s, NULL, stats))) goto done;
    if ((rc = run_span(b, sq[0].full, s, L, buf_p, stats))) goto done;
    for (int i = 0; i < n; i++) {
        int c = sq[i].f > L ? sq[i].f : L;
        if ((rc = run_span(b, sq[i].full, L, c, NULL, stats))) goto done;
        if ((rc = run_span(b, sq[i].full, c, sq[i].m, buf_q, stats))) goto done;
        for (int q = sq[i].f; q < sq[i].m; q++)
            rows[q - sq[i].f] = q < L ? buf_p + (size_t)(q - s) * vocab : buf_q + (size_t)(q - c) * vocab;
        if ((rc = plan_score(b, p, i, want_argmax, rows))) goto done;
    }
done:
    free(rows);
    return rc;
}

static void ll_release(mend_eval_ll *out, int n) {
    for (int i = 0; i < n; i++) {
        free(out[i].argmax);
        out[i].argmax = NULL;
    }
}

int mend_eval_loglikelihood(mend_eval_backend *b, int n, const char *const *contexts,
                            const char *const *continuations, int want_argmax,
                            mend_eval_ll *out, mend_eval_stats *stats) {
    ll_plan p;
    int rc = plan_build(b, n, contexts, continuations, out, stats, &p);
    if (rc) return rc;
    rc = plan_run(b, &p, want_argmax, stats);
    plan_free(&p);
    if (rc) ll_release(out, n);
    return rc;
}

/* Several examples' plans in one forward_rows call (rows <= max_batch):
 * each plan's prefix at consecutive slots, then its requests' tails, each
 * tail attending to its prefix and to itself. */
static int plans_run_packed(mend_eval_backend *b, int lane, ll_plan *const *ps, int np,
                            int want_argmax, mend_eval_stats *stats) {
    int n = 0, n_out = 0, max_cont = 1, rc = 0;
    for (int k = 0; k < np; k++) {
        const ll_plan *p = ps[k];
        n += plan_rows(p);
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
    float *lg = lane_scratch_get(b, lane, (size_t)(n_out ? n_out : 1) * vocab);
    if (!tok || !rw || !out_rows || !lrow || !rows || !lg) {
        rc = mend_set_error(MEND_ENOMEM, "loglikelihood: out of memory for %d rows", n);
        goto done;
    }
    int r = 0, o = 0;
    for (int k = 0; k < np; k++) {
        const ll_plan *p = ps[k];
        const int base = r;
        for (int j = 0; j < p->L; j++, r++) {
            tok[r] = p->sq[0].full[j];
            rw[r] = (mend_eval_row){.pos = j, .ctx0 = base, .ctx1 = base, .own0 = base};
            lrow[r] = j >= p->s ? o : -1;
            if (j >= p->s) out_rows[o++] = r;
        }
        for (int i = 0; i < p->n; i++) {
            const seq *q = &p->sq[i];
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
        ll_plan *p = ps[k];
        const int base = r;
        r += p->L;
        for (int i = 0; i < p->n && !rc; i++) {
            const seq *q = &p->sq[i];
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

/* ---- generation ---------------------------------------------------------- */

/* The tokens generation conditions on: the context left-truncated to
 * window - max_tokens (counted in stats), an empty one replaced by the
 * prefix token. *ids is malloc'd; *ctx points into it. */
static int gen_context(const mend_eval_backend *b, const char *context, int max_tokens, int32_t **ids,
                       const int32_t **ctx, int *n_ctx, int *truncated, mend_eval_stats *stats) {
    size_t n = 0;
    *ids = NULL;
    int rc = b->tokenize(b->user, context, strlen(context), ids, &n);
    if (rc) return rc;
    const int max_ctx = b->window - max_tokens;
    if (max_ctx <= 0) {
        free(*ids);
        *ids = NULL;
        return mend_set_error(MEND_ERANGE, "generation of %d tokens does not fit the window of %d", max_tokens,
                              b->window);
    }
    *ctx = *ids;
    *truncated = n > (size_t)max_ctx;
    if (*truncated) {
        *ctx = *ids + (n - (size_t)max_ctx);
        n = (size_t)max_ctx;
        if (stats) stats->truncated++;
    }
    if (n == 0) {
        /* an empty context conditions on the prefix token */
        free(*ids);
        *ids = malloc(sizeof **ids);
        if (!*ids) return mend_set_error(MEND_ENOMEM, "generate: out of memory");
        (*ids)[0] = b->prefix_token;
        *ctx = *ids;
        n = 1;
    }
    *n_ctx = (int)n;
    return 0;
}

/* One greedy step of generation: am is the argmax of the last logits.
 * Returns 1 when generation has ended (end-of-generation token, a stop
 * string in the text so far, or max_tokens generated), 0 to go on with
 * gen[*ng - 1], < 0 on error. *text: the decoded generation so far. */
static int gen_step(const mend_eval_backend *b, int32_t am, int32_t *gen, int *ng, int max_tokens,
                    const char *const *until, int n_until, char **text) {
    if (b->is_eog && b->is_eog(b->user, am)) return 1;
    gen[(*ng)++] = am;
    free(*text);
    *text = NULL;
    int rc = b->detokenize(b->user, gen, (size_t)*ng, text);
    if (rc) return rc;   /* the error codes are negative */
    for (int u = 0; u < n_until; u++)
        if (until[u][0] && strstr(*text, until[u])) return 1;
    return *ng >= max_tokens;
}

/* lm-eval: for each stop string, generation = generation.split(term)[0].
 * Takes text (NULL: nothing generated) into *raw; *cut is the cut copy. */
static int gen_cut(char *text, const char *const *until, int n_until, char **raw, char **cut) {
    if (!text) text = mend_strdup("");
    if (!text) return mend_set_error(MEND_ENOMEM, "generate: out of memory");
    size_t keep = strlen(text);
    for (int u = 0; u < n_until; u++) {
        if (!until[u][0]) continue;
        char *hit = strstr(text, until[u]);
        if (hit && (size_t)(hit - text) < keep) keep = (size_t)(hit - text);
    }
    *cut = mend_strndup(text, keep);
    if (!*cut) {
        free(text);
        return mend_set_error(MEND_ENOMEM, "generate: out of memory");
    }
    *raw = text;
    return 0;
}

int mend_eval_generate(mend_eval_backend *b, const char *context, int max_tokens,
                       const char *const *until, int n_until, char **raw, char **cut,
                       mend_eval_stats *stats) {
    *raw = *cut = NULL;
    int32_t *ids = NULL;
    const int32_t *ctx = NULL;
    int n = 0, truncated = 0;
    int rc = gen_context(b, context, max_tokens, &ids, &ctx, &n, &truncated, stats);
    if (rc) return rc;
    float *logits = scratch_get(b, (size_t)b->n_vocab);
    int32_t *gen = malloc((size_t)(max_tokens + 1) * sizeof(int32_t));
    char *text = NULL;
    int ng = 0;
    if (!logits || !gen) {
        rc = mend_set_error(MEND_ENOMEM, "generate: out of memory");
        goto done;
    }
    if (b->reserve && (rc = b->reserve(b->user, n + max_tokens))) goto done;
    /* the context: all but the last token without logits, the last with */
    if ((rc = run_span(b, ctx, 0, n - 1, NULL, stats))) goto done;
    if ((rc = b->forward(b->user, ctx + n - 1, 1, n - 1, logits, 0))) goto done;
    if (stats) stats->tokens_run++;
    for (;;) {
        int st = gen_step(b, row_argmax(logits, b->n_vocab), gen, &ng, max_tokens, until, n_until, &text);
        if (st < 0) {
            rc = st;
            goto done;
        }
        if (st) break;
        int32_t last = gen[ng - 1];
        if ((rc = b->forward(b->user, &last, 1, n + ng - 1, logits, 0))) goto done;
        if (stats) stats->tokens_run++;
    }
    rc = gen_cut(text, until, n_until, raw, cut);
    text = NULL;
done:
    free(text);
    free(ids);
    free(gen);
    return rc;
}

/* ---- one example --------------------------------------------------------- */

void mend_eval_result_free(mend_eval_result *r) {
    if (!r) return;
    free(r->ll);
    free(r->greedy);
    free(r->n_tokens);
    free(r->n_chars);
    free(r->pred_text);
    free(r->raw_text);
    memset(r, 0, sizeof *r);
}

static char *prefix_space(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(n + 2);
    if (!o) return NULL;
    o[0] = ' ';
    memcpy(o + 1, s, n + 1);
    return o;
}

static const char *const GEN_UNTIL[] = {"\n", ".", ","};

/* The loglikelihood requests of one (non-generation) example. */
typedef struct ex_job {
    int n;
    const char **ctxs;
    char **conts;
    mend_eval_ll *ll;
    ll_plan plan;
} ex_job;

static void job_free(ex_job *j) {
    if (j->ll) {
        ll_release(j->ll, j->n);
        free(j->ll);
    }
    if (j->conts)
        for (int k = 0; k < j->n; k++) free(j->conts[k]);
    free(j->conts);
    free(j->ctxs);
    plan_free(&j->plan);
    memset(j, 0, sizeof *j);
}

/* The requests of example e (and r's per-choice arrays). */
static int job_setup(const mend_task *t, const mend_task_ex *e, mend_eval_result *r, ex_job *j) {
    memset(j, 0, sizeof *j);
    int n = (t->kind == MEND_TASK_LM) ? 1 : e->n_options;
    j->n = n;
    j->ctxs = calloc((size_t)n, sizeof *j->ctxs);
    j->conts = calloc((size_t)n, sizeof *j->conts);
    j->ll = calloc((size_t)n, sizeof *j->ll);
    r->ll = calloc((size_t)n, sizeof *r->ll);
    r->greedy = calloc((size_t)n, sizeof *r->greedy);
    r->n_tokens = calloc((size_t)n, sizeof *r->n_tokens);
    r->n_chars = calloc((size_t)n, sizeof *r->n_chars);
    r->n = n;
    if (!j->ctxs || !j->conts || !j->ll || !r->ll || !r->greedy || !r->n_tokens || !r->n_chars)
        return mend_set_error(MEND_ENOMEM, "out of memory");
    for (int k = 0; k < n; k++) {
        switch (t->kind) {
        case MEND_TASK_MC:
            j->ctxs[k] = e->context;
            j->conts[k] = prefix_space(e->options[k]);
            r->n_chars[k] = (int)mend_utf8_len(e->options[k]);
            break;
        case MEND_TASK_SCHEMA:
            j->ctxs[k] = e->options[k];
            j->conts[k] = prefix_space(e->continuation);
            r->n_chars[k] = (int)mend_utf8_len(e->options[k]);
            break;
        default:
            j->ctxs[k] = e->context;
            j->conts[k] = prefix_space(e->continuation);
            r->n_chars[k] = (int)mend_utf8_len(e->continuation);
            break;
        }
        if (!j->conts[k]) return mend_set_error(MEND_ENOMEM, "out of memory");
    }
    return 0;
}

/* r from the scored requests. */
static int job_finish(mend_eval_backend *b, const mend_task *t, const mend_task_ex *e,
                      const ex_job *j, mend_eval_result *r) {
    const int n = j->n;
    const mend_eval_ll *ll = j->ll;
    for (int k = 0; k < n; k++) {
        r->ll[k] = ll[k].ll;
        r->greedy[k] = ll[k].greedy;
        r->n_tokens[k] = ll[k].n_tokens;
        r->truncated += ll[k].truncated;
    }
    if (t->kind == MEND_TASK_LM) {
        r->acc = ll[0].greedy ? 1.0 : 0.0;
        r->pred = r->pred_norm = -1;
        return b->detokenize(b->user, ll[0].argmax, (size_t)ll[0].n_tokens, &r->pred_text);
    }
    /* np.argmax: first maximum */
    int pred = 0, pred_norm = 0;
    for (int k = 1; k < n; k++) {
        if (r->ll[k] > r->ll[pred]) pred = k;
        double a = r->ll[k] / (double)r->n_chars[k], c = r->ll[pred_norm] / (double)r->n_chars[pred_norm];
        if (a > c) pred_norm = k;
    }
    r->pred = pred;
    r->pred_norm = pred_norm;
    r->acc = pred == e->gold ? 1.0 : 0.0;
    r->acc_norm = pred_norm == e->gold ? 1.0 : 0.0;
    return 0;
}

/* Exact match of a generation against the answer and its aliases; takes
 * raw and cut (the generation cut at the stop strings) into r. */
static int gen_result(const mend_task_ex *e, char *raw, char *cut, mend_eval_result *r) {
    r->raw_text = raw;
    r->pred_text = cut;
    char *stripped = mend_eval_strip(r->pred_text);
    if (!stripped) return mend_set_error(MEND_ENOMEM, "out of memory");
    free(r->pred_text);
    r->pred_text = stripped;
    r->em = 0.0;
    for (int a = 0; a < e->n_options; a++)
        if (mend_eval_exact_match(r->pred_text, e->options[a])) {
            r->em = 1.0;
            break;
        }
    r->pred = -1;
    r->pred_norm = -1;
    return 0;
}

static int example_generate(mend_eval_backend *b, const mend_task *t, const mend_task_ex *e,
                            mend_eval_result *r, mend_eval_stats *stats) {
    char *raw = NULL, *cut = NULL;
    int rc = mend_eval_generate(b, e->context, MEND_EVAL_MAX_GEN, GEN_UNTIL, 3, &raw, &cut, stats);
    if (rc) return mend_error_prefix(rc, "%s:%d", t->path, e->line);
    return gen_result(e, raw, cut, r);
}

/* ---- lanes ----------------------------------------------------------------- */

/* One work item (a group of examples) on a lane; stats gets its positions. */
typedef int (*lane_item_fn)(mend_eval_backend *b, int lane, int item, void *ctx, mend_eval_stats *stats);

/* Items 0..n_items-1 over the backend's lanes (at most lanes of them). One
 * lane: in order, the forwards threaded as usual. More: each lane
 * single-threaded (no barrier inside a forward, so a thread that loses its
 * core holds up only its own lane), items handed out as lanes come free,
 * the rest skipped after a failure. Returns 0, or the error of the lowest
 * failed item (*bad) with that item's error text (which is per thread). */
static int lanes_run(mend_eval_backend *b, int lanes, int n_items, lane_item_fn fn, void *ctx,
                     mend_eval_stats *stats, int *bad) {
    if (lanes > b->n_lanes) lanes = b->n_lanes;
    if (lanes > MEND_EVAL_MAX_LANES) lanes = MEND_EVAL_MAX_LANES;
    if (lanes > n_items) lanes = n_items;
    if (lanes <= 1) {
        for (int g = 0; g < n_items; g++) {
            int rc = fn(b, 0, g, ctx, stats);
            if (rc) {
                *bad = g;
                return rc;
            }
        }
        return 0;
    }
    int bad_rc = 0;
    char bad_msg[512] = "";
    int64_t run = 0;
    *bad = -1;
#pragma omp parallel num_threads(lanes) reduction(+ : run)
    {
        const int lane = omp_get_thread_num();
        omp_set_num_threads(1);   /* this lane's forwards: one thread */
        mend_eval_stats ls;
        memset(&ls, 0, sizeof ls);
#pragma omp for schedule(dynamic, 1)
        for (int g = 0; g < n_items; g++) {
            int stop;
#pragma omp atomic read
            stop = bad_rc;
            if (stop) continue;
            int e = fn(b, lane, g, ctx, &ls);
            if (e) {
#pragma omp critical(mend_eval_lane_error)
                if (!bad_rc || g < *bad) {
                    *bad = g;
                    bad_rc = e;
                    snprintf(bad_msg, sizeof bad_msg, "%s", mend_last_error());
                }
            }
        }
        run += ls.tokens_run;
    }
    if (stats) stats->tokens_run += run;
    return bad_rc ? mend_set_error(bad_rc, "%s", bad_msg) : 0;
}

/* ---- batched generation --------------------------------------------------- */

/* One example of batched generation: its context and what it generated. */
typedef struct gen_job {
    int32_t *ids;           /* tokenized context (malloc'd) */
    const int32_t *ctx;     /* the conditioning tokens, inside ids */
    int n;                  /* their count */
    int base;               /* first text slot of its region while it runs, else -1 */
    int filled;             /* context tokens in the cache */
    int32_t gen[MEND_EVAL_MAX_GEN + 1];
    int ng, done;
    char *text;             /* the generation decoded so far */
} gen_job;

/* Text slots batched generation may take in one lane's cache. */
#define GEN_LANE_SLOTS 4096

/* Greedy generation of jobs[0..n) in one lane with continuous batching:
 * the cache is cut into n_reg regions of reg slots, a running example owns
 * one (its context, then its generated tokens) and attends to it alone, so
 * it generates what it generates alone (mend_eval_generate) up to float
 * rounding. Every forward takes one row per running example that is
 * generating, plus the context rows of examples being admitted (up to
 * max_batch rows); a finished example frees its region for the next one, so
 * the forwards stay full while short answers come and go. */
static int gen_run_lane(mend_eval_backend *b, int lane, gen_job *jobs, int n, int reg, int n_reg,
                        mend_eval_stats *stats) {
    const int max_gen = MEND_EVAL_MAX_GEN, cap = b->max_batch > 0 ? b->max_batch : 256;
    const size_t vocab = (size_t)b->n_vocab;
    int rc = b->reserve_lane(b->user, lane, reg * n_reg);
    if (rc) return rc;
    int32_t *tok = malloc((size_t)cap * sizeof *tok);
    int *slot = malloc((size_t)cap * sizeof *slot), *out_rows = malloc((size_t)cap * sizeof *out_rows);
    int *who = malloc((size_t)cap * sizeof *who), *free_reg = malloc((size_t)n_reg * sizeof *free_reg);
    mend_eval_row *rw = malloc((size_t)cap * sizeof *rw);
    const int max_out = n_reg < cap ? n_reg : cap;
    float *lg = lane_scratch_get(b, lane, (size_t)max_out * vocab);
    if (!tok || !slot || !out_rows || !who || !free_reg || !rw || !lg) {
        rc = mend_set_error(MEND_ENOMEM, "generate: out of memory");
        goto done;
    }
    int n_free = n_reg;
    for (int g = 0; g < n_reg; g++) free_reg[g] = (n_reg - 1 - g) * reg;
    for (int k = 0; k < n; k++) jobs[k].base = -1;
    int first = 0, next = 0;   /* jobs [first, next) were admitted */
    while (!rc) {
        /* admit while a region is free */
        while (next < n && n_free > 0) {
            jobs[next].base = free_reg[--n_free];
            jobs[next].filled = 0;
            next++;
        }
        int r = 0, o = 0;
        for (int k = first; k < next && r < cap; k++) {
            gen_job *J = &jobs[k];
            if (J->base < 0) continue;
            if (J->filled < J->n) {   /* context rows, as many as fit */
                while (J->filled < J->n && r < cap) {
                    const int j = J->filled++;
                    tok[r] = J->ctx[j];
                    slot[r] = J->base + j;
                    rw[r] = (mend_eval_row){.pos = j, .ctx0 = 0, .ctx1 = 0, .own0 = J->base};
                    if (J->filled == J->n) {
                        out_rows[o] = r;
                        who[o++] = k;
                    }
                    r++;
                }
            } else {                  /* the next token */
                const int p = J->n + J->ng - 1;
                tok[r] = J->gen[J->ng - 1];
                slot[r] = J->base + p;
                rw[r] = (mend_eval_row){.pos = p, .ctx0 = 0, .ctx1 = 0, .own0 = J->base};
                out_rows[o] = r;
                who[o++] = k;
                r++;
            }
        }
        if (!r) break;
        if ((rc = b->forward_rows(b->user, lane, tok, r, slot, rw, o ? lg : NULL, out_rows, o))) break;
        if (stats) stats->tokens_run += r;
        for (int q = 0; q < o && !rc; q++) {
            gen_job *J = &jobs[who[q]];
            int st = gen_step(b, row_argmax(lg + (size_t)q * vocab, b->n_vocab), J->gen, &J->ng, max_gen,
                              GEN_UNTIL, 3, &J->text);
            if (st < 0) rc = st;
            if (st == 1) {   /* finished: its region goes to the next example */
                J->done = 1;
                free_reg[n_free++] = J->base;
                J->base = -1;
            }
        }
        while (first < next && jobs[first].done) first++;
    }
done:
    free(tok);
    free(slot);
    free(out_rows);
    free(who);
    free(free_reg);
    free(rw);
    return rc;
}

typedef struct gen_share {
    gen_job *jobs;
    int n, shares, reg, n_reg;
} gen_share;

static int gen_share_run(mend_eval_backend *b, int lane, int item, void *ctx, mend_eval_stats *stats) {
    const gen_share *sh = ctx;
    const int k0 = (int)((int64_t)sh->n * item / sh->shares), k1 = (int)((int64_t)sh->n * (item + 1) / sh->shares);
    return gen_run_lane(b, lane, sh->jobs + k0, k1 - k0, sh->reg, sh->n_reg, stats);
}

/* Generation examples idx[0..n): the lanes each take a contiguous share
 * and run it with continuous batching (gen_run_lane). */
static int gen_examples_packed(mend_eval_backend *b, const mend_task *t, const size_t *idx, int n,
                               mend_eval_result *r, mend_eval_stats *stats) {
    const int max_gen = MEND_EVAL_MAX_GEN;
    gen_job *jobs = calloc((size_t)n, sizeof *jobs);
    int rc = jobs ? 0 : mend_set_error(MEND_ENOMEM, "generate: out of memory");
    int reg = 0;
    for (int k = 0; k < n && !rc; k++) {
        if (idx[k] >= t->n) {
            rc = mend_set_error(MEND_ERANGE, "%s: example %zu of %zu", t->path, idx[k], t->n);
            break;
        }
        const mend_task_ex *e = &t->ex[idx[k]];
        r[k].kind = t->kind;
        r[k].gold = e->gold;
        if ((rc = gen_context(b, e->context, max_gen, &jobs[k].ids, &jobs[k].ctx, &jobs[k].n, &r[k].truncated,
                              stats)))
            mend_error_prefix(rc, "%s:%d", t->path, e->line);
        else if (jobs[k].n + max_gen > reg)
            reg = jobs[k].n + max_gen;
    }
    /* regions as large as the longest context needs (<= the window), as
     * many as GEN_LANE_SLOTS and the window hold */
    const int lane_slots = b->window > 0 && b->window < GEN_LANE_SLOTS ? b->window : GEN_LANE_SLOTS;
    int n_reg = reg > 0 ? lane_slots / reg : 1;
    if (n_reg < 1) n_reg = 1;
    if (!rc) {
        /* one contiguous share of the examples per lane */
        int lanes = b->n_lanes < MEND_EVAL_MAX_LANES ? b->n_lanes : MEND_EVAL_MAX_LANES;
        if (lanes > n) lanes = n;
        if (lanes < 1) lanes = 1;
        gen_share sh = {jobs, n, lanes, reg, n_reg};
        int bad;
        if ((rc = lanes_run(b, lanes, lanes, gen_share_run, &sh, stats, &bad))) {
            const int k0 = (int)((int64_t)n * bad / lanes), k1 = (int)((int64_t)n * (bad + 1) / lanes);
            mend_error_prefix(rc, "%s:%d-%d", t->path, t->ex[idx[k0]].line, t->ex[idx[k1 - 1]].line);
        }
    }
    for (int k = 0; k < n && !rc; k++) {
        char *raw = NULL, *cut = NULL;
        rc = gen_cut(jobs[k].text, GEN_UNTIL, 3, &raw, &cut);
        jobs[k].text = NULL;
        if (!rc) rc = gen_result(&t->ex[idx[k]], raw, cut, &r[k]);
    }
    if (jobs)
        for (int k = 0; k < n; k++) {
            free(jobs[k].ids);
            free(jobs[k].text);
        }
    free(jobs);
    if (rc)
        for (int k = 0; k < n; k++) mend_eval_result_free(&r[k]);
    return rc;
}

int mend_eval_example(mend_eval_backend *b, const mend_task *t, size_t i,
                      mend_eval_result *r, mend_eval_stats *stats) {
    memset(r, 0, sizeof *r);
    if (i >= t->n) return mend_set_error(MEND_ERANGE, "%s: example %zu of %zu", t->path, i, t->n);
    const mend_task_ex *e = &t->ex[i];
    r->kind = t->kind;
    r->gold = e->gold;
    if (t->kind == MEND_TASK_GEN) {
        int rc = example_generate(b, t, e, r, stats);
        if (rc) mend_eval_result_free(r);
        return rc;
    }
    ex_job j;
    int rc = job_setup(t, e, r, &j);
    if (!rc) {
        rc = mend_eval_loglikelihood(b, j.n, j.ctxs, (const char *const *)j.conts,
                                     t->kind == MEND_TASK_LM, j.ll, stats);
        if (rc) mend_error_prefix(rc, "%s:%d", t->path, e->line);
    }
    if (!rc) rc = job_finish(b, t, e, &j, r);
    job_free(&j);
    if (rc) mend_eval_result_free(r);
    return rc;
}

typedef struct packed_groups {
    ll_plan **group;
    const int *gstart;      /* group g: plans [gstart[g], gstart[g+1]) */
    int want_argmax;
} packed_groups;

static int packed_group_run(mend_eval_backend *b, int lane, int g, void *ctx, mend_eval_stats *stats) {
    const packed_groups *pg = ctx;
    return plans_run_packed(b, lane, pg->group + pg->gstart[g], pg->gstart[g + 1] - pg->gstart[g], pg->want_argmax,
                            stats);
}

int mend_eval_examples(mend_eval_backend *b, const mend_task *t, const size_t *idx, int n,
                       mend_eval_result *r, mend_eval_stats *stats) {
    if (n <= 0) return 0;
    memset(r, 0, (size_t)n * sizeof *r);
    if (t->kind == MEND_TASK_GEN && b->forward_rows && b->reserve_lane) return gen_examples_packed(b, t, idx, n, r, stats);
    if (!b->forward_rows || t->kind == MEND_TASK_GEN) {
        for (int k = 0; k < n; k++) {
            int rc = mend_eval_example(b, t, idx[k], &r[k], stats);
            if (rc) {
                for (int u = 0; u < k; u++) mend_eval_result_free(&r[u]);
                return rc;
            }
        }
        return 0;
    }
    ex_job *jobs = calloc((size_t)n, sizeof *jobs);
    ll_plan **group = calloc((size_t)n, sizeof *group);
    int *gex = calloc((size_t)n, sizeof *gex);             /* example of each group slot */
    int *gstart = calloc((size_t)n + 2, sizeof *gstart);   /* group g: slots [gstart[g], gstart[g+1]) */
    int rc = 0, k = 0;
    const int want_argmax = t->kind == MEND_TASK_LM;
    /* rows per packed forward: at most max_batch, and never more slots than
     * the window (a soft prompt takes its share of the model's context) */
    int cap = b->max_batch > 0 ? b->max_batch : 256;
    if (b->window > 0 && cap > b->window) cap = b->window;
    if (!jobs || !group || !gex || !gstart) {
        rc = mend_set_error(MEND_ENOMEM, "out of memory");
        goto done;
    }
    /* tokenize everything first */
    int max_m = 0;
    for (k = 0; k < n; k++) {
        if (idx[k] >= t->n) {
            rc = mend_set_error(MEND_ERANGE, "%s: example %zu of %zu", t->path, idx[k], t->n);
            goto done;
        }
        const mend_task_ex *e = &t->ex[idx[k]];
        r[k].kind = t->kind;
        r[k].gold = e->gold;
        if (!(rc = job_setup(t, e, &r[k], &jobs[k])))
            rc = plan_build(b, jobs[k].n, jobs[k].ctxs, (const char *const *)jobs[k].conts,
                            jobs[k].ll, stats, &jobs[k].plan);
        if (rc) {
            mend_error_prefix(rc, "%s:%d", t->path, e->line);
            goto done;
        }
        if (jobs[k].plan.max_m > max_m) max_m = jobs[k].plan.max_m;
    }
    if (b->reserve && (rc = b->reserve(b->user, max_m > cap ? max_m : cap))) goto done;
    /* consecutive examples packed into forwards of at most cap rows; an
     * example larger than that runs alone, request by request (first) */
    int n_groups = 0, ng = 0, rows = 0;
    for (k = 0; k < n; k++) {
        const int rk = plan_rows(&jobs[k].plan);
        if (rk > cap) {
            if ((rc = plan_run(b, &jobs[k].plan, want_argmax, stats))) {
                mend_error_prefix(rc, "%s:%d", t->path, t->ex[idx[k]].line);
                goto done;
            }
            continue;
        }
        if (ng && rows + rk > cap) {
            gstart[n_groups + 1] = gstart[n_groups] + ng;
            n_groups++;
            ng = rows = 0;
        }
        group[gstart[n_groups] + ng] = &jobs[k].plan;
        gex[gstart[n_groups] + ng] = k;
        ng++;
        rows += rk;
    }
    if (ng) {
        gstart[n_groups + 1] = gstart[n_groups] + ng;
        n_groups++;
    }
    packed_groups pg = {group, gstart, want_argmax};
    int bad;
    if ((rc = lanes_run(b, b->n_lanes, n_groups, packed_group_run, &pg, stats, &bad))) {
        mend_error_prefix(rc, "%s:%d-%d", t->path, t->ex[idx[gex[gstart[bad]]]].line,
                          t->ex[idx[gex[gstart[bad + 1] - 1]]].line);
        goto done;
    }
    for (k = 0; k < n; k++)
        if ((rc = job_finish(b, t, &t->ex[idx[k]], &jobs[k], &r[k]))) goto done;
done:
    if (jobs)
        for (int u = 0; u < n; u++) job_free(&jobs[u]);
    free(jobs);
    free(group);
    free(gex);
    free(gstart);
    if (rc)
        for (int u = 0; u < n; u++) mend_eval_result_free(&r[u]);
    return rc;
}

/* ---- model backend ------------------------------------------------------- */

typedef struct model_be {
    mend_eval_backend be;
    const mend_model *m;
    const mend_tokenizer *tok;
    mend_state *st;
    int st_ctx;     /* text positions the state holds (beyond the prompt) */
    mend_state *lst[MEND_EVAL_MAX_LANES];   /* lanes 1..: their own states */
    int lst_ctx[MEND_EVAL_MAX_LANES];
    int ctx_len;    /* model context length */
    int dim;
    float *prompt;
    int n_virtual;
} model_be;

static int mb_tokenize(void *u, const char *text, size_t len, int32_t **ids, size_t *n) {
    model_be *mb = u;
    /* add_special as the tokenizer's default (lm-eval's HF backend leaves
     * add_special_tokens to the tokenizer); parse_special as HF does. */
    return mend_tokenize(mb->tok, text, len, 1, 1, ids, n);
}

/* Replace invalid UTF-8 (a generation cut inside a character) with U+FFFD,
 * as Python's bytes.decode(errors="replace") does; malloc'd. */
static char *utf8_sanitize(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(n * 3 + 1);
    if (!o) return NULL;
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (*p) {
        uint32_t c;
        int used = utf8_next(p, e, &c);
        if (c == MEND_EVAL_BAD_CP) {   /* surrogates and values past U+10FFFF included */
            k += (size_t)mend_utf8_encode(0xFFFD, o + k);
        } else {
            memcpy(o + k, p, (size_t)used);
            k += (size_t)used;
        }
        p += used;
    }
    o[k] = 0;
    return o;
}

static int mb_detokenize(void *u, const int32_t *ids, size_t n, char **text) {
    model_be *mb = u;
    /* skip special tokens as lm-eval's tok_decode does */
    int32_t *keep = malloc((n ? n : 1) * sizeof *keep);
    if (!keep) return mend_set_error(MEND_ENOMEM, "detokenize: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!mend_token_is_eog(mb->tok, ids[i]) && ids[i] != mend_token_bos(mb->tok))
            keep[k++] = ids[i];
    char *raw = NULL;
    int rc = mend_detokenize(mb->tok, keep, k, &raw);
    free(keep);
    if (rc) return rc;
    *text = utf8_sanitize(raw);
    free(raw);
    if (!*text) return mend_set_error(MEND_ENOMEM, "detokenize: out of memory");
    return 0;
}

/* Generation stops at the tokenizer's EOS only: lm-eval's HF backend stops
 * at generation_config.eos_token_id (plus the decoded EOS text in `until`);
 * other end-of-generation tokens (<|endoftext|>, ...) are generated and then
 * dropped by decoding with skip_special_tokens. */
static int mb_is_eog(void *u, int32_t id) {
    model_be *mb = u;
    return id == mend_token_eos(mb->tok);
}

/* Grow *st to hold n text positions after the prompt (whose KV is computed
 * once per state). */
static int state_reserve(model_be *mb, mend_state **st, int *st_ctx, int n) {
    if (n <= *st_ctx && *st) return 0;
    int want = *st_ctx > 0 ? *st_ctx : 512;
    while (want < n) want *= 2;
    int cap = mb->ctx_len - mb->n_virtual;
    if (want > cap) want = cap;
    if (n > want)
        return mend_set_error(MEND_ERANGE, "sequence of %d tokens exceeds the model window of %d",
                              n, cap);
    mend_state_free(*st);
    *st = NULL;
    *st_ctx = 0;
    int mbatch = mb->be.max_batch > mb->n_virtual ? mb->be.max_batch : mb->n_virtual;
    int rc = mend_state_new(st, mb->m, want + mb->n_virtual, mbatch);
    if (rc) return rc;
    if (mb->n_virtual > 0) {
        rc = mend_forward(*st, NULL, mb->prompt, mb->n_virtual, 0, NULL, 0);
        if (rc) {
            mend_state_free(*st);
            *st = NULL;
            return rc;
        }
    }
    *st_ctx = want;
    return 0;
}

static int mb_reserve(void *u, int n) {
    model_be *mb = u;
    return state_reserve(mb, &mb->st, &mb->st_ctx, n);
}

static int mb_forward(void *u, const int32_t *tokens, int n, int pos, float *logits,
                      int logits_all) {
    model_be *mb = u;
    if (!mb->st || pos + n > mb->st_ctx) {
        int rc = mb_reserve(u, pos + n);
        if (rc) return rc;
        if (pos > 0)
            return mend_set_error(MEND_EINVAL, "forward at %d after the state was resized", pos);
    }
    return mend_forward(mb->st, tokens, NULL, n, mb->n_virtual + pos, logits, logits_all);
}

static int mb_forward_rows(void *u, int lane, const int32_t *tokens, int n, const int *slots,
                           const mend_eval_row *rows, float *logits, const int *out_rows, int n_out) {
    model_be *mb = u;
    if (lane < 0 || lane >= MEND_EVAL_MAX_LANES)
        return mend_set_error(MEND_EINVAL, "forward: lane %d of %d", lane, MEND_EVAL_MAX_LANES);
    mend_state **st = lane ? &mb->lst[lane] : &mb->st;
    int *st_ctx = lane ? &mb->lst_ctx[lane] : &mb->st_ctx;
    const int nv = mb->n_virtual;
    int *abs_slots = NULL;
    if (slots) {
        /* rows of a running generation group: the cache must not move */
        abs_slots = malloc((size_t)n * sizeof *abs_slots);
        if (!abs_slots) return mend_set_error(MEND_ENOMEM, "forward: out of memory for %d rows", n);
        for (int i = 0; i < n; i++) {
            if (!*st || slots[i] < 0 || slots[i] >= *st_ctx) {
                free(abs_slots);
                return mend_set_error(MEND_ERANGE, "forward: slot %d of lane %d is outside its reserved %d", slots[i],
                                      lane, *st ? *st_ctx : 0);
            }
            abs_slots[i] = slots[i] + nv;
        }
    } else if (!*st || n > *st_ctx) {
        int rc = state_reserve(mb, st, st_ctx, n > mb->st_ctx ? n : mb->st_ctx);
        if (rc) return rc;
    }
    mend_row *mr = malloc((size_t)n * sizeof *mr);
    if (!mr) {
        free(abs_slots);
        return mend_set_error(MEND_ENOMEM, "forward: out of memory for %d rows", n);
    }
    for (int i = 0; i < n; i++)
        mr[i] = (mend_row){.pos = rows[i].pos + nv, .a0 = 0, .a1 = nv, .b0 = rows[i].ctx0 + nv,
                           .b1 = rows[i].ctx1 + nv, .c0 = rows[i].own0 + nv};
    int rc = abs_slots ? mend_forward_rows_at(*st, tokens, n, abs_slots, mr, logits, out_rows, n_out)
                       : mend_forward_rows(*st, tokens, n, nv, mr, logits, out_rows, n_out);
    free(mr);
    free(abs_slots);
    return rc;
}

static int mb_reserve_lane(void *u, int lane, int n) {
    model_be *mb = u;
    if (lane < 0 || lane >= MEND_EVAL_MAX_LANES)
        return mend_set_error(MEND_EINVAL, "reserve: lane %d of %d", lane, MEND_EVAL_MAX_LANES);
    return lane ? state_reserve(mb, &mb->lst[lane], &mb->lst_ctx[lane], n)
                : state_reserve(mb, &mb->st, &mb->st_ctx, n);
}

int mend_eval_backend_model(mend_eval_backend **out, const mend_model *m, const float *prompt,
                            int n_virtual, int window, int max_batch) {
    *out = NULL;
    mend_model_info info;
    mend_model_get_info(m, &info);
    model_be *mb = calloc(1, sizeof *mb);
    if (!mb) return mend_set_error(MEND_ENOMEM, "eval backend: out of memory");
    mb->m = m;
    mb->tok = mend_model_tokenizer(m);
    mb->ctx_len = info.ctx_len > 0 ? info.ctx_len : 2048;
    mb->dim = info.dim;
    mb->n_virtual = n_virtual > 0 ? n_virtual : 0;
    if (mb->n_virtual >= mb->ctx_len) {
        int ctx_len = mb->ctx_len;
        free(mb);
        return mend_set_error(MEND_ERANGE, "soft prompt of %d tokens fills the context of %d",
                              n_virtual, ctx_len);
    }
    if (mb->n_virtual) {
        size_t cnt;
        if (!mend_mul_ok((size_t)mb->n_virtual, (size_t)info.dim, &cnt) ||
            !(mb->prompt = malloc(cnt * sizeof(float)))) {
            free(mb);
            return mend_set_error(MEND_ENOMEM, "eval backend: out of memory for the prompt");
        }
        memcpy(mb->prompt, prompt, cnt * sizeof(float));
    }
    int cap = mb->ctx_len - mb->n_virtual;
    mend_eval_backend *b = &mb->be;
    b->user = mb;
    b->n_vocab = info.n_vocab;
    b->window = (window > 0 && window < cap) ? window : cap;
    b->max_batch = max_batch > 0 ? max_batch : 256;
    int32_t bos = mend_token_bos(mb->tok);
    b->prefix_token = bos >= 0 ? bos : mend_token_eos(mb->tok);
    b->tokenize = mb_tokenize;
    b->detokenize = mb_detokenize;
    b->reserve = mb_reserve;
    b->forward = mb_forward;
    b->forward_rows = mb_forward_rows;
    b->reserve_lane = mb_reserve_lane;
    b->n_lanes = omp_get_max_threads();
    if (b->n_lanes > MEND_EVAL_MAX_LANES) b->n_lanes = MEND_EVAL_MAX_LANES;
    b->is_eog = mb_is_eog;
    *out = b;
    return 0;
}

void mend_eval_backend_free(mend_eval_backend *b) {
    if (!b) return;
    model_be *mb = (model_be *)b;
    mend_eval_scratch_free(b);
    mend_state_free(mb->st);
    for (int l = 0; l < MEND_EVAL_MAX_LANES; l++) mend_state_free(mb->lst[l]);
    free(mb->prompt);
    free(mb);
}
