/* Helpers for the logits fixtures of tests/fixtures/logits (made by
 * make_logits.py): JSON documents and little-endian float32 blobs. */
#ifndef MEND_TEST_MODEL_FIXTURE_H
#define MEND_TEST_MODEL_FIXTURE_H

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include "util/util.h"

static inline json_t *fx_json(const char *rel) {
    json_error_t err;
    json_t *j = json_load_file(test_src(rel), 0, &err);
    if (!j) fprintf(stderr, "%s: %s (line %d)\n", rel, err.text, err.line);
    return j;
}

/* A float32 blob of exactly n values, malloc'd; NULL on error. */
static inline float *fx_floats(const char *rel, size_t n) {
    char *buf = NULL;
    size_t len = 0;
    if (mend_read_file(test_src(rel), (size_t)1 << 30, &buf, &len) != 0) {
        fprintf(stderr, "%s: %s\n", rel, mend_last_error());
        return NULL;
    }
    if (len != n * sizeof(float)) {
        fprintf(stderr, "%s: %zu bytes, expected %zu\n", rel, len, n * sizeof(float));
        free(buf);
        return NULL;
    }
    float *f = malloc(len);
    if (f) memcpy(f, buf, len);
    free(buf);
    return f;
}

/* int array from JSON, malloc'd */
static inline int32_t *fx_ids(json_t *arr, size_t *n) {
    *n = json_array_size(arr);
    int32_t *ids = malloc((*n ? *n : 1) * sizeof *ids);
    for (size_t i = 0; ids && i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(arr, i));
    return ids;
}

static inline double fx_max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;   /* NaN propagates */
    }
    return m;
}

#endif
