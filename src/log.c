/*
 * log.c - the broker's log: timestamped lines on stderr, filtered by level.
 * Owns only the threshold; everything else is formatting.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

log_level_t log_threshold = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warning", "error", "critical", "none"};

int log_level_parse(const char *name) {
    for (int i = 0; i <= LOG_NONE; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

void log_write(log_level_t level, const char *fmt, ...) {
    char line[1024];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%d %H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03d [%s] ", (int)(tv.tv_usec / 1000),
                          level_names[level]);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    /* One fputs per line so lines from a crash handler or a helper thread never interleave. */
    size_t len = strlen(line);
    if (len + 1 < sizeof line) {
        line[len] = '\n';
        line[len + 1] = '\0';
    }
    fputs(line, stderr);
}
