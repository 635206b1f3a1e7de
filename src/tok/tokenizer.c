/* The tokenizer object: built from a mend_vocab_spec (every field checked),
 * encoding entry point with special-token partition, pieces and decoding.
 *
 * Decoding rules (mend_token_piece / mend_detokenize):
 *  - normal tokens: byte-level BPE text is mapped back to bytes; SPM '▁'
 *    becomes ' '; <0xXX> byte tokens become their byte;
 *  - control, unknown and unused tokens are omitted by mend_detokenize and
 *    rendered as their literal text by mend_detokenize_ex(render_special=1)
 *    and by mend_token_piece (which always renders the text, so callers can
 *    show e.g. "<|im_end|>"); user-defined tokens are always their text;
 *  - SPM with add_space_prefix: the first emitted piece loses one leading
 *    space (the one the encoder adds), like HF's Strip decoder;
 *  - no "clean up tokenization spaces" rewriting, so decode(encode(s)) == s
 *    for valid UTF-8 s (SPM: unless s holds a literal '▁').
 * mend_token_piece returns the piece's full length and copies at most cap
 * bytes, so a return value above cap means the piece was truncated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tok/tok_internal.h"

#define TOK_MAX_VOCAB (1 << 24)
#define TOK_MAX_TOKEN_LEN (1u << 20)

/* ---- lookup table ---- */

int32_t tok_lookup(const mend_tokenizer *t, const char *s, size_t n) {
    uint64_t h = tok_hash(s, n);
    for (uint64_t i = h & t->tab_mask;; i = (i + 1) & t->tab_mask) {
        int32_t id = t->tab[i];
        if (id < 0) return -1;
        if (t->len[id] == n && !memcmp(t->pool + t->off[id], s, n)) return id;
    }
}

void mend_tokenizer_free(mend_tokenizer *t) {
    if (!t) return;
    free(t->pool);
    free(t->off);
    free(t->len);
    free(t->type);
    free(t->score);
    free(t->eog);
    free(t->ppool);
    free(t->poff);
    free(t->plen);
    free(t->tab);
    free(t->pairs);
    free(t->specials);
    free(t->by_first);
    tok_presplit_free(&t->split);
    free(t);
}

static int check_id(const char *origin, const char *field, int32_t id, int n_vocab) {
    if (id < -1 || id >= n_vocab)
        return mend_set_error(MEND_ERANGE, "%s: %s is %d, outside the vocabulary of %d tokens", origin, field, id,
                              n_vocab);
    return 0;
}

static uint64_t pow2_at_least(uint64_t x) {
    uint64_t p = 16;
    while (p < x) p *= 2;
    return p;
}

static int build_table(mend_tokenizer *t, const char *origin, const char *key) {
    uint64_t cap = pow2_at_least((uint64_t)t->n_vocab * 2);
    t->tab = malloc(cap * sizeof *t->tab);
    if (!t->tab) return mend_set_error(MEND_ENOMEM, "%s: out of memory for the token table", origin);
    memset(t->tab, 0xFF, cap * sizeof *t->tab);
    t->tab_mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const char *s = t->pool + t->off[id];
        uint32_t n = t->len[id];
        if (!n) continue;   /* an empty text can never be matched */
        uint64_t i = tok_hash(s, n) & t->tab_mask;
        for (;; i = (i + 1) & t->tab_mask) {
            int32_t o = t->tab[i];
            if (o < 0) break;
            if (t->len[o] == n && !memcmp(t->pool + t->off[o], s, n))
                return mend_set_error(MEND_EFORMAT, "%s: %s[%d] and %s[%d] have the same text \"%.*s\"", origin, key, o,
                                      key, id, (int)(n < 60 ? n : 60), s);
        }
        t->tab[i] = id;
    }
    return 0;
}

/* merges: "a b" strings (split at the first space after the first byte, as
 * llama.cpp does) or, from tokenizer.json, explicit (a, b) pairs */
static int build_merges(mend_tokenizer *t, const mend_vocab_spec *spec, const tok_extra *ex, const char *origin) {
    const char *const *pairs = ex ? ex->merge_pairs : NULL;
    const char *key = ex && ex->key_merges ? ex->key_merges : "merges";
    if (spec->n_merges < 0) return mend_set_error(MEND_EFORMAT, "%s: negative merge count %d", origin, spec->n_merges);
    if (spec->n_merges == 0) return 0;
    if (!spec->merges && !pairs)
        return mend_set_error(MEND_EINVAL, "%s: %d merges announced but no merges array", origin, spec->n_merges);
    uint64_t cap = pow2_at_least((uint64_t)spec->n_merges * 2);
    t->pairs = malloc(cap * sizeof *t->pairs);
    if (!t->pairs) return mend_set_error(MEND_ENOMEM, "%s: out of memory for %d merges", origin, spec->n_merges);
    for (uint64_t i = 0; i < cap; i++) t->pairs[i].key = UINT64_MAX;
    t->pair_mask = cap - 1;
    t->n_merges = spec->n_merges;
    char *buf = NULL;
    size_t bcap = 0;
    int rc = 0;
    for (int r = 0; r < spec->n_merges && !rc; r++) {
        const char *lp, *rp;
        size_t ln, rn;
        char shown[128];
        if (pairs) {
            lp = pairs[2 * (size_t)r];
            rp = pairs[2 * (size_t)r + 1];
            if (!lp || !rp) { rc = mend_set_error(MEND_EFORMAT, "%s: %s[%d] is missing", origin, key, r); break; }
            ln = strlen(lp);
            rn = strlen(rp);
            snprintf(shown, sizeof shown, "[%.50s, %.50s]", lp, rp);
        } else {
            const char *m = spec->merges[r];
            if (!m) { rc = mend_set_error(MEND_EFORMAT, "%s: %s[%d] is missing", origin, key, r); break; }
            size_t mn = strlen(m);
            const char *sp = mn > 1 ? memchr(m + 1, ' ', mn - 1) : NULL;
            if (!sp || sp + 1 == m + mn) {
                rc = mend_set_error(MEND_EFORMAT, "%s: %s[%d] (\"%.60s\") is not two tokens separated by a space",
                                    origin, key, r, m);
                break;
            }
            lp = m;
            ln = (size_t)(sp - m);
            rp = sp + 1;
            rn = mn - ln - 1;
            snprintf(shown, sizeof shown, "\"%.100s\"", m);
        }
        int32_t l = tok_lookup(t, lp, ln), rr = tok_lookup(t, rp, rn);
        if (l < 0 || rr < 0) {
            rc = mend_set_error(MEND_EFORMAT, "%s: %s[%d] %s refers to \"%.*s\", which is not in the vocabulary",
                                origin, key, r, shown, (int)(l < 0 ? ln : rn), l < 0 ? lp : rp);
            break;
        }
        if (ln + rn > bcap) {
            bcap = (ln + rn) * 2;
            char *nb = realloc(buf, bcap);
            if (!nb) { rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", origin); break; }
            buf = nb;
        }
        memcpy(buf, lp, ln);
        memcpy(buf + ln, rp, rn);
        int32_t res = tok_lookup(t, buf, ln + rn);
        if (res < 0) {
            rc = mend_set_error(MEND_EFORMAT, "%s: %s[%d] %s produces \"%.*s\", which is not in the vocabulary",
                                origin, key, r, shown, (int)(ln + rn), buf);
            break;
        }
        uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)rr;
        uint64_t i = ((key * 0x9E3779B97F4A7C15ull) >> 17) & t->pair_mask;
        while (t->pairs[i].key != UINT64_MAX && t->pairs[i].key != key) i = (i + 1) & t->pair_mask;
        if (t->pairs[i].key == key) continue;   /* a repeated merge keeps its first rank */
        t->pairs[i].key = key;
        t->pairs[i].rank = r;
        t->pairs[i].result = res;
    }
    free(buf);
    return rc;
}

/* texts llama.cpp treats as end of generation (and forces to CONTROL) */
static const char *const k_eog_text[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<end_of_turn>", "<|endoftext|>",
    "<|eom_id|>", "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
};
/* fill-in-the-middle pad / repo / file-separator tokens, also end generation */
static const char *const k_fim_eog_text[] = {
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
    "<REPO>", "<reponame>", "<|file_sep|>",
};

static void mark_eog(mend_tokenizer *t) {
    for (size_t i = 0; i < sizeof k_fim_eog_text / sizeof *k_fim_eog_text; i++) {
        int32_t id = tok_lookup(t, k_fim_eog_text[i], strlen(k_fim_eog_text[i]));
        if (id >= 0) t->eog[id] = 1;
    }
    for (size_t i = 0; i < sizeof k_eog_text / sizeof *k_eog_text; i++) {
        int32_t id = tok_lookup(t, k_eog_text[i], strlen(k_eog_text[i]));
        if (id < 0) continue;
        t->eog[id] = 1;
        t->type[id] = MEND_TOKEN_CONTROL;
        if (t->eot < 0 && i != 3 && i != 4 && i != 7) t->eot = id;
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;
}

typedef struct len_id { uint32_t len; int32_t id; } len_id;

static int cmp_special(const void *a, const void *b) {
    const len_id *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int is_special_type(int ty) {
    return ty == MEND_TOKEN_CONTROL || ty == MEND_TOKEN_USER_DEFINED || ty == MEND_TOKEN_UNKNOWN;
}

/* by_first / first_at: a counting sort of the ranks by first byte (vocabularies
 * like Gemma's hold thousands of special texts; a position is tried only
 * against those that start with its byte) */
static int index_specials(mend_tokenizer *t, const char *origin) {
    const int n = t->n_specials;
    int32_t fill[256] = {0};
    t->by_first = malloc((size_t)n * sizeof *t->by_first);
    if (!t->by_first) return mend_set_error(MEND_ENOMEM, "%s: out of memory", origin);
    memset(t->first_at, 0, sizeof t->first_at);
    for (int r = 0; r < n; r++) t->first_at[(uint8_t)t->pool[t->off[t->specials[r]]] + 1]++;
    for (int b = 0; b < 256; b++) t->first_at[b + 1] += t->first_at[b];
    for (int r = 0; r < n; r++) {
        const uint8_t b = (uint8_t)t->pool[t->off[t->specials[r]]];
        t->by_first[t->first_at[b] + fill[b]++] = r;
    }
    return 0;
}

static int build_specials(mend_tokenizer *t, const char *origin) {
    int n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) n += is_special_type(t->type[id]) && t->len[id] > 0;
    if (!n) return 0;
    t->specials = malloc((size_t)n * sizeof *t->specials);
    len_id *tmp = malloc((size_t)n * sizeof *tmp);
    if (!t->specials || !tmp) { free(tmp); return mend_set_error(MEND_ENOMEM, "%s: out of memory", origin); }
    n = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (is_special_type(t->type[id]) && t->len[id] > 0) tmp[n++] = (len_id){t->len[id], id};
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_special);
    for (int i = 0; i < n; i++) t->specials[i] = tmp[i].id;
    free(tmp);
    t->n_specials = n;
    return index_specials(t, origin);
}

/* decoded bytes of token id into dst (capacity >= len[id]); returns length */
static uint32_t decode_token(const mend_tokenizer *t, int32_t id, char *dst) {
    const char *s = t->pool + t->off[id];
    uint32_t n = t->len[id];
    int ty = t->type[id];
    if (ty == MEND_TOKEN_BYTE && n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
        char hex[3] = {s[3], s[4], 0};
        char *end;
        long v = strtol(hex, &end, 16);
        if (end == hex + 2) { dst[0] = (char)v; return 1; }
    }
    if (ty != MEND_TOKEN_NORMAL && ty != MEND_TOKEN_BYTE) { memcpy(dst, s, n); return n; }
    uint32_t k = 0;
    if (t->byte_level) {
        for (uint32_t i = 0; i < n;) {
            uint32_t cp;
            int l = mend_utf8_decode(s + i, n - i, &cp);
            if (!l) {   /* an invalid byte stands for itself */
                l = 1;
                cp = 0xFFFD;
            }
            int b = tok_unicode_to_byte(cp);   /* -1 for U+FFFD */
            if (b >= 0) dst[k++] = (char)b;
            else { memcpy(dst + k, s + i, (size_t)l); k += (uint32_t)l; }
            i += (uint32_t)l;
        }
        return k;
    }
    for (uint32_t i = 0; i < n;) {
        if (i + 3 <= n && (uint8_t)s[i] == 0xE2 && (uint8_t)s[i + 1] == 0x96 && (uint8_t)s[i + 2] == 0x81) {
            dst[k++] = ' ';
            i += 3;
        } else {
            dst[k++] = s[i++];
        }
    }
    return k;
}

static int build_pieces(mend_tokenizer *t, uint64_t pool_n, const char *origin) {
    t->ppool = malloc(pool_n ? pool_n : 1);
    t->poff = malloc((size_t)t->n_vocab * sizeof *t->poff);
    t->plen = malloc((size_t)t->n_vocab * sizeof *t->plen);
    if (!t->ppool || !t->poff || !t->plen) return mend_set_error(MEND_ENOMEM, "%s: out of memory", origin);
    uint64_t k = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        t->poff[id] = k;
        t->plen[id] = decode_token(t, id, t->ppool + k);
        k += t->plen[id];
    }
    return 0;
}

int tok_init_ex(mend_tokenizer **out, const mend_vocab_spec *spec, const tok_extra *ex) {
    const char *origin = ex && ex->origin ? ex->origin : "tokenizer";
    if (!out || !spec) return mend_set_error(MEND_EINVAL, "mend_tokenizer_init: NULL argument");
    *out = NULL;
    if (spec->kind != MEND_TOK_BPE && spec->kind != MEND_TOK_SPM)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: tokenizer kind %d is neither BPE (1) nor SPM (2)", origin, spec->kind);
    if (spec->n_vocab <= 0 || spec->n_vocab > TOK_MAX_VOCAB)
        return mend_set_error(MEND_ERANGE, "%s: vocabulary size %d is outside 1..%d", origin, spec->n_vocab, TOK_MAX_VOCAB);
    if (!spec->tokens) return mend_set_error(MEND_EINVAL, "%s: the token list is missing", origin);
    const int nv = spec->n_vocab;
    int rc;
    if ((rc = check_id(origin, "bos token id", spec->bos, nv)) || (rc = check_id(origin, "eos token id", spec->eos, nv)) ||
        (rc = check_id(origin, "unknown token id", spec->unk, nv)) ||
        (rc = check_id(origin, "padding token id", spec->pad, nv)) ||
        (rc = check_id(origin, "eot token id", spec->eot, nv)) ||
        (rc = check_id(origin, "eom token id", ex ? ex->eom : -1, nv)))
        return rc;
    if (spec->add_bos && spec->bos < 0)
        return mend_set_error(MEND_EFORMAT, "%s: add_bos_token is set but there is no bos token id", origin);
    if (spec->add_eos && spec->eos < 0)
        return mend_set_error(MEND_EFORMAT, "%s: add_eos_token is set but there is no eos token id", origin);

    mend_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return mend_set_error(MEND_ENOMEM, "%s: out of memory", origin);
    t->kind = spec->kind;
    snprintf(t->pre, sizeof t->pre, "%s", spec->pre ? spec->pre : "");
    t->n_vocab = nv;
    t->bos = spec->bos; t->eos = spec->eos; t->unk = spec->unk; t->pad = spec->pad; t->eot = spec->eot;
    t->eom = ex ? ex->eom : -1;
    t->add_bos = !!spec->add_bos; t->add_eos = !!spec->add_eos; t->add_space_prefix = !!spec->add_space_prefix;

    t->off = malloc((size_t)nv * sizeof *t->off);
    t->len = malloc((size_t)nv * sizeof *t->len);
    t->type = malloc((size_t)nv);
    t->score = calloc((size_t)nv, sizeof *t->score);
    t->eog = calloc((size_t)nv, 1);
    if (!t->off || !t->len || !t->type || !t->score || !t->eog) {
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory for %d tokens", origin, nv);
        goto fail;
    }
    uint64_t total = 0;
    for (int i = 0; i < nv; i++) {
        if (!spec->tokens[i]) { rc = mend_set_error(MEND_EFORMAT, "%s: token %d has no text", origin, i); goto fail; }
        uint64_t n = spec->token_lens ? spec->token_lens[i] : strlen(spec->tokens[i]);
        if (n > TOK_MAX_TOKEN_LEN) {
            rc = mend_set_error(MEND_ERANGE, "%s: token %d is %llu bytes long, more than %u", origin, i,
                                (unsigned long long)n, TOK_MAX_TOKEN_LEN);
            goto fail;
        }
        t->off[i] = total;
        t->len[i] = (uint32_t)n;
        total += n;
        int ty = spec->types ? spec->types[i] : MEND_TOKEN_NORMAL;
        if (ty < 0 || ty > MEND_TOKEN_BYTE) {
            rc = mend_set_error(MEND_EFORMAT, "%s: token %d has type %d, expected 0..6", origin, i, ty);
            goto fail;
        }
        t->type[i] = (int8_t)ty;
        if (spec->scores) {
            float s = spec->scores[i];
            if (s != s) { rc = mend_set_error(MEND_EFORMAT, "%s: token %d has a NaN score", origin, i); goto fail; }
            t->score[i] = s;
        }
    }
    t->pool = malloc(total ? total : 1);
    if (!t->pool) { rc = mend_set_error(MEND_ENOMEM, "%s: out of memory for token texts", origin); goto fail; }
    for (int i = 0; i < nv; i++) memcpy(t->pool + t->off[i], spec->tokens[i], t->len[i]);

    if ((rc = build_table(t, origin, ex && ex->key_tokens ? ex->key_tokens : "tokens"))) goto fail;
    if ((rc = build_merges(t, spec, ex, origin))) goto fail;

    t->byte_level = t->kind == MEND_TOK_BPE;
    for (int b = 0; b < 256; b++) {
        char u[8];
        int ul;
        tok_byte_to_utf8((uint8_t)b, u, &ul);
        t->byte_tok[b] = tok_lookup(t, u, (size_t)ul);
        static const char hx[] = "0123456789ABCDEF";
        char bt[6] = {'<', '0', 'x', hx[b >> 4], hx[b & 15], '>'};
        t->byte_fb[b] = tok_lookup(t, bt, 6);
        if (t->byte_fb[b] < 0) {
            char c = (char)b;
            t->byte_fb[b] = tok_lookup(t, &c, 1);
        }
    }
    if (t->kind == MEND_TOK_BPE) {
        if (!spec->n_merges) {
            rc = mend_set_error(MEND_EFORMAT, "%s: a BPE tokenizer needs merges and none were given", origin);
            goto fail;
        }
        int ign = 0;
        if (ex && ex->regex) {
            rc = tok_presplit_compile(&t->split, ex->regex, ex->n_regex, origin);
        } else {
            rc = tok_pre_info(spec->pre, &ign, NULL, origin);
            if (!rc) rc = tok_presplit_from_name(&t->split, spec->pre, origin);
        }
        if (rc) goto fail;
        t->ignore_merges = ex && ex->ignore_merges >= 0 ? ex->ignore_merges : ign;
    } else {
        t->spm_use_merges = spec->n_merges > 0;
    }
    mark_eog(t);
    if ((rc = build_specials(t, origin))) goto fail;
    if ((rc = build_pieces(t, total, origin))) goto fail;
    *out = t;
    return 0;
fail:
    mend_tokenizer_free(t);
    return rc;
}

int mend_tokenizer_init(mend_tokenizer **out, const mend_vocab_spec *spec) {
    tok_extra ex = {.eom = -1, .ignore_merges = -1, .origin = "tokenizer"};
    return tok_init_ex(out, spec, &ex);
}

/* ---- special-token partition ---- */

typedef struct tok_frag {
    int32_t tok;        /* >= 0: a special token; -1: raw text */
    size_t off, len;
} tok_frag;

typedef struct occ { size_t pos; int32_t rank; } occ;

static int cmp_occ(const void *a, const void *b) {
    const occ *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int cmp_occ_pos(const void *a, const void *b) {
    const occ *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* llama.cpp's tokenizer_st_partition: for each special token, longest text
 * first, every occurrence inside a not-yet-claimed stretch of raw text is cut
 * out (left to right, non-overlapping). Control and unknown tokens take part
 * only when parse_special is set; user-defined tokens always do. */
static int partition(const mend_tokenizer *t, const char *s, size_t n, int parse_special, tok_frag **frags,
                     size_t *nf) {
    occ *oc = NULL;
    size_t no = 0, co = 0;
    uint8_t *claimed = NULL;
    int rc = 0;
    *frags = NULL;
    *nf = 0;
    if (t->n_specials && n) {
        for (size_t i = 0; i < n; i++) {
            const uint8_t b = (uint8_t)s[i];
            for (int32_t k = t->first_at[b]; k < t->first_at[b + 1]; k++) {
                const int32_t r = t->by_first[k], id = t->specials[r];
                if (!parse_special && t->type[id] != MEND_TOKEN_USER_DEFINED) continue;
                uint32_t L = t->len[id];
                if (L > n - i || s[i] != t->pool[t->off[id]] || memcmp(s + i, t->pool + t->off[id], L)) continue;
                if (no == co) {
                    co = co ? co * 2 : 64;
                    occ *x = realloc(oc, co * sizeof *oc);
                    if (!x) { rc = mend_set_error(MEND_ENOMEM, "tokenizer: out of memory"); goto done; }
                    oc = x;
                }
                oc[no].pos = i;
                oc[no].rank = r;
                no++;
            }
        }
    }
    size_t nacc = 0;
    if (no) {
        qsort(oc, no, sizeof *oc, cmp_occ);
        claimed = calloc(n, 1);
        if (!claimed) { rc = mend_set_error(MEND_ENOMEM, "tokenizer: out of memory"); goto done; }
        size_t last_end = 0;
        int32_t cur = -1;
        for (size_t k = 0; k < no; k++) {
            if (oc[k].rank != cur) { cur = oc[k].rank; last_end = 0; }
            uint32_t L = t->len[t->specials[cur]];
            size_t p = oc[k].pos;
            if (p < last_end) continue;
            int free_run = 1;
            for (size_t j = p; j < p + L; j++)
                if (claimed[j]) { free_run = 0; break; }
            if (!free_run) continue;
            memset(claimed + p, 1, L);
            last_end = p + L;
            oc[nacc++] = oc[k];
        }
        qsort(oc, nacc, sizeof *oc, cmp_occ_pos);
    }
    tok_frag *f = malloc((2 * nacc + 1) * sizeof *f);
    if (!f) { rc = mend_set_error(MEND_ENOMEM, "tokenizer: out of memory"); goto done; }
    size_t k = 0, pos = 0;
    for (size_t a = 0; a < nacc; a++) {
        int32_t id = t->specials[oc[a].rank];
        if (oc[a].pos > pos) f[k++] = (tok_frag){-1, pos, oc[a].pos - pos};
        f[k++] = (tok_frag){id, oc[a].pos, t->len[id]};
        pos = oc[a].pos + t->len[id];
    }
    if (pos < n) f[k++] = (tok_frag){-1, pos, n - pos};
    *frags = f;
    *nf = k;
done:
    free(oc);
    free(claimed);
    return rc;
}

int mend_tokenize(const mend_tokenizer *t, const char *text, size_t len, int add_special, int parse_special,
                  int32_t **ids, size_t *n_ids) {
    if (!t || !ids || !n_ids || (!text && len)) return mend_set_error(MEND_EINVAL, "mend_tokenize: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    tok_ivec out = {0};
    tok_frag *frags = NULL;
    size_t nf = 0;
    tok_word_cache *cache = NULL;
    int rc = tok_ivec_reserve(&out, 16 + len / 3);
    if (!rc && add_special && t->add_bos) rc = tok_ivec_push(&out, t->bos);
    if (!rc) rc = partition(t, text, len, parse_special, &frags, &nf);
    if (!rc && t->kind == MEND_TOK_BPE && len >= 256) rc = tok_cache_new(&cache);
    int prev_special = 1;   /* SPM: the first fragment gets the space prefix */
    for (size_t i = 0; i < nf && !rc; i++) {
        if (frags[i].tok >= 0) {
            rc = tok_ivec_push(&out, frags[i].tok);
            prev_special = 1;
            continue;
        }
        if (t->kind == MEND_TOK_BPE)
            rc = tok_bpe_encode(t, text + frags[i].off, frags[i].len, cache, &out);
        else
            rc = tok_spm_encode(t, text + frags[i].off, frags[i].len, t->add_space_prefix && prev_special, &out);
        prev_special = 0;
    }
    if (!rc && add_special && t->add_eos) rc = tok_ivec_push(&out, t->eos);
    tok_cache_free(cache);
    free(frags);
    if (rc) { free(out.v); return rc; }
    *ids = out.v;
    *n_ids = out.n;
    return 0;
}

/* ---- pieces and decoding ---- */

int mend_token_piece(const mend_tokenizer *t, int32_t id, char *buf, size_t cap) {
    if (!t || (!buf && cap)) return mend_set_error(MEND_EINVAL, "mend_token_piece: NULL argument");
    if (id < 0 || id >= t->n_vocab)
        return mend_set_error(MEND_ERANGE, "mend_token_piece: token id %d is outside the vocabulary of %d tokens", id,
                              t->n_vocab);
    uint32_t n = t->plen[id];
    memcpy(buf, t->ppool + t->poff[id], n < cap ? n : cap);
    return (int)n;
}

static int omitted(const mend_tokenizer *t, int32_t id) {
    int ty = t->type[id];
    return ty == MEND_TOKEN_CONTROL || ty == MEND_TOKEN_UNKNOWN || ty == MEND_TOKEN_UNUSED || ty == 0;
}

int mend_detokenize_ex(const mend_tokenizer *t, const int32_t *ids, size_t n, int render_special, char **text) {
    if (!t || !text || (!ids && n)) return mend_set_error(MEND_EINVAL, "mend_detokenize: NULL argument");
    *text = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return mend_set_error(MEND_ERANGE, "mend_detokenize: token %zu is id %d, outside the vocabulary of %d tokens",
                                  i, ids[i], t->n_vocab);
        if (!render_special && omitted(t, ids[i])) continue;
        if (!mend_add_ok(total, t->plen[ids[i]], &total))
            return mend_set_error(MEND_ERANGE, "mend_detokenize: decoded text size overflows");
    }
    char *o = malloc(total + 1);
    if (!o) return mend_set_error(MEND_ENOMEM, "mend_detokenize: out of memory for %zu bytes", total);
    size_t k = 0;
    int strip = t->kind == MEND_TOK_SPM && t->add_space_prefix;   /* the encoder's leading space */
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (!render_special && omitted(t, id)) continue;
        const char *p = t->ppool + t->poff[id];
        size_t pn = t->plen[id];
        if (strip && pn && t->type[id] == MEND_TOKEN_NORMAL && p[0] == ' ') {
            p++;
            pn--;
        }
        strip = 0;
        memcpy(o + k, p, pn);
        k += pn;
    }
    o[k] = 0;
    *text = o;
    return 0;
}

int mend_detokenize(const mend_tokenizer *t, const int32_t *ids, size_t n, char **text) {
    return mend_detokenize_ex(t, ids, n, 0, text);
}

int mend_tokenizer_n_vocab(const mend_tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t mend_token_bos(const mend_tokenizer *t) { return t ? t->bos : -1; }
int32_t mend_token_eos(const mend_tokenizer *t) { return t ? t->eos : -1; }
int mend_tokenizer_add_bos(const mend_tokenizer *t) { return t ? t->add_bos : 0; }
int mend_token_is_eog(const mend_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab && t->eog[id];
}
