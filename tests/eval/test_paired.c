/* Paired differences of two results files (mend_results_paired): the join on
 * (task, index), the first line of a repeated index kept, the intersection
 * counts, em for generation, and the error on a task scored as two kinds.
 * The expected numbers are worked out by hand in the comments. */
#include <unistd.h>
#include "test.h"
#include "eval/results.h"

static char dir[64];

static const char *put(const char *name, const char *text) {
    static char path[4][128];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 128, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return p;
}

#define MC(i, acc) "{\"task\":\"t\",\"index\":" #i ",\"kind\":\"multiple_choice\",\"acc\":" #acc ",\"acc_norm\":0}\n"
#define GEN(i, em) "{\"task\":\"g\",\"index\":" #i ",\"kind\":\"generation_qa\",\"em\":" #em "}\n"

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/mend_paired_%d", (int)getpid());
    {
        char cmd[96];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
        CHECK(system(cmd) == 0);
    }
    mend_results a, b;
    mend_paired p;

    /* a holds examples 0..5 (acc 1 0 1 1 0 0) and a repeat of 2 with acc 0,
     * which is ignored; b holds 1..6 (acc 1 1 0 1 1 1), in another order.
     * Common: 1..5, a = 0 1 1 0 0, b = 1 1 0 1 1, b - a = 1 0 -1 1 1:
     * mean 2/5 = 0.4; deviations .6 -.4 -1.4 .6 .6, squares sum 3.2,
     * sd = sqrt(3.2 / 4) = sqrt(0.8), se = sqrt(0.8) / sqrt(5) = sqrt(0.16) = 0.4.
     * Only in a: example 0; only in b: example 6. */
    const char *pa = put("a.jsonl", MC(0, 1) MC(1, 0) MC(2, 1) MC(3, 1) MC(2, 0) MC(4, 0) MC(5, 0));
    const char *pb = put("b.jsonl", MC(6, 1) MC(5, 1) MC(1, 1) MC(2, 1) MC(3, 0) MC(4, 1));
    CHECK_OK(mend_results_load(pa, &a));
    CHECK_OK(mend_results_load(pb, &b));
    CHECK_OK(mend_results_paired(&a, &b, &p));
    CHECK(p.n == 5 && p.only_a == 1 && p.only_b == 1);
    CHECK_NEAR(p.diff, 0.4, 1e-12);
    CHECK_NEAR(p.se, 0.4, 1e-12);
    /* the other direction: the sign turns, the error stays */
    CHECK_OK(mend_results_paired(&b, &a, &p));
    CHECK(p.n == 5 && p.only_a == 1 && p.only_b == 1);
    CHECK_NEAR(p.diff, -0.4, 1e-12);
    CHECK_NEAR(p.se, 0.4, 1e-12);
    /* a file with itself: no difference, no spread */
    CHECK_OK(mend_results_paired(&a, &a, &p));
    CHECK(p.n == 6 && p.only_a == 0 && p.only_b == 0);
    CHECK_NEAR(p.diff, 0.0, 0.0);
    CHECK_NEAR(p.se, 0.0, 0.0);
    mend_results_free(&a);
    mend_results_free(&b);

    /* generation: em is the metric. a = 0 0 1, b = 1 1 1: b - a = 1 1 0,
     * mean 2/3, deviations 1/3 1/3 -2/3, squares sum 6/9, sd = sqrt(1/3),
     * se = sqrt(1/3) / sqrt(3) = 1/3. One example in common: se undefined. */
    CHECK_OK(mend_results_load(put("ga.jsonl", GEN(0, 0) GEN(1, 0) GEN(2, 1)), &a));
    CHECK_OK(mend_results_load(put("gb.jsonl", GEN(0, 1) GEN(1, 1) GEN(2, 1)), &b));
    CHECK_OK(mend_results_paired(&a, &b, &p));
    CHECK(p.n == 3);
    CHECK_NEAR(p.diff, 2.0 / 3.0, 1e-12);
    CHECK_NEAR(p.se, 1.0 / 3.0, 1e-12);
    mend_results_free(&b);
    CHECK_OK(mend_results_load(put("gc.jsonl", GEN(2, 0) GEN(7, 1)), &b));
    CHECK_OK(mend_results_paired(&a, &b, &p));
    CHECK(p.n == 1 && p.only_a == 2 && p.only_b == 1);
    CHECK_NEAR(p.diff, -1.0, 0.0);
    CHECK(isnan(p.se));
    mend_results_free(&b);

    /* no example in common: nothing to compare, no error */
    CHECK_OK(mend_results_load(put("gd.jsonl", GEN(9, 1)), &b));
    CHECK_OK(mend_results_paired(&a, &b, &p));
    CHECK(p.n == 0 && p.only_a == 3 && p.only_b == 1 && isnan(p.diff) && isnan(p.se));
    mend_results_free(&b);

    /* the same task and example scored as two kinds: an error naming both files */
    CHECK_OK(mend_results_load(put("gm.jsonl", "{\"task\":\"g\",\"index\":1,\"kind\":\"schema\",\"acc\":1}\n"), &b));
    CHECK_ERR(mend_results_paired(&a, &b, &p), MEND_EFORMAT, "gm.jsonl:1");
    CHECK(strstr(mend_last_error(), "ga.jsonl:2") != NULL);
    mend_results_free(&b);
    mend_results_free(&a);

    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    printf("%d passed, %d failed\n", t_pass, t_fail);
    return t_fail != 0;
}
