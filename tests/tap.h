/*
 * tap.h - a minimal Test Anything Protocol emitter for Warren's C tests.
 *
 * Each check prints "ok N - name" or "not ok N - name" and the program ends
 * with the plan, so automake's TAP driver counts every case. A failed check
 * prints where it failed and goes on; tap_done() returns the exit status.
 */
#ifndef WARREN_TAP_H
#define WARREN_TAP_H

#include <stdarg.h>
#include <stdio.h>

/* One count for the whole program, even when several of its source files
 * (a test and its harness) report cases: weak definitions merge at link time. */
__attribute__((weak)) int tap_count;
__attribute__((weak)) int tap_failed;

static inline void tap_result(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static inline void tap_result(int ok, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    tap_count++;
    printf("%s %d - ", ok ? "ok" : "not ok", tap_count);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!ok) {
        tap_failed++;
        printf("#   failed at %s:%d\n", file, line);
    }
    fflush(stdout);
}

/* ok(cond, "name %d", arg): one test case. */
#define ok(cond, ...) tap_result(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* A diagnostic line, shown in the log. */
#define diag(...)                                                                                  \
    do {                                                                                           \
        printf("# ");                                                                              \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
    } while (0)

static inline int tap_done(void) {
    printf("1..%d\n", tap_count);
    return tap_failed ? 1 : 0;
}

#endif
