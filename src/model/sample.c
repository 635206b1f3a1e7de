/* Token sampling: greedy, temperature, top-k, top-p (nucleus), driven by a
 * seeded PCG32 generator so a run is reproducible from its seed.
 *
 * PyTorch equivalent of one draw:
 *   p = softmax(logits / T); keep top_k; sort desc; keep the shortest prefix
 *   with cumsum(p) >= top_p; torch.multinomial(p_kept / p_kept.sum(), 1)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mend.h"
#include "util/util.h"

typedef struct cand {
    float p;
    int32_t id;
} cand;

struct mend_sampler {
    int n_vocab;
    mend_sampler_opts o;
    uint64_t state, inc;   /* PCG32 */
    cand *c;               /* (n_vocab) scratch */
};

static uint32_t pcg32(mend_sampler *s) {
    uint64_t old = s->state;
    s->state = old * 6364136223846793005ULL + s->inc;
    uint32_t xs = (uint32_t)(((old >> 18) ^ old) >> 27);
    uint32_t rot = (uint32_t)(old >> 59);
    return (xs >> rot) | (xs << ((32 - rot) & 31));
}

/* uniform in [0, 1) with 24 bits */
static float pcg_unit(mend_sampler *s) { return (float)(pcg32(s) >> 8) * (1.0f / 16777216.0f); }

int mend_sampler_new(mend_sampler **out, int n_vocab, const mend_sampler_opts *opts) {
    if (!out) return mend_set_error(MEND_EINVAL, "sampler: out is NULL");
    *out = NULL;
    if (n_vocab <= 0) return mend_set_error(MEND_EINVAL, "sampler: n_vocab %d must be positive", n_vocab);
    mend_sampler_opts o = {0};
    o.top_p = 1.0f;
    if (opts) o = *opts;
    if (!isfinite(o.temperature) || o.temperature < 0)
        return mend_set_error(MEND_EINVAL, "sampler: temperature %g must be >= 0", (double)o.temperature);
    if (!(o.top_p > 0.0f && o.top_p <= 1.0f))
        return mend_set_error(MEND_EINVAL, "sampler: top_p %g must be in (0, 1]", (double)o.top_p);
    if (o.top_k < 0) return mend_set_error(MEND_EINVAL, "sampler: top_k %d must be >= 0", o.top_k);
    mend_sampler *s = calloc(1, sizeof *s);
    if (!s) return mend_set_error(MEND_ENOMEM, "sampler: out of memory");
    s->c = malloc((size_t)n_vocab * sizeof *s->c);
    if (!s->c) {
        free(s);
        return mend_set_error(MEND_ENOMEM, "sampler: cannot allocate %d candidates", n_vocab);
    }
    s->n_vocab = n_vocab;
    s->o = o;
    /* PCG32 seeding: stream 0x5851f42d4c957f2d, state advanced past the seed */
    s->inc = (0x5851f42d4c957f2dULL << 1) | 1u;
    s->state = 0;
    pcg32(s);
    s->state += o.seed;
    pcg32(s);
    *out = s;
    return 0;
}

void mend_sampler_free(mend_sampler *s) {
    if (!s) return;
    free(s->c);
    free(s);
}

static int cand_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int32_t mend_sample(mend_sampler *s, const float *logits) {
    if (!s || !logits) return mend_set_error(MEND_EINVAL, "sample: sampler and logits must be given");
    const int V = s->n_vocab;
    int32_t best = 0;
    for (int i = 0; i < V; i++) {
        if (!isfinite(logits[i]))
            return mend_set_error(MEND_ERANGE, "sample: logit %d is not finite", i);
        if (logits[i] > logits[best]) best = i;
    }
    if (s->o.temperature <= 0.0f) return best;

    /* softmax(logits / T), unnormalised */
    const float mx = logits[best], invT = 1.0f / s->o.temperature;
    double total = 0.0;
    for (int i = 0; i < V; i++) {
        s->c[i].p = expf((logits[i] - mx) * invT);
        s->c[i].id = i;
        total += s->c[i].p;
    }
    int n = V;
    /* Tokens below (1 - top_p) / (V - 1) of the mass can never be inside the
     * nucleus (the tokens above them would already cover top_p), so drop them
     * before sorting (the kept mass then exceeds top_p). Only valid without
     * top_k, which renormalises first. */
    if (s->o.top_p < 1.0f && s->o.top_k == 0 && V > 1) {
        const double cut = (1.0 - s->o.top_p) / (double)(V - 1) * total;
        int k = 0;
        for (int i = 0; i < V; i++)
            if (s->c[i].p >= cut) s->c[k++] = s->c[i];
        if (k > 0) n = k;   /* k == 0 wrote nothing: keep all (the bound needs one kept) */
    }
    if (s->o.top_k > 0 || s->o.top_p < 1.0f) {
        qsort(s->c, (size_t)n, sizeof *s->c, cand_desc);
        if (s->o.top_k > 0 && s->o.top_k < n) n = s->o.top_k;
        double kept = 0.0;
        for (int i = 0; i < n; i++) kept += s->c[i].p;
        if (s->o.top_p < 1.0f) {
            const double want = s->o.top_p * kept;
            double cum = 0.0;
            int m = 0;
            while (m < n) {
                cum += s->c[m++].p;
                if (cum >= want) break;
            }
            n = m;
            kept = cum;
        }
        total = kept;
    }
    const double r = (double)pcg_unit(s) * total;
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += s->c[i].p;
        if (r < cum) return s->c[i].id;
    }
    return s->c[n - 1].id;   /* rounding at the top end */
}
