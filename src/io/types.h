/* ggml tensor type ids and their storage traits (name, elements per block,
 * bytes per block): what a reader needs to size the tensors of a GGUF or
 * safetensors file. The block layouts themselves and the (de)quantizers live
 * in kernels/quants.h, which includes this header. Ids are ggml's, so GGUF
 * files round-trip. */
#ifndef MEND_IO_TYPES_H
#define MEND_IO_TYPES_H

#include <stddef.h>
#include <stdint.h>

enum mend_type {
    MEND_TYPE_F32 = 0, MEND_TYPE_F16 = 1, MEND_TYPE_Q4_0 = 2, MEND_TYPE_Q4_1 = 3,
    MEND_TYPE_Q5_0 = 6, MEND_TYPE_Q5_1 = 7, MEND_TYPE_Q8_0 = 8, MEND_TYPE_Q8_1 = 9,
    MEND_TYPE_Q2_K = 10, MEND_TYPE_Q3_K = 11, MEND_TYPE_Q4_K = 12, MEND_TYPE_Q5_K = 13,
    MEND_TYPE_Q6_K = 14, MEND_TYPE_Q8_K = 15, MEND_TYPE_BF16 = 30,
    MEND_TYPE_COUNT = 40
};

typedef struct mend_type_traits {
    const char *name;     /* "q4_0", "f32", ... ; NULL for unknown ids */
    int64_t blck_size;    /* elements per block */
    size_t type_size;     /* bytes per block */
} mend_type_traits;

/* Traits of a ggml type id; NULL when mend does not know the id. */
const mend_type_traits *mend_type_get(uint32_t type);
const char *mend_type_name(uint32_t type);
/* id from a name such as "q4_0" / "Q4_K" (case-insensitive); -1 if unknown. */
int mend_type_from_name(const char *name);
/* Bytes of a row of n elements; 0 when n is not a multiple of the block size
 * or the type is unknown. */
size_t mend_row_size(uint32_t type, int64_t n);

#endif
