/* Load a model from a Hugging Face checkpoint directory: config.json +
 * model.safetensors (or shards listed in model.safetensors.index.json) +
 * tokenizer.json, read by io/hf.c.
 *
 * Every tensor is converted to f32 into one arena. HF's nn.Linear weight is
 * [out_features][in_features], which is mend_mat's row-major [rows][cols].
 *
 * RoPE layout: mend runs llama / mistral with the GGUF layout, rotating
 * adjacent pairs (x[2i], x[2i+1]). HF rotates halves (x[i], x[i + hd/2])
 * (rotate_half). Reordering the rows of q_proj and k_proj within each head,
 *   gguf row h*hd + 2*i + j  <-  hf row h*hd + j*hd/2 + i   (i < hd/2, j in {0,1}),
 * i.e. w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2), makes the pair rotation
 * equal HF's half rotation; this is the permutation the GGUF converters apply.
 * qwen2 keeps the HF layout and runs with MEND_ROPE_NEOX (plus q/k/v biases).
 *
 * OPT (OPTForCausalLM) has its own names under model.decoder. (or decoder.,
 * as the original checkpoints store them): embed_tokens, embed_positions,
 * layers.N.{self_attn_layer_norm, self_attn.{q,k,v,out}_proj, final_layer_norm,
 * fc1, fc2}.{weight,bias}, final_layer_norm; no RoPE. Its position table has
 * max_position_embeddings + 2 rows and position p reads row p + 2 (HF's
 * OPTLearnedPositionalEmbedding offset), so rows 2 .. are loaded as
 * cfg.pos_embd, whose row p is position p.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/hf.h"
#include "io/types.h"
#include "model/model.h"
#include "tok/tokenizer.h"
#include "util/util.h"

/* ---- config ---- */

_Static_assert(MEND_HF_MAX_LAYERS <= MEND_MAX_LAYERS, "config.json's layer limit fits mend_config");

typedef struct hf_arch {
    const char *hf_name, *arch;
    int rope_type, permute_qk, qkv_bias;
    int qk_norm;   /* q_norm / k_norm per head (qwen3) */
    int fused;     /* qkv_proj and gate_up_proj stored fused (phi3), split at load */
    int gemma;     /* Gemma 2 or 3 (the version): norms stored as w for (1 + w) around both sublayers,
                      GeGLU, scaled embeddings, soft-capping when configured */
} hf_arch;

static const hf_arch hf_archs[] = {
    {"LlamaForCausalLM", "llama", MEND_ROPE_NORM, 1, 0, 0, 0, 0},
    {"MistralForCausalLM", "mistral", MEND_ROPE_NORM, 1, 0, 0, 0, 0},
    {"Qwen2ForCausalLM", "qwen2", MEND_ROPE_NEOX, 0, 1, 0, 0, 0},
    {"Qwen3ForCausalLM", "qwen3", MEND_ROPE_NEOX, 0, 0, 1, 0, 0},
    {"Phi3ForCausalLM", "phi3", MEND_ROPE_NORM, 1, 0, 0, 1, 0},
    {"Gemma2ForCausalLM", "gemma2", MEND_ROPE_NEOX, 0, 0, 0, 0, 2},
    {"Gemma3ForCausalLM", "gemma3", MEND_ROPE_NEOX, 0, 0, 1, 0, 3},
    {"OPTForCausalLM", "opt", MEND_ROPE_NONE, 0, 1, 0, 0, 0},   /* config_from_opt, load_all_opt */
};

/* HF's OPTLearnedPositionalEmbedding: position p is row p + 2 of the table */
#define OPT_POS_OFFSET 2

/* Families mend knows but does not implement, and what they need. */
static const char *const hf_unsupported[][2] = {
    {"Gemma3ForConditionalGeneration", "the vision tower of Gemma 3's multimodal checkpoints; mend runs Gemma 3's "
                                       "text models (Gemma3ForCausalLM, or GGUF: scripts/fetch_model.sh "
                                       "gemma3-270m)"},
};

/* The family of an architecture name (mend_hf_accept_fn): ctx receives the
 * hf_arch entry; names mend does not run are refused here, before the
 * fields are read. */
static int accept_arch(const char *path, const char *an, void *ctx) {
    const hf_arch **arch = ctx;
    *arch = NULL;
    for (size_t i = 0; i < sizeof hf_archs / sizeof hf_archs[0]; i++)
        if (strcmp(an, hf_archs[i].hf_name) == 0) *arch = &hf_archs[i];
    if (*arch) return 0;
    for (size_t i = 0; i < sizeof hf_unsupported / sizeof hf_unsupported[0]; i++)
        if (strcmp(an, hf_unsupported[i][0]) == 0)
            return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'architectures' names '%s', which needs %s; "
                                  "mend does not implement these", path, an, hf_unsupported[i][1]);
    return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'architectures' names '%.64s'; mend supports "
                          "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
                          "Phi3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM and OPTForCausalLM", path, an);
}

/* Gemma 2's and 3's fields, with transformers' defaults where config.json
 * leaves them out: GeGLU with the tanh GELU (hidden_activation, or
 * hidden_act in older files), attention scale 1/sqrt(query_pre_attn_scalar)
 * (default 256), soft-capping when given; token embeddings times
 * sqrt(hidden_size) (transformers scales them in the embedding module, so
 * inputs_embeds such as a soft prompt are used as given); RMSNorm after
 * attention and after the MLP. Gemma 3 adds QK-norm (the hf_arch entry)
 * and its sliding layers' own RoPE base (rope_local_base_freq, or
 * rope_parameters.sliding_attention; default 10000). */
static int gemma_config(const mend_hf_config *h, const char *path, int version, mend_config *cfg) {
    const char *act = h->hidden_activation[0] ? h->hidden_activation : h->hidden_act;
    const char *field = h->hidden_activation[0] ? "hidden_activation" : "hidden_act";
    if (act[0] && strcmp(act, "gelu_pytorch_tanh") != 0)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field '%s' is \"%s\"; mend implements Gemma's MLP only "
                              "with \"gelu_pytorch_tanh\"", path, field, act);
    cfg->act = MEND_ACT_GELU_TANH;
    cfg->post_norms = 1;
    cfg->embd_scale = sqrtf((float)cfg->dim);
    const double qpas = h->query_pre_attn_scalar > 0 ? h->query_pre_attn_scalar : 256.0;
    cfg->attn_scale = (float)(1.0 / sqrt(qpas));
    cfg->attn_softcap = (float)h->attn_logit_softcapping;
    cfg->final_softcap = (float)h->final_logit_softcapping;
    if (version == 3) cfg->rope_theta_swa = h->rope_theta_local > 0 ? (float)h->rope_theta_local : 10000.0f;
    return 0;
}

static int is_opt(const hf_arch *A) { return strcmp(A->arch, "opt") == 0; }

/* OPT's config (OPTConfig): the pre-norm variant with LayerNorm weights and
 * biases, biases on every linear map, ReLU and no projection around the
 * decoder; each other variant is refused by the field that selects it. */
static int config_from_opt(const mend_hf_config *h, const char *path, mend_config *cfg) {
    snprintf(cfg->arch, sizeof cfg->arch, "opt");
    cfg->rope_type = MEND_ROPE_NONE;
    cfg->layer_norm = 1;
    cfg->ffn_plain = 1;
    cfg->act = MEND_ACT_RELU;
    cfg->dim = h->hidden_size;
    cfg->hidden_dim = h->ffn_dim;
    cfg->n_layers = h->num_hidden_layers;
    cfg->n_heads = h->num_attention_heads;
    cfg->n_kv_heads = h->num_key_value_heads;
    cfg->n_vocab = h->vocab_size;
    cfg->ctx_len = h->max_position_embeddings;
    cfg->n_pos = h->max_position_embeddings;
    cfg->pos_offset = OPT_POS_OFFSET;
    cfg->head_dim = h->head_dim;
    cfg->norm_eps = 1e-5f;   /* nn.LayerNorm's default; OPTConfig has no field for it */
    cfg->tied = h->has_tie_word_embeddings ? h->tie_word_embeddings : 1;   /* OPTConfig ties by default */
    if (!h->ffn_dim)
        return mend_set_error(MEND_EFORMAT, "%s: field 'ffn_dim' is missing (expected an integer)", path);
    if (cfg->n_kv_heads != cfg->n_heads || (int64_t)cfg->head_dim * cfg->n_heads != cfg->dim)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: fields 'num_key_value_heads' (%d) and 'head_dim' (%d) do "
                              "not describe OPT's multi-head attention over 'hidden_size' %d in %d heads", path,
                              cfg->n_kv_heads, cfg->head_dim, cfg->dim, cfg->n_heads);
    if (cfg->n_pos > (1 << 24))
        return mend_set_error(MEND_ERANGE, "%s: field 'max_position_embeddings' is %d, expected at most %d learned "
                              "positions", path, cfg->n_pos, 1 << 24);
    if (!h->do_layer_norm_before)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'do_layer_norm_before' is false (OPT-350m's LayerNorm "
                              "after each residual add); mend implements the pre-norm OPT layers only", path);
    if (h->word_embed_proj_dim && h->word_embed_proj_dim != h->hidden_size)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'word_embed_proj_dim' is %d, not 'hidden_size' %d: the "
                              "embeddings go through project_in / project_out, which mend does not implement", path,
                              h->word_embed_proj_dim, h->hidden_size);
    if (h->activation_function[0] && strcmp(h->activation_function, "relu") != 0)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'activation_function' is \"%s\"; mend implements "
                              "OPT's ReLU MLP only", path, h->activation_function);
    if (!h->enable_bias)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'enable_bias' is false; mend implements OPT with "
                              "biases on every linear map only", path);
    if (!h->layer_norm_elementwise_affine)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'layer_norm_elementwise_affine' is false; mend "
                              "implements OPT's LayerNorms with weight and bias only", path);
    if (h->remove_final_layer_norm)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field '_remove_final_layer_norm' is true; mend implements "
                              "OPT with its final LayerNorm only", path);
    return 0;
}

/* mend's config from config.json's fields for family A; the features mend
 * does not implement are refused rather than run a different model. */
static int config_from_hf(const mend_hf_config *h, const char *path, const hf_arch *A, mend_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    if (is_opt(A)) return config_from_opt(h, path, cfg);
    if (!h->intermediate_size)
        return mend_set_error(MEND_EFORMAT, "%s: field 'intermediate_size' is missing (expected an integer)", path);
    if (!(h->rms_norm_eps > 0))
        return mend_set_error(MEND_EFORMAT, "%s: field 'rms_norm_eps' is missing (expected a number)", path);
    snprintf(cfg->arch, sizeof cfg->arch, "%s", A->arch);
    cfg->rope_type = A->rope_type;
    cfg->qk_norm = A->qk_norm;
    cfg->dim = h->hidden_size;
    cfg->hidden_dim = h->intermediate_size;
    cfg->n_layers = h->num_hidden_layers;
    cfg->n_heads = h->num_attention_heads;
    cfg->n_kv_heads = h->num_key_value_heads;
    cfg->n_vocab = h->vocab_size;
    cfg->ctx_len = h->max_position_embeddings;
    cfg->head_dim = h->head_dim;
    cfg->norm_eps = (float)h->rms_norm_eps;
    cfg->rope_theta = (float)h->rope_theta;
    if (h->rope_llama3) {
        cfg->rope_scaling = MEND_ROPE_SCALING_LLAMA3;
        cfg->rope_factor = (float)h->rope_factor;
        cfg->rope_low_freq_factor = (float)h->rope_low_freq_factor;
        cfg->rope_high_freq_factor = (float)h->rope_high_freq_factor;
        cfg->rope_orig_ctx = h->rope_original_max_position_embeddings;
    }
    cfg->tied = h->tie_word_embeddings;
    if (cfg->head_dim % 2)
        return mend_set_error(MEND_EFORMAT, "%s: field 'head_dim' is %d; RoPE needs an even head size", path,
                              cfg->head_dim);
    if (cfg->n_heads % cfg->n_kv_heads)
        return mend_set_error(MEND_EFORMAT, "%s: field 'num_attention_heads' (%d) is not a multiple of "
                              "'num_key_value_heads' (%d)", path, cfg->n_heads, cfg->n_kv_heads);
    if (A->gemma) {
        int rc = gemma_config(h, path, A->gemma, cfg);
        if (rc) return rc;
    } else if (h->hidden_act[0] && strcmp(h->hidden_act, "silu") != 0) {
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'hidden_act' is not \"silu\"; mend implements "
                              "only the SiLU-gated MLP", path);
    }
    if (h->attention_bias && !A->qkv_bias)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'attention_bias' is true; mend supports attention "
                              "biases only for Qwen2ForCausalLM (q/k/v)", path);
    if (h->mlp_bias)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'mlp_bias' is true; mend has no MLP biases", path);
    if (h->use_bidirectional_attention)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'use_bidirectional_attention' is true; mend runs causal "
                              "attention only", path);
    /* Sliding windows: per layer from 'layer_types', or, without it, one
     * 'sliding_window' for every layer (mistral, phi3). qwen2 and qwen3 name a
     * window they do not use unless 'use_sliding_window' says so, and that
     * legacy switch without 'layer_types' is refused. */
    if (h->has_layer_types) {
        for (int l = 0; l < cfg->n_layers; l++) cfg->swa_window[l] = h->sliding[l] ? h->sliding_window : 0;
        return 0;
    }
    if (h->use_sliding_window)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'use_sliding_window' is true without 'layer_types'; "
                              "mend cannot tell which layers slide", path);
    if (strcmp(cfg->arch, "qwen2") == 0 || strcmp(cfg->arch, "qwen3") == 0) return 0;   /* off unless used */
    if (A->gemma) {   /* transformers' rules without layer_types: Gemma 2's layers 0, 2, 4, ... slide;
                         Gemma 3's all but every sliding_window_pattern-th (default 6) */
        const int w = h->sliding_window > 0 ? h->sliding_window : 4096;
        const int pattern = A->gemma == 2 ? 2 : h->sliding_window_pattern > 0 ? h->sliding_window_pattern : 6;
        for (int l = 0; l < cfg->n_layers; l++) cfg->swa_window[l] = (l + 1) % pattern ? w : 0;
        return 0;
    }
    for (int l = 0; l < cfg->n_layers && h->sliding_window > 0; l++) cfg->swa_window[l] = h->sliding_window;
    return 0;
}

/* ---- conversion into the arena ---- */

typedef struct hf_loader {
    const char *dir;
    mend_hf_weights w;
    const char *opt_prefix;       /* OPT's tensor name prefix: "model.decoder." or "decoder." */
    const mend_config *cfg;
    float *arena;
    size_t cap, used;             /* in floats */
    int norm_plus_one;            /* RMSNorm weights are stored as w for (1 + w) (Gemma) */
} hf_loader;

static float *arena_take(hf_loader *L, size_t n) {
    size_t at = (L->used + 15) & ~(size_t)15;   /* 64-byte aligned tensors */
    if (at > L->cap || n > L->cap - at) return NULL;
    L->used = at + n;
    return L->arena + at;
}

/* Element count of a tensor rounded up for the arena's alignment. */
static int arena_add(size_t *total, int64_t rows, int64_t cols) {
    size_t n;
    if (!mend_mul_ok((size_t)rows, (size_t)cols, &n) || !mend_add_ok(n, 15, &n)) return 0;
    return mend_add_ok(*total, n & ~(size_t)15, total);
}

/* A slice of a tensor to load: rows [row0, row0 + rows) of a tensor of
 * full_rows rows (a fused tensor's part), or the whole tensor. */
typedef struct hf_part {
    int64_t full_rows, row0;
} hf_part;

/* Load tensor `name` of shape [rows, cols] (cols == 0: a vector [rows]) as f32,
 * or the part P of it when P is given (the tensor then has P->full_rows rows).
 * perm_heads > 0 reorders rows from HF's half layout to the pair layout per
 * head of cfg->head_dim rows. why: which config fields give the shape. */
static int load_tensor(hf_loader *L, const char *name, int64_t rows, int64_t cols, const hf_part *P,
                       int perm_heads, const char *why, float **out) {
    const int64_t want_rows = P ? P->full_rows : rows, row0 = P ? P->row0 : 0;
    const mend_safetensors *st;
    const mend_st_tensor *t;
    int rc = mend_hf_weights_find(&L->w, name, &st, &t);
    if (rc) return rc;
    if (!t)
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' is missing from the checkpoint%s%s", L->dir, name,
                              L->w.index_path ? " (not in weight_map of " : "",
                              L->w.index_path ? "model.safetensors.index.json)" : "");
    int want_dims = cols ? 2 : 1;
    if (t->n_dims != want_dims || t->shape[0] != want_rows || (cols && t->shape[1] != cols)) {
        char got[160];
        size_t k = 0;
        k += (size_t)snprintf(got + k, sizeof got - k, "[");
        for (int i = 0; i < t->n_dims && k < sizeof got; i++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%" PRId64, i ? ", " : "", t->shape[i]);
        if (k < sizeof got) snprintf(got + k, sizeof got - k, "]");
        if (cols)
            return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' has shape %s, expected [%" PRId64 ", %" PRId64
                                  "] (%s from config.json)", st->path, name, got, want_rows, cols, why);
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' has shape %s, expected [%" PRId64 "] (%s from "
                              "config.json)", st->path, name, got, want_rows, why);
    }
    if (t->type < 0)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: tensor '%s' has dtype %s; mend reads only F32, F16 and "
                              "BF16", st->path, name, t->dtype);
    if (!L->arena) {   /* shape pass (load_weights): checked, nothing read */
        *out = NULL;
        return 0;
    }
    int64_t c = cols ? cols : 1;
    float *dst = arena_take(L, (size_t)(rows * c));
    if (!dst) return mend_set_error(MEND_ENOMEM, "%s: arena overflow loading '%s'", L->dir, name);
    if (perm_heads <= 0) {
        rc = mend_safetensors_read_f32(st, t, row0 * c, rows * c, dst);
    } else {
        const int64_t hd = L->cfg->head_dim, half = hd / 2;
        /* gguf row h*hd + 2i + j <- hf row h*hd + j*half + i */
        for (int64_t h = 0; h < perm_heads && !rc; h++)
            for (int64_t i = 0; i < half && !rc; i++)
                for (int64_t j = 0; j < 2 && !rc; j++)
                    rc = mend_safetensors_read_f32(st, t, (row0 + h * hd + j * half + i) * c, c,
                                                   dst + (h * hd + 2 * i + j) * c);
    }
    if (rc) return rc;
    *out = dst;
    return 0;
}

static int load_mat_part(hf_loader *L, const char *name, int64_t rows, int64_t cols, const hf_part *P,
                         int perm_heads, const char *why, mend_mat *m) {
    float *d;
    int rc = load_tensor(L, name, rows, cols, P, perm_heads, why, &d);
    if (rc) return rc;
    m->type = MEND_TYPE_F32;
    m->rows = rows;
    m->cols = cols;
    m->data = d;
    m->row_bytes = (size_t)cols * sizeof(float);
    return 0;
}

static int load_mat(hf_loader *L, const char *name, int64_t rows, int64_t cols, int perm_heads,
                    const char *why, mend_mat *m) {
    return load_mat_part(L, name, rows, cols, NULL, perm_heads, why, m);
}

static int load_vec(hf_loader *L, const char *name, int64_t n, const char *why, const float **v) {
    float *d;
    int rc = load_tensor(L, name, n, 0, NULL, 0, why, &d);
    if (rc == 0) *v = d;
    return rc;
}

/* An RMSNorm weight, as the plain RMSNorm applies it (1 + w for Gemma). */
static int load_norm(hf_loader *L, const char *name, int64_t n, const char *why, const float **v) {
    float *d;
    int rc = load_tensor(L, name, n, 0, NULL, 0, why, &d);
    if (rc) return rc;
    for (int64_t i = 0; d && L->norm_plus_one && i < n; i++) d[i] += 1.0f;
    *v = d;
    return 0;
}

/* Layer l's attention projections: separate q/k/v_proj, or one fused
 * qkv_proj whose rows are q, then k, then v (phi3). */
static int load_qkv(hf_loader *L, const mend_config *c, const hf_arch *A, int l, mend_layer *Y) {
    const int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const int perm_q = A->permute_qk ? c->n_heads : 0, perm_k = A->permute_qk ? c->n_kv_heads : 0;
    char n[128];
    int rc;
#define NAME(suffix) (snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix), n)
    if (A->fused) {
        const char *why = "(num_attention_heads + 2*num_key_value_heads)*head_dim, hidden_size";
        const hf_part pq = {qd + 2 * kvd, 0}, pk = {qd + 2 * kvd, qd}, pv = {qd + 2 * kvd, qd + kvd};
        if ((rc = load_mat_part(L, NAME("self_attn.qkv_proj.weight"), qd, dim, &pq, perm_q, why, &Y->wq)) ||
            (rc = load_mat_part(L, n, kvd, dim, &pk, perm_k, why, &Y->wk)) ||
            (rc = load_mat_part(L, n, kvd, dim, &pv, 0, why, &Y->wv)))
            return rc;
    } else if ((rc = load_mat(L, NAME("self_attn.q_proj.weight"), qd, dim, perm_q,
                              "num_attention_heads*head_dim, hidden_size", &Y->wq)) ||
               (rc = load_mat(L, NAME("self_attn.k_proj.weight"), kvd, dim, perm_k,
                              "num_key_value_heads*head_dim, hidden_size", &Y->wk)) ||
               (rc = load_mat(L, NAME("self_attn.v_proj.weight"), kvd, dim, 0,
                              "num_key_value_heads*head_dim, hidden_size", &Y->wv))) {
        return rc;
    }
    if (A->qkv_bias &&
        ((rc = load_vec(L, NAME("self_attn.q_proj.bias"), qd, "num_attention_heads*head_dim", &Y->bq)) ||
         (rc = load_vec(L, NAME("self_attn.k_proj.bias"), kvd, "num_key_value_heads*head_dim", &Y->bk)) ||
         (rc = load_vec(L, NAME("self_attn.v_proj.bias"), kvd, "num_key_value_heads*head_dim", &Y->bv))))
        return rc;
    if (A->qk_norm &&
        ((rc = load_norm(L, NAME("self_attn.q_norm.weight"), c->head_dim, "head_dim", &Y->q_norm)) ||
         (rc = load_norm(L, NAME("self_attn.k_norm.weight"), c->head_dim, "head_dim", &Y->k_norm))))
        return rc;
    return 0;
}

/* Layer l's gate and up projections: separate, or one fused gate_up_proj
 * whose rows are the gate's, then the up's (phi3). */
static int load_gate_up(hf_loader *L, const mend_config *c, const hf_arch *A, int l, mend_layer *Y) {
    const int64_t dim = c->dim, hid = c->hidden_dim;
    char n[128];
    int rc;
    if (A->fused) {
        const hf_part pg = {2 * hid, 0}, pu = {2 * hid, hid};
        const char *why = "2*intermediate_size, hidden_size";
        if ((rc = load_mat_part(L, NAME("mlp.gate_up_proj.weight"), hid, dim, &pg, 0, why, &Y->w_gate))) return rc;
        return load_mat_part(L, n, hid, dim, &pu, 0, why, &Y->w_up);
    }
    if ((rc = load_mat(L, NAME("mlp.gate_proj.weight"), hid, dim, 0, "intermediate_size, hidden_size", &Y->w_gate)))
        return rc;
    return load_mat(L, NAME("mlp.up_proj.weight"), hid, dim, 0, "intermediate_size, hidden_size", &Y->w_up);
}

/* OPT's tensors (load_all). */
static int load_all_opt(hf_loader *L, mend_model *m) {
    mend_config *c = &m->cfg;
    const int64_t dim = c->dim, hid = c->hidden_dim, nv = c->n_vocab;
    const char *P = L->opt_prefix;
    char n[160];
    int rc;
#define ONAME(...) (snprintf(n, sizeof n, __VA_ARGS__), n)
    if ((rc = load_mat(L, ONAME("%sembed_tokens.weight", P), nv, dim, 0, "vocab_size, hidden_size", &m->tok_embd)))
        return rc;
    /* rows [2, max_position_embeddings + 2): position p at row p */
    const hf_part pp = {c->n_pos + OPT_POS_OFFSET, OPT_POS_OFFSET};
    float *pos;
    if ((rc = load_tensor(L, ONAME("%sembed_positions.weight", P), c->n_pos, dim, &pp, 0,
                          "max_position_embeddings + 2, hidden_size", &pos)))
        return rc;
    c->pos_embd = pos;
    for (int l = 0; l < c->n_layers; l++) {
        mend_layer *Y = &m->layers[l];
        mend_mat *w[6] = {&Y->wq, &Y->wk, &Y->wv, &Y->wo, &Y->w_up, &Y->w_down};
        const float **b[6] = {&Y->bq, &Y->bk, &Y->bv, &Y->bo, &Y->b_up, &Y->b_down};
        static const char *const mat[6] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                           "self_attn.out_proj", "fc1", "fc2"};
        const int64_t rows[6] = {dim, dim, dim, dim, hid, dim}, cols[6] = {dim, dim, dim, dim, dim, hid};
        static const char *const why[6] = {"hidden_size, hidden_size", "hidden_size, hidden_size",
                                           "hidden_size, hidden_size", "hidden_size, hidden_size",
                                           "ffn_dim, hidden_size", "hidden_size, ffn_dim"};
        for (int i = 0; i < 6; i++)
            if ((rc = load_mat(L, ONAME("%slayers.%d.%s.weight", P, l, mat[i]), rows[i], cols[i], 0, why[i], w[i])) ||
                (rc = load_vec(L, ONAME("%slayers.%d.%s.bias", P, l, mat[i]), rows[i], i == 4 ? "ffn_dim" :
                               "hidden_size", b[i])))
                return rc;
        if ((rc = load_vec(L, ONAME("%slayers.%d.self_attn_layer_norm.weight", P, l), dim, "hidden_size",
                           &Y->attn_norm)) ||
            (rc = load_vec(L, ONAME("%slayers.%d.self_attn_layer_norm.bias", P, l), dim, "hidden_size",
                           &Y->attn_norm_b)) ||
            (rc = load_vec(L, ONAME("%slayers.%d.final_layer_norm.weight", P, l), dim, "hidden_size",
                           &Y->ffn_norm)) ||
            (rc = load_vec(L, ONAME("%slayers.%d.final_layer_norm.bias", P, l), dim, "hidden_size",
                           &Y->ffn_norm_b)))
            return rc;
    }
    if ((rc = load_vec(L, ONAME("%sfinal_layer_norm.weight", P), dim, "hidden_size", &m->out_norm)) ||
        (rc = load_vec(L, ONAME("%sfinal_layer_norm.bias", P), dim, "hidden_size", &m->out_norm_b)))
        return rc;
#undef ONAME
    if (c->tied) {
        m->output = m->tok_embd;
        return 0;
    }
    return load_mat(L, "lm_head.weight", nv, dim, 0, "vocab_size, hidden_size", &m->output);
}

/* Every tensor of the model into the arena; with L->arena NULL only the
 * presence, shape and dtype of each tensor are checked. */
static int load_all(hf_loader *L, mend_model *m, const hf_arch *A) {
    if (is_opt(A)) return load_all_opt(L, m);
    const mend_config *c = &m->cfg;
    const int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim, hid = c->hidden_dim, nv = c->n_vocab;
    int rc;
    if ((rc = load_mat(L, "model.embed_tokens.weight", nv, dim, 0, "vocab_size, hidden_size", &m->tok_embd)))
        return rc;
    for (int l = 0; l < c->n_layers; l++) {
        mend_layer *Y = &m->layers[l];
        char n[128];
        /* Gemma's post_attention_layernorm norms the attention output; the
         * others' is the MLP's input norm */
        const char *ffn_norm = A->gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight";
        if ((rc = load_norm(L, NAME("input_layernorm.weight"), dim, "hidden_size", &Y->attn_norm)) ||
            (rc = load_qkv(L, c, A, l, Y)) ||
            (rc = load_mat(L, NAME("self_attn.o_proj.weight"), dim, qd, 0,
                           "hidden_size, num_attention_heads*head_dim", &Y->wo)) ||
            (rc = load_norm(L, NAME(ffn_norm), dim, "hidden_size", &Y->ffn_norm)) ||
            (rc = load_gate_up(L, c, A, l, Y)) ||
            (rc = load_mat(L, NAME("mlp.down_proj.weight"), dim, hid, 0, "hidden_size, intermediate_size",
                           &Y->w_down)))
            return rc;
        if (A->gemma &&
            ((rc = load_norm(L, NAME("post_attention_layernorm.weight"), dim, "hidden_size", &Y->post_attn_norm)) ||
             (rc = load_norm(L, NAME("post_feedforward_layernorm.weight"), dim, "hidden_size", &Y->post_ffn_norm))))
            return rc;
    }
#undef NAME
    if ((rc = load_norm(L, "model.norm.weight", dim, "hidden_size", &m->out_norm))) return rc;
    if (c->tied) {
        m->output = m->tok_embd;
    } else if ((rc = load_mat(L, "lm_head.weight", nv, dim, 0, "vocab_size, hidden_size", &m->output))) {
        return rc;
    }
    return 0;
}

static int load_weights(hf_loader *L, mend_model *m, const hf_arch *A) {
    const mend_config *c = &m->cfg;
    const int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim,
                  kvd = (int64_t)c->n_kv_heads * c->head_dim, hid = c->hidden_dim, nv = c->n_vocab;
    /* arena size, overflow-checked (config limits keep each product < 2^62) */
    size_t total = 0;
    int ok = arena_add(&total, nv, dim) && arena_add(&total, dim, 1);
    if (!c->tied) ok = ok && arena_add(&total, nv, dim);
    if (is_opt(A)) {   /* positions, the final norm's bias; per layer four norm vectors, six biases, no gate */
        ok = ok && arena_add(&total, c->n_pos, dim) && arena_add(&total, dim, 1);
        for (int l = 0; l < c->n_layers && ok; l++)
            ok = arena_add(&total, dim, 1) && arena_add(&total, dim, 1) && arena_add(&total, dim, 1) &&
                 arena_add(&total, dim, 1) && arena_add(&total, qd, dim) && arena_add(&total, kvd, dim) &&
                 arena_add(&total, kvd, dim) && arena_add(&total, dim, qd) && arena_add(&total, hid, dim) &&
                 arena_add(&total, dim, hid) && arena_add(&total, qd, 1) && arena_add(&total, kvd, 1) &&
                 arena_add(&total, kvd, 1) && arena_add(&total, dim, 1) && arena_add(&total, hid, 1) &&
                 arena_add(&total, dim, 1);
    }
    for (int l = 0; l < c->n_layers && ok && !is_opt(A); l++) {
        ok = arena_add(&total, dim, 1) && arena_add(&total, dim, 1) && arena_add(&total, qd, dim) &&
             arena_add(&total, kvd, dim) && arena_add(&total, kvd, dim) && arena_add(&total, dim, qd) &&
             arena_add(&total, hid, dim) && arena_add(&total, hid, dim) && arena_add(&total, dim, hid);
        if (A->qkv_bias)
            ok = ok && arena_add(&total, qd, 1) && arena_add(&total, kvd, 1) && arena_add(&total, kvd, 1);
        if (A->qk_norm) ok = ok && arena_add(&total, c->head_dim, 1) && arena_add(&total, c->head_dim, 1);
        if (A->gemma) ok = ok && arena_add(&total, dim, 1) && arena_add(&total, dim, 1);
    }
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return mend_set_error(MEND_ENOMEM, "%s: out of memory", L->dir);
    /* shapes first, so a config.json that does not match the files is an
     * error naming the tensor before anything of its size is allocated */
    int rc = load_all(L, m, A);
    if (rc) return rc;
    size_t bytes;
    if (!ok || !mend_mul_ok(total, sizeof(float), &bytes))
        return mend_set_error(MEND_ERANGE, "%s: model size from config.json overflows", L->dir);
    void *arena = NULL;
    if (posix_memalign(&arena, 64, bytes ? bytes : 64) != 0)
        return mend_set_error(MEND_ENOMEM, "%s: cannot allocate %zu bytes for f32 weights", L->dir, bytes);
    m->arena = arena;
    m->arena_bytes = bytes;
    L->arena = arena;
    L->cap = total;
    L->used = 0;

    return load_all(L, m, A);
}

/* The fingerprint of the tensors as stored (mend_model_fingerprint): the
 * shards in the order of their file names, each shard's tensors in header
 * order. Computed here, while the shards are mapped. */
static int weights_fingerprint(const mend_hf_weights *w, const char *dir, uint64_t *out) {
    size_t n = 0;
    for (size_t i = 0; i < w->n_shards; i++) n += w->shards[i]->n_tensors;
    size_t *order = malloc((w->n_shards ? w->n_shards : 1) * sizeof *order);
    mend_fp_tensor *t = malloc((n ? n : 1) * sizeof *t);
    uint64_t *scratch = malloc((n ? n : 1) * sizeof *scratch);
    if (!order || !t || !scratch) {
        free(order);
        free(t);
        free(scratch);
        return mend_set_error(MEND_ENOMEM, "%s: out of memory hashing %zu tensors", dir, n);
    }
    for (size_t i = 0; i < w->n_shards; i++) {   /* insertion sort by name: a few shards */
        size_t j = i;
        for (; j > 0 && strcmp(w->shard_names[order[j - 1]], w->shard_names[i]) > 0; j--) order[j] = order[j - 1];
        order[j] = i;
    }
    size_t k = 0;
    for (size_t i = 0; i < w->n_shards; i++) {
        const mend_safetensors *st = w->shards[order[i]];
        for (size_t j = 0; j < st->n_tensors; j++, k++) {
            const mend_st_tensor *x = &st->tensors[j];
            const uint64_t type = x->type >= 0 ? (uint64_t)x->type : mend_hash_bytes(x->dtype, strlen(x->dtype), 0);
            t[k] = (mend_fp_tensor){type, x->n_dims, x->shape, x->data, x->nbytes};
        }
    }
    *out = mend_fp_of_tensors(t, n, scratch);
    free(order);
    free(t);
    free(scratch);
    return 0;
}

int mend_model_load_hf(mend_model **out, const char *dir, const mend_load_opts *opts) {
    (void)opts;   /* HF weights are always converted to f32 */
    if (!out || !dir) return mend_set_error(MEND_EINVAL, "mend_model_load_hf: NULL argument");
    *out = NULL;
    if (!mend_is_dir(dir))
        return mend_set_error(MEND_EIO, "%s: not a directory (expected a Hugging Face model directory)", dir);
    mend_model *m = calloc(1, sizeof *m);
    if (!m) return mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
    hf_loader L;
    memset(&L, 0, sizeof L);
    L.dir = dir;
    L.cfg = &m->cfg;
    char *cfg_path = mend_path_join(dir, "config.json");
    char *tok_path = mend_path_join(dir, "tokenizer.json");
    char *tokcfg_path = mend_path_join(dir, "tokenizer_config.json");
    m->path = mend_strdup(dir);
    mend_hf_config *hc = NULL;
    int rc = 0;
    if (!cfg_path || !tok_path || !tokcfg_path || !m->path) {
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    const hf_arch *A = NULL;
    if (!(hc = malloc(sizeof *hc))) {
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    if ((rc = mend_hf_config_read(cfg_path, accept_arch, &A, hc)) ||
        (rc = config_from_hf(hc, cfg_path, A, &m->cfg)))
        goto done;
    if ((rc = mend_hf_weights_open(&L.w, dir))) goto done;
    L.norm_plus_one = A->gemma;

    /* OPT's names: model.decoder.*, or decoder.* as the original checkpoints have them */
    const mend_safetensors *st;
    const mend_st_tensor *probe;
    if (is_opt(A)) {
        if ((rc = mend_hf_weights_find(&L.w, "model.decoder.embed_tokens.weight", &st, &probe))) goto done;
        L.opt_prefix = probe ? "model.decoder." : "decoder.";
        if (!probe && (rc = mend_hf_weights_find(&L.w, "decoder.embed_tokens.weight", &st, &probe))) goto done;
        if (!probe) L.opt_prefix = "model.decoder.";   /* neither: the error names the usual one */
    }
    /* tie when the config says so or when there is no separate head */
    const mend_st_tensor *head;
    if ((rc = mend_hf_weights_find(&L.w, "lm_head.weight", &st, &head))) goto done;
    if (!head) m->cfg.tied = 1;
    if ((rc = load_weights(&L, m, A))) goto done;
    if ((rc = weights_fingerprint(&L.w, dir, &m->fingerprint))) goto done;
    m->has_fingerprint = 1;

    if ((rc = mend_tokenizer_from_json(&m->tok, tok_path,
                                       mend_file_exists(tokcfg_path) ? tokcfg_path : NULL)))
        goto done;
    int ntok = mend_tokenizer_n_vocab(m->tok);
    if (ntok > m->cfg.n_vocab) {
        rc = mend_set_error(MEND_EFORMAT, "%s: has %d tokens, more than 'vocab_size' %d in %s", tok_path, ntok,
                            m->cfg.n_vocab, cfg_path);
        goto done;
    }
    rc = mend_model_validate(m);
done:
    mend_hf_weights_close(&L.w);
    free(hc);
    free(cfg_path);
    free(tok_path);
    free(tokcfg_path);
    if (rc) {
        mend_model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}
