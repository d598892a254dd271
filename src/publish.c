/*
 * publish.c - the publishing half of a channel.
 *
 * A publish is a method frame, a content header and body frames; the
 * message is allocated once its header says how big it is, filled in place
 * from the body frames, routed, and pushed onto every queue it reaches
 * (one message, shared). Confirms are counted per channel and sent as one
 * basic.ack (multiple) per read batch.
 *
 * A persistent message that reaches durable queues is written to the journal
 * (store.h) as it is routed; its confirm (or the tx.commit-ok of its
 * transaction) waits in the channel's queue of replies until the journal says
 * the flush that carried it is on stable storage. Replies leave that queue in
 * order, so a confirm never overtakes one that waits for the disk.
 */
#include "publish.h"
#include "alarm.h"
#include "broker.h"
#include "channel.h"
#include "consumer.h"
#include "dedup.h"
#include "delay.h"
#include "exchange.h"
#include "flow.h"
#include "limits.h"
#include "log.h"
#include "message.h"
#include "queue.h"
#include "ring.h"
#include "store.h"
#include "table.h"
#include "vhost.h"

#include <inttypes.h>
#include <stdio.h>

#include <stdlib.h>
#include <string.h>

typedef struct tx_publish {
    message_t *msg;
    bool mandatory;
    struct tx_publish *next;
} tx_publish_t;

/* ---- confirms ----------------------------------------------------------------- */

static void confirm_upto(chan_t *ch, uint64_t seq) {
    conn_t *c = ch->conn;
    ch->confirm_upto = seq;
    if (!ch->confirm_queued) {
        ch->confirm_queued = true;
        ch->confirm_next = c->confirm_list;
        c->confirm_list = ch;
    }
}

static void send_confirms(chan_t *ch) {
    if (ch->confirm_upto <= ch->confirm_sent || ch->state != CHAN_OPEN) return;
    wn_method_t ack = {.id = WN_BASIC_ACK};
    ack.u.basic_ack.delivery_tag = ch->confirm_upto;
    ack.u.basic_ack.multiple = ch->confirm_upto > ch->confirm_sent + 1;
    chan_send_method(ch, &ack);
    ch->confirm_sent = ch->confirm_upto;
}

void publish_flush_confirms(conn_t *c) {
    chan_t *ch = c->confirm_list;
    c->confirm_list = NULL;
    while (ch) {
        chan_t *next = ch->confirm_next;
        ch->confirm_queued = false;
        send_confirms(ch);
        ch = next;
    }
}

/* Publisher nack: the broker could not take the message. Earlier acks go first. */
static void confirm_nack(chan_t *ch, uint64_t seq) {
    send_confirms(ch);
    wn_method_t nack = {.id = WN_BASIC_NACK};
    nack.u.basic_nack.delivery_tag = seq;
    chan_send_method(ch, &nack);
    ch->confirm_sent = ch->confirm_upto = seq;
}

/* ---- replies that wait for the journal ----------------------------------------- */

typedef enum { WAIT_ACK, WAIT_NACK, WAIT_COMMIT_OK } wait_kind_t;

typedef struct confirm_wait {
    uint64_t seq;   /* publish sequence number (acks and nacks) */
    uint64_t flush; /* the journal flush it waits for; 0: none, only its turn */
    wait_kind_t kind;
} confirm_wait_t;

static confirm_wait_t *wait_at(chan_t *ch, uint32_t i) {
    return &ch->waits[(ch->waits_head + i) & (ch->waits_cap - 1)];
}

static void waiters_link(chan_t *ch) {
    chan_t **head = &broker.durable_waiters;
    ch->durable_prev = NULL;
    ch->durable_next = *head;
    if (*head) (*head)->durable_prev = ch;
    *head = ch;
}

static void waiters_unlink(chan_t *ch) {
    if (ch->durable_prev)
        ch->durable_prev->durable_next = ch->durable_next;
    else if (broker.durable_waiters == ch)
        broker.durable_waiters = ch->durable_next;
    if (ch->durable_next) ch->durable_next->durable_prev = ch->durable_prev;
    ch->durable_prev = ch->durable_next = NULL;
}

static void wait_push(chan_t *ch, uint64_t seq, uint64_t flush, wait_kind_t kind) {
    if (ch->waits_count == ch->waits_cap) {
        confirm_wait_t *w =
            ring_grow(ch->waits, ch->waits_head, ch->waits_count, &ch->waits_cap, sizeof *w);
        if (!w) abort(); /* a reply cannot be dropped; the broker cannot go on without memory */
        ch->waits = w;
        ch->waits_head = 0;
    }
    if (ch->waits_count == 0) waiters_link(ch);
    *wait_at(ch, ch->waits_count++) = (confirm_wait_t){seq, flush, kind};
}

static void send_commit_ok(chan_t *ch) {
    if (ch->state != CHAN_OPEN) return;
    wn_method_t ok = {.id = WN_TX_COMMIT_OK};
    chan_send_method(ch, &ok);
}

/* Send every reply at the front whose flush is durable. */
static void waits_release(chan_t *ch, uint64_t durable) {
    while (ch->waits_count && wait_at(ch, 0)->flush <= durable) {
        confirm_wait_t w = *wait_at(ch, 0);
        ch->waits_head = (ch->waits_head + 1) & (ch->waits_cap - 1);
        ch->waits_count--;
        if (w.kind == WAIT_ACK)
            confirm_upto(ch, w.seq);
        else if (w.kind == WAIT_NACK)
            confirm_nack(ch, w.seq);
        else
            send_commit_ok(ch);
    }
    send_confirms(ch);
    if (ch->waits_count == 0) waiters_unlink(ch);
}

void publish_durable(uint64_t flush) {
    chan_t *ch = broker.durable_waiters;
    while (ch) {
        chan_t *next = ch->durable_next;
        waits_release(ch, flush);
        ch = next;
    }
}

/* A publish on a confirm channel is settled: ack or nack it now, or queue the
 * reply behind the journal flush (or earlier replies) it must wait for. */
static void confirm_publish(chan_t *ch, uint64_t seq, bool stored, uint64_t flush) {
    if (flush == 0 && ch->waits_count == 0) {
        if (stored)
            confirm_upto(ch, seq);
        else
            confirm_nack(ch, seq);
        return;
    }
    wait_push(ch, seq, flush, stored ? WAIT_ACK : WAIT_NACK);
}

/* ---- routing a complete message ------------------------------------------------- */

/* The exchange called `name` in the channel's vhost, or NULL. The one found
 * last is remembered: it is looked up twice per publish (the method, then
 * routing), and publishers mostly use one exchange. */
static exchange_t *publish_exchange(chan_t *ch, wn_bytes_t name) {
    exchange_t *x = ch->pub_x;
    if (x && ch->pub_x_epoch == broker.topology_epoch && x->name_len == name.len &&
        (name.len == 0 || memcmp(x->name, name.ptr, name.len) == 0))
        return x;
    x = exchange_find(ch->conn->vhost, name);
    ch->pub_x = x;
    ch->pub_x_epoch = broker.topology_epoch;
    return x;
}

static void send_return(chan_t *ch, message_t *msg) {
    wn_method_t r = {.id = WN_BASIC_RETURN};
    r.u.basic_return.reply_code = WN_NO_ROUTE;
    r.u.basic_return.reply_text = WN_BYTES_LIT("NO_ROUTE");
    r.u.basic_return.exchange = message_exchange(msg);
    r.u.basic_return.routing_key = message_routing_key(msg);
    conn_send_content(ch->conn, ch->id, &r, msg);
}

#define JOURNAL_BATCH 64 /* durable queues named by one MSG record */

/* Write msg to the journal once for up to JOURNAL_BATCH durable queues and
 * push it onto each; false if it could not be kept. */
static bool push_journaled(message_t *msg, queue_t *const *qs, uint32_t n) {
    qentry_t at = {0};
    bool ok = true;
    if (!store_write_msg(msg, qs, n, &at)) return false;
    for (uint32_t i = 0; i < n; i++) {
        if (queue_push(qs[i], msg, &at)) {
            queue_schedule_dispatch(qs[i]);
        } else {
            store_ack(qs[i], &at);
            ok = false;
        }
    }
    return ok;
}

static uint64_t now_ms(void) {
    return (uint64_t)(ev_now(broker.loop) * 1000.0);
}

/* A queue that deduplicates drops a message it has seen: routed, not enqueued. */
static bool queue_takes(queue_t *q, const message_t *msg) {
    return !q->dedup || !dedup_seen(q->dedup, msg, now_ms(), store_wanted(q, msg));
}

bool publish_enqueue(message_t *msg, queue_t *const *qs, uint32_t n, bool *journaled) {
    queue_t *durable[JOURNAL_BATCH];
    uint32_t nd = 0;
    bool stored = true;

    for (uint32_t i = 0; i < n; i++) {
        queue_t *q = qs[i];
        if (!queue_takes(q, msg)) continue;
        if (!limits_admit(q, msg)) {
            stored = false; /* refused (x-overflow reject-publish): a confirm is a nack */
            continue;
        }
        if (store_wanted(q, msg)) {
            durable[nd++] = q;
            if (nd == JOURNAL_BATCH) {
                stored &= push_journaled(msg, durable, nd);
                nd = 0;
                *journaled = true;
            }
        } else if (!queue_push(q, msg, NULL)) {
            stored = false;
        } else {
            queue_schedule_dispatch(q);
        }
    }
    if (nd) {
        stored &= push_journaled(msg, durable, nd);
        *journaled = true;
    }
    for (uint32_t i = 0; i < n; i++)
        limits_enforce(qs[i]);
    return stored;
}

uint32_t publish_route(exchange_t *x, message_t *msg, conn_t *c, bool *stored, bool *journaled) {
    route_msg_t rm = {message_routing_key(msg), message_headers(msg), message_bcc(msg)};
    exchange_route(x, &rm, &broker.route_result);
    *stored &= publish_enqueue(msg, broker.route_result.queues, broker.route_result.n, journaled);
    for (uint32_t i = 0; c && i < broker.route_result.n; i++)
        flow_published_to(c, broker.route_result.queues[i]);
    return broker.route_result.n;
}

/* A message for a delayed exchange. A mandatory one that would route nowhere
 * now is returned now: when it is due its publisher may be gone. */
static bool hold_delayed(chan_t *ch, exchange_t *x, message_t *msg, uint64_t delay, bool mandatory,
                         bool *journaled) {
    if (mandatory) {
        route_msg_t rm = {message_routing_key(msg), message_headers(msg), message_bcc(msg)};
        exchange_route(x, &rm, &broker.route_result);
        if (broker.route_result.n == 0) {
            send_return(ch, msg);
            return true;
        }
    }
    return delay_hold(x, msg, delay, journaled);
}

/* Route and enqueue; returns false if the message could not be stored, and
 * sets *journaled if a confirm must wait for the journal. */
static bool deliver_message(chan_t *ch, message_t *msg, bool mandatory, bool *journaled) {
    exchange_t *x = publish_exchange(ch, message_exchange(msg));
    bool stored = true;

    if (!x) return true; /* deleted since the publish was accepted: unroutable */
    /* A duplicate is dropped before any routing, confirmed, and never returned:
     * the copy it repeats was accepted. */
    if (x->dedup && dedup_seen(x->dedup, msg, now_ms(), msg->delivery_mode == 2)) return true;
    uint64_t delay = x->delay ? delay_of(msg) : 0;
    if (delay) return hold_delayed(ch, x, msg, delay, mandatory, journaled);
    if (publish_route(x, msg, ch->conn, &stored, journaled) == 0 && mandatory) send_return(ch, msg);
    return stored;
}

static void publish_complete(chan_t *ch) {
    message_t *msg = ch->pub_msg;
    ch->pub_msg = NULL;
    ch->pub_state = PUB_IDLE;
    if (ch->tx) {
        tx_publish_t *t = malloc(sizeof *t);
        if (!t) {
            message_unref(msg);
            chan_error(ch, WN_INTERNAL_ERROR, WN_BASIC_PUBLISH, "out of memory");
            return;
        }
        t->msg = msg;
        t->mandatory = ch->pub_mandatory;
        t->next = NULL;
        if (ch->tx_publishes_tail)
            ch->tx_publishes_tail->next = t;
        else
            ch->tx_publishes = t;
        ch->tx_publishes_tail = t;
        return;
    }
    bool journaled = false;
    bool stored = deliver_message(ch, msg, ch->pub_mandatory, &journaled);
    message_unref(msg);
    if (!ch->confirm) return;
    confirm_publish(ch, ch->publish_seq, stored, journaled ? store_next_flush(&broker.store) : 0);
}

/* ---- frames ------------------------------------------------------------------------ */

void publish_on_method(chan_t *ch, const wn_basic_publish_t *m) {
    vhost_t *vh = ch->conn->vhost;
    exchange_t *x = publish_exchange(ch, m->exchange);

    if (ch->confirm) ch->publish_seq++;
    alarm_on_publish(ch->conn);
    if (!x) {
        chan_error(ch, WN_NOT_FOUND, WN_BASIC_PUBLISH, "no exchange '%.*s' in vhost '%s'",
                   (int)m->exchange.len, (const char *)m->exchange.ptr, vh->name);
        return;
    }
    if (x->internal) {
        chan_error(ch, WN_ACCESS_REFUSED, WN_BASIC_PUBLISH,
                   "cannot publish to internal exchange '%s' in vhost '%s'", x->name, vh->name);
        return;
    }
    if (m->immediate) {
        chan_error(ch, WN_NOT_IMPLEMENTED, WN_BASIC_PUBLISH, "immediate=true");
        return;
    }
    memcpy(ch->pub_exchange, m->exchange.ptr, m->exchange.len);
    ch->pub_exchange_len = (uint8_t)m->exchange.len;
    memcpy(ch->pub_routing_key, m->routing_key.ptr, m->routing_key.len);
    ch->pub_routing_key_len = (uint8_t)m->routing_key.len;
    ch->pub_mandatory = m->mandatory;
    ch->pub_state = PUB_AWAIT_HEADER;
}

#define MAX_EXPIRY 315360000000LL /* RabbitMQ's longest TTL: ten years, in ms */

/* The expiration property: a decimal number of milliseconds, as RabbitMQ
 * parses it (an optional sign, then digits). 0, or -1 with RabbitMQ's reason,
 * which prints the number as Erlang does (any size, no leading zeros). */
static int publish_check_expiration(wn_bytes_t e, char *why, size_t len) {
    size_t i = 0;
    bool neg = false;
    long long v = 0;
    if (i < e.len && (e.ptr[i] == '-' || e.ptr[i] == '+')) neg = e.ptr[i++] == '-';
    if (i == e.len) goto no_integer;
    for (size_t j = i; j < e.len; j++) {
        if (e.ptr[j] < '0' || e.ptr[j] > '9') goto no_integer;
        if (v <= MAX_EXPIRY) v = v * 10 + (e.ptr[j] - '0');
    }
    while (i + 1 < e.len && e.ptr[i] == '0')
        i++;
    if (neg && v != 0) {
        snprintf(why, len, "{value_negative,-%.*s}", (int)(e.len - i), (const char *)e.ptr + i);
        return -1;
    }
    if (v > MAX_EXPIRY) {
        snprintf(why, len, "{value_too_large,%.*s}", (int)(e.len - i), (const char *)e.ptr + i);
        return -1;
    }
    return 0;
no_integer:
    snprintf(why, len, "no_integer");
    return -1;
}

/* RabbitMQ's checks on published properties; false after a 406. */
static bool publish_check_props(chan_t *ch, const wn_basic_props_t *p) {
    static const char *const routing_headers[] = {"CC", "BCC"};
    const char *user = ch->conn->user->name;
    wn_value_t v;

    if ((p->flags & WN_BASIC_USER_ID_FLAG) && !wn_bytes_eq_cstr(p->user_id, user)) {
        chan_error(ch, WN_PRECONDITION_FAILED, WN_BASIC_PUBLISH,
                   "user_id property set to '%.*s' but authenticated user was '%s'",
                   (int)p->user_id.len, (const char *)p->user_id.ptr, user);
        return false;
    }
    if (p->flags & WN_BASIC_EXPIRATION_FLAG) {
        char why[300];
        if (publish_check_expiration(p->expiration, why, sizeof why) < 0) {
            chan_error(ch, WN_PRECONDITION_FAILED, WN_BASIC_PUBLISH,
                       "invalid expiration '%.*s': %s", (int)p->expiration.len,
                       (const char *)p->expiration.ptr, why);
            return false;
        }
    }
    for (int i = 0; i < 2; i++) {
        if (!(p->flags & WN_BASIC_HEADERS_FLAG) ||
            !wn_table_get(p->headers, routing_headers[i], &v) || v.type == WN_FIELD_ARRAY)
            continue;
        chan_error(ch, WN_PRECONDITION_FAILED, WN_BASIC_PUBLISH,
                   "invalid message: {unacceptable_type_in_header,\"%s\",%s}", routing_headers[i],
                   wn_field_type_name(v.type));
        return false;
    }
    return true;
}

/* A copy of a headers table body without its BCC entries. */
static size_t headers_without_bcc(wn_bytes_t headers, uint8_t *out, size_t cap) {
    wn_writer_t w;
    wn_table_iter_t it;
    wn_bytes_t key;
    wn_value_t v;
    wn_writer_init(&w, out, cap);
    wn_table_iter_init(&it, headers);
    while (wn_table_next(&it, &key, &v)) {
        if (wn_bytes_eq_cstr(key, "BCC")) continue;
        wn_put_shortstr(&w, key);
        wn_value_put(&w, &v);
    }
    return w.len;
}

/* Allocate the message for a publish whose content header is h. */
static bool publish_new_message(chan_t *ch, const wn_frame_t *f, wn_content_header_t *h) {
    wn_bytes_t exchange = wn_bytes(ch->pub_exchange, ch->pub_exchange_len);
    wn_bytes_t rk = wn_bytes(ch->pub_routing_key, ch->pub_routing_key_len);
    wn_value_t bcc;

    if (!(h->props.flags & WN_BASIC_HEADERS_FLAG) || !wn_table_get(h->props.headers, "BCC", &bcc)) {
        ch->pub_msg = message_new(exchange, rk, f->payload + 12, f->size - 12,
                                  (wn_bytes_t){NULL, 0}, h->body_size, &h->props);
        return ch->pub_msg != NULL;
    }
    /* Rare: re-encode the properties with the BCC header left out. */
    uint8_t *buf = malloc(2 * (size_t)f->size);
    if (!buf) return false;
    h->props.headers = wn_bytes(buf, headers_without_bcc(h->props.headers, buf, f->size));
    uint8_t *enc = buf + f->size;
    size_t n = wn_content_header_encode(h, enc, f->size);
    ch->pub_msg = n >= 12 ? message_new(exchange, rk, enc + 12, (uint32_t)(n - 12), bcc.v.bytes,
                                        h->body_size, &h->props)
                          : NULL;
    free(buf);
    return ch->pub_msg != NULL;
}

static void publish_on_header(chan_t *ch, const wn_frame_t *f) {
    wn_content_header_t h;
    if (wn_content_header_decode(f->payload, f->size, &h) != 0) {
        char octets[128];
        conn_format_octets(f->payload, f->size, octets, sizeof octets);
        conn_close(ch->conn, WN_FRAME_ERROR, WN_BASIC_PUBLISH, "cannot decode %s", octets);
        return;
    }
    if (h.class_id != WN_CLASS_BASIC) {
        conn_close(ch->conn, WN_UNEXPECTED_FRAME, WN_BASIC_PUBLISH,
                   "expected content header for class 60, got one for class %u instead",
                   h.class_id);
        return;
    }
    if (h.body_size > broker.cfg.max_message_size) {
        chan_error(ch, WN_PRECONDITION_FAILED, WN_BASIC_PUBLISH,
                   "message size %llu is larger than configured max size %llu",
                   (unsigned long long)h.body_size,
                   (unsigned long long)broker.cfg.max_message_size);
        ch->pub_state = PUB_IDLE;
        return;
    }
    if (!publish_check_props(ch, &h.props)) {
        ch->pub_state = PUB_IDLE;
        return;
    }
    /* The properties are kept exactly as sent (everything after the 12 bytes of
     * class, weight and body size), unless a BCC header must come out. */
    if (!publish_new_message(ch, f, &h)) {
        chan_error(ch, WN_INTERNAL_ERROR, WN_BASIC_PUBLISH, "out of memory for a %llu-byte message",
                   (unsigned long long)h.body_size);
        ch->pub_state = PUB_IDLE;
        return;
    }
    ch->pub_state = PUB_AWAIT_BODY;
    ch->pub_received = 0;
    if (h.body_size == 0) publish_complete(ch);
}

static void publish_on_body(chan_t *ch, const wn_frame_t *f) {
    if (!message_put_body(ch->pub_msg, ch->pub_received, f->payload, f->size)) {
        conn_close(ch->conn, WN_FRAME_ERROR, WN_BASIC_PUBLISH,
                   "content body frames exceed the announced body size");
        return;
    }
    ch->pub_received += f->size;
    if (ch->pub_received == ch->pub_msg->body_len) publish_complete(ch);
}

void publish_on_content(chan_t *ch, const wn_frame_t *f) {
    if (ch->pub_state == PUB_AWAIT_HEADER && f->type == WN_FRAME_HEADER)
        publish_on_header(ch, f);
    else if (ch->pub_state == PUB_AWAIT_BODY && f->type == WN_FRAME_BODY)
        publish_on_body(ch, f);
    else if (ch->pub_state == PUB_AWAIT_HEADER)
        conn_close(ch->conn, WN_UNEXPECTED_FRAME, WN_BASIC_PUBLISH,
                   "expected content header for class 60, got non content header frame instead");
    else if (ch->pub_state == PUB_AWAIT_BODY)
        conn_close(ch->conn, WN_UNEXPECTED_FRAME, WN_BASIC_PUBLISH,
                   "expected content body, got non content body frame instead");
    else
        conn_close(ch->conn, WN_UNEXPECTED_FRAME, 0,
                   "expected method frame, got non method frame instead");
}

/* ---- confirm.select and tx ---------------------------------------------------------- */

void publish_on_confirm_select(chan_t *ch, const wn_confirm_select_t *m) {
    if (ch->tx) {
        chan_error(ch, WN_PRECONDITION_FAILED, WN_CONFIRM_SELECT,
                   "cannot switch from tx to confirm mode");
        return;
    }
    ch->confirm = true;
    if (!m->nowait) {
        wn_method_t ok = {.id = WN_CONFIRM_SELECT_OK};
        chan_send_method(ch, &ok);
    }
}

void publish_on_tx_select(chan_t *ch) {
    if (ch->confirm) {
        chan_error(ch, WN_PRECONDITION_FAILED, WN_TX_SELECT,
                   "cannot switch from confirm to tx mode");
        return;
    }
    ch->tx = true;
    wn_method_t ok = {.id = WN_TX_SELECT_OK};
    chan_send_method(ch, &ok);
}

static void tx_discard_publishes(chan_t *ch) {
    tx_publish_t *t = ch->tx_publishes;
    while (t) {
        tx_publish_t *next = t->next;
        message_unref(t->msg);
        free(t);
        t = next;
    }
    ch->tx_publishes = ch->tx_publishes_tail = NULL;
}

void publish_on_tx_commit(chan_t *ch) {
    if (!ch->tx) {
        chan_error(ch, WN_PRECONDITION_FAILED, WN_TX_COMMIT, "channel is not transactional");
        return;
    }
    bool journaled = false;
    for (tx_publish_t *t = ch->tx_publishes; t; t = t->next)
        deliver_message(ch, t->msg, t->mandatory, &journaled);
    tx_discard_publishes(ch);
    consumer_tx_commit(ch);
    /* commit-ok means the transaction's persistent messages are on disk. */
    if (journaled || ch->waits_count)
        wait_push(ch, 0, journaled ? store_next_flush(&broker.store) : 0, WAIT_COMMIT_OK);
    else
        send_commit_ok(ch);
}

void publish_on_tx_rollback(chan_t *ch) {
    if (!ch->tx) {
        chan_error(ch, WN_PRECONDITION_FAILED, WN_TX_ROLLBACK, "channel is not transactional");
        return;
    }
    tx_discard_publishes(ch);
    consumer_tx_rollback(ch);
    wn_method_t ok = {.id = WN_TX_ROLLBACK_OK};
    chan_send_method(ch, &ok);
}

void publish_channel_closed(chan_t *ch) {
    conn_t *c = ch->conn;
    if (ch->pub_msg) message_unref(ch->pub_msg);
    ch->pub_msg = NULL;
    tx_discard_publishes(ch);
    if (ch->waits_count) waiters_unlink(ch);
    free(ch->waits);
    ch->waits = NULL;
    ch->waits_count = ch->waits_cap = ch->waits_head = 0;
    if (ch->confirm_queued) {
        chan_t **pp = &c->confirm_list;
        while (*pp && *pp != ch)
            pp = &(*pp)->confirm_next;
        if (*pp) *pp = ch->confirm_next;
        ch->confirm_queued = false;
    }
}
