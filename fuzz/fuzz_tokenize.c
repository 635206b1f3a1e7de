/* Encoding arbitrary bytes. The first byte picks a tokenizer and the flags:
 * bits 0-2 the tokenizer (SmolLM2's when the default model is present, and
 * the tiny fixtures of tests/fixtures/tok: byte-level BPE with several
 * pre-split rules, SentencePiece from GGUF and from tokenizer.json), bit 3
 * add_special, bit 4 parse_special, bit 5 decode the rest as token ids
 * (2 bytes each, including ids outside the vocabulary) instead of encoding.
 * Encoded ids must be in the vocabulary and decode again. */
#include "fuzz_common.h"
#include "io/gguf.h"
#include "tok/tokenizer.h"

#define N_TOK 8
static mend_tokenizer *toks[N_TOK];
static int n_toks;

static void add_gguf(const char *path) {
    mend_gguf *g = NULL;
    if (mend_gguf_open(&g, path) != 0) return;
    if (mend_tokenizer_from_gguf(&toks[n_toks], g) == 0) n_toks++;
    else fprintf(stderr, "fuzz_tokenize: %s\n", mend_last_error());
    mend_gguf_close(g);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *home = getenv("MEND_HOME");
    char model[1024];
    if (home) snprintf(model, sizeof model, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", home);
    else snprintf(model, sizeof model, "%s/.cache/mend/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                  getenv("HOME") ? getenv("HOME") : "/root");
    if (access(model, R_OK) == 0) add_gguf(model);
    static const char *const tiny[] = {"tiny_smollm.gguf", "tiny_spm.gguf", "tiny_llama_bpe.gguf",
                                       "tiny_qwen2.gguf", "tiny_gpt_4o.gguf", "tiny_deepseek_coder.gguf"};
    char rel[256];
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0] && n_toks < N_TOK - 1; i++) {
        snprintf(rel, sizeof rel, "tests/fixtures/tok/%s", tiny[i]);
        add_gguf(fuzz_src(rel));
    }
    if (mend_tokenizer_from_json(&toks[n_toks], fuzz_src("tests/fixtures/tok/tiny_spm_hf.json"), NULL) == 0)
        n_toks++;
    if (!n_toks) {
        fprintf(stderr, "fuzz_tokenize: no tokenizer could be loaded\n");
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const mend_tokenizer *t = toks[(data[0] & 7) % n_toks];
    int add_special = (data[0] >> 3) & 1, parse_special = (data[0] >> 4) & 1, decode = (data[0] >> 5) & 1;
    data++;
    size--;
    int nv = mend_tokenizer_n_vocab(t);
    if (decode) {
        size_t n = size / 2;
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        if (!ids) return 0;
        for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(data[2 * i] | data[2 * i + 1] << 8) % (nv + 8) - 4;
        char *text = NULL;
        if (mend_detokenize_ex(t, ids, n, parse_special, &text) == 0) free(text);
        char piece[64];
        for (size_t i = 0; i < n && i < 16; i++) mend_token_piece(t, ids[i], piece, sizeof piece);
        free(ids);
        return 0;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (mend_tokenize(t, (const char *)data, size, add_special, parse_special, &ids, &n) == 0) {
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= nv) __builtin_trap();
        char *text = NULL;
        if (mend_detokenize(t, ids, n, &text) != 0) __builtin_trap();
        free(text);
    }
    free(ids);
    return 0;
}
