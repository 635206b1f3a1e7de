/* H = 2/N Σ x xᵀ, streamed over batches of calibration rows. */
#include <lapacke.h>
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include "compress/hessian.h"
#include "util/util.h"

int mend_hessian_init(mend_hessian *h, int64_t n) {
    memset(h, 0, sizeof *h);
    size_t nn;
    if (n <= 0 || n > (1 << 20) || !mend_mul_ok((size_t)n, (size_t)n, &nn) || nn > SIZE_MAX / sizeof(double))
        return mend_set_error(MEND_ERANGE, "hessian: %lld in-features (1 to 2^20 expected)", (long long)n);
    h->sum = calloc(nn, sizeof(double));
    h->scratch = malloc(nn * sizeof(float));
    if (!h->sum || !h->scratch) {
        mend_hessian_free(h);
        return mend_set_error(MEND_ENOMEM, "hessian: cannot allocate %lld x %lld", (long long)n, (long long)n);
    }
    h->n = n;
    return 0;
}

void mend_hessian_free(mend_hessian *h) {
    if (!h) return;
    free(h->sum);
    free(h->scratch);
    memset(h, 0, sizeof *h);
}

int mend_hessian_add(mend_hessian *h, const float *X, int64_t m) {
    if (!h || !h->sum) return mend_set_error(MEND_EINVAL, "hessian: not initialised");
    if (m < 0 || (m && !X)) return mend_set_error(MEND_EINVAL, "hessian: %lld rows with a NULL pointer or a negative count", (long long)m);
    if (m == 0) return 0;
    if (m > INT32_MAX) return mend_set_error(MEND_ERANGE, "hessian: batch of %lld rows is too large", (long long)m);
    const int64_t n = h->n;
    /* scratch (upper) = Xᵀ X, i.e. Σ_t x_t x_tᵀ over this batch */
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)m, 1.0f, X, (int)n, 0.0f, h->scratch, (int)n);
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) h->sum[i * n + j] += (double)h->scratch[i * n + j];
    h->nsamples += m;
    return 0;
}

int mend_hessian_get(const mend_hessian *h, double *out) {
    if (!h || !h->sum || !out) return mend_set_error(MEND_EINVAL, "hessian: not initialised or NULL output");
    if (h->nsamples == 0) return mend_set_error(MEND_EINVAL, "hessian: no calibration rows were added");
    const int64_t n = h->n;
    const double s = 2.0 / (double)h->nsamples;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) out[i * n + j] = s * (j >= i ? h->sum[i * n + j] : h->sum[j * n + i]);
    return 0;
}

/* U with (H + λI)⁻¹ = Uᵀ U, U upper triangular, as f32 (lower part zero).
 * Raises λ ×10 (at most 3 times) while H + λI is not positive definite. */
int mend_inverse_cholesky(const char *who, const double *H, int64_t n, double damp, float *U, double *lambda_out) {
    size_t nn = (size_t)n * (size_t)n;
    double *A = malloc(nn * sizeof(double));
    if (!A) return mend_set_error(MEND_ENOMEM, "%s: cannot allocate the %lld x %lld Cholesky workspace", who, (long long)n, (long long)n);
    double mean = 0;
    for (int64_t i = 0; i < n; i++) mean += H[i * n + i];
    mean /= (double)n;
    double lambda = damp * mean;
    if (!(lambda > 0)) lambda = damp > 0 ? damp : 1e-8;
    int ok = 0;
    for (int attempt = 0; attempt < 4 && !ok; attempt++, lambda *= 10) {
        memcpy(A, H, nn * sizeof(double));
        for (int64_t i = 0; i < n; i++) A[i * n + i] += lambda;
        /* A is symmetric, so its row-major upper triangle is the column-major
         * lower one: factor in column-major 'L' (no transposition copies);
         * L Lᵀ read back row-major is Uᵀ U with U = Lᵀ upper. */
        if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n) != 0) continue;
        if (LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n) != 0) continue;
        if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', (lapack_int)n, A, (lapack_int)n) != 0) continue;
        ok = 1;
        *lambda_out = lambda;
    }
    if (ok) {
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) U[i * n + j] = j >= i ? (float)A[i * n + j] : 0.0f;
    }
    free(A);
    if (!ok)
        return mend_set_error(MEND_EINVAL, "%s: the Hessian is not positive definite even with %.3g added to its diagonal",
                              who, lambda / 10);
    return 0;
}
