/* generate: load a model, run a prompt through it, print the most likely
 * next tokens, then continue the prompt greedily. Uses only <mend.h>.
 *
 *   generate MODEL [-n N] [-k K] TEXT        a text prompt (needs a tokenizer)
 *   generate MODEL [-n N] [-k K] --ids 5,7,9 a prompt of token ids
 *
 * Output, one item per line (the text lines only when the model has a
 * tokenizer):
 *   prompt ID ID ...         the prompt's token ids
 *   top RANK ID LOGIT        the K most likely next tokens after the prompt
 *   next ID ID ...           N tokens chosen greedily (stops at end of generation)
 *   text PROMPT+CONTINUATION
 */
#include <mend.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "generate: %s: %s\n", what, mend_last_error());
    return 1;
}

/* "5,7,9" -> ids; returns the count or -1 */
static int parse_ids(const char *s, int32_t *ids, int cap) {
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX) return -1;
        ids[n++] = (int32_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return *s ? -1 : n;
}

/* ids of the K largest logits, largest first (lowest id on ties) */
static void top_k(const float *logits, int n_vocab, int k, int *out) {
    for (int r = 0; r < k; r++) {
        int best = -1;
        for (int v = 0; v < n_vocab; v++) {
            int taken = 0;
            for (int j = 0; j < r; j++) taken |= out[j] == v;
            if (!taken && (best < 0 || logits[v] > logits[best])) best = v;
        }
        out[r] = best;
    }
}

static void print_ids(const char *tag, const int32_t *ids, int n) {
    printf("%s", tag);
    for (int i = 0; i < n; i++) printf(" %d", (int)ids[i]);
    printf("\n");
}

/* The prompt's ids, from --ids or through the tokenizer (BOS as the model's
 * metadata says). *ids is malloc'd. */
static int prompt_ids(const mend_model *m, const char *text, const char *id_list, int32_t **ids, size_t *n) {
    if (id_list) {
        int cap = (int)strlen(id_list) / 2 + 1;
        if (!(*ids = malloc((size_t)cap * sizeof **ids))) return MEND_ENOMEM;
        int k = parse_ids(id_list, *ids, cap);
        if (k <= 0) {
            fprintf(stderr, "generate: --ids expects ids like 5,7,9, got '%s'\n", id_list);
            return MEND_EINVAL;
        }
        *n = (size_t)k;
        return 0;
    }
    const mend_tokenizer *tok = mend_model_tokenizer(m);
    return mend_tokenize(tok, text, strlen(text), 1, 0, ids, n);
}

int main(int argc, char **argv) {
    const char *path = NULL, *text = NULL, *id_list = NULL;
    int n_new = 16, k = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) n_new = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-k") && i + 1 < argc) k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ids") && i + 1 < argc) id_list = argv[++i];
        else if (!path) path = argv[i];
        else text = argv[i];
    }
    if (!path || (!text == !id_list) || n_new < 0 || k < 1) {
        fprintf(stderr, "usage: generate MODEL [-n N] [-k K] (TEXT | --ids 5,7,9)\n");
        return 2;
    }
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 1};   /* quantized matrices run packed, as `mend` runs them */
    if (mend_model_load(&m, path, &lo)) return fail(path);
    mend_model_info info;
    mend_model_get_info(m, &info);
    const mend_tokenizer *tok = mend_model_tokenizer(m);

    int32_t *ids = NULL;
    size_t n = 0;
    if (prompt_ids(m, text, id_list, &ids, &n)) return fail("prompt");
    int n_ctx = (int)n + n_new;
    if (k > info.n_vocab) k = info.n_vocab;
    mend_state *s = NULL;
    float *logits = malloc((size_t)info.n_vocab * sizeof *logits);
    int32_t *seq = realloc(ids, (size_t)n_ctx * sizeof *ids);
    int *best = malloc((size_t)k * sizeof *best);
    if (!logits || !seq || !best) return fail("memory");
    if (mend_state_new(&s, m, n_ctx, (int)n)) return fail("state");
    if (mend_forward(s, seq, NULL, (int)n, 0, logits, 0)) return fail("forward");

    print_ids("prompt", seq, (int)n);
    top_k(logits, info.n_vocab, k, best);
    for (int r = 0; r < k; r++) printf("top %d %d %.6f\n", r + 1, best[r], logits[best[r]]);

    int len = (int)n;
    while (len < n_ctx) {
        top_k(logits, info.n_vocab, 1, best);
        if (tok && mend_token_is_eog(tok, best[0])) break;
        seq[len] = best[0];
        if (mend_forward(s, &seq[len], NULL, 1, len, logits, 0)) return fail("forward");
        len++;
    }
    print_ids("next", seq + n, len - (int)n);
    char *out = NULL;
    if (tok && mend_detokenize(tok, seq, (size_t)len, &out) == 0) printf("text %s\n", out);

    free(out);
    free(best);
    free(seq);
    free(logits);
    mend_state_free(s);
    mend_model_free(m);
    return 0;
}
