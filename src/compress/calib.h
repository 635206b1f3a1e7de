/* Calibration samples for `mend compress`: nsamples windows of exactly
 * seqlen tokens drawn from text files (GPTQ draws random windows of C4
 * documents the same way).
 *
 * Sample i comes from file i mod n_files (a round-robin mix of the
 * domains); its start is a paragraph start (the first non-newline byte
 * after a blank line, or the file start) picked with a seeded PCG32. From
 * there the text is tokenized (no BOS, special-token text not parsed) and
 * the first seqlen tokens are kept; a file with too few tokens after the
 * chosen start restarts the window from the file's beginning. Same files,
 * seed and tokenizer: same tokens. */
#ifndef MEND_CALIB_H
#define MEND_CALIB_H

#include <stddef.h>
#include <stdint.h>
#include "mend.h"

typedef struct mend_calib {
    int nsamples, seqlen;
    int32_t *tokens;        /* nsamples × seqlen */
    uint64_t hash;          /* FNV-1a of the tokens (checkpoint identity) */
} mend_calib;

/* Draw the samples; every file must hold at least seqlen tokens. */
int mend_calib_build(mend_calib *c, const mend_tokenizer *tok, const char *const *paths, int n_paths,
                     int nsamples, int seqlen, uint64_t seed);
void mend_calib_free(mend_calib *c);
/* The samples as text (detokenized windows separated by blank lines), e.g.
 * for llama-imatrix on the same calibration text. *text is malloc'd. */
int mend_calib_text(const mend_calib *c, const mend_tokenizer *tok, char **text, size_t *len);
uint64_t mend_calib_hash(const int32_t *tokens, size_t n);

#endif
