/* mend_repair_run (repair.c, repair_report.c): one command from a checkpoint
 * to a compressed, prompt-repaired and evaluated model with a report.
 *
 * OUT_DIR layout:
 *   repair.json           the resolved plan (model, spec, budget, settings);
 *                         a rerun must match it
 *   model.gguf            the compressed model (model.gguf.ckpt while running)
 *   bank/                 the prompt bank (bank.json, one adapter per domain)
 *   bank/single/          the single prompt trained on all domains together
 *   results/RUN/TASK.jsonl  eval lines; RUN = original, compressed, single, idp
 *   ppl/RUN.json          perplexity (mend ppl --json)
 *   stages/STAGE.json     written when a stage finished: its wall time
 *   logs/STAGE.txt        each stage's report text (what the command prints)
 *   report.md, report.png (tasks), loss.png (prompt training curves)
 */
#ifndef MEND_JOBS_REPAIR_H
#define MEND_JOBS_REPAIR_H

#include <stddef.h>

/* A compression spec (docs/repair.md):
 *   QUANT            rtn:TYPE | gptq:TYPE; TYPE a ggml type (q4_0, q3_k, ...)
 *                    or intB[gG][sym] (mend's generic B-bit groups of G,
 *                    asymmetric unless sym; no g: one group per row)
 *   PRUNE            magnitude:S | wanda:S | sparsegpt:S, S = 0.5, 50% or N:M
 *   PRUNE+TYPE       pruning, then GPTQ to TYPE keeping the zeros
 *   PRUNE+QUANT      the same with the quantizer named */
typedef struct repair_spec {
    char method[16];        /* rtn, gptq */
    char type[16];          /* ggml type name, "" for generic bits */
    int bits, group, sym;   /* generic: bits > 0; group -1 per row */
    char prune[16];         /* "" none, magnitude, wanda, sparsegpt */
    char sparsity[16];
} repair_spec;

/* Parse spec; an error names the spec and the part that is wrong. */
int repair_spec_parse(const char *spec, repair_spec *out);
/* The evaluated configurations, in report order. */
enum { REPAIR_ORIGINAL, REPAIR_COMPRESSED, REPAIR_SINGLE, REPAIR_IDP, REPAIR_NRUNS };
extern const char *const repair_run_name[REPAIR_NRUNS];
extern const char *const repair_run_title[REPAIR_NRUNS];

#endif
