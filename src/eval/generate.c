/* Greedy generation with lm-eval's generate_until rules: the context it
 * conditions on, one step, and the cut at stop strings. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include "util/util.h"
#include "eval/harness_int.h"

/* The tokens generation conditions on: the context left-truncated to
 * window - max_tokens (counted in stats), an empty one replaced by the
 * prefix token. *ids is malloc'd; *ctx points into it. */
int eval_gen_context(const mend_eval_backend *b, const char *context, int max_tokens, int32_t **ids,
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
int eval_gen_step(const mend_eval_backend *b, int32_t am, int32_t *gen, int *ng, int max_tokens,
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
int eval_gen_cut(char *text, const char *const *until, int n_until, char **raw, char **cut) {
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
    int rc = eval_gen_context(b, context, max_tokens, &ids, &ctx, &n, &truncated, stats);
    if (rc) return rc;
    float *logits = eval_scratch(b, (size_t)b->n_vocab);
    int32_t *gen = malloc((size_t)(max_tokens + 1) * sizeof(int32_t));
    char *text = NULL;
    int ng = 0;
    if (!logits || !gen) {
        rc = mend_set_error(MEND_ENOMEM, "generate: out of memory");
        goto done;
    }
    if (b->reserve && (rc = b->reserve(b->user, n + max_tokens))) goto done;
    /* the context: all but the last token without logits, the last with */
    if ((rc = eval_run_span(b, ctx, 0, n - 1, NULL, stats))) goto done;
    if ((rc = b->forward(b->user, ctx + n - 1, 1, n - 1, logits, 0))) goto done;
    if (stats) stats->tokens_run++;
    for (;;) {
        int st = eval_gen_step(b, eval_row_argmax(logits, b->n_vocab), gen, &ng, max_tokens, until, n_until, &text);
        if (st < 0) {
            rc = st;
            goto done;
        }
        if (st) break;
        int32_t last = gen[ng - 1];
        if ((rc = b->forward(b->user, &last, 1, n + ng - 1, logits, 0))) goto done;
        if (stats) stats->tokens_run++;
    }
    rc = eval_gen_cut(text, until, n_until, raw, cut);
    text = NULL;
done:
    free(text);
    free(ids);
    free(gen);
    return rc;
}
