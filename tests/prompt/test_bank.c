/* bank.json: round trip through write / read / load_prompts, and every kind
 * of bad input gives an error naming the file and the field. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "prompt/adapter.h"
#include "prompt/bank.h"
#include "test.h"
#include "util/util.h"

static int parse(const char *json, mend_bank **b) { return mend_bank_parse("t/bank.json", json, strlen(json), b); }

#define HEAD "{\"format\": \"mend-prompt-bank\", \"version\": 1, \"dim\": 4, \"num_virtual_tokens\": 2, "

static void bad(const char *json, int code, const char *substr) {
    mend_bank *b = NULL;
    CHECK_ERR(parse(json, &b), code, substr);
    CHECK(b == NULL);
    /* every message names the file */
    CHECK(strstr(mend_last_error(), "t/bank.json") != NULL);
}

int main(void) {
    /* minimal valid text: defaults filled */
    mend_bank *b = NULL;
    CHECK_OK(parse(HEAD "\"prompts\": [{\"name\": \"a\"}, {\"name\": \"b.2\", \"adapter\": \"sub/b\", "
                        "\"centroid\": [1, 2, 3, 4.5]}]}", &b));
    if (b) {
        CHECK(b->n == 2 && b->dim == 4 && b->nv == 2);
        CHECK(!strcmp(b->p[0].adapter, "a") && !strcmp(b->p[0].domain, "a") && !b->p[0].centroid);
        CHECK(!strcmp(b->p[1].adapter, "sub/b") && b->p[1].centroid && b->p[1].centroid[3] == 4.5f);
        CHECK(!strcmp(b->default_selector, "attention") && b->layer0 == 0 && b->layer1 == 3 && !b->learned);
        CHECK(mend_bank_find(b, "b.2") == 1 && mend_bank_find(b, "c") == -1);
        CHECK(!b->trained_on.has_model && !b->trained_on.has_recipe);   /* an older bank */
        mend_bank_free(b);
    }
    /* the model the bank was trained on: optional, 16 hex digits each */
    CHECK_OK(parse(HEAD "\"model_fingerprint\": \"00000000000000ff\", \"model_recipe\": null, "
                        "\"prompts\": [{\"name\": \"a\"}]}", &b));
    if (b) CHECK(b->trained_on.has_model && b->trained_on.model == 255 && !b->trained_on.has_recipe);
    mend_bank_free(b);
    bad(HEAD "\"model_fingerprint\": \"00ff\", \"prompts\": [{\"name\": \"a\"}]}", MEND_EFORMAT,
        "model_fingerprint: \"00ff\" is not a fingerprint");
    bad(HEAD "\"model_fingerprint\": 255, \"prompts\": [{\"name\": \"a\"}]}", MEND_EFORMAT,
        "model_fingerprint is not a string");
    bad(HEAD "\"model_recipe\": \"00000000000000ff\", \"prompts\": [{\"name\": \"a\"}]}", MEND_EFORMAT,
        "model_recipe is given without model_fingerprint");

    /* bad inputs, each named */
    bad("{", MEND_EFORMAT, "malformed JSON");
    bad("[1]", MEND_EFORMAT, "not a JSON object");
    bad("{\"format\": \"x\"}", MEND_EFORMAT, "format");
    bad("{\"format\": \"mend-prompt-bank\", \"version\": 2, \"dim\": 4, \"num_virtual_tokens\": 2}", MEND_EUNSUPPORTED,
        "version is 2");
    bad("{\"format\": \"mend-prompt-bank\", \"version\": 1, \"num_virtual_tokens\": 2}", MEND_EFORMAT, "dim is missing");
    bad("{\"format\": \"mend-prompt-bank\", \"version\": 1, \"dim\": \"4\", \"num_virtual_tokens\": 2}", MEND_EFORMAT,
        "dim is not an integer");
    bad("{\"format\": \"mend-prompt-bank\", \"version\": 1, \"dim\": 4, \"num_virtual_tokens\": 0}", MEND_EFORMAT,
        "num_virtual_tokens is 0");
    bad(HEAD "\"prompts\": []}", MEND_EFORMAT, "prompts");
    bad(HEAD "\"prompts\": {}}", MEND_EFORMAT, "not an array");
    bad(HEAD "\"prompts\": [3]}", MEND_EFORMAT, "prompts[0] is not an object");
    bad(HEAD "\"prompts\": [{\"adapter\": \"a\"}]}", MEND_EFORMAT, "prompts[0].name is missing");
    bad(HEAD "\"prompts\": [{\"name\": \"a b\"}]}", MEND_EFORMAT, "prompts[0].name \"a b\"");
    bad(HEAD "\"prompts\": [{\"name\": \"..\"}]}", MEND_EFORMAT, "prompts[0].name");
    bad(HEAD "\"prompts\": [{\"name\": \"a\"}, {\"name\": \"a\"}]}", MEND_EFORMAT, "prompts[1].name \"a\" repeats");
    bad(HEAD "\"prompts\": [{\"name\": \"a\", \"adapter\": \"../x\"}]}", MEND_EFORMAT, "prompts[0].adapter");
    bad(HEAD "\"prompts\": [{\"name\": \"a\", \"adapter\": \"/abs\"}]}", MEND_EFORMAT, "prompts[0].adapter");
    bad(HEAD "\"prompts\": [{\"name\": \"a\", \"adapter\": \"x/../../y\"}]}", MEND_EFORMAT, "prompts[0].adapter");
    bad(HEAD "\"prompts\": [{\"name\": \"a\", \"centroid\": [1, 2, 3]}]}", MEND_EFORMAT,
        "prompts[0].centroid has the wrong length");
    bad(HEAD "\"prompts\": [{\"name\": \"a\", \"centroid\": [1, 2, \"3\", 4]}]}", MEND_EFORMAT,
        "prompts[0].centroid[2]");
    bad(HEAD "\"prompts\": [{\"name\": \"a\", \"steps\": -3}]}", MEND_EFORMAT, "prompts[0].steps");
    bad(HEAD "\"prompts\": [{\"name\": \"a\", \"best_val\": \"x\"}]}", MEND_EFORMAT, "prompts[0].best_val");
    bad(HEAD "\"prompts\": [{\"name\": \"a\", \"domain\": 5}]}", MEND_EFORMAT, "prompts[0].domain");
    bad(HEAD "\"prompts\": [{\"name\": \"a\"}], \"selector\": {\"default\": \"magic\"}}", MEND_EFORMAT,
        "selector.default");
    /* every selector mend eval knows can be a bank's default, the ones bank build writes among them */
    const char *defaults[] = {"attention", "attention-calibrated", "router", "learned", "loss", "none", "fixed:a"};
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++) {
        char js[256];
        snprintf(js, sizeof js, HEAD "\"prompts\": [{\"name\": \"a\"}], \"selector\": {\"default\": \"%s\"}}",
                 defaults[i]);
        CHECK_OK(parse(js, &b));
        if (b) CHECK(!strcmp(b->default_selector, defaults[i]));
        mend_bank_free(b);
        b = NULL;
    }
    bad(HEAD "\"prompts\": [{\"name\": \"a\"}], \"selector\": {\"default\": \"fixed:b\"}}", MEND_EFORMAT,
        "names no prompt");
    bad(HEAD "\"prompts\": [{\"name\": \"a\"}], \"selector\": {\"layers\": [3, 3]}}", MEND_EFORMAT,
        "selector.layers");
    bad(HEAD "\"prompts\": [{\"name\": \"a\"}], \"selector\": {\"layers\": [1]}}", MEND_EFORMAT, "selector.layers");
    bad(HEAD "\"prompts\": [{\"name\": \"a\"}], \"selector\": 1}", MEND_EFORMAT, "selector is not an object");
    bad(HEAD "\"prompts\": [{\"name\": \"a\"}], \"router\": {\"metric\": \"l2\"}}", MEND_EUNSUPPORTED,
        "router.metric");
    bad(HEAD "\"prompts\": [{\"name\": \"a\"}], \"router\": {\"feature\": \"x\"}}", MEND_EUNSUPPORTED,
        "router.feature");

    /* learned_router: optional (above: banks without one load, b->learned NULL), every field checked */
#define ONE HEAD "\"prompts\": [{\"name\": \"a\"}], \"learned_router\": "
#define LR(w, b) ONE "{\"feature\": \"mean_token_embedding\", \"weights\": " w ", \"bias\": " b
    CHECK_OK(parse(LR("[1, 2, 3, -4.5]", "[0.25]") ", \"normalize\": true, \"train_windows\": 9, "
                   "\"train_accuracy\": 1, \"heldout_accuracy\": null}}", &b));
    if (b) {
        const mend_learned_router *r = b->learned;
        CHECK(r && r->K == 1 && r->dim == 4 && r->w[3] == -4.5f && r->b[0] == 0.25f && r->normalize == 1);
        CHECK(r && r->train_windows == 9 && r->train_acc == 1.0 && isnan(r->heldout_acc));
        mend_bank_free(b);
        b = NULL;
    }
    bad(LR("[1, 2, 3]", "[0]") "}}", MEND_EFORMAT, "learned_router.weights has the wrong length");
    bad(LR("[1, 2, 3, 4]", "[0, 1]") "}}", MEND_EFORMAT, "learned_router.bias has the wrong length");
    bad(LR("[1, 2, \"3\", 4]", "[0]") "}}", MEND_EFORMAT, "learned_router.weights[2]");
    bad(LR("[1, 2, 1e39, 4]", "[0]") "}}", MEND_EFORMAT, "learned_router.weights[2] is not a finite float");
    bad(LR("{}", "[0]") "}}", MEND_EFORMAT, "learned_router.weights has no array");
    bad(LR("[1, 2, 3, 4]", "[null]") "}}", MEND_EFORMAT, "learned_router.bias[0]");
    bad(ONE "{\"weights\": [1, 2, 3, 4], \"bias\": [0]}}", MEND_EUNSUPPORTED, "learned_router.feature");
    bad(ONE "[1]}", MEND_EFORMAT, "learned_router is not an object");
    bad(LR("[1, 2, 3, 4]", "[0]") ", \"normalize\": 1}}", MEND_EFORMAT, "learned_router.normalize");
    bad(LR("[1, 2, 3, 4]", "[0]") ", \"train_windows\": -1}}", MEND_EFORMAT, "learned_router.train_windows");
    bad(LR("[1, 2, 3, 4]", "[0]") ", \"heldout_accuracy\": 1.5}}", MEND_EFORMAT,
        "learned_router.heldout_accuracy");
    bad(LR("[1, 2, 3, 4]", "[0]") ", \"train_accuracy\": \"x\"}}", MEND_EFORMAT, "learned_router.train_accuracy");
#undef LR
#undef ONE

    /* write -> read -> load prompts */
    char dir[] = "/tmp/mend_test_bank_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    const int dim = 4, nv = 2;
    float e0[8] = {1, 2, 3, 4, 5, 6, 7, 8}, e1[8] = {-1, -2, -3, -4, -5, -6, -7, -8}, c1[4] = {0.5f, -0.25f, 1e-3f, 7};
    char *a0 = mend_path_join(dir, "p0"), *a1 = mend_path_join(dir, "p1");
    CHECK_OK(mend_adapter_write(a0, e0, nv, dim, NULL));
    CHECK_OK(mend_adapter_write(a1, e1, nv, dim, NULL));
    mend_bank_prompt ps[2] = {
        {.name = "p0", .adapter = "p0", .domain = "wiki", .corpus = "/c/wiki.txt", .steps = 10, .best_val = 3.5},
        {.name = "p1", .adapter = "p1", .domain = "news", .centroid = c1, .steps = -1, .best_val = NAN}};
    mend_bank wb = {.base_model = "m.gguf", .trained_on = {.has_model = 1, .has_recipe = 1, .model = 7, .recipe = 9},
                    .dim = dim, .nv = nv, .n = 2, .p = ps, .default_selector = "router",
                    .layer0 = 1, .layer1 = 3, .router_tokens = 100};
    CHECK_OK(mend_bank_write(dir, &wb));
    CHECK_OK(mend_bank_read(dir, &b));
    if (b) {
        CHECK(b->n == 2 && b->dim == dim && b->nv == nv && !strcmp(b->base_model, "m.gguf"));
        CHECK(b->trained_on.has_model && b->trained_on.model == 7 && b->trained_on.has_recipe && b->trained_on.recipe == 9);
        CHECK(!strcmp(b->p[0].domain, "wiki") && !strcmp(b->p[0].corpus, "/c/wiki.txt") && b->p[0].steps == 10);
        CHECK(b->p[0].best_val == 3.5 && isnan(b->p[1].best_val) && b->p[1].steps == -1 && !b->p[1].corpus);
        CHECK(b->p[1].centroid && !memcmp(b->p[1].centroid, c1, sizeof c1) && !b->p[0].centroid);
        CHECK(!strcmp(b->default_selector, "router") && b->layer0 == 1 && b->layer1 == 3 && b->router_tokens == 100);
        CHECK_ERR(mend_bank_load_prompts(b, 8), MEND_EINVAL, "hidden size is 8");
        CHECK_OK(mend_bank_load_prompts(b, dim));
        CHECK(b->p[0].emb && !memcmp(b->p[0].emb, e0, sizeof e0) && !memcmp(b->p[1].emb, e1, sizeof e1));
        mend_bank_free(b);
        b = NULL;
    }
    /* an adapter of another length */
    float e2[12] = {0};
    CHECK_OK(mend_adapter_write(a1, e2, 3, dim, NULL));
    CHECK_OK(mend_bank_read(dir, &b));
    if (b) {
        CHECK_ERR(mend_bank_load_prompts(b, dim), MEND_EFORMAT, "p1: the adapter has 3 virtual tokens");
        mend_bank_free(b);
        b = NULL;
    }
    /* a missing adapter */
    ps[1].adapter = "gone";
    CHECK_OK(mend_bank_write(dir, &wb));
    CHECK_OK(mend_bank_read(dir, &b));
    if (b) {
        CHECK_ERR(mend_bank_load_prompts(b, dim), MEND_EIO, "gone");
        mend_bank_free(b);
        b = NULL;
    }
    /* a missing bank.json, a missing directory */
    char *bj = mend_path_join(dir, "bank.json");
    unlink(bj);
    CHECK_ERR(mend_bank_read(dir, &b), MEND_EIO, "bank.json: missing");
    CHECK_ERR(mend_bank_read("/nonexistent/bank", &b), MEND_EIO, "not a directory");
    /* clean up */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    free(bj);
    free(a0);
    free(a1);
    return test_finish();
}
