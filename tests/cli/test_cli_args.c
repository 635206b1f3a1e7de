/* Usage errors exit with 2 and a message naming the problem; runtime errors
 * exit with 1 and the library's error sentence; --help exits with 0. */
#include "test.h"
#include "cli_run.h"

static void expect_code(const char *args, int code, const char *in_err) {
    cli_out r = cli_run(args);
    CHECK_MSG(r.code == code, "mend %s: exit %d, expected %d (stderr: %s)", args, r.code, code, r.err);
    if (in_err) CHECK_MSG(strstr(r.err, in_err) != NULL, "mend %s: stderr lacks '%s': %s", args, in_err, r.err);
    cli_free(&r);
}

int main(void) {
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
    /* runtime errors: exit 1 with the library's sentence */
    expect_code("info /nonexistent/model.gguf", 1, "/nonexistent/model.gguf");
    expect_code("ppl /nonexistent/model.gguf --text /nonexistent/t.txt", 1, "/nonexistent/t.txt");
    /* help */
    expect_code("--help", 0, NULL);
    expect_code("info --help", 0, NULL);
    expect_code("ppl --help", 0, NULL);
    expect_code("generate --help", 0, NULL);
    cli_out r = cli_run("ppl --help");
    CHECK(strstr(r.out, "--protocol") != NULL);
    cli_free(&r);
    return test_finish();
}
