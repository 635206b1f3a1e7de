/* GGUF writer: every value type and a few tensors round-trip through
 * mend_gguf_open; the default model is rewritten from a copy of its metadata
 * and tensors and reads back identical; bad arguments fail cleanly and never
 * leave a file behind. When the peer venv (scripts/pyenv.sh) is present, the
 * written sample is also read by the gguf python package
 * (tests/fixtures/gguf_write/check_gguf_py.py). */
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include "test.h"
#include "io/gguf.h"
#include "kernels/quants.h"
#include "util/util.h"

static char g_dir[256];

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k = 0;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static int kv_equal(const gguf_kv *a, const gguf_kv *b) {
    if (strcmp(a->key, b->key) || a->type != b->type) return 0;
    switch (a->type) {
    case GGUF_TYPE_STRING: return a->slen == b->slen && memcmp(a->v.s, b->v.s, a->slen) == 0;
    case GGUF_TYPE_ARRAY:
        if (a->arr_type != b->arr_type || a->n != b->n) return 0;
        if (a->arr_type == GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < a->n; i++)
                if (a->arr_slen[i] != b->arr_slen[i] || memcmp(a->arr_str[i], b->arr_str[i], a->arr_slen[i])) return 0;
            return 1;
        }
        if (a->arr_type == GGUF_TYPE_ARRAY) return 1;   /* nested: not stored by the reader */
        return memcmp(a->arr_raw, b->arr_raw, (size_t)a->n * gguf_type_size(a->arr_type)) == 0;
    case GGUF_TYPE_FLOAT32: case GGUF_TYPE_FLOAT64: return memcmp(&a->v.f, &b->v.f, sizeof(double)) == 0;
    default: return a->v.u == b->v.u;
    }
}

static void test_sample(void) {
    mend_gguf_writer *w = NULL;
    CHECK_OK(mend_gguf_writer_init(&w));
    if (!w) return;
    CHECK_OK(mend_gguf_writer_set_str(w, "general.architecture", "llama"));
    CHECK_OK(mend_gguf_writer_set_u8(w, "k.u8", 200));
    CHECK_OK(mend_gguf_writer_set_i8(w, "k.i8", -7));
    CHECK_OK(mend_gguf_writer_set_u16(w, "k.u16", 65000));
    CHECK_OK(mend_gguf_writer_set_i16(w, "k.i16", -30000));
    CHECK_OK(mend_gguf_writer_set_u32(w, "k.u32", 4000000000u));
    CHECK_OK(mend_gguf_writer_set_i32(w, "k.i32", -2000000000));
    CHECK_OK(mend_gguf_writer_set_u64(w, "k.u64", 1ull << 40));
    CHECK_OK(mend_gguf_writer_set_i64(w, "k.i64", -5));
    CHECK_OK(mend_gguf_writer_set_f32(w, "k.f32", 1.5f));
    CHECK_OK(mend_gguf_writer_set_f64(w, "k.f64", -2.25));
    CHECK_OK(mend_gguf_writer_set_bool(w, "k.bool", 1));
    CHECK_OK(mend_gguf_writer_set_str(w, "k.str", "placeholder"));
    CHECK_OK(mend_gguf_writer_set_strn(w, "k.str", "h\xc3\xa9llo\0x", 8));   /* replaces, keeps position */
    int32_t ai[3] = {1, -2, 3};
    CHECK_OK(mend_gguf_writer_set_arr(w, "k.arr_i32", GGUF_TYPE_INT32, ai, 3));
    float af[2] = {0.25f, -1e30f};
    CHECK_OK(mend_gguf_writer_set_arr(w, "k.arr_f32", GGUF_TYPE_FLOAT32, af, 2));
    const char *as[3] = {"a", "", "bc"};
    CHECK_OK(mend_gguf_writer_set_arr_str(w, "k.arr_str", as, NULL, 3));
    CHECK_OK(mend_gguf_writer_set_arr(w, "k.arr_empty", GGUF_TYPE_UINT8, NULL, 0));
    CHECK_OK(mend_gguf_writer_set_u32(w, "k.gone", 1));
    CHECK_OK(mend_gguf_writer_remove(w, "k.gone"));
    CHECK_OK(mend_gguf_writer_remove(w, "k.never"));

    float f[12];
    for (int i = 0; i < 12; i++) f[i] = (float)i * 0.5f - 2.0f;
    int64_t ne_f[2] = {4, 3};
    CHECK_OK(mend_gguf_writer_add_tensor(w, "t.f32", MEND_TYPE_F32, 2, ne_f, f, sizeof f));
    block_q8_0 q[4];
    for (int b = 0; b < 4; b++) {
        q[b].d = mend_f32_to_fp16(0.125f * (float)(b + 1));
        for (int i = 0; i < 32; i++) q[b].qs[i] = (int8_t)(i * 7 - 100 + b);
    }
    int64_t ne_q[2] = {64, 2};
    CHECK_OK(mend_gguf_writer_add_tensor(w, "t.q8", MEND_TYPE_Q8_0, 2, ne_q, q, sizeof q));
    uint8_t odd[5] = {1, 2, 3, 4, 5};
    int64_t ne_o[1] = {5};
    CHECK_OK(mend_gguf_writer_add_tensor(w, "t.i8", 24, 1, ne_o, odd, sizeof odd));

    /* bad tensors are refused and do not change the writer */
    CHECK_ERR(mend_gguf_writer_add_tensor(w, "t.f32", MEND_TYPE_F32, 2, ne_f, f, sizeof f), MEND_EINVAL, "duplicate");
    CHECK_ERR(mend_gguf_writer_add_tensor(w, "t.bad", MEND_TYPE_F32, 2, ne_f, f, 7), MEND_EINVAL, "expected");
    int64_t ne_b[1] = {33};
    CHECK_ERR(mend_gguf_writer_add_tensor(w, "t.bad", MEND_TYPE_Q8_0, 1, ne_b, q, 34), MEND_EINVAL, "block size");
    CHECK_ERR(mend_gguf_writer_add_tensor(w, "t.bad", 99, 1, ne_b, q, 34), MEND_EUNSUPPORTED, "type");
    CHECK_ERR(mend_gguf_writer_add_tensor(w, "a_name_that_is_far_too_long_for_ggml_which_keeps_at_most_sixty_three_bytes", MEND_TYPE_F32,
                                          2, ne_f, f, sizeof f), MEND_EINVAL, "name");
    CHECK_ERR(mend_gguf_writer_set_arr(w, "k.bad", GGUF_TYPE_STRING, ai, 1), MEND_EINVAL, "numeric");
    CHECK_ERR(mend_gguf_writer_set_u8(w, "", 1), MEND_EINVAL, "key");

    const char *path = tmp_path("sample.gguf");
    CHECK_OK(mend_gguf_writer_write(w, path));
    mend_gguf_writer_free(w);

    mend_gguf *g = NULL;
    CHECK_OK(mend_gguf_open(&g, path));
    if (!g) return;
    CHECK(g->version == 3 && g->alignment == 32 && g->n_tensors == 3 && g->n_kv == 17);
    int64_t i;
    double d;
    int b;
    const char *s;
    CHECK_OK(mend_gguf_get_str(g, "general.architecture", &s)); CHECK(strcmp(s, "llama") == 0);
    CHECK_OK(mend_gguf_get_int(g, "k.u8", &i)); CHECK(i == 200);
    CHECK_OK(mend_gguf_get_int(g, "k.i8", &i)); CHECK(i == -7);
    CHECK_OK(mend_gguf_get_int(g, "k.u16", &i)); CHECK(i == 65000);
    CHECK_OK(mend_gguf_get_int(g, "k.i16", &i)); CHECK(i == -30000);
    CHECK_OK(mend_gguf_get_int(g, "k.u32", &i)); CHECK(i == 4000000000ll);
    CHECK_OK(mend_gguf_get_int(g, "k.i32", &i)); CHECK(i == -2000000000ll);
    CHECK_OK(mend_gguf_get_int(g, "k.u64", &i)); CHECK(i == (1ll << 40));
    CHECK_OK(mend_gguf_get_int(g, "k.i64", &i)); CHECK(i == -5);
    CHECK_OK(mend_gguf_get_float(g, "k.f32", &d)); CHECK(d == 1.5);
    CHECK_OK(mend_gguf_get_float(g, "k.f64", &d)); CHECK(d == -2.25);
    CHECK_OK(mend_gguf_get_bool(g, "k.bool", &b)); CHECK(b == 1);
    const gguf_kv *kv = mend_gguf_find(g, "k.str");
    CHECK(kv && kv->type == GGUF_TYPE_STRING && kv->slen == 8 && memcmp(kv->v.s, "h\xc3\xa9llo\0x", 8) == 0);
    CHECK(kv == &g->kv[12]);   /* replaced in place, after k.bool */
    CHECK(mend_gguf_find(g, "k.gone") == NULL);
    kv = mend_gguf_find(g, "k.arr_i32");
    CHECK(kv && kv->arr_type == GGUF_TYPE_INT32 && kv->n == 3 && gguf_arr_i64(kv, 1) == -2 && gguf_arr_i64(kv, 2) == 3);
    kv = mend_gguf_find(g, "k.arr_f32");
    CHECK(kv && kv->n == 2 && gguf_arr_f64(kv, 0) == 0.25 && (float)gguf_arr_f64(kv, 1) == -1e30f);
    /* float elements read as integers saturate instead of overflowing the
     * conversion (a fuzzed vocab with float token types hit this) */
    CHECK(kv && gguf_arr_i64(kv, 0) == 0 && gguf_arr_i64(kv, 1) == INT64_MIN);
    kv = mend_gguf_find(g, "k.arr_str");
    CHECK(kv && kv->arr_type == GGUF_TYPE_STRING && kv->n == 3 && strcmp(kv->arr_str[0], "a") == 0 &&
          kv->arr_slen[1] == 0 && strcmp(kv->arr_str[2], "bc") == 0);
    kv = mend_gguf_find(g, "k.arr_empty");
    CHECK(kv && kv->type == GGUF_TYPE_ARRAY && kv->n == 0);

    const gguf_tensor *t = mend_gguf_find_tensor(g, "t.f32");
    CHECK(t && t->type == MEND_TYPE_F32 && t->n_dims == 2 && t->ne[0] == 4 && t->ne[1] == 3 &&
          t->nbytes == sizeof f && memcmp(t->data, f, sizeof f) == 0);
    t = mend_gguf_find_tensor(g, "t.q8");
    CHECK(t && t->type == MEND_TYPE_Q8_0 && t->ne[0] == 64 && t->ne[1] == 2 && memcmp(t->data, q, sizeof q) == 0);
    CHECK(t && t->offset % 32 == 0);
    t = mend_gguf_find_tensor(g, "t.i8");
    CHECK(t && t->type == 24 && t->ne[0] == 5 && memcmp(t->data, odd, 5) == 0 && t->offset % 32 == 0);
    CHECK(g->data_offset % 32 == 0);
    mend_gguf_close(g);

    /* independent reader: gguf-py, when the peer venv (scripts/pyenv.sh) exists */
    const char *py = test_pyenv_python();
    if (access(py, X_OK) == 0) {
        char cmd[9216]; /* three paths of up to 4 KiB, 0.5 KiB and 4 KiB */
        snprintf(cmd, sizeof cmd, "%s %s %s", py, test_src("tests/fixtures/gguf_write/check_gguf_py.py"), path);
        CHECK_MSG(system(cmd) == 0, "gguf-py could not read %s back", path);
    } else {
        printf("note: %s not found (scripts/pyenv.sh makes it), gguf-py cross-check skipped\n", py);
    }
    unlink(path);
}

/* Custom alignment, an empty file (no tensors), and failures that must not
 * leave temporary files behind. */
static void test_edges(void) {
    mend_gguf_writer *w = NULL;
    CHECK_OK(mend_gguf_writer_init(&w));
    if (!w) return;
    CHECK_OK(mend_gguf_writer_set_u32(w, "general.alignment", 64));
    float f[3] = {1, 2, 3};
    int64_t ne[1] = {3};
    CHECK_OK(mend_gguf_writer_add_tensor(w, "a", MEND_TYPE_F32, 1, ne, f, sizeof f));
    CHECK_OK(mend_gguf_writer_add_tensor(w, "b", MEND_TYPE_F32, 1, ne, f, sizeof f));
    const char *path = tmp_path("align.gguf");
    CHECK_OK(mend_gguf_writer_write(w, path));
    mend_gguf *g = NULL;
    CHECK_OK(mend_gguf_open(&g, path));
    if (g) {
        CHECK(g->alignment == 64 && g->data_offset % 64 == 0);
        const gguf_tensor *t = mend_gguf_find_tensor(g, "b");
        CHECK(t && t->offset == 64 && memcmp(t->data, f, sizeof f) == 0);
        mend_gguf_close(g);
    }
    unlink(path);

    CHECK_OK(mend_gguf_writer_set_u32(w, "general.alignment", 48));
    CHECK_ERR(mend_gguf_writer_write(w, path), MEND_EINVAL, "alignment");
    CHECK(!mend_file_exists(path));
    CHECK_OK(mend_gguf_writer_remove(w, "general.alignment"));
    CHECK_ERR(mend_gguf_writer_write(w, tmp_path("no/such/dir/x.gguf")), MEND_EIO, "temporary");
    mend_gguf_writer_free(w);

    /* metadata only */
    CHECK_OK(mend_gguf_writer_init(&w));
    CHECK_OK(mend_gguf_writer_set_str(w, "general.name", "empty"));
    CHECK_OK(mend_gguf_writer_write(w, path));
    mend_gguf_writer_free(w);
    CHECK_OK(mend_gguf_open(&g, path));
    if (g) {
        CHECK(g->n_tensors == 0 && g->n_kv == 1);
        mend_gguf_close(g);
    }
    unlink(path);
}

/* Rewrite the default model from a copy of its metadata and its tensor
 * bytes; everything must read back identical. */
static void test_copy_model(void) {
    const char *model = test_default_model();
    if (!model) {
        printf("note: default model not found, copy test skipped\n");
        return;
    }
    mend_gguf *src = NULL;
    CHECK_OK(mend_gguf_open(&src, model));
    if (!src) return;
    mend_gguf_writer *w = NULL;
    CHECK_OK(mend_gguf_writer_init(&w));
    CHECK_OK(mend_gguf_writer_copy_kvs(w, src));
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const gguf_tensor *t = &src->tensors[i];
        CHECK_OK(mend_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes));
    }
    const char *path = tmp_path("copy.gguf");
    CHECK_OK(mend_gguf_writer_write(w, path));
    mend_gguf_writer_free(w);
    mend_gguf *g = NULL;
    CHECK_OK(mend_gguf_open(&g, path));
    if (g) {
        CHECK(g->n_kv == src->n_kv && g->n_tensors == src->n_tensors);
        int kv_bad = 0, t_bad = 0;
        for (uint64_t i = 0; i < src->n_kv && i < g->n_kv; i++) kv_bad += !kv_equal(&src->kv[i], &g->kv[i]);
        for (uint64_t i = 0; i < src->n_tensors && i < g->n_tensors; i++) {
            const gguf_tensor *a = &src->tensors[i], *b = &g->tensors[i];
            t_bad += strcmp(a->name, b->name) || a->type != b->type || a->n_dims != b->n_dims ||
                     memcmp(a->ne, b->ne, sizeof a->ne) || a->nbytes != b->nbytes || memcmp(a->data, b->data, a->nbytes);
        }
        CHECK_MSG(kv_bad == 0, "%d metadata entries differ", kv_bad);
        CHECK_MSG(t_bad == 0, "%d tensors differ", t_bad);
        mend_gguf_close(g);
    }
    unlink(path);
    mend_gguf_close(src);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/mend_test_gguf_write.XXXXXX");
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "cannot create a temporary directory\n");
        return 1;
    }
    test_sample();
    test_edges();
    test_copy_model();
    rmdir(g_dir);   /* fails (harmlessly) if a stray file is left: then the check below flags it */
    CHECK_MSG(!mend_file_exists(g_dir), "files left behind in %s", g_dir);
    return test_finish();
}
