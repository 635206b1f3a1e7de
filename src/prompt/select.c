/* Per-input prompt selection (see select.h). */
#define _GNU_SOURCE
#include "prompt/select.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/attn_probe.h"
#include "model/model.h"
#include "prompt/router.h"
#include "util/util.h"

#define SELECT_DEFAULT_TOKENS 512

struct mend_selector {
    const mend_model *m;
    const mend_bank *b;
    mend_select_spec spec;
    int K, nv, dim, n_vocab;
    mend_probe *probe;          /* attention (K blocks) or router (no blocks) */
    float *mass;                /* (l1-l0, H, K+1) */
    float *mass_many;           /* mend_selector_pick_many: (max_tokens, l1-l0, H, K+1), on first use */
    int32_t *toks_many;         /* (max_tokens) */
    int *off_many;              /* (max_tokens + 1) */
    float *hidden;              /* router: (dim) */
    mend_state **states;        /* loss: one per prompt, prompt KV at [0, nv) */
    float *logits;              /* loss: (max_tokens, n_vocab) */
    float *feat;                /* learned: (dim) */
};

const char *mend_select_kind_name(int kind) {
    switch (kind) {
    case MEND_SELECT_NONE: return "none";
    case MEND_SELECT_FIXED: return "fixed";
    case MEND_SELECT_ATTENTION: return "attention";
    case MEND_SELECT_ROUTER: return "router";
    case MEND_SELECT_LOSS: return "loss";
    case MEND_SELECT_ORACLE: return "oracle";
    case MEND_SELECT_LEARNED: return "learned";
    default: return "?";
    }
}

int mend_select_parse_layers(const char *s, int *l0, int *l1) {
    if (!s) return mend_set_error(MEND_EINVAL, "select layers: no text");
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || *end != ':') return mend_set_error(MEND_EINVAL, "select layers '%s': expected A:B", s);
    const char *t = end + 1;
    long b = strtol(t, &end, 10);
    if (end == t || *end || a < 0 || b <= a || b > 100000)
        return mend_set_error(MEND_EINVAL, "select layers '%s': expected A:B with 0 <= A < B", s);
    *l0 = (int)a;
    *l1 = (int)b;
    return 0;
}

int mend_select_parse(const char *s, const mend_bank *b, mend_select_spec *out) {
    if (!s || !out) return mend_set_error(MEND_EINVAL, "select: no selector given");
    memset(out, 0, sizeof *out);
    out->fixed = -1;
    out->layer0 = b ? b->layer0 : 0;
    out->layer1 = b ? b->layer1 : 3;
    out->max_tokens = SELECT_DEFAULT_TOKENS;
    if (!strcmp(s, "none")) out->kind = MEND_SELECT_NONE;
    else if (!strcmp(s, "attention")) out->kind = MEND_SELECT_ATTENTION;
    else if (!strcmp(s, "attention-calibrated")) {
        out->kind = MEND_SELECT_ATTENTION;
        out->calibrated = 1;
        if (b && !b->attn_offsets)
            return mend_set_error(MEND_EINVAL, "select attention-calibrated: %s%s%s has no attention_calibration "
                                  "(add one with mend bank calibrate BANK_DIR MODEL)", b->dir ? b->dir : "",
                                  b->dir ? "/" : "", MEND_BANK_FILE);
    }
    else if (!strcmp(s, "router")) out->kind = MEND_SELECT_ROUTER;
    else if (!strcmp(s, "loss")) out->kind = MEND_SELECT_LOSS;
    else if (!strcmp(s, "oracle")) out->kind = MEND_SELECT_ORACLE;
    else if (!strcmp(s, "learned")) out->kind = MEND_SELECT_LEARNED;
    else if (!strncmp(s, "fixed:", 6)) {
        out->kind = MEND_SELECT_FIXED;
        out->fixed = mend_bank_find(b, s + 6);
        if (out->fixed < 0)
            return mend_set_error(MEND_EINVAL, "select '%s': the bank has no prompt named '%s'", s, s + 6);
    } else {
        return mend_set_error(MEND_EINVAL, "select '%s': expected attention, attention-calibrated, router, loss, "
                              "learned, oracle, fixed:NAME or none", s);
    }
    if (out->kind != MEND_SELECT_NONE && (!b || b->n < 1))
        return mend_set_error(MEND_EINVAL, "select '%s' needs a bank with prompts", s);
    return 0;
}

int mend_select_argmax(const float *v, int n) {
    int best = -1;
    for (int k = 0; k < n; k++) {
        if (isnan(v[k])) continue;
        if (best < 0 || v[k] > v[best]) best = k;
    }
    return best;
}

void mend_selector_free(mend_selector *s) {
    if (!s) return;
    mend_probe_free(s->probe);
    if (s->states)
        for (int k = 0; k < s->K; k++) mend_state_free(s->states[k]);
    free(s->states);
    free(s->mass);
    free(s->mass_many);
    free(s->toks_many);
    free(s->off_many);
    free(s->hidden);
    free(s->logits);
    free(s->feat);
    free(s);
}

int mend_selector_new(mend_selector **out, const mend_model *m, const mend_bank *b, const mend_select_spec *spec) {
    if (!out) return mend_set_error(MEND_EINVAL, "mend_selector_new: out is NULL");
    *out = NULL;
    if (!m || !b || !spec) return mend_set_error(MEND_EINVAL, "mend_selector_new: model, bank and spec needed");
    mend_model_info info;
    mend_model_get_info(m, &info);
    mend_selector *s = calloc(1, sizeof *s);
    if (!s) return mend_set_error(MEND_ENOMEM, "selector: out of memory");
    s->m = m;
    s->b = b;
    s->spec = *spec;
    if (s->spec.max_tokens <= 0) s->spec.max_tokens = SELECT_DEFAULT_TOKENS;
    s->K = b->n;
    s->nv = b->nv;
    s->dim = info.dim;
    s->n_vocab = info.n_vocab;
    int rc = 0;
    const int T = s->spec.max_tokens;
    if (spec->kind == MEND_SELECT_FIXED && (spec->fixed < 0 || spec->fixed >= s->K)) {
        rc = mend_set_error(MEND_EINVAL, "selector: fixed prompt %d outside the bank's %d", spec->fixed, s->K);
        goto fail;
    }
    if (spec->kind == MEND_SELECT_ATTENTION || spec->kind == MEND_SELECT_LOSS) {
        for (int k = 0; k < s->K; k++)
            if (!b->p[k].emb) {
                rc = mend_set_error(MEND_EINVAL, "selector: prompt '%s' of the bank is not loaded", b->p[k].name);
                goto fail;
            }
    }
    if (spec->kind == MEND_SELECT_ATTENTION) {
        if (spec->layer0 < 0 || spec->layer1 <= spec->layer0 || spec->layer1 > info.n_layers) {
            rc = mend_set_error(MEND_ERANGE, "selector: attention layers [%d, %d) outside the model's %d layers",
                                spec->layer0, spec->layer1, info.n_layers);
            goto fail;
        }
        if (spec->calibrated &&
            (!b->attn_offsets || b->attn_layer0 != spec->layer0 || b->attn_layer1 != spec->layer1)) {
            rc = mend_set_error(MEND_EINVAL, "selector attention-calibrated: the bank's attention_calibration was "
                                "measured on layers %d:%d, the selector probes %d:%d", b->attn_layer0,
                                b->attn_layer1, spec->layer0, spec->layer1);
            goto fail;
        }
        const float **pr = malloc((size_t)s->K * sizeof *pr);
        if (!pr) {
            rc = mend_set_error(MEND_ENOMEM, "selector: out of memory");
            goto fail;
        }
        for (int k = 0; k < s->K; k++) pr[k] = b->p[k].emb;
        rc = mend_probe_new(&s->probe, m, pr, s->K, s->nv, T);
        free(pr);
        if (rc) goto fail;
        s->mass = malloc((size_t)(spec->layer1 - spec->layer0) * info.n_heads * (s->K + 1) * sizeof(float));
        if (!s->mass) {
            rc = mend_set_error(MEND_ENOMEM, "selector: out of memory");
            goto fail;
        }
    } else if (spec->kind == MEND_SELECT_ROUTER) {
        for (int k = 0; k < s->K; k++)
            if (!b->p[k].centroid) {
                rc = mend_set_error(MEND_EINVAL, "selector router: prompt '%s' has no centroid in %s (rebuild the "
                                    "bank with mend bank build)", b->p[k].name, MEND_BANK_FILE);
                goto fail;
            }
        if ((rc = mend_probe_new(&s->probe, m, NULL, 0, 0, T))) goto fail;
        if (!(s->hidden = malloc((size_t)s->dim * sizeof(float)))) {
            rc = mend_set_error(MEND_ENOMEM, "selector: out of memory");
            goto fail;
        }
    } else if (spec->kind == MEND_SELECT_LEARNED) {
        const mend_learned_router *r = b->learned;
        if (!r) {
            rc = mend_set_error(MEND_EINVAL, "selector learned: %s%s%s has no learned_router (add one with mend bank "
                                "router BANK_DIR MODEL)", b->dir ? b->dir : "", b->dir ? "/" : "", MEND_BANK_FILE);
            goto fail;
        }
        if (r->K != s->K || r->dim != s->dim) {
            rc = mend_set_error(MEND_EINVAL, "selector learned: learned_router of %s is %d x %d, the bank has %d "
                                "prompts and the model dim %d", MEND_BANK_FILE, r->K, r->dim, s->K, s->dim);
            goto fail;
        }
        if (!(s->feat = malloc((size_t)s->dim * sizeof(float)))) {
            rc = mend_set_error(MEND_ENOMEM, "selector: out of memory");
            goto fail;
        }
    } else if (spec->kind == MEND_SELECT_LOSS) {
        s->states = calloc((size_t)s->K, sizeof *s->states);
        size_t nl;
        if (!s->states || !mend_mul_ok((size_t)T, (size_t)s->n_vocab, &nl) ||
            !(s->logits = malloc(nl * sizeof(float)))) {
            rc = mend_set_error(MEND_ENOMEM, "selector: out of memory");
            goto fail;
        }
        const int batch = T < 256 ? T : 256;
        for (int k = 0; k < s->K; k++) {
            if ((rc = mend_state_new(&s->states[k], m, s->nv + T, batch > s->nv ? batch : s->nv))) goto fail;
            if ((rc = mend_forward(s->states[k], NULL, b->p[k].emb, s->nv, 0, NULL, 0))) goto fail;
        }
    }
    *out = s;
    return 0;
fail:
    mend_selector_free(s);
    return rc;
}

size_t mend_selector_kv_bytes(const mend_selector *s) {
    if (!s) return 0;
    if (s->spec.kind == MEND_SELECT_ATTENTION) return mend_probe_prompt_kv_bytes(s->probe);
    if (s->spec.kind == MEND_SELECT_LOSS) {
        mend_model_info info;
        mend_model_get_info(s->m, &info);
        return (size_t)s->K * info.n_layers * s->nv * info.n_kv_heads * info.head_dim * 2 * sizeof(float);
    }
    return 0;
}

/* Score of prompt k: its block's mass averaged over the probed layers and
 * the heads. mass (l1-l0, H, K+1) -> sc (K) */
static void attention_scores(const mend_selector *s, const float *mass, float *sc) {
    mend_model_info info;
    mend_model_get_info(s->m, &info);
    const int nl = s->spec.layer1 - s->spec.layer0, H = info.n_heads, K = s->K;
    for (int k = 0; k < K; k++) {
        double acc = 0.0;
        for (int l = 0; l < nl; l++)
            for (int h = 0; h < H; h++) acc += mass[((size_t)l * H + h) * (K + 1) + k];
        sc[k] = (float)(acc / ((double)nl * H));
        if (s->spec.calibrated) sc[k] -= s->b->attn_offsets[k];
    }
}

int mend_selector_pick(mend_selector *s, const int32_t *tokens, int n, int *choice, float *scores) {
    if (!s || !choice) return mend_set_error(MEND_EINVAL, "selector: NULL argument");
    *choice = -1;
    const int K = s->K;
    const mend_select_spec *sp = &s->spec;
    if (sp->kind == MEND_SELECT_NONE || sp->kind == MEND_SELECT_FIXED) {
        *choice = sp->kind == MEND_SELECT_FIXED ? sp->fixed : -1;
        if (scores)
            for (int k = 0; k < K; k++) scores[k] = k == *choice ? 1.0f : 0.0f;
        return 0;
    }
    if (sp->kind == MEND_SELECT_ORACLE)
        return mend_set_error(MEND_EINVAL, "selector oracle needs the example's label: score every prompt and use "
                              "mend_select_oracle_pick");
    if (!tokens || n < 1) return mend_set_error(MEND_EINVAL, "selector: an input of >= 1 tokens is needed");
    /* long inputs: their last max_tokens tokens */
    if (n > sp->max_tokens) {
        tokens += n - sp->max_tokens;
        n = sp->max_tokens;
    }
    float sc_local[MEND_BANK_MAX_PROMPTS];
    float *sc = scores ? scores : sc_local;
    int rc = 0;
    if (sp->kind == MEND_SELECT_ATTENTION) {
        if ((rc = mend_probe_attention(s->probe, tokens, n, sp->layer0, sp->layer1, s->mass, NULL))) return rc;
        attention_scores(s, s->mass, sc);
    } else if (sp->kind == MEND_SELECT_ROUTER) {
        if ((rc = mend_probe_hidden_mean(s->probe, tokens, n, s->hidden))) return rc;
        double hn = 0.0;
        for (int j = 0; j < s->dim; j++) hn += (double)s->hidden[j] * s->hidden[j];
        for (int k = 0; k < K; k++) {
            const float *c = s->b->p[k].centroid;
            double dot = 0.0, cn = 0.0;
            for (int j = 0; j < s->dim; j++) {
                dot += (double)s->hidden[j] * c[j];
                cn += (double)c[j] * c[j];
            }
            sc[k] = hn > 0 && cn > 0 ? (float)(dot / sqrt(hn * cn)) : 0.0f;
        }
    } else if (sp->kind == MEND_SELECT_LEARNED) {
        if ((rc = mend_router_feature(s->m, tokens, n, s->b->learned->normalize, s->feat))) return rc;
        mend_router_logits(s->b->learned, s->feat, sc);
    } else if (sp->kind == MEND_SELECT_LOSS) {
        if (n < 2) {   /* nothing to predict: no evidence, keep the first prompt */
            for (int k = 0; k < K; k++) sc[k] = 0.0f;
        } else {
            const int V = s->n_vocab;
            for (int k = 0; k < K; k++) {
                if ((rc = mend_forward(s->states[k], tokens, NULL, n - 1, s->nv, s->logits, 1))) return rc;
                double nll = 0.0;
#pragma omp parallel for reduction(+ : nll) schedule(static)
                for (int i = 0; i < n - 1; i++) nll += mend_nll_from_logits(s->logits + (size_t)i * V, V, tokens[i + 1]);
                sc[k] = (float)(-nll / (n - 1));
            }
        }
    } else {
        return mend_set_error(MEND_EINVAL, "selector: unknown kind %d", sp->kind);
    }
    *choice = mend_select_argmax(sc, K);
    return 0;
}

int mend_selector_pick_many(mend_selector *s, const int32_t *const *tokens, const int *n, int n_inputs, int *choice,
                            float *scores) {
    if (!s || !tokens || !n || !choice || n_inputs < 0)
        return mend_set_error(MEND_EINVAL, "selector: NULL argument");
    const int K = s->K;
    if (s->spec.kind != MEND_SELECT_ATTENTION) {
        for (int j = 0; j < n_inputs; j++) {
            int rc = mend_selector_pick(s, tokens[j], n[j], &choice[j], scores ? scores + (size_t)j * K : NULL);
            if (rc) return rc;
        }
        return 0;
    }
    const int T = s->spec.max_tokens;
    mend_model_info info;
    mend_model_get_info(s->m, &info);
    const size_t per = (size_t)(s->spec.layer1 - s->spec.layer0) * info.n_heads * (K + 1);
    if (!s->mass_many) {
        s->mass_many = malloc((size_t)T * per * sizeof(float));
        s->toks_many = malloc((size_t)T * sizeof(int32_t));
        s->off_many = malloc(((size_t)T + 1) * sizeof(int));
        if (!s->mass_many || !s->toks_many || !s->off_many)
            return mend_set_error(MEND_ENOMEM, "selector: out of memory");
    }
    float sc_local[MEND_BANK_MAX_PROMPTS];
    /* as many inputs per probe pass as max_tokens holds (each cut to its
     * last max_tokens tokens, as mend_selector_pick does) */
    for (int j0 = 0; j0 < n_inputs;) {
        int m = 0, used = 0;
        s->off_many[0] = 0;
        while (j0 + m < n_inputs) {
            const int j = j0 + m;
            if (!tokens[j] || n[j] < 1) return mend_set_error(MEND_EINVAL, "selector: input %d is empty", j);
            const int len = n[j] < T ? n[j] : T;
            if (used + len > T) break;
            memcpy(s->toks_many + used, tokens[j] + (n[j] - len), (size_t)len * sizeof(int32_t));
            used += len;
            s->off_many[++m] = used;
        }
        int rc = mend_probe_attention_many(s->probe, s->toks_many, s->off_many, m, s->spec.layer0, s->spec.layer1,
                                           s->mass_many);
        if (rc) return rc;
        for (int u = 0; u < m; u++) {
            float *sc = scores ? scores + (size_t)(j0 + u) * K : sc_local;
            attention_scores(s, s->mass_many + (size_t)u * per, sc);
            choice[j0 + u] = mend_select_argmax(sc, K);
        }
        j0 += m;
    }
    return 0;
}

/* Key of one outcome for the oracle: (correct, margin). */
static void oracle_key(const mend_eval_result *r, double *correct, double *margin) {
    *correct = 0.0;
    *margin = -INFINITY;
    switch (r->kind) {
    case MEND_TASK_MC:
    case MEND_TASK_SCHEMA:
        *correct = r->acc;
        if (r->gold >= 0 && r->gold < r->n && r->ll) {
            double other = -INFINITY;
            for (int j = 0; j < r->n; j++)
                if (j != r->gold && r->ll[j] > other) other = r->ll[j];
            *margin = r->n > 1 ? r->ll[r->gold] - other : r->ll[r->gold];
        }
        break;
    case MEND_TASK_LM:
        *correct = r->acc;
        if (r->ll && r->n > 0) *margin = r->ll[0];
        break;
    case MEND_TASK_GEN: *correct = r->em; break;
    default: break;
    }
    if (isnan(*margin)) *margin = -INFINITY;
}

int mend_select_oracle_pick(const mend_eval_result *r, int K) {
    if (!r || K < 1) return -1;
    int best = 0;
    double bc, bm;
    oracle_key(&r[0], &bc, &bm);
    for (int k = 1; k < K; k++) {
        double c, mg;
        oracle_key(&r[k], &c, &mg);
        if (c > bc || (c == bc && mg > bm)) {
            best = k;
            bc = c;
            bm = mg;
        }
    }
    return best;
}

int mend_select_window(const mend_tokenizer *tok, const char *text, size_t len, int w, int n_windows, int window,
                       int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    if (!tok || !text || w < 0 || w >= n_windows || window < 1)
        return mend_set_error(MEND_EINVAL, "window: tokenizer, text and a window index in [0, n_windows) needed");
    /* a window starts at the paragraph start at or after w*len/n_windows and
     * takes the first `window` tokens of the bytes from there */
    size_t off = len / (size_t)n_windows * (size_t)w;
    if (off > 0) {
        const char *q = off < len ? memmem(text + off, len - off, "\n\n", 2) : NULL;
        if (!q) return 0;
        off = (size_t)(q - text);
        while (off < len && (text[off] == '\n' || text[off] == '\r')) off++;
    }
    if (off >= len) return 0;
    const size_t span = (size_t)window * 16;   /* bytes: ample for `window` tokens */
    size_t nb = len - off < span ? len - off : span;
    size_t n_ids = 0;
    int rc = mend_tokenize(tok, text + off, nb, 0, 0, ids, &n_ids);
    if (rc) return rc;
    *n = (int)(n_ids < (size_t)window ? n_ids : (size_t)window);
    return 0;
}

int mend_select_centroid(const mend_model *m, const char *text, size_t len, int n_windows, int window,
                         float *centroid, int *n_used) {
    if (!m || !text || !centroid || n_windows < 1 || window < 2)
        return mend_set_error(MEND_EINVAL, "centroid: model, text, >= 1 window of >= 2 tokens needed");
    if (n_used) *n_used = 0;
    mend_model_info info;
    mend_model_get_info(m, &info);
    const mend_tokenizer *tok = mend_model_tokenizer(m);
    mend_probe *p = NULL;
    int rc = mend_probe_new(&p, m, NULL, 0, 0, window);
    if (rc) return rc;
    double *acc = calloc((size_t)info.dim, sizeof *acc);
    float *h = malloc((size_t)info.dim * sizeof *h);
    if (!acc || !h) {
        rc = mend_set_error(MEND_ENOMEM, "centroid: out of memory");
        goto done;
    }
    int used = 0;
    for (int w = 0; w < n_windows; w++) {
        int32_t *ids = NULL;
        int n = 0;
        if ((rc = mend_select_window(tok, text, len, w, n_windows, window, &ids, &n))) goto done;
        if (n >= 2) {
            rc = mend_probe_hidden_mean(p, ids, n, h);
            if (rc == 0) {
                for (int j = 0; j < info.dim; j++) acc[j] += h[j];
                used++;
            }
        }
        free(ids);
        if (rc) goto done;
    }
    if (used == 0) {
        rc = mend_set_error(MEND_EINVAL, "centroid: the text has no window of >= 2 tokens");
        goto done;
    }
    for (int j = 0; j < info.dim; j++) centroid[j] = (float)(acc[j] / used);
    if (n_used) *n_used = used;
done:
    free(acc);
    free(h);
    mend_probe_free(p);
    return rc;
}

int mend_select_calibrate(const mend_model *m, mend_bank *b, const char *const *texts, const size_t *lens,
                          int n_texts, int n_windows, int window) {
    if (!m || !b || !texts || !lens || n_texts < 1 || n_windows < 1 || window < 1)
        return mend_set_error(MEND_EINVAL, "calibrate: model, bank, texts and >= 1 window needed");
    mend_select_spec spec;
    int rc = mend_select_parse("attention", b, &spec);
    if (rc) return rc;
    spec.max_tokens = window;
    mend_selector *s = NULL;
    if ((rc = mend_selector_new(&s, m, b, &spec))) return rc;
    const int K = b->n;
    double acc[MEND_BANK_MAX_PROMPTS] = {0};
    float sc[MEND_BANK_MAX_PROMPTS];
    int used = 0;
    for (int t = 0; t < n_texts && rc == 0; t++)
        for (int w = 0; w < n_windows && rc == 0; w++) {
            int32_t *ids = NULL;
            int n = 0, pick;
            rc = mend_select_window(mend_model_tokenizer(m), texts[t], lens[t], w, n_windows, window, &ids, &n);
            if (rc == 0 && n >= 1 && (rc = mend_selector_pick(s, ids, n, &pick, sc)) == 0) {
                for (int k = 0; k < K; k++) acc[k] += sc[k];
                used++;
            }
            free(ids);
        }
    mend_selector_free(s);
    if (rc) return rc;
    if (used == 0) return mend_set_error(MEND_EINVAL, "calibrate: the corpora have no window of text");
    float *off = malloc((size_t)K * sizeof *off);
    if (!off) return mend_set_error(MEND_ENOMEM, "calibrate: out of memory");
    for (int k = 0; k < K; k++) off[k] = (float)(acc[k] / used);
    free(b->attn_offsets);
    b->attn_offsets = off;
    b->attn_layer0 = spec.layer0;
    b->attn_layer1 = spec.layer1;
    b->attn_windows = used;
    return 0;
}
