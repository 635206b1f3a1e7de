/* mend ppl as a library call (include/mend/jobs.h): the perplexity of a text
 * file under one of two published protocols (docs/ppl.md), behind a soft
 * prompt or a prompt bank, with the running perplexity of every window as a
 * progress item and the result written as JSON (atomically). */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "jobs_int.h"

void mend_ppl_job_init(mend_ppl_job *j) {
    memset(j, 0, sizeof *j);
    j->protocol = MEND_PPL_GPTQ;
}

static int check_job(const mend_ppl_job *j) {
    if (!j) return mend_set_error(MEND_EINVAL, "ppl job: no job given (NULL)");
    if (!j->model || !*j->model) return mend_set_error(MEND_EINVAL, "ppl job: model: no model path given");
    if (!j->text || !*j->text) return mend_set_error(MEND_EINVAL, "ppl job: text: no text file given");
    if (j->protocol != MEND_PPL_GPTQ && j->protocol != MEND_PPL_LLAMACPP)
        return mend_set_error(MEND_EINVAL, "ppl job: protocol %d is neither MEND_PPL_GPTQ nor MEND_PPL_LLAMACPP",
                              j->protocol);
    if (j->hf_lines && j->protocol != MEND_PPL_GPTQ)
        return mend_set_error(MEND_EINVAL, "ppl job: hf_lines applies to the gptq protocol only");
    if (j->ctx != 0 && (j->ctx < 4 || j->ctx > MEND_PPL_MAX_CTX))
        return mend_set_error(MEND_EINVAL, "ppl job: ctx %d is out of range (0 for the protocol's, or 4 to %d)",
                              j->ctx, MEND_PPL_MAX_CTX);
    if (j->chunks < 0) return mend_set_error(MEND_EINVAL, "ppl job: chunks %d is negative (0 for all)", j->chunks);
    if (j->batch != 0 && (j->batch < 1 || j->batch > MEND_PPL_MAX_CTX))
        return mend_set_error(MEND_EINVAL, "ppl job: batch %d is out of range (0 for the default, or 1 to %d)",
                              j->batch, MEND_PPL_MAX_CTX);
    if (j->select_tokens < 0 || j->select_tokens > MEND_PPL_MAX_CTX)
        return mend_set_error(MEND_EINVAL, "ppl job: select_tokens %d is out of range (0 for 128, or 1 to %d)",
                              j->select_tokens, MEND_PPL_MAX_CTX);
    if (j->prompt && j->bank) return mend_set_error(MEND_EINVAL, "ppl job: prompt and bank: give one, not both");
    if ((j->select || j->select_layers || j->per_prompt) && !j->bank)
        return mend_set_error(MEND_EINVAL, "ppl job: select, select_layers and per_prompt need bank");
    return 0;
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

typedef struct window_ctx {
    mend_event_fn fn;
    void *user;
    int stopped;
} window_ctx;

/* Each window's running perplexity, "[i]ppl," as llama.cpp prints it. */
static int on_window(void *user, int done, int total, double running) {
    (void)total;
    window_ctx *w = user;
    char item[64];
    snprintf(item, sizeof item, "[%d]%.4f,", done, running);
    if (job_progress(w->fn, w->user, done, item)) {
        w->stopped = 1;
        return 1;
    }
    return 0;
}

/* The result as one JSON object, written atomically:
 * {model, text, protocol, n_ctx, windows, scored, ppl, stderr, seconds,
 *  tokens_per_s (window tokens evaluated per second, selection included),
 *  window_nll (the mean nll of each window, in text order: what a paired
 *  comparison of two runs on the same windows needs), prompt?, bank?,
 *  rows?: [{row, ppl, stderr}]} (rows with a bank and per_prompt). */
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

/* The bank's rows appended to the JSON array rows as {row, ppl, stderr}. */
static int add_rows(const mend_idp_ppl_report *rep, json_t *rows) {
    for (int i = 0; i < rep->n_rows; i++) {
        const mend_idp_ppl_row *w = &rep->rows[i];
        json_t *o = json_pack("{s:s, s:f, s:f}", "row", w->name, "ppl", w->ppl, "stderr", w->err);
        if (!o || json_array_append_new(rows, o)) return mend_set_error(MEND_ENOMEM, "out of memory");
    }
    return 0;
}

int mend_ppl_job_run(const mend_ppl_job *j, mend_event_fn fn, void *user) {
    int rc = check_job(j);
    if (rc) return rc;
    const char *path = j->model, *text_path = j->text;
    const int protocol = j->protocol, sel_tokens = j->select_tokens > 0 ? j->select_tokens : 128;
    char *text = NULL, *joined = NULL;
    int32_t *ids = NULL;
    size_t len = 0, n_ids = 0;
    mend_model *m = NULL;
    mend_idp *idp = NULL;
    float *prompt = NULL;
    double *wnll = NULL;   /* each window's mean nll, for the JSON */
    json_t *rows = NULL;
    int n_virtual = 0, progress = 0;

    if ((rc = mend_read_file(text_path, (size_t)4 << 30, &text, &len))) {
        mend_error_prefix(rc, "%s", text_path);
        goto out;
    }
    const char *t = text;
    if (protocol == MEND_PPL_LLAMACPP && len > 0 && text[len - 1] == '\n') len--;   /* as llama.cpp's -f */
    if (j->hf_lines) {
        if (!(joined = hf_join_lines(text, len, &len))) {
            rc = mend_set_error(MEND_ENOMEM, "out of memory");
            goto out;
        }
        t = joined;
    }
    mend_load_opts lo = {.keep_packed = !j->f32, .no_repack = j->no_repack};
    if ((rc = mend_model_load(&m, path, &lo))) {
        mend_error_prefix(rc, "%s", path);
        goto out;
    }
    if (j->prompt && (rc = mend_prompt_read_checked(m, path, j->prompt, &prompt, &n_virtual, fn, user))) {
        mend_error_prefix(rc, "%s", j->prompt);
        goto out;
    }
    const mend_tokenizer *tok = mend_model_tokenizer(m);
    double t0 = mend_now();
    if ((rc = mend_tokenize(tok, t, len, protocol == MEND_PPL_LLAMACPP, 0, &ids, &n_ids))) {
        mend_error_prefix(rc, "tokenize");
        goto out;
    }
    double t1 = mend_now();
    if (job_emit(fn, user, MEND_EV_NOTE, "tokenized %zu bytes into %zu tokens in %.2f s", len, n_ids, t1 - t0)) {
        rc = job_cancelled("ppl");
        goto out;
    }

    mend_ppl_opts in = {.protocol = protocol, .n_ctx = j->ctx, .n_chunks = j->chunks, .n_batch = j->batch,
                        .bos = -1};
    if (protocol == MEND_PPL_LLAMACPP && mend_tokenizer_add_bos(tok)) in.bos = mend_token_bos(tok);
    mend_ppl_opts o;
    if ((rc = mend_ppl_resolve_opts(&in, &o))) {
        mend_error_prefix(rc, "options");
        goto out;
    }
    size_t n_max = n_ids / (size_t)o.n_ctx;
    size_t n_run = o.n_chunks > 0 && (size_t)o.n_chunks < n_max ? (size_t)o.n_chunks : n_max;
    int first = mend_ppl_first(o.protocol, o.n_ctx);
    if (!(wnll = calloc(n_run ? n_run : 1, sizeof *wnll)) || !(rows = json_array())) {
        rc = mend_set_error(MEND_ENOMEM, "out of memory");
        goto out;
    }
    o.window_nll = wnll;
    int stop = job_emit(fn, user, MEND_EV_TEXT, "model:    %s\n", path);
    stop = stop || job_emit(fn, user, MEND_EV_TEXT, "text:     %s (%zu bytes%s, %zu tokens)\n", text_path, len,
                            j->hf_lines ? " after the row join" : "", n_ids);
    stop = stop || job_emit(fn, user, MEND_EV_TEXT, "protocol: %s, n_ctx %d, %zu of %zu windows, %d scored per window "
                            "(positions %d..%d), BOS %s\n", o.protocol == MEND_PPL_GPTQ ? "gptq" : "llamacpp",
                            o.n_ctx, n_run, n_max, o.n_ctx - 1 - first, first, o.n_ctx - 2,
                            o.bos >= 0 ? "at each window start" : "none");
    if (prompt)
        stop = stop || job_emit(fn, user, MEND_EV_TEXT, "prompt:   %s (%d virtual tokens before every window)\n",
                                j->prompt, n_virtual);
    if (stop || job_progress_start(fn, user, "ppl", "window", (int64_t)n_run, 8)) {
        rc = job_cancelled("ppl");
        goto out;
    }
    progress = 1;
    window_ctx wc = {.fn = fn, .user = user};
    mend_ppl_result r;
    if (j->bank) {
        rc = mend_idp_open_checked(&idp, m, path, j->bank, j->select, j->select_layers, sel_tokens, j->per_prompt, fn,
                                   user);
        if (rc) {
            /* a bad selector keeps its "--select: ..." error, a usage error */
            if (rc != MEND_EINVAL || strncmp(mend_last_error(), "--select", 8)) mend_error_prefix(rc, "%s", j->bank);
            goto out;
        }
        mend_idp_ppl_report rep;
        rc = mend_idp_perplexity(idp, ids, n_ids, &o, sel_tokens, on_window, &wc, &r, &rep);
        if (!rc) {
            stop = job_emit(fn, user, MEND_EV_TEXT, "%s", rep.text);
            rc = stop ? job_cancelled("ppl") : add_rows(&rep, rows);
            if (rc) {
                mend_idp_ppl_report_free(&rep);
                goto out;
            }
        }
        mend_idp_ppl_report_free(&rep);
    } else {
        rc = prompt ? mend_perplexity_prompt(m, prompt, n_virtual, ids, n_ids, &o, on_window, &wc, &r)
                    : mend_perplexity(m, ids, n_ids, &o, on_window, &wc, &r);
    }
    progress = 0;
    stop = job_progress_end(fn, user);
    if (rc) {
        if (wc.stopped) rc = job_cancelled("ppl");
        else mend_error_prefix(rc, "perplexity");
        goto out;
    }
    double el = mend_now() - t1;
    stop = stop || job_emit(fn, user, MEND_EV_TEXT, "windows:  %d, scored tokens %lld, mean nll %.6f, %.1f s (%.1f "
                            "tokens/s evaluated)\n", r.n_chunks, (long long)r.n_scored,
                            r.nll_sum / (double)r.n_scored, el, el > 0 ? (double)r.n_chunks * r.n_ctx / el : 0.0);
    stop = stop || job_emit(fn, user, MEND_EV_TEXT, "PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_err);
    if (stop) {
        rc = job_cancelled("ppl");
        goto out;
    }
    if (j->json && (rc = write_json(j->json, path, text_path, &o, &r, el, j->prompt, j->bank, rows))) {
        mend_error_prefix(rc, "%s", j->json);
        goto out;
    }
out:
    if (progress) job_progress_end(fn, user);
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
