/* Zero-shot scoring with lm-evaluation-harness rules (see harness.h): one
 * example, and many examples at once, packed into batched forwards over
 * lanes. */
#define _GNU_SOURCE
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/util.h"
#include "eval/harness_int.h"

void mend_eval_result_free(mend_eval_result *r) {
    if (!r) return;
    free(r->ll);
    free(r->greedy);
    free(r->n_tokens);
    free(r->n_chars);
    free(r->pred_text);
    free(r->raw_text);
    memset(r, 0, sizeof *r);
}

static char *prefix_space(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(n + 2);
    if (!o) return NULL;
    o[0] = ' ';
    memcpy(o + 1, s, n + 1);
    return o;
}

static const char *const GEN_UNTIL[] = {"\n", ".", ","};

/* The loglikelihood requests of one (non-generation) example. */
typedef struct ex_job {
    int n;
    const char **ctxs;
    char **conts;
    mend_eval_ll *ll;
    eval_plan plan;
} ex_job;

static void job_free(ex_job *j) {
    if (j->ll) {
        eval_ll_release(j->ll, j->n);
        free(j->ll);
    }
    if (j->conts)
        for (int k = 0; k < j->n; k++) free(j->conts[k]);
    free(j->conts);
    free(j->ctxs);
    eval_plan_free(&j->plan);
    memset(j, 0, sizeof *j);
}

/* The requests of example e (and r's per-choice arrays). */
static int job_setup(const mend_task *t, const mend_task_ex *e, mend_eval_result *r, ex_job *j) {
    memset(j, 0, sizeof *j);
    int n = (t->kind == MEND_TASK_LM) ? 1 : e->n_options;
    j->n = n;
    j->ctxs = calloc((size_t)n, sizeof *j->ctxs);
    j->conts = calloc((size_t)n, sizeof *j->conts);
    j->ll = calloc((size_t)n, sizeof *j->ll);
    r->ll = calloc((size_t)n, sizeof *r->ll);
    r->greedy = calloc((size_t)n, sizeof *r->greedy);
    r->n_tokens = calloc((size_t)n, sizeof *r->n_tokens);
    r->n_chars = calloc((size_t)n, sizeof *r->n_chars);
    r->n = n;
    if (!j->ctxs || !j->conts || !j->ll || !r->ll || !r->greedy || !r->n_tokens || !r->n_chars)
        return mend_set_error(MEND_ENOMEM, "out of memory");
    for (int k = 0; k < n; k++) {
        switch (t->kind) {
        case MEND_TASK_MC:
            j->ctxs[k] = e->context;
            j->conts[k] = prefix_space(e->options[k]);
            r->n_chars[k] = (int)mend_utf8_len(e->options[k]);
            break;
        case MEND_TASK_SCHEMA:
            j->ctxs[k] = e->options[k];
            j->conts[k] = prefix_space(e->continuation);
            r->n_chars[k] = (int)mend_utf8_len(e->options[k]);
            break;
        default:
            j->ctxs[k] = e->context;
            j->conts[k] = prefix_space(e->continuation);
            r->n_chars[k] = (int)mend_utf8_len(e->continuation);
            break;
        }
        if (!j->conts[k]) return mend_set_error(MEND_ENOMEM, "out of memory");
    }
    return 0;
}

/* r from the scored requests. */
static int job_finish(mend_eval_backend *b, const mend_task *t, const mend_task_ex *e,
                      const ex_job *j, mend_eval_result *r) {
    const int n = j->n;
    const mend_eval_ll *ll = j->ll;
    for (int k = 0; k < n; k++) {
        r->ll[k] = ll[k].ll;
        r->greedy[k] = ll[k].greedy;
        r->n_tokens[k] = ll[k].n_tokens;
        r->truncated += ll[k].truncated;
    }
    if (t->kind == MEND_TASK_LM) {
        r->acc = ll[0].greedy ? 1.0 : 0.0;
        r->pred = r->pred_norm = -1;
        return b->detokenize(b->user, ll[0].argmax, (size_t)ll[0].n_tokens, &r->pred_text);
    }
    /* np.argmax: first maximum */
    int pred = 0, pred_norm = 0;
    for (int k = 1; k < n; k++) {
        if (r->ll[k] > r->ll[pred]) pred = k;
        double a = r->ll[k] / (double)r->n_chars[k], c = r->ll[pred_norm] / (double)r->n_chars[pred_norm];
        if (a > c) pred_norm = k;
    }
    r->pred = pred;
    r->pred_norm = pred_norm;
    r->acc = pred == e->gold ? 1.0 : 0.0;
    r->acc_norm = pred_norm == e->gold ? 1.0 : 0.0;
    return 0;
}

/* Exact match of a generation against the answer and its aliases; takes
 * raw and cut (the generation cut at the stop strings) into r. */
static int gen_result(const mend_task_ex *e, char *raw, char *cut, mend_eval_result *r) {
    r->raw_text = raw;
    r->pred_text = cut;
    char *stripped = mend_eval_strip(r->pred_text);
    if (!stripped) return mend_set_error(MEND_ENOMEM, "out of memory");
    free(r->pred_text);
    r->pred_text = stripped;
    r->em = 0.0;
    for (int a = 0; a < e->n_options; a++)
        if (mend_eval_exact_match(r->pred_text, e->options[a])) {
            r->em = 1.0;
            break;
        }
    r->pred = -1;
    r->pred_norm = -1;
    return 0;
}

static int example_generate(mend_eval_backend *b, const mend_task *t, const mend_task_ex *e,
                            mend_eval_result *r, mend_eval_stats *stats) {
    char *raw = NULL, *cut = NULL;
    int rc = mend_eval_generate(b, e->context, MEND_EVAL_MAX_GEN, GEN_UNTIL, 3, &raw, &cut, stats);
    if (rc) return mend_error_prefix(rc, "%s:%d", t->path, e->line);
    return gen_result(e, raw, cut, r);
}

/* ---- lanes ----------------------------------------------------------------- */

/* One work item (a group of examples) on a lane; stats gets its positions. */
typedef int (*lane_item_fn)(mend_eval_backend *b, int lane, int item, void *ctx, mend_eval_stats *stats);

/* Items 0..n_items-1 over the backend's lanes (at most lanes of them). One
 * lane: in order, the forwards threaded as usual. More: each lane
 * single-threaded (no barrier inside a forward, so a thread that loses its
 * core holds up only its own lane), items handed out as lanes come free,
 * the rest skipped after a failure. Returns 0, or the error of the lowest
 * failed item (*bad) with that item's error text (which is per thread). */
static int lanes_run(mend_eval_backend *b, int lanes, int n_items, lane_item_fn fn, void *ctx,
                     mend_eval_stats *stats, int *bad) {
    if (lanes > b->n_lanes) lanes = b->n_lanes;
    if (lanes > MEND_EVAL_MAX_LANES) lanes = MEND_EVAL_MAX_LANES;
    if (lanes > n_items) lanes = n_items;
    if (lanes <= 1) {
        for (int g = 0; g < n_items; g++) {
            int rc = fn(b, 0, g, ctx, stats);
            if (rc) {
                *bad = g;
                return rc;
            }
        }
        return 0;
    }
    int bad_rc = 0;
    char bad_msg[512] = "";
    int64_t run = 0;
    *bad = -1;
#pragma omp parallel num_threads(lanes) reduction(+ : run)
    {
        const int lane = omp_get_thread_num();
        omp_set_num_threads(1);   /* this lane's forwards: one thread */
        mend_eval_stats ls;
        memset(&ls, 0, sizeof ls);
#pragma omp for schedule(dynamic, 1)
        for (int g = 0; g < n_items; g++) {
            int stop;
#pragma omp atomic read
            stop = bad_rc;
            if (stop) continue;
            int e = fn(b, lane, g, ctx, &ls);
            if (e) {
#pragma omp critical(mend_eval_lane_error)
                if (!bad_rc || g < *bad) {
                    *bad = g;
                    bad_rc = e;
                    snprintf(bad_msg, sizeof bad_msg, "%s", mend_last_error());
                }
            }
        }
        run += ls.tokens_run;
    }
    if (stats) stats->tokens_run += run;
    return bad_rc ? mend_set_error(bad_rc, "%s", bad_msg) : 0;
}

/* ---- batched generation --------------------------------------------------- */

/* One example of batched generation: its context and what it generated. */
typedef struct gen_job {
    int32_t *ids;           /* tokenized context (malloc'd) */
    const int32_t *ctx;     /* the conditioning tokens, inside ids */
    int n;                  /* their count */
    int base;               /* first text slot of its region while it runs, else -1 */
    int filled;             /* context tokens in the cache */
    int32_t gen[MEND_EVAL_MAX_GEN + 1];
    int ng, done;
    char *text;             /* the generation decoded so far */
} gen_job;

/* Text slots batched generation may take in one lane's cache. */
#define GEN_LANE_SLOTS 4096

/* Greedy generation of jobs[0..n) in one lane with continuous batching:
 * the cache is cut into n_reg regions of reg slots, a running example owns
 * one (its context, then its generated tokens) and attends to it alone, so
 * it generates what it generates alone (mend_eval_generate) up to float
 * rounding. Every forward takes one row per running example that is
 * generating, plus the context rows of examples being admitted (up to
 * max_batch rows); a finished example frees its region for the next one, so
 * the forwards stay full while short answers come and go. */
static int gen_run_lane(mend_eval_backend *b, int lane, gen_job *jobs, int n, int reg, int n_reg,
                        mend_eval_stats *stats) {
    const int max_gen = MEND_EVAL_MAX_GEN, cap = b->max_batch > 0 ? b->max_batch : 256;
    const size_t vocab = (size_t)b->n_vocab;
    int rc = b->reserve_lane(b->user, lane, reg * n_reg);
    if (rc) return rc;
    int32_t *tok = malloc((size_t)cap * sizeof *tok);
    int *slot = malloc((size_t)cap * sizeof *slot), *out_rows = malloc((size_t)cap * sizeof *out_rows);
    int *who = malloc((size_t)cap * sizeof *who), *free_reg = malloc((size_t)n_reg * sizeof *free_reg);
    mend_eval_row *rw = malloc((size_t)cap * sizeof *rw);
    const int max_out = n_reg < cap ? n_reg : cap;
    float *lg = eval_lane_scratch(b, lane, (size_t)max_out * vocab);
    if (!tok || !slot || !out_rows || !who || !free_reg || !rw || !lg) {
        rc = mend_set_error(MEND_ENOMEM, "generate: out of memory");
        goto done;
    }
    int n_free = n_reg;
    for (int g = 0; g < n_reg; g++) free_reg[g] = (n_reg - 1 - g) * reg;
    for (int k = 0; k < n; k++) jobs[k].base = -1;
    int first = 0, next = 0;   /* jobs [first, next) were admitted */
    while (!rc) {
        /* admit while a region is free */
        while (next < n && n_free > 0) {
            jobs[next].base = free_reg[--n_free];
            jobs[next].filled = 0;
            next++;
        }
        int r = 0, o = 0;
        for (int k = first; k < next && r < cap; k++) {
            gen_job *J = &jobs[k];
            if (J->base < 0) continue;
            if (J->filled < J->n) {   /* context rows, as many as fit */
                while (J->filled < J->n && r < cap) {
                    const int j = J->filled++;
                    tok[r] = J->ctx[j];
                    slot[r] = J->base + j;
                    rw[r] = (mend_eval_row){.pos = j, .ctx0 = 0, .ctx1 = 0, .own0 = J->base};
                    if (J->filled == J->n) {
                        out_rows[o] = r;
                        who[o++] = k;
                    }
                    r++;
                }
            } else {                  /* the next token */
                const int p = J->n + J->ng - 1;
                tok[r] = J->gen[J->ng - 1];
                slot[r] = J->base + p;
                rw[r] = (mend_eval_row){.pos = p, .ctx0 = 0, .ctx1 = 0, .own0 = J->base};
                out_rows[o] = r;
                who[o++] = k;
                r++;
            }
        }
        if (!r) break;
        if ((rc = b->forward_rows(b->user, lane, tok, r, slot, rw, o ? lg : NULL, out_rows, o))) break;
        if (stats) stats->tokens_run += r;
        for (int q = 0; q < o && !rc; q++) {
            gen_job *J = &jobs[who[q]];
            int st = eval_gen_step(b, eval_row_argmax(lg + (size_t)q * vocab, b->n_vocab), J->gen, &J->ng, max_gen,
                              GEN_UNTIL, 3, &J->text);
            if (st < 0) rc = st;
            if (st == 1) {   /* finished: its region goes to the next example */
                J->done = 1;
                free_reg[n_free++] = J->base;
                J->base = -1;
            }
        }
        while (first < next && jobs[first].done) first++;
    }
done:
    free(tok);
    free(slot);
    free(out_rows);
    free(who);
    free(free_reg);
    free(rw);
    return rc;
}

typedef struct gen_share {
    gen_job *jobs;
    int n, shares, reg, n_reg;
} gen_share;

static int gen_share_run(mend_eval_backend *b, int lane, int item, void *ctx, mend_eval_stats *stats) {
    const gen_share *sh = ctx;
    const int k0 = (int)((int64_t)sh->n * item / sh->shares), k1 = (int)((int64_t)sh->n * (item + 1) / sh->shares);
    return gen_run_lane(b, lane, sh->jobs + k0, k1 - k0, sh->reg, sh->n_reg, stats);
}

/* Generation examples idx[0..n): the lanes each take a contiguous share
 * and run it with continuous batching (gen_run_lane). */
static int gen_examples_packed(mend_eval_backend *b, const mend_task *t, const size_t *idx, int n,
                               mend_eval_result *r, mend_eval_stats *stats) {
    const int max_gen = MEND_EVAL_MAX_GEN;
    gen_job *jobs = calloc((size_t)n, sizeof *jobs);
    int rc = jobs ? 0 : mend_set_error(MEND_ENOMEM, "generate: out of memory");
    int reg = 0;
    for (int k = 0; k < n && !rc; k++) {
        if (idx[k] >= t->n) {
            rc = mend_set_error(MEND_ERANGE, "%s: example %zu of %zu", t->path, idx[k], t->n);
            break;
        }
        const mend_task_ex *e = &t->ex[idx[k]];
        r[k].kind = t->kind;
        r[k].gold = e->gold;
        if ((rc = eval_gen_context(b, e->context, max_gen, &jobs[k].ids, &jobs[k].ctx, &jobs[k].n, &r[k].truncated,
                              stats)))
            mend_error_prefix(rc, "%s:%d", t->path, e->line);
        else if (jobs[k].n + max_gen > reg)
            reg = jobs[k].n + max_gen;
    }
    /* regions as large as the longest context needs (<= the window), as
     * many as GEN_LANE_SLOTS and the window hold */
    const int lane_slots = b->window > 0 && b->window < GEN_LANE_SLOTS ? b->window : GEN_LANE_SLOTS;
    int n_reg = reg > 0 ? lane_slots / reg : 1;
    if (n_reg < 1) n_reg = 1;
    if (!rc) {
        /* one contiguous share of the examples per lane */
        int lanes = b->n_lanes < MEND_EVAL_MAX_LANES ? b->n_lanes : MEND_EVAL_MAX_LANES;
        if (lanes > n) lanes = n;
        if (lanes < 1) lanes = 1;
        gen_share sh = {jobs, n, lanes, reg, n_reg};
        int bad;
        if ((rc = lanes_run(b, lanes, lanes, gen_share_run, &sh, stats, &bad))) {
            const int k0 = (int)((int64_t)n * bad / lanes), k1 = (int)((int64_t)n * (bad + 1) / lanes);
            mend_error_prefix(rc, "%s:%d-%d", t->path, t->ex[idx[k0]].line, t->ex[idx[k1 - 1]].line);
        }
    }
    for (int k = 0; k < n && !rc; k++) {
        char *raw = NULL, *cut = NULL;
        rc = eval_gen_cut(jobs[k].text, GEN_UNTIL, 3, &raw, &cut);
        jobs[k].text = NULL;
        if (!rc) rc = gen_result(&t->ex[idx[k]], raw, cut, &r[k]);
    }
    if (jobs)
        for (int k = 0; k < n; k++) {
            free(jobs[k].ids);
            free(jobs[k].text);
        }
    free(jobs);
    if (rc)
        for (int k = 0; k < n; k++) mend_eval_result_free(&r[k]);
    return rc;
}

int mend_eval_example(mend_eval_backend *b, const mend_task *t, size_t i,
                      mend_eval_result *r, mend_eval_stats *stats) {
    memset(r, 0, sizeof *r);
    if (i >= t->n) return mend_set_error(MEND_ERANGE, "%s: example %zu of %zu", t->path, i, t->n);
    const mend_task_ex *e = &t->ex[i];
    r->kind = t->kind;
    r->gold = e->gold;
    if (t->kind == MEND_TASK_GEN) {
        int rc = example_generate(b, t, e, r, stats);
        if (rc) mend_eval_result_free(r);
        return rc;
    }
    ex_job j;
    int rc = job_setup(t, e, r, &j);
    if (!rc) {
        rc = mend_eval_loglikelihood(b, j.n, j.ctxs, (const char *const *)j.conts,
                                     t->kind == MEND_TASK_LM, j.ll, stats);
        if (rc) mend_error_prefix(rc, "%s:%d", t->path, e->line);
    }
    if (!rc) rc = job_finish(b, t, e, &j, r);
    job_free(&j);
    if (rc) mend_eval_result_free(r);
    return rc;
}

typedef struct packed_groups {
    eval_plan **group;
    const int *gstart;      /* group g: plans [gstart[g], gstart[g+1]) */
    int want_argmax;
} packed_groups;

static int packed_group_run(mend_eval_backend *b, int lane, int g, void *ctx, mend_eval_stats *stats) {
    const packed_groups *pg = ctx;
    return eval_plans_run_packed(b, lane, pg->group + pg->gstart[g], pg->gstart[g + 1] - pg->gstart[g], pg->want_argmax,
                            stats);
}

int mend_eval_examples(mend_eval_backend *b, const mend_task *t, const size_t *idx, int n,
                       mend_eval_result *r, mend_eval_stats *stats) {
    if (n <= 0) return 0;
    memset(r, 0, (size_t)n * sizeof *r);
    if (t->kind == MEND_TASK_GEN && b->forward_rows && b->reserve_lane) return gen_examples_packed(b, t, idx, n, r, stats);
    if (!b->forward_rows || t->kind == MEND_TASK_GEN) {
        for (int k = 0; k < n; k++) {
            int rc = mend_eval_example(b, t, idx[k], &r[k], stats);
            if (rc) {
                for (int u = 0; u < k; u++) mend_eval_result_free(&r[u]);
                return rc;
            }
        }
        return 0;
    }
    ex_job *jobs = calloc((size_t)n, sizeof *jobs);
    eval_plan **group = calloc((size_t)n, sizeof *group);
    int *gex = calloc((size_t)n, sizeof *gex);             /* example of each group slot */
    int *gstart = calloc((size_t)n + 2, sizeof *gstart);   /* group g: slots [gstart[g], gstart[g+1]) */
    int rc = 0, k = 0;
    const int want_argmax = t->kind == MEND_TASK_LM;
    /* rows per packed forward: at most max_batch, and never more slots than
     * the window (a soft prompt takes its share of the model's context) */
    int cap = b->max_batch > 0 ? b->max_batch : 256;
    if (b->window > 0 && cap > b->window) cap = b->window;
    if (!jobs || !group || !gex || !gstart) {
        rc = mend_set_error(MEND_ENOMEM, "out of memory");
        goto done;
    }
    /* tokenize everything first */
    int max_m = 0;
    for (k = 0; k < n; k++) {
        if (idx[k] >= t->n) {
            rc = mend_set_error(MEND_ERANGE, "%s: example %zu of %zu", t->path, idx[k], t->n);
            goto done;
        }
        const mend_task_ex *e = &t->ex[idx[k]];
        r[k].kind = t->kind;
        r[k].gold = e->gold;
        if (!(rc = job_setup(t, e, &r[k], &jobs[k])))
            rc = eval_plan_build(b, jobs[k].n, jobs[k].ctxs, (const char *const *)jobs[k].conts,
                            jobs[k].ll, stats, &jobs[k].plan);
        if (rc) {
            mend_error_prefix(rc, "%s:%d", t->path, e->line);
            goto done;
        }
        if (jobs[k].plan.max_m > max_m) max_m = jobs[k].plan.max_m;
    }
    if (b->reserve && (rc = b->reserve(b->user, max_m > cap ? max_m : cap))) goto done;
    /* consecutive examples packed into forwards of at most cap rows; an
     * example larger than that runs alone, request by request (first) */
    int n_groups = 0, ng = 0, rows = 0;
    for (k = 0; k < n; k++) {
        const int rk = eval_plan_rows(&jobs[k].plan);
        if (rk > cap) {
            if ((rc = eval_plan_run(b, &jobs[k].plan, want_argmax, stats))) {
                mend_error_prefix(rc, "%s:%d", t->path, t->ex[idx[k]].line);
                goto done;
            }
            continue;
        }
        if (ng && rows + rk > cap) {
            gstart[n_groups + 1] = gstart[n_groups] + ng;
            n_groups++;
            ng = rows = 0;
        }
        group[gstart[n_groups] + ng] = &jobs[k].plan;
        gex[gstart[n_groups] + ng] = k;
        ng++;
        rows += rk;
    }
    if (ng) {
        gstart[n_groups + 1] = gstart[n_groups] + ng;
        n_groups++;
    }
    packed_groups pg = {group, gstart, want_argmax};
    int bad;
    if ((rc = lanes_run(b, b->n_lanes, n_groups, packed_group_run, &pg, stats, &bad))) {
        mend_error_prefix(rc, "%s:%d-%d", t->path, t->ex[idx[gex[gstart[bad]]]].line,
                          t->ex[idx[gex[gstart[bad + 1] - 1]]].line);
        goto done;
    }
    for (k = 0; k < n; k++)
        if ((rc = job_finish(b, t, &t->ex[idx[k]], &jobs[k], &r[k]))) goto done;
done:
    if (jobs)
        for (int u = 0; u < n; u++) job_free(&jobs[u]);
    free(jobs);
    free(group);
    free(gex);
    free(gstart);
    if (rc)
        for (int u = 0; u < n; u++) mend_eval_result_free(&r[u]);
    return rc;
}
