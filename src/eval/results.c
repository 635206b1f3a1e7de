/* Results lines: writing, reading back (resume), summaries (results.h). */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <jansson.h>
#include "util/util.h"
#include "eval/results.h"

static json_t *real_array(const double *x, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_real(x[i]));
    return a;
}

static json_t *int_array(const int *x, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_integer(x[i]));
    return a;
}

static json_t *bool_array(const int *x, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_boolean(x[i]));
    return a;
}

int mend_result_json(const mend_task *t, size_t index, const mend_eval_result *r,
                     const char *model, const char *prompt, char **line) {
    *line = NULL;
    json_t *o = json_object();
    if (!o) return mend_set_error(MEND_ENOMEM, "results: out of memory");
    json_object_set_new(o, "task", json_string(t->name));
    json_object_set_new(o, "index", json_integer((json_int_t)index));
    json_object_set_new(o, "line", json_integer(index < t->n ? t->ex[index].line : 0));
    json_object_set_new(o, "kind", json_string(mend_task_kind_name(r->kind)));
    json_object_set_new(o, "model", json_string(model ? model : ""));
    json_object_set_new(o, "prompt", prompt ? json_string(prompt) : json_null());
    switch (r->kind) {
    case MEND_TASK_MC:
    case MEND_TASK_SCHEMA:
        json_object_set_new(o, "ll", real_array(r->ll, r->n));
        json_object_set_new(o, "is_greedy", bool_array(r->greedy, r->n));
        json_object_set_new(o, "n_tokens", int_array(r->n_tokens, r->n));
        json_object_set_new(o, "n_chars", int_array(r->n_chars, r->n));
        json_object_set_new(o, "gold", json_integer(r->gold));
        json_object_set_new(o, "pred", json_integer(r->pred));
        json_object_set_new(o, "acc", json_real(r->acc));
        if (r->kind == MEND_TASK_MC) {
            json_object_set_new(o, "pred_norm", json_integer(r->pred_norm));
            json_object_set_new(o, "acc_norm", json_real(r->acc_norm));
        }
        break;
    case MEND_TASK_LM:
        json_object_set_new(o, "ll", real_array(r->ll, r->n));
        json_object_set_new(o, "is_greedy", bool_array(r->greedy, r->n));
        json_object_set_new(o, "n_tokens", int_array(r->n_tokens, r->n));
        json_object_set_new(o, "pred", json_string(r->pred_text ? r->pred_text : ""));
        json_object_set_new(o, "acc", json_real(r->acc));
        break;
    case MEND_TASK_GEN: {
        const mend_task_ex *e = index < t->n ? &t->ex[index] : NULL;
        json_object_set_new(o, "pred", json_string(r->pred_text ? r->pred_text : ""));
        json_object_set_new(o, "raw", json_string(r->raw_text ? r->raw_text : ""));
        json_object_set_new(o, "answer", json_string(e && e->answer ? e->answer : ""));
        json_object_set_new(o, "em", json_real(r->em));
        break;
    }
    }
    json_object_set_new(o, "truncated", json_integer(r->truncated));
    /* json_string returns NULL on invalid UTF-8 (a generation cut inside a
     * multi-byte character): such a field is simply absent, checked below */
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(12) | JSON_ENSURE_ASCII);
    json_decref(o);
    if (!s) return mend_set_error(MEND_ENOMEM, "results: cannot serialize the result");
    *line = s;
    return 0;
}

void mend_results_free(mend_results *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->rec[i].task);
        free(r->rec[i].model);
        free(r->rec[i].prompt);
    }
    free(r->rec);
    free(r->path);
    memset(r, 0, sizeof *r);
}

static int get_num(const json_t *o, const char *k, double *v) {
    const json_t *x = json_object_get(o, k);
    if (!json_is_number(x)) return 0;
    *v = json_number_value(x);
    return 1;
}

static int parse_line(const char *s, size_t len, mend_result_rec *r, const char *path, int line) {
    json_error_t jerr;
    json_t *o = json_loadb(s, len, 0, &jerr);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return mend_set_error(MEND_EFORMAT, "%s:%d: malformed results line: %s", path, line,
                              o ? "not an object" : jerr.text);
    }
    int rc = 0;
    memset(r, 0, sizeof *r);
    r->line = line;
    const json_t *task = json_object_get(o, "task"), *idx = json_object_get(o, "index"),
                 *kind = json_object_get(o, "kind"), *model = json_object_get(o, "model"),
                 *prompt = json_object_get(o, "prompt");
    if (!json_is_string(task) || !json_is_integer(idx) || !json_is_string(kind) ||
        json_integer_value(idx) < 0) {
        rc = mend_set_error(MEND_EFORMAT, "%s:%d: results line lacks task, index or kind", path,
                            line);
        goto done;
    }
    r->kind = mend_task_kind_from_name(json_string_value(kind));
    if (r->kind < 0) {
        rc = mend_set_error(MEND_EFORMAT, "%s:%d: unknown kind \"%s\"", path, line,
                            json_string_value(kind));
        goto done;
    }
    r->task = mend_strdup(json_string_value(task));
    r->model = mend_strdup(json_is_string(model) ? json_string_value(model) : "");
    r->prompt = json_is_string(prompt) ? mend_strdup(json_string_value(prompt)) : NULL;
    r->index = (long)json_integer_value(idx);
    const json_t *tr = json_object_get(o, "truncated");
    r->truncated = json_is_integer(tr) ? (int)json_integer_value(tr) : 0;
    int ok = 1;
    switch (r->kind) {
    case MEND_TASK_MC:
        ok = get_num(o, "acc", &r->acc) && get_num(o, "acc_norm", &r->acc_norm);
        r->has_acc_norm = 1;
        break;
    case MEND_TASK_SCHEMA:
        ok = get_num(o, "acc", &r->acc);
        break;
    case MEND_TASK_LM: {
        ok = get_num(o, "acc", &r->acc);
        const json_t *ll = json_object_get(o, "ll");
        if (json_is_array(ll) && json_array_size(ll) == 1 && json_is_number(json_array_get(ll, 0)))
            r->ll = json_number_value(json_array_get(ll, 0));
        else ok = 0;
        break;
    }
    case MEND_TASK_GEN:
        ok = get_num(o, "em", &r->em);
        break;
    }
    if (!ok) rc = mend_set_error(MEND_EFORMAT, "%s:%d: results line lacks its %s metrics", path,
                                 line, json_string_value(kind));
    else if (!r->task || !r->model)
        rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
done:
    json_decref(o);
    if (rc) {
        free(r->task);
        free(r->model);
        free(r->prompt);
        memset(r, 0, sizeof *r);
    }
    return rc;
}

int mend_results_load(const char *path, mend_results *out) {
    memset(out, 0, sizeof *out);
    mend_map map;
    int rc = mend_map_file(&map, path);
    if (rc) return rc;
    out->path = mend_strdup(path);
    out->file_size = map.size;
    size_t cap = 0;
    const char *base = (const char *)map.data, *p = base, *end = base + map.size;
    int line = 0;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        line++;
        if (!nl) { /* the last line was cut by a kill: drop it */
            out->partial = 1;
            break;
        }
        size_t len = (size_t)(nl - p);
        const char *s = p;
        p = nl + 1;
        out->valid_bytes = (size_t)(p - base);
        int blank = 1;
        for (size_t i = 0; i < len && blank; i++)
            if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') blank = 0;
        if (blank) continue;
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            mend_result_rec *nr = realloc(out->rec, nc * sizeof *nr);
            if (!nr) {
                rc = mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
                goto fail;
            }
            out->rec = nr;
            cap = nc;
        }
        if ((rc = parse_line(s, len, &out->rec[out->n], path, line))) goto fail;
        out->n++;
    }
    mend_unmap(&map);
    return 0;
fail:
    mend_unmap(&map);
    mend_results_free(out);
    return rc;
}

/* mean and standard error of the mean of x[i] - y[i] (y NULL: of x) */
static double mean_and_stderr(const double *x, const double *y, size_t n, double *mean_out) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m += x[i] - (y ? y[i] : 0.0);
    m = n ? m / (double)n : NAN;
    if (mean_out) *mean_out = m;
    if (n < 2) return NAN;
    double ss = 0;
    for (size_t i = 0; i < n; i++) {
        double d = x[i] - (y ? y[i] : 0.0) - m;
        ss += d * d;
    }
    return sqrt(ss / (double)(n - 1)) / sqrt((double)n);
}

double mend_mean_stderr(const double *x, size_t n) {
    return mean_and_stderr(x, NULL, n, NULL);
}

void mend_paired_diff(const double *a, const double *b, size_t n, mend_paired *out) {
    memset(out, 0, sizeof *out);
    out->n = n;
    out->se = mean_and_stderr(b, a, n, &out->diff);
}

/* one results line reduced to its join key and headline metric */
typedef struct keyed {
    const char *task;
    long index;
    size_t pos;     /* line order: the first of a repeated index wins */
    int kind, line;
    double v;
} keyed;

static int cmp_key(const keyed *x, const keyed *y) {
    int c = strcmp(x->task, y->task);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

static int cmp_keyed(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    int c = cmp_key(x, y);
    return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

/* the lines of r sorted by (task, index), repeated indices dropped */
static keyed *keyed_lines(const mend_results *r, size_t *n_out) {
    keyed *k = malloc((r->n ? r->n : 1) * sizeof *k);
    if (!k) return NULL;
    for (size_t i = 0; i < r->n; i++) {
        const mend_result_rec *x = &r->rec[i];
        k[i] = (keyed){.task = x->task, .index = x->index, .pos = i, .kind = x->kind, .line = x->line,
                       .v = x->kind == MEND_TASK_GEN ? x->em : x->acc};
    }
    qsort(k, r->n, sizeof *k, cmp_keyed);
    size_t m = 0;
    for (size_t i = 0; i < r->n; i++)
        if (m == 0 || cmp_key(&k[m - 1], &k[i])) k[m++] = k[i];
    *n_out = m;
    return k;
}

int mend_results_paired(const mend_results *a, const mend_results *b, mend_paired *out) {
    memset(out, 0, sizeof *out);
    out->diff = out->se = NAN;
    size_t na = 0, nb = 0;
    keyed *ka = keyed_lines(a, &na), *kb = keyed_lines(b, &nb);
    double *va = malloc((na ? na : 1) * sizeof *va), *vb = malloc((na ? na : 1) * sizeof *vb);
    int rc = 0;
    if (!ka || !kb || !va || !vb) {
        rc = mend_set_error(MEND_ENOMEM, "paired differences: out of memory");
        goto done;
    }
    size_t i = 0, j = 0, n = 0, only_a = 0, only_b = 0;
    while (i < na || j < nb) {
        int c = i == na ? 1 : j == nb ? -1 : cmp_key(&ka[i], &kb[j]);
        if (c < 0) only_a++, i++;
        else if (c > 0) only_b++, j++;
        else {
            if (ka[i].kind != kb[j].kind) {
                rc = mend_set_error(MEND_EFORMAT, "%s:%d and %s:%d: task %s example %ld is %s in one file and %s in "
                                    "the other", a->path ? a->path : "results", ka[i].line,
                                    b->path ? b->path : "results", kb[j].line, ka[i].task, ka[i].index,
                                    mend_task_kind_name(ka[i].kind), mend_task_kind_name(kb[j].kind));
                goto done;
            }
            va[n] = ka[i++].v;
            vb[n++] = kb[j++].v;
        }
    }
    mend_paired_diff(va, vb, n, out);
    out->only_a = only_a;
    out->only_b = only_b;
done:
    free(ka);
    free(kb);
    free(va);
    free(vb);
    return rc;
}

/* ---- lm-eval's bootstrap for perplexity ----------------------------------
 * lm-eval (api/metrics.py bootstrap_stderr) estimates the standard error of
 * exp(-mean ll) from 100 chunks of 1000 resamples; chunk i draws with
 * Python's random.Random(i).choices(xs, k=n), i.e. a Mersenne Twister
 * MT19937 seeded by init_by_array([i]) and index floor(random() * n) with
 * random() = (a * 2^26 + b) / 2^53 from two 32-bit outputs (a >> 5, b >> 6).
 * The result is the sample standard deviation (ddof 1) of the 100000
 * statistics. Reproduced here so that mend reports lm-eval's number. */
typedef struct mt19937 {
    uint32_t s[624];
    int i;
} mt19937;

static void mt_init(mt19937 *m, uint32_t seed) {
    m->s[0] = seed;
    for (int i = 1; i < 624; i++)
        m->s[i] = 1812433253u * (m->s[i - 1] ^ (m->s[i - 1] >> 30)) + (uint32_t)i;
    m->i = 624;
}

static void mt_init_by_array(mt19937 *m, const uint32_t *key, int len) {
    mt_init(m, 19650218u);
    int i = 1, j = 0;
    for (int k = 624 > len ? 624 : len; k; k--) {
        m->s[i] = (m->s[i] ^ ((m->s[i - 1] ^ (m->s[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++, j++;
        if (i >= 624) m->s[0] = m->s[623], i = 1;
        if (j >= len) j = 0;
    }
    for (int k = 623; k; k--) {
        m->s[i] = (m->s[i] ^ ((m->s[i - 1] ^ (m->s[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= 624) m->s[0] = m->s[623], i = 1;
    }
    m->s[0] = 0x80000000u;
    m->i = 624;
}

static uint32_t mt_next(mt19937 *m) {
    if (m->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (m->s[k] & 0x80000000u) | (m->s[(k + 1) % 624] & 0x7fffffffu);
            m->s[k] = m->s[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        m->i = 0;
    }
    uint32_t y = m->s[m->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

static double mt_random(mt19937 *m) {
    uint32_t a = mt_next(m) >> 5, b = mt_next(m) >> 6;
    return ((double)a * 67108864.0 + (double)b) * (1.0 / 9007199254740992.0);
}

double mend_bootstrap_stderr_ppl(const double *ll, size_t n, int iters) {
    if (n == 0 || iters < 2) return NAN;
    int chunk = iters < 1000 ? iters : 1000;
    int n_chunks = iters / chunk;
    size_t total = (size_t)n_chunks * (size_t)chunk;
    double *res = malloc(total * sizeof *res);
    if (!res) return NAN;
    size_t r = 0;
    for (int c = 0; c < n_chunks; c++) {
        mt19937 m;
        uint32_t key = (uint32_t)c;
        mt_init_by_array(&m, &key, 1);
        for (int k = 0; k < chunk; k++) {
            double sum = 0;
            for (size_t j = 0; j < n; j++) sum += ll[(size_t)floor(mt_random(&m) * (double)n)];
            res[r++] = exp(-(sum / (double)n));
        }
    }
    double mu = 0;
    for (size_t i = 0; i < total; i++) mu += res[i];
    mu /= (double)total;
    double ss = 0;
    for (size_t i = 0; i < total; i++) ss += (res[i] - mu) * (res[i] - mu);
    free(res);
    return sqrt(ss / (double)(total - 1));
}

static double mean(const double *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m += x[i];
    return n ? m / (double)n : NAN;
}

void mend_summaries_free(mend_task_summary *s, size_t n) {
    if (!s) return;
    for (size_t i = 0; i < n; i++) free(s[i].task);
    free(s);
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

int mend_results_summarize(const mend_results *res, mend_task_summary **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    mend_task_summary *s = NULL;
    size_t ns = 0;
    int rc = 0;
    double *a = NULL, *b = NULL;
    long *seen = NULL;
    size_t *pick = NULL;
    if (res->n) {
        a = malloc(res->n * sizeof *a);
        b = malloc(res->n * sizeof *b);
        seen = malloc(res->n * sizeof *seen);
        pick = malloc(res->n * sizeof *pick);
        s = calloc(res->n, sizeof *s);
        if (!a || !b || !seen || !pick || !s) {
            rc = mend_set_error(MEND_ENOMEM, "summary: out of memory");
            goto done;
        }
    }
    for (size_t i = 0; i < res->n; i++) {
        const char *task = res->rec[i].task;
        int known = 0;
        for (size_t k = 0; k < ns && !known; k++)
            if (strcmp(s[k].task, task) == 0) known = 1;
        if (known) continue;
        mend_task_summary *t = &s[ns];
        t->task = mend_strdup(task);
        if (!t->task) {
            rc = mend_set_error(MEND_ENOMEM, "summary: out of memory");
            goto done;
        }
        ns++;
        t->kind = res->rec[i].kind;
        /* this task's lines, first occurrence of each index */
        size_t np = 0;
        for (size_t j = i; j < res->n; j++) {
            if (strcmp(res->rec[j].task, task) != 0) continue;
            if (res->rec[j].kind != t->kind) {
                rc = mend_set_error(MEND_EFORMAT, "%s:%d: task %s is %s here but %s before",
                                    res->path ? res->path : "results", res->rec[j].line, task,
                                    mend_task_kind_name(res->rec[j].kind),
                                    mend_task_kind_name(t->kind));
                goto done;
            }
            seen[np] = res->rec[j].index;
            pick[np++] = j;
        }
        /* drop duplicate indices (keep the first line) */
        long *sorted = malloc(np * sizeof *sorted);
        if (!sorted) {
            rc = mend_set_error(MEND_ENOMEM, "summary: out of memory");
            goto done;
        }
        memcpy(sorted, seen, np * sizeof *sorted);
        qsort(sorted, np, sizeof *sorted, cmp_long);
        size_t dups = 0;
        for (size_t k = 1; k < np; k++)
            if (sorted[k] == sorted[k - 1]) dups++;
        free(sorted);
        size_t m = 0;
        for (size_t k = 0; k < np; k++) {
            int dup = 0;
            if (dups)
                for (size_t q = 0; q < k && !dup; q++)
                    if (seen[q] == seen[k]) dup = 1;
            if (dup) continue;
            pick[m] = pick[k];
            seen[m] = seen[k];
            m++;
        }
        t->duplicates = dups;
        t->n = m;
        for (size_t k = 0; k < m; k++) t->truncated += res->rec[pick[k]].truncated;
        for (size_t k = 0; k < m; k++) a[k] = t->kind == MEND_TASK_GEN ? res->rec[pick[k]].em
                                                                        : res->rec[pick[k]].acc;
        if (t->kind == MEND_TASK_GEN) {
            t->em = mean(a, m);
            t->em_se = mend_mean_stderr(a, m);
        } else {
            t->acc = mean(a, m);
            t->acc_se = mend_mean_stderr(a, m);
        }
        if (t->kind == MEND_TASK_MC) {
            t->has_acc_norm = 1;
            for (size_t k = 0; k < m; k++) b[k] = res->rec[pick[k]].acc_norm;
            t->acc_norm = mean(b, m);
            t->acc_norm_se = mend_mean_stderr(b, m);
        }
        if (t->kind == MEND_TASK_LM) {
            for (size_t k = 0; k < m; k++) b[k] = res->rec[pick[k]].ll;
            double ml = mean(b, m);
            t->ppl = exp(-ml);
            t->ppl_se = mend_bootstrap_stderr_ppl(b, m, 100000);
        }
    }
    *out = s;
    *n_out = ns;
    s = NULL;
done:
    mend_summaries_free(s, ns);
    free(a);
    free(b);
    free(seen);
    free(pick);
    return rc;
}
