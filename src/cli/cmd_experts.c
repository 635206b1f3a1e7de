/* mend bank experts: a bank of expert prompts trained by hard EM
 * (prompt/experts.h), the alternative to bank build's domain prompts. */
#define _GNU_SOURCE
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mend.h"

static const char *CMD = "bank experts";
static const char *const CORPORA[] = {"wiki", "news", "science", "fiction", "dialog", "lore"};
#define MAX_CORPORA 64

static void help(void) {
    printf("Usage: mend bank experts MODEL --init-adapter DIR -o BANK_DIR [options]\n\n"
           "Trains a bank of K expert prompts by hard EM. All start from the trained prompt\n"
           "DIR; round 0 splits the text by balanced k-means on the learned router's feature,\n"
           "later rounds give each chunk of text to the expert under which it is most likely\n"
           "(the loss selector, balanced), and each expert trains on its chunks. At the end\n"
           "the learned router is fitted to the loss selector's picks over the final experts\n"
           "and bank.json selects with it by default. Rerunning resumes. docs/idp.md.\n\n"
           "Options:\n"
           "      --corpus FILE        training text (repeat); default: the six corpora wiki news\n"
           "                           science fiction dialog lore of $MEND_DATA/corpus\n"
           "  -o, --out DIR            the bank directory\n"
           "      --init-adapter DIR   the prompt every expert starts from (required)\n"
           "      --experts K          experts (default 4)\n"
           "      --rounds R           rounds of labelling and training (default 3)\n"
           "      --steps N            optimizer steps per expert per round (default 10)\n"
           "      --batch N            chunks per step (default 4)\n"
           "      --seqlen N           tokens per chunk, each from a paragraph start (default 256)\n"
           "      --lr X               peak learning rate (default 3e-3)\n"
           "      --val-seqs N         held-out chunks shared among the experts (default 48)\n"
           "      --seed N             seed (default 1234)\n"
           "      --distill TEACHER    the teacher of the KL objective; default: the source MODEL\n"
           "                           records, found beside it or in $MEND_HOME/models\n"
           "      --no-distill         next-token cross-entropy instead\n"
           "  -t, --threads N          threads (default: all cores)\n"
           "  -h, --help               this help\n");
}

typedef struct progress_state {
    double t0, t_phase;
    int last_round, last_expert;
    const char *last_phase;
} progress_state;

/* one line per report (an optimizer step, or 16 chunks labelled): elapsed
 * overall, ETA of the phase (a round's labelling or an expert's steps) */
static int on_progress(void *user, const mend_experts_progress *p) {
    progress_state *s = user;
    const double now = mend_now();
    const int changed = p->round != s->last_round || p->expert != s->last_expert || p->phase != s->last_phase;
    if (changed) s->t_phase = now;
    char el[32], eta[48] = "", rd[32], ex[16] = "", ls[32] = "";
    mend_fmt_duration(now - s->t0, el, sizeof el);
    if (p->done > 0 && p->done < p->total) {
        char d[32];
        mend_fmt_duration((now - s->t_phase) / p->done * (p->total - p->done), d, sizeof d);
        snprintf(eta, sizeof eta, ", ETA %s", d);
    }
    if (p->round < p->rounds) snprintf(rd, sizeof rd, "round %d/%d", p->round + 1, p->rounds);
    else snprintf(rd, sizeof rd, "final");
    if (p->expert >= 0) snprintf(ex, sizeof ex, " e%d", p->expert);
    if (isfinite(p->loss)) snprintf(ls, sizeof ls, " loss %.4f", p->loss);
    fprintf(stderr, "[experts %s] %s%s: %d/%d%s (elapsed %s%s)\n", rd, p->phase, ex, p->done, p->total, ls, el,
            eta);
    s->last_round = p->round, s->last_expert = p->expert, s->last_phase = p->phase;
    return 0;
}

static int parse_opts(int argc, char **argv, mend_experts_opts *o, const char **corpus, int *n_corpus,
                      const char **init_adapter, const char **teacher, int *no_distill) {
    enum { O_CORPUS = 256, O_INITAD, O_K, O_ROUNDS, O_STEPS, O_BATCH, O_SEQLEN, O_LR, O_VALSEQS, O_SEED,
           O_DISTILL, O_NODISTILL };
    static const struct option longopts[] = {
        {"corpus", required_argument, 0, O_CORPUS}, {"out", required_argument, 0, 'o'},
        {"init-adapter", required_argument, 0, O_INITAD}, {"experts", required_argument, 0, O_K},
        {"rounds", required_argument, 0, O_ROUNDS}, {"steps", required_argument, 0, O_STEPS},
        {"batch", required_argument, 0, O_BATCH}, {"seqlen", required_argument, 0, O_SEQLEN},
        {"lr", required_argument, 0, O_LR}, {"val-seqs", required_argument, 0, O_VALSEQS},
        {"seed", required_argument, 0, O_SEED}, {"distill", required_argument, 0, O_DISTILL},
        {"no-distill", no_argument, 0, O_NODISTILL}, {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    double x;
    optind = 0;
    opterr = 0;
    int c, rc = 0;
    while (!rc && (c = getopt_long(argc, argv, ":o:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case O_CORPUS:
            if (*n_corpus == MAX_CORPORA) return cli_usage_error(CMD, "at most %d --corpus files", MAX_CORPORA);
            corpus[(*n_corpus)++] = optarg;
            break;
        case 'o': o->out_dir = optarg; break;
        case O_INITAD: *init_adapter = optarg; break;
        case O_DISTILL: *teacher = optarg; break;
        case O_NODISTILL: *no_distill = 1; break;
        case O_K: rc = cli_int_option(CMD, "--experts", optarg, 2, MEND_BANK_MAX_PROMPTS, &o->n_experts); break;
        case O_ROUNDS: rc = cli_int_option(CMD, "--rounds", optarg, 1, 1000, &o->rounds); break;
        case O_STEPS: rc = cli_int_option(CMD, "--steps", optarg, 1, 1 << 24, &o->tune.steps); break;
        case O_BATCH: rc = cli_int_option(CMD, "--batch", optarg, 1, 4096, &o->tune.batch); break;
        case O_SEQLEN: rc = cli_int_option(CMD, "--seqlen", optarg, 2, 1 << 16, &o->tune.seqlen); break;
        case O_VALSEQS: rc = cli_int_option(CMD, "--val-seqs", optarg, 0, 1 << 20, &o->tune.val_seqs); break;
        case O_LR:
            if (cli_parse_double(optarg, 1e-9, 10.0, &x))
                return cli_usage_error(CMD, "--lr expects a number in (0, 10], got '%s'", optarg);
            o->tune.lr = x;
            break;
        case O_SEED:
            if (cli_parse_u64(optarg, &o->tune.seed))
                return cli_usage_error(CMD, "--seed expects a non-negative whole number, got '%s'", optarg);
            break;
        case 't':
            if (cli_set_threads(CMD, optarg)) return CLI_EXIT_USAGE;
            break;
        case 'h': help(); return -1;
        default: return cli_getopt_error(CMD, argv, c);
        }
    }
    if (rc) return rc;
    if (optind >= argc) return cli_usage_error(CMD, "missing MODEL");
    if (optind + 1 < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
    if (!o->out_dir) return cli_usage_error(CMD, "missing -o BANK_DIR");
    if (!*init_adapter) return cli_usage_error(CMD, "missing --init-adapter DIR (the prompt the experts start from)");
    if (*teacher && *no_distill) return cli_usage_error(CMD, "give --distill or --no-distill, not both");
    return 0;
}

/* the --corpus files, or the six default corpora */
static int read_corpora(const char **corpus, int n_corpus, char **texts, size_t *lens, int *n_out) {
    char dir[PATH_MAX], f[PATH_MAX + 32];
    const int dflt = n_corpus == 0;
    if (dflt) {
        if (cli_find_data("corpus", dir, sizeof dir)) {
            fprintf(stderr, "mend %s: no --corpus given and no corpus directory found: set MEND_DATA to the data "
                            "directory (with corpus/) or pass --corpus FILE\n", CMD);
            return CLI_EXIT_ERROR;
        }
        n_corpus = (int)(sizeof CORPORA / sizeof *CORPORA);
    }
    for (int k = 0; k < n_corpus; k++) {
        if (dflt) snprintf(f, sizeof f, "%s/%s.txt", dir, CORPORA[k]);
        const char *path = dflt ? f : corpus[k];
        if (mend_read_file(path, (size_t)1 << 31, &texts[k], &lens[k])) return cli_fail(CMD, path);
        *n_out = k + 1;
    }
    return 0;
}

int cmd_bank_experts(int argc, char **argv) {
    mend_experts_opts o;
    mend_experts_opts_default(&o);
    o.tune.steps = 10;
    o.tune.batch = 4;
    o.tune.seqlen = 256;
    o.tune.lr = 3e-3;
    o.tune.val_seqs = 48;
    o.tune.eval_every = 0;
    o.tune.ckpt_every = 10;
    const char *corpus[MAX_CORPORA], *init_adapter = NULL, *teacher_path = NULL;
    int n_corpus = 0, no_distill = 0;
    int rc = parse_opts(argc, argv, &o, corpus, &n_corpus, &init_adapter, &teacher_path, &no_distill);
    if (rc) return rc < 0 ? 0 : rc;
    const char *model_path = argv[optind];
    char *texts[MAX_CORPORA] = {0}, teacher_buf[4096], base[256];
    size_t lens[MAX_CORPORA];
    int n_texts = 0;
    mend_model *m = NULL, *teacher = NULL;
    float *start = NULL;
    if ((rc = read_corpora(corpus, n_corpus, texts, lens, &n_texts))) goto out;
    rc = CLI_EXIT_ERROR;
    mend_load_opts lo = {.keep_packed = 0};   /* the trainer runs on f32 copies of the weights */
    if (mend_model_load(&m, model_path, &lo)) {
        rc = cli_fail(CMD, model_path);
        goto out;
    }
    if (!teacher_path && !no_distill && cli_default_teacher(CMD, m, model_path, teacher_buf, sizeof teacher_buf))
        teacher_path = teacher_buf;
    if (teacher_path && mend_model_load(&teacher, teacher_path, &lo)) {
        rc = cli_fail(CMD, teacher_path);
        goto out;
    }
    mend_model_info info;
    mend_model_get_info(m, &info);
    int nv = 0, found = 0;
    mend_tune_record rec;
    if (mend_adapter_read(init_adapter, info.dim, &start, &nv) || mend_tune_read_record(init_adapter, &rec, &found)) {
        rc = cli_fail(CMD, init_adapter);
        goto out;
    }
    o.tune.n_virtual = nv;
    o.tune.init_prompt = start;
    o.tune.start_tokens = rec.train_tokens + rec.start_tokens;
    o.tune.objective = teacher ? MEND_TUNE_KL : MEND_TUNE_CE;
    o.base_model = mend_basename(model_path, base, sizeof base);
    printf("model:   %s (%d layers, dim %d)\n", model_path, info.n_layers, info.dim);
    printf("experts: %d of %d virtual tokens from %s; %d rounds x %d steps x %d chunks x %d tokens, lr %g\n",
           o.n_experts, nv, init_adapter, o.rounds, o.tune.steps, o.tune.batch, o.tune.seqlen, o.tune.lr);
    printf("objective: %s%s\n", teacher ? "KL(teacher || model + prompt), teacher " : "next-token cross-entropy",
           teacher ? teacher_path : "");
    fflush(stdout);
    progress_state ps = {.t0 = mend_now(), .last_round = -1, .last_expert = -2};
    mend_experts_result res;
    if (mend_experts_build(m, teacher, (const char *const *)texts, lens, n_texts, &o, on_progress, &ps, &res)) {
        rc = cli_fail(CMD, o.out_dir);
        goto out;
    }
    printf("chunks: %d for training (%d per round), %d held out; %lld text tokens per expert on top of the start's "
           "%lld\n", res.n_chunks, res.chunks_per_round, res.n_val_chunks, (long long)res.train_tokens,
           (long long)o.tune.start_tokens);
    printf("router labels (loss selector over the final experts):");
    for (int k = 0; k < o.n_experts; k++) printf(" e%d %d", k, res.counts[k]);
    printf("\nlearned router: agreement with the loss selector %.1f%% on %d training chunks", 100 * res.router.train_acc,
           res.router.n_train);
    if (res.router.n_heldout > 0) printf(", %.1f%% on %d held out", 100 * res.router.heldout_acc, res.router.n_heldout);
    printf("\n");
    printf("wrote %s/bank.json in %.1f s\n", o.out_dir, mend_now() - ps.t0);
    rc = 0;
out:
    for (int k = 0; k < n_texts; k++) free(texts[k]);
    free(start);
    if (teacher) mend_model_free(teacher);
    if (m) mend_model_free(m);
    return rc;
}
