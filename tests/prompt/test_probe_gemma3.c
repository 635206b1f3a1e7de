/* The attention probe on Gemma 3 270M against the model's own forward
 * (tests/prompt/probe_forward.h): the embedding scale on token rows (not on
 * the prompt's), the query scale after the QK-norm, the windowed layers'
 * RoPE base, the post-attention and post-FFN norms, GeGLU, and the window
 * of 512 on 15 of the 18 layers. Two inputs behind an 8-row prompt: 24
 * tokens (positions 8..31, nothing windowed) and 520 tokens (positions
 * 8..527: from token 504 on the window leaves prompt rows, from token 512
 * on the whole prompt and the input's first rows). f32 weights (the
 * products of the probe and the forward then run the same kernel), so the
 * differences are the attention's summation order only. Skipped with a
 * note when the model file is absent. */
#include <stdio.h>
#include <string.h>

#include "probe_forward.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * 0x1.0p-53;
}

int main(void) {
    const char *path = test_model_file("gemma-3-270m-q4_k_m.gguf");
    if (!path) {
        printf("note: gemma-3-270m-q4_k_m.gguf not found (scripts/fetch_model.sh gemma3-270m); skipped\n");
        return test_finish();
    }
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, path, &lo));
    if (!m) return test_finish();
    const mend_config *c = &m->cfg;
    CHECK(strcmp(c->arch, "gemma3") == 0 && c->swa_window[0] == 512 && c->swa_window[5] == 0 && c->post_norms &&
          c->act == MEND_ACT_GELU_TANH && c->embd_scale > 1.0f);
    enum { NV = 8, N = 520 };
    const int dim = c->dim;
    /* prompt rows of the size of scaled token embeddings (the forward uses them as given) */
    float *pr = malloc(sizeof(float) * NV * dim);
    for (int i = 0; i < NV * dim; i++) pr[i] = (float)((urand() - 0.5) * 2.0);
    int32_t *tok = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) tok[i] = 2 + (int32_t)(urand() * 20000);   /* ordinary vocabulary */
    const int lens[2] = {24, N};
    for (int t = 0; t < 2; t++) {
        probe_diffs d;
        CHECK_OK(probe_vs_forward(m, pr, NV, tok, lens[t], &d));
        printf("gemma3, prompt %d + input %d: probe vs forward max rel diff keys %.2g values %.2g residual %.2g "
               "last attention %.2g, hidden mean %.2g, masses sum to 1 within %.2g\n", NV, lens[t], d.keys,
               d.values, d.x, d.att, d.hidden, d.mass_sum);
        CHECK_MSG(d.keys < 1e-4 && d.values < 1e-4 && d.x < 1e-4 && d.att < 1e-4 && d.hidden < 1e-4,
                  "gemma3 probe vs forward: %g %g %g %g %g", d.keys, d.values, d.x, d.att, d.hidden);
        CHECK(d.mass_sum < 1e-5);
    }
    free(tok);
    free(pr);
    mend_model_free(m);
    return test_finish();
}
