/* SmolLM2 and Gemma 3 tokenizers against llama.cpp (fixtures from
 * tests/fixtures/tok/make_tok_fixtures.py and
 * tests/fixtures/gemma3/make_gemma3_tok.py): a few hundred tricky strings with
 * parse_special off and on, the whole of wiki.test.raw (count, sha256 of the
 * ids, 2000-id spans), round trips, and for SmolLM2 the same vocabulary loaded
 * through a tokenizer.json written from the GGUF. Each model is skipped when
 * absent. */
#include <sys/stat.h>
#include <unistd.h>
#include "test.h"
#include "tok_test_util.h"
#include "io/gguf.h"
#include "tok/tokenizer.h"
#include "util/util.h"

static void check_strings(const mend_tokenizer *t, const fx_rows *rows, const char *label) {
    size_t tot0, tot2, totr;
    size_t a0 = fx_check(t, rows, 0, &tot0, 1);
    size_t a2 = fx_check(t, rows, 2, &tot2, 1);
    size_t rt = fx_roundtrip(t, rows, &totr, 1);
    printf("%s: strings agree %zu/%zu (parse_special off), %zu/%zu (on); round trip %zu/%zu\n", label, a0, tot0, a2,
           tot2, rt, totr);
    CHECK(tot0 > 300 && a0 == tot0);
    CHECK(tot2 > 300 && a2 == tot2);
    CHECK(rt == totr);
}

/* ids[off..] against the fixture's array field (SPAN ids) */
static void check_span(const int32_t *ids, size_t nid, json_t *ref, const char *field, size_t off) {
    json_t *span = json_object_get(ref, field);
    size_t nf = json_array_size(span), bad = 0;
    for (size_t i = 0; i < nf; i++)
        if (off + i >= nid || ids[off + i] != (int32_t)json_integer_value(json_array_get(span, i))) {
            if (!bad) fprintf(stderr, "%s: first difference at id %zu\n", field, off + i);
            bad++;
        }
    CHECK_MSG(nf == 2000 && bad == 0, "%s: %zu ids, %zu differ", field, nf, bad);
}

static void check_wiki(const mend_tokenizer *t, const char *fixture) {
    char *txt = NULL, *fx = NULL;
    size_t n = 0, fn = 0;
    if (mend_read_file(test_data("ppl/wiki.test.raw"), (size_t)1 << 30, &txt, &n)) {
        printf("note: %s not readable, wiki check skipped\n", test_data("ppl/wiki.test.raw"));
        return;
    }
    CHECK_OK(mend_read_file(test_src(fixture), (size_t)1 << 24, &fx, &fn));
    json_t *ref = fx ? json_loads(fx, 0, NULL) : NULL;
    CHECK(ref != NULL);
    int32_t *ids = NULL;
    size_t nid = 0;
    double t0 = mend_now();
    CHECK_OK(mend_tokenize(t, txt, n, 0, 0, &ids, &nid));
    double dt = mend_now() - t0;
    printf("wiki.test.raw: %zu bytes -> %zu ids in %.3f s (%.1f MB/s)\n", n, nid, dt, n / dt / 1e6);
    if (ref) {
        char hex[65];
        sha256_ids(ids, nid, hex);
        size_t want = (size_t)json_integer_value(json_object_get(ref, "count"));
        const char *want_hex = json_string_value(json_object_get(ref, "ids_sha256"));
        CHECK_MSG(nid == want, "count %zu, reference %zu", nid, want);
        CHECK_MSG(want_hex && !strcmp(hex, want_hex), "ids sha256 %s, reference %s", hex, want_hex ? want_hex : "?");
        check_span(ids, nid, ref, "first_ids", 0);
        if (json_object_get(ref, "mid_ids"))
            check_span(ids, nid, ref, "mid_ids", (size_t)json_integer_value(json_object_get(ref, "mid_offset")));
    }
    char *back = NULL;
    CHECK_OK(mend_detokenize(t, ids, nid, &back));
    CHECK(back && strlen(back) == n && !memcmp(back, txt, n));
    free(back);
    free(ids);
    json_decref(ref);
    free(fx);
    free(txt);
}

static void check_api(const mend_tokenizer *t) {
    CHECK(mend_tokenizer_n_vocab(t) == 49152);
    CHECK(mend_token_bos(t) == 1);
    CHECK(mend_token_eos(t) == 2);
    CHECK(mend_tokenizer_add_bos(t) == 0);
    CHECK(mend_token_is_eog(t, 2));    /* <|im_end|> */
    CHECK(mend_token_is_eog(t, 0));    /* <|endoftext|> */
    CHECK(!mend_token_is_eog(t, 1));   /* <|im_start|> */
    CHECK(!mend_token_is_eog(t, 1000));
    CHECK(!mend_token_is_eog(t, -1) && !mend_token_is_eog(t, 49152));
    char buf[64];
    int n = mend_token_piece(t, 2, buf, sizeof buf);
    CHECK(n == 10 && !memcmp(buf, "<|im_end|>", 10));
    /* add_bos is false for SmolLM2: add_special changes nothing */
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    CHECK_OK(mend_tokenize(t, "Hello", 5, 1, 0, &a, &na));
    CHECK_OK(mend_tokenize(t, "Hello", 5, 0, 0, &b, &nb));
    CHECK(ids_equal(a, na, b, nb));
    free(a);
    free(b);
    /* control tokens are omitted unless rendering is asked for */
    int32_t chat[3] = {1, 19556, 2};
    char *s = NULL;
    CHECK_OK(mend_detokenize(t, chat, 3, &s));
    CHECK(s && !strcmp(s, "Hello"));
    free(s);
    CHECK_OK(mend_detokenize_ex(t, chat, 3, 1, &s));
    CHECK(s && !strcmp(s, "<|im_start|>Hello<|im_end|>"));
    free(s);
}

/* tokenizer.json + tokenizer_config.json written from the GGUF vocabulary:
 * merges alternate between the "a b" and ["a", "b"] spellings */
static int write_hf_files(const mend_gguf *g, const char *dir) {
    const gguf_kv *toks = mend_gguf_find(g, "tokenizer.ggml.tokens");
    const gguf_kv *types = mend_gguf_find(g, "tokenizer.ggml.token_type");
    const gguf_kv *merges = mend_gguf_find(g, "tokenizer.ggml.merges");
    if (!toks || !types || !merges) return -1;
    json_t *vocab = json_object(), *m = json_array(), *added = json_array();
    for (uint64_t i = 0; i < toks->n; i++) {
        json_object_set_new(vocab, toks->arr_str[i], json_integer((json_int_t)i));
        if (gguf_arr_i64(types, i) == 3)
            json_array_append_new(added, json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)i, "content",
                                                   toks->arr_str[i], "single_word", 0, "lstrip", 0, "rstrip", 0,
                                                   "normalized", 0, "special", 1));
    }
    for (uint64_t i = 0; i < merges->n; i++) {
        const char *s = merges->arr_str[i];
        if (i % 2 == 0) {
            json_array_append_new(m, json_string(s));
        } else {
            const char *sp = strchr(s + 1, ' ');
            char *l = mend_strndup(s, (size_t)(sp - s));
            json_array_append_new(m, json_pack("[s, s]", l, sp + 1));
            free(l);
        }
    }
    json_t *root = json_pack(
        "{s:s, s:o, s:n, s:{s:s, s:[{s:s, s:b}, {s:s, s:b, s:b, s:b}]}, s:n, s:{s:s}, s:{s:s, s:n, s:o, s:o, s:b}}",
        "version", "1.0", "added_tokens", added, "normalizer", "pre_tokenizer", "type", "Sequence", "pretokenizers",
        "type", "Digits", "individual_digits", 1, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
        "use_regex", 1, "post_processor", "decoder", "type", "ByteLevel", "model", "type", "BPE", "unk_token", "vocab",
        vocab, "merges", m, "byte_fallback", 0);
    char *p1 = mend_path_join(dir, "tokenizer.json"), *p2 = mend_path_join(dir, "tokenizer_config.json");
    int rc = root ? json_dump_file(root, p1, JSON_COMPACT) : -1;
    json_t *cfg = json_pack("{s:b, s:s, s:{s:s}}", "add_bos_token", 0, "bos_token", "<|im_start|>", "eos_token",
                            "content", "<|im_end|>");
    if (!rc) rc = json_dump_file(cfg, p2, 0);
    json_decref(root);
    json_decref(cfg);
    free(p1);
    free(p2);
    return rc;
}

static void check_json_route(const mend_gguf *g, const fx_rows *rows) {
    char dir[] = "/tmp/mend_tok_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0); return; }
    CHECK(write_hf_files(g, dir) == 0);
    char *p1 = mend_path_join(dir, "tokenizer.json"), *p2 = mend_path_join(dir, "tokenizer_config.json");
    mend_tokenizer *t = NULL;
    double t0 = mend_now();
    CHECK_OK(mend_tokenizer_from_json(&t, p1, p2));
    printf("tokenizer.json (%d tokens) loaded in %.3f s\n", mend_tokenizer_n_vocab(t), mend_now() - t0);
    if (t) {
        check_strings(t, rows, "tokenizer.json route");
        CHECK(mend_token_bos(t) == 1 && mend_token_eos(t) == 2 && !mend_tokenizer_add_bos(t));
        CHECK(mend_token_is_eog(t, 2));
    }
    mend_tokenizer_free(t);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
    free(p1);
    free(p2);
}

/* Gemma 3: SentencePiece-style scores with byte fallback, no space prefix,
 * BOS added */
static void check_gemma3(void) {
    const char *model = test_model_file("gemma-3-270m-q4_k_m.gguf");
    if (!model) {
        printf("note: gemma-3-270m-q4_k_m.gguf not found (scripts/fetch_model.sh gemma3-270m), gemma3 skipped\n");
        return;
    }
    mend_gguf *g = NULL;
    mend_tokenizer *t = NULL;
    CHECK_OK(mend_gguf_open(&g, model));
    double t0 = mend_now();
    if (g) CHECK_OK(mend_tokenizer_from_gguf(&t, g));
    printf("gemma3 tokenizer from GGUF built in %.3f s\n", mend_now() - t0);
    fx_rows rows;
    CHECK(fx_load(test_src("tests/fixtures/gemma3/gemma3_strings.jsonl"), &rows) == 0);
    if (t) {
        CHECK(mend_tokenizer_n_vocab(t) == 262144 && mend_token_bos(t) == 2 && mend_token_eos(t) == 1);
        CHECK(mend_tokenizer_add_bos(t) == 1);
        check_strings(t, &rows, "gemma3");
        check_wiki(t, "tests/fixtures/gemma3/gemma3_wiki.json");
        /* with add_special: BOS first, as llama.cpp adds it */
        char *fx = NULL;
        size_t fn = 0;
        CHECK_OK(mend_read_file(test_src("tests/fixtures/gemma3/gemma3_wiki.json"), (size_t)1 << 24, &fx, &fn));
        json_t *ref = fx ? json_loads(fx, 0, NULL) : NULL;
        json_t *ex = json_object_get(ref, "bos_example");
        const char *txt = json_string_value(json_object_get(ex, "text"));
        int32_t *ids = NULL, *want = NULL;
        size_t n = 0, nw = 0;
        CHECK(txt && fx_ids(json_object_get(ex, "ids"), &want, &nw) == 0);
        if (txt) CHECK_OK(mend_tokenize(t, txt, strlen(txt), 1, 0, &ids, &n));
        CHECK(nw > 1 && want[0] == 2 && ids_equal(ids, n, want, nw));
        free(ids);
        free(want);
        json_decref(ref);
        free(fx);
    }
    fx_free(&rows);
    mend_tokenizer_free(t);
    mend_gguf_close(g);
}

static void check_smollm2(void) {
    const char *model = test_default_model();
    if (!model) {
        printf("note: default model not found, SmolLM2 skipped\n");
        return;
    }
    mend_gguf *g = NULL;
    mend_tokenizer *t = NULL;
    CHECK_OK(mend_gguf_open(&g, model));
    if (!g) return;
    double t0 = mend_now();
    CHECK_OK(mend_tokenizer_from_gguf(&t, g));
    printf("tokenizer from GGUF built in %.3f s\n", mend_now() - t0);
    fx_rows rows;
    CHECK(fx_load(test_src("tests/fixtures/tok/smollm2_strings.jsonl"), &rows) == 0);
    if (t) {
        check_api(t);
        check_strings(t, &rows, "GGUF");
        check_wiki(t, "tests/fixtures/tok/smollm2_wiki.json");
    }
    check_json_route(g, &rows);
    fx_free(&rows);
    mend_tokenizer_free(t);
    mend_gguf_close(g);
}

int main(void) {
    check_smollm2();
    check_gemma3();
    return test_finish();
}
