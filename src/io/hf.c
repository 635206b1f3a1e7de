/* Hugging Face checkpoint directories as files: config.json into
 * mend_hf_config, and the safetensors weights (one file or the shards of
 * model.safetensors.index.json). Everything here is about the format: which
 * families mend runs and how their tensors become a model is
 * model/load_hf.c's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "io/hf.h"
#include "util/util.h"

/* ---- config.json ---- */

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

/* An optional string field into buf ("" when absent or null; a longer value is cut). */
static int cfg_str(const json_t *root, const char *path, const char *key, char *buf, size_t n) {
    const json_t *v = json_object_get(root, key);
    buf[0] = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return mend_set_error(MEND_EFORMAT, "%s: field '%s' is not a string", path, key);
    snprintf(buf, n, "%s", json_string_value(v));
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
static int parse_rope(const json_t *root, const char *path, mend_hf_config *cfg) {
    const char *key = "rope_parameters";
    const json_t *rp = json_object_get(root, key);
    if (!rp || json_is_null(rp)) rp = json_object_get(root, key = "rope_scaling");
    if (rp && !json_is_null(rp) && !json_is_object(rp))
        return mend_set_error(MEND_EFORMAT, "%s: field '%s' is not an object", path, key);
    if (json_is_null(rp)) rp = NULL;
    int rc = 0;
    const json_t *full = rp ? json_object_get(rp, "full_attention") : NULL;
    if (json_is_object(full)) {   /* one RoPE object per layer type */
        const json_t *sl = json_object_get(rp, "sliding_attention");
        if (sl && !json_is_object(sl))
            return mend_set_error(MEND_EFORMAT, "%s: field '%s.sliding_attention' is not an object", path, key);
        if (sl) {
            const char *st = json_string_value(json_object_get(sl, "rope_type"));
            if (st && strcmp(st, "default") != 0)
                return mend_set_error(MEND_EUNSUPPORTED, "%s: field '%s.sliding_attention' has rope_type '%.32s'; "
                                      "mend implements the sliding layers' RoPE only unscaled (\"default\")", path,
                                      key, st);
            if ((rc = cfg_num(sl, path, "rope_theta", 1, 0, &cfg->rope_theta_local))) return rc;
        }
        rp = full;
        key = "rope_parameters.full_attention";
    } else if ((rc = cfg_num(root, path, "rope_local_base_freq", 0, 0.0, &cfg->rope_theta_local))) {
        return rc;
    }
    rc = cfg_num(root, path, "rope_theta", 0, 10000.0, &cfg->rope_theta);
    if (!rc && rp && json_object_get(rp, "rope_theta")) rc = cfg_num(rp, path, "rope_theta", 1, 0, &cfg->rope_theta);
    if (rc) return rc;
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
    cfg->rope_llama3 = 1;
    if ((rc = cfg_num(rp, path, "factor", 1, 0, &cfg->rope_factor)) ||
        (rc = cfg_num(rp, path, "low_freq_factor", 1, 0, &cfg->rope_low_freq_factor)) ||
        (rc = cfg_num(rp, path, "high_freq_factor", 1, 0, &cfg->rope_high_freq_factor)))
        return rc;
    if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor))
        return mend_set_error(MEND_ERANGE, "%s: field '%s': high_freq_factor %g is not above low_freq_factor %g",
                              path, key, cfg->rope_high_freq_factor, cfg->rope_low_freq_factor);
    return cfg_int(rp, path, "original_max_position_embeddings", 1, 0, 1, 1 << 30,
                   &cfg->rope_original_max_position_embeddings);
}

/* Sliding windows: 'sliding_window', 'use_sliding_window' and, when given,
 * 'layer_types' (one "sliding_attention" or "full_attention" per layer). */
static int parse_windows(const json_t *root, const char *path, mend_hf_config *cfg) {
    int rc;
    if ((rc = cfg_int(root, path, "sliding_window", 0, 0, 0, 1 << 30, &cfg->sliding_window)) ||
        (rc = cfg_int(root, path, "sliding_window_pattern", 0, 0, 1, 1 << 20, &cfg->sliding_window_pattern)))
        return rc;
    const json_t *lt = json_object_get(root, "layer_types");
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || json_array_size(lt) != (size_t)cfg->num_hidden_layers)
            return mend_set_error(MEND_EFORMAT, "%s: field 'layer_types' is not an array of %d strings", path,
                                  cfg->num_hidden_layers);
        cfg->has_layer_types = 1;
        for (int l = 0; l < cfg->num_hidden_layers; l++) {
            const char *t = json_string_value(json_array_get(lt, (size_t)l));
            if (t && strcmp(t, "full_attention") == 0) continue;
            if (!t || strcmp(t, "sliding_attention") != 0)
                return mend_set_error(MEND_EUNSUPPORTED, "%s: field 'layer_types' entry %d is '%.32s'; mend "
                                      "implements \"full_attention\" and \"sliding_attention\"", path, l,
                                      t ? t : "(not a string)");
            if (cfg->sliding_window < 1)
                return mend_set_error(MEND_EFORMAT, "%s: field 'layer_types' entry %d is \"sliding_attention\" "
                                      "but 'sliding_window' is not a positive integer", path, l);
            cfg->sliding[l] = 1;
        }
    }
    int rc2 = cfg_bool(root, path, "use_sliding_window", 0, &cfg->use_sliding_window);
    return rc2 ? rc2 : cfg_bool(root, path, "use_bidirectional_attention", 0, &cfg->use_bidirectional_attention);
}

int mend_hf_config_read(const char *path, mend_hf_accept_fn accept, void *ctx, mend_hf_config *cfg) {
    if (!path || !cfg) return mend_set_error(MEND_EINVAL, "mend_hf_config_read: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    char *text = NULL;
    size_t len = 0;
    int rc = mend_read_file(path, MEND_HF_MAX_JSON, &text, &len);
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
    snprintf(cfg->architecture, sizeof cfg->architecture, "%s", an);
    if (accept && (rc = accept(path, an, ctx))) goto done;

    if ((rc = cfg_int(root, path, "hidden_size", 1, 0, 1, MEND_HF_MAX_DIM, &cfg->hidden_size)) ||
        (rc = cfg_int(root, path, "intermediate_size", 0, 0, 1, MEND_HF_MAX_DIM, &cfg->intermediate_size)) ||
        (rc = cfg_int(root, path, "num_hidden_layers", 1, 0, 1, MEND_HF_MAX_LAYERS, &cfg->num_hidden_layers)) ||
        (rc = cfg_int(root, path, "num_attention_heads", 1, 0, 1, MEND_HF_MAX_HEADS, &cfg->num_attention_heads)) ||
        (rc = cfg_int(root, path, "num_key_value_heads", 0, cfg->num_attention_heads, 1, MEND_HF_MAX_HEADS,
                      &cfg->num_key_value_heads)) ||
        (rc = cfg_int(root, path, "vocab_size", 1, 0, 1, MEND_HF_MAX_VOCAB, &cfg->vocab_size)) ||
        (rc = cfg_int(root, path, "max_position_embeddings", 0, 2048, 1, 1 << 30, &cfg->max_position_embeddings)))
        goto done;
    if (cfg->hidden_size % cfg->num_attention_heads && !json_is_integer(json_object_get(root, "head_dim"))) {
        rc = mend_set_error(MEND_EFORMAT, "%s: field 'hidden_size' (%d) is not a multiple of "
                            "'num_attention_heads' (%d) and 'head_dim' is not given", path, cfg->hidden_size,
                            cfg->num_attention_heads);
        goto done;
    }
    if ((rc = cfg_int(root, path, "head_dim", 0, cfg->hidden_size / cfg->num_attention_heads, 2, 4096,
                      &cfg->head_dim)))
        goto done;
    if ((rc = cfg_num(root, path, "rms_norm_eps", 0, 0.0, &cfg->rms_norm_eps))) goto done;
    if (cfg->rms_norm_eps >= 1) {
        rc = mend_set_error(MEND_ERANGE, "%s: field 'rms_norm_eps' is %g, expected a small positive number",
                            path, cfg->rms_norm_eps);
        goto done;
    }
    if ((rc = parse_rope(root, path, cfg))) goto done;
    if ((rc = cfg_bool(root, path, "tie_word_embeddings", 0, &cfg->tie_word_embeddings))) goto done;
    const json_t *tie = json_object_get(root, "tie_word_embeddings");
    cfg->has_tie_word_embeddings = tie && !json_is_null(tie);
    if ((rc = cfg_str(root, path, "hidden_act", cfg->hidden_act, sizeof cfg->hidden_act)) ||
        (rc = cfg_str(root, path, "hidden_activation", cfg->hidden_activation, sizeof cfg->hidden_activation)) ||
        (rc = cfg_num(root, path, "query_pre_attn_scalar", 0, 0.0, &cfg->query_pre_attn_scalar)) ||
        (rc = cfg_num(root, path, "attn_logit_softcapping", 0, 0.0, &cfg->attn_logit_softcapping)) ||
        (rc = cfg_num(root, path, "final_logit_softcapping", 0, 0.0, &cfg->final_logit_softcapping)) ||
        (rc = cfg_str(root, path, "activation_function", cfg->activation_function,
                      sizeof cfg->activation_function)))
        goto done;
    if ((rc = cfg_bool(root, path, "attention_bias", 0, &cfg->attention_bias)) ||
        (rc = cfg_bool(root, path, "mlp_bias", 0, &cfg->mlp_bias)))
        goto done;
    if ((rc = parse_windows(root, path, cfg))) goto done;
    if ((rc = cfg_int(root, path, "ffn_dim", 0, 0, 1, MEND_HF_MAX_DIM, &cfg->ffn_dim)) ||
        (rc = cfg_int(root, path, "word_embed_proj_dim", 0, 0, 1, MEND_HF_MAX_DIM, &cfg->word_embed_proj_dim)) ||
        (rc = cfg_bool(root, path, "do_layer_norm_before", 1, &cfg->do_layer_norm_before)) ||
        (rc = cfg_bool(root, path, "enable_bias", 1, &cfg->enable_bias)) ||
        (rc = cfg_bool(root, path, "layer_norm_elementwise_affine", 1, &cfg->layer_norm_elementwise_affine)))
        goto done;
    rc = cfg_bool(root, path, "_remove_final_layer_norm", 0, &cfg->remove_final_layer_norm);
done:
    json_decref(root);
    return rc;
}

/* ---- weights: one file or shards ---- */

void mend_hf_weights_close(mend_hf_weights *w) {
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

static int add_shard(mend_hf_weights *w, const char *dir, const char *name) {
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

int mend_hf_weights_open(mend_hf_weights *w, const char *dir) {
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
    int rc = mend_read_file(index, MEND_HF_MAX_JSON, &text, &len);
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

int mend_hf_weights_find(const mend_hf_weights *w, const char *name, const mend_safetensors **st,
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
