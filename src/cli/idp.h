/* --bank DIR --select S for eval, ppl and generate (idp.c): the run itself
 * is the library's (mend/idp.h); here the flags become selectors.
 *
 * S is one selector (attention, router, loss, learned, oracle, fixed:NAME,
 * none) or a comma-separated list: the first is used, the others are only
 * computed and recorded (their picks, for analysis). With per_prompt (or when the
 * first is oracle) every example is also scored with no prompt and with
 * every prompt of the bank, and those outcomes are recorded too. */
#ifndef MEND_CLI_IDP_H
#define MEND_CLI_IDP_H

#include "mend.h"

/* Open the bank for model m (loaded from model_path; a bank trained on
 * another model is reported, cli_check_trained_on), add the selectors of
 * the list select (NULL: the bank's default); layers: NULL or "A:B" for the
 * attention selector; max_tokens: selection inputs cut to their last
 * max_tokens tokens (0: 512). Prints errors and returns an exit code. */
int cli_idp_open(mend_idp **out, const char *cmd, const mend_model *m, const char *model_path, const char *bank_dir,
                 const char *select, const char *layers, int max_tokens, int per_prompt);

#endif
