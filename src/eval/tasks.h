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

enum mend_task_kind {
    MEND_TASK_MC = 0,       /* multiple choice */
    MEND_TASK_SCHEMA = 1,   /* partial scoring over context options */
    MEND_TASK_LM = 2,       /* language modelling (greedy acc + perplexity) */
    MEND_TASK_GEN = 3       /* generation QA (exact match against aliases) */
};

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

/* Load a task file; limit > 0 keeps only the first limit examples (the rest
 * are still validated for shape so that n_total is exact). */
int mend_task_load(mend_task **out, const char *path, size_t limit);
void mend_task_free(mend_task *t);
const char *mend_task_kind_name(int kind);
/* Shape from a record's keys, or -1. */
int mend_task_kind_from_name(const char *name);

#endif
