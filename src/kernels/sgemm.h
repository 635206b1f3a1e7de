/* f32 matrix product out (n, ldo) = beta * out + x (n, k) · Wᵀ with W (m, k)
 * row-major, on mend's own kernels (single-threaded per call): AVX-512,
 * AVX2 + FMA or portable C, whichever mend_cpu_simd_level() allows, all
 * three giving the same bits (each output element is one fused
 * multiply-add chain in a fixed order; see sgemm.c), so a batched product
 * equals its rows taken alone on every CPU.
 *
 * Why: the BLAS a build links may be pinned to narrower kernels than the CPU
 * has (OpenBLAS with OPENBLAS_CORETYPE=Haswell runs AVX2 sgemm at about half
 * the AVX-512 rate), and every product of the forward has this one shape: a
 * batch of rows times a large weight matrix. x is packed once per product
 * (mend_sgemm_pack_xt, shareable by the threads that each take a range of
 * W's rows); W is used in place. */
#ifndef MEND_SGEMM_H
#define MEND_SGEMM_H

#include <stddef.h>

/* Non-zero: the products run on every CPU (the portable kernel where there
 * is no SIMD). Kept so callers size their packing buffers in one place. */
int mend_sgemm_available(void);
/* Floats of the packed form of an (n, k) x. */
size_t mend_sgemm_xt_floats(int n, int k);
/* Pack row blocks [b0, b1) (of 32 rows each) of x (n, k; row stride ldx). */
void mend_sgemm_pack_xt(float *xt, const float *x, size_t ldx, int n, int k, int b0, int b1);
/* out (n, ldo) = beta * out + x · W[0..m)ᵀ from the packed xt (64-byte
 * aligned); W row stride ldw. Returns non-zero (nothing done) for an empty
 * shape. */
int mend_sgemm_xt(float *out, size_t ldo, const float *xt, int n, const float *W, size_t ldw, int m, int k,
                  float beta);

/* mend_sgemm_xt for a small x (n, k; row stride ldx) packed on the fly into
 * the calling thread's buffer (see mend_sgemm_nn): attention's blocks. */
int mend_sgemm_nt(float *out, size_t ldo, const float *x, size_t ldx, int n, const float *W, size_t ldw, int m,
                  int k, float beta);

/* out (n, ldo) = beta * out + a (n, m; row stride lda) · W (m, k; row stride
 * ldw), both row-major: the product of the backward pass, dX = dY · W. W is
 * taken 512 rows at a time and packed into strips of 32 columns (a
 * sequential read; the copy lives in a per-thread buffer of 512 x k floats
 * rounded up, kept for the thread's life); each strip then meets the rows of
 * a, one tile of rows at a time. Each output element is the sum over m in order.
 * Returns non-zero (nothing done) for an empty shape or when the buffer
 * cannot be allocated (callers then fall back to BLAS). */
int mend_sgemm_nn(float *out, size_t ldo, const float *a, size_t lda, int n, const float *W, size_t ldw, int m,
                  int k, float beta);

/* Floats of W (m, k) packed whole for mend_sgemm_nn_packed. */
size_t mend_sgemm_wp_floats(int m, int k);
/* W (m, k; row stride ldw) -> wp: strips of 32 columns one after the other,
 * each m rows of 32 floats (zero past k); the layout mend_sgemm_nn packs
 * into per block of rows, here for the whole matrix (frozen weights are
 * packed once and reused by every product). */
void mend_sgemm_pack_w(float *wp, const float *W, size_t ldw, int m, int k);
/* mend_sgemm_nn on a packed W: out's columns [32 s0, min(32 s1, k)) only
 * (out and a as in mend_sgemm_nn; out points at column 0), the same blocks
 * and summation order, so the result is bit-identical to mend_sgemm_nn's. */
int mend_sgemm_nn_packed(float *out, size_t ldo, const float *a, size_t lda, int n, const float *wp, int m, int k,
                         int s0, int s1, float beta);

/* out (n, ldo) = beta * out + aᵀ · W with a (m, n; row stride lda) and W
 * (m, k; row stride ldw): mend_sgemm_nn reading a by columns (attention's
 * dV += Pᵀ dO and dK += dSᵀ Q). */
int mend_sgemm_tn(float *out, size_t ldo, const float *a, size_t lda, int n, const float *W, size_t ldw, int m,
                  int k, float beta);

#endif
