/* 64-bit non-cryptographic hashing of bytes (util.h): model fingerprints and
 * compression recipes. Not a defence against someone forging a collision;
 * it tells files apart that differ by accident (another compression, a
 * retrained model, one flipped byte).
 *
 *   word step    lane = rotl((lane ^ w) * K1, 29)      (w: 8 bytes, little endian)
 *   bytes        four lanes (seed + i*K2) take words 0, 1, 2, 3, 4, ... in turn;
 *                a last partial word is zero-padded; then
 *                h = seed ^ len, h = step(h, lane_i) for i = 0..3, return fmix(h)
 *   step(h, x)   rotl((h ^ x) * K1, 29) * K2
 *   fmix         murmur3's 64-bit finalizer
 * Every step is a bijection of the lane for a fixed word and of the word for
 * a fixed lane, so any change to one word changes the result. */
#include "util/util.h"

#define K1 0x9e3779b97f4a7c15ull
#define K2 0xc2b2ae3d27d4eb4full

static inline uint64_t rotl29(uint64_t x) { return (x << 29) | (x >> 35); }
static inline uint64_t lane(uint64_t v, uint64_t w) { return rotl29((v ^ w) * K1); }

uint64_t mend_hash_step(uint64_t h, uint64_t x) { return lane(h, x) * K2; }

uint64_t mend_hash_fmix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

uint64_t mend_hash_bytes(const void *data, size_t n, uint64_t seed) {
    const uint8_t *p = data;
    uint64_t v[4] = {seed, seed + K2, seed + 2 * K2, seed + 3 * K2};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        v[0] = lane(v[0], mend_rd64(p + i));
        v[1] = lane(v[1], mend_rd64(p + i + 8));
        v[2] = lane(v[2], mend_rd64(p + i + 16));
        v[3] = lane(v[3], mend_rd64(p + i + 24));
    }
    for (int k = 0; i < n; i += 8, k++) {
        uint64_t w = 0;
        memcpy(&w, p + i, n - i < 8 ? n - i : 8);
        v[k] = lane(v[k], w);
    }
    uint64_t h = seed ^ (uint64_t)n;
    for (int k = 0; k < 4; k++) h = mend_hash_step(h, v[k]);
    return mend_hash_fmix(h);
}

void mend_fp_hex(uint64_t x, char out[17]) {
    static const char D[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, x >>= 4) out[i] = D[x & 15];
    out[16] = 0;
}

int mend_fp_parse(const char *s, uint64_t *out) {
    uint64_t x = 0;
    int i = 0;
    for (; s && i < 16; i++) {
        const char c = s[i];
        const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) break;
        x = x << 4 | (uint64_t)d;
    }
    if (i < 16 || s[16])
        return mend_set_error(MEND_EFORMAT, "\"%.40s\" is not a fingerprint (16 lowercase hex digits)", s ? s : "(null)");
    *out = x;
    return 0;
}

uint64_t mend_fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}
