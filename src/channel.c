/*
 * channel.c - channel lifecycle and per-channel method dispatch.
 *
 * Owns chan_t and the connection's channel table. A newcomer looking for
 * "what happens on method X" starts at chan_dispatch() below.
 */
#include "channel.h"
#include "consumer.h"
#include "declare.h"
#include "log.h"
#include "publish.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static chan_t *chan_lookup(conn_t *c, uint16_t id) {
    return id < c->nchans ? c->chans[id] : NULL;
}

static chan_t *chan_open(conn_t *c, uint16_t id) {
    if (id >= c->nchans) {
        uint32_t n = c->nchans ? c->nchans : 8;
        while (n <= id)
            n *= 2;
        chan_t **tab = realloc(c->chans, n * sizeof *tab);
        if (!tab) return NULL;
        memset(tab + c->nchans, 0, (n - c->nchans) * sizeof *tab);
        c->chans = tab;
        c->nchans = n;
    }
    chan_t *ch = calloc(1, sizeof *ch);
    if (!ch) return NULL;
    ch->conn = c;
    ch->id = id;
    ch->state = CHAN_OPEN;
    c->chans[id] = ch;
    c->open_chans++;
    return ch;
}

static void chan_free(chan_t *ch) {
    conn_t *c = ch->conn;
    publish_channel_closed(ch);
    consumer_channel_closed(ch);
    c->chans[ch->id] = NULL;
    c->open_chans--;
    free(ch);
}

void chan_close_all(conn_t *c) {
    for (uint32_t i = 0; i < c->nchans; i++)
        if (c->chans[i]) chan_free(c->chans[i]);
}

void chan_error(chan_t *ch, uint16_t code, uint32_t method_id, const char *fmt, ...) {
    char text[256];
    va_list ap;
    wn_method_t m = {.id = WN_CHANNEL_CLOSE};
    int n =
        snprintf(text, sizeof text, "%s - ", wn_reply_name(code) ? wn_reply_name(code) : "ERROR");

    va_start(ap, fmt);
    vsnprintf(text + n, sizeof text - (size_t)n, fmt, ap);
    va_end(ap);
    /* Hard-error codes (540 NOT_IMPLEMENTED, ...) close the connection, as in RabbitMQ. */
    if (wn_reply_is_hard_error(code)) {
        conn_close(ch->conn, code, method_id, "%s", text + n);
        return;
    }
    log_error("channel error on connection %s, channel %u: %s", ch->conn->name, ch->id, text);
    m.u.channel_close.reply_code = code;
    m.u.channel_close.reply_text = wn_cstr(text);
    m.u.channel_close.class_id = (uint16_t)WN_METHOD_CLASS(method_id);
    m.u.channel_close.method_id = (uint16_t)WN_METHOD_INDEX(method_id);
    conn_send_method(ch->conn, ch->id, &m);
    ch->state = CHAN_CLOSING;
}

void chan_send_method(chan_t *ch, const wn_method_t *m) {
    conn_send_method(ch->conn, ch->id, m);
}

static void chan_send(chan_t *ch, uint32_t id) {
    wn_method_t m = {.id = id};
    chan_send_method(ch, &m);
}

static void chan_on_open(conn_t *c, uint16_t id) {
    if (c->open_chans >= c->channel_max) {
        conn_close(c, WN_NOT_ALLOWED, 0,
                   "number of channels opened (%u) has reached the negotiated channel_max (%u)",
                   c->open_chans, c->channel_max);
        return;
    }
    /* RabbitMQ only counts channels; Warren also keeps numbers within channel_max,
     * as the spec asks, so the channel table stays small. */
    if (id > c->channel_max) {
        conn_close(c, WN_NOT_ALLOWED, WN_CHANNEL_OPEN,
                   "channel number %u exceeds the negotiated channel_max (%u)", id, c->channel_max);
        return;
    }
    chan_t *ch = chan_open(c, id);
    if (!ch) {
        conn_close(c, WN_INTERNAL_ERROR, WN_CHANNEL_OPEN, "out of memory opening a channel");
        return;
    }
    chan_send(ch, WN_CHANNEL_OPEN_OK);
}

/* As RabbitMQ 3.x: a client may not stop its own deliveries with channel.flow
 * (prefetch does that); active=false closes the connection with 540. */
static void chan_on_flow(chan_t *ch, const wn_channel_flow_t *m) {
    if (!m->active) {
        conn_close(ch->conn, WN_NOT_IMPLEMENTED, WN_CHANNEL_FLOW, "active=false");
        return;
    }
    wn_method_t ok = {.id = WN_CHANNEL_FLOW_OK};
    ok.u.channel_flow_ok.active = true;
    chan_send_method(ch, &ok);
}

/* Methods of the basic, confirm and tx classes. */
static bool chan_dispatch_basic(chan_t *ch, const wn_method_t *m) {
    switch (m->id) {
    case WN_BASIC_PUBLISH:
        publish_on_method(ch, &m->u.basic_publish);
        break;
    case WN_BASIC_QOS:
        consumer_on_qos(ch, &m->u.basic_qos);
        break;
    case WN_BASIC_CONSUME:
        consumer_on_consume(ch, &m->u.basic_consume);
        break;
    case WN_BASIC_CANCEL:
        consumer_on_cancel(ch, &m->u.basic_cancel);
        break;
    case WN_BASIC_GET:
        consumer_on_get(ch, &m->u.basic_get);
        break;
    case WN_BASIC_ACK:
        consumer_on_ack(ch, m->u.basic_ack.delivery_tag, m->u.basic_ack.multiple);
        break;
    case WN_BASIC_NACK:
        consumer_on_nack(ch, m->u.basic_nack.delivery_tag, m->u.basic_nack.multiple,
                         m->u.basic_nack.requeue, m->id);
        break;
    case WN_BASIC_REJECT:
        consumer_on_nack(ch, m->u.basic_reject.delivery_tag, false, m->u.basic_reject.requeue,
                         m->id);
        break;
    case WN_BASIC_RECOVER:
        consumer_on_recover(ch, m->u.basic_recover.requeue, false);
        break;
    case WN_BASIC_RECOVER_ASYNC:
        consumer_on_recover(ch, m->u.basic_recover_async.requeue, true);
        break;
    case WN_CONFIRM_SELECT:
        publish_on_confirm_select(ch, &m->u.confirm_select);
        break;
    case WN_TX_SELECT:
        publish_on_tx_select(ch);
        break;
    case WN_TX_COMMIT:
        publish_on_tx_commit(ch);
        break;
    case WN_TX_ROLLBACK:
        publish_on_tx_rollback(ch);
        break;
    default:
        return false;
    }
    return true;
}

/* Methods of the exchange and queue classes. */
static bool chan_dispatch_declare(chan_t *ch, const wn_method_t *m) {
    switch (m->id) {
    case WN_EXCHANGE_DECLARE:
        declare_exchange(ch, &m->u.exchange_declare);
        break;
    case WN_EXCHANGE_DELETE:
        declare_exchange_delete(ch, &m->u.exchange_delete);
        break;
    case WN_EXCHANGE_BIND:
        declare_exchange_bind(ch, &m->u.exchange_bind);
        break;
    case WN_EXCHANGE_UNBIND:
        declare_exchange_unbind(ch, &m->u.exchange_unbind);
        break;
    case WN_QUEUE_DECLARE:
        declare_queue(ch, &m->u.queue_declare);
        break;
    case WN_QUEUE_BIND:
        declare_queue_bind(ch, &m->u.queue_bind);
        break;
    case WN_QUEUE_UNBIND:
        declare_queue_unbind(ch, &m->u.queue_unbind);
        break;
    case WN_QUEUE_PURGE:
        declare_queue_purge(ch, &m->u.queue_purge);
        break;
    case WN_QUEUE_DELETE:
        declare_queue_delete(ch, &m->u.queue_delete);
        break;
    default:
        return false;
    }
    return true;
}

/* Methods on an open channel: each lands in the module that owns it. */
static void chan_dispatch(chan_t *ch, const wn_method_t *m) {
    if (chan_dispatch_basic(ch, m) || chan_dispatch_declare(ch, m)) return;
    switch (m->id) {
    case WN_CHANNEL_OPEN:
        conn_close(ch->conn, WN_CHANNEL_ERROR, m->id, "second 'channel.open' seen");
        break;
    case WN_CHANNEL_CLOSE:
        chan_send(ch, WN_CHANNEL_CLOSE_OK);
        chan_free(ch);
        break;
    case WN_CHANNEL_CLOSE_OK:
        break; /* nothing of ours was closing */
    case WN_CHANNEL_FLOW:
        chan_on_flow(ch, &m->u.channel_flow);
        break;
    default:
        /* Methods only a server sends (deliver, get-ok, ...) or of the connection class. */
        conn_close(ch->conn, WN_COMMAND_INVALID, m->id, "method '%s' is not valid from a client",
                   wn_method_name(m->id));
        break;
    }
}

/* After we sent channel.close, only close-ok (or a crossing close) matters. */
static void chan_closing_method(chan_t *ch, const wn_method_t *m) {
    if (m->id == WN_CHANNEL_CLOSE_OK) {
        chan_free(ch);
    } else if (m->id == WN_CHANNEL_CLOSE) {
        chan_send(ch, WN_CHANNEL_CLOSE_OK);
        chan_free(ch);
    }
}

void chan_handle_frame(conn_t *c, const wn_frame_t *f) {
    chan_t *ch = chan_lookup(c, f->channel);
    wn_method_t m;

    if (ch && ch->state == CHAN_OPEN && (f->type != WN_FRAME_METHOD || ch->pub_state != PUB_IDLE)) {
        publish_on_content(ch, f);
        return;
    }
    if (f->type != WN_FRAME_METHOD) {
        if (ch && ch->state == CHAN_CLOSING) return;
        conn_close(c, WN_UNEXPECTED_FRAME, 0,
                   "expected method frame, got non method frame instead");
        return;
    }
    if (ch && ch->state == CHAN_CLOSING) {
        if (wn_method_decode(f->payload, f->size, &m) == 0) chan_closing_method(ch, &m);
        return;
    }
    if (!conn_decode_method(c, f, &m)) return;
    if (!ch) {
        if (m.id == WN_CHANNEL_OPEN)
            chan_on_open(c, f->channel);
        else
            conn_close(c, WN_CHANNEL_ERROR, m.id, "expected 'channel.open'");
        return;
    }
    if (ch->state == CHAN_CLOSING)
        chan_closing_method(ch, &m);
    else
        chan_dispatch(ch, &m);
}
