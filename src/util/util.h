/* Internal helpers shared by every module: errors, files, checked sizes,
 * half-precision conversion. */
#ifndef MEND_UTIL_H
#define MEND_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "mend.h"

#if defined(__GNUC__)
#define MEND_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MEND_PRINTF(a, b)
#endif

/* mend_set_error is public (mend.h). */
/* Prefix the current error sentence with "prefix: " (keeps the code). */
int mend_error_prefix(int code, const char *fmt, ...) MEND_PRINTF(2, 3);

/* ---- checked arithmetic ---- */
static inline int mend_mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline int mend_add_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* ---- files ---- */
typedef struct mend_map {
    const uint8_t *data;
    size_t size;
    int fd;
    int mapped;     /* 1: munmap on close, 0: free */
} mend_map;

/* Map a whole file read-only. Empty files map to data == NULL, size 0. */
int mend_map_file(mend_map *m, const char *path);
void mend_unmap(mend_map *m);
/* Drop the resident pages wholly inside [p, p + n) of a mapped file: they
 * leave the process's memory and are read back from the file if touched
 * again (the map is read-only and private, so nothing is lost). No-op for
 * buffers that are not maps or ranges outside the map. */
void mend_map_release(const mend_map *m, const void *p, size_t n);
/* mend_read_file, mend_write_file_atomic, mend_file_exists, mend_is_dir,
 * mend_mkdir_p, mend_path_join, mend_basename and mend_now are public
 * (mend/files.h). */
char *mend_strdup(const char *s);
char *mend_strndup(const char *s, size_t n);

/* ---- half floats ---- */
static inline float mend_fp16_to_f32(uint16_t h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const uint32_t exp_offset = 0xE0u << 23;
    union { uint32_t u; float f; } a, b, r;
    a.u = (two_w >> 4) + exp_offset;
    const float exp_scale = 0x1.0p-112f;
    float normalized = a.f * exp_scale;
    b.u = (two_w >> 17) | (126u << 23);
    float denormalized = b.f - 0.5f;
    const uint32_t denormalized_cutoff = 1u << 27;
    union { float f; uint32_t u; } n = {normalized}, d = {denormalized};
    r.u = sign | (two_w < denormalized_cutoff ? d.u : n.u);
    return r.f;
}
static inline uint16_t mend_f32_to_fp16(float f) {
    const float scale_to_inf = 0x1.0p+112f;
    const float scale_to_zero = 0x1.0p-110f;
    union { float f; uint32_t u; } in = {f}, base, bits_f;
    float fa = f < 0 ? -f : f;
    float b = (fa * scale_to_inf) * scale_to_zero;
    const uint32_t w = in.u;
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base.u = (bias >> 1) + 0x07800000u;
    base.f = base.f + b;
    bits_f.f = base.f;
    const uint32_t bits = bits_f.u;
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}
static inline float mend_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } r;
    r.u = (uint32_t)h << 16;
    return r.f;
}
static inline uint16_t mend_f32_to_bf16(float f) {
    union { float f; uint32_t u; } in = {f};
    if ((in.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((in.u >> 16) | 64); /* quiet NaN */
    return (uint16_t)((in.u + (0x7fffu + ((in.u >> 16) & 1))) >> 16);
}

/* Little-endian readers on possibly unaligned memory. */
static inline uint16_t mend_rd16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t mend_rd32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t mend_rd64(const void *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* ---- hashing (util/hash.c) ---- */
/* 64-bit hash of n bytes (four multiply-xor lanes over 8-byte words). */
uint64_t mend_hash_bytes(const void *data, size_t n, uint64_t seed);
/* FNV-1a (64-bit) of n bytes continuing from h, MEND_FNV1A_INIT to start:
 * the checkpoint identities of tune and compress, gguf's name index. */
#define MEND_FNV1A_INIT 0xcbf29ce484222325ull
uint64_t mend_fnv1a(uint64_t h, const void *p, size_t n);
/* Fold one 64-bit value into a running hash (order matters). */
uint64_t mend_hash_step(uint64_t h, uint64_t x);
/* Final avalanche of a running hash. */
uint64_t mend_hash_fmix(uint64_t h);

/* ---- UTF-8 (util/utf8.c) ---- */
/* Decode the code point that starts s[0..n): its length in bytes (1..4), or
 * 0 when s does not start a well-formed sequence (a stray continuation byte,
 * an overlong form, a surrogate, a value past U+10FFFF, or a sequence cut
 * off by n). */
int mend_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Encode cp (at most U+10FFFF) into out: the bytes written (1..4). */
int mend_utf8_encode(uint32_t cp, char out[4]);
/* Code points in a NUL-terminated UTF-8 string (Python's len()). */
size_t mend_utf8_len(const char *s);

/* Seeded random numbers: xoshiro256** seeded by splitmix64 (util/rng.c);
 * the same seed gives the same sequence on every machine. */
typedef struct mend_rng {
    uint64_t s[4];
} mend_rng;
void mend_rng_seed(mend_rng *r, uint64_t seed);
uint64_t mend_rng_next(mend_rng *r);
/* Uniform in [0, n), n > 0. */
uint64_t mend_rng_below(mend_rng *r, uint64_t n);
/* Uniform in [0, 1). */
double mend_rng_unit(mend_rng *r);
/* Standard normal. */
double mend_rng_normal(mend_rng *r);
/* A uniformly random permutation of a[0..n) in place (Fisher-Yates). */
void mend_rng_shuffle(int *a, int n, mend_rng *r);

#endif
