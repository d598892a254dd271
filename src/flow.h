/*
 * flow.h - publisher flow control: a queue whose consumers fall behind holds
 * back the connections that publish to it.
 *
 * Warren takes in publishes much faster than a consumer that acknowledges can
 * turn its prefetch window around, and one loop serves both: without
 * push-back the backlog of a consumed queue grows without bound while its
 * consumers get a trickle. So a queue with consumers that are taking
 * messages (one delivered in the last second) and more than
 * `queue_flow_threshold` ready messages is "in flow": a connection that
 * routes a message to it is not read from again (after the chunk it is in)
 * until the queue is down to half the threshold, loses its consumers, stops
 * delivering for a second, or is deleted. This is RabbitMQ's "flow"
 * connection state, not a resource alarm: nothing is sent to the client.
 * Queues without consumers are not held back (they are what the memory and
 * disk alarms are for).
 */
#ifndef WARREN_FLOW_H
#define WARREN_FLOW_H

#include "broker.h"
#include "queue.h"

#include <stdbool.h>

struct conn;

/* Called through the inline checks below, which keep the message path cheap. */
void flow_queue_check(queue_t *q);
void flow_hold(struct conn *c);
/* Leave flow now (back under half the threshold, no consumers, or going). */
void flow_queue_release(queue_t *q);

/* A message was added: the queue may enter flow. */
static inline void flow_queue_pushed(queue_t *q) {
    if (!q->flow && q->consumers && broker.cfg.queue_flow_threshold &&
        q->count > broker.cfg.queue_flow_threshold)
        flow_queue_check(q);
}

/* A message was taken: the queue may leave flow. */
static inline void flow_queue_taken(queue_t *q) {
    if (q->flow && q->count <= broker.cfg.queue_flow_threshold / 2) flow_queue_release(q);
}

/* A publisher routed a message to q: hold it back if q is in flow. */
static inline void flow_published_to(struct conn *c, const queue_t *q) {
    if (q->flow) flow_hold(c);
}

/* A connection is going: forget it. */
void flow_conn_gone(struct conn *c);

void flow_stop(void);

#endif
