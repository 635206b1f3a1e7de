/* Pruning through mend_compress on the tiny llama of tests/fixtures/hf
 * (2 layers, dim 64, hidden 32, f16 weights):
 *  - magnitude 2:4 to f16 (no calibration): every group of 4 inputs of
 *    every linear matrix holds >= 2 exact zeros, and mend info's counter
 *    (mend_gguf_tensor_zeros) agrees with a direct count;
 *  - Wanda 50% to f16 (calibrated even with RTN): >= half of every row zero;
 *  - SparseGPT 4:8 jointly with GPTQ onto q4_0: the q4_0 blocks hold the
 *    4:8 zeros; SparseGPT 50% then GPTQ q4_0 keeps >= 50% zeros;
 *  - on the calibration tokens, SparseGPT 50% stays closer to the original
 *    logits than magnitude 50%;
 *  - metadata names the pruning; Wanda without calibration is refused. */
#include <unistd.h>
#include "test.h"
#include "compress/driver.h"
#include "compress/prune.h"
#include "compress/sparsegpt.h"
#include "kernels/quants.h"
#include "model/model.h"

#define TINY "tests/fixtures/hf/llama.gguf"
#define NS 8
#define SL 64

static int32_t g_calib[NS * SL];
static const char *const MATS[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

static const char *tmp(const char *name) {
    static char buf[8][512];
    static int k = 0;
    k = (k + 1) & 7;
    snprintf(buf[k], sizeof buf[k], "%s/mend_test_prune_%d_%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid(),
             name);
    return buf[k];
}

static mend_compress_opts opts(int method, mend_qfmt fmt, const mend_prune_opts *p) {
    mend_compress_opts o = {0};
    o.method = method;
    o.fmt = fmt;
    o.embd_type = MEND_EMBD_KEEP;
    o.calib = g_calib;
    o.nsamples = NS;
    o.seqlen = SL;
    o.prune = p;
    return o;
}

/* For every linear matrix of the file: each group of m inputs holds >= m - n
 * exact zeros (m = 0: each row holds >= ratio · cols); *zeros / *total over
 * all of them, checked against mend_gguf_tensor_zeros. */
static int check_file(const char *path, int n, int m, double ratio, int64_t *zeros, int64_t *total) {
    mend_gguf *g = NULL;
    if (mend_gguf_open(&g, path)) return 0;
    int ok = 1;
    *zeros = *total = 0;
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < 7; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, MATS[i]);
            const gguf_tensor *t = mend_gguf_find_tensor(g, name);
            if (!t) {
                ok = 0;
                continue;
            }
            const int64_t cols = t->ne[0], rows = t->ne[1];
            const size_t rs = mend_row_size(t->type, cols);
            float *row = malloc(sizeof(float) * cols);
            int64_t z = 0;
            for (int64_t r = 0; r < rows; r++) {
                if (mend_dequantize_row(t->type, (const uint8_t *)t->data + r * rs, row, cols)) ok = 0;
                int64_t zr = 0;
                for (int64_t c = 0; c < cols; c++) zr += row[c] == 0.0f;
                z += zr;
                if (m > 0) {
                    for (int64_t c = 0; c < cols; c += m) {
                        int zg = 0;
                        for (int j = 0; j < m; j++) zg += row[c + j] == 0.0f;
                        if (zg < m - n) ok = 0;
                    }
                } else if (zr < (int64_t)(ratio * (double)cols)) {
                    ok = 0;
                }
            }
            free(row);
            int64_t z2 = -1, n2 = -1;
            if (mend_gguf_tensor_zeros(g, t, &z2, &n2) || z2 != z || n2 != rows * cols) ok = 0;
            *zeros += z;
            *total += rows * cols;
        }
    mend_gguf_close(g);
    return ok;
}

static const char *meta(const char *path, const char *key, char *buf, size_t cap) {
    mend_gguf *g = NULL;
    const char *s = NULL;
    buf[0] = 0;
    if (mend_gguf_open(&g, path) == 0 && mend_gguf_get_str(g, key, &s) == 0) snprintf(buf, cap, "%s", s);
    mend_gguf_close(g);
    return buf;
}

/* mean squared difference of the logits of a and b on the calibration tokens */
static double logit_mse(const mend_model *a, const char *path_b) {
    mend_model *b = NULL;
    if (mend_model_load(&b, path_b, NULL)) return INFINITY;
    const int n = SL, V = a->cfg.n_vocab;
    float *la = malloc(sizeof(float) * n * V), *lb = malloc(sizeof(float) * n * V);
    double s = 0;
    for (int k = 0; k < NS; k++) {
        mend_state *sa = NULL, *sb = NULL;
        if (mend_state_new(&sa, a, n, n) || mend_state_new(&sb, b, n, n) ||
            mend_forward(sa, g_calib + k * SL, NULL, n, 0, la, 1) || mend_forward(sb, g_calib + k * SL, NULL, n, 0, lb, 1))
            s = INFINITY;
        for (size_t i = 0; i < (size_t)n * V; i++) s += ((double)la[i] - lb[i]) * ((double)la[i] - lb[i]);
        mend_state_free(sa);
        mend_state_free(sb);
    }
    free(la);
    free(lb);
    mend_model_free(b);
    return s / ((double)NS * n * V);
}

int main(void) {
    uint64_t s = 777;
    for (int i = 0; i < NS * SL; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        g_calib[i] = (int32_t)((s >> 33) % 300);
    }
    mend_model *orig = NULL;
    CHECK_OK(mend_model_load(&orig, TINY, NULL));
    if (!orig) return test_finish();
    const mend_qfmt f16 = mend_qfmt_ggml(MEND_TYPE_F16), q40 = mend_qfmt_ggml(MEND_TYPE_Q4_0);
    int64_t z, n;
    char buf[64];

    /* magnitude 2:4, RTN to f16, no calibration tokens needed */
    mend_prune_opts mag24 = {MEND_PRUNE_MAGNITUDE, mend_sparsity_nm(2, 4), 0};
    mend_compress_opts o = opts(MEND_COMPRESS_RTN, f16, &mag24);
    o.calib = NULL;
    o.nsamples = o.seqlen = 0;
    CHECK_OK(mend_compress(TINY, tmp("mag24.gguf"), &o, NULL));
    CHECK(check_file(tmp("mag24.gguf"), 2, 4, 0, &z, &n));
    CHECK(z >= n / 2);
    CHECK(strcmp(meta(tmp("mag24.gguf"), "mend.compress.prune", buf, sizeof buf), "magnitude") == 0);
    CHECK(strcmp(meta(tmp("mag24.gguf"), "mend.compress.sparsity", buf, sizeof buf), "2:4") == 0);

    /* Wanda 50%, calibrated, RTN to f16 */
    mend_prune_opts wanda = {MEND_PRUNE_WANDA, mend_sparsity_unstructured(0.5), 0};
    o = opts(MEND_COMPRESS_RTN, f16, &wanda);
    CHECK_OK(mend_compress(TINY, tmp("wanda.gguf"), &o, NULL));
    CHECK(check_file(tmp("wanda.gguf"), 0, 0, 0.5, &z, &n));
    o.calib = NULL;
    CHECK_ERR(mend_compress(TINY, tmp("x.gguf"), &o, NULL), MEND_EINVAL, "calibration");

    /* SparseGPT 4:8 jointly with GPTQ onto q4_0 */
    mend_prune_opts sg48 = {MEND_PRUNE_SPARSEGPT, mend_sparsity_nm(4, 8), 1};
    o = opts(MEND_COMPRESS_GPTQ, q40, &sg48);
    CHECK_OK(mend_compress(TINY, tmp("sg48.gguf"), &o, NULL));
    CHECK(check_file(tmp("sg48.gguf"), 4, 8, 0, &z, &n));

    /* SparseGPT 50%, then GPTQ onto q4_0 keeping the zeros */
    mend_prune_opts sg50 = {MEND_PRUNE_SPARSEGPT, mend_sparsity_unstructured(0.5), 0};
    o = opts(MEND_COMPRESS_GPTQ, q40, &sg50);
    CHECK_OK(mend_compress(TINY, tmp("sg50q.gguf"), &o, NULL));
    CHECK(check_file(tmp("sg50q.gguf"), 0, 0, 0, &z, &n));
    CHECK(z >= n / 2);

    /* SparseGPT vs magnitude at 50%, both stored in f16 */
    o = opts(MEND_COMPRESS_RTN, f16, &sg50);
    CHECK_OK(mend_compress(TINY, tmp("sg50.gguf"), &o, NULL));
    mend_prune_opts mag50 = {MEND_PRUNE_MAGNITUDE, mend_sparsity_unstructured(0.5), 0};
    o = opts(MEND_COMPRESS_RTN, f16, &mag50);
    CHECK_OK(mend_compress(TINY, tmp("mag50.gguf"), &o, NULL));
    CHECK(check_file(tmp("sg50.gguf"), 0, 0, 0, &z, &n) && z >= n / 2);
    const double e_sg = logit_mse(orig, tmp("sg50.gguf")), e_mag = logit_mse(orig, tmp("mag50.gguf"));
    CHECK_MSG(e_sg < e_mag, "logit MSE: sparsegpt %g, magnitude %g", e_sg, e_mag);
    printf("tiny llama, 50%%: logit MSE sparsegpt %.4g, magnitude %.4g\n", e_sg, e_mag);

    const char *names[] = {"mag24.gguf", "wanda.gguf", "sg48.gguf", "sg50q.gguf", "sg50.gguf", "mag50.gguf", "x.gguf"};
    for (int i = 0; i < 7; i++) unlink(tmp(names[i]));
    mend_model_free(orig);
    return test_finish();
}
