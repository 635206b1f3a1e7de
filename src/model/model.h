/* The model: config, weights, and the run state of a forward pass.
 * Structs mirror the math (llama2.c style). */
#ifndef MEND_MODEL_H
#define MEND_MODEL_H

#include <stdint.h>
#include "mend.h"
#include "io/gguf.h"

enum mend_rope_type {
    MEND_ROPE_NONE = -1,  /* no rotation: learned absolute positions (cfg.n_pos, opt) */
    MEND_ROPE_NORM = 0,   /* rotate adjacent pairs (x[2i], x[2i+1]); GGUF llama layout */
    MEND_ROPE_NEOX = 2    /* rotate halves (x[i], x[i+d/2]); HF layout, qwen2 */
};

/* RoPE frequency scalings (model/features.c) */
enum mend_rope_scaling {
    MEND_ROPE_SCALING_NONE = 0,
    MEND_ROPE_SCALING_LLAMA3 = 1,  /* rope_type "llama3": low frequencies divided by factor, a smooth band */
    MEND_ROPE_SCALING_FREQS = 2    /* per-frequency divisors cfg.rope_freqs (GGUF tensor rope_freqs.weight) */
};

#define MEND_MAX_LAYERS 4096

typedef struct mend_config {
    char arch[32];        /* "llama", "qwen2", "mistral", "gemma3", ... */
    int n_vocab;
    int dim;              /* hidden size */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int hidden_dim;       /* FFN inner size */
    int ctx_len;          /* trained context */
    float rope_theta;
    float norm_eps;
    int rope_type;        /* enum mend_rope_type */
    int tied;             /* output head shares token embeddings */
    int rope_scaling;     /* enum mend_rope_scaling */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;   /* llama3 scaling */
    int rope_orig_ctx;    /* llama3 scaling: original_max_position_embeddings */
    const float *rope_freqs;   /* (head_dim/2) divisors of the frequencies with MEND_ROPE_SCALING_FREQS
                                  (in the model's file map), NULL otherwise */
    int qk_norm;          /* per-head RMSNorm of queries and keys before RoPE (qwen3, gemma3) */
    int swa_window[MEND_MAX_LAYERS];   /* sliding-window attention of layer l: a query at position p
                                          sees keys at positions > p - swa_window[l]; 0 = global */

    /* Gemma 3 ("gemma3"). Zero for the other families, which keeps their
     * math unchanged. */
    int post_norms;       /* RMSNorm on the attention and FFN outputs before their residual adds
                             (post_attention_norm, post_ffw_norm) */
    int act;              /* enum mend_act: the gate's activation */
    float embd_scale;     /* looked-up token embeddings are multiplied by this (0: by 1) */
    float attn_scale;     /* attention logits are q·k times this (0: 1/sqrt(head_dim)) */
    float rope_theta_swa; /* RoPE base (unscaled) of the layers with a sliding window; 0: rope_theta
                             on every layer */
    /* Gemma 2 ("gemma2", with the Gemma 3 fields above but qk_norm and rope_theta_swa). Zero elsewhere. */
    float attn_softcap;   /* attention scores s -> c tanh(s / c) before the softmax (0: none) */
    float final_softcap;  /* logits z -> c tanh(z / c) (0: none) */

    /* OPT ("opt"). Zero / NULL for the other families, which keeps their
     * math unchanged. */
    int layer_norm;       /* every norm (attn, ffn, out) is LayerNorm with a bias (the *_norm_b vectors)
                             instead of RMSNorm */
    int ffn_plain;        /* FFN without a gate: h = act(x Wuᵀ + b_up), w_gate empty; act is
                             MEND_ACT_RELU */
    int n_pos;            /* learned absolute positions instead of RoPE (rope_type MEND_ROPE_NONE):
                             row p of pos_embd is added to the input row at position p; 0: RoPE */
    int pos_offset;       /* where position 0 sits in the checkpoint's own table (HF OPT: row 2), for
                             the features line; pos_embd already starts at it */
    const float *pos_embd;   /* (n_pos, dim) f32, in the model's arena or file map; NULL without n_pos */
} mend_config;

enum mend_act {
    MEND_ACT_SILU = 0,       /* SwiGLU: silu(g) * u */
    MEND_ACT_GELU_TANH = 1,  /* GeGLU: gelu(g) * u with the tanh approximation */
    MEND_ACT_RELU = 2        /* relu(u), with cfg.ffn_plain (no gate) */
};

/* A weight matrix in row-major [rows][cols] with rows = output features, in
 * any ggml type (F32 when dequantized). ggml's ne[0] == cols, ne[1] == rows. */
typedef struct mend_mat {
    uint32_t type;
    int64_t rows, cols;
    const void *data;
    size_t row_bytes;
    const void *xdata;   /* the same weights repacked for batched products
                            (kernels/qgemm.h, in model->xpack), or NULL */
} mend_mat;

typedef struct mend_layer {
    const float *attn_norm;        /* (dim) */
    mend_mat wq, wk, wv, wo;       /* (n_heads*hd, dim) (kv*hd, dim) (kv*hd, dim) (dim, n_heads*hd) */
    const float *bq, *bk, *bv;     /* optional biases (qwen2), NULL otherwise */
    const float *q_norm, *k_norm;  /* (head_dim) with cfg.qk_norm, NULL otherwise */
    const float *ffn_norm;         /* (dim) */
    mend_mat w_gate, w_up, w_down; /* (hidden, dim) (hidden, dim) (dim, hidden) */
    const float *post_attn_norm, *post_ffn_norm;  /* (dim) with cfg.post_norms (gemma3), NULL otherwise */
    const float *attn_norm_b, *ffn_norm_b;  /* (dim) LayerNorm biases with cfg.layer_norm, NULL otherwise */
    const float *bo, *b_up, *b_down;        /* (dim) (hidden) (dim) biases of wo, w_up, w_down (opt),
                                               NULL otherwise */
} mend_layer;

struct mend_model {
    mend_config cfg;
    mend_mat tok_embd;             /* (n_vocab, dim) */
    mend_layer *layers;
    const float *out_norm;         /* (dim) */
    const float *out_norm_b;       /* (dim) with cfg.layer_norm, NULL otherwise */
    mend_mat output;               /* (n_vocab, dim); == tok_embd when tied */
    /* The same matrices in their file types (pointers into the map), kept
     * beside the f32 copies for native quantized kernels; equal to the
     * fields above when loaded with keep_packed. Zero / NULL when a loader
     * does not provide them. layers_packed shares the allocation of layers
     * (it is layers + n_layers) and is never freed on its own. */
    mend_mat tok_embd_packed, output_packed;
    mend_layer *layers_packed;
    mend_tokenizer *tok;
    mend_gguf *gguf;               /* when loaded from GGUF (owns the map) */
    void *arena;                   /* one allocation for dequantized / converted weights */
    void *xpack;                   /* one allocation for the repacked layer matrices */
    size_t xpack_bytes;
    size_t arena_bytes;
    uint64_t fingerprint;          /* set at load by loaders that do not keep the file */
    int has_fingerprint;           /* (HF); GGUF files are hashed from the map on demand */
    void *owned;                   /* loader-specific storage (HF maps), freed by free_owned */
    void (*free_owned)(void *);
    char *path;
};

/* Loaders (model/load_gguf.c, model/load_hf.c). */
int mend_model_load_gguf(mend_model **out, const char *path, const mend_load_opts *opts);
int mend_model_load_hf(mend_model **out, const char *dir, const mend_load_opts *opts);
/* One tensor as stored, for the fingerprint (model/fingerprint.c). */
typedef struct mend_fp_tensor {
    uint64_t type;            /* ggml type id, or a hash of a dtype name */
    int n_dims;
    const int64_t *shape;     /* n_dims sizes, as the file writes them */
    const void *data;
    size_t nbytes;
} mend_fp_tensor;
/* The fingerprint of n tensors in this order; scratch holds n values. */
uint64_t mend_fp_of_tensors(const mend_fp_tensor *t, size_t n, uint64_t *scratch);

/* Family features (model/features.c). */
/* RoPE inverse frequency i < head_dim/2 with the config's scaling. */
double mend_rope_inv_freq(const mend_config *c, int i);
/* cos / sin tables (n, head_dim/2) for positions pos0 .. pos0+n-1 (rope_tables with scaling). */
void mend_rope_tables(const mend_config *c, float *cos_t, float *sin_t, int n, int pos0);
/* QK-norm in place on n rows: every head of q (n, ldq) and k (n, ldk);
 * then q *= mend_query_scale (gemma3's attention scale); serial. */
void mend_qk_norm(const mend_config *c, const mend_layer *L, float *q, size_t ldq, float *k, size_t ldk, int n);
/* attn_scale * sqrt(head_dim), the factor on queries that turns the
 * attention's 1/sqrt(head_dim) into attn_scale; 1 without attn_scale. */
float mend_query_scale(const mend_config *c);
/* The first key position a query at position pos sees in layer l. */
int mend_swa_first(const mend_config *c, int l, int pos);
/* Does any layer's window hide keys of a context of n_ctx positions? */
int mend_swa_active(const mend_config *c, int n_ctx);
/* Does layer l rotate with the base rope_theta_swa (gemma3's sliding-window
 * layers), and does any layer (a second pair of RoPE tables is needed)? */
int mend_rope_local(const mend_config *c, int l);
int mend_rope_has_local(const mend_config *c);
/* mend_rope_inv_freq and mend_rope_tables of those layers' base. */
double mend_rope_local_inv_freq(const mend_config *c, int i);
void mend_rope_local_tables(const mend_config *c, float *cos_t, float *sin_t, int n, int pos0);
/* RMSNorm of n rows on the calling thread: x (n, dim) -> out = x / rms(x) * w,
 * may alias. */
void mend_rmsnorm_rows(float *out, const float *x, const float *w, int n, int dim, float eps);
/* x (n, dim) *= embd_scale (token embeddings only). */
void mend_embed_scale(const mend_config *c, float *x, int n);
/* Logit soft-capping of n rows of n_vocab logits with final_softcap (gemma2);
 * a no-op without. Parallel over the rows. */
void mend_logit_softcap(const mend_config *c, float *logits, int64_t n);
/* h = act(gate) * up, (n) each, by cfg.act; h may alias gate. serial: stay
 * on this thread. */
void mend_glu_forward(const mend_config *c, float *h, const float *gate, const float *up, int64_t n, int serial);
/* Its backward: dgate, dup from dout (n each); dgate may alias dout. */
void mend_glu_backward(const mend_config *c, float *dgate, float *dup, const float *dout, const float *gate,
                       const float *up, int64_t n);
/* x (n, dim) += rmsnorm(y) * w with cfg.post_norms (y is overwritten), else
 * x += y. serial as above. */
void mend_post_norm_add(const mend_config *c, const float *w, float *x, float *y, int n, int serial);
/* The family's norm of n rows (dim each): rmsnorm(x) * w, or with
 * cfg.layer_norm layernorm(x) * w + b; out may alias x. serial as above. */
void mend_norm_forward(const mend_config *c, float *out, const float *x, const float *w, const float *b, int n,
                       int serial);
/* Its backward to x: dx = beta * dx + the norm's Jacobianᵀ dy (a bias is a
 * constant); beta as rmsnorm_backward. */
void mend_norm_backward(const mend_config *c, float *dx, const float *dy, const float *x, const float *w, int n,
                        float beta);
/* Learned positions (cfg.n_pos): x (n, dim) += pos_embd rows pos0 ..
 * pos0+n-1; nothing with RoPE. The caller has checked the range
 * (mend_pos_check). */
void mend_pos_add(const mend_config *c, float *x, int n, int pos0);
/* 0 when positions [pos0, pos0 + n) have rows in the learned table (always
 * with RoPE); else MEND_ERANGE with a message that starts with who. */
int mend_pos_check(const mend_config *c, const char *who, int64_t pos0, int64_t n);
/* mend_describe_features is public (mend.h). */

/* For tests: a state's buffers after mend_forward (model/forward.c). x: the
 * last batch's residual stream after the last layer (max_batch, dim); att:
 * the last layer's attention output for it, before the output projection
 * (max_batch, n_heads*head_dim), left as is by a plain mend_forward (not
 * mend_forward_rows_at); keys / values of layer l: the cache rows by slot
 * (n_ctx, kv_dim). Any pointer may be NULL. */
void mend_state_buffers(const mend_state *s, int l, const float **x, const float **att, const float **keys,
                        const float **values);

/* Validate shapes of a filled model (every loader calls it last). */
int mend_model_validate(const mend_model *m);

#endif
