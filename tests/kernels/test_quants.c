/* ggml block formats: type traits, hand-built blocks of every type with
 * expected floats computed here from the format description, golden fixtures
 * from the gguf python package (tests/fixtures/quants), quantizer round-trip
 * bounds, and SIMD kernels against their scalar _ref twins. */
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "test.h"
#include "kernels/cpu.h"
#include "kernels/quants.h"
#include "kernels/quants_simd.h"
#include "util/util.h"

#include "test_rng.h"
/* a sane fp16 scale: |v| in [2^-14, 2^2], random sign */
static uint16_t rnd_half(void) {
    float v = ldexpf(1.0f + rndu(), rndi(-14, 1));
    if (rnd() & 1) v = -v;
    return mend_f32_to_fp16(v);
}

static int same_float(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    uint32_t ua, ub;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    return ua == ub;
}

/* compare n floats bit for bit (NaN matches NaN); report the first miss */
static void check_same(const char *what, const float *got, const float *want, int64_t n) {
    int64_t bad = -1, nbad = 0;
    for (int64_t i = 0; i < n; i++)
        if (!same_float(got[i], want[i])) { if (bad < 0) bad = i; nbad++; }
    CHECK_MSG(nbad == 0, "%s: %lld of %lld differ, first at %lld: %.9g vs %.9g", what,
              (long long)nbad, (long long)n, (long long)bad, bad >= 0 ? got[bad] : 0.0, bad >= 0 ? want[bad] : 0.0);
}

/* compare against expected values computed in double */
static void check_close(const char *what, const float *got, const double *want, int64_t n) {
    int64_t bad = -1, nbad = 0;
    for (int64_t i = 0; i < n; i++) {
        double tol = 1e-6 * fabs(want[i]) + 1e-30;
        if (!(fabs(got[i] - want[i]) <= tol)) { if (bad < 0) bad = i; nbad++; }
    }
    CHECK_MSG(nbad == 0, "%s: %lld of %lld wrong, first at %lld: %.9g vs %.9g", what,
              (long long)nbad, (long long)n, (long long)bad, bad >= 0 ? got[bad] : 0.0, bad >= 0 ? want[bad] : 0.0);
}

/* dequantize through the dispatcher, once scalar and once with SIMD */
static void deq_both(uint32_t type, const void *src, float *y, int64_t n, const char *what, const double *want) {
    char msg[128];
    for (int pass = 0; pass < 2; pass++) {
        mend_cpu_force_scalar(pass == 0);
        for (int64_t i = 0; i < n; i++) y[i] = -12345.0f;
        CHECK_OK(mend_dequantize_row(type, src, y, n));
        snprintf(msg, sizeof msg, "%s (%s)", what, pass == 0 ? "scalar" : mend_simd_level_name(mend_cpu_simd_level()));
        check_close(msg, y, want, n);
    }
    mend_cpu_force_scalar(0);
}

/* ------------------------------------------------------------------------ */

static void test_traits(void) {
    static const struct { uint32_t id; const char *name; int64_t bs; size_t ts; } want[] = {
        {MEND_TYPE_F32, "f32", 1, 4},        {MEND_TYPE_F16, "f16", 1, 2},
        {MEND_TYPE_BF16, "bf16", 1, 2},      {MEND_TYPE_Q4_0, "q4_0", 32, 18},
        {MEND_TYPE_Q4_1, "q4_1", 32, 20},    {MEND_TYPE_Q5_0, "q5_0", 32, 22},
        {MEND_TYPE_Q5_1, "q5_1", 32, 24},    {MEND_TYPE_Q8_0, "q8_0", 32, 34},
        {MEND_TYPE_Q8_1, "q8_1", 32, 36},    {MEND_TYPE_Q2_K, "q2_K", 256, 84},
        {MEND_TYPE_Q3_K, "q3_K", 256, 110},  {MEND_TYPE_Q4_K, "q4_K", 256, 144},
        {MEND_TYPE_Q5_K, "q5_K", 256, 176},  {MEND_TYPE_Q6_K, "q6_K", 256, 210},
        {MEND_TYPE_Q8_K, "q8_K", 256, 292},  {20, "iq4_nl", 32, 18},
        {26, "i32", 1, 4},                   {39, "mxfp4", 32, 17},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const mend_type_traits *t = mend_type_get(want[i].id);
        CHECK_MSG(t != NULL, "type %u", want[i].id);
        if (!t) continue;
        CHECK_MSG(strcmp(t->name, want[i].name) == 0, "type %u name %s", want[i].id, t->name);
        CHECK_MSG(t->blck_size == want[i].bs && t->type_size == want[i].ts, "type %s: %lld/%zu",
                  want[i].name, (long long)t->blck_size, t->type_size);
        CHECK(strcmp(mend_type_name(want[i].id), want[i].name) == 0);
        CHECK(mend_type_from_name(want[i].name) == (int)want[i].id);
    }
    /* io/types.c writes the block sizes out; they must be the structs' */
    static const struct { uint32_t id; size_t size; } blocks[] = {
        {MEND_TYPE_Q4_0, sizeof(block_q4_0)}, {MEND_TYPE_Q4_1, sizeof(block_q4_1)},
        {MEND_TYPE_Q5_0, sizeof(block_q5_0)}, {MEND_TYPE_Q5_1, sizeof(block_q5_1)},
        {MEND_TYPE_Q8_0, sizeof(block_q8_0)}, {MEND_TYPE_Q8_1, sizeof(block_q8_1)},
        {MEND_TYPE_Q2_K, sizeof(block_q2_K)}, {MEND_TYPE_Q3_K, sizeof(block_q3_K)},
        {MEND_TYPE_Q4_K, sizeof(block_q4_K)}, {MEND_TYPE_Q5_K, sizeof(block_q5_K)},
        {MEND_TYPE_Q6_K, sizeof(block_q6_K)}, {MEND_TYPE_Q8_K, sizeof(block_q8_K)},
    };
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++)
        CHECK_MSG(mend_type_get(blocks[i].id)->type_size == blocks[i].size, "type %s", mend_type_name(blocks[i].id));
    CHECK(mend_type_from_name("Q4_K") == MEND_TYPE_Q4_K);
    CHECK(mend_type_from_name("Q8_0") == MEND_TYPE_Q8_0);
    CHECK(mend_type_from_name("BF16") == MEND_TYPE_BF16);
    CHECK(mend_type_from_name("q4") == -1);
    CHECK(mend_type_from_name("q4_0x") == -1);
    CHECK(mend_type_from_name("") == -1);
    CHECK(mend_type_from_name(NULL) == -1);
    /* removed / never-assigned ids and out-of-range ids */
    const uint32_t unknown[] = {4, 5, 31, 32, 33, 36, 40, 41, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        CHECK_MSG(mend_type_get(unknown[i]) == NULL, "id %u", unknown[i]);
        CHECK(strcmp(mend_type_name(unknown[i]), "unknown") == 0);
        CHECK(mend_row_size(unknown[i], 32) == 0);
    }

    CHECK(mend_row_size(MEND_TYPE_Q4_0, 64) == 36);
    CHECK(mend_row_size(MEND_TYPE_Q4_1, 576) == 18 * 20);
    CHECK(mend_row_size(MEND_TYPE_Q6_K, 512) == 420);
    CHECK(mend_row_size(MEND_TYPE_F32, 3) == 12);
    CHECK(mend_row_size(MEND_TYPE_Q4_0, 33) == 0);
    CHECK(mend_row_size(MEND_TYPE_Q4_K, 128) == 0);
    CHECK(mend_row_size(MEND_TYPE_Q8_0, -32) == 0);
    CHECK(mend_row_size(MEND_TYPE_Q8_0, 0) == 0);
    CHECK(mend_row_size(MEND_TYPE_F32, INT64_MAX) == 0);          /* overflows size_t */
    CHECK(mend_row_size(28 /* f64 */, INT64_MAX / 2) == 0);
}

static void test_dispatch_errors(void) {
    float y[64];
    uint8_t blk[64] = {0};
    CHECK_ERR(mend_dequantize_row(1000, blk, y, 32), MEND_EUNSUPPORTED, "1000");
    CHECK_ERR(mend_dequantize_row(4, blk, y, 32), MEND_EUNSUPPORTED, "4");
    CHECK_ERR(mend_dequantize_row(16 /* iq2_xxs */, blk, y, 256), MEND_EUNSUPPORTED, "iq2_xxs");
    CHECK_ERR(mend_dequantize_row(MEND_TYPE_Q4_0, blk, y, 33), MEND_EINVAL, "q4_0 block size 32");
    CHECK_ERR(mend_dequantize_row(MEND_TYPE_Q4_0, blk, y, -32), MEND_EINVAL, "-32");
    CHECK_ERR(mend_dequantize_row(MEND_TYPE_Q8_0, NULL, y, 32), MEND_EINVAL, "source");
    CHECK_ERR(mend_dequantize_row(MEND_TYPE_Q8_0, blk, NULL, 32), MEND_EINVAL, "destination");
    CHECK_OK(mend_dequantize_row(MEND_TYPE_Q8_0, NULL, NULL, 0));
}

#if defined(__aarch64__)
#define ISA_NAMES "scalar or neon"
#define has_first_level mend_cpu_has_neon
#else
#define ISA_NAMES "scalar, avx2 or avx512"
#define has_first_level mend_cpu_has_avx2
#endif

/* Detection: on AArch64 NEON is the one SIMD level (part of every CPU) and
 * the dot-product extension rides on it; on x86-64 AVX-512 implies AVX2.
 * No feature of the other architecture is ever reported, and forcing scalar
 * hides every feature. */
static void test_cpu(void) {
    const int lvl = mend_cpu_simd_level();
#if defined(__aarch64__)
    const int dp = mend_cpu_has_neon_dotprod();
    printf("cpu: %s%s\n", mend_simd_level_name(lvl), dp ? " +dotprod" : "");
    CHECK(mend_cpu_detected_level() == MEND_SIMD_NEON);
    CHECK(mend_cpu_has_neon() == (lvl == MEND_SIMD_NEON) && (!dp || mend_cpu_has_neon()));
    CHECK(!mend_cpu_has_avx2() && !mend_cpu_has_avx512() && !mend_cpu_has_avx512_vnni() &&
          !mend_cpu_has_avx512_bf16() && !mend_cpu_has_avx_vnni());
    CHECK(strcmp(mend_simd_level_name(MEND_SIMD_NEON), "neon") == 0);
#else
    printf("cpu: %s%s%s\n", mend_simd_level_name(lvl), mend_cpu_has_avx512_vnni() ? " +vnni" : "",
           mend_cpu_has_avx512_bf16() ? " +bf16" : "");
    CHECK(lvl != MEND_SIMD_AVX512 || (mend_cpu_has_avx512() && mend_cpu_has_avx2()));
    CHECK(!mend_cpu_has_avx512_vnni() || mend_cpu_has_avx512());
    CHECK(!mend_cpu_has_neon() && !mend_cpu_has_neon_dotprod());
    CHECK(strcmp(mend_simd_level_name(MEND_SIMD_AVX2), "avx2") == 0);
#endif
    mend_cpu_force_scalar(1);
    CHECK(mend_cpu_forced_scalar());
    CHECK(mend_cpu_simd_level() == MEND_SIMD_SCALAR);
    CHECK(!mend_cpu_has_avx2() && !mend_cpu_has_avx512() && !mend_cpu_has_avx512_vnni() && !mend_cpu_has_avx512_bf16());
    CHECK(!mend_cpu_has_neon() && !mend_cpu_has_neon_dotprod());
    mend_cpu_force_scalar(0);
    CHECK(mend_cpu_simd_level() == lvl);
}

/* mend_set_isa caps what every query answers (MEND_ISA in the CLI and the
 * tests): a level above the cap reads as absent, VNNI / BF16 included;
 * forcing scalar and releasing it returns to the cap, not to detection; a
 * name that is unknown or above the CPU is refused and changes nothing.
 * AVX-VNNI belongs to the AVX2 level: gone below it, and "avx2-novnni"
 * removes it (and only it) until the next mend_set_isa; the same holds for
 * the dot-product extension at the NEON level ("neon-nodotprod"), and
 * "neon-dotprod" is refused on a CPU without it. The test ends on the
 * level MEND_ISA chose. */
static void test_isa_cap(void) {
    const int start = mend_cpu_simd_level(), have = mend_cpu_detected_level();
    CHECK(strcmp(mend_isa(), mend_simd_level_name(start)) == 0);
    CHECK(start <= have && strcmp(mend_isa_detected(), mend_simd_level_name(have)) == 0);
    CHECK_ERR(mend_set_isa("avx1024"), MEND_EINVAL, "'avx1024' is not known");
    CHECK_ERR(mend_set_isa("AVX2"), MEND_EINVAL, ISA_NAMES);
    CHECK(mend_cpu_simd_level() == start);
#if defined(__aarch64__)
    CHECK_ERR(mend_set_isa("avx2"), MEND_EINVAL, "'avx2' is not known");
    CHECK_ERR(mend_set_isa("avx2-novnni"), MEND_EINVAL, "'avx2-novnni' is not known");
    CHECK(mend_cpu_simd_level() == start);
#else
    CHECK_ERR(mend_set_isa("neon"), MEND_EINVAL, "'neon' is not known");
    CHECK_ERR(mend_set_isa("neon-nodotprod"), MEND_EINVAL, "'neon-nodotprod' is not known");
    CHECK(mend_cpu_simd_level() == start);
    if (have < MEND_SIMD_AVX512) {
        CHECK_ERR(mend_set_isa("avx512"), MEND_EUNSUPPORTED, "not available on this CPU");
        CHECK(mend_cpu_simd_level() == start);
    }
#endif
    for (int l = MEND_SIMD_SCALAR; l <= have; l++) {
        CHECK_OK(mend_set_isa(mend_simd_level_name(l)));
        CHECK(mend_cpu_simd_level() == l && mend_cpu_max_level() == l && mend_cpu_detected_level() == have);
        CHECK(strcmp(mend_isa(), mend_simd_level_name(l)) == 0);
        CHECK(strncmp(mend_isa_describe(), mend_isa(), strlen(mend_isa())) == 0);
        CHECK(has_first_level() == (l >= MEND_SIMD_AVX2) && mend_cpu_has_avx512() == (l >= MEND_SIMD_AVX512));
        if (l < MEND_SIMD_AVX512) CHECK(!mend_cpu_has_avx512_vnni() && !mend_cpu_has_avx512_bf16());
        if (l < MEND_SIMD_AVX2) CHECK(!mend_cpu_has_avx_vnni());
        mend_cpu_force_scalar(1);
        CHECK(!mend_cpu_has_avx_vnni());
        CHECK(mend_cpu_simd_level() == MEND_SIMD_SCALAR && mend_cpu_max_level() == l);
        mend_cpu_force_scalar(0);
        CHECK(mend_cpu_simd_level() == l);
    }
#if defined(__aarch64__)
    if (have >= MEND_SIMD_NEON) {
        CHECK_OK(mend_set_isa("neon"));
        const int dp = mend_cpu_has_neon_dotprod();
        CHECK_OK(mend_set_isa("neon-nodotprod"));
        CHECK(mend_cpu_simd_level() == MEND_SIMD_NEON && mend_cpu_has_neon() && !mend_cpu_has_neon_dotprod());
        CHECK(strcmp(mend_isa(), "neon") == 0 && strcmp(mend_isa_describe(), "neon") == 0);
        if (dp) {
            CHECK_OK(mend_set_isa("neon-dotprod"));
            CHECK(mend_cpu_has_neon_dotprod() && strcmp(mend_isa_describe(), "neon (dotprod)") == 0);
        } else {
            CHECK_ERR(mend_set_isa("neon-dotprod"), MEND_EUNSUPPORTED, "without the dot-product extension");
            CHECK(!mend_cpu_has_neon_dotprod());
        }
        CHECK_OK(mend_set_isa("neon"));
        CHECK(mend_cpu_has_neon_dotprod() == dp);
        printf("isa: dotprod %s at the neon level\n", dp ? "present" : "absent");
    }
#else
    if (have >= MEND_SIMD_AVX2) {
        CHECK_OK(mend_set_isa("avx2"));
        const int vnni = mend_cpu_has_avx_vnni();
        CHECK_OK(mend_set_isa("avx2-novnni"));
        CHECK(mend_cpu_simd_level() == MEND_SIMD_AVX2 && mend_cpu_has_avx2() && !mend_cpu_has_avx_vnni());
        CHECK(strcmp(mend_isa(), "avx2") == 0 && strstr(mend_isa_describe(), "vnni") == NULL);
        CHECK_OK(mend_set_isa("avx2"));
        CHECK(mend_cpu_has_avx_vnni() == vnni);
        printf("isa: avx-vnni %s at the avx2 level\n", vnni ? "present" : "absent");
    }
#endif
    CHECK_OK(mend_set_isa(NULL));
    CHECK(mend_cpu_simd_level() == have && strcmp(mend_isa_describe(), "") != 0);
    CHECK_OK(mend_set_isa(getenv("MEND_ISA")));   /* back to the level the test was run at */
    CHECK(mend_cpu_simd_level() == start);
}

/* ------------------------------------------------------------------------ */
/* hand-built blocks: logical values -> bytes by the layout description,
 * expected floats computed in double from the logical values             */

#define NB32 6   /* blocks of the 32-weight types */
#define NBK 3    /* blocks of the 256-weight types */

static void test_hand_simple(void) {
    enum { N = NB32 * 32 };
    float y[N];
    double want[N];

    /* f32, f16, bf16: one element per "block" */
    {
        float x[5] = {1.5f, -0.0f, 3.0e-39f, 65504.0f, -2.25f};
        double w[5];
        for (int i = 0; i < 5; i++) w[i] = x[i];
        deq_both(MEND_TYPE_F32, x, y, 5, "f32", w);
        /* f16: sign | 5-bit exponent (bias 15) | 10-bit mantissa */
        const uint16_t h[8] = {0x3C00, 0xC000, 0x3555, 0x0001, 0x03FF, 0x7BFF, 0x8000, 0x4248};
        const double hw[8] = {1.0, -2.0, (1 + 0x155 / 1024.0) * 0.25, ldexp(1, -24), 1023 * ldexp(1, -24),
                              65504.0, -0.0, (1 + 0x248 / 1024.0) * 2};
        deq_both(MEND_TYPE_F16, h, y, 8, "f16", hw);
        /* bf16: the top half of an f32 */
        const uint16_t b[4] = {0x3F80, 0xC0A0, 0x4049, 0x0001};
        const double bw[4] = {1.0, -5.0, (1 + 0x49 / 128.0) * 2, ldexp(1, -133)};
        deq_both(MEND_TYPE_BF16, b, y, 4, "bf16", bw);
        /* infinities and NaN from both half formats */
        const uint16_t sp[3] = {0x7C00, 0xFC00, 0x7E00};
        CHECK_OK(mend_dequantize_row(MEND_TYPE_F16, sp, y, 3));
        CHECK(isinf(y[0]) && y[0] > 0 && isinf(y[1]) && y[1] < 0 && isnan(y[2]));
        const uint16_t bsp[3] = {0x7F80, 0xFF80, 0x7FC0};
        CHECK_OK(mend_dequantize_row(MEND_TYPE_BF16, bsp, y, 3));
        CHECK(isinf(y[0]) && y[0] > 0 && isinf(y[1]) && y[1] < 0 && isnan(y[2]));
    }

    /* q4_0: d, then 16 bytes; weight j<16 is the low nibble of qs[j], weight
     * j>=16 the high nibble of qs[j-16]; value (q - 8) * d */
    {
        block_q4_0 b[NB32];
        for (int i = 0; i < NB32; i++) {
            b[i].d = rnd_half();
            memset(b[i].qs, 0, sizeof b[i].qs);
            const double d = mend_fp16_to_f32(b[i].d);
            for (int j = 0; j < 32; j++) {
                int q = (i == 0) ? (j % 16) : rndi(0, 15);
                b[i].qs[j % 16] |= (uint8_t)(q << (4 * (j / 16)));
                want[32 * i + j] = (q - 8) * d;
            }
        }
        deq_both(MEND_TYPE_Q4_0, b, y, N, "q4_0 hand", want);
        /* a fully specified block: d = 0.5, byte 0x1F -> weights 0 and 16 */
        block_q4_0 one = {.d = 0x3800};
        memset(one.qs, 0x88, 16);
        one.qs[0] = 0x1F;
        CHECK_OK(mend_dequantize_row(MEND_TYPE_Q4_0, &one, y, 32));
        CHECK(y[0] == 3.5f && y[16] == -3.5f && y[1] == 0.0f && y[31] == 0.0f);
    }

    /* q4_1: d, m, nibbles as q4_0; value q * d + m */
    {
        block_q4_1 b[NB32];
        for (int i = 0; i < NB32; i++) {
            b[i].d = rnd_half();
            b[i].m = rnd_half();
            memset(b[i].qs, 0, sizeof b[i].qs);
            const double d = mend_fp16_to_f32(b[i].d), m = mend_fp16_to_f32(b[i].m);
            for (int j = 0; j < 32; j++) {
                int q = rndi(0, 15);
                b[i].qs[j % 16] |= (uint8_t)(q << (4 * (j / 16)));
                want[32 * i + j] = q * d + m;
            }
        }
        deq_both(MEND_TYPE_Q4_1, b, y, N, "q4_1 hand", want);
        block_q4_1 one = {.d = 0x3C00 /* 1 */, .m = 0xC400 /* -4 */};
        memset(one.qs, 0, 16);
        one.qs[3] = 0xF2;
        CHECK_OK(mend_dequantize_row(MEND_TYPE_Q4_1, &one, y, 32));
        CHECK(y[3] == -2.0f && y[19] == 11.0f && y[0] == -4.0f);
    }

    /* q5_0 / q5_1: bit 4 of weight j is bit j of the little-endian u32 qh */
    for (int variant = 0; variant < 2; variant++) {
        block_q5_0 b0[NB32];
        block_q5_1 b1[NB32];
        for (int i = 0; i < NB32; i++) {
            uint16_t d16 = rnd_half(), m16 = rnd_half();
            uint8_t qs[16] = {0}, qh[4] = {0};
            const double d = mend_fp16_to_f32(d16), m = mend_fp16_to_f32(m16);
            for (int j = 0; j < 32; j++) {
                int q = rndi(0, 31);
                qs[j % 16] |= (uint8_t)((q & 15) << (4 * (j / 16)));
                qh[j / 8] |= (uint8_t)((q >> 4) << (j % 8));
                want[32 * i + j] = variant == 0 ? (q - 16) * d : q * d + m;
            }
            b0[i].d = d16; memcpy(b0[i].qh, qh, 4); memcpy(b0[i].qs, qs, 16);
            b1[i].d = d16; b1[i].m = m16; memcpy(b1[i].qh, qh, 4); memcpy(b1[i].qs, qs, 16);
        }
        if (variant == 0) deq_both(MEND_TYPE_Q5_0, b0, y, N, "q5_0 hand", want);
        else deq_both(MEND_TYPE_Q5_1, b1, y, N, "q5_1 hand", want);
    }
    {   /* one q5_0 block by bytes: weight 31 gets its high bit from qh[3] bit 7 */
        block_q5_0 one = {.d = 0x3C00, .qh = {0, 0, 0, 0x80}};
        memset(one.qs, 0, 16);
        one.qs[15] = 0xF0;   /* weight 31 low bits 15 */
        CHECK_OK(mend_dequantize_row(MEND_TYPE_Q5_0, &one, y, 32));
        CHECK(y[31] == 15.0f && y[15] == -16.0f && y[0] == -16.0f);
    }

    /* q8_0 and q8_1: int8 quants times the half scale */
    {
        block_q8_0 b[NB32];
        block_q8_1 c[NB32];
        for (int i = 0; i < NB32; i++) {
            b[i].d = c[i].d = rnd_half();
            c[i].s = rnd_half();   /* sum term: not part of the value */
            const double d = mend_fp16_to_f32(b[i].d);
            for (int j = 0; j < 32; j++) {
                int q = i == 0 ? (j == 0 ? -128 : j == 1 ? 127 : j - 16) : rndi(-128, 127);
                b[i].qs[j] = c[i].qs[j] = (int8_t)q;
                want[32 * i + j] = q * d;
            }
        }
        deq_both(MEND_TYPE_Q8_0, b, y, N, "q8_0 hand", want);
        deq_both(MEND_TYPE_Q8_1, c, y, N, "q8_1 hand", want);
    }
}

/* -------- k-quants: 256 weights, sub-blocks of 16 or 32 -------- */

/* bits 2g..2g+1 of byte 32*(i/128) + i%32 with g = (i%128)/32 */
static void put2(uint8_t *qs, int i, int v) {
    qs[32 * (i / 128) + i % 32] |= (uint8_t)((v & 3) << (2 * ((i % 128) / 32)));
}
/* nibble (i%64)/32 of byte 32*(i/64) + i%32 */
static void put4(uint8_t *qs, int i, int v) {
    qs[32 * (i / 64) + i % 32] |= (uint8_t)((v & 15) << (4 * ((i % 64) / 32)));
}
/* six-bit scale and min of sub-block j (0..7) in the 12-byte q4_K/q5_K field:
 * j<4: low 6 bits of bytes j and j+4; j>=4: nibbles of byte j+4, top two
 * bits in bits 6..7 of bytes j-4 (scale) and j (min). */
static void put_scale_min(uint8_t s[12], int j, int sc, int mn) {
    if (j < 4) {
        s[j] |= (uint8_t)(sc & 63);
        s[j + 4] |= (uint8_t)(mn & 63);
    } else {
        s[j + 4] |= (uint8_t)((sc & 15) | (mn & 15) << 4);
        s[j - 4] |= (uint8_t)((sc >> 4) << 6);
        s[j] |= (uint8_t)((mn >> 4) << 6);
    }
}

static void test_hand_k(void) {
    enum { N = NBK * QK_K };
    float y[N];
    double want[N];

    /* q2_K: 16 scales bytes (scale low nibble, min high nibble), 64 bytes of
     * 2-bit quants, d, dmin; value d*scale*q - dmin*min */
    {
        block_q2_K b[NBK];
        memset(b, 0, sizeof b);
        for (int i = 0; i < NBK; i++) {
            b[i].d = rnd_half();
            b[i].dmin = rnd_half();
            const double d = mend_fp16_to_f32(b[i].d), dmin = mend_fp16_to_f32(b[i].dmin);
            int sc[16], mn[16];
            for (int s = 0; s < 16; s++) {
                sc[s] = rndi(0, 15);
                mn[s] = rndi(0, 15);
                b[i].scales[s] = (uint8_t)(sc[s] | mn[s] << 4);
            }
            for (int w = 0; w < QK_K; w++) {
                int q = rndi(0, 3);
                put2(b[i].qs, w, q);
                want[QK_K * i + w] = d * sc[w / 16] * q - dmin * mn[w / 16];
            }
        }
        deq_both(MEND_TYPE_Q2_K, b, y, N, "q2_K hand", want);
    }

    /* q3_K: 32 bytes hmask, 64 bytes low bits, 12 bytes of 6-bit scales
     * (stored +32), d. q = low2 + 4*hbit - 4; hbit of weight i is bit i/32 of
     * hmask[i%32]; scale s low nibble in byte s%8 (nibble s/8), high 2 bits
     * in byte 8+s%4 at bit 2*(s/4). value d*(scale)*q */
    {
        block_q3_K b[NBK];
        memset(b, 0, sizeof b);
        for (int i = 0; i < NBK; i++) {
            b[i].d = rnd_half();
            const double d = mend_fp16_to_f32(b[i].d);
            int sc[16];
            for (int s = 0; s < 16; s++) {
                sc[s] = rndi(-32, 31);
                int u = sc[s] + 32;
                b[i].scales[s % 8] |= (uint8_t)((u & 15) << (4 * (s / 8)));
                b[i].scales[8 + s % 4] |= (uint8_t)((u >> 4) << (2 * (s / 4)));
            }
            for (int w = 0; w < QK_K; w++) {
                int q = rndi(-4, 3);
                int low = (q + 4) & 3, hbit = (q + 4) >> 2;
                put2(b[i].qs, w, low);
                b[i].hmask[w % 32] |= (uint8_t)(hbit << (w / 32));
                want[QK_K * i + w] = d * sc[w / 16] * q;
            }
        }
        deq_both(MEND_TYPE_Q3_K, b, y, N, "q3_K hand", want);
    }

    /* q4_K / q5_K: d, dmin, 12 bytes of 6-bit scales+mins for 8 sub-blocks of
     * 32, (q5_K: 32 bytes qh, bit i/32 of qh[i%32]), 128 bytes of nibbles.
     * value d*scale*q - dmin*min */
    for (int five = 0; five < 2; five++) {
        block_q4_K b4[NBK];
        block_q5_K b5[NBK];
        memset(b4, 0, sizeof b4);
        memset(b5, 0, sizeof b5);
        for (int i = 0; i < NBK; i++) {
            uint16_t d16 = rnd_half(), m16 = rnd_half();
            b4[i].d = b5[i].d = d16;
            b4[i].dmin = b5[i].dmin = m16;
            const double d = mend_fp16_to_f32(d16), dmin = mend_fp16_to_f32(m16);
            int sc[8], mn[8];
            for (int j = 0; j < 8; j++) {
                sc[j] = rndi(0, 63);
                mn[j] = rndi(0, 63);
                put_scale_min(b4[i].scales, j, sc[j], mn[j]);
                put_scale_min(b5[i].scales, j, sc[j], mn[j]);
            }
            for (int w = 0; w < QK_K; w++) {
                int q = rndi(0, five ? 31 : 15);
                put4(five ? b5[i].qs : b4[i].qs, w, q);
                if (five) b5[i].qh[w % 32] |= (uint8_t)((q >> 4) << (w / 32));
                want[QK_K * i + w] = d * sc[w / 32] * q - dmin * mn[w / 32];
            }
        }
        if (five) deq_both(MEND_TYPE_Q5_K, b5, y, N, "q5_K hand", want);
        else deq_both(MEND_TYPE_Q4_K, b4, y, N, "q4_K hand", want);
    }

    /* q6_K: 128 bytes ql, 64 bytes qh, 16 int8 scales, d. Weight i = 128h +
     * 32g + l: low nibble (g/2) of ql[64h + 32(g%2) + l], high 2 bits at bit
     * 2g of qh[32h + l]; q6 - 32; value d*scale[i/16]*q */
    {
        block_q6_K b[NBK];
        memset(b, 0, sizeof b);
        for (int i = 0; i < NBK; i++) {
            b[i].d = rnd_half();
            const double d = mend_fp16_to_f32(b[i].d);
            for (int s = 0; s < 16; s++) b[i].scales[s] = (int8_t)rndi(-128, 127);
            for (int w = 0; w < QK_K; w++) {
                int q = rndi(-32, 31), u = q + 32;
                int h = w / 128, g = (w % 128) / 32, l = w % 32;
                b[i].ql[64 * h + 32 * (g % 2) + l] |= (uint8_t)((u & 15) << (4 * (g / 2)));
                b[i].qh[32 * h + l] |= (uint8_t)((u >> 4) << (2 * g));
                want[QK_K * i + w] = d * b[i].scales[w / 16] * q;
            }
        }
        deq_both(MEND_TYPE_Q6_K, b, y, N, "q6_K hand", want);
    }

    /* q8_K: float d, 256 int8, 16 int16 sums (not part of the value) */
    {
        block_q8_K b[NBK];
        memset(b, 0, sizeof b);
        for (int i = 0; i < NBK; i++) {
            b[i].d = ldexpf(1.0f + rndu(), rndi(-20, 3));
            for (int w = 0; w < QK_K; w++) {
                b[i].qs[w] = (int8_t)rndi(-127, 127);
                want[QK_K * i + w] = (double)b[i].d * b[i].qs[w];
            }
        }
        deq_both(MEND_TYPE_Q8_K, b, y, N, "q8_K hand", want);
    }
}

/* ------------------------------------------------------------------------ */
/* golden fixtures from the gguf python package                             */

typedef void (*quant_fn)(const float *x, void *y, int64_t k);
#define QWRAP(t, blk) static void qw_##t(const float *x, void *y, int64_t k) { quantize_row_##t##_ref(x, (blk *)y, k); }
QWRAP(q4_0, block_q4_0) QWRAP(q4_1, block_q4_1) QWRAP(q5_0, block_q5_0) QWRAP(q5_1, block_q5_1) QWRAP(q8_0, block_q8_0)

static void test_fixture(const char *name, uint32_t type, quant_fn quant) {
    char rel[256], what[160];
    snprintf(rel, sizeof rel, "tests/fixtures/quants/%s.bin", name);
    FILE *f = fopen(test_src(rel), "rb");
    CHECK_MSG(f != NULL, "cannot open %s", rel);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)len + 64);
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    CHECK(got == (size_t)len && len >= 16 && memcmp(buf, "MQF1", 4) == 0);
    uint32_t tid = mend_rd32(buf + 4), n = mend_rd32(buf + 8), nq = mend_rd32(buf + 12);
    CHECK(tid == type);
    const size_t rs = mend_row_size(type, n), rq = nq ? mend_row_size(type, nq) : 0;
    const size_t need = 16 + rs + 4 * (size_t)n + (nq ? 4 * (size_t)nq * 2 + rq : 0);
    CHECK_MSG(rs > 0 && need == (size_t)len, "%s: %ld bytes, expected %zu", rel, len, need);
    if (tid != type || rs == 0 || need != (size_t)len) { free(buf); return; }

    /* copy sections to aligned memory */
    const uint8_t *p = buf + 16;
    void *blocks = malloc(rs);
    float *want = malloc(4 * (size_t)n), *y = malloc(4 * (size_t)n);
    memcpy(blocks, p, rs); p += rs;
    memcpy(want, p, 4 * (size_t)n); p += 4 * (size_t)n;
    for (int pass = 0; pass < 2; pass++) {
        mend_cpu_force_scalar(pass == 0);
        CHECK_OK(mend_dequantize_row(type, blocks, y, n));
        snprintf(what, sizeof what, "fixture %s dequantize (%s)", name,
                 pass == 0 ? "scalar" : mend_simd_level_name(mend_cpu_simd_level()));
        check_same(what, y, want, n);
    }
    mend_cpu_force_scalar(0);

    if (nq && quant) {
        float *xin = malloc(4 * (size_t)nq), *qdeq = malloc(4 * (size_t)nq), *y2 = malloc(4 * (size_t)nq);
        uint8_t *qref = malloc(rq), *qgot = malloc(rq);
        memcpy(xin, p, 4 * (size_t)nq); p += 4 * (size_t)nq;
        memcpy(qref, p, rq); p += rq;
        memcpy(qdeq, p, 4 * (size_t)nq);
        memset(qgot, 0xAB, rq);
        quant(xin, qgot, nq);
        const size_t ts = mend_type_get(type)->type_size;
        size_t first = SIZE_MAX, nbad = 0;
        for (size_t b = 0; b < rq / ts; b++)
            if (memcmp(qgot + b * ts, qref + b * ts, ts)) { if (first == SIZE_MAX) first = b; nbad++; }
        CHECK_MSG(nbad == 0, "fixture %s quantize: %zu of %zu blocks differ from gguf, first block %zu",
                  name, nbad, rq / ts, first);
        CHECK_OK(mend_dequantize_row(type, qgot, y2, nq));
        snprintf(what, sizeof what, "fixture %s quantize->dequantize", name);
        check_same(what, y2, qdeq, nq);
        free(xin); free(qdeq); free(y2); free(qref); free(qgot);
    }
    free(blocks); free(want); free(y); free(buf);
}

static void test_fixtures(void) {
    test_fixture("f32", MEND_TYPE_F32, NULL);
    test_fixture("f16", MEND_TYPE_F16, NULL);
    test_fixture("bf16", MEND_TYPE_BF16, NULL);
    test_fixture("q4_0", MEND_TYPE_Q4_0, qw_q4_0);
    test_fixture("q4_1", MEND_TYPE_Q4_1, qw_q4_1);
    test_fixture("q5_0", MEND_TYPE_Q5_0, qw_q5_0);
    test_fixture("q5_1", MEND_TYPE_Q5_1, qw_q5_1);
    test_fixture("q8_0", MEND_TYPE_Q8_0, qw_q8_0);
    test_fixture("q2_K", MEND_TYPE_Q2_K, NULL);
    test_fixture("q3_K", MEND_TYPE_Q3_K, NULL);
    test_fixture("q4_K", MEND_TYPE_Q4_K, NULL);
    test_fixture("q5_K", MEND_TYPE_Q5_K, NULL);
    test_fixture("q6_K", MEND_TYPE_Q6_K, NULL);
}

/* ------------------------------------------------------------------------ */
/* quantize -> dequantize error bounds                                      */

/* Per block: symmetric types have d = (largest-magnitude value)/-L with levels
 * -L..L-1, asymmetric ones d = (max-min)/(2^bits - 1) and m = min. Every
 * element must land within half a step of the float grid, plus the error
 * from storing d (and m) in fp16; only the symmetric types' single value
 * opposite to the extreme may clip to a full step. */
static void test_roundtrip(void) {
    enum { NB = 64, N = NB * 32 };
    static float x[N], y[N];
    static uint8_t q[NB * 40];
    const struct { uint32_t type; quant_fn fn; int levels; int asym; double rel_rmse; } cases[] = {
        {MEND_TYPE_Q4_0, qw_q4_0, 8, 0, 0.12}, {MEND_TYPE_Q4_1, qw_q4_1, 15, 1, 0.09},
        {MEND_TYPE_Q5_0, qw_q5_0, 16, 0, 0.06}, {MEND_TYPE_Q5_1, qw_q5_1, 31, 1, 0.045},
        {MEND_TYPE_Q8_0, qw_q8_0, 127, 0, 0.005},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < N; i++) {
            const float scale = ldexpf(1.0f, (i / 32) % 12 - 8);
            x[i] = rndn() * scale + ((i / 32) % 5 == 0 ? scale : 0.0f);
        }
        cases[c].fn(x, q, N);
        CHECK_OK(mend_dequantize_row(cases[c].type, q, y, N));
        int nbad = 0, first = -1;
        double se = 0, sx = 0;
        for (int b = 0; b < NB; b++) {
            const float *xb = x + 32 * b;
            float amax = 0, vmax = 0, mn = FLT_MAX, mx = -FLT_MAX;
            for (int j = 0; j < 32; j++) {
                if (fabsf(xb[j]) > amax) { amax = fabsf(xb[j]); vmax = xb[j]; }
                mn = fminf(mn, xb[j]);
                mx = fmaxf(mx, xb[j]);
            }
            double d, dh, mh = 0, m = 0;
            const uint8_t *blk = q + b * mend_type_get(cases[c].type)->type_size;
            dh = mend_fp16_to_f32(mend_rd16(blk));
            if (cases[c].asym) {
                d = ((double)mx - mn) / cases[c].levels;
                m = mn;
                mh = mend_fp16_to_f32(mend_rd16(blk + 2));
            } else {
                d = cases[c].type == MEND_TYPE_Q8_0 ? amax / 127.0 : fabs((double)vmax) / cases[c].levels;
            }
            /* |q| <= levels, so storing d in fp16 moves a value by at most levels*|dh - d| */
            const double slack = cases[c].levels * fabs(dh - d) + fabs(mh - m) + 1e-6 * d + 1e-12;
            const double dsigned = vmax / -(double)cases[c].levels;
            for (int j = 0; j < 32; j++) {
                const double err = fabs((double)y[32 * b + j] - xb[j]);
                double bound = 0.5 * d + slack;
                /* symmetric 4/5-bit: the top level is L-1, so a value near
                 * -vmax rounds to it with up to a full step of error */
                if (!cases[c].asym && cases[c].type != MEND_TYPE_Q8_0 && dsigned != 0 &&
                    xb[j] / dsigned > cases[c].levels - 0.5 - 1e-4)
                    bound = d + slack;
                if (!(err <= bound)) { nbad++; if (first < 0) first = 32 * b + j; }
                se += err * err;
                sx += (double)xb[j] * xb[j];
            }
        }
        CHECK_MSG(nbad == 0, "%s round trip: %d elements beyond half a step, first %d (x %g, y %g)",
                  mend_type_name(cases[c].type), nbad, first, first >= 0 ? x[first] : 0.0, first >= 0 ? y[first] : 0.0);
        const double rel = sqrt(se / sx);
        printf("%s round trip: relative rms error %.4f\n", mend_type_name(cases[c].type), rel);
        CHECK_MSG(rel < cases[c].rel_rmse, "%s relative rms error %g", mend_type_name(cases[c].type), rel);
    }

    /* exact cases: a block already on the grid comes back unchanged */
    float g[32], gy[32];
    block_q8_0 b8;
    for (int j = 0; j < 32; j++) g[j] = (j - 16) * 0.25f;   /* amax 4 -> d = 4/127 */
    quantize_row_q8_0_ref(g, &b8, 32);
    CHECK(b8.qs[0] == -127 && b8.qs[16] == 0);
    block_q4_1 b41;
    for (int j = 0; j < 32; j++) g[j] = 1.0f + (j % 16) * 0.5f;   /* min 1, step 0.5 */
    quantize_row_q4_1_ref(g, &b41, 32);
    dequantize_row_q4_1_ref(&b41, gy, 32);
    CHECK(memcmp(g, gy, sizeof g) == 0);
    block_q4_0 b40;
    for (int j = 0; j < 32; j++) g[j] = ((j % 16) - 8) * -0.25f;   /* largest magnitude +2 = -8 * d, d = -0.25 */
    quantize_row_q4_0_ref(g, &b40, 32);
    dequantize_row_q4_0_ref(&b40, gy, 32);
    CHECK(memcmp(g, gy, sizeof g) == 0);
    block_q5_0 b50;
    for (int j = 0; j < 32; j++) g[j] = (j - 16) * 0.125f;   /* -2 = -16 * d */
    quantize_row_q5_0_ref(g, &b50, 32);
    dequantize_row_q5_0_ref(&b50, gy, 32);
    CHECK(memcmp(g, gy, sizeof g) == 0);
    /* zeros, NaN and infinities quantize without undefined behaviour */
    memset(g, 0, sizeof g);
    quantize_row_q4_0_ref(g, &b40, 32);
    dequantize_row_q4_0_ref(&b40, gy, 32);
    CHECK(gy[0] == 0.0f && gy[31] == 0.0f);
    g[3] = NAN; g[4] = INFINITY; g[5] = -INFINITY;
    quantize_row_q4_0_ref(g, &b40, 32);
    quantize_row_q4_1_ref(g, &b41, 32);
    quantize_row_q8_0_ref(g, &b8, 32);
    block_q5_1 b51;
    quantize_row_q5_1_ref(g, &b51, 32);
    quantize_row_q5_0_ref(g, &b50, 32);
    CHECK(1);
}

/* ------------------------------------------------------------------------ */
/* SIMD kernels vs their scalar twins, on random blocks                     */

typedef void (*deq_raw)(const void *x, float *y, int64_t k);
#define DWRAP(t, blk) static void dw_##t(const void *x, float *y, int64_t k) { dequantize_row_##t((const blk *)x, y, k); }
DWRAP(f16_ref, mend_half) DWRAP(bf16_ref, uint16_t) DWRAP(q4_0_ref, block_q4_0) DWRAP(q4_1_ref, block_q4_1) DWRAP(q8_0_ref, block_q8_0)
#if defined(__aarch64__)
/* one SIMD column (NEON); the second never runs */
DWRAP(f16_neon, mend_half) DWRAP(bf16_neon, uint16_t) DWRAP(q4_0_neon, block_q4_0) DWRAP(q4_1_neon, block_q4_1) DWRAP(q8_0_neon, block_q8_0)
#define SIMD_A(t) dw_##t##_neon
#define SIMD_B(t) NULL
static const char *const simd_names[2] = {"neon", ""};
#else
DWRAP(f16_avx2, mend_half) DWRAP(bf16_avx2, uint16_t) DWRAP(q4_0_avx2, block_q4_0) DWRAP(q4_1_avx2, block_q4_1) DWRAP(q8_0_avx2, block_q8_0)
DWRAP(f16_avx512, mend_half) DWRAP(bf16_avx512, uint16_t) DWRAP(q4_0_avx512, block_q4_0) DWRAP(q4_1_avx512, block_q4_1) DWRAP(q8_0_avx512, block_q8_0)
#define SIMD_A(t) dw_##t##_avx2
#define SIMD_B(t) dw_##t##_avx512
static const char *const simd_names[2] = {"avx2", "avx512"};
#endif

static void test_simd(void) {
    const struct { uint32_t type; const char *name; deq_raw ref, avx2, avx512; int half_at[2]; } k[] = {
        {MEND_TYPE_F16, "f16", dw_f16_ref, SIMD_A(f16), SIMD_B(f16), {-1, -1}},
        {MEND_TYPE_BF16, "bf16", dw_bf16_ref, SIMD_A(bf16), SIMD_B(bf16), {-1, -1}},
        {MEND_TYPE_Q4_0, "q4_0", dw_q4_0_ref, SIMD_A(q4_0), SIMD_B(q4_0), {0, -1}},
        {MEND_TYPE_Q4_1, "q4_1", dw_q4_1_ref, SIMD_A(q4_1), SIMD_B(q4_1), {0, 2}},
        {MEND_TYPE_Q8_0, "q8_0", dw_q8_0_ref, SIMD_A(q8_0), SIMD_B(q8_0), {0, -1}},
    };
    const int has2 = has_first_level(), has512 = mend_cpu_has_avx512();
    if (!has2) printf("note: no %s on this CPU, SIMD kernels not compared\n", simd_names[0]);
    if (has2 && !has512 && k[0].avx512) printf("note: no AVX-512 on this CPU, AVX-512 kernels not compared\n");
    const int64_t lens[] = {32, 64, 96, 544, 4096};
    for (size_t t = 0; t < sizeof k / sizeof k[0]; t++) {
        const mend_type_traits *tr = mend_type_get(k[t].type);
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            /* the plain types also get odd lengths to cover the scalar tails */
            int64_t n = lens[li] + (tr->blck_size == 1 ? (int64_t)li * 3 + 1 : 0);
            const size_t rs = mend_row_size(k[t].type, n);
            uint8_t *src = malloc(rs);
            float *a = malloc(4 * n), *b = malloc(4 * n);
            for (size_t i = 0; i < rs; i++) src[i] = (uint8_t)rnd();
            if (tr->blck_size > 1)
                for (int64_t bi = 0; bi < n / tr->blck_size; bi++)
                    for (int h = 0; h < 2; h++)
                        if (k[t].half_at[h] >= 0) {
                            /* mostly sane scales; now and then raw random bits (inf/nan included) */
                            uint16_t v = (bi % 7 == 3) ? (uint16_t)rnd() : rnd_half();
                            memcpy(src + bi * tr->type_size + k[t].half_at[h], &v, 2);
                        }
            k[t].ref(src, a, n);
            char what[96];
            if (has2) {
                k[t].avx2(src, b, n);
                snprintf(what, sizeof what, "%s %s vs ref (n=%lld)", k[t].name, simd_names[0], (long long)n);
                check_same(what, b, a, n);
            }
            if (has512) {
                k[t].avx512(src, b, n);
                snprintf(what, sizeof what, "%s %s vs ref (n=%lld)", k[t].name, simd_names[1], (long long)n);
                check_same(what, b, a, n);
            }
            /* the dispatcher on a misaligned copy (bounced through an aligned buffer) */
            uint8_t *mis = malloc(rs + 1);
            memcpy(mis + 1, src, rs);
            CHECK_OK(mend_dequantize_row(k[t].type, mis + 1, b, n));
            snprintf(what, sizeof what, "%s dispatch misaligned (n=%lld)", k[t].name, (long long)n);
            check_same(what, b, a, n);
            free(mis); free(src); free(a); free(b);
        }
    }
    /* misaligned q8_K (float scale) and q6_K through the dispatcher */
    {
        enum { NB = 20 };
        block_q8_K blk[NB];
        for (int i = 0; i < NB; i++) {
            blk[i].d = rndn();
            for (int w = 0; w < QK_K; w++) blk[i].qs[w] = (int8_t)rnd();
            for (int s = 0; s < QK_K / 16; s++) blk[i].bsums[s] = 0;
        }
        uint8_t *mis = malloc(sizeof blk + 3);
        memcpy(mis + 3, blk, sizeof blk);
        static float a[NB * QK_K], b[NB * QK_K];
        CHECK_OK(mend_dequantize_row(MEND_TYPE_Q8_K, blk, a, NB * QK_K));
        CHECK_OK(mend_dequantize_row(MEND_TYPE_Q8_K, mis + 3, b, NB * QK_K));
        check_same("q8_K misaligned", b, a, NB * QK_K);
        CHECK(a[5] == blk[0].d * blk[0].qs[5]);
        free(mis);
    }
}

int main(void) {
    test_traits();
    test_dispatch_errors();
    test_cpu();
    test_isa_cap();
    test_hand_simple();
    test_hand_k();
    test_fixtures();
    test_roundtrip();
    test_simd();
    return test_finish();
}
