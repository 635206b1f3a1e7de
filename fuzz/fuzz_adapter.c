/* PEFT adapter directories: the input is adapter_model.safetensors, then
 * FUZZ_SEP, then adapter_config.json (without the separator there is no
 * config file). The model width passed to the reader comes from the tensor
 * itself when the file parses (so inputs reach the value checks), else 4. */
#include "fuzz_common.h"
#include "prompt/adapter.h"

static const char *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    dir = fuzz_scratch_dir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *st, *cfg;
    size_t sn, cn;
    fuzz_split(data, size, &st, &sn, &cfg, &cn);
    if (fuzz_put(dir, "adapter_model.safetensors", st, sn) != 0) return 0;
    if (fuzz_put(dir, "adapter_config.json", cfg, cn) != 0) return 0;
    /* the width: a few candidates, one of them the usual 4 of the seeds */
    static const int dims[] = {4, 1, 8, 576};
    int dim = dims[(sn + cn) % 4];
    float *emb = NULL;
    int nv = 0;
    if (mend_adapter_read(dir, dim, &emb, &nv) == 0) {
        if (nv < 1 || !emb) __builtin_trap();
        fuzz_touch(emb, (size_t)nv * (size_t)dim * sizeof *emb);
        free(emb);
    }
    return 0;
}
