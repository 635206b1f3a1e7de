/* Attention probe over a bank of prompt blocks (see attn_probe.h).
 *
 * Memory plan: one allocation per probe, carved into
 *   kc, vc   (L, R, kv_dim)   keys / values; rows [k*nv, (k+1)*nv) hold prompt
 *                              k, rows [K*nv, R) the current input;
 *                              R = K*nv + max_tokens
 *   x, xb    (B, dim)         residual stream, normed sublayer input
 *   q, att   (B, q_dim)       queries, attention output
 *   hb, hb2  (B, hidden)      FFN gate / up
 *   tmp      (B, max_out)     packed-kernel product before an add
 *   rc, rs   (B, hd/2)        RoPE tables
 *   rc2, rs2 (B, hd/2)        RoPE tables of the sliding-window layers' own
 *                              base (gemma3), when the model has one
 *   sc       (threads, group, R)  attention scores per thread
 *   tmass    (H, B, K+1)      per-token masses of the probed layer
 *   tile     (TILE, max_cols) dequantized rows for types without a kernel
 *   xt       (B, max_cols)    packed x of an f32 product (mend_sgemm), when
 *                              the CPU runs that kernel
 *   spans    (B, 6) ints      key spans of a windowed layer (separate
 *                              allocation, when some layer has a window)
 * with B = max(max_tokens, nv). Nothing is allocated per call.
 *
 * The layer is the model's forward (model/forward.c) with the family
 * features of model/features.c, each a no-op for a plain LLaMA config:
 * token rows times embd_scale (the prompts' rows are used as given, as
 * mend_forward uses vectors passed as embeddings), QK-norm and the query
 * scale, soft-capped scores (gemma2), the windowed layers' own RoPE base,
 * post-attention and post-FFN norms, the gated activation of cfg.act, and
 * opt's features (learned positions added to prompt and input rows alike,
 * LayerNorm with bias, biases, the ReLU FFN without a gate). Sliding
 * windows follow the forward's rule on positions: a query at position p
 * sees the keys at positions >= mend_swa_first(l, p). Every prompt block
 * sits at positions 0 .. nv-1 and an input at nv .., so a window that has
 * moved past position f hides the first f rows of every block (all of them
 * once f >= nv) and the input's own rows before position f. */
#include "model/attn_probe.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/qmatmul.h"
#include "kernels/quants.h"
#include "kernels/sgemm.h"
#include "model/model.h"
#include "util/util.h"

#define PROBE_TILE 64
#define PROBE_SGEMM_ROWS 48   /* W rows per task of an f32 product: whole 12-column tiles */

struct mend_probe {
    const mend_model *m;
    int K, nv, max_tokens, B;
    int L, dim, hd, H, KVH, hid;
    size_t qd, kvd, R, max_out, max_cols;
    float *kc, *vc;
    float *x, *xb, *q, *att, *hb, *hb2, *tmp, *rc, *rs, *sc, *tmass, *tile, *xt;
    float *rc2, *rs2;   /* RoPE tables of the windowed layers' base, or NULL */
    int *spans;         /* (B, 6) key spans of a windowed layer, or NULL */
    size_t sc_stride;   /* floats per thread */
    int n_threads;
    void *mem;
    size_t bytes;
};

static int n_threads_now(const mend_probe *p) {
    int nt = mend_get_threads();
    if (nt < 1) nt = omp_get_max_threads();
    if (nt > p->n_threads) nt = p->n_threads;
    return nt < 1 ? 1 : nt;
}

/* out (n, ldo) = [out +] x (n, cols) · Wᵀ (+ bias); accumulate selects "+=". */
static int mat_mul(mend_probe *p, float *out, size_t ldo, const float *x, int n, const mend_mat *W,
                   const float *bias, int accumulate) {
    const int rows = (int)W->rows, cols = (int)W->cols;
    const float beta = accumulate ? 1.0f : 0.0f;
    if (W->type == MEND_TYPE_F32 && p->xt) {
        /* mend's own kernel, as the model's forward uses: x packed once, W's
         * rows split across the threads (BLAS may be pinned to AVX2). Every
         * output is the in-order sum over k, so a row's result does not
         * depend on the other rows of the batch: inputs probed together
         * (mend_probe_attention_many) get the bits they get alone. */
        const int nb = (int)(mend_sgemm_xt_floats(n, cols) / ((size_t)32 * cols));
        const int n_chunks = (rows + PROBE_SGEMM_ROWS - 1) / PROBE_SGEMM_ROWS;
        const float *w = (const float *)W->data;
        int nt = n_threads_now(p), failed = 0;
        if (nt > n_chunks) nt = n_chunks;
#pragma omp parallel num_threads(nt) reduction(| : failed)
        {
#pragma omp for schedule(static)
            for (int b = 0; b < nb; b++) mend_sgemm_pack_xt(p->xt, x, (size_t)cols, n, cols, b, b + 1);
#pragma omp for schedule(dynamic, 1)
            for (int ci = 0; ci < n_chunks; ci++) {
                const int r0 = ci * PROBE_SGEMM_ROWS, nr = rows - r0 < PROBE_SGEMM_ROWS ? rows - r0 : PROBE_SGEMM_ROWS;
                failed |= mend_sgemm_xt(out + r0, ldo, p->xt, n, w + (size_t)r0 * cols, (size_t)cols, nr, cols, beta);
            }
        }
        /* (the kernel refuses only an empty shape: no partial failure) */
        if (failed) return mend_set_error(MEND_EINVAL, "attention probe: the sgemm kernel refused a product");
        if (bias)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < rows; j++) out[(size_t)i * ldo + j] += bias[j];
        return 0;
    }
    if (W->type == MEND_TYPE_F32) {
        matmul_forward(out, ldo, x, (const float *)W->data, bias, n, rows, cols, beta);
        return 0;
    }
    if (mend_qdot_act_type(W->type) >= 0 &&
        mend_qmatmul_ex(p->tmp, (size_t)rows, x, (size_t)cols, n, W->data, W->type, rows, cols, NULL, 0,
                        n_threads_now(p), -1) == 0) {
        for (int i = 0; i < n; i++) {
            float *o = out + (size_t)i * ldo;
            const float *t = p->tmp + (size_t)i * rows;
            for (int j = 0; j < rows; j++) o[j] = beta * o[j] + t[j] + (bias ? bias[j] : 0.0f);
        }
        return 0;
    }
    for (int a = 0; a < rows; a += PROBE_TILE) {
        const int nr = rows - a < PROBE_TILE ? rows - a : PROBE_TILE;
        for (int r = 0; r < nr; r++) {
            int rc = mend_dequantize_row(W->type, (const uint8_t *)W->data + (size_t)(a + r) * W->row_bytes,
                                         p->tile + (size_t)r * cols, cols);
            if (rc) return rc;
        }
        matmul_forward(out + a, ldo, x, p->tile, bias ? bias + a : NULL, n, nr, cols, beta);
    }
    return 0;
}

static int embed_tokens(mend_probe *p, const int32_t *tokens, int n) {
    const mend_mat *E = &p->m->tok_embd;
    const size_t dim = (size_t)p->dim;
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= p->m->cfg.n_vocab)
            return mend_set_error(MEND_EINVAL, "attention probe: token %d (at index %d) is outside the vocabulary "
                                  "of %d", tokens[i], i, p->m->cfg.n_vocab);
        const uint8_t *row = (const uint8_t *)E->data + (size_t)tokens[i] * E->row_bytes;
        if (E->type == MEND_TYPE_F32) memcpy(p->x + i * dim, row, dim * sizeof(float));
        else {
            int rc = mend_dequantize_row(E->type, row, p->x + i * dim, (int64_t)dim);
            if (rc) return rc;
        }
    }
    mend_embed_scale(&p->m->cfg, p->x, n);   /* token rows only, as the forward's embed */
    return 0;
}

/* Attention of n queries over the nblk prompt blocks of nv rows (cache rows
 * [0, nblk*nv), positions 0 .. nv-1 each) and their own input: query i
 * (cache row T0 + i) sees rows [o_i, T0 + i] with o_i = own0[i] (own0 NULL:
 * nblk*nv, the input right after the prompts); row o_i is at position pos,
 * so query i is at pos + T0 + i - o_i. In a layer l with a sliding window
 * whose first visible position f = mend_swa_first(l, that position) is
 * above 0, the keys at positions below f drop out: rows [k*nv, k*nv + f)
 * of every block and the own rows before position f. Records the mass each
 * query head gives to each prompt block and to its input.
 *   q (n, qd), K, V (>= T0+n, kvd) -> out (n, qd), tmass (H, n, nblk+1)
 * (torch, per head: p = softmax(q·Kᵀ/sqrt(hd) over the visible keys), out = p·V,
 *  tmass[h,i,k] = p[i, block k].sum(), tmass[h,i,nblk] = p[i, own].sum()) */
static void attention_mass_forward(mend_probe *p, float *out, const float *q, const float *Kc, const float *Vc, int n,
                                   int T0, int nblk, int nv, const int *own0, int l, int pos, float *tmass) {
    const mend_config *c = &p->m->cfg;
    const int H = p->H, KVH = p->KVH, hd = p->hd, g = H / KVH, nb1 = nblk + 1, P = nblk * nv;
    const size_t qd = p->qd, kvd = p->kvd;
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t n_tasks = (int64_t)n * KVH;
    int nt = n_threads_now(p);
    if (n_tasks < nt) nt = (int)n_tasks;
#pragma omp parallel num_threads(nt)
    {
        float *s = p->sc + (size_t)omp_get_thread_num() * p->sc_stride;
        float part[256];   /* the own span's weighted values (hd <= 256, checked at setup) */
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < n_tasks; task++) {
            const int i = n - 1 - (int)(task / KVH);
            const int kvh = (int)(task % KVH);
            const int o0 = own0 ? own0[i] : P, self = T0 + i;
            const int first = mend_swa_first(c, l, pos + self - o0);
            const float *K = Kc + (size_t)kvh * hd, *V = Vc + (size_t)kvh * hd;
            if (first == 0) {   /* every key visible */
                const int o = o0, no = self - o + 1, T = P + no;
                for (int hh = 0; hh < g; hh++) {
                    const int h = kvh * g + hh;
                    const float *qh = q + (size_t)i * qd + (size_t)h * hd;
                    float *oh = out + (size_t)i * qd + (size_t)h * hd;
                    if (P) vec_dot_rows(P, hd, qh, K, kvd, scale, s);
                    vec_dot_rows(no, hd, qh, K + (size_t)o * kvd, kvd, scale, s + P);
                    vec_softcap(T, s, c->attn_softcap);
                    const float inv = vec_softmax_inv(T, s);
                    for (int t = 0; t < T; t++) s[t] *= inv;
                    vec_wsum_rows(no, hd, s + P, V + (size_t)o * kvd, kvd, oh);
                    if (P) {
                        vec_wsum_rows(P, hd, s, V, kvd, part);
                        for (int j = 0; j < hd; j++) oh[j] += part[j];
                    }
                    float *tm = tmass + ((size_t)h * n + i) * nb1;
                    for (int k = 0; k < nblk; k++) {
                        double acc = 0.0;
                        for (int t = k * nv; t < (k + 1) * nv; t++) acc += s[t];
                        tm[k] = (float)acc;
                    }
                    double acc = 0.0;
                    for (int t = P; t < T; t++) acc += s[t];
                    tm[nblk] = (float)acc;
                }
                continue;
            }
            /* the window hides rows [k*nv, k*nv + fp) of each block and the
             * own rows before position first: scores of the visible rows
             * side by side, block by block, then the own ones */
            const int fp = first < nv ? first : nv, nvis = nv - fp, Pv = nblk * nvis;
            const int o = o0 + (first > pos ? first - pos : 0), no = self - o + 1, T = Pv + no;
            for (int hh = 0; hh < g; hh++) {
                const int h = kvh * g + hh;
                const float *qh = q + (size_t)i * qd + (size_t)h * hd;
                float *oh = out + (size_t)i * qd + (size_t)h * hd;
                for (int k = 0; nvis && k < nblk; k++)
                    vec_dot_rows(nvis, hd, qh, K + (size_t)(k * nv + fp) * kvd, kvd, scale, s + (size_t)k * nvis);
                vec_dot_rows(no, hd, qh, K + (size_t)o * kvd, kvd, scale, s + Pv);
                vec_softcap(T, s, c->attn_softcap);
                const float inv = vec_softmax_inv(T, s);
                for (int t = 0; t < T; t++) s[t] *= inv;
                vec_wsum_rows(no, hd, s + Pv, V + (size_t)o * kvd, kvd, oh);
                for (int k = 0; nvis && k < nblk; k++) {
                    vec_wsum_rows(nvis, hd, s + (size_t)k * nvis, V + (size_t)(k * nv + fp) * kvd, kvd, part);
                    for (int j = 0; j < hd; j++) oh[j] += part[j];
                }
                float *tm = tmass + ((size_t)h * n + i) * nb1;
                for (int k = 0; k < nblk; k++) {
                    double acc = 0.0;
                    for (int t = k * nvis; t < (k + 1) * nvis; t++) acc += s[t];
                    tm[k] = (float)acc;
                }
                double acc = 0.0;
                for (int t = Pv; t < T; t++) acc += s[t];
                tm[nblk] = (float)acc;
            }
        }
    }
}

/* Spans of a windowed layer l for rows at positions pos .. pos+n-1 in cache
 * rows rel0 .. rel0+n-1 (counted from the keys' base), one sequence with
 * nothing in front: the keys from mend_swa_first to the row itself, as the
 * forward's window_spans. NULL when the window hides nothing of these rows. */
static const int *window_spans(mend_probe *p, int l, int n, int pos, int rel0) {
    const mend_config *c = &p->m->cfg;
    if (!p->spans || mend_swa_first(c, l, pos + n - 1) == 0) return NULL;
    for (int i = 0; i < n; i++) {
        int *sp = p->spans + (size_t)i * 6;
        sp[0] = sp[1] = sp[2] = sp[3] = 0;
        sp[4] = rel0 + mend_swa_first(c, l, pos + i) - pos;
        sp[5] = rel0 + i + 1;
    }
    return p->spans;
}

/* x (n, dim) += in · Wᵀ (+ bias); with post-norms x += rmsnorm(in · Wᵀ) * post, the
 * product in xb (free at both residual adds), as the forward's residual. */
static int residual(mend_probe *p, const float *in, int n, const mend_mat *W, const float *bias, const float *post) {
    const mend_config *c = &p->m->cfg;
    if (!c->post_norms) return mat_mul(p, p->x, (size_t)p->dim, in, n, W, bias, 1);
    int rc = mat_mul(p, p->xb, (size_t)p->dim, in, n, W, bias, 0);
    if (rc) return rc;
    mend_post_norm_add(c, post, p->x, p->xb, n, 0);
    return 0;
}

/* RoPE tables of rows [at, at+n) for positions pos .. pos+n-1 (and of the
 * windowed layers' base when the model has one). */
static void rope_tables_at(mend_probe *p, size_t at, int n, int pos) {
    const mend_config *c = &p->m->cfg;
    const size_t half = (size_t)p->hd / 2;
    mend_rope_tables(c, p->rc + at * half, p->rs + at * half, n, pos);
    if (p->rc2) mend_rope_local_tables(c, p->rc2 + at * half, p->rs2 + at * half, n, pos);
}

/* The layer loop on x (n rows, already embedded). Keys/values of the batch
 * go to cache rows [row0, row0+n).
 * seg == NULL: RoPE positions pos .. pos+n-1; query i attends to rows
 *   [kbase, row0 + i]; layers in [l0, l1) record masses over nblk blocks of
 *   nv rows (kbase must be 0) into mean_mass (l1-l0, H, nblk+1), averaged
 *   over the n rows, and tok_mass (l1-l0, H, n, nblk+1).
 * seg != NULL (n_seg inputs, input j = rows [seg[j], seg[j+1])): each input
 *   at positions pos .. and attending to the nblk prompt blocks and causally
 *   to itself; mean_mass (n_seg, l1-l0, H, nblk+1), averaged per input.
 * Layers [0, l_end) run. */
static int run_layers(mend_probe *p, int n, int pos, size_t row0, size_t kbase, int l_end, int l0, int l1,
                      int nblk, float *mean_mass, float *tok_mass, const int *seg, int n_seg, int *own0) {
    const mend_model *m = p->m;
    const mend_config *c = &m->cfg;
    const size_t qd = p->qd, kvd = p->kvd, R = p->R, dim = (size_t)p->dim, hid = (size_t)p->hid;
    const int nb1 = nblk + 1;
    int rc;
    if (seg) {
        for (int j = 0; j < n_seg; j++) {
            rope_tables_at(p, (size_t)seg[j], seg[j + 1] - seg[j], pos);
            mend_pos_add(c, p->x + (size_t)seg[j] * dim, seg[j + 1] - seg[j], pos);   /* range: mend_probe_new */
            for (int i = seg[j]; i < seg[j + 1]; i++) own0[i] = (int)row0 + seg[j];
        }
    } else {
        rope_tables_at(p, 0, n, pos);
        mend_pos_add(c, p->x, n, pos);
    }
    for (int l = 0; l < l_end; l++) {
        const mend_layer *Ly = &m->layers[l];
        float *kl = p->kc + (size_t)l * R * kvd, *vl = p->vc + (size_t)l * R * kvd;
        float *kp = kl + row0 * kvd, *vp = vl + row0 * kvd;
        mend_norm_forward(c, p->xb, p->x, Ly->attn_norm, Ly->attn_norm_b, n, 0);
        if ((rc = mat_mul(p, p->q, qd, p->xb, n, &Ly->wq, Ly->bq, 0))) return rc;
        if ((rc = mat_mul(p, kp, kvd, p->xb, n, &Ly->wk, Ly->bk, 0))) return rc;
        if ((rc = mat_mul(p, vp, kvd, p->xb, n, &Ly->wv, Ly->bv, 0))) return rc;
        mend_qk_norm(c, Ly, p->q, qd, kp, kvd, n);
        const int local = p->rc2 && mend_rope_local(c, l);
        const float *rc_t = local ? p->rc2 : p->rc, *rs_t = local ? p->rs2 : p->rs;
        rope_forward(p->q, n, qd, p->H, p->hd, rc_t, rs_t, c->rope_type);
        rope_forward(kp, n, kvd, p->KVH, p->hd, rc_t, rs_t, c->rope_type);
        const int probed = l >= l0 && l < l1;
        if (probed || seg || nblk > 0) {   /* one attention code for every input layout: the same bits */
            attention_mass_forward(p, p->att, p->q, kl, vl, n, (int)row0, nblk, p->nv, seg ? own0 : NULL, l, pos,
                                   p->tmass);
            const size_t H = (size_t)p->H, nl = (size_t)(l1 - l0);
            float *tm = probed && tok_mass && !seg ? tok_mass + (size_t)(l - l0) * H * n * nb1 : NULL;
            if (tm) memcpy(tm, p->tmass, H * n * nb1 * sizeof(float));
            for (int j = 0; probed && mean_mass && j < (seg ? n_seg : 1); j++) {
                const int i0 = seg ? seg[j] : 0, i1 = seg ? seg[j + 1] : n;
                float *mm = mean_mass + ((size_t)j * nl + (size_t)(l - l0)) * H * nb1;
                for (size_t h = 0; h < H; h++)
                    for (int k = 0; k < nb1; k++) {
                        double acc = 0.0;
                        for (int i = i0; i < i1; i++) acc += p->tmass[(h * n + i) * nb1 + k];
                        mm[h * nb1 + k] = (float)(acc / (i1 - i0));
                    }
            }
        } else {
            const int *sp = window_spans(p, l, n, pos, (int)(row0 - kbase));
            if (sp)
                attention_forward_spans(p->att, p->q, kl + kbase * kvd, vl + kbase * kvd, n, sp, p->H, p->KVH,
                                        p->hd, c->attn_softcap, p->sc, (int)R, n_threads_now(p));
            else
                attention_forward(p->att, p->q, kl + kbase * kvd, vl + kbase * kvd, n, (int)(row0 - kbase), p->H,
                                  p->KVH, p->hd, c->attn_softcap, p->sc, (int)R, n_threads_now(p));
        }
        if ((rc = residual(p, p->att, n, &Ly->wo, Ly->bo, Ly->post_attn_norm))) return rc;
        mend_norm_forward(c, p->xb, p->x, Ly->ffn_norm, Ly->ffn_norm_b, n, 0);
        if (Ly->w_gate.data && (rc = mat_mul(p, p->hb, hid, p->xb, n, &Ly->w_gate, NULL, 0))) return rc;
        if ((rc = mat_mul(p, p->hb2, hid, p->xb, n, &Ly->w_up, Ly->b_up, 0))) return rc;
        mend_glu_forward(c, p->hb, p->hb, p->hb2, (int64_t)n * hid, 0);
        if ((rc = residual(p, p->hb, n, &Ly->w_down, Ly->b_down, Ly->post_ffn_norm))) return rc;
    }
    return 0;
}

int mend_probe_new(mend_probe **out, const mend_model *m, const float *const *prompts, int K, int nv,
                   int max_tokens) {
    if (!out) return mend_set_error(MEND_EINVAL, "mend_probe_new: out is NULL");
    *out = NULL;
    if (!m || !m->layers) return mend_set_error(MEND_EINVAL, "mend_probe_new: no model");
    if (K < 0 || K > 4096 || (K > 0 && (!prompts || nv < 1 || nv > 65536)))
        return mend_set_error(MEND_EINVAL, "mend_probe_new: %d prompts of %d rows (expected 0..4096 prompts of "
                              "1..65536 rows)", K, nv);
    for (int k = 0; k < K; k++)
        if (!prompts[k]) return mend_set_error(MEND_EINVAL, "mend_probe_new: prompt %d is NULL", k);
    if (K == 0) nv = 0;
    if (max_tokens < 1 || max_tokens > (1 << 20))
        return mend_set_error(MEND_EINVAL, "mend_probe_new: max_tokens is %d, expected 1..%d", max_tokens, 1 << 20);
    const mend_config *c = &m->cfg;
    if (c->n_heads < 1 || c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads)
        return mend_set_error(MEND_EFORMAT, "mend_probe_new: %d heads over %d kv heads", c->n_heads, c->n_kv_heads);
    if (c->head_dim < 1 || c->head_dim > 256)
        return mend_set_error(MEND_EUNSUPPORTED, "mend_probe_new: head_dim %d (1..256 supported)", c->head_dim);
    /* prompts at positions 0 .. nv-1, inputs from nv */
    int rc0 = mend_pos_check(c, "mend_probe_new", 0, (int64_t)nv + max_tokens);
    if (rc0) return rc0;
    mend_probe *p = calloc(1, sizeof *p);
    if (!p) return mend_set_error(MEND_ENOMEM, "mend_probe_new: out of memory");
    p->m = m;
    p->K = K;
    p->nv = nv;
    p->max_tokens = max_tokens;
    p->B = max_tokens > nv ? max_tokens : nv;
    p->L = c->n_layers;
    p->dim = c->dim;
    p->hd = c->head_dim;
    p->H = c->n_heads;
    p->KVH = c->n_kv_heads;
    p->hid = c->hidden_dim;
    p->qd = (size_t)c->n_heads * c->head_dim;
    p->kvd = (size_t)c->n_kv_heads * c->head_dim;
    p->R = (size_t)K * nv + (size_t)max_tokens;
    size_t mo = (size_t)c->dim;
    if (p->qd > mo) mo = p->qd;
    if ((size_t)c->hidden_dim > mo) mo = (size_t)c->hidden_dim;
    p->max_out = mo;
    p->max_cols = mo;
    p->n_threads = omp_get_max_threads();
    if (p->n_threads < 1) p->n_threads = 1;
    const int g = c->n_heads / c->n_kv_heads;
    p->sc_stride = ((size_t)g * p->R + 15) & ~(size_t)15;
    const size_t B = (size_t)p->B;
    size_t sz[17];
    int ok = mend_mul_ok((size_t)p->L, p->R, &sz[0]) && mend_mul_ok(sz[0], p->kvd, &sz[0]);
    sz[1] = sz[0];
    ok = ok && mend_mul_ok(B, (size_t)p->dim, &sz[2]);
    sz[3] = sz[2];
    ok = ok && mend_mul_ok(B, p->qd, &sz[4]);
    sz[5] = sz[4];
    ok = ok && mend_mul_ok(B, (size_t)p->hid, &sz[6]);
    sz[7] = sz[6];
    ok = ok && mend_mul_ok(B, mo, &sz[8]);
    ok = ok && mend_mul_ok(B, (size_t)(p->hd / 2 + 1), &sz[9]);
    sz[10] = sz[9];
    ok = ok && mend_mul_ok((size_t)p->n_threads, p->sc_stride, &sz[11]);
    ok = ok && mend_mul_ok((size_t)p->H * B, (size_t)K + 1, &sz[12]);
    ok = ok && mend_mul_ok((size_t)PROBE_TILE, p->max_cols, &sz[13]);
    sz[14] = ok && mend_sgemm_available() ? mend_sgemm_xt_floats(p->B, (int)p->max_cols) : 0;
    sz[15] = sz[16] = mend_rope_has_local(c) ? sz[9] : 0;
    size_t offs[17], total = 0;
    for (int i = 0; ok && i < 17; i++) {
        offs[i] = total;
        ok = mend_add_ok(total, (sz[i] + 15) & ~(size_t)15, &total);
    }
    size_t bytes = 0;
    ok = ok && mend_mul_ok(total, sizeof(float), &bytes);
    if (!ok) {
        free(p);
        return mend_set_error(MEND_ERANGE, "mend_probe_new: %d prompts x %d rows + %d tokens overflow", K, nv,
                              max_tokens);
    }
    if (posix_memalign(&p->mem, 64, bytes ? bytes : 64) != 0) {
        free(p);
        return mend_set_error(MEND_ENOMEM, "mend_probe_new: cannot allocate %zu MiB", bytes >> 20);
    }
    memset(p->mem, 0, bytes);
    p->bytes = bytes;
    float *f = p->mem;
    float **slots[17] = {&p->kc, &p->vc, &p->x, &p->xb, &p->q, &p->att, &p->hb, &p->hb2, &p->tmp,
                         &p->rc, &p->rs, &p->sc, &p->tmass, &p->tile, &p->xt, &p->rc2, &p->rs2};
    for (int i = 0; i < 17; i++) *slots[i] = f + offs[i];
    if (!sz[14]) p->xt = NULL;
    if (!sz[15]) p->rc2 = p->rs2 = NULL;
    int windowed = 0;
    for (int l = 0; l < p->L; l++) windowed |= c->swa_window[l] > 0;
    if (windowed && !(p->spans = malloc(B * 6 * sizeof *p->spans))) {
        mend_probe_free(p);
        return mend_set_error(MEND_ENOMEM, "mend_probe_new: out of memory for sliding-window spans");
    }
    /* each prompt alone, at positions 0 .. nv-1, into rows [k*nv, (k+1)*nv) */
    for (int k = 0; k < K; k++) {
        memcpy(p->x, prompts[k], (size_t)nv * p->dim * sizeof(float));
        for (size_t i = 0; i < (size_t)nv * p->dim; i++)
            if (!isfinite(p->x[i])) {
                mend_probe_free(p);
                return mend_set_error(MEND_EINVAL, "mend_probe_new: prompt %d value %zu is not finite", k, i);
            }
        const size_t row0 = (size_t)k * nv;
        int rc = run_layers(p, nv, 0, row0, row0, p->L, 0, 0, 0, NULL, NULL, NULL, 0, NULL);
        if (rc) {
            mend_probe_free(p);
            return rc;
        }
    }
    *out = p;
    return 0;
}

void mend_probe_free(mend_probe *p) {
    if (!p) return;
    free(p->spans);
    free(p->mem);
    free(p);
}

size_t mend_probe_prompt_kv_bytes(const mend_probe *p) {
    return p ? (size_t)p->L * p->K * p->nv * p->kvd * 2 * sizeof(float) : 0;
}
size_t mend_probe_bytes(const mend_probe *p) { return p ? p->bytes : 0; }
int mend_probe_max_tokens(const mend_probe *p) { return p ? p->max_tokens : 0; }

void mend_probe_buffers(const mend_probe *p, int l, const float **x, const float **att, const float **keys,
                        const float **values) {
    const size_t at = p && l >= 0 && l < p->L ? (size_t)l * p->R * p->kvd : 0;
    if (x) *x = p ? p->x : NULL;
    if (att) *att = p ? p->att : NULL;
    if (keys) *keys = p ? p->kc + at : NULL;
    if (values) *values = p ? p->vc + at : NULL;
}

int mend_probe_attention(mend_probe *p, const int32_t *tokens, int n, int l0, int l1, float *mean_mass,
                         float *tok_mass) {
    if (!p || !tokens) return mend_set_error(MEND_EINVAL, "attention probe: no probe or no tokens");
    if (p->K < 1) return mend_set_error(MEND_EINVAL, "attention probe: the probe holds no prompts");
    if (n < 1 || n > p->max_tokens)
        return mend_set_error(MEND_ERANGE, "attention probe: %d input tokens, expected 1..%d", n, p->max_tokens);
    if (l0 < 0 || l1 <= l0 || l1 > p->L)
        return mend_set_error(MEND_ERANGE, "attention probe: layers [%d, %d) outside the model's 0..%d", l0, l1,
                              p->L);
    int rc = embed_tokens(p, tokens, n);
    if (rc) return rc;
    return run_layers(p, n, p->nv, (size_t)p->K * p->nv, 0, l1, l0, l1, p->K, mean_mass, tok_mass, NULL, 0, NULL);
}

int mend_probe_attention_many(mend_probe *p, const int32_t *tokens, const int *off, int n_inputs, int l0, int l1,
                              float *mean_mass) {
    if (!p || !tokens || !off || !mean_mass)
        return mend_set_error(MEND_EINVAL, "attention probe: NULL argument");
    if (p->K < 1) return mend_set_error(MEND_EINVAL, "attention probe: the probe holds no prompts");
    if (n_inputs < 1 || off[0] != 0)
        return mend_set_error(MEND_EINVAL, "attention probe: %d inputs from offset %d (expected >= 1 from 0)",
                              n_inputs, n_inputs > 0 ? off[0] : 0);
    for (int j = 0; j < n_inputs; j++)
        if (off[j + 1] <= off[j])
            return mend_set_error(MEND_EINVAL, "attention probe: input %d is empty or its offsets decrease", j);
    const int n = off[n_inputs];
    if (n > p->max_tokens)
        return mend_set_error(MEND_ERANGE, "attention probe: %d input tokens in all, expected 1..%d", n,
                              p->max_tokens);
    if (l0 < 0 || l1 <= l0 || l1 > p->L)
        return mend_set_error(MEND_ERANGE, "attention probe: layers [%d, %d) outside the model's 0..%d", l0, l1,
                              p->L);
    int *own0 = malloc((size_t)n * sizeof *own0);
    if (!own0) return mend_set_error(MEND_ENOMEM, "attention probe: out of memory");
    int rc = embed_tokens(p, tokens, n);
    if (!rc)
        rc = run_layers(p, n, p->nv, (size_t)p->K * p->nv, 0, l1, l0, l1, p->K, mean_mass, NULL, off, n_inputs,
                        own0);
    free(own0);
    return rc;
}

int mend_probe_hidden_mean(mend_probe *p, const int32_t *tokens, int n, float *hidden) {
    if (!p || !tokens || !hidden) return mend_set_error(MEND_EINVAL, "hidden mean: NULL argument");
    if (n < 1 || n > p->max_tokens)
        return mend_set_error(MEND_ERANGE, "hidden mean: %d input tokens, expected 1..%d", n, p->max_tokens);
    int rc = embed_tokens(p, tokens, n);
    if (rc) return rc;
    const size_t row0 = (size_t)p->K * p->nv;   /* input rows, attending to themselves only */
    if ((rc = run_layers(p, n, 0, row0, row0, p->L, 0, 0, 0, NULL, NULL, NULL, 0, NULL))) return rc;
    mend_norm_forward(&p->m->cfg, p->xb, p->x, p->m->out_norm, p->m->out_norm_b, n, 0);
    for (int j = 0; j < p->dim; j++) {
        double acc = 0.0;
        for (int i = 0; i < n; i++) acc += p->xb[(size_t)i * p->dim + j];
        hidden[j] = (float)(acc / n);
    }
    return 0;
}
