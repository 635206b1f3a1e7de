/* The default model through the KV cache: decoding token by token equals one
 * batched prefill (<= 1e-4), chunked prefill equals it too, feeding the rows
 * of the dequantized token embedding as `embeds` equals feeding the ids, and
 * the packed (keep_packed) model, on the native block kernels, predicts what
 * the dequantized one does and is consistent between batch and decode.
 * Skipped without the model. */
#include "kernels/quants.h"
#include "model/model.h"
#include "test.h"
#include "fixture.h"

#define FX "tests/fixtures/logits/"

int main(void) {
    const char *path = test_default_model();
    if (!path) {
        printf("note: default model not found; skipped\n");
        return test_finish();
    }
    json_t *doc = fx_json(FX "smollm2.json");
    CHECK(doc != NULL);
    if (!doc) return test_finish();
    size_t n;
    int32_t *ids = fx_ids(json_object_get(json_array_get(json_object_get(doc, "inputs"), 1), "ids"), &n);
    json_decref(doc);
    CHECK(n == 64);

    mend_model *m = NULL;
    CHECK_OK(mend_model_load(&m, path, NULL));
    if (!m) return test_finish();
    const int V = m->cfg.n_vocab, D = m->cfg.dim;
    mend_state *s = NULL;
    CHECK_OK(mend_state_new(&s, m, 96, 64));
    float *batch = malloc(n * V * sizeof(float)), *lg = malloc(n * V * sizeof(float));
    if (!s || !batch || !lg) return test_finish();
    CHECK_OK(mend_forward(s, ids, NULL, (int)n, 0, batch, 1));

    /* token by token */
    for (size_t i = 0; i < n; i++) CHECK_OK(mend_forward(s, ids + i, NULL, 1, (int)i, lg + i * V, 1));
    double d = fx_max_abs(lg, batch, n * V);
    printf("decode token by token vs batch: max |diff| %.3g\n", d);
    /* one row runs through BLAS sgemv, a batch through mend's AVX-512 sgemm
     * (kernels/sgemm.h): different summation orders over 30 layers, on
     * logits up to ~37 */
    CHECK_MSG(d <= 3e-4, "decode vs batch max |diff| %g", d);

    /* uneven chunks: 1, 20, 43 */
    CHECK_OK(mend_forward(s, ids, NULL, 1, 0, lg, 1));
    CHECK_OK(mend_forward(s, ids + 1, NULL, 20, 1, lg + (size_t)1 * V, 1));
    CHECK_OK(mend_forward(s, ids + 21, NULL, (int)n - 21, 21, lg + (size_t)21 * V, 1));
    d = fx_max_abs(lg, batch, n * V);
    printf("chunks 1+20+43 vs batch: max |diff| %.3g\n", d);
    CHECK_MSG(d <= 3e-4, "chunked vs batch max |diff| %g", d);

    /* embeddings */
    float *emb = malloc(n * D * sizeof(float));
    const mend_mat *E = &m->tok_embd_packed;
    for (size_t i = 0; i < n; i++)
        CHECK(mend_dequantize_row(E->type, (const uint8_t *)E->data + (size_t)ids[i] * E->row_bytes,
                                  emb + i * D, D) == 0);
    CHECK_OK(mend_forward(s, NULL, emb, (int)n, 0, lg, 1));
    d = fx_max_abs(lg, batch, n * V);
    printf("embeds vs token ids: max |diff| %.3g\n", d);
    CHECK_MSG(d <= 1e-6, "embeds vs tokens max |diff| %g", d);
    free(emb);
    mend_state_free(s);

    /* packed weights, dequantized tile by tile during the matmuls */
    mend_model *mp = NULL;
    mend_load_opts o = {.keep_packed = 1};
    CHECK_OK(mend_model_load(&mp, path, &o));
    if (mp) {
        CHECK(mp->layers[0].wq.type == MEND_TYPE_Q4_1 && mp->tok_embd.type == MEND_TYPE_Q8_0);
        CHECK(mp->arena_bytes == 0);
        mend_state *sp = NULL;
        CHECK_OK(mend_state_new(&sp, mp, 96, 64));
        float *plg = malloc(n * V * sizeof(float));
        if (sp && plg) {
            /* the native kernels quantize activations to 8 bits (ggml's
             * numerics). Over 30 layers that rounding is chaotic (nudging its
             * input by 1e-7 moves logits by ~1), so compare predictions, not
             * digits; test_tiny_models pins the numerics exactly. */
            CHECK_OK(mend_forward(sp, ids, NULL, (int)n, 0, plg, 1));
            d = fx_max_abs(plg, batch, n * V);
            int same = 0;
            double scale = 0;
            for (size_t i = 0; i < n; i++) {
                int a = 0, b = 0;
                for (int v = 1; v < V; v++) {
                    if (plg[i * V + v] > plg[i * V + a]) a = v;
                    if (batch[i * V + v] > batch[i * V + b]) b = v;
                }
                same += a == b;
                scale = fmax(scale, fabs(batch[i * V + b]));
            }
            printf("keep_packed (native kernels) vs dequantized: max |diff| %.3g (max logit %.3g), "
                   "argmax equal at %d of %zu\n", d, scale, same, n);
            CHECK_MSG(d <= 0.1 * scale, "packed vs f32 max |diff| %g", d);
            CHECK_MSG(same >= (int)n * 9 / 10, "packed vs f32: argmax equal at only %d of %zu", same, n);
            /* decode steps through the cache agree with the packed batch
             * (bit for bit when every kernel treats rows independently of
             * the batch size, within the chaos bound above otherwise) */
            double dd = 0;
            for (size_t i = n - 4; i < n; i++) {
                CHECK_OK(mend_forward(sp, ids + i, NULL, 1, (int)i, lg, 0));
                dd = fmax(dd, fx_max_abs(lg, plg + i * V, V));
            }
            printf("keep_packed decode steps vs packed batch: max |diff| %.3g\n", dd);
            CHECK_MSG(dd <= 0.1 * scale, "packed decode vs packed batch max |diff| %g", dd);
            mend_state_free(sp);
        }
        free(plg);
        mend_model_free(mp);
    }
    free(batch);
    free(lg);
    free(ids);
    mend_model_free(m);
    return test_finish();
}
