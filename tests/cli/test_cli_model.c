/* End-to-end CLI runs on the default model (skipped without it):
 * info reports the layer count, ppl prints a finite perplexity, and the
 * chat model answers a factual question. */
#include "test.h"
#include "cli_run.h"

int main(void) {
    const char *model = test_default_model();
    if (!model) {
        printf("default model not found; skipping\n");
        return test_finish();
    }
    char args[8192];

    snprintf(args, sizeof args, "-t 2 info '%s'", model);
    cli_out r = cli_run(args);
    CHECK_MSG(r.code == 0, "info exit %d: %s", r.code, r.err);
    CHECK_MSG(strstr(r.out, "n_layers") && strstr(r.out, " 30\n"), "info output: %s", r.out);
    CHECK(strstr(r.out, "architecture: llama") != NULL);
    CHECK(strstr(r.out, "q4_1") || strstr(r.out, "Q4_1"));
    cli_free(&r);

    /* a 48 KB slice of wiki.test.raw keeps tokenization short */
    const char *wiki = test_data("ppl/wiki.test.raw");
    FILE *f = fopen(wiki, "rb");
    if (!f) {
        printf("%s not found; skipping ppl\n", wiki);
    } else {
        static char buf[48 * 1024];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        char tmp[64];
        snprintf(tmp, sizeof tmp, "/tmp/mend_cli_wiki_%d.txt", (int)getpid());
        FILE *o = fopen(tmp, "wb");
        fwrite(buf, 1, n, o);
        fclose(o);
        snprintf(args, sizeof args, "-t 2 ppl '%s' --text %s --protocol llamacpp --chunks 2", model, tmp);
        r = cli_run(args);
        CHECK_MSG(r.code == 0, "ppl exit %d: %s", r.code, r.err);
        const char *line = strstr(r.out, "PPL = ");
        double ppl = line ? atof(line + 6) : NAN;
        CHECK_MSG(isfinite(ppl) && ppl > 1.0 && ppl < 1000.0, "ppl output: %s", r.out);
        CHECK(strstr(r.err, "[2]") != NULL);
        cli_free(&r);
        remove(tmp);
    }

    /* With the template's default system turn, the first reply token is a
     * near tie for this Q4_1 model: "The" leads "L" by 0.08 logits in exact
     * f32 arithmetic on the dequantized weights, while kernels that round
     * activations to 8 bits as llama.cpp does (and llama.cpp itself) flip it
     * to "L'Étoile, ...". So the answer is checked on the exact path (--f32)
     * and the packed path is only required to run and stream text. */
    snprintf(args, sizeof args, "-t 2 generate '%s' --chat -p 'What is the capital of France?' -n 24 --f32", model);
    r = cli_run(args);
    CHECK_MSG(r.code == 0, "generate exit %d: %s", r.code, r.err);
    CHECK_MSG(strstr(r.out, "Paris") != NULL, "generate output: %s", r.out);
    CHECK(strstr(r.err, "tokens/s") != NULL);
    cli_free(&r);
    snprintf(args, sizeof args, "-t 2 generate '%s' --chat -p 'What is the capital of France?' -n 8", model);
    r = cli_run(args);
    CHECK_MSG(r.code == 0, "generate exit %d: %s", r.code, r.err);
    CHECK_MSG(strlen(r.out) > 1, "generate output: %s", r.out);
    cli_free(&r);
    /* without the system turn the packed path answers too */
    snprintf(args, sizeof args, "-t 2 generate '%s' --chat --system '' -p 'What is the capital of France?' -n 24",
             model);
    r = cli_run(args);
    CHECK_MSG(r.code == 0, "generate exit %d: %s", r.code, r.err);
    CHECK_MSG(strstr(r.out, "Paris") != NULL, "generate output: %s", r.out);
    cli_free(&r);
    return test_finish();
}
