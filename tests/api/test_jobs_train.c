/* The training jobs (mend/jobs.h) on the tiny llama fixture, through the
 * public API only:
 *   - a tune job writes the adapter mend_tune_run writes with the same
 *     options, bit for bit, and reports its summary as text;
 *   - a handler returning nonzero stops a tune job (MEND_EINVAL "stopped")
 *     and the job resumed from its checkpoint ends with the same adapter;
 *   - a bank build stopped in its second domain resumes: the finished
 *     prompt is skipped, the partial one continues, and both equal an
 *     uninterrupted build's;
 *   - bad fields are refused by name before anything is read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

#define TINY "tests/fixtures/hf/llama.gguf"

static void write_corpus(const char *path, int digits, unsigned seed) {
    static const char *w[] = {"the", "model", "is", "repaired", "with", "soft", "prompts", "after", "it", "has",
                              "been", "compressed", "and", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"};
    FILE *f = fopen(path, "wb");
    for (int p = 0; f && p < 60; p++) {
        for (int i = 0; i < 24; i++) {
            seed = seed * 1103515245u + 12345u;
            if (digits) fprintf(f, "%s%u", i ? " " : "", (seed >> 8) % 1000);
            else fprintf(f, "%s%s", i ? " " : "", w[(seed >> 8) % 20]);
        }
        fprintf(f, ".\n\n");
    }
    if (f) fclose(f);
}

static char *pj(const char *dir, const char *name) {
    static char buf[8][1024];
    static int k = 0;
    k = (k + 1) & 7;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t la = 0, lb = 0;
    int same = !mend_read_file(a, 1 << 26, &x, &la) && !mend_read_file(b, 1 << 26, &y, &lb) && la == lb &&
               memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

/* What a handler saw, and when it stops the job. */
typedef struct seen {
    int text, notes, warnings, starts, updates, ends;
    int skipped, done_notes;        /* bank build's "adapter present" and "done:" notes */
    char label[128];                /* the running counter's */
    char report[8192];              /* the TEXT events, concatenated */
    const char *stop_label;         /* stop at the first update of a counter with this label ... */
    int stop_at;                    /* ... once it has done this many (0: never stop) */
    int b_started;                  /* a counter labelled "[2/2 b]" started */
    long long total, first_done;    /* the total and first update of the last counter */
    int updated;                    /* (of "[2/2 b]" once that started) */
} seen;

static int handler(void *user, const mend_event *ev) {
    seen *s = user;
    switch (ev->kind) {
    case MEND_EV_TEXT:
        s->text++;
        strncat(s->report, ev->text, sizeof s->report - strlen(s->report) - 1);
        break;
    case MEND_EV_NOTE:
        s->notes++;
        if (strstr(ev->text, "adapter present")) s->skipped++;
        if (strstr(ev->text, " done: ")) s->done_notes++;
        CHECK_MSG(!strchr(ev->text, '\n') && strncmp(ev->text, "mend ", 5), "a note is one sentence: %s", ev->text);
        break;
    case MEND_EV_WARNING: s->warnings++; break;
    case MEND_EV_PROGRESS_START:
        s->starts++;
        snprintf(s->label, sizeof s->label, "%s", ev->label ? ev->label : "");
        if (!strcmp(s->label, "[2/2 b]")) s->b_started = 1;
        if (!s->b_started || !strcmp(s->label, "[2/2 b]")) s->total = ev->total, s->updated = 0;
        break;
    case MEND_EV_PROGRESS:
        s->updates++;
        if (!s->updated && (!s->b_started || !strcmp(s->label, "[2/2 b]"))) s->first_done = ev->done, s->updated = 1;
        if (s->stop_at > 0 && ev->done >= s->stop_at && (!s->stop_label || !strcmp(s->label, s->stop_label)))
            return 1;
        break;
    case MEND_EV_PROGRESS_END: s->ends++; break;
    default: break;
    }
    return 0;
}

static void tune_opts(mend_tune_opts *o, const char *out) {
    mend_tune_opts_default(o);
    o->n_virtual = 3;
    o->seqlen = 24;
    o->batch = 2;
    o->steps = 6;
    o->lr = 0.05;
    o->eval_every = 2;
    o->ckpt_every = 2;
    o->val_frac = 0.2;
    o->val_seqs = 4;
    o->seed = 99;
    o->out_dir = out;
    o->base_model = "llama.gguf";
}

static void bank_job(mend_bank_job *j, const char *out, const char *const *names, const char *const *corpora) {
    mend_bank_job_init(j);
    j->model = test_src(TINY);
    j->names = names;
    j->corpora = corpora;
    j->n_domains = 2;
    j->out = out;
    j->no_distill = 1;
    j->steps = 6;
    j->seqlen = 24;
    j->n_virtual = 3;
    j->eval_every = 2;
    j->val_seqs = 4;
    j->lr = 0.05;
    j->router_windows = 2;
    j->router_window = 24;
    j->learned_windows = 2;
    j->learned_window = 24;
}

int main(void) {
    char tmpl[] = "/tmp/mend_jobs_train_XXXXXX";
    char *root = mkdtemp(tmpl);
    CHECK(root != NULL);
    if (!root) return test_finish();
    mend_set_threads(1);
    char words[1024], digits[1024];
    snprintf(words, sizeof words, "%s/words.txt", root);
    snprintf(digits, sizeof digits, "%s/digits.txt", root);
    write_corpus(words, 0, 7);
    write_corpus(digits, 1, 11);

    /* ---- a tune job and mend_tune_run with the same options */
    const char *corpora1[1] = {words};
    mend_tune_job tj;
    mend_tune_job_init(&tj);
    tj.model = test_src(TINY);
    tj.corpora = corpora1;
    tj.n_corpora = 1;
    tj.no_distill = 1;
    tj.plot = 0;
    char job_dir[1024], stopped_dir[1024];   /* the jobs borrow their paths */
    snprintf(job_dir, sizeof job_dir, "%s/job", root);
    snprintf(stopped_dir, sizeof stopped_dir, "%s/stopped", root);
    tune_opts(&tj.opts, job_dir);
    seen s1 = {0};
    CHECK_OK(mend_tune_job_run(&tj, handler, &s1));
    CHECK_MSG(strstr(s1.report, "model:     ") && strstr(s1.report, "objective: next-token cross-entropy") &&
                  strstr(s1.report, "adapter:   ") && strstr(s1.report, "(best validation prompt)"),
              "tune report: %s", s1.report);
    CHECK(s1.starts == 1 && s1.ends == 1 && s1.updates == 6 && s1.warnings == 0);
    {
        mend_model *m = NULL;
        mend_load_opts lo = {.keep_packed = 0};
        CHECK_OK(mend_model_load(&m, test_src(TINY), &lo));
        char *text = NULL;
        size_t len = 0;
        CHECK_OK(mend_read_file(words, 1 << 24, &text, &len));
        mend_tune_opts o;
        tune_opts(&o, pj(root, "direct"));
        mend_tune_result r;
        const char *texts[1] = {text};
        if (m && text) CHECK_OK(mend_tune_run(m, NULL, texts, &len, 1, &o, NULL, NULL, NULL, &r));
        free(text);
        if (m) mend_model_free(m);
    }
    CHECK(same_file(pj(root, "job/adapter_model.safetensors"), pj(root, "direct/adapter_model.safetensors")));
    CHECK(same_file(pj(root, "job/adapter_config.json"), pj(root, "direct/adapter_config.json")));
    CHECK(same_file(pj(root, "job/last/adapter_model.safetensors"), pj(root, "direct/last/adapter_model.safetensors")));
    CHECK(same_file(pj(root, "job/train.json"), pj(root, "direct/train.json")));

    /* ---- stopped by the handler after step 3 (checkpoint at step 2), then resumed */
    tune_opts(&tj.opts, stopped_dir);
    seen s2 = {.stop_at = 3};
    CHECK_ERR(mend_tune_job_run(&tj, handler, &s2), MEND_EINVAL, "stopped");
    CHECK(s2.ends == 1);   /* the counter is closed before the job returns */
    CHECK(mend_file_exists(pj(root, "stopped/checkpoint.bin")));
    CHECK(!mend_file_exists(pj(root, "stopped/adapter_model.safetensors")));
    tj.opts.resume = 1;
    seen s3 = {0};
    CHECK_OK(mend_tune_job_run(&tj, handler, &s3));
    CHECK(same_file(pj(root, "job/adapter_model.safetensors"), pj(root, "stopped/adapter_model.safetensors")));
    /* the resumed counter's zero is its first step (3), whose time it did
     * not see: a rate over it would count a step in no time */
    CHECK_MSG(s3.updated && s3.first_done == 0 && s3.total == 3, "resumed counter: first update %lld of %lld",
              s3.first_done, s3.total);
    tj.opts.resume = 0;

    /* ---- a start prompt of the wrong length */
    tune_opts(&tj.opts, pj(root, "init"));
    tj.init_adapter = job_dir;
    tj.tokens_given = 1;
    tj.opts.n_virtual = 5;
    CHECK_ERR(mend_tune_job_run(&tj, NULL, NULL), MEND_EINVAL, "has 3 virtual tokens");
    tj.init_adapter = NULL;
    tj.tokens_given = 0;

    /* ---- bad fields, each named */
    {
        mend_tune_job b = tj;
        tune_opts(&b.opts, pj(root, "bad"));
        b.model = NULL;
        CHECK_ERR(mend_tune_job_run(&b, NULL, NULL), MEND_EINVAL, "model");
        b = tj;
        b.opts.out_dir = NULL;
        CHECK_ERR(mend_tune_job_run(&b, NULL, NULL), MEND_EINVAL, "opts.out_dir");
        b = tj;
        b.n_corpora = 0;
        CHECK_ERR(mend_tune_job_run(&b, NULL, NULL), MEND_EINVAL, "corpora");
        b = tj;
        b.teacher = test_src(TINY);
        CHECK_ERR(mend_tune_job_run(&b, NULL, NULL), MEND_EINVAL, "no_distill");
        b = tj;
        b.opts.steps = 0;
        CHECK_ERR(mend_tune_job_run(&b, NULL, NULL), MEND_EINVAL, "opts.steps");
        CHECK_ERR(mend_tune_job_run(NULL, NULL, NULL), MEND_EINVAL, NULL);
    }
    const char *names[2] = {"a", "b"}, *bcorp[2] = {words, digits};
    {
        mend_bank_job b;
        bank_job(&b, pj(root, "badbank"), names, bcorp);
        const char *bad_names[2] = {"words", "no/slash"};
        b.names = bad_names;
        CHECK_ERR(mend_bank_build_run(&b, NULL, NULL), MEND_EINVAL, "names[1]");
        const char *twice[2] = {"words", "words"};
        b.names = twice;
        CHECK_ERR(mend_bank_build_run(&b, NULL, NULL), MEND_EINVAL, "given twice");
        bank_job(&b, pj(root, "badbank"), names, bcorp);
        b.out = NULL;
        CHECK_ERR(mend_bank_build_run(&b, NULL, NULL), MEND_EINVAL, "out");
        bank_job(&b, pj(root, "badbank"), names, bcorp);
        b.router_window = 1;
        CHECK_ERR(mend_bank_build_run(&b, NULL, NULL), MEND_EINVAL, "router_window");
        bank_job(&b, pj(root, "badbank"), names, bcorp);
        b.n_domains = 0;
        CHECK_ERR(mend_bank_build_run(&b, NULL, NULL), MEND_EINVAL, "n_domains");
        CHECK(!mend_is_dir(pj(root, "badbank")));   /* refused before anything is written */
    }

    /* ---- bank build: uninterrupted, and stopped in its second domain then resumed */
    char ref_dir[1024], bank_dir[1024];   /* the job borrows its paths: not pj's rotating buffers */
    snprintf(ref_dir, sizeof ref_dir, "%s/ref", root);
    snprintf(bank_dir, sizeof bank_dir, "%s/bank", root);
    mend_bank_job bj;
    bank_job(&bj, ref_dir, names, bcorp);
    seen r0 = {0};
    CHECK_OK(mend_bank_build_run(&bj, handler, &r0));
    CHECK(r0.done_notes == 2 && r0.skipped == 0 && r0.b_started);
    CHECK_MSG(strstr(r0.report, "wrote ") && strstr(r0.report, "with the learned router"), "bank report: %s", r0.report);

    bank_job(&bj, bank_dir, names, bcorp);
    seen r1 = {.stop_label = "[2/2 b]", .stop_at = 3};
    CHECK_ERR(mend_bank_build_run(&bj, handler, &r1), MEND_EINVAL, "stopped");
    CHECK(r1.done_notes == 1 && r1.starts == r1.ends);
    CHECK(mend_file_exists(pj(root, "bank/a/adapter_model.safetensors")));
    CHECK(!mend_file_exists(pj(root, "bank/b/adapter_model.safetensors")));
    CHECK(mend_file_exists(pj(root, "bank/b/checkpoint.bin")));
    CHECK(!mend_file_exists(pj(root, "bank/bank.json")));
    seen r2 = {0};
    CHECK_OK(mend_bank_build_run(&bj, handler, &r2));
    CHECK_MSG(r2.skipped == 1 && r2.done_notes == 1 && r2.b_started, "resume: %d skipped, %d trained", r2.skipped,
              r2.done_notes);
    CHECK_MSG(r2.updated && r2.first_done == 0, "resumed prompt's counter: first update %lld", r2.first_done);
    CHECK(same_file(pj(root, "ref/a/adapter_model.safetensors"), pj(root, "bank/a/adapter_model.safetensors")));
    CHECK(same_file(pj(root, "ref/b/adapter_model.safetensors"), pj(root, "bank/b/adapter_model.safetensors")));
    CHECK(mend_file_exists(pj(root, "bank/bank.json")));
    {
        mend_bank *b = NULL;
        CHECK_OK(mend_bank_read(pj(root, "bank"), &b));
        if (b) {
            mend_bank_info bi;
            mend_bank_get_info(b, &bi);
            CHECK(bi.n_prompts == 2 && bi.nv == 3 && bi.has_attn_calibration && bi.has_learned_router);
            CHECK(bi.trained_on.has_model);
            mend_bank_free(b);
        }
    }
    /* a third run has nothing left to train */
    seen r3 = {0};
    CHECK_OK(mend_bank_build_run(&bj, handler, &r3));
    CHECK(r3.skipped == 2 && r3.done_notes == 0 && !r3.b_started);

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
    return test_finish();
}
