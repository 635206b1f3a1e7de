/* Quantizers against blocks made by ggml itself
 * (tests/fixtures/quantize/make_ggml_blocks.py): every ggml type, with and
 * without importance weights, must be byte-identical; dequantizing them must
 * give ggml's floats. The grid view must describe exactly what the
 * dequantizer produces, and the generic format must round-trip. */
#include <stdint.h>
#include <unistd.h>
#include "test.h"
#include "compress/quantize.h"
#include "util/util.h"

#define ROWS 4
#define COLS 512

static float g_x[ROWS * COLS], g_imp[COLS];

static int load(const char *rel, void *dst, size_t n) {
    char *buf = NULL;
    size_t len = 0;
    int rc = mend_read_file(test_src(rel), 1 << 24, &buf, &len);
    if (rc) {
        fprintf(stderr, "%s\n", mend_last_error());
        return rc;
    }
    if (len != n) {
        fprintf(stderr, "%s: %zu bytes, %zu expected\n", rel, len, n);
        free(buf);
        return -1;
    }
    memcpy(dst, buf, n);
    free(buf);
    return 0;
}

static const struct { const char *name; uint32_t type; } k_types[] = {
    {"q4_0", MEND_TYPE_Q4_0}, {"q4_1", MEND_TYPE_Q4_1}, {"q5_0", MEND_TYPE_Q5_0}, {"q5_1", MEND_TYPE_Q5_1},
    {"q8_0", MEND_TYPE_Q8_0}, {"q2_K", MEND_TYPE_Q2_K}, {"q3_K", MEND_TYPE_Q3_K}, {"q4_K", MEND_TYPE_Q4_K},
    {"q5_K", MEND_TYPE_Q5_K}, {"q6_K", MEND_TYPE_Q6_K},
};

/* bit-exact blocks (with and without importance) and dequantized floats */
static void test_vs_ggml(uint32_t type, const char *name) {
    const size_t rs = mend_row_size(type, COLS), total = rs * ROWS;
    uint8_t *ref = malloc(total), *imp = malloc(total), *got = malloc(total);
    float *deq = malloc(sizeof(float) * ROWS * COLS), *mine = malloc(sizeof(float) * ROWS * COLS);
    char p1[128], p2[128], p3[128];
    snprintf(p1, sizeof p1, "tests/fixtures/quantize/%s.ref.bin", name);
    snprintf(p2, sizeof p2, "tests/fixtures/quantize/%s.imp.bin", name);
    snprintf(p3, sizeof p3, "tests/fixtures/quantize/%s.deq.f32", name);
    CHECK(load(p1, ref, total) == 0 && load(p2, imp, total) == 0 && load(p3, deq, sizeof(float) * ROWS * COLS) == 0);

    const mend_type_traits *tt = mend_type_get(type);
    const int64_t nblk = COLS / tt->blck_size;
    int bad_ref = 0, bad_imp = 0;
    for (int r = 0; r < ROWS; r++) {
        CHECK_OK(mend_quantize_row(type, g_x + r * COLS, got + r * rs, COLS, NULL));
        for (int64_t b = 0; b < nblk; b++)
            bad_ref += memcmp(got + r * rs + b * tt->type_size, ref + r * rs + b * tt->type_size, tt->type_size) != 0;
        CHECK_OK(mend_dequantize_row(type, got + r * rs, mine + r * COLS, COLS));
    }
    CHECK_MSG(bad_ref == 0, "%s: %d of %lld blocks differ from ggml's reference quantizer", name, bad_ref, (long long)(ROWS * nblk));
    CHECK_MSG(memcmp(mine, deq, sizeof(float) * ROWS * COLS) == 0, "%s: dequantized floats differ from ggml's", name);
    for (int r = 0; r < ROWS; r++) {
        CHECK_OK(mend_quantize_row(type, g_x + r * COLS, got + r * rs, COLS, g_imp));
        for (int64_t b = 0; b < nblk; b++)
            bad_imp += memcmp(got + r * rs + b * tt->type_size, imp + r * rs + b * tt->type_size, tt->type_size) != 0;
    }
    CHECK_MSG(bad_imp == 0, "%s: %d of %lld blocks differ from ggml's importance-weighted quantizer", name, bad_imp,
              (long long)(ROWS * nblk));
    free(ref);
    free(imp);
    free(got);
    free(deq);
    free(mine);
}

/* The grid of a fitted block reproduces the dequantizer exactly, for codes
 * chosen by the grid itself; rounding is to the nearest grid point. */
static void test_grid(const mend_qfmt *f, const float *x, int64_t n) {
    char name[64];
    mend_qfmt_name(f, name, sizeof name);
    const int64_t be = mend_qfmt_block_elems(f, n);
    const size_t bb = mend_qfmt_block_bytes(f, n);
    uint8_t *blk = malloc(bb), *codes = malloc((size_t)be);
    float *deq = malloc(sizeof(float) * (size_t)be), *val = malloc(sizeof(float) * (size_t)be);
    int bad_val = 0, bad_near = 0;
    for (int64_t b = 0; b < n / be; b++) {
        const float *xb = x + b * be;
        mend_qgrid g;
        CHECK_OK(mend_qgrid_fit(f, xb, be, NULL, blk, &g));
        CHECK(g.n == be && g.n / g.sub <= MEND_QGRID_MAXSUB);
        for (int64_t j = 0; j < be; j++) {
            /* perturb so the codes differ from the fit's own */
            const float v = xb[j] * (1.0f + 0.05f * (float)((j % 7) - 3));
            codes[j] = (uint8_t)mend_qgrid_code(&g, j, v);
            val[j] = mend_qgrid_value(&g, j, codes[j]);
            /* nearest: no other code is strictly closer */
            const float e = fabsf(val[j] - v);
            for (int q = 0; q <= g.qmax; q++)
                if (fabsf(mend_qgrid_value(&g, j, q) - v) < e * (1 - 1e-6f) - 1e-30f) {
                    bad_near++;
                    break;
                }
        }
        CHECK_OK(mend_qgrid_pack(f, blk, codes, be));
        CHECK_OK(mend_dequantize_row_fmt(f, blk, deq, be));
        for (int64_t j = 0; j < be; j++) bad_val += memcmp(&deq[j], &val[j], 4) != 0;
    }
    CHECK_MSG(bad_val == 0, "%s: %d grid values differ from the dequantizer", name, bad_val);
    CHECK_MSG(bad_near == 0, "%s: %d codes are not the nearest grid point", name, bad_near);
    free(blk);
    free(codes);
    free(deq);
    free(val);
}

/* generic format: hand-checked values, round trip, sizes, names */
static void test_generic(void) {
    /* 4-bit asym, one group of 8 (row of 8): min -1, max 2 -> scale 0.2, zero 5 */
    mend_qfmt f = mend_qfmt_generic(4, -1, 0);
    float x[8] = {-1.0f, 2.0f, 0.0f, 0.1f, 0.3f, -0.55f, 1.0f, 0.05f};
    uint8_t y[4 + 4];
    float d[8];
    CHECK(mend_qfmt_row_size(&f, 8) == 8);
    CHECK_OK(mend_quantize_row_fmt(&f, x, y, 8, NULL));
    const float s = mend_fp16_to_f32(mend_f32_to_fp16(3.0f / 15.0f));
    CHECK(mend_fp16_to_f32(mend_rd16(y)) == s && y[2] == 5 && y[3] == 0);
    CHECK_OK(mend_dequantize_row_fmt(&f, y, d, 8));
    /* codes: round(x/s) + 5 clamped to 0..15, with s = fp16(0.2) = 0.19995:
     * 0.1/s = 0.50012 rounds up, -0.55/s = -2.75 to -3, 0.05/s = 0.25 to 0 */
    const int want[8] = {0, 15, 5, 6, 7, 2, 10, 5};
    for (int i = 0; i < 8; i++) CHECK_NEAR(d[i], s * (float)(want[i] - 5), 0);

    /* symmetric 3-bit per row: zero 4, scale 2*max|x|/7 */
    f = mend_qfmt_generic(3, -1, 1);
    float z[16];
    for (int i = 0; i < 16; i++) z[i] = (float)(i - 6) * 0.25f;
    uint8_t yz[4 + 6];
    CHECK(mend_qfmt_row_size(&f, 16) == 10);
    CHECK_OK(mend_quantize_row_fmt(&f, z, yz, 16, NULL));
    CHECK(yz[2] == 4 && mend_fp16_to_f32(mend_rd16(yz)) == mend_fp16_to_f32(mend_f32_to_fp16(2 * 2.25f / 7)));
    CHECK(mend_qfmt_cols_from_row_bytes(&f, 10) == 16);

    /* random rows: error within half a step inside the range, any bits/group */
    static const int bits[] = {2, 3, 4, 8}, groups[] = {32, 64, 128, -1};
    for (int bi = 0; bi < 4; bi++)
        for (int gi = 0; gi < 4; gi++)
            for (int sym = 0; sym < 2; sym++) {
                mend_qfmt g = mend_qfmt_generic(bits[bi], groups[gi], sym);
                char name[64];
                mend_qfmt_name(&g, name, sizeof name);
                mend_qfmt back;
                CHECK_OK(mend_qfmt_parse(&back, name));
                CHECK(back.type == MEND_QFMT_GENERIC && back.bits == g.bits && back.group == g.group && back.sym == g.sym);
                size_t rs = mend_qfmt_row_size(&g, COLS);
                CHECK(rs > 0 && mend_qfmt_cols_from_row_bytes(&g, rs) == COLS);
                uint8_t *q = malloc(rs);
                float *dq = malloc(sizeof(float) * COLS);
                int bad = 0;
                for (int r = 0; r < ROWS; r++) {
                    const float *xr = g_x + r * COLS;
                    CHECK_OK(mend_quantize_row_fmt(&g, xr, q, COLS, NULL));
                    CHECK_OK(mend_dequantize_row_fmt(&g, q, dq, COLS));
                    const int64_t ge = mend_qfmt_block_elems(&g, COLS);
                    for (int64_t b = 0; b < COLS / ge; b++) {
                        const uint8_t *blk = q + b * mend_qfmt_block_bytes(&g, COLS);
                        const float sc = mend_fp16_to_f32(mend_rd16(blk));
                        const int zp = blk[2], maxq = (1 << g.bits) - 1;
                        for (int64_t j = 0; j < ge; j++) {
                            const float v = xr[b * ge + j];
                            const float lo = sc * (float)(0 - zp), hi = sc * (float)(maxq - zp);
                            if (v >= lo && v <= hi && fabsf(dq[b * ge + j] - v) > 0.5f * sc * 1.001f + 1e-12f) bad++;
                        }
                    }
                    test_grid(&g, xr, COLS);
                }
                CHECK_MSG(bad == 0, "%s: %d weights off by more than half a step", name, bad);
                free(q);
                free(dq);
            }
    /* names of ggml types */
    mend_qfmt t;
    CHECK_OK(mend_qfmt_parse(&t, "Q4_K"));
    CHECK(t.type == MEND_TYPE_Q4_K && mend_qfmt_gguf_type(&t) == MEND_TYPE_Q4_K);
    CHECK(mend_qfmt_gguf_type(&f) == MEND_TYPE_I8);
    /* K types on rows that 256 does not divide fall back like llama.cpp */
    mend_qfmt fb;
    static const uint32_t from[] = {MEND_TYPE_Q2_K, MEND_TYPE_Q3_K, MEND_TYPE_Q4_K, MEND_TYPE_Q5_K, MEND_TYPE_Q6_K, MEND_TYPE_Q4_1};
    static const uint32_t to[] = {MEND_TYPE_Q4_0, MEND_TYPE_Q4_0, MEND_TYPE_Q5_0, MEND_TYPE_Q5_1, MEND_TYPE_Q8_0, MEND_TYPE_Q4_1};
    for (int i = 0; i < 6; i++) {
        t = mend_qfmt_ggml(from[i]);
        CHECK_OK(mend_qfmt_fallback(&t, 576, &fb));
        CHECK(fb.type == to[i]);
        CHECK_OK(mend_qfmt_fallback(&t, 1536, &fb));
        CHECK(fb.type == from[i]);
    }
    t = mend_qfmt_ggml(MEND_TYPE_Q4_K);
    CHECK_ERR(mend_qfmt_fallback(&t, 100, &fb), MEND_EINVAL, "multiple");
}

static void test_bad_input(void) {
    float x[64] = {0};
    uint8_t y[512];
    CHECK_ERR(mend_quantize_row(MEND_TYPE_Q4_0, x, y, 33, NULL), MEND_EINVAL, "multiple");
    CHECK_ERR(mend_quantize_row(MEND_TYPE_Q4_K, x, y, 64, NULL), MEND_EINVAL, "block size");
    CHECK_ERR(mend_quantize_row(MEND_TYPE_Q8_1, x, y, 32, NULL), MEND_EUNSUPPORTED, "quantizer");
    x[5] = NAN;
    CHECK_ERR(mend_quantize_row(MEND_TYPE_Q8_0, x, y, 32, NULL), MEND_EINVAL, "NaN");
    x[5] = 0;
    mend_qfmt f = mend_qfmt_generic(1, 32, 0);
    CHECK_ERR(mend_quantize_row_fmt(&f, x, y, 64, NULL), MEND_EINVAL, "bits");
    f = mend_qfmt_generic(4, 48, 0);
    CHECK_ERR(mend_quantize_row_fmt(&f, x, y, 64, NULL), MEND_EINVAL, "multiple of the group");
    f = mend_qfmt_generic(4, 33, 0);
    CHECK_ERR(mend_qfmt_check(&f, 66), MEND_EINVAL, "group size");
    mend_qfmt p;
    CHECK_ERR(mend_qfmt_parse(&p, "int4-g128-maybe"), MEND_EINVAL, "unknown format");
    CHECK_ERR(mend_qfmt_parse(&p, "iq2_xxs"), MEND_EINVAL, "unknown format");
    /* a corrupt zero point in a generic block is reported, not used */
    f = mend_qfmt_generic(2, 32, 0);
    uint8_t blk[4 + 8] = {0, 0x3c, 9, 0};
    float d[32];
    CHECK_ERR(mend_dequantize_row_fmt(&f, blk, d, 32), MEND_EFORMAT, "zero point");
}

/* generic-format metadata round-trips through a GGUF file */
static void test_meta(void) {
    char path[] = "/tmp/mend_test_qmeta.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    mend_gguf_writer *w = NULL;
    CHECK_OK(mend_gguf_writer_init(&w));
    mend_qfmt f = mend_qfmt_generic(3, -1, 1), g = {0};
    CHECK_OK(mend_qfmt_write_meta(w, &f));
    CHECK_OK(mend_gguf_writer_write(w, path));
    mend_gguf_writer_free(w);
    mend_gguf *gg = NULL;
    int found = 0;
    CHECK_OK(mend_gguf_open(&gg, path));
    if (gg) {
        CHECK_OK(mend_qfmt_read_meta(gg, &g, &found));
        CHECK(found && g.type == MEND_QFMT_GENERIC && g.bits == 3 && g.group == -1 && g.sym == 1);
        mend_gguf_close(gg);
    }
    /* a file without the keys: not found, not an error */
    CHECK_OK(mend_gguf_writer_init(&w));
    CHECK_OK(mend_gguf_writer_set_u32(w, "mend.quant.bits", 4));
    CHECK_OK(mend_gguf_writer_write(w, path));
    mend_gguf_writer_free(w);
    CHECK_OK(mend_gguf_open(&gg, path));
    if (gg) {
        CHECK_OK(mend_qfmt_read_meta(gg, &g, &found));
        CHECK(!found);
        mend_gguf_close(gg);
    }
    unlink(path);
}

int main(void) {
    if (load("tests/fixtures/quantize/x.f32", g_x, sizeof g_x) || load("tests/fixtures/quantize/imp.f32", g_imp, sizeof g_imp)) {
        CHECK(0);
        return test_finish();
    }
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++) {
        test_vs_ggml(k_types[i].type, k_types[i].name);
        mend_qfmt f = mend_qfmt_ggml(k_types[i].type);
        for (int r = 0; r < ROWS; r++) test_grid(&f, g_x + r * COLS, COLS);
    }
    test_generic();
    test_bad_input();
    test_meta();
    return test_finish();
}
