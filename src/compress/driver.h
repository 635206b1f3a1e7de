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

/* The method enum, MEND_EMBD_KEEP, mend_compress_event, mend_compress_opts,
 * mend_compress_result, mend_compress and mend_sink_weight_default are public
 * (mend/compress.h). */

/* The version of what mend compress writes for given settings: part of the
 * recipe fingerprint (mend.compress.recipe), so a change to the compressor
 * that writes other weights for the same command must increase it. */
#define MEND_COMPRESS_FORMAT 1

/* The options with their defaults filled in (act_order and fit_importance
 * < 0), or MEND_EINVAL for a combination mend does not run: what
 * mend_compress checks first, for callers that prepare calibration before
 * calling it. */
int mend_compress_resolve(const mend_compress_opts *in, mend_compress_opts *out);

/* llama.cpp's general.file_type for a ggml target (LLAMA_FTYPE_*), -1 for none. */
int mend_compress_file_type(uint32_t ggml_type);

#endif
