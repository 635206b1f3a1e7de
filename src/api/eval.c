/* Public accessors of mend/eval.h for the library's task and scorer
 * structs (eval/tasks.h, eval/harness.h). */
#include <stdlib.h>

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

/* ---- mend_eval_run ---- */
#define EVAL_GROUP 32       /* examples handed to the scorer at once (packed into shared forwards) */
#define EVAL_GEN_GROUP 128  /* generation: finished answers hand their cache region to the next example */
_Static_assert(EVAL_GROUP <= MEND_IDP_BATCH && EVAL_GEN_GROUP <= MEND_IDP_BATCH, "an eval group fits an IDP batch");

/* Score the group ix[0..nb) and hand its lines to fn; the results are freed. */
static int run_group(mend_eval_backend *b, mend_idp *x, int idp_batch, const mend_task *t, const size_t *ix, int nb,
                     size_t n_before, const char *model, const char *prompt, mend_eval_line_fn fn, void *user,
                     mend_eval_stats *st) {
    mend_eval_result rs[EVAL_GEN_GROUP];
    const int64_t before = st->truncated;
    int rc = idp_batch ? mend_idp_eval_examples(x, t, ix, nb, rs, st)
             : x       ? mend_idp_eval_example(x, t, ix[0], &rs[0], st)
                       : mend_eval_examples(b, t, ix, nb, rs, st);
    if (rc) return rc;
    int q = 0;
    for (; q < nb && !rc; q++) {
        char *line = NULL;
        rc = mend_result_json(t, ix[q], &rs[q], model, prompt, &line);
        if (!rc && x) rc = idp_batch ? mend_idp_annotate_batch(x, q, &line) : mend_idp_annotate(x, &line);
        if (!rc) {
            /* one example per call: the scorer's count says whether it was cut */
            mend_eval_line l = {ix[q], &rs[q], line, x && !idp_batch ? st->truncated > before : rs[q].truncated > 0};
            rc = fn(user, &l);
            if (rc > 0)
                rc = mend_set_error(MEND_EINVAL, "%s: evaluation stopped after %zu examples", t->name,
                                    n_before + (size_t)q + 1);
        }
        free(line);
        mend_eval_result_free(&rs[q]);
    }
    for (; q < nb; q++) mend_eval_result_free(&rs[q]);
    return rc;
}

int mend_eval_run(mend_eval_backend *b, struct mend_idp *x, const mend_task *t, const size_t *idx, size_t n,
                  const char *model, const char *prompt, mend_eval_line_fn fn, void *user, mend_eval_stats *stats) {
    if ((!b && !x) || !t || (n && !idx) || !model || !fn)
        return mend_set_error(MEND_EINVAL, "mend_eval_run: a scorer or an IDP run, the task, the examples, the "
                                           "model label and the callback are required");
    const int idp_batch = x && mend_idp_can_batch(x);
    /* generation under IDP takes the same groups as under one prompt (each
     * prompt's share of a group decodes together): with groups of 32, IDP
     * answered TriviaQA 2.7x slower than one prompt (414 s against 153 s) */
    const size_t group = x && !idp_batch ? 1 : t->kind == MEND_TASK_GEN ? EVAL_GEN_GROUP : EVAL_GROUP;
    mend_eval_stats st = {0};
    int rc = 0;
    for (size_t q0 = 0; q0 < n && !rc; q0 += group)
        rc = run_group(b, x, idp_batch, t, idx + q0, (int)(n - q0 < group ? n - q0 : group), q0, model, prompt, fn,
                       user, &st);
    if (stats) {
        stats->tokens_run += st.tokens_run;
        stats->tokens_naive += st.tokens_naive;
        stats->truncated += st.truncated;
    }
    return rc;
}
