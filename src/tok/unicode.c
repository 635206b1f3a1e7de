/* UTF-8 helpers and the GPT-2 byte <-> unicode mapping.
 *
 * Byte-level BPE vocabularies spell every byte as a printable character:
 * the bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves, the
 * remaining 68 bytes (controls, space, 0x7F..0xA0, 0xAD) map in increasing
 * order to U+0100, U+0101, ... (so ' ' is U+0120 'Ġ', '\n' is U+010A 'Ċ').
 */
#include <stdlib.h>
#include "tok/tok_internal.h"

static int g_map_ready;
static uint16_t g_b2u[256];      /* byte -> codepoint */
static int16_t g_u2b[324];       /* codepoint (< 324) -> byte, -1 if none */

static int keeps_itself(int b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static void build_map(void) {
    /* idempotent and race-benign: every thread computes identical values */
    int n = 0;
    for (int i = 0; i < 324; i++) g_u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        uint16_t cp = keeps_itself(b) ? (uint16_t)b : (uint16_t)(256 + n++);
        g_b2u[b] = cp;
        g_u2b[cp] = (int16_t)b;
    }
    __atomic_store_n(&g_map_ready, 1, __ATOMIC_RELEASE);
}

static void ensure_map(void) {
    if (!__atomic_load_n(&g_map_ready, __ATOMIC_ACQUIRE)) build_map();
}

void tok_byte_to_utf8(uint8_t b, char out[4], int *n) {
    ensure_map();
    *n = mend_utf8_encode(g_b2u[b], out);
}

int tok_unicode_to_byte(uint32_t cp) {
    ensure_map();
    return cp < 324 ? g_u2b[cp] : -1;
}

int tok_utf8_valid(const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        if (p[i] < 0x80) { i++; continue; }
        uint32_t cp;
        int k = mend_utf8_decode((const char *)p + i, n - i, &cp);
        if (!k) return 0;
        i += (size_t)k;
    }
    return 1;
}

/* llama.cpp's lenient decoder (unicode_cpt_from_utf8): the lead byte alone
 * decides the length, continuation bytes must be 10xxxxxx; overlong forms
 * are accepted. Returns the length or 0 when invalid. */
static int lenient_len(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (!(c & 0x80)) { *cp = c; return 1; }
    if (!(c & 0x40)) return 0;
    if (!(c & 0x20)) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (!(c & 0x10)) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if (!(c & 0x08)) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
              ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return 4;
    }
    return 0;
}

int tok_utf8_sanitize(const char *s, size_t n, char **match, char **out, size_t *out_n) {
    size_t cap;
    /* every input byte yields at most 3 output bytes (U+FFFD) */
    if (!mend_mul_ok(n, 3, &cap) || !mend_add_ok(cap, 1, &cap))
        return mend_set_error(MEND_ERANGE, "tokenizer: text of %zu bytes is too long", n);
    char *m = malloc(cap), *o = NULL;
    if (!m) return mend_set_error(MEND_ENOMEM, "tokenizer: out of memory for %zu bytes of text", n);
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, k = 0;
    while (i < n) {
        uint32_t cp;
        int len = lenient_len(p + i, n - i, &cp);
        if (!len) { cp = 0xFFFD; len = 1; }
        if (cp > 0x10FFFF) cp = 0xFFFD;
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            /* a surrogate: kept in the output, matched as U+E000 (also neither
             * letter, number nor space) since PCRE2 cannot hold it */
            if (!o) {
                o = malloc(cap);
                if (!o) { free(m); return mend_set_error(MEND_ENOMEM, "tokenizer: out of memory"); }
                memcpy(o, m, k);
            }
            mend_utf8_encode(cp, o + k);
            k += (size_t)mend_utf8_encode(0xE000, m + k);
        } else {
            int w = mend_utf8_encode(cp, m + k);
            if (o) memcpy(o + k, m + k, (size_t)w);
            k += (size_t)w;
        }
        i += (size_t)len;
    }
    m[k] = 0;
    if (o) o[k] = 0;
    *match = m;
    *out = o;
    *out_n = k;
    return 0;
}
