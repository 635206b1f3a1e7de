/* Run-time CPU feature detection for the SIMD kernels.
 *
 * The library is compiled for baseline x86-64 (or baseline ARMv8-A); kernels
 * built with target attributes are chosen here at run time, so one binary
 * runs on any x86-64 or AArch64 machine, and on other architectures (where
 * every query answers 0). */
#ifndef MEND_CPU_H
#define MEND_CPU_H

/* AVX2 together with FMA and F16C (the set every AVX2 kernel may use). */
int mend_cpu_has_avx2(void);
/* AVX-512 F + BW + VL. */
int mend_cpu_has_avx512(void);
/* AVX-512 VNNI (int8 dot products), on top of mend_cpu_has_avx512(). */
int mend_cpu_has_avx512_vnni(void);
/* AVX-512 BF16 (bf16 dot products), on top of mend_cpu_has_avx512(). */
int mend_cpu_has_avx512_bf16(void);
/* AVX-VNNI (vpdpbusd on 256-bit registers, VEX-encoded), on top of
 * mend_cpu_has_avx2(); part of the AVX2 level, so an AVX2 cap keeps it. */
int mend_cpu_has_avx_vnni(void);
/* When on is non-zero mend_cpu_has_avx_vnni() answers 0 (the AVX2 level of
 * a CPU without AVX-VNNI, for tests and measurements; mend_set_isa's
 * "avx2-novnni"); 0 restores detection. */
void mend_cpu_disable_avx_vnni(int on);

/* AArch64: NEON (Advanced SIMD, part of every AArch64 CPU) and the
 * dot-product extension on top of it (SDOT, vdotq_s32: optional from
 * ARMv8.2, standard from ARMv8.4; read from the kernel's HWCAP_ASIMDDP on
 * Linux, hw.optional.arm.FEAT_DotProd on macOS). The extension is part of
 * the NEON level, as AVX-VNNI is of the AVX2 one. Both 0 on x86-64. */
int mend_cpu_has_neon(void);
int mend_cpu_has_neon_dotprod(void);
/* When on is non-zero mend_cpu_has_neon_dotprod() answers 0 (the NEON level
 * of a CPU without the extension, for tests; mend_set_isa's
 * "neon-nodotprod"); 0 restores detection. */
void mend_cpu_disable_dotprod(int on);

/* When on is non-zero every query above answers 0, so dispatchers take their
 * scalar paths; 0 restores what detection and the cap below allow. Meant for
 * tests and A/B measurements (a test that forces scalar and then releases it
 * returns to the level it was run at, MEND_ISA included). */
void mend_cpu_force_scalar(int on);
int mend_cpu_forced_scalar(void);

/* The widest SIMD level the dispatchers may use right now. Levels are rungs
 * of one ladder per architecture: 0 is the portable C, 1 the first SIMD set
 * (AVX2 on x86-64, NEON on AArch64), 2 the wider one (AVX-512; AArch64 has
 * none), so comparisons such as level >= MEND_SIMD_AVX2 keep their meaning
 * inside each architecture's code. */
enum mend_simd_level {
    MEND_SIMD_SCALAR = 0,
    MEND_SIMD_AVX2 = 1,
    MEND_SIMD_NEON = 1,
    MEND_SIMD_AVX512 = 2
};
int mend_cpu_simd_level(void);
/* The widest level this CPU has, whatever the cap. */
int mend_cpu_detected_level(void);
/* Cap the level every query answers for (a level above the cap reads as
 * absent: under an AVX2 cap mend_cpu_has_avx512_vnni() answers 0 too);
 * MEND_SIMD_AVX512 lifts the cap. Returns the level now in effect, the
 * smaller of the cap and mend_cpu_detected_level(). Process-wide; set it
 * before starting work, not while kernels run on other threads. */
int mend_cpu_set_max_level(int level);
/* The smaller of the cap and the detected level (ignores force_scalar). */
int mend_cpu_max_level(void);
/* Name of a level on this architecture: "scalar", "avx2", "avx512"
 * (x86-64); "scalar", "neon" (AArch64). */
const char *mend_simd_level_name(int level);

#endif
