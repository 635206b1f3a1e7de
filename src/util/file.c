#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <omp.h>
#include "util.h"

int mend_map_file(mend_map *m, const char *path) {
    memset(m, 0, sizeof *m);
    m->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mend_set_error(MEND_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mend_set_error(MEND_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mend_set_error(MEND_EIO, "%s: not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    m->fd = fd;
    if (m->size == 0) return 0;
    void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(fd);
        m->fd = -1;
        return mend_set_error(MEND_EIO, "%s: cannot mmap %zu bytes: %s", path, m->size, strerror(e));
    }
    m->data = p;
    m->mapped = 1;
    return 0;
}

void mend_unmap(mend_map *m) {
    if (!m) return;
    if (m->data) {
        if (m->mapped) munmap((void *)m->data, m->size);
        else free((void *)m->data);
    }
    if (m->fd >= 0) close(m->fd);
    memset(m, 0, sizeof *m);
    m->fd = -1;
}

void mend_map_release(const mend_map *m, const void *p, size_t n) {
    if (!m || !m->mapped || !m->data || !p) return;
    const uintptr_t lo = (uintptr_t)m->data, hi = lo + m->size, a = (uintptr_t)p;
    if (a < lo || a > hi || n > hi - a) return;
    const long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0) return;
    const uintptr_t page = (uintptr_t)ps;
    const uintptr_t b0 = (a + page - 1) & ~(page - 1), b1 = (a + n) & ~(page - 1);
    if (b1 > b0) madvise((void *)b0, b1 - b0, MADV_DONTNEED);
}

int mend_read_file(const char *path, size_t max_bytes, char **buf, size_t *len) {
    *buf = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return mend_set_error(MEND_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return mend_set_error(MEND_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return mend_set_error(MEND_ERANGE, "%s: file is %lld bytes, more than the limit of %zu",
                              path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *b = malloc(n + 1);
    if (!b) {
        fclose(f);
        return mend_set_error(MEND_ENOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = n ? fread(b, 1, n, f) : 0;
    fclose(f);
    if (got != n) {
        free(b);
        return mend_set_error(MEND_EIO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    b[n] = 0;
    *buf = b;
    if (len) *len = n;
    return 0;
}

int mend_write_file_atomic(const char *path, const void *data, size_t len) {
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    if (!tmp) return mend_set_error(MEND_ENOMEM, "%s: out of memory", path);
    snprintf(tmp, pl + 32, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return mend_set_error(MEND_EIO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            free(tmp);
            return mend_set_error(MEND_EIO, "%s: write failed: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return mend_set_error(MEND_EIO, "%s: fsync/close failed: %s", path, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return mend_set_error(MEND_EIO, "%s: rename failed: %s", path, strerror(e));
    }
    free(tmp);
    return 0;
}

int mend_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int mend_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int mend_mkdir_p(const char *path) {
    char *p = mend_strdup(path);
    if (!p) return mend_set_error(MEND_ENOMEM, "out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                int e = errno;
                int rc = mend_set_error(MEND_EIO, "%s: cannot create directory: %s", p, strerror(e));
                free(p);
                return rc;
            }
            *s = '/';
        }
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        int rc = mend_set_error(MEND_EIO, "%s: cannot create directory: %s", p, strerror(e));
        free(p);
        return rc;
    }
    free(p);
    return 0;
}

char *mend_strdup(const char *s) { return s ? mend_strndup(s, strlen(s)) : NULL; }

char *mend_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *mend_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *r = malloc(a + b + 2);
    if (!r) return NULL;
    memcpy(r, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') r[k++] = '/';
    memcpy(r + k, name, b + 1);
    return r;
}

double mend_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int g_threads = 0;

void mend_set_threads(int n) {
    if (n <= 0) n = omp_get_num_procs();
    g_threads = n;
    omp_set_num_threads(n);
    extern void openblas_set_num_threads(int);
    openblas_set_num_threads(n);
}

int mend_get_threads(void) { return g_threads > 0 ? g_threads : omp_get_max_threads(); }
