/* Batched products on repacked q4_0 / q4_1 / q5_0 / q2_K / q3_K / q4_K / q6_K
 * weights (kernels/qgemm.h):
 *  - the SIMD kernels give the same floats, bit for bit, as their _ref twins
 *    (same integer sums, same fused steps in the same order), for every
 *    batch size 1..19 (full tiles and every remainder) and thread count, on
 *    every variant the CPU has: AVX2 without and with AVX-VNNI, AVX-512 VNNI
 *    (x86-64), NEON without and with the dot product (AArch64);
 *  - both match a double reference computed from the dequantized weights and
 *    the dequantized activations (the same q8_0 / q8_1 / q8_K quantization as
 *    mend_qmatmul) within 1e-5 relative to sum |w a|, and mend_qmatmul on the
 *    plain layout within the same bound;
 *  - unsupported shapes and short scratch are refused. */
#include <stdalign.h>
#include <stdint.h>
#include <string.h>

#include "test.h"
#include "kernels/cpu.h"
#include "kernels/qgemm.h"
#include "kernels/qmatmul.h"
#include "kernels/quants.h"
#include "util/util.h"

#include "test_rng.h"

/* random weights (rows, cols) in wtype, 64-byte aligned */
static void *make_w(uint32_t t, int64_t rows, int64_t cols) {
    const size_t rs = mend_row_size(t, cols);
    uint8_t *w = aligned_alloc(64, ((size_t)rows * rs + 63) & ~(size_t)63);
    float *tmp = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = w + (size_t)r * rs;
        if (t == MEND_TYPE_Q4_0 || t == MEND_TYPE_Q4_1 || t == MEND_TYPE_Q5_0) {
            const float scale = ldexpf(1.0f, rndi(-3, 2));
            for (int64_t j = 0; j < cols; j++) tmp[j] = rndn() * scale + (t == MEND_TYPE_Q4_1 ? scale : 0.0f);
            if (t == MEND_TYPE_Q4_0) quantize_row_q4_0_ref(tmp, (block_q4_0 *)row, cols);
            else if (t == MEND_TYPE_Q5_0) quantize_row_q5_0_ref(tmp, (block_q5_0 *)row, cols);
            else quantize_row_q4_1_ref(tmp, (block_q4_1 *)row, cols);
            if (r == 0 && t == MEND_TYPE_Q5_0) {   /* largest weights (31) meet largest activations */
                memset(((block_q5_0 *)row)->qs, 0xFF, QK5_0 / 2);
                memset(((block_q5_0 *)row)->qh, 0xFF, 4);
            } else if (r == 0) {
                memset(t == MEND_TYPE_Q4_0 ? ((block_q4_0 *)row)->qs : ((block_q4_1 *)row)->qs, 0xFF, 16);
            }
        } else if (t != MEND_TYPE_Q2_K) {   /* q3_K / q4_K / q6_K: random blocks, then the extremes */
            const size_t bs = rs / (size_t)(cols / QK_K);
            for (size_t j = 0; j < rs; j++) row[j] = (uint8_t)rnd();
            for (int64_t k = 0; k < cols / QK_K; k++) {
                uint8_t *blk = row + (size_t)k * bs;
                const mend_half d = mend_f32_to_fp16(ldexpf(0.5f + rndu(), rndi(-10, -6)) * (rnd() & 1 ? -1 : 1));
                const mend_half dmin = mend_f32_to_fp16(ldexpf(0.5f + rndu(), rndi(-10, -7)) * (rnd() & 3 ? 1 : -1));
                /* rows 0 and 1, first super-block: the largest stored quants with the largest scales
                 * (and mins), and the smallest quants with the scale of the other sign */
                const int ext = k == 0 && r < 2 ? (int)r + 1 : 0;
                if (t == MEND_TYPE_Q4_K) {
                    block_q4_K *b = (block_q4_K *)blk;
                    b->d = d;
                    b->dmin = dmin;
                    if (ext) {
                        memset(b->qs, ext == 1 ? 0xFF : 0x00, sizeof b->qs);
                        memset(b->scales, 0xFF, sizeof b->scales);   /* scales and mins 63 */
                    }
                } else if (t == MEND_TYPE_Q3_K) {
                    block_q3_K *b = (block_q3_K *)blk;
                    b->d = d;
                    if (ext) {   /* row 0: q = 3 with scales -32; row 1: q = -4 with scales 31 */
                        memset(b->qs, ext == 1 ? 0xFF : 0x00, sizeof b->qs);
                        memset(b->hmask, ext == 1 ? 0xFF : 0x00, sizeof b->hmask);
                        memset(b->scales, ext == 1 ? 0x00 : 0xFF, sizeof b->scales);
                    }
                } else {
                    block_q6_K *b = (block_q6_K *)blk;
                    b->d = d;
                    if (ext) {   /* row 0: q = 31 with scales -128; row 1: q = -32 with scales 127 */
                        memset(b->ql, ext == 1 ? 0xFF : 0x00, sizeof b->ql);
                        memset(b->qh, ext == 1 ? 0xFF : 0x00, sizeof b->qh);
                        memset(b->scales, ext == 1 ? 0x80 : 0x7F, sizeof b->scales);
                    }
                }
            }
        } else {   /* q2_K: random quants, scales and mins, sane fp16 d / dmin */
            block_q2_K *b = (block_q2_K *)row;
            for (int64_t k = 0; k < cols / QK_K; k++) {
                for (size_t j = 0; j < sizeof b[k].qs; j++) b[k].qs[j] = (uint8_t)rnd();
                for (int s = 0; s < 16; s++) b[k].scales[s] = (uint8_t)rnd();
                if (k == 0) b[k].scales[3] = 0xFF;   /* largest scale and min */
                b[k].d = mend_f32_to_fp16(ldexpf(0.5f + rndu(), rndi(-9, -6)) * (rnd() & 1 ? -1 : 1));
                b[k].dmin = mend_f32_to_fp16(ldexpf(0.5f + rndu(), rndi(-10, -7)));
            }
        }
    }
    free(tmp);
    return w;
}

/* out (n, rows) in double from dequantized W and the activations as the
 * kernels see them; mag (n, rows) = sum |w a| */
static void reference(uint32_t t, const void *w, int64_t rows, int64_t cols, const float *x, int n, double *out,
                      double *mag) {
    float *wd = malloc((size_t)cols * sizeof(float)), *ad = malloc((size_t)cols * sizeof(float));
    const uint32_t at = mend_qdot_act_type(t);
    void *aq = malloc(mend_row_size(at, cols));
    const size_t rs = mend_row_size(t, cols);
    for (int i = 0; i < n; i++) {
        mend_qdot_kernel k;
        mend_qdot_kernel_get(t, MEND_SIMD_SCALAR, &k);
        k.quantize(x + (size_t)i * cols, aq, cols);
        if (at == MEND_TYPE_Q8_0) {
            const block_q8_0 *b = aq;
            for (int64_t j = 0; j < cols; j++) ad[j] = mend_fp16_to_f32(b[j / 32].d) * b[j / 32].qs[j % 32];
        } else if (at == MEND_TYPE_Q8_1) {
            const block_q8_1 *b = aq;
            for (int64_t j = 0; j < cols; j++) ad[j] = mend_fp16_to_f32(b[j / 32].d) * b[j / 32].qs[j % 32];
        } else {
            const block_q8_K *b = aq;
            for (int64_t j = 0; j < cols; j++) ad[j] = b[j / QK_K].d * b[j / QK_K].qs[j % QK_K];
        }
        for (int64_t r = 0; r < rows; r++) {
            mend_dequantize_row(t, (const uint8_t *)w + (size_t)r * rs, wd, cols);
            double s = 0.0, m = 0.0;
            for (int64_t j = 0; j < cols; j++) {
                s += (double)wd[j] * ad[j];
                m += fabs((double)wd[j] * ad[j]);
            }
            if (at == MEND_TYPE_Q8_1) {
                const block_q8_1 *b = aq;
                const block_q4_1 *wb = (const block_q4_1 *)((const uint8_t *)w + (size_t)r * rs);
                for (int64_t k = 0; k < cols / 32; k++) {
                    int q = 0;
                    for (int j = 0; j < 32; j++) q += b[k].qs[j];
                    const double e = (double)mend_fp16_to_f32(b[k].s) - (double)mend_fp16_to_f32(b[k].d) * q;
                    s += (double)mend_fp16_to_f32(wb[k].m) * e;
                    m += fabs((double)mend_fp16_to_f32(wb[k].m) * mend_fp16_to_f32(b[k].s));
                }
            }

            out[(size_t)i * rows + r] = s;
            mag[(size_t)i * rows + r] = m;
        }
    }
    free(wd);
    free(ad);
    free(aq);
}

/* The kernel variants this CPU has, each forced in turn (all capped by
 * what the test started with, MEND_ISA included): on x86-64 plain AVX2, AVX2
 * with AVX-VNNI, AVX-512 VNNI; on AArch64 NEON without and with the dot
 * product. variant_set(N_VARIANTS) restores the start. */
#if defined(__aarch64__)
enum { V_NEON, V_NEON_DOT, N_VARIANTS };
static const char *const variant_name[] = {"neon without dotprod", "neon with dotprod"};
#else
enum { V_AVX2, V_AVXVNNI, V_AVX512, N_VARIANTS };
static const char *const variant_name[] = {"avx2 without avx-vnni", "avx2 with avx-vnni", "avx512"};
#endif
static int start_level = -1, start_dotprod;
static int variant_tested[N_VARIANTS];

static int variant_set(int v) {
    if (start_level < 0) {
        start_level = mend_cpu_max_level();
        start_dotprod = mend_cpu_has_neon_dotprod();
    }
    mend_cpu_disable_avx_vnni(0);
    mend_cpu_disable_dotprod(0);
    if (v == N_VARIANTS) {
        mend_set_isa(getenv("MEND_ISA"));   /* the level and extensions the test was run with */
        return 1;
    }
#if defined(__aarch64__)
    if (MEND_SIMD_NEON > start_level || (v == V_NEON_DOT && !start_dotprod)) return 0;
    mend_cpu_set_max_level(MEND_SIMD_NEON);
    if (v == V_NEON) mend_cpu_disable_dotprod(1);
    const int ok = v == V_NEON ? mend_cpu_has_neon() : mend_cpu_has_neon_dotprod();
#else
    const int level = v == V_AVX512 ? MEND_SIMD_AVX512 : MEND_SIMD_AVX2;
    if (level > start_level) return 0;
    mend_cpu_set_max_level(level);
    if (v == V_AVX2) mend_cpu_disable_avx_vnni(1);
    const int ok = v == V_AVX2 ? mend_cpu_has_avx2()
                 : v == V_AVXVNNI ? mend_cpu_has_avx_vnni() : mend_cpu_has_avx512_vnni();
#endif
    variant_tested[v] |= ok;
    return ok;
}

static void check(uint32_t t, int64_t rows, int64_t cols, int nmax) {
    const char *tn = mend_type_name(t);
    CHECK(mend_qgemm_supported(t, rows, cols));
    void *w = make_w(t, rows, cols);
    const size_t pb = mend_qgemm_packed_size(t, rows, cols);
    CHECK(pb > 0);
    uint8_t *wp = aligned_alloc(64, (pb + 63) & ~(size_t)63);
    /* in two halves, as a loader splitting the groups among threads would */
    const int64_t G = rows / QGEMM_ROWS;
    mend_qgemm_pack(wp, w, t, rows, cols, G / 2, G);
    mend_qgemm_pack(wp, w, t, rows, cols, 0, G / 2);
    float *x = malloc((size_t)nmax * cols * sizeof(float));
    for (int64_t j = 0; j < nmax * cols; j++) x[j] = rndn() * ldexpf(1.0f, rndi(-2, 1));
    for (int j = 0; j < 32; j++) x[j] = 0.75f;               /* all 127 after quantization */
    for (int j = 32; j < 64 && j < cols; j++) x[j] = 0.0f;   /* an all-zero block in row 0 */
    if (nmax > 1 && cols % QK_K == 0)   /* row 1's first super-block: every quant -127 */
        for (int j = 0; j < QK_K; j++) x[cols + j] = -1.0f;
    double *ref = malloc((size_t)nmax * rows * sizeof(double)), *mag = malloc((size_t)nmax * rows * sizeof(double));
    reference(t, w, rows, cols, x, nmax, ref, mag);
    float *o_ref = malloc((size_t)nmax * rows * sizeof(float)), *o = malloc((size_t)nmax * rows * sizeof(float));
    float *o_mm = malloc((size_t)nmax * rows * sizeof(float));
    const size_t sb = mend_qgemm_scratch_size(t, nmax, cols);
    void *scratch = aligned_alloc(64, (sb + 63) & ~(size_t)63);
    for (int n = 1; n <= nmax; n++) {
        CHECK_OK(mend_qgemm(o_ref, rows, x, cols, n, wp, t, rows, cols, scratch, sb, 1, MEND_SIMD_SCALAR));
        CHECK_OK(mend_qmatmul_ex(o_mm, rows, x, cols, n, w, t, rows, cols, NULL, 0, 1, -1));
        int bad = 0;
        for (int i = 0; i < n; i++)
            for (int64_t r = 0; r < rows; r++) {
                const size_t e = (size_t)i * rows + r;
                const double tol = 1e-5 * mag[e] + 1e-30;
                if (fabs(o_ref[e] - ref[e]) > tol || fabs(o_mm[e] - ref[e]) > tol) {
                    if (bad++ < 3)
                        fprintf(stderr, "%s %lldx%lld n %d: out[%d][%lld] ref-kernel %g qmatmul %g double %g\n", tn,
                                (long long)rows, (long long)cols, n, i, (long long)r, o_ref[e], o_mm[e], ref[e]);
                }
            }
        CHECK_MSG(bad == 0, "%s %lld x %lld, n %d: %d outputs off the double reference", tn, (long long)rows,
                  (long long)cols, n, bad);
        for (int v = 0; v < N_VARIANTS; v++) {
            if (!variant_set(v)) continue;
            for (int threads = 1; threads <= 3; threads++) {
                memset(o, 0xFF, (size_t)n * rows * sizeof(float));
                CHECK_OK(mend_qgemm(o, rows, x, cols, n, wp, t, rows, cols, NULL, 0, threads, -1));
                CHECK_MSG(memcmp(o, o_ref, (size_t)n * rows * sizeof(float)) == 0,
                          "%s %lld x %lld, n %d, %d threads: %s differs from _ref", tn, (long long)rows,
                          (long long)cols, n, threads, variant_name[v]);
            }
        }
        variant_set(N_VARIANTS);
    }
    /* strided output: a wider ldo leaves the gaps alone */
    {
        const int n = 5;
        const size_t ldo = (size_t)rows + 7;
        float *ow = malloc((size_t)n * ldo * sizeof(float));
        for (size_t j = 0; j < (size_t)n * ldo; j++) ow[j] = -3.0f;
        CHECK_OK(mend_qgemm(ow, ldo, x, cols, n, wp, t, rows, cols, NULL, 0, 2, -1));
        int bad = 0;
        for (int i = 0; i < n; i++)
            for (size_t r = 0; r < ldo; r++) {
                const float v = ow[(size_t)i * ldo + r];
                if (r < (size_t)rows ? v != o_ref[(size_t)i * rows + r] : v != -3.0f) bad++;
            }
        CHECK_MSG(bad == 0, "%s strided output: %d wrong", tn, bad);
        free(ow);
    }
    free(w); free(wp); free(x); free(ref); free(mag); free(o_ref); free(o); free(o_mm); free(scratch);
}

static void test_errors(void) {
    CHECK(!mend_qgemm_supported(MEND_TYPE_Q4_0, 24, 64));      /* rows not a multiple of 16 */
    CHECK(!mend_qgemm_supported(MEND_TYPE_Q4_0, 32, 48));
    CHECK(!mend_qgemm_supported(MEND_TYPE_Q2_K, 32, 96));
    CHECK(!mend_qgemm_supported(MEND_TYPE_Q5_0, 32, 48));
    CHECK(!mend_qgemm_supported(MEND_TYPE_Q5_1, 32, 64));
    CHECK(!mend_qgemm_supported(MEND_TYPE_Q4_K, 32, 768 + 32));   /* cols not a multiple of 256 */
    CHECK(!mend_qgemm_supported(MEND_TYPE_Q3_K, 32, 576));
    CHECK(!mend_qgemm_supported(MEND_TYPE_Q6_K, 40, 256));        /* rows not a multiple of 16 */
    CHECK(!mend_qgemm_supported(MEND_TYPE_Q5_K, 32, 256));
    CHECK(mend_qgemm_packed_size(MEND_TYPE_Q4_K, 32, 512) == 2 * 2 * QGEMM_KQ_SB(QGEMM_KQ_NIB));
    CHECK(mend_qgemm_packed_size(MEND_TYPE_Q3_K, 16, 256) == QGEMM_KQ_SB(QGEMM_KQ_NIB));
    CHECK(mend_qgemm_packed_size(MEND_TYPE_Q6_K, 48, 256) == 3 * QGEMM_KQ_SB(QGEMM_KQ_BYTE));
    CHECK(mend_qgemm_packed_size(MEND_TYPE_Q5_1, 32, 64) == 0);
    CHECK(mend_qgemm_packed_size(MEND_TYPE_Q5_0, 32, 64) == 32 * mend_row_size(MEND_TYPE_Q5_0, 64));
    CHECK(mend_qgemm_packed_size(MEND_TYPE_Q4_1, 32, 64) == 32 * mend_row_size(MEND_TYPE_Q4_1, 64));
    CHECK(mend_qgemm_packed_size(MEND_TYPE_Q4_0, 32, 64) == 32 * mend_row_size(MEND_TYPE_Q4_0, 64));
    float x[64] = {0}, out[32];
    alignas(64) uint8_t wp[32 * 36] = {0};
    CHECK_ERR(mend_qgemm(out, 32, x, 64, 1, wp, MEND_TYPE_Q4_0, 24, 64, NULL, 0, 1, -1), MEND_EUNSUPPORTED, "q4_0");
    alignas(64) uint8_t small[16];
    CHECK_ERR(mend_qgemm(out, 32, x, 64, 1, wp, MEND_TYPE_Q4_0, 32, 64, small, sizeof small, 1, -1), MEND_EINVAL,
              "scratch");
    CHECK_ERR(mend_qgemm(out, 16, x, 64, 1, wp, MEND_TYPE_Q4_0, 32, 64, NULL, 0, 1, -1), MEND_EINVAL, "ldo");
    CHECK_OK(mend_qgemm(out, 32, x, 64, 0, wp, MEND_TYPE_Q4_0, 32, 64, NULL, 0, 1, -1));
}

int main(void) {
    printf("qgemm: SIMD kernels %s\n", mend_qgemm_available() ? "available" : "not available (ref only)");
    check(MEND_TYPE_Q4_0, 32, 64, 19);
    check(MEND_TYPE_Q4_0, 48, 576, 11);
    check(MEND_TYPE_Q4_0, 16, 32, 9);
    check(MEND_TYPE_Q4_1, 32, 64, 19);
    check(MEND_TYPE_Q4_1, 48, 576, 11);
    check(MEND_TYPE_Q5_0, 32, 64, 19);
    check(MEND_TYPE_Q5_0, 48, 576, 11);
    check(MEND_TYPE_Q2_K, 32, 256, 19);
    check(MEND_TYPE_Q2_K, 48, 768, 9);
    check(MEND_TYPE_Q4_K, 32, 256, 19);
    check(MEND_TYPE_Q4_K, 48, 1536, 11);
    check(MEND_TYPE_Q4_K, 16, 2048, 5);
    check(MEND_TYPE_Q3_K, 32, 256, 19);
    check(MEND_TYPE_Q3_K, 48, 1536, 11);
    check(MEND_TYPE_Q6_K, 32, 256, 19);
    check(MEND_TYPE_Q6_K, 48, 1536, 11);
    test_errors();
    for (int v = 0; v < N_VARIANTS; v++)
        printf("qgemm: %s kernels %s\n", variant_name[v], variant_tested[v] ? "checked bit for bit" : "absent here");
    mend_qgemm_release_scratch();
    return test_finish();
}
