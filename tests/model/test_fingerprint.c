/* Model fingerprints: stable across loads and load options, blind to the
 * path and the metadata, changed by one byte of one tensor; the 16-hex-digit
 * form; how a record compares with a model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "io/gguf.h"
#include "model/model.h"
#include "util/util.h"

#define TINY "tests/fixtures/hf/llama.gguf"

static uint64_t fp_of(const char *path, int keep_packed) {
    mend_load_opts lo = {.keep_packed = keep_packed};
    mend_model *m = NULL;
    mend_fp fp = {0};
    if (mend_model_load(&m, path, &lo) || mend_model_fingerprint(m, &fp)) {
        CHECK_MSG(0, "%s: %s", path, mend_last_error());
        mend_model_free(m);
        return 0;
    }
    CHECK(fp.has_model && !fp.has_source && !fp.has_recipe);
    mend_model_free(m);
    return fp.model;
}

static void copy(const char *from, const char *to) {
    char *buf = NULL;
    size_t len = 0;
    CHECK_OK(mend_read_file(from, (size_t)1 << 30, &buf, &len));
    CHECK_OK(mend_write_file_atomic(to, buf, len));
    free(buf);
}

/* flip one bit at byte off of path */
static void flip(const char *path, long off) {
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
}

static void test_gguf(void) {
    const char *tiny = test_src(TINY);
    const uint64_t a = fp_of(tiny, 0);
    CHECK(a != 0);
    CHECK(fp_of(tiny, 0) == a);
    CHECK(fp_of(tiny, 1) == a);   /* the stored bytes, whatever the loader keeps */

    char dir[] = "/tmp/mend-test-fp-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *cp = mend_path_join(dir, "renamed.gguf"), *meta = mend_path_join(dir, "meta.gguf");
    copy(tiny, cp);
    CHECK(fp_of(cp, 0) == a);     /* not the path */

    /* the same tensors under other metadata */
    mend_gguf *g = NULL;
    CHECK_OK(mend_gguf_open(&g, tiny));
    mend_gguf_writer *w = NULL;
    CHECK_OK(mend_gguf_writer_init(&w));
    CHECK_OK(mend_gguf_writer_copy_kvs(w, g));
    CHECK_OK(mend_gguf_writer_set_str(w, "general.name", "another name"));
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        CHECK_OK(mend_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes));
    }
    CHECK_OK(mend_gguf_writer_write(w, meta));
    CHECK(fp_of(meta, 0) == a);   /* not the metadata */
    /* a recorded recipe that is not 16 hex digits: refused, naming file and key */
    CHECK_OK(mend_gguf_writer_set_str(w, "mend.compress.recipe", "not-a-recipe"));
    CHECK_OK(mend_gguf_writer_write(w, meta));
    mend_gguf_writer_free(w);
    {
        mend_model *m = NULL;
        mend_fp fp;
        CHECK_OK(mend_model_load(&m, meta, NULL));
        if (m) CHECK_ERR(mend_model_fingerprint(m, &fp), MEND_EFORMAT, "meta.gguf: key 'mend.compress.recipe'");
        mend_model_free(m);
    }

    /* one byte of one tensor (the middle of the last one) */
    const gguf_tensor *last = &g->tensors[g->n_tensors - 1];
    const long off = (long)(g->data_offset + last->offset + last->nbytes / 2);
    mend_gguf_close(g);
    flip(cp, off);
    const uint64_t b = fp_of(cp, 0);
    CHECK_MSG(b != a && b != 0, "one flipped byte kept the fingerprint %016llx", (unsigned long long)a);
    flip(cp, off);
    CHECK(fp_of(cp, 0) == a);
    unlink(cp);
    unlink(meta);
    rmdir(dir);
    free(cp);
    free(meta);
}

static void test_hf(void) {
    const char *dir = test_src("tests/fixtures/hf/llama");
    const uint64_t a = fp_of(dir, 0);
    CHECK(a != 0 && fp_of(dir, 0) == a);
    /* another file, other bytes (the HF fixture stores f32 in HF's row order) */
    CHECK(a != fp_of(test_src(TINY), 0));
}

static void test_hex(void) {
    char s[17];
    mend_fp_hex(0x0123456789abcdefull, s);
    CHECK(strcmp(s, "0123456789abcdef") == 0);
    uint64_t x = 0;
    CHECK_OK(mend_fp_parse("0123456789abcdef", &x));
    CHECK(x == 0x0123456789abcdefull);
    CHECK_ERR(mend_fp_parse("0123456789abcde", &x), MEND_EFORMAT, "16 lowercase hex digits");
    CHECK_ERR(mend_fp_parse("0123456789abcdef0", &x), MEND_EFORMAT, "not a fingerprint");
    CHECK_ERR(mend_fp_parse("0123456789ABCDEF", &x), MEND_EFORMAT, "not a fingerprint");
    CHECK_ERR(mend_fp_parse("0123456789abcdeg", &x), MEND_EFORMAT, "not a fingerprint");
    CHECK_ERR(mend_fp_parse(NULL, &x), MEND_EFORMAT, "not a fingerprint");
    /* one changed word changes the hash, whatever its position or bit */
    uint8_t buf[77] = {0};
    const uint64_t h0 = mend_hash_bytes(buf, sizeof buf, 1);
    int same = 0;
    for (size_t i = 0; i < sizeof buf; i++)
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1 << bit);
            same += mend_hash_bytes(buf, sizeof buf, 1) == h0;
            buf[i] ^= (uint8_t)(1 << bit);
        }
    CHECK(same == 0);
    CHECK(mend_hash_bytes(buf, 76, 1) != h0);   /* the length counts */
    /* FNV-1a 64: the published test vectors, and continuing equals one pass */
    CHECK(mend_fnv1a(MEND_FNV1A_INIT, "", 0) == 0xcbf29ce484222325ull);
    CHECK(mend_fnv1a(MEND_FNV1A_INIT, "a", 1) == 0xaf63dc4c8601ec8cull);
    CHECK(mend_fnv1a(MEND_FNV1A_INIT, "foobar", 6) == 0x85944171f73967e8ull);
    CHECK(mend_fnv1a(mend_fnv1a(MEND_FNV1A_INIT, "foo", 3), "bar", 3) == 0x85944171f73967e8ull);
}

static void test_compare(void) {
    const mend_fp model = {.has_model = 1, .has_recipe = 1, .model = 1, .recipe = 7};
    const mend_fp same = {.has_model = 1, .model = 1}, other = {.has_model = 1, .model = 2},
                  recipe = {.has_model = 1, .has_recipe = 1, .model = 2, .recipe = 7},
                  recipe2 = {.has_model = 1, .has_recipe = 1, .model = 2, .recipe = 8}, none = {0};
    CHECK(mend_fp_compare(&model, &same) == MEND_FP_SAME);
    CHECK(mend_fp_compare(&model, &other) == MEND_FP_OTHER);
    CHECK(mend_fp_compare(&model, &recipe) == MEND_FP_SAME_RECIPE);
    CHECK(mend_fp_compare(&model, &recipe2) == MEND_FP_OTHER);
    CHECK(mend_fp_compare(&model, &none) == MEND_FP_UNKNOWN);
    const mend_fp plain = {.has_model = 1, .model = 9};   /* a model with no recipe */
    CHECK(mend_fp_compare(&plain, &recipe) == MEND_FP_OTHER);
}

/* the default model: how long a fingerprint takes (printed, not asserted) */
static void time_default(void) {
    const char *path = test_default_model();
    if (!path) return;
    mend_load_opts lo = {.keep_packed = 1, .no_repack = 1};
    mend_model *m = NULL;
    if (mend_model_load(&m, path, &lo)) return;
    mend_fp fp;
    const double t0 = mend_now();
    CHECK_OK(mend_model_fingerprint(m, &fp));
    const double t1 = mend_now();
    char s[17];
    mend_fp_hex(fp.model, s);
    printf("default model: fingerprint %s in %.3f s\n", s, t1 - t0);
    mend_model_free(m);
}

int main(void) {
    test_hex();
    test_compare();
    test_gguf();
    test_hf();
    time_default();
    return test_finish();
}
