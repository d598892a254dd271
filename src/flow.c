/*
 * flow.c - publisher flow control (see flow.h).
 *
 * Owns the list of queues in flow, the count of held connections and the
 * timer that lets go of queues whose consumers stopped taking messages.
 * Touches queues only through their flow fields and connections only
 * through conn_set_flow.
 */
#include "flow.h"
#include "connection.h"
#include "log.h"

#define FLOW_STALL 1.0 /* seconds without a delivery: holding publishers back helps no one */

static bool consumers_active(const queue_t *q) {
    return q->consumers && ev_now(broker.loop) - q->last_delivery < FLOW_STALL;
}

static void on_flow_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
    queue_t *next;
    for (queue_t *q = broker.flow_queues; q; q = next) {
        next = q->flow_next;
        if (!consumers_active(q)) flow_queue_release(q);
    }
}

void flow_queue_check(queue_t *q) {
    if (!consumers_active(q)) return;
    q->flow = true;
    q->flow_prev = NULL;
    q->flow_next = broker.flow_queues;
    if (q->flow_next) q->flow_next->flow_prev = q;
    broker.flow_queues = q;
    log_debug("queue '%s' in vhost '%s': %u ready, holding back its publishers", q->name,
              q->vhost->name, q->count);
    if (!ev_is_active(&broker.flow_timer)) {
        ev_timer_init(&broker.flow_timer, on_flow_timer, FLOW_STALL, FLOW_STALL);
        ev_timer_start(broker.loop, &broker.flow_timer);
    }
}

/* Every held connection goes on; one that still publishes to a queue in flow
 * is held again after its next read. */
static void release_all(void) {
    for (conn_t *c = broker.conns; c && broker.flow_held; c = c->next)
        if (c->flow_held) {
            broker.flow_held--;
            conn_set_flow(c, false);
        }
}

void flow_queue_release(queue_t *q) {
    if (!q->flow) return;
    q->flow = false;
    if (q->flow_prev)
        q->flow_prev->flow_next = q->flow_next;
    else
        broker.flow_queues = q->flow_next;
    if (q->flow_next) q->flow_next->flow_prev = q->flow_prev;
    q->flow_prev = q->flow_next = NULL;
    log_debug("queue '%s' in vhost '%s': %u ready, letting its publishers go", q->name,
              q->vhost->name, q->count);
    if (!broker.flow_queues) ev_timer_stop(broker.loop, &broker.flow_timer);
    release_all();
}

void flow_hold(conn_t *c) {
    if (c->flow_held) return;
    broker.flow_held++;
    conn_set_flow(c, true);
}

void flow_conn_gone(conn_t *c) {
    if (!c->flow_held) return;
    c->flow_held = false;
    broker.flow_held--;
}

void flow_stop(void) {
    ev_timer_stop(broker.loop, &broker.flow_timer);
}
