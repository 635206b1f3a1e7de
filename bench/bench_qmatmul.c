/* Quantized matmul kernels (kernels/qmatmul.h) against OpenBLAS on the
 * dequantized f32 matrix, side by side in one run.
 *
 * For each matrix (rows x cols) and weight type, mend_qmatmul at every SIMD
 * level on 1 and 2 threads, n = 1 (generation) and n = 64 (a prefill chunk):
 * GB/s of packed weights streamed (n = 1) and GFLOP/s (2*rows*cols*n per
 * call). F32 rows: cblas_sgemv (n = 1) / cblas_sgemm (n = 64) on the
 * dequantized matrix. Then the crossover: for which n does "dequantize W to
 * f32 + sgemm" beat the packed kernels (2 threads)?
 *
 * Timings are the fastest single call of many after a warm-up, so that time
 * slicing on a shared machine is discarded rather than measured.
 * Prints Markdown. Build: cmake --build <dir> --target bench_qmatmul
 * --qgemm N,N,..: instead, the batched products on repacked weights
 * (kernels/qgemm.h) against mend_qmatmul's per-row kernels on the plain
 * layout for the types both take, at those batch sizes, one thread, on
 * every x86 variant the CPU has (AVX2 without and with AVX-VNNI, AVX-512
 * VNNI), the two timed in alternation (--reps rounds, the best call of
 * each kept).
 * Run: <dir>/bench/bench_qmatmul [--quick] [--types q4_0,q8_0,...] [--skip-table] [--skip-cross]
 *      [--cputime]      (one thread, timed by its CPU clock: for a loaded machine)
 *      [--max-level L]  (cap mend's SIMD level: 0 scalar, 1 AVX2; with
 *                        OPENBLAS_CORETYPE=Haswell this stands in for an AVX2 machine) */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "kernels/cpu.h"
#include "kernels/qgemm.h"
#include "kernels/qmatmul.h"
#include "kernels/quants.h"
#include "mend.h"
#include "util/util.h"

extern void openblas_set_num_threads(int);
extern char *openblas_get_corename(void);

static uint64_t rng = 0x853C49E6748FEA9Bull;
static uint32_t rnd(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}
static float rndu(void) { return (rnd() >> 8) * (1.0f / 16777216.0f); }
static float rndn(void) { return (rndu() + rndu() + rndu() + rndu() - 2.0f) * 1.7320508f; }

/* Best seconds per call of fn(ctx): the fastest of many calls timed one by
 * one (up to g_budget seconds, at least 8 calls) after a warm-up, so that time
 * slicing on a shared machine shows up as discarded slow calls rather than as
 * a slower kernel. (Calls take >= 5 us; a clock read costs well under 1%.) */
static double g_budget = 0.25;   /* seconds per measurement */
static int g_cputime;            /* 1: time with this thread's CPU clock (1 thread only) */
static double now(void) {
    if (!g_cputime) return mend_now();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
/* OpenBLAS's worker threads keep spinning for a while after a multi-threaded
 * call, holding the second core away from OpenMP's (and OpenMP's spin after
 * a region): before timing one pool after the other, let the last one sleep. */
static int g_pool_hot;   /* 1: OpenBLAS threads, 2: OpenMP threads ran last */
static void use_pool(int pool) {
    if (g_pool_hot && g_pool_hot != pool && !g_cputime) {
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    g_pool_hot = pool;
}
typedef void (*bench_fn)(void *ctx);
static double time_it(bench_fn fn, void *ctx) {
    /* warm-up: 30 ms of calls, so a thread team is running, not asleep */
    for (const double t0 = mend_now(); mend_now() - t0 < 0.03;) fn(ctx);
    double best = 1e30, spent = 0.0;
    for (int calls = 0; calls < 8 || (spent < g_budget && calls < 100000); calls++) {
        const double t0 = now();
        fn(ctx);
        const double t = now() - t0;
        spent += t;
        if (t < best) best = t;
    }
    return best;
}

typedef struct {
    float *out;
    const float *x;
    int n;
    const void *w;
    uint32_t type;
    int64_t rows, cols;
    int threads, level;
    const float *wf;   /* f32 matrix for BLAS */
    float *tile;       /* dequantize + sgemm: the f32 copy */
} job;

static void run_q(void *p) {
    job *j = p;
    if (mend_qmatmul_ex(j->out, (size_t)j->rows, j->x, (size_t)j->cols, j->n, j->w, j->type, j->rows, j->cols,
                        NULL, 0, j->threads, j->level)) {
        fprintf(stderr, "qmatmul: %s\n", mend_last_error());
        exit(1);
    }
}

static void run_blas(void *p) {
    job *j = p;
    if (j->n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)j->rows, (int)j->cols, 1.0f, j->wf, (int)j->cols, j->x, 1, 0.0f, j->out, 1);
    else   /* out (n, rows) = x (n, cols) . W^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, (int)j->rows, (int)j->cols, 1.0f, j->x, (int)j->cols,
                    j->wf, (int)j->cols, 0.0f, j->out, (int)j->rows);
}

/* dequantize the whole matrix (threaded over rows) and run sgemm on it */
static void run_deq_gemm(void *p) {
    job *j = p;
    const size_t rs = mend_row_size(j->type, j->cols);
#pragma omp parallel for num_threads(j->threads) schedule(static)
    for (int64_t r = 0; r < j->rows; r++)
        mend_dequantize_row(j->type, (const uint8_t *)j->w + (size_t)r * rs, j->tile + (size_t)r * j->cols, j->cols);
    job b = *j;
    b.wf = j->tile;
    run_blas(&b);
}

/* a weight matrix of type t from the f32 one: RTN for the 32-blocks, random
 * valid blocks (random quants and sub-scales, small fp16 scales) for K types */
static void *make_w(uint32_t t, const float *wf, int64_t rows, int64_t cols) {
    const size_t rs = mend_row_size(t, cols);
    uint8_t *w = aligned_alloc(64, ((size_t)rows * rs + 63) & ~(size_t)63);
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *row = w + (size_t)r * rs;
        const float *x = wf + (size_t)r * cols;
        switch (t) {
        case MEND_TYPE_F32: memcpy(row, x, (size_t)cols * 4); break;
        case MEND_TYPE_F16: for (int64_t j = 0; j < cols; j++) ((mend_half *)row)[j] = mend_f32_to_fp16(x[j]); break;
        case MEND_TYPE_Q4_0: quantize_row_q4_0_ref(x, (block_q4_0 *)row, cols); break;
        case MEND_TYPE_Q4_1: quantize_row_q4_1_ref(x, (block_q4_1 *)row, cols); break;
        case MEND_TYPE_Q5_0: quantize_row_q5_0_ref(x, (block_q5_0 *)row, cols); break;
        case MEND_TYPE_Q5_1: quantize_row_q5_1_ref(x, (block_q5_1 *)row, cols); break;
        case MEND_TYPE_Q8_0: quantize_row_q8_0_ref(x, (block_q8_0 *)row, cols); break;
        default: {
            const size_t bs = mend_type_get(t)->type_size;
            for (size_t i = 0; i < rs; i++) row[i] = (uint8_t)rnd();
            for (int64_t b = 0; b < cols / QK_K; b++) {
                uint8_t *blk = row + (size_t)b * bs;
                const mend_half d = mend_f32_to_fp16(0.002f), dm = mend_f32_to_fp16(0.001f);
                switch (t) {
                case MEND_TYPE_Q2_K: ((block_q2_K *)blk)->d = d; ((block_q2_K *)blk)->dmin = dm; break;
                case MEND_TYPE_Q3_K: ((block_q3_K *)blk)->d = d; break;
                case MEND_TYPE_Q4_K: ((block_q4_K *)blk)->d = d; ((block_q4_K *)blk)->dmin = dm; break;
                case MEND_TYPE_Q5_K: ((block_q5_K *)blk)->d = d; ((block_q5_K *)blk)->dmin = dm; break;
                case MEND_TYPE_Q6_K: ((block_q6_K *)blk)->d = d; break;
                default: break;
                }
            }
        }
        }
    }
    return w;
}

/* repacked (mend_qgemm) against per-row (mend_qmatmul_ex) products */
typedef struct {
    job j;
    const void *wp;   /* repacked weights */
} qg_job;

static void run_qgemm(void *p) {
    qg_job *q = p;
    const job *j = &q->j;
    if (mend_qgemm(j->out, (size_t)j->rows, j->x, (size_t)j->cols, j->n, q->wp, j->type, j->rows, j->cols, NULL, 0,
                   j->threads, j->level)) {
        fprintf(stderr, "qgemm: %s\n", mend_last_error());
        exit(1);
    }
}

static void *make_w(uint32_t t, const float *wf, int64_t rows, int64_t cols);
static int want_type(uint32_t t);

static void bench_qgemm(const char *ns_arg, int reps) {
    static const uint32_t types[] = {MEND_TYPE_Q4_0, MEND_TYPE_Q2_K, MEND_TYPE_Q3_K, MEND_TYPE_Q4_K, MEND_TYPE_Q6_K};
    static const int64_t shapes[][2] = {{576, 1536}, {640, 2048}, {1536, 576}};
    int ns[16], nn = 0;
    for (const char *p = ns_arg; *p && nn < 16;) {
        ns[nn++] = atoi(p);
        const char *e = strchr(p, ',');
        if (!e) break;
        p = e + 1;
    }
    /* variants: 0 avx2 without AVX-VNNI, 1 avx2 with it, 2 avx512 (VNNI) */
    static const char *const vname[3] = {"avx2-novnni", "avx2 (avx-vnni)", "avx512 (vnni)"};
    int have[3] = {mend_cpu_has_avx2(), mend_cpu_has_avx_vnni(), mend_cpu_has_avx512_vnni()};
    printf("#### Repacked (mend_qgemm) vs per-row (mend_qmatmul) products, 1 thread: GFLOP/s, best call of %d "
           "alternating rounds\n\n", reps);
    printf("| matrix | type | n | isa | per-row | repacked | ratio |\n|---|---|---:|---|---:|---:|---:|\n");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t rows = shapes[si][0], cols = shapes[si][1];
        int nmax = 1;
        for (int i = 0; i < nn; i++)
            if (ns[i] > nmax) nmax = ns[i];
        float *wf = malloc((size_t)rows * cols * sizeof(float));
        for (size_t i = 0; i < (size_t)rows * cols; i++) wf[i] = rndn() * 0.05f;
        float *x = malloc((size_t)nmax * cols * sizeof(float)), *out = malloc((size_t)nmax * rows * sizeof(float));
        for (size_t i = 0; i < (size_t)nmax * cols; i++) x[i] = rndn();
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            const uint32_t t = types[ti];
            if (!want_type(t) || !mend_qgemm_supported(t, rows, cols)) continue;
            void *w = make_w(t, wf, rows, cols);
            const size_t pb = mend_qgemm_packed_size(t, rows, cols);
            void *wp = aligned_alloc(64, (pb + 63) & ~(size_t)63);
            mend_qgemm_pack(wp, w, t, rows, cols, 0, rows / QGEMM_ROWS);
            for (int ni = 0; ni < nn; ni++) {
                const int n = ns[ni];
                const double flop = 2.0 * rows * cols * n;
                for (int v = 0; v < 3; v++) {
                    if (!have[v]) continue;
                    mend_cpu_set_max_level(v == 2 ? MEND_SIMD_AVX512 : MEND_SIMD_AVX2);
                    mend_cpu_disable_avx_vnni(v == 0);
                    qg_job q = {{out, x, n, w, t, rows, cols, 1, -1, NULL, NULL}, wp};
                    double a = 1e30, b = 1e30;
                    for (int r = 0; r < reps; r++) {
                        const double ta = time_it(run_q, &q.j), tb = time_it(run_qgemm, &q);
                        if (ta < a) a = ta;
                        if (tb < b) b = tb;
                    }
                    printf("| %lldx%lld | %s | %d | %s | %.1f | %.1f | %.2f |\n", (long long)rows, (long long)cols,
                           mend_type_name(t), n, vname[v], flop / a * 1e-9, flop / b * 1e-9, a / b);
                    fflush(stdout);
                }
                mend_cpu_disable_avx_vnni(0);
                mend_cpu_set_max_level(MEND_SIMD_AVX512);
            }
            free(w);
            free(wp);
        }
        free(wf); free(x); free(out);
    }
    printf("\n");
    mend_qgemm_release_scratch();
}

static const uint32_t k_types[] = {
    MEND_TYPE_Q4_0, MEND_TYPE_Q4_1, MEND_TYPE_Q5_0, MEND_TYPE_Q5_1, MEND_TYPE_Q8_0,
    MEND_TYPE_Q2_K, MEND_TYPE_Q3_K, MEND_TYPE_Q4_K, MEND_TYPE_Q5_K, MEND_TYPE_Q6_K,
    MEND_TYPE_F16, MEND_TYPE_F32,
};
#define N_TYPES (int)(sizeof k_types / sizeof k_types[0])

static const int64_t k_shapes[][2] = {{576, 1536}, {1536, 576}, {49152, 576}};
#define N_SHAPES 3

static const char *g_types;   /* comma-separated filter, or NULL */
static int want_type(uint32_t t) {
    if (!g_types) return 1;
    const char *name = mend_type_name(t), *p = g_types;
    const size_t len = strlen(name);
    while (*p) {
        const char *e = strchr(p, ',');
        const size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == len && !strncasecmp(p, name, l)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    int quick = 0, skip_table = 0, skip_cross = 0, max_level = -1, reps = 3;
    const char *qgemm_ns = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--skip-table")) skip_table = 1;
        else if (!strcmp(argv[i], "--skip-cross")) skip_cross = 1;
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) g_types = argv[++i];
        else if (!strcmp(argv[i], "--cputime")) g_cputime = 1;
        else if (!strcmp(argv[i], "--max-level") && i + 1 < argc) max_level = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--qgemm") && i + 1 < argc) qgemm_ns = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else { fprintf(stderr, "usage: %s [--quick] [--types a,b] [--skip-table] [--skip-cross] [--cputime] [--max-level 0|1|2] [--qgemm N,N.. [--reps R]]\n", argv[0]); return 2; }
    }
    if (quick) g_budget = 0.06;
    int maxlev = mend_cpu_simd_level();
    if (max_level >= 0 && max_level < maxlev) maxlev = max_level;
    const int maxth = g_cputime ? 1 : 2;
    printf("CPU: SIMD %s%s, %d cores; OpenBLAS %s (core %s); timed by %s\n\n", mend_simd_level_name(maxlev),
           maxlev == MEND_SIMD_AVX512 && mend_cpu_has_avx512_vnni() ? " + VNNI" : "", omp_get_num_procs(), OPENBLAS_VERSION,
           openblas_get_corename(),
           g_cputime ? "thread CPU time (1 thread)" : "wall clock");

    if (qgemm_ns) {
        bench_qgemm(qgemm_ns, reps < 1 ? 1 : reps);
        return 0;
    }
    const int ns[2] = {1, 64};
    for (int ni = 0; ni < 2 && !skip_table; ni++) {
        const int n = ns[ni];
        printf("#### n = %d: %s\n\n", n, n == 1 ? "GB/s of weights streamed (GFLOP/s)" : "GFLOP/s (GB/s of weights)");
        printf("| matrix | type | MiB | scalar 1T |");
        for (int l = 1; l <= maxlev; l++)
            for (int th = 1; th <= maxth; th++) printf(" %s %dT |", mend_simd_level_name(l), th);
        for (int th = 1; th <= maxth; th++) printf(" OpenBLAS f32 %dT |", th);
        printf("\n|---|---|---:|---:|");
        for (int l = 1; l <= maxlev; l++)
            for (int th = 1; th <= maxth; th++) printf("---:|");
        for (int th = 1; th <= maxth; th++) printf("---:|");
        printf("\n");
        for (int si = 0; si < N_SHAPES; si++) {
            const int64_t rows = k_shapes[si][0], cols = k_shapes[si][1];
            float *wf = malloc((size_t)rows * cols * sizeof(float));
            for (size_t i = 0; i < (size_t)rows * cols; i++) wf[i] = rndn() * 0.05f;
            float *x = malloc((size_t)n * cols * sizeof(float)), *out = malloc((size_t)n * rows * sizeof(float));
            float *deq = malloc((size_t)rows * cols * sizeof(float));
            for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = rndn();
            const double flop = 2.0 * rows * cols * n;
            for (int ti = 0; ti < N_TYPES; ti++) {
                const uint32_t t = k_types[ti];
                if (!want_type(t)) continue;
                const size_t rs = mend_row_size(t, cols);
                if (!rs) {
                    printf("| %lldx%lld | %s | | cols not a multiple of %lld |\n", (long long)rows, (long long)cols,
                           mend_type_name(t), (long long)mend_type_get(t)->blck_size);
                    continue;
                }
                void *w = make_w(t, wf, rows, cols);
                const double mib = (double)rs * rows / (1 << 20);
                for (int64_t r = 0; r < rows; r++) mend_dequantize_row(t, (uint8_t *)w + r * rs, deq + r * cols, cols);
                printf("| %lldx%lld | %s | %.2f |", (long long)rows, (long long)cols, mend_type_name(t), mib);
                job j = {out, x, n, w, t, rows, cols, 1, 0, deq, NULL};
                /* scalar: n = 1 only (it is 10-50x slower) */
                if (n == 1) {
                    const double s = time_it(run_q, &j);
                    printf(" %.1f (%.1f) |", rs * rows / s * 1e-9, flop / s * 1e-9);
                } else {
                    printf(" |");
                }
                for (int l = 1; l <= maxlev; l++)
                    for (int th = 1; th <= maxth; th++) {
                        j.level = l;
                        j.threads = th;
                        if (th > 1) use_pool(2);
                        const double s = time_it(run_q, &j);
                        if (n == 1) printf(" %.1f (%.1f) |", rs * rows / s * 1e-9, flop / s * 1e-9);
                        else printf(" %.1f (%.1f) |", flop / s * 1e-9, rs * rows / s * 1e-9);
                    }
                /* OpenBLAS on the dequantized matrix (f32 bytes streamed) */
                for (int th = 1; th <= maxth; th++) {
                    openblas_set_num_threads(th);
                    if (th > 1) use_pool(1);
                    const double s = time_it(run_blas, &j);
                    const double f32b = 4.0 * rows * cols;
                    if (n == 1) printf(" %.1f (%.1f) |", f32b / s * 1e-9, flop / s * 1e-9);
                    else printf(" %.1f (%.1f) |", flop / s * 1e-9, f32b / s * 1e-9);
                }
                printf("\n");
                fflush(stdout);
                free(w);
            }
            free(wf); free(x); free(out); free(deq);
        }
        printf("\n");
    }

    if (skip_cross) return 0;
    /* crossover: packed kernels vs dequantize-everything + sgemm, 2 threads */
    printf("#### Crossover, %d thread%s: ms per call, packed kernel (best level) / dequantize W to f32 + sgemm\n\n",
           maxth, maxth > 1 ? "s" : "");
    const int cn[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
    const int ncn = quick ? 7 : 10;
    printf("| matrix | type |");
    for (int i = 0; i < ncn; i++) printf(" n=%d |", cn[i]);
    printf(" crossover n |\n|---|---|");
    for (int i = 0; i < ncn; i++) printf("---|");
    printf("---|\n");
    const uint32_t ct[] = {MEND_TYPE_Q4_0, MEND_TYPE_Q4_1, MEND_TYPE_Q8_0, MEND_TYPE_Q4_K, MEND_TYPE_Q6_K};
    openblas_set_num_threads(maxth);
    for (int si = 0; si < 2; si++) {
        const int64_t rows = k_shapes[si][0], cols = k_shapes[si][1];
        float *wf = malloc((size_t)rows * cols * sizeof(float));
        for (size_t i = 0; i < (size_t)rows * cols; i++) wf[i] = rndn() * 0.05f;
        const int nmax = cn[ncn - 1];
        float *x = malloc((size_t)nmax * cols * sizeof(float)), *out = malloc((size_t)nmax * rows * sizeof(float));
        float *tile = malloc((size_t)rows * cols * sizeof(float));
        for (size_t i = 0; i < (size_t)nmax * cols; i++) x[i] = rndn();
        for (int ti = 0; ti < 5; ti++) {
            const uint32_t t = ct[ti];
            if (!mend_row_size(t, cols) || !want_type(t)) continue;
            void *w = make_w(t, wf, rows, cols);
            printf("| %lldx%lld | %s |", (long long)rows, (long long)cols, mend_type_name(t));
            int cross = -1;
            for (int i = 0; i < ncn; i++) {
                job j = {out, x, cn[i], w, t, rows, cols, maxth, maxlev, NULL, tile};
                if (maxth > 1) use_pool(2);
                const double a = time_it(run_q, &j);
                if (maxth > 1) use_pool(1);
                const double b = time_it(run_deq_gemm, &j);
                printf(" %.3f / %.3f |", a * 1e3, b * 1e3);
                if (cross < 0 && b < a) cross = cn[i];
            }
            if (cross < 0) printf(" > %d |\n", cn[ncn - 1]);
            else printf(" %d |\n", cross);
            fflush(stdout);
            free(w);
        }
        free(wf); free(x); free(out); free(tile);
    }
    mend_qmatmul_release_scratch();
    return 0;
}
