/* mend repair MODEL --compress SPEC -o OUT_DIR: the options become a
 * mend_repair_job (mend/jobs.h) with the data directory's files filled in,
 * and the library runs it: compress, build (or take) a prompt bank,
 * evaluate original / compressed / single prompt / IDP on the tasks and on
 * WikiText-2, and write a report. Rerunning the same command resumes. */
#define _GNU_SOURCE
#include <dirent.h>
#include <limits.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mend.h"

static const char *CMD = "repair";

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
           "                           *.jsonl of $MEND_DATA/tasks; a rerun may add or drop tasks\n"
           "                           (finished stages are reused, the report covers the list)\n"
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

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int split_list(char *s, char **items, int *n, int cap, const char *what) {
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        if (!*tok) continue;
        if (*n >= cap) return cli_usage_error(CMD, "at most %d %s", cap, what);
        items[(*n)++] = tok;
    }
    return 0;
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
    const char *spec_s = NULL, *out_dir = NULL, *bank_dir = NULL, *ppl_text = NULL;
    const char *calib[MAX_CALIB];
    int n_calib = 0;
    char *task_arg[MAX_TASKS], *dom_arg[MAX_DOMAINS];
    int n_task_arg = 0, n_dom_arg = 0;
    char *lists[MAX_TASKS + 4];   /* strdup'd option values split in place */
    int n_lists = 0;
    const char *budget = NULL;
    long ov[8] = {-1, -1, -1, -1, -1, -1, -1, -1};   /* limit, windows, ctx, steps, nsamples, seqlen, train
                                                        seqlen, spec steps */
    char *tasks[MAX_TASKS];
    int n_tasks = 0;
    char corpus_dir[PATH_MAX / 2] = "";
    int rc = CLI_EXIT_USAGE;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case O_COMPRESS: spec_s = optarg; break;
        case O_BUDGET:
            if (strcmp(optarg, "quick") && strcmp(optarg, "standard") && strcmp(optarg, "full")) {
                rc = cli_usage_error(CMD, "--budget expects quick, standard or full, got '%s'", optarg);
                goto out;
            }
            budget = optarg;
            break;
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
    if (mend_repair_spec_check(spec_s)) {
        rc = cli_usage_error(CMD, "%s", mend_last_error());
        goto out;
    }
    rc = CLI_EXIT_ERROR;

    /* data: tasks, perplexity text, the corpus directory */
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
    char ppl_buf[PATH_MAX];
    if (!ppl_text) {
        if (cli_find_data("ppl", dir, sizeof dir)) {
            fprintf(stderr, "mend %s: no --ppl-text given and no ppl directory found: set MEND_DATA\n", CMD);
            goto out;
        }
        snprintf(ppl_buf, sizeof ppl_buf, "%s/wiki.test.raw", dir);
        ppl_text = ppl_buf;
    }
    int have_corpus = cli_find_data("corpus", corpus_dir, sizeof corpus_dir) == 0;

    mend_repair_job j;
    mend_repair_job_init(&j);
    j.model = argv[optind];
    j.compress = spec_s;
    j.out = out_dir;
    j.budget = budget;
    j.tasks = (const char *const *)tasks;
    j.n_tasks = n_tasks;
    j.ppl_text = ppl_text;
    j.domains = (const char *const *)dom_arg;
    j.n_domains = n_dom_arg;
    j.calib = calib;
    j.n_calib = n_calib;
    j.corpus_dir = have_corpus ? corpus_dir : NULL;
    j.bank_dir = bank_dir;
    j.limit = (int)ov[0];
    j.ppl_windows = (int)ov[1];
    j.ppl_ctx = (int)ov[2];
    j.steps = (int)ov[3];
    j.nsamples = (int)ov[4];
    j.seqlen = (int)ov[5];
    j.train_seqlen = (int)ov[6];
    j.spec_steps = (int)ov[7];
    cli_events ev = {.cmd = CMD};
    const double t0 = mend_now();
    if (mend_repair_run(&j, cli_event, &ev)) {
        rc = cli_fail(CMD, out_dir);
        goto out;
    }
    char el[32];
    fprintf(stderr, "[repair] done in %s: %s/report.md\n", mend_fmt_duration(mend_now() - t0, el, sizeof el), out_dir);
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "mend %s: out of memory\n", CMD);
    rc = CLI_EXIT_ERROR;
out:
    for (int i = 0; i < n_tasks; i++) free(tasks[i]);
    for (int i = 0; i < n_lists; i++) free(lists[i]);
    return rc;
}
