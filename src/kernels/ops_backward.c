/* Backward twins of the dense f32 kernels (see ops_backward.h for shapes).
 *
 * Attention works on blocks of ATT_BLK query rows: a block [i0, i1) only
 * sees keys [0, i1), so the causal upper triangle is never multiplied, and
 * every product is a gemm. Softmax exponentials go through vec_exp_sum
 * (SIMD, ops.h). The row kernels are plain loops the compiler vectorizes at
 * the baseline; their cost is small next to the gemms. */
#include "kernels/ops_backward.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/simd_exp.h"
#include "kernels/ops.h"
#include "kernels/sgemm.h"

#define ATT_BLK 128

/* ---- RMSNorm ----------------------------------------------------------------- */

void rmsnorm_backward(float *dx, const float *dy, const float *x, const float *w, int n, int dim, float eps,
                      float beta) {
#pragma omp parallel for schedule(static) if ((int64_t)n * dim > 65536)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * dim, *dyi = dy + (size_t)i * dim;
        float *dxi = dx + (size_t)i * dim;
        double ss = 0.0, dot = 0.0;
        /* lane-wise partial sums in double (the order is fixed by the build,
         * so a step stays reproducible) */
#pragma omp simd reduction(+ : ss, dot)
        for (int j = 0; j < dim; j++) {
            ss += (double)xi[j] * xi[j];
            dot += (double)w[j] * dyi[j] * xi[j];
        }
        const double r = 1.0 / sqrt(ss / dim + (double)eps);
        const float rf = (float)r, c = (float)(r * r * r * dot / dim);
        /* dx never overlaps dy, x or w: simd stops the compiler from
         * keeping these loops scalar for fear that it might */
        if (beta == 0.0f) {
#pragma omp simd
            for (int j = 0; j < dim; j++) dxi[j] = rf * w[j] * dyi[j] - c * xi[j];
        } else {
#pragma omp simd
            for (int j = 0; j < dim; j++) dxi[j] = beta * dxi[j] + rf * w[j] * dyi[j] - c * xi[j];
        }
    }
}

/* ---- LayerNorm --------------------------------------------------------------------- */

void layernorm_backward(float *dx, const float *dy, const float *x, const float *w, int n, int dim, float eps,
                        float beta) {
#pragma omp parallel for schedule(static) if ((int64_t)n * dim > 65536)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * dim, *dyi = dy + (size_t)i * dim;
        float *dxi = dx + (size_t)i * dim;
        double s = 0.0, ss = 0.0, sg = 0.0, sgx = 0.0;
        for (int j = 0; j < dim; j++) s += xi[j];
        const double mean = s / dim;
        for (int j = 0; j < dim; j++) {
            const double d = (double)xi[j] - mean, g = (double)w[j] * dyi[j];
            ss += d * d;
            sg += g;
            sgx += g * d;
        }
        const double r = 1.0 / sqrt(ss / dim + (double)eps);
        /* dx = r g - r mean(g) - (x - mean) r^3 mean(g (x - mean)) */
        const float rf = (float)r, a = (float)(r * sg / dim), c = (float)(r * r * r * sgx / dim), mf = (float)mean;
        if (beta == 0.0f) {
            for (int j = 0; j < dim; j++) dxi[j] = rf * w[j] * dyi[j] - a - c * (xi[j] - mf);
        } else {
            for (int j = 0; j < dim; j++) dxi[j] = beta * dxi[j] + rf * w[j] * dyi[j] - a - c * (xi[j] - mf);
        }
    }
}

/* ---- ReLU ------------------------------------------------------------------------------ */

void relu_backward(float *dx, const float *dy, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

/* ---- RoPE ------------------------------------------------------------------------ */

void rope_backward(float *dx, int n, size_t ldx, int n_heads, int head_dim,
                   const float *cos_t, const float *sin_t, int type) {
    const int half = head_dim / 2;
    if (type < 0) return;   /* no rotary embedding (opt) */
#pragma omp parallel for schedule(static) if ((int64_t)n * n_heads * head_dim > 65536)
    for (int p = 0; p < n; p++) {
        const float *c = cos_t + (size_t)p * half, *s = sin_t + (size_t)p * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = dx + (size_t)p * ldx + (size_t)h * head_dim;
            if (type == 2) {
                for (int i = 0; i < half; i++) {
                    const float a = v[i], b = v[i + half];
                    v[i] = a * c[i] + b * s[i];
                    v[i + half] = -a * s[i] + b * c[i];
                }
            } else {
                for (int i = 0; i < half; i++) {
                    const float a = v[2 * i], b = v[2 * i + 1];
                    v[2 * i] = a * c[i] + b * s[i];
                    v[2 * i + 1] = -a * s[i] + b * c[i];
                }
            }
        }
    }
}

/* ---- SwiGLU ------------------------------------------------------------------------ */

void swiglu_backward_ref(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                         int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i], u = up[i], d = dout[i];
        const float sg = 1.0f / (1.0f + expf(-g));
        dup[i] = d * g * sg;
        dgate[i] = d * u * sg * (1.0f + g * (1.0f - sg));
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define T_AVX2 __attribute__((target("avx2,fma")))
#define T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

/* dup = dout sg(g) g, dgate = dout u sg(g) (1 + g (1 - sg(g))), 8 or 16 at a
 * time; the tail goes to the scalar twin */
T_AVX2 static void swiglu_backward_avx2(float *dgate, float *dup, const float *dout, const float *gate,
                                        const float *up, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i), u = _mm256_loadu_ps(up + i), d = _mm256_loadu_ps(dout + i);
        const __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(zero, g))));
        const __m256 dsg = _mm256_mul_ps(d, sg);
        _mm256_storeu_ps(dup + i, _mm256_mul_ps(dsg, g));
        /* d u sg (1 + g (1 - sg)) */
        const __m256 t = _mm256_fmadd_ps(g, _mm256_sub_ps(one, sg), one);
        _mm256_storeu_ps(dgate + i, _mm256_mul_ps(_mm256_mul_ps(dsg, u), t));
    }
    swiglu_backward_ref(dgate + i, dup + i, dout + i, gate + i, up + i, n - i);
}

T_AVX512 static void swiglu_backward_avx512(float *dgate, float *dup, const float *dout, const float *gate,
                                            const float *up, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 g = _mm512_loadu_ps(gate + i), u = _mm512_loadu_ps(up + i), d = _mm512_loadu_ps(dout + i);
        const __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(zero, g))));
        const __m512 dsg = _mm512_mul_ps(d, sg);
        _mm512_storeu_ps(dup + i, _mm512_mul_ps(dsg, g));
        /* d u sg (1 + g (1 - sg)) */
        const __m512 t = _mm512_fmadd_ps(g, _mm512_sub_ps(one, sg), one);
        _mm512_storeu_ps(dgate + i, _mm512_mul_ps(_mm512_mul_ps(dsg, u), t));
    }
    swiglu_backward_ref(dgate + i, dup + i, dout + i, gate + i, up + i, n - i);
}
#endif

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    const int level = mend_cpu_simd_level();
#endif
    const int64_t chunk = 4096;
    const int64_t n_chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (n_chunks > 4)
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t a = c * chunk, len = n - a < chunk ? n - a : chunk;
#if defined(__x86_64__) && defined(__GNUC__)
        if (level >= MEND_SIMD_AVX512) {
            swiglu_backward_avx512(dgate + a, dup + a, dout + a, gate + a, up + a, len);
            continue;
        }
        if (level >= MEND_SIMD_AVX2) {
            swiglu_backward_avx2(dgate + a, dup + a, dout + a, gate + a, up + a, len);
            continue;
        }
#endif
        swiglu_backward_ref(dgate + a, dup + a, dout + a, gate + a, up + a, len);
    }
}

/* ---- matmul ------------------------------------------------------------------------- */

void matmul_backward(float *dx, size_t ldx, const float *dy, size_t ldy, const float *W, size_t ldw,
                     int n, int m, int k, float beta) {
    if (n <= 0 || k <= 0) return;
    if (m <= 0) {
        if (beta == 0.0f)
            for (int i = 0; i < n; i++) memset(dx + (size_t)i * ldx, 0, (size_t)k * sizeof(float));
        return;
    }
    if (n == 1)   /* dx = Wᵀ dy: (k) = (m, k)ᵀ (m) */
        cblas_sgemv(CblasRowMajor, CblasTrans, m, k, 1.0f, W, (int)ldw, dy, 1, beta, dx, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, k, m, 1.0f, dy, (int)ldy, W, (int)ldw, beta,
                    dx, (int)ldx);
}

/* ---- attention ----------------------------------------------------------------------- */

size_t attention_backward_scratch_floats(int T, int n_heads, int hd, int n_threads) {
    const size_t blk = T < ATT_BLK ? (size_t)T : ATT_BLK;
    /* per-head dK, dV (n_heads, T, hd), then per thread: P, dP and the capped
     * scores' tanh (softcap) blocks (blk, T) */
    return (size_t)(n_threads > 0 ? n_threads : 1) * 3 * blk * (size_t)T + 2 * (size_t)n_heads * T * hd;
}

/* P rows [i0, i1) of head h: P (i1-i0, ldp) over keys [0, i1), masked
 * entries (after the query, or before its window) set to zero. With
 * softcap > 0 the scaled scores are capped first and, when U is given,
 * U (i1-i0, ldp) receives their tanh over the visible keys. */
static void att_probs(float *P, float *U, size_t ldp, const float *q, size_t qd, const float *k, size_t kvd, int i0,
                      int i1, int hd, float scale, int window, float softcap) {
    const int nb = i1 - i0;
    const int own = !mend_sgemm_nt(P, ldp, q + (size_t)i0 * qd, qd, nb, k, kvd, i1, hd, 0.0f);
    if (!own)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, i1, hd, scale, q + (size_t)i0 * qd, (int)qd, k,
                    (int)kvd, 0.0f, P, (int)ldp);
    for (int r = 0; r < nb; r++) {
        float *p = P + (size_t)r * ldp;
        const int n = i0 + r + 1;   /* keys t0..i0+r */
        const int t0 = window > 0 && n > window ? n - window : 0;
        if (own) {
#pragma omp simd
            for (int t = t0; t < n; t++) p[t] *= scale;
        }
        if (softcap > 0.0f) {
            float *u = U ? U + (size_t)r * ldp : NULL;
            for (int t = t0; t < n; t++) {
                const float th = tanhf(p[t] / softcap);
                p[t] = softcap * th;
                if (u) u[t] = th;
            }
        }
        const float inv = vec_softmax_inv(n - t0, p + t0);
        for (int t = 0; t < t0; t++) p[t] = 0.0f;
#pragma omp simd
        for (int t = t0; t < n; t++) p[t] *= inv;
        for (int t = n; t < i1; t++) p[t] = 0.0f;
    }
}

void attention_forward_train(float *out, const float *q, const float *k, const float *v, int T, int n_heads,
                             int n_kv_heads, int hd, int window, float softcap, float *scratch, int n_threads) {
    const int g = n_heads / n_kv_heads;
    const size_t qd = (size_t)n_heads * hd, kvd = (size_t)n_kv_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const int blk = T < ATT_BLK ? T : ATT_BLK;
    const int n_blk = (T + blk - 1) / blk;
    const int n_tasks = n_heads * n_blk;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > n_tasks) n_threads = n_tasks;
#pragma omp parallel num_threads(n_threads)
    {
        float *P = scratch + 2 * (size_t)n_heads * T * hd + (size_t)omp_get_thread_num() * 3 * blk * (size_t)T;
        /* largest blocks (the last rows) first */
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < n_tasks; task++) {
            const int b = n_blk - 1 - task / n_heads, h = task % n_heads;
            const int i0 = b * blk, i1 = i0 + blk < T ? i0 + blk : T;
            const float *kh = k + (size_t)(h / g) * hd, *vh = v + (size_t)(h / g) * hd;
            att_probs(P, NULL, (size_t)i1, q + (size_t)h * hd, qd, kh, kvd, i0, i1, hd, scale, window, softcap);
            /* O[i0:i1, h] = P V[0:i1, g] */
            float *o = out + (size_t)i0 * qd + (size_t)h * hd;
            if (mend_sgemm_nn(o, qd, P, (size_t)i1, i1 - i0, vh, kvd, i1, hd, 0.0f))
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, i1 - i0, hd, i1, 1.0f, P, i1, vh, (int)kvd,
                            0.0f, o, (int)qd);
        }
    }
}

void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                        const float *v, int T, int n_heads, int n_kv_heads, int hd, int window, float softcap,
                        float *scratch, int n_threads) {
    const int g = n_heads / n_kv_heads;
    const size_t qd = (size_t)n_heads * hd, kvd = (size_t)n_kv_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const int blk = T < ATT_BLK ? T : ATT_BLK;
    const int n_blk = (T + blk - 1) / blk;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > n_heads) n_threads = n_heads;
    float *dkh = scratch, *dvh = dkh + (size_t)n_heads * T * hd;
    float *thr = dvh + (size_t)n_heads * T * hd;
    /* heads in parallel: head h owns dQ columns of h and its own dK, dV
     * slabs (T, hd); blocks of one head run in order on one thread */
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
    for (int h = 0; h < n_heads; h++) {
        float *P = thr + (size_t)omp_get_thread_num() * 3 * blk * (size_t)T;
        float *dP = P + (size_t)blk * T, *U = dP + (size_t)blk * T;
        const float *kh = k + (size_t)(h / g) * hd, *vh = v + (size_t)(h / g) * hd;
        const float *qh = q + (size_t)h * hd, *doh = dout + (size_t)h * hd;
        float *dqh = dq + (size_t)h * hd;
        float *dk_h = dkh + (size_t)h * T * hd, *dv_h = dvh + (size_t)h * T * hd;
        memset(dk_h, 0, (size_t)T * hd * sizeof(float));
        memset(dv_h, 0, (size_t)T * hd * sizeof(float));
        for (int b = 0; b < n_blk; b++) {
            const int i0 = b * blk, i1 = i0 + blk < T ? i0 + blk : T, nb = i1 - i0;
            att_probs(P, U, (size_t)i1, qh, qd, kh, kvd, i0, i1, hd, scale, window, softcap);
            /* dP = dO[i0:i1] V[0:i1]ᵀ  (nb, i1) */
            if (mend_sgemm_nt(dP, (size_t)i1, doh + (size_t)i0 * qd, qd, nb, vh, kvd, i1, hd, 0.0f))
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, i1, hd, 1.0f, doh + (size_t)i0 * qd,
                            (int)qd, vh, (int)kvd, 0.0f, dP, i1);
            /* dV[0:i1] += Pᵀ dO[i0:i1]  (i1, hd) */
            if (mend_sgemm_tn(dv_h, (size_t)hd, P, (size_t)i1, i1, doh + (size_t)i0 * qd, qd, nb, hd, 1.0f))
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, i1, hd, nb, 1.0f, P, i1, doh + (size_t)i0 * qd,
                            (int)qd, 1.0f, dv_h, hd);
            /* dS = scale * P ∘ (dP - rowsum(P ∘ dP)) (the score scale folded
             * in), written over dP */
            for (int r = 0; r < nb; r++) {
                const float *p = P + (size_t)r * i1;
                float *d = dP + (size_t)r * i1;
                const int n = i0 + r + 1;
                double s = 0.0;
#pragma omp simd reduction(+ : s)
                for (int t = 0; t < n; t++) s += (double)p[t] * d[t];
                const float sf = (float)s;
#pragma omp simd
                for (int t = 0; t < n; t++) d[t] = scale * (p[t] * (d[t] - sf));
                if (softcap > 0.0f) {   /* through the cap: d tanh(x) = 1 - tanh(x)^2 */
                    const float *u = U + (size_t)r * i1;
                    const int t0 = window > 0 && n > window ? n - window : 0;   /* p is 0 before t0 */
                    for (int t = t0; t < n; t++) d[t] *= 1.0f - u[t] * u[t];
                }
                for (int t = n; t < i1; t++) d[t] = 0.0f;
            }
            /* dQ[i0:i1] = dS K[0:i1]  (nb, hd) */
            if (mend_sgemm_nn(dqh + (size_t)i0 * qd, qd, dP, (size_t)i1, nb, kh, kvd, i1, hd, 0.0f))
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, i1, 1.0f, dP, i1, kh, (int)kvd, 0.0f,
                            dqh + (size_t)i0 * qd, (int)qd);
            /* dK[0:i1] += dSᵀ Q[i0:i1]  (i1, hd) */
            if (mend_sgemm_tn(dk_h, (size_t)hd, dP, (size_t)i1, i1, qh + (size_t)i0 * qd, qd, nb, hd, 1.0f))
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, i1, hd, nb, 1.0f, dP, i1, qh + (size_t)i0 * qd,
                            (int)qd, 1.0f, dk_h, hd);
        }
    }
    /* sum the heads of each group into the kv head, in a fixed order */
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int t = 0; t < T; t++) {
        for (int kh = 0; kh < n_kv_heads; kh++) {
            float *dko = dk + (size_t)t * kvd + (size_t)kh * hd, *dvo = dv + (size_t)t * kvd + (size_t)kh * hd;
            for (int j = 0; j < hd; j++) dko[j] = dvo[j] = 0.0f;
            for (int hh = 0; hh < g; hh++) {
                const float *a = dkh + ((size_t)(kh * g + hh) * T + t) * hd;
                const float *b = dvh + ((size_t)(kh * g + hh) * T + t) * hd;
                for (int j = 0; j < hd; j++) {
                    dko[j] += a[j];
                    dvo[j] += b[j];
                }
            }
        }
    }
}

/* ---- losses --------------------------------------------------------------------------- */

double crossentropy_forward_backward(float *z, int V, int32_t target, float scale) {
    float mx = z[0];
    for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
    const float zt = z[target];
    const float sum = vec_exp_sum(V, z, mx);   /* z <- exp(z - mx) */
    const double loss = (double)mx + log((double)sum) - (double)zt;
    const float inv = scale / sum;
    for (int i = 0; i < V; i++) z[i] *= inv;
    z[target] -= scale;
    return loss;
}

double kl_forward_backward(float *z, const float *t, int V, int32_t target, float scale, double *ce,
                          float *work) {
    float mz = z[0], mt = t[0];
    for (int i = 1; i < V; i++) {
        mz = z[i] > mz ? z[i] : mz;
        mt = t[i] > mt ? t[i] : mt;
    }
    float *ez = work, *et = work + V;
    memcpy(ez, z, (size_t)V * sizeof(float));
    memcpy(et, t, (size_t)V * sizeof(float));
    const float sz = vec_exp_sum(V, ez, mz), st = vec_exp_sum(V, et, mt);
    const double lse_z = mz + log((double)sz), lse_t = mt + log((double)st);
    if (ce) *ce = target >= 0 ? lse_z - (double)z[target] : 0.0;
    const float isz = 1.0f / sz, ist = 1.0f / st;
    double kl = 0.0;
    for (int i = 0; i < V; i++) {
        const float pt = et[i] * ist;
        kl += (double)pt * (((double)t[i] - lse_t) - ((double)z[i] - lse_z));
        z[i] = scale * (ez[i] * isz - pt);
    }
    return kl;
}
