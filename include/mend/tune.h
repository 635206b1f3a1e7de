/* mend public API: soft prompts (PEFT prompt-tuning adapters) and prompt
 * tuning through the frozen model. Included by mend.h; see docs/api.md and
 * docs/tune.md. */
#ifndef MEND_TUNE_API_H
#define MEND_TUNE_API_H

#include "mend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- soft prompts on disk ---------------------------------------------------
 * A prompt is a PEFT prompt-tuning adapter directory: adapter_model.safetensors
 * (one tensor "prompt_embeddings" [n_virtual, dim]) and adapter_config.json.
 * The virtual tokens come before everything else (before BOS). */
typedef struct mend_adapter_meta {
    const char *base_model;     /* base_model_name_or_path (NULL: null) */
    const char *init;           /* "RANDOM", "SAMPLE_VOCAB" or "TEXT" (NULL: RANDOM) */
    const char *init_text;      /* prompt_tuning_init_text for TEXT (NULL: null) */
    int num_attention_heads;    /* of the base model */
    int num_layers;
    const mend_fp *trained_on;  /* the model's fingerprint (and recipe), or NULL */
} mend_adapter_meta;

/* Create dir (mkdir -p) and write both files atomically. emb (n_virtual,
 * dim) f32 is only read. */
int mend_adapter_write(const char *dir, const float *emb, int n_virtual, int dim, const mend_adapter_meta *meta);
/* Read the prompt in dir for a model of hidden size dim (the tensor's second
 * dimension must match; every value must be finite). *emb is malloc'd
 * (n_virtual, dim); the caller frees it. Errors name the file and field. */
int mend_adapter_read(const char *dir, int dim, float **emb, int *n_virtual);
/* The same, and *trained_on (when not NULL) gets the model the adapter
 * records (has_model 0 for adapters written before fingerprints or by PEFT). */
int mend_adapter_read_fp(const char *dir, int dim, float **emb, int *n_virtual, mend_fp *trained_on);

/* ---- prompt tuning ------------------------------------------------------------
 * The corpus texts are split into paragraphs; a seeded shuffle holds out
 * val_frac of them; the rest is cut into sequences of seqlen tokens, batch
 * per AdamW step. Files in out_dir: the best prompt (a PEFT adapter), last/,
 * loss.csv, train.json and checkpoint.bin (resume: same options and thread
 * count give the bits of an uninterrupted run). */
enum mend_tune_objective {
    MEND_TUNE_CE = 0,   /* next-token cross-entropy on the text */
    MEND_TUNE_KL = 1    /* KL(teacher || student + prompt) on the text */
};
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
    int steps;              /* optimizer steps (100) */
    double lr;              /* peak learning rate (1e-3) */
    double beta1, beta2, adam_eps, weight_decay;   /* 0.9, 0.999, 1e-8, 1e-5 */
    double clip;            /* global gradient norm clip (1.0; 0: off) */
    int warmup;             /* warm-up steps; < 0: min(100, steps / 10) */
    int schedule;           /* enum mend_tune_schedule */
    int objective;          /* MEND_TUNE_CE or MEND_TUNE_KL (needs a teacher) */
    int init;               /* enum mend_tune_init */
    const char *init_text;  /* for MEND_TUNE_INIT_TEXT */
    const float *init_prompt;   /* for MEND_TUNE_INIT_PROMPT: (n_virtual, dim), borrowed */
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

/* Fill the defaults above; call it before setting fields, so that fields
 * added later get their defaults. */
void mend_tune_opts_default(mend_tune_opts *o);

/* What a run's train.json (written beside its adapter) records. */
typedef struct mend_tune_record {
    int64_t steps, batch, seqlen;
    int64_t train_tokens;   /* text tokens this run read: steps x batch x seqlen */
    int64_t start_tokens;   /* text tokens behind the prompt it started from (0 when absent) */
} mend_tune_record;
/* Read dir/train.json; *found 0 (rec zeroed) when the adapter has none. */
int mend_tune_read_record(const char *dir, mend_tune_record *rec, int *found);

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
 * non-zero return cancels the run (MEND_EINVAL "cancelled"; the last
 * checkpoint stays, so a run with resume continues from it). */
typedef int (*mend_tune_progress_fn)(void *user, const mend_tune_progress *p);

typedef struct mend_tune_info {
    int n_paragraphs, n_val_paragraphs;
    int64_t n_train_tokens, n_val_tokens;
    int n_train_seqs, n_val_seqs;
    size_t trainer_bytes;
} mend_tune_info;
/* Called once the data is prepared; a non-zero return cancels. */
typedef int (*mend_tune_info_fn)(void *user, const mend_tune_info *info);

typedef struct mend_tune_result {
    int steps_done;
    double final_loss, best_val, first_val;
    int best_step;
    double elapsed, tokens_per_s;
} mend_tune_result;

/* Train a prompt for model m (loaded with keep_packed 0: f32 matrices) on
 * the n_texts texts (lens bytes each). teacher: the model to distill from
 * for MEND_TUNE_KL, else NULL. info and progress may be NULL; both get user.
 * res is required (MEND_EINVAL without it). */
int mend_tune_run(const mend_model *m, const mend_model *teacher, const char *const *texts, const size_t *lens,
                  int n_texts, const mend_tune_opts *o, mend_tune_info_fn info, mend_tune_progress_fn progress,
                  void *user, mend_tune_result *res);

#ifdef __cplusplus
}
#endif
#endif
