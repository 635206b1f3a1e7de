/* AVX2 (+ FMA, F16C) activation quantizers and dot products on packed blocks
 * (see qmatmul.h). Compiled for baseline x86-64 with per-function target
 * attributes; only called when cpu.c reports AVX2. The integer sums equal
 * those of the scalar _ref twins in qmatmul.c; the float combination uses FMA.
 *
 * Integer products go through vpmaddubsw (u8 x s8 -> pairs summed in int16),
 * which saturates at +-32767: every use below keeps |u8| * 127 * 2 under that
 * (weights <= 128 in magnitude, activations in [-127, 127]). */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "kernels/qmatmul.h"
#include "util/util.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float h2f(mend_half h) { return _cvtsh_ss(h); }

AVX2 static inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

AVX2 static inline float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* sum of u8 x s8 products, 4 adjacent bytes per int32 lane */
AVX2 static inline __m256i dot_us(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* 16 packed nibbles -> 32 bytes: low nibbles in bytes 0..15, high in 16..31 */
AVX2 static inline __m256i nibbles32(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes, 0xFF where bit j of the little-endian word is set */
AVX2 static inline __m256i bits32(const uint8_t *qh) {
    uint32_t u;
    memcpy(&u, qh, 4);
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                          2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)u), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* ------------------------------------------------------------------------ */
/* activation quantizers                                                    */

/* 8 int32 vectors in order -> 32 int8 (saturating), in order */
AVX2 static inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i v = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* one block of 32; returns d, writes q, sets *sum to sum(q) */
AVX2 static inline float quant32(const float *x, int8_t *q, int *sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    const float amax = hmax_ps(m);
    const float d = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i i[4];
    for (int k = 0; k < 4; k++) i[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], id));
    _mm256_storeu_si256((__m256i *)q, pack32(i[0], i[1], i[2], i[3]));
    if (sum) *sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])));
    return d;
}

AVX2 void quantize_act_q8_0_avx2(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / QK8_0; b++, x += QK8_0)
        y[b].d = mend_f32_to_fp16(quant32(x, y[b].qs, NULL));
}

AVX2 void quantize_act_q8_1_avx2(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / QK8_1; b++, x += QK8_1) {
        int sum;
        const float d = quant32(x, y[b].qs, &sum);
        y[b].d = mend_f32_to_fp16(d);
        y[b].s = mend_f32_to_fp16(d * (float)sum);
    }
}

AVX2 void quantize_act_q8_K_avx2(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < QK_K; k += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
        const float amax = hmax_ps(m);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        /* the first value of largest magnitude gives the sign of the scale */
        const __m256 am = _mm256_set1_ps(amax);
        int first = 0;
        for (int k = 0; k < QK_K; k += 8) {
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)), am, _CMP_EQ_OQ));
            if (mask) { first = k + __builtin_ctz((unsigned)mask); break; }
        }
        const float iscale = -127.0f / x[first];
        const __m256 is = _mm256_set1_ps(iscale);
        const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
        for (int k = 0; k < QK_K; k += 64) {
            __m256i i[8];
            for (int j = 0; j < 8; j++) {
                const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * j), is));
                i[j] = _mm256_max_epi32(lo, _mm256_min_epi32(hi, v));
            }
            _mm256_storeu_si256((__m256i *)(y[b].qs + k), pack32(i[0], i[1], i[2], i[3]));
            _mm256_storeu_si256((__m256i *)(y[b].qs + k + 32), pack32(i[4], i[5], i[6], i[7]));
            /* 4 groups of 16: hadd tree, then fold the two 128-bit lanes */
            const __m256i g0 = _mm256_add_epi32(i[0], i[1]), g1 = _mm256_add_epi32(i[2], i[3]);
            const __m256i g2 = _mm256_add_epi32(i[4], i[5]), g3 = _mm256_add_epi32(i[6], i[7]);
            const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(g0, g1), _mm256_hadd_epi32(g2, g3));
            const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
            _mm_storel_epi64((__m128i *)(y[b].bsums + k / 16), _mm_packs_epi32(s, s));
        }
        y[b].d = 1.0f / iscale;
    }
}

/* ------------------------------------------------------------------------ */
/* 32-element blocks                                                        */

/* One body for the five 32-block weight types, specialized at compile time
 * (T and R are constants after inlining): T names the weight layout, R is the
 * number of activation rows sharing each unpacked weight block (1 or 4).
 * Signed weights (q4_0, q5_0, q8_0) go through the sign trick: |w| as the
 * unsigned operand, a with w's sign as the signed one (a never holds -128;
 * a q8_0 weight of -128 becomes the unsigned 128, still exact). */
enum { W40, W41, W50, W51, W80 };

#define ALWAYS static inline __attribute__((always_inline))
/* Weight tiles read RW rows side by side, short streams the hardware
 * prefetchers keep restarting on: the tile kernels prefetch the rows PF_TILES
 * tiles ahead (as an integer address: it may lie past the matrix, and
 * prefetches never fault). */
#define PF_TILES 4
#define PREFETCH(p, off) _mm_prefetch((const char *)((uintptr_t)(p) + (off)), _MM_HINT_T0)
/* small fixed loops over registers: unrolled so arrays of vectors stay in registers */
#define UNROLL _Pragma("GCC unroll 8")

static const size_t k_wbs[] = {sizeof(block_q4_0), sizeof(block_q4_1), sizeof(block_q5_0), sizeof(block_q5_1), sizeof(block_q8_0)};

static inline int is_signed(int T) { return T == W40 || T == W50 || T == W80; }
static inline int has_min(int T) { return T == W41 || T == W51; }

/* one weight block -> 32 bytes in weight order: signed values for the signed
 * types, unsigned 0..31 for the min types */
AVX2 ALWAYS __m256i unpack1(int T, const uint8_t *w0) {
    switch (T) {
    case W40: return _mm256_sub_epi8(nibbles32(w0 + 2), _mm256_set1_epi8(8));
    case W41: return nibbles32(w0 + 4);
    case W50: return _mm256_or_si256(nibbles32(w0 + 6), _mm256_andnot_si256(bits32(w0 + 2), _mm256_set1_epi8((char)0xF0)));
    case W51: return _mm256_or_si256(nibbles32(w0 + 8), _mm256_and_si256(bits32(w0 + 4), _mm256_set1_epi8(0x10)));
    default: return _mm256_loadu_si256((const __m256i *)(w0 + 2));
    }
}

/* fp16 header words of two blocks -> [d0, m0, d1, m1] (m = 0 without a min) */
AVX2 ALWAYS __m128 head2(int with_second, const uint8_t *b0, const uint8_t *b1) {
    const uint32_t mask = with_second ? 0xFFFFFFFFu : 0xFFFFu;
    return _mm_cvtph_ps(_mm_setr_epi32((int)(mend_rd32(b0) & mask), (int)(mend_rd32(b1) & mask), 0, 0));
}

/* A tile of RW weight rows (wstride bytes apart) times RA activation rows
 * (astride bytes apart): s[i * RA + k] = dot(w_i, a_k). */
AVX2 ALWAYS void dot32(int T, int RW, int RA, int64_t n, const void *vw, size_t wstride,
                       const void *va, size_t astride, float *s) {
    const size_t wbs = k_wbs[T];
    const int mn = has_min(T), sg = is_signed(T);
    const size_t abs_ = mn ? sizeof(block_q8_1) : sizeof(block_q8_0), aq = mn ? 4 : 2;
    const int64_t nb = n / 32;
    __m256 acc[4][4];
    __m128 accm[4][4];
    UNROLL
    for (int i = 0; i < RW; i++) {
        UNROLL
        for (int k = 0; k < RA; k++) { acc[i][k] = _mm256_setzero_ps(); accm[i][k] = _mm_setzero_ps(); }
    }
    /* blocks in pairs (one fp16 conversion for both headers), an odd one last */
    for (int64_t b = 0; b < nb; b += 2) {
        const int two = b + 1 < nb;
        __m256i q0[4], q1[4];
        __m128 ws[4];
        UNROLL
        for (int i = 0; i < RW; i++) {
            const uint8_t *w0 = (const uint8_t *)vw + (size_t)i * wstride + (size_t)b * wbs, *w1 = two ? w0 + wbs : w0;
            if (RW > 1) PREFETCH(w0, PF_TILES * RW * wstride);
            q0[i] = unpack1(T, w0);
            q1[i] = unpack1(T, w1);
            ws[i] = head2(mn, w0, w1);
        }
        UNROLL
        for (int k = 0; k < RA; k++) {
            const uint8_t *a0 = (const uint8_t *)va + (size_t)k * astride + (size_t)b * abs_, *a1 = two ? a0 + abs_ : a0;
            const __m256i v0 = _mm256_loadu_si256((const __m256i *)(a0 + aq)), v1 = _mm256_loadu_si256((const __m256i *)(a1 + aq));
            const __m128 as = head2(mn, a0, a1);
            UNROLL
            for (int i = 0; i < RW; i++) {
                __m256i p0, p1;
                if (sg) {
                    p0 = dot_us(_mm256_sign_epi8(q0[i], q0[i]), _mm256_sign_epi8(v0, q0[i]));
                    p1 = dot_us(_mm256_sign_epi8(q1[i], q1[i]), _mm256_sign_epi8(v1, q1[i]));
                } else {
                    p0 = dot_us(q0[i], v0);
                    p1 = dot_us(q1[i], v1);
                }
                /* [dw0*da0, mw0*sa0, dw1*da1, mw1*sa1] */
                __m128 v = _mm_mul_ps(ws[i], as);
                if (!two) v = _mm_blend_ps(v, _mm_setzero_ps(), 0xC);   /* the odd block counted once */
                acc[i][k] = _mm256_fmadd_ps(_mm256_broadcastss_ps(v), _mm256_cvtepi32_ps(p0), acc[i][k]);
                acc[i][k] = _mm256_fmadd_ps(_mm256_broadcastss_ps(_mm_movehl_ps(v, v)), _mm256_cvtepi32_ps(p1), acc[i][k]);
                if (mn) accm[i][k] = _mm_add_ps(accm[i][k], v);
            }
        }
    }
    UNROLL
    for (int i = 0; i < RW; i++) {
        UNROLL
        for (int k = 0; k < RA; k++) {
            float m = 0.0f;
            if (mn) {   /* lanes 1 and 3 hold the m*s sums */
                const __m128 a = accm[i][k];
                m = _mm_cvtss_f32(_mm_shuffle_ps(a, a, 1)) + _mm_cvtss_f32(_mm_shuffle_ps(a, a, 3));
            }
            s[i * RA + k] = hsum_ps(acc[i][k]) + m;
        }
    }
}

#define DOT32(name, T) \
    AVX2 float vec_dot_##name##_avx2(int64_t n, const void *w, const void *a) { \
        float s; \
        dot32(T, 1, 1, n, w, 0, a, 0, &s); \
        return s; \
    } \
    AVX2 void vec_dot4_##name##_avx2(int64_t n, const void *w, const void *a, size_t astride, float *s) { \
        dot32(T, 1, 4, n, w, 0, a, astride, s); \
    } \
    AVX2 void vec_dotw4_##name##_avx2(int64_t n, const void *w, size_t wstride, const void *a, float *s) { \
        dot32(T, 4, 1, n, w, wstride, a, 0, s); \
    } \
    AVX2 void vec_dot24_##name##_avx2(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s) { \
        dot32(T, 2, 4, n, w, wstride, a, astride, s); \
    }
DOT32(q4_0_q8_0, W40)
DOT32(q4_1_q8_1, W41)
DOT32(q5_0_q8_0, W50)
DOT32(q5_1_q8_1, W51)
DOT32(q8_0_q8_0, W80)

/* ------------------------------------------------------------------------ */
/* K-quants                                                                 */

/* shuffles picking scale bytes (2p, 2p+1) into [2p x8, 2p+1 x8] */
static const uint8_t k_pair_shuffle[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},
    {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
    {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};

/* int16 lanes 0..7 = sc[2p], 8..15 = sc[2p+1] (signed scale bytes) */
AVX2 static inline __m256i scale_pair(__m128i sc, int p) {
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, _mm_loadu_si128((const __m128i *)k_pair_shuffle[p])));
}

AVX2 float vec_dot_q2_K_q8_K_avx2(int64_t n, const void *vw, const void *va) {
    const block_q2_K *w = vw;
    const block_q8_K *a = va;
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m128i sb = _mm_loadu_si128((const __m128i *)w[b].scales);
        const __m128i sc = _mm_and_si128(sb, m4);
        const __m128i mn = _mm_and_si128(_mm_srli_epi16(sb, 4), m4);
        const __m256i ms = _mm256_madd_epi16(_mm256_cvtepu8_epi16(mn), _mm256_loadu_si256((const __m256i *)a[b].bsums));
        const int summs = hsum_epi32(ms);
        __m256i sumi = _mm256_setzero_si256();
        const int8_t *qa = a[b].qs;
        UNROLL
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * h));
            UNROLL
            for (int g = 0; g < 4; g++, qa += 32) {
                const __m256i qg = _mm256_and_si256(_mm256_srli_epi16(q, 2 * g), m3);
                const __m256i p = _mm256_maddubs_epi16(qg, _mm256_loadu_si256((const __m256i *)qa));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale_pair(sc, 4 * h + g)));
            }
        }
        const float da = a[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(da * h2f(w[b].d)), _mm256_cvtepi32_ps(sumi), acc);
        summ += da * h2f(w[b].dmin) * (float)summs;
    }
    return hsum_ps(acc) - summ;
}

/* the 16 q3_K scales minus 32, as int8 */
AVX2 static inline __m128i q3k_scales(const uint8_t *sb) {
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

AVX2 float vec_dot_q3_K_q8_K_avx2(int64_t n, const void *vw, const void *va) {
    const block_q3_K *w = vw;
    const block_q8_K *a = va;
    const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m128i sc = q3k_scales(w[b].scales);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)w[b].hmask);
        /* quants fed as q + 4 (low bits | hbit << 2); 4 * sum_s sc_s bsums_s comes off */
        const __m256i corr = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc), _mm256_loadu_si256((const __m256i *)a[b].bsums));
        __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 2));
        const int8_t *qa = a[b].qs;
        UNROLL
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * h));
            UNROLL
            for (int g = 0; g < 4; g++, qa += 32) {
                const __m256i m = _mm256_set1_epi8((char)(1 << (4 * h + g)));
                const __m256i ql = _mm256_and_si256(_mm256_srli_epi16(q, 2 * g), m3);
                const __m256i h4 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, m), m), four);
                const __m256i p = _mm256_maddubs_epi16(_mm256_or_si256(ql, h4), _mm256_loadu_si256((const __m256i *)qa));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale_pair(sc, 4 * h + g)));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * h2f(w[b].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

/* q4_K / q5_K scales and mins: sc[0..7] in bytes 0..7, mn[0..7] in 8..15 */
AVX2 static inline __m128i k4_scales(const uint8_t *q) {
    uint32_t u0, u1, u2;
    memcpy(&u0, q, 4);
    memcpy(&u1, q + 4, 4);
    memcpy(&u2, q + 8, 4);
    const uint32_t sc03 = u0 & 0x3F3F3F3F, mn03 = u1 & 0x3F3F3F3F;
    const uint32_t sc47 = (u2 & 0x0F0F0F0F) | ((u0 >> 6) & 0x03030303) << 4;
    const uint32_t mn47 = ((u2 >> 4) & 0x0F0F0F0F) | ((u1 >> 6) & 0x03030303) << 4;
    return _mm_setr_epi32((int)sc03, (int)sc47, (int)mn03, (int)mn47);
}

/* int16 word i of both lanes of v, in every lane */
static const uint8_t k_word_shuffle[8][16] = {
    {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1}, {2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3},
    {4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5}, {6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7},
    {8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9}, {10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11},
    {12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13}, {14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15},
};
AVX2 static inline __m256i scale_word(__m256i v, int i) {
    return _mm256_shuffle_epi8(v, _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)k_word_shuffle[i])));
}

/* sum_s mn[s] * (bsums[2s] + bsums[2s+1]) */
AVX2 static inline int k4_summs(__m128i scm, const int16_t *bsums) {
    const __m128i b0 = _mm_loadu_si128((const __m128i *)bsums);
    const __m128i b1 = _mm_loadu_si128((const __m128i *)(bsums + 8));
    const __m128i pairs = _mm_hadd_epi16(b0, b1);
    const __m128i mn = _mm_cvtepu8_epi16(_mm_srli_si128(scm, 8));
    __m128i s = _mm_madd_epi16(mn, pairs);
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

AVX2 float vec_dot_q4_K_q8_K_avx2(int64_t n, const void *vw, const void *va) {
    const block_q4_K *w = vw;
    const block_q8_K *a = va;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m128i scm = k4_scales(w[b].scales);
        const int summs = k4_summs(scm, a[b].bsums);
        const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));   /* 8 scales, both lanes */
        __m256i sumi = _mm256_setzero_si256();
        UNROLL
        for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * j));
            const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i p1 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(a[b].qs + 64 * j)));
            const __m256i p2 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a[b].qs + 64 * j + 32)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p1, scale_word(sc16, 2 * j)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p2, scale_word(sc16, 2 * j + 1)));
        }
        const float da = a[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(da * h2f(w[b].d)), _mm256_cvtepi32_ps(sumi), acc);
        summ += da * h2f(w[b].dmin) * (float)summs;
    }
    return hsum_ps(acc) - summ;
}

AVX2 float vec_dot_q5_K_q8_K_avx2(int64_t n, const void *vw, const void *va) {
    const block_q5_K *w = vw;
    const block_q8_K *a = va;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m128i scm = k4_scales(w[b].scales);
        const int summs = k4_summs(scm, a[b].bsums);
        const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scm));   /* 8 scales, both lanes */
        const __m256i qh = _mm256_loadu_si256((const __m256i *)w[b].qh);
        __m256i sumi = _mm256_setzero_si256();
        UNROLL
        for (int j = 0; j < 4; j++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * j));
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one), 4);
            const __m256i h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one), 4);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), h1);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h2);
            const __m256i p1 = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(a[b].qs + 64 * j)));
            const __m256i p2 = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a[b].qs + 64 * j + 32)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p1, scale_word(sc16, 2 * j)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p2, scale_word(sc16, 2 * j + 1)));
        }
        const float da = a[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(da * h2f(w[b].d)), _mm256_cvtepi32_ps(sumi), acc);
        summ += da * h2f(w[b].dmin) * (float)summs;
    }
    return hsum_ps(acc) - summ;
}

AVX2 float vec_dot_q6_K_q8_K_avx2(int64_t n, const void *vw, const void *va) {
    const block_q6_K *w = vw;
    const block_q8_K *a = va;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const __m128i sc = _mm_loadu_si128((const __m128i *)w[b].scales);
        /* 32 * sum_s sc_s bsums_s, taken off at the end */
        const __m256i corr = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc), _mm256_loadu_si256((const __m256i *)a[b].bsums));
        __m256i sumi = _mm256_setzero_si256();
        UNROLL
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
            const int8_t *qa = a[b].qs + 128 * h;
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
            UNROLL
            for (int k = 0; k < 4; k++) {
                const __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(qa + 32 * k)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale_pair(sc, 4 * h + k)));
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(a[b].d * h2f(w[b].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

/* ------------------------------------------------------------------------ */
/* float weights                                                            */

AVX2 float vec_dot_f16_f32_avx2(int64_t n, const void *vw, const void *va) {
    const mend_half *w = vw;
    const float *a = va;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + j))), _mm256_loadu_ps(a + j), s0);
        s1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + j + 8))), _mm256_loadu_ps(a + j + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + j + 16))), _mm256_loadu_ps(a + j + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + j + 24))), _mm256_loadu_ps(a + j + 24), s3);
    }
    for (; j + 8 <= n; j += 8)
        s0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + j))), _mm256_loadu_ps(a + j), s0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; j < n; j++) sum += h2f(w[j]) * a[j];
    return sum;
}

AVX2 float vec_dot_f32_f32_avx2(int64_t n, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(a + j), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 8), _mm256_loadu_ps(a + j + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 16), _mm256_loadu_ps(a + j + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 24), _mm256_loadu_ps(a + j + 24), s3);
    }
    for (; j + 8 <= n; j += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(a + j), s0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; j < n; j++) sum += w[j] * a[j];
    return sum;
}

/* f16 / f32 weight tiles (RW weight rows x RA activation rows, as dot32),
 * 8 lanes per step and a scalar tail */
AVX2 ALWAYS __m256 wload(int half_w, const void *w, int64_t j) {
    if (half_w) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const mend_half *)w + j)));
    return _mm256_loadu_ps((const float *)w + j);
}
static inline float wscalar(int half_w, const void *w, int64_t j) {
    return half_w ? mend_fp16_to_f32(((const mend_half *)w)[j]) : ((const float *)w)[j];
}

AVX2 ALWAYS void dotf(int half_w, int RW, int RA, int64_t n, const void *vw, size_t wstride,
                      const void *va, size_t astride, float *s) {
    __m256 acc[4][4];
    UNROLL
    for (int i = 0; i < RW; i++) {
        UNROLL
        for (int k = 0; k < RA; k++) acc[i][k] = _mm256_setzero_ps();
    }
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        if (RW > 1 && (j & 15) == 0) {   /* one prefetch per row and cache line of f16 */
            UNROLL
            for (int i = 0; i < RW; i++)
                PREFETCH(vw, (size_t)(i + PF_TILES * RW) * wstride + (size_t)j * (half_w ? 2 : 4));
        }
        __m256 wv[4];
        UNROLL
        for (int i = 0; i < RW; i++) wv[i] = wload(half_w, (const uint8_t *)vw + (size_t)i * wstride, j);
        UNROLL
        for (int k = 0; k < RA; k++) {
            const __m256 av = _mm256_loadu_ps((const float *)((const uint8_t *)va + (size_t)k * astride) + j);
            UNROLL
            for (int i = 0; i < RW; i++) acc[i][k] = _mm256_fmadd_ps(wv[i], av, acc[i][k]);
        }
    }
    UNROLL
    for (int i = 0; i < RW; i++) {
        UNROLL
        for (int k = 0; k < RA; k++) {
            const void *wi = (const uint8_t *)vw + (size_t)i * wstride;
            const float *ak = (const float *)((const uint8_t *)va + (size_t)k * astride);
            float t = hsum_ps(acc[i][k]);
            for (int64_t jj = j; jj < n; jj++) t += wscalar(half_w, wi, jj) * ak[jj];
            s[i * RA + k] = t;
        }
    }
}

#define DOTF(name, H) \
    AVX2 void vec_dot4_##name##_avx2(int64_t n, const void *w, const void *a, size_t astride, float *s) { \
        dotf(H, 1, 4, n, w, 0, a, astride, s); \
    } \
    AVX2 void vec_dotw4_##name##_avx2(int64_t n, const void *w, size_t wstride, const void *a, float *s) { \
        dotf(H, 4, 1, n, w, wstride, a, 0, s); \
    } \
    AVX2 void vec_dot24_##name##_avx2(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s) { \
        dotf(H, 2, 4, n, w, wstride, a, astride, s); \
    }
DOTF(f16_f32, 1)
DOTF(f32_f32, 0)

#else
typedef int mend_qmatmul_avx2_unused;   /* ISO C forbids an empty unit */
#endif
