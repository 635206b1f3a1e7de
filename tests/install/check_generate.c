/* check_generate MODEL OUTPUT: checks what examples/generate (built against
 * the installed library) printed for MODEL against the library's own forward
 * pass, run here in one batch over the prompt and the continuation with the
 * logits of every position (the example ran the prompt, then one token at a
 * time on its KV cache):
 *   - "top R ID LOGIT": the R-th largest logit after the prompt is ID's, and
 *     equals LOGIT;
 *   - "next ID ...": each generated token is the largest logit of the
 *     position before it (ties within the tolerance accepted). */
#include "test.h"

#define TOL 1e-3

static int read_ids(char *line, int32_t *ids, int cap) {
    int n = 0;
    for (char *t = strtok(line, " \n"); t && n < cap; t = strtok(NULL, " \n")) ids[n++] = (int32_t)atoi(t);
    return n;
}

/* how many logits of row are larger than row[id] */
static int rank_of(const float *row, int n_vocab, int id) {
    int r = 0;
    for (int v = 0; v < n_vocab; v++) r += row[v] > row[id] + TOL;
    return r;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: check_generate MODEL OUTPUT\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "r");
    CHECK_MSG(f != NULL, "cannot open %s", argv[2]);
    if (!f) return test_finish();
    static int32_t seq[4096];
    int n_prompt = 0, n_next = 0, n_top = 0, top_id[64];
    double top_logit[64];
    char line[65536];
    while (fgets(line, sizeof line, f)) {
        int r, id;
        double lg;
        if (!strncmp(line, "prompt ", 7)) n_prompt = read_ids(line + 7, seq, 2048);
        else if (!strncmp(line, "next ", 5) || !strcmp(line, "next\n"))
            n_next = read_ids(line + 4, seq + n_prompt, 2048);
        else if (sscanf(line, "top %d %d %lf", &r, &id, &lg) == 3 && r == n_top + 1 && n_top < 64) {
            top_id[n_top] = id;
            top_logit[n_top++] = lg;
        }
    }
    fclose(f);
    CHECK_MSG(n_prompt > 0 && n_top > 0 && n_next > 0, "%s: prompt %d, top %d, next %d entries", argv[2], n_prompt,
              n_top, n_next);
    if (t_fail) return test_finish();

    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 1};   /* as the example loads it */
    CHECK_OK(mend_model_load(&m, argv[1], &lo));
    if (!m) return test_finish();
    mend_model_info info;
    mend_model_get_info(m, &info);
    int n = n_prompt + n_next, V = info.n_vocab;
    mend_state *s = NULL;
    float *lg = malloc((size_t)n * V * sizeof *lg);
    CHECK_OK(mend_state_new(&s, m, n, n));
    CHECK_OK(mend_forward(s, seq, NULL, n, 0, lg, 1));

    const float *after_prompt = lg + (size_t)(n_prompt - 1) * V;
    for (int r = 0; r < n_top; r++) {
        CHECK_MSG(top_id[r] >= 0 && top_id[r] < V, "top %d: id %d outside the vocabulary", r + 1, top_id[r]);
        if (top_id[r] < 0 || top_id[r] >= V) continue;
        CHECK_NEAR(top_logit[r], after_prompt[top_id[r]], TOL);
        CHECK_MSG(rank_of(after_prompt, V, top_id[r]) <= r, "top %d: id %d ranks lower in the library's logits",
                  r + 1, top_id[r]);
    }
    for (int i = 0; i < n_next; i++) {
        int id = seq[n_prompt + i];
        CHECK_MSG(id >= 0 && id < V && rank_of(lg + (size_t)(n_prompt - 1 + i) * V, V, id) == 0,
                  "next token %d (id %d) is not the greedy choice", i, id);
    }
    printf("checked %d top tokens and %d generated tokens after a %d-token prompt\n", n_top, n_next, n_prompt);
    free(lg);
    mend_state_free(s);
    mend_model_free(m);
    return test_finish();
}
