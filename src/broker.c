/*
 * broker.c - the broker instance: start-up from the configuration, the
 * end-of-iteration flush, and orderly shutdown.
 *
 * Owns `broker`, the single struct through which all state is reached.
 */
#include "broker.h"
#include "alarm.h"
#include "flow.h"
#include "connection.h"
#include "listener.h"
#include "log.h"
#include "memory.h"
#include "queue.h"
#include "syncer.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define SHUTDOWN_GRACE 5.0 /* seconds for clients to answer connection.close */

broker_t broker;

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
    /* Dispatching queues frames for connections; flushing can tear down a dead
     * connection, whose unacked messages are requeued and must flow at once,
     * not when the next socket event happens to wake the loop. */
    /* Between operations, and before their replies go out. */
    definitions_compact_if_due(&broker.defs);
    /* The journal's records go out before the replies that depend on them. */
    do {
        queue_dispatch_all();
        dedup_log_flush(); /* its syncs are requested before the journal's */
        store_flush();
        conn_flush_all();
    } while (broker.dispatch_list || broker.flush_list);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents) {
    (void)loop;
    (void)revents;
    broker_shutdown(w->signum == SIGTERM ? "SIGTERM received" : "SIGINT received");
}

static void on_shutdown_timeout(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)w;
    (void)revents;
    log_warning("%u connections did not close in time; exiting anyway", broker.nconns);
    ev_break(loop, EVBREAK_ALL);
}

static int broker_init_users(void) {
    config_t *cfg = &broker.cfg;
    user_t *u = auth_add_user(&broker.auth, cfg->default_user, cfg->default_pass, "administrator");
    vhost_t *vh = vhost_add(&broker.vhosts, cfg->default_vhost);
    if (!u || !vh || exchange_declare_builtins(vh) < 0) return -1;
    vhost_set_permissions(vh, u, ".*", ".*", ".*");
    return 0;
}

static void on_synced(void *ctx, uint64_t ticket, int err) {
    (void)ctx;
    store_synced(ticket, err);
}

int broker_init(void) {
    broker.defs.fd = -1; /* nothing is recorded until the definitions are open */
    broker.dedup_log.fd = -1;
    broker.next_queue_id = 1;
    broker.loop = ev_default_loop(EVFLAG_AUTO);
    broker.read_buf = malloc(BROKER_READ_BUF_SIZE);
    if (!broker.loop || !broker.read_buf) {
        log_error("cannot initialise the event loop");
        return -1;
    }
    if (broker_init_users() < 0) return -1;
    double delay = broker.cfg.journal_sync == JOURNAL_SYNC_BATCH
                       ? broker.cfg.journal_sync_delay / 1000.0
                       : 0.0;
    broker.store.closed = true; /* nothing is recorded until the journal is open */
    broker.syncer = syncer_new(broker.loop, on_synced, NULL, delay);
    if (!broker.syncer || definitions_open(&broker.defs, broker.cfg.data_dir) < 0 ||
        store_open(&broker.store, broker.cfg.data_dir) < 0 ||
        dedup_log_open(&broker.dedup_log, broker.cfg.data_dir) < 0)
        return -1;

    listener_raise_fd_limit();
    for (int i = 0; i < broker.cfg.nlisteners; i++) {
        if (listener_open(&broker.listeners[i], &broker.cfg.listeners[i]) < 0) return -1;
        broker.nlisteners++;
    }

    alarm_start();
    mem_trim_start();
    ev_prepare_init(&broker.flush_watcher, on_prepare);
    ev_prepare_start(broker.loop, &broker.flush_watcher);
    ev_signal_init(&broker.sigterm, on_signal, SIGTERM);
    ev_signal_init(&broker.sigint, on_signal, SIGINT);
    ev_signal_start(broker.loop, &broker.sigterm);
    ev_signal_start(broker.loop, &broker.sigint);
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

void broker_shutdown(const char *why) {
    if (broker.shutting_down) return;
    broker.shutting_down = true;
    log_info("stopping: %s; closing %u connections", why, broker.nconns);
    for (int i = 0; i < broker.nlisteners; i++)
        listener_close(&broker.listeners[i]);
    alarm_stop();
    mem_trim_stop();
    flow_stop();
    for (conn_t *c = broker.conns; c; c = c->next) {
        if (c->state == CONN_OPEN || (c->state > CONN_AWAIT_HEADER && c->state < CONN_CLOSING))
            conn_close(c, WN_CONNECTION_FORCED, 0,
                       "broker forced connection closure with reason 'shutdown'");
        else
            conn_drop(c, "broker shutting down");
    }
    if (broker.nconns == 0) {
        ev_break(broker.loop, EVBREAK_ALL);
        return;
    }
    ev_timer_init(&broker.shutdown_timer, on_shutdown_timeout, SHUTDOWN_GRACE, 0.);
    ev_timer_start(broker.loop, &broker.shutdown_timer);
}

void broker_free(void) {
    broker.defs.suspended = true; /* tearing down is not deleting */
    store_close(&broker.store);
    dedup_log_close(&broker.dedup_log);
    auth_free(&broker.auth);
    vhost_free_all(&broker.vhosts);
    if (broker.syncer) syncer_free(broker.syncer);
    definitions_close(&broker.defs);
    route_result_free(&broker.route_result);
    route_result_free(&broker.dl_route_result);
    free(broker.read_buf);
    message_pool_free(&broker.msg_pool);
    while (broker.nspare_out)
        buf_free(&broker.spare_out[--broker.nspare_out]);
    config_free(&broker.cfg);
}
