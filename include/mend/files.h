/* mend public API: the file and text helpers every client needs, as the
 * library itself uses them. Included by mend.h. */
#ifndef MEND_FILES_API_H
#define MEND_FILES_API_H

#include "mend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Read a whole file into a malloc'd buffer with a trailing NUL; MEND_EIO
 * naming the file, MEND_ERANGE when it is larger than max_bytes. */
int mend_read_file(const char *path, size_t max_bytes, char **buf, size_t *len);
/* Write via a temporary file in the same directory, fsync, rename: readers
 * see the old file or the new one, never a part. */
int mend_write_file_atomic(const char *path, const void *data, size_t len);
/* 1 when path exists (any kind) / is a directory, else 0. */
int mend_file_exists(const char *path);
int mend_is_dir(const char *path);
/* mkdir -p */
int mend_mkdir_p(const char *path);
/* malloc'd "dir/name"; NULL when out of memory. */
char *mend_path_join(const char *dir, const char *name);
/* The last component of path (trailing slashes dropped) into buf (returned). */
const char *mend_basename(const char *path, char *buf, size_t cap);
/* The name of a task or results file for tables: its last component
 * (mend_basename) without ".jsonl", into buf (returned). */
const char *mend_file_title(const char *path, char *buf, size_t cap);
/* "512 B", "1.50 MiB", ... into buf (returned). */
const char *mend_fmt_bytes(double bytes, char *buf, size_t cap);
/* "03:07" or "1:02:03" for a duration in seconds into buf (returned). */
const char *mend_fmt_duration(double seconds, char *buf, size_t cap);
/* Monotonic seconds. */
double mend_now(void);

#ifdef __cplusplus
}
#endif
#endif
