/* Hugging Face directories: bits 0-1 of the first byte of the input pick
 * which file of the tiny llama fixture (tests/fixtures/hf/llama) is replaced
 * by the rest:
 *   0  config.json                   (model loader: config checks, arena size, shapes)
 *   1  tokenizer.json                (tokenizer loader, then an encode/decode;
 *                                     bit 2 set: without tokenizer_config.json)
 *   2  tokenizer_config.json         (with the fixture's tokenizer.json)
 *   3  model.safetensors.index.json  (shard map)
 * The other files are links to the fixture, so everything past the replaced
 * file is real. */
#include "fuzz_common.h"
#include "model/model.h"
#include "tok/tokenizer.h"

static const char *const files[] = {
    "config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors.index.json",
    "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
};

static const char *dir;

static void link_fixture(const char *name) {
    char to[1024], from[512];
    snprintf(to, sizeof to, "%s", fuzz_src("tests/fixtures/hf/llama"));
    strncat(to, "/", sizeof to - strlen(to) - 1);
    strncat(to, name, sizeof to - strlen(to) - 1);
    snprintf(from, sizeof from, "%s/%s", dir, name);
    unlink(from);
    if (symlink(to, from) != 0) perror(from);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    dir = fuzz_scratch_dir();
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) link_fixture(files[i]);
    return 0;
}

static void tokenize_some(const mend_tokenizer *tok) {
    static const char text[] = "Hello world! <s> 123 \xc3\xa9t\xc3\xa9 \xff\n\n  x";
    int32_t *ids = NULL;
    size_t n = 0;
    if (mend_tokenize(tok, text, sizeof text - 1, 1, 1, &ids, &n) == 0) {
        char *back = NULL;
        if (mend_detokenize_ex(tok, ids, n, 1, &back) == 0) free(back);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned which = data[0] % 4;
    const char *name = files[which];
    if (fuzz_put(dir, name, data + 1, size - 1) != 0) return 0;
    char tj[512], tc[512];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    snprintf(tc, sizeof tc, "%s/tokenizer_config.json", dir);
    if (which == 1 || which == 2) {
        mend_tokenizer *tok = NULL;
        /* one load per input (the two routes cost the same; a bit picks) */
        int no_cfg = which == 1 && (data[0] >> 2 & 1);
        if (mend_tokenizer_from_json(&tok, tj, no_cfg ? NULL : tc) == 0) {
            tokenize_some(tok);
            mend_tokenizer_free(tok);
        }
    } else {
        mend_model *m = NULL;
        if (mend_model_load_hf(&m, dir, NULL) == 0) mend_model_free(m);
    }
    link_fixture(name);
    return 0;
}
