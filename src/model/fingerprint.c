/* Model fingerprints (mend.h): the hash of every tensor as stored, and the
 * source / recipe fingerprints a compressed file records in its metadata.
 *
 *   per tensor   d = mend_hash_bytes(data, nbytes, FP_SEED)      (in parallel)
 *   model        h = FP_SEED; for each tensor in file order:
 *                  h = step(h, type); h = step(h, n_dims); h = step(h, dim_i) ...;
 *                  h = step(h, d)
 *                fingerprint = fmix(h)
 * type is the ggml type id (safetensors: the id of its dtype, or the hash of
 * the dtype string for dtypes mend does not convert); the dims are as the file
 * writes them (GGUF ne[0] first, safetensors outermost first). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "model/model.h"
#include "util/util.h"

#define FP_SEED 0x6d656e642d667031ull   /* "mend-fp1" */

uint64_t mend_fp_of_tensors(const mend_fp_tensor *t, size_t n, uint64_t *scratch) {
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
    for (size_t i = 0; i < n; i++) scratch[i] = mend_hash_bytes(t[i].data, t[i].nbytes, FP_SEED);
    uint64_t h = FP_SEED;
    for (size_t i = 0; i < n; i++) {
        h = mend_hash_step(h, t[i].type);
        h = mend_hash_step(h, (uint64_t)t[i].n_dims);
        for (int d = 0; d < t[i].n_dims; d++) h = mend_hash_step(h, (uint64_t)t[i].shape[d]);
        h = mend_hash_step(h, scratch[i]);
    }
    return mend_hash_fmix(h);
}

static int gguf_fingerprint(const mend_gguf *g, uint64_t *out) {
    const size_t n = (size_t)g->n_tensors;
    mend_fp_tensor *t = calloc(n ? n : 1, sizeof *t);
    uint64_t *scratch = malloc((n ? n : 1) * sizeof *scratch);
    if (!t || !scratch) {
        free(t);
        free(scratch);
        return mend_set_error(MEND_ENOMEM, "%s: out of memory hashing %zu tensors", g->path, n);
    }
    for (size_t i = 0; i < n; i++) {
        const gguf_tensor *x = &g->tensors[i];
        t[i] = (mend_fp_tensor){x->type, (int)x->n_dims, x->ne, x->data, x->nbytes};
    }
    *out = mend_fp_of_tensors(t, n, scratch);
    free(t);
    free(scratch);
    return 0;
}

/* An optional 16-hex-digit string key; *has 0 when absent. */
static int meta_fp(const mend_model *m, const char *key, int *has, uint64_t *v) {
    *has = 0;
    if (!m->gguf || !mend_gguf_find(m->gguf, key)) return 0;
    const char *s;
    int rc = mend_gguf_get_str(m->gguf, key, &s);
    if (!rc) rc = mend_fp_parse(s, v);
    if (rc) return mend_error_prefix(rc, "%s: key '%s'", m->path ? m->path : "model", key);
    *has = 1;
    return 0;
}

int mend_model_fingerprint(const mend_model *m, mend_fp *out) {
    if (!m || !out) return mend_set_error(MEND_EINVAL, "mend_model_fingerprint: NULL model or output");
    memset(out, 0, sizeof *out);
    int rc;
    if (m->gguf) {
        if ((rc = gguf_fingerprint(m->gguf, &out->model))) return rc;
    } else if (m->has_fingerprint) {
        out->model = m->fingerprint;
    } else {
        return mend_set_error(MEND_EUNSUPPORTED, "%s: the loader kept no tensor bytes to fingerprint",
                              m->path ? m->path : "model");
    }
    out->has_model = 1;
    if ((rc = meta_fp(m, "mend.compress.source_fingerprint", &out->has_source, &out->source)) ||
        (rc = meta_fp(m, "mend.compress.recipe", &out->has_recipe, &out->recipe)))
        return rc;
    return 0;
}

int mend_fp_compare(const mend_fp *model, const mend_fp *rec) {
    if (!model || !rec || !rec->has_model) return MEND_FP_UNKNOWN;
    if (model->has_model && rec->model == model->model) return MEND_FP_SAME;
    if (model->has_recipe && rec->has_recipe && rec->recipe == model->recipe) return MEND_FP_SAME_RECIPE;
    return MEND_FP_OTHER;
}
