/* Tokenizer from a Hugging Face tokenizer.json (+ optional tokenizer_config.json).
 *
 * Supported: model.type "BPE" with
 *  - a ByteLevel pre-tokenizer (GPT-2 / SmolLM2 / Llama-3 / Qwen2 style):
 *    pre_tokenizer is ByteLevel, Split (regex or literal, behavior Isolated),
 *    Digits, or a Sequence of these, mapped to the regex list the splitter
 *    applies in order (ByteLevel with use_regex adds the GPT-2 regex);
 *  - byte_fallback (LLaMA-2 style): SentencePiece-like encoding driven by the
 *    merge ranks; a Prepend("▁") normalizer or a Metaspace pre-tokenizer
 *    turns on the leading space.
 * vocab {text: id}, merges as "a b" strings or [a, b] pairs, added_tokens
 * (special: true -> control token, false -> user-defined). Every id from 0
 * to the largest one must be present exactly once.
 * tokenizer_config.json may set add_bos_token / add_eos_token and name
 * bos_token / eos_token / unk_token / pad_token (a string or {"content": ...}).
 * Without it, a TemplateProcessing post-processor that starts (ends) with a
 * special token turns on BOS (EOS). The NFC normalizer is accepted and, as in
 * llama.cpp, not applied.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "tok/tok_internal.h"

#define RE_GPT2_JSON "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

typedef struct jctx {
    const char *path;
    char *regex[TOK_MAX_REGEX];
    int n_regex;
    int byte_level;
    int metaspace_prefix;   /* -1 unset */
} jctx;

static int jerr(const jctx *c, int code, const char *field, const char *what) {
    return mend_set_error(code, "%s: %s %s", c->path, field, what);
}

static int add_regex(jctx *c, const char *re, size_t n) {
    if (c->n_regex >= TOK_MAX_REGEX)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: pre_tokenizer has more than %d splitting steps", c->path, TOK_MAX_REGEX);
    c->regex[c->n_regex] = mend_strndup(re, n);
    if (!c->regex[c->n_regex]) return mend_set_error(MEND_ENOMEM, "%s: out of memory", c->path);
    c->n_regex++;
    return 0;
}

/* literal string -> regex: \Q...\E, with any \E inside split out */
static int add_literal(jctx *c, const char *s) {
    size_t n = strlen(s), cap = n * 6 + 8, k = 0;
    char *re = malloc(cap);
    if (!re) return mend_set_error(MEND_ENOMEM, "%s: out of memory", c->path);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (strchr("\\^$.|?*+()[]{}", ch) && ch) re[k++] = '\\';
        re[k++] = (char)ch;
    }
    int rc = add_regex(c, re, k);
    free(re);
    return rc;
}

static int parse_pre(jctx *c, json_t *p, const char *field) {
    if (!p || json_is_null(p)) return 0;
    if (!json_is_object(p)) return jerr(c, MEND_EFORMAT, field, "is not an object");
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type) return jerr(c, MEND_EFORMAT, field, "has no \"type\" string");
    char sub[160];
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(p, "pretokenizers");
        if (!json_is_array(arr)) return jerr(c, MEND_EFORMAT, field, "is a Sequence without a \"pretokenizers\" array");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", field, i);
            int rc = parse_pre(c, json_array_get(arr, i), sub);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        json_t *aps = json_object_get(p, "add_prefix_space"), *ur = json_object_get(p, "use_regex");
        if (aps && json_is_true(aps))
            return jerr(c, MEND_EUNSUPPORTED, field, "is ByteLevel with add_prefix_space true, which mend does not support");
        c->byte_level = 1;
        if (!ur || json_is_true(ur)) return add_regex(c, RE_GPT2_JSON, strlen(RE_GPT2_JSON));
        return 0;
    }
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(p, "pattern");
        const char *beh = json_string_value(json_object_get(p, "behavior"));
        json_t *inv = json_object_get(p, "invert");
        if (beh && strcmp(beh, "Isolated"))
            return mend_set_error(MEND_EUNSUPPORTED, "%s: %s has behavior \"%s\"; mend supports \"Isolated\"", c->path,
                                  field, beh);
        if (inv && json_is_true(inv)) return jerr(c, MEND_EUNSUPPORTED, field, "has invert true, which mend does not support");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        if (re) return add_regex(c, re, strlen(re));
        const char *lit = json_string_value(json_object_get(pat, "String"));
        if (lit) return add_literal(c, lit);
        return jerr(c, MEND_EFORMAT, field, "is a Split without a pattern {\"Regex\": ...} or {\"String\": ...}");
    }
    if (!strcmp(type, "Digits")) {
        json_t *ind = json_object_get(p, "individual_digits");
        const char *re = ind && json_is_true(ind) ? "\\p{N}" : "\\p{N}+";
        return add_regex(c, re, strlen(re));
    }
    if (!strcmp(type, "Metaspace")) {
        const char *scheme = json_string_value(json_object_get(p, "prepend_scheme"));
        json_t *aps = json_object_get(p, "add_prefix_space");
        c->metaspace_prefix = scheme ? strcmp(scheme, "never") != 0 : (!aps || json_is_true(aps));
        return 0;
    }
    return mend_set_error(MEND_EUNSUPPORTED, "%s: %s has type \"%s\", which mend does not support", c->path, field, type);
}

/* normalizer: returns 1 in *prepend when a Prepend("▁") is present */
static int parse_norm(jctx *c, json_t *n, const char *field, int *prepend) {
    if (!n || json_is_null(n)) return 0;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (!type) return jerr(c, MEND_EFORMAT, field, "has no \"type\" string");
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(n, "normalizers");
        if (!json_is_array(arr)) return jerr(c, MEND_EFORMAT, field, "is a Sequence without a \"normalizers\" array");
        char sub[160];
        for (size_t i = 0; i < json_array_size(arr); i++) {
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", field, i);
            int rc = parse_norm(c, json_array_get(arr, i), sub, prepend);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(type, "NFC")) return 0;
    if (!strcmp(type, "Prepend")) {
        const char *s = json_string_value(json_object_get(n, "prepend"));
        if (!s || strcmp(s, "\xE2\x96\x81")) return jerr(c, MEND_EUNSUPPORTED, field, "prepends something other than \"\xE2\x96\x81\"");
        *prepend = 1;
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        const char *from = json_string_value(json_object_get(json_object_get(n, "pattern"), "String"));
        const char *to = json_string_value(json_object_get(n, "content"));
        if (from && to && !strcmp(from, " ") && !strcmp(to, "\xE2\x96\x81")) return 0;
        return jerr(c, MEND_EUNSUPPORTED, field, "is a Replace other than \" \" -> \"\xE2\x96\x81\"");
    }
    return mend_set_error(MEND_EUNSUPPORTED, "%s: %s has type \"%s\", which mend does not support", c->path, field, type);
}

/* token name from tokenizer_config.json: "text" or {"content": "text"} */
static const char *cfg_token(json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static int cfg_bool(json_t *cfg, const char *key, int *out, const char *path) {
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return mend_set_error(MEND_EFORMAT, "%s: %s is not true or false", path, key);
    *out = json_is_true(v);
    return 1;
}

/* TemplateProcessing "single": special token id at the start / end */
static void template_ends(json_t *pp, const char **first, const char **last) {
    if (!pp || !json_is_object(pp)) return;
    const char *type = json_string_value(json_object_get(pp, "type"));
    if (!type) return;
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(pp, "processors");
        for (size_t i = 0; i < json_array_size(arr); i++) template_ends(json_array_get(arr, i), first, last);
        return;
    }
    if (strcmp(type, "TemplateProcessing")) return;
    json_t *single = json_object_get(pp, "single");
    size_t n = json_array_size(single);
    if (!n) return;
    json_t *a = json_object_get(json_array_get(single, 0), "SpecialToken");
    json_t *b = json_object_get(json_array_get(single, n - 1), "SpecialToken");
    if (a) *first = json_string_value(json_object_get(a, "id"));
    if (b && n > 1) *last = json_string_value(json_object_get(b, "id"));
}

/* tokenizer.json of the largest vocabularies is tens of MB */
#define TOK_MAX_JSON_BYTES ((long long)256 << 20)

static json_t *load_json(const char *path, int *rc) {
    json_error_t e;
    struct stat st;
    if (stat(path, &st) == 0 && (!S_ISREG(st.st_mode) || st.st_size > TOK_MAX_JSON_BYTES)) {
        *rc = S_ISREG(st.st_mode)
                  ? mend_set_error(MEND_ERANGE, "%s: file is %lld bytes, more than the limit of %lld", path,
                                   (long long)st.st_size, TOK_MAX_JSON_BYTES)
                  : mend_set_error(MEND_EIO, "%s: not a regular file", path);
        return NULL;
    }
    /* read whole, then parse: jansson's file reader takes one getc per byte */
    char *text = NULL;
    size_t len = 0;
    if ((*rc = mend_read_file(path, (size_t)TOK_MAX_JSON_BYTES, &text, &len)) != 0) return NULL;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    free(text);
    if (!root) {
        *rc = mend_set_error(MEND_EFORMAT, "%s: line %d, column %d: %s", path, e.line, e.column, e.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        *rc = mend_set_error(MEND_EFORMAT, "%s: the top level is not a JSON object", path);
        return NULL;
    }
    *rc = 0;
    return root;
}

/* 0..255 for a token spelled exactly "<0xHH>" with upper-case hex digits, else -1 */
static int byte_token_value(const char *s) {
    if (!s || s[0] != '<' || s[1] != '0' || s[2] != 'x') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {   /* a NUL ends the string here as a non-digit */
        char c = s[k];
        if (c >= '0' && c <= '9') v = v * 16 + (c - '0');
        else if (c >= 'A' && c <= 'F') v = v * 16 + (c - 'A' + 10);
        else return -1;
    }
    return s[5] == '>' && !s[6] ? v : -1;
}

static int32_t find_text(char **texts, int n, const char *s) {
    if (!s) return -1;
    for (int i = 0; i < n; i++)
        if (texts[i] && !strcmp(texts[i], s)) return i;
    return -1;
}

int mend_tokenizer_from_json(mend_tokenizer **out, const char *path, const char *config_path) {
    if (!out || !path) return mend_set_error(MEND_EINVAL, "mend_tokenizer_from_json: NULL argument");
    *out = NULL;
    int rc;
    json_t *root = load_json(path, &rc), *cfg = NULL;
    if (!root) return rc;
    jctx c = {.path = path, .metaspace_prefix = -1};
    char **texts = NULL;
    int32_t *types = NULL;
    const char **mp = NULL;
    int n = 0;

    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) { rc = jerr(&c, MEND_EFORMAT, "model", "is missing or not an object"); goto done; }
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (mtype && strcmp(mtype, "BPE")) {
        rc = mend_set_error(MEND_EUNSUPPORTED, "%s: model.type is \"%s\"; mend supports \"BPE\"", path, mtype);
        goto done;
    }
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) { rc = jerr(&c, MEND_EFORMAT, "model.vocab", "is missing or not an object"); goto done; }
    if (!json_is_array(merges)) { rc = jerr(&c, MEND_EFORMAT, "model.merges", "is missing or not an array"); goto done; }
    if (added && !json_is_null(added) && !json_is_array(added)) {
        rc = jerr(&c, MEND_EFORMAT, "added_tokens", "is not an array");
        goto done;
    }
    /* vocabulary size: largest id + 1 */
    json_int_t maxid = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 24)) {
            rc = mend_set_error(MEND_EFORMAT, "%s: model.vocab[\"%.60s\"] is not an id in 0..16777215", path, key);
            goto done;
        }
        if (json_integer_value(val) > maxid) maxid = json_integer_value(val);
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id");
        if (!json_is_object(a) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= (1 << 24) || !json_is_string(json_object_get(a, "content"))) {
            rc = mend_set_error(MEND_EFORMAT, "%s: added_tokens[%zu] needs an \"id\" in 0..16777215 and a \"content\" string",
                                path, i);
            goto done;
        }
        if (json_integer_value(id) > maxid) maxid = json_integer_value(id);
    }
    if (maxid < 0) { rc = jerr(&c, MEND_EFORMAT, "model.vocab", "is empty"); goto done; }
    n = (int)maxid + 1;
    texts = calloc((size_t)n, sizeof *texts);
    types = malloc((size_t)n * sizeof *types);
    if (!texts || !types) { rc = mend_set_error(MEND_ENOMEM, "%s: out of memory for %d tokens", path, n); goto done; }
    for (int i = 0; i < n; i++) types[i] = MEND_TOKEN_NORMAL;
    json_object_foreach(vocab, key, val) {
        int id = (int)json_integer_value(val);
        if (texts[id]) {
            rc = mend_set_error(MEND_EFORMAT, "%s: model.vocab gives id %d to both \"%.60s\" and \"%.60s\"", path, id,
                                texts[id], key);
            goto done;
        }
        texts[id] = (char *)key;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        int id = (int)json_integer_value(json_object_get(a, "id"));
        const char *content = json_string_value(json_object_get(a, "content"));
        if (texts[id] && strcmp(texts[id], content)) {
            rc = mend_set_error(MEND_EFORMAT, "%s: added_tokens[%zu] gives id %d to \"%.60s\" but model.vocab has \"%.60s\"",
                                path, i, id, content, texts[id]);
            goto done;
        }
        texts[id] = (char *)content;
        types[id] = json_is_true(json_object_get(a, "special")) ? MEND_TOKEN_CONTROL : MEND_TOKEN_USER_DEFINED;
    }
    for (int i = 0; i < n; i++)
        if (!texts[i]) {
            rc = mend_set_error(MEND_EFORMAT, "%s: no token has id %d (ids must run from 0 to %d without gaps)", path, i,
                                n - 1);
            goto done;
        }

    /* merges: "a b" or ["a", "b"] */
    size_t nm = json_array_size(merges);
    if (nm > INT32_MAX / 2) { rc = jerr(&c, MEND_ERANGE, "model.merges", "has too many entries"); goto done; }
    mp = malloc((2 * nm + 1) * sizeof *mp);
    if (!mp) { rc = mend_set_error(MEND_ENOMEM, "%s: out of memory for merges", path); goto done; }
    for (size_t i = 0; i < nm; i++) {
        json_t *m = json_array_get(merges, i);
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t sl = strlen(s);
            const char *sp = sl > 1 ? memchr(s + 1, ' ', sl - 1) : NULL;
            if (!sp) {
                rc = mend_set_error(MEND_EFORMAT, "%s: model.merges[%zu] (\"%.60s\") is not two tokens separated by a space",
                                    path, i, s);
                goto done;
            }
            /* split into the pair by pointing at copies made below */
            char *l = mend_strndup(s, (size_t)(sp - s));
            if (!l) { rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path); goto done; }
            json_array_set_new(merges, i, json_pack("[s, s]", l, sp + 1));
            free(l);
            m = json_array_get(merges, i);
            if (!m) { rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path); goto done; }
        }
        if (!json_is_array(m) || json_array_size(m) != 2 || !json_is_string(json_array_get(m, 0)) ||
            !json_is_string(json_array_get(m, 1))) {
            rc = mend_set_error(MEND_EFORMAT, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", path, i);
            goto done;
        }
        mp[2 * i] = json_string_value(json_array_get(m, 0));
        mp[2 * i + 1] = json_string_value(json_array_get(m, 1));
    }

    json_t *bf = json_object_get(model, "byte_fallback");
    int byte_fallback = bf && json_is_true(bf);
    if ((rc = parse_pre(&c, json_object_get(root, "pre_tokenizer"), "pre_tokenizer"))) goto done;
    int prepend = 0;
    if ((rc = parse_norm(&c, json_object_get(root, "normalizer"), "normalizer", &prepend))) goto done;
    if (!c.byte_level && !byte_fallback) {
        rc = mend_set_error(MEND_EUNSUPPORTED,
                            "%s: pre_tokenizer has no ByteLevel step and model.byte_fallback is not true; mend supports "
                            "byte-level BPE and byte-fallback (SentencePiece-style) BPE", path);
        goto done;
    }
    mend_vocab_spec spec;
    memset(&spec, 0, sizeof spec);
    spec.kind = c.byte_level ? MEND_TOK_BPE : MEND_TOK_SPM;
    spec.pre = "tokenizer.json";
    spec.n_vocab = n;
    spec.tokens = (const char *const *)texts;
    spec.n_merges = (int)nm;
    spec.bos = spec.eos = spec.unk = spec.pad = spec.eot = -1;
    spec.add_space_prefix = spec.kind == MEND_TOK_SPM && (prepend || c.metaspace_prefix == 1);
    if (spec.kind == MEND_TOK_SPM) {
        /* the first token spelled <0xHH> (upper-case hex) of each byte, in
         * one pass over the vocabulary rather than one search per byte */
        int32_t byte_id[256];
        for (int b = 0; b < 256; b++) byte_id[b] = -1;
        for (int i = 0; i < n; i++) {
            int b = byte_token_value(texts[i]);
            if (b >= 0 && byte_id[b] < 0) byte_id[b] = i;
        }
        for (int b = 0; b < 256; b++)
            if (byte_id[b] >= 0 && types[byte_id[b]] == MEND_TOKEN_NORMAL) types[byte_id[b]] = MEND_TOKEN_BYTE;
    }
    spec.unk = find_text(texts, n, json_string_value(json_object_get(model, "unk_token")));
    if (spec.unk >= 0) types[spec.unk] = MEND_TOKEN_UNKNOWN;

    const char *tfirst = NULL, *tlast = NULL;
    template_ends(json_object_get(root, "post_processor"), &tfirst, &tlast);
    int add_bos = -1, add_eos = -1;
    const char *bos_text = tfirst, *eos_text = tlast;
    if (config_path) {
        cfg = load_json(config_path, &rc);
        if (!cfg) goto done;
        if (cfg_bool(cfg, "add_bos_token", &add_bos, config_path) < 0 ||
            cfg_bool(cfg, "add_eos_token", &add_eos, config_path) < 0) {
            rc = MEND_EFORMAT;
            goto done;
        }
        const char *names[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
        int32_t *dst[4] = {&spec.bos, &spec.eos, &spec.unk, &spec.pad};
        for (int k = 0; k < 4; k++) {
            json_t *v = json_object_get(cfg, names[k]);
            if (!v || json_is_null(v)) continue;
            const char *s = cfg_token(cfg, names[k]);
            int32_t id = find_text(texts, n, s);
            if (!s || id < 0) {
                rc = mend_set_error(MEND_EFORMAT, "%s: %s%s%s%s is not a token of %s", config_path, names[k],
                                    s ? " \"" : "", s ? s : "", s ? "\"" : "", path);
                goto done;
            }
            *dst[k] = id;
        }
    }
    if (spec.bos < 0) spec.bos = find_text(texts, n, bos_text);
    if (spec.eos < 0) spec.eos = find_text(texts, n, eos_text);
    spec.add_bos = add_bos >= 0 ? add_bos : (tfirst != NULL && spec.bos >= 0 && !strcmp(texts[spec.bos], tfirst));
    spec.add_eos = add_eos >= 0 ? add_eos : (tlast != NULL && spec.eos >= 0 && !strcmp(texts[spec.eos], tlast));
    if (spec.add_bos && spec.bos < 0) {
        rc = mend_set_error(MEND_EFORMAT, "%s: add_bos_token is true but no bos_token is named", config_path ? config_path : path);
        goto done;
    }
    if (spec.add_eos && spec.eos < 0) {
        rc = mend_set_error(MEND_EFORMAT, "%s: add_eos_token is true but no eos_token is named", config_path ? config_path : path);
        goto done;
    }
    spec.types = types;
    json_t *im = json_object_get(model, "ignore_merges");
    tok_extra ex = {.eom = -1, .ignore_merges = im && json_is_true(im) ? 1 : 0, .origin = path,
                    .key_tokens = "model.vocab", .key_merges = "model.merges", .merge_pairs = mp,
                    .regex = (const char *const *)c.regex, .n_regex = c.n_regex};
    rc = tok_init_ex(out, &spec, &ex);
done:
    for (int i = 0; i < c.n_regex; i++) free(c.regex[i]);
    free(mp);
    free(texts);
    free(types);
    json_decref(cfg);
    json_decref(root);
    return rc;
}
