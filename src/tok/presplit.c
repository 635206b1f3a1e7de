/* Pre-tokenizers: the regex list a byte-level BPE model splits text with
 * before merging, chosen by the GGUF "tokenizer.ggml.pre" name with the same
 * names and expressions llama.cpp uses (llama-vocab.cpp), or taken from a HF
 * tokenizer.json.
 *
 * Semantics (llama.cpp's unicode_regex_split): the regexes are applied in
 * order; each one splits every fragment produced so far into its matches
 * AND the unmatched text between matches (both kept as fragments). A regex
 * only sees its fragment, so lookarounds and '$' stop at fragment bounds.
 * Matching uses PCRE2 with UTF and UCP (\s, \p{L}, \p{N} are Unicode-aware);
 * the input is valid UTF-8 (see tok_utf8_sanitize).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include "tok/tok_internal.h"

/* GPT-2's rule: contractions, letters, numbers, other symbols, each with one
 * optional leading space; trailing whitespace not followed by a non-space. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
/* Llama-3: case-insensitive contractions, up to 3 digits per number, newlines
 * grouped separately. (?i:...) is spelled out with classes as llama.cpp does,
 * so no Unicode case folding applies. */
#define RE_CONTRACT_CI "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3 RE_CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* Qwen2: like Llama-3 but single digits */
#define RE_QWEN2 RE_CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_SEED_CODER RE_CONTRACT_CI "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_BAILING "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"
#define RE_PORO " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"
#define RE_GPT4O_UP "((?=[\\p{L}])([^a-z]))"
#define RE_GPT4O_LO "((?=[\\p{L}])([^A-Z]))"
#define RE_GPT4O "[^\\r\\n\\p{L}\\p{N}]?" RE_GPT4O_UP "*" RE_GPT4O_LO "+" "(?:" RE_CONTRACT_CI ")?" \
    "|[^\\r\\n\\p{L}\\p{N}]?" RE_GPT4O_UP "+" RE_GPT4O_LO "*" "(?:" RE_CONTRACT_CI ")?" \
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct pre_def {
    const char *names;     /* '|'-separated */
    const char *re[6];
    int ignore_merges, add_bos;
} pre_def;

static const pre_def k_pre[] = {
    {"default",
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, 0, 0},
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2", {RE_LLAMA3}, 1, 1},
    {"dbrx|smaug-bpe|chatglm-bpe|glm4", {RE_LLAMA3}, 0, 0},
    {"smollm|starcoder|refact|command-r|codeshell|exaone|minerva-7b", {"\\p{N}", RE_GPT2}, 0, 0},
    {"gpt2|gpt-2|phi-2|jina-es|jina-de|gigachat|jina-v2-es|jina-v2-de|a.x-4.0|mellum|jina-v1-en|"
     "jina-v2-code|roberta-bpe|mpt|olmo|jais|trillion|granite-docling|exaone4",
     {RE_GPT2}, 0, 0},
    {"qwen2|deepseek-r1-qwen|kormo|stablelm2|megrez|hunyuan|grok-2", {RE_QWEN2}, 0, 0},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}, 0, 0},
    {"deepseek-coder",
     {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+", "\\p{N}"}, 0, 0},
    {"poro-chat|bloom|gpt3-finnish", {RE_PORO}, 0, 0},
    {"viking", {RE_PORO, "\\p{N}"}, 0, 0},
    {"gpt-4o|llama4", {RE_GPT4O}, 0, 0},
    {"seed-coder", {RE_SEED_CODER}, 0, 0},
    {"bailingmoe|bailingmoe2|llada-moe", {RE_BAILING}, 0, 0},
};

static int name_in(const char *names, const char *pre) {
    size_t n = strlen(pre);
    const char *p = names;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t k = e ? (size_t)(e - p) : strlen(p);
        if (k == n && !memcmp(p, pre, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

void tok_presplit_free(tok_presplit *sp) {
    for (int i = 0; i < sp->n; i++)
        if (sp->code[i]) pcre2_code_free((pcre2_code *)sp->code[i]);
    memset(sp, 0, sizeof *sp);
}

int tok_presplit_compile(tok_presplit *sp, const char *const *regex, int n, const char *origin) {
    memset(sp, 0, sizeof *sp);
    if (n < 0 || n > TOK_MAX_REGEX)
        return mend_set_error(MEND_EUNSUPPORTED, "%s: %d pre-tokenizer regexes, at most %d are supported",
                              origin, n, TOK_MAX_REGEX);
    for (int i = 0; i < n; i++) {
        int err;
        PCRE2_SIZE eoff;
        pcre2_code *c = pcre2_compile((PCRE2_SPTR)regex[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                                      &err, &eoff, NULL);
        if (!c) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            tok_presplit_free(sp);
            return mend_set_error(MEND_EUNSUPPORTED,
                                  "%s: pre-tokenizer regex %d (\"%.200s\") does not compile at offset %zu: %s",
                                  origin, i, regex[i], (size_t)eoff, (const char *)msg);
        }
        sp->code[i] = c;
        sp->n = i + 1;
        sp->jit[i] = pcre2_jit_compile(c, PCRE2_JIT_COMPLETE) == 0;
    }
    return 0;
}

static const pre_def *find_pre(const char *pre) {
    if (!pre || !*pre) pre = "default";
    for (size_t i = 0; i < sizeof k_pre / sizeof k_pre[0]; i++)
        if (name_in(k_pre[i].names, pre)) return &k_pre[i];
    return NULL;
}

static int unknown_pre(const char *pre, const char *origin) {
    return mend_set_error(MEND_EUNSUPPORTED,
                          "%s: tokenizer.ggml.pre is \"%s\", a pre-tokenizer mend does not know "
                          "(known: smollm, llama-bpe, qwen2, gpt-2, default and their aliases)",
                          origin, pre);
}

int tok_pre_info(const char *pre, int *ignore_merges, int *add_bos_default, const char *origin) {
    const pre_def *d = find_pre(pre);
    if (!d) return unknown_pre(pre, origin);
    if (ignore_merges) *ignore_merges = d->ignore_merges;
    if (add_bos_default) *add_bos_default = d->add_bos;
    return 0;
}

int tok_presplit_from_name(tok_presplit *sp, const char *pre, const char *origin) {
    const pre_def *d = find_pre(pre);
    if (!d) return unknown_pre(pre, origin);
    int n = 0;
    while (n < 6 && d->re[n]) n++;
    return tok_presplit_compile(sp, d->re, n, origin);
}

static int spans_push(tok_spans *a, uint32_t off, uint32_t len) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 256;
        tok_span *v = realloc(a->v, nc * sizeof *v);
        if (!v) return mend_set_error(MEND_ENOMEM, "tokenizer: out of memory splitting text");
        a->v = v;
        a->cap = nc;
    }
    a->v[a->n].off = off;
    a->v[a->n].len = len;
    a->n++;
    return 0;
}

/* Split one fragment with one regex, appending the pieces to out. */
static int split_one(pcre2_code *code, pcre2_match_data *md, const char *s, uint32_t off, uint32_t len,
                     tok_spans *out) {
    PCRE2_SPTR subj = (PCRE2_SPTR)(s + off);
    size_t pos = 0, gap = 0;
    uint32_t opts = PCRE2_NO_UTF_CHECK;
    while (pos < len) {
        int rc = pcre2_match(code, subj, len, pos, opts, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !(opts & PCRE2_NO_JIT)) {
            opts |= PCRE2_NO_JIT;   /* retry with the interpreter */
            continue;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return mend_set_error(MEND_EUNSUPPORTED, "tokenizer: pre-tokenizer regex failed on a %u-byte fragment: %s",
                                  len, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) {
            /* empty match: move on by one character, keep the gap open */
            pos = ms + 1;
            while (pos < len && ((uint8_t)subj[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        int rc2;
        if (ms > gap && (rc2 = spans_push(out, off + (uint32_t)gap, (uint32_t)(ms - gap)))) return rc2;
        if ((rc2 = spans_push(out, off + (uint32_t)ms, (uint32_t)(me - ms)))) return rc2;
        gap = pos = me;
    }
    if (gap < len) return spans_push(out, off + (uint32_t)gap, (uint32_t)(len - gap));
    return 0;
}

int tok_presplit_run(const tok_presplit *sp, const char *s, size_t n, tok_spans *words) {
    words->n = 0;
    if (n == 0) return 0;
    if (n > UINT32_MAX)
        return mend_set_error(MEND_ERANGE, "tokenizer: a text fragment of %zu bytes exceeds 4 GiB", n);
    int rc = spans_push(words, 0, (uint32_t)n);
    if (rc) return rc;
    tok_spans tmp = {0};
    for (int r = 0; r < sp->n; r++) {
        pcre2_code *code = (pcre2_code *)sp->code[r];
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
        if (!md) { free(tmp.v); return mend_set_error(MEND_ENOMEM, "tokenizer: out of memory for regex match data"); }
        tmp.n = 0;
        for (size_t i = 0; i < words->n && !rc; i++)
            rc = split_one(code, md, s, words->v[i].off, words->v[i].len, &tmp);
        pcre2_match_data_free(md);
        if (rc) { free(tmp.v); return rc; }
        tok_spans sw = *words;
        *words = tmp;
        tmp = sw;
    }
    free(tmp.v);
    return 0;
}
