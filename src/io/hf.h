/* Hugging Face checkpoint directories, as files: config.json read into a
 * plain struct (types and ranges checked, nothing interpreted), and the
 * safetensors weights of model.safetensors or of the shards listed in
 * model.safetensors.index.json. Building a model from them is
 * model/load_hf.c's. */
#ifndef MEND_IO_HF_H
#define MEND_IO_HF_H

#include <stddef.h>
#include "io/safetensors.h"

#define MEND_HF_MAX_JSON   (64u << 20)
#define MEND_HF_MAX_DIM    (1 << 20)
#define MEND_HF_MAX_VOCAB  (1 << 24)
#define MEND_HF_MAX_LAYERS 4096
#define MEND_HF_MAX_HEADS  4096

/* config.json: the fields a decoder-only checkpoint describes itself with,
 * named after their keys. Absent optional fields hold the defaults noted.
 * Fields only some families have are optional here; the model loader says
 * which its family requires. */
typedef struct mend_hf_config {
    char architecture[96];        /* architectures[0] (required) */
    int hidden_size, num_hidden_layers, num_attention_heads, vocab_size;   /* required */
    int intermediate_size;        /* 0 when absent */
    int num_key_value_heads;      /* default num_attention_heads */
    int max_position_embeddings;  /* default 2048 */
    int head_dim;                 /* default hidden_size / num_attention_heads */
    double rms_norm_eps;          /* in (0, 1); 0 when absent */
    double rope_theta;            /* 'rope_theta' at the top or in the RoPE object; default 10000 */
    double rope_theta_local;      /* Gemma 3's sliding layers: 'rope_local_base_freq', or the rope_theta
                                     of rope_parameters.sliding_attention; 0 when absent */
    int sliding_window_pattern;   /* Gemma 3 without layer_types: every N-th layer is global; 0 when absent */
    /* RoPE object ('rope_parameters', transformers 5, or 'rope_scaling'; a
     * rope_parameters of one object per layer type, as transformers 5
     * writes Gemma 3's, is read from its full_attention member, the
     * sliding_attention member giving rope_theta_local):
     * rope_type "default" or "llama3" (others and partial rotary factors
     * other than 1 are refused as MEND_EUNSUPPORTED) */
    int rope_llama3;              /* rope_type "llama3": the four fields below are set */
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_position_embeddings;
    int tie_word_embeddings;      /* default false */
    int has_tie_word_embeddings;  /* the key is present */
    char hidden_act[32];          /* "" when absent (a longer name is cut) */
    char hidden_activation[32];   /* Gemma's name for it; "" when absent */
    double query_pre_attn_scalar; /* Gemma: attention scale 1/sqrt of it; 0 when absent */
    double attn_logit_softcapping, final_logit_softcapping;   /* Gemma 2; 0 when absent or null */
    int attention_bias, mlp_bias; /* default false */
    int sliding_window;           /* 0 when absent */
    int use_sliding_window;       /* default false */
    int use_bidirectional_attention;   /* default false (Gemma 3's embedding variants set it) */
    /* 'layer_types' (transformers 5): when has_layer_types, sliding[l] is 1
     * for "sliding_attention", 0 for "full_attention" (other values are
     * refused, and so is a sliding layer without a positive sliding_window) */
    int has_layer_types;
    unsigned char sliding[MEND_HF_MAX_LAYERS];
    /* OPT's keys */
    int ffn_dim;                  /* 0 when absent */
    int word_embed_proj_dim;      /* 0 when absent */
    int do_layer_norm_before;     /* default true */
    int enable_bias;              /* default true */
    int layer_norm_elementwise_affine;   /* default true */
    int remove_final_layer_norm;  /* '_remove_final_layer_norm', default false */
    char activation_function[32]; /* "" when absent (a longer name is cut) */
} mend_hf_config;

/* Read and check config.json at path into *out. Errors name the file and
 * the field. accept, when not NULL, is called with architectures[0] before
 * any other field is read, and a nonzero return ends the read with that
 * code: a family the caller does not run is refused as such, not for lacking
 * a field its configs never have. */
typedef int (*mend_hf_accept_fn)(const char *path, const char *architecture, void *ctx);
int mend_hf_config_read(const char *path, mend_hf_accept_fn accept, void *ctx, mend_hf_config *out);

/* The weights of a directory: one model.safetensors, or the shards named by
 * model.safetensors.index.json's weight_map, each opened once. */
typedef struct mend_hf_weights {
    char *index_path;             /* NULL for a single model.safetensors */
    size_t n_shards;
    char **shard_names;           /* file names, in weight_map order */
    mend_safetensors **shards;
    struct json_t *index_root;    /* the parsed index (private) */
    struct json_t *weight_map;    /* tensor name -> shard file name, in index_root (private) */
} mend_hf_weights;

int mend_hf_weights_open(mend_hf_weights *w, const char *dir);
void mend_hf_weights_close(mend_hf_weights *w);
/* Find a tensor: 0 with *st / *t set when found, 0 with *t NULL when absent;
 * MEND_EFORMAT when weight_map names a shard that does not hold it. */
int mend_hf_weights_find(const mend_hf_weights *w, const char *name, const mend_safetensors **st,
                         const mend_st_tensor **t);

#endif
