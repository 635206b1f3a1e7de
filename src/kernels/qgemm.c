/* Batched products on repacked weights (see qgemm.h): the repacking, the
 * activation layout, the scalar _ref kernels (twins of qgemm_avx512.c,
 * qgemm_avx2.c and qgemm_neon.c) and the threaded driver. */
#include "kernels/qgemm.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu.h"
#include "kernels/qmatmul.h"
#include "kernels/quants.h"
#include "mend.h"
#include "util/util.h"

static inline float half(mend_half h) { return mend_fp16_to_f32(h); }

static int is_kq(uint32_t wtype) {
    return wtype == MEND_TYPE_Q3_K || wtype == MEND_TYPE_Q4_K || wtype == MEND_TYPE_Q6_K;
}

int mend_qgemm_supported(uint32_t wtype, int64_t rows, int64_t cols) {
    if (rows <= 0 || cols <= 0 || rows % QGEMM_ROWS) return 0;
    if (wtype == MEND_TYPE_Q4_0 || wtype == MEND_TYPE_Q4_1 || wtype == MEND_TYPE_Q5_0) return cols % 32 == 0;
    if (wtype == MEND_TYPE_Q2_K || is_kq(wtype)) return cols % QK_K == 0;
    return 0;
}

int mend_qgemm_available(void) {
#ifdef MEND_QGEMM_HAVE_SIMD
    return mend_cpu_has_avx2();
#elif defined(MEND_QGEMM_HAVE_NEON)
    return mend_cpu_has_neon();
#else
    return 0;
#endif
}

/* bytes of one q3_K / q4_K / q6_K group super-block */
static size_t kq_sb_bytes(uint32_t wtype) {
    return QGEMM_KQ_SB(wtype == MEND_TYPE_Q6_K ? QGEMM_KQ_BYTE : QGEMM_KQ_NIB);
}

/* bytes of one repacked group of 16 rows */
static size_t group_bytes(uint32_t wtype, int64_t cols) {
    if (wtype == MEND_TYPE_Q4_0) return (size_t)(cols / QK4_0) * (16 * sizeof(block_q4_0));
    if (wtype == MEND_TYPE_Q4_1) return (size_t)(cols / QK4_1) * (16 * sizeof(block_q4_1));
    if (wtype == MEND_TYPE_Q5_0) return (size_t)(cols / QK5_0) * (16 * sizeof(block_q5_0));
    if (is_kq(wtype)) return (size_t)(cols / QK_K) * kq_sb_bytes(wtype);
    return (size_t)(cols / QK_K) * QGEMM_Q2K_SB;
}

size_t mend_qgemm_packed_size(uint32_t wtype, int64_t rows, int64_t cols) {
    if (!mend_qgemm_supported(wtype, rows, cols)) return 0;
    size_t total;
    if (!mend_mul_ok(group_bytes(wtype, cols), (size_t)(rows / QGEMM_ROWS), &total)) return 0;
    return total;
}

/* q2_K: weight k (0..255) of a super-block, and sub-block s's scale / min */
static inline int q2k_q(const block_q2_K *b, int k) {
    return (b->qs[32 * (k / 128) + k % 32] >> (2 * ((k % 128) / 32))) & 3;
}

/* q4_0 and q4_1 (which adds each block's min after the scales) */
static void pack_q4(uint8_t *dst, const uint8_t *w, uint32_t wtype, int64_t cols, int64_t g) {
    const int has_min = wtype == MEND_TYPE_Q4_1;
    const int64_t nb = cols / 32;
    const size_t bs = has_min ? sizeof(block_q4_1) : sizeof(block_q4_0), wrow = (size_t)nb * bs;
    uint8_t *qs = dst + (size_t)g * group_bytes(wtype, cols);
    mend_half *d = (mend_half *)(qs + (size_t)nb * 256), *m = d + (size_t)nb * 16;
    for (int r = 0; r < QGEMM_ROWS; r++) {
        const uint8_t *row = w + (size_t)(QGEMM_ROWS * g + r) * wrow;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *src;
            if (has_min) {
                const block_q4_1 *blk = (const block_q4_1 *)(row + (size_t)b * bs);
                d[b * 16 + r] = blk->d;
                m[b * 16 + r] = blk->m;
                src = blk->qs;
            } else {
                const block_q4_0 *blk = (const block_q4_0 *)(row + (size_t)b * bs);
                d[b * 16 + r] = blk->d;
                src = blk->qs;
            }
            for (int L = 0; L < 4; L++) memcpy(qs + (size_t)b * 256 + 64 * L + 4 * r, src + 4 * L, 4);
        }
    }
}

/* q5_0: the nibbles as q4_0's, then each row's fifth bits per part L (one
 * byte: bit u for weight 4L + u, bit 4 + u for weight 16 + 4L + u) */
static void pack_q5_0(uint8_t *dst, const uint8_t *w, int64_t cols, int64_t g) {
    const int64_t nb = cols / 32;
    const size_t wrow = (size_t)nb * sizeof(block_q5_0);
    uint8_t *qs = dst + (size_t)g * group_bytes(MEND_TYPE_Q5_0, cols), *qh = qs + (size_t)nb * 256;
    mend_half *d = (mend_half *)(qh + (size_t)nb * 64);
    for (int r = 0; r < QGEMM_ROWS; r++) {
        const block_q5_0 *blk = (const block_q5_0 *)(w + (size_t)(QGEMM_ROWS * g + r) * wrow);
        for (int64_t b = 0; b < nb; b++) {
            uint32_t h;
            memcpy(&h, blk[b].qh, 4);
            d[b * 16 + r] = blk[b].d;
            for (int L = 0; L < 4; L++) {
                memcpy(qs + (size_t)b * 256 + 64 * L + 4 * r, blk[b].qs + 4 * L, 4);
                qh[(size_t)b * 64 + 16 * L + r] = (uint8_t)(((h >> 4 * L) & 0x0F) | ((h >> (16 + 4 * L)) & 0x0F) << 4);
            }
        }
    }
}

static void pack_q2_K(uint8_t *dst, const uint8_t *w, int64_t cols, int64_t g) {
    const int64_t nb = cols / QK_K;
    const size_t wrow = (size_t)nb * sizeof(block_q2_K);
    uint8_t *base = dst + (size_t)g * group_bytes(MEND_TYPE_Q2_K, cols);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *sb = base + (size_t)b * QGEMM_Q2K_SB;
        uint8_t *q = sb, *lut = sb + 1024;
        int16_t *mins = (int16_t *)(sb + 2048);
        mend_half *d = (mend_half *)(sb + 2560), *dmin = d + 16;
        for (int r = 0; r < QGEMM_ROWS; r++) {
            const block_q2_K *blk = (const block_q2_K *)(w + (size_t)(QGEMM_ROWS * g + r) * wrow) + b;
            d[r] = blk->d;
            dmin[r] = blk->dmin;
            for (int s = 0; s < 16; s++) {
                const int sc = blk->scales[s] & 0x0F, mn = blk->scales[s] >> 4;
                for (int u = 0; u < 4; u++) {
                    int byte = 0;
                    for (int t = 0; t < 4; t++) byte |= q2k_q(blk, 16 * s + 4 * t + u) << (2 * t);
                    q[64 * s + 4 * r + u] = (uint8_t)byte;
                }
                for (int v = 0; v < 4; v++) lut[64 * s + 16 * (r / 4) + 4 * (r % 4) + v] = (uint8_t)(v * sc);
                mins[32 * (s / 2) + 2 * r + s % 2] = (int16_t)mn;
            }
        }
    }
}

/* q3_K / q4_K / q6_K: weight k (0..255) of a super-block as the repacked
 * layout stores it (q4_K 0..15, q3_K value + 4 in 0..7, q6_K value + 32 in
 * 0..63), and the scale pairs: q4_K (scale, min) of each 32-weight
 * sub-block, q3_K / q6_K the scales of 16-weight sub-blocks 2p and 2p + 1 */
static int kq_weight(uint32_t wtype, const void *blk, int k) {
    if (wtype == MEND_TYPE_Q4_K) {
        const block_q4_K *b = blk;
        return (b->qs[32 * (k / 64) + k % 32] >> (4 * ((k % 64) / 32))) & 0x0F;
    }
    if (wtype == MEND_TYPE_Q3_K) {
        const block_q3_K *b = blk;
        const int h = k / 128, g = (k % 128) / 32, o = k % 32;
        const int q = (b->qs[32 * h + o] >> (2 * g)) & 3;
        return q | ((b->hmask[o] >> (4 * h + g)) & 1) << 2;
    }
    const block_q6_K *b = blk;
    const int h = k / 128, quarter = (k % 128) / 32, l = k % 32;
    const int lo = (b->ql[64 * h + 32 * (quarter & 1) + l] >> (4 * (quarter >> 1))) & 0x0F;
    return lo | ((b->qh[32 * h + l] >> (2 * quarter)) & 3) << 4;
}

static void kq_scales(uint32_t wtype, const void *blk, int16_t pair[16], mend_half *d, mend_half *dmin) {
    *dmin = 0;
    if (wtype == MEND_TYPE_Q4_K) {
        const block_q4_K *b = blk;
        uint8_t s8[8], m8[8];
        mend_k4_scales(b->scales, s8, m8);
        for (int j = 0; j < 8; j++) {
            pair[2 * j] = s8[j];
            pair[2 * j + 1] = m8[j];
        }
        *d = b->d;
        *dmin = b->dmin;
    } else if (wtype == MEND_TYPE_Q3_K) {
        const block_q3_K *b = blk;
        int8_t s8[16];
        mend_q3k_scales(b->scales, s8);
        for (int s = 0; s < 16; s++) pair[s] = s8[s];
        *d = b->d;
    } else {
        const block_q6_K *b = blk;
        for (int s = 0; s < 16; s++) pair[s] = b->scales[s];
        *d = b->d;
    }
}

static void pack_kq(uint8_t *dst, const uint8_t *w, uint32_t wtype, int64_t cols, int64_t g) {
    const int64_t nb = cols / QK_K;
    const int nib = wtype != MEND_TYPE_Q6_K;
    const size_t qb = nib ? QGEMM_KQ_NIB : QGEMM_KQ_BYTE;
    const size_t bs = wtype == MEND_TYPE_Q4_K ? sizeof(block_q4_K)
                    : wtype == MEND_TYPE_Q3_K ? sizeof(block_q3_K) : sizeof(block_q6_K);
    const size_t wrow = (size_t)nb * bs;
    uint8_t *base = dst + (size_t)g * group_bytes(wtype, cols);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *sb = base + (size_t)b * kq_sb_bytes(wtype);
        int16_t *pair = (int16_t *)(sb + qb);
        mend_half *d = (mend_half *)(pair + 256), *dmin = d + 16;
        if (nib) memset(sb, 0, qb);
        for (int r = 0; r < QGEMM_ROWS; r++) {
            const uint8_t *blk = w + (size_t)(QGEMM_ROWS * g + r) * wrow + (size_t)b * bs;
            int16_t p16[16];
            kq_scales(wtype, blk, p16, &d[r], &dmin[r]);
            for (int p = 0; p < 8; p++) {
                pair[32 * p + 2 * r] = p16[2 * p];
                pair[32 * p + 2 * r + 1] = p16[2 * p + 1];
            }
            for (int k = 0; k < QK_K; k++) {
                const int q = kq_weight(wtype, blk, k), s = k / 16, t = (k % 16) / 4, u = k % 4;
                if (nib) sb[64 * (4 * (s % 8) + t) + 4 * r + u] |= (uint8_t)(q << (4 * (s / 8)));
                else sb[64 * (4 * s + t) + 4 * r + u] = (uint8_t)q;
            }
        }
    }
}

void mend_qgemm_pack(void *dst, const void *w, uint32_t wtype, int64_t rows, int64_t cols, int64_t g0, int64_t g1) {
    if (!mend_qgemm_supported(wtype, rows, cols)) return;
    if (g1 > rows / QGEMM_ROWS) g1 = rows / QGEMM_ROWS;
    for (int64_t g = g0 < 0 ? 0 : g0; g < g1; g++) {
        if (wtype == MEND_TYPE_Q2_K) pack_q2_K(dst, w, cols, g);
        else if (is_kq(wtype)) pack_kq(dst, w, wtype, cols, g);
        else if (wtype == MEND_TYPE_Q5_0) pack_q5_0(dst, w, cols, g);
        else pack_q4(dst, w, wtype, cols, g);
    }
}

/* ------------------------------------------------------------------------ */
/* activations                                                              */

static size_t act_row_bytes(uint32_t wtype, int64_t cols) {
    size_t b;
    if (wtype != MEND_TYPE_Q2_K && !is_kq(wtype)) b = (size_t)cols + (size_t)(cols / 32) * 8;
    else b = (size_t)(cols / QK_K) * sizeof(block_q8_K);
    return (b + 63) & ~(size_t)63;
}

size_t mend_qgemm_scratch_size(uint32_t wtype, int n, int64_t cols) {
    if (n < 0 || !mend_qgemm_supported(wtype, QGEMM_ROWS, cols)) return 0;
    size_t total;
    if (!mend_mul_ok(act_row_bytes(wtype, cols), (size_t)n, &total)) return 0;
    return total;
}

void mend_qgemm_quantize_row(uint32_t wtype, const float *x, void *dst, int64_t cols, int level) {
    mend_qdot_kernel k;
    if (mend_qdot_kernel_get(wtype, level, &k) || !k.quantize) return;
    if (wtype == MEND_TYPE_Q2_K || is_kq(wtype)) {   /* plain q8_K blocks */
        k.quantize(x, dst, cols);
        return;
    }
    /* q8_0 / q8_1 blocks one at a time, split into [qs][d][m] */
    const int64_t nb = cols / 32;
    int8_t *qs = dst;
    float *d = (float *)(qs + cols);
    if (wtype == MEND_TYPE_Q4_1) {   /* m: the q8_1 block sums (float) */
        float *m = d + nb;
        for (int64_t b = 0; b < nb; b++) {
            block_q8_1 blk;
            k.quantize(x + b * QK8_1, &blk, QK8_1);
            memcpy(qs + b * QK8_1, blk.qs, QK8_1);
            d[b] = half(blk.d);
            m[b] = half(blk.s);
        }
        return;
    }
    /* m: -8 (q4_0) or -16 (q5_0) times the q8_0 block sums (int32) */
    int32_t *m = (int32_t *)(d + nb);
    const int bias = wtype == MEND_TYPE_Q5_0 ? -16 : -8;
    for (int64_t b = 0; b < nb; b++) {
        block_q8_0 blk;
        k.quantize(x + b * QK8_0, &blk, QK8_0);
        memcpy(qs + b * QK8_0, blk.qs, QK8_0);
        int s = 0;
        for (int j = 0; j < QK8_0; j++) s += blk.qs[j];
        d[b] = half(blk.d);
        m[b] = bias * s;
    }
}

/* ------------------------------------------------------------------------ */
/* scalar twins                                                             */

/* q4_0 (mn = 0, hb = 0), q4_1 (mn = 1) and q5_0 (hb = 1: a fifth bit per
 * weight from the qh bytes between the nibbles and the scales) */
static void q4_ref(int mn, int hb, int64_t cols, const void *vg, const void *va, size_t arow, int na, float *out,
                   size_t ldo) {
    const int64_t nb = cols / 32;
    const uint8_t *qs = vg, *qh = qs + (size_t)nb * 256;
    const mend_half *dw = (const mend_half *)(qh + (hb ? (size_t)nb * 64 : 0)), *mw = dw + (size_t)nb * 16;
    for (int i = 0; i < na; i++) {
        const int8_t *aq = (const int8_t *)((const uint8_t *)va + (size_t)i * arow);
        const float *ad = (const float *)(aq + cols);
        const int32_t *am = (const int32_t *)(ad + nb);
        const float *as = ad + nb;
        for (int r = 0; r < QGEMM_ROWS; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                int32_t s = mn ? 0 : am[b];
                for (int L = 0; L < 4; L++) {
                    const int h = hb ? qh[(size_t)b * 64 + 16 * L + r] : 0;
                    for (int u = 0; u < 4; u++) {
                        const uint8_t byte = qs[(size_t)b * 256 + 64 * L + 4 * r + u];
                        const int lo = (byte & 0x0F) | ((h >> u) & 1) << 4, hi = (byte >> 4) | ((h >> (4 + u)) & 1) << 4;
                        s += lo * aq[b * 32 + 4 * L + u] + hi * aq[b * 32 + 16 + 4 * L + u];
                    }
                }
                acc = fmaf((float)s, half(dw[b * 16 + r]) * ad[b], acc);
                if (mn) acc = fmaf(half(mw[b * 16 + r]), as[b], acc);
            }
            out[(size_t)i * ldo + r] = acc;
        }
    }
}

void qgemm_q4_0_ref(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out, size_t ldo) {
    q4_ref(0, 0, cols, g, a, arow, na, out, ldo);
}

void qgemm_q4_1_ref(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out, size_t ldo) {
    q4_ref(1, 0, cols, g, a, arow, na, out, ldo);
}

void qgemm_q5_0_ref(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out, size_t ldo) {
    q4_ref(0, 1, cols, g, a, arow, na, out, ldo);
}

void qgemm_q2_K_ref(int64_t cols, const void *vg, const void *va, size_t arow, int na, float *out, size_t ldo) {
    const int64_t nb = cols / QK_K;
    for (int i = 0; i < na; i++) {
        const block_q8_K *a = (const block_q8_K *)((const uint8_t *)va + (size_t)i * arow);
        for (int r = 0; r < QGEMM_ROWS; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *sb = (const uint8_t *)vg + (size_t)b * QGEMM_Q2K_SB;
                const uint8_t *q = sb, *lut = sb + 1024;
                const int16_t *mins = (const int16_t *)(sb + 2048);
                const mend_half *d = (const mend_half *)(sb + 2560), *dmin = d + 16;
                int32_t s = 0, m = 0;
                for (int sub = 0; sub < 16; sub++)
                    for (int t = 0; t < 4; t++)
                        for (int u = 0; u < 4; u++) {
                            const int qv = (q[64 * sub + 4 * r + u] >> (2 * t)) & 3;
                            s += lut[64 * sub + 16 * (r / 4) + 4 * (r % 4) + qv] * a[b].qs[16 * sub + 4 * t + u];
                        }
                for (int p = 0; p < 8; p++)
                    m += mins[32 * p + 2 * r] * a[b].bsums[2 * p] + mins[32 * p + 2 * r + 1] * a[b].bsums[2 * p + 1];
                acc = fmaf((float)s, half(d[r]) * a[b].d, acc);
                acc = fmaf(-(float)m, half(dmin[r]) * a[b].d, acc);
            }
            out[(size_t)i * ldo + r] = acc;
        }
    }
}

/* q3_K, q4_K and q6_K: per 16-weight sub-block the integer sum of stored
 * quants and activations times the sub-block's scale; the scales (q3_K,
 * q6_K: times the stored offset, 4 or 32) or q4_K's mins (apart, for dmin)
 * meet the block sums */
static void kq_ref(uint32_t wtype, int64_t cols, const void *vg, const void *va, size_t arow, int na, float *out,
                   size_t ldo) {
    const int64_t nb = cols / QK_K;
    const int nib = wtype != MEND_TYPE_Q6_K, has_min = wtype == MEND_TYPE_Q4_K;
    const size_t qb = nib ? QGEMM_KQ_NIB : QGEMM_KQ_BYTE, sbb = kq_sb_bytes(wtype);
    for (int i = 0; i < na; i++) {
        const block_q8_K *a = (const block_q8_K *)((const uint8_t *)va + (size_t)i * arow);
        for (int r = 0; r < QGEMM_ROWS; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *sb = (const uint8_t *)vg + (size_t)b * sbb;
                const int16_t *pair = (const int16_t *)(sb + qb);
                const mend_half *d = (const mend_half *)(pair + 256), *dmin = d + 16;
                int32_t s = 0, m = 0;
                for (int sub = 0; sub < 16; sub++) {
                    int32_t c = 0;
                    for (int t = 0; t < 4; t++)
                        for (int u = 0; u < 4; u++) {
                            const int q = nib ? (sb[64 * (4 * (sub % 8) + t) + 4 * r + u] >> (4 * (sub / 8))) & 0x0F
                                              : sb[64 * (4 * sub + t) + 4 * r + u];
                            c += q * a[b].qs[16 * sub + 4 * t + u];
                        }
                    s += c * pair[32 * (sub / 2) + 2 * r + (has_min ? 0 : sub % 2)];
                }
                for (int p = 0; p < 8; p++) {
                    const int16_t *x = pair + 32 * p + 2 * r;
                    if (has_min) m += x[1] * (a[b].bsums[2 * p] + a[b].bsums[2 * p + 1]);
                    else m += x[0] * a[b].bsums[2 * p] + x[1] * a[b].bsums[2 * p + 1];
                }
                if (!has_min) s -= (nib ? 4 : 32) * m;   /* the stored offset */
                acc = fmaf((float)s, half(d[r]) * a[b].d, acc);
                if (has_min) acc = fmaf(-(float)m, half(dmin[r]) * a[b].d, acc);
            }
            out[(size_t)i * ldo + r] = acc;
        }
    }
}

void qgemm_q3_K_ref(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out, size_t ldo) {
    kq_ref(MEND_TYPE_Q3_K, cols, g, a, arow, na, out, ldo);
}

void qgemm_q4_K_ref(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out, size_t ldo) {
    kq_ref(MEND_TYPE_Q4_K, cols, g, a, arow, na, out, ldo);
}

void qgemm_q6_K_ref(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out, size_t ldo) {
    kq_ref(MEND_TYPE_Q6_K, cols, g, a, arow, na, out, ldo);
}

/* ------------------------------------------------------------------------ */
/* driver                                                                   */

static _Thread_local void *tl_scratch;
static _Thread_local size_t tl_scratch_cap;

void mend_qgemm_release_scratch(void) {
    free(tl_scratch);
    tl_scratch = NULL;
    tl_scratch_cap = 0;
}

/* The kernel for wtype at level: AVX-512 VNNI, AVX2 with AVX-VNNI, plain
 * AVX2, NEON with or without the dot product, or the scalar twin. */
#define QGEMM_TABLE(v)                                                                                   \
    {qgemm_q4_0_##v, qgemm_q4_1_##v, qgemm_q5_0_##v, qgemm_q2_K_##v, qgemm_q3_K_##v, qgemm_q4_K_##v, \
     qgemm_q6_K_##v}
static mend_qgemm_tile_fn pick_tile(uint32_t wtype, int level) {
    const int k = wtype == MEND_TYPE_Q4_0 ? 0 : wtype == MEND_TYPE_Q4_1 ? 1 : wtype == MEND_TYPE_Q5_0 ? 2
                : wtype == MEND_TYPE_Q2_K ? 3 : wtype == MEND_TYPE_Q3_K ? 4 : wtype == MEND_TYPE_Q4_K ? 5 : 6;
    static const mend_qgemm_tile_fn ref[7] = QGEMM_TABLE(ref);
#ifdef MEND_QGEMM_HAVE_SIMD
    static const mend_qgemm_tile_fn avx512[7] = QGEMM_TABLE(avx512);
    static const mend_qgemm_tile_fn avxvnni[7] = QGEMM_TABLE(avxvnni);
    static const mend_qgemm_tile_fn avx2[7] = QGEMM_TABLE(avx2);
    if (level >= MEND_SIMD_AVX512 && mend_cpu_has_avx512_vnni()) return avx512[k];
    if (level >= MEND_SIMD_AVX2 && mend_cpu_has_avx_vnni()) return avxvnni[k];
    if (level >= MEND_SIMD_AVX2 && mend_cpu_has_avx2()) return avx2[k];
#endif
#ifdef MEND_QGEMM_HAVE_NEON
    static const mend_qgemm_tile_fn neon_dot[7] = QGEMM_TABLE(neon_dot);
    static const mend_qgemm_tile_fn neon[7] = QGEMM_TABLE(neon);
    if (level >= MEND_SIMD_NEON && mend_cpu_has_neon_dotprod()) return neon_dot[k];
    if (level >= MEND_SIMD_NEON && mend_cpu_has_neon()) return neon[k];
#endif
    return ref[k];
}

/* Below this many multiply-adds a call stays on one thread. */
#define QGEMM_PARALLEL_MIN_MACS (1 << 18)

int mend_qgemm(float *out, size_t ldo, const float *x, size_t ldx, int n, const void *wp, uint32_t wtype,
               int64_t rows, int64_t cols, void *scratch, size_t scratch_bytes, int n_threads, int level) {
    const char *tn = mend_type_name(wtype);
    if (!mend_qgemm_supported(wtype, rows, cols))
        return mend_set_error(MEND_EUNSUPPORTED, "qgemm: no repacked kernel for %s weights of %lld x %lld",
                              tn, (long long)rows, (long long)cols);
    if (n < 0) return mend_set_error(MEND_EINVAL, "qgemm: negative batch %d", n);
    if (n == 0) return 0;
    if (!out || !x || !wp)
        return mend_set_error(MEND_EINVAL, "qgemm: NULL %s pointer", !out ? "output" : !x ? "input" : "weight");
    if (ldo < (uint64_t)rows || ldx < (uint64_t)cols)
        return mend_set_error(MEND_EINVAL, "qgemm: row strides ldo %zu / ldx %zu smaller than rows %lld / cols %lld",
                              ldo, ldx, (long long)rows, (long long)cols);
    const size_t arow = act_row_bytes(wtype, cols);
    size_t need, tmp;
    if (!mend_mul_ok(arow, (size_t)n, &need) || !mend_mul_ok(ldo, (size_t)n, &tmp) ||
        !mend_mul_ok(ldx, (size_t)n, &tmp) || need > SIZE_MAX - 64)
        return mend_set_error(MEND_ERANGE, "qgemm: %d rows of %lld overflow size_t", n, (long long)cols);
    int rc = mend_act_scratch(&scratch, scratch_bytes, need, &tl_scratch, &tl_scratch_cap, 0, "qgemm");
    if (rc) return rc;

    const int have = mend_cpu_simd_level();
    if (level < 0 || level > have) level = have;
    const mend_qgemm_tile_fn tile = pick_tile(wtype, level);
    const int64_t groups = rows / QGEMM_ROWS;
    const size_t gb = group_bytes(wtype, cols);
    if (n_threads <= 0) n_threads = mend_get_threads();
    if (n_threads < 1) n_threads = 1;
    if (n_threads > groups) n_threads = (int)groups;
    if ((double)rows * (double)cols * (double)n < QGEMM_PARALLEL_MIN_MACS) n_threads = 1;
    uint8_t *act = scratch;
    const uint8_t *w = wp;
#pragma omp parallel num_threads(n_threads)
    {
        const int t = omp_get_thread_num(), T = omp_get_num_threads();
        for (int i = t; i < n; i += T) mend_qgemm_quantize_row(wtype, x + (size_t)i * ldx, act + (size_t)i * arow, cols, level);
#pragma omp barrier
        const int64_t g0 = groups * t / T, g1 = groups * (t + 1) / T;
        for (int64_t g = g0; g < g1; g++) tile(cols, w + (size_t)g * gb, act, arow, n, out + g * QGEMM_ROWS, ldo);
    }
    return 0;
}
