/* SIMD dequantizers (quants_avx2.c, quants_avx512.c, quants_neon.c). Private
 * to kernels/ and the tests: callers go through mend_dequantize_row, which
 * picks the widest level the CPU supports (kernels/cpu.h). Each one must give exactly the
 * floats of its scalar _ref twin in quants.h. Pointers must be aligned for
 * their block type (mend_dequantize_row guarantees it). */
#ifndef MEND_QUANTS_SIMD_H
#define MEND_QUANTS_SIMD_H

#include "kernels/quants.h"

/* AVX2 + F16C (no FMA: a fused multiply-add would round differently) */
void dequantize_row_f16_avx2(const mend_half *x, float *y, int64_t k);
void dequantize_row_bf16_avx2(const uint16_t *x, float *y, int64_t k);
void dequantize_row_q4_0_avx2(const block_q4_0 *x, float *y, int64_t k);
void dequantize_row_q4_1_avx2(const block_q4_1 *x, float *y, int64_t k);
void dequantize_row_q8_0_avx2(const block_q8_0 *x, float *y, int64_t k);

/* AVX-512 F + BW + VL */
void dequantize_row_f16_avx512(const mend_half *x, float *y, int64_t k);
void dequantize_row_bf16_avx512(const uint16_t *x, float *y, int64_t k);
void dequantize_row_q4_0_avx512(const block_q4_0 *x, float *y, int64_t k);
void dequantize_row_q4_1_avx512(const block_q4_1 *x, float *y, int64_t k);
void dequantize_row_q8_0_avx512(const block_q8_0 *x, float *y, int64_t k);

/* NEON (AArch64) */
void dequantize_row_f16_neon(const mend_half *x, float *y, int64_t k);
void dequantize_row_bf16_neon(const uint16_t *x, float *y, int64_t k);
void dequantize_row_q4_0_neon(const block_q4_0 *x, float *y, int64_t k);
void dequantize_row_q4_1_neon(const block_q4_1 *x, float *y, int64_t k);
void dequantize_row_q8_0_neon(const block_q8_0 *x, float *y, int64_t k);

#endif
