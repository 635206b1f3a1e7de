/* Checks of the trainer's prompt gradient against the inference forward
 * (mend_forward, an independent code path), shared by test_grad.c and
 * test_grad_gemma3.c. */
#ifndef MEND_TEST_GRAD_CHECK_H
#define MEND_TEST_GRAD_CHECK_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "prompt/train.h"
#include "test.h"

/* Sum over scored positions of the objective, computed with mend_forward. */
static double loss_forward(const mend_model *m, const mend_model *teacher, const float *prompt, int P,
                           const int32_t *tok, int S) {
    const int V = m->cfg.n_vocab;
    mend_state *s = NULL, *ts = NULL;
    float *lp = malloc(sizeof(float) * (size_t)P * V), *lt = malloc(sizeof(float) * (size_t)S * V);
    float *tl = malloc(sizeof(float) * (size_t)S * V);
    if (mend_state_new(&s, m, P + S, P + S)) return NAN;
    mend_forward(s, NULL, prompt, P, 0, lp, 1);
    mend_forward(s, tok, NULL, S, P, lt, 1);
    double sum = 0;
    if (!teacher) {
        sum += mend_nll_from_logits(lp + (size_t)(P - 1) * V, V, tok[0]);
        for (int i = 1; i < S; i++) sum += mend_nll_from_logits(lt + (size_t)(i - 1) * V, V, tok[i]);
    } else {
        mend_state_new(&ts, teacher, S, S);
        mend_forward(ts, tok, NULL, S, 0, tl, 1);
        for (int i = 0; i + 1 < S; i++) {
            const float *z = lt + (size_t)i * V, *t = tl + (size_t)i * V;
            double mz = -1e300, mt = -1e300, sz = 0, st = 0, kl = 0;
            for (int v = 0; v < V; v++) { mz = fmax(mz, z[v]); mt = fmax(mt, t[v]); }
            for (int v = 0; v < V; v++) { sz += exp(z[v] - mz); st += exp(t[v] - mt); }
            for (int v = 0; v < V; v++) {
                double a = t[v] - mt - log(st), b = z[v] - mz - log(sz);
                kl += exp(a) * (a - b);
            }
            sum += kl;
        }
        mend_state_free(ts);
    }
    mend_state_free(s);
    free(lp);
    free(lt);
    free(tl);
    return sum;
}

/* central differences of mend_forward's loss against g (the gradient of the
 * mean over ns scored positions): the 4 largest coordinates and a random
 * direction, within 1e-2 relative */
static void check_fd(const char *label, const mend_model *m, const mend_model *teacher, const float *prompt, int P,
                     const int32_t *tok, int S, const float *g, int ns) {
    const int n = P * m->cfg.dim;
    /* central differences of mend_forward's loss (the sum; g is of the mean) */
    float *pp = malloc(sizeof(float) * n);
    int idx[4] = {-1, -1, -1, -1};
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < n; i++) {
            int taken = 0;
            for (int j = 0; j < k; j++) taken |= idx[j] == i;
            if (!taken && (idx[k] < 0 || fabs(g[i]) > fabs(g[idx[k]]))) idx[k] = i;
        }
    double fd_err = 0;
    for (int k = 0; k < 4; k++) {
        const int i = idx[k];
        const float h = 1e-2f;
        memcpy(pp, prompt, sizeof(float) * n);
        pp[i] = prompt[i] + h;
        const double lp = loss_forward(m, teacher, pp, P, tok, S);
        pp[i] = prompt[i] - h;
        const double lm = loss_forward(m, teacher, pp, P, tok, S);
        const double fd = (lp - lm) / ((double)(prompt[i] + h) - (double)(prompt[i] - h)) / ns;
        fd_err = fmax(fd_err, fabs(fd - g[i]) / fabs(g[i]));
    }
    /* a random unit direction u: d/de loss(p + e u) = g . u */
    double gu = 0, un = 0;
    float *u = malloc(sizeof(float) * n);
    uint64_t r = 12345;
    for (int i = 0; i < n; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        u[i] = (float)((double)(r >> 11) / 9007199254740992.0 - 0.5);
        un += (double)u[i] * u[i];
    }
    for (int i = 0; i < n; i++) u[i] = (float)(u[i] / sqrt(un));
    for (int i = 0; i < n; i++) gu += (double)g[i] * u[i];
    const float e = 1e-2f;
    for (int i = 0; i < n; i++) pp[i] = prompt[i] + e * u[i];
    const double lp = loss_forward(m, teacher, pp, P, tok, S);
    for (int i = 0; i < n; i++) pp[i] = prompt[i] - e * u[i];
    const double lm = loss_forward(m, teacher, pp, P, tok, S);
    const double fdu = (lp - lm) / (2 * e) / ns;
    const double dir_err = fabs(fdu - gu) / fabs(gu);
    printf("%s: finite differences: 4 largest coordinates max rel err %.2e, random direction %.2e\n", label, fd_err,
           dir_err);
    CHECK_MSG(fd_err <= 1e-2 && dir_err <= 1e-2, "%s: finite differences disagree", label);
    free(u);
    free(pp);
}

#endif
