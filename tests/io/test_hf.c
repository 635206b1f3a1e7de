/* Hugging Face directories: the tiny checkpoints of tests/fixtures/hf
 * (made by make_hf_fixture.py) against
 *   - the same weights written as a GGUF by the `gguf` package, with the
 *     Q/K row permutation applied in Python: the two mend models must hold
 *     identical f32 weights tensor by tensor (and give identical logits);
 *   - logits of a NumPy float64 forward pass of the HF model (golden.json);
 * F32 / F16 / untied variants written into a temp dir, and bad directories
 * (broken config.json, index pointing at missing shards, wrong shapes, ...)
 * that must fail with a sentence naming the file and the field. */
#define _GNU_SOURCE
#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>
#include "test.h"
#include "io/safetensors.h"
#include "kernels/quants.h"
#include "model/model.h"

static char g_tmp[256];
static json_t *g_golden;

/* ---------------------------------------------------------------- files */

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static char *pj(const char *a, const char *b) {
    static char buf[8][1024];
    static int k = 0;
    k = (k + 1) & 7;
    snprintf(buf[k], sizeof buf[k], "%s/%s", a, b);
    return buf[k];
}

/* plain writes (no fsync): these files live only as long as the test */
static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n)) { perror(path); exit(2); }
    fclose(f);
}

static void copy_file(const char *src, const char *dst) {
    char *b = NULL;
    size_t n = 0;
    if (mend_read_file(src, 64 << 20, &b, &n)) {
        fprintf(stderr, "copy %s -> %s: %s\n", src, dst, mend_last_error());
        exit(2);
    }
    write_bytes(dst, b, n);
    free(b);
}

/* fresh tmp/name holding a copy of every file of fixture dir src */
static const char *case_dir(const char *name, const char *src) {
    static char dir[8][512];
    static int k = 0;
    k = (k + 1) & 7;
    snprintf(dir[k], sizeof dir[k], "%s/%s", g_tmp, name);
    rm_tree(dir[k]);
    mkdir(dir[k], 0755);
    DIR *d = opendir(src);
    if (!d) { perror(src); exit(2); }
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') copy_file(pj(src, e->d_name), pj(dir[k], e->d_name));
    closedir(d);
    return dir[k];
}

static void write_text(const char *path, const char *text) { write_bytes(path, text, strlen(text)); }

static json_t *load_json(const char *path) {
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) { fprintf(stderr, "%s: %s\n", path, e.text); exit(2); }
    return j;
}

static void save_json(const char *path, json_t *j) {
    char *s = json_dumps(j, JSON_INDENT(1));
    write_text(path, s);
    free(s);
}

/* set (value stolen) or, with value NULL, delete a key of dir/config.json */
static void set_config(const char *dir, const char *key, json_t *value) {
    json_t *c = load_json(pj(dir, "config.json"));
    if (value) json_object_set_new(c, key, value);
    else json_object_del(c, key);
    save_json(pj(dir, "config.json"), c);
    json_decref(c);
}

/* ---------------------------------------------------------------- models */

static const char *fixture(const char *rel) { return test_src(rel); }

/* f32 copy of a matrix (dequantized when the loader kept another type) */
static float *mat_f32(const mend_mat *w) {
    float *f = malloc((size_t)(w->rows * w->cols) * sizeof(float));
    for (int64_t r = 0; r < w->rows; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        if (w->type == MEND_TYPE_F32) memcpy(f + r * w->cols, row, (size_t)w->cols * 4);
        else if (mend_dequantize_row(w->type, row, f + r * w->cols, w->cols)) {
            free(f);
            return NULL;
        }
    }
    return f;
}

static int n_mismatch;

static void cmp_mat(const mend_mat *a, const mend_mat *b, const char *what, int layer) {
    if (a->rows != b->rows || a->cols != b->cols) {
        CHECK_MSG(0, "%s (layer %d): shapes [%lld x %lld] vs [%lld x %lld]", what, layer, (long long)a->rows,
                  (long long)a->cols, (long long)b->rows, (long long)b->cols);
        return;
    }
    float *x = mat_f32(a), *y = mat_f32(b);
    CHECK(x && y);
    int64_t bad = 0, first = -1, n = a->rows * a->cols;
    for (int64_t i = 0; x && y && i < n; i++)
        if (x[i] != y[i]) {
            if (first < 0) first = i;
            bad++;
        }
    CHECK_MSG(bad == 0, "%s (layer %d): %lld of %lld values differ, first at row %lld col %lld: %g vs %g", what,
              layer, (long long)bad, (long long)n, (long long)(first / a->cols), (long long)(first % a->cols),
              first >= 0 ? x[first] : 0.0, first >= 0 ? y[first] : 0.0);
    n_mismatch += bad != 0;
    free(x);
    free(y);
}

static void cmp_vec(const float *a, const float *b, int64_t n, const char *what, int layer) {
    if (!a || !b) {
        CHECK_MSG(a == b, "%s (layer %d): present in one model only", what, layer);
        return;
    }
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += a[i] != b[i];
    CHECK_MSG(bad == 0, "%s (layer %d): %lld of %lld values differ", what, layer, (long long)bad, (long long)n);
    n_mismatch += bad != 0;
}

static void cmp_models(const mend_model *a, const mend_model *b) {
    const mend_config *x = &a->cfg, *y = &b->cfg;
    CHECK(x->dim == y->dim && x->n_layers == y->n_layers && x->n_heads == y->n_heads);
    CHECK(x->n_kv_heads == y->n_kv_heads && x->head_dim == y->head_dim && x->hidden_dim == y->hidden_dim);
    CHECK(x->n_vocab == y->n_vocab && x->rope_type == y->rope_type);
    CHECK(x->rope_theta == y->rope_theta && x->norm_eps == y->norm_eps);
    if (x->dim != y->dim || x->n_layers != y->n_layers) return;
    cmp_mat(&a->tok_embd, &b->tok_embd, "token embedding", -1);
    cmp_mat(&a->output, &b->output, "output", -1);
    cmp_vec(a->out_norm, b->out_norm, x->dim, "output norm", -1);
    for (int l = 0; l < x->n_layers; l++) {
        const mend_layer *p = &a->layers[l], *q = &b->layers[l];
        cmp_vec(p->attn_norm, q->attn_norm, x->dim, "attn_norm", l);
        cmp_mat(&p->wq, &q->wq, "wq", l);
        cmp_mat(&p->wk, &q->wk, "wk", l);
        cmp_mat(&p->wv, &q->wv, "wv", l);
        cmp_mat(&p->wo, &q->wo, "wo", l);
        cmp_vec(p->ffn_norm, q->ffn_norm, x->dim, "ffn_norm", l);
        cmp_mat(&p->w_gate, &q->w_gate, "w_gate", l);
        cmp_mat(&p->w_up, &q->w_up, "w_up", l);
        cmp_mat(&p->w_down, &q->w_down, "w_down", l);
        cmp_vec(p->bq, q->bq, p->wq.rows, "bq", l);
        cmp_vec(p->bk, q->bk, p->wk.rows, "bk", l);
        cmp_vec(p->bv, q->bv, p->wv.rows, "bv", l);
    }
}

#ifdef MEND_HAVE_FORWARD
/* logits (T x V) of the golden token sequence */
static float *run_logits(const mend_model *m, int *T_out) {
    json_t *toks = json_object_get(g_golden, "tokens");
    int T = (int)json_array_size(toks);
    int32_t ids[64];
    for (int i = 0; i < T; i++) ids[i] = (int32_t)json_integer_value(json_array_get(toks, i));
    mend_state *s = NULL;
    float *lg = malloc((size_t)T * m->cfg.n_vocab * sizeof(float));
    CHECK_OK(mend_state_new(&s, m, 64, 16));
    if (!s) {
        free(lg);
        return NULL;
    }
    CHECK_OK(mend_forward(s, ids, NULL, T, 0, lg, 1));
    mend_state_free(s);
    *T_out = T;
    return lg;
}

/* against the NumPy reference: first 32 logits, log-sum-exp and argmax per position */
static void check_golden(const mend_model *m, const char *key, float *lg, int T) {
    json_t *g = json_object_get(g_golden, key);
    json_t *head = json_object_get(g, "logits_head"), *lse = json_object_get(g, "lse"),
           *am = json_object_get(g, "argmax");
    int V = m->cfg.n_vocab;
    double max_err = 0;
    for (int t = 0; t < T; t++) {
        const float *row = lg + (size_t)t * V;
        json_t *h = json_array_get(head, t);
        for (size_t j = 0; j < json_array_size(h); j++) {
            double e = fabs(row[j] - json_number_value(json_array_get(h, j)));
            if (e > max_err) max_err = e;
        }
        double mx = -INFINITY, s = 0;
        int best = 0;
        for (int v = 0; v < V; v++)
            if (row[v] > mx) {
                mx = row[v];
                best = v;
            }
        for (int v = 0; v < V; v++) s += exp((double)row[v] - mx);
        CHECK_NEAR(mx + log(s), json_number_value(json_array_get(lse, t)), 2e-3);
        int want = (int)json_integer_value(json_array_get(am, t));
        CHECK_MSG(best == want || fabs(row[best] - row[want]) < 1e-3, "%s pos %d: argmax %d, reference %d", key, t,
                  best, want);
    }
    CHECK_MSG(max_err < 2e-3, "%s: max |logit - reference| = %g", key, max_err);
    printf("%s: max |logit - numpy reference| over the first 32 ids = %.3g\n", key, max_err);
}
#endif

/* tokenizer.json through the HF directory: ids of HF `tokenizers` (which
 * always matches added tokens such as <|im_end|>, hence parse_special) */
static void check_text_ids(const mend_tokenizer *t, const char *what) {
    const char *text = json_string_value(json_object_get(g_golden, "text"));
    json_t *want = json_object_get(g_golden, "text_ids");
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(mend_tokenize(t, text, strlen(text), 0, 1, &ids, &n));
    int same = n == json_array_size(want);
    for (size_t i = 0; same && i < n; i++) same = ids[i] == json_integer_value(json_array_get(want, i));
    CHECK_MSG(same, "%s: %zu ids differ from the %zu of HF tokenizers", what, n, json_array_size(want));
    free(ids);
}

/* ---------------------------------------------------------------- variants */

/* Rewrite the checkpoint in dir src as one model.safetensors of the given type
 * in dst; with untie, add lm_head.weight = embed_tokens and set
 * tie_word_embeddings false. */
static void write_variant(const char *src_, const char *dst_, int type, int untie) {
    char src[512], dst[512];   /* callers may pass pj() buffers, which rotate */
    snprintf(src, sizeof src, "%s", src_);
    snprintf(dst, sizeof dst, "%s", dst_);
    rm_tree(dst);
    mkdir(dst, 0755);
    mend_safetensors *sh[8] = {0};
    int n_sh = 0;
    const char *names[] = {"model.safetensors", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    for (int i = 0; i < 3; i++)
        if (mend_file_exists(pj(src, names[i]))) CHECK_OK(mend_safetensors_open(&sh[n_sh++], pj(src, names[i])));
    size_t n = 0;
    for (int i = 0; i < n_sh; i++) n += sh[i] ? sh[i]->n_tensors : 0;
    mend_st_out *outs = calloc(n + 1, sizeof *outs);
    void **bufs = calloc(n + 1, sizeof *bufs);
    size_t k = 0;
    for (int i = 0; i < n_sh; i++) {
        for (size_t j = 0; sh[i] && j < sh[i]->n_tensors; j++) {
            const mend_st_tensor *t = &sh[i]->tensors[j];
            float *f = malloc((size_t)t->n_elems * sizeof(float) + 1);
            CHECK_OK(mend_safetensors_read_f32(sh[i], t, 0, t->n_elems, f));
            void *data = f;
            if (type == MEND_TYPE_F16) {
                uint16_t *h = malloc((size_t)t->n_elems * 2 + 1);
                for (int64_t e = 0; e < t->n_elems; e++) h[e] = mend_f32_to_fp16(f[e]);
                free(f);
                data = h;
            }
            bufs[k] = data;
            outs[k].name = t->name;
            outs[k].type = type;
            outs[k].n_dims = t->n_dims;
            memcpy(outs[k].shape, t->shape, sizeof t->shape);
            outs[k].data = data;
            if (untie && !strcmp(t->name, "model.embed_tokens.weight")) {
                outs[n] = outs[k];
                outs[n].name = "lm_head.weight";
            }
            k++;
        }
    }
    const char *meta[] = {"format", "pt", NULL};
    CHECK_OK(mend_safetensors_write(pj(dst, "model.safetensors"), outs, untie ? n + 1 : n, meta));
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(outs);
    for (int i = 0; i < n_sh; i++) mend_safetensors_close(sh[i]);
    copy_file(pj(src, "config.json"), pj(dst, "config.json"));
    copy_file(pj(src, "tokenizer.json"), pj(dst, "tokenizer.json"));
    copy_file(pj(src, "tokenizer_config.json"), pj(dst, "tokenizer_config.json"));
    if (untie) set_config(dst, "tie_word_embeddings", json_false());
}

/* ---------------------------------------------------------------- tests */

static void test_llama(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", fixture("tests/fixtures/hf/llama"));
    mend_model *hf = NULL, *gg = NULL;
    CHECK_OK(mend_model_load_hf(&hf, dir, NULL));
    if (!hf) return;
    const mend_config *c = &hf->cfg;
    CHECK(!strcmp(c->arch, "llama"));
    CHECK(c->dim == 64 && c->n_layers == 2 && c->n_heads == 4 && c->n_kv_heads == 2 && c->head_dim == 16);
    CHECK(c->hidden_dim == 32 && c->n_vocab == 300 && c->ctx_len == 256);
    CHECK(c->norm_eps == 1e-5f && c->rope_theta == 10000.0f);
    CHECK(c->rope_type == MEND_ROPE_NORM);
    CHECK(c->tied == 1 && hf->output.data == hf->tok_embd.data);
    CHECK(hf->tok != NULL && mend_tokenizer_n_vocab(hf->tok) == 300);
    if (hf->tok) check_text_ids(hf->tok, "tokenizer.json");
    CHECK(hf->layers[0].bq == NULL);
    CHECK(hf->tok_embd.type == MEND_TYPE_F32 && hf->tok_embd.row_bytes == 64 * 4);
    CHECK(((uintptr_t)hf->layers[1].wq.data & 63) == 0);

    /* the dispatcher takes directories to the HF loader */
    mend_model *d = NULL;
    CHECK_OK(mend_model_load(&d, dir, NULL));
    if (d) {
        n_mismatch = 0;
        cmp_models(hf, d);
        mend_model_free(d);
    }

#ifdef MEND_HAVE_GGUF_LOADER
    mend_load_opts o = {.keep_packed = 0};
    CHECK_OK(mend_model_load_gguf(&gg, fixture("tests/fixtures/hf/llama.gguf"), &o));
    if (gg) {
        n_mismatch = 0;
        cmp_models(hf, gg);
        CHECK(gg->cfg.rope_type == MEND_ROPE_NORM && gg->cfg.tied == 1);
        if (gg->tok) check_text_ids(gg->tok, "GGUF tokenizer");
        printf("llama HF (bf16, 2 shards) vs GGUF (f16, permuted in Python): %d tensors differ\n", n_mismatch);
    }
#else
    printf("note: model/load_gguf.c absent; HF-vs-GGUF weight comparison skipped\n");
#endif

#ifdef MEND_HAVE_FORWARD
    int T = 0;
    float *a = run_logits(hf, &T);
    if (a) check_golden(hf, "llama", a, T);
    if (a && gg) {
        float *b = run_logits(gg, &T);
        double mx = 0;
        for (int i = 0; b && i < T * c->n_vocab; i++) mx = fmax(mx, fabs(a[i] - b[i]));
        CHECK_MSG(b && mx <= 1e-5, "HF vs GGUF logits differ by %g", mx);
        printf("llama: max |logit HF - logit GGUF| = %.3g\n", mx);
        free(b);
    }
    free(a);
#else
    printf("note: model/forward.c absent; logit checks skipped\n");
#endif

    /* F32 single file, untied head; F16 */
    char f32[512], f16[512];
    snprintf(f32, sizeof f32, "%s/llama_f32", g_tmp);
    snprintf(f16, sizeof f16, "%s/llama_f16", g_tmp);
    write_variant(dir, f32, MEND_TYPE_F32, 1);
    mend_model *v = NULL;
    CHECK_OK(mend_model_load_hf(&v, f32, NULL));
    if (v) {
        CHECK(v->cfg.tied == 0 && v->output.data != v->tok_embd.data);
        n_mismatch = 0;
        cmp_models(hf, v);
        mend_model_free(v);
    }
    write_variant(dir, f16, MEND_TYPE_F16, 0);
    v = NULL;
    CHECK_OK(mend_model_load_hf(&v, f16, NULL));
    if (v) {
        CHECK(v->cfg.tied == 1 && v->output.data == v->tok_embd.data);
        n_mismatch = 0;
        cmp_models(hf, v);
        mend_model_free(v);
    }
    /* lm_head present but tie_word_embeddings true: the head is the embedding (as in HF) */
    set_config(f32, "tie_word_embeddings", json_true());
    v = NULL;
    CHECK_OK(mend_model_load_hf(&v, f32, NULL));
    if (v) {
        CHECK(v->cfg.tied == 1 && v->output.data == v->tok_embd.data);
        mend_model_free(v);
    }
    mend_model_free(gg);
    mend_model_free(hf);
}

static void test_qwen2(void) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s", fixture("tests/fixtures/hf/qwen2"));
    mend_model *m = NULL;
    CHECK_OK(mend_model_load_hf(&m, dir, NULL));
    if (!m) return;
    const mend_config *c = &m->cfg;
    CHECK(!strcmp(c->arch, "qwen2"));
    CHECK(c->dim == 16 && c->n_heads == 4 && c->n_kv_heads == 2 && c->head_dim == 4 && c->hidden_dim == 24);
    CHECK(c->rope_type == MEND_ROPE_NEOX && c->rope_theta == 1e6f && c->norm_eps == 1e-6f);
    CHECK(c->tied == 0 && m->output.data != m->tok_embd.data);
    /* HF layout kept: q/k rows and biases exactly as in the file */
    mend_safetensors *st = NULL;
    CHECK_OK(mend_safetensors_open(&st, pj(dir, "model.safetensors")));
    if (st) {
        for (int l = 0; l < c->n_layers; l++) {
            const mend_layer *L = &m->layers[l];
            CHECK(L->bq && L->bk && L->bv);
            struct { const char *suffix; const void *data; int64_t n; } items[] = {
                {"self_attn.q_proj.weight", L->wq.data, L->wq.rows * L->wq.cols},
                {"self_attn.k_proj.weight", L->wk.data, L->wk.rows * L->wk.cols},
                {"self_attn.q_proj.bias", L->bq, L->wq.rows},
                {"self_attn.k_proj.bias", L->bk, L->wk.rows},
                {"self_attn.v_proj.bias", L->bv, L->wv.rows},
            };
            for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
                char name[128];
                snprintf(name, sizeof name, "model.layers.%d.%s", l, items[i].suffix);
                const mend_st_tensor *t = mend_safetensors_find(st, name);
                CHECK_MSG(t && t->n_elems == items[i].n, "%s", name);
                if (!t || !items[i].data || t->n_elems != items[i].n) continue;
                float *f = malloc((size_t)t->n_elems * sizeof(float));
                CHECK_OK(mend_safetensors_read_f32(st, t, 0, t->n_elems, f));
                CHECK_MSG(memcmp(f, items[i].data, (size_t)t->n_elems * 4) == 0, "%s differs from the file", name);
                free(f);
            }
        }
        const mend_st_tensor *t = mend_safetensors_find(st, "lm_head.weight");
        float *f = malloc((size_t)t->n_elems * sizeof(float));
        CHECK_OK(mend_safetensors_read_f32(st, t, 0, t->n_elems, f));
        CHECK(memcmp(f, m->output.data, (size_t)t->n_elems * 4) == 0);
        free(f);
        mend_safetensors_close(st);
    }
#ifdef MEND_HAVE_FORWARD
    int T = 0;
    float *a = run_logits(m, &T);
    if (a) check_golden(m, "qwen2", a, T);
    free(a);
#endif
    mend_model_free(m);
}

/* the load must fail with code, naming every given substring; never crash */
static void expect_err(const char *dir, int code, const char *s1, const char *s2) {
    mend_model *m = (mend_model *)0x1;
    int rc = mend_model_load_hf(&m, dir, NULL);
    const char *e = mend_last_error();
    CHECK_MSG(rc == code && m == NULL && (!s1 || strstr(e, s1)) && (!s2 || strstr(e, s2)),
              "%s: expected %s naming '%s' and '%s', got %s: %s", dir, mend_strerror(code), s1 ? s1 : "",
              s2 ? s2 : "", mend_strerror(rc), e);
    if (rc == 0) mend_model_free(m);
}

static void test_bad_dirs(void) {
    char L[512];
    snprintf(L, sizeof L, "%s", fixture("tests/fixtures/hf/llama"));
    const char *d;

    expect_err(pj(g_tmp, "no_such_dir"), MEND_EIO, "no_such_dir", "not a directory");
    d = case_dir("no_config", L);
    unlink(pj(d, "config.json"));
    expect_err(d, MEND_EIO, "config.json", NULL);

    /* config.json */
    d = case_dir("cfg_not_json", L);
    write_text(pj(d, "config.json"), "{\"hidden_size\": 64,");
    expect_err(d, MEND_EFORMAT, "config.json", "not valid JSON");
    d = case_dir("cfg_array", L);
    write_text(pj(d, "config.json"), "[1, 2]");
    expect_err(d, MEND_EFORMAT, "config.json", "JSON object");
    d = case_dir("cfg_no_hidden", L);
    set_config(d, "hidden_size", NULL);
    expect_err(d, MEND_EFORMAT, "config.json", "'hidden_size' is missing");
    d = case_dir("cfg_hidden_str", L);
    set_config(d, "hidden_size", json_string("64"));
    expect_err(d, MEND_EFORMAT, "config.json", "'hidden_size' is not an integer");
    d = case_dir("cfg_layers_0", L);
    set_config(d, "num_hidden_layers", json_integer(0));
    expect_err(d, MEND_ERANGE, "config.json", "'num_hidden_layers' is 0");
    d = case_dir("cfg_layers_huge", L);
    set_config(d, "num_hidden_layers", json_integer(INT64_C(1) << 40));
    expect_err(d, MEND_ERANGE, "config.json", "'num_hidden_layers'");
    d = case_dir("cfg_no_eps", L);
    set_config(d, "rms_norm_eps", NULL);
    expect_err(d, MEND_EFORMAT, "config.json", "'rms_norm_eps' is missing");
    d = case_dir("cfg_eps_neg", L);
    set_config(d, "rms_norm_eps", json_real(-1e-5));
    expect_err(d, MEND_ERANGE, "config.json", "'rms_norm_eps'");
    d = case_dir("cfg_no_vocab", L);
    set_config(d, "vocab_size", NULL);
    expect_err(d, MEND_EFORMAT, "config.json", "'vocab_size' is missing");
    d = case_dir("cfg_no_arch", L);
    set_config(d, "architectures", NULL);
    expect_err(d, MEND_EFORMAT, "config.json", "'architectures'");
    d = case_dir("cfg_gpt2", L);
    set_config(d, "architectures", json_pack("[s]", "GPT2LMHeadModel"));
    expect_err(d, MEND_EUNSUPPORTED, "config.json", "GPT2LMHeadModel");
    d = case_dir("cfg_rope_llama3", L);
    set_config(d, "rope_scaling", json_pack("{s:s, s:f}", "rope_type", "llama3", "factor", 8.0));
    /* llama3 scaling is implemented (tests/model/test_families.c); all four of its fields are needed */
    expect_err(d, MEND_EFORMAT, "config.json", "'low_freq_factor' is missing");
    d = case_dir("cfg_rope_linear", L);
    set_config(d, "rope_scaling", json_pack("{s:s, s:f}", "type", "linear", "factor", 2.0));
    expect_err(d, MEND_EUNSUPPORTED, "config.json", "'linear'");
    d = case_dir("cfg_kv_3", L);
    set_config(d, "num_key_value_heads", json_integer(3));
    expect_err(d, MEND_EFORMAT, "config.json", "'num_key_value_heads'");
    d = case_dir("cfg_gelu", L);
    set_config(d, "hidden_act", json_string("gelu"));
    expect_err(d, MEND_EUNSUPPORTED, "config.json", "'hidden_act'");
    d = case_dir("cfg_attn_bias", L);
    set_config(d, "attention_bias", json_true());
    expect_err(d, MEND_EUNSUPPORTED, "config.json", "'attention_bias'");
    d = case_dir("cfg_tie_str", L);
    set_config(d, "tie_word_embeddings", json_string("yes"));
    expect_err(d, MEND_EFORMAT, "config.json", "'tie_word_embeddings'");
    d = case_dir("cfg_odd_head", L);
    set_config(d, "head_dim", json_integer(15));
    expect_err(d, MEND_EFORMAT, "config.json", "'head_dim'");

    /* shapes in the files vs the config */
    d = case_dir("shape_ffn", L);
    set_config(d, "intermediate_size", json_integer(48));
    expect_err(d, MEND_EFORMAT, "model.layers.0.mlp.gate_proj.weight", "expected [48, 64] (intermediate_size");
    d = case_dir("shape_vocab", L);
    set_config(d, "vocab_size", json_integer(301));
    expect_err(d, MEND_EFORMAT, "model-00001-of-00002.safetensors", "'model.embed_tokens.weight' has shape [300, 64]");
    d = case_dir("shape_head_dim", L);
    set_config(d, "head_dim", json_integer(8));
    expect_err(d, MEND_EFORMAT, "'model.layers.0.self_attn.q_proj.weight'", "num_attention_heads*head_dim");
    d = case_dir("shape_layers", L);
    set_config(d, "num_hidden_layers", json_integer(3));
    expect_err(d, MEND_EFORMAT, "'model.layers.2.input_layernorm.weight' is missing", NULL);
    d = case_dir("small_vocab", L);
    /* fewer rows than the tokenizer has tokens: refused after the weights load */
    write_variant(L, d, MEND_TYPE_F32, 0);
    {
        mend_safetensors *st = NULL;
        CHECK_OK(mend_safetensors_open(&st, pj(d, "model.safetensors")));
        /* rewrite with the embedding cut to 200 rows */
        mend_st_out outs[64];
        float *bufs[64];
        size_t n = 0;
        for (size_t i = 0; st && i < st->n_tensors && n < 64; i++, n++) {
            const mend_st_tensor *t = &st->tensors[i];
            bufs[n] = malloc((size_t)t->n_elems * 4 + 4);
            mend_safetensors_read_f32(st, t, 0, t->n_elems, bufs[n]);
            outs[n] = (mend_st_out){t->name, MEND_TYPE_F32, t->n_dims, {t->shape[0], t->shape[1]}, bufs[n]};
            if (!strcmp(t->name, "model.embed_tokens.weight")) outs[n].shape[0] = 200;
        }
        CHECK_OK(mend_safetensors_write(pj(d, "model.safetensors"), outs, n, NULL));
        for (size_t i = 0; i < n; i++) free(bufs[i]);
        mend_safetensors_close(st);
        set_config(d, "vocab_size", json_integer(200));
        expect_err(d, MEND_EFORMAT, "tokenizer.json", "'vocab_size' 200");
    }

    /* index and shards */
    d = case_dir("idx_missing_shard", L);
    {
        json_t *j = load_json(pj(d, "model.safetensors.index.json"));
        json_object_set_new(json_object_get(j, "weight_map"), "model.norm.weight",
                            json_string("model-00003-of-00003.safetensors"));
        save_json(pj(d, "model.safetensors.index.json"), j);
        json_decref(j);
    }
    expect_err(d, MEND_EIO, "model.safetensors.index.json", "model-00003-of-00003.safetensors");
    d = case_dir("idx_wrong_shard", L);
    {
        json_t *j = load_json(pj(d, "model.safetensors.index.json"));
        json_object_set_new(json_object_get(j, "weight_map"), "model.norm.weight",
                            json_string("model-00001-of-00002.safetensors"));
        save_json(pj(d, "model.safetensors.index.json"), j);
        json_decref(j);
    }
    expect_err(d, MEND_EFORMAT, "'model.norm.weight'", "does not contain it");
    d = case_dir("idx_dropped_tensor", L);
    {
        json_t *j = load_json(pj(d, "model.safetensors.index.json"));
        json_object_del(json_object_get(j, "weight_map"), "model.layers.1.mlp.up_proj.weight");
        save_json(pj(d, "model.safetensors.index.json"), j);
        json_decref(j);
    }
    expect_err(d, MEND_EFORMAT, "'model.layers.1.mlp.up_proj.weight' is missing", "weight_map");
    d = case_dir("idx_path", L);
    {
        json_t *j = load_json(pj(d, "model.safetensors.index.json"));
        json_object_set_new(json_object_get(j, "weight_map"), "model.norm.weight", json_string("../x.safetensors"));
        save_json(pj(d, "model.safetensors.index.json"), j);
        json_decref(j);
    }
    expect_err(d, MEND_EFORMAT, "model.safetensors.index.json", "'model.norm.weight' is not a plain file name");
    d = case_dir("idx_not_json", L);
    write_text(pj(d, "model.safetensors.index.json"), "{\"weight_map\": {");
    expect_err(d, MEND_EFORMAT, "model.safetensors.index.json", "not valid JSON");
    d = case_dir("idx_no_map", L);
    write_text(pj(d, "model.safetensors.index.json"), "{\"metadata\": {}}");
    expect_err(d, MEND_EFORMAT, "model.safetensors.index.json", "'weight_map'");
    d = case_dir("no_weights", L);
    unlink(pj(d, "model.safetensors.index.json"));
    expect_err(d, MEND_EIO, "no model.safetensors", NULL);
    d = case_dir("shard_truncated", L);
    {
        char *b = NULL;
        size_t n = 0;
        mend_read_file(pj(d, "model-00002-of-00002.safetensors"), 1 << 20, &b, &n);
        write_bytes(pj(d, "model-00002-of-00002.safetensors"), b, n / 2);
        free(b);
    }
    expect_err(d, MEND_EFORMAT, "model-00002-of-00002.safetensors", "runs past the data section");
    d = case_dir("shard_garbage", L);
    write_text(pj(d, "model-00001-of-00002.safetensors"), "\xff\xff\xff\xff\xff\xff\xff\x7fgarbage");
    expect_err(d, MEND_EFORMAT, "model-00001-of-00002.safetensors", "header length");
    d = case_dir("shard_i64", L);
    {
        /* model.norm.weight stored as I64 (hand-built header; the writer only writes floats) */
        mend_safetensors *st = NULL;
        CHECK_OK(mend_safetensors_open(&st, pj(L, "model-00002-of-00002.safetensors")));
        json_t *h = json_object();
        size_t off = 0;
        for (size_t i = 0; st && i < st->n_tensors; i++) {
            const mend_st_tensor *t = &st->tensors[i];
            json_t *shape = json_array();
            for (int k = 0; k < t->n_dims; k++) json_array_append_new(shape, json_integer(t->shape[k]));
            int i64 = !strcmp(t->name, "model.norm.weight");
            size_t nb = (size_t)t->n_elems * (i64 ? 8 : 2);
            json_object_set_new(h, t->name, json_pack("{s:s, s:o, s:[I, I]}", "dtype", i64 ? "I64" : "BF16", "shape",
                                                      shape, "data_offsets", (json_int_t)off, (json_int_t)(off + nb)));
            off += nb;
        }
        char *hs = json_dumps(h, JSON_COMPACT);
        size_t hl = strlen(hs), total = 8 + hl + off;
        uint8_t *b = calloc(1, total);
        uint64_t hl64 = hl;
        memcpy(b, &hl64, 8);
        memcpy(b + 8, hs, hl);
        write_bytes(pj(d, "model-00002-of-00002.safetensors"), b, total);
        free(b);
        free(hs);
        json_decref(h);
        mend_safetensors_close(st);
    }
    expect_err(d, MEND_EUNSUPPORTED, "'model.norm.weight'", "dtype I64");

    /* tokenizer */
    d = case_dir("no_tokenizer", L);
    unlink(pj(d, "tokenizer.json"));
    {
        mend_model *m = NULL;
        int rc = mend_model_load_hf(&m, d, NULL);
        CHECK_MSG(rc != 0 && m == NULL && strstr(mend_last_error(), "tokenizer.json"), "no tokenizer: %d %s", rc,
                  mend_last_error());
        mend_model_free(m);
    }

    /* qwen2 without its biases */
    d = case_dir("qwen2_no_bias", fixture("tests/fixtures/hf/qwen2"));
    {
        mend_safetensors *st = NULL;
        CHECK_OK(mend_safetensors_open(&st, pj(fixture("tests/fixtures/hf/qwen2"), "model.safetensors")));
        mend_st_out outs[64];
        float *bufs[64];
        size_t n = 0;
        for (size_t i = 0; st && i < st->n_tensors && n < 64; i++) {
            const mend_st_tensor *t = &st->tensors[i];
            if (strstr(t->name, "layers.1.self_attn.k_proj.bias")) continue;
            bufs[n] = malloc((size_t)t->n_elems * 4 + 4);
            mend_safetensors_read_f32(st, t, 0, t->n_elems, bufs[n]);
            outs[n] = (mend_st_out){t->name, MEND_TYPE_F32, t->n_dims, {t->shape[0], t->shape[1]}, bufs[n]};
            n++;
        }
        CHECK_OK(mend_safetensors_write(pj(d, "model.safetensors"), outs, n, NULL));
        for (size_t i = 0; i < n; i++) free(bufs[i]);
        mend_safetensors_close(st);
    }
    expect_err(d, MEND_EFORMAT, "'model.layers.1.self_attn.k_proj.bias' is missing", NULL);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/mend_hf_XXXXXX");
    if (!mkdtemp(g_tmp)) { perror("mkdtemp"); return 2; }
    g_golden = load_json(test_src("tests/fixtures/hf/golden.json"));
    test_llama();
    test_qwen2();
    test_bad_dirs();
    json_decref(g_golden);
    rm_tree(g_tmp);
    return test_finish();
}
