/* mend bench MODEL: prompt-processing and generation speed measured the way
 * llama-bench measures them, so the two print comparable numbers:
 *   ppN  one batch of N tokens from an empty cache, logits of the last only
 *   tgN  N single-token steps from an empty cache, logits every step
 * Each test is warmed up as llama-bench does (the whole prompt; one
 * generation step), then runs -r times; mean +/- stddev of tokens/s is
 * printed as a Markdown table. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mend.h"

static const char *CMD = "bench";

static void help(void) {
    printf("Usage: mend bench [options] MODEL\n\n"
           "Speed of the forward pass, as llama-bench measures it.\n\n"
           "Options:\n"
           "  -p, --n-prompt N    prompt tokens processed in one batch (default 512; 0 skips)\n"
           "  -n, --n-gen N       tokens generated one at a time (default 128; 0 skips)\n"
           "  -r, --reps N        repetitions after one warm-up run (default 3)\n"
           "      --f32           dequantize weights to f32 at load\n"
           "      --no-repack     no interleaved copy of q4_0 / q4_1 / q5_0 / q2_K / q3_K / q4_K /\n"
           "                      q6_K matrices (the plain-layout kernels run instead)\n"
           "  -t, --threads N     threads (default: all cores)\n"
           "  -h, --help          this help\n");
}

static void stats(const double *v, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(ss / (n - 1)) : 0.0;
}

int cmd_bench(int argc, char **argv) {
    enum { O_F32 = 256, O_NOREPACK };
    static const struct option longopts[] = {
        {"n-prompt", required_argument, 0, 'p'}, {"n-gen", required_argument, 0, 'n'},
        {"reps", required_argument, 0, 'r'},     {"f32", no_argument, 0, O_F32},
        {"no-repack", no_argument, 0, O_NOREPACK},
        {"threads", required_argument, 0, 't'},  {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    long n_prompt = 512, n_gen = 128, reps = 3;
    int f32 = 0, no_repack = 0;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":p:n:r:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (cli_parse_int(optarg, 0, 1 << 16, &n_prompt))
                return cli_usage_error(CMD, "-p expects a whole number from 0 to 65536, got '%s'", optarg);
            break;
        case 'n':
            if (cli_parse_int(optarg, 0, 1 << 16, &n_gen))
                return cli_usage_error(CMD, "-n expects a whole number from 0 to 65536, got '%s'", optarg);
            break;
        case 'r':
            if (cli_parse_int(optarg, 1, 1000, &reps))
                return cli_usage_error(CMD, "-r expects a whole number from 1 to 1000, got '%s'", optarg);
            break;
        case O_F32: f32 = 1; break;
        case O_NOREPACK: no_repack = 1; break;
        case 't':
            if (cli_set_threads(CMD, optarg)) return CLI_EXIT_USAGE;
            break;
        case 'h': help(); return 0;
        default: return cli_getopt_error(CMD, argv, c);
        }
    }
    if (optind >= argc) return cli_usage_error(CMD, "missing MODEL");
    if (optind + 1 < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
    if (n_prompt == 0 && n_gen == 0) return cli_usage_error(CMD, "nothing to measure (-p 0 -n 0)");
    const char *path = argv[optind];

    int rc = CLI_EXIT_ERROR;
    mend_model *m = NULL;
    mend_state *st = NULL;
    int32_t *toks = NULL;
    float *logits = NULL;
    double *tps = NULL;
    mend_load_opts lo = {.keep_packed = !f32, .no_repack = no_repack};
    double tl = mend_now();
    if (mend_model_load(&m, path, &lo)) {
        rc = cli_fail(CMD, path);
        goto out;
    }
    tl = mend_now() - tl;
    mend_model_info info;
    mend_model_get_info(m, &info);
    long n_ctx = n_prompt > n_gen ? n_prompt : n_gen;
    int max_batch = n_prompt > 0 ? (int)n_prompt : 1;
    if (mend_state_new(&st, m, (int)n_ctx, max_batch)) {
        rc = cli_fail(CMD, "state");
        goto out;
    }
    toks = malloc(sizeof *toks * (size_t)(n_ctx > 0 ? n_ctx : 1));
    logits = malloc(sizeof *logits * (size_t)info.n_vocab);
    tps = malloc(sizeof *tps * (size_t)reps);
    if (!toks || !logits || !tps) {
        fprintf(stderr, "mend %s: out of memory\n", CMD);
        goto out;
    }
    /* fixed pseudo-random token ids: the speed does not depend on them */
    uint32_t x = 2463534242u;
    for (long i = 0; i < n_ctx; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        toks[i] = (int32_t)(x % (uint32_t)info.n_vocab);
    }
    char name[64];
    fprintf(stderr, "loaded %s in %.2f s; %d threads", path, tl, mend_get_threads());
    if (info.repacked_bytes)
        fprintf(stderr, "; %.1f MiB of matrices repacked for batched products", info.repacked_bytes / 1048576.0);
    fputc('\n', stderr);
    printf("| model | params | threads | test | t/s |\n|---|---:|---:|---|---:|\n");
    fflush(stdout);
    for (int test = 0; test < 2; test++) {
        long n = test == 0 ? n_prompt : n_gen;
        if (n == 0) continue;
        for (long r = -1; r < reps; r++) {   /* r == -1: warm-up */
            double t0 = mend_now();
            if (test == 0) {
                if (mend_forward(st, toks, NULL, (int)n, 0, logits, 0)) {
                    rc = cli_fail(CMD, "forward");
                    goto out;
                }
            } else {
                long steps = r < 0 ? 1 : n;   /* llama-bench warms generation up with one token */
                for (long i = 0; i < steps; i++)
                    if (mend_forward(st, toks + i, NULL, 1, (int)i, logits, 0)) {
                        rc = cli_fail(CMD, "forward");
                        goto out;
                    }
            }
            double dt = mend_now() - t0;
            if (r >= 0) tps[r] = n / dt;
        }
        double mean, sd;
        stats(tps, (int)reps, &mean, &sd);
        snprintf(name, sizeof name, "%s%ld", test == 0 ? "pp" : "tg", n);
        char base[256];
        printf("| %s | %.2f M | %d | %s | %.2f ± %.2f |\n", mend_basename(path, base, sizeof base), info.n_params / 1e6,
               mend_get_threads(), name, mean, sd);
        fflush(stdout);
    }
    rc = 0;
out:
    free(tps);
    free(logits);
    free(toks);
    if (st) mend_state_free(st);
    if (m) mend_model_free(m);
    return rc;
}
