/* The command line's side of library jobs: events printed, and the
 * prompt / bank / teacher helpers with their errors printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_event(void *user, const mend_event *ev) {
    cli_events *e = user;
    switch (ev->kind) {
    case MEND_EV_TEXT:
        fputs(ev->text, stdout);
        fflush(stdout);
        break;
    case MEND_EV_NOTE:
    case MEND_EV_WARNING:
        fprintf(stderr, "%smend %s: %s: %s\n", e->bar && e->bar->tty ? "\n" : "", e->cmd,
                ev->kind == MEND_EV_NOTE ? "note" : "warning", ev->text);
        break;
    case MEND_EV_PROGRESS_START:
        if (e->bar) cli_progress_end(e->bar);
        e->bar = &e->bar_store;
        cli_progress_start(e->bar, ev->label, ev->unit, ev->total, ev->row_items > 0 ? ev->row_items : 1000000);
        break;
    case MEND_EV_PROGRESS:
        if (e->bar) cli_progress_update(e->bar, ev->done, ev->item);
        break;
    case MEND_EV_PROGRESS_END:
        if (e->bar) cli_progress_end(e->bar);
        e->bar = NULL;
        break;
    case MEND_EV_STAGE:
        if (e->bar) cli_progress_end(e->bar);
        e->bar = NULL;
        fprintf(stderr, "[%s %d/%d] %s\n", e->cmd, ev->stage, ev->n_stages, ev->text);
        break;
    default: break;
    }
    return 0;
}

const char *cli_models_dir(char *buf, size_t cap) {
    const char *home = getenv("MEND_HOME"), *user = getenv("HOME");
    if (home && *home) snprintf(buf, cap, "%s/models", home);
    else snprintf(buf, cap, "%s/.cache/mend/models", user ? user : ".");
    return buf;
}

/* A selector the library found wrong once the bank was open (its sentence
 * starts with the option, "--select: ..."): a usage error like the checks
 * made before a job starts. */
static int select_error(int rc) { return rc == MEND_EINVAL && !strncmp(mend_last_error(), "--select", 8); }

int cli_read_prompt(const char *cmd, const mend_model *m, const char *model_path, const char *dir, float **emb,
                    int *n_virtual) {
    cli_events ev = {.cmd = cmd};
    if (mend_prompt_read_checked(m, model_path, dir, emb, n_virtual, cli_event, &ev)) return cli_fail(cmd, dir);
    return 0;
}

int cli_idp_open(mend_idp **out, const char *cmd, const mend_model *m, const char *model_path, const char *bank_dir,
                 const char *select, const char *layers, int max_tokens, int per_prompt) {
    cli_events ev = {.cmd = cmd};
    int rc = mend_idp_open_checked(out, m, model_path, bank_dir, select, layers, max_tokens, per_prompt, cli_event,
                                   &ev);
    if (!rc) return 0;
    if (select_error(rc)) return cli_usage_error(cmd, "%s", mend_last_error());
    return cli_fail(cmd, bank_dir);
}

int cli_job_status(const char *cmd, int rc) {
    if (!rc) return 0;
    if (select_error(rc)) return cli_usage_error(cmd, "%s", mend_last_error());
    fflush(stdout);
    fprintf(stderr, "mend %s: %s\n", cmd, mend_last_error());
    return CLI_EXIT_ERROR;
}

int cli_default_teacher(const char *cmd, const mend_model *m, const char *model_path, char *out, size_t cap) {
    cli_events ev = {.cmd = cmd};
    char dir[4096];
    return mend_default_teacher(m, model_path, cli_models_dir(dir, sizeof dir), out, cap, cli_event, &ev);
}
