/*
 * fileio.c - whole-file reads, complete writes, directory syncs (see fileio.h).
 */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

int fileio_read_all(const char *path, uint8_t **out, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    *out = NULL;
    *len = 0;
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    if (fstat(fd, &st) < 0 || !(*out = malloc((size_t)st.st_size + 1))) {
        close(fd);
        return -1;
    }
    ssize_t n = st.st_size ? read(fd, *out, (size_t)st.st_size) : 0;
    close(fd);
    if (n != st.st_size) return -1;
    *len = (size_t)n;
    return 0;
}

int fileio_write_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int fileio_sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}
