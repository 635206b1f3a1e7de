/* Minimal test harness: CHECK macros count failures; main returns non-zero
 * when any check failed. Each test binary prints "N passed, N failed". */
#ifndef MEND_TEST_H
#define MEND_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "mend.h"

static int t_pass = 0, t_fail = 0;

#define CHECK(cond) do { \
    if (cond) t_pass++; \
    else { t_fail++; fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_MSG(cond, ...) do { \
    if (cond) t_pass++; \
    else { t_fail++; fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
           fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
} while (0)

#define CHECK_OK(expr) do { \
    int rc_ = (expr); \
    if (rc_ == 0) t_pass++; \
    else { t_fail++; fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr, rc_, mend_last_error()); } \
} while (0)

/* expect failure with a given code and an error sentence containing substr */
#define CHECK_ERR(expr, code, substr) do { \
    int rc_ = (expr); \
    const char *e_ = mend_last_error(); \
    const char *s_ = (substr); \
    if (rc_ == (code) && (!s_ || strstr(e_, s_))) t_pass++; \
    else { t_fail++; fprintf(stderr, "%s:%d: %s: expected %d containing '%s', got %d: %s\n", \
                             __FILE__, __LINE__, #expr, (code), s_ ? s_ : "", rc_, e_); } \
} while (0)

#define CHECK_NEAR(a, b, tol) do { \
    double a_ = (a), b_ = (b); \
    if (fabs(a_ - b_) <= (tol)) t_pass++; \
    else { t_fail++; fprintf(stderr, "%s:%d: %s = %g, %s = %g, |diff| %g > %g\n", \
                             __FILE__, __LINE__, #a, a_, #b, b_, fabs(a_ - b_), (double)(tol)); } \
} while (0)

/* MEND_ISA=scalar|avx2|avx512 (scalar|neon|neon-nodotprod on ARM64) runs the
 * whole test on that instruction set's kernels (the library never reads the
 * environment; the CLI the tests spawn reads the same variable). A bad value
 * fails the test before it starts. */
__attribute__((constructor)) static void test_isa_from_env(void) {
    const char *isa = getenv("MEND_ISA");
    if (isa && *isa && mend_set_isa(isa)) {
        fprintf(stderr, "MEND_ISA: %s\n", mend_last_error());
        exit(2);
    }
}

static inline int test_finish(void) {
    printf("%d passed, %d failed\n", t_pass, t_fail);
    return t_fail ? 1 : 0;
}

/* $MEND_HOME/models/NAME (else ~/.cache/mend/models/NAME) when it exists,
 * else NULL. */
static inline const char *test_model_file(const char *name) {
    static char buf[4096];
    const char *home = getenv("MEND_HOME");
    if (home && *home) snprintf(buf, sizeof buf, "%s/models/%s", home, name);
    else snprintf(buf, sizeof buf, "%s/.cache/mend/models/%s", getenv("HOME") ? getenv("HOME") : "/root", name);
    FILE *f = fopen(buf, "rb");
    if (!f) return NULL;
    fclose(f);
    return buf;
}

/* Path of the default model, or NULL (test skipped) when absent. */
static inline const char *test_default_model(void) { return test_model_file("SmolLM2-135M-Instruct.Q4_1.gguf"); }

/* The python of the peer venv that scripts/pyenv.sh makes ($MEND_PYENV, else
 * $MEND_HOME/pyenv, else ~/.cache/mend/pyenv); it may not exist. */
static inline const char *test_pyenv_python(void) {
    static char buf[4096];
    const char *venv = getenv("MEND_PYENV"), *home = getenv("MEND_HOME");
    if (venv && *venv) snprintf(buf, sizeof buf, "%s/bin/python", venv);
    else if (home && *home) snprintf(buf, sizeof buf, "%s/pyenv/bin/python", home);
    else snprintf(buf, sizeof buf, "%s/.cache/mend/pyenv/bin/python", getenv("HOME") ? getenv("HOME") : "/root");
    return buf;
}

/* Path under the source tree (tests run with the source dir as cwd). */
static inline const char *test_src(const char *rel) {
    static char buf[4][4096];
    static int k = 0;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", MEND_SOURCE_DIR, rel);
    return buf[k];
}

/* ../shared/data relative to the source dir */
static inline const char *test_data(const char *rel) {
    static char buf[4][4096];
    static int k = 0;
    k = (k + 1) & 3;
    const char *d = getenv("MEND_DATA");
    if (d && *d) snprintf(buf[k], sizeof buf[k], "%s/%s", d, rel);
    else snprintf(buf[k], sizeof buf[k], "%s/../shared/data/%s", MEND_SOURCE_DIR, rel);
    return buf[k];
}

#endif
