/* Matrix products on packed ggml blocks (see qmatmul.h): the scalar
 * activation quantizers and dot products (the _ref twins of
 * qmatmul_avx2.c / qmatmul_avx512.c / qmatmul_neon.c), the run-time kernel
 * choice, and the threaded matmul driver. */
#include "kernels/qmatmul.h"

#include <math.h>
#include <omp.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "mend.h"
#include "util/util.h"

static inline float half(mend_half h) { return mend_fp16_to_f32(h); }

/* round half to even for |v| < 2^22 (the x86 default rounding of cvtps2dq);
 * no UB for any input */
static inline int round_even(float v) {
    const float t = v + 12582912.0f;   /* 1.5 * 2^23 */
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007FFFFF) - 0x00400000;
}

static inline int clamp127(int v) { return v < -127 ? -127 : v > 127 ? 127 : v; }

/* ------------------------------------------------------------------------ */
/* activation quantizers                                                    */

/* one 32-value block: returns the float d; q[j] = round(x[j] * 127/amax) */
static float quant32(const float *x, int8_t *q) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        const float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    for (int j = 0; j < 32; j++) q[j] = (int8_t)clamp127(round_even(x[j] * id));
    return d;
}

void quantize_act_q8_0_ref(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0)
        y[b].d = mend_f32_to_fp16(quant32(x, y[b].qs));
}

void quantize_act_q8_1_ref(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / QK8_1; b++, x += QK8_1) {
        const float d = quant32(x, y[b].qs);
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) sum += y[b].qs[j];
        y[b].d = mend_f32_to_fp16(d);
        y[b].s = mend_f32_to_fp16(d * (float)sum);
    }
}

void quantize_act_q8_K_ref(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            const int v = round_even(iscale * x[j]);
            y[b].qs[j] = (int8_t)(v < -127 ? -127 : v > 127 ? 127 : v);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += y[b].qs[16 * g + j];
            y[b].bsums[g] = (int16_t)s;
        }
        y[b].d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------------------------ */
/* dot products, 32-element blocks                                          */

static inline uint32_t qh32(const uint8_t *qh) { return mend_rd32(qh); }

/* sum_j (q_j - 8) a_j, q_j the nibbles (low: j < 16, high: j >= 16) */
float vec_dot_q4_0_q8_0_ref(int64_t n, const void *vw, const void *va) {
    const block_q4_0 *w = vw;
    const block_q8_0 *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += ((w[b].qs[j] & 0x0F) - 8) * a[b].qs[j] + ((w[b].qs[j] >> 4) - 8) * a[b].qs[j + 16];
        sum += half(w[b].d) * half(a[b].d) * (float)sumi;
    }
    return sum;
}

/* sum_j q_j a_j * dw*da + mw * sa */
float vec_dot_q4_1_q8_1_ref(int64_t n, const void *vw, const void *va) {
    const block_q4_1 *w = vw;
    const block_q8_1 *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK4_1; b++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++)
            sumi += (w[b].qs[j] & 0x0F) * a[b].qs[j] + (w[b].qs[j] >> 4) * a[b].qs[j + 16];
        sum += half(w[b].d) * half(a[b].d) * (float)sumi + half(w[b].m) * half(a[b].s);
    }
    return sum;
}

float vec_dot_q5_0_q8_0_ref(int64_t n, const void *vw, const void *va) {
    const block_q5_0 *w = vw;
    const block_q8_0 *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK5_0; b++) {
        const uint32_t qh = qh32(w[b].qh);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = ((w[b].qs[j] & 0x0F) | ((qh >> j) & 1) << 4) - 16;
            const int q1 = ((w[b].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16;
            sumi += q0 * a[b].qs[j] + q1 * a[b].qs[j + 16];
        }
        sum += half(w[b].d) * half(a[b].d) * (float)sumi;
    }
    return sum;
}

float vec_dot_q5_1_q8_1_ref(int64_t n, const void *vw, const void *va) {
    const block_q5_1 *w = vw;
    const block_q8_1 *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK5_1; b++) {
        const uint32_t qh = qh32(w[b].qh);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            const int q0 = (w[b].qs[j] & 0x0F) | ((qh >> j) & 1) << 4;
            const int q1 = (w[b].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
            sumi += q0 * a[b].qs[j] + q1 * a[b].qs[j + 16];
        }
        sum += half(w[b].d) * half(a[b].d) * (float)sumi + half(w[b].m) * half(a[b].s);
    }
    return sum;
}

float vec_dot_q8_0_q8_0_ref(int64_t n, const void *vw, const void *va) {
    const block_q8_0 *w = vw;
    const block_q8_0 *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += w[b].qs[j] * a[b].qs[j];
        sum += half(w[b].d) * half(a[b].d) * (float)sumi;
    }
    return sum;
}

/* ------------------------------------------------------------------------ */
/* dot products, K-quants (256-element super-blocks) against q8_K           */

/* q2_K: 16 sub-blocks of 16, scale = low nibble, min = high nibble of
 * scales[s]; weight 128h + 32g + l is bits 2g..2g+1 of qs[32h + l].
 * dot = da*d * sum_s sc_s sum_{j in s} q_j a_j - da*dmin * sum_s mn_s bsums_s */
float vec_dot_q2_K_q8_K_ref(int64_t n, const void *vw, const void *va) {
    const block_q2_K *w = vw;
    const block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int summs = 0;
        for (int s = 0; s < 16; s++) summs += (w[b].scales[s] >> 4) * a[b].bsums[s];
        int isum = 0, is = 0;
        const int8_t *qa = a[b].qs;
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = w[b].qs + 32 * h;
            for (int g = 0; g < 4; g++) {
                for (int k = 0; k < 2; k++, qa += 16) {
                    int s = 0;
                    for (int l = 0; l < 16; l++) s += ((q[16 * k + l] >> (2 * g)) & 3) * qa[l];
                    isum += (w[b].scales[is++] & 0x0F) * s;
                }
            }
        }
        const float dall = a[b].d * half(w[b].d), dmin = a[b].d * half(w[b].dmin);
        sum += dall * (float)isum - dmin * (float)summs;
    }
    return sum;
}

/* q3_K: q = 2 low bits (as q2_K) minus 4 when bit (4h + g) of hmask[l] is
 * clear. dot = da*d * sum_s sc_s sum_{j in s} q_j a_j */
float vec_dot_q3_K_q8_K_ref(int64_t n, const void *vw, const void *va) {
    const block_q3_K *w = vw;
    const block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int8_t sc[16];
        mend_q3k_scales(w[b].scales, sc);
        int isum = 0, is = 0;
        const int8_t *qa = a[b].qs;
        for (int h = 0; h < 2; h++) {
            const uint8_t *q = w[b].qs + 32 * h;
            for (int g = 0; g < 4; g++) {
                const uint8_t m = (uint8_t)(1u << (4 * h + g));
                for (int k = 0; k < 2; k++, qa += 16) {
                    int s = 0;
                    for (int l = 0; l < 16; l++) {
                        const int o = 16 * k + l;
                        const int qv = ((q[o] >> (2 * g)) & 3) - ((w[b].hmask[o] & m) ? 0 : 4);
                        s += qv * qa[l];
                    }
                    isum += sc[is++] * s;
                }
            }
        }
        sum += a[b].d * half(w[b].d) * (float)isum;
    }
    return sum;
}

/* q4_K: 8 sub-blocks of 32; chunk j of 64 weights uses qs[32j .. 32j+31],
 * low nibbles for sub-block 2j, high for 2j+1.
 * dot = da*d * sum_s sc_s sum q a - da*dmin * sum_s mn_s (bsums_2s + bsums_2s+1) */
float vec_dot_q4_K_q8_K_ref(int64_t n, const void *vw, const void *va) {
    const block_q4_K *w = vw;
    const block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        uint8_t sc[8], mn[8];
        mend_k4_scales(w[b].scales, sc, mn);
        int summs = 0;
        for (int s = 0; s < 8; s++) summs += mn[s] * (a[b].bsums[2 * s] + a[b].bsums[2 * s + 1]);
        int isum = 0;
        for (int j = 0; j < 4; j++) {
            const uint8_t *q = w[b].qs + 32 * j;
            const int8_t *qa = a[b].qs + 64 * j;
            int s1 = 0, s2 = 0;
            for (int l = 0; l < 32; l++) {
                s1 += (q[l] & 0x0F) * qa[l];
                s2 += (q[l] >> 4) * qa[l + 32];
            }
            isum += sc[2 * j] * s1 + sc[2 * j + 1] * s2;
        }
        const float dall = a[b].d * half(w[b].d), dmin = a[b].d * half(w[b].dmin);
        sum += dall * (float)isum - dmin * (float)summs;
    }
    return sum;
}

/* q5_K: q4_K plus a fifth bit, bit s of qh[l] for weight 32s + l */
float vec_dot_q5_K_q8_K_ref(int64_t n, const void *vw, const void *va) {
    const block_q5_K *w = vw;
    const block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        uint8_t sc[8], mn[8];
        mend_k4_scales(w[b].scales, sc, mn);
        int summs = 0;
        for (int s = 0; s < 8; s++) summs += mn[s] * (a[b].bsums[2 * s] + a[b].bsums[2 * s + 1]);
        int isum = 0;
        for (int j = 0; j < 4; j++) {
            const uint8_t *q = w[b].qs + 32 * j, *qh = w[b].qh;
            const int8_t *qa = a[b].qs + 64 * j;
            int s1 = 0, s2 = 0;
            for (int l = 0; l < 32; l++) {
                const int q1 = (q[l] & 0x0F) | ((qh[l] >> (2 * j)) & 1) << 4;
                const int q2 = (q[l] >> 4) | ((qh[l] >> (2 * j + 1)) & 1) << 4;
                s1 += q1 * qa[l];
                s2 += q2 * qa[l + 32];
            }
            isum += sc[2 * j] * s1 + sc[2 * j + 1] * s2;
        }
        const float dall = a[b].d * half(w[b].d), dmin = a[b].d * half(w[b].dmin);
        sum += dall * (float)isum - dmin * (float)summs;
    }
    return sum;
}

/* q6_K: 16 sub-blocks of 16 with int8 scales, q in 0..63 stored, value q - 32.
 * dot = da*d * (sum_s sc_s sum q a - 32 * sum_s sc_s bsums_s) */
float vec_dot_q6_K_q8_K_ref(int64_t n, const void *vw, const void *va) {
    const block_q6_K *w = vw;
    const block_q8_K *a = va;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int ssum[16] = {0};
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[b].ql + 64 * h, *qh = w[b].qh + 32 * h;
            const int8_t *qa = a[b].qs + 128 * h;
            int *ss = ssum + 8 * h;
            for (int l = 0; l < 32; l++) {
                const int k = l / 16;
                const int q1 = (ql[l] & 0x0F) | ((qh[l] >> 0) & 3) << 4;
                const int q2 = (ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4;
                const int q3 = (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4;
                const int q4 = (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4;
                ss[k + 0] += q1 * qa[l];
                ss[k + 2] += q2 * qa[l + 32];
                ss[k + 4] += q3 * qa[l + 64];
                ss[k + 6] += q4 * qa[l + 96];
            }
        }
        int isum = 0, corr = 0;
        for (int s = 0; s < 16; s++) {
            isum += w[b].scales[s] * ssum[s];
            corr += w[b].scales[s] * a[b].bsums[s];
        }
        isum -= 32 * corr;
        sum += a[b].d * half(w[b].d) * (float)isum;
    }
    return sum;
}

/* ------------------------------------------------------------------------ */
/* float weights                                                            */

float vec_dot_f16_f32_ref(int64_t n, const void *vw, const void *va) {
    const mend_half *w = vw;
    const float *a = va;
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) sum += (double)half(w[j]) * a[j];
    return (float)sum;
}

float vec_dot_f32_f32_ref(int64_t n, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) sum += (double)w[j] * a[j];
    return (float)sum;
}

/* ------------------------------------------------------------------------ */
/* kernel table                                                             */

typedef struct kentry {
    uint32_t wtype, atype;
    mend_vec_dot_fn dot_ref;
#ifdef MEND_QMATMUL_HAVE_SIMD
    mend_vec_dot_fn dot_avx2, dot_avx512;
    int avx512_vnni;   /* the AVX-512 dot needs VNNI */
    mend_vec_dot4_fn dot4_avx2, dot4_avx512;
    mend_vec_dotw4_fn dotw4_avx2, dotw4_avx512;
    mend_vec_dot24_fn dot24_avx2, dot24_avx512;
#endif
#ifdef MEND_QMATMUL_HAVE_NEON
    mend_vec_dot_fn dot_neon, dot_neon_dot;   /* plain NEON, dot-product extension */
#endif
} kentry;

#ifdef MEND_QMATMUL_HAVE_SIMD
#define KE(w, a, name, vnni) \
    {MEND_TYPE_##w, MEND_TYPE_##a, vec_dot_##name##_ref, vec_dot_##name##_avx2, vec_dot_##name##_avx512, vnni, \
     NULL, NULL, NULL, NULL, NULL, NULL}
/* 32-element blocks (VNNI at the AVX-512 level) and floats: every tile at
 * both levels */
#define KE32(w, a, name, vnni) \
    {MEND_TYPE_##w, MEND_TYPE_##a, vec_dot_##name##_ref, vec_dot_##name##_avx2, vec_dot_##name##_avx512, vnni, \
     vec_dot4_##name##_avx2, vec_dot4_##name##_avx512, vec_dotw4_##name##_avx2, vec_dotw4_##name##_avx512, \
     vec_dot24_##name##_avx2, vec_dot24_##name##_avx512}
/* floats: the AVX2 single-row kernel beats its 4 x 1 tile (measured), so
 * rows of one activation take it */
#define KEF(w, name) \
    {MEND_TYPE_##w, MEND_TYPE_F32, vec_dot_##name##_ref, vec_dot_##name##_avx2, vec_dot_##name##_avx512, 0, \
     vec_dot4_##name##_avx2, vec_dot4_##name##_avx512, NULL, vec_dotw4_##name##_avx512, \
     vec_dot24_##name##_avx2, vec_dot24_##name##_avx512}
/* K-quants: AVX-512 four-activation-row kernels */
#define KEK(w, name) \
    {MEND_TYPE_##w, MEND_TYPE_Q8_K, vec_dot_##name##_ref, vec_dot_##name##_avx2, vec_dot_##name##_avx512, 0, \
     NULL, vec_dot4_##name##_avx512, NULL, NULL, NULL, NULL}
#elif defined(MEND_QMATMUL_HAVE_NEON)
#define KE(w, a, name, vnni) \
    {MEND_TYPE_##w, MEND_TYPE_##a, vec_dot_##name##_ref, vec_dot_##name##_neon, vec_dot_##name##_neon_dot}
#define KE32(w, a, name, vnni) KE(w, a, name, vnni)
#define KEK(w, name) KE(w, Q8_K, name, 0)
#define KEF(w, name) KE(w, F32, name, 0)
#else
#define KE(w, a, name, vnni) {MEND_TYPE_##w, MEND_TYPE_##a, vec_dot_##name##_ref}
#define KE32(w, a, name, vnni) KE(w, a, name, vnni)
#define KEK(w, name) KE(w, Q8_K, name, 0)
#define KEF(w, name) KE(w, F32, name, 0)
#endif

static const kentry g_kernels[] = {
    KE32(Q4_0, Q8_0, q4_0_q8_0, 1), KE32(Q4_1, Q8_1, q4_1_q8_1, 1), KE32(Q5_0, Q8_0, q5_0_q8_0, 1),
    KE32(Q5_1, Q8_1, q5_1_q8_1, 1), KE32(Q8_0, Q8_0, q8_0_q8_0, 1),
    KEK(Q2_K, q2_K_q8_K), KEK(Q3_K, q3_K_q8_K), KEK(Q4_K, q4_K_q8_K), KEK(Q5_K, q5_K_q8_K), KEK(Q6_K, q6_K_q8_K),
    KEF(F16, f16_f32), KEF(F32, f32_f32),
};

static const kentry *find_kernel(uint32_t wtype) {
    for (size_t i = 0; i < sizeof g_kernels / sizeof g_kernels[0]; i++)
        if (g_kernels[i].wtype == wtype) return &g_kernels[i];
    return NULL;
}

int mend_qdot_act_type(uint32_t wtype) {
    const kentry *e = find_kernel(wtype);
    return e ? (int)e->atype : -1;
}

static mend_quantize_act_fn pick_quant(uint32_t atype, int level) {
#ifdef MEND_QMATMUL_HAVE_SIMD
    if (level >= MEND_SIMD_AVX512) {
        switch (atype) {
        case MEND_TYPE_Q8_0: return quantize_act_q8_0_avx512;
        case MEND_TYPE_Q8_1: return quantize_act_q8_1_avx512;
        case MEND_TYPE_Q8_K: return quantize_act_q8_K_avx512;
        default: return NULL;
        }
    }
    if (level >= MEND_SIMD_AVX2) {
        switch (atype) {
        case MEND_TYPE_Q8_0: return quantize_act_q8_0_avx2;
        case MEND_TYPE_Q8_1: return quantize_act_q8_1_avx2;
        case MEND_TYPE_Q8_K: return quantize_act_q8_K_avx2;
        default: return NULL;
        }
    }
#endif
#ifdef MEND_QMATMUL_HAVE_NEON
    if (level >= MEND_SIMD_NEON) {
        switch (atype) {
        case MEND_TYPE_Q8_0: return quantize_act_q8_0_neon;
        case MEND_TYPE_Q8_1: return quantize_act_q8_1_neon;
        case MEND_TYPE_Q8_K: return quantize_act_q8_K_neon;
        default: return NULL;
        }
    }
#endif
    switch (atype) {
    case MEND_TYPE_Q8_0: return quantize_act_q8_0_ref;
    case MEND_TYPE_Q8_1: return quantize_act_q8_1_ref;
    case MEND_TYPE_Q8_K: return quantize_act_q8_K_ref;
    default: return NULL;
    }
}

int mend_qdot_kernel_get(uint32_t wtype, int level, mend_qdot_kernel *k) {
    const kentry *e = find_kernel(wtype);
    if (!e)
        return mend_set_error(MEND_EUNSUPPORTED, "qmatmul: no native dot product for weight type %s (id %u)",
                              mend_type_name(wtype), wtype);
    const int have = mend_cpu_simd_level();
    if (level < 0 || level > have) level = have;
    memset(k, 0, sizeof *k);
    k->wtype = e->wtype;
    k->atype = e->atype;
    k->blck = mend_type_get(wtype)->blck_size;
    if (e->atype != MEND_TYPE_F32) k->blck = mend_type_get(e->atype)->blck_size;
    k->w_block_bytes = mend_type_get(wtype)->type_size * (size_t)(k->blck / mend_type_get(wtype)->blck_size);
    k->a_block_bytes = mend_type_get(e->atype)->type_size * (size_t)(k->blck / mend_type_get(e->atype)->blck_size);
    k->dot = e->dot_ref;
    k->level = MEND_SIMD_SCALAR;
#ifdef MEND_QMATMUL_HAVE_SIMD
    if (level >= MEND_SIMD_AVX512 && (!e->avx512_vnni || mend_cpu_has_avx512_vnni())) {
        k->dot = e->dot_avx512;
        k->dot4 = e->dot4_avx512;
        k->dotw4 = e->dotw4_avx512;
        k->dot24 = e->dot24_avx512;
        k->level = MEND_SIMD_AVX512;
        k->vnni = e->avx512_vnni;
    } else if (level >= MEND_SIMD_AVX2) {
        k->dot = e->dot_avx2;
        k->dot4 = e->dot4_avx2;
        k->dotw4 = e->dotw4_avx2;
        k->dot24 = e->dot24_avx2;
        k->level = MEND_SIMD_AVX2;
    }
#endif
#ifdef MEND_QMATMUL_HAVE_NEON
    if (level >= MEND_SIMD_NEON) {
        const int sdot = mend_cpu_has_neon_dotprod();
        k->dot = sdot ? e->dot_neon_dot : e->dot_neon;
        k->level = MEND_SIMD_NEON;
        k->sdot = sdot && e->atype != MEND_TYPE_F32;
    }
#endif
    k->quantize = pick_quant(e->atype, level);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* matmul driver                                                            */

static _Thread_local void *tl_scratch;
static _Thread_local size_t tl_scratch_cap;

void mend_qmatmul_release_scratch(void) {
    free(tl_scratch);
    tl_scratch = NULL;
    tl_scratch_cap = 0;
}

/* bytes of one quantized activation row, 0 for f32 activations or bad shape */
int mend_act_scratch(void **scratch, size_t scratch_bytes, size_t need, void **tl, size_t *tl_cap, size_t min_cap,
                     const char *who) {
    if (*scratch) {
        if (scratch_bytes < need)
            return mend_set_error(MEND_EINVAL, "%s: scratch of %zu bytes is smaller than the %zu needed", who, scratch_bytes,
                                  need);
        if ((uintptr_t)*scratch & 3) return mend_set_error(MEND_EINVAL, "%s: scratch buffer is not 4-byte aligned", who);
        return 0;
    }
    if (*tl_cap < need) {
        size_t cap = need < min_cap ? min_cap : need;
        if (cap > SIZE_MAX - 64) return mend_set_error(MEND_ERANGE, "%s: activation scratch of %zu bytes overflows", who, need);
        cap = (cap + 63) & ~(size_t)63;   /* aligned_alloc wants a multiple of the alignment */
        void *p = aligned_alloc(64, cap);
        if (!p) return mend_set_error(MEND_ENOMEM, "%s: cannot allocate %zu bytes of activation scratch", who, cap);
        free(*tl);
        *tl = p;
        *tl_cap = cap;
    }
    *scratch = *tl;
    return 0;
}

static size_t act_row_bytes(uint32_t atype, int64_t cols) {
    if (atype == MEND_TYPE_F32) return 0;
    return mend_row_size(atype, cols);
}

size_t mend_qmatmul_scratch_size(uint32_t wtype, int n, int64_t cols) {
    const int at = mend_qdot_act_type(wtype);
    if (at < 0 || n < 0 || cols < 0) return 0;
    const size_t rb = act_row_bytes((uint32_t)at, cols);
    size_t total;
    if (!mend_mul_ok(rb, (size_t)n, &total)) return 0;
    return total;
}

/* Below this many multiply-adds a call stays on one thread: waking a team
 * costs a few microseconds. */
#define QMM_PARALLEL_MIN_MACS (1 << 18)

/* out[i][r] for r in [r0, r1), every i < n: weight rows outer, so each
 * stays in L1 while it meets all activation rows; tiles where the level has
 * them (2 x 4 for n >= 4, 4 x 1 below), single dots for the edges. */
static void rows_chunk(const mend_qdot_kernel *k, float *out, size_t ldo, const uint8_t *w, size_t wrow,
                       const uint8_t *act, size_t astride, int n, int64_t cols, int64_t r0, int64_t r1) {
#define OUT(i, r) out[(size_t)(i) * ldo + (size_t)(r)]
#define W(r) (w + (size_t)(r) * wrow)
#define A(i) (act + (size_t)(i) * astride)
    int64_t r = r0;
    const int n4 = n & ~3;
    if (n4 && k->dot24) {
        for (; r + 2 <= r1; r += 2) {
            float s[8];
            for (int i = 0; i < n4; i += 4) {
                k->dot24(cols, W(r), wrow, A(i), astride, s);
                for (int q = 0; q < 4; q++) { OUT(i + q, r) = s[q]; OUT(i + q, r + 1) = s[4 + q]; }
            }
            for (int i = n4; i < n; i++) {
                OUT(i, r) = k->dot(cols, W(r), A(i));
                OUT(i, r + 1) = k->dot(cols, W(r + 1), A(i));
            }
        }
    }
    if (n < 4 && k->dotw4) {
        for (; r + 4 <= r1; r += 4) {
            float s[4];
            for (int i = 0; i < n; i++) {
                k->dotw4(cols, W(r), wrow, A(i), s);
                for (int q = 0; q < 4; q++) OUT(i, r + q) = s[q];
            }
        }
    }
    for (; r < r1; r++) {
        int i = 0;
        if (k->dot4) {
            for (; i + 4 <= n; i += 4) {
                float s[4];
                k->dot4(cols, W(r), A(i), astride, s);
                for (int q = 0; q < 4; q++) OUT(i + q, r) = s[q];
            }
        }
        for (; i < n; i++) OUT(i, r) = k->dot(cols, W(r), A(i));
    }
#undef OUT
#undef W
#undef A
}

int mend_qmatmul_ex(float *out, size_t ldo, const float *x, size_t ldx, int n,
                    const void *w, uint32_t wtype, int64_t rows, int64_t cols,
                    void *scratch, size_t scratch_bytes, int n_threads, int level) {
    mend_qdot_kernel k;
    int rc = mend_qdot_kernel_get(wtype, level, &k);
    if (rc) return rc;
    const char *tn = mend_type_name(wtype);
    if (n < 0 || rows < 0 || cols < 0)
        return mend_set_error(MEND_EINVAL, "qmatmul: negative shape (n %d, rows %lld, cols %lld) for %s weights",
                              n, (long long)rows, (long long)cols, tn);
    if (cols % k.blck)
        return mend_set_error(MEND_EINVAL, "qmatmul: %s weights need cols a multiple of %lld, got %lld",
                              tn, (long long)k.blck, (long long)cols);
    if (n == 0 || rows == 0) return 0;
    if (ldo < (uint64_t)rows || ldx < (uint64_t)cols)
        return mend_set_error(MEND_EINVAL, "qmatmul: row strides ldo %zu / ldx %zu smaller than rows %lld / cols %lld",
                              ldo, ldx, (long long)rows, (long long)cols);
    if (!out || !x || (!w && cols > 0))
        return mend_set_error(MEND_EINVAL, "qmatmul: NULL %s pointer", !out ? "output" : !x ? "input" : "weight");
    const size_t walign = wtype == MEND_TYPE_F32 ? 4 : 2;
    if ((uintptr_t)w & (walign - 1))
        return mend_set_error(MEND_EINVAL, "qmatmul: %s weight pointer is not %zu-byte aligned", tn, walign);
    const size_t wrow = mend_row_size(wtype, cols);
    size_t tmp;
    if ((cols > 0 && wrow == 0) || !mend_mul_ok(wrow, (size_t)rows, &tmp) ||
        !mend_mul_ok(ldo, (size_t)n, &tmp) || !mend_mul_ok(ldx, (size_t)n, &tmp))
        return mend_set_error(MEND_ERANGE, "qmatmul: %lld x %lld %s matrix with %d inputs overflows size_t",
                              (long long)rows, (long long)cols, tn, n);
    if (cols == 0) {
        for (int i = 0; i < n; i++) memset(out + (size_t)i * ldo, 0, (size_t)rows * sizeof(float));
        return 0;
    }

    /* activations: quantized into scratch, or used in place (f32) */
    const size_t arow = act_row_bytes(k.atype, cols);
    const uint8_t *act = (const uint8_t *)x;
    size_t astride = ldx * sizeof(float);
    if (k.quantize) {
        size_t need;
        if (!mend_mul_ok(arow, (size_t)n, &need))
            return mend_set_error(MEND_ERANGE, "qmatmul: activation scratch for %d rows of %lld overflows", n, (long long)cols);
        int rc = mend_act_scratch(&scratch, scratch_bytes, need, &tl_scratch, &tl_scratch_cap, 4096, "qmatmul");
        if (rc) return rc;
        act = scratch;
        astride = arow;
    }

    if (n_threads <= 0) n_threads = mend_get_threads();
    if (n_threads < 1) n_threads = 1;
    if (n_threads > rows) n_threads = (int)rows;
    if ((double)rows * (double)cols * (double)n < QMM_PARALLEL_MIN_MACS) n_threads = 1;

    const uint8_t *wb = w;
    uint8_t *scr = scratch;
    const mend_quantize_act_fn quant = k.quantize;
#pragma omp parallel num_threads(n_threads)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        if (quant) {
            for (int i = t; i < n; i += T) quant(x + (size_t)i * ldx, scr + (size_t)i * arow, cols);
#pragma omp barrier
        }
        /* a contiguous chunk of weight rows per thread */
        const int64_t r0 = rows * t / T, r1 = rows * (t + 1) / T;
        rows_chunk(&k, out, ldo, wb, wrow, act, astride, n, cols, r0, r1);
    }
    return 0;
}

int mend_qmatmul(float *out, const float *x, int n, const void *w, uint32_t wtype,
                 int64_t rows, int64_t cols) {
    if (rows < 0 || cols < 0)
        return mend_set_error(MEND_EINVAL, "qmatmul: negative shape (rows %lld, cols %lld)", (long long)rows, (long long)cols);
    return mend_qmatmul_ex(out, (size_t)rows, x, (size_t)cols, n, w, wtype, rows, cols, NULL, 0, 0, -1);
}
