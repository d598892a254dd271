/*
 * config.h - the broker's settings: defaults, the config file, the command line.
 *
 * The file is rabbitmq.conf's `key = value` format with RabbitMQ's key names
 * where RabbitMQ has one. Loading is strict: an unknown key or a bad value is
 * an error naming the file and line, and the broker refuses to start.
 */
#ifndef WARREN_CONFIG_H
#define WARREN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_LISTENERS 8

typedef struct config_listener {
    char host[64]; /* "" = every interface */
    uint16_t port;
} config_listener_t;

typedef struct config {
    config_listener_t listeners[CONFIG_MAX_LISTENERS];
    int nlisteners;
    bool listeners_set; /* a listener was configured: the default one is gone */
    char *default_user;
    char *default_pass;
    char *default_vhost;
    bool guest_loopback_only;   /* loopback_users.guest */
    uint16_t heartbeat;         /* seconds, 0 = off */
    uint32_t frame_max;         /* bytes, including the 8 bytes of framing */
    uint16_t channel_max;       /* 0 = 65535 */
    uint32_t handshake_timeout; /* milliseconds */
    uint64_t max_message_size;  /* bytes of body */
    int log_level;              /* log_level_t */
    char *data_dir;
    int journal_sync;              /* journal_sync_t */
    uint32_t journal_sync_delay;   /* milliseconds a batch waits for company (batch mode) */
    uint64_t journal_segment_size; /* bytes per message segment file */
    uint64_t disk_free_limit;      /* publishers are blocked below this many free bytes */
    uint32_t consumer_timeout;     /* ms a delivery may wait for its ack; 0 = forever */
    uint32_t queue_flow_threshold; /* ready messages past which consumed queues hold back
                                      publishers (flow.h); 0 = never */
    double mem_relative;           /* vm_memory_high_watermark.relative: of total memory */
    uint64_t mem_absolute;         /* vm_memory_high_watermark.absolute: bytes... */
    bool mem_absolute_set;         /* ...which, when set, override the relative limit */
} config_t;

/* journal.sync (docs/journal.md, "Sync semantics"). */
typedef enum journal_sync {
    JOURNAL_SYNC_BATCH,
    JOURNAL_SYNC_ALWAYS,
    JOURNAL_SYNC_OFF
} journal_sync_t;

void config_init(config_t *cfg);
void config_free(config_t *cfg);

/* Load a file over the current values. On error writes "file:line: message"
 * into err and returns -1. */
int config_load(config_t *cfg, const char *path, char *err, size_t errlen);

/* Apply one `key = value` setting (used by the file loader and the tests).
 * Returns 0, or -1 with a message in err. */
int config_set(config_t *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Parse "PORT", "HOST:PORT" or "[V6]:PORT". */
int config_parse_listener(const char *value, config_listener_t *out);

#endif
