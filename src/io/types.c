/* ggml type traits. The block sizes are written out as ggml defines them
 * (scales as halves, then quants); kernels/quants.h declares the matching
 * block structs and tests/kernels/test_quants.c checks the two agree. */
#include "io/types.h"

#include <ctype.h>

#include "util/util.h"

#define QK 32    /* elements per block of the legacy formats */
#define QKK 256  /* elements per super-block of the k-quants */

/* Every ggml type id below MEND_TYPE_COUNT that names a live format, so GGUF
 * files holding any of them can at least be parsed; dequantizers exist for
 * the subset listed in mend_dequantize_row. Sizes are ggml's (block_q8_1 is
 * two halves + 32 quants = 36 bytes, as in ggml's C structs). */
static const mend_type_traits g_traits[MEND_TYPE_COUNT] = {
    [MEND_TYPE_F32]  = {"f32", 1, 4},
    [MEND_TYPE_F16]  = {"f16", 1, 2},
    [MEND_TYPE_Q4_0] = {"q4_0", QK, 2 + QK / 2},
    [MEND_TYPE_Q4_1] = {"q4_1", QK, 4 + QK / 2},
    [MEND_TYPE_Q5_0] = {"q5_0", QK, 2 + 4 + QK / 2},
    [MEND_TYPE_Q5_1] = {"q5_1", QK, 4 + 4 + QK / 2},
    [MEND_TYPE_Q8_0] = {"q8_0", QK, 2 + QK},
    [MEND_TYPE_Q8_1] = {"q8_1", QK, 4 + QK},
    [MEND_TYPE_Q2_K] = {"q2_K", QKK, 2 * 2 + QKK / 16 + QKK / 4},
    [MEND_TYPE_Q3_K] = {"q3_K", QKK, 2 + QKK / 4 + QKK / 8 + 12},
    [MEND_TYPE_Q4_K] = {"q4_K", QKK, 2 * 2 + 12 + QKK / 2},
    [MEND_TYPE_Q5_K] = {"q5_K", QKK, 2 * 2 + 12 + QKK / 2 + QKK / 8},
    [MEND_TYPE_Q6_K] = {"q6_K", QKK, 2 + QKK / 16 + 3 * QKK / 4},
    [MEND_TYPE_Q8_K] = {"q8_K", QKK, 4 + QKK + QKK / 16 * 2},
    [16] = {"iq2_xxs", QKK, 2 + QKK / 4},
    [17] = {"iq2_xs", QKK, 2 + QKK / 4 + QKK / 32},
    [18] = {"iq3_xxs", QKK, 2 + QKK / 4 + QKK / 8},
    [19] = {"iq1_s", QKK, 2 + QKK / 8 + QKK / 16},
    [20] = {"iq4_nl", 32, 2 + 16},
    [21] = {"iq3_s", QKK, 2 + QKK / 4 + QKK / 8 + QKK / 32 + 4},
    [22] = {"iq2_s", QKK, 2 + QKK / 4 + QKK / 16},
    [23] = {"iq4_xs", QKK, 2 + 2 + QKK / 2 + QKK / 64},
    [24] = {"i8", 1, 1},
    [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},
    [27] = {"i64", 1, 8},
    [28] = {"f64", 1, 8},
    [29] = {"iq1_m", QKK, QKK / 8 + QKK / 16 + QKK / 32},
    [MEND_TYPE_BF16] = {"bf16", 1, 2},
    [34] = {"tq1_0", QKK, 2 + 4 * 13},
    [35] = {"tq2_0", QKK, 2 + 64},
    [39] = {"mxfp4", 32, 1 + 16},
};

const mend_type_traits *mend_type_get(uint32_t type) {
    if (type >= MEND_TYPE_COUNT || !g_traits[type].name) return NULL;
    return &g_traits[type];
}

const char *mend_type_name(uint32_t type) {
    const mend_type_traits *t = mend_type_get(type);
    return t ? t->name : "unknown";
}

int mend_type_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < MEND_TYPE_COUNT; i++) {
        const char *a = g_traits[i].name, *b = name;
        if (!a) continue;
        while (*a && *b && tolower((unsigned char)*a) == tolower((unsigned char)*b)) a++, b++;
        if (!*a && !*b) return i;
    }
    return -1;
}

size_t mend_row_size(uint32_t type, int64_t n) {
    const mend_type_traits *t = mend_type_get(type);
    if (!t || n < 0 || n % t->blck_size) return 0;
    size_t bytes;
    if (!mend_mul_ok((size_t)(n / t->blck_size), t->type_size, &bytes)) return 0;
    return bytes;
}
