/* Seeded random numbers: xoshiro256** seeded by splitmix64 (util.h). */
#include <math.h>

#include "util/util.h"

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
void mend_rng_seed(mend_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&seed);
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
uint64_t mend_rng_next(mend_rng *r) {
    uint64_t *s = r->s;
    const uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}
uint64_t mend_rng_below(mend_rng *r, uint64_t n) {   /* rejection */
    const uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = mend_rng_next(r);
    while (x >= lim);
    return x % n;
}
double mend_rng_unit(mend_rng *r) { return (double)(mend_rng_next(r) >> 11) * 0x1.0p-53; }
double mend_rng_normal(mend_rng *r) {   /* Box-Muller, one value per call */
    double u = mend_rng_unit(r), v = mend_rng_unit(r);
    if (u < 1e-300) u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}
void mend_rng_shuffle(int *a, int n, mend_rng *r) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)mend_rng_below(r, (uint64_t)i + 1), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

