/* Further model families from Hugging Face directories, against the golden
 * logits and prompt gradients torch computed on the same tiny random
 * checkpoints (tests/fixtures/families/make_families.py, transformers'
 * own model classes in float64):
 *   llama3   rope_type llama3 scaling, GQA
 *   qwen3    QK-norm
 *   mistral  sliding-window attention (window 4 over 12 tokens)
 *   phi3     fused qkv_proj and gate_up_proj
 *   opt      LayerNorm with bias, learned positions offset by 2, ReLU MLP,
 *            biases on every linear map, MHA
 * Per family: logits within 1e-4 of the logit scale (max |diff| / max
 * |logit|), the same logits token by token through the KV cache, the loss
 * and d loss / d prompt of the trainer within 1e-4 relative to the largest
 * gradient coordinate, the feature line `mend info` prints, and the
 * refusals of configurations mend does not implement (edited configs);
 * mistral's window with rows that carry their own positions; opt's
 * position table at its end and past it. llama3 and qwen3 also as GGUF
 * files: the same logits, compressed files that mend reloads, and the
 * greedy continuation llama.cpp gives them; opt as GGUF in mend's own
 * layout: the same logits and a compressed file that keeps its biases and
 * positions. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_run.h"
#include "compress/driver.h"
#include "compress/quantize.h"
#include "io/safetensors.h"
#include "model/attn_probe.h"
#include "model/model.h"
#include "prompt/train.h"
#include "test.h"

#define FX "tests/fixtures/families/"

typedef struct golden {
    json_t *root;
    int n_tok, P, S;
    int32_t tok[64], text[64];
    float *logits, *prompt;
    float *gguf_logits;   /* the logits llama.cpp's layout defines, where they differ (gemma2), else NULL */
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
    const json_t *gg = json_object_get(g->root, "gguf_logits");
    if (json_array_size(gg) == (size_t)g->n_tok) {
        g->gguf_logits = malloc(sizeof(float) * g->n_tok * V);
        for (int i = 0; i < g->n_tok; i++)
            for (size_t v = 0; v < V; v++)
                g->gguf_logits[i * V + v] = (float)json_number_value(json_array_get(json_array_get(gg, i), v));
    }
    return 0;
}

static void free_golden(golden *g) {
    json_decref(g->root);
    free(g->logits);
    free(g->gguf_logits);
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

/* The logits of the golden tokens in one pass (by_token: one token at a
 * time through the KV cache, where a window starts past 0), as max |diff| /
 * max |golden logit|. */
static double logits_rel(mend_model *m, const golden *g, int by_token) {
    const int V = m->cfg.n_vocab, n = g->n_tok;
    mend_state *s = NULL;
    CHECK_OK(mend_state_new(&s, m, 32, 32));
    if (!s) return INFINITY;
    float *lg = calloc((size_t)n * V, sizeof(float));
    if (by_token)
        for (int i = 0; i < n; i++) CHECK_OK(mend_forward(s, g->tok + i, NULL, 1, i, lg + (size_t)i * V, 1));
    else
        CHECK_OK(mend_forward(s, g->tok, NULL, n, 0, lg, 1));
    const double rel = rel_max(lg, g->logits, (size_t)n * V);
    free(lg);
    mend_state_free(s);
    return rel;
}

static double check_logits(const char *family, mend_model *m, const golden *g) {
    const double rel = logits_rel(m, g, 0), rel1 = logits_rel(m, g, 1);
    CHECK_MSG(rel <= 1e-4, "%s: logits max |diff| / max |logit| = %.3g", family, rel);
    CHECK_MSG(rel1 <= 1e-4, "%s: decoded logits max |diff| / max |logit| = %.3g", family, rel1);
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
static void chunked(json_t *c) {
    json_object_set_new(c, "layer_types", json_pack("[s,s]", "full_attention", "chunked_attention"));
}
static void gemma3_vision(json_t *c) {   /* a multimodal Gemma 3 checkpoint: its text model only runs */
    json_object_set_new(c, "architectures", json_pack("[s]", "Gemma3ForConditionalGeneration"));
}
/* OPT variants mend does not implement, and malformed OPT fields */
static void opt_post_norm(json_t *c) { json_object_set_new(c, "do_layer_norm_before", json_false()); }
static void opt_project(json_t *c) { json_object_set_new(c, "word_embed_proj_dim", json_integer(32)); }
static void opt_gelu(json_t *c) { json_object_set_new(c, "activation_function", json_string("gelu")); }
static void opt_act_number(json_t *c) { json_object_set_new(c, "activation_function", json_integer(1)); }
static void opt_no_bias(json_t *c) { json_object_set_new(c, "enable_bias", json_false()); }
static void opt_no_affine(json_t *c) { json_object_set_new(c, "layer_norm_elementwise_affine", json_false()); }
static void opt_no_final_norm(json_t *c) { json_object_set_new(c, "_remove_final_layer_norm", json_true()); }
static void opt_bias_string(json_t *c) { json_object_set_new(c, "enable_bias", json_string("yes")); }
static void opt_no_ffn_dim(json_t *c) { json_object_del(c, "ffn_dim"); }
static void opt_ffn_48(json_t *c) { json_object_set_new(c, "ffn_dim", json_integer(48)); }
static void opt_positions_100(json_t *c) { json_object_set_new(c, "max_position_embeddings", json_integer(100)); }
static void opt_gqa(json_t *c) { json_object_set_new(c, "num_key_value_heads", json_integer(2)); }

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
static void gemma3_one_base(json_t *c) {   /* the sliding layer rotating with the global base */
    json_object_set_new(json_object_get(json_object_get(c, "rope_parameters"), "sliding_attention"), "rope_theta",
                        json_real(1000000.0));
}
static void no_softcap(json_t *c) {
    json_object_set_new(c, "attn_logit_softcapping", json_null());
    json_object_set_new(c, "final_logit_softcapping", json_null());
}

/* Without its feature a family's logits are far from the golden ones: the
 * fixtures exercise llama3 scaling and the window. */
static void check_feature_matters(const char *family, cfg_edit edit, const char *tmp) {
    golden g;
    if (load_golden(family, &g)) return;
    CHECK_OK(load_edited(family, edit, tmp));
    mend_model *m = NULL;
    mend_load_opts o = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, tmp, &o));
    if (m) {
        const double rel = logits_rel(m, &g, 0);
        printf("%s without its feature: logits max |diff| / max |logit| = %.3g\n", family, rel);
        CHECK_MSG(rel > 1e-2, "%s: the feature does not change the logits (%.3g)", family, rel);
    }
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
    check_feature_matters("gemma2", no_softcap, d);
    check_feature_matters("gemma3", gemma3_one_base, d);
    remove_edited(d);
    rmdir(tmp);
}

/* OPT's positions matter in its fixture too, which no config edit can show:
 * the loaded model with its table swapped for zeros, or for the table's
 * rows 0.. (HF's offset of 2 forgotten), is far from the golden logits. */
static void check_opt_positions_matter(void) {
    golden g;
    if (load_golden("opt", &g)) return;
    mend_model *m = NULL;
    mend_safetensors *st = NULL;
    mend_load_opts o = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, test_src(FX "opt"), &o));
    CHECK_OK(mend_safetensors_open(&st, test_src(FX "opt/model.safetensors")));
    const mend_st_tensor *t = st ? mend_safetensors_find(st, "model.decoder.embed_positions.weight") : NULL;
    if (m && t) {
        const size_t n = (size_t)m->cfg.n_pos * m->cfg.dim;
        float *zero = calloc(n, sizeof(float)), *rows0 = malloc(n * sizeof(float));
        CHECK_OK(mend_safetensors_read_f32(st, t, 0, (int64_t)n, rows0));
        const float *table = m->cfg.pos_embd;
        m->cfg.pos_embd = zero;
        const double rz = logits_rel(m, &g, 0);
        m->cfg.pos_embd = rows0;
        const double r0 = logits_rel(m, &g, 0);
        m->cfg.pos_embd = table;
        printf("opt without its positions: logits max |diff| / max |logit| = %.3g; without the offset of 2: %.3g\n",
               rz, r0);
        CHECK_MSG(rz > 1e-2 && r0 > 1e-2, "opt: the positions (%.3g) or their offset (%.3g) do not change the logits",
                  rz, r0);
        free(zero);
        free(rows0);
    }
    mend_safetensors_close(st);
    mend_model_free(m);
    free_golden(&g);
}

/* The loader refuses the edited config with this message, and so does
 * `mend info` (a non-zero exit, the sentence on stderr, no description). */
static void check_info_refuses(const char *dir, const char *msg) {
    cli_out r = cli_runf("info '%s'", dir);
    CHECK_MSG(r.code != 0 && strstr(r.err, msg) && !strstr(r.out, "architecture:"), "mend info %s: exit %d, stderr '%s'",
              dir, r.code, r.err);
    cli_free(&r);
}

static void check_refusal(const char *family, cfg_edit edit, const char *d, int code, const char *msg) {
    CHECK_ERR(load_edited(family, edit, d), code, msg);
    check_info_refuses(d, msg);
}

static void check_refusals(void) {
    char tmp[] = "/tmp/mend_families_XXXXXX";
    if (!mkdtemp(tmp)) return;
    char d[256];
    snprintf(d, sizeof d, "%s/m", tmp);
    check_refusal("llama3", rope_yarn, d, MEND_EUNSUPPORTED, "rope_type 'yarn'");
    check_refusal("phi3", rope_legacy_longrope, d, MEND_EUNSUPPORTED, "'rope_scaling' has rope_type 'longrope'");
    check_refusal("phi3", rope_partial, d, MEND_EUNSUPPORTED, "'partial_rotary_factor' is 0.5");
    check_refusal("llama3", llama3_no_factor, d, MEND_EFORMAT, "'factor' is missing");
    check_refusal("qwen3", chunked, d, MEND_EUNSUPPORTED, "'layer_types' entry 1 is 'chunked_attention'");
    check_refusal("qwen3", sliding_no_window, d, MEND_EFORMAT, "'sliding_window' is not a positive");
    check_refusal("qwen3", gemma3_vision, d, MEND_EUNSUPPORTED, "'Gemma3ForConditionalGeneration', which needs "
                  "the vision tower");
    check_refusal("opt", opt_post_norm, d, MEND_EUNSUPPORTED, "field 'do_layer_norm_before' is false (OPT-350m's");
    check_refusal("opt", opt_project, d, MEND_EUNSUPPORTED, "field 'word_embed_proj_dim' is 32, not 'hidden_size' "
                  "64: the embeddings go through project_in / project_out");
    check_refusal("opt", opt_gelu, d, MEND_EUNSUPPORTED, "field 'activation_function' is \"gelu\"; mend implements "
                  "OPT's ReLU MLP only");
    check_refusal("opt", opt_act_number, d, MEND_EFORMAT, "field 'activation_function' is not a string");
    check_refusal("opt", opt_no_bias, d, MEND_EUNSUPPORTED, "field 'enable_bias' is false");
    check_refusal("opt", opt_no_affine, d, MEND_EUNSUPPORTED, "field 'layer_norm_elementwise_affine' is false");
    check_refusal("opt", opt_no_final_norm, d, MEND_EUNSUPPORTED, "field '_remove_final_layer_norm' is true");
    check_refusal("opt", opt_bias_string, d, MEND_EFORMAT, "field 'enable_bias' is not true or false");
    check_refusal("opt", opt_no_ffn_dim, d, MEND_EFORMAT, "field 'ffn_dim' is missing");
    check_refusal("opt", opt_ffn_48, d, MEND_EFORMAT, "tensor 'model.decoder.layers.0.fc1.weight' has shape [96, 64], "
                  "expected [48, 64] (ffn_dim, hidden_size");
    check_refusal("opt", opt_positions_100, d, MEND_EFORMAT, "tensor 'model.decoder.embed_positions.weight' has "
                  "shape [258, 64], expected [102, 64] (max_position_embeddings + 2");
    check_refusal("opt", opt_gqa, d, MEND_EUNSUPPORTED, "'num_key_value_heads' (2)");
    remove_edited(d);
    rmdir(tmp);
}

/* Rows with their own positions (mend_forward_rows) on mistral's window of 4
 * in a longer context: rows at positions 0..3 see all their keys and give
 * the golden logits; a row at position 4, whose window drops position 0, is
 * refused. */
static void check_rows_window(void) {
    golden g;
    if (load_golden("mistral", &g)) return;
    mend_model *m = NULL;
    mend_load_opts o = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, test_src(FX "mistral"), &o));
    mend_state *s = NULL;
    if (m) CHECK_OK(mend_state_new(&s, m, 32, 8));
    const int V = m ? m->cfg.n_vocab : 0;
    float *lg = malloc(sizeof(float) * 4 * (V ? V : 1));
    if (s && lg) {
        mend_row rows[5];
        const int out[4] = {0, 1, 2, 3};
        for (int i = 0; i < 5; i++) rows[i] = (mend_row){.pos = i, .c0 = 0};
        CHECK_OK(mend_forward_rows(s, g.tok, 4, 0, rows, lg, out, 4));
        const double rel = rel_max(lg, g.logits, (size_t)4 * V);
        CHECK_MSG(rel <= 1e-4, "mistral rows within the window: logits max |diff| / max |logit| = %.3g", rel);
        CHECK_ERR(mend_forward_rows(s, g.tok, 5, 0, rows, lg, out, 4), MEND_EUNSUPPORTED,
                  "row 4 is at position 4, where the sliding window");
    }
    free(lg);
    mend_state_free(s);
    mend_model_free(m);
    free_golden(&g);
}

/* OPT's learned positions: rows at positions 250..255 (the table's last
 * rows) run and differ from the same tokens at 0..5; one more position, and
 * rows, prompts or probes that would need it, are refused. The original
 * checkpoints' names (decoder.* without model.) load the same model. */
static void check_opt_positions(void) {
    golden g;
    if (load_golden("opt", &g)) return;
    mend_model *m = NULL;
    mend_load_opts o = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, test_src(FX "opt"), &o));
    mend_state *s = NULL;
    if (m) CHECK_OK(mend_state_new(&s, m, 300, 16));
    const int V = m ? m->cfg.n_vocab : 1;
    float *a = malloc(sizeof(float) * 6 * V), *b = malloc(sizeof(float) * 6 * V);
    if (s && a && b) {
        /* six tokens at positions 0..5, then as rows of their own at 0..5 (the
         * same logits) and at 250..255 (the table's last rows: others) */
        CHECK_OK(mend_forward(s, g.tok, NULL, 6, 0, a, 1));
        mend_row rows[6];
        const int out[6] = {0, 1, 2, 3, 4, 5};
        for (int i = 0; i < 6; i++) rows[i] = (mend_row){.pos = i, .c0 = 0};
        CHECK_OK(mend_forward_rows(s, g.tok, 6, 0, rows, b, out, 6));
        CHECK_MSG(rel_max(b, a, (size_t)6 * V) <= 1e-5, "opt: rows at 0..5 differ from the forward (%.3g)",
                  rel_max(b, a, (size_t)6 * V));
        for (int i = 0; i < 6; i++) rows[i].pos = 250 + i;
        CHECK_OK(mend_forward_rows(s, g.tok, 6, 0, rows, b, out, 6));
        CHECK_MSG(rel_max(b, a, (size_t)6 * V) > 1e-2, "opt: positions 250.. give the logits of 0.. (%.3g)",
                  rel_max(b, a, (size_t)6 * V));
        CHECK_ERR(mend_forward(s, g.tok, NULL, 7, 250, b, 1), MEND_ERANGE,
                  "mend_forward: positions 250..256 lie outside the 256 learned positions");
        rows[1].pos = 256;
        CHECK_ERR(mend_forward_rows(s, g.tok, 2, 0, rows, a, out, 1), MEND_ERANGE,
                  "mend_forward_rows: positions 256..256 lie outside");
        mend_trainer *t = NULL;
        CHECK_ERR(mend_trainer_new(&t, m, 3, 254, NULL), MEND_ERANGE, "mend_trainer_new: positions 0..256 lie");
        CHECK(t == NULL);
        CHECK_OK(mend_trainer_new(&t, m, 3, 253, NULL));
        mend_trainer_free(t);
        mend_probe *p = NULL;
        const float *pr = g.prompt;
        CHECK_ERR(mend_probe_new(&p, m, &pr, 1, 3, 254), MEND_ERANGE, "mend_probe_new: positions 0..256 lie");
        CHECK(p == NULL);
    }
    free(a);
    free(b);
    mend_state_free(s);
    mend_model_free(m);

    /* decoder.* names */
    char tmp[] = "/tmp/mend_families_XXXXXX", d[256], path[512], from[768];
    mend_safetensors *st = NULL;
    if (mkdtemp(tmp) && !mend_safetensors_open(&st, test_src(FX "opt/model.safetensors"))) {
        snprintf(d, sizeof d, "%s/m", tmp);
        mkdir(d, 0755);
        mend_st_out *t = calloc(st->n_tensors, sizeof *t);
        for (size_t i = 0; t && i < st->n_tensors; i++) {
            const mend_st_tensor *x = &st->tensors[i];
            t[i] = (mend_st_out){x->name, x->type, x->n_dims, {0}, x->data};
            memcpy(t[i].shape, x->shape, sizeof x->shape);
            if (!strncmp(x->name, "model.", 6)) t[i].name = x->name + 6;
        }
        snprintf(path, sizeof path, "%s/model.safetensors", d);
        CHECK_OK(mend_safetensors_write(path, t, st->n_tensors, NULL));
        free(t);
        const char *files[] = {"config.json", "tokenizer.json", "tokenizer_config.json"};
        for (int i = 0; i < 3; i++) {
            snprintf(from, sizeof from, "%s/%s", test_src(FX "opt"), files[i]);
            snprintf(path, sizeof path, "%s/%s", d, files[i]);
            CHECK(symlink(from, path) == 0);
        }
        m = NULL;
        CHECK_OK(mend_model_load(&m, d, &o));
        if (m) {
            const double rel = logits_rel(m, &g, 0);
            CHECK_MSG(rel <= 1e-4, "opt with decoder.* names: logits max |diff| / max |logit| = %.3g", rel);
        }
        mend_model_free(m);
        const char *all[] = {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"};
        for (int i = 0; i < 4; i++) {
            snprintf(path, sizeof path, "%s/%s", d, all[i]);
            unlink(path);
        }
        rmdir(d);
        rmdir(tmp);
    }
    mend_safetensors_close(st);
    free_golden(&g);
}

/* `mend info` prints the feature line of every family, HF and GGUF alike. */
static void check_info(const char *path, const char *feature) {
    cli_out r = cli_runf("info '%s'", test_src(path));
    char want[512];
    snprintf(want, sizeof want, "features           %s", feature);
    CHECK_MSG(r.code == 0 && strstr(r.out, want), "mend info %s: exit %d, no '%s' in\n%s", path, r.code, want, r.out);
    cli_free(&r);
}

/* ---- llama.cpp's layout: <family>.gguf, the same weights written with the
 * gguf package (make_families.py); compressed by mend, reloaded by mend and
 * loaded by llama.cpp when its tools are built (scripts/peers.sh) ---- */

/* Logits of a compressed copy: even q8_0 moves those of these tiny random
 * models by 2e-2 to 5e-2 of the logit scale (RTN and GPTQ alike); losing a
 * family feature moves them by 0.3 or more. */
#define COMPRESSED_TOL 1e-1

static mend_model *load_feature_checked(const char *path, const char *family, const char *feature) {
    mend_model *m = NULL;
    mend_load_opts o = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, path, &o));
    if (m) {
        char line[512];
        mend_describe_features(m, line, sizeof line);
        CHECK_MSG(strncmp(line, feature, strlen(feature)) == 0, "%s (%s): features '%s' lack '%s'", family, path,
                  line, feature);
    }
    return m;
}

/* GPTQ to a ggml type on random calibration tokens (the calibration layer
 * runs the family's features) */
static int compress_to(const char *src, const char *out, uint32_t type, int n_vocab) {
    enum { NS = 16, SL = 32 };
    int32_t calib[NS * SL];
    uint32_t x = 12345;
    for (int i = 0; i < NS * SL; i++) x = x * 1664525u + 1013904223u, calib[i] = (int32_t)((x >> 8) % (uint32_t)n_vocab);
    mend_compress_opts o = {.method = MEND_COMPRESS_GPTQ, .fmt = mend_qfmt_ggml(type),
                            .embd_type = MEND_EMBD_KEEP, .act_order = 1, .calib = calib, .nsamples = NS, .seqlen = SL};
    return mend_compress(src, out, &o, NULL);
}

/* Greedy continuation of "hello" by mend: the prompt and n_gen tokens' text. */
static char *mend_greedy(mend_model *m, int n_gen) {
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(mend_tokenize(mend_model_tokenizer(m), "hello", 5, 1, 0, &ids, &n));
    mend_state *s = NULL;
    CHECK_OK(mend_state_new(&s, m, 32, 32));
    const int V = m->cfg.n_vocab;
    float *lg = malloc(sizeof(float) * V);
    int32_t *all = malloc(sizeof(int32_t) * (n + n_gen));
    memcpy(all, ids, sizeof(int32_t) * n);
    char *text = NULL;
    if (s && lg && all) {
        CHECK_OK(mend_forward(s, ids, NULL, (int)n, 0, lg, 0));
        for (int i = 0; i < n_gen; i++) {
            int32_t best = 0;
            for (int v = 1; v < V; v++) best = lg[v] > lg[best] ? v : best;
            all[n + i] = best;
            if (i + 1 < n_gen) CHECK_OK(mend_forward(s, &best, NULL, 1, (int)n + i, lg, 0));
        }
        CHECK_OK(mend_detokenize(mend_model_tokenizer(m), all, n + n_gen, &text));
    }
    free(ids);
    free(all);
    free(lg);
    mend_state_free(s);
    return text;
}

/* llama.cpp loads the file and continues "hello" greedily as mend does
 * (q5_0, a type llama.cpp does not repack at load: its AMX repacking of
 * q8_0 / q4_0 crashes on matrices this small). */
static void check_llama_cpp(const char *family, const char *gguf, mend_model *q) {
    char bin[512], cmd[2048], outp[600];
    const char *peers = getenv("MEND_PEERS");
    snprintf(bin, sizeof bin, "%s/bin/llama-simple", peers && *peers ? peers : "/opt/mend-peers");
    if (access(bin, X_OK)) {
        printf("%s: llama.cpp check skipped: %s is not built (scripts/peers.sh)\n", family, bin);
        return;
    }
    snprintf(outp, sizeof outp, "%s.out", gguf);
    snprintf(cmd, sizeof cmd, "'%s' -m '%s' -n 4 hello >'%s' 2>/dev/null", bin,
             gguf, outp);
    const int st = system(cmd);
    CHECK_MSG(st == 0, "%s: llama.cpp's llama-simple does not run %s (status %d)", family, gguf, st);
    char got[256] = {0};
    FILE *f = fopen(outp, "rb");
    if (f) {
        size_t k = fread(got, 1, sizeof got - 1, f);
        got[k] = 0;
        fclose(f);
    }
    unlink(outp);
    char *want = mend_greedy(q, 4);
    CHECK_MSG(want && strncmp(got, want, strlen(want)) == 0, "%s: llama.cpp continues 'hello' as '%s', mend as '%s'",
              family, got, want ? want : "");
    printf("%s: llama.cpp (llama-simple) runs the compressed file and continues greedily as mend does\n", family);
    free(want);
}

static void check_gguf_family(const char *family, const char *feature) {
    golden g;
    CHECK_MSG(load_golden(family, &g) == 0, "%s: golden file", family);
    char src[256], out[512], out5[512];
    const char *tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(src, sizeof src, FX "%s.gguf", family);
    snprintf(out, sizeof out, "%s/mend_families_%d_%s.q8_0.gguf", tmpdir, (int)getpid(), family);
    snprintf(out5, sizeof out5, "%s/mend_families_%d_%s.q5_0.gguf", tmpdir, (int)getpid(), family);
    mend_model *m = load_feature_checked(test_src(src), family, feature);
    if (g.gguf_logits) {   /* compare with the logits of the file's own definition */
        float *t = g.logits;
        g.logits = g.gguf_logits;
        g.gguf_logits = t;
    }
    if (m && g.logits) {
        const double rel = logits_rel(m, &g, 0);
        CHECK_MSG(rel <= 1e-4, "%s.gguf: logits max |diff| / max |logit| = %.3g", family, rel);
        CHECK_OK(compress_to(test_src(src), out, MEND_TYPE_Q8_0, m->cfg.n_vocab));
        mend_model *q = load_feature_checked(out, family, feature);
        const double relq = q ? logits_rel(q, &g, 0) : INFINITY;
        CHECK_MSG(relq <= COMPRESSED_TOL, "%s q8_0: logits max |diff| / max |logit| = %.3g", family, relq);
        CHECK(q && q->layers_packed && q->layers_packed[0].wq.type == MEND_TYPE_Q8_0);
        printf("| %-8s | GGUF %.2e | GPTQ q8_0 %.2e |\n", family, rel, relq);
        mend_model_free(q);
        CHECK_OK(compress_to(test_src(src), out5, MEND_TYPE_Q5_0, m->cfg.n_vocab));
        q = load_feature_checked(out5, family, feature);
        if (q) check_llama_cpp(family, out5, q);
        mend_model_free(q);
    }
    unlink(out);
    unlink(out5);
    mend_model_free(m);
    free_golden(&g);
}

/* opt.gguf, mend's own layout for OPT (llama.cpp has none): the same
 * logits as torch; a GPTQ q8_0 copy keeps the position table and every
 * norm and bias byte for byte (f32), quantizes the six matrices of each
 * layer (no ffn_gate), and reloads with the family's features, through
 * the f32 path and through the native quantized kernels (keep_packed),
 * which add the biases after their products. Returns the q8_0 copy's
 * logits error (f32 path). */
static double check_gguf_opt(const char *feature) {
    golden g;
    CHECK_MSG(load_golden("opt", &g) == 0, "opt: golden file");
    char out[512];
    snprintf(out, sizeof out, "%s/mend_families_%d_opt.q8_0.gguf", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    const char *src = test_src(FX "opt.gguf");
    mend_model *m = load_feature_checked(src, "opt", feature);
    double relq = INFINITY;
    if (m && g.logits) {
        const double rel = logits_rel(m, &g, 0), rel1 = logits_rel(m, &g, 1);
        CHECK_MSG(rel <= 1e-4 && rel1 <= 1e-4, "opt.gguf: logits max |diff| / max |logit| = %.3g, by token %.3g",
                  rel, rel1);
        CHECK_ERR(compress_to(test_src(FX "opt"), out, MEND_TYPE_Q8_0, m->cfg.n_vocab), MEND_EUNSUPPORTED,
                  "is a directory; mend compress reads GGUF files");
        CHECK_OK(compress_to(src, out, MEND_TYPE_Q8_0, m->cfg.n_vocab));
        mend_model *q = load_feature_checked(out, "opt", feature);
        relq = q ? logits_rel(q, &g, 0) : INFINITY;
        CHECK_MSG(relq <= COMPRESSED_TOL, "opt q8_0: logits max |diff| / max |logit| = %.3g", relq);
        mend_model *qn = NULL;
        mend_load_opts on = {.keep_packed = 1};
        CHECK_OK(mend_model_load(&qn, out, &on));
        const double reln = qn ? logits_rel(qn, &g, 0) : INFINITY, reln1 = qn ? logits_rel(qn, &g, 1) : INFINITY;
        CHECK_MSG(reln <= COMPRESSED_TOL && reln1 <= COMPRESSED_TOL,
                  "opt q8_0, native kernels: logits max |diff| / max |logit| = %.3g, by token %.3g", reln, reln1);
        CHECK(qn && qn->layers_packed && qn->layers_packed[1].w_up.type == MEND_TYPE_Q8_0 &&
              qn->layers_packed[1].b_up && qn->layers[0].w_gate.data == NULL);
        printf("| %-8s | GGUF %.2e | GPTQ q8_0 %.2e (native kernels %.2e) |\n", "opt", rel, relq, reln);
        mend_model_free(qn);
        mend_model_free(q);
        /* what the writer copied */
        mend_gguf *a = NULL, *b = NULL;
        CHECK_OK(mend_gguf_open(&a, src));
        CHECK_OK(mend_gguf_open(&b, out));
        int kept = 0, quantized = 0, gate = 0;
        for (uint64_t i = 0; a && b && i < a->n_tensors; i++) {
            const gguf_tensor *ta = &a->tensors[i], *tb = mend_gguf_find_tensor(b, ta->name);
            const int matrix = strstr(ta->name, "blk.") && strstr(ta->name, ".weight") && ta->n_dims == 2;
            CHECK_MSG(tb != NULL, "opt q8_0: tensor '%s' was not written", ta->name);
            if (!tb) continue;
            if (matrix) quantized += tb->type == MEND_TYPE_Q8_0;
            else kept += tb->type == ta->type && tb->nbytes == ta->nbytes && !memcmp(tb->data, ta->data, ta->nbytes);
        }
        for (uint64_t i = 0; b && i < b->n_tensors; i++) gate += strstr(b->tensors[i].name, "ffn_gate") != NULL;
        /* token_embd, position_embd, output_norm.{weight,bias}, per layer 2 x 2 norm vectors and 6 biases */
        CHECK_MSG(kept == 4 + 2 * 10 && quantized == 2 * 6 && gate == 0 && b && b->n_tensors == a->n_tensors,
                  "opt q8_0: %d tensors copied as they were, %d quantized, %d gates", kept, quantized, gate);
        CHECK(b && mend_gguf_find_tensor(b, "position_embd.weight") && mend_gguf_find_tensor(b, "blk.1.ffn_down.bias"));
        mend_gguf_close(a);
        mend_gguf_close(b);
    }
    unlink(out);
    mend_model_free(m);
    free_golden(&g);
    return relq;
}

/* ---- GGUF refusals: a fixture rewritten with one tensor replaced (data,
 * n values of f32) or dropped (data NULL) ---- */

static int load_gguf_edited(const char *family, const char *tensor, const float *data, int64_t n, const char *out) {
    char src[256];
    snprintf(src, sizeof src, FX "%s.gguf", family);
    mend_gguf *g = NULL;
    mend_gguf_writer *w = NULL;
    int rc = mend_gguf_open(&g, test_src(src));
    if (!rc) rc = mend_gguf_writer_init(&w);
    if (!rc) rc = mend_gguf_writer_copy_kvs(w, g);
    for (uint64_t i = 0; !rc && i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (strcmp(t->name, tensor))
            rc = mend_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes);
        else if (data)
            rc = mend_gguf_writer_add_tensor(w, t->name, MEND_TYPE_F32, 1, &n, data, sizeof(float) * (size_t)n);
    }
    if (!rc) rc = mend_gguf_writer_write(w, out);
    mend_gguf_writer_free(w);
    mend_gguf_close(g);
    if (rc) return -1000;
    mend_model *m = NULL;
    mend_load_opts o = {.keep_packed = 0};
    rc = mend_model_load(&m, out, &o);
    mend_model_free(m);
    unlink(out);
    return rc;
}

static void check_gguf_refusals(void) {
    char out[512];
    snprintf(out, sizeof out, "%s/mend_families_%d_edit.gguf", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    const float three[3] = {1, 2, 3}, zero[8] = {1, 1, 1, 0, 8, 8, 8, 8};
    CHECK_ERR(load_gguf_edited("llama3", "rope_freqs.weight", three, 3, out), MEND_EFORMAT,
              "'rope_freqs.weight' is not 8 aligned f32 values");
    CHECK_ERR(load_gguf_edited("llama3", "rope_freqs.weight", zero, 8, out), MEND_EFORMAT, "value 3 is 0");
    CHECK_ERR(load_gguf_edited("qwen3", "blk.1.attn_k_norm.weight", NULL, 0, out), MEND_EFORMAT,
              "tensor 'blk.1.attn_k_norm.weight' is missing");
    CHECK_ERR(load_gguf_edited("opt", "position_embd.weight", NULL, 0, out), MEND_EFORMAT,
              "tensor 'position_embd.weight' is missing");
    CHECK_ERR(load_gguf_edited("opt", "position_embd.weight", three, 3, out), MEND_EFORMAT,
              "tensor 'position_embd.weight' has shape [3], expected [64, 256]");
    CHECK_ERR(load_gguf_edited("opt", "blk.1.ffn_up.bias", NULL, 0, out), MEND_EFORMAT,
              "tensor 'blk.1.ffn_up.bias' is missing");
    CHECK_ERR(load_gguf_edited("opt", "output_norm.bias", three, 3, out), MEND_EFORMAT,
              "tensor 'output_norm.bias' has shape [3], expected [64]");
}

int main(void) {
    const char *llama3 = "llama: GQA 4/2, rope norm base 10000 llama3-scaled (factor 8, low 1, high 4, original "
                         "context 64)",
               *qwen3 = "qwen3: GQA 4/2, QK-norm, rope neox base 1e+06",
               *mistral = "mistral: GQA 4/2, sliding window 4, rope norm base 10000",
               *phi3 = "phi3: GQA 4/2, fused qkv_proj and gate_up_proj (split at load), rope norm base 10000",
               *gemma3 = "gemma3: GQA 4/2, QK-norm, sliding window 4 on 1 of 2 layers (RoPE base 100 there), rope "
                         "neox base 1e+06, RMSNorm, post-norms, GeGLU (tanh), embeddings x 8, attention scale 0.2041, "
                         "tied embeddings",
               *gemma2 = "gemma2: GQA 4/2, sliding window 4 on 1 of 2 layers, rope neox base 10000, RMSNorm, "
                         "post-norms, GeGLU (tanh), embeddings x 8, attention scale 0.2041, "
                         "attention soft-cap 4, logit soft-cap 30, tied embeddings",
               *gemma2_gguf = "gemma2: GQA 4/2, sliding window 4 on 1 of 2 layers, rope neox base 10000, RMSNorm, "
                              "post-norms, GeGLU (tanh), embeddings x 8, attention scale 0.25, attention soft-cap 4, "
                              "logit soft-cap 30, tied embeddings",
               *opt = "opt: MHA 4 heads, biases on every linear map in the layers, learned positions (256, offset "
                      "2), LayerNorm with bias, ReLU MLP, tied embeddings",
               *opt_gguf = "opt: MHA 4 heads, biases on every linear map in the layers, learned positions (256), "
                           "LayerNorm with bias, ReLU MLP, tied embeddings",
               *llama3_gguf = "llama: GQA 4/2, rope norm base 10000 with per-frequency divisors (rope_freqs)";
    printf("| family   | mend info | max |dlogit| / max |logit| | loss rel | grad max err / max |grad| |\n");
    check_family("llama3", llama3);
    check_family("qwen3", qwen3);
    check_family("mistral", mistral);
    check_family("phi3", phi3);
    check_family("gemma2", gemma2);
    check_family("gemma3", gemma3);
    check_family("opt", opt);
    printf("| family   | f32 GGUF vs torch | compressed vs torch |\n");
    check_gguf_family("llama3", llama3_gguf);
    check_gguf_family("qwen3", qwen3);
    check_gguf_family("gemma2", gemma2_gguf);
    check_gguf_opt(opt_gguf);
    check_info(FX "llama3", llama3);
    check_info(FX "qwen3", qwen3);
    check_info(FX "mistral", mistral);
    check_info(FX "phi3", phi3);
    check_info(FX "gemma2", gemma2);
    check_info(FX "gemma3", gemma3);
    check_info(FX "opt", opt);
    check_info(FX "llama3.gguf", llama3_gguf);
    check_info(FX "qwen3.gguf", qwen3);
    check_info(FX "gemma2.gguf", gemma2_gguf);
    check_info(FX "opt.gguf", opt_gguf);
    check_features_matter();
    check_opt_positions_matter();
    check_rows_window();
    check_opt_positions();
    check_refusals();
    check_gguf_refusals();
    return test_finish();
}
