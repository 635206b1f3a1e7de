/* SentencePiece-style BPE (LLaMA-1/2 "llama" vocabularies).
 *
 * The fragment (with a leading space when add_space_prefix asks for one)
 * has every ' ' replaced by U+2581 '▁' and is cut into UTF-8 characters.
 * Two ways to pick merges:
 *  - scores (GGUF "llama" model, llama.cpp's llm_tokenizer_spm_session):
 *    any adjacent pair whose concatenation is a vocabulary entry is a
 *    candidate; the highest-scoring one merges first, ties to the left;
 *  - merge ranks (HF tokenizer.json BPE with byte_fallback): the pair with
 *    the lowest rank in the merges list merges first.
 * Symbols left that are not tokens are emitted as their bytes' <0xXX>
 * tokens (byte fallback), or the unknown token when a byte token is missing.
 */
#include <stdlib.h>
#include <string.h>
#include "tok/tok_internal.h"

static const char k_space[3] = {(char)0xE2, (char)0x96, (char)0x81};   /* U+2581 */

static int push_cand(const mend_tokenizer *t, tok_heap *h, const tok_sym *sym, const char *text, int32_t l,
                     int32_t r) {
    if (l < 0 || r < 0) return 0;
    tok_bigram b = {.left = l, .right = r};
    if (t->spm_use_merges) {
        int32_t res;
        int32_t rank = tok_pair_find(t, sym[l].id, sym[r].id, &res);
        if (rank < 0) return 0;
        b.prio = -(double)rank;
        b.lid = sym[l].id;
        b.rid = sym[r].id;
        b.result = res;
    } else {
        uint32_t n = sym[l].len + sym[r].len;
        int32_t id = tok_lookup(t, text + sym[l].off, n);
        if (id < 0) return 0;
        b.prio = t->score[id];
        b.lid = (int32_t)n;   /* total length: a stale entry no longer adds up */
        b.result = id;
    }
    return tok_heap_push(h, &b);
}

static int emit_bytes(const mend_tokenizer *t, const uint8_t *p, size_t n, tok_ivec *out) {
    for (size_t k = 0; k < n; k++) {
        int32_t id = t->byte_fb[p[k]];
        if (id < 0) id = t->unk;
        if (id >= 0) {
            int rc = tok_ivec_push(out, id);
            if (rc) return rc;
        }
    }
    return 0;
}

int tok_spm_encode(const mend_tokenizer *t, const char *s, size_t n, int prefix_space, tok_ivec *out) {
    size_t n_sp = prefix_space ? 1 : 0;
    for (size_t i = 0; i < n; i++) n_sp += s[i] == ' ';
    size_t tn;   /* each space grows from 1 to 3 bytes */
    if (!mend_mul_ok(n_sp, 2, &tn) || !mend_add_ok(tn, n + (prefix_space ? 1 : 0), &tn) || tn > UINT32_MAX)
        return mend_set_error(MEND_ERANGE, "tokenizer: text fragment of %zu bytes is too long", n);
    if (tn == 0) return 0;
    char *text = malloc(tn);
    tok_sym *sym = malloc(tn * sizeof *sym);
    tok_heap heap = {0};
    int rc = 0;
    if (!text || !sym) { rc = mend_set_error(MEND_ENOMEM, "tokenizer: out of memory for %zu bytes", tn); goto done; }
    size_t k = 0;
    if (prefix_space) { memcpy(text, k_space, 3); k = 3; }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(text + k, k_space, 3); k += 3; }
        else text[k++] = s[i];
    }
    /* characters: length from the lead byte, clipped at the end */
    int32_t ns = 0;
    for (size_t off = 0; off < tn;) {
        size_t len = (size_t)tok_utf8_len((uint8_t)text[off]);
        if (len > tn - off) len = tn - off;
        sym[ns].off = (uint32_t)off;
        sym[ns].len = (uint32_t)len;
        sym[ns].id = tok_lookup(t, text + off, len);
        sym[ns].prev = ns - 1;
        sym[ns].next = off + len < tn ? ns + 1 : -1;
        ns++;
        off += len;
    }
    for (int32_t i = 1; i < ns && !rc; i++) rc = push_cand(t, &heap, sym, text, i - 1, i);
    tok_bigram b;
    while (!rc && tok_heap_pop(&heap, &b)) {
        tok_sym *L = &sym[b.left], *R = &sym[b.right];
        if (!L->len || !R->len || L->next != b.right) continue;
        if (t->spm_use_merges ? (L->id != b.lid || R->id != b.rid) : (int32_t)(L->len + R->len) != b.lid) continue;
        L->id = b.result;
        L->len += R->len;
        R->len = 0;
        L->next = R->next;
        if (R->next >= 0) sym[R->next].prev = b.left;
        rc = push_cand(t, &heap, sym, text, L->prev, b.left);
        if (!rc) rc = push_cand(t, &heap, sym, text, b.left, L->next);
    }
    for (int32_t i = 0; !rc && ns > 0 && i >= 0; i = sym[i].next) {
        if (sym[i].id >= 0) rc = tok_ivec_push(out, sym[i].id);
        else rc = emit_bytes(t, (const uint8_t *)text + sym[i].off, sym[i].len, out);
    }
done:
    free(text);
    free(sym);
    free(heap.v);
    return rc;
}
