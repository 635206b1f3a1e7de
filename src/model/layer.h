/* One transformer layer over one whole sequence of hidden states, split at
 * the points where calibration needs the inputs of each linear map (GPTQ,
 * SparseGPT). The math is forward.c's, without a KV cache: positions are
 * 0 .. n-1 of one sequence.
 *
 *   xb  = rmsnorm(x) * attn_norm                       mend_layer_attn_norm
 *   att = attention(rope(xb Wqᵀ), rope(xb Wkᵀ), xb Wvᵀ)  mend_layer_attn_core
 *   x  += att Woᵀ                                      mend_layer_attn_out
 *   xb  = rmsnorm(x) * ffn_norm                        mend_layer_ffn_norm
 *   h   = silu(xb Wgᵀ) * (xb Wuᵀ)                      mend_layer_ffn_act
 *   x  += h Wdᵀ                                        mend_layer_ffn_out
 *
 * with the family features (model/features.c) where the config has them:
 * QK-norm, layer l's window and, for gemma3, its RoPE base, the query scale,
 * post-norms on the two residual branches and GeGLU; for opt LayerNorm with
 * bias, no RoPE, biases on Wo, Wu and Wd and h = relu(xb Wuᵀ + b_up) without
 * a gate. Learned positions are added to x before layer 0 (mend_pos_add),
 * not here.
 *
 * Matrices must be F32 (a model loaded without keep_packed, or the caller's
 * own f32 copies); mend_layer_check says why not. Every function runs on the
 * calling thread only (BLAS as configured by the caller), so a caller can run
 * one sequence per OpenMP thread with single-threaded BLAS. Attention is
 * computed in query blocks with two sgemms per head (scores, weighted
 * values), masked causally. */
#ifndef MEND_LAYER_H
#define MEND_LAYER_H

#include "model/model.h"

/* Scratch for sequences of up to T positions. */
typedef struct mend_layer_ws {
    int T;
    float *q, *k, *v;       /* (T, qd) (T, kvd) (T, kvd) */
    float *rc, *rs;         /* (T, hd/2) RoPE tables for positions 0..T-1 */
    float *scores;          /* (QBLOCK, T) one query block's scores */
    float *up;              /* (T, hidden) */
    float *xt;              /* a product's x packed for mend_sgemm_xt (T, max cols), or NULL (BLAS) */
    float *rc2, *rs2;       /* (T, hd/2) tables of the sliding-window layers' RoPE base, or NULL */
    void *mem;
} mend_layer_ws;

int mend_layer_ws_init(mend_layer_ws *ws, const mend_config *c, int T);
void mend_layer_ws_free(mend_layer_ws *ws);

/* Check that every matrix of L is F32 with the config's shapes. */
int mend_layer_check(const mend_config *c, const mend_layer *L, int layer_index);

/* x (n, dim) -> xb (n, dim) */
void mend_layer_attn_norm(const mend_config *c, const mend_layer *L, const float *x, int n, float *xb);
/* xb (n, dim) -> att (n, n_heads*hd): q/k/v products (+ biases), QK-norm
 * (cfg.qk_norm), RoPE at positions 0..n-1, causal grouped-query attention,
 * within layer l's sliding window (cfg.swa_window[l]). n <= ws->T. */
void mend_layer_attn_core(const mend_config *c, const mend_layer *L, int l, const float *xb, int n,
                          mend_layer_ws *ws, float *att);
/* x (n, dim) += att (n, qd) · Woᵀ */
void mend_layer_attn_out(const mend_config *c, const mend_layer *L, const float *att, int n, mend_layer_ws *ws,
                         float *x);
/* x (n, dim) -> xb (n, dim) */
void mend_layer_ffn_norm(const mend_config *c, const mend_layer *L, const float *x, int n, float *xb);
/* xb (n, dim) -> h (n, hidden) = silu(xb Wgᵀ) * (xb Wuᵀ) */
void mend_layer_ffn_act(const mend_config *c, const mend_layer *L, const float *xb, int n,
                        mend_layer_ws *ws, float *h);
/* x (n, dim) += h (n, hidden) · Wdᵀ */
void mend_layer_ffn_out(const mend_config *c, const mend_layer *L, const float *h, int n, mend_layer_ws *ws,
                        float *x);

/* The whole layer l in place on x (n, dim); xb (n, dim), att (n, qd) and
 * h (n, hidden) are the caller's scratch. */
void mend_layer_forward_seq(const mend_config *c, const mend_layer *L, int l, float *x, int n, mend_layer_ws *ws,
                            float *xb, float *att, float *h);

#endif
