/* Tiny vocabularies against their references (fixtures made by
 * tests/fixtures/tok/make_tok_fixtures.py):
 *  - byte-level BPE written as GGUFs under several tokenizer.ggml.pre names,
 *    ids from llama.cpp (llama-cpp-python);
 *  - a SentencePiece-style "llama" GGUF with scores and byte tokens, ids from
 *    llama.cpp;
 *  - the same SentencePiece-style vocabulary as a HF tokenizer.json
 *    (byte_fallback BPE), ids from HF tokenizers. */
#include "test.h"
#include "tok_test_util.h"
#include "io/gguf.h"
#include "tok/tokenizer.h"

static void check_gguf(const char *name) {
    char gpath[256], jpath[256];
    snprintf(gpath, sizeof gpath, "tests/fixtures/tok/%s.gguf", name);
    snprintf(jpath, sizeof jpath, "tests/fixtures/tok/%s.jsonl", name);
    mend_gguf *g = NULL;
    mend_tokenizer *t = NULL;
    fx_rows rows;
    CHECK_OK(mend_gguf_open(&g, test_src(gpath)));
    if (!g) return;
    CHECK_OK(mend_tokenizer_from_gguf(&t, g));
    CHECK(fx_load(test_src(jpath), &rows) == 0);
    if (t && rows.n) {
        size_t tot0, tot1, totr;
        size_t a0 = fx_check(t, &rows, 0, &tot0, 1);
        size_t a1 = fx_check(t, &rows, 1, &tot1, 1);
        size_t rt = fx_roundtrip(t, &rows, &totr, 1);
        printf("%-22s plain %zu/%zu, special+bos %zu/%zu, round trip %zu/%zu\n", name, a0, tot0, a1, tot1, rt, totr);
        CHECK(a0 == tot0 && tot0 > 300);
        CHECK(a1 == tot1 && tot1 > 300);
        CHECK(rt == totr);
    }
    fx_free(&rows);
    mend_tokenizer_free(t);
    mend_gguf_close(g);
}

static void check_hf_json(void) {
    mend_tokenizer *t = NULL;
    fx_rows rows;
    CHECK_OK(mend_tokenizer_from_json(&t, test_src("tests/fixtures/tok/tiny_spm_hf.json"), NULL));
    CHECK(fx_load(test_src("tests/fixtures/tok/tiny_spm_hf.jsonl"), &rows) == 0);
    if (t && rows.n) {
        size_t tot, totr;
        size_t a = fx_check(t, &rows, 0, &tot, 1);
        size_t rt = fx_roundtrip(t, &rows, &totr, 1);
        printf("%-22s plain %zu/%zu, round trip %zu/%zu\n", "tiny_spm_hf.json", a, tot, rt, totr);
        CHECK(a == tot && tot > 300);
        CHECK(rt == totr);
        CHECK(mend_token_bos(t) == -1);   /* no tokenizer_config.json, no template */
        CHECK(mend_tokenizer_add_bos(t) == 0);
    }
    fx_free(&rows);
    mend_tokenizer_free(t);
}

int main(void) {
    const char *names[] = {"tiny_llama_bpe", "tiny_qwen2", "tiny_gpt_2", "tiny_default", "tiny_smollm",
                           "tiny_falcon", "tiny_deepseek_coder", "tiny_gpt_4o", "tiny_spm"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) check_gguf(names[i]);
    check_hf_json();
    return test_finish();
}
