/*
 * enospc_shim.c - an LD_PRELOAD library that makes writes to the broker's
 * message segments fail with ENOSPC while a flag file exists, for the
 * disk-full test on machines where it cannot mount a small filesystem.
 *
 *   WARREN_ENOSPC_FLAG=/path/to/flag LD_PRELOAD=.../enospc_shim.so warren ...
 *
 * Only write() to files whose name ends in ".seg" fails; sockets, logs and
 * the definitions log are left alone.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

typedef ssize_t (*write_fn)(int, const void *, size_t);

static int is_segment(int fd) {
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n < 4) return 0;
    path[n] = '\0';
    return strcmp(path + n - 4, ".seg") == 0;
}

ssize_t write(int fd, const void *buf, size_t count) {
    static write_fn real;
    const char *flag = getenv("WARREN_ENOSPC_FLAG");
    if (!real) real = (write_fn)dlsym(RTLD_NEXT, "write");
    if (flag && access(flag, F_OK) == 0 && is_segment(fd)) {
        errno = ENOSPC;
        return -1;
    }
    return real(fd, buf, count);
}
