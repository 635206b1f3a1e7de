/* GGUF: the header/metadata/tensor-info parser on arbitrary bytes, then,
 * for files that parse, the typed getters, every tensor's bytes, the GGUF
 * tokenizer and the full model loader (config, tensor shapes, dequantization). */
#include "fuzz_common.h"
#include "io/gguf.h"
#include "model/model.h"
#include "tok/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mend_gguf *g = NULL;
    if (mend_gguf_open_mem(&g, data, size, "fuzz.gguf") != 0) return 0;
    unsigned sink = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        int64_t iv;
        double fv;
        int bv;
        const char *sv;
        mend_gguf_get_int(g, kv->key, &iv);
        mend_gguf_get_float(g, kv->key, &fv);
        mend_gguf_get_bool(g, kv->key, &bv);
        if (mend_gguf_get_str(g, kv->key, &sv) == 0) sink += fuzz_touch(sv, kv->slen);
        if (kv->type == GGUF_TYPE_ARRAY && kv->arr_raw && kv->n)
            sink += (unsigned)gguf_arr_i64(kv, kv->n - 1) + (unsigned)(gguf_arr_f64(kv, 0) != 0);
        if (kv->arr_str)
            for (uint64_t j = 0; j < kv->n; j++) sink += fuzz_touch(kv->arr_str[j], kv->arr_slen[j]);
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) sink += fuzz_touch(g->tensors[i].data, g->tensors[i].nbytes);
    mend_tokenizer *tok = NULL;
    if (mend_gguf_find(g, "tokenizer.ggml.model") && mend_tokenizer_from_gguf(&tok, g) == 0) {
        int32_t *ids = NULL;
        size_t n = 0;
        static const char text[] = "Hello world! <|im_start|>user 123 \xc3\xa9t\xc3\xa9 \xff\n\n  x";
        if (mend_tokenize(tok, text, sizeof text - 1, 1, 1, &ids, &n) == 0) {
            char *back = NULL;
            if (mend_detokenize(tok, ids, n, &back) == 0) free(back);
        }
        free(ids);
        mend_tokenizer_free(tok);
    }
    int has_arch = mend_gguf_find(g, "general.architecture") != NULL;
    mend_gguf_close(g);
    if (has_arch) {
        char path[64];
        int fd = fuzz_memfd(data, size, path);
        if (fd >= 0) {
            mend_model *m = NULL;
            mend_load_opts opts = {0};
            opts.keep_packed = size & 1;
            if (mend_model_load_gguf(&m, path, &opts) == 0) mend_model_free(m);
            close(fd);
        }
    }
    (void)sink;
    return 0;
}
