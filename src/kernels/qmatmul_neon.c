/* NEON kernels of the products on packed blocks (see qmatmul.h): the q8_0,
 * q8_1 and q8_K activation quantizers, and every dot product twice
 * (qmatmul_neon.inc): once on plain NEON, once on the dot-product extension
 * (SDOT), the latter called only when cpu.c reports it. NEON is part of
 * every AArch64 CPU, so only the second set needs a target attribute. The
 * quantizers give the bytes of their _ref twins, the quantized dots the
 * bits. */
#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(MEND_NO_SIMD)

#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "kernels/qmatmul.h"
#include "util/util.h"

#define ALWAYS static inline __attribute__((always_inline))

/* fp16 -> f32 (exact, as mend_fp16_to_f32) */
static inline float h2f(mend_half h) { return mend_fp16_to_f32(h); }

/* the 32 nibbles of qs less off as int8: low nibbles are elements 0..15,
 * high ones 16..31 */
ALWAYS void nib_split(const uint8_t *qs, int off, int8x16_t *lo, int8x16_t *hi) {
    const uint8x16_t q = vld1q_u8(qs), o = vdupq_n_u8((uint8_t)off);
    *lo = vreinterpretq_s8_u8(vsubq_u8(vandq_u8(q, vdupq_n_u8(0x0F)), o));
    *hi = vreinterpretq_s8_u8(vsubq_u8(vshrq_n_u8(q, 4), o));
}

/* q5_0 / q5_1: the nibbles with bit j of the little-endian qh word as their
 * fifth bit (16), less off */
ALWAYS void nib5_split(const uint8_t *qs, const uint8_t *qh, int off, int8x16_t *lo, int8x16_t *hi) {
    static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t bv = vld1q_u8(bits), sixteen = vdupq_n_u8(16), o = vdupq_n_u8((uint8_t)off);
    const uint8x16_t hl = vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1]));
    const uint8x16_t hh = vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3]));
    const uint8x16_t q = vld1q_u8(qs);
    *lo = vreinterpretq_s8_u8(vsubq_u8(vorrq_u8(vandq_u8(q, vdupq_n_u8(0x0F)), vandq_u8(vtstq_u8(hl, bv), sixteen)), o));
    *hi = vreinterpretq_s8_u8(vsubq_u8(vorrq_u8(vshrq_n_u8(q, 4), vandq_u8(vtstq_u8(hh, bv), sixteen)), o));
}

/* sum_s mn[s] * bsums[s] over 16 sub-blocks (mn: 0..15) */
static inline int mins_dot(uint8x16_t mn, const int16_t *bsums) {
    const int16x8_t m0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mn)));
    const int16x8_t m1 = vreinterpretq_s16_u16(vmovl_high_u8(mn));
    const int16x8_t b0 = vld1q_s16(bsums), b1 = vld1q_s16(bsums + 8);
    int32x4_t s = vmull_s16(vget_low_s16(m0), vget_low_s16(b0));
    s = vmlal_high_s16(s, m0, b0);
    s = vmlal_s16(s, vget_low_s16(m1), vget_low_s16(b1));
    s = vmlal_high_s16(s, m1, b1);
    return vaddvq_s32(s);
}

#define QN_T
#define QN(name) name##_neon
#define QN_DOT 0
#include "kernels/qmatmul_neon.inc"
#undef QN_T
#undef QN
#undef QN_DOT

#if defined(__clang__)
#define QN_T __attribute__((target("dotprod")))
#else
#define QN_T __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#define QN(name) name##_neon_dot
#define QN_DOT 1
#include "kernels/qmatmul_neon.inc"
#undef QN_T
#undef QN
#undef QN_DOT

/* ---- activation quantizers ------------------------------------------------ */

/* int32 lanes clamped to [-127, 127] and narrowed to int16 */
static inline int16x8_t narrow127(int32x4_t a, int32x4_t b) {
    const int32x4_t hi = vdupq_n_s32(127), lo = vdupq_n_s32(-127);
    return vcombine_s16(vmovn_s32(vmaxq_s32(vminq_s32(a, hi), lo)), vmovn_s32(vmaxq_s32(vminq_s32(b, hi), lo)));
}

/* 16 floats x * s rounded half to even (FCVTNS, as round_even in qmatmul.c),
 * clamped to [-127, 127], stored as int8 at q */
static inline void quant16(const float *x, float s, int8_t *q) {
    const int16x8_t h0 = narrow127(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x), s)),
                                   vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 4), s)));
    const int16x8_t h1 = narrow127(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 8), s)),
                                   vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 12), s)));
    vst1q_s8(q, vcombine_s8(vmovn_s16(h0), vmovn_s16(h1)));
}

/* max |x_j| over n (a multiple of 4) floats, NaN ignored as the scalar
 * comparison does */
static inline float amax_of(const float *x, int n) {
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int i = 0; i < n; i += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + i)));
    return vmaxnmvq_f32(m);
}

/* one 32-value block as quant32 in qmatmul.c; returns d */
static float quant32_neon(const float *x, int8_t *q) {
    const float amax = amax_of(x, 32);
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    quant16(x, id, q);
    quant16(x + 16, id, q + 16);
    return d;
}

void quantize_act_q8_0_neon(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0) y[b].d = mend_f32_to_fp16(quant32_neon(x, y[b].qs));
}

void quantize_act_q8_1_neon(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / QK8_1; b++, x += QK8_1) {
        const float d = quant32_neon(x, y[b].qs);
        const int sum = vaddlvq_s8(vld1q_s8(y[b].qs)) + vaddlvq_s8(vld1q_s8(y[b].qs + 16));
        y[b].d = mend_f32_to_fp16(d);
        y[b].s = mend_f32_to_fp16(d * (float)sum);
    }
}

/* q8_K: the value of largest magnitude (its first occurrence) sets
 * iscale = -127 / max, as quantize_act_q8_K_ref */
void quantize_act_q8_K_neon(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        const float amax = amax_of(x, QK_K);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        int j = 0;
        while (fabsf(x[j]) != amax) j++;
        const float iscale = -127.0f / x[j];
        for (int g = 0; g < QK_K / 16; g++) {
            quant16(x + 16 * g, iscale, y[b].qs + 16 * g);
            y[b].bsums[g] = (int16_t)vaddlvq_s8(vld1q_s8(y[b].qs + 16 * g));
        }
        y[b].d = 1.0f / iscale;
    }
}

#else
typedef int mend_qmatmul_neon_unused;   /* ISO C forbids an empty unit */
#endif
