/* Prompt gradients of the trainer (prompt/train.c) on the tiny random
 * models of tests/fixtures/hf:
 *   1. against torch autograd on a from-equations float64 re-implementation
 *      (tests/fixtures/tune/grad.json, make_grad_fixture.py): loss and
 *      d(loss)/d(prompt) within 1e-4 relative, for llama (GGUF and HF
 *      layouts), qwen2 (biases, NEOX RoPE, separate head) and the KL
 *      objective with qwen2 as teacher;
 *   2. against central differences of the loss computed by mend_forward
 *      (the inference forward, an independent code path), with the sums
 *      accumulated in double: a few of the largest coordinates and a random
 *      direction, within 1e-2 relative;
 *   3. the trainer's loss equals the one mend_forward gives, and a second
 *      step on the same input is bit-identical. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "prompt/train.h"
#include "test.h"
#include "grad_check.h"

typedef struct fx {
    int P, S;
    int32_t tok[64];
    float *prompt;
    double loss;
    double *grad;
} fx;

static int load_case(json_t *root, const char *name, fx *f) {
    json_t *c = json_object_get(root, name);
    if (!c) return -1;
    f->P = (int)json_integer_value(json_object_get(c, "n_virtual"));
    json_t *t = json_object_get(c, "tokens"), *p = json_object_get(c, "prompt"), *g = json_object_get(c, "grad");
    f->S = (int)json_array_size(t);
    if (f->S > 64) return -1;
    for (int i = 0; i < f->S; i++) f->tok[i] = (int32_t)json_integer_value(json_array_get(t, i));
    size_t n = json_array_size(p);
    f->prompt = malloc(n * sizeof(float));
    f->grad = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        f->prompt[i] = (float)json_real_value(json_array_get(p, i));
        f->grad[i] = json_real_value(json_array_get(g, i));
    }
    f->loss = json_real_value(json_object_get(c, "loss"));
    return 0;
}

static void check_case(const char *label, const mend_model *m, const mend_model *teacher, const fx *f) {
    const int D = m->cfg.dim, P = f->P, S = f->S, n = P * D;
    const int obj = teacher ? MEND_TUNE_KL : MEND_TUNE_CE;
    mend_trainer *t = NULL;
    CHECK_OK(mend_trainer_new(&t, m, P, S + 5, teacher));
    if (!t) return;
    const int ns = mend_trainer_n_scored(obj, S);
    float *g = calloc((size_t)n, sizeof(float)), *g2 = calloc((size_t)n, sizeof(float));
    mend_train_loss L, L2;
    CHECK_OK(mend_trainer_step(t, f->prompt, f->tok, S, obj, 1.0f / ns, g, &L));
    CHECK(L.n_scored == ns);
    const double loss = L.loss_sum / ns;
    CHECK_MSG(fabs(loss - f->loss) <= 1e-4 * fabs(f->loss), "%s: loss %.8f, torch %.8f", label, loss, f->loss);
    /* gradient vs torch: max abs error relative to the largest coordinate,
     * and the relative error of the whole vector */
    double emax = 0, gmax = 0, e2 = 0, n2 = 0;
    for (int i = 0; i < n; i++) {
        emax = fmax(emax, fabs(g[i] - f->grad[i]));
        gmax = fmax(gmax, fabs(f->grad[i]));
        e2 += (g[i] - f->grad[i]) * (g[i] - f->grad[i]);
        n2 += f->grad[i] * f->grad[i];
    }
    printf("%s: loss %.7f (torch %.7f), grad max err %.2e of %.3g, rel l2 %.2e\n", label, loss, f->loss, emax, gmax,
           sqrt(e2 / n2));
    CHECK_MSG(emax <= 1e-4 * gmax && sqrt(e2 / n2) <= 1e-4, "%s: gradient differs from torch", label);
    /* a second step reproduces the first bit for bit */
    CHECK_OK(mend_trainer_step(t, f->prompt, f->tok, S, obj, 1.0f / ns, g2, &L2));
    CHECK(memcmp(g, g2, sizeof(float) * n) == 0 && L.loss_sum == L2.loss_sum);

    /* the inference forward gives the same loss */
    double lf = loss_forward(m, teacher, f->prompt, P, f->tok, S);
    CHECK_MSG(fabs(lf - L.loss_sum) <= 1e-5 * fabs(lf), "%s: mend_forward loss %.8f, trainer %.8f", label, lf,
              L.loss_sum);

    check_fd(label, m, teacher, f->prompt, P, f->tok, S, g, ns);
    free(g);
    free(g2);
    mend_trainer_free(t);
}

int main(void) {
    json_error_t jerr;
    json_t *root = json_load_file(test_src("tests/fixtures/tune/grad.json"), 0, &jerr);
    CHECK(root != NULL);
    if (!root) return test_finish();
    fx fl = {0}, fq = {0}, fk = {0};
    CHECK(load_case(root, "llama", &fl) == 0);
    CHECK(load_case(root, "qwen2", &fq) == 0);
    CHECK(load_case(root, "kl_llama_from_qwen2", &fk) == 0);
    mend_model *lg = NULL, *lh = NULL, *qh = NULL;
    mend_load_opts o = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&lg, test_src("tests/fixtures/hf/llama.gguf"), &o));
    CHECK_OK(mend_model_load(&lh, test_src("tests/fixtures/hf/llama"), &o));
    CHECK_OK(mend_model_load(&qh, test_src("tests/fixtures/hf/qwen2"), &o));
    if (lg && lh && qh) {
        check_case("llama.gguf ce", lg, NULL, &fl);
        check_case("llama hf ce", lh, NULL, &fl);
        check_case("qwen2 hf ce", qh, NULL, &fq);
        check_case("llama.gguf kl(qwen2)", lg, qh, &fk);
    }
    /* bad inputs */
    mend_trainer *t = NULL;
    CHECK_ERR(mend_trainer_new(&t, lg, 0, 8, NULL), MEND_EINVAL, "n_virtual");
    mend_model *packed = NULL;
    mend_load_opts kp = {.keep_packed = 1};
    if (mend_model_load(&packed, test_src("tests/fixtures/hf/llama.gguf"), &kp) == 0) {
        CHECK_ERR(mend_trainer_new(&t, packed, 2, 8, NULL), MEND_EUNSUPPORTED, "keep_packed");
        mend_model_free(packed);
    }
    if (lg) {
        CHECK_OK(mend_trainer_new(&t, lg, 2, 8, NULL));
        float pr[128] = {0};
        int32_t bad[3] = {1, 2, 300};
        mend_train_loss L;
        CHECK_ERR(mend_trainer_step(t, pr, bad, 3, MEND_TUNE_CE, 1.0f, NULL, &L), MEND_EINVAL, "vocabulary");
        CHECK_ERR(mend_trainer_step(t, pr, bad, 9, MEND_TUNE_CE, 1.0f, NULL, &L), MEND_EINVAL, "n_text");
        CHECK_ERR(mend_trainer_step(t, pr, bad, 2, MEND_TUNE_KL, 1.0f, NULL, &L), MEND_EINVAL, "teacher");
        mend_trainer_free(t);
    }
    mend_model_free(lg);
    mend_model_free(lh);
    mend_model_free(qh);
    fx *all[3] = {&fl, &fq, &fk};
    for (int i = 0; i < 3; i++) {
        free(all[i]->prompt);
        free(all[i]->grad);
    }
    json_decref(root);
    return test_finish();
}
