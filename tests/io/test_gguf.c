/* GGUF reader: every value type, hand-built files, every truncation, corrupt
 * headers, and the real default model against the gguf-py summary. */
#include <stdint.h>
#include "test.h"
#include "io/gguf.h"
#include "kernels/quants.h"

/* ---- a tiny GGUF builder (little endian host assumed, as x86) ---- */
typedef struct { uint8_t *p; size_t n, cap; } buf;
static void put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str(buf *b, const char *s) { u64(b, strlen(s)); put(b, s, strlen(s)); }
static void pad(buf *b, size_t a) { while (b->n % a) { uint8_t z = 0; put(b, &z, 1); } }

/* A file with every scalar type, a string, arrays of ints/strings/nested,
 * and two tensors (f32 [4,2] and q8_0 [32]). */
static buf build_sample(void) {
    buf b = {0};
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, 2);   /* tensors */
    u64(&b, 16);  /* kvs */
    str(&b, "k.u8"); u32(&b, GGUF_TYPE_UINT8); { uint8_t v = 200; put(&b, &v, 1); }
    str(&b, "k.i8"); u32(&b, GGUF_TYPE_INT8); { int8_t v = -7; put(&b, &v, 1); }
    str(&b, "k.u16"); u32(&b, GGUF_TYPE_UINT16); { uint16_t v = 65000; put(&b, &v, 2); }
    str(&b, "k.i16"); u32(&b, GGUF_TYPE_INT16); { int16_t v = -30000; put(&b, &v, 2); }
    str(&b, "k.u32"); u32(&b, GGUF_TYPE_UINT32); u32(&b, 4000000000u);
    str(&b, "k.i32"); u32(&b, GGUF_TYPE_INT32); { int32_t v = -2000000000; put(&b, &v, 4); }
    str(&b, "k.f32"); u32(&b, GGUF_TYPE_FLOAT32); { float v = 1.5f; put(&b, &v, 4); }
    str(&b, "k.bool"); u32(&b, GGUF_TYPE_BOOL); { uint8_t v = 1; put(&b, &v, 1); }
    str(&b, "k.str"); u32(&b, GGUF_TYPE_STRING); str(&b, "h\xc3\xa9llo");
    str(&b, "k.u64"); u32(&b, GGUF_TYPE_UINT64); u64(&b, 1ull << 40);
    str(&b, "k.i64"); u32(&b, GGUF_TYPE_INT64); u64(&b, (uint64_t)-5);
    str(&b, "k.f64"); u32(&b, GGUF_TYPE_FLOAT64); { double v = -2.25; put(&b, &v, 8); }
    str(&b, "k.arr_i32"); u32(&b, GGUF_TYPE_ARRAY); u32(&b, GGUF_TYPE_INT32); u64(&b, 3);
    { int32_t v[3] = {1, -2, 3}; put(&b, v, 12); }
    str(&b, "k.arr_str"); u32(&b, GGUF_TYPE_ARRAY); u32(&b, GGUF_TYPE_STRING); u64(&b, 2);
    str(&b, "a"); str(&b, "bc");
    str(&b, "k.arr_nested"); u32(&b, GGUF_TYPE_ARRAY); u32(&b, GGUF_TYPE_ARRAY); u64(&b, 1);
    u32(&b, GGUF_TYPE_UINT8); u64(&b, 2); { uint8_t v[2] = {9, 8}; put(&b, v, 2); }
    str(&b, "general.alignment"); u32(&b, GGUF_TYPE_UINT32); u32(&b, 64);
    /* tensors */
    str(&b, "t.f32"); u32(&b, 2); u64(&b, 4); u64(&b, 2); u32(&b, MEND_TYPE_F32); u64(&b, 0);
    str(&b, "t.q8"); u32(&b, 1); u64(&b, 32); u32(&b, MEND_TYPE_Q8_0); u64(&b, 64);
    pad(&b, 64);
    float f[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    put(&b, f, sizeof f);
    pad(&b, 64);
    block_q8_0 q;
    q.d = 0x3c00; /* 1.0 */
    for (int i = 0; i < 32; i++) q.qs[i] = (int8_t)(i - 16);
    put(&b, &q, sizeof q);
    return b;
}

static void test_sample(void) {
    buf b = build_sample();
    mend_gguf *g = NULL;
    CHECK_OK(mend_gguf_open_mem(&g, b.p, b.n, "sample.gguf"));
    if (!g) return;
    int64_t i;
    double f;
    int bl;
    const char *s;
    CHECK(g->version == 3 && g->n_kv == 16 && g->n_tensors == 2 && g->alignment == 64);
    CHECK_OK(mend_gguf_get_int(g, "k.u8", &i)); CHECK(i == 200);
    CHECK_OK(mend_gguf_get_int(g, "k.i8", &i)); CHECK(i == -7);
    CHECK_OK(mend_gguf_get_int(g, "k.u16", &i)); CHECK(i == 65000);
    CHECK_OK(mend_gguf_get_int(g, "k.i16", &i)); CHECK(i == -30000);
    CHECK_OK(mend_gguf_get_int(g, "k.u32", &i)); CHECK(i == 4000000000ll);
    CHECK_OK(mend_gguf_get_int(g, "k.i32", &i)); CHECK(i == -2000000000ll);
    CHECK_OK(mend_gguf_get_int(g, "k.u64", &i)); CHECK(i == (1ll << 40));
    CHECK_OK(mend_gguf_get_int(g, "k.i64", &i)); CHECK(i == -5);
    CHECK_OK(mend_gguf_get_float(g, "k.f32", &f)); CHECK(f == 1.5);
    CHECK_OK(mend_gguf_get_float(g, "k.f64", &f)); CHECK(f == -2.25);
    CHECK_OK(mend_gguf_get_bool(g, "k.bool", &bl)); CHECK(bl == 1);
    CHECK_OK(mend_gguf_get_str(g, "k.str", &s)); CHECK(strcmp(s, "h\xc3\xa9llo") == 0);
    CHECK_ERR(mend_gguf_get_str(g, "k.u8", &s), MEND_EFORMAT, "k.u8");
    CHECK_ERR(mend_gguf_get_int(g, "k.str", &i), MEND_EFORMAT, "string");
    CHECK_ERR(mend_gguf_get_int(g, "no.such", &i), MEND_EFORMAT, "no.such");
    i = 42;
    CHECK_OK(mend_gguf_opt_int(g, "no.such", &i)); CHECK(i == 42);
    const gguf_kv *kv = mend_gguf_find(g, "k.arr_i32");
    CHECK(kv && kv->type == GGUF_TYPE_ARRAY && kv->n == 3 && gguf_arr_i64(kv, 1) == -2);
    kv = mend_gguf_find(g, "k.arr_str");
    CHECK(kv && kv->n == 2 && strcmp(kv->arr_str[1], "bc") == 0 && kv->arr_slen[1] == 2);
    kv = mend_gguf_find(g, "k.arr_nested");
    CHECK(kv && kv->n == 1 && kv->arr_raw == NULL);
    const gguf_tensor *t = mend_gguf_find_tensor(g, "t.f32");
    CHECK(t && t->ne[0] == 4 && t->ne[1] == 2 && t->nbytes == 32 && ((const float *)t->data)[5] == 5.0f);
    t = mend_gguf_find_tensor(g, "t.q8");
    CHECK(t && t->nbytes == sizeof(block_q8_0));
    if (t) {
        float y[32];
        CHECK_OK(mend_dequantize_row(t->type, t->data, y, 32));
        CHECK(y[0] == -16.0f && y[31] == 15.0f);
    }
    mend_gguf_close(g);

    /* Every proper prefix must fail cleanly (never crash, never succeed). */
    int bad = 0;
    for (size_t n = 0; n < b.n; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.p, n);
        mend_gguf *h = NULL;
        int rc = mend_gguf_open_mem(&h, copy, n, "trunc.gguf");
        if (rc == 0 || h) bad++;
        if (rc != 0 && !strstr(mend_last_error(), "trunc.gguf")) bad++;
        mend_gguf_close(h);
        free(copy);
    }
    CHECK_MSG(bad == 0, "%d truncated prefixes were not rejected with a named error", bad);

    /* Flip every byte of the header region: no crash, any error names the file. */
    int unnamed = 0;
    size_t hdr = b.n - 64 - sizeof(block_q8_0);
    for (size_t k = 0; k < hdr; k++) {
        uint8_t *copy = malloc(b.n);
        memcpy(copy, b.p, b.n);
        copy[k] ^= 0xA5;
        mend_gguf *h = NULL;
        int rc = mend_gguf_open_mem(&h, copy, b.n, "flip.gguf");
        if (rc != 0 && !strstr(mend_last_error(), "flip.gguf")) unnamed++;
        mend_gguf_close(h);
        free(copy);
    }
    CHECK_MSG(unnamed == 0, "%d corrupted files gave an error without the file name", unnamed);
    free(b.p);
}

static void test_corrupt(void) {
    mend_gguf *g = NULL;
    CHECK_ERR(mend_gguf_open_mem(&g, "GGUX\3\0\0\0", 8, "magic.gguf"), MEND_EFORMAT, "magic");
    CHECK_ERR(mend_gguf_open(&g, "/nonexistent/x.gguf"), MEND_EIO, "/nonexistent/x.gguf");

    buf b = {0};
    put(&b, "GGUF", 4); u32(&b, 7); u64(&b, 0); u64(&b, 0);
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "ver.gguf"), MEND_EUNSUPPORTED, "version 7");
    b.n = 0;
    put(&b, "GGUF", 4); u32(&b, 3); u64(&b, 1ull << 62); u64(&b, 0);
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "count.gguf"), MEND_ERANGE, "tensor_count");
    b.n = 0;
    put(&b, "GGUF", 4); u32(&b, 3); u64(&b, 0); u64(&b, 1);
    str(&b, "k"); u32(&b, GGUF_TYPE_STRING); u64(&b, ~0ull);
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "strlen.gguf"), MEND_ERANGE, "strlen.gguf");
    b.n = 0;
    put(&b, "GGUF", 4); u32(&b, 3); u64(&b, 0); u64(&b, 1);
    str(&b, "k"); u32(&b, GGUF_TYPE_ARRAY); u32(&b, GGUF_TYPE_UINT64); u64(&b, (1ull << 27));
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "arr.gguf"), MEND_EFORMAT, "truncated");
    b.n = 0;
    put(&b, "GGUF", 4); u32(&b, 3); u64(&b, 0); u64(&b, 1);
    str(&b, "k"); u32(&b, 99); u32(&b, 0);
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "vtype.gguf"), MEND_EFORMAT, "unknown value type");
    b.n = 0;
    /* tensor data past the end of file */
    put(&b, "GGUF", 4); u32(&b, 3); u64(&b, 1); u64(&b, 0);
    str(&b, "w"); u32(&b, 2); u64(&b, 1024); u64(&b, 1024); u32(&b, MEND_TYPE_F32); u64(&b, 0);
    pad(&b, 32);
    float z[16] = {0};
    put(&b, z, sizeof z);
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "past.gguf"), MEND_EFORMAT, "past the end");
    b.n = 0;
    /* element count overflow */
    put(&b, "GGUF", 4); u32(&b, 3); u64(&b, 1); u64(&b, 0);
    str(&b, "w"); u32(&b, 4); u64(&b, 1ull << 40); u64(&b, 1ull << 40); u64(&b, 1ull << 40); u64(&b, 1); u32(&b, 0); u64(&b, 0);
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "ovf.gguf"), MEND_ERANGE, "overflows");
    b.n = 0;
    /* unknown ggml type, bad n_dims, misaligned offset, duplicate names */
    put(&b, "GGUF", 4); u32(&b, 3); u64(&b, 1); u64(&b, 0);
    str(&b, "w"); u32(&b, 1); u64(&b, 32); u32(&b, 77); u64(&b, 0);
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "type.gguf"), MEND_EUNSUPPORTED, "ggml type 77");
    b.n = 0;
    put(&b, "GGUF", 4); u32(&b, 3); u64(&b, 1); u64(&b, 0);
    str(&b, "w"); u32(&b, 9); u64(&b, 32);
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "dims.gguf"), MEND_EFORMAT, "n_dims");
    b.n = 0;
    put(&b, "GGUF", 4); u32(&b, 3); u64(&b, 1); u64(&b, 0);
    str(&b, "w"); u32(&b, 1); u64(&b, 32); u32(&b, MEND_TYPE_Q8_0); u64(&b, 3);
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "align.gguf"), MEND_EFORMAT, "aligned");
    b.n = 0;
    put(&b, "GGUF", 4); u32(&b, 3); u64(&b, 1); u64(&b, 0);
    str(&b, "w"); u32(&b, 1); u64(&b, 30); u32(&b, MEND_TYPE_Q8_0); u64(&b, 0);
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "blk.gguf"), MEND_EFORMAT, "block size");
    b.n = 0;
    put(&b, "GGUF", 4); u32(&b, 3); u64(&b, 0); u64(&b, 2);
    str(&b, "k"); u32(&b, GGUF_TYPE_UINT8); { uint8_t v = 1; put(&b, &v, 1); }
    str(&b, "k"); u32(&b, GGUF_TYPE_UINT8); { uint8_t v = 1; put(&b, &v, 1); }
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "dup.gguf"), MEND_EFORMAT, "duplicate");
    b.n = 0;
    put(&b, "GGUF", 4); u32(&b, 3); u64(&b, 0); u64(&b, 1);
    str(&b, "general.alignment"); u32(&b, GGUF_TYPE_UINT32); u32(&b, 48);
    CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "al.gguf"), MEND_EFORMAT, "power of two");
    free(b.p);
}

/* 50 000 keys and 5 000 tensors: every one found by name, absent names not
 * found, and a duplicate as the last key or tensor refused with its name
 * (the duplicate check and the lookups go through a hash index; a scan per
 * name made a file of 10^5 keys take 10 s to reject). */
static void test_many_names(void) {
    enum { NK = 50000, NT = 5000 };
    char name[32];
    for (int dup = 0; dup < 3; dup++) {   /* 0: none, 1: last key, 2: last tensor */
        buf b = {0};
        put(&b, "GGUF", 4);
        u32(&b, 3);
        u64(&b, NT);
        u64(&b, NK);
        for (int i = 0; i < NK; i++) {
            snprintf(name, sizeof name, "key.%d", dup == 1 && i == NK - 1 ? 1234 : i);
            str(&b, name);
            u32(&b, GGUF_TYPE_UINT32);
            u32(&b, (uint32_t)i);
        }
        for (int i = 0; i < NT; i++) {
            snprintf(name, sizeof name, "blk.%d.w", dup == 2 && i == NT - 1 ? 77 : i);
            str(&b, name);
            u32(&b, 1);
            u64(&b, 8);
            u32(&b, MEND_TYPE_F32);
            u64(&b, (uint64_t)i * 32);
        }
        pad(&b, 32);
        size_t data = b.n;
        b.n += (size_t)NT * 32;
        if (b.n > b.cap) b.p = realloc(b.p, b.cap = b.n);
        memset(b.p + data, 0, (size_t)NT * 32);
        mend_gguf *g = NULL;
        if (dup == 1) {
            CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "many.gguf"), MEND_EFORMAT, "duplicate metadata key 'key.1234'");
        } else if (dup == 2) {
            CHECK_ERR(mend_gguf_open_mem(&g, b.p, b.n, "many.gguf"), MEND_EFORMAT, "duplicate tensor name 'blk.77.w'");
        } else {
            CHECK_OK(mend_gguf_open_mem(&g, b.p, b.n, "many.gguf"));
            int bad = 0;
            for (int i = 0; g && i < NK; i++) {
                snprintf(name, sizeof name, "key.%d", i);
                const gguf_kv *kv = mend_gguf_find(g, name);
                bad += !kv || kv->v.u != (uint64_t)i;
            }
            for (int i = 0; g && i < NT; i++) {
                snprintf(name, sizeof name, "blk.%d.w", i);
                const gguf_tensor *t = mend_gguf_find_tensor(g, name);
                bad += !t || t->offset != (uint64_t)i * 32;
            }
            CHECK_MSG(bad == 0, "%d names not found or wrong", bad);
            CHECK(g && !mend_gguf_find(g, "key.50000") && !mend_gguf_find(g, "") && !mend_gguf_find_tensor(g, "blk.5000.w"));
            mend_gguf_close(g);
        }
        free(b.p);
    }
}

/* The real model against the summary written by gguf-py. */
static void test_real(void) {
    const char *path = test_default_model();
    if (!path) {
        printf("default model not found; skipping the real-file check\n");
        return;
    }
    mend_gguf *g = NULL;
    CHECK_OK(mend_gguf_open(&g, path));
    if (!g) return;
    FILE *f = fopen(test_src("tests/fixtures/gguf/smollm2_summary.tsv"), "r");
    CHECK(f != NULL);
    if (!f) { mend_gguf_close(g); return; }
    char line[1024];
    int n_kv = 0, n_t = 0, mism = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *fld[6] = {0};
        int k = 0;
        for (char *p = strtok(line, "\t"); p && k < 6; p = strtok(NULL, "\t")) fld[k++] = p;
        if (k >= 4 && strcmp(fld[0], "kv") == 0) {
            n_kv++;
            const gguf_kv *kv = mend_gguf_find(g, fld[1]);
            if (!kv) { mism++; fprintf(stderr, "missing key %s\n", fld[1]); continue; }
            if (strcmp(fld[2], "string") == 0) {
                if (kv->type != GGUF_TYPE_STRING || kv->slen != strtoull(fld[3], NULL, 10)) mism++;
            } else if (strcmp(fld[2], "array") == 0) {
                if (kv->type != GGUF_TYPE_ARRAY || kv->n != strtoull(fld[3], NULL, 10)) mism++;
            } else {
                double want = strtod(fld[3], NULL), got;
                if (mend_gguf_get_float(g, fld[1], &got) != 0 || got != want) {
                    mism++;
                    fprintf(stderr, "key %s: %g vs %g\n", fld[1], got, want);
                }
            }
        } else if (k >= 5 && strcmp(fld[0], "tensor") == 0) {
            n_t++;
            const gguf_tensor *t = mend_gguf_find_tensor(g, fld[1]);
            if (!t) { mism++; continue; }
            int64_t ne[4] = {1, 1, 1, 1};
            int d = 0;
            for (char *p = fld[3]; *p && d < 4; d++) {
                ne[d] = strtoll(p, &p, 10);
                if (*p == ',') p++;
            }
            if ((int)t->type != atoi(fld[2]) || t->ne[0] != ne[0] || t->ne[1] != ne[1] ||
                t->offset != strtoull(fld[4], NULL, 10)) {
                mism++;
                fprintf(stderr, "tensor %s differs\n", fld[1]);
            }
        }
    }
    fclose(f);
    CHECK(n_kv == 33 && (uint64_t)n_kv == g->n_kv);
    CHECK(n_t == 272 && (uint64_t)n_t == g->n_tensors);
    CHECK_MSG(mism == 0, "%d entries differ from the gguf-py summary", mism);
    const gguf_kv *tok = mend_gguf_find(g, "tokenizer.ggml.tokens");
    CHECK(tok && tok->arr_type == GGUF_TYPE_STRING && strcmp(tok->arr_str[1], "<|im_start|>") == 0);
    mend_gguf_close(g);
}

int main(void) {
    test_sample();
    test_corrupt();
    test_many_names();
    test_real();
    return test_finish();
}
