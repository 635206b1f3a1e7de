/* safetensors: header length, JSON header, every entry's dtype / shape /
 * offsets; then every convertible tensor is read to f32 and __metadata__
 * looked up. */
#include "fuzz_common.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    int fd = fuzz_memfd(data, size, path);
    if (fd < 0) return 0;
    mend_safetensors *st = NULL;
    if (mend_safetensors_open(&st, path) == 0) {
        unsigned sink = 0;
        for (size_t i = 0; i < st->n_tensors; i++) {
            const mend_st_tensor *t = &st->tensors[i];
            sink += fuzz_touch(t->data, t->nbytes);
            if (mend_safetensors_find(st, t->name) == NULL) __builtin_trap();
            if (t->type >= 0 && t->n_elems <= (1 << 20)) {
                float *dst = malloc((size_t)(t->n_elems ? t->n_elems : 1) * sizeof *dst);
                if (dst) {
                    if (mend_safetensors_read_f32(st, t, 0, t->n_elems, dst) != 0) __builtin_trap();
                    /* out-of-range requests must fail cleanly */
                    if (mend_safetensors_read_f32(st, t, t->n_elems, 1, dst) == 0) __builtin_trap();
                    free(dst);
                }
            }
        }
        const char *v = mend_safetensors_meta(st, "format");
        if (v) sink += fuzz_touch(v, strlen(v));
        (void)sink;
        mend_safetensors_close(st);
    }
    close(fd);
    return 0;
}
