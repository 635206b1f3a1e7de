/* mend's own f32 products (kernels/sgemm.h) on every instruction set the CPU
 * has (scalar, avx2, avx512, capped by MEND_ISA):
 *  - mend_sgemm_xt: out = beta * out + x · Wᵀ (the forward's shape),
 *  - mend_sgemm_nt: the same, packing x itself,
 *  - mend_sgemm_nn: out = beta * out + a · W (the backward's dX = dY · W),
 *    and mend_sgemm_nn_packed on W packed whole,
 *  - mend_sgemm_tn: out = beta * out + aᵀ · W (attention's dV, dK),
 * over shapes that hit every remainder: every n from 1 to 40 and a grid of
 * larger ones (rows not a multiple of any row tile, 32 / 12 / 6; output
 * columns not a multiple of any column tile, 12 / 6 / 32 / 16, so masked
 * last strips; reductions across the NN kernel's 512-long blocks; k not a
 * multiple of 8, 16 or 32; k long enough that x · Wᵀ takes its row blocks in
 * several passes), row strides larger than the row, beta 0, 1 and 0.7 over a
 * prefilled output.
 *
 * The lowest level's result must be within 1e-5 of a double reference
 * relative to sum |a w| (plus an absolute 1e-30), and entries outside the
 * written range untouched; every other level must give the same bits, as
 * must nn_packed and nn, nt and xt, and a row computed alone and the same
 * row inside the batch (what batched IDP scoring and thread counts rely on). */
#include <stdint.h>

#include "test.h"
#include "kernels/cpu.h"
#include "kernels/sgemm.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float rndn(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return ((float)(rng_state >> 40) / 16777216.0f - 0.5f) * 4.0f;
}

/* out (n, ldo): compare columns [0, cols) with the reference, and the padding
 * columns [cols, ldo) with the sentinel they were filled with. */
static int compare(const float *out, const double *ref, const double *mag, int n, int cols, size_t ldo,
                   const char *what, int depth) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < cols; j++) {
            const double d = fabs((double)out[(size_t)i * ldo + j] - ref[(size_t)i * cols + j]);
            if (d > 1e-5 * mag[(size_t)i * cols + j] + 1e-30) {
                if (!bad)
                    fprintf(stderr, "%s n=%d depth=%d cols=%d: [%d][%d] %.9g vs %.9g\n", what, n, depth, cols, i, j,
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

/* One problem: NN / TN out (n, k) from a (n, m) or at (m, n) and W (m, k);
 * XT / NT out2 (n, m) from x (n, k) and the same W. */
typedef struct {
    int n, m, k;
    float beta;
    size_t lda, ldt, ldx, ldw, ldo, ldo2;
    float *a, *at, *x, *W, *out, *out2;
} problem;

enum { OP_NN, OP_NN_PACKED, OP_TN, OP_XT, OP_NT, N_OPS };
static const char *const op_names[N_OPS] = {"nn", "nn_packed", "tn", "xt", "nt"};

static float *copy_floats(const float *src, size_t count) {
    float *d = malloc(sizeof(float) * count);
    memcpy(d, src, sizeof(float) * count);
    return d;
}

/* Rows [r0, r0 + rows) of op's output at the current level, started from the
 * prefilled output (the whole output when r0 = 0, rows = n). */
static float *run_op(const problem *P, int op, int r0, int rows) {
    const int n = rows, m = P->m, k = P->k;
    const int nn_like = op <= OP_TN;
    const size_t ldo = nn_like ? P->ldo : P->ldo2;
    float *out = copy_floats((nn_like ? P->out : P->out2) + (size_t)r0 * ldo, (size_t)n * ldo);
    const float *a = P->a + (size_t)r0 * P->lda, *x = P->x + (size_t)r0 * P->ldx;
    switch (op) {
    case OP_NN: CHECK(mend_sgemm_nn(out, ldo, a, P->lda, n, P->W, P->ldw, m, k, P->beta) == 0); break;
    case OP_NN_PACKED: {
        /* the columns in two strip ranges (the second asked past the end);
         * the first call leaves the second range's columns alone */
        float *wp = aligned_alloc(64, mend_sgemm_wp_floats(m, k) * sizeof(float));
        mend_sgemm_pack_w(wp, P->W, P->ldw, m, k);
        const int strips = (k + 31) / 32, half = strips / 2 > 0 ? strips / 2 : strips;
        const float before = out[(size_t)(n - 1) * ldo + (size_t)k - 1];
        CHECK(mend_sgemm_nn_packed(out, ldo, a, P->lda, n, wp, m, k, 0, half, P->beta) == 0);
        if (half < strips) {
            CHECK(out[(size_t)(n - 1) * ldo + (size_t)k - 1] == before);
            CHECK(mend_sgemm_nn_packed(out, ldo, a, P->lda, n, wp, m, k, half, strips + 3, P->beta) == 0);
        }
        CHECK(mend_sgemm_nn_packed(out, ldo, a, P->lda, n, wp, m, k, strips, strips + 1, P->beta) != 0);
        free(wp);
        break;
    }
    case OP_TN: CHECK(mend_sgemm_tn(out, ldo, P->at + r0, P->ldt, n, P->W, P->ldw, m, k, P->beta) == 0); break;
    case OP_XT: {
        float *xt = aligned_alloc(64, (mend_sgemm_xt_floats(n, k) * sizeof(float) + 63) / 64 * 64);
        mend_sgemm_pack_xt(xt, x, P->ldx, n, k, 0, (n + 31) / 32);
        CHECK(mend_sgemm_xt(out, ldo, xt, n, P->W, P->ldw, m, k, P->beta) == 0);
        free(xt);
        break;
    }
    default: CHECK(mend_sgemm_nt(out, ldo, x, P->ldx, n, P->W, P->ldw, m, k, P->beta) == 0); break;
    }
    return out;
}

static float *filled(size_t rows, size_t ld, size_t used) {
    float *p = malloc(sizeof(float) * rows * ld);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < ld; j++) p[i * ld + j] = used == ld || j < used ? rndn() : -7.0f;
    return p;
}

static int n_levels;   /* levels 0 .. n_levels - 1 are tested */

static void one_shape(int n, int m, int k, float beta) {
    problem P = {n, m, k, beta, (size_t)m + 3, (size_t)n + 2, (size_t)k + 3, (size_t)k + 5, (size_t)k + 2,
                 (size_t)m + 1, NULL, NULL, NULL, NULL, NULL, NULL};
    P.a = filled((size_t)n, P.lda, P.lda);
    P.at = filled((size_t)m, P.ldt, P.ldt);
    P.x = filled((size_t)n, P.ldx, P.ldx);
    P.W = filled((size_t)m, P.ldw, P.ldw);
    P.out = filled((size_t)n, P.ldo, (size_t)k);
    P.out2 = filled((size_t)n, P.ldo2, (size_t)m);

    float *res[3][N_OPS];
    for (int l = 0; l < n_levels; l++) {
        mend_cpu_set_max_level(l);
        for (int op = 0; op < N_OPS; op++) res[l][op] = run_op(&P, op, 0, n);
    }

    const size_t big = (size_t)n * (size_t)(k > m ? k : m);
    double *ref = malloc(sizeof(double) * big), *mag = malloc(sizeof(double) * big);
    for (int op = 0; op < N_OPS; op++) {
        const int nn_like = op <= OP_TN, cols = nn_like ? k : m, depth = nn_like ? m : k;
        const size_t ldo = nn_like ? P.ldo : P.ldo2;
        if (op == OP_TN) reference(ref, mag, P.out, ldo, n, k, m, P.at, 1, P.ldt, P.W, P.ldw, 1, beta);
        else if (nn_like) reference(ref, mag, P.out, ldo, n, k, m, P.a, P.lda, 1, P.W, P.ldw, 1, beta);
        else reference(ref, mag, P.out2, ldo, n, m, k, P.x, P.ldx, 1, P.W, 1, P.ldw, beta);
        CHECK_MSG(compare(res[0][op], ref, mag, n, cols, ldo, op_names[op], depth) == 0,
                  "%s (%s) n=%d m=%d k=%d beta=%g", op_names[op], mend_simd_level_name(0), n, m, k, beta);
        for (int l = 1; l < n_levels; l++)
            CHECK_MSG(memcmp(res[l][op], res[0][op], sizeof(float) * (size_t)n * ldo) == 0,
                      "%s: %s and %s differ, n=%d m=%d k=%d beta=%g", op_names[op], mend_simd_level_name(l),
                      mend_simd_level_name(0), n, m, k, beta);
    }
    CHECK_MSG(memcmp(res[0][OP_NN], res[0][OP_NN_PACKED], sizeof(float) * (size_t)n * P.ldo) == 0,
              "nn packed n=%d m=%d k=%d", n, m, k);
    CHECK_MSG(memcmp(res[0][OP_XT], res[0][OP_NT], sizeof(float) * (size_t)n * P.ldo2) == 0,
              "nt vs xt n=%d m=%d k=%d", n, m, k);

    /* the last row, and a middle one, alone: the bits of the batch (top level) */
    if (n > 1)
        for (int t = 0; t < 2; t++) {
            const int r = t ? n / 2 : n - 1;
            for (int op = 0; op < N_OPS; op++) {
                const size_t ldo = op <= OP_TN ? P.ldo : P.ldo2;
                float *one = run_op(&P, op, r, 1);
                CHECK_MSG(memcmp(one, res[n_levels - 1][op] + (size_t)r * ldo, sizeof(float) * ldo) == 0,
                          "%s: row %d alone differs from row %d of %d (m=%d k=%d)", op_names[op], r, r, n, m, k);
                free(one);
            }
        }
    for (int l = 0; l < n_levels; l++)
        for (int op = 0; op < N_OPS; op++) free(res[l][op]);
    free(P.a), free(P.at), free(P.x), free(P.W), free(P.out), free(P.out2), free(ref), free(mag);
}

/* the packed layout itself: xt[block][kk][32] = x[block * 32 + r][kk], zeros
 * past n (the AVX-512 packer transposes 16 x 16 tiles, the tail is scalar) */
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
    CHECK_MSG(bad == 0, "pack (%s) n=%d k=%d ldx=%zu: %d wrong", mend_isa(), n, k, ldx, bad);
    free(x), free(xt);
}

int main(void) {
    const int top = mend_cpu_max_level();   /* what the CPU has, or less under MEND_ISA */
    n_levels = top + 1;
    printf("levels:");
    for (int l = 0; l <= top; l++) printf(" %s", mend_simd_level_name(l));
    printf("\n");

    static const int pn[] = {1, 15, 16, 17, 32, 33, 64, 77}, pk[] = {1, 15, 16, 17, 48, 100};
    for (int l = 0; l <= top; l++) {
        mend_cpu_set_max_level(l);
        for (size_t i = 0; i < sizeof pn / sizeof *pn; i++)
            for (size_t j = 0; j < sizeof pk / sizeof *pk; j++) check_pack(pn[i], pk[j], (size_t)pk[j] + (j & 1) * 5);
    }
    mend_cpu_set_max_level(top);

    static const float betas[] = {0.0f, 1.0f, 0.7f};
    /* every n from 1 to 40 against odd m and k, cycling the betas */
    static const int sm[] = {1, 5, 7, 13, 23, 25, 37}, sk[] = {1, 3, 9, 15, 17, 31, 33, 41, 47};
    for (int n = 1; n <= 40; n++)
        for (int v = 0; v < 3; v++)
            one_shape(n, sm[(n + v) % 7], sk[(n * 3 + v) % 9], betas[(n + v) % 3]);
    /* larger shapes: NN reductions across 512-row blocks, several strips */
    static const int ns[] = {1, 2, 7, 12, 13, 33, 70};
    static const int ms[] = {255, 511, 512, 513, 1100};
    static const int ks[] = {7, 16, 33, 64, 95};
    int c = 0;
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++)
        for (size_t j = 0; j < sizeof ms / sizeof *ms; j++)
            for (size_t l = 0; l < sizeof ks / sizeof *ks; l++, c++)
                if (c % 2 == 0 || ns[i] < 13) one_shape(ns[i], ms[j], ks[l], betas[c % 3]);
    /* long k: x · Wᵀ runs its row blocks in several passes (one or two
     * blocks per pass here, the last pass partial) */
    one_shape(70, 13, 1400, 0.7f);
    one_shape(100, 37, 2050, 0.0f);
    one_shape(97, 7, 4100, 1.0f);
    mend_cpu_set_max_level(top);

    /* bad arguments: nothing done, non-zero */
    float o = 3.0f, w = 1.0f;
    CHECK(mend_sgemm_available());
    CHECK(mend_sgemm_nn(&o, 1, &w, 1, 0, &w, 1, 1, 1, 0.0f) != 0 && o == 3.0f);
    CHECK(mend_sgemm_nn(&o, 1, &w, 1, 1, &w, 1, 0, 1, 0.0f) != 0 && o == 3.0f);
    CHECK(mend_sgemm_xt(&o, 1, &w, 0, &w, 1, 1, 1, 0.0f) != 0 && o == 3.0f);
    CHECK(mend_sgemm_nt(&o, 1, &w, 1, 1, &w, 1, 1, 0, 0.0f) != 0 && o == 3.0f);
    return test_finish();
}
