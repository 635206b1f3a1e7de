/* mend_repair_run (mend/jobs.h) as a client calls it: compiled with include/
 * only. On the tiny llama fixture:
 *   - a job with a missing or bad field is refused with a sentence naming it;
 *   - a run whose handler cancels at the third stage stops with "stopped",
 *     and the same job run again resumes (finished stages are "done earlier")
 *     and ends with the report as its last TEXT event, equal to report.md;
 *   - every stage left its report text in logs/STAGE.txt;
 *   - the library printed nothing on standard output or standard error;
 *   - mend_repair_report rebuilds the same report from the directory. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mend.h"
#include "test.h"

#define TINY "tests/fixtures/hf/llama.gguf"

typedef struct seen {
    int stages, cancel_at, done_earlier, progress, text_events;
    char *last_text;
    char names[64][96];
} seen;

static int handler(void *user, const mend_event *ev) {
    seen *s = user;
    switch (ev->kind) {
    case MEND_EV_STAGE:
        if (s->stages < 64) snprintf(s->names[s->stages], sizeof s->names[0], "%s", ev->stage_name);
        s->stages++;
        CHECK_MSG(ev->stage >= 1 && ev->stage <= ev->n_stages, "stage %d of %d", ev->stage, ev->n_stages);
        if (strstr(ev->text, "done earlier")) s->done_earlier++;
        return s->cancel_at > 0 && s->stages >= s->cancel_at;
    case MEND_EV_PROGRESS:
        s->progress++;
        CHECK_MSG(ev->stage_name != NULL, "a progress event outside a stage");
        break;
    case MEND_EV_TEXT:
        s->text_events++;
        free(s->last_text);
        s->last_text = strdup(ev->text);
        break;
    default: break;
    }
    return 0;
}

static char *slurp(const char *path) {
    char *buf = NULL;
    size_t n = 0;
    if (mend_read_file(path, (size_t)1 << 26, &buf, &n)) return NULL;
    return buf;
}

/* everything the library writes to fds 1 and 2 goes to a file while f runs */
typedef struct quiet {
    int saved1, saved2;
    char path[128];
} quiet;

static void quiet_begin(quiet *q) {
    snprintf(q->path, sizeof q->path, "/tmp/mend_jobs_out_%d.txt", (int)getpid());
    fflush(stdout);
    fflush(stderr);
    int fd = open(q->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    q->saved1 = dup(1);
    q->saved2 = dup(2);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
}

static long quiet_end(quiet *q) {
    fflush(stdout);
    fflush(stderr);
    dup2(q->saved1, 1);
    dup2(q->saved2, 2);
    close(q->saved1);
    close(q->saved2);
    struct stat st;
    long n = stat(q->path, &st) == 0 ? (long)st.st_size : -1;
    unlink(q->path);
    return n;
}

int main(void) {
    mend_set_threads(1);
    char dir[128], out[192], corpus[192], ppl[192];
    snprintf(dir, sizeof dir, "/tmp/mend_jobs_repair_%d", (int)getpid());
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(corpus, sizeof corpus, "%s/corpus.txt", dir);
    snprintf(ppl, sizeof ppl, "%s/ppl.txt", dir);
    CHECK(mend_mkdir_p(dir) == 0);
    {   /* a corpus of paragraphs, and the perplexity text */
        FILE *f = fopen(corpus, "w"), *g = fopen(ppl, "w");
        for (int i = 0; i < 200 && f && g; i++) {
            fprintf(f, "Paragraph %d: the river runs past the mill and the miller grinds the wheat.\n\n", i);
            fprintf(g, "Line %d of the text the model is measured on, about rivers and mills.\n", i);
        }
        if (f) fclose(f);
        if (g) fclose(g);
    }
    const char *tasks[] = {test_src("tests/fixtures/eval/toy_mc.jsonl"), test_src("tests/fixtures/eval/toy_gen.jsonl")};
    char da[256], db[256];
    snprintf(da, sizeof da, "a=%s", corpus);
    snprintf(db, sizeof db, "b=%s", corpus);
    const char *domains[] = {da, db};
    const char *calib[] = {corpus};

    mend_repair_job j;
    mend_repair_job_init(&j);
    j.model = test_src(TINY);
    j.compress = "gptq:int4g32";
    j.out = out;
    j.budget = "quick";
    j.tasks = tasks;
    j.n_tasks = 2;
    j.ppl_text = ppl;
    j.domains = domains;
    j.n_domains = 2;
    j.calib = calib;
    j.n_calib = 1;
    j.steps = 4;
    j.spec_steps = 2;
    j.nsamples = 8;
    j.seqlen = 64;
    j.train_seqlen = 64;
    j.ppl_ctx = 64;
    j.ppl_windows = 4;

    /* refused fields, each named */
    {
        mend_repair_job b = j;
        b.model = NULL;
        CHECK(mend_repair_run(&b, NULL, NULL) == MEND_EINVAL && strstr(mend_last_error(), "'model'"));
        b = j;
        b.budget = "huge";
        CHECK(mend_repair_run(&b, NULL, NULL) == MEND_EINVAL && strstr(mend_last_error(), "'budget'"));
        b = j;
        b.compress = "gptq:q9_0";
        CHECK(mend_repair_run(&b, NULL, NULL) == MEND_EINVAL && strstr(mend_last_error(), "q9_0"));
        b = j;
        b.ppl_ctx = 3;
        CHECK(mend_repair_run(&b, NULL, NULL) == MEND_EINVAL && strstr(mend_last_error(), "'ppl_ctx'"));
        b = j;
        b.n_tasks = 0;
        CHECK(mend_repair_run(&b, NULL, NULL) == MEND_EINVAL && strstr(mend_last_error(), "'n_tasks'"));
        b = j;
        b.bank_dir = dir;
        CHECK(mend_repair_run(&b, NULL, NULL) == MEND_EINVAL && strstr(mend_last_error(), "not both"));
        struct stat st;
        CHECK_MSG(stat(out, &st) != 0, "a refused job created %s", out);
    }

    /* cancelled at the third stage, then resumed to the end */
    seen s1 = {.cancel_at = 3};
    quiet q;
    quiet_begin(&q);
    int rc = mend_repair_run(&j, handler, &s1);
    long printed = quiet_end(&q);
    CHECK_MSG(rc == MEND_EINVAL && strstr(mend_last_error(), "stopped"), "cancelled run: %d %s", rc,
              mend_last_error());
    CHECK_MSG(printed == 0, "the library printed %ld bytes", printed);
    CHECK_MSG(s1.stages == 3, "cancelled after %d stages", s1.stages);

    seen s2 = {0};
    quiet_begin(&q);
    rc = mend_repair_run(&j, handler, &s2);
    printed = quiet_end(&q);
    CHECK_MSG(rc == 0, "resumed run: %s", mend_last_error());
    CHECK_MSG(printed == 0, "the library printed %ld bytes", printed);
    /* compress + shared + bank + single + 4 runs x 2 tasks + 4 perplexities */
    CHECK_MSG(s2.stages == 16, "%d stages", s2.stages);
    CHECK_MSG(s2.done_earlier == 2, "%d stages done earlier (the two finished before the cancel)", s2.done_earlier);
    CHECK(s2.progress > 0);
    char path[300];
    snprintf(path, sizeof path, "%s/report.md", out);
    char *md = slurp(path);
    CHECK_MSG(md && s2.last_text && !strcmp(md, s2.last_text), "the last TEXT event is report.md");
    for (int i = 0; i < s2.stages && i < 64; i++) {
        if (!strcmp(s2.names[i], "compress") || !strcmp(s2.names[i], "shared")) continue;   /* done earlier */
        snprintf(path, sizeof path, "%s/logs/%s.txt", out, s2.names[i]);
        struct stat st;
        CHECK_MSG(stat(path, &st) == 0 && st.st_size > 0, "%s is missing or empty", path);
        snprintf(path, sizeof path, "%s/stages/%s.json", out, s2.names[i]);
        CHECK_MSG(mend_file_exists(path), "%s is missing", path);
    }
    /* the report rebuilt from the directory */
    char *md2 = NULL;
    CHECK(mend_repair_report(out, &md2, NULL, NULL) == 0);
    const char *cut = md ? strstr(md, "## Cost") : NULL, *cut2 = md2 ? strstr(md2, "## Cost") : NULL;
    CHECK_MSG(cut && cut2 && cut - md == cut2 - md2 && !strncmp(md, md2, (size_t)(cut - md)),
              "mend_repair_report gives the run's report above its timing section");
    /* a third run does nothing but the report */
    seen s3 = {0};
    CHECK(mend_repair_run(&j, handler, &s3) == 0);
    CHECK_MSG(s3.done_earlier == s3.stages, "%d of %d stages done earlier", s3.done_earlier, s3.stages);
    /* the tasks may change between reruns: the training stages are reused, a
     * dropped task leaves the report, an added one is evaluated; the plan
     * records the newest list */
    {
        j.n_tasks = 1;
        j.tasks = &tasks[1];
        seen s4 = {0};
        CHECK_MSG(mend_repair_run(&j, handler, &s4) == 0, "rerun with one task: %s", mend_last_error());
        CHECK_MSG(s4.done_earlier == s4.stages, "%d of %d stages done earlier", s4.done_earlier, s4.stages);
        CHECK_MSG(s4.last_text && !strstr(s4.last_text, "| toy_mc |") && strstr(s4.last_text, "| toy_gen |"),
                  "the report of the one-task rerun lists toy_gen only");
        char path[256];
        snprintf(path, sizeof path, "%s/repair.json", out);
        char *plan = slurp(path);
        CHECK_MSG(plan && !strstr(plan, "toy_mc.jsonl") && strstr(plan, "toy_gen.jsonl"), "repair.json lists "
                  "the newest tasks");
        free(plan);
        /* a task of the run's name from another file is refused, naming both */
        char other[256];
        snprintf(other, sizeof other, "%s/toy_gen.jsonl", dir);
        FILE *f = fopen(other, "w");
        if (f) fputs("{}\n", f), fclose(f);
        const char *moved[] = {other};
        j.tasks = moved;
        CHECK(mend_repair_run(&j, NULL, NULL) == MEND_EINVAL && strstr(mend_last_error(), "task toy_gen from") &&
              strstr(mend_last_error(), other));
        j.n_tasks = 2;
        j.tasks = tasks;
        seen s5 = {0};
        CHECK_MSG(mend_repair_run(&j, handler, &s5) == 0, "rerun with both tasks: %s", mend_last_error());
        CHECK_MSG(s5.done_earlier == s5.stages, "%d of %d stages done earlier", s5.done_earlier, s5.stages);
        CHECK_MSG(s5.last_text && strstr(s5.last_text, "| toy_mc |") && strstr(s5.last_text, "| toy_gen |"),
                  "the report of the two-task rerun lists both");
        free(s4.last_text);
        free(s5.last_text);
    }
    free(md);
    free(md2);
    free(s1.last_text);
    free(s2.last_text);
    free(s3.last_text);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish();
}
