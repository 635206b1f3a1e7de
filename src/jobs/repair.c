/* mend_repair_run (mend/jobs.h): compress, build (or take) a prompt bank,
 * evaluate original / compressed / single prompt / IDP on the tasks and on
 * WikiText-2, and write a report (repair.h has the directory's layout).
 *
 * Every stage is a library job (mend_compress, mend_tune_job_run,
 * mend_bank_build_run, mend_eval_job_run, mend_ppl_job_run), run with the
 * options the command of the same name would get, so a stage writes what
 * `mend compress`, `mend tune`, ... would, and each resumes on its own:
 * compress from its per-layer checkpoint, the prompts from their training
 * checkpoints, eval per example, ppl per run. A stage that finished leaves
 * stages/STAGE.json and is skipped when the same job runs again; its report
 * text is in logs/STAGE.txt. */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

#include "jobs_int.h"
#include "repair.h"
#include "util/util.h"

typedef struct budget {
    const char *name;
    int nsamples, seqlen;       /* calibration */
    int steps, spec_steps;      /* prompt training: the shared prompt, then each domain prompt */
    int batch, tseqlen;
    int limit;                  /* examples per task, 0: all */
    int ppl_ctx, ppl_windows;   /* WikiText-2, gptq protocol; windows 0: all */
} budget;

static const budget BUDGETS[] = {
    {"quick", 32, 512, 30, 5, 4, 256, 100, 512, 24},
    {"standard", 64, 2048, 200, 20, 4, 256, 0, 2048, 0},
    {"full", 128, 2048, 1000, 100, 4, 256, 0, 2048, 0},
};

static const char *const DEFAULT_DOMAINS[] = {"wiki", "news", "science", "fiction", "dialog", "lore"};
#define MAX_DOMAINS 16
#define MAX_TASKS 64
#define MAX_CALIB 32

/* ---- the compression spec ---- */

static const char *const GGML_TYPES[] = {"q8_0", "q5_0", "q5_1", "q4_0", "q4_1", "q6_k",
                                         "q5_k", "q4_k", "q3_k", "q2_k", "f16"};

static int parse_quant(const char *spec, const char *q, int need_method, repair_spec *sp) {
    const char *colon = strchr(q, ':');
    const char *type = q;
    snprintf(sp->method, sizeof sp->method, "gptq");
    if (colon) {
        size_t n = (size_t)(colon - q);
        if (n == 3 && !strncmp(q, "rtn", 3)) snprintf(sp->method, sizeof sp->method, "rtn");
        else if (!(n == 4 && !strncmp(q, "gptq", 4)))
            return mend_set_error(MEND_EINVAL, "--compress '%s': unknown quantizer '%.*s' (expected rtn or gptq)",
                                  spec, (int)n, q);
        type = colon + 1;
    } else if (need_method) {
        return mend_set_error(MEND_EINVAL, "--compress '%s': expected METHOD:TYPE (e.g. gptq:q4_0, rtn:int3g64, "
                              "sparsegpt:0.5)", spec);
    }
    if (!strncmp(type, "int", 3)) {
        const char *p = type + 3;
        char *end;
        long b = strtol(p, &end, 10);
        if (end == p || (b != 2 && b != 3 && b != 4 && b != 8))
            return mend_set_error(MEND_EINVAL, "--compress '%s': '%s' needs 2, 3, 4 or 8 bits (e.g. int3g64)", spec,
                                  type);
        sp->bits = (int)b;
        sp->group = -1;
        p = end;
        if (*p == 'g') {
            long g = strtol(p + 1, &end, 10);
            if (end == p + 1 || (g != 32 && g != 64 && g != 128))
                return mend_set_error(MEND_EINVAL, "--compress '%s': group size in '%s' must be 32, 64 or 128",
                                      spec, type);
            sp->group = (int)g;
            p = end;
        }
        if (!strcmp(p, "sym")) sp->sym = 1;
        else if (*p && strcmp(p, "asym"))
            return mend_set_error(MEND_EINVAL, "--compress '%s': unexpected '%s' after the bits and group", spec, p);
        sp->type[0] = 0;
        return 0;
    }
    for (size_t i = 0; i < sizeof GGML_TYPES / sizeof *GGML_TYPES; i++)
        if (!strcmp(type, GGML_TYPES[i])) {
            snprintf(sp->type, sizeof sp->type, "%s", type);
            return 0;
        }
    return mend_set_error(MEND_EINVAL, "--compress '%s': unknown type '%s' (a ggml type such as q4_0, q3_k, q2_k, "
                          "or intB[gG][sym] such as int3g64)", spec, type);
}

int repair_spec_parse(const char *spec, repair_spec *sp) {
    memset(sp, 0, sizeof *sp);
    if (!spec || !*spec) return mend_set_error(MEND_EINVAL, "--compress: empty spec");
    if (strlen(spec) > 120) return mend_set_error(MEND_EINVAL, "--compress: spec longer than 120 characters");
    char buf[128];
    snprintf(buf, sizeof buf, "%s", spec);
    char *plus = strchr(buf, '+');
    if (plus) *plus = 0;
    static const char *const PRUNERS[] = {"magnitude", "wanda", "sparsegpt"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(PRUNERS[i]);
        if (!strncmp(buf, PRUNERS[i], n) && buf[n] == ':') {
            const char *s = buf + n + 1;
            if (!*s) return mend_set_error(MEND_EINVAL, "--compress '%s': %s needs a sparsity (0.5, 50%% or 2:4)",
                                           spec, PRUNERS[i]);
            if (strlen(s) >= sizeof sp->sparsity)
                return mend_set_error(MEND_EINVAL, "--compress '%s': sparsity '%s' is too long", spec, s);
            snprintf(sp->prune, sizeof sp->prune, "%s", PRUNERS[i]);
            snprintf(sp->sparsity, sizeof sp->sparsity, "%s", s);
            if (!plus) {   /* pruning only: weights kept in f16 */
                snprintf(sp->method, sizeof sp->method, "rtn");
                snprintf(sp->type, sizeof sp->type, "f16");
                return 0;
            }
            if (strchr(plus + 1, '+'))
                return mend_set_error(MEND_EINVAL, "--compress '%s': at most one '+'", spec);
            return parse_quant(spec, plus + 1, 0, sp);
        }
    }
    if (plus) return mend_set_error(MEND_EINVAL, "--compress '%s': '+' follows a pruning method (e.g. "
                                    "sparsegpt:0.5+q4_0)", spec);
    return parse_quant(spec, buf, 1, sp);
}


int mend_repair_spec_check(const char *spec) {
    repair_spec sp;
    return repair_spec_parse(spec, &sp);
}

/* The options of `mend compress --method M --type T | --bits B --group G
 * --sym|--asym [--prune P --sparsity S]` for sp, into j (from
 * mend_compress_job_init; po is the pruning j points to). */
static int spec_opts(const repair_spec *sp, mend_compress_job *j, mend_prune_opts *po) {
    mend_compress_opts *o = &j->opts;
    o->damp = 0.01;
    o->method = !strcmp(sp->method, "rtn") ? MEND_COMPRESS_RTN : MEND_COMPRESS_GPTQ;
    int rc;
    if (sp->bits) o->fmt = mend_qfmt_generic(sp->bits, sp->group, sp->sym);
    else if ((rc = mend_qfmt_parse(&o->fmt, sp->type))) return rc;
    *po = (mend_prune_opts){MEND_PRUNE_NONE, mend_sparsity_unstructured(0.5), 0};
    if (sp->prune[0]) {
        if (mend_prune_method_parse(sp->prune, &po->method) || mend_sparsity_parse(&po->sp, sp->sparsity))
            return mend_set_error(MEND_EINVAL, "--compress: %s", mend_last_error());
        o->prune = po;
    }
    return 0;
}

/* ---- stages ---- */

typedef struct repair {
    mend_event_fn fn;
    void *user;
    char *out;
    int stage_no, n_stages;
    const char *stage_name;
    FILE *log;                  /* the running stage's logs/STAGE.txt */
    double t_start;
} repair;

/* The handler every stage's job reports to: its report text into the
 * stage's log, everything else (with the stage) to the caller. */
static int stage_event(void *user, const mend_event *ev) {
    repair *R = user;
    if (ev->kind == MEND_EV_TEXT) {
        if (R->log) fputs(ev->text, R->log);
        return 0;
    }
    if (R->log && (ev->kind == MEND_EV_NOTE || ev->kind == MEND_EV_WARNING))
        fprintf(R->log, "%s: %s\n", ev->kind == MEND_EV_NOTE ? "note" : "warning", ev->text);
    if (!R->fn) return 0;
    mend_event e = *ev;
    e.stage = R->stage_no;
    e.n_stages = R->n_stages;
    e.stage_name = R->stage_name;
    return R->fn(R->user, &e);
}

static int announce(repair *R, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int announce(repair *R, const char *name, const char *fmt, ...) {
    if (!R->fn) return 0;
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    mend_event e = {.kind = MEND_EV_STAGE, .text = s ? s : name, .stage = R->stage_no, .n_stages = R->n_stages,
                    .stage_name = name};
    int r = R->fn(R->user, &e);
    free(s);
    return r;
}

typedef int (*stage_fn)(repair *R, void *arg);

/* Run one stage unless stages/NAME.json says it finished. */
static int stage(repair *R, const char *name, const char *what, stage_fn run, void *arg) {
    char *done = job_pathf("%s/stages/%s.json", R->out, name),
         *started = job_pathf("%s/stages/%s.started", R->out, name), *log = job_pathf("%s/logs/%s.txt", R->out, name);
    int rc = 0;
    R->stage_no++;
    if (!done || !started || !log) {
        rc = mend_set_error(MEND_ENOMEM, "out of memory");
        goto out;
    }
    if (mend_file_exists(done)) {
        if (announce(R, name, "%s: done earlier", what)) rc = job_cancelled("repair");
        goto out;
    }
    int resumed = mend_file_exists(started);
    if (!resumed && mend_write_file_atomic(started, "", 0)) {
        rc = -1;
        goto out;
    }
    char el[32];
    if (announce(R, name, "%s%s (elapsed %s)", what, resumed ? ", resuming" : "",
                 mend_fmt_duration(mend_now() - R->t_start, el, sizeof el))) {
        rc = job_cancelled("repair");
        goto out;
    }
    R->log = fopen(log, "w");
    if (!R->log) {
        rc = mend_set_error(MEND_EIO, "cannot write %s", log);
        goto out;
    }
    R->stage_name = name;
    double t0 = mend_now();
    int st = run(R, arg);
    double secs = mend_now() - t0;
    if (st) fprintf(R->log, "error: %s\n", mend_last_error());
    int wr = fclose(R->log);
    R->log = NULL;
    R->stage_name = NULL;
    if (st) {
        rc = mend_error_prefix(st, "stage '%s' (its report is in %s; run the same job again to resume)", name, log);
        goto out;
    }
    if (wr) {
        rc = mend_set_error(MEND_EIO, "cannot write %s", log);
        goto out;
    }
    json_t *js = json_pack("{s:s, s:f, s:b}", "stage", name, "seconds", secs, "resumed", resumed);
    char *s = js ? json_dumps(js, JSON_REAL_PRECISION(8)) : NULL;
    json_decref(js);
    rc = s ? mend_write_file_atomic(done, s, strlen(s)) : mend_set_error(MEND_ENOMEM, "out of memory");
    free(s);
out:
    free(done);
    free(started);
    free(log);
    return rc;
}

/* ---- the stages' jobs ---- */

static int run_compress(repair *R, void *arg) { return mend_compress_job_run(arg, NULL, stage_event, R); }
static int run_tune(repair *R, void *arg) { return mend_tune_job_run(arg, stage_event, R); }
static int run_bank(repair *R, void *arg) { return mend_bank_build_run(arg, stage_event, R); }
static int run_eval(repair *R, void *arg) { return mend_eval_job_run(arg, stage_event, R); }
static int run_ppl(repair *R, void *arg) { return mend_ppl_job_run(arg, stage_event, R); }

/* A prompt distilled from teacher on every domain's corpus, from the prompt
 * in init (NULL: sampled vocabulary). paragraph: windows that start at
 * paragraph starts, 4x as many of a quarter the length per step (the same
 * tokens), as a task query starts a text (docs/results.md, "Paragraph
 * windows"). */
static int tune_stage(repair *R, const budget *B, const char *name, const char *teacher, const char *cmodel,
                      const char *out, const char *init, int steps, const char *const *dom_file, int n_dom,
                      int paragraph) {
    mend_tune_job t;
    mend_tune_job_init(&t);
    t.model = cmodel;
    t.corpora = dom_file;
    t.n_corpora = n_dom;
    t.teacher = teacher;
    t.plot = 1;
    t.opts.out_dir = out;
    if (init) {   /* another seed: the shared prompt's run drew its sequences in seed 1234's order */
        t.init_adapter = init;
        t.opts.seed = 1235;
    } else {
        t.opts.n_virtual = 20;
        t.tokens_given = 1;
    }
    t.opts.steps = steps;
    if (paragraph) {
        t.opts.windows = MEND_TUNE_WINDOWS_PARAGRAPH;
        t.opts.batch = 4 * B->batch;
        t.opts.seqlen = B->tseqlen / 4 > 2 ? B->tseqlen / 4 : 2;
    } else {
        t.opts.batch = B->batch;
        t.opts.seqlen = B->tseqlen;
    }
    t.opts.lr = 3e-3;
    t.opts.val_seqs = paragraph ? 64 : 16;
    t.opts.resume = 1;
    char what[192];
    snprintf(what, sizeof what, "%s prompt on all %d domains x %d steps%s", name, n_dom, steps,
             init ? " from the shared prompt" : "");
    return stage(R, name, what, run_tune, &t);
}

/* ---- copying a shipped bank ---- */

static int copy_file(const char *src, const char *dst) {
    char *buf = NULL;
    size_t len = 0;
    int rc = mend_read_file(src, (size_t)1 << 30, &buf, &len);
    if (rc == 0) rc = mend_write_file_atomic(dst, buf, len);
    free(buf);
    return rc;
}

/* Copy the bank in src (read and checked as every bank is, mend_bank_read)
 * into dst: each listed adapter's files and loss curve (not its
 * checkpoints), the single prompt when there is one, bank.json last. */
static int copy_bank(const char *src, const char *dst) {
    static const char *const KEEP[] = {"adapter_config.json", "adapter_model.safetensors", "loss.csv",
                                       "train.json"};
    mend_bank *bk = NULL;
    int rc = mend_bank_read(src, &bk);
    mend_bank_info bi = {0};
    if (rc == 0) mend_bank_get_info(bk, &bi);
    for (int i = 0; rc == 0 && i <= bi.n_prompts; i++) {
        mend_bank_prompt_info pi = {.adapter = "single"};
        if (i < bi.n_prompts) mend_bank_get_prompt(bk, i, &pi);
        const char *ad = pi.adapter;
        char *d = job_pathf("%s/%s", dst, ad);
        rc = d ? mend_mkdir_p(d) : mend_set_error(MEND_ENOMEM, "out of memory");
        for (size_t k = 0; k < sizeof KEEP / sizeof *KEEP && rc == 0; k++) {
            char *from = job_pathf("%s/%s/%s", src, ad, KEEP[k]), *to = job_pathf("%s/%s", d, KEEP[k]);
            if (!from || !to) rc = mend_set_error(MEND_ENOMEM, "out of memory");
            else if (mend_file_exists(from)) rc = copy_file(from, to);
            free(from);
            free(to);
        }
        free(d);
    }
    mend_bank_free(bk);
    if (rc) return rc;
    char *from = job_pathf("%s/%s", src, MEND_BANK_FILE), *to = job_pathf("%s/%s", dst, MEND_BANK_FILE);
    rc = from && to ? copy_file(from, to) : mend_set_error(MEND_ENOMEM, "out of memory");
    free(from);
    free(to);
    return rc;
}

/* ---- a given bank must fit the compressed model ---- */

/* The bank in bank_dir (bank.json, and its single prompt when there is one)
 * must have been trained on the model this run compressed: the same
 * fingerprint, or (with a warning) the same recipe, i.e. the same source and
 * compression settings with a few weights rounded otherwise. Anything else,
 * a bank trained for another compression or one that records no model, is
 * refused: its prompts would be measured on weights they were not trained
 * for. */
static int check_bank_model(repair *R, const char *bank_dir, const char *cmodel) {
    mend_load_opts lo = {.keep_packed = 1, .no_repack = 1};
    mend_model *m = NULL;
    mend_bank *bk = NULL;
    mend_fp fp, single = {0};
    float *emb = NULL;
    int nv = 0, rc;
    if ((rc = mend_model_load(&m, cmodel, &lo)) || (rc = mend_model_fingerprint(m, &fp))) {
        mend_model_free(m);
        return rc;
    }
    mend_model_info info;
    mend_model_get_info(m, &info);
    mend_model_free(m);
    if ((rc = mend_bank_read(bank_dir, &bk))) return rc;
    char *sdir = job_pathf("%s/single", bank_dir);
    int has_single = sdir && mend_is_dir(sdir);
    if (has_single && (rc = mend_adapter_read_fp(sdir, info.dim, &emb, &nv, &single))) {
        free(sdir);
        mend_bank_free(bk);
        return mend_error_prefix(rc, "the bank's single prompt");
    }
    free(emb);
    mend_bank_info bi;
    mend_bank_get_info(bk, &bi);
    const mend_fp rec = bi.trained_on;
    mend_bank_free(bk);
    int match = mend_fp_compare(&fp, &rec);
    const char *what = bank_dir;
    if (match <= MEND_FP_SAME_RECIPE && has_single && mend_fp_compare(&fp, &single) > match) {
        match = mend_fp_compare(&fp, &single);   /* the single prompt fits less well than the bank */
        what = sdir;
    }
    const mend_fp *r = what == bank_dir ? &rec : &single;
    char a[64], b[64], c[4096], nd[2048];
    mend_fp_describe(r, a, sizeof a);
    mend_fp_describe(&fp, b, sizeof b);
    rc = 0;
    if (match == MEND_FP_SAME_RECIPE) {
        job_emit(R->fn, R->user, MEND_EV_WARNING, "the prompt bank %s was trained on model fingerprint %s, this "
                 "run's %s is %s: not the same bytes, but the same recipe (same source model and compression "
                 "settings; float rounding on another CPU moves a few weights), so the bank is used", what, a, cmodel,
                 b);
    } else if (match != MEND_FP_SAME) {
        rc = mend_set_error(MEND_EINVAL, "the prompt bank %s %s%s, but this run compressed %s to model fingerprint "
                            "%s: the bank was trained for %s, and its prompts would be measured on weights they were "
                            "not trained for. Retrain it for this model: `%s` then `mend tune %s --corpus FILE ... -o "
                            "%s/single` (scripts/train_bank.sh makes the shipped bank that way), and pass --bank-dir "
                            "%s; or run without --bank-dir to train the bank in this run", what,
                            match == MEND_FP_UNKNOWN ? "records no model fingerprint" : "was trained on model "
                                                                                       "fingerprint ",
                            match == MEND_FP_UNKNOWN ? " (built before mend recorded them)" : a, cmodel, b,
                            match == MEND_FP_UNKNOWN ? "an unknown model" : "another model",
                            mend_retrain_cmd(1, cmodel, bank_dir, &fp, c, sizeof c), cmodel,
                            mend_retrain_dir(bank_dir, &fp, nd, sizeof nd), nd);
    }
    free(sdir);
    return rc;
}

/* ---- the plan ---- */

/* the same path, or two paths of one existing file */
static int same_file(const char *a, const char *b) {
    if (!strcmp(a, b)) return 1;
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    int same = ra && rb && !strcmp(ra, rb);
    free(ra);
    free(rb);
    return same;
}

static int check_plan_tasks(const char *path, json_t *old, json_t *now) {
    size_t i, k;
    json_t *a, *b;
    json_array_foreach(now, i, a) {
        char na[128], nb[128];
        mend_file_title(json_string_value(a), na, sizeof na);
        json_array_foreach(old, k, b) {
            if (!json_is_string(b))
                return mend_set_error(MEND_EFORMAT, "%s: field 'tasks' item %zu is not a string; delete the "
                                      "directory to start again", path, k);
            mend_file_title(json_string_value(b), nb, sizeof nb);
            if (!strcmp(na, nb) && !same_file(json_string_value(a), json_string_value(b)))
                return mend_set_error(MEND_EINVAL, "%s: this directory holds results of task %s from %s, this "
                                      "command gives %s; use another -o DIR to evaluate a different file",
                                      path, na, json_string_value(b), json_string_value(a));
        }
    }
    return 0;
}

static int check_plan(const char *path, json_t *plan) {
    if (!mend_file_exists(path)) {
        char *s = json_dumps(plan, JSON_INDENT(1) | JSON_SORT_KEYS);
        int rc = s ? mend_write_file_atomic(path, s, strlen(s)) : mend_set_error(MEND_ENOMEM, "out of memory");
        free(s);
        return rc;
    }
    json_error_t err;
    json_t *old = json_load_file(path, 0, &err);
    if (!old) return mend_set_error(MEND_EFORMAT, "%s: not valid JSON: %s (line %d); delete the directory to "
                                    "start again", path, err.text, err.line);
    const char *key;
    json_t *v;
    int rc = 0, rewrite = 0;
    json_object_foreach(plan, key, v) {
        json_t *o = json_object_get(old, key);
        if (!strcmp(key, "tasks") && o && json_is_array(o)) {
            /* the stages before evaluation do not depend on the tasks, and each
             * task's results are its own: a rerun may add or drop tasks, as long
             * as a task name it shares with the run is the same file */
            if ((rc = check_plan_tasks(path, o, v))) break;
            rewrite = !json_equal(o, v);
            continue;
        }
        if (!o || !json_equal(o, v)) {
            char *a = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT), *b = o ? json_dumps(o, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
            rc = mend_set_error(MEND_EINVAL, "%s: this directory holds a run with %s = %.200s, this command has "
                                "%.200s; use another -o DIR (or delete it) to start a different run", path, key,
                                b ? b : "(none)", a ? a : "?");
            free(a);
            free(b);
            break;
        }
    }
    json_decref(old);
    if (rc == 0 && rewrite) {
        char *s = json_dumps(plan, JSON_INDENT(1) | JSON_SORT_KEYS);
        rc = s ? mend_write_file_atomic(path, s, strlen(s)) : mend_set_error(MEND_ENOMEM, "out of memory");
        free(s);
    }
    return rc;
}

void mend_repair_job_init(mend_repair_job *j) {
    memset(j, 0, sizeof *j);
    j->limit = j->ppl_windows = j->ppl_ctx = j->steps = j->spec_steps = j->nsamples = j->seqlen = j->train_seqlen = -1;
}

static int check_job(const mend_repair_job *j, const budget **B) {
    if (!j) return mend_set_error(MEND_EINVAL, "repair: no job");
    if (!j->model || !*j->model) return mend_set_error(MEND_EINVAL, "repair: field 'model' is missing");
    if (!j->out || !*j->out) return mend_set_error(MEND_EINVAL, "repair: field 'out' is missing");
    if (!j->ppl_text || !*j->ppl_text) return mend_set_error(MEND_EINVAL, "repair: field 'ppl_text' is missing");
    if (!j->compress) return mend_set_error(MEND_EINVAL, "repair: field 'compress' is missing");
    int rc = mend_repair_spec_check(j->compress);
    if (rc) return rc;
    *B = &BUDGETS[1];
    if (j->budget) {
        *B = NULL;
        for (size_t i = 0; i < sizeof BUDGETS / sizeof *BUDGETS; i++)
            if (!strcmp(j->budget, BUDGETS[i].name)) *B = &BUDGETS[i];
        if (!*B) return mend_set_error(MEND_EINVAL, "repair: field 'budget' is '%s', expected quick, standard or full",
                                       j->budget);
    }
    if (j->n_tasks < 1 || j->n_tasks > MAX_TASKS || !j->tasks)
        return mend_set_error(MEND_EINVAL, "repair: field 'n_tasks' is %d, expected 1 to %d task files", j->n_tasks,
                              MAX_TASKS);
    if (j->n_domains < 0 || j->n_domains > MAX_DOMAINS || (j->n_domains && !j->domains))
        return mend_set_error(MEND_EINVAL, "repair: field 'n_domains' is %d, expected 0 to %d", j->n_domains,
                              MAX_DOMAINS);
    if (j->n_calib < 0 || j->n_calib > MAX_CALIB || (j->n_calib && !j->calib))
        return mend_set_error(MEND_EINVAL, "repair: field 'n_calib' is %d, expected 0 to %d", j->n_calib, MAX_CALIB);
    if (j->bank_dir && j->n_domains)
        return mend_set_error(MEND_EINVAL, "repair: give a bank directory (bank_dir) or domains to train, not both");
    static const char *const nm[] = {"limit", "ppl_windows", "ppl_ctx", "steps", "spec_steps", "nsamples", "seqlen",
                                     "train_seqlen"};
    const int v[] = {j->limit, j->ppl_windows, j->ppl_ctx, j->steps, j->spec_steps, j->nsamples, j->seqlen,
                     j->train_seqlen};
    static const int lo[] = {0, 0, 16, 1, 1, 1, 16, 8};
    for (int k = 0; k < 8; k++)
        if (v[k] >= 0 && v[k] < lo[k])
            return mend_set_error(MEND_EINVAL, "repair: field '%s' is %d, expected >= %d (or < 0: the budget's)",
                                  nm[k], v[k], lo[k]);
    for (int i = 0; i < j->n_tasks; i++)
        if (!j->tasks[i] || !mend_file_exists(j->tasks[i]))
            return mend_set_error(MEND_EIO, "task file '%s' does not exist", j->tasks[i] ? j->tasks[i] : "(null)");
    if (!mend_file_exists(j->ppl_text))
        return mend_set_error(MEND_EIO, "perplexity text '%s' does not exist", j->ppl_text);
    return 0;
}

int mend_repair_run(const mend_repair_job *j, mend_event_fn fn, void *user) {
    const budget *Bp = NULL;
    int rc = check_job(j, &Bp);
    if (rc) return rc;
    budget B = *Bp;
    repair_spec sp;
    repair_spec_parse(j->compress, &sp);
    const int ov[8] = {j->limit, j->ppl_windows, j->ppl_ctx, j->steps, j->nsamples, j->seqlen, j->train_seqlen,
                       j->spec_steps};
    if (ov[0] >= 0) B.limit = ov[0];
    if (ov[1] >= 0) B.ppl_windows = ov[1];
    if (ov[2] >= 0) B.ppl_ctx = ov[2];
    if (ov[3] >= 0) B.steps = ov[3];
    if (ov[4] >= 0) B.nsamples = ov[4];
    if (ov[5] >= 0) B.seqlen = ov[5];
    if (ov[6] >= 0) B.tseqlen = ov[6];
    if (ov[7] >= 0) B.spec_steps = ov[7];

    char *dom_name[MAX_DOMAINS] = {0}, *dom_file[MAX_DOMAINS] = {0};
    const char *calib[MAX_CALIB];
    int n_dom = 0, n_calib = 0;
    char *cmodel = NULL, *bank = NULL, *single = NULL, *shared = NULL, *md = NULL;
    repair R = {.fn = fn, .user = user, .t_start = mend_now()};

    /* the domains are needed only when prompts are trained here */
    int need_corpus = !j->bank_dir;
    if (j->bank_dir) {
        char *p = job_pathf("%s/single/adapter_model.safetensors", j->bank_dir);
        need_corpus = !p || !mend_file_exists(p);
        free(p);
    }
    if (need_corpus) {
        const char *const *src = j->domains;
        int n_src = j->n_domains;
        if (n_src == 0) src = DEFAULT_DOMAINS, n_src = 6;
        for (int i = 0; i < n_src; i++) {
            const char *eq = strchr(src[i], '=');
            if (eq) {
                dom_name[n_dom] = strndup(src[i], (size_t)(eq - src[i]));
                dom_file[n_dom] = strdup(eq + 1);
            } else {
                if (!j->corpus_dir) {
                    rc = mend_set_error(MEND_EINVAL, "no corpus directory for domain '%s': give NAME=FILE or the "
                                        "data's corpus directory (corpus_dir)", src[i]);
                    goto out;
                }
                dom_name[n_dom] = strdup(src[i]);
                dom_file[n_dom] = job_pathf("%s/%s.txt", j->corpus_dir, src[i]);
            }
            n_dom++;
            if (!dom_name[n_dom - 1] || !dom_file[n_dom - 1]) goto oom;
            if (!mend_bank_name_ok(dom_name[n_dom - 1])) {
                rc = mend_set_error(MEND_EINVAL, "domain name '%s' must be 1..64 characters of [A-Za-z0-9_.-]",
                                    dom_name[n_dom - 1]);
                goto out;
            }
            for (int k = 0; k < n_dom - 1; k++)
                if (!strcmp(dom_name[k], dom_name[n_dom - 1])) {
                    rc = mend_set_error(MEND_EINVAL, "domain '%s' given twice", dom_name[k]);
                    goto out;
                }
            if (!mend_file_exists(dom_file[n_dom - 1])) {
                rc = mend_set_error(MEND_EIO, "corpus '%s' of domain '%s' does not exist", dom_file[n_dom - 1],
                                    dom_name[n_dom - 1]);
                goto out;
            }
        }
    }
    for (int i = 0; i < j->n_calib; i++) calib[n_calib++] = j->calib[i];

    if ((rc = mend_mkdir_p(j->out))) goto out;
    R.out = strdup(j->out);
    if (!R.out) goto oom;
    /* the plan: a rerun must be the same run */
    char settings[8192];
    {
        char lim[32], win[32], pr[4200];
        snprintf(lim, sizeof lim, "the first %d", B.limit);
        snprintf(win, sizeof win, "the first %d", B.ppl_windows);
        if (j->bank_dir && !need_corpus)
            snprintf(pr, sizeof pr, "the bank %.2048s (its bank.json says how it was trained)", j->bank_dir);
        else if (j->bank_dir)
            snprintf(pr, sizeof pr, "the domain prompts of the bank %.2048s; the single prompt distilled, 20 virtual "
                     "tokens, %d steps x %d paragraph windows x %d tokens, lr 3e-3", j->bank_dir,
                     B.steps + n_dom * B.spec_steps, 4 * B.batch, B.tseqlen / 4 > 2 ? B.tseqlen / 4 : 2);
        else
            snprintf(pr, sizeof pr, "distilled from the model, 20 virtual tokens, x %d x %d tokens per step, lr 3e-3: "
                     "a shared prompt %d steps, each domain prompt %d more from it, the single prompt %d more from "
                     "it on paragraph windows (%d x %d tokens per step)", B.batch, B.tseqlen, B.steps, B.spec_steps,
                     n_dom * B.spec_steps, 4 * B.batch, B.tseqlen / 4 > 2 ? B.tseqlen / 4 : 2);
        snprintf(settings, sizeof settings,
                 "calibration %d x %d tokens; prompts: %s; %s examples per task; WikiText-2 test (gptq protocol), "
                 "%s windows of %d tokens", B.nsamples, B.seqlen, pr, B.limit ? lim : "all",
                 B.ppl_windows ? win : "all", B.ppl_ctx);
    }
    json_t *plan = json_object(), *jt = json_array(), *jd = json_array(), *jc = json_array();
    if (!plan || !jt || !jd || !jc) {
        json_decref(plan), json_decref(jt), json_decref(jd), json_decref(jc);
        goto oom;
    }
    for (int i = 0; i < j->n_tasks; i++) json_array_append_new(jt, json_string(j->tasks[i]));
    for (int i = 0; i < n_dom; i++) json_array_append_new(jd, json_pack("[s, s]", dom_name[i], dom_file[i]));
    for (int i = 0; i < n_calib; i++) json_array_append_new(jc, json_string(calib[i]));
    json_object_set_new(plan, "model", json_string(j->model));
    json_object_set_new(plan, "compress", json_string(j->compress));
    json_object_set_new(plan, "budget", json_string(B.name));
    json_object_set_new(plan, "settings", json_string(settings));
    json_object_set_new(plan, "tasks", jt);
    json_object_set_new(plan, "bank_dir", j->bank_dir ? json_string(j->bank_dir) : json_null());
    json_object_set_new(plan, "domains", jd);
    json_object_set_new(plan, "calib", jc);
    json_object_set_new(plan, "ppl_text", json_string(j->ppl_text));
    char *plan_path = job_pathf("%s/repair.json", R.out);
    rc = plan_path ? check_plan(plan_path, plan) : mend_set_error(MEND_ENOMEM, "out of memory");
    json_decref(plan);
    free(plan_path);
    if (rc) goto out;
    static const char *const SUBDIRS[] = {"stages", "logs", "ppl", "results/original", "results/compressed",
                                          "results/single", "results/idp"};
    for (size_t i = 0; i < sizeof SUBDIRS / sizeof *SUBDIRS; i++) {
        char *sub = job_pathf("%s/%s", R.out, SUBDIRS[i]);
        rc = sub ? mend_mkdir_p(sub) : mend_set_error(MEND_ENOMEM, "out of memory");
        free(sub);
        if (rc) goto out;
    }
    /* the calibration texts: the ones given, else mend compress's default
     * corpora (checked here, before any stage runs) */
    if (n_calib == 0 && !j->corpus_dir) {
        rc = mend_set_error(MEND_EINVAL, "no calibration text: give calib files or the data's corpus directory "
                            "(corpus_dir)");
        goto out;
    }

    const int n_ppl = 4, n_eval = 4 * j->n_tasks;
    R.n_stages = 1 + (j->bank_dir ? 2 : 3) + n_eval + n_ppl;
    cmodel = job_pathf("%s/model.gguf", R.out);
    bank = job_pathf("%s/bank", R.out);
    single = job_pathf("%s/bank/single", R.out);
    shared = job_pathf("%s/bank/shared", R.out);
    if (!cmodel || !bank || !single || !shared) goto oom;

    /* 1. compress */
    {
        mend_compress_job a;
        mend_prune_opts po;
        mend_compress_job_init(&a);
        if ((rc = spec_opts(&sp, &a, &po))) goto out;
        a.model = j->model;
        a.out = cmodel;
        a.calib = calib;
        a.n_calib = n_calib;
        a.corpus_dir = j->corpus_dir;
        a.nsamples = B.nsamples;
        a.seqlen = B.seqlen;
        char what[256];
        snprintf(what, sizeof what, "compress %s -> %s", j->compress, cmodel);
        if ((rc = stage(&R, "compress", what, run_compress, &a))) goto out;
    }
    /* 2. the prompts, distilled from the model given: a shared prompt on all
     * domains, then the bank (each domain prompt starts from the shared
     * one) and the single prompt (the shared one trained on for as many
     * steps as the domain prompts took together, so that it got the same
     * training tokens as the whole bank); or the bank copied from
     * bank_dir, with a single prompt trained here when it lacks one */
    const char *const *df = (const char *const *)dom_file;
    if (!j->bank_dir && (rc = tune_stage(&R, &B, "shared", j->model, cmodel, shared, NULL, B.steps, df, n_dom, 0)))
        goto out;
    if (j->bank_dir) {
        if ((rc = check_bank_model(&R, j->bank_dir, cmodel))) goto out;
        R.stage_no++;
        char *p = job_pathf("%s/bank.json", bank);
        if (!p) goto oom;
        int copied = mend_file_exists(p);
        free(p);
        if (announce(&R, "bank", copied ? "prompt bank: copied earlier" : "prompt bank: copying %s", j->bank_dir)) {
            rc = job_cancelled("repair");
            goto out;
        }
        if (!copied && (rc = copy_bank(j->bank_dir, bank))) {
            mend_error_prefix(rc, "%s", j->bank_dir);
            goto out;
        }
    } else {
        mend_bank_job b;
        mend_bank_job_init(&b);
        b.model = cmodel;
        b.names = (const char *const *)dom_name;
        b.corpora = df;
        b.n_domains = n_dom;
        b.out = bank;
        b.teacher = j->model;
        b.init_adapter = shared;
        b.learned = 0;   /* the IDP row is the attention rule; `mend bank router` adds one later */
        b.steps = B.spec_steps;
        b.batch = B.batch;
        b.seqlen = B.tseqlen;
        char what[128];
        snprintf(what, sizeof what, "prompt bank: %d domain prompts x %d steps from the shared prompt", n_dom,
                 B.spec_steps);
        if ((rc = stage(&R, "bank", what, run_bank, &b))) goto out;
    }
    if (need_corpus) {
        if ((rc = tune_stage(&R, &B, "single", j->model, cmodel, single, j->bank_dir ? NULL : shared,
                             j->bank_dir ? B.steps + n_dom * B.spec_steps : n_dom * B.spec_steps, df, n_dom, 1)))
            goto out;
    } else {
        R.stage_no++;
        if (announce(&R, "single", "single prompt: from the bank")) {
            rc = job_cancelled("repair");
            goto out;
        }
    }

    /* 3. evaluation: every task under every run, then perplexity */
    const char *run_model[REPAIR_NRUNS] = {j->model, cmodel, cmodel, cmodel};
    for (int t = 0; t < j->n_tasks; t++) {
        char tn[128];
        mend_file_title(j->tasks[t], tn, sizeof tn);
        for (int r = 0; r < REPAIR_NRUNS; r++) {
            char *res = job_pathf("%s/results/%s/%s.jsonl", R.out, repair_run_name[r], tn);
            if (!res) goto oom;
            mend_eval_job e;
            mend_eval_job_init(&e);
            e.model = run_model[r];
            e.tasks = &j->tasks[t];
            e.n_tasks = 1;
            e.out = res;
            e.resume = 1;
            e.limit = (size_t)B.limit;
            if (r == REPAIR_SINGLE) e.prompt = single;
            if (r == REPAIR_IDP) e.bank = bank, e.select = "attention";
            char name[192], what[256];
            snprintf(name, sizeof name, "eval-%s-%s", repair_run_name[r], tn);
            snprintf(what, sizeof what, "%s: %s", tn, repair_run_title[r]);
            rc = stage(&R, name, what, run_eval, &e);
            free(res);
            if (rc) goto out;
        }
    }
    for (int r = 0; r < REPAIR_NRUNS; r++) {
        char *js = job_pathf("%s/ppl/%s.json", R.out, repair_run_name[r]);
        if (!js) goto oom;
        mend_ppl_job p;
        mend_ppl_job_init(&p);
        p.model = run_model[r];
        p.text = j->ppl_text;
        p.protocol = MEND_PPL_GPTQ;
        p.ctx = B.ppl_ctx;
        p.chunks = B.ppl_windows;
        p.json = js;
        if (r == REPAIR_SINGLE) p.prompt = single;
        if (r == REPAIR_IDP) p.bank = bank, p.select = "attention";
        char name[64], what[128];
        snprintf(name, sizeof name, "ppl-%s", repair_run_name[r]);
        snprintf(what, sizeof what, "WikiText-2 perplexity: %s", repair_run_title[r]);
        rc = stage(&R, name, what, run_ppl, &p);
        free(js);
        if (rc) goto out;
    }

    /* 4. the report, from repair.json (the plan above) and what the stages wrote */
    if ((rc = mend_repair_report(R.out, &md, fn, user))) goto out;
    job_emit(fn, user, MEND_EV_TEXT, "%s", md);
    rc = 0;
    goto out;
oom:
    rc = mend_set_error(MEND_ENOMEM, "repair: out of memory");
out:
    free(md);
    free(cmodel);
    free(bank);
    free(single);
    free(shared);
    free(R.out);
    for (int i = 0; i < n_dom; i++) free(dom_name[i]), free(dom_file[i]);
    return rc;
}
