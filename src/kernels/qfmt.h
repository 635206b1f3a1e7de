/* Weight formats as stored: the ggml block types and mend's generic grid
 * (`bits` 2/3/4/8, a scale and an integer zero per group of `group` weights
 * of a row, or the whole row; docs/formats.md), their block and row sizes,
 * names, GGUF metadata, and the generic dequantizer. Below the model loader
 * and the quantizers (compress/quantize.h), which both read them. */
#ifndef MEND_KERNELS_QFMT_H
#define MEND_KERNELS_QFMT_H

#include <stddef.h>
#include <stdint.h>
#include "mend.h"
#include "io/gguf.h"
#include "kernels/quants.h"

/* mend_qfmt, MEND_QFMT_GENERIC and their constructors are public (mend/compress.h). */
/* ggml's I8 type id: the GGUF tensor type that holds generic rows */
#define MEND_TYPE_I8 24u

/* Check that f can quantize rows of ncols weights (explains why not). */
int mend_qfmt_check(const mend_qfmt *f, int64_t ncols);
/* Weights per block (ggml block / generic group) for rows of ncols. */
int64_t mend_qfmt_block_elems(const mend_qfmt *f, int64_t ncols);
/* Bytes per packed block, and per packed row of ncols weights (0 if invalid). */
size_t mend_qfmt_block_bytes(const mend_qfmt *f, int64_t ncols);
size_t mend_qfmt_row_size(const mend_qfmt *f, int64_t ncols);
/* Column count of a generic row of row_bytes bytes (-1 if inconsistent). */
int64_t mend_qfmt_cols_from_row_bytes(const mend_qfmt *f, size_t row_bytes);
/* The GGUF tensor type that stores rows of f: the ggml type, or I8. */
uint32_t mend_qfmt_gguf_type(const mend_qfmt *f);

/* The format to use for rows of ncols weights: f itself when it fits,
 * otherwise llama.cpp's fallback for K types whose 256-weight super-blocks
 * do not divide the row (e.g. dim 576): q4_K -> q5_0, q5_K -> q5_1,
 * q6_K -> q8_0, and q2_K / q3_K -> q4_0 (llama.cpp uses iq4_nl, which mend
 * does not write). Returns 0 with *out set, or the error of mend_qfmt_check
 * when no fallback fits either. */
int mend_qfmt_fallback(const mend_qfmt *f, int64_t ncols, mend_qfmt *out);

/* GGUF metadata of a generic format (mend.quant.format/bits/group/sym, see
 * docs/formats.md); a no-op for ggml types. read_meta sets *f to the generic
 * format when the file declares one, and returns 0 with *found = 0 otherwise. */
int mend_qfmt_write_meta(mend_gguf_writer *w, const mend_qfmt *f);
int mend_qfmt_read_meta(const mend_gguf *g, mend_qfmt *f, int *found);

/* Is t a ggml block type mend quantizes into (q4_0 .. q6_K)? */
int mend_qfmt_is_ggml_quant(uint32_t t);

/* A generic group: fp16 scale, u8 zero, u8 reserved (0), then the codes,
 * bits per weight, little-endian bit order. */
#define MEND_QFMT_GEN_HDR 4
static inline unsigned mend_qfmt_bits_get(const uint8_t *p, int64_t j, int bits) {
    size_t bit = (size_t)j * (size_t)bits;
    unsigned v = 0;
    for (int b = 0; b < bits; b++, bit++) v |= (unsigned)(p[bit >> 3] >> (bit & 7) & 1) << b;
    return v;
}

/* One row of n weights of format f back to f32 (ggml types through
 * mend_dequantize_row). */
int mend_dequantize_row_fmt(const mend_qfmt *f, const void *y, float *x, int64_t n);

#endif
