/* Backward kernels (kernels/ops_backward.h) against central differences of
 * double-precision forwards written here from the equations, plus the f32
 * forwards of ops.h checked against the same double forwards. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/ops_backward.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) {   /* xorshift64*, uniform in [-1, 1) */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}
static void fill(float *x, size_t n, double s) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(s * urand());
}
/* max |a - b| / max(max |b|, floor) */
static double rel_err(const float *a, const double *b, size_t n, double floor) {
    double e = 0, mx = floor;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs(a[i] - b[i]));
        mx = fmax(mx, fabs(b[i]));
    }
    return e / mx;
}

/* ---- double forwards ---- */
static void rms_d(double *y, const double *x, const float *w, int n, int dim, double eps) {
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += x[i * dim + j] * x[i * dim + j];
        double r = 1.0 / sqrt(ss / dim + eps);
        for (int j = 0; j < dim; j++) y[i * dim + j] = x[i * dim + j] * r * w[j];
    }
}

static void ln_d(double *y, const double *x, const float *w, const float *b, int n, int dim, double eps) {
    for (int i = 0; i < n; i++) {
        double m = 0, v = 0;
        for (int j = 0; j < dim; j++) m += x[i * dim + j] / dim;
        for (int j = 0; j < dim; j++) v += (x[i * dim + j] - m) * (x[i * dim + j] - m) / dim;
        double r = 1.0 / sqrt(v + eps);
        for (int j = 0; j < dim; j++) y[i * dim + j] = (x[i * dim + j] - m) * r * w[j] + b[j];
    }
}

static void rope_d(double *x, int n, int nh, int hd, int pos0, double theta, int type) {
    for (int p = 0; p < n; p++)
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < hd / 2; i++) {
                double a = (pos0 + p) * pow(theta, -2.0 * i / hd), c = cos(a), s = sin(a);
                double *v = x + (size_t)p * nh * hd + (size_t)h * hd;
                int i0 = type == 2 ? i : 2 * i, i1 = type == 2 ? i + hd / 2 : 2 * i + 1;
                double u = v[i0], w = v[i1];
                v[i0] = u * c - w * s;
                v[i1] = u * s + w * c;
            }
}

/* causal GQA attention from position 0: q (T, H*hd), k, v (T, KH*hd) */
/* the attention in double; cap > 0: scores capped as cap * tanh(s / cap) */
static void att_d(double *out, const double *q, const double *k, const double *v, int T, int H, int KH, int hd,
                  double cap) {
    int g = H / KH;
    double *s = malloc(sizeof(double) * T);
    for (int i = 0; i < T; i++)
        for (int h = 0; h < H; h++) {
            const double *qi = q + (size_t)i * H * hd + h * hd;
            double mx = -1e300;
            for (int t = 0; t <= i; t++) {
                const double *kt = k + (size_t)t * KH * hd + (h / g) * hd;
                double d = 0;
                for (int j = 0; j < hd; j++) d += qi[j] * kt[j];
                s[t] = d / sqrt((double)hd);
                if (cap > 0) s[t] = cap * tanh(s[t] / cap);
                mx = fmax(mx, s[t]);
            }
            double sum = 0;
            for (int t = 0; t <= i; t++) sum += (s[t] = exp(s[t] - mx));
            double *o = out + (size_t)i * H * hd + h * hd;
            for (int j = 0; j < hd; j++) o[j] = 0;
            for (int t = 0; t <= i; t++)
                for (int j = 0; j < hd; j++) o[j] += s[t] / sum * v[(size_t)t * KH * hd + (h / g) * hd + j];
        }
    free(s);
}

static double dotd(const double *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}
static void tod(double *d, const float *f, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = f[i];
}

static void test_rmsnorm(void) {
    const int n = 3, dim = 37;
    float x[3 * 37], w[37], dy[3 * 37], dx[3 * 37], y[3 * 37];
    double xd[3 * 37], yd[3 * 37], g[3 * 37];
    fill(x, n * dim, 2.0);
    fill(w, dim, 1.0);
    fill(dy, n * dim, 1.0);
    const double eps = 1e-5, h = 1e-6;
    tod(xd, x, n * dim);
    rms_d(yd, xd, w, n, dim, eps);
    rmsnorm_forward(y, x, w, n, dim, (float)eps);
    CHECK(rel_err(y, yd, n * dim, 1e-3) < 1e-6);
    for (int i = 0; i < n * dim; i++) {
        double s = xd[i];
        xd[i] = s + h;
        rms_d(yd, xd, w, n, dim, eps);
        double lp = dotd(yd, dy, n * dim);
        xd[i] = s - h;
        rms_d(yd, xd, w, n, dim, eps);
        double lm = dotd(yd, dy, n * dim);
        xd[i] = s;
        g[i] = (lp - lm) / (2 * h);
    }
    rmsnorm_backward(dx, dy, x, w, n, dim, (float)eps, 0.0f);
    double e = rel_err(dx, g, n * dim, 1e-3);
    CHECK_MSG(e < 1e-5, "rmsnorm_backward rel err %g", e);
    /* beta = 1 accumulates */
    float acc[3 * 37];
    for (int i = 0; i < n * dim; i++) acc[i] = 1.0f;
    rmsnorm_backward(acc, dy, x, w, n, dim, (float)eps, 1.0f);
    int okacc = 1;
    for (int i = 0; i < n * dim; i++) okacc &= fabsf(acc[i] - 1.0f - dx[i]) < 1e-5f;
    CHECK(okacc);
}

/* LayerNorm with bias: the forward against the double one, the backward
 * against central differences (rows offset from 0 so the mean matters) */
static void test_layernorm(void) {
    const int n = 3, dim = 37;
    float x[3 * 37], w[37], b[37], dy[3 * 37], dx[3 * 37], y[3 * 37];
    double xd[3 * 37], yd[3 * 37], g[3 * 37];
    fill(x, n * dim, 2.0);
    for (int i = 0; i < n * dim; i++) x[i] += (float)(i / dim + 1);
    fill(w, dim, 1.0);
    fill(b, dim, 0.5);
    fill(dy, n * dim, 1.0);
    const double eps = 1e-5, h = 1e-6;
    tod(xd, x, n * dim);
    ln_d(yd, xd, w, b, n, dim, eps);
    layernorm_forward(y, x, w, b, n, dim, (float)eps);
    CHECK_MSG(rel_err(y, yd, n * dim, 1e-3) < 1e-6, "layernorm_forward rel err %g", rel_err(y, yd, n * dim, 1e-3));
    for (int i = 0; i < n * dim; i++) {
        double s = xd[i];
        xd[i] = s + h;
        ln_d(yd, xd, w, b, n, dim, eps);
        double lp = dotd(yd, dy, n * dim);
        xd[i] = s - h;
        ln_d(yd, xd, w, b, n, dim, eps);
        double lm = dotd(yd, dy, n * dim);
        xd[i] = s;
        g[i] = (lp - lm) / (2 * h);
    }
    layernorm_backward(dx, dy, x, w, n, dim, (float)eps, 0.0f);
    double e = rel_err(dx, g, n * dim, 1e-3);
    CHECK_MSG(e < 1e-5, "layernorm_backward rel err %g", e);
    float acc[3 * 37];
    for (int i = 0; i < n * dim; i++) acc[i] = 1.0f;
    layernorm_backward(acc, dy, x, w, n, dim, (float)eps, 1.0f);
    int okacc = 1;
    for (int i = 0; i < n * dim; i++) okacc &= fabsf(acc[i] - 1.0f - dx[i]) < 1e-5f;
    CHECK(okacc);
}

/* ReLU: forward max(x, 0), backward dy where x > 0 and 0 elsewhere (at 0 too) */
static void test_relu(void) {
    enum { N = 41 };
    float x[N], y[N], dy[N], dx[N];
    fill(x, N, 1.0);
    fill(dy, N, 1.0);
    x[7] = 0.0f;
    relu_forward(y, x, N);
    relu_backward(dx, dy, x, N);
    int ok = 1, pos = 0, neg = 0;
    for (int i = 0; i < N; i++) {
        ok &= y[i] == (x[i] > 0 ? x[i] : 0.0f) && dx[i] == (x[i] > 0 ? dy[i] : 0.0f);
        pos += x[i] > 0;
        neg += x[i] < 0;
    }
    CHECK_MSG(ok && pos > 0 && neg > 0 && dx[7] == 0.0f, "relu forward / backward");
    memcpy(dx, dy, sizeof dx);   /* in place */
    relu_backward(dx, dx, x, N);
    for (int i = 0; i < N; i++) ok &= dx[i] == (x[i] > 0 ? dy[i] : 0.0f);
    CHECK_MSG(ok, "relu_backward in place");
}

static void test_rope(int type) {
    const int n = 5, nh = 3, hd = 8, ld = nh * hd, pos0 = 0;
    float x[5 * 24], dy[5 * 24], dx[5 * 24], cs[5 * 4], sn[5 * 4];
    double xd[5 * 24], yd[5 * 24], g[5 * 24];
    fill(x, n * ld, 1.0);
    fill(dy, n * ld, 1.0);
    rope_tables(cs, sn, n, pos0, hd, 10000.0f);
    float y[5 * 24];
    memcpy(y, x, sizeof y);
    rope_forward(y, n, ld, nh, hd, cs, sn, type);
    tod(yd, x, n * ld);
    rope_d(yd, n, nh, hd, pos0, 10000.0, type);
    CHECK(rel_err(y, yd, n * ld, 1e-3) < 1e-6);
    const double h = 1e-6;
    tod(xd, x, n * ld);
    for (int i = 0; i < n * ld; i++) {
        double s = xd[i];
        memcpy(yd, xd, sizeof yd);
        yd[i] = s + h;
        rope_d(yd, n, nh, hd, pos0, 10000.0, type);
        double lp = dotd(yd, dy, n * ld);
        memcpy(yd, xd, sizeof yd);
        yd[i] = s - h;
        rope_d(yd, n, nh, hd, pos0, 10000.0, type);
        double lm = dotd(yd, dy, n * ld);
        g[i] = (lp - lm) / (2 * h);
    }
    memcpy(dx, dy, sizeof dx);
    rope_backward(dx, n, ld, nh, hd, cs, sn, type);
    double e = rel_err(dx, g, n * ld, 1e-3);
    CHECK_MSG(e < 1e-5, "rope_backward type %d rel err %g", type, e);
}

/* type -1 (no rotary embedding, opt): both directions leave x as it is */
static void test_rope_none(void) {
    enum { n = 3, nh = 2, hd = 8 };
    float x[n * nh * hd], x0[n * nh * hd], cs[n * hd / 2], sn[n * hd / 2];
    fill(x, n * nh * hd, 1.0);
    memcpy(x0, x, sizeof x);
    rope_tables(cs, sn, n, 5, hd, 10000.0f);
    rope_forward(x, n, nh * hd, nh, hd, cs, sn, -1);
    CHECK(memcmp(x, x0, sizeof x) == 0);
    rope_backward(x, n, nh * hd, nh, hd, cs, sn, -1);
    CHECK(memcmp(x, x0, sizeof x) == 0);
}

static void test_swiglu(void) {
    const int n = 1000;
    float *gt = malloc(4 * n * 6), *up = gt + n, *dout = up + n, *dg = dout + n, *du = dg + n, *dg2 = du + n;
    float du2[1000];
    fill(gt, n, 8.0);
    fill(up, n, 2.0);
    fill(dout, n, 1.0);
    swiglu_backward(dg, du, dout, gt, up, n);
    swiglu_backward_ref(dg2, du2, dout, gt, up, n);
    /* the dispatched version (AVX-512 or AVX2, as MEND_ISA and the CPU allow) against the scalar
     * one: the same formula, exp to within a few ulps */
    double r1 = 0, r2 = 0;
    for (int i = 0; i < n; i++) {
        r1 = fmax(r1, fabs((double)dg[i] - dg2[i]) / fmax(1e-3, fabs((double)dg2[i])));
        r2 = fmax(r2, fabs((double)du[i] - du2[i]) / fmax(1e-3, fabs((double)du2[i])));
    }
    CHECK_MSG(r1 < 1e-5 && r2 < 1e-5, "swiglu_backward vs _ref rel %g %g", r1, r2);
    double e1 = 0, e2 = 0;
    const double h = 1e-6;
    for (int i = 0; i < n; i++) {
        double g = gt[i], u = up[i];
#define SW(a, b) ((a) / (1 + exp(-(a))) * (b))
        double gg = (SW(g + h, u) - SW(g - h, u)) / (2 * h) * dout[i];
        double gu = (SW(g, u + h) - SW(g, u - h)) / (2 * h) * dout[i];
#undef SW
        e1 = fmax(e1, fabs(dg[i] - gg) / fmax(1.0, fabs(gg)));
        e2 = fmax(e2, fabs(du[i] - gu) / fmax(1.0, fabs(gu)));
    }
    CHECK_MSG(e1 < 1e-5 && e2 < 1e-5, "swiglu_backward err %g %g", e1, e2);
    /* in place: dgate aliases gate, dup aliases up */
    float *g3 = malloc(sizeof(float) * 2 * n), *u3 = g3 + n;
    memcpy(g3, gt, sizeof(float) * n);
    memcpy(u3, up, sizeof(float) * n);
    swiglu_backward(g3, u3, dout, g3, u3, n);
    CHECK(memcmp(g3, dg, sizeof(float) * n) == 0 && memcmp(u3, du, sizeof(float) * n) == 0);
    free(g3);
    free(gt);
}

static void test_matmul(void) {
    const int n = 7, m = 13, k = 21;
    float x[7 * 21], W[13 * 21], dy[7 * 13], dx[7 * 21], y[7 * 13];
    fill(x, n * k, 1.0);
    fill(W, m * k, 1.0);
    fill(dy, n * m, 1.0);
    matmul_forward(y, m, x, W, NULL, n, m, k, 0.0f);
    double g[7 * 21];
    for (int i = 0; i < n; i++)
        for (int c = 0; c < k; c++) {
            double s = 0;   /* d/dx[i][c] of sum dy * (x Wᵀ) */
            for (int r = 0; r < m; r++) s += (double)dy[i * m + r] * W[r * k + c];
            g[i * k + c] = s;
        }
    matmul_backward(dx, k, dy, m, W, k, n, m, k, 0.0f);
    CHECK(rel_err(dx, g, n * k, 1e-3) < 1e-6);
    /* one row (sgemv path) and column slices */
    matmul_backward(dx, k, dy, m, W, k, 1, m, k, 0.0f);
    CHECK(rel_err(dx, g, k, 1e-3) < 1e-6);
    float dx2[7 * 21];
    matmul_backward(dx2, k, dy, m, W, k, n, m, 10, 0.0f);
    matmul_backward(dx2 + 10, k, dy, m, W + 10, k, n, m, k - 10, 0.0f);
    CHECK(rel_err(dx2, g, n * k, 1e-3) < 1e-6);
}

static void test_attention(int T, int H, int KH, int hd, float cap) {
    const size_t qd = (size_t)H * hd, kvd = (size_t)KH * hd;
    float *q = malloc(sizeof(float) * T * qd), *k = malloc(sizeof(float) * T * kvd), *v = malloc(sizeof(float) * T * kvd);
    float *dout = malloc(sizeof(float) * T * qd), *o1 = malloc(sizeof(float) * T * qd), *o2 = malloc(sizeof(float) * T * qd);
    float *dq = malloc(sizeof(float) * T * qd), *dk = malloc(sizeof(float) * T * kvd), *dv = malloc(sizeof(float) * T * kvd);
    double *qd_ = malloc(sizeof(double) * T * qd), *kd = malloc(sizeof(double) * T * kvd),
           *vd = malloc(sizeof(double) * T * kvd), *od = malloc(sizeof(double) * T * qd);
    fill(q, T * qd, 2.0);
    fill(k, T * kvd, 2.0);
    fill(v, T * kvd, 1.0);
    fill(dout, T * qd, 1.0);
    const int nt = 2;
    float *sc = malloc(sizeof(float) * attention_backward_scratch_floats(T, H, hd, nt));
    float *sc2 = malloc(sizeof(float) * nt * attention_scratch_floats(H, KH, T));
    attention_forward_train(o1, q, k, v, T, H, KH, hd, 0, cap, sc, nt);
    attention_forward(o2, q, k, v, T, 0, H, KH, hd, cap, sc2, T, nt);
    tod(qd_, q, T * qd);
    tod(kd, k, T * kvd);
    tod(vd, v, T * kvd);
    att_d(od, qd_, kd, vd, T, H, KH, hd, cap);
    CHECK_MSG(rel_err(o1, od, T * qd, 1e-3) < 1e-5, "attention_forward_train vs double %g", rel_err(o1, od, T * qd, 1e-3));
    CHECK(rel_err(o2, od, T * qd, 1e-3) < 1e-5);
    attention_backward(dq, dk, dv, dout, q, k, v, T, H, KH, hd, 0, cap, sc, nt);
    /* central differences on a sample of coordinates of q, k and v */
    const double h = 1e-5;
    double emax = 0;
    for (int which = 0; which < 3; which++) {
        double *base = which == 0 ? qd_ : which == 1 ? kd : vd;
        const float *an = which == 0 ? dq : which == 1 ? dk : dv;
        size_t cnt = which == 0 ? T * qd : T * kvd;
        double gmax = 1e-3;
        for (size_t i = 0; i < cnt; i++) gmax = fmax(gmax, fabs(an[i]));
        for (int s = 0; s < 24; s++) {
            size_t i = (size_t)((urand() + 1) * 0.5 * cnt) % cnt;
            if (s == 0) i = 0;             /* the first key/value row sees every query */
            if (s == 1) i = cnt - 1;
            double sv = base[i];
            base[i] = sv + h;
            att_d(od, qd_, kd, vd, T, H, KH, hd, cap);
            double lp = dotd(od, dout, T * qd);
            base[i] = sv - h;
            att_d(od, qd_, kd, vd, T, H, KH, hd, cap);
            double lm = dotd(od, dout, T * qd);
            base[i] = sv;
            double g = (lp - lm) / (2 * h);
            emax = fmax(emax, fabs(an[i] - g) / gmax);
        }
    }
    CHECK_MSG(emax < 1e-4, "attention_backward T=%d H=%d KH=%d cap %g: rel err %g", T, H, KH, (double)cap, emax);
    /* thread count does not change the result */
    float *dq1 = malloc(sizeof(float) * T * qd);
    attention_backward(dq1, dk, dv, dout, q, k, v, T, H, KH, hd, 0, cap, sc, 1);
    CHECK(memcmp(dq1, dq, sizeof(float) * T * qd) == 0);
    free(dq1);
    free(sc);
    free(sc2);
    free(q); free(k); free(v); free(dout); free(o1); free(o2); free(dq); free(dk); free(dv);
    free(qd_); free(kd); free(vd); free(od);
}

static void test_losses(void) {
    const int V = 301;
    float z[301], t[301], dz[301], work[602];
    fill(z, V, 4.0);
    fill(t, V, 4.0);
    double zd[301];
    tod(zd, z, V);
    const int32_t target = 17;
    const float scale = 0.25f;
    /* cross-entropy */
    memcpy(dz, z, sizeof z);
    double l = crossentropy_forward_backward(dz, V, target, scale);
    double mx = -1e300, s = 0;
    for (int i = 0; i < V; i++) mx = fmax(mx, zd[i]);
    for (int i = 0; i < V; i++) s += exp(zd[i] - mx);
    double lref = mx + log(s) - zd[target];
    CHECK_NEAR(l, lref, 1e-5);
    double g[301];
    for (int i = 0; i < V; i++) g[i] = scale * (exp(zd[i] - mx) / s - (i == target));
    CHECK(rel_err(dz, g, V, 1e-3) < 1e-5);
    /* KL(t || z) by central differences in double */
    memcpy(dz, z, sizeof z);
    double ce = 0;
    double kl = kl_forward_backward(dz, t, V, target, scale, &ce, work);
    CHECK_NEAR(ce, lref, 1e-5);
    double td[301];
    tod(td, t, V);
#define KLD(out) do { double mz_ = -1e300, mt_ = -1e300, sz_ = 0, st_ = 0; \
        for (int i_ = 0; i_ < V; i_++) { mz_ = fmax(mz_, zd[i_]); mt_ = fmax(mt_, td[i_]); } \
        for (int i_ = 0; i_ < V; i_++) { sz_ += exp(zd[i_] - mz_); st_ += exp(td[i_] - mt_); } \
        double k_ = 0; for (int i_ = 0; i_ < V; i_++) { double lpt = td[i_] - mt_ - log(st_), lps = zd[i_] - mz_ - log(sz_); \
            k_ += exp(lpt) * (lpt - lps); } (out) = k_; } while (0)
    double klref;
    KLD(klref);
    CHECK_NEAR(kl, klref, 1e-5);
    const double h = 1e-5;
    for (int i = 0; i < V; i++) {
        double sv = zd[i], lp, lm;
        zd[i] = sv + h;
        KLD(lp);
        zd[i] = sv - h;
        KLD(lm);
        zd[i] = sv;
        g[i] = scale * (lp - lm) / (2 * h);
    }
#undef KLD
    double e = rel_err(dz, g, V, 1e-3);
    CHECK_MSG(e < 1e-4, "kl backward rel err %g", e);
}

int main(void) {
    test_rmsnorm();
    test_layernorm();
    test_relu();
    test_rope(0);
    test_rope(2);
    test_rope_none();
    test_swiglu();
    test_matmul();
    test_attention(7, 4, 2, 8, 0.0f);
    test_attention(150, 4, 2, 8, 0.0f);    /* more than one 128-row block */
    test_attention(130, 3, 3, 16, 0.0f);   /* no grouping */
    /* soft-capped scores (Gemma 2); the scores of these inputs reach a few
     * units, so a cap of 1.5 bends most of them */
    test_attention(7, 4, 2, 8, 1.5f);
    test_attention(150, 4, 2, 8, 1.5f);
    test_losses();
    return test_finish();
}
