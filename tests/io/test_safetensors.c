/* safetensors reader/writer: values against a file written by the reference
 * `safetensors` package (tests/fixtures/hf/st_dtypes.*), writer round trips,
 * and bad input (truncation, absurd lengths, malformed headers) that must
 * fail with a sentence naming the file and field, never crash. */
#define _GNU_SOURCE
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <unistd.h>
#include "test.h"
#include "io/safetensors.h"
#include "kernels/quants.h"

static char g_tmp[256];

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (e->d_type == DT_DIR) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static const char *tmp_path(const char *name) {
    static char buf[4][1024];
    static int k = 0;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(2); }
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

/* u64 header length (or len_override when != UINT64_MAX) | header | data */
static void write_st(const char *path, const char *header, uint64_t len_override, const void *data, size_t n) {
    size_t hl = strlen(header);
    uint8_t *b = malloc(8 + hl + n + 1);
    uint64_t L = len_override != UINT64_MAX ? len_override : hl;
    memcpy(b, &L, 8);
    memcpy(b + 8, header, hl);
    if (n) memcpy(b + 8 + hl, data, n);
    write_bytes(path, b, 8 + hl + n);
    free(b);
}

/* opening must fail with code, and the sentence must name the file and substr */
static void expect_open_err(const char *name, int code, const char *substr) {
    const char *p = tmp_path(name);
    mend_safetensors *st = (mend_safetensors *)0x1;
    int rc = mend_safetensors_open(&st, p);
    const char *e = mend_last_error();
    CHECK_MSG(rc == code && strstr(e, p) && (!substr || strstr(e, substr)) && st == NULL,
              "%s: expected %s containing '%s', got %s: %s", name, mend_strerror(code), substr ? substr : "",
              mend_strerror(rc), e);
    if (rc == 0) mend_safetensors_close(st);
}

static void bad(const char *name, const char *header, uint64_t len_override, size_t data_bytes, int code,
                const char *substr) {
    uint8_t *d = calloc(1, data_bytes + 1);
    write_st(tmp_path(name), header, len_override, d, data_bytes);
    free(d);
    expect_open_err(name, code, substr);
}

static double jval(const json_t *v) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        return strcmp(s, "inf") == 0 ? INFINITY : strcmp(s, "-inf") == 0 ? -INFINITY : NAN;
    }
    return json_number_value(v);
}

static void test_reference_file(void) {
    const char *path = test_src("tests/fixtures/hf/st_dtypes.safetensors");
    json_error_t jerr;
    json_t *ref = json_load_file(test_src("tests/fixtures/hf/st_dtypes.json"), 0, &jerr);
    CHECK_MSG(ref != NULL, "st_dtypes.json: %s", jerr.text);
    mend_safetensors *st = NULL;
    CHECK_OK(mend_safetensors_open(&st, path));
    if (!st || !ref) return;
    json_t *tens = json_object_get(ref, "tensors");
    CHECK(st->n_tensors == json_object_size(tens));
    CHECK(st->header_len % 8 == 0);
    json_t *meta = json_object_get(ref, "metadata");
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        const char *got = mend_safetensors_meta(st, k);
        CHECK_MSG(got && strcmp(got, json_string_value(v)) == 0, "metadata %s = %s", k, got ? got : "(null)");
    }
    CHECK(mend_safetensors_meta(st, "absent") == NULL);
    json_object_foreach(tens, k, v) {
        const mend_st_tensor *t = mend_safetensors_find(st, k);
        CHECK_MSG(t != NULL, "tensor %s not found", k);
        if (!t) continue;
        CHECK_MSG(strcmp(t->dtype, json_string_value(json_object_get(v, "dtype"))) == 0, "%s dtype %s", k, t->dtype);
        json_t *shape = json_object_get(v, "shape");
        CHECK((size_t)t->n_dims == json_array_size(shape));
        int64_t ne = 1;
        for (int d = 0; d < t->n_dims; d++) {
            CHECK(t->shape[d] == json_integer_value(json_array_get(shape, d)));
            ne *= t->shape[d];
        }
        CHECK(t->n_elems == ne);
        json_t *vals = json_object_get(v, "values");
        float out[64];
        if (json_is_null(vals)) {
            CHECK(t->type == -1);
            CHECK_ERR(mend_safetensors_read_f32(st, t, 0, t->n_elems, out), MEND_EUNSUPPORTED, "I64");
            continue;
        }
        CHECK_OK(mend_safetensors_read_f32(st, t, 0, t->n_elems, out));
        CHECK((size_t)ne == json_array_size(vals));
        for (int64_t i = 0; i < ne && i < 64; i++) {
            double want = jval(json_array_get(vals, (size_t)i));
            CHECK_MSG((float)want == out[i] && signbit((float)want) == signbit(out[i]),
                      "%s[%lld] = %.9g, want %.9g", k, (long long)i, out[i], want);
        }
        /* partial reads and range checks */
        if (ne >= 2) {
            float one;
            CHECK_OK(mend_safetensors_read_f32(st, t, ne - 1, 1, &one));
            CHECK(one == out[ne - 1] || (isnan(one) && isnan(out[ne - 1])));
            CHECK_ERR(mend_safetensors_read_f32(st, t, ne - 1, 2, out), MEND_ERANGE, k);
            CHECK_ERR(mend_safetensors_read_f32(st, t, -1, 1, out), MEND_ERANGE, k);
        }
    }
    mend_safetensors_close(st);
    json_decref(ref);
}

static void test_writer_roundtrip(void) {
    float a[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    uint16_t h[4], bf[4];
    float hv[4] = {1.0f, -0.5f, 65504.0f, 5.9604645e-08f}, bv[4] = {3.0f, -1.0f, 1e20f, 0.15625f};
    for (int i = 0; i < 4; i++) {
        h[i] = mend_f32_to_fp16(hv[i]);
        bf[i] = mend_f32_to_bf16(bv[i]);
    }
    float scalar = 42.0f;
    mend_st_out outs[] = {
        {"w.f32", MEND_TYPE_F32, 2, {2, 3}, a},
        {"h.f16", MEND_TYPE_F16, 1, {4}, h},
        {"b.bf16", MEND_TYPE_BF16, 2, {2, 2}, bf},
        {"scalar", MEND_TYPE_F32, 0, {0}, &scalar},
        {"empty", MEND_TYPE_F32, 2, {0, 5}, NULL},
    };
    const char *meta[] = {"format", "pt", "k2", "v\"2\u00e9", NULL};
    const char *p = tmp_path("rt.safetensors");
    CHECK_OK(mend_safetensors_write(p, outs, 5, meta));
    mend_safetensors *st = NULL;
    CHECK_OK(mend_safetensors_open(&st, p));
    if (!st) return;
    CHECK(st->n_tensors == 5);
    CHECK(st->header_len % 8 == 0);
    CHECK(st->data_size == 24 + 8 + 8 + 4 + 0);
    CHECK(mend_safetensors_meta(st, "format") && !strcmp(mend_safetensors_meta(st, "format"), "pt"));
    CHECK(mend_safetensors_meta(st, "k2") && !strcmp(mend_safetensors_meta(st, "k2"), "v\"2\u00e9"));
    for (int i = 0; i < 5; i++) {
        const mend_st_tensor *t = &st->tensors[i];   /* header order == written order */
        CHECK_MSG(!strcmp(t->name, outs[i].name), "tensor %d is %s", i, t->name);
        CHECK(t->type == outs[i].type && t->n_dims == outs[i].n_dims);
        for (int d = 0; d < t->n_dims; d++) CHECK(t->shape[d] == outs[i].shape[d]);
    }
    float got[6];
    const mend_st_tensor *t = mend_safetensors_find(st, "w.f32");
    CHECK_OK(mend_safetensors_read_f32(st, t, 0, 6, got));
    CHECK(memcmp(got, a, sizeof a) == 0);
    t = mend_safetensors_find(st, "h.f16");
    CHECK_OK(mend_safetensors_read_f32(st, t, 0, 4, got));
    for (int i = 0; i < 4; i++) CHECK(got[i] == hv[i]);
    t = mend_safetensors_find(st, "b.bf16");
    CHECK_OK(mend_safetensors_read_f32(st, t, 0, 4, got));
    for (int i = 0; i < 4; i++) CHECK(got[i] == mend_bf16_to_f32(bf[i]));
    CHECK(got[0] == 3.0f && got[1] == -1.0f);
    t = mend_safetensors_find(st, "scalar");
    CHECK(t && t->n_elems == 1);
    CHECK_OK(mend_safetensors_read_f32(st, t, 0, 1, got));
    CHECK(got[0] == 42.0f);
    t = mend_safetensors_find(st, "empty");
    CHECK(t && t->n_elems == 0 && t->nbytes == 0);
    CHECK_OK(mend_safetensors_read_f32(st, t, 0, 0, got));
    mend_safetensors_close(st);

    /* no metadata, no tensors */
    CHECK_OK(mend_safetensors_write(tmp_path("empty.safetensors"), NULL, 0, NULL));
    CHECK_OK(mend_safetensors_open(&st, tmp_path("empty.safetensors")));
    if (st) {
        CHECK(st->n_tensors == 0 && st->n_meta == 0);
        mend_safetensors_close(st);
    }

    /* writer refuses bad requests and names the tensor */
    mend_st_out dup[] = {{"x", MEND_TYPE_F32, 1, {1}, a}, {"x", MEND_TYPE_F32, 1, {1}, a}};
    CHECK_ERR(mend_safetensors_write(tmp_path("bad.safetensors"), dup, 2, NULL), MEND_EINVAL, "'x' appears twice");
    mend_st_out q4[] = {{"q", MEND_TYPE_Q4_0, 1, {32}, a}};
    CHECK_ERR(mend_safetensors_write(tmp_path("bad.safetensors"), q4, 1, NULL), MEND_EUNSUPPORTED, "'q'");
    mend_st_out nd[] = {{"n", MEND_TYPE_F32, 9, {1}, a}};
    CHECK_ERR(mend_safetensors_write(tmp_path("bad.safetensors"), nd, 1, NULL), MEND_EINVAL, "n_dims 9");
    mend_st_out neg[] = {{"g", MEND_TYPE_F32, 2, {2, -1}, a}};
    CHECK_ERR(mend_safetensors_write(tmp_path("bad.safetensors"), neg, 1, NULL), MEND_ERANGE, "'g'");
    mend_st_out big[] = {{"big", MEND_TYPE_F32, 3, {INT64_C(1) << 40, INT64_C(1) << 40, 4}, a}};
    CHECK_ERR(mend_safetensors_write(tmp_path("bad.safetensors"), big, 1, NULL), MEND_ERANGE, "'big'");
    mend_st_out nul[] = {{"z", MEND_TYPE_F32, 1, {3}, NULL}};
    CHECK_ERR(mend_safetensors_write(tmp_path("bad.safetensors"), nul, 1, NULL), MEND_EINVAL, "'z'");
    mend_st_out res[] = {{"__metadata__", MEND_TYPE_F32, 1, {1}, a}};
    CHECK_ERR(mend_safetensors_write(tmp_path("bad.safetensors"), res, 1, NULL), MEND_EINVAL, "reserved");
    const char *badmeta[] = {"k", NULL};
    CHECK_ERR(mend_safetensors_write(tmp_path("bad.safetensors"), outs, 1, badmeta), MEND_EINVAL, "'k'");
    CHECK(!mend_file_exists(tmp_path("bad.safetensors")));
    CHECK_ERR(mend_safetensors_write(tmp_path("nodir/x.safetensors"), outs, 1, NULL), MEND_EIO, "nodir");
}

static void test_bad_headers(void) {
    const uint64_t NOLEN = UINT64_MAX;
    /* sizes */
    write_bytes(tmp_path("empty"), "", 0);
    expect_open_err("empty", MEND_EFORMAT, "too short");
    write_bytes(tmp_path("five"), "\x10\0\0\0\0", 5);
    expect_open_err("five", MEND_EFORMAT, "too short");
    bad("past_eof", "{}", 4096, 0, MEND_EFORMAT, "header length 4096 runs past the end");
    bad("len_2_63", "{}", UINT64_C(1) << 63, 0, MEND_EFORMAT, "header length 9223372036854775808");
    bad("len_max", "{}", UINT64_MAX - 1, 0, MEND_EFORMAT, "runs past the end");
    bad("len_zero", "", NOLEN, 0, MEND_EFORMAT, "does not start with a JSON object");
    /* JSON */
    bad("not_json", "{\"a\": {\"dtype\": \"F32\", ", NOLEN, 0, MEND_EFORMAT, "not valid JSON");
    bad("not_object", "[1, 2, 3]  ", NOLEN, 0, MEND_EFORMAT, "does not start with a JSON object");
    bad("trailing", "{} xyz", NOLEN, 0, MEND_EFORMAT, "not valid JSON");
    bad("dup",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
        NOLEN, 8, MEND_EFORMAT, "duplicate");
    bad("entry_not_obj", "{\"w\": 3}", NOLEN, 0, MEND_EFORMAT, "'w' is not an object");
    bad("meta_not_obj", "{\"__metadata__\": [1]}", NOLEN, 0, MEND_EFORMAT, "__metadata__");
    bad("meta_not_str", "{\"__metadata__\": {\"a\": 1}}", NOLEN, 0, MEND_EFORMAT, "'__metadata__' key 'a'");
    /* fields */
    bad("no_dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", NOLEN, 4, MEND_EFORMAT, "'w': field 'dtype'");
    bad("dtype_num", "{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", NOLEN, 4, MEND_EFORMAT,
        "field 'dtype'");
    bad("unknown_dtype", "{\"w\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}", NOLEN, 4,
        MEND_EUNSUPPORTED, "unknown dtype 'F99'");
    bad("no_shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", NOLEN, 4, MEND_EFORMAT, "'w': field 'shape'");
    bad("neg_shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", NOLEN, 4, MEND_EFORMAT,
        "'w': field 'shape' element 0");
    bad("float_shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", NOLEN, 4,
        MEND_EFORMAT, "field 'shape' element 0");
    bad("many_dims", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", NOLEN, 4,
        MEND_EUNSUPPORTED, "9 dimensions");
    bad("shape_overflow",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", NOLEN, 4,
        MEND_ERANGE, "'w': field 'shape'");
    bad("bytes_overflow",
        "{\"w\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952,2],\"data_offsets\":[0,4]}}", NOLEN, 4,
        MEND_ERANGE, "'w'");
    bad("no_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", NOLEN, 4, MEND_EFORMAT, "'w': field 'data_offsets'");
    bad("offsets_3", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", NOLEN, 8, MEND_EFORMAT,
        "field 'data_offsets'");
    bad("offsets_neg", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", NOLEN, 8, MEND_EFORMAT,
        "field 'data_offsets'");
    bad("offsets_reversed", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", NOLEN, 8,
        MEND_EFORMAT, "begin after end");
    bad("offsets_past", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", NOLEN, 12,
        MEND_EFORMAT, "'w': field 'data_offsets' [0, 16] runs past the data section (12 bytes");
    bad("offsets_huge", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9223372036854775800,"
        "9223372036854775804]}}", NOLEN, 8, MEND_EFORMAT, "runs past the data section");
    bad("span_mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", NOLEN, 24,
        MEND_EFORMAT, "'w': shape [2, 3] of F32 needs 24 bytes but field 'data_offsets' [0, 20] spans 20");
    bad("span_bf16", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,12]}}", NOLEN, 12,
        MEND_EFORMAT, "needs 6 bytes");
    bad("overlap",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
        NOLEN, 16, MEND_EFORMAT, "overlap");
    bad("overlap_same",
        "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
        NOLEN, 4, MEND_EFORMAT, "overlap");

    /* accepted: gaps, out-of-order entries, zero-size tensors, padding spaces, other dtypes */
    const char *ok = "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
                     "\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}    ";
    float data[3] = {0, 0, 7.5f};
    write_st(tmp_path("ok"), ok, NOLEN, data, 12);
    mend_safetensors *st = NULL;
    CHECK_OK(mend_safetensors_open(&st, tmp_path("ok")));
    if (st) {
        float x = 0;
        CHECK(st->n_tensors == 3 && !strcmp(st->tensors[0].name, "b"));
        CHECK_OK(mend_safetensors_read_f32(st, mend_safetensors_find(st, "b"), 0, 1, &x));
        CHECK(x == 7.5f);
        CHECK_ERR(mend_safetensors_read_f32(st, mend_safetensors_find(st, "a"), 0, 1, &x), MEND_EUNSUPPORTED, "I32");
        mend_safetensors_close(st);
    }
    CHECK_ERR(mend_safetensors_open(&st, tmp_path("no_such_file")), MEND_EIO, "no_such_file");
    CHECK_ERR(mend_safetensors_open(&st, g_tmp), MEND_EIO, "not a regular file");
}

/* every proper prefix of a valid file fails cleanly; byte flips never crash */
static void test_truncation_and_flips(void) {
    float a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    uint16_t b[3] = {1, 2, 3};
    mend_st_out outs[] = {{"alpha", MEND_TYPE_F32, 2, {2, 4}, a}, {"beta", MEND_TYPE_BF16, 1, {3}, b}};
    const char *meta[] = {"format", "pt", NULL};
    CHECK_OK(mend_safetensors_write(tmp_path("full"), outs, 2, meta));
    char *buf = NULL;
    size_t len = 0;
    CHECK_OK(mend_read_file(tmp_path("full"), 1 << 20, &buf, &len));
    if (!buf) return;
    int fails = 0, named = 0;
    for (size_t n = 0; n < len; n++) {
        write_bytes(tmp_path("prefix"), buf, n);
        mend_safetensors *st = NULL;
        int rc = mend_safetensors_open(&st, tmp_path("prefix"));
        if (rc) {
            fails++;
            if (strstr(mend_last_error(), tmp_path("prefix"))) named++;
        } else {
            mend_safetensors_close(st);
        }
    }
    CHECK_MSG(fails == (int)len, "%d of %zu truncated files failed", fails, len);
    CHECK(named == fails);

    /* flip every byte of the header and length to a few values: must not crash, and
     * anything that opens must still be self-consistent */
    uint64_t hl = mend_rd64(buf);
    int opened = 0;
    const uint8_t vals[] = {0x00, 0xff, '"', '}', '9', '-'};
    char *mut = malloc(len);
    for (size_t i = 0; i < 8 + hl; i++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(mut, buf, len);
            mut[i] = (char)vals[v];
            write_bytes(tmp_path("flip"), mut, len);
            mend_safetensors *st = NULL;
            if (mend_safetensors_open(&st, tmp_path("flip")) == 0) {
                opened++;
                for (size_t t = 0; t < st->n_tensors; t++) {
                    const mend_st_tensor *T = &st->tensors[t];
                    CHECK(T->end <= st->data_size && T->nbytes == (size_t)T->n_elems * T->elem_size);
                }
                mend_safetensors_close(st);
            }
        }
    }
    CHECK(opened > 0);   /* e.g. flips inside the metadata value */
    free(mut);
    free(buf);
}

/* 3 000 tensors written in an order unlike their names' order: every one
 * found by name (binary search over the sorted names), absent names not */
static void test_many_tensors(void) {
    enum { N = 3000 };
    mend_st_out *outs = calloc(N, sizeof *outs);
    char (*names)[32] = calloc(N, sizeof *names);
    float *vals = calloc(N, sizeof *vals);
    if (!outs || !names || !vals) { CHECK(0); free(outs); free(names); free(vals); return; }
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "layers.%d.w", (i * 7919) % N);
        vals[i] = (float)i;
        outs[i] = (mend_st_out){names[i], MEND_TYPE_F32, 1, {1}, &vals[i]};
    }
    const char *p = tmp_path("many.safetensors");
    CHECK_OK(mend_safetensors_write(p, outs, N, NULL));
    mend_safetensors *st = NULL;
    CHECK_OK(mend_safetensors_open(&st, p));
    int bad = 0;
    for (int i = 0; st && i < N; i++) {
        const mend_st_tensor *t = mend_safetensors_find(st, names[i]);
        float v = -1;
        bad += !t || mend_safetensors_read_f32(st, t, 0, 1, &v) != 0 || v != (float)i;
    }
    CHECK_MSG(bad == 0, "%d of %d tensors not found or wrong", bad, N);
    CHECK(st && !mend_safetensors_find(st, "layers.3000.w") && !mend_safetensors_find(st, "") &&
          !mend_safetensors_find(st, "layers.1"));
    mend_safetensors_close(st);
    free(outs);
    free(names);
    free(vals);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/mend_st_XXXXXX");
    if (!mkdtemp(g_tmp)) { perror("mkdtemp"); return 2; }
    test_reference_file();
    test_writer_roundtrip();
    test_bad_headers();
    test_truncation_and_flips();
    test_many_tensors();
    rm_tree(g_tmp);
    return test_finish();
}
