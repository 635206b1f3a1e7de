/* Tokenizer from GGUF metadata (the tokenizer.ggml.* keys llama.cpp writes).
 *
 *   tokenizer.ggml.model        "gpt2" (byte-level BPE) | "llama" (SentencePiece BPE)
 *   tokenizer.ggml.pre          pre-tokenizer name (BPE; default "default")
 *   tokenizer.ggml.tokens       [string] the vocabulary
 *   tokenizer.ggml.token_type   [int]    optional, same length
 *   tokenizer.ggml.scores       [float]  optional, same length (SPM merge priorities)
 *   tokenizer.ggml.merges       [string] "a b", required for gpt2
 *   tokenizer.ggml.{bos,eos,unknown,padding,eot,eom}_token_id   optional ids
 *   tokenizer.ggml.{add_bos_token,add_eos_token,add_space_prefix}  optional bools
 *
 * Defaults follow llama.cpp: SPM has bos 1, eos 2, unk 0, add_bos and
 * add_space_prefix on; BPE has no default ids and adds BOS only for the
 * Llama-3 family of pre-tokenizers. Every id must lie inside the vocabulary.
 */
#include <stdlib.h>
#include <string.h>
#include "tok/tok_internal.h"

static const char *vt_name(uint32_t t) { return gguf_type_name(t); }

static int is_int_type(uint32_t t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_INT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_INT16 ||
           t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

/* An array key: present (1), absent (0) or wrong (negative status). */
static int get_array(const mend_gguf *g, const char *key, int want_string, int want_float, const gguf_kv **out) {
    const gguf_kv *kv = mend_gguf_find(g, key);
    *out = NULL;
    if (!kv) return 0;
    if (kv->type != GGUF_TYPE_ARRAY)
        return mend_set_error(MEND_EFORMAT, "%s: %s is a %s, expected an array", g->path, key, vt_name(kv->type));
    int ok = want_string ? kv->arr_type == GGUF_TYPE_STRING && kv->arr_str
           : want_float  ? (kv->arr_type == GGUF_TYPE_FLOAT32 || kv->arr_type == GGUF_TYPE_FLOAT64) && kv->arr_raw
                         : is_int_type(kv->arr_type) && kv->arr_raw;
    if (!ok)
        return mend_set_error(MEND_EFORMAT, "%s: %s is an array of %s, expected an array of %s", g->path, key,
                              vt_name(kv->arr_type), want_string ? "strings" : want_float ? "floats" : "integers");
    if (kv->n > INT32_MAX)
        return mend_set_error(MEND_ERANGE, "%s: %s has %llu elements, more than mend supports", g->path, key,
                              (unsigned long long)kv->n);
    *out = kv;
    return 1;
}

static int get_id(const mend_gguf *g, const char *key, int n_vocab, int32_t *id) {
    const gguf_kv *kv = mend_gguf_find(g, key);
    if (!kv) return 0;
    int64_t v;
    int rc = mend_gguf_get_int(g, key, &v);
    if (rc) return rc;
    if (v < 0 || v >= n_vocab)
        return mend_set_error(MEND_ERANGE, "%s: %s is %lld, outside the vocabulary of %d tokens", g->path, key,
                              (long long)v, n_vocab);
    *id = (int32_t)v;
    return 0;
}

static int get_str_opt(const mend_gguf *g, const char *key, const char **out) {
    if (!mend_gguf_find(g, key)) return 0;
    return mend_gguf_get_str(g, key, out);
}

int mend_tokenizer_from_gguf(mend_tokenizer **out, const mend_gguf *g) {
    if (!out || !g) return mend_set_error(MEND_EINVAL, "mend_tokenizer_from_gguf: NULL argument");
    *out = NULL;
    const char *path = g->path ? g->path : "gguf";
    const char *model = NULL, *pre = NULL;
    int rc = mend_gguf_get_str(g, "tokenizer.ggml.model", &model);
    if (rc) return rc;
    mend_vocab_spec spec;
    memset(&spec, 0, sizeof spec);
    if (!strcmp(model, "gpt2")) spec.kind = MEND_TOK_BPE;
    else if (!strcmp(model, "llama")) spec.kind = MEND_TOK_SPM;
    else
        return mend_set_error(MEND_EUNSUPPORTED,
                              "%s: tokenizer.ggml.model is \"%s\"; mend supports \"gpt2\" (byte-level BPE) and "
                              "\"llama\" (SentencePiece BPE)", path, model);
    if ((rc = get_str_opt(g, "tokenizer.ggml.pre", &pre))) return rc;
    if (!pre || !*pre) pre = "default";

    const gguf_kv *toks, *types, *scores, *merges;
    if ((rc = get_array(g, "tokenizer.ggml.tokens", 1, 0, &toks)) < 0) return rc;
    if (!rc) return mend_set_error(MEND_EFORMAT, "%s: tokenizer.ggml.tokens is missing", path);
    if (toks->n == 0) return mend_set_error(MEND_EFORMAT, "%s: tokenizer.ggml.tokens is empty", path);
    const int nv = (int)toks->n;
    if ((rc = get_array(g, "tokenizer.ggml.token_type", 0, 0, &types)) < 0) return rc;
    if ((rc = get_array(g, "tokenizer.ggml.scores", 0, 1, &scores)) < 0) return rc;
    if ((rc = get_array(g, "tokenizer.ggml.merges", 1, 0, &merges)) < 0) return rc;
    if (types && types->n != toks->n)
        return mend_set_error(MEND_EFORMAT, "%s: tokenizer.ggml.token_type has %llu entries but tokenizer.ggml.tokens has %d",
                               path, (unsigned long long)types->n, nv);
    if (scores && scores->n != toks->n)
        return mend_set_error(MEND_EFORMAT, "%s: tokenizer.ggml.scores has %llu entries but tokenizer.ggml.tokens has %d",
                              path, (unsigned long long)scores->n, nv);
    if (spec.kind == MEND_TOK_BPE && !merges)
        return mend_set_error(MEND_EFORMAT, "%s: tokenizer.ggml.merges is missing (required for a gpt2 tokenizer)", path);

    int ign = 0, bos_default = 0;
    if (spec.kind == MEND_TOK_BPE && (rc = tok_pre_info(pre, &ign, &bos_default, path))) return rc;

    spec.pre = pre;
    spec.n_vocab = nv;
    spec.tokens = (const char *const *)toks->arr_str;
    spec.token_lens = toks->arr_slen;
    spec.bos = spec.eos = spec.unk = spec.pad = spec.eot = -1;
    if (spec.kind == MEND_TOK_SPM) {
        if (nv > 0) spec.unk = 0;
        if (nv > 1) spec.bos = 1;
        if (nv > 2) spec.eos = 2;
        spec.add_bos = spec.bos >= 0;
        spec.add_space_prefix = 1;
    } else {
        spec.add_bos = bos_default;
        spec.n_merges = (int)merges->n;
        spec.merges = (const char *const *)merges->arr_str;
    }
    tok_extra ex = {.eom = -1, .ignore_merges = -1, .origin = path, .key_tokens = "tokenizer.ggml.tokens",
                    .key_merges = "tokenizer.ggml.merges"};
    if ((rc = get_id(g, "tokenizer.ggml.bos_token_id", nv, &spec.bos)) ||
        (rc = get_id(g, "tokenizer.ggml.eos_token_id", nv, &spec.eos)) ||
        (rc = get_id(g, "tokenizer.ggml.unknown_token_id", nv, &spec.unk)) ||
        (rc = get_id(g, "tokenizer.ggml.padding_token_id", nv, &spec.pad)) ||
        (rc = get_id(g, "tokenizer.ggml.eot_token_id", nv, &spec.eot)) ||
        (rc = get_id(g, "tokenizer.ggml.eom_token_id", nv, &ex.eom)))
        return rc;
    if ((rc = mend_gguf_opt_bool(g, "tokenizer.ggml.add_bos_token", &spec.add_bos)) ||
        (rc = mend_gguf_opt_bool(g, "tokenizer.ggml.add_eos_token", &spec.add_eos)) ||
        (rc = mend_gguf_opt_bool(g, "tokenizer.ggml.add_space_prefix", &spec.add_space_prefix)))
        return rc;
    if (spec.add_bos && spec.bos < 0)
        return mend_set_error(MEND_EFORMAT, "%s: tokenizer.ggml.add_bos_token is true but tokenizer.ggml.bos_token_id is missing", path);
    if (spec.add_eos && spec.eos < 0)
        return mend_set_error(MEND_EFORMAT, "%s: tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is missing", path);

    int32_t *ty = NULL;
    float *sc = NULL;
    if (types) {
        ty = malloc((size_t)nv * sizeof *ty);
        if (!ty) return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
        for (int i = 0; i < nv; i++) {
            int64_t v = gguf_arr_i64(types, (uint64_t)i);
            if (v < 0 || v > MEND_TOKEN_BYTE) {
                free(ty);
                return mend_set_error(MEND_EFORMAT, "%s: tokenizer.ggml.token_type[%d] is %lld, expected 0..6", path, i,
                                      (long long)v);
            }
            ty[i] = (int32_t)v;
        }
        spec.types = ty;
    }
    if (scores) {
        sc = malloc((size_t)nv * sizeof *sc);
        if (!sc) { free(ty); return mend_set_error(MEND_ENOMEM, "%s: out of memory", path); }
        for (int i = 0; i < nv; i++) {
            double v = gguf_arr_f64(scores, (uint64_t)i);
            if (v != v) {
                free(ty);
                free(sc);
                return mend_set_error(MEND_EFORMAT, "%s: tokenizer.ggml.scores[%d] is NaN", path, i);
            }
            sc[i] = (float)v;
        }
        spec.scores = sc;
    }
    rc = tok_init_ex(out, &spec, &ex);
    free(ty);
    free(sc);
    if (rc && !strstr(mend_last_error(), path)) mend_error_prefix(rc, "%s", path);
    return rc;
}
