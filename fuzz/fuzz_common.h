/* Shared helpers of the fuzz targets: inputs that the readers take as paths
 * are written to an anonymous in-memory file (memfd, read through
 * /proc/self/fd/N) or to a private scratch directory under /dev/shm (or
 * $TMPDIR); multi-file inputs are split at FUZZ_SEP. */
#ifndef MEND_FUZZ_COMMON_H
#define MEND_FUZZ_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* separator between the files of one input (also in fuzz/mend.dict) */
#define FUZZ_SEP "\n--8<--\n"
#define FUZZ_SEP_LEN 8

/* Write data to a fresh memfd; *path gets "/proc/self/fd/N". Returns the fd
 * (close it when done) or -1. */
static inline int fuzz_memfd(const uint8_t *data, size_t size, char path[64]) {
    int fd = memfd_create("mend-fuzz", MFD_CLOEXEC);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

static char fuzz_dir_[256];

/* remove the scratch directory (flat: the targets create no subdirectories
 * except the bank's, which holds only bank.json) */
static inline void fuzz_scratch_cleanup(void) {
    char cmd[300];
    if (!fuzz_dir_[0] || strchr(fuzz_dir_, '\''))
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", fuzz_dir_);
}

/* A scratch directory private to this process (created once, removed at exit). */
static inline const char *fuzz_scratch_dir(void) {
    char *dir = fuzz_dir_;
    if (dir[0]) return dir;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    /* fixed width: the path length must not vary with the pid (paths end up
     * in error messages, and loop counts over them in the coverage) */
    snprintf(dir, sizeof fuzz_dir_, "%s/mend-fuzz-%010d", base, (int)getpid());
    mkdir(dir, 0700);
    atexit(fuzz_scratch_cleanup);
    return dir;
}

/* Write (or with data == NULL remove) dir/name. */
static inline int fuzz_put(const char *dir, const char *name, const uint8_t *data, size_t size) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);   /* never write through a link to a fixture */
    if (!data) return 0;
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = size == 0 || fwrite(data, 1, size, f) == size;
    ok = fclose(f) == 0 && ok;
    return ok ? 0 : -1;
}

/* Split data at the first FUZZ_SEP into [head, tail); tail is NULL when absent. */
static inline void fuzz_split(const uint8_t *data, size_t size, const uint8_t **head, size_t *hn,
                              const uint8_t **tail, size_t *tn) {
    const uint8_t *s = size >= FUZZ_SEP_LEN ? memmem(data, size, FUZZ_SEP, FUZZ_SEP_LEN) : NULL;
    *head = data;
    if (!s) {
        *hn = size;
        *tail = NULL;
        *tn = 0;
        return;
    }
    *hn = (size_t)(s - data);
    *tail = s + FUZZ_SEP_LEN;
    *tn = size - *hn - FUZZ_SEP_LEN;
}

/* Sum every byte of a buffer so that ASan sees each one being read. */
static inline unsigned fuzz_touch(const void *p, size_t n) {
    const volatile uint8_t *b = (const volatile uint8_t *)p;
    unsigned s = 0;
    for (size_t i = 0; i < n; i++) s += b[i];
    return s;
}

/* Path of a file under the source tree (MEND_SOURCE_DIR is compiled in;
 * $MEND_SOURCE_DIR overrides it). */
static inline const char *fuzz_src(const char *rel) {
    static char buf[4][1024];
    static int k;
    const char *root = getenv("MEND_SOURCE_DIR");
    if (!root) root = MEND_SOURCE_DIR;
    char *b = buf[k++ & 3];
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    return b;
}

#endif
