/* Prompt banks: bank.json read / write and the bank's adapters (see bank.h). */
#include "prompt/bank.h"

#include <jansson.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prompt/adapter.h"
#include "util/util.h"

#define BANK_FORMAT "mend-prompt-bank"

int mend_bank_name_ok(const char *name) {
    if (!name) return 0;
    size_t n = strlen(name);
    if (n < 1 || n > 64 || !strcmp(name, ".") || !strcmp(name, "..")) return 0;
    for (size_t i = 0; i < n; i++) {
        const char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '-' || ch == '.'))
            return 0;
    }
    return 1;
}

static int adapter_path_ok(const char *s) {
    if (!s || !*s || s[0] == '/' || strlen(s) > 1024) return 0;
    /* no ".." component */
    const char *c = s;
    while (*c) {
        const char *e = strchr(c, '/');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == 0 || (len == 2 && c[0] == '.' && c[1] == '.')) return 0;
        if (!e) break;
        c = e + 1;
    }
    return 1;
}

void mend_bank_free(mend_bank *b) {
    if (!b) return;
    for (int k = 0; k < b->n; k++) {
        mend_bank_prompt *p = &b->p[k];
        free(p->name);
        free(p->adapter);
        free(p->domain);
        free(p->corpus);
        free(p->centroid);
        free(p->emb);
    }
    free(b->p);
    free(b->dir);
    free(b->base_model);
    free(b->default_selector);
    free(b->router_feature);
    mend_learned_router_free(b->learned);
    free(b->attn_offsets);
    free(b);
}

int mend_bank_find(const mend_bank *b, const char *name) {
    if (!b || !name) return -1;
    for (int k = 0; k < b->n; k++)
        if (!strcmp(b->p[k].name, name)) return k;
    return -1;
}

/* An integer field in [lo, hi]; missing -> *out unchanged when optional. */
static int get_int(const char *path, const json_t *obj, const char *where, const char *key, long long lo,
                   long long hi, int optional, long long *out) {
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        if (optional) return 0;
        return mend_set_error(MEND_EFORMAT, "%s: %s%s is missing (expected an integer %lld..%lld)", path, where, key,
                              lo, hi);
    }
    if (!json_is_integer(v))
        return mend_set_error(MEND_EFORMAT, "%s: %s%s is not an integer", path, where, key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return mend_set_error(MEND_EFORMAT, "%s: %s%s is %lld, expected %lld..%lld", path, where, key, x, lo, hi);
    *out = x;
    return 0;
}

/* A string field; NULL allowed when nullable, missing allowed when optional. */
static int get_str(const char *path, const json_t *obj, const char *where, const char *key, int optional,
                   int nullable, char **out) {
    *out = NULL;
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        if (optional) return 0;
        return mend_set_error(MEND_EFORMAT, "%s: %s%s is missing (expected a string)", path, where, key);
    }
    if (json_is_null(v)) {
        if (nullable) return 0;
        return mend_set_error(MEND_EFORMAT, "%s: %s%s is null, expected a string", path, where, key);
    }
    if (!json_is_string(v)) return mend_set_error(MEND_EFORMAT, "%s: %s%s is not a string", path, where, key);
    *out = mend_strdup(json_string_value(v));
    if (!*out) return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    return 0;
}

/* An optional fingerprint field: 16 hex digits, null or absent (*has 0). */
static int get_fp(const char *path, const json_t *obj, const char *key, int *has, uint64_t *out) {
    const json_t *v = json_object_get(obj, key);
    *has = 0;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return mend_set_error(MEND_EFORMAT, "%s: %s is not a string", path, key);
    int rc = mend_fp_parse(json_string_value(v), out);
    if (rc) return mend_error_prefix(rc, "%s: %s", path, key);
    *has = 1;
    return 0;
}

/* v: an array of n floats, each finite as a float (1e39 would become Inf
 * and every score NaN); what names the field, size_name the expected length. */
static int get_floats(const char *path, const json_t *v, const char *what, const char *size_name, size_t n,
                      float **out) {
    *out = NULL;
    if (!json_is_array(v) || json_array_size(v) != n)
        return mend_set_error(MEND_EFORMAT, "%s: %s has %s, expected an array of %s = %zu numbers", path, what,
                              json_is_array(v) ? "the wrong length" : "no array", size_name, n);
    float *f = malloc((n ? n : 1) * sizeof(float));
    if (!f) return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        const json_t *x = json_array_get(v, i);
        if (!json_is_number(x) || !isfinite(json_number_value(x)) || fabs(json_number_value(x)) > FLT_MAX) {
            free(f);
            return mend_set_error(MEND_EFORMAT, "%s: %s[%zu] is not a finite float", path, what, i);
        }
        f[i] = (float)json_number_value(x);
    }
    *out = f;
    return 0;
}

/* An optional number in [lo, hi] or null (-> NaN). */
static int get_real(const char *path, const json_t *obj, const char *where, const char *key, double lo, double hi,
                    double *out) {
    *out = NAN;
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi))
        return mend_set_error(MEND_EFORMAT, "%s: %s%s is not a number in [%g, %g]", path, where, key, lo, hi);
    *out = json_number_value(v);
    return 0;
}

void mend_learned_router_free(mend_learned_router *r) {
    if (!r) return;
    free(r->w);
    free(r->b);
    free(r);
}

/* "learned_router" of bank.json (optional) -> b->learned */
static int parse_learned_router(const char *path, const json_t *j, mend_bank *b) {
    const json_t *lr = json_object_get(j, "learned_router");
    if (!lr || json_is_null(lr)) return 0;
    if (!json_is_object(lr)) return mend_set_error(MEND_EFORMAT, "%s: learned_router is not an object", path);
    const json_t *f = json_object_get(lr, "feature");
    if (!json_is_string(f) || strcmp(json_string_value(f), "mean_token_embedding"))
        return mend_set_error(MEND_EUNSUPPORTED, "%s: learned_router.feature is %s, expected "
                              "\"mean_token_embedding\"", path, json_is_string(f) ? json_string_value(f) :
                              "missing or not a string");
    const json_t *nz = json_object_get(lr, "normalize");
    if (nz && !json_is_boolean(nz))
        return mend_set_error(MEND_EFORMAT, "%s: learned_router.normalize is not true or false", path);
    mend_learned_router *r = calloc(1, sizeof *r);
    if (!r) return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    r->K = b->n;
    r->dim = b->dim;
    r->normalize = nz && json_is_true(nz);
    long long tw = 0;
    char kd[32];
    snprintf(kd, sizeof kd, "K*dim = %d*%d", b->n, b->dim);
    int rc = get_floats(path, json_object_get(lr, "weights"), "learned_router.weights", kd,
                        (size_t)b->n * (size_t)b->dim, &r->w);
    if (!rc) rc = get_floats(path, json_object_get(lr, "bias"), "learned_router.bias", "K", (size_t)b->n, &r->b);
    if (!rc) rc = get_int(path, lr, "learned_router.", "train_windows", 0, INT32_MAX, 1, &tw);
    if (!rc) rc = get_real(path, lr, "learned_router.", "train_accuracy", 0.0, 1.0, &r->train_acc);
    if (!rc) rc = get_real(path, lr, "learned_router.", "heldout_accuracy", 0.0, 1.0, &r->heldout_acc);
    r->train_windows = (int)tw;
    if (rc) {
        mend_learned_router_free(r);
        return rc;
    }
    b->learned = r;
    return 0;
}

/* "attention_calibration" of bank.json (optional) -> b->attn_* */
static int parse_attn_calibration(const char *path, const json_t *j, mend_bank *b) {
    const json_t *ac = json_object_get(j, "attention_calibration");
    if (!ac || json_is_null(ac)) return 0;
    if (!json_is_object(ac)) return mend_set_error(MEND_EFORMAT, "%s: attention_calibration is not an object", path);
    const json_t *ly = json_object_get(ac, "layers");
    if (!json_is_array(ly) || json_array_size(ly) != 2 || !json_is_integer(json_array_get(ly, 0)) ||
        !json_is_integer(json_array_get(ly, 1)))
        return mend_set_error(MEND_EFORMAT, "%s: attention_calibration.layers is not [A, B]", path);
    const long long a = json_integer_value(json_array_get(ly, 0)), e = json_integer_value(json_array_get(ly, 1));
    if (a < 0 || e <= a || e > 100000)
        return mend_set_error(MEND_EFORMAT, "%s: attention_calibration.layers [%lld, %lld] is not 0 <= A < B", path,
                              a, e);
    long long w = 0;
    int rc = get_int(path, ac, "attention_calibration.", "windows", 1, INT32_MAX, 0, &w);
    if (!rc) rc = get_floats(path, json_object_get(ac, "offsets"), "attention_calibration.offsets", "the prompts",
                             (size_t)b->n, &b->attn_offsets);
    if (rc) return rc;
    b->attn_layer0 = (int)a;
    b->attn_layer1 = (int)e;
    b->attn_windows = (int)w;
    return 0;
}

static json_t *real_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *float_array(const float *v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_real(v[i]));
    return a;
}

static json_t *learned_router_json(const mend_learned_router *r) {
    json_t *o = json_object();
    json_object_set_new(o, "feature", json_string("mean_token_embedding"));
    json_object_set_new(o, "normalize", json_boolean(r->normalize));
    json_object_set_new(o, "weights", float_array(r->w, (size_t)r->K * r->dim));
    json_object_set_new(o, "bias", float_array(r->b, (size_t)r->K));
    json_object_set_new(o, "train_windows", json_integer(r->train_windows));
    json_object_set_new(o, "train_accuracy", real_or_null(r->train_acc));
    json_object_set_new(o, "heldout_accuracy", real_or_null(r->heldout_acc));
    return o;
}

int mend_bank_parse(const char *path, const char *text, size_t len, mend_bank **out) {
    if (!out) return mend_set_error(MEND_EINVAL, "mend_bank_parse: out is NULL");
    *out = NULL;
    if (!path) path = MEND_BANK_FILE;
    if (!text) return mend_set_error(MEND_EINVAL, "%s: no text", path);
    json_error_t jerr;
    json_t *j = json_loadb(text, len, 0, &jerr);
    if (!j) return mend_set_error(MEND_EFORMAT, "%s: malformed JSON at line %d: %s", path, jerr.line, jerr.text);
    int rc = 0;
    mend_bank *b = calloc(1, sizeof *b);
    if (!b) {
        json_decref(j);
        return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    }
    b->layer0 = 0;
    b->layer1 = 3;
    b->router_tokens = 0;
    if (!json_is_object(j)) {
        rc = mend_set_error(MEND_EFORMAT, "%s: the top level is not a JSON object", path);
        goto done;
    }
    const json_t *fmt = json_object_get(j, "format");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), BANK_FORMAT)) {
        rc = mend_set_error(MEND_EFORMAT, "%s: format is %s, expected \"%s\"", path,
                            json_is_string(fmt) ? json_string_value(fmt) : "missing or not a string", BANK_FORMAT);
        goto done;
    }
    long long ver = 0, dim = 0, nv = 0;
    if ((rc = get_int(path, j, "", "version", 1, 1000000, 0, &ver))) goto done;
    if (ver != 1) {
        rc = mend_set_error(MEND_EUNSUPPORTED, "%s: version is %lld, this mend reads version 1", path, ver);
        goto done;
    }
    if ((rc = get_int(path, j, "", "dim", 1, 1 << 20, 0, &dim))) goto done;
    if ((rc = get_int(path, j, "", "num_virtual_tokens", 1, 65536, 0, &nv))) goto done;
    b->dim = (int)dim;
    b->nv = (int)nv;
    if ((rc = get_str(path, j, "", "base_model", 1, 1, &b->base_model))) goto done;
    if ((rc = get_fp(path, j, "model_fingerprint", &b->trained_on.has_model, &b->trained_on.model)) ||
        (rc = get_fp(path, j, "model_recipe", &b->trained_on.has_recipe, &b->trained_on.recipe)))
        goto done;
    if (b->trained_on.has_recipe && !b->trained_on.has_model) {
        rc = mend_set_error(MEND_EFORMAT, "%s: model_recipe is given without model_fingerprint", path);
        goto done;
    }

    const json_t *ps = json_object_get(j, "prompts");
    if (!json_is_array(ps) || json_array_size(ps) < 1 || json_array_size(ps) > MEND_BANK_MAX_PROMPTS) {
        rc = mend_set_error(MEND_EFORMAT, "%s: prompts is %s, expected an array of 1..%d prompts", path,
                            !ps ? "missing" : !json_is_array(ps) ? "not an array" : "empty or too long",
                            MEND_BANK_MAX_PROMPTS);
        goto done;
    }
    const int n = (int)json_array_size(ps);
    b->p = calloc((size_t)n, sizeof *b->p);
    if (!b->p) {
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int k = 0; k < n; k++) {
        mend_bank_prompt *p = &b->p[k];
        p->steps = -1;
        p->best_val = NAN;
        b->n = k + 1;
        char where[48];
        snprintf(where, sizeof where, "prompts[%d].", k);
        const json_t *e = json_array_get(ps, (size_t)k);
        if (!json_is_object(e)) {
            rc = mend_set_error(MEND_EFORMAT, "%s: prompts[%d] is not an object", path, k);
            goto done;
        }
        if ((rc = get_str(path, e, where, "name", 0, 0, &p->name))) goto done;
        if (!mend_bank_name_ok(p->name)) {
            rc = mend_set_error(MEND_EFORMAT, "%s: prompts[%d].name \"%s\" is not 1..64 characters of "
                                "[A-Za-z0-9_.-]", path, k, p->name);
            goto done;
        }
        for (int u = 0; u < k; u++)
            if (!strcmp(b->p[u].name, p->name)) {
                rc = mend_set_error(MEND_EFORMAT, "%s: prompts[%d].name \"%s\" repeats prompts[%d]", path, k,
                                    p->name, u);
                goto done;
            }
        if ((rc = get_str(path, e, where, "adapter", 1, 0, &p->adapter))) goto done;
        if (!p->adapter && !(p->adapter = mend_strdup(p->name))) {
            rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        if (!adapter_path_ok(p->adapter)) {
            rc = mend_set_error(MEND_EFORMAT, "%s: prompts[%d].adapter \"%s\" is not a relative path inside the "
                                "bank (no leading '/', no '..')", path, k, p->adapter);
            goto done;
        }
        if ((rc = get_str(path, e, where, "domain", 1, 1, &p->domain))) goto done;
        if (!p->domain && !(p->domain = mend_strdup(p->name))) {
            rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        if ((rc = get_str(path, e, where, "corpus", 1, 1, &p->corpus))) goto done;
        long long steps = -1;
        if ((rc = get_int(path, e, where, "steps", 0, 1LL << 40, 1, &steps))) goto done;
        p->steps = (int)(steps > INT32_MAX ? INT32_MAX : steps);
        const json_t *bv = json_object_get(e, "best_val");
        if (bv && !json_is_null(bv)) {
            if (!json_is_number(bv)) {
                rc = mend_set_error(MEND_EFORMAT, "%s: prompts[%d].best_val is not a number", path, k);
                goto done;
            }
            p->best_val = json_number_value(bv);
        }
        const json_t *c = json_object_get(e, "centroid");
        if (c && !json_is_null(c)) {
            snprintf(where, sizeof where, "prompts[%d].centroid", k);
            if ((rc = get_floats(path, c, where, "dim", (size_t)dim, &p->centroid))) goto done;
        }
    }

    const json_t *sel = json_object_get(j, "selector");
    if (sel && !json_is_object(sel)) {
        rc = mend_set_error(MEND_EFORMAT, "%s: selector is not an object", path);
        goto done;
    }
    if (sel) {
        if ((rc = get_str(path, sel, "selector.", "default", 1, 0, &b->default_selector))) goto done;
        const char *d = b->default_selector;
        if (d && strcmp(d, "attention") && strcmp(d, "attention-calibrated") && strcmp(d, "router") &&
            strcmp(d, "learned") && strcmp(d, "loss") && strcmp(d, "none") && strncmp(d, "fixed:", 6)) {
            rc = mend_set_error(MEND_EFORMAT, "%s: selector.default is \"%s\", expected attention, "
                                "attention-calibrated, router, learned, loss, none or fixed:NAME", path, d);
            goto done;
        }
        if (d && !strncmp(d, "fixed:", 6) && mend_bank_find(b, d + 6) < 0) {
            rc = mend_set_error(MEND_EFORMAT, "%s: selector.default \"%s\" names no prompt of the bank", path, d);
            goto done;
        }
        const json_t *ly = json_object_get(sel, "layers");
        if (ly) {
            if (!json_is_array(ly) || json_array_size(ly) != 2 || !json_is_integer(json_array_get(ly, 0)) ||
                !json_is_integer(json_array_get(ly, 1))) {
                rc = mend_set_error(MEND_EFORMAT, "%s: selector.layers is not [A, B] (two integers)", path);
                goto done;
            }
            long long a = json_integer_value(json_array_get(ly, 0)), bb = json_integer_value(json_array_get(ly, 1));
            if (a < 0 || bb <= a || bb > 100000) {
                rc = mend_set_error(MEND_EFORMAT, "%s: selector.layers is [%lld, %lld], expected 0 <= A < B", path,
                                    a, bb);
                goto done;
            }
            b->layer0 = (int)a;
            b->layer1 = (int)bb;
        }
    }
    if (!b->default_selector && !(b->default_selector = mend_strdup("attention"))) {
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    const json_t *ro = json_object_get(j, "router");
    if (ro && !json_is_object(ro)) {
        rc = mend_set_error(MEND_EFORMAT, "%s: router is not an object", path);
        goto done;
    }
    if (ro) {
        if ((rc = get_str(path, ro, "router.", "feature", 1, 1, &b->router_feature))) goto done;
        if (b->router_feature && strcmp(b->router_feature, "mean_final_norm_hidden")) {
            rc = mend_set_error(MEND_EUNSUPPORTED, "%s: router.feature is \"%s\", expected "
                                "\"mean_final_norm_hidden\"", path, b->router_feature);
            goto done;
        }
        const json_t *me = json_object_get(ro, "metric");
        if (me && (!json_is_string(me) || strcmp(json_string_value(me), "cosine"))) {
            rc = mend_set_error(MEND_EUNSUPPORTED, "%s: router.metric is not \"cosine\"", path);
            goto done;
        }
        long long tk = 0;
        if ((rc = get_int(path, ro, "router.", "tokens", 0, 1LL << 40, 1, &tk))) goto done;
        b->router_tokens = (int)(tk > INT32_MAX ? INT32_MAX : tk);
    }
    rc = parse_learned_router(path, j, b);
    if (!rc) rc = parse_attn_calibration(path, j, b);
done:
    json_decref(j);
    if (rc) {
        mend_bank_free(b);
        return rc;
    }
    *out = b;
    return 0;
}

int mend_bank_read(const char *dir, mend_bank **out) {
    if (!out) return mend_set_error(MEND_EINVAL, "mend_bank_read: out is NULL");
    *out = NULL;
    if (!dir) return mend_set_error(MEND_EINVAL, "mend_bank_read: no directory");
    if (!mend_is_dir(dir)) return mend_set_error(MEND_EIO, "%s: not a directory (expected a prompt bank)", dir);
    char *path = mend_path_join(dir, MEND_BANK_FILE);
    if (!path) return mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
    char *text = NULL;
    size_t len = 0;
    int rc;
    if (!mend_file_exists(path)) rc = mend_set_error(MEND_EIO, "%s: missing (a prompt bank has %s)", path,
                                                     MEND_BANK_FILE);
    else rc = mend_read_file(path, (size_t)64 << 20, &text, &len);
    if (rc == 0) rc = mend_bank_parse(path, text, len, out);
    if (rc == 0 && !((*out)->dir = mend_strdup(dir))) {
        mend_bank_free(*out);
        *out = NULL;
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    }
    free(text);
    free(path);
    return rc;
}

int mend_bank_load_prompts(mend_bank *b, int dim) {
    if (!b || !b->dir) return mend_set_error(MEND_EINVAL, "mend_bank_load_prompts: a bank read from a directory "
                                             "is needed");
    if (dim != b->dim)
        return mend_set_error(MEND_EINVAL, "%s/%s: dim is %d but the model's hidden size is %d", b->dir,
                              MEND_BANK_FILE, b->dim, dim);
    for (int k = 0; k < b->n; k++) {
        mend_bank_prompt *p = &b->p[k];
        free(p->emb);
        p->emb = NULL;
        char *ad = mend_path_join(b->dir, p->adapter);
        if (!ad) return mend_set_error(MEND_ENOMEM, "%s: out of memory", b->dir);
        int nv = 0;
        int rc = mend_adapter_read(ad, dim, &p->emb, &nv);
        if (rc == 0 && nv != b->nv) {
            rc = mend_set_error(MEND_EFORMAT, "%s: the adapter has %d virtual tokens but %s/%s says "
                                "num_virtual_tokens %d (every prompt of a bank has the same length)", ad, nv,
                                b->dir, MEND_BANK_FILE, b->nv);
            free(p->emb);
            p->emb = NULL;
        }
        free(ad);
        if (rc) return rc;
    }
    return 0;
}

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

int mend_bank_write(const char *dir, const mend_bank *b) {
    if (!dir || !b || b->n < 1 || b->dim < 1 || b->nv < 1)
        return mend_set_error(MEND_EINVAL, "mend_bank_write: a bank with >= 1 prompt, dim and nv is needed");
    if (b->learned && (b->learned->K != b->n || b->learned->dim != b->dim || !b->learned->w || !b->learned->b))
        return mend_set_error(MEND_EINVAL, "mend_bank_write: the learned router is not K = %d by dim = %d", b->n,
                              b->dim);
    int rc = mend_mkdir_p(dir);
    if (rc) return rc;
    json_t *j = json_object(), *ps = json_array();
    json_object_set_new(j, "format", json_string(BANK_FORMAT));
    json_object_set_new(j, "version", json_integer(1));
    json_object_set_new(j, "base_model", str_or_null(b->base_model));
    if (b->trained_on.has_model) {
        char hx[17];
        mend_fp_hex(b->trained_on.model, hx);
        json_object_set_new(j, "model_fingerprint", json_string(hx));
        if (b->trained_on.has_recipe) {
            mend_fp_hex(b->trained_on.recipe, hx);
            json_object_set_new(j, "model_recipe", json_string(hx));
        }
    }
    json_object_set_new(j, "dim", json_integer(b->dim));
    json_object_set_new(j, "num_virtual_tokens", json_integer(b->nv));
    for (int k = 0; k < b->n; k++) {
        const mend_bank_prompt *p = &b->p[k];
        if (!mend_bank_name_ok(p->name)) {
            json_decref(ps);
            json_decref(j);
            return mend_set_error(MEND_EINVAL, "%s: prompt %d has an invalid name", dir, k);
        }
        json_t *e = json_object();
        json_object_set_new(e, "name", json_string(p->name));
        json_object_set_new(e, "adapter", json_string(p->adapter ? p->adapter : p->name));
        json_object_set_new(e, "domain", json_string(p->domain ? p->domain : p->name));
        json_object_set_new(e, "corpus", str_or_null(p->corpus));
        if (p->steps >= 0) json_object_set_new(e, "steps", json_integer(p->steps));
        json_object_set_new(e, "best_val", isfinite(p->best_val) ? json_real(p->best_val) : json_null());
        json_object_set_new(e, "centroid", p->centroid ? float_array(p->centroid, (size_t)b->dim) : json_null());
        json_array_append_new(ps, e);
    }
    json_object_set_new(j, "prompts", ps);
    json_t *sel = json_object();
    json_object_set_new(sel, "default", json_string(b->default_selector ? b->default_selector : "attention"));
    json_t *ly = json_array();
    json_array_append_new(ly, json_integer(b->layer0));
    json_array_append_new(ly, json_integer(b->layer1));
    json_object_set_new(sel, "layers", ly);
    json_object_set_new(j, "selector", sel);
    json_t *ro = json_object();
    json_object_set_new(ro, "feature", json_string("mean_final_norm_hidden"));
    json_object_set_new(ro, "metric", json_string("cosine"));
    json_object_set_new(ro, "tokens", json_integer(b->router_tokens));
    json_object_set_new(j, "router", ro);
    if (b->learned) json_object_set_new(j, "learned_router", learned_router_json(b->learned));
    if (b->attn_offsets) {
        json_t *ac = json_object(), *ly = json_array();
        json_array_append_new(ly, json_integer(b->attn_layer0));
        json_array_append_new(ly, json_integer(b->attn_layer1));
        json_object_set_new(ac, "layers", ly);
        json_object_set_new(ac, "windows", json_integer(b->attn_windows));
        json_object_set_new(ac, "offsets", float_array(b->attn_offsets, (size_t)b->n));
        json_object_set_new(j, "attention_calibration", ac);
    }
    char *txt = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    json_decref(j);
    char *path = mend_path_join(dir, MEND_BANK_FILE);
    if (!txt || !path) {
        free(txt);
        free(path);
        return mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
    }
    size_t len = strlen(txt);
    char *t2 = realloc(txt, len + 2);
    if (!t2) {
        free(txt);
        free(path);
        return mend_set_error(MEND_ENOMEM, "%s: out of memory", dir);
    }
    t2[len++] = '\n';
    t2[len] = 0;
    rc = mend_write_file_atomic(path, t2, len);
    free(t2);
    free(path);
    return rc;
}
