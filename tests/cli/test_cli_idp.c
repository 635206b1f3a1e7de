/* mend eval --bank on the tiny model: the batched IDP path (examples
 * selected one by one, then scored in packed forwards grouped by the chosen
 * prompt) gives the same choices, scores and log-likelihoods as the
 * per-example path (taken with --per-prompt), and as a plain --prompt run
 * of the chosen prompt. */
#include <jansson.h>
#include <math.h>
#include <sys/stat.h>
#include "test.h"
#include "cli_run.h"

#define TINY "tests/fixtures/hf/llama.gguf"

static json_t **load_lines(const char *path, int *n) {
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    json_t **v = calloc(1024, sizeof *v);
    char *line = NULL;
    size_t cap = 0;
    while (*n < 1024 && getline(&line, &cap, f) > 0) v[(*n)++] = json_loads(line, 0, NULL);
    free(line);
    fclose(f);
    return v;
}

static double max_ll_diff(json_t *a, json_t *b) {
    json_t *la = json_object_get(a, "ll"), *lb = json_object_get(b, "ll");
    if (json_array_size(la) != json_array_size(lb)) return INFINITY;
    double d = 0;
    for (size_t i = 0; i < json_array_size(la); i++) {
        double x = fabs(json_number_value(json_array_get(la, i)) - json_number_value(json_array_get(lb, i)));
        if (x > d) d = x;
    }
    return d;
}

/* mend eval of the first limit examples of task with DIR/bank, once per
 * run: {name (DIR/name.jsonl), selector options} */
static void eval_runs(const char *dir, const char *task, int limit, const char *const (*runs)[2], int n) {
    char cmd[4096];
    for (int k = 0; k < n; k++) {
        snprintf(cmd, sizeof cmd, "-t 1 eval %s --task %s --limit %d --out %s/%s.jsonl --bank %s/bank %s",
                 test_src(TINY), task, limit, dir, runs[k][0], dir, runs[k][1]);
        cli_out r = cli_run(cmd);
        CHECK_MSG(r.code == 0, "eval %s: %s", runs[k][0], r.err);
        cli_free(&r);
    }
}

int main(void) {
    char dir[64], cmd[4096], calib[128];
    snprintf(dir, sizeof dir, "/tmp/mend_cli_idp_%d", (int)getpid());
    mkdir(dir, 0755);
    snprintf(calib, sizeof calib, "%s/calib.txt", dir);
    cli_make_text(calib, test_data("corpus/wiki.txt"), 30000, 20000);   /* two small domains */
    snprintf(cmd, sizeof cmd, "-t 1 bank build %s -o %s/bank --domain a=%s --domain b=%s --steps 3 --seqlen 32 "
             "--n-virtual 4 --router-windows 2 --router-window 32", test_src(TINY), dir, calib, calib);
    cli_out r = cli_run(cmd);
    CHECK_MSG(r.code == 0, "bank build: %s", r.err);
    cli_free(&r);
    const char *task = test_data("tasks/hellaswag.jsonl");
    if (access(task, R_OK) != 0) task = test_src("tests/fixtures/eval/toy_mc.jsonl");
    const char *runs[3][2] = {{"batched", "--select attention"},
                              {"per_example", "--select attention --per-prompt"},
                              {"router", "--select router,attention"}};
    eval_runs(dir, task, 70, runs, 3);
    char pa[160], pb[160], pc[160];
    snprintf(pa, sizeof pa, "%s/batched.jsonl", dir);
    snprintf(pb, sizeof pb, "%s/per_example.jsonl", dir);
    snprintf(pc, sizeof pc, "%s/router.jsonl", dir);
    int na, nb, nc;
    json_t **a = load_lines(pa, &na), **b = load_lines(pb, &nb), **c = load_lines(pc, &nc);
    CHECK(na > 1 && na == nb && na == nc);
    double worst = 0;
    int same_choice = 0, seen_a = 0, seen_b = 0;
    for (int i = 0; a && b && i < na && i < nb; i++) {
        json_t *ia = json_object_get(a[i], "idp"), *ib = json_object_get(b[i], "idp");
        const char *ca = json_string_value(json_object_get(ia, "choice")), *cb = json_string_value(json_object_get(ib, "choice"));
        same_choice += ca && cb && !strcmp(ca, cb);
        seen_a += ca && !strcmp(ca, "a");
        seen_b += ca && !strcmp(ca, "b");
        CHECK(json_equal(json_object_get(ia, "scores"), json_object_get(ib, "scores")));
        double d = max_ll_diff(a[i], b[i]);
        if (d > worst) worst = d;
        /* the first selector decides; the others are recorded the same way */
        json_t *ic = json_object_get(c[i], "idp");
        CHECK(json_equal(json_object_get(json_object_get(ic, "picks"), "attention"),
                         json_object_get(json_object_get(ia, "picks"), "attention")));
    }
    printf("%d examples: same choice %d, chose a %d / b %d, max |ll batched - per example| %.2e\n", na, same_choice,
           seen_a, seen_b, worst);
    CHECK(same_choice == na);
    CHECK_MSG(worst < 2e-3, "log-likelihoods differ by %g", worst);
    for (int i = 0; i < na; i++) json_decref(a[i]);
    for (int i = 0; i < nb; i++) json_decref(b[i]);
    for (int i = 0; i < nc; i++) json_decref(c[i]);
    free(a);
    free(b);
    free(c);
    /* generation: the batched path decodes each prompt's share of a group of
     * 128 together; every answer equals the one decoded alone */
    const char *gen = test_data("tasks/triviaqa.jsonl");
    if (access(gen, R_OK) != 0) gen = test_src("tests/fixtures/eval/toy_gen.jsonl");
    const char *gruns[2][2] = {{"gen_batched", "--select attention"}, {"gen_per_example", "--select attention --per-prompt"}};
    eval_runs(dir, gen, 40, gruns, 2);
    snprintf(pa, sizeof pa, "%s/gen_batched.jsonl", dir);
    snprintf(pb, sizeof pb, "%s/gen_per_example.jsonl", dir);
    a = load_lines(pa, &na);
    b = load_lines(pb, &nb);
    CHECK(na >= 1 && na == nb);   /* without the shared data: the one example of toy_gen */
    int same_raw = 0;
    for (int i = 0; a && b && i < na && i < nb; i++) {
        json_t *ia = json_object_get(a[i], "idp"), *ib = json_object_get(b[i], "idp");
        CHECK(json_equal(json_object_get(ia, "choice"), json_object_get(ib, "choice")));
        same_raw += json_equal(json_object_get(a[i], "raw"), json_object_get(b[i], "raw"));
    }
    CHECK_MSG(same_raw == na, "%d of %d generated answers equal to the ones decoded alone", same_raw, na);
    for (int i = 0; i < na; i++) json_decref(a[i]);
    for (int i = 0; i < nb; i++) json_decref(b[i]);
    free(a);
    free(b);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish();
}
