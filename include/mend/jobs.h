/* mend — jobs: whole pipeline steps as single library calls, on files.
 *
 * A job takes paths and options, does what the command of the same name
 * does (mend compress, mend eval, mend ppl, mend tune, mend bank build,
 * mend repair) and writes the same files; the command is a client that
 * parses its arguments into the job's struct and prints the job's events. A server or a binding
 * runs the same job with its own event handler.
 *
 * Events are the job's only output besides its files: the text of its
 * report (what the command prints on standard output), notes and warnings
 * (standard error), and progress. Every job resumes from what it finished
 * when run again on the same output. Errors are the usual status codes
 * with mend_last_error(); a nonzero return from the event handler cancels
 * (MEND_EINVAL, "stopped"), leaving what was written for a resume.
 */
#ifndef MEND_JOBS_H
#define MEND_JOBS_H

#include "mend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- events ------------------------------------------------------------- */
enum {
    MEND_EV_TEXT,            /* text: part of the job's report, printed as is (has its own newlines) */
    MEND_EV_NOTE,            /* text: a sentence, no newline ("note: ..." on the command line) */
    MEND_EV_WARNING,         /* text: a sentence, no newline ("warning: ...") */
    MEND_EV_PROGRESS_START,  /* label, unit, total (0: unknown), row_items: a counter starts */
    MEND_EV_PROGRESS,        /* done; item: a short value to show (e.g. "[12]17.23,"), or NULL */
    MEND_EV_PROGRESS_END,    /* the counter is finished */
    MEND_EV_STAGE            /* mend_repair_run: stage (1-based) of n_stages starts; text says what */
};

typedef struct mend_event {
    int kind;
    const char *text;
    const char *label, *unit;
    int64_t done, total;
    int row_items;           /* PROGRESS_START: items to a row when not on a terminal */
    const char *item;
    int stage, n_stages;     /* STAGE; and on every event of a repair stage */
    const char *stage_name;  /* STAGE and during one: "compress", "eval-single-copa", ... */
} mend_event;

/* The handler: 0 to go on, nonzero to cancel the job. NULL: no events. */
typedef int (*mend_event_fn)(void *user, const mend_event *ev);

/* ---- the model a prompt was trained on ---------------------------------- */
/* "0123456789abcdef (recipe fedcba9876543210)", or "(none recorded)". */
const char *mend_fp_describe(const mend_fp *fp, char *buf, size_t cap);
/* Compare the fingerprint rec (what a prompt (bank 0) or bank (bank 1) in
 * dir records) with m (loaded from model_path), and say so through fn: a
 * warning for another model, with the command that retrains it; a note for
 * the same recipe or nothing recorded. Returns enum mend_fp_match. */
int mend_check_trained_on(const mend_model *m, const char *model_path, int bank, const char *dir,
                          const mend_fp *rec, mend_event_fn fn, void *user);
/* The teacher a prompt for m distills from when none is given: the source
 * model m records (mend.compress.source), beside model_path or in
 * models_dir (NULL: not searched), checked against the recorded source
 * fingerprint. 1 and its path in out, or 0 after a note through fn (train
 * on cross-entropy then). */
int mend_default_teacher(const mend_model *m, const char *model_path, const char *models_dir, char *out,
                         size_t cap, mend_event_fn fn, void *user);

/* Where to retrain the prompt or bank in dir for the model: dir with the
 * first 8 hex digits of its fingerprint appended ("bank-0123abcd"). */
const char *mend_retrain_dir(const char *dir, const mend_fp *model, char *buf, size_t cap);
/* The command that trains a prompt (bank 0) or a bank (bank 1) for the
 * model at model_path (fingerprint model), into mend_retrain_dir(dir). */
const char *mend_retrain_cmd(int bank, const char *model_path, const char *dir, const mend_fp *model, char *buf,
                             size_t cap);
/* Read the soft prompt in dir for m (mend_adapter_read) and check the
 * model it records (mend_check_trained_on through fn). */
int mend_prompt_read_checked(const mend_model *m, const char *model_path, const char *dir, float **emb,
                             int *n_virtual, mend_event_fn fn, void *user);
/* Open the bank in bank_dir for m (mend_idp_open), check its model, add the
 * selectors in select (comma separated; NULL: the bank's default), their
 * layers overridden by layers ("L0:L1", or NULL) and token budget by
 * max_tokens (> 0), and start it (mend_idp_start). */
int mend_idp_open_checked(mend_idp **out, const mend_model *m, const char *model_path, const char *bank_dir,
                          const char *select, const char *layers, int max_tokens, int per_prompt, mend_event_fn fn,
                          void *user);

/* ---- mend eval ---------------------------------------------------------- */
typedef struct mend_eval_job {
    const char *model;                 /* model path */
    const char *const *tasks;          /* task files (.jsonl) */
    int n_tasks;
    const char *out;                   /* results file, appended */
    int resume;                        /* continue a results file that holds lines */
    size_t limit;                      /* first N examples per task, 0: all */
    const char *prompt;                /* soft prompt (PEFT adapter directory), or NULL */
    const char *bank;                  /* prompt bank directory, or NULL; with select */
    const char *select;                /* selectors, comma separated (NULL: the bank's default) */
    const char *select_layers;         /* "L0:L1" overriding the selectors' layers, or NULL */
    int per_prompt;                    /* score each example under every prompt */
    int ctx, batch;                    /* 0: defaults */
    int packed;                        /* native quantized kernels instead of f32 weights */
} mend_eval_job;
void mend_eval_job_init(mend_eval_job *j);
int mend_eval_job_run(const mend_eval_job *j, mend_event_fn fn, void *user);

/* ---- mend ppl ----------------------------------------------------------- */
typedef struct mend_ppl_job {
    const char *model;
    const char *text;                  /* the text file */
    int hf_lines;                      /* join the lines as the HF datasets loader does */
    int protocol;                      /* MEND_PPL_LLAMACPP or MEND_PPL_GPTQ */
    int ctx, chunks, batch;            /* window length; windows (0: all); positions per forward (0: default) */
    const char *prompt;                /* soft prompt directory, or NULL */
    const char *bank, *select, *select_layers;   /* IDP over a bank, or NULL */
    int select_tokens;                 /* tokens a selector reads (0: 128) */
    int per_prompt;                    /* every window under every prompt as well */
    int f32, no_repack;                /* dequantized weights; packed without the repacked copy */
    const char *json;                  /* write the result here (window_nll included), or NULL */
} mend_ppl_job;
void mend_ppl_job_init(mend_ppl_job *j);
int mend_ppl_job_run(const mend_ppl_job *j, mend_event_fn fn, void *user);

/* ---- mend tune ---------------------------------------------------------- */
typedef struct mend_tune_job {
    const char *model;                 /* the (compressed) model the prompt is for */
    const char *const *corpora;        /* training text files */
    int n_corpora;
    const char *teacher;               /* distill from this model; NULL: mend_default_teacher */
    int no_distill;                    /* cross-entropy even when a default teacher exists */
    const char *models_dir;            /* where mend_default_teacher also looks, or NULL */
    const char *init_adapter;          /* start from this prompt, or NULL */
    int tokens_given;                  /* opts.n_virtual was set by the caller (checked against init_adapter) */
    int plot;                          /* loss.png with gnuplot when it is installed */
    mend_tune_opts opts;               /* out_dir, steps, ...: mend_tune_opts_default first */
} mend_tune_job;
void mend_tune_job_init(mend_tune_job *j);
int mend_tune_job_run(const mend_tune_job *j, mend_event_fn fn, void *user);

/* ---- mend bank build ---------------------------------------------------- */
typedef struct mend_bank_job {
    const char *model;
    const char *const *names;          /* domain names ([A-Za-z0-9_.-], 1..64) */
    const char *const *corpora;        /* one training text per domain */
    int n_domains;
    const char *out;                   /* bank directory */
    const char *teacher;               /* as mend_tune_job */
    int no_distill;
    const char *models_dir;
    const char *init_adapter;          /* every domain prompt starts here, or NULL */
    int steps, seqlen, batch, n_virtual, eval_every, val_seqs;
    double lr;
    uint64_t seed;                     /* domain k trains with seed + k */
    int layer0, layer1;                /* attention selector layers; layer1 < 0: min(3, n_layers) */
    int router_windows, router_window; /* centroids and attention calibration */
    int learned;                       /* fit the learned router */
    int learned_windows, learned_window;   /* 0: its defaults */
} mend_bank_job;
void mend_bank_job_init(mend_bank_job *j);
int mend_bank_build_run(const mend_bank_job *j, mend_event_fn fn, void *user);
/* The trained selectors of the bank in bank_dir, measured for m on the
 * corpora (texts, lens bytes each): with calibrate, the attention
 * calibration (16 windows of 128 tokens per corpus); with ro, the learned
 * router. bank.json is read with its prompts once and rewritten once; the
 * report goes to fn. What mend_bank_build_run ends with, and what `mend
 * bank calibrate` and `mend bank router` do. */
int mend_bank_selectors_add(const char *bank_dir, const mend_model *m, const char *const *texts, const size_t *lens,
                            int n_texts, int calibrate, const mend_router_opts *ro, mend_event_fn fn, void *user);

/* ---- mend compress ------------------------------------------------------ */
typedef struct mend_compress_job {
    const char *model, *out;           /* the GGUF source and the output */
    mend_compress_opts opts;           /* method, format, GPTQ settings, embd_type, prune (borrowed); the job
                                          sets calib, nsamples, seqlen, calib_desc, checkpoint and progress */
    const char *const *calib;          /* calibration texts (GPTQ, Wanda, SparseGPT) */
    int n_calib;
    const char *corpus_dir;            /* without calib: its dialog, fiction, lore, news, science, wiki.txt */
    int nsamples, seqlen;              /* calibration windows (defaults 128 x 2048) */
    uint64_t seed;                     /* window sampling seed */
    const char *save_calib;            /* also write the windows' text here, or NULL */
    const char *checkpoint;            /* NULL: OUT.ckpt; a matching checkpoint is resumed */
    int no_checkpoint, resume, restart;   /* none; require one; delete it first */
    int stop_after;                    /* > 0: stop once that many layers are finished (status 0, checkpoint
                                          kept, a note says so) */
} mend_compress_job;
/* GPTQ to q4_0 (opts from mend_compress_opts_init, method GPTQ), 128 x 2048. */
void mend_compress_job_init(mend_compress_job *j);
/* Compress as `mend compress` does; res (may be NULL) gets mend_compress's
 * result. The report (what the command prints) is TEXT; the calibration
 * and a resumed checkpoint are notes; the layers are a counter. */
int mend_compress_job_run(const mend_compress_job *j, mend_compress_result *res, mend_event_fn fn, void *user);

/* ---- mend repair -------------------------------------------------------- */
typedef struct mend_repair_job {
    const char *model;                 /* the original model */
    const char *compress;              /* spec: gptq:int3g64, sparsegpt:0.5, sparsegpt:0.5+q4_0, ... */
    const char *out;                   /* run directory (docs/repair.md has its layout) */
    const char *budget;                /* "quick", "standard" (NULL) or "full" */
    const char *const *tasks;          /* task files */
    int n_tasks;
    const char *ppl_text;              /* WikiText-2 test text */
    const char *const *domains;        /* bank domains: "NAME=FILE", or "NAME" for corpus_dir/NAME.txt;
                                          none: wiki, news, science, fiction, dialog, lore */
    int n_domains;
    const char *const *calib;          /* calibration texts; none: the six corpora of corpus_dir */
    int n_calib;
    const char *corpus_dir;            /* the data's corpus directory (NAME domains, default calibration) */
    const char *bank_dir;              /* use this bank instead of training one, or NULL */
    /* the budget's settings, overridden where >= 0 */
    int limit, ppl_windows, ppl_ctx, steps, spec_steps, nsamples, seqlen, train_seqlen;
} mend_repair_job;
void mend_repair_job_init(mend_repair_job *j);
/* Run (or resume) every stage: compress, prompts, evaluation, perplexity,
 * report. Each stage's report text goes to OUT/logs/STAGE.txt; its notes,
 * warnings and progress, and a STAGE event per stage, go to fn. The report
 * is written to OUT/report.md and sent as a TEXT event at the end. */
int mend_repair_run(const mend_repair_job *j, mend_event_fn fn, void *user);
/* Rebuild the report of the run in out_dir from its files (report.md,
 * report.png, loss.png); *md gets the markdown (malloc'd). A chart that
 * cannot be drawn (no gnuplot) is a note through fn, not a failure. */
int mend_repair_report(const char *out_dir, char **md, mend_event_fn fn, void *user);
/* Check a compression spec without running anything. */
int mend_repair_spec_check(const char *spec);

#ifdef __cplusplus
}
#endif

#endif
