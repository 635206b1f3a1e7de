/* Harness logic without a model: a toy tokenizer with merges that cross the
 * context/continuation boundary and a toy "model" whose logits at a position
 * hash the whole prefix (so any wrong KV sharing changes the numbers). The
 * shared-prefix scorer must equal a direct, request-by-request computation
 * of lm-eval's rules written independently here. Also: task readers on bad
 * input, exact match, results lines, resume (partial line), summary. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "test.h"
#include "eval/harness.h"
#include "eval/report.h"
#include "eval/results.h"
#include "eval/tasks.h"
#include "io/safetensors.h"
#include "kernels/quants.h"
#include "util/util.h"

#define TV 300
#define TOK_EOG 299

typedef struct toy {
    int32_t cache[8192];
    int valid;      /* positions written so far */
    int bad;        /* forward at a position past the written ones */
    int64_t positions;
    int calls;      /* forward_rows calls */
} toy;

/* " " + lowercase letter -> 256 + letter; "xy" -> 290; else the byte */
static size_t toy_encode(const char *s, size_t n, int32_t *out) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == ' ' && i + 1 < n && s[i + 1] >= 'a' && s[i + 1] <= 'z') {
            out[k++] = 256 + (s[i + 1] - 'a');
            i += 2;
        } else if (s[i] == 'x' && i + 1 < n && s[i + 1] == 'y') {
            out[k++] = 290;
            i += 2;
        } else {
            out[k++] = (unsigned char)s[i];
            i++;
        }
    }
    return k;
}

static int toy_tok(void *u, const char *s, size_t n, int32_t **ids, size_t *nid) {
    *ids = malloc((n + 1) * sizeof(int32_t));
    *nid = toy_encode(s, n, *ids);
    return 0;
}

static int toy_detok(void *u, const int32_t *ids, size_t n, char **text) {
    char *o = malloc(2 * n + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= 256 && ids[i] < 282) {
            o[k++] = ' ';
            o[k++] = (char)('a' + ids[i] - 256);
        } else if (ids[i] == 290) {
            o[k++] = 'x';
            o[k++] = 'y';
        } else if (ids[i] < 256 && ids[i] > 0) {
            o[k++] = (char)ids[i];
        }
    }
    o[k] = 0;
    *text = o;
    return 0;
}

/* logits predicting the token at index len from seq[0..len) */
static void toy_row(const int32_t *seq, int len, float *row) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < len; i++) h = (h ^ (uint64_t)(uint32_t)seq[i]) * 1099511628211ull;
    double a = (double)(h % 100003) * 0.001;
    for (int j = 0; j < TV; j++)
        row[j] = (float)(3.0 * sin(a + j * 0.37) + (((h >> 7) % 13) == (uint64_t)(j % 13) ? 1.5 : 0.0));
    row[TOK_EOG] = -100.0f;
    /* make ' ' + letters and '.' likely so generations look like words */
    for (int j = 256; j < 282; j++) row[j] += 2.0f;
    row['.'] += 1.0f;
}

static int toy_forward(void *u, const int32_t *tokens, int n, int pos, float *logits, int all) {
    toy *t = u;
    if (pos > t->valid || pos + n > 8192) t->bad = 1;
    memcpy(t->cache + pos, tokens, (size_t)n * sizeof *tokens);
    t->valid = pos + n;
    t->positions += n;
    if (!logits) return 0;
    for (int p = pos; p < pos + n; p++) {
        if (!all && p != pos + n - 1) continue;
        toy_row(t->cache, p + 1, all ? logits + (size_t)(p - pos) * TV : logits);
    }
    return 0;
}

static int toy_is_eog(void *u, int32_t id) { return id == TOK_EOG; }

/* Packed rows: a row's sequence is the tokens at slots [ctx0, ctx1) then
 * [own0, its slot]; its position must be that sequence's length - 1. Rows
 * go to slots 0..n-1, or to slots[i] (then below the reserved count). */
static int toy_reserved;
static int toy_forward_rows(void *u, int lane, const int32_t *tokens, int n, const int *slots,
                            const mend_eval_row *rows, float *logits, const int *out_rows, int n_out) {
    toy *t = u;
    if (lane != 0) t->bad = 1;   /* one lane */
    if (n > 3 * 4) t->bad = 1;   /* max_batch of the packed toy */
    for (int i = 0; i < n; i++) {
        const int at = slots ? slots[i] : i;
        if (at < 0 || at >= 8192 || (slots && at >= toy_reserved)) {
            t->bad = 1;
            return MEND_ERANGE;
        }
        t->cache[at] = tokens[i];
    }
    t->valid = n;
    t->positions += n;
    t->calls++;
    int32_t seq[8192];
    for (int k = 0; k < n_out; k++) {
        const int i = out_rows[k], self = slots ? slots[i] : i;
        const mend_eval_row *r = &rows[i];
        if (r->ctx0 > r->ctx1 || r->ctx1 > self || r->own0 > self) t->bad = 1;
        int len = 0;
        for (int j = r->ctx0; j < r->ctx1; j++) seq[len++] = t->cache[j];
        for (int j = r->own0; j <= self; j++) seq[len++] = t->cache[j];
        if (len != r->pos + 1) t->bad = 1;
        toy_row(seq, len, logits + (size_t)k * TV);
    }
    return 0;
}

static int toy_reserve_lane(void *u, int lane, int n) {
    toy *t = u;
    if (lane != 0 || n > 8192) t->bad = 1;
    toy_reserved = n;
    return 0;
}

static toy T;
static mend_eval_backend toy_backend(int window) {
    mend_eval_backend b;
    memset(&b, 0, sizeof b);
    b.user = &T;
    b.n_vocab = TV;
    b.window = window;
    b.max_batch = 3;    /* small, so spans are split into several calls */
    b.prefix_token = 1;
    b.tokenize = toy_tok;
    b.detokenize = toy_detok;
    b.forward = toy_forward;
    b.is_eog = toy_is_eog;
    return b;
}

/* The scorer's exponentials are float (the vector kernel), the reference's
 * double; a wrongly shared prefix moves an ll by far more. */
#define LL_TOL 1e-5

/* lm-eval's rules, written out directly, one request at a time */
static double ref_ll(const char *ctx, const char *cont, int window, int *greedy, int *trunc) {
    size_t lc = strlen(ctx);
    size_t keep = lc;
    while (keep > 0 && (ctx[keep - 1] == ' ' || ctx[keep - 1] == '\n')) keep--;
    char whole[4096];
    snprintf(whole, sizeof whole, "%s%s", ctx, cont);   /* ctx[:keep] + (ctx[keep:] + cont) */
    int32_t w[4096], c[4096], full[8192];
    size_t nw = toy_encode(whole, strlen(whole), w);
    size_t nc = toy_encode(ctx, keep, c);
    size_t nk = nw - nc;
    size_t len = 0;
    for (size_t i = 0; i < nc; i++) full[len++] = c[i];
    for (size_t i = nc; i < nw; i++) full[len++] = w[i];
    int32_t *f = full;
    *trunc = 0;
    if (len > (size_t)window + 1) {
        f = full + (len - (size_t)window - 1);
        len = (size_t)window + 1;
        *trunc = 1;
    }
    double ll = 0;
    *greedy = 1;
    float row[TV];
    for (size_t p = len - nk; p < len; p++) {
        toy_row(f, (int)p, row);
        double mx = row[0];
        int am = 0;
        for (int j = 1; j < TV; j++)
            if (row[j] > mx) mx = row[j], am = j;
        double s = 0;
        for (int j = 0; j < TV; j++) s += exp(row[j] - mx);
        ll += row[f[p]] - mx - log(s);
        if (am != f[p]) *greedy = 0;
    }
    return ll;
}

static void check_group(int window, int n, const char **ctxs, const char **conts, int expect_saving) {
    mend_eval_backend b = toy_backend(window);
    mend_eval_ll out[16];
    mend_eval_stats st;
    memset(&st, 0, sizeof st);
    T.bad = 0;
    T.valid = 0;
    CHECK_OK(mend_eval_loglikelihood(&b, n, ctxs, conts, 0, out, &st));
    CHECK(!T.bad);
    for (int i = 0; i < n; i++) {
        int g, tr;
        double r = ref_ll(ctxs[i], conts[i], window, &g, &tr);
        CHECK_NEAR(out[i].ll, r, LL_TOL);
        CHECK(out[i].greedy == g);
        CHECK(out[i].truncated == tr);
    }
    if (expect_saving) CHECK_MSG(st.tokens_run < st.tokens_naive, "run %lld naive %lld",
                                 (long long)st.tokens_run, (long long)st.tokens_naive);
    mend_eval_scratch_free(&b);
}

static void test_encode_pair(void) {
    mend_eval_backend b = toy_backend(100);
    int32_t *c, *k;
    size_t nc, nk;
    /* trailing space moves to the continuation: "ab " + "cd" -> "ab" | " cd" */
    CHECK_OK(mend_eval_encode_pair(&b, "ab ", "cd", &c, &nc, &k, &nk));
    CHECK(nc == 2 && c[0] == 'a' && c[1] == 'b');
    CHECK(nk == 2 && k[0] == 256 + 'c' - 'a' && k[1] == 'd');
    free(c), free(k);
    /* a merge across the boundary: tok("zxyq") = z,xy,q; tok("zx") = z,x; the
     * continuation is whole[2:] = [q] and the input is z,x,q (lm-eval's rule) */
    CHECK_OK(mend_eval_encode_pair(&b, "zx", "yq", &c, &nc, &k, &nk));
    CHECK(nc == 2 && c[0] == 'z' && c[1] == 'x');
    CHECK(nk == 1 && k[0] == 'q');
    free(c), free(k);
    /* empty context: conditioned on the prefix token */
    CHECK_OK(mend_eval_encode_pair(&b, "", " a", &c, &nc, &k, &nk));
    CHECK(nc == 1 && c[0] == 1 && nk == 1 && k[0] == 256);
    free(c), free(k);
}

static void test_sharing(void) {
    const char *q = "Question: which one?\nAnswer:";
    const char *ctx4[] = {q, q, q, q};
    const char *ch4[] = {" yes", " yes sir", " no", " the red one."};
    check_group(4096, 4, ctx4, ch4, 1);
    /* a choice that is a prefix of another and scores inside the shared run */
    const char *ctx2[] = {"Q: x", "Q: x"};
    const char *ch2[] = {" a", " a b c"};
    check_group(4096, 2, ctx2, ch2, 1);
    /* boundary merge: contexts identical but inputs differ inside the context */
    const char *ctx3[] = {"zx", "zx", "zx"};
    const char *ch3[] = {"yq", "q", "yyy"};
    check_group(4096, 3, ctx3, ch3, 0);
    /* schema: different contexts, same continuation */
    const char *cs[] = {"the cat on the mat", "the dog on the mat", "a"};
    const char *kc[] = {" sat down.", " sat down.", " sat down."};
    check_group(4096, 3, cs, kc, 0);
    /* single request (language modelling) */
    const char *c1[] = {"once upon a"};
    const char *k1[] = {" time"};
    check_group(4096, 1, c1, k1, 0);
    /* left truncation to a window of 8 tokens */
    const char *cl[] = {"a long context that will not fit", "a long context that will not fit"};
    const char *kl[] = {" at all", " in"};
    check_group(8, 2, cl, kl, 0);
    /* continuation longer than the window is an error */
    mend_eval_backend b = toy_backend(3);
    mend_eval_ll out[1];
    const char *c2[] = {"a"};
    const char *k2[] = {" b c d e f"};
    CHECK_ERR(mend_eval_loglikelihood(&b, 1, c2, k2, 0, out, NULL), MEND_ERANGE, "window");
    mend_eval_scratch_free(&b);
}

static void test_generate(void) {
    mend_eval_backend b = toy_backend(64);
    const char *until[] = {"\n", ".", ","};
    char *raw, *cut;
    T.valid = 0;
    CHECK_OK(mend_eval_generate(&b, "Question: q?\nAnswer:", 32, until, 3, &raw, &cut, NULL));
    /* reference: greedy from scratch */
    int32_t seq[256];
    size_t n = toy_encode("Question: q?\nAnswer:", strlen("Question: q?\nAnswer:"), seq);
    int32_t gen[64];
    int ng = 0;
    char *text = NULL;
    for (;;) {
        float row[TV];
        toy_row(seq, (int)n, row);
        int am = 0;
        for (int j = 1; j < TV; j++)
            if (row[j] > row[am]) am = j;
        if (am == TOK_EOG) break;
        gen[ng++] = am;
        seq[n++] = am;
        free(text);
        toy_detok(NULL, gen, (size_t)ng, &text);
        if (strpbrk(text, "\n.,") || ng >= 32) break;
    }
    CHECK(text && strcmp(raw, text) == 0);
    size_t k = strcspn(text, "\n.,");
    CHECK(strlen(cut) == k && strncmp(cut, text, k) == 0);
    free(text);
    free(raw);
    free(cut);
    mend_eval_scratch_free(&b);
}

static void test_text_rules(void) {
    CHECK(mend_eval_exact_match("The Beatles!", "the beatles"));
    CHECK(mend_eval_exact_match("Caf\xc3\x89", "caf\xc3\xa9"));       /* É -> é */
    CHECK(mend_eval_exact_match("a.b", "ab"));
    CHECK(!mend_eval_exact_match("the onion", "onion"));               /* articles stay */
    CHECK(!mend_eval_exact_match("onion ", "onion"));                   /* spaces stay */
    CHECK(mend_eval_exact_match("\xce\x91\xce\xb8", "\xce\xb1\xce\xb8")); /* Greek */
    char *s = mend_eval_strip(" \t Onion \xc2\xa0\n");
    CHECK(strcmp(s, "Onion") == 0);
    free(s);
    CHECK(mend_utf8_len("caf\xc3\xa9 au lait") == 12);
    /* the one UTF-8 decoder: well-formed sequences of 1..4 bytes decode,
     * everything Python's decoder refuses is refused */
    static const struct { const char *s; size_t n; int len; uint32_t cp; } U[] = {
        {"A", 1, 1, 0x41}, {"\xc3\xa9", 2, 2, 0xE9}, {"\xe2\x82\xac", 3, 3, 0x20AC},
        {"\xf0\x9f\x98\x80", 4, 4, 0x1F600}, {"\xf4\x8f\xbf\xbf", 4, 4, 0x10FFFF},
        {"\xc0\x80", 2, 0, 0}, {"\xe0\x80\xaf", 3, 0, 0},            /* overlong */
        {"\xed\xa0\x80", 3, 0, 0}, {"\xf4\x90\x80\x80", 4, 0, 0},  /* surrogate, > U+10FFFF */
        {"\x80", 1, 0, 0}, {"\xe2\x82\xac", 2, 0, 0}, {"\xe2(", 2, 0, 0}, /* stray, cut off */
    };
    for (size_t i = 0; i < sizeof U / sizeof *U; i++) {
        uint32_t cp = 0;
        int k = mend_utf8_decode(U[i].s, U[i].n, &cp);
        CHECK_MSG(k == U[i].len && (!k || cp == U[i].cp), "utf8 case %zu: %d U+%04X", i, k, (unsigned)cp);
        char enc[4];
        if (k) CHECK(mend_utf8_encode(cp, enc) == k && memcmp(enc, U[i].s, (size_t)k) == 0);
    }
    /* a byte that starts no character is kept as it is by the normalizer */
    char *nb = mend_eval_normalize("A\xc0\x80" "b.");
    CHECK(nb && strcmp(nb, "a\xc0\x80" "b") == 0);
    free(nb);
}

static void test_tasks(void) {
    mend_task *t = NULL;
    CHECK_OK(mend_task_load(&t, test_src("tests/fixtures/eval/toy_mc.jsonl"), 0));
    CHECK(t && t->kind == MEND_TASK_MC && t->n == 2 && t->ex[1].line == 3);
    CHECK(t && strcmp(t->name, "toy_mc") == 0);
    mend_task_free(t);
    CHECK_OK(mend_task_load(&t, test_src("tests/fixtures/eval/toy_mc.jsonl"), 1));
    CHECK(t && t->n == 1 && t->n_total == 2);
    mend_task_free(t);
    CHECK_ERR(mend_task_load(&t, test_src("tests/fixtures/eval/bad_gold.jsonl"), 0), MEND_ERANGE,
              "bad_gold.jsonl:2: gold 2 is out of range");
    CHECK_ERR(mend_task_load(&t, test_src("tests/fixtures/eval/bad_empty.jsonl"), 0), MEND_EFORMAT,
              "bad_empty.jsonl:2: field \"choices\" is an empty list");
    CHECK_ERR(mend_task_load(&t, test_src("tests/fixtures/eval/bad_json.jsonl"), 0), MEND_EFORMAT,
              "bad_json.jsonl:2: malformed JSON");
    CHECK_ERR(mend_task_load(&t, test_src("tests/fixtures/eval/bad_mixed.jsonl"), 0), MEND_EFORMAT,
              "bad_mixed.jsonl:2:");
    CHECK_ERR(mend_task_load(&t, test_src("tests/fixtures/eval/missing.jsonl"), 0), MEND_EIO, "missing");
    CHECK(t == NULL);
}

/* examples end to end on the toy, checked against ref_ll */
static void test_examples(void) {
    mend_eval_backend b = toy_backend(4096);
    mend_task *t = NULL;
    mend_eval_result r;
    CHECK_OK(mend_task_load(&t, test_src("tests/fixtures/eval/toy_mc.jsonl"), 0));
    CHECK_OK(mend_eval_example(&b, t, 0, &r, NULL));
    double best = -1e300, bestn = -1e300;
    int pred = -1, pred_norm = -1;
    static const int nchar[] = {3, 7, 2, 12};
    for (int k = 0; k < 4; k++) {
        char cont[64];
        snprintf(cont, sizeof cont, " %s", t->ex[0].options[k]);
        int g, tr;
        double ll = ref_ll(t->ex[0].context, cont, 4096, &g, &tr);
        CHECK_NEAR(r.ll[k], ll, LL_TOL);
        CHECK(r.n_chars[k] == nchar[k]);
        if (ll > best) best = ll, pred = k;
        if (ll / nchar[k] > bestn) bestn = ll / nchar[k], pred_norm = k;
    }
    CHECK(r.pred == pred && r.pred_norm == pred_norm);
    CHECK(r.acc == (pred == 1) && r.acc_norm == (pred_norm == 1));
    char *line = NULL;
    CHECK_OK(mend_result_json(t, 0, &r, "toy.gguf", NULL, &line));
    CHECK(line && strstr(line, "\"task\":\"toy_mc\"") && strstr(line, "\"prompt\":null"));
    mend_eval_result_free(&r);
    /* the query ends in a space: it moves onto the continuation */
    CHECK_OK(mend_eval_example(&b, t, 1, &r, NULL));
    int g, tr;
    CHECK_NEAR(r.ll[0], ref_ll("Question: pick\nAnswer: ", " ab", 4096, &g, &tr), LL_TOL);
    mend_eval_result_free(&r);
    mend_task_free(t);

    CHECK_OK(mend_task_load(&t, test_src("tests/fixtures/eval/toy_schema.jsonl"), 0));
    CHECK_OK(mend_eval_example(&b, t, 0, &r, NULL));
    CHECK_NEAR(r.ll[1], ref_ll("the dog", " sat down.", 4096, &g, &tr), LL_TOL);
    mend_eval_result_free(&r);
    mend_task_free(t);

    CHECK_OK(mend_task_load(&t, test_src("tests/fixtures/eval/toy_lm.jsonl"), 0));
    CHECK_OK(mend_eval_example(&b, t, 0, &r, NULL));
    CHECK_NEAR(r.ll[0], ref_ll("once upon a", " time", 4096, &g, &tr), LL_TOL);
    CHECK(r.acc == g && r.pred_text != NULL);
    mend_eval_result_free(&r);
    mend_task_free(t);

    CHECK_OK(mend_task_load(&t, test_src("tests/fixtures/eval/toy_gen.jsonl"), 0));
    CHECK_OK(mend_eval_example(&b, t, 0, &r, NULL));
    CHECK(r.pred_text && r.raw_text);
    mend_eval_result_free(&r);
    mend_task_free(t);
    free(line);
    mend_eval_scratch_free(&b);
}

static void write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    fputs(s, f);
    fclose(f);
}

/* Several examples packed into shared forward_rows calls give the
 * one-by-one results, including an example too long for one call (run alone
 * through forward), an LM task (greedy tokens) and generation (continuous
 * batching over slots). */
static void test_packed(void) {
    char files[4][64];
    snprintf(files[0], sizeof files[0], "/tmp/mend_packed_mc_%d.jsonl", (int)getpid());
    snprintf(files[1], sizeof files[1], "/tmp/mend_packed_schema_%d.jsonl", (int)getpid());
    snprintf(files[2], sizeof files[2], "/tmp/mend_packed_lm_%d.jsonl", (int)getpid());
    snprintf(files[3], sizeof files[3], "/tmp/mend_packed_gen_%d.jsonl", (int)getpid());
    /* toy tokens: " " + letter is one token, "xy" one, anything else a byte */
    write_text(files[0], "{\"query\": \"Q: x\", \"choices\": [\"yes\", \"yes sir\", \"no\"], \"gold\": 1}\n"
                         "{\"query\": \"Question: pick\\nAnswer: \", \"choices\": [\"ab\", \"abc\"], \"gold\": 0}\n"
                         "{\"query\": \"a b\", \"choices\": [\"c\", \"d e\"], \"gold\": 0}\n"
                         "{\"query\": \"xyz\", \"choices\": [\"y\", \"xy\", \"z\"], \"gold\": 2}\n"
                         "{\"query\": \"p\", \"choices\": [\"q\", \"r\"], \"gold\": 1}\n"
                         "{\"query\": \"k l m\", \"choices\": [\"n o p q r s\", \"n o\"], \"gold\": 0}\n");
    write_text(files[1], "{\"context_options\": [\"the cat\", \"the dog\"], \"continuation\": \"sat\", \"gold\": 1}\n"
                         "{\"context_options\": [\"a\", \"b c\"], \"continuation\": \"d\", \"gold\": 0}\n"
                         "{\"context_options\": [\"x\", \"x y\"], \"continuation\": \"z z\", \"gold\": 0}\n");
    write_text(files[2], "{\"context\": \"once upon a\", \"continuation\": \"time\"}\n"
                         "{\"context\": \"a b\", \"continuation\": \"c d\"}\n"
                         "{\"context\": \"xy\", \"continuation\": \"z\"}\n");
    /* generation: contexts longer than a forward of 12 rows, an empty one,
     * more examples than rows per step */
    write_text(files[3], "{\"context\": \"Question: who wrote it?\\nAnswer:\", \"answer\": \"x\", \"aliases\": [\"x\"]}\n"
                         "{\"context\": \"Q: a\", \"answer\": \"b\", \"aliases\": [\"zz\"]}\n"
                         "{\"context\": \"\", \"answer\": \"c\", \"aliases\": [\"zz\"]}\n"
                         "{\"context\": \"Question: a very long question indeed, about many things?\\nAnswer:\", \"answer\": \"d\", \"aliases\": [\"zz\"]}\n"
                         "{\"context\": \"k l m\", \"answer\": \"n\", \"aliases\": [\"zz\"]}\n"
                         "{\"context\": \"xy xy\", \"answer\": \"z\", \"aliases\": [\"zz\"]}\n"
                         "{\"context\": \"p\", \"answer\": \"q\", \"aliases\": [\"zz\"]}\n"
                         "{\"context\": \"r s t u v w\", \"answer\": \"x\", \"aliases\": [\"zz\"]}\n"
                         "{\"context\": \"Question: and?\\nAnswer:\", \"answer\": \"y\", \"aliases\": [\"zz\"]}\n"
                         "{\"context\": \"a\", \"answer\": \"b\", \"aliases\": [\"zz\"]}\n"
                         "{\"context\": \"b\", \"answer\": \"c\", \"aliases\": [\"zz\"]}\n"
                         "{\"context\": \"c\", \"answer\": \"d\", \"aliases\": [\"zz\"]}\n"
                         "{\"context\": \"d\", \"answer\": \"e\", \"aliases\": [\"zz\"]}\n"
                         "{\"context\": \"e f\", \"answer\": \"g\", \"aliases\": [\"zz\"]}\n");
    for (int f = 0; f < 4; f++) {
        mend_task *t = NULL;
        CHECK_OK(mend_task_load(&t, files[f], 0));
        if (!t) continue;
        int n = (int)t->n;
        size_t idx[16];
        mend_eval_result one[16], all[16];
        for (int k = 0; k < n && k < 16; k++) idx[k] = (size_t)(n - 1 - k);   /* any order */
        if (n > 16) n = 16;
        mend_eval_backend b = toy_backend(4096);
        for (int k = 0; k < n; k++) CHECK_OK(mend_eval_example(&b, t, idx[k], &one[k], NULL));
        mend_eval_stats s1, s2;
        memset(&s1, 0, sizeof s1);
        memset(&s2, 0, sizeof s2);
        for (int k = 0; k < n; k++) {
            mend_eval_result_free(&one[k]);
            CHECK_OK(mend_eval_example(&b, t, idx[k], &one[k], &s1));
        }
        b.forward_rows = toy_forward_rows;
        b.reserve_lane = toy_reserve_lane;
        b.max_batch = 12;
        T.bad = 0;
        T.calls = 0;
        CHECK_OK(mend_eval_examples(&b, t, idx, n, all, &s2));
        CHECK(!T.bad);
        if (t->kind == MEND_TASK_GEN)   /* contexts packed, then a forward per step for all examples */
            CHECK_MSG(T.calls >= 1 && T.calls * 4 <= s2.tokens_run, "%s: %d packed calls for %lld positions",
                      files[f], T.calls, (long long)s2.tokens_run);
        else
            CHECK_MSG(T.calls >= 1 && T.calls < n, "%s: %d packed calls for %d examples", files[f], T.calls, n);
        CHECK(s1.tokens_run == s2.tokens_run && s1.tokens_naive == s2.tokens_naive);
        for (int k = 0; k < n; k++) {
            CHECK(one[k].n == all[k].n && one[k].pred == all[k].pred && one[k].pred_norm == all[k].pred_norm);
            for (int c = 0; c < one[k].n && c < all[k].n; c++) {
                CHECK_NEAR(one[k].ll[c], all[k].ll[c], 1e-12);
                CHECK(one[k].greedy[c] == all[k].greedy[c] && one[k].n_tokens[c] == all[k].n_tokens[c]);
            }
            CHECK((one[k].pred_text == NULL) == (all[k].pred_text == NULL));
            if (one[k].pred_text && all[k].pred_text) CHECK(!strcmp(one[k].pred_text, all[k].pred_text));
            CHECK((one[k].raw_text == NULL) == (all[k].raw_text == NULL));
            if (one[k].raw_text && all[k].raw_text) CHECK(!strcmp(one[k].raw_text, all[k].raw_text));
            CHECK(one[k].em == all[k].em);
            mend_eval_result_free(&one[k]);
            mend_eval_result_free(&all[k]);
        }
        mend_eval_scratch_free(&b);
        mend_task_free(t);
        unlink(files[f]);
    }
}


static void test_results(void) {
    char path[] = "/tmp/mend-test-results-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    /* acc 1,0,1,1 ; acc_norm 0,0,1,1 ; a partial last line */
    write_text(path,
               "{\"task\":\"t\",\"index\":0,\"kind\":\"multiple_choice\",\"model\":\"m\",\"prompt\":null,\"acc\":1,\"acc_norm\":0}\n"
               "{\"task\":\"t\",\"index\":1,\"kind\":\"multiple_choice\",\"model\":\"m\",\"prompt\":null,\"acc\":0,\"acc_norm\":0}\n"
               "\n"
               "{\"task\":\"l\",\"index\":0,\"kind\":\"language_modeling\",\"model\":\"m\",\"prompt\":null,\"acc\":1,\"ll\":[-1.0]}\n"
               "{\"task\":\"t\",\"index\":2,\"kind\":\"multiple_choice\",\"model\":\"m\",\"prompt\":null,\"acc\":1,\"acc_norm\":1}\n"
               "{\"task\":\"l\",\"index\":1,\"kind\":\"language_modeling\",\"model\":\"m\",\"prompt\":null,\"acc\":0,\"ll\":[-3.0]}\n"
               "{\"task\":\"t\",\"index\":3,\"kind\":\"multiple_choice\",\"model\":\"m\",\"prompt\":null,\"acc\":1,\"acc_norm\":1}\n"
               "{\"task\":\"t\",\"index\":2,\"kind\":\"multiple_choice\",\"model\":\"m\",\"prompt\":null,\"acc\":0,\"acc_norm\":0}\n"
               "{\"task\":\"t\",\"index\":4,\"kind\":\"multiple_ch");
    mend_results res;
    CHECK_OK(mend_results_load(path, &res));
    CHECK(res.partial == 1 && res.n == 7);
    mend_task_summary *s = NULL;
    size_t ns = 0;
    CHECK_OK(mend_results_summarize(&res, &s, &ns));
    CHECK(ns == 2);
    if (ns == 2) {
        CHECK(strcmp(s[0].task, "t") == 0 && s[0].n == 4 && s[0].duplicates == 1);
        /* mean 0.75, sample sd sqrt(0.25) = 0.5 -> se 0.25 */
        CHECK_NEAR(s[0].acc, 0.75, 1e-12);
        CHECK_NEAR(s[0].acc_se, 0.25, 1e-12);
        /* acc_norm 0,0,1,1: mean .5, sd sqrt(1/3), se sqrt(1/3)/2 */
        CHECK_NEAR(s[0].acc_norm_se, sqrt(1.0 / 3.0) / 2.0, 1e-12);
        /* ppl exp(2); stderr: lm-eval's bootstrap_stderr(perplexity, [-1, -3],
         * 100000) = 6.464890884236977 (lm-eval 0.4.13, Python 3.11) */
        CHECK_NEAR(s[1].ppl, exp(2.0), 1e-9);
        CHECK_NEAR(s[1].ppl_se, 6.464890884236977, 1e-9);
        mend_report_run run = {.name = "run1", .s = s, .n = ns};
        char *md = NULL;
        CHECK_OK(mend_report_markdown(&run, 1, &md));
        CHECK(md && strstr(md, "| t | 4 | acc | 0.7500 ± 0.2500 |"));
        CHECK(md && strstr(md, "| l | 2 | ppl | 7.389 ± 6.465 |"));
        free(md);
        char *gp = NULL;
        CHECK_OK(mend_report_gnuplot_script(&run, 1, "/tmp/x.png", &gp));
        CHECK(gp && strstr(gp, "\"t\" 0.750000 0.250000"));
        free(gp);
    }
    mend_summaries_free(s, ns);
    mend_results_free(&res);
    /* bootstrap_stderr(perplexity, [-1, -3, -0.5, -7.25, -2], 2000) in lm-eval */
    const double ll5[] = {-1.0, -3.0, -0.5, -7.25, -2.0};
    CHECK_NEAR(mend_bootstrap_stderr_ppl(ll5, 5, 2000), 54.78197799550569, 1e-9);
    /* a complete malformed line is an error naming the line */
    write_text(path, "{\"task\":\"t\",\"index\":0,\"kind\":\"multiple_choice\",\"model\":\"m\",\"acc\":1,\"acc_norm\":0}\n{oops}\n");
    CHECK_ERR(mend_results_load(path, &res), MEND_EFORMAT, ":2: malformed results line");
    unlink(path);
}

int main(void) {
    test_encode_pair();
    test_sharing();
    test_generate();
    test_text_rules();
    test_tasks();
    test_examples();
    test_packed();
    test_results();
    return test_finish();
}
