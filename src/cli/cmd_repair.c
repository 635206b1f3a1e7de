/* mend repair MODEL --compress SPEC -o OUT_DIR: compress, build (or take) a
 * prompt bank, evaluate original / compressed / single prompt / IDP on the
 * tasks and on WikiText-2, and write a report (repair.h has the layout).
 *
 * Every stage is a mend command run in this process (`mend compress`,
 * `mend bank build`, `mend tune`, `mend eval`, `mend ppl`, each a client of
 * the library), so a stage behaves exactly as the command a user would
 * type, its output goes to logs/STAGE.txt, and each is resumable
 * on its own: compress from its per-layer checkpoint, the bank per prompt
 * from the training checkpoints, eval per example (--resume), ppl per run.
 * A stage that finished leaves stages/STAGE.json and is skipped when the
 * same command runs again. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "mend.h"
#include "repair.h"

static const char *CMD = "repair";

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

static void help(void) {
    printf("Usage: mend repair MODEL --compress SPEC -o OUT_DIR [options]\n\n"
           "Compress MODEL, repair it with soft prompts and measure what it cost and\n"
           "what came back: original / compressed / single prompt / IDP (a prompt per\n"
           "input from a bank) on every task and on WikiText-2 perplexity, written to\n"
           "OUT_DIR/report.md with charts. Rerunning the same command resumes: finished\n"
           "stages are reused, an interrupted one continues where it stopped.\n\n"
           "Options:\n"
           "      --compress SPEC      rtn:TYPE, gptq:TYPE (TYPE: q8_0 q5_0 q5_1 q4_0 q4_1 q6_k q5_k\n"
           "                           q4_k q3_k q2_k, or intB[gG][sym] e.g. int3g64), magnitude:S,\n"
           "                           wanda:S, sparsegpt:S (S: 0.5, 50%%, 2:4, 4:8), PRUNE+TYPE\n"
           "                           (prune, then GPTQ keeping the zeros), e.g. sparsegpt:0.5+q4_0\n"
           "  -o, --out DIR            output directory\n"
           "      --budget B           quick, standard (default) or full:\n"
           "                             quick:    calibration 32 x 512, prompts 30 + 5 per domain\n"
           "                                       steps x 4 x 256, first 100 examples per task,\n"
           "                                       24 windows of 512\n"
           "                             standard: calibration 64 x 2048, prompts 200 + 20 per domain\n"
           "                                       steps x 4 x 256, every example, all windows of 2048\n"
           "                             full:     calibration 128 x 2048, prompts 1000 + 100 per\n"
           "                                       domain steps x 4 x 256, every example and window\n"
           "                           Prompts are distilled from MODEL: a shared prompt on all\n"
           "                           domains, then each domain prompt starts from it; the single\n"
           "                           prompt continues it for the domain prompts' steps in all\n"
           "                           (the same training tokens as the whole bank) on windows\n"
           "                           that start at paragraph starts, 4x as many, 1/4 as long\n"
           "      --bank-dir DIR       use this prompt bank (bank.json; DIR/single is the single\n"
           "                           prompt, trained here when missing) instead of training one\n"
           "      --bank LIST          domains of the bank to train: NAME=FILE or NAME (a corpus of\n"
           "                           the data directory), comma separated; default: wiki, news,\n"
           "                           science, fiction, dialog, lore\n"
           "      --tasks LIST         task files (comma separated or repeated); default: every\n"
           "                           *.jsonl of $MEND_DATA/tasks\n"
           "      --ppl-text FILE      perplexity text (default $MEND_DATA/ppl/wiki.test.raw)\n"
           "      --calib FILE         calibration text (repeatable; default: the corpora)\n"
           "      --limit N            examples per task (0: all), overriding the budget\n"
           "      --ppl-windows N      perplexity windows (0: all), overriding the budget\n"
           "      --ppl-ctx N          perplexity window length, overriding the budget\n"
           "      --steps N            steps of the shared prompt, overriding the budget\n"
           "      --spec-steps N       steps of each domain prompt, overriding the budget\n"
           "      --nsamples N         calibration windows, overriding the budget\n"
           "      --seqlen N           calibration window length, overriding the budget\n"
           "      --train-seqlen N     text tokens per prompt-training sequence (default 256)\n"
           "  -t, --threads N          threads (default: all cores)\n"
           "  -h, --help               this help\n\n"
           "Data: $MEND_DATA or ../shared/data (corpus/, tasks/, ppl/).\n");
}

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

int repair_spec_args(const repair_spec *sp, char *bits_buf, char *group_buf, const char **argv, int cap) {
    int n = 0;
#define PUSH(s) do { if (n < cap) argv[n++] = (s); } while (0)
    PUSH("--method");
    PUSH(sp->method);
    if (sp->bits) {
        sprintf(bits_buf, "%d", sp->bits);
        sprintf(group_buf, "%d", sp->group);
        PUSH("--bits");
        PUSH(bits_buf);
        PUSH("--group");
        PUSH(group_buf);
        PUSH(sp->sym ? "--sym" : "--asym");
    } else {
        PUSH("--type");
        PUSH(sp->type);
    }
    if (sp->prune[0]) {
        PUSH("--prune");
        PUSH(sp->prune);
        PUSH("--sparsity");
        PUSH(sp->sparsity);
    }
#undef PUSH
    return n;
}

/* ---- stages: commands run in this process ---- */

typedef struct argvec {
    char *v[96];
    int n;
} argvec;

static void av_push(argvec *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void av_push(argvec *a, const char *fmt, ...) {
    if (a->n >= (int)(sizeof a->v / sizeof *a->v) - 1) return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&a->v[a->n], fmt, ap) < 0) a->v[a->n] = NULL;
    va_end(ap);
    if (a->v[a->n]) a->n++;
    a->v[a->n] = NULL;
}

/* an option and its value: "--flag" VALUE */
static void av_opt(argvec *a, const char *flag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void av_opt(argvec *a, const char *flag, const char *fmt, ...) {
    char *v = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&v, fmt, ap) < 0) v = NULL;
    va_end(ap);
    if (!v) return;
    av_push(a, "%s", flag);
    av_push(a, "%s", v);
    free(v);
}

static void av_free(argvec *a) {
    for (int i = 0; i < a->n; i++) free(a->v[i]);
    a->n = 0;
    a->v[0] = NULL;
}

/* the prompt options of run r for eval and ppl */
static void push_run_prompt(argvec *a, int r, const char *single, const char *bank) {
    if (r == REPAIR_SINGLE) {
        av_opt(a, "--prompt", "%s", single);
    } else if (r == REPAIR_IDP) {
        av_opt(a, "--bank", "%s", bank);
        av_opt(a, "--select", "attention");
    }
}

typedef struct repair {
    char out[PATH_MAX / 2];
    const char *threads;
    int stage_no, n_stages;
    double t_start;
} repair;

/* Run the command in argv (argv[0] "mend", argv[1] the subcommand) in this
 * process, its standard output into log and its progress on our standard
 * error, as `mend ...` typed by a user would run it. Returns its exit code,
 * or -1 when the log cannot be opened. */
static int run_command(char **argv, const char *log) {
    int argc = 0;
    while (argv[argc]) argc++;
    fflush(stdout);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return mend_set_error(MEND_EIO, "cannot write %s: %s", log, strerror(errno)), -1;
    int saved = dup(1);
    if (saved < 0 || dup2(fd, 1) < 0) {
        int e = errno;
        close(fd);
        if (saved >= 0) close(saved);
        return mend_set_error(MEND_EIO, "cannot send a stage's output to %s: %s", log, strerror(e)), -1;
    }
    close(fd);
    int rc = cli_command(argc - 1, argv + 1);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return rc;
}

/* Run one stage unless stages/NAME.json says it finished. The threads
 * option is added to every stage. */
static int stage(repair *R, const char *name, const char *what, argvec *a) {
    char *done = cli_pathf("%s/stages/%s.json", R->out, name),
         *started = cli_pathf("%s/stages/%s.started", R->out, name), *log = cli_pathf("%s/logs/%s.txt", R->out, name);
    int rc = 0;
    R->stage_no++;
    if (!done || !started || !log) {
        rc = mend_set_error(MEND_ENOMEM, "out of memory");
        goto out;
    }
    if (mend_file_exists(done)) {
        fprintf(stderr, "[repair %d/%d] %s: done earlier\n", R->stage_no, R->n_stages, what);
        goto out;
    }
    int resumed = mend_file_exists(started);
    if (!resumed && mend_write_file_atomic(started, "", 0)) {
        rc = -1;
        goto out;
    }
    char el[32];
    fprintf(stderr, "[repair %d/%d] %s%s (elapsed %s)\n", R->stage_no, R->n_stages, what,
            resumed ? ", resuming" : "", cli_fmt_duration(mend_now() - R->t_start, el, sizeof el));
    if (R->threads) {   /* GNU getopt takes options after the operands too */
        av_opt(a, "-t", "%s", R->threads);
    }
    double t0 = mend_now();
    int st = run_command(a->v, log);
    double secs = mend_now() - t0;
    if (st < 0) {
        rc = -1;
        goto out;
    }
    if (st != 0) {
        rc = mend_set_error(MEND_EIO, "stage '%s' failed (exit code %d); its output is in %s; run the same "
                            "command again to resume", name, st, log);
        goto out;
    }
    json_t *j = json_pack("{s:s, s:f, s:b}", "stage", name, "seconds", secs, "resumed", resumed);
    char *s = j ? json_dumps(j, JSON_REAL_PRECISION(8)) : NULL;
    json_decref(j);
    rc = s ? mend_write_file_atomic(done, s, strlen(s)) : mend_set_error(MEND_ENOMEM, "out of memory");
    free(s);
out:
    av_free(a);
    free(done);
    free(started);
    free(log);
    return rc;
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
        char *d = cli_pathf("%s/%s", dst, ad);
        rc = d ? mend_mkdir_p(d) : mend_set_error(MEND_ENOMEM, "out of memory");
        for (size_t k = 0; k < sizeof KEEP / sizeof *KEEP && rc == 0; k++) {
            char *from = cli_pathf("%s/%s/%s", src, ad, KEEP[k]), *to = cli_pathf("%s/%s", d, KEEP[k]);
            if (!from || !to) rc = mend_set_error(MEND_ENOMEM, "out of memory");
            else if (mend_file_exists(from)) rc = copy_file(from, to);
            free(from);
            free(to);
        }
        free(d);
    }
    mend_bank_free(bk);
    if (rc) return rc;
    char *from = cli_pathf("%s/%s", src, MEND_BANK_FILE), *to = cli_pathf("%s/%s", dst, MEND_BANK_FILE);
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
 * for. 0, or an exit code after the message. */
static int check_bank_model(const char *bank_dir, const char *cmodel) {
    mend_load_opts lo = {.keep_packed = 1, .no_repack = 1};
    mend_model *m = NULL;
    mend_bank *bk = NULL;
    mend_fp fp, single = {0};
    float *emb = NULL;
    int nv = 0;
    if (mend_model_load(&m, cmodel, &lo) || mend_model_fingerprint(m, &fp)) {
        mend_model_free(m);
        return cli_fail(CMD, cmodel);
    }
    mend_model_info info;
    mend_model_get_info(m, &info);
    mend_model_free(m);
    if (mend_bank_read(bank_dir, &bk)) return cli_fail(CMD, bank_dir);
    char *sdir = cli_pathf("%s/single", bank_dir);
    int has_single = sdir && mend_is_dir(sdir);
    if (has_single && mend_adapter_read_fp(sdir, info.dim, &emb, &nv, &single)) {
        free(sdir);
        mend_bank_free(bk);
        return cli_fail(CMD, "the bank's single prompt");
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
    char a[64], b[64], c[8192], nd[4096];
    mend_fp_describe(r, a, sizeof a);
    mend_fp_describe(&fp, b, sizeof b);
    int rc = 0;
    if (match == MEND_FP_SAME_RECIPE) {
        fprintf(stderr, "mend %s: warning: the prompt bank %s was trained on model fingerprint %s, this run's %s is "
                "%s: not the same bytes, but the same recipe (same source model and compression settings; float "
                "rounding on another CPU moves a few weights), so the bank is used\n", CMD, what, a, cmodel, b);
    } else if (match != MEND_FP_SAME) {
        fprintf(stderr, "mend %s: the prompt bank %s %s%s, but this run compressed %s to model fingerprint %s: the "
                "bank was trained for %s, and its prompts would be measured on weights they were not trained for.\n"
                "Retrain it for this model: `%s` then `mend tune %s --corpus FILE ... -o %s/single` "
                "(scripts/train_bank.sh makes the shipped bank that way), and pass --bank-dir %s; or run without "
                "--bank-dir to train the bank in this run.\n", CMD, what,
                match == MEND_FP_UNKNOWN ? "records no model fingerprint" : "was trained on model fingerprint ",
                match == MEND_FP_UNKNOWN ? " (built before mend recorded them)" : a, cmodel, b,
                match == MEND_FP_UNKNOWN ? "an unknown model" : "another model",
                mend_retrain_cmd(1, cmodel, bank_dir, &fp, c, sizeof c), cmodel,
                mend_retrain_dir(bank_dir, &fp, nd, sizeof nd), nd);
        rc = CLI_EXIT_ERROR;
    }
    free(sdir);
    return rc;
}

/* ---- the plan ---- */

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
    int rc = 0;
    json_object_foreach(plan, key, v) {
        json_t *o = json_object_get(old, key);
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
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int split_list(char *s, char **items, int *n, int cap, const char *what) {
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        if (!*tok) continue;
        if (*n >= cap) return cli_usage_error(CMD, "at most %d %s", cap, what);
        items[(*n)++] = tok;
    }
    return 0;
}

/* A `mend tune` stage: a prompt distilled from teacher on every domain's
 * corpus, from the prompt in init (NULL: sampled vocabulary). paragraph:
 * windows that start at paragraph starts, 4x as many of a quarter the
 * length per step (the same tokens), as a task query starts a text
 * (docs/results.md, "Paragraph windows"). */
static int tune_stage(repair *R, argvec *a, const budget *B, const char *name, const char *teacher,
                      const char *cmodel, const char *out, const char *init, int steps, char *const *dom_file,
                      int n_dom, int paragraph) {
    av_push(a, "mend");
    av_push(a, "tune");
    av_push(a, "%s", cmodel);
    for (int i = 0; i < n_dom; i++) av_opt(a, "--corpus", "%s", dom_file[i]);
    av_opt(a, "-o", "%s", out);
    av_opt(a, "--distill", "%s", teacher);
    if (init) {   /* another seed: the shared prompt's run drew its sequences in seed 1234's order */
        av_opt(a, "--init-adapter", "%s", init);
        av_opt(a, "--seed", "1235");
    } else {
        av_opt(a, "--tokens", "20");
    }
    av_opt(a, "--steps", "%d", steps);
    if (paragraph) {
        av_opt(a, "--windows", "paragraph");
        av_opt(a, "--batch", "%d", 4 * B->batch);
        av_opt(a, "--seqlen", "%d", B->tseqlen / 4 > 2 ? B->tseqlen / 4 : 2);
    } else {
        av_opt(a, "--batch", "%d", B->batch);
        av_opt(a, "--seqlen", "%d", B->tseqlen);
    }
    av_opt(a, "--lr", "3e-3");
    av_opt(a, "--val-seqs", paragraph ? "64" : "16");
    av_push(a, "--resume");
    char what[192];
    snprintf(what, sizeof what, "%s prompt on all %d domains x %d steps%s", name, n_dom, steps,
             init ? " from the shared prompt" : "");
    return stage(R, name, what, a);
}

int cmd_repair(int argc, char **argv) {
    enum { O_COMPRESS = 256, O_BUDGET, O_BANKDIR, O_BANK, O_TASKS, O_PPLTEXT, O_CALIB, O_LIMIT, O_PPLWIN, O_PPLCTX,
           O_STEPS, O_NSAMPLES, O_SEQLEN, O_TSEQLEN, O_SPECSTEPS };
    static const struct option longopts[] = {
        {"compress", required_argument, 0, O_COMPRESS}, {"budget", required_argument, 0, O_BUDGET},
        {"bank-dir", required_argument, 0, O_BANKDIR},  {"bank", required_argument, 0, O_BANK},
        {"tasks", required_argument, 0, O_TASKS},       {"task", required_argument, 0, O_TASKS},
        {"ppl-text", required_argument, 0, O_PPLTEXT},  {"calib", required_argument, 0, O_CALIB},
        {"limit", required_argument, 0, O_LIMIT},       {"ppl-windows", required_argument, 0, O_PPLWIN},
        {"ppl-ctx", required_argument, 0, O_PPLCTX},    {"steps", required_argument, 0, O_STEPS},
        {"nsamples", required_argument, 0, O_NSAMPLES}, {"seqlen", required_argument, 0, O_SEQLEN},
        {"train-seqlen", required_argument, 0, O_TSEQLEN}, {"spec-steps", required_argument, 0, O_SPECSTEPS},
        {"out", required_argument, 0, 'o'},             {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},                  {0, 0, 0, 0}};
    const char *spec_s = NULL, *out_dir = NULL, *bank_dir = NULL, *ppl_text = NULL, *threads = NULL;
    const char *calib[MAX_CALIB];
    int n_calib = 0;
    char *task_arg[MAX_TASKS], *dom_arg[MAX_DOMAINS];
    int n_task_arg = 0, n_dom_arg = 0;
    char *lists[MAX_TASKS + 4];   /* strdup'd option values split in place */
    int n_lists = 0;
    budget B = BUDGETS[1];
    long ov[8] = {-1, -1, -1, -1, -1, -1, -1, -1};   /* limit, windows, ctx, steps, nsamples, seqlen, train
                                                        seqlen, spec steps */
    char *tasks[MAX_TASKS], *dom_name[MAX_DOMAINS], *dom_file[MAX_DOMAINS];
    int n_tasks = 0, n_dom = 0;
    char *cmodel = NULL, *bank = NULL, *single = NULL, *shared = NULL;
    argvec a = {.n = 0};
    char corpus_dir[PATH_MAX / 2] = "";
    int rc = CLI_EXIT_USAGE;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case O_COMPRESS: spec_s = optarg; break;
        case O_BUDGET: {
            size_t i = 0;
            for (; i < sizeof BUDGETS / sizeof *BUDGETS; i++)
                if (!strcmp(optarg, BUDGETS[i].name)) break;
            if (i == sizeof BUDGETS / sizeof *BUDGETS) {
                rc = cli_usage_error(CMD, "--budget expects quick, standard or full, got '%s'", optarg);
                goto out;
            }
            B = BUDGETS[i];
            break;
        }
        case O_BANKDIR: bank_dir = optarg; break;
        case O_BANK:
        case O_TASKS: {
            if (n_lists >= (int)(sizeof lists / sizeof *lists)) {
                rc = cli_usage_error(CMD, "too many --tasks/--bank options");
                goto out;
            }
            char *s = lists[n_lists++] = strdup(optarg);
            if (!s) goto oom;
            int r = c == O_BANK ? split_list(s, dom_arg, &n_dom_arg, MAX_DOMAINS, "bank domains")
                                : split_list(s, task_arg, &n_task_arg, MAX_TASKS, "tasks");
            if (r) {
                rc = r;
                goto out;
            }
            break;
        }
        case O_PPLTEXT: ppl_text = optarg; break;
        case O_CALIB:
            if (n_calib >= MAX_CALIB) {
                rc = cli_usage_error(CMD, "at most %d --calib files", MAX_CALIB);
                goto out;
            }
            calib[n_calib++] = optarg;
            break;
        case O_LIMIT: case O_PPLWIN: case O_PPLCTX: case O_STEPS: case O_NSAMPLES: case O_SEQLEN: case O_TSEQLEN:
        case O_SPECSTEPS: {
            static const char *const nm[] = {"--limit", "--ppl-windows", "--ppl-ctx", "--steps", "--nsamples",
                                             "--seqlen", "--train-seqlen", "--spec-steps"};
            static const long lo[] = {0, 0, 16, 1, 1, 16, 8, 1};
            int k = c - O_LIMIT;
            if (cli_parse_int(optarg, lo[k], 1L << 30, &ov[k])) {
                rc = cli_usage_error(CMD, "%s expects a whole number >= %ld, got '%s'", nm[k], lo[k], optarg);
                goto out;
            }
            break;
        }
        case 'o': out_dir = optarg; break;
        case 't':
            if (cli_set_threads(CMD, optarg)) goto out;
            threads = optarg;
            break;
        case 'h': help(); rc = 0; goto out;
        default: rc = cli_getopt_error(CMD, argv, c); goto out;
        }
    }
    if (optind >= argc) {
        rc = cli_usage_error(CMD, "missing MODEL");
        goto out;
    }
    if (optind + 1 < argc) {
        rc = cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
        goto out;
    }
    if (!spec_s) {
        rc = cli_usage_error(CMD, "missing --compress SPEC (e.g. gptq:int3g64, gptq:q3_k, sparsegpt:0.5)");
        goto out;
    }
    if (!out_dir) {
        rc = cli_usage_error(CMD, "missing -o OUT_DIR");
        goto out;
    }
    if (bank_dir && n_dom_arg) {
        rc = cli_usage_error(CMD, "give --bank-dir or --bank, not both");
        goto out;
    }
    repair_spec sp;
    if (repair_spec_parse(spec_s, &sp)) {
        rc = cli_usage_error(CMD, "%s", mend_last_error());
        goto out;
    }
    if (ov[0] >= 0) B.limit = (int)ov[0];
    if (ov[1] >= 0) B.ppl_windows = (int)ov[1];
    if (ov[2] >= 0) B.ppl_ctx = (int)ov[2];
    if (ov[3] >= 0) B.steps = (int)ov[3];
    if (ov[4] >= 0) B.nsamples = (int)ov[4];
    if (ov[5] >= 0) B.seqlen = (int)ov[5];
    if (ov[6] >= 0) B.tseqlen = (int)ov[6];
    if (ov[7] >= 0) B.spec_steps = (int)ov[7];
    const char *model = argv[optind];
    rc = CLI_EXIT_ERROR;

    /* data: tasks, perplexity text, bank corpora */
    char dir[PATH_MAX / 2];
    for (int i = 0; i < n_task_arg; i++) tasks[n_tasks++] = strdup(task_arg[i]);
    if (n_tasks == 0) {
        if (cli_find_data("tasks", dir, sizeof dir)) {
            fprintf(stderr, "mend %s: no --tasks given and no tasks directory found: set MEND_DATA to the data "
                            "directory\n", CMD);
            goto out;
        }
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d)) && n_tasks < MAX_TASKS) {
            size_t n = strlen(e->d_name);
            if (n > 6 && !strcmp(e->d_name + n - 6, ".jsonl"))
                if (asprintf(&tasks[n_tasks], "%s/%s", dir, e->d_name) >= 0) n_tasks++;
        }
        if (d) closedir(d);
        qsort(tasks, (size_t)n_tasks, sizeof *tasks, cmp_str);
        if (n_tasks == 0) {
            fprintf(stderr, "mend %s: %s holds no *.jsonl task files\n", CMD, dir);
            goto out;
        }
    }
    for (int i = 0; i < n_tasks; i++)
        if (!tasks[i] || !mend_file_exists(tasks[i])) {
            fprintf(stderr, "mend %s: task file '%s' does not exist\n", CMD, tasks[i] ? tasks[i] : "?");
            goto out;
        }
    char ppl_buf[PATH_MAX];
    if (!ppl_text) {
        if (cli_find_data("ppl", dir, sizeof dir)) {
            fprintf(stderr, "mend %s: no --ppl-text given and no ppl directory found: set MEND_DATA\n", CMD);
            goto out;
        }
        snprintf(ppl_buf, sizeof ppl_buf, "%s/wiki.test.raw", dir);
        ppl_text = ppl_buf;
    }
    if (!mend_file_exists(ppl_text)) {
        fprintf(stderr, "mend %s: perplexity text '%s' does not exist\n", CMD, ppl_text);
        goto out;
    }
    int need_corpus = !bank_dir;
    if (bank_dir) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/single/adapter_model.safetensors", bank_dir);
        need_corpus = !mend_file_exists(p);
    }
    if (need_corpus) {
        const char *const *src = (const char *const *)dom_arg;
        int n_src = n_dom_arg;
        if (n_src == 0) src = DEFAULT_DOMAINS, n_src = 6;
        for (int i = 0; i < n_src; i++) {
            const char *eq = strchr(src[i], '=');
            if (eq) {
                dom_name[n_dom] = strndup(src[i], (size_t)(eq - src[i]));
                dom_file[n_dom] = strdup(eq + 1);
            } else {
                if (!corpus_dir[0] && cli_find_data("corpus", corpus_dir, sizeof corpus_dir)) {
                    fprintf(stderr, "mend %s: no corpus directory found for domain '%s': set MEND_DATA or give "
                                    "NAME=FILE\n", CMD, src[i]);
                    goto out;
                }
                dom_name[n_dom] = strdup(src[i]);
                if (asprintf(&dom_file[n_dom], "%s/%s.txt", corpus_dir, src[i]) < 0) dom_file[n_dom] = NULL;
            }
            n_dom++;
            if (!dom_name[n_dom - 1] || !dom_file[n_dom - 1]) goto oom;
            if (!mend_file_exists(dom_file[n_dom - 1])) {
                fprintf(stderr, "mend %s: corpus '%s' of domain '%s' does not exist\n", CMD, dom_file[n_dom - 1],
                        dom_name[n_dom - 1]);
                goto out;
            }
        }
    }

    repair R = {.threads = threads, .t_start = mend_now()};
    snprintf(R.out, sizeof R.out, "%s", out_dir);
    if (mend_mkdir_p(out_dir)) {
        rc = cli_fail(CMD, out_dir);
        goto out;
    }
    /* the plan: a rerun must be the same run */
    char settings[4096];
    {
        char lim[32], win[32], pr[PATH_MAX / 2 + 64];
        snprintf(lim, sizeof lim, "the first %d", B.limit);
        snprintf(win, sizeof win, "the first %d", B.ppl_windows);
        if (bank_dir && !need_corpus) snprintf(pr, sizeof pr, "the bank %s (its bank.json says how it was trained)",
                                               bank_dir);
        else if (bank_dir)
            snprintf(pr, sizeof pr, "the domain prompts of the bank %s; the single prompt distilled, 20 virtual "
                     "tokens, %d steps x %d paragraph windows x %d tokens, lr 3e-3", bank_dir,
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
    if (!plan || !jt || !jd || !jc) goto oom;
    for (int i = 0; i < n_tasks; i++) json_array_append_new(jt, json_string(tasks[i]));
    for (int i = 0; i < n_dom; i++) json_array_append_new(jd, json_pack("[s, s]", dom_name[i], dom_file[i]));
    for (int i = 0; i < n_calib; i++) json_array_append_new(jc, json_string(calib[i]));
    json_object_set_new(plan, "model", json_string(model));
    json_object_set_new(plan, "compress", json_string(spec_s));
    json_object_set_new(plan, "budget", json_string(B.name));
    json_object_set_new(plan, "settings", json_string(settings));
    json_object_set_new(plan, "tasks", jt);
    json_object_set_new(plan, "bank_dir", bank_dir ? json_string(bank_dir) : json_null());
    json_object_set_new(plan, "domains", jd);
    json_object_set_new(plan, "calib", jc);
    json_object_set_new(plan, "ppl_text", json_string(ppl_text));
    char *plan_path = cli_pathf("%s/repair.json", R.out);
    int prc = plan_path ? check_plan(plan_path, plan) : -1;
    json_decref(plan);
    free(plan_path);
    if (prc) {
        rc = cli_fail(CMD, out_dir);
        goto out;
    }
    char sub[PATH_MAX];
    static const char *const SUBDIRS[] = {"stages", "logs", "ppl", "results/original", "results/compressed",
                                          "results/single", "results/idp"};
    for (size_t i = 0; i < sizeof SUBDIRS / sizeof *SUBDIRS; i++) {
        snprintf(sub, sizeof sub, "%s/%s", out_dir, SUBDIRS[i]);
        if (mend_mkdir_p(sub)) {
            rc = cli_fail(CMD, sub);
            goto out;
        }
    }

    int n_ppl = 4, n_eval = 4 * n_tasks;
    R.n_stages = 1 + (bank_dir ? 2 : 3) + n_eval + n_ppl;
    cmodel = cli_pathf("%s/model.gguf", R.out);
    bank = cli_pathf("%s/bank", R.out);
    single = cli_pathf("%s/bank/single", R.out);
    shared = cli_pathf("%s/bank/shared", R.out);
    if (!cmodel || !bank || !single || !shared) goto oom;

    /* 1. compress */
    {
        const char *sa[16];
        char bb[8], gb[8];
        int ns = repair_spec_args(&sp, bb, gb, sa, 16);
        av_push(&a, "mend");
        av_push(&a, "compress");
        av_push(&a, "%s", model);
        av_opt(&a, "-o", "%s", cmodel);
        for (int i = 0; i < ns; i++) av_push(&a, "%s", sa[i]);
        av_opt(&a, "--nsamples", "%d", B.nsamples);
        av_opt(&a, "--seqlen", "%d", B.seqlen);
        for (int i = 0; i < n_calib; i++) {
            av_opt(&a, "--calib", "%s", calib[i]);
        }
        char what[256];
        snprintf(what, sizeof what, "compress %s -> %s", spec_s, cmodel);
        if (stage(&R, "compress", what, &a)) goto stage_failed;
    }
    /* 2. the prompts, distilled from the model given: a shared prompt on all
     * domains, then the bank (each domain prompt starts from the shared
     * one) and the single prompt (the shared one trained on for as many
     * steps as the domain prompts took together, so that it got the same
     * training tokens as the whole bank); or the bank copied from
     * --bank-dir, with a single prompt trained here when it lacks one */
    if (!bank_dir && tune_stage(&R, &a, &B, "shared", model, cmodel, shared, NULL, B.steps, dom_file, n_dom, 0))
        goto stage_failed;
    if (bank_dir) {
        if ((rc = check_bank_model(bank_dir, cmodel))) goto out;
        rc = CLI_EXIT_ERROR;
        R.stage_no++;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/bank.json", bank);
        if (mend_file_exists(p)) {
            fprintf(stderr, "[repair %d/%d] prompt bank: copied earlier\n", R.stage_no, R.n_stages);
        } else {
            fprintf(stderr, "[repair %d/%d] prompt bank: copying %s\n", R.stage_no, R.n_stages, bank_dir);
            if (copy_bank(bank_dir, bank)) {
                rc = cli_fail(CMD, bank_dir);
                goto out;
            }
        }
    } else {
        av_push(&a, "mend");
        av_push(&a, "bank");
        av_push(&a, "build");
        av_push(&a, "%s", cmodel);
        av_opt(&a, "-o", "%s", bank);
        av_opt(&a, "--distill", "%s", model);
        av_opt(&a, "--init-adapter", "%s", shared);
        av_push(&a, "--no-learned");   /* the IDP row is the attention rule; `mend bank router` adds one later */
        av_opt(&a, "--steps", "%d", B.spec_steps);
        av_opt(&a, "--batch", "%d", B.batch);
        av_opt(&a, "--seqlen", "%d", B.tseqlen);
        for (int i = 0; i < n_dom; i++) {
            av_opt(&a, "--domain", "%s=%s", dom_name[i], dom_file[i]);
        }
        char what[128];
        snprintf(what, sizeof what, "prompt bank: %d domain prompts x %d steps from the shared prompt", n_dom,
                 B.spec_steps);
        if (stage(&R, "bank", what, &a)) goto stage_failed;
    }
    if (need_corpus) {
        if (tune_stage(&R, &a, &B, "single", model, cmodel, single, bank_dir ? NULL : shared,
                       bank_dir ? B.steps + n_dom * B.spec_steps : n_dom * B.spec_steps, dom_file, n_dom, 1))
            goto stage_failed;
    } else {
        R.stage_no++;
        fprintf(stderr, "[repair %d/%d] single prompt: from the bank\n", R.stage_no, R.n_stages);
    }

    /* 3. evaluation: every task under every run, then perplexity */
    const char *run_model[REPAIR_NRUNS] = {model, cmodel, cmodel, cmodel};
    for (int t = 0; t < n_tasks; t++) {
        char tn[128];
        cli_file_title(tasks[t], tn, sizeof tn);
        for (int r = 0; r < REPAIR_NRUNS; r++) {
            av_push(&a, "mend");
            av_push(&a, "eval");
            av_push(&a, "%s", run_model[r]);
            av_opt(&a, "--task", "%s", tasks[t]);
            if (B.limit) {
                av_opt(&a, "--limit", "%d", B.limit);
            }
            av_opt(&a, "--out", "%s/results/%s/%s.jsonl", R.out, repair_run_name[r], tn);
            av_push(&a, "--resume");
            push_run_prompt(&a, r, single, bank);
            char name[192], what[256];
            snprintf(name, sizeof name, "eval-%s-%s", repair_run_name[r], tn);
            snprintf(what, sizeof what, "%s: %s", tn, repair_run_title[r]);
            if (stage(&R, name, what, &a)) goto stage_failed;
        }
    }
    for (int r = 0; r < REPAIR_NRUNS; r++) {
        av_push(&a, "mend");
        av_push(&a, "ppl");
        av_push(&a, "%s", run_model[r]);
        av_opt(&a, "--text", "%s", ppl_text);
        av_opt(&a, "--protocol", "gptq");
        av_opt(&a, "--ctx", "%d", B.ppl_ctx);
        if (B.ppl_windows) {
            av_opt(&a, "--chunks", "%d", B.ppl_windows);
        }
        av_opt(&a, "--json", "%s/ppl/%s.json", R.out, repair_run_name[r]);
        push_run_prompt(&a, r, single, bank);
        char name[64], what[128];
        snprintf(name, sizeof name, "ppl-%s", repair_run_name[r]);
        snprintf(what, sizeof what, "WikiText-2 perplexity: %s", repair_run_title[r]);
        if (stage(&R, name, what, &a)) goto stage_failed;
    }

    /* 4. the report, from repair.json (the plan above) and what the stages wrote */
    {
        char *md = NULL;
        if (repair_report_dir(R.out, &md)) {
            rc = cli_fail(CMD, "report");
            goto out;
        }
        fputs(md, stdout);
        free(md);
        char el[32];
        fprintf(stderr, "[repair] done in %s: %s/report.md\n", cli_fmt_duration(mend_now() - R.t_start, el, sizeof el),
                R.out);
    }
    rc = 0;
    goto out;
stage_failed:
    rc = cli_fail(CMD, "stage");
    goto out;
oom:
    fprintf(stderr, "mend %s: out of memory\n", CMD);
    rc = CLI_EXIT_ERROR;
out:
    av_free(&a);
    free(cmodel);
    free(bank);
    free(single);
    free(shared);
    for (int i = 0; i < n_dom; i++) free(dom_name[i]), free(dom_file[i]);
    for (int i = 0; i < n_tasks; i++) free(tasks[i]);
    for (int i = 0; i < n_lists; i++) free(lists[i]);
    return rc;
}
