/* `mend compress`: quantize every linear layer of a GGUF model and write a
 * GGUF file (llama.cpp-loadable for ggml types).
 *
 * RTN rounds each matrix onto the target grid. GPTQ runs "true sequential",
 * layer by layer, on the hidden states of all calibration samples:
 *   X   hidden states entering layer l (nsamples × seqlen × dim, f32)
 *   1.  H  = 2/N Σ xbᵀxb, xb = rmsnorm(X)            -> quantize q, k, v
 *   2.  att with the quantized q/k/v; H over att      -> quantize o
 *   3.  X += att Ŵoᵀ; H over rmsnorm(X)               -> quantize gate, up
 *   4.  h = silu(xb Ŵgᵀ)(xb Ŵuᵀ); H over h             -> quantize down
 *   5.  X += h Ŵdᵀ: the next layer's input, computed with every weight of
 *       the layer quantized.
 * Every Hessian counts each window's first token sink_weight times
 * (default seqlen / 32): position 0 is the model's attention sink, read by
 * every later token, and with plain weights a 2048-token window gives it
 * 1/2048 of the objective (docs/compress.md, "The first token").
 * Samples run one per OpenMP thread with single-threaded BLAS; each
 * sample's Hessian term is added in sample order, so results do not depend
 * on the thread count.
 *
 * Checkpoints. With a checkpoint path, after each finished layer a GGUF file
 * holding the finished layers' packed tensors and X (as tensor
 * "mend.ckpt.hidden") is written atomically. A later run with the same
 * source, options and calibration tokens resumes after the last finished
 * layer and writes a byte-identical output; the checkpoint is deleted once
 * the output is written. A checkpoint that does not match is an error (the
 * caller decides whether to delete it). */
#ifndef MEND_DRIVER_H
#define MEND_DRIVER_H

#include <stdint.h>
#include "compress/quantize.h"

struct mend_prune_opts;   /* compress/sparsegpt.h */

enum mend_compress_method {
    MEND_COMPRESS_RTN = 0,
    MEND_COMPRESS_GPTQ = 1
};

/* embd_type: keep the source tensor's type (token_embd / output) */
#define MEND_EMBD_KEEP (-1)

typedef struct mend_compress_event {
    int layer;          /* current layer (0-based) */
    int n_layers;
    const char *stage;  /* "qkv", "o", "gate/up", "down", "next", "layer done", "write" */
    int64_t done;       /* work units done since the start of this run (resumed layers excluded) */
    int64_t total;      /* work units of this run */
    double loss;        /* "layer done": sum of GPTQ's error estimates over the layer's matrices */
} mend_compress_event;

/* Return non-zero to stop; after a "layer done" event the checkpoint of that
 * layer is already on disk. */
typedef int (*mend_compress_progress_fn)(void *user, const mend_compress_event *ev);

/* The version of what mend compress writes for given settings: part of the
 * recipe fingerprint (mend.compress.recipe), so a change to the compressor
 * that writes other weights for the same command must increase it. */
#define MEND_COMPRESS_FORMAT 1

typedef struct mend_compress_opts {
    int method;                 /* enum mend_compress_method */
    mend_qfmt fmt;              /* target of the linear layers (K types fall back per matrix) */
    int embd_type;              /* token_embd / output: MEND_EMBD_KEEP or a ggml type (RTN) */
    double damp;                /* GPTQ: 0 -> 0.01 */
    int block;                  /* GPTQ lazy-batch width: 0 -> 128 */
    int act_order;
    int fit_importance;         /* GPTQ: diag(H) as importance in the block fits */
    int sink_weight;            /* calibrated passes: each window's first token counts this many
                                 * times in the Hessians (and Wanda's norms); 0 -> the default
                                 * mend_sink_weight_default(seqlen), 1 -> plain */
    const int32_t *calib;       /* GPTQ: nsamples × seqlen tokens */
    int nsamples, seqlen;
    const char *calib_desc;     /* recorded in the output metadata (may be NULL) */
    const char *checkpoint;     /* checkpoint path or NULL (GPTQ only) */
    mend_compress_progress_fn progress;
    void *progress_user;
    /* pruning before quantization (or jointly with it), NULL: none. Wanda
     * and SparseGPT run in the calibrated layer-by-layer passes, even with
     * method RTN (prune, then round or convert); magnitude needs none. */
    const struct mend_prune_opts *prune;
} mend_compress_opts;

/* The default sink weight for windows of seqlen tokens (see docs/compress.md,
 * "The first token of a window"). */
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

/* Compress src (GGUF) into out. cancelled: returns MEND_EINVAL with the
 * sentence "compression stopped after layer N". */
int mend_compress(const char *src, const char *out, const mend_compress_opts *o, mend_compress_result *res);

/* llama.cpp's general.file_type for a ggml target (LLAMA_FTYPE_*), -1 for none. */
int mend_compress_file_type(uint32_t ggml_type);

#endif
