/* GGUF v2/v3 reader. Every count, length and offset is checked against the
 * file size and for overflow before it is used; errors name the file and
 * the key or tensor being read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/gguf.h"
#include "io/types.h"

typedef struct rd {
    const uint8_t *p;
    size_t size, off;
    const char *path;
} rd;

static const char *const vtype_names[GGUF_TYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64",
};

size_t gguf_type_size(uint32_t t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(uint32_t t) { return t < GGUF_TYPE_COUNT ? vtype_names[t] : "unknown"; }

static int need(rd *r, size_t n, const char *what) {
    if (n > r->size - r->off)
        return mend_set_error(MEND_EFORMAT, "%s: truncated at byte %zu while reading %s (need %zu bytes, %zu left)",
                              r->path, r->off, what, n, r->size - r->off);
    return 0;
}

static int rd_u32(rd *r, uint32_t *v, const char *what) {
    int rc = need(r, 4, what);
    if (rc) return rc;
    *v = mend_rd32(r->p + r->off);
    r->off += 4;
    return 0;
}

static int rd_u64(rd *r, uint64_t *v, const char *what) {
    int rc = need(r, 8, what);
    if (rc) return rc;
    *v = mend_rd64(r->p + r->off);
    r->off += 8;
    return 0;
}

/* string: u64 len + bytes. Copies into a NUL-terminated buffer. */
static int rd_str(rd *r, char **s, uint64_t *len, const char *what) {
    uint64_t n;
    int rc = rd_u64(r, &n, what);
    if (rc) return rc;
    if (n > GGUF_MAX_STRING)
        return mend_set_error(MEND_ERANGE, "%s: %s has length %llu, more than the limit of %u bytes",
                              r->path, what, (unsigned long long)n, GGUF_MAX_STRING);
    rc = need(r, (size_t)n, what);
    if (rc) return rc;
    *s = mend_strndup((const char *)r->p + r->off, (size_t)n);
    if (!*s) return mend_set_error(MEND_ENOMEM, "%s: out of memory reading %s", r->path, what);
    if (len) *len = n;
    r->off += (size_t)n;
    return 0;
}

static int rd_scalar(rd *r, gguf_kv *kv, uint32_t t) {
    size_t sz = gguf_type_size(t);
    int rc = need(r, sz, kv->key);
    if (rc) return rc;
    const uint8_t *p = r->p + r->off;
    switch (t) {
    case GGUF_TYPE_UINT8: kv->v.u = p[0]; break;
    case GGUF_TYPE_INT8: kv->v.i = (int8_t)p[0]; break;
    case GGUF_TYPE_BOOL:
        if (p[0] > 1) return mend_set_error(MEND_EFORMAT, "%s: key '%s': bool value %u is neither 0 nor 1", r->path, kv->key, p[0]);
        kv->v.u = p[0];
        break;
    case GGUF_TYPE_UINT16: kv->v.u = mend_rd16(p); break;
    case GGUF_TYPE_INT16: kv->v.i = (int16_t)mend_rd16(p); break;
    case GGUF_TYPE_UINT32: kv->v.u = mend_rd32(p); break;
    case GGUF_TYPE_INT32: kv->v.i = (int32_t)mend_rd32(p); break;
    case GGUF_TYPE_UINT64: kv->v.u = mend_rd64(p); break;
    case GGUF_TYPE_INT64: kv->v.i = (int64_t)mend_rd64(p); break;
    case GGUF_TYPE_FLOAT32: { float f; memcpy(&f, p, 4); kv->v.f = f; break; }
    case GGUF_TYPE_FLOAT64: { double f; memcpy(&f, p, 8); kv->v.f = f; break; }
    default: return mend_set_error(MEND_EFORMAT, "%s: key '%s': bad scalar type %u", r->path, kv->key, t);
    }
    r->off += sz;
    return 0;
}

/* Skip (validate) an array of arrays without storing it. depth-limited. */
static int skip_array(rd *r, const char *key, int depth) {
    if (depth > 4) return mend_set_error(MEND_EFORMAT, "%s: key '%s': arrays nested more than 4 deep", r->path, key);
    uint32_t et;
    uint64_t n;
    int rc = rd_u32(r, &et, key);
    if (!rc) rc = rd_u64(r, &n, key);
    if (rc) return rc;
    if (et >= GGUF_TYPE_COUNT) return mend_set_error(MEND_EFORMAT, "%s: key '%s': unknown array element type %u", r->path, key, et);
    if (n > GGUF_MAX_ARRAY) return mend_set_error(MEND_ERANGE, "%s: key '%s': array of %llu elements exceeds the limit", r->path, key, (unsigned long long)n);
    size_t es = gguf_type_size(et);
    if (es) {
        size_t bytes;
        if (!mend_mul_ok((size_t)n, es, &bytes)) return mend_set_error(MEND_ERANGE, "%s: key '%s': array size overflows", r->path, key);
        rc = need(r, bytes, key);
        if (rc) return rc;
        r->off += bytes;
        return 0;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (et == GGUF_TYPE_STRING) {
            uint64_t len;
            rc = rd_u64(r, &len, key);
            if (!rc) rc = need(r, (size_t)(len > r->size ? r->size + 1 : len), key);
            if (rc) return rc;
            r->off += (size_t)len;
        } else {
            rc = skip_array(r, key, depth + 1);
            if (rc) return rc;
        }
    }
    return 0;
}

static int rd_array(rd *r, gguf_kv *kv) {
    uint32_t et;
    uint64_t n;
    int rc = rd_u32(r, &et, kv->key);
    if (!rc) rc = rd_u64(r, &n, kv->key);
    if (rc) return rc;
    if (et >= GGUF_TYPE_COUNT)
        return mend_set_error(MEND_EFORMAT, "%s: key '%s': unknown array element type %u", r->path, kv->key, et);
    if (n > GGUF_MAX_ARRAY)
        return mend_set_error(MEND_ERANGE, "%s: key '%s': array of %llu elements exceeds the limit of %u",
                              r->path, kv->key, (unsigned long long)n, GGUF_MAX_ARRAY);
    kv->arr_type = et;
    kv->n = n;
    size_t es = gguf_type_size(et);
    if (es) {
        size_t bytes;
        if (!mend_mul_ok((size_t)n, es, &bytes))
            return mend_set_error(MEND_ERANGE, "%s: key '%s': array size overflows", r->path, kv->key);
        rc = need(r, bytes, kv->key);
        if (rc) return rc;
        kv->arr_raw = r->p + r->off;
        r->off += bytes;
        return 0;
    }
    if (et == GGUF_TYPE_STRING) {
        /* each element needs at least 8 bytes: bound n by the bytes left before allocating */
        if (n > (r->size - r->off) / 8)
            return mend_set_error(MEND_EFORMAT, "%s: key '%s': %llu strings cannot fit in the %zu bytes left",
                                  r->path, kv->key, (unsigned long long)n, r->size - r->off);
        kv->arr_str = calloc(n ? n : 1, sizeof(char *));
        kv->arr_slen = calloc(n ? n : 1, sizeof(uint64_t));
        if (!kv->arr_str || !kv->arr_slen) return mend_set_error(MEND_ENOMEM, "%s: out of memory for key '%s'", r->path, kv->key);
        for (uint64_t i = 0; i < n; i++) {
            rc = rd_str(r, &kv->arr_str[i], &kv->arr_slen[i], kv->key);
            if (rc) return rc;
        }
        return 0;
    }
    /* nested arrays: validated and skipped */
    for (uint64_t i = 0; i < n; i++) {
        rc = skip_array(r, kv->key, 1);
        if (rc) return rc;
    }
    return 0;
}

static void free_kv(gguf_kv *kv) {
    free(kv->key);
    if (kv->type == GGUF_TYPE_STRING) free(kv->v.s);
    if (kv->arr_str) {
        for (uint64_t i = 0; i < kv->n; i++) free(kv->arr_str[i]);
        free(kv->arr_str);
    }
    free(kv->arr_slen);
}

void mend_gguf_close(mend_gguf *g) {
    if (!g) return;
    for (uint64_t i = 0; i < g->n_kv; i++) free_kv(&g->kv[i]);
    free(g->kv);
    for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    free(g->kv_index);
    free(g->tensor_index);
    if (!g->borrowed) mend_unmap(&g->map);
    free(g->path);
    free(g);
}

/* Name indexes. Duplicate keys and tensor names are refused, and a scan of
 * the names before each one made that quadratic: a 2 MB file of 10^5 keys
 * took 10 s to reject and the 2^20 keys the limits allow would take hours.
 * Open addressing with linear probing over at least twice as many slots as
 * names; a name is compared as a C string, as strcmp did. */
static uint64_t name_hash(const char *s) { return mend_fnv1a(MEND_FNV1A_INIT, s, strlen(s)); }

static int index_new(uint32_t **slots, uint64_t *mask, uint64_t n) {
    uint64_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    *slots = calloc(cap, sizeof **slots);
    *mask = cap - 1;
    return *slots ? 0 : -1;
}

static const char *name_at(const mend_gguf *g, int tensors, uint32_t i) {
    return tensors ? g->tensors[i].name : g->kv[i].key;
}

/* Position of name in the index, or -(empty slot + 1) where it would go. */
static int64_t index_lookup(const mend_gguf *g, int tensors, const char *name) {
    const uint32_t *slots = tensors ? g->tensor_index : g->kv_index;
    uint64_t mask = tensors ? g->tensor_mask : g->kv_mask;
    for (uint64_t k = name_hash(name) & mask;; k = (k + 1) & mask) {
        if (!slots[k]) return -(int64_t)k - 1;
        const char *s = name_at(g, tensors, slots[k] - 1);
        if (s && strcmp(s, name) == 0) return (int64_t)slots[k] - 1;
    }
}

static int parse(mend_gguf *g) {
    rd r = {g->map.data, g->map.size, 0, g->path};
    int rc = need(&r, 4, "magic");
    if (rc) return rc;
    if (memcmp(r.p, "GGUF", 4) != 0)
        return mend_set_error(MEND_EFORMAT, "%s: not a GGUF file (magic is not \"GGUF\")", g->path);
    r.off = 4;
    if ((rc = rd_u32(&r, &g->version, "version"))) return rc;
    if (g->version < 2 || g->version > 3)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: GGUF version %u is not supported (2 or 3 expected)", g->path, g->version);
    uint64_t nt, nkv;
    if ((rc = rd_u64(&r, &nt, "tensor_count"))) return rc;
    if ((rc = rd_u64(&r, &nkv, "kv_count"))) return rc;
    if (nt > GGUF_MAX_TENSORS)
        return mend_set_error(MEND_ERANGE, "%s: tensor_count %llu exceeds the limit of %u", g->path, (unsigned long long)nt, GGUF_MAX_TENSORS);
    if (nkv > GGUF_MAX_KV)
        return mend_set_error(MEND_ERANGE, "%s: kv_count %llu exceeds the limit of %u", g->path, (unsigned long long)nkv, GGUF_MAX_KV);
    /* every kv takes >= 12 bytes and every tensor info >= 24: cheap plausibility bound */
    if (nkv > r.size / 12 || nt > r.size / 24)
        return mend_set_error(MEND_EFORMAT, "%s: kv_count %llu / tensor_count %llu cannot fit in a %zu-byte file",
                              g->path, (unsigned long long)nkv, (unsigned long long)nt, r.size);
    g->kv = calloc(nkv ? nkv : 1, sizeof(gguf_kv));
    g->tensors = calloc(nt ? nt : 1, sizeof(gguf_tensor));
    if (!g->kv || !g->tensors || index_new(&g->kv_index, &g->kv_mask, nkv) ||
        index_new(&g->tensor_index, &g->tensor_mask, nt))
        return mend_set_error(MEND_ENOMEM, "%s: out of memory", g->path);

    for (uint64_t i = 0; i < nkv; i++) {
        gguf_kv *kv = &g->kv[i];
        g->n_kv = i + 1;
        char what[64];
        snprintf(what, sizeof what, "the key of metadata entry %llu", (unsigned long long)i);
        if ((rc = rd_str(&r, &kv->key, NULL, what))) return rc;
        if ((rc = rd_u32(&r, &kv->type, kv->key))) return rc;
        int64_t at = index_lookup(g, 0, kv->key);
        if (at >= 0) return mend_set_error(MEND_EFORMAT, "%s: duplicate metadata key '%s'", g->path, kv->key);
        g->kv_index[-at - 1] = (uint32_t)i + 1;
        if (kv->type == GGUF_TYPE_STRING) {
            kv->type = GGUF_TYPE_UINT8; /* not owning a string until read succeeds */
            char *s = NULL;
            uint64_t len = 0;
            if ((rc = rd_str(&r, &s, &len, kv->key))) return rc;
            kv->type = GGUF_TYPE_STRING;
            kv->v.s = s;
            kv->slen = len;
        } else if (kv->type == GGUF_TYPE_ARRAY) {
            if ((rc = rd_array(&r, kv))) return rc;
        } else if (kv->type < GGUF_TYPE_COUNT) {
            if ((rc = rd_scalar(&r, kv, kv->type))) return rc;
        } else {
            return mend_set_error(MEND_EFORMAT, "%s: key '%s': unknown value type %u", g->path, kv->key, kv->type);
        }
    }

    g->alignment = 32;
    const gguf_kv *al = mend_gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != GGUF_TYPE_UINT32 || al->v.u == 0 || (al->v.u & (al->v.u - 1)) || al->v.u > (1u << 20))
            return mend_set_error(MEND_EFORMAT, "%s: general.alignment must be a uint32 power of two (got %llu)",
                                  g->path, (unsigned long long)al->v.u);
        g->alignment = (size_t)al->v.u;
    }

    for (uint64_t i = 0; i < nt; i++) {
        gguf_tensor *t = &g->tensors[i];
        g->n_tensors = i + 1;
        char what[64];
        snprintf(what, sizeof what, "the name of tensor %llu", (unsigned long long)i);
        if ((rc = rd_str(&r, &t->name, NULL, what))) return rc;
        if ((rc = rd_u32(&r, &t->n_dims, t->name))) return rc;
        if (t->n_dims < 1 || t->n_dims > 4)
            return mend_set_error(MEND_EFORMAT, "%s: tensor '%s': n_dims %u (1 to 4 expected)", g->path, t->name, t->n_dims);
        size_t nel = 1;
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t ne;
            if ((rc = rd_u64(&r, &ne, t->name))) return rc;
            if (ne == 0 || ne > (1ull << 40))
                return mend_set_error(MEND_ERANGE, "%s: tensor '%s': dimension %u is %llu", g->path, t->name, d, (unsigned long long)ne);
            t->ne[d] = (int64_t)ne;
            if (!mend_mul_ok(nel, (size_t)ne, &nel))
                return mend_set_error(MEND_ERANGE, "%s: tensor '%s': element count overflows", g->path, t->name);
        }
        if ((rc = rd_u32(&r, &t->type, t->name))) return rc;
        if ((rc = rd_u64(&r, &t->offset, t->name))) return rc;
        const mend_type_traits *tt = mend_type_get(t->type);
        if (!tt)
            return mend_set_error(MEND_EUNSUPPORTED, "%s: tensor '%s': ggml type %u is not supported", g->path, t->name, t->type);
        if (t->ne[0] % tt->blck_size)
            return mend_set_error(MEND_EFORMAT, "%s: tensor '%s': row length %lld is not a multiple of the %s block size %lld",
                                  g->path, t->name, (long long)t->ne[0], tt->name, (long long)tt->blck_size);
        size_t nb;
        if (!mend_mul_ok(nel / (size_t)tt->blck_size, tt->type_size, &nb))
            return mend_set_error(MEND_ERANGE, "%s: tensor '%s': byte size overflows", g->path, t->name);
        t->nbytes = nb;
        if (t->offset % g->alignment)
            return mend_set_error(MEND_EFORMAT, "%s: tensor '%s': offset %llu is not aligned to %zu",
                                  g->path, t->name, (unsigned long long)t->offset, g->alignment);
        int64_t at = index_lookup(g, 1, t->name);
        if (at >= 0) return mend_set_error(MEND_EFORMAT, "%s: duplicate tensor name '%s'", g->path, t->name);
        g->tensor_index[-at - 1] = (uint32_t)i + 1;
    }

    size_t data = r.off;
    if (data % g->alignment) data += g->alignment - data % g->alignment;
    g->data_offset = data;
    if (nt && data > r.size)
        return mend_set_error(MEND_EFORMAT, "%s: truncated: the tensor data section would start at byte %zu of a %zu-byte file",
                              g->path, data, r.size);
    for (uint64_t i = 0; i < nt; i++) {
        gguf_tensor *t = &g->tensors[i];
        size_t start, end;
        if (!mend_add_ok(data, (size_t)t->offset, &start) || !mend_add_ok(start, t->nbytes, &end) || end > r.size)
            return mend_set_error(MEND_EFORMAT, "%s: tensor '%s': data [%llu, +%zu) runs past the end of the file (%zu bytes)",
                                  g->path, t->name, (unsigned long long)t->offset, t->nbytes, r.size);
        t->data = r.p + start;
    }
    return 0;
}

static int open_common(mend_gguf **out, mend_gguf *g) {
    int rc = parse(g);
    if (rc) {
        mend_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int mend_gguf_open(mend_gguf **out, const char *path) {
    *out = NULL;
    mend_gguf *g = calloc(1, sizeof *g);
    if (!g) return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    g->map.fd = -1;
    g->path = mend_strdup(path);
    int rc = mend_map_file(&g->map, path);
    if (rc) {
        mend_gguf_close(g);
        return rc;
    }
    return open_common(out, g);
}

int mend_gguf_open_mem(mend_gguf **out, const void *buf, size_t len, const char *name) {
    *out = NULL;
    mend_gguf *g = calloc(1, sizeof *g);
    if (!g) return mend_set_error(MEND_ENOMEM, "%s: out of memory", name ? name : "<memory>");
    g->map.fd = -1;
    g->map.data = buf;
    g->map.size = len;
    g->borrowed = 1;
    g->path = mend_strdup(name ? name : "<memory>");
    return open_common(out, g);
}

const gguf_kv *mend_gguf_find(const mend_gguf *g, const char *key) {
    if (g->kv_index) {
        int64_t at = index_lookup(g, 0, key);
        return at >= 0 ? &g->kv[at] : NULL;
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const gguf_tensor *mend_gguf_find_tensor(const mend_gguf *g, const char *name) {
    if (g->tensor_index) {
        int64_t at = index_lookup(g, 1, name);
        return at >= 0 ? &g->tensors[at] : NULL;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static int is_int_type(uint32_t t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_INT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_INT16 ||
           t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64 ||
           t == GGUF_TYPE_BOOL;
}
static int is_signed(uint32_t t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

static int missing(const mend_gguf *g, const char *key) {
    return mend_set_error(MEND_EFORMAT, "%s: required metadata key '%s' is missing", g->path, key);
}
static int wrong(const mend_gguf *g, const gguf_kv *kv, const char *expected) {
    return mend_set_error(MEND_EFORMAT, "%s: metadata key '%s' has type %s (%s expected)", g->path, kv->key,
                          gguf_type_name(kv->type), expected);
}

int mend_gguf_opt_int(const mend_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = mend_gguf_find(g, key);
    if (!kv) return 0;
    if (!is_int_type(kv->type)) return wrong(g, kv, "an integer");
    if (!is_signed(kv->type) && kv->v.u > (uint64_t)INT64_MAX)
        return mend_set_error(MEND_ERANGE, "%s: metadata key '%s' value %llu is out of range", g->path, key,
                              (unsigned long long)kv->v.u);
    *out = is_signed(kv->type) ? kv->v.i : (int64_t)kv->v.u;
    return 0;
}

int mend_gguf_get_int(const mend_gguf *g, const char *key, int64_t *out) {
    if (!mend_gguf_find(g, key)) return missing(g, key);
    return mend_gguf_opt_int(g, key, out);
}

int mend_gguf_opt_float(const mend_gguf *g, const char *key, double *out) {
    const gguf_kv *kv = mend_gguf_find(g, key);
    if (!kv) return 0;
    if (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64) *out = kv->v.f;
    else if (is_int_type(kv->type)) *out = is_signed(kv->type) ? (double)kv->v.i : (double)kv->v.u;
    else return wrong(g, kv, "a number");
    return 0;
}

int mend_gguf_get_float(const mend_gguf *g, const char *key, double *out) {
    if (!mend_gguf_find(g, key)) return missing(g, key);
    return mend_gguf_opt_float(g, key, out);
}

int mend_gguf_opt_bool(const mend_gguf *g, const char *key, int *out) {
    const gguf_kv *kv = mend_gguf_find(g, key);
    if (!kv) return 0;
    if (!is_int_type(kv->type)) return wrong(g, kv, "a bool");
    *out = kv->v.u != 0;
    return 0;
}

int mend_gguf_get_bool(const mend_gguf *g, const char *key, int *out) {
    if (!mend_gguf_find(g, key)) return missing(g, key);
    return mend_gguf_opt_bool(g, key, out);
}

int mend_gguf_get_str(const mend_gguf *g, const char *key, const char **out) {
    const gguf_kv *kv = mend_gguf_find(g, key);
    if (!kv) return missing(g, key);
    if (kv->type != GGUF_TYPE_STRING) return wrong(g, kv, "a string");
    *out = kv->v.s;
    return 0;
}

double gguf_arr_f64(const gguf_kv *kv, uint64_t i) {
    const uint8_t *p = kv->arr_raw + i * gguf_type_size(kv->arr_type);
    switch (kv->arr_type) {
    case GGUF_TYPE_FLOAT32: { float f; memcpy(&f, p, 4); return f; }
    case GGUF_TYPE_FLOAT64: { double f; memcpy(&f, p, 8); return f; }
    default: return (double)gguf_arr_i64(kv, i);
    }
}

/* Float array elements come from the file: NaN and values beyond int64 must
 * not reach a C conversion (undefined behaviour), so they saturate. */
static int64_t f64_to_i64_sat(double f) {
    if (!(f == f)) return 0;
    if (f >= 9.2233720368547758e18) return INT64_MAX;
    if (f <= -9.2233720368547758e18) return INT64_MIN;
    return (int64_t)f;
}

int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i) {
    const uint8_t *p = kv->arr_raw + i * gguf_type_size(kv->arr_type);
    switch (kv->arr_type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: return p[0];
    case GGUF_TYPE_INT8: return (int8_t)p[0];
    case GGUF_TYPE_UINT16: return mend_rd16(p);
    case GGUF_TYPE_INT16: return (int16_t)mend_rd16(p);
    case GGUF_TYPE_UINT32: return mend_rd32(p);
    case GGUF_TYPE_INT32: return (int32_t)mend_rd32(p);
    case GGUF_TYPE_UINT64: return (int64_t)mend_rd64(p);
    case GGUF_TYPE_INT64: return (int64_t)mend_rd64(p);
    case GGUF_TYPE_FLOAT32: { float f; memcpy(&f, p, 4); return f64_to_i64_sat(f); }
    case GGUF_TYPE_FLOAT64: { double f; memcpy(&f, p, 8); return f64_to_i64_sat(f); }
    default: return 0;
    }
}
