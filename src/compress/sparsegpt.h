/* SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models
 * Can Be Accurately Pruned in One-Shot", Algorithm 1) on one matrix, alone
 * or jointly with quantization, and GPTQ that keeps a given mask.
 *
 * With H = 2/N X Xᵀ (dead inputs H_ii = 0 get H_ii = 1 and their weights
 * zeroed), λ = damp · mean(diag H) added to the diagonal, and U the upper
 * Cholesky factor of H⁻¹ (H⁻¹ = Uᵀ U), columns are visited left to right in
 * lazy batches of `block` (128) columns:
 *  - unstructured: at the start of a batch, the mask of the batch is the
 *    floor(ratio · rows · B) weights of the whole rows × B slab (all rows
 *    together, one threshold) with the lowest w² / U_cc², from the weights as
 *    updated so far (the paper's adaptive mask selection; the reference
 *    implementation also selects over the whole slab);
 *  - N:M: at every m-th column c of a row, the m - n weights of columns
 *    c..c+m-1 with the lowest w² / U_cc² (current weights) are pruned;
 * then each column k: q = 0 where pruned, else w (joint mode: q rounded onto
 * the target grid, pruned weights rounded as 0), err = (w - q) / U_kk,
 * W[:, k+1:] -= err · U[k, k+1:] (inside the batch at once, to the later
 * columns once per batch).
 *
 * Joint mode (opts.quantize): grids are fitted as in GPTQ (gptq.h) at a
 * block's first column, from the current weights with the weights already
 * known to be pruned set to zero. Pruned weights stay exactly zero in every
 * format whose grid holds 0 (q4_0, q5_0, q8_0, q3_K, q6_K, symmetric
 * generic grids, and any block of zeros); formats with a minimum (q4_1,
 * q5_1, q2_K, q4_K, q5_K, asymmetric generic) store the grid point nearest
 * to 0, which is 0 only when the block's offset allows it.
 *
 * A fixed mask (opts.fixed_mask) skips the selection: the sweep is GPTQ that
 * keeps the masked weights at zero, for pruning by any method followed by
 * GPTQ. */
#ifndef MEND_SPARSEGPT_H
#define MEND_SPARSEGPT_H

#include <stdint.h>
#include "compress/gptq.h"
#include "compress/prune.h"
#include "compress/quantize.h"

typedef struct mend_sparsegpt_opts {
    mend_sparsity sp;            /* target (ignored with fixed_mask) */
    const uint8_t *fixed_mask;   /* rows × cols, 1 = zero; NULL: choose the mask */
    int quantize;                /* 1: round the kept weights onto fmt in the same pass */
    mend_qfmt fmt;               /* target grid when quantize */
    double damp;                 /* 0 -> 0.01 */
    int block;                   /* lazy-batch width; 0 -> 128 (aligned to the format's blocks and to m) */
    int fit_importance;          /* 1: diag(H) as importance for the grid fits */
} mend_sparsegpt_opts;

typedef struct mend_sparsegpt_stats {
    double loss;      /* Σ (w - q)² / U_kk² / 2 */
    int64_t dead;     /* columns with H_ii = 0 */
    int64_t pruned;   /* weights in the mask */
    double damp;      /* λ actually added */
    int block;        /* lazy-batch width used */
} mend_sparsegpt_stats;

/* Prune (and with opts.quantize, quantize) W (rows × cols row-major f32) in
 * place. H (cols × cols row-major f64, e.g. from mend_hessian_get) is only
 * read. mask (may be NULL) receives the mask (1 = pruned); packed (may be
 * NULL; only with quantize) receives rows × mend_qfmt_row_size(fmt, cols)
 * bytes that dequantize exactly to the returned W. stats may be NULL. */
int mend_sparsegpt(float *W, int64_t rows, int64_t cols, const double *H, const mend_sparsegpt_opts *opts, uint8_t *mask,
                   void *packed, mend_sparsegpt_stats *stats);

/* GPTQ (opts as for mend_gptq_quantize; act-order is not supported here)
 * that keeps the weights where mask = 1 at zero (a ggml / generic grid
 * without 0 stores the nearest grid point, see above). H is only read. */
int mend_gptq_quantize_masked(float *W, int64_t rows, int64_t cols, const double *H, const mend_gptq_opts *opts,
                              const uint8_t *mask, void *packed, mend_gptq_stats *stats);

/* ---- one matrix of `mend compress` with pruning ---- */

/* enum mend_prune_method, mend_prune_opts, their names and
 * mend_prune_needs_calib are public (mend/compress.h). */

/* Prune W (rows × cols) by p, then store it in q->fmt: with gptq = 0 by
 * round-to-nearest (a float format: plain conversion, zeros stay zeros),
 * with gptq = 1 by GPTQ keeping the mask (q's options; act-order is not
 * supported), or for SparseGPT with p->joint by the joint pass. H (cols ×
 * cols, 2/N X Xᵀ) is only read; it may be NULL for magnitude with gptq = 0.
 * W is replaced by Ŵ, exactly what packed (rows × mend_qfmt_row_size
 * bytes) dequantizes to. loss (may be NULL) gets the error estimate of the
 * passes that compute one (SparseGPT, GPTQ) added. */
int mend_prune_compress(float *W, int64_t rows, int64_t cols, const double *H, const mend_prune_opts *p,
                        const mend_gptq_opts *q, int gptq, void *packed, double *loss);

#endif
