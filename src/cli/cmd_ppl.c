/* mend ppl MODEL --text FILE: perplexity under one of two published
 * protocols (docs/ppl.md):
 *   gptq      the GPTQ / SparseGPT / Wanda evaluation (default n_ctx 2048)
 *   llamacpp  llama.cpp's perplexity tool (default n_ctx 512)
 * Per-window running perplexity goes to stderr as [i]ppl, with an ETA; the
 * last line of stdout is "PPL = x +/- e". */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mend.h"

static const char *CMD = "ppl";

static void help(void) {
    printf("Usage: mend ppl [options] MODEL --text FILE\n\n"
           "Perplexity of a text file.\n\n"
           "Options:\n"
           "      --text FILE          the text (e.g. wiki.test.raw)\n"
           "      --protocol P         gptq (default) or llamacpp\n"
           "                           gptq: the whole text tokenized without BOS, windows\n"
           "                             of --ctx tokens (default 2048), every token but the\n"
           "                             first of each window scored, ppl = exp(mean window loss)\n"
           "                           llamacpp: as llama.cpp's perplexity tool: one trailing\n"
           "                             newline dropped, BOS added per the model, chunks of\n"
           "                             --ctx tokens (default 512), BOS at each chunk start\n"
           "                             when the model adds BOS, second half of each chunk scored\n"
           "      --ctx N              window length\n"
           "      --chunks N           score only the first N windows\n"
           "      --batch N            positions per forward call (default min(ctx, 512))\n"
           "      --hf-lines           gptq: rebuild the Hugging Face wikitext rows (one per\n"
           "                             line, whitespace-only lines empty) and score\n"
           "                             \"\\n\\n\".join(rows), the text the GPTQ scripts use\n"
           "      --f32                dequantize weights to f32 at load\n"
           "      --no-repack          no interleaved copy of q4_0 / q4_1 / q5_0 / q2_K / q3_K / q4_K /\n"
           "                           q6_K matrices (the plain-layout kernels run instead)\n"
           "      --bank DIR           prompt bank: a prompt chosen per window (docs/idp.md)\n"
           "      --select S           with --bank: attention, router, loss, learned, fixed:NAME,\n"
           "                           none, or oracle (with --per-prompt); a comma list also\n"
           "                           records the picks of the others\n"
           "      --select-layers A:B  attention selector layers (default: bank.json)\n"
           "      --select-tokens N    the selector sees a window's first N tokens (default 128)\n"
           "      --per-prompt         score every window with no prompt and each prompt too,\n"
           "                           and print the perplexity of every row\n"
           "      --json FILE          also write the result (and every row) as JSON, atomically\n"
           "      --prompt DIR         (or --soft-prompt DIR) a soft prompt (PEFT prompt-tuning adapter) before every\n"
           "                             window: its KV is computed once at positions 0..n-1,\n"
           "                             the window runs from position n; same scored tokens\n"
           "  -t, --threads N          threads (default: all cores)\n"
           "  -h, --help               this help\n");
}

int cmd_ppl(int argc, char **argv) {
    enum { O_TEXT = 256, O_PROTO, O_CTX, O_CHUNKS, O_BATCH, O_HFLINES, O_F32, O_NOREPACK, O_PROMPT, O_BANK, O_SELECT,
           O_SEL_LAYERS, O_SEL_TOKENS, O_PER_PROMPT, O_JSON };
    static const struct option longopts[] = {
        {"text", required_argument, 0, O_TEXT},     {"protocol", required_argument, 0, O_PROTO},
        {"ctx", required_argument, 0, O_CTX},       {"chunks", required_argument, 0, O_CHUNKS},
        {"batch", required_argument, 0, O_BATCH},   {"hf-lines", no_argument, 0, O_HFLINES},
        {"f32", no_argument, 0, O_F32},             {"no-repack", no_argument, 0, O_NOREPACK},
        {"threads", required_argument, 0, 't'},
        {"bank", required_argument, 0, O_BANK},     {"select", required_argument, 0, O_SELECT},
        {"select-layers", required_argument, 0, O_SEL_LAYERS}, {"select-tokens", required_argument, 0, O_SEL_TOKENS},
        {"per-prompt", no_argument, 0, O_PER_PROMPT}, {"json", required_argument, 0, O_JSON},
        {"prompt", required_argument, 0, O_PROMPT}, {"soft-prompt", required_argument, 0, O_PROMPT},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    const char *text_path = NULL, *prompt_dir = NULL, *json_path = NULL;
    int protocol = MEND_PPL_GPTQ, hf_lines = 0, f32 = 0, no_repack = 0;
    long n_ctx = 0, n_chunks = 0, n_batch = 0, sel_tokens = 128;
    const char *bank_dir = NULL, *select = NULL, *sel_layers = NULL;
    int per_prompt = 0;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":t:h", longopts, NULL)) != -1) {
        switch (c) {
        case O_TEXT: text_path = optarg; break;
        case O_PROTO:
            if (!strcmp(optarg, "gptq")) protocol = MEND_PPL_GPTQ;
            else if (!strcmp(optarg, "llamacpp") || !strcmp(optarg, "llama.cpp")) protocol = MEND_PPL_LLAMACPP;
            else return cli_usage_error(CMD, "--protocol expects gptq or llamacpp, got '%s'", optarg);
            break;
        case O_CTX:
            if (cli_parse_int(optarg, 4, MEND_PPL_MAX_CTX, &n_ctx))
                return cli_usage_error(CMD, "--ctx expects a whole number from 4 to %d, got '%s'", MEND_PPL_MAX_CTX,
                                       optarg);
            break;
        case O_CHUNKS:
            if (cli_parse_int(optarg, 1, 1L << 30, &n_chunks))
                return cli_usage_error(CMD, "--chunks expects a whole number >= 1, got '%s'", optarg);
            break;
        case O_BATCH:
            if (cli_parse_int(optarg, 1, MEND_PPL_MAX_CTX, &n_batch))
                return cli_usage_error(CMD, "--batch expects a whole number >= 1, got '%s'", optarg);
            break;
        case O_HFLINES: hf_lines = 1; break;
        case O_F32: f32 = 1; break;
        case O_NOREPACK: no_repack = 1; break;
        case O_BANK: bank_dir = optarg; break;
        case O_SELECT: select = optarg; break;
        case O_SEL_LAYERS: sel_layers = optarg; break;
        case O_SEL_TOKENS:
            if (cli_parse_int(optarg, 1, MEND_PPL_MAX_CTX, &sel_tokens))
                return cli_usage_error(CMD, "--select-tokens expects a whole number >= 1, got '%s'", optarg);
            break;
        case O_PER_PROMPT: per_prompt = 1; break;
        case O_JSON: json_path = optarg; break;
        case O_PROMPT: prompt_dir = optarg; break;
        case 't':
            if (cli_set_threads(CMD, optarg)) return CLI_EXIT_USAGE;
            break;
        case 'h': help(); return 0;
        default: return cli_getopt_error(CMD, argv, c);
        }
    }
    if (optind >= argc) return cli_usage_error(CMD, "missing MODEL");
    if (optind + 1 < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
    if (!text_path) return cli_usage_error(CMD, "missing --text FILE");
    if (hf_lines && protocol != MEND_PPL_GPTQ) return cli_usage_error(CMD, "--hf-lines applies to --protocol gptq");
    if ((select || sel_layers || per_prompt) && !bank_dir)
        return cli_usage_error(CMD, "--select/--select-layers/--per-prompt need --bank");
    if (bank_dir && prompt_dir) return cli_usage_error(CMD, "give --prompt or --bank, not both");
    mend_ppl_job j;
    mend_ppl_job_init(&j);
    j.model = argv[optind];
    j.text = text_path;
    j.hf_lines = hf_lines;
    j.protocol = protocol;
    j.ctx = (int)n_ctx;
    j.chunks = (int)n_chunks;
    j.batch = (int)n_batch;
    j.prompt = prompt_dir;
    j.bank = bank_dir;
    j.select = select;
    j.select_layers = sel_layers;
    j.select_tokens = (int)sel_tokens;
    j.per_prompt = per_prompt;
    j.f32 = f32;
    j.no_repack = no_repack;
    j.json = json_path;
    cli_events ev = {.cmd = CMD};
    return cli_job_status(CMD, mend_ppl_job_run(&j, cli_event, &ev));
}
