/* mend eval MODEL --task FILE.jsonl [--task ...] --out RESULTS.jsonl [--resume]:
 * zero-shot tasks scored with lm-evaluation-harness rules (docs/eval.md).
 * One JSON line per example is appended and flushed as soon as it is scored;
 * --resume skips every example already in the file, so a killed run loses
 * nothing. The summary table is derived from the file at the end. */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli.h"
#include "mend.h"

static const char *CMD = "eval";

#define MAX_TASKS 64

static void help(void) {
    printf("Usage: mend eval [options] MODEL --task FILE.jsonl [--task ...] --out RESULTS.jsonl\n\n"
           "Zero-shot task accuracy with lm-evaluation-harness rules. Task files are JSONL in\n"
           "the four shapes of the llm-foundry ICL schema: multiple choice (query, choices,\n"
           "gold), schema (context_options, continuation, gold), language modelling (context,\n"
           "continuation), generation QA (context, answer, aliases).\n\n"
           "Options:\n"
           "      --task FILE          a task file (repeat for several)\n"
           "      --out FILE           results, one JSON line per example (appended, flushed)\n"
           "      --resume             continue a results file: skip examples already in it\n"
           "                           (a partial last line from a killed run is dropped)\n"
           "      --limit N            only the first N examples of each task\n"
           "      --prompt DIR         soft prompt (PEFT prompt-tuning adapter directory) in\n"
           "                           front of every example\n"
           "      --bank DIR --select S  prompt bank with a prompt chosen per example (docs/idp.md):\n"
           "                           S = attention, router, loss, learned, oracle (uses the label:\n"
           "                           analysis only), fixed:NAME or none; a comma list\n"
           "                           records the picks of the others too\n"
           "      --select-layers A:B  layers probed by the attention selector (default: bank.json)\n"
           "      --per-prompt         also score every example with no prompt and with each\n"
           "                           prompt of the bank (recorded per line, for analysis)\n"
           "      --ctx N              window in tokens (default: the model's context length);\n"
           "                           longer inputs are truncated from the left, as lm-eval does\n"
           "      --batch N            positions per forward call (default 256)\n"
           "      --packed             run the quantized weights with mend's packed kernels\n"
           "                           (8-bit activations, as llama.cpp): faster, but scores\n"
           "                           move by ~1e-2 nats per example; default: weights\n"
           "                           dequantized to f32 at load, as lm-eval's HF backend\n"
           "                           runs them (per-example parity ~1e-4)\n"
           "  -t, --threads N          threads (default: all cores)\n"
           "  -h, --help               this help\n");
}

static int str_eq_null(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* Where mend_eval_run's lines go: appended to the results file, one flushed
 * line each, with the progress bar and the truncation warnings. */
typedef struct writer {
    FILE *out;
    const char *out_path;
    cli_progress *bar;
    const mend_task *task;
    const char *path;
    int window, warned, write_failed;
    int64_t n_done;
} writer;

static int write_line(void *user, const mend_eval_line *l) {
    writer *w = user;
    if (l->truncated && w->warned < 10)
        fprintf(stderr, "\nwarning: %s:%d: input longer than the window of %d tokens, truncated from the left as "
                        "lm-eval does%s\n", w->path, mend_task_example_line(w->task, l->index), w->window,
                ++w->warned == 10 ? " (further warnings suppressed; see the summary)" : "");
    if (fputs(l->line, w->out) < 0 || fputc('\n', w->out) == EOF || fflush(w->out) != 0) {
        w->write_failed = 1;
        fprintf(stderr, "mend eval: cannot write to %s\n", w->out_path);
        return MEND_EIO;
    }
    cli_progress_update(w->bar, ++w->n_done, NULL);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    enum { O_TASK = 256, O_OUT, O_RESUME, O_LIMIT, O_PROMPT, O_BANK, O_SELECT, O_CTX, O_BATCH,
           O_F32, O_PACKED, O_SEL_LAYERS, O_PER_PROMPT };
    static const struct option longopts[] = {
        {"task", required_argument, 0, O_TASK},     {"out", required_argument, 0, O_OUT},
        {"resume", no_argument, 0, O_RESUME},       {"limit", required_argument, 0, O_LIMIT},
        {"prompt", required_argument, 0, O_PROMPT}, {"bank", required_argument, 0, O_BANK},
        {"select", required_argument, 0, O_SELECT}, {"ctx", required_argument, 0, O_CTX},
        {"batch", required_argument, 0, O_BATCH},   {"f32", no_argument, 0, O_F32},
        {"packed", no_argument, 0, O_PACKED},
        {"select-layers", required_argument, 0, O_SEL_LAYERS}, {"per-prompt", no_argument, 0, O_PER_PROMPT},
        {"threads", required_argument, 0, 't'},     {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *task_paths[MAX_TASKS];
    int n_tasks = 0, resume = 0, packed = 0;
    const char *out_path = NULL, *prompt_dir = NULL, *bank_dir = NULL, *select = NULL, *sel_layers = NULL;
    int per_prompt = 0;
    long limit = 0, ctx = 0, batch = 0;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":t:h", longopts, NULL)) != -1) {
        switch (c) {
        case O_TASK:
            if (n_tasks >= MAX_TASKS) return cli_usage_error(CMD, "at most %d --task files", MAX_TASKS);
            task_paths[n_tasks++] = optarg;
            break;
        case O_OUT: out_path = optarg; break;
        case O_RESUME: resume = 1; break;
        case O_LIMIT:
            if (cli_parse_int(optarg, 1, 1L << 30, &limit))
                return cli_usage_error(CMD, "--limit expects a whole number >= 1, got '%s'", optarg);
            break;
        case O_PROMPT: prompt_dir = optarg; break;
        case O_BANK: bank_dir = optarg; break;
        case O_SELECT: select = optarg; break;
        case O_CTX:
            if (cli_parse_int(optarg, 40, 1L << 20, &ctx))
                return cli_usage_error(CMD, "--ctx expects a whole number >= 40, got '%s'", optarg);
            break;
        case O_BATCH:
            if (cli_parse_int(optarg, 1, 1L << 16, &batch))
                return cli_usage_error(CMD, "--batch expects a whole number >= 1, got '%s'", optarg);
            break;
        case O_F32: packed = 0; break;
        case O_PACKED: packed = 1; break;
        case O_SEL_LAYERS: sel_layers = optarg; break;
        case O_PER_PROMPT: per_prompt = 1; break;
        case 't':
            if (cli_set_threads(CMD, optarg)) return CLI_EXIT_USAGE;
            break;
        case 'h': help(); return 0;
        default: return cli_getopt_error(CMD, argv, c);
        }
    }
    if (optind >= argc) return cli_usage_error(CMD, "missing MODEL");
    if (optind + 1 < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
    if (n_tasks == 0) return cli_usage_error(CMD, "missing --task FILE.jsonl");
    if (!out_path) return cli_usage_error(CMD, "missing --out RESULTS.jsonl");
    if ((bank_dir != NULL) != (select != NULL)) return cli_usage_error(CMD, "--bank and --select go together");
    if (bank_dir && prompt_dir) return cli_usage_error(CMD, "give --prompt or --bank, not both");
    if ((sel_layers || per_prompt) && !bank_dir) return cli_usage_error(CMD, "--select-layers/--per-prompt need --bank");
    const char *model_path = argv[optind];

    int rc = CLI_EXIT_ERROR;
    mend_task *tasks[MAX_TASKS] = {0};
    mend_task_info ti[MAX_TASKS];
    unsigned char *done[MAX_TASKS] = {0};
    size_t *idx = NULL, max_n = 0;   /* the examples of a task still to score */
    mend_results prev;
    memset(&prev, 0, sizeof prev);
    mend_model *m = NULL;
    mend_eval_backend *be = NULL;
    mend_idp *idp = NULL;
    float *prompt = NULL;
    int n_virtual = 0;
    FILE *out = NULL;
    mend_task_summary *sums = NULL;
    size_t n_sums = 0;
    char model_name[512], prompt_name[512];
    mend_basename(model_path, model_name, sizeof model_name);
    /* packed kernels score differently: their lines must not mix with f32 ones */
    if (packed && strlen(model_name) + 8 < sizeof model_name) strcat(model_name, "+packed");
    const char *prompt_label = prompt_dir ? mend_basename(prompt_dir, prompt_name, sizeof prompt_name) : NULL;
    if (bank_dir) { /* "BANK:SELECTOR", the label mend_idp_label gives */
        char bn[256];
        mend_basename(bank_dir, bn, sizeof bn);
        snprintf(prompt_name, sizeof prompt_name, "%s:%.*s", bn, (int)strcspn(select, ","), select);
        prompt_label = prompt_name;
    }

    /* tasks first: bad input fails before the model loads */
    for (int t = 0; t < n_tasks; t++) {
        if (mend_task_load(&tasks[t], task_paths[t], (size_t)limit)) {
            rc = cli_fail(CMD, "task");
            goto out;
        }
        mend_task_get_info(tasks[t], &ti[t]);
        for (int u = 0; u < t; u++)
            if (!strcmp(ti[u].name, ti[t].name)) {
                fprintf(stderr, "mend eval: tasks %s and %s have the same name '%s'; results lines "
                                "are keyed by task name\n", task_paths[u], task_paths[t], ti[t].name);
                goto out;
            }
        done[t] = calloc(ti[t].n, 1);
        if (ti[t].n > max_n) max_n = ti[t].n;
        if (!done[t]) {
            fprintf(stderr, "mend eval: out of memory\n");
            goto out;
        }
    }

    /* resume */
    if (mend_file_exists(out_path)) {
        if (mend_results_load(out_path, &prev)) {
            rc = cli_fail(CMD, "results");
            goto out;
        }
        if (prev.file_size > 0 && !resume) {
            fprintf(stderr, "mend eval: %s already holds %zu results; pass --resume to continue it or "
                            "choose another --out\n", out_path, prev.n);
            goto out;
        }
        if (prev.partial) {
            fprintf(stderr, "mend eval: %s: dropping a partial last line (%zu bytes) left by an "
                            "interrupted run\n", out_path, prev.file_size - prev.valid_bytes);
            if (truncate(out_path, (off_t)prev.valid_bytes) != 0) {
                fprintf(stderr, "mend eval: %s: cannot truncate the partial line\n", out_path);
                goto out;
            }
        }
        size_t skipped = 0;
        for (size_t i = 0; i < prev.n; i++) {
            const mend_result_rec *r = &prev.rec[i];
            for (int t = 0; t < n_tasks; t++) {
                if (strcmp(r->task, ti[t].name)) continue;
                if (strcmp(r->model, model_name) || !str_eq_null(r->prompt, prompt_label)) {
                    fprintf(stderr, "mend eval: %s:%d: task %s was scored with model %s, prompt %s; this "
                                    "run uses model %s, prompt %s: choose another --out\n",
                            out_path, r->line, r->task, r->model, r->prompt ? r->prompt : "none",
                            model_name, prompt_label ? prompt_label : "none");
                    goto out;
                }
                if (r->kind != ti[t].kind) {
                    fprintf(stderr, "mend eval: %s:%d: task %s is %s there but %s in %s\n", out_path,
                            r->line, r->task, mend_task_kind_name(r->kind),
                            mend_task_kind_name(ti[t].kind), ti[t].path);
                    goto out;
                }
                if (r->index >= 0 && (size_t)r->index < ti[t].n && !done[t][r->index]) {
                    done[t][r->index] = 1;
                    skipped++;
                }
            }
        }
        if (resume && prev.n)
            fprintf(stderr, "resuming %s: %zu of the requested examples already scored\n", out_path, skipped);
    }

    idx = malloc((max_n ? max_n : 1) * sizeof *idx);
    if (!idx) {
        fprintf(stderr, "mend eval: out of memory\n");
        goto out;
    }
    size_t todo = 0;
    for (int t = 0; t < n_tasks; t++)
        for (size_t i = 0; i < ti[t].n; i++) todo += !done[t][i];

    mend_load_opts lo = {.keep_packed = packed};
    if (mend_model_load(&m, model_path, &lo)) {
        rc = cli_fail(CMD, model_path);
        goto out;
    }
    mend_model_info info;
    mend_model_get_info(m, &info);
    if (prompt_dir && cli_read_prompt(CMD, m, model_path, prompt_dir, &prompt, &n_virtual)) {
        rc = CLI_EXIT_ERROR;
        goto out;
    }
    if (mend_eval_backend_model(&be, m, prompt, n_virtual, (int)ctx, (int)batch)) {
        rc = cli_fail(CMD, "backend");
        goto out;
    }
    if (bank_dir) {
        if ((rc = cli_idp_open(&idp, CMD, m, model_path, bank_dir, select, sel_layers, 0, per_prompt))) goto out;
        rc = CLI_EXIT_ERROR;
        if (mend_idp_eval_setup(idp, (int)ctx, (int)batch)) {
            rc = cli_fail(CMD, "prompt bank backends");
            goto out;
        }
        mend_eval_backend_set_window(be, mend_idp_eval_window(idp));
    }
    out = fopen(out_path, "a");
    if (!out) {
        fprintf(stderr, "mend eval: cannot open %s for appending\n", out_path);
        goto out;
    }
    printf("model:   %s (%s, %d layers, dim %d, window %d tokens)\n", model_path, info.arch,
           info.n_layers, info.dim, mend_eval_backend_window(be));
    printf("weights: %s\n", packed ? "packed (native quantized kernels, 8-bit activations)"
                                     : "dequantized to f32 (as lm-eval's HF backend)");
    printf("prompt:  %s\n", prompt_dir ? prompt_dir : bank_dir ? prompt_label : "none");
    for (int t = 0; t < n_tasks; t++)
        printf("task:    %-16s %s, %zu of %zu examples (%s)\n", ti[t].name,
               mend_task_kind_name(ti[t].kind), ti[t].n, ti[t].n_total, ti[t].path);
    printf("results: %s (%zu examples to score)\n", out_path, todo);
    fflush(stdout);

    if (prompt_dir && mend_eval_backend_reserve(be, 1)) { /* the prompt's KV, once per run */
        rc = cli_fail(CMD, "soft prompt");
        goto out;
    }
    mend_eval_stats stats;
    memset(&stats, 0, sizeof stats);
    cli_progress bar;
    cli_progress_start(&bar, "eval", "ex", (int64_t)todo, 1000000);
    writer w = {.out = out, .out_path = out_path, .bar = &bar, .window = mend_eval_backend_window(be)};
    double t0 = mend_now();
    for (int t = 0; t < n_tasks; t++) {
        size_t n_idx = 0;
        for (size_t i = 0; i < ti[t].n; i++)
            if (!done[t][i]) idx[n_idx++] = i;
        w.task = tasks[t];
        w.path = ti[t].path;
        /* examples are scored in groups (packed into shared forwards), then
         * written in order, one flushed line each */
        if (mend_eval_run(be, idp, tasks[t], idx, n_idx, model_name, prompt_label, write_line, &w, &stats)) {
            cli_progress_end(&bar);
            if (!w.write_failed) rc = cli_fail(CMD, ti[t].name);
            goto out;
        }
    }
    cli_progress_end(&bar);
    double el = mend_now() - t0;
    fclose(out);
    out = NULL;
    if (todo)
        fprintf(stderr, "scored %zu examples in %.1f s; forward positions %lld (%lld without prefix sharing)%s\n",
                todo, el, (long long)stats.tokens_run, (long long)stats.tokens_naive,
                stats.truncated ? "" : "");
    if (stats.truncated)
        fprintf(stderr, "warning: %lld sequences were truncated from the left to the window of %d tokens\n",
                (long long)stats.truncated, mend_eval_backend_window(be));

    /* the summary comes from the results file alone */
    mend_results_free(&prev);
    if (mend_results_load(out_path, &prev) || mend_results_summarize(&prev, &sums, &n_sums)) {
        rc = cli_fail(CMD, "summary");
        goto out;
    }
    char title[600];
    cli_file_title(out_path, title, sizeof title);
    mend_report_run run = {.name = title, .s = sums, .n = n_sums};
    char *md = NULL;
    if (mend_report_markdown(&run, 1, &md)) {
        rc = cli_fail(CMD, "summary");
        goto out;
    }
    printf("\n%s", md);
    for (size_t k = 0; k < n_sums; k++)
        if (sums[k].truncated)
            printf("note: %s: %ld sequences truncated to the window\n", sums[k].task, sums[k].truncated);
    free(md);
    if (idp) {
        char *summary = NULL;
        if (mend_idp_summary(idp, &summary)) {
            rc = cli_fail(CMD, "prompt bank summary");
            goto out;
        }
        fputs(summary, stdout);
        free(summary);
    }
    rc = 0;
out:
    if (out) fclose(out);
    mend_summaries_free(sums, n_sums);
    mend_results_free(&prev);
    mend_eval_backend_free(be);
    mend_idp_close(idp);
    free(prompt);
    if (m) mend_model_free(m);
    for (int t = 0; t < n_tasks; t++) {
        mend_task_free(tasks[t]);
        free(done[t]);
    }
    free(idx);
    return rc;
}
