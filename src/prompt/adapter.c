/* PEFT prompt-tuning adapters: write, read, and perplexity behind a prompt
 * (see adapter.h). */
#include "prompt/adapter.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/ppl.h"
#include "io/safetensors.h"
#include "kernels/quants.h"
#include "util/util.h"

#define CFG_NAME "adapter_config.json"
#define ST_NAME "adapter_model.safetensors"
#define META_FP "mend.model_fingerprint"
#define META_RECIPE "mend.model_recipe"

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

int mend_adapter_write(const char *dir, const float *emb, int n_virtual, int dim, const mend_adapter_meta *meta) {
    if (!dir || !emb) return mend_set_error(MEND_EINVAL, "mend_adapter_write: dir and embeddings must be given");
    if (n_virtual < 1 || dim < 1)
        return mend_set_error(MEND_EINVAL, "%s: cannot write a prompt of %d x %d", dir, n_virtual, dim);
    for (size_t i = 0; i < (size_t)n_virtual * dim; i++)
        if (!isfinite(emb[i]))
            return mend_set_error(MEND_EINVAL, "%s: prompt value %zu (row %zu) is not finite", dir, i,
                                  i / (size_t)dim);
    const char *init = meta && meta->init ? meta->init : "RANDOM";
    if (strcmp(init, "RANDOM") && strcmp(init, "SAMPLE_VOCAB") && strcmp(init, "TEXT"))
        return mend_set_error(MEND_EINVAL, "%s: prompt_tuning_init '%s' is not RANDOM, SAMPLE_VOCAB or TEXT", dir,
                              init);
    int rc = mend_mkdir_p(dir);
    if (rc) return rc;
    char *st_path = mend_path_join(dir, ST_NAME), *cfg_path = mend_path_join(dir, CFG_NAME);
    char *txt = NULL;
    json_t *j = NULL;
    if (!st_path || !cfg_path) {
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    mend_st_out t = {.name = "prompt_embeddings", .type = MEND_TYPE_F32, .n_dims = 2,
                     .shape = {n_virtual, dim}, .data = emb};
    char fp_hex[17], recipe_hex[17];
    const char *md[8] = {"format", "pt", NULL};
    const mend_fp *on = meta ? meta->trained_on : NULL;
    if (on && on->has_model) {
        int k = 2;
        mend_fp_hex(on->model, fp_hex);
        md[k++] = META_FP;
        md[k++] = fp_hex;
        if (on->has_recipe) {
            mend_fp_hex(on->recipe, recipe_hex);
            md[k++] = META_RECIPE;
            md[k++] = recipe_hex;
        }
        md[k] = NULL;
    }
    if ((rc = mend_safetensors_write(st_path, &t, 1, md))) goto done;

    const int is_text = !strcmp(init, "TEXT");
    j = json_object();
    json_object_set_new(j, "auto_mapping", json_null());
    json_object_set_new(j, "base_model_name_or_path", str_or_null(meta ? meta->base_model : NULL));
    json_object_set_new(j, "inference_mode", json_true());
    json_object_set_new(j, "num_attention_heads", json_integer(meta ? meta->num_attention_heads : 0));
    json_object_set_new(j, "num_layers", json_integer(meta ? meta->num_layers : 0));
    json_object_set_new(j, "num_transformer_submodules", json_integer(1));
    json_object_set_new(j, "num_virtual_tokens", json_integer(n_virtual));
    json_object_set_new(j, "peft_type", json_string("PROMPT_TUNING"));
    json_object_set_new(j, "prompt_tuning_init", json_string(init));
    json_object_set_new(j, "prompt_tuning_init_text", str_or_null(is_text && meta ? meta->init_text : NULL));
    json_object_set_new(j, "revision", json_null());
    json_object_set_new(j, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(j, "token_dim", json_integer(dim));
    json_object_set_new(j, "tokenizer_kwargs", json_null());
    /* PEFT requires a tokenizer name with TEXT init (it is not loaded in
     * inference mode): the base model's */
    json_object_set_new(j, "tokenizer_name_or_path",
                        str_or_null(is_text ? (meta && meta->base_model ? meta->base_model : "unknown") : NULL));
    txt = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!txt) {
        rc = mend_set_error(MEND_ENOMEM, "%s: cannot format the JSON", cfg_path);
        goto done;
    }
    size_t len = strlen(txt);
    char *t2 = realloc(txt, len + 2);
    if (!t2) {
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", cfg_path);
        goto done;
    }
    txt = t2;
    txt[len++] = '\n';
    txt[len] = 0;
    rc = mend_write_file_atomic(cfg_path, txt, len);
done:
    free(txt);
    json_decref(j);
    free(st_path);
    free(cfg_path);
    return rc;
}

/* An optional fingerprint in the safetensors metadata. */
static int meta_fp(const mend_safetensors *st, const char *key, int *has, uint64_t *v) {
    const char *s = mend_safetensors_meta(st, key);
    *has = 0;
    if (!s) return 0;
    int rc = mend_fp_parse(s, v);
    if (rc) return mend_error_prefix(rc, "%s: __metadata__ \"%s\"", st->path, key);
    *has = 1;
    return 0;
}

int mend_adapter_read(const char *dir, int dim, float **emb, int *n_virtual) {
    return mend_adapter_read_fp(dir, dim, emb, n_virtual, NULL);
}

int mend_adapter_read_fp(const char *dir, int dim, float **emb, int *n_virtual, mend_fp *trained_on) {
    if (!dir || !emb || !n_virtual) return mend_set_error(MEND_EINVAL, "mend_adapter_read: NULL argument");
    *emb = NULL;
    *n_virtual = 0;
    mend_fp rec = {0};
    if (!mend_is_dir(dir)) return mend_set_error(MEND_EIO, "%s: not a directory (expected a PEFT adapter)", dir);
    char *cfg_path = mend_path_join(dir, CFG_NAME), *st_path = mend_path_join(dir, ST_NAME);
    char *cfg = NULL;
    json_t *j = NULL;
    mend_safetensors *st = NULL;
    float *e = NULL;
    int rc = 0;
    if (!cfg_path || !st_path) {
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
        goto done;
    }
    long long cfg_nv = -1, cfg_dim = -1;
    if (!mend_file_exists(cfg_path)) {
        rc = mend_set_error(MEND_EIO, "%s: missing (a PEFT prompt adapter has %s and %s)", cfg_path, CFG_NAME,
                            ST_NAME);
        goto done;
    }
    size_t cfg_len = 0;
    if ((rc = mend_read_file(cfg_path, 1u << 20, &cfg, &cfg_len))) goto done;
    json_error_t jerr;
    j = json_loadb(cfg, cfg_len, 0, &jerr);
    if (!j || !json_is_object(j)) {
        rc = mend_set_error(MEND_EFORMAT, "%s: %s at line %d: %s", cfg_path, j ? "not a JSON object" : "malformed JSON",
                            jerr.line, j ? "" : jerr.text);
        goto done;
    }
    const json_t *pt = json_object_get(j, "peft_type");
    if (!json_is_string(pt) || strcmp(json_string_value(pt), "PROMPT_TUNING") != 0) {
        rc = mend_set_error(MEND_EUNSUPPORTED, "%s: peft_type is %s, expected \"PROMPT_TUNING\"", cfg_path,
                            json_is_string(pt) ? json_string_value(pt) : "missing or not a string");
        goto done;
    }
    const json_t *sub = json_object_get(j, "num_transformer_submodules");
    if (json_is_integer(sub) && json_integer_value(sub) != 1) {
        rc = mend_set_error(MEND_EUNSUPPORTED, "%s: num_transformer_submodules is %lld, expected 1 (decoder-only)",
                            cfg_path, (long long)json_integer_value(sub));
        goto done;
    }
    const json_t *nv = json_object_get(j, "num_virtual_tokens"), *td = json_object_get(j, "token_dim");
    if (nv && !json_is_integer(nv)) {
        rc = mend_set_error(MEND_EFORMAT, "%s: num_virtual_tokens is not an integer", cfg_path);
        goto done;
    }
    if (td && !json_is_integer(td)) {
        rc = mend_set_error(MEND_EFORMAT, "%s: token_dim is not an integer", cfg_path);
        goto done;
    }
    if (nv) cfg_nv = json_integer_value(nv);
    if (td) cfg_dim = json_integer_value(td);
    if (cfg_dim >= 0 && cfg_dim != dim) {
        rc = mend_set_error(MEND_EINVAL, "%s: token_dim is %lld but the model's hidden size is %d", cfg_path, cfg_dim,
                            dim);
        goto done;
    }
    if ((rc = mend_safetensors_open(&st, st_path))) goto done;
    if ((rc = meta_fp(st, META_FP, &rec.has_model, &rec.model)) ||
        (rc = meta_fp(st, META_RECIPE, &rec.has_recipe, &rec.recipe)))
        goto done;
    if (rec.has_recipe && !rec.has_model) {
        rc = mend_set_error(MEND_EFORMAT, "%s: __metadata__ has \"%s\" but no \"%s\"", st_path, META_RECIPE, META_FP);
        goto done;
    }
    const mend_st_tensor *t = mend_safetensors_find(st, "prompt_embeddings");
    if (!t) {
        rc = mend_set_error(MEND_EFORMAT, "%s: no tensor \"prompt_embeddings\"", st_path);
        goto done;
    }
    if (t->n_dims != 2 || t->shape[0] < 1 || t->shape[0] > 65536 || t->shape[1] != dim) {
        rc = mend_set_error(MEND_EFORMAT, "%s: prompt_embeddings has %d dims, shape [%lld, %lld], expected "
                            "[n_virtual (1..65536), %d]", st_path, t->n_dims, (long long)t->shape[0],
                            t->n_dims > 1 ? (long long)t->shape[1] : 0LL, dim);
        goto done;
    }
    if (cfg_nv >= 0 && cfg_nv != t->shape[0]) {
        rc = mend_set_error(MEND_EFORMAT, "%s: num_virtual_tokens is %lld but prompt_embeddings has %lld rows",
                            cfg_path, cfg_nv, (long long)t->shape[0]);
        goto done;
    }
    e = malloc((size_t)t->n_elems * sizeof(float));
    if (!e) {
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", st_path);
        goto done;
    }
    if ((rc = mend_safetensors_read_f32(st, t, 0, t->n_elems, e))) goto done;
    for (int64_t i = 0; i < t->n_elems; i++)
        if (!isfinite(e[i])) {
            rc = mend_set_error(MEND_EFORMAT, "%s: prompt_embeddings value %lld (row %lld) is not finite", st_path,
                                (long long)i, (long long)(i / dim));
            goto done;
        }
    *emb = e;
    *n_virtual = (int)t->shape[0];
    if (trained_on) *trained_on = rec;
    e = NULL;
done:
    free(e);
    if (st) mend_safetensors_close(st);
    json_decref(j);
    free(cfg);
    free(cfg_path);
    free(st_path);
    return rc;
}

/* ---- perplexity behind a prompt ---- */

typedef struct prompt_scorer {
    mend_state *s;
    int n_vocab, n_batch, P;
    float *logits;
} prompt_scorer;

/* The window's tokens at positions P .. P+n-1; the prompt's cache entries
 * [0, P) were computed once and are never overwritten. */
static int prompt_score(void *user, const int32_t *win, int n, int first, double *nll) {
    prompt_scorer *ps = user;
    const int V = ps->n_vocab, P = ps->P;
    int pos = 0, rc;
    while (pos < first) {
        int nb = first - pos < ps->n_batch ? first - pos : ps->n_batch;
        if ((rc = mend_forward(ps->s, win + pos, NULL, nb, P + pos, NULL, 0))) return rc;
        pos += nb;
    }
    while (pos < n - 1) {
        int nb = n - 1 - pos < ps->n_batch ? n - 1 - pos : ps->n_batch;
        if ((rc = mend_forward(ps->s, win + pos, NULL, nb, P + pos, ps->logits, 1))) return rc;
#pragma omp parallel for schedule(static)
        for (int j = 0; j < nb; j++)
            nll[pos + j - first] = mend_nll_from_logits(ps->logits + (size_t)j * V, V, win[pos + j + 1]);
        pos += nb;
    }
    return 0;
}

int mend_perplexity_prompt(const mend_model *m, const float *prompt, int n_virtual, const int32_t *tokens,
                           size_t n_tokens, const mend_ppl_opts *opts, mend_ppl_progress_fn progress,
                           void *progress_user, mend_ppl_result *res) {
    if (!m || !prompt || n_virtual < 1)
        return mend_set_error(MEND_EINVAL, "perplexity with a prompt: model and a prompt of >= 1 rows needed");
    mend_ppl_opts o;
    int rc = mend_ppl_resolve_opts(opts, &o);
    if (rc) return rc;
    mend_model_info info;
    mend_model_get_info(m, &info);
    for (size_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= info.n_vocab)
            return mend_set_error(MEND_ERANGE, "perplexity: token %zu has id %d outside the vocabulary (%d)", i,
                                  tokens[i], info.n_vocab);
    if (o.bos >= info.n_vocab)
        return mend_set_error(MEND_ERANGE, "perplexity: BOS id %d is outside the vocabulary (%d)", o.bos,
                              info.n_vocab);
    prompt_scorer ps = {.n_vocab = info.n_vocab, .n_batch = o.n_batch, .P = n_virtual};
    size_t nl;
    if (!mend_mul_ok((size_t)o.n_batch, (size_t)info.n_vocab, &nl) || !mend_mul_ok(nl, sizeof(float), &nl))
        return mend_set_error(MEND_ERANGE, "perplexity: n_batch %d x n_vocab %d overflows", o.n_batch, info.n_vocab);
    ps.logits = malloc(nl);
    if (!ps.logits) return mend_set_error(MEND_ENOMEM, "perplexity: cannot allocate %zu bytes of logits", nl);
    if (o.n_ctx > INT32_MAX - n_virtual) {
        free(ps.logits);
        return mend_set_error(MEND_ERANGE, "perplexity: n_ctx %d + %d virtual tokens overflows", o.n_ctx, n_virtual);
    }
    rc = mend_state_new(&ps.s, m, n_virtual + o.n_ctx, o.n_batch);
    if (rc == 0) {
        /* the prompt's KV once, at positions [0, n_virtual) */
        for (int p0 = 0; rc == 0 && p0 < n_virtual; p0 += o.n_batch) {
            int nb = n_virtual - p0 < o.n_batch ? n_virtual - p0 : o.n_batch;
            rc = mend_forward(ps.s, NULL, prompt + (size_t)p0 * info.dim, nb, p0, NULL, 0);
        }
    }
    if (rc == 0) rc = mend_ppl_run(tokens, n_tokens, &o, prompt_score, &ps, progress, progress_user, res);
    if (ps.s) mend_state_free(ps.s);
    free(ps.logits);
    return rc;
}
