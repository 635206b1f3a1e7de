/* The public API (include/mend.h and the headers under mend/) driven as a client does: this
 * file is compiled with include/ only on its include path. On the tiny
 * llama fixture (tests/fixtures/hf/llama.gguf) and a few examples of the
 * shared task files:
 *   - compress (RTN) with a progress callback, and one it cancels;
 *   - tune a prompt whose progress callback cancels at step 2, then resume
 *     it to the end; the adapter reads back;
 *   - build a bank of two prompts, write, read and load it;
 *   - selectors pick a prompt per input, equal to the argmax of their scores;
 *   - evaluate examples with a prompt and through IDP over the bank, and
 *     whole tasks as `mend eval` does (mend_eval_run), with a callback
 *     that stops them;
 *   - perplexity plain, with a prompt and with the bank;
 *   - bad arguments fail with a status and a sentence. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mend.h"
#include "test.h"

static const char *CORPUS =
    "The quick brown fox jumps over the lazy dog near the river bank.\n\n"
    "A compressed model loses some accuracy, and a soft prompt trained through it can repair part of it.\n\n"
    "Soft prompts are a few learned vectors placed before the text of every input.\n\n"
    "The river runs past the old mill, where the miller grinds the wheat every morning.\n\n"
    "Prompt banks hold one prompt per domain, and a selector picks one for each input.\n\n"
    "The lazy dog sleeps in the sun while the fox runs across the field again and again.\n\n";

typedef struct counter {
    int calls, stop_at;
    double last_loss;
} counter;

static int on_compress(void *user, const mend_compress_event *ev) {
    counter *c = user;
    c->calls++;
    return c->stop_at > 0 && c->calls >= c->stop_at;
}

static int on_tune(void *user, const mend_tune_progress *p) {
    counter *c = user;
    c->calls++;
    c->last_loss = p->loss;
    return c->stop_at > 0 && p->step >= c->stop_at;
}

static char *path2(const char *a, const char *b) { return mend_path_join(a, b); }

static void test_compress(const char *src, const char *root) {
    char *out = path2(root, "tiny_q8.gguf");
    mend_compress_opts o;
    mend_compress_opts_init(&o);
    CHECK(o.method == MEND_COMPRESS_RTN && o.embd_type == MEND_EMBD_KEEP);
    CHECK_OK(mend_qfmt_parse(&o.fmt, "q8_0"));
    counter c = {0};
    o.progress = on_compress;
    o.progress_user = &c;
    mend_compress_result res;
    CHECK_OK(mend_compress(src, out, &o, &res));
    CHECK(res.n_quantized > 0 && res.file_bytes > 0);
    CHECK(c.calls > 0);
    mend_model *q = NULL;
    CHECK_OK(mend_model_load(&q, out, NULL));
    mend_model_free(q);
    /* cancelled by the callback at its first event */
    char *out2 = path2(root, "tiny_cancel.gguf");
    counter stop = {.stop_at = 1};
    o.progress_user = &stop;
    CHECK_ERR(mend_compress(src, out2, &o, &res), MEND_EINVAL, "stopped");
    CHECK(stop.calls == 1);
    CHECK(!mend_file_exists(out2));
    /* a bad format name */
    mend_qfmt f;
    CHECK_ERR(mend_qfmt_parse(&f, "q9_9"), MEND_EINVAL, "q9_9");
    free(out);
    free(out2);
}

static void tune_opts(mend_tune_opts *o, const char *dir, uint64_t seed) {
    mend_tune_opts_default(o);
    o->n_virtual = 3;
    o->seqlen = 16;
    o->batch = 2;
    o->steps = 4;
    o->lr = 0.05;
    o->val_frac = 0.2;
    o->val_seqs = 2;
    o->ckpt_every = 1;
    o->seed = seed;
    o->out_dir = dir;
}

static void test_tune(const mend_model *m, const char *dir, int dim) {
    const char *texts[1] = {CORPUS};
    size_t len = strlen(CORPUS);
    mend_tune_opts o;
    tune_opts(&o, dir, 5);
    counter c = {.stop_at = 2};
    mend_tune_result res;
    CHECK_ERR(mend_tune_run(m, NULL, texts, &len, 1, &o, NULL, on_tune, &c, &res), MEND_EINVAL, NULL);
    CHECK(c.calls >= 2);
    /* resume from the step-2 checkpoint to the end */
    o.resume = 1;
    counter all = {0};
    CHECK_OK(mend_tune_run(m, NULL, texts, &len, 1, &o, NULL, on_tune, &all, &res));
    CHECK(res.steps_done == 4);
    CHECK(all.calls >= 2 && all.calls <= 4);   /* steps 3 and 4 (and validations) only */
    CHECK(isfinite(res.best_val));
    float *emb = NULL;
    int nv = 0;
    CHECK_OK(mend_adapter_read(dir, dim, &emb, &nv));
    CHECK(nv == 3 && emb != NULL);
    free(emb);
    CHECK_ERR(mend_adapter_read(dir, dim + 1, &emb, &nv), MEND_EINVAL, "adapter_config.json");
    mend_tune_record rec;
    int found = 0;
    CHECK_OK(mend_tune_read_record(dir, &rec, &found));
    CHECK(found && rec.steps == 4 && rec.train_tokens == 4 * 2 * 16);
}

static void test_bank(const mend_model *m, const char *bank_dir, int dim, int n_layers) {
    mend_bank *b = NULL;
    mend_fp fp;
    CHECK_OK(mend_model_fingerprint(m, &fp));
    CHECK_OK(mend_bank_new(&b, dim, 3, "tiny", &fp, 0, n_layers));
    if (!b) return;
    CHECK(mend_bank_add_prompt(b, "fox", NULL, "animals", NULL, 4, 1.0, NULL) == 0);
    CHECK(mend_bank_add_prompt(b, "mill", NULL, "rivers", NULL, 4, 1.0, NULL) == 1);
    CHECK_ERR(mend_bank_add_prompt(b, "fox", NULL, NULL, NULL, 4, 1.0, NULL), MEND_EINVAL, "fox");
    CHECK_ERR(mend_bank_add_prompt(b, "bad name!", NULL, NULL, NULL, 4, 1.0, NULL), MEND_EINVAL, "bad name!");
    CHECK_OK(mend_bank_write(bank_dir, b));
    mend_bank_free(b);
    b = NULL;
    CHECK_OK(mend_bank_read(bank_dir, &b));
    if (!b) return;
    mend_bank_info bi;
    mend_bank_get_info(b, &bi);
    CHECK(bi.n_prompts == 2 && bi.nv == 3 && bi.dim == dim);
    CHECK(mend_fp_compare(&fp, &bi.trained_on) == MEND_FP_SAME);
    CHECK(mend_bank_find(b, "mill") == 1 && mend_bank_find(b, "none") == -1);
    CHECK_OK(mend_bank_load_prompts(b, dim));
    mend_bank_prompt_info pi;
    CHECK_OK(mend_bank_get_prompt(b, 1, &pi));
    CHECK(pi.emb != NULL && !strcmp(pi.domain, "rivers"));
    CHECK_ERR(mend_bank_get_prompt(b, 2, &pi), MEND_ERANGE, NULL);
    CHECK_ERR(mend_bank_load_prompts(b, dim + 1), MEND_EINVAL, "bank.json");
    mend_bank_free(b);
}

/* mend_eval_run's lines, kept; stop_at > 0 stops at that line (positive
 * return), fail_at at that one with a reason of its own. */
typedef struct lines {
    char text[8][4096];
    size_t index[8];
    int n, stop_at, fail_at;
} lines;

static int on_line(void *user, const mend_eval_line *l) {
    lines *c = user;
    if (c->n < 8) {
        snprintf(c->text[c->n], sizeof c->text[c->n], "%s", l->line);
        c->index[c->n] = l->index;
    }
    c->n++;
    if (c->fail_at > 0 && c->n >= c->fail_at) return mend_set_error(MEND_EIO, "disk full at line %d", c->n);
    return c->stop_at > 0 && c->n >= c->stop_at;
}

static int argmax(const float *x, int n) {
    int k = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[k]) k = i;
    return k;
}

static void test_select(const mend_model *m, const char *bank_dir, int dim) {
    mend_bank *b = NULL;
    CHECK_OK(mend_bank_read(bank_dir, &b));
    if (!b) return;
    CHECK_OK(mend_bank_load_prompts(b, dim));
    const mend_tokenizer *tok = mend_model_tokenizer(m);
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(mend_tokenize(tok, "The fox runs across the field.", 30, 0, 0, &ids, &n));
    static const char *const kinds[] = {"attention", "loss", "fixed:mill", "none"};
    for (int i = 0; i < 4; i++) {
        mend_select_spec sp;
        CHECK_OK(mend_select_parse(kinds[i], b, &sp));
        mend_selector *s = NULL;
        CHECK_OK(mend_selector_new(&s, m, b, &sp));
        if (!s) continue;
        int choice = -3;
        float sc[2];
        CHECK_OK(mend_selector_pick(s, ids, (int)n, &choice, sc));
        if (i < 2) CHECK_MSG(choice == argmax(sc, 2), "%s picked %d", kinds[i], choice);
        if (i == 2) CHECK(choice == 1);
        if (i == 3) CHECK(choice == -1);
        mend_selector_free(s);
    }
    mend_select_spec sp;
    CHECK_ERR(mend_select_parse("fixed:nope", b, &sp), MEND_EINVAL, "nope");
    CHECK_ERR(mend_select_parse("psychic", b, &sp), MEND_EINVAL, "psychic");
    free(ids);
    mend_bank_free(b);
}

static void test_eval(const mend_model *m, const char *prompt_dir, const char *bank_dir, int dim) {
    mend_task *t = NULL;
    CHECK_OK(mend_task_load(&t, test_data("tasks/arc_easy.jsonl"), 4));
    if (!t) return;
    mend_task_info ti;
    mend_task_get_info(t, &ti);
    CHECK(ti.n == 4 && ti.kind == MEND_TASK_MC && !strcmp(ti.name, "arc_easy"));
    CHECK(mend_task_example_line(t, 0) >= 1 && mend_task_example_line(t, 4) == 0);
    float *emb = NULL;
    int nv = 0;
    CHECK_OK(mend_adapter_read(prompt_dir, dim, &emb, &nv));
    mend_eval_backend *be = NULL;
    CHECK_OK(mend_eval_backend_model(&be, m, emb, nv, 0, 0));
    mend_eval_result r[4];
    size_t idx[4] = {0, 1, 2, 3};
    mend_eval_stats st = {0};
    CHECK_OK(mend_eval_examples(be, t, idx, 4, r, &st));
    for (int q = 0; q < 4; q++) {
        CHECK(r[q].n >= 2 && (r[q].acc == 0 || r[q].acc == 1));
        char *line = NULL;
        CHECK_OK(mend_result_json(t, (size_t)q, &r[q], "tiny", "p", &line));
        CHECK(line && strstr(line, "\"arc_easy\""));
        free(line);
    }
    /* a whole task as mend eval runs it: the lines of the examples asked
     * for, in their order, equal to the ones built above from one group */
    char *want[4];
    for (int q = 0; q < 4; q++) CHECK_OK(mend_result_json(t, (size_t)q, &r[q], "tiny", "p", &want[q]));
    lines got = {0};
    CHECK_OK(mend_eval_run(be, NULL, t, idx, 4, "tiny", "p", on_line, &got, NULL));
    CHECK(got.n == 4);
    for (int q = 0; q < 4 && got.n == 4; q++) CHECK_MSG(!strcmp(got.text[q], want[q]), "line %d differs", q);
    for (int q = 0; q < 4; q++) free(want[q]);
    size_t odd[2] = {3, 1};
    lines some = {0};
    CHECK_OK(mend_eval_run(be, NULL, t, odd, 2, "tiny", NULL, on_line, &some, NULL));
    CHECK(some.n == 2 && some.index[0] == 3 && some.index[1] == 1 && strstr(some.text[0], "\"index\":3"));
    lines stop = {.stop_at = 2}, fail = {.fail_at = 1};
    CHECK_ERR(mend_eval_run(be, NULL, t, idx, 4, "tiny", "p", on_line, &stop, NULL), MEND_EINVAL, "stopped");
    CHECK(stop.n == 2);
    CHECK_ERR(mend_eval_run(be, NULL, t, idx, 4, "tiny", "p", on_line, &fail, NULL), MEND_EIO, "disk full");
    CHECK_ERR(mend_eval_run(NULL, NULL, t, idx, 4, "tiny", "p", on_line, &got, NULL), MEND_EINVAL, "scorer");
    /* the same examples one by one give the same log-likelihoods */
    mend_eval_result one;
    CHECK_OK(mend_eval_example(be, t, 2, &one, NULL));
    CHECK_NEAR(one.ll[0], r[2].ll[0], 1e-3);
    mend_eval_result_free(&one);
    for (int q = 0; q < 4; q++) mend_eval_result_free(&r[q]);
    /* through the bank: the fixed selector gives prompt "fox", the same as a
     * backend with that prompt */
    mend_idp *x = NULL;
    CHECK_OK(mend_idp_open(&x, m, bank_dir));
    if (x) {
        mend_select_spec sp;
        CHECK_ERR(mend_idp_start(x, 0), MEND_EINVAL, "selector");
        CHECK_OK(mend_select_parse("fixed:fox", mend_idp_bank(x), &sp));
        CHECK_OK(mend_idp_add_selector(x, "fixed:fox", &sp));
        CHECK_OK(mend_select_parse("attention", mend_idp_bank(x), &sp));
        CHECK_OK(mend_idp_add_selector(x, "attention", &sp));
        CHECK_ERR(mend_idp_eval_setup(x, 0, 0), MEND_EINVAL, "mend_idp_start");
        CHECK_OK(mend_idp_start(x, 0));
        CHECK_OK(mend_idp_eval_setup(x, 0, 0));
        CHECK(mend_idp_can_batch(x));
        mend_bank_prompt_info pi;
        CHECK_OK(mend_bank_get_prompt(mend_idp_bank(x), 0, &pi));
        mend_eval_backend *bf = NULL;
        CHECK_OK(mend_eval_backend_model(&bf, m, pi.emb, 3, 0, 0));
        mend_eval_backend_set_window(bf, mend_idp_eval_window(x));
        CHECK_OK(mend_idp_eval_examples(x, t, idx, 4, r, NULL));
        for (int q = 0; q < 4; q++) {
            CHECK_OK(mend_eval_example(bf, t, idx[q], &one, NULL));
            CHECK_NEAR(one.ll[0], r[q].ll[0], 1e-3);
            mend_eval_result_free(&one);
            char *line = NULL;
            CHECK_OK(mend_result_json(t, idx[q], &r[q], "tiny", mend_idp_label(x), &line));
            CHECK_OK(mend_idp_annotate_batch(x, q, &line));
            CHECK(line && strstr(line, "\"choice\":\"fox\"") && strstr(line, "\"attention\""));
            free(line);
            mend_eval_result_free(&r[q]);
        }
        lines banked = {0};
        CHECK_OK(mend_eval_run(NULL, x, t, idx, 4, "tiny", mend_idp_label(x), on_line, &banked, NULL));
        CHECK(banked.n == 4 && strstr(banked.text[3], "\"choice\":\"fox\""));
        char *summary = NULL;
        CHECK_OK(mend_idp_summary(x, &summary));
        CHECK(summary && strstr(summary, "| arc_easy | 8 |"));
        free(summary);
        mend_eval_backend_free(bf);
        mend_idp_close(x);
    }
    CHECK_ERR(mend_idp_open(&x, m, "/nonexistent/bank"), MEND_EIO, "/nonexistent/bank");
    mend_eval_backend_free(be);
    free(emb);
    mend_task_free(t);
    CHECK_ERR(mend_task_load(&t, "/nonexistent/task.jsonl", 0), MEND_EIO, "/nonexistent/task.jsonl");
}

static int on_window(void *user, int done, int total, double ppl) {
    counter *c = user;
    c->calls++;
    return c->stop_at > 0 && done >= c->stop_at;
}

static void test_ppl(const mend_model *m, const char *prompt_dir, const char *bank_dir, int dim) {
    const mend_tokenizer *tok = mend_model_tokenizer(m);
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(mend_tokenize(tok, CORPUS, strlen(CORPUS), 0, 0, &ids, &n));
    mend_ppl_opts o = {.protocol = MEND_PPL_GPTQ, .n_ctx = 16};
    mend_ppl_result plain, with, bank;
    counter c = {0};
    CHECK_OK(mend_perplexity(m, ids, n, &o, on_window, &c, &plain));
    CHECK(plain.n_chunks == (int)(n / 16) && c.calls == plain.n_chunks && isfinite(plain.ppl));
    float *emb = NULL;
    int nv = 0;
    CHECK_OK(mend_adapter_read(prompt_dir, dim, &emb, &nv));
    CHECK_OK(mend_perplexity_prompt(m, emb, nv, ids, n, &o, NULL, NULL, &with));
    CHECK(with.n_scored == plain.n_scored && with.ppl != plain.ppl);
    /* the bank with "none" as the first selector gives the plain numbers,
     * and its per-prompt rows hold the prompt's */
    mend_idp *x = NULL;
    CHECK_OK(mend_idp_open(&x, m, bank_dir));
    if (x) {
        mend_select_spec sp;
        CHECK_OK(mend_select_parse("none", mend_idp_bank(x), &sp));
        CHECK_OK(mend_idp_add_selector(x, "none", &sp));
        CHECK_OK(mend_idp_start(x, 1));
        mend_idp_ppl_report rep;
        CHECK_OK(mend_idp_perplexity(x, ids, n, &o, 8, NULL, NULL, &bank, &rep));
        CHECK_NEAR(bank.ppl, plain.ppl, 1e-4 * plain.ppl);
        CHECK(rep.text && strstr(rep.text, "| no prompt |"));
        CHECK(rep.n_rows == 2 + 2 + 1);   /* none, fox, mill, IDP none, oracle */
        if (rep.n_rows == 5) {
            CHECK(!strcmp(rep.rows[0].name, "no prompt"));
            CHECK_NEAR(rep.rows[0].ppl, plain.ppl, 1e-4 * plain.ppl);
            CHECK(rep.rows[4].ppl <= rep.rows[1].ppl + 1e-9 && rep.rows[4].ppl <= rep.rows[2].ppl + 1e-9);
        }
        mend_idp_ppl_report_free(&rep);
        counter stop = {.stop_at = 1};
        CHECK_ERR(mend_idp_perplexity(x, ids, n, &o, 8, on_window, &stop, &bank, NULL), MEND_EINVAL, NULL);
        mend_idp_close(x);
    }
    mend_ppl_opts bad = {.protocol = 7};
    CHECK_ERR(mend_perplexity(m, ids, n, &bad, NULL, NULL, &plain), MEND_EINVAL, "protocol");
    free(emb);
    free(ids);
}

int main(void) {
    mend_set_threads(1);   /* a tiny model: threads would only wait for each other on a busy machine */
    const char *src = test_src("tests/fixtures/hf/llama.gguf");
    char tmpl[] = "/tmp/mend_api_XXXXXX";
    char *root = mkdtemp(tmpl);
    CHECK(root != NULL);
    if (!root) return test_finish();
    test_compress(src, root);
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, src, &lo));
    if (!m) return test_finish();
    mend_model_info info;
    mend_model_get_info(m, &info);
    char *bank_dir = path2(root, "bank");
    char *fox = path2(bank_dir, "fox"), *mill = path2(bank_dir, "mill");
    test_tune(m, fox, info.dim);
    mend_tune_opts o;
    tune_opts(&o, mill, 11);
    const char *texts[1] = {CORPUS};
    size_t len = strlen(CORPUS);
    mend_tune_result res;
    CHECK_OK(mend_tune_run(m, NULL, texts, &len, 1, &o, NULL, NULL, NULL, &res));
    test_bank(m, bank_dir, info.dim, info.n_layers);
    test_select(m, bank_dir, info.dim);
    test_eval(m, fox, bank_dir, info.dim);
    test_ppl(m, fox, bank_dir, info.dim);
    mend_model *none = NULL;   /* a failed load sets its handle to NULL: not the one in use */
    CHECK_ERR(mend_model_load(&none, "/nonexistent/model.gguf", NULL), MEND_EIO, "/nonexistent/model.gguf");
    CHECK(none == NULL);
    mend_model_free(m);
    free(fox);
    free(mill);
    free(bank_dir);
    return test_finish();
}
