/* Hugging Face checkpoint directories: config.json + model.safetensors (or
 * shards listed in model.safetensors.index.json) + tokenizer.json.
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
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "io/safetensors.h"
#include "kernels/quants.h"
#include "model/model.h"
#include "tok/tokenizer.h"
#include "util/util.h"

#define HF_MAX_JSON   (64u << 20)
#define HF_MAX_DIM    (1 << 20)
#define HF_MAX_VOCAB  (1 << 24)
#define HF_MAX_LAYERS 4096
#define HF_MAX_HEADS  4096

/* ---- config.json ---- */

typedef struct hf_arch {
    const char *hf_name, *arch;
    int rope_type, permute_qk, qkv_bias;
    int qk_norm;   /* q_norm / k_norm per head (qwen3) */
    int fused;     /* qkv_proj and gate_up_proj stored fused (phi3), split at load */
} hf_arch;

static const hf_arch hf_archs[] = {
    {"LlamaForCausalLM", "llama", MEND_ROPE_NORM, 1, 0, 0, 0},
    {"MistralForCausalLM", "mistral", MEND_ROPE_NORM, 1, 0, 0, 0},
    {"Qwen2ForCausalLM", "qwen2", MEND_ROPE_NEOX, 0, 1, 0, 0},
    {"Qwen3ForCausalLM", "qwen3", MEND_ROPE_NEOX, 0, 0, 1, 0},
    {"Phi3ForCausalLM", "phi3", MEND_ROPE_NORM, 1, 0, 0, 1},
};

/* Families mend knows but does not implement, and what they need. */
static const char *const hf_unsupported[][2] = {
    {"Gemma2ForCausalLM", "attention and final logit soft-capping, pre/post norms, GeGLU, sqrt(hidden) "
                          "embedding scale and query_pre_attn_scalar"},
    {"OPTForCausalLM", "LayerNorm with bias, learned positions offset by 2, ReLU MLP and biases on every "
                       "linear map"},
};

static int cfg_int(const json_t *root, const char *path, const char *key, int required, int def,
                   int lo, int hi, int *out) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required)
            return mend_set_error(MEND_EFORMAT, "%s: field '%s' is missing (expected an integer)", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v))
        return mend_set_error(MEND_EFORMAT, "%s: field '%s' is not an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return mend_set_error(MEND_ERANGE, "%s: field '%s' is %lld, expected %d..%d", path, key,
                              (long long)x, lo, hi);
    *out = (int)x;
    return 0;
}

static int cfg_num(const json_t *root, const char *path, const char *key, int required, double def,
                   double *out) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required)
            return mend_set_error(MEND_EFORMAT, "%s: field '%s' is missing (expected a number)", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return mend_set_error(MEND_EFORMAT, "%s: field '%s' is not a number", path, key);
    double x = json_number_value(v);
    if (!isfinite(x) || x <= 0)
        return mend_set_error(MEND_ERANGE, "%s: field '%s' is %g, expected a positive number", path, key, x);
    *out = x;
    return 0;
}

static int cfg_bool(const json_t *root, const char *path, const char *key, int def, int *out) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return mend_set_error(MEND_EFORMAT, "%s: field '%s' is not true or false", path, key);
    *out = json_is_true(v);
    return 0;
}

/* RoPE: base and scaling from 'rope_parameters' (transformers 5) or
 * 'rope_theta' and 'rope_scaling' (earlier files). Types other than
 * default and llama3, and partial rotary factors, are refused by name. */
static int parse_rope(const json_t *root, const char *path, mend_config *cfg) {
    const char *key = "rope_parameters";
    const json_t *rp = json_object_get(root, key);
    if (!rp || json_is_null(rp)) rp = json_object_get(root, key = "rope_scaling");
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return mend_set_error(MEND_EFORMAT, "%s: field '%s' is not an object", path, key);
    if (json_is_null(rp)) rp = NULL;
    double theta, x;
    int rc = cfg_num(root, path, "rope_theta", 0, 10000.0, &theta);
    if (!rc && rp && json_object_get(rp, "rope_theta")) rc = cfg_num(rp, path, "rope_theta", 1, 0, &theta);
    if (rc) return rc;
    cfg->rope_theta = (float)theta;
    const json_t *pr = rp ? json_object_get(rp, "partial_rotary_factor") : NULL;
    if (!pr) pr = json_object_get(root, "partial_rotary_factor");
    if (pr && !json_is_null(pr) && (!json_is_number(pr) || json_number_value(pr) != 1.0))
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'partial_rotary_factor' is %g; mend rotates whole "
                              "heads only (1.0)", path, json_is_number(pr) ? json_number_value(pr) : NAN);
    if (!rp) return 0;
    const char *ty = json_string_value(json_object_get(rp, "rope_type"));
    if (!ty) ty = json_string_value(json_object_get(rp, "type"));
    if (!ty)
        return mend_set_error(MEND_EFORMAT, "%s: field '%s' has no string 'rope_type'", path, key);
    if (strcmp(ty, "default") == 0) return 0;
    if (strcmp(ty, "llama3") != 0)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field '%s' has rope_type '%.32s'; mend implements RoPE "
                              "types \"default\" and \"llama3\"", path, key, ty);
    cfg->rope_scaling = MEND_ROPE_SCALING_LLAMA3;
    if ((rc = cfg_num(rp, path, "factor", 1, 0, &x))) return rc;
    cfg->rope_factor = (float)x;
    if ((rc = cfg_num(rp, path, "low_freq_factor", 1, 0, &x))) return rc;
    cfg->rope_low_freq_factor = (float)x;
    if ((rc = cfg_num(rp, path, "high_freq_factor", 1, 0, &x))) return rc;
    cfg->rope_high_freq_factor = (float)x;
    if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor))
        return mend_set_error(MEND_ERANGE, "%s: field '%s': high_freq_factor %g is not above low_freq_factor %g",
                              path, key, (double)cfg->rope_high_freq_factor, (double)cfg->rope_low_freq_factor);
    return cfg_int(rp, path, "original_max_position_embeddings", 1, 0, 1, 1 << 30, &cfg->rope_orig_ctx);
}

/* Sliding windows: 'layer_types' (transformers 5: "sliding_attention" or
 * "full_attention" per layer) with 'sliding_window', or, without it, a
 * 'sliding_window' for every layer (mistral, phi3). The legacy qwen2 switch
 * 'use_sliding_window' without 'layer_types' is refused. */
static int parse_windows(const json_t *root, const char *path, mend_config *cfg) {
    int w = 0, use = 0, rc;
    if ((rc = cfg_int(root, path, "sliding_window", 0, 0, 0, 1 << 30, &w))) return rc;
    const json_t *lt = json_object_get(root, "layer_types");
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || json_array_size(lt) != (size_t)cfg->n_layers)
            return mend_set_error(MEND_EFORMAT, "%s: field 'layer_types' is not an array of %d strings", path,
                                  cfg->n_layers);
        for (int l = 0; l < cfg->n_layers; l++) {
            const char *t = json_string_value(json_array_get(lt, (size_t)l));
            if (t && strcmp(t, "full_attention") == 0) continue;
            if (!t || strcmp(t, "sliding_attention") != 0)
                return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'layer_types' entry %d is '%.32s'; mend "
                                      "implements \"full_attention\" and \"sliding_attention\"", path, l,
                                      t ? t : "(not a string)");
            if (w < 1)
                return mend_set_error(MEND_EFORMAT, "%s: field 'layer_types' entry %d is \"sliding_attention\" "
                                      "but 'sliding_window' is not a positive integer", path, l);
            cfg->swa_window[l] = w;
        }
        return 0;
    }
    if ((rc = cfg_bool(root, path, "use_sliding_window", 0, &use))) return rc;
    if (use)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'use_sliding_window' is true without 'layer_types'; "
                              "mend cannot tell which layers slide", path);
    if (strcmp(cfg->arch, "qwen2") == 0 || strcmp(cfg->arch, "qwen3") == 0) return 0;   /* off unless used */
    for (int l = 0; l < cfg->n_layers && w > 0; l++) cfg->swa_window[l] = w;
    return 0;
}

/* Fill cfg from config.json; *arch gets the architecture entry. */
static int parse_config(const char *path, mend_config *cfg, const hf_arch **arch) {
    char *text = NULL;
    size_t len = 0;
    int rc = mend_read_file(path, HF_MAX_JSON, &text, &len);
    if (rc) return rc;
    json_error_t err;
    json_t *root = json_loadb(text, len, 0, &err);
    free(text);
    if (!root)
        return mend_set_error(MEND_EFORMAT, "%s: not valid JSON: %s (line %d, column %d)", path, err.text,
                              err.line, err.column);
    if (!json_is_object(root)) {
        rc = mend_set_error(MEND_EFORMAT, "%s: expected a JSON object at the top level", path);
        goto done;
    }

    const json_t *ja = json_object_get(root, "architectures");
    const char *an = NULL;
    if (json_is_array(ja) && json_array_size(ja) >= 1) an = json_string_value(json_array_get(ja, 0));
    if (!an) {
        rc = mend_set_error(MEND_EFORMAT, "%s: field 'architectures' is missing or not an array of strings "
                            "(expected e.g. [\"LlamaForCausalLM\"])", path);
        goto done;
    }
    *arch = NULL;
    for (size_t i = 0; i < sizeof hf_archs / sizeof hf_archs[0]; i++)
        if (strcmp(an, hf_archs[i].hf_name) == 0) *arch = &hf_archs[i];
    if (!*arch) {
        for (size_t i = 0; i < sizeof hf_unsupported / sizeof hf_unsupported[0]; i++)
            if (strcmp(an, hf_unsupported[i][0]) == 0) {
                rc = mend_set_error(MEND_EUNSUPPORTED, "%s: field 'architectures' names '%s', which needs %s; "
                                    "mend does not implement these", path, an, hf_unsupported[i][1]);
                goto done;
            }
        rc = mend_set_error(MEND_EUNSUPPORTED, "%s: field 'architectures' names '%.64s'; mend supports "
                            "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM and "
                            "Phi3ForCausalLM", path, an);
        goto done;
    }
    const hf_arch *A = *arch;
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->arch, sizeof cfg->arch, "%s", A->arch);
    cfg->rope_type = A->rope_type;
    cfg->qk_norm = A->qk_norm;

    if ((rc = cfg_int(root, path, "hidden_size", 1, 0, 1, HF_MAX_DIM, &cfg->dim)) ||
        (rc = cfg_int(root, path, "intermediate_size", 1, 0, 1, HF_MAX_DIM, &cfg->hidden_dim)) ||
        (rc = cfg_int(root, path, "num_hidden_layers", 1, 0, 1, HF_MAX_LAYERS, &cfg->n_layers)) ||
        (rc = cfg_int(root, path, "num_attention_heads", 1, 0, 1, HF_MAX_HEADS, &cfg->n_heads)) ||
        (rc = cfg_int(root, path, "num_key_value_heads", 0, cfg->n_heads, 1, HF_MAX_HEADS, &cfg->n_kv_heads)) ||
        (rc = cfg_int(root, path, "vocab_size", 1, 0, 1, HF_MAX_VOCAB, &cfg->n_vocab)) ||
        (rc = cfg_int(root, path, "max_position_embeddings", 0, 2048, 1, 1 << 30, &cfg->ctx_len)))
        goto done;
    if (cfg->dim % cfg->n_heads && !json_is_integer(json_object_get(root, "head_dim"))) {
        rc = mend_set_error(MEND_EFORMAT, "%s: field 'hidden_size' (%d) is not a multiple of "
                            "'num_attention_heads' (%d) and 'head_dim' is not given", path, cfg->dim, cfg->n_heads);
        goto done;
    }
    if ((rc = cfg_int(root, path, "head_dim", 0, cfg->dim / cfg->n_heads, 2, 4096, &cfg->head_dim))) goto done;
    if (cfg->head_dim % 2) {
        rc = mend_set_error(MEND_EFORMAT, "%s: field 'head_dim' is %d; RoPE needs an even head size", path,
                            cfg->head_dim);
        goto done;
    }
    if (cfg->n_heads % cfg->n_kv_heads) {
        rc = mend_set_error(MEND_EFORMAT, "%s: field 'num_attention_heads' (%d) is not a multiple of "
                            "'num_key_value_heads' (%d)", path, cfg->n_heads, cfg->n_kv_heads);
        goto done;
    }
    double eps;
    if ((rc = cfg_num(root, path, "rms_norm_eps", 1, 0, &eps))) goto done;
    if (eps >= 1) {
        rc = mend_set_error(MEND_ERANGE, "%s: field 'rms_norm_eps' is %g, expected a small positive number",
                            path, eps);
        goto done;
    }
    cfg->norm_eps = (float)eps;
    if ((rc = parse_rope(root, path, cfg))) goto done;
    if ((rc = cfg_bool(root, path, "tie_word_embeddings", 0, &cfg->tied))) goto done;

    /* features mend does not implement: refuse rather than run a different model */
    const json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act) && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0)) {
        rc = mend_set_error(MEND_EUNSUPPORTED, "%s: field 'hidden_act' is not \"silu\"; mend implements "
                            "only the SiLU-gated MLP", path);
        goto done;
    }
    int b;
    if ((rc = cfg_bool(root, path, "attention_bias", 0, &b))) goto done;
    if (b && !A->qkv_bias) {
        rc = mend_set_error(MEND_EUNSUPPORTED, "%s: field 'attention_bias' is true; mend supports attention "
                            "biases only for Qwen2ForCausalLM (q/k/v)", path);
        goto done;
    }
    if ((rc = cfg_bool(root, path, "mlp_bias", 0, &b))) goto done;
    if (b) {
        rc = mend_set_error(MEND_EUNSUPPORTED, "%s: field 'mlp_bias' is true; mend has no MLP biases", path);
        goto done;
    }
    rc = parse_windows(root, path, cfg);
done:
    json_decref(root);
    return rc;
}

/* ---- weights: one file or shards ---- */

typedef struct hf_weights {
    char *index_path;             /* NULL for a single model.safetensors */
    json_t *weight_map;           /* name -> shard file name (owned by index root) */
    json_t *index_root;
    size_t n_shards;
    char **shard_names;
    mend_safetensors **shards;
} hf_weights;

static void weights_close(hf_weights *w) {
    for (size_t i = 0; i < w->n_shards; i++) {
        mend_safetensors_close(w->shards[i]);
        free(w->shard_names[i]);
    }
    free(w->shards);
    free(w->shard_names);
    json_decref(w->index_root);
    free(w->index_path);
    memset(w, 0, sizeof *w);
}

static int add_shard(hf_weights *w, const char *dir, const char *name) {
    for (size_t i = 0; i < w->n_shards; i++)
        if (strcmp(w->shard_names[i], name) == 0) return 0;
    char **nn = realloc(w->shard_names, (w->n_shards + 1) * sizeof *nn);
    if (!nn) return mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
    w->shard_names = nn;
    mend_safetensors **ns = realloc(w->shards, (w->n_shards + 1) * sizeof *ns);
    if (!ns) return mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
    w->shards = ns;
    char *path = mend_path_join(dir, name);
    char *copy = mend_strdup(name);
    if (!path || !copy) {
        free(path);
        free(copy);
        return mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
    }
    mend_safetensors *st = NULL;
    int rc = mend_safetensors_open(&st, path);
    free(path);
    if (rc) {
        free(copy);
        if (w->index_path)
            return mend_error_prefix(rc, "%s: weight_map shard '%s'", w->index_path, name);
        return rc;
    }
    w->shard_names[w->n_shards] = copy;
    w->shards[w->n_shards] = st;
    w->n_shards++;
    return 0;
}

static int weights_open(hf_weights *w, const char *dir) {
    memset(w, 0, sizeof *w);
    char *index = mend_path_join(dir, "model.safetensors.index.json");
    if (!index) return mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
    if (!mend_file_exists(index)) {
        free(index);
        char *single = mend_path_join(dir, "model.safetensors");
        if (!single) return mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
        int exists = mend_file_exists(single);
        free(single);
        if (!exists)
            return mend_set_error(MEND_EIO, "%s: no model.safetensors or model.safetensors.index.json "
                                  "(expected Hugging Face safetensors weights)", dir);
        return add_shard(w, dir, "model.safetensors");
    }
    w->index_path = index;
    char *text = NULL;
    size_t len = 0;
    int rc = mend_read_file(index, HF_MAX_JSON, &text, &len);
    if (rc) return rc;
    json_error_t err;
    w->index_root = json_loadb(text, len, 0, &err);
    free(text);
    if (!w->index_root)
        return mend_set_error(MEND_EFORMAT, "%s: not valid JSON: %s (line %d, column %d)", index, err.text,
                              err.line, err.column);
    w->weight_map = json_object_get(w->index_root, "weight_map");
    if (!json_is_object(w->weight_map))
        return mend_set_error(MEND_EFORMAT, "%s: field 'weight_map' is missing or not an object", index);
    const char *key;
    json_t *val;
    json_object_foreach(w->weight_map, key, val) {
        const char *f = json_string_value(val);
        if (!f || !f[0] || strchr(f, '/') || strcmp(f, "..") == 0 || strcmp(f, ".") == 0)
            return mend_set_error(MEND_EFORMAT, "%s: field 'weight_map' entry '%s' is not a plain file name",
                                  index, key);
        if ((rc = add_shard(w, dir, f))) return rc;
    }
    if (w->n_shards == 0)
        return mend_set_error(MEND_EFORMAT, "%s: field 'weight_map' lists no tensors", index);
    return 0;
}

/* Find a tensor; 0 and *t / *st set when found, 0 and *t NULL when absent. */
static int weights_find(const hf_weights *w, const char *name, const mend_safetensors **st,
                        const mend_st_tensor **t) {
    *st = NULL;
    *t = NULL;
    if (w->weight_map) {
        const char *f = json_string_value(json_object_get(w->weight_map, name));
        if (!f) return 0;
        for (size_t i = 0; i < w->n_shards; i++) {
            if (strcmp(w->shard_names[i], f) != 0) continue;
            *t = mend_safetensors_find(w->shards[i], name);
            *st = w->shards[i];
            if (!*t)
                return mend_set_error(MEND_EFORMAT, "%s: field 'weight_map' puts tensor '%s' in '%s', which "
                                      "does not contain it", w->index_path, name, f);
            return 0;
        }
        return 0;
    }
    for (size_t i = 0; i < w->n_shards; i++) {
        const mend_st_tensor *x = mend_safetensors_find(w->shards[i], name);
        if (x) {
            *t = x;
            *st = w->shards[i];
            return 0;
        }
    }
    return 0;
}

/* ---- conversion into the arena ---- */

typedef struct hf_loader {
    const char *dir;
    hf_weights w;
    const mend_config *cfg;
    float *arena;
    size_t cap, used;             /* in floats */
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
    int rc = weights_find(&L->w, name, &st, &t);
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
        ((rc = load_vec(L, NAME("self_attn.q_norm.weight"), c->head_dim, "head_dim", &Y->q_norm)) ||
         (rc = load_vec(L, NAME("self_attn.k_norm.weight"), c->head_dim, "head_dim", &Y->k_norm))))
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

/* Every tensor of the model into the arena; with L->arena NULL only the
 * presence, shape and dtype of each tensor are checked. */
static int load_all(hf_loader *L, mend_model *m, const hf_arch *A) {
    const mend_config *c = &m->cfg;
    const int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim, hid = c->hidden_dim, nv = c->n_vocab;
    int rc;
    if ((rc = load_mat(L, "model.embed_tokens.weight", nv, dim, 0, "vocab_size, hidden_size", &m->tok_embd)))
        return rc;
    for (int l = 0; l < c->n_layers; l++) {
        mend_layer *Y = &m->layers[l];
        char n[128];
        if ((rc = load_vec(L, NAME("input_layernorm.weight"), dim, "hidden_size", &Y->attn_norm)) ||
            (rc = load_qkv(L, c, A, l, Y)) ||
            (rc = load_mat(L, NAME("self_attn.o_proj.weight"), dim, qd, 0,
                           "hidden_size, num_attention_heads*head_dim", &Y->wo)) ||
            (rc = load_vec(L, NAME("post_attention_layernorm.weight"), dim, "hidden_size", &Y->ffn_norm)) ||
            (rc = load_gate_up(L, c, A, l, Y)) ||
            (rc = load_mat(L, NAME("mlp.down_proj.weight"), dim, hid, 0, "hidden_size, intermediate_size",
                           &Y->w_down)))
            return rc;
    }
#undef NAME
    if ((rc = load_vec(L, "model.norm.weight", dim, "hidden_size", &m->out_norm))) return rc;
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
    for (int l = 0; l < c->n_layers && ok; l++) {
        ok = arena_add(&total, dim, 1) && arena_add(&total, dim, 1) && arena_add(&total, qd, dim) &&
             arena_add(&total, kvd, dim) && arena_add(&total, kvd, dim) && arena_add(&total, dim, qd) &&
             arena_add(&total, hid, dim) && arena_add(&total, hid, dim) && arena_add(&total, dim, hid);
        if (A->qkv_bias)
            ok = ok && arena_add(&total, qd, 1) && arena_add(&total, kvd, 1) && arena_add(&total, kvd, 1);
        if (A->qk_norm) ok = ok && arena_add(&total, c->head_dim, 1) && arena_add(&total, c->head_dim, 1);
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
static int weights_fingerprint(const hf_weights *w, const char *dir, uint64_t *out) {
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
    int rc = 0;
    if (!cfg_path || !tok_path || !tokcfg_path || !m->path) {
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    const hf_arch *A = NULL;
    if ((rc = parse_config(cfg_path, &m->cfg, &A))) goto done;
    if ((rc = weights_open(&L.w, dir))) goto done;

    /* tie when the config says so or when there is no separate head */
    const mend_safetensors *st;
    const mend_st_tensor *head;
    if ((rc = weights_find(&L.w, "lm_head.weight", &st, &head))) goto done;
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
    weights_close(&L.w);
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
