/* mend_compress_job_run (include/mend/jobs.h) on the tiny llama fixture:
 *   - the file it writes is byte for byte the one mend_compress writes from
 *     the calibration windows mend_calib_build draws from the same texts;
 *     its report, calibration note and layer counter come as events;
 *   - stop_after ends with status 0 and the checkpoint kept; a resume
 *     finishes the same file from it;
 *   - act-order and importance fits take their defaults (act-order off
 *     when pruning), recorded in the file;
 *   - refused: no calibration text, a resume without a checkpoint,
 *     act-order or a joint pass with the wrong pruning; a cancel leaves no
 *     output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/gguf.h"
#include "mend.h"
#include "test.h"

#define TINY "tests/fixtures/hf/llama.gguf"
#define NS 8
#define SL 64

typedef struct seen {
    char report[4096], note[512];
    int notes, starts, updates, ends, cancel_at;
    char label[32];
} seen;

static int handler(void *user, const mend_event *ev) {
    seen *s = user;
    switch (ev->kind) {
    case MEND_EV_TEXT: strncat(s->report, ev->text, sizeof s->report - strlen(s->report) - 1); break;
    case MEND_EV_NOTE:
        s->notes++;
        snprintf(s->note, sizeof s->note, "%s", ev->text);
        CHECK_MSG(!strchr(ev->text, '\n'), "a note is one sentence: %s", ev->text);
        break;
    case MEND_EV_PROGRESS_START:
        s->starts++;
        snprintf(s->label, sizeof s->label, "%s", ev->label);
        break;
    case MEND_EV_PROGRESS: return s->cancel_at > 0 && ++s->updates >= s->cancel_at;
    case MEND_EV_PROGRESS_END: s->ends++; break;
    default: break;
    }
    return 0;
}

static int same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int same = !mend_read_file(a, (size_t)1 << 28, &x, &nx) && !mend_read_file(b, (size_t)1 << 28, &y, &ny) &&
               nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return same;
}

static int recorded_bool(const char *path, const char *key) {
    mend_gguf *g = NULL;
    int v = -1;
    if (mend_gguf_open(&g, path) == 0 && mend_gguf_get_bool(g, key, &v)) v = -1;
    mend_gguf_close(g);
    return v;
}

/* The job's options for GPTQ to int4 groups of 32 on the text at corpus. */
static void job_for(mend_compress_job *j, const char *const *calib, const char *out) {
    mend_compress_job_init(j);
    j->model = test_src(TINY);
    j->out = out;
    j->opts.fmt = mend_qfmt_generic(4, 32, 0);
    j->calib = calib;
    j->n_calib = 1;
    j->nsamples = NS;
    j->seqlen = SL;
    j->seed = 3;
}

int main(void) {
    mend_set_threads(1);
    char dir[128], corpus[192], ref[192], out[192], ckpt[224], pruned[192];
    snprintf(dir, sizeof dir, "/tmp/mend_jobs_compress_%d", (int)getpid());
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    snprintf(ref, sizeof ref, "%s/ref.gguf", dir);
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", out);
    snprintf(pruned, sizeof pruned, "%s/pruned.gguf", dir);
    CHECK(mend_mkdir_p(dir) == 0);
    FILE *f = fopen(corpus, "w");
    for (int i = 0; i < 300 && f; i++)
        fprintf(f, "Line %d: the river runs past the mill, and the miller grinds %d sacks of wheat.\n", i, i * 7);
    if (f) fclose(f);
    const char *calib[] = {corpus};

    /* the reference: mend_compress on mend_calib_build's windows */
    {
        mend_model *m = NULL;
        mend_load_opts lo = {.keep_packed = 1, .no_repack = 1};
        CHECK_OK(mend_model_load(&m, test_src(TINY), &lo));
        mend_calib cal = {0};
        if (m) CHECK_OK(mend_calib_build(&cal, mend_model_tokenizer(m), calib, 1, NS, SL, 3));
        mend_compress_opts o;
        mend_compress_opts_init(&o);
        o.method = MEND_COMPRESS_GPTQ;
        o.fmt = mend_qfmt_generic(4, 32, 0);
        o.calib = cal.tokens;
        o.nsamples = cal.nsamples;
        o.seqlen = cal.seqlen;
        o.calib_desc = "seed 3: corpus.txt";
        CHECK_OK(mend_compress(test_src(TINY), ref, &o, NULL));
        mend_calib_free(&cal);
        mend_model_free(m);
    }

    /* the job: the same file, with its report and counter as events */
    mend_compress_job j;
    job_for(&j, calib, out);
    j.no_checkpoint = 1;
    seen s = {0};
    mend_compress_result res;
    CHECK_OK(mend_compress_job_run(&j, &res, handler, &s));
    CHECK_MSG(same_file(out, ref), "the job's file differs from mend_compress's");
    char want[256];
    snprintf(want, sizeof want, "wrote %s: ", out);
    CHECK_MSG(strncmp(s.report, want, strlen(want)) == 0 && strstr(s.report, "bits per weight"), "report: %s",
              s.report);
    CHECK_MSG(strstr(s.note, "calibration: 8 x 64 tokens from 1 file(s)") != NULL, "note: %s", s.note);
    CHECK(s.starts == 1 && s.ends == 1 && !strcmp(s.label, "compress"));
    CHECK(res.n_quantized > 0 && res.resumed_layers == 0);
    CHECK_MSG(recorded_bool(out, "mend.compress.act_order") == 1, "act-order by default without pruning");
    CHECK_MSG(recorded_bool(out, "mend.compress.fit_importance") == 0, "plain fits by default for a generic grid");
    unlink(out);

    /* stopped after layer 1: status 0, the checkpoint kept; then resumed */
    job_for(&j, calib, out);
    j.stop_after = 1;
    memset(&s, 0, sizeof s);
    CHECK_OK(mend_compress_job_run(&j, NULL, handler, &s));
    CHECK_MSG(strstr(s.note, "kept (run again to resume)") && strstr(s.note, ckpt), "note: %s", s.note);
    CHECK(access(out, F_OK) != 0 && access(ckpt, F_OK) == 0 && s.report[0] == 0);
    job_for(&j, calib, out);
    j.resume = 1;
    memset(&s, 0, sizeof s);
    CHECK_OK(mend_compress_job_run(&j, &res, handler, &s));
    CHECK(res.resumed_layers == 1 && strstr(s.report, "resumed after 1 finished layers"));
    CHECK_MSG(same_file(out, ref), "the resumed file differs from mend_compress's");
    unlink(out);

    /* pruning: act-order off by default, recorded */
    mend_prune_opts po = {MEND_PRUNE_WANDA, mend_sparsity_unstructured(0.5), 0};
    job_for(&j, calib, pruned);
    j.opts.prune = &po;
    j.no_checkpoint = 1;
    CHECK_OK(mend_compress_job_run(&j, NULL, NULL, NULL));
    CHECK_MSG(recorded_bool(pruned, "mend.compress.act_order") == 0, "act-order off by default with pruning");
    unlink(pruned);

    /* refusals, before anything is written */
    job_for(&j, calib, out);
    j.n_calib = 0;
    CHECK_ERR(mend_compress_job_run(&j, NULL, NULL, NULL), MEND_EINVAL, "GPTQ needs calibration text");
    job_for(&j, calib, out);
    j.resume = 1;
    CHECK_ERR(mend_compress_job_run(&j, NULL, NULL, NULL), MEND_EIO, "no checkpoint");
    job_for(&j, calib, out);
    j.opts.prune = &po;
    j.opts.act_order = 1;
    CHECK_ERR(mend_compress_job_run(&j, NULL, NULL, NULL), MEND_EINVAL, "act-order is not supported together with pruning");
    job_for(&j, calib, out);
    po.joint = 1;
    j.opts.prune = &po;
    CHECK_ERR(mend_compress_job_run(&j, NULL, NULL, NULL), MEND_EINVAL, "joint pruning goes with SparseGPT and GPTQ");
    j.model = NULL;
    CHECK_ERR(mend_compress_job_run(&j, NULL, NULL, NULL), MEND_EINVAL, "model and out are required");
    CHECK(access(out, F_OK) != 0);

    /* a handler that returns nonzero cancels: no output */
    job_for(&j, calib, out);
    j.no_checkpoint = 1;
    memset(&s, 0, sizeof s);
    s.cancel_at = 2;
    CHECK(mend_compress_job_run(&j, NULL, handler, &s) != 0);
    CHECK(access(out, F_OK) != 0);

    unlink(corpus);
    unlink(ckpt);
    rmdir(dir);
    return test_finish();
}
