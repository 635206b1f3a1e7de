/* mend_tune_run on the tiny llama fixture:
 *   - a run to N steps and a run stopped after step k (as if killed; its
 *     last checkpoint is at an earlier step) then resumed to N give the
 *     same adapters bit for bit, the same loss history and checkpoint state;
 *   - resuming with other options is refused;
 *   - training lowers the validation loss;
 *   - the KL objective runs with a teacher;
 *   - mend_perplexity_prompt scores the same tokens as a direct loop over
 *     mend_forward with the prompt's KV in front. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "prompt/adapter.h"
#include "prompt/tune.h"
#include "util/util.h"
#include "test.h"

static char *make_corpus(size_t *len) {
    static const char *w[] = {"the", "model", "is", "repaired", "with", "soft", "prompts", "after", "it", "has",
                              "been", "compressed", "and", "quick", "brown", "fox", "jumps", "over", "lazy", "dog"};
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    uint64_t r = 7;
    for (int p = 0; p < 50; p++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int nw = 8 + (int)((r >> 33) % 20);
        for (int i = 0; i < nw; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            n += (size_t)snprintf(s + n, cap - n, "%s%s", i ? " " : "", w[(r >> 33) % 20]);
        }
        n += (size_t)snprintf(s + n, cap - n, ".\n\n");
    }
    *len = n;
    return s;
}

static char *slurp(const char *dir, const char *name, size_t *len) {
    char *p = mend_path_join(dir, name), *buf = NULL;
    if (mend_read_file(p, 1 << 24, &buf, len)) buf = NULL;
    free(p);
    return buf;
}

static int same_file(const char *a, const char *b, const char *name) {
    size_t la = 0, lb = 0;
    char *x = slurp(a, name, &la), *y = slurp(b, name, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

/* loss.csv without the elapsed column (the last one) */
static int same_csv(const char *a, const char *b) {
    size_t la = 0, lb = 0;
    char *x = slurp(a, "loss.csv", &la), *y = slurp(b, "loss.csv", &lb);
    int same = x && y;
    char *sx = x, *sy = y;
    while (same && *sx && *sy) {
        char *ex = strchr(sx, '\n'), *ey = strchr(sy, '\n');
        if (!ex || !ey) break;
        char *cx = ex, *cy = ey;
        while (cx > sx && *cx != ',') cx--;
        while (cy > sy && *cy != ',') cy--;
        if (cx - sx != cy - sy || memcmp(sx, sy, (size_t)(cx - sx))) same = 0;
        sx = ex + 1;
        sy = ey + 1;
    }
    same = same && !*sx && !*sy;
    free(x);
    free(y);
    return same;
}

int main(void) {
    mend_model *m = NULL, *tq = NULL;
    mend_load_opts o0 = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, test_src("tests/fixtures/hf/llama.gguf"), &o0));
    CHECK_OK(mend_model_load(&tq, test_src("tests/fixtures/hf/qwen2"), &o0));
    if (!m || !tq) return test_finish();
    size_t len;
    char *text = make_corpus(&len);
    const char *texts[1] = {text};
    char tmpl[] = "/tmp/mend_tune_XXXXXX";
    char *root = mkdtemp(tmpl);
    CHECK(root != NULL);
    if (!root) return test_finish();
    char *da = mend_path_join(root, "a"), *db = mend_path_join(root, "b"), *dc = mend_path_join(root, "c");

    mend_tune_opts o;
    mend_tune_opts_default(&o);
    o.n_virtual = 3;
    o.seqlen = 24;
    o.batch = 2;
    o.steps = 7;
    o.lr = 0.05;
    o.eval_every = 2;
    o.ckpt_every = 2;
    o.val_frac = 0.2;
    o.val_seqs = 4;
    o.seed = 99;
    o.schedule = MEND_SCHED_COSINE;
    mend_tune_result ra, rb;
    o.out_dir = da;
    CHECK_OK(mend_tune_run(m, NULL, texts, &len, 1, &o, NULL, NULL, NULL, &ra));
    CHECK(ra.steps_done == 7);
    /* killed after step 5: its last checkpoint is at step 4 */
    o.out_dir = db;
    o.stop_after = 5;
    CHECK_OK(mend_tune_run(m, NULL, texts, &len, 1, &o, NULL, NULL, NULL, &rb));
    CHECK(rb.steps_done == 5);
    o.stop_after = 0;
    o.resume = 1;
    CHECK_OK(mend_tune_run(m, NULL, texts, &len, 1, &o, NULL, NULL, NULL, &rb));
    CHECK(rb.steps_done == 7);
    CHECK(same_file(da, db, "adapter_model.safetensors"));
    CHECK(same_file(da, db, "last/adapter_model.safetensors"));
    CHECK(same_csv(da, db));
    CHECK(ra.best_step == rb.best_step && ra.best_val == rb.best_val && ra.first_val == rb.first_val);
    /* train.json: 7 steps x batch 2 x 24 tokens = 336 text tokens, the same
     * after a resume (steps over all processes, not the last one's) */
    CHECK(same_file(da, db, "train.json"));
    {
        size_t l;
        char *tj = slurp(da, "train.json", &l);
        CHECK_MSG(tj && strstr(tj, "\"train_tokens\": 336") && strstr(tj, "\"steps\": 7") &&
                      strstr(tj, "\"batch\": 2") && strstr(tj, "\"seqlen\": 24"), "train.json: %s", tj ? tj : "missing");
        free(tj);
    }
    {   /* a prompt continued from a's: train.json counts a's 336 tokens as its
         * start, 2 x 2 x 24 = 96 of its own, 432 in all */
        mend_tune_record rec;
        int found = 0, nv = 0;
        float *emb = NULL;
        mend_model_info mi;
        mend_model_get_info(m, &mi);
        CHECK_OK(mend_tune_read_record(da, &rec, &found));
        CHECK(found && rec.train_tokens == 336 && rec.start_tokens == 0 && rec.steps == 7);
        const int64_t st = rec.train_tokens + rec.start_tokens;
        CHECK_OK(mend_adapter_read(da, mi.dim, &emb, &nv));
        mend_tune_opts oc = o;
        char *dd = mend_path_join(root, "d");
        oc.out_dir = dd;
        oc.resume = 0;
        oc.steps = 2;
        oc.init = MEND_TUNE_INIT_PROMPT;
        oc.init_prompt = emb;
        oc.start_tokens = st;
        mend_tune_result rd;
        CHECK_OK(mend_tune_run(m, NULL, texts, &len, 1, &oc, NULL, NULL, NULL, &rd));
        CHECK_OK(mend_tune_read_record(dd, &rec, &found));
        const int64_t tot = rec.train_tokens + rec.start_tokens;
        CHECK_MSG(found && rec.train_tokens == 96 && tot == 432, "continued prompt: total %lld", (long long)tot);
        /* its first validation is the start prompt's: a's best */
        CHECK(rd.first_val == ra.best_val);
        rec.train_tokens = -1;
        CHECK_OK(mend_tune_read_record(root, &rec, &found));
        CHECK(!found && rec.train_tokens == 0);
        free(emb);
        free(dd);
    }
    /* the resumed checkpoint equals the uninterrupted one except the elapsed
     * seconds in the history: compare everything before the history */
    {
        size_t l1, l2;
        char *c1 = slurp(da, "checkpoint.bin", &l1), *c2 = slurp(db, "checkpoint.bin", &l2);
        const size_t hist = 8 * 8 * 8 + 8;   /* 8 rows of 8 doubles + checksum */
        CHECK(c1 && c2 && l1 == l2 && l1 > hist && memcmp(c1, c2, l1 - hist) == 0);
        free(c1);
        free(c2);
    }
    /* killed between the final checkpoint and loss.csv: the CSV is behind
     * the checkpoint; resuming (nothing left to train) restores it */
    {
        char *csv = mend_path_join(db, "loss.csv");
        FILE *f = csv ? fopen(csv, "w") : NULL;
        CHECK(f != NULL);
        if (f) {
            fputs("step,lr,loss,ce,grad_norm,val_loss,val_ce,elapsed_s\n", f);
            fclose(f);
        }
        CHECK(!same_csv(da, db));
        CHECK_OK(mend_tune_run(m, NULL, texts, &len, 1, &o, NULL, NULL, NULL, &rb));
        CHECK(rb.steps_done == 7);
        CHECK(same_csv(da, db));
        free(csv);
    }
    /* resuming with other options is refused */
    o.lr = 0.04;
    CHECK_ERR(mend_tune_run(m, NULL, texts, &len, 1, &o, NULL, NULL, NULL, &rb), MEND_EINVAL, "other options");
    o.lr = 0.05;
    o.resume = 0;

    /* a run lowers the validation loss */
    CHECK(ra.best_val < ra.first_val - 0.05);
    printf("ce: validation loss %.4f -> best %.4f (step %d)\n", ra.first_val, ra.best_val, ra.best_step);

    /* KL to a teacher (qwen2 shares the vocabulary) */
    o.out_dir = dc;
    o.objective = MEND_TUNE_KL;
    o.steps = 6;
    o.init = MEND_TUNE_INIT_TEXT;
    o.init_text = "soft prompts";
    mend_tune_result rk;
    CHECK_OK(mend_tune_run(m, tq, texts, &len, 1, &o, NULL, NULL, NULL, &rk));
    printf("kl: validation KL %.4f -> best %.4f (step %d)\n", rk.first_val, rk.best_val, rk.best_step);
    CHECK(rk.best_val < rk.first_val);
    CHECK_ERR(mend_tune_run(m, NULL, texts, &len, 1, &o, NULL, NULL, NULL, &rk), MEND_EINVAL, "teacher");

    /* perplexity behind the trained prompt vs a direct loop */
    float *pr = NULL;
    int nv = 0;
    mend_fp rec = {0}, mfp = {0};
    CHECK_OK(mend_adapter_read_fp(da, m->cfg.dim, &pr, &nv, &rec));
    CHECK(nv == 3);
    /* the adapter names the model it was trained on */
    CHECK_OK(mend_model_fingerprint(m, &mfp));
    CHECK(rec.has_model && rec.model == mfp.model && !rec.has_recipe);
    if (pr) {
        int32_t *ids = NULL;
        size_t n_ids = 0;
        CHECK_OK(mend_tokenize(mend_model_tokenizer(m), text, len, 0, 0, &ids, &n_ids));
        mend_ppl_opts po = {.protocol = MEND_PPL_GPTQ, .n_ctx = 64, .n_chunks = 3, .n_batch = 16, .bos = -1};
        mend_ppl_result pres;
        CHECK_OK(mend_perplexity_prompt(m, pr, nv, ids, n_ids, &po, NULL, NULL, &pres));
        const int V = m->cfg.n_vocab;
        mend_state *s = NULL;
        float *lg = malloc(sizeof(float) * 64 * V);
        double sum = 0;
        CHECK_OK(mend_state_new(&s, m, nv + 64, nv + 64));
        for (int c = 0; c < 3 && s; c++) {
            mend_forward(s, NULL, pr, nv, 0, NULL, 0);
            mend_forward(s, ids + c * 64, NULL, 64, nv, lg, 1);
            for (int i = 0; i < 63; i++) sum += mend_nll_from_logits(lg + (size_t)i * V, V, ids[c * 64 + i + 1]);
        }
        CHECK(pres.n_scored == 3 * 63);
        CHECK_NEAR(pres.nll_sum, sum, 1e-6 * fabs(sum));
        mend_ppl_result p0;
        CHECK_OK(mend_perplexity(m, ids, n_ids, &po, NULL, NULL, &p0));
        printf("ppl on the training text: %.3f without the prompt, %.3f with it\n", p0.ppl, pres.ppl);
        mend_state_free(s);
        free(lg);
        free(ids);
        free(pr);
    }
    free(da);
    free(db);
    free(dc);
    free(text);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd)) {}
    mend_model_free(m);
    mend_model_free(tq);
    return test_finish();
}
