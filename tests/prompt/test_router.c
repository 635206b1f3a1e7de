/* The learned router: the fit on synthetic features (separable clusters are
 * learned, random labels are not, the same data gives the same weights),
 * then on the tiny llama fixture a two-prompt bank over two clearly
 * different synthetic domains: the router imitates the loss selector on
 * held-out windows, round-trips through bank.json, and --select learned
 * scores are its logits of the input's mean token embedding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/quants.h"
#include "model/model.h"
#include "prompt/router.h"
#include "prompt/select.h"
#include "prompt/tune.h"
#include "test.h"
#include "test_rng.h"
#include "util/util.h"

/* n points in dim around K random centres (spread s); y: the centre, or random when shuffle */
static void clusters(float *X, int *y, int n, int dim, int K, double s, int shuffle) {
    float *c = malloc(sizeof(float) * K * dim);
    for (int i = 0; i < K * dim; i++) c[i] = (float)(rndu() - 0.5);
    for (int i = 0; i < n; i++) {
        const int k = i % K;
        for (int j = 0; j < dim; j++) X[(size_t)i * dim + j] = c[k * dim + j] + (float)(s * (rndu() - 0.5));
        y[i] = shuffle ? (int)(rndu() * K) : k;
    }
    free(c);
}

static void fit_tests(void) {
    enum { N = 200, D = 16, K = 3 };
    float *X = malloc(sizeof(float) * N * D);
    int y[N];
    mend_router_opts o;
    mend_router_opts_default(&o);
    mend_learned_router *r = NULL, *r2 = NULL;
    mend_router_stats st;
    clusters(X, y, N, D, K, 0.6, 0);
    CHECK_OK(mend_router_fit(X, y, N, D, K, 0, &o, &r, &st));
    CHECK(st.n_windows == N && st.n_heldout == N / 5 && st.n_train == N - N / 5);
    CHECK(st.label_hist[0] + st.label_hist[1] + st.label_hist[2] == N);
    printf("clusters: train %.3f held out %.3f\n", st.train_acc, st.heldout_acc);
    CHECK(st.heldout_acc >= 0.95 && st.train_acc >= 0.95);
    /* deterministic */
    CHECK_OK(mend_router_fit(X, y, N, D, K, 0, &o, &r2, NULL));
    CHECK(r && r2 && !memcmp(r->w, r2->w, sizeof(float) * K * D) && !memcmp(r->b, r2->b, sizeof(float) * K));
    /* scores are logits of the raw feature: w . x + b */
    float lg[K];
    mend_router_logits(r, X, lg);
    for (int k = 0; k < K; k++) {
        double z = r->b[k];
        for (int j = 0; j < D; j++) z += (double)r->w[k * D + j] * X[j];
        CHECK_NEAR(lg[k], z, 1e-4);
    }
    mend_learned_router_free(r);
    mend_learned_router_free(r2);
    /* labels unrelated to the features: nothing to learn on held-out rows */
    clusters(X, y, N, D, K, 0.6, 1);
    CHECK_OK(mend_router_fit(X, y, N, D, K, 0, &o, &r, &st));
    printf("random labels: train %.3f held out %.3f\n", st.train_acc, st.heldout_acc);
    CHECK(st.heldout_acc < 0.7);
    mend_learned_router_free(r);
    /* bad labels */
    y[3] = K;
    CHECK_ERR(mend_router_fit(X, y, N, D, K, 0, &o, &r, NULL), MEND_EINVAL, "window 3");
    free(X);
}

static char *write_corpus(const char *dir, const char *name, int digits) {
    char *path = malloc(256);
    snprintf(path, 256, "%s/%s.txt", dir, name);
    FILE *f = fopen(path, "wb");
    static const char *const words[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "while",
                                        "cats", "sleep", "under", "warm", "sun", "and", "birds", "sing"};
    for (int p = 0; f && p < 200; p++) {
        for (int i = 0; i < 35; i++) {
            if (digits) fprintf(f, "%d ", (int)(rndu() * 1000));
            else fprintf(f, "%s ", words[(int)(rndu() * 17)]);
        }
        fprintf(f, ".\n\n");
    }
    if (f) fclose(f);
    return path;
}

int main(void) {
    mend_set_threads(1);   /* tiny model: threads would only wait on each other */
    fit_tests();

    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/mend_router_%d", (int)getpid());
    mkdir(dir, 0755);
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, test_src("tests/fixtures/hf/llama.gguf"), &lo));
    if (!m) return test_finish();
    const int dim = m->cfg.dim;
    CHECK(dim <= 64 && m->tok_embd.type == MEND_TYPE_F32);   /* the direct feature below reads f32 rows */
    enum { K = 2 };
    const char *names[K] = {"digits", "words"};
    char *files[K];
    char *texts[K];
    size_t lens[K];
    mend_bank_prompt bp[K];
    memset(bp, 0, sizeof bp);
    for (int k = 0; k < K; k++) {
        files[k] = write_corpus(dir, names[k], k == 0);
        CHECK_OK(mend_read_file(files[k], 1 << 24, &texts[k], &lens[k]));
        /* a prompt per domain, trained enough for the loss selector to tell them apart */
        mend_tune_opts o;
        mend_tune_opts_default(&o);
        o.n_virtual = 4;
        o.seqlen = 32;
        o.batch = 1;
        o.steps = 200;
        o.lr = 0.1;
        o.eval_every = 0;
        o.val_frac = 0;
        char ad[128];
        snprintf(ad, sizeof ad, "%s/%s", dir, names[k]);
        o.out_dir = ad;
        const char *tx = texts[k];
        mend_tune_result res;
        CHECK_OK(mend_tune_run(m, NULL, &tx, &lens[k], 1, &o, NULL, NULL, NULL, &res));
        bp[k].name = bp[k].adapter = bp[k].domain = (char *)names[k];
        bp[k].corpus = files[k];
        bp[k].steps = -1;
        bp[k].best_val = NAN;
    }
    mend_bank mem = {.dim = dim, .nv = 4, .n = K, .p = bp, .default_selector = "attention", .layer0 = 0,
                     .layer1 = 2};
    CHECK_OK(mend_bank_write(dir, &mem));
    mend_bank *b = NULL;
    CHECK_OK(mend_bank_read(dir, &b));
    if (!b) return test_finish();
    CHECK(b->learned == NULL);
    CHECK_OK(mend_bank_load_prompts(b, dim));

    /* --select learned without a router: refused, naming bank.json and the command */
    mend_select_spec sp;
    mend_selector *s = NULL;
    CHECK_OK(mend_select_parse("learned", b, &sp));
    CHECK(sp.kind == MEND_SELECT_LEARNED && !strcmp(mend_select_kind_name(sp.kind), "learned"));
    CHECK_ERR(mend_selector_new(&s, m, b, &sp), MEND_EINVAL, "bank.json has no learned_router");
    CHECK(strstr(mend_last_error(), "mend bank router") != NULL);

    /* train: 40 windows of 32 tokens per domain */
    mend_router_opts ro;
    mend_router_opts_default(&ro);
    ro.n_windows = 40;
    ro.window = 32;
    mend_router_stats st;
    mend_learned_router *r = NULL;
    CHECK_OK(mend_router_train(m, b, (const char *const *)texts, lens, K, &ro, NULL, NULL, &r, &st));
    printf("tiny bank: %d windows, labels digits %d / words %d, train %.3f held out %.3f\n", st.n_windows,
           st.label_hist[0], st.label_hist[1], st.train_acc, st.heldout_acc);
    CHECK(st.n_windows == 80 && st.n_heldout == 16);
    /* the domains are distinct enough that both prompts win somewhere */
    CHECK(st.label_hist[0] >= 20 && st.label_hist[1] >= 20);
    CHECK(st.heldout_acc >= 0.9);
    CHECK(r && r->K == K && r->dim == dim && r->normalize == 1 && r->train_windows == 80);

    /* round trip through bank.json: the same floats */
    b->learned = r;
    CHECK_OK(mend_bank_write(dir, b));
    mend_bank *b2 = NULL;
    CHECK_OK(mend_bank_read(dir, &b2));
    if (b2 && b2->learned) {
        const mend_learned_router *q = b2->learned;
        CHECK(q->K == K && q->dim == dim && q->normalize == 1 && q->train_windows == 80);
        CHECK(!memcmp(q->w, r->w, sizeof(float) * K * dim) && !memcmp(q->b, r->b, sizeof(float) * K));
        CHECK_NEAR(q->heldout_acc, r->heldout_acc, 1e-12);
        CHECK_NEAR(q->train_acc, r->train_acc, 1e-12);
    } else {
        CHECK(0);
    }
    mend_bank_free(b2);

    /* the selector: scores are the logits of the mean (L2-normalised) embedding */
    CHECK_OK(mend_selector_new(&s, m, b, &sp));
    int agree = 0, total = 0;
    mend_select_spec lsp;
    mend_selector *ls = NULL;
    CHECK_OK(mend_select_parse("loss", b, &lsp));
    CHECK_OK(mend_selector_new(&ls, m, b, &lsp));
    for (int k = 0; k < K; k++)
        for (int w = 1; w < 40; w += 5) {   /* windows of 24 tokens: not the training ones */
            int32_t *ids = NULL;
            int n = 0, ch = -1, lch = -1;
            CHECK_OK(mend_select_window(mend_model_tokenizer(m), texts[k], lens[k], w, 40, 24, &ids, &n));
            if (n < 2) {
                free(ids);
                continue;
            }
            float sc[K], x[64], ref[K];
            CHECK_OK(mend_selector_pick(s, ids, n, &ch, sc));
            double e[64] = {0}, nrm = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < dim; j++) e[j] += ((const float *)m->tok_embd.data)[(size_t)ids[i] * dim + j];
            for (int j = 0; j < dim; j++) nrm += (e[j] / n) * (e[j] / n);
            for (int j = 0; j < dim; j++) x[j] = (float)(e[j] / n / sqrt(nrm));
            mend_router_logits(r, x, ref);
            for (int q = 0; q < K; q++) CHECK_NEAR(sc[q], ref[q], 1e-4);
            CHECK(ch == mend_select_argmax(sc, K));
            CHECK_OK(mend_selector_pick(ls, ids, n, &lch, NULL));
            agree += ch == lch;
            total++;
            /* pick_many gives the same */
            const int32_t *in[1] = {ids};
            int chm = -1;
            float scm[K];
            CHECK_OK(mend_selector_pick_many(s, in, &n, 1, &chm, scm));
            CHECK(chm == ch && scm[0] == sc[0] && scm[1] == sc[1]);
            free(ids);
        }
    printf("learned agrees with loss on %d of %d unseen windows\n", agree, total);
    CHECK(total >= 12 && agree >= total * 8 / 10);
    mend_selector_free(ls);
    mend_selector_free(s);
    /* a router of the wrong shape (another bank's) is refused */
    r->K = 3;
    CHECK_ERR(mend_selector_new(&s, m, b, &sp), MEND_EINVAL, "learned_router");
    CHECK_ERR(mend_bank_write(dir, b), MEND_EINVAL, "learned router is not K = 2");
    r->K = K;

    mend_bank_free(b);
    for (int k = 0; k < K; k++) {
        free(files[k]);
        free(texts[k]);
    }
    mend_model_free(m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish();
}
