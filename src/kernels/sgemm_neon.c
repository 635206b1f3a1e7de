/* NEON kernels of the f32 products (see sgemm.c for the layouts and
 * sgemm_neon.h for the contract). AArch64 has 32 vector registers of 4
 * floats:
 *  - x · Wᵀ: the 32-row packed block as two halves of 16 rows (4 vectors)
 *    against 6 columns of W, 24 accumulators; per k step 4 loads of xt and
 *    6 scalars of W multiplied in by element (FMLA v, v, s[0]);
 *  - a · W: 6 rows of a against 16 columns of a packed strip (4 vectors),
 *    24 accumulators; the strip's second half is a second pass.
 * vfmaq_n_f32(acc, x, w) rounds once, as fmaf(x, w, acc) does, and every
 * element's products are added in the order of the portable kernels. */
#if defined(__aarch64__) && defined(__ARM_NEON)

#include <arm_neon.h>
#include <math.h>

#include "kernels/sgemm_neon.h"

#define MR 32   /* rows per packed block of x (sgemm.c) */

#define COL_FMA(j)                                  \
    do {                                            \
        const float b = w##j[kk];                   \
        s##j##0 = vfmaq_n_f32(s##j##0, a0, b);      \
        s##j##1 = vfmaq_n_f32(s##j##1, a1, b);      \
        s##j##2 = vfmaq_n_f32(s##j##2, a2, b);      \
        s##j##3 = vfmaq_n_f32(s##j##3, a3, b);      \
    } while (0)

#define COL_SAVE(j)                                 \
    do {                                            \
        float *t = tile + (j) * MR + half;          \
        vst1q_f32(t, s##j##0);                      \
        vst1q_f32(t + 4, s##j##1);                  \
        vst1q_f32(t + 8, s##j##2);                  \
        vst1q_f32(t + 12, s##j##3);                 \
    } while (0)

#define ZERO4(j) float32x4_t s##j##0 = vdupq_n_f32(0.0f), s##j##1 = s##j##0, s##j##2 = s##j##0, s##j##3 = s##j##0

void mend_sgemm_xt_block_neon(float *out, size_t ldo, const float *xtb, const float *W, size_t ldw, int k, int mr,
                              int nc, float beta) {
    /* columns past nc repeat column 0 (computed, not stored) */
    const float *w0 = W, *w1 = W + (size_t)(nc > 1 ? 1 : 0) * ldw, *w2 = W + (size_t)(nc > 2 ? 2 : 0) * ldw,
                *w3 = W + (size_t)(nc > 3 ? 3 : 0) * ldw, *w4 = W + (size_t)(nc > 4 ? 4 : 0) * ldw,
                *w5 = W + (size_t)(nc > 5 ? 5 : 0) * ldw;
    float tile[MEND_SGEMM_NEON_COLS * MR];
    for (int half = 0; half < mr; half += 16) {
        ZERO4(0); ZERO4(1); ZERO4(2); ZERO4(3); ZERO4(4); ZERO4(5);
        const float *x = xtb + half;
        for (int kk = 0; kk < k; kk++, x += MR) {
            const float32x4_t a0 = vld1q_f32(x), a1 = vld1q_f32(x + 4), a2 = vld1q_f32(x + 8), a3 = vld1q_f32(x + 12);
            COL_FMA(0); COL_FMA(1); COL_FMA(2); COL_FMA(3); COL_FMA(4); COL_FMA(5);
        }
        COL_SAVE(0); COL_SAVE(1); COL_SAVE(2); COL_SAVE(3); COL_SAVE(4); COL_SAVE(5);
    }
    mend_sgemm_xt_store(out, ldo, tile, mr, nc, beta);
}

#define ROW_FMA(r)                                  \
    do {                                            \
        const float b = a##r[(size_t)mm * sm];      \
        s##r##0 = vfmaq_n_f32(s##r##0, w0, b);      \
        s##r##1 = vfmaq_n_f32(s##r##1, w1, b);      \
        s##r##2 = vfmaq_n_f32(s##r##2, w2, b);      \
        s##r##3 = vfmaq_n_f32(s##r##3, w3, b);      \
    } while (0)

#define ROW_SAVE(r)                                 \
    do {                                            \
        float *t = acc + (r) * 16;                  \
        vst1q_f32(t, s##r##0);                      \
        vst1q_f32(t + 4, s##r##1);                  \
        vst1q_f32(t + 8, s##r##2);                  \
        vst1q_f32(t + 12, s##r##3);                 \
    } while (0)

/* out rows [0, mr) x columns [h, h + cols) op= the sums acc[r * 16 + c]
 * (mode 0: =, 1: +=, 2: fma(beta, out, sum), as the portable tile) */
static void nn_store(float *out, size_t ldo, const float *acc, int mr, int cols, int mode, float beta) {
    for (int r = 0; r < mr; r++) {
        float *o = out + (size_t)r * ldo;
        const float *s = acc + r * 16;
        for (int c = 0; c < cols; c++) o[c] = mode == 0 ? s[c] : mode == 1 ? o[c] + s[c] : fmaf(beta, o[c], s[c]);
    }
}

void mend_sgemm_nn_tile_neon(float *out, size_t ldo, const float *a, size_t sr, size_t sm, int mr, const float *W,
                             int len, int nc, int mode, float beta) {
#define AROW(r) const float *a##r = a + (size_t)((r) < mr ? (r) : mr - 1) * sr
    AROW(0); AROW(1); AROW(2); AROW(3); AROW(4); AROW(5);
#undef AROW
    float acc[MEND_SGEMM_NEON_ROWS * 16];
    for (int h = 0; h < nc; h += 16) {
        ZERO4(0); ZERO4(1); ZERO4(2); ZERO4(3); ZERO4(4); ZERO4(5);
        for (int mm = 0; mm < len; mm++) {
            const float *w = W + (size_t)mm * 32 + h;   /* the strip is zero past nc */
            const float32x4_t w0 = vld1q_f32(w), w1 = vld1q_f32(w + 4), w2 = vld1q_f32(w + 8), w3 = vld1q_f32(w + 12);
            ROW_FMA(0); ROW_FMA(1); ROW_FMA(2); ROW_FMA(3); ROW_FMA(4); ROW_FMA(5);
        }
        ROW_SAVE(0); ROW_SAVE(1); ROW_SAVE(2); ROW_SAVE(3); ROW_SAVE(4); ROW_SAVE(5);
        nn_store(out + h, ldo, acc, mr, nc - h < 16 ? nc - h : 16, mode, beta);
    }
}

#else
typedef int mend_sgemm_neon_unused;   /* ISO C forbids an empty unit */
#endif
