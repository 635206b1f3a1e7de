/* Prompts and banks bound to the model they were trained on, through the
 * mend binary on the tiny model: mend eval / ppl / generate warn when a
 * prompt or bank was trained on another model (a one-byte-modified copy)
 * and note one that records nothing; mend eval --prompt refuses a prompt
 * holding a NaN; mend repair --bank-dir refuses a bank trained for another
 * model or recording none, warns and goes on for the same recipe, and runs
 * quietly with the bank trained on exactly the model it compressed. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "cli_run.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "kernels/quants.h"
#include "prompt/adapter.h"
#include "util/util.h"

#define TINY "tests/fixtures/hf/llama.gguf"

static char dir[64];
static const char *P(const char *rel) {
    static char buf[8][512];
    static int k = 0;
    k = (k + 1) & 7;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, rel);
    return buf[k];
}

static void fp_hex_of(const char *path, char out[17]) {
    mend_model *m = NULL;
    mend_fp fp = {0};
    mend_load_opts lo = {.keep_packed = 1, .no_repack = 1};
    CHECK_OK(mend_model_load(&m, path, &lo));
    if (m) CHECK_OK(mend_model_fingerprint(m, &fp));
    mend_model_free(m);
    mend_fp_hex(fp.model, out);
}

/* TINY with one byte of its last tensor changed: another model */
static void make_other(const char *path) {
    char *buf = NULL;
    size_t len = 0;
    mend_gguf *g = NULL;
    CHECK_OK(mend_read_file(test_src(TINY), (size_t)1 << 26, &buf, &len));
    CHECK_OK(mend_gguf_open(&g, test_src(TINY)));
    if (buf && g) {
        const gguf_tensor *t = &g->tensors[g->n_tensors - 1];
        buf[g->data_offset + t->offset + 1] ^= 0x08;
        CHECK_OK(mend_write_file_atomic(path, buf, len));
    }
    mend_gguf_close(g);
    free(buf);
}

static int has(const char *s, const char *sub) { return s && sub && strstr(s, sub) != NULL; }

static void test_prompts(const char *calib, const char *task) {
    char ft[17], fo[17];
    fp_hex_of(test_src(TINY), ft);
    make_other(P("other.gguf"));
    fp_hex_of(P("other.gguf"), fo);
    CHECK(strcmp(ft, fo) != 0);

    cli_out r = cli_runf("-t 1 tune %s --corpus %s -o %s --tokens 4 --steps 2 --seqlen 32", test_src(TINY), calib, P("p"));
    CHECK_MSG(r.code == 0, "tune: %s", r.err);
    cli_free(&r);
    /* the model it was trained on: quiet */
    r = cli_runf("-t 1 ppl %s --text %s --ctx 32 --chunks 2 --prompt %s", test_src(TINY), calib, P("p"));
    CHECK_MSG(r.code == 0 && !has(r.err, "warning") && !has(r.err, "note: prompt"), "ppl, same model: %d %s", r.code,
              r.err);
    cli_free(&r);
    /* another model: a warning naming both fingerprints and the retraining command, and the run goes on */
    char want[256];
    snprintf(want, sizeof want, "warning: prompt %s was trained on model fingerprint %s, this model is %s: retrain it "
             "with `mend tune %s", P("p"), ft, fo, P("other.gguf"));
    r = cli_runf("-t 1 ppl %s --text %s --ctx 32 --chunks 2 --prompt %s", P("other.gguf"), calib, P("p"));
    CHECK_MSG(r.code == 0 && has(r.err, want), "ppl, other model: %d %s", r.code, r.err);
    cli_free(&r);
    r = cli_runf("-t 1 eval %s --task %s --limit 2 --out %s --prompt %s", P("other.gguf"), task, P("e.jsonl"), P("p"));
    CHECK_MSG(r.code == 0 && has(r.err, want), "eval, other model: %d %s", r.code, r.err);
    cli_free(&r);
    r = cli_runf("-t 1 generate %s -p hello -n 2 --soft-prompt %s", P("other.gguf"), P("p"));
    CHECK_MSG(r.code == 0 && has(r.err, want), "generate, other model: %d %s", r.code, r.err);
    cli_free(&r);

    /* a prompt that records no model: a note */
    float emb[4 * 64];
    for (int i = 0; i < 4 * 64; i++) emb[i] = 0.01f * (float)(i % 13);
    CHECK_OK(mend_adapter_write(P("old"), emb, 4, 64, NULL));
    r = cli_runf("-t 1 ppl %s --text %s --ctx 32 --chunks 2 --prompt %s", test_src(TINY), calib, P("old"));
    CHECK_MSG(r.code == 0 && has(r.err, "note: prompt") && has(r.err, "records no model fingerprint") &&
              !has(r.err, "warning"), "ppl, unrecorded prompt: %d %s", r.code, r.err);
    cli_free(&r);

    /* a NaN in the prompt: refused by mend eval, naming the file, nothing scored */
    emb[70] = NAN;
    char *st = mend_path_join(P("old"), "adapter_model.safetensors");
    mend_st_out t = {.name = "prompt_embeddings", .type = MEND_TYPE_F32, .n_dims = 2, .shape = {4, 64}, .data = emb};
    CHECK_OK(mend_safetensors_write(st, &t, 1, NULL));
    unlink(P("nan.jsonl"));
    r = cli_runf("-t 1 eval %s --task %s --limit 2 --out %s --prompt %s", test_src(TINY), task, P("nan.jsonl"), P("old"));
    CHECK_MSG(r.code == 1 && has(r.err, st) && has(r.err, "not finite"), "eval, NaN prompt: %d %s", r.code, r.err);
    struct stat sb;
    CHECK_MSG(stat(P("nan.jsonl"), &sb) != 0 || sb.st_size == 0, "eval scored a NaN prompt into %s", P("nan.jsonl"));
    cli_free(&r);
    free(st);

    /* a bank: bank.json records the model; another model is warned about */
    r = cli_runf("-t 1 bank build %s -o %s --domain a=%s --steps 2 --seqlen 32 --n-virtual 4 --router-windows 2 "
            "--router-window 32", test_src(TINY), P("b"), calib);
    CHECK_MSG(r.code == 0, "bank build: %s", r.err);
    cli_free(&r);
    r = cli_runf("bank info %s", P("b"));
    CHECK_MSG(r.code == 0 && has(r.out, "trained on: ") && has(r.out, ft), "bank info: %s%s", r.out, r.err);
    cli_free(&r);
    snprintf(want, sizeof want, "warning: bank %s was trained on model fingerprint %s, this model is %s: retrain it "
             "with `mend bank build %s", P("b"), ft, fo, P("other.gguf"));
    r = cli_runf("-t 1 eval %s --task %s --limit 2 --out %s --bank %s --select attention", P("other.gguf"), task,
            P("eb.jsonl"), P("b"));
    CHECK_MSG(r.code == 0 && has(r.err, want), "eval --bank, other model: %d %s", r.code, r.err);
    cli_free(&r);
    r = cli_runf("-t 1 eval %s --task %s --limit 2 --out %s --bank %s --select attention", test_src(TINY), task,
            P("ec.jsonl"), P("b"));
    CHECK_MSG(r.code == 0 && !has(r.err, "warning") && !has(r.err, "note: bank"), "eval --bank, same model: %s", r.err);
    cli_free(&r);
}

static const char *repair_args(const char *out, const char *bank, const char *calib, const char *task) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "repair %s --compress gptq:int4g32 -o %s --budget quick --bank-dir %s --tasks %s "
             "--calib %s --ppl-text %s --steps 2 --nsamples 8 --seqlen 32 --train-seqlen 32 --ppl-ctx 32 "
             "--ppl-windows 2 --limit 4 -t 1", test_src(TINY), out, bank, task, calib, calib);
    return buf;
}

static void set_key(const char *bank, const char *key, const char *value) {
    char cmd[1024];
    if (value)
        snprintf(cmd, sizeof cmd, "sed -i 's/\"%s\": \"[0-9a-f]*\"/\"%s\": \"%s\"/' %s/bank.json", key, key, value, bank);
    else
        snprintf(cmd, sizeof cmd, "sed -i '/\"%s\"/d' %s/bank.json", key, bank);
    CHECK(system(cmd) == 0);
}

static void test_repair(const char *calib, const char *task) {
    char ft[17], fc[17], cmd[1024];
    fp_hex_of(test_src(TINY), ft);
    /* a bank trained on the uncompressed model: refused after the compress
     * stage (its single prompt too, so that repair needs no corpora of the
     * data directory to train one) */
    cli_out r = cli_runf("-t 1 tune %s --corpus %s -o %s/single --tokens 4 --steps 2 --seqlen 32", test_src(TINY),
                         calib, P("b"));
    CHECK_MSG(r.code == 0, "tune: %s", r.err);
    cli_free(&r);
    r = cli_runf("%s", repair_args(P("r1"), P("b"), calib, task));
    CHECK_MSG(r.code == 1, "repair with a bank for another model exited %d: %s", r.code, r.err);
    const char *cm = P("r1/model.gguf");
    CHECK(mend_file_exists(cm));
    fp_hex_of(cm, fc);
    char want[512];
    snprintf(want, sizeof want, "the prompt bank %s was trained on model fingerprint %s, but this run compressed %s to "
             "model fingerprint %s", P("b"), ft, cm, fc);
    CHECK_MSG(has(r.err, want), "repair refusal: %s", r.err);
    CHECK_MSG(has(r.err, "mend bank build ") && has(r.err, "scripts/train_bank.sh"), "repair refusal: %s", r.err);
    CHECK(!mend_file_exists(P("r1/bank/bank.json")));
    cli_free(&r);

    /* a bank (and single prompt) trained on the model repair writes */
    r = cli_runf("-t 1 bank build %s -o %s --domain a=%s --steps 2 --seqlen 32 --n-virtual 4 --router-windows 2 "
            "--router-window 32", cm, P("bc"), calib);
    CHECK_MSG(r.code == 0, "bank build: %s", r.err);
    cli_free(&r);
    r = cli_runf("-t 1 tune %s --corpus %s -o %s/single --tokens 4 --steps 2 --seqlen 32", cm, calib, P("bc"));
    CHECK_MSG(r.code == 0, "tune: %s", r.err);
    cli_free(&r);
    snprintf(cmd, sizeof cmd, "cp -r %s %s && cp -r %s %s", P("bc"), P("bsame"), P("bc"), P("bnone"));
    CHECK(system(cmd) == 0);
    set_key(P("bsame"), "model_fingerprint", "0123456789abcdef");   /* another file, same recipe */
    set_key(P("bnone"), "model_fingerprint", NULL);                 /* an older bank */
    set_key(P("bnone"), "model_recipe", NULL);

    r = cli_runf("%s", repair_args(P("r2"), P("bnone"), calib, task));
    CHECK_MSG(r.code == 1 && has(r.err, "records no model fingerprint") && has(r.err, fc), "repair, unrecorded bank: %d %s",
              r.code, r.err);
    cli_free(&r);
    r = cli_runf("%s", repair_args(P("r3"), P("bsame"), calib, task));
    CHECK_MSG(r.code == 0 && has(r.err, "warning: the prompt bank") && has(r.err, "the same recipe"),
              "repair, same recipe: %d %s", r.code, r.err);
    cli_free(&r);
    r = cli_runf("%s", repair_args(P("r4"), P("bc"), calib, task));
    CHECK_MSG(r.code == 0 && !has(r.err, "warning") && mend_file_exists(P("r4/report.md")), "repair, same model: %d %s",
              r.code, r.err);
    cli_free(&r);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/mend_cli_fp_%d", (int)getpid());
    mkdir(dir, 0755);
    static char calib[128];   /* not in P's ring of buffers */
    snprintf(calib, sizeof calib, "%s/calib.txt", dir);
    cli_make_text(calib, test_data("corpus/wiki.txt"), 20000, 10000);
    static char task[1024];
    snprintf(task, sizeof task, "%s", test_src("tests/fixtures/eval/toy_mc.jsonl"));
    test_prompts(calib, task);
    test_repair(calib, task);
    if (t_fail == 0) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    }
    return test_finish();
}
