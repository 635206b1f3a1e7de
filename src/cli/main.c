#define _GNU_SOURCE
/* mend: command-line entry point. Global flags, then one subcommand:
 *   mend [-t N] <info|generate|ppl> [options] MODEL
 * Every subcommand also accepts -t/--threads and --help. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mend.h"

int cmd_eval(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_tune(int argc, char **argv);
int cmd_compress(int argc, char **argv);
int cmd_bank(int argc, char **argv);
int cmd_repair(int argc, char **argv);

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} commands[] = {
    {"info", cmd_info, "describe a model: architecture, config, tensors, tokenizer"},
    {"generate", cmd_generate, "generate text from a prompt (optionally with the chat template)"},
    {"ppl", cmd_ppl, "perplexity of a text file (gptq or llama.cpp protocol)"},
    {"bench", cmd_bench, "prompt and generation speed, measured as llama-bench does"},
    {"eval", cmd_eval, "zero-shot task accuracy with lm-evaluation-harness rules"},
    {"report", cmd_report, "Markdown table / chart of eval results files"},
    {"compress", cmd_compress, "quantize a model (RTN or GPTQ) into a GGUF file"},
    {"bank", cmd_bank, "train a bank of domain prompts (build), its learned router (router), or describe one (info)"},
    {"tune", cmd_tune, "train a soft prompt that repairs a (compressed) model"},
    {"repair", cmd_repair, "compress, repair with prompts, evaluate and report, in one resumable run"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f,
            "mend %s: repair compressed LLMs with soft prompts\n\n"
            "Usage: mend [-t N] <command> [options]\n\n"
            "Commands:\n",
            MEND_VERSION);
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].what);
    fprintf(f,
            "\nGlobal options:\n"
            "  -t, --threads N   threads to use (default: all cores)\n"
            "  -h, --help        this help; 'mend <command> --help' for a command\n"
            "      --version     print the version and the instruction set the kernels use\n"
            "\nEnvironment:\n"
            "  MEND_ISA          scalar, avx2 or avx512 (scalar, neon or neon-nodotprod on\n"
            "                    ARM64): run the kernels on that instruction set instead of\n"
            "                    the widest this CPU has (%s here; now %s)\n",
            mend_isa_detected(), mend_isa_describe());
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mend%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'mend%s%s --help' for usage.\n", cmd ? " " : "", cmd ? cmd : "");
    return CLI_EXIT_USAGE;
}

int cli_fail(const char *cmd, const char *what) {
    fflush(stdout);
    fprintf(stderr, "mend %s: %s: %s\n", cmd, what, mend_last_error());
    return CLI_EXIT_ERROR;
}

int cli_parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_int_option(const char *cmd, const char *name, const char *arg, long lo, long hi, int *out) {
    long v;
    if (cli_parse_int(arg, lo, hi, &v))
        return cli_usage_error(cmd, "%s expects a whole number from %ld to %ld, got '%s'", name, lo, hi, arg);
    *out = (int)v;
    return 0;
}

int cli_parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int cli_parse_double(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cli_set_threads(const char *cmd, const char *value) {
    long n;
    if (cli_parse_int(value, 1, 1024, &n))
        return cli_usage_error(cmd, "--threads expects a whole number from 1 to 1024, got '%s'", value);
    mend_set_threads((int)n);
    return 0;
}

int cli_getopt_error(const char *cmd, char **argv, int ret) {
    char shortopt[3] = {'-', (char)optopt, 0};
    const char *name = optopt ? shortopt : argv[optind - 1];
    if (ret == ':') return cli_usage_error(cmd, "option '%s' needs a value", name);
    return cli_usage_error(cmd, "unknown option '%s'", name);
}

int cli_find_data(const char *sub, char *out, size_t cap) {
    const char *env = getenv("MEND_DATA");
    if (env && *env) {
        snprintf(out, cap, "%s/%s", env, sub);
        return mend_is_dir(out) ? 0 : -1;
    }
    snprintf(out, cap, "../shared/data/%s", sub);
    if (mend_is_dir(out)) return 0;
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        for (int up = 0; up < 3; up++) {
            char *sl = strrchr(exe, '/');
            if (!sl) break;
            *sl = 0;
            snprintf(out, cap, "%s/../shared/data/%s", exe, sub);
            if (mend_is_dir(out)) return 0;
        }
    }
    return -1;
}

int cli_command(int argc, char **argv) {
    for (size_t c = 0; c < N_COMMANDS; c++)
        if (!strcmp(argv[0], commands[c].name)) return commands[c].fn(argc, argv);
    return cli_usage_error(NULL, "unknown command '%s' (run 'mend --help' for the list)", argv[0]);
}

int main(int argc, char **argv) {
    mend_set_threads(0);
    const char *isa = getenv("MEND_ISA");   /* scalar | avx2 | avx512 | neon: test a narrower CPU's kernels */
    if (isa && *isa && mend_set_isa(isa)) {
        fprintf(stderr, "mend: MEND_ISA: %s\n", mend_last_error());
        return CLI_EXIT_USAGE;
    }
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("mend %s\nisa: %s\n", MEND_VERSION, mend_isa_describe());
            return 0;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (i + 1 >= argc) return cli_usage_error(NULL, "%s needs a value", a);
            int rc = cli_set_threads(NULL, argv[++i]);
            if (rc) return rc;
        } else if (!strncmp(a, "--threads=", 10)) {
            int rc = cli_set_threads(NULL, a + 10);
            if (rc) return rc;
        } else {
            return cli_usage_error(NULL, "unknown option '%s'", a);
        }
    }
    if (i >= argc) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    return cli_command(argc - i, argv + i);
}
