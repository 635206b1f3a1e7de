/* GGUF v2/v3 reader (and, later, writer).
 *
 * File layout (little endian):
 *   magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv × (string key | u32 type | value)
 *   n_tensors × (string name | u32 n_dims | n_dims × u64 ne | u32 ggml_type | u64 offset)
 *   padding to general.alignment (default 32) | tensor data (offsets relative to here)
 * string = u64 length + bytes (no NUL). array = u32 elem type + u64 n + elems.
 * The whole file is mmap'd; tensor data pointers point into the map.
 */
#ifndef MEND_GGUF_H
#define MEND_GGUF_H

#include <stdint.h>
#include <stddef.h>
#include "util/util.h"

enum gguf_vtype {
    GGUF_TYPE_UINT8 = 0, GGUF_TYPE_INT8 = 1, GGUF_TYPE_UINT16 = 2, GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4, GGUF_TYPE_INT32 = 5, GGUF_TYPE_FLOAT32 = 6, GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8, GGUF_TYPE_ARRAY = 9, GGUF_TYPE_UINT64 = 10, GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12, GGUF_TYPE_COUNT
};

typedef struct gguf_kv {
    char *key;          /* NUL-terminated copy */
    uint32_t type;      /* enum gguf_vtype */
    uint32_t arr_type;  /* element type when type == ARRAY */
    uint64_t n;         /* element count when type == ARRAY */
    union {
        uint64_t u;     /* unsigned ints and bool */
        int64_t i;      /* signed ints */
        double f;       /* floats */
        char *s;        /* NUL-terminated copy (may contain interior NULs; see slen) */
    } v;
    uint64_t slen;      /* length of v.s */
    /* arrays: numeric arrays point into the map (arr_raw, unaligned, little
     * endian, element size gguf_type_size(arr_type)); string arrays are copied
     * into arr_str / arr_slen. Nested arrays are skipped (arr_raw == NULL). */
    const uint8_t *arr_raw;
    char **arr_str;
    uint64_t *arr_slen;
} gguf_kv;

typedef struct gguf_tensor {
    char *name;
    uint32_t n_dims;
    int64_t ne[4];      /* ne[0] is the contiguous (innermost) dimension */
    uint32_t type;      /* ggml type id (see io/types.h) */
    uint64_t offset;    /* relative to data section */
    size_t nbytes;
    const void *data;   /* points into the map */
} gguf_tensor;

typedef struct mend_gguf {
    char *path;
    mend_map map;
    uint32_t version;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    size_t alignment;
    size_t data_offset;
    int borrowed;       /* buffer owned by the caller (open_mem) */
    /* hash indexes of the key and tensor names (slot = position + 1, 0 empty;
     * mask + 1 slots), built by the parser; NULL means look up by a scan */
    uint32_t *kv_index, *tensor_index;
    uint64_t kv_mask, tensor_mask;
} mend_gguf;

/* Hard limits checked before anything is allocated. */
#define GGUF_MAX_KV        (1u << 20)
#define GGUF_MAX_TENSORS   (1u << 20)
#define GGUF_MAX_STRING    (1u << 26)   /* 64 MiB: chat templates are long, tokens short */
#define GGUF_MAX_ARRAY     (1u << 28)

int mend_gguf_open(mend_gguf **out, const char *path);
/* Parse a buffer held by the caller (not copied; must outlive the ctx). */
int mend_gguf_open_mem(mend_gguf **out, const void *buf, size_t len, const char *name);
void mend_gguf_close(mend_gguf *g);

size_t gguf_type_size(uint32_t vtype);   /* 0 for STRING / ARRAY */
const char *gguf_type_name(uint32_t vtype);

const gguf_kv *mend_gguf_find(const mend_gguf *g, const char *key);
const gguf_tensor *mend_gguf_find_tensor(const mend_gguf *g, const char *name);

/* Typed getters. Return 0 on success, MEND_EFORMAT (with a sentence naming
 * the file and key) when the key is missing or has an incompatible type.
 * get_int accepts any integer type (and bool) that fits in int64. */
int mend_gguf_get_int(const mend_gguf *g, const char *key, int64_t *out);
int mend_gguf_get_float(const mend_gguf *g, const char *key, double *out);
int mend_gguf_get_bool(const mend_gguf *g, const char *key, int *out);
int mend_gguf_get_str(const mend_gguf *g, const char *key, const char **out);
/* Same, but a missing key leaves *out untouched and returns 0. */
int mend_gguf_opt_int(const mend_gguf *g, const char *key, int64_t *out);
int mend_gguf_opt_float(const mend_gguf *g, const char *key, double *out);
int mend_gguf_opt_bool(const mend_gguf *g, const char *key, int *out);
/* Element i of a numeric array as double / int64 (caller checks bounds). */
double gguf_arr_f64(const gguf_kv *kv, uint64_t i);
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i);

/* ---- writer ---------------------------------------------------------------
 * Collects metadata and tensors, then writes a GGUF v3 file atomically
 * (temporary file in the target directory, fsync, rename). Keys keep the
 * order in which they were first set; setting an existing key replaces its
 * value in place. Tensor data is borrowed (not copied): it must stay valid
 * until mend_gguf_writer_write returns, and is streamed to disk from there.
 * Alignment is general.alignment when set (a power of two), else 32. */
typedef struct mend_gguf_writer mend_gguf_writer;

int mend_gguf_writer_init(mend_gguf_writer **out);
void mend_gguf_writer_free(mend_gguf_writer *w);

int mend_gguf_writer_set_u8(mend_gguf_writer *w, const char *key, uint8_t v);
int mend_gguf_writer_set_i8(mend_gguf_writer *w, const char *key, int8_t v);
int mend_gguf_writer_set_u16(mend_gguf_writer *w, const char *key, uint16_t v);
int mend_gguf_writer_set_i16(mend_gguf_writer *w, const char *key, int16_t v);
int mend_gguf_writer_set_u32(mend_gguf_writer *w, const char *key, uint32_t v);
int mend_gguf_writer_set_i32(mend_gguf_writer *w, const char *key, int32_t v);
int mend_gguf_writer_set_u64(mend_gguf_writer *w, const char *key, uint64_t v);
int mend_gguf_writer_set_i64(mend_gguf_writer *w, const char *key, int64_t v);
int mend_gguf_writer_set_f32(mend_gguf_writer *w, const char *key, float v);
int mend_gguf_writer_set_f64(mend_gguf_writer *w, const char *key, double v);
int mend_gguf_writer_set_bool(mend_gguf_writer *w, const char *key, int v);
int mend_gguf_writer_set_str(mend_gguf_writer *w, const char *key, const char *s);
int mend_gguf_writer_set_strn(mend_gguf_writer *w, const char *key, const char *s, uint64_t len);
/* Numeric array: n elements of elem_type (any scalar vtype except STRING),
 * little endian, copied. */
int mend_gguf_writer_set_arr(mend_gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n);
/* String array, copied; lens may be NULL (NUL-terminated strings). */
int mend_gguf_writer_set_arr_str(mend_gguf_writer *w, const char *key, const char *const *strs,
                                 const uint64_t *lens, uint64_t n);
/* Copy one entry of a reader (its value is copied, the reader may close).
 * Nested arrays (which the reader skips) fail with MEND_EUNSUPPORTED. */
int mend_gguf_writer_set_kv(mend_gguf_writer *w, const gguf_kv *kv);
/* Copy every metadata entry of g (except nested arrays), e.g. architecture,
 * hyper-parameters and the tokenizer, so a rewritten model keeps them. */
int mend_gguf_writer_copy_kvs(mend_gguf_writer *w, const mend_gguf *g);
/* Remove a key; 0 whether or not it was present. */
int mend_gguf_writer_remove(mend_gguf_writer *w, const char *key);
/* Remove every key that starts with prefix. */
int mend_gguf_writer_remove_prefix(mend_gguf_writer *w, const char *prefix);
/* A hash of the keys that start with prefix, in the writer's order: each
 * key's name, type and value (mend compress's recipe). */
uint64_t mend_gguf_writer_hash_keys(const mend_gguf_writer *w, const char *prefix, uint64_t seed);

/* Add a tensor: ne[0] is the contiguous dimension; nbytes must equal the
 * size implied by type and ne. data is borrowed. */
int mend_gguf_writer_add_tensor(mend_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                const int64_t *ne, const void *data, size_t nbytes);
/* Write the file; the writer can be freed (or written again) afterwards. */
int mend_gguf_writer_write(mend_gguf_writer *w, const char *path);

#endif
