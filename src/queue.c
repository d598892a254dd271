/*
 * queue.c - queue storage, consumer selection and dispatch.
 *
 * Owns queue_t and its ring of ready messages. Delivery itself (frames,
 * delivery tags, prefetch windows) belongs to consumer.c; this file decides
 * which consumer gets the next message.
 */
#include "queue.h"
#include "broker.h"
#include "connection.h"
#include "consumer.h"
#include "dead_letter.h"
#include "dedup.h"
#include "definitions.h"
#include "exchange.h"
#include "expiry.h"
#include "flow.h"
#include "limits.h"
#include "log.h"
#include "ring.h"
#include "store.h"
#include "table.h"
#include "vhost.h"

#include <stdlib.h>
#include <string.h>

/* ---- registry ------------------------------------------------------------ */

queue_t *queue_find(vhost_t *vh, wn_bytes_t name) {
    queue_t *q = NULL;
    HASH_FIND(hh, vh->queues, name.len ? name.ptr : (const uint8_t *)"", name.len, q);
    return q;
}

/* The arguments that change how the queue behaves (validated by declare.c). */
static void queue_read_args(queue_t *q) {
    wn_value_t v;
    int64_t n;
    if (wn_table_get(q->args, "x-max-priority", &v) && wn_value_as_int(&v, &n) && n > 0)
        q->max_priority = n > 255 ? 255 : (uint8_t)n;
    if (wn_table_get(q->args, "x-single-active-consumer", &v) && v.type == WN_FIELD_BOOL)
        q->single_active = v.v.b;
    if (wn_table_get(q->args, "x-consumer-timeout", &v) && wn_value_as_int(&v, &n) && n > 0)
        q->consumer_timeout = n > INT32_MAX ? INT32_MAX : (uint32_t)n;
}

queue_t *queue_create(vhost_t *vh, wn_bytes_t name, bool durable, bool exclusive, bool auto_delete,
                      conn_t *owner, wn_bytes_t args) {
    queue_t *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->name = malloc(name.len + 1u);
    q->args.ptr = malloc(args.len ? args.len : 1);
    if (!q->name || !q->args.ptr) {
        free(q->name);
        free((void *)q->args.ptr);
        free(q);
        return NULL;
    }
    memcpy(q->name, name.ptr, name.len);
    q->name[name.len] = '\0';
    q->name_len = (uint8_t)name.len;
    if (args.len) memcpy((void *)q->args.ptr, args.ptr, args.len);
    q->args.len = args.len;
    q->durable = durable;
    q->exclusive = exclusive;
    q->auto_delete = auto_delete;
    q->owner = exclusive ? owner : NULL;
    q->vhost = vh;
    q->refs = 1;
    q->next_seq = 1;
    queue_read_args(q);
    limits_read_args(q);
    if (q->owner) {
        q->owner_next = owner->exclusive_queues;
        owner->exclusive_queues = q;
    }
    HASH_ADD_KEYPTR(hh, vh->queues, q->name, q->name_len, q);
    broker.topology_epoch++;
    vh->nqueues++;
    definitions_queue(q, true);
    expiry_queue_created(q);
    dedup_queue_attach(q);
    return q;
}

static void queue_unlink_owner(queue_t *q) {
    if (!q->owner) return;
    queue_t **pp = &q->owner->exclusive_queues;
    while (*pp && *pp != q)
        pp = &(*pp)->owner_next;
    if (*pp) *pp = q->owner_next;
    q->owner = NULL;
}

uint32_t queue_delete(queue_t *q) {
    if (q->deleted) return 0;
    definitions_queue(q, false);
    q->deleted = true;
    expiry_queue_deleted(q);
    /* Consumers first: cancelling the last one of an auto-delete queue must
     * not delete it a second time. */
    while (q->consumers)
        consumer_cancel_by_broker(q->consumers);
    binding_remove_all_to_queue(q, &q->bindings);
    uint32_t n = queue_purge(q);
    flow_queue_release(q);
    queue_unlink_owner(q);
    HASH_DELETE(hh, q->vhost->queues, q);
    broker.topology_epoch++;
    q->vhost->nqueues--;
    dedup_queue_detach(q);
    queue_unref(q);
    return n;
}

void queue_unref(queue_t *q) {
    if (--q->refs > 0) return;
    expiry_queue_freed(q);
    free(q->ring);
    free(q->name);
    free((void *)q->args.ptr);
    free(q);
}

/* ---- the ring of ready messages ----------------------------------------------- */

static qentry_t *ring_at(queue_t *q, uint32_t i) {
    return &q->ring[(q->head + i) & (q->cap - 1)];
}

static bool queue_resize(queue_t *q, uint32_t ncap) {
    uint64_t *at;
    if (!expiry_resize_prepare(q, ncap, &at)) return false; /* the expiry times, laid out anew */
    qentry_t *ring = ring_resize(q->ring, q->head, q->count, q->cap, ncap, sizeof *ring);
    if (!ring) {
        free(at);
        return false;
    }
    q->ring = ring;
    q->cap = ncap;
    q->head = 0;
    expiry_resize_commit(q, at);
    return true;
}

static bool queue_grow(queue_t *q) {
    return queue_resize(q, q->cap ? q->cap * 2 : 16);
}

/* A ring a burst grew to millions of slots (32 bytes each) would otherwise
 * keep its size once drained. Once it is less than an eighth full it is cut
 * to the smallest power of two at least twice what it holds (but not below
 * QUEUE_RING_KEEP slots), so it takes that many pops, or pushes, before it
 * is resized again: the copies cost O(1) per message. */
#define QUEUE_RING_KEEP 1024

void queue_trim(queue_t *q) {
    if (q->cap <= QUEUE_RING_KEEP || q->count >= q->cap / 8) return;
    uint32_t ncap = QUEUE_RING_KEEP;
    while (ncap < 2 * q->count)
        ncap *= 2;
    queue_resize(q, ncap); /* if memory is short, it stays as it was */
}

/* How much of a queue's backlog stays in memory: past this, messages kept in
 * the journal wait there and are read back when their turn comes. */
#define QUEUE_HOT_COUNT 1024
#define QUEUE_HOT_BYTES (8u << 20)

/* A ready entry's body bytes: a message waiting on disk counts its record's
 * size (the body and a little more), known without reading it. */
static uint64_t entry_bytes(const qentry_t *e) {
    return e->msg ? e->msg->body_len : e->len;
}

static void hot_add(queue_t *q, const qentry_t *e, int sign) {
    q->ready_bytes += (uint64_t)(int64_t)sign * entry_bytes(e);
    if (!e->msg) return;
    q->hot += (uint32_t)sign;
    q->hot_bytes += (uint64_t)sign * e->msg->body_len;
}

/* Where an entry with this seq belongs: the first position whose seq is not
 * smaller (the ring is ordered by seq). */
static uint32_t ring_place(const queue_t *q, uint64_t seq) {
    uint32_t lo = 0, hi = q->count;
    if (q->count == 0 || queue_at(q, q->count - 1)->seq < seq) return q->count;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (queue_at(q, mid)->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Make room at position i (the ring has a free slot), moving the shorter
 * side: the entries before it back a slot (*front, the head moves back), or
 * those after it up one. */
static qentry_t *ring_open(queue_t *q, uint32_t i, bool *front) {
    *front = i < q->count - i;
    if (*front) {
        q->head = (q->head - 1) & (q->cap - 1);
        for (uint32_t j = 0; j < i; j++)
            *ring_at(q, j) = *ring_at(q, j + 1);
    } else {
        for (uint32_t j = q->count; j > i; j--)
            *ring_at(q, j) = *ring_at(q, j - 1);
    }
    q->count++;
    return ring_at(q, i);
}

/* Priority queues (x-max-priority) keep the ring ordered by seq too: a
 * message's priority (0 without one, capped at the maximum) is the top byte
 * of its seq, inverted, so higher priorities come first and arrival order
 * holds within one. */
#define SEQ_PRIORITY_SHIFT 56

static uint64_t queue_new_seq(queue_t *q, const message_t *m) {
    uint64_t n = q->next_seq++;
    if (!q->max_priority) return n;
    uint8_t p = m && m->priority < q->max_priority ? m->priority : q->max_priority;
    if (!m) p = 0;
    return (uint64_t)(255 - p) << SEQ_PRIORITY_SHIFT | n;
}

bool queue_push_pos(queue_t *q, message_t *m, const qentry_t *at, uint32_t *pos) {
    message_t *loaded = NULL;
    bool front = false;
    if (q->count == q->cap && !queue_grow(q)) return false;
    /* A recovered entry of a priority queue: its priority is in the message. */
    if (q->max_priority && !m && at && at->seg) m = loaded = store_load(at);
    uint64_t seq = queue_new_seq(q, m);
    uint32_t i = ring_place(q, seq);
    qentry_t *e = i == q->count ? ring_at(q, q->count++) : ring_open(q, i, &front);
    *e = at ? *at : (qentry_t){0};
    e->seq = seq;
    e->msg = NULL;
    /* A queue limited in bytes holds no more than its limit: all in memory. */
    if (m && (!e->seg || q->max_bytes != LIMIT_NONE ||
              (q->hot < QUEUE_HOT_COUNT && q->hot_bytes < QUEUE_HOT_BYTES))) {
        e->msg = m;
        message_ref(m);
    }
    hot_add(q, e, 1);
    if (i != q->count - 1) expiry_inserted(q, i, front, EXPIRY_NEVER); /* slots moved */
    expiry_pushed(q, i, m);
    if (loaded) message_unref(loaded);
    flow_queue_pushed(q);
    if (pos) *pos = i;
    return true;
}

bool queue_push(queue_t *q, message_t *m, const qentry_t *at) {
    return queue_push_pos(q, m, at, NULL);
}

/* A message that cannot stay: it leaves the queue for good. */
static void queue_drop(queue_t *q, const qentry_t *e) {
    store_ack(q, e);
    if (e->msg) message_unref(e->msg);
}

/* Put a delivered message back where its sequence number belongs. Requeued
 * messages are almost always older than everything ready, so the common
 * case is a push at the head. */
void queue_requeue(queue_t *q, const qentry_t *returned, uint64_t expires) {
    qentry_t entry = *returned, *e = &entry;
    if (q->deleted || (q->count == q->cap && !queue_grow(q))) {
        queue_drop(q, e);
        return;
    }
    if (!limits_returned(q, e)) return; /* past x-delivery-limit: dead-lettered */
    bool front = false;
    uint32_t i = ring_place(q, e->seq);
    qentry_t *slot = i == q->count ? ring_at(q, q->count++) : ring_open(q, i, &front);
    *slot = *e;
    slot->flags |= QENTRY_REDELIVERED;
    hot_add(q, e, 1);
    expiry_requeued(q, i, front, expires);
}

static bool queue_pop_raw(queue_t *q, qentry_t *out) {
    if (q->count == 0) return false;
    *out = *ring_at(q, 0);
    q->head = (q->head + 1) & (q->cap - 1);
    q->count--;
    hot_add(q, out, -1);
    flow_queue_taken(q);
    return true;
}

bool queue_pop(queue_t *q, qentry_t *out, uint64_t *expires, bool get) {
    uint64_t at;
    for (;;) {
        at = expiry_head(q);
        if (!queue_pop_raw(q, out)) return false;
        if (out->flags & QENTRY_DEAD) {
            q->ndead--;
            continue;
        }
        if (expiry_passed(at, get)) { /* its timer has not run yet */
            dead_letter(q, out, DL_EXPIRED);
            continue;
        }
        if (!out->msg) out->msg = store_load(out);
        if (out->msg) {
            limits_mark_delivery(q, out);
            break;
        }
        queue_drop(q, out); /* unreadable (logged): nothing else can be done with it */
    }
    *expires = at;
    queue_trim(q);
    return true;
}

/* Squeeze the dead slots out, keeping the order: messages expiring behind a
 * head that stays would otherwise leave the ring growing. */
static void queue_squeeze(queue_t *q) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < q->count; i++) {
        qentry_t *e = ring_at(q, i);
        if (e->flags & QENTRY_DEAD) continue;
        if (n != i) {
            *ring_at(q, n) = *e;
            expiry_moved(q, i, n);
        }
        n++;
    }
    q->count = n;
    q->ndead = 0;
}

/* A dead slot keeps its seq (the ring stays ordered) and nothing else. */
bool queue_take_at(queue_t *q, uint32_t i, qentry_t *out) {
    qentry_t *e = ring_at(q, i);
    bool live = !(e->flags & QENTRY_DEAD);
    if (i == 0) {
        queue_pop_raw(q, out);
        if (!live) q->ndead--;
        return live;
    }
    if (!live) return false;
    *out = *e;
    hot_add(q, e, -1);
    *e = (qentry_t){.seq = e->seq, .flags = QENTRY_DEAD};
    if (++q->ndead > 1024 && q->ndead > q->count / 2) queue_squeeze(q);
    return true;
}

int64_t queue_find_seq(const queue_t *q, uint64_t seq) {
    uint32_t i = ring_place(q, seq);
    return i < q->count && queue_at(q, i)->seq == seq ? (int64_t)i : -1;
}

uint32_t queue_purge(queue_t *q) {
    uint32_t n = queue_ready(q);
    qentry_t e;
    while (queue_pop_raw(q, &e))
        queue_drop(q, &e);
    q->ndead = 0;
    queue_trim(q);
    return n;
}

void queue_each_ready(queue_t *q, qentry_visit_fn fn, void *ctx) {
    for (uint32_t i = 0; i < q->count; i++) {
        qentry_t *e = ring_at(q, i);
        if (!(e->flags & QENTRY_DEAD)) fn(q, e, (e->flags & QENTRY_REDELIVERED) != 0, ctx);
    }
}

/* ---- consumers ------------------------------------------------------------------ */

/* Insert keeping the list ordered by priority, newest last within a priority. */
void queue_add_consumer(queue_t *q, consumer_t *c) {
    consumer_t *after = q->consumers_tail;
    while (after && after->priority < c->priority)
        after = after->q_prev;
    c->q_prev = after;
    c->q_next = after ? after->q_next : q->consumers;
    if (c->q_next)
        c->q_next->q_prev = c;
    else
        q->consumers_tail = c;
    if (after)
        after->q_next = c;
    else
        q->consumers = c;
    q->nconsumers++;
    q->had_consumer = true;
    queue_schedule_dispatch(q);
}

static void queue_unlink_consumer(queue_t *q, consumer_t *c) {
    if (c->q_prev)
        c->q_prev->q_next = c->q_next;
    else
        q->consumers = c->q_next;
    if (c->q_next)
        c->q_next->q_prev = c->q_prev;
    else
        q->consumers_tail = c->q_prev;
    c->q_prev = c->q_next = NULL;
}

void queue_remove_consumer(queue_t *q, consumer_t *c) {
    queue_unlink_consumer(q, c);
    q->nconsumers--;
    if (q->active == c) {
        q->active = NULL; /* the next in line takes over */
        queue_schedule_dispatch(q);
    }
    if (!q->consumers) flow_queue_release(q);
    if (q->auto_delete && q->nconsumers == 0 && !q->deleted) {
        log_debug("queue '%s' in vhost '%s': last consumer gone, auto-deleting", q->name,
                  q->vhost->name);
        queue_delete(q);
    }
}

/* Round robin: the consumer just served goes behind the others of its priority. */
static void queue_rotate(queue_t *q, consumer_t *c) {
    consumer_t *last = c;
    while (last->q_next && last->q_next->priority == c->priority)
        last = last->q_next;
    if (last == c) return;
    queue_unlink_consumer(q, c);
    c->q_prev = last;
    c->q_next = last->q_next;
    if (c->q_next)
        c->q_next->q_prev = c;
    else
        q->consumers_tail = c;
    last->q_next = c;
}

/* Single active consumer: the first subscriber of the highest priority gets
 * every message. A consumer of higher priority that subscribes later takes
 * over once the active one has nothing unacknowledged, as RabbitMQ does. */
static consumer_t *queue_active_consumer(queue_t *q) {
    consumer_t *a = q->active;
    if (!a || (a != q->consumers && a->unacked == 0)) a = q->active = q->consumers;
    return a && consumer_can_take(a) ? a : NULL;
}

/* The first consumer, in priority order, with room for a message. Lower
 * priorities are served only while every higher one is full (as RabbitMQ). */
static consumer_t *queue_next_consumer(queue_t *q) {
    if (q->single_active) return queue_active_consumer(q);
    for (consumer_t *c = q->consumers; c; c = c->q_next)
        if (consumer_can_take(c)) return c;
    return NULL;
}

static void queue_dispatch(queue_t *q) {
    qentry_t e;
    consumer_t *c;
    uint64_t expires;
    uint32_t before = q->count;
    while (q->count > 0 && (c = queue_next_consumer(q)) != NULL) {
        if (!queue_pop(q, &e, &expires, false)) break;
        consumer_deliver(c, &e, expires);
        if (!q->single_active) queue_rotate(q, c);
    }
    if (q->count != before) q->last_delivery = ev_now(broker.loop);
}

void queue_schedule_dispatch(queue_t *q) {
    if (q->dispatch_scheduled || q->deleted || !q->consumers) return;
    q->dispatch_scheduled = true;
    queue_ref(q);
    q->dispatch_next = broker.dispatch_list;
    broker.dispatch_list = q;
}

void queue_dispatch_all(void) {
    while (broker.dispatch_list) {
        queue_t *q = broker.dispatch_list;
        broker.dispatch_list = q->dispatch_next;
        q->dispatch_scheduled = false;
        if (!q->deleted) queue_dispatch(q);
        queue_unref(q);
    }
}
