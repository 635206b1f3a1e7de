/* Progress reporting on stderr for long runs (see cli.h for the format). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mend.h"

#define DRAW_INTERVAL_TTY 0.25
#define DRAW_INTERVAL_LOG 10.0

void cli_progress_start(cli_progress *p, const char *label, const char *unit, int64_t total, int row_items) {
    memset(p, 0, sizeof *p);
    p->label = label ? label : "";
    p->unit = unit ? unit : "it";
    p->total = total;
    p->t0 = mend_now();
    p->last_draw = p->t0;
    p->tty = isatty(STDERR_FILENO);
    p->row_items = row_items > 0 ? row_items : 8;
}

static void status(const cli_progress *p, char *buf, size_t cap) {
    double el = mend_now() - p->t0;
    char eta[32] = "--:--", rate[48] = "";
    if (p->done > 0 && el > 0) {
        double r = p->done / el;
        if (r >= 1.0) snprintf(rate, sizeof rate, "%.2f %s/s", r, p->unit);
        else snprintf(rate, sizeof rate, "%.2f s/%s", 1.0 / r, p->unit);
        if (p->total > 0) mend_fmt_duration((double)(p->total - p->done) / r, eta, sizeof eta);
    }
    if (p->total > 0)
        snprintf(buf, cap, "%s %lld/%lld (%d%%)  %s  ETA %s", p->label, (long long)p->done,
                 (long long)p->total, (int)(100.0 * p->done / p->total), rate, eta);
    else
        snprintf(buf, cap, "%s %lld  %s", p->label, (long long)p->done, rate);
}

static void draw_tty(cli_progress *p, int newline) {
    char st[256];
    status(p, st, sizeof st);
    fprintf(stderr, "\r\033[K%s%s%s%s", p->row, p->row_len ? "  " : "", st, newline ? "\n" : "");
    fflush(stderr);
    p->last_draw = mend_now();
}

static void end_row(cli_progress *p) {
    if (p->tty) draw_tty(p, 1);
    else {
        char st[256];
        status(p, st, sizeof st);
        fprintf(stderr, "  (%s)\n", st);
        fflush(stderr);
        p->last_draw = mend_now();
    }
    p->row[0] = 0;
    p->row_len = 0;
    p->in_row = 0;
}

void cli_progress_update(cli_progress *p, int64_t done, const char *item) {
    p->done = done;
    if (item) {
        size_t n = strlen(item);
        if (p->row_len + n < sizeof p->row) {
            memcpy(p->row + p->row_len, item, n + 1);
            p->row_len += n;
        }
        if (!p->tty) {
            fputs(item, stderr);
            fflush(stderr);
        }
        /* the first item closes its own row so an ETA shows up at once */
        if (++p->in_row >= p->row_items || (done == 1 && p->total > 1)) {
            end_row(p);
            return;
        }
    }
    double now = mend_now();
    if (p->tty) {
        if (now - p->last_draw >= DRAW_INTERVAL_TTY || item) draw_tty(p, 0);
    } else if (!item && now - p->last_draw >= DRAW_INTERVAL_LOG) {
        char st[256];
        status(p, st, sizeof st);
        fprintf(stderr, "%s\n", st);
        fflush(stderr);
        p->last_draw = now;
    }
}

void cli_progress_end(cli_progress *p) {
    if (p->in_row > 0) {
        end_row(p);
        return;
    }
    if (p->tty) draw_tty(p, 1);
    else {
        char st[256];
        status(p, st, sizeof st);
        fprintf(stderr, "%s\n", st);
        fflush(stderr);
    }
}
