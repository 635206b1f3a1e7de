/* The evaluation jobs (include/mend/jobs.h) on the tiny llama fixture
 * (tests/fixtures/hf/llama.gguf) and a few examples of the shared tasks:
 *   - mend_eval_job_run writes the results file that mend_eval_run gives
 *     for the same examples, plain and behind a soft prompt, and reports
 *     its header, progress and summary as events;
 *   - a second run resumes: only the examples the file lacks are scored, a
 *     partial last line is dropped, a file without resume or scored with
 *     another model is refused;
 *   - mend_ppl_job_run gives mend_perplexity's numbers, a window item per
 *     window, and the JSON with window_nll;
 *   - bad fields fail with MEND_EINVAL naming the field;
 *   - a handler returning nonzero cancels, leaving what was written. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mend.h"
#include "test.h"

#define TINY "tests/fixtures/hf/llama.gguf"
#define ADAPTER "tests/fixtures/tune/mend_adapter"

/* What a handler saw; stop_kind/stop_at: return 1 at the stop_at-th event
 * of that kind. */
typedef struct seen {
    char text[8192];
    size_t text_len;
    int notes, warnings, starts, updates, ends;
    int64_t total, last_done;
    char first_item[64], note[1024];
    int stop_kind, stop_at, n_kind;
} seen;

static int on_event(void *user, const mend_event *ev) {
    seen *s = user;
    switch (ev->kind) {
    case MEND_EV_TEXT: {
        size_t n = strlen(ev->text);
        if (s->text_len + n < sizeof s->text) {
            memcpy(s->text + s->text_len, ev->text, n + 1);
            s->text_len += n;
        }
        break;
    }
    case MEND_EV_NOTE:
        s->notes++;
        snprintf(s->note, sizeof s->note, "%s", ev->text);
        CHECK(!strchr(ev->text, '\n'));
        break;
    case MEND_EV_WARNING: s->warnings++; break;
    case MEND_EV_PROGRESS_START:
        s->starts++;
        s->total = ev->total;
        break;
    case MEND_EV_PROGRESS:
        s->updates++;
        s->last_done = ev->done;
        if (ev->item && !s->first_item[0]) snprintf(s->first_item, sizeof s->first_item, "%s", ev->item);
        break;
    case MEND_EV_PROGRESS_END: s->ends++; break;
    default: break;
    }
    if (s->stop_at > 0 && ev->kind == s->stop_kind && ++s->n_kind >= s->stop_at) return 1;
    return 0;
}

static char *slurp(const char *path) {
    char *buf = NULL;
    size_t len = 0;
    if (mend_read_file(path, (size_t)1 << 26, &buf, &len)) return NULL;
    return buf;
}

static size_t count_lines(const char *s) {
    size_t n = 0;
    for (; s && *s; s++) n += *s == '\n';
    return n;
}

/* The results lines mend_eval_run gives, appended to a string. */
typedef struct buf {
    char *s;
    size_t n;
} buf;

static int append_line(void *user, const mend_eval_line *l) {
    buf *b = user;
    size_t k = strlen(l->line);
    char *s = realloc(b->s, b->n + k + 2);
    if (!s) return mend_set_error(MEND_ENOMEM, "out of memory");
    memcpy(s + b->n, l->line, k);
    s[b->n + k] = '\n';
    s[b->n + k + 1] = 0;
    b->s = s;
    b->n += k + 1;
    return 0;
}

/* The lines of the first `limit` examples of every task, as `mend eval`
 * scores them (prompt: an adapter directory or NULL). */
static char *expected_lines(const char *model, const char *const *tasks, int n_tasks, size_t limit,
                            const char *prompt) {
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 0};
    CHECK_OK(mend_model_load(&m, model, &lo));
    if (!m) return NULL;
    mend_model_info info;
    mend_model_get_info(m, &info);
    float *emb = NULL;
    int nv = 0;
    if (prompt) CHECK_OK(mend_adapter_read(prompt, info.dim, &emb, &nv));
    mend_eval_backend *be = NULL;
    CHECK_OK(mend_eval_backend_model(&be, m, emb, nv, 0, 0));
    if (prompt) CHECK_OK(mend_eval_backend_reserve(be, 1));
    buf b = {0};
    char label[256];
    for (int t = 0; be && t < n_tasks; t++) {
        mend_task *task = NULL;
        CHECK_OK(mend_task_load(&task, tasks[t], limit));
        if (!task) continue;
        mend_task_info ti;
        mend_task_get_info(task, &ti);
        size_t *idx = malloc(ti.n * sizeof *idx);
        for (size_t i = 0; i < ti.n; i++) idx[i] = i;
        CHECK_OK(mend_eval_run(be, NULL, task, idx, ti.n, "llama.gguf",
                               prompt ? mend_basename(prompt, label, sizeof label) : NULL, append_line, &b, NULL));
        free(idx);
        mend_task_free(task);
    }
    mend_eval_backend_free(be);
    free(emb);
    mend_model_free(m);
    return b.s;
}

static void test_eval_job(const char *root) {
    const char *model = test_src(TINY);
    const char *tasks[2];
    char arc[4096], copa[4096], out[4096], out2[4096], out3[4096];
    snprintf(arc, sizeof arc, "%s", test_data("tasks/arc_easy.jsonl"));
    snprintf(copa, sizeof copa, "%s", test_data("tasks/copa.jsonl"));
    tasks[0] = arc;
    tasks[1] = copa;
    snprintf(out, sizeof out, "%s/a.jsonl", root);
    snprintf(out2, sizeof out2, "%s/b.jsonl", root);
    snprintf(out3, sizeof out3, "%s/c.jsonl", root);

    /* two tasks, 3 examples each: the file mend_eval_run gives */
    mend_eval_job j;
    mend_eval_job_init(&j);
    CHECK(j.model == NULL && j.limit == 0 && j.ctx == 0 && !j.packed);
    j.model = model;
    j.tasks = tasks;
    j.n_tasks = 2;
    j.out = out;
    j.limit = 3;
    seen s = {0};
    CHECK_OK(mend_eval_job_run(&j, on_event, &s));
    char *got = slurp(out), *want = expected_lines(model, tasks, 2, 3, NULL);
    CHECK(got && want && count_lines(got) == 6);
    CHECK_MSG(got && want && !strcmp(got, want), "the job's results file differs from mend_eval_run's lines");
    CHECK(strstr(s.text, "model:   ") == s.text && strstr(s.text, "results: ") && strstr(s.text, "| arc_easy |") &&
          strstr(s.text, "| copa |"));
    CHECK(s.starts == 1 && s.ends == 1 && s.total == 6 && s.updates == 6 && s.last_done == 6);
    CHECK(s.notes == 1 && strstr(s.note, "scored 6 examples") && strstr(s.note, "without prefix sharing"));
    free(got);
    free(want);
    {   /* generation only: no scored requests, so no "without prefix sharing" count (it read 0) */
        char gen[4096], outg[4096];
        snprintf(gen, sizeof gen, "%s", test_data("tasks/triviaqa.jsonl"));
        snprintf(outg, sizeof outg, "%s/g.jsonl", root);
        const char *gt[] = {gen};
        mend_eval_job g = j;
        g.tasks = gt;
        g.n_tasks = 1;
        g.limit = 2;
        g.out = outg;
        seen sg = {0};
        CHECK_OK(mend_eval_job_run(&g, on_event, &sg));
        CHECK_MSG(sg.notes == 1 && strstr(sg.note, "scored 2 examples") && strstr(sg.note, "forward positions") &&
                  !strstr(sg.note, "prefix sharing"), "generation note: %s", sg.note);
    }

    /* behind a soft prompt: the same as a scorer with that prompt */
    const char *one[1] = {arc};
    j.tasks = one;
    j.n_tasks = 1;
    j.out = out3;
    j.prompt = test_src(ADAPTER);
    seen sp = {0};
    CHECK_OK(mend_eval_job_run(&j, on_event, &sp));
    got = slurp(out3);
    want = expected_lines(model, one, 1, 3, test_src(ADAPTER));
    CHECK_MSG(got && want && !strcmp(got, want), "the results file behind a prompt differs");
    CHECK(strstr(sp.text, "prompt:  ") && strstr(sp.text, ADAPTER));
    free(got);
    free(want);
    j.prompt = NULL;

    /* resume: 2 examples first, then the third only; the file is the one a
     * single run writes */
    char arc_only[4096];
    snprintf(arc_only, sizeof arc_only, "%s/arc.jsonl", root);
    j.out = arc_only;
    CHECK_OK(mend_eval_job_run(&j, NULL, NULL));
    char *full = slurp(arc_only);
    unlink(arc_only);
    j.out = out2;
    j.limit = 2;
    CHECK_OK(mend_eval_job_run(&j, NULL, NULL));
    j.limit = 3;
    CHECK_ERR(mend_eval_job_run(&j, NULL, NULL), MEND_EINVAL, "already holds 2 results");
    FILE *f = fopen(out2, "a");   /* a killed run's partial line */
    if (f) {
        fputs("{\"task\":\"arc_ea", f);
        fclose(f);
    }
    j.resume = 1;
    seen r = {0};
    CHECK_OK(mend_eval_job_run(&j, on_event, &r));
    CHECK(r.total == 1 && r.updates == 1);
    CHECK(strstr(r.text, "(1 examples to score)") != NULL);
    got = slurp(out2);
    CHECK_MSG(got && full && !strcmp(got, full), "a resumed file differs from one run's");
    free(got);
    /* nothing left: nothing scored, the summary still printed */
    seen r2 = {0};
    CHECK_OK(mend_eval_job_run(&j, on_event, &r2));
    CHECK(r2.total == 0 && r2.updates == 0 && strstr(r2.text, "| arc_easy | 3 |"));
    /* another model label (packed kernels) is refused */
    j.packed = 1;
    CHECK_ERR(mend_eval_job_run(&j, NULL, NULL), MEND_EINVAL, "was scored with model llama.gguf");
    j.packed = 0;
    got = slurp(out2);
    CHECK(got && full && !strcmp(got, full));
    free(got);

    /* cancelled by the handler at the first example's progress: its line is written, and
     * a resume finishes the file */
    unlink(out2);
    j.resume = 0;
    seen c = {.stop_kind = MEND_EV_PROGRESS, .stop_at = 1};
    CHECK_ERR(mend_eval_job_run(&j, on_event, &c), MEND_EINVAL, "stopped");
    got = slurp(out2);
    CHECK(got && count_lines(got) == 1);
    free(got);
    j.resume = 1;
    CHECK_OK(mend_eval_job_run(&j, NULL, NULL));
    got = slurp(out2);
    CHECK_MSG(got && full && !strcmp(got, full), "cancelled then resumed differs from one run");
    free(got);
    /* cancelled at the header: nothing scored */
    unlink(out2);
    j.resume = 0;
    seen h = {.stop_kind = MEND_EV_TEXT, .stop_at = 1};
    CHECK_ERR(mend_eval_job_run(&j, on_event, &h), MEND_EINVAL, "stopped");
    got = slurp(out2);
    CHECK(!got || count_lines(got) == 0);
    free(got);
    free(full);

    /* bad fields, each named */
    mend_eval_job b = j;
    b.model = NULL;
    CHECK_ERR(mend_eval_job_run(&b, NULL, NULL), MEND_EINVAL, "model");
    b = j;
    b.n_tasks = 0;
    CHECK_ERR(mend_eval_job_run(&b, NULL, NULL), MEND_EINVAL, "tasks");
    const char *null_task[1] = {NULL};
    b = j;
    b.tasks = null_task;
    CHECK_ERR(mend_eval_job_run(&b, NULL, NULL), MEND_EINVAL, "tasks[0]");
    b = j;
    b.out = NULL;
    CHECK_ERR(mend_eval_job_run(&b, NULL, NULL), MEND_EINVAL, "out");
    b = j;
    b.ctx = 10;
    CHECK_ERR(mend_eval_job_run(&b, NULL, NULL), MEND_EINVAL, "ctx 10");
    b = j;
    b.limit = (size_t)1 << 40;
    CHECK_ERR(mend_eval_job_run(&b, NULL, NULL), MEND_EINVAL, "limit");
    b = j;
    b.batch = -1;
    CHECK_ERR(mend_eval_job_run(&b, NULL, NULL), MEND_EINVAL, "batch");
    b = j;
    b.prompt = test_src(ADAPTER);
    b.bank = root;
    CHECK_ERR(mend_eval_job_run(&b, NULL, NULL), MEND_EINVAL, "prompt and bank");
    b = j;
    b.select = "attention";
    CHECK_ERR(mend_eval_job_run(&b, NULL, NULL), MEND_EINVAL, "need bank");
    CHECK_ERR(mend_eval_job_run(NULL, NULL, NULL), MEND_EINVAL, "eval job");
    /* a missing task fails before the model loads, naming the file */
    const char *missing[1] = {"/nonexistent/task.jsonl"};
    b = j;
    b.tasks = missing;
    CHECK_ERR(mend_eval_job_run(&b, NULL, NULL), MEND_EIO, "/nonexistent/task.jsonl");
}

static const char *TEXT =
    "The quick brown fox jumps over the lazy dog near the river bank.\n"
    "A compressed model loses some accuracy, and a soft prompt trained through it can repair part of it.\n"
    "Soft prompts are a few learned vectors placed before the text of every input.\n"
    "The river runs past the old mill, where the miller grinds the wheat every morning.\n";

static void test_ppl_job(const char *root) {
    const char *model = test_src(TINY);
    char text[4096], json[4096];
    snprintf(text, sizeof text, "%s/text.txt", root);
    snprintf(json, sizeof json, "%s/ppl.json", root);
    CHECK_OK(mend_write_file_atomic(text, TEXT, strlen(TEXT)));

    mend_ppl_job j;
    mend_ppl_job_init(&j);
    CHECK(j.protocol == MEND_PPL_GPTQ && j.ctx == 0 && j.json == NULL);
    j.model = model;
    j.text = text;
    j.ctx = 16;
    j.json = json;
    seen s = {0};
    CHECK_OK(mend_ppl_job_run(&j, on_event, &s));

    /* the same numbers as mend_perplexity on the text's tokens */
    mend_model *m = NULL;
    mend_load_opts lo = {.keep_packed = 1};
    CHECK_OK(mend_model_load(&m, model, &lo));
    int32_t *ids = NULL;
    size_t n = 0;
    mend_ppl_result want = {0};
    if (m) {
        CHECK_OK(mend_tokenize(mend_model_tokenizer(m), TEXT, strlen(TEXT), 0, 0, &ids, &n));
        mend_ppl_opts o = {.protocol = MEND_PPL_GPTQ, .n_ctx = 16, .bos = -1};
        CHECK_OK(mend_perplexity(m, ids, n, &o, NULL, NULL, &want));
        mend_model_free(m);
    }
    free(ids);
    CHECK(want.n_chunks > 1 && s.total == want.n_chunks && s.updates == want.n_chunks);
    CHECK_MSG(!strcmp(s.first_item, "[1]") || !strncmp(s.first_item, "[1]", 3), "first item '%s'", s.first_item);
    char line[128];
    snprintf(line, sizeof line, "PPL = %.4f +/- %.5f\n", want.ppl, want.ppl_err);
    CHECK_MSG(strstr(s.text, line) != NULL, "no '%s' in the report", line);
    CHECK(s.notes == 1 && strstr(s.note, "tokenized"));
    json_error_t err;
    json_t *o = json_load_file(json, 0, &err);
    CHECK(o != NULL);
    if (o) {
        CHECK(json_integer_value(json_object_get(o, "windows")) == want.n_chunks);
        CHECK(json_array_size(json_object_get(o, "window_nll")) == (size_t)want.n_chunks);
        CHECK_NEAR(json_real_value(json_object_get(o, "ppl")), want.ppl, 1e-6 * want.ppl);
        CHECK(!strcmp(json_string_value(json_object_get(o, "protocol")), "gptq"));
        json_decref(o);
    }

    /* behind a prompt: the header says so, the numbers move */
    j.prompt = test_src(ADAPTER);
    j.json = NULL;
    seen p = {0};
    CHECK_OK(mend_ppl_job_run(&j, on_event, &p));
    CHECK(strstr(p.text, "prompt:   ") && strstr(p.text, "(5 virtual tokens before every window)"));
    CHECK(strstr(p.text, line) == NULL);
    j.prompt = NULL;

    /* cancelled at the first window: no JSON written */
    unlink(json);
    j.json = json;
    seen c = {.stop_kind = MEND_EV_PROGRESS, .stop_at = 1};
    CHECK_ERR(mend_ppl_job_run(&j, on_event, &c), MEND_EINVAL, "stopped");
    CHECK(c.ends == 1);
    CHECK(!mend_file_exists(json));

    /* bad fields, each named */
    mend_ppl_job b = j;
    b.model = NULL;
    CHECK_ERR(mend_ppl_job_run(&b, NULL, NULL), MEND_EINVAL, "model");
    b = j;
    b.text = NULL;
    CHECK_ERR(mend_ppl_job_run(&b, NULL, NULL), MEND_EINVAL, "text");
    b = j;
    b.ctx = 2;
    CHECK_ERR(mend_ppl_job_run(&b, NULL, NULL), MEND_EINVAL, "ctx 2");
    b = j;
    b.protocol = 7;
    CHECK_ERR(mend_ppl_job_run(&b, NULL, NULL), MEND_EINVAL, "protocol");
    b = j;
    b.chunks = -1;
    CHECK_ERR(mend_ppl_job_run(&b, NULL, NULL), MEND_EINVAL, "chunks");
    b = j;
    b.protocol = MEND_PPL_LLAMACPP;
    b.hf_lines = 1;
    CHECK_ERR(mend_ppl_job_run(&b, NULL, NULL), MEND_EINVAL, "hf_lines");
    b = j;
    b.prompt = test_src(ADAPTER);
    b.bank = root;
    CHECK_ERR(mend_ppl_job_run(&b, NULL, NULL), MEND_EINVAL, "prompt and bank");
    b = j;
    b.per_prompt = 1;
    CHECK_ERR(mend_ppl_job_run(&b, NULL, NULL), MEND_EINVAL, "need bank");
    b = j;
    b.text = "/nonexistent/text.txt";
    CHECK_ERR(mend_ppl_job_run(&b, NULL, NULL), MEND_EIO, "/nonexistent/text.txt");
}

int main(void) {
    mend_set_threads(1);   /* a tiny model: threads would only wait for each other on a busy machine */
    char tmpl[] = "/tmp/mend_jobs_eval_XXXXXX";
    char *root = mkdtemp(tmpl);
    CHECK(root != NULL);
    if (!root) return test_finish();
    test_eval_job(root);
    test_ppl_job(root);
    return test_finish();
}
