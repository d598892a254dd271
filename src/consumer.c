/*
 * consumer.c - consumers, deliveries and acknowledgements.
 *
 * Owns consumer_t and each channel's ring of unacked deliveries. Touches
 * queues only through queue.h (requeue, consumer lists, dispatch).
 */
#include "consumer.h"
#include "broker.h"
#include "channel.h"
#include "connection.h"
#include "dead_letter.h"
#include "declare.h"
#include "expiry.h"
#include "log.h"
#include "ring.h"
#include "store.h"
#include "table.h"
#include "vhost.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the unacked ring ------------------------------------------------------- */

static delivery_t *ring_at(chan_t *ch, uint32_t i) {
    return &ch->ring[(ch->ring_head + i) & (ch->ring_cap - 1)];
}

static delivery_t *ring_push(chan_t *ch) {
    if (ch->ring_count == ch->ring_cap) {
        delivery_t *r =
            ring_grow(ch->ring, ch->ring_head, ch->ring_count, &ch->ring_cap, sizeof *r);
        if (!r) return NULL;
        ch->ring = r;
        ch->ring_head = 0;
    }
    return ring_at(ch, ch->ring_count++);
}

/* Drop settled entries from the front. */
static void ring_trim(chan_t *ch) {
    while (ch->ring_count && ring_at(ch, 0)->settled) {
        ch->ring_head = (ch->ring_head + 1) & (ch->ring_cap - 1);
        ch->ring_count--;
    }
    if (ch->ring_count == 0 && ch->ring_cap > 1024) {
        free(ch->ring);
        ch->ring = NULL;
        ch->ring_cap = ch->ring_head = 0;
    }
}

/* The live delivery with this tag, or NULL. Tags grow along the ring. */
static delivery_t *ring_find(chan_t *ch, uint64_t tag) {
    uint32_t lo = 0, hi = ch->ring_count;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (ring_at(ch, mid)->tag < tag)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < ch->ring_count) {
        delivery_t *d = ring_at(ch, lo);
        if (d->tag == tag && !d->settled && !d->tx_settled) return d;
    }
    return NULL;
}

/* ---- delivering ---------------------------------------------------------------- */

bool consumer_can_take(const consumer_t *c) {
    const chan_t *ch = c->ch;
    if (ch->state != CHAN_OPEN || ch->conn->state != CONN_OPEN || conn_is_backed_up(ch->conn))
        return false;
    if (c->no_ack) return true;
    if (c->prefetch && c->unacked >= c->prefetch) return false;
    if (ch->prefetch_channel && ch->unacked >= ch->prefetch_channel) return false;
    return true;
}

/* ---- the acknowledgement timeout ------------------------------------------------ */

/* A delivery unacknowledged for longer than its queue's x-consumer-timeout
 * (or the broker's consumer_timeout) closes its channel with 406, and the
 * channel's deliveries go back to their queues, as in RabbitMQ. Times are
 * milliseconds of the loop's clock, kept in 32 bits: differences are right
 * for timeouts below 24 days, which the config's limit ensures. One timer
 * per channel, armed for the earliest deadline but at most once a second
 * after the first, so a channel with very many unacked deliveries is walked
 * rarely. */
#define ACK_TIMER_MIN 1.0 /* seconds between walks of one channel's deliveries */

static uint32_t now_ms(void) {
    return (uint32_t)(uint64_t)(ev_now(broker.loop) * 1000.0);
}

static uint32_t ack_timeout(const queue_t *q) {
    return q->consumer_timeout ? q->consumer_timeout : broker.cfg.consumer_timeout;
}

static void on_ack_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    chan_t *ch = w->data;
    uint32_t now = now_ms(), next = UINT32_MAX;
    (void)loop;
    (void)revents;
    if (ch->state != CHAN_OPEN) return;
    for (uint32_t i = 0; i < ch->ring_count; i++) {
        delivery_t *d = ring_at(ch, i);
        uint32_t limit = ack_timeout(d->q), waited = now - d->at_ms;
        if (d->settled || limit == 0) continue;
        if (waited >= limit) {
            chan_error(ch, WN_PRECONDITION_FAILED, 0,
                       "delivery acknowledgement on channel %u timed out. Timeout value used: %u "
                       "ms. This timeout value can be configured, see consumers doc guide to "
                       "learn more",
                       ch->id, limit);
            return;
        }
        if (limit - waited < next) next = limit - waited;
    }
    if (next == UINT32_MAX) return;
    ev_timer_set(w, next / 1000.0 < ACK_TIMER_MIN ? ACK_TIMER_MIN : next / 1000.0, 0.);
    ev_timer_start(broker.loop, w);
}

static void ack_timer_arm(chan_t *ch, const queue_t *q) {
    uint32_t limit = ack_timeout(q);
    if (limit == 0 || ev_is_active(&ch->ack_timer)) return;
    ev_timer_init(&ch->ack_timer, on_ack_timer, limit / 1000.0, 0.);
    ch->ack_timer.data = ch;
    ev_timer_start(broker.loop, &ch->ack_timer);
}

/* Record a delivery that waits for an ack; takes over the entry's reference. */
static void record_unacked(chan_t *ch, uint64_t tag, queue_t *q, consumer_t *c, qentry_t *e,
                           uint64_t expires) {
    delivery_t *d = ring_push(ch);
    if (!d) { /* no memory to track it: put it back rather than lose it */
        queue_requeue(q, e, expires);
        return;
    }
    d->tag = tag;
    d->settled = false;
    d->at_ms = now_ms();
    ack_timer_arm(ch, q);
    d->q = q;
    d->consumer = c;
    d->e = *e;
    d->expires = expires;
    d->tx_settled = false;
    queue_ref(q);
    q->unacked++;
    ch->unacked++;
    if (c) c->unacked++;
}

/* After a message went out: gone for good (no-ack), or waiting for its ack.
 * The journal hears of either, so that a restart knows. */
static void consumer_delivered(chan_t *ch, uint64_t tag, queue_t *q, consumer_t *c, qentry_t *e,
                               uint64_t expires, bool no_ack) {
    if (no_ack) {
        store_ack(q, e);
        message_unref(e->msg);
        return;
    }
    if (!(e->flags & QENTRY_REDELIVERED)) store_delivered(q, e);
    record_unacked(ch, tag, q, c, e, expires);
}

void consumer_deliver(consumer_t *c, qentry_t *e, uint64_t expires) {
    chan_t *ch = c->ch;
    wn_method_t m = {.id = WN_BASIC_DELIVER};
    uint64_t tag = ++ch->next_tag;

    m.u.basic_deliver.consumer_tag = wn_bytes(c->tag, c->tag_len);
    m.u.basic_deliver.delivery_tag = tag;
    m.u.basic_deliver.redelivered = (e->flags & QENTRY_REDELIVERED) != 0;
    m.u.basic_deliver.exchange = message_exchange(e->msg);
    m.u.basic_deliver.routing_key = message_routing_key(e->msg);
    conn_send_content(ch->conn, ch->id, &m, e->msg);
    consumer_delivered(ch, tag, c->q, c, e, expires, c->no_ack);
}

/* ---- settling -------------------------------------------------------------------- */

/* SETTLE_DROP: rejected (nack or reject without requeue), dead-lettered if
 * the queue says where to. */
typedef enum { SETTLE_ACK, SETTLE_REQUEUE, SETTLE_DROP } settle_t;

static void settle(chan_t *ch, delivery_t *d, settle_t how) {
    queue_t *q = d->q;
    if (how == SETTLE_REQUEUE) {
        queue_requeue(q, &d->e, d->expires);
    } else if (how == SETTLE_DROP) {
        dead_letter(q, &d->e, DL_REJECTED);
    } else {
        store_ack(q, &d->e);
        message_unref(d->e.msg);
    }
    q->unacked--;
    ch->unacked--;
    if (d->consumer) d->consumer->unacked--;
    d->settled = true;
    queue_schedule_dispatch(q);
    queue_unref(q);
}

/* A window opened on this channel: every queue it consumes from may flow. */
static void schedule_channel_queues(chan_t *ch) {
    consumer_t *c, *tmp;
    HASH_ITER(hh, ch->consumers, c, tmp) queue_schedule_dispatch(c->q);
}

static void unknown_tag(chan_t *ch, uint64_t tag, uint32_t method) {
    chan_error(ch, WN_PRECONDITION_FAILED, method, "unknown delivery tag %llu",
               (unsigned long long)tag);
}

/* Settle one tag, or every live tag up to it (multiple; 0 = all). */
static void settle_tags(chan_t *ch, uint64_t tag, bool multiple, settle_t how, uint32_t method) {
    if (multiple) {
        if (tag != 0 && tag > ch->next_tag) {
            unknown_tag(ch, tag, method);
            return;
        }
        for (uint32_t i = 0; i < ch->ring_count; i++) {
            delivery_t *d = ring_at(ch, i);
            if (tag != 0 && d->tag > tag) break;
            if (d->settled || d->tx_settled) continue;
            if (ch->tx) {
                d->tx_settled = true;
                d->tx_how = (uint8_t)how;
            } else {
                settle(ch, d, how);
            }
        }
    } else {
        delivery_t *d = ring_find(ch, tag);
        if (!d) {
            unknown_tag(ch, tag, method);
            return;
        }
        if (ch->tx) {
            d->tx_settled = true;
            d->tx_how = (uint8_t)how;
        } else {
            settle(ch, d, how);
        }
    }
    ring_trim(ch);
    if (ch->prefetch_channel) schedule_channel_queues(ch);
}

void consumer_on_ack(chan_t *ch, uint64_t tag, bool multiple) {
    settle_tags(ch, tag, multiple, SETTLE_ACK, WN_BASIC_ACK);
}

void consumer_on_nack(chan_t *ch, uint64_t tag, bool multiple, bool requeue, uint32_t id) {
    settle_tags(ch, tag, multiple, requeue ? SETTLE_REQUEUE : SETTLE_DROP, id);
}

void consumer_tx_commit(chan_t *ch) {
    for (uint32_t i = 0; i < ch->ring_count; i++) {
        delivery_t *d = ring_at(ch, i);
        if (!d->settled && d->tx_settled) settle(ch, d, (settle_t)d->tx_how);
    }
    ring_trim(ch);
    if (ch->prefetch_channel) schedule_channel_queues(ch);
}

void consumer_tx_rollback(chan_t *ch) {
    for (uint32_t i = 0; i < ch->ring_count; i++)
        ring_at(ch, i)->tx_settled = false;
}

/* Requeue everything unacked, oldest first, as when a channel closes. */
static void requeue_all(chan_t *ch) {
    for (uint32_t i = 0; i < ch->ring_count; i++) {
        delivery_t *d = ring_at(ch, i);
        if (!d->settled) settle(ch, d, SETTLE_REQUEUE);
    }
    ring_trim(ch);
}

void consumer_on_recover(chan_t *ch, bool requeue, bool async) {
    if (!requeue) {
        chan_error(ch, WN_NOT_IMPLEMENTED, async ? WN_BASIC_RECOVER_ASYNC : WN_BASIC_RECOVER,
                   "requeue=false");
        return;
    }
    requeue_all(ch);
    if (!async) {
        wn_method_t ok = {.id = WN_BASIC_RECOVER_OK};
        chan_send_method(ch, &ok);
    }
}

/* ---- consumers --------------------------------------------------------------------- */

static void consumer_forget_deliveries(chan_t *ch, consumer_t *c) {
    for (uint32_t i = 0; i < ch->ring_count; i++)
        if (ring_at(ch, i)->consumer == c) ring_at(ch, i)->consumer = NULL;
}

/* Detach from channel and queue and free. */
static void consumer_free(consumer_t *c) {
    chan_t *ch = c->ch;
    queue_t *q = c->q;
    HASH_DELETE(hh, ch->consumers, c);
    consumer_forget_deliveries(ch, c);
    expiry_touch(q);             /* x-expires counts from the last consumer's departure */
    queue_remove_consumer(q, c); /* may delete an auto-delete queue */
    free((void *)c->args.ptr);
    free(c);
}

void consumer_cancel_by_broker(consumer_t *c) {
    conn_t *conn = c->ch->conn;
    if ((conn->client_caps & CONN_CAP_CONSUMER_CANCEL_NOTIFY) && c->ch->state == CHAN_OPEN) {
        wn_method_t m = {.id = WN_BASIC_CANCEL};
        m.u.basic_cancel.consumer_tag = wn_bytes(c->tag, c->tag_len);
        m.u.basic_cancel.no_wait = true;
        chan_send_method(c->ch, &m);
    }
    consumer_free(c);
}

static consumer_t *consumer_find(chan_t *ch, wn_bytes_t tag) {
    consumer_t *c = NULL;
    HASH_FIND(hh, ch->consumers, tag.len ? tag.ptr : (const uint8_t *)"", tag.len, c);
    return c;
}

/* "amq.ctag-" and 22 url-safe random characters, as RabbitMQ names them. */
void consumer_make_name(char *out, size_t len, const char *prefix) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t rnd[22];
    size_t n = (size_t)snprintf(out, len, "%s", prefix);
    if (RAND_bytes(rnd, sizeof rnd) != 1) memset(rnd, 0, sizeof rnd);
    for (size_t i = 0; i < sizeof rnd && n + 1 < len; i++)
        out[n++] = alphabet[rnd[i] & 63];
    out[n] = '\0';
}

static bool consumer_priority_arg(chan_t *ch, wn_bytes_t args, int32_t *prio) {
    wn_value_t v;
    int64_t i;
    *prio = 0;
    if (!wn_table_get(args, "x-priority", &v)) return true;
    if (!wn_value_as_int(&v, &i) || i < INT32_MIN || i > INT32_MAX) {
        chan_error(ch, WN_PRECONDITION_FAILED, WN_BASIC_CONSUME,
                   "invalid arg 'x-priority' for consumer: expected an integer");
        return false;
    }
    *prio = (int32_t)i;
    return true;
}

void consumer_on_consume(chan_t *ch, const wn_basic_consume_t *m) {
    queue_t *q = chan_find_queue(ch, m->queue, WN_BASIC_CONSUME);
    char gen[64];
    wn_bytes_t tag = m->consumer_tag; /* any bytes, NULs included */
    int32_t prio;

    if (!q || !chan_check_exclusive(ch, q, WN_BASIC_CONSUME)) return;
    if (tag.len == 0) {
        consumer_make_name(gen, sizeof gen, "amq.ctag-");
        tag = wn_cstr(gen);
    }
    if (consumer_find(ch, tag)) {
        conn_close(ch->conn, WN_NOT_ALLOWED, WN_BASIC_CONSUME,
                   "attempt to reuse consumer tag '%.*s'", (int)tag.len, (const char *)tag.ptr);
        return;
    }
    if ((m->exclusive && q->nconsumers) || (q->consumers && q->consumers->exclusive)) {
        chan_error(ch, WN_ACCESS_REFUSED, WN_BASIC_CONSUME,
                   "queue '%s' in vhost '%s' in exclusive use", q->name, q->vhost->name);
        return;
    }
    if (!consumer_priority_arg(ch, m->arguments, &prio)) return;

    consumer_t *c = calloc(1, sizeof *c);
    if (!c) {
        chan_error(ch, WN_INTERNAL_ERROR, WN_BASIC_CONSUME, "out of memory");
        return;
    }
    c->ch = ch;
    c->q = q;
    c->tag_len = (uint8_t)tag.len;
    memcpy(c->tag, tag.ptr, tag.len);
    c->no_ack = m->no_ack;
    c->exclusive = m->exclusive;
    c->priority = prio;
    c->prefetch = ch->prefetch_consumer;
    c->args.ptr = malloc(m->arguments.len ? m->arguments.len : 1);
    if (c->args.ptr && m->arguments.len)
        memcpy((void *)c->args.ptr, m->arguments.ptr, m->arguments.len);
    c->args.len = c->args.ptr ? m->arguments.len : 0;
    HASH_ADD(hh, ch->consumers, tag, c->tag_len, c);
    if (!m->no_wait) {
        wn_method_t ok = {.id = WN_BASIC_CONSUME_OK};
        ok.u.basic_consume_ok.consumer_tag = wn_bytes(c->tag, c->tag_len);
        chan_send_method(ch, &ok);
    }
    /* Deliveries start once the loop dispatches, after consume-ok is queued. */
    queue_add_consumer(q, c);
}

void consumer_on_cancel(chan_t *ch, const wn_basic_cancel_t *m) {
    consumer_t *c = consumer_find(ch, m->consumer_tag);
    if (!m->no_wait) {
        wn_method_t ok = {.id = WN_BASIC_CANCEL_OK};
        ok.u.basic_cancel_ok.consumer_tag = m->consumer_tag;
        chan_send_method(ch, &ok);
    }
    if (c) consumer_free(c);
}

void consumer_on_qos(chan_t *ch, const wn_basic_qos_t *m) {
    if (m->prefetch_size != 0) {
        chan_error(ch, WN_NOT_IMPLEMENTED, WN_BASIC_QOS, "prefetch_size!=0 (%u)", m->prefetch_size);
        return;
    }
    if (m->global)
        ch->prefetch_channel = m->prefetch_count;
    else
        ch->prefetch_consumer = m->prefetch_count;
    wn_method_t ok = {.id = WN_BASIC_QOS_OK};
    chan_send_method(ch, &ok);
    schedule_channel_queues(ch);
}

void consumer_on_get(chan_t *ch, const wn_basic_get_t *m) {
    queue_t *q = chan_find_queue(ch, m->queue, WN_BASIC_GET);
    qentry_t e;
    uint64_t expires;

    if (!q || !chan_check_exclusive(ch, q, WN_BASIC_GET)) return;
    expiry_touch(q);
    if (!queue_pop(q, &e, &expires, true)) {
        wn_method_t empty = {.id = WN_BASIC_GET_EMPTY};
        chan_send_method(ch, &empty);
        return;
    }
    wn_method_t ok = {.id = WN_BASIC_GET_OK};
    uint64_t tag = ++ch->next_tag;
    ok.u.basic_get_ok.delivery_tag = tag;
    ok.u.basic_get_ok.redelivered = (e.flags & QENTRY_REDELIVERED) != 0;
    ok.u.basic_get_ok.exchange = message_exchange(e.msg);
    ok.u.basic_get_ok.routing_key = message_routing_key(e.msg);
    ok.u.basic_get_ok.message_count = queue_ready(q);
    conn_send_content(ch->conn, ch->id, &ok, e.msg);
    consumer_delivered(ch, tag, q, NULL, &e, expires, m->no_ack);
}

void consumer_channel_closed(chan_t *ch) {
    consumer_t *c, *tmp;
    ev_timer_stop(broker.loop, &ch->ack_timer);
    HASH_ITER(hh, ch->consumers, c, tmp) consumer_free(c);
    consumer_tx_rollback(ch);
    requeue_all(ch);
    free(ch->ring);
    ch->ring = NULL;
}

void consumer_each_unacked(chan_t *ch, qentry_visit_fn fn, void *ctx) {
    for (uint32_t i = 0; i < ch->ring_count; i++) {
        delivery_t *d = ring_at(ch, i);
        if (!d->settled) fn(d->q, &d->e, true, ctx);
    }
}

void consumer_connection_writable(conn_t *conn) {
    for (uint32_t i = 0; i < conn->nchans; i++)
        if (conn->chans[i]) schedule_channel_queues(conn->chans[i]);
}
