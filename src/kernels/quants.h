/* ggml block formats: plain structs with static_assert on their sizes, and the
 * (de)quantizers for each. Type ids and traits are io/types.h's (ggml's).
 *
 * Every SIMD kernel has a scalar _ref twin; tests compare them. */
#ifndef MEND_QUANTS_H
#define MEND_QUANTS_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include "io/types.h"   /* type ids and traits */

typedef uint16_t mend_half;   /* IEEE fp16 bits */

#define QK4_0 32
typedef struct { mend_half d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
static_assert(sizeof(block_q4_0) == 2 + QK4_0 / 2, "block_q4_0 size");
#define QK4_1 32
typedef struct { mend_half d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;
static_assert(sizeof(block_q4_1) == 4 + QK4_1 / 2, "block_q4_1 size");
#define QK5_0 32
typedef struct { mend_half d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;
static_assert(sizeof(block_q5_0) == 2 + 4 + QK5_0 / 2, "block_q5_0 size");
#define QK5_1 32
typedef struct { mend_half d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;
static_assert(sizeof(block_q5_1) == 4 + 4 + QK5_1 / 2, "block_q5_1 size");
#define QK8_0 32
typedef struct { mend_half d; int8_t qs[QK8_0]; } block_q8_0;
static_assert(sizeof(block_q8_0) == 2 + QK8_0, "block_q8_0 size");
#define QK8_1 32
typedef struct { mend_half d, s; int8_t qs[QK8_1]; } block_q8_1;
static_assert(sizeof(block_q8_1) == 4 + QK8_1, "block_q8_1 size");

#define QK_K 256
#define K_SCALE_SIZE 12
typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; mend_half d, dmin; } block_q2_K;
static_assert(sizeof(block_q2_K) == 2 * 2 + QK_K / 16 + QK_K / 4, "block_q2_K size");
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; mend_half d; } block_q3_K;
static_assert(sizeof(block_q3_K) == 2 + QK_K / 4 + QK_K / 8 + 12, "block_q3_K size");
typedef struct { mend_half d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K;
static_assert(sizeof(block_q4_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2, "block_q4_K size");
typedef struct { mend_half d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
static_assert(sizeof(block_q5_K) == 2 * 2 + K_SCALE_SIZE + QK_K / 2 + QK_K / 8, "block_q5_K size");
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; mend_half d; } block_q6_K;
static_assert(sizeof(block_q6_K) == 2 + QK_K / 16 + 3 * QK_K / 4, "block_q6_K size");
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;
static_assert(sizeof(block_q8_K) == 4 + QK_K + QK_K / 16 * 2, "block_q8_K size");

/* Dequantize n elements (n a multiple of the block size) of a row.
 * Returns 0, or MEND_EUNSUPPORTED for a type without a dequantizer. */
int mend_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* scalar references */
void dequantize_row_f16_ref(const mend_half *x, float *y, int64_t k);
void dequantize_row_bf16_ref(const uint16_t *x, float *y, int64_t k);
void dequantize_row_q4_0_ref(const block_q4_0 *x, float *y, int64_t k);
void dequantize_row_q4_1_ref(const block_q4_1 *x, float *y, int64_t k);
void dequantize_row_q5_0_ref(const block_q5_0 *x, float *y, int64_t k);
void dequantize_row_q5_1_ref(const block_q5_1 *x, float *y, int64_t k);
void dequantize_row_q8_0_ref(const block_q8_0 *x, float *y, int64_t k);
void dequantize_row_q2_K_ref(const block_q2_K *x, float *y, int64_t k);
void dequantize_row_q3_K_ref(const block_q3_K *x, float *y, int64_t k);
void dequantize_row_q4_K_ref(const block_q4_K *x, float *y, int64_t k);
void dequantize_row_q5_K_ref(const block_q5_K *x, float *y, int64_t k);
void dequantize_row_q6_K_ref(const block_q6_K *x, float *y, int64_t k);

/* scalar quantizers (round to nearest, ggml's reference grids) — used by tests
 * to build blocks and by `mend compress --method rtn`. */
void quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int64_t k);
void quantize_row_q4_1_ref(const float *x, block_q4_1 *y, int64_t k);
void quantize_row_q5_0_ref(const float *x, block_q5_0 *y, int64_t k);
void quantize_row_q5_1_ref(const float *x, block_q5_1 *y, int64_t k);
void quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int64_t k);

#endif
