/* Inputs that once crashed a reader (found by the fuzz targets in fuzz/):
 * each must now fail, or succeed, with a clear status, never crash. The raw
 * reproducers live in tests/hardening/regressions/<target>/ and are also
 * replayed through the fuzz targets (test_replay_*). */
#define _GNU_SOURCE
#include <stdint.h>
#include <unistd.h>
#include "test.h"
#include "eval/tasks.h"
#include "util/util.h"

static char scratch[256];

static const char *put(const char *name, const void *data, size_t n) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", scratch, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        if (n) fwrite(data, 1, n, f);
        fclose(f);
    }
    return path;
}

/* tasks: an empty file maps to NULL; the line loop did pointer arithmetic on it */
static void test_tasks_empty(void) {
    mend_task *t = NULL;
    CHECK_ERR(mend_task_load(&t, put("empty.jsonl", "", 0), 0), MEND_EFORMAT, "no examples");
    CHECK(t == NULL);
    CHECK_ERR(mend_task_load(&t, put("blank.jsonl", "\n \n", 3), 0), MEND_EFORMAT, "no examples");
}

int main(void) {
    snprintf(scratch, sizeof scratch, "%s/mend-hardening-%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    mend_mkdir_p(scratch);
    test_tasks_empty();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", scratch);
    return test_finish();
}
