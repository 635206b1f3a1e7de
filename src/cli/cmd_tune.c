/* mend tune MODEL --corpus FILE... -o ADAPTER_DIR: train a soft prompt for
 * a (compressed) model by backpropagation through the frozen model
 * (docs/tune.md). Progress with ETA on stderr; a summary on stdout; the
 * adapter, loss.csv, train.json, loss.png (gnuplot) and checkpoint.bin in ADAPTER_DIR.
 * The work is mend_tune_job_run's (src/jobs/tune.c); this file parses the
 * options into its job and prints its events. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

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
    if (teacher_path && no_distill) return cli_usage_error(CMD, "give --distill or --no-distill, not both");
    mend_tune_job j;
    mend_tune_job_init(&j);
    j.model = o.base_model = argv[optind];
    j.corpora = corpus;
    j.n_corpora = n_corpus;
    j.teacher = teacher_path;
    j.no_distill = no_distill;
    char models_dir[4096];
    j.models_dir = cli_models_dir(models_dir, sizeof models_dir);
    j.init_adapter = init_adapter;
    j.tokens_given = tokens_given;
    j.plot = !no_plot;
    j.opts = o;
    cli_events ev = {.cmd = CMD};
    return cli_job_status(CMD, mend_tune_job_run(&j, cli_event, &ev));
}
