/* Is a prompt or a bank used with the model it was trained on? Compares the
 * fingerprint an adapter or bank.json records with the model's (mend.h,
 * fingerprints) and says so on stderr; the caller goes on either way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mend.h"

const char *cli_fp_desc(const mend_fp *fp, char *buf, size_t cap) {
    char m[17], r[17];
    if (!fp->has_model) {
        snprintf(buf, cap, "(none recorded)");
        return buf;
    }
    mend_fp_hex(fp->model, m);
    mend_fp_hex(fp->recipe, r);
    snprintf(buf, cap, "%s%s%s%s", m, fp->has_recipe ? " (recipe " : "", fp->has_recipe ? r : "",
             fp->has_recipe ? ")" : "");
    return buf;
}

const char *cli_retrain_dir(const char *dir, const mend_fp *model, char *buf, size_t cap) {
    char hx[17];
    mend_fp_hex(model->model, hx);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    snprintf(buf, cap, "%.*s-%.8s", (int)n, dir, hx);
    return buf;
}

const char *cli_retrain_cmd(int bank, const char *model_path, const char *dir, const mend_fp *model, char *buf,
                            size_t cap) {
    char out[4096];
    cli_retrain_dir(dir, model, out, sizeof out);
    if (bank) snprintf(buf, cap, "mend bank build %s -o %s --domain NAME=FILE ...", model_path, out);
    else snprintf(buf, cap, "mend tune %s --corpus FILE -o %s", model_path, out);
    return buf;
}

int cli_check_trained_on(const char *cmd, const mend_model *m, const char *model_path, int bank, const char *dir,
                         const mend_fp *rec) {
    const char *kind = bank ? "bank" : "prompt";
    mend_fp fp;
    if (mend_model_fingerprint(m, &fp)) {
        fprintf(stderr, "mend %s: note: cannot check %s %s against the model: %s\n", cmd, kind, dir,
                mend_last_error());
        return MEND_FP_UNKNOWN;
    }
    char a[64], b[64], c[8192];
    const int match = mend_fp_compare(&fp, rec);
    switch (match) {
    case MEND_FP_SAME: break;
    case MEND_FP_SAME_RECIPE:
        fprintf(stderr, "mend %s: note: %s %s was trained on model fingerprint %s, this model is %s: another file "
                "made by the same recipe (same source and compression settings)\n", cmd, kind, dir,
                cli_fp_desc(rec, a, sizeof a), cli_fp_desc(&fp, b, sizeof b));
        break;
    case MEND_FP_OTHER:
        fprintf(stderr, "mend %s: warning: %s %s was trained on model fingerprint %s, this model is %s: retrain it "
                "with `%s`%s\n", cmd, kind, dir, cli_fp_desc(rec, a, sizeof a), cli_fp_desc(&fp, b, sizeof b),
                cli_retrain_cmd(bank, model_path, dir, &fp, c, sizeof c),
                bank ? " (scripts/train_bank.sh makes the shipped bank)" : "");
        break;
    default:
        fprintf(stderr, "mend %s: note: %s %s records no model fingerprint (made before mend recorded them), so "
                "it cannot be checked against this model (%s)\n", cmd, kind, dir, cli_fp_desc(&fp, b, sizeof b));
    }
    return match;
}

int cli_read_prompt(const char *cmd, const mend_model *m, const char *model_path, const char *dir, float **emb,
                    int *n_virtual) {
    mend_model_info info;
    mend_model_get_info(m, &info);
    mend_fp rec;
    if (mend_adapter_read_fp(dir, info.dim, emb, n_virtual, &rec)) return cli_fail(cmd, dir);
    cli_check_trained_on(cmd, m, model_path, 0, dir, &rec);
    return 0;
}

/* Is path a model whose fingerprint is fp? (loaded packed, without the
 * interleaved copy: only its tensors are hashed) */
static int is_model(const char *path, uint64_t fp) {
    if (!mend_file_exists(path) && !mend_is_dir(path)) return 0;
    mend_load_opts lo = {.keep_packed = 1, .no_repack = 1};
    mend_model *t = NULL;
    mend_fp f;
    const int ok = !mend_model_load(&t, path, &lo) && !mend_model_fingerprint(t, &f) && f.has_model && f.model == fp;
    if (t) mend_model_free(t);
    return ok;
}

int cli_default_teacher(const char *cmd, const mend_model *m, const char *model_path, char *out, size_t cap) {
    const char *name = mend_model_meta_str(m, "mend.compress.source");
    mend_fp fp;
    if (!name || !*name || strchr(name, '/') || mend_model_fingerprint(m, &fp) || !fp.has_source) {
        fprintf(stderr, "mend %s: note: %s records no source model (it was not written by mend compress): training "
                        "on next-token cross-entropy; --distill ORIGINAL trains on KL to the original instead\n",
                cmd, model_path);
        return 0;
    }
    const char *slash = strrchr(model_path, '/'), *home = getenv("MEND_HOME"), *user = getenv("HOME");
    char cand[2][4096];
    snprintf(cand[0], sizeof cand[0], "%.*s%s", slash ? (int)(slash - model_path + 1) : 0, model_path, name);
    if (home && *home) snprintf(cand[1], sizeof cand[1], "%s/models/%s", home, name);
    else snprintf(cand[1], sizeof cand[1], "%s/.cache/mend/models/%s", user ? user : ".", name);
    for (int i = 0; i < 2; i++)
        if (is_model(cand[i], fp.source)) {
            snprintf(out, cap, "%s", cand[i]);
            return 1;
        }
    char hx[17];
    mend_fp_hex(fp.source, hx);
    fprintf(stderr, "mend %s: note: the source of %s (%s, fingerprint %s) is neither beside it nor in %s: training "
                    "on next-token cross-entropy; --distill ORIGINAL trains on KL to the original instead\n",
            cmd, model_path, name, hx, cand[1]);
    return 0;
}
