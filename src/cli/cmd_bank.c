/* mend bank build|info: a bank of domain prompts for inference-time dynamic
 * prompting (docs/idp.md).
 *
 *   mend bank build MODEL --domain NAME=CORPUS [...] -o BANK_DIR [tune options]
 *     trains one prompt per domain (BANK_DIR/NAME, a PEFT adapter) and writes
 *     BANK_DIR/bank.json with the router centroids. Resumable: a domain whose
 *     adapter exists is skipped, a partial one resumes from its checkpoint.
 *   mend bank router BANK_DIR MODEL [--windows N --window-tokens T ...]
 *     trains the learned router of an existing bank (prompt/router.h) and
 *     adds it to BANK_DIR/bank.json; bank build does the same at its end.
 *   mend bank info BANK_DIR
 * build is mend_bank_build_run (src/jobs/bank_build.c) and router/calibrate
 * end in mend_bank_selectors_add; this file parses options and prints
 * their events.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mend.h"

static const char *CMD = "bank";

#define MAX_DOMAINS 64
static const char *const DEFAULT_DOMAINS[] = {"wiki", "news", "science", "fiction", "dialog", "lore"};

static void help(void) {
    printf("Usage: mend bank build [options] MODEL -o BANK_DIR [--domain NAME=CORPUS ...]\n"
           "       mend bank router [options] BANK_DIR MODEL\n"
           "       mend bank calibrate [--domain NAME=CORPUS ...] BANK_DIR MODEL\n"
           "       mend bank experts MODEL --init-adapter DIR -o BANK_DIR [options]  (mend bank experts --help)\n"
           "       mend bank info BANK_DIR\n\n"
           "calibrate measures each prompt's mean attention score over 16 windows of 128\n"
           "tokens per corpus (the attention-calibrated selector subtracts it); build does\n"
           "it at the end too.\n\n"
           "build trains one soft prompt per domain on the frozen MODEL (each a PEFT adapter\n"
           "in BANK_DIR/NAME) and writes BANK_DIR/bank.json with the router centroids (mean\n"
           "final hidden state of each domain's text). Rerunning skips finished prompts and\n"
           "resumes partial ones from their checkpoints.\n\n"
           "Options (build):\n"
           "      --domain NAME=FILE   a domain and its corpus (repeat); default: the six corpora\n"
           "                           wiki news science fiction dialog lore of $MEND_DATA/corpus\n"
           "                           or ../shared/data/corpus\n"
           "  -o, --out DIR            the bank directory\n"
           "      --steps N            optimizer steps per prompt (default 200)\n"
           "      --seqlen N           tokens per training sequence (default 256)\n"
           "      --batch N            sequences per step (default 1)\n"
           "      --lr X               peak learning rate (default 3e-3)\n"
           "      --n-virtual N        virtual tokens per prompt (default 20)\n"
           "      --distill TEACHER    train on KL(teacher || model + prompt), the teacher (e.g. the\n"
           "                           uncompressed model) without prompt; default: the source MODEL\n"
           "                           records (mend compress), found beside it or in $MEND_HOME/models\n"
           "      --no-distill         next-token cross-entropy instead\n"
           "      --init-adapter DIR   start every prompt from this trained prompt (a PEFT adapter\n"
           "                           with --n-virtual tokens) and specialize it on its domain\n"
           "      --seed N             seed (default 1234)\n"
           "      --eval-every N       validate every N steps (default 50)\n"
           "      --val-seqs N         validation sequences (default 8)\n"
           "      --select-layers A:B  attention selector layers stored in bank.json (default 0:3,\n"
           "                           or all layers of a shallower model)\n"
           "      --router-windows N   windows per domain for the centroids (default 16)\n"
           "      --router-window N    tokens per window (default 256)\n"
           "      --learned-windows N  windows per domain for the learned router (default 48)\n"
           "      --learned-window T   tokens per learned-router window (default 128)\n"
           "      --no-learned         no learned router (add one later with mend bank router)\n\n"
           "router trains the learned router of an existing bank: windows of T tokens at evenly\n"
           "spaced paragraph starts of each domain's corpus, each labelled with the prompt the\n"
           "loss selector picks for it, fit by logistic regression on the window's mean token\n"
           "embedding (every 5th window held out); the result goes into BANK_DIR/bank.json and\n"
           "--select learned uses it.\n\n"
           "Options (router):\n"
           "      --windows N          windows per domain (default 48)\n"
           "      --window-tokens T    tokens per window (default 128)\n"
           "      --domain NAME=FILE   a corpus (repeat); default: the corpora named in bank.json\n"
           "      --l2 X               weight decay (default 0.01)\n"
           "      --iters N            gradient steps (default 500)\n"
           "      --no-normalize       the mean embedding without L2 normalisation\n"
           "  -t, --threads N          threads (default: all cores)\n"
           "  -h, --help               this help\n");
}



/* --windows / --window-tokens style options: a whole number, >= 1 windows or >= 2 tokens */
static int parse_router_opt(const char *name, const char *arg, int *out) {
    long v;
    const long lo = strstr(name, "windows") ? 1 : 2;
    if (cli_parse_int(arg, lo, 1L << 16, &v))
        return cli_usage_error(CMD, "%s expects a whole number from %ld to 65536, got '%s'", name, lo, arg);
    *out = (int)v;
    return 0;
}

static void print_learned_router(const mend_bank_info *bi) {
    if (!bi->has_learned_router) {
        printf("learned:    none (mend bank router adds one)\n");
        return;
    }
    printf("learned:    mean_token_embedding%s, %d windows, agreement with the loss selector %.3f (train) "
           "%.3f (held out)\n", bi->learned_normalize ? " (L2-normalised)" : "", bi->learned_train_windows,
           bi->learned_train_acc, bi->learned_heldout_acc);
}

/* The selectors of the bank measured on the corpora (mend_bank_selectors_add),
 * its report printed; 0 or CLI_EXIT_ERROR. */
static int selectors_add(const char *bank_dir, const mend_model *m, const char *const *texts, const size_t *lens,
                         int n_texts, int calibrate, const mend_router_opts *o) {
    cli_events ev = {.cmd = CMD};
    if (!mend_bank_selectors_add(bank_dir, m, texts, lens, n_texts, calibrate, o, cli_event, &ev)) return 0;
    fflush(stdout);
    fprintf(stderr, "mend %s: %s\n", CMD, mend_last_error());
    return CLI_EXIT_ERROR;
}

static int cmd_bank_info(int argc, char **argv) {
    if (argc < 2) return cli_usage_error(CMD, "info needs BANK_DIR");
    if (argc > 2) return cli_usage_error(CMD, "unexpected argument '%s'", argv[2]);
    mend_bank *b = NULL;
    if (mend_bank_read(argv[1], &b)) return cli_fail(CMD, argv[1]);
    mend_bank_info bi;
    mend_bank_get_info(b, &bi);
    printf("bank:       %s\n", argv[1]);
    printf("base model: %s\n", bi.base_model ? bi.base_model : "(unknown)");
    char fd[64];
    printf("trained on: %s\n", bi.trained_on.has_model ? mend_fp_describe(&bi.trained_on, fd, sizeof fd)
                                                       : "no model fingerprint recorded (built before mend recorded them)");
    printf("prompts:    %d x %d virtual tokens x dim %d\n", bi.n_prompts, bi.nv, bi.dim);
    if (bi.has_attn_calibration)
        printf("attention calibration: %d windows, layers %d:%d\n", bi.attn_windows, bi.attn_layer0, bi.attn_layer1);
    else printf("attention calibration: none (mend bank calibrate BANK_DIR MODEL adds one)\n");
    printf("selector:   %s (attention layers %d:%d)\n", bi.default_selector, bi.layer0, bi.layer1);
    print_learned_router(&bi);
    printf("\n| # | name | domain | steps | best val loss | centroid | adapter |\n|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < bi.n_prompts; k++) {
        mend_bank_prompt_info p;
        mend_bank_get_prompt(b, k, &p);
        char *ad = mend_path_join(argv[1], p.adapter);
        const int ok = ad && mend_is_dir(ad);
        free(ad);
        printf("| %d | %s | %s | %d | %.4f | %s | %s%s |\n", k, p.name, p.domain, p.steps, p.best_val,
               p.centroid ? "yes" : "no", p.adapter, ok ? "" : " (missing)");
    }
    int rc = 0;
    if (mend_bank_load_prompts(b, bi.dim)) rc = cli_fail(CMD, "adapters");
    else printf("\nall %d adapters read\n", bi.n_prompts);
    mend_bank_free(b);
    return rc;
}

static int cmd_bank_build(int argc, char **argv) {
    enum { O_DOMAIN = 256, O_STEPS, O_SEQLEN, O_BATCH, O_LR, O_NV, O_SEED, O_EVAL, O_VALSEQS, O_LAYERS,
           O_RWIN, O_RTOK, O_DISTILL, O_INITAD, O_NODISTILL, O_LWIN, O_LTOK, O_NOLEARN };
    static const struct option longopts[] = {
        {"domain", required_argument, 0, O_DOMAIN}, {"out", required_argument, 0, 'o'},
        {"steps", required_argument, 0, O_STEPS},   {"seqlen", required_argument, 0, O_SEQLEN},
        {"batch", required_argument, 0, O_BATCH},   {"lr", required_argument, 0, O_LR},
        {"n-virtual", required_argument, 0, O_NV},  {"seed", required_argument, 0, O_SEED},
        {"eval-every", required_argument, 0, O_EVAL}, {"val-seqs", required_argument, 0, O_VALSEQS},
        {"select-layers", required_argument, 0, O_LAYERS}, {"router-windows", required_argument, 0, O_RWIN},
        {"router-window", required_argument, 0, O_RTOK}, {"distill", required_argument, 0, O_DISTILL},
        {"init-adapter", required_argument, 0, O_INITAD}, {"no-distill", no_argument, 0, O_NODISTILL}, {"threads", required_argument, 0, 't'},
        {"learned-windows", required_argument, 0, O_LWIN}, {"learned-window", required_argument, 0, O_LTOK},
        {"no-learned", no_argument, 0, O_NOLEARN},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    char *dom_name[MAX_DOMAINS] = {0}, *dom_file[MAX_DOMAINS] = {0};
    int n_dom = 0, l0 = 0, l1 = 3, layers_given = 0;
    const char *out_dir = NULL, *teacher_path = NULL, *init_adapter = NULL;
    int no_distill = 0;
    long steps = 200, seqlen = 256, batch = 1, nv = 20, eval_every = 50, val_seqs = 8, rwin = 16, rtok = 256;
    double lr = 3e-3;
    uint64_t seed = 1234;
    mend_router_opts ro;
    mend_router_opts_default(&ro);
    int learned = 1;
    int rc = CLI_EXIT_USAGE;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case O_DOMAIN: {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1]) {
                rc = cli_usage_error(CMD, "--domain expects NAME=CORPUS, got '%s'", optarg);
                goto out;
            }
            if (n_dom >= MAX_DOMAINS) {
                rc = cli_usage_error(CMD, "at most %d domains", MAX_DOMAINS);
                goto out;
            }
            dom_name[n_dom] = strndup(optarg, (size_t)(eq - optarg));
            dom_file[n_dom] = strdup(eq + 1);
            if (!mend_bank_name_ok(dom_name[n_dom])) {
                rc = cli_usage_error(CMD, "--domain name '%s' must be 1..64 characters of [A-Za-z0-9_.-]",
                                     dom_name[n_dom]);
                n_dom++;
                goto out;
            }
            n_dom++;
            break;
        }
        case 'o': out_dir = optarg; break;
        case O_STEPS:
            if (cli_parse_int(optarg, 1, 1L << 24, &steps)) {
                rc = cli_usage_error(CMD, "--steps expects a whole number >= 1, got '%s'", optarg);
                goto out;
            }
            break;
        case O_SEQLEN:
            if (cli_parse_int(optarg, 2, 1L << 16, &seqlen)) {
                rc = cli_usage_error(CMD, "--seqlen expects a whole number >= 2, got '%s'", optarg);
                goto out;
            }
            break;
        case O_BATCH:
            if (cli_parse_int(optarg, 1, 4096, &batch)) {
                rc = cli_usage_error(CMD, "--batch expects a whole number from 1 to 4096, got '%s'", optarg);
                goto out;
            }
            break;
        case O_LR:
            if (cli_parse_double(optarg, 1e-9, 10.0, &lr)) {
                rc = cli_usage_error(CMD, "--lr expects a number in (0, 10], got '%s'", optarg);
                goto out;
            }
            break;
        case O_NV:
            if (cli_parse_int(optarg, 1, 4096, &nv)) {
                rc = cli_usage_error(CMD, "--n-virtual expects a whole number from 1 to 4096, got '%s'", optarg);
                goto out;
            }
            break;
        case O_SEED:
            if (cli_parse_u64(optarg, &seed)) {
                rc = cli_usage_error(CMD, "--seed expects a non-negative whole number, got '%s'", optarg);
                goto out;
            }
            break;
        case O_EVAL:
            if (cli_parse_int(optarg, 0, 1L << 24, &eval_every)) {
                rc = cli_usage_error(CMD, "--eval-every expects a whole number >= 0, got '%s'", optarg);
                goto out;
            }
            break;
        case O_VALSEQS:
            if (cli_parse_int(optarg, 0, 1L << 20, &val_seqs)) {
                rc = cli_usage_error(CMD, "--val-seqs expects a whole number >= 0, got '%s'", optarg);
                goto out;
            }
            break;
        case O_LAYERS:
            if (mend_select_parse_layers(optarg, &l0, &l1)) {
                rc = cli_usage_error(CMD, "--select-layers: %s", mend_last_error());
                goto out;
            }
            layers_given = 1;
            break;
        case O_RWIN:
            if (cli_parse_int(optarg, 1, 100000, &rwin)) {
                rc = cli_usage_error(CMD, "--router-windows expects a whole number >= 1, got '%s'", optarg);
                goto out;
            }
            break;
        case O_RTOK:
            if (cli_parse_int(optarg, 2, 1L << 16, &rtok)) {
                rc = cli_usage_error(CMD, "--router-window expects a whole number >= 2, got '%s'", optarg);
                goto out;
            }
            break;
        case O_LWIN:
        case O_LTOK:
            if (parse_router_opt(c == O_LWIN ? "--learned-windows" : "--learned-window", optarg,
                                 c == O_LWIN ? &ro.n_windows : &ro.window)) goto out;
            break;
        case O_NOLEARN: learned = 0; break;
        case O_DISTILL: teacher_path = optarg; break;
        case O_INITAD: init_adapter = optarg; break;
        case O_NODISTILL: no_distill = 1; break;
        case 't':
            if (cli_set_threads(CMD, optarg)) goto out;
            break;
        case 'h': help(); rc = 0; goto out;
        default: rc = cli_getopt_error(CMD, argv, c); goto out;
        }
    }
    if (optind >= argc) {
        rc = cli_usage_error(CMD, "build: missing MODEL");
        goto out;
    }
    if (optind + 1 < argc) {
        rc = cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
        goto out;
    }
    if (!out_dir) {
        rc = cli_usage_error(CMD, "build: missing -o BANK_DIR");
        goto out;
    }
    for (int a = 0; a < n_dom; a++)
        for (int b2 = 0; b2 < a; b2++)
            if (!strcmp(dom_name[a], dom_name[b2])) {
                rc = cli_usage_error(CMD, "domain '%s' given twice", dom_name[a]);
                goto out;
            }
    if (n_dom == 0) {
        char dir[PATH_MAX];
        if (cli_find_data("corpus", dir, sizeof dir)) {
            fprintf(stderr, "mend bank: no --domain given and no corpus directory found: set MEND_DATA to the data "
                            "directory (with corpus/) or pass --domain NAME=FILE\n");
            rc = CLI_EXIT_ERROR;
            goto out;
        }
        for (size_t i = 0; i < sizeof DEFAULT_DOMAINS / sizeof *DEFAULT_DOMAINS; i++) {
            char f[PATH_MAX + 32];
            snprintf(f, sizeof f, "%s/%s.txt", dir, DEFAULT_DOMAINS[i]);
            dom_name[n_dom] = strdup(DEFAULT_DOMAINS[i]);
            dom_file[n_dom] = strdup(f);
            n_dom++;
        }
    }
    if (teacher_path && no_distill) {
        rc = cli_usage_error(CMD, "give --distill or --no-distill, not both");
        goto out;
    }
    mend_bank_job j;
    mend_bank_job_init(&j);
    j.model = argv[optind];
    j.names = (const char *const *)dom_name;
    j.corpora = (const char *const *)dom_file;
    j.n_domains = n_dom;
    j.out = out_dir;
    j.teacher = teacher_path;
    j.no_distill = no_distill;
    char models_dir[4096];
    j.models_dir = cli_models_dir(models_dir, sizeof models_dir);
    j.init_adapter = init_adapter;
    j.steps = (int)steps;
    j.seqlen = (int)seqlen;
    j.batch = (int)batch;
    j.n_virtual = (int)nv;
    j.eval_every = (int)eval_every;
    j.val_seqs = (int)val_seqs;
    j.lr = lr;
    j.seed = seed;
    j.layer0 = l0;
    j.layer1 = layers_given ? l1 : -1;
    j.router_windows = (int)rwin;
    j.router_window = (int)rtok;
    j.learned = learned;
    j.learned_windows = ro.n_windows;
    j.learned_window = ro.window;
    cli_events ev = {.cmd = CMD};
    rc = cli_job_status(CMD, mend_bank_build_run(&j, cli_event, &ev));
out:
    for (int k = 0; k < n_dom; k++) {
        free(dom_name[k]);
        free(dom_file[k]);
    }
    return rc;
}

/* mend bank router (calibrate_only 0) and mend bank calibrate (1): the same
 * bank, model and corpora; router fits the learned router, calibrate
 * measures the attention calibration */
static int cmd_bank_router(int argc, char **argv, int calibrate_only) {
    enum { O_WIN = 256, O_TOK, O_DOMAIN, O_L2, O_ITERS, O_NONORM };
    static const struct option longopts[] = {
        {"windows", required_argument, 0, O_WIN}, {"window-tokens", required_argument, 0, O_TOK},
        {"domain", required_argument, 0, O_DOMAIN}, {"l2", required_argument, 0, O_L2},
        {"iters", required_argument, 0, O_ITERS}, {"no-normalize", no_argument, 0, O_NONORM},
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    mend_router_opts ro;
    mend_router_opts_default(&ro);
    const char *dom_file[MAX_DOMAINS];
    int n_dom = 0, rc = CLI_EXIT_USAGE, c;
    long iters;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:h", longopts, NULL)) != -1) {
        switch (c) {
        case O_WIN:
        case O_TOK:
            if (parse_router_opt(c == O_WIN ? "--windows" : "--window-tokens", optarg,
                                 c == O_WIN ? &ro.n_windows : &ro.window)) return CLI_EXIT_USAGE;
            break;
        case O_DOMAIN: {
            const char *eq = strchr(optarg, '=');
            if (n_dom >= MAX_DOMAINS) return cli_usage_error(CMD, "at most %d domains", MAX_DOMAINS);
            dom_file[n_dom++] = eq && eq[1] ? eq + 1 : optarg;
            break;
        }
        case O_L2:
            if (cli_parse_double(optarg, 0.0, 1e6, &ro.l2))
                return cli_usage_error(CMD, "--l2 expects a number >= 0, got '%s'", optarg);
            break;
        case O_ITERS:
            if (cli_parse_int(optarg, 0, 1L << 20, &iters))
                return cli_usage_error(CMD, "--iters expects a whole number >= 0, got '%s'", optarg);
            ro.iters = (int)iters;
            break;
        case O_NONORM: ro.normalize = 0; break;
        case 't':
            if (cli_set_threads(CMD, optarg)) return CLI_EXIT_USAGE;
            break;
        case 'h': help(); return 0;
        default: return cli_getopt_error(CMD, argv, c);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error(CMD, "%s needs BANK_DIR and MODEL", calibrate_only ? "calibrate" : "router");
    const char *bank_dir = argv[optind], *model_path = argv[optind + 1];
    mend_bank *b = NULL;
    if (mend_bank_read(bank_dir, &b)) return cli_fail(CMD, bank_dir);
    mend_bank_info bi;
    mend_bank_get_info(b, &bi);
    if (n_dom == 0)
        for (int k = 0; k < bi.n_prompts; k++) {
            mend_bank_prompt_info p;
            mend_bank_get_prompt(b, k, &p);
            if (!p.corpus) {
                fprintf(stderr, "mend bank: %s/%s names no corpus for prompt '%s': pass --domain NAME=FILE\n",
                        bank_dir, MEND_BANK_FILE, p.name);
                mend_bank_free(b);
                return CLI_EXIT_ERROR;
            }
            dom_file[n_dom++] = p.corpus;
        }
    char *texts[MAX_DOMAINS] = {0};
    size_t lens[MAX_DOMAINS] = {0};
    mend_model *m = NULL;
    rc = CLI_EXIT_ERROR;
    for (int k = 0; k < n_dom; k++)
        if (mend_read_file(dom_file[k], (size_t)1 << 31, &texts[k], &lens[k])) {
            rc = cli_fail(CMD, dom_file[k]);
            goto done;
        }
    mend_load_opts lo = {.keep_packed = 0};   /* as mend eval scores: the loss labels come from this model */
    if (mend_model_load(&m, model_path, &lo)) {
        rc = cli_fail(CMD, model_path);
        goto done;
    }
    printf("bank:   %s, %d prompts; %d corpora x %d windows of %d tokens\n", bank_dir, bi.n_prompts, n_dom,
           calibrate_only ? 16 : ro.n_windows, calibrate_only ? 128 : ro.window);
    fflush(stdout);
    rc = selectors_add(bank_dir, m, (const char *const *)texts, lens, n_dom, calibrate_only,
                       calibrate_only ? NULL : &ro);
done:
    for (int k = 0; k < n_dom; k++) free(texts[k]);
    if (m) mend_model_free(m);
    mend_bank_free(b);
    return rc;
}

int cmd_bank(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        help();
        return argc < 2 ? CLI_EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "build")) return cmd_bank_build(argc - 1, argv + 1);
    if (!strcmp(argv[1], "info")) return cmd_bank_info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "router")) return cmd_bank_router(argc - 1, argv + 1, 0);
    if (!strcmp(argv[1], "calibrate")) return cmd_bank_router(argc - 1, argv + 1, 1);
    if (!strcmp(argv[1], "experts")) return cmd_bank_experts(argc - 1, argv + 1);
    return cli_usage_error(CMD, "unknown subcommand '%s' (build, experts, router, calibrate or info)", argv[1]);
}
