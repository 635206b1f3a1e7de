/* AVX2 kernels on repacked weights (see qgemm.h), for CPUs without AVX-512:
 * the body (qgemm_avx2.inc) is compiled twice, once for AVX2 + FMA + F16C
 * (vpmaddubsw / vpmaddwd for the byte products) and once more with AVX-VNNI
 * (vpdpbusd on ymm); the scalar twins are in qgemm.c and give the same bits.
 * Compiled for baseline x86-64 with per-function target attributes and only
 * called when cpu.c reports AVX2 (and AVX-VNNI for the _avxvnni variants).
 *
 * A 16-row group is two halves of 8 rows, one ymm register each. One or two
 * activation rows run over both halves at once (the weights are read once
 * from memory); q2_K, q3_K, q4_K and q6_K, whose unpacking costs more, run
 * wider tiles of 4 activation rows over one half at a time so that each
 * unpacked register serves more products. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "kernels/qgemm.h"
#include "kernels/quants.h"

#define ALWAYS static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

typedef void (*rows_fn)(int R, int64_t cols, const uint8_t *g, const uint8_t *a, size_t arow, float *out,
                        size_t ldo);

/* na activation rows in tiles of rmax rows (the last tile shorter) */
static void qgemm_avx2_tiles(rows_fn fn, int rmax, int64_t cols, const void *g, const void *va, size_t arow, int na,
                             float *out, size_t ldo) {
    const uint8_t *a = va;
    for (int i = 0; i < na; i += rmax) {
        const int R = na - i < rmax ? na - i : rmax;
        fn(R, cols, g, a + (size_t)i * arow, arow, out + (size_t)i * ldo, ldo);
    }
}

#define QG_T __attribute__((target("avx2,fma,f16c")))
#define QG(name) name##_avx2
#define QG_VNNI 0
#include "kernels/qgemm_avx2.inc"
#undef QG_T
#undef QG
#undef QG_VNNI

#define QG_T __attribute__((target("avx2,fma,f16c,avxvnni")))
#define QG(name) name##_avxvnni
#define QG_VNNI 1
#include "kernels/qgemm_avx2.inc"

#endif
