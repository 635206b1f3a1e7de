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

#endif
