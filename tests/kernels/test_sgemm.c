/* mend's own f32 products (kernels/sgemm.h) against double references:
 *  - mend_sgemm_xt: out = beta * out + x · Wᵀ (the forward's shape),
 *  - mend_sgemm_nt: the same, packing x itself (bit-identical),
 *  - mend_sgemm_nn: out = beta * out + a · W (the backward's dX = dY · W),
 *    and mend_sgemm_nn_packed on W packed whole (bit-identical),
 *  - mend_sgemm_tn: out = beta * out + aᵀ · W (attention's dV, dK),
 * over shapes that hit every remainder: rows not a multiple of the row tile
 * (32 / 12), output columns not a multiple of the column tile (12 / 32, the
 * masked last strip), reductions across the NN kernel's 256-long blocks, row
 * strides larger than the row, beta 0, 1 and 0.5 over a prefilled output.
 * Each element must be within 1e-5 of the reference relative to sum |a w|
 * (plus an absolute 1e-30), and entries outside the written range must be
 * untouched. Where the CPU lacks AVX-512 both calls must refuse (return
 * non-zero) and leave the output alone. */
#include <stdint.h>

#include "test.h"
#include "kernels/sgemm.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float rndn(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return ((float)(rng_state >> 40) / 16777216.0f - 0.5f) * 4.0f;
}

/* out (n, ldo): compare columns [0, cols) with the reference, and the padding
 * columns [cols, ldo) with the sentinel they were filled with. */
static int compare(const float *out, const double *ref, const double *mag, int n, int cols, size_t ldo,
                   const char *what, int m) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < cols; j++) {
            const double d = fabs((double)out[(size_t)i * ldo + j] - ref[(size_t)i * cols + j]);
            if (d > 1e-5 * mag[(size_t)i * cols + j] + 1e-30) {
                if (!bad)
                    fprintf(stderr, "%s n=%d m=%d cols=%d: [%d][%d] %.9g vs %.9g\n", what, n, m, cols, i, j,
                            out[(size_t)i * ldo + j], ref[(size_t)i * cols + j]);
                bad++;
            }
        }
        for (size_t j = (size_t)cols; j < ldo; j++)
            if (out[(size_t)i * ldo + j] != -7.0f) bad++;
    }
    return bad;
}

/* ref, mag (n, cols) = beta * out + A · B in double, and the same sum of
 * magnitudes; A (i, p) = a[i * a_i + p * a_p], B (p, j) = b[p * b_p + j * b_j],
 * p < depth. */
static void reference(double *ref, double *mag, const float *out, size_t ldo, int n, int cols, int depth,
                      const float *a, size_t a_i, size_t a_p, const float *b, size_t b_p, size_t b_j, float beta) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < cols; j++) {
            const double o = out[(size_t)i * ldo + j];
            double s = beta * o, g = fabs(beta * o);
            for (int p = 0; p < depth; p++) {
                const double t = (double)a[(size_t)i * a_i + (size_t)p * a_p] * b[(size_t)p * b_p + (size_t)j * b_j];
                s += t, g += fabs(t);
            }
            ref[(size_t)i * cols + j] = s, mag[(size_t)i * cols + j] = g;
        }
}

static void one_shape(int n, int m, int k, float beta) {
    /* NN: a (n, m), W (m, k), out (n, k); NT: x (n, k), W (m, k), out2 (n, m) */
    const size_t lda = (size_t)m + 3, ldw = (size_t)k + 5, ldo = (size_t)k + 2, ldo2 = (size_t)m + 1;
    float *a = malloc(sizeof(float) * (size_t)n * lda), *W = malloc(sizeof(float) * (size_t)m * ldw);
    float *out = malloc(sizeof(float) * (size_t)n * ldo), *out2 = malloc(sizeof(float) * (size_t)n * ldo2);
    float *xt = aligned_alloc(64, (mend_sgemm_xt_floats(n, k) * sizeof(float) + 63) / 64 * 64);
    double *ref = malloc(sizeof(double) * (size_t)n * (size_t)(k > m ? k : m));
    double *mag = malloc(sizeof(double) * (size_t)n * (size_t)(k > m ? k : m));
    for (size_t i = 0; i < (size_t)n * lda; i++) a[i] = rndn();
    for (size_t i = 0; i < (size_t)m * ldw; i++) W[i] = rndn();
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < ldo; j++) out[(size_t)i * ldo + j] = j < (size_t)k ? rndn() : -7.0f;
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < ldo2; j++) out2[(size_t)i * ldo2 + j] = j < (size_t)m ? rndn() : -7.0f;

    /* NN reference */
    reference(ref, mag, out, ldo, n, k, m, a, lda, 1, W, ldw, 1, beta);
    if (mend_sgemm_available()) {
        float *outp = malloc(sizeof(float) * (size_t)n * ldo);
        memcpy(outp, out, sizeof(float) * (size_t)n * ldo);
        CHECK(mend_sgemm_nn(out, ldo, a, lda, n, W, ldw, m, k, beta) == 0);
        CHECK_MSG(compare(out, ref, mag, n, k, ldo, "nn", m) == 0, "nn n=%d m=%d k=%d beta=%g", n, m, k, beta);
        /* W packed whole, the columns in two strip ranges (the second asked
         * past the end): the same bits as mend_sgemm_nn, and the first call
         * leaves the second range's columns alone */
        float *wp = aligned_alloc(64, mend_sgemm_wp_floats(m, k) * sizeof(float));
        mend_sgemm_pack_w(wp, W, ldw, m, k);
        const int strips = (k + 31) / 32, half = strips / 2 > 0 ? strips / 2 : strips;
        const float before = outp[(size_t)(n - 1) * ldo + (size_t)k - 1];
        CHECK(mend_sgemm_nn_packed(outp, ldo, a, lda, n, wp, m, k, 0, half, beta) == 0);
        if (half < strips) {
            CHECK(outp[(size_t)(n - 1) * ldo + (size_t)k - 1] == before);
            CHECK(mend_sgemm_nn_packed(outp, ldo, a, lda, n, wp, m, k, half, strips + 3, beta) == 0);
        }
        CHECK(mend_sgemm_nn_packed(outp, ldo, a, lda, n, wp, m, k, strips, strips + 1, beta) != 0);
        CHECK_MSG(memcmp(out, outp, sizeof(float) * (size_t)n * ldo) == 0, "nn packed n=%d m=%d k=%d", n, m, k);
        free(wp);
        free(outp);
    } else {
        float keep = out[0];
        CHECK(mend_sgemm_nn(out, ldo, a, lda, n, W, ldw, m, k, beta) != 0);
        CHECK(out[0] == keep);
    }

    /* TN: out (n, k) = atᵀ · W with at (m, n; row stride n + 2) */
    {
        const size_t ldt = (size_t)n + 2;
        float *at = malloc(sizeof(float) * (size_t)m * ldt);
        for (size_t i = 0; i < (size_t)m * ldt; i++) at[i] = rndn();
        reference(ref, mag, out, ldo, n, k, m, at, 1, ldt, W, ldw, 1, beta);
        if (mend_sgemm_available()) {
            CHECK(mend_sgemm_tn(out, ldo, at, ldt, n, W, ldw, m, k, beta) == 0);
            CHECK_MSG(compare(out, ref, mag, n, k, ldo, "tn", m) == 0, "tn n=%d m=%d k=%d beta=%g", n, m, k, beta);
        } else {
            CHECK(mend_sgemm_tn(out, ldo, at, ldt, n, W, ldw, m, k, beta) != 0);
        }
        free(at);
    }

    /* NT reference: x = the first k columns of a's rows (needs k <= lda),
     * W the same (m, k) matrix with row stride ldw */
    if ((size_t)k <= lda) {
        reference(ref, mag, out2, ldo2, n, m, k, a, lda, 1, W, 1, ldw, beta);
        if (mend_sgemm_available()) {
            /* mend_sgemm_nt (packing on the fly) must give the same bits */
            float *out3 = malloc(sizeof(float) * (size_t)n * ldo2);
            memcpy(out3, out2, sizeof(float) * (size_t)n * ldo2);
            const int nb = (n + 31) / 32;
            mend_sgemm_pack_xt(xt, a, lda, n, k, 0, nb);
            CHECK(mend_sgemm_xt(out2, ldo2, xt, n, W, ldw, m, k, beta) == 0);
            CHECK_MSG(compare(out2, ref, mag, n, m, ldo2, "xt", k) == 0, "xt n=%d m=%d k=%d beta=%g", n, m, k,
                      beta);
            CHECK(mend_sgemm_nt(out3, ldo2, a, lda, n, W, ldw, m, k, beta) == 0);
            CHECK(memcmp(out2, out3, sizeof(float) * (size_t)n * ldo2) == 0);
            free(out3);
        }
    }
    free(a), free(W), free(out), free(out2), free(xt), free(ref), free(mag);
}

/* the packed layout itself: xt[block][kk][32] = x[block * 32 + r][kk], zeros
 * past n (the SIMD packer transposes 16 x 16 tiles, the tail is scalar) */
static void check_pack(int n, int k, size_t ldx) {
    float *x = malloc(sizeof(float) * (size_t)n * ldx);
    const size_t nf = mend_sgemm_xt_floats(n, k);
    float *xt = aligned_alloc(64, (nf * sizeof(float) + 63) / 64 * 64);
    for (size_t i = 0; i < (size_t)n * ldx; i++) x[i] = rndn();
    for (size_t i = 0; i < nf; i++) xt[i] = -9.0f;
    mend_sgemm_pack_xt(xt, x, ldx, n, k, 0, (n + 31) / 32);
    int bad = 0;
    for (int b = 0; b < (n + 31) / 32; b++)
        for (int kk = 0; kk < k; kk++)
            for (int r = 0; r < 32; r++) {
                const int row = b * 32 + r;
                const float want = row < n ? x[(size_t)row * ldx + kk] : 0.0f;
                bad += xt[((size_t)b * k + kk) * 32 + r] != want;
            }
    CHECK_MSG(bad == 0, "pack n=%d k=%d ldx=%zu: %d wrong", n, k, ldx, bad);
    free(x), free(xt);
}

int main(void) {
    static const int pn[] = {1, 15, 16, 17, 32, 33, 64, 77}, pk[] = {1, 15, 16, 17, 48, 100};
    for (size_t i = 0; i < sizeof pn / sizeof *pn; i++)
        for (size_t j = 0; j < sizeof pk / sizeof *pk; j++) check_pack(pn[i], pk[j], (size_t)pk[j] + (j & 1) * 5);
    static const int ns[] = {1, 2, 11, 12, 13, 31, 32, 33, 70};
    static const int ms[] = {1, 5, 255, 256, 257, 600};
    static const int ks[] = {1, 7, 16, 17, 31, 32, 33, 64, 95};
    static const float betas[] = {0.0f, 1.0f, 0.5f};
    int c = 0;
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
        for (size_t j = 0; j < sizeof ms / sizeof *ms; j++)
            for (size_t l = 0; l < sizeof ks / sizeof *ks; l++) one_shape(ns[i], ms[j], ks[l], betas[c++ % 3]);
    /* bad arguments: nothing done, non-zero */
    float o = 3.0f, w = 1.0f;
    CHECK(mend_sgemm_nn(&o, 1, &w, 1, 0, &w, 1, 1, 1, 0.0f) != 0 && o == 3.0f);
    CHECK(mend_sgemm_nn(&o, 1, &w, 1, 1, &w, 1, 0, 1, 0.0f) != 0 && o == 3.0f);
    printf("AVX-512 kernels %s\n", mend_sgemm_available() ? "tested" : "unavailable (refusal tested)");
    return test_finish();
}
