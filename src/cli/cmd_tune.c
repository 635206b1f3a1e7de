/* mend tune MODEL --corpus FILE... -o ADAPTER_DIR: train a soft prompt for
 * a (compressed) model by backpropagation through the frozen model
 * (docs/tune.md). Progress with ETA on stderr; a summary on stdout; the
 * adapter, loss.csv, train.json, loss.png (gnuplot) and checkpoint.bin in ADAPTER_DIR. */
#include <getopt.h>
#include <sys/resource.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mend.h"

static const char *CMD = "tune";

static void help(void) {
    printf("Usage: mend tune [options] MODEL --corpus FILE [--corpus FILE...] -o ADAPTER_DIR\n\n"
           "Train a soft prompt (PEFT prompt tuning) that repairs MODEL: the prompt's\n"
           "embeddings are optimized by backpropagation through the frozen model. The\n"
           "adapter (best validation loss) is written to ADAPTER_DIR, the last prompt to\n"
           "ADAPTER_DIR/last, with loss.csv, train.json, loss.png and checkpoint.bin.\n\n"
           "Options:\n"
           "      --corpus FILE        training text, paragraphs separated by blank lines\n"
           "  -o, --out DIR            adapter directory\n"
           "      --tokens N           virtual tokens (default 20)\n"
           "      --seqlen N           text tokens per sequence (default 512)\n"
           "      --windows W          stream (default): the token stream cut into consecutive\n"
           "                           sequences; paragraph: one sequence from each paragraph's start\n"
           "      --batch N            sequences per step (default 4)\n"
           "      --steps N            optimizer steps (default 100)\n"
           "      --lr X               peak learning rate (default 1e-3)\n"
           "      --warmup N           linear warm-up steps (default min(100, steps/10))\n"
           "      --schedule S         linear (default), cosine or constant decay after warm-up\n"
           "      --wd X               AdamW weight decay (default 1e-5)\n"
           "      --clip X             gradient norm clip (default 1.0; 0: off)\n"
           "      --init I             vocab (default: sampled vocabulary embeddings) or random\n"
           "      --init-text TEXT     initialize from the embeddings of TEXT's tokens\n"
           "      --init-adapter DIR   start from a trained prompt (a PEFT adapter; --tokens\n"
           "                           defaults to its length): continue or specialize it\n"
           "      --distill TEACHER    minimize KL(teacher || model + prompt) on the text,\n"
           "                           the teacher (e.g. the uncompressed model) without prompt;\n"
           "                           default: the source MODEL records (mend compress), when it\n"
           "                           is found beside MODEL or in $MEND_HOME/models\n"
           "      --no-distill         next-token cross-entropy instead\n"
           "      --val-frac X         fraction of paragraphs held out (default 0.05; 0: none)\n"
           "      --val-seqs N         at most N validation sequences (default 16)\n"
           "      --eval-every K       validate every K steps (default 50)\n"
           "      --ckpt-every K       checkpoint every K steps (default 50)\n"
           "      --resume             continue from ADAPTER_DIR/checkpoint.bin (same options)\n"
           "      --max-minutes M      end after M minutes of training even before --steps\n"
           "                           (validates, checkpoints and writes the adapter)\n"
           "      --seed N             seed for the init, the split and the data order (default 1234)\n"
           "      --no-plot            do not run gnuplot\n"
           "  -t, --threads N          threads (default: all cores)\n"
           "  -h, --help               this help\n");
}

typedef struct ui {
    int tty;
    double last_draw;
    int steps;
    int first_step, last_step;      /* CPU time between the ends of these steps */
    double cpu_first, cpu_last, wall_first, wall_last;
} ui;

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int on_info(void *user, const mend_tune_info *in) {
    (void)user;
    char b[32];
    fprintf(stderr, "data: %d paragraphs (%d held out); train %lld tokens -> %d sequences; validation %lld tokens -> "
            "%d sequences\n", in->n_paragraphs, in->n_val_paragraphs, (long long)in->n_train_tokens, in->n_train_seqs,
            (long long)in->n_val_tokens, in->n_val_seqs);
    fprintf(stderr, "memory:    %s (activations, scratch, packed weights)\n",
            mend_fmt_bytes((double)in->trainer_bytes, b, sizeof b));
    return 0;
}

static int on_step(void *user, const mend_tune_progress *p) {
    ui *u = user;
    char eta[32] = "--:--", el[32];
    cli_fmt_duration(p->elapsed, el, sizeof el);
    const int done = p->step - p->resumed_from;
    if (done > 0 && p->elapsed > 0) cli_fmt_duration(p->elapsed / done * (p->steps - p->step), eta, sizeof eta);
    if (p->step == 0) {
        fprintf(stderr, "step 0: validation loss %.4f (ce %.4f, ppl %.2f) with the initial prompt\n", p->val_loss,
                p->val_ce, exp(p->val_ce));
        return 0;
    }
    const double now = mend_now();
    if (!u->first_step) {
        u->first_step = p->step;
        u->cpu_first = cpu_seconds();
        u->wall_first = now;
    } else if (!p->evaluated) {   /* steps without validation only */
        u->last_step = p->step;
        u->cpu_last = cpu_seconds();
        u->wall_last = now;
    }
    const int final = p->step == p->steps;
    if (u->tty && !p->evaluated && !final && now - u->last_draw < 0.25) return 0;
    u->last_draw = now;
    char val[96] = "";
    if (p->evaluated)
        snprintf(val, sizeof val, "  val %.4f (ppl %.2f, best %.4f @%d)", p->val_loss, exp(p->val_ce), p->best_val,
                 p->best_step);
    fprintf(stderr, "%sstep %d/%d  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  %s elapsed  ETA %s%s%s", u->tty ? "\r\033[K" : "",
            p->step, p->steps, p->loss, p->lr, p->grad_norm, p->tokens_per_s, el, eta, val,
            (!u->tty || p->evaluated || final) ? "\n" : "");
    fflush(stderr);
    return 0;
}

static int plot(const char *dir) {
    char *csv = mend_path_join(dir, "loss.csv"), *png = mend_path_join(dir, "loss.png");
    int rc = -1;
    if (csv && png) {
        FILE *g = popen("gnuplot 2>/dev/null", "w");
        if (g) {
            fprintf(g,
                    "set terminal pngcairo size 900,520\n"
                    "set output '%s'\n"
                    "set datafile separator ','\n"
                    "set key top right\n"
                    "set xlabel 'step'\nset ylabel 'loss'\nset grid\n"
                    "set title 'mend tune'\n"
                    "plot '%s' using 1:3 every ::1 with lines lw 1 lc rgb '#7f9fcf' title 'train loss', "
                    "'' using 1:6 with linespoints pt 7 ps 0.6 lw 2 lc rgb '#c0392b' title 'validation loss'\n",
                    png, csv);
            rc = pclose(g) == 0 ? 0 : -1;
        }
    }
    free(csv);
    free(png);
    return rc;
}

int cmd_tune(int argc, char **argv) {
    enum { O_CORPUS = 256, O_TOKENS, O_SEQLEN, O_BATCH, O_STEPS, O_LR, O_WARMUP, O_SCHED, O_WD, O_CLIP, O_INIT,
           O_INITTEXT, O_DISTILL, O_VALFRAC, O_VALSEQS, O_EVAL, O_CKPT, O_RESUME, O_SEED, O_NOPLOT, O_STOP,
           O_MAXMIN, O_INITAD, O_NODISTILL, O_WINDOWS };
    static const struct option longopts[] = {
        {"corpus", required_argument, 0, O_CORPUS}, {"out", required_argument, 0, 'o'},
        {"tokens", required_argument, 0, O_TOKENS}, {"seqlen", required_argument, 0, O_SEQLEN},
        {"batch", required_argument, 0, O_BATCH},   {"steps", required_argument, 0, O_STEPS},
        {"lr", required_argument, 0, O_LR},         {"warmup", required_argument, 0, O_WARMUP},
        {"schedule", required_argument, 0, O_SCHED}, {"wd", required_argument, 0, O_WD},
        {"clip", required_argument, 0, O_CLIP},     {"init", required_argument, 0, O_INIT},
        {"init-text", required_argument, 0, O_INITTEXT}, {"distill", required_argument, 0, O_DISTILL},
        {"val-frac", required_argument, 0, O_VALFRAC}, {"val-seqs", required_argument, 0, O_VALSEQS},
        {"eval-every", required_argument, 0, O_EVAL}, {"ckpt-every", required_argument, 0, O_CKPT},
        {"resume", no_argument, 0, O_RESUME},       {"seed", required_argument, 0, O_SEED},
        {"no-plot", no_argument, 0, O_NOPLOT},      {"stop-after", required_argument, 0, O_STOP},
        {"max-minutes", required_argument, 0, O_MAXMIN}, {"init-adapter", required_argument, 0, O_INITAD},
        {"no-distill", no_argument, 0, O_NODISTILL}, {"windows", required_argument, 0, O_WINDOWS},
        {"threads", required_argument, 0, 't'},     {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    mend_tune_opts o;
    mend_tune_opts_default(&o);
    const char *corpus[64], *teacher_path = NULL, *init_name = NULL, *init_adapter = NULL;
    int n_corpus = 0, no_plot = 0, tokens_given = 0, no_distill = 0;
    char teacher_buf[4096];
    long v;
    double x;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case O_CORPUS:
            if (n_corpus == 64) return cli_usage_error(CMD, "at most 64 --corpus files");
            corpus[n_corpus++] = optarg;
            break;
        case 'o': o.out_dir = optarg; break;
#define INTOPT(field, lo, hi, name)                                                                          \
    if (cli_parse_int(optarg, lo, hi, &v))                                                                  \
        return cli_usage_error(CMD, "%s expects a whole number from %ld to %ld, got '%s'", name, (long)(lo), \
                               (long)(hi), optarg);                                                         \
    o.field = (int)v;                                                                                       \
    break;
        case O_TOKENS: tokens_given = 1; INTOPT(n_virtual, 1, 4096, "--tokens")
        case O_SEQLEN: INTOPT(seqlen, 2, 1 << 20, "--seqlen")
        case O_BATCH: INTOPT(batch, 1, 1 << 16, "--batch")
        case O_STEPS: INTOPT(steps, 1, 1 << 26, "--steps")
        case O_WARMUP: INTOPT(warmup, 0, 1 << 26, "--warmup")
        case O_VALSEQS: INTOPT(val_seqs, 1, 1 << 20, "--val-seqs")
        case O_EVAL: INTOPT(eval_every, 0, 1 << 26, "--eval-every")
        case O_CKPT: INTOPT(ckpt_every, 0, 1 << 26, "--ckpt-every")
        case O_STOP: INTOPT(stop_after, 0, 1 << 26, "--stop-after")
#undef INTOPT
        case O_LR:
            if (cli_parse_double(optarg, 1e-12, 100.0, &x)) return cli_usage_error(CMD, "--lr expects a positive number, got '%s'", optarg);
            o.lr = x;
            break;
        case O_MAXMIN:
            if (cli_parse_double(optarg, 0.0, 1e7, &x)) return cli_usage_error(CMD, "--max-minutes expects a number >= 0, got '%s'", optarg);
            o.max_seconds = 60.0 * x;
            break;
        case O_WD:
            if (cli_parse_double(optarg, 0.0, 10.0, &x)) return cli_usage_error(CMD, "--wd expects a number from 0 to 10, got '%s'", optarg);
            o.weight_decay = x;
            break;
        case O_CLIP:
            if (cli_parse_double(optarg, 0.0, 1e9, &x)) return cli_usage_error(CMD, "--clip expects a number >= 0, got '%s'", optarg);
            o.clip = x;
            break;
        case O_VALFRAC:
            if (cli_parse_double(optarg, 0.0, 0.9, &x)) return cli_usage_error(CMD, "--val-frac expects a number from 0 to 0.9, got '%s'", optarg);
            o.val_frac = x;
            break;
        case O_WINDOWS:
            if (!strcmp(optarg, "stream")) o.windows = MEND_TUNE_WINDOWS_STREAM;
            else if (!strcmp(optarg, "paragraph")) o.windows = MEND_TUNE_WINDOWS_PARAGRAPH;
            else return cli_usage_error(CMD, "--windows expects stream or paragraph, got '%s'", optarg);
            break;
        case O_SCHED:
            if (!strcmp(optarg, "linear")) o.schedule = MEND_SCHED_LINEAR;
            else if (!strcmp(optarg, "cosine")) o.schedule = MEND_SCHED_COSINE;
            else if (!strcmp(optarg, "constant")) o.schedule = MEND_SCHED_CONSTANT;
            else return cli_usage_error(CMD, "--schedule expects linear, cosine or constant, got '%s'", optarg);
            break;
        case O_INIT:
            init_name = optarg;
            if (!strcmp(optarg, "vocab")) o.init = MEND_TUNE_INIT_VOCAB;
            else if (!strcmp(optarg, "random")) o.init = MEND_TUNE_INIT_RANDOM;
            else return cli_usage_error(CMD, "--init expects vocab or random (or use --init-text), got '%s'", optarg);
            break;
        case O_INITTEXT:
            o.init = MEND_TUNE_INIT_TEXT;
            o.init_text = optarg;
            break;
        case O_DISTILL: teacher_path = optarg; break;
        case O_INITAD: init_adapter = optarg; break;
        case O_NODISTILL: no_distill = 1; break;
        case O_RESUME: o.resume = 1; break;
        case O_SEED:
            if (cli_parse_u64(optarg, &o.seed)) return cli_usage_error(CMD, "--seed expects a non-negative whole number, got '%s'", optarg);
            break;
        case O_NOPLOT: no_plot = 1; break;
        case 't':
            if (cli_set_threads(CMD, optarg)) return CLI_EXIT_USAGE;
            break;
        case 'h': help(); return 0;
        default: return cli_getopt_error(CMD, argv, c);
        }
    }
    if (optind >= argc) return cli_usage_error(CMD, "missing MODEL");
    if (optind + 1 < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
    if (!n_corpus) return cli_usage_error(CMD, "missing --corpus FILE");
    if (!o.out_dir) return cli_usage_error(CMD, "missing -o ADAPTER_DIR");
    if ((init_name != NULL) + (o.init_text != NULL) + (init_adapter != NULL) > 1)
        return cli_usage_error(CMD, "give one of --init, --init-text and --init-adapter");
    const char *path = argv[optind];
    o.base_model = path;
    if (teacher_path && no_distill) return cli_usage_error(CMD, "give --distill or --no-distill, not both");

    int rc = CLI_EXIT_ERROR;
    char *texts[64] = {0};
    size_t lens[64] = {0};
    mend_model *m = NULL, *teacher = NULL;
    float *start = NULL;
    for (int i = 0; i < n_corpus; i++)
        if (mend_read_file(corpus[i], (size_t)2 << 30, &texts[i], &lens[i])) {
            rc = cli_fail(CMD, corpus[i]);
            goto out;
        }
    /* the trainer multiplies f32 weights: the model's matrices are
     * dequantized at load (exactly the values the compressed blocks hold) */
    mend_load_opts lo = {.keep_packed = 0};
    if (mend_model_load(&m, path, &lo)) {
        rc = cli_fail(CMD, path);
        goto out;
    }
    if (!teacher_path && !no_distill && cli_default_teacher(CMD, m, path, teacher_buf, sizeof teacher_buf))
        teacher_path = teacher_buf;
    if (teacher_path) o.objective = MEND_TUNE_KL;
    if (teacher_path && mend_model_load(&teacher, teacher_path, &lo)) {
        rc = cli_fail(CMD, teacher_path);
        goto out;
    }
    mend_model_info info;
    mend_model_get_info(m, &info);
    if (init_adapter) {
        int nv = 0;
        if (mend_adapter_read(init_adapter, info.dim, &start, &nv)) {
            rc = cli_fail(CMD, init_adapter);
            goto out;
        }
        if (tokens_given && nv != o.n_virtual) {
            rc = cli_usage_error(CMD, "--init-adapter %s has %d virtual tokens, --tokens says %d", init_adapter, nv,
                                 o.n_virtual);
            goto out;
        }
        o.n_virtual = nv;
        o.init = MEND_TUNE_INIT_PROMPT;
        o.init_prompt = start;
        int found = 0;
        mend_tune_record rec;
        if (mend_tune_read_record(init_adapter, &rec, &found)) {
            rc = cli_fail(CMD, init_adapter);
            goto out;
        }
        o.start_tokens = rec.train_tokens + rec.start_tokens;
        if (!found) fprintf(stderr, "mend %s: note: %s has no train.json; its training tokens are not counted in "
                                    "this prompt's total\n", CMD, init_adapter);
    }
    const int warm = o.warmup >= 0 ? o.warmup : (o.steps / 10 < 100 ? o.steps / 10 : 100);
    printf("model:     %s (%s, %d layers, dim %d)\n", path, info.arch, info.n_layers, info.dim);
    printf("objective: %s%s\n", teacher_path ? "KL(teacher || model + prompt), teacher " : "next-token cross-entropy",
           teacher_path ? teacher_path : "");
    printf("prompt:    %d virtual tokens, init %s%s%s\n", o.n_virtual,
           o.init == MEND_TUNE_INIT_TEXT     ? "text \""
           : o.init == MEND_TUNE_INIT_VOCAB  ? "sampled vocabulary"
           : o.init == MEND_TUNE_INIT_PROMPT ? "the prompt of "
                                             : "random",
           o.init_text ? o.init_text : init_adapter ? init_adapter : "", o.init_text ? "\"" : "");
    printf("training:  %d steps x %d sequences x %d tokens, AdamW lr %g (warm-up %d, %s), wd %g, clip %g, "
           "%d threads, seed %llu\n", o.steps, o.batch, o.seqlen, o.lr, warm,
           o.schedule == MEND_SCHED_COSINE ? "cosine" : o.schedule == MEND_SCHED_CONSTANT ? "constant" : "linear",
           o.weight_decay, o.clip, mend_get_threads(), (unsigned long long)o.seed);
    fflush(stdout);
    ui u = {.tty = isatty(STDERR_FILENO), .steps = o.steps};
    mend_tune_result r;
    if (mend_tune_run(m, teacher, (const char *const *)texts, lens, n_corpus, &o, on_info, on_step, &u, &r)) {
        rc = cli_fail(CMD, "training");
        goto out;
    }
    if (o.stop_after > 0 && r.steps_done < o.steps) {
        printf("stopped after step %d (checkpoint in %s)\n", r.steps_done, o.out_dir);
        rc = 0;
        goto out;
    }
    if (!no_plot && plot(o.out_dir)) fprintf(stderr, "mend %s: gnuplot failed; loss.csv is there\n", CMD);
    printf("steps:     %d in %.1f s (%.1f text tokens/s, forward + backward)\n", r.steps_done, r.elapsed,
           r.tokens_per_s);
    if (u.last_step > u.first_step && u.cpu_last > u.cpu_first) {
        const double n = u.last_step - u.first_step, toks = (double)o.batch * o.seqlen;
        printf("speed:     steps %d..%d: %.2f s/step wall (%.1f tokens/s), %.2f CPU s/step (%.1f tokens per CPU "
               "second)\n", u.first_step + 1, u.last_step, (u.wall_last - u.wall_first) / n,
               toks * n / (u.wall_last - u.wall_first), (u.cpu_last - u.cpu_first) / n,
               toks * n / (u.cpu_last - u.cpu_first));
    }
    if (!isnan(r.best_val))
        printf("val loss:  %.4f at the start, best %.4f at step %d%s\n", r.first_val, r.best_val, r.best_step,
               o.objective == MEND_TUNE_KL ? " (KL)" : "");
    printf("adapter:   %s%s\n", o.out_dir, isnan(r.best_val) ? " (last prompt)" : " (best validation prompt)");
    rc = 0;
out:
    for (int i = 0; i < n_corpus; i++) free(texts[i]);
    free(start);
    if (teacher) mend_model_free(teacher);
    if (m) mend_model_free(m);
    return rc;
}
