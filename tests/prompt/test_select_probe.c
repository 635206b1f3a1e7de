/* The attention probe against a direct reference: a naive double-precision
 * transformer over the whole [P_0 | ... | P_{K-1} | input] sequence with the
 * block-diagonal mask written out element by element (one head, one query,
 * one key at a time), on the tiny llama fixture. The reference itself is
 * checked against mend_forward (K = 1: logits of the prompt + input run).
 * Then sliding windows, on the tiny mistral fixture (window 4 on every
 * layer): the probe against mend_forward with the prompt in front, inputs
 * long enough that the window hides prompt rows and input rows. And OPT's
 * fixture, whose learned positions the probe adds as the forward does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sgemm.h"
#include "model/attn_probe.h"
#include "model/model.h"
#include "probe_forward.h"
#include "prompt/select.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) * 0x1.0p-53;
}

/* y (rows) = W (rows x cols, f32) x */
static void ref_matvec(const mend_mat *W, const double *x, double *y) {
    const float *w = W->data;
    for (int64_t r = 0; r < W->rows; r++) {
        double acc = 0;
        for (int64_t c = 0; c < W->cols; c++) acc += (double)w[r * W->cols + c] * x[c];
        y[r] = acc;
    }
}

static void ref_rmsnorm(const double *x, const float *w, int dim, double eps, double *y) {
    double ss = 0;
    for (int j = 0; j < dim; j++) ss += x[j] * x[j];
    const double s = 1.0 / sqrt(ss / dim + eps);
    for (int j = 0; j < dim; j++) y[j] = x[j] * s * w[j];
}

/* NORM rope: pairs (2i, 2i+1) of each head rotated by p * theta^(-2i/hd) */
static void ref_rope(double *v, int n_heads, int hd, int pos, double theta) {
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < hd / 2; i++) {
            const double a = pos * pow(theta, -2.0 * i / hd);
            double *x = v + h * hd + 2 * i;
            const double x0 = x[0], x1 = x[1];
            x[0] = x0 * cos(a) - x1 * sin(a);
            x[1] = x0 * sin(a) + x1 * cos(a);
        }
}

/* The whole sequence: K prompt blocks of nv rows (each at positions
 * 0..nv-1, attending within its block), then n tokens at positions
 * nv..nv+n-1 attending to every prompt row and causally to the input.
 * mass (L, H, n, K+1) for the input rows; final (n, dim) = out-normed
 * hidden states of the input; logits_last (n_vocab) of the last input row. */
static void ref_run(const mend_model *m, const float *const *prompts, int K, int nv, const int32_t *tok, int n,
                    double *mass, double *final, double *logits_last) {
    const mend_config *c = &m->cfg;
    const int dim = c->dim, H = c->n_heads, KVH = c->n_kv_heads, hd = c->head_dim, hid = c->hidden_dim;
    const int qd = H * hd, kvd = KVH * hd, T = K * nv + n, g = H / KVH;
    double *x = calloc((size_t)T * dim, sizeof *x), *h = malloc(sizeof(double) * dim);
    double *Q = malloc(sizeof(double) * T * qd), *Kc = malloc(sizeof(double) * T * kvd);
    double *Vc = malloc(sizeof(double) * T * kvd), *a = malloc(sizeof(double) * qd), *o = malloc(sizeof(double) * dim);
    double *gt = malloc(sizeof(double) * hid), *up = malloc(sizeof(double) * hid), *p = malloc(sizeof(double) * T);
    int *pos = malloc(sizeof(int) * T);
    for (int k = 0; k < K; k++)
        for (int r = 0; r < nv; r++) {
            for (int j = 0; j < dim; j++) x[(size_t)(k * nv + r) * dim + j] = prompts[k][r * dim + j];
            pos[k * nv + r] = r;
        }
    const float *E = m->tok_embd.data;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < dim; j++) x[(size_t)(K * nv + i) * dim + j] = E[(size_t)tok[i] * dim + j];
        pos[K * nv + i] = (K > 0 ? nv : 0) + i;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const mend_layer *Ly = &m->layers[l];
        for (int t = 0; t < T; t++) {
            ref_rmsnorm(x + (size_t)t * dim, Ly->attn_norm, dim, c->norm_eps, h);
            ref_matvec(&Ly->wq, h, Q + (size_t)t * qd);
            ref_matvec(&Ly->wk, h, Kc + (size_t)t * kvd);
            ref_matvec(&Ly->wv, h, Vc + (size_t)t * kvd);
            ref_rope(Q + (size_t)t * qd, H, hd, pos[t], c->rope_theta);
            ref_rope(Kc + (size_t)t * kvd, KVH, hd, pos[t], c->rope_theta);
        }
        double *xn = malloc(sizeof(double) * T * dim);
        memcpy(xn, x, sizeof(double) * T * dim);
        for (int t = 0; t < T; t++) {
            const int blk = t < K * nv ? t / nv : K;   /* K: the input */
            for (int hh = 0; hh < H; hh++) {
                const int kvh = hh / g;
                double mx = -INFINITY;
                for (int u = 0; u < T; u++) {
                    const int ub = u < K * nv ? u / nv : K;
                    int allowed = blk < K ? (ub == blk && u <= t) : (ub < K || u <= t);
                    if (!allowed) {
                        p[u] = -INFINITY;
                        continue;
                    }
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += Q[(size_t)t * qd + hh * hd + d] * Kc[(size_t)u * kvd + kvh * hd + d];
                    p[u] = s / sqrt((double)hd);
                    if (p[u] > mx) mx = p[u];
                }
                double z = 0;
                for (int u = 0; u < T; u++) {
                    p[u] = isinf(p[u]) ? 0.0 : exp(p[u] - mx);
                    z += p[u];
                }
                for (int d = 0; d < hd; d++) a[hh * hd + d] = 0;
                for (int u = 0; u < T; u++) {
                    p[u] /= z;
                    for (int d = 0; d < hd; d++) a[hh * hd + d] += p[u] * Vc[(size_t)u * kvd + kvh * hd + d];
                }
                if (blk == K && mass) {
                    const int i = t - K * nv;
                    double *mm = mass + (((size_t)l * H + hh) * n + i) * (K + 1);
                    for (int k = 0; k <= K; k++) mm[k] = 0;
                    for (int u = 0; u < T; u++) mm[u < K * nv ? u / nv : K] += p[u];
                }
            }
            ref_matvec(&Ly->wo, a, o);
            for (int j = 0; j < dim; j++) xn[(size_t)t * dim + j] += o[j];
        }
        for (int t = 0; t < T; t++) {
            double *xt = xn + (size_t)t * dim;
            ref_rmsnorm(xt, Ly->ffn_norm, dim, c->norm_eps, h);
            ref_matvec(&Ly->w_gate, h, gt);
            ref_matvec(&Ly->w_up, h, up);
            for (int j = 0; j < hid; j++) gt[j] = gt[j] / (1 + exp(-gt[j])) * up[j];
            ref_matvec(&Ly->w_down, gt, o);
            for (int j = 0; j < dim; j++) xt[j] += o[j];
        }
        memcpy(x, xn, sizeof(double) * T * dim);
        free(xn);
    }
    for (int i = 0; i < n; i++) {
        double *f = final + (size_t)i * dim;
        ref_rmsnorm(x + (size_t)(K * nv + i) * dim, m->out_norm, dim, c->norm_eps, f);
        if (i == n - 1 && logits_last) ref_matvec(&m->output, f, logits_last);
    }
    free(x); free(h); free(Q); free(Kc); free(Vc); free(a); free(o); free(gt); free(up); free(p); free(pos);
}

/* 7. sliding windows (mistral fixture, window 4): a query at position p
 * sees positions p-3 .. p; prompts sit at 0..nv-1, inputs from nv */
static void check_window(void) {
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, test_src("tests/fixtures/families/mistral"), &lo));
    if (!m) return;
    const mend_config *c = &m->cfg;
    CHECK(c->swa_window[0] == 4);
    const int dim = c->dim, L = c->n_layers, H = c->n_heads, V = c->n_vocab;
    enum { K = 2, NV = 3, N = 10 };
    float *pr[K];
    for (int k = 0; k < K; k++) {
        pr[k] = malloc(sizeof(float) * NV * dim);
        for (int i = 0; i < NV * dim; i++) pr[k][i] = (float)((urand() - 0.5) * 0.5);
    }
    int32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (int32_t)(urand() * V);
    /* one prompt: the forward's keys, values, residual stream, attention;
     * 3 prompt rows and 1 input token (position 3: no cut), 3 and 10
     * (positions 3..12: the window leaves the prompt's first row at input
     * token 1, the whole prompt at token 3 and the input's own first row at
     * token 4), 6 and 10 (the prompt's own rows 4 and 5 lose row 0 and 0..1
     * already, when the probe computes the prompt alone) */
    const int lens[3] = {1, N, N}, nvs[3] = {NV, NV, 6};
    float *pr6 = malloc(sizeof(float) * 6 * dim);
    for (int i = 0; i < 6 * dim; i++) pr6[i] = (float)((urand() - 0.5) * 0.5);
    for (int t = 0; t < 3; t++) {
        probe_diffs d;
        CHECK_OK(probe_vs_forward(m, t == 2 ? pr6 : pr[0], nvs[t], tok, lens[t], &d));
        printf("window 4, prompt %d + input %d: probe vs forward max rel diff keys %.2g values %.2g residual %.2g "
               "last attention %.2g, hidden mean %.2g, masses sum to 1 within %.2g\n", nvs[t], lens[t], d.keys,
               d.values, d.x, d.att, d.hidden, d.mass_sum);
        CHECK_MSG(d.keys < 1e-5 && d.values < 1e-5 && d.x < 1e-5 && d.att < 1e-5 && d.hidden < 1e-5,
                  "probe vs forward: %g %g %g %g %g", d.keys, d.values, d.x, d.att, d.hidden);
        CHECK(d.mass_sum < 1e-5);
    }
    free(pr6);
    /* two prompts: a token whose window starts at or after position NV gives
     * the prompts no mass at all, and the masses still sum to 1 */
    mend_probe *p = NULL;
    CHECK_OK(mend_probe_new(&p, m, (const float *const *)pr, K, NV, 16));
    float *tm = malloc(sizeof(float) * L * H * N * (K + 1)), *mm = malloc(sizeof(float) * L * H * (K + 1));
    if (p) CHECK_OK(mend_probe_attention(p, tok, N, 0, L, mm, tm));
    double hidden_mass = 0, before = 0, msum = 0;
    for (int l = 0; p && l < L; l++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < N; i++) {
                const float *r = tm + (((size_t)l * H + h) * N + i) * (K + 1);
                const int first = NV + i - 3;   /* window 4 */
                for (int k = 0; k < K; k++) {
                    if (first >= NV) hidden_mass = fmax(hidden_mass, r[k]);
                    else if (i == 0) before = fmax(before, r[k]);
                }
                msum = fmax(msum, fabs(r[0] + r[1] + r[2] - 1.0));
            }
    CHECK_MSG(hidden_mass == 0.0, "prompt mass %g behind the window", hidden_mass);
    CHECK_MSG(before > 0.01, "prompt mass %g inside the window", before);
    CHECK(msum < 1e-5);
    /* inputs side by side (each from position NV): each as alone, bit for bit on sgemm */
    {
        const int len[3] = {6, 10, 3};
        int32_t cat[19];
        int off[4] = {0};
        for (int j = 0; j < 3; j++) {
            memcpy(cat + off[j], tok, sizeof(int32_t) * len[j]);
            off[j + 1] = off[j] + len[j];
        }
        const size_t per = (size_t)L * H * (K + 1);
        float *many = malloc(sizeof(float) * 3 * per), *one = malloc(sizeof(float) * per);
        mend_probe *q = NULL;
        CHECK_OK(mend_probe_new(&q, m, (const float *const *)pr, K, NV, 19));
        if (q) CHECK_OK(mend_probe_attention_many(q, cat, off, 3, 0, L, many));
        double dm = 0;
        for (int j = 0; q && j < 3; j++) {
            CHECK_OK(mend_probe_attention(q, tok, len[j], 0, L, one, NULL));
            for (size_t i = 0; i < per; i++) dm = fmax(dm, fabs(many[(size_t)j * per + i] - one[i]));
        }
        if (mend_sgemm_available()) CHECK_MSG(dm == 0, "windowed inputs probed together differ by %g", dm);
        else CHECK_MSG(dm < 1e-6, "windowed inputs probed together differ by %g", dm);
        mend_probe_free(q);
        free(many);
        free(one);
    }
    mend_probe_free(p);
    free(tm);
    free(mm);
    for (int k = 0; k < K; k++) free(pr[k]);
    mend_model_free(m);
}

/* 8. OPT (learned positions added to prompt and input rows, LayerNorm with
 * bias, biases on every layer matrix, ReLU without a gate): the probe
 * against mend_forward with the prompt in front, with 3 and with 9 prompt
 * rows (the latter takes mend_sgemm), and two prompts' masses summing to 1 */
static void check_opt(void) {
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, test_src("tests/fixtures/families/opt"), &lo));
    if (!m) return;
    const mend_config *c = &m->cfg;
    CHECK(c->n_pos == 256 && c->layer_norm && c->ffn_plain);
    const int dim = c->dim, L = c->n_layers, H = c->n_heads, V = c->n_vocab;
    enum { K = 2, NV = 9, N = 12 };
    float *pr[K];
    for (int k = 0; k < K; k++) {
        pr[k] = malloc(sizeof(float) * NV * dim);
        for (int i = 0; i < NV * dim; i++) pr[k][i] = (float)((urand() - 0.5) * 0.5);
    }
    int32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (int32_t)(urand() * V);
    const int nvs[2] = {3, NV};
    for (int t = 0; t < 2; t++) {
        probe_diffs d;
        CHECK_OK(probe_vs_forward(m, pr[0], nvs[t], tok, N, &d));
        printf("opt, prompt %d + input %d: probe vs forward max rel diff keys %.2g values %.2g residual %.2g "
               "last attention %.2g, hidden mean %.2g, masses sum to 1 within %.2g\n", nvs[t], N, d.keys, d.values,
               d.x, d.att, d.hidden, d.mass_sum);
        CHECK_MSG(d.keys < 1e-5 && d.values < 1e-5 && d.x < 1e-5 && d.att < 1e-5 && d.hidden < 1e-5,
                  "opt probe vs forward: %g %g %g %g %g", d.keys, d.values, d.x, d.att, d.hidden);
        CHECK(d.mass_sum < 1e-5);
    }
    mend_probe *p = NULL;
    CHECK_OK(mend_probe_new(&p, m, (const float *const *)pr, K, NV, N));
    float *mm = malloc(sizeof(float) * L * H * (K + 1));
    if (p) CHECK_OK(mend_probe_attention(p, tok, N, 0, L, mm, NULL));
    double msum = 0;
    for (int i = 0; p && i < L * H; i++) msum = fmax(msum, fabs(mm[i * 3] + mm[i * 3 + 1] + mm[i * 3 + 2] - 1.0));
    CHECK_MSG(p && msum < 1e-5, "opt: masses sum to 1 within %g", msum);
    mend_probe_free(p);
    free(mm);
    for (int k = 0; k < K; k++) free(pr[k]);
    mend_model_free(m);
}

int main(void) {
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, test_src("tests/fixtures/hf/llama.gguf"), &lo));
    if (!m) return test_finish();
    const mend_config *c = &m->cfg;
    const int dim = c->dim, L = c->n_layers, H = c->n_heads, V = c->n_vocab;
    enum { K = 3, NV = 9, N = 12 };   /* >= 8 rows: the probe's f32 products take mend_sgemm */
    float *pr[K];
    for (int k = 0; k < K; k++) {
        pr[k] = malloc(sizeof(float) * NV * dim);
        for (int i = 0; i < NV * dim; i++) pr[k][i] = (float)((urand() - 0.5) * (1.0 + k));
    }
    int32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (int32_t)(urand() * V);

    /* 1. the reference against mend_forward: one prompt, last-row logits */
    {
        double *fin = malloc(sizeof(double) * N * dim), *lg = malloc(sizeof(double) * V);
        ref_run(m, (const float *const *)pr, 1, NV, tok, N, NULL, fin, lg);
        mend_state *st = NULL;
        float *lf = malloc(sizeof(float) * V);
        CHECK_OK(mend_state_new(&st, m, 64, 16));
        CHECK_OK(mend_forward(st, NULL, pr[0], NV, 0, NULL, 0));
        CHECK_OK(mend_forward(st, tok, NULL, N, NV, lf, 0));
        double md = 0;
        for (int v = 0; v < V; v++) md = fmax(md, fabs(lf[v] - lg[v]));
        CHECK_MSG(md < 1e-4, "reference vs mend_forward logits differ by %g", md);
        mend_state_free(st);
        free(lf);
        free(fin);
        free(lg);
    }

    /* 2. masses per layer, head, token vs the reference; sums to 1 */
    double *rmass = malloc(sizeof(double) * L * H * N * (K + 1));
    double *fin = malloc(sizeof(double) * N * dim);
    ref_run(m, (const float *const *)pr, K, NV, tok, N, rmass, fin, NULL);
    mend_probe *p = NULL;
    CHECK_OK(mend_probe_new(&p, m, (const float *const *)pr, K, NV, 16));
    CHECK(mend_probe_prompt_kv_bytes(p) == (size_t)L * K * NV * c->n_kv_heads * c->head_dim * 2 * sizeof(float));
    float *tm = malloc(sizeof(float) * L * H * N * (K + 1)), *mm = malloc(sizeof(float) * L * H * (K + 1));
    CHECK_OK(mend_probe_attention(p, tok, N, 0, L, mm, tm));
    double md = 0, msum = 0;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < N; i++) {
                double s = 0;
                for (int k = 0; k <= K; k++) {
                    size_t at = (((size_t)l * H + h) * N + i) * (K + 1) + k;
                    md = fmax(md, fabs(tm[at] - rmass[at]));
                    s += tm[at];
                }
                msum = fmax(msum, fabs(s - 1.0));
            }
    CHECK_MSG(md < 1e-5, "per-token masses differ from the reference by %g", md);
    CHECK_MSG(msum < 1e-5, "masses sum to 1 within %g", msum);
    md = 0;
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++)
            for (int k = 0; k <= K; k++) {
                double r = 0;
                for (int i = 0; i < N; i++) r += rmass[(((size_t)l * H + h) * N + i) * (K + 1) + k];
                md = fmax(md, fabs(mm[((size_t)l * H + h) * (K + 1) + k] - r / N));
            }
    CHECK_MSG(md < 1e-5, "mean masses differ from the reference by %g", md);
    /* the prompt blocks get a visible share (the test is not vacuous) */
    double pmax = 0;
    for (size_t i = 0; i < (size_t)L * H * N; i++)
        for (int k = 0; k < K; k++) pmax = fmax(pmax, rmass[i * (K + 1) + k]);
    CHECK_MSG(pmax > 0.05, "largest prompt-block mass %g", pmax);

    /* 3. a probe of layer 1 alone runs layer 0 unrecorded (the plain attention
     * kernel: same math, another summation order) and gives layer 1's masses */
    float *mm1 = malloc(sizeof(float) * H * (K + 1));
    CHECK_OK(mend_probe_attention(p, tok, N, 1, 2, mm1, NULL));
    md = 0;
    for (int i = 0; i < H * (K + 1); i++) md = fmax(md, fabs(mm1[i] - mm[(size_t)H * (K + 1) + i]));
    CHECK_MSG(md < 1e-5, "layer-1 probe differs from the full probe by %g", md);
    /* a second call gives the same numbers (nothing is left over from the first) */
    CHECK_OK(mend_probe_attention(p, tok, N, 0, L, mm, NULL));
    CHECK_OK(mend_probe_attention(p, tok, N, 1, 2, mm1, NULL));
    md = 0;
    for (int i = 0; i < H * (K + 1); i++) md = fmax(md, fabs(mm1[i] - mm[(size_t)H * (K + 1) + i]));
    CHECK(md < 1e-5);

    /* 3b. several inputs in one pass (different lengths, one of them a prefix
     * of another) give each input's own masses: bit for bit where mend's
     * sgemm runs (every product row by row in a fixed order), to rounding
     * with BLAS */
    {
        enum { NI = 3 };
        const int len[NI] = {5, 7, 3}, from[NI] = {0, 5, 0};
        int32_t cat[16];
        int off[NI + 1] = {0};
        for (int j = 0; j < NI; j++) {
            memcpy(cat + off[j], tok + from[j], sizeof(int32_t) * len[j]);
            off[j + 1] = off[j] + len[j];
        }
        const size_t per = (size_t)L * H * (K + 1);
        float *many = malloc(sizeof(float) * NI * per), *one = malloc(sizeof(float) * per);
        CHECK_OK(mend_probe_attention_many(p, cat, off, NI, 0, L, many));
        double dm = 0;
        for (int j = 0; j < NI; j++) {
            CHECK_OK(mend_probe_attention(p, tok + from[j], len[j], 0, L, one, NULL));
            for (size_t i = 0; i < per; i++) dm = fmax(dm, fabs(many[(size_t)j * per + i] - one[i]));
        }
        if (mend_sgemm_available()) CHECK_MSG(dm == 0, "inputs probed together differ from alone by %g", dm);
        else CHECK_MSG(dm < 1e-6, "inputs probed together differ from alone by %g", dm);
        /* layers 1..2 only: per input, as alone */
        CHECK_OK(mend_probe_attention_many(p, cat, off, NI, 1, 2, many));
        CHECK_OK(mend_probe_attention(p, tok + 5, 7, 1, 2, mm1, NULL));
        dm = 0;
        for (int i = 0; i < H * (K + 1); i++) dm = fmax(dm, fabs(many[(size_t)H * (K + 1) + i] - mm1[i]));
        CHECK_MSG(dm < 1e-6, "layer-1 many-input probe differs by %g", dm);
        const int empty[3] = {0, 4, 4}, late[2] = {1, 4}, big[3] = {0, 10, 17};
        CHECK_ERR(mend_probe_attention_many(p, cat, empty, 2, 0, 1, many), MEND_EINVAL, "empty");
        CHECK_ERR(mend_probe_attention_many(p, cat, late, 1, 0, 1, many), MEND_EINVAL, "offset");
        CHECK_ERR(mend_probe_attention_many(p, cat, big, 2, 0, 1, many), MEND_ERANGE, "input tokens");
        free(many);
        free(one);
    }

    /* 4. bad arguments */
    CHECK_ERR(mend_probe_attention(p, tok, N, 1, 1, mm, NULL), MEND_ERANGE, "layers");
    CHECK_ERR(mend_probe_attention(p, tok, N, 0, L + 1, mm, NULL), MEND_ERANGE, "layers");
    CHECK_ERR(mend_probe_attention(p, tok, 17, 0, 1, mm, NULL), MEND_ERANGE, "input tokens");
    int32_t bad[2] = {1, V};
    CHECK_ERR(mend_probe_attention(p, bad, 2, 0, 1, mm, NULL), MEND_EINVAL, "vocabulary");
    mend_probe_free(p);

    /* 5. identical prompts tie exactly; the selector takes the lowest index */
    {
        const float *same[K] = {pr[1], pr[1], pr[1]};
        CHECK_OK(mend_probe_new(&p, m, same, K, NV, 16));
        CHECK_OK(mend_probe_attention(p, tok, N, 0, L, mm, NULL));
        int tie = 1;
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                const float *r = mm + ((size_t)l * H + h) * (K + 1);
                tie &= r[0] == r[1] && r[1] == r[2];
            }
        CHECK(tie);
        mend_probe_free(p);
    }

    /* 6. the router feature: mean out-normed final hidden state, no prompt */
    {
        double *f0 = malloc(sizeof(double) * N * dim);
        ref_run(m, NULL, 0, 0, tok, N, NULL, f0, NULL);
        CHECK_OK(mend_probe_new(&p, m, NULL, 0, 0, 16));
        float *hm = malloc(sizeof(float) * dim);
        CHECK_OK(mend_probe_hidden_mean(p, tok, N, hm));
        md = 0;
        for (int j = 0; j < dim; j++) {
            double r = 0;
            for (int i = 0; i < N; i++) r += f0[(size_t)i * dim + j];
            md = fmax(md, fabs(hm[j] - r / N));
        }
        CHECK_MSG(md < 1e-4, "hidden mean differs from the reference by %g", md);
        CHECK_ERR(mend_probe_attention(p, tok, N, 0, 1, mm, NULL), MEND_EINVAL, "no prompts");
        mend_probe_free(p);
        free(hm);
        free(f0);
    }

    free(mm1);
    free(tm);
    free(mm);
    free(fin);
    free(rmass);
    for (int k = 0; k < K; k++) free(pr[k]);
    mend_model_free(m);
    check_window();
    check_opt();
    return test_finish();
}
