/*
 * config.c - parses rabbitmq.conf-style files with inih (Debian libinih-dev)
 * and validates every value. Owns config_t; nothing here touches the loop.
 */
#include "config.h"
#include "log.h"

#include <ini.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_init(config_t *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->listeners[0].port = 5672;
    cfg->nlisteners = 1;
    cfg->default_user = strdup("guest");
    cfg->default_pass = strdup("guest");
    cfg->default_vhost = strdup("/");
    cfg->guest_loopback_only = true;
    cfg->heartbeat = 60;
    cfg->frame_max = 131072;
    cfg->channel_max = 2047;
    cfg->handshake_timeout = 10000;
    cfg->max_message_size = 134217728; /* 128 MiB, as RabbitMQ */
    cfg->log_level = LOG_INFO;
    cfg->data_dir = strdup("data");
    cfg->journal_sync = JOURNAL_SYNC_BATCH;
    cfg->journal_sync_delay = 2;
    cfg->journal_segment_size = 64u << 20;
    cfg->disk_free_limit = 50000000; /* RabbitMQ's 50MB */
    cfg->queue_flow_threshold = 100000;
    cfg->consumer_timeout = 1800000; /* RabbitMQ's 30 minutes */
    cfg->mem_relative = 0.4;         /* RabbitMQ 3.x's vm_memory_high_watermark */
}

void config_free(config_t *cfg) {
    free(cfg->default_user);
    free(cfg->default_pass);
    free(cfg->default_vhost);
    free(cfg->data_dir);
}

static int parse_uint(const char *s, uint64_t max, uint64_t *out) {
    char *end;
    if (*s == '\0' || *s == '-' || *s == '+') return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0' || v > max) return -1;
    *out = v;
    return 0;
}

/* A size as rabbitmq.conf writes it: bytes, or a number with a unit; kB, MB,
 * GB are powers of ten and k/K, KiB, M, MiB, G, GiB powers of two. */
static int parse_size(const char *s, uint64_t *out) {
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"", 1},
                 {"kB", 1000},
                 {"KB", 1000},
                 {"MB", 1000000},
                 {"GB", 1000000000},
                 {"k", 1024},
                 {"K", 1024},
                 {"KiB", 1024},
                 {"kiB", 1024},
                 {"M", 1048576},
                 {"MiB", 1048576},
                 {"G", 1073741824},
                 {"GiB", 1073741824}};
    char *end;
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].unit) != 0) continue;
        if (v > UINT64_MAX / units[i].mult) return -1;
        *out = v * units[i].mult;
        return 0;
    }
    return -1;
}

/* A fraction from 0 to 1 written as digits with at most one point ("0.4",
 * "1", ".75"): no signs, exponents or locale-dependent forms. */
static int parse_fraction(const char *s, double *out) {
    size_t digits = strspn(s, "0123456789");
    if (s[digits] == '.') digits += 1 + strspn(s + digits + 1, "0123456789");
    if (s[digits] != '\0' || strspn(s, ".") == digits) return -1;
    double v = strtod(s, NULL);
    if (v < 0.0 || v > 1.0) return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out) {
    if (strcmp(s, "true") == 0)
        *out = true;
    else if (strcmp(s, "false") == 0)
        *out = false;
    else
        return -1;
    return 0;
}

static void set_string(char **slot, const char *value) {
    free(*slot);
    *slot = strdup(value);
}

int config_parse_listener(const char *value, config_listener_t *out) {
    const char *colon = strrchr(value, ':');
    const char *port = value;
    uint64_t p;

    memset(out, 0, sizeof *out);
    if (colon) {
        size_t hlen = (size_t)(colon - value);
        const char *host = value;
        if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
            host++;
            hlen -= 2;
        }
        if (hlen == 0 || hlen >= sizeof out->host) return -1;
        memcpy(out->host, host, hlen);
        port = colon + 1;
    }
    if (parse_uint(port, 65535, &p) < 0) return -1;
    out->port = (uint16_t)p;
    return 0;
}

static int set_listener(config_t *cfg, const char *value) {
    config_listener_t l;
    if (config_parse_listener(value, &l) < 0) return -1;
    /* The first configured listener replaces the built-in default one. */
    if (!cfg->listeners_set) {
        cfg->nlisteners = 0;
        cfg->listeners_set = true;
    }
    if (cfg->nlisteners == CONFIG_MAX_LISTENERS) return -1;
    cfg->listeners[cfg->nlisteners++] = l;
    return 0;
}

#define ERR(...) (snprintf(err, errlen, __VA_ARGS__), -1)

int config_set(config_t *cfg, const char *key, const char *value, char *err, size_t errlen) {
    uint64_t n;
    bool b;

    if (strncmp(key, "listeners.tcp.", 14) == 0 && key[14] != '\0') {
        if (set_listener(cfg, value) < 0)
            return ERR("%s: expected PORT or HOST:PORT, got '%s'", key, value);
    } else if (strcmp(key, "default_user") == 0) {
        set_string(&cfg->default_user, value);
    } else if (strcmp(key, "default_pass") == 0) {
        set_string(&cfg->default_pass, value);
    } else if (strcmp(key, "default_vhost") == 0) {
        set_string(&cfg->default_vhost, value);
    } else if (strcmp(key, "data_dir") == 0) {
        if (*value == '\0') return ERR("data_dir: must not be empty");
        set_string(&cfg->data_dir, value);
    } else if (strcmp(key, "journal.sync") == 0) {
        if (strcmp(value, "batch") == 0)
            cfg->journal_sync = JOURNAL_SYNC_BATCH;
        else if (strcmp(value, "always") == 0)
            cfg->journal_sync = JOURNAL_SYNC_ALWAYS;
        else if (strcmp(value, "off") == 0)
            cfg->journal_sync = JOURNAL_SYNC_OFF;
        else
            return ERR("journal.sync: expected batch, always or off, got '%s'", value);
    } else if (strcmp(key, "journal.sync_delay") == 0) {
        if (parse_uint(value, 200, &n) < 0)
            return ERR("journal.sync_delay: expected milliseconds (0-200), got '%s'", value);
        cfg->journal_sync_delay = (uint32_t)n;
    } else if (strcmp(key, "journal.segment_size") == 0) {
        if (parse_uint(value, 1u << 30, &n) < 0 || n < 65536)
            return ERR("journal.segment_size: expected bytes (65536-1073741824), got '%s'", value);
        cfg->journal_segment_size = n;
    } else if (strcmp(key, "disk_free_limit.absolute") == 0) {
        if (parse_size(value, &n) < 0)
            return ERR("disk_free_limit.absolute: expected bytes, optionally with a unit (kB, MB, "
                       "GB, KiB, MiB, GiB...), got '%s'",
                       value);
        cfg->disk_free_limit = n;
    } else if (strcmp(key, "consumer_timeout") == 0) {
        if (parse_uint(value, INT32_MAX, &n) < 0)
            return ERR("consumer_timeout: expected milliseconds (0 = none), got '%s'", value);
        cfg->consumer_timeout = (uint32_t)n;
    } else if (strcmp(key, "queue_flow_threshold") == 0) {
        if (parse_uint(value, UINT32_MAX, &n) < 0)
            return ERR("queue_flow_threshold: expected a number of messages (0 = off), got '%s'",
                       value);
        cfg->queue_flow_threshold = (uint32_t)n;
    } else if (strcmp(key, "vm_memory_high_watermark.relative") == 0) {
        if (parse_fraction(value, &cfg->mem_relative) < 0)
            return ERR("vm_memory_high_watermark.relative: expected a fraction of total memory "
                       "(0-1, e.g. 0.4), got '%s'",
                       value);
    } else if (strcmp(key, "vm_memory_high_watermark.absolute") == 0) {
        if (parse_size(value, &cfg->mem_absolute) < 0)
            return ERR("vm_memory_high_watermark.absolute: expected bytes, optionally with a unit "
                       "(kB, MB, GB, KiB, MiB, GiB...), got '%s'",
                       value);
        cfg->mem_absolute_set = true;
    } else if (strcmp(key, "heartbeat") == 0) {
        if (parse_uint(value, 65535, &n) < 0)
            return ERR("heartbeat: expected seconds (0-65535), got '%s'", value);
        cfg->heartbeat = (uint16_t)n;
    } else if (strcmp(key, "frame_max") == 0) {
        if (parse_uint(value, UINT32_MAX, &n) < 0 || (n != 0 && n < 4096))
            return ERR("frame_max: expected 0 or 4096-4294967295 bytes, got '%s'", value);
        cfg->frame_max = (uint32_t)n;
    } else if (strcmp(key, "channel_max") == 0) {
        if (parse_uint(value, 65535, &n) < 0)
            return ERR("channel_max: expected 0-65535, got '%s'", value);
        cfg->channel_max = (uint16_t)n;
    } else if (strcmp(key, "handshake_timeout") == 0) {
        if (parse_uint(value, 3600000, &n) < 0 || n == 0)
            return ERR("handshake_timeout: expected milliseconds (1-3600000), got '%s'", value);
        cfg->handshake_timeout = (uint32_t)n;
    } else if (strcmp(key, "max_message_size") == 0) {
        if (parse_uint(value, 536870912, &n) < 0 || n == 0)
            return ERR("max_message_size: expected bytes (1-536870912), got '%s'", value);
        cfg->max_message_size = n;
    } else if (strcmp(key, "log.console.level") == 0) {
        int lvl = log_level_parse(value);
        if (lvl < 0)
            return ERR("log.console.level: expected debug, info, warning, error, critical or "
                       "none, got '%s'",
                       value);
        cfg->log_level = lvl;
    } else if (strcmp(key, "log.console") == 0) {
        if (parse_bool(value, &b) < 0) return ERR("log.console: expected true or false");
        if (!b) cfg->log_level = LOG_NONE;
    } else if (strcmp(key, "loopback_users") == 0) {
        if (strcmp(value, "none") != 0) return ERR("loopback_users: expected 'none'");
        cfg->guest_loopback_only = false;
    } else if (strcmp(key, "loopback_users.guest") == 0) {
        if (parse_bool(value, &b) < 0) return ERR("loopback_users.guest: expected true or false");
        cfg->guest_loopback_only = b;
    } else {
        return ERR("unknown setting '%s'", key);
    }
    return 0;
}

typedef struct load_ctx {
    config_t *cfg;
    char msg[256];
    bool failed;
} load_ctx_t;

static int on_ini_entry(void *user, const char *section, const char *name, const char *value) {
    load_ctx_t *ctx = user;
    if (ctx->failed) return 0;
    if (section[0] != '\0') {
        snprintf(ctx->msg, sizeof ctx->msg, "sections ([%s]) are not part of this format", section);
    } else if (config_set(ctx->cfg, name, value, ctx->msg, sizeof ctx->msg) == 0) {
        return 1;
    }
    ctx->failed = true;
    return 0;
}

int config_load(config_t *cfg, const char *path, char *err, size_t errlen) {
    load_ctx_t ctx = {.cfg = cfg};
    int rc = ini_parse(path, on_ini_entry, &ctx);
    if (rc == -1) return ERR("%s: cannot open: %s", path, strerror(errno));
    if (rc == -2) return ERR("%s: out of memory", path);
    if (rc > 0) {
        if (!ctx.failed) snprintf(ctx.msg, sizeof ctx.msg, "expected 'key = value'");
        return ERR("%s:%d: %s", path, rc, ctx.msg);
    }
    return 0;
}
