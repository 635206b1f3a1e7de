/* bank.json: the index parser on arbitrary text, then a round trip of
 * whatever parses (write, read back) and a lookup of every prompt. */
#include "fuzz_common.h"
#include "prompt/bank.h"

static const char *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    dir = fuzz_scratch_dir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mend_bank *b = NULL;
    if (mend_bank_parse("fuzz/bank.json", (const char *)data, size, &b) != 0) return 0;
    for (int i = 0; i < b->n; i++)
        if (mend_bank_find(b, b->p[i].name) != i) __builtin_trap();
    if (mend_bank_write(dir, b) == 0) {
        mend_bank *c = NULL;
        if (mend_bank_read(dir, &c) != 0) __builtin_trap();   /* what was written must read back */
        if (c->n != b->n || c->dim != b->dim || c->nv != b->nv) __builtin_trap();
        mend_bank_free(c);
    }
    mend_bank_free(b);
    return 0;
}
