/* ggml block formats: scalar (de)quantizers (the type traits are io/types.c) and the run-time
 * dispatch to the SIMD dequantizers.
 *
 * The layouts and arithmetic follow ggml's reference code, so dequantized
 * floats match llama.cpp (and the gguf python package) bit for bit. Products
 * are never fused into FMAs: x*d + m is two roundings in the reference. */
#include "kernels/quants.h"

#include <float.h>
#include <math.h>
#include <stdalign.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/quants_simd.h"
#include "util/util.h"

/* Keep a*b + c as two roundings even when the build allows FMA contraction. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#define MEND_NO_CONTRACT
#elif defined(__GNUC__)
#define MEND_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define MEND_NO_CONTRACT
#endif

/* ------------------------------------------------------------------------ */
/* scalar dequantizers                                                      */

static inline float half(mend_half h) { return mend_fp16_to_f32(h); }

void dequantize_row_f16_ref(const mend_half *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k; i++) y[i] = mend_fp16_to_f32(x[i]);
}

void dequantize_row_bf16_ref(const uint16_t *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k; i++) y[i] = mend_bf16_to_f32(x[i]);
}

/* 32 weights: y[j] = (nibble - 8) * d; low nibbles are j < 16, high j >= 16 */
void dequantize_row_q4_0_ref(const block_q4_0 *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_0;
    for (int64_t i = 0; i < nb; i++, y += QK4_0) {
        const float d = half(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = ((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* y[j] = nibble * d + m */
MEND_NO_CONTRACT
void dequantize_row_q4_1_ref(const block_q4_1 *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_1;
    for (int64_t i = 0; i < nb; i++, y += QK4_1) {
        const float d = half(x[i].d), m = half(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (x[i].qs[j] & 0x0F) * d + m;
            y[j + QK4_1 / 2] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* 5-bit: low 4 bits in nibbles as q4_0, bit 4 of weight j is bit j of qh
 * (little-endian u32); y = (q - 16) * d */
void dequantize_row_q5_0_ref(const block_q5_0 *x, float *y, int64_t k) {
    const int64_t nb = k / QK5_0;
    for (int64_t i = 0; i < nb; i++, y += QK5_0) {
        const float d = half(x[i].d);
        const uint32_t qh = (uint32_t)x[i].qh[0] | (uint32_t)x[i].qh[1] << 8 |
                            (uint32_t)x[i].qh[2] << 16 | (uint32_t)x[i].qh[3] << 24;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int h0 = (qh >> j) & 1, h1 = (qh >> (j + QK5_0 / 2)) & 1;
            y[j] = (((x[i].qs[j] & 0x0F) | h0 << 4) - 16) * d;
            y[j + QK5_0 / 2] = (((x[i].qs[j] >> 4) | h1 << 4) - 16) * d;
        }
    }
}

/* y = q * d + m, q in 0..31 */
MEND_NO_CONTRACT
void dequantize_row_q5_1_ref(const block_q5_1 *x, float *y, int64_t k) {
    const int64_t nb = k / QK5_1;
    for (int64_t i = 0; i < nb; i++, y += QK5_1) {
        const float d = half(x[i].d), m = half(x[i].m);
        const uint32_t qh = (uint32_t)x[i].qh[0] | (uint32_t)x[i].qh[1] << 8 |
                            (uint32_t)x[i].qh[2] << 16 | (uint32_t)x[i].qh[3] << 24;
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int h0 = (qh >> j) & 1, h1 = (qh >> (j + QK5_1 / 2)) & 1;
            y[j] = ((x[i].qs[j] & 0x0F) | h0 << 4) * d + m;
            y[j + QK5_1 / 2] = ((x[i].qs[j] >> 4) | h1 << 4) * d + m;
        }
    }
}

void dequantize_row_q8_0_ref(const block_q8_0 *x, float *y, int64_t k) {
    const int64_t nb = k / QK8_0;
    for (int64_t i = 0; i < nb; i++, y += QK8_0) {
        const float d = half(x[i].d);
        for (int j = 0; j < QK8_0; j++) y[j] = x[i].qs[j] * d;
    }
}

/* not in ggml's to_float table, but the layout is plain: y = qs * d */
static void dequantize_row_q8_1_ref(const block_q8_1 *x, float *y, int64_t k) {
    const int64_t nb = k / QK8_1;
    for (int64_t i = 0; i < nb; i++, y += QK8_1) {
        const float d = half(x[i].d);
        for (int j = 0; j < QK8_1; j++) y[j] = x[i].qs[j] * d;
    }
}

static void dequantize_row_q8_K_ref(const block_q8_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, y += QK_K)
        for (int j = 0; j < QK_K; j++) y[j] = x[i].d * x[i].qs[j];
}

/* 16 sub-blocks of 16; scales[s] = scale (low nibble) | min (high nibble).
 * Each 128-weight half uses 32 bytes of qs: weight 32*g + l (g = 0..3) is
 * bits 2g..2g+1 of qs[l]. y = d*scale*q - dmin*min */
MEND_NO_CONTRACT
void dequantize_row_q2_K_ref(const block_q2_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = half(x[i].d), dmin = half(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int n = 0; n < QK_K; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half16 = 0; half16 < 2; half16++) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (sc & 0x0F), ml = dmin * (sc >> 4);
                    const uint8_t *qq = q + 16 * half16;
                    for (int l = 0; l < 16; l++) *y++ = dl * ((qq[l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/* 16 six-bit scales (offset 32) packed in 12 bytes: the low 4 bits of scale s
 * are nibble s/8 of byte s%8, the high 2 bits are bits 2*(s/4) of byte
 * 8 + s%4. Quants: 2 low bits as in q2_K, the third bit from hmask (bit g of
 * hmask[l] for weight 32*g + l); a clear bit means q - 4. */
void dequantize_row_q3_K_ref(const block_q3_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d_all = half(x[i].d);
        const uint8_t *sb = x[i].scales;
        int8_t scales[16];
        for (int s = 0; s < 16; s++) {
            const int lo = (sb[s % 8] >> (4 * (s / 8))) & 0x0F;
            const int hi = (sb[8 + s % 4] >> (2 * (s / 4))) & 3;
            scales[s] = (int8_t)((lo | hi << 4) - 32);
        }
        const uint8_t *q = x[i].qs, *hm = x[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int n = 0; n < QK_K; n += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int half16 = 0; half16 < 2; half16++) {
                    const float dl = d_all * scales[is++];
                    const int o = 16 * half16;
                    for (int l = 0; l < 16; l++)
                        *y++ = dl * (((q[o + l] >> shift) & 3) - ((hm[o + l] & m) ? 0 : 4));
                }
            }
        }
    }
}

/* 8 sub-blocks of 32 with 6-bit scale and min packed in 12 bytes */
static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* each 64 weights use 32 bytes of qs: low nibbles first, then high */
MEND_NO_CONTRACT
void dequantize_row_q4_K_ref(const block_q4_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = half(x[i].d), dmin = half(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int is = 0; is < 8; is += 2, q += 32) {
            uint8_t sc, mn;
            get_scale_min_k4(is, x[i].scales, &sc, &mn);
            const float d1 = d * sc, m1 = dmin * mn;
            get_scale_min_k4(is + 1, x[i].scales, &sc, &mn);
            const float d2 = d * sc, m2 = dmin * mn;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

/* as q4_K plus a fifth bit: bit s of qh[l] for weight 32*s + l */
MEND_NO_CONTRACT
void dequantize_row_q5_K_ref(const block_q5_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = half(x[i].d), dmin = half(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, mn;
            get_scale_min_k4(is, x[i].scales, &sc, &mn);
            const float d1 = d * sc, m1 = dmin * mn;
            get_scale_min_k4(is + 1, x[i].scales, &sc, &mn);
            const float d2 = d * sc, m2 = dmin * mn;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
        }
    }
}

/* 16 sub-blocks of 16 with int8 scales; 6-bit quants (offset 32). Per 128
 * weights: 64 bytes of ql (low nibbles, then high) and 32 bytes of qh (2 bits
 * per weight group of 32). y = d * scale * q */
void dequantize_row_q6_K_ref(const block_q6_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = half(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0F) | ((qh[l] >> 0) & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 0x0F) | ((qh[l] >> 2) & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* round-to-nearest quantizers (ggml's reference grids)                     */

/* trunc(v) clamped to [lo, hi]; NaN maps to lo (a plain cast would be UB) */
static inline int trunc_clamp(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* d = (signed value of largest magnitude) / -8; q = trunc(x/d + 8.5) in 0..15 */
MEND_NO_CONTRACT
void quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int64_t k) {
    const int64_t nb = k / QK4_0;
    for (int64_t i = 0; i < nb; i++, x += QK4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = mend_f32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const int q0 = trunc_clamp(x[j] * id + 8.5f, 0, 15);
            const int q1 = trunc_clamp(x[j + QK4_0 / 2] * id + 8.5f, 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

/* d = (max - min) / 15, m = min; q = trunc((x - min)/d + 0.5) in 0..15 */
MEND_NO_CONTRACT
void quantize_row_q4_1_ref(const float *x, block_q4_1 *y, int64_t k) {
    const int64_t nb = k / QK4_1;
    for (int64_t i = 0; i < nb; i++, x += QK4_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK4_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = mend_f32_to_fp16(d);
        y[i].m = mend_f32_to_fp16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const int q0 = trunc_clamp((x[j] - min) * id + 0.5f, 0, 15);
            const int q1 = trunc_clamp((x[j + QK4_1 / 2] - min) * id + 0.5f, 0, 15);
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

static inline void put_qh(uint8_t qh[4], uint32_t v) {
    qh[0] = (uint8_t)v; qh[1] = (uint8_t)(v >> 8); qh[2] = (uint8_t)(v >> 16); qh[3] = (uint8_t)(v >> 24);
}

/* d = (signed value of largest magnitude) / -16; q = trunc(x/d + 16.5) in 0..31 */
MEND_NO_CONTRACT
void quantize_row_q5_0_ref(const float *x, block_q5_0 *y, int64_t k) {
    const int64_t nb = k / QK5_0;
    for (int64_t i = 0; i < nb; i++, x += QK5_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK5_0; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = mend_f32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int q0 = trunc_clamp(x[j] * id + 16.5f, 0, 31);
            const int q1 = trunc_clamp(x[j + QK5_0 / 2] * id + 16.5f, 0, 31);
            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | (q1 & 0x0F) << 4);
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + QK5_0 / 2);
        }
        put_qh(y[i].qh, qh);
    }
}

/* d = (max - min) / 31, m = min; q = trunc((x - min)/d + 0.5) in 0..31 */
MEND_NO_CONTRACT
void quantize_row_q5_1_ref(const float *x, block_q5_1 *y, int64_t k) {
    const int64_t nb = k / QK5_1;
    for (int64_t i = 0; i < nb; i++, x += QK5_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK5_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = mend_f32_to_fp16(d);
        y[i].m = mend_f32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int q0 = trunc_clamp((x[j] - min) * id + 0.5f, 0, 31);
            const int q1 = trunc_clamp((x[j + QK5_1 / 2] - min) * id + 0.5f, 0, 31);
            y[i].qs[j] = (uint8_t)((q0 & 0x0F) | (q1 & 0x0F) << 4);
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + QK5_1 / 2);
        }
        put_qh(y[i].qh, qh);
    }
}

/* d = max|x| / 127; q = roundf(x/d) (halves away from zero) */
MEND_NO_CONTRACT
void quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int64_t k) {
    const int64_t nb = k / QK8_0;
    for (int64_t i = 0; i < nb; i++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = mend_f32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) {
            const float v = roundf(x[j] * id);
            y[i].qs[j] = (int8_t)(v >= -128.0f ? (v <= 127.0f ? (int)v : 127) : -128);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* dispatch                                                                 */

typedef void (*dequant_fn)(const void *x, float *y, int64_t k);

static void deq_f32(const void *x, float *y, int64_t k) { memmove(y, x, (size_t)k * sizeof(float)); }

/* adapters from the typed kernels to one signature */
#define WRAP(name, blk) \
    static void w_##name(const void *x, float *y, int64_t k) { dequantize_row_##name((const blk *)x, y, k); }
WRAP(f16_ref, mend_half) WRAP(bf16_ref, uint16_t)
WRAP(q4_0_ref, block_q4_0) WRAP(q4_1_ref, block_q4_1) WRAP(q5_0_ref, block_q5_0)
WRAP(q5_1_ref, block_q5_1) WRAP(q8_0_ref, block_q8_0) WRAP(q8_1_ref, block_q8_1)
WRAP(q2_K_ref, block_q2_K) WRAP(q3_K_ref, block_q3_K) WRAP(q4_K_ref, block_q4_K)
WRAP(q5_K_ref, block_q5_K) WRAP(q6_K_ref, block_q6_K) WRAP(q8_K_ref, block_q8_K)
#if defined(__x86_64__) || defined(__i386__)
WRAP(f16_avx2, mend_half) WRAP(bf16_avx2, uint16_t) WRAP(q4_0_avx2, block_q4_0)
WRAP(q4_1_avx2, block_q4_1) WRAP(q8_0_avx2, block_q8_0)
WRAP(f16_avx512, mend_half) WRAP(bf16_avx512, uint16_t) WRAP(q4_0_avx512, block_q4_0)
WRAP(q4_1_avx512, block_q4_1) WRAP(q8_0_avx512, block_q8_0)
#elif defined(__aarch64__) && defined(__ARM_NEON)
WRAP(f16_neon, mend_half) WRAP(bf16_neon, uint16_t) WRAP(q4_0_neon, block_q4_0)
WRAP(q4_1_neon, block_q4_1) WRAP(q8_0_neon, block_q8_0)
#endif

/* The kernel for a type at a SIMD level (NULL: no dequantizer). */
static dequant_fn pick(uint32_t type, int level) {
#if defined(__x86_64__) || defined(__i386__)
    if (level >= MEND_SIMD_AVX512) {
        switch (type) {
        case MEND_TYPE_F16:  return w_f16_avx512;
        case MEND_TYPE_BF16: return w_bf16_avx512;
        case MEND_TYPE_Q4_0: return w_q4_0_avx512;
        case MEND_TYPE_Q4_1: return w_q4_1_avx512;
        case MEND_TYPE_Q8_0: return w_q8_0_avx512;
        default: break;
        }
    }
    if (level >= MEND_SIMD_AVX2) {
        switch (type) {
        case MEND_TYPE_F16:  return w_f16_avx2;
        case MEND_TYPE_BF16: return w_bf16_avx2;
        case MEND_TYPE_Q4_0: return w_q4_0_avx2;
        case MEND_TYPE_Q4_1: return w_q4_1_avx2;
        case MEND_TYPE_Q8_0: return w_q8_0_avx2;
        default: break;
        }
    }
#elif defined(__aarch64__) && defined(__ARM_NEON)
    if (level >= MEND_SIMD_NEON) {
        switch (type) {
        case MEND_TYPE_F16:  return w_f16_neon;
        case MEND_TYPE_BF16: return w_bf16_neon;
        case MEND_TYPE_Q4_0: return w_q4_0_neon;
        case MEND_TYPE_Q4_1: return w_q4_1_neon;
        case MEND_TYPE_Q8_0: return w_q8_0_neon;
        default: break;
        }
    }
#endif
    switch (type) {
    case MEND_TYPE_F32:  return deq_f32;
    case MEND_TYPE_F16:  return w_f16_ref;
    case MEND_TYPE_BF16: return w_bf16_ref;
    case MEND_TYPE_Q4_0: return w_q4_0_ref;
    case MEND_TYPE_Q4_1: return w_q4_1_ref;
    case MEND_TYPE_Q5_0: return w_q5_0_ref;
    case MEND_TYPE_Q5_1: return w_q5_1_ref;
    case MEND_TYPE_Q8_0: return w_q8_0_ref;
    case MEND_TYPE_Q8_1: return w_q8_1_ref;
    case MEND_TYPE_Q2_K: return w_q2_K_ref;
    case MEND_TYPE_Q3_K: return w_q3_K_ref;
    case MEND_TYPE_Q4_K: return w_q4_K_ref;
    case MEND_TYPE_Q5_K: return w_q5_K_ref;
    case MEND_TYPE_Q6_K: return w_q6_K_ref;
    case MEND_TYPE_Q8_K: return w_q8_K_ref;
    default: return NULL;
    }
}

/* alignment the block struct of a type needs */
static size_t type_align(uint32_t type) {
    switch (type) {
    case MEND_TYPE_F32: case MEND_TYPE_Q8_K: return 4;
    default: return 2;
    }
}

int mend_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    const mend_type_traits *t = mend_type_get(type);
    if (!t)
        return mend_set_error(MEND_EUNSUPPORTED, "dequantize: ggml type id %u is not known", type);
    const dequant_fn fn = pick(type, mend_cpu_simd_level());
    if (!fn)
        return mend_set_error(MEND_EUNSUPPORTED, "dequantize: type %s has no dequantizer", t->name);
    if (n < 0 || n % t->blck_size)
        return mend_set_error(MEND_EINVAL, "dequantize: row length %lld is not a non-negative multiple of the %s block size %lld",
                              (long long)n, t->name, (long long)t->blck_size);
    if (n == 0) return 0;
    if (!src || !dst)
        return mend_set_error(MEND_EINVAL, "dequantize: %s row of %lld elements has a NULL %s pointer",
                              t->name, (long long)n, src ? "destination" : "source");
    if (((uintptr_t)src & (type_align(type) - 1)) == 0) {
        fn(src, dst, n);
        return 0;
    }
    /* misaligned source (e.g. a tensor inside an odd-aligned buffer): bounce
     * whole blocks through an aligned buffer */
    alignas(64) uint8_t buf[4096];
    const int64_t per = (int64_t)(sizeof buf / t->type_size);   /* blocks per chunk, >= 1 */
    const uint8_t *s = src;
    for (int64_t b = 0, nb = n / t->blck_size; b < nb; b += per) {
        const int64_t cnt = nb - b < per ? nb - b : per;
        memcpy(buf, s + (size_t)b * t->type_size, (size_t)cnt * t->type_size);
        fn(buf, dst + b * t->blck_size, cnt * t->blck_size);
    }
    return 0;
}
