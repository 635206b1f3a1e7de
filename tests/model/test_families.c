/* Further model families from Hugging Face directories, against the golden
 * logits and prompt gradients torch computed on the same tiny random
 * checkpoints (tests/fixtures/families/make_families.py, transformers'
 * own model classes in float64):
 *   llama3   rope_type llama3 scaling, GQA
 *   qwen3    QK-norm
 *   mistral  sliding-window attention (window 4 over 12 tokens)
 *   phi3     fused qkv_proj and gate_up_proj
 * Per family: logits within 1e-4 of the logit scale (max |diff| / max
 * |logit|), the same logits token by token through the KV cache, the loss
 * and d loss / d prompt of the trainer within 1e-4 relative to the largest
 * gradient coordinate, the feature line `mend info` prints, and the
 * refusals of configurations mend does not implement. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"
#include "prompt/train.h"
#include "test.h"

#define FX "tests/fixtures/families/"

typedef struct golden {
    json_t *root;
    int n_tok, P, S;
    int32_t tok[64], text[64];
    float *logits, *prompt;
    double loss, *grad;
} golden;

static int load_golden(const char *family, golden *g) {
    char path[256];
    snprintf(path, sizeof path, FX "%s.json", family);
    json_error_t err;
    memset(g, 0, sizeof *g);
    g->root = json_load_file(test_src(path), 0, &err);
    if (!g->root) return -1;
    const json_t *t = json_object_get(g->root, "tokens"), *x = json_object_get(g->root, "text");
    const json_t *lg = json_object_get(g->root, "logits"), *p = json_object_get(g->root, "prompt");
    const json_t *gr = json_object_get(g->root, "grad");
    g->n_tok = (int)json_array_size(t);
    g->S = (int)json_array_size(x);
    g->P = (int)json_integer_value(json_object_get(g->root, "n_virtual"));
    if (g->n_tok > 64 || g->S > 64 || json_array_size(lg) != (size_t)g->n_tok) return -1;
    for (int i = 0; i < g->n_tok; i++) g->tok[i] = (int32_t)json_integer_value(json_array_get(t, i));
    for (int i = 0; i < g->S; i++) g->text[i] = (int32_t)json_integer_value(json_array_get(x, i));
    const size_t V = json_array_size(json_array_get(lg, 0)), np = json_array_size(p);
    g->logits = malloc(sizeof(float) * g->n_tok * V);
    g->prompt = malloc(sizeof(float) * np);
    g->grad = malloc(sizeof(double) * np);
    for (int i = 0; i < g->n_tok; i++)
        for (size_t v = 0; v < V; v++)
            g->logits[i * V + v] = (float)json_number_value(json_array_get(json_array_get(lg, i), v));
    for (size_t i = 0; i < np; i++) {
        g->prompt[i] = (float)json_number_value(json_array_get(p, i));
        g->grad[i] = json_number_value(json_array_get(gr, i));
    }
    g->loss = json_number_value(json_object_get(g->root, "loss"));
    return 0;
}

static void free_golden(golden *g) {
    json_decref(g->root);
    free(g->logits);
    free(g->prompt);
    free(g->grad);
}

/* max |a - b| / max |b| over n values */
static double rel_max(const float *a, const float *b, size_t n) {
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / s;
}

static double check_logits(const char *family, mend_model *m, const golden *g) {
    const int V = m->cfg.n_vocab, n = g->n_tok;
    mend_state *s = NULL;
    CHECK_OK(mend_state_new(&s, m, 32, 32));
    if (!s) return INFINITY;
    float *lg = calloc((size_t)n * V, sizeof(float)), *lg1 = calloc((size_t)n * V, sizeof(float));
    CHECK_OK(mend_forward(s, g->tok, NULL, n, 0, lg, 1));
    const double rel = rel_max(lg, g->logits, (size_t)n * V);
    CHECK_MSG(rel <= 1e-4, "%s: logits max |diff| / max |logit| = %.3g", family, rel);
    /* token by token through the cache (a window then starts past 0) */
    for (int i = 0; i < n; i++) CHECK_OK(mend_forward(s, g->tok + i, NULL, 1, i, lg1 + (size_t)i * V, 1));
    const double rel1 = rel_max(lg1, g->logits, (size_t)n * V);
    CHECK_MSG(rel1 <= 1e-4, "%s: decoded logits max |diff| / max |logit| = %.3g", family, rel1);
    free(lg);
    free(lg1);
    mend_state_free(s);
    return rel;
}

/* Returns the gradient's max |diff| / max |grad|. */
static double check_grad(const char *family, mend_model *m, const golden *g, double *loss_rel) {
    const int n = g->P * m->cfg.dim;
    mend_trainer *t = NULL;
    CHECK_OK(mend_trainer_new(&t, m, g->P, g->S, NULL));
    if (!t) return INFINITY;
    float *grad = calloc((size_t)n, sizeof(float));
    mend_train_loss L;
    CHECK_OK(mend_trainer_step(t, g->prompt, g->text, g->S, MEND_TUNE_CE, 1.0f, grad, &L));
    CHECK(L.n_scored == g->S);
    *loss_rel = fabs(L.loss_sum - g->loss) / fabs(g->loss);
    CHECK_MSG(*loss_rel <= 1e-5, "%s: loss %.8f, torch %.8f", family, L.loss_sum, g->loss);
    double e = 0, s = 0;
    for (int i = 0; i < n; i++) {
        e = fmax(e, fabs(grad[i] - g->grad[i]));
        s = fmax(s, fabs(g->grad[i]));
    }
    CHECK_MSG(e <= 1e-4 * s, "%s: gradient max |diff| %.3g of max %.3g", family, e, s);
    free(grad);
    mend_trainer_free(t);
    return e / s;
}

static void check_family(const char *family, const char *feature) {
    golden g;
    CHECK_MSG(load_golden(family, &g) == 0, "%s: golden file", family);
    char dir[256];
    snprintf(dir, sizeof dir, FX "%s", family);
    mend_model *m = NULL;
    mend_load_opts o = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, test_src(dir), &o));
    if (m && g.logits) {
        char line[512];
        mend_describe_features(m, line, sizeof line);
        CHECK_MSG(strncmp(line, feature, strlen(feature)) == 0,
                  "%s: features '%s' lack '%s'", family, line, feature);
        const double rl = check_logits(family, m, &g);
        double rloss = 0;
        const double rg = check_grad(family, m, &g, &rloss);
        printf("| %-8s | %-60s | %.2e | %.2e | %.2e |\n", family, line, rl, rloss, rg);
    }
    mend_model_free(m);
    free_golden(&g);
}

/* ---- refusals: a family's directory with config.json edited ---- */

typedef void (*cfg_edit)(json_t *cfg);

static void rope_yarn(json_t *c) {
    json_object_set_new(json_object_get(c, "rope_parameters"), "rope_type", json_string("yarn"));
}
static void rope_legacy_longrope(json_t *c) {
    json_object_del(c, "rope_parameters");
    json_object_set_new(c, "rope_theta", json_real(10000.0));
    json_object_set_new(c, "rope_scaling", json_pack("{s:s, s:[f], s:[f]}", "type", "longrope", "long_factor", 1.0,
                                                     "short_factor", 1.0));
}
static void rope_partial(json_t *c) {
    json_object_set_new(json_object_get(c, "rope_parameters"), "partial_rotary_factor", json_real(0.5));
}
static void llama3_no_factor(json_t *c) { json_object_del(json_object_get(c, "rope_parameters"), "factor"); }
static void arch_gemma2(json_t *c) { json_object_set_new(c, "architectures", json_pack("[s]", "Gemma2ForCausalLM")); }
static void arch_opt(json_t *c) { json_object_set_new(c, "architectures", json_pack("[s]", "OPTForCausalLM")); }
static void chunked(json_t *c) {
    json_object_set_new(c, "layer_types", json_pack("[s,s]", "full_attention", "chunked_attention"));
}
static void sliding_no_window(json_t *c) {
    json_object_set_new(c, "layer_types", json_pack("[s,s]", "sliding_attention", "full_attention"));
    json_object_set_new(c, "sliding_window", json_null());
}

/* Copy family's directory (links to its weights) into tmp with an edited
 * config.json and try to load it. */
static int load_edited(const char *family, cfg_edit edit, const char *tmp) {
    char src[512], path[512];
    mkdir(tmp, 0755);
    const char *files[] = {"model.safetensors", "tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "%s/%s", test_src(FX), family);
        char from[768];
        snprintf(from, sizeof from, "%s/%s", src, files[i]);
        snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
        unlink(path);
        if (symlink(from, path)) return -1;
    }
    snprintf(src, sizeof src, "%s%s/config.json", test_src(FX), family);
    json_error_t err;
    json_t *c = json_load_file(src, 0, &err);
    if (!c) return -1;
    edit(c);
    snprintf(path, sizeof path, "%s/config.json", tmp);
    json_dump_file(c, path, JSON_INDENT(1));
    json_decref(c);
    mend_model *m = NULL;
    mend_load_opts o = {.keep_packed = 0};
    const int rc = mend_model_load(&m, tmp, &o);
    mend_model_free(m);
    return rc;
}

static void rope_default(json_t *c) {
    json_object_set_new(c, "rope_parameters", json_pack("{s:s, s:f}", "rope_type", "default", "rope_theta", 10000.0));
}
static void no_window(json_t *c) { json_object_set_new(c, "sliding_window", json_null()); }

/* Without its feature a family's logits are far from the golden ones: the
 * fixtures exercise llama3 scaling and the window. */
static void check_feature_matters(const char *family, cfg_edit edit, const char *tmp) {
    golden g;
    if (load_golden(family, &g)) return;
    CHECK_OK(load_edited(family, edit, tmp));
    mend_model *m = NULL;
    mend_load_opts o = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, tmp, &o));
    mend_state *s = NULL;
    if (m && mend_state_new(&s, m, 32, 32) == 0) {
        float *lg = calloc((size_t)g.n_tok * m->cfg.n_vocab, sizeof(float));
        CHECK_OK(mend_forward(s, g.tok, NULL, g.n_tok, 0, lg, 1));
        const double rel = rel_max(lg, g.logits, (size_t)g.n_tok * m->cfg.n_vocab);
        printf("%s without its feature: logits max |diff| / max |logit| = %.3g\n", family, rel);
        CHECK_MSG(rel > 1e-2, "%s: the feature does not change the logits (%.3g)", family, rel);
        free(lg);
    }
    mend_state_free(s);
    mend_model_free(m);
    free_golden(&g);
}

static void remove_edited(const char *d) {
    const char *files[] = {"model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json"};
    char p[512];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", d, files[i]);
        unlink(p);
    }
    rmdir(d);
}

static void check_features_matter(void) {
    char tmp[] = "/tmp/mend_families_XXXXXX";
    if (!mkdtemp(tmp)) return;
    char d[256];
    snprintf(d, sizeof d, "%s/m", tmp);
    check_feature_matters("llama3", rope_default, d);
    check_feature_matters("mistral", no_window, d);
    remove_edited(d);
    rmdir(tmp);
}

static void check_refusals(void) {
    char tmp[] = "/tmp/mend_families_XXXXXX";
    if (!mkdtemp(tmp)) return;
    char d[256];
    snprintf(d, sizeof d, "%s/m", tmp);
    CHECK_ERR(load_edited("llama3", rope_yarn, d), MEND_EUNSUPPORTED, "rope_type 'yarn'");
    CHECK_ERR(load_edited("phi3", rope_legacy_longrope, d), MEND_EUNSUPPORTED, "'rope_scaling' has rope_type 'longrope'");
    CHECK_ERR(load_edited("phi3", rope_partial, d), MEND_EUNSUPPORTED, "'partial_rotary_factor' is 0.5");
    CHECK_ERR(load_edited("llama3", llama3_no_factor, d), MEND_EFORMAT, "'factor' is missing");
    CHECK_ERR(load_edited("llama3", arch_gemma2, d), MEND_EUNSUPPORTED, "soft-capping");
    CHECK_ERR(load_edited("llama3", arch_opt, d), MEND_EUNSUPPORTED, "learned positions");
    CHECK_ERR(load_edited("qwen3", chunked, d), MEND_EUNSUPPORTED, "'layer_types' entry 1 is 'chunked_attention'");
    CHECK_ERR(load_edited("qwen3", sliding_no_window, d), MEND_EFORMAT, "'sliding_window' is not a positive");
    remove_edited(d);
    rmdir(tmp);
}

int main(void) {
    printf("| family   | mend info | max |dlogit| / max |logit| | loss rel | grad max err / max |grad| |\n");
    check_family("llama3", "llama: GQA 4/2, rope norm base 10000 llama3-scaled (factor 8, low 1, high 4, original "
                           "context 64)");
    check_family("qwen3", "qwen3: GQA 4/2, QK-norm, rope neox base 1e+06");
    check_family("mistral", "mistral: GQA 4/2, sliding window 4, rope norm base 10000");
    check_family("phi3", "phi3: GQA 4/2, fused qkv_proj and gate_up_proj (split at load), rope norm base 10000");
    check_features_matter();
    check_refusals();
    return test_finish();
}
