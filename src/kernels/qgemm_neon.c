/* NEON kernels on repacked weights (see qgemm.h): the body (qgemm_neon.inc)
 * is compiled twice, once for plain NEON (part of every AArch64 CPU) and
 * once for the dot-product extension (SDOT), the latter called only when
 * cpu.c reports it; the scalar twins are in qgemm.c and give the same
 * bits. */
#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(MEND_NO_SIMD)

#include <arm_neon.h>
#include <string.h>

#include "kernels/qgemm.h"
#include "kernels/quants.h"

#define ALWAYS static inline __attribute__((always_inline))

/* TBL indices: bytes 0..3 in every lane (add 4L for lane L) */
static const uint8_t k_bcast[16] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
/* byte rr of a 4-row run in each of row rr's 4 bytes (add 4k for rows 4k ..) */
static const uint8_t k_rowrep[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
/* q2_K: row rr's 4 table entries start at byte 4 rr */
static const uint8_t k_rowoff[16] = {0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12};

#define QG_T
#define QG(name) name##_neon
#define QG_DOT 0
#include "kernels/qgemm_neon.inc"
#undef QG_T
#undef QG
#undef QG_DOT

#if defined(__clang__)
#define QG_T __attribute__((target("dotprod")))
#else
#define QG_T __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#define QG(name) name##_neon_dot
#define QG_DOT 1
#include "kernels/qgemm_neon.inc"

#else
typedef int mend_qgemm_neon_unused;   /* ISO C forbids an empty unit */
#endif
