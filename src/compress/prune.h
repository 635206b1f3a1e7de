/* Weight pruning on one matrix: magnitude and Wanda (no weight update), and
 * the shared pieces of every pruning method (sparsity targets, masks,
 * selection of the lowest scores). SparseGPT, which updates the remaining
 * weights, is in sparsegpt.h.
 *
 * W is rows × cols row-major f32, rows = out-features, cols = in-features
 * (a linear layer y = W x). A mask is rows × cols bytes, 1 = pruned (the
 * weight is zero), 0 = kept.
 *
 * Targets (mend_sparsity):
 *  - unstructured: a fraction `ratio` of the weights is pruned;
 *  - N:M (m > 0): in every group of m consecutive inputs of a row (columns
 *    0..m-1, m..2m-1, ...) the n highest-scoring weights are kept and the
 *    m - n others pruned ("2:4": keep 2 of 4, 50%).
 *
 * Which weights go:
 *  - magnitude: score |W_ij|; unstructured with one threshold per matrix
 *    (the floor(ratio · rows · cols) lowest scores of the matrix), N:M per
 *    group.
 *  - Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for
 *    Large Language Models"): score |W_ij| · ‖X_j‖₂, with ‖X_j‖₂ the norm of
 *    input feature j over the calibration tokens; compared within each row
 *    (floor(ratio · cols) pruned per row), N:M per group.
 * Ties are broken by position: among equal scores the weight that comes
 * first (row-major) is pruned first, so results are deterministic. */
#ifndef MEND_PRUNE_H
#define MEND_PRUNE_H

#include <stddef.h>
#include <stdint.h>
#include "io/gguf.h"

/* mend_sparsity, its constructors, parse and name are public (mend/compress.h). */
/* Check that s applies to rows of cols inputs (N:M: m divides cols). */
int mend_sparsity_check(const mend_sparsity *s, int64_t cols);

/* Magnitude pruning: zero the pruned weights of W in place. mask (may be
 * NULL) receives the mask. */
int mend_prune_magnitude(float *W, int64_t rows, int64_t cols, const mend_sparsity *s, uint8_t *mask);

/* Wanda: xnorm[0..cols) holds ‖X_j‖₂ (any common positive factor gives the
 * same mask, so sqrt of the Hessian diagonal does). */
int mend_prune_wanda(float *W, int64_t rows, int64_t cols, const float *xnorm, const mend_sparsity *s, uint8_t *mask);

/* xnorm[j] = sqrt(H_jj) for a Hessian H = 2/N X Xᵀ (cols × cols row-major,
 * e.g. from mend_hessian_get): ‖X_j‖₂ up to the factor sqrt(2/N). */
int mend_wanda_norms_from_hessian(const double *H, int64_t cols, float *xnorm);

/* ---- shared by the pruning methods ---- */

/* Mark in mask[0..n) (1 = pruned) the k entries with the lowest scores
 * (scores >= 0, not NaN); ties go to the lower index. n < 2^32. keys is
 * scratch for n entries. */
void mend_prune_select(const float *score, int64_t n, int64_t k, uint8_t *mask, uint64_t *keys);

/* N:M: in every group of m consecutive entries of score[0..cols) (m <= 256
 * divides cols) mark the m - n lowest (ties to the lower index). */
void mend_prune_select_nm(const float *score, int64_t cols, int n, int m, uint8_t *mask);

/* Exact zeros among x[0..n). */
int64_t mend_count_zeros(const float *x, int64_t n);

/* Exact zeros of tensor t of g after dequantization (*zeros of *n values),
 * for `mend info --sparsity`. I8 tensors are read in mend's generic format
 * when g declares one (docs/formats.md). MEND_EUNSUPPORTED for a type mend
 * cannot dequantize. */
int mend_gguf_tensor_zeros(const mend_gguf *g, const gguf_tensor *t, int64_t *zeros, int64_t *n);

#endif
