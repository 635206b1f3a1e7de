/* mend — repair compressed LLMs with soft prompts.
 *
 * Public C API, version 1 (docs/api.md). Every client (the mend command,
 * the Python package, examples/) uses only what is declared here and in the
 * headers under mend/ that this one includes:
 *   mend/files.h     reading and atomically writing files, paths, sizes
 *   mend/inspect.h   a model file's tensors, metadata, sparsity, NaN scan
 *   mend/compress.h  RTN / GPTQ quantization, pruning, calibration
 *   mend/tune.h      soft prompts (PEFT adapters) and prompt tuning
 *   mend/bank.h      prompt banks, selectors, the learned router
 *   mend/eval.h      task files, zero-shot scoring, results files, reports
 *   mend/idp.h       inference-time dynamic prompting over a bank
 *   mend/jobs.h      whole steps on files: eval, ppl, tune, bank build, repair
 *
 * Every function that can fail returns an int status: 0 on success, a
 * negative MEND_E* code on failure, and leaves a sentence naming the file,
 * the field and what was expected in mend_last_error(). Objects are opaque
 * handles made by a *_new / *_load / *_read / *_open function and released
 * by the matching *_free / *_close (which accept NULL). Strings and arrays
 * a function returns through a `const` pointer are borrowed from the
 * handle; those returned through `char **` / `T **` are malloc'd and the
 * caller frees them. Long jobs report progress through a callback with a
 * `void *user` pointer; a nonzero return from it cancels the job, which
 * then fails with MEND_EINVAL and a sentence saying it was stopped (what
 * was checkpointed stays, so the same call with resume continues). Options
 * structs are filled by their *_init / *_default function before fields are
 * set, so that fields added later get their defaults. Library code never
 * prints, never exits and never reads the environment for behaviour.
 */
#ifndef MEND_H
#define MEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEND_VERSION "0.1.0"

/* ---- errors ------------------------------------------------------------ */
enum {
    MEND_OK = 0,
    MEND_EIO = -1,          /* cannot open / read / write a file */
    MEND_EFORMAT = -2,      /* the input is malformed, truncated or corrupt */
    MEND_ENOMEM = -3,       /* allocation failed */
    MEND_EINVAL = -4,       /* bad argument from the caller */
    MEND_ERANGE = -5,       /* a size or index is out of range / overflows */
    MEND_EUNSUPPORTED = -6  /* valid input that mend does not handle */
};

/* The sentence describing the last error raised on this thread. */
const char *mend_last_error(void);
/* Record the sentence mend_last_error() returns (printf format) and return
 * code: for clients and callbacks that fail with their own reason through
 * the same channel as the library. */
int mend_set_error(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Name of a status code ("EFORMAT", ...). */
const char *mend_strerror(int status);

/* ---- threads ------------------------------------------------------------ */
/* Number of threads for OpenMP regions and BLAS (0 = all cores). */
void mend_set_threads(int n);
int mend_get_threads(void);

/* ---- instruction set ---------------------------------------------------- */
/* The widest instruction set the kernels may use: "scalar" (portable C),
 * "avx2" (AVX2 + FMA + F16C) or "avx512" (AVX-512 F/BW/VL, with VNNI and
 * BF16 kernels where the CPU has them); on ARM64 "scalar" or "neon"
 * (Advanced SIMD, with the dot-product kernels where the CPU has the
 * extension; "neon-nodotprod" leaves them out, "neon-dotprod" insists on
 * them). By default the widest this CPU has;
 * a lower level runs every kernel on that level's code (for testing a
 * narrower CPU's paths, or A/B timing). NULL or "" restores the default.
 * Fails (MEND_EINVAL) for an unknown name and (MEND_EUNSUPPORTED) for a level
 * this CPU lacks, leaving the level as it was. Process-wide: call it before
 * any work starts. f32 matrix products give the same bits at every level;
 * quantized products and activations differ by rounding between levels. */
int mend_set_isa(const char *name);
/* Name of the level in effect ("scalar", "avx2", "avx512"; on ARM64 "neon"). */
const char *mend_isa(void);
/* The same with the extensions in use, e.g. "avx512 (vnni, bf16)". */
const char *mend_isa_describe(void);
/* Name of the widest level this CPU has, whatever mend_set_isa chose. */
const char *mend_isa_detected(void);

/* ---- models ------------------------------------------------------------- */
typedef struct mend_model mend_model;
typedef struct mend_tokenizer mend_tokenizer;

typedef struct mend_load_opts {
    int keep_packed;    /* 1: keep quantized matrices packed (native kernels);
                           0: dequantize every matrix to f32 at load */
    int no_repack;      /* with keep_packed: 1 skips the interleaved copy of
                           the q4_0 / q4_1 / q5_0 / q2_K / q3_K / q4_K / q6_K layer
                           matrices that batched products run on (same size as the
                           q4_0 / q4_1 / q5_0 data, about 1.9x the q2_K data, 1.5x
                           q3_K, 1.14x q4_K, 1.4x q6_K); made on CPUs with AVX2 or
                           wider, and on ARM64 (NEON) */
} mend_load_opts;

/* Load a GGUF file or a Hugging Face directory (config.json, *.safetensors,
 * tokenizer.json). opts may be NULL for defaults. */
int mend_model_load(mend_model **out, const char *path, const mend_load_opts *opts);
void mend_model_free(mend_model *m);

typedef struct mend_model_info {
    char arch[32];
    int n_vocab, dim, n_layers, n_heads, n_kv_heads, head_dim, hidden_dim;
    int ctx_len;
    float rope_theta, norm_eps;
    int tied_embeddings;
    int64_t n_params;
    size_t repacked_bytes;   /* the interleaved copy (mend_load_opts.no_repack) */
} mend_model_info;
void mend_model_get_info(const mend_model *m, mend_model_info *info);
/* One line naming the architecture and every feature it uses, e.g.
 * "qwen3: GQA 4/2, QK-norm, rope neox base 1e+06", into buf (cap n,
 * always terminated). */
void mend_describe_features(const mend_model *m, char *buf, size_t n);
const mend_tokenizer *mend_model_tokenizer(const mend_model *m);

/* ---- fingerprints (model/fingerprint.c) ----------------------------------
 * A model's fingerprint is a 64-bit hash of its tensors as stored in the
 * file: for each tensor in file order its type, shape and data bytes (GGUF:
 * the tensor-info order; HF: the shards by name, each in header order). The
 * path and the metadata do not count. Files written by `mend compress` also
 * record the fingerprint of their source and a recipe: the hash of that
 * source fingerprint, every mend.compress.* setting and the compressor's
 * format version, equal for two files made by the same command from the same
 * source even when float rounding moved a few weights. Adapters and banks
 * record the fingerprint (and recipe) of the model they were trained on.
 * Printed as 16 lowercase hex digits (docs/formats.md). */
typedef struct mend_fp {
    int has_model, has_source, has_recipe;
    uint64_t model;     /* the model's own fingerprint */
    uint64_t source;    /* compressed files: the source model's */
    uint64_t recipe;    /* compressed files: source + settings + format version */
} mend_fp;
/* The fingerprint of a loaded model (hashed on each call for a GGUF file,
 * about 0.05 s per 100 MB; at load for a Hugging Face directory), with the
 * source and recipe its metadata records, each checked to be 16 hex digits. */
int mend_model_fingerprint(const mend_model *m, mend_fp *out);
/* 16 lowercase hex digits and a NUL. */
void mend_fp_hex(uint64_t fp, char out[17]);
/* Parse exactly 16 lowercase hex digits; MEND_EFORMAT otherwise. */
int mend_fp_parse(const char *s, uint64_t *out);

/* How a record (an adapter's or a bank's) relates to a model's fingerprint. */
enum mend_fp_match {
    MEND_FP_SAME = 0,        /* the record names this model */
    MEND_FP_SAME_RECIPE = 1, /* another file, made from the same source with the same settings */
    MEND_FP_OTHER = 2,       /* another model */
    MEND_FP_UNKNOWN = 3      /* the record names no model (made before fingerprints) */
};
/* Compare a record with a model's fingerprint: enum mend_fp_match. */
int mend_fp_compare(const mend_fp *model, const mend_fp *record);

/* ---- tokenizer ---------------------------------------------------------- */
/* Encode text. add_special: add BOS/EOS as the model's metadata says.
 * parse_special: recognise special/control token text such as "<|im_end|>".
 * *ids is malloc'd; the caller frees it. */
int mend_tokenize(const mend_tokenizer *t, const char *text, size_t len,
                  int add_special, int parse_special, int32_t **ids, size_t *n_ids);
/* Text of one token (bytes, not NUL-terminated); returns the length or a
 * negative status. Writes at most cap bytes. */
int mend_token_piece(const mend_tokenizer *t, int32_t id, char *buf, size_t cap);
/* Decode a sequence to a malloc'd NUL-terminated string. */
int mend_detokenize(const mend_tokenizer *t, const int32_t *ids, size_t n, char **text);
/* Same; render_special = 1 also renders control/unknown tokens as their text
 * (mend_detokenize omits them). */
int mend_detokenize_ex(const mend_tokenizer *t, const int32_t *ids, size_t n, int render_special, char **text);
int mend_tokenizer_n_vocab(const mend_tokenizer *t);
int32_t mend_token_bos(const mend_tokenizer *t);
int32_t mend_token_eos(const mend_tokenizer *t);
int mend_tokenizer_add_bos(const mend_tokenizer *t);
/* Is this an end-of-generation token (eos, eot, <|im_end|>, ...)? */
int mend_token_is_eog(const mend_tokenizer *t, int32_t id);


/* ---- forward pass ------------------------------------------------------- */
/* A run state: KV cache for up to n_ctx positions plus scratch for batches of
 * up to max_batch positions. One state per concurrent sequence. */
typedef struct mend_state mend_state;
int mend_state_new(mend_state **out, const mend_model *m, int n_ctx, int max_batch);
void mend_state_free(mend_state *s);
int mend_state_n_ctx(const mend_state *s);

/* Run n positions starting at position pos, attending to the cached positions
 * [0, pos) and causally within the batch; the KV of [pos, pos+n) is written to
 * the cache (anything cached at or beyond pos is overwritten, so re-running
 * from an earlier pos forks a shared prefix for free).
 * Inputs: tokens (n ids) or embeds (n x dim raw embedding vectors, e.g. a soft
 * prompt), exactly one non-NULL. Positions count from 0 at the first cached
 * entry, so a soft prompt placed first shifts the text's positions, as PEFT does.
 * logits: NULL, or (n x n_vocab) when logits_all, or (n_vocab) for the last
 * position only. */
int mend_forward(mend_state *s, const int32_t *tokens, const float *embeds, int n, int pos,
                 float *logits, int logits_all);

/* Several sequences in one call (e.g. the continuations of every choice of
 * several examples, each on top of its context's cached keys): row i is
 * written to cache slot slot0 + i, is rotated at position rows[i].pos and
 * attends to the slots [a0, a1), [b0, b1) and [c0, slot0 + i], all before or
 * at its own. n <= the state's max_batch. logits: n_out x n_vocab at the rows
 * out_rows (increasing), or NULL when n_out is 0. With sliding-window
 * attention (mistral, gemma3) every row's position must be below the
 * smallest window (MEND_EUNSUPPORTED otherwise): the spans do not say at
 * which positions their keys sit. */
typedef struct mend_row {
    int pos;
    int a0, a1;     /* e.g. a soft prompt */
    int b0, b1;     /* e.g. the shared context */
    int c0;         /* the row's own sequence, up to itself */
} mend_row;
int mend_forward_rows(mend_state *s, const int32_t *tokens, int n, int slot0, const mend_row *rows,
                      float *logits, const int *out_rows, int n_out);
/* The same with each row written to its own cache slot slots[i] (distinct;
 * e.g. one new token for each of several sequences growing in their own
 * regions of the cache, as batched generation does). A row attends to
 * [a0, a1), [b0, b1) and [c0, slots[i]] as the cache holds them once this
 * call's keys and values are written. */
int mend_forward_rows_at(mend_state *s, const int32_t *tokens, int n, const int *slots, const mend_row *rows,
                         float *logits, const int *out_rows, int n_out);

/* ---- sampling (model/sample.c) ------------------------------------------ */
/* Picks the next token from a logits row. temperature <= 0: greedy (argmax,
 * lowest id on ties). Otherwise softmax(logits / temperature), restricted to
 * the top_k most likely tokens (top_k <= 0: all) and then to the smallest set
 * whose probability reaches top_p (top_p >= 1: all), sampled with a PCG32
 * generator seeded by seed (same seed, same logits -> same tokens). */
typedef struct mend_sampler_opts {
    float temperature;
    float top_p;
    int top_k;
    uint64_t seed;
} mend_sampler_opts;
typedef struct mend_sampler mend_sampler;
int mend_sampler_new(mend_sampler **out, int n_vocab, const mend_sampler_opts *opts);
void mend_sampler_free(mend_sampler *s);
/* Returns the token id (>= 0) or a negative status (non-finite logits). */
int32_t mend_sample(mend_sampler *s, const float *logits);

/* ---- chat templates (model/chat.c) --------------------------------------- */
/* A string from the model's metadata (GGUF key, e.g. "tokenizer.chat_template"),
 * or NULL when absent or not a string. Borrowed from the model. */
const char *mend_model_meta_str(const mend_model *m, const char *key);
/* Format one user turn for generation with a chat template. Only ChatML
 * templates (those containing "<|im_start|>") are supported: the result is
 * "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n
 * <|im_start|>assistant\n". system == NULL takes the template's default system
 * text (none when the template has no default); "" drops the system turn.
 * *out is malloc'd. */
int mend_chat_format(const char *tmpl, const char *system, const char *user, char **out);

/* ---- perplexity (eval/ppl.c) --------------------------------------------- */
enum mend_ppl_protocol {
    MEND_PPL_GPTQ = 0,      /* GPTQ/SparseGPT/Wanda: windows of n_ctx, every token but
                               the first scored, ppl = exp(mean window loss) */
    MEND_PPL_LLAMACPP = 1   /* llama.cpp perplexity: chunks of n_ctx, second half scored,
                               BOS at position 0 when the model adds BOS */
};
#define MEND_PPL_GPTQ_CTX      2048       /* default n_ctx of each protocol */
#define MEND_PPL_LLAMACPP_CTX  512
#define MEND_PPL_MAX_BATCH     512        /* default n_batch cap */
#define MEND_PPL_MAX_CTX       (1 << 20)  /* largest n_ctx */
typedef struct mend_ppl_opts {
    int protocol;       /* enum mend_ppl_protocol */
    int n_ctx;          /* window length; 0: 2048 (gptq) or 512 (llamacpp) */
    int n_chunks;       /* score only the first n_chunks windows; <= 0: all */
    int n_batch;        /* positions per forward call; 0: min(n_ctx, 512) */
    int32_t bos;        /* llamacpp: token placed at position 0 of every chunk
                           (the model's BOS when it adds one), -1: keep the text token */
    double *window_nll; /* optional: receives the mean nll of each scored window, in order;
                           room for n_chunks windows (n_tokens / n_ctx when n_chunks <= 0) */
} mend_ppl_opts;
typedef struct mend_ppl_result {
    double ppl;         /* the protocol's perplexity */
    double nll_sum;     /* sum of -log p over scored tokens */
    double nll2_sum;    /* sum of (-log p)^2 */
    int64_t n_scored;   /* scored tokens */
    int n_chunks;       /* windows scored */
    int n_ctx;          /* window length used */
    double ppl_err;     /* llama.cpp's +/- : ppl * sqrt(var(nll) / (n_scored - 1)) */
} mend_ppl_result;
/* Called after each window with the running perplexity; a non-zero return
 * cancels the run (MEND_EINVAL "cancelled"). */
typedef int (*mend_ppl_progress_fn)(void *user, int done, int total, double running_ppl);
/* Scores a window: nll[j] = -log p(win[first+j+1] | win[0..first+j]) for
 * j in [0, n - 1 - first). win already has the protocol's BOS substitution. */
typedef int (*mend_ppl_score_fn)(void *user, const int32_t *win, int n, int first, double *nll);
/* The protocol loop over a token sequence with any scorer (testable without a model). */
int mend_ppl_run(const int32_t *tokens, size_t n_tokens, const mend_ppl_opts *opts,
                 mend_ppl_score_fn score, void *score_user,
                 mend_ppl_progress_fn progress, void *progress_user, mend_ppl_result *res);
/* The protocol loop with the model's forward pass as scorer. */
int mend_perplexity(const mend_model *m, const int32_t *tokens, size_t n_tokens,
                    const mend_ppl_opts *opts, mend_ppl_progress_fn progress, void *progress_user,
                    mend_ppl_result *res);
/* Perplexity with a soft prompt before every window (n_virtual x dim
 * embeddings, e.g. from mend_adapter_read): the prompt's keys and values are
 * computed once at positions [0, n_virtual) and every window runs from
 * position n_virtual, so only the text is scored (same windows as
 * mend_perplexity). With a bank, see mend_idp_perplexity (mend/idp.h). */
int mend_perplexity_prompt(const mend_model *m, const float *prompt, int n_virtual, const int32_t *tokens,
                           size_t n_tokens, const mend_ppl_opts *opts, mend_ppl_progress_fn progress,
                           void *progress_user, mend_ppl_result *res);
/* opts with the defaults filled in (n_ctx, n_batch) and checked (protocol,
 * n_ctx range: MEND_EINVAL naming the field). */
int mend_ppl_resolve_opts(const mend_ppl_opts *in, mend_ppl_opts *out);
/* First scored position of a window of n_ctx tokens under the protocol. */
int mend_ppl_first(int protocol, int n_ctx);
/* -log softmax(logits)[target] over n_vocab entries, in double. */
double mend_nll_from_logits(const float *logits, int n_vocab, int32_t target);


#ifdef __cplusplus
}
#endif

#include "mend/files.h"
#include "mend/inspect.h"
#include "mend/compress.h"
#include "mend/tune.h"
#include "mend/bank.h"
#include "mend/eval.h"
#include "mend/idp.h"
#include "mend/jobs.h"

#endif
