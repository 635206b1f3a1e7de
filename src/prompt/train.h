/* Training forward and backward of a frozen LLaMA-family model with a soft
 * prompt in front of the text: the loss over the text positions and its
 * gradient with respect to the prompt embeddings only (prompt/train.c). */
#ifndef MEND_PROMPT_TRAIN_H
#define MEND_PROMPT_TRAIN_H

#include <stdint.h>
#include "model/model.h"

/* enum mend_tune_objective is public (mend/tune.h). */
typedef struct mend_trainer mend_trainer;

/* Losses of one sequence (sums over its scored positions). */
typedef struct mend_train_loss {
    double loss_sum;    /* the objective: cross-entropy or KL */
    double ce_sum;      /* cross-entropy of the scored positions (== loss_sum for CE) */
    int n_scored;
} mend_train_loss;

/* A trainer for sequences of n_virtual prompt rows followed by up to
 * max_text tokens. The model's matrices must be f32 (load with keep_packed
 * = 0: the weights then live in the model's f32 arena and every product,
 * forward and backward, is an f32 gemm). teacher: NULL, or a model with the
 * same vocabulary whose logits (without the prompt) the KL objective
 * matches; it may keep packed matrices (it only runs mend_forward).
 * All memory is allocated here; steps allocate nothing. */
int mend_trainer_new(mend_trainer **out, const mend_model *m, int n_virtual, int max_text,
                     const mend_model *teacher);
void mend_trainer_free(mend_trainer *t);
/* Bytes held by the trainer (activations, scratch, teacher state). */
size_t mend_trainer_bytes(const mend_trainer *t);

/* Number of positions a sequence of n_text tokens scores under objective:
 * CE scores every text token (position n_virtual-1+i predicts text[i], as
 * PEFT does with labels -100 on the virtual tokens): n_text; KL compares the
 * positions that the teacher also predicts from text alone: n_text - 1. */
int mend_trainer_n_scored(int objective, int n_text);

/* One sequence: [prompt (n_virtual, dim) ; embeddings of text (n_text)].
 * Runs the forward keeping activations, the loss of objective, and - when
 * grad is not NULL - the backward: grad (n_virtual, dim) += scale * d(sum
 * of the per-position losses)/d prompt. grad == NULL: forward and loss only.
 * out receives the sums. */
int mend_trainer_step(mend_trainer *t, const float *prompt, const int32_t *text, int n_text, int objective,
                      float scale, float *grad, mend_train_loss *out);

#endif
