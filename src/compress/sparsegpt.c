/* SparseGPT on one matrix, joint pruning + quantization, and GPTQ with a
 * fixed mask (see sparsegpt.h). */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "compress/sparsegpt.h"
#include "compress/hessian.h"
#include "mend.h"
#include "util/util.h"

#define SGPT_TILE 16

int mend_sparsegpt(float *W, int64_t rows, int64_t cols, const double *H, const mend_sparsegpt_opts *o, uint8_t *mask_out,
                   void *packed, mend_sparsegpt_stats *st) {
    if (!W || !H || !o) return mend_set_error(MEND_EINVAL, "sparsegpt: NULL weights, Hessian or options");
    if (rows <= 0 || cols <= 0 || rows > (1ll << 31) || cols > (1 << 20))
        return mend_set_error(MEND_ERANGE, "sparsegpt: matrix of %lld x %lld", (long long)rows, (long long)cols);
    size_t rn;
    if (!mend_mul_ok((size_t)rows, (size_t)cols, &rn) || rn >= (1ull << 32))
        return mend_set_error(MEND_ERANGE, "sparsegpt: matrix of %lld x %lld is too large", (long long)rows, (long long)cols);
    const int fixed = o->fixed_mask != NULL;
    const mend_sparsity *sp = &o->sp;
    int rc;
    if (!fixed && (rc = mend_sparsity_check(sp, cols))) return rc;
    const int nm = !fixed && sp->m > 0;
    const mend_qfmt *f = &o->fmt;
    if (o->quantize) {
        if ((rc = mend_qfmt_check(f, cols))) return rc;
        if (f->type == MEND_TYPE_F32 || f->type == MEND_TYPE_F16 || f->type == MEND_TYPE_BF16)
            return mend_set_error(MEND_EINVAL, "sparsegpt: %s is not a quantized format", mend_type_name(f->type));
    } else if (packed) {
        return mend_set_error(MEND_EINVAL, "sparsegpt: packed output needs a quantization format");
    }
    for (size_t i = 0; i < rn; i++)
        if (!isfinite(W[i]))
            return mend_set_error(MEND_EINVAL, "sparsegpt: weight (%zu, %zu) is not finite", i / (size_t)cols, i % (size_t)cols);
    const int64_t n = cols;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(H[i * n + i]) || H[i * n + i] < 0)
            return mend_set_error(MEND_EINVAL, "sparsegpt: Hessian diagonal entry %lld is %g (finite and >= 0 expected)", (long long)i,
                                  H[i * n + i]);

    /* batch width: a multiple of m (N:M groups never straddle batches), and
     * grid blocks start at a batch start or lie inside one batch (gptq.h) */
    int64_t B = o->block > 0 ? o->block : 128;
    if (B > n) B = n;
    if (nm) B = B < sp->m ? sp->m : (B / sp->m) * sp->m;
    const int64_t be = o->quantize ? mend_qfmt_block_elems(f, n) : n;
    if (o->quantize && be < n) B = be <= B ? (B / be) * be : obs_gcd64(be, B);
    if (nm && B % sp->m)
        return mend_set_error(MEND_EUNSUPPORTED, "sparsegpt: %d:%d groups do not align with the %lld-weight blocks of the format",
                              sp->n, sp->m, (long long)be);
    const double damp = o->damp > 0 ? o->damp : 0.01;
    const size_t nn = (size_t)n * (size_t)n;
    const size_t bb = o->quantize ? mend_qfmt_block_bytes(f, n) : 0, rs = o->quantize ? mend_qfmt_row_size(f, n) : 0;
    const int slab = !fixed && !nm;   /* unstructured: one selection per batch over all rows */

    double *Hc = malloc(nn * sizeof(double));
    float *U = malloc(nn * sizeof(float));
    uint8_t *M = mask_out ? mask_out : malloc(rn);
    float *E = malloc((size_t)rows * (size_t)B * sizeof(float));
    float *score = slab ? malloc((size_t)rows * (size_t)B * sizeof(float)) : NULL;
    uint64_t *keys = slab ? malloc((size_t)rows * (size_t)B * sizeof(uint64_t)) : NULL;
    uint8_t *smask = slab ? malloc((size_t)rows * (size_t)B) : NULL;
    uint8_t *pk = o->quantize ? (packed ? packed : malloc((size_t)rows * rs)) : NULL;
    uint8_t *codes = o->quantize ? malloc(rn) : NULL;
    mend_qgrid *grids = o->quantize ? malloc((size_t)rows * sizeof(mend_qgrid)) : NULL;
    float *imp = o->quantize && o->fit_importance ? malloc((size_t)n * sizeof(float)) : NULL;
    double *rowloss = calloc((size_t)rows, sizeof(double));
    int *fail = calloc((size_t)rows, sizeof(int));
    rc = 0;
    if (!Hc || !U || !M || !E || (slab && (!score || !keys || !smask)) || (o->quantize && (!pk || !codes || !grids)) ||
        (o->quantize && o->fit_importance && !imp) || !rowloss || !fail) {
        rc = mend_set_error(MEND_ENOMEM, "sparsegpt: out of memory for a %lld x %lld matrix", (long long)rows, (long long)n);
        goto done;
    }
    if (fixed) memcpy(M, o->fixed_mask, rn);
    else memset(M, 0, rn);

    /* dead inputs: no signal, so the column is dropped */
    memcpy(Hc, H, nn * sizeof(double));
    int64_t dead = 0;
    for (int64_t i = 0; i < n; i++)
        if (Hc[i * n + i] == 0) {
            Hc[i * n + i] = 1;
            for (int64_t r = 0; r < rows; r++) W[r * n + i] = 0;
            dead++;
        }
    if (imp)
        for (int64_t i = 0; i < n; i++) imp[i] = (float)Hc[i * n + i];
    double lambda = 0;
    rc = mend_inverse_cholesky("sparsegpt", Hc, n, damp, U, &lambda);
    free(Hc);
    Hc = NULL;
    if (rc) goto done;

    const int64_t ntiles = (rows + SGPT_TILE - 1) / SGPT_TILE;
    for (int64_t i1 = 0; i1 < n; i1 += B) {
        const int64_t i2 = i1 + B < n ? i1 + B : n, w = i2 - i1;
        if (slab) {
            /* adaptive mask of the batch: lowest w² / U_cc² over the whole slab */
            #pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < rows; r++)
                for (int64_t c = i1; c < i2; c++) {
                    const float x = W[r * n + c], d = U[c * n + c];
                    score[r * w + (c - i1)] = x * x / (d * d);
                }
            const int64_t cnt = rows * w;
            mend_prune_select(score, cnt, (int64_t)(sp->ratio * (double)cnt), smask, keys);
            for (int64_t r = 0; r < rows; r++) memcpy(M + r * n + i1, smask + r * w, (size_t)w);
        }
        #pragma omp parallel
        {
            float *fb = o->quantize ? malloc((size_t)be * sizeof(float)) : NULL;
            float nsc[256];
            #pragma omp for schedule(dynamic, 1)
            for (int64_t tile = 0; tile < ntiles; tile++) {
                const int64_t r0 = tile * SGPT_TILE, r1 = r0 + SGPT_TILE < rows ? r0 + SGPT_TILE : rows;
                int failed = 0;
                if (o->quantize && !fb) {
                    for (int64_t r = r0; r < r1; r++) fail[r] = 2;
                    continue;
                }
                for (int64_t r = r0; r < r1 && !failed; r++) {
                    float *wr = W + r * n, *e = E + r * B;
                    uint8_t *mr = M + r * n;
                    double loss = 0;
                    for (int64_t k = i1; k < i2; k++) {
                        if (nm && k % sp->m == 0) {
                            for (int j = 0; j < sp->m; j++) {
                                const float x = wr[k + j], d = U[(k + j) * n + (k + j)];
                                nsc[j] = x * x / (d * d);
                            }
                            mend_prune_select_nm(nsc, sp->m, sp->n, sp->m, mr + k);
                        }
                        const float wk = wr[k];
                        float q = mr[k] ? 0.0f : wk;
                        if (o->quantize) {
                            const int64_t b = k / be, j = k % be;
                            mend_qgrid *g = &grids[r];
                            if (j == 0) {
                                /* fit on the block as it will be: known pruned weights are zero */
                                for (int64_t t = 0; t < be; t++) fb[t] = mr[k + t] ? 0.0f : wr[k + t];
                                if (mend_qgrid_fit(f, fb, be, imp ? imp + k : NULL, pk + (size_t)r * rs + (size_t)b * bb, g)) {
                                    fail[r] = failed = 1;
                                    break;
                                }
                            }
                            const int c = mend_qgrid_code(g, j, q);
                            q = mend_qgrid_value(g, j, c);
                            codes[(size_t)r * n + k] = (uint8_t)c;
                        }
                        const float err = (wk - q) / U[k * n + k];
                        loss += (double)err * err * 0.5;
                        wr[k] = q;
                        obs_axpy_neg(wr + k + 1, U + k * n + k + 1, err, i2 - k - 1);   /* W[r, k+1:i2] -= err · U[k, k+1:i2] */
                        e[k - i1] = err;
                    }
                    rowloss[r] += loss;
                }
                if (failed || i2 >= n) continue;
                /* lazy batch: W[r0:r1, i2:] -= E[r0:r1, :] · U[i1:i2, i2:] */
                for (int64_t k = i1; k < i2; k++)
                    for (int64_t r = r0; r < r1; r++) obs_axpy_neg(W + r * n + i2, U + k * n + i2, E[r * B + (k - i1)], n - i2);
            }
            free(fb);
        }
        for (int64_t r = 0; r < rows; r++)
            if (fail[r]) {
                rc = fail[r] == 2 ? mend_set_error(MEND_ENOMEM, "sparsegpt: out of memory for a block buffer")
                                  : mend_set_error(MEND_EINVAL, "sparsegpt: row %lld could not be fitted to its grid", (long long)r);
                goto done;
            }
    }

    if (o->quantize) {
        const int64_t nblk = n / be;
        #pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t b = 0; b < nblk; b++)
                mend_qgrid_pack(f, pk + (size_t)r * rs + (size_t)b * bb, codes + (size_t)r * n + b * be, be);
    }
    if (st) {
        st->loss = 0;
        for (int64_t r = 0; r < rows; r++) st->loss += rowloss[r];
        st->dead = dead;
        st->damp = lambda;
        st->block = (int)B;
        int64_t p = 0;
        for (size_t i = 0; i < rn; i++) p += M[i] != 0;
        st->pruned = p;
    }

done:
    free(Hc);
    free(U);
    if (M != mask_out) free(M);
    free(E);
    free(score);
    free(keys);
    free(smask);
    if (pk != packed) free(pk);
    free(codes);
    free(grids);
    free(imp);
    free(rowloss);
    free(fail);
    return rc;
}

int mend_gptq_quantize_masked(float *W, int64_t rows, int64_t cols, const double *H, const mend_gptq_opts *opts,
                              const uint8_t *mask, void *packed, mend_gptq_stats *stats) {
    if (!opts || !mask) return mend_set_error(MEND_EINVAL, "gptq (masked): NULL options or mask");
    if (opts->act_order)
        return mend_set_error(MEND_EUNSUPPORTED, "gptq (masked): act-order is not supported together with a sparsity mask");
    mend_sparsegpt_opts so = {.fixed_mask = mask, .quantize = 1, .fmt = opts->fmt, .damp = opts->damp, .block = opts->block,
                              .fit_importance = opts->fit_importance};
    mend_sparsegpt_stats ss;
    int rc = mend_sparsegpt(W, rows, cols, H, &so, NULL, packed, &ss);
    if (rc) return rc;
    if (stats) {
        stats->loss = ss.loss;
        stats->dead = ss.dead;
        stats->damp = ss.damp;
        stats->block = ss.block;
    }
    return 0;
}

/* ---- one matrix of `mend compress` with pruning ---- */

const char *mend_prune_method_name(int method) {
    switch (method) {
    case MEND_PRUNE_NONE: return "none";
    case MEND_PRUNE_MAGNITUDE: return "magnitude";
    case MEND_PRUNE_WANDA: return "wanda";
    case MEND_PRUNE_SPARSEGPT: return "sparsegpt";
    default: return "?";
    }
}

int mend_prune_method_parse(const char *name, int *method) {
    for (int m = MEND_PRUNE_NONE; m <= MEND_PRUNE_SPARSEGPT; m++)
        if (name && !strcmp(name, mend_prune_method_name(m))) {
            *method = m;
            return 0;
        }
    return mend_set_error(MEND_EINVAL, "pruning method '%s' (none, magnitude, wanda or sparsegpt expected)", name ? name : "");
}

static int is_float_fmt(const mend_qfmt *f) {
    return f->type == MEND_TYPE_F32 || f->type == MEND_TYPE_F16 || f->type == MEND_TYPE_BF16;
}

/* round-to-nearest of every row onto f (floats: conversion); W <- its dequantization */
static int rtn_rows(float *W, int64_t rows, int64_t cols, const mend_qfmt *f, uint8_t *packed) {
    const size_t rs = is_float_fmt(f) ? mend_row_size(f->type, cols) : mend_qfmt_row_size(f, cols);
    if (!rs) return mend_set_error(MEND_EINVAL, "prune: rows of %lld weights do not fit the target format", (long long)cols);
    int bad = 0;
    #pragma omp parallel for schedule(static) reduction(|:bad)
    for (int64_t r = 0; r < rows; r++) {
        uint8_t *y = packed + (size_t)r * rs;
        if (mend_quantize_row_fmt(f, W + r * cols, y, cols, NULL) || mend_dequantize_row_fmt(f, y, W + r * cols, cols)) bad = 1;
    }
    return bad ? mend_set_error(MEND_EINVAL, "prune: a row could not be stored in the target format") : 0;
}

int mend_prune_compress(float *W, int64_t rows, int64_t cols, const double *H, const mend_prune_opts *p,
                        const mend_gptq_opts *q, int gptq, void *packed, double *loss) {
    if (!W || !p || !q || !packed) return mend_set_error(MEND_EINVAL, "prune: NULL weights, options or output");
    if (!H && (mend_prune_needs_calib(p) || gptq))
        return mend_set_error(MEND_EINVAL, "prune: %s%s needs calibration inputs (a Hessian)", mend_prune_method_name(p->method),
                              gptq ? " with GPTQ" : "");
    if (gptq && is_float_fmt(&q->fmt))
        return mend_set_error(MEND_EINVAL, "prune: GPTQ to the float type %s", mend_type_name(q->fmt.type));
    size_t rn;
    if (rows <= 0 || cols <= 0 || !mend_mul_ok((size_t)rows, (size_t)cols, &rn))
        return mend_set_error(MEND_ERANGE, "prune: matrix of %lld x %lld", (long long)rows, (long long)cols);
    if (p->method == MEND_PRUNE_SPARSEGPT && p->joint && gptq) {
        mend_sparsegpt_opts so = {.sp = p->sp, .quantize = 1, .fmt = q->fmt, .damp = q->damp, .block = q->block,
                                  .fit_importance = q->fit_importance};
        mend_sparsegpt_stats ss;
        int rc = mend_sparsegpt(W, rows, cols, H, &so, NULL, packed, &ss);
        if (!rc && loss) *loss += ss.loss;
        return rc;
    }
    uint8_t *mask = malloc(rn);
    float *xn = p->method == MEND_PRUNE_WANDA ? malloc((size_t)cols * sizeof(float)) : NULL;
    int rc = 0;
    if (!mask || (p->method == MEND_PRUNE_WANDA && !xn)) {
        rc = mend_set_error(MEND_ENOMEM, "prune: out of memory for a %lld x %lld mask", (long long)rows, (long long)cols);
        goto out;
    }
    switch (p->method) {
    case MEND_PRUNE_NONE: memset(mask, 0, rn); break;
    case MEND_PRUNE_MAGNITUDE: rc = mend_prune_magnitude(W, rows, cols, &p->sp, mask); break;
    case MEND_PRUNE_WANDA:
        rc = mend_wanda_norms_from_hessian(H, cols, xn);
        if (!rc) rc = mend_prune_wanda(W, rows, cols, xn, &p->sp, mask);
        break;
    case MEND_PRUNE_SPARSEGPT: {
        mend_sparsegpt_opts so = {.sp = p->sp, .damp = q->damp, .block = q->block};
        mend_sparsegpt_stats ss;
        rc = mend_sparsegpt(W, rows, cols, H, &so, mask, NULL, &ss);
        if (!rc && loss) *loss += ss.loss;
        break;
    }
    default: rc = mend_set_error(MEND_EINVAL, "prune: method %d", p->method);
    }
    if (rc) goto out;
    if (gptq) {
        mend_gptq_stats gs;
        rc = mend_gptq_quantize_masked(W, rows, cols, H, q, mask, packed, &gs);
        if (!rc && loss) *loss += gs.loss;
    } else {
        rc = rtn_rows(W, rows, cols, &q->fmt, packed);
    }
out:
    free(mask);
    free(xn);
    return rc;
}
