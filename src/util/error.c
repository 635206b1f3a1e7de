#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "util.h"

static _Thread_local char g_err[2048];

const char *mend_last_error(void) { return g_err[0] ? g_err : "no error"; }

const char *mend_strerror(int status) {
    switch (status) {
    case MEND_OK: return "OK";
    case MEND_EIO: return "EIO";
    case MEND_EFORMAT: return "EFORMAT";
    case MEND_ENOMEM: return "ENOMEM";
    case MEND_EINVAL: return "EINVAL";
    case MEND_ERANGE: return "ERANGE";
    case MEND_EUNSUPPORTED: return "EUNSUPPORTED";
    default: return "EUNKNOWN";
    }
}

int mend_set_error(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return code;
}

int mend_error_prefix(int code, const char *fmt, ...) {
    char prefix[512], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    size_t k = strlen(prefix);
    memcpy(g_err, prefix, k);
    if (k + 2 < sizeof g_err) {
        g_err[k++] = ':';
        g_err[k++] = ' ';
    }
    size_t room = sizeof g_err - 1 - k;
    size_t n = strnlen(old, room);
    memcpy(g_err + k, old, n);
    g_err[k + n] = 0;
    return code;
}
