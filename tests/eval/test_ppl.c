/* Perplexity protocols on a synthetic scorer: the window cutting, the BOS
 * substitution, the scored positions and the two averaging rules are checked
 * against values computed here directly from the protocol definitions. */
#include "test.h"
#include "eval/ppl.h"

/* A fake model: -log p(next | ..., cur) depends on (cur, next, position). */
static double fake_nll(int32_t cur, int32_t next, int pos) {
    return 0.1 + 0.37 * ((cur * 7 + next * 3 + pos) % 11) + 0.01 * pos;
}

typedef struct rec {
    int calls;
    int n_seen, first_seen;
    int32_t first_tok[64];     /* win[0] of each call */
    int32_t second_tok[64];    /* win[1] of each call */
    int fail_at;               /* call index that returns an error, -1 none */
    int nan_at;                /* call index that returns a NaN, -1 none */
} rec;

static int fake_score(void *user, const int32_t *win, int n, int first, double *nll) {
    rec *r = user;
    if (r->calls < 64) {
        r->first_tok[r->calls] = win[0];
        r->second_tok[r->calls] = win[1];
    }
    r->n_seen = n;
    r->first_seen = first;
    int call = r->calls++;
    if (call == r->fail_at) return MEND_EIO;
    for (int p = first; p < n - 1; p++) nll[p - first] = fake_nll(win[p], win[p + 1], p);
    if (call == r->nan_at) nll[0] = NAN;
    return 0;
}

typedef struct prog {
    int calls, last_done, last_total;
    double last_ppl;
    int cancel_at;
} prog;

static int on_prog(void *user, int done, int total, double ppl) {
    prog *p = user;
    p->calls++;
    p->last_done = done;
    p->last_total = total;
    p->last_ppl = ppl;
    return p->cancel_at && done == p->cancel_at;
}

static int32_t *make_tokens(size_t n) {
    int32_t *t = malloc(n * sizeof *t);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        t[i] = (int32_t)((x >> 16) % 1000) + 10;   /* never 0..9 (used as BOS) */
    }
    return t;
}

/* expected values straight from the definitions */
static void expect(const int32_t *tok, int n_ctx, int n_win, int first, int32_t bos, double *ppl_tokmean,
                   double *ppl_winmean, double *err, int64_t *count) {
    double sum = 0, wsum = 0;
    int64_t c = 0;
    double *all = malloc(sizeof(double) * (size_t)n_ctx * n_win);
    for (int w = 0; w < n_win; w++) {
        const int32_t *x = tok + (size_t)w * n_ctx;
        double s = 0;
        int k = 0;
        for (int p = first; p <= n_ctx - 2; p++) {
            int32_t cur = (p == 0 && bos >= 0) ? bos : x[p];
            double v = fake_nll(cur, x[p + 1], p);
            s += v;
            all[c++] = v;
            k++;
        }
        sum += s;
        wsum += s / k;
    }
    double mean = sum / c, ss = 0;
    for (int64_t i = 0; i < c; i++) ss += (all[i] - mean) * (all[i] - mean);
    *ppl_tokmean = exp(mean);
    *ppl_winmean = exp(wsum / n_win);
    *err = exp(mean) * sqrt(ss / c / (c - 1));
    *count = c;
    free(all);
}

int main(void) {
    const size_t N = 1000;
    int32_t *tok = make_tokens(N);
    mend_ppl_result r;
    double e_tok, e_win, e_err;
    int64_t e_cnt;

    /* gptq, n_ctx 64: 15 windows (960 tokens), 63 scored each, first = 0 */
    {
        rec rc = {.fail_at = -1, .nan_at = -1};
        prog pg = {0};
        mend_ppl_opts o = {.protocol = MEND_PPL_GPTQ, .n_ctx = 64, .bos = 5};
        CHECK_OK(mend_ppl_run(tok, N, &o, fake_score, &rc, on_prog, &pg, &r));
        CHECK(r.n_chunks == 15);
        CHECK(r.n_ctx == 64);
        CHECK(r.n_scored == 15 * 63);
        CHECK(rc.calls == 15);
        CHECK(rc.first_seen == 0 && rc.n_seen == 64);
        CHECK(rc.first_tok[0] == tok[0] && rc.first_tok[3] == tok[3 * 64]);   /* no BOS in gptq */
        expect(tok, 64, 15, 0, -1, &e_tok, &e_win, &e_err, &e_cnt);
        CHECK(e_cnt == r.n_scored);
        CHECK_NEAR(r.ppl, e_win, 1e-9 * e_win);
        CHECK_NEAR(r.ppl, e_tok, 1e-9 * e_tok);   /* equal windows: the two means agree */
        CHECK_NEAR(r.ppl_err, e_err, 1e-9);
        CHECK(pg.calls == 15 && pg.last_done == 15 && pg.last_total == 15);
        CHECK_NEAR(pg.last_ppl, r.ppl, 1e-12);
    }
    /* gptq with the default n_ctx 2048 on too few tokens: a clear error */
    {
        rec rc = {.fail_at = -1, .nan_at = -1};
        mend_ppl_opts o = {.protocol = MEND_PPL_GPTQ};
        CHECK_ERR(mend_ppl_run(tok, N, &o, fake_score, &rc, NULL, NULL, &r), MEND_EINVAL, "needs at least 2048");
        CHECK(rc.calls == 0);
    }
    /* gptq exactly one window */
    {
        rec rc = {.fail_at = -1, .nan_at = -1};
        mend_ppl_opts o = {.protocol = MEND_PPL_GPTQ, .n_ctx = 1000};
        CHECK_OK(mend_ppl_run(tok, N, &o, fake_score, &rc, NULL, NULL, &r));
        CHECK(r.n_chunks == 1 && r.n_scored == 999);
    }
    /* llamacpp, n_ctx 100 with BOS: 10 chunks, positions 50..98 scored (49 per chunk) */
    {
        rec rc = {.fail_at = -1, .nan_at = -1};
        prog pg = {0};
        mend_ppl_opts o = {.protocol = MEND_PPL_LLAMACPP, .n_ctx = 100, .bos = 1};
        CHECK_OK(mend_ppl_run(tok, N, &o, fake_score, &rc, on_prog, &pg, &r));
        CHECK(r.n_chunks == 10);
        CHECK(r.n_scored == 10 * 49);
        CHECK(rc.first_seen == 50 && rc.n_seen == 100);
        CHECK(rc.first_tok[0] == 1 && rc.first_tok[9] == 1);      /* BOS replaces token 0 */
        CHECK(rc.second_tok[2] == tok[2 * 100 + 1]);              /* ... and only token 0 */
        expect(tok, 100, 10, 50, 1, &e_tok, &e_win, &e_err, &e_cnt);
        CHECK_NEAR(r.ppl, e_tok, 1e-9 * e_tok);
        CHECK_NEAR(r.ppl_err, e_err, 1e-9);
        CHECK_NEAR(r.nll_sum, log(e_tok) * e_cnt, 1e-6);
        CHECK(pg.calls == 10);
    }
    /* llamacpp without BOS (add_bos false, as SmolLM2), odd n_ctx 99: first 49, scored 49..97 */
    {
        rec rc = {.fail_at = -1, .nan_at = -1};
        mend_ppl_opts o = {.protocol = MEND_PPL_LLAMACPP, .n_ctx = 99, .bos = -1};
        CHECK_OK(mend_ppl_run(tok, N, &o, fake_score, &rc, NULL, NULL, &r));
        CHECK(r.n_chunks == 10);   /* 1000 / 99 */
        CHECK(r.n_scored == 10 * 49);
        CHECK(rc.first_tok[4] == tok[4 * 99]);
        expect(tok, 99, 10, 49, -1, &e_tok, &e_win, &e_err, &e_cnt);
        CHECK_NEAR(r.ppl, e_tok, 1e-9 * e_tok);
    }
    /* llamacpp default n_ctx 512 needs 1024 tokens */
    {
        rec rc = {.fail_at = -1, .nan_at = -1};
        mend_ppl_opts o = {.protocol = MEND_PPL_LLAMACPP};
        CHECK_ERR(mend_ppl_run(tok, N, &o, fake_score, &rc, NULL, NULL, &r), MEND_EINVAL, "at least 1024");
        CHECK(rc.calls == 0);
    }
    /* --chunks limits the windows */
    {
        rec rc = {.fail_at = -1, .nan_at = -1};
        mend_ppl_opts o = {.protocol = MEND_PPL_LLAMACPP, .n_ctx = 100, .n_chunks = 3, .bos = -1};
        CHECK_OK(mend_ppl_run(tok, N, &o, fake_score, &rc, NULL, NULL, &r));
        CHECK(r.n_chunks == 3 && rc.calls == 3 && r.n_scored == 3 * 49);
        expect(tok, 100, 3, 50, -1, &e_tok, &e_win, &e_err, &e_cnt);
        CHECK_NEAR(r.ppl, e_tok, 1e-9 * e_tok);
        o.n_chunks = 1000;   /* more than there are: all */
        CHECK_OK(mend_ppl_run(tok, N, &o, fake_score, &rc, NULL, NULL, &r));
        CHECK(r.n_chunks == 10);
    }
    /* window_nll: each window's mean nll over its scored positions, and
     * nothing written past the windows scored */
    {
        rec rc = {.fail_at = -1, .nan_at = -1};
        double w[4] = {0, 0, 0, -7};
        mend_ppl_opts o = {.protocol = MEND_PPL_LLAMACPP, .n_ctx = 100, .n_chunks = 3, .bos = -1, .window_nll = w};
        CHECK_OK(mend_ppl_run(tok, N, &o, fake_score, &rc, NULL, NULL, &r));
        for (int c = 0; c < 3; c++) {
            double s = 0;   /* positions 50..98 of window c predict 51..99 */
            for (int p = 50; p <= 98; p++) s += fake_nll(tok[c * 100 + p], tok[c * 100 + p + 1], p);
            CHECK_NEAR(w[c], s / 49, 1e-12);
        }
        CHECK(w[3] == -7);
        /* gptq: the perplexity is exp of the mean of the window means */
        double g[15];
        mend_ppl_opts og = {.protocol = MEND_PPL_GPTQ, .n_ctx = 64, .window_nll = g};
        CHECK_OK(mend_ppl_run(tok, N, &og, fake_score, &rc, NULL, NULL, &r));
        double m = 0;
        for (int c = 0; c < 15; c++) m += g[c] / 15;
        CHECK_NEAR(log(r.ppl), m, 1e-12);
    }
    /* errors: scorer failure, NaN, cancel, bad options */
    {
        rec rc = {.fail_at = 2, .nan_at = -1};
        mend_ppl_opts o = {.protocol = MEND_PPL_GPTQ, .n_ctx = 64};
        CHECK_ERR(mend_ppl_run(tok, N, &o, fake_score, &rc, NULL, NULL, &r), MEND_EIO, "window 2");
        rec rn = {.fail_at = -1, .nan_at = 1};
        CHECK_ERR(mend_ppl_run(tok, N, &o, fake_score, &rn, NULL, NULL, &r), MEND_ERANGE, "not finite");
        rec rk = {.fail_at = -1, .nan_at = -1};
        prog pg = {.cancel_at = 4};
        CHECK_ERR(mend_ppl_run(tok, N, &o, fake_score, &rk, on_prog, &pg, &r), MEND_EINVAL, "cancelled");
        CHECK(rk.calls == 4);
        o.protocol = 7;
        CHECK_ERR(mend_ppl_run(tok, N, &o, fake_score, &rk, NULL, NULL, &r), MEND_EINVAL, "protocol");
        o.protocol = MEND_PPL_GPTQ;
        o.n_ctx = 1;
        CHECK_ERR(mend_ppl_run(tok, N, &o, fake_score, &rk, NULL, NULL, &r), MEND_EINVAL, "n_ctx");
        o.n_ctx = 64;
        CHECK_ERR(mend_ppl_run(tok, N, &o, NULL, NULL, NULL, NULL, &r), MEND_EINVAL, NULL);
        CHECK_ERR(mend_ppl_run(NULL, N, &o, fake_score, &rk, NULL, NULL, &r), MEND_EINVAL, NULL);
    }
    /* option defaults */
    {
        mend_ppl_opts o = {.protocol = MEND_PPL_GPTQ}, out;
        CHECK_OK(mend_ppl_resolve_opts(&o, &out));
        CHECK(out.n_ctx == 2048 && out.n_batch == 512 && out.bos == -1);
        o.protocol = MEND_PPL_LLAMACPP;
        o.bos = 1;
        CHECK_OK(mend_ppl_resolve_opts(&o, &out));
        CHECK(out.n_ctx == 512 && out.n_batch == 512 && out.bos == 1);
        CHECK(mend_ppl_first(MEND_PPL_LLAMACPP, 512) == 256 && mend_ppl_first(MEND_PPL_GPTQ, 2048) == 0);
    }
    /* nll from logits against a long-double log-softmax */
    {
        enum { V = 5000 };
        static float lg[V];
        uint32_t x = 99;
        for (int i = 0; i < V; i++) {
            x = x * 1664525u + 1013904223u;
            lg[i] = ((int)(x >> 8) % 20000) / 1000.0f - 10.0f;
        }
        long double mx = lg[0], s = 0;
        for (int i = 1; i < V; i++) if (lg[i] > mx) mx = lg[i];
        for (int i = 0; i < V; i++) s += expl((long double)lg[i] - mx);
        for (int t = 0; t < V; t += 997) {
            long double want = -((long double)lg[t] - mx - logl(s));
            CHECK_NEAR(mend_nll_from_logits(lg, V, t), (double)want, 1e-5);
        }
    }
    free(tok);
    return test_finish();
}
