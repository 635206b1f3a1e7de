/* mend/inspect.h: what a loaded model holds, for `mend info` and other
 * clients (model/model.h and io/gguf.h stay internal). */
#include <string.h>

#include "mend.h"
#include "compress/prune.h"
#include "io/gguf.h"
#include "kernels/quants.h"
#include "model/model.h"
#include "util/util.h"

void mend_model_file_info(const mend_model *m, mend_file_info *out) {
    memset(out, 0, sizeof *out);
    const mend_gguf *g = m->gguf;
    out->is_gguf = g != NULL;
    if (g) {
        out->version = g->version;
        out->n_tensors = g->n_tensors;
        out->n_kv = g->n_kv;
    }
    out->rope_neox = m->cfg.rope_type == MEND_ROPE_NEOX;
}

static int tensor_at(const mend_model *m, uint64_t i, const gguf_tensor **t) {
    const mend_gguf *g = m->gguf;
    if (!g) return mend_set_error(MEND_ERANGE, "model: tensors are listed only for GGUF files");
    if (i >= g->n_tensors)
        return mend_set_error(MEND_ERANGE, "%s: no tensor %llu (the file holds %llu)", g->path,
                              (unsigned long long)i, (unsigned long long)g->n_tensors);
    *t = &g->tensors[i];
    return 0;
}

int mend_model_tensor(const mend_model *m, uint64_t i, mend_tensor_info *out) {
    memset(out, 0, sizeof *out);
    const gguf_tensor *t = NULL;
    int rc = tensor_at(m, i, &t);
    if (rc) return rc;
    out->name = t->name;
    out->type = t->type;
    out->n_dims = (int)t->n_dims;
    out->n_elems = 1;
    for (uint32_t d = 0; d < t->n_dims && d < 4; d++) out->n_elems *= t->ne[d];
    out->n_bytes = t->nbytes;
    return 0;
}

int mend_model_tensor_zeros(const mend_model *m, uint64_t i, int64_t *zeros, int64_t *n) {
    const gguf_tensor *t = NULL;
    int rc = tensor_at(m, i, &t);
    return rc ? rc : mend_gguf_tensor_zeros(m->gguf, t, zeros, n);
}

int mend_model_meta_int(const mend_model *m, const char *key, int64_t *out) {
    if (!m->gguf) return mend_set_error(MEND_EINVAL, "model: no GGUF metadata (key %s)", key);
    return mend_gguf_get_int(m->gguf, key, out);
}

/* ---- non-finite weights ---- */

typedef struct finite_scan {
    mend_nonfinite_fn fn;
    void *user;
    int64_t bad, tensors_bad, n;
} finite_scan;

/* One f32 tensor (rows x cols, rows row_bytes apart). */
static void scan_f32(finite_scan *s, const char *what, int layer, const float *data, int64_t rows, int64_t cols,
                     size_t row_bytes) {
    if (!data) return;
    mend_nonfinite r = {.what = what, .layer = layer, .first = -1, .n_elems = rows * cols};
    for (int64_t i = 0; i < rows; i++) {
        const float *row = (const float *)((const char *)data + (size_t)i * row_bytes);
        for (int64_t c = 0; c < cols; c++) {
            float v = row[c];
            if (v != v) r.nan++;
            else if (v - v != 0.0f) r.inf++;
            else continue;
            if (r.first < 0) r.first = i * cols + c;
        }
    }
    s->n += rows * cols;
    if (r.nan + r.inf == 0) return;
    s->bad += r.nan + r.inf;
    s->tensors_bad++;
    if (s->fn) s->fn(s->user, &r);
}

static void scan_mat(finite_scan *s, const char *what, int layer, const mend_mat *M) {
    scan_f32(s, what, layer, (const float *)M->data, M->rows, M->cols, M->row_bytes);
}

static void scan_vec(finite_scan *s, const char *what, int layer, const float *v, int64_t len) {
    scan_f32(s, what, layer, v, 1, len, 0);
}

int mend_model_check_finite(const mend_model *m, mend_nonfinite_fn fn, void *user, int64_t *n_bad,
                            int64_t *n_tensors_bad, int64_t *n_weights) {
    const mend_config *c = &m->cfg;
    if (m->tok_embd.type != MEND_TYPE_F32)
        return mend_set_error(MEND_EINVAL, "check: load the model with keep_packed 0 (f32 matrices)");
    const int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    finite_scan s = {.fn = fn, .user = user};
    scan_mat(&s, "token embedding", -1, &m->tok_embd);
    if (!c->tied) scan_mat(&s, "output head", -1, &m->output);
    scan_vec(&s, "output norm", -1, m->out_norm, dim);
    for (int l = 0; l < c->n_layers; l++) {
        const mend_layer *Y = &m->layers[l];
        scan_vec(&s, "attention norm", l, Y->attn_norm, dim);
        scan_vec(&s, "ffn norm", l, Y->ffn_norm, dim);
        scan_mat(&s, "wq", l, &Y->wq);
        scan_mat(&s, "wk", l, &Y->wk);
        scan_mat(&s, "wv", l, &Y->wv);
        scan_mat(&s, "wo", l, &Y->wo);
        scan_mat(&s, "w_gate", l, &Y->w_gate);
        scan_mat(&s, "w_up", l, &Y->w_up);
        scan_mat(&s, "w_down", l, &Y->w_down);
        scan_vec(&s, "bq", l, Y->bq, qd);
        scan_vec(&s, "bk", l, Y->bk, kvd);
        scan_vec(&s, "bv", l, Y->bv, kvd);
        scan_vec(&s, "bo", l, Y->bo, dim);
        scan_vec(&s, "b_up", l, Y->b_up, c->hidden_dim);
        scan_vec(&s, "b_down", l, Y->b_down, dim);
        scan_vec(&s, "attention norm bias", l, Y->attn_norm_b, dim);
        scan_vec(&s, "ffn norm bias", l, Y->ffn_norm_b, dim);
    }
    scan_vec(&s, "output norm bias", -1, m->out_norm_b, dim);
    scan_f32(&s, "position embedding", -1, c->pos_embd, c->n_pos, dim, (size_t)dim * sizeof(float));
    if (n_bad) *n_bad = s.bad;
    if (n_tensors_bad) *n_tensors_bad = s.tensors_bad;
    if (n_weights) *n_weights = s.n;
    return 0;
}
