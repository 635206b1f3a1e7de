/* Dense f32 kernels of the transformer forward pass: RMSNorm, RoPE, softmax,
 * SwiGLU, matmul and causal grouped-query attention.
 *
 * Each kernel is a *_forward function with a shape comment; the matching
 * *_backward functions live next to them once training needs them. The inner
 * vector loops (dot products, weighted row sums, exp) have AVX2 and AVX-512
 * versions chosen at run time (kernels/cpu.h) and scalar _ref twins that the
 * tests compare them against. Row-major everywhere; "ld" is a row stride in
 * elements. */
#ifndef MEND_OPS_H
#define MEND_OPS_H

#include <stddef.h>
#include <stdint.h>

/* ---- vector primitives (SIMD dispatched; _ref twins are scalar) --------- */

/* s[t] = scale * dot(q, K[t]) for t < T; q (d), K (T, ldk) -> s (T) */
void vec_dot_rows(int T, int d, const float *q, const float *K, size_t ldk, float scale, float *s);
void vec_dot_rows_ref(int T, int d, const float *q, const float *K, size_t ldk, float scale, float *s);

/* out[j] = sum_t p[t] * V[t][j]; p (T), V (T, ldv) -> out (d), overwritten */
void vec_wsum_rows(int T, int d, const float *p, const float *V, size_t ldv, float *out);
void vec_wsum_rows_ref(int T, int d, const float *p, const float *V, size_t ldv, float *out);

/* x[i] = exp(x[i] - m); returns sum_i x[i] (after the update). x (n) */
float vec_exp_sum(int64_t n, float *x, float m);
/* x[i] <- exp(x[i] - max x) over n >= 1 values; returns 1 / their sum (the
 * factor that finishes a softmax) */
float vec_softmax_inv(int64_t n, float *x);
float vec_exp_sum_ref(int64_t n, float *x, float m);

/* The SIMD versions themselves, for the tests (x86-64 only; call them only
 * when kernels/cpu.h reports the level; d must be a multiple of 8 (AVX2) or
 * 16 (AVX-512) for the row kernels). */
#if defined(__x86_64__) && defined(__GNUC__)
void vec_dot_rows_avx2(int T, int d, const float *q, const float *K, size_t ldk, float scale, float *s);
void vec_wsum_rows_avx2(int T, int d, const float *p, const float *V, size_t ldv, float *out);
float vec_exp_sum_avx2(int64_t n, float *x, float m);
void swiglu_forward_avx2(float *out, const float *gate, const float *up, int64_t n);
void vec_dot_rows_avx512(int T, int d, const float *q, const float *K, size_t ldk, float scale, float *s);
void vec_wsum_rows_avx512(int T, int d, const float *p, const float *V, size_t ldv, float *out);
float vec_exp_sum_avx512(int64_t n, float *x, float m);
/* The same two row primitives for G <= 4 queries that share their keys and
 * values (the heads of one kv head): query h at q + h * qs, its scores /
 * weights at s + h * ss, its output at out + h * os. Each K and V row is
 * loaded once for all G; every query's numbers are bit for bit those of
 * vec_dot_rows_avx512 / vec_wsum_rows_avx512 on it alone. d % 16 == 0. */
void vec_dot_rows_heads_avx512(int G, int T, int d, const float *q, size_t qs, const float *K, size_t ldk,
                               float scale, float *s, size_t ss);
void vec_wsum_rows_heads_avx512(int G, int T, int d, const float *p, size_t ps, const float *V, size_t ldv,
                                float *out, size_t os);
void swiglu_forward_avx512(float *out, const float *gate, const float *up, int64_t n);
#define MEND_OPS_HAVE_SIMD 1
#endif

/* ---- layers -------------------------------------------------------------- */

/* RMSNorm: out = x / sqrt(mean(x^2) + eps) * w   (torch: x * rsqrt(x.pow(2).mean(-1) + eps) * w)
 * x (n, dim), w (dim) -> out (n, dim); out may alias x. */
void rmsnorm_forward(float *out, const float *x, const float *w, int n, int dim, float eps);

/* LayerNorm: out = (x - mean(x)) / sqrt(var(x) + eps) * w + b, var the biased
 * variance (torch: F.layer_norm(x, (dim,), w, b, eps)); mean and variance in
 * double. x (n, dim), w, b (dim) -> out (n, dim); out may alias x. */
void layernorm_forward(float *out, const float *x, const float *w, const float *b, int n, int dim, float eps);

/* ReLU: out = max(x, 0) (torch: F.relu). x (n) -> out (n); out may alias x.
 * A plain loop (the compiler vectorizes it at the baseline ISA), on the
 * calling thread. */
void relu_forward(float *out, const float *x, int64_t n);

/* Rotary position embedding tables for positions pos0 .. pos0+n-1:
 * freq_i = theta^(-2i/head_dim), angle = p * freq_i, i < head_dim/2.
 * -> cos_t (n, head_dim/2), sin_t (n, head_dim/2). Computed in double. */
void rope_tables(float *cos_t, float *sin_t, int n, int pos0, int head_dim, float theta);

/* RoPE in place on n rows of n_heads heads each.
 * type 0 (NORM): rotate adjacent pairs (x[2i], x[2i+1]) — GGUF llama layout;
 * type 2 (NEOX): rotate halves (x[i], x[i + head_dim/2]) — HF / qwen2 layout;
 * type -1 (none: learned absolute positions, opt): x is left as it is.
 * x (n, ldx) with head h at columns [h*head_dim, (h+1)*head_dim);
 * cos_t, sin_t (n, head_dim/2) from rope_tables. */
void rope_forward(float *x, int n, size_t ldx, int n_heads, int head_dim,
                  const float *cos_t, const float *sin_t, int type);

/* Logit soft-capping in place (Gemma 2): x = cap * tanh(x / cap); a no-op
 * for cap <= 0. Scalar. x (n) */
void vec_softcap(int64_t n, float *x, float cap);

/* Softmax in place with max subtraction: x = exp(x - max x) / sum. x (n) */
void softmax_forward(float *x, int64_t n);

/* SwiGLU: out = silu(gate) * up, silu(g) = g / (1 + exp(-g)).
 * gate (n), up (n) -> out (n); out may alias gate. */
void swiglu_forward(float *out, const float *gate, const float *up, int64_t n);
void swiglu_forward_ref(float *out, const float *gate, const float *up, int64_t n);

/* out = beta * out + x · Wᵀ (+ bias)   (torch: F.linear(x, W, b))
 * x (n, k), W (m, k), bias (m) or NULL -> out (n, ldo) with m used columns.
 * Uses BLAS sgemm (n > 1) or sgemv (n == 1). */
void matmul_forward(float *out, size_t ldo, const float *x, const float *W, const float *bias,
                    int n, int m, int k, float beta);

/* Causal grouped-query attention over a cache.
 * q (n, n_heads*hd) for positions pos0 .. pos0+n-1 (already rotated);
 * kc, vc (>= pos0+n, kv_dim) hold every key/value up to the last position;
 * query i attends to keys [0, pos0+i]. Head h reads kv head h / (n_heads/n_kv_heads).
 * -> out (n, n_heads*hd). scratch: n_threads * attention_scratch_floats(...).
 * softmax(q·kᵀ / sqrt(hd)) · v in f32, max-subtracted (with softcap > 0 the
 * scores are capped first: vec_softcap), parallel over
 * (kv head, position) with at most n_threads OpenMP threads; on AVX-512 the
 * heads of a kv head share each key and value row load (up to four at a
 * time), with every head's numbers the same as alone, so the result does
 * not depend on n or on the grouping. */
size_t attention_scratch_floats(int n_heads, int n_kv_heads, int n_ctx);
void attention_forward(float *out, const float *q, const float *kc, const float *vc,
                       int n, int pos0, int n_heads, int n_kv_heads, int hd, float softcap,
                       float *scratch, int n_ctx, int n_threads);

/* The same attention for rows that each see their own set of cache slots:
 * row i attends to slots [spans[6i], spans[6i+1]), then [spans[6i+2],
 * spans[6i+3]), then [spans[6i+4], spans[6i+5]) (the last range ends after
 * the row's own slot). Ranges may be empty; together they hold at most n_ctx
 * slots. Scores are concatenated in that order before the softmax. */
void attention_forward_spans(float *out, const float *q, const float *kc, const float *vc,
                             int n, const int *spans, int n_heads, int n_kv_heads, int hd, float softcap,
                             float *scratch, int n_ctx, int n_threads);

#endif
