/* Public helpers of mend/files.h that are not the library's own file code
 * (util/file.c): names and sizes for messages. */
#include <math.h>
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

const char *mend_file_title(const char *path, char *buf, size_t cap) {
    mend_basename(path, buf, cap);
    size_t n = strlen(buf);
    if (n > 6 && !strcmp(buf + n - 6, ".jsonl")) buf[n - 6] = 0;
    return buf;
}

const char *mend_fmt_duration(double s, char *buf, size_t cap) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%02ld:%02ld", t / 60, t % 60);
    return buf;
}

const char *mend_fmt_bytes(double bytes, char *buf, size_t cap) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024.0 && i < 4) bytes /= 1024.0, i++;
    snprintf(buf, cap, i ? "%.2f %s" : "%.0f %s", bytes, u[i]);
    return buf;
}
