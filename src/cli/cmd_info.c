/* mend info MODEL: what a checkpoint is: config, tokenizer, tensor types,
 * metadata, sparsity and non-finite weights, all through the public API
 * (mend.h, mend/inspect.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "mend.h"

static const char *CMD = "info";

static void help(void) {
    printf("Usage: mend info [options] MODEL\n\n"
           "Describe a model (GGUF file or Hugging Face directory): architecture,\n"
           "configuration, parameter count, tensor types, file size, tokenizer.\n\n"
           "Options:\n"
           "  -t, --threads N   threads (default: all cores)\n"
           "      --sparsity    exact zeros of every tensor after dequantization, per\n"
           "                    matrix and overall (pruned models)\n"
           "      --check       dequantize every weight and report NaN / Inf values per\n"
           "                    tensor (exit code 1 when there are any)\n"
           "      --isa         list the instruction sets this CPU can run the kernels on,\n"
           "                    narrowest first (no MODEL; MEND_ISA=NAME selects one)\n"
           "  -h, --help        this help\n");
}

static void print_token(const mend_tokenizer *tok, const char *label, int32_t id) {
    printf("  %-18s ", label);
    if (id < 0) {
        printf("none\n");
        return;
    }
    char buf[128];
    int n = mend_token_piece(tok, id, buf, sizeof buf - 1);
    if (n < 0) n = 0;
    if (n > (int)sizeof buf - 1) n = (int)sizeof buf - 1;
    buf[n] = 0;
    printf("%d", id);
    if (n) {
        printf(" '");
        for (int i = 0; i < n; i++) {
            unsigned char c = (unsigned char)buf[i];
            if (c == '\n') printf("\\n");
            else if (c < 0x20) printf("\\x%02x", c);
            else putchar(c);
        }
        printf("'");
    }
    printf("\n");
}

/* --sparsity: exact zeros per tensor after dequantization; totals over the
 * linear layers (blk.N.*.weight matrices) and over every tensor */
static int print_sparsity(const mend_model *m, uint64_t n_tensors) {
    int64_t lz = 0, ln = 0, az = 0, an = 0;
    printf("sparsity (exact zeros after dequantization):\n");
    for (uint64_t i = 0; i < n_tensors; i++) {
        mend_tensor_info t;
        if (mend_model_tensor(m, i, &t)) return cli_fail(CMD, "tensor");
        int64_t z = 0, n = 0;
        const char *tn = mend_type_name(t.type);
        if (mend_model_tensor_zeros(m, i, &z, &n)) {
            printf("  %-28s %-6s  (%s)\n", t.name, tn ? tn : "?", mend_last_error());
            continue;
        }
        az += z;
        an += n;
        const int linear = t.n_dims == 2 && !strncmp(t.name, "blk.", 4);
        if (linear) lz += z, ln += n;
        if (t.n_dims < 2) continue;   /* norms: only in the total */
        printf("  %-28s %-6s %10lld / %10lld  %6.2f%%\n", t.name, tn ? tn : "?", (long long)z, (long long)n,
               n ? 100.0 * z / n : 0.0);
    }
    printf("  %-35s %10lld / %10lld  %6.2f%%\n", "linear layers", (long long)lz, (long long)ln, ln ? 100.0 * lz / ln : 0.0);
    printf("  %-35s %10lld / %10lld  %6.2f%%\n", "all tensors", (long long)az, (long long)an, an ? 100.0 * az / an : 0.0);
    return 0;
}

/* --check: one tensor with non-finite values. */
static void print_nonfinite(void *user, const mend_nonfinite *t) {
    char name[64];
    if (t->layer >= 0) snprintf(name, sizeof name, "layer %d %s", t->layer, t->what);
    else snprintf(name, sizeof name, "%s", t->what);
    printf("  %-28s %lld NaN, %lld Inf (first at element %lld of %lld)\n", name, (long long)t->nan,
           (long long)t->inf, (long long)t->first, (long long)t->n_elems);
}

/* Load path again with every matrix dequantized to f32 and scan it all. */
static int check_weights(const char *path, int *bad_out) {
    mend_load_opts lo = {.keep_packed = 0};
    mend_model *m = NULL;
    if (mend_model_load(&m, path, &lo)) return cli_fail(CMD, path);
    int64_t bad = 0, n = 0, tensors_bad = 0;
    printf("check (NaN / Inf after dequantization):\n");
    int rc = mend_model_check_finite(m, print_nonfinite, NULL, &bad, &tensors_bad, &n);
    mend_model_free(m);
    if (rc) return cli_fail(CMD, path);
    if (bad)
        printf("  %-28s %lld non-finite values in %lld tensors (of %lld weights)\n", "FAILED", (long long)bad,
               (long long)tensors_bad, (long long)n);
    else
        printf("  %-28s all %lld weights are finite\n", "ok", (long long)n);
    *bad_out = bad != 0;
    return 0;
}

static int64_t meta_int(const mend_model *m, const char *key, int64_t dflt) {
    int64_t v = dflt;
    if (mend_model_meta_int(m, key, &v)) v = dflt;
    return v;
}

/* Count, weights and bytes of the tensors of each ggml type. */
static void print_type_histogram(const mend_model *m, uint64_t n_tensors) {
    enum { NT = 64 };
    int64_t cnt[NT] = {0}, elems[NT] = {0};
    size_t bytes[NT] = {0};
    char b1[64];
    for (uint64_t i = 0; i < n_tensors; i++) {
        mend_tensor_info t;
        if (mend_model_tensor(m, i, &t)) continue;
        uint32_t ty = t.type < NT ? t.type : NT - 1;
        cnt[ty]++;
        elems[ty] += t.n_elems;
        bytes[ty] += t.n_bytes;
    }
    printf("tensor types:\n");
    for (int ty = 0; ty < NT; ty++) {
        if (!cnt[ty]) continue;
        const char *tn = mend_type_name((uint32_t)ty);
        printf("  %-18s %4lld tensors  %12lld params  %s\n", tn ? tn : "unknown", (long long)cnt[ty],
               (long long)elems[ty], mend_fmt_bytes((double)bytes[ty], b1, sizeof b1));
    }
    int64_t ft = meta_int(m, "general.file_type", -1);
    if (ft >= 0) printf("  %-18s %lld\n", "general.file_type", (long long)ft);
}

/* --isa: the instruction sets this CPU can run the kernels on, narrowest
 * first, one per line (the last is the default; MEND_ISA picks another) */
static int print_isa_levels(void) {
#if defined(__aarch64__)
    static const char *const levels[] = {"scalar", "neon"};
#else
    static const char *const levels[] = {"scalar", "avx2", "avx512"};
#endif
    const char *top = mend_isa_detected();
    for (size_t i = 0; i < sizeof levels / sizeof *levels; i++) {
        printf("%s\n", levels[i]);
        if (!strcmp(levels[i], top)) break;
    }
    return 0;
}

int cmd_info(int argc, char **argv) {
    static const struct option longopts[] = {
        {"threads", required_argument, 0, 't'}, {"help", no_argument, 0, 'h'},
        {"sparsity", no_argument, 0, 'S'}, {"check", no_argument, 0, 'C'}, {"isa", no_argument, 0, 'I'},
        {0, 0, 0, 0}};
    int sparsity = 0, check = 0;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (cli_set_threads(CMD, optarg)) return CLI_EXIT_USAGE;
            break;
        case 'h': help(); return 0;
        case 'S': sparsity = 1; break;
        case 'C': check = 1; break;
        case 'I': return print_isa_levels();
        default: return cli_getopt_error(CMD, argv, c);
        }
    }
    if (optind >= argc) return cli_usage_error(CMD, "missing MODEL");
    if (optind + 1 < argc) return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind + 1]);
    const char *path = argv[optind];

    mend_load_opts lo = {.keep_packed = 1};
    mend_model *m = NULL;
    if (mend_model_load(&m, path, &lo)) return cli_fail(CMD, path);
    mend_model_info in;
    mend_model_get_info(m, &in);
    mend_file_info fi;
    mend_model_file_info(m, &fi);
    const int g = fi.is_gguf;
    char b1[64];

    printf("model: %s\n", path);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        printf("  %-18s %lld bytes (%s)\n", "file size", (long long)st.st_size,
               mend_fmt_bytes((double)st.st_size, b1, sizeof b1));
    if (g) {
        printf("  %-18s GGUF v%u, %llu tensors, %llu metadata keys\n", "format", fi.version,
               (unsigned long long)fi.n_tensors, (unsigned long long)fi.n_kv);
        const char *name = mend_model_meta_str(m, "general.name");
        if (name) printf("  %-18s %s\n", "name", name);
    } else {
        printf("  %-18s Hugging Face directory\n", "format");
    }
    mend_fp fp;
    if (mend_model_fingerprint(m, &fp)) {
        mend_model_free(m);
        return cli_fail(CMD, path);
    }
    char hx[17];
    mend_fp_hex(fp.model, hx);
    printf("  %-18s %s\n", "fingerprint", hx);
    if (fp.has_source) {
        const char *src = mend_model_meta_str(m, "mend.compress.source");
        mend_fp_hex(fp.source, hx);
        printf("  %-18s %s%s%s%s\n", "source", hx, src ? " (" : "", src ? src : "", src ? ")" : "");
    }
    if (fp.has_recipe) {
        mend_fp_hex(fp.recipe, hx);
        printf("  %-18s %s\n", "recipe", hx);
    }
    printf("architecture: %s\n", in.arch);
    char features[512];
    mend_describe_features(m, features, sizeof features);
    printf("  %-18s %s\n", "features", features);
    printf("  %-18s %d\n", "n_vocab", in.n_vocab);
    printf("  %-18s %d\n", "dim", in.dim);
    printf("  %-18s %d\n", "n_layers", in.n_layers);
    printf("  %-18s %d\n", "n_heads", in.n_heads);
    printf("  %-18s %d\n", "n_kv_heads", in.n_kv_heads);
    printf("  %-18s %d\n", "head_dim", in.head_dim);
    printf("  %-18s %d\n", "hidden_dim", in.hidden_dim);
    printf("  %-18s %d\n", "ctx_len", in.ctx_len);
    if (in.rope_theta > 0) {
        printf("  %-18s %g\n", "rope_theta", in.rope_theta);
        printf("  %-18s %s\n", "rope_type", fi.rope_neox ? "neox (halves)" : "norm (pairs)");
    } else {
        printf("  %-18s %s\n", "rope_type", "none (learned positions)");
    }
    printf("  %-18s %g\n", "norm_eps", in.norm_eps);
    printf("  %-18s %s\n", "tied_embeddings", in.tied_embeddings ? "yes" : "no");
    printf("  %-18s %lld (%.2f M)\n", "parameters", (long long)in.n_params, in.n_params / 1e6);
    if (in.repacked_bytes)   /* made at load on CPUs with AVX2 or NEON (mend_load_opts.no_repack) */
        printf("  %-18s %s (q4_0 / q4_1 / q5_0 / q2_K / q3_K / q4_K / q6_K layer matrices interleaved for batched "
               "products)\n", "repacked",
               mend_fmt_bytes((double)in.repacked_bytes, b1, sizeof b1));
    printf("isa: %s\n", mend_isa_describe());

    if (g) print_type_histogram(m, fi.n_tensors);

    if (sparsity) {
        if (!g) printf("sparsity: only for GGUF files\n");
        else if (print_sparsity(m, fi.n_tensors)) {
            mend_model_free(m);
            return CLI_EXIT_ERROR;
        }
    }

    const mend_tokenizer *tok = mend_model_tokenizer(m);
    printf("tokenizer:\n");
    const char *kind = mend_model_meta_str(m, "tokenizer.ggml.model");
    const char *pre = mend_model_meta_str(m, "tokenizer.ggml.pre");
    printf("  %-18s %s\n", "kind", kind ? kind : "(from tokenizer.json)");
    if (pre) printf("  %-18s %s\n", "pre", pre);
    if (tok) {
        printf("  %-18s %d\n", "n_vocab", mend_tokenizer_n_vocab(tok));
        print_token(tok, "bos", mend_token_bos(tok));
        print_token(tok, "eos", mend_token_eos(tok));
        if (g) {
            print_token(tok, "unk", (int32_t)meta_int(m, "tokenizer.ggml.unknown_token_id", -1));
            print_token(tok, "pad", (int32_t)meta_int(m, "tokenizer.ggml.padding_token_id", -1));
            int64_t eot = meta_int(m, "tokenizer.ggml.eot_token_id", -1);
            if (eot >= 0) print_token(tok, "eot", (int32_t)eot);
        }
        printf("  %-18s %s\n", "add_bos", mend_tokenizer_add_bos(tok) ? "yes" : "no");
    }
    const char *tmpl = mend_model_meta_str(m, "tokenizer.chat_template");
    if (tmpl) {
        char *probe = NULL;
        int chatml = mend_chat_format(tmpl, NULL, "", &probe) == 0;
        printf("  %-18s %s (%zu chars)\n", "chat_template", chatml ? "ChatML" : "not ChatML", strlen(tmpl));
        if (chatml && probe && !strncmp(probe, "<|im_start|>system\n", 19)) {
            const char *s = probe + 19, *e = strstr(s, "<|im_end|>");
            printf("  %-18s %.*s\n", "default system", e ? (int)(e - s) : 0, s);
        }
        free(probe);
    } else {
        printf("  %-18s none\n", "chat_template");
    }
    mend_model_free(m);
    if (check) {
        int bad = 0, rc = check_weights(path, &bad);
        if (rc) return rc;
        if (bad) return 1;
    }
    return 0;
}
