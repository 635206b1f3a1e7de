/* The attention probe against the model's own forward on one prompt
 * (tests/prompt/test_select_probe.c on a windowed fixture,
 * tests/prompt/test_probe_gemma3.c on Gemma 3 270M, test_select_probe.c on
 * OPT's learned positions).
 *
 * With K = 1 the probe is the run mend_forward makes with the prompt's
 * vectors at positions 0 .. nv-1 and the input from nv, so after the probe
 * has run every layer its buffers must hold what the forward's state holds:
 * the keys and values of every layer (prompt rows and input rows), the
 * input's residual stream after the last layer and the last layer's
 * attention output. With K = 0 the hidden mean is the forward's final
 * states from position 0, out-normed and averaged. Each difference is
 * max |probe - forward| / max |forward| over the tensor (the largest over
 * the layers for keys and values). */
#ifndef MEND_TEST_PROBE_FORWARD_H
#define MEND_TEST_PROBE_FORWARD_H

#include <math.h>
#include <stdlib.h>

#include "model/attn_probe.h"
#include "model/model.h"
#include "test.h"

typedef struct probe_diffs {
    double keys, values, x, att, hidden, mass_sum;
} probe_diffs;

static double pf_rel(const float *a, const float *b, size_t n) {
    double dm = 0, bm = 0;
    for (size_t i = 0; i < n; i++) {
        dm = fmax(dm, fabs((double)a[i] - b[i]));
        bm = fmax(bm, fabs((double)b[i]));
    }
    return bm > 0 ? dm / bm : dm;
}

/* the differences for prompt (nv x dim) and tokens (n); 0 when both ran */
static int probe_vs_forward(const mend_model *m, const float *prompt, int nv, const int32_t *tok, int n,
                            probe_diffs *d) {
    const mend_config *c = &m->cfg;
    const int L = c->n_layers, H = c->n_heads, dim = c->dim, T = nv + n;
    const size_t qd = (size_t)H * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    int ok = 0;
    *d = (probe_diffs){0};
    mend_state *s = NULL;
    mend_probe *p = NULL;
    float *mm = malloc(sizeof(float) * H * 2), *hm = malloc(sizeof(float) * dim);
    CHECK_OK(mend_state_new(&s, m, T, T));
    CHECK_OK(mend_probe_new(&p, m, &prompt, 1, nv, n));
    if (!s || !p || !mm || !hm) goto done;
    CHECK_OK(mend_forward(s, NULL, prompt, nv, 0, NULL, 0));
    CHECK_OK(mend_forward(s, tok, NULL, n, nv, NULL, 0));
    CHECK_OK(mend_probe_attention(p, tok, n, L - 1, L, mm, NULL));   /* runs every layer */
    for (int l = 0; l < L; l++) {
        const float *pk, *pv, *fk, *fv;
        mend_probe_buffers(p, l, NULL, NULL, &pk, &pv);
        mend_state_buffers(s, l, NULL, NULL, &fk, &fv);
        d->keys = fmax(d->keys, pf_rel(pk, fk, (size_t)T * kvd));
        d->values = fmax(d->values, pf_rel(pv, fv, (size_t)T * kvd));
    }
    const float *px, *pa, *fx, *fa;
    mend_probe_buffers(p, L - 1, &px, &pa, NULL, NULL);
    mend_state_buffers(s, L - 1, &fx, &fa, NULL, NULL);
    d->x = pf_rel(px, fx, (size_t)n * dim);
    d->att = pf_rel(pa, fa, (size_t)n * qd);
    for (int h = 0; h < H; h++) d->mass_sum = fmax(d->mass_sum, fabs(mm[2 * h] + mm[2 * h + 1] - 1.0));
    mend_probe_free(p);
    mend_state_free(s);
    p = NULL;
    s = NULL;

    /* no prompt: the router's hidden mean against the forward from position 0 */
    CHECK_OK(mend_state_new(&s, m, n, n));
    CHECK_OK(mend_probe_new(&p, m, NULL, 0, 0, n));
    if (!s || !p) goto done;
    CHECK_OK(mend_forward(s, tok, NULL, n, 0, NULL, 0));
    CHECK_OK(mend_probe_hidden_mean(p, tok, n, hm));
    mend_state_buffers(s, 0, &fx, NULL, NULL, NULL);
    double *ref = calloc((size_t)dim, sizeof *ref);
    float *reff = malloc(sizeof(float) * dim);
    for (int i = 0; ref && reff && i < n; i++) {
        const float *r = fx + (size_t)i * dim;
        double mean = 0, ss = 0;   /* RMSNorm, or LayerNorm with bias (cfg.layer_norm) */
        for (int j = 0; c->layer_norm && j < dim; j++) mean += (double)r[j] / dim;
        for (int j = 0; j < dim; j++) ss += ((double)r[j] - mean) * ((double)r[j] - mean);
        const double inv = 1.0 / sqrt(ss / dim + c->norm_eps);
        for (int j = 0; j < dim; j++)
            ref[j] += ((r[j] - mean) * inv * m->out_norm[j] + (c->layer_norm ? m->out_norm_b[j] : 0.0)) / n;
    }
    for (int j = 0; ref && reff && j < dim; j++) reff[j] = (float)ref[j];
    if (ref && reff) d->hidden = pf_rel(hm, reff, (size_t)dim);
    free(ref);
    free(reff);
    ok = 1;
done:
    mend_probe_free(p);
    mend_state_free(s);
    free(mm);
    free(hm);
    return ok ? 0 : -1;
}

#endif
