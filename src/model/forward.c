/* The LLaMA-family forward pass over a KV cache.
 *
 * Per layer, for a batch of n positions p = pos .. pos+n-1 (torch notation):
 *   h   = rmsnorm(x) * attn_norm
 *   q   = h @ Wq.T (+ bq);  k = h @ Wk.T (+ bk);  v = h @ Wv.T (+ bv)
 *   q,k = qk_norm(q), qk_norm(k)          (cfg.qk_norm, qwen3 and gemma3: per-head RMSNorm;
 *                                          gemma3 then scales q by mend_query_scale)
 *   q,k = rope(q, p), rope(k, p)          (pairs: NORM for llama, NEOX for qwen2;
 *                                          frequencies scaled by cfg.rope_scaling;
 *                                          gemma3's windowed layers: base rope_theta_swa)
 *   K[p], V[p] = k, v                     (the cache)
 *   a   = softmax(q K[:p+1].T / sqrt(hd)) V[:p+1]   per head; head h reads
 *         kv head h / (n_heads / n_kv_heads) (grouped-query attention);
 *         a layer with a sliding window w (cfg.swa_window) reads K[p-w+1:p+1]
 *         only, through attention_forward_spans
 *   x   = x + a @ Wo.T
 *   h   = rmsnorm(x) * ffn_norm
 *   x   = x + (silu(h @ Wg.T) * (h @ Wu.T)) @ Wd.T
 * then logits = (rmsnorm(x) * out_norm) @ Wout.T. gemma3 (model/features.c)
 * scales token embeddings by cfg.embd_scale, RMS-norms both residual
 * branches before their adds (post_attn_norm, post_ffn_norm) and gates with
 * gelu_tanh instead of silu; gemma2 does the same and soft-caps the
 * attention scores and the logits
 * (x = c tanh(x / c), cfg.attn_softcap and cfg.final_softcap). opt adds the
 * learned position row of p to every input row (tokens and a caller's
 * vectors alike) and has no RoPE, uses LayerNorm with a bias for every norm,
 * biases on Wo and Wd too, and
 *   x   = x + relu(h @ Wu.T + b_up) @ Wd.T + b_down   (no gate).
 *
 * Memory plan. Weights: one allocation per model (model->arena, see
 * load_gguf.c). Run state: one allocation per mend_state, carved into
 *   kc, vc     (n_layers, n_ctx, kv_dim)     keys / values, f32
 *   x          (B, dim)                      residual stream
 *   xb         (B, dim)                      normed input of a sublayer
 *   q, att     (B, n_heads*hd)               queries, attention output
 *   hb, hb2    (B, hidden)                   FFN gate / up activations
 *   rc, rs     (B, hd/2)                     RoPE cos / sin for the batch
 *   rc2, rs2   (B, hd/2)                     the same for the sliding-window layers' base (gemma3)
 *   sc         (threads, group, n_ctx)        attention scores per thread
 *   wtile      (threads, TILE_ROWS, max_cols) f32 rows of a packed matrix
 *   tmp        (B, dim)                      native product before a residual add
 *   qscratch   bytes for B quantized activation rows
 *                                            (these three only when the model keeps
 *                                            packed matrices)
 * with B = max_batch. Longer inputs run in chunks of B positions; nothing is
 * allocated during mend_forward. Keys and values are written by the K/V
 * matmuls straight into the cache rows [pos, pos+n).
 *
 * Threads: one OpenMP pool does everything. Matmuls cut the output columns
 * into chunks handed to the threads dynamically, each chunk a
 * single-threaded BLAS call (sgemm for batches, sgemv for one position),
 * because BLAS's own worker threads spinning next to OpenMP's cost a third
 * of the time on two cores. Attention runs in parallel over (position, kv
 * head) once it is big enough to pay for waking the threads. A state uses
 * at most the OpenMP thread count current when it was made (its scratch is
 * sized for it); BLAS is set to one thread for the duration of
 * mend_forward and restored afterwards.
 * Matrices kept packed (keep_packed) run on the native block kernels of
 * kernels/qmatmul.h (activations quantized to 8 bits, as llama.cpp does:
 * four to eight times less weight traffic, slightly different numbers);
 * q4_0 / q4_1 / q5_0 / q2_K / q3_K / q4_K / q6_K matrices the loader repacked
 * (W->xdata, kernels/qgemm.h) run on the interleaved kernels instead, for
 * every batch size (the same integer sums as the plain-layout kernels,
 * summed in another float order);
 * types without a native kernel are dequantized TILE_ROWS rows at a time
 * into the thread's wtile and multiplied through BLAS. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/qgemm.h"
#include "kernels/qmatmul.h"
#include "kernels/quants.h"
#include "kernels/sgemm.h"
#include "model/model.h"
#include "util/util.h"

#define TILE_ROWS 256
/* batches of at least this many rows use the repacked weights (W->xdata);
 * with the weight stream prefetched the repacked kernel is also the quicker
 * one for single tokens (generation), so every batch takes it */
#define QGEMM_MIN_N 1
#define XT_MIN_ROWS 8   /* fewer rows: BLAS (sgemv at 1), the 32-row tiles would be mostly padding */

struct mend_state {
    const mend_model *m;
    int n_ctx, max_batch, n_threads;
    size_t kvd, qd;
    float *kc, *vc;
    float *x, *xb, *q, *att, *hb, *hb2;
    float *rc, *rs;
    float *rc2, *rs2;       /* (B, hd/2) RoPE tables of the sliding-window layers' base (gemma3), or NULL */
    float *sc;
    size_t sc_stride;       /* floats per thread in sc */
    float *wtile;
    size_t wtile_floats;    /* per thread */
    float *tmp;             /* (B, dim) product before a residual add (native path) */
    float *xt;              /* x packed for mend_sgemm_xt (B rows, max_cols), or NULL */
    int *swa_spans;         /* (B, 6) attention spans of sliding-window layers, or NULL */
    void *qscratch;         /* activation blocks for mend_qmatmul_ex */
    size_t qscratch_bytes;
    void *mem;
    size_t bytes;
};

static int mat_is_f32(const mend_mat *w) { return w->type == MEND_TYPE_F32; }

/* Does the model keep any matrix packed? Also the largest activation scratch
 * the native kernels need for batches of B rows. */
static int model_has_packed(const mend_model *m, int B, size_t *qscratch) {
    const mend_mat *all[2 + 7];
    int packed = 0;
    *qscratch = 0;
    for (int l = -1; l < m->cfg.n_layers; l++) {
        int k = 0;
        if (l < 0) {
            all[k++] = &m->tok_embd;
            all[k++] = &m->output;
        } else {
            const mend_layer *L = &m->layers[l];
            all[k++] = &L->wq; all[k++] = &L->wk; all[k++] = &L->wv; all[k++] = &L->wo;
            all[k++] = &L->w_gate; all[k++] = &L->w_up; all[k++] = &L->w_down;
        }
        for (int i = 0; i < k; i++) {
            if (mat_is_f32(all[i])) continue;
            packed = 1;
            if (mend_qdot_act_type(all[i]->type) >= 0) {
                size_t b = mend_qmatmul_scratch_size(all[i]->type, B, all[i]->cols);
                if (b > *qscratch) *qscratch = b;
            }
            if (all[i]->xdata) {
                size_t b = mend_qgemm_scratch_size(all[i]->type, B, all[i]->cols);
                if (b > *qscratch) *qscratch = b;
            }
        }
    }
    return packed;
}

int mend_state_new(mend_state **out, const mend_model *m, int n_ctx, int max_batch) {
    if (!out) return mend_set_error(MEND_EINVAL, "mend_state_new: out is NULL");
    *out = NULL;
    if (!m || !m->layers) return mend_set_error(MEND_EINVAL, "mend_state_new: no model");
    if (n_ctx < 1 || n_ctx > (1 << 24))
        return mend_set_error(MEND_EINVAL, "mend_state_new: n_ctx is %d, expected 1..%d", n_ctx, 1 << 24);
    if (max_batch < 1)
        return mend_set_error(MEND_EINVAL, "mend_state_new: max_batch is %d, expected >= 1", max_batch);
    if (max_batch > n_ctx) max_batch = n_ctx;
    const mend_config *c = &m->cfg;
    const size_t L = (size_t)c->n_layers, dim = (size_t)c->dim, hd = (size_t)c->head_dim;
    const size_t qd = (size_t)c->n_heads * hd, kvd = (size_t)c->n_kv_heads * hd, hid = (size_t)c->hidden_dim;
    const size_t B = (size_t)max_batch, T = (size_t)n_ctx;
    int n_threads = omp_get_max_threads();
    if (n_threads < 1) n_threads = 1;
    size_t max_cols = dim > qd ? dim : qd;
    if (hid > max_cols) max_cols = hid;
    size_t qscratch = 0;
    const int packed = model_has_packed(m, max_batch, &qscratch);
    const size_t wtile = packed ? (size_t)TILE_ROWS * max_cols : 0;
    const size_t tmp = packed ? (size_t)max_batch * dim : 0;   /* overflow-checked with x below */
    const size_t qs_floats = (qscratch + sizeof(float) - 1) / sizeof(float);
    const size_t sc_stride = (attention_scratch_floats(c->n_heads, c->n_kv_heads, n_ctx) + 15) & ~(size_t)15;

    /* sizes in floats, each slot rounded to 16 floats (64 bytes) */
    size_t sz[13], total = 0;
    int ok = mend_mul_ok(L, T, &sz[0]) && mend_mul_ok(sz[0], kvd, &sz[0]);
    sz[1] = sz[0];
    ok = ok && mend_mul_ok(B, dim, &sz[2]);
    sz[3] = sz[2];
    ok = ok && mend_mul_ok(B, qd, &sz[4]);
    sz[5] = sz[4];
    ok = ok && mend_mul_ok(B, hid, &sz[6]);
    sz[7] = sz[6];
    ok = ok && mend_mul_ok(B, hd / 2, &sz[8]);
    sz[9] = sz[8];
    ok = ok && mend_mul_ok((size_t)n_threads, sc_stride, &sz[10]);
    const int local = mend_rope_has_local(c);
    sz[11] = local ? sz[8] : 0;
    sz[12] = sz[11];
    size_t offs[14];
    for (int i = 0; ok && i < 13; i++) {
        offs[i] = total;
        ok = mend_add_ok(total, (sz[i] + 15) & ~(size_t)15, &total);
    }
    offs[13] = total;
    size_t wtile_all = 0, off_tmp = 0, off_qs = 0;
    ok = ok && mend_mul_ok(wtile, (size_t)n_threads, &wtile_all) && mend_add_ok(total, wtile_all, &total);
    off_tmp = total;
    ok = ok && mend_add_ok(total, (tmp + 15) & ~(size_t)15, &total);
    const size_t xt_floats = mend_sgemm_available() ? mend_sgemm_xt_floats(max_batch, (int)max_cols) : 0;
    const size_t off_xt = total;
    ok = ok && mend_add_ok(total, (xt_floats + 15) & ~(size_t)15, &total);
    off_qs = total;
    ok = ok && mend_add_ok(total, qs_floats, &total);
    size_t bytes = 0;
    ok = ok && mend_mul_ok(total, sizeof(float), &bytes);
    if (!ok)
        return mend_set_error(MEND_ERANGE, "mend_state_new: a state for n_ctx %d and max_batch %d overflows "
                              "the address space", n_ctx, max_batch);
    mend_state *s = calloc(1, sizeof *s);
    void *mem = NULL;
    if (!s || posix_memalign(&mem, 64, bytes ? bytes : 64) != 0) {
        free(s);
        return mend_set_error(MEND_ENOMEM, "mend_state_new: cannot allocate %zu MiB for n_ctx %d, max_batch %d",
                              bytes >> 20, n_ctx, max_batch);
    }
    float *f = mem;
    s->m = m;
    s->n_ctx = n_ctx;
    s->max_batch = max_batch;
    s->n_threads = n_threads;
    s->kvd = kvd;
    s->qd = qd;
    s->kc = f + offs[0];
    s->vc = f + offs[1];
    s->x = f + offs[2];
    s->xb = f + offs[3];
    s->q = f + offs[4];
    s->att = f + offs[5];
    s->hb = f + offs[6];
    s->hb2 = f + offs[7];
    s->rc = f + offs[8];
    s->rs = f + offs[9];
    s->sc = f + offs[10];
    s->rc2 = local ? f + offs[11] : NULL;
    s->rs2 = local ? f + offs[12] : NULL;
    s->sc_stride = sc_stride;
    s->wtile = wtile ? f + offs[13] : NULL;
    s->wtile_floats = wtile;
    s->tmp = tmp ? f + off_tmp : NULL;
    s->xt = xt_floats ? f + off_xt : NULL;
    s->qscratch = qs_floats ? (void *)(f + off_qs) : NULL;
    s->qscratch_bytes = qs_floats * sizeof(float);
    s->mem = mem;
    s->bytes = bytes;
    if (mend_swa_active(c, n_ctx) && !(s->swa_spans = malloc(B * 6 * sizeof *s->swa_spans))) {
        mend_state_free(s);
        return mend_set_error(MEND_ENOMEM, "mend_state_new: out of memory for sliding-window spans");
    }
    *out = s;
    return 0;
}

void mend_state_free(mend_state *s) {
    if (!s) return;
    free(s->swa_spans);
    free(s->mem);
    free(s);
}

int mend_state_n_ctx(const mend_state *s) { return s ? s->n_ctx : 0; }

void mend_state_buffers(const mend_state *s, int l, const float **x, const float **att, const float **keys,
                        const float **values) {
    const size_t at = s && l >= 0 && l < s->m->cfg.n_layers ? (size_t)l * s->n_ctx * s->kvd : 0;
    if (x) *x = s ? s->x : NULL;
    if (att) *att = s ? s->att : NULL;
    if (keys) *keys = s ? s->kc + at : NULL;
    if (values) *values = s ? s->vc + at : NULL;
}

/* One product of a sublayer: out (n, ldo) = beta * out + x · Wᵀ (+ bias). */
typedef struct mm_job {
    float *out;
    size_t ldo;
    const mend_mat *W;
    const float *bias;
} mm_job;

/* Native kernels on packed blocks; 0 when done, nonzero to fall back. */
static int native_forward(mend_state *s, const mm_job *J, const float *x, int n, float beta, int nt) {
    const mend_mat *W = J->W;
    const int rows = (int)W->rows, cols = (int)W->cols;
    if (W->type == MEND_TYPE_F32 || !s->qscratch || mend_qdot_act_type(W->type) < 0) return 1;
    float *dst = beta != 0.0f ? s->tmp : J->out;
    const size_t ld = beta != 0.0f ? (size_t)rows : J->ldo;
    if (W->xdata && n >= QGEMM_MIN_N) {
        if (mend_qgemm(dst, ld, x, (size_t)cols, n, W->xdata, W->type, rows, cols, s->qscratch, s->qscratch_bytes,
                       nt, -1) != 0)
            return 1;
    } else if (mend_qmatmul_ex(dst, ld, x, (size_t)cols, n, W->data, W->type, rows, cols, s->qscratch,
                               s->qscratch_bytes, nt, -1) != 0) {
        return 1;   /* e.g. an alignment the kernels refuse: dequantize instead */
    }
    for (int i = 0; i < n; i++) {
        float *o = J->out + (size_t)i * J->ldo;
        const float *d = dst + (size_t)i * ld;
        if (beta != 0.0f)
            for (int j = 0; j < rows; j++) o[j] = beta * o[j] + d[j];
        if (J->bias)
            for (int j = 0; j < rows; j++) o[j] += J->bias[j];
    }
    return 0;
}

/* The products of one sublayer that share their input x (n, cols): q/k/v,
 * gate/up, or a single one, in one parallel region. Each matrix's output
 * columns (rows of W) are cut into chunks of at least 64 rows, about four per
 * thread, handed out dynamically (a thread that loses its core to another
 * process does not hold the others up), and each chunk is a single-threaded
 * BLAS call, so one thread pool (OpenMP's) does all the work. Packed
 * matrices with a native kernel run through it instead; other packed types
 * are dequantized chunk by chunk (chunks <= TILE_ROWS rows) into the
 * thread's own tile. */
static void mats_forward(mend_state *s, const float *x, int n, float beta, const mm_job *jobs, int n_jobs) {
    int nt = omp_get_max_threads();
    if (nt > s->n_threads) nt = s->n_threads;
    int64_t work = 0;
    for (int k = 0; k < n_jobs; k++) work += (int64_t)n * jobs[k].W->rows * jobs[k].W->cols;
    if (work < 32768) nt = 1;   /* tiny products are not worth waking threads for */
    /* f32 matrices and batches of >= XT_MIN_ROWS rows: mend's own kernel on x
     * packed once for all of them (see kernels/sgemm.h) */
    const int xt = s->xt != NULL && n >= XT_MIN_ROWS;
    int use_xt = 0;
    int todo[4], chunk[4], first[5], n_todo = 0;
    first[0] = 0;
    for (int k = 0; k < n_jobs && k < 4; k++) {
        if (!native_forward(s, &jobs[k], x, n, beta, nt)) continue;
        const int rows = (int)jobs[k].W->rows;
        int c = (rows + 4 * nt - 1) / (4 * nt);
        if (xt && jobs[k].W->type == MEND_TYPE_F32) {
            c = c < 48 ? 48 : (c + 47) / 48 * 48;   /* whole 12-column tiles */
            use_xt = 1;
        } else {
            c = c < 64 ? 64 : (c + 15) & ~15;
        }
        if (jobs[k].W->type != MEND_TYPE_F32 && c > TILE_ROWS) c = TILE_ROWS;
        todo[n_todo] = k;
        chunk[n_todo] = c;
        first[n_todo + 1] = first[n_todo] + (rows + c - 1) / c;
        n_todo++;
    }
    if (!n_todo) return;
    const int n_chunks = first[n_todo];
    const int cols_x = (int)jobs[todo[0]].W->cols;
    const int n_blocks = use_xt ? (int)(mend_sgemm_xt_floats(n, cols_x) / ((size_t)32 * cols_x)) : 0;
    if (nt > n_chunks) nt = n_chunks;
#pragma omp parallel num_threads(nt)
    {
        if (use_xt) {
#pragma omp for schedule(static)
            for (int b = 0; b < n_blocks; b++) mend_sgemm_pack_xt(s->xt, x, (size_t)cols_x, n, cols_x, b, b + 1);
        }
#pragma omp for schedule(dynamic, 1)
        for (int ci = 0; ci < n_chunks; ci++) {
            int k = 0;
            while (ci >= first[k + 1]) k++;
            const mm_job *J = &jobs[todo[k]];
            const mend_mat *W = J->W;
            const int rows = (int)W->rows, cols = (int)W->cols;
            const int r0 = (ci - first[k]) * chunk[k], nr = rows - r0 < chunk[k] ? rows - r0 : chunk[k];
            const float *w;
            if (W->type == MEND_TYPE_F32) {
                w = (const float *)W->data + (size_t)r0 * cols;
                if (use_xt && !mend_sgemm_xt(J->out + r0, J->ldo, s->xt, n, w, (size_t)cols, nr, cols, beta)) {
                    if (J->bias)
                        for (int i = 0; i < n; i++) {
                            float *o = J->out + (size_t)i * J->ldo + r0;
                            for (int j = 0; j < nr; j++) o[j] += J->bias[r0 + j];
                        }
                    continue;
                }
            } else {
                float *tile = s->wtile + (size_t)omp_get_thread_num() * s->wtile_floats;
                for (int r = 0; r < nr; r++)
                    mend_dequantize_row(W->type, (const uint8_t *)W->data + (size_t)(r0 + r) * W->row_bytes,
                                        tile + (size_t)r * cols, cols);
                w = tile;
            }
            matmul_forward(J->out + r0, J->ldo, x, w, J->bias ? J->bias + r0 : NULL, n, nr, cols, beta);
        }
    }
}

static void mat_forward(mend_state *s, float *out, size_t ldo, const float *x, const mend_mat *W,
                        const float *bias, int n, float beta) {
    const mm_job J = {out, ldo, W, bias};
    mats_forward(s, x, n, beta, &J, 1);
}

/* x (n, dim) += in · Wᵀ (+ bias), or with post_norms x += rmsnorm(in · Wᵀ) * post
 * (the product goes through xb, free at this point). */
static void residual_product(mend_state *s, const float *in, const mend_mat *W, const float *bias,
                             const float *post, int n) {
    const mend_config *c = &s->m->cfg;
    if (!c->post_norms) {
        mat_forward(s, s->x, (size_t)c->dim, in, W, bias, n, 1.0f);
        return;
    }
    mat_forward(s, s->xb, (size_t)c->dim, in, W, bias, n, 0.0f);
    mend_post_norm_add(c, post, s->x, s->xb, n, 0);
}

/* Input rows: token embeddings (times embd_scale) or the caller's vectors. x (n, dim) */
static void embed(mend_state *s, const int32_t *tokens, const float *embeds, int n) {
    const mend_model *m = s->m;
    const size_t dim = (size_t)m->cfg.dim;
    if (embeds) {
        memcpy(s->x, embeds, (size_t)n * dim * sizeof(float));
        return;
    }
    const mend_mat *E = &m->tok_embd;
    for (int i = 0; i < n; i++) {
        const uint8_t *row = (const uint8_t *)E->data + (size_t)tokens[i] * E->row_bytes;
        if (E->type == MEND_TYPE_F32) memcpy(s->x + i * dim, row, dim * sizeof(float));
        else mend_dequantize_row(E->type, row, s->x + i * dim, (int64_t)dim);
    }
    mend_embed_scale(&m->cfg, s->x, n);
}

/* RoPE tables for rows at arbitrary positions (the values of mend_rope_tables,
 * or with local of mend_rope_local_tables). */
static void rope_tables_rows(float *cos_t, float *sin_t, const mend_row *rows, int n, const mend_config *c,
                             int local) {
    const int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        const double freq = local ? mend_rope_local_inv_freq(c, i) : mend_rope_inv_freq(c, i);
        for (int p = 0; p < n; p++) {
            const double a = (double)rows[p].pos * freq;
            cos_t[(size_t)p * half + i] = (float)cos(a);
            sin_t[(size_t)p * half + i] = (float)sin(a);
        }
    }
}

/* Spans of a sliding-window layer l for rows at positions pos .. pos+n-1
 * (slot = position): the keys from mend_swa_first to the row itself; NULL
 * when the layer's window hides nothing of these rows. */
static const int *window_spans(mend_state *s, int l, int n, int pos) {
    const mend_config *c = &s->m->cfg;
    if (!s->swa_spans || mend_swa_first(c, l, pos + n - 1) == 0) return NULL;
    for (int i = 0; i < n; i++) {
        int *sp = s->swa_spans + (size_t)i * 6;
        sp[0] = sp[1] = sp[2] = sp[3] = 0;
        sp[4] = mend_swa_first(c, l, pos + i);
        sp[5] = pos + i + 1;
    }
    return s->swa_spans;
}

/* n <= max_batch positions written to cache slots pos .. pos+n-1; logits
 * (n_out, n_vocab) or NULL. rows == NULL: consecutive positions from pos,
 * causal over the cache. Otherwise each row has its own position and cache
 * slots (mend_forward_rows), spans holds n x 6 ints of scratch, and logits
 * are taken at the n_out rows out_rows. */
static void forward_batch(mend_state *s, const int32_t *tokens, const float *embeds, int n, int pos,
                          float *logits, int logits_all, const mend_row *rows, const int *slots, int *spans,
                          const int *out_rows, int n_out_rows) {
    const mend_model *m = s->m;
    const mend_config *c = &m->cfg;
    const int dim = c->dim, hd = c->head_dim, hid = c->hidden_dim;
    const size_t qd = s->qd, kvd = s->kvd, T = (size_t)s->n_ctx;
    int nt = omp_get_max_threads();
    if (nt > s->n_threads) nt = s->n_threads;
    /* attention multiply-adds of this batch: below ~1M, one thread is quicker */
    int64_t att_work = (int64_t)n * (pos + n);
    if (rows) {
        att_work = 0;
        for (int i = 0; i < n; i++) {
            const mend_row *r = &rows[i];
            int *sp = spans + (size_t)i * 6;
            const int self = slots ? slots[i] : pos + i;
            sp[0] = r->a0, sp[1] = r->a1, sp[2] = r->b0, sp[3] = r->b1, sp[4] = r->c0, sp[5] = self + 1;
            att_work += (r->a1 - r->a0) + (r->b1 - r->b0) + (self + 1 - r->c0);
        }
    }
    const int nt_att = att_work * c->n_heads * hd < (1 << 20) ? 1 : nt;

    embed(s, tokens, embeds, n);
    if (rows)
        for (int i = 0; i < n; i++) mend_pos_add(c, s->x + (size_t)i * dim, 1, rows[i].pos);
    else
        mend_pos_add(c, s->x, n, pos);
    if (rows) rope_tables_rows(s->rc, s->rs, rows, n, c, 0);
    else mend_rope_tables(c, s->rc, s->rs, n, pos);
    if (s->rc2 && rows) rope_tables_rows(s->rc2, s->rs2, rows, n, c, 1);
    else if (s->rc2) mend_rope_local_tables(c, s->rc2, s->rs2, n, pos);

    for (int l = 0; l < c->n_layers; l++) {
        const mend_layer *L = &m->layers[l];
        float *kl = s->kc + (size_t)l * T * kvd, *vl = s->vc + (size_t)l * T * kvd;
        /* per-row slots: keys and values go to buffers free at this point
         * (the attention output, the FFN gate) first, then to their slots
         * after RoPE */
        float *kp = slots ? s->att : kl + (size_t)pos * kvd, *vp = slots ? s->hb : vl + (size_t)pos * kvd;

        const int local = s->rc2 && mend_rope_local(c, l);
        const float *rc = local ? s->rc2 : s->rc, *rs = local ? s->rs2 : s->rs;

        mend_norm_forward(c, s->xb, s->x, L->attn_norm, L->attn_norm_b, n, 0);
        const mm_job qkv[3] = {{s->q, qd, &L->wq, L->bq}, {kp, kvd, &L->wk, L->bk}, {vp, kvd, &L->wv, L->bv}};
        mats_forward(s, s->xb, n, 0.0f, qkv, 3);
        mend_qk_norm(c, L, s->q, qd, kp, kvd, n);
        rope_forward(s->q, n, qd, c->n_heads, hd, rc, rs, c->rope_type);
        rope_forward(kp, n, kvd, c->n_kv_heads, hd, rc, rs, c->rope_type);
        if (slots)
            for (int i = 0; i < n; i++) {
                memcpy(kl + (size_t)slots[i] * kvd, kp + (size_t)i * kvd, kvd * sizeof(float));
                memcpy(vl + (size_t)slots[i] * kvd, vp + (size_t)i * kvd, kvd * sizeof(float));
            }
        const int *sp = rows ? spans : window_spans(s, l, n, pos);
        if (sp)
            attention_forward_spans(s->att, s->q, kl, vl, n, sp, c->n_heads, c->n_kv_heads, hd, c->attn_softcap,
                                    s->sc, s->n_ctx, nt_att);
        else
            attention_forward(s->att, s->q, kl, vl, n, pos, c->n_heads, c->n_kv_heads, hd, c->attn_softcap, s->sc,
                              s->n_ctx, nt_att);
        residual_product(s, s->att, &L->wo, L->bo, L->post_attn_norm, n);

        mend_norm_forward(c, s->xb, s->x, L->ffn_norm, L->ffn_norm_b, n, 0);
        /* without a gate (ffn_plain) only the up product runs */
        const mm_job gu[2] = {{s->hb, (size_t)hid, &L->w_gate, NULL}, {s->hb2, (size_t)hid, &L->w_up, L->b_up}};
        const int gated = L->w_gate.data != NULL;
        mats_forward(s, s->xb, n, 0.0f, gu + !gated, 1 + gated);
        mend_glu_forward(c, s->hb, s->hb, s->hb2, (int64_t)n * hid, 0);
        residual_product(s, s->hb, &L->w_down, L->b_down, L->post_ffn_norm, n);
    }

    if (!logits) return;
    if (out_rows) {
        /* gather the rows to score (hb is free now and holds >= dim floats per row) */
        for (int k = 0; k < n_out_rows; k++)
            memcpy(s->hb + (size_t)k * dim, s->x + (size_t)out_rows[k] * dim, (size_t)dim * sizeof(float));
        mend_norm_forward(c, s->xb, s->hb, m->out_norm, m->out_norm_b, n_out_rows, 0);
        mat_forward(s, logits, (size_t)c->n_vocab, s->xb, &m->output, NULL, n_out_rows, 0.0f);
        mend_logit_softcap(c, logits, n_out_rows);
        return;
    }
    const int first = logits_all ? 0 : n - 1, n_out = n - first;
    mend_norm_forward(c, s->xb, s->x + (size_t)first * dim, m->out_norm, m->out_norm_b, n_out, 0);
    mat_forward(s, logits, (size_t)c->n_vocab, s->xb, &m->output, NULL, n_out, 0.0f);
    mend_logit_softcap(c, logits, n_out);
}

int mend_forward(mend_state *s, const int32_t *tokens, const float *embeds, int n, int pos,
                 float *logits, int logits_all) {
    if (!s) return mend_set_error(MEND_EINVAL, "mend_forward: no state");
    if ((tokens == NULL) == (embeds == NULL))
        return mend_set_error(MEND_EINVAL, "mend_forward: pass exactly one of tokens and embeds");
    if (n < 1) return mend_set_error(MEND_EINVAL, "mend_forward: n is %d, expected >= 1", n);
    if (pos < 0 || pos > s->n_ctx || n > s->n_ctx - pos)
        return mend_set_error(MEND_ERANGE, "mend_forward: positions [%d, %lld) do not fit the context of %d",
                              pos, (long long)pos + n, s->n_ctx);
    int rc = mend_pos_check(&s->m->cfg, "mend_forward", pos, n);
    if (rc) return rc;
    const int n_vocab = s->m->cfg.n_vocab;
    if (tokens) {
        for (int i = 0; i < n; i++)
            if (tokens[i] < 0 || tokens[i] >= n_vocab)
                return mend_set_error(MEND_EINVAL, "mend_forward: token %d (at index %d) is outside the "
                                      "vocabulary of %d", tokens[i], i, n_vocab);
    }
    const int B = s->max_batch;
    const size_t dim = (size_t)s->m->cfg.dim;
    /* BLAS runs single-threaded inside mend's OpenMP threads (see
     * mat_forward); its own thread count is restored on the way out. */
    const int blas_threads = openblas_get_num_threads();
    if (blas_threads != 1) openblas_set_num_threads(1);
    for (int c0 = 0; c0 < n; c0 += B) {
        const int nb = n - c0 < B ? n - c0 : B;
        const int last = c0 + nb == n;
        float *lg = NULL;
        if (logits) lg = logits_all ? logits + (size_t)c0 * n_vocab : (last ? logits : NULL);
        forward_batch(s, tokens ? tokens + c0 : NULL, embeds ? embeds + (size_t)c0 * dim : NULL, nb, pos + c0,
                      lg, logits_all, NULL, NULL, NULL, NULL, 0);
    }
    if (blas_threads != 1) openblas_set_num_threads(blas_threads);
    return 0;
}

/* Does some layer's window start after position 0 for a query at pos? Until
 * then a row sees every key it names (keys sit at positions >= 0), so its
 * spans need no window; after that, which keys fall out depends on their
 * positions, which rows do not give. */
static int window_cuts(const mend_config *c, int pos) {
    for (int l = 0; l < c->n_layers; l++)
        if (mend_swa_first(c, l, pos) > 0) return 1;
    return 0;
}

static int forward_rows(mend_state *s, const int32_t *tokens, int n, int slot0, const int *slots,
                        const mend_row *rows, float *logits, const int *out_rows, int n_out) {
    const char *fn = slots ? "mend_forward_rows_at" : "mend_forward_rows";
    if (!s) return mend_set_error(MEND_EINVAL, "%s: no state", fn);
    if (!tokens || !rows) return mend_set_error(MEND_EINVAL, "%s: tokens and rows are required", fn);
    if (n < 1 || n > s->max_batch)
        return mend_set_error(MEND_EINVAL, "%s: n is %d, expected 1..%d (the state's max_batch)", fn, n,
                              s->max_batch);
    if (!slots && (slot0 < 0 || slot0 > s->n_ctx || n > s->n_ctx - slot0))
        return mend_set_error(MEND_ERANGE, "%s: slots [%d, %lld) do not fit the context of %d", fn, slot0,
                              (long long)slot0 + n, s->n_ctx);
    if (s->m->cfg.head_dim > 256)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: head_dim %d (at most 256)", fn, s->m->cfg.head_dim);
    if (slots && (s->kvd > s->qd || s->kvd > (size_t)s->m->cfg.hidden_dim))
        return mend_set_error(MEND_EUNSUPPORTED, "%s: kv width %zu exceeds the query width %zu or the FFN width %d",
                              fn, s->kvd, s->qd, s->m->cfg.hidden_dim);
    if (n_out < 0 || n_out > n || (n_out > 0 && (!out_rows || !logits)))
        return mend_set_error(MEND_EINVAL, "%s: %d logits rows of %d", fn, n_out, n);
    const int n_vocab = s->m->cfg.n_vocab;
    for (int i = 0; i < n; i++) {
        const mend_row *r = &rows[i];
        const int self = slots ? slots[i] : slot0 + i;
        if (tokens[i] < 0 || tokens[i] >= n_vocab)
            return mend_set_error(MEND_EINVAL, "%s: token %d (at index %d) is outside the vocabulary of %d", fn,
                                  tokens[i], i, n_vocab);
        if (slots) {
            if (self < 0 || self >= s->n_ctx)
                return mend_set_error(MEND_ERANGE, "%s: row %d's slot %d is outside the context of %d", fn, i,
                                      self, s->n_ctx);
            for (int j = 0; j < i; j++)
                if (slots[j] == self)
                    return mend_set_error(MEND_EINVAL, "%s: rows %d and %d both write slot %d", fn, j, i, self);
        }
        const int64_t seen = (int64_t)(r->a1 - r->a0) + (r->b1 - r->b0) + (self + 1 - r->c0);
        if (r->pos < 0 || r->a0 < 0 || r->a1 < r->a0 || r->a1 > self || r->b0 < 0 || r->b1 < r->b0 ||
            r->b1 > self || r->c0 < 0 || r->c0 > self || seen > s->n_ctx)
            return mend_set_error(MEND_EINVAL, "%s: row %d (slot %d, position %d) attends to "
                                  "[%d,%d) [%d,%d) [%d,%d]: ranges must lie before the row's slot",
                                  fn, i, self, r->pos, r->a0, r->a1, r->b0, r->b1, r->c0, self);
        const int rc = mend_pos_check(&s->m->cfg, fn, r->pos, 1);
        if (rc) return rc;
        if (window_cuts(&s->m->cfg, r->pos))
            return mend_set_error(MEND_EUNSUPPORTED, "%s: row %d is at position %d, where the sliding window of "
                                  "the model (%s) no longer reaches position 0; rows with their own positions "
                                  "are implemented only before that", fn, i, r->pos, s->m->cfg.arch);
    }
    for (int k = 0; k < n_out; k++)
        if (out_rows[k] < 0 || out_rows[k] >= n || (k > 0 && out_rows[k] <= out_rows[k - 1]))
            return mend_set_error(MEND_EINVAL, "%s: logits rows must increase within [0, %d)", fn, n);
    int *spans = malloc((size_t)n * 6 * sizeof *spans);
    if (!spans) return mend_set_error(MEND_ENOMEM, "%s: out of memory", fn);
    const int blas_threads = openblas_get_num_threads();
    if (blas_threads != 1) openblas_set_num_threads(1);
    forward_batch(s, tokens, NULL, n, slots ? 0 : slot0, n_out ? logits : NULL, 0, rows, slots, spans, out_rows,
                  n_out);
    if (blas_threads != 1) openblas_set_num_threads(blas_threads);
    free(spans);
    return 0;
}

int mend_forward_rows(mend_state *s, const int32_t *tokens, int n, int slot0, const mend_row *rows,
                      float *logits, const int *out_rows, int n_out) {
    return forward_rows(s, tokens, n, slot0, NULL, rows, logits, out_rows, n_out);
}

int mend_forward_rows_at(mend_state *s, const int32_t *tokens, int n, const int *slots, const mend_row *rows,
                         float *logits, const int *out_rows, int n_out) {
    if (!slots) return mend_set_error(MEND_EINVAL, "mend_forward_rows_at: slots are required");
    return forward_rows(s, tokens, n, 0, slots, rows, logits, out_rows, n_out);
}
