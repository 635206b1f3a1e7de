/* ChatML formatting: the text SmolLM2's template renders for one user turn
 * with add_generation_prompt (expected strings written from the template's
 * definition), default-system extraction, and refusal of other templates. */
#include "test.h"

/* tokenizer.chat_template of SmolLM2-135M-Instruct (GGUF metadata) */
static const char *SMOL =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}";

/* the same default written with Jinja escapes instead of raw newlines */
static const char *ESCAPED =
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant."
    "<|im_end|>\\n' }}{% endif %}{% for m in messages %}...{% endfor %}";

/* a template that takes the system text from the messages only */
static const char *NODEFAULT =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}";

int main(void) {
    char *s = NULL;
    CHECK_OK(mend_chat_format(SMOL, NULL, "What is the capital of France?", &s));
    CHECK(s && !strcmp(s,
                       "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                       "<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                       "<|im_start|>assistant\n"));
    free(s);
    CHECK_OK(mend_chat_format(SMOL, "Be brief.", "Hi", &s));
    CHECK(s && !strcmp(s, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                          "<|im_start|>assistant\n"));
    free(s);
    CHECK_OK(mend_chat_format(SMOL, "", "Hi", &s));
    CHECK(s && !strcmp(s, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    free(s);
    CHECK_OK(mend_chat_format(ESCAPED, NULL, "Hi", &s));
    CHECK(s && !strcmp(s, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi"
                          "<|im_end|>\n<|im_start|>assistant\n"));
    free(s);
    CHECK_OK(mend_chat_format(NODEFAULT, NULL, "Hi", &s));
    CHECK(s && !strcmp(s, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    free(s);
    s = NULL;
    CHECK_ERR(mend_chat_format("{{ bos_token }}[INST] {{ m }} [/INST]", NULL, "Hi", &s), MEND_EUNSUPPORTED,
              "ChatML");
    CHECK(s == NULL);
    CHECK_ERR(mend_chat_format(NULL, NULL, "Hi", &s), MEND_EINVAL, "chat_template");
    return test_finish();
}
