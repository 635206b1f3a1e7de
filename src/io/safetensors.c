/* safetensors: mmap'd reader with full validation, and an atomic writer.
 * Format: u64 header length N | N bytes JSON header | tensor data. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "io/safetensors.h"
#include "io/types.h"

/* dtypes of the format; type is the ggml id when mend converts it, else -1 */
static const struct st_dtype {
    const char *name;
    size_t size;
    int type;
} st_dtypes[] = {
    {"F32", 4, MEND_TYPE_F32}, {"F16", 2, MEND_TYPE_F16}, {"BF16", 2, MEND_TYPE_BF16},
    {"F64", 8, -1}, {"I64", 8, -1}, {"U64", 8, -1}, {"I32", 4, -1}, {"U32", 4, -1},
    {"I16", 2, -1}, {"U16", 2, -1}, {"I8", 1, -1}, {"U8", 1, -1}, {"BOOL", 1, -1},
    {"F8_E4M3", 1, -1}, {"F8_E5M2", 1, -1}, {"F8_E8M0", 1, -1},
};

static const struct st_dtype *dtype_by_name(const char *s) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, s) == 0) return &st_dtypes[i];
    return NULL;
}

static const struct st_dtype *dtype_by_type(int type) {
    if (type < 0) return NULL;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].type == type) return &st_dtypes[i];
    return NULL;
}

/* "[a, b, c]" into buf */
static const char *fmt_shape(char *buf, size_t cap, const int64_t *shape, int n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; i < n && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

void mend_safetensors_close(mend_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n_tensors; i++) free(st->tensors[i].name);
    free(st->tensors);
    for (size_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->meta_keys);
    free(st->meta_vals);
    free(st->by_name);
    mend_unmap(&st->map);
    free(st->path);
    free(st);
}

/* a JSON integer in [0, INT64_MAX] */
static int json_nonneg(const json_t *v, int64_t *out) {
    if (!json_is_integer(v)) return 0;
    json_int_t x = json_integer_value(v);
    if (x < 0) return 0;
    *out = (int64_t)x;
    return 1;
}

static int parse_entry(mend_safetensors *st, const char *name, const json_t *e, mend_st_tensor *t) {
    const char *p = st->path;
    char sb[256];
    t->name = mend_strdup(name);
    if (!t->name) return mend_set_error(MEND_ENOMEM, "%s: out of memory", p);
    if (!json_is_object(e))
        return mend_set_error(MEND_EFORMAT, "%s: header entry for tensor '%s' is not an object", p, name);

    const json_t *jd = json_object_get(e, "dtype");
    if (!json_is_string(jd))
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s': field 'dtype' is missing or not a string", p, name);
    const char *ds = json_string_value(jd);
    const struct st_dtype *dt = dtype_by_name(ds);
    if (!dt)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: tensor '%s': field 'dtype' has unknown dtype '%.32s' "
                              "(expected F32, F16, BF16 or another safetensors dtype)", p, name, ds);
    snprintf(t->dtype, sizeof t->dtype, "%s", dt->name);
    t->type = dt->type;
    t->elem_size = dt->size;

    const json_t *js = json_object_get(e, "shape");
    if (!json_is_array(js))
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s': field 'shape' is missing or not an array", p, name);
    size_t nd = json_array_size(js);
    if (nd > MEND_ST_MAX_DIMS)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: tensor '%s': field 'shape' has %zu dimensions, more than %d",
                              p, name, nd, MEND_ST_MAX_DIMS);
    t->n_dims = (int)nd;
    size_t n_elems = 1;
    for (size_t i = 0; i < nd; i++) {
        int64_t d;
        if (!json_nonneg(json_array_get(js, i), &d))
            return mend_set_error(MEND_EFORMAT, "%s: tensor '%s': field 'shape' element %zu is not a "
                                  "non-negative integer", p, name, i);
        t->shape[i] = d;
        if ((uint64_t)d > SIZE_MAX || !mend_mul_ok(n_elems, (size_t)d, &n_elems) || n_elems > (size_t)INT64_MAX)
            return mend_set_error(MEND_ERANGE, "%s: tensor '%s': field 'shape' %s overflows the element count",
                                  p, name, fmt_shape(sb, sizeof sb, t->shape, (int)i + 1));
    }
    t->n_elems = (int64_t)n_elems;
    size_t need;
    if (!mend_mul_ok(n_elems, dt->size, &need))
        return mend_set_error(MEND_ERANGE, "%s: tensor '%s': shape %s of %s overflows the byte count",
                              p, name, fmt_shape(sb, sizeof sb, t->shape, t->n_dims), dt->name);

    const json_t *jo = json_object_get(e, "data_offsets");
    int64_t b, en;
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_nonneg(json_array_get(jo, 0), &b) ||
        !json_nonneg(json_array_get(jo, 1), &en))
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s': field 'data_offsets' must be an array of two "
                              "non-negative integers [begin, end]", p, name);
    if (b > en)
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s': field 'data_offsets' [%" PRId64 ", %" PRId64
                              "] has begin after end", p, name, b, en);
    if ((uint64_t)en > st->data_size)
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s': field 'data_offsets' [%" PRId64 ", %" PRId64
                              "] runs past the data section (%zu bytes; file truncated?)",
                              p, name, b, en, st->data_size);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)en;
    t->nbytes = (size_t)(en - b);
    if (t->nbytes != need)
        return mend_set_error(MEND_EFORMAT, "%s: tensor '%s': shape %s of %s needs %zu bytes but field "
                              "'data_offsets' [%" PRId64 ", %" PRId64 "] spans %zu",
                              p, name, fmt_shape(sb, sizeof sb, t->shape, t->n_dims), dt->name, need, b, en,
                              t->nbytes);
    t->data = st->map.data + st->data_offset + t->begin;
    return 0;
}

static int parse_metadata(mend_safetensors *st, const json_t *m) {
    if (!json_is_object(m))
        return mend_set_error(MEND_EFORMAT, "%s: field '__metadata__' is not an object", st->path);
    size_t n = json_object_size(m);
    st->meta_keys = calloc(n ? n : 1, sizeof(char *));
    st->meta_vals = calloc(n ? n : 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_vals) return mend_set_error(MEND_ENOMEM, "%s: out of memory", st->path);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m, k, v) {
        if (!json_is_string(v))
            return mend_set_error(MEND_EFORMAT, "%s: field '__metadata__' key '%s' is not a string",
                                  st->path, k);
        st->meta_keys[st->n_meta] = mend_strdup(k);
        st->meta_vals[st->n_meta] = mend_strdup(json_string_value(v));
        st->n_meta++;
        if (!st->meta_keys[st->n_meta - 1] || !st->meta_vals[st->n_meta - 1])
            return mend_set_error(MEND_ENOMEM, "%s: out of memory", st->path);
    }
    return 0;
}

static int cmp_span(const void *a, const void *b) {
    const mend_st_tensor *x = *(const mend_st_tensor *const *)a, *y = *(const mend_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int check_overlaps(mend_safetensors *st) {
    if (st->n_tensors < 2) return 0;
    mend_st_tensor **ord = malloc(st->n_tensors * sizeof *ord);
    if (!ord) return mend_set_error(MEND_ENOMEM, "%s: out of memory", st->path);
    for (size_t i = 0; i < st->n_tensors; i++) ord[i] = &st->tensors[i];
    qsort(ord, st->n_tensors, sizeof *ord, cmp_span);
    int rc = 0;
    for (size_t i = 1; i < st->n_tensors; i++) {
        if (ord[i]->begin < ord[i - 1]->end) {
            rc = mend_set_error(MEND_EFORMAT, "%s: tensors '%s' (data_offsets [%" PRIu64 ", %" PRIu64 "]) and "
                                "'%s' (data_offsets [%" PRIu64 ", %" PRIu64 "]) overlap",
                                st->path, ord[i - 1]->name, ord[i - 1]->begin, ord[i - 1]->end,
                                ord[i]->name, ord[i]->begin, ord[i]->end);
            break;
        }
    }
    free(ord);
    return rc;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const mend_st_tensor *const *)a)->name, (*(const mend_st_tensor *const *)b)->name);
}

/* Names sorted once for binary-search lookups: a scan per lookup made the
 * HF loader's search for each of a model's tensors cost (tensors expected) x
 * (entries in the header). Names are unique (duplicates are refused). */
static int index_names(mend_safetensors *st) {
    if (st->n_tensors < 2) return 0;
    st->by_name = malloc(st->n_tensors * sizeof *st->by_name);
    if (!st->by_name) return mend_set_error(MEND_ENOMEM, "%s: out of memory", st->path);
    for (size_t i = 0; i < st->n_tensors; i++) st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, st->n_tensors, sizeof *st->by_name, cmp_name);
    return 0;
}

static int parse_header(mend_safetensors *st) {
    const char *p = st->path;
    const uint8_t *d = st->map.data;
    if (st->map.size < 8)
        return mend_set_error(MEND_EFORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
                              p, st->map.size);
    uint64_t n = mend_rd64(d);
    if (n > st->map.size - 8)
        return mend_set_error(MEND_EFORMAT, "%s: header length %" PRIu64 " runs past the end of the file "
                              "(%zu bytes; truncated or not a safetensors file)", p, n, st->map.size);
    if (n > MEND_ST_MAX_HEADER)
        return mend_set_error(MEND_ERANGE, "%s: header length %" PRIu64 " is larger than the limit of %u bytes",
                              p, n, MEND_ST_MAX_HEADER);
    if (n < 2 || d[8] != '{')
        return mend_set_error(MEND_EFORMAT, "%s: header (%" PRIu64 " bytes) does not start with a JSON object",
                              p, n);
    st->header_len = (size_t)n;
    st->data_offset = 8 + (size_t)n;
    st->data_size = st->map.size - st->data_offset;

    json_error_t err;
    json_t *root = json_loadb((const char *)d + 8, (size_t)n, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        if (json_error_code(&err) == json_error_duplicate_key)
            return mend_set_error(MEND_EFORMAT, "%s: header has a duplicate tensor name (%s)", p, err.text);
        return mend_set_error(MEND_EFORMAT, "%s: header is not valid JSON: %s (line %d, column %d)",
                              p, err.text, err.line, err.column);
    }
    int rc = 0;
    if (!json_is_object(root)) {
        rc = mend_set_error(MEND_EFORMAT, "%s: header is not a JSON object", p);
        goto done;
    }
    size_t n_entries = json_object_size(root);
    st->tensors = calloc(n_entries ? n_entries : 1, sizeof *st->tensors);
    if (!st->tensors) {
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory for %zu tensor entries", p, n_entries);
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((rc = parse_metadata(st, val))) goto done;
            continue;
        }
        rc = parse_entry(st, key, val, &st->tensors[st->n_tensors]);
        st->n_tensors++;   /* counted even on failure so close() frees the name */
        if (rc) goto done;
    }
    rc = check_overlaps(st);
    if (!rc) rc = index_names(st);
done:
    json_decref(root);
    return rc;
}

int mend_safetensors_open(mend_safetensors **out, const char *path) {
    if (!out || !path) return mend_set_error(MEND_EINVAL, "mend_safetensors_open: NULL argument");
    *out = NULL;
    mend_safetensors *st = calloc(1, sizeof *st);
    if (!st) return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    st->map.fd = -1;
    st->path = mend_strdup(path);
    if (!st->path) {
        free(st);
        return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    }
    int rc = mend_map_file(&st->map, path);
    if (rc == 0) rc = parse_header(st);
    if (rc) {
        mend_safetensors_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

const mend_st_tensor *mend_safetensors_find(const mend_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    if (st->by_name) {
        size_t lo = 0, hi = st->n_tensors;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = strcmp(st->by_name[mid]->name, name);
            if (c == 0) return st->by_name[mid];
            if (c < 0) lo = mid + 1;
            else hi = mid;
        }
        return NULL;
    }
    for (size_t i = 0; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *mend_safetensors_meta(const mend_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_vals[i];
    return NULL;
}

int mend_safetensors_read_f32(const mend_safetensors *st, const mend_st_tensor *t,
                              int64_t first, int64_t n, float *dst) {
    const char *p = st && st->path ? st->path : "safetensors";
    if (!t || (!dst && n > 0)) return mend_set_error(MEND_EINVAL, "%s: read_f32: NULL argument", p);
    if (first < 0 || n < 0 || first > t->n_elems || n > t->n_elems - first)
        return mend_set_error(MEND_ERANGE, "%s: tensor '%s': elements [%" PRId64 ", %" PRId64 ") are outside "
                              "its %" PRId64 " elements", p, t->name, first, first + n, t->n_elems);
    const uint8_t *src = (const uint8_t *)t->data + (size_t)first * t->elem_size;
    switch (t->type) {
    case MEND_TYPE_F32:
        if (n) memcpy(dst, src, (size_t)n * 4);
        return 0;
    case MEND_TYPE_F16:
        #pragma omp parallel for if (n > (1 << 18)) schedule(static)
        for (int64_t i = 0; i < n; i++) dst[i] = mend_fp16_to_f32(mend_rd16(src + 2 * i));
        return 0;
    case MEND_TYPE_BF16:
        #pragma omp parallel for if (n > (1 << 18)) schedule(static)
        for (int64_t i = 0; i < n; i++) dst[i] = mend_bf16_to_f32(mend_rd16(src + 2 * i));
        return 0;
    default:
        return mend_set_error(MEND_EUNSUPPORTED, "%s: tensor '%s' has dtype %s; mend reads only F32, F16 and BF16",
                              p, t->name, t->dtype);
    }
}

/* ---- writer ---- */

int mend_safetensors_write(const char *path, const mend_st_out *tensors, size_t n_tensors,
                           const char *const *metadata) {
    if (!path) return mend_set_error(MEND_EINVAL, "mend_safetensors_write: NULL path");
    if (n_tensors && !tensors) return mend_set_error(MEND_EINVAL, "%s: NULL tensor array", path);
    char sb[256];
    int rc = 0;
    char *hdr = NULL;
    uint8_t *buf = NULL;
    json_t *root = json_object();
    if (!root) return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);

    if (metadata) {
        json_t *m = json_object();
        if (!m || json_object_set_new(root, "__metadata__", m)) {
            rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        for (size_t i = 0; metadata[i]; i += 2) {
            if (!metadata[i + 1]) {
                rc = mend_set_error(MEND_EINVAL, "%s: metadata key '%s' has no value", path, metadata[i]);
                goto done;
            }
            if (json_object_get(m, metadata[i])) {
                rc = mend_set_error(MEND_EINVAL, "%s: metadata key '%s' appears twice", path, metadata[i]);
                goto done;
            }
            json_t *s = json_string(metadata[i + 1]);
            if (!s) {
                rc = mend_set_error(MEND_EINVAL, "%s: metadata key '%s': value is not valid UTF-8", path,
                                    metadata[i]);
                goto done;
            }
            if (json_object_set_new(m, metadata[i], s)) {
                rc = mend_set_error(MEND_EINVAL, "%s: metadata key '%s' is not valid UTF-8", path, metadata[i]);
                goto done;
            }
        }
    }

    size_t off = 0;
    for (size_t i = 0; i < n_tensors; i++) {
        const mend_st_out *t = &tensors[i];
        if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0) {
            rc = mend_set_error(MEND_EINVAL, "%s: tensor %zu has an empty or reserved name", path, i);
            goto done;
        }
        if (json_object_get(root, t->name)) {
            rc = mend_set_error(MEND_EINVAL, "%s: tensor name '%s' appears twice", path, t->name);
            goto done;
        }
        const struct st_dtype *dt = dtype_by_type(t->type);
        if (!dt) {
            rc = mend_set_error(MEND_EUNSUPPORTED, "%s: tensor '%s': type %d cannot be written "
                                "(expected F32, F16 or BF16)", path, t->name, t->type);
            goto done;
        }
        if (t->n_dims < 0 || t->n_dims > MEND_ST_MAX_DIMS) {
            rc = mend_set_error(MEND_EINVAL, "%s: tensor '%s': n_dims %d is outside [0, %d]",
                                path, t->name, t->n_dims, MEND_ST_MAX_DIMS);
            goto done;
        }
        size_t ne = 1, nb;
        json_t *shape = json_array();
        if (!shape) {
            rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        for (int d = 0; d < t->n_dims; d++) {
            if (t->shape[d] < 0 || (uint64_t)t->shape[d] > SIZE_MAX ||
                !mend_mul_ok(ne, (size_t)t->shape[d], &ne)) {
                json_decref(shape);
                rc = mend_set_error(MEND_ERANGE, "%s: tensor '%s': shape %s is negative or overflows",
                                    path, t->name, fmt_shape(sb, sizeof sb, t->shape, t->n_dims));
                goto done;
            }
            json_array_append_new(shape, json_integer((json_int_t)t->shape[d]));
        }
        size_t end;
        if (!mend_mul_ok(ne, dt->size, &nb) || !mend_add_ok(off, nb, &end) || end > (size_t)INT64_MAX) {
            json_decref(shape);
            rc = mend_set_error(MEND_ERANGE, "%s: tensor '%s': byte size overflows", path, t->name);
            goto done;
        }
        if (nb && !t->data) {
            json_decref(shape);
            rc = mend_set_error(MEND_EINVAL, "%s: tensor '%s': NULL data for %zu bytes", path, t->name, nb);
            goto done;
        }
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", dt->name, "shape", shape, "data_offsets",
                              (json_int_t)off, (json_int_t)end);
        if (!e || json_object_set_new(root, t->name, e)) {
            rc = mend_set_error(MEND_EINVAL, "%s: tensor '%s': cannot add to header (name not UTF-8?)",
                                path, t->name);
            goto done;
        }
        off = end;
    }

    hdr = json_dumps(root, JSON_COMPACT);
    if (!hdr) {
        rc = mend_set_error(MEND_ENOMEM, "%s: cannot serialize header", path);
        goto done;
    }
    size_t hl = strlen(hdr);
    size_t padded = (hl + 7) & ~(size_t)7;
    size_t total;
    if (!mend_add_ok(8 + padded, off, &total)) {
        rc = mend_set_error(MEND_ERANGE, "%s: file size overflows", path);
        goto done;
    }
    buf = malloc(total ? total : 1);
    if (!buf) {
        rc = mend_set_error(MEND_ENOMEM, "%s: cannot allocate %zu bytes", path, total);
        goto done;
    }
    uint64_t n64 = padded;
    memcpy(buf, &n64, 8);     /* little endian host */
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    uint8_t *dp = buf + 8 + padded;
    for (size_t i = 0; i < n_tensors; i++) {
        const mend_st_out *t = &tensors[i];
        size_t ne = 1;
        for (int d = 0; d < t->n_dims; d++) ne *= (size_t)t->shape[d];
        size_t nb = ne * dtype_by_type(t->type)->size;
        if (nb) memcpy(dp, t->data, nb);
        dp += nb;
    }
    rc = mend_write_file_atomic(path, buf, total);
done:
    free(buf);
    free(hdr);
    json_decref(root);
    return rc;
}
