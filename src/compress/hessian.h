/* The layer Hessian of GPTQ / SparseGPT: for a linear layer y = W x with
 * calibration inputs x_1..x_N (N rows of X, each of length n = in-features),
 *   H = 2/N · Σ_t x_t x_tᵀ            (n × n, symmetric)
 * accumulated batch by batch, so activations never need to be held at once.
 * Each batch is summed in f32 with one BLAS syrk (exact enough for a few
 * thousand rows), and batches are summed in f64. */
#ifndef MEND_HESSIAN_H
#define MEND_HESSIAN_H

#include <stdint.h>

typedef struct mend_hessian {
    int64_t n;          /* in-features */
    int64_t nsamples;   /* rows of X seen so far */
    double *sum;        /* n × n row-major, Σ x xᵀ (upper triangle kept current) */
    float *scratch;     /* n × n, one batch's syrk */
} mend_hessian;

int mend_hessian_init(mend_hessian *h, int64_t n);
void mend_hessian_free(mend_hessian *h);
/* Add m rows of X (m × n row-major f32; row t is one token's input). */
int mend_hessian_add(mend_hessian *h, const float *X, int64_t m);
/* out (n × n row-major, full symmetric) = 2/N Σ x xᵀ. Fails with N = 0. */
int mend_hessian_get(const mend_hessian *h, double *out);

/* U, the upper Cholesky factor of (H + lambda I)^-1 (row-major n x n, f32),
 * with lambda = damp * mean(diag H), raised x10 at most 3 times until the
 * factorization succeeds; who prefixes error sentences ("gptq", ...). */
int mend_inverse_cholesky(const char *who, const double *H, int64_t n, double damp, float *U, double *lambda_out);

/* The column update both OBS solvers (GPTQ, SparseGPT) make:
 * y[0..n) -= a · x[0..n) (vectorized; no FMA contraction in the baseline build) */
static inline void obs_axpy_neg(float *restrict y, const float *restrict x, float a, int64_t n) {
    #pragma omp simd
    for (int64_t t = 0; t < n; t++) y[t] -= a * x[t];
}

/* greatest common divisor (the OBS block width that also divides into whole groups) */
static inline int64_t obs_gcd64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

#endif
