/* mend ppl MODEL --text FILE: perplexity under one of two published
 * protocols (docs/ppl.md):
 *   gptq      the GPTQ / SparseGPT / Wanda evaluation (default n_ctx 2048)
 *   llamacpp  llama.cpp's perplexity tool (default n_ctx 512)
 * Per-window running perplexity goes to stderr as [i]ppl, with an ETA; the
 * last line of stdout is "PPL = x +/- e". */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
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
           "      --no-repack          no interleaved copy of q4_0 / q4_1 / q5_0 / q2_K matrices (the\n"
           "                           plain-layout kernels run instead)\n"
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

/* The Hugging Face "wikitext" loader yields one row per line of the raw
 * file, line break kept, with whitespace-only lines as "". GPTQ joins the
 * rows with "\n\n". */
static char *hf_join_lines(const char *s, size_t len, size_t *out_len) {
    size_t cap = len * 3 + 1, o = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t i = 0;
    int firstrow = 1;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != '\n') j++;
        size_t end = j < len ? j + 1 : j;   /* include '\n' */
        int blank = 1;
        for (size_t k = i; k < end; k++)
            if (s[k] != ' ' && s[k] != '\t' && s[k] != '\n' && s[k] != '\r' && s[k] != '\f' && s[k] != '\v')
                blank = 0;
        if (!firstrow) {
            out[o++] = '\n';
            out[o++] = '\n';
        }
        firstrow = 0;
        if (!blank) {
            memcpy(out + o, s + i, end - i);
            o += end - i;
        }
        i = end;
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

typedef struct progress_ctx {
    cli_progress bar;
} progress_ctx;

static int on_window(void *user, int done, int total, double running) {
    progress_ctx *pc = user;
    char item[64];
    snprintf(item, sizeof item, "[%d]%.4f,", done, running);
    cli_progress_update(&pc->bar, done, item);
    return 0;
}

/* --json FILE: the result as one JSON object, written atomically:
 * {model, text, protocol, n_ctx, windows, scored, ppl, stderr, seconds,
 *  tokens_per_s (window tokens evaluated per second, selection included),
 *  window_nll (the mean nll of each window, in text order: what a paired
 *  comparison of two runs on the same windows needs), prompt?, bank?,
 *  rows?: [{row, ppl, stderr}]} (rows with --bank --per-prompt). */
static int write_json(const char *out, const char *model, const char *text, const mend_ppl_opts *o,
                      const mend_ppl_result *r, double secs, const char *prompt, const char *bank, json_t *rows) {
    json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:I, s:f, s:f, s:f, s:f}", "model", model, "text", text,
                          "protocol", o->protocol == MEND_PPL_GPTQ ? "gptq" : "llamacpp", "n_ctx", o->n_ctx,
                          "windows", r->n_chunks, "scored", (json_int_t)r->n_scored, "ppl", r->ppl, "stderr",
                          r->ppl_err, "seconds", secs,
                          "tokens_per_s", secs > 0 ? (double)r->n_chunks * r->n_ctx / secs : 0.0);
    if (!j) return mend_set_error(MEND_ENOMEM, "%s: out of memory", out);
    json_t *w = json_array();
    for (int i = 0; w && o->window_nll && i < r->n_chunks; i++) json_array_append_new(w, json_real(o->window_nll[i]));
    json_object_set_new(j, "window_nll", w);
    if (prompt) json_object_set_new(j, "prompt", json_string(prompt));
    if (bank) json_object_set_new(j, "bank", json_string(bank));
    if (json_array_size(rows)) json_object_set(j, "rows", rows);
    char *s = json_dumps(j, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!s) return mend_set_error(MEND_ENOMEM, "%s: out of memory", out);
    int rc = mend_write_file_atomic(out, s, strlen(s));
    free(s);
    return rc;
}

/* The bank's report on stdout and its rows appended to the JSON array rows
 * as {row, ppl, stderr}; -1 after printing the error. */
static int print_idp_report(const mend_idp_ppl_report *rep, json_t *rows) {
    fputs(rep->text, stdout);
    for (int i = 0; i < rep->n_rows; i++) {
        const mend_idp_ppl_row *w = &rep->rows[i];
        json_t *o = json_pack("{s:s, s:f, s:f}", "row", w->name, "ppl", w->ppl, "stderr", w->err);
        if (!o || json_array_append_new(rows, o)) {
            fprintf(stderr, "mend %s: out of memory\n", CMD);
            return -1;
        }
    }
    return 0;
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
    mend_idp *idp = NULL;
    json_t *rows = NULL;
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
    const char *path = argv[optind];

    int rc = CLI_EXIT_ERROR;
    char *text = NULL, *joined = NULL;
    int32_t *ids = NULL;
    size_t len = 0, n_ids = 0;
    mend_model *m = NULL;
    float *prompt = NULL;
    double *wnll = NULL;   /* each window's mean nll, for --json */
    int n_virtual = 0;

    if (mend_read_file(text_path, (size_t)4 << 30, &text, &len)) {
        rc = cli_fail(CMD, text_path);
        goto out;
    }
    const char *t = text;
    if (protocol == MEND_PPL_LLAMACPP && len > 0 && text[len - 1] == '\n') len--;   /* as llama.cpp's -f */
    if (hf_lines) {
        joined = hf_join_lines(text, len, &len);
        if (!joined) {
            fprintf(stderr, "mend %s: out of memory\n", CMD);
            goto out;
        }
        t = joined;
    }
    mend_load_opts lo = {.keep_packed = !f32, .no_repack = no_repack};
    if (mend_model_load(&m, path, &lo)) {
        rc = cli_fail(CMD, path);
        goto out;
    }
    if (prompt_dir && cli_read_prompt(CMD, m, path, prompt_dir, &prompt, &n_virtual)) {
        rc = CLI_EXIT_ERROR;
        goto out;
    }
    const mend_tokenizer *tok = mend_model_tokenizer(m);
    double t0 = mend_now();
    if (mend_tokenize(tok, t, len, protocol == MEND_PPL_LLAMACPP, 0, &ids, &n_ids)) {
        rc = cli_fail(CMD, "tokenize");
        goto out;
    }
    double t1 = mend_now();
    fprintf(stderr, "tokenized %zu bytes into %zu tokens in %.2f s\n", len, n_ids, t1 - t0);

    mend_ppl_opts in = {.protocol = protocol, .n_ctx = (int)n_ctx, .n_chunks = (int)n_chunks,
                        .n_batch = (int)n_batch, .bos = -1};
    if (protocol == MEND_PPL_LLAMACPP && mend_tokenizer_add_bos(tok)) in.bos = mend_token_bos(tok);
    mend_ppl_opts o;
    if (mend_ppl_resolve_opts(&in, &o)) {
        rc = cli_fail(CMD, "options");
        goto out;
    }
    size_t n_max = n_ids / (size_t)o.n_ctx;
    size_t n_run = o.n_chunks > 0 && (size_t)o.n_chunks < n_max ? (size_t)o.n_chunks : n_max;
    int first = mend_ppl_first(o.protocol, o.n_ctx);
    if (!(wnll = calloc(n_run ? n_run : 1, sizeof *wnll))) {
        fprintf(stderr, "mend %s: out of memory\n", CMD);
        goto out;
    }
    o.window_nll = wnll;
    printf("model:    %s\n", path);
    printf("text:     %s (%zu bytes%s, %zu tokens)\n", text_path, len, hf_lines ? " after the row join" : "",
           n_ids);
    printf("protocol: %s, n_ctx %d, %zu of %zu windows, %d scored per window (positions %d..%d), BOS %s\n",
           o.protocol == MEND_PPL_GPTQ ? "gptq" : "llamacpp", o.n_ctx, n_run, n_max, o.n_ctx - 1 - first, first,
           o.n_ctx - 2, o.bos >= 0 ? "at each window start" : "none");
    if (prompt) printf("prompt:   %s (%d virtual tokens before every window)\n", prompt_dir, n_virtual);
    fflush(stdout);

    progress_ctx pc;
    cli_progress_start(&pc.bar, "ppl", "window", (int64_t)n_run, 8);
    mend_ppl_result r;
    int prc;
    rows = json_array();
    if (!rows) {
        fprintf(stderr, "mend %s: out of memory\n", CMD);
        goto out;
    }
    if (bank_dir) {
        if ((rc = cli_idp_open(&idp, CMD, m, path, bank_dir, select, sel_layers, (int)sel_tokens, per_prompt))) {
            cli_progress_end(&pc.bar);
            goto out;
        }
        rc = CLI_EXIT_ERROR;
        mend_idp_ppl_report rep;
        prc = mend_idp_perplexity(idp, ids, n_ids, &o, (int)sel_tokens, on_window, &pc, &r, &rep);
        int printed = prc ? 0 : print_idp_report(&rep, rows);
        mend_idp_ppl_report_free(&rep);
        if (printed) {
            cli_progress_end(&pc.bar);
            goto out;
        }
    } else {
        prc = prompt ? mend_perplexity_prompt(m, prompt, n_virtual, ids, n_ids, &o, on_window, &pc, &r)
                     : mend_perplexity(m, ids, n_ids, &o, on_window, &pc, &r);
    }
    cli_progress_end(&pc.bar);
    if (prc) {
        rc = cli_fail(CMD, "perplexity");
        goto out;
    }
    double el = mend_now() - t1;
    printf("windows:  %d, scored tokens %lld, mean nll %.6f, %.1f s (%.1f tokens/s evaluated)\n", r.n_chunks,
           (long long)r.n_scored, r.nll_sum / (double)r.n_scored, el,
           el > 0 ? (double)r.n_chunks * r.n_ctx / el : 0.0);
    printf("PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
    if (json_path && write_json(json_path, path, text_path, &o, &r, el, prompt_dir, bank_dir, rows)) {
        rc = cli_fail(CMD, json_path);
        goto out;
    }
    rc = 0;
out:
    json_decref(rows);
    free(wnll);
    mend_idp_close(idp);
    if (m) mend_model_free(m);
    free(prompt);
    free(ids);
    free(joined);
    free(text);
    return rc;
}
