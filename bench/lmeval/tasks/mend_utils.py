"""Field accessors for the llm-foundry ICL JSONL shapes, so that lm-eval
scores exactly the text mend scores (no re-templating)."""


def mc_text(doc):
    return doc["query"]


def mc_choices(doc):
    return list(doc["choices"])


def mc_gold(doc):
    return int(doc["gold"])


# schema (winogrande): an int from doc_to_text makes lm-eval use one context
# per option ("multiple inputs") with the same continuation
def schema_gold(doc):
    return int(doc["gold"])


def schema_contexts(doc):
    return list(doc["context_options"])


def schema_continuation(doc):
    return doc["continuation"]


def lm_context(doc):
    return doc["context"]


def lm_continuation(doc):
    return " " + doc["continuation"]


def gen_context(doc):
    return doc["context"]


def gen_aliases(doc):
    return list(doc["aliases"])
