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
#include "config.h"
#include "dedup_log.h"
#include "definitions.h"
#include "exchange.h"
#include "store.h"
#include "vhost.h"

#include <ev.h>
#include <stdbool.h>

struct conn;

/* The loop reads every readable socket into this one buffer, so idle
 * connections hold no input buffer of their own. */
#define BROKER_READ_BUF_SIZE (256 * 1024)

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

    struct queue *dispatch_list; /* queues to dispatch before the loop sleeps */
    route_result_t route_result; /* reused by every publish */
    uint64_t route_mark;

    definitions_t defs;           /* durable exchanges, queues, bindings on disk */
    store_t store;                /* persistent messages on disk */
    dedup_log_t dedup_log;        /* deduplication caches of durable owners on disk */
    struct delay *delays;         /* every delayed exchange (delay.h) */
    unsigned alarms;              /* ALARM_* raised (alarm.h) */
    ev_timer disk_timer;          /* free disk space checks */
    struct queue *flow_queues;    /* queues holding back their publishers (flow.h) */
    unsigned flow_held;           /* connections held back */
    ev_timer flow_timer;          /* lets go of queues whose consumers stalled */
    struct chan *durable_waiters; /* channels with replies waiting for a sync */
    struct syncer *syncer;        /* the fdatasync thread */
    uint32_t next_queue_id;       /* for durable queues; never reused */

    auth_db_t auth;
    vhost_registry_t vhosts;

    ev_signal sigterm, sigint;
    ev_timer shutdown_timer;
    bool shutting_down;

    uint8_t *read_buf; /* BROKER_READ_BUF_SIZE bytes */
} broker_t;

extern broker_t broker;

/* Set up users, vhosts and listeners from broker.cfg. 0 or -1 (logged). */
int broker_init(void);
/* Close every connection with 320 CONNECTION_FORCED and stop when they are gone. */
void broker_shutdown(const char *why);
void broker_free(void);

#endif
