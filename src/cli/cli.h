/* The mend command line: one file per subcommand, shared helpers here.
 * Exit codes: 0 success, 1 runtime error (mend_last_error() printed),
 * 2 usage error (bad flag or value; a hint to --help printed). */
#ifndef MEND_CLI_H
#define MEND_CLI_H

#include <stdint.h>
#include <stdio.h>

#define CLI_EXIT_ERROR 1
#define CLI_EXIT_USAGE 2

/* subcommands: argv[0] is the subcommand name */
int cmd_info(int argc, char **argv);
int cmd_bank_experts(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* Run the subcommand argv[0] (e.g. "eval") with its arguments, as `mend
 * argv...` would after the global options: its exit code. */
int cli_command(int argc, char **argv);

/* Print "mend <cmd>: <message>\nRun 'mend <cmd> --help' for usage.\n" and
 * return CLI_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Print "mend <cmd>: <what>: <mend_last_error()>" and return CLI_EXIT_ERROR. */
int cli_fail(const char *cmd, const char *what);

/* Strict number parsing: the whole string must be a number in [lo, hi].
 * Return 0 on success, -1 otherwise. */
int cli_parse_int(const char *s, long lo, long hi, long *out);
int cli_parse_u64(const char *s, uint64_t *out);
int cli_parse_double(const char *s, double lo, double hi, double *out);
/* An integer option's value in [lo, hi] (lo, hi within int) into *out: 0,
 * or CLI_EXIT_USAGE after a usage error naming the option and the range. */
int cli_int_option(const char *cmd, const char *name, const char *arg, long lo, long hi, int *out);

/* -t/--threads N handling shared by every subcommand: 0 < N <= 1024. */
int cli_set_threads(const char *cmd, const char *value);
/* Report the option getopt_long rejected ('?' or ':' return) as a usage
 * error naming it; returns CLI_EXIT_USAGE. */
int cli_getopt_error(const char *cmd, char **argv, int ret);


#define cli_file_title mend_file_title

/* The data directory's subdirectory sub (corpus, tasks, ppl): under
 * $MEND_DATA when set, else ../shared/data from the working directory, else
 * ../shared/data beside the source tree holding the executable's build
 * directory. 0 when found (out holds it), -1 otherwise. */
int cli_find_data(const char *sub, char *out, size_t cap);

/* ---- progress on stderr (progress.c) ----
 * TTY: one status line redrawn at most 4 times a second:
 *   "<label> 12/560 (2%)  3.10 chunk/s  ETA 03:00  <items of the current row>"
 * not a TTY: items are appended as they come and the status is printed when
 * a row of items is complete (or every 10 s without items), so logs stay
 * readable. Items (e.g. "[12]17.2345,") are grouped row_items to a row. */
typedef struct cli_progress {
    const char *label;
    const char *unit;
    int64_t total, done;
    double t0, last_draw;
    int tty;
    int row_items, in_row;
    char row[1024];
    size_t row_len;
} cli_progress;

void cli_progress_start(cli_progress *p, const char *label, const char *unit, int64_t total, int row_items);
/* Advance to done; item may be NULL. */
void cli_progress_update(cli_progress *p, int64_t done, const char *item);
/* Finish the current row and print a final status line. */
void cli_progress_end(cli_progress *p);

/* ---- events of library jobs (events.c) ---- */
#define cli_fmt_duration mend_fmt_duration
#include "mend.h"
/* The handler for mend_event_fn: TEXT to standard output as is; NOTE and
 * WARNING to standard error as "mend CMD: note: ..." / "mend CMD:
 * warning: ..."; progress as a cli_progress bar on standard error; STAGE as
 * "[repair N/M] ..." on standard error. user: a cli_events. */
typedef struct cli_events {
    const char *cmd;
    cli_progress *bar;      /* the running counter, or NULL */
    cli_progress bar_store;
} cli_events;
int cli_event(void *user, const mend_event *ev);

/* The exit code of a job's status rc: 0 on success; a usage error when the
 * job refused a selector named by --select (it is checked only once the
 * bank is open); else "mend CMD: <mend_last_error()>" and CLI_EXIT_ERROR. */
int cli_job_status(const char *cmd, int rc);

/* Where models are kept: $MEND_HOME/models, else ~/.cache/mend/models. */
const char *cli_models_dir(char *buf, size_t cap);

/* Read the soft prompt in dir for m and check the model it records
 * (mend_prompt_read_checked); 0, or CLI_EXIT_ERROR after printing the error. */
int cli_read_prompt(const char *cmd, const mend_model *m, const char *model_path, const char *dir, float **emb,
                    int *n_virtual);
/* Open a bank for m with the selectors of --select (mend_idp_open_checked);
 * 0, or an exit code after printing the error. */
int cli_idp_open(mend_idp **out, const char *cmd, const mend_model *m, const char *model_path, const char *bank_dir,
                 const char *select, const char *layers, int max_tokens, int per_prompt);
/* The teacher of mend_default_teacher, searched in cli_models_dir too. */
int cli_default_teacher(const char *cmd, const mend_model *m, const char *model_path, char *out, size_t cap);

#endif
