/* Zero-shot task files: JSONL in the four record shapes of the llm-foundry
 * ICL schema (see ../shared/data/README.md).
 *
 *   multiple choice   {"query", "choices": [..], "gold"}
 *   schema            {"context_options": [..], "continuation", "gold"}
 *   language model    {"context", "continuation"}
 *   generation QA     {"context", "answer", "aliases": [..]}
 *
 * A file holds one shape; blank lines are skipped; every other line must be a
 * JSON object of that shape. Any violation (malformed JSON, missing field,
 * wrong type, empty choice list, gold out of range, mixed shapes) is an
 * MEND_EFORMAT error naming the file and the 1-based line.
 */
#ifndef MEND_EVAL_TASKS_H
#define MEND_EVAL_TASKS_H

#include <stddef.h>
#include "mend.h"

/* enum mend_task_kind is public (mend/eval.h). */

typedef struct mend_task_ex {
    int line;               /* 1-based line of the record in the file */
    char *context;          /* MC: query; LM, GEN: context; SCHEMA: NULL */
    char **options;         /* MC: choices; SCHEMA: context_options; GEN: aliases */
    int n_options;
    char *continuation;     /* SCHEMA, LM: the scored text (without the " " delimiter) */
    char *answer;           /* GEN: the canonical answer */
    int gold;               /* MC, SCHEMA: index into options; -1 otherwise */
} mend_task_ex;

typedef struct mend_task {
    char *name;             /* file name without directory and ".jsonl" */
    char *path;
    int kind;               /* enum mend_task_kind */
    size_t n;               /* examples loaded */
    size_t n_total;         /* examples in the file (>= n when limited) */
    mend_task_ex *ex;
} mend_task;

/* mend_task_load, _free, _kind_name and _get_info are public (mend/eval.h). */
/* Shape from a record's keys, or -1. */
int mend_task_kind_from_name(const char *name);

#endif
