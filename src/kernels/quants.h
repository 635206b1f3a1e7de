/* ggml block formats: plain structs with static_assert on their sizes, and the
 * (de)quantizers for each. Type ids are ggml's, so GGUF files round-trip.
 *
 * Every SIMD kernel has a scalar _ref twin; tests compare them. */
#ifndef MEND_QUANTS_H
#define MEND_QUANTS_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

typedef uint16_t mend_half;   /* IEEE fp16 bits */

enum mend_type {
    MEND_TYPE_F32 = 0, MEND_TYPE_F16 = 1, MEND_TYPE_Q4_0 = 2, MEND_TYPE_Q4_1 = 3,
    MEND_TYPE_Q5_0 = 6, MEND_TYPE_Q5_1 = 7, MEND_TYPE_Q8_0 = 8, MEND_TYPE_Q8_1 = 9,
    MEND_TYPE_Q2_K = 10, MEND_TYPE_Q3_K = 11, MEND_TYPE_Q4_K = 12, MEND_TYPE_Q5_K = 13,
    MEND_TYPE_Q6_K = 14, MEND_TYPE_Q8_K = 15, MEND_TYPE_BF16 = 30,
    MEND_TYPE_COUNT = 40
};

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

typedef struct mend_type_traits {
    const char *name;     /* "q4_0", "f32", ... ; NULL for unknown ids */
    int64_t blck_size;    /* elements per block */
    size_t type_size;     /* bytes per block */
} mend_type_traits;

/* Traits of a ggml type id; NULL when mend does not know the id. */
const mend_type_traits *mend_type_get(uint32_t type);
const char *mend_type_name(uint32_t type);
/* id from a name such as "q4_0" / "Q4_K" (case-insensitive); -1 if unknown. */
int mend_type_from_name(const char *name);
/* Bytes of a row of n elements; 0 when n is not a multiple of the block size
 * or the type is unknown. */
size_t mend_row_size(uint32_t type, int64_t n);

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
