/* lm-eval's text rules: exact-match normalization, Python's strip() and
 * isspace(). */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include "util/util.h"
#include "eval/harness_int.h"

/* Python's str.isspace() for the code points that occur in text. */
int eval_is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Simple lowercase mapping for the scripts that occur in trivia answers. */
static uint32_t lower_cp(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xC0) return c;
    if (c <= 0xDE && c != 0xD7) return c + 32;                       /* Latin-1 */
    if (c >= 0x100 && c <= 0x137) return (c & 1) ? c : c + 1;       /* Latin Ext-A */
    if (c == 0x130) return 'i';
    if (c >= 0x139 && c <= 0x148) return (c & 1) ? c + 1 : c;
    if (c >= 0x14A && c <= 0x177) return (c & 1) ? c : c + 1;
    if (c == 0x178) return 0xFF;
    if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c + 1 : c;
    if (c == 0x386) return 0x3AC;                                    /* Greek */
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;                     /* Cyrillic */
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    return c;
}

static int is_ascii_punct(uint32_t c) {
    return c < 0x80 && c > 0x20 && c != 0x7F && !(c >= '0' && c <= '9') &&
           !(c >= 'A' && c <= 'Z') && !(c >= 'a' && c <= 'z');
}

char *mend_eval_normalize(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(n * 2 + 1); /* a lowercase form is at most one byte longer per cp */
    if (!out) return NULL;
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (*p) {
        uint32_t c;
        int used = eval_utf8_next(p, e, &c);
        if (c == EVAL_BAD_CP) {
            out[k++] = (char)*p;
            p += used;
            continue;
        }
        p += used;
        c = lower_cp(c);
        if (is_ascii_punct(c)) continue;
        k += (size_t)mend_utf8_encode(c, out + k);
    }
    out[k] = 0;
    return out;
}

int mend_eval_exact_match(const char *pred, const char *ref) {
    char *a = mend_eval_normalize(pred), *b = mend_eval_normalize(ref);
    int eq = a && b && strcmp(a, b) == 0;
    free(a);
    free(b);
    return eq;
}

char *mend_eval_strip(const char *s) {
    const unsigned char *p = (const unsigned char *)s, *e = p + strlen(s);
    const unsigned char *begin = NULL, *end = p;
    while (*p) {
        uint32_t c;
        int used = eval_utf8_next(p, e, &c);
        if (!eval_is_space(c)) {
            if (!begin) begin = p;
            end = p + used;
        }
        p += used;
    }
    if (!begin) return mend_strdup("");
    return mend_strndup((const char *)begin, (size_t)(end - begin));
}
