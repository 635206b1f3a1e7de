/* Native products on packed blocks (kernels/qmatmul.h):
 *  - activation quantizers: SIMD bytes == _ref bytes, and the _ref against
 *    the format's definition computed here with libm (nearbyintf);
 *  - dot products: with unit scales every result is an exact integer, so
 *    _ref and SIMD must equal sum(dequant(w) * dequant(a)) computed here in
 *    double from quants.c's dequantizers; with random scales SIMD is within
 *    1e-5 of _ref relative to sum |w a| (on AArch64 the quantized NEON dots,
 *    plain and SDOT, must give the _ref bits);
 *  - mend_qmatmul for every type and odd shapes against a double reference
 *    from dequantized W and dequantized activations (1e-4 relative to
 *    sum |w a|), and against f32 math on the unquantized x within the
 *    activation quantization error bound computed element by element;
 *  - bad arguments. */
#include <float.h>
#include <stdalign.h>
#include <stdint.h>

#include "test.h"
#include "kernels/cpu.h"
#include "kernels/qmatmul.h"
#include "kernels/quants.h"
#include "util/util.h"

#define TEST_RNG_SEED 0x2545F4914F6CDD1Dull
#include "test_rng.h"
static void rnd_bytes(void *p, size_t n) {
    uint8_t *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)rnd();
}

static const uint32_t k_types[] = {
    MEND_TYPE_Q4_0, MEND_TYPE_Q4_1, MEND_TYPE_Q5_0, MEND_TYPE_Q5_1, MEND_TYPE_Q8_0,
    MEND_TYPE_Q2_K, MEND_TYPE_Q3_K, MEND_TYPE_Q4_K, MEND_TYPE_Q5_K, MEND_TYPE_Q6_K,
    MEND_TYPE_F16, MEND_TYPE_F32,
};
#define N_TYPES (int)(sizeof k_types / sizeof k_types[0])

static int is_k(uint32_t t) { return t >= MEND_TYPE_Q2_K && t <= MEND_TYPE_Q6_K; }

/* SIMD levels this CPU can run, scalar first */
static int levels[3], n_levels;
static void init_levels(void) {
    n_levels = 0;
    for (int l = MEND_SIMD_SCALAR; l <= mend_cpu_simd_level(); l++) levels[n_levels++] = l;
}

/* ---- weights ---- */

/* A random row of a K-type: random bytes everywhere, then sane fp16 scales.
 * unit: d = dmin = 1 and small sub-block scales, so every dot is an integer
 * well inside float's exact range. */
static void fill_k_row(uint32_t t, void *row, int64_t cols, int unit) {
    const int64_t nb = cols / QK_K;
    const size_t bs = mend_type_get(t)->type_size;
    rnd_bytes(row, (size_t)nb * bs);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = (uint8_t *)row + (size_t)b * bs;
        const mend_half d = mend_f32_to_fp16(unit ? 1.0f : ldexpf(0.5f + rndu(), rndi(-9, -6)) * (rnd() & 1 ? -1 : 1));
        const mend_half dmin = mend_f32_to_fp16(unit ? 1.0f : ldexpf(0.5f + rndu(), rndi(-10, -7)));
        switch (t) {
        case MEND_TYPE_Q2_K: ((block_q2_K *)blk)->d = d; ((block_q2_K *)blk)->dmin = dmin; break;
        case MEND_TYPE_Q3_K: ((block_q3_K *)blk)->d = d; break;
        case MEND_TYPE_Q4_K: ((block_q4_K *)blk)->d = d; ((block_q4_K *)blk)->dmin = dmin; break;
        case MEND_TYPE_Q5_K: ((block_q5_K *)blk)->d = d; ((block_q5_K *)blk)->dmin = dmin; break;
        case MEND_TYPE_Q6_K: {
            block_q6_K *q = (block_q6_K *)blk;
            q->d = d;
            if (unit) for (int s = 0; s < 16; s++) q->scales[s] = (int8_t)rndi(-4, 4);
            break;
        }
        default: break;
        }
        if (unit && t == MEND_TYPE_Q4_K) {   /* 6-bit scales/mins up to 63: keep them below 8 */
            for (int j = 0; j < 12; j++) ((block_q4_K *)blk)->scales[j] &= 0x07;
        }
        if (unit && t == MEND_TYPE_Q5_K) {
            for (int j = 0; j < 12; j++) ((block_q5_K *)blk)->scales[j] &= 0x07;
        }
    }
}

/* A random weight matrix (rows, cols) in type t; also its dequantized
 * floats. unit: scales of 1 (and no min) so dots are exact integers. */
static void *make_weights(uint32_t t, int64_t rows, int64_t cols, int unit, float *deq) {
    const size_t rs = mend_row_size(t, cols);
    uint8_t *w = aligned_alloc(64, ((size_t)rows * rs + 64) & ~(size_t)63);
    float *tmp = malloc((size_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = w + (size_t)r * rs;
        const float scale = ldexpf(1.0f, rndi(-3, 2));
        for (int64_t j = 0; j < cols; j++) tmp[j] = rndn() * scale;
        switch (t) {
        case MEND_TYPE_F32: memcpy(row, tmp, (size_t)cols * 4); break;
        case MEND_TYPE_F16:
            for (int64_t j = 0; j < cols; j++) ((mend_half *)row)[j] = mend_f32_to_fp16(tmp[j]);
            break;
        case MEND_TYPE_Q4_0: quantize_row_q4_0_ref(tmp, (block_q4_0 *)row, cols); break;
        case MEND_TYPE_Q4_1: quantize_row_q4_1_ref(tmp, (block_q4_1 *)row, cols); break;
        case MEND_TYPE_Q5_0: quantize_row_q5_0_ref(tmp, (block_q5_0 *)row, cols); break;
        case MEND_TYPE_Q5_1: quantize_row_q5_1_ref(tmp, (block_q5_1 *)row, cols); break;
        case MEND_TYPE_Q8_0: {
            quantize_row_q8_0_ref(tmp, (block_q8_0 *)row, cols);
            /* -128 never comes out of the quantizer but is a valid byte */
            block_q8_0 *q = (block_q8_0 *)row;
            q[0].qs[rndi(0, 31)] = -128;
            break;
        }
        default: fill_k_row(t, row, cols, unit); break;
        }
        if (unit && !is_k(t)) {
            for (int64_t b = 0; b < cols / 32 && t != MEND_TYPE_F32 && t != MEND_TYPE_F16; b++) {
                const size_t bs = mend_type_get(t)->type_size;
                mend_half *h = (mend_half *)(row + (size_t)b * bs);
                h[0] = mend_f32_to_fp16(1.0f);                                          /* d */
                if (t == MEND_TYPE_Q4_1 || t == MEND_TYPE_Q5_1) h[1] = 0;               /* m */
            }
        }
        if (deq) {
            int rc = mend_dequantize_row(t, row, deq + (size_t)r * cols, cols);
            if (rc) { fprintf(stderr, "dequantize %s: %s\n", mend_type_name(t), mend_last_error()); exit(2); }
        }
    }
    free(tmp);
    return w;
}

/* ---- activations ---- */

/* dequantize one activation row (q8_0 / q8_1 / q8_K / f32) */
static void deq_act(uint32_t at, const void *a, float *y, int64_t n) {
    if (at == MEND_TYPE_F32) { memcpy(y, a, (size_t)n * 4); return; }
    if (at == MEND_TYPE_Q8_K) {
        const block_q8_K *b = a;
        for (int64_t i = 0; i < n; i++) y[i] = b[i / QK_K].d * b[i / QK_K].qs[i % QK_K];
        return;
    }
    if (at == MEND_TYPE_Q8_1) {
        const block_q8_1 *b = a;
        for (int64_t i = 0; i < n; i++) y[i] = mend_fp16_to_f32(b[i / 32].d) * b[i / 32].qs[i % 32];
        return;
    }
    const block_q8_0 *b = a;
    for (int64_t i = 0; i < n; i++) y[i] = mend_fp16_to_f32(b[i / 32].d) * b[i / 32].qs[i % 32];
}

/* a q8_1 block's stored sum minus d * sum(q): the fp16 rounding of s, which
 * meets the weight min in the q4_1 / q5_1 dot */
static double q8_1_sum_err(const block_q8_1 *b) {
    int s = 0;
    for (int j = 0; j < 32; j++) s += b->qs[j];
    return (double)mend_fp16_to_f32(b->s) - (double)mend_fp16_to_f32(b->d) * s;
}

/* random activations with a few awkward blocks mixed in */
static void make_x(float *x, int64_t n) {
    for (int64_t j = 0; j < n; j++) x[j] = rndn() * ldexpf(1.0f, rndi(-2, 1));
    if (n >= 64) {
        for (int j = 32; j < 64; j++) x[j] = 0.0f;          /* an all-zero q8_0 block */
        x[5] = 7.25f;                                        /* large value first ... */
        x[6] = -7.25f;                                       /* ... and its negation */
    }
}

static void test_quantizers(void) {
    const uint32_t ats[] = {MEND_TYPE_Q8_0, MEND_TYPE_Q8_1, MEND_TYPE_Q8_K};
    const int64_t n = 4 * QK_K;
    float *x = malloc(n * sizeof(float));
    for (int rep = 0; rep < 6; rep++) {
        make_x(x, n);
        if (rep == 1) {   /* exact ties: amax 127 gives id 1 and x = k + 0.5 */
            for (int j = 0; j < n; j++) x[j] = (float)rndi(-126, 125) + 0.5f;
            for (int b = 0; b < n; b += 32) x[b + 7] = (b & 32) ? 127.0f : -127.0f;
        }
        if (rep == 2) {   /* a q8_K block whose first largest value is negative */
            for (int j = 0; j < QK_K; j++) x[j] = rndn();
            x[17] = -9.0f; x[200] = 9.0f;
        }
        if (rep == 3) for (int j = 0; j < QK_K; j++) x[j] = 0.0f;   /* all-zero q8_K block */
        for (int ai = 0; ai < 3; ai++) {
            const uint32_t at = ats[ai];
            const size_t bytes = mend_row_size(at, n);
            uint8_t *ref = calloc(1, bytes), *simd = calloc(1, bytes);
            mend_qdot_kernel k;
            const uint32_t wt = at == MEND_TYPE_Q8_0 ? MEND_TYPE_Q4_0 : at == MEND_TYPE_Q8_1 ? MEND_TYPE_Q4_1 : MEND_TYPE_Q4_K;
            CHECK_OK(mend_qdot_kernel_get(wt, MEND_SIMD_SCALAR, &k));
            k.quantize(x, ref, n);

            /* the definition, with libm rounding (half to even) */
            int bad = 0;
            if (at == MEND_TYPE_Q8_K) {
                const block_q8_K *q = (const block_q8_K *)ref;
                for (int b = 0; b < n / QK_K; b++) {
                    const float *xb = x + b * QK_K;
                    float amax = 0.0f, max = 0.0f;
                    for (int j = 0; j < QK_K; j++) if (fabsf(xb[j]) > amax) { amax = fabsf(xb[j]); max = xb[j]; }
                    const float is = amax ? -127.0f / max : 0.0f;
                    for (int j = 0; j < QK_K; j++) {
                        float v = nearbyintf(is * xb[j]);
                        if (v > 127) v = 127;
                        if (q[b].qs[j] != (int)v) bad++;
                    }
                    for (int g = 0; g < 16; g++) {
                        int s = 0;
                        for (int j = 0; j < 16; j++) s += q[b].qs[16 * g + j];
                        if (q[b].bsums[g] != s) bad++;
                    }
                    if (amax && q[b].d != 1.0f / is) bad++;
                    if (!amax && q[b].d != 0.0f) bad++;
                }
            } else {
                const size_t bs = mend_type_get(at)->type_size;
                for (int b = 0; b < n / 32; b++) {
                    const uint8_t *blk = ref + b * bs;
                    const int8_t *qs = (const int8_t *)(blk + (at == MEND_TYPE_Q8_1 ? 4 : 2));
                    const float *xb = x + b * 32;
                    float amax = 0.0f;
                    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
                    const float id = amax ? 127.0f / amax : 0.0f;
                    int sum = 0;
                    for (int j = 0; j < 32; j++) {
                        if (qs[j] != (int)nearbyintf(xb[j] * id)) bad++;
                        sum += qs[j];
                    }
                    if (mend_rd16(blk) != mend_f32_to_fp16(amax / 127.0f)) bad++;
                    if (at == MEND_TYPE_Q8_1 && mend_rd16(blk + 2) != mend_f32_to_fp16(amax / 127.0f * (float)sum)) bad++;
                }
            }
            CHECK_MSG(bad == 0, "quantize %s ref: %d fields differ from the definition (rep %d)", mend_type_name(at), bad, rep);

            for (int li = 1; li < n_levels; li++) {
                CHECK_OK(mend_qdot_kernel_get(wt, levels[li], &k));
                memset(simd, 0x55, bytes);
                k.quantize(x, simd, n);
                CHECK_MSG(memcmp(ref, simd, bytes) == 0, "quantize %s %s differs from ref (rep %d)",
                          mend_type_name(at), mend_simd_level_name(levels[li]), rep);
            }
            free(ref);
            free(simd);
        }
    }
    free(x);
}

/* Unit-scale blocks: every dot is an integer, so ref and SIMD must match the
 * double product of the dequantized rows exactly. */
static void test_dot_exact(void) {
    for (int ti = 0; ti < N_TYPES; ti++) {
        const uint32_t t = k_types[ti];
        if (t == MEND_TYPE_F16 || t == MEND_TYPE_F32) continue;
        const int64_t n = is_k(t) ? 2 * QK_K : 16 * 32;
        float *wd = malloc(n * sizeof(float)), *ad = malloc(n * sizeof(float));
        for (int rep = 0; rep < 20; rep++) {
            void *w = make_weights(t, 1, n, 1, wd);
            mend_qdot_kernel k;
            CHECK_OK(mend_qdot_kernel_get(t, MEND_SIMD_SCALAR, &k));
            void *a = aligned_alloc(64, (mend_row_size(k.atype, n) + 63) & ~(size_t)63);
            /* activation blocks with d = 1 and random quants in [-127, 127] */
            if (k.atype == MEND_TYPE_Q8_K) {
                block_q8_K *q = a;
                for (int64_t b = 0; b < n / QK_K; b++) {
                    q[b].d = 1.0f;
                    for (int j = 0; j < QK_K; j++) q[b].qs[j] = (int8_t)rndi(-127, 127);
                    for (int g = 0; g < 16; g++) {
                        int s = 0;
                        for (int j = 0; j < 16; j++) s += q[b].qs[16 * g + j];
                        q[b].bsums[g] = (int16_t)s;
                    }
                }
            } else {
                const size_t bs = mend_type_get(k.atype)->type_size;
                for (int64_t b = 0; b < n / 32; b++) {
                    uint8_t *blk = (uint8_t *)a + b * bs;
                    const mend_half one = mend_f32_to_fp16(1.0f);
                    memcpy(blk, &one, 2);
                    int8_t *qs = (int8_t *)(blk + (k.atype == MEND_TYPE_Q8_1 ? 4 : 2));
                    int s = 0;
                    for (int j = 0; j < 32; j++) { qs[j] = (int8_t)rndi(-127, 127); s += qs[j]; }
                    if (k.atype == MEND_TYPE_Q8_1) { const mend_half hs = mend_f32_to_fp16((float)s); memcpy(blk + 2, &hs, 2); }
                }
            }
            deq_act(k.atype, a, ad, n);
            double want = 0.0;
            for (int64_t j = 0; j < n; j++) want += (double)wd[j] * ad[j];
            CHECK_MSG(fabs(want) < 16777216.0, "%s: exact-test dot %g outside float's integer range", mend_type_name(t), want);
            const float got_ref = k.dot(n, w, a);
            CHECK_MSG((double)got_ref == want, "%s ref: %.1f, want %.1f", mend_type_name(t), got_ref, want);
            for (int li = 1; li < n_levels; li++) {
                CHECK_OK(mend_qdot_kernel_get(t, levels[li], &k));
                const float got = k.dot(n, w, a);
                CHECK_MSG((double)got == want, "%s %s: %.1f, want %.1f", mend_type_name(t),
                          mend_simd_level_name(k.level), got, want);
            }
            free(w);
            free(a);
        }
        free(wd);
        free(ad);
    }
}

/* sum |w_j a_j| over the dequantized rows (+ |m s| per block for the q8_1
 * pairs): the scale float errors are measured against */
static double dot_mag(uint32_t t, uint32_t at, const void *w, const float *wd, const void *a, const float *ad, int64_t n) {
    double mag = 0.0;
    for (int64_t j = 0; j < n; j++) mag += fabs((double)wd[j] * ad[j]);
    if (at == MEND_TYPE_Q8_1) {
        const block_q8_1 *q = a;
        for (int64_t b = 0; b < n / 32; b++) {
            const float m = mend_fp16_to_f32(((const mend_half *)((const uint8_t *)w + b * mend_type_get(t)->type_size))[1]);
            mag += fabs(m * mend_fp16_to_f32(q[b].s));
        }
    }
    return mag;
}

/* Random scales: every SIMD kernel and tile (1x1, 1x4, 4x1, 2x4) within 1e-5
 * of the _ref dot relative to sum |w a|; odd lengths (one 32-block past a
 * pair, f16/f32 tails) included. Activation rows are 4 bytes longer than a
 * row so their blocks sit at every alignment the blocks allow. */
static void test_dot_random(void) {
    for (int ti = 0; ti < N_TYPES; ti++) {
        const uint32_t t = k_types[ti];
        const int64_t lens_k[] = {QK_K, 3 * QK_K, 6 * QK_K};
        const int64_t lens_32[] = {32, 96, 576, 1536};
        const int64_t lens_f[] = {1, 7, 17, 100, 576};
        const int is_f = t == MEND_TYPE_F16 || t == MEND_TYPE_F32;
        const int64_t *lens = is_k(t) ? lens_k : is_f ? lens_f : lens_32;
        const int nl = is_k(t) ? 3 : is_f ? 5 : 4;
        for (int li0 = 0; li0 < nl; li0++) {
            const int64_t n = lens[li0];
            const size_t wrow = mend_row_size(t, n);
            float *wd = malloc(4 * n * sizeof(float)), *ad = malloc(4 * n * sizeof(float)), *x = malloc(4 * n * sizeof(float));
            for (int rep = 0; rep < 6; rep++) {
                void *w = make_weights(t, 4, n, 0, wd);
                for (int q = 0; q < 4; q++) make_x(x + q * n, n);
                mend_qdot_kernel kr;
                CHECK_OK(mend_qdot_kernel_get(t, MEND_SIMD_SCALAR, &kr));
                const size_t arow = (kr.quantize ? mend_row_size(kr.atype, n) : n * sizeof(float)) + 4;
                uint8_t *a = aligned_alloc(64, (4 * arow + 63) & ~(size_t)63);
                for (int q = 0; q < 4; q++) {
                    if (kr.quantize) kr.quantize(x + q * n, a + q * arow, n);
                    else memcpy(a + q * arow, x + q * n, n * sizeof(float));
                    deq_act(kr.atype, a + q * arow, ad + q * n, n);
                }
                double ref[4][4], mag[4][4];
                for (int i = 0; i < 4; i++)
                    for (int q = 0; q < 4; q++) {
                        const uint8_t *wi = (const uint8_t *)w + i * wrow, *aq = a + q * arow;
                        ref[i][q] = kr.dot(n, wi, aq);
                        mag[i][q] = dot_mag(t, kr.atype, wi, wd + i * n, aq, ad + q * n, n);
                    }
#define NEAR(got, i, q, what) \
    CHECK_MSG(fabs((double)(got) - ref[i][q]) <= 1e-5 * mag[i][q] + 1e-30, "%s %s %s n=%lld [%d][%d]: %.9g vs ref %.9g", \
              mend_type_name(t), mend_simd_level_name(k.level), what, (long long)n, i, q, (double)(got), ref[i][q])
                for (int li = 1; li < n_levels; li++) {
                    mend_qdot_kernel k;
                    CHECK_OK(mend_qdot_kernel_get(t, levels[li], &k));
                    for (int i = 0; i < 4; i++)
                        for (int q = 0; q < 4; q++) NEAR(k.dot(n, (const uint8_t *)w + i * wrow, a + q * arow), i, q, "dot");
#if defined(__aarch64__)
                    /* NEON (plain and SDOT): the _ref float steps in the _ref order, so its bits */
                    if (!is_f)
                        for (int i = 0; i < 4; i++)
                            for (int q = 0; q < 4; q++) {
                                const float got = k.dot(n, (const uint8_t *)w + i * wrow, a + q * arow);
                                CHECK_MSG(got == (float)ref[i][q], "%s %s%s n=%lld [%d][%d]: %.9g, _ref %.9g",
                                          mend_type_name(t), mend_simd_level_name(k.level), k.sdot ? " (sdot)" : "",
                                          (long long)n, i, q, (double)got, ref[i][q]);
                            }
#endif
                    float s[8];
                    if (k.dot4) {
                        k.dot4(n, (const uint8_t *)w + 3 * wrow, a, arow, s);
                        for (int q = 0; q < 4; q++) NEAR(s[q], 3, q, "dot4");
                    }
                    if (k.dotw4) {
                        k.dotw4(n, w, wrow, a + 2 * arow, s);
                        for (int i = 0; i < 4; i++) NEAR(s[i], i, 2, "dotw4");
                    }
                    if (k.dot24) {
                        k.dot24(n, (const uint8_t *)w + wrow, wrow, a, arow, s);
                        for (int i = 0; i < 2; i++)
                            for (int q = 0; q < 4; q++) NEAR(s[4 * i + q], i + 1, q, "dot24");
                    }
                }
#undef NEAR
                free(w);
                free(a);
            }
            free(wd);
            free(ad);
            free(x);
        }
    }
}

/* mend_qmatmul against double references */
static void check_matmul(uint32_t t, int64_t rows, int64_t cols, int n, int threads, int level) {
    float *wd = malloc((size_t)rows * cols * sizeof(float));
    void *w = make_weights(t, rows, cols, 0, wd);
    float *x = malloc((size_t)n * cols * sizeof(float)), *out = malloc((size_t)n * rows * sizeof(float));
    for (int i = 0; i < n; i++) make_x(x + (size_t)i * cols, cols);
    for (size_t i = 0; i < (size_t)n * rows; i++) out[i] = NAN;
    mend_qdot_kernel k;
    CHECK_OK(mend_qdot_kernel_get(t, MEND_SIMD_SCALAR, &k));
    CHECK_OK(mend_qmatmul_ex(out, rows, x, cols, n, w, t, rows, cols, NULL, 0, threads, level));

    /* the activations as the kernels see them (quantizers agree at every level) */
    float *xd = malloc((size_t)cols * sizeof(float));
    void *a = k.quantize ? aligned_alloc(64, (mend_row_size(k.atype, cols) + 63) & ~(size_t)63) : NULL;
    int bad = 0, bad_f = 0;
    double worst = 0.0, worst_f = 0.0, err2 = 0.0, ref2 = 0.0;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * cols;
        if (a) { k.quantize(xi, a, cols); deq_act(k.atype, a, xd, cols); }
        else memcpy(xd, xi, (size_t)cols * 4);
        for (int64_t r = 0; r < rows; r++) {
            const float *wr = wd + (size_t)r * cols;
            double ref = 0.0, mag = 0.0, exact = 0.0, qerr = 0.0, wabs = 0.0;
            for (int64_t j = 0; j < cols; j++) {
                ref += (double)wr[j] * xd[j];
                mag += fabs((double)wr[j] * xd[j]);
                exact += (double)wr[j] * xi[j];
                qerr += fabs((double)wr[j]) * fabs((double)xi[j] - xd[j]);
                wabs += fabs((double)wr[j]) * fabs(xi[j]);
            }
            if (k.atype == MEND_TYPE_Q8_1) {
                const uint8_t *wrow = (const uint8_t *)w + (size_t)r * mend_row_size(t, cols);
                const block_q8_1 *q = a;
                for (int64_t b = 0; b < cols / 32; b++) {
                    const double m = mend_fp16_to_f32(((const mend_half *)(wrow + b * mend_type_get(t)->type_size))[1]);
                    const double e = m * q8_1_sum_err(&q[b]);
                    ref += e;
                    qerr += fabs(e);
                    mag += fabs(m * mend_fp16_to_f32(q[b].s));
                }
            }
            const double got = out[(size_t)i * rows + r];
            const double tol = 1e-4 * mag + 1e-30;
            if (!(fabs(got - ref) <= tol)) {
                if (!bad) fprintf(stderr, "  %s [%d][%lld]: %.9g vs %.9g (tol %g)\n", mend_type_name(t), i, (long long)r, got, ref, tol);
                bad++;
            }
            if (fabs(got - ref) / (mag + 1e-30) > worst) worst = fabs(got - ref) / (mag + 1e-30);
            /* against f32 math on the unquantized x: within the quantization error */
            const double tol_f = qerr + 1e-4 * wabs + 1e-30;
            if (!(fabs(got - exact) <= tol_f)) bad_f++;
            if (fabs(got - exact) / (wabs + 1e-30) > worst_f) worst_f = fabs(got - exact) / (wabs + 1e-30);
            err2 += (got - exact) * (got - exact);
            ref2 += exact * exact;
        }
    }
    CHECK_MSG(bad == 0, "qmatmul %s %lldx%lld n=%d threads=%d level=%d: %d outputs off the dequantized reference (worst %.3g)",
              mend_type_name(t), (long long)rows, (long long)cols, n, threads, level, bad, worst);
    CHECK_MSG(bad_f == 0, "qmatmul %s %lldx%lld n=%d: %d outputs beyond the activation quantization error of f32 math (worst %.3g)",
              mend_type_name(t), (long long)rows, (long long)cols, n, bad_f, worst_f);
    /* q8 activations: about 0.5% relative error on a dot of random vectors */
    CHECK_MSG(sqrt(err2 / (ref2 + 1e-300)) < 0.03, "qmatmul %s: relative rms error vs f32 math %.3g",
              mend_type_name(t), sqrt(err2 / (ref2 + 1e-300)));
    free(wd); free(w); free(x); free(out); free(xd); free(a);
}

static void test_matmul(void) {
    const int ns[] = {1, 3, 17};
    for (int ti = 0; ti < N_TYPES; ti++) {
        const uint32_t t = k_types[ti];
        const int64_t cols = is_k(t) ? 2 * QK_K : (t == MEND_TYPE_F16 || t == MEND_TYPE_F32) ? 100 : 96;
        const int64_t rows_list[] = {1, 7, 67};
        for (int ri = 0; ri < 3; ri++)
            for (int ni = 0; ni < 3; ni++)
                check_matmul(t, rows_list[ri], cols, ns[ni], ri == 2 ? 3 : 2, -1);
        /* every SIMD level through the driver, and a shape big enough to run threaded */
        for (int li = 0; li < n_levels; li++) check_matmul(t, 33, cols, 3, 2, levels[li]);
        check_matmul(t, 301, is_k(t) ? 4 * QK_K : 1024, 5, 2, -1);
    }
    /* the default path (mend_qmatmul) agrees with forced-scalar within the dot tolerance */
    const int64_t rows = 40, cols = 576;
    float *x = malloc(3 * cols * sizeof(float)), *o1 = malloc(3 * rows * sizeof(float)), *o2 = malloc(3 * rows * sizeof(float));
    float *wd = malloc(rows * cols * sizeof(float));
    void *w = make_weights(MEND_TYPE_Q4_1, rows, cols, 0, wd);
    for (int i = 0; i < 3; i++) make_x(x + i * cols, cols);
    CHECK_OK(mend_qmatmul(o1, x, 3, w, MEND_TYPE_Q4_1, rows, cols));
    mend_cpu_force_scalar(1);
    CHECK_OK(mend_qmatmul(o2, x, 3, w, MEND_TYPE_Q4_1, rows, cols));
    mend_cpu_force_scalar(0);
    int bad = 0;
    for (int i = 0; i < 3 * rows; i++) {
        double mag = 0.0;
        for (int j = 0; j < cols; j++) mag += fabs(wd[(i % rows) * cols + j] * x[(i / rows) * cols + j]);
        if (!(fabs(o1[i] - o2[i]) <= 1e-5 * mag)) bad++;
    }
    CHECK_MSG(bad == 0, "qmatmul default vs forced scalar: %d outputs differ", bad);
    free(x); free(o1); free(o2); free(wd); free(w);
    mend_qmatmul_release_scratch();
}

static void test_errors(void) {
    float x[64] = {0}, out[4];
    alignas(8) uint8_t w[256] = {0};
    CHECK_ERR(mend_qmatmul(out, x, 1, w, MEND_TYPE_Q4_0, 1, 48), MEND_EINVAL, "multiple of 32");
    CHECK_ERR(mend_qmatmul(out, x, 1, w, MEND_TYPE_Q4_K, 1, 32), MEND_EINVAL, "multiple of 256");
    CHECK_ERR(mend_qmatmul(out, x, 1, w, MEND_TYPE_BF16, 1, 32), MEND_EUNSUPPORTED, "bf16");
    CHECK_ERR(mend_qmatmul(out, x, 1, w, 200, 1, 32), MEND_EUNSUPPORTED, "no native dot");
    CHECK_ERR(mend_qmatmul(out, x, 1, w + 1, MEND_TYPE_Q4_0, 1, 32), MEND_EINVAL, "aligned");
    CHECK_ERR(mend_qmatmul(out, x, -1, w, MEND_TYPE_Q4_0, 1, 32), MEND_EINVAL, "negative");
    CHECK_ERR(mend_qmatmul(NULL, x, 1, w, MEND_TYPE_Q4_0, 1, 32), MEND_EINVAL, "NULL output");
    CHECK_ERR(mend_qmatmul(out, x, 1, w, MEND_TYPE_Q4_0, INT64_MAX / 4, 64), MEND_ERANGE, "overflows");
    uint8_t small[8];
    CHECK_ERR(mend_qmatmul_ex(out, 1, x, 32, 1, w, MEND_TYPE_Q4_0, 1, 32, small, sizeof small, 1, -1), MEND_EINVAL, "smaller");
    CHECK_ERR(mend_qmatmul_ex(out, 1, x, 16, 1, w, MEND_TYPE_Q4_0, 1, 32, NULL, 0, 1, -1), MEND_EINVAL, "strides");
    CHECK(mend_qmatmul_scratch_size(MEND_TYPE_Q4_0, 2, 64) == 2 * 2 * sizeof(block_q8_0));
    CHECK(mend_qmatmul_scratch_size(MEND_TYPE_Q4_K, 1, 256) == sizeof(block_q8_K));
    CHECK(mend_qdot_act_type(MEND_TYPE_Q5_1) == MEND_TYPE_Q8_1);
    CHECK(mend_qdot_act_type(MEND_TYPE_F16) == MEND_TYPE_F32);
    CHECK(mend_qdot_act_type(MEND_TYPE_BF16) == -1);
    /* n = 0 and rows = 0 are no-ops */
    CHECK_OK(mend_qmatmul(out, x, 0, w, MEND_TYPE_Q4_0, 1, 32));
    CHECK_OK(mend_qmatmul(out, x, 1, w, MEND_TYPE_Q4_0, 0, 32));
}

int main(void) {
    init_levels();
    printf("SIMD levels:");
    for (int i = 0; i < n_levels; i++) printf(" %s", mend_simd_level_name(levels[i]));
    printf("%s%s\n", mend_cpu_has_avx512_vnni() ? " (+vnni)" : "", mend_cpu_has_neon_dotprod() ? " (+dotprod)" : "");
    test_quantizers();
    test_dot_exact();
    test_dot_random();
    test_matmul();
    test_errors();
    return test_finish();
}
