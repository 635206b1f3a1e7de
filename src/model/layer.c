/* One layer over one sequence, in the pieces calibration needs (layer.h). */
#include "model/layer.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/quants.h"
#include "kernels/sgemm.h"
#include "util/util.h"

#define QBLOCK 128   /* query rows per attention block */

int mend_layer_ws_init(mend_layer_ws *ws, const mend_config *c, int T) {
    memset(ws, 0, sizeof *ws);
    if (T < 1 || T > (1 << 24))
        return mend_set_error(MEND_EINVAL, "layer workspace: %d positions, expected 1..%d", T, 1 << 24);
    const size_t t = (size_t)T, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    const size_t half = (size_t)c->head_dim / 2, hid = (size_t)c->hidden_dim;
    size_t kmax = (size_t)c->dim > qd ? (size_t)c->dim : qd;
    if (hid > kmax) kmax = hid;
    const size_t xt = mend_sgemm_available() ? mend_sgemm_xt_floats(T, (int)kmax) : 0;
    /* up doubles as the (T, dim) product before a post-norm */
    const size_t up = hid > (size_t)c->dim ? hid : (size_t)c->dim, two = mend_rope_has_local(c);
    size_t sz[10] = {t * qd, t * kvd, t * kvd, t * half, t * half, (size_t)QBLOCK * t, t * up, xt,
                     two * t * half, two * t * half};
    size_t off[10], total = 0;
    for (int i = 0; i < 10; i++) {
        off[i] = total;
        if (!mend_add_ok(total, (sz[i] + 15) & ~(size_t)15, &total))
            return mend_set_error(MEND_ERANGE, "layer workspace: size overflows for %d positions", T);
    }
    size_t bytes;
    if (!mend_mul_ok(total, sizeof(float), &bytes) || posix_memalign(&ws->mem, 64, bytes ? bytes : 64) != 0) {
        ws->mem = NULL;
        return mend_set_error(MEND_ENOMEM, "layer workspace: cannot allocate %zu MiB for %d positions",
                              total * sizeof(float) >> 20, T);
    }
    float *f = ws->mem;
    ws->T = T;
    ws->q = f + off[0];
    ws->k = f + off[1];
    ws->v = f + off[2];
    ws->rc = f + off[3];
    ws->rs = f + off[4];
    ws->scores = f + off[5];
    ws->up = f + off[6];
    ws->xt = xt ? f + off[7] : NULL;
    ws->rc2 = two ? f + off[8] : NULL;
    ws->rs2 = two ? f + off[9] : NULL;
    mend_rope_tables(c, ws->rc, ws->rs, T, 0);
    if (two) mend_rope_local_tables(c, ws->rc2, ws->rs2, T, 0);
    return 0;
}

void mend_layer_ws_free(mend_layer_ws *ws) {
    if (!ws) return;
    free(ws->mem);
    memset(ws, 0, sizeof *ws);
}

static int check_mat(const mend_mat *w, int64_t rows, int64_t cols, int layer, const char *name) {
    if (w->type != MEND_TYPE_F32 || !w->data)
        return mend_set_error(MEND_EUNSUPPORTED, "layer %d: matrix %s is %s, expected f32 (load the model "
                              "without keep_packed)", layer, name, w->data ? mend_type_name(w->type) : "missing");
    if (w->rows != rows || w->cols != cols)
        return mend_set_error(MEND_EINVAL, "layer %d: matrix %s is %lld x %lld, expected %lld x %lld", layer, name,
                              (long long)w->rows, (long long)w->cols, (long long)rows, (long long)cols);
    return 0;
}

int mend_layer_check(const mend_config *c, const mend_layer *L, int l) {
    const int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim,
                  hid = c->hidden_dim;
    int rc;
    if ((rc = check_mat(&L->wq, qd, dim, l, "attn_q"))) return rc;
    if ((rc = check_mat(&L->wk, kvd, dim, l, "attn_k"))) return rc;
    if ((rc = check_mat(&L->wv, kvd, dim, l, "attn_v"))) return rc;
    if ((rc = check_mat(&L->wo, dim, qd, l, "attn_output"))) return rc;
    if (!c->ffn_plain && (rc = check_mat(&L->w_gate, hid, dim, l, "ffn_gate"))) return rc;
    if ((rc = check_mat(&L->w_up, hid, dim, l, "ffn_up"))) return rc;
    if ((rc = check_mat(&L->w_down, dim, hid, l, "ffn_down"))) return rc;
    if (!L->attn_norm || !L->ffn_norm || (c->qk_norm && (!L->q_norm || !L->k_norm)) ||
        (c->post_norms && (!L->post_attn_norm || !L->post_ffn_norm)) ||
        (c->layer_norm && (!L->attn_norm_b || !L->ffn_norm_b)))
        return mend_set_error(MEND_EINVAL, "layer %d: a norm vector is missing", l);
    return 0;
}

void mend_layer_attn_norm(const mend_config *c, const mend_layer *L, const float *x, int n, float *xb) {
    mend_norm_forward(c, xb, x, L->attn_norm, L->attn_norm_b, n, 1);
}

void mend_layer_ffn_norm(const mend_config *c, const mend_layer *L, const float *x, int n, float *xb) {
    mend_norm_forward(c, xb, x, L->ffn_norm, L->ffn_norm_b, n, 1);
}

/* Pack x (n, k) for mend_sgemm_xt into ws->xt; 0 when the products run on
 * BLAS instead (a single row, or no packing buffer). */
static int pack_x(mend_layer_ws *ws, const float *x, int n, int k) {
    if (!ws->xt || n < 2) return 0;
    mend_sgemm_pack_xt(ws->xt, x, (size_t)k, n, k, 0, (n + 31) / 32);
    return 1;
}

/* out (n, ldo) = x (n, k) · W (m, k)ᵀ (+ bias) with beta; x already packed
 * into ws->xt when packed is non-zero. */
static void linear(mend_layer_ws *ws, int packed, float *out, size_t ldo, const float *x, const mend_mat *W,
                   const float *bias, int n, float beta) {
    if (!packed || mend_sgemm_xt(out, ldo, ws->xt, n, (const float *)W->data, (size_t)W->cols, (int)W->rows,
                                 (int)W->cols, beta))
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, (int)W->rows, (int)W->cols, 1.0f, x, (int)W->cols,
                    (const float *)W->data, (int)W->cols, beta, out, (int)ldo);
    if (bias)
        for (int i = 0; i < n; i++) {
            float *o = out + (size_t)i * ldo;
            for (int64_t j = 0; j < W->rows; j++) o[j] += bias[j];
        }
}

/* RoPE on this thread (rope_forward's loop without its parallel region). */
static void rope_rows(float *x, int n, size_t ldx, int n_heads, int hd, const float *cos_t, const float *sin_t,
                      int type) {
    const int half = hd / 2;
    if (type == MEND_ROPE_NONE) return;
    for (int p = 0; p < n; p++) {
        const float *cs = cos_t + (size_t)p * half, *sn = sin_t + (size_t)p * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + (size_t)p * ldx + (size_t)h * hd;
            if (type == MEND_ROPE_NEOX) {
                for (int i = 0; i < half; i++) {
                    const float a = v[i], b = v[i + half];
                    v[i] = a * cs[i] - b * sn[i];
                    v[i + half] = a * sn[i] + b * cs[i];
                }
            } else {
                for (int i = 0; i < half; i++) {
                    const float a = v[2 * i], b = v[2 * i + 1];
                    v[2 * i] = a * cs[i] - b * sn[i];
                    v[2 * i + 1] = a * sn[i] + b * cs[i];
                }
            }
        }
    }
}

void mend_layer_attn_core(const mend_config *c, const mend_layer *L, int l, const float *xb, int n,
                          mend_layer_ws *ws, float *att) {
    const int hd = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads, g = nh / nkv;
    const size_t qd = (size_t)nh * hd, kvd = (size_t)nkv * hd;
    const int packed = pack_x(ws, xb, n, c->dim);
    linear(ws, packed, ws->q, qd, xb, &L->wq, L->bq, n, 0.0f);
    linear(ws, packed, ws->k, kvd, xb, &L->wk, L->bk, n, 0.0f);
    linear(ws, packed, ws->v, kvd, xb, &L->wv, L->bv, n, 0.0f);
    mend_qk_norm(c, L, ws->q, qd, ws->k, kvd, n);
    const int local = ws->rc2 && mend_rope_local(c, l);
    const float *rc = local ? ws->rc2 : ws->rc, *rs = local ? ws->rs2 : ws->rs;
    rope_rows(ws->q, n, qd, nh, hd, rc, rs, c->rope_type);
    rope_rows(ws->k, n, kvd, nkv, hd, rc, rs, c->rope_type);
    const float scale = 1.0f / sqrtf((float)hd);
    /* per query block [i0, i1) and head: S = scale · Q Kᵀ over keys [0, i1),
     * causal mask, row softmax, att = S V */
    for (int i0 = 0; i0 < n; i0 += QBLOCK) {
        const int i1 = i0 + QBLOCK < n ? i0 + QBLOCK : n, nb = i1 - i0;
        for (int h = 0; h < nh; h++) {
            const int kvh = h / g;
            float *S = ws->scores;
            const float *qb = ws->q + (size_t)i0 * qd + (size_t)h * hd, *kh = ws->k + (size_t)kvh * hd;
            const float *vh = ws->v + (size_t)kvh * hd;
            float *ab = att + (size_t)i0 * qd + (size_t)h * hd;
            int own = 0;
            if (ws->xt && nb > 1) {   /* xt is free once the q/k/v products are done */
                mend_sgemm_pack_xt(ws->xt, qb, qd, nb, hd, 0, (nb + 31) / 32);
                own = !mend_sgemm_xt(S, (size_t)i1, ws->xt, nb, kh, kvd, i1, hd, 0.0f);
                if (own)
                    for (size_t e = 0; e < (size_t)nb * i1; e++) S[e] *= scale;
            }
            if (!own)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, i1, hd, scale, qb, (int)qd, kh, (int)kvd,
                            0.0f, S, i1);
            for (int r = 0; r < nb; r++) {
                float *s = S + (size_t)r * i1;
                const int T = i0 + r + 1, t0 = mend_swa_first(c, l, i0 + r);   /* keys [t0, T) */
                vec_softcap(T - t0, s + t0, c->attn_softcap);
                const float inv = vec_softmax_inv(T - t0, s + t0);
                for (int t = 0; t < t0; t++) s[t] = 0.0f;
                for (int t = t0; t < T; t++) s[t] *= inv;
                for (int t = T; t < i1; t++) s[t] = 0.0f;
            }
            if (!own || mend_sgemm_nn(ab, qd, S, (size_t)i1, nb, vh, kvd, i1, hd, 0.0f))
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, i1, 1.0f, S, i1, vh, (int)kvd, 0.0f,
                            ab, (int)qd);
        }
    }
}

/* x (n, dim) += in (n, k) · Wᵀ (+ bias), through a post-norm when the config has them */
static void residual(const mend_config *c, mend_layer_ws *ws, float *x, const float *in, int k, const mend_mat *W,
                     const float *bias, const float *post, int n) {
    const int packed = pack_x(ws, in, n, k);
    if (!c->post_norms) {
        linear(ws, packed, x, (size_t)c->dim, in, W, bias, n, 1.0f);
        return;
    }
    linear(ws, packed, ws->up, (size_t)c->dim, in, W, bias, n, 0.0f);
    mend_post_norm_add(c, post, x, ws->up, n, 1);
}

void mend_layer_attn_out(const mend_config *c, const mend_layer *L, const float *att, int n, mend_layer_ws *ws,
                         float *x) {
    const int qd = c->n_heads * c->head_dim;
    residual(c, ws, x, att, qd, &L->wo, L->bo, L->post_attn_norm, n);
}

void mend_layer_ffn_act(const mend_config *c, const mend_layer *L, const float *xb, int n, mend_layer_ws *ws,
                        float *h) {
    const size_t hid = (size_t)c->hidden_dim;
    const int packed = pack_x(ws, xb, n, c->dim);
    if (!c->ffn_plain) linear(ws, packed, h, hid, xb, &L->w_gate, NULL, n, 0.0f);
    linear(ws, packed, ws->up, hid, xb, &L->w_up, L->b_up, n, 0.0f);
    mend_glu_forward(c, h, h, ws->up, (int64_t)n * hid, 1);
}

void mend_layer_ffn_out(const mend_config *c, const mend_layer *L, const float *h, int n, mend_layer_ws *ws,
                        float *x) {
    residual(c, ws, x, h, c->hidden_dim, &L->w_down, L->b_down, L->post_ffn_norm, n);
}

void mend_layer_forward_seq(const mend_config *c, const mend_layer *L, int l, float *x, int n, mend_layer_ws *ws,
                            float *xb, float *att, float *h) {
    mend_layer_attn_norm(c, L, x, n, xb);
    mend_layer_attn_core(c, L, l, xb, n, ws, att);
    mend_layer_attn_out(c, L, att, n, ws, x);
    mend_layer_ffn_norm(c, L, x, n, xb);
    mend_layer_ffn_act(c, L, xb, n, ws, h);
    mend_layer_ffn_out(c, L, h, n, ws, x);
}
