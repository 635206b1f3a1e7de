/* JSONL task readers: one record per line, four shapes (tasks.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "util/util.h"
#include "eval/tasks.h"

static const char *const KIND_NAMES[] = {"multiple_choice", "schema", "language_modeling",
                                         "generation_qa"};

const char *mend_task_kind_name(int kind) {
    if (kind < 0 || kind > MEND_TASK_GEN) return "unknown";
    return KIND_NAMES[kind];
}

int mend_task_kind_from_name(const char *name) {
    for (int k = 0; k <= MEND_TASK_GEN; k++)
        if (name && strcmp(name, KIND_NAMES[k]) == 0) return k;
    return -1;
}

static void ex_free(mend_task_ex *e) {
    free(e->context);
    free(e->continuation);
    free(e->answer);
    for (int i = 0; i < e->n_options; i++) free(e->options[i]);
    free(e->options);
    memset(e, 0, sizeof *e);
}

void mend_task_free(mend_task *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) ex_free(&t->ex[i]);
    free(t->ex);
    free(t->name);
    free(t->path);
    free(t);
}

/* Shape of one record from its keys, -1 when it matches none. */
static int record_kind(const json_t *o) {
    if (json_object_get(o, "context_options")) return MEND_TASK_SCHEMA;
    if (json_object_get(o, "choices") || json_object_get(o, "query")) return MEND_TASK_MC;
    if (json_object_get(o, "aliases") || json_object_get(o, "answer")) return MEND_TASK_GEN;
    if (json_object_get(o, "context") && json_object_get(o, "continuation")) return MEND_TASK_LM;
    return -1;
}

static int get_str(const json_t *o, const char *key, char **out, const char *path, int line) {
    const json_t *v = json_object_get(o, key);
    if (!v) return mend_set_error(MEND_EFORMAT, "%s:%d: missing field \"%s\"", path, line, key);
    if (!json_is_string(v))
        return mend_set_error(MEND_EFORMAT, "%s:%d: field \"%s\" must be a string", path, line, key);
    *out = mend_strndup(json_string_value(v), json_string_length(v));
    if (!*out) return mend_set_error(MEND_ENOMEM, "%s:%d: out of memory", path, line);
    if (strlen(*out) != json_string_length(v))
        return mend_set_error(MEND_EFORMAT, "%s:%d: field \"%s\" contains a NUL character", path,
                              line, key);
    return 0;
}

static int get_str_list(const json_t *o, const char *key, char ***out, int *n, const char *path,
                        int line) {
    const json_t *v = json_object_get(o, key);
    if (!v) return mend_set_error(MEND_EFORMAT, "%s:%d: missing field \"%s\"", path, line, key);
    if (!json_is_array(v))
        return mend_set_error(MEND_EFORMAT, "%s:%d: field \"%s\" must be an array of strings",
                              path, line, key);
    size_t k = json_array_size(v);
    if (k == 0)
        return mend_set_error(MEND_EFORMAT, "%s:%d: field \"%s\" is an empty list", path, line,
                              key);
    if (k > 1000000)
        return mend_set_error(MEND_ERANGE, "%s:%d: field \"%s\" has %zu entries (at most 1000000)",
                              path, line, key, k);
    *out = calloc(k, sizeof **out);
    if (!*out) return mend_set_error(MEND_ENOMEM, "%s:%d: out of memory", path, line);
    *n = (int)k;
    for (size_t i = 0; i < k; i++) {
        const json_t *s = json_array_get(v, i);
        if (!json_is_string(s))
            return mend_set_error(MEND_EFORMAT, "%s:%d: %s[%zu] must be a string", path, line, key,
                                  i);
        (*out)[i] = mend_strndup(json_string_value(s), json_string_length(s));
        if (!(*out)[i]) return mend_set_error(MEND_ENOMEM, "%s:%d: out of memory", path, line);
        if (strlen((*out)[i]) != json_string_length(s))
            return mend_set_error(MEND_EFORMAT, "%s:%d: %s[%zu] contains a NUL character", path,
                                  line, key, i);
    }
    return 0;
}

static int get_gold(const json_t *o, int n_options, int *gold, const char *path, int line,
                    const char *list) {
    const json_t *v = json_object_get(o, "gold");
    if (!v) return mend_set_error(MEND_EFORMAT, "%s:%d: missing field \"gold\"", path, line);
    if (!json_is_integer(v))
        return mend_set_error(MEND_EFORMAT, "%s:%d: field \"gold\" must be an integer", path, line);
    json_int_t g = json_integer_value(v);
    if (g < 0 || g >= n_options)
        return mend_set_error(MEND_ERANGE,
                              "%s:%d: gold %lld is out of range for %d entries of \"%s\"", path,
                              line, (long long)g, n_options, list);
    *gold = (int)g;
    return 0;
}

static int parse_record(const json_t *o, int kind, mend_task_ex *e, const char *path, int line) {
    int rc;
    e->line = line;
    e->gold = -1;
    switch (kind) {
    case MEND_TASK_MC:
        if ((rc = get_str(o, "query", &e->context, path, line))) return rc;
        if ((rc = get_str_list(o, "choices", &e->options, &e->n_options, path, line))) return rc;
        return get_gold(o, e->n_options, &e->gold, path, line, "choices");
    case MEND_TASK_SCHEMA:
        if ((rc = get_str_list(o, "context_options", &e->options, &e->n_options, path, line)))
            return rc;
        if ((rc = get_str(o, "continuation", &e->continuation, path, line))) return rc;
        return get_gold(o, e->n_options, &e->gold, path, line, "context_options");
    case MEND_TASK_LM:
        if ((rc = get_str(o, "context", &e->context, path, line))) return rc;
        return get_str(o, "continuation", &e->continuation, path, line);
    case MEND_TASK_GEN:
        if ((rc = get_str(o, "context", &e->context, path, line))) return rc;
        if ((rc = get_str(o, "answer", &e->answer, path, line))) return rc;
        return get_str_list(o, "aliases", &e->options, &e->n_options, path, line);
    }
    return mend_set_error(MEND_EINVAL, "%s:%d: unknown task shape %d", path, line, kind);
}

static char *task_name_from_path(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 6 && strcmp(b + n - 6, ".jsonl") == 0) n -= 6;
    else if (n > 5 && strcmp(b + n - 5, ".json") == 0) n -= 5;
    return mend_strndup(b, n);
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

int mend_task_load(mend_task **out, const char *path, size_t limit) {
    *out = NULL;
    mend_map map;
    int rc = mend_map_file(&map, path);
    if (rc) return rc;
    mend_task *t = calloc(1, sizeof *t);
    if (!t) {
        mend_unmap(&map);
        return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    }
    t->kind = -1;
    t->path = mend_strdup(path);
    t->name = task_name_from_path(path);
    size_t cap = 0;
    const char *p = (const char *)map.data, *end = p ? p + map.size : p;   /* empty file: no map */
    int line = 0;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
        const char *s = p;
        p = nl ? nl + 1 : end;
        if (is_blank(s, len)) continue;
        json_error_t jerr;
        json_t *o = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!o) {
            rc = mend_set_error(MEND_EFORMAT, "%s:%d: malformed JSON at column %d: %s", path, line,
                                jerr.column, jerr.text);
            goto fail;
        }
        if (!json_is_object(o)) {
            json_decref(o);
            rc = mend_set_error(MEND_EFORMAT, "%s:%d: expected a JSON object", path, line);
            goto fail;
        }
        int k = record_kind(o);
        if (k < 0) {
            json_decref(o);
            rc = mend_set_error(MEND_EFORMAT,
                                "%s:%d: record matches no task shape (expected query/choices/gold, "
                                "context_options/continuation/gold, context/continuation or "
                                "context/answer/aliases)",
                                path, line);
            goto fail;
        }
        if (t->kind < 0) t->kind = k;
        else if (k != t->kind) {
            json_decref(o);
            rc = mend_set_error(MEND_EFORMAT, "%s:%d: record is %s but the file started as %s", path,
                                line, mend_task_kind_name(k), mend_task_kind_name(t->kind));
            goto fail;
        }
        mend_task_ex e;
        memset(&e, 0, sizeof e);
        rc = parse_record(o, k, &e, path, line);
        json_decref(o);
        if (rc) {
            ex_free(&e);
            goto fail;
        }
        t->n_total++;
        if (limit > 0 && t->n >= limit) {
            ex_free(&e);
            continue;
        }
        if (t->n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            mend_task_ex *ne = realloc(t->ex, nc * sizeof *ne);
            if (!ne) {
                ex_free(&e);
                rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
                goto fail;
            }
            t->ex = ne;
            cap = nc;
        }
        t->ex[t->n++] = e;
    }
    mend_unmap(&map);
    if (t->n == 0) {
        mend_task_free(t);
        return mend_set_error(MEND_EFORMAT, "%s: no examples (empty file)", path);
    }
    *out = t;
    return 0;
fail:
    mend_unmap(&map);
    mend_task_free(t);
    return rc;
}
