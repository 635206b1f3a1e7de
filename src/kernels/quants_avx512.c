/* AVX-512 (F + BW + VL) dequantizers (see quants_simd.h). Compiled for
 * baseline x86-64 with per-function target attributes; only called when
 * cpu.c reports AVX-512. Results equal the scalar _ref twins bit for bit. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "kernels/quants_simd.h"
#include "util/util.h"

#define AVX512 __attribute__((target("avx2,f16c,avx512f,avx512bw,avx512vl")))

/* AVX-512F has fused multiply-add on zmm, and the compiler may contract a
 * product and a sum into one; an empty asm on the product forbids that. */
#define NO_FUSE(v) __asm__("" : "+v"(v))

AVX512 static inline __m512 i32_mul(__m512i v, __m512 d) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(v), d);
}

AVX512 void dequantize_row_f16_avx512(const mend_half *x, float *y, int64_t k) {
    int64_t i = 0;
    for (; i + 16 <= k; i += 16)
        _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))));
    for (; i < k; i++) y[i] = mend_fp16_to_f32(x[i]);
}

AVX512 void dequantize_row_bf16_avx512(const uint16_t *x, float *y, int64_t k) {
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
        const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(x + i)));
        _mm512_storeu_ps(y + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
    }
    for (; i < k; i++) y[i] = mend_bf16_to_f32(x[i]);
}

/* qs[j]: low nibble -> y[j], high nibble -> y[j + 16]; y = (q - 8) * d */
AVX512 void dequantize_row_q4_0_avx512(const block_q4_0 *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_0;
    const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int64_t i = 0; i < nb; i++, y += QK4_0) {
        const __m512 d = _mm512_set1_ps(mend_fp16_to_f32(x[i].d));
        const __m128i q = _mm_loadu_si128((const __m128i *)x[i].qs);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, m4), eight);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight);
        _mm512_storeu_ps(y + 0, i32_mul(_mm512_cvtepi8_epi32(lo), d));
        _mm512_storeu_ps(y + 16, i32_mul(_mm512_cvtepi8_epi32(hi), d));
    }
}

/* y = q * d + m (two roundings) */
AVX512 void dequantize_row_q4_1_avx512(const block_q4_1 *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_1;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; i++, y += QK4_1) {
        const __m512 d = _mm512_set1_ps(mend_fp16_to_f32(x[i].d));
        const __m512 m = _mm512_set1_ps(mend_fp16_to_f32(x[i].m));
        const __m128i q = _mm_loadu_si128((const __m128i *)x[i].qs);
        __m512 lo = i32_mul(_mm512_cvtepu8_epi32(_mm_and_si128(q, m4)), d);
        __m512 hi = i32_mul(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), m4)), d);
        NO_FUSE(lo);
        NO_FUSE(hi);
        _mm512_storeu_ps(y + 0, _mm512_add_ps(lo, m));
        _mm512_storeu_ps(y + 16, _mm512_add_ps(hi, m));
    }
}

AVX512 void dequantize_row_q8_0_avx512(const block_q8_0 *x, float *y, int64_t k) {
    const int64_t nb = k / QK8_0;
    for (int64_t i = 0; i < nb; i++, y += QK8_0) {
        const __m512 d = _mm512_set1_ps(mend_fp16_to_f32(x[i].d));
        _mm512_storeu_ps(y + 0, i32_mul(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)x[i].qs)), d));
        _mm512_storeu_ps(y + 16, i32_mul(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(x[i].qs + 16))), d));
    }
}

#else
typedef int mend_quants_avx512_unused;   /* ISO C forbids an empty unit */
#endif
