/* Training forward + backward to the soft prompt through a frozen model.
 *
 * Sequence layout: T = P + n rows, rows [0, P) are the prompt vectors, rows
 * [P, T) the embeddings of the text tokens; positions count from 0 at the
 * first prompt row (as PEFT and mend_forward do). Per layer (torch notation,
 * the same equations as model/forward.c):
 *   h = rmsnorm(x) * w_attn;  q, k, v = h Wqᵀ (+b), h Wkᵀ (+b), h Wvᵀ (+b)
 *   q, k = qk_norm(q), qk_norm(k)  (cfg.qk_norm; QR, KR keep their inputs;
 *                                   then q *= mend_query_scale)
 *   q, k = rope(q), rope(k);  a = causal_gqa_softmax(q kᵀ / sqrt(hd)) v
 *                                  (within layer l's window cfg.swa_window[l];
 *                                   gemma3's windowed layers rotate with rope_theta_swa)
 *   xm = x + a Woᵀ;  h = rmsnorm(xm) * w_ffn;  g, u = h Wgᵀ, h Wuᵀ
 *   x' = xm + (silu(g) * u) Wdᵀ
 * and logits = rmsnorm(x_L) * w_out Woutᵀ for the scored rows only. gemma3
 * (model/features.c) also has text embeddings times embd_scale (the prompt
 * rows are used as given), xm = x + rmsnorm(a Woᵀ) * post_attn_norm,
 * x' = xm + rmsnorm((gelu_tanh(g) * u) Wdᵀ) * post_ffn_norm. gemma2 has the
 * same and soft-caps the attention scores and the logits: s = c tanh(s / c),
 * with d s / d s_in = 1 - tanh². opt adds the learned position rows
 * 0 .. T-1 to every row of x_0, the prompt rows included (HF's
 * inputs_embeds path; a constant, so the prompt's gradient passes through
 * unchanged), has no RoPE, LayerNorm with bias in place of every rmsnorm
 * (backward: layernorm_backward), biases on Wo and Wd, and
 * x' = xm + relu(h Wuᵀ + b_up) Wdᵀ + b_down without a gate (G is not kept;
 * backward: relu_backward on U).
 *
 * Memory plan (floats; T = P + max_text, all in one allocation made by
 * mend_trainer_new; nothing is allocated during a step):
 *   kept per layer l (what the backward reads):
 *     X[l]   (T, dim)     layer input (X[L] is the final residual stream)
 *     XM[l]  (T, dim)     residual after attention (input of the FFN norm)
 *     Q[l]   (T, qd)      queries after RoPE
 *     K[l], V[l] (T, kvd) keys after RoPE, values
 *     G[l], U[l] (T, hidden)  FFN gate / up pre-activations
 *     QR[l], KR[l]       queries / keys before QK-norm (cfg.qk_norm only)
 *     YA[l], YF[l] (T, dim)   attention / FFN outputs before their post-norms
 *                        (cfg.post_norms only)
 *   recomputed in the backward:
 *     the normalized inputs (rmsnorm_backward recomputes 1/rms from X / XM),
 *     the attention probabilities (from Q and K, one block of 128 query rows
 *     per head at a time; never T x T x heads per layer),
 *     silu(g) or gelu_tanh(g) (from G).
 *   not needed at all: the normalized matmul inputs and the attention and
 *     FFN outputs - with frozen weights only input gradients flow, and
 *     dX = dY W needs W, not X.
 *   scratch shared by all layers: xb (T, dim), att (T, qd), sw (T, hidden),
 *     dx, dh (T, dim), dq (T, qd), dk, dv (T, kvd), dg, du (T, hidden),
 *     attention scratch (per-head dK/dV and per-thread probability blocks),
 *     RoPE tables for positions 0..T-1 (two pairs for gemma3's two bases),
 *     and for the output head blocks of
 *     HEAD_ROWS rows: logits (HEAD_ROWS, vocab), teacher logits, the final
 *     normed rows and their gradient, a (2 * vocab) row buffer per thread.
 * For SmolLM2-135M, P = 20 and 512 text tokens that is ~330 MB kept plus
 * ~40 MB scratch (see mend_trainer_bytes). With mend's AVX-512 kernels the
 * trainer also keeps every weight matrix packed for dY·W (pack_weights): one
 * more copy of the f32 weights, 0.54 GB for SmolLM2-135M.
 *
 * Weights: every matrix must be f32, i.e. the model is loaded with
 * keep_packed = 0 and the compressed weights are the dequantized copies in
 * the model's f32 arena (exactly the values the packed blocks hold). Forward
 * products are sgemm on column slices of the output, one slice per OpenMP
 * thread (y = x Wᵀ, slices of W's rows); backward products dX = dY W are
 * sgemm on slices of dX's columns (slices of W's columns), so no reduction
 * across threads is needed and results do not depend on scheduling: a step
 * is bit-for-bit reproducible for a given thread count. Both run on mend's
 * own AVX-512 kernels (kernels/sgemm.h: x·Wᵀ on x packed once per product,
 * dY·W on W packed once per trainer), as do attention's blocked products
 * (kernels/ops_backward.c), where the CPU has them, so the speed does not
 * hinge on which kernels the linked BLAS picks; otherwise on BLAS,
 * single-threaded inside the OpenMP threads, as in model/forward.c. The
 * packed x adds (max(T, HEAD_ROWS), max(dim, q dim, hidden)) floats of
 * scratch.
 *
 * At layer 0 only the prompt rows' input gradient is formed (the text rows'
 * embeddings are not trained), which skips the q/k/v input products and the
 * norm backward for the text rows there. */
#include "prompt/train.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/ops_backward.h"
#include "kernels/quants.h"
#include "kernels/sgemm.h"
#include "util/util.h"

/* Rows of the output head per block: each block streams the whole (vocab,
 * dim) matrix once forward and once backward, so short blocks re-read it
 * often; 256 rows measured no faster than 128. */
#define HEAD_ROWS 128

struct mend_trainer {
    const mend_model *m;
    const mend_model *teacher;
    mend_state *tstate;
    int P, max_text, Tmax, n_threads;
    size_t qd, kvd;
    float *X, *XM, *Q, *K, *V, *G, *U;
    float *QR, *KR;     /* queries / keys before QK-norm (cfg.qk_norm), or NULL */
    float *YA, *YF;     /* attention / FFN outputs before their post-norms (cfg.post_norms), or NULL */
    float *rc2, *rs2;   /* RoPE tables of the sliding-window layers' base (gemma3), or NULL */
    float *xb, *att, *sw, *dx, *dh, *dq, *dk, *dv, *dg, *du;
    float *rc, *rs, *asc;
    float *logits, *tlogits, *hf, *dhf, *work;
    float *ltanh;       /* tanh(z / c) of the logits' rows with cfg.final_softcap, or NULL */
    float *xt;          /* packed x of a forward product (mend_sgemm), or NULL */
    size_t xt_cols;
    int xt_rows;
    float *wpack;       /* every weight matrix packed for dY·W (mend_sgemm_pack_w), or NULL */
    const float **wp;   /* per matrix into wpack: layer l's at N_LAYER_MATS l + M_*, the output head last */
    size_t wpack_bytes;
    void *mem;
    size_t bytes;
};

/* ---- threaded products ------------------------------------------------------------- */

typedef struct fwd_job {
    float *out;         /* (n, ldo) */
    size_t ldo;
    const mend_mat *W;  /* (m, k) f32 */
    const float *bias;
} fwd_job;

static int pick_threads(const mend_trainer *t, int64_t work) {
    int nt = omp_get_max_threads();
    if (nt > t->n_threads) nt = t->n_threads;
    if (work < 65536) nt = 1;
    return nt < 1 ? 1 : nt;
}

/* out = beta * out + x Wᵀ (+ bias) for every job; x (n, k) shared. Each
 * thread takes a contiguous slice of every W's rows (out's columns). With
 * mend's AVX-512 sgemm, x is packed once (the threads share the packing by
 * row blocks) and every slice runs on it; otherwise BLAS. */
static void mm_forward(const mend_trainer *t, const float *x, int n, float beta, const fwd_job *jobs, int n_jobs) {
    int64_t work = 0;
    for (int j = 0; j < n_jobs; j++) work += (int64_t)n * jobs[j].W->rows * jobs[j].W->cols;
    const int nt = pick_threads(t, work);
    const int k = (int)jobs[0].W->cols;
    const int use_xt = t->xt && n > 1 && (size_t)k <= t->xt_cols && n <= t->xt_rows;
    const int n_blocks = use_xt ? (n + 31) / 32 : 0;
#pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num(), T = omp_get_num_threads();
        if (use_xt) {
            for (int b = tid; b < n_blocks; b += T) mend_sgemm_pack_xt(t->xt, x, (size_t)k, n, k, b, b + 1);
#pragma omp barrier
        }
        for (int j = 0; j < n_jobs; j++) {
            const fwd_job *J = &jobs[j];
            const int rows = (int)J->W->rows, cols = (int)J->W->cols;
            const int per = (((rows + T - 1) / T) + 15) & ~15;
            const int r0 = tid * per < rows ? tid * per : rows, r1 = r0 + per < rows ? r0 + per : rows;
            if (r0 >= r1) continue;
            const float *w = (const float *)J->W->data + (size_t)r0 * cols;
            if (!use_xt || mend_sgemm_xt(J->out + r0, J->ldo, t->xt, n, w, (size_t)cols, r1 - r0, cols, beta))
                matmul_forward(J->out + r0, J->ldo, x, w, NULL, n, r1 - r0, cols, beta);
            if (J->bias)
                for (int i = 0; i < n; i++)
                    for (int c = r0; c < r1; c++) J->out[(size_t)i * J->ldo + c] += J->bias[c];
        }
    }
}

typedef struct bwd_job {
    const float *dy;    /* (n, ldy), W->rows used columns */
    size_t ldy;
    const mend_mat *W;  /* (m, k) f32 */
    const float *wp;    /* W packed whole (mend_sgemm_pack_w), or NULL */
} bwd_job;

/* dx (n, ldx) = beta * dx + sum_j dy_j W_j; every W_j has the same k
 * columns. Each thread owns a slice of dx's columns, a whole number of the
 * packed W's 32-column strips. */
static void mm_backward(const mend_trainer *t, float *dx, size_t ldx, int n, float beta, const bwd_job *jobs,
                        int n_jobs) {
    const int k = (int)jobs[0].W->cols;
    int64_t work = 0;
    for (int j = 0; j < n_jobs; j++) work += (int64_t)n * jobs[j].W->rows * k;
    const int nt = pick_threads(t, work);
#pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num(), T = omp_get_num_threads();
        const int per = (((k + T - 1) / T) + 31) & ~31;
        const int c0 = tid * per < k ? tid * per : k, c1 = c0 + per < k ? c0 + per : k;
        if (c0 < c1) {
            for (int j = 0; j < n_jobs; j++) {
                const bwd_job *J = &jobs[j];
                const float *w = (const float *)J->W->data + c0;
                const float b = j == 0 ? beta : 1.0f;
                const int rows = (int)J->W->rows;
                if (n > 1 && J->wp && !mend_sgemm_nn_packed(dx, ldx, J->dy, J->ldy, n, J->wp, rows, k, c0 / 32,
                                                            (c1 + 31) / 32, b))
                    continue;
                if (n == 1 || !t->xt ||
                    mend_sgemm_nn(dx + c0, ldx, J->dy, J->ldy, n, w, (size_t)k, rows, c1 - c0, b))
                    matmul_backward(dx + c0, ldx, J->dy, J->ldy, w, (size_t)k, n, rows, c1 - c0, b);
            }
        }
    }
}

/* ---- setup ------------------------------------------------------------------------------- */

static int check_f32(const mend_mat *w, const char *name, int layer) {
    if (w->type == MEND_TYPE_F32 && w->data) return 0;
    return mend_set_error(MEND_EUNSUPPORTED,
                          "prompt training: matrix %s (layer %d) is not f32 (type %u); load the model with "
                          "keep_packed = 0 so its weights are dequantized to f32",
                          name, layer, (unsigned)w->type);
}

int mend_trainer_n_scored(int objective, int n_text) {
    if (n_text < 1) return 0;
    return objective == MEND_TUNE_KL ? n_text - 1 : n_text;
}

/* A layer's seven matrices, in the order of the names below (packed weights
 * are indexed the same way). */
enum { M_Q, M_K, M_V, M_O, M_GATE, M_UP, M_DOWN, N_LAYER_MATS };
static const char *const MAT_NAMES[N_LAYER_MATS] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                                    "ffn_gate", "ffn_up", "ffn_down"};
static void layer_mats(const mend_layer *L, const mend_mat *w[N_LAYER_MATS]) {
    w[M_Q] = &L->wq, w[M_K] = &L->wk, w[M_V] = &L->wv, w[M_O] = &L->wo;
    w[M_GATE] = &L->w_gate, w[M_UP] = &L->w_up, w[M_DOWN] = &L->w_down;
}

/* The frozen matrices in the layout of dY·W (mend_sgemm_pack_w), once per
 * trainer instead of once per product: the output head alone is streamed
 * through the packing twice per block of HEAD_ROWS rows otherwise. A copy of
 * every f32 weight (for SmolLM2-135M 0.54 GB); if it cannot be allocated the
 * products pack per block as before, with the same results. */
static void pack_weights(mend_trainer *t) {
    const mend_model *m = t->m;
    const int L = m->cfg.n_layers, n = N_LAYER_MATS * L + 1;
    const mend_mat **mats = malloc((size_t)n * sizeof *mats);
    size_t *off = malloc((size_t)n * sizeof *off), total = 0;
    int ok = mats && off;
    for (int l = 0; ok && l < L; l++) layer_mats(&m->layers[l], mats + N_LAYER_MATS * l);
    if (ok) mats[N_LAYER_MATS * L] = &m->output;
    for (int i = 0; ok && i < n; i++) {
        off[i] = total;
        if (!mats[i]->data) continue;   /* the gate of an FFN without one */
        ok = mend_add_ok(total, (mend_sgemm_wp_floats((int)mats[i]->rows, (int)mats[i]->cols) + 15) & ~(size_t)15,
                         &total);
    }
    size_t bytes = 0;
    void *mem = NULL;
    t->wp = ok ? malloc((size_t)n * sizeof *t->wp) : NULL;
    if (t->wp && mend_mul_ok(total, sizeof(float), &bytes) && posix_memalign(&mem, 64, bytes) == 0) {
        t->wpack = mem;
        t->wpack_bytes = bytes;
#pragma omp parallel for schedule(dynamic, 1) num_threads(t->n_threads)
        for (int i = 0; i < n; i++) {
            const mend_mat *W = mats[i];
            t->wp[i] = NULL;
            if (!W->data) continue;
            mend_sgemm_pack_w(t->wpack + off[i], (const float *)W->data, (size_t)W->cols, (int)W->rows,
                              (int)W->cols);
            t->wp[i] = t->wpack + off[i];
        }
    } else {
        free(t->wp);
        t->wp = NULL;
    }
    free(mats);
    free(off);
}

int mend_trainer_new(mend_trainer **out, const mend_model *m, int n_virtual, int max_text,
                     const mend_model *teacher) {
    if (!out) return mend_set_error(MEND_EINVAL, "mend_trainer_new: out is NULL");
    *out = NULL;
    if (!m || !m->layers) return mend_set_error(MEND_EINVAL, "mend_trainer_new: no model");
    const mend_config *c = &m->cfg;
    if (n_virtual < 1 || n_virtual > 4096)
        return mend_set_error(MEND_EINVAL, "mend_trainer_new: n_virtual is %d, expected 1..4096", n_virtual);
    if (max_text < 2 || max_text > (1 << 20))
        return mend_set_error(MEND_EINVAL, "mend_trainer_new: max_text is %d, expected 2..%d", max_text, 1 << 20);
    if (c->head_dim % 2 || c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads)
        return mend_set_error(MEND_EUNSUPPORTED, "mend_trainer_new: head layout %d heads / %d kv heads / dim %d",
                              c->n_heads, c->n_kv_heads, c->head_dim);
    int rc = mend_pos_check(c, "mend_trainer_new", 0, (int64_t)n_virtual + max_text);
    if (rc) return rc;
    for (int l = 0; l < c->n_layers; l++) {
        const mend_mat *ws[N_LAYER_MATS];
        layer_mats(&m->layers[l], ws);
        for (int i = 0; i < N_LAYER_MATS; i++)
            if ((i != M_GATE || !c->ffn_plain) && (rc = check_f32(ws[i], MAT_NAMES[i], l))) return rc;
    }
    if ((rc = check_f32(&m->output, "output", -1))) return rc;
    if (teacher) {
        if (teacher->cfg.n_vocab != c->n_vocab)
            return mend_set_error(MEND_EINVAL, "mend_trainer_new: the teacher's vocabulary has %d tokens, the "
                                  "student's %d", teacher->cfg.n_vocab, c->n_vocab);
    }

    const size_t L = (size_t)c->n_layers, D = (size_t)c->dim, hd = (size_t)c->head_dim;
    const size_t qd = (size_t)c->n_heads * hd, kvd = (size_t)c->n_kv_heads * hd, F = (size_t)c->hidden_dim;
    const size_t Vv = (size_t)c->n_vocab;
    const size_t T = (size_t)n_virtual + (size_t)max_text;
    int nt = omp_get_max_threads();
    if (nt < 1) nt = 1;
    const size_t perlayer = 2 * D + qd + 2 * kvd + 2 * F;   /* X, XM, Q, K, V, G, U (no G with ffn_plain) */
    /* slot sizes in floats; overflow-checked (every factor is bounded above,
     * but vocab x rows and T x perlayer x L can still be large) */
    size_t sz[32];
    int ns = 0, ok = 1;
#define SLOT(a, b) do { size_t v_; ok = ok && mend_mul_ok((a), (b), &v_); sz[ns++] = ok ? v_ : 0; } while (0)
    SLOT((L + 1) * T, D);               /* X */
    SLOT(L * T, D);                     /* XM */
    SLOT(L * T, qd);                    /* Q */
    SLOT(L * T, kvd);                   /* K */
    SLOT(L * T, kvd);                   /* V */
    SLOT(c->ffn_plain ? 0 : L * T, F);  /* G (no gate: none) */
    SLOT(L * T, F);                     /* U */
    SLOT(c->qk_norm ? L * T : 0, qd);   /* QR */
    SLOT(c->qk_norm ? L * T : 0, kvd);  /* KR */
    SLOT(c->post_norms ? L * T : 0, D); /* YA */
    SLOT(c->post_norms ? L * T : 0, D); /* YF */
    const size_t local = mend_rope_has_local(c) ? T : 0;
    SLOT(local, hd / 2);                /* rc2 */
    SLOT(local, hd / 2);                /* rs2 */
    SLOT(T, D);                         /* xb */
    SLOT(T, qd);                        /* att */
    SLOT(T, F);                         /* sw */
    SLOT(T, D);                         /* dx */
    SLOT(T, D);                         /* dh */
    SLOT(T, qd);                        /* dq */
    SLOT(T, kvd);                       /* dk */
    SLOT(T, kvd);                       /* dv */
    SLOT(T, F);                         /* dg */
    SLOT(T, F);                         /* du */
    SLOT(T, hd / 2);                    /* rc */
    SLOT(T, hd / 2);                    /* rs */
    SLOT(1, attention_backward_scratch_floats((int)T, c->n_heads, (int)hd, nt));
    SLOT(HEAD_ROWS, Vv);                /* logits */
    SLOT(teacher ? HEAD_ROWS : 0, Vv);  /* teacher logits */
    SLOT(c->final_softcap > 0.0f ? HEAD_ROWS : 0, Vv);   /* ltanh */
    SLOT(2 * HEAD_ROWS, D);             /* hf, dhf */
    SLOT((size_t)nt * 2, Vv);           /* work */
    const int xt_rows = (int)(T > HEAD_ROWS ? T : HEAD_ROWS);
    const size_t xt_cols = F > D ? (F > qd ? F : qd) : (D > qd ? D : qd);
    SLOT(1, mend_sgemm_available() ? mend_sgemm_xt_floats(xt_rows, (int)xt_cols) : 0);   /* xt */
#undef SLOT
    (void)perlayer;
    size_t offs[32], total = 0;
    for (int i = 0; ok && i < ns; i++) {
        offs[i] = total;
        ok = mend_add_ok(total, (sz[i] + 15) & ~(size_t)15, &total);
    }
    size_t bytes = 0;
    ok = ok && mend_mul_ok(total, sizeof(float), &bytes);
    if (!ok)
        return mend_set_error(MEND_ERANGE, "mend_trainer_new: activations for %d + %d positions overflow",
                              n_virtual, max_text);
    mend_trainer *t = calloc(1, sizeof *t);
    void *mem = NULL;
    if (!t || posix_memalign(&mem, 64, bytes) != 0) {
        free(t);
        return mend_set_error(MEND_ENOMEM, "mend_trainer_new: cannot allocate %zu MiB of activations for %d + %d "
                              "positions", bytes >> 20, n_virtual, max_text);
    }
    float *f = mem;
    int i = 0;
    t->X = f + offs[i++];
    t->XM = f + offs[i++];
    t->Q = f + offs[i++];
    t->K = f + offs[i++];
    t->V = f + offs[i++];
    t->G = sz[i] ? f + offs[i] : NULL;
    i++;
    t->U = f + offs[i++];
    /* the slots of QK-norm, post-norms and the second RoPE base: NULL when empty */
    float **opt[6] = {&t->QR, &t->KR, &t->YA, &t->YF, &t->rc2, &t->rs2};
    for (int k = 0; k < 6; k++, i++) *opt[k] = sz[i] ? f + offs[i] : NULL;
    t->xb = f + offs[i++];
    t->att = f + offs[i++];
    t->sw = f + offs[i++];
    t->dx = f + offs[i++];
    t->dh = f + offs[i++];
    t->dq = f + offs[i++];
    t->dk = f + offs[i++];
    t->dv = f + offs[i++];
    t->dg = f + offs[i++];
    t->du = f + offs[i++];
    t->rc = f + offs[i++];
    t->rs = f + offs[i++];
    t->asc = f + offs[i++];
    t->logits = f + offs[i++];
    t->tlogits = teacher ? f + offs[i] : NULL;
    i++;
    t->ltanh = sz[i] ? f + offs[i] : NULL;
    i++;
    t->hf = f + offs[i];
    t->dhf = t->hf + (size_t)HEAD_ROWS * D;
    i++;
    t->work = f + offs[i++];
    t->xt = sz[i] ? f + offs[i] : NULL;
    t->xt_rows = xt_rows;
    t->xt_cols = xt_cols;
    i++;
    t->m = m;
    t->teacher = teacher;
    t->P = n_virtual;
    t->max_text = max_text;
    t->Tmax = (int)T;
    t->n_threads = nt;
    t->qd = qd;
    t->kvd = kvd;
    t->mem = mem;
    t->bytes = bytes;
    mend_rope_tables(c, t->rc, t->rs, (int)T, 0);
    if (local) mend_rope_local_tables(c, t->rc2, t->rs2, (int)T, 0);
    if (t->xt) pack_weights(t);
    if (teacher && (rc = mend_state_new(&t->tstate, teacher, max_text, HEAD_ROWS))) {
        mend_trainer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void mend_trainer_free(mend_trainer *t) {
    if (!t) return;
    if (t->tstate) mend_state_free(t->tstate);
    free(t->wpack);
    free(t->wp);
    free(t->mem);
    free(t);
}

size_t mend_trainer_bytes(const mend_trainer *t) { return t ? t->bytes + t->wpack_bytes : 0; }

/* ---- one sequence -------------------------------------------------------------------------- */

static void embed_text(const mend_trainer *t, float *x, const int32_t *text, int n) {
    const mend_mat *E = &t->m->tok_embd;
    const size_t D = (size_t)t->m->cfg.dim;
#pragma omp parallel for schedule(static) if (n > 64)
    for (int i = 0; i < n; i++) {
        const uint8_t *row = (const uint8_t *)E->data + (size_t)text[i] * E->row_bytes;
        if (E->type == MEND_TYPE_F32) memcpy(x + (size_t)i * D, row, D * sizeof(float));
        else mend_dequantize_row(E->type, row, x + (size_t)i * D, (int64_t)D);
    }
    mend_embed_scale(&t->m->cfg, x, n);   /* text rows only: the prompt rows are used as given */
}

/* layer l's RoPE tables */
static void layer_rope(const mend_trainer *t, int l, const float **rc, const float **rs) {
    const int local = t->rc2 && mend_rope_local(&t->m->cfg, l);
    *rc = local ? t->rc2 : t->rc;
    *rs = local ? t->rs2 : t->rs;
}

/* xres (T, dim) += x Wᵀ (+ bias), or += rmsnorm(Y) * post with Y = x Wᵀ kept (post_norms) */
static void residual_forward(mend_trainer *t, float *xres, const float *x, const mend_mat *W, const float *bias,
                             float *Y, const float *post, int T) {
    const mend_config *c = &t->m->cfg;
    const size_t D = (size_t)c->dim;
    const fwd_job j = {Y ? Y : xres, D, W, bias};
    mm_forward(t, x, T, Y ? 0.0f : 1.0f, &j, 1);
    if (!Y) return;
    memcpy(t->xb, Y, (size_t)T * D * sizeof(float));
    mend_post_norm_add(c, post, xres, t->xb, T, 0);
}

/* the gradient of a residual branch's product output: dx itself, or through
 * the post-norm into dh */
static const float *post_norm_backward(mend_trainer *t, const float *Y, const float *post, int T) {
    const mend_config *c = &t->m->cfg;
    if (!Y) return t->dx;
    rmsnorm_backward(t->dh, t->dx, Y, post, T, c->dim, c->norm_eps, 0.0f);
    return t->dh;
}

static void forward_layers(mend_trainer *t, int T) {
    const mend_model *m = t->m;
    const mend_config *c = &m->cfg;
    const size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim, qd = t->qd, kvd = t->kvd, Tm = (size_t)t->Tmax;
    const int nt = t->n_threads;
    for (int l = 0; l < c->n_layers; l++) {
        const mend_layer *Ly = &m->layers[l];
        float *X = t->X + (size_t)l * Tm * D, *Xn = X + Tm * D, *XM = t->XM + (size_t)l * Tm * D;
        float *Q = t->Q + (size_t)l * Tm * qd, *K = t->K + (size_t)l * Tm * kvd, *V = t->V + (size_t)l * Tm * kvd;
        float *G = t->G ? t->G + (size_t)l * Tm * F : NULL, *U = t->U + (size_t)l * Tm * F;
        float *YA = t->YA ? t->YA + (size_t)l * Tm * D : NULL, *YF = t->YF ? t->YF + (size_t)l * Tm * D : NULL;
        const float *rc, *rs;
        layer_rope(t, l, &rc, &rs);

        mend_norm_forward(c, t->xb, X, Ly->attn_norm, Ly->attn_norm_b, T, 0);
        const fwd_job qkv[3] = {{Q, qd, &Ly->wq, Ly->bq}, {K, kvd, &Ly->wk, Ly->bk}, {V, kvd, &Ly->wv, Ly->bv}};
        mm_forward(t, t->xb, T, 0.0f, qkv, 3);
        if (t->QR) {   /* keep the inputs of QK-norm for its backward */
            memcpy(t->QR + (size_t)l * Tm * qd, Q, (size_t)T * qd * sizeof(float));
            memcpy(t->KR + (size_t)l * Tm * kvd, K, (size_t)T * kvd * sizeof(float));
        }
        mend_qk_norm(c, Ly, Q, qd, K, kvd, T);
        rope_forward(Q, T, qd, c->n_heads, c->head_dim, rc, rs, c->rope_type);
        rope_forward(K, T, kvd, c->n_kv_heads, c->head_dim, rc, rs, c->rope_type);
        attention_forward_train(t->att, Q, K, V, T, c->n_heads, c->n_kv_heads, c->head_dim, c->swa_window[l],
                                c->attn_softcap, t->asc, nt);
        memcpy(XM, X, (size_t)T * D * sizeof(float));
        residual_forward(t, XM, t->att, &Ly->wo, Ly->bo, YA, Ly->post_attn_norm, T);

        mend_norm_forward(c, t->xb, XM, Ly->ffn_norm, Ly->ffn_norm_b, T, 0);
        const fwd_job gu[2] = {{G, F, &Ly->w_gate, NULL}, {U, F, &Ly->w_up, Ly->b_up}};
        mm_forward(t, t->xb, T, 0.0f, gu + (G == NULL), G ? 2 : 1);   /* no gate: the up product only */
        mend_glu_forward(c, t->sw, G, U, (int64_t)T * F, 0);
        memcpy(Xn, XM, (size_t)T * D * sizeof(float));
        residual_forward(t, Xn, t->sw, &Ly->w_down, Ly->b_down, YF, Ly->post_ffn_norm, T);
    }
}

/* QK-norm backward of layer l in place on dq, dk (rows rows): the query
 * scale, then the norms through the attention output buffer (free once
 * attention_backward has read it). */
static void qk_norm_backward(mend_trainer *t, int l, int rows) {
    const mend_config *c = &t->m->cfg;
    const mend_layer *Ly = &t->m->layers[l];
    const size_t Tm = (size_t)t->Tmax, hd = (size_t)c->head_dim;
    const float f = mend_query_scale(c);   /* q was scaled after its norm */
    for (size_t i = 0; f != 1.0f && i < (size_t)rows * t->qd; i++) t->dq[i] *= f;
    if (!t->QR) return;
    rmsnorm_backward(t->att, t->dk, t->KR + (size_t)l * Tm * t->kvd, Ly->k_norm, rows * c->n_kv_heads, (int)hd,
                     c->norm_eps, 0.0f);
    memcpy(t->dk, t->att, (size_t)rows * t->kvd * sizeof(float));
    rmsnorm_backward(t->att, t->dq, t->QR + (size_t)l * Tm * t->qd, Ly->q_norm, rows * c->n_heads, (int)hd,
                     c->norm_eps, 0.0f);
    memcpy(t->dq, t->att, (size_t)rows * t->qd * sizeof(float));
}

/* dx holds dL/dX[L] on entry; on return dL/dX[0] for rows [0, P). */
static void backward_layers(mend_trainer *t, int T) {
    const mend_model *m = t->m;
    const mend_config *c = &m->cfg;
    const size_t D = (size_t)c->dim, F = (size_t)c->hidden_dim, qd = t->qd, kvd = t->kvd, Tm = (size_t)t->Tmax;
    const int nt = t->n_threads;
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const mend_layer *Ly = &m->layers[l];
        const float *X = t->X + (size_t)l * Tm * D, *XM = t->XM + (size_t)l * Tm * D;
        const float *Q = t->Q + (size_t)l * Tm * qd, *K = t->K + (size_t)l * Tm * kvd;
        const float *V = t->V + (size_t)l * Tm * kvd;
        const float *G = t->G ? t->G + (size_t)l * Tm * F : NULL, *U = t->U + (size_t)l * Tm * F;
        const float *YA = t->YA ? t->YA + (size_t)l * Tm * D : NULL, *YF = t->YF ? t->YF + (size_t)l * Tm * D : NULL;
        const float *rc, *rs;
        layer_rope(t, l, &rc, &rs);

        /* FFN: d(act(g) u) = dx Wd (through the post-norm); then gate / up; then the norm */
        const float *const *wp = t->wp ? t->wp + N_LAYER_MATS * l : NULL;
#define WP(j) (wp ? wp[j] : NULL)
        const bwd_job jd = {post_norm_backward(t, YF, Ly->post_ffn_norm, T), D, &Ly->w_down, WP(M_DOWN)};
        mm_backward(t, t->sw, F, T, 0.0f, &jd, 1);
        mend_glu_backward(c, t->dg, t->du, t->sw, G, U, (int64_t)T * F);
        const bwd_job jgu[2] = {{t->dg, F, &Ly->w_gate, WP(M_GATE)}, {t->du, F, &Ly->w_up, WP(M_UP)}};
        mm_backward(t, t->dh, D, T, 0.0f, jgu + (G == NULL), G ? 2 : 1);   /* no gate: du only */
        mend_norm_backward(c, t->dx, t->dh, XM, Ly->ffn_norm, T, 1.0f);

        /* attention: da = dx Wo; softmax attention; RoPE; q/k/v; the norm */
        const bwd_job jo = {post_norm_backward(t, YA, Ly->post_attn_norm, T), D, &Ly->wo, WP(M_O)};
        mm_backward(t, t->att, qd, T, 0.0f, &jo, 1);
        attention_backward(t->dq, t->dk, t->dv, t->att, Q, K, V, T, c->n_heads, c->n_kv_heads, c->head_dim,
                           c->swa_window[l], c->attn_softcap, t->asc, nt);
        const int rows = l == 0 ? t->P : T;   /* layer 0: only the prompt rows are trained */
        rope_backward(t->dq, rows, qd, c->n_heads, c->head_dim, rc, rs, c->rope_type);
        rope_backward(t->dk, rows, kvd, c->n_kv_heads, c->head_dim, rc, rs, c->rope_type);
        qk_norm_backward(t, l, rows);
        const bwd_job jqkv[3] = {{t->dq, qd, &Ly->wq, WP(M_Q)}, {t->dk, kvd, &Ly->wk, WP(M_K)},
                                 {t->dv, kvd, &Ly->wv, WP(M_V)}};
#undef WP
        mm_backward(t, t->dh, D, rows, 0.0f, jqkv, 3);
        mend_norm_backward(c, t->dx, t->dh, X, Ly->attn_norm, rows, 1.0f);
    }
}

int mend_trainer_step(mend_trainer *t, const float *prompt, const int32_t *text, int n_text, int objective,
                      float scale, float *grad, mend_train_loss *out) {
    if (!t || !prompt || !text || !out)
        return mend_set_error(MEND_EINVAL, "mend_trainer_step: trainer, prompt, text and out must be given");
    memset(out, 0, sizeof *out);
    const mend_model *m = t->m;
    const mend_config *c = &m->cfg;
    if (n_text < 2 || n_text > t->max_text)
        return mend_set_error(MEND_EINVAL, "mend_trainer_step: n_text is %d, expected 2..%d", n_text, t->max_text);
    if (objective != MEND_TUNE_CE && objective != MEND_TUNE_KL)
        return mend_set_error(MEND_EINVAL, "mend_trainer_step: objective %d is not CE (0) or KL (1)", objective);
    if (objective == MEND_TUNE_KL && !t->tstate)
        return mend_set_error(MEND_EINVAL, "mend_trainer_step: the KL objective needs a teacher");
    const int Vv = c->n_vocab;
    for (int i = 0; i < n_text; i++)
        if (text[i] < 0 || text[i] >= Vv)
            return mend_set_error(MEND_EINVAL, "mend_trainer_step: token %d (index %d) is outside the vocabulary "
                                  "of %d", text[i], i, Vv);
    const int P = t->P, T = P + n_text;
    const size_t D = (size_t)c->dim;
    const int blas_threads = openblas_get_num_threads();
    if (blas_threads != 1) openblas_set_num_threads(1);

    /* forward */
    memcpy(t->X, prompt, (size_t)P * D * sizeof(float));
    embed_text(t, t->X + (size_t)P * D, text, n_text);
    mend_pos_add(c, t->X, T, 0);   /* learned positions on every row (range: mend_trainer_new) */
    forward_layers(t, T);

    /* head and loss, HEAD_ROWS rows at a time: rows [r0, r1) of the sequence,
     * row i predicting text[i - P + 1] */
    const float *XL = t->X + (size_t)c->n_layers * t->Tmax * D;
    float *dXL = t->dx;
    if (grad) memset(dXL, 0, (size_t)T * D * sizeof(float));
    const int first = objective == MEND_TUNE_KL ? P : P - 1, last = T - 2;   /* inclusive */
    double loss_sum = 0.0, ce_sum = 0.0;
    int rc = 0;
    for (int r0 = first; r0 <= last; r0 += HEAD_ROWS) {
        const int nr = last + 1 - r0 < HEAD_ROWS ? last + 1 - r0 : HEAD_ROWS;
        mend_norm_forward(c, t->hf, XL + (size_t)r0 * D, m->out_norm, m->out_norm_b, nr, 0);
        const fwd_job jh = {t->logits, (size_t)Vv, &m->output, NULL};
        mm_forward(t, t->hf, nr, 0.0f, &jh, 1);
        if (objective == MEND_TUNE_KL) {
            /* teacher rows r0 - P .. predict the same tokens from the text alone */
            if ((rc = mend_forward(t->tstate, text + (r0 - P), NULL, nr, r0 - P, t->tlogits, 1))) break;
            if (blas_threads != 1) openblas_set_num_threads(1);   /* mend_forward restored it */
        }
        double ls = 0.0, cs = 0.0;
        const int nt = t->n_threads;
#pragma omp parallel for schedule(static) reduction(+ : ls, cs) num_threads(nt)
        for (int r = 0; r < nr; r++) {
            float *z = t->logits + (size_t)r * Vv, *th = t->ltanh ? t->ltanh + (size_t)r * Vv : NULL;
            const int32_t target = text[r0 + r - P + 1];
            if (th) {   /* z = c tanh(z / c), its tanh kept for the backward */
                const float cap = c->final_softcap;
                for (int v = 0; v < Vv; v++) {
                    th[v] = tanhf(z[v] / cap);
                    z[v] = cap * th[v];
                }
            }
            if (objective == MEND_TUNE_KL) {
                double ce = 0.0;
                ls += kl_forward_backward(z, t->tlogits + (size_t)r * Vv, Vv, target, scale, &ce,
                                          t->work + (size_t)omp_get_thread_num() * 2 * Vv);
                cs += ce;
            } else {
                const double l = crossentropy_forward_backward(z, Vv, target, scale);
                ls += l;
                cs += l;
            }
            if (th)   /* dz through the cap */
                for (int v = 0; v < Vv; v++) z[v] *= 1.0f - th[v] * th[v];
        }
        loss_sum += ls;
        ce_sum += cs;
        if (grad) {
            const bwd_job jb = {t->logits, (size_t)Vv, &m->output, t->wp ? t->wp[N_LAYER_MATS * c->n_layers] : NULL};
            mm_backward(t, t->dhf, D, nr, 0.0f, &jb, 1);
            mend_norm_backward(c, dXL + (size_t)r0 * D, t->dhf, XL + (size_t)r0 * D, m->out_norm, nr, 0.0f);
        }
    }
    if (rc == 0 && grad) {
        backward_layers(t, T);
        const float *d0 = t->dx;
        for (size_t i = 0; i < (size_t)P * D; i++) grad[i] += d0[i];
    }
    if (blas_threads != 1) openblas_set_num_threads(blas_threads);
    if (rc) return rc;
    out->loss_sum = loss_sum;
    out->ce_sum = ce_sum;
    out->n_scored = last - first + 1;
    return 0;
}
