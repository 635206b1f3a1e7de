/* Quantizer dispatch, mend's generic grid format, and the per-block grid
 * view that GPTQ rounds onto (see quantize.h). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "compress/quantize.h"
#include "util/util.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif

/* ------------------------------------------------------------------------ */
/* generic grid                                                             */

/* GPTQ's min/max grid: the range [min(x,0), max(x,0)] (symmetric: ±max|x|)
 * split into 2^bits - 1 steps; the scale is stored as fp16 and the zero
 * point (the code of 0.0) is rounded from it. */
static void gen_params(int bits, int sym, const float *x, int64_t n, float *scale, int *zero) {
    const int maxq = (1 << bits) - 1;
    float xmin = 0.0f, xmax = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        if (x[i] < xmin) xmin = x[i];
        if (x[i] > xmax) xmax = x[i];
    }
    if (sym) {
        float a = -xmin > xmax ? -xmin : xmax;
        xmin = -a;
        xmax = a;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    float s = (xmax - xmin) / (float)maxq;
    if (!(s <= 65504.0f)) s = 65504.0f;   /* fp16 max; also NaN */
    s = mend_fp16_to_f32(mend_f32_to_fp16(s));
    *scale = s;
    if (sym) {
        *zero = (maxq + 1) / 2;
    } else if (s > 0.0f) {
        float z = rintf(-xmin / s);
        *zero = z < 0.0f ? 0 : z > (float)maxq ? maxq : (int)z;
    } else {
        *zero = 0;
    }
}

static void bits_put(uint8_t *p, int64_t j, int bits, unsigned v) {
    size_t bit = (size_t)j * (size_t)bits;
    for (int b = 0; b < bits; b++, bit++) {
        uint8_t m = (uint8_t)(1u << (bit & 7));
        if (v >> b & 1) p[bit >> 3] |= m;
        else p[bit >> 3] &= (uint8_t)~m;
    }
}


static void gen_grid(const mend_qfmt *f, int64_t n, float scale, int zero, mend_qgrid *g) {
    memset(g, 0, sizeof *g);
    g->n = n;
    g->sub = n;
    g->qmax = (1 << f->bits) - 1;
    g->step[0] = scale;
    g->zero[0] = zero;
    g->bias[0] = -0.0f;
}

static void gen_write_hdr(uint8_t *blk, float scale, int zero) {
    const uint16_t h = mend_f32_to_fp16(scale);
    memcpy(blk, &h, 2);
    blk[2] = (uint8_t)zero;
    blk[3] = 0;
}

static void gen_quantize_block(const mend_qfmt *f, const float *x, int64_t n, uint8_t *blk, mend_qgrid *g) {
    float scale;
    int zero;
    gen_params(f->bits, f->sym, x, n, &scale, &zero);
    gen_write_hdr(blk, scale, zero);
    gen_grid(f, n, scale, zero, g);
    uint8_t *q = blk + MEND_QFMT_GEN_HDR;
    memset(q, 0, (size_t)n * (size_t)f->bits / 8);
    for (int64_t j = 0; j < n; j++) bits_put(q, j, f->bits, (unsigned)mend_qgrid_code(g, j, x[j]));
}

/* ------------------------------------------------------------------------ */
/* ggml grids                                                               */

/* The grid described by a packed ggml block. */
static void ggml_grid(uint32_t type, const void *blk, mend_qgrid *g) {
    memset(g, 0, sizeof *g);
    for (int j = 0; j < MEND_QGRID_MAXSUB; j++) g->bias[j] = -0.0f;   /* x + -0 == x, keeping the sign of zero */
    switch (type) {
    case MEND_TYPE_Q4_0: case MEND_TYPE_Q5_0: case MEND_TYPE_Q8_0: {
        const mend_half d = *(const mend_half *)blk;   /* d is the first field of all three */
        g->n = g->sub = 32;
        g->qmax = type == MEND_TYPE_Q4_0 ? 15 : type == MEND_TYPE_Q5_0 ? 31 : 255;
        g->zero[0] = (g->qmax + 1) / 2;
        g->step[0] = mend_fp16_to_f32(d);
        break;
    }
    case MEND_TYPE_Q4_1: case MEND_TYPE_Q5_1: {
        const mend_half *dm = blk;   /* d, m first in both */
        g->n = g->sub = 32;
        g->qmax = type == MEND_TYPE_Q4_1 ? 15 : 31;
        g->step[0] = mend_fp16_to_f32(dm[0]);
        g->bias[0] = mend_fp16_to_f32(dm[1]);
        break;
    }
    case MEND_TYPE_Q2_K: {
        const block_q2_K *b = blk;
        const float d = mend_fp16_to_f32(b->d), dmin = mend_fp16_to_f32(b->dmin);
        g->n = QK_K;
        g->sub = 16;
        g->qmax = 3;
        for (int j = 0; j < 16; j++) {
            g->step[j] = d * (float)(b->scales[j] & 0xF);
            g->bias[j] = -(dmin * (float)(b->scales[j] >> 4));
        }
        break;
    }
    case MEND_TYPE_Q3_K: {
        const block_q3_K *b = blk;
        const float d = mend_fp16_to_f32(b->d);
        g->n = QK_K;
        g->sub = 16;
        g->qmax = 7;
        for (int j = 0; j < 16; j++) {
            g->step[j] = d * (float)mend_q3k_scale(b->scales, j);
            g->zero[j] = 4;
        }
        break;
    }
    case MEND_TYPE_Q4_K: case MEND_TYPE_Q5_K: {
        const block_q4_K *b4 = blk;
        const block_q5_K *b5 = blk;
        const uint8_t *sc12 = type == MEND_TYPE_Q4_K ? b4->scales : b5->scales;
        const float d = mend_fp16_to_f32(type == MEND_TYPE_Q4_K ? b4->d : b5->d);
        const float dmin = mend_fp16_to_f32(type == MEND_TYPE_Q4_K ? b4->dmin : b5->dmin);
        g->n = QK_K;
        g->sub = 32;
        g->qmax = type == MEND_TYPE_Q4_K ? 15 : 31;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            mend_get_scale_min_k4(j, sc12, &sc, &m);
            g->step[j] = d * (float)sc;
            g->bias[j] = -(dmin * (float)m);
        }
        break;
    }
    case MEND_TYPE_Q6_K: {
        const block_q6_K *b = blk;
        const float d = mend_fp16_to_f32(b->d);
        g->n = QK_K;
        g->sub = 16;
        g->qmax = 63;
        for (int j = 0; j < 16; j++) {
            g->step[j] = d * (float)b->scales[j];
            g->zero[j] = 32;
        }
        break;
    }
    default:
        break;
    }
}

static void pack_nibbles(uint8_t *qs, const uint8_t *L) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((L[j] & 0xF) | (L[j + 16] << 4));
}

static void pack_q5(uint8_t *qs, uint8_t *qh4, const uint8_t *L) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((L[j] & 0xF) | ((L[j + 16] & 0xF) << 4));
        qh |= (uint32_t)(L[j] >> 4 & 1) << j;
        qh |= (uint32_t)(L[j + 16] >> 4 & 1) << (j + 16);
    }
    for (int b = 0; b < 4; b++) qh4[b] = (uint8_t)(qh >> (8 * b));
}

int mend_qgrid_pack(const mend_qfmt *f, void *blk, const uint8_t *codes, int64_t n) {
    if (!f || !blk || !codes) return mend_set_error(MEND_EINVAL, "quantize: NULL block or codes");
    if (f->type == MEND_QFMT_GENERIC) {
        uint8_t *q = (uint8_t *)blk + MEND_QFMT_GEN_HDR;
        const unsigned qmax = (1u << f->bits) - 1;
        for (int64_t j = 0; j < n; j++) {
            if (codes[j] > qmax) return mend_set_error(MEND_ERANGE, "quantize: code %u > %u at element %lld", codes[j], qmax, (long long)j);
            bits_put(q, j, f->bits, codes[j]);
        }
        return 0;
    }
    const int64_t want = mend_qfmt_block_elems(f, n);
    if (n != want) return mend_set_error(MEND_EINVAL, "quantize: %lld codes for a %s block of %lld", (long long)n, mend_type_name(f->type), (long long)want);
    switch (f->type) {
    case MEND_TYPE_Q4_0: pack_nibbles(((block_q4_0 *)blk)->qs, codes); return 0;
    case MEND_TYPE_Q4_1: pack_nibbles(((block_q4_1 *)blk)->qs, codes); return 0;
    case MEND_TYPE_Q5_0: pack_q5(((block_q5_0 *)blk)->qs, ((block_q5_0 *)blk)->qh, codes); return 0;
    case MEND_TYPE_Q5_1: pack_q5(((block_q5_1 *)blk)->qs, ((block_q5_1 *)blk)->qh, codes); return 0;
    case MEND_TYPE_Q8_0:
        for (int j = 0; j < 32; j++) ((block_q8_0 *)blk)->qs[j] = (int8_t)((int)codes[j] - 128);
        return 0;
    case MEND_TYPE_Q2_K: mend_pack_q2_K(blk, codes); return 0;
    case MEND_TYPE_Q3_K: mend_pack_q3_K(blk, codes); return 0;
    case MEND_TYPE_Q4_K: mend_pack_q4_K(blk, codes); return 0;
    case MEND_TYPE_Q5_K: mend_pack_q5_K(blk, codes); return 0;
    case MEND_TYPE_Q6_K: mend_pack_q6_K(blk, codes); return 0;
    default:
        return mend_set_error(MEND_EUNSUPPORTED, "quantize: type %s has no grid", mend_type_name(f->type));
    }
}

int mend_qgrid_fit(const mend_qfmt *f, const float *x, int64_t n, const float *importance, void *blk, mend_qgrid *g) {
    if (!f || !x || !blk || !g) return mend_set_error(MEND_EINVAL, "quantize: NULL argument to the grid fit");
    if (f->type == MEND_QFMT_GENERIC) {
        int rc = mend_qfmt_check(f, n);
        if (rc) return rc;
        if (f->group > 0 && n != f->group)
            return mend_set_error(MEND_EINVAL, "quantize: a generic block of %lld weights for group size %d", (long long)n, f->group);
        gen_quantize_block(f, x, n, blk, g);
        return 0;
    }
    if (!mend_qfmt_is_ggml_quant(f->type))
        return mend_set_error(MEND_EUNSUPPORTED, "quantize: type %s has no grid", mend_type_name(f->type));
    const int64_t want = mend_qfmt_block_elems(f, n);
    if (n != want) return mend_set_error(MEND_EINVAL, "quantize: a %s block holds %lld weights, not %lld", mend_type_name(f->type), (long long)want, (long long)n);
    int rc = mend_quantize_row(f->type, x, blk, n, importance);
    if (rc) return rc;
    ggml_grid(f->type, blk, g);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* rows                                                                     */

static int finite_row(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

int mend_quantize_row(uint32_t type, const float *x, void *y, int64_t n, const float *imp) {
    mend_qfmt f = mend_qfmt_ggml(type);
    int rc = mend_qfmt_check(&f, n);
    if (rc) return rc;
    if (!x || !y) return mend_set_error(MEND_EINVAL, "quantize %s: NULL source or destination", mend_type_name(type));
    if (!finite_row(x, n))
        return mend_set_error(MEND_EINVAL, "quantize %s: the row holds a NaN or infinite weight", mend_type_name(type));
    switch (type) {
    case MEND_TYPE_F32: memmove(y, x, (size_t)n * sizeof(float)); return 0;
    case MEND_TYPE_F16:
        for (int64_t i = 0; i < n; i++) ((mend_half *)y)[i] = mend_f32_to_fp16(x[i]);
        return 0;
    case MEND_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)y)[i] = mend_f32_to_bf16(x[i]);
        return 0;
    default: break;
    }
    if (imp) {
        switch (type) {
        case MEND_TYPE_Q4_0: mend_quantize_row_q4_0_imp(x, y, n, imp); return 0;
        case MEND_TYPE_Q4_1: mend_quantize_row_q4_1_imp(x, y, n, imp); return 0;
        case MEND_TYPE_Q5_0: mend_quantize_row_q5_0_imp(x, y, n, imp); return 0;
        case MEND_TYPE_Q5_1: mend_quantize_row_q5_1_imp(x, y, n, imp); return 0;
        case MEND_TYPE_Q8_0: mend_quantize_row_q8_0_imp(x, y, n, imp); return 0;
        case MEND_TYPE_Q2_K: mend_quantize_row_q2_K_imp(x, y, n, imp); return 0;
        case MEND_TYPE_Q3_K: mend_quantize_row_q3_K_imp(x, y, n, imp); return 0;
        case MEND_TYPE_Q4_K: mend_quantize_row_q4_K_imp(x, y, n, imp); return 0;
        case MEND_TYPE_Q5_K: mend_quantize_row_q5_K_imp(x, y, n, imp); return 0;
        case MEND_TYPE_Q6_K: mend_quantize_row_q6_K_imp(x, y, n, imp); return 0;
        default: break;
        }
    }
    switch (type) {
    case MEND_TYPE_Q4_0: quantize_row_q4_0_ref(x, y, n); return 0;
    case MEND_TYPE_Q4_1: quantize_row_q4_1_ref(x, y, n); return 0;
    case MEND_TYPE_Q5_0: quantize_row_q5_0_ref(x, y, n); return 0;
    case MEND_TYPE_Q5_1: quantize_row_q5_1_ref(x, y, n); return 0;
    case MEND_TYPE_Q8_0: quantize_row_q8_0_ref(x, y, n); return 0;
    case MEND_TYPE_Q2_K: quantize_row_q2_K_ref(x, y, n); return 0;
    case MEND_TYPE_Q3_K: quantize_row_q3_K_ref(x, y, n); return 0;
    case MEND_TYPE_Q4_K: quantize_row_q4_K_ref(x, y, n); return 0;
    case MEND_TYPE_Q5_K: quantize_row_q5_K_ref(x, y, n); return 0;
    case MEND_TYPE_Q6_K: quantize_row_q6_K_ref(x, y, n); return 0;
    default: return mend_set_error(MEND_EUNSUPPORTED, "quantize: type %s has no quantizer", mend_type_name(type));
    }
}

int mend_quantize_row_fmt(const mend_qfmt *f, const float *x, void *y, int64_t n, const float *importance) {
    if (!f) return mend_set_error(MEND_EINVAL, "quantize: NULL format");
    if (f->type != MEND_QFMT_GENERIC) return mend_quantize_row(f->type, x, y, n, importance);
    int rc = mend_qfmt_check(f, n);
    if (rc) return rc;
    if (!x || !y) return mend_set_error(MEND_EINVAL, "quantize: NULL source or destination");
    if (!finite_row(x, n)) return mend_set_error(MEND_EINVAL, "quantize: the row holds a NaN or infinite weight");
    const int64_t g = mend_qfmt_block_elems(f, n);
    const size_t bb = mend_qfmt_block_bytes(f, n);
    mend_qgrid grid;
    for (int64_t b = 0; b < n / g; b++) gen_quantize_block(f, x + b * g, g, (uint8_t *)y + (size_t)b * bb, &grid);
    return 0;
}
