/* Usage errors exit with 2 and a message naming the problem; runtime errors
 * exit with 1 and the library's error sentence; --help exits with 0. */
#include "test.h"
#include "cli_run.h"
#include <sys/stat.h>
#include <unistd.h>
#include "io/gguf.h"

static void expect_code(const char *args, int code, const char *in_err) {
    cli_out r = cli_run(args);
    CHECK_MSG(r.code == code, "mend %s: exit %d, expected %d (stderr: %s)", args, r.code, code, r.err);
    if (in_err) CHECK_MSG(strstr(r.err, in_err) != NULL, "mend %s: stderr lacks '%s': %s", args, in_err, r.err);
    cli_free(&r);
}

/* The defaults `mend compress` records: importance-weighted fits for ggml
 * types and plain fits for mend's generic grids (unless told otherwise),
 * and the sink weight seqlen / 32. */
static void compress_defaults(void) {
    char calib[128], out[128], args[1024];
    snprintf(calib, sizeof calib, "/tmp/mend_cli_calib_%d.txt", (int)getpid());
    snprintf(out, sizeof out, "/tmp/mend_cli_out_%d.gguf", (int)getpid());
    FILE *f = fopen(calib, "w");
    if (!f) return;
    for (int i = 0; i < 40; i++) fprintf(f, "the quick brown fox %d jumps over the lazy dog.\n\n", i);
    fclose(f);
    static const struct {
        const char *opts;
        int64_t fit, sink;
        int act;   /* act-order: on by default, off with --prune */
    } cases[] = {{"--type q4_0 --seqlen 64", 1, 2, 1},
                 {"--type q4_0 --seqlen 64 --no-fit-importance --sink-weight 5", 0, 5, 1},
                 {"--bits 3 --group 32 --seqlen 16", 0, 1, 1},
                 {"--bits 3 --group 32 --seqlen 16 --fit-importance", 1, 1, 1},
                 {"--type q4_0 --seqlen 64 --no-act-order", 1, 2, 0},
                 {"--type q4_0 --seqlen 64 --prune wanda --sparsity 0.5", 1, 2, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        snprintf(args, sizeof args, "-t 1 compress tests/fixtures/hf/llama.gguf -o %s --calib %s --nsamples 2 --no-checkpoint %s",
                 out, calib, cases[c].opts);
        cli_out r = cli_run(args);
        CHECK_MSG(r.code == 0, "mend %s: exit %d (stderr: %s)", args, r.code, r.err);
        cli_free(&r);
        mend_gguf *g = NULL;
        int64_t fit = -1, sink = -1;
        int act = -1;
        CHECK_OK(mend_gguf_open(&g, out));
        if (g) {
            CHECK_OK(mend_gguf_get_int(g, "mend.compress.fit_importance", &fit));
            CHECK_OK(mend_gguf_get_int(g, "mend.compress.sink_weight", &sink));
            CHECK_OK(mend_gguf_get_bool(g, "mend.compress.act_order", &act));
        }
        mend_gguf_close(g);
        CHECK_MSG(fit == cases[c].fit && sink == cases[c].sink && act == cases[c].act,
                  "%s: fit_importance %lld sink_weight %lld act_order %d", cases[c].opts, (long long)fit,
                  (long long)sink, act);
        unlink(out);
    }
    unlink(calib);
}

/* MEND_ISA picks the kernels' instruction set: a bad value is a usage error
 * naming it; --version and info --isa say what runs and what the CPU has. The
 * variable this test was started with is put back afterwards. */
static void isa_env(void) {
    const char *was = getenv("MEND_ISA");
    char *keep = was ? strdup(was) : NULL;
    setenv("MEND_ISA", "avx1024", 1);
    expect_code("--version", 2, "MEND_ISA: instruction set 'avx1024' is not known");
    setenv("MEND_ISA", "scalar", 1);
    cli_out r = cli_run("--version");
    CHECK_MSG(r.code == 0 && strstr(r.out, "isa: scalar\n"), "MEND_ISA=scalar mend --version: %d %s", r.code, r.out);
    cli_free(&r);
    r = cli_run("info --isa");
    CHECK_MSG(r.code == 0 && !strncmp(r.out, "scalar\n", 7) && strstr(r.out, mend_isa_detected()),
              "mend info --isa: %d %s", r.code, r.out);
    cli_free(&r);
    if (keep) setenv("MEND_ISA", keep, 1);
    else unsetenv("MEND_ISA");
    free(keep);
}

int main(void) {
    isa_env();
    expect_code("", 2, "Usage");
    expect_code("frobnicate", 2, "unknown command 'frobnicate'");
    expect_code("--bogus info", 2, "unknown option '--bogus'");
    expect_code("-t 0 info m.gguf", 2, "--threads");
    expect_code("-t", 2, "needs a value");
    expect_code("info", 2, "missing MODEL");
    expect_code("info a.gguf b.gguf", 2, "unexpected argument 'b.gguf'");
    expect_code("info --bogus a.gguf", 2, "unknown option '--bogus'");
    expect_code("info -x a.gguf", 2, "unknown option '-x'");
    expect_code("info -t nope a.gguf", 2, "--threads");
    expect_code("ppl a.gguf", 2, "missing --text");
    expect_code("compress a.gguf -o b.gguf --type q4_0 --sink-weight 0", 2, "--sink-weight expects a whole number >= 1");
    expect_code("compress a.gguf -o b.gguf --type q4_0 --prune wanda --act-order", 2,
                "--act-order is not supported together with --prune");
    expect_code("compress a.gguf -o b.gguf --type q4_0 --sink-weight 6x", 2, "--sink-weight expects");
    expect_code("ppl a.gguf --text t.txt --protocol hf", 2, "--protocol expects gptq or llamacpp");
    expect_code("ppl a.gguf --text t.txt --ctx 12x", 2, "--ctx");
    expect_code("ppl a.gguf --text t.txt --ctx 2", 2, "--ctx");
    expect_code("ppl a.gguf --text t.txt --chunks 0", 2, "--chunks");
    expect_code("ppl a.gguf --text t.txt --protocol llamacpp --hf-lines", 2, "--hf-lines");
    expect_code("ppl a.gguf --text", 2, "needs a value");
    expect_code("generate a.gguf", 2, "missing -p");
    expect_code("generate a.gguf -p hi -n abc", 2, "-n expects");
    expect_code("generate a.gguf -p hi --temp -1", 2, "--temp");
    expect_code("generate a.gguf -p hi --top-p 1.5", 2, "--top-p");
    expect_code("generate a.gguf -p hi --seed x", 2, "--seed");
    expect_code("generate a.gguf -p hi --system s", 2, "--system needs --chat");
    /* repair: the compression spec and the plan */
    expect_code("repair a.gguf -o out", 2, "missing --compress");
    expect_code("repair a.gguf --compress gptq:q4_0", 2, "missing -o");
    expect_code("repair a.gguf --compress q4_0 -o out", 2, "expected METHOD:TYPE");
    expect_code("repair a.gguf --compress gptq:q9_0 -o out", 2, "unknown type 'q9_0'");
    expect_code("repair a.gguf --compress awq:q4_0 -o out", 2, "unknown quantizer 'awq'");
    expect_code("repair a.gguf --compress gptq:int5g64 -o out", 2, "2, 3, 4 or 8 bits");
    expect_code("repair a.gguf --compress gptq:int3g48 -o out", 2, "must be 32, 64 or 128");
    expect_code("repair a.gguf --compress gptq:int3g64x -o out", 2, "unexpected 'x'");
    expect_code("repair a.gguf --compress sparsegpt: -o out", 2, "needs a sparsity");
    expect_code("repair a.gguf --compress gptq:q4_0+q4_0 -o out", 2, "'+' follows a pruning method");
    expect_code("repair a.gguf --compress wanda:0.5+q4_0+q4_1 -o out", 2, "at most one '+'");
    expect_code("repair a.gguf --compress gptq:q4_0 -o out --budget huge", 2, "--budget expects");
    expect_code("repair a.gguf --compress gptq:q4_0 -o out --bank-dir b --bank wiki", 2, "not both");
    expect_code("repair a.gguf --compress gptq:q4_0 -o out --limit -1", 2, "--limit");
    expect_code("repair a.gguf --compress gptq:q4_0 -o out --tasks /nonexistent/t.jsonl", 1,
                "'/nonexistent/t.jsonl' does not exist");
    {   /* a rerun with other settings is refused, naming the field; a broken plan too */
        char dir[64], args[2048], plan[96];
        snprintf(dir, sizeof dir, "/tmp/mend_repair_plan_%d", (int)getpid());
        snprintf(plan, sizeof plan, "%s/repair.json", dir);
        mkdir(dir, 0755);
        const char *task = test_src("tests/fixtures/eval/toy_mc.jsonl");
        snprintf(args, sizeof args, "repair a.gguf --compress gptq:q4_0 -o %s --tasks %s --ppl-text %s --bank a=%s",
                 dir, task, task, task);
        FILE *f = fopen(plan, "w");
        fputs("{\"model\": \"a.gguf\", \"compress\": \"gptq:q4_1\"}", f);
        fclose(f);
        expect_code(args, 1, "this directory holds a run with compress = \"gptq:q4_1\"");
        f = fopen(plan, "w");
        fputs("{\"model\": ", f);
        fclose(f);
        expect_code(args, 1, "repair.json: not valid JSON");
        struct stat st;
        char logs[128];
        snprintf(logs, sizeof logs, "%s/logs", dir);
        CHECK_MSG(stat(logs, &st) != 0, "a refused repair created %s", logs);
        unlink(plan);
        rmdir(dir);
    }
    /* runtime errors: exit 1 with the library's sentence */
    expect_code("info /nonexistent/model.gguf", 1, "/nonexistent/model.gguf");
    expect_code("ppl /nonexistent/model.gguf --text /nonexistent/t.txt", 1, "/nonexistent/t.txt");
    /* help */
    expect_code("--help", 0, NULL);
    expect_code("info --help", 0, NULL);
    expect_code("ppl --help", 0, NULL);
    expect_code("generate --help", 0, NULL);
    expect_code("repair --help", 0, NULL);
    cli_out r = cli_run("ppl --help");
    CHECK(strstr(r.out, "--protocol") != NULL);
    cli_free(&r);
    compress_defaults();
    return test_finish();
}
