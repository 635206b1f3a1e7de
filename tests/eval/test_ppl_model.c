/* mend_perplexity with the real forward pass on the default model (skipped
 * without it): the model scorer must give the same numbers as scoring each
 * window position by position through mend_forward, and batch size must not
 * change the result. */
#include "test.h"

int main(void) {
    const char *path = test_default_model();
    if (!path) {
        printf("default model not found; skipping\n");
        return test_finish();
    }
    mend_set_threads(2);
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 1};
    CHECK_OK(mend_model_load(&m, path, &lo));
    if (!m) return test_finish();
    const mend_tokenizer *tok = mend_model_tokenizer(m);
    const char *text =
        "The tower is 324 metres (1,063 ft) tall, about the same height as an 81-storey building, and the "
        "tallest structure in Paris. Its base is square, measuring 125 metres (410 ft) on each side. During "
        "its construction, the Eiffel Tower surpassed the Washington Monument to become the tallest man-made "
        "structure in the world, a title it held for 41 years until the Chrysler Building in New York City "
        "was finished in 1930.";
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(mend_tokenize(tok, text, strlen(text), 0, 0, &ids, &n));
    CHECK(n >= 64);
    if (n < 64) return test_finish();

    mend_ppl_opts o = {.protocol = MEND_PPL_LLAMACPP, .n_ctx = 32, .bos = -1};
    mend_ppl_result r1, r2, r3;
    CHECK_OK(mend_perplexity(m, ids, n, &o, NULL, NULL, &r1));
    o.n_batch = 5;
    CHECK_OK(mend_perplexity(m, ids, n, &o, NULL, NULL, &r2));
    CHECK(r1.n_scored == r2.n_scored && r1.n_scored == (int64_t)(n / 32) * 15);
    CHECK_NEAR(r1.ppl, r2.ppl, 1e-3 * r1.ppl);

    /* reference: one window at a time, all logits, nll computed here */
    mend_model_info info;
    mend_model_get_info(m, &info);
    mend_state *s = NULL;
    CHECK_OK(mend_state_new(&s, m, 32, 32));
    float *lg = malloc(sizeof(float) * 32 * (size_t)info.n_vocab);
    double sum = 0;
    int64_t cnt = 0;
    for (size_t w = 0; w < n / 32; w++) {
        CHECK_OK(mend_forward(s, ids + w * 32, NULL, 32, 0, lg, 1));
        for (int p = 16; p <= 30; p++) {
            const float *l = lg + (size_t)p * info.n_vocab;
            double mx = l[0], z = 0;
            for (int v = 1; v < info.n_vocab; v++) if (l[v] > mx) mx = l[v];
            for (int v = 0; v < info.n_vocab; v++) z += exp(l[v] - mx);
            sum += mx + log(z) - l[ids[w * 32 + p + 1]];
            cnt++;
        }
    }
    CHECK(cnt == r1.n_scored);
    CHECK_NEAR(r1.ppl, exp(sum / cnt), 1e-3 * r1.ppl);
    CHECK(r1.ppl > 1.0 && r1.ppl < 200.0);

    /* gptq on the same tokens */
    mend_ppl_opts g = {.protocol = MEND_PPL_GPTQ, .n_ctx = 32};
    CHECK_OK(mend_perplexity(m, ids, n, &g, NULL, NULL, &r3));
    CHECK(r3.n_scored == (int64_t)(n / 32) * 31);
    free(lg);
    mend_state_free(s);
    free(ids);
    mend_model_free(m);
    return test_finish();
}
