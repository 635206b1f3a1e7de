/* Weight quantization for `mend compress`.
 *
 * Two families of formats:
 *  - ggml block types (q8_0, q5_0, q5_1, q4_0, q4_1, q6_K, q5_K, q4_K, q3_K,
 *    q2_K): llama.cpp runs what we write. Quantizers follow ggml's reference
 *    grids bit for bit.
 *  - mend's generic grid: `bits` 2/3/4/8, a scale and an integer zero per
 *    group of `group` weights of a row (32/64/128, or the whole row), the
 *    min/max grid of the GPTQ paper, symmetric or asymmetric. mend-only;
 *    GGUF storage is described in docs/formats.md (ggml type I8 rows of
 *    self-contained groups plus mend.quant.* metadata).
 *
 * The "grid" view lets GPTQ quantize one column at a time: when a block
 * (ggml block or generic group) starts, mend_qgrid_fit computes the block's
 * parameters (scales, mins, super-block scales) from the weights as they are
 * then, writes them into the packed block and returns the grid; every later
 * column of the block is rounded onto that fixed grid with mend_qgrid_code,
 * whose value mend_qgrid_value reproduces the dequantizer exactly; the codes
 * are written into the packed block at the end with mend_qgrid_pack. */
#ifndef MEND_QUANTIZE_H
#define MEND_QUANTIZE_H

#include <math.h>
#include <stdint.h>
#include "kernels/qfmt.h"
#include "kernels/quants.h"

/* The formats themselves (sizes, names, GGUF metadata, the generic
 * dequantizer) are in kernels/qfmt.h. */

/* Round-to-nearest quantization of one row of n weights (n a multiple of the
 * block size) into y (mend_row_size / mend_qfmt_row_size bytes).
 * importance: optional per-weight importance (e.g. diag of X Xᵀ); with NULL
 * the ggml types are bit-identical to ggml's reference quantizers. With
 * importance, the weighted fits of ggml's imatrix quantizers are used
 * (legacy and K types); the generic format ignores it. */
int mend_quantize_row(uint32_t type, const float *x, void *y, int64_t n, const float *importance);
int mend_quantize_row_fmt(const mend_qfmt *f, const float *x, void *y, int64_t n, const float *importance);

/* ---- the grid of one block ---- */
#define MEND_QGRID_MAXSUB 16
typedef struct mend_qgrid {
    int64_t n;          /* weights in the block */
    int64_t sub;        /* consecutive weights sharing one (step, zero, bias) */
    int32_t qmax;       /* codes are 0..qmax */
    int32_t zero[MEND_QGRID_MAXSUB];
    float step[MEND_QGRID_MAXSUB];
    float bias[MEND_QGRID_MAXSUB];
} mend_qgrid;

/* Fit the parameters of one block from its current weights x[0..n) (n =
 * mend_qfmt_block_elems), write them into the packed block blk
 * (mend_qfmt_block_bytes; codes of the round-to-nearest fit are written
 * too) and describe the resulting grid in g. importance may be NULL. */
int mend_qgrid_fit(const mend_qfmt *f, const float *x, int64_t n, const float *importance, void *blk, mend_qgrid *g);
/* Write codes[0..n) of one block into blk, keeping the block's parameters. */
int mend_qgrid_pack(const mend_qfmt *f, void *blk, const uint8_t *codes, int64_t n);

/* Value of code q at element j of the block: step*(q - zero) + bias, the
 * exact float the dequantizer produces (formats without an offset use
 * bias = -0.0f, which leaves every product unchanged, signed zeros too). */
static inline float mend_qgrid_value(const mend_qgrid *g, int64_t j, int q) {
    const int64_t s = j / g->sub;
    return g->step[s] * (float)(q - g->zero[s]) + g->bias[s];
}
/* Nearest code to v at element j of the block (ties to even). */
static inline int mend_qgrid_code(const mend_qgrid *g, int64_t j, float v) {
    const int64_t s = j / g->sub;
    const float st = g->step[s];
    if (!(st != 0.0f)) return g->zero[s] < 0 ? 0 : g->zero[s] > g->qmax ? g->qmax : g->zero[s];
    float t = (v - g->bias[s]) / st;
    if (!(t > -4194304.0f)) t = -4194304.0f;   /* also catches NaN */
    if (t > 4194304.0f) t = 4194304.0f;
    int q = (int)rintf(t) + g->zero[s];
    return q < 0 ? 0 : q > g->qmax ? g->qmax : q;
}

/* ---- K-quant reference quantizers (quantize_k.c) ---- */
void quantize_row_q2_K_ref(const float *x, block_q2_K *y, int64_t k);
void quantize_row_q3_K_ref(const float *x, block_q3_K *y, int64_t k);
void quantize_row_q4_K_ref(const float *x, block_q4_K *y, int64_t k);
void quantize_row_q5_K_ref(const float *x, block_q5_K *y, int64_t k);
void quantize_row_q6_K_ref(const float *x, block_q6_K *y, int64_t k);
/* with importance weights qw (n per row); a whole row at a time */
void mend_quantize_row_q2_K_imp(const float *x, block_q2_K *y, int64_t n, const float *qw);
void mend_quantize_row_q3_K_imp(const float *x, block_q3_K *y, int64_t n, const float *qw);
void mend_quantize_row_q4_K_imp(const float *x, block_q4_K *y, int64_t n, const float *qw);
void mend_quantize_row_q5_K_imp(const float *x, block_q5_K *y, int64_t n, const float *qw);
void mend_quantize_row_q6_K_imp(const float *x, block_q6_K *y, int64_t n, const float *qw);
void mend_quantize_row_q4_0_imp(const float *x, block_q4_0 *y, int64_t n, const float *qw);
void mend_quantize_row_q4_1_imp(const float *x, block_q4_1 *y, int64_t n, const float *qw);
void mend_quantize_row_q5_0_imp(const float *x, block_q5_0 *y, int64_t n, const float *qw);
void mend_quantize_row_q5_1_imp(const float *x, block_q5_1 *y, int64_t n, const float *qw);
void mend_quantize_row_q8_0_imp(const float *x, block_q8_0 *y, int64_t n, const float *qw);

/* block code packers: L holds QK_K unsigned codes */
void mend_pack_q2_K(block_q2_K *y, const uint8_t *L);
void mend_pack_q3_K(block_q3_K *y, const uint8_t *L);
void mend_pack_q4_K(block_q4_K *y, const uint8_t *L);
void mend_pack_q5_K(block_q5_K *y, const uint8_t *L);
void mend_pack_q6_K(block_q6_K *y, const uint8_t *L);
void mend_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m);
int mend_q3k_scale(const uint8_t *scales12, int j);

#endif
