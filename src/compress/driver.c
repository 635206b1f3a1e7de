/* `mend compress` end to end (driver.h): load, calibrate, quantize layer by
 * layer, checkpoint, write the GGUF. */
#include "compress/driver.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compress/calib.h"
#include "compress/gptq.h"
#include "compress/hessian.h"
#include "compress/sparsegpt.h"
#include "io/gguf.h"
#include "kernels/quants.h"
#include "kernels/sgemm.h"
#include "model/layer.h"
#include "model/model.h"
#include "util/util.h"

#define N_MATS 7
static const char *const MAT_NAMES[N_MATS] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                              "ffn_gate", "ffn_up", "ffn_down"};
enum { M_Q, M_K, M_V, M_O, M_G, M_U, M_D };
#define CKPT_HIDDEN "mend.ckpt.hidden"
#define RECIPE_SEED 0x6d656e642d726331ull   /* "mend-rc1" */

static mend_mat *layer_mat(mend_layer *L, int i) {
    mend_mat *m[N_MATS] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    return m[i];
}

int mend_compress_file_type(uint32_t t) {
    switch (t) {
    case MEND_TYPE_F32: return 0;
    case MEND_TYPE_F16: return 1;
    case MEND_TYPE_Q4_0: return 2;
    case MEND_TYPE_Q4_1: return 3;
    case MEND_TYPE_Q8_0: return 7;
    case MEND_TYPE_Q5_0: return 8;
    case MEND_TYPE_Q5_1: return 9;
    case MEND_TYPE_Q2_K: return 10;
    case MEND_TYPE_Q3_K: return 11;   /* Q3_K_S: every matrix q3_K (or its fallback) */
    case MEND_TYPE_Q4_K: return 14;   /* Q4_K_S */
    case MEND_TYPE_Q5_K: return 16;   /* Q5_K_S */
    case MEND_TYPE_Q6_K: return 18;
    case MEND_TYPE_BF16: return 32;
    default: return -1;
    }
}

/* One quantized matrix of the output. */
typedef struct qmat {
    mend_qfmt fmt;          /* after fallback */
    int64_t rows, cols;
    size_t row_bytes, bytes;
    uint8_t *packed;        /* NULL: the layer has no such matrix (ffn_gate with cfg.ffn_plain, opt) */
} qmat;

typedef struct ctx {
    const mend_compress_opts *o;
    mend_model *m;
    const mend_config *c;
    const char *src;
    qmat *q;                /* n_layers × N_MATS */
    char sig[512];
    /* GPTQ state */
    int N, T;
    float *X;               /* N × T × dim */
    float *A;               /* N × T × max(qd, hidden): attention outputs, then FFN activations */
    size_t a_ld;
    int64_t done, total;
    int stopped;
    int diag_only;   /* Wanda without GPTQ reads only diag H: skip the rest of the Gram */
    int sink;        /* weight of each window's first token in the Hessians (>= 1) */
    int layer;
} ctx;


/* Identity of everything the output depends on. */
static void make_signature(ctx *C) {
    const mend_compress_opts *o = C->o;
    const mend_map *mp = &C->m->gguf->map;
    uint64_t h = 0xcbf29ce484222325ULL;
    const size_t k = mp->size < 65536 ? mp->size : 65536;
    h = mend_fnv1a(h, mp->data, k);
    h = mend_fnv1a(h, (const uint8_t *)mp->data + mp->size - k, k);
    char fmt[64];
    mend_qfmt_name(&o->fmt, fmt, sizeof fmt);
    const uint64_t ch = o->calib ? mend_calib_hash(o->calib, (size_t)o->nsamples * (size_t)o->seqlen) : 0;
    snprintf(C->sig, sizeof C->sig,
             "mend-ckpt-1 src_bytes=%zu src_fnv=%016llx method=%d fmt=%s embd=%d damp=%.17g block=%d act=%d imp=%d "
             "n=%d T=%d calib=%016llx sink=%d",
             mp->size, (unsigned long long)h, o->method, fmt, o->embd_type, o->damp, o->block, o->act_order,
             o->fit_importance, o->nsamples, o->seqlen, (unsigned long long)ch, C->sink);
    if (o->prune && o->prune->method != MEND_PRUNE_NONE) {
        char sp[32];
        const size_t len = strlen(C->sig);
        snprintf(C->sig + len, sizeof C->sig - len, " prune=%s sparsity=%s joint=%d", mend_prune_method_name(o->prune->method),
                 mend_sparsity_name(&o->prune->sp, sp, sizeof sp), o->prune->joint);
    }
}

/* Passes over the calibration samples: GPTQ, or pruning that needs activations. */
static int calibrated(const mend_compress_opts *o) {
    return o->method == MEND_COMPRESS_GPTQ || mend_prune_needs_calib(o->prune);
}

static int progress(ctx *C, const char *stage, double loss) {
    if (!C->o->progress) return 0;
    mend_compress_event ev = {C->layer, C->c->n_layers, stage, C->done, C->total, loss};
    return C->o->progress(C->o->progress_user, &ev);
}

/* ---- plan ---------------------------------------------------------------- */

static int plan(ctx *C, mend_compress_result *res) {
    const int nl = C->c->n_layers;
    C->q = calloc((size_t)nl * N_MATS, sizeof *C->q);
    if (!C->q) return mend_set_error(MEND_ENOMEM, "compress: out of memory");
    for (int l = 0; l < nl; l++)
        for (int i = 0; i < N_MATS; i++) {
            qmat *Q = &C->q[l * N_MATS + i];
            const mend_mat *W = layer_mat(&C->m->layers[l], i);
            if (!W->data) continue;   /* an FFN without a gate */
            Q->rows = W->rows;
            Q->cols = W->cols;
            int rc = mend_qfmt_fallback(&C->o->fmt, W->cols, &Q->fmt);
            if (rc) return mend_error_prefix(rc, "%s: blk.%d.%s.weight", C->src, l, MAT_NAMES[i]);
            if (Q->fmt.type != C->o->fmt.type) {
                res->n_fallback++;
                res->fallback_type = Q->fmt.type;
            }
            Q->row_bytes = mend_qfmt_row_size(&Q->fmt, W->cols);
            if (!Q->row_bytes || !mend_mul_ok(Q->row_bytes, (size_t)W->rows, &Q->bytes))
                return mend_set_error(MEND_ERANGE, "%s: blk.%d.%s.weight: packed size overflows", C->src, l,
                                      MAT_NAMES[i]);
            if (!(Q->packed = malloc(Q->bytes)))
                return mend_set_error(MEND_ENOMEM, "compress: out of memory for blk.%d.%s.weight", l, MAT_NAMES[i]);
            res->n_quantized += W->rows * W->cols;
            res->bytes_quantized += (int64_t)Q->bytes;
        }
    return 0;
}

static void qmat_ne(const qmat *Q, int64_t ne[2]) {
    ne[0] = Q->fmt.type == MEND_QFMT_GENERIC ? (int64_t)Q->row_bytes : Q->cols;
    ne[1] = Q->rows;
}

/* ---- checkpoint ------------------------------------------------------------ */

static int ckpt_write(ctx *C, int layers_done) {
    mend_gguf_writer *w = NULL;
    int rc = mend_gguf_writer_init(&w);
    if (rc) return rc;
    char name[96];
    if ((rc = mend_gguf_writer_set_str(w, "mend.ckpt.signature", C->sig))) goto out;
    if ((rc = mend_gguf_writer_set_u32(w, "mend.ckpt.layers_done", (uint32_t)layers_done))) goto out;
    for (int l = 0; l < layers_done; l++)
        for (int i = 0; i < N_MATS; i++) {
            const qmat *Q = &C->q[l * N_MATS + i];
            if (!Q->packed) continue;
            int64_t ne[2];
            qmat_ne(Q, ne);
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, MAT_NAMES[i]);
            if ((rc = mend_gguf_writer_add_tensor(w, name, mend_qfmt_gguf_type(&Q->fmt), 2, ne, Q->packed, Q->bytes)))
                goto out;
        }
    if (C->X) {
        const int64_t ne[2] = {C->c->dim, (int64_t)C->N * C->T};
        if ((rc = mend_gguf_writer_add_tensor(w, CKPT_HIDDEN, MEND_TYPE_F32, 2, ne, C->X,
                                              (size_t)ne[0] * (size_t)ne[1] * sizeof(float))))
            goto out;
    }
    rc = mend_gguf_writer_write(w, C->o->checkpoint);
out:
    mend_gguf_writer_free(w);
    return rc ? mend_error_prefix(rc, "checkpoint %s", C->o->checkpoint) : 0;
}

/* Load a matching checkpoint; *layers_done = 0 when there is none. */
static int ckpt_load(ctx *C, int *layers_done) {
    *layers_done = 0;
    const char *path = C->o->checkpoint;
    if (!path || !mend_file_exists(path)) return 0;
    mend_gguf *g = NULL;
    int rc = mend_gguf_open(&g, path);
    if (rc) return mend_error_prefix(rc, "checkpoint %s (delete it to start over)", path);
    const char *sig = NULL;
    int64_t done = 0;
    if ((rc = mend_gguf_get_str(g, "mend.ckpt.signature", &sig)) ||
        (rc = mend_gguf_get_int(g, "mend.ckpt.layers_done", &done)))
        goto out;
    if (strcmp(sig, C->sig) != 0) {
        rc = mend_set_error(MEND_EINVAL, "checkpoint %s was made from another source, options or calibration "
                            "(its key mend.ckpt.signature is '%s', this run's is '%s'); delete it to start over",
                            path, sig, C->sig);
        goto out;
    }
    if (done < 0 || done > C->c->n_layers) {
        rc = mend_set_error(MEND_EFORMAT, "checkpoint %s: mend.ckpt.layers_done is %lld, expected 0..%d", path,
                            (long long)done, C->c->n_layers);
        goto out;
    }
    char name[96];
    for (int l = 0; l < (int)done; l++)
        for (int i = 0; i < N_MATS; i++) {
            qmat *Q = &C->q[l * N_MATS + i];
            if (!Q->packed) continue;
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, MAT_NAMES[i]);
            const gguf_tensor *t = mend_gguf_find_tensor(g, name);
            if (!t || t->nbytes != Q->bytes || t->type != mend_qfmt_gguf_type(&Q->fmt)) {
                rc = mend_set_error(MEND_EFORMAT, "checkpoint %s: tensor '%s' is missing or has the wrong type or "
                                    "size (%zu bytes expected)", path, name, Q->bytes);
                goto out;
            }
            memcpy(Q->packed, t->data, Q->bytes);
        }
    if (C->X) {
        const gguf_tensor *t = mend_gguf_find_tensor(g, CKPT_HIDDEN);
        const size_t want = (size_t)C->N * C->T * (size_t)C->c->dim * sizeof(float);
        if (!t || t->type != MEND_TYPE_F32 || t->nbytes != want) {
            rc = mend_set_error(MEND_EFORMAT, "checkpoint %s: tensor '%s' is missing or not f32 of %zu bytes", path,
                                CKPT_HIDDEN, want);
            goto out;
        }
        memcpy(C->X, t->data, want);
    }
    *layers_done = (int)done;
out:
    mend_gguf_close(g);
    return rc;
}

/* ---- pruning (sparsegpt.h) ------------------------------------------------------ */

/* Matrix i of layer l pruned by o->prune, then quantized by GPTQ keeping the
 * mask (or jointly with SparseGPT), or rounded / converted with method RTN;
 * H0 is NULL without calibration. W becomes Ŵ. */
static int prune_mat(ctx *C, int l, int i, float *W, const double *H0, double *loss) {
    qmat *Q = &C->q[l * N_MATS + i];
    mend_gptq_opts go = {Q->fmt, C->o->damp, C->o->block, C->o->act_order, C->o->fit_importance};
    int rc = mend_prune_compress(W, Q->rows, Q->cols, H0, C->o->prune, &go, C->o->method == MEND_COMPRESS_GPTQ,
                                 Q->packed, loss);
    return rc ? mend_error_prefix(rc, "%s: blk.%d.%s.weight", C->src, l, MAT_NAMES[i]) : 0;
}

/* ---- RTN --------------------------------------------------------------------- */

static int rtn_layer(ctx *C, int l, float *buf) {
    for (int i = 0; i < N_MATS; i++) {
        qmat *Q = &C->q[l * N_MATS + i];
        const mend_mat *W = layer_mat(&C->m->layers[l], i);
        if (!Q->packed) continue;
        if (C->o->prune && C->o->prune->method != MEND_PRUNE_NONE) {   /* magnitude: no calibration */
            memcpy(buf, W->data, (size_t)Q->rows * Q->cols * sizeof(float));
            int rc = prune_mat(C, l, i, buf, NULL, NULL);
            if (rc) return rc;
            continue;
        }
        int rc = 0;
        if (Q->fmt.type == MEND_TYPE_F32 || Q->fmt.type == MEND_TYPE_F16 || Q->fmt.type == MEND_TYPE_BF16) {
            /* conversion: row by row, no grid */
            for (int64_t r = 0; r < Q->rows && !rc; r++)
                rc = mend_quantize_row(Q->fmt.type, (const float *)W->data + r * Q->cols, Q->packed + (size_t)r * Q->row_bytes,
                                       Q->cols, NULL);
        } else {
            memcpy(buf, W->data, (size_t)Q->rows * Q->cols * sizeof(float));
            rc = mend_rtn_quantize(buf, Q->rows, Q->cols, &Q->fmt, Q->packed);
        }
        if (rc) return mend_error_prefix(rc, "%s: blk.%d.%s.weight", C->src, l, MAT_NAMES[i]);
    }
    return 0;
}

/* ---- GPTQ ---------------------------------------------------------------------- */

enum { S_QKV, S_O, S_GU, S_DOWN, S_NEXT, N_STAGES };
static const char *const STAGE_NAMES[N_STAGES] = {"qkv", "o", "gate/up", "down", "next"};

/* Per-thread scratch. */
typedef struct tscratch {
    mend_layer_ws ws;
    float *xb;      /* T × dim */
    float *syrk;    /* nmax × nmax */
    float *ht;      /* nmax × T: the Hessian input transposed (own-kernel Gram), or NULL */
    float *gx;      /* 32 × T, 64-byte aligned: one packed block of it */
} tscratch;

/* Upper triangle (with the diagonal) of S->syrk (hn, hn) = xᵀx for x (T, hn),
 * as cblas_ssyrk would. With mend's sgemm: x is transposed once into
 * ht (hn, T), and each 32-row block of the result is one product of that
 * block (packed straight from x's columns) with ht's rows from the block on,
 * so only the upper block triangle is computed (syrk's FLOPs). diag_only:
 * just the diagonal (sums of squares), all Wanda reads. */
static void gram_upper(tscratch *S, const float *x, int T, int64_t hn, int diag_only) {
    if (diag_only) {
        for (int64_t j = 0; j < hn; j++) S->syrk[j * hn + j] = 0.0f;
        for (int t = 0; t < T; t++) {
            const float *r = x + (size_t)t * hn;
            for (int64_t j = 0; j < hn; j++) S->syrk[j * hn + j] += r[j] * r[j];
        }
        return;
    }
    if (S->ht) {
        for (int t0 = 0; t0 < T; t0 += 16)
            for (int64_t j0 = 0; j0 < hn; j0 += 16) {
                const int t1 = t0 + 16 < T ? t0 + 16 : T;
                const int64_t j1 = j0 + 16 < hn ? j0 + 16 : hn;
                for (int64_t j = j0; j < j1; j++)
                    for (int t = t0; t < t1; t++) S->ht[j * T + t] = x[(size_t)t * hn + j];
            }
        int ok = 1;
        for (int64_t i0 = 0; i0 < hn && ok; i0 += 32) {
            const int nr = hn - i0 < 32 ? (int)(hn - i0) : 32;
            for (int t = 0; t < T; t++) {
                float *d = S->gx + (size_t)t * 32;
                const float *src = x + (size_t)t * hn + i0;
                int r = 0;
                for (; r < nr; r++) d[r] = src[r];
                for (; r < 32; r++) d[r] = 0.0f;
            }
            ok = !mend_sgemm_xt(S->syrk + i0 * hn + i0, (size_t)hn, S->gx, nr, S->ht + i0 * T, (size_t)T,
                                (int)(hn - i0), T, 0.0f);
        }
        if (ok) return;
    }
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)hn, T, 1.0f, x, (int)hn, 0.0f, S->syrk, (int)hn);
}

/* One pass over every sample for stage st of layer l with the current
 * (partly quantized) layer Lq; adds each sample's xᵀx to H in sample order. */
static void run_pass(ctx *C, int st, const mend_layer *Lq, tscratch *ts, mend_hessian *H) {
    const mend_config *c = C->c;
    const int T = C->T, dim = c->dim;
    const size_t qd = (size_t)c->n_heads * c->head_dim;
#pragma omp parallel
    {
        tscratch *S = &ts[omp_get_thread_num()];
#pragma omp for ordered schedule(dynamic, 1)
        for (int s = 0; s < C->N; s++) {
            int stopped;
#pragma omp atomic read
            stopped = C->stopped;
            float *x = C->X + (size_t)s * T * dim;
            float *a = C->A + (size_t)s * T * C->a_ld;
            const float *hin = NULL;
            int64_t hn = 0;
            switch (stopped ? -1 : st) {
            case -1: break;
            case S_QKV:
                mend_layer_attn_norm(c, Lq, x, T, S->xb);
                hin = S->xb, hn = dim;
                break;
            case S_O:
                mend_layer_attn_norm(c, Lq, x, T, S->xb);
                mend_layer_attn_core(c, Lq, C->layer, S->xb, T, &S->ws, a);
                hin = a, hn = (int64_t)qd;
                break;
            case S_GU:
                mend_layer_attn_out(c, Lq, a, T, &S->ws, x);
                mend_layer_ffn_norm(c, Lq, x, T, S->xb);
                hin = S->xb, hn = dim;
                break;
            case S_DOWN:
                mend_layer_ffn_norm(c, Lq, x, T, S->xb);
                mend_layer_ffn_act(c, Lq, S->xb, T, &S->ws, a);
                hin = a, hn = c->hidden_dim;
                break;
            case S_NEXT:
                mend_layer_ffn_out(c, Lq, a, T, &S->ws, x);
                break;
            }
            if (hin) gram_upper(S, hin, T, hn, C->diag_only);
#pragma omp ordered
            {
                if (hin) {
                    /* the first token's extra weight: (sink - 1) x_0 x_0ᵀ */
                    const double ex = (double)(C->sink - 1);
                    for (int64_t i = 0; i < hn; i++) {
                        const double xi = ex * (double)hin[i];
                        for (int64_t j = i; j < (C->diag_only ? i + 1 : hn); j++)
                            H->sum[i * hn + j] += (double)S->syrk[i * hn + j] + xi * (double)hin[j];
                    }
                    H->nsamples += T + C->sink - 1;
                }
                C->done++;
                if (!stopped && progress(C, STAGE_NAMES[st], 0.0)) {
#pragma omp atomic write
                    C->stopped = 1;
                }
            }
        }
    }
}

/* GPTQ on matrix i of layer l: W (f32 copy, replaced by Ŵ) with Hessian H0
 * (copied into Hs, which GPTQ overwrites). */
static int gptq_mat(ctx *C, int l, int i, float *W, const double *H0, double *Hs, double *loss) {
    qmat *Q = &C->q[l * N_MATS + i];
    if (C->o->prune && C->o->prune->method != MEND_PRUNE_NONE) return prune_mat(C, l, i, W, H0, loss);
    const size_t nn = (size_t)Q->cols * Q->cols;
    memcpy(Hs, H0, nn * sizeof(double));
    mend_gptq_opts go = {Q->fmt, C->o->damp, C->o->block, C->o->act_order, C->o->fit_importance};
    mend_gptq_stats gs;
    int rc = mend_gptq_quantize(W, Q->rows, Q->cols, Hs, &go, Q->packed, &gs);
    if (rc) return mend_error_prefix(rc, "%s: blk.%d.%s.weight", C->src, l, MAT_NAMES[i]);
    *loss += gs.loss;
    return 0;
}

static int gptq_run(ctx *C, int start) {
    const mend_config *c = C->c;
    const int nl = c->n_layers, dim = c->dim, hid = c->hidden_dim;
    const int64_t qd = (int64_t)c->n_heads * c->head_dim;
    int64_t nmax = dim > qd ? dim : qd;
    if (hid > nmax) nmax = hid;
    const int nt = omp_get_max_threads() > 0 ? omp_get_max_threads() : 1;
    int rc = 0;
    tscratch *ts = calloc((size_t)nt, sizeof *ts);
    float *Wbuf[N_MATS] = {0};
    double *H0 = malloc((size_t)nmax * nmax * sizeof(double)), *Hs = malloc((size_t)nmax * nmax * sizeof(double));
    mend_hessian H[4];
    memset(H, 0, sizeof H);
    if (!ts || !H0 || !Hs) {
        rc = mend_set_error(MEND_ENOMEM, "compress: out of memory for GPTQ scratch");
        goto out;
    }
    for (int t = 0; t < nt; t++) {
        if ((rc = mend_layer_ws_init(&ts[t].ws, c, C->T))) goto out;
        ts[t].xb = malloc((size_t)C->T * dim * sizeof(float));
        ts[t].syrk = malloc((size_t)nmax * nmax * sizeof(float));
        if (mend_sgemm_available()) {
            ts[t].ht = malloc((size_t)nmax * C->T * sizeof(float));
            ts[t].gx = aligned_alloc(64, (size_t)32 * C->T * sizeof(float));
            if (!ts[t].ht || !ts[t].gx) {
                free(ts[t].ht), free(ts[t].gx);
                ts[t].ht = ts[t].gx = NULL;   /* fall back to BLAS */
            }
        }
        if (!ts[t].xb || !ts[t].syrk) {
            rc = mend_set_error(MEND_ENOMEM, "compress: out of memory for per-thread scratch");
            goto out;
        }
    }
    for (int i = 0; i < N_MATS; i++) {
        const mend_mat *W = layer_mat(&C->m->layers[0], i);
        if (!W->data) continue;   /* an FFN without a gate */
        if (!(Wbuf[i] = malloc((size_t)W->rows * W->cols * sizeof(float)))) {
            rc = mend_set_error(MEND_ENOMEM, "compress: out of memory for weight copies");
            goto out;
        }
    }
    const int64_t hn[4] = {dim, qd, dim, hid};
    for (int k = 0; k < 4; k++)
        if ((rc = mend_hessian_init(&H[k], hn[k]))) goto out;

    const int blas_threads = openblas_get_num_threads();
    for (int l = start; l < nl && !rc; l++) {
        C->layer = l;
        /* Lq: this layer with f32 copies that become Ŵ as they are quantized */
        mend_layer Lq = C->m->layers[l];
        for (int i = 0; i < N_MATS; i++) {
            mend_mat *W = layer_mat(&Lq, i);
            if (!Wbuf[i]) continue;
            memcpy(Wbuf[i], W->data, (size_t)W->rows * W->cols * sizeof(float));
            W->data = Wbuf[i];
        }
        double loss = 0.0;
        for (int st = 0; st < N_STAGES && !rc; st++) {
            mend_hessian *h = st < 4 ? &H[st] : NULL;
            if (h) {
                memset(h->sum, 0, (size_t)h->n * h->n * sizeof(double));
                h->nsamples = 0;
            }
            openblas_set_num_threads(1);
            run_pass(C, st, &Lq, ts, h);
            openblas_set_num_threads(blas_threads);
            if (C->stopped) {
                rc = mend_set_error(MEND_EINVAL, "compression cancelled during layer %d", l);
                break;
            }
            if (!h) break;
            if ((rc = mend_hessian_get(h, H0))) break;
            static const int mats[4][3] = {{M_Q, M_K, M_V}, {M_O, -1, -1}, {M_G, M_U, -1}, {M_D, -1, -1}};
            for (int j = 0; j < 3 && !rc && mats[st][j] >= 0; j++)
                if (Wbuf[mats[st][j]]) rc = gptq_mat(C, l, mats[st][j], Wbuf[mats[st][j]], H0, Hs, &loss);
        }
        if (rc) break;
        if (C->o->checkpoint && (rc = ckpt_write(C, l + 1))) break;
        if (progress(C, "layer done", loss))
            rc = mend_set_error(MEND_EINVAL, "compression stopped after layer %d", l);
    }
out:
    for (int t = 0; ts && t < nt; t++) {
        mend_layer_ws_free(&ts[t].ws);
        free(ts[t].xb);
        free(ts[t].syrk);
        free(ts[t].ht);
        free(ts[t].gx);
    }
    free(ts);
    for (int i = 0; i < N_MATS; i++) free(Wbuf[i]);
    for (int k = 0; k < 4; k++) mend_hessian_free(&H[k]);
    free(H0);
    free(Hs);
    return rc;
}

/* ---- output -------------------------------------------------------------------- */

/* token_embd / output in embd_type (RTN from the f32 weights). */
static int convert_embd(ctx *C, const gguf_tensor *t, const mend_mat *f32, uint32_t type, void **buf, size_t *bytes,
                        uint32_t *out_type) {
    mend_qfmt f = mend_qfmt_ggml(type), g;
    int rc = mend_qfmt_fallback(&f, f32->cols, &g);
    if (rc) return mend_error_prefix(rc, "%s: tensor '%s'", C->src, t->name);
    const size_t rs = mend_row_size(g.type, f32->cols);
    if (!rs || !mend_mul_ok(rs, (size_t)f32->rows, bytes)) return mend_set_error(MEND_ERANGE, "%s: size", t->name);
    uint8_t *p = malloc(*bytes);
    if (!p) return mend_set_error(MEND_ENOMEM, "compress: out of memory for '%s'", t->name);
    int bad = 0;
#pragma omp parallel for schedule(dynamic, 64) reduction(| : bad)
    for (int64_t r = 0; r < f32->rows; r++)
        if (mend_quantize_row(g.type, (const float *)f32->data + r * f32->cols, p + (size_t)r * rs, f32->cols, NULL))
            bad = 1;
    if (bad) {
        free(p);
        return mend_set_error(MEND_EINVAL, "%s: tensor '%s' could not be quantized to %s", C->src, t->name,
                              mend_type_name(g.type));
    }
    *buf = p;
    *out_type = g.type;
    return 0;
}

/* The source's fingerprint, and the recipe: a hash of the compressor's
 * format version, that fingerprint and every mend.compress.* key set so far
 * (the settings). The source's file name is recorded but not hashed. */
static int write_recipe(ctx *C, mend_gguf_writer *w) {
    mend_fp src;
    char hx[17];
    int rc = mend_model_fingerprint(C->m, &src);
    if (rc) return rc;
    mend_fp_hex(src.model, hx);
    if ((rc = mend_gguf_writer_set_str(w, "mend.compress.source_fingerprint", hx))) return rc;
    uint64_t h = mend_hash_step(RECIPE_SEED, MEND_COMPRESS_FORMAT);
    h = mend_hash_step(h, src.model);
    h = mend_hash_step(h, mend_gguf_writer_hash_keys(w, "mend.compress.", RECIPE_SEED));
    mend_fp_hex(mend_hash_fmix(h), hx);
    const char *base = strrchr(C->src, '/');
    base = base ? base + 1 : C->src;
    if ((rc = mend_gguf_writer_set_str(w, "mend.compress.source", base))) return rc;
    return mend_gguf_writer_set_str(w, "mend.compress.recipe", hx);
}

static int write_output(ctx *C, const char *out, mend_compress_result *res) {
    const mend_gguf *g = C->m->gguf;
    const mend_compress_opts *o = C->o;
    mend_gguf_writer *w = NULL;
    void **owned = calloc(g->n_tensors + 1, sizeof *owned);
    int n_owned = 0;
    int rc = owned ? mend_gguf_writer_init(&w) : mend_set_error(MEND_ENOMEM, "compress: out of memory");
    if (rc) goto out;
    if ((rc = mend_gguf_writer_copy_kvs(w, g))) goto out;
    /* a compressed source's record of how it was made does not describe this file */
    if ((rc = mend_gguf_writer_remove_prefix(w, "mend.compress."))) goto out;
    const int ft = o->fmt.type == MEND_QFMT_GENERIC ? -1 : mend_compress_file_type(o->fmt.type);
    if (ft >= 0) rc = mend_gguf_writer_set_u32(w, "general.file_type", (uint32_t)ft);
    else rc = mend_gguf_writer_remove(w, "general.file_type");
    if (rc) goto out;
    if ((rc = mend_gguf_writer_set_u32(w, "general.quantization_version", 2))) goto out;
    char fmt[64];
    mend_qfmt_name(&o->fmt, fmt, sizeof fmt);
    if ((rc = mend_gguf_writer_set_str(w, "mend.compress.method", o->method == MEND_COMPRESS_GPTQ ? "gptq" : "rtn")) ||
        (rc = mend_gguf_writer_set_str(w, "mend.compress.format", fmt)))
        goto out;
    if (calibrated(o)) {
        if ((rc = mend_gguf_writer_set_f32(w, "mend.compress.damp", (float)(o->damp > 0 ? o->damp : 0.01))) ||
            (rc = mend_gguf_writer_set_u32(w, "mend.compress.block", (uint32_t)(o->block > 0 ? o->block : 128))) ||
            (rc = mend_gguf_writer_set_bool(w, "mend.compress.act_order", o->act_order)) ||
            (rc = mend_gguf_writer_set_u32(w, "mend.compress.nsamples", (uint32_t)o->nsamples)) ||
            (rc = mend_gguf_writer_set_u32(w, "mend.compress.seqlen", (uint32_t)o->seqlen)) ||
            (rc = mend_gguf_writer_set_u32(w, "mend.compress.sink_weight", (uint32_t)C->sink)) ||
            (rc = mend_gguf_writer_set_bool(w, "mend.compress.fit_importance", o->fit_importance)))
            goto out;
        if (o->calib_desc && (rc = mend_gguf_writer_set_str(w, "mend.compress.calib", o->calib_desc))) goto out;
        char ch[17];
        mend_fp_hex(mend_calib_hash(o->calib, (size_t)o->nsamples * (size_t)o->seqlen), ch);
        if ((rc = mend_gguf_writer_set_str(w, "mend.compress.calib_tokens", ch))) goto out;
    }
    if (o->embd_type != MEND_EMBD_KEEP) {
        const char *en = mend_type_name((uint32_t)o->embd_type);
        if ((rc = mend_gguf_writer_set_str(w, "mend.compress.embd_type", en ? en : "?"))) goto out;
    }
    if ((rc = mend_qfmt_write_meta(w, &o->fmt))) goto out;
    if (o->prune && o->prune->method != MEND_PRUNE_NONE) {
        char sp[32];
        if ((rc = mend_gguf_writer_set_str(w, "mend.compress.prune", mend_prune_method_name(o->prune->method))) ||
            (rc = mend_gguf_writer_set_str(w, "mend.compress.sparsity", mend_sparsity_name(&o->prune->sp, sp, sizeof sp))) ||
            (rc = mend_gguf_writer_set_bool(w, "mend.compress.prune_joint", o->prune->joint)))
            goto out;
    }
    if ((rc = write_recipe(C, w))) goto out;

    for (uint64_t k = 0; k < g->n_tensors; k++) {
        const gguf_tensor *t = &g->tensors[k];
        int l = -1, pos = 0;
        char mat[32] = {0};
        if (sscanf(t->name, "blk.%d.%31[a-z_].weight%n", &l, mat, &pos) == 2 && t->name[pos] == 0 && l >= 0 &&
            l < C->c->n_layers) {
            int i = 0;
            while (i < N_MATS && strcmp(mat, MAT_NAMES[i])) i++;
            if (i < N_MATS) {
                const qmat *Q = &C->q[l * N_MATS + i];
                int64_t ne[2];
                qmat_ne(Q, ne);
                if ((rc = mend_gguf_writer_add_tensor(w, t->name, mend_qfmt_gguf_type(&Q->fmt), 2, ne, Q->packed,
                                                      Q->bytes)))
                    goto out;
                continue;
            }
        }
        const int is_embd = !strcmp(t->name, "token_embd.weight"), is_out = !strcmp(t->name, "output.weight");
        if ((is_embd || is_out) && o->embd_type != MEND_EMBD_KEEP && (uint32_t)o->embd_type != t->type) {
            const mend_mat *f32 = is_embd ? &C->m->tok_embd : &C->m->output;
            void *buf = NULL;
            size_t bytes = 0;
            uint32_t type = 0;
            if ((rc = convert_embd(C, t, f32, (uint32_t)o->embd_type, &buf, &bytes, &type))) goto out;
            owned[n_owned++] = buf;
            const int64_t ne[2] = {f32->cols, f32->rows};
            if ((rc = mend_gguf_writer_add_tensor(w, t->name, type, 2, ne, buf, bytes))) goto out;
            continue;
        }
        if (t->n_dims == 1 && t->type != MEND_TYPE_F32) {
            /* norms and biases stay f32 */
            float *buf = malloc((size_t)t->ne[0] * sizeof(float));
            if (!buf) {
                rc = mend_set_error(MEND_ENOMEM, "compress: out of memory");
                goto out;
            }
            owned[n_owned++] = buf;
            if ((rc = mend_dequantize_row(t->type, t->data, buf, t->ne[0]))) goto out;
            if ((rc = mend_gguf_writer_add_tensor(w, t->name, MEND_TYPE_F32, 1, t->ne, buf,
                                                  (size_t)t->ne[0] * sizeof(float))))
                goto out;
            continue;
        }
        if ((rc = mend_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes))) goto out;
    }
    rc = mend_gguf_writer_write(w, out);
    if (!rc) {
        struct stat sb;
        if (stat(out, &sb) == 0) res->file_bytes = (int64_t)sb.st_size;
    }
out:
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    mend_gguf_writer_free(w);
    return rc;
}

/* ---- entry ---------------------------------------------------------------------- */

int mend_sink_weight_default(int seqlen) {
    return seqlen / 32 > 1 ? seqlen / 32 : 1;
}

int mend_compress_resolve(const mend_compress_opts *in, mend_compress_opts *o) {
    *o = *in;
    if (o->method != MEND_COMPRESS_RTN && o->method != MEND_COMPRESS_GPTQ)
        return mend_set_error(MEND_EINVAL, "compress: method %d (rtn or gptq expected)", o->method);
    const int pruning = o->prune && o->prune->method != MEND_PRUNE_NONE;
    if (o->act_order < 0) o->act_order = !pruning;   /* GPTQ keeps pruned columns in order */
    if (o->fit_importance < 0) o->fit_importance = o->fmt.type != MEND_QFMT_GENERIC;   /* measured better for ggml types */
    if (pruning && o->act_order && o->method == MEND_COMPRESS_GPTQ)
        return mend_set_error(MEND_EINVAL, "compress: act-order is not supported together with pruning");
    if (pruning && o->prune->joint && (o->prune->method != MEND_PRUNE_SPARSEGPT || o->method != MEND_COMPRESS_GPTQ))
        return mend_set_error(MEND_EINVAL, "compress: joint pruning goes with SparseGPT and GPTQ");
    return 0;
}

int mend_compress(const char *src, const char *out, const mend_compress_opts *opts, mend_compress_result *res) {
    mend_compress_result dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    if (!src || !out || !opts) return mend_set_error(MEND_EINVAL, "compress: source, output and options are required");
    mend_compress_opts resolved;
    int rc = mend_compress_resolve(opts, &resolved);
    if (rc) return rc;
    const mend_compress_opts *o = &resolved;
    if (calibrated(o)) {
        if (!o->calib || o->nsamples < 1 || o->seqlen < 2)
            return mend_set_error(MEND_EINVAL, "compress: GPTQ, Wanda and SparseGPT need calibration tokens (%d samples of %d tokens given)",
                                  o->nsamples, o->seqlen);
        if (o->method == MEND_COMPRESS_GPTQ &&
            (o->fmt.type == MEND_TYPE_F32 || o->fmt.type == MEND_TYPE_F16 || o->fmt.type == MEND_TYPE_BF16))
            return mend_set_error(MEND_EINVAL, "compress: GPTQ to a float type; use rtn to convert");
    }
    if (o->embd_type != MEND_EMBD_KEEP && (o->embd_type < 0 || !mend_type_get((uint32_t)o->embd_type)))
        return mend_set_error(MEND_EINVAL, "compress: embedding type %d is not a ggml type", o->embd_type);
    const double t0 = mend_now();
    ctx C = {.o = o, .src = src};
    C.diag_only = o->prune && o->prune->method == MEND_PRUNE_WANDA && o->method != MEND_COMPRESS_GPTQ;
    if (o->sink_weight < 0 || o->sink_weight > (1 << 20))
        return mend_set_error(MEND_EINVAL, "compress: sink weight %d (0 for the default, or 1 to 2^20 expected)", o->sink_weight);
    C.sink = o->sink_weight > 0 ? o->sink_weight : mend_sink_weight_default(o->seqlen);
    if (mend_is_dir(src))
        return mend_set_error(MEND_EUNSUPPORTED, "compress: %s is a directory; mend compress reads GGUF files (a "
                              "Hugging Face directory converts with llama.cpp's convert_hf_to_gguf.py; OPT, which "
                              "llama.cpp lacks, has mend's own GGUF layout: docs/models.md)", src);
    mend_load_opts lo = {0};
    rc = mend_model_load_gguf(&C.m, src, &lo);
    if (rc) return rc;
    C.c = &C.m->cfg;
    for (int l = 0; l < C.c->n_layers && !rc; l++) rc = mend_layer_check(C.c, &C.m->layers[l], l);
    if (!rc) rc = plan(&C, res);
    if (rc) goto out;
    make_signature(&C);

    const int nl = C.c->n_layers;
    if (calibrated(o)) {
        C.N = o->nsamples;
        C.T = o->seqlen;
        if ((rc = mend_pos_check(C.c, "compress: calibration windows", 0, C.T))) goto out;
        const size_t dim = (size_t)C.c->dim, qd = (size_t)C.c->n_heads * C.c->head_dim;
        C.a_ld = qd > (size_t)C.c->hidden_dim ? qd : (size_t)C.c->hidden_dim;
        size_t nx = 0, na = 0;
        if (!mend_mul_ok((size_t)C.N * C.T, dim, &nx) || !mend_mul_ok((size_t)C.N * C.T, C.a_ld, &na) ||
            !(C.X = malloc(nx * sizeof(float))) || !(C.A = malloc(na * sizeof(float)))) {
            rc = mend_set_error(MEND_ENOMEM, "compress: cannot hold the hidden states of %d x %d tokens (%zu MiB)",
                                C.N, C.T, (nx + na) * sizeof(float) >> 20);
            goto out;
        }
    }
    int start = 0;
    if (o->checkpoint && (rc = ckpt_load(&C, &start))) goto out;
    res->resumed_layers = start;
    if (calibrated(o)) {
        if (start == 0) {
            const mend_mat *E = &C.m->tok_embd;
            for (size_t i = 0; i < (size_t)C.N * C.T; i++) {
                const int32_t id = o->calib[i];
                if (id < 0 || id >= C.c->n_vocab) {
                    rc = mend_set_error(MEND_EINVAL, "compress: calibration token %d at %zu is outside the "
                                        "vocabulary of %d", id, i, C.c->n_vocab);
                    goto out;
                }
                memcpy(C.X + i * C.c->dim, (const float *)E->data + (size_t)id * C.c->dim, (size_t)C.c->dim * sizeof(float));
            }
            mend_embed_scale(C.c, C.X, C.N * C.T);   /* as the forward enters layer 0 (gemma3) */
            for (int s = 0; s < C.N; s++)   /* learned positions 0 .. T-1 of each window (opt) */
                mend_pos_add(C.c, C.X + (size_t)s * C.T * C.c->dim, C.T, 0);
        }
        C.total = (int64_t)(nl - start) * N_STAGES * C.N;
        if ((rc = gptq_run(&C, start))) goto out;
    } else {
        C.total = nl - start;
        float *buf = NULL;
        size_t most = 0;
        for (int i = 0; i < nl * N_MATS; i++)
            if ((size_t)(C.q[i].rows * C.q[i].cols) > most) most = (size_t)(C.q[i].rows * C.q[i].cols);
        if (!(buf = malloc(most * sizeof(float)))) {
            rc = mend_set_error(MEND_ENOMEM, "compress: out of memory");
            goto out;
        }
        for (int l = start; l < nl && !rc; l++) {
            C.layer = l;
            if ((rc = rtn_layer(&C, l, buf))) break;
            C.done++;
            if (o->checkpoint && (rc = ckpt_write(&C, l + 1))) break;
            if (progress(&C, "layer done", 0.0)) rc = mend_set_error(MEND_EINVAL, "compression stopped after layer %d", l);
        }
        free(buf);
        if (rc) goto out;
    }
    C.layer = nl - 1;
    progress(&C, "write", 0.0);
    if ((rc = write_output(&C, out, res))) goto out;
    if (o->checkpoint) unlink(o->checkpoint);
    res->seconds = mend_now() - t0;
out:
    for (int i = 0; C.q && i < C.c->n_layers * N_MATS; i++) free(C.q[i].packed);
    free(C.q);
    free(C.X);
    free(C.A);
    mend_model_free(C.m);
    return rc;
}
