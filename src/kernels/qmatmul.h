/* Matrix products straight on packed ggml blocks.
 *
 * Generation runs one token at a time, so every matmul streams its whole
 * weight matrix for a handful of multiply-adds per byte: the speed limit is
 * memory, and packed 4-bit weights move 8x fewer bytes than f32. The
 * activations are quantized once per call into an 8-bit block format that
 * pairs with the weight type (as ggml does), and each weight row meets each
 * activation row in an integer dot product:
 *
 *   weight type            activation  dot per block (sumi: exact int32)
 *   q4_0 q5_0 q8_0         q8_0        dw*da * sumi(qw - off, qa)
 *   q4_1 q5_1              q8_1        dw*da * sumi(qw, qa) + mw * sa
 *   q2_K q3_K q4_K q5_K    q8_K        da*d * sumi(sc*qw, qa) - da*dmin * sumi(mn, bsums)
 *   q6_K                   q8_K        da*d * (sumi(sc*qw, qa) - 32 * sumi(sc, bsums))
 *   f16 f32                f32         plain float dot product
 *
 * Every SIMD kernel (qmatmul_avx2.c, qmatmul_avx512.c, qmatmul_neon.c) has a
 * scalar _ref twin computing the same integer sums; only the order of the
 * float operations around them differs (the NEON quantized dots keep the
 * _ref order too, so they give its bits). Activation quantizers give the
 * same bytes at every level. The AVX-512 level uses VNNI (vpdpbusd) for the 32-block dots; on an
 * AVX-512 CPU without VNNI those run the AVX2 kernels. Some K-quant kernels
 * take constant offsets (q3_K's -4, q6_K's -32) through the q8_K block sums,
 * so they rely on bsums matching qs, as the q8_K quantizer guarantees.
 *
 * Tile kernels (dot4, dotw4, dot24 below) share each unpacked weight block
 * among several activation rows and each loaded activation block among
 * several weight rows; the driver uses the ones a level has.
 *
 * Block pointers must be aligned for their block type (2 bytes for the ggml
 * blocks, 4 for q8_K and f32); mend_qmatmul checks it. */
#ifndef MEND_QMATMUL_H
#define MEND_QMATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/quants.h"

/* dot(w_row, a_row) over n elements (a multiple of the block size). */
typedef float (*mend_vec_dot_fn)(int64_t n, const void *w_row, const void *a_row);
/* Tiles: several dots sharing unpacked weights or loaded activations.
 * dot4  (1 x 4): s[k] = dot(w_row, a_k), activation rows a_stride bytes apart;
 * dotw4 (4 x 1): s[i] = dot(w_i, a_row), weight rows w_stride bytes apart;
 * dot24 (2 x 4): s[4 i + k] = dot(w_i, a_k). */
typedef void (*mend_vec_dot4_fn)(int64_t n, const void *w_row, const void *a_rows, size_t a_stride, float *s);
typedef void (*mend_vec_dotw4_fn)(int64_t n, const void *w_rows, size_t w_stride, const void *a_row, float *s);
typedef void (*mend_vec_dot24_fn)(int64_t n, const void *w_rows, size_t w_stride, const void *a_rows,
                                  size_t a_stride, float *s);
/* Quantize n floats (a multiple of the block size) into activation blocks. */
typedef void (*mend_quantize_act_fn)(const float *x, void *y, int64_t n);

/* ---- activation quantizers ------------------------------------------------
 * q8_0 / q8_1: per 32 values, amax = max|x|, d = amax/127 (stored fp16),
 *   q = round_half_even(x * (127/amax)) (0 when amax == 0); q8_1 also stores
 *   s = fp16(d * sum(q)). (ggml's x86 activation path.)
 * q8_K: per 256 values, max = the value of largest magnitude (first one on
 *   ties), iscale = -127/max, q = min(127, round_half_even(iscale * x)),
 *   d = 1/iscale (float), bsums[j] = sum of q[16j .. 16j+15]. (ggml's
 *   quantize_row_q8_K_ref.) All quants lie in [-127, 127]. */
void quantize_act_q8_0_ref(const float *x, void *y, int64_t n);
void quantize_act_q8_1_ref(const float *x, void *y, int64_t n);
void quantize_act_q8_K_ref(const float *x, void *y, int64_t n);

/* ---- K-quant scales, unpacked (layouts in quants.c) ------------------------ */
/* the 16 six-bit q3_K scales, minus 32 */
static inline void mend_q3k_scales(const uint8_t *sb, int8_t *sc) {
    for (int s = 0; s < 16; s++) {
        const int lo = (sb[s % 8] >> (4 * (s / 8))) & 0x0F;
        const int hi = (sb[8 + s % 4] >> (2 * (s / 4))) & 3;
        sc[s] = (int8_t)((lo | hi << 4) - 32);
    }
}
/* the 8 six-bit scales and mins of q4_K / q5_K */
static inline void mend_k4_scales(const uint8_t *q, uint8_t *sc, uint8_t *mn) {
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        mn[j] = q[j + 4] & 63;
        sc[j + 4] = (uint8_t)((q[j + 8] & 0x0F) | (q[j] >> 6) << 4);
        mn[j + 4] = (uint8_t)((q[j + 8] >> 4) | (q[j + 4] >> 6) << 4);
    }
}

/* ---- dot products (scalar references) ------------------------------------ */
float vec_dot_q4_0_q8_0_ref(int64_t n, const void *w, const void *a);
float vec_dot_q4_1_q8_1_ref(int64_t n, const void *w, const void *a);
float vec_dot_q5_0_q8_0_ref(int64_t n, const void *w, const void *a);
float vec_dot_q5_1_q8_1_ref(int64_t n, const void *w, const void *a);
float vec_dot_q8_0_q8_0_ref(int64_t n, const void *w, const void *a);
float vec_dot_q2_K_q8_K_ref(int64_t n, const void *w, const void *a);
float vec_dot_q3_K_q8_K_ref(int64_t n, const void *w, const void *a);
float vec_dot_q4_K_q8_K_ref(int64_t n, const void *w, const void *a);
float vec_dot_q5_K_q8_K_ref(int64_t n, const void *w, const void *a);
float vec_dot_q6_K_q8_K_ref(int64_t n, const void *w, const void *a);
float vec_dot_f16_f32_ref(int64_t n, const void *w, const void *a);
float vec_dot_f32_f32_ref(int64_t n, const void *w, const void *a);

/* ---- SIMD twins (x86-64 only; call only when cpu.h reports the level;
 * -DMEND_NO_SIMD compiles the dispatcher with the scalar kernels alone) ---- */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(MEND_NO_SIMD)
#define MEND_QMATMUL_HAVE_SIMD 1
/* AVX2 + FMA + F16C */
void quantize_act_q8_0_avx2(const float *x, void *y, int64_t n);
void quantize_act_q8_1_avx2(const float *x, void *y, int64_t n);
void quantize_act_q8_K_avx2(const float *x, void *y, int64_t n);
float vec_dot_q4_0_q8_0_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q4_1_q8_1_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q5_0_q8_0_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q5_1_q8_1_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q8_0_q8_0_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q2_K_q8_K_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q3_K_q8_K_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q4_K_q8_K_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q5_K_q8_K_avx2(int64_t n, const void *w, const void *a);
float vec_dot_q6_K_q8_K_avx2(int64_t n, const void *w, const void *a);
float vec_dot_f16_f32_avx2(int64_t n, const void *w, const void *a);
float vec_dot_f32_f32_avx2(int64_t n, const void *w, const void *a);
/* tiles */
void vec_dot4_q4_0_q8_0_avx2(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_q4_0_q8_0_avx2(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_q4_0_q8_0_avx2(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_q4_1_q8_1_avx2(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_q4_1_q8_1_avx2(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_q4_1_q8_1_avx2(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_q5_0_q8_0_avx2(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_q5_0_q8_0_avx2(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_q5_0_q8_0_avx2(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_q5_1_q8_1_avx2(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_q5_1_q8_1_avx2(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_q5_1_q8_1_avx2(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_q8_0_q8_0_avx2(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_q8_0_q8_0_avx2(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_q8_0_q8_0_avx2(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_f16_f32_avx2(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_f16_f32_avx2(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_f16_f32_avx2(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_f32_f32_avx2(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_f32_f32_avx2(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_f32_f32_avx2(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
/* AVX-512 F/BW/VL (+ VNNI for the integer dots) */
void quantize_act_q8_0_avx512(const float *x, void *y, int64_t n);
void quantize_act_q8_1_avx512(const float *x, void *y, int64_t n);
void quantize_act_q8_K_avx512(const float *x, void *y, int64_t n);
float vec_dot_q4_0_q8_0_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q4_1_q8_1_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q5_0_q8_0_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q5_1_q8_1_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q8_0_q8_0_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q2_K_q8_K_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q3_K_q8_K_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q4_K_q8_K_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q5_K_q8_K_avx512(int64_t n, const void *w, const void *a);
float vec_dot_q6_K_q8_K_avx512(int64_t n, const void *w, const void *a);
float vec_dot_f16_f32_avx512(int64_t n, const void *w, const void *a);
float vec_dot_f32_f32_avx512(int64_t n, const void *w, const void *a);
/* tiles (VNNI for the 32-element blocks) */
void vec_dot4_q4_0_q8_0_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_q4_0_q8_0_avx512(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_q4_0_q8_0_avx512(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_q4_1_q8_1_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_q4_1_q8_1_avx512(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_q4_1_q8_1_avx512(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_q5_0_q8_0_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_q5_0_q8_0_avx512(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_q5_0_q8_0_avx512(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_q5_1_q8_1_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_q5_1_q8_1_avx512(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_q5_1_q8_1_avx512(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_q8_0_q8_0_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_q8_0_q8_0_avx512(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_q8_0_q8_0_avx512(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_f16_f32_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_f16_f32_avx512(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_f16_f32_avx512(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_f32_f32_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dotw4_f32_f32_avx512(int64_t n, const void *w, size_t wstride, const void *a, float *s);
void vec_dot24_f32_f32_avx512(int64_t n, const void *w, size_t wstride, const void *a, size_t astride, float *s);
void vec_dot4_q2_K_q8_K_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dot4_q3_K_q8_K_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dot4_q4_K_q8_K_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dot4_q5_K_q8_K_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s);
void vec_dot4_q6_K_q8_K_avx512(int64_t n, const void *w, const void *a, size_t astride, float *s);
#endif

/* ---- NEON twins (AArch64; qmatmul_neon.c): every dot twice, _neon on plain
 * NEON and _neon_dot on the dot-product extension (SDOT, call only when
 * cpu.h reports it); the quantized ones give their _ref twin's bits ---- */
#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(MEND_NO_SIMD)
#define MEND_QMATMUL_HAVE_NEON 1
void quantize_act_q8_0_neon(const float *x, void *y, int64_t n);
void quantize_act_q8_1_neon(const float *x, void *y, int64_t n);
void quantize_act_q8_K_neon(const float *x, void *y, int64_t n);
#define MEND_QMATMUL_NEON_DOTS(v)                                         \
    float vec_dot_q4_0_q8_0_##v(int64_t n, const void *w, const void *a); \
    float vec_dot_q4_1_q8_1_##v(int64_t n, const void *w, const void *a); \
    float vec_dot_q5_0_q8_0_##v(int64_t n, const void *w, const void *a); \
    float vec_dot_q5_1_q8_1_##v(int64_t n, const void *w, const void *a); \
    float vec_dot_q8_0_q8_0_##v(int64_t n, const void *w, const void *a); \
    float vec_dot_q2_K_q8_K_##v(int64_t n, const void *w, const void *a); \
    float vec_dot_q3_K_q8_K_##v(int64_t n, const void *w, const void *a); \
    float vec_dot_q4_K_q8_K_##v(int64_t n, const void *w, const void *a); \
    float vec_dot_q5_K_q8_K_##v(int64_t n, const void *w, const void *a); \
    float vec_dot_q6_K_q8_K_##v(int64_t n, const void *w, const void *a); \
    float vec_dot_f16_f32_##v(int64_t n, const void *w, const void *a);   \
    float vec_dot_f32_f32_##v(int64_t n, const void *w, const void *a);
MEND_QMATMUL_NEON_DOTS(neon)
MEND_QMATMUL_NEON_DOTS(neon_dot)
#endif

/* ---- dispatcher ----------------------------------------------------------- */

/* The activation type paired with a weight type (MEND_TYPE_Q8_0, _Q8_1,
 * _Q8_K or _F32), or -1 when there is no native kernel for it. */
int mend_qdot_act_type(uint32_t wtype);

typedef struct mend_qdot_kernel {
    uint32_t wtype, atype;
    int level;                      /* enum mend_simd_level actually used */
    int vnni;                       /* 1: the integer dot uses vpdpbusd */
    int sdot;                       /* 1: the integer dot uses SDOT (AArch64 dotprod) */
    mend_quantize_act_fn quantize;  /* NULL for f32 activations (used as is) */
    mend_vec_dot_fn dot;
    mend_vec_dot4_fn dot4;          /* tiles; each may be NULL at a level */
    mend_vec_dotw4_fn dotw4;
    mend_vec_dot24_fn dot24;
    int64_t blck;                   /* elements per weight / activation block */
    size_t w_block_bytes, a_block_bytes;
} mend_qdot_kernel;

/* Kernels for wtype at SIMD level min(level, what the CPU has); level < 0
 * means the widest available. Returns 0, or MEND_EUNSUPPORTED. */
int mend_qdot_kernel_get(uint32_t wtype, int level, mend_qdot_kernel *k);

/* ---- matmul ---------------------------------------------------------------
 * out[i][r] = dot(W[r], x[i])     (torch: out = x @ W.T)
 * x (n, cols) f32, W (rows, cols) packed in wtype -> out (n, rows).
 * x's rows are quantized once into the activation format; the weight rows are
 * split into one contiguous chunk per OpenMP thread (mend_get_threads()),
 * and each thread runs every activation row against its chunk, so W is
 * streamed once per call. Scratch is a per-calling-thread buffer reused
 * across calls (freed by mend_qmatmul_release_scratch). cols must be a
 * multiple of wtype's block size. out must not overlap x. */
int mend_qmatmul(float *out, const float *x, int n, const void *w, uint32_t wtype,
                 int64_t rows, int64_t cols);

/* The same with row strides (in floats, >= rows / >= cols), an explicit
 * scratch buffer of at least mend_qmatmul_scratch_size bytes (NULL: the
 * per-thread buffer), a thread count (<= 0: mend_get_threads()) and a SIMD
 * level (< 0: the widest available). */
int mend_qmatmul_ex(float *out, size_t ldo, const float *x, size_t ldx, int n,
                    const void *w, uint32_t wtype, int64_t rows, int64_t cols,
                    void *scratch, size_t scratch_bytes, int n_threads, int level);

/* Bytes of scratch mend_qmatmul_ex needs for n activation rows of cols
 * (0 on overflow or for an unsupported type / shape; f32/f16 weights need
 * none and also answer 0 — check mend_qdot_act_type first). */
size_t mend_qmatmul_scratch_size(uint32_t wtype, int n, int64_t cols);

/* Free the calling thread's reusable scratch buffer. */
void mend_qmatmul_release_scratch(void);

/* A product's activation buffer of need bytes: the caller's scratch (checked
 * to hold need bytes and be 4-byte aligned), or when *scratch is NULL the
 * thread's own buffer *tl (capacity *tl_cap), grown when short to
 * max(need, min_cap) rounded up to 64 bytes. who prefixes the errors. */
int mend_act_scratch(void **scratch, size_t scratch_bytes, size_t need, void **tl, size_t *tl_cap, size_t min_cap,
                     const char *who);

#endif
