/* Run the mend binary with a shell command line, capturing stdout, stderr
 * and the exit code. */
#ifndef MEND_TEST_CLI_RUN_H
#define MEND_TEST_CLI_RUN_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct cli_out {
    int code;          /* exit code, -1 when killed */
    char *out, *err;   /* malloc'd, NUL-terminated */
} cli_out;

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return calloc(1, 1);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    b[got] = 0;
    fclose(f);
    return b;
}

/* args: everything after the binary, already shell-quoted */
static cli_out cli_run(const char *args) {
    char o[64], e[64], cmd[8192];
    snprintf(o, sizeof o, "/tmp/mend_cli_%d.out", (int)getpid());
    snprintf(e, sizeof e, "/tmp/mend_cli_%d.err", (int)getpid());
    snprintf(cmd, sizeof cmd, "'%s' %s >%s 2>%s", MEND_BIN, args, o, e);
    int st = system(cmd);
    cli_out r;
    r.code = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
    r.out = slurp(o);
    r.err = slurp(e);
    remove(o);
    remove(e);
    return r;
}

/* cli_run of a formatted command line */
static cli_out cli_runf(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static cli_out cli_runf(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return cli_run(cmd);
}

/* A small training / calibration text at path: the first cap bytes of
 * corpus when it holds more than need, else made-up lines. */
static inline void cli_make_text(const char *path, const char *corpus, size_t cap, size_t need) {
    size_t n = 0;
    FILE *in = fopen(corpus, "rb");
    char *text = calloc(1, cap + 1);
    if (in && text) n = fread(text, 1, cap, in);
    if (in) fclose(in);
    FILE *f = fopen(path, "wb");
    if (f && n > need) fwrite(text, 1, n, f);
    else if (f)
        for (int i = 0; i < 600; i++) fprintf(f, "Line %d of a text about foxes %d.%s", i, i % 7, i % 4 == 3 ? "\n\n" : " ");
    if (f) fclose(f);
    free(text);
}

static void cli_free(cli_out *r) {
    free(r->out);
    free(r->err);
}

#endif
