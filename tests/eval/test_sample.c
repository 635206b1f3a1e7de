/* Sampler: greedy argmax, reproducibility from the seed, the sampled
 * distribution against softmax, top-k and top-p truncation. */
#include "test.h"

static int32_t draw(mend_sampler *s, const float *lg) { return mend_sample(s, lg); }

int main(void) {
    mend_sampler *s = NULL;
    float lg[6] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f};

    /* greedy: argmax, lowest id on ties */
    mend_sampler_opts g = {.temperature = 0.0f, .top_p = 0.95f, .seed = 1};
    CHECK_OK(mend_sampler_new(&s, 6, &g));
    CHECK(draw(s, lg) == 1);
    float lg2[6] = {-5, -4, -3, -2, -1, 9};
    CHECK(draw(s, lg2) == 5);
    float bad[6] = {0, 0, NAN, 0, 0, 0};
    CHECK_ERR(mend_sample(s, bad), MEND_ERANGE, "not finite");
    mend_sampler_free(s);

    /* bad options */
    mend_sampler_opts b = {.temperature = -1.0f, .top_p = 1.0f};
    CHECK_ERR(mend_sampler_new(&s, 6, &b), MEND_EINVAL, "temperature");
    b.temperature = 1.0f;
    b.top_p = 0.0f;
    CHECK_ERR(mend_sampler_new(&s, 6, &b), MEND_EINVAL, "top_p");
    b.top_p = 1.0f;
    CHECK_ERR(mend_sampler_new(&s, 0, &b), MEND_EINVAL, "n_vocab");

    /* distribution at T = 0.7 over 4 tokens: frequencies match softmax(l / T) */
    {
        float l4[4] = {1.0f, 0.2f, -0.5f, 0.6f};
        const double T = 0.7;
        double p[4], z = 0;
        for (int i = 0; i < 4; i++) z += p[i] = exp(l4[i] / T);
        for (int i = 0; i < 4; i++) p[i] /= z;
        mend_sampler_opts o = {.temperature = (float)T, .top_p = 1.0f, .seed = 42};
        CHECK_OK(mend_sampler_new(&s, 4, &o));
        int cnt[4] = {0};
        const int N = 40000;
        int in_range = 1;
        for (int i = 0; i < N; i++) {
            int32_t t = draw(s, l4);
            if (t >= 0 && t < 4) cnt[t]++;
            else in_range = 0;
        }
        CHECK(in_range);
        for (int i = 0; i < 4; i++) CHECK_NEAR((double)cnt[i] / N, p[i], 0.012);
        mend_sampler_free(s);
    }
    /* same seed, same sequence; another seed, another sequence */
    {
        float l8[8] = {0.1f, 0.3f, 0.2f, 0.0f, 0.25f, 0.15f, 0.05f, 0.3f};
        int32_t a[64], c[64], d[64];
        mend_sampler_opts o = {.temperature = 1.0f, .top_p = 1.0f, .seed = 7};
        mend_sampler *s1, *s2, *s3;
        CHECK_OK(mend_sampler_new(&s1, 8, &o));
        CHECK_OK(mend_sampler_new(&s2, 8, &o));
        o.seed = 8;
        CHECK_OK(mend_sampler_new(&s3, 8, &o));
        int same = 1, diff = 0;
        for (int i = 0; i < 64; i++) {
            a[i] = draw(s1, l8);
            c[i] = draw(s2, l8);
            d[i] = draw(s3, l8);
            same &= a[i] == c[i];
            diff += a[i] != d[i];
        }
        CHECK(same);
        CHECK(diff > 10);
        mend_sampler_free(s1);
        mend_sampler_free(s2);
        mend_sampler_free(s3);
    }
    /* top-p 0.8 on probabilities 0.5/0.3/0.15/0.05: only the first two, 5:3 */
    {
        float l4[4] = {logf(0.15f), logf(0.5f), logf(0.05f), logf(0.3f)};
        mend_sampler_opts o = {.temperature = 1.0f, .top_p = 0.8f, .seed = 3};
        CHECK_OK(mend_sampler_new(&s, 4, &o));
        int cnt[4] = {0};
        const int N = 20000;
        for (int i = 0; i < N; i++) cnt[draw(s, l4)]++;
        CHECK(cnt[0] == 0 && cnt[2] == 0);
        CHECK_NEAR((double)cnt[1] / N, 0.625, 0.015);
        mend_sampler_free(s);
        /* tiny nucleus on equal logits: the lowest id only (ties sort by id) */
        float eq[2] = {0, 0};
        o.top_p = 0.1f;
        CHECK_OK(mend_sampler_new(&s, 2, &o));
        int ok = 1;
        for (int i = 0; i < 100; i++) ok &= draw(s, eq) == 0;
        CHECK(ok);
        mend_sampler_free(s);
    }
    /* top-k 2 keeps the two best: 2.0 (id 1) and 2.0 (id 3) equally */
    {
        mend_sampler_opts o = {.temperature = 1.0f, .top_p = 1.0f, .top_k = 2, .seed = 11};
        CHECK_OK(mend_sampler_new(&s, 6, &o));
        int cnt[6] = {0};
        for (int i = 0; i < 10000; i++) cnt[draw(s, lg)]++;
        CHECK(cnt[1] + cnt[3] == 10000);
        CHECK_NEAR(cnt[1] / 10000.0, 0.5, 0.03);
        mend_sampler_free(s);
        o.top_k = 1;
        CHECK_OK(mend_sampler_new(&s, 6, &o));
        int ok = 1;
        for (int i = 0; i < 100; i++) ok &= draw(s, lg2) == 5;
        CHECK(ok);
        mend_sampler_free(s);
    }
    return test_finish();
}
