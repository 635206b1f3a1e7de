/* Private to src/tok/: the tokenizer object and the pieces the encoders share.
 *
 * Encoding pipeline (mirrors llama.cpp's llama_vocab::tokenize):
 *   raw text
 *     -> special-token partition (tokenizer.c): control / user-defined token
 *        texts are cut out of the text, longest text first
 *     -> per raw fragment:
 *          BPE: invalid UTF-8 -> U+FFFD (unicode.c), pre-split by the model's
 *               regex list (presplit.c), byte-level BPE merges per word (bpe.c)
 *          SPM: optional leading space, ' ' -> U+2581, score- or rank-driven
 *               merges over UTF-8 characters, byte fallback (spm.c)
 */
#ifndef MEND_TOK_INTERNAL_H
#define MEND_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "tok/tokenizer.h"
#include <string.h>
#include "util/util.h"

#define TOK_MAX_REGEX 8

/* ---- growable int32 vector ---- */
typedef struct tok_ivec {
    int32_t *v;
    size_t n, cap;
} tok_ivec;
int tok_ivec_push(tok_ivec *a, int32_t x);
int tok_ivec_reserve(tok_ivec *a, size_t extra);

/* ---- merge-pair table: (left id, right id) -> (rank, result id) ---- */
typedef struct tok_pair {
    uint64_t key;     /* (left << 32) | right; UINT64_MAX = empty */
    int32_t rank;
    int32_t result;
} tok_pair;

/* ---- pre-tokenizer: an ordered list of split regexes ---- */
typedef struct tok_presplit {
    int n;
    void *code[TOK_MAX_REGEX];  /* pcre2_code_8 * */
    int jit[TOK_MAX_REGEX];
} tok_presplit;

struct mend_tokenizer {
    int kind;                 /* enum mend_tok_kind */
    char pre[32];
    int n_vocab;

    /* token texts (as stored in the vocab) */
    char *pool;
    uint64_t *off;            /* n_vocab */
    uint32_t *len;            /* n_vocab */
    int8_t *type;             /* enum mend_token_type, n_vocab */
    float *score;             /* n_vocab (0 when absent) */
    uint8_t *eog;             /* n_vocab: 1 = end of generation */

    /* decoded bytes of every token (what mend_token_piece returns) */
    char *ppool;
    uint64_t *poff;
    uint32_t *plen;

    /* text -> id, open addressing, -1 empty */
    int32_t *tab;
    uint64_t tab_mask;

    /* merges */
    int n_merges;
    tok_pair *pairs;
    uint64_t pair_mask;

    /* byte-level BPE: token of each byte's mapped character, -1 if none */
    int32_t byte_tok[256];
    /* SPM: token of <0xXX> (or the one-byte text), -1 if none */
    int32_t byte_fb[256];

    /* special tokens matched in raw text, longest text first */
    int32_t *specials;
    int n_specials;
    /* the ranks (indices into specials) whose text starts with byte b are
     * by_first[first_at[b] .. first_at[b+1]), ascending */
    int32_t *by_first;
    int32_t first_at[257];

    tok_presplit split;
    int ignore_merges;        /* llama3: a word that is a token is emitted whole */
    int byte_level;           /* BPE over bytes->unicode mapped text */
    int spm_use_merges;       /* SPM driven by merge ranks (HF BPE + byte_fallback) */

    int32_t bos, eos, unk, pad, eot, eom;
    int add_bos, add_eos, add_space_prefix;
};

/* Extra options the GGUF/JSON loaders pass beyond mend_vocab_spec. */
typedef struct tok_extra {
    const char *const *regex;   /* explicit pre-split regexes (JSON); NULL: by spec->pre */
    int n_regex;
    int32_t eom;
    int ignore_merges;          /* -1: decided by pre name */
    const char *const *merge_pairs; /* 2 * n_merges texts (a0, b0, a1, b1, ...) instead of spec->merges */
    const char *origin;         /* file name for error messages */
    const char *key_tokens;     /* field names for error messages (default "tokens", "merges") */
    const char *key_merges;
} tok_extra;

int tok_init_ex(mend_tokenizer **out, const mend_vocab_spec *spec, const tok_extra *ex);

static inline uint64_t tok_hash(const void *p, size_t n) {
    const uint8_t *s = (const uint8_t *)p;
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    while (n--) h = (h ^ *s++) * 0x100000001b3ull;
    h ^= h >> 32;
    return h * 0x9E3779B97F4A7C15ull;
}

/* text -> id or -1 */
int32_t tok_lookup(const mend_tokenizer *t, const char *s, size_t n);
static inline const char *tok_text(const mend_tokenizer *t, int32_t id) { return t->pool + t->off[id]; }

/* pair table lookup: returns rank or -1, *result the merged token */
static inline int32_t tok_pair_find(const mend_tokenizer *t, int32_t l, int32_t r, int32_t *result) {
    if (!t->pairs || l < 0 || r < 0) return -1;
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    uint64_t h = (key * 0x9E3779B97F4A7C15ull) >> 17;
    for (uint64_t i = h & t->pair_mask;; i = (i + 1) & t->pair_mask) {
        const tok_pair *p = &t->pairs[i];
        if (p->key == key) { *result = p->result; return p->rank; }
        if (p->key == UINT64_MAX) return -1;
    }
}

/* ---- unicode.c ---- */
/* GPT-2 byte <-> unicode character mapping */
void tok_byte_to_utf8(uint8_t b, char out[4], int *n);
/* codepoint of a mapped char -> original byte, or -1 */
int tok_unicode_to_byte(uint32_t cp);
/* length of the UTF-8 sequence from its first byte, llama.cpp's lenient rule (1..4) */
static inline int tok_utf8_len(uint8_t c) {
    static const uint8_t lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[c >> 4];
}
/* Is s[0..n) strictly valid UTF-8 (no overlongs, surrogates or > U+10FFFF)? */
int tok_utf8_valid(const char *s, size_t n);
/* Rewrite s[0..n) the way llama.cpp reads text: each decodable sequence
 * (lenient rules, overlongs accepted) is re-encoded from its codepoint, each
 * undecodable byte becomes U+FFFD. *match is valid UTF-8 for the regexes;
 * *out (NULL when equal to *match) differs only where a surrogate codepoint
 * stands, which *match spells as U+E000. Codepoints above U+10FFFF (llama.cpp
 * aborts on them) become U+FFFD. Buffers are malloc'd. */
int tok_utf8_sanitize(const char *s, size_t n, char **match, char **out, size_t *out_n);

/* ---- presplit.c ---- */
/* Pre-tokenizer by name (llama.cpp's names). tok_pre_info reports the
 * name's llama.cpp defaults (ignore_merges, add_bos); both return
 * MEND_EUNSUPPORTED for unknown names. */
int tok_pre_info(const char *pre, int *ignore_merges, int *add_bos_default, const char *origin);
int tok_presplit_from_name(tok_presplit *sp, const char *pre, const char *origin);
int tok_presplit_compile(tok_presplit *sp, const char *const *regex, int n, const char *origin);
void tok_presplit_free(tok_presplit *sp);
/* Split s[0..n) (valid UTF-8) into words. words holds (offset, length) pairs. */
typedef struct tok_span { uint32_t off, len; } tok_span;
typedef struct tok_spans { tok_span *v; size_t n, cap; } tok_spans;
int tok_presplit_run(const tok_presplit *sp, const char *s, size_t n, tok_spans *words);

/* ---- bpe.c ---- */
typedef struct tok_word_cache tok_word_cache;
int tok_cache_new(tok_word_cache **c);
void tok_cache_free(tok_word_cache *c);
/* Encode one raw-text fragment with byte-level BPE, appending to out. */
int tok_bpe_encode(const mend_tokenizer *t, const char *s, size_t n, tok_word_cache *cache, tok_ivec *out);

/* ---- spm.c ---- */
/* Encode one raw-text fragment SentencePiece style. prefix_space: prepend ' '. */
int tok_spm_encode(const mend_tokenizer *t, const char *s, size_t n, int prefix_space, tok_ivec *out);

/* ---- shared merge machinery (bpe.c) ---- */
typedef struct tok_sym {
    int32_t id;          /* token id, -1 when the text is not a token */
    uint32_t off, len;   /* bytes in the word */
    int32_t prev, next;
} tok_sym;
typedef struct tok_bigram {
    double prio;         /* larger merges first */
    int32_t left, right;
    int32_t lid, rid;    /* ids (or lengths for SPM) at push time, to detect stale entries */
    int32_t result;
} tok_bigram;
typedef struct tok_heap { tok_bigram *v; size_t n, cap; } tok_heap;
int tok_heap_push(tok_heap *h, const tok_bigram *b);
int tok_heap_pop(tok_heap *h, tok_bigram *b);

#endif
