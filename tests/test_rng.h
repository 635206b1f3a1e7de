/* A small deterministic generator for the kernel tests (64-bit LCG, the
 * top bits). A test that wants its own stream defines TEST_RNG_SEED before
 * including this header. */
#ifndef MEND_TEST_RNG_H
#define MEND_TEST_RNG_H

#include <stdint.h>

#ifndef TEST_RNG_SEED
#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#endif

static uint64_t rng_state = TEST_RNG_SEED;
static inline uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}
static inline int rndi(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }
static inline float rndu(void) { return (rnd() >> 8) * (1.0f / 16777216.0f); }
/* approximately normal: sum of 4 uniforms */
static inline float rndn(void) { return (rndu() + rndu() + rndu() + rndu() - 2.0f) * 1.7320508f; }

#endif
