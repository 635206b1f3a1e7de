/* Prompt tuning loop: data, AdamW, schedule, validation, checkpoints
 * (see tune.h). */
#include "prompt/tune.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quants.h"
#include "model/model.h"
#include "prompt/adapter.h"
#include "util/util.h"

#define CKPT_MAGIC "MENDTUNE"
#define CKPT_VERSION 1u
#define HIST_COLS 8

void mend_tune_opts_default(mend_tune_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_virtual = 20;
    o->seqlen = 512;
    o->batch = 4;
    o->steps = 100;
    o->lr = 1e-3;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->adam_eps = 1e-8;
    o->weight_decay = 1e-5;
    o->clip = 1.0;
    o->warmup = -1;
    o->schedule = MEND_SCHED_LINEAR;
    o->objective = MEND_TUNE_CE;
    o->init = MEND_TUNE_INIT_VOCAB;
    o->seed = 1234;
    o->val_frac = 0.05;
    o->val_seqs = 16;
    o->eval_every = 50;
    o->ckpt_every = 50;
}


/* ---- data ---- */
typedef struct span {
    const char *p;
    size_t n;
} span;

typedef struct dataset {
    int32_t *train, *val;   /* (n_train, seqlen), (n_val, seqlen) */
    int n_train, n_val;
    int n_par, n_val_par;
    int64_t train_tokens, val_tokens;
} dataset;

static int is_blank_line(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v') return 0;
    return 1;
}

/* Paragraphs: maximal runs of non-blank lines. */
static int split_paragraphs(const char *const *texts, const size_t *lens, int n_texts, span **out, int *n_out) {
    size_t cap = 1024, n = 0;
    span *a = malloc(cap * sizeof *a);
    if (!a) return mend_set_error(MEND_ENOMEM, "tune: out of memory splitting the corpus");
    for (int t = 0; t < n_texts; t++) {
        const char *s = texts[t];
        const size_t len = lens[t];
        size_t i = 0, start = 0;
        int in_par = 0;
        while (i <= len) {
            size_t j = i;
            while (j < len && s[j] != '\n') j++;
            const int blank = is_blank_line(s + i, j - i);
            if (!blank && !in_par) {
                start = i;
                in_par = 1;
            }
            if ((blank || j >= len) && in_par) {
                size_t end = blank ? i : j;
                while (end > start && (s[end - 1] == '\n' || s[end - 1] == '\r')) end--;
                if (n == cap) {
                    span *b = realloc(a, 2 * cap * sizeof *a);
                    if (!b) {
                        free(a);
                        return mend_set_error(MEND_ENOMEM, "tune: out of memory splitting the corpus");
                    }
                    a = b;
                    cap *= 2;
                }
                a[n++] = (span){s + start, end - start};
                in_par = 0;
            }
            i = j + 1;
        }
    }
    if (n > (size_t)INT32_MAX / 2) {
        free(a);
        return mend_set_error(MEND_ERANGE, "tune: the corpus has too many paragraphs (%zu)", n);
    }
    *out = a;
    *n_out = (int)n;
    return 0;
}

/* One sequence per paragraph start (starts[0..n_starts), offsets into
 * stream) with seqlen tokens of stream from it, at most max_seqs. */
static int paragraph_seqs(const int32_t *stream, size_t len, const size_t *starts, int n_starts, int seqlen,
                          int max_seqs, int32_t **seqs, int *n_seqs) {
    int ns = 0;
    while (ns < n_starts && starts[ns] + (size_t)seqlen <= len && (max_seqs <= 0 || ns < max_seqs)) ns++;
    int32_t *out = malloc(((size_t)ns * seqlen + 1) * sizeof *out);
    if (!out) return mend_set_error(MEND_ENOMEM, "tune: out of memory cutting the corpus into sequences");
    for (int i = 0; i < ns; i++) memcpy(out + (size_t)i * seqlen, stream + starts[i], (size_t)seqlen * sizeof *out);
    *seqs = out;
    *n_seqs = ns;
    return 0;
}

/* Does a stream of len tokens (paragraphs starting at starts[0..n_starts),
 * or NULL for stream windows) already hold max_seqs > 0 sequences? */
static int enough_tokens(const size_t *starts, int n_starts, size_t len, int seqlen, int max_seqs) {
    if (!starts) return len >= (size_t)max_seqs * seqlen;
    return n_starts >= max_seqs && len >= starts[max_seqs - 1] + (size_t)seqlen;
}

/* Tokenize paragraphs idx[0..n) (each + "\n\n") into a stream and cut it
 * into at most max_seqs sequences of seqlen (enum mend_tune_windows). */
static int build_seqs(const mend_tokenizer *tok, const span *par, const int *idx, int n, int seqlen, int max_seqs,
                      int windows, int32_t **seqs, int *n_seqs, int64_t *n_tokens) {
    size_t cap = 1 << 16, len = 0;
    int32_t *stream = malloc(cap * sizeof *stream);
    size_t *starts = windows == MEND_TUNE_WINDOWS_PARAGRAPH ? malloc(((size_t)n + 1) * sizeof *starts) : NULL;
    int n_starts = 0;
    char *buf = NULL;
    size_t buf_cap = 0;
    int rc = 0;
    if (!stream || (windows == MEND_TUNE_WINDOWS_PARAGRAPH && !starts)) {
        free(stream);
        free(starts);
        return mend_set_error(MEND_ENOMEM, "tune: out of memory tokenizing the corpus");
    }
    for (int k = 0; k < n && (max_seqs <= 0 || !enough_tokens(starts, n_starts, len, seqlen, max_seqs)); k++) {
        if (starts) starts[n_starts++] = len;
        const span *p = &par[idx[k]];
        if (p->n + 3 > buf_cap) {
            buf_cap = p->n + 3 + buf_cap;
            char *b = realloc(buf, buf_cap);
            if (!b) {
                rc = mend_set_error(MEND_ENOMEM, "tune: out of memory tokenizing the corpus");
                break;
            }
            buf = b;
        }
        memcpy(buf, p->p, p->n);
        memcpy(buf + p->n, "\n\n", 3);
        int32_t *ids = NULL;
        size_t ni = 0;
        if ((rc = mend_tokenize(tok, buf, p->n + 2, 0, 0, &ids, &ni))) break;
        if (len + ni > cap) {
            while (len + ni > cap) cap *= 2;
            int32_t *s2 = realloc(stream, cap * sizeof *stream);
            if (!s2) {
                free(ids);
                rc = mend_set_error(MEND_ENOMEM, "tune: out of memory tokenizing the corpus");
                break;
            }
            stream = s2;
        }
        memcpy(stream + len, ids, ni * sizeof *ids);
        len += ni;
        free(ids);
    }
    free(buf);
    if (rc == 0 && starts) {
        rc = paragraph_seqs(stream, len, starts, n_starts, seqlen, max_seqs, seqs, n_seqs);
        if (rc == 0) *n_tokens = (int64_t)len;
    }
    free(starts);
    if (rc || windows == MEND_TUNE_WINDOWS_PARAGRAPH) {
        free(stream);
        return rc;
    }
    size_t ns = len / (size_t)seqlen;
    if (max_seqs > 0 && ns > (size_t)max_seqs) ns = (size_t)max_seqs;
    *seqs = stream;
    *n_seqs = (int)ns;
    *n_tokens = (int64_t)len;
    return 0;
}

static int prepare_data(const mend_model *m, const char *const *texts, const size_t *lens, int n_texts,
                        const mend_tune_opts *o, dataset *d) {
    memset(d, 0, sizeof *d);
    span *par = NULL;
    int n_par = 0, rc;
    if ((rc = split_paragraphs(texts, lens, n_texts, &par, &n_par))) return rc;
    if (n_par < 1) {
        free(par);
        return mend_set_error(MEND_EINVAL, "tune: the corpus has no text");
    }
    int *idx = malloc(sizeof(int) * (size_t)n_par);
    char *is_val = calloc((size_t)n_par, 1);
    int *tr = malloc(sizeof(int) * (size_t)n_par), *va = malloc(sizeof(int) * (size_t)n_par);
    if (!idx || !is_val || !tr || !va) {
        rc = mend_set_error(MEND_ENOMEM, "tune: out of memory");
        goto done;
    }
    for (int i = 0; i < n_par; i++) idx[i] = i;
    int n_val = 0;
    if (o->val_frac > 0 && n_par >= 2) {
        mend_rng r;
        mend_rng_seed(&r, o->seed ^ 0x76616c6964617465ull);   /* the split has its own stream */
        mend_rng_shuffle(idx, n_par, &r);
        n_val = (int)ceil(o->val_frac * n_par);
        if (n_val >= n_par) n_val = n_par - 1;
        for (int i = 0; i < n_val; i++) is_val[idx[i]] = 1;
    }
    int nt = 0, nv = 0;
    for (int i = 0; i < n_par; i++) {
        if (is_val[i]) va[nv++] = i;
        else tr[nt++] = i;
    }
    const mend_tokenizer *tok = mend_model_tokenizer(m);
    if ((rc = build_seqs(tok, par, tr, nt, o->seqlen, 0, o->windows, &d->train, &d->n_train, &d->train_tokens))) goto done;
    if (nv > 0 && (rc = build_seqs(tok, par, va, nv, o->seqlen, o->val_seqs, o->windows, &d->val, &d->n_val, &d->val_tokens)))
        goto done;
    d->n_par = n_par;
    d->n_val_par = nv;
    if (d->n_train < 1)
        rc = mend_set_error(MEND_EINVAL, "tune: the training part of the corpus has %lld tokens, fewer than one "
                            "sequence of %d", (long long)d->train_tokens, o->seqlen);
done:
    free(par);
    free(idx);
    free(is_val);
    free(tr);
    free(va);
    return rc;
}

static void free_data(dataset *d) {
    free(d->train);
    free(d->val);
}

/* ---- run state ---- */
typedef struct run {
    const mend_tune_opts *o;
    int n, dim;              /* prompt floats, hidden size */
    float *prompt, *m1, *m2, *best, *grad;
    mend_rng rng;
    int step, epoch, cursor;
    int *perm;
    int best_step;
    double best_val, first_val;
    double *hist;            /* (steps, HIST_COLS): step, lr, loss, ce, gnorm, val_loss, val_ce, elapsed */
    int n_hist;
    uint64_t fingerprint;
} run;

static uint64_t fingerprint(const mend_tune_opts *o, const mend_model *m, const dataset *d, int warmup) {
    uint64_t h = MEND_FNV1A_INIT;
#define H(x) do { __typeof__(x) v_ = (x); h = mend_fnv1a(h, &v_, sizeof v_); } while (0)
    H(o->n_virtual); H(o->seqlen); H(o->batch); H(o->steps); H(o->lr); H(o->beta1); H(o->beta2);
    H(o->adam_eps); H(o->weight_decay); H(o->clip); H(warmup); H(o->schedule); H(o->objective); H(o->init);
    H(o->seed); H(o->val_frac); H(o->val_seqs); H(o->eval_every); H(m->cfg.dim); H(m->cfg.n_vocab);
    H(m->cfg.n_layers);
    if (o->windows) H(o->windows);   /* absent for stream windows: older checkpoints still resume */
#undef H
    if (o->init_text) h = mend_fnv1a(h, o->init_text, strlen(o->init_text));
    if (o->init == MEND_TUNE_INIT_PROMPT && o->init_prompt)
        h = mend_fnv1a(h, o->init_prompt, sizeof(float) * (size_t)o->n_virtual * m->cfg.dim);
    h = mend_fnv1a(h, d->train, (size_t)d->n_train * o->seqlen * sizeof(int32_t));
    if (d->val) h = mend_fnv1a(h, d->val, (size_t)d->n_val * o->seqlen * sizeof(int32_t));
    return h;
}

static void new_epoch(run *r, int n_train) {
    for (int i = 0; i < n_train; i++) r->perm[i] = i;
    mend_rng_shuffle(r->perm, n_train, &r->rng);
}

/* token embeddings as the model's first layer sees them (gemma3: times
 * sqrt(dim), as PEFT's prompt init takes them from the scaled embedding) */
static int embed_rows(const mend_model *m, const int32_t *ids, int n, float *out) {
    const mend_mat *E = &m->tok_embd;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= m->cfg.n_vocab)
            return mend_set_error(MEND_EINVAL, "tune: token %d is outside the vocabulary", ids[i]);
        const uint8_t *row = (const uint8_t *)E->data + (size_t)ids[i] * E->row_bytes;
        int rc = mend_dequantize_row(E->type, row, out + (size_t)i * m->cfg.dim, m->cfg.dim);
        if (rc) return rc;
    }
    mend_embed_scale(&m->cfg, out, n);
    return 0;
}

static int init_prompt(run *r, const mend_model *m) {
    const mend_tune_opts *o = r->o;
    const int P = o->n_virtual, D = m->cfg.dim;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)P);
    if (!ids) return mend_set_error(MEND_ENOMEM, "tune: out of memory");
    int rc = 0;
    if (o->init == MEND_TUNE_INIT_PROMPT) {
        if (!o->init_prompt) rc = mend_set_error(MEND_EINVAL, "tune: no prompt given to start from");
        else memcpy(r->prompt, o->init_prompt, sizeof(float) * (size_t)P * D);
    } else if (o->init == MEND_TUNE_INIT_VOCAB) {
        for (int i = 0; i < P; i++) ids[i] = (int32_t)mend_rng_below(&r->rng, (uint64_t)m->cfg.n_vocab);
        rc = embed_rows(m, ids, P, r->prompt);
    } else if (o->init == MEND_TUNE_INIT_TEXT) {
        int32_t *t = NULL;
        size_t nt = 0;
        if (!o->init_text || !*o->init_text) rc = mend_set_error(MEND_EINVAL, "tune: --init-text is empty");
        else if ((rc = mend_tokenize(mend_model_tokenizer(m), o->init_text, strlen(o->init_text), 0, 0, &t, &nt)) == 0) {
            if (nt == 0) rc = mend_set_error(MEND_EINVAL, "tune: the init text has no tokens");
            else {
                for (int i = 0; i < P; i++) ids[i] = t[(size_t)i % nt];   /* repeated, cut to P (PEFT) */
                rc = embed_rows(m, ids, P, r->prompt);
            }
        }
        free(t);
    } else {
        /* std of the embedding matrix, from a sample of rows */
        float *row = malloc(sizeof(float) * (size_t)D);
        double s = 0, s2 = 0;
        int64_t cnt = 0;
        const int step = m->cfg.n_vocab > 4096 ? m->cfg.n_vocab / 4096 : 1;
        for (int v = 0; row && v < m->cfg.n_vocab; v += step) {
            int32_t id = v;
            if ((rc = embed_rows(m, &id, 1, row))) break;
            for (int j = 0; j < D; j++) s += row[j], s2 += (double)row[j] * row[j];
            cnt += D;
        }
        free(row);
        if (rc == 0) {
            const double mean = s / cnt, sd = sqrt(fmax(s2 / cnt - mean * mean, 1e-12));
            for (int i = 0; i < P * D; i++) r->prompt[i] = (float)(sd * mend_rng_normal(&r->rng));
        }
    }
    free(ids);
    return rc;
}

static double lr_at(const mend_tune_opts *o, int warmup, int step) {   /* step is 1-based */
    if (warmup > 0 && step <= warmup) return o->lr * step / warmup;
    if (o->schedule == MEND_SCHED_CONSTANT || o->steps <= warmup) return o->lr;
    const double f = (double)(step - warmup) / (double)(o->steps - warmup);   /* (0, 1] */
    if (o->schedule == MEND_SCHED_COSINE) return o->lr * 0.5 * (1.0 + cos(3.141592653589793 * f));
    return o->lr * (1.0 - f);
}

/* ---- checkpoints ---- */
typedef struct ckpt_head {
    char magic[8];
    uint32_t version, n_virtual, dim, hist_cols;
    uint64_t fingerprint;
    int32_t step, epoch, cursor, best_step;
    uint64_t rng[4];
    double best_val, first_val;
    uint64_t n_hist, n_train;
} ckpt_head;

static int ckpt_write(const run *r, const char *path, int n_train) {
    ckpt_head h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CKPT_MAGIC, 8);
    h.version = CKPT_VERSION;
    h.n_virtual = (uint32_t)r->o->n_virtual;
    h.dim = (uint32_t)r->dim;
    h.hist_cols = HIST_COLS;
    h.fingerprint = r->fingerprint;
    h.step = r->step;
    h.epoch = r->epoch;
    h.cursor = r->cursor;
    h.best_step = r->best_step;
    memcpy(h.rng, r->rng.s, sizeof h.rng);
    h.best_val = r->best_val;
    h.first_val = r->first_val;
    h.n_hist = (uint64_t)r->n_hist;
    h.n_train = (uint64_t)n_train;
    const size_t pf = (size_t)r->n * sizeof(float);
    const size_t hb = (size_t)r->n_hist * HIST_COLS * sizeof(double);
    const size_t permb = (size_t)n_train * sizeof(int);
    const size_t total = sizeof h + 4 * pf + permb + hb + 8;
    uint8_t *buf = malloc(total), *p = buf;
    if (!buf) return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    memcpy(p, &h, sizeof h), p += sizeof h;
    memcpy(p, r->prompt, pf), p += pf;
    memcpy(p, r->m1, pf), p += pf;
    memcpy(p, r->m2, pf), p += pf;
    memcpy(p, r->best, pf), p += pf;
    memcpy(p, r->perm, permb), p += permb;
    memcpy(p, r->hist, hb), p += hb;
    const uint64_t sum = mend_fnv1a(MEND_FNV1A_INIT, buf, (size_t)(p - buf));
    memcpy(p, &sum, 8);
    int rc = mend_write_file_atomic(path, buf, total);
    free(buf);
    return rc;
}

static int ckpt_read(run *r, const char *path, int n_train) {
    char *buf = NULL;
    size_t len = 0;
    int rc = mend_read_file(path, (size_t)1 << 31, &buf, &len);
    if (rc) return rc;
    ckpt_head h;
    if (len < sizeof h + 8) {
        free(buf);
        return mend_set_error(MEND_EFORMAT, "%s: truncated checkpoint (%zu bytes)", path, len);
    }
    memcpy(&h, buf, sizeof h);
    uint64_t sum;
    memcpy(&sum, buf + len - 8, 8);
    if (memcmp(h.magic, CKPT_MAGIC, 8) || h.version != CKPT_VERSION) {
        rc = mend_set_error(MEND_EFORMAT, "%s: not a mend tune checkpoint (magic/version)", path);
    } else if (mend_fnv1a(MEND_FNV1A_INIT, buf, len - 8) != sum) {
        rc = mend_set_error(MEND_EFORMAT, "%s: checksum mismatch (corrupt or truncated checkpoint)", path);
    } else if (h.fingerprint != r->fingerprint || h.n_virtual != (uint32_t)r->o->n_virtual ||
               h.dim != (uint32_t)r->dim || h.n_train != (uint64_t)n_train || h.hist_cols != HIST_COLS) {
        rc = mend_set_error(MEND_EINVAL, "%s: the checkpoint was made with other options, model or corpus "
                            "(resume needs the same ones)", path);
    } else if (h.step < 0 || h.step > r->o->steps || h.n_hist > (uint64_t)r->o->steps + 1 || h.cursor < 0 ||
               h.cursor > n_train) {
        rc = mend_set_error(MEND_EFORMAT, "%s: step %d / history %llu out of range", path, h.step,
                            (unsigned long long)h.n_hist);
    } else {
        const size_t pf = (size_t)r->n * sizeof(float);
        const size_t hb = (size_t)h.n_hist * HIST_COLS * sizeof(double);
        const size_t permb = (size_t)n_train * sizeof(int);
        if (len != sizeof h + 4 * pf + permb + hb + 8) {
            rc = mend_set_error(MEND_EFORMAT, "%s: size %zu does not match its header", path, len);
        } else {
            const uint8_t *p = (const uint8_t *)buf + sizeof h;
            memcpy(r->prompt, p, pf), p += pf;
            memcpy(r->m1, p, pf), p += pf;
            memcpy(r->m2, p, pf), p += pf;
            memcpy(r->best, p, pf), p += pf;
            memcpy(r->perm, p, permb), p += permb;
            memcpy(r->hist, p, hb);
            for (int i = 0; i < n_train; i++)
                if (r->perm[i] < 0 || r->perm[i] >= n_train) {
                    rc = mend_set_error(MEND_EFORMAT, "%s: data order entry %d out of range", path, i);
                    break;
                }
            r->step = h.step;
            r->epoch = h.epoch;
            r->cursor = h.cursor;
            r->best_step = h.best_step;
            memcpy(r->rng.s, h.rng, sizeof h.rng);
            r->best_val = h.best_val;
            r->first_val = h.first_val;
            r->n_hist = (int)h.n_hist;
        }
    }
    free(buf);
    return rc;
}

static int write_csv(const run *r, const char *path) {
    size_t cap = 128 + (size_t)r->n_hist * 200, len = 0;
    char *s = malloc(cap);
    if (!s) return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    len += (size_t)snprintf(s + len, cap - len, "step,lr,loss,ce,grad_norm,val_loss,val_ce,elapsed_s\n");
    for (int i = 0; i < r->n_hist; i++) {
        const double *h = r->hist + (size_t)i * HIST_COLS;
        char v1[32] = "", v2[32] = "";
        if (!isnan(h[5])) snprintf(v1, sizeof v1, "%.6f", h[5]);
        if (!isnan(h[6])) snprintf(v2, sizeof v2, "%.6f", h[6]);
        len += (size_t)snprintf(s + len, cap - len, "%d,%.6g,%.6f,%.6f,%.6f,%s,%s,%.1f\n", (int)h[0], h[1], h[2], h[3],
                                h[4], v1, v2, h[7]);
    }
    int rc = mend_write_file_atomic(path, s, len);
    free(s);
    return rc;
}

/* Mean objective and cross-entropy of the validation sequences. */
static int validate(mend_trainer *t, const dataset *d, const mend_tune_opts *o, const float *prompt, double *loss,
                    double *ce) {
    double ls = 0, cs = 0;
    int64_t n = 0;
    for (int i = 0; i < d->n_val; i++) {
        mend_train_loss L;
        int rc = mend_trainer_step(t, prompt, d->val + (size_t)i * o->seqlen, o->seqlen, o->objective, 1.0f, NULL, &L);
        if (rc) return rc;
        ls += L.loss_sum;
        cs += L.ce_sum;
        n += L.n_scored;
    }
    *loss = n ? ls / n : NAN;
    *ce = n ? cs / n : NAN;
    return 0;
}

static int write_adapters(const run *r, const mend_model *m, const mend_tune_opts *o, int have_val) {
    mend_fp fp;   /* the model the prompt is trained on */
    int rc = mend_model_fingerprint(m, &fp);
    if (rc) return rc;
    mend_adapter_meta meta = {.base_model = o->base_model, .trained_on = &fp,
                              .init = o->init == MEND_TUNE_INIT_TEXT    ? "TEXT"
                                      : o->init == MEND_TUNE_INIT_VOCAB ? "SAMPLE_VOCAB"
                                                                        : "RANDOM",
                              .init_text = o->init_text,
                              .num_attention_heads = m->cfg.n_heads,
                              .num_layers = m->cfg.n_layers};
    rc = mend_adapter_write(o->out_dir, have_val ? r->best : r->prompt, o->n_virtual, r->dim, &meta);
    if (rc) return rc;
    char *last = mend_path_join(o->out_dir, "last");
    if (!last) return mend_set_error(MEND_ENOMEM, "out of memory");
    rc = mend_adapter_write(last, r->prompt, o->n_virtual, r->dim, &meta);
    free(last);
    return rc;
}

int mend_tune_read_record(const char *dir, mend_tune_record *rec, int *found) {
    memset(rec, 0, sizeof *rec);
    *found = 0;
    char *path = mend_path_join(dir, "train.json");
    if (!path) return mend_set_error(MEND_ENOMEM, "tune: out of memory");
    int rc = 0;
    if (mend_file_exists(path)) {
        json_error_t err;
        json_t *j = json_load_file(path, 0, &err);
        static const char *const F[] = {"steps", "batch", "seqlen", "train_tokens", "start_tokens"};
        int64_t *v[] = {&rec->steps, &rec->batch, &rec->seqlen, &rec->train_tokens, &rec->start_tokens};
        if (!j) rc = mend_set_error(MEND_EFORMAT, "%s: not valid JSON: %s (line %d)", path, err.text, err.line);
        for (int k = 0; j && rc == 0 && k < 5; k++) {
            const json_t *x = json_object_get(j, F[k]);
            if (!x && k == 4) break;   /* start_tokens: optional */
            if (!json_is_integer(x) || json_integer_value(x) < 0)
                rc = mend_set_error(MEND_EFORMAT, "%s: field '%s' is missing or not a whole number >= 0", path, F[k]);
            else *v[k] = json_integer_value(x);
        }
        json_decref(j);
        *found = rc == 0;
        if (rc) memset(rec, 0, sizeof *rec);
    }
    free(path);
    return rc;
}

/* train.json beside the adapter: what the training cost in text tokens
 * (steps x batch x seqlen; the virtual tokens are not counted) */
static int write_train_json(const run *r, const mend_tune_opts *o) {
    const json_int_t own = (json_int_t)r->step * o->batch * o->seqlen, start = o->start_tokens;
    json_t *j = json_pack("{s:i, s:i, s:i, s:i, s:I, s:i, s:I, s:I}", "steps", r->step, "batch", o->batch, "seqlen",
                          o->seqlen, "num_virtual_tokens", o->n_virtual, "train_tokens", own, "best_step",
                          r->best_step, "start_tokens", start, "total_tokens", own + start);
    if (j && o->windows == MEND_TUNE_WINDOWS_PARAGRAPH) json_object_set_new(j, "windows", json_string("paragraph"));
    char *s = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
    char *path = mend_path_join(o->out_dir, "train.json");
    int rc = s && path ? mend_write_file_atomic(path, s, strlen(s))
                       : mend_set_error(MEND_ENOMEM, "tune: out of memory writing train.json");
    json_decref(j);
    free(s);
    free(path);
    return rc;
}

static int check_opts(const mend_model *m, const mend_model *teacher, const mend_tune_opts *o,
                      mend_tune_result *res) {
    if (!m || !o || !res)
        return mend_set_error(MEND_EINVAL, "tune: model, options and result must be given");
    memset(res, 0, sizeof *res);
    if (!o->out_dir) return mend_set_error(MEND_EINVAL, "tune: no output directory");
    if (o->windows != MEND_TUNE_WINDOWS_STREAM && o->windows != MEND_TUNE_WINDOWS_PARAGRAPH)
        return mend_set_error(MEND_EINVAL, "tune: windows is %d, expected stream (0) or paragraph (1)", o->windows);
    if (o->n_virtual < 1 || o->n_virtual > 4096 || o->seqlen < 2 || o->batch < 1 || o->steps < 1 || !(o->lr > 0) ||
        o->beta1 < 0 || o->beta1 >= 1 || o->beta2 < 0 || o->beta2 >= 1 || !(o->adam_eps > 0) ||
        o->weight_decay < 0 || o->clip < 0 || o->val_frac < 0 || o->val_frac >= 1)
        return mend_set_error(MEND_EINVAL, "tune: an option is out of range (tokens %d, seqlen %d, batch %d, steps "
                              "%d, lr %g, val fraction %g)", o->n_virtual, o->seqlen, o->batch, o->steps, o->lr,
                              o->val_frac);
    if (o->objective == MEND_TUNE_KL && !teacher)
        return mend_set_error(MEND_EINVAL, "tune: the KL objective needs a teacher model");
    if (o->seqlen > m->cfg.ctx_len - o->n_virtual && m->cfg.ctx_len > 0)
        return mend_set_error(MEND_EINVAL, "tune: %d virtual + %d text tokens exceed the model's context of %d",
                              o->n_virtual, o->seqlen, m->cfg.ctx_len);
    return 0;
}

static int tune_on(const mend_model *m, const mend_model *teacher, const dataset *dd, const mend_tune_opts *o,
                   mend_tune_info_fn info_fn, mend_tune_progress_fn progress, void *user, mend_tune_result *res) {
    const int warmup = o->warmup >= 0 ? o->warmup : (o->steps / 10 < 100 ? o->steps / 10 : 100);
    const dataset d = *dd;
    int rc = 0;
    run r;
    memset(&r, 0, sizeof r);
    mend_trainer *t = NULL;
    char *ckpt_path = NULL, *csv_path = NULL;
    r.o = o;
    r.dim = m->cfg.dim;
    r.n = o->n_virtual * r.dim;
    r.prompt = calloc((size_t)r.n * 5, sizeof(float));
    r.perm = malloc(sizeof(int) * (size_t)d.n_train);
    r.hist = malloc(sizeof(double) * HIST_COLS * ((size_t)o->steps + 1));
    ckpt_path = mend_path_join(o->out_dir, "checkpoint.bin");
    csv_path = mend_path_join(o->out_dir, "loss.csv");
    if (!r.prompt || !r.perm || !r.hist || !ckpt_path || !csv_path) {
        rc = mend_set_error(MEND_ENOMEM, "tune: out of memory");
        goto done;
    }
    r.m1 = r.prompt + r.n;
    r.m2 = r.m1 + r.n;
    r.best = r.m2 + r.n;
    r.grad = r.best + r.n;
    r.best_val = INFINITY;
    r.first_val = NAN;
    r.fingerprint = fingerprint(o, m, &d, warmup);
    if ((rc = mend_mkdir_p(o->out_dir))) goto done;
    if ((rc = mend_trainer_new(&t, m, o->n_virtual, o->seqlen, o->objective == MEND_TUNE_KL ? teacher : NULL)))
        goto done;
    if (info_fn) {
        mend_tune_info in = {.n_paragraphs = d.n_par, .n_val_paragraphs = d.n_val_par,
                             .n_train_tokens = d.train_tokens, .n_val_tokens = d.val_tokens,
                             .n_train_seqs = d.n_train, .n_val_seqs = d.n_val,
                             .trainer_bytes = mend_trainer_bytes(t)};
        if (info_fn(user, &in)) {
            rc = mend_set_error(MEND_EINVAL, "tune: cancelled");
            goto done;
        }
    }

    int resumed_from = 0;
    if (o->resume && mend_file_exists(ckpt_path)) {
        if ((rc = ckpt_read(&r, ckpt_path, d.n_train))) goto done;
        resumed_from = r.step;
        /* the checkpoint holds the loss history; a kill between writing it
         * and loss.csv left the CSV behind, so rewrite the CSV from it */
        if ((rc = write_csv(&r, csv_path))) goto done;
    } else {
        mend_rng_seed(&r.rng, o->seed);
        if ((rc = init_prompt(&r, m))) goto done;
        memcpy(r.best, r.prompt, sizeof(float) * (size_t)r.n);
        new_epoch(&r, d.n_train);
        r.epoch = 0;
        r.cursor = 0;
    }
    const int have_val = d.n_val > 0;
    const double elapsed_base = r.n_hist > 0 ? r.hist[(size_t)(r.n_hist - 1) * HIST_COLS + 7] : 0.0;
    const double t0 = mend_now();
    int64_t tokens_done = 0;
    if (r.step == 0 && have_val) {   /* the initial prompt's validation loss */
        double vl, vc;
        if ((rc = validate(t, &d, o, r.prompt, &vl, &vc))) goto done;
        r.first_val = vl;
        r.best_val = vl;
        r.best_step = 0;
        double *h = r.hist;
        h[0] = 0, h[1] = 0, h[2] = NAN, h[3] = NAN, h[4] = NAN, h[5] = vl, h[6] = vc, h[7] = 0;
        r.n_hist = 1;
        if (progress) {
            mend_tune_progress p = {.step = 0, .steps = o->steps, .loss = NAN, .ce = NAN, .evaluated = 1,
                                    .val_loss = vl, .val_ce = vc, .best_val = vl, .best_step = 0,
                                    .elapsed = mend_now() - t0};
            if (progress(user, &p)) {
                rc = mend_set_error(MEND_EINVAL, "tune: cancelled");
                goto done;
            }
        }
    }
    const int ns_seq = mend_trainer_n_scored(o->objective, o->seqlen);
    const float scale = 1.0f / (float)((double)ns_seq * o->batch);
    while (r.step < o->steps) {
        const int step = r.step + 1;
        memset(r.grad, 0, sizeof(float) * (size_t)r.n);
        double ls = 0, cs = 0;
        int64_t nsc = 0;
        for (int b = 0; b < o->batch; b++) {
            if (r.cursor >= d.n_train) {
                r.epoch++;
                r.cursor = 0;
                new_epoch(&r, d.n_train);
            }
            const int32_t *seq = d.train + (size_t)r.perm[r.cursor++] * o->seqlen;
            mend_train_loss L;
            if ((rc = mend_trainer_step(t, r.prompt, seq, o->seqlen, o->objective, scale, r.grad, &L))) goto done;
            ls += L.loss_sum;
            cs += L.ce_sum;
            nsc += L.n_scored;
        }
        tokens_done += (int64_t)o->batch * o->seqlen;
        double gn2 = 0;
        for (int i = 0; i < r.n; i++) gn2 += (double)r.grad[i] * r.grad[i];
        const double gnorm = sqrt(gn2);
        if (!isfinite(gnorm)) {
            rc = mend_set_error(MEND_ERANGE, "tune: the gradient is not finite at step %d (lower the learning rate)",
                                step);
            goto done;
        }
        const double cl = o->clip > 0 && gnorm > o->clip ? o->clip / gnorm : 1.0;
        const double lr = lr_at(o, warmup, step);
        const double bc1 = 1.0 - pow(o->beta1, step), bc2 = 1.0 - pow(o->beta2, step);
        for (int i = 0; i < r.n; i++) {
            const double g = r.grad[i] * cl;
            double p = r.prompt[i] * (1.0 - lr * o->weight_decay);
            const double m1 = o->beta1 * r.m1[i] + (1.0 - o->beta1) * g;
            const double m2 = o->beta2 * r.m2[i] + (1.0 - o->beta2) * g * g;
            r.m1[i] = (float)m1;
            r.m2[i] = (float)m2;
            p -= lr * (m1 / bc1) / (sqrt(m2 / bc2) + o->adam_eps);
            r.prompt[i] = (float)p;
        }
        r.step = step;
        mend_tune_progress p = {.step = step, .steps = o->steps, .loss = ls / nsc, .ce = cs / nsc, .lr = lr,
                                .grad_norm = gnorm, .resumed_from = resumed_from, .epoch = r.epoch};
        p.val_loss = p.val_ce = NAN;
        const int time_up = o->max_seconds > 0 && elapsed_base + (mend_now() - t0) >= o->max_seconds;
        if (have_val && (step == o->steps || time_up || (o->eval_every > 0 && step % o->eval_every == 0))) {
            if ((rc = validate(t, &d, o, r.prompt, &p.val_loss, &p.val_ce))) goto done;
            p.evaluated = 1;
            if (p.val_loss < r.best_val) {
                r.best_val = p.val_loss;
                r.best_step = step;
                memcpy(r.best, r.prompt, sizeof(float) * (size_t)r.n);
            }
        }
        p.best_val = r.best_val;
        p.best_step = r.best_step;
        p.elapsed = mend_now() - t0;
        p.tokens_per_s = p.elapsed > 0 ? tokens_done / p.elapsed : 0;
        double *h = r.hist + (size_t)r.n_hist * HIST_COLS;
        h[0] = step, h[1] = lr, h[2] = p.loss, h[3] = p.ce, h[4] = gnorm, h[5] = p.val_loss, h[6] = p.val_ce;
        h[7] = elapsed_base + p.elapsed;   /* training seconds over all processes */
        r.n_hist++;
        if (progress && progress(user, &p)) {
            rc = mend_set_error(MEND_EINVAL, "tune: cancelled at step %d", step);
            goto done;
        }
        if (o->stop_after > 0 && step >= o->stop_after && step < o->steps) goto stopped;
        if ((o->ckpt_every > 0 && step % o->ckpt_every == 0) || step == o->steps || time_up) {
            if ((rc = ckpt_write(&r, ckpt_path, d.n_train))) goto done;
            if ((rc = write_csv(&r, csv_path))) goto done;
        }
        if (time_up) break;
    }
    if ((rc = write_adapters(&r, m, o, have_val))) goto done;
    if ((rc = write_train_json(&r, o))) goto done;
stopped:
    res->steps_done = r.step;
    res->final_loss = r.n_hist ? r.hist[(size_t)(r.n_hist - 1) * HIST_COLS + 2] : NAN;
    res->best_val = have_val ? r.best_val : NAN;
    res->first_val = r.first_val;
    res->best_step = r.best_step;
    res->elapsed = mend_now() - t0;
    res->tokens_per_s = res->elapsed > 0 ? tokens_done / res->elapsed : 0;
done:
    mend_trainer_free(t);
    free(r.prompt);
    free(r.perm);
    free(r.hist);
    free(ckpt_path);
    free(csv_path);
    return rc;
}

int mend_tune_run(const mend_model *m, const mend_model *teacher, const char *const *texts, const size_t *lens,
                  int n_texts, const mend_tune_opts *o, mend_tune_info_fn info_fn, mend_tune_progress_fn progress,
                  void *user, mend_tune_result *res) {
    int rc = check_opts(m, teacher, o, res);
    if (rc) return rc;
    if (n_texts > 0 && (!texts || !lens)) return mend_set_error(MEND_EINVAL, "tune: texts and lengths must be given");
    dataset d;
    if ((rc = prepare_data(m, texts, lens, n_texts, o, &d))) return rc;
    rc = tune_on(m, teacher, &d, o, info_fn, progress, user, res);
    free_data(&d);
    return rc;
}

int mend_tune_sequences(const mend_model *m, const char *const *texts, const size_t *lens, int n_texts,
                        const mend_tune_opts *o, int32_t **train, int *n_train, int32_t **val, int *n_val) {
    if (!m || !o || !train || !n_train || !val || !n_val || (n_texts > 0 && (!texts || !lens)))
        return mend_set_error(MEND_EINVAL, "tune: model, options, texts and outputs must be given");
    if (o->seqlen < 2 || (o->windows != MEND_TUNE_WINDOWS_STREAM && o->windows != MEND_TUNE_WINDOWS_PARAGRAPH))
        return mend_set_error(MEND_EINVAL, "tune: seqlen %d or windows %d is out of range", o->seqlen, o->windows);
    dataset d;
    int rc = prepare_data(m, texts, lens, n_texts, o, &d);
    if (rc) return rc;
    *train = d.train, *n_train = d.n_train, *val = d.val, *n_val = d.n_val;
    return 0;
}

int mend_tune_run_seqs(const mend_model *m, const mend_model *teacher, const int32_t *train, int n_train,
                       const int32_t *val, int n_val, const mend_tune_opts *o, mend_tune_info_fn info_fn,
                       mend_tune_progress_fn progress, void *user, mend_tune_result *res) {
    int rc = check_opts(m, teacher, o, res);
    if (rc) return rc;
    if (!train || n_train < 1 || n_val < 0 || (n_val > 0 && !val))
        return mend_set_error(MEND_EINVAL, "tune: %d training sequences (at least 1) and %d validation sequences",
                              n_train, n_val);
    const int Vv = m->cfg.n_vocab;
    for (int set = 0; set < 2; set++) {
        const int32_t *t = set ? val : train;
        const size_t n = (size_t)(set ? n_val : n_train) * o->seqlen;
        for (size_t i = 0; i < n; i++)
            if (t[i] < 0 || t[i] >= Vv)
                return mend_set_error(MEND_EINVAL, "tune: %s token %d (index %zu) is outside the vocabulary of %d",
                                      set ? "validation" : "training", t[i], i, Vv);
    }
    dataset d = {.train = (int32_t *)train, .val = (int32_t *)val, .n_train = n_train, .n_val = n_val,
                 .n_par = n_train + n_val, .n_val_par = n_val, .train_tokens = (int64_t)n_train * o->seqlen,
                 .val_tokens = (int64_t)n_val * o->seqlen};
    return tune_on(m, teacher, &d, o, info_fn, progress, user, res);
}
