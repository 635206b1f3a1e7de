/* Public accessors of mend/eval.h for the library's task and scorer
 * structs (eval/tasks.h, eval/harness.h). */
#include "mend.h"
#include "eval/harness.h"
#include "eval/tasks.h"

void mend_task_get_info(const mend_task *t, mend_task_info *info) {
    info->name = t->name;
    info->path = t->path;
    info->kind = t->kind;
    info->n = t->n;
    info->n_total = t->n_total;
}

int mend_eval_backend_window(const mend_eval_backend *b) { return b->window; }
void mend_eval_backend_set_window(mend_eval_backend *b, int window) { b->window = window; }
int mend_eval_backend_reserve(mend_eval_backend *b, int n) { return b->reserve(b->user, n); }

int mend_task_example_line(const mend_task *t, size_t i) { return i < t->n ? t->ex[i].line : 0; }
