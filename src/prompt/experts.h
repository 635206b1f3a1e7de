/* Expert banks by hard EM (prompt/experts.c): the options, progress,
 * result and mend_experts_build are public (mend/bank.h); these are the
 * assignment steps, exposed for tests. */
#ifndef MEND_PROMPT_EXPERTS_H
#define MEND_PROMPT_EXPERTS_H

#include "mend.h"

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
