/* mend_compress on the tiny llama of tests/fixtures/hf (2 layers, dim 64,
 * hidden 32, f16 weights):
 *  - model/layer.c run layer by layer equals mend_forward's logits;
 *  - RTN and GPTQ files reload with the target types (norms f32, token_embd
 *    kept f16 or converted), and GPTQ's quantized layers reproduce the
 *    original layer outputs more closely than RTN's (q4_0 and generic 3-bit);
 *  - a run stopped after layer 0 resumes from its checkpoint into a file
 *    byte-identical to an uninterrupted run; the checkpoint is removed; a
 *    checkpoint of other options is refused; the thread count does not
 *    change the bytes;
 *  - a sink weight makes GPTQ reproduce the windows' first positions more
 *    closely (what the weight is for) and is recorded in the file. */
#include <unistd.h>
#include "test.h"
#include "compress/calib.h"
#include "compress/driver.h"
#include "kernels/ops.h"
#include "kernels/quants.h"
#include "model/layer.h"
#include "model/model.h"

#define TINY "tests/fixtures/hf/llama.gguf"
#define NS 8
#define SL 64

static int32_t g_calib[NS * SL];

static char *slurp(const char *path, size_t *n) {
    char *b = NULL;
    if (mend_read_file(path, 1 << 26, &b, n)) return NULL;
    return b;
}

static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static uint32_t tensor_type(const mend_model *m, const char *name) {
    const gguf_tensor *t = mend_gguf_find_tensor(m->gguf, name);
    return t ? t->type : 0xffffffffu;
}

/* x (n, dim) = embeddings of tokens */
static void embed(const mend_model *m, const int32_t *tok, int n, float *x) {
    const int dim = m->cfg.dim;
    for (int i = 0; i < n; i++)
        memcpy(x + (size_t)i * dim, (const float *)m->tok_embd.data + (size_t)tok[i] * dim, dim * sizeof(float));
}

/* layer.c over all layers + head == mend_forward */
static void test_layer_matches_forward(const mend_model *m) {
    const mend_config *c = &m->cfg;
    const int n = 40, dim = c->dim, V = c->n_vocab;
    const int qd = c->n_heads * c->head_dim;
    float *x = malloc(sizeof(float) * n * dim), *xb = malloc(sizeof(float) * n * dim);
    float *att = malloc(sizeof(float) * n * qd), *h = malloc(sizeof(float) * n * c->hidden_dim);
    float *lg = malloc(sizeof(float) * n * V), *ref = malloc(sizeof(float) * n * V);
    mend_layer_ws ws;
    CHECK_OK(mend_layer_ws_init(&ws, c, n));
    embed(m, g_calib, n, x);
    for (int l = 0; l < c->n_layers; l++) {
        CHECK_OK(mend_layer_check(c, &m->layers[l], l));
        mend_layer_forward_seq(c, &m->layers[l], l, x, n, &ws, xb, att, h);
    }
    rmsnorm_forward(xb, x, m->out_norm, n, dim, c->norm_eps);
    for (int i = 0; i < n; i++)
        for (int v = 0; v < V; v++) {
            double s = 0;
            for (int j = 0; j < dim; j++)
                s += (double)xb[(size_t)i * dim + j] * ((const float *)m->output.data)[(size_t)v * dim + j];
            lg[(size_t)i * V + v] = (float)s;
        }
    mend_state *st = NULL;
    CHECK_OK(mend_state_new(&st, m, n, n));
    CHECK_OK(mend_forward(st, g_calib, NULL, n, 0, ref, 1));
    double maxd = 0, maxr = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) {
        maxd = fmax(maxd, fabs(lg[i] - ref[i]));
        maxr = fmax(maxr, fabs(ref[i]));
    }
    CHECK_MSG(maxd <= 1e-4 * (1 + maxr), "layer.c vs forward: max |diff| %g (max |logit| %g)", maxd, maxr);
    mend_state_free(st);
    mend_layer_ws_free(&ws);
    free(x), free(xb), free(att), free(h), free(lg), free(ref);
}

/* Sum over layers of ||layer_q(X_l) - layer_orig(X_l)||² at positions
 * [t0, t1) of every window, where X_l are the original model's hidden
 * states on the calibration tokens. */
static double layer_error_at(const mend_model *orig, const mend_model *q, int t0, int t1) {
    const mend_config *c = &orig->cfg;
    const int dim = c->dim, qd = c->n_heads * c->head_dim;
    float *x = malloc(sizeof(float) * SL * dim), *y = malloc(sizeof(float) * SL * dim);
    float *xb = malloc(sizeof(float) * SL * dim), *att = malloc(sizeof(float) * SL * qd);
    float *h = malloc(sizeof(float) * SL * c->hidden_dim);
    mend_layer_ws ws;
    mend_layer_ws_init(&ws, c, SL);
    double err = 0;
    for (int s = 0; s < NS; s++) {
        embed(orig, g_calib + s * SL, SL, x);
        for (int l = 0; l < c->n_layers; l++) {
            memcpy(y, x, sizeof(float) * SL * dim);
            mend_layer_forward_seq(c, &q->layers[l], l, y, SL, &ws, xb, att, h);
            mend_layer_forward_seq(c, &orig->layers[l], l, x, SL, &ws, xb, att, h);
            for (int i = t0 * dim; i < t1 * dim; i++) err += (double)(y[i] - x[i]) * (y[i] - x[i]);
        }
    }
    mend_layer_ws_free(&ws);
    free(x), free(y), free(xb), free(att), free(h);
    return err;
}

static double layer_error(const mend_model *orig, const mend_model *q) { return layer_error_at(orig, q, 0, SL); }

static mend_compress_opts base_opts(int method, mend_qfmt fmt) {
    mend_compress_opts o = {0};
    o.method = method;
    o.fmt = fmt;
    o.embd_type = MEND_EMBD_KEEP;
    o.calib = g_calib;
    o.nsamples = NS;
    o.seqlen = SL;
    return o;
}

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k = 0;
    k = (k + 1) & 7;
    snprintf(buf[k], sizeof buf[k], "%s/mend_test_compress_%d_%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid(), name);
    return buf[k];
}

static void test_gptq_beats_rtn(const mend_model *orig, mend_qfmt fmt, uint32_t gguf_type, const char *tag) {
    char rtn[512], gq[600];
    snprintf(rtn, sizeof rtn, "%s", tmp(tag));
    snprintf(gq, sizeof gq, "%s.gptq", rtn);
    mend_compress_opts o = base_opts(MEND_COMPRESS_RTN, fmt);
    mend_compress_result r;
    CHECK_OK(mend_compress(TINY, rtn, &o, &r));
    /* per layer: q (64x64), k, v (32x64), o (64x64), gate, up (32x64), down (64x32) */
    CHECK(r.n_quantized == 2 * (64 * 64 * 2 + 32 * 64 * 4 + 64 * 32));
    o.method = MEND_COMPRESS_GPTQ;
    CHECK_OK(mend_compress(TINY, gq, &o, &r));
    mend_model *mr = NULL, *mg = NULL;
    CHECK_OK(mend_model_load(&mr, rtn, NULL));
    CHECK_OK(mend_model_load(&mg, gq, NULL));
    if (mr && mg) {
        for (int l = 0; l < 2; l++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
            CHECK(tensor_type(mg, name) == gguf_type);
            snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
            CHECK(tensor_type(mr, name) == gguf_type);
            snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
            CHECK(tensor_type(mg, name) == MEND_TYPE_F32);
        }
        CHECK(tensor_type(mg, "token_embd.weight") == MEND_TYPE_F16);
        const double er = layer_error(orig, mr), eg = layer_error(orig, mg);
        printf("%s: layer-output error rtn %.5g gptq %.5g\n", tag, er, eg);
        CHECK_MSG(eg < er, "%s: GPTQ error %g is not below RTN error %g", tag, eg, er);
        /* act-order (the CLI default) */
        mend_model_free(mg);
        mg = NULL;
        o.act_order = 1;
        CHECK_OK(mend_compress(TINY, gq, &o, &r));
        CHECK_OK(mend_model_load(&mg, gq, NULL));
        if (mg) {
            const double ea = layer_error(orig, mg);
            printf("%s: layer-output error gptq act-order %.5g\n", tag, ea);
            CHECK_MSG(ea < er, "%s: GPTQ act-order error %g is not below RTN error %g", tag, ea, er);
        }
    }
    mend_model_free(mr);
    mend_model_free(mg);
    unlink(rtn);
    unlink(gq);
}

typedef struct stopper {
    int after;
    int layers_seen;
} stopper;

static int stop_cb(void *user, const mend_compress_event *ev) {
    stopper *s = user;
    if (!strcmp(ev->stage, "layer done")) {
        s->layers_seen++;
        if (ev->layer + 1 >= s->after) return 1;
    }
    return 0;
}

static void test_resume(void) {
    const char *full = tmp("full.gguf"), *part = tmp("part.gguf"), *t1 = tmp("t1.gguf");
    char ckpt[600];
    snprintf(ckpt, sizeof ckpt, "%s.ckpt", part);
    unlink(ckpt);
    mend_compress_opts o = base_opts(MEND_COMPRESS_GPTQ, mend_qfmt_ggml(MEND_TYPE_Q4_0));
    o.embd_type = MEND_TYPE_Q8_0;
    CHECK_OK(mend_compress(TINY, full, &o, NULL));

    /* stopped after layer 0: checkpoint on disk, no output */
    stopper sp = {1, 0};
    o.checkpoint = ckpt;
    o.progress = stop_cb;
    o.progress_user = &sp;
    CHECK_ERR(mend_compress(TINY, part, &o, NULL), MEND_EINVAL, "stopped after layer 0");
    CHECK(mend_file_exists(ckpt));
    CHECK(!mend_file_exists(part));

    /* other options: refused */
    mend_compress_opts bad = o;
    bad.damp = 0.1;
    bad.progress = NULL;
    CHECK_ERR(mend_compress(TINY, part, &bad, NULL), MEND_EINVAL, "another source, options or calibration");
    bad = o;
    bad.sink_weight = 3;   /* the default at SL = 64 is 2 */
    bad.progress = NULL;
    CHECK_ERR(mend_compress(TINY, part, &bad, NULL), MEND_EINVAL, "another source, options or calibration");

    /* resumed: one layer left, same bytes */
    stopper sp2 = {100, 0};
    o.progress_user = &sp2;
    mend_compress_result r;
    CHECK_OK(mend_compress(TINY, part, &o, &r));
    CHECK(r.resumed_layers == 1);
    CHECK(sp2.layers_seen == 1);
    CHECK(same_file(full, part));
    CHECK(!mend_file_exists(ckpt));

    /* one thread: same bytes */
    mend_set_threads(1);
    mend_compress_opts o1 = base_opts(MEND_COMPRESS_GPTQ, mend_qfmt_ggml(MEND_TYPE_Q4_0));
    o1.embd_type = MEND_TYPE_Q8_0;
    CHECK_OK(mend_compress(TINY, t1, &o1, NULL));
    mend_set_threads(0);
    CHECK(same_file(full, t1));

    mend_model *m = NULL;
    CHECK_OK(mend_model_load(&m, full, NULL));
    if (m) CHECK(tensor_type(m, "token_embd.weight") == MEND_TYPE_Q8_0);
    mend_model_free(m);
    unlink(full);
    unlink(part);
    unlink(t1);
}

static int64_t meta_int(const char *path, const char *key) {
    mend_gguf *g = NULL;
    int64_t v = -1;
    CHECK_OK(mend_gguf_open(&g, path));
    if (g) CHECK_OK(mend_gguf_get_int(g, key, &v));
    mend_gguf_close(g);
    return v;
}

/* Weighting each window's first token SL times: GPTQ's objective then gives
 * position 0 as much weight as the rest of the window, so the quantized
 * layers must reproduce position 0 better than with the plain Hessian. */
static void test_sink_weight(const mend_model *orig) {
    const char *plain = tmp("sink1.gguf"), *heavy = tmp("sinkSL.gguf");
    mend_compress_opts o = base_opts(MEND_COMPRESS_GPTQ, mend_qfmt_generic(3, 32, 0));
    o.act_order = 1;
    o.sink_weight = 1;
    CHECK_OK(mend_compress(TINY, plain, &o, NULL));
    o.sink_weight = SL;
    CHECK_OK(mend_compress(TINY, heavy, &o, NULL));
    CHECK(meta_int(plain, "mend.compress.sink_weight") == 1);
    CHECK(meta_int(heavy, "mend.compress.sink_weight") == SL);
    mend_model *mp = NULL, *mh = NULL;
    CHECK_OK(mend_model_load(&mp, plain, NULL));
    CHECK_OK(mend_model_load(&mh, heavy, NULL));
    if (mp && mh) {
        const double e1 = layer_error_at(orig, mp, 0, 1), eh = layer_error_at(orig, mh, 0, 1);
        printf("sink weight: position-0 layer-output error %.5g (weight 1) %.5g (weight %d)\n", e1, eh, SL);
        CHECK_MSG(eh < 0.8 * e1, "sink weight %d: position-0 error %g is not clearly below %g", SL, eh, e1);
    }
    mend_model_free(mp);
    mend_model_free(mh);
    o.sink_weight = -1;
    CHECK_ERR(mend_compress(TINY, tmp("x.gguf"), &o, NULL), MEND_EINVAL, "sink weight -1");
    CHECK(mend_sink_weight_default(2048) == 64 && mend_sink_weight_default(512) == 16 && mend_sink_weight_default(40) == 1);
    unlink(plain);
    unlink(heavy);
}

static void test_bad_inputs(void) {
    mend_compress_opts o = base_opts(MEND_COMPRESS_GPTQ, mend_qfmt_ggml(MEND_TYPE_Q4_0));
    o.calib = NULL;
    CHECK_ERR(mend_compress(TINY, tmp("x.gguf"), &o, NULL), MEND_EINVAL, "calibration");
    int32_t badtok[NS * SL];
    memcpy(badtok, g_calib, sizeof badtok);
    badtok[5] = 300;
    o.calib = badtok;
    CHECK_ERR(mend_compress(TINY, tmp("x.gguf"), &o, NULL), MEND_EINVAL, "outside the vocabulary");
    /* rows of 64 and 32 do not fit q4_K's 256: llama.cpp's q5_0 fallback */
    o = base_opts(MEND_COMPRESS_RTN, mend_qfmt_ggml(MEND_TYPE_Q4_K));
    mend_compress_result r;
    CHECK_OK(mend_compress(TINY, tmp("x.gguf"), &o, &r));
    CHECK(r.n_fallback == 14 && r.fallback_type == MEND_TYPE_Q5_0);
    mend_model *m = NULL;
    CHECK_OK(mend_model_load(&m, tmp("x.gguf"), NULL));
    if (m) CHECK(tensor_type(m, "blk.1.ffn_up.weight") == MEND_TYPE_Q5_0);
    mend_model_free(m);
    unlink(tmp("x.gguf"));
}

static mend_fp fp_of(const char *path) {
    mend_fp fp = {0};
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 1, .no_repack = 1};
    CHECK_OK(mend_model_load(&m, path, &lo));
    if (m) CHECK_OK(mend_model_fingerprint(m, &fp));
    mend_model_free(m);
    return fp;
}

/* A compressed file records its source and a recipe: the same for the same
 * command from the same source (another path, or a few weights moved by
 * rounding), another for other settings; compressing a compressed file
 * keeps none of its source's mend.compress.* keys. */
static void test_recipe(void) {
    const char *a = tmp("ra.gguf"), *b = tmp("rb.gguf"), *c = tmp("rc.gguf"), *d = tmp("rd.gguf");
    mend_compress_opts o = base_opts(MEND_COMPRESS_GPTQ, mend_qfmt_ggml(MEND_TYPE_Q4_0));
    CHECK_OK(mend_compress(TINY, a, &o, NULL));
    CHECK_OK(mend_compress(TINY, b, &o, NULL));
    o.damp = 0.1;
    CHECK_OK(mend_compress(TINY, c, &o, NULL));
    const mend_fp src = fp_of(TINY), fa = fp_of(a), fb = fp_of(b), fc = fp_of(c);
    CHECK(!src.has_source && !src.has_recipe);
    CHECK(fa.has_source && fa.has_recipe && fa.source == src.model && fc.source == src.model);
    CHECK(fa.model != src.model);
    CHECK(fa.model == fb.model && fa.recipe == fb.recipe);
    CHECK(fc.recipe != fa.recipe);
    mend_gguf *g = NULL;
    CHECK_OK(mend_gguf_open(&g, a));
    const char *name = "";
    if (g) CHECK_OK(mend_gguf_get_str(g, "mend.compress.source", &name));
    CHECK(strcmp(name, "llama.gguf") == 0);
    /* the same recipe when rounding moved a weight: one byte of the last tensor */
    const long off = g ? (long)(g->data_offset + g->tensors[g->n_tensors - 1].offset) : 0;
    mend_gguf_close(g);
    FILE *f = fopen(a, "r+b");
    if (f) {
        fseek(f, off, SEEK_SET);
        const int byte = fgetc(f);
        fseek(f, off, SEEK_SET);
        fputc(byte ^ 0x3c, f);
        fclose(f);
    }
    const mend_fp fa2 = fp_of(a);
    CHECK(fa2.model != fa.model && fa2.recipe == fa.recipe);
    CHECK(mend_fp_compare(&fa2, &fa) == MEND_FP_SAME_RECIPE);
    CHECK(mend_fp_compare(&fc, &fa) == MEND_FP_OTHER);
    /* a compressed source: its damp does not survive an RTN pass */
    mend_compress_opts r = base_opts(MEND_COMPRESS_RTN, mend_qfmt_ggml(MEND_TYPE_Q8_0));
    CHECK_OK(mend_compress(c, d, &r, NULL));
    const mend_fp fd = fp_of(d);
    CHECK(fd.source == fc.model && fd.recipe != fc.recipe);
    CHECK(meta_int(c, "mend.compress.block") == 128);
    mend_gguf *gd = NULL;
    CHECK_OK(mend_gguf_open(&gd, d));
    if (gd) CHECK(!mend_gguf_find(gd, "mend.compress.block") && !mend_gguf_find(gd, "mend.compress.damp"));
    mend_gguf_close(gd);
    unlink(a);
    unlink(b);
    unlink(c);
    unlink(d);
}

int main(void) {
    uint64_t s = 12345;
    for (int i = 0; i < NS * SL; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        g_calib[i] = (int32_t)((s >> 33) % 300);
    }
    mend_model *orig = NULL;
    CHECK_OK(mend_model_load(&orig, TINY, NULL));
    if (!orig) return test_finish();
    test_layer_matches_forward(orig);
    test_gptq_beats_rtn(orig, mend_qfmt_ggml(MEND_TYPE_Q4_0), MEND_TYPE_Q4_0, "q4_0");
    test_gptq_beats_rtn(orig, mend_qfmt_generic(3, 32, 0), 24, "int3-g32");
    test_gptq_beats_rtn(orig, mend_qfmt_generic(2, -1, 1), 24, "int2-row-sym");
    test_resume();
    test_recipe();
    test_sink_weight(orig);
    test_bad_inputs();
    mend_model_free(orig);
    return test_finish();
}
