/* The expert bank (prompt/experts.h) and the paragraph windows of tune:
 *   - mend_experts_balance: capacity ceil(n/K) per label, the clearest
 *     preferences served first, NaN costs never preferred;
 *   - mend_experts_kmeans: three separated clouds of unequal spread are
 *     recovered exactly, balanced;
 *   - mend_tune_sequences with paragraph windows: every sequence begins with
 *     the first tokens of a paragraph of the corpus;
 *   - mend_experts_build on the tiny llama fixture: a complete bank (K
 *     adapters with train.json, bank.json with the learned router and the
 *     learned selector) that mend_bank_read accepts; a run cancelled in
 *     the middle and run again gives the same bank.json and adapters bit
 *     for bit as an uninterrupted run; option errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "prompt/bank.h"
#include "prompt/experts.h"
#include "prompt/tune.h"
#include "util/util.h"
#include "test.h"

static void test_balance(void) {
    /* all six rows prefer label 0; capacity 2: the two with the largest
     * margin (rows 4 and 1) keep it */
    const float cost[6 * 3] = {
        1.0f, 1.5f, 3.0f,    /* margin 0.5 -> second choice 1 */
        0.0f, 3.0f, 4.0f,    /* margin 3.0 */
        1.0f, 1.2f, 1.1f,    /* margin 0.1 */
        1.0f, 2.0f, 1.8f,    /* margin 0.8 */
        0.0f, 5.0f, 6.0f,    /* margin 5.0 */
        1.0f, NAN, 1.05f};   /* margin 0.05; NaN never preferred */
    int lab[6];
    CHECK_OK(mend_experts_balance(cost, 6, 3, lab));
    int cnt[3] = {0};
    for (int i = 0; i < 6; i++) cnt[lab[i]]++;
    CHECK(cnt[0] <= 2 && cnt[1] <= 2 && cnt[2] <= 2);
    CHECK(lab[4] == 0 && lab[1] == 0);
    CHECK(lab[3] == 2);   /* margin 0.8 next: label 0 full, 2 (1.8) beats 1 (2.0) */
    CHECK(lab[0] == 1);   /* then margin 0.5: 1 (1.5) */
    CHECK(lab[2] == 2);   /* margin 0.1: 2 (1.1) has room */
    CHECK(lab[5] == 1);   /* last: only label 1 has room left, NaN or not */
    CHECK(mend_experts_balance(cost, 6, 0, lab) == MEND_EINVAL);
}

static void test_kmeans(void) {
    enum { N = 60, D = 4 };
    float x[N * D];
    uint64_t r = 99;
    for (int i = 0; i < N; i++)
        for (int d = 0; d < D; d++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            const float noise = ((float)((r >> 40) & 0xffff) / 65536.0f - 0.5f) * (0.2f + 0.2f * (i % 3));
            x[i * D + d] = (d == i % 3 ? 10.0f : 0.0f) + noise;   /* cloud i % 3 */
        }
    int lab[N];
    CHECK_OK(mend_experts_kmeans(x, N, D, 3, 20, 7, lab));
    int map[3] = {-1, -1, -1}, ok = 1;
    for (int i = 0; i < N; i++) {
        if (map[i % 3] < 0) map[i % 3] = lab[i];
        ok &= map[i % 3] == lab[i];
    }
    CHECK(ok && map[0] != map[1] && map[1] != map[2] && map[0] != map[2]);
    CHECK(mend_experts_kmeans(x, 2, D, 3, 5, 1, lab) == MEND_EINVAL);
}

static char *make_corpus(size_t *len) {
    static const char *w[] = {"alpha", "beta", "gamma", "delta", "model", "prompt", "soft", "repair", "quick",
                              "brown", "fox", "lazy", "dog", "river", "stone", "light"};
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    uint64_t r = 11;
    for (int p = 0; p < 120; p++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        const int nw = 6 + (int)((r >> 33) % 10), first = (int)((r >> 20) % 16);
        for (int i = 0; i < nw; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            n += (size_t)snprintf(s + n, cap - n, "%s%s", i ? " " : "", w[i ? (r >> 33) % 16 : first]);
        }
        n += (size_t)snprintf(s + n, cap - n, ".\n\n");
    }
    *len = n;
    return s;
}

/* every paragraph-window sequence starts with a paragraph's first tokens */
static void test_paragraph_windows(const mend_model *m, const char *text, size_t len) {
    mend_tune_opts o;
    mend_tune_opts_default(&o);
    o.seqlen = 12;
    o.windows = MEND_TUNE_WINDOWS_PARAGRAPH;
    o.val_frac = 0.1;
    o.val_seqs = 5;
    int32_t *tr = NULL, *va = NULL;
    int nt = 0, nv = 0;
    CHECK_OK(mend_tune_sequences(m, &text, &len, 1, &o, &tr, &nt, &va, &nv));
    CHECK(nt > 80 && nv == 5);
    /* the first two tokens of every paragraph */
    const mend_tokenizer *tok = mend_model_tokenizer(m);
    int32_t heads[200][2];
    int nh = 0;
    for (const char *p = text; p < text + len && nh < 200;) {
        const char *e = strstr(p, "\n\n");
        if (!e) break;
        int32_t *ids = NULL;
        size_t ni = 0;
        CHECK_OK(mend_tokenize(tok, p, (size_t)(e - p), 0, 0, &ids, &ni));
        if (ni >= 2) heads[nh][0] = ids[0], heads[nh][1] = ids[1], nh++;
        free(ids);
        p = e + 2;
    }
    int starts_ok = 1;
    for (int i = 0; i < nt; i++) {
        int hit = 0;
        for (int h = 0; h < nh && !hit; h++) hit = tr[(size_t)i * 12] == heads[h][0] && tr[(size_t)i * 12 + 1] == heads[h][1];
        starts_ok &= hit;
    }
    CHECK(starts_ok);
    CHECK(nt + nv <= nh);
    /* stream windows of the same text run on across paragraph boundaries */
    o.windows = MEND_TUNE_WINDOWS_STREAM;
    int32_t *tr2 = NULL, *va2 = NULL;
    int nt2 = 0, nv2 = 0;
    CHECK_OK(mend_tune_sequences(m, &text, &len, 1, &o, &tr2, &nt2, &va2, &nv2));
    int stream_at_starts = 1;
    for (int i = 0; i < nt2; i++) {
        int hit = 0;
        for (int h = 0; h < nh && !hit; h++) hit = tr2[(size_t)i * 12] == heads[h][0] && tr2[(size_t)i * 12 + 1] == heads[h][1];
        stream_at_starts &= hit;
    }
    CHECK(nt2 > 0 && !stream_at_starts);
    o.windows = 7;
    CHECK(mend_tune_sequences(m, &text, &len, 1, &o, &tr2, &nt2, &va2, &nv2) == MEND_EINVAL);
    /* sequences a caller gives are checked against the vocabulary before training */
    o.windows = MEND_TUNE_WINDOWS_STREAM;
    o.out_dir = "/nonexistent/never-written";
    int32_t bad[12];
    memcpy(bad, tr, sizeof bad);
    bad[5] = 1 << 30;
    mend_tune_result tres;
    CHECK(mend_tune_run_seqs(m, NULL, tr, 1, bad, 1, &o, NULL, NULL, NULL, &tres) == MEND_EINVAL);
    CHECK(strstr(mend_last_error(), "validation token 1073741824 (index 5)") != NULL);
    CHECK(mend_tune_run_seqs(m, NULL, bad, 1, NULL, 0, &o, NULL, NULL, NULL, &tres) == MEND_EINVAL);
    CHECK(strstr(mend_last_error(), "training token") != NULL);
    free(tr);
    free(va);
    free(tr2);
    free(va2);
}

static int cancel_at;   /* cancel when the (cancel_at)th train progress call comes */
static int on_progress(void *user, const mend_experts_progress *p) {
    int *calls = user;
    if (strcmp(p->phase, "train") == 0 && ++*calls == cancel_at) return 1;
    return 0;
}

static void experts_opts(mend_experts_opts *o, const float *start, const char *dir) {
    mend_experts_opts_default(o);
    o->n_experts = 2;
    o->rounds = 2;
    o->kmeans_iters = 10;
    o->tune.n_virtual = 3;
    o->tune.steps = 3;
    o->tune.batch = 2;
    o->tune.seqlen = 10;
    o->tune.lr = 1e-2;
    o->tune.val_frac = 0.1;
    o->tune.val_seqs = 6;
    o->tune.eval_every = 0;
    o->tune.ckpt_every = 1;
    o->tune.init_prompt = start;
    o->router.iters = 50;
    o->out_dir = dir;
    o->base_model = "tiny";
}

static int same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t la = 0, lb = 0;
    int same = !mend_read_file(a, 1 << 24, &x, &la) && !mend_read_file(b, 1 << 24, &y, &lb) && la == lb &&
               memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

static void test_build(const mend_model *m, const char *text, size_t len) {
    char tmpl[] = "/tmp/mend_experts_XXXXXX";
    char *root = mkdtemp(tmpl);
    CHECK(root != NULL);
    if (!root) return;
    char *a = mend_path_join(root, "a"), *b = mend_path_join(root, "b");
    const int D = m->cfg.dim;
    float *start = malloc(sizeof(float) * 3 * D);
    for (int i = 0; i < 3 * D; i++) start[i] = 0.01f * (float)((i * 37) % 11 - 5);
    mend_experts_opts o;
    mend_experts_result res;

    experts_opts(&o, start, a);
    CHECK_OK(mend_experts_build(m, NULL, &text, &len, 1, &o, NULL, NULL, &res));
    CHECK(res.chunks_per_round == 2 * 3 * 2);
    CHECK(res.counts[0] + res.counts[1] == 12);
    CHECK(res.train_tokens == 2 * 3 * 2 * 10);
    mend_bank *bk = NULL;
    CHECK_OK(mend_bank_read(a, &bk));
    if (bk) {
        CHECK(bk->n == 2 && bk->nv == 3 && bk->learned != NULL && !strcmp(bk->default_selector, "learned"));
        CHECK(bk->trained_on.has_model);
        CHECK_OK(mend_bank_load_prompts(bk, D));
        /* the experts moved apart from the start and from each other */
        if (bk->p[0].emb && bk->p[1].emb) {
            double d01 = 0, d0s = 0;
            for (int i = 0; i < 3 * D; i++) {
                d01 += fabs(bk->p[0].emb[i] - bk->p[1].emb[i]);
                d0s += fabs(bk->p[0].emb[i] - start[i]);
            }
            CHECK(d01 > 0 && d0s > 0);
        }
        mend_bank_free(bk);
    }
    mend_tune_record rec;
    int found = 0;
    char *e0 = mend_path_join(a, "e0");
    CHECK_OK(mend_tune_read_record(e0, &rec, &found));
    CHECK(found && rec.steps == 6 && rec.train_tokens == 6 * 2 * 10);
    free(e0);

    /* cancelled during round 0's second expert, then resumed */
    experts_opts(&o, start, b);
    int calls = 0;
    cancel_at = 6;
    CHECK(mend_experts_build(m, NULL, &text, &len, 1, &o, on_progress, &calls, &res) == MEND_EINVAL);
    char *bj = mend_path_join(b, "bank.json");
    CHECK(!mend_file_exists(bj));
    cancel_at = 0;
    CHECK_OK(mend_experts_build(m, NULL, &text, &len, 1, &o, on_progress, &calls, &res));
    char *aj = mend_path_join(a, "bank.json");
    CHECK(same_file(aj, bj));
    char *ae = mend_path_join(a, "e1/adapter_model.safetensors"), *be = mend_path_join(b, "e1/adapter_model.safetensors");
    CHECK(same_file(ae, be));
    char *al = mend_path_join(a, "round-1/labels.json"), *bl = mend_path_join(b, "round-1/labels.json");
    CHECK(same_file(al, bl));

    /* errors */
    experts_opts(&o, NULL, a);
    CHECK(mend_experts_build(m, NULL, &text, &len, 1, &o, NULL, NULL, &res) == MEND_EINVAL);
    experts_opts(&o, start, a);
    o.tune.steps = 100000;
    CHECK(mend_experts_build(m, NULL, &text, &len, 1, &o, NULL, NULL, &res) == MEND_EINVAL);
    CHECK(strstr(mend_last_error(), "chunks") != NULL);

    free(aj), free(bj), free(ae), free(be), free(al), free(bl);
    free(start);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
    free(a);
    free(b);
}

int main(void) {
    test_balance();
    test_kmeans();
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, test_src("tests/fixtures/hf/llama.gguf"), &lo));
    if (m) {
        size_t len = 0;
        char *text = make_corpus(&len);
        test_paragraph_windows(m, text, len);
        test_build(m, text, len);
        free(text);
        mend_model_free(m);
    }
    return test_finish();
}
