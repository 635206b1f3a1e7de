/* Public wrappers of mend/compress.h around compress/driver.c. */
#include <string.h>

#include "mend.h"
#include "kernels/quants.h"

void mend_compress_opts_init(mend_compress_opts *o) {
    memset(o, 0, sizeof *o);
    o->method = MEND_COMPRESS_RTN;
    o->fmt = mend_qfmt_ggml(MEND_TYPE_Q4_0);
    o->embd_type = MEND_EMBD_KEEP;
    o->act_order = -1;
    o->fit_importance = -1;
}

int mend_type_is_float(uint32_t type) {
    return type == MEND_TYPE_F32 || type == MEND_TYPE_F16 || type == MEND_TYPE_BF16;
}
