/* Task JSONL: the loader on arbitrary text, with and without a limit. */
#include "fuzz_common.h"
#include "eval/tasks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfd(data, size, path);
    if (fd < 0) return 0;
    for (int pass = 0; pass < 2; pass++) {
        mend_task *t = NULL;
        if (mend_task_load(&t, path, pass ? 1 : 0) == 0) {
            for (size_t i = 0; i < t->n; i++) {
                const mend_task_ex *e = &t->ex[i];
                if (e->context) fuzz_touch(e->context, strlen(e->context));
                if (e->continuation) fuzz_touch(e->continuation, strlen(e->continuation));
                if (e->answer) fuzz_touch(e->answer, strlen(e->answer));
                for (int k = 0; k < e->n_options; k++) fuzz_touch(e->options[k], strlen(e->options[k]));
                if ((t->kind == MEND_TASK_MC || t->kind == MEND_TASK_SCHEMA) &&
                    (e->gold < 0 || e->gold >= e->n_options))
                    __builtin_trap();
            }
            mend_task_free(t);
        }
    }
    close(fd);
    return 0;
}
