/* AVX-512 VNNI kernels on repacked weights (see qgemm.h); the scalar twins
 * are in qgemm.c. Compiled for baseline x86-64 with per-function target
 * attributes and only called when cpu.c reports AVX-512 F/BW/VL + VNNI.
 *
 * One call runs a group of 16 weight rows against every activation row, R
 * activation rows at a time: the unpacked weight registers of a block serve
 * the R rows, the R chains of vpdpbusd are independent (latency hidden), and
 * each output row gets one float accumulator of 16 lanes (one per weight
 * row). The group's weights stay in L1 across the activation tiles. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "kernels/qgemm.h"
#include "kernels/quants.h"

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define ALWAYS static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* 4 bytes at p broadcast to every int32 lane */
VNNI ALWAYS __m512i bcast4(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* ------------------------------------------------------------------------ */
/* q4_0                                                                     */

/* R activation rows (arow bytes apart) against the group; mn: q4_1 (a min
 * per block, met by the activation block sums) instead of q4_0; hb: q5_0
 * (a fifth bit per weight, from the qh bytes) */
VNNI ALWAYS void q4_rows(int mn, int hb, int R, int64_t cols, const uint8_t *g, const uint8_t *a, size_t arow,
                         float *out, size_t ldo) {
    const int64_t nb = cols / 32;
    const uint8_t *qs = g, *qh = g + (size_t)nb * 256;
    const uint8_t *dw = hb ? qh + (size_t)nb * 64 : qh, *mw = dw + (size_t)nb * 32;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* qh byte r (16 per part) to the 4 bytes of row r's dword: byte 4rr + u
     * of 128-bit lane l <- byte 4l + rr */
    const __m512i spread = _mm512_set_epi32(0x0F0F0F0F, 0x0E0E0E0E, 0x0D0D0D0D, 0x0C0C0C0C, 0x0B0B0B0B, 0x0A0A0A0A,
                                            0x09090909, 0x08080808, 0x07070707, 0x06060606, 0x05050505, 0x04040404,
                                            0x03030303, 0x02020202, 0x01010101, 0x00000000);
    const __m512i bit_lo = _mm512_set1_epi32(0x08040201), bit_hi = _mm512_set1_epi32((int)0x80402010u);
    const __m512i sixteen = _mm512_set1_epi8(16);
    __m512 acc[8];
    UNROLL
    for (int i = 0; i < R; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (R <= 2) {   /* few activation rows: the weights stream from memory; fetch ahead */
            const uintptr_t pq = (uintptr_t)(qs + (size_t)b * 256 + QGEMM_PF_BYTES);
            UNROLL
            for (int L = 0; L < 4; L++) _mm_prefetch((const char *)(pq + 64 * L), _MM_HINT_T0);
            _mm_prefetch((const char *)((uintptr_t)(dw + (size_t)b * 32) + QGEMM_PF_BYTES / 8), _MM_HINT_T0);
            if (mn) _mm_prefetch((const char *)((uintptr_t)(mw + (size_t)b * 32) + QGEMM_PF_BYTES / 8), _MM_HINT_T0);
            if (hb) _mm_prefetch((const char *)((uintptr_t)(qh + (size_t)b * 64) + QGEMM_PF_BYTES / 4), _MM_HINT_T0);
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dw + (size_t)b * 32)));
        const __m512 m = mn ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(mw + (size_t)b * 32)))
                            : _mm512_setzero_ps();
        __m512i w[8];
        UNROLL
        for (int L = 0; L < 4; L++) {
            const __m512i v = _mm512_loadu_si512(qs + (size_t)b * 256 + 64 * L);
            w[L] = _mm512_and_si512(v, m4);
            w[L + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            if (hb) {
                const __m512i h = _mm512_shuffle_epi8(
                    _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(qh + (size_t)b * 64 + 16 * L))), spread);
                w[L] = _mm512_mask_add_epi8(w[L], _mm512_test_epi8_mask(h, bit_lo), w[L], sixteen);
                w[L + 4] = _mm512_mask_add_epi8(w[L + 4], _mm512_test_epi8_mask(h, bit_hi), w[L + 4], sixteen);
            }
        }
        UNROLL
        for (int i = 0; i < R; i++) {
            const uint8_t *ai = a + (size_t)i * arow;
            const uint8_t *q = ai + (size_t)b * 32;
            const float *ad = (const float *)(ai + cols);
            /* q4_0 / q5_0: -8 / -16 * block sum (int32); q4_1: 0, the block sum (float) comes below */
            __m512i s = mn ? _mm512_setzero_si512() : bcast4(ai + cols + 4 * nb + 4 * b);
            UNROLL
            for (int j = 0; j < 8; j++) s = _mm512_dpbusd_epi32(s, w[j], bcast4(q + 4 * j));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(d, _mm512_set1_ps(ad[b])), acc[i]);
            if (mn) acc[i] = _mm512_fmadd_ps(m, _mm512_set1_ps(ad[nb + b]), acc[i]);
        }
    }
    UNROLL
    for (int i = 0; i < R; i++) _mm512_storeu_ps(out + (size_t)i * ldo, acc[i]);
}

#define ROWS_DISPATCH(body, ...)                                                                            \
    do {                                                                                                    \
        int i = 0;                                                                                          \
        for (; i + 8 <= na; i += 8) body(__VA_ARGS__ 8, cols, g, a + (size_t)i * arow, arow, out + (size_t)i * ldo, ldo); \
        switch (na - i) {                                                                                   \
        case 7: body(__VA_ARGS__ 7, cols, g, a + (size_t)i * arow, arow, out + (size_t)i * ldo, ldo); break; \
        case 6: body(__VA_ARGS__ 6, cols, g, a + (size_t)i * arow, arow, out + (size_t)i * ldo, ldo); break; \
        case 5: body(__VA_ARGS__ 5, cols, g, a + (size_t)i * arow, arow, out + (size_t)i * ldo, ldo); break; \
        case 4: body(__VA_ARGS__ 4, cols, g, a + (size_t)i * arow, arow, out + (size_t)i * ldo, ldo); break; \
        case 3: body(__VA_ARGS__ 3, cols, g, a + (size_t)i * arow, arow, out + (size_t)i * ldo, ldo); break; \
        case 2: body(__VA_ARGS__ 2, cols, g, a + (size_t)i * arow, arow, out + (size_t)i * ldo, ldo); break; \
        case 1: body(__VA_ARGS__ 1, cols, g, a + (size_t)i * arow, arow, out + (size_t)i * ldo, ldo); break; \
        default: break;                                                                                     \
        }                                                                                                   \
    } while (0)

VNNI void qgemm_q4_0_avx512(int64_t cols, const void *g, const void *va, size_t arow, int na, float *out,
                            size_t ldo) {
    const uint8_t *a = va;
    ROWS_DISPATCH(q4_rows, 0, 0,);
}

VNNI void qgemm_q5_0_avx512(int64_t cols, const void *g, const void *va, size_t arow, int na, float *out,
                            size_t ldo) {
    const uint8_t *a = va;
    ROWS_DISPATCH(q4_rows, 0, 1,);
}

VNNI void qgemm_q4_1_avx512(int64_t cols, const void *g, const void *va, size_t arow, int na, float *out,
                            size_t ldo) {
    const uint8_t *a = va;
    ROWS_DISPATCH(q4_rows, 1, 0,);
}

/* ------------------------------------------------------------------------ */
/* q2_K                                                                     */

VNNI ALWAYS void q2k_rows(int R, int64_t cols, const uint8_t *g, const uint8_t *a, size_t arow, float *out,
                          size_t ldo) {
    const int64_t nb = cols / 256;
    const __m512i m3 = _mm512_set1_epi8(3);
    /* byte 4rr + u of each 128-bit lane -> table index 4rr (rows of the lane) */
    const __m512i rowsel = _mm512_set4_epi32(0x0C0C0C0C, 0x08080808, 0x04040404, 0);
    __m512 acc[8];
    UNROLL
    for (int i = 0; i < R; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *sb = g + (size_t)b * QGEMM_Q2K_SB;
        if (R <= 2) {   /* few activation rows: the weights stream from memory; fetch ahead */
            qgemm_prefetch_ahead(sb, QGEMM_Q2K_SB);
        }
        __m512i s[8];
        UNROLL
        for (int i = 0; i < R; i++) s[i] = _mm512_setzero_si512();
        for (int sub = 0; sub < 16; sub++) {
            const __m512i v = _mm512_loadu_si512(sb + 64 * sub);
            const __m512i lut = _mm512_loadu_si512(sb + 1024 + 64 * sub);
            __m512i w[4];
            w[0] = _mm512_shuffle_epi8(lut, _mm512_or_si512(_mm512_and_si512(v, m3), rowsel));
            w[1] = _mm512_shuffle_epi8(lut, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 2), m3), rowsel));
            w[2] = _mm512_shuffle_epi8(lut, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 4), m3), rowsel));
            w[3] = _mm512_shuffle_epi8(lut, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 6), m3), rowsel));
            UNROLL
            for (int i = 0; i < R; i++) {
                const int8_t *q = ((const block_q8_K *)(a + (size_t)i * arow))[b].qs + 16 * sub;
                UNROLL
                for (int t = 0; t < 4; t++) s[i] = _mm512_dpbusd_epi32(s[i], w[t], bcast4(q + 4 * t));
            }
        }
        const __m512 dd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + 2560)));
        const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sb + 2592)));
        __m512i m[8];
        UNROLL
        for (int i = 0; i < R; i++) m[i] = _mm512_setzero_si512();
        UNROLL
        for (int p = 0; p < 8; p++) {
            const __m512i mn = _mm512_loadu_si512(sb + 2048 + 64 * p);
            UNROLL
            for (int i = 0; i < R; i++) {
                const block_q8_K *ab = (const block_q8_K *)(a + (size_t)i * arow) + b;
                m[i] = _mm512_dpwssd_epi32(m[i], mn, bcast4(ab->bsums + 2 * p));
            }
        }
        UNROLL
        for (int i = 0; i < R; i++) {
            const __m512 da = _mm512_set1_ps(((const block_q8_K *)(a + (size_t)i * arow))[b].d);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i]), _mm512_mul_ps(dd, da), acc[i]);
            acc[i] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m[i]), _mm512_mul_ps(dm, da), acc[i]);
        }
    }
    UNROLL
    for (int i = 0; i < R; i++) _mm512_storeu_ps(out + (size_t)i * ldo, acc[i]);
}

VNNI void qgemm_q2_K_avx512(int64_t cols, const void *g, const void *va, size_t arow, int na, float *out,
                            size_t ldo) {
    const uint8_t *a = va;
    ROWS_DISPATCH(q2k_rows,);
}

/* ------------------------------------------------------------------------ */
/* q3_K, q4_K, q6_K                                                         */

/* kt: 3, 4 or 6 (q3_K, q4_K, q6_K). Per 16-weight sub-block and activation
 * row, 4 vpdpbusd give the sub-block's sum c of stored quants times
 * activations; the nibble layouts' |c| <= 16 * 15 * 127 fits int16, so one
 * vpdpwssd against (sc, 0) adds sc * c, while q6_K's c (up to 16 * 63 * 127)
 * goes through vpmulld. */
VNNI ALWAYS void kq_sub(int kt, int R, const __m512i w[4], __m512i scv, const uint8_t *a, size_t arow, int64_t b,
                        int sub, __m512i s[8]) {
    UNROLL
    for (int i = 0; i < R; i++) {
        const int8_t *q = ((const block_q8_K *)(a + (size_t)i * arow))[b].qs + 16 * sub;
        __m512i c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[0], bcast4(q));
        c = _mm512_dpbusd_epi32(c, w[1], bcast4(q + 4));
        c = _mm512_dpbusd_epi32(c, w[2], bcast4(q + 8));
        c = _mm512_dpbusd_epi32(c, w[3], bcast4(q + 12));
        s[i] = kt == 6 ? _mm512_add_epi32(s[i], _mm512_mullo_epi32(c, scv)) : _mm512_dpwssd_epi32(s[i], c, scv);
    }
}

/* sub-block sub's scales from the pairs: (sc, 0) per lane for vpdpwssd, q6_K
 * sign-extended for vpmulld (q4_K: the pair's first half, its scale) */
VNNI ALWAYS __m512i kq_scale(int kt, const uint8_t *pairs, int sub) {
    const __m512i p = _mm512_loadu_si512(pairs + 64 * (sub / 2));
    if (kt == 4) return _mm512_and_si512(p, _mm512_set1_epi32(0xFFFF));
    if (kt == 6) return _mm512_srai_epi32(sub % 2 ? p : _mm512_slli_epi32(p, 16), 16);
    return sub % 2 ? _mm512_srli_epi32(p, 16) : _mm512_and_si512(p, _mm512_set1_epi32(0xFFFF));
}

VNNI ALWAYS void kq_rows(int kt, int R, int64_t cols, const uint8_t *g, const uint8_t *a, size_t arow, float *out,
                         size_t ldo) {
    const int64_t nb = cols / 256;
    const size_t qb = kt == 6 ? QGEMM_KQ_BYTE : QGEMM_KQ_NIB, sbb = QGEMM_KQ_SB(qb);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* q4_K: each pair's second half (the min) in both halves */
    const __m512i dup_hi = _mm512_set4_epi32(0x0F0E0F0E, 0x0B0A0B0A, 0x07060706, 0x03020302);
    __m512 acc[8];
    UNROLL
    for (int i = 0; i < R; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *sb = g + (size_t)b * sbb;
        const uint8_t *pairs = sb + qb;
        if (R <= 2) {   /* few activation rows: the weights stream from memory; fetch ahead */
            qgemm_prefetch_ahead(sb, sbb);
        }
        __m512i s[8], m[8];
        UNROLL
        for (int i = 0; i < R; i++) s[i] = m[i] = _mm512_setzero_si512();
        if (kt == 6) {
            for (int sub = 0; sub < 16; sub++) {
                __m512i w[4];
                UNROLL
                for (int t = 0; t < 4; t++) w[t] = _mm512_loadu_si512(sb + 64 * (4 * sub + t));
                kq_sub(kt, R, w, kq_scale(kt, pairs, sub), a, arow, b, sub, s);
            }
        } else {
            for (int j = 0; j < 8; j++) {   /* region j: sub-blocks j (low nibbles) and j + 8 (high) */
                __m512i v[4], w[4];
                UNROLL
                for (int t = 0; t < 4; t++) {
                    v[t] = _mm512_loadu_si512(sb + 64 * (4 * j + t));
                    w[t] = _mm512_and_si512(v[t], m4);
                }
                kq_sub(kt, R, w, kq_scale(kt, pairs, j), a, arow, b, j, s);
                UNROLL
                for (int t = 0; t < 4; t++) w[t] = _mm512_and_si512(_mm512_srli_epi16(v[t], 4), m4);
                kq_sub(kt, R, w, kq_scale(kt, pairs, j + 8), a, arow, b, j + 8, s);
            }
        }
        /* the scales (q4_K: the mins) meet the block sums */
        UNROLL
        for (int p = 0; p < 8; p++) {
            const __m512i pv = kt == 4 ? _mm512_shuffle_epi8(_mm512_loadu_si512(pairs + 64 * p), dup_hi)
                                       : _mm512_loadu_si512(pairs + 64 * p);
            UNROLL
            for (int i = 0; i < R; i++)
                m[i] = _mm512_dpwssd_epi32(m[i], pv, bcast4(((const block_q8_K *)(a + (size_t)i * arow))[b].bsums + 2 * p));
        }
        const __m512 dd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(pairs + 512)));
        const __m512 dm = kt == 4 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(pairs + 544)))
                                  : _mm512_setzero_ps();
        UNROLL
        for (int i = 0; i < R; i++) {
            const __m512 da = _mm512_set1_ps(((const block_q8_K *)(a + (size_t)i * arow))[b].d);
            if (kt != 4) s[i] = _mm512_sub_epi32(s[i], _mm512_slli_epi32(m[i], kt == 6 ? 5 : 2));   /* offset 32 / 4 */
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[i]), _mm512_mul_ps(dd, da), acc[i]);
            if (kt == 4) acc[i] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m[i]), _mm512_mul_ps(dm, da), acc[i]);
        }
    }
    UNROLL
    for (int i = 0; i < R; i++) _mm512_storeu_ps(out + (size_t)i * ldo, acc[i]);
}

VNNI void qgemm_q3_K_avx512(int64_t cols, const void *g, const void *va, size_t arow, int na, float *out,
                            size_t ldo) {
    const uint8_t *a = va;
    ROWS_DISPATCH(kq_rows, 3,);
}

VNNI void qgemm_q4_K_avx512(int64_t cols, const void *g, const void *va, size_t arow, int na, float *out,
                            size_t ldo) {
    const uint8_t *a = va;
    ROWS_DISPATCH(kq_rows, 4,);
}

VNNI void qgemm_q6_K_avx512(int64_t cols, const void *g, const void *va, size_t arow, int na, float *out,
                            size_t ldo) {
    const uint8_t *a = va;
    ROWS_DISPATCH(kq_rows, 6,);
}

#endif
