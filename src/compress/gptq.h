/* GPTQ (Frantar et al., 2022, Algorithm 1) on one weight matrix.
 *
 * Columns of W (input features) are quantized one at a time; the error of
 * each is spread over the not-yet-quantized columns through the upper
 * Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ U):
 *     err = (w_k - q_k) / U_kk;   W[:, k+1:] -= err · U[k, k+1:]
 * with lazy batches of `block` columns (the trailing columns are updated
 * once per batch, a tile of rows at a time).
 *
 * Grids: the target format's blocks (ggml blocks of 32 / 256, generic groups
 * of `group` weights, or whole rows) are fitted with mend_qgrid_fit when the
 * quantization reaches the block's first column, from the weights as updated
 * so far; the block's later columns are rounded onto that fixed grid.
 *
 * Act-order (columns by descending diag(H)) visits columns out of order, so
 * a block's first column is no longer reached first. As in the reference
 * implementation's `static_groups` mode, every block's grid is then fitted
 * up front from the original weights (after dead-column zeroing), and each
 * column uses the grid of the contiguous block it belongs to — the only
 * choice that keeps the contiguous blocks ggml formats need. */
#ifndef MEND_GPTQ_H
#define MEND_GPTQ_H

#include <stdint.h>
#include "compress/quantize.h"

typedef struct mend_gptq_opts {
    mend_qfmt fmt;          /* target format */
    double damp;            /* λ = damp · mean(diag H) added to the diagonal; 0 -> 0.01 */
    int block;              /* lazy-batch width; 0 -> 128 (adjusted to align with the format's blocks) */
    int act_order;          /* 1: descending diag(H) order with static grids */
    int fit_importance;     /* 1: pass diag(H) as importance to the block fits (ggml types' imatrix fits) */
} mend_gptq_opts;

typedef struct mend_gptq_stats {
    double loss;            /* Σ (w - q)² / U_kk² / 2, the paper's per-layer error estimate */
    int64_t dead;           /* columns with H_ii = 0 (zeroed) */
    double damp;            /* λ actually added (raised ×10, at most 3 times, while H + λI is not positive definite) */
    int block;              /* lazy-batch width used */
} mend_gptq_stats;

/* Quantize W (rows × cols, row-major f32; rows = out-features) in place: on
 * return W holds the dequantized weights Ŵ. H (cols × cols, row-major f64,
 * e.g. from mend_hessian_get) is used as scratch and overwritten.
 * packed (may be NULL) receives rows × mend_qfmt_row_size(fmt, cols) bytes,
 * whose dequantization equals Ŵ exactly. stats may be NULL. */
int mend_gptq_quantize(float *W, int64_t rows, int64_t cols, double *H, const mend_gptq_opts *opts,
                       void *packed, mend_gptq_stats *stats);

/* Round-to-nearest on the same grids (no error feedback), for comparison:
 * W is replaced by its dequantized RTN weights; packed may be NULL. */
int mend_rtn_quantize(float *W, int64_t rows, int64_t cols, const mend_qfmt *fmt, void *packed);

#endif
