/* Helpers for the tokenizer tests: fixture rows (JSONL with hex-encoded
 * strings and reference ids), SHA-256 (FIPS 180-4) of id streams. */
#ifndef MEND_TOK_TEST_UTIL_H
#define MEND_TOK_TEST_UTIL_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mend.h"

/* ---- SHA-256 ---- */
typedef struct sha256_ctx {
    uint32_t h[8];
    uint8_t buf[64];
    uint64_t total;
    size_t nbuf;
} sha256_ctx;

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static inline uint32_t sha_ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(sha256_ctx *c, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = sha_ror(w[i - 15], 7) ^ sha_ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = sha_ror(w[i - 2], 17) ^ sha_ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t S1 = sha_ror(e, 6) ^ sha_ror(e, 11) ^ sha_ror(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = h + S1 + ch + sha256_k[i] + w[i];
        uint32_t S0 = sha_ror(a, 2) ^ sha_ror(a, 13) ^ sha_ror(a, 22);
        uint32_t mj = (a & b) ^ (a & cc) ^ (b & cc);
        uint32_t t2 = S0 + mj;
        h = g; g = f; f = e; e = d + t1; d = cc; cc = b; b = a; a = t1 + t2;
    }
    c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d; c->h[4] += e; c->h[5] += f; c->h[6] += g; c->h[7] += h;
}

static void sha256_init(sha256_ctx *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->total = 0;
    c->nbuf = 0;
}

static void sha256_update(sha256_ctx *c, const void *data, size_t n) {
    const uint8_t *p = data;
    c->total += n;
    while (n) {
        size_t k = 64 - c->nbuf < n ? 64 - c->nbuf : n;
        memcpy(c->buf + c->nbuf, p, k);
        c->nbuf += k;
        p += k;
        n -= k;
        if (c->nbuf == 64) { sha256_block(c, c->buf); c->nbuf = 0; }
    }
}

static void sha256_hex(sha256_ctx *c, char out[65]) {
    uint64_t bits = c->total * 8;
    uint8_t pad = 0x80, z = 0;
    sha256_update(c, &pad, 1);
    while (c->nbuf != 56) sha256_update(c, &z, 1);
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(c, len, 8);
    for (int i = 0; i < 8; i++) sprintf(out + 8 * i, "%08x", c->h[i]);
}

/* sha256 of ids as little-endian int32 */
static inline void sha256_ids(const int32_t *ids, size_t n, char out[65]) {
    sha256_ctx c;
    sha256_init(&c);
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)ids[i];
        uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
        sha256_update(&c, b, 4);
    }
    sha256_hex(&c, out);
}

/* ---- fixture rows ---- */
typedef struct fx_row {
    char *bytes;
    size_t len;
    int valid_utf8;          /* the row has a "text" field and no "spm_lossy" */
    int32_t *ids, *ids_special;
    size_t n_ids, n_ids_special;
    int has_special;
} fx_row;

typedef struct fx_rows {
    fx_row *v;
    size_t n;
} fx_rows;

static int fx_ids(json_t *a, int32_t **out, size_t *n) {
    if (!json_is_array(a)) return -1;
    *n = json_array_size(a);
    *out = malloc((*n + 1) * sizeof **out);
    for (size_t i = 0; i < *n; i++) (*out)[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return 0;
}

static void fx_free(fx_rows *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].bytes);
        free(r->v[i].ids);
        free(r->v[i].ids_special);
    }
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

/* Load a JSONL fixture; returns 0 on success. */
static int fx_load(const char *path, fx_rows *rows) {
    FILE *f = fopen(path, "rb");
    rows->v = NULL;
    rows->n = 0;
    if (!f) { fprintf(stderr, "cannot open fixture %s\n", path); return -1; }
    size_t cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) > 0) {
        json_error_t e;
        json_t *o = json_loads(line, JSON_ALLOW_NUL, &e);
        if (!o) { fprintf(stderr, "%s: bad JSON line: %s\n", path, e.text); continue; }
        if (rows->n == cap) { cap = cap ? cap * 2 : 64; rows->v = realloc(rows->v, cap * sizeof *rows->v); }
        fx_row *r = &rows->v[rows->n++];
        memset(r, 0, sizeof *r);
        const char *hex = json_string_value(json_object_get(o, "hex"));
        size_t hl = hex ? strlen(hex) : 0;
        r->len = hl / 2;
        r->bytes = malloc(r->len + 1);
        for (size_t i = 0; i < r->len; i++) {
            unsigned v;
            sscanf(hex + 2 * i, "%2x", &v);
            r->bytes[i] = (char)v;
        }
        r->bytes[r->len] = 0;
        r->valid_utf8 = (json_object_get(o, "text") != NULL || json_object_get(o, "utf8") != NULL) &&
                        !json_object_get(o, "spm_lossy");   /* "valid": expected to round-trip */
        fx_ids(json_object_get(o, "ids"), &r->ids, &r->n_ids);
        r->has_special = fx_ids(json_object_get(o, "ids_special"), &r->ids_special, &r->n_ids_special) == 0;
        json_decref(o);
    }
    free(line);
    fclose(f);
    return rows->n ? 0 : -1;
}

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

static void print_ids(const char *label, const int32_t *a, size_t n) {
    fprintf(stderr, "  %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", a[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

static void print_bytes(const char *s, size_t n) {
    fprintf(stderr, "  text: \"");
    for (size_t i = 0; i < n && i < 120; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\"\n");
}

/* Encode every row and compare with the reference; returns the number that
 * agree. which: 0 = "ids" with (add_special 0, parse_special 0),
 * 1 = "ids_special" with (1, 1), 2 = "ids_special" with (0, 1). */
static size_t fx_check(const mend_tokenizer *t, const fx_rows *rows, int which, size_t *total, int verbose) {
    size_t agree = 0;
    *total = 0;
    for (size_t i = 0; i < rows->n; i++) {
        const fx_row *r = &rows->v[i];
        if (which && !r->has_special) continue;
        const int32_t *ref = which ? r->ids_special : r->ids;
        size_t nref = which ? r->n_ids_special : r->n_ids;
        int32_t *ids = NULL;
        size_t n = 0;
        (*total)++;
        int rc = mend_tokenize(t, r->bytes, r->len, which == 1, which != 0, &ids, &n);
        if (rc == 0 && ids_equal(ids, n, ref, nref)) agree++;
        else if (verbose) {
            fprintf(stderr, "row %zu (mode %d) differs (rc %d %s)\n", i, which, rc, rc ? mend_last_error() : "");
            print_bytes(r->bytes, r->len);
            print_ids("reference", ref, nref);
            print_ids("mend", ids, n);
        }
        free(ids);
    }
    return agree;
}

/* decode(encode(s)) == s for the valid UTF-8 rows (parse_special off) and
 * detokenize_ex(encode(s, parse_special), render_special) == s */
static size_t fx_roundtrip(const mend_tokenizer *t, const fx_rows *rows, size_t *total, int verbose) {
    size_t ok = 0;
    *total = 0;
    for (size_t i = 0; i < rows->n; i++) {
        const fx_row *r = &rows->v[i];
        if (!r->valid_utf8) continue;
        for (int ps = 0; ps < 2; ps++) {
            int32_t *ids = NULL;
            size_t n = 0;
            char *back = NULL;
            (*total)++;
            int rc = mend_tokenize(t, r->bytes, r->len, 0, ps, &ids, &n);
            if (!rc) rc = mend_detokenize_ex(t, ids, n, ps, &back);
            if (!rc && memchr(r->bytes, 0, r->len)) {
                /* a NUL inside: rebuild the exact bytes from the pieces */
                char *cat = malloc(r->len * 4 + 64);
                size_t k = 0;
                for (size_t j = 0; j < n && k < r->len * 4; j++) {
                    int pl = mend_token_piece(t, ids[j], cat + k, r->len * 4 + 64 - k);
                    if (pl > 0) k += (size_t)pl;
                }
                size_t skip = k == r->len + 1 && cat[0] == ' ';   /* SPM: the added leading space */
                if (k - skip == r->len && !memcmp(cat + skip, r->bytes, r->len) && !memcmp(back, r->bytes, strlen(back)))
                    ok++;
                else if (verbose) fprintf(stderr, "row %zu: round trip with NUL fails\n", i);
                free(cat);
            } else if (!rc && strlen(back) == r->len && !memcmp(back, r->bytes, r->len)) ok++;
            else if (verbose) {
                fprintf(stderr, "row %zu: round trip (parse_special %d) fails\n", i, ps);
                print_bytes(r->bytes, r->len);
                if (back) print_bytes(back, strlen(back));
            }
            free(ids);
            free(back);
        }
    }
    return ok;
}

#endif
