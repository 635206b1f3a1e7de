/* mend report --repair OUT_DIR on a synthetic mend repair output: four runs
 * (original, compressed, single prompt, IDP) on two tasks and four
 * WikiText-2 windows, with per-example outcomes chosen so that every paired
 * difference, its standard error, its mark and every recovered share can be
 * checked by hand (the arithmetic is in the comments, and the standard
 * errors are recomputed here from their definition). Also: the examples two
 * runs do not share, a ppl file without per-window NLL, an adapter without
 * train.json, and malformed input (a clear error naming file and field). */
#include <math.h>
#include <sys/stat.h>
#include "test.h"
#include "cli_run.h"

static char dir[96];

static const char *const RUN[4] = {"original", "compressed", "single", "idp"};

/* Per-example outcomes. mc (multiple choice, acc) on examples 0..7:
 *   original   1 1 1 1 1 1 1 0
 *   compressed 0 0 0 0 1 1 1 0
 *   single     1 1 0 0 1 1 1 0
 *   idp        1 1 1 1 1 1 1 0
 * qa (generation, em) on examples 0..5; compressed lacks example 5:
 *   original   1 0 1 0 1 0
 *   compressed 1 0 0 0 1 -
 *   single     1 1 0 0 1 0
 *   idp        1 1 1 0 1 0 */
static const int MC[4][8] = {{1, 1, 1, 1, 1, 1, 1, 0}, {0, 0, 0, 0, 1, 1, 1, 0},
                             {1, 1, 0, 0, 1, 1, 1, 0}, {1, 1, 1, 1, 1, 1, 1, 0}};
static const int QA[4][6] = {{1, 0, 1, 0, 1, 0}, {1, 0, 0, 0, 1, -1}, {1, 1, 0, 0, 1, 0}, {1, 1, 1, 0, 1, 0}};
/* each window's mean nll */
static const double WN[4][4] = {{2.0, 2.1, 1.9, 2.0}, {2.5, 2.4, 2.6, 2.5}, {2.3, 2.3, 2.3, 2.3}, {2.4, 2.3, 2.6, 2.3}};

static void mkdirs(const char *rel) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/%s'", dir, rel);
    CHECK(system(cmd) == 0);
}

static FILE *open_rel(const char *mode, const char *fmt, const char *a, const char *b) {
    char p[512], rel[256];
    snprintf(rel, sizeof rel, fmt, a, b);
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    FILE *f = fopen(p, mode);
    CHECK_MSG(f != NULL, "cannot open %s", p);
    return f;
}

static void write_ppl(int r, int with_windows) {
    FILE *f = open_rel("w", "ppl/%s.json%s", RUN[r], "");
    double m = (WN[r][0] + WN[r][1] + WN[r][2] + WN[r][3]) / 4;
    fprintf(f, "{\"ppl\": %.12f, \"stderr\": 0.1, \"n_ctx\": 64", exp(m));
    if (with_windows) fprintf(f, ", \"window_nll\": [%g, %g, %g, %g]", WN[r][0], WN[r][1], WN[r][2], WN[r][3]);
    fprintf(f, "}\n");
    fclose(f);
}

static void write_train(const char *name, int steps) {
    FILE *f = open_rel("w", "bank/%s/train.json%s", name, "");
    fprintf(f, "{\"steps\": %d, \"batch\": 1, \"seqlen\": 256, \"num_virtual_tokens\": 2, \"train_tokens\": %d, "
               "\"best_step\": %d}\n", steps, steps * 256, steps);
    fclose(f);
}

static void setup(void) {
    for (int r = 0; r < 4; r++) {
        char rel[64];
        snprintf(rel, sizeof rel, "results/%s", RUN[r]);
        mkdirs(rel);
        FILE *f = open_rel("w", "results/%s/mc.jsonl%s", RUN[r], "");
        for (int i = 0; i < 8; i++)
            fprintf(f, "{\"task\":\"mc\",\"index\":%d,\"kind\":\"multiple_choice\",\"acc\":%d,\"acc_norm\":%d}\n", i,
                    MC[r][i], MC[r][i]);
        fclose(f);
        f = open_rel("w", "results/%s/qa.jsonl%s", RUN[r], "");
        for (int i = 0; i < 6; i++)
            if (QA[r][i] >= 0)
                fprintf(f, "{\"task\":\"qa\",\"index\":%d,\"kind\":\"generation_qa\",\"em\":%d}\n", i, QA[r][i]);
        fclose(f);
    }
    mkdirs("ppl");
    for (int r = 0; r < 4; r++) write_ppl(r, 1);
    FILE *f = open_rel("w", "repair.json%s%s", "", "");
    fprintf(f, "{\"model\": \"m.gguf\", \"compress\": \"gptq:int4g32\", \"budget\": \"quick\", \"settings\": \"s\", "
               "\"tasks\": [\"/x/mc.jsonl\", \"/x/qa.jsonl\"]}\n");
    fclose(f);
    mkdirs("bank/a");
    mkdirs("bank/b");
    mkdirs("bank/single");
    f = open_rel("w", "bank/bank.json%s%s", "", "");
    fprintf(f, "{\"format\": \"mend-prompt-bank\", \"version\": 1, \"base_model\": \"model.gguf\", \"dim\": 4, "
               "\"num_virtual_tokens\": 2, \"prompts\": [{\"name\": \"a\", \"corpus\": \"x\", \"steps\": 40}, "
               "{\"name\": \"b\", \"corpus\": \"y\", \"steps\": 40}]}\n");
    fclose(f);
    write_train("a", 40);
    write_train("b", 40);
    write_train("single", 100);
}

/* the definitions, independent of mend: mean of b - a over the examples
 * both hold (-1: not held), standard error = sample sd / sqrt(n) */
static void paired(const int *a, const int *b, int n, double *mean, double *se) {
    double d[16], m = 0, ss = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (a[i] >= 0 && b[i] >= 0) d[k++] = b[i] - a[i];
    for (int i = 0; i < k; i++) m += d[i] / k;
    for (int i = 0; i < k; i++) ss += (d[i] - m) * (d[i] - m);
    *mean = m;
    *se = sqrt(ss / (k - 1)) / sqrt(k);
}

static cli_out report(void) {
    char args[256];
    snprintf(args, sizeof args, "report --repair '%s'", dir);
    return cli_run(args);
}

static cli_out report_ok(void) {
    cli_out r = report();
    CHECK_MSG(r.code == 0, "mend report --repair: %s", r.err);
    return r;
}

static void remove_rel(const char *rel) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    CHECK_MSG(remove(p) == 0, "cannot remove %s", p);
}

static void has(const char *text, const char *want) {
    CHECK_MSG(strstr(text, want) != NULL, "the report lacks\n  %s\n---- report:\n%s", want, text);
}

/* write (mode "w") or append ("a") text to rel in a fresh setup: the report
 * fails, its error naming where (file and line or field) and what */
static void bad(const char *mode, const char *rel, const char *text, const char *where, const char *what) {
    setup();
    FILE *f = open_rel(mode, "%s%s", rel, "");
    fputs(text, f);
    fclose(f);
    cli_out r = report();
    CHECK_MSG(r.code != 0 && strstr(r.err, where) && strstr(r.err, what), "%s: exit %d, stderr: %s", rel, r.code,
              r.err);
    cli_free(&r);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/mend_cli_report_%d", (int)getpid());
    setup();

    /* the standard errors the rows below quote, from their definition */
    {
        double m, se;
        paired(MC[0], MC[1], 8, &m, &se);   /* d = -1 -1 -1 -1 0 0 0 0: ss 2, sd sqrt(2/7), se 0.18898 */
        CHECK_NEAR(m, -0.5, 1e-12);
        CHECK_NEAR(se, sqrt(2.0 / 7) / sqrt(8), 1e-12);
        paired(MC[1], MC[2], 8, &m, &se);   /* d = 1 1 0 0 0 0 0 0: ss 1.5, se sqrt(1.5/7)/sqrt(8) = 0.16366 */
        CHECK_NEAR(se, 0.16366341767699, 1e-9);
        paired(QA[0], QA[1], 6, &m, &se);   /* over 0..4: d = 0 0 -1 0 0: mean -0.2, ss 0.8, se 0.2 */
        CHECK_NEAR(m, -0.2, 1e-12);
        CHECK_NEAR(se, 0.2, 1e-12);
        paired(QA[1], QA[3], 6, &m, &se);   /* d = 0 1 1 0 0: mean 0.4, ss 1.2, se sqrt(0.3)/sqrt(5) = 0.24495 */
        CHECK_NEAR(se, sqrt(0.3 / 5), 1e-12);
        paired(QA[2], QA[3], 6, &m, &se);   /* over 0..5: d = 0 0 1 0 0 0: mean 1/6, ss 5/6, se 1/6 */
        CHECK_NEAR(se, 1.0 / 6, 1e-12);
    }

    cli_out r = report_ok();
    /* mc: compressed - original -0.5 beyond 2 x 0.1890: marked; single -
     * compressed +0.25 within 2 x 0.1637 = 0.327: unmarked; IDP - compressed
     * +0.5 ± 0.1890 marked; IDP - single +0.25 ± 0.1637 unmarked. The gap
     * 0.5 is real, so recovered: 0.25 / 0.5 = 50%, 0.5 / 0.5 = 100%. */
    has(r.out, "| mc | 8 | acc | -0.5000 ± 0.1890 * | +0.2500 ± 0.1637 | +0.5000 ± 0.1890 * | +0.2500 ± 0.1637 "
               "| 50% | 100% |");
    /* qa: the gap 0.2 is within 2 x 0.2: nothing marked, recovered a dash;
     * n: 5 for the pairs with compressed (it lacks example 5), 6 for IDP -
     * single; IDP - compressed 0.4 within 2 x 0.2449 */
    has(r.out, "| qa | 5–6 | em | -0.2000 ± 0.2000 | +0.2000 ± 0.2000 | +0.4000 ± 0.2449 | +0.1667 ± 0.1667 | – | – |");
    has(r.out, "- qa: the runs hold different examples (original 6, compressed 5, single prompt 6, IDP (attention) 6)");
    has(r.out, "compressed − original 5, single − compressed 5, IDP − compressed 5, IDP − single 6.");
    /* mean of the two tasks: compressed - original (-0.5 - 0.2) / 2 = -0.35,
     * se sqrt(2/56 + 0.04) / 2 = sqrt(0.0757143) / 2 = 0.13758, beyond 0.275:
     * marked, the gap is real; single - compressed (0.25 + 0.2) / 2 = 0.225,
     * se sqrt(1.5/56 + 0.04) / 2 = 0.12921, within 0.258: unmarked;
     * IDP - compressed (0.5 + 0.4) / 2 = 0.45, se sqrt(2/56 + 0.06) / 2 =
     * 0.15469: marked; IDP - single (0.25 + 1/6) / 2 = 0.20833, se
     * sqrt(1.5/56 + 1/36) / 2 = 0.11679: unmarked. Recovered 0.225 / 0.35 =
     * 64%, 0.45 / 0.35 = 129%. */
    has(r.out, "| **mean of 2 tasks** | | | -0.3500 ± 0.1376 * | +0.2250 ± 0.1292 | +0.4500 ± 0.1547 * | "
               "+0.2083 ± 0.1168 | 64% | 129% |");
    /* WikiText-2, window NLL differences: compressed - original .5 .3 .7 .5,
     * mean 0.5, ss 0.08, se sqrt(0.08/3)/2 = 0.0816: marked; single -
     * compressed -.2 -.1 -.3 -.2: -0.2 ± sqrt(0.02/3)/2 = 0.0408 marked;
     * IDP - compressed -.1 -.1 0 -.2: -0.1 ± 0.0408 marked; IDP - single
     * .1 0 .3 0: 0.1 ± sqrt(0.06/3)/2 = 0.0707 unmarked. Perplexities
     * e^2, e^2.5, e^2.3, e^2.4: recovered (e^2.5 - e^2.3) / (e^2.5 - e^2) =
     * 2.20831 / 4.79344 = 46%, (e^2.5 - e^2.4) / (e^2.5 - e^2) = 1.15932 /
     * 4.79344 = 24%. */
    has(r.out, "| WikiText-2 | 4 | window NLL | +0.5000 ± 0.0816 * | -0.2000 ± 0.0408 * | -0.1000 ± 0.0408 * | "
               "+0.1000 ± 0.0707 | 46% | 24% |");
    /* the legend says what the mark and the dash mean */
    has(r.out, "**\\*** marks a difference larger than twice its standard error");
    has(r.out, "printed only where the compression gap original − compressed exceeds twice its standard error; – "
               "where it does not");
    /* training tokens: 100 x 1 x 256 = 25600 for the single prompt, 2 x 40 x
     * 1 x 256 = 20480 for the bank */
    has(r.out, "| prompt training: text tokens | – | – | 25600 (100 steps × 1 × 256) | 20480 (2 prompts × 40 steps × 1 "
               "× 256) |");
    /* the per-run table is still there, with its mean over tasks */
    has(r.out, "| mc | 8 | acc | 0.8750 ± 0.1250 | 0.3750 ± 0.1830 | 0.6250 ± 0.1830 | 0.8750 ± 0.1250 |");
    has(r.out, "## Cost");
    {   /* report.md holds what was printed */
        char p[160];
        snprintf(p, sizeof p, "%s/report.md", dir);
        char *md = slurp(p);
        CHECK_MSG(strcmp(md, r.out) == 0, "report.md differs from the printed report");
        free(md);
    }
    cli_free(&r);

    /* the compressed run's ppl file from an older mend ppl (no window_nll):
     * no paired windows with it, so the pairs with compressed and the
     * recovered shares are dashes, IDP - single still paired; a note says why */
    write_ppl(1, 0);
    /* the bank's prompt b trained before train.json existed */
    remove_rel("bank/b/train.json");
    r = report_ok();
    has(r.out, "| WikiText-2 | 0–4 | window NLL | – | – | – | +0.1000 ± 0.0707 | – | – |");
    has(r.out, "- WikiText-2: ppl/compressed.json has no per-window NLL");
    has(r.out, "| 25600 (100 steps × 1 × 256) | unknown (1 of 2 prompts without train.json) |");
    cli_free(&r);
    write_ppl(1, 1);
    /* no perplexity for the single prompt (its stage not run): its pairs and
     * its recovered share are dashes, IDP's stay */
    remove_rel("ppl/single.json");
    r = report_ok();
    has(r.out, "| WikiText-2 | 0–4 | window NLL | +0.5000 ± 0.0816 * | – | -0.1000 ± 0.0408 * | – | – | 24% |");
    cli_free(&r);
    write_ppl(2, 1);

    /* malformed input: a clear error naming file and line or field, no report */
    bad("a", "results/idp/qa.jsonl", "{\"task\":\"qa\",\"index\":6,\"kind\":\n", "results/idp/qa.jsonl:7",
        "malformed");
    bad("w", "results/idp/qa.jsonl", "{\"task\":\"qa\",\"index\":0,\"kind\":\"generation_qa\"}\n",
        "results/idp/qa.jsonl:1", "generation_qa metrics");
    bad("w", "ppl/single.json", "{\"ppl\": 9.9, \"stderr\": 0.1, \"n_ctx\": 64, \"window_nll\": [2.3, \"x\"]}\n",
        "ppl/single.json", "'window_nll' item 1");
    bad("w", "bank/a/train.json", "{\"steps\": 40, \"batch\": 1, \"seqlen\": 256, \"train_tokens\": -5}\n",
        "bank/a/train.json", "'train_tokens'");
    bad("w", "repair.json", "{\"model\": \"m.gguf\", \"compress\": 3}\n", "repair.json", "'compress'");

    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish();
}
