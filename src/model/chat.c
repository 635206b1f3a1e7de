/* Chat templates. Only the ChatML family is understood (SmolLM2, Qwen2,
 * many instruction tunes): turns are
 *   <|im_start|>{role}\n{content}<|im_end|>\n
 * and generation starts after "<|im_start|>assistant\n". A template that
 * inserts a default system turn when the conversation has none carries that
 * text as a literal right after "<|im_start|>system"; we lift it from there
 * instead of running Jinja. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mend.h"
#include "model/model.h"
#include "util/util.h"

const char *mend_model_meta_str(const mend_model *m, const char *key) {
    if (!m || !key || !m->gguf) return NULL;
    const gguf_kv *kv = mend_gguf_find(m->gguf, key);
    if (!kv || kv->type != GGUF_TYPE_STRING) return NULL;
    return kv->v.s;
}

/* The default system text of a ChatML template, unescaped, malloc'd; NULL
 * when the template has none (or builds it from an expression). */
static char *chatml_default_system(const char *tmpl) {
    const char *tag = "<|im_start|>system";
    const char *p = strstr(tmpl, tag);
    if (!p) return NULL;
    p += strlen(tag);
    if (*p == '\n') p++;
    else if (p[0] == '\\' && p[1] == 'n') p += 2;
    else return NULL;
    const char *end = strstr(p, "<|im_end|>");
    if (!end) return NULL;
    size_t n = (size_t)(end - p);
    /* an expression, not a literal: Jinja markers, concatenation, variables */
    static const char *const bad[] = {"{{", "{%", "}}", "%}", "+", "message", "'", "\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t bl = strlen(bad[i]);
        for (size_t k = 0; k + bl <= n; k++)
            if (memcmp(p + k, bad[i], bl) == 0) return NULL;
    }
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t k = 0; k < n; k++) {
        if (p[k] == '\\' && k + 1 < n) {
            char c = p[k + 1];
            if (c == 'n' || c == 't' || c == '\\') {
                out[o++] = c == 'n' ? '\n' : c == 't' ? '\t' : '\\';
                k++;
                continue;
            }
        }
        out[o++] = p[k];
    }
    out[o] = 0;
    return out;
}

int mend_chat_format(const char *tmpl, const char *system, const char *user, char **out) {
    if (!out) return mend_set_error(MEND_EINVAL, "chat template: out is NULL");
    *out = NULL;
    if (!tmpl) return mend_set_error(MEND_EINVAL, "chat template: the model has no tokenizer.chat_template");
    if (!user) return mend_set_error(MEND_EINVAL, "chat template: no user message");
    if (!strstr(tmpl, "<|im_start|>"))
        return mend_set_error(MEND_EUNSUPPORTED,
                              "chat template: only ChatML templates (with <|im_start|>) are supported");
    char *dflt = NULL;
    if (!system) system = dflt = chatml_default_system(tmpl);
    size_t len = strlen(user) + (system ? strlen(system) : 0) + 128;
    char *buf = malloc(len);
    if (!buf) {
        free(dflt);
        return mend_set_error(MEND_ENOMEM, "chat template: out of memory");
    }
    size_t o = 0;
    if (system && *system)
        o += (size_t)snprintf(buf + o, len - o, "<|im_start|>system\n%s<|im_end|>\n", system);
    snprintf(buf + o, len - o, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", user);
    free(dflt);
    *out = buf;
    return 0;
}
