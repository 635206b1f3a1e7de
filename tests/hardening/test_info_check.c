/* mend info --check: a copy of the tiny model with one NaN and one Inf
 * written into its weights is reported (tensor named, exit code 1); the
 * original passes. */
#define _GNU_SOURCE
#include <stdint.h>
#include <unistd.h>
#include "test.h"
#include "../cli/cli_run.h"
#include "io/gguf.h"
#include "kernels/quants.h"

#define TINY "tests/fixtures/hf/llama.gguf"

int main(void) {
    cli_out r = cli_run("info --check " TINY);
    CHECK_MSG(r.code == 0 && strstr(r.out, "weights are finite"), "exit %d: %s%s", r.code, r.out, r.err);
    cli_free(&r);

    /* patch an f32 norm: element 3 NaN, element 5 +Inf */
    mend_gguf *g = NULL;
    CHECK_OK(mend_gguf_open(&g, TINY));
    if (!g) return test_finish();
    const gguf_tensor *t = mend_gguf_find_tensor(g, "blk.1.ffn_norm.weight");
    CHECK(t && t->type == MEND_TYPE_F32);
    size_t off = t ? (size_t)((const uint8_t *)t->data - g->map.data) : 0;
    size_t n = g->map.size;
    uint8_t *copy = malloc(n);
    memcpy(copy, g->map.data, n);
    mend_gguf_close(g);
    float nan = NAN, inf = INFINITY;
    memcpy(copy + off + 3 * 4, &nan, 4);
    memcpy(copy + off + 5 * 4, &inf, 4);
    char path[256], args[512];
    snprintf(path, sizeof path, "%s/mend-info-check-%d.gguf", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    FILE *f = fopen(path, "wb");
    fwrite(copy, 1, n, f);
    fclose(f);
    free(copy);
    snprintf(args, sizeof args, "info --check '%s'", path);
    r = cli_run(args);
    CHECK_MSG(r.code == 1, "exit %d, expected 1: %s", r.code, r.err);
    CHECK_MSG(strstr(r.out, "layer 1 ffn norm") && strstr(r.out, "1 NaN, 1 Inf (first at element 3"),
              "output: %s", r.out);
    CHECK(strstr(r.out, "2 non-finite values in 1 tensors") != NULL);
    cli_free(&r);
    /* without --check the model still loads and describes itself */
    snprintf(args, sizeof args, "info '%s'", path);
    r = cli_run(args);
    CHECK(r.code == 0);
    cli_free(&r);
    remove(path);
    return test_finish();
}
