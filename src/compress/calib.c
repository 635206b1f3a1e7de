/* Calibration windows from text files (calib.h). */
#include "compress/calib.h"

#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define CALIB_MAX_FILE ((size_t)1 << 31)

/* PCG32 (O'Neill), XSH-RR output */
typedef struct pcg32 {
    uint64_t state, inc;
} pcg32;

static uint32_t pcg32_next(pcg32 *r) {
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ULL + r->inc;
    uint32_t xs = (uint32_t)(((old >> 18u) ^ old) >> 27u), rot = (uint32_t)(old >> 59u);
    return (xs >> rot) | (xs << ((-rot) & 31));
}

static void pcg32_seed(pcg32 *r, uint64_t seed) {
    r->state = 0;
    r->inc = (0xda3e39cb94b95bdbULL << 1u) | 1u;
    pcg32_next(r);
    r->state += seed;
    pcg32_next(r);
}

/* uniform in [0, n) for n >= 1 */
static uint64_t pcg32_below(pcg32 *r, uint64_t n) {
    const uint64_t x = ((uint64_t)pcg32_next(r) << 32) | pcg32_next(r);
    return x % n;
}

uint64_t mend_calib_hash(const int32_t *tokens, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)tokens[i];
        for (int b = 0; b < 4; b++) {
            h ^= (v >> (8 * b)) & 0xffu;
            h *= 0x100000001b3ULL;
        }
    }
    return h;
}

/* Byte offset of the paragraph start at or after pos (0 when none is left). */
static size_t paragraph_start(const char *s, size_t len, size_t pos) {
    if (pos == 0) return 0;
    for (size_t i = pos; i + 1 < len; i++)
        if (s[i] == '\n' && s[i + 1] == '\n') {
            size_t j = i + 2;
            while (j < len && (s[j] == '\n' || s[j] == '\r')) j++;
            if (j < len) return j;
            break;
        }
    return 0;
}

/* The first seqlen tokens of s[start..len); 1 when found, 0 when the rest of
 * the file is too short, < 0 on error. */
static int window_at(const mend_tokenizer *tok, const char *s, size_t len, size_t start, int seqlen,
                     int32_t *dst) {
    size_t span = (size_t)seqlen * 8 + 256;
    for (;;) {
        const int whole = span >= len - start;
        const size_t n = whole ? len - start : span;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        int rc = mend_tokenize(tok, s + start, n, 0, 0, &ids, &n_ids);
        if (rc) return rc;
        /* a chunk cut mid-word may end in different tokens: keep a margin */
        if (n_ids >= (size_t)seqlen + (whole ? 0 : 16)) {
            memcpy(dst, ids, (size_t)seqlen * sizeof *dst);
            free(ids);
            return 1;
        }
        free(ids);
        if (whole) return 0;
        span *= 2;
    }
}

int mend_calib_build(mend_calib *c, const mend_tokenizer *tok, const char *const *paths, int n_paths,
                     int nsamples, int seqlen, uint64_t seed) {
    memset(c, 0, sizeof *c);
    if (!tok) return mend_set_error(MEND_EINVAL, "calibration: the model has no tokenizer");
    if (n_paths < 1 || !paths) return mend_set_error(MEND_EINVAL, "calibration: no text files given");
    if (nsamples < 1 || seqlen < 2 || seqlen > (1 << 20))
        return mend_set_error(MEND_EINVAL, "calibration: %d samples of %d tokens, expected >= 1 sample of "
                              "2..%d tokens", nsamples, seqlen, 1 << 20);
    size_t total;
    if (!mend_mul_ok((size_t)nsamples, (size_t)seqlen, &total) || total > ((size_t)1 << 34))
        return mend_set_error(MEND_ERANGE, "calibration: %d x %d tokens is too many", nsamples, seqlen);
    char **text = calloc((size_t)n_paths, sizeof *text);
    size_t *tlen = calloc((size_t)n_paths, sizeof *tlen);
    c->tokens = malloc(total * sizeof *c->tokens);
    int rc = 0;
    if (!text || !tlen || !c->tokens) {
        rc = mend_set_error(MEND_ENOMEM, "calibration: out of memory for %zu tokens", total);
        goto out;
    }
    for (int f = 0; f < n_paths && f < nsamples; f++) {
        if ((rc = mend_read_file(paths[f], CALIB_MAX_FILE, &text[f], &tlen[f]))) goto out;
        if (tlen[f] == 0) {
            rc = mend_set_error(MEND_EINVAL, "calibration: %s is empty", paths[f]);
            goto out;
        }
    }
    pcg32 rng;
    pcg32_seed(&rng, seed);
    for (int i = 0; i < nsamples; i++) {
        const int f = i % n_paths;
        const size_t start = paragraph_start(text[f], tlen[f], (size_t)pcg32_below(&rng, tlen[f]));
        int32_t *dst = c->tokens + (size_t)i * seqlen;
        rc = window_at(tok, text[f], tlen[f], start, seqlen, dst);
        if (rc == 0 && start > 0) rc = window_at(tok, text[f], tlen[f], 0, seqlen, dst);
        if (rc < 0) goto out;
        if (rc == 0) {
            rc = mend_set_error(MEND_EINVAL, "calibration: %s holds fewer than %d tokens (--seqlen)", paths[f],
                                seqlen);
            goto out;
        }
        rc = 0;
    }
    c->nsamples = nsamples;
    c->seqlen = seqlen;
    c->hash = mend_calib_hash(c->tokens, total);
out:
    for (int f = 0; text && f < n_paths; f++) free(text[f]);
    free(text);
    free(tlen);
    if (rc) mend_calib_free(c);
    return rc;
}

void mend_calib_free(mend_calib *c) {
    if (!c) return;
    free(c->tokens);
    memset(c, 0, sizeof *c);
}

int mend_calib_text(const mend_calib *c, const mend_tokenizer *tok, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    size_t cap = 0, n = 0;
    char *out = NULL;
    for (int i = 0; i < c->nsamples; i++) {
        char *s = NULL;
        int rc = mend_detokenize(tok, c->tokens + (size_t)i * c->seqlen, (size_t)c->seqlen, &s);
        if (rc) {
            free(out);
            return rc;
        }
        const size_t k = strlen(s);
        if (n + k + 3 > cap) {
            size_t nc = (n + k + 3) * 2;
            char *p = realloc(out, nc);
            if (!p) {
                free(s);
                free(out);
                return mend_set_error(MEND_ENOMEM, "calibration: out of memory for the sample text");
            }
            out = p;
            cap = nc;
        }
        memcpy(out + n, s, k);
        n += k;
        if (i + 1 < c->nsamples) {
            out[n++] = '\n';
            out[n++] = '\n';
        }
        out[n] = 0;
        free(s);
    }
    *text = out;
    *len = n;
    return 0;
}
