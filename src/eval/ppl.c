/* Perplexity protocols over a token sequence; see eval/ppl.h for the exact
 * window and scoring rules. The loop (mend_ppl_run) is independent of the
 * model: a scorer returns the per-position negative log-likelihoods of one
 * window, so the arithmetic is testable with a synthetic scorer, and
 * mend_perplexity plugs in the forward pass. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/ppl.h"
#include "util/util.h"

int mend_ppl_first(int protocol, int n_ctx) {
    return protocol == MEND_PPL_LLAMACPP ? n_ctx / 2 : 0;
}

int mend_ppl_resolve_opts(const mend_ppl_opts *in, mend_ppl_opts *out) {
    mend_ppl_opts o = {0};
    o.bos = -1;
    if (in) o = *in;
    if (o.protocol != MEND_PPL_GPTQ && o.protocol != MEND_PPL_LLAMACPP)
        return mend_set_error(MEND_EINVAL, "perplexity: protocol %d is not gptq (0) or llamacpp (1)",
                              o.protocol);
    if (o.n_ctx == 0) o.n_ctx = o.protocol == MEND_PPL_GPTQ ? MEND_PPL_GPTQ_CTX : MEND_PPL_LLAMACPP_CTX;
    int min_ctx = o.protocol == MEND_PPL_GPTQ ? 2 : 4;
    if (o.n_ctx < min_ctx || o.n_ctx > MEND_PPL_MAX_CTX)
        return mend_set_error(MEND_EINVAL, "perplexity: n_ctx %d is outside [%d, %d]", o.n_ctx,
                              min_ctx, MEND_PPL_MAX_CTX);
    if (o.n_batch < 0)
        return mend_set_error(MEND_EINVAL, "perplexity: n_batch %d is negative", o.n_batch);
    if (o.n_batch == 0) o.n_batch = o.n_ctx < MEND_PPL_MAX_BATCH ? o.n_ctx : MEND_PPL_MAX_BATCH;
    if (o.n_batch > o.n_ctx) o.n_batch = o.n_ctx;
    if (o.n_chunks < 0) o.n_chunks = 0;
    if (o.protocol == MEND_PPL_GPTQ) o.bos = -1;
    *out = o;
    return 0;
}

double mend_nll_from_logits(const float *logits, int n_vocab, int32_t target) {
    float mx = logits[0];
    for (int i = 1; i < n_vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) sum += expf(logits[i] - mx);
    return (double)mx + log(sum) - (double)logits[target];
}

int mend_ppl_run(const int32_t *tokens, size_t n_tokens, const mend_ppl_opts *opts,
                 mend_ppl_score_fn score, void *score_user,
                 mend_ppl_progress_fn progress, void *progress_user, mend_ppl_result *res) {
    if (!score || !res || (n_tokens && !tokens))
        return mend_set_error(MEND_EINVAL, "perplexity: tokens, scorer and result must be given");
    memset(res, 0, sizeof *res);
    mend_ppl_opts o;
    int rc = mend_ppl_resolve_opts(opts, &o);
    if (rc) return rc;

    const size_t ctx = (size_t)o.n_ctx;
    if (o.protocol == MEND_PPL_LLAMACPP && n_tokens < 2 * ctx)
        return mend_set_error(MEND_EINVAL,
                              "perplexity (llamacpp): the text has %zu tokens; n_ctx %d needs at least %zu",
                              n_tokens, o.n_ctx, 2 * ctx);
    if (n_tokens < ctx)
        return mend_set_error(MEND_EINVAL,
                              "perplexity (gptq): the text has %zu tokens; n_ctx %d needs at least %zu",
                              n_tokens, o.n_ctx, ctx);
    size_t n_max = n_tokens / ctx;
    if (n_max > (size_t)INT32_MAX) n_max = INT32_MAX;
    int n_chunk = (int)n_max;
    if (o.n_chunks > 0 && o.n_chunks < n_chunk) n_chunk = o.n_chunks;

    const int first = mend_ppl_first(o.protocol, o.n_ctx);
    const int n_score = o.n_ctx - 1 - first;   /* >= 1 by the n_ctx minimum */
    int32_t *win = malloc(ctx * sizeof *win);
    double *nll = malloc((size_t)n_score * sizeof *nll);
    if (!win || !nll) {
        free(win);
        free(nll);
        return mend_set_error(MEND_ENOMEM, "perplexity: cannot allocate a window of %d tokens", o.n_ctx);
    }

    double sum = 0.0, sum2 = 0.0, sum_window_loss = 0.0;
    int64_t count = 0;
    for (int c = 0; c < n_chunk; c++) {
        memcpy(win, tokens + (size_t)c * ctx, ctx * sizeof *win);
        if (o.protocol == MEND_PPL_LLAMACPP && o.bos >= 0) win[0] = o.bos;
        rc = score(score_user, win, o.n_ctx, first, nll);
        if (rc) {
            mend_error_prefix(rc, "perplexity: window %d", c);
            goto done;
        }
        double ws = 0.0;
        for (int j = 0; j < n_score; j++) {
            double v = nll[j];
            if (!isfinite(v)) {
                rc = mend_set_error(MEND_ERANGE,
                                    "perplexity: window %d position %d: the log-probability is not finite",
                                    c, first + j);
                goto done;
            }
            ws += v;
            sum2 += v * v;
        }
        sum += ws;
        count += n_score;
        /* GPTQ: nlls.append(loss * n_ctx) with loss = mean over the window */
        sum_window_loss += ws / n_score;
        if (o.window_nll) o.window_nll[c] = ws / n_score;
        double running = o.protocol == MEND_PPL_GPTQ ? exp(sum_window_loss / (c + 1))
                                                     : exp(sum / (double)count);
        if (progress && progress(progress_user, c + 1, n_chunk, running)) {
            rc = mend_set_error(MEND_EINVAL, "perplexity: cancelled after window %d of %d", c + 1, n_chunk);
            goto done;
        }
    }

    res->nll_sum = sum;
    res->nll2_sum = sum2;
    res->n_scored = count;
    res->n_chunks = n_chunk;
    res->n_ctx = o.n_ctx;
    if (o.protocol == MEND_PPL_GPTQ)
        res->ppl = exp(sum_window_loss * o.n_ctx / ((double)n_chunk * o.n_ctx));
    else
        res->ppl = exp(sum / (double)count);
    {
        double mean = sum / (double)count;
        double var = sum2 / (double)count - mean * mean;
        res->ppl_err = (var > 0 && count > 1) ? res->ppl * sqrt(var / (double)(count - 1)) : 0.0;
    }
    rc = 0;
done:
    free(win);
    free(nll);
    return rc;
}

/* ---- the forward pass as scorer ---- */

typedef struct model_scorer {
    mend_state *s;
    int n_vocab;
    int n_batch;
    float *logits;      /* (n_batch, n_vocab) */
} model_scorer;

static int model_score(void *user, const int32_t *win, int n, int first, double *nll) {
    model_scorer *ms = user;
    const int V = ms->n_vocab;
    int pos = 0, rc;
    /* positions before `first` only fill the KV cache */
    while (pos < first) {
        int nb = first - pos < ms->n_batch ? first - pos : ms->n_batch;
        if ((rc = mend_forward(ms->s, win + pos, NULL, nb, pos, NULL, 0))) return rc;
        pos += nb;
    }
    /* the last position predicts nothing inside the window: never run it */
    while (pos < n - 1) {
        int nb = n - 1 - pos < ms->n_batch ? n - 1 - pos : ms->n_batch;
        if ((rc = mend_forward(ms->s, win + pos, NULL, nb, pos, ms->logits, 1))) return rc;
        for (int j = 0; j < nb; j++) {
            int32_t t = win[pos + j + 1];
            if (t < 0 || t >= V)
                return mend_set_error(MEND_ERANGE, "position %d: token id %d is outside the vocabulary (%d)",
                                      pos + j + 1, t, V);
        }
        #pragma omp parallel for schedule(static)
        for (int j = 0; j < nb; j++)
            nll[pos + j - first] = mend_nll_from_logits(ms->logits + (size_t)j * V, V, win[pos + j + 1]);
        pos += nb;
    }
    return 0;
}

int mend_perplexity(const mend_model *m, const int32_t *tokens, size_t n_tokens,
                    const mend_ppl_opts *opts, mend_ppl_progress_fn progress, void *progress_user,
                    mend_ppl_result *res) {
    if (!m) return mend_set_error(MEND_EINVAL, "perplexity: no model");
    mend_ppl_opts o;
    int rc = mend_ppl_resolve_opts(opts, &o);
    if (rc) return rc;
    mend_model_info info;
    mend_model_get_info(m, &info);
    if (info.n_vocab <= 0) return mend_set_error(MEND_EINVAL, "perplexity: the model has no vocabulary");
    for (size_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= info.n_vocab)
            return mend_set_error(MEND_ERANGE, "perplexity: token %zu has id %d outside the vocabulary (%d)",
                                  i, tokens[i], info.n_vocab);
    if (o.bos >= info.n_vocab)
        return mend_set_error(MEND_ERANGE, "perplexity: BOS id %d is outside the vocabulary (%d)", o.bos,
                              info.n_vocab);

    model_scorer ms = {0};
    ms.n_vocab = info.n_vocab;
    ms.n_batch = o.n_batch;
    size_t nl;
    if (!mend_mul_ok((size_t)o.n_batch, (size_t)info.n_vocab, &nl) || !mend_mul_ok(nl, sizeof(float), &nl))
        return mend_set_error(MEND_ERANGE, "perplexity: n_batch %d x n_vocab %d overflows", o.n_batch,
                              info.n_vocab);
    ms.logits = malloc(nl);
    if (!ms.logits)
        return mend_set_error(MEND_ENOMEM, "perplexity: cannot allocate %zu bytes of logits", nl);
    rc = mend_state_new(&ms.s, m, o.n_ctx, o.n_batch);
    if (rc == 0) rc = mend_ppl_run(tokens, n_tokens, &o, model_score, &ms, progress, progress_user, res);
    if (ms.s) mend_state_free(ms.s);
    free(ms.logits);
    return rc;
}
