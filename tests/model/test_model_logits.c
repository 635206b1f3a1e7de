/* The default model (SmolLM2-135M-Instruct Q4_1) on two 64-token passages
 * against the float64 NumPy reference of tests/fixtures/logits/make_logits.py:
 * full logits at positions 0, 31, 63 within 1e-3, and at every position the
 * max logit and logsumexp within 1e-3 and the same argmax (unless the
 * reference's top two are closer than the tolerance). Skipped without the
 * model. */
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
    mend_model *m = NULL;
    double t0 = mend_now();
    CHECK_OK(mend_model_load(&m, path, NULL));
    if (!m) return test_finish();
    printf("loaded in %.2f s (%zu MiB f32 arena)\n", mend_now() - t0, m->arena_bytes >> 20);
    const int V = m->cfg.n_vocab;
    /* the shape the GGUF metadata declares (llama.cpp counts 134.52 M parameters) */
    mend_model_info info;
    mend_model_get_info(m, &info);
    CHECK(strcmp(info.arch, "llama") == 0 && info.n_layers == 30 && info.dim == 576 && info.n_heads == 9 &&
          info.n_kv_heads == 3 && info.head_dim == 64 && info.hidden_dim == 1536 && info.n_vocab == 49152 &&
          info.ctx_len == 8192 && info.tied_embeddings == 1);
    CHECK_NEAR(info.rope_theta, 100000.0, 1e-3);
    CHECK_NEAR(info.norm_eps, 1e-5, 1e-9);
    CHECK_MSG(info.n_params == 134515008, "n_params %lld", (long long)info.n_params);
    CHECK(mend_model_tokenizer(m) != NULL);
    CHECK(V == json_integer_value(json_object_get(doc, "n_vocab")));
    json_t *jpos = json_object_get(doc, "positions");
    const size_t n_keep = json_array_size(jpos);

    mend_state *s = NULL;
    CHECK_OK(mend_state_new(&s, m, 128, 64));
    json_t *inputs = json_object_get(doc, "inputs");
    CHECK(json_array_size(inputs) == 2);
    for (size_t k = 0; s && k < json_array_size(inputs); k++) {
        json_t *e = json_array_get(inputs, k);
        const char *name = json_string_value(json_object_get(e, "name"));
        size_t n;
        int32_t *ids = fx_ids(json_object_get(e, "ids"), &n);
        char bin[256];
        snprintf(bin, sizeof bin, FX "%s", json_string_value(json_object_get(e, "logits")));
        float *ref = fx_floats(bin, n_keep * V);
        float *lg = malloc(n * V * sizeof(float));
        CHECK(ref && lg && n == 64);
        if (!ref || !lg) break;
        CHECK_OK(mend_forward(s, ids, NULL, (int)n, 0, lg, 1));

        double worst = 0;
        for (size_t j = 0; j < n_keep; j++) {
            const int p = (int)json_integer_value(json_array_get(jpos, j));
            double d = fx_max_abs(lg + (size_t)p * V, ref + j * V, V);
            printf("passage %s position %2d: max |logits - reference| = %.3g\n", name, p, d);
            CHECK_MSG(d <= 1e-3, "passage %s position %d: max |diff| %g", name, p, d);
            if (d > worst) worst = d;
        }
        json_t *am = json_object_get(e, "argmax"), *mx = json_object_get(e, "max_logit"),
               *lse = json_object_get(e, "logsumexp");
        double dmx = 0, dlse = 0;
        int argmax_same = 0;
        for (size_t i = 0; i < n; i++) {
            const float *row = lg + i * V;
            int best = 0;
            double sum = 0;
            for (int v = 1; v < V; v++) if (row[v] > row[best]) best = v;
            for (int v = 0; v < V; v++) sum += exp((double)row[v] - row[best]);
            const double my_lse = row[best] + log(sum);
            dmx = fmax(dmx, fabs(row[best] - json_real_value(json_array_get(mx, i))));
            dlse = fmax(dlse, fabs(my_lse - json_real_value(json_array_get(lse, i))));
            const int want = (int)json_integer_value(json_array_get(am, i));
            /* a different argmax is acceptable only on a near tie */
            const int ok = best == want || fabs(row[best] - row[want]) < 1e-3;
            argmax_same += best == want;
            CHECK_MSG(ok, "passage %s position %zu: argmax %d, reference %d", name, i, best, want);
        }
        printf("passage %s: all %zu positions: max |max logit diff| %.3g, max |logsumexp diff| %.3g, "
               "argmax equal at %d\n", name, n, dmx, dlse, argmax_same);
        CHECK_MSG(dmx <= 1e-3 && dlse <= 1e-3, "passage %s: max-logit diff %g, logsumexp diff %g", name, dmx,
                  dlse);
        free(ids);
        free(ref);
        free(lg);
    }
    mend_state_free(s);
    mend_model_free(m);
    json_decref(doc);
    return test_finish();
}
