/* Parity with lm-evaluation-harness (fixtures from bench/lmeval/run_lmeval.sh
 * + samples_to_fixture.py: lm-eval 0.4.13, HF backend, float32 weights
 * dequantized from the default GGUF).
 *
 * 1. No model: lm-eval's own per-example outcomes, read as results lines and
 *    summarised by mend, reproduce lm-eval's aggregates and standard errors.
 * 2. Model (skipped without it): mend's per-choice loglikelihoods, greedy
 *    flags and predictions on the first examples of every task match
 *    lm-eval's with the weights
 *    dequantized to f32 as lm-eval runs them: |dll| <= 2e-3 + 2e-5 |ll|
 *    (observed: ~1e-4, float summation order). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "test.h"
#include "eval/harness.h"
#include "lmeval_fixtures.h"

static const char *const TASKS[] = {"piqa", "arc_easy", "boolq", "copa", "hellaswag",
                                    "winogrande", "lambada_openai", "triviaqa"};
#define N_TASKS 8

/* A soft prompt's KV is computed once per backend and kept while examples
 * run from position n_virtual: the harness's numbers must equal a direct run
 * of prompt + sequence from position 0 in a fresh state. */
static void test_prompt_kv_once(const mend_model *m) {
    mend_model_info info;
    mend_model_get_info(m, &info);
    const int nv = 5;
    float *emb = malloc((size_t)nv * info.dim * sizeof(float));
    uint32_t x = 12345;
    for (int i = 0; i < nv * info.dim; i++) {
        x = x * 1664525u + 1013904223u;
        emb[i] = ((float)(x >> 8) / 16777216.0f - 0.5f) * 0.1f;
    }
    mend_eval_backend *b = NULL;
    CHECK_OK(mend_eval_backend_model(&b, m, emb, nv, 0, 0));
    mend_task *task = NULL;
    if (!b || mend_task_load(&task, test_src("tests/fixtures/eval/toy_mc.jsonl"), 0) != 0) {
        CHECK(0);
        free(emb);
        mend_eval_backend_free(b);
        return;
    }
    mend_eval_result r0, r, rp[2];
    CHECK_OK(mend_eval_example(b, task, 1, &r0, NULL));  /* something else first */
    CHECK_OK(mend_eval_example(b, task, 0, &r, NULL));
    const size_t both[2] = {1, 0};                        /* and packed behind the prompt */
    CHECK_OK(mend_eval_examples(b, task, both, 2, rp, NULL));
    int V = info.n_vocab;
    for (int k = 0; k < r.n; k++) {
        char cont[256];
        snprintf(cont, sizeof cont, " %s", task->ex[0].options[k]);
        int32_t *c = NULL, *q = NULL;
        size_t nc = 0, nq = 0;
        CHECK_OK(mend_eval_encode_pair(b, task->ex[0].context, cont, &c, &nc, &q, &nq));
        int n = (int)(nc + nq - 1);
        int32_t *seq = malloc((nc + nq) * sizeof *seq);
        memcpy(seq, c, nc * sizeof *seq);
        memcpy(seq + nc, q, nq * sizeof *seq);
        mend_state *st = NULL;
        CHECK_OK(mend_state_new(&st, m, nv + n + 1, 64));
        float *lg = malloc((size_t)n * V * sizeof(float));
        CHECK_OK(mend_forward(st, NULL, emb, nv, 0, NULL, 0));
        CHECK_OK(mend_forward(st, seq, NULL, n, nv, lg, 1));
        double ll = 0;
        for (size_t j = 0; j < nq; j++) {
            int p = (int)(nc + j) - 1;
            ll -= mend_nll_from_logits(lg + (size_t)p * V, V, seq[p + 1]);
        }
        CHECK_NEAR(r.ll[k], ll, 1e-3);
        if (rp[1].n == r.n) CHECK_NEAR(rp[1].ll[k], ll, 1e-3);
        mend_state_free(st);
        free(lg);
        free(seq);
        free(c);
        free(q);
    }
    mend_eval_result_free(&r0);
    mend_eval_result_free(&r);
    mend_eval_result_free(&rp[0]);
    mend_eval_result_free(&rp[1]);
    mend_task_free(task);
    mend_eval_backend_free(b);
    free(emb);
}

int main(void) {
    lmeval_check_summary("lmeval", TASKS, N_TASKS);
    const char *path = test_default_model();
    if (!path) {
        printf("note: default model not found; per-example parity skipped\n");
        return test_finish();
    }
    mend_set_threads(2);
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 0};   /* lm-eval runs dequantized f32 weights */
    CHECK_OK(mend_model_load(&m, path, &lo));
    if (!m) return test_finish();
    mend_eval_backend *b = NULL;
    CHECK_OK(mend_eval_backend_model(&b, m, NULL, 0, 0, 0));
    const int per_task = 6;
    int compared = 0, agree = 0;
    double max_d = 0;
    for (int t = 0; t < N_TASKS; t++) {
        char rel[256];
        snprintf(rel, sizeof rel, "tasks/%s.jsonl", TASKS[t]);
        mend_task *task = NULL;
        if (mend_task_load(&task, test_data(rel), per_task) != 0) {
            printf("note: %s missing (%s); skipped\n", test_data(rel), mend_last_error());
            continue;
        }
        int nref = 0;
        json_t **ref = lmeval_load_ref("lmeval", TASKS[t], per_task, &nref);
        CHECK(ref != NULL);
        for (int i = 0; ref && i < per_task && (size_t)i < task->n; i++) {
            mend_eval_result r;
            CHECK_OK(mend_eval_example(b, task, (size_t)i, &r, NULL));
            const json_t *o = i < nref ? ref[i] : NULL;   /* a short fixture fails here */
            CHECK(o && json_integer_value(json_object_get(o, "index")) == i);
            if (!o) continue;
            compared++;
            if (task->kind == MEND_TASK_GEN) {
                const char *p = json_string_value(json_object_get(o, "pred"));
                int same = p && r.pred_text && strcmp(p, r.pred_text) == 0;
                CHECK_MSG(same, "%s[%d]: mend '%s' lm-eval '%s'", TASKS[t], i, r.pred_text, p ? p : "?");
                CHECK(r.em == jnum(o, "em"));
                agree += same;
                mend_eval_result_free(&r);
                continue;
            }
            const json_t *ll = json_object_get(o, "ll"), *gr = json_object_get(o, "is_greedy");
            CHECK((int)json_array_size(ll) == r.n);
            int ok = 1;
            for (int k = 0; k < r.n && k < (int)json_array_size(ll); k++) {
                double want = json_number_value(json_array_get(ll, k));
                double d = fabs(r.ll[k] - want);
                if (d > max_d) max_d = d;
                CHECK_MSG(d <= 2e-3 + 2e-5 * fabs(want), "%s[%d] choice %d: mend %.6f lm-eval %.6f",
                          TASKS[t], i, k, r.ll[k], want);
                CHECK(r.greedy[k] == json_is_true(json_array_get(gr, k)));
            }
            ok = r.acc == jnum(o, "acc");
            if (task->kind == MEND_TASK_MC) ok = ok && r.acc_norm == jnum(o, "acc_norm");
            CHECK_MSG(ok, "%s[%d]: acc/acc_norm differ", TASKS[t], i);
            agree += ok;
            mend_eval_result_free(&r);
        }
        /* the same examples packed into shared forwards: the numbers of one by one */
        if (task->kind != MEND_TASK_GEN) {
            size_t idx[per_task];
            mend_eval_result one[per_task], all[per_task];
            int n = (int)task->n < per_task ? (int)task->n : per_task;
            for (int i = 0; i < n; i++) {
                idx[i] = (size_t)i;
                CHECK_OK(mend_eval_example(b, task, (size_t)i, &one[i], NULL));
            }
            CHECK_OK(mend_eval_examples(b, task, idx, n, all, NULL));
            for (int i = 0; i < n; i++) {
                CHECK(one[i].n == all[i].n && one[i].pred == all[i].pred && one[i].pred_norm == all[i].pred_norm);
                for (int k = 0; k < one[i].n && k < all[i].n; k++) {
                    CHECK_MSG(fabs(one[i].ll[k] - all[i].ll[k]) <= 1e-4, "%s[%d] choice %d: packed %.6f alone %.6f",
                              TASKS[t], i, k, all[i].ll[k], one[i].ll[k]);
                    CHECK(one[i].greedy[k] == all[i].greedy[k]);
                }
                mend_eval_result_free(&one[i]);
                mend_eval_result_free(&all[i]);
            }
        }
        lmeval_free_ref(ref, nref);
        mend_task_free(task);
    }
    test_prompt_kv_once(m);
    printf("compared %d examples, %d agree, max |dll| %.2e\n", compared, agree, max_d);
    mend_eval_backend_free(b);
    mend_model_free(m);
    return test_finish();
}
