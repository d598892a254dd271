/*
 * log.h - leveled, timestamped logging to stderr.
 *
 * One line per event, RabbitMQ-like: "2026-11-25 10:00:00.123 [info] text".
 * The level is set once from `log.console.level`; lines below it cost one
 * comparison.
 */
#ifndef WARREN_LOG_H
#define WARREN_LOG_H

typedef enum log_level {
    LOG_DEBUG,
    LOG_INFO,
    LOG_WARNING,
    LOG_ERROR,
    LOG_CRITICAL,
    LOG_NONE,
} log_level_t;

extern log_level_t log_threshold;

/* Parse "debug", "info", "warning", "error", "critical", "none"; -1 if not one. */
int log_level_parse(const char *name);

void log_write(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) >= log_threshold) log_write((lvl), __VA_ARGS__);                                 \
    } while (0)
#define log_debug(...)   log_at(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    log_at(LOG_INFO, __VA_ARGS__)
#define log_warning(...) log_at(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   log_at(LOG_ERROR, __VA_ARGS__)

#endif
