/* mend generate MODEL -p TEXT: stream a continuation (or, with --chat, an
 * assistant reply formatted with the model's ChatML template) to stdout.
 * Timings go to stderr at the end. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cli.h"
#include "mend.h"

static const char *CMD = "generate";

static void help(void) {
    printf("Usage: mend generate [options] MODEL -p TEXT\n\n"
           "Generate text. Without --chat the prompt is continued and echoed first;\n"
           "with --chat it is sent as a user turn through the model's chat template\n"
           "(ChatML) and only the reply is printed. Generation stops after -n tokens\n"
           "or at an end-of-generation token. Speed is reported on stderr.\n\n"
           "Options:\n"
           "  -p, --prompt TEXT   prompt text (required unless --file)\n"
           "  -f, --file PATH     read the prompt from a file\n"
           "      --chat          apply the chat template (ChatML)\n"
           "      --system TEXT   system message for --chat (default: the template's own)\n"
           "  -n, --n-predict N   tokens to generate (default 128)\n"
           "      --temp T        temperature; 0 = greedy (default 0)\n"
           "      --top-p P       nucleus sampling mass (default 0.95)\n"
           "      --top-k K       keep the K most likely tokens; 0 = off (default 0)\n"
           "      --seed S        sampling seed (default: from the clock, printed)\n"
           "      --f32           dequantize weights to f32 at load\n"
           "      --soft-prompt DIR  a soft prompt (PEFT prompt-tuning adapter, e.g. from\n"
           "                      'mend tune') before the text (-p/--prompt is the text)\n"
           "      --bank DIR      prompt bank: one of its prompts, chosen for this input\n"
           "      --select S      with --bank: attention (default from bank.json), router,\n"
           "                      loss, learned, fixed:NAME or none (docs/idp.md)\n"
           "      --select-layers A:B  attention selector layers (default: bank.json)\n"
           "  -t, --threads N     threads (default: all cores)\n"
           "  -h, --help          this help\n");
}

/* Write one token's text; grows the buffer for long pieces. */
static int emit(const mend_tokenizer *tok, int32_t id, char **buf, size_t *cap) {
    int n = mend_token_piece(tok, id, *buf, *cap);
    if (n < 0) return n;
    if ((size_t)n > *cap) {
        char *nb = realloc(*buf, (size_t)n);
        if (!nb) return MEND_ENOMEM;
        *buf = nb;
        *cap = (size_t)n;
        n = mend_token_piece(tok, id, *buf, *cap);
        if (n < 0) return n;
    }
    fwrite(*buf, 1, (size_t)n, stdout);
    fflush(stdout);
    return 0;
}

int cmd_generate(int argc, char **argv) {
    enum { O_CHAT = 256, O_SYSTEM, O_TEMP, O_TOPP, O_TOPK, O_SEED, O_F32, O_SOFT, O_BANK, O_SELECT, O_SEL_LAYERS };
    static const struct option longopts[] = {
        {"prompt", required_argument, 0, 'p'}, {"file", required_argument, 0, 'f'},
        {"chat", no_argument, 0, O_CHAT},      {"system", required_argument, 0, O_SYSTEM},
        {"n-predict", required_argument, 0, 'n'}, {"temp", required_argument, 0, O_TEMP},
        {"top-p", required_argument, 0, O_TOPP}, {"top-k", required_argument, 0, O_TOPK},
        {"seed", required_argument, 0, O_SEED}, {"f32", no_argument, 0, O_F32},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
        {"soft-prompt", required_argument, 0, O_SOFT}, {"bank", required_argument, 0, O_BANK},
        {"select", required_argument, 0, O_SELECT}, {"select-layers", required_argument, 0, O_SEL_LAYERS},
        {0, 0, 0, 0}};
    const char *bank_dir = NULL, *select = NULL, *sel_layers = NULL;
    mend_idp *idp = NULL;
    const char *prompt = NULL, *prompt_file = NULL, *system = NULL, *soft_dir = NULL;
    int chat = 0, f32 = 0, have_seed = 0;
    long n_predict = 128, top_k = 0;
    double temp = 0.0, top_p = 0.95;
    uint64_t seed = 0;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":p:f:n:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': prompt = optarg; break;
        case 'f': prompt_file = optarg; break;
        case O_CHAT: chat = 1; break;
        case O_SYSTEM: system = optarg; break;
        case 'n':
            if (cli_parse_int(optarg, 0, 1 << 20, &n_predict))
                return cli_usage_error(CMD, "-n expects a whole number from 0 to 1048576, got '%s'", optarg);
            break;
        case O_TEMP:
            if (cli_parse_double(optarg, 0.0, 100.0, &temp))
                return cli_usage_error(CMD, "--temp expects a number from 0 to 100, got '%s'", optarg);
            break;
        case O_TOPP:
            if (cli_parse_double(optarg, 0.0, 1.0, &top_p) || top_p <= 0.0)
                return cli_usage_error(CMD, "--top-p expects a number in (0, 1], got '%s'", optarg);
            break;
        case O_TOPK:
            if (cli_parse_int(optarg, 0, 1 << 30, &top_k))
                return cli_usage_error(CMD, "--top-k expects a whole number >= 0, got '%s'", optarg);
            break;
        case O_SEED:
            if (cli_parse_u64(optarg, &seed))
                return cli_usage_error(CMD, "--seed expects a non-negative whole number, got '%s'", optarg);
            have_seed = 1;
            break;
        case O_F32: f32 = 1; break;
        case O_SOFT: soft_dir = optarg; break;
        case O_BANK: bank_dir = optarg; break;
        case O_SELECT: select = optarg; break;
        case O_SEL_LAYERS: sel_layers = optarg; break;
        case 't':
            if (cli_set_threads(CMD, optarg)) return CLI_EXIT_USAGE;
            break;
        case 'h': help(); return 0;
        default: return cli_getopt_error(CMD, argv, c);
        }
    }
    if (optind >= argc) return cli_usage_error(CMD, "missing MODEL");
    if (optind + 1 < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
    if (!prompt && !prompt_file) return cli_usage_error(CMD, "missing -p TEXT (or -f FILE)");
    if (prompt && prompt_file) return cli_usage_error(CMD, "give -p or -f, not both");
    if (system && !chat) return cli_usage_error(CMD, "--system needs --chat");
    if ((select || sel_layers) && !bank_dir) return cli_usage_error(CMD, "--select/--select-layers need --bank");
    if (bank_dir && soft_dir) return cli_usage_error(CMD, "give --soft-prompt or --bank, not both");
    const char *path = argv[optind];

    int rc = CLI_EXIT_ERROR;
    char *file_text = NULL, *formatted = NULL, *piece = NULL;
    int32_t *ids = NULL;
    float *logits = NULL, *soft = NULL;
    int n_soft = 0;
    mend_model *m = NULL;
    mend_state *st = NULL;
    mend_sampler *smp = NULL;
    size_t n_ids = 0, piece_cap = 256;

    if (prompt_file) {
        size_t len;
        if (mend_read_file(prompt_file, (size_t)1 << 30, &file_text, &len)) {
            rc = cli_fail(CMD, prompt_file);
            goto out;
        }
        prompt = file_text;
    }
    mend_load_opts lo = {.keep_packed = !f32};
    if (mend_model_load(&m, path, &lo)) {
        rc = cli_fail(CMD, path);
        goto out;
    }
    mend_model_info info;
    mend_model_get_info(m, &info);
    const mend_tokenizer *tok = mend_model_tokenizer(m);
    if (soft_dir && cli_read_prompt(CMD, m, path, soft_dir, &soft, &n_soft)) {
        rc = CLI_EXIT_ERROR;
        goto out;
    }

    const char *text = prompt;
    if (chat) {
        const char *tmpl = mend_model_meta_str(m, "tokenizer.chat_template");
        if (mend_chat_format(tmpl, system, prompt, &formatted)) {
            rc = cli_fail(CMD, "chat template");
            goto out;
        }
        text = formatted;
    }
    if (mend_tokenize(tok, text, strlen(text), 1, chat, &ids, &n_ids)) {
        rc = cli_fail(CMD, "tokenize");
        goto out;
    }
    if (n_ids == 0) {
        rc = cli_usage_error(CMD, "the prompt is empty after tokenization");
        goto out;
    }
    if (bank_dir) { /* one prompt of the bank, chosen for this input */
        if ((rc = cli_idp_open(&idp, CMD, m, path, bank_dir, select, sel_layers, 0, 0))) goto out;
        rc = CLI_EXIT_ERROR;
        int choice[MEND_IDP_MAX_SEL];
        double ts = mend_now();
        if (mend_idp_pick_all(idp, ids, (int)n_ids, choice) || choice[0] == -2) {
            if (choice[0] == -2) fprintf(stderr, "mend %s: the oracle selector needs a label; not for generate\n", CMD);
            else rc = cli_fail(CMD, "select");
            goto out;
        }
        fprintf(stderr, "bank:       %s selected '%s' in %.3f s\n", mend_idp_label(idp),
                mend_idp_prompt_name(idp, choice[0]), mend_now() - ts);
        if (choice[0] >= 0) {
            n_soft = mend_idp_nv(idp);
            soft = malloc((size_t)n_soft * info.dim * sizeof *soft);
            if (!soft) {
                fprintf(stderr, "mend %s: out of memory\n", CMD);
                goto out;
            }
            memcpy(soft, mend_idp_prompt(idp, choice[0]), (size_t)n_soft * info.dim * sizeof *soft);
        }
    }
    long n_ctx = (long)n_soft + (long)n_ids + n_predict;
    if (info.ctx_len > 0 && n_ctx > info.ctx_len) {
        if ((long)n_soft + (long)n_ids >= info.ctx_len) {
            fprintf(stderr, "mend %s: the prompt has %zu tokens; the model's context is %d\n", CMD, n_ids,
                    info.ctx_len);
            goto out;
        }
        n_predict = info.ctx_len - (long)n_soft - (long)n_ids;
        n_ctx = info.ctx_len;
    }
    const int max_batch = (size_t)n_soft + n_ids < 512 ? n_soft + (int)n_ids : 512;
    if (mend_state_new(&st, m, (int)n_ctx, max_batch)) {
        rc = cli_fail(CMD, "state");
        goto out;
    }
    if (!have_seed) seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    mend_sampler_opts so = {.temperature = (float)temp, .top_p = (float)top_p, .top_k = (int)top_k, .seed = seed};
    if (mend_sampler_new(&smp, info.n_vocab, &so)) {
        rc = cli_fail(CMD, "sampler");
        goto out;
    }
    logits = malloc((size_t)info.n_vocab * sizeof *logits);
    piece = malloc(piece_cap);
    if (!logits || !piece) {
        fprintf(stderr, "mend %s: out of memory\n", CMD);
        goto out;
    }

    if (!chat) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    /* prompt: batches of max_batch, logits of the last position only */
    double t0 = mend_now();
    /* a soft prompt first: its KV at positions [0, n_soft), the text after it */
    for (int p0 = 0; p0 < n_soft; p0 += max_batch) {
        int nb = n_soft - p0 < max_batch ? n_soft - p0 : max_batch;
        if (mend_forward(st, NULL, soft + (size_t)p0 * info.dim, nb, p0, NULL, 0)) {
            rc = cli_fail(CMD, "forward (soft prompt)");
            goto out;
        }
    }
    for (size_t pos = 0; pos < n_ids; pos += (size_t)max_batch) {
        int nb = (int)(n_ids - pos < (size_t)max_batch ? n_ids - pos : (size_t)max_batch);
        int last = pos + (size_t)nb == n_ids;
        if (mend_forward(st, ids + pos, NULL, nb, n_soft + (int)pos, last ? logits : NULL, 0)) {
            rc = cli_fail(CMD, "forward (prompt)");
            goto out;
        }
    }
    double t1 = mend_now();
    long n_gen = 0, n_eval = 0;
    int pos = n_soft + (int)n_ids;
    for (long i = 0; i < n_predict; i++) {
        int32_t next = mend_sample(smp, logits);
        if (next < 0) {
            rc = cli_fail(CMD, "sample");
            goto out;
        }
        if (mend_token_is_eog(tok, next)) break;
        n_gen++;
        if (emit(tok, next, &piece, &piece_cap)) {
            rc = cli_fail(CMD, "detokenize");
            goto out;
        }
        if (i + 1 == n_predict) break;
        if (mend_forward(st, &next, NULL, 1, pos, logits, 0)) {
            rc = cli_fail(CMD, "forward");
            goto out;
        }
        pos++;
        n_eval++;
    }
    double t2 = mend_now();
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "\nprompt:     %6zu tokens in %8.3f s  %9.2f tokens/s\n", n_ids, t1 - t0,
            t1 > t0 ? n_ids / (t1 - t0) : 0.0);
    fprintf(stderr, "generation: %6ld tokens in %8.3f s  %9.2f tokens/s (%ld forward passes)\n", n_gen, t2 - t1,
            t2 > t1 ? n_gen / (t2 - t1) : 0.0, n_eval);
    if (temp > 0) fprintf(stderr, "seed:       %llu\n", (unsigned long long)seed);
    rc = 0;
out:
    mend_idp_close(idp);
    free(piece);
    free(logits);
    free(soft);
    mend_sampler_free(smp);
    if (st) mend_state_free(st);
    if (m) mend_model_free(m);
    free(ids);
    free(formatted);
    free(file_text);
    return rc;
}
