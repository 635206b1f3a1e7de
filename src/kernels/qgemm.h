/* Batched products on weights repacked for VNNI ("interleaved" layouts).
 *
 * mend_qmatmul (qmatmul.h) runs each weight row against each activation row
 * in a dot product that ends in a horizontal sum per 32-block; for a batch
 * (prompt processing) most of its instructions are unpacking and reducing,
 * not multiplying. Here the weight rows are regrouped once, at model load,
 * 16 rows at a time so that one 512-bit register holds 4 consecutive weights
 * of each of 16 rows (one int32 lane per row). One vpdpbusd against 4
 * activation bytes broadcast to every lane then advances 16 dot products at
 * once, a block's 32 weights take 8 of them with no horizontal sum, and each
 * unpacked register serves a whole tile of activation rows:
 *
 *   out[i][16g + r] = sum_b dw[r,b] * da[i,b] * sumi[r,i,b]        (q4_0)
 *   sumi = sum_{k in b} q[r,k] * a[i,k] - 8 * sum_{k in b} a[i,k]
 *
 * (q4_0's nibbles are the unsigned operand as stored; the -8 comes in as the
 * accumulator's start value, -8 times the block's activation sum, kept with
 * the quantized activations. q4_1 adds mw[r,b] * sa[i,b] per block, sa the
 * q8_1 block sum.) q2_K keeps its 2-bit weights and turns each
 * into q * scale (0..45, still unsigned bytes) with a vpshufb table per
 * 16-weight sub-block, so a whole 256-weight super-block is one integer
 * chain; its mins meet the activation block sums in vpdpwssd. q3_K, q4_K
 * and q6_K keep their quants as unsigned bytes (q3_K's value + 4, q6_K's
 * value + 32) and meet their scales (up to 63, or signed) once per
 * 16-weight sub-block s and activation row: 4 vpdpbusd give the
 * sub-block's sum c, which vpdpwssd against (sc, 0) scales and adds (q3_K,
 * q4_K: |c| <= 16 * 15 * 127 fits int16; q6_K's reach 16 * 63 * 127 and go
 * through vpmulld); the scales (times the stored offset) or q4_K's mins
 * meet the block sums in vpdpwssd:
 *
 *   isum[r,i,b] = sum_s sc[r,s] * (c[r,i,s] - off * bsums[i,s])
 *   out[i][16g + r] = sum_b fma(isum, d[r,b] * da[i,b])
 *   (off: q3_K 4, q6_K 32; q4_K 0, and m = sum_s min[r,s] * bsums[i,s]
 *   enters after isum, per super-block: fma(-m, dmin[r,b] * da[i,b]))
 *
 *   layout "q4_0x16", per group of 16 rows, nb = cols / 32 blocks:
 *     qs  nb x 256 bytes: block b, part L (0..3): 64 bytes, dword r =
 *         bytes 4L .. 4L+3 of row r's block b (low nibbles: weights 4L ..
 *         4L+3, high nibbles: weights 16+4L .. 19+4L)
 *     d   nb x 16 fp16: the rows' block scales
 *     (the same bytes as the 16 rows in ggml's layout: 18 per block)
 *   layout "q4_1x16": the same, then m  nb x 16 fp16: the rows' block mins
 *   layout "q5_0x16": qs as q4_0x16, then
 *     qh  nb x 64 bytes: block b, part L: 16 bytes, byte r = the fifth bits
 *         of row r's weights in part L (bit u: weight 4L+u, bit 4+u: weight
 *         16+4L+u), added as 16 to the nibble after a vpshufb spreads them
 *     d   nb x 16 fp16 (again the bytes of 16 rows in ggml's layout: 22 per
 *         block; weights are 0..31 less 16, the -16 met like q4_0's -8)
 *   layout "q2_Kx16", per group of 16 rows and super-block (256 weights),
 *   QGEMM_Q2K_SB bytes:
 *     q    16 sub-blocks x 64 bytes: byte 4r + u of sub-block s holds in
 *          bits 2t..2t+1 weight 16s + 4t + u of row r (t = 0..3)
 *     lut  16 x 64 bytes: 128-bit lane l, byte 4rr + q = q * scale of row
 *          4l + rr in sub-block s (the vpshufb table)
 *     mins 8 x 32 int16: pair p, lane r = (min[r][2p], min[r][2p+1])
 *     d, dmin  16 fp16 each
 *   layouts "q3_Kx16", "q4_Kx16", "q6_Kx16", per group of 16 rows and
 *   super-block, QGEMM_KQ_SB(QGEMM_KQ_NIB) bytes (q3_K, q4_K) or
 *   QGEMM_KQ_SB(QGEMM_KQ_BYTE) (q6_K); sub-block s = weights 16s .. 16s + 15
 *   (q4_K's 32-weight sub-blocks give their scale and min to two):
 *     q    q3_K / q4_K: 8 regions x 4 parts x 64 bytes: byte 4r + u of part
 *          t of region j holds weight 16j + 4t + u of row r in its low
 *          nibble and weight 128 + 16j + 4t + u in its high nibble (so a
 *          region is sub-blocks j and j + 8); q6_K: 16 sub-blocks x 4 parts
 *          x 64 bytes, byte 4r + u of part t of sub-block s = weight
 *          16s + 4t + u of row r. Stored: q4_K 0..15, q3_K value + 4 (0..7),
 *          q6_K value + 32 (0..63)
 *     sc   8 x 32 int16: pair p, lane r = q4_K: (scale, min) of row r's
 *          32-weight sub-block p (0..63 each); q3_K / q6_K: the scales of
 *          row r's sub-blocks 2p and 2p + 1 (-32..31, -128..127)
 *     d, dmin  16 fp16 each (dmin 0 but for q4_K)
 *   (1.14x the plain bytes for q4_K, 1.49x for q3_K, 1.39x for q6_K;
 *   one Sapphire Rapids core, n = 512, 576x1536: q4_K 429 GFLOP/s on
 *   AVX-512 VNNI against 87 per row, 217 / 189 on AVX2 with / without
 *   AVX-VNNI against 65; q3_K 437, q6_K 354; BENCHMARKS.md, "Repacked
 *   K-quants")
 *
 * Activations are quantized once per call exactly as mend_qmatmul does (the
 * same q8_0 / q8_1 / q8_K bytes and scales), then laid out for the kernel:
 * q4_0 rows are [qs: cols bytes][d: nb floats][m: nb int32, -8 * block sum]
 * (q5_0: -16 * block sum),
 * q4_1 rows [qs][d: nb floats][s: nb floats, the q8_1 block sums], q2_K,
 * q3_K, q4_K and q6_K rows plain block_q8_K. Every SIMD kernel has a scalar
 * _ref twin over the same layouts computing the same integer sums and the
 * same fused float steps in the same order, so the two agree bit for bit.
 *
 * x86-64 with AVX-512 VNNI runs 16 rows per zmm register (qgemm_avx512.c);
 * with AVX2 only, each half of a group (8 rows) fills a ymm register and the
 * byte products go through vpmaddubsw, or vpdpbusd where the CPU has AVX-VNNI
 * (qgemm_avx2.c), on the same layouts. On AArch64 a 128-bit register holds
 * 4 rows of a part, and SDOT (the dot-product extension; SMULL and
 * pairwise adds without it) against 4 activation bytes broadcast to every
 * lane plays vpdpbusd's role (qgemm_neon.c; q4_0's nibbles, q2_K's
 * q * scale and the stored K-quants are small enough to be the signed
 * operand; MLA scales the K-quant sub-block sums). Elsewhere
 * mend_qgemm_available() answers 0 and callers keep the plain layout (the
 * _ref twins still run anywhere, for tests). */
#ifndef MEND_QGEMM_H
#define MEND_QGEMM_H

#include <stddef.h>
#include <stdint.h>

#define QGEMM_ROWS 16               /* weight rows per group */
#define QGEMM_Q2K_SB (16 * 64 + 16 * 64 + 8 * 64 + 64)   /* bytes per q2_K group super-block */
#define QGEMM_KQ_NIB 2048           /* weight bytes of a q3_K / q4_K group super-block */
#define QGEMM_KQ_BYTE 4096          /* weight bytes of a q6_K group super-block */
#define QGEMM_KQ_SB(qbytes) ((qbytes) + 8 * 64 + 64)   /* + scale pairs, d, dmin */

/* Non-zero when wtype (rows, cols) can be repacked: q4_0 / q4_1 / q5_0 with
 * cols % 32, q2_K / q3_K / q4_K / q6_K with cols % 256, rows % 16 == 0 for
 * all. */
int mend_qgemm_supported(uint32_t wtype, int64_t rows, int64_t cols);
/* Non-zero when the CPU runs the SIMD kernels (AVX-512 F/BW/VL + VNNI, or
 * AVX2 + FMA + F16C, or NEON), so repacking pays. */
int mend_qgemm_available(void);
/* Bytes of the repacked form (0 if unsupported or on overflow). */
size_t mend_qgemm_packed_size(uint32_t wtype, int64_t rows, int64_t cols);
/* Repack row groups [g0, g1) of W (rows, cols; ggml layout) into dst (the
 * whole repacked buffer; groups land at their own offsets). */
void mend_qgemm_pack(void *dst, const void *w, uint32_t wtype, int64_t rows, int64_t cols, int64_t g0, int64_t g1);

/* Bytes of activation scratch for n rows of cols. */
size_t mend_qgemm_scratch_size(uint32_t wtype, int n, int64_t cols);

/* out (n, ldo) = x (n, ldx) · Wᵀ with W repacked (wp). Activations are
 * quantized into scratch (>= mend_qgemm_scratch_size, 64-byte aligned is
 * best; NULL: a per-thread buffer), the row groups are split among
 * n_threads OpenMP threads (<= 0: mend_get_threads()), level < 0 picks the
 * widest kernels (MEND_SIMD_SCALAR: the _ref twins). Returns 0 or a MEND_E*
 * code. */
int mend_qgemm(float *out, size_t ldo, const float *x, size_t ldx, int n, const void *wp, uint32_t wtype,
               int64_t rows, int64_t cols, void *scratch, size_t scratch_bytes, int n_threads, int level);

/* Free the calling thread's reusable scratch buffer (scratch == NULL). */
void mend_qgemm_release_scratch(void);

/* ---- kernels: one group of 16 weight rows against na activation rows ----
 * g: the group's repacked bytes; a: activation rows arow bytes apart;
 * out[i * ldo + r] for i < na, r < 16 (overwritten). */
typedef void (*mend_qgemm_tile_fn)(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out,
                                   size_t ldo);
/* qgemm_<type>_<variant> for q4_0, q4_1, q5_0, q2_K, q3_K, q4_K and q6_K */
#define QGEMM_KERNELS(variant)                                                                              \
    void qgemm_q4_0_##variant(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out,  \
                              size_t ldo);                                                                \
    void qgemm_q4_1_##variant(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out,  \
                              size_t ldo);                                                                \
    void qgemm_q5_0_##variant(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out,  \
                              size_t ldo);                                                                \
    void qgemm_q2_K_##variant(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out,  \
                              size_t ldo);                                                                \
    void qgemm_q3_K_##variant(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out,  \
                              size_t ldo);                                                                \
    void qgemm_q4_K_##variant(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out,  \
                              size_t ldo);                                                                \
    void qgemm_q6_K_##variant(int64_t cols, const void *g, const void *a, size_t arow, int na, float *out,  \
                              size_t ldo);
QGEMM_KERNELS(ref)   /* scalar twins (qgemm.c) */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(MEND_NO_SIMD)
#define MEND_QGEMM_HAVE_SIMD 1
#define QGEMM_PF_BYTES 4096   /* prefetch distance in the weight stream */
/* Fetch the `bytes` that lie QGEMM_PF_BYTES past p, a line at a time (a
 * group super-block ahead, for the one-activation-row tiles whose weights
 * stream from memory). */
static inline void qgemm_prefetch_ahead(const uint8_t *p, size_t bytes) {
    const uintptr_t pf = (uintptr_t)p + QGEMM_PF_BYTES;
    for (size_t l = 0; l < bytes; l += 64) __builtin_prefetch((const void *)(pf + l), 0, 3);
}
QGEMM_KERNELS(avx512)    /* AVX-512 F/BW/VL + VNNI (qgemm_avx512.c) */
QGEMM_KERNELS(avx2)      /* AVX2 + FMA + F16C (qgemm_avx2.c) */
QGEMM_KERNELS(avxvnni)   /* the same with AVX-VNNI */
#endif
#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(MEND_NO_SIMD)
#define MEND_QGEMM_HAVE_NEON 1
QGEMM_KERNELS(neon)       /* NEON (qgemm_neon.c) */
QGEMM_KERNELS(neon_dot)   /* the same with the dot-product extension (SDOT) */
#endif

/* Quantize one activation row x (cols) into the kernel layout at level. */
void mend_qgemm_quantize_row(uint32_t wtype, const float *x, void *dst, int64_t cols, int level);

#endif
