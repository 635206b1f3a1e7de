/* AVX2 dequantizers (see quants_simd.h). Compiled for baseline x86-64 with
 * per-function target attributes; only called when cpu.c reports AVX2.
 * No FMA: every result must equal its scalar _ref twin bit for bit. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "kernels/quants_simd.h"
#include "util/util.h"

#define AVX2 __attribute__((target("avx2,f16c")))

/* 8 int32 lanes -> float * d */
AVX2 static inline __m256 i32_mul(__m256i v, __m256 d) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(v), d);
}

AVX2 void dequantize_row_f16_avx2(const mend_half *x, float *y, int64_t k) {
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < k; i++) y[i] = mend_fp16_to_f32(x[i]);
}

AVX2 void dequantize_row_bf16_avx2(const uint16_t *x, float *y, int64_t k) {
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
    for (; i < k; i++) y[i] = mend_bf16_to_f32(x[i]);
}

/* qs[j]: low nibble -> y[j], high nibble -> y[j + 16]; y = (q - 8) * d */
AVX2 void dequantize_row_q4_0_avx2(const block_q4_0 *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_0;
    const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int64_t i = 0; i < nb; i++, y += QK4_0) {
        const __m256 d = _mm256_set1_ps(mend_fp16_to_f32(x[i].d));
        const __m128i q = _mm_loadu_si128((const __m128i *)x[i].qs);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, m4), eight);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight);
        _mm256_storeu_ps(y + 0, i32_mul(_mm256_cvtepi8_epi32(lo), d));
        _mm256_storeu_ps(y + 8, i32_mul(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)), d));
        _mm256_storeu_ps(y + 16, i32_mul(_mm256_cvtepi8_epi32(hi), d));
        _mm256_storeu_ps(y + 24, i32_mul(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)), d));
    }
}

/* y = q * d + m (two roundings) */
AVX2 void dequantize_row_q4_1_avx2(const block_q4_1 *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_1;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; i++, y += QK4_1) {
        const __m256 d = _mm256_set1_ps(mend_fp16_to_f32(x[i].d));
        const __m256 m = _mm256_set1_ps(mend_fp16_to_f32(x[i].m));
        const __m128i q = _mm_loadu_si128((const __m128i *)x[i].qs);
        const __m128i lo = _mm_and_si128(q, m4);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), m4);
        _mm256_storeu_ps(y + 0, _mm256_add_ps(i32_mul(_mm256_cvtepu8_epi32(lo), d), m));
        _mm256_storeu_ps(y + 8, _mm256_add_ps(i32_mul(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)), d), m));
        _mm256_storeu_ps(y + 16, _mm256_add_ps(i32_mul(_mm256_cvtepu8_epi32(hi), d), m));
        _mm256_storeu_ps(y + 24, _mm256_add_ps(i32_mul(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)), d), m));
    }
}

AVX2 void dequantize_row_q8_0_avx2(const block_q8_0 *x, float *y, int64_t k) {
    const int64_t nb = k / QK8_0;
    for (int64_t i = 0; i < nb; i++, y += QK8_0) {
        const __m256 d = _mm256_set1_ps(mend_fp16_to_f32(x[i].d));
        const __m128i a = _mm_loadu_si128((const __m128i *)x[i].qs);
        const __m128i b = _mm_loadu_si128((const __m128i *)(x[i].qs + 16));
        _mm256_storeu_ps(y + 0, i32_mul(_mm256_cvtepi8_epi32(a), d));
        _mm256_storeu_ps(y + 8, i32_mul(_mm256_cvtepi8_epi32(_mm_srli_si128(a, 8)), d));
        _mm256_storeu_ps(y + 16, i32_mul(_mm256_cvtepi8_epi32(b), d));
        _mm256_storeu_ps(y + 24, i32_mul(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8)), d));
    }
}

#else
typedef int mend_quants_avx2_unused;   /* ISO C forbids an empty unit */
#endif
