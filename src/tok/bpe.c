/* Byte-level BPE (GPT-2 style) and the merge machinery SPM shares.
 *
 * A word from the pre-splitter starts as one symbol per byte (the token of
 * that byte's mapped character). The adjacent pair with the lowest merge
 * rank is merged, ties going to the leftmost pair, until no pair has a rank:
 *   while pairs: (l, r) = argmin rank(sym[l], sym[r]); sym[l] = merged; drop sym[r]
 * implemented with a heap of candidate pairs, stale entries skipped on pop
 * (as llama.cpp's llm_tokenizer_bpe_session does). Merges are keyed by token
 * ids, so a lookup is one probe in an integer hash table.
 *
 * Encoding a long text repeats the same words many times; each call keeps a
 * word -> ids cache for the duration of the call (no shared mutable state,
 * so a tokenizer can be used from several threads at once).
 */
#include <stdlib.h>
#include <string.h>
#include "tok/tok_internal.h"

/* ---- vectors and heap ---- */

int tok_ivec_reserve(tok_ivec *a, size_t extra) {
    size_t need;
    if (!mend_add_ok(a->n, extra, &need) || need > SIZE_MAX / 8)
        return mend_set_error(MEND_ERANGE, "tokenizer: token buffer size overflows");
    if (need <= a->cap) return 0;
    size_t nc = a->cap ? a->cap : 64;
    while (nc < need) nc *= 2;
    int32_t *v = realloc(a->v, nc * sizeof *v);
    if (!v) return mend_set_error(MEND_ENOMEM, "tokenizer: out of memory for %zu token ids", nc);
    a->v = v;
    a->cap = nc;
    return 0;
}

int tok_ivec_push(tok_ivec *a, int32_t x) {
    if (a->n == a->cap) {
        int rc = tok_ivec_reserve(a, 1);
        if (rc) return rc;
    }
    a->v[a->n++] = x;
    return 0;
}

static int better(const tok_bigram *a, const tok_bigram *b) {
    return a->prio > b->prio || (a->prio == b->prio && a->left < b->left);
}

int tok_heap_push(tok_heap *h, const tok_bigram *b) {
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 64;
        tok_bigram *v = realloc(h->v, nc * sizeof *v);
        if (!v) return mend_set_error(MEND_ENOMEM, "tokenizer: out of memory for merge candidates");
        h->v = v;
        h->cap = nc;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!better(b, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = *b;
    return 0;
}

int tok_heap_pop(tok_heap *h, tok_bigram *b) {
    if (!h->n) return 0;
    *b = h->v[0];
    tok_bigram last = h->v[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && better(&h->v[c + 1], &h->v[c])) c++;
        if (!better(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n) h->v[i] = last;
    return 1;
}

/* ---- per-call word cache ---- */

typedef struct cache_ent {
    uint64_t h;
    uint32_t koff, klen, voff, vn;
} cache_ent;

struct tok_word_cache {
    cache_ent *e;
    size_t cap, n;      /* cap is a power of two; e[i].klen == UINT32_MAX marks empty */
    char *keys;
    size_t kn, kcap;
    int32_t *vals;
    size_t vn, vcap;
};

#define CACHE_MAX_WORD 128
#define CACHE_MAX_ENTRIES (1u << 20)

int tok_cache_new(tok_word_cache **c) {
    tok_word_cache *w = calloc(1, sizeof *w);
    if (!w) return mend_set_error(MEND_ENOMEM, "tokenizer: out of memory for the word cache");
    w->cap = 1024;
    w->e = malloc(w->cap * sizeof *w->e);
    if (!w->e) { free(w); return mend_set_error(MEND_ENOMEM, "tokenizer: out of memory for the word cache"); }
    for (size_t i = 0; i < w->cap; i++) w->e[i].klen = UINT32_MAX;
    *c = w;
    return 0;
}

void tok_cache_free(tok_word_cache *c) {
    if (!c) return;
    free(c->e);
    free(c->keys);
    free(c->vals);
    free(c);
}

static cache_ent *cache_find(tok_word_cache *c, const char *w, size_t n, uint64_t h) {
    for (size_t i = h & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        cache_ent *e = &c->e[i];
        if (e->klen == UINT32_MAX) return e;
        if (e->h == h && e->klen == n && !memcmp(c->keys + e->koff, w, n)) return e;
    }
}

static int cache_grow(tok_word_cache *c) {
    size_t nc = c->cap * 2;
    cache_ent *ne = malloc(nc * sizeof *ne);
    if (!ne) return MEND_ENOMEM;
    for (size_t i = 0; i < nc; i++) ne[i].klen = UINT32_MAX;
    for (size_t i = 0; i < c->cap; i++) {
        if (c->e[i].klen == UINT32_MAX) continue;
        size_t j = c->e[i].h & (nc - 1);
        while (ne[j].klen != UINT32_MAX) j = (j + 1) & (nc - 1);
        ne[j] = c->e[i];
    }
    free(c->e);
    c->e = ne;
    c->cap = nc;
    return 0;
}

/* Remember ids[0..k) for word w; failures only mean the word is not cached. */
static void cache_put(tok_word_cache *c, cache_ent *slot, const char *w, size_t n, uint64_t h,
                      const int32_t *ids, size_t k) {
    if (c->n >= CACHE_MAX_ENTRIES) return;
    if (c->kn + n > c->kcap) {
        size_t nc = c->kcap ? c->kcap : 4096;
        while (nc < c->kn + n) nc *= 2;
        char *nk = realloc(c->keys, nc);
        if (!nk) return;
        c->keys = nk;
        c->kcap = nc;
    }
    if (c->vn + k > c->vcap || !c->vals) {   /* allocated even for a word of no tokens */
        size_t nc = c->vcap ? c->vcap : 4096;
        while (nc < c->vn + k) nc *= 2;
        int32_t *nv = realloc(c->vals, nc * sizeof *nv);
        if (!nv) return;
        c->vals = nv;
        c->vcap = nc;
    }
    memcpy(c->keys + c->kn, w, n);
    if (k) memcpy(c->vals + c->vn, ids, k * sizeof *ids);
    slot->h = h;
    slot->koff = (uint32_t)c->kn;
    slot->klen = (uint32_t)n;
    slot->voff = (uint32_t)c->vn;
    slot->vn = (uint32_t)k;
    c->kn += n;
    c->vn += k;
    c->n++;
    if (c->n * 2 > c->cap) cache_grow(c);   /* on failure the table just stays fuller */
}

/* ---- byte-level BPE of one word ---- */

typedef struct bpe_scratch {
    tok_sym *sym;
    size_t sym_cap;
    tok_heap heap;
    char *mapped;
    size_t mapped_cap;
} bpe_scratch;

static int push_pair(const mend_tokenizer *t, tok_heap *h, const tok_sym *sym, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    int32_t res;
    int32_t rank = tok_pair_find(t, sym[l].id, sym[r].id, &res);
    if (rank < 0) return 0;
    tok_bigram b = {.prio = -(double)rank, .left = l, .right = r, .lid = sym[l].id, .rid = sym[r].id, .result = res};
    return tok_heap_push(h, &b);
}

/* The mapped (vocabulary-spelled) text of w[0..n) into sc->mapped. */
static int map_bytes(bpe_scratch *sc, const uint8_t *w, size_t n, size_t *out_n) {
    size_t need = n * 2;   /* every mapped char is 1 or 2 UTF-8 bytes */
    if (need > sc->mapped_cap) {
        char *m = realloc(sc->mapped, need);
        if (!m) return mend_set_error(MEND_ENOMEM, "tokenizer: out of memory");
        sc->mapped = m;
        sc->mapped_cap = need;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char u[4];
        int ul;
        tok_byte_to_utf8(w[i], u, &ul);
        memcpy(sc->mapped + k, u, (size_t)ul);
        k += (size_t)ul;
    }
    *out_n = k;
    return 0;
}

static int bpe_word(const mend_tokenizer *t, const uint8_t *w, size_t n, bpe_scratch *sc, tok_ivec *out) {
    int rc;
    if (t->ignore_merges && n > 1) {
        size_t mn;
        if ((rc = map_bytes(sc, w, n, &mn))) return rc;
        int32_t id = tok_lookup(t, sc->mapped, mn);
        if (id >= 0) return tok_ivec_push(out, id);
    }
    if (n > sc->sym_cap) {
        tok_sym *s = realloc(sc->sym, n * sizeof *s);
        if (!s) return mend_set_error(MEND_ENOMEM, "tokenizer: out of memory for a %zu-byte word", n);
        sc->sym = s;
        sc->sym_cap = n;
    }
    tok_sym *sym = sc->sym;
    for (size_t i = 0; i < n; i++) {
        sym[i].id = t->byte_tok[w[i]];
        sym[i].off = (uint32_t)i;
        sym[i].len = 1;
        sym[i].prev = (int32_t)i - 1;
        sym[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    sc->heap.n = 0;
    for (size_t i = 1; i < n; i++)
        if ((rc = push_pair(t, &sc->heap, sym, (int32_t)i - 1, (int32_t)i))) return rc;
    tok_bigram b;
    while (tok_heap_pop(&sc->heap, &b)) {
        tok_sym *L = &sym[b.left], *R = &sym[b.right];
        if (!L->len || !R->len || L->next != b.right || L->id != b.lid || R->id != b.rid) continue;
        L->id = b.result;
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) sym[R->next].prev = b.left;
        if ((rc = push_pair(t, &sc->heap, sym, L->prev, b.left))) return rc;
        if ((rc = push_pair(t, &sc->heap, sym, b.left, L->next))) return rc;
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        if (sym[i].id >= 0) {
            if ((rc = tok_ivec_push(out, sym[i].id))) return rc;
            continue;
        }
        /* not a token: llama.cpp emits the tokens of the single bytes of the
         * mapped text, when such tokens exist */
        size_t mn;
        if ((rc = map_bytes(sc, w + sym[i].off, sym[i].len, &mn))) return rc;
        for (size_t k = 0; k < mn; k++) {
            int32_t id = tok_lookup(t, sc->mapped + k, 1);
            if (id >= 0 && (rc = tok_ivec_push(out, id))) return rc;
        }
    }
    return 0;
}

int tok_bpe_encode(const mend_tokenizer *t, const char *s, size_t n, tok_word_cache *cache, tok_ivec *out) {
    if (!n) return 0;
    char *clean = NULL, *clean_out = NULL;
    const char *text = s, *mtext = s;
    int rc;
    if (!tok_utf8_valid(s, n)) {
        if ((rc = tok_utf8_sanitize(s, n, &clean, &clean_out, &n))) return rc;
        mtext = clean;
        text = clean_out ? clean_out : clean;
    }
    tok_spans words = {0};
    bpe_scratch sc = {0};
    rc = tok_presplit_run(&t->split, mtext, n, &words);
    for (size_t i = 0; i < words.n && !rc; i++) {
        const char *w = text + words.v[i].off;
        size_t wn = words.v[i].len;
        if (cache && wn <= CACHE_MAX_WORD) {
            uint64_t h = tok_hash(w, wn);
            cache_ent *e = cache_find(cache, w, wn, h);
            if (e->klen != UINT32_MAX) {
                if (e->vn && !(rc = tok_ivec_reserve(out, e->vn))) {   /* a word may map to no tokens */
                    memcpy(out->v + out->n, cache->vals + e->voff, e->vn * sizeof(int32_t));
                    out->n += e->vn;
                }
                continue;
            }
            size_t before = out->n;
            rc = bpe_word(t, (const uint8_t *)w, wn, &sc, out);
            if (!rc) cache_put(cache, e, w, wn, h, out->n > before ? out->v + before : NULL, out->n - before);
        } else {
            rc = bpe_word(t, (const uint8_t *)w, wn, &sc, out);
        }
    }
    free(words.v);
    free(sc.sym);
    free(sc.heap.v);
    free(sc.mapped);
    free(clean);
    free(clean_out);
    return rc;
}
