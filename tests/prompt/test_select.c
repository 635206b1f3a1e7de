/* Selectors on the tiny llama fixture: fixed / none, the argmax rule, the
 * oracle over per-prompt outcomes, loss against NLLs computed directly with
 * mend_forward, router against a centroid equal to the input's own feature,
 * attention against the probe's masses. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/attn_probe.h"
#include "model/model.h"
#include "prompt/select.h"
#include "test.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * 0x1.0p-53;
}

static mend_eval_result mc(double acc, int gold, double l0, double l1, double l2) {
    static double lls[16][3];
    static int at = 0;
    double *ll = lls[at++ & 15];
    ll[0] = l0, ll[1] = l1, ll[2] = l2;
    mend_eval_result r;
    memset(&r, 0, sizeof r);
    r.kind = MEND_TASK_MC;
    r.n = 3;
    r.ll = ll;
    r.gold = gold;
    r.acc = acc;
    return r;
}

int main(void) {
    /* argmax: lowest index on ties, NaN never wins */
    float v1[4] = {1, 3, 3, 2}, v2[3] = {NAN, -1, -1}, v3[2] = {NAN, NAN};
    CHECK(mend_select_argmax(v1, 4) == 1);
    CHECK(mend_select_argmax(v2, 3) == 1);
    CHECK(mend_select_argmax(v3, 2) == -1);
    CHECK(mend_select_argmax(v1, 0) == -1);

    /* oracle: correct first, then the margin of gold over the best other choice */
    mend_eval_result rs[3] = {mc(0, 0, -5, -4, -6), mc(1, 0, -3, -3.5, -9), mc(1, 0, -2, -2.2, -9)};
    CHECK(mend_select_oracle_pick(rs, 3) == 1);   /* margin 0.5 > 0.2 */
    rs[0] = mc(1, 0, -1, -3, -3);                 /* margin 2: the first now wins */
    CHECK(mend_select_oracle_pick(rs, 3) == 0);
    mend_eval_result wrong[2] = {mc(0, 2, -1, -2, -3), mc(0, 2, -1, -2, -2.5)};
    CHECK(mend_select_oracle_pick(wrong, 2) == 1);   /* both wrong: the smaller loss of gold */
    mend_eval_result gen[3];
    memset(gen, 0, sizeof gen);
    for (int k = 0; k < 3; k++) gen[k].kind = MEND_TASK_GEN;
    gen[2].em = 1;
    CHECK(mend_select_oracle_pick(gen, 3) == 2);
    gen[2].em = 0;
    CHECK(mend_select_oracle_pick(gen, 3) == 0);   /* all equal: the lowest index */
    double lmll[2][1] = {{-4}, {-3}};
    mend_eval_result lm[2];
    memset(lm, 0, sizeof lm);
    for (int k = 0; k < 2; k++) lm[k].kind = MEND_TASK_LM, lm[k].n = 1, lm[k].ll = lmll[k];
    CHECK(mend_select_oracle_pick(lm, 2) == 1);

    /* parsing */
    mend_select_spec sp;
    int l0, l1;
    CHECK_OK(mend_select_parse_layers("2:5", &l0, &l1));
    CHECK(l0 == 2 && l1 == 5);
    CHECK_ERR(mend_select_parse_layers("5:2", &l0, &l1), MEND_EINVAL, "5:2");
    CHECK_ERR(mend_select_parse_layers("x", &l0, &l1), MEND_EINVAL, "A:B");

    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, test_src("tests/fixtures/hf/llama.gguf"), &lo));
    if (!m) return test_finish();
    const mend_config *c = &m->cfg;
    const int dim = c->dim, V = c->n_vocab;
    enum { K = 3, NV = 4, N = 9 };
    mend_bank_prompt bp[K];
    memset(bp, 0, sizeof bp);
    char *names[K] = {"alpha", "beta", "gamma"};
    for (int k = 0; k < K; k++) {
        bp[k].name = names[k];
        bp[k].emb = malloc(sizeof(float) * NV * dim);
        for (int i = 0; i < NV * dim; i++) bp[k].emb[i] = (float)((urand() - 0.5) * 2.0);
        bp[k].centroid = malloc(sizeof(float) * dim);
        for (int i = 0; i < dim; i++) bp[k].centroid[i] = (float)(urand() - 0.5);
    }
    mend_bank bank = {.dim = dim, .nv = NV, .n = K, .p = bp, .layer0 = 0, .layer1 = 2};
    int32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (int32_t)(urand() * V);

    CHECK_ERR(mend_select_parse("fixed:delta", &bank, &sp), MEND_EINVAL, "delta");
    CHECK_ERR(mend_select_parse("best", &bank, &sp), MEND_EINVAL, "best");
    CHECK_OK(mend_select_parse("attention", &bank, &sp));
    CHECK(sp.kind == MEND_SELECT_ATTENTION && sp.layer0 == 0 && sp.layer1 == 2);

    mend_selector *s = NULL;
    int choice = 7;
    float sc[K];
    /* none and fixed ignore the input */
    CHECK_OK(mend_select_parse("none", &bank, &sp));
    CHECK_OK(mend_selector_new(&s, m, &bank, &sp));
    CHECK_OK(mend_selector_pick(s, tok, N, &choice, sc));
    CHECK(choice == -1 && sc[0] == 0 && sc[1] == 0 && sc[2] == 0);
    CHECK(mend_selector_kv_bytes(s) == 0);
    mend_selector_free(s);
    CHECK_OK(mend_select_parse("fixed:gamma", &bank, &sp));
    CHECK(sp.kind == MEND_SELECT_FIXED && sp.fixed == 2);
    CHECK_OK(mend_selector_new(&s, m, &bank, &sp));
    CHECK_OK(mend_selector_pick(s, NULL, 0, &choice, sc));
    CHECK(choice == 2 && sc[2] == 1 && sc[0] == 0);
    mend_selector_free(s);
    /* oracle needs labels */
    CHECK_OK(mend_select_parse("oracle", &bank, &sp));
    CHECK_OK(mend_selector_new(&s, m, &bank, &sp));
    CHECK_ERR(mend_selector_pick(s, tok, N, &choice, sc), MEND_EINVAL, "label");
    mend_selector_free(s);

    /* loss: -mean NLL of tokens 1..N-1 behind each prompt, computed directly */
    {
        CHECK_OK(mend_select_parse("loss", &bank, &sp));
        CHECK_OK(mend_selector_new(&s, m, &bank, &sp));
        CHECK_OK(mend_selector_pick(s, tok, N, &choice, sc));
        float ref[K];
        float *lg = malloc(sizeof(float) * N * V);
        for (int k = 0; k < K; k++) {
            mend_state *st = NULL;
            CHECK_OK(mend_state_new(&st, m, NV + N, 32));
            CHECK_OK(mend_forward(st, NULL, bp[k].emb, NV, 0, NULL, 0));
            CHECK_OK(mend_forward(st, tok, NULL, N, NV, lg, 1));
            double nll = 0;
            for (int i = 0; i + 1 < N; i++) {
                const float *r = lg + (size_t)i * V;
                double mx = r[0], z = 0;
                for (int v = 1; v < V; v++) mx = fmax(mx, r[v]);
                for (int v = 0; v < V; v++) z += exp(r[v] - mx);
                nll += -(r[tok[i + 1]] - mx - log(z));
            }
            ref[k] = (float)(-nll / (N - 1));
            CHECK_NEAR(sc[k], ref[k], 1e-4);
            mend_state_free(st);
        }
        int best = 0;
        for (int k = 1; k < K; k++)
            if (ref[k] > ref[best]) best = k;
        CHECK(choice == best);
        CHECK(mend_selector_kv_bytes(s) == (size_t)K * c->n_layers * NV * c->n_kv_heads * c->head_dim * 2 * 4);
        free(lg);
        mend_selector_free(s);
    }

    /* router: the prompt whose centroid is the input's own feature wins, cos = 1 */
    {
        mend_probe *p = NULL;
        CHECK_OK(mend_probe_new(&p, m, NULL, 0, 0, N));
        CHECK_OK(mend_probe_hidden_mean(p, tok, N, bp[1].centroid));
        mend_probe_free(p);
        CHECK_OK(mend_select_parse("router", &bank, &sp));
        CHECK_OK(mend_selector_new(&s, m, &bank, &sp));
        CHECK_OK(mend_selector_pick(s, tok, N, &choice, sc));
        CHECK(choice == 1);
        CHECK_NEAR(sc[1], 1.0, 1e-5);
        CHECK(sc[0] < 0.999f && sc[2] < 0.999f);
        mend_selector_free(s);
        float *keep = bp[2].centroid;
        bp[2].centroid = NULL;
        CHECK_ERR(mend_selector_new(&s, m, &bank, &sp), MEND_EINVAL, "gamma");
        bp[2].centroid = keep;
    }

    /* attention: scores are the probe's masses averaged over layers and heads */
    {
        CHECK_OK(mend_select_parse("attention", &bank, &sp));
        sp.layer0 = 1;
        sp.layer1 = 2;
        CHECK_OK(mend_selector_new(&s, m, &bank, &sp));
        CHECK_OK(mend_selector_pick(s, tok, N, &choice, sc));
        const float *pr[K] = {bp[0].emb, bp[1].emb, bp[2].emb};
        mend_probe *p = NULL;
        CHECK_OK(mend_probe_new(&p, m, pr, K, NV, N));
        const int H = c->n_heads;
        float *mm = malloc(sizeof(float) * 2 * H * (K + 1));
        CHECK_OK(mend_probe_attention(p, tok, N, 0, 2, mm, NULL));
        for (int k = 0; k < K; k++) {
            double r = 0;
            for (int h = 0; h < H; h++) r += mm[((size_t)H + h) * (K + 1) + k];
            CHECK_NEAR(sc[k], r / H, 1e-5);
        }
        CHECK(choice == mend_select_argmax(sc, K));
        CHECK(mend_selector_kv_bytes(s) == mend_probe_prompt_kv_bytes(p));
        /* an input longer than max_tokens is cut to its last max_tokens */
        mend_selector_free(s);
        sp.max_tokens = 4;
        CHECK_OK(mend_selector_new(&s, m, &bank, &sp));
        float sc2[K];
        CHECK_OK(mend_selector_pick(s, tok, N, &choice, sc2));
        mend_probe_free(p);
        CHECK_OK(mend_probe_new(&p, m, pr, K, NV, 4));
        CHECK_OK(mend_probe_attention(p, tok + N - 4, 4, 1, 2, mm, NULL));
        for (int k = 0; k < K; k++) {
            double r = 0;
            for (int h = 0; h < H; h++) r += mm[(size_t)h * (K + 1) + k];
            CHECK_NEAR(sc2[k], r / H, 1e-6);
        }
        /* many inputs at once (max_tokens 4: the 9-token input is cut to its
         * last 4, and the inputs need three probe passes): each gets the
         * choice and scores it gets alone */
        {
            const int32_t *in[4] = {tok, tok + 2, tok + 5, tok + 1};
            const int len[4] = {N, 2, 3, 1};
            int ch[4], one;
            float scm[4 * K], sc1[K];
            CHECK_OK(mend_selector_pick_many(s, in, len, 4, ch, scm));
            for (int j = 0; j < 4; j++) {
                CHECK_OK(mend_selector_pick(s, in[j], len[j], &one, sc1));
                CHECK(ch[j] == one);
                for (int k = 0; k < K; k++) CHECK_NEAR(scm[j * K + k], sc1[k], 1e-6);
            }
            const int bad_len[2] = {2, 0};
            CHECK_ERR(mend_selector_pick_many(s, in, bad_len, 2, ch, scm), MEND_EINVAL, "empty");
        }
        /* layers beyond the model */
        mend_selector_free(s);
        s = NULL;
        sp.layer1 = 3;
        CHECK_ERR(mend_selector_new(&s, m, &bank, &sp), MEND_ERANGE, "layers");
        mend_probe_free(p);
        free(mm);
    }

    for (int k = 0; k < K; k++) {
        free(bp[k].emb);
        free(bp[k].centroid);
    }
    mend_model_free(m);
    return test_finish();
}
