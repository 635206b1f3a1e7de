/* mend tune / mend bank build distill by default: from the source a file
 * written by mend compress records, when that source is found beside it
 * (and its fingerprint is the recorded one); cross-entropy, with a note,
 * when it is not; --no-distill and --distill override. bank build and
 * bank experts take the same default. */
#include <sys/stat.h>
#include "test.h"
#include "cli_run.h"

#define TINY "tests/fixtures/hf/llama.gguf"
#define TUNE_ARGS "--tokens 4 --steps 2 --batch 1 --seqlen 32 --val-frac 0 --no-plot"

static char dir[64];

/* `mend -t 1 tune MODEL` with extra options: the objective line's teacher */
static cli_out tune(const char *model, const char *extra, const char *out) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "-t 1 tune %s/%s --corpus %s/c.txt -o %s/%s %s %s", dir, model, dir, dir, out,
             TUNE_ARGS, extra);
    return cli_run(cmd);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/mend_cli_distill_%d", (int)getpid());
    mkdir(dir, 0755);
    char p[256], cmd[2048];
    snprintf(p, sizeof p, "%s/c.txt", dir);
    cli_make_text(p, test_data("corpus/wiki.txt"), 20000, 4000);
    snprintf(cmd, sizeof cmd, "cp '%s' %s/src.gguf && mkdir -p %s/elsewhere", test_src(TINY), dir, dir);
    CHECK(system(cmd) == 0);
    snprintf(cmd, sizeof cmd, "-t 1 compress %s/src.gguf -o %s/q.gguf --method rtn --bits 4 --group 32", dir, dir);
    cli_out r = cli_run(cmd);
    CHECK_MSG(r.code == 0, "compress: %s", r.err);
    cli_free(&r);

    /* the source beside the compressed file: distilled from it */
    r = tune("q.gguf", "", "p1");
    CHECK_MSG(r.code == 0 && strstr(r.out, "objective: KL(teacher || model + prompt), teacher ") &&
                  strstr(r.out, "/src.gguf"), "default teacher: %s%s", r.out, r.err);
    cli_free(&r);
    /* --no-distill: cross-entropy, and not with --distill too */
    r = tune("q.gguf", "--no-distill", "p2");
    CHECK_MSG(r.code == 0 && strstr(r.out, "objective: next-token cross-entropy"), "--no-distill: %s", r.out);
    cli_free(&r);
    snprintf(cmd, sizeof cmd, "--distill %s/src.gguf --no-distill", dir);
    r = tune("q.gguf", cmd, "p3");
    CHECK_MSG(r.code == 2 && strstr(r.err, "not both"), "both: %d %s", r.code, r.err);
    cli_free(&r);
    /* the compressed file alone in another directory: a note, cross-entropy */
    snprintf(cmd, sizeof cmd, "cp %s/q.gguf %s/elsewhere/q.gguf", dir, dir);
    CHECK(system(cmd) == 0);
    r = tune("elsewhere/q.gguf", "", "p4");
    CHECK_MSG(r.code == 0 && strstr(r.out, "objective: next-token cross-entropy") &&
                  strstr(r.err, "note: the source of") && strstr(r.err, "src.gguf"), "lost source: %s%s", r.out, r.err);
    cli_free(&r);
    /* a file beside it with the source's name but other tensors is no teacher */
    snprintf(cmd, sizeof cmd, "cp %s/q.gguf %s/elsewhere/src.gguf", dir, dir);
    CHECK(system(cmd) == 0);
    r = tune("elsewhere/q.gguf", "", "p5");
    CHECK_MSG(r.code == 0 && strstr(r.out, "objective: next-token cross-entropy"), "wrong source: %s", r.out);
    cli_free(&r);
    /* a model mend compress did not write: a note, cross-entropy */
    r = tune("src.gguf", "", "p6");
    CHECK_MSG(r.code == 0 && strstr(r.out, "objective: next-token cross-entropy") &&
                  strstr(r.err, "records no source model"), "uncompressed: %s%s", r.out, r.err);
    cli_free(&r);
    /* bank build takes the same default */
    snprintf(cmd, sizeof cmd, "-t 1 bank build %s/q.gguf -o %s/bank --domain a=%s/c.txt --steps 1 --seqlen 32 "
             "--n-virtual 4 --router-windows 1 --router-window 32 --no-learned", dir, dir, dir);
    r = cli_run(cmd);
    CHECK_MSG(r.code == 0 && strstr(r.out, "objective: KL(teacher || model + prompt), teacher ") &&
                  strstr(r.out, "/src.gguf"), "bank build: %s%s", r.out, r.err);
    cli_free(&r);
    /* and so does the expert bank, which ends in a bank selecting by its learned router */
    snprintf(cmd, sizeof cmd, "-t 1 bank experts %s/q.gguf -o %s/ex --init-adapter %s/p1 --corpus %s/c.txt "
             "--experts 2 --rounds 1 --steps 3 --batch 1 --seqlen 16 --val-seqs 2", dir, dir, dir, dir);
    r = cli_run(cmd);
    CHECK_MSG(r.code == 0 && strstr(r.out, "objective: KL(teacher || model + prompt), teacher ") &&
                  strstr(r.out, "/src.gguf") && strstr(r.out, "bank.json") && strstr(r.err, "ETA"),
              "bank experts: %s%s", r.out, r.err);
    cli_free(&r);
    snprintf(cmd, sizeof cmd, "bank info %s/ex", dir);
    r = cli_run(cmd);
    CHECK_MSG(r.code == 0 && strstr(r.out, "e0") && strstr(r.out, "e1") && strstr(r.out, "learned"),
              "bank info of the expert bank: %s%s", r.out, r.err);
    cli_free(&r);
    snprintf(cmd, sizeof cmd, "-t 1 bank experts %s/q.gguf -o %s/ex2 --corpus %s/c.txt", dir, dir, dir);
    r = cli_run(cmd);
    CHECK_MSG(r.code == 2 && strstr(r.err, "--init-adapter"), "no start prompt: %d %s", r.code, r.err);
    cli_free(&r);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return test_finish();
}
