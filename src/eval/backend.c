/* The evaluation backend over a mend_model (mend_eval_backend_model): the
 * tokenizer as lm-eval's HF backend uses it, forwards with or without a soft
 * prompt, and lane caches. */
#define _GNU_SOURCE
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "util/util.h"
#include "eval/harness_int.h"

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
        int used = eval_utf8_next(p, e, &c);
        if (c == EVAL_BAD_CP) {   /* surrogates and values past U+10FFFF included */
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
