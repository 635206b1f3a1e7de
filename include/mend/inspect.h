/* mend public API: looking inside a loaded model (what `mend info` prints):
 * the file's tensors, metadata, sparsity and non-finite weights. Included by
 * mend.h. */
#ifndef MEND_INSPECT_API_H
#define MEND_INSPECT_API_H

#include "mend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mend_file_info {
    int is_gguf;              /* 0: a Hugging Face directory (no tensors listed below) */
    uint32_t version;         /* GGUF version */
    uint64_t n_tensors, n_kv; /* GGUF tensors and metadata keys */
    int rope_neox;            /* 1: rotary pairs are the two halves (neox), 0: adjacent pairs */
} mend_file_info;
/* The container of m: GGUF version and counts, or a Hugging Face directory. */
void mend_model_file_info(const mend_model *m, mend_file_info *out);

typedef struct mend_tensor_info {
    const char *name;         /* borrowed from the model */
    uint32_t type;            /* ggml type id (mend_type_name) */
    int n_dims;
    int64_t n_elems;
    size_t n_bytes;
} mend_tensor_info;
/* Tensor i (0 <= i < n_tensors, in file order) of a GGUF model; MEND_ERANGE
 * otherwise or for a Hugging Face directory. */
int mend_model_tensor(const mend_model *m, uint64_t i, mend_tensor_info *out);
/* Exact zeros of tensor i after dequantization, of n elements. */
int mend_model_tensor_zeros(const mend_model *m, uint64_t i, int64_t *zeros, int64_t *n);
/* An integer metadata value (GGUF key); MEND_EINVAL when absent or not an
 * integer. */
int mend_model_meta_int(const mend_model *m, const char *key, int64_t *out);

/* One weight tensor with non-finite values, as mend_model_check_finite
 * reports it. */
typedef struct mend_nonfinite {
    const char *what;         /* "token embedding", "wq", ... */
    int layer;                /* -1 outside the layers */
    int64_t nan, inf;
    int64_t first;            /* first bad element (row-major) */
    int64_t n_elems;
} mend_nonfinite;
typedef void (*mend_nonfinite_fn)(void *user, const mend_nonfinite *t);
/* Scan every weight of m (loaded with keep_packed 0) for NaN / Inf; fn (may
 * be NULL) is called for each tensor that has any. Totals: bad values,
 * tensors with any, weights scanned (each may be NULL). */
int mend_model_check_finite(const mend_model *m, mend_nonfinite_fn fn, void *user, int64_t *n_bad,
                            int64_t *n_tensors_bad, int64_t *n_weights);

#ifdef __cplusplus
}
#endif
#endif
