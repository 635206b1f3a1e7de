/* Load a LLaMA-family model from a GGUF file.
 *
 * Config comes from the `<arch>.*` keys (llama and mistral share the llama
 * layout; qwen2 adds q/k/v biases and rotates halves, RoPE NEOX; qwen3 rotates
 * halves and normalises q and k per head, blk.N.attn_{q,k}_norm; a llama
 * file's rope_freqs.weight divides the RoPE frequencies). Tensors
 * carry llama.cpp's names:
 *   token_embd, output_norm, output (absent: tied to token_embd),
 *   blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
 *          ffn_gate, ffn_up, ffn_down}.weight, blk.N.attn_{q,k,v}.bias.
 * Every tensor's type, shape and byte size is checked against the config and
 * the file before any data is touched.
 *
 * opt (mend's own layout, docs/models.md; llama.cpp has no OPT) stores
 * LayerNorm eps as opt.attention.layer_norm_epsilon, no RoPE keys, and adds
 * position_embd.weight [dim, context_length] (row p = position p), a bias
 * beside every norm and matrix of a layer (blk.N.*.bias) and
 * output_norm.bias; its FFN is ffn_up / ffn_down without ffn_gate.
 *
 * llama.cpp's converter permutes the rows of attn_q / attn_k so that RoPE
 * rotates adjacent pairs (x[2i], x[2i+1]); llama files therefore run with
 * MEND_ROPE_NORM, while qwen2 files keep the HF row order and use NEOX.
 *
 * Memory: the file stays mmap'd (m->gguf); by default every matrix is
 * dequantized into one f32 arena (m->arena, one allocation, filled in
 * parallel), while layers_packed / tok_embd_packed / output_packed keep the
 * original quantized views into the map. F32 tensors that are 4-byte aligned
 * in the map are used in place; norms and biases in other types are converted
 * into the arena. With keep_packed the matrices stay in the map and only
 * non-f32 vectors use the arena. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qfmt.h"
#include "io/gguf.h"
#include "kernels/quants.h"
#include "model/model.h"
#include "tok/tokenizer.h"
#include "util/util.h"

/* One tensor that needs an f32 copy in the arena. */
typedef struct conv_job {
    const gguf_tensor *t;
    int64_t rows, cols;
    size_t off;           /* float offset in the arena */
    const float **vec;    /* destination for a vector, or */
    mend_mat *mat;        /* destination for a matrix */
} conv_job;

typedef struct loader {
    mend_model *m;
    const mend_gguf *g;
    const char *path;
    const char *arch;     /* key prefix as written in the file */
    int keep_packed;
    conv_job *jobs;
    int n_jobs, cap_jobs;
    size_t arena_floats;
    int generic;          /* the file declares mend's generic format (I8 rows) */
    mend_qfmt gen;
} loader;

/* ---- config ---------------------------------------------------------------------- */

static int key_int(loader *L, const char *suffix, int required, int64_t lo, int64_t hi, int *out) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    int64_t v = *out;
    int rc = required ? mend_gguf_get_int(L->g, key, &v) : mend_gguf_opt_int(L->g, key, &v);
    if (rc) return rc;
    if (!required && !mend_gguf_find(L->g, key)) return 0;
    if (v < lo || v > hi)
        return mend_set_error(MEND_EFORMAT, "%s: key '%s' is %lld, expected %lld..%lld", L->path, key,
                              (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return 0;
}

static int key_float(loader *L, const char *suffix, int required, double lo, double hi, float *out) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", L->arch, suffix);
    double v = *out;
    int rc = required ? mend_gguf_get_float(L->g, key, &v) : mend_gguf_opt_float(L->g, key, &v);
    if (rc) return rc;
    if (!(v >= lo && v <= hi))
        return mend_set_error(MEND_EFORMAT, "%s: key '%s' is %g, expected %g..%g", L->path, key, v, lo, hi);
    *out = (float)v;
    return 0;
}

/* llama.cpp's form of llama3 RoPE scaling: tensor rope_freqs.weight, the
 * f32 divisor of each of the head_dim/2 frequencies (model/features.c). */
static int read_rope_freqs(loader *L) {
    mend_config *c = &L->m->cfg;
    const gguf_tensor *t = mend_gguf_find_tensor(L->g, "rope_freqs.weight");
    if (!t) return 0;
    const int half = c->head_dim / 2;
    if (t->type != MEND_TYPE_F32 || t->n_dims != 1 || t->ne[0] != half ||
        t->nbytes != (size_t)half * sizeof(float) || (uintptr_t)t->data % sizeof(float))
        return mend_set_error(MEND_EFORMAT, "%s: tensor 'rope_freqs.weight' is not %d aligned f32 values "
                              "(one per RoPE frequency)", L->path, half);
    const float *f = (const float *)t->data;
    for (int i = 0; i < half; i++)
        if (!(f[i] > 0.0f && f[i] < 1e30f))
            return mend_set_error(MEND_EFORMAT, "%s: tensor 'rope_freqs.weight' value %d is %g, expected a "
                                  "positive divisor", L->path, i, (double)f[i]);
    c->rope_scaling = MEND_ROPE_SCALING_FREQS;
    c->rope_freqs = f;
    return 0;
}

/* Gemma 2 and 3, as llama.cpp runs them. Both: the attention and FFN
 * outputs are RMS-normed before their residual adds; the FFN is GeGLU with
 * the tanh GELU; token embeddings are scaled by sqrt(dim). The norm weights
 * are stored as 1 + w (the converter adds the 1 that Gemma's RMSNorm
 * applies), so the plain RMSNorm applies. The attention scale is
 * 1/sqrt(query_pre_attn_scalar), which the GGUF does not store: it is the
 * head size for every size but the 27B ones (46 layers for Gemma 2, 62 for
 * Gemma 3), where it is dim / n_heads.
 * Gemma 3: with gemma3.attention.sliding_window set, five layers of every
 * six see a window of that many positions with the RoPE base 10000 and
 * every sixth (layers 5, 11, ...) is global with gemma3.rope.freq_base; q
 * and k are RMS-normed per head; no soft-capping.
 * Gemma 2: the even layers (0, 2, ...) see gemma2.attention.sliding_window
 * positions, all with one RoPE base; attention scores and logits are
 * soft-capped by gemma2.attn_logit_softcapping and
 * gemma2.final_logit_softcapping. */
static int read_gemma_config(loader *L, int version) {
    mend_config *c = &L->m->cfg;
    float attn_cap = 0.0f, final_cap = 0.0f;
    int rc, window = 0;
    if ((rc = key_float(L, "final_logit_softcapping", 0, 0.0, 1e6, &final_cap)) ||
        (rc = key_float(L, "attn_logit_softcapping", 0, 0.0, 1e6, &attn_cap)) ||
        (rc = key_int(L, "attention.sliding_window", 0, 0, 1 << 30, &window)))
        return rc;
    if (version == 3 && (final_cap > 0.0f || attn_cap > 0.0f))
        return mend_set_error(MEND_EUNSUPPORTED, "%s: gemma3.%s is %g; Gemma 3 has no soft-capping and mend does "
                              "not run a Gemma 3 file that asks for it", L->path,
                              final_cap > 0.0f ? "final_logit_softcapping" : "attn_logit_softcapping",
                              (double)(final_cap > 0.0f ? final_cap : attn_cap));
    c->post_norms = 1;
    c->act = MEND_ACT_GELU_TANH;
    c->embd_scale = sqrtf((float)c->dim);
    const int big = c->n_layers == (version == 3 ? 62 : 46);
    const int pre_attn = big ? c->dim / c->n_heads : c->head_dim;
    c->attn_scale = 1.0f / sqrtf((float)pre_attn);
    if (version == 3) {
        c->qk_norm = 1;
        c->rope_theta_swa = 10000.0f;
        for (int l = 0; l < c->n_layers && window > 0; l++) c->swa_window[l] = l % 6 < 5 ? window : 0;
        return 0;
    }
    c->attn_softcap = attn_cap;
    c->final_softcap = final_cap;
    for (int l = 0; l < c->n_layers && window > 0; l += 2) c->swa_window[l] = window;
    return 0;
}

static int read_config(loader *L) {
    mend_config *c = &L->m->cfg;
    const char *arch;
    int rc = mend_gguf_get_str(L->g, "general.architecture", &arch);
    if (rc) return rc;
    if (strcmp(arch, "llama") && strcmp(arch, "mistral") && strcmp(arch, "qwen2") && strcmp(arch, "qwen3") &&
        strcmp(arch, "gemma2") && strcmp(arch, "gemma3") && strcmp(arch, "opt"))
        return mend_set_error(MEND_EUNSUPPORTED, "%s: general.architecture is '%.40s', expected llama, "
                              "mistral, qwen2, qwen3, gemma2, gemma3 or opt", L->path, arch);
    const int opt = strcmp(arch, "opt") == 0;
    L->arch = arch;
    snprintf(c->arch, sizeof c->arch, "%s", arch);
    c->qk_norm = strcmp(arch, "qwen3") == 0;
    const int gemma = strcmp(arch, "gemma2") == 0 ? 2 : strcmp(arch, "gemma3") == 0 ? 3 : 0;
    c->rope_type = strncmp(arch, "qwen", 4) == 0 || gemma ? MEND_ROPE_NEOX : MEND_ROPE_NORM;

    if ((rc = key_int(L, "embedding_length", 1, 1, 1 << 20, &c->dim))) return rc;
    if ((rc = key_int(L, "block_count", 1, 1, 4096, &c->n_layers))) return rc;
    if ((rc = key_int(L, "attention.head_count", 1, 1, 4096, &c->n_heads))) return rc;
    c->n_kv_heads = c->n_heads;
    if ((rc = key_int(L, "attention.head_count_kv", 0, 1, c->n_heads, &c->n_kv_heads))) return rc;
    if ((rc = key_int(L, "feed_forward_length", 1, 1, 1 << 20, &c->hidden_dim))) return rc;
    if ((rc = key_int(L, "context_length", 1, 1, 1 << 30, &c->ctx_len))) return rc;
    if (c->n_heads % c->n_kv_heads)
        return mend_set_error(MEND_EFORMAT, "%s: %s.attention.head_count %d is not a multiple of "
                              "head_count_kv %d", L->path, arch, c->n_heads, c->n_kv_heads);
    c->head_dim = c->dim % c->n_heads == 0 ? c->dim / c->n_heads : 0;
    if ((rc = key_int(L, "attention.key_length", 0, 2, 4096, &c->head_dim))) return rc;
    if (c->head_dim == 0)
        return mend_set_error(MEND_EFORMAT, "%s: %s.embedding_length %d is not a multiple of head_count %d "
                              "and %s.attention.key_length is absent", L->path, arch, c->dim,
                              c->n_heads, arch);
    int v_len = c->head_dim;
    if ((rc = key_int(L, "attention.value_length", 0, 1, 4096, &v_len))) return rc;
    if (v_len != c->head_dim)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: %s.attention.value_length %d differs from key_length %d",
                              L->path, arch, v_len, c->head_dim);
    if (c->head_dim % 2)
        return mend_set_error(MEND_EFORMAT, "%s: head size %d is odd; RoPE rotates pairs", L->path, c->head_dim);
    int rope_dims = c->head_dim;
    if ((rc = key_int(L, "rope.dimension_count", 0, 1, 4096, &rope_dims))) return rc;
    if (rope_dims != c->head_dim)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: %s.rope.dimension_count is %d, expected the head size %d "
                              "(partial rotary embeddings are not supported)", L->path, arch, rope_dims,
                              c->head_dim);
    c->rope_theta = 10000.0f;
    if ((rc = key_float(L, "rope.freq_base", 0, 1e-3, 1e12, &c->rope_theta))) return rc;
    if ((rc = key_float(L, opt ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon", 1, 1e-12,
                        0.5, &c->norm_eps)))
        return rc;
    if (opt) {   /* LayerNorm with bias, learned positions, ReLU without a gate */
        c->rope_type = MEND_ROPE_NONE;
        c->rope_theta = 0.0f;
        c->layer_norm = 1;
        c->ffn_plain = 1;
        c->act = MEND_ACT_RELU;
        c->n_pos = c->ctx_len;
        if (c->n_kv_heads != c->n_heads || c->n_pos > (1 << 24))
            return mend_set_error(MEND_EFORMAT, "%s: opt has %d kv heads for %d heads and %d positions; expected "
                                  "multi-head attention and at most %d positions", L->path, c->n_kv_heads,
                                  c->n_heads, c->n_pos, 1 << 24);
    }

    /* features that change the math and are not implemented */
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const gguf_kv *kv = mend_gguf_find(L->g, key);
    if (kv && kv->type == GGUF_TYPE_STRING && strcmp(kv->v.s, "none") != 0 && kv->v.s[0])
        return mend_set_error(MEND_EUNSUPPORTED, "%s: %s is '%.40s'; RoPE scaling is not supported", L->path,
                              key, kv->v.s);
    int experts = 0;
    if ((rc = key_int(L, "expert_count", 0, 0, 1 << 16, &experts))) return rc;
    if (experts > 0)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: %s.expert_count is %d; mixture-of-experts models are "
                              "not supported", L->path, arch, experts);
    if ((rc = read_rope_freqs(L))) return rc;

    /* vocabulary: the key when present, else the embedding rows */
    const gguf_tensor *te = mend_gguf_find_tensor(L->g, "token_embd.weight");
    if (!te) return mend_set_error(MEND_EFORMAT, "%s: tensor 'token_embd.weight' is missing", L->path);
    int64_t nv = te->n_dims >= 2 ? te->ne[1] : 0;
    if (nv < 1 || nv > (1 << 24))
        return mend_set_error(MEND_EFORMAT, "%s: tensor 'token_embd.weight' has %lld rows, expected 1..%d",
                              L->path, (long long)nv, 1 << 24);
    c->n_vocab = (int)nv;
    int kv_vocab = c->n_vocab;
    if ((rc = key_int(L, "vocab_size", 0, 1, 1 << 24, &kv_vocab))) return rc;
    if (kv_vocab != c->n_vocab)
        return mend_set_error(MEND_EFORMAT, "%s: %s.vocab_size is %d but tensor 'token_embd.weight' has %d rows",
                              L->path, arch, kv_vocab, c->n_vocab);
    return gemma ? read_gemma_config(L, gemma) : 0;
}

/* ---- tensors --------------------------------------------------------------------- */

/* Find a tensor and check it against the expected shape (ne0 = cols, ne1 =
 * rows; ne1 == 0 for a vector) and against the file. *out = NULL when absent
 * and optional. */
static int get_tensor(loader *L, const char *name, int required, int64_t ne0, int64_t ne1,
                      const gguf_tensor **out) {
    *out = NULL;
    const gguf_tensor *t = mend_gguf_find_tensor(L->g, name);
    if (!t) {
        if (!required) return 0;
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' is missing", L->path, name);
    }
    if (L->generic && t->type == MEND_TYPE_I8 && ne1 && t->n_dims == 2) {
        /* mend's generic rows (docs/formats.md): ne = [row_bytes, rows] */
        const int64_t cols = mend_qfmt_cols_from_row_bytes(&L->gen, (size_t)t->ne[0]);
        const uint8_t *base = L->g->map.data, *p = (const uint8_t *)t->data;
        if (cols != ne0 || t->ne[1] != ne1 || t->nbytes != (size_t)t->ne[0] * (size_t)t->ne[1])
            return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' (generic rows of %lld bytes) does not hold [%lld, %lld] "
                                  "weights", L->path, name, (long long)t->ne[0], (long long)ne0, (long long)ne1);
        if (!p || !base || p < base || (size_t)(p - base) > L->g->map.size ||
            t->nbytes > L->g->map.size - (size_t)(p - base))
            return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' data lies outside the file", L->path, name);
        *out = t;
        return 0;
    }
    const int want_dims = ne1 ? 2 : 1;
    int64_t ne[4] = {1, 1, 1, 1};
    const uint32_t nd = t->n_dims <= 4 ? t->n_dims : 4;
    for (uint32_t i = 0; i < nd; i++) ne[i] = t->ne[i];
    int shape_ok = ne[0] == ne0 && ne[1] == (ne1 ? ne1 : 1) && ne[2] == 1 && ne[3] == 1 &&
                   t->n_dims >= 1 && t->n_dims <= 4;
    if (!shape_ok) {
        char got[128], want[64];
        int k = snprintf(got, sizeof got, "[");
        for (uint32_t i = 0; i < nd && k < (int)sizeof got - 24; i++)
            k += snprintf(got + k, sizeof got - k, i ? ", %lld" : "%lld", (long long)ne[i]);
        snprintf(got + k, sizeof got - k, "]");
        if (want_dims == 2) snprintf(want, sizeof want, "[%lld, %lld]", (long long)ne0, (long long)ne1);
        else snprintf(want, sizeof want, "[%lld]", (long long)ne0);
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' has shape %s, expected %s (ggml order: "
                              "columns first)", L->path, name, got, want);
    }
    const mend_type_traits *tr = mend_type_get(t->type);
    if (!tr || !tr->name)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: tensor '%s' has unknown ggml type %u", L->path, name,
                              t->type);
    const size_t rb = mend_row_size(t->type, ne0);
    if (rb == 0)
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' rows have %lld values, not a multiple of the %s "
                              "block size %lld", L->path, name, (long long)ne0, tr->name,
                              (long long)tr->blck_size);
    size_t bytes;
    if (!mend_mul_ok(rb, (size_t)(ne1 ? ne1 : 1), &bytes))
        return mend_set_error(MEND_ERANGE, "%s: tensor '%s' size overflows", L->path, name);
    if (t->nbytes != bytes)
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' holds %zu bytes, expected %zu for %s [%lld, %lld]",
                              L->path, name, t->nbytes, bytes, tr->name, (long long)ne0,
                              (long long)(ne1 ? ne1 : 1));
    const uint8_t *base = L->g->map.data, *p = (const uint8_t *)t->data;
    if (!p || !base || p < base || (size_t)(p - base) > L->g->map.size ||
        bytes > L->g->map.size - (size_t)(p - base))
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s' data (%zu bytes) lies outside the file", L->path,
                              name, bytes);
    *out = t;
    return 0;
}

static int push_job(loader *L, const gguf_tensor *t, int64_t rows, int64_t cols, const float **vec,
                    mend_mat *mat) {
    if (L->n_jobs == L->cap_jobs) {
        int cap = L->cap_jobs ? 2 * L->cap_jobs : 64;
        conv_job *j = realloc(L->jobs, (size_t)cap * sizeof *j);
        if (!j) return mend_set_error(MEND_ENOMEM, "%s: out of memory planning the weight arena", L->path);
        L->jobs = j;
        L->cap_jobs = cap;
    }
    size_t n, off = (L->arena_floats + 15) & ~(size_t)15;   /* 64-byte aligned slots */
    if (!mend_mul_ok((size_t)rows, (size_t)cols, &n) || !mend_add_ok(off, n, &L->arena_floats))
        return mend_set_error(MEND_ERANGE, "%s: weight arena size overflows", L->path);
    L->jobs[L->n_jobs++] = (conv_job){t, rows, cols, off, vec, mat};
    return 0;
}

/* One row of any type to f32 (gen: mend's generic format for I8 rows). */
static int conv_row(uint32_t type, const void *src, float *dst, int64_t n, const mend_qfmt *gen) {
    if (type == MEND_TYPE_I8 && gen) return mend_dequantize_row_fmt(gen, src, dst, n);
    if (type == MEND_TYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return 0;
    }
    return mend_dequantize_row(type, src, dst, n);
}

static int aligned_f32(const gguf_tensor *t) {
    return t->type == MEND_TYPE_F32 && ((uintptr_t)t->data % sizeof(float)) == 0;
}

/* A vector (norm or bias) of n values: in place when f32, else converted. */
static int load_vec(loader *L, const char *name, int required, int64_t n, const float **dst) {
    const gguf_tensor *t;
    int rc = get_tensor(L, name, required, n, 0, &t);
    if (rc || !t) return rc;
    if (aligned_f32(t)) {
        *dst = (const float *)t->data;
        return 0;
    }
    return push_job(L, t, 1, n, dst, NULL);
}

/* A matrix (rows, cols): the packed view always; the f32 copy unless keep_packed. */
static int load_mat(loader *L, const char *name, int required, int64_t rows, int64_t cols, mend_mat *dst,
                    mend_mat *packed) {
    const gguf_tensor *t;
    int rc = get_tensor(L, name, required, cols, rows, &t);
    if (rc || !t) return rc;
    *packed = (mend_mat){t->type, rows, cols, t->data, mend_row_size(t->type, cols), NULL};
    if (t->type == MEND_TYPE_I8) packed->row_bytes = (size_t)t->ne[0];
    *dst = *packed;
    if ((L->keep_packed && t->type != MEND_TYPE_I8) || aligned_f32(t)) return 0;
    return push_job(L, t, rows, cols, NULL, dst);
}

static int map_tensors(loader *L) {
    mend_model *m = L->m;
    const mend_config *c = &m->cfg;
    const int64_t dim = c->dim, qd = (int64_t)c->n_heads * c->head_dim,
                  kvd = (int64_t)c->n_kv_heads * c->head_dim, hid = c->hidden_dim;
    int rc;
    m->layers = calloc((size_t)c->n_layers * 2, sizeof *m->layers);
    if (!m->layers) return mend_set_error(MEND_ENOMEM, "%s: out of memory for %d layers", L->path, c->n_layers);
    m->layers_packed = m->layers + c->n_layers;

    if ((rc = load_mat(L, "token_embd.weight", 1, c->n_vocab, dim, &m->tok_embd, &m->tok_embd_packed))) return rc;
    if ((rc = load_vec(L, "output_norm.weight", 1, dim, &m->out_norm))) return rc;
    if (c->layer_norm && (rc = load_vec(L, "output_norm.bias", 1, dim, &m->out_norm_b))) return rc;
    if (c->n_pos) {   /* f32 in place, any other type converted */
        const gguf_tensor *t;
        if ((rc = get_tensor(L, "position_embd.weight", 1, dim, c->n_pos, &t))) return rc;
        if (aligned_f32(t)) m->cfg.pos_embd = (const float *)t->data;
        else if ((rc = push_job(L, t, c->n_pos, dim, &m->cfg.pos_embd, NULL))) return rc;
    }
    if ((rc = load_mat(L, "output.weight", 0, c->n_vocab, dim, &m->output, &m->output_packed))) return rc;
    m->cfg.tied = m->output.data == NULL;

    const int biases = strcmp(c->arch, "qwen2") == 0 || strcmp(c->arch, "opt") == 0;
    const int opt = strcmp(c->arch, "opt") == 0;
    char name[96];
#define NAME(s) (snprintf(name, sizeof name, "blk.%d." s, l), name)
    for (int l = 0; l < c->n_layers; l++) {
        mend_layer *Y = &m->layers[l], *P = &m->layers_packed[l];
        if ((rc = load_vec(L, NAME("attn_norm.weight"), 1, dim, &Y->attn_norm))) return rc;
        if ((rc = load_vec(L, NAME("ffn_norm.weight"), 1, dim, &Y->ffn_norm))) return rc;
        if ((rc = load_mat(L, NAME("attn_q.weight"), 1, qd, dim, &Y->wq, &P->wq))) return rc;
        if ((rc = load_mat(L, NAME("attn_k.weight"), 1, kvd, dim, &Y->wk, &P->wk))) return rc;
        if ((rc = load_mat(L, NAME("attn_v.weight"), 1, kvd, dim, &Y->wv, &P->wv))) return rc;
        if ((rc = load_mat(L, NAME("attn_output.weight"), 1, dim, qd, &Y->wo, &P->wo))) return rc;
        if (!c->ffn_plain && (rc = load_mat(L, NAME("ffn_gate.weight"), 1, hid, dim, &Y->w_gate, &P->w_gate)))
            return rc;
        if ((rc = load_mat(L, NAME("ffn_up.weight"), 1, hid, dim, &Y->w_up, &P->w_up))) return rc;
        if ((rc = load_mat(L, NAME("ffn_down.weight"), 1, dim, hid, &Y->w_down, &P->w_down))) return rc;
        if ((rc = load_vec(L, NAME("attn_q.bias"), biases, qd, &Y->bq))) return rc;
        if ((rc = load_vec(L, NAME("attn_k.bias"), biases, kvd, &Y->bk))) return rc;
        if ((rc = load_vec(L, NAME("attn_v.bias"), biases, kvd, &Y->bv))) return rc;
        if (opt && ((rc = load_vec(L, NAME("attn_output.bias"), 1, dim, &Y->bo)) ||
                    (rc = load_vec(L, NAME("ffn_up.bias"), 1, hid, &Y->b_up)) ||
                    (rc = load_vec(L, NAME("ffn_down.bias"), 1, dim, &Y->b_down)) ||
                    (rc = load_vec(L, NAME("attn_norm.bias"), 1, dim, &Y->attn_norm_b)) ||
                    (rc = load_vec(L, NAME("ffn_norm.bias"), 1, dim, &Y->ffn_norm_b))))
            return rc;
        if (c->qk_norm && ((rc = load_vec(L, NAME("attn_q_norm.weight"), 1, c->head_dim, &Y->q_norm)) ||
                           (rc = load_vec(L, NAME("attn_k_norm.weight"), 1, c->head_dim, &Y->k_norm))))
            return rc;
        if (c->post_norms && ((rc = load_vec(L, NAME("post_attention_norm.weight"), 1, dim, &Y->post_attn_norm)) ||
                              (rc = load_vec(L, NAME("post_ffw_norm.weight"), 1, dim, &Y->post_ffn_norm))))
            return rc;
    }
#undef NAME
    return 0;
}

/* Fill the arena: every job's rows, in parallel chunks. */
static int convert(loader *L) {
    mend_model *m = L->m;
    if (L->n_jobs == 0) return 0;
    size_t bytes;
    if (!mend_mul_ok(L->arena_floats, sizeof(float), &bytes))
        return mend_set_error(MEND_ERANGE, "%s: weight arena size overflows", L->path);
    void *arena = NULL;
    if (posix_memalign(&arena, 64, bytes ? bytes : 64) != 0)
        return mend_set_error(MEND_ENOMEM, "%s: cannot allocate %zu MiB for the f32 weights", L->path,
                              bytes >> 20);
    m->arena = arena;
    m->arena_bytes = bytes;
    float *base = arena;

    /* The first row of every tensor is converted serially, so an unsupported
     * type fails with the tensor's name before the parallel loop. */
    for (int j = 0; j < L->n_jobs; j++) {
        const conv_job *J = &L->jobs[j];
        int rc = conv_row(J->t->type, J->t->data, base + J->off, J->cols, L->generic ? &L->gen : NULL);
        if (rc)
            return mend_error_prefix(rc, "%s: tensor '%s' (%s)", L->path, J->t->name,
                                     mend_type_name(J->t->type));
    }
    /* chunks of up to 64 rows */
    int64_t n_chunks = 0;
    for (int j = 0; j < L->n_jobs; j++) n_chunks += (L->jobs[j].rows + 63) / 64;
    int64_t *chunk = malloc((size_t)n_chunks * 2 * sizeof *chunk);
    if (!chunk) return mend_set_error(MEND_ENOMEM, "%s: out of memory planning the conversion", L->path);
    int64_t k = 0;
    for (int j = 0; j < L->n_jobs; j++)
        for (int64_t r = 0; r < L->jobs[j].rows; r += 64) {
            chunk[2 * k] = j;
            chunk[2 * k + 1] = r;
            k++;
        }
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t i = 0; i < n_chunks; i++) {
        const conv_job *J = &L->jobs[chunk[2 * i]];
        const int64_t r0 = chunk[2 * i + 1], r1 = r0 + 64 < J->rows ? r0 + 64 : J->rows;
        const size_t rb = J->t->nbytes / (size_t)J->rows;
        for (int64_t r = r0; r < r1; r++) {
            if (conv_row(J->t->type, (const uint8_t *)J->t->data + (size_t)r * rb,
                                    base + J->off + (size_t)r * J->cols, J->cols, L->generic ? &L->gen : NULL)) {
#pragma omp atomic write
                failed = 1;
            }
        }
    }
    free(chunk);
    if (failed) return mend_set_error(MEND_EFORMAT, "%s: dequantizing the weights failed", L->path);

    for (int j = 0; j < L->n_jobs; j++) {
        const conv_job *J = &L->jobs[j];
        const float *p = base + J->off;
        if (J->vec) *J->vec = p;
        if (J->mat)
            *J->mat = (mend_mat){MEND_TYPE_F32, J->rows, J->cols, p, (size_t)J->cols * sizeof(float), NULL};
    }
    return 0;
}

int mend_model_load_gguf(mend_model **out, const char *path, const mend_load_opts *opts) {
    if (!out || !path) return mend_set_error(MEND_EINVAL, "mend_model_load_gguf: out and path are required");
    *out = NULL;
    mend_model *m = calloc(1, sizeof *m);
    if (!m) return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    loader L = {.m = m, .path = path, .keep_packed = opts ? opts->keep_packed : 0};
    int rc;
    if (!(m->path = mend_strdup(path))) {
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    if ((rc = mend_gguf_open(&m->gguf, path))) goto fail;
    L.g = m->gguf;
    if ((rc = read_config(&L))) goto fail;
    if ((rc = mend_qfmt_read_meta(m->gguf, &L.gen, &L.generic))) goto fail;
    if ((rc = map_tensors(&L))) goto fail;
    if ((rc = convert(&L))) goto fail;
    if (m->cfg.tied) {
        m->output = m->tok_embd;
        m->output_packed = m->tok_embd_packed;
    }
    /* the packed layers share the norms and biases with the f32 ones */
    for (int l = 0; l < m->cfg.n_layers; l++) {
        mend_layer *Y = &m->layers[l], *P = &m->layers_packed[l];
        P->attn_norm = Y->attn_norm;
        P->ffn_norm = Y->ffn_norm;
        P->bq = Y->bq;
        P->bk = Y->bk;
        P->bv = Y->bv;
        P->q_norm = Y->q_norm;
        P->k_norm = Y->k_norm;
        P->post_attn_norm = Y->post_attn_norm;
        P->post_ffn_norm = Y->post_ffn_norm;
        P->attn_norm_b = Y->attn_norm_b;
        P->ffn_norm_b = Y->ffn_norm_b;
        P->bo = Y->bo;
        P->b_up = Y->b_up;
        P->b_down = Y->b_down;
    }
    if (mend_gguf_find(m->gguf, "tokenizer.ggml.model")) {
        if ((rc = mend_tokenizer_from_gguf(&m->tok, m->gguf))) goto fail;
    }
    if ((rc = mend_model_validate(m))) goto fail;
    free(L.jobs);
    *out = m;
    return 0;
fail:
    free(L.jobs);
    mend_model_free(m);
    return rc;
}
