/* The IDP run's state, shared by idp.c (selection, scoring, records) and
 * ppl.c (perplexity with a prompt chosen per window). Public API:
 * include/mend/idp.h. */
#ifndef MEND_IDP_IMPL_H
#define MEND_IDP_IMPL_H

#include <stdint.h>
#include <stdio.h>

#include "mend.h"
#include "eval/harness.h"
#include "prompt/bank.h"
#include "prompt/select.h"

#define IDP_MAX_TASKS 64

typedef struct idp_task_hist {
    char name[128];
    int64_t n;
    int64_t *count;         /* (n_sel, K + 1): [j][k + 1], k = -1 none */
} idp_task_hist;

struct mend_idp {
    const mend_model *m;
    mend_bank *bank;
    int K, per_prompt, n_sel, started;
    char label[256];
    char *names[MEND_IDP_MAX_SEL];
    mend_select_spec spec[MEND_IDP_MAX_SEL];
    mend_selector *sel[MEND_IDP_MAX_SEL];
    double sel_time[MEND_IDP_MAX_SEL];
    int64_t sel_tokens[MEND_IDP_MAX_SEL];
    mend_eval_backend **be;     /* K + 1: [0] none, [k + 1] prompt k */
    double score_time;
    /* last example */
    int choice[MEND_IDP_MAX_SEL];
    float *scores;              /* (n_sel, K) */
    int have_pp;
    double *pp_acc, *pp_acc_norm, *pp_ll;   /* (K + 1) */
    int pp_has_norm, pp_has_ll;
    int oracle;                 /* oracle's pick (-1 none), or -2 when not computed */
    idp_task_hist hist[IDP_MAX_TASKS];
    int n_hist;
    /* examples of the last mend_idp_eval_examples call: choices and scores */
    int bchoice[MEND_IDP_BATCH][MEND_IDP_MAX_SEL];
    float *bscores;             /* (MEND_IDP_BATCH, n_sel, K) */
};

/* The header of a Markdown table with n_lead leading columns (lead: their
 * titles, "| task | n |") and one column per prompt, none first. */
void idp_print_prompt_header(const mend_idp *x, FILE *f, const char *lead, int n_lead);

#endif
