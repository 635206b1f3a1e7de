/* Internal helpers of the jobs (include/mend/jobs.h). */
#ifndef MEND_JOBS_INT_H
#define MEND_JOBS_INT_H

#include "mend.h"

/* Send an event of kind (TEXT, NOTE, WARNING) with a formatted text to fn;
 * the handler's return (nonzero: cancel). */
int job_emit(mend_event_fn fn, void *user, int kind, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Progress counters through fn. */
int job_progress_start(mend_event_fn fn, void *user, const char *label, const char *unit, int64_t total,
                       int row_items);
int job_progress(mend_event_fn fn, void *user, int64_t done, const char *item);
int job_progress_end(mend_event_fn fn, void *user);
/* A malloc'd string from a format (paths); NULL when out of memory. */
char *job_pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The error a cancelled job fails with. */
int job_cancelled(const char *what);

/* What a training job loads besides its corpora: the model at model_path
 * (f32 weights: the trainer multiplies dequantized copies of the compressed
 * blocks), the teacher (the one given, else mend_default_teacher unless
 * no_distill; none: cross-entropy) and the prompt of init_adapter (NULL:
 * none) with its rows and the training tokens behind it. */
typedef struct job_train_inputs {
    mend_model *m, *teacher;
    const char *teacher_path;   /* NULL without a teacher; points into the struct or at the caller's */
    char teacher_buf[4096];
    mend_model_info info;
    float *start;               /* the start prompt, start_nv x info.dim */
    int start_nv;
    int start_has_record;       /* init_adapter has a train.json */
    int64_t start_tokens;       /* its training tokens, start tokens included */
} job_train_inputs;
int job_train_inputs_load(job_train_inputs *in, const char *model_path, const char *teacher, int no_distill,
                          const char *models_dir, const char *init_adapter, mend_event_fn fn, void *user);
void job_train_inputs_free(job_train_inputs *in);

#endif
