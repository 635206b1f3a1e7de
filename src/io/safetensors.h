/* safetensors reader and writer.
 *
 * File layout (little endian):
 *   u64 N | N bytes of JSON header (UTF-8, may be padded with trailing spaces) | data
 * The header is an object: for every tensor
 *   "name": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
 * with offsets relative to the start of the data section, shape row-major
 * (shape[0] outermost, like torch), plus an optional
 *   "__metadata__": {"key": "value", ...}   (string values only).
 * The whole file is mmap'd; tensor data pointers point into the map (they
 * may be unaligned: read them with memcpy or the converters below).
 */
#ifndef MEND_SAFETENSORS_H
#define MEND_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "util/util.h"

#define MEND_ST_MAX_DIMS    8
#define MEND_ST_MAX_HEADER  (100u * 1000u * 1000u)  /* the format's own limit */

typedef struct mend_st_tensor {
    char *name;
    char dtype[16];           /* as written in the header: "F32", "BF16", "I64", ... */
    int type;                 /* ggml type id (MEND_TYPE_F32/F16/BF16) or -1 when
                                 mend cannot convert this dtype */
    size_t elem_size;         /* bytes per element */
    int n_dims;
    int64_t shape[MEND_ST_MAX_DIMS];
    int64_t n_elems;
    uint64_t begin, end;      /* byte span in the data section */
    size_t nbytes;            /* end - begin == n_elems * elem_size */
    const void *data;         /* into the map */
} mend_st_tensor;

typedef struct mend_safetensors {
    char *path;
    mend_map map;
    size_t header_len;
    size_t data_offset;       /* 8 + header_len */
    size_t data_size;         /* bytes after the header */
    size_t n_tensors;
    mend_st_tensor *tensors;  /* in header order */
    size_t n_meta;
    char **meta_keys, **meta_vals;
    mend_st_tensor **by_name; /* the tensors sorted by name (lookups), or NULL */
} mend_safetensors;

/* Map and validate a file: header length vs file size, JSON, every entry's
 * dtype / shape / data_offsets (in range, not overlapping, span == shape
 * product x dtype size, all overflow-checked), duplicate names. A dtype
 * that is known to the format but that mend cannot convert (I64, F64, ...)
 * opens fine with type == -1; an unknown dtype is MEND_EUNSUPPORTED. */
int mend_safetensors_open(mend_safetensors **out, const char *path);
void mend_safetensors_close(mend_safetensors *st);

const mend_st_tensor *mend_safetensors_find(const mend_safetensors *st, const char *name);
/* __metadata__ value, or NULL when absent */
const char *mend_safetensors_meta(const mend_safetensors *st, const char *key);

/* Convert n elements starting at element first of tensor t to f32
 * (F32 copy, F16 / BF16 widening, exact). Fails with MEND_EUNSUPPORTED naming
 * the dtype for anything else, MEND_ERANGE when [first, first+n) is outside
 * the tensor. */
int mend_safetensors_read_f32(const mend_safetensors *st, const mend_st_tensor *t,
                              int64_t first, int64_t n, float *dst);

/* One tensor to write. type is MEND_TYPE_F32, MEND_TYPE_F16 or MEND_TYPE_BF16
 * (ggml ids); data holds prod(shape) elements of that type, row-major. */
typedef struct mend_st_out {
    const char *name;
    int type;
    int n_dims;
    int64_t shape[MEND_ST_MAX_DIMS];
    const void *data;
} mend_st_out;

/* Write tensors (in the given order, data contiguous, header padded to 8
 * bytes) atomically to path. metadata: NULL, or a NULL-terminated list of
 * key, value string pairs, e.g. {"format", "pt", NULL}. */
int mend_safetensors_write(const char *path, const mend_st_out *tensors, size_t n_tensors,
                           const char *const *metadata);

#endif
