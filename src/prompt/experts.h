/* A bank of expert prompts trained by hard EM (prompt/experts.c).
 *
 * A domain bank gives each prompt the text of one corpus. An expert bank
 * lets the prompts divide the text among themselves by what each repairs
 * best, and trains them on that division with the rule the bank selects by
 * at inference:
 *
 *   chunks   the pooled corpora cut into sequences of tune.seqlen tokens,
 *            one per paragraph start (MEND_TUNE_WINDOWS_PARAGRAPH), with
 *            tune.val_frac of the paragraphs held out; a seeded permutation
 *            of the training chunks gives each round its own P = K x
 *            tune.steps x tune.batch chunks, so every expert sees tune.steps
 *            x tune.batch chunks per round and no chunk is seen twice
 *   start    every expert is the same prompt (tune.init_prompt: the shared
 *            prompt of the repair recipe), so round 0 splits its chunks by
 *            balanced k-means on the learned router's feature (the mean
 *            token embedding, L2-normalised; prompt/router.h): experts
 *            begin on text the router can tell apart
 *   E step   rounds 1.. label their chunks with the loss selector over the
 *            current experts (the expert under which the chunk itself is
 *            most likely: no teacher, no labels), balanced: each expert
 *            takes at most ceil(P / K) chunks, chunks with the clearest
 *            preference first (mend_experts_balance)
 *   M step   each expert continues from where it is (tune.init =
 *            MEND_TUNE_INIT_PROMPT) for tune.steps steps on its chunks with
 *            tune's objective (KL to the teacher by default), validated on
 *            the held-out chunks labelled the same way (for the record: the
 *            expert goes on from its last step, not its best validation)
 *   router   after the last round the experts label one more fresh set of
 *            P chunks by loss, and the learned router is fitted to predict
 *            those labels from the feature (mend_router_fit): at inference
 *            the router picks what the training rule would have picked, at
 *            the cost of n embedding-row lookups
 *
 * Files in out_dir (a killed run resumes from them and repeats no finished
 * work; every file is written atomically):
 *   round-R/labels.json   the chunks of round R and each one's expert, the
 *                         held-out labels, and the per-expert counts
 *   round-R/eK/           expert K's tune run of round R (tune resumes it)
 *   eK/                   expert K after the last round (PEFT adapter,
 *                         train.json counting every round's tokens)
 *   bank.json             K prompts "eK", the learned router, selector
 *                         default "learned" (written last: its presence
 *                         means the bank is complete)
 * Training tokens: K x rounds x tune.steps x tune.batch x tune.seqlen on top
 * of the start prompt's (tune.start_tokens), the same count a domain bank
 * of K prompts with rounds x tune.steps steps each reads. */
#ifndef MEND_PROMPT_EXPERTS_H
#define MEND_PROMPT_EXPERTS_H

#include "prompt/router.h"
#include "prompt/tune.h"

typedef struct mend_experts_opts {
    int n_experts;          /* K (4) */
    int rounds;             /* rounds of E and M steps (3) */
    int kmeans_iters;       /* Lloyd iterations of the round-0 split (20) */
    mend_tune_opts tune;    /* each expert's M step per round; tune.init_prompt is the start
                               (required), tune.out_dir is set per expert and round */
    mend_router_opts router;   /* l2, iters, normalize of the router fit */
    const char *out_dir;
    const char *base_model; /* recorded in bank.json and the adapters */
} mend_experts_opts;

void mend_experts_opts_default(mend_experts_opts *o);

/* What the run is doing: phase "kmeans", "label", "train" or "router";
 * round (0-based; == rounds for the final labelling and the router); expert (train: 0..K-1, else -1); done of total units
 * (chunks labelled or steps trained). A nonzero return stops the run
 * (MEND_EINVAL "cancelled"); it resumes from its files. */
typedef struct mend_experts_progress {
    const char *phase;
    int round, rounds, expert, n_experts;
    int done, total;
    double loss;            /* train: the step's objective; label: NaN */
} mend_experts_progress;
typedef int (*mend_experts_progress_fn)(void *user, const mend_experts_progress *p);

typedef struct mend_experts_result {
    int n_chunks, n_val_chunks;     /* training / held-out chunks available */
    int chunks_per_round;           /* P */
    int counts[MEND_BANK_MAX_PROMPTS];      /* router labels per expert */
    mend_router_stats router;
    int64_t train_tokens;           /* per expert, all rounds */
} mend_experts_result;

/* Build the expert bank of model m (f32 matrices, prompt/train.h) on the
 * texts; teacher for tune's KL objective. */
int mend_experts_build(const mend_model *m, const mend_model *teacher, const char *const *texts, const size_t *lens,
                       int n_texts, const mend_experts_opts *o, mend_experts_progress_fn progress, void *user,
                       mend_experts_result *res);

/* Balanced hard assignment: cost (n, K) row-major, lower is better; each
 * of the K labels is given to at most ceil(n / K) rows. Rows are taken in
 * order of decreasing margin (second-lowest minus lowest cost; ties by
 * index), each to its cheapest label with room left. Deterministic; NaN
 * costs count as +inf. */
int mend_experts_balance(const float *cost, int n, int K, int *label);

/* Balanced k-means of n points x (n, dim) into K groups: seeded k-means++
 * centres, then iters rounds of balanced assignment on squared distance
 * (mend_experts_balance) and centre updates. label (n). */
int mend_experts_kmeans(const float *x, int n, int dim, int K, int iters, uint64_t seed, int *label);

#endif
