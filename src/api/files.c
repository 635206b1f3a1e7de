/* Public helpers of mend/files.h that are not the library's own file code
 * (util/file.c): names and sizes for messages. */
#include <stdio.h>
#include <string.h>

#include "mend.h"

const char *mend_basename(const char *path, char *buf, size_t cap) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && path[s - 1] != '/') s--;
    snprintf(buf, cap, "%.*s", (int)(n - s), path + s);
    return buf;
}

const char *mend_fmt_bytes(double bytes, char *buf, size_t cap) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024.0 && i < 4) bytes /= 1024.0, i++;
    snprintf(buf, cap, i ? "%.2f %s" : "%.0f %s", bytes, u[i]);
    return buf;
}
