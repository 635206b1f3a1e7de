/* The lm-evaluation-harness fixtures (bench/lmeval: samples_to_fixture.py)
 * as the parity tests read them: PREFIX_TASK.jsonl holds lm-eval's
 * per-example lines, PREFIX_summary.json its aggregates; PREFIX is "lmeval"
 * for the default model, "lmeval_gemma3" for Gemma 3. Included by
 * test_harness_lmeval.c and test_gemma3_lmeval.c. */
#ifndef MEND_TEST_LMEVAL_FIXTURES_H
#define MEND_TEST_LMEVAL_FIXTURES_H

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "test.h"
#include "eval/results.h"
#include "eval/tasks.h"

static double jnum(const json_t *o, const char *k) {
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* The first max (<= 0: all) lines of PREFIX_TASK.jsonl, parsed, their count
 * in *n; NULL when the file is missing. */
static json_t **lmeval_load_ref(const char *prefix, const char *task, int max, int *n) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/eval/%s_%s.jsonl", prefix, task);
    *n = 0;
    FILE *f = fopen(test_src(rel), "r");
    if (!f) return NULL;
    int cap = max > 0 ? max : 256;
    json_t **rows = calloc((size_t)cap, sizeof *rows);
    char line[1 << 16];
    while (rows && (max <= 0 || *n < max) && fgets(line, sizeof line, f)) {
        if (*n == cap) {
            json_t **g = realloc(rows, (size_t)(cap *= 2) * sizeof *rows);
            if (!g) break;
            rows = g;
        }
        rows[(*n)++] = json_loads(line, 0, NULL);
    }
    fclose(f);
    return rows;
}

static void lmeval_free_ref(json_t **rows, int n) {
    for (int i = 0; rows && i < n; i++) json_decref(rows[i]);
    free(rows);
}

/* No model: lm-eval's own per-example lines, read as results lines and
 * summarised by mend, reproduce PREFIX_summary.json (its aggregates and
 * standard errors) for every task of the list. */
static void lmeval_check_summary(const char *prefix, const char *const *tasks, int n_tasks) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/eval/%s_summary.json", prefix);
    json_error_t err;
    json_t *sum = json_load_file(test_src(rel), 0, &err);
    CHECK_MSG(sum != NULL, "%s: %s", rel, err.text);
    if (!sum) return;
    for (int t = 0; t < n_tasks; t++) {
        snprintf(rel, sizeof rel, "tests/fixtures/eval/%s_%s.jsonl", prefix, tasks[t]);
        mend_results res;
        CHECK_OK(mend_results_load(test_src(rel), &res));
        mend_task_summary *s = NULL;
        size_t ns = 0;
        CHECK_OK(mend_results_summarize(&res, &s, &ns));
        const json_t *ref = json_object_get(sum, tasks[t]);
        CHECK_MSG(ns == 1 && ref, "%s", tasks[t]);
        if (ns == 1 && ref) {
            CHECK_MSG((double)s->n == jnum(ref, "n"), "%s n %zu vs %g", tasks[t], s->n, jnum(ref, "n"));
            if (s->kind == MEND_TASK_GEN) {
                CHECK_NEAR(s->em, jnum(ref, "exact_match"), 1e-12);
                CHECK_NEAR(s->em_se, jnum(ref, "exact_match_stderr"), 1e-12);
            } else {
                CHECK_NEAR(s->acc, jnum(ref, "acc"), 1e-12);
                CHECK_NEAR(s->acc_se, jnum(ref, "acc_stderr"), 1e-12);
            }
            if (s->kind == MEND_TASK_MC) {
                CHECK_NEAR(s->acc_norm, jnum(ref, "acc_norm"), 1e-12);
                CHECK_NEAR(s->acc_norm_se, jnum(ref, "acc_norm_stderr"), 1e-12);
            }
            if (s->kind == MEND_TASK_LM) {
                CHECK_NEAR(s->ppl, jnum(ref, "perplexity"), 1e-9 * s->ppl);
                /* lm-eval's bootstrap, reproduced draw for draw */
                CHECK_NEAR(s->ppl_se, jnum(ref, "perplexity_stderr"), 1e-9 * s->ppl_se);
            }
        }
        mend_summaries_free(s, ns);
        mend_results_free(&res);
    }
    json_decref(sum);
}

#endif
