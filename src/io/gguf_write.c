/* GGUF v3 writer. Metadata values are copied into the writer; tensor data is
 * borrowed and streamed straight from the caller's buffers into a temporary
 * file next to the target, which is fsync'd and renamed over it, so a crash
 * or a full disk never leaves a half-written model under the final name. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "io/gguf.h"
#include "io/types.h"

#define GGUF_MAX_NAME 63          /* llama.cpp's GGML_MAX_NAME (64) minus the NUL */
#define GGUF_MAX_KEY  65535

typedef struct wkv {
    char *key;
    uint32_t type;        /* enum gguf_vtype */
    uint32_t arr_type;
    uint64_t n;           /* array length */
    uint8_t scalar[8];    /* little-endian scalar value */
    char *s;              /* string value */
    uint64_t slen;
    uint8_t *raw;         /* numeric array bytes */
    char **strs;          /* string array */
    uint64_t *lens;
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
    const void *data;
    size_t nbytes;
    uint64_t offset;
} wtensor;

struct mend_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

int mend_gguf_writer_init(mend_gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return mend_set_error(MEND_ENOMEM, "gguf writer: out of memory");
    return 0;
}

static void wkv_clear(wkv *kv) {
    free(kv->s);
    free(kv->raw);
    if (kv->strs)
        for (uint64_t i = 0; i < kv->n; i++) free(kv->strs[i]);
    free(kv->strs);
    free(kv->lens);
    kv->s = NULL;
    kv->raw = NULL;
    kv->strs = NULL;
    kv->lens = NULL;
}

void mend_gguf_writer_free(mend_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        wkv_clear(&w->kv[i]);
        free(w->kv[i].key);
    }
    free(w->kv);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

/* The entry for key: the existing one (its old value released) or a new one
 * at the end. */
static int slot(mend_gguf_writer *w, const char *key, wkv **out) {
    *out = NULL;
    if (!w || !key) return mend_set_error(MEND_EINVAL, "gguf writer: NULL writer or key");
    size_t kl = strlen(key);
    if (kl == 0 || kl > GGUF_MAX_KEY)
        return mend_set_error(MEND_EINVAL, "gguf writer: metadata key of length %zu (1 to %d bytes expected)", kl, GGUF_MAX_KEY);
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) {
            wkv_clear(&w->kv[i]);
            *out = &w->kv[i];
            return 0;
        }
    if (w->n_kv >= GGUF_MAX_KV) return mend_set_error(MEND_ERANGE, "gguf writer: more than %u metadata keys", GGUF_MAX_KV);
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *p = realloc(w->kv, cap * sizeof *p);
        if (!p) return mend_set_error(MEND_ENOMEM, "gguf writer: out of memory adding key '%s'", key);
        w->kv = p;
        w->cap_kv = cap;
    }
    wkv *kv = &w->kv[w->n_kv];
    memset(kv, 0, sizeof *kv);
    kv->key = mend_strdup(key);
    if (!kv->key) return mend_set_error(MEND_ENOMEM, "gguf writer: out of memory adding key '%s'", key);
    w->n_kv++;
    *out = kv;
    return 0;
}

static int set_scalar(mend_gguf_writer *w, const char *key, uint32_t type, const void *le, size_t sz) {
    wkv *kv;
    int rc = slot(w, key, &kv);
    if (rc) return rc;
    kv->type = type;
    kv->n = 0;
    memset(kv->scalar, 0, sizeof kv->scalar);
    memcpy(kv->scalar, le, sz);
    return 0;
}

int mend_gguf_writer_set_u8(mend_gguf_writer *w, const char *k, uint8_t v) { return set_scalar(w, k, GGUF_TYPE_UINT8, &v, 1); }
int mend_gguf_writer_set_i8(mend_gguf_writer *w, const char *k, int8_t v) { return set_scalar(w, k, GGUF_TYPE_INT8, &v, 1); }
int mend_gguf_writer_set_u16(mend_gguf_writer *w, const char *k, uint16_t v) { return set_scalar(w, k, GGUF_TYPE_UINT16, &v, 2); }
int mend_gguf_writer_set_i16(mend_gguf_writer *w, const char *k, int16_t v) { return set_scalar(w, k, GGUF_TYPE_INT16, &v, 2); }
int mend_gguf_writer_set_u32(mend_gguf_writer *w, const char *k, uint32_t v) { return set_scalar(w, k, GGUF_TYPE_UINT32, &v, 4); }
int mend_gguf_writer_set_i32(mend_gguf_writer *w, const char *k, int32_t v) { return set_scalar(w, k, GGUF_TYPE_INT32, &v, 4); }
int mend_gguf_writer_set_u64(mend_gguf_writer *w, const char *k, uint64_t v) { return set_scalar(w, k, GGUF_TYPE_UINT64, &v, 8); }
int mend_gguf_writer_set_i64(mend_gguf_writer *w, const char *k, int64_t v) { return set_scalar(w, k, GGUF_TYPE_INT64, &v, 8); }
int mend_gguf_writer_set_f32(mend_gguf_writer *w, const char *k, float v) { return set_scalar(w, k, GGUF_TYPE_FLOAT32, &v, 4); }
int mend_gguf_writer_set_f64(mend_gguf_writer *w, const char *k, double v) { return set_scalar(w, k, GGUF_TYPE_FLOAT64, &v, 8); }
int mend_gguf_writer_set_bool(mend_gguf_writer *w, const char *k, int v) {
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, k, GGUF_TYPE_BOOL, &b, 1);
}

int mend_gguf_writer_set_strn(mend_gguf_writer *w, const char *key, const char *s, uint64_t len) {
    if (!s && len) return mend_set_error(MEND_EINVAL, "gguf writer: key '%s': NULL string", key ? key : "");
    if (len > GGUF_MAX_STRING)
        return mend_set_error(MEND_ERANGE, "gguf writer: key '%s': string of %llu bytes exceeds the limit of %u",
                              key ? key : "", (unsigned long long)len, GGUF_MAX_STRING);
    char *copy = mend_strndup(s ? s : "", (size_t)len);
    if (!copy) return mend_set_error(MEND_ENOMEM, "gguf writer: out of memory for key '%s'", key ? key : "");
    wkv *kv;
    int rc = slot(w, key, &kv);
    if (rc) {
        free(copy);
        return rc;
    }
    kv->type = GGUF_TYPE_STRING;
    kv->s = copy;
    kv->slen = len;
    return 0;
}

int mend_gguf_writer_set_str(mend_gguf_writer *w, const char *key, const char *s) {
    if (!s) return mend_set_error(MEND_EINVAL, "gguf writer: key '%s': NULL string", key ? key : "");
    return mend_gguf_writer_set_strn(w, key, s, strlen(s));
}

int mend_gguf_writer_set_arr(mend_gguf_writer *w, const char *key, uint32_t et, const void *data, uint64_t n) {
    size_t es = gguf_type_size(et);
    if (!es)
        return mend_set_error(MEND_EINVAL, "gguf writer: key '%s': array element type %s is not a numeric scalar",
                              key ? key : "", gguf_type_name(et));
    if (n > GGUF_MAX_ARRAY)
        return mend_set_error(MEND_ERANGE, "gguf writer: key '%s': array of %llu elements exceeds the limit of %u",
                              key ? key : "", (unsigned long long)n, GGUF_MAX_ARRAY);
    if (!data && n) return mend_set_error(MEND_EINVAL, "gguf writer: key '%s': NULL array data", key ? key : "");
    size_t bytes = (size_t)n * es;   /* n <= 2^28, es <= 8: no overflow */
    uint8_t *copy = malloc(bytes ? bytes : 1);
    if (!copy) return mend_set_error(MEND_ENOMEM, "gguf writer: out of memory for key '%s'", key ? key : "");
    if (bytes) memcpy(copy, data, bytes);
    wkv *kv;
    int rc = slot(w, key, &kv);
    if (rc) {
        free(copy);
        return rc;
    }
    kv->type = GGUF_TYPE_ARRAY;
    kv->arr_type = et;
    kv->n = n;
    kv->raw = copy;
    return 0;
}

int mend_gguf_writer_set_arr_str(mend_gguf_writer *w, const char *key, const char *const *strs,
                                 const uint64_t *lens, uint64_t n) {
    if (n > GGUF_MAX_ARRAY)
        return mend_set_error(MEND_ERANGE, "gguf writer: key '%s': array of %llu strings exceeds the limit of %u",
                              key ? key : "", (unsigned long long)n, GGUF_MAX_ARRAY);
    if (!strs && n) return mend_set_error(MEND_EINVAL, "gguf writer: key '%s': NULL string array", key ? key : "");
    char **cs = calloc(n ? n : 1, sizeof *cs);
    uint64_t *cl = calloc(n ? n : 1, sizeof *cl);
    int rc = 0;
    if (!cs || !cl) rc = mend_set_error(MEND_ENOMEM, "gguf writer: out of memory for key '%s'", key ? key : "");
    for (uint64_t i = 0; !rc && i < n; i++) {
        if (!strs[i] && (!lens || lens[i])) {
            rc = mend_set_error(MEND_EINVAL, "gguf writer: key '%s': string %llu is NULL", key ? key : "", (unsigned long long)i);
            break;
        }
        uint64_t len = lens ? lens[i] : strlen(strs[i]);
        if (len > GGUF_MAX_STRING) {
            rc = mend_set_error(MEND_ERANGE, "gguf writer: key '%s': string %llu has %llu bytes, more than the limit",
                                key ? key : "", (unsigned long long)i, (unsigned long long)len);
            break;
        }
        cs[i] = mend_strndup(strs[i] ? strs[i] : "", (size_t)len);
        cl[i] = len;
        if (!cs[i]) rc = mend_set_error(MEND_ENOMEM, "gguf writer: out of memory for key '%s'", key ? key : "");
    }
    wkv *kv = NULL;
    if (!rc) rc = slot(w, key, &kv);
    if (rc) {
        if (cs)
            for (uint64_t i = 0; i < n; i++) free(cs[i]);
        free(cs);
        free(cl);
        return rc;
    }
    kv->type = GGUF_TYPE_ARRAY;
    kv->arr_type = GGUF_TYPE_STRING;
    kv->n = n;
    kv->strs = cs;
    kv->lens = cl;
    return 0;
}

int mend_gguf_writer_set_kv(mend_gguf_writer *w, const gguf_kv *kv) {
    if (!kv || !kv->key) return mend_set_error(MEND_EINVAL, "gguf writer: NULL metadata entry");
    const char *k = kv->key;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: return mend_gguf_writer_set_u8(w, k, (uint8_t)kv->v.u);
    case GGUF_TYPE_INT8: return mend_gguf_writer_set_i8(w, k, (int8_t)kv->v.i);
    case GGUF_TYPE_UINT16: return mend_gguf_writer_set_u16(w, k, (uint16_t)kv->v.u);
    case GGUF_TYPE_INT16: return mend_gguf_writer_set_i16(w, k, (int16_t)kv->v.i);
    case GGUF_TYPE_UINT32: return mend_gguf_writer_set_u32(w, k, (uint32_t)kv->v.u);
    case GGUF_TYPE_INT32: return mend_gguf_writer_set_i32(w, k, (int32_t)kv->v.i);
    case GGUF_TYPE_UINT64: return mend_gguf_writer_set_u64(w, k, kv->v.u);
    case GGUF_TYPE_INT64: return mend_gguf_writer_set_i64(w, k, kv->v.i);
    case GGUF_TYPE_FLOAT32: return mend_gguf_writer_set_f32(w, k, (float)kv->v.f);
    case GGUF_TYPE_FLOAT64: return mend_gguf_writer_set_f64(w, k, kv->v.f);
    case GGUF_TYPE_BOOL: return mend_gguf_writer_set_bool(w, k, kv->v.u != 0);
    case GGUF_TYPE_STRING: return mend_gguf_writer_set_strn(w, k, kv->v.s, kv->slen);
    case GGUF_TYPE_ARRAY:
        if (kv->arr_type == GGUF_TYPE_STRING)
            return mend_gguf_writer_set_arr_str(w, k, (const char *const *)kv->arr_str, kv->arr_slen, kv->n);
        if (!kv->arr_raw && kv->n)
            return mend_set_error(MEND_EUNSUPPORTED, "gguf writer: key '%s' holds nested arrays, which cannot be copied", k);
        return mend_gguf_writer_set_arr(w, k, kv->arr_type, kv->arr_raw, kv->n);
    default:
        return mend_set_error(MEND_EINVAL, "gguf writer: key '%s' has unknown value type %u", k, kv->type);
    }
}

int mend_gguf_writer_copy_kvs(mend_gguf_writer *w, const mend_gguf *g) {
    if (!w || !g) return mend_set_error(MEND_EINVAL, "gguf writer: NULL writer or source");
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        if (kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_ARRAY) continue;   /* nested: skipped */
        int rc = mend_gguf_writer_set_kv(w, kv);
        if (rc) return mend_error_prefix(rc, "copying metadata from %s", g->path);
    }
    return 0;
}

/* Remove the keys equal to key (prefix 0) or starting with it (prefix 1). */
static int remove_keys(mend_gguf_writer *w, const char *key, int prefix) {
    if (!w || !key) return mend_set_error(MEND_EINVAL, "gguf writer: NULL writer or key");
    const size_t kl = strlen(key);
    for (size_t i = 0; i < w->n_kv;) {
        if (prefix ? strncmp(w->kv[i].key, key, kl) != 0 : strcmp(w->kv[i].key, key) != 0) {
            i++;
            continue;
        }
        wkv_clear(&w->kv[i]);
        free(w->kv[i].key);
        memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - i - 1) * sizeof *w->kv);
        w->n_kv--;
    }
    return 0;
}

int mend_gguf_writer_remove(mend_gguf_writer *w, const char *key) { return remove_keys(w, key, 0); }
int mend_gguf_writer_remove_prefix(mend_gguf_writer *w, const char *prefix) { return remove_keys(w, prefix, 1); }

uint64_t mend_gguf_writer_hash_keys(const mend_gguf_writer *w, const char *prefix, uint64_t seed) {
    uint64_t h = seed;
    const size_t pl = strlen(prefix);
    for (size_t i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kv[i];
        if (strncmp(kv->key, prefix, pl) != 0) continue;
        h = mend_hash_step(h, mend_hash_bytes(kv->key, strlen(kv->key), seed));
        h = mend_hash_step(h, kv->type);
        if (kv->type == GGUF_TYPE_STRING) {
            h = mend_hash_step(h, mend_hash_bytes(kv->s, (size_t)kv->slen, seed));
        } else if (kv->type == GGUF_TYPE_ARRAY) {
            h = mend_hash_step(mend_hash_step(h, kv->arr_type), kv->n);
            if (kv->strs)
                for (uint64_t k = 0; k < kv->n; k++) h = mend_hash_step(h, mend_hash_bytes(kv->strs[k], (size_t)kv->lens[k], seed));
            else
                h = mend_hash_step(h, mend_hash_bytes(kv->raw, (size_t)kv->n * gguf_type_size(kv->arr_type), seed));
        } else {
            h = mend_hash_step(h, mend_hash_bytes(kv->scalar, sizeof kv->scalar, seed));
        }
    }
    return mend_hash_fmix(h);
}

int mend_gguf_writer_add_tensor(mend_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                const int64_t *ne, const void *data, size_t nbytes) {
    if (!w || !name || !ne) return mend_set_error(MEND_EINVAL, "gguf writer: NULL writer, tensor name or shape");
    size_t nl = strlen(name);
    if (nl == 0 || nl > GGUF_MAX_NAME)
        return mend_set_error(MEND_EINVAL, "gguf writer: tensor name '%s' has %zu bytes (1 to %d expected)", name, nl, GGUF_MAX_NAME);
    if (n_dims < 1 || n_dims > 4)
        return mend_set_error(MEND_EINVAL, "gguf writer: tensor '%s': n_dims %u (1 to 4 expected)", name, n_dims);
    const mend_type_traits *tt = mend_type_get(type);
    if (!tt) return mend_set_error(MEND_EUNSUPPORTED, "gguf writer: tensor '%s': ggml type %u is not known", name, type);
    size_t nel = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || ne[d] > (1ll << 40))
            return mend_set_error(MEND_ERANGE, "gguf writer: tensor '%s': dimension %u is %lld", name, d, (long long)ne[d]);
        if (!mend_mul_ok(nel, (size_t)ne[d], &nel))
            return mend_set_error(MEND_ERANGE, "gguf writer: tensor '%s': element count overflows", name);
    }
    if (ne[0] % tt->blck_size)
        return mend_set_error(MEND_EINVAL, "gguf writer: tensor '%s': row length %lld is not a multiple of the %s block size %lld",
                              name, (long long)ne[0], tt->name, (long long)tt->blck_size);
    size_t want;
    if (!mend_mul_ok(nel / (size_t)tt->blck_size, tt->type_size, &want))
        return mend_set_error(MEND_ERANGE, "gguf writer: tensor '%s': byte size overflows", name);
    if (want != nbytes)
        return mend_set_error(MEND_EINVAL, "gguf writer: tensor '%s': %zu bytes given, %zu expected for %s of this shape",
                              name, nbytes, want, tt->name);
    if (!data && nbytes) return mend_set_error(MEND_EINVAL, "gguf writer: tensor '%s': NULL data", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return mend_set_error(MEND_EINVAL, "gguf writer: duplicate tensor name '%s'", name);
    if (w->n_t >= GGUF_MAX_TENSORS)
        return mend_set_error(MEND_ERANGE, "gguf writer: more than %u tensors", GGUF_MAX_TENSORS);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *p = realloc(w->t, cap * sizeof *p);
        if (!p) return mend_set_error(MEND_ENOMEM, "gguf writer: out of memory adding tensor '%s'", name);
        w->t = p;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = mend_strdup(name);
    if (!t->name) return mend_set_error(MEND_ENOMEM, "gguf writer: out of memory adding tensor '%s'", name);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = d < (int)n_dims ? ne[d] : 1;
    t->data = data;
    t->nbytes = nbytes;
    w->n_t++;
    return 0;
}

/* ---- output: a small buffered writer over a file descriptor ---- */

typedef struct out {
    int fd;
    uint8_t buf[1 << 16];
    size_t n;
    uint64_t pos;     /* bytes emitted so far (buffered + written) */
    int err;          /* errno of the first failure */
} out;

static void raw_write(out *o, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n && !o->err) {
        ssize_t k = write(o->fd, b, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            o->err = errno;
            return;
        }
        b += k;
        n -= (size_t)k;
    }
}

static void flush(out *o) {
    if (o->n) raw_write(o, o->buf, o->n);
    o->n = 0;
}

static void emit(out *o, const void *p, size_t n) {
    o->pos += n;
    if (n >= sizeof o->buf) {     /* large tensors go straight to the file */
        flush(o);
        raw_write(o, p, n);
        return;
    }
    if (o->n + n > sizeof o->buf) flush(o);
    memcpy(o->buf + o->n, p, n);
    o->n += n;
}

static void emit_u32(out *o, uint32_t v) { emit(o, &v, 4); }
static void emit_u64(out *o, uint64_t v) { emit(o, &v, 8); }
static void emit_str(out *o, const char *s, uint64_t len) {
    emit_u64(o, len);
    emit(o, s, (size_t)len);
}
static void emit_pad(out *o, size_t align) {
    static const uint8_t zeros[64] = {0};
    while (o->pos % align) {
        size_t k = align - (size_t)(o->pos % align);
        emit(o, zeros, k > sizeof zeros ? sizeof zeros : k);
    }
}

static size_t writer_alignment(const mend_gguf_writer *w, int *bad) {
    *bad = 0;
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, "general.alignment") == 0) {
            uint32_t a;
            memcpy(&a, w->kv[i].scalar, 4);
            if (w->kv[i].type != GGUF_TYPE_UINT32 || a == 0 || (a & (a - 1)) || a > (1u << 20)) {
                *bad = 1;
                return 0;
            }
            return a;
        }
    return 32;
}

static void emit_kv(out *o, const wkv *kv) {
    emit_str(o, kv->key, strlen(kv->key));
    emit_u32(o, kv->type);
    if (kv->type == GGUF_TYPE_STRING) {
        emit_str(o, kv->s, kv->slen);
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        emit_u32(o, kv->arr_type);
        emit_u64(o, kv->n);
        if (kv->arr_type == GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < kv->n; i++) emit_str(o, kv->strs[i], kv->lens[i]);
        } else {
            emit(o, kv->raw, (size_t)kv->n * gguf_type_size(kv->arr_type));
        }
    } else {
        emit(o, kv->scalar, gguf_type_size(kv->type));
    }
}

int mend_gguf_writer_write(mend_gguf_writer *w, const char *path) {
    if (!w || !path) return mend_set_error(MEND_EINVAL, "gguf writer: NULL writer or path");
    int bad;
    size_t align = writer_alignment(w, &bad);
    if (bad) return mend_set_error(MEND_EINVAL, "%s: general.alignment must be a uint32 power of two", path);

    /* tensor offsets, relative to the data section */
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        uint64_t end = off + w->t[i].nbytes;
        if (end < off || end > UINT64_MAX - align)
            return mend_set_error(MEND_ERANGE, "%s: tensor data exceeds 2^64 bytes", path);
        off = (end + align - 1) / align * align;
    }

    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    out *o = malloc(sizeof *o);
    if (!tmp || !o) {
        free(tmp);
        free(o);
        return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, pl + 32, "%s.tmp.%d", path, (int)getpid());
    o->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        int e = errno;
        free(tmp);
        free(o);
        return mend_set_error(MEND_EIO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    o->n = 0;
    o->pos = 0;
    o->err = 0;

    emit(o, "GGUF", 4);
    emit_u32(o, 3);
    emit_u64(o, w->n_t);
    emit_u64(o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) emit_kv(o, &w->kv[i]);
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        emit_str(o, t->name, strlen(t->name));
        emit_u32(o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) emit_u64(o, (uint64_t)t->ne[d]);
        emit_u32(o, t->type);
        emit_u64(o, t->offset);
    }
    emit_pad(o, align);
    for (size_t i = 0; i < w->n_t && !o->err; i++) {
        emit(o, w->t[i].data, w->t[i].nbytes);
        emit_pad(o, align);
    }
    flush(o);

    int rc = 0;
    if (o->err) rc = mend_set_error(MEND_EIO, "%s: write failed: %s", path, strerror(o->err));
    if (!rc && fsync(o->fd) != 0) rc = mend_set_error(MEND_EIO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(o->fd) != 0 && !rc) rc = mend_set_error(MEND_EIO, "%s: close failed: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0) rc = mend_set_error(MEND_EIO, "%s: rename failed: %s", path, strerror(errno));
    if (rc) {
        unlink(tmp);
    } else {
        /* make the rename itself durable */
        char *dir = mend_strdup(path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            const char *d = ".";
            if (slash) {
                if (slash == dir) slash[1] = 0;
                else *slash = 0;
                d = dir;
            }
            int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
            free(dir);
        }
    }
    free(tmp);
    free(o);
    return rc;
}
