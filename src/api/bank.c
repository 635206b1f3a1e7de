/* Public accessors and builders of mend/bank.h over the library's bank
 * layout (prompt/bank.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mend.h"
#include "prompt/bank.h"
#include "util/util.h"

void mend_bank_get_info(const mend_bank *b, mend_bank_info *info) {
    memset(info, 0, sizeof *info);
    info->dir = b->dir;
    info->base_model = b->base_model;
    info->trained_on = b->trained_on;
    info->n_prompts = b->n;
    info->nv = b->nv;
    info->dim = b->dim;
    info->default_selector = b->default_selector;
    info->layer0 = b->layer0;
    info->layer1 = b->layer1;
    info->router_tokens = b->router_tokens;
    info->has_attn_calibration = b->attn_offsets != NULL;
    info->attn_layer0 = b->attn_layer0;
    info->attn_layer1 = b->attn_layer1;
    info->attn_windows = b->attn_windows;
    info->attn_offsets = b->attn_offsets;
    const mend_learned_router *r = b->learned;
    info->has_learned_router = r != NULL;
    if (r) {
        info->learned_normalize = r->normalize;
        info->learned_train_windows = r->train_windows;
        info->learned_train_acc = r->train_acc;
        info->learned_heldout_acc = r->heldout_acc;
    }
}

int mend_bank_get_prompt(const mend_bank *b, int k, mend_bank_prompt_info *out) {
    memset(out, 0, sizeof *out);
    if (k < 0 || k >= b->n) return mend_set_error(MEND_ERANGE, "bank: no prompt %d (the bank holds %d)", k, b->n);
    const mend_bank_prompt *p = &b->p[k];
    out->name = p->name;
    out->adapter = p->adapter;
    out->domain = p->domain;
    out->corpus = p->corpus;
    out->centroid = p->centroid;
    out->steps = p->steps;
    out->best_val = p->best_val;
    out->emb = p->emb;
    return 0;
}

/* A malloc'd copy of s, NULL for NULL; *ok cleared when out of memory. */
static char *dup_or_null(const char *s, int *ok) {
    if (!s) return NULL;
    char *d = mend_strdup(s);
    if (!d) *ok = 0;
    return d;
}

int mend_bank_new(mend_bank **out, int dim, int nv, const char *base_model, const mend_fp *trained_on, int layer0,
                  int layer1) {
    *out = NULL;
    if (dim <= 0 || nv <= 0)
        return mend_set_error(MEND_EINVAL, "bank: dim %d and num_virtual_tokens %d must be positive", dim, nv);
    mend_bank *b = calloc(1, sizeof *b);
    if (!b) return mend_set_error(MEND_ENOMEM, "bank: out of memory");
    int ok = 1;
    b->dim = dim;
    b->nv = nv;
    b->base_model = dup_or_null(base_model, &ok);
    if (trained_on) b->trained_on = *trained_on;
    b->default_selector = dup_or_null("attention", &ok);
    b->layer0 = layer0;
    b->layer1 = layer1;
    if (!ok) {
        mend_bank_free(b);
        return mend_set_error(MEND_ENOMEM, "bank: out of memory");
    }
    *out = b;
    return 0;
}

int mend_bank_add_prompt(mend_bank *b, const char *name, const char *adapter, const char *domain, const char *corpus,
                         int steps, double best_val, const float *centroid) {
    if (!name || !mend_bank_name_ok(name))
        return mend_set_error(MEND_EINVAL, "bank: prompt name '%s' is not 1..64 characters of [A-Za-z0-9_.-]",
                              name ? name : "(null)");
    if (mend_bank_find(b, name) >= 0) return mend_set_error(MEND_EINVAL, "bank: a second prompt called '%s'", name);
    if (b->n >= MEND_BANK_MAX_PROMPTS)
        return mend_set_error(MEND_ERANGE, "bank: more than %d prompts", MEND_BANK_MAX_PROMPTS);
    mend_bank_prompt *np = realloc(b->p, (size_t)(b->n + 1) * sizeof *np);
    if (!np) return mend_set_error(MEND_ENOMEM, "bank: out of memory");
    b->p = np;
    mend_bank_prompt *p = &b->p[b->n];
    memset(p, 0, sizeof *p);
    int ok = 1;
    p->name = dup_or_null(name, &ok);
    p->adapter = dup_or_null(adapter ? adapter : name, &ok);
    p->domain = dup_or_null(domain ? domain : name, &ok);
    p->corpus = dup_or_null(corpus, &ok);
    p->steps = steps;
    p->best_val = best_val;
    if (centroid && (p->centroid = malloc((size_t)b->dim * sizeof(float))))
        memcpy(p->centroid, centroid, (size_t)b->dim * sizeof(float));
    else if (centroid)
        ok = 0;
    b->n++;   /* counted even when a copy failed, so that mend_bank_free releases it */
    if (!ok) return mend_set_error(MEND_ENOMEM, "bank: out of memory");
    return b->n - 1;
}

void mend_bank_set_router_tokens(mend_bank *b, int tokens) { b->router_tokens = tokens; }

void mend_bank_set_learned_router(mend_bank *b, mend_learned_router *r) {
    if (b->learned != r) mend_learned_router_free(b->learned);
    b->learned = r;
}
