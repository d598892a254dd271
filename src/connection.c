/*
 * connection.c - the AMQP connection: socket I/O, the handshake
 * (start / tune / open), heartbeats, connection.close in both directions,
 * and the hand-off of channel frames to channel.c.
 *
 * Owns conn_t and its socket and timers. Touches the broker's connection
 * list, users and vhosts (read-only), and nothing below the channel layer.
 */
#include "autoconfig.h"
#include "connection.h"
#include "channel.h"
#include "consumer.h"
#include "flow.h"
#include "log.h"
#include "message.h"
#include "publish.h"
#include "queue.h"
#include "table.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define CLOSE_GRACE      3.0          /* seconds to wait for close-ok, and to drain */
#define READS_PER_WAKEUP 1            /* fairness: bounded work per readable event */
#define MAX_METHOD_FRAME 65536        /* room reserved to encode one method frame */
#define OUT_HIGH_WATER   (1u << 20)   /* stop delivering to a client this far behind */
#define OUT_LOW_WATER    (256u << 10) /* ...and resume below this */
#define OUT_SPARE_MAX    (2u << 20)   /* drained output buffers up to this size are kept */
#define IN_STEP          (64u << 10)  /* read into a partial frame of unknown size this much */
#define IN_FRAME_MAX     (1u << 20)   /* ...or of a known size larger than this */

static void conn_destroy(conn_t *c);
static void conn_schedule_flush(conn_t *c);
static void conn_check_high_water(conn_t *c);
static void conn_check_low_water(conn_t *c);
static void on_readable(struct ev_loop *loop, ev_io *w, int revents);
static void on_writable(struct ev_loop *loop, ev_io *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);

/* ---- names and setup ------------------------------------------------------ */

static void format_addr(const struct sockaddr *sa, char *out, size_t len, bool *loopback) {
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    *loopback = false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        *loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        port = ntohs(in6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof host);
            *loopback = in6->sin6_addr.s6_addr[12] == 127;
        } else {
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
            *loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
        }
    }
    snprintf(out, len, "%s:%u", host, port);
}

conn_t *conn_new(int fd, const struct sockaddr *peer, socklen_t peerlen) {
    struct sockaddr_storage local;
    socklen_t locallen = sizeof local;
    char localname[64] = "?";
    bool ignored;
    conn_t *c = calloc(1, sizeof *c);

    (void)peerlen;
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->state = CONN_AWAIT_HEADER;
    format_addr(peer, c->peer, sizeof c->peer, &c->peer_is_loopback);
    if (getsockname(fd, (struct sockaddr *)&local, &locallen) == 0)
        format_addr((struct sockaddr *)&local, localname, sizeof localname, &ignored);
    snprintf(c->name, sizeof c->name, "%s -> %s", c->peer, localname);
    c->frame_max = broker.cfg.frame_max;
    c->last_recv = c->last_send = ev_now(broker.loop);

    ev_io_init(&c->rio, on_readable, fd, EV_READ);
    ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
    ev_timer_init(&c->timer, on_timer, broker.cfg.handshake_timeout / 1000.0, 0.);
    c->rio.data = c->wio.data = c->timer.data = c;
    ev_io_start(broker.loop, &c->rio);
    ev_timer_start(broker.loop, &c->timer);

    c->next = broker.conns;
    if (broker.conns) broker.conns->prev = c;
    broker.conns = c;
    broker.nconns++;
    log_info("accepting AMQP connection %s", c->name);
    return c;
}

/* ---- output ---------------------------------------------------------------- */

/* Room for n more bytes of output. A connection with nothing queued takes a
 * spare buffer if there is one (see conn_release_out). */
static uint8_t *conn_out_reserve(conn_t *c, size_t n) {
    if (!c->out.data && broker.nspare_out) c->out = broker.spare_out[--broker.nspare_out];
    return buf_reserve(&c->out, n);
}

/* Output drained: hand the buffer to the broker's spares rather than free it.
 * A busy connection would otherwise grow a new one from 4 KiB by doubling on
 * every loop iteration, and free it again (half of it copied each time, and
 * malloc consolidating); idle connections still hold no buffer. */
static void conn_release_out(conn_t *c) {
    if (buf_pending(&c->out) > 0 || !c->out.data) return;
    if (c->out.cap > OUT_SPARE_MAX || broker.nspare_out == BROKER_SPARE_OUT) {
        buf_free(&c->out);
        return;
    }
    c->out.off = c->out.len = 0;
    broker.spare_out[broker.nspare_out++] = c->out;
    c->out = (buf_t){0};
}

void conn_send_raw(conn_t *c, const void *p, size_t n) {
    if (c->state >= CONN_DRAINING) return;
    memcpy(conn_out_reserve(c, n), p, n);
    buf_commit(&c->out, n);
    conn_schedule_flush(c);
}

void conn_send_method(conn_t *c, uint16_t channel, const wn_method_t *m) {
    if (c->state >= CONN_DRAINING) return;
    size_t cap = MAX_METHOD_FRAME;
    for (;;) {
        uint8_t *p = conn_out_reserve(c, cap);
        size_t n = wn_frame_encode_method(p, cap, channel, m);
        if (n > 0) {
            buf_commit(&c->out, n);
            break;
        }
        if (cap >= (1u << 24)) {
            log_error("connection %s: cannot encode %s", c->name, wn_method_name(m->id));
            return;
        }
        cap *= 4;
    }
    conn_schedule_flush(c);
}

/* Bytes queued for the socket: the buffer's and the bodies' written from messages. */
static size_t conn_out_pending(const conn_t *c) {
    return buf_pending(&c->out) + c->out_refs.bytes;
}

bool conn_is_backed_up(const conn_t *c) {
    return c->out_blocked;
}

/* Is reading paused (output backed up, or blocked by a resource alarm)? */
static bool conn_read_paused(const conn_t *c) {
    return c->out_blocked || ((c->alarm_blocked || c->flow_held) && c->state == CONN_OPEN);
}

/* Read from the socket unless something pauses it. A paused connection is
 * not expected to send heartbeats, so the clock restarts when it resumes. */
static void conn_update_reading(conn_t *c) {
    if (c->state == CONN_DEAD || conn_read_paused(c)) {
        ev_io_stop(broker.loop, &c->rio);
    } else if (!ev_is_active(&c->rio)) {
        c->last_recv = ev_now(broker.loop);
        ev_io_start(broker.loop, &c->rio);
    }
}

/* Output passed the high-water mark: stop delivering to this client and stop
 * reading from it until it has read most of what it was sent. */
static void conn_check_high_water(conn_t *c) {
    if (c->out_blocked || conn_out_pending(c) < OUT_HIGH_WATER) return;
    c->out_blocked = true;
    conn_update_reading(c);
}

/* Below the low-water mark again: resume both. */
static void conn_check_low_water(conn_t *c) {
    if (!c->out_blocked || conn_out_pending(c) >= OUT_LOW_WATER) return;
    c->out_blocked = false;
    conn_update_reading(c);
    consumer_connection_writable(c);
}

void conn_set_blocked(conn_t *c, bool blocked, const char *reason) {
    if (c->alarm_blocked == blocked || (blocked && c->state != CONN_OPEN)) return;
    c->alarm_blocked = blocked;
    conn_update_reading(c);
    if (!(c->client_caps & CONN_CAP_CONNECTION_BLOCKED) || c->state != CONN_OPEN) return;
    wn_method_t m = {.id = blocked ? WN_CONNECTION_BLOCKED : WN_CONNECTION_UNBLOCKED};
    if (blocked) m.u.connection_blocked.reason = wn_cstr(reason);
    conn_send_method(c, 0, &m);
}

void conn_set_flow(conn_t *c, bool held) {
    c->flow_held = held;
    conn_update_reading(c);
}

/* One body frame of n bytes from body: copied into the output buffer if it is
 * small, written from the message itself if not. */
static void conn_send_body_frame(conn_t *c, uint16_t channel, message_t *msg, const uint8_t *body,
                                 uint32_t n) {
    uint8_t *p;
    if (n < OUTREF_MIN_BODY) {
        p = conn_out_reserve(c, WN_FRAME_OVERHEAD + n);
        wn_frame_header_write(p, WN_FRAME_BODY, channel, n);
        memcpy(p + 7, body, n);
        p[7 + n] = WN_FRAME_END;
        buf_commit(&c->out, WN_FRAME_OVERHEAD + n);
        return;
    }
    wn_frame_header_write(conn_out_reserve(c, WN_FRAME_HEADER_SIZE), WN_FRAME_BODY, channel, n);
    buf_commit(&c->out, WN_FRAME_HEADER_SIZE);
    if (!outref_add(&c->out_refs, &c->out, msg, body, n)) {
        memcpy(conn_out_reserve(c, n), body, n);
        buf_commit(&c->out, n);
    }
    *conn_out_reserve(c, 1) = WN_FRAME_END;
    buf_commit(&c->out, 1);
}

void conn_send_content(conn_t *c, uint16_t channel, const wn_method_t *m, message_t *msg) {
    uint32_t max_body = c->frame_max ? c->frame_max - WN_FRAME_OVERHEAD : 131072;
    const uint8_t *body = message_body(msg);
    uint8_t *p;

    conn_send_method(c, channel, m);
    if (c->state >= CONN_DRAINING) return;
    p = conn_out_reserve(c, WN_FRAME_OVERHEAD + 12 + msg->props_len);
    wn_frame_header_write(p, WN_FRAME_HEADER, channel, 12 + msg->props_len);
    wn_store16(p + 7, WN_CLASS_BASIC);
    wn_store16(p + 9, 0);
    wn_store64(p + 11, msg->body_len);
    memcpy(p + 19, message_props(msg), msg->props_len);
    p[19 + msg->props_len] = WN_FRAME_END;
    buf_commit(&c->out, WN_FRAME_OVERHEAD + 12 + msg->props_len);
    for (uint64_t off = 0; off < msg->body_len; off += max_body) {
        uint32_t n = (uint32_t)(msg->body_len - off < max_body ? msg->body_len - off : max_body);
        conn_send_body_frame(c, channel, msg, body + off, n);
    }
    conn_check_high_water(c);
}

static void conn_schedule_flush(conn_t *c) {
    conn_check_high_water(c);
    if (c->in_flush_list) return;
    c->in_flush_list = true;
    c->flush_next = broker.flush_list;
    broker.flush_list = c;
}

/* Write what is queued, bodies from their messages included, in one writev. */
static ssize_t conn_writev(conn_t *c) {
    struct iovec iov[64];
    int n = outref_iov(&c->out_refs, &c->out, iov, 64);
    return writev(c->fd, iov, n);
}

/* Write what is queued. Returns false if the socket failed. */
static bool conn_write_out(conn_t *c) {
    while (conn_out_pending(c) > 0) {
        ssize_t n = conn_writev(c);
        if (n > 0) {
            outref_consume(&c->out_refs, &c->out, (size_t)n);
            c->last_send = ev_now(broker.loop);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(broker.loop, &c->wio);
            conn_check_low_water(c);
            return true;
        }
        if (n < 0 && errno == EINTR) continue;
        return false;
    }
    ev_io_stop(broker.loop, &c->wio);
    conn_release_out(c);
    conn_check_low_water(c);
    return true;
}

/* Once everything is written, a closing connection shuts its write side and
 * reads until the client closes: closing with unread input would reset the
 * connection and could destroy the connection.close the client has yet to read. */
static void conn_start_draining(conn_t *c) {
    c->state = CONN_DRAINING;
    ev_io_start(broker.loop, &c->rio);
    ev_timer_stop(broker.loop, &c->timer);
    ev_timer_set(&c->timer, CLOSE_GRACE, 0.);
    ev_timer_start(broker.loop, &c->timer);
}

/* A closing connection gives back what it holds at once: unacked messages go
 * back to their queues and exclusive queues go away before the client sees
 * close-ok, so the next client finds them in their final state. */
static void conn_release(conn_t *c) {
    chan_close_all(c);
    while (c->exclusive_queues)
        queue_delete(c->exclusive_queues);
}

static void conn_flush(conn_t *c) {
    if (c->state >= CONN_CLOSING) conn_release(c);
    if (c->state == CONN_DEAD) {
        conn_destroy(c);
        return;
    }
    if (!conn_write_out(c)) {
        log_info("closing AMQP connection %s: write failed: %s", c->name, strerror(errno));
        conn_destroy(c);
        return;
    }
    if (c->state == CONN_DRAINING && conn_out_pending(c) == 0) shutdown(c->fd, SHUT_WR);
}

void conn_flush_all(void) {
    conn_t *c = broker.flush_list;
    broker.flush_list = NULL;
    while (c) {
        conn_t *next = c->flush_next;
        c->in_flush_list = false;
        conn_flush(c);
        c = next;
    }
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents) {
    conn_t *c = w->data;
    (void)loop;
    (void)revents;
    conn_flush(c);
}

/* ---- closing ---------------------------------------------------------------- */

void conn_drop(conn_t *c, const char *why) {
    if (c->state >= CONN_DRAINING) return;
    log_info("closing AMQP connection %s: %s", c->name, why);
    conn_start_draining(c);
    /* What is queued still goes out first; the flush shuts the write side after it. */
    conn_schedule_flush(c);
}

void conn_close(conn_t *c, uint16_t code, uint32_t method_id, const char *fmt, ...) {
    char text[256];
    int n;
    va_list ap;
    wn_method_t m = {.id = WN_CONNECTION_CLOSE};

    if (c->state >= CONN_CLOSING) return;
    n = snprintf(text, sizeof text, "%s - ", wn_reply_name(code) ? wn_reply_name(code) : "ERROR");
    va_start(ap, fmt);
    vsnprintf(text + n, sizeof text - (size_t)n, fmt, ap);
    va_end(ap);
    if (code == WN_CONNECTION_FORCED)
        log_warning("closing AMQP connection %s (vhost '%s', user '%s'): %s", c->name,
                    c->vhost ? c->vhost->name : "", c->user ? c->user->name : "", text);
    else
        log_error("closing AMQP connection %s: connection error %u %s", c->name, code, text);

    m.u.connection_close.reply_code = code;
    m.u.connection_close.reply_text = wn_cstr(text);
    m.u.connection_close.class_id = (uint16_t)WN_METHOD_CLASS(method_id);
    m.u.connection_close.method_id = (uint16_t)WN_METHOD_INDEX(method_id);
    conn_send_method(c, 0, &m);
    c->state = CONN_CLOSING;
    conn_update_reading(c); /* a blocked or held client must still be heard closing */
    ev_timer_stop(broker.loop, &c->timer);
    ev_timer_set(&c->timer, CLOSE_GRACE, 0.);
    ev_timer_start(broker.loop, &c->timer);
}

static void conn_closed_cleanly(conn_t *c) {
    log_info("closing AMQP connection %s (vhost '%s', user '%s')", c->name,
             c->vhost ? c->vhost->name : "", c->user ? c->user->name : "");
    conn_start_draining(c);
    conn_schedule_flush(c);
}

static void conn_destroy(conn_t *c) {
    if (c->state != CONN_DEAD) c->state = CONN_DEAD;
    if (c->in_flush_list) return; /* freed by the flush that is pending */
    chan_close_all(c);
    while (c->exclusive_queues)
        queue_delete(c->exclusive_queues);
    ev_io_stop(broker.loop, &c->rio);
    ev_io_stop(broker.loop, &c->wio);
    ev_timer_stop(broker.loop, &c->timer);
    if (c->fd >= 0) close(c->fd);
    if (c->vhost) c->vhost->connections--;
    flow_conn_gone(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        broker.conns = c->next;
    if (c->next) c->next->prev = c->prev;
    broker.nconns--;
    buf_free(&c->in);
    buf_free(&c->out);
    outref_free(&c->out_refs);
    free(c->chans);
    free(c);
    if (broker.shutting_down && broker.nconns == 0) ev_break(broker.loop, EVBREAK_ALL);
}

/* Mark dead; the flush step frees it (never in the middle of processing its frames). */
static void conn_kill(conn_t *c) {
    if (c->state == CONN_DEAD) return;
    c->state = CONN_DEAD;
    ev_io_stop(broker.loop, &c->rio);
    conn_schedule_flush(c);
}

/* ---- the handshake ----------------------------------------------------------- */

static size_t server_properties(uint8_t *buf, size_t cap) {
    wn_writer_t w;
    wn_value_t caps = {.type = WN_FIELD_TABLE};
    uint8_t capbuf[256];
    wn_writer_t cw;

    /* Only what works is advertised; each capability is added as it lands. */
    wn_writer_init(&cw, capbuf, sizeof capbuf);
    wn_table_put_bool(&cw, "publisher_confirms", true);
    wn_table_put_bool(&cw, "connection.blocked", true);
    wn_table_put_bool(&cw, "exchange_exchange_bindings", true);
    wn_table_put_bool(&cw, "basic.nack", true);
    wn_table_put_bool(&cw, "consumer_cancel_notify", true);
    wn_table_put_bool(&cw, "consumer_priorities", true);
    wn_table_put_bool(&cw, "authentication_failure_close", true);
    wn_table_put_bool(&cw, "per_consumer_qos", true);
    caps.v.bytes = wn_bytes(capbuf, cw.len);

    wn_writer_init(&w, buf, cap);
    wn_table_put(&w, "capabilities", &caps);
    wn_table_put_str(&w, "cluster_name", "warren");
    wn_table_put_str(&w, "copyright", "Copyright (c) the Warren authors");
    wn_table_put_str(&w, "information", "Warren, an AMQP 0-9-1 message broker");
    wn_table_put_str(&w, "platform", "C11/libev");
    wn_table_put_str(&w, "product", "Warren");
    wn_table_put_str(&w, "version", PACKAGE_VERSION);
    return w.overflow ? 0 : w.len;
}

static void conn_send_start(conn_t *c) {
    uint8_t props[1024];
    wn_method_t m = {.id = WN_CONNECTION_START};
    m.u.connection_start.version_major = 0;
    m.u.connection_start.version_minor = 9;
    m.u.connection_start.server_properties =
        wn_bytes(props, server_properties(props, sizeof props));
    m.u.connection_start.mechanisms = wn_cstr(auth_mechanisms);
    m.u.connection_start.locales = WN_BYTES_LIT("en_US");
    conn_send_method(c, 0, &m);
    c->state = CONN_AWAIT_START_OK;
}

static void conn_read_client_caps(conn_t *c, wn_bytes_t client_props) {
    static const struct {
        const char *name;
        unsigned bit;
    } known[] = {
        {"authentication_failure_close", CONN_CAP_AUTH_FAILURE_CLOSE},
        {"consumer_cancel_notify", CONN_CAP_CONSUMER_CANCEL_NOTIFY},
        {"connection.blocked", CONN_CAP_CONNECTION_BLOCKED},
        {"publisher_confirms", CONN_CAP_PUBLISHER_CONFIRMS},
        {"basic.nack", CONN_CAP_BASIC_NACK},
    };
    wn_value_t caps, v;
    if (!wn_table_get(client_props, "capabilities", &caps) || caps.type != WN_FIELD_TABLE) return;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (wn_table_get(caps.v.bytes, known[i].name, &v) && v.type == WN_FIELD_BOOL && v.v.b)
            c->client_caps |= known[i].bit;
}

static void conn_refuse_login(conn_t *c, const char *mech, const char *why) {
    log_error("connection %s: authentication failed: %s", c->name, why);
    /* Only clients that announced authentication_failure_close expect a close method. */
    if (c->client_caps & CONN_CAP_AUTH_FAILURE_CLOSE)
        conn_close(c, WN_ACCESS_REFUSED, 0,
                   "Login was refused using authentication mechanism %s. For details see the "
                   "broker logfile.",
                   mech);
    else
        conn_drop(c, "authentication failed");
}

static void conn_on_start_ok(conn_t *c, const wn_connection_start_ok_t *m) {
    wn_bytes_t user, pass;
    char mech[64];
    auth_mech_t mt = auth_mech_parse(m->mechanism);

    conn_read_client_caps(c, m->client_properties);
    snprintf(mech, sizeof mech, "%.*s", (int)m->mechanism.len, (const char *)m->mechanism.ptr);
    /* Before tune, RabbitMQ answers protocol errors by closing the socket. */
    if (mt == AUTH_MECH_NONE) {
        log_error("connection %s: unknown authentication mechanism '%s'", c->name, mech);
        conn_drop(c, "unknown authentication mechanism");
        return;
    }
    if (auth_parse_response(mt, m->response, &user, &pass) < 0) {
        log_error("connection %s: malformed %s response", c->name, mech);
        conn_drop(c, "malformed authentication response");
        return;
    }
    user_t *u = auth_find_user(&broker.auth, user);
    if (!u || !auth_check_password(u, pass)) {
        conn_refuse_login(c, mech, u ? "invalid credentials" : "user not found");
        return;
    }
    if (broker.cfg.guest_loopback_only && strcmp(u->name, "guest") == 0 && !c->peer_is_loopback) {
        conn_refuse_login(c, mech, "user 'guest' can only connect via localhost");
        return;
    }
    c->user = u;

    wn_method_t tune = {.id = WN_CONNECTION_TUNE};
    tune.u.connection_tune.channel_max = broker.cfg.channel_max;
    tune.u.connection_tune.frame_max = broker.cfg.frame_max;
    tune.u.connection_tune.heartbeat = broker.cfg.heartbeat;
    conn_send_method(c, 0, &tune);
    c->state = CONN_AWAIT_TUNE_OK;
}

/* Negotiate a value where 0 means "no limit": the lower of two limits wins. */
static uint32_t negotiate(uint32_t server, uint32_t client) {
    if (server == 0) return client;
    if (client == 0) return server;
    return client < server ? client : server;
}

static void conn_start_heartbeats(conn_t *c) {
    ev_timer_stop(broker.loop, &c->timer);
    if (c->heartbeat == 0) return;
    /* Tick at half the interval: send when idle that long, give up after two intervals. */
    ev_timer_set(&c->timer, c->heartbeat / 2.0, c->heartbeat / 2.0);
    ev_timer_start(broker.loop, &c->timer);
}

static void conn_on_tune_ok(conn_t *c, const wn_connection_tune_ok_t *m) {
    uint32_t server_frame_max = broker.cfg.frame_max;
    if (m->frame_max != 0 && m->frame_max < WN_FRAME_MIN_SIZE) {
        conn_close(c, WN_NOT_ALLOWED, WN_CONNECTION_TUNE_OK, "frame_max=%u < %u min size",
                   m->frame_max, WN_FRAME_MIN_SIZE);
        return;
    }
    /* 0 asks for "no limit", which is more than a broker with a limit offered. */
    if (server_frame_max != 0 && (m->frame_max > server_frame_max || m->frame_max == 0)) {
        conn_close(c, WN_NOT_ALLOWED, WN_CONNECTION_TUNE_OK, "frame_max=%u > %u max size",
                   m->frame_max, server_frame_max);
        return;
    }
    if (broker.cfg.channel_max != 0 &&
        (m->channel_max > broker.cfg.channel_max || m->channel_max == 0)) {
        conn_close(c, WN_NOT_ALLOWED, WN_CONNECTION_TUNE_OK, "channel_max=%u > %u max channels",
                   m->channel_max, broker.cfg.channel_max);
        return;
    }
    c->frame_max = negotiate(server_frame_max, m->frame_max);
    c->channel_max = (uint16_t)negotiate(broker.cfg.channel_max, m->channel_max);
    if (c->channel_max == 0) c->channel_max = 65535;
    c->heartbeat = m->heartbeat;
    c->state = CONN_AWAIT_OPEN;
}

static void conn_on_open(conn_t *c, const wn_connection_open_t *m) {
    vhost_t *vh = vhost_find(&broker.vhosts, m->virtual_host);
    int len = (int)m->virtual_host.len;
    const char *name = (const char *)m->virtual_host.ptr;

    if (!vh) {
        conn_close(c, WN_NOT_ALLOWED, WN_CONNECTION_OPEN, "vhost %.*s not found", len, name);
        return;
    }
    if (!vhost_permissions(vh, c->user)) {
        conn_close(c, WN_NOT_ALLOWED, WN_CONNECTION_OPEN,
                   "access to vhost '%.*s' refused for user '%s'", len, name, c->user->name);
        return;
    }
    c->vhost = vh;
    vh->connections++;
    wn_method_t ok = {.id = WN_CONNECTION_OPEN_OK};
    conn_send_method(c, 0, &ok);
    c->state = CONN_OPEN;
    conn_start_heartbeats(c);
    log_info("connection %s: user '%s' authenticated and granted access to vhost '%s'", c->name,
             c->user->name, vh->name);
}

/* During the handshake only the one expected method is acceptable. */
static void conn_handshake_method(conn_t *c, const wn_method_t *m) {
    static const uint32_t expected[] = {
        [CONN_AWAIT_START_OK] = WN_CONNECTION_START_OK,
        [CONN_AWAIT_TUNE_OK] = WN_CONNECTION_TUNE_OK,
        [CONN_AWAIT_OPEN] = WN_CONNECTION_OPEN,
    };
    if (m->id != expected[c->state]) {
        if (m->id == WN_CONNECTION_CLOSE) {
            conn_closed_cleanly(c);
            return;
        }
        conn_close(c, WN_COMMAND_INVALID, m->id, "expected '%s', got '%s'",
                   wn_method_name(expected[c->state]),
                   wn_method_name(m->id) ? wn_method_name(m->id) : "unknown method");
        return;
    }
    switch (m->id) {
    case WN_CONNECTION_START_OK:
        conn_on_start_ok(c, &m->u.connection_start_ok);
        break;
    case WN_CONNECTION_TUNE_OK:
        conn_on_tune_ok(c, &m->u.connection_tune_ok);
        break;
    case WN_CONNECTION_OPEN:
        conn_on_open(c, &m->u.connection_open);
        break;
    }
}

/* ---- RabbitMQ's wording for malformed input ----------------------------------- */

/* Render bytes as an Erlang binary, <<"abc">> or <<0,10,...>>, as RabbitMQ's
 * error texts do; cut short to fit a reply text. */
void conn_format_octets(const uint8_t *p, size_t n, char *out, size_t cap) {
    bool printable = true;
    size_t len = 0;
    if (n == 0) {
        snprintf(out, cap, "<<>>");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (p[i] < 32 || p[i] > 126 || p[i] == '"' || p[i] == '\\') printable = false;
    len += (size_t)snprintf(out + len, cap - len, printable ? "<<\"" : "<<");
    for (size_t i = 0; i < n && len + 12 < cap; i++) {
        if (printable)
            out[len++] = (char)p[i];
        else
            len += (size_t)snprintf(out + len, cap - len, i ? ",%u" : "%u", p[i]);
        out[len] = '\0';
        if (len + 12 >= cap && i + 1 < n) len += (size_t)snprintf(out + len, cap - len, "...");
    }
    snprintf(out + len, cap - len, printable ? "\">>" : ">>");
}

static bool frame_type_known(uint8_t type) {
    return type == WN_FRAME_METHOD || type == WN_FRAME_HEADER || type == WN_FRAME_BODY ||
           type == WN_FRAME_HEARTBEAT;
}

/* The frame layer refused the bytes at data: say why in RabbitMQ's words. */
static void conn_frame_error(conn_t *c, const uint8_t *data, size_t len) {
    char octets[128] = "<<>>";
    uint8_t type = data[0];
    uint32_t size = len >= WN_FRAME_HEADER_SIZE ? wn_load32(data + 3) : 0;
    size_t have = len > WN_FRAME_HEADER_SIZE ? len - WN_FRAME_HEADER_SIZE : 0;

    if (len >= WN_FRAME_HEADER_SIZE && c->frame_max && size > c->frame_max) {
        conn_close(c, WN_FRAME_ERROR, 0, "type %u, all octets = <<>>: {frame_too_large,%u,%u}",
                   type, size, c->frame_max - WN_FRAME_OVERHEAD);
        return;
    }
    conn_format_octets(data + WN_FRAME_HEADER_SIZE, have < size ? have : size, octets,
                       sizeof octets);
    if (frame_type_known(type) && have > size)
        conn_close(c, WN_FRAME_ERROR, 0, "type %u, all octets = %s: {invalid_frame_end_marker,%u}",
                   type, octets, data[WN_FRAME_HEADER_SIZE + size]);
    else
        conn_close(c, WN_FRAME_ERROR, 0, "type %u, all octets = %s: unknown_frame", type, octets);
}

/* ---- frames on channel 0 once open ------------------------------------------ */

static void conn_on_client_close(conn_t *c) {
    wn_method_t ok = {.id = WN_CONNECTION_CLOSE_OK};
    conn_send_method(c, 0, &ok);
    conn_closed_cleanly(c);
}

static void conn_control_method(conn_t *c, const wn_method_t *m) {
    switch (m->id) {
    case WN_CONNECTION_CLOSE:
        conn_on_client_close(c);
        break;
    case WN_CONNECTION_CLOSE_OK:
        conn_close(c, WN_CHANNEL_ERROR, m->id, "unexpected 'connection.close-ok'");
        break;
    case WN_CONNECTION_UPDATE_SECRET:
        conn_close(c, WN_NOT_IMPLEMENTED, m->id, "connection.update-secret is not supported");
        break;
    default:
        conn_close(c, WN_COMMAND_INVALID, m->id, "method '%s' is not allowed on channel 0",
                   wn_method_name(m->id) ? wn_method_name(m->id) : "unknown");
        break;
    }
}

static void conn_closing_frame(conn_t *c, const wn_frame_t *f) {
    wn_method_t m;
    if (f->type != WN_FRAME_METHOD || f->channel != 0) return;
    if (wn_method_decode(f->payload, f->size, &m) != 0) return;
    if (m.id == WN_CONNECTION_CLOSE_OK) {
        conn_drop(c, "connection.close-ok received");
    } else if (m.id == WN_CONNECTION_CLOSE) {
        wn_method_t ok = {.id = WN_CONNECTION_CLOSE_OK};
        conn_send_method(c, 0, &ok);
        conn_drop(c, "connection.close received while closing");
    }
}

/* Decode a method frame; on failure close the connection as RabbitMQ does. */
bool conn_decode_method(conn_t *c, const wn_frame_t *f, wn_method_t *m) {
    char octets[128];
    int rc = wn_method_decode(f->payload, f->size, m);
    if (rc == 0) return true;
    if (f->size < 4) {
        conn_format_octets(f->payload, f->size, octets, sizeof octets);
        conn_close(c, WN_FRAME_ERROR, 0, "type 1, all octets = %s: unknown_frame", octets);
    } else if (rc == WN_COMMAND_INVALID) {
        conn_close(c, WN_COMMAND_INVALID, 0, "unknown method class %u method %u",
                   WN_METHOD_CLASS(m->id), WN_METHOD_INDEX(m->id));
    } else {
        conn_format_octets(f->payload + 4, f->size - 4, octets, sizeof octets);
        conn_close(c, WN_FRAME_ERROR, m->id, "cannot decode %s", octets);
    }
    return false;
}

static void conn_unexpected_frame(conn_t *c, const wn_frame_t *f) {
    char octets[128];
    conn_format_octets(f->payload, f->size, octets, sizeof octets);
    conn_close(c, WN_UNEXPECTED_FRAME, 0, "type %u, all octets = %s", f->type, octets);
}

/* Heartbeats belong on channel 0 and carry nothing. */
static void conn_on_heartbeat(conn_t *c, const wn_frame_t *f) {
    char octets[128];
    if (f->size != 0) {
        conn_format_octets(f->payload, f->size, octets, sizeof octets);
        conn_close(c, WN_FRAME_ERROR, 0, "type 8, all octets = %s: unknown_frame", octets);
    } else if (f->channel != 0) {
        conn_unexpected_frame(c, f);
    }
}

static void conn_handle_frame(conn_t *c, const wn_frame_t *f) {
    wn_method_t m;

    if (c->state == CONN_CLOSING) {
        conn_closing_frame(c, f);
        return;
    }
    if (f->type == WN_FRAME_HEARTBEAT) {
        conn_on_heartbeat(c, f);
        return;
    }
    if (c->state != CONN_OPEN) {
        if (f->type != WN_FRAME_METHOD || f->channel != 0) {
            conn_close(c, WN_UNEXPECTED_FRAME, 0, "expected a method frame on channel 0");
            return;
        }
        if (conn_decode_method(c, f, &m)) conn_handshake_method(c, &m);
        return;
    }
    if (f->channel != 0) {
        chan_handle_frame(c, f);
        return;
    }
    if (f->type != WN_FRAME_METHOD) {
        conn_unexpected_frame(c, f);
        return;
    }
    if (conn_decode_method(c, f, &m)) conn_control_method(c, &m);
}

/* ---- input ------------------------------------------------------------------- */

static bool conn_accepts_frames(const conn_t *c) {
    return c->state >= CONN_AWAIT_START_OK && c->state <= CONN_CLOSING;
}

/* Parse and handle every whole frame in data; returns the bytes consumed. */
static size_t conn_consume(conn_t *c, const uint8_t *data, size_t len) {
    size_t used = 0;

    if (c->state == CONN_AWAIT_HEADER) {
        int rc = wn_protocol_header_check(data, len);
        /* RabbitMQ also takes AMQP 0-9's header ("AMQP" 1 1 0 9) and speaks 0-9-1. */
        if (rc < 0 && len >= 8 && memcmp(data, "AMQP\x01\x01\x00\x09", 8) == 0)
            rc = 1;
        else if (rc < 0 && len < 8 && memcmp(data, "AMQP\x01\x01\x00\x09", len) == 0)
            rc = 0;
        if (rc == 0) return 0;
        if (rc < 0) {
            /* As the spec says: answer with the header we speak, then close. */
            conn_send_raw(c, wn_protocol_header, sizeof wn_protocol_header);
            conn_drop(c, "bad protocol header");
            return len;
        }
        used = 8;
        conn_send_start(c);
    }
    while (conn_accepts_frames(c) && used < len) {
        wn_frame_t f;
        /* As RabbitMQ, accept a payload of up to frame_max itself: some clients
         * forget that frame_max counts the 8 bytes of framing. */
        uint32_t limit =
            c->frame_max <= UINT32_MAX - WN_FRAME_OVERHEAD ? c->frame_max + WN_FRAME_OVERHEAD : 0;
        long n = wn_frame_parse(data + used, len - used, c->frame_max ? limit : 0, &f);
        if (n == 0) break;
        if (n < 0) {
            conn_frame_error(c, data + used, len - used);
            /* The stream cannot be resynchronised: stop reading it. */
            conn_drop(c, "frame error");
            return len;
        }
        used += (size_t)n;
        conn_handle_frame(c, &f);
    }
    if (c->confirm_list) publish_flush_confirms(c);
    if (!conn_accepts_frames(c)) return len;
    return used;
}

/* The size of the partial frame at p (len bytes of it so far) if it is known
 * and small enough to make room for before it arrives; len otherwise. */
static size_t conn_frame_room(const conn_t *c, const uint8_t *p, size_t len) {
    if (len < WN_FRAME_HEADER_SIZE || c->state == CONN_AWAIT_HEADER) return len;
    uint64_t total = (uint64_t)wn_load32(p + 3) + WN_FRAME_OVERHEAD;
    return total > len && total <= IN_FRAME_MAX ? (size_t)total : len;
}

/* Bytes missing from the partial frame in c->in, 0 if that is not known. */
static size_t conn_in_missing(const conn_t *c) {
    size_t have = buf_pending(&c->in);
    return conn_frame_room(c, buf_head(&c->in), have) - have;
}

/* n more bytes were read into c->in: handle what is whole. */
static void conn_consume_in(conn_t *c, size_t n) {
    buf_commit(&c->in, n);
    size_t used = conn_consume(c, buf_head(&c->in), buf_pending(&c->in));
    buf_consume(&c->in, used);
}

/* n bytes were read into the shared buffer: handle them there, and keep what
 * is left (part of a frame, or of the protocol header). */
static void conn_consume_shared(conn_t *c, size_t n) {
    const uint8_t *data = broker.read_buf;
    if (buf_pending(&c->in) > 0) { /* earlier bytes still wait: keep the order */
        buf_append(&c->in, data, n);
        conn_consume_in(c, 0);
        return;
    }
    size_t used = conn_consume(c, data, n);
    if (used == n || !(conn_accepts_frames(c) || c->state == CONN_AWAIT_HEADER)) return;
    /* Room for all of the frame now: growing the buffer later would copy it again. */
    buf_reserve(&c->in, conn_frame_room(c, data + used, n - used));
    buf_append(&c->in, data + used, n - used);
}

/* Read what the socket has; false at EOF or on an error. Bytes go to the
 * shared buffer, except that a partial frame waiting in c->in is completed in
 * place by the same readv: a stream of large frames (big message bodies) then
 * costs one read per shared buffer's worth, not one per IN_STEP bytes. */
static bool conn_read_once(conn_t *c, bool *more) {
    struct iovec iov[2];
    int niov = 0;
    size_t room = 0, missing, to_in = 0;
    bool partial;

    if (c->state == CONN_DRAINING) buf_free(&c->in); /* nothing more will be parsed */
    partial = buf_pending(&c->in) > 0;
    missing = conn_in_missing(c);
    if (partial) {
        size_t want = missing ? missing : IN_STEP;
        iov[niov++] = (struct iovec){buf_reserve(&c->in, want), want};
    }
    if (!partial || missing) iov[niov++] = (struct iovec){broker.read_buf, BROKER_READ_BUF_SIZE};
    for (int i = 0; i < niov; i++)
        room += iov[i].iov_len;
    ssize_t n = readv(c->fd, iov, niov);
    *more = n > 0 && (size_t)n == room;
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    c->last_recv = ev_now(broker.loop);
    if (c->state == CONN_DRAINING) return true;

    if (partial) {
        to_in = (size_t)n < iov[0].iov_len ? (size_t)n : iov[0].iov_len;
        conn_consume_in(c, to_in);
    }
    if ((size_t)n > to_in) conn_consume_shared(c, (size_t)n - to_in);
    buf_release(&c->in); /* kept until here for what the shared buffer left over */
    return true;
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents) {
    conn_t *c = w->data;
    bool more = true;
    (void)loop;
    (void)revents;
    /* A read can block or hold the connection (an alarm, flow, output backed up): stop there. */
    for (int i = 0; i < READS_PER_WAKEUP && more && c->state != CONN_DEAD && !conn_read_paused(c);
         i++) {
        if (!conn_read_once(c, &more)) {
            if (c->state == CONN_OPEN)
                log_warning("closing AMQP connection %s: client unexpectedly closed TCP connection",
                            c->name);
            else if (c->state == CONN_CLOSING)
                log_info("connection %s: client closed the socket without connection.close-ok",
                         c->name);
            else if (c->state < CONN_OPEN)
                log_info(
                    "closing AMQP connection %s: client closed the socket during the handshake",
                    c->name);
            conn_kill(c);
            return;
        }
    }
}

/* ---- timers -------------------------------------------------------------------- */

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    conn_t *c = w->data;
    ev_tstamp now = ev_now(loop);
    (void)revents;

    switch (c->state) {
    case CONN_OPEN:
        if (!conn_read_paused(c) && now - c->last_recv >= 2.0 * c->heartbeat) {
            log_error("closing AMQP connection %s: missed heartbeats from client, timeout: %us",
                      c->name, c->heartbeat);
            conn_kill(c);
        } else if (now - c->last_send >= c->heartbeat / 2.0) {
            conn_send_raw(c, wn_heartbeat_frame, sizeof wn_heartbeat_frame);
        }
        break;
    case CONN_CLOSING:
    case CONN_DRAINING:
        log_info("connection %s: closed after waiting %.0fs for the client", c->name, CLOSE_GRACE);
        conn_kill(c);
        break;
    case CONN_DEAD:
        break;
    default:
        log_error("closing AMQP connection %s: handshake timeout", c->name);
        conn_kill(c);
        break;
    }
}
