/* Inputs that once crashed a reader (found by the fuzz targets in fuzz/):
 * each must now fail, or succeed, with a clear status, never crash. The raw
 * reproducers live in tests/hardening/regressions/<target>/ and are also
 * replayed through the fuzz targets (test_replay_*). */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include "test.h"
#include "eval/tasks.h"
#include "io/gguf.h"
#include "model/model.h"
#include "prompt/bank.h"
#include "tok/tokenizer.h"
#include "util/util.h"

static char scratch[256];

static const char *put(const char *name, const void *data, size_t n) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        if (n) fwrite(data, 1, n, f);
        fclose(f);
    }
    return path;
}

/* tasks: an empty file maps to NULL; the line loop did pointer arithmetic on it */
static void test_tasks_empty(void) {
    mend_task *t = NULL;
    CHECK_ERR(mend_task_load(&t, put("empty.jsonl", "", 0), 0), MEND_EFORMAT, "no examples");
    CHECK(t == NULL);
    CHECK_ERR(mend_task_load(&t, put("blank.jsonl", "\n \n", 3), 0), MEND_EFORMAT, "no examples");
}

/* GGUF whose tokenizer has more tokens than the embedding has rows: refused
 * at load (before, every forward over the extra ids failed) */
static void test_vocab_mismatch(void) {
    mend_gguf *g = NULL;
    CHECK_OK(mend_gguf_open(&g, test_src("tests/fixtures/hf/llama.gguf")));
    if (!g) return;
    mend_gguf_writer *w = NULL;
    CHECK_OK(mend_gguf_writer_init(&w));
    CHECK_OK(mend_gguf_writer_copy_kvs(w, g));
    const gguf_kv *tk = mend_gguf_find(g, "tokenizer.ggml.tokens");
    const gguf_kv *ty = mend_gguf_find(g, "tokenizer.ggml.token_type");
    CHECK(tk && ty && tk->n == 300 && ty->n == 300);
    if (!tk || !ty) return;
    uint64_t n = tk->n + 4;
    const char **strs = calloc(n, sizeof *strs);
    uint64_t *lens = calloc(n, sizeof *lens);
    int32_t *types = calloc(n, sizeof *types);
    for (uint64_t i = 0; i < n; i++) {
        strs[i] = i < tk->n ? tk->arr_str[i] : (i == tk->n ? "<x1>" : i == tk->n + 1 ? "<x2>" : i == tk->n + 2 ? "<x3>" : "<x4>");
        lens[i] = i < tk->n ? tk->arr_slen[i] : 4;
        types[i] = i < tk->n ? (int32_t)gguf_arr_i64(ty, i) : 4;
    }
    CHECK_OK(mend_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, n));
    CHECK_OK(mend_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n));
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        CHECK_OK(mend_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes));
    }
    char path[512];
    snprintf(path, sizeof path, "%s/vocab_mismatch.gguf", scratch);
    CHECK_OK(mend_gguf_writer_write(w, path));
    mend_gguf_writer_free(w);
    mend_gguf_close(g);
    free(strs);
    free(lens);
    free(types);
    mend_model *m = NULL;
    CHECK_ERR(mend_model_load(&m, path, NULL), MEND_EFORMAT, "tokenizer has 304 tokens but the token embedding has only 300 rows");
    CHECK(m == NULL);
}

/* byte-level BPE word cache: a word that encodes to no tokens, stored before
 * the cache's id array existed, did pointer arithmetic on NULL (found by
 * fuzz_tokenize with SmolLM2's tokenizer; replayed on every tokenizer here) */
static void encode_twice(const mend_tokenizer *t, const char *what, const char *data, size_t n) {
    for (int pass = 0; pass < 2; pass++) {   /* second pass: cache hits */
        int32_t *ids = NULL;
        size_t k = 0;
        CHECK_OK(mend_tokenize(t, data, n, 0, 0, &ids, &k));
        int ok = 1;
        for (size_t i = 0; i < k; i++) ok &= ids[i] >= 0 && ids[i] < mend_tokenizer_n_vocab(t);
        CHECK_MSG(ok && k > 0, "%s: %zu ids, all in the vocabulary: %d", what, k, ok);
        free(ids);
    }
}

static void test_bpe_cache_empty_word(void) {
    size_t n = 0;
    char *data = NULL;
    CHECK_OK(mend_read_file(test_src("tests/hardening/regressions/fuzz_tokenize/bpe_cache_empty_word"), 1 << 20, &data, &n));
    if (!data || n < 2) return;
    const char *paths[] = {test_default_model(), test_src("tests/fixtures/tok/tiny_smollm.gguf"),
                           test_src("tests/fixtures/tok/tiny_deepseek_coder.gguf")};
    for (int i = 0; i < 3; i++) {
        if (!paths[i]) continue;
        mend_gguf *g = NULL;
        mend_tokenizer *t = NULL;
        CHECK_OK(mend_gguf_open(&g, paths[i]));
        if (g) CHECK_OK(mend_tokenizer_from_gguf(&t, g));
        if (t) encode_twice(t, paths[i], data + 1, n - 1);
        mend_tokenizer_free(t);
        mend_gguf_close(g);
    }
    free(data);
}

/* tokenizer.json that is a FIFO (read forever before) or a directory: refused */
static void test_tokenizer_json_not_regular(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/fifo_tokenizer.json", scratch);
    mend_tokenizer *t = NULL;
    if (mkfifo(path, 0600) == 0) CHECK_ERR(mend_tokenizer_from_json(&t, path, NULL), MEND_EIO, "not a regular file");
    snprintf(path, sizeof path, "%s/dir_tokenizer.json", scratch);
    mkdir(path, 0700);
    CHECK_ERR(mend_tokenizer_from_json(&t, path, NULL), MEND_EIO, "not a regular file");
    CHECK(t == NULL);
}

/* GGUF float array read as integers: 1.7e19 overflowed the int64 conversion
 * (UB; found by fuzz_gguf, which reads the last element of every array as an
 * integer). The value now saturates, and the tokenizer refuses float token
 * types with an error naming the key. */
static void test_gguf_float_array_as_int(void) {
    mend_gguf *g = NULL;
    CHECK_OK(mend_gguf_open(&g, test_src("tests/hardening/regressions/fuzz_gguf/float_token_type_overflow")));
    if (!g) return;
    const gguf_kv *ty = mend_gguf_find(g, "tokenizer.ggml.token_type");
    CHECK(ty && ty->arr_type == GGUF_TYPE_FLOAT32 && ty->n == 700);
    if (ty && ty->n == 700) {
        CHECK(gguf_arr_i64(ty, 699) == INT64_MAX);
        CHECK(gguf_arr_i64(ty, 0) == (int64_t)gguf_arr_f64(ty, 0));
    }
    mend_tokenizer *t = NULL;
    CHECK_ERR(mend_tokenizer_from_gguf(&t, g), MEND_EFORMAT, "tokenizer.ggml.token_type is an array of");
    CHECK(t == NULL);
    mend_gguf_close(g);
}

/* bank.json: a centroid value finite as a double but not as a float */
static void test_bank_centroid_float_range(void) {
    static const char base[] =
        "{\"format\": \"mend-prompt-bank\", \"version\": 1, \"base_model\": null, \"dim\": 2,"
        " \"num_virtual_tokens\": 1, \"prompts\": [{\"name\": \"a\", \"adapter\": \"a\","
        " \"domain\": \"a\", \"corpus\": null, \"centroid\": [%s, 1]}],"
        " \"selector\": {\"default\": \"router\", \"layers\": [0, 1]}}";
    char json[1024];
    mend_bank *b = NULL;
    snprintf(json, sizeof json, base, "1e39");
    CHECK_ERR(mend_bank_parse("bank.json", json, strlen(json), &b), MEND_EFORMAT, "prompts[0].centroid[0]");
    CHECK(b == NULL);
    snprintf(json, sizeof json, base, "3e38");
    CHECK_OK(mend_bank_parse("bank.json", json, strlen(json), &b));
    mend_bank_free(b);
}

int main(void) {
    snprintf(scratch, sizeof scratch, "%s/mend-hardening-%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    mend_mkdir_p(scratch);
    test_tasks_empty();
    test_vocab_mismatch();
    test_bpe_cache_empty_word();
    test_tokenizer_json_not_regular();
    test_bank_centroid_float_range();
    test_gguf_float_array_as_int();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", scratch);
    return test_finish();
}
