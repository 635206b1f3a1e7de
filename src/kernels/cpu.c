/* Run-time CPU feature detection (see cpu.h): on x86-64 from CPUID, with
 * XGETBV to make sure the OS saves the wide registers; on AArch64 from what
 * the OS reports (getauxval on Linux, sysctl on macOS). A feature reported
 * here is usable. */
#include "kernels/cpu.h"

#include <string.h>

#include "mend.h"
#include "util/util.h"

#include <stdatomic.h>
#include <stdint.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>
#define MEND_X86 1
#endif

#if defined(__aarch64__) && defined(__GNUC__)
#define MEND_ARM64 1
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)   /* the kernel's bit for SDOT / UDOT */
#endif
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#endif

/* The levels of this architecture run from scalar to LEVEL_TOP. */
#ifdef MEND_ARM64
#define LEVEL_TOP MEND_SIMD_NEON
#define LEVEL_NAMES "scalar or neon, or neon-dotprod / neon-nodotprod"
#else
#define LEVEL_TOP MEND_SIMD_AVX512
#define LEVEL_NAMES "scalar, avx2 or avx512, or avx2-novnni"
#endif

#define F_AVX2     (1u << 0)
#define F_AVX512   (1u << 1)
#define F_VNNI     (1u << 2)
#define F_BF16     (1u << 3)
#define F_AVXVNNI  (1u << 4)    /* AVX-VNNI: vpdpbusd on ymm, VEX-encoded (no AVX-512) */
#define F_NEON     (1u << 5)
#define F_DOTPROD  (1u << 6)    /* SDOT / UDOT */
#define F_DETECTED (1u << 31)

static _Atomic unsigned g_features;     /* 0 until first detection */
static _Atomic int g_force_scalar;
static _Atomic int g_max_level = LEVEL_TOP;   /* the cap (mend_cpu_set_max_level) */
static _Atomic unsigned g_disabled;           /* mend_cpu_disable_avx_vnni / _dotprod */

#ifdef MEND_X86
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}
#endif

#ifdef MEND_ARM64
static int arm64_dotprod(void) {
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
    int v = 0;
    size_t len = sizeof v;
    return sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &len, NULL, 0) == 0 && v;
#else
    return 0;
#endif
}
#endif

static unsigned detect(void) {
    unsigned f = 0;
#ifdef MEND_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return F_DETECTED;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return F_DETECTED;
    const uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return F_DETECTED;               /* XMM + YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return F_DETECTED;
    const unsigned max7 = a;
    const int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1,
              avx512vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
    if (avx2 && fma && f16c) f |= F_AVX2;
    if ((f & F_AVX2) && avx512f && avx512bw && avx512vl && (xcr0 & 0xE6) == 0xE6)
        f |= F_AVX512;                                          /* + opmask, ZMM state */
    if ((f & F_AVX512) && vnni) f |= F_VNNI;
    if (max7 >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) {
        if ((f & F_AVX512) && ((a >> 5) & 1)) f |= F_BF16;
        if ((f & F_AVX2) && ((a >> 4) & 1)) f |= F_AVXVNNI;
    }
#elif defined(MEND_ARM64)
    f |= F_NEON;   /* Advanced SIMD is mandatory on AArch64 */
    if (arm64_dotprod()) f |= F_DOTPROD;
#endif
    return f | F_DETECTED;
}

static unsigned detected(void) {
    unsigned f = atomic_load_explicit(&g_features, memory_order_relaxed);
    if (!f) {   /* every thread computes the same value, so racing is harmless */
        f = detect();
        atomic_store_explicit(&g_features, f, memory_order_relaxed);
    }
    return f;
}

static int level_of(unsigned f) {
    if (f & F_AVX512) return MEND_SIMD_AVX512;
    if (f & F_AVX2) return MEND_SIMD_AVX2;
    if (f & F_NEON) return MEND_SIMD_NEON;
    return MEND_SIMD_SCALAR;
}

/* The detected features less those above the cap (VNNI and BF16 belong to
 * the AVX-512 level, AVX-VNNI to the AVX2 level, dotprod to the NEON
 * level), less the disabled ones, and all of them while scalar is forced. */
static unsigned features(void) {
    if (atomic_load_explicit(&g_force_scalar, memory_order_relaxed)) return 0;
    unsigned f = detected();
    const int cap = atomic_load_explicit(&g_max_level, memory_order_relaxed);
    if (cap < MEND_SIMD_AVX512) f &= ~(F_AVX512 | F_VNNI | F_BF16);
    if (cap < MEND_SIMD_AVX2) f &= ~(F_AVX2 | F_AVXVNNI | F_NEON | F_DOTPROD);
    return f & ~atomic_load_explicit(&g_disabled, memory_order_relaxed);
}

int mend_cpu_has_avx2(void) { return (features() & F_AVX2) != 0; }
int mend_cpu_has_avx512(void) { return (features() & F_AVX512) != 0; }
int mend_cpu_has_avx512_vnni(void) { return (features() & F_VNNI) != 0; }
int mend_cpu_has_avx512_bf16(void) { return (features() & F_BF16) != 0; }
int mend_cpu_has_avx_vnni(void) { return (features() & F_AVXVNNI) != 0; }
int mend_cpu_has_neon(void) { return (features() & F_NEON) != 0; }
int mend_cpu_has_neon_dotprod(void) { return (features() & F_DOTPROD) != 0; }

static void set_disabled(unsigned bit, int on) {
    if (on) atomic_fetch_or_explicit(&g_disabled, bit, memory_order_relaxed);
    else atomic_fetch_and_explicit(&g_disabled, ~bit, memory_order_relaxed);
}
void mend_cpu_disable_avx_vnni(int on) { set_disabled(F_AVXVNNI, on); }
void mend_cpu_disable_dotprod(int on) { set_disabled(F_DOTPROD, on); }

void mend_cpu_force_scalar(int on) {
    atomic_store_explicit(&g_force_scalar, on ? 1 : 0, memory_order_relaxed);
}
int mend_cpu_forced_scalar(void) {
    return atomic_load_explicit(&g_force_scalar, memory_order_relaxed);
}

int mend_cpu_simd_level(void) { return level_of(features()); }

int mend_cpu_detected_level(void) { return level_of(detected()); }

int mend_cpu_set_max_level(int level) {
    if (level < MEND_SIMD_SCALAR) level = MEND_SIMD_SCALAR;
    if (level > LEVEL_TOP) level = LEVEL_TOP;
    atomic_store_explicit(&g_max_level, level, memory_order_relaxed);
    const int have = mend_cpu_detected_level();
    return level < have ? level : have;
}

int mend_cpu_max_level(void) {
    const int cap = atomic_load_explicit(&g_max_level, memory_order_relaxed), have = mend_cpu_detected_level();
    return cap < have ? cap : have;
}

const char *mend_simd_level_name(int level) {
    switch (level) {
#ifdef MEND_ARM64
    case MEND_SIMD_NEON: return "neon";
#else
    case MEND_SIMD_AVX512: return "avx512";
    case MEND_SIMD_AVX2: return "avx2";
#endif
    default: return "scalar";
    }
}

/* ---- public: mend_set_isa / mend_isa (mend.h) ---------------------------- */

int mend_set_isa(const char *name) {
    int level = LEVEL_TOP;
    /* a level less (or, for neon-dotprod, requiring) its optional extension:
     * "avx2-novnni", the AVX2 level of a CPU without AVX-VNNI;
     * "neon-nodotprod", the NEON level of a CPU without the dot product */
    unsigned disable = 0, require = 0;
#ifdef MEND_ARM64
    if (name && !strcmp(name, "neon-nodotprod")) { name = "neon"; disable = F_DOTPROD; }
    else if (name && !strcmp(name, "neon-dotprod")) { name = "neon"; require = F_DOTPROD; }
#else
    if (name && !strcmp(name, "avx2-novnni")) { name = "avx2"; disable = F_AVXVNNI; }
#endif
    if (name && *name) {
        for (level = MEND_SIMD_SCALAR; level <= LEVEL_TOP; level++)
            if (!strcmp(name, mend_simd_level_name(level))) break;
        if (level > LEVEL_TOP)
            return mend_set_error(MEND_EINVAL, "instruction set '%s' is not known (expected " LEVEL_NAMES ")", name);
        if (level > mend_cpu_detected_level())
            return mend_set_error(MEND_EUNSUPPORTED, "instruction set %s is not available on this CPU (it has %s)",
                                  name, mend_simd_level_name(mend_cpu_detected_level()));
        if (require & ~detected())
            return mend_set_error(MEND_EUNSUPPORTED, "instruction set %s-dotprod is not available on this CPU "
                                  "(it has %s without the dot-product extension)", name, name);
    }
    mend_cpu_set_max_level(level);
    set_disabled(F_AVXVNNI | F_DOTPROD, 0);
    set_disabled(disable, 1);
    return MEND_OK;
}

const char *mend_isa(void) { return mend_simd_level_name(mend_cpu_simd_level()); }

const char *mend_isa_detected(void) { return mend_simd_level_name(mend_cpu_detected_level()); }

const char *mend_isa_describe(void) {
    switch (mend_cpu_simd_level()) {
#ifdef MEND_ARM64
    case MEND_SIMD_NEON: return mend_cpu_has_neon_dotprod() ? "neon (dotprod)" : "neon";
#else
    case MEND_SIMD_AVX512:
        if (mend_cpu_has_avx512_vnni())
            return mend_cpu_has_avx512_bf16() ? "avx512 (vnni, bf16)" : "avx512 (vnni)";
        return mend_cpu_has_avx512_bf16() ? "avx512 (bf16)" : "avx512";
    case MEND_SIMD_AVX2: return mend_cpu_has_avx_vnni() ? "avx2 (fma, f16c, avx-vnni)" : "avx2 (fma, f16c)";
#endif
    default: return "scalar";
    }
}
