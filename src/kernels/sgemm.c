/* f32 matrix products (see sgemm.h): out = beta * out + x · Wᵀ (the
 * forward's shape), + a · W and + aᵀ · W (the backward's shapes), on
 * kernels chosen at run time: AVX-512, AVX2 + FMA, NEON (sgemm_neon.c) and
 * portable C (fmaf).
 *
 * Every level computes every output element the same way, so all of them
 * give the same bits (and a batched product the bits of its rows taken alone):
 *  - x · Wᵀ: acc = 0, then acc = fma(x[i][kk], W[j][kk], acc) for kk in
 *    order; out = acc (beta 0) or fma(beta, out, acc);
 *  - a · W: per block of NN_MB rows of W, acc = 0, then acc = fma(W[mm][j],
 *    a[i][mm], acc) for mm in order; the first block stores acc (beta 0) or
 *    fma(beta, out, acc), each later block out + acc.
 * Only the tiling differs, which does not touch any one element's arithmetic.
 *
 * x · Wᵀ: x is packed once per product, transposed in blocks of 32 rows
 * (xt[block][kk][32], zero-padded past n); W is read in place, row-major.
 * The AVX-512 micro-kernel computes a tile of 32 rows x 12 columns of out in
 * 24 registers: per k step two vector loads of xt and twelve broadcasts of
 * W[j][kk], 24 FMAs. Twelve rows of W (12 k floats) stay in L1 while the
 * row blocks of xt stream past, so W needs no packing (the weight matrices
 * are large, the batches of rows short). The AVX2 kernel takes the same 32
 * rows as two halves of 16 (two ymm) against 6 columns: 12 accumulators.
 *
 * a · W: W is packed per block of 512 rows into strips of 32 columns; an
 * AVX-512 12 x 32 tile broadcasts twelve elements of a per step against two
 * vectors of the strip; the AVX2 tile is 6 rows x 16 columns (two halves per
 * strip). aᵀ · W is the same kernel reading a by columns. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/cpu.h"
#include "kernels/sgemm.h"
#include "kernels/sgemm_neon.h"

#define MR 32      /* rows per packed block of x */
#define NR 12      /* columns per x · Wᵀ tile (AVX-512, portable) */
#define NN_MB 512  /* rows of W per block of a · W */
/* Packed x per pass of x · Wᵀ (512 KiB): every W tile runs past one pass,
 * which stays in L2, before the next pass is read. Without passes every
 * tile streamed all of xt, from L3 once a batch outgrew L2: one core of
 * the Sapphire Rapids machine, 1104 x 576 x 576, 44 -> 86 GFLOP/s on AVX2
 * (6-column tiles, so 96 streams of xt per 576 columns) and 136 -> 146 on
 * AVX-512; the output head's 49152 columns 40 -> 78 on AVX2. */
#ifndef XT_PASS_FLOATS
#define XT_PASS_FLOATS (128u * 1024u)
#endif

/* The kernels of one level: xt_block computes out rows [0, mr) (mr <= 32)
 * x columns [0, nc) (nc <= xt_cols) from one packed 32-row block; nn_tile
 * computes out rows [0, mr) (mr <= nn_rows) x columns [0, nc) (nc <= 32) of
 * A · (a strip of W, len rows of 32 floats, zero past nc) with mode 0: out =
 * acc, 1: out += acc, 2: out = fma(beta, out, acc). A (r, mm) = a[r * sr +
 * mm * sm]. Rows past mr repeat the last row's pointer (computed, not
 * stored). */
typedef void xt_block_fn(float *out, size_t ldo, const float *xtb, const float *W, size_t ldw, int k, int mr,
                         int nc, float beta);
typedef void nn_tile_fn(float *out, size_t ldo, const float *a, size_t sr, size_t sm, int mr, const float *W, int len,
                        int nc, int mode, float beta);
typedef struct {
    xt_block_fn *xt_block;
    int xt_cols;
    nn_tile_fn *nn_tile;
    int nn_rows;
} sgemm_kernels;

size_t mend_sgemm_xt_floats(int n, int k) {
    if (n < 1 || k < 1) return 0;
    return (size_t)((n + MR - 1) / MR) * MR * (size_t)k;
}

static void pack_xt_ref(float *dst, const float *x, size_t ldx, int r0, int nr, int kk0, int k) {
    for (int kk = kk0; kk < k; kk++) {
        float *d = dst + (size_t)kk * MR;
        int r = 0;
        for (; r < nr; r++) d[r] = x[(size_t)(r0 + r) * ldx + kk];
        for (; r < MR; r++) d[r] = 0.0f;
    }
}

/* out rows [0, mr) x columns [0, nc) from the sums tile[c * MR + r]: the
 * epilogue of x · Wᵀ for the portable and NEON kernels (AVX-512 and AVX2
 * transpose their accumulators in registers instead, store16_avx512 and
 * store8_avx2, with the same arithmetic: acc, or fma(beta, out, acc)) */
void mend_sgemm_xt_store(float *out, size_t ldo, const float *tile, int mr, int nc, float beta) {
    for (int r = 0; r < mr; r++) {
        float *o = out + (size_t)r * ldo;
        if (beta == 0.0f)
            for (int c = 0; c < nc; c++) o[c] = tile[c * MR + r];
        else
            for (int c = 0; c < nc; c++) o[c] = fmaf(beta, o[c], tile[c * MR + r]);
    }
}

/* Portable x · Wᵀ block: NR columns, each summed with fmaf in k order. */
static void xt_block_ref(float *out, size_t ldo, const float *xtb, const float *W, size_t ldw, int k, int mr, int nc,
                         float beta) {
    float tile[NR * MR];
    for (int c = 0; c < nc; c++) {
        const float *w = W + (size_t)c * ldw;
        float *t = tile + c * MR;
        for (int r = 0; r < mr; r++) t[r] = 0.0f;
        for (int kk = 0; kk < k; kk++) {
            const float *x = xtb + (size_t)kk * MR;
            for (int r = 0; r < mr; r++) t[r] = fmaf(x[r], w[kk], t[r]);
        }
    }
    mend_sgemm_xt_store(out, ldo, tile, mr, nc, beta);
}

/* Portable a · W tile: any number of rows, one row at a time. */
static void nn_tile_ref(float *out, size_t ldo, const float *a, size_t sr, size_t sm, int mr, const float *W, int len,
                        int nc, int mode, float beta) {
    float acc[32];
    for (int r = 0; r < mr; r++) {
        const float *ar = a + (size_t)r * sr;
        for (int c = 0; c < nc; c++) acc[c] = 0.0f;
        for (int mm = 0; mm < len; mm++) {
            const float av = ar[(size_t)mm * sm], *w = W + (size_t)mm * 32;
            for (int c = 0; c < nc; c++) acc[c] = fmaf(w[c], av, acc[c]);
        }
        float *o = out + (size_t)r * ldo;
        for (int c = 0; c < nc; c++)
            o[c] = mode == 0 ? acc[c] : mode == 1 ? o[c] + acc[c] : fmaf(beta, o[c], acc[c]);
    }
}

/* This thread's buffer for packed operands, grown on demand and kept for the
 * thread's life (a few hundred KiB). NULL when it cannot grow. */
static float *tls_pack_buffer(size_t floats) {
    static _Thread_local float *buf;
    static _Thread_local size_t cap;
    if (floats > cap) {
        free(buf);
        buf = aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63);   /* C11: a multiple of 64 */
        cap = buf ? floats : 0;
    }
    return buf;
}

#if defined(__x86_64__) || defined(_M_X64)
static int pack_xt_avx512(float *dst, const float *x, size_t ldx, int r0, int nr, int k);
#endif

void mend_sgemm_pack_xt(float *xt, const float *x, size_t ldx, int n, int k, int b0, int b1) {
    for (int b = b0; b < b1; b++) {
        float *dst = xt + (size_t)b * MR * (size_t)k;
        const int r0 = b * MR, nr = n - r0 < MR ? n - r0 : MR;
        int done = 0;
#if defined(__x86_64__) || defined(_M_X64)
        if (mend_cpu_simd_level() >= MEND_SIMD_AVX512) done = pack_xt_avx512(dst, x, ldx, r0, nr, k);
#endif
        pack_xt_ref(dst, x, ldx, r0, nr, done, k);
    }
}

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

#define T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

/* o[j] lane i = r[i] lane j: a 16 x 16 transpose in registers. */
T_AVX512 static inline void transpose16_avx512(const __m512 r[16], __m512 o[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);       /* lane: a0 b0 a1 b1 */
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);   /* lane: a2 b2 a3 b3 */
    }
    for (int q = 0; q < 4; q++) {   /* rows 4q..4q+3: columns c, c+4, c+8, c+12 per lane */
        u[4 * q + 0] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * q + 1] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * q + 2] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * q + 3] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int c = 0; c < 4; c++) {   /* u[4q + c] holds columns c + 4j of rows 4q.. in lane j */
        const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
        const __m512 v1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        const __m512 v2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
        const __m512 v3 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        o[c + 0] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        o[c + 8] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        o[c + 4] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        o[c + 12] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
}

/* Columns [0, k rounded down to 16) of rows [r0, r0 + nr) of x into the
 * packed block dst[kk][32]: 16 x 16 tiles transposed in registers (rows past
 * nr read as zeros). Returns the columns done; the scalar loop does the rest. */
T_AVX512 static int pack_xt_avx512(float *dst, const float *x, size_t ldx, int r0, int nr, int k) {
    const int kf = k & ~15;
    for (int half = 0; half < MR; half += 16) {
        const float *rows[16];
        for (int i = 0; i < 16; i++) rows[i] = half + i < nr ? x + (size_t)(r0 + half + i) * ldx : NULL;
        for (int kk0 = 0; kk0 < kf; kk0 += 16) {
            __m512 r[16], o[16];
            for (int i = 0; i < 16; i++) r[i] = rows[i] ? _mm512_loadu_ps(rows[i] + kk0) : _mm512_setzero_ps();
            transpose16_avx512(r, o);
            float *d = dst + (size_t)kk0 * MR + half;
            for (int c = 0; c < 16; c++) _mm512_storeu_ps(d + (size_t)c * MR, o[c]);
        }
    }
    return kf;
}

/* The x · Wᵀ epilogue of mend_sgemm_xt_store on 16 rows held as columns:
 * col[c] lane i = out row i, column c (c < 12); rows [0, mr) of out, columns
 * [0, nc), as beta = 0 ? acc : fma(beta, out, acc), one masked row store
 * each instead of a scalar scatter. */
T_AVX512 static void store16_avx512(float *out, size_t ldo, const __m512 col[12], int mr, int nc, float beta) {
    __m512 r[16], o[16];
    for (int c = 0; c < 12; c++) r[c] = col[c];
    for (int c = 12; c < 16; c++) r[c] = _mm512_setzero_ps();
    transpose16_avx512(r, o);
    const __mmask16 m = (__mmask16)((1u << nc) - 1u);
    const __m512 vb = _mm512_set1_ps(beta);
    for (int i = 0; i < mr && i < 16; i++) {
        float *d = out + (size_t)i * ldo;
        const __m512 v = beta == 0.0f ? o[i] : _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, d), o[i]);
        _mm512_mask_storeu_ps(d, m, v);
    }
}

#define COL_FMA(j)                                              \
    do {                                                        \
        const __m512 b = _mm512_set1_ps(w##j[kk]);              \
        s##j##a = _mm512_fmadd_ps(a0, b, s##j##a);              \
        s##j##b = _mm512_fmadd_ps(a1, b, s##j##b);              \
    } while (0)

/* out rows [0, mr) x columns [0, nc) = beta * out + xt-block · W[0..nc)ᵀ */
T_AVX512 static void xt_block_avx512(float *out, size_t ldo, const float *xtb, const float *W, size_t ldw, int k,
                                  int mr, int nc, float beta) {
    const float *w0 = W, *w1 = W + (size_t)(nc > 1 ? 1 : 0) * ldw, *w2 = W + (size_t)(nc > 2 ? 2 : 0) * ldw,
                *w3 = W + (size_t)(nc > 3 ? 3 : 0) * ldw, *w4 = W + (size_t)(nc > 4 ? 4 : 0) * ldw,
                *w5 = W + (size_t)(nc > 5 ? 5 : 0) * ldw, *w6 = W + (size_t)(nc > 6 ? 6 : 0) * ldw,
                *w7 = W + (size_t)(nc > 7 ? 7 : 0) * ldw, *w8 = W + (size_t)(nc > 8 ? 8 : 0) * ldw,
                *w9 = W + (size_t)(nc > 9 ? 9 : 0) * ldw, *w10 = W + (size_t)(nc > 10 ? 10 : 0) * ldw,
                *w11 = W + (size_t)(nc > 11 ? 11 : 0) * ldw;
    __m512 s0a = _mm512_setzero_ps(), s0b = s0a, s1a = s0a, s1b = s0a, s2a = s0a, s2b = s0a, s3a = s0a,
           s3b = s0a, s4a = s0a, s4b = s0a, s5a = s0a, s5b = s0a, s6a = s0a, s6b = s0a, s7a = s0a, s7b = s0a,
           s8a = s0a, s8b = s0a, s9a = s0a, s9b = s0a, s10a = s0a, s10b = s0a, s11a = s0a, s11b = s0a;
    for (int kk = 0; kk < k; kk++) {
        const __m512 a0 = _mm512_load_ps(xtb + (size_t)kk * MR), a1 = _mm512_load_ps(xtb + (size_t)kk * MR + 16);
        COL_FMA(0); COL_FMA(1); COL_FMA(2); COL_FMA(3); COL_FMA(4); COL_FMA(5);
        COL_FMA(6); COL_FMA(7); COL_FMA(8); COL_FMA(9); COL_FMA(10); COL_FMA(11);
    }
    const __m512 lo[12] = {s0a, s1a, s2a, s3a, s4a, s5a, s6a, s7a, s8a, s9a, s10a, s11a};
    const __m512 hi[12] = {s0b, s1b, s2b, s3b, s4b, s5b, s6b, s7b, s8b, s9b, s10b, s11b};
    store16_avx512(out, ldo, lo, mr, nc, beta);
    if (mr > 16) store16_avx512(out + 16 * ldo, ldo, hi, mr - 16, nc, beta);
}

#define ROW_FMA(r)                                              \
    do {                                                        \
        const __m512 b = _mm512_set1_ps(a##r[(size_t)mm * sm]); \
        s##r##a = _mm512_fmadd_ps(wa, b, s##r##a);              \
        s##r##b = _mm512_fmadd_ps(wb, b, s##r##b);              \
    } while (0)

#define ROW_SAVE(r)                                                                            \
    do {                                                                                       \
        if ((r) < mr) {                                                                        \
            float *o = out + (size_t)(r) * ldo;                                                \
            __m512 ya = s##r##a, yb = s##r##b;                                                 \
            if (mode == 1) {                                                                   \
                ya = _mm512_add_ps(ya, _mm512_maskz_loadu_ps(ma, o));                          \
                yb = _mm512_add_ps(yb, _mm512_maskz_loadu_ps(mb, o + 16));                     \
            } else if (mode == 2) {                                                            \
                ya = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(ma, o), ya);                 \
                yb = _mm512_fmadd_ps(vbeta, _mm512_maskz_loadu_ps(mb, o + 16), yb);            \
            }                                                                                  \
            _mm512_mask_storeu_ps(o, ma, ya);                                                  \
            _mm512_mask_storeu_ps(o + 16, mb, yb);                                             \
        }                                                                                      \
    } while (0)

/* out rows [0, mr) x columns [0, nc) (nc <= 32) op= A rows [0, mr) x [0, len)
 * · W, a packed strip (len rows of 32 floats, zero past nc, 64-byte aligned);
 * A (r, mm) = a[r * sr + mm * sm] (sr = lda, sm = 1 for a; sr = 1, sm = lda
 * for aᵀ); mode 0: out = acc, 1: out += acc, 2: out = beta * out + acc. Rows
 * past mr repeat the last row's pointer (computed, not stored). */
T_AVX512 static void nn_tile_avx512(float *out, size_t ldo, const float *a, size_t sr, size_t sm, int mr,
                                     const float *W, int len, int nc, int mode, float beta) {
#define AROW(r) const float *a##r = a + (size_t)((r) < mr ? (r) : mr - 1) * sr
    AROW(0); AROW(1); AROW(2); AROW(3); AROW(4); AROW(5); AROW(6); AROW(7); AROW(8); AROW(9); AROW(10); AROW(11);
#undef AROW
    const __mmask16 ma = nc >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nc) - 1u);
    const __mmask16 mb16 = nc >= 32 ? (__mmask16)0xFFFF : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1u);
    __m512 s0a = _mm512_setzero_ps(), s0b = s0a, s1a = s0a, s1b = s0a, s2a = s0a, s2b = s0a, s3a = s0a,
           s3b = s0a, s4a = s0a, s4b = s0a, s5a = s0a, s5b = s0a, s6a = s0a, s6b = s0a, s7a = s0a, s7b = s0a,
           s8a = s0a, s8b = s0a, s9a = s0a, s9b = s0a, s10a = s0a, s10b = s0a, s11a = s0a, s11b = s0a;
    for (int mm = 0; mm < len; mm++) {
        const float *w = W + (size_t)mm * 32;
        const __m512 wa = _mm512_load_ps(w), wb = _mm512_load_ps(w + 16);
        ROW_FMA(0); ROW_FMA(1); ROW_FMA(2); ROW_FMA(3); ROW_FMA(4); ROW_FMA(5);
        ROW_FMA(6); ROW_FMA(7); ROW_FMA(8); ROW_FMA(9); ROW_FMA(10); ROW_FMA(11);
    }
    const __m512 vbeta = _mm512_set1_ps(beta);
    const __mmask16 mb = mb16;
    ROW_SAVE(0); ROW_SAVE(1); ROW_SAVE(2); ROW_SAVE(3); ROW_SAVE(4); ROW_SAVE(5);
    ROW_SAVE(6); ROW_SAVE(7); ROW_SAVE(8); ROW_SAVE(9); ROW_SAVE(10); ROW_SAVE(11);
}

#define T_AVX2 __attribute__((target("avx2,fma")))

#define COL_FMA8(j)                                             \
    do {                                                        \
        const __m256 b = _mm256_broadcast_ss(w##j + kk);        \
        s##j##a = _mm256_fmadd_ps(a0, b, s##j##a);              \
        s##j##b = _mm256_fmadd_ps(a1, b, s##j##b);              \
    } while (0)

/* Lanes [0, n) (n clamped to 0..8) of a mask for maskload / maskstore. */
T_AVX2 static __m256i lanes_avx2(int n) {
    static const int32_t ones[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_loadu_si256((const __m256i *)(ones + 8 - n));
}

/* The AVX2 form of store16_avx512: 8 rows held as 6 columns (col[c] lane i
 * = out row i, column c), transposed 8 x 8 in registers, one masked row
 * store each. */
T_AVX2 static void store8_avx2(float *out, size_t ldo, const __m256 col[6], int mr, int nc, float beta) {
    const __m256 t0 = _mm256_unpacklo_ps(col[0], col[1]), t1 = _mm256_unpackhi_ps(col[0], col[1]);
    const __m256 t2 = _mm256_unpacklo_ps(col[2], col[3]), t3 = _mm256_unpackhi_ps(col[2], col[3]);
    const __m256 t4 = _mm256_unpacklo_ps(col[4], col[5]), t5 = _mm256_unpackhi_ps(col[4], col[5]);
    const __m256 t6 = _mm256_setzero_ps(), t7 = t6;   /* columns 6 and 7: none */
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    const __m256 o[8] = {_mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                         _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                         _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                         _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
    const __m256i m = lanes_avx2(nc);
    const __m256 vb = _mm256_set1_ps(beta);
    for (int i = 0; i < mr && i < 8; i++) {
        float *d = out + (size_t)i * ldo;
        const __m256 v = beta == 0.0f ? o[i] : _mm256_fmadd_ps(vb, _mm256_maskload_ps(d, m), o[i]);
        _mm256_maskstore_ps(d, m, v);
    }
}

/* The x · Wᵀ block on AVX2: 6 columns, the 32 rows as two halves of 16 (the
 * second skipped when mr <= 16), 12 accumulators each. */
T_AVX2 static void xt_block_avx2(float *out, size_t ldo, const float *xtb, const float *W, size_t ldw, int k, int mr,
                                 int nc, float beta) {
    const float *w0 = W, *w1 = W + (size_t)(nc > 1 ? 1 : 0) * ldw, *w2 = W + (size_t)(nc > 2 ? 2 : 0) * ldw,
                *w3 = W + (size_t)(nc > 3 ? 3 : 0) * ldw, *w4 = W + (size_t)(nc > 4 ? 4 : 0) * ldw,
                *w5 = W + (size_t)(nc > 5 ? 5 : 0) * ldw;
    for (int half = 0; half < mr; half += 16) {
        __m256 s0a = _mm256_setzero_ps(), s0b = s0a, s1a = s0a, s1b = s0a, s2a = s0a, s2b = s0a, s3a = s0a,
               s3b = s0a, s4a = s0a, s4b = s0a, s5a = s0a, s5b = s0a;
        const float *x = xtb + half;
        for (int kk = 0; kk < k; kk++, x += MR) {
            const __m256 a0 = _mm256_load_ps(x), a1 = _mm256_load_ps(x + 8);
            COL_FMA8(0); COL_FMA8(1); COL_FMA8(2); COL_FMA8(3); COL_FMA8(4); COL_FMA8(5);
        }
        const __m256 lo[6] = {s0a, s1a, s2a, s3a, s4a, s5a}, hi[6] = {s0b, s1b, s2b, s3b, s4b, s5b};
        store8_avx2(out + (size_t)half * ldo, ldo, lo, mr - half, nc, beta);
        if (mr - half > 8) store8_avx2(out + (size_t)(half + 8) * ldo, ldo, hi, mr - half - 8, nc, beta);
    }
}

#define ROW_FMA8(r)                                             \
    do {                                                        \
        const __m256 b = _mm256_broadcast_ss(a##r + (size_t)mm * sm); \
        s##r##a = _mm256_fmadd_ps(wa, b, s##r##a);              \
        s##r##b = _mm256_fmadd_ps(wb, b, s##r##b);              \
    } while (0)

#define ROW_SAVE8(r)                                                                           \
    do {                                                                                       \
        if ((r) < mr) {                                                                        \
            float *o = out + (size_t)(r) * ldo + h;                                            \
            __m256 ya = s##r##a, yb = s##r##b;                                                 \
            if (mode == 1) {                                                                   \
                ya = _mm256_add_ps(ya, _mm256_maskload_ps(o, ma));                             \
                yb = _mm256_add_ps(yb, _mm256_maskload_ps(o + 8, mb));                         \
            } else if (mode == 2) {                                                            \
                ya = _mm256_fmadd_ps(vbeta, _mm256_maskload_ps(o, ma), ya);                    \
                yb = _mm256_fmadd_ps(vbeta, _mm256_maskload_ps(o + 8, mb), yb);                \
            }                                                                                  \
            _mm256_maskstore_ps(o, ma, ya);                                                    \
            _mm256_maskstore_ps(o + 8, mb, yb);                                                \
        }                                                                                      \
    } while (0)

/* The a · W tile on AVX2: 6 rows x the strip's 32 columns as two halves of
 * 16 (the second skipped when nc <= 16), 12 accumulators each. */
T_AVX2 static void nn_tile_avx2(float *out, size_t ldo, const float *a, size_t sr, size_t sm, int mr, const float *W,
                                int len, int nc, int mode, float beta) {
#define AROW(r) const float *a##r = a + (size_t)((r) < mr ? (r) : mr - 1) * sr
    AROW(0); AROW(1); AROW(2); AROW(3); AROW(4); AROW(5);
#undef AROW
    const __m256 vbeta = _mm256_set1_ps(beta);
    for (int h = 0; h < nc; h += 16) {
        const __m256i ma = lanes_avx2(nc - h), mb = lanes_avx2(nc - h - 8);
        __m256 s0a = _mm256_setzero_ps(), s0b = s0a, s1a = s0a, s1b = s0a, s2a = s0a, s2b = s0a, s3a = s0a,
               s3b = s0a, s4a = s0a, s4b = s0a, s5a = s0a, s5b = s0a;
        for (int mm = 0; mm < len; mm++) {
            const float *w = W + (size_t)mm * 32 + h;
            const __m256 wa = _mm256_loadu_ps(w), wb = _mm256_loadu_ps(w + 8);
            ROW_FMA8(0); ROW_FMA8(1); ROW_FMA8(2); ROW_FMA8(3); ROW_FMA8(4); ROW_FMA8(5);
        }
        ROW_SAVE8(0); ROW_SAVE8(1); ROW_SAVE8(2); ROW_SAVE8(3); ROW_SAVE8(4); ROW_SAVE8(5);
    }
}
#endif

/* The kernels of the level the dispatchers allow now. */
static sgemm_kernels pick_kernels(void) {
#if defined(__x86_64__) || defined(_M_X64)
    const int level = mend_cpu_simd_level();
    if (level >= MEND_SIMD_AVX512) return (sgemm_kernels){xt_block_avx512, NR, nn_tile_avx512, 12};
    if (level >= MEND_SIMD_AVX2) return (sgemm_kernels){xt_block_avx2, 6, nn_tile_avx2, 6};
#elif defined(__aarch64__) && defined(__ARM_NEON)
    if (mend_cpu_simd_level() >= MEND_SIMD_NEON)
        return (sgemm_kernels){mend_sgemm_xt_block_neon, MEND_SGEMM_NEON_COLS, mend_sgemm_nn_tile_neon,
                               MEND_SGEMM_NEON_ROWS};
#endif
    return (sgemm_kernels){xt_block_ref, NR, nn_tile_ref, 12};
}

/* Rows [0, mb) of the strips of W (strip s at ws + s * sstride, mb rows of
 * 32 floats) against rows [0, n) of A: columns [0, k) of out. */
static void nn_strips(const sgemm_kernels *K, float *out, size_t ldo, const float *a, size_t sr, size_t sm, int n,
                      const float *ws, size_t sstride, int mb, int k, int mode, float beta) {
    for (int s = 0; s < (k + 31) / 32; s++) {
        const int j0 = s * 32, nc = k - j0 < 32 ? k - j0 : 32;
        for (int i0 = 0; i0 < n; i0 += K->nn_rows) {
            const int mr = n - i0 < K->nn_rows ? n - i0 : K->nn_rows;
            K->nn_tile(out + (size_t)i0 * ldo + j0, ldo, a + (size_t)i0 * sr, sr, sm, mr, ws + s * sstride, mb, nc,
                       mode, beta);
        }
    }
}

size_t mend_sgemm_wp_floats(int m, int k) {
    if (m < 1 || k < 1) return 0;
    return (size_t)((k + 31) / 32) * 32 * (size_t)m;
}

void mend_sgemm_pack_w(float *wp, const float *W, size_t ldw, int m, int k) {
    const int strips = (k + 31) / 32;
    for (int mm = 0; mm < m; mm++) {
        const float *w = W + (size_t)mm * ldw;
        for (int s = 0; s < strips; s++) {
            float *d = wp + ((size_t)s * m + mm) * 32;
            const int c0 = s * 32, nc = k - c0 < 32 ? k - c0 : 32;
            int c = 0;
            for (; c < nc; c++) d[c] = w[c0 + c];
            for (; c < 32; c++) d[c] = 0.0f;
        }
    }
}

int mend_sgemm_available(void) { return 1; }

int mend_sgemm_xt(float *out, size_t ldo, const float *xt, int n, const float *W, size_t ldw, int m, int k,
                  float beta) {
    if (n < 1 || m < 1 || k < 1) return 1;
    const sgemm_kernels K = pick_kernels();
    const int nb = (n + MR - 1) / MR;
    const size_t blk = (size_t)MR * (size_t)k;   /* floats of one packed row block */
    const int per = blk >= XT_PASS_FLOATS ? 1 : (int)(XT_PASS_FLOATS / blk);
    for (int b0 = 0; b0 < nb; b0 += per) {
        const int b1 = nb - b0 < per ? nb : b0 + per;
        for (int j0 = 0; j0 < m; j0 += K.xt_cols) {
            const int nc = m - j0 < K.xt_cols ? m - j0 : K.xt_cols;
            for (int b = b0; b < b1; b++) {
                const int i0 = b * MR, mr = n - i0 < MR ? n - i0 : MR;
                K.xt_block(out + (size_t)i0 * ldo + j0, ldo, xt + (size_t)b * MR * (size_t)k, W + (size_t)j0 * ldw,
                           ldw, k, mr, nc, beta);
            }
        }
    }
    return 0;
}

/* a · W (sr = lda, sm = 1) and aᵀ · W (sr = 1, sm = lda). Per block of NN_MB
 * rows of W: pack it (a sequential read of whole rows, strips of 32 columns
 * laid out one after the other), then every strip runs past every row tile
 * of a from the packed copy. */
static int sgemm_nn_strided(float *out, size_t ldo, const float *a, size_t sr, size_t sm, int n, const float *W,
                            size_t ldw, int m, int k, float beta) {
    if (n < 1 || m < 1 || k < 1) return 1;
    const int strips = (k + 31) / 32;
    float *wp = tls_pack_buffer((size_t)NN_MB * strips * 32);
    if (!wp) return 1;
    const sgemm_kernels K = pick_kernels();
    for (int m0 = 0; m0 < m; m0 += NN_MB) {
        const int mb = m - m0 < NN_MB ? m - m0 : NN_MB;
        mend_sgemm_pack_w(wp, W + (size_t)m0 * ldw, ldw, mb, k);
        nn_strips(&K, out, ldo, a + (size_t)m0 * sm, sr, sm, n, wp, (size_t)mb * 32, mb, k,
                  m0 > 0 ? 1 : beta == 0.0f ? 0 : 2, beta);
    }
    return 0;
}

int mend_sgemm_nn(float *out, size_t ldo, const float *a, size_t lda, int n, const float *W, size_t ldw, int m,
                  int k, float beta) {
    return sgemm_nn_strided(out, ldo, a, lda, 1, n, W, ldw, m, k, beta);
}

/* The same blocks of NN_MB rows, read from a whole-matrix packing. */
int mend_sgemm_nn_packed(float *out, size_t ldo, const float *a, size_t lda, int n, const float *wp, int m, int k,
                         int s0, int s1, float beta) {
    const int strips = (k + 31) / 32;
    if (s1 > strips) s1 = strips;
    if (n < 1 || m < 1 || k < 1 || s0 < 0 || s0 >= s1) return 1;
    const int j0 = s0 * 32, j1 = s1 * 32 < k ? s1 * 32 : k;
    const sgemm_kernels K = pick_kernels();
    wp += (size_t)s0 * m * 32;
    for (int m0 = 0; m0 < m; m0 += NN_MB) {
        const int mb = m - m0 < NN_MB ? m - m0 : NN_MB;
        nn_strips(&K, out + j0, ldo, a + m0, lda, 1, n, wp + (size_t)m0 * 32, (size_t)m * 32, mb, j1 - j0,
                  m0 > 0 ? 1 : beta == 0.0f ? 0 : 2, beta);
    }
    return 0;
}

int mend_sgemm_tn(float *out, size_t ldo, const float *a, size_t lda, int n, const float *W, size_t ldw, int m,
                  int k, float beta) {
    return sgemm_nn_strided(out, ldo, a, 1, lda, n, W, ldw, m, k, beta);
}

int mend_sgemm_nt(float *out, size_t ldo, const float *x, size_t ldx, int n, const float *W, size_t ldw, int m,
                  int k, float beta) {
    if (n < 1 || m < 1 || k < 1) return 1;
    float *xt = tls_pack_buffer(mend_sgemm_xt_floats(n, k));
    if (!xt) return 1;
    mend_sgemm_pack_xt(xt, x, ldx, n, k, 0, (n + MR - 1) / MR);
    return mend_sgemm_xt(out, ldo, xt, n, W, ldw, m, k, beta);
}
