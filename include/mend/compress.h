/* mend public API: compression (quantization, pruning, calibration).
 * Included by mend.h; see docs/api.md and docs/compress.md. */
#ifndef MEND_COMPRESS_API_H
#define MEND_COMPRESS_API_H

#include "mend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- ggml types ------------------------------------------------------------ */
/* Name of a ggml type id ("q4_0", "f32", ...), NULL for an id mend does not know. */
const char *mend_type_name(uint32_t type);
/* Type id from a name such as "q4_0" / "Q4_K" (case-insensitive); -1 if unknown. */
int mend_type_from_name(const char *name);
/* 1 for the float types (f32, f16, bf16), 0 for block-quantized ones. */
int mend_type_is_float(uint32_t type);

/* ---- quantization formats -------------------------------------------------- */
/* type id of mend's generic B-bit grid in mend_qfmt.type (outside ggml's range) */
#define MEND_QFMT_GENERIC 0x4d00u

/* A target format: a ggml block type, or mend's generic grid of `bits` bits
 * with one scale and zero per group of `group` weights of a row. */
typedef struct mend_qfmt {
    uint32_t type;   /* ggml type id, or MEND_QFMT_GENERIC */
    int bits;        /* generic: 2, 3, 4 or 8 */
    int group;       /* generic: 32, 64, 128 or -1 (one group per row) */
    int sym;         /* generic: 1 symmetric (zero fixed at 2^(bits-1)), 0 asymmetric */
} mend_qfmt;

/* A ggml type as a format. */
static inline mend_qfmt mend_qfmt_ggml(uint32_t type) {
    mend_qfmt f = {type, 0, 0, 0};
    return f;
}
/* The generic grid (no check here; mend_compress checks it). */
static inline mend_qfmt mend_qfmt_generic(int bits, int group, int sym) {
    mend_qfmt f = {MEND_QFMT_GENERIC, bits, group, sym};
    return f;
}
/* "q4_K" / "int4-g128-asym" / "int3-row-sym" into buf (returned). */
const char *mend_qfmt_name(const mend_qfmt *f, char *buf, size_t len);
/* Parse a name as printed by mend_qfmt_name (ggml names case-insensitive);
 * MEND_EINVAL with a sentence naming the text otherwise. */
int mend_qfmt_parse(mend_qfmt *f, const char *name);

/* ---- pruning targets ------------------------------------------------------- */
typedef struct mend_sparsity {
    double ratio;   /* unstructured: fraction of weights pruned, 0 <= ratio < 1 */
    int n, m;       /* N:M when m > 0: keep n of every m consecutive inputs (0 <= n < m <= 256) */
} mend_sparsity;

static inline mend_sparsity mend_sparsity_unstructured(double ratio) {
    mend_sparsity s = {ratio, 0, 0};
    return s;
}
static inline mend_sparsity mend_sparsity_nm(int n, int m) {
    mend_sparsity s = {m > 0 ? (double)(m - n) / m : 0, n, m};
    return s;
}
/* Parse "0.5", "50%" (unstructured) or "2:4" (N:M, keep 2 of 4); MEND_EINVAL otherwise. */
int mend_sparsity_parse(mend_sparsity *s, const char *text);
/* "50%" / "2:4" into buf (returned). */
const char *mend_sparsity_name(const mend_sparsity *s, char *buf, size_t len);

enum mend_prune_method {
    MEND_PRUNE_NONE = 0,
    MEND_PRUNE_MAGNITUDE = 1,
    MEND_PRUNE_WANDA = 2,
    MEND_PRUNE_SPARSEGPT = 3
};

typedef struct mend_prune_opts {
    int method;           /* enum mend_prune_method */
    mend_sparsity sp;
    int joint;            /* SparseGPT followed by GPTQ: one joint pass instead */
} mend_prune_opts;

/* "none", "magnitude", "wanda", "sparsegpt" */
const char *mend_prune_method_name(int method);
/* The method called name into *method; MEND_EINVAL for an unknown name. */
int mend_prune_method_parse(const char *name, int *method);
/* Wanda and SparseGPT need calibration inputs (a Hessian); magnitude does not. */
static inline int mend_prune_needs_calib(const mend_prune_opts *p) {
    return p && (p->method == MEND_PRUNE_WANDA || p->method == MEND_PRUNE_SPARSEGPT);
}

/* ---- calibration ----------------------------------------------------------- */
/* nsamples windows of exactly seqlen tokens drawn from text files: sample i
 * from file i mod n_files, starting at a paragraph start picked with a
 * seeded generator (same files, seed and tokenizer: same tokens). */
typedef struct mend_calib {
    int nsamples, seqlen;
    int32_t *tokens;        /* nsamples x seqlen, owned (mend_calib_free) */
    uint64_t hash;          /* hash of the tokens (checkpoint identity) */
} mend_calib;

/* Draw the samples; every file must hold at least seqlen tokens (the error
 * names the file). */
int mend_calib_build(mend_calib *c, const mend_tokenizer *tok, const char *const *paths, int n_paths,
                     int nsamples, int seqlen, uint64_t seed);
void mend_calib_free(mend_calib *c);
/* The samples as text (detokenized windows separated by blank lines), e.g.
 * for llama-imatrix on the same calibration text. *text is malloc'd. */
int mend_calib_text(const mend_calib *c, const mend_tokenizer *tok, char **text, size_t *len);

/* ---- compress a model ------------------------------------------------------ */
enum mend_compress_method {
    MEND_COMPRESS_RTN = 0,   /* round to nearest */
    MEND_COMPRESS_GPTQ = 1   /* GPTQ, layer by layer on calibration hidden states */
};

/* embd_type: keep the source tensor's type (token_embd / output) */
#define MEND_EMBD_KEEP (-1)

/* What the progress callback receives. */
typedef struct mend_compress_event {
    int layer;          /* current layer (0-based) */
    int n_layers;
    const char *stage;  /* "qkv", "o", "gate/up", "down", "next", "layer done", "write" */
    int64_t done;       /* work units done since the start of this run (resumed layers excluded) */
    int64_t total;      /* work units of this run */
    double loss;        /* "layer done": sum of GPTQ's error estimates over the layer's matrices */
} mend_compress_event;

/* Return non-zero to stop (cancel); after a "layer done" event the
 * checkpoint of that layer is already on disk, so a later run resumes. */
typedef int (*mend_compress_progress_fn)(void *user, const mend_compress_event *ev);

typedef struct mend_compress_opts {
    int method;                 /* enum mend_compress_method */
    mend_qfmt fmt;              /* target of the linear layers (K types fall back per matrix) */
    int embd_type;              /* token_embd / output: MEND_EMBD_KEEP or a ggml type (RTN) */
    double damp;                /* GPTQ: 0 -> 0.01 */
    int block;                  /* GPTQ lazy-batch width: 0 -> 128 */
    int act_order;              /* GPTQ: columns by descending diag(H), static grids; -1: on unless
                                 * pruning (refused with pruning) */
    int fit_importance;         /* GPTQ: diag(H) as importance in the block fits; -1: on for ggml
                                 * types, off for the generic grids */
    int sink_weight;            /* calibrated passes: each window's first token counts this many
                                 * times in the Hessians (and Wanda's norms); 0 -> the default
                                 * mend_sink_weight_default(seqlen), 1 -> plain */
    const int32_t *calib;       /* GPTQ / Wanda / SparseGPT: nsamples x seqlen tokens (borrowed) */
    int nsamples, seqlen;
    const char *calib_desc;     /* recorded in the output metadata (may be NULL) */
    const char *checkpoint;     /* checkpoint path or NULL (GPTQ only): resume after a kill */
    mend_compress_progress_fn progress;
    void *progress_user;
    /* pruning before quantization (or jointly with it), NULL: none. Wanda
     * and SparseGPT run in the calibrated layer-by-layer passes, even with
     * method RTN (prune, then round or convert); magnitude needs none. */
    const mend_prune_opts *prune;
} mend_compress_opts;

/* Defaults: RTN to q4_0, embeddings kept, act_order and fit_importance -1
 * (their defaults), every other field 0 / NULL. */
void mend_compress_opts_init(mend_compress_opts *o);
/* The default sink weight for windows of seqlen tokens (docs/compress.md). */
int mend_sink_weight_default(int seqlen);

typedef struct mend_compress_result {
    int resumed_layers;         /* layers taken from a checkpoint */
    int64_t n_quantized;        /* weights in quantized linear layers */
    int64_t bytes_quantized;    /* their packed bytes */
    int64_t file_bytes;
    int n_fallback;             /* matrices written in a fallback type */
    uint32_t fallback_type;     /* the (last) fallback type used, for messages */
    double seconds;
} mend_compress_result;

/* Compress the GGUF file src into out (written atomically). Errors name the
 * file and the setting; cancelled by the progress callback: MEND_EINVAL with
 * "compression stopped after layer N". res may be NULL. */
int mend_compress(const char *src, const char *out, const mend_compress_opts *o, mend_compress_result *res);

#ifdef __cplusplus
}
#endif
#endif
