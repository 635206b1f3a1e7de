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

/* generic group header: fp16 scale, u8 zero, u8 reserved (0) */
#define GEN_HDR 4

static int is_ggml_quant(uint32_t t) {
    switch (t) {
    case MEND_TYPE_Q4_0: case MEND_TYPE_Q4_1: case MEND_TYPE_Q5_0: case MEND_TYPE_Q5_1: case MEND_TYPE_Q8_0:
    case MEND_TYPE_Q2_K: case MEND_TYPE_Q3_K: case MEND_TYPE_Q4_K: case MEND_TYPE_Q5_K: case MEND_TYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

static int is_float_type(uint32_t t) { return t == MEND_TYPE_F32 || t == MEND_TYPE_F16 || t == MEND_TYPE_BF16; }

/* ------------------------------------------------------------------------ */
/* formats                                                                  */

int mend_qfmt_check(const mend_qfmt *f, int64_t ncols) {
    if (!f) return mend_set_error(MEND_EINVAL, "quantize: NULL format");
    char name[64];
    mend_qfmt_name(f, name, sizeof name);
    if (ncols <= 0) return mend_set_error(MEND_EINVAL, "quantize %s: row length %lld (positive expected)", name, (long long)ncols);
    if (f->type == MEND_QFMT_GENERIC) {
        if (f->bits < 2 || f->bits > 8)
            return mend_set_error(MEND_EINVAL, "quantize: generic format with %d bits (2 to 8 expected)", f->bits);
        if (f->group != -1 && (f->group <= 0 || f->group % 8 || f->group > (1 << 20)))
            return mend_set_error(MEND_EINVAL, "quantize: generic group size %d (a positive multiple of 8, e.g. 32/64/128, or -1 for one group per row)",
                                  f->group);
        if (f->group > 0 && ncols % f->group)
            return mend_set_error(MEND_EINVAL, "quantize %s: row length %lld is not a multiple of the group size %d", name,
                                  (long long)ncols, f->group);
        if (f->group == -1 && ncols % 8)
            return mend_set_error(MEND_EINVAL, "quantize %s: row length %lld is not a multiple of 8", name, (long long)ncols);
        return 0;
    }
    if (!is_ggml_quant(f->type) && !is_float_type(f->type))
        return mend_set_error(MEND_EUNSUPPORTED, "quantize: ggml type %s (%u) has no quantizer", mend_type_name(f->type), f->type);
    const mend_type_traits *tt = mend_type_get(f->type);
    if (ncols % tt->blck_size)
        return mend_set_error(MEND_EINVAL, "quantize %s: row length %lld is not a multiple of the block size %lld", name,
                              (long long)ncols, (long long)tt->blck_size);
    return 0;
}

int64_t mend_qfmt_block_elems(const mend_qfmt *f, int64_t ncols) {
    if (f->type == MEND_QFMT_GENERIC) return f->group > 0 ? f->group : ncols;
    const mend_type_traits *tt = mend_type_get(f->type);
    return tt ? tt->blck_size : 0;
}

size_t mend_qfmt_block_bytes(const mend_qfmt *f, int64_t ncols) {
    if (f->type == MEND_QFMT_GENERIC) {
        int64_t g = mend_qfmt_block_elems(f, ncols);
        return GEN_HDR + (size_t)g * (size_t)f->bits / 8;
    }
    const mend_type_traits *tt = mend_type_get(f->type);
    return tt ? tt->type_size : 0;
}

size_t mend_qfmt_row_size(const mend_qfmt *f, int64_t ncols) {
    if (!f || ncols <= 0) return 0;
    if (f->type != MEND_QFMT_GENERIC) return mend_row_size(f->type, ncols);
    if (f->bits < 2 || f->bits > 8) return 0;
    int64_t g = mend_qfmt_block_elems(f, ncols);
    if (g <= 0 || ncols % g || (g * f->bits) % 8) return 0;
    size_t per = mend_qfmt_block_bytes(f, ncols), out;
    if (!mend_mul_ok((size_t)(ncols / g), per, &out)) return 0;
    return out;
}

int64_t mend_qfmt_cols_from_row_bytes(const mend_qfmt *f, size_t row_bytes) {
    if (!f || f->type != MEND_QFMT_GENERIC || f->bits < 2 || f->bits > 8) return -1;
    if (f->group > 0) {
        size_t per = GEN_HDR + (size_t)f->group * (size_t)f->bits / 8;
        if (row_bytes == 0 || row_bytes % per) return -1;
        return (int64_t)(row_bytes / per) * f->group;
    }
    if (row_bytes <= GEN_HDR) return -1;
    size_t bits = (row_bytes - GEN_HDR) * 8;
    if (bits % (size_t)f->bits) return -1;
    int64_t n = (int64_t)(bits / (size_t)f->bits);
    return n % 8 ? -1 : n;
}

uint32_t mend_qfmt_gguf_type(const mend_qfmt *f) { return f->type == MEND_QFMT_GENERIC ? MEND_TYPE_I8 : f->type; }

const char *mend_qfmt_name(const mend_qfmt *f, char *buf, size_t len) {
    if (!buf || !len) return "";
    if (!f) snprintf(buf, len, "(null)");
    else if (f->type != MEND_QFMT_GENERIC) snprintf(buf, len, "%s", mend_type_name(f->type));
    else if (f->group > 0) snprintf(buf, len, "int%d-g%d-%s", f->bits, f->group, f->sym ? "sym" : "asym");
    else snprintf(buf, len, "int%d-row-%s", f->bits, f->sym ? "sym" : "asym");
    return buf;
}

int mend_qfmt_parse(mend_qfmt *f, const char *name) {
    if (!f || !name) return mend_set_error(MEND_EINVAL, "quantize: NULL format name");
    int bits, group, pos = 0;
    char sym[8] = {0};
    if (sscanf(name, "int%d-g%d-%7[a-z]%n", &bits, &group, sym, &pos) == 3 && name[pos] == 0 &&
        (!strcmp(sym, "sym") || !strcmp(sym, "asym"))) {
        *f = mend_qfmt_generic(bits, group, !strcmp(sym, "sym"));
        return 0;
    }
    pos = 0;
    if (sscanf(name, "int%d-row-%7[a-z]%n", &bits, sym, &pos) == 2 && name[pos] == 0 &&
        (!strcmp(sym, "sym") || !strcmp(sym, "asym"))) {
        *f = mend_qfmt_generic(bits, -1, !strcmp(sym, "sym"));
        return 0;
    }
    int t = mend_type_from_name(name);
    if (t < 0 || (!is_ggml_quant((uint32_t)t) && !is_float_type((uint32_t)t)))
        return mend_set_error(MEND_EINVAL, "quantize: unknown format '%s' (a ggml type such as q4_K, or int<bits>-g<group>-sym|asym, int<bits>-row-sym|asym)",
                              name);
    *f = mend_qfmt_ggml((uint32_t)t);
    return 0;
}

int mend_qfmt_fallback(const mend_qfmt *f, int64_t ncols, mend_qfmt *out) {
    if (!f || !out) return mend_set_error(MEND_EINVAL, "quantize: NULL format");
    mend_qfmt g = *f;
    if (f->type != MEND_QFMT_GENERIC && ncols > 0 && ncols % QK_K) {
        switch (f->type) {
        case MEND_TYPE_Q2_K: case MEND_TYPE_Q3_K: g = mend_qfmt_ggml(MEND_TYPE_Q4_0); break;
        case MEND_TYPE_Q4_K: g = mend_qfmt_ggml(MEND_TYPE_Q5_0); break;
        case MEND_TYPE_Q5_K: g = mend_qfmt_ggml(MEND_TYPE_Q5_1); break;
        case MEND_TYPE_Q6_K: g = mend_qfmt_ggml(MEND_TYPE_Q8_0); break;
        default: break;
        }
    }
    int rc = mend_qfmt_check(&g, ncols);
    if (rc) return rc;
    *out = g;
    return 0;
}

int mend_qfmt_write_meta(mend_gguf_writer *w, const mend_qfmt *f) {
    if (!w || !f) return mend_set_error(MEND_EINVAL, "quantize: NULL writer or format");
    if (f->type != MEND_QFMT_GENERIC) return 0;
    int rc = mend_gguf_writer_set_str(w, "mend.quant.format", "generic");
    if (!rc) rc = mend_gguf_writer_set_u32(w, "mend.quant.bits", (uint32_t)f->bits);
    if (!rc) rc = mend_gguf_writer_set_i32(w, "mend.quant.group", f->group);
    if (!rc) rc = mend_gguf_writer_set_bool(w, "mend.quant.sym", f->sym);
    return rc;
}

int mend_qfmt_read_meta(const mend_gguf *g, mend_qfmt *f, int *found) {
    if (!g || !f || !found) return mend_set_error(MEND_EINVAL, "quantize: NULL file, format or flag");
    *found = 0;
    if (!mend_gguf_find(g, "mend.quant.format")) return 0;
    const char *s;
    int64_t bits, group;
    int sym;
    int rc = mend_gguf_get_str(g, "mend.quant.format", &s);
    if (rc) return rc;
    if (strcmp(s, "generic") != 0)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: mend.quant.format is '%s' ('generic' expected)", g->path, s);
    if ((rc = mend_gguf_get_int(g, "mend.quant.bits", &bits)) || (rc = mend_gguf_get_int(g, "mend.quant.group", &group)) ||
        (rc = mend_gguf_get_bool(g, "mend.quant.sym", &sym)))
        return rc;
    mend_qfmt q = mend_qfmt_generic((int)bits, (int)group, sym);
    if (bits < 2 || bits > 8 || (group != -1 && (group <= 0 || group % 8 || group > (1 << 20))))
        return mend_set_error(MEND_EFORMAT, "%s: mend.quant.bits %lld / mend.quant.group %lld are not a valid generic format",
                              g->path, (long long)bits, (long long)group);
    *f = q;
    *found = 1;
    return 0;
}

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

static unsigned bits_get(const uint8_t *p, int64_t j, int bits) {
    size_t bit = (size_t)j * (size_t)bits;
    unsigned v = 0;
    for (int b = 0; b < bits; b++, bit++) v |= (unsigned)(p[bit >> 3] >> (bit & 7) & 1) << b;
    return v;
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
    uint8_t *q = blk + GEN_HDR;
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
        uint8_t *q = (uint8_t *)blk + GEN_HDR;
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
    if (!is_ggml_quant(f->type))
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

int mend_dequantize_row_fmt(const mend_qfmt *f, const void *y, float *x, int64_t n) {
    if (!f) return mend_set_error(MEND_EINVAL, "dequantize: NULL format");
    if (f->type != MEND_QFMT_GENERIC) return mend_dequantize_row(f->type, y, x, n);
    int rc = mend_qfmt_check(f, n);
    if (rc) return rc;
    if (!x || !y) return mend_set_error(MEND_EINVAL, "dequantize: NULL source or destination");
    const int64_t g = mend_qfmt_block_elems(f, n);
    const size_t bb = mend_qfmt_block_bytes(f, n);
    const unsigned maxq = (1u << f->bits) - 1;
    for (int64_t b = 0; b < n / g; b++) {
        const uint8_t *blk = (const uint8_t *)y + (size_t)b * bb;
        const float scale = mend_fp16_to_f32(mend_rd16(blk));
        const int zero = blk[2];
        if ((unsigned)zero > maxq)
            return mend_set_error(MEND_EFORMAT, "dequantize %d-bit: group %lld has zero point %d > %u", f->bits, (long long)b, zero, maxq);
        for (int64_t j = 0; j < g; j++)
            x[b * g + j] = scale * (float)((int)bits_get(blk + GEN_HDR, j, f->bits) - zero);
    }
    return 0;
}
