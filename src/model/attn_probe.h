/* Attention probe for inference-time dynamic prompting (model/attn_probe.c).
 *
 * K soft prompts of the same length nv sit before an input as K separate
 * blocks. Each prompt's keys and values are computed alone, once, at
 * positions 0 .. nv-1 (the prompts never see each other: the attention mask
 * over the prompts is block-diagonal). The input's n tokens run at positions
 * nv .. nv+n-1 and attend to every prompt block and causally to the input:
 *
 *   keys seen by input token i = [P_0 | P_1 | ... | P_{K-1} | x_0 .. x_i]
 *
 * Position convention: every prompt occupies positions 0 .. nv-1 and the
 * input starts at nv, so the input has exactly the positions it gets in a
 * run with one prompt (mend_forward with the prompt at [0, nv), text from
 * nv); with K = 1 the probe is that run. Its residual stream flows through
 * the multi-prompt attention, so layer l+1 sees what the joint context
 * produced at layer l.
 *
 * Sliding windows (gemma3, mistral) by the forward's rule on positions: in
 * a layer with window w a query at position p sees the keys at positions
 * >= p - w + 1, so input token i (position nv + i) loses the first
 * nv + i - w + 1 rows of every prompt block (all of them, and then its own
 * first rows, further on). Hidden keys get no mass.
 *
 * Attention mass. For layer l, head h, input token i, with p the softmax
 * row over the T = K*nv + i + 1 keys above:
 *   mass[l][h][i][k] = sum of p over block k's nv keys   (k < K)
 *   mass[l][h][i][K] = sum of p over the input keys 0..i
 * so sum_k mass[l][h][i][k] = 1. The probe returns these per token and
 * their mean over the input tokens; it runs layers only up to the last one
 * asked for (the rest of the model is skipped).
 *
 * The same layer loop, with no prompt blocks (K = 0, input from position
 * 0), gives the mean of the input's final hidden states after the output
 * norm: the feature of the router selector.
 *
 * Matrices in any type the model holds: f32 on mend's sgemm, packed types on
 * the native kernels of kernels/qmatmul.h (8-bit activations), others
 * dequantized row by row. Numbers agree with mend_forward to rounding. */
#ifndef MEND_MODEL_ATTN_PROBE_H
#define MEND_MODEL_ATTN_PROBE_H

#include <stddef.h>
#include <stdint.h>
#include "mend.h"

typedef struct mend_probe mend_probe;

/* A probe for up to max_tokens input tokens behind K prompts (each
 * prompts[k] is nv x dim raw embeddings; K may be 0). Computes and keeps the
 * prompts' keys and values for every layer. */
int mend_probe_new(mend_probe **out, const mend_model *m, const float *const *prompts, int K, int nv,
                   int max_tokens);
void mend_probe_free(mend_probe *p);
/* Bytes of the cached prompt keys and values (n_layers * K * nv * kv_dim * 2 floats). */
size_t mend_probe_prompt_kv_bytes(const mend_probe *p);
/* Bytes of the whole probe (cache + activations for max_tokens). */
size_t mend_probe_bytes(const mend_probe *p);
int mend_probe_max_tokens(const mend_probe *p);

/* Input tokens (1 <= n <= max_tokens) behind all K prompt blocks; layers
 * [l0, l1) probed (0 <= l0 < l1 <= n_layers); layers from l1 on are not run.
 *   mean_mass: NULL or (l1-l0, n_heads, K+1): mass averaged over the n tokens
 *   tok_mass:  NULL or (l1-l0, n_heads, n, K+1): per token
 * Needs K >= 1. */
int mend_probe_attention(mend_probe *p, const int32_t *tokens, int n, int l0, int l1, float *mean_mass,
                         float *tok_mass);

/* Several inputs probed in one pass: input j is tokens[off[j] .. off[j+1])
 * (off[0] = 0, off[n_inputs] <= max_tokens, no input empty). Each input sits
 * at positions nv .. and attends to every prompt block and causally to
 * itself only, exactly as mend_probe_attention on it alone (the same bits
 * where mend's sgemm runs: its products are computed row by row in a fixed
 * order; BLAS may round differently with the batch).
 *   mean_mass: (n_inputs, l1-l0, n_heads, K+1), averaged per input */
int mend_probe_attention_many(mend_probe *p, const int32_t *tokens, const int *off, int n_inputs, int l0, int l1,
                              float *mean_mass);

/* Mean over the n input tokens of the final hidden state after the output
 * norm, with no prompt in front (positions 0 .. n-1). hidden (dim). */
int mend_probe_hidden_mean(mend_probe *p, const int32_t *tokens, int n, float *hidden);

/* For tests: the probe's buffers after its last call, which ran layers up
 * to some layer l_last. x: the input rows' residual stream after l_last
 * (n, dim); att: l_last's attention output before its output projection
 * (n, n_heads*head_dim); keys / values of layer l (as cached: after QK-norm
 * and RoPE): rows [k*nv, (k+1)*nv) hold prompt k, rows from K*nv the last
 * input. Any pointer may be NULL. */
void mend_probe_buffers(const mend_probe *p, int l, const float **x, const float **att, const float **keys,
                        const float **values);

#endif
