/* The trainer's prompt gradient through Gemma 3 270M (QK norms, post-norms,
 * GeGLU, scaled token embeddings, two RoPE bases; the f32 weights of the
 * Q4_K_M file): its loss equals the one mend_forward gives (whose logits
 * match transformers, test_gemma3_logits), and central differences of that
 * loss agree with the gradient on the 4 largest coordinates and a random
 * direction. The prompt rows are used as given (not scaled by sqrt(dim): the
 * scale belongs to the token-embedding lookup); they start as scaled token
 * embeddings, as a prompt initialized from text would. Then the same with
 * the sliding-window layers' 512-key window cut to 6 keys (a config no real
 * file has, but the 18 positions here then cross it on every one of those
 * layers), for the trainer's windowed attention under the local RoPE base.
 * Skipped without the model file. */
#include "grad_check.h"
#include "kernels/quants.h"
#include "tok/tokenizer.h"

#define P 4
#define SHORT_WINDOW 6

/* The trainer's loss and gradient against mend_forward's loss and its
 * central differences. */
static void check_case(const char *label, const mend_model *m, const float *prompt, const int32_t *tok, int S,
                       float *g) {
    mend_trainer *t = NULL;
    CHECK_OK(mend_trainer_new(&t, m, P, S, NULL));
    if (!t) return;
    const int ns = mend_trainer_n_scored(MEND_TUNE_CE, S);
    mend_train_loss L;
    memset(g, 0, sizeof(float) * (size_t)P * m->cfg.dim);
    CHECK_OK(mend_trainer_step(t, prompt, tok, S, MEND_TUNE_CE, 1.0f / ns, g, &L));
    const double lf = loss_forward(m, NULL, prompt, P, tok, S);
    printf("%s: %d tokens, trainer loss %.6f, mend_forward loss %.6f\n", label, S, L.loss_sum / ns, lf / ns);
    CHECK_MSG(fabs(lf - L.loss_sum) <= 1e-4 * fabs(lf), "%s: trainer loss %.8f, mend_forward %.8f", label,
              L.loss_sum, lf);
    check_fd(label, m, NULL, prompt, P, tok, S, g, ns);
    mend_trainer_free(t);
}

int main(void) {
    const char *path = test_model_file("gemma-3-270m-q4_k_m.gguf");
    if (!path) {
        printf("note: gemma-3-270m-q4_k_m.gguf not found (scripts/fetch_model.sh gemma3-270m); skipped\n");
        return test_finish();
    }
    mend_model *m = NULL;
    mend_load_opts o = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, path, &o));
    if (!m) return test_finish();
    const char *text = "The river rose all night, and by morning the bridge was gone.";
    int32_t *tok = NULL;
    size_t S = 0;
    CHECK_OK(mend_tokenize(mend_model_tokenizer(m), text, strlen(text), 0, 0, &tok, &S));
    const int D = m->cfg.dim, n = P * D;
    /* prompt: the scaled embeddings of tokens 100.. plus a little noise */
    float *prompt = malloc(sizeof(float) * n), *g = calloc((size_t)n, sizeof(float));
    uint64_t r = 7;
    for (int i = 0; i < P; i++) {
        mend_dequantize_row(m->tok_embd.type, (const uint8_t *)m->tok_embd.data + (size_t)(100 + i) * m->tok_embd.row_bytes,
                            prompt + (size_t)i * D, D);
        for (int j = 0; j < D; j++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            prompt[(size_t)i * D + j] = prompt[(size_t)i * D + j] * m->cfg.embd_scale +
                                        0.05f * (float)((double)(r >> 11) / 9007199254740992.0 - 0.5);
        }
    }
    if (tok) check_case("gemma3 ce", m, prompt, tok, (int)S, g);

    /* the windowed layers cut to SHORT_WINDOW keys: the loss moves (so the
     * window is seen), and trainer and mend_forward still agree */
    const double full = tok ? loss_forward(m, NULL, prompt, P, tok, (int)S) : 0.0;
    int n_win = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (m->cfg.swa_window[l] > 0) m->cfg.swa_window[l] = SHORT_WINDOW, n_win++;
    CHECK(n_win == 15);
    if (tok) {
        const double cut = loss_forward(m, NULL, prompt, P, tok, (int)S);
        CHECK_MSG(fabs(cut - full) > 1e-2 * fabs(full), "window %d: loss %.6f, with 512: %.6f", SHORT_WINDOW, cut,
                  full);
        check_case("gemma3 ce, window 6", m, prompt, tok, (int)S, g);
    }
    free(tok);
    free(prompt);
    free(g);
    mend_model_free(m);
    return test_finish();
}
