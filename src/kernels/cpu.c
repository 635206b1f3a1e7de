/* Run-time CPU feature detection (see cpu.h). The compiler's cpu model
 * (__builtin_cpu_supports) already checks that the OS saves the wide
 * registers (XCR0), so a feature reported here is usable. */
#include "kernels/cpu.h"

#include <stdatomic.h>

#define F_AVX2     (1u << 0)
#define F_AVX512   (1u << 1)
#define F_VNNI     (1u << 2)
#define F_BF16     (1u << 3)
#define F_DETECTED (1u << 31)

static _Atomic unsigned g_features;     /* 0 until first detection */
static _Atomic int g_force_scalar;

static unsigned detect(void) {
    unsigned f = 0;
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("f16c"))
        f |= F_AVX2;
    if ((f & F_AVX2) && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        f |= F_AVX512;
    if ((f & F_AVX512) && __builtin_cpu_supports("avx512vnni"))
        f |= F_VNNI;
#if (defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11) || (defined(__clang__) && __clang_major__ >= 12)
    if ((f & F_AVX512) && __builtin_cpu_supports("avx512bf16"))
        f |= F_BF16;
#endif
#endif
    return f | F_DETECTED;
}

static unsigned features(void) {
    if (atomic_load_explicit(&g_force_scalar, memory_order_relaxed)) return 0;
    unsigned f = atomic_load_explicit(&g_features, memory_order_relaxed);
    if (!f) {   /* every thread computes the same value, so racing is harmless */
        f = detect();
        atomic_store_explicit(&g_features, f, memory_order_relaxed);
    }
    return f;
}

int mend_cpu_has_avx2(void) { return (features() & F_AVX2) != 0; }
int mend_cpu_has_avx512(void) { return (features() & F_AVX512) != 0; }
int mend_cpu_has_avx512_vnni(void) { return (features() & F_VNNI) != 0; }
int mend_cpu_has_avx512_bf16(void) { return (features() & F_BF16) != 0; }

void mend_cpu_force_scalar(int on) {
    atomic_store_explicit(&g_force_scalar, on ? 1 : 0, memory_order_relaxed);
}
int mend_cpu_forced_scalar(void) {
    return atomic_load_explicit(&g_force_scalar, memory_order_relaxed);
}

int mend_cpu_simd_level(void) {
    unsigned f = features();
    if (f & F_AVX512) return MEND_SIMD_AVX512;
    if (f & F_AVX2) return MEND_SIMD_AVX2;
    return MEND_SIMD_SCALAR;
}

const char *mend_simd_level_name(int level) {
    switch (level) {
    case MEND_SIMD_AVX512: return "avx512";
    case MEND_SIMD_AVX2: return "avx2";
    default: return "scalar";
    }
}
