/* Pruning against an independent NumPy implementation written from the
 * papers (tests/fixtures/prune/prune_ref.py) on one real layer: blk.5.ffn_up
 * of SmolLM2-135M-Instruct (1536 x 576, from its Q4_1 blocks) with its real
 * inputs over 512 WikiText-2 tokens. Magnitude masks must be identical,
 * Wanda masks agree on >= 99% of weights, SparseGPT's reconstruction error
 * ||W Xᵀ - Ŵ Xᵀ||² is within 1% of the reference's (unstructured 50%, 2:4,
 * 4:8), every N:M result is a valid N:M pattern. Also: joint SparseGPT +
 * q4_0 (packed blocks dequantize to Ŵ, pruned weights exact zeros, better
 * than pruning then RTN), GPTQ with a fixed mask, selection ties, and bad
 * inputs. */
#include <cblas.h>
#include <stdint.h>
#include "test.h"
#include "compress/hessian.h"
#include "compress/prune.h"
#include "compress/sparsegpt.h"
#include "kernels/quants.h"
#include "util/util.h"

#define ROWS 1536
#define COLS 576
#define NTOK 512
#define NW (ROWS * COLS)

static float *g_W, *g_X, *g_xnorm;
static double *g_H;
static char *g_summary;

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

/* "<key> err E pruned P" from summary.txt */
static int ref_line(const char *key, double *err, long *pruned) {
    for (const char *p = g_summary; p && *p;) {
        char name[64];
        double e;
        long q;
        if (sscanf(p, "%63s err %lf pruned %ld", name, &e, &q) == 3 && strcmp(name, key) == 0) {
            *err = e;
            *pruned = q;
            return 0;
        }
        p = strchr(p, '\n');
        if (p) p++;
    }
    fprintf(stderr, "summary.txt: no line for %s\n", key);
    return -1;
}

static int load_mask(const char *key, uint8_t *mask) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/prune/%s.mask", key);
    uint8_t *bits = malloc(NW / 8);
    int rc = load(rel, bits, NW / 8);
    if (!rc)
        for (size_t i = 0; i < NW; i++) mask[i] = (bits[i / 8] >> (i % 8)) & 1;
    free(bits);
    return rc;
}

/* ||(W - Q) Xᵀ||²_F */
static double recon_err(const float *Q) {
    float *D = malloc(sizeof(float) * NW), *P = malloc(sizeof(float) * ROWS * NTOK);
    for (size_t i = 0; i < NW; i++) D[i] = g_W[i] - Q[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ROWS, NTOK, COLS, 1.0f, D, COLS, g_X, COLS, 0.0f, P, NTOK);
    double s = 0;
    for (size_t i = 0; i < (size_t)ROWS * NTOK; i++) s += (double)P[i] * P[i];
    free(D);
    free(P);
    return s;
}

static double agreement(const uint8_t *a, const uint8_t *b) {
    size_t same = 0;
    for (size_t i = 0; i < NW; i++) same += a[i] == b[i];
    return (double)same / NW;
}

/* every group of m has exactly m - n pruned; W zero where pruned */
static int nm_valid(const float *W, const uint8_t *mask, int n, int m) {
    for (int r = 0; r < ROWS; r++)
        for (int g = 0; g < COLS; g += m) {
            int p = 0;
            for (int j = 0; j < m; j++) {
                p += mask[r * COLS + g + j];
                if (mask[r * COLS + g + j] && W[r * COLS + g + j] != 0.0f) return 0;
            }
            if (p != m - n) return 0;
        }
    return 1;
}

static int64_t count(const uint8_t *mask) {
    int64_t c = 0;
    for (size_t i = 0; i < NW; i++) c += mask[i] != 0;
    return c;
}

static int load_fixture(void) {
    uint8_t *raw = malloc((size_t)ROWS * (COLS / 32) * sizeof(block_q4_1));
    uint16_t *xh = malloc(sizeof(uint16_t) * NTOK * COLS);
    int rc = load("tests/fixtures/prune/W.q4_1", raw, (size_t)ROWS * (COLS / 32) * sizeof(block_q4_1));
    if (!rc) rc = load("tests/fixtures/prune/X.f16", xh, sizeof(uint16_t) * NTOK * COLS);
    if (!rc) rc = mend_read_file(test_src("tests/fixtures/prune/summary.txt"), 1 << 16, &g_summary, NULL);
    if (!rc) {
        dequantize_row_q4_1_ref((const block_q4_1 *)raw, g_W, NW);
        for (size_t i = 0; i < (size_t)NTOK * COLS; i++) g_X[i] = mend_fp16_to_f32(xh[i]);
    }
    free(raw);
    free(xh);
    return rc;
}

static void test_inputs(void) {
    /* the weights and inputs are those of the reference */
    double ws = 0, ws2 = 0, xs = 0, xs2 = 0, rw, rw2, rx, rx2;
    for (size_t i = 0; i < NW; i++) ws += g_W[i], ws2 += (double)g_W[i] * g_W[i];
    for (size_t i = 0; i < (size_t)NTOK * COLS; i++) xs += g_X[i], xs2 += (double)g_X[i] * g_X[i];
    int rows, cols, ntok;
    CHECK(sscanf(g_summary, "W rows %d cols %d sum %lf sumsq %lf", &rows, &cols, &rw, &rw2) == 4);
    const char *l2 = strchr(g_summary, '\n');
    CHECK(l2 && sscanf(l2 + 1, "X tokens %d sum %lf sumsq %lf", &ntok, &rx, &rx2) == 3);
    CHECK(rows == ROWS && cols == COLS && ntok == NTOK);
    CHECK_NEAR(ws, rw, 1e-9 * fabs(rw2));
    CHECK_NEAR(ws2, rw2, 1e-10 * rw2);
    CHECK_NEAR(xs, rx, 1e-9 * rx2);
    CHECK_NEAR(xs2, rx2, 1e-10 * rx2);
}

static void test_magnitude(void) {
    float *Q = malloc(sizeof(float) * NW);
    uint8_t *mask = malloc(NW), *ref = malloc(NW);
    const struct { const char *key; mend_sparsity s; } cfg[] = {
        {"magnitude_50", mend_sparsity_unstructured(0.5)},
        {"magnitude_2_4", mend_sparsity_nm(2, 4)},
        {"magnitude_4_8", mend_sparsity_nm(4, 8)},
    };
    for (int c = 0; c < 3; c++) {
        memcpy(Q, g_W, sizeof(float) * NW);
        CHECK_OK(mend_prune_magnitude(Q, ROWS, COLS, &cfg[c].s, mask));
        double e_ref;
        long p_ref;
        if (ref_line(cfg[c].key, &e_ref, &p_ref)) {
            CHECK(0);
            continue;
        }
        CHECK(count(mask) == p_ref);
        double e = recon_err(Q);
        CHECK_MSG(fabs(e - e_ref) <= 1e-4 * e_ref, "%s: error %.6g, reference %.6g", cfg[c].key, e, e_ref);
        if (cfg[c].s.m) CHECK(nm_valid(Q, mask, cfg[c].s.n, cfg[c].s.m));
        if (c < 2 && load_mask(cfg[c].key, ref) == 0) {
            double a = agreement(mask, ref);
            CHECK_MSG(a == 1.0, "%s: masks agree on %.6f", cfg[c].key, a);
        }
        printf("%-14s error %.6g (reference %.6g)\n", cfg[c].key, e, e_ref);
    }
    free(Q);
    free(mask);
    free(ref);
}

static void test_wanda(void) {
    float *Q = malloc(sizeof(float) * NW);
    uint8_t *mask = malloc(NW), *ref = malloc(NW);
    const struct { const char *key; mend_sparsity s; } cfg[] = {
        {"wanda_50", mend_sparsity_unstructured(0.5)},
        {"wanda_2_4", mend_sparsity_nm(2, 4)},
        {"wanda_4_8", mend_sparsity_nm(4, 8)},
    };
    for (int c = 0; c < 3; c++) {
        memcpy(Q, g_W, sizeof(float) * NW);
        CHECK_OK(mend_prune_wanda(Q, ROWS, COLS, g_xnorm, &cfg[c].s, mask));
        double e_ref;
        long p_ref;
        if (ref_line(cfg[c].key, &e_ref, &p_ref) || load_mask(cfg[c].key, ref)) {
            CHECK(0);
            continue;
        }
        CHECK(count(mask) == p_ref);
        if (cfg[c].s.m) {
            CHECK(nm_valid(Q, mask, cfg[c].s.n, cfg[c].s.m));
        } else {   /* per-row sparsity */
            int ok = 1;
            for (int r = 0; r < ROWS; r++) {
                int p = 0;
                for (int j = 0; j < COLS; j++) p += mask[r * COLS + j];
                ok &= p == COLS / 2;
            }
            CHECK(ok);
        }
        double a = agreement(mask, ref), e = recon_err(Q);
        CHECK_MSG(a >= 0.99, "%s: masks agree on %.6f", cfg[c].key, a);
        CHECK_MSG(fabs(e - e_ref) <= 0.01 * e_ref, "%s: error %.6g, reference %.6g", cfg[c].key, e, e_ref);
        printf("%-14s mask agreement %.6f, error %.6g (reference %.6g)\n", cfg[c].key, a, e, e_ref);
    }
    free(Q);
    free(mask);
    free(ref);
}

static void test_sparsegpt(void) {
    float *Q = malloc(sizeof(float) * NW);
    uint8_t *mask = malloc(NW), *ref = malloc(NW);
    const struct { const char *key; mend_sparsity s; } cfg[] = {
        {"sparsegpt_50", mend_sparsity_unstructured(0.5)},
        {"sparsegpt_2_4", mend_sparsity_nm(2, 4)},
        {"sparsegpt_4_8", mend_sparsity_nm(4, 8)},
    };
    for (int c = 0; c < 3; c++) {
        memcpy(Q, g_W, sizeof(float) * NW);
        mend_sparsegpt_opts o = {.sp = cfg[c].s};
        mend_sparsegpt_stats st;
        CHECK_OK(mend_sparsegpt(Q, ROWS, COLS, g_H, &o, mask, NULL, &st));
        double e_ref;
        long p_ref;
        if (ref_line(cfg[c].key, &e_ref, &p_ref)) {
            CHECK(0);
            continue;
        }
        CHECK(count(mask) == p_ref && st.pruned == p_ref && st.block == 128);
        CHECK(mend_count_zeros(Q, NW) >= p_ref);
        if (cfg[c].s.m) CHECK(nm_valid(Q, mask, cfg[c].s.n, cfg[c].s.m));
        double e = recon_err(Q);
        CHECK_MSG(fabs(e - e_ref) <= 0.01 * e_ref, "%s: error %.6g, reference %.6g", cfg[c].key, e, e_ref);
        printf("%-14s error %.6g (reference %.6g, ratio %.5f), loss estimate %.6g", cfg[c].key, e, e_ref, e / e_ref, st.loss);
        if (c == 0 && load_mask(cfg[c].key, ref) == 0) printf(", mask agreement %.6f", agreement(mask, ref));
        printf("\n");
    }
    free(Q);
    free(mask);
    free(ref);
}

/* Joint SparseGPT + q4_0, and Wanda 2:4 followed by GPTQ with its mask:
 * packed blocks dequantize to Ŵ exactly, pruned weights stay exact zeros,
 * and both beat pruning followed by round-to-nearest. */
static void test_joint(void) {
    const size_t rs = mend_row_size(MEND_TYPE_Q4_0, COLS);
    float *Q = malloc(sizeof(float) * NW), *R = malloc(sizeof(float) * NW), *D = malloc(sizeof(float) * NW);
    uint8_t *mask = malloc(NW), *pk = malloc(rs * ROWS);
    const mend_qfmt q40 = mend_qfmt_ggml(MEND_TYPE_Q4_0);

    memcpy(Q, g_W, sizeof(float) * NW);
    mend_sparsegpt_opts o = {.sp = mend_sparsity_unstructured(0.5), .quantize = 1, .fmt = q40};
    CHECK_OK(mend_sparsegpt(Q, ROWS, COLS, g_H, &o, mask, pk, NULL));
    for (int r = 0; r < ROWS; r++) CHECK_OK(mend_dequantize_row(MEND_TYPE_Q4_0, pk + r * rs, D + (size_t)r * COLS, COLS));
    CHECK(memcmp(D, Q, sizeof(float) * NW) == 0);
    int zeros_ok = 1;
    for (size_t i = 0; i < NW; i++)
        if (mask[i] && D[i] != 0.0f) zeros_ok = 0;
    CHECK(zeros_ok);
    CHECK(count(mask) == NW / 2);
    const double e_joint = recon_err(Q);
    printf("sparsegpt 50%% + q4_0 joint: %lld exact zeros (%.4f)\n", (long long)mend_count_zeros(Q, NW),
           (double)mend_count_zeros(Q, NW) / NW);
    /* SparseGPT alone, then RTN onto q4_0 */
    memcpy(R, g_W, sizeof(float) * NW);
    mend_sparsegpt_opts p = {.sp = mend_sparsity_unstructured(0.5)};
    CHECK_OK(mend_sparsegpt(R, ROWS, COLS, g_H, &p, NULL, NULL, NULL));
    const double e_prune = recon_err(R);
    CHECK_OK(mend_rtn_quantize(R, ROWS, COLS, &q40, NULL));
    const double e_rtn = recon_err(R);
    CHECK_MSG(e_joint < e_rtn, "joint %.6g, prune then RTN %.6g", e_joint, e_rtn);
    CHECK(e_joint > e_prune);
    printf("sparsegpt 50%% + q4_0: joint %.6g, prune then RTN %.6g (prune alone %.6g)\n", e_joint, e_rtn, e_prune);

    /* Wanda 2:4, then GPTQ keeping the mask */
    memcpy(Q, g_W, sizeof(float) * NW);
    const mend_sparsity s24 = mend_sparsity_nm(2, 4);
    CHECK_OK(mend_prune_wanda(Q, ROWS, COLS, g_xnorm, &s24, mask));
    memcpy(R, Q, sizeof(float) * NW);
    const double e_w = recon_err(Q);
    mend_gptq_opts go = {.fmt = q40};
    mend_gptq_stats gs;
    CHECK_OK(mend_gptq_quantize_masked(Q, ROWS, COLS, g_H, &go, mask, pk, &gs));
    for (int r = 0; r < ROWS; r++) CHECK_OK(mend_dequantize_row(MEND_TYPE_Q4_0, pk + r * rs, D + (size_t)r * COLS, COLS));
    CHECK(memcmp(D, Q, sizeof(float) * NW) == 0);
    CHECK(nm_valid(Q, mask, 2, 4));
    const double e_gptq = recon_err(Q);
    CHECK_OK(mend_rtn_quantize(R, ROWS, COLS, &q40, NULL));
    CHECK(nm_valid(R, mask, 2, 4));   /* RTN on q4_0 keeps zeros too */
    const double e_r = recon_err(R);
    CHECK_MSG(e_gptq < e_r, "wanda 2:4 then gptq %.6g, then RTN %.6g", e_gptq, e_r);
    printf("wanda 2:4 + q4_0: GPTQ with mask %.6g, RTN %.6g (pruned only %.6g)\n", e_gptq, e_r, e_w);
    go.act_order = 1;
    CHECK_ERR(mend_gptq_quantize_masked(Q, ROWS, COLS, g_H, &go, mask, NULL, NULL), MEND_EUNSUPPORTED, "act-order");
    go.act_order = 0;

    /* mend_prune_compress (the per-matrix step of `mend compress`) composes the same passes */
    uint8_t *pk2 = malloc(rs * ROWS);
    double loss = 0;
    mend_prune_opts po = {MEND_PRUNE_WANDA, s24, 0};
    memcpy(R, g_W, sizeof(float) * NW);
    CHECK_OK(mend_prune_compress(R, ROWS, COLS, g_H, &po, &go, 1, pk2, &loss));
    CHECK(memcmp(R, Q, sizeof(float) * NW) == 0 && memcmp(pk2, pk, rs * ROWS) == 0);
    CHECK(fabs(loss - gs.loss) <= 1e-9 * gs.loss);
    po = (mend_prune_opts){MEND_PRUNE_SPARSEGPT, mend_sparsity_unstructured(0.5), 1};
    memcpy(R, g_W, sizeof(float) * NW);
    CHECK_OK(mend_prune_compress(R, ROWS, COLS, g_H, &po, &go, 1, pk2, NULL));
    CHECK(fabs(recon_err(R) - e_joint) <= 1e-9 * e_joint);
    /* magnitude 50% stored as f16: conversion only, zeros kept */
    const mend_qfmt f16 = mend_qfmt_ggml(MEND_TYPE_F16);
    mend_gptq_opts fo = {.fmt = f16};
    uint16_t *h16 = malloc(sizeof(uint16_t) * NW);
    po = (mend_prune_opts){MEND_PRUNE_MAGNITUDE, mend_sparsity_unstructured(0.5), 0};
    memcpy(R, g_W, sizeof(float) * NW);
    CHECK_OK(mend_prune_compress(R, ROWS, COLS, NULL, &po, &fo, 0, h16, NULL));
    int64_t z = 0;
    for (size_t i = 0; i < NW; i++) z += mend_fp16_to_f32(h16[i]) == 0.0f;
    CHECK(z >= NW / 2 && z == mend_count_zeros(R, NW));
    CHECK_ERR(mend_prune_compress(R, ROWS, COLS, NULL, &po, &fo, 1, h16, NULL), MEND_EINVAL, "Hessian");
    CHECK_ERR(mend_prune_compress(R, ROWS, COLS, g_H, &po, &fo, 1, h16, NULL), MEND_EINVAL, "float type");
    po.method = MEND_PRUNE_WANDA;
    CHECK_ERR(mend_prune_compress(R, ROWS, COLS, NULL, &po, &fo, 0, h16, NULL), MEND_EINVAL, "calibration");
    int meth = -1;
    CHECK_OK(mend_prune_method_parse("sparsegpt", &meth));
    CHECK(meth == MEND_PRUNE_SPARSEGPT);
    CHECK_ERR(mend_prune_method_parse("obs", &meth), MEND_EINVAL, "wanda");
    free(h16);
    free(pk2);

    free(Q);
    free(R);
    free(D);
    free(mask);
    free(pk);
}

/* hand-made cases: ties, N:M order, tiny SparseGPT against a direct computation */
static void test_small(void) {
    float s[8] = {3, 1, 1, 2, 0, 5, 1, 4};
    uint8_t m[8];
    uint64_t keys[8];
    mend_prune_select(s, 8, 3, m, keys);   /* 0 (idx 4), then the 1s at idx 1 and 2 */
    const uint8_t want[8] = {0, 1, 1, 0, 1, 0, 0, 0};
    CHECK(memcmp(m, want, 8) == 0);
    mend_prune_select(s, 8, 0, m, keys);
    CHECK(memchr(m, 1, 8) == NULL);
    mend_prune_select_nm(s, 8, 2, 4, m);   /* groups {3,1,1,2} -> idx 1,2; {0,5,1,4} -> idx 4,6 */
    const uint8_t want_nm[8] = {0, 1, 1, 0, 1, 0, 1, 0};
    CHECK(memcmp(m, want_nm, 8) == 0);

    float W[2 * 8] = {1, -2, 3, -4, 5, -6, 7, -8, 0.5f, 0.25f, -0.125f, 4, 0, 0, 1, -1};
    const mend_sparsity half = mend_sparsity_unstructured(0.5);
    CHECK_OK(mend_prune_magnitude(W, 2, 8, &half, NULL));
    const float wm[16] = {0, -2, 3, -4, 5, -6, 7, -8, 0, 0, 0, 4, 0, 0, 0, 0};
    CHECK(memcmp(W, wm, sizeof wm) == 0);

    /* SparseGPT with H = I: U = I / sqrt(1 + λ), no error feedback, so it
     * is magnitude pruning with one threshold per 8-column slab */
    float A[2 * 8] = {1, -2, 3, -4, 5, -6, 7, -8, 0.5f, 0.25f, -0.125f, 4, 0.75f, 9, 1, -1};
    double H[64] = {0};
    for (int i = 0; i < 8; i++) H[i * 8 + i] = 1;
    mend_sparsegpt_opts o = {.sp = half};
    uint8_t mk[16];
    CHECK_OK(mend_sparsegpt(A, 2, 8, H, &o, mk, NULL, NULL));
    const float wa[16] = {0, 0, 3, -4, 5, -6, 7, -8, 0, 0, 0, 4, 0, 9, 0, 0};
    CHECK(memcmp(A, wa, sizeof wa) == 0);
}

static void test_bad(void) {
    mend_sparsity s;
    CHECK_OK(mend_sparsity_parse(&s, "2:4"));
    CHECK(s.n == 2 && s.m == 4 && s.ratio == 0.5);
    CHECK_OK(mend_sparsity_parse(&s, "50%"));
    CHECK(s.m == 0 && s.ratio == 0.5);
    CHECK_OK(mend_sparsity_parse(&s, "0.7"));
    CHECK(s.m == 0 && fabs(s.ratio - 0.7) < 1e-15);
    char buf[32];
    CHECK(strcmp(mend_sparsity_name(&s, buf, sizeof buf), "70%") == 0);
    CHECK_ERR(mend_sparsity_parse(&s, "4:2"), MEND_EINVAL, "N < M");
    CHECK_ERR(mend_sparsity_parse(&s, "1.5"), MEND_EINVAL, "[0, 1)");
    CHECK_ERR(mend_sparsity_parse(&s, "2:x"), MEND_EINVAL, "N:M");
    CHECK_ERR(mend_sparsity_parse(&s, ""), MEND_EINVAL, "empty");
    CHECK_ERR(mend_sparsity_parse(&s, "50%%"), MEND_EINVAL, "expected");

    float W[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const mend_sparsity s24 = mend_sparsity_nm(2, 4), s28 = mend_sparsity_nm(2, 8);
    CHECK_ERR(mend_prune_magnitude(W, 2, 6, &s24, NULL), MEND_EINVAL, "multiple of 4");
    CHECK_ERR(mend_prune_magnitude(NULL, 2, 6, &s24, NULL), MEND_EINVAL, "NULL");
    CHECK_ERR(mend_prune_magnitude(W, 0, 6, &s24, NULL), MEND_ERANGE, "matrix");
    W[3] = NAN;
    const mend_sparsity half = mend_sparsity_unstructured(0.5);
    CHECK_ERR(mend_prune_magnitude(W, 2, 6, &half, NULL), MEND_EINVAL, "not finite");
    W[3] = 4;
    float xn[6] = {1, 1, -1, 1, 1, 1};
    CHECK_ERR(mend_prune_wanda(W, 2, 6, xn, &half, NULL), MEND_EINVAL, "activation norm");
    CHECK_ERR(mend_prune_wanda(W, 2, 6, NULL, &half, NULL), MEND_EINVAL, "NULL");

    double H[36] = {0};
    for (int i = 0; i < 6; i++) H[i * 6 + i] = 1;
    mend_sparsegpt_opts o = {.sp = half};
    uint8_t pk[64];
    CHECK_ERR(mend_sparsegpt(W, 2, 6, H, &o, NULL, pk, NULL), MEND_EINVAL, "packed output");
    H[7] = -1;
    CHECK_ERR(mend_sparsegpt(W, 2, 6, H, &o, NULL, NULL, NULL), MEND_EINVAL, "diagonal");
    H[7] = 1;
    o.quantize = 1;
    o.fmt = mend_qfmt_ggml(MEND_TYPE_Q4_0);
    CHECK_ERR(mend_sparsegpt(W, 2, 6, H, &o, NULL, NULL, NULL), MEND_EINVAL, NULL);   /* 6 is not a multiple of 32 */
    o.quantize = 0;
    o.sp = s28;
    CHECK_ERR(mend_sparsegpt(W, 2, 6, H, &o, NULL, NULL, NULL), MEND_EINVAL, "multiple of 8");
    o.sp.ratio = 1.0;
    o.sp.m = 0;
    CHECK_ERR(mend_sparsegpt(W, 2, 6, H, &o, NULL, NULL, NULL), MEND_EINVAL, "[0, 1)");
}

int main(void) {
    test_small();
    test_bad();
    g_W = malloc(sizeof(float) * NW);
    g_X = malloc(sizeof(float) * NTOK * COLS);
    g_H = malloc(sizeof(double) * COLS * COLS);
    g_xnorm = malloc(sizeof(float) * COLS);
    if (load_fixture()) {
        CHECK(0);
        return test_finish();
    }
    mend_hessian h;
    CHECK_OK(mend_hessian_init(&h, COLS));
    for (int b = 0; b < NTOK; b += 128) CHECK_OK(mend_hessian_add(&h, g_X + (size_t)b * COLS, 128));
    CHECK_OK(mend_hessian_get(&h, g_H));
    mend_hessian_free(&h);
    CHECK_OK(mend_wanda_norms_from_hessian(g_H, COLS, g_xnorm));

    test_inputs();
    test_magnitude();
    test_wanda();
    test_sparsegpt();
    test_joint();
    free(g_W);
    free(g_X);
    free(g_H);
    free(g_xnorm);
    free(g_summary);
    return test_finish();
}
