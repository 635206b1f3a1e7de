/* mend bank router and --select learned on the tiny model: a bank of two
 * prompts over two clearly different synthetic domains (numbers, words)
 * gets a learned router as a separate step; eval with --select
 * learned,loss picks by the learned scores and agrees with the loss
 * selector; a bank without a router, or with a malformed one, is refused
 * with the file and field named. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <sys/stat.h>
#include "test.h"
#include "cli_run.h"

#define TINY "tests/fixtures/hf/llama.gguf"

static const char *const WORDS[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "while", "cats",
                                    "sleep", "under", "warm", "sun", "and", "birds", "sing"};

static void line_of(FILE *f, int digits, int n, unsigned *seed) {
    for (int i = 0; i < n; i++) {
        *seed = *seed * 1103515245u + 12345u;
        const unsigned v = (*seed >> 8) % 1000;
        if (digits) fprintf(f, "%u ", v);
        else fprintf(f, "%s ", WORDS[v % 17]);
    }
}

int main(void) {
    char dir[64], cmd[4096], path[160];
    unsigned seed = 7;
    snprintf(dir, sizeof dir, "/tmp/mend_cli_router_%d", (int)getpid());
    mkdir(dir, 0755);
    for (int d = 0; d < 2; d++) {
        snprintf(path, sizeof path, "%s/%s.txt", dir, d ? "words" : "digits");
        FILE *f = fopen(path, "wb");
        for (int p = 0; f && p < 200; p++) {
            line_of(f, !d, 35, &seed);
            fprintf(f, ".\n\n");
        }
        if (f) fclose(f);
    }
    /* a multiple-choice task whose contexts come from either domain */
    snprintf(path, sizeof path, "%s/task.jsonl", dir);
    FILE *f = fopen(path, "wb");
    for (int i = 0; f && i < 20; i++) {
        fprintf(f, "{\"query\": \"");
        line_of(f, i % 2, 12 + i % 5, &seed);
        fprintf(f, "\", \"choices\": [\"%s\", \"%d\"], \"gold\": %d}\n", WORDS[i % 17], i, i % 2);
    }
    if (f) fclose(f);

    cli_out r = cli_runf("-t 1 bank build %s -o %s/bank --domain digits=%s/digits.txt --domain words=%s/words.txt "
             "--steps 200 --lr 0.1 --seqlen 32 --n-virtual 4 --router-windows 2 --router-window 32 --no-learned",
             test_src(TINY), dir, dir, dir);
    CHECK_MSG(r.code == 0, "bank build: %s", r.err);
    cli_free(&r);
    r = cli_runf("bank info %s/bank", dir);
    CHECK(r.code == 0 && strstr(r.out, "learned:    none"));
    cli_free(&r);
    /* no router yet */
    r = cli_runf("-t 1 eval %s --task %s --out %s/r0.jsonl --bank %s/bank --select learned",
             test_src(TINY), path, dir, dir);
    CHECK_MSG(r.code != 0 && strstr(r.err, "bank.json has no learned_router") && strstr(r.err, "mend bank router"),
              "%s", r.err);
    cli_free(&r);

    /* the router as a separate step, on the corpora bank.json names */
    r = cli_runf("-t 1 bank router %s/bank %s --windows 40 --window-tokens 32", dir, test_src(TINY));
    CHECK_MSG(r.code == 0 && strstr(r.out, "held out") && strstr(r.out, "(labels): digits "), "%s%s", r.out, r.err);
    printf("%s", r.out);
    cli_free(&r);
    char bj[160];
    snprintf(bj, sizeof bj, "%s/bank/bank.json", dir);
    json_t *bank = json_load_file(bj, 0, NULL);
    json_t *lr = json_object_get(bank, "learned_router");
    CHECK(json_array_size(json_object_get(lr, "weights")) == 2 * 64);
    CHECK(json_number_value(json_object_get(lr, "heldout_accuracy")) >= 0.9);
    CHECK(json_integer_value(json_object_get(lr, "train_windows")) == 80);
    r = cli_runf("bank info %s/bank", dir);
    CHECK(r.code == 0 && strstr(r.out, "learned:    mean_token_embedding"));
    cli_free(&r);

    /* eval: the choice is the argmax of the learned scores, and agrees with loss */
    r = cli_runf("-t 1 eval %s --task %s --out %s/r1.jsonl --bank %s/bank --select learned,loss",
             test_src(TINY), path, dir, dir);
    CHECK_MSG(r.code == 0, "eval: %s", r.err);
    cli_free(&r);
    char rp[160];
    snprintf(rp, sizeof rp, "%s/r1.jsonl", dir);
    FILE *in = fopen(rp, "r");
    char *line = NULL;
    size_t cap = 0;
    int n = 0, agree = 0, by_domain = 0;
    while (in && getline(&line, &cap, in) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        json_t *idp = json_object_get(o, "idp");
        json_t *sc = json_object_get(json_object_get(idp, "scores"), "learned");
        const char *ch = json_string_value(json_object_get(idp, "choice"));
        const char *lp = json_string_value(json_object_get(json_object_get(idp, "picks"), "loss"));
        const int best = json_number_value(json_array_get(sc, 1)) > json_number_value(json_array_get(sc, 0));
        CHECK(ch && !strcmp(ch, best ? "words" : "digits"));
        agree += ch && lp && !strcmp(ch, lp);
        by_domain += ch && !strcmp(ch, n % 2 ? "digits" : "words");   /* odd examples: digit contexts */
        n++;
        json_decref(o);
    }
    free(line);
    if (in) fclose(in);
    printf("%d examples: learned agrees with loss on %d, with the context's domain on %d\n", n, agree, by_domain);
    CHECK(n == 20 && agree >= 16 && by_domain >= 16);

    /* attention-calibrated: bank build measured each prompt's mean attention
     * score on the corpora; the calibrated scores are the attention scores
     * minus those offsets, and the pick is their argmax */
    json_t *ac = json_object_get(bank, "attention_calibration"), *off = json_object_get(ac, "offsets");
    CHECK_MSG(json_array_size(off) == 2 && json_integer_value(json_object_get(ac, "windows")) == 32,
              "attention_calibration: %s", ac ? "wrong shape" : "missing");
    r = cli_runf("-t 1 eval %s --task %s --out %s/r2.jsonl --bank %s/bank --select attention-calibrated,attention",
                 test_src(TINY), path, dir, dir);
    CHECK_MSG(r.code == 0, "eval attention-calibrated: %s", r.err);
    cli_free(&r);
    snprintf(rp, sizeof rp, "%s/r2.jsonl", dir);
    in = fopen(rp, "r");
    line = NULL;
    int nc = 0, exact = 0;
    while (in && getline(&line, &cap, in) > 0) {
        json_t *o = json_loads(line, 0, NULL), *idp = json_object_get(o, "idp");
        json_t *sc = json_object_get(idp, "scores"), *c = json_object_get(sc, "attention-calibrated"),
               *a = json_object_get(sc, "attention");
        const char *ch = json_string_value(json_object_get(idp, "choice"));
        int ok = json_array_size(c) == 2 && json_array_size(a) == 2;
        for (int k = 0; ok && k < 2; k++) {
            const double want = (float)((float)json_number_value(json_array_get(a, k)) -
                                        (float)json_number_value(json_array_get(off, k)));
            ok = fabs(json_number_value(json_array_get(c, k)) - want) <= 1e-6 * (fabs(want) + 1e-3);
        }
        const int best = json_number_value(json_array_get(c, 1)) > json_number_value(json_array_get(c, 0));
        exact += ok && ch && !strcmp(ch, best ? "words" : "digits");
        nc++;
        json_decref(o);
    }
    free(line);
    if (in) fclose(in);
    CHECK_MSG(nc == 20 && exact == 20, "attention-calibrated: %d of %d scores = attention - offset, argmax", exact, nc);
    r = cli_runf("bank info %s/bank", dir);
    CHECK(r.code == 0 && strstr(r.out, "attention calibration: 32 windows, layers 0:"));
    cli_free(&r);

    /* a malformed learned_router is refused, the field named */
    json_array_remove(json_object_get(lr, "bias"), 1);
    json_dump_file(bank, bj, 0);
    json_decref(bank);
    r = cli_runf("bank info %s/bank", dir);
    CHECK_MSG(r.code != 0 && strstr(r.err, "bank.json: learned_router.bias has the wrong length"), "%s", r.err);
    cli_free(&r);
    /* and a malformed attention_calibration */
    bank = json_load_file(bj, 0, NULL);
    json_object_del(bank, "learned_router");
    json_array_set_new(json_object_get(json_object_get(bank, "attention_calibration"), "offsets"), 0,
                       json_string("x"));
    json_dump_file(bank, bj, 0);
    json_decref(bank);
    r = cli_runf("bank info %s/bank", dir);
    CHECK_MSG(r.code != 0 && strstr(r.err, "bank.json: attention_calibration.offsets[0] is not a finite float"), "%s",
              r.err);
    cli_free(&r);
    /* the separate step puts a removed calibration back */
    bank = json_load_file(bj, 0, NULL);
    json_object_del(bank, "attention_calibration");
    json_dump_file(bank, bj, 0);
    json_decref(bank);
    r = cli_runf("-t 1 eval %s --task %s --out %s/r3.jsonl --bank %s/bank --select attention-calibrated",
                 test_src(TINY), path, dir, dir);
    CHECK_MSG(r.code != 0 && strstr(r.err, "no attention_calibration") && strstr(r.err, "mend bank calibrate"), "%s",
              r.err);
    cli_free(&r);
    r = cli_runf("-t 1 bank calibrate %s/bank %s", dir, test_src(TINY));
    CHECK_MSG(r.code == 0 && strstr(r.out, "attention calibration: 32 windows"), "calibrate: %s%s", r.out, r.err);
    cli_free(&r);

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish();
}
