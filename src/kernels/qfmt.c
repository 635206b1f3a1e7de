/* Weight formats: the ggml block types and mend's generic grid (qfmt.h),
 * their sizes, names, GGUF metadata and the generic dequantizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/qfmt.h"
#include "util/util.h"

int mend_qfmt_is_ggml_quant(uint32_t t) {
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
    if (!mend_qfmt_is_ggml_quant(f->type) && !is_float_type(f->type))
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
        return MEND_QFMT_GEN_HDR + (size_t)g * (size_t)f->bits / 8;
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
        size_t per = MEND_QFMT_GEN_HDR + (size_t)f->group * (size_t)f->bits / 8;
        if (row_bytes == 0 || row_bytes % per) return -1;
        return (int64_t)(row_bytes / per) * f->group;
    }
    if (row_bytes <= MEND_QFMT_GEN_HDR) return -1;
    size_t bits = (row_bytes - MEND_QFMT_GEN_HDR) * 8;
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
    if (t < 0 || (!mend_qfmt_is_ggml_quant((uint32_t)t) && !is_float_type((uint32_t)t)))
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
            x[b * g + j] = scale * (float)((int)mend_qfmt_bits_get(blk + MEND_QFMT_GEN_HDR, j, f->bits) - zero);
    }
    return 0;
}
