/* The NEON kernels of sgemm.c (AArch64 only; private to kernels/). Their
 * arguments are those of sgemm.c's xt_block_fn and nn_tile_fn; each output
 * element is the same chain of fused multiply-adds, in the same order, as in
 * the portable kernels, so every level gives the same bits. */
#ifndef MEND_SGEMM_NEON_H
#define MEND_SGEMM_NEON_H

#include <stddef.h>

/* Columns per x · Wᵀ block and rows per a · W tile of the NEON kernels. */
#define MEND_SGEMM_NEON_COLS 6
#define MEND_SGEMM_NEON_ROWS 6

/* sgemm.c's one epilogue of x · Wᵀ: out rows [0, mr) x columns [0, nc) from
 * the sums tile[c * 32 + r], stored (beta 0) or fma(beta, out, sum). */
void mend_sgemm_xt_store(float *out, size_t ldo, const float *tile, int mr, int nc, float beta);

#if defined(__aarch64__) && defined(__ARM_NEON)
void mend_sgemm_xt_block_neon(float *out, size_t ldo, const float *xtb, const float *W, size_t ldw, int k, int mr,
                              int nc, float beta);
void mend_sgemm_nn_tile_neon(float *out, size_t ldo, const float *a, size_t sr, size_t sm, int mr, const float *W,
                             int len, int nc, int mode, float beta);
#endif

#endif
