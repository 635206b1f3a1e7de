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

/* mend_calib, mend_calib_build / _free / _text are public (mend/compress.h). */
uint64_t mend_calib_hash(const int32_t *tokens, size_t n);

#endif
