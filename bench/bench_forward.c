/* Forward-pass throughput on the default model (or a GGUF given as argv[1]):
 * prefill of a P-token prompt (logits of the last position, and of every
 * position) and token-by-token decode. Prints tokens/s; no assertions.
 *
 * Build: cmake --build <build dir> --target bench_forward (bench/CMakeLists.txt)
 * Run: <build dir>/bench/bench_forward [model.gguf] [threads=2] [prompt=512] [decode=128] [keep_packed=0] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mend.h"
#include "util/util.h"

/* process CPU seconds (all threads): on a loaded machine, tokens per CPU
 * second of a one-thread run measures the code rather than the scheduler */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    char def[4096];
    snprintf(def, sizeof def, "%s/.cache/mend/models/SmolLM2-135M-Instruct.Q4_1.gguf",
             getenv("HOME") ? getenv("HOME") : "/root");
    const char *path = argc > 1 ? argv[1] : def;
    const int threads = argc > 2 ? atoi(argv[2]) : 2;
    const int P = argc > 3 ? atoi(argv[3]) : 512;
    const int G = argc > 4 ? atoi(argv[4]) : 128;
    mend_load_opts o = {.keep_packed = argc > 5 ? atoi(argv[5]) : 0};
    mend_set_threads(threads);
    mend_model *m;
    double t = mend_now();
    if (mend_model_load(&m, path, &o)) {
        fprintf(stderr, "%s\n", mend_last_error());
        return 1;
    }
    printf("load: %.2f s, threads %d\n", mend_now() - t, threads);
    mend_model_info info;
    mend_model_get_info(m, &info);
    mend_state *s;
    if (mend_state_new(&s, m, P + G, P)) {
        fprintf(stderr, "%s\n", mend_last_error());
        return 1;
    }
    int32_t *ids = malloc((size_t)(P + G) * sizeof *ids);
    for (int i = 0; i < P + G; i++) ids[i] = (int32_t)((i * 7919u + 13) % (unsigned)info.n_vocab);
    float *lg = malloc((size_t)P * info.n_vocab * sizeof(float));
    mend_forward(s, ids, NULL, 16, 0, lg, 0);   /* warm up */
    double c;
    for (int rep = 0; rep < 2; rep++) {
        t = mend_now();
        c = cpu_now();
        mend_forward(s, ids, NULL, P, 0, lg, 0);
        double dt = mend_now() - t, dc = cpu_now() - c;
        printf("prefill %d tokens, last logits: %.3f s = %.1f tok/s (%.1f tok per CPU s)\n", P, dt, P / dt, P / dc);
    }
    t = mend_now();
    c = cpu_now();
    mend_forward(s, ids, NULL, P, 0, lg, 1);
    double dt = mend_now() - t, dc = cpu_now() - c;
    printf("prefill %d tokens, all logits:  %.3f s = %.1f tok/s (%.1f tok per CPU s)\n", P, dt, P / dt, P / dc);
    t = mend_now();
    c = cpu_now();
    for (int i = 0; i < G; i++) mend_forward(s, ids + P + i, NULL, 1, P + i, lg, 0);
    dt = mend_now() - t;
    dc = cpu_now() - c;
    printf("decode %d tokens after %d: %.3f s = %.1f tok/s (%.1f tok per CPU s)\n", G, P, dt, G / dt, G / dc);
    free(lg);
    free(ids);
    mend_state_free(s);
    mend_model_free(m);
    return 0;
}
