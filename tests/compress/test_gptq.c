/* GPTQ against an independent NumPy implementation of the paper's
 * Algorithm 1 (tests/fixtures/gptq/gptq_ref.py): same W (64 x 256), same
 * calibration inputs (512 tokens), three settings (4-bit g128 asym, 3-bit
 * per-row sym, 4-bit g128 asym with act-order). mend's quantized weights must
 * agree on >= 99% of entries, its reconstruction error ||WX - ŴX||² must be
 * within 1% of the reference's and well below round-to-nearest's. Also: the
 * Hessian accumulator, GPTQ onto ggml grids (packed blocks dequantize to Ŵ
 * exactly; better than ggml's own RTN), and bad inputs. */
#include <stdint.h>
#include "test.h"
#include "compress/gptq.h"
#include "compress/hessian.h"
#include "util/util.h"

#define ROWS 64
#define COLS 256
#define NSAMP 512

static float g_W[ROWS * COLS], g_X[NSAMP * COLS];
static double g_H[COLS * COLS];

static int load(const char *rel, void *dst, size_t n) {
    char *buf = NULL;
    size_t len = 0;
    if (mend_read_file(test_src(rel), 1 << 24, &buf, &len)) {
        fprintf(stderr, "%s\n", mend_last_error());
        return -1;
    }
    int ok = len == n;
    if (ok) memcpy(dst, buf, n);
    else fprintf(stderr, "%s: %zu bytes, %zu expected\n", rel, len, n);
    free(buf);
    return ok ? 0 : -1;
}

/* ||W X - Q X||_F^2 with X = g_X (tokens x features) */
static double recon_err(const float *Q) {
    double total = 0;
    for (int r = 0; r < ROWS; r++)
        for (int t = 0; t < NSAMP; t++) {
            double a = 0, b = 0;
            for (int c = 0; c < COLS; c++) {
                a += (double)g_W[r * COLS + c] * g_X[t * COLS + c];
                b += (double)Q[r * COLS + c] * g_X[t * COLS + c];
            }
            total += (a - b) * (a - b);
        }
    return total;
}

static int ref_errors(const char *cfg, double *gptq, double *rtn) {
    char *buf = NULL;
    if (mend_read_file(test_src("tests/fixtures/gptq/summary.txt"), 1 << 16, &buf, NULL)) return -1;
    int found = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        double a, b;
        if (sscanf(line, "%63s gptq %lf rtn %lf", name, &a, &b) == 3 && strcmp(name, cfg) == 0) {
            *gptq = a;
            *rtn = b;
            found = 1;
        }
    }
    free(buf);
    return found ? 0 : -1;
}

static void test_hessian(void) {
    mend_hessian h;
    CHECK_OK(mend_hessian_init(&h, COLS));
    for (int b = 0; b < NSAMP; b += 160)   /* uneven batches: 160, 160, 160, 32 */
        CHECK_OK(mend_hessian_add(&h, g_X + (size_t)b * COLS, b + 160 <= NSAMP ? 160 : NSAMP - b));
    CHECK(h.nsamples == NSAMP);
    CHECK_OK(mend_hessian_get(&h, g_H));
    double worst = 0, scale = 0;
    for (int i = 0; i < COLS; i += 7)
        for (int j = 0; j < COLS; j += 5) {
            double s = 0;
            for (int t = 0; t < NSAMP; t++) s += (double)g_X[t * COLS + i] * g_X[t * COLS + j];
            s *= 2.0 / NSAMP;
            worst = fmax(worst, fabs(s - g_H[i * COLS + j]));
            scale = fmax(scale, fabs(s));
        }
    CHECK_MSG(worst <= 1e-5 * scale, "Hessian off by %g (max entry %g)", worst, scale);
    CHECK(g_H[17 * COLS + 17] == 0);   /* the dead input */
    mend_hessian empty;
    CHECK_OK(mend_hessian_init(&empty, 4));
    double out[16];
    CHECK_ERR(mend_hessian_get(&empty, out), MEND_EINVAL, "no calibration");
    mend_hessian_free(&empty);
    mend_hessian_free(&h);
}

static void test_vs_reference(const char *cfg, int bits, int group, int sym, int act) {
    const int ng = group > 0 ? COLS / group : 1, ge = group > 0 ? group : COLS;
    uint8_t codes[ROWS * COLS], zeros[ROWS * 2];
    float scales[ROWS * 2];
    char p[3][128];
    snprintf(p[0], sizeof p[0], "tests/fixtures/gptq/%s.codes.u8", cfg);
    snprintf(p[1], sizeof p[1], "tests/fixtures/gptq/%s.scale.f32", cfg);
    snprintf(p[2], sizeof p[2], "tests/fixtures/gptq/%s.zero.u8", cfg);
    double ref_gptq = 0, ref_rtn = 0;
    if (load(p[0], codes, sizeof codes) || load(p[1], scales, sizeof(float) * ROWS * ng) ||
        load(p[2], zeros, (size_t)ROWS * ng) || ref_errors(cfg, &ref_gptq, &ref_rtn)) {
        CHECK_MSG(0, "%s: fixtures missing", cfg);
        return;
    }
    mend_gptq_opts o = {0};
    o.fmt = mend_qfmt_generic(bits, group, sym);
    o.act_order = act;
    const size_t rs = mend_qfmt_row_size(&o.fmt, COLS);
    uint8_t *packed = malloc(rs * ROWS);
    float *Q = malloc(sizeof g_W), *deq = malloc(sizeof g_W);
    double *H = malloc(sizeof g_H);
    memcpy(Q, g_W, sizeof g_W);
    memcpy(H, g_H, sizeof g_H);
    mend_gptq_stats st;
    CHECK_OK(mend_gptq_quantize(Q, ROWS, COLS, H, &o, packed, &st));
    CHECK(st.dead == 1);

    /* entries equal to the reference's scale * (code - zero) */
    int same = 0, same_grid = 0;
    for (int r = 0; r < ROWS; r++) {
        CHECK_OK(mend_dequantize_row_fmt(&o.fmt, packed + r * rs, deq + r * COLS, COLS));
        for (int c = 0; c < COLS; c++) {
            const int g = c / ge;
            const float want = scales[r * ng + g] * (float)((int)codes[r * COLS + c] - (int)zeros[r * ng + g]);
            same += Q[r * COLS + c] == want;
        }
        for (int g = 0; g < ng; g++) {
            const uint8_t *blk = packed + r * rs + g * mend_qfmt_block_bytes(&o.fmt, COLS);
            same_grid += mend_fp16_to_f32(mend_rd16(blk)) == scales[r * ng + g] && blk[2] == zeros[r * ng + g];
        }
        CHECK(Q[r * COLS + 17] == 0.0f);   /* dead column: quantized zero */
    }
    CHECK_MSG(memcmp(deq, Q, sizeof g_W) == 0, "%s: packed rows do not dequantize to the returned weights", cfg);
    const double frac = (double)same / (ROWS * COLS), gfrac = (double)same_grid / (ROWS * ng);
    CHECK_MSG(frac >= 0.99, "%s: only %.4f of the weights match the reference", cfg, frac);
    CHECK_MSG(gfrac >= 0.97, "%s: only %.4f of the group grids match the reference", cfg, gfrac);

    const double err = recon_err(Q);
    float *R = malloc(sizeof g_W);
    memcpy(R, g_W, sizeof g_W);
    CHECK_OK(mend_rtn_quantize(R, ROWS, COLS, &o.fmt, NULL));
    const double err_rtn = recon_err(R);
    CHECK_MSG(fabs(err - ref_gptq) <= 0.01 * ref_gptq, "%s: error %g vs reference %g", cfg, err, ref_gptq);
    CHECK_MSG(fabs(err_rtn - ref_rtn) <= 1e-4 * ref_rtn, "%s: RTN error %g vs reference %g", cfg, err_rtn, ref_rtn);
    CHECK_MSG(err < 0.6 * err_rtn, "%s: GPTQ error %g is not clearly below RTN's %g", cfg, err, err_rtn);
    printf("%-20s identical %.4f  grids %.4f  ||WX-QX||^2 gptq %.4f (ref %.4f)  rtn %.4f (ref %.4f)  gptq/rtn %.3f  loss %.4f\n",
           cfg, frac, gfrac, err, ref_gptq, err_rtn, ref_rtn, err / err_rtn, st.loss);
    free(packed);
    free(Q);
    free(deq);
    free(H);
    free(R);
}

/* GPTQ onto ggml block grids: exact packing, better than ggml's RTN */
static void test_ggml_grid(uint32_t type, int act, int imp) {
    mend_gptq_opts o = {0};
    o.fmt = mend_qfmt_ggml(type);
    o.act_order = act;
    o.fit_importance = imp;
    const size_t rs = mend_row_size(type, COLS);
    uint8_t *packed = malloc(rs * ROWS);
    float *Q = malloc(sizeof g_W), *deq = malloc(sizeof g_W), *R = malloc(sizeof g_W);
    double *H = malloc(sizeof g_H);
    memcpy(Q, g_W, sizeof g_W);
    memcpy(R, g_W, sizeof g_W);
    memcpy(H, g_H, sizeof g_H);
    CHECK_OK(mend_gptq_quantize(Q, ROWS, COLS, H, &o, packed, NULL));
    for (int r = 0; r < ROWS; r++) CHECK_OK(mend_dequantize_row(type, packed + r * rs, deq + r * COLS, COLS));
    CHECK_MSG(memcmp(deq, Q, sizeof g_W) == 0, "%s: packed blocks do not dequantize to the returned weights", mend_type_name(type));
    CHECK_OK(mend_rtn_quantize(R, ROWS, COLS, &o.fmt, NULL));
    const double e = recon_err(Q), er = recon_err(R);
    CHECK_MSG(e < 0.8 * er, "%s%s: GPTQ error %g vs RTN %g", mend_type_name(type), act ? " act-order" : "", e, er);
    printf("%-6s%s%s  ||WX-QX||^2 gptq %.4f  rtn %.4f  gptq/rtn %.3f\n", mend_type_name(type), act ? " act" : "    ",
           imp ? " imp" : "    ", e, er, e / er);
    free(packed);
    free(Q);
    free(deq);
    free(R);
    free(H);
}

static void test_bad_input(void) {
    float W[4 * 32];
    double H[32 * 32];
    for (int i = 0; i < 4 * 32; i++) W[i] = (float)(i % 7) - 3;
    mend_gptq_opts o = {0};
    o.fmt = mend_qfmt_generic(4, 32, 0);
    memset(H, 0, sizeof H);
    for (int i = 0; i < 32; i++) H[i * 32 + i] = -1;
    CHECK_ERR(mend_gptq_quantize(W, 4, 32, H, &o, NULL, NULL), MEND_EINVAL, "diagonal");
    for (int i = 0; i < 32; i++) H[i * 32 + i] = 1;
    H[3 * 32 + 5] = H[5 * 32 + 3] = 50;   /* indefinite even after damping: retried, then refused */
    CHECK_ERR(mend_gptq_quantize(W, 4, 32, H, &o, NULL, NULL), MEND_EINVAL, "positive definite");
    H[3 * 32 + 5] = H[5 * 32 + 3] = 0;
    W[7] = NAN;
    CHECK_ERR(mend_gptq_quantize(W, 4, 32, H, &o, NULL, NULL), MEND_EINVAL, "not finite");
    W[7] = 0;
    o.fmt = mend_qfmt_generic(4, 64, 0);
    CHECK_ERR(mend_gptq_quantize(W, 4, 32, H, &o, NULL, NULL), MEND_EINVAL, "group");
    o.fmt = mend_qfmt_ggml(MEND_TYPE_F16);
    CHECK_ERR(mend_gptq_quantize(W, 4, 32, H, &o, NULL, NULL), MEND_EINVAL, "not a quantized");
    /* an all-zero Hessian: every column dead; still succeeds, weights zero */
    memset(H, 0, sizeof H);
    o.fmt = mend_qfmt_generic(4, 32, 0);
    mend_gptq_stats st;
    CHECK_OK(mend_gptq_quantize(W, 4, 32, H, &o, NULL, &st));
    int nz = 0;
    for (int i = 0; i < 4 * 32; i++) nz += W[i] != 0;
    CHECK(st.dead == 32 && nz == 0);
}

int main(void) {
    uint16_t *x16 = malloc(sizeof(uint16_t) * NSAMP * COLS);
    if (load("tests/fixtures/gptq/W.f32", g_W, sizeof g_W) || load("tests/fixtures/gptq/X.f16", x16, sizeof(uint16_t) * NSAMP * COLS)) {
        CHECK(0);
        free(x16);
        return test_finish();
    }
    for (int i = 0; i < NSAMP * COLS; i++) g_X[i] = mend_fp16_to_f32(x16[i]);
    free(x16);
    test_hessian();
    test_vs_reference("int4-g128-asym", 4, 128, 0, 0);
    test_vs_reference("int3-row-sym", 3, -1, 1, 0);
    test_vs_reference("int4-g128-asym-act", 4, 128, 0, 1);
    static const uint32_t types[] = {MEND_TYPE_Q4_0, MEND_TYPE_Q4_1, MEND_TYPE_Q5_0, MEND_TYPE_Q8_0, MEND_TYPE_Q2_K,
                                     MEND_TYPE_Q3_K, MEND_TYPE_Q4_K, MEND_TYPE_Q5_K, MEND_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) test_ggml_grid(types[i], 0, 0);
    test_ggml_grid(MEND_TYPE_Q4_K, 1, 0);
    test_ggml_grid(MEND_TYPE_Q3_K, 0, 1);
    test_ggml_grid(MEND_TYPE_Q4_0, 1, 1);
    test_bad_input();
    return test_finish();
}
