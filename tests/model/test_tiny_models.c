#define _GNU_SOURCE
/* Loader and forward pass on two tiny random GGUF models (llama: tied head,
 * adjacent-pair RoPE; qwen2: q/k/v biases, half-split RoPE, own head; mixed
 * f32 / f16 / bf16 / q4_0 / q4_1 / q8_0 tensors) against the NumPy reference
 * logits of tests/fixtures/logits/make_logits.py, both dequantized to f32 and
 * kept packed (native block kernels, plus dequantized tiles for bf16). Also: the KV cache (token by token
 * and chunked == one batch, forking from an earlier position), embeddings
 * input == token input, packed weights == dequantized weights, argument
 * errors, and malformed files (each a clear error naming file and tensor). */
#include <stdio.h>
#include <unistd.h>

#include "kernels/quants.h"
#include "model/model.h"
#include "test.h"
#include "fixture.h"

#define FX "tests/fixtures/logits/"

static void forward_checks(mend_model *m, const int32_t *ids, int n, const float *ref,
                           const float *ref_packed, const char *name, int keep_packed) {
    const int V = m->cfg.n_vocab, D = m->cfg.dim;
    mend_state *s = NULL;
    CHECK_OK(mend_state_new(&s, m, 64, 64));
    if (!s) return;
    float *lg = calloc((size_t)n * V, sizeof(float)), *lg2 = calloc((size_t)n * V, sizeof(float));
    float *last = calloc(V, sizeof(float));

    /* one batch vs the reference */
    CHECK_OK(mend_forward(s, ids, NULL, n, 0, lg, 1));
    double d = fx_max_abs(lg, ref, (size_t)n * V);
    /* runs that differ only in batching agree to f32 rounding of the logits */
    double scale = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) scale = fmax(scale, fabs(ref[i]));
    /* (with keep_packed, activations are rounded to 8 bits, and a last-bit
     * difference between BLAS blockings for different batch sizes can flip
     * one rounding: allow a few quantization steps) */
    const double tol = (keep_packed ? 2e-2 : 1e-6) * scale;
    printf("%s (keep_packed=%d): max |logits - reference| = %.3g over %d x %d\n", name, keep_packed, d, n, V);
    /* keep_packed runs the native block kernels, which quantize activations
     * to 8 bits per block of 32 as ggml does (about 0.5% of the logit range
     * here); the packed reference reproduces those numerics */
    CHECK_MSG(d <= (keep_packed ? 0.01 * scale : 1e-4), "%s keep_packed=%d: max |diff| %g", name, keep_packed, d);
    if (keep_packed && ref_packed) {
        d = fx_max_abs(lg, ref_packed, (size_t)n * V);
        printf("%s (keep_packed=1): max |logits - packed reference| = %.3g\n", name, d);
        CHECK_MSG(d <= 1e-4, "%s keep_packed: max |diff| to the packed reference %g", name, d);
    }

    /* token by token through the cache */
    for (int i = 0; i < n; i++) CHECK_OK(mend_forward(s, ids + i, NULL, 1, i, lg2 + (size_t)i * V, 1));
    d = fx_max_abs(lg2, lg, (size_t)n * V);
    CHECK_MSG(d <= tol, "%s: decode vs batch max |diff| %g", name, d);

    /* chunks of 5 in a state with max_batch 5, and last-position logits */
    mend_state *s5 = NULL;
    CHECK_OK(mend_state_new(&s5, m, 64, 5));
    if (s5) {
        memset(lg2, 0, (size_t)n * V * sizeof(float));
        CHECK_OK(mend_forward(s5, ids, NULL, 7, 0, lg2, 1));
        CHECK_OK(mend_forward(s5, ids + 7, NULL, n - 7, 7, lg2 + (size_t)7 * V, 1));
        d = fx_max_abs(lg2, lg, (size_t)n * V);
        CHECK_MSG(d <= tol, "%s: chunked vs batch max |diff| %g", name, d);
        CHECK_OK(mend_forward(s5, ids, NULL, n, 0, last, 0));
        d = fx_max_abs(last, lg + (size_t)(n - 1) * V, V);
        CHECK_MSG(d <= tol, "%s: last-only logits max |diff| %g", name, d);
        mend_state_free(s5);
    }

    /* embeddings in == tokens in */
    float *emb = malloc((size_t)n * D * sizeof(float));
    const mend_mat *E = &m->tok_embd_packed;   /* q8_0 in these files */
    for (int i = 0; i < n; i++)
        CHECK(mend_dequantize_row(E->type, (const uint8_t *)E->data + (size_t)ids[i] * E->row_bytes,
                                  emb + (size_t)i * D, D) == 0);
    CHECK_OK(mend_forward(s, NULL, emb, n, 0, lg2, 1));
    d = fx_max_abs(lg2, lg, (size_t)n * V);
    CHECK_MSG(d <= 1e-6, "%s: embeds vs tokens max |diff| %g", name, d);

    /* forking: overwrite positions >= 10 with other tokens, compare with a
     * fresh run of the edited sequence */
    int32_t *alt = malloc(n * sizeof *alt);
    for (int i = 0; i < n; i++) alt[i] = i < 10 ? ids[i] : (ids[i] + 7) % V;
    CHECK_OK(mend_forward(s, ids, NULL, n, 0, NULL, 0));
    CHECK_OK(mend_forward(s, alt + 10, NULL, n - 10, 10, lg2 + (size_t)10 * V, 1));
    CHECK_OK(mend_forward(s, alt, NULL, n, 0, lg, 1));
    d = fx_max_abs(lg2 + (size_t)10 * V, lg + (size_t)10 * V, (size_t)(n - 10) * V);
    CHECK_MSG(d <= tol, "%s: forked vs fresh max |diff| %g", name, d);

    free(alt);
    free(emb);
    free(last);
    free(lg);
    free(lg2);
    mend_state_free(s);
}

static void test_tiny(json_t *e) {
    const char *name = json_string_value(json_object_get(e, "name"));
    char path[512], bin[512];
    snprintf(path, sizeof path, FX "%s", json_string_value(json_object_get(e, "gguf")));
    snprintf(bin, sizeof bin, FX "%s", json_string_value(json_object_get(e, "logits")));
    size_t n;
    int32_t *ids = fx_ids(json_object_get(e, "ids"), &n);
    const int V = (int)json_integer_value(json_object_get(e, "n_vocab"));
    float *ref = fx_floats(bin, n * V);
    snprintf(bin, sizeof bin, FX "%s", json_string_value(json_object_get(e, "logits_packed")));
    float *ref_packed = fx_floats(bin, n * V);
    CHECK(ref != NULL && ref_packed != NULL);
    for (int kp = 0; ref && kp <= 1; kp++) {
        mend_load_opts o = {.keep_packed = kp};
        mend_model *m = NULL;
        CHECK_OK(mend_model_load(&m, test_src(path), &o));
        if (!m) continue;
        mend_model_info info;
        mend_model_get_info(m, &info);
        CHECK(strcmp(info.arch, name) == 0);
        CHECK(info.n_vocab == V && info.dim == 64 && info.n_layers == 2 && info.n_heads == 4 &&
              info.n_kv_heads == 2 && info.head_dim == 16 && info.hidden_dim == 96 && info.ctx_len == 128);
        CHECK(info.tied_embeddings == (strcmp(name, "llama") == 0));
        const int64_t per_layer = 2 * 64 + 64 * 64 * 2 + 32 * 64 * 2 + 3 * 96 * 64 +
                                  (strcmp(name, "qwen2") == 0 ? 64 + 32 + 32 : 0);
        CHECK(info.n_params == (int64_t)V * 64 * (info.tied_embeddings ? 1 : 2) + 64 + 2 * per_layer);
        CHECK(m->cfg.rope_type == (strcmp(name, "qwen2") == 0 ? MEND_ROPE_NEOX : MEND_ROPE_NORM));
        CHECK((m->layers[0].bq != NULL) == (strcmp(name, "qwen2") == 0));
        CHECK(m->layers[1].wq.type == (kp ? MEND_TYPE_Q8_0 : MEND_TYPE_F32));
        CHECK(m->layers_packed[1].wk.type == MEND_TYPE_Q4_1);
        /* qwen2's ffn_up is bf16, which has no native kernel: with keep_packed
         * it runs through the dequantize-a-tile path */
        if (strcmp(name, "qwen2") == 0) CHECK(m->layers_packed[0].w_up.type == MEND_TYPE_BF16);
        CHECK(mend_model_tokenizer(m) == NULL);   /* no tokenizer metadata */
        forward_checks(m, ids, (int)n, ref, ref_packed, name, kp);
        mend_model_free(m);
    }
    free(ref);
    free(ref_packed);
    free(ids);
}

/* ---- malformed files ------------------------------------------------------------ */

static char *g_file;
static size_t g_len;

static char *patched(void) {
    char *b = malloc(g_len);
    memcpy(b, g_file, g_len);
    return b;
}

static uint8_t *find(char *buf, const char *s) {
    return memmem(buf, g_len, s, strlen(s));
}

/* write buf to a temp file, load it, expect code and substrings */
static void expect_load_error(char *buf, size_t len, int code, const char *sub1, const char *sub2) {
    char path[] = "/tmp/mend_tiny_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, buf, len) == (ssize_t)len);
    close(fd);
    mend_model *m = NULL;
    int rc = mend_model_load(&m, path, NULL);
    const char *e = mend_last_error();
    printf("  rejected: %s\n", e);
    CHECK_MSG(rc == code && strstr(e, sub1) && (!sub2 || strstr(e, sub2)) && strstr(e, path),
              "expected %d with '%s' / '%s' and the path, got %d: %s", code, sub1, sub2 ? sub2 : "", rc, e);
    CHECK(m == NULL);
    mend_model_free(m);
    unlink(path);
    free(buf);
}

static void test_bad_files(void) {
    if (mend_read_file(test_src(FX "tiny_llama.gguf"), 1 << 24, &g_file, &g_len) != 0) {
        CHECK_OK(-1);
        return;
    }
    char *b;
    uint8_t *p;

    /* a matrix with the wrong row count: [64, 32] instead of [64, 64] */
    b = patched();
    p = find(b, "blk.1.attn_q.weight");
    CHECK(p != NULL);
    if (p) {
        uint64_t ne1 = 32;
        memcpy(p + strlen("blk.1.attn_q.weight") + 4 + 8, &ne1, 8);
        expect_load_error(b, g_len, MEND_EFORMAT, "'blk.1.attn_q.weight'", "expected [64, 64]");
    } else free(b);

    /* a missing tensor */
    b = patched();
    p = find(b, "blk.1.ffn_up.weight");
    if (p) {
        p[strlen("blk.1.ffn_u")] = 'x';
        expect_load_error(b, g_len, MEND_EFORMAT, "'blk.1.ffn_up.weight' is missing", NULL);
    } else free(b);

    /* a vector stored with the wrong length */
    b = patched();
    p = find(b, "blk.0.ffn_norm.weight");
    if (p) {
        uint64_t ne0 = 32;
        memcpy(p + strlen("blk.0.ffn_norm.weight") + 4, &ne0, 8);
        expect_load_error(b, g_len, MEND_EFORMAT, "'blk.0.ffn_norm.weight'", "expected [64]");
    } else free(b);

    /* an architecture mend does not run */
    b = patched();
    p = find(b, "general.architecture");
    if (p) {
        uint8_t *v = p + strlen("general.architecture") + 4 + 8;   /* type, length */
        CHECK(memcmp(v, "llama", 5) == 0);
        memcpy(v, "gpt2x", 5);
        expect_load_error(b, g_len, MEND_EUNSUPPORTED, "general.architecture", "gpt2x");
    } else free(b);

    /* head_count_kv that does not divide head_count */
    b = patched();
    p = find(b, "llama.attention.head_count_kv");
    if (p) {
        uint32_t three = 3;
        memcpy(p + strlen("llama.attention.head_count_kv") + 4, &three, 4);
        expect_load_error(b, g_len, MEND_EFORMAT, "head_count_kv", NULL);
    } else free(b);

    /* vocab_size disagreeing with the embedding rows */
    b = patched();
    p = find(b, "llama.vocab_size");
    if (p) {
        uint32_t v = 95;
        memcpy(p + strlen("llama.vocab_size") + 4, &v, 4);
        expect_load_error(b, g_len, MEND_EFORMAT, "llama.vocab_size", "token_embd.weight");
    } else free(b);

    /* a missing config key */
    b = patched();
    p = find(b, "llama.feed_forward_length");
    if (p) {
        p[0] = 'x';
        expect_load_error(b, g_len, MEND_EFORMAT, "llama.feed_forward_length", NULL);
    } else free(b);

    /* truncated tensor data */
    b = patched();
    expect_load_error(b, g_len - 1000, MEND_EFORMAT, "", NULL);
    free(g_file);

    /* qwen2 without its k bias */
    if (mend_read_file(test_src(FX "tiny_qwen2.gguf"), 1 << 24, &g_file, &g_len) == 0) {
        b = patched();
        p = find(b, "blk.1.attn_k.bias");
        if (p) {
            p[strlen("blk.1.attn_k.b")] = 'x';
            expect_load_error(b, g_len, MEND_EFORMAT, "'blk.1.attn_k.bias' is missing", NULL);
        } else free(b);
        free(g_file);
    }

    mend_model *m = NULL;
    CHECK_ERR(mend_model_load(&m, "/nonexistent/model.gguf", NULL), MEND_EIO, "/nonexistent/model.gguf");
    CHECK_ERR(mend_model_load(&m, NULL, NULL), MEND_EINVAL, "");
}

static void test_bad_args(void) {
    mend_model *m = NULL;
    CHECK_OK(mend_model_load(&m, test_src(FX "tiny_llama.gguf"), NULL));
    if (!m) return;
    mend_state *s = NULL;
    CHECK_ERR(mend_state_new(&s, m, 0, 8), MEND_EINVAL, "n_ctx");
    CHECK_ERR(mend_state_new(&s, m, 16, 0), MEND_EINVAL, "max_batch");
    CHECK_OK(mend_state_new(&s, m, 16, 64));   /* max_batch clipped to n_ctx */
    CHECK(mend_state_n_ctx(s) == 16);
    int32_t ids[20] = {1, 2, 3};
    float emb[64] = {0}, lg[96];
    CHECK_ERR(mend_forward(s, ids, emb, 1, 0, lg, 0), MEND_EINVAL, "exactly one");
    CHECK_ERR(mend_forward(s, NULL, NULL, 1, 0, lg, 0), MEND_EINVAL, "exactly one");
    CHECK_ERR(mend_forward(s, ids, NULL, 0, 0, lg, 0), MEND_EINVAL, "n is 0");
    CHECK_ERR(mend_forward(s, ids, NULL, 17, 0, lg, 0), MEND_ERANGE, "context of 16");
    CHECK_ERR(mend_forward(s, ids, NULL, 2, 15, lg, 0), MEND_ERANGE, "context of 16");
    CHECK_ERR(mend_forward(s, ids, NULL, 1, -1, lg, 0), MEND_ERANGE, "");
    ids[1] = 96;
    CHECK_ERR(mend_forward(s, ids, NULL, 2, 0, lg, 0), MEND_EINVAL, "token 96 (at index 1)");
    ids[1] = -1;
    CHECK_ERR(mend_forward(s, ids, NULL, 2, 0, lg, 0), MEND_EINVAL, "token -1");
    CHECK_OK(mend_forward(s, ids, NULL, 1, 15, lg, 0));
    mend_state_free(s);
    mend_model_free(m);
}

int main(void) {
    json_t *doc = fx_json(FX "tiny.json");
    CHECK(doc != NULL);
    json_t *models = json_object_get(doc, "models");
    CHECK(json_array_size(models) == 2);
    for (size_t i = 0; i < json_array_size(models); i++) test_tiny(json_array_get(models, i));
    json_decref(doc);
    test_bad_files();
    test_bad_args();
    return test_finish();
}
