/* mend compress MODEL -o OUT.gguf: quantize the linear layers of a GGUF
 * model with RTN or GPTQ (docs/compress.md), through mend_compress_job_run.
 * Progress with an ETA on stderr; a summary on stdout. GPTQ checkpoints
 * after every layer to OUT.gguf.ckpt and resumes from it automatically. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mend.h"

static const char *CMD = "compress";

#define MAX_CALIB 64

static void help(void) {
    printf("Usage: mend compress [options] MODEL -o OUT.gguf\n\n"
           "Quantize every linear layer (attention q/k/v/o, FFN gate/up/down) of a GGUF model.\n\n"
           "Target (one of):\n"
           "      --type T             a ggml type, llama.cpp-loadable: q8_0 q5_0 q5_1 q4_0 q4_1\n"
           "                           q6_k q5_k q4_k q3_k q2_k (K types need rows that are\n"
           "                           multiples of 256; other rows use llama.cpp's fallback:\n"
           "                           q6_k->q8_0 q5_k->q5_1 q4_k->q5_0 q3_k/q2_k->q4_0),\n"
           "                           or f32 / f16 (conversion, --method rtn)\n"
           "      --bits B             mend's generic grid, mend-only: 2, 3, 4 or 8 bits\n"
           "      --group G            with --bits: 32, 64, 128 or -1 (one group per row); default 128\n"
           "      --sym | --asym       with --bits: symmetric or asymmetric grid (default asym)\n"
           "Method:\n"
           "      --method M           gptq (default) or rtn (round to nearest, no calibration)\n"
           "      --act-order          GPTQ: columns by descending Hessian diagonal, static grids\n"
           "                           (default without --prune; SmolLM2's outlier features need it)\n"
           "      --no-act-order       GPTQ: columns in order, each block's grid fitted when reached\n"
           "                           (default with --prune, which keeps the columns in order)\n"
           "      --damp F             GPTQ: dampening, fraction of mean diag(H) (default 0.01)\n"
           "      --block N            GPTQ: lazy-batch width (default 128)\n"
           "      --fit-importance     GPTQ: fit block scales with diag(H) as importance (default\n"
           "                           for ggml types)\n"
           "      --no-fit-importance  GPTQ: ggml's plain block fits (the default for --bits)\n"
           "      --sink-weight N      the first token of each calibration window counts N times in\n"
           "                           the Hessians (it is the model's attention sink; default:\n"
           "                           seqlen / 32, at least 1; 1 counts it once)\n"
           "Pruning (docs/prune.md):\n"
           "      --prune M            magnitude, wanda or sparsegpt, before quantization (with\n"
           "                           --method gptq: GPTQ keeps the zeros); wanda and sparsegpt\n"
           "                           calibrate even with --method rtn; --type f16 stores pruned\n"
           "                           weights without quantizing\n"
           "      --sparsity S         fraction pruned (0.5, 50%%) or N:M (2:4 keeps 2 of every 4\n"
           "                           inputs of a row); default 50%%\n"
           "      --joint              with --prune sparsegpt --method gptq: prune and quantize in\n"
           "                           one pass (SparseGPT's joint mode)\n"
           "Calibration (GPTQ, wanda, sparsegpt):\n"
           "      --calib FILE         text file (repeatable); default: the six corpus files of\n"
           "                           $MEND_DATA/corpus or ../shared/data/corpus (never evaluation text)\n"
           "      --nsamples N         windows (default 128)\n"
           "      --seqlen N           tokens per window (default 2048)\n"
           "      --seed N             window sampling seed (default 0)\n"
           "      --save-calib FILE    also write the windows' text (e.g. for llama-imatrix)\n"
           "Other tensors:\n"
           "      --embd-type T        token_embd / output head: 'keep' the source type (default)\n"
           "                           or a ggml type (RTN); norms always stay f32\n"
           "Checkpoints:\n"
           "      --checkpoint FILE    checkpoint path (default OUT.gguf.ckpt); a matching\n"
           "                           checkpoint is resumed automatically\n"
           "      --resume             require a checkpoint to resume from\n"
           "      --restart            delete an existing checkpoint first\n"
           "      --no-checkpoint      do not write checkpoints\n"
           "      --stop-after N       stop once N layers are finished (checkpoint kept)\n"
           "  -o, --output FILE        the output GGUF\n"
           "  -t, --threads N          threads (default: all cores)\n"
           "  -h, --help               this help\n");
}


int cmd_compress(int argc, char **argv) {
    enum {
        O_METHOD = 256, O_TYPE, O_BITS, O_GROUP, O_SYM, O_ASYM, O_ACT, O_DAMP, O_BLOCK, O_FITIMP, O_CALIB,
        O_NSAMPLES, O_SEQLEN, O_SEED, O_SAVECALIB, O_EMBD, O_CKPT, O_RESUME, O_RESTART, O_NOCKPT, O_STOP,
        O_PRUNE, O_SPARSITY, O_JOINT, O_NOACT, O_SINK, O_NOFITIMP
    };
    static const struct option longopts[] = {
        {"method", required_argument, 0, O_METHOD},   {"type", required_argument, 0, O_TYPE},
        {"bits", required_argument, 0, O_BITS},       {"group", required_argument, 0, O_GROUP},
        {"sym", no_argument, 0, O_SYM},               {"asym", no_argument, 0, O_ASYM},
        {"act-order", no_argument, 0, O_ACT},         {"no-act-order", no_argument, 0, O_NOACT},         {"damp", required_argument, 0, O_DAMP},
        {"block", required_argument, 0, O_BLOCK},     {"fit-importance", no_argument, 0, O_FITIMP},
        {"calib", required_argument, 0, O_CALIB},     {"nsamples", required_argument, 0, O_NSAMPLES},
        {"seqlen", required_argument, 0, O_SEQLEN},   {"seed", required_argument, 0, O_SEED},
        {"save-calib", required_argument, 0, O_SAVECALIB}, {"embd-type", required_argument, 0, O_EMBD},
        {"checkpoint", required_argument, 0, O_CKPT}, {"resume", no_argument, 0, O_RESUME},
        {"restart", no_argument, 0, O_RESTART},       {"no-checkpoint", no_argument, 0, O_NOCKPT},
        {"stop-after", required_argument, 0, O_STOP}, {"output", required_argument, 0, 'o'},
        {"threads", required_argument, 0, 't'},       {"help", no_argument, 0, 'h'},
        {"prune", required_argument, 0, O_PRUNE},     {"sparsity", required_argument, 0, O_SPARSITY},
        {"joint", no_argument, 0, O_JOINT},           {"sink-weight", required_argument, 0, O_SINK},
        {"no-fit-importance", no_argument, 0, O_NOFITIMP},
        {0, 0, 0, 0}};
    mend_prune_opts po = {MEND_PRUNE_NONE, mend_sparsity_unstructured(0.5), 0};
    const char *out_path = NULL, *type_name = NULL, *save_calib = NULL, *ckpt_arg = NULL;
    const char *calib[MAX_CALIB];
    int n_calib = 0, method = MEND_COMPRESS_GPTQ, sym = 0, sym_set = 0, resume = 0, restart = 0, no_ckpt = 0;
    long bits = 0, group = 128, nsamples = 128, seqlen = 2048, block = 0, stop_after = 0;
    int group_set = 0, fit_imp = -1;
    double damp = 0.01;
    uint64_t seed = 0;
    mend_compress_job j;
    mend_compress_job_init(&j);
    int act_order = -1;   /* -1: on, off when pruning (GPTQ keeps the pruned columns in order) */
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":o:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case O_METHOD:
            if (!strcmp(optarg, "gptq")) method = MEND_COMPRESS_GPTQ;
            else if (!strcmp(optarg, "rtn")) method = MEND_COMPRESS_RTN;
            else return cli_usage_error(CMD, "--method expects gptq or rtn, got '%s'", optarg);
            break;
        case O_TYPE: type_name = optarg; break;
        case O_BITS:
            if (cli_parse_int(optarg, 2, 8, &bits) || (bits != 2 && bits != 3 && bits != 4 && bits != 8))
                return cli_usage_error(CMD, "--bits expects 2, 3, 4 or 8, got '%s'", optarg);
            break;
        case O_GROUP:
            if (cli_parse_int(optarg, -1, 1 << 20, &group) || (group != -1 && group != 32 && group != 64 && group != 128))
                return cli_usage_error(CMD, "--group expects 32, 64, 128 or -1, got '%s'", optarg);
            group_set = 1;
            break;
        case O_SYM: sym = 1, sym_set = 1; break;
        case O_ASYM: sym = 0, sym_set = 1; break;
        case O_ACT: act_order = 1; break;
        case O_NOACT: act_order = 0; break;
        case O_DAMP:
            if (cli_parse_double(optarg, 1e-8, 10.0, &damp))
                return cli_usage_error(CMD, "--damp expects a number in (0, 10], got '%s'", optarg);
            break;
        case O_BLOCK:
            if (cli_parse_int(optarg, 1, 1 << 16, &block))
                return cli_usage_error(CMD, "--block expects a whole number >= 1, got '%s'", optarg);
            break;
        case O_FITIMP: fit_imp = 1; break;
        case O_NOFITIMP: fit_imp = 0; break;
        case O_SINK: {
            long sw;
            if (cli_parse_int(optarg, 1, 1 << 20, &sw))
                return cli_usage_error(CMD, "--sink-weight expects a whole number >= 1, got '%s'", optarg);
            j.opts.sink_weight = (int)sw;
            break;
        }
        case O_CALIB:
            if (n_calib >= MAX_CALIB) return cli_usage_error(CMD, "at most %d --calib files", MAX_CALIB);
            calib[n_calib++] = optarg;
            break;
        case O_NSAMPLES:
            if (cli_parse_int(optarg, 1, 1 << 20, &nsamples))
                return cli_usage_error(CMD, "--nsamples expects a whole number >= 1, got '%s'", optarg);
            break;
        case O_SEQLEN:
            if (cli_parse_int(optarg, 2, 1 << 20, &seqlen))
                return cli_usage_error(CMD, "--seqlen expects a whole number >= 2, got '%s'", optarg);
            break;
        case O_SEED:
            if (cli_parse_u64(optarg, &seed)) return cli_usage_error(CMD, "--seed expects a whole number, got '%s'", optarg);
            break;
        case O_SAVECALIB: save_calib = optarg; break;
        case O_EMBD:
            if (!strcmp(optarg, "keep")) j.opts.embd_type = MEND_EMBD_KEEP;
            else {
                int t = mend_type_from_name(optarg);
                mend_qfmt f;
                if (t < 0 || mend_qfmt_parse(&f, optarg) || f.type == MEND_QFMT_GENERIC)
                    return cli_usage_error(CMD, "--embd-type expects keep or a ggml type (f32, f16, q8_0, ...), got '%s'",
                                           optarg);
                j.opts.embd_type = t;
            }
            break;
        case O_CKPT: ckpt_arg = optarg; break;
        case O_RESUME: resume = 1; break;
        case O_RESTART: restart = 1; break;
        case O_NOCKPT: no_ckpt = 1; break;
        case O_STOP:
            if (cli_parse_int(optarg, 1, 1 << 20, &stop_after))
                return cli_usage_error(CMD, "--stop-after expects a whole number >= 1, got '%s'", optarg);
            break;
        case O_PRUNE:
            if (mend_prune_method_parse(optarg, &po.method))
                return cli_usage_error(CMD, "--prune expects magnitude, wanda, sparsegpt or none, got '%s'", optarg);
            break;
        case O_SPARSITY:
            if (mend_sparsity_parse(&po.sp, optarg)) return cli_usage_error(CMD, "--sparsity: %s", mend_last_error());
            break;
        case O_JOINT: po.joint = 1; break;
        case 'o': out_path = optarg; break;
        case 't':
            if (cli_set_threads(CMD, optarg)) return CLI_EXIT_USAGE;
            break;
        case 'h': help(); return 0;
        default: return cli_getopt_error(CMD, argv, c);
        }
    }
    if (optind >= argc) return cli_usage_error(CMD, "missing MODEL");
    if (optind + 1 < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
    if (!out_path) return cli_usage_error(CMD, "missing -o OUT.gguf");
    if (!type_name == !bits) return cli_usage_error(CMD, "give exactly one of --type and --bits");
    if (type_name && (group_set || sym_set)) return cli_usage_error(CMD, "--group and --sym/--asym go with --bits");
    if (resume && restart) return cli_usage_error(CMD, "--resume and --restart exclude each other");
    if (resume && no_ckpt) return cli_usage_error(CMD, "--resume needs checkpoints");
    if (type_name) {
        if (mend_qfmt_parse(&j.opts.fmt, type_name) || j.opts.fmt.type == MEND_QFMT_GENERIC)
            return cli_usage_error(CMD, "--type expects a ggml type (q8_0 q5_0 q5_1 q4_0 q4_1 q6_k q5_k q4_k q3_k "
                                   "q2_k f32 f16), got '%s'", type_name);
    } else {
        j.opts.fmt = mend_qfmt_generic((int)bits, (int)group, sym);
    }
    if (mend_type_is_float(j.opts.fmt.type)) method = MEND_COMPRESS_RTN;
    j.opts.method = method;
    j.opts.damp = damp;
    j.opts.block = (int)block;
    j.opts.fit_importance = fit_imp;   /* -1: the library's default (on for ggml types) */
    if (po.joint && (po.method != MEND_PRUNE_SPARSEGPT || method != MEND_COMPRESS_GPTQ))
        return cli_usage_error(CMD, "--joint goes with --prune sparsegpt and --method gptq");
    j.opts.act_order = act_order;      /* -1: on, off when pruning */
    if (po.method != MEND_PRUNE_NONE) {
        if (act_order == 1 && method == MEND_COMPRESS_GPTQ)
            return cli_usage_error(CMD, "--act-order is not supported together with --prune");
        j.opts.prune = &po;
    }
    j.model = argv[optind];
    j.out = out_path;
    j.calib = calib;
    j.n_calib = n_calib;
    j.nsamples = (int)nsamples;
    j.seqlen = (int)seqlen;
    j.seed = seed;
    j.save_calib = save_calib;
    j.checkpoint = ckpt_arg;
    j.no_checkpoint = no_ckpt;
    j.resume = resume;
    j.restart = restart;
    j.stop_after = (int)stop_after;
    char corpus_dir[PATH_MAX];
    if (!n_calib && (method == MEND_COMPRESS_GPTQ || mend_prune_needs_calib(&po))) {
        if (cli_find_data("corpus", corpus_dir, sizeof corpus_dir)) {
            fprintf(stderr, "mend compress: no calibration text: set MEND_DATA to the data directory (with "
                            "corpus/*.txt) or pass --calib FILE\n");
            return CLI_EXIT_ERROR;
        }
        j.corpus_dir = corpus_dir;
    }
    cli_events ev = {.cmd = CMD};
    return cli_job_status(CMD, mend_compress_job_run(&j, NULL, cli_event, &ev));
}
