/* Tokenizers: byte-level BPE (GPT-2 style: SmolLM2, Llama-3, Qwen2) with the
 * model's pre-split rule, and SentencePiece-style BPE with byte fallback
 * (LLaMA-1/2). Built from GGUF metadata or from a HF tokenizer.json. */
#ifndef MEND_TOKENIZER_H
#define MEND_TOKENIZER_H

#include <stdint.h>
#include "mend.h"
#include "io/gguf.h"

enum mend_tok_kind { MEND_TOK_BPE = 1 /* "gpt2" */, MEND_TOK_SPM = 2 /* "llama" */ };

/* token types as in GGUF tokenizer.ggml.token_type */
enum mend_token_type {
    MEND_TOKEN_NORMAL = 1, MEND_TOKEN_UNKNOWN = 2, MEND_TOKEN_CONTROL = 3,
    MEND_TOKEN_USER_DEFINED = 4, MEND_TOKEN_UNUSED = 5, MEND_TOKEN_BYTE = 6
};

/* Everything a tokenizer is built from; strings are borrowed during init. */
typedef struct mend_vocab_spec {
    int kind;                 /* enum mend_tok_kind */
    const char *pre;          /* pre-tokenizer name ("smollm", "llama-bpe", "qwen2", "gpt2", "default") */
    int n_vocab;
    const char *const *tokens;
    const uint64_t *token_lens; /* may be NULL: strlen */
    const int32_t *types;     /* may be NULL: all NORMAL */
    const float *scores;      /* SPM merge priorities; may be NULL for BPE */
    int n_merges;
    const char *const *merges;  /* "a b" */
    int32_t bos, eos, unk, pad, eot;  /* -1 when absent */
    int add_bos, add_eos, add_space_prefix;
} mend_vocab_spec;

int mend_tokenizer_init(mend_tokenizer **out, const mend_vocab_spec *spec);
int mend_tokenizer_from_gguf(mend_tokenizer **out, const mend_gguf *g);
int mend_tokenizer_from_json(mend_tokenizer **out, const char *tokenizer_json_path,
                             const char *tokenizer_config_path /* may be NULL */);
void mend_tokenizer_free(mend_tokenizer *t);

#endif
