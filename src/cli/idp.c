/* --bank / --select for the CLI (see idp.h). */
#include "idp.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Add the selector called name (its layers and token budget overridden when
 * l0 >= 0 / max_tokens > 0); an exit code. */
static int add_one(const char *cmd, mend_idp *x, const char *name, int l0, int l1, int max_tokens) {
    mend_select_spec sp;
    if (mend_select_parse(name, mend_idp_bank(x), &sp)) return cli_usage_error(cmd, "--select: %s", mend_last_error());
    if (l0 >= 0) {
        sp.layer0 = l0;
        sp.layer1 = l1;
    }
    if (max_tokens > 0) sp.max_tokens = max_tokens;
    if (mend_idp_n_sel(x) >= MEND_IDP_MAX_SEL)
        return cli_usage_error(cmd, "--select: at most %d selectors", MEND_IDP_MAX_SEL);
    return mend_idp_add_selector(x, name, &sp) ? cli_fail(cmd, name) : 0;
}

/* The comma-separated list s; an exit code. */
static int add_list(const char *cmd, mend_idp *x, const char *s, int l0, int l1, int max_tokens) {
    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        char name[128];
        if (len >= sizeof name) return cli_usage_error(cmd, "--select: '%.*s' is too long", (int)len, s);
        memcpy(name, s, len);
        name[len] = 0;
        int rc = add_one(cmd, x, name, l0, l1, max_tokens);
        if (rc || !e) return rc;
        s = e + 1;
    }
    return 0;
}

int cli_idp_open(mend_idp **out, const char *cmd, const mend_model *m, const char *model_path, const char *bank_dir,
                 const char *select, const char *layers, int max_tokens, int per_prompt) {
    *out = NULL;
    mend_idp *x = NULL;
    if (mend_idp_open(&x, m, bank_dir)) return cli_fail(cmd, bank_dir);
    mend_bank_info bi;
    mend_bank_get_info(mend_idp_bank(x), &bi);
    cli_check_trained_on(cmd, m, model_path, 1, bank_dir, &bi.trained_on);
    int l0 = -1, l1 = -1, rc = 0;
    if (layers && mend_select_parse_layers(layers, &l0, &l1))
        rc = cli_usage_error(cmd, "--select-layers: %s", mend_last_error());
    if (!rc) rc = add_list(cmd, x, select ? select : bi.default_selector, l0, l1, max_tokens);
    if (!rc && mend_idp_n_sel(x) == 0) rc = cli_usage_error(cmd, "--select: no selector given");
    if (!rc && mend_idp_start(x, per_prompt)) rc = cli_fail(cmd, "prompt bank");
    if (rc) {
        mend_idp_close(x);
        return rc;
    }
    *out = x;
    return 0;
}
