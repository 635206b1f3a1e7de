/* Prompt tuning: the optimization loop around prompt/train.c (prompt/tune.c).
 *
 * Data: the corpus texts are split into paragraphs (blank-line separated);
 * a seeded shuffle holds out val_frac of the paragraphs for validation; the
 * remaining paragraphs, in corpus order, are tokenized (each followed by
 * "\n\n", no special tokens) into one stream cut into sequences of seqlen
 * tokens: consecutive pieces, or (windows = paragraph) one per paragraph
 * start that has seqlen tokens of stream after it. Each epoch visits the
 * training sequences in a fresh seeded permutation, batch sequences per
 * step. Validation uses up to val_seqs
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

/* The options, records, callbacks and mend_tune_run are public (mend/tune.h). */

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
