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
    mend_eval_job j;
    mend_eval_job_init(&j);
    j.model = argv[optind];
    j.tasks = task_paths;
    j.n_tasks = n_tasks;
    j.out = out_path;
    j.resume = resume;
    j.limit = (size_t)limit;
    j.prompt = prompt_dir;
    j.bank = bank_dir;
    j.select = select;
    j.select_layers = sel_layers;
    j.per_prompt = per_prompt;
    j.ctx = (int)ctx;
    j.batch = (int)batch;
    j.packed = packed;
    cli_events ev = {.cmd = CMD};
    return cli_job_status(CMD, mend_eval_job_run(&j, cli_event, &ev));
}
