/* Backward twins of the dense f32 kernels in ops.h, for training a soft
 * prompt through a frozen model: every function returns the gradient with
 * respect to a kernel's *input* only (the weights are frozen, so no weight
 * gradients are ever formed). Shapes are written as in ops.h; "d<name>" is
 * the gradient of the loss with respect to <name>. Row-major everywhere.
 *
 * The forward halves are the ops.h kernels (rmsnorm_forward, rope_forward,
 * swiglu_forward, matmul_forward, attention_forward); the pairs below are
 * checked against central differences of those forwards in
 * tests/prompt/test_ops_backward.c. */
#ifndef MEND_OPS_BACKWARD_H
#define MEND_OPS_BACKWARD_H

#include <stddef.h>
#include <stdint.h>

/* RMSNorm backward. Forward: y = x * r * w, r = 1/sqrt(mean(x^2) + eps).
 *   dx = r * (w*dy) - x * r^3 / dim * sum_j (w_j dy_j x_j)
 * r is recomputed from x (in double), so nothing but the input is kept.
 * x (n, dim), w (dim), dy (n, dim) -> dx (n, dim): dx = beta * dx + result
 * (beta 0 or 1: accumulate into a residual gradient). dx must not alias dy
 * when beta != 0. */
void rmsnorm_backward(float *dx, const float *dy, const float *x, const float *w, int n, int dim, float eps,
                      float beta);

/* LayerNorm backward. Forward: y = xh * w + b, xh = (x - mean(x)) * r,
 * r = 1/sqrt(var(x) + eps) (biased variance); the bias is a constant.
 *   g = w * dy;   dx = r * (g - mean(g) - xh * mean(g * xh))
 * mean and r are recomputed from x (in double). Shapes and beta as
 * rmsnorm_backward. */
void layernorm_backward(float *dx, const float *dy, const float *x, const float *w, int n, int dim, float eps,
                        float beta);

/* ReLU backward: dx = dy * (x > 0) (torch's relu passes no gradient at 0).
 * x, dy (n) -> dx (n); dx may alias dy. On the calling thread. */
void relu_backward(float *dx, const float *dy, const float *x, int64_t n);

/* RoPE backward, in place: the transpose of the rotation, i.e. the rotation
 * by -angle.  For a pair (a, b) -> (a c - b s, a s + b c):
 *   da = dy_a c + dy_b s,   db = -dy_a s + dy_b c
 * dx (n, ldx) with head h at columns [h*head_dim, (h+1)*head_dim);
 * cos_t, sin_t (n, head_dim/2) from rope_tables; type as in rope_forward
 * (-1: nothing to undo). */
void rope_backward(float *dx, int n, size_t ldx, int n_heads, int head_dim,
                   const float *cos_t, const float *sin_t, int type);

/* SwiGLU backward. Forward: out = silu(g) * u, silu(g) = g * sigmoid(g).
 *   du = dout * silu(g)
 *   dg = dout * u * sigmoid(g) * (1 + g * (1 - sigmoid(g)))
 * gate (n), up (n), dout (n) -> dgate (n), dup (n). dgate may alias gate
 * and dup may alias up (each element is read before it is written). */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);
void swiglu_backward_ref(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                         int64_t n);

/* Matmul backward to the input. Forward: y = x · Wᵀ, x (n, k), W (m, k).
 *   dx = beta * dx + dy · W       (torch: dy @ W)
 * dy (n, ldy) with m used columns, W (m, ldw) with k used columns,
 * dx (n, ldx) with k used columns. One single-threaded BLAS call: callers
 * that want threads give each thread a slice of W's columns (W + k0 with the
 * same ldw, dx + k0). */
void matmul_backward(float *dx, size_t ldx, const float *dy, size_t ldy, const float *W, size_t ldw,
                     int n, int m, int k, float beta);

/* Causal grouped-query self-attention backward over a whole sequence that
 * starts at position 0 (the training layout, no cache), within a sliding
 * window of `window` keys (query i sees keys i-window+1 .. i; 0 = all
 * keys before it). Forward:
 *   P_h = softmax(mask(Q_h K_gᵀ / sqrt(hd))),  O_h = P_h V_g,  g = h / (n_heads/n_kv_heads)
 * With softcap > 0 the scores are capped before the mask (Gemma 2):
 *   S = c tanh(Q_h K_gᵀ / (sqrt(hd) c)) in place of Q_h K_gᵀ / sqrt(hd).
 * Backward, per head (P recomputed from Q and K, never stored):
 *   dP = dO_h V_gᵀ;   dS = P ∘ (dP - rowsum(P ∘ dP))  (∘ (1 - (S/c)²) when capped);
 *   dQ_h = dS K_g / sqrt(hd);   dK_g += dSᵀ Q_h / sqrt(hd);   dV_g += Pᵀ dO_h
 * q (T, n_heads*hd), k, v (T, n_kv_heads*hd), dout (T, n_heads*hd)
 * -> dq (T, n_heads*hd), dk, dv (T, n_kv_heads*hd), all overwritten.
 * Every product is a BLAS gemm on one head; heads run in parallel on up to
 * n_threads OpenMP threads (BLAS must be single-threaded in the caller).
 * scratch: attention_backward_scratch_floats(...) floats. */
size_t attention_backward_scratch_floats(int T, int n_heads, int hd, int n_threads);
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                        const float *v, int T, int n_heads, int n_kv_heads, int hd, int window, float softcap,
                        float *scratch, int n_threads);

/* The same forward in the training layout (whole sequence from position 0),
 * computed with the gemms and masked softmax the backward uses, so the two
 * agree to rounding: out (T, n_heads*hd). Same scratch as the backward. */
void attention_forward_train(float *out, const float *q, const float *k, const float *v, int T, int n_heads,
                             int n_kv_heads, int hd, int window, float softcap, float *scratch, int n_threads);

/* Softmax cross-entropy of one row, forward and backward together.
 *   loss = logsumexp(z) - z[target]          (returned, in double)
 *   z   <- scale * (softmax(z) - onehot(target))   (dz, in place)
 * z (V). */
double crossentropy_forward_backward(float *z, int V, int32_t target, float scale);

/* KL(teacher || student) of one row, forward and backward together.
 *   loss = sum_v pt_v (log pt_v - log ps_v),  pt = softmax(t), ps = softmax(z)
 *   z   <- scale * (ps - pt)                   (dz, in place)
 * Also returns the student's cross-entropy against target (target >= 0) in
 * *ce, for reporting. z (V) student logits, t (V) teacher logits,
 * work (2 V) scratch. */
double kl_forward_backward(float *z, const float *t, int V, int32_t target, float scale, double *ce,
                           float *work);

#endif
