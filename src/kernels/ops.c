/* Dense f32 kernels of the forward pass (see ops.h for shapes).
 *
 * The three vector primitives (rows of dot products, weighted row sums, exp
 * with a running sum) carry the attention and SwiGLU inner loops; each has a
 * scalar _ref twin, an AVX2+FMA version and an AVX-512 version, chosen per
 * call from kernels/cpu.h. The exp approximation is the classic range
 * reduction x = n ln2 + r, |r| <= ln2/2, with a degree-7 polynomial for e^r
 * (relative error ~2e-7, the same order as libm's expf in f32). */
#include "kernels/ops.h"
#include "kernels/ops_backward.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/simd_exp.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MEND_OPS_X86 1
#endif

/* ---- scalar references ---------------------------------------------------- */

void vec_dot_rows_ref(int T, int d, const float *q, const float *K, size_t ldk, float scale, float *s) {
    for (int t = 0; t < T; t++) {
        const float *k = K + (size_t)t * ldk;
        float acc = 0.0f;
        for (int j = 0; j < d; j++) acc += q[j] * k[j];
        s[t] = scale * acc;
    }
}

void vec_wsum_rows_ref(int T, int d, const float *p, const float *V, size_t ldv, float *out) {
    for (int j = 0; j < d; j++) out[j] = 0.0f;
    for (int t = 0; t < T; t++) {
        const float *v = V + (size_t)t * ldv;
        const float w = p[t];
        for (int j = 0; j < d; j++) out[j] += w * v[j];
    }
}

float vec_exp_sum_ref(int64_t n, float *x, float m) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    return sum;
}

void swiglu_forward_ref(float *out, const float *gate, const float *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

#ifdef MEND_OPS_X86
/* ---- AVX2 + FMA ------------------------------------------------------------ */
#define T_AVX2 __attribute__((target("avx2,fma")))

T_AVX2 static inline float hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

T_AVX2 void vec_dot_rows_avx2(int T, int d, const float *q, const float *K, size_t ldk, float scale, float *s) {
    int t = 0;
    for (; t + 4 <= T; t += 4) {
        const float *k0 = K + (size_t)t * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < d; j += 8) {
            __m256 qv = _mm256_loadu_ps(q + j);
            a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + j), a0);
            a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k1 + j), a1);
            a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k2 + j), a2);
            a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k3 + j), a3);
        }
        s[t] = scale * hsum256(a0);
        s[t + 1] = scale * hsum256(a1);
        s[t + 2] = scale * hsum256(a2);
        s[t + 3] = scale * hsum256(a3);
    }
    for (; t < T; t++) {
        const float *k0 = K + (size_t)t * ldk;
        __m256 a0 = _mm256_setzero_ps();
        for (int j = 0; j < d; j += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), _mm256_loadu_ps(k0 + j), a0);
        s[t] = scale * hsum256(a0);
    }
}

T_AVX2 void vec_wsum_rows_avx2(int T, int d, const float *p, const float *V, size_t ldv, float *out) {
    int j0 = 0;
    for (; j0 + 32 <= d; j0 += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < T; t++) {
            const float *v = V + (size_t)t * ldv + j0;
            __m256 w = _mm256_broadcast_ss(p + t);
            a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v), a0);
            a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8), a1);
            a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 16), a2);
            a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 24), a3);
        }
        _mm256_storeu_ps(out + j0, a0);
        _mm256_storeu_ps(out + j0 + 8, a1);
        _mm256_storeu_ps(out + j0 + 16, a2);
        _mm256_storeu_ps(out + j0 + 24, a3);
    }
    for (; j0 < d; j0 += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (int t = 0; t < T; t++)
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + t), _mm256_loadu_ps(V + (size_t)t * ldv + j0), a0);
        _mm256_storeu_ps(out + j0, a0);
    }
}

T_AVX2 float vec_exp_sum_avx2(int64_t n, float *x, float m) {
    __m256 mv = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum256(acc);
    for (; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    return sum;
}

T_AVX2 void swiglu_forward_avx2(float *out, const float *gate, const float *up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp256(_mm256_sub_ps(zero, g));
        __m256 y = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(y, _mm256_loadu_ps(up + i)));
    }
    swiglu_forward_ref(out + i, gate + i, up + i, n - i);
}

/* ---- AVX-512 ---------------------------------------------------------------- */
#define T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define UNROLL4 _Pragma("GCC unroll 4")   /* arrays of vectors stay in registers */

T_AVX512 void vec_dot_rows_avx512(int T, int d, const float *q, const float *K, size_t ldk, float scale, float *s) {
    int t = 0;
    for (; t + 4 <= T; t += 4) {
        const float *k0 = K + (size_t)t * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < d; j += 16) {
            __m512 qv = _mm512_loadu_ps(q + j);
            a0 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k0 + j), a0);
            a1 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k1 + j), a1);
            a2 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k2 + j), a2);
            a3 = _mm512_fmadd_ps(qv, _mm512_loadu_ps(k3 + j), a3);
        }
        s[t] = scale * _mm512_reduce_add_ps(a0);
        s[t + 1] = scale * _mm512_reduce_add_ps(a1);
        s[t + 2] = scale * _mm512_reduce_add_ps(a2);
        s[t + 3] = scale * _mm512_reduce_add_ps(a3);
    }
    for (; t < T; t++) {
        const float *k0 = K + (size_t)t * ldk;
        __m512 a0 = _mm512_setzero_ps();
        for (int j = 0; j < d; j += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j), _mm512_loadu_ps(k0 + j), a0);
        s[t] = scale * _mm512_reduce_add_ps(a0);
    }
}

T_AVX512 void vec_wsum_rows_avx512(int T, int d, const float *p, const float *V, size_t ldv, float *out) {
    int j0 = 0;
    for (; j0 + 64 <= d; j0 += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < T; t++) {
            const float *v = V + (size_t)t * ldv + j0;
            __m512 w = _mm512_set1_ps(p[t]);
            a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v), a0);
            a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 16), a1);
            a2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 32), a2);
            a3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(v + 48), a3);
        }
        _mm512_storeu_ps(out + j0, a0);
        _mm512_storeu_ps(out + j0 + 16, a1);
        _mm512_storeu_ps(out + j0 + 32, a2);
        _mm512_storeu_ps(out + j0 + 48, a3);
    }
    for (; j0 < d; j0 += 16) {
        __m512 a0 = _mm512_setzero_ps();
        for (int t = 0; t < T; t++)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(p[t]), _mm512_loadu_ps(V + (size_t)t * ldv + j0), a0);
        _mm512_storeu_ps(out + j0, a0);
    }
}

/* G queries at once (see ops.h): per key, the row is loaded once and each
 * query runs the single-query kernel's exact steps (FMA over d in order into
 * one accumulator, _mm512_reduce_add_ps, times scale). */
T_AVX512 static inline void dot_rows_heads(int G, int T, int d, const float *q, size_t qs, const float *K,
                                           size_t ldk, float scale, float *s, size_t ss) {
    for (int t = 0; t < T; t++) {
        const float *k = K + (size_t)t * ldk;
        __m512 a[4];
        UNROLL4
        for (int h = 0; h < 4; h++) a[h] = _mm512_setzero_ps();
        UNROLL4
        for (int j = 0; j < d; j += 16) {
            const __m512 kv = _mm512_loadu_ps(k + j);
            UNROLL4
            for (int h = 0; h < G; h++) a[h] = _mm512_fmadd_ps(_mm512_loadu_ps(q + h * qs + j), kv, a[h]);
        }
        UNROLL4
        for (int h = 0; h < G; h++) s[h * ss + t] = scale * _mm512_reduce_add_ps(a[h]);
    }
}

T_AVX512 void vec_dot_rows_heads_avx512(int G, int T, int d, const float *q, size_t qs, const float *K, size_t ldk,
                                        float scale, float *s, size_t ss) {
    switch (G) {
    case 4: dot_rows_heads(4, T, d, q, qs, K, ldk, scale, s, ss); break;
    case 3: dot_rows_heads(3, T, d, q, qs, K, ldk, scale, s, ss); break;
    case 2: dot_rows_heads(2, T, d, q, qs, K, ldk, scale, s, ss); break;
    default: vec_dot_rows_avx512(T, d, q, K, ldk, scale, s); break;
    }
}

/* per 64 columns, G x 4 accumulators over the keys in order (the
 * single-query kernel's blocks: 64 columns, then 16 at a time) */
T_AVX512 static inline void wsum_rows_heads(int G, int T, int d, const float *p, size_t ps, const float *V,
                                            size_t ldv, float *out, size_t os) {
    int j0 = 0;
    for (; j0 + 64 <= d; j0 += 64) {
        __m512 a[4][4];
        UNROLL4
        for (int h = 0; h < 4; h++)
            UNROLL4
            for (int c = 0; c < 4; c++) a[h][c] = _mm512_setzero_ps();
        for (int t = 0; t < T; t++) {
            const float *v = V + (size_t)t * ldv + j0;
            const __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16), v2 = _mm512_loadu_ps(v + 32),
                         v3 = _mm512_loadu_ps(v + 48);
            UNROLL4
            for (int h = 0; h < G; h++) {
                const __m512 w = _mm512_set1_ps(p[h * ps + t]);
                a[h][0] = _mm512_fmadd_ps(w, v0, a[h][0]);
                a[h][1] = _mm512_fmadd_ps(w, v1, a[h][1]);
                a[h][2] = _mm512_fmadd_ps(w, v2, a[h][2]);
                a[h][3] = _mm512_fmadd_ps(w, v3, a[h][3]);
            }
        }
        UNROLL4
        for (int h = 0; h < G; h++)
            UNROLL4
            for (int c = 0; c < 4; c++) _mm512_storeu_ps(out + h * os + j0 + 16 * c, a[h][c]);
    }
    for (; j0 < d; j0 += 16) {
        __m512 a[4];
        UNROLL4
        for (int h = 0; h < 4; h++) a[h] = _mm512_setzero_ps();
        for (int t = 0; t < T; t++) {
            const __m512 v = _mm512_loadu_ps(V + (size_t)t * ldv + j0);
            UNROLL4
            for (int h = 0; h < G; h++) a[h] = _mm512_fmadd_ps(_mm512_set1_ps(p[h * ps + t]), v, a[h]);
        }
        UNROLL4
        for (int h = 0; h < G; h++) _mm512_storeu_ps(out + h * os + j0, a[h]);
    }
}

T_AVX512 void vec_wsum_rows_heads_avx512(int G, int T, int d, const float *p, size_t ps, const float *V, size_t ldv,
                                         float *out, size_t os) {
    switch (G) {
    case 4: wsum_rows_heads(4, T, d, p, ps, V, ldv, out, os); break;
    case 3: wsum_rows_heads(3, T, d, p, ps, V, ldv, out, os); break;
    case 2: wsum_rows_heads(2, T, d, p, ps, V, ldv, out, os); break;
    default: vec_wsum_rows_avx512(T, d, p, V, ldv, out); break;
    }
}

T_AVX512 float vec_exp_sum_avx512(int64_t n, float *x, float m) {
    __m512 mv = _mm512_set1_ps(m), acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv));
        _mm512_storeu_ps(x + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mv));
        _mm512_mask_storeu_ps(x + i, k, e);
        acc = _mm512_mask_add_ps(acc, k, acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}

T_AVX512 void swiglu_forward_avx512(float *out, const float *gate, const float *up, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = _mm512_loadu_ps(gate + i);
        __m512 e = exp512(_mm512_sub_ps(zero, g));
        __m512 y = _mm512_div_ps(g, _mm512_add_ps(one, e));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(y, _mm512_loadu_ps(up + i)));
    }
    swiglu_forward_ref(out + i, gate + i, up + i, n - i);
}

#endif /* MEND_OPS_X86 */

/* ---- dispatch ----------------------------------------------------------------- */

void vec_dot_rows(int T, int d, const float *q, const float *K, size_t ldk, float scale, float *s) {
#ifdef MEND_OPS_X86
    int lvl = mend_cpu_simd_level();
    if (lvl >= MEND_SIMD_AVX512 && d % 16 == 0) { vec_dot_rows_avx512(T, d, q, K, ldk, scale, s); return; }
    if (lvl >= MEND_SIMD_AVX2 && d % 8 == 0) { vec_dot_rows_avx2(T, d, q, K, ldk, scale, s); return; }
#endif
    vec_dot_rows_ref(T, d, q, K, ldk, scale, s);
}

void vec_wsum_rows(int T, int d, const float *p, const float *V, size_t ldv, float *out) {
#ifdef MEND_OPS_X86
    int lvl = mend_cpu_simd_level();
    if (lvl >= MEND_SIMD_AVX512 && d % 16 == 0) { vec_wsum_rows_avx512(T, d, p, V, ldv, out); return; }
    if (lvl >= MEND_SIMD_AVX2 && d % 8 == 0) { vec_wsum_rows_avx2(T, d, p, V, ldv, out); return; }
#endif
    vec_wsum_rows_ref(T, d, p, V, ldv, out);
}

float vec_exp_sum(int64_t n, float *x, float m) {
#ifdef MEND_OPS_X86
    int lvl = mend_cpu_simd_level();
    if (lvl >= MEND_SIMD_AVX512) return vec_exp_sum_avx512(n, x, m);
    if (lvl >= MEND_SIMD_AVX2) return vec_exp_sum_avx2(n, x, m);
#endif
    return vec_exp_sum_ref(n, x, m);
}

static void swiglu_chunk(float *out, const float *gate, const float *up, int64_t n) {
#ifdef MEND_OPS_X86
    int lvl = mend_cpu_simd_level();
    if (lvl >= MEND_SIMD_AVX512) { swiglu_forward_avx512(out, gate, up, n); return; }
    if (lvl >= MEND_SIMD_AVX2) { swiglu_forward_avx2(out, gate, up, n); return; }
#endif
    swiglu_forward_ref(out, gate, up, n);
}

/* ---- layers --------------------------------------------------------------------- */

void rmsnorm_forward(float *out, const float *x, const float *w, int n, int dim, float eps) {
#pragma omp parallel for schedule(static) if ((int64_t)n * dim > 65536)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * dim;
        float *oi = out + (size_t)i * dim;
        double ss = 0.0;
        for (int j = 0; j < dim; j++) ss += (double)xi[j] * xi[j];
        const float r = (float)(1.0 / sqrt(ss / dim + (double)eps));
        for (int j = 0; j < dim; j++) oi[j] = xi[j] * r * w[j];
    }
}

void layernorm_forward(float *out, const float *x, const float *w, const float *b, int n, int dim, float eps) {
#pragma omp parallel for schedule(static) if ((int64_t)n * dim > 65536)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * dim;
        float *oi = out + (size_t)i * dim;
        /* two passes: the mean, then the variance around it */
        double s = 0.0, ss = 0.0;
        for (int j = 0; j < dim; j++) s += xi[j];
        const double mean = s / dim;
        for (int j = 0; j < dim; j++) ss += ((double)xi[j] - mean) * ((double)xi[j] - mean);
        const float r = (float)(1.0 / sqrt(ss / dim + (double)eps)), mf = (float)mean;
        for (int j = 0; j < dim; j++) oi[j] = (xi[j] - mf) * r * w[j] + b[j];
    }
}

void relu_forward(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void rope_tables(float *cos_t, float *sin_t, int n, int pos0, int head_dim, float theta) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        const double freq = pow((double)theta, -2.0 * i / head_dim);
        for (int p = 0; p < n; p++) {
            const double a = (double)(pos0 + p) * freq;
            cos_t[(size_t)p * half + i] = (float)cos(a);
            sin_t[(size_t)p * half + i] = (float)sin(a);
        }
    }
}

void rope_forward(float *x, int n, size_t ldx, int n_heads, int head_dim,
                  const float *cos_t, const float *sin_t, int type) {
    const int half = head_dim / 2;
    if (type < 0) return;   /* no rotary embedding (opt) */
#pragma omp parallel for schedule(static) if ((int64_t)n * n_heads * head_dim > 65536)
    for (int p = 0; p < n; p++) {
        const float *c = cos_t + (size_t)p * half, *s = sin_t + (size_t)p * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)p * ldx + (size_t)h * head_dim;
            if (type == 2) {            /* NEOX: (v[i], v[i+half]) */
                for (int i = 0; i < half; i++) {
                    const float a = v[i], b = v[i + half];
                    v[i] = a * c[i] - b * s[i];
                    v[i + half] = a * s[i] + b * c[i];
                }
            } else {                    /* NORM: (v[2i], v[2i+1]) */
                for (int i = 0; i < half; i++) {
                    const float a = v[2 * i], b = v[2 * i + 1];
                    v[2 * i] = a * c[i] - b * s[i];
                    v[2 * i + 1] = a * s[i] + b * c[i];
                }
            }
        }
    }
}

float vec_softmax_inv(int64_t n, float *x) {
    float m = x[0];
#pragma omp simd reduction(max : m)
    for (int64_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return 1.0f / vec_exp_sum(n, x, m);
}

void vec_softcap(int64_t n, float *x, float cap) {
    if (cap <= 0.0f) return;
    for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] / cap);
}

void softmax_forward(float *x, int64_t n) {
    if (n <= 0) return;
    const float inv = vec_softmax_inv(n, x);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void swiglu_forward(float *out, const float *gate, const float *up, int64_t n) {
    const int64_t chunk = 4096;
    const int64_t n_chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n_chunks > 4)
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t a = c * chunk, len = n - a < chunk ? n - a : chunk;
        swiglu_chunk(out + a, gate + a, up + a, len);
    }
}

void matmul_forward(float *out, size_t ldo, const float *x, const float *W, const float *bias,
                    int n, int m, int k, float beta) {
    if (n == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, m, k, 1.0f, W, k, x, 1, beta, out, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, m, k, 1.0f, x, k, W, k,
                    beta, out, (int)ldo);
    }
    if (bias) {
        for (int i = 0; i < n; i++) {
            float *o = out + (size_t)i * ldo;
            for (int j = 0; j < m; j++) o[j] += bias[j];
        }
    }
}

/* ---- attention ------------------------------------------------------------------- */

size_t attention_scratch_floats(int n_heads, int n_kv_heads, int n_ctx) {
    return (size_t)(n_heads / n_kv_heads) * (size_t)n_ctx;
}

void attention_forward(float *out, const float *q, const float *kc, const float *vc,
                       int n, int pos0, int n_heads, int n_kv_heads, int hd, float softcap,
                       float *scratch, int n_ctx, int n_threads) {
    const int g = n_heads / n_kv_heads;
    const size_t qd = (size_t)n_heads * hd, kvd = (size_t)n_kv_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t n_tasks = (int64_t)n * n_kv_heads;
    if (n_threads < 1) n_threads = 1;
    if (n_tasks < n_threads) n_threads = (int)n_tasks;
#ifdef MEND_OPS_X86
    const int heads = g > 1 && hd % 16 == 0 && mend_cpu_simd_level() >= MEND_SIMD_AVX512;
#endif
#pragma omp parallel num_threads(n_threads)
    {
        float *sc = scratch + (size_t)omp_get_thread_num() * (size_t)g * n_ctx;
        /* longest rows first: task 0 is the last position */
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < n_tasks; task++) {
            const int i = n - 1 - (int)(task / n_kv_heads);
            const int kvh = (int)(task % n_kv_heads);
            const int T = pos0 + i + 1;
            const float *K = kc + (size_t)kvh * hd, *V = vc + (size_t)kvh * hd;
#ifdef MEND_OPS_X86
            if (heads) {   /* the group's heads in fours: each K and V row read once per four */
                const float *qg = q + (size_t)i * qd + (size_t)kvh * g * hd;
                float *og = out + (size_t)i * qd + (size_t)kvh * g * hd;
                for (int h0 = 0; h0 < g; h0 += 4) {
                    const int G = g - h0 < 4 ? g - h0 : 4;
                    float *s = sc + (size_t)h0 * n_ctx;
                    vec_dot_rows_heads_avx512(G, T, hd, qg + (size_t)h0 * hd, (size_t)hd, K, kvd, scale, s,
                                              (size_t)n_ctx);
                    float inv[4];
                    for (int h = 0; h < G; h++) {
                        vec_softcap(T, s + (size_t)h * n_ctx, softcap);
                        inv[h] = vec_softmax_inv(T, s + (size_t)h * n_ctx);
                    }
                    vec_wsum_rows_heads_avx512(G, T, hd, s, (size_t)n_ctx, V, kvd, og + (size_t)h0 * hd, (size_t)hd);
                    for (int h = 0; h < G; h++)
                        for (int j = 0; j < hd; j++) og[(size_t)(h0 + h) * hd + j] *= inv[h];
                }
                continue;
            }
#endif
            for (int hh = 0; hh < g; hh++) {
                const int h = kvh * g + hh;
                float *s = sc + (size_t)hh * n_ctx;
                const float *qh = q + (size_t)i * qd + (size_t)h * hd;
                float *oh = out + (size_t)i * qd + (size_t)h * hd;
                vec_dot_rows(T, hd, qh, K, kvd, scale, s);
                vec_softcap(T, s, softcap);
                const float inv = vec_softmax_inv(T, s);
                vec_wsum_rows(T, hd, s, V, kvd, oh);
                for (int j = 0; j < hd; j++) oh[j] *= inv;
            }
        }
    }
}

void attention_forward_spans(float *out, const float *q, const float *kc, const float *vc,
                             int n, const int *spans, int n_heads, int n_kv_heads, int hd, float softcap,
                             float *scratch, int n_ctx, int n_threads) {
    const int g = n_heads / n_kv_heads;
    const size_t qd = (size_t)n_heads * hd, kvd = (size_t)n_kv_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t n_tasks = (int64_t)n * n_kv_heads;
    if (n_threads < 1) n_threads = 1;
    if (n_tasks < n_threads) n_threads = (int)n_tasks;
#pragma omp parallel num_threads(n_threads)
    {
        float *sc = scratch + (size_t)omp_get_thread_num() * (size_t)g * n_ctx;
        float part[256];    /* one range's weighted sum of values (hd <= 256) */
#pragma omp for schedule(dynamic, 4)
        for (int64_t task = 0; task < n_tasks; task++) {
            const int i = (int)(task / n_kv_heads);
            const int kvh = (int)(task % n_kv_heads);
            const int *sp = spans + (size_t)i * 6;
            int T = 0;
            for (int r = 0; r < 3; r++) T += sp[2 * r + 1] - sp[2 * r];
            for (int hh = 0; hh < g; hh++) {
                const int h = kvh * g + hh;
                float *s = sc + (size_t)hh * n_ctx;
                const float *qh = q + (size_t)i * qd + (size_t)h * hd;
                float *oh = out + (size_t)i * qd + (size_t)h * hd;
                int o = 0;
                for (int r = 0; r < 3; r++) {
                    const int a = sp[2 * r], len = sp[2 * r + 1] - a;
                    if (len <= 0) continue;
                    vec_dot_rows(len, hd, qh, kc + (size_t)a * kvd + (size_t)kvh * hd, kvd, scale, s + o);
                    o += len;
                }
                vec_softcap(T, s, softcap);
                const float inv = vec_softmax_inv(T, s);
                int first = 1;
                o = 0;
                for (int r = 0; r < 3; r++) {
                    const int a = sp[2 * r], len = sp[2 * r + 1] - a;
                    if (len <= 0) continue;
                    const float *V = vc + (size_t)a * kvd + (size_t)kvh * hd;
                    if (first) {
                        vec_wsum_rows(len, hd, s + o, V, kvd, oh);
                        first = 0;
                    } else {
                        vec_wsum_rows(len, hd, s + o, V, kvd, part);
                        for (int j = 0; j < hd; j++) oh[j] += part[j];
                    }
                    o += len;
                }
                for (int j = 0; j < hd; j++) oh[j] *= inv;
            }
        }
    }
}
