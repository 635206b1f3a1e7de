/* Model lifetime and queries shared by every loader: load dispatch (GGUF file
 * or Hugging Face directory), the repacked copy of the layer matrices for
 * batched products, free, info, and the shape validation every loader runs
 * last. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qgemm.h"
#include "io/gguf.h"
#include "kernels/quants.h"
#include "model/model.h"
#include "tok/tokenizer.h"
#include "util/util.h"

/* The layer matrices kernels/qgemm.h can take (packed, right type and
 * shape), with their twins in layers_packed; returns how many (<= cap). */
static void layer_mats(mend_layer *L, mend_mat *out[7]) {
    mend_mat *all[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
    memcpy(out, all, sizeof all);
}

static int repackable(mend_model *m, mend_mat **mats, mend_mat **twins, int cap) {
    int k = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        mend_mat *y[7], *p[7] = {0};
        layer_mats(&m->layers[l], y);
        if (m->layers_packed) layer_mats(&m->layers_packed[l], p);
        for (int i = 0; i < 7; i++) {
            if (!y[i]->data || !mend_qgemm_supported(y[i]->type, y[i]->rows, y[i]->cols)) continue;
            if (k < cap) {
                mats[k] = y[i];
                twins[k] = p[i] && p[i]->data == y[i]->data ? p[i] : NULL;
            }
            k++;
        }
    }
    return k;
}

/* Repack every matrix qgemm supports into one allocation. */
static int model_repack(mend_model *m) {
    const int n = repackable(m, NULL, NULL, 0);
    if (!n) return 0;
    mend_mat **mats = malloc(2 * (size_t)n * sizeof *mats);
    size_t *off = malloc(((size_t)n + 1) * sizeof *off);
    int64_t *first = malloc(((size_t)n + 1) * sizeof *first);
    if (!mats || !off || !first) {
        free(mats); free(off); free(first);
        return mend_set_error(MEND_ENOMEM, "%s: out of memory repacking %d matrices", m->path ? m->path : "model", n);
    }
    mend_mat **twins = mats + n;
    repackable(m, mats, twins, n);
    off[0] = 0;
    first[0] = 0;
    int ok = 1;
    for (int i = 0; i < n; i++) {
        const size_t b = mend_qgemm_packed_size(mats[i]->type, mats[i]->rows, mats[i]->cols);
        ok = ok && b && mend_add_ok(off[i], (b + 63) & ~(size_t)63, &off[i + 1]);
        first[i + 1] = first[i] + mats[i]->rows / QGEMM_ROWS;
    }
    void *buf = NULL;
    const size_t bytes = ok ? off[n] : SIZE_MAX;
    if (!ok || posix_memalign(&buf, 64, bytes ? bytes : 64) != 0) {
        free(mats); free(off); free(first);
        return mend_set_error(MEND_ENOMEM, "%s: cannot allocate %zu MiB for the repacked matrices",
                              m->path ? m->path : "model", bytes >> 20);
    }
    /* matrix by matrix (row groups in parallel), each file range let go as
     * soon as its copy is made: the forward reads only the copy, and the
     * process never holds both whole (the pages come back from the file if
     * anything reads the plain layout) */
    for (int i = 0; i < n; i++) {
        const mend_mat *w = mats[i];
        const int64_t groups = first[i + 1] - first[i];
        uint8_t *dst = (uint8_t *)buf + off[i];
#pragma omp parallel for schedule(dynamic, 8) if (groups >= 16)
        for (int64_t g = 0; g < groups; g++) mend_qgemm_pack(dst, w->data, w->type, w->rows, w->cols, g, g + 1);
        mats[i]->xdata = dst;
        if (twins[i]) twins[i]->xdata = dst;
        if (m->gguf) mend_map_release(&m->gguf->map, w->data, (size_t)w->rows * w->row_bytes);
    }
    m->xpack = buf;
    m->xpack_bytes = off[n];
    free(mats); free(off); free(first);
    return 0;
}

int mend_model_load(mend_model **out, const char *path, const mend_load_opts *opts) {
    if (!out || !path || !*path)
        return mend_set_error(MEND_EINVAL, "mend_model_load: a model path is required");
    *out = NULL;
    int rc;
    if (mend_is_dir(path)) {
        rc = mend_model_load_hf(out, path, opts);
    } else {
        if (!mend_file_exists(path))
            return mend_set_error(MEND_EIO, "%s: no such file or directory (expected a .gguf file or a "
                                  "Hugging Face model directory)", path);
        rc = mend_model_load_gguf(out, path, opts);
    }
    if (rc || !opts || !opts->keep_packed || opts->no_repack || !mend_qgemm_available()) return rc;
    if ((rc = model_repack(*out))) {
        mend_model_free(*out);
        *out = NULL;
    }
    return rc;
}

void mend_model_free(mend_model *m) {
    if (!m) return;
    if (m->tok) mend_tokenizer_free(m->tok);
    free(m->layers);   /* layers_packed lives in the same allocation */
    free(m->arena);
    free(m->xpack);
    if (m->owned && m->free_owned) m->free_owned(m->owned);
    if (m->gguf) mend_gguf_close(m->gguf);
    free(m->path);
    free(m);
}

const mend_tokenizer *mend_model_tokenizer(const mend_model *m) { return m ? m->tok : NULL; }

static int64_t mat_elems(const mend_mat *w) { return w->data ? w->rows * w->cols : 0; }

void mend_model_get_info(const mend_model *m, mend_model_info *info) {
    if (!info) return;
    memset(info, 0, sizeof *info);
    if (!m) return;
    const mend_config *c = &m->cfg;
    snprintf(info->arch, sizeof info->arch, "%s", c->arch);
    info->n_vocab = c->n_vocab;
    info->dim = c->dim;
    info->n_layers = c->n_layers;
    info->n_heads = c->n_heads;
    info->n_kv_heads = c->n_kv_heads;
    info->head_dim = c->head_dim;
    info->hidden_dim = c->hidden_dim;
    info->ctx_len = c->ctx_len;
    info->rope_theta = c->rope_theta;
    info->norm_eps = c->norm_eps;
    info->tied_embeddings = c->tied;
    int64_t n = mat_elems(&m->tok_embd) + (c->tied ? 0 : mat_elems(&m->output));
    if (m->out_norm) n += c->dim;
    if (m->out_norm_b) n += c->dim;
    if (c->pos_embd) n += (int64_t)c->n_pos * c->dim;
    for (int l = 0; m->layers && l < c->n_layers; l++) {
        const mend_layer *L = &m->layers[l];
        n += mat_elems(&L->wq) + mat_elems(&L->wk) + mat_elems(&L->wv) + mat_elems(&L->wo);
        n += mat_elems(&L->w_gate) + mat_elems(&L->w_up) + mat_elems(&L->w_down);
        if (L->attn_norm) n += c->dim;
        if (L->ffn_norm) n += c->dim;
        if (L->bq) n += L->wq.rows;
        if (L->bk) n += L->wk.rows;
        if (L->bv) n += L->wv.rows;
        if (L->q_norm) n += c->head_dim;
        if (L->k_norm) n += c->head_dim;
        if (L->post_attn_norm) n += c->dim;
        if (L->post_ffn_norm) n += c->dim;
        if (L->attn_norm_b) n += c->dim;
        if (L->ffn_norm_b) n += c->dim;
        if (L->bo) n += L->wo.rows;
        if (L->b_up) n += L->w_up.rows;
        if (L->b_down) n += L->w_down.rows;
    }
    info->n_params = n;
    info->repacked_bytes = m->xpack_bytes;
}

/* Limits that keep every product below in range of int64 and size_t. */
#define MAX_DIM     (1 << 20)
#define MAX_VOCAB   (1 << 24)
#define MAX_LAYERS  4096

static int check_mat(const mend_model *m, const char *what, int layer, const mend_mat *w,
                     int64_t rows, int64_t cols) {
    const char *src = m->path ? m->path : "model";
    char name[64];
    if (layer >= 0) snprintf(name, sizeof name, "layer %d %s", layer, what);
    else snprintf(name, sizeof name, "%s", what);
    if (!w->data)
        return mend_set_error(MEND_EFORMAT, "%s: %s is missing", src, name);
    if (w->rows != rows || w->cols != cols)
        return mend_set_error(MEND_EFORMAT, "%s: %s has shape [%lld x %lld], expected [%lld x %lld]",
                              src, name, (long long)w->rows, (long long)w->cols,
                              (long long)rows, (long long)cols);
    if (!mend_type_get(w->type))
        return mend_set_error(MEND_EUNSUPPORTED, "%s: %s has unknown tensor type %u", src, name, w->type);
    size_t rb = mend_row_size(w->type, cols);
    if (rb == 0 || rb != w->row_bytes)
        return mend_set_error(MEND_EFORMAT, "%s: %s rows take %zu bytes, expected %zu for %lld %s values",
                              src, name, w->row_bytes, rb, (long long)cols, mend_type_name(w->type));
    return 0;
}

static int check_vec(const mend_model *m, const char *what, int layer, const float *v) {
    if (v) return 0;
    const char *src = m->path ? m->path : "model";
    if (layer >= 0) return mend_set_error(MEND_EFORMAT, "%s: layer %d %s is missing", src, layer, what);
    return mend_set_error(MEND_EFORMAT, "%s: %s is missing", src, what);
}

int mend_model_validate(const mend_model *m) {
    if (!m) return mend_set_error(MEND_EINVAL, "mend_model_validate: no model");
    const mend_config *c = &m->cfg;
    const char *src = m->path ? m->path : "model";
#define CFG_RANGE(field, lo, hi) \
    if (c->field < (lo) || c->field > (hi)) \
        return mend_set_error(MEND_EFORMAT, "%s: config " #field " is %lld, expected %lld..%lld", src, \
                              (long long)c->field, (long long)(lo), (long long)(hi))
    CFG_RANGE(n_vocab, 1, MAX_VOCAB);
    CFG_RANGE(dim, 1, MAX_DIM);
    CFG_RANGE(n_layers, 1, MAX_LAYERS);
    CFG_RANGE(n_heads, 1, 4096);
    CFG_RANGE(n_kv_heads, 1, c->n_heads);
    CFG_RANGE(head_dim, 2, 4096);
    CFG_RANGE(hidden_dim, 1, MAX_DIM);
    CFG_RANGE(ctx_len, 0, 1 << 30);
#undef CFG_RANGE
    if (c->n_heads % c->n_kv_heads)
        return mend_set_error(MEND_EFORMAT, "%s: config n_heads %d is not a multiple of n_kv_heads %d",
                              src, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2)
        return mend_set_error(MEND_EFORMAT, "%s: config head_dim %d is odd; RoPE rotates pairs", src,
                              c->head_dim);
    if ((int64_t)c->n_heads * c->head_dim > MAX_DIM)
        return mend_set_error(MEND_EFORMAT, "%s: config n_heads * head_dim = %lld exceeds %d", src,
                              (long long)c->n_heads * c->head_dim, MAX_DIM);
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        return mend_set_error(MEND_EFORMAT, "%s: config norm_eps is %g, expected a small positive number",
                              src, (double)c->norm_eps);
    if (c->rope_type != MEND_ROPE_NONE && !(c->rope_theta > 0.0f))
        return mend_set_error(MEND_EFORMAT, "%s: config rope_theta is %g, expected > 0", src,
                              (double)c->rope_theta);
    if (c->rope_type != MEND_ROPE_NORM && c->rope_type != MEND_ROPE_NEOX && c->rope_type != MEND_ROPE_NONE)
        return mend_set_error(MEND_EFORMAT, "%s: config rope_type is %d, expected %d (norm), %d (neox) or %d "
                              "(none)", src, c->rope_type, MEND_ROPE_NORM, MEND_ROPE_NEOX, MEND_ROPE_NONE);
    /* learned positions replace RoPE: a table exactly when there is no rotation */
    if ((c->rope_type == MEND_ROPE_NONE) != (c->n_pos > 0) || (c->n_pos > 0) != (c->pos_embd != NULL) ||
        c->n_pos < 0 || c->n_pos > (1 << 24))
        return mend_set_error(MEND_EFORMAT, "%s: config has rope_type %d with %d learned positions (%s table); "
                              "expected RoPE or a table of 1..%d positions", src, c->rope_type, c->n_pos,
                              c->pos_embd ? "a" : "no", 1 << 24);
    if (c->ffn_plain && c->act != MEND_ACT_RELU)
        return mend_set_error(MEND_EFORMAT, "%s: config has an FFN without a gate and activation %d; only ReLU "
                              "(%d) is implemented there", src, c->act, MEND_ACT_RELU);
    if (!m->layers) return mend_set_error(MEND_EFORMAT, "%s: the model has no layers", src);
    /* a token the embedding has no row for would fail every forward pass */
    if (m->tok && mend_tokenizer_n_vocab(m->tok) > c->n_vocab)
        return mend_set_error(MEND_EFORMAT, "%s: the tokenizer has %d tokens but the token embedding has only %d rows",
                              src, mend_tokenizer_n_vocab(m->tok), c->n_vocab);

    const int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim,
                  kvd = (int64_t)c->n_kv_heads * c->head_dim, hid = c->hidden_dim;
    int rc;
    if ((rc = check_mat(m, "token embedding", -1, &m->tok_embd, c->n_vocab, dim))) return rc;
    if ((rc = check_mat(m, "output head", -1, &m->output, c->n_vocab, dim))) return rc;
    if ((rc = check_vec(m, "output norm", -1, m->out_norm))) return rc;
    if (c->layer_norm && (rc = check_vec(m, "output norm bias", -1, m->out_norm_b))) return rc;
    for (int l = 0; l < c->n_layers; l++) {
        const mend_layer *L = &m->layers[l];
        if ((rc = check_vec(m, "attention norm", l, L->attn_norm))) return rc;
        if ((rc = check_vec(m, "ffn norm", l, L->ffn_norm))) return rc;
        if (c->layer_norm && ((rc = check_vec(m, "attention norm bias", l, L->attn_norm_b)) ||
                              (rc = check_vec(m, "ffn norm bias", l, L->ffn_norm_b))))
            return rc;
        if ((rc = check_mat(m, "wq", l, &L->wq, qd, dim))) return rc;
        if ((rc = check_mat(m, "wk", l, &L->wk, kvd, dim))) return rc;
        if ((rc = check_mat(m, "wv", l, &L->wv, kvd, dim))) return rc;
        if ((rc = check_mat(m, "wo", l, &L->wo, dim, qd))) return rc;
        if (!c->ffn_plain && (rc = check_mat(m, "w_gate", l, &L->w_gate, hid, dim))) return rc;
        if ((rc = check_mat(m, "w_up", l, &L->w_up, hid, dim))) return rc;
        if ((rc = check_mat(m, "w_down", l, &L->w_down, dim, hid))) return rc;
        if (c->qk_norm && (!L->q_norm || !L->k_norm))
            return mend_set_error(MEND_EFORMAT, "%s: layer %d lacks the q/k norms its config asks for", src, l);
        if (c->post_norms && (!L->post_attn_norm || !L->post_ffn_norm))
            return mend_set_error(MEND_EFORMAT, "%s: layer %d lacks the post-attention/FFN norms its config "
                                  "asks for", src, l);
        if ((L->bq != NULL) != (L->bk != NULL) || (L->bq != NULL) != (L->bv != NULL))
            return mend_set_error(MEND_EFORMAT, "%s: layer %d has some but not all of the q/k/v biases",
                                  src, l);
    }
    return 0;
}
