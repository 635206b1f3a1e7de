/* perplexity: a text's perplexity under one of mend's two protocols (as
 * `mend ppl` measures it, docs/ppl.md). Uses only <mend.h>.
 *
 *   perplexity MODEL TEXTFILE [--protocol gptq|llamacpp] [--ctx N] [--chunks N]
 *
 * Prints "ppl P +/- E", then the windows and the tokens scored; the running
 * perplexity goes to stderr after each window.
 */
#include <mend.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "perplexity: %s: %s\n", what, mend_last_error());
    return 1;
}

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static int on_window(void *user, int done, int total, double running_ppl) {
    (void)user;
    fprintf(stderr, "[%d/%d] %.4f\n", done, total, running_ppl);
    return 0;
}

int main(int argc, char **argv) {
    const char *path = NULL, *text_path = NULL;
    mend_ppl_opts o = {.protocol = MEND_PPL_GPTQ, .bos = -1};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--protocol") && i + 1 < argc)
            o.protocol = !strcmp(argv[++i], "llamacpp") ? MEND_PPL_LLAMACPP : MEND_PPL_GPTQ;
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) o.n_ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chunks") && i + 1 < argc) o.n_chunks = atoi(argv[++i]);
        else if (!path) path = argv[i];
        else text_path = argv[i];
    }
    if (!path || !text_path) {
        fprintf(stderr, "usage: perplexity MODEL TEXTFILE [--protocol gptq|llamacpp] [--ctx N] [--chunks N]\n");
        return 2;
    }
    size_t len = 0;
    char *text = read_text(text_path, &len);
    if (!text) {
        fprintf(stderr, "perplexity: cannot read %s\n", text_path);
        return 1;
    }
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 1};   /* quantized matrices run packed, as `mend` runs them */
    if (mend_model_load(&m, path, &lo)) return fail(path);
    const mend_tokenizer *tok = mend_model_tokenizer(m);

    /* llama.cpp's protocol reads the file as its -f does (one trailing
     * newline dropped) and puts the model's BOS at every chunk start */
    int llamacpp = o.protocol == MEND_PPL_LLAMACPP;
    if (llamacpp && len > 0 && text[len - 1] == '\n') len--;
    if (llamacpp && mend_tokenizer_add_bos(tok)) o.bos = mend_token_bos(tok);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (mend_tokenize(tok, text, len, llamacpp, 0, &ids, &n_ids)) return fail("tokenize");

    mend_ppl_result r;
    if (mend_perplexity(m, ids, n_ids, &o, on_window, NULL, &r)) return fail("perplexity");
    printf("ppl %.6f +/- %.6f\n", r.ppl, r.ppl_err);
    printf("windows %d of %d tokens, %lld tokens scored\n", r.n_chunks, r.n_ctx, (long long)r.n_scored);

    free(ids);
    free(text);
    mend_model_free(m);
    return 0;
}
