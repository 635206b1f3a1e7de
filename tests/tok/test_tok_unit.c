/* Hand-built vocabularies whose encodings follow from the merge rules worked
 * out by hand (see the comments), and bad inputs: every one must give an
 * error naming the field, never a crash. */
#include <unistd.h>
#include "test.h"
#include "io/gguf.h"
#include "tok/tokenizer.h"
#include "util/util.h"

static int encode_is(const mend_tokenizer *t, const char *s, int add_special, int parse_special, const int32_t *want,
                     size_t nw) {
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = mend_tokenize(t, s, strlen(s), add_special, parse_special, &ids, &n);
    int ok = rc == 0 && n == nw && (n == 0 || !memcmp(ids, want, n * sizeof *ids));
    if (!ok) {
        fprintf(stderr, "encode(\"%s\", %d, %d): rc %d, got", s, add_special, parse_special, rc);
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, ", want");
        for (size_t i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
    }
    free(ids);
    return ok;
}

static int decode_is(const mend_tokenizer *t, const int32_t *ids, size_t n, int special, const char *want) {
    char *s = NULL;
    int rc = mend_detokenize_ex(t, ids, n, special, &s);
    int ok = rc == 0 && !strcmp(s, want);
    if (!ok) fprintf(stderr, "decode: rc %d, got \"%s\", want \"%s\"\n", rc, s ? s : "", want);
    free(s);
    return ok;
}

#define ENC(t, s, a, p, ...) do { \
    const int32_t w_[] = {__VA_ARGS__}; \
    CHECK_MSG(encode_is(t, s, a, p, w_, sizeof w_ / sizeof *w_), "encode \"%s\"", s); \
} while (0)
#define DEC(t, sp, want, ...) do { \
    const int32_t w_[] = {__VA_ARGS__}; \
    CHECK(decode_is(t, w_, sizeof w_ / sizeof *w_, sp, want)); \
} while (0)

/* ---- SentencePiece-style vocabulary ------------------------------------
 * 0 <unk>  1 <s>  2 </s>  3..258 <0x00>..<0xFF>  259 ▁  260 a  261 b  262 c
 * 263 ▁a (-1)  264 ab (-2)  265 ▁ab (-3)  266 abc (-4)  267 bc (-0.5)      */
#define SPM_N 268
static char spm_hex[256][8];
static const char *spm_tok[SPM_N];
static int32_t spm_type[SPM_N];
static float spm_score[SPM_N];

static void spm_spec(mend_vocab_spec *s) {
    spm_tok[0] = "<unk>"; spm_type[0] = MEND_TOKEN_UNKNOWN;
    spm_tok[1] = "<s>"; spm_type[1] = MEND_TOKEN_CONTROL;
    spm_tok[2] = "</s>"; spm_type[2] = MEND_TOKEN_CONTROL;
    for (int b = 0; b < 256; b++) {
        snprintf(spm_hex[b], sizeof spm_hex[b], "<0x%02X>", b);
        spm_tok[3 + b] = spm_hex[b];
        spm_type[3 + b] = MEND_TOKEN_BYTE;
    }
    const char *rest[] = {"\xE2\x96\x81", "a", "b", "c", "\xE2\x96\x81" "a", "ab", "\xE2\x96\x81" "ab", "abc", "bc"};
    const float sc[] = {0, 0, 0, 0, -1, -2, -3, -4, -0.5f};
    for (int i = 0; i < 9; i++) {
        spm_tok[259 + i] = rest[i];
        spm_type[259 + i] = MEND_TOKEN_NORMAL;
        spm_score[259 + i] = sc[i];
    }
    memset(s, 0, sizeof *s);
    s->kind = MEND_TOK_SPM;
    s->n_vocab = SPM_N;
    s->tokens = spm_tok;
    s->types = spm_type;
    s->scores = spm_score;
    s->bos = 1; s->eos = 2; s->unk = 0; s->pad = -1; s->eot = -1;
    s->add_bos = 1;
    s->add_space_prefix = 1;
}

static void test_spm(void) {
    mend_vocab_spec s;
    spm_spec(&s);
    mend_tokenizer *t = NULL;
    CHECK_OK(mend_tokenizer_init(&t, &s));
    if (!t) return;
    /* "▁ab": ▁a (-1) beats ab (-2); then ▁a+b = ▁ab */
    ENC(t, "ab", 0, 0, 265);
    /* "▁abc": bc (-0.5) first, then ▁a (-1); a+bc and ▁a+b are gone, ▁a+bc is no token */
    ENC(t, "abc", 0, 0, 263, 267);
    /* "▁cab▁é": only ab merges; é (C3 A9) is no token -> byte fallback */
    ENC(t, "cab \xC3\xA9", 0, 0, 259, 262, 264, 259, 3 + 0xC3, 3 + 0xA9);
    /* BOS from add_bos */
    ENC(t, "ab", 1, 0, 1, 265);
    /* special text: split out only with parse_special; each text fragment
     * after a special token gets the space prefix again (llama.cpp) */
    ENC(t, "x<s>y", 0, 1, 259, 3 + 'x', 1, 259, 3 + 'y');
    ENC(t, "x<s>y", 0, 0, 259, 3 + 'x', 3 + '<', 3 + 's', 3 + '>', 3 + 'y');
    ENC(t, "", 0, 0);
    ENC(t, "", 1, 0, 1);
    DEC(t, 0, "cab \xC3\xA9", 259, 262, 264, 259, 3 + 0xC3, 3 + 0xA9);
    DEC(t, 0, "abc", 1, 263, 267, 2);
    DEC(t, 1, "<s> abc</s>", 1, 263, 267, 2);   /* only a leading space at the very start is dropped */
    char buf[8];
    CHECK(mend_token_piece(t, 3 + 0x41, buf, sizeof buf) == 1 && buf[0] == 'A');
    CHECK(mend_token_piece(t, 265, buf, sizeof buf) == 3 && !memcmp(buf, " ab", 3));
    CHECK(mend_token_piece(t, 265, buf, 2) == 3 && !memcmp(buf, " a", 2));   /* truncated, full length returned */
    CHECK(mend_token_is_eog(t, 2) && !mend_token_is_eog(t, 1));
    mend_tokenizer_free(t);

    /* without add_space_prefix: "ab" -> a+b = ab */
    s.add_space_prefix = 0;
    CHECK_OK(mend_tokenizer_init(&t, &s));
    if (t) ENC(t, "ab", 0, 0, 264);
    mend_tokenizer_free(t);
    /* a missing byte token falls back to <unk> */
    s.add_space_prefix = 1;
    spm_tok[3 + 0xA9] = "<0xA9-missing>";
    CHECK_OK(mend_tokenizer_init(&t, &s));
    if (t) ENC(t, "\xC3\xA9", 0, 0, 259, 3 + 0xC3, 0);
    mend_tokenizer_free(t);
    spm_tok[3 + 0xA9] = spm_hex[0xA9];
}

/* ---- byte-level BPE vocabulary ------------------------------------------
 * ids 0..255: the mapped character of byte b has id b; then
 * 256 Ġt  257 he  258 Ġthe  259 th  260 <|x|> (control)  261 @@ (user-defined)
 * merges by rank: 0 "h e", 1 "Ġ t", 2 "Ġt he", 3 "t h"                   */
#define BPE_N 262
static char bpe_chr[256][4];
static const char *bpe_tok[BPE_N];
static int32_t bpe_type[BPE_N];
static const char *bpe_merges[] = {"h e", "\xC4\xA0 t", "\xC4\xA0t he", "t h"};

static void utf8(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; o[1] = 0; }
    else { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); o[2] = 0; }
}

static void bpe_spec(mend_vocab_spec *s) {
    /* GPT-2 mapping, written out from its definition */
    int k = 0;
    for (int b = 0; b < 256; b++) {
        int self = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        utf8(self ? (uint32_t)b : (uint32_t)(256 + k++), bpe_chr[b]);
        bpe_tok[b] = bpe_chr[b];
        bpe_type[b] = MEND_TOKEN_NORMAL;
    }
    const char *rest[] = {"\xC4\xA0t", "he", "\xC4\xA0the", "th", "<|x|>", "@@"};
    for (int i = 0; i < 6; i++) {
        bpe_tok[256 + i] = rest[i];
        bpe_type[256 + i] = i == 4 ? MEND_TOKEN_CONTROL : i == 5 ? MEND_TOKEN_USER_DEFINED : MEND_TOKEN_NORMAL;
    }
    memset(s, 0, sizeof *s);
    s->kind = MEND_TOK_BPE;
    s->pre = "gpt2";
    s->n_vocab = BPE_N;
    s->tokens = bpe_tok;
    s->types = bpe_type;
    s->n_merges = 4;
    s->merges = bpe_merges;
    s->bos = 260; s->eos = 260; s->unk = -1; s->pad = -1; s->eot = -1;
}

static void test_bpe(void) {
    mend_vocab_spec s;
    bpe_spec(&s);
    mend_tokenizer *t = NULL;
    CHECK_OK(mend_tokenizer_init(&t, &s));
    if (!t) return;
    CHECK(!strcmp(bpe_chr[' '], "\xC4\xA0") && !strcmp(bpe_chr['\n'], "\xC4\x8A"));
    /* " the": he (0), Ġt (1), Ġt+he (2) */
    ENC(t, " the", 0, 0, 258);
    /* "the": he (0) first, so t+h never happens */
    ENC(t, "the", 0, 0, 't', 257);
    ENC(t, "the the", 0, 0, 't', 257, 258);
    /* control token only with parse_special; user-defined always */
    ENC(t, "a<|x|>b", 0, 1, 'a', 260, 'b');
    ENC(t, "a<|x|>b", 0, 0, 'a', '<', '|', 'x', '|', '>', 'b');
    ENC(t, "a@@b", 0, 0, 'a', 261, 'b');
    /* add_bos is off: add_special adds nothing */
    ENC(t, "the", 1, 0, 't', 257);
    /* digits and spaces under the GPT-2 rule: " 12" is one word */
    ENC(t, "x  12", 0, 0, 'x', ' ', ' ', '1', '2');
    /* an invalid byte reads as U+FFFD (EF BF BD) */
    ENC(t, "\xFF", 0, 0, 0xEF, 0xBF, 0xBD);
    DEC(t, 0, "the the", 't', 257, 258);
    DEC(t, 0, "ab", 'a', 260, 'b');
    DEC(t, 1, "a<|x|>b", 'a', 260, 'b');
    DEC(t, 0, "a@@b", 'a', 261, 'b');
    CHECK(mend_token_is_eog(t, 260));
    mend_tokenizer_free(t);

    s.add_bos = 1;
    CHECK_OK(mend_tokenizer_init(&t, &s));
    if (t) ENC(t, "the", 1, 0, 260, 't', 257);
    mend_tokenizer_free(t);
}

static void test_bad_specs(void) {
    mend_vocab_spec s;
    mend_tokenizer *t = NULL;
    bpe_spec(&s);
    s.bos = BPE_N;
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_ERANGE, "bos token id");
    CHECK(t == NULL);
    bpe_spec(&s);
    s.eos = -7;
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_ERANGE, "eos token id");
    bpe_spec(&s);
    const char *m1[] = {"h e", "zz t"};
    s.merges = m1; s.n_merges = 2;
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_EFORMAT, "merges[1]");
    const char *m2[] = {"t e"};
    s.merges = m2; s.n_merges = 1;
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_EFORMAT, "produces");
    const char *m3[] = {"the"};
    s.merges = m3;
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_EFORMAT, "separated by a space");
    s.n_merges = 0;
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_EFORMAT, "needs merges");
    bpe_spec(&s);
    s.pre = "no-such-pre";
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_EUNSUPPORTED, "no-such-pre");
    bpe_spec(&s);
    bpe_type[7] = 42;
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_EFORMAT, "type 42");
    bpe_type[7] = MEND_TOKEN_NORMAL;
    bpe_tok[259] = "he";
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_EFORMAT, "same text");
    bpe_tok[259] = "th";
    bpe_tok[100] = NULL;
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_EFORMAT, "token 100");
    bpe_tok[100] = bpe_chr[100];
    s.bos = -1; s.add_bos = 1;
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_EFORMAT, "add_bos");
    bpe_spec(&s);
    s.kind = 9;
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_EUNSUPPORTED, "kind");
    bpe_spec(&s);
    s.n_vocab = 0;
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_ERANGE, "vocabulary size");
    spm_spec(&s);
    spm_score[262] = NAN;
    CHECK_ERR(mend_tokenizer_init(&t, &s), MEND_EFORMAT, "NaN");
    spm_score[262] = 0;
    CHECK_ERR(mend_tokenizer_init(NULL, &s), MEND_EINVAL, "");
    CHECK(t == NULL);

    /* API misuse on a good tokenizer */
    bpe_spec(&s);
    CHECK_OK(mend_tokenizer_init(&t, &s));
    if (!t) return;
    char buf[8], *txt = NULL;
    int32_t bad[2] = {5, BPE_N};
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_ERR(mend_token_piece(t, BPE_N, buf, sizeof buf), MEND_ERANGE, "outside the vocabulary");
    CHECK_ERR(mend_token_piece(t, -1, buf, sizeof buf), MEND_ERANGE, "outside the vocabulary");
    CHECK_ERR(mend_detokenize(t, bad, 2, &txt), MEND_ERANGE, "token 1 is id 262");
    CHECK(txt == NULL);
    CHECK_ERR(mend_tokenize(t, NULL, 3, 0, 0, &ids, &n), MEND_EINVAL, "");
    CHECK_OK(mend_tokenize(t, NULL, 0, 0, 0, &ids, &n));
    CHECK(n == 0);
    free(ids);
    CHECK(mend_tokenizer_n_vocab(NULL) == 0 && mend_token_bos(NULL) == -1 && !mend_token_is_eog(NULL, 0));
    mend_tokenizer_free(t);
    mend_tokenizer_free(NULL);
}

/* ---- GGUF metadata built in memory ---- */
typedef struct gbuf { uint8_t *p; size_t n, cap; uint64_t nkv; } gbuf;

static void gput(gbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) { b->cap = (b->n + n) * 2 + 256; b->p = realloc(b->p, b->cap); }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void gu32(gbuf *b, uint32_t v) { gput(b, &v, 4); }
static void gu64(gbuf *b, uint64_t v) { gput(b, &v, 8); }
static void gstr(gbuf *b, const char *s) { gu64(b, strlen(s)); gput(b, s, strlen(s)); }
static void gkey(gbuf *b, const char *k, uint32_t type) { gstr(b, k); gu32(b, type); b->nkv++; }
static void kv_str(gbuf *b, const char *k, const char *v) { gkey(b, k, GGUF_TYPE_STRING); gstr(b, v); }
static void kv_u32(gbuf *b, const char *k, uint32_t v) { gkey(b, k, GGUF_TYPE_UINT32); gu32(b, v); }
static void kv_bool(gbuf *b, const char *k, int v) { gkey(b, k, GGUF_TYPE_BOOL); uint8_t x = (uint8_t)v; gput(b, &x, 1); }
static void kv_strs(gbuf *b, const char *k, const char *const *v, int n) {
    gkey(b, k, GGUF_TYPE_ARRAY); gu32(b, GGUF_TYPE_STRING); gu64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) gstr(b, v[i]);
}
static void kv_i32s(gbuf *b, const char *k, const int32_t *v, int n) {
    gkey(b, k, GGUF_TYPE_ARRAY); gu32(b, GGUF_TYPE_INT32); gu64(b, (uint64_t)n);
    gput(b, v, (size_t)n * 4);
}

enum { G_NO_TOKENS = 1, G_SHORT_TYPES = 2, G_BAD_BOS = 4, G_BERT = 8, G_INT_TOKENS = 16, G_NO_MERGES = 32,
       G_BAD_MERGE = 64, G_NO_MODEL = 128, G_ADD_BOS_NO_ID = 256, G_BAD_TYPE_VALUE = 512 };

/* GGUF header + metadata for the byte-level vocabulary above, with faults */
static int gguf_with(int faults, mend_gguf **g, gbuf *b) {
    mend_vocab_spec s;
    bpe_spec(&s);
    gbuf kv = {0};
    if (!(faults & G_NO_MODEL)) kv_str(&kv, "tokenizer.ggml.model", faults & G_BERT ? "bert" : "gpt2");
    kv_str(&kv, "tokenizer.ggml.pre", "gpt-2");
    if (faults & G_INT_TOKENS) kv_i32s(&kv, "tokenizer.ggml.tokens", bpe_type, BPE_N);
    else if (!(faults & G_NO_TOKENS)) kv_strs(&kv, "tokenizer.ggml.tokens", bpe_tok, BPE_N);
    int32_t ty[BPE_N];
    memcpy(ty, bpe_type, sizeof ty);
    if (faults & G_BAD_TYPE_VALUE) ty[3] = 77;
    kv_i32s(&kv, "tokenizer.ggml.token_type", ty, faults & G_SHORT_TYPES ? BPE_N - 1 : BPE_N);
    const char *bad_merges[] = {"h e", "q zz"};
    if (faults & G_BAD_MERGE) kv_strs(&kv, "tokenizer.ggml.merges", bad_merges, 2);
    else if (!(faults & G_NO_MERGES)) kv_strs(&kv, "tokenizer.ggml.merges", bpe_merges, 4);
    if (!(faults & G_ADD_BOS_NO_ID)) kv_u32(&kv, "tokenizer.ggml.bos_token_id", faults & G_BAD_BOS ? 99999 : 260);
    kv_u32(&kv, "tokenizer.ggml.eos_token_id", 260);
    kv_bool(&kv, "tokenizer.ggml.add_bos_token", !!(faults & G_ADD_BOS_NO_ID));
    b->n = 0;
    b->nkv = 0;
    gput(b, "GGUF", 4);
    gu32(b, 3);
    gu64(b, 0);
    gu64(b, kv.nkv);
    gput(b, kv.p, kv.n);
    free(kv.p);
    return mend_gguf_open_mem(g, b->p, b->n, "mem.gguf");
}

static void test_gguf(void) {
    gbuf b = {0};
    mend_gguf *g = NULL;
    mend_tokenizer *t = NULL;
    CHECK_OK(gguf_with(0, &g, &b));
    CHECK_OK(mend_tokenizer_from_gguf(&t, g));
    if (t) {
        ENC(t, " the", 0, 0, 258);
        CHECK(mend_token_bos(t) == 260 && !mend_tokenizer_add_bos(t));
    }
    mend_tokenizer_free(t);
    mend_gguf_close(g);
    struct { int f; int code; const char *msg; } cases[] = {
        {G_NO_TOKENS, MEND_EFORMAT, "tokenizer.ggml.tokens is missing"},
        {G_SHORT_TYPES, MEND_EFORMAT, "tokenizer.ggml.token_type has 261 entries"},
        {G_BAD_BOS, MEND_ERANGE, "tokenizer.ggml.bos_token_id is 99999"},
        {G_BERT, MEND_EUNSUPPORTED, "\"bert\""},
        {G_INT_TOKENS, MEND_EFORMAT, "expected an array of strings"},
        {G_NO_MERGES, MEND_EFORMAT, "tokenizer.ggml.merges is missing"},
        {G_BAD_MERGE, MEND_EFORMAT, "tokenizer.ggml.merges[1]"},
        {G_NO_MODEL, MEND_EFORMAT, "tokenizer.ggml.model"},
        {G_ADD_BOS_NO_ID, MEND_EFORMAT, "add_bos_token"},
        {G_BAD_TYPE_VALUE, MEND_EFORMAT, "tokenizer.ggml.token_type[3] is 77"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        g = NULL;
        t = NULL;
        CHECK_OK(gguf_with(cases[i].f, &g, &b));
        if (!g) continue;
        CHECK_ERR(mend_tokenizer_from_gguf(&t, g), cases[i].code, cases[i].msg);
        CHECK(t == NULL);
        CHECK_MSG(strstr(mend_last_error(), "mem.gguf") != NULL, "error names the file: %s", mend_last_error());
        mend_gguf_close(g);
    }
    free(b.p);
}

/* ---- tokenizer.json ---- */
static char g_dir[64];

static const char *write_tmp(const char *name, const char *text) {
    static char path[4][128];
    static int k;
    k = (k + 1) & 3;
    snprintf(path[k], sizeof path[k], "%s/%s", g_dir, name);
    FILE *f = fopen(path[k], "wb");
    fputs(text, f);
    fclose(f);
    return path[k];
}

#define GOOD_MODEL "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3}, " \
                   "\"merges\": [\"a b\"]}"
#define BL_PRE "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}"

static void test_json(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/mend_tokjson_XXXXXX");
    if (!mkdtemp(g_dir)) { CHECK(0); return; }
    mend_tokenizer *t = NULL;
    char *p = mend_strdup(write_tmp("good.json", "{" GOOD_MODEL ", " BL_PRE ", \"added_tokens\": "
                                          "[{\"id\": 4, \"content\": \"<s>\", \"special\": true}]}"));
    CHECK_OK(mend_tokenizer_from_json(&t, p, NULL));
    if (t) {
        ENC(t, "ab ab", 0, 0, 2, 3, 2);
        ENC(t, "<s>ab", 0, 1, 4, 2);
        CHECK(mend_tokenizer_n_vocab(t) == 5);
    }
    mend_tokenizer_free(t);
    t = NULL;
    char *cfg = mend_strdup(write_tmp("cfg.json", "{\"add_bos_token\": true, \"bos_token\": {\"content\": \"<s>\"}}"));
    CHECK_OK(mend_tokenizer_from_json(&t, p, cfg));
    if (t) {
        ENC(t, "ab", 1, 0, 4, 2);
        CHECK(mend_token_bos(t) == 4);
    }
    mend_tokenizer_free(t);
    t = NULL;
    struct { const char *name, *text; int code; const char *msg; } cases[] = {
        {"syntax.json", "{\"model\": {\"type\": \"BPE\",, }", MEND_EFORMAT, "line 1"},
        {"array.json", "[1, 2]", MEND_EFORMAT, "not a JSON object"},
        {"nomodel.json", "{" BL_PRE "}", MEND_EFORMAT, "model is missing"},
        {"wordpiece.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", MEND_EUNSUPPORTED, "WordPiece"},
        {"novocab.json", "{\"model\": {\"type\": \"BPE\", \"merges\": []}}", MEND_EFORMAT, "model.vocab"},
        {"nomerges.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", MEND_EFORMAT, "model.merges"},
        {"badid.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, \"merges\": []}}", MEND_EFORMAT,
         "model.vocab[\"a\"]"},
        {"gap.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 2}, \"merges\": []}, " BL_PRE "}",
         MEND_EFORMAT, "no token has id 1"},
        {"dupid.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}, " BL_PRE "}",
         MEND_EFORMAT, "id 0"},
        {"badmerge.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}, "
                          BL_PRE "}", MEND_EFORMAT, "model.merges[0]"},
        {"badmerge2.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [7]}, " BL_PRE "}",
         MEND_EFORMAT, "model.merges[0]"},
        {"addedclash.json", "{" GOOD_MODEL ", " BL_PRE ", \"added_tokens\": [{\"id\": 1, \"content\": \"x\"}]}",
         MEND_EFORMAT, "added_tokens[0]"},
        {"addedbad.json", "{" GOOD_MODEL ", " BL_PRE ", \"added_tokens\": [{\"content\": \"x\"}]}", MEND_EFORMAT,
         "added_tokens[0]"},
        {"nobytelevel.json", "{" GOOD_MODEL "}", MEND_EUNSUPPORTED, "ByteLevel"},
        {"badpre.json", "{" GOOD_MODEL ", \"pre_tokenizer\": {\"type\": \"Whitespace\"}}", MEND_EUNSUPPORTED,
         "Whitespace"},
        {"badsplit.json", "{" GOOD_MODEL ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
                          "\"Split\", \"pattern\": {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"}, "
                          "{\"type\": \"ByteLevel\", \"use_regex\": false}]}}", MEND_EUNSUPPORTED, "does not compile"},
        {"badbehavior.json", "{" GOOD_MODEL ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"a\"}, "
                             "\"behavior\": \"Removed\"}}", MEND_EUNSUPPORTED, "Removed"},
        {"dupkey.json", "{\"model\": {}, \"model\": {}}", MEND_EFORMAT, "duplicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *path = write_tmp(cases[i].name, cases[i].text);
        CHECK_ERR(mend_tokenizer_from_json(&t, path, NULL), cases[i].code, cases[i].msg);
        CHECK_MSG(strstr(mend_last_error(), cases[i].name) != NULL, "error names the file: %s", mend_last_error());
        CHECK(t == NULL);
        unlink(path);
    }
    const char *bad_cfg = write_tmp("badcfg.json", "{\"bos_token\": \"<nope>\"}");
    CHECK_ERR(mend_tokenizer_from_json(&t, p, bad_cfg), MEND_EFORMAT, "bos_token \"<nope>\"");
    const char *bad_cfg2 = write_tmp("badcfg2.json", "{\"add_bos_token\": \"yes\"}");
    CHECK_ERR(mend_tokenizer_from_json(&t, p, bad_cfg2), MEND_EFORMAT, "add_bos_token");
    CHECK_ERR(mend_tokenizer_from_json(&t, "/nonexistent/tokenizer.json", NULL), MEND_EIO, "/nonexistent/tokenizer.json");
    CHECK(t == NULL);
    unlink(p);
    unlink(cfg);
    free(p);
    free(cfg);
    unlink(bad_cfg);
    unlink(bad_cfg2);
    rmdir(g_dir);
}

/* Random byte strings (valid and broken UTF-8, special texts, whitespace
 * runs): encoding never fails, ids stay in range, and decoding gives the
 * input back (SPM: any bytes, byte fallback is exact; BPE: valid UTF-8). */
static int valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : c >= 0xC2 && c < 0xE0 ? 2 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xF0 && c < 0xF5 ? 4 : 0;
        if (!k || i + k > n) return 0;
        uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1F : k == 3 ? c & 0x0F : c & 0x07;
        for (size_t j = 1; j < k; j++) {
            if (((unsigned char)s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | ((unsigned char)s[i + j] & 0x3F);
        }
        if ((k == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return 0;
        i += k;
    }
    return 1;
}

static void test_random(void) {
    static const char *parts[] = {"a", "b", "c", "ab", "the", " ", "  ", "\n", "\t", "\r\n", "1", "42", "'s", "'T",
                                  "\xC3\xA9", "\xE4\xBD\xA0", "\xF0\x9F\x98\x80", "\xC3", "\x80", "\xFF", "\xED\xA0\x80",
                                  "\xC0\x80", "<s>", "</s>", "<|x|>", "@@", "<", "|>", "\xE2\x96\x81", "\xC2\xA0", "!?"};
    const size_t np = sizeof parts / sizeof *parts;
    mend_vocab_spec s1, s2;
    spm_spec(&s1);
    mend_tokenizer *spm = NULL, *bpe = NULL;
    CHECK_OK(mend_tokenizer_init(&spm, &s1));
    bpe_spec(&s2);
    CHECK_OK(mend_tokenizer_init(&bpe, &s2));
    if (!spm || !bpe) return;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    char buf[512];
    int fails = 0, trips = 0, trips_ok = 0;
    for (int it = 0; it < 3000; it++) {
        size_t n = 0;
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        int k = (int)(rng >> 58);
        for (int j = 0; j < k; j++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            const char *p = parts[(rng >> 33) % np];
            size_t pl = strlen(p);
            memcpy(buf + n, p, pl);
            n += pl;
        }
        buf[n] = 0;
        for (int w = 0; w < 2; w++) {
            const mend_tokenizer *t = w ? bpe : spm;
            for (int flags = 0; flags < 4; flags++) {
                int32_t *ids = NULL;
                size_t ni = 0;
                if (mend_tokenize(t, buf, n, flags & 1, flags >> 1, &ids, &ni)) { fails++; continue; }
                for (size_t j = 0; j < ni; j++) fails += ids[j] < 0 || ids[j] >= mend_tokenizer_n_vocab(t);
                /* SPM cannot tell a typed U+2581 from a space; a broken lead
                 * byte swallows bytes of the next character (as in llama.cpp) */
                if (flags == 0 && valid_utf8(buf, n) && (w || !strstr(buf, "\xE2\x96\x81"))) {
                    char *back = NULL;
                    trips++;
                    if (!mend_detokenize(t, ids, ni, &back) && strlen(back) == n && !memcmp(back, buf, n)) trips_ok++;
                    else if (trips - trips_ok < 4) {
                        fprintf(stderr, "round trip %s fails:", w ? "bpe" : "spm");
                        for (size_t q = 0; q < n; q++) fprintf(stderr, " %02x", (unsigned char)buf[q]);
                        fprintf(stderr, "\n  ->");
                        for (size_t q = 0; back && back[q]; q++) fprintf(stderr, " %02x", (unsigned char)back[q]);
                        fprintf(stderr, "\n");
                    }
                    free(back);
                }
                free(ids);
            }
        }
    }
    printf("random strings: %d failures, round trips %d/%d\n", fails, trips_ok, trips);
    CHECK(fails == 0);
    CHECK(trips > 500 && trips_ok == trips);
    mend_tokenizer_free(spm);
    mend_tokenizer_free(bpe);
}

int main(void) {
    test_spm();
    test_bpe();
    test_bad_specs();
    test_gguf();
    test_json();
    test_random();
    return test_finish();
}
