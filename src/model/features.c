/* Features of the model families beyond LLaMA's, one small function each,
 * shared by the inference forward (forward.c), the calibration layer
 * (layer.c) and the prompt trainer (prompt/train.c).
 *
 * llama3 RoPE scaling (HF rope_type "llama3"): with wavelength
 * w_i = 2 pi / f_i of the plain frequency f_i = theta^(-2i/hd),
 *   w_i < orig_ctx / high_freq_factor   -> f_i               (high band kept)
 *   w_i > orig_ctx / low_freq_factor    -> f_i / factor      (low band divided)
 *   otherwise, s = (orig_ctx / w_i - low) / (high - low):
 *                                       -> (1 - s) f_i / factor + s f_i
 * llama.cpp stores the same scaling as the divisor of each frequency,
 * tensor rope_freqs.weight: f_i / rope_freqs[i] (MEND_ROPE_SCALING_FREQS).
 * QK-norm (qwen3): q and k of every head are RMS-normalised over head_dim
 * and scaled by q_norm / k_norm before RoPE.
 * Sliding windows (mistral, gemma3): a query at position p attends to keys
 * at positions p - w + 1 .. p in a layer with window w (HF's mask keeps
 * p - key < w).
 * Gemma 3 (gemma3), each a no-op or the LLaMA behaviour for the other
 * families (their gemma3 config fields are zero):
 *   x    = embd_scale * E[tokens]                    (a caller's vectors: as given)
 *   q   *= attn_scale * sqrt(hd) after the QK-norm    (so that the attention's
 *                                                      1/sqrt(hd) makes attn_scale)
 *   RoPE base rope_theta_swa on the layers with a window, unscaled
 *   x   += rmsnorm(att Woᵀ) * post_attn_norm          (x += att Woᵀ without post_norms)
 *   h    = gelu_tanh(g) * u                           (silu(g) * u for MEND_ACT_SILU)
 *   x   += rmsnorm(h Wdᵀ) * post_ffn_norm
 * Gemma 2 (gemma2) has the same, without QK-norm or a second RoPE base, and
 * soft-caps the attention scores (before the mask and softmax) and the
 * logits: s = c tanh(s / c) with c = attn_softcap, final_softcap.
 * OPT (opt), each again a no-op for the others (zero / NULL config fields):
 *   x    = E[tokens] + P[p]                           (learned positions, every input row, a
 *                                                      caller's vectors too; no RoPE)
 *   norm(x) = (x - mean(x)) / sqrt(var(x) + eps) * w + b   (LayerNorm, biased variance)
 *   h    = relu(x Wuᵀ + b_up)                         (no gate; biases on Wo and Wd too) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/geglu.h"
#include "kernels/ops.h"
#include "kernels/ops_backward.h"
#include "model/model.h"

double mend_rope_inv_freq(const mend_config *c, int i) {
    if (c->rope_type == MEND_ROPE_NONE) return 0.0;   /* tables of the identity, never applied */
    const double f = pow((double)c->rope_theta, -2.0 * i / c->head_dim);
    if (c->rope_scaling == MEND_ROPE_SCALING_FREQS) return f / c->rope_freqs[i];
    if (c->rope_scaling != MEND_ROPE_SCALING_LLAMA3) return f;
    const double pi = 3.14159265358979323846;
    const double wl = 2.0 * pi / f, orig = c->rope_orig_ctx, factor = c->rope_factor;
    const double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
    if (wl < orig / hi) return f;
    if (wl > orig / lo) return f / factor;
    const double s = (orig / wl - lo) / (hi - lo);
    return (1.0 - s) * f / factor + s * f;
}

void mend_rope_tables(const mend_config *c, float *cos_t, float *sin_t, int n, int pos0) {
    if (c->rope_scaling == MEND_ROPE_SCALING_NONE && c->rope_type != MEND_ROPE_NONE) {
        /* the kernel's own tables, bit for bit */
        rope_tables(cos_t, sin_t, n, pos0, c->head_dim, c->rope_theta);
        return;
    }
    const int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        const double f = mend_rope_inv_freq(c, i);
        for (int p = 0; p < n; p++) {
            const double a = (double)(pos0 + p) * f;
            cos_t[(size_t)p * half + i] = (float)cos(a);
            sin_t[(size_t)p * half + i] = (float)sin(a);
        }
    }
}

static void norm_heads(float *x, size_t ldx, int n, int n_heads, int hd, const float *w, float eps) {
    for (int p = 0; p < n; p++) mend_rmsnorm_rows(x + (size_t)p * ldx, x + (size_t)p * ldx, w, n_heads, hd, eps);
}

void mend_qk_norm(const mend_config *c, const mend_layer *L, float *q, size_t ldq, float *k, size_t ldk, int n) {
    if (c->qk_norm) {
        norm_heads(q, ldq, n, c->n_heads, c->head_dim, L->q_norm, c->norm_eps);
        norm_heads(k, ldk, n, c->n_kv_heads, c->head_dim, L->k_norm, c->norm_eps);
    }
    const float f = mend_query_scale(c);
    if (f == 1.0f) return;
    const size_t qd = (size_t)c->n_heads * c->head_dim;
    for (int p = 0; p < n; p++)
        for (size_t j = 0; j < qd; j++) q[(size_t)p * ldq + j] *= f;
}

float mend_query_scale(const mend_config *c) {
    return c->attn_scale != 0.0f ? c->attn_scale * sqrtf((float)c->head_dim) : 1.0f;
}

int mend_rope_local(const mend_config *c, int l) { return c->rope_theta_swa > 0.0f && c->swa_window[l] > 0; }

int mend_rope_has_local(const mend_config *c) {
    for (int l = 0; l < c->n_layers; l++)
        if (mend_rope_local(c, l)) return 1;
    return 0;
}

double mend_rope_local_inv_freq(const mend_config *c, int i) {
    return pow((double)c->rope_theta_swa, -2.0 * i / c->head_dim);
}

void mend_rope_local_tables(const mend_config *c, float *cos_t, float *sin_t, int n, int pos0) {
    rope_tables(cos_t, sin_t, n, pos0, c->head_dim, c->rope_theta_swa);
}

void mend_rmsnorm_rows(float *out, const float *x, const float *w, int n, int dim, float eps) {
    /* one row per call stays under rmsnorm_forward's threshold for threads */
    for (int i = 0; i < n; i++) rmsnorm_forward(out + (size_t)i * dim, x + (size_t)i * dim, w, 1, dim, eps);
}

void mend_embed_scale(const mend_config *c, float *x, int n) {
    if (c->embd_scale == 0.0f || c->embd_scale == 1.0f) return;
    const size_t total = (size_t)n * c->dim;
    for (size_t i = 0; i < total; i++) x[i] *= c->embd_scale;
}

void mend_logit_softcap(const mend_config *c, float *logits, int64_t n) {
    if (c->final_softcap <= 0.0f) return;
    const int64_t V = c->n_vocab;
#pragma omp parallel for schedule(static) if (n * V > (1 << 16))
    for (int64_t i = 0; i < n; i++) vec_softcap(V, logits + i * V, c->final_softcap);
}

void mend_glu_forward(const mend_config *c, float *h, const float *gate, const float *up, int64_t n, int serial) {
    if (c->ffn_plain) {   /* no gate: relu(up) */
        relu_forward(h, up, n);
        return;
    }
    /* chunks short enough that the kernels stay on this thread when asked to */
    const int64_t step = serial ? 4096 : n;
    for (int64_t a = 0; a < n; a += step) {
        const int64_t len = n - a < step ? n - a : step;
        if (c->act == MEND_ACT_GELU_TANH) geglu_forward(h + a, gate + a, up + a, len);
        else swiglu_forward(h + a, gate + a, up + a, len);
    }
}

void mend_glu_backward(const mend_config *c, float *dgate, float *dup, const float *dout, const float *gate,
                       const float *up, int64_t n) {
    if (c->ffn_plain) relu_backward(dup, dout, up, n);   /* dgate is not touched */
    else if (c->act == MEND_ACT_GELU_TANH) geglu_backward(dgate, dup, dout, gate, up, n);
    else swiglu_backward(dgate, dup, dout, gate, up, n);
}

void mend_post_norm_add(const mend_config *c, const float *w, float *x, float *y, int n, int serial) {
    const size_t total = (size_t)n * c->dim;
    if (c->post_norms) {
        if (serial) mend_rmsnorm_rows(y, y, w, n, c->dim, c->norm_eps);
        else rmsnorm_forward(y, y, w, n, c->dim, c->norm_eps);
    }
    for (size_t i = 0; i < total; i++) x[i] += y[i];
}

void mend_norm_forward(const mend_config *c, float *out, const float *x, const float *w, const float *b, int n,
                       int serial) {
    if (!c->layer_norm) {
        if (serial) mend_rmsnorm_rows(out, x, w, n, c->dim, c->norm_eps);
        else rmsnorm_forward(out, x, w, n, c->dim, c->norm_eps);
        return;
    }
    if (!serial) {
        layernorm_forward(out, x, w, b, n, c->dim, c->norm_eps);
        return;
    }
    /* one row per call stays under the kernel's threshold for threads */
    for (int i = 0; i < n; i++)
        layernorm_forward(out + (size_t)i * c->dim, x + (size_t)i * c->dim, w, b, 1, c->dim, c->norm_eps);
}

void mend_norm_backward(const mend_config *c, float *dx, const float *dy, const float *x, const float *w, int n,
                        float beta) {
    if (c->layer_norm) layernorm_backward(dx, dy, x, w, n, c->dim, c->norm_eps, beta);
    else rmsnorm_backward(dx, dy, x, w, n, c->dim, c->norm_eps, beta);
}

void mend_pos_add(const mend_config *c, float *x, int n, int pos0) {
    if (!c->n_pos) return;
    const size_t total = (size_t)n * c->dim;
    const float *p = c->pos_embd + (size_t)pos0 * c->dim;
    for (size_t i = 0; i < total; i++) x[i] += p[i];
}

int mend_pos_check(const mend_config *c, const char *who, int64_t pos0, int64_t n) {
    if (!c->n_pos || (pos0 >= 0 && n >= 0 && pos0 + n <= c->n_pos)) return 0;
    return mend_set_error(MEND_ERANGE, "%s: positions %lld..%lld lie outside the %d learned positions of the "
                          "model (%s)", who, (long long)pos0, (long long)(pos0 + n - 1),
                          c->n_pos, c->arch);
}

int mend_swa_first(const mend_config *c, int l, int pos) {
    const int w = c->swa_window[l];
    return w > 0 && pos - w + 1 > 0 ? pos - w + 1 : 0;
}

int mend_swa_active(const mend_config *c, int n_ctx) {
    for (int l = 0; l < c->n_layers; l++)
        if (c->swa_window[l] > 0 && c->swa_window[l] < n_ctx) return 1;
    return 0;
}

/* Append to buf at *k, keeping it terminated. */
static void put(char *buf, size_t n, size_t *k, const char *s) {
    if (*k >= n) return;
    const int w = snprintf(buf + *k, n - *k, "%s", s);
    *k += w > 0 ? (size_t)w : 0;
}

static void describe_windows(const mend_config *c, char *buf, size_t n, size_t *k) {
    int local = 0, w = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (c->swa_window[l] > 0) local++, w = c->swa_window[l];
    if (!local) return;
    char t[96];
    if (local == c->n_layers) snprintf(t, sizeof t, ", sliding window %d", w);
    else snprintf(t, sizeof t, ", sliding window %d on %d of %d layers", w, local, c->n_layers);
    put(buf, n, k, t);
    if (mend_rope_has_local(c)) {
        snprintf(t, sizeof t, " (RoPE base %g there)", (double)c->rope_theta_swa);
        put(buf, n, k, t);
    }
}

void mend_describe_features(const mend_model *m, char *buf, size_t n) {
    const mend_config *c = &m->cfg;
    size_t k = 0;
    char t[160];
    if (n) buf[0] = 0;
    put(buf, n, &k, c->arch);
    put(buf, n, &k, ": ");
    if (c->n_kv_heads == c->n_heads) snprintf(t, sizeof t, "MHA %d heads", c->n_heads);
    else snprintf(t, sizeof t, "GQA %d/%d", c->n_heads, c->n_kv_heads);
    put(buf, n, &k, t);
    if (m->layers && m->layers[0].bo) put(buf, n, &k, ", biases on every linear map in the layers");
    else if (m->layers && m->layers[0].bq) put(buf, n, &k, ", q/k/v biases");
    if (strcmp(c->arch, "phi3") == 0) put(buf, n, &k, ", fused qkv_proj and gate_up_proj (split at load)");
    if (c->qk_norm) put(buf, n, &k, ", QK-norm");
    describe_windows(c, buf, n, &k);
    if (c->rope_type == MEND_ROPE_NONE) {
        snprintf(t, sizeof t, ", learned positions (%d", c->n_pos);
        put(buf, n, &k, t);
        snprintf(t, sizeof t, c->pos_offset ? ", offset %d)" : ")", c->pos_offset);
    } else {
        snprintf(t, sizeof t, ", rope %s base %g", c->rope_type == MEND_ROPE_NEOX ? "neox" : "norm",
                 (double)c->rope_theta);
    }
    put(buf, n, &k, t);
    if (c->rope_scaling == MEND_ROPE_SCALING_LLAMA3) {
        snprintf(t, sizeof t, " llama3-scaled (factor %g, low %g, high %g, original context %d)",
                 (double)c->rope_factor, (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor,
                 c->rope_orig_ctx);
        put(buf, n, &k, t);
    }
    if (c->rope_scaling == MEND_ROPE_SCALING_FREQS) put(buf, n, &k, " with per-frequency divisors (rope_freqs)");
    put(buf, n, &k, c->layer_norm ? ", LayerNorm with bias" : ", RMSNorm");
    if (c->post_norms) put(buf, n, &k, ", post-norms");
    put(buf, n, &k, c->ffn_plain ? ", ReLU MLP" : c->act == MEND_ACT_GELU_TANH ? ", GeGLU (tanh)" : ", SwiGLU");
    if (c->embd_scale != 0.0f && c->embd_scale != 1.0f) {
        snprintf(t, sizeof t, ", embeddings x %.4g", (double)c->embd_scale);
        put(buf, n, &k, t);
    }
    if (c->attn_scale != 0.0f) {
        snprintf(t, sizeof t, ", attention scale %.4g", (double)c->attn_scale);
        put(buf, n, &k, t);
    }
    if (c->attn_softcap > 0.0f) {
        snprintf(t, sizeof t, ", attention soft-cap %g", (double)c->attn_softcap);
        put(buf, n, &k, t);
    }
    if (c->final_softcap > 0.0f) {
        snprintf(t, sizeof t, ", logit soft-cap %g", (double)c->final_softcap);
        put(buf, n, &k, t);
    }
    if (c->tied) put(buf, n, &k, ", tied embeddings");
}
