/* AVX-512 activation quantizers and dot products on packed blocks (see
 * qmatmul.h). Compiled for baseline x86-64 with per-function target
 * attributes; only called when cpu.c reports AVX-512 F/BW/VL, and the
 * 32-element-block dots (the VNNI ones) only with AVX-512 VNNI.
 *
 * 32-element blocks go two per 512-bit register, through vpdpbusd (u8 x s8,
 * 4 products summed into each int32 lane). Signed weights q are fed as the
 * unsigned q + o with the offset taken back as o * (-a): the activations lie
 * in [-127, 127], so -a is exact. K-quants use vpmaddubsw / vpmaddwd with
 * int16 scales, 64 weights per instruction; the q3_K and q6_K offsets come off
 * through the activation block sums (bsums), which the q8_K quantizer keeps
 * equal to the sums of its quants. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "kernels/qmatmul.h"
#include "util/util.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

AVX512 static inline float h2f(mend_half h) { return _cvtsh_ss(h); }

/* [lo | hi] 256-bit halves */
AVX512 static inline __m512i join(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* 16 packed nibbles -> 32 bytes: low nibbles in bytes 0..15, high in 16..31 (unmasked) */
AVX512 static inline __m256i nib_pair(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
}

/* ------------------------------------------------------------------------ */
/* activation quantizers                                                    */

/* one block of 32; returns d, writes q, sets *sum to sum(q) */
AVX512 static inline float quant32(const float *x, int8_t *q, int *sum) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));
    const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtsepi32_epi8(i0));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtsepi32_epi8(i1));
    if (sum) *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    return d;
}

AVX512 void quantize_act_q8_0_avx512(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0)
        y[b].d = mend_f32_to_fp16(quant32(x, y[b].qs, NULL));
}

AVX512 void quantize_act_q8_1_avx512(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / QK8_1; b++, x += QK8_1) {
        int sum;
        const float d = quant32(x, y[b].qs, &sum);
        y[b].d = mend_f32_to_fp16(d);
        y[b].s = mend_f32_to_fp16(d * (float)sum);
    }
}

AVX512 void quantize_act_q8_K_avx512(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int k = 0; k < QK_K; k += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + k)));
        const float amax = _mm512_reduce_max_ps(m);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const __m512 am = _mm512_set1_ps(amax);
        int first = 0;
        for (int k = 0; k < QK_K; k += 16) {
            const __mmask16 mk = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + k)), am, _CMP_EQ_OQ);
            if (mk) { first = k + __builtin_ctz((unsigned)mk); break; }
        }
        const float iscale = -127.0f / x[first];
        const __m512 is = _mm512_set1_ps(iscale);
        const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
        int32_t sums[16];
        for (int g = 0; g < QK_K / 16; g++) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * g), is));
            v = _mm512_max_epi32(lo, _mm512_min_epi32(hi, v));
            _mm_storeu_si128((__m128i *)(y[b].qs + 16 * g), _mm512_cvtsepi32_epi8(v));
            sums[g] = _mm512_reduce_add_epi32(v);
        }
        _mm256_storeu_si256((__m256i *)y[b].bsums, _mm512_cvtsepi32_epi16(_mm512_loadu_si512(sums)));
        y[b].d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------------------------ */
/* 32-element blocks, two per register                                      */

AVX512 static inline float hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX512 static inline int hsum256_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* One body for the five 32-block weight types, specialized at compile time
 * (T and R are constants after inlining): T names the weight layout, R is the
 * number of activation rows sharing each unpacked weight pair (1 or 4). */
enum { W40, W41, W50, W51, W80 };



#define ALWAYS static inline __attribute__((always_inline))
/* Weight tiles read RW rows side by side: short streams that the hardware
 * prefetchers keep restarting on (generation from DRAM ran at 2/3 of the
 * single-row speed). The tile kernels prefetch the rows PF_TILES tiles ahead;
 * the address is formed as an integer since it may lie past the matrix
 * (prefetches never fault). */
#define PF_TILES 4
#define PREFETCH(p, off) _mm_prefetch((const char *)((uintptr_t)(p) + (off)), _MM_HINT_T0)
/* small fixed loops over registers: unrolled so arrays of vectors stay in registers */
#define UNROLL _Pragma("GCC unroll 8")

static const size_t k_wbs[] = {sizeof(block_q4_0), sizeof(block_q4_1), sizeof(block_q5_0), sizeof(block_q5_1), sizeof(block_q8_0)};

/* weight pair -> 64 unsigned bytes in weight order ([block 0 | block 1]) */
VNNI ALWAYS __m512i unpack2(int T, const uint8_t *w0, const uint8_t *w1) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    switch (T) {
    case W40: return _mm512_and_si512(join(nib_pair(w0 + 2), nib_pair(w1 + 2)), m4);
    case W41: return _mm512_and_si512(join(nib_pair(w0 + 4), nib_pair(w1 + 4)), m4);
    case W50: case W51: {
        const int o = T == W50 ? 2 : 4;   /* qh offset; qs follow it */
        const __m512i q = _mm512_and_si512(join(nib_pair(w0 + o + 4), nib_pair(w1 + o + 4)), m4);
        const __mmask64 h = _cvtu64_mask64((uint64_t)mend_rd32(w0 + o) | (uint64_t)mend_rd32(w1 + o) << 32);
        return _mm512_mask_add_epi8(q, h, q, _mm512_set1_epi8(0x10));
    }
    default:   /* q8_0: q + 128 */
        return _mm512_xor_si512(join(_mm256_loadu_si256((const __m256i *)(w0 + 2)), _mm256_loadu_si256((const __m256i *)(w1 + 2))),
                                _mm512_set1_epi8((char)0x80));
    }
}

/* one block -> 32 unsigned bytes */
VNNI ALWAYS __m256i unpack1(int T, const uint8_t *w0) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    switch (T) {
    case W40: return _mm256_and_si256(nib_pair(w0 + 2), m4);
    case W41: return _mm256_and_si256(nib_pair(w0 + 4), m4);
    case W50: case W51: {
        const int o = T == W50 ? 2 : 4;
        const __m256i q = _mm256_and_si256(nib_pair(w0 + o + 4), m4);
        return _mm256_mask_add_epi8(q, _cvtu32_mask32(mend_rd32(w0 + o)), q, _mm256_set1_epi8(0x10));
    }
    default: return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w0 + 2)), _mm256_set1_epi8((char)0x80));
    }
}

/* the offset o of the unsigned weights (value = byte - o); 0: a min type */
static inline int w_off(int T) { return T == W40 ? 8 : T == W50 ? 16 : T == W80 ? 128 : 0; }
static inline int has_min(int T) { return T == W41 || T == W51; }

/* fp16 header words of two blocks -> [d0, m0, d1, m1] (m = 0 without a min) */
AVX512 ALWAYS __m128 head2(int with_second, const uint8_t *b0, const uint8_t *b1) {
    const uint32_t mask = with_second ? 0xFFFFFFFFu : 0xFFFFu;
    return _mm_cvtph_ps(_mm_setr_epi32((int)(mend_rd32(b0) & mask), (int)(mend_rd32(b1) & mask), 0, 0));
}

/* A tile of RW weight rows (wstride bytes apart) times RA activation rows
 * (astride bytes apart): s[i * RA + k] = dot(w_i, a_k). Each unpacked weight
 * pair serves RA activation rows and each loaded activation pair RW weight
 * rows. */
VNNI ALWAYS void dot32(int T, int RW, int RA, int64_t n, const void *vw, size_t wstride,
                       const void *va, size_t astride, float *s) {
    const size_t wbs = k_wbs[T];
    const int mn = has_min(T), off = w_off(T);
    const size_t abs_ = mn ? sizeof(block_q8_1) : sizeof(block_q8_0), aq = mn ? 4 : 2;
    const int64_t nb = n / 32;
    const __m512i o = _mm512_set1_epi8((char)off);
    const __m512i lanes = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    __m512 acc[4][4];
    __m128 accm[4][4];
    UNROLL
    for (int i = 0; i < RW; i++) {
        UNROLL
        for (int k = 0; k < RA; k++) { acc[i][k] = _mm512_setzero_ps(); accm[i][k] = _mm_setzero_ps(); }
    }
    int64_t b = 0;
    for (; b + 1 < nb; b += 2) {
        __m512i q[4];
        __m128 ws[4];
        UNROLL
        for (int i = 0; i < RW; i++) {
            const uint8_t *w0 = (const uint8_t *)vw + (size_t)i * wstride + (size_t)b * wbs, *w1 = w0 + wbs;
            if (RW > 1) PREFETCH(w0, PF_TILES * RW * wstride);
            q[i] = unpack2(T, w0, w1);
            ws[i] = head2(mn, w0, w1);
        }
        UNROLL
        for (int k = 0; k < RA; k++) {
            const uint8_t *a0 = (const uint8_t *)va + (size_t)k * astride + (size_t)b * abs_, *a1 = a0 + abs_;
            const __m512i av = join(_mm256_loadu_si256((const __m256i *)(a0 + aq)), _mm256_loadu_si256((const __m256i *)(a1 + aq)));
            const __m512i na = off ? _mm512_sub_epi8(_mm512_setzero_si512(), av) : av;
            const __m128 as = head2(mn, a0, a1);
            UNROLL
            for (int i = 0; i < RW; i++) {
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[i], av);
                if (off) p = _mm512_dpbusd_epi32(p, o, na);
                /* [dw0*da0, mw0*sa0, dw1*da1, mw1*sa1] */
                const __m128 v = _mm_mul_ps(ws[i], as);
                acc[i][k] = _mm512_fmadd_ps(_mm512_permutexvar_ps(lanes, _mm512_castps128_ps512(v)), _mm512_cvtepi32_ps(p), acc[i][k]);
                if (mn) accm[i][k] = _mm_add_ps(accm[i][k], v);
            }
        }
    }
    float tail[4][4] = {{0}};
    if (b < nb) {
        UNROLL
        for (int i = 0; i < RW; i++) {
            const uint8_t *w0 = (const uint8_t *)vw + (size_t)i * wstride + (size_t)b * wbs;
            const __m256i q = unpack1(T, w0);
            const __m128 ws = head2(mn, w0, w0);
            UNROLL
            for (int k = 0; k < RA; k++) {
                const uint8_t *a0 = (const uint8_t *)va + (size_t)k * astride + (size_t)b * abs_;
                const __m256i av = _mm256_loadu_si256((const __m256i *)(a0 + aq));
                __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, av);
                if (off) p = _mm256_dpbusd_epi32(p, _mm256_set1_epi8((char)off), _mm256_sub_epi8(_mm256_setzero_si256(), av));
                const __m128 v = _mm_mul_ps(ws, head2(mn, a0, a0));
                tail[i][k] = _mm_cvtss_f32(v) * hsum256_ps(_mm256_cvtepi32_ps(p));
                if (mn) tail[i][k] += _mm_cvtss_f32(_mm_movehdup_ps(v));   /* + m*s */
            }
        }
    }
    UNROLL
    for (int i = 0; i < RW; i++) {
        UNROLL
        for (int k = 0; k < RA; k++) {
            float m = 0.0f;
            if (mn) {   /* lanes 1 and 3 hold the m*s sums of the pairs */
                const __m128 a = accm[i][k];
                m = _mm_cvtss_f32(_mm_shuffle_ps(a, a, 1)) + _mm_cvtss_f32(_mm_shuffle_ps(a, a, 3));
            }
            s[i * RA + k] = _mm512_reduce_add_ps(acc[i][k]) + tail[i][k] + m;
        }
    }
}

#define DOT32(name, T) \
    VNNI float vec_dot_##name##_avx512(int64_t n, const void *w, const void *a) { \
        float s; \
        dot32(T, 1, 1, n, w, 0, a, 0, &s); \
        return s; \
    } \
    VNNI void vec_dot4_##name##_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s) { \
        dot32(T, 1, 4, n, w, 0, a, astride, s); \
    } \
    VNNI void vec_dotw4_##name##_avx512(int64_t n, const void *w, size_t wstride, const void *a, float *s) { \
        dot32(T, 4, 1, n, w, wstride, a, 0, s); \
    } \
    VNNI void vec_dot24_##name##_avx512(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s) { \
        dot32(T, 2, 4, n, w, wstride, a, astride, s); \
    }
DOT32(q4_0_q8_0, W40)
DOT32(q4_1_q8_1, W41)
DOT32(q5_0_q8_0, W50)
DOT32(q5_1_q8_1, W51)
DOT32(q8_0_q8_0, W80)

/* ------------------------------------------------------------------------ */
/* K-quants, 64 weights per register                                        */

/* scale bytes -> int16 lanes [s(4p) x8, s(4p+1) x8, s(4p+2) x8, s(4p+3) x8]
 * for a 64-weight group made of four 16-weight sub-blocks */
static const uint8_t k_quad_shuffle[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};
AVX512 static inline __m512i scale_quad(__m256i sc2 /* 16 scale bytes in both lanes */, int p) {
    /* vpshufb indexes within each 128-bit lane; both lanes hold all 16 scales */
    const __m256i idx = _mm256_loadu_si256((const __m256i *)k_quad_shuffle[p]);
    return _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(sc2, idx));
}

/* 32 bytes in both 256-bit halves */
AVX512 static inline __m512i bcast256(const void *p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

/* sum over adjacent byte pairs of q * act, times the int16 scales, pairs again
 * summed: 16 int32 lanes */
AVX512 static inline __m512i madd_scaled(__m512i q, __m512i act, __m512i sc16) {
    return _mm512_madd_epi16(_mm512_maddubs_epi16(q, act), sc16);
}

/* the 16 q3_K scales minus 32, as int8 */
AVX512 static inline __m128i q3k_scales(const uint8_t *sb) {
    uint32_t a0, a1, t;
    memcpy(&a0, sb, 4);
    memcpy(&a1, sb + 4, 4);
    memcpy(&t, sb + 8, 4);
    const uint32_t s0 = (a0 & 0x0F0F0F0F) | (t & 0x03030303) << 4;
    const uint32_t s1 = (a1 & 0x0F0F0F0F) | ((t >> 2) & 0x03030303) << 4;
    const uint32_t s2 = ((a0 >> 4) & 0x0F0F0F0F) | ((t >> 4) & 0x03030303) << 4;
    const uint32_t s3 = ((a1 >> 4) & 0x0F0F0F0F) | ((t >> 6) & 0x03030303) << 4;
    return _mm_sub_epi8(_mm_setr_epi32((int)s0, (int)s1, (int)s2, (int)s3), _mm_set1_epi8(32));
}

/* q4_K / q5_K scales and mins: sc[0..7] in bytes 0..7, mn[0..7] in 8..15 */
AVX512 static inline __m128i k4_scales(const uint8_t *q) {
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4);
    memcpy(&u1, q + 4, 4);
    memcpy(&u2, q + 8, 4);
    const uint32_t sc03 = u0 & 0x3F3F3F3F, mn03 = u1 & 0x3F3F3F3F;
    const uint32_t sc47 = (u2 & 0x0F0F0F0F) | ((u0 >> 6) & 0x03030303) << 4;
    const uint32_t mn47 = ((u2 >> 4) & 0x0F0F0F0F) | ((u1 >> 6) & 0x03030303) << 4;
    return _mm_setr_epi32((int)sc03, (int)sc47, (int)mn03, (int)mn47);
}

/* sum_s mn[s] * (bsums[2s] + bsums[2s+1]) */
AVX512 static inline int k4_summs(__m128i scm, const int16_t *bsums) {
    const __m128i b0 = _mm_loadu_si128((const __m128i *)bsums);
    const __m128i b1 = _mm_loadu_si128((const __m128i *)(bsums + 8));
    const __m128i mn = _mm_cvtepu8_epi16(_mm_srli_si128(scm, 8));
    __m128i s = _mm_madd_epi16(mn, _mm_hadd_epi16(b0, b1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* int16 lanes [sc[p] x16 | sc[p+2] x16] of the q4_K / q5_K scale bytes in
 * both 128-bit lanes of scm2 (p = 0, 1, 4, 5: the sub-blocks a register of
 * quants meets, see K4_ACT) */
static const uint8_t k_half_shuffle[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2},
    {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6},
    {5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7},
};
AVX512 static inline __m512i scale_halves(__m256i scm2, int which) {
    const __m256i idx = _mm256_loadu_si256((const __m256i *)k_half_shuffle[which]);
    return _mm512_cvtepu8_epi16(_mm256_shuffle_epi8(scm2, idx));
}

/* 128 bytes of q4_K / q5_K quants against 256 activations: register k holds
 * qs chunks 2k, 2k+1 (sub-blocks 4k, 4k+2 in the low nibbles, 4k+1, 4k+3 in
 * the high ones); the activations are regrouped to match */
#define K4_ACT(qa, k, lo, hi) do { \
        const __m512i A_ = _mm512_loadu_si512((qa) + 128 * (k)); \
        const __m512i B_ = _mm512_loadu_si512((qa) + 128 * (k) + 64); \
        lo = _mm512_shuffle_i64x2(A_, B_, 0x44); \
        hi = _mm512_shuffle_i64x2(A_, B_, 0xEE); \
    } while (0)

/* Each K body runs R activation rows (1 or 4, a constant after inlining)
 * against one unpacked weight block; activation row r starts r * astride
 * bytes after va. */
#define ROW(va, astride, r, b) ((const block_q8_K *)((const uint8_t *)(va) + (size_t)(r) * (astride)) + (b))

AVX512 ALWAYS void dot_q2_K(int R, int64_t n, const void *vw, const void *va, size_t astride, float *s) {
    const block_q2_K *w = vw;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i sh01 = join(_mm256_setzero_si256(), _mm256_set1_epi16(2));
    const __m512i sh23 = join(_mm256_set1_epi16(4), _mm256_set1_epi16(6));
    __m512 acc[4];
    float summ[4];
    UNROLL
    for (int r = 0; r < R; r++) { acc[r] = _mm512_setzero_ps(); summ[r] = 0.0f; }
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m128i sb = _mm_loadu_si128((const __m128i *)w[b].scales);
        const __m128i sc = _mm_and_si128(sb, _mm_set1_epi8(0x0F));
        const __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), _mm_set1_epi8(0x0F)));
        const __m256i sc2 = _mm256_broadcastsi128_si256(sc);
        __m512i q[4], S[4];
        UNROLL
        for (int h = 0; h < 2; h++) {
            const __m512i qq = bcast256(w[b].qs + 32 * h);
            q[2 * h] = _mm512_and_si512(_mm512_srlv_epi16(qq, sh01), m3);
            q[2 * h + 1] = _mm512_and_si512(_mm512_srlv_epi16(qq, sh23), m3);
            S[2 * h] = scale_quad(sc2, 2 * h);
            S[2 * h + 1] = scale_quad(sc2, 2 * h + 1);
        }
        const float d = h2f(w[b].d), dmin = h2f(w[b].dmin);
        UNROLL
        for (int r = 0; r < R; r++) {
            const block_q8_K *a = ROW(va, astride, r, b);
            const int summs = hsum256_epi32(_mm256_madd_epi16(mn, _mm256_loadu_si256((const __m256i *)a->bsums)));
            __m512i sumi = _mm512_setzero_si512();
            UNROLL
            for (int g = 0; g < 4; g++)
                sumi = _mm512_add_epi32(sumi, madd_scaled(q[g], _mm512_loadu_si512(a->qs + 64 * g), S[g]));
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a->d * d), _mm512_cvtepi32_ps(sumi), acc[r]);
            summ[r] += a->d * dmin * (float)summs;
        }
    }
    UNROLL
    for (int r = 0; r < R; r++) s[r] = _mm512_reduce_add_ps(acc[r]) - summ[r];
}

/* q3_K weights fed as q + 4 = low bits | hbit << 2 (0..7); the 4 comes off as
 * 4 * sum_s sc_s bsums_s */
AVX512 ALWAYS void dot_q3_K(int R, int64_t n, const void *vw, const void *va, size_t astride, float *s) {
    const block_q3_K *w = vw;
    const __m512i m3 = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
    const __m512i sh01 = join(_mm256_setzero_si256(), _mm256_set1_epi16(2));
    const __m512i sh23 = join(_mm256_set1_epi16(4), _mm256_set1_epi16(6));
    __m512 acc[4];
    UNROLL
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m128i sc = q3k_scales(w[b].scales);
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc);
        const __m256i sc2 = _mm256_broadcastsi128_si256(sc);
        const __m512i hm = bcast256(w[b].hmask);
        __m512i q[4], S[4];
        UNROLL
        for (int h = 0; h < 2; h++) {
            const __m512i qq = bcast256(w[b].qs + 32 * h);
            const __m512i b01 = join(_mm256_set1_epi8((char)(1 << (4 * h))), _mm256_set1_epi8((char)(1 << (4 * h + 1))));
            const __m512i b23 = join(_mm256_set1_epi8((char)(1 << (4 * h + 2))), _mm256_set1_epi8((char)(1 << (4 * h + 3))));
            const __m512i q01 = _mm512_and_si512(_mm512_srlv_epi16(qq, sh01), m3);
            const __m512i q23 = _mm512_and_si512(_mm512_srlv_epi16(qq, sh23), m3);
            q[2 * h] = _mm512_mask_add_epi8(q01, _mm512_test_epi8_mask(hm, b01), q01, four);
            q[2 * h + 1] = _mm512_mask_add_epi8(q23, _mm512_test_epi8_mask(hm, b23), q23, four);
            S[2 * h] = scale_quad(sc2, 2 * h);
            S[2 * h + 1] = scale_quad(sc2, 2 * h + 1);
        }
        const float d = h2f(w[b].d);
        UNROLL
        for (int r = 0; r < R; r++) {
            const block_q8_K *a = ROW(va, astride, r, b);
            const __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)a->bsums));
            __m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 2)));
            UNROLL
            for (int g = 0; g < 4; g++)
                sumi = _mm512_add_epi32(sumi, madd_scaled(q[g], _mm512_loadu_si512(a->qs + 64 * g), S[g]));
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a->d * d), _mm512_cvtepi32_ps(sumi), acc[r]);
        }
    }
    UNROLL
    for (int r = 0; r < R; r++) s[r] = _mm512_reduce_add_ps(acc[r]);
}

/* q4_K (five = 0) and q5_K (five = 1) */
AVX512 ALWAYS void dot_q45_K(int five, int R, int64_t n, const void *vw, const void *va, size_t astride, float *s) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), b4 = _mm512_set1_epi8(0x10);
    const size_t wbs = five ? sizeof(block_q5_K) : sizeof(block_q4_K);
    __m512 acc[4];
    float summ[4];
    UNROLL
    for (int r = 0; r < R; r++) { acc[r] = _mm512_setzero_ps(); summ[r] = 0.0f; }
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8_t *blk = (const uint8_t *)vw + (size_t)b * wbs;
        const uint8_t *scales = blk + 4;                            /* after d, dmin */
        const uint8_t *qs = five ? ((const block_q5_K *)blk)->qs : ((const block_q4_K *)blk)->qs;
        const __m128i scm = k4_scales(scales);
        const __m256i scm2 = _mm256_broadcastsi128_si256(scm);
        __m512i lo[2], hi[2], Slo[2], Shi[2];
        const __m512i qh = five ? bcast256(((const block_q5_K *)blk)->qh) : _mm512_setzero_si512();
        UNROLL
        for (int k = 0; k < 2; k++) {
            const __m512i q = _mm512_loadu_si512(qs + 64 * k);
            lo[k] = _mm512_and_si512(q, m4);
            hi[k] = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
            if (five) {   /* fifth bits: bit s of qh[l] for sub-block s */
                const __m512i blo = join(_mm256_set1_epi8((char)(1 << (4 * k))), _mm256_set1_epi8((char)(1 << (4 * k + 2))));
                const __m512i bhi = join(_mm256_set1_epi8((char)(1 << (4 * k + 1))), _mm256_set1_epi8((char)(1 << (4 * k + 3))));
                lo[k] = _mm512_mask_add_epi8(lo[k], _mm512_test_epi8_mask(qh, blo), lo[k], b4);
                hi[k] = _mm512_mask_add_epi8(hi[k], _mm512_test_epi8_mask(qh, bhi), hi[k], b4);
            }
            Slo[k] = scale_halves(scm2, 2 * k);       /* sc[4k], sc[4k+2] */
            Shi[k] = scale_halves(scm2, 2 * k + 1);   /* sc[4k+1], sc[4k+3] */
        }
        const float d = h2f(mend_rd16(blk)), dmin = h2f(mend_rd16(blk + 2));
        UNROLL
        for (int r = 0; r < R; r++) {
            const block_q8_K *a = ROW(va, astride, r, b);
            const int summs = k4_summs(scm, a->bsums);
            __m512i sumi = _mm512_setzero_si512();
            UNROLL
            for (int k = 0; k < 2; k++) {
                __m512i alo, ahi;
                K4_ACT(a->qs, k, alo, ahi);
                sumi = _mm512_add_epi32(sumi, madd_scaled(lo[k], alo, Slo[k]));
                sumi = _mm512_add_epi32(sumi, madd_scaled(hi[k], ahi, Shi[k]));
            }
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a->d * d), _mm512_cvtepi32_ps(sumi), acc[r]);
            summ[r] += a->d * dmin * (float)summs;
        }
    }
    UNROLL
    for (int r = 0; r < R; r++) s[r] = _mm512_reduce_add_ps(acc[r]) - summ[r];
}

AVX512 ALWAYS void dot_q6_K(int R, int64_t n, const void *vw, const void *va, size_t astride, float *s) {
    const block_q6_K *w = vw;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    const __m512i sh02 = join(_mm256_setzero_si256(), _mm256_set1_epi16(2));
    const __m512i sh46 = join(_mm256_set1_epi16(4), _mm256_set1_epi16(6));
    __m512 acc[4];
    UNROLL
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m128i sc = _mm_loadu_si128((const __m128i *)w[b].scales);
        const __m256i sc16 = _mm256_cvtepi8_epi16(sc);
        const __m256i sc2 = _mm256_broadcastsi128_si256(sc);
        __m512i q[4], S[4];
        UNROLL
        for (int h = 0; h < 2; h++) {
            const __m512i l = _mm512_loadu_si512(w[b].ql + 64 * h);
            const __m512i qh = bcast256(w[b].qh + 32 * h);
            q[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh02), m3), 4));
            q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                           _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, sh46), m3), 4));
            S[2 * h] = scale_quad(sc2, 2 * h);
            S[2 * h + 1] = scale_quad(sc2, 2 * h + 1);
        }
        const float d = h2f(w[b].d);
        UNROLL
        for (int r = 0; r < R; r++) {
            const block_q8_K *a = ROW(va, astride, r, b);
            /* 32 * sum_s sc_s bsums_s comes off the quants 0..63 */
            const __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)a->bsums));
            __m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 5)));
            UNROLL
            for (int g = 0; g < 4; g++)
                sumi = _mm512_add_epi32(sumi, madd_scaled(q[g], _mm512_loadu_si512(a->qs + 64 * g), S[g]));
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a->d * d), _mm512_cvtepi32_ps(sumi), acc[r]);
        }
    }
    UNROLL
    for (int r = 0; r < R; r++) s[r] = _mm512_reduce_add_ps(acc[r]);
}

#define DOTK(name, call) \
    AVX512 float vec_dot_##name##_avx512(int64_t n, const void *w, const void *a) { \
        float s; \
        call(1, n, w, a, 0, &s); \
        return s; \
    } \
    AVX512 void vec_dot4_##name##_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s) { \
        call(4, n, w, a, astride, s); \
    }
#define Q4K(R, n, w, a, st, s) dot_q45_K(0, R, n, w, a, st, s)
#define Q5K(R, n, w, a, st, s) dot_q45_K(1, R, n, w, a, st, s)
DOTK(q2_K_q8_K, dot_q2_K)
DOTK(q3_K_q8_K, dot_q3_K)
DOTK(q4_K_q8_K, Q4K)
DOTK(q5_K_q8_K, Q5K)
DOTK(q6_K_q8_K, dot_q6_K)

/* ------------------------------------------------------------------------ */
/* float weights                                                            */

AVX512 float vec_dot_f16_f32_avx512(int64_t n, const void *vw, const void *va) {
    const mend_half *w = vw;
    const float *a = va;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 64 <= n; j += 64) {
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + j))), _mm512_loadu_ps(a + j), s0);
        s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + j + 16))), _mm512_loadu_ps(a + j + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + j + 32))), _mm512_loadu_ps(a + j + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + j + 48))), _mm512_loadu_ps(a + j + 48), s3);
    }
    for (; j + 16 <= n; j += 16)
        s0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + j))), _mm512_loadu_ps(a + j), s0);
    if (j < n) {
        const __mmask16 k = (__mmask16)((1u << (n - j)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, w + j)), _mm512_maskz_loadu_ps(k, a + j), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

AVX512 float vec_dot_f32_f32_avx512(int64_t n, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 64 <= n; j += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + j), _mm512_loadu_ps(a + j), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + j + 16), _mm512_loadu_ps(a + j + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + j + 32), _mm512_loadu_ps(a + j + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + j + 48), _mm512_loadu_ps(a + j + 48), s3);
    }
    for (; j + 16 <= n; j += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + j), _mm512_loadu_ps(a + j), s0);
    if (j < n) {
        const __mmask16 k = (__mmask16)((1u << (n - j)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, w + j), _mm512_maskz_loadu_ps(k, a + j), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* f16 / f32 weight tiles (RW weight rows x RA activation rows, as dot32):
 * each converted weight vector meets RA activation rows, each activation
 * vector RW weight rows; one accumulator per dot, 16 lanes per step. */
/* 16 weights from element j on; m = 0: all 16 (unmasked), else the lanes of m */
AVX512 ALWAYS __m512 wload(int half_w, const void *w, int64_t j, __mmask16 m) {
    if (!m) {
        if (half_w) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const mend_half *)w + j)));
        return _mm512_loadu_ps((const float *)w + j);
    }
    if (half_w) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const mend_half *)w + j));
    return _mm512_maskz_loadu_ps(m, (const float *)w + j);
}

AVX512 ALWAYS void dotf(int half_w, int RW, int RA, int64_t n, const void *vw, size_t wstride,
                        const void *va, size_t astride, float *s) {
    __m512 acc[4][4];
    UNROLL
    for (int i = 0; i < RW; i++) {
        UNROLL
        for (int k = 0; k < RA; k++) acc[i][k] = _mm512_setzero_ps();
    }
    int64_t j = 0;
    /* two steps per iteration (one prefetch per row and cache line of f16) */
    for (; j + 32 <= n; j += 32) {
        if (RW > 1) {
            UNROLL
            for (int i = 0; i < RW; i++)
                PREFETCH(vw, (size_t)(i + PF_TILES * RW) * wstride + (size_t)j * (half_w ? 2 : 4));
        }
        UNROLL
        for (int h = 0; h < 2; h++) {
            __m512 wv[4];
            UNROLL
            for (int i = 0; i < RW; i++) wv[i] = wload(half_w, (const uint8_t *)vw + (size_t)i * wstride, j + 16 * h, 0);
            UNROLL
            for (int k = 0; k < RA; k++) {
                const __m512 av = _mm512_loadu_ps((const float *)((const uint8_t *)va + (size_t)k * astride) + j + 16 * h);
                UNROLL
                for (int i = 0; i < RW; i++) acc[i][k] = _mm512_fmadd_ps(wv[i], av, acc[i][k]);
            }
        }
    }
    for (; j + 16 <= n; j += 16) {
        __m512 wv[4];
        UNROLL
        for (int i = 0; i < RW; i++) wv[i] = wload(half_w, (const uint8_t *)vw + (size_t)i * wstride, j, 0);
        UNROLL
        for (int k = 0; k < RA; k++) {
            const __m512 av = _mm512_loadu_ps((const float *)((const uint8_t *)va + (size_t)k * astride) + j);
            UNROLL
            for (int i = 0; i < RW; i++) acc[i][k] = _mm512_fmadd_ps(wv[i], av, acc[i][k]);
        }
    }
    if (j < n) {   /* masked tail */
        const __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
        __m512 wv[4];
        UNROLL
        for (int i = 0; i < RW; i++) wv[i] = wload(half_w, (const uint8_t *)vw + (size_t)i * wstride, j, m);
        UNROLL
        for (int k = 0; k < RA; k++) {
            const __m512 av = _mm512_maskz_loadu_ps(m, (const float *)((const uint8_t *)va + (size_t)k * astride) + j);
            UNROLL
            for (int i = 0; i < RW; i++) acc[i][k] = _mm512_fmadd_ps(wv[i], av, acc[i][k]);
        }
    }
    UNROLL
    for (int i = 0; i < RW; i++) {
        UNROLL
        for (int k = 0; k < RA; k++) s[i * RA + k] = _mm512_reduce_add_ps(acc[i][k]);
    }
}

#define DOTF(name, H) \
    AVX512 void vec_dot4_##name##_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s) { \
        dotf(H, 1, 4, n, w, 0, a, astride, s); \
    } \
    AVX512 void vec_dotw4_##name##_avx512(int64_t n, const void *w, size_t wstride, const void *a, float *s) { \
        dotf(H, 4, 1, n, w, wstride, a, 0, s); \
    } \
    AVX512 void vec_dot24_##name##_avx512(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s) { \
        dotf(H, 2, 4, n, w, wstride, a, astride, s); \
    }
DOTF(f16_f32, 1)
DOTF(f32_f32, 0)

#else
typedef int mend_qmatmul_avx512_unused;   /* ISO C forbids an empty unit */
#endif
