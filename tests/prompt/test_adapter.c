/* PEFT prompt adapters (prompt/adapter.c): write/read round trip, the
 * config PEFT needs, interoperability with PEFT in both directions
 * (fixtures from tests/fixtures/tune/peft_interop.py over the HF tiny
 * llama), and bad inputs. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "kernels/quants.h"
#include "model/model.h"
#include "prompt/adapter.h"
#include "prompt/train.h"
#include "util/util.h"
#include "test.h"

static void put(const char *dir, const char *name, const char *text) {
    char *p = mend_path_join(dir, name);
    mend_write_file_atomic(p, text, strlen(text));
    free(p);
}

/* Mean CE of tokens behind the adapter in dir, PEFT's convention. */
static double adapter_loss(const mend_model *m, const char *dir, const char *loss_json, double *peft_loss) {
    json_error_t e;
    json_t *j = json_load_file(loss_json, 0, &e);
    if (!j) return NAN;
    json_t *t = json_object_get(j, "tokens");
    int S = (int)json_array_size(t);
    int32_t ids[256];
    for (int i = 0; i < S && i < 256; i++) ids[i] = (int32_t)json_integer_value(json_array_get(t, i));
    *peft_loss = json_real_value(json_object_get(j, "loss"));
    json_decref(j);
    float *emb = NULL;
    int nv = 0;
    if (mend_adapter_read(dir, m->cfg.dim, &emb, &nv)) return NAN;
    mend_trainer *tr = NULL;
    double loss = NAN;
    mend_train_loss L;
    if (mend_trainer_new(&tr, m, nv, S, NULL) == 0 &&
        mend_trainer_step(tr, emb, ids, S, MEND_TUNE_CE, 1.0f, NULL, &L) == 0)
        loss = L.loss_sum / L.n_scored;
    mend_trainer_free(tr);
    free(emb);
    return loss;
}

int main(void) {
    char tmpl[] = "/tmp/mend_adapter_XXXXXX";
    char *root = mkdtemp(tmpl);
    CHECK(root != NULL);
    if (!root) return test_finish();
    char *dir = mend_path_join(root, "a/b");

    /* round trip */
    const int nv = 3, dim = 8;
    float emb[24];
    for (int i = 0; i < 24; i++) emb[i] = (float)(0.1 * i - 1.2) + 1e-7f * i;
    mend_adapter_meta meta = {.base_model = "model.gguf", .init = "TEXT", .init_text = "hello",
                              .num_attention_heads = 4, .num_layers = 2};
    CHECK_OK(mend_adapter_write(dir, emb, nv, dim, &meta));
    float *back = NULL;
    int nb = 0;
    CHECK_OK(mend_adapter_read(dir, dim, &back, &nb));
    CHECK(nb == nv && back && memcmp(back, emb, sizeof emb) == 0);
    free(back);
    {   /* the model it was trained on, in the safetensors __metadata__ */
        mend_fp rec = {.has_model = 1};
        CHECK_OK(mend_adapter_read_fp(dir, dim, &back, &nb, &rec));
        CHECK(!rec.has_model && !rec.has_recipe);   /* none given */
        free(back);
        const mend_fp on = {.has_model = 1, .has_recipe = 1, .model = 0x0123456789abcdefull, .recipe = 42};
        mend_adapter_meta m2 = meta;
        m2.trained_on = &on;
        CHECK_OK(mend_adapter_write(dir, emb, nv, dim, &m2));
        CHECK_OK(mend_adapter_read_fp(dir, dim, &back, &nb, &rec));
        CHECK(rec.has_model && rec.model == on.model && rec.has_recipe && rec.recipe == 42);
        CHECK(nb == nv && back && memcmp(back, emb, sizeof emb) == 0);
        free(back);
        /* what PEFT reads is unchanged: one tensor, every metadata value a
         * string (safetensors' rule), "format": "pt" as transformers expects */
        char *st = mend_path_join(dir, "adapter_model.safetensors");
        mend_safetensors *sf = NULL;
        CHECK_OK(mend_safetensors_open(&sf, st));
        if (sf) {
            CHECK(sf->n_tensors == 1 && !strcmp(sf->tensors[0].name, "prompt_embeddings"));
            CHECK(!strcmp(mend_safetensors_meta(sf, "format"), "pt"));
            CHECK(!strcmp(mend_safetensors_meta(sf, "mend.model_fingerprint"), "0123456789abcdef"));
            CHECK(!strcmp(mend_safetensors_meta(sf, "mend.model_recipe"), "000000000000002a"));
        }
        mend_safetensors_close(sf);
        /* a malformed record is refused, naming the file and the key */
        mend_st_out t = {.name = "prompt_embeddings", .type = MEND_TYPE_F32, .n_dims = 2, .shape = {nv, dim},
                         .data = emb};
        const char *md[] = {"format", "pt", "mend.model_fingerprint", "12345", NULL};
        CHECK_OK(mend_safetensors_write(st, &t, 1, md));
        CHECK_ERR(mend_adapter_read_fp(dir, dim, &back, &nb, &rec), MEND_EFORMAT,
                  "adapter_model.safetensors: __metadata__ \"mend.model_fingerprint\": \"12345\" is not a fingerprint");
        const char *md2[] = {"format", "pt", "mend.model_recipe", "0123456789abcdef", NULL};
        CHECK_OK(mend_safetensors_write(st, &t, 1, md2));
        CHECK_ERR(mend_adapter_read_fp(dir, dim, &back, &nb, &rec), MEND_EFORMAT, "no \"mend.model_fingerprint\"");
        CHECK_OK(mend_adapter_write(dir, emb, nv, dim, &meta));
        free(st);
    }
    {   /* the config carries what PEFT's PromptTuningConfig needs */
        char *p = mend_path_join(dir, "adapter_config.json");
        json_error_t e;
        json_t *j = json_load_file(p, 0, &e);
        CHECK(j != NULL);
        if (j) {
            CHECK(!strcmp(json_string_value(json_object_get(j, "peft_type")), "PROMPT_TUNING"));
            CHECK(!strcmp(json_string_value(json_object_get(j, "task_type")), "CAUSAL_LM"));
            CHECK(json_integer_value(json_object_get(j, "num_virtual_tokens")) == nv);
            CHECK(json_integer_value(json_object_get(j, "token_dim")) == dim);
            CHECK(json_integer_value(json_object_get(j, "num_transformer_submodules")) == 1);
            CHECK(json_integer_value(json_object_get(j, "num_attention_heads")) == 4);
            CHECK(json_integer_value(json_object_get(j, "num_layers")) == 2);
            CHECK(!strcmp(json_string_value(json_object_get(j, "prompt_tuning_init")), "TEXT"));
            CHECK(!strcmp(json_string_value(json_object_get(j, "prompt_tuning_init_text")), "hello"));
            CHECK(json_is_string(json_object_get(j, "tokenizer_name_or_path")));
            CHECK(json_is_true(json_object_get(j, "inference_mode")));
            json_decref(j);
        }
        free(p);
    }
    /* bad inputs */
    float *x = NULL;
    int n = 0;
    CHECK_ERR(mend_adapter_read(dir, dim + 1, &x, &n), MEND_EINVAL, "token_dim");
    CHECK_ERR(mend_adapter_read("/nonexistent/adapter", dim, &x, &n), MEND_EIO, "not a directory");
    put(dir, "adapter_config.json", "{\"peft_type\": \"LORA\"}");
    CHECK_ERR(mend_adapter_read(dir, dim, &x, &n), MEND_EUNSUPPORTED, "PROMPT_TUNING");
    put(dir, "adapter_config.json", "{\"peft_type\": \"PROMPT_TUNING\", \"num_virtual_tokens\": 4}");
    CHECK_ERR(mend_adapter_read(dir, dim, &x, &n), MEND_EFORMAT, "num_virtual_tokens");
    put(dir, "adapter_config.json", "{\"peft_type\": \"PROMPT_TUNING\", \"num_transformer_submodules\": 2}");
    CHECK_ERR(mend_adapter_read(dir, dim, &x, &n), MEND_EUNSUPPORTED, "submodules");
    put(dir, "adapter_config.json", "{\"peft_type\": \"PROMPT_TUNING\",");
    CHECK_ERR(mend_adapter_read(dir, dim, &x, &n), MEND_EFORMAT, "malformed");
    put(dir, "adapter_config.json", "{\"peft_type\": \"PROMPT_TUNING\"}");
    CHECK_OK(mend_adapter_read(dir, dim, &x, &n));
    free(x);
    x = NULL;
    {
        char *st = mend_path_join(dir, "adapter_model.safetensors");
        mend_st_out t = {.name = "other", .type = MEND_TYPE_F32, .n_dims = 2, .shape = {3, 8}, .data = emb};
        CHECK_OK(mend_safetensors_write(st, &t, 1, NULL));
        CHECK_ERR(mend_adapter_read(dir, dim, &x, &n), MEND_EFORMAT, "prompt_embeddings");
        mend_st_out t1 = {.name = "prompt_embeddings", .type = MEND_TYPE_F32, .n_dims = 1, .shape = {24}, .data = emb};
        CHECK_OK(mend_safetensors_write(st, &t1, 1, NULL));
        CHECK_ERR(mend_adapter_read(dir, dim, &x, &n), MEND_EFORMAT, "shape");
        float bad[24];
        memcpy(bad, emb, sizeof bad);
        bad[13] = NAN;
        mend_st_out t2 = {.name = "prompt_embeddings", .type = MEND_TYPE_F32, .n_dims = 2, .shape = {3, 8}, .data = bad};
        CHECK_OK(mend_safetensors_write(st, &t2, 1, NULL));
        CHECK_ERR(mend_adapter_read(dir, dim, &x, &n), MEND_EFORMAT, "not finite");
        /* a truncated file */
        char *buf = NULL;
        size_t len = 0;
        CHECK_OK(mend_read_file(st, 1 << 20, &buf, &len));
        CHECK_OK(mend_write_file_atomic(st, buf, len - 5));
        CHECK(mend_adapter_read(dir, dim, &x, &n) != 0);
        free(buf);
        free(st);
    }
    CHECK_ERR(mend_adapter_write(dir, emb, 0, dim, &meta), MEND_EINVAL, NULL);
    emb[5] = INFINITY;
    CHECK_ERR(mend_adapter_write(dir, emb, nv, dim, &meta), MEND_EINVAL, "not finite");

    /* interoperability with PEFT over the HF tiny llama */
    mend_model *m = NULL;
    mend_load_opts o = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, test_src("tests/fixtures/hf/llama"), &o));
    if (m) {
        double peft = NAN;
        double l1 = adapter_loss(m, test_src("tests/fixtures/tune/peft_adapter"),
                                 test_src("tests/fixtures/tune/peft_adapter_loss.json"), &peft);
        printf("adapter written by PEFT: mend loss %.6f, PEFT loss %.6f\n", l1, peft);
        CHECK_MSG(fabs(l1 - peft) <= 1e-3, "PEFT-written adapter: mend %.6f vs PEFT %.6f", l1, peft);
        double l2 = adapter_loss(m, test_src("tests/fixtures/tune/mend_adapter"),
                                 test_src("tests/fixtures/tune/mend_adapter_loss.json"), &peft);
        printf("adapter written by mend: mend loss %.6f, PEFT loss %.6f\n", l2, peft);
        CHECK_MSG(fabs(l2 - peft) <= 1e-3, "mend-written adapter: mend %.6f vs PEFT %.6f", l2, peft);
        mend_model_free(m);
    }
    free(dir);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd)) {}
    return test_finish();
}
