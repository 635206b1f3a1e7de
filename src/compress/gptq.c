/* GPTQ on one matrix (see gptq.h for the algorithm and the grid policy). */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "compress/gptq.h"
#include "compress/hessian.h"
#include "util/util.h"

#define GPTQ_TILE 16

/* act-order: columns by descending diag(H), ties in column order */
typedef struct { double d; int64_t i; } diag_idx;
static int cmp_desc(const void *a, const void *b) {
    const diag_idx *x = a, *y = b;
    if (x->d > y->d) return -1;
    if (x->d < y->d) return 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int check_args(const float *W, int64_t rows, int64_t cols, const mend_qfmt *f) {
    if (!W || !f) return mend_set_error(MEND_EINVAL, "gptq: NULL weights or format");
    if (rows <= 0 || cols <= 0 || rows > (1ll << 31) || cols > (1 << 20))
        return mend_set_error(MEND_ERANGE, "gptq: matrix of %lld x %lld", (long long)rows, (long long)cols);
    int rc = mend_qfmt_check(f, cols);
    if (rc) return rc;
    if (f->type == MEND_TYPE_F32 || f->type == MEND_TYPE_F16 || f->type == MEND_TYPE_BF16)
        return mend_set_error(MEND_EINVAL, "gptq: %s is not a quantized format", mend_type_name(f->type));
    size_t n;
    if (!mend_mul_ok((size_t)rows, (size_t)cols, &n) || n > SIZE_MAX / 8)
        return mend_set_error(MEND_ERANGE, "gptq: matrix of %lld x %lld is too large", (long long)rows, (long long)cols);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(W[i]))
            return mend_set_error(MEND_EINVAL, "gptq: weight (%zu, %zu) is not finite", i / (size_t)cols, i % (size_t)cols);
    return 0;
}

int mend_gptq_quantize(float *W, int64_t rows, int64_t cols, double *H, const mend_gptq_opts *o, void *packed,
                       mend_gptq_stats *st) {
    if (!o || !H) return mend_set_error(MEND_EINVAL, "gptq: NULL options or Hessian");
    const mend_qfmt *f = &o->fmt;
    int rc = check_args(W, rows, cols, f);
    if (rc) return rc;
    const int64_t n = cols;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(H[i * n + i]) || H[i * n + i] < 0)
            return mend_set_error(MEND_EINVAL, "gptq: Hessian diagonal entry %lld is %g (finite and >= 0 expected)", (long long)i, H[i * n + i]);

    const int64_t be = mend_qfmt_block_elems(f, n), nblk = n / be;
    const size_t bb = mend_qfmt_block_bytes(f, n), rs = mend_qfmt_row_size(f, n);
    const double damp = o->damp > 0 ? o->damp : 0.01;
    int64_t B = o->block > 0 ? o->block : 128;
    if (B > n) B = n;
    /* Grids are fitted at a block's first column, so a block must start at a
     * lazy-batch start or end inside its batch (then all its columns carry
     * every update so far). One block per row starts at column 0: any B. */
    if (!o->act_order && be < n) B = be <= B ? (B / be) * be : obs_gcd64(be, B);

    const int act = o->act_order != 0;
    const size_t nn = (size_t)n * (size_t)n, rn = (size_t)rows * (size_t)n;
    uint8_t *pk = packed ? packed : malloc((size_t)rows * rs);
    uint8_t *codes = malloc(rn);
    float *U = malloc(nn * sizeof(float));
    float *E = malloc((size_t)rows * (size_t)B * sizeof(float));
    float *imp = o->fit_importance ? malloc((size_t)n * sizeof(float)) : NULL;
    mend_qgrid *grids = malloc((act ? (size_t)rows * (size_t)nblk : (size_t)rows) * sizeof(mend_qgrid));
    int64_t *perm = act ? malloc((size_t)n * sizeof(int64_t)) : NULL;
    float *Wp = act ? malloc(rn * sizeof(float)) : W;
    double *Hp = act ? malloc(nn * sizeof(double)) : H;
    double *rowloss = calloc((size_t)rows, sizeof(double));
    int *fail = calloc((size_t)rows, sizeof(int));
    if (!pk || !codes || !U || !E || (o->fit_importance && !imp) || !grids || (act && (!perm || !Wp || !Hp)) || !rowloss || !fail) {
        rc = mend_set_error(MEND_ENOMEM, "gptq: out of memory for a %lld x %lld matrix", (long long)rows, (long long)n);
        goto done;
    }

    /* dead inputs: no signal, so the column is dropped (its weights set to 0) */
    int64_t dead = 0;
    for (int64_t i = 0; i < n; i++)
        if (H[i * n + i] == 0) {
            H[i * n + i] = 1;
            for (int64_t r = 0; r < rows; r++) W[r * n + i] = 0;
            dead++;
        }
    if (imp)
        for (int64_t i = 0; i < n; i++) imp[i] = (float)H[i * n + i];

    if (act) {
        /* static grids from the original weights, in natural column order */
        #pragma omp parallel for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t b = 0; b < nblk; b++)
                if (mend_qgrid_fit(f, W + r * n + b * be, be, imp ? imp + b * be : NULL, pk + (size_t)r * rs + (size_t)b * bb,
                                   &grids[r * nblk + b]))
                    fail[r] = 1;
        diag_idx *di = malloc((size_t)n * sizeof *di);
        if (!di) {
            rc = mend_set_error(MEND_ENOMEM, "gptq: out of memory");
            goto done;
        }
        for (int64_t i = 0; i < n; i++) di[i] = (diag_idx){H[i * n + i], i};
        qsort(di, (size_t)n, sizeof *di, cmp_desc);
        for (int64_t i = 0; i < n; i++) perm[i] = di[i].i;
        free(di);
        #pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) Hp[i * n + j] = H[perm[i] * n + perm[j]];
        #pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < n; k++) Wp[r * n + k] = W[r * n + perm[k]];
    }

    double lambda = 0;
    rc = mend_inverse_cholesky("gptq", Hp, n, damp, U, &lambda);
    if (rc) goto done;

    /* Rows are independent: each tile of GPTQ_TILE rows runs the whole
     * column sweep on its own (no barrier per batch, no BLAS threads fighting
     * the OpenMP ones), and the trailing update of a batch streams each row
     * of U once per tile. */
    const int64_t ntiles = (rows + GPTQ_TILE - 1) / GPTQ_TILE;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t tile = 0; tile < ntiles; tile++) {
        const int64_t r0 = tile * GPTQ_TILE, r1 = r0 + GPTQ_TILE < rows ? r0 + GPTQ_TILE : rows;
        int failed = 0;
        for (int64_t i1 = 0; i1 < n && !failed; i1 += B) {
            const int64_t i2 = i1 + B < n ? i1 + B : n;
            for (int64_t r = r0; r < r1 && !failed; r++) {
                float *w = Wp + r * n, *e = E + r * B;
                double loss = 0;
                for (int64_t k = i1; k < i2; k++) {
                    const int64_t c = act ? perm[k] : k, b = c / be, j = c % be;
                    mend_qgrid *g;
                    if (act) {
                        g = &grids[r * nblk + b];
                    } else {
                        g = &grids[r];
                        if (j == 0 && mend_qgrid_fit(f, w + k, be, imp ? imp + k : NULL, pk + (size_t)r * rs + (size_t)b * bb, g)) {
                            fail[r] = failed = 1;
                            break;
                        }
                    }
                    const float wk = w[k];
                    const int q = mend_qgrid_code(g, j, wk);
                    const float v = mend_qgrid_value(g, j, q);
                    codes[(size_t)r * n + c] = (uint8_t)q;
                    const float err = (wk - v) / U[k * n + k];
                    loss += (double)err * err * 0.5;
                    w[k] = v;
                    obs_axpy_neg(w + k + 1, U + k * n + k + 1, err, i2 - k - 1);   /* W[r, k+1:i2] -= err · U[k, k+1:i2] */
                    e[k - i1] = err;
                }
                rowloss[r] += loss;
            }
            if (failed || i2 >= n) continue;
            /* lazy batch: W[r0:r1, i2:] -= E[r0:r1, :] · U[i1:i2, i2:] */
            for (int64_t k = i1; k < i2; k++)
                for (int64_t r = r0; r < r1; r++) obs_axpy_neg(Wp + r * n + i2, U + k * n + i2, E[r * B + (k - i1)], n - i2);
        }
    }
    for (int64_t r = 0; r < rows; r++)
        if (fail[r]) {
            rc = mend_set_error(MEND_EINVAL, "gptq: row %lld could not be fitted to its grid", (long long)r);
            goto done;
        }

    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < nblk; b++)
            mend_qgrid_pack(f, pk + (size_t)r * rs + (size_t)b * bb, codes + (size_t)r * n + b * be, be);
    if (act) {
        #pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < n; k++) W[r * n + perm[k]] = Wp[r * n + k];
    }
    if (st) {
        st->loss = 0;
        for (int64_t r = 0; r < rows; r++) st->loss += rowloss[r];
        st->dead = dead;
        st->damp = lambda;
        st->block = (int)B;
    }

done:
    if (pk != packed) free(pk);
    free(codes);
    free(U);
    free(E);
    free(imp);
    free(grids);
    free(perm);
    if (Wp != W) free(Wp);
    if (Hp != H) free(Hp);
    free(rowloss);
    free(fail);
    return rc;
}

int mend_rtn_quantize(float *W, int64_t rows, int64_t cols, const mend_qfmt *f, void *packed) {
    int rc = check_args(W, rows, cols, f);
    if (rc) return rc;
    const size_t rs = mend_qfmt_row_size(f, cols);
    uint8_t *pk = packed ? packed : malloc((size_t)rows * rs);
    if (!pk) return mend_set_error(MEND_ENOMEM, "rtn: out of memory for %lld rows", (long long)rows);
    int bad = 0;
    #pragma omp parallel for schedule(static) reduction(|:bad)
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *q = pk + (size_t)r * rs;
        if (mend_quantize_row_fmt(f, W + r * cols, q, cols, NULL) || mend_dequantize_row_fmt(f, q, W + r * cols, cols)) bad = 1;
    }
    if (pk != packed) free(pk);
    if (bad) return mend_set_error(MEND_EINVAL, "rtn: a row could not be quantized");
    return 0;
}
