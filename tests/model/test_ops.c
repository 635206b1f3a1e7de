/* kernels/ops: SIMD primitives against their scalar _ref twins, and every
 * layer kernel against a direct double-precision evaluation of its equation. */
#include <stdint.h>

#include "kernels/cpu.h"
#include "kernels/ops.h"
#include "test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {   /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1 << 23)) - 1.0);
}
static void fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * frand();
}
static double max_rel(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + 1e-6);
        if (d > m) m = d;
    }
    return m;
}
static double max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m) m = d;
    }
    return m;
}

/* One implementation of the four primitives. */
typedef struct impl {
    const char *name;
    int align;   /* d multiple for the row kernels */
    void (*dot)(int, int, const float *, const float *, size_t, float, float *);
    void (*wsum)(int, int, const float *, const float *, size_t, float *);
    float (*exps)(int64_t, float *, float);
    void (*swiglu)(float *, const float *, const float *, int64_t);
} impl;

/* one implementation against the scalar twins */
static void test_primitives(const impl *I) {
    enum { T = 301, LD = 200 };
    static float q[LD], K[T * LD], s1[T], s2[T], o1[LD], o2[LD], e1[1000], e2[1000];
    const int dims[] = {8, 16, 48, 64, 80, 128, 160, 13};
    fill(K, T * LD, 1.0f);
    fill(q, LD, 1.0f);
    for (int di = 0; di < (int)(sizeof dims / sizeof *dims); di++) {
        const int d = dims[di];
        if (d % I->align) continue;
        for (int Tn = 1; Tn <= T; Tn += 37) {
            vec_dot_rows_ref(Tn, d, q, K, LD, 0.125f, s1);
            I->dot(Tn, d, q, K, LD, 0.125f, s2);
            CHECK_MSG(max_abs(s1, s2, Tn) < 1e-5, "%s dot_rows d=%d T=%d diff %g", I->name, d, Tn,
                      max_abs(s1, s2, Tn));
            fill(s1, Tn, 1.0f);
            vec_wsum_rows_ref(Tn, d, s1, K, LD, o1);
            I->wsum(Tn, d, s1, K, LD, o2);
            CHECK_MSG(max_abs(o1, o2, d) < 1e-4, "%s wsum_rows d=%d T=%d diff %g", I->name, d, Tn,
                      max_abs(o1, o2, d));
        }
    }
    const int ns[] = {1, 7, 15, 16, 17, 33, 1000};
    for (int k = 0; k < (int)(sizeof ns / sizeof *ns); k++) {
        const int n = ns[k];
        fill(e1, n, 30.0f);
        e1[0] = -200.0f;   /* underflows to ~0 */
        memcpy(e2, e1, n * sizeof(float));
        float a = vec_exp_sum_ref(n, e1, 10.0f), b = I->exps(n, e2, 10.0f);
        CHECK_MSG(fabs(a - b) <= 2e-6 * fabs(a) + 1e-30, "%s exp_sum n=%d: %g vs %g", I->name, n, a, b);
        CHECK_MSG(max_rel(e2 + 1, e1 + 1, n - 1) < 1e-6, "%s exp n=%d rel %g", I->name, n,
                  max_rel(e2 + 1, e1 + 1, n - 1));
        CHECK(e2[0] >= 0.0f && e2[0] < 1e-30f);
        static float g[1000], u[1000], y1[1000], y2[1000];
        fill(g, n, 12.0f);
        fill(u, n, 2.0f);
        if (n > 3) { g[1] = 100.0f; g[2] = -100.0f; g[3] = 0.0f; }
        swiglu_forward_ref(y1, g, u, n);
        I->swiglu(y2, g, u, n);
        CHECK_MSG(max_rel(y2, y1, n) < 1e-5, "%s swiglu n=%d rel %g", I->name, n, max_rel(y2, y1, n));
    }
}

static void test_all_primitives(void) {
    const impl dispatch = {"dispatch", 1, vec_dot_rows, vec_wsum_rows, vec_exp_sum, swiglu_forward};
    test_primitives(&dispatch);
#ifdef MEND_OPS_HAVE_SIMD
    const impl avx2 = {"avx2", 8, vec_dot_rows_avx2, vec_wsum_rows_avx2, vec_exp_sum_avx2, swiglu_forward_avx2};
    const impl avx512 = {"avx512", 16, vec_dot_rows_avx512, vec_wsum_rows_avx512, vec_exp_sum_avx512,
                         swiglu_forward_avx512};
    if (mend_cpu_has_avx2()) test_primitives(&avx2);
    else printf("note: no AVX2 here, AVX2 kernels not tested\n");
    if (mend_cpu_has_avx512()) test_primitives(&avx512);
    else printf("note: no AVX-512 here, AVX-512 kernels not tested\n");
#endif
    mend_cpu_force_scalar(1);   /* the dispatchers' scalar fallback */
    test_primitives(&dispatch);
    mend_cpu_force_scalar(0);
}

#ifdef MEND_OPS_HAVE_SIMD
/* the shared-key kernels give each query exactly its single-query numbers
 * (the forward's results must not depend on how heads are grouped) */
static void test_heads(void) {
    if (!mend_cpu_has_avx512()) return;
    enum { T = 77, LD = 200, GMAX = 4, QS = 136, SS = 96 };
    static float q[GMAX * QS], K[T * LD], p[GMAX * SS], s1[T], s2[GMAX * SS], o1[LD], o2[GMAX * QS];
    fill(K, T * LD, 1.0f);
    fill(q, GMAX * QS, 1.0f);
    fill(p, GMAX * SS, 1.0f);
    const int dims[] = {16, 48, 64, 80, 128};
    for (int di = 0; di < 5; di++) {
        const int d = dims[di];
        for (int G = 1; G <= GMAX; G++)
            for (int Tn = 1; Tn <= T; Tn += 19) {
                vec_dot_rows_heads_avx512(G, Tn, d, q, QS, K, LD, 0.125f, s2, SS);
                vec_wsum_rows_heads_avx512(G, Tn, d, p, SS, K, LD, o2, QS);
                int same = 1;
                for (int h = 0; h < G; h++) {
                    vec_dot_rows_avx512(Tn, d, q + h * QS, K, LD, 0.125f, s1);
                    same &= memcmp(s1, s2 + h * SS, (size_t)Tn * sizeof(float)) == 0;
                    vec_wsum_rows_avx512(Tn, d, p + h * SS, K, LD, o1);
                    same &= memcmp(o1, o2 + h * QS, (size_t)d * sizeof(float)) == 0;
                }
                CHECK_MSG(same, "heads kernels d=%d G=%d T=%d differ from the single-query ones", d, G, Tn);
            }
    }
}
#endif

static void test_layers(void) {
    enum { N = 5, D = 96, H = 6, HD = 16 };
    static float x[N * D], w[D], y[N * D];
    fill(x, N * D, 3.0f);
    fill(w, D, 1.0f);
    rmsnorm_forward(y, x, w, N, D, 1e-5f);
    double err = 0;
    for (int i = 0; i < N; i++) {
        double ss = 0;
        for (int j = 0; j < D; j++) ss += (double)x[i * D + j] * x[i * D + j];
        double r = 1.0 / sqrt(ss / D + 1e-5);
        for (int j = 0; j < D; j++) err = fmax(err, fabs(x[i * D + j] * r * w[j] - y[i * D + j]));
    }
    CHECK_MSG(err < 1e-5, "rmsnorm err %g", err);

    /* rope: tables, both layouts against the rotation written out */
    static float ct[N * HD / 2], st[N * HD / 2], r[N * H * HD];
    const int pos0 = 7;
    const float theta = 10000.0f;
    rope_tables(ct, st, N, pos0, HD, theta);
    for (int type = 0; type <= 2; type += 2) {
        memcpy(r, x, sizeof r);
        rope_forward(r, N, H * HD, H, HD, ct, st, type);
        double e = 0;
        for (int p = 0; p < N; p++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < HD / 2; i++) {
                    double ang = (pos0 + p) * pow(theta, -2.0 * i / HD);
                    int ia = type == 2 ? i : 2 * i, ib = type == 2 ? i + HD / 2 : 2 * i + 1;
                    const float *v = x + p * H * HD + h * HD;
                    const float *o = r + p * H * HD + h * HD;
                    double a = v[ia] * cos(ang) - v[ib] * sin(ang);
                    double b = v[ia] * sin(ang) + v[ib] * cos(ang);
                    e = fmax(e, fmax(fabs(a - o[ia]), fabs(b - o[ib])));
                }
        CHECK_MSG(e < 1e-5, "rope type %d err %g", type, e);
    }

    /* softmax */
    static float sm[300];
    fill(sm, 300, 20.0f);
    double mx = -1e30, sum = 0;
    for (int i = 0; i < 300; i++) mx = fmax(mx, sm[i]);
    for (int i = 0; i < 300; i++) sum += exp(sm[i] - mx);
    float sm0[300];
    memcpy(sm0, sm, sizeof sm);
    softmax_forward(sm, 300);
    double se = 0, tot = 0;
    for (int i = 0; i < 300; i++) {
        se = fmax(se, fabs(exp(sm0[i] - mx) / sum - sm[i]));
        tot += sm[i];
    }
    CHECK_MSG(se < 1e-6, "softmax err %g", se);
    CHECK_NEAR(tot, 1.0, 1e-5);
}

static void test_matmul(void) {
    enum { M = 37, K = 50, NMAX = 6, LDO = 41 };
    static float W[M * K], xx[NMAX * K], b[M], out[NMAX * LDO], ref[NMAX * LDO];
    fill(W, M * K, 1.0f);
    fill(xx, NMAX * K, 1.0f);
    fill(b, M, 1.0f);
    for (int n = 1; n <= NMAX; n += NMAX - 1) {
        for (int beta = 0; beta <= 1; beta++) {
            fill(out, NMAX * LDO, 1.0f);
            memcpy(ref, out, sizeof out);
            const size_t ldo = n == 1 ? M : LDO;
            matmul_forward(out, ldo, xx, W, beta ? NULL : b, n, M, K, (float)beta);
            double e = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < M; j++) {
                    double acc = beta ? ref[i * ldo + j] : b[j];
                    for (int k = 0; k < K; k++) acc += (double)xx[i * K + k] * W[j * K + k];
                    e = fmax(e, fabs(acc - out[i * ldo + j]));
                }
            CHECK_MSG(e < 1e-4, "matmul n=%d beta=%d err %g", n, beta, e);
            if (n > 1) CHECK(out[0 * ldo + M] == ref[0 * ldo + M]);   /* padding untouched */
        }
    }
}

/* attention over a cache, against the equation in double */
static void test_attention(void) {
    enum { H = 6, KV = 2, HD = 16, POS0 = 5, N = 4, CTX = 12 };
    const int qd = H * HD, kvd = KV * HD;
    static float q[N * H * HD], kc[CTX * KV * HD], vc[CTX * KV * HD], out[N * H * HD];
    static float scratch[4 * (H / KV) * CTX];
    fill(q, sizeof q / sizeof *q, 2.0f);
    fill(kc, sizeof kc / sizeof *kc, 2.0f);
    fill(vc, sizeof vc / sizeof *vc, 1.0f);
    for (int threads = 1; threads <= 2; threads++) {
        memset(out, 0, sizeof out);
        attention_forward(out, q, kc, vc, N, POS0, H, KV, HD, 0.0f, scratch, CTX, threads);
        double e = 0;
        for (int i = 0; i < N; i++)
            for (int h = 0; h < H; h++) {
                const int g = h / (H / KV), T = POS0 + i + 1;
                double s[CTX], mx = -1e300, sum = 0;
                for (int t = 0; t < T; t++) {
                    s[t] = 0;
                    for (int j = 0; j < HD; j++) s[t] += (double)q[i * qd + h * HD + j] * kc[t * kvd + g * HD + j];
                    s[t] /= sqrt((double)HD);
                    mx = fmax(mx, s[t]);
                }
                for (int t = 0; t < T; t++) sum += (s[t] = exp(s[t] - mx));
                for (int j = 0; j < HD; j++) {
                    double o = 0;
                    for (int t = 0; t < T; t++) o += s[t] / sum * vc[t * kvd + g * HD + j];
                    e = fmax(e, fabs(o - out[i * qd + h * HD + j]));
                }
            }
        CHECK_MSG(e < 1e-5, "attention threads=%d err %g", threads, e);
    }
}

int main(void) {
    test_all_primitives();
#ifdef MEND_OPS_HAVE_SIMD
    test_heads();
#endif
    test_layers();
    test_matmul();
    test_attention();
    return test_finish();
}
