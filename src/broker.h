/*
 * broker.h - the one place all broker state is reachable from.
 *
 * The event-loop thread owns everything in `struct broker`: the loop, the
 * configuration, the listeners, every connection, users and vhosts. Nothing
 * in it is locked; work that must block (fsync, later) runs on helper threads
 * and reports back through the loop.
 */
#ifndef WARREN_BROKER_H
#define WARREN_BROKER_H

#include "auth.h"
#include "buffer.h"
#include "config.h"
#include "dedup_log.h"
#include "definitions.h"
#include "exchange.h"
#include "memory.h"
#include "message.h"
#include "store.h"
#include "vhost.h"

#include <ev.h>
#include <stdbool.h>

struct conn;

/* The loop reads every readable socket into this one buffer, so idle
 * connections hold no input buffer of their own. */
#define BROKER_READ_BUF_SIZE (256 * 1024)

/* Drained output buffers kept for the next connection with output. */
#define BROKER_SPARE_OUT 4

typedef struct listener {
    int fd;
    ev_io io;
    char name[80]; /* "127.0.0.1:5672" */
} listener_t;

typedef struct broker {
    struct ev_loop *loop;
    config_t cfg;
    listener_t listeners[CONFIG_MAX_LISTENERS];
    int nlisteners;

    struct conn *conns; /* every connection, doubly linked */
    unsigned nconns;
    struct conn *flush_list; /* connections with output to write before the loop sleeps */
    ev_prepare flush_watcher;

    struct queue *dispatch_list;    /* queues to dispatch before the loop sleeps */
    route_result_t route_result;    /* reused by every publish */
    route_result_t dl_route_result; /* reused by every dead-lettering... */
    bool dl_routing;                /* ...and in use */
    uint64_t route_mark;
    /* Bumped whenever an exchange, queue or binding comes or goes: lookups and
     * routing results remembered under an older value are stale. */
    uint64_t topology_epoch;

    definitions_t defs;           /* durable exchanges, queues, bindings on disk */
    store_t store;                /* persistent messages on disk */
    dedup_log_t dedup_log;        /* deduplication caches of durable owners on disk */
    struct delay *delays;         /* every delayed exchange (delay.h) */
    unsigned alarms;              /* ALARM_* raised (alarm.h) */
    ev_timer disk_timer;          /* free disk space checks */
    struct queue *flow_queues;    /* queues holding back their publishers (flow.h) */
    unsigned flow_held;           /* connections held back */
    ev_timer flow_timer;          /* lets go of queues whose consumers stalled */
    ev_timer mem_timer;           /* memory checks */
    ev_timer trim_timer;          /* free heap pages back to the kernel (memory.c) */
    uint64_t mem_limit;           /* vm_memory_high_watermark in bytes (alarm.c) */
    mem_account_t mem;            /* bytes in messages and buffers (memory.h) */
    struct chan *durable_waiters; /* channels with replies waiting for a sync */
    struct syncer *syncer;        /* the fdatasync thread */
    uint32_t next_queue_id;       /* for durable queues; never reused */

    auth_db_t auth;
    vhost_registry_t vhosts;

    ev_signal sigterm, sigint;
    ev_timer shutdown_timer;
    bool shutting_down;

    uint8_t *read_buf; /* BROKER_READ_BUF_SIZE bytes */
    buf_t spare_out[BROKER_SPARE_OUT];
    message_pool_t msg_pool; /* freed small messages, for reuse */
    unsigned nspare_out;
} broker_t;

extern broker_t broker;

/* Set up users, vhosts and listeners from broker.cfg. 0 or -1 (logged). */
int broker_init(void);
/* Close every connection with 320 CONNECTION_FORCED and stop when they are gone. */
void broker_shutdown(const char *why);
void broker_free(void);

#endif
