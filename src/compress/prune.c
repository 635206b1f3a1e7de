/* Magnitude and Wanda pruning, sparsity targets and score selection (see
 * prune.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "compress/prune.h"
#include "compress/quantize.h"
#include "kernels/quants.h"
#include "mend.h"
#include "util/util.h"

/* ---- targets ---- */

int mend_sparsity_parse(mend_sparsity *s, const char *text) {
    if (!s || !text || !*text) return mend_set_error(MEND_EINVAL, "sparsity: empty value (expected e.g. 0.5, 50%% or 2:4)");
    const char *colon = strchr(text, ':');
    char *end = NULL;
    if (colon) {
        errno = 0;
        long n = strtol(text, &end, 10);
        if (end != colon || errno) goto bad;
        long m = strtol(colon + 1, &end, 10);
        if (*end || errno || colon[1] == 0) goto bad;
        if (m < 1 || m > 256 || n < 0 || n >= m)
            return mend_set_error(MEND_EINVAL, "sparsity '%s': N:M needs 0 <= N < M <= 256 (N weights kept of every M)", text);
        *s = mend_sparsity_nm((int)n, (int)m);
        return 0;
    }
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || errno) goto bad;
    if (*end == '%' && end[1] == 0) v /= 100;
    else if (*end) goto bad;
    if (!(v >= 0 && v < 1))
        return mend_set_error(MEND_EINVAL, "sparsity '%s': the pruned fraction must be in [0, 1) (or [0%%, 100%%))", text);
    *s = mend_sparsity_unstructured(v);
    return 0;
bad:
    return mend_set_error(MEND_EINVAL, "sparsity '%s': expected a fraction (0.5), a percentage (50%%) or N:M (2:4)", text);
}

const char *mend_sparsity_name(const mend_sparsity *s, char *buf, size_t len) {
    if (!buf || !len) return "";
    if (!s) snprintf(buf, len, "?");
    else if (s->m > 0) snprintf(buf, len, "%d:%d", s->n, s->m);
    else snprintf(buf, len, "%g%%", s->ratio * 100);
    return buf;
}

int mend_sparsity_check(const mend_sparsity *s, int64_t cols) {
    if (!s) return mend_set_error(MEND_EINVAL, "prune: NULL sparsity");
    if (s->m > 0) {
        if (s->m > 256 || s->n < 0 || s->n >= s->m)
            return mend_set_error(MEND_EINVAL, "prune: N:M pattern %d:%d (0 <= N < M <= 256 expected)", s->n, s->m);
        if (cols % s->m)
            return mend_set_error(MEND_EINVAL, "prune: %d:%d needs rows whose width is a multiple of %d (got %lld)", s->n, s->m,
                                  s->m, (long long)cols);
        return 0;
    }
    if (!(s->ratio >= 0 && s->ratio < 1))
        return mend_set_error(MEND_EINVAL, "prune: sparsity %g (a fraction in [0, 1) expected)", s->ratio);
    return 0;
}

/* ---- selection ---- */

/* Scores are >= 0, so their IEEE bits order like the values; the low 32 bits
 * hold the index, which makes every key unique and breaks ties by position. */
static inline uint64_t score_key(float s, uint32_t i) {
    uint32_t b;
    if (!(s > 0)) s = 0;   /* -0, NaN */
    memcpy(&b, &s, 4);
    return ((uint64_t)b << 32) | i;
}

static inline void swap64(uint64_t *a, uint64_t *b) {
    uint64_t t = *a;
    *a = *b;
    *b = t;
}

/* The k-th smallest (0-based) of n distinct keys; a is reordered. */
static uint64_t select_kth(uint64_t *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi > lo) {
        if (hi - lo < 16) {   /* insertion sort of the rest */
            for (int64_t i = lo + 1; i <= hi; i++) {
                uint64_t v = a[i];
                int64_t j = i - 1;
                while (j >= lo && a[j] > v) {
                    a[j + 1] = a[j];
                    j--;
                }
                a[j + 1] = v;
            }
            break;
        }
        /* median of three as pivot, moved to hi */
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < a[lo]) swap64(&a[mid], &a[lo]);
        if (a[hi] < a[lo]) swap64(&a[hi], &a[lo]);
        if (a[mid] < a[hi]) swap64(&a[mid], &a[hi]);
        const uint64_t p = a[hi];
        int64_t s = lo;
        for (int64_t i = lo; i < hi; i++)
            if (a[i] < p) swap64(&a[i], &a[s++]);
        swap64(&a[s], &a[hi]);
        if (s == k) return a[s];
        if (k < s) hi = s - 1;
        else lo = s + 1;
    }
    return a[k];
}

void mend_prune_select(const float *score, int64_t n, int64_t k, uint8_t *mask, uint64_t *keys) {
    if (n <= 0) return;
    if (k <= 0) {
        memset(mask, 0, (size_t)n);
        return;
    }
    if (k >= n) {
        memset(mask, 1, (size_t)n);
        return;
    }
    for (int64_t i = 0; i < n; i++) keys[i] = score_key(score[i], (uint32_t)i);
    const uint64_t t = select_kth(keys, n, k);
    for (int64_t i = 0; i < n; i++) mask[i] = score_key(score[i], (uint32_t)i) < t;
}

void mend_prune_select_nm(const float *score, int64_t cols, int n, int m, uint8_t *mask) {
    uint64_t keys[256];
    for (int64_t g = 0; g < cols; g += m) {
        for (int j = 0; j < m; j++) keys[j] = score_key(score[g + j], (uint32_t)j);
        const int drop = m - n;
        memset(mask + g, 0, (size_t)m);
        if (drop <= 0) continue;
        /* partial selection sort: m is small */
        for (int a = 0; a < drop; a++) {
            int best = a;
            for (int j = a + 1; j < m; j++)
                if (keys[j] < keys[best]) best = j;
            swap64(&keys[a], &keys[best]);
            mask[g + (int64_t)(keys[a] & 0xffffffffu)] = 1;
        }
    }
}

int64_t mend_count_zeros(const float *x, int64_t n) {
    int64_t z = 0;
    for (int64_t i = 0; i < n; i++) z += x[i] == 0.0f;
    return z;
}

/* ---- magnitude and Wanda ---- */

static int check_matrix(const char *what, const float *W, int64_t rows, int64_t cols, const mend_sparsity *s) {
    if (!W) return mend_set_error(MEND_EINVAL, "%s: NULL weights", what);
    if (rows <= 0 || cols <= 0 || rows > (1ll << 31) || cols > (1 << 20))
        return mend_set_error(MEND_ERANGE, "%s: matrix of %lld x %lld", what, (long long)rows, (long long)cols);
    size_t n;
    if (!mend_mul_ok((size_t)rows, (size_t)cols, &n) || n >= (1ull << 32))
        return mend_set_error(MEND_ERANGE, "%s: matrix of %lld x %lld has 2^32 or more weights", what, (long long)rows,
                              (long long)cols);
    int rc = mend_sparsity_check(s, cols);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(W[i]))
            return mend_set_error(MEND_EINVAL, "%s: weight (%zu, %zu) is not finite", what, i / (size_t)cols, i % (size_t)cols);
    return 0;
}

/* Apply per-row selection of `score` (rows × cols) and zero the pruned
 * weights; k per row for unstructured. */
static int prune_rows(float *W, int64_t rows, int64_t cols, const float *score, const mend_sparsity *s, uint8_t *mask) {
    const int64_t k = s->m > 0 ? 0 : (int64_t)(s->ratio * (double)cols);
    uint8_t *mk = mask ? mask : malloc((size_t)rows * (size_t)cols);
    if (!mk) return mend_set_error(MEND_ENOMEM, "prune: out of memory for a %lld x %lld mask", (long long)rows, (long long)cols);
    int oom = 0;
    #pragma omp parallel reduction(|:oom)
    {
        uint64_t *keys = s->m > 0 ? NULL : malloc((size_t)cols * sizeof(uint64_t));
        if (s->m == 0 && !keys) oom = 1;
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (s->m == 0 && !keys) continue;
            const float *sc = score + r * cols;
            uint8_t *mr = mk + r * cols;
            if (s->m > 0) mend_prune_select_nm(sc, cols, s->n, s->m, mr);
            else mend_prune_select(sc, cols, k, mr, keys);
            for (int64_t c = 0; c < cols; c++)
                if (mr[c]) W[r * cols + c] = 0.0f;
        }
        free(keys);
    }
    if (mk != mask) free(mk);
    if (oom) return mend_set_error(MEND_ENOMEM, "prune: out of memory for selection keys");
    return 0;
}

int mend_prune_magnitude(float *W, int64_t rows, int64_t cols, const mend_sparsity *s, uint8_t *mask) {
    int rc = check_matrix("magnitude", W, rows, cols, s);
    if (rc) return rc;
    const size_t n = (size_t)rows * (size_t)cols;
    float *score = malloc(n * sizeof(float));
    if (!score) return mend_set_error(MEND_ENOMEM, "magnitude: out of memory for %zu scores", n);
    for (size_t i = 0; i < n; i++) score[i] = fabsf(W[i]);
    if (s->m > 0) {
        rc = prune_rows(W, rows, cols, score, s, mask);
        free(score);
        return rc;
    }
    /* unstructured: one threshold for the whole matrix */
    uint8_t *mk = mask ? mask : malloc(n);
    uint64_t *keys = malloc(n * sizeof(uint64_t));
    if (!mk || !keys) {
        free(score);
        free(keys);
        if (mk != mask) free(mk);
        return mend_set_error(MEND_ENOMEM, "magnitude: out of memory for a %lld x %lld mask", (long long)rows, (long long)cols);
    }
    mend_prune_select(score, (int64_t)n, (int64_t)(s->ratio * (double)n), mk, keys);
    for (size_t i = 0; i < n; i++)
        if (mk[i]) W[i] = 0.0f;
    free(score);
    free(keys);
    if (mk != mask) free(mk);
    return 0;
}

int mend_wanda_norms_from_hessian(const double *H, int64_t cols, float *xnorm) {
    if (!H || !xnorm || cols <= 0) return mend_set_error(MEND_EINVAL, "wanda: NULL Hessian or norms");
    for (int64_t j = 0; j < cols; j++) {
        const double h = H[j * cols + j];
        if (!isfinite(h) || h < 0)
            return mend_set_error(MEND_EINVAL, "wanda: Hessian diagonal entry %lld is %g (finite and >= 0 expected)", (long long)j, h);
        xnorm[j] = (float)sqrt(h);
    }
    return 0;
}

int mend_prune_wanda(float *W, int64_t rows, int64_t cols, const float *xnorm, const mend_sparsity *s, uint8_t *mask) {
    int rc = check_matrix("wanda", W, rows, cols, s);
    if (rc) return rc;
    if (!xnorm) return mend_set_error(MEND_EINVAL, "wanda: NULL activation norms");
    for (int64_t j = 0; j < cols; j++)
        if (!isfinite(xnorm[j]) || xnorm[j] < 0)
            return mend_set_error(MEND_EINVAL, "wanda: activation norm %lld is %g (finite and >= 0 expected)", (long long)j, xnorm[j]);
    const size_t n = (size_t)rows * (size_t)cols;
    float *score = malloc(n * sizeof(float));
    if (!score) return mend_set_error(MEND_ENOMEM, "wanda: out of memory for %zu scores", n);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) score[r * cols + c] = fabsf(W[r * cols + c]) * xnorm[c];
    rc = prune_rows(W, rows, cols, score, s, mask);
    free(score);
    return rc;
}

/* ---- sparsity of a stored tensor ---- */

int mend_gguf_tensor_zeros(const mend_gguf *g, const gguf_tensor *t, int64_t *zeros, int64_t *n) {
    if (!g || !t || !zeros || !n) return mend_set_error(MEND_EINVAL, "sparsity: NULL argument");
    *zeros = *n = 0;
    if (t->n_dims < 1 || t->n_dims > 4) return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' has %u dimensions", g->path, t->name, t->n_dims);
    int64_t rows = 1;
    for (uint32_t d = 1; d < t->n_dims; d++) {
        if (t->ne[d] <= 0 || rows > INT64_MAX / t->ne[d])
            return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' has a bad shape", g->path, t->name);
        rows *= t->ne[d];
    }
    mend_qfmt f = mend_qfmt_ggml(t->type);
    int64_t cols = t->ne[0];
    size_t rs = 0;
    if (t->type == MEND_TYPE_I8) {
        int found = 0;
        int rc = mend_qfmt_read_meta(g, &f, &found);
        if (rc) return rc;
        if (!found) return mend_set_error(MEND_EUNSUPPORTED, "%s: tensor '%s' is I8 without mend's generic format", g->path, t->name);
        rs = (size_t)t->ne[0];
        cols = mend_qfmt_cols_from_row_bytes(&f, rs);
        if (cols <= 0) return mend_set_error(MEND_EFORMAT, "%s: tensor '%s': rows of %zu bytes are not generic rows", g->path, t->name, rs);
    } else {
        if (!mend_type_get(t->type)) return mend_set_error(MEND_EUNSUPPORTED, "%s: tensor '%s' has type %u", g->path, t->name, t->type);
        rs = mend_row_size(t->type, cols);
    }
    size_t need;
    if (!rs || cols <= 0 || !mend_mul_ok(rs, (size_t)rows, &need) || need > t->nbytes)
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' holds %zu bytes, fewer than its shape needs", g->path, t->name, t->nbytes);
    int64_t z = 0;
    int bad = 0;
    #pragma omp parallel reduction(+:z) reduction(|:bad)
    {
        float *buf = malloc((size_t)cols * sizeof(float));
        if (!buf) bad = 1;
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!buf || bad) continue;
            if (mend_dequantize_row_fmt(&f, (const uint8_t *)t->data + (size_t)r * rs, buf, cols)) bad = 1;
            else z += mend_count_zeros(buf, cols);
        }
        free(buf);
    }
    if (bad) return mend_set_error(MEND_EUNSUPPORTED, "%s: tensor '%s' (%s) could not be dequantized", g->path, t->name,
                                   mend_type_name(t->type) ? mend_type_name(t->type) : "unknown type");
    *zeros = z;
    *n = rows * cols;
    return 0;
}
