/* NEON dequantizers (see quants_simd.h). NEON is part of every AArch64 CPU;
 * only called when cpu.c reports it (so MEND_ISA=scalar runs the _ref
 * twins). No fused multiply-add: every result must equal its scalar _ref
 * twin bit for bit (the build keeps the compiler from fusing, see
 * CMakeLists.txt). */
#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>

#include "kernels/quants_simd.h"
#include "util/util.h"

void dequantize_row_f16_neon(const mend_half *x, float *y, int64_t k) {
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(x + i));
        vst1q_f32(y + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(y + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < k; i++) y[i] = mend_fp16_to_f32(x[i]);
}

void dequantize_row_bf16_neon(const uint16_t *x, float *y, int64_t k) {
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        const uint16x8_t v = vld1q_u16(x + i);
        vst1q_f32(y + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(v), 16)));
        vst1q_f32(y + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(v, 16)));
    }
    for (; i < k; i++) y[i] = mend_bf16_to_f32(x[i]);
}

/* 16 int8 -> 16 floats q * d at y */
static inline void store_i8_mul(float *y, int8x16_t q, float d) {
    const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
    vst1q_f32(y + 0, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), d));
    vst1q_f32(y + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), d));
    vst1q_f32(y + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), d));
    vst1q_f32(y + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), d));
}

/* 16 uint8 -> 16 floats q * d + m at y (two roundings) */
static inline void store_u8_mul_add(float *y, uint8x16_t q, float d, float m) {
    const uint16x8_t lo = vmovl_u8(vget_low_u8(q)), hi = vmovl_high_u8(q);
    const float32x4_t vm = vdupq_n_f32(m);
    vst1q_f32(y + 0, vaddq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))), d), vm));
    vst1q_f32(y + 4, vaddq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(lo)), d), vm));
    vst1q_f32(y + 8, vaddq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))), d), vm));
    vst1q_f32(y + 12, vaddq_f32(vmulq_n_f32(vcvtq_f32_u32(vmovl_high_u16(hi)), d), vm));
}

/* qs[j]: low nibble -> y[j], high nibble -> y[j + 16]; y = (q - 8) * d */
void dequantize_row_q4_0_neon(const block_q4_0 *x, float *y, int64_t k) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t eight = vdupq_n_s8(8);
    for (int64_t i = 0; i < k / QK4_0; i++, y += QK4_0) {
        const float d = mend_fp16_to_f32(x[i].d);
        const uint8x16_t q = vld1q_u8(x[i].qs);
        store_i8_mul(y, vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), eight), d);
        store_i8_mul(y + 16, vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight), d);
    }
}

/* y = q * d + m */
void dequantize_row_q4_1_neon(const block_q4_1 *x, float *y, int64_t k) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    for (int64_t i = 0; i < k / QK4_1; i++, y += QK4_1) {
        const float d = mend_fp16_to_f32(x[i].d), m = mend_fp16_to_f32(x[i].m);
        const uint8x16_t q = vld1q_u8(x[i].qs);
        store_u8_mul_add(y, vandq_u8(q, m4), d, m);
        store_u8_mul_add(y + 16, vshrq_n_u8(q, 4), d, m);
    }
}

void dequantize_row_q8_0_neon(const block_q8_0 *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK8_0; i++, y += QK8_0) {
        const float d = mend_fp16_to_f32(x[i].d);
        store_i8_mul(y, vld1q_s8(x[i].qs), d);
        store_i8_mul(y + 16, vld1q_s8(x[i].qs + 16), d);
    }
}

#else
typedef int mend_quants_neon_unused;   /* ISO C forbids an empty unit */
#endif
