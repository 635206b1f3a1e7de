/* Prompt tuning: the optimization loop around prompt/train.c (prompt/tune.c).
 *
 * Data: the corpus texts are split into paragraphs (blank-line separated);
 * a seeded shuffle holds out val_frac of the paragraphs for validation; the
 * remaining paragraphs, in corpus order, are tokenized (each followed by
 * "\n\n", no special tokens) into one stream cut into sequences of seqlen
 * tokens: consecutive pieces, or (windows = paragraph) one per paragraph
 * start that has seqlen tokens of stream after it. Each epoch visits the training sequences in a fresh seeded
 * permutation, batch sequences per step. Validation uses up to val_seqs
 * sequences cut the same way from the held-out paragraphs.
 *
 * Optimizer: AdamW as torch.optim.AdamW (decoupled decay p *= 1 - lr*wd,
 * bias-corrected moments), gradient clipped to a global norm, learning rate
 * warmed up linearly over warmup steps then decayed linearly or by a cosine
 * to 0 at the last step (or held constant).
 *
 * Files in out_dir: the best prompt (lowest validation loss; the last one
 * when there is no validation split) as a PEFT adapter, the last prompt in
 * out_dir/last/, loss.csv (one row per step), train.json (steps, batch,
 * seqlen, num_virtual_tokens, train_tokens = steps x batch x seqlen text
 * tokens, best_step; written with the adapter), checkpoint.bin (written
 * atomically every ckpt_every steps and at the end: step, prompt, AdamW
 * moments, RNG, epoch and position in the data, best prompt, the loss
 * history). Resuming from a checkpoint continues the run exactly: with the
 * same options and thread count the result is bit-identical to an
 * uninterrupted run. */
#ifndef MEND_PROMPT_TUNE_H
#define MEND_PROMPT_TUNE_H

#include <stddef.h>
#include <stdint.h>
#include "mend.h"
#include "prompt/train.h"

enum mend_tune_init {
    MEND_TUNE_INIT_VOCAB = 0,    /* rows of randomly sampled vocabulary embeddings (PEFT SAMPLE_VOCAB) */
    MEND_TUNE_INIT_TEXT = 1,     /* embeddings of init_text's tokens, repeated / cut to n_virtual (PEFT TEXT) */
    MEND_TUNE_INIT_RANDOM = 2,   /* normal with the std of the embedding matrix (PEFT RANDOM) */
    MEND_TUNE_INIT_PROMPT = 3    /* a copy of init_prompt: continue or specialize a trained prompt */
};
enum mend_tune_schedule { MEND_SCHED_LINEAR = 0, MEND_SCHED_COSINE = 1, MEND_SCHED_CONSTANT = 2 };
/* How the token stream is cut into sequences. */
enum mend_tune_windows {
    MEND_TUNE_WINDOWS_STREAM = 0,    /* consecutive, non-overlapping seqlen-token pieces of the stream */
    MEND_TUNE_WINDOWS_PARAGRAPH = 1  /* one sequence per paragraph, starting at its first token and running
                                        on into the next paragraphs for seqlen tokens: every sequence begins
                                        where a text begins, as a task's input does right after the prompt */
};

typedef struct mend_tune_opts {
    int n_virtual;          /* 20 */
    int seqlen;             /* text tokens per sequence (512) */
    int windows;            /* enum mend_tune_windows (stream) */
    int batch;              /* sequences per step (4) */
    int steps;              /* optimizer steps */
    double lr;              /* peak learning rate (1e-3) */
    double beta1, beta2, adam_eps, weight_decay;   /* 0.9, 0.999, 1e-8, 1e-5 */
    double clip;            /* global gradient norm clip (1.0; 0: off) */
    int warmup;             /* warm-up steps; < 0: min(100, steps / 10) */
    int schedule;           /* enum mend_tune_schedule */
    int objective;          /* MEND_TUNE_CE or MEND_TUNE_KL (needs a teacher) */
    int init;               /* enum mend_tune_init */
    const char *init_text;  /* for MEND_TUNE_INIT_TEXT */
    const float *init_prompt;   /* for MEND_TUNE_INIT_PROMPT: (n_virtual, dim) */
    int64_t start_tokens;   /* text tokens the init_prompt was already trained on (train.json) */
    uint64_t seed;
    double val_frac;        /* fraction of paragraphs held out (0.05; 0: none) */
    int val_seqs;           /* at most this many validation sequences (16) */
    int eval_every;         /* validate every K steps (and at the first and last step); 0: first/last only */
    int ckpt_every;         /* checkpoint every K steps (and at the end); 0: at the end only */
    int stop_after;         /* > 0: return after this step as if killed (no final files); for tests */
    int resume;             /* continue from out_dir/checkpoint.bin when it exists */
    double max_seconds;     /* > 0: end (validate, checkpoint, write the adapters) after the first
                               step at which this much training time has passed, even before
                               `steps`; the schedule is still the one of `steps` */
    const char *out_dir;
    const char *base_model; /* recorded in adapter_config.json */
} mend_tune_opts;

/* What a run's train.json (written beside its adapter) records. */
typedef struct mend_tune_record {
    int64_t steps, batch, seqlen;
    int64_t train_tokens;   /* text tokens this run read: steps x batch x seqlen */
    int64_t start_tokens;   /* text tokens behind the prompt it started from (0 when absent) */
} mend_tune_record;
/* Read dir/train.json: steps, batch, seqlen, train_tokens required, whole
 * numbers >= 0; start_tokens optional, the same. *found 0 (rec zeroed) when
 * the adapter has none (trained before mend recorded it). */
int mend_tune_read_record(const char *dir, mend_tune_record *rec, int *found);

/* Fill the defaults above (steps: 100). */
void mend_tune_opts_default(mend_tune_opts *o);

typedef struct mend_tune_progress {
    int step, steps;        /* step just finished (1-based) */
    double loss, ce;        /* training objective / cross-entropy of this step (means) */
    double lr, grad_norm;   /* lr used, gradient norm before clipping */
    int evaluated;          /* 1 when val_* below are fresh */
    double val_loss, val_ce;
    double best_val;
    int best_step;
    double elapsed;         /* seconds in this process (excluding setup) */
    double tokens_per_s;    /* text tokens per second (forward + backward) in this process */
    int resumed_from;       /* step the run resumed from (0: fresh) */
    int epoch;
} mend_tune_progress;
/* Called after every step and after the initial validation (step 0); a
 * non-zero return stops the run (MEND_EINVAL "cancelled"). */
typedef int (*mend_tune_progress_fn)(void *user, const mend_tune_progress *p);

typedef struct mend_tune_info {
    int n_paragraphs, n_val_paragraphs;
    int64_t n_train_tokens, n_val_tokens;
    int n_train_seqs, n_val_seqs;
    size_t trainer_bytes;
} mend_tune_info;
typedef int (*mend_tune_info_fn)(void *user, const mend_tune_info *info);

typedef struct mend_tune_result {
    int steps_done;
    double final_loss, best_val, first_val;
    int best_step;
    double elapsed, tokens_per_s;
} mend_tune_result;

/* Train a prompt for model m (f32 matrices, see train.h) on the texts.
 * teacher: for MEND_TUNE_KL. info is called once the data is prepared. */
int mend_tune_run(const mend_model *m, const mend_model *teacher, const char *const *texts, const size_t *lens,
                  int n_texts, const mend_tune_opts *o, mend_tune_info_fn info, mend_tune_progress_fn progress,
                  void *user, mend_tune_result *res);

/* The sequences mend_tune_run trains and validates on, cut from the texts
 * as o says (seqlen, windows, val_frac, val_seqs, seed): *train (n_train,
 * seqlen) and *val (n_val, seqlen; NULL when none), both malloc'd. */
int mend_tune_sequences(const mend_model *m, const char *const *texts, const size_t *lens, int n_texts,
                        const mend_tune_opts *o, int32_t **train, int *n_train, int32_t **val, int *n_val);
/* mend_tune_run on sequences given by the caller: n_train >= 1 of
 * o->seqlen tokens each, and n_val >= 0 for validation (o->val_frac and
 * o->windows are not used). The run's fingerprint covers the sequences, so
 * a checkpoint resumes only on the same ones. */
int mend_tune_run_seqs(const mend_model *m, const mend_model *teacher, const int32_t *train, int n_train,
                       const int32_t *val, int n_val, const mend_tune_opts *o, mend_tune_info_fn info,
                       mend_tune_progress_fn progress, void *user, mend_tune_result *res);

#endif
