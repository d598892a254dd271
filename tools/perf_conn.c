/*
 * perf_conn.c - warren-perf's client connection: TCP, the AMQP handshake,
 * channel 1, and frame I/O.
 *
 * Blocking sockets and one connection per thread keep this simple; speed
 * comes from volume per system call instead: reads fill a buffer of at least
 * 256 KiB and frames are decoded where they lie, never copied out.
 */
#include "autoconfig.h"
#include "perf_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "perf_stats.h"

#define CONN_FRAME_MAX   131072u /* what we ask for; the broker may offer less */
#define CONN_RBUF_MIN    (256u * 1024)
#define CONN_TIMEOUT_MS  10000
#define CONN_CONNECT_MS  5000
#define CONN_CLOSE_MS    2000
#define CONN_METHOD_SIZE 4096 /* room for any method warren-perf sends */

int perf_conn_fail(perf_conn_t *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    return -1;
}

void perf_conn_free(perf_conn_t *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->rbuf);
    c->rbuf = NULL;
}

/* ---- socket ------------------------------------------------------------- */

/* A non-blocking connect bounded by CONN_CONNECT_MS, then back to blocking. */
static int conn_connect_one(const struct addrinfo *ai) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) return -1;
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) goto err;
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof err;
    if (poll(&pfd, 1, CONN_CONNECT_MS) != 1) {
        errno = ETIMEDOUT;
        goto err;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        errno = err;
        goto err;
    }
    fcntl(fd, F_SETFL, flags);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
err:;
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

static int conn_connect(perf_conn_t *c, const perf_uri_t *uri) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int rc = getaddrinfo(uri->host, uri->port, &hints, &res);
    if (rc != 0) return perf_conn_fail(c, "cannot resolve %s: %s", uri->host, gai_strerror(rc));
    c->fd = -1;
    for (struct addrinfo *ai = res; ai && c->fd < 0; ai = ai->ai_next)
        c->fd = conn_connect_one(ai);
    int saved = errno;
    freeaddrinfo(res);
    if (c->fd < 0)
        return perf_conn_fail(c, "cannot connect to %s:%s: %s", uri->host, uri->port,
                              strerror(saved));
    return 0;
}

int perf_conn_write(perf_conn_t *c, const void *buf, size_t len) {
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return perf_conn_fail(c, "write to the broker failed: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int perf_conn_send_method(perf_conn_t *c, const wn_method_t *m) {
    uint8_t buf[CONN_METHOD_SIZE];
    uint16_t channel = WN_METHOD_CLASS(m->id) == WN_CLASS_CONNECTION ? 0 : PERF_CHANNEL;
    size_t n = wn_frame_encode_method(buf, sizeof buf, channel, m);
    if (n == 0) return perf_conn_fail(c, "cannot encode %s", wn_method_name(m->id));
    return perf_conn_write(c, buf, n);
}

/* ---- reading frames ----------------------------------------------------- */

int perf_conn_read(perf_conn_t *c, int timeout_ms) {
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->rlen == c->rcap) return perf_conn_fail(c, "a frame larger than the read buffer");
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    int rc = poll(&pfd, 1, timeout_ms);
    if (rc < 0 && errno == EINTR) return 0;
    if (rc < 0) return perf_conn_fail(c, "poll: %s", strerror(errno));
    if (rc == 0) return 0;
    ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n < 0) return perf_conn_fail(c, "read from the broker failed: %s", strerror(errno));
    if (n == 0) return perf_conn_fail(c, "the broker closed the socket");
    c->rlen += (size_t)n;
    return 1;
}

int perf_conn_next(perf_conn_t *c, wn_frame_t *f) {
    const uint8_t *p = c->rbuf + c->rpos;
    long n = wn_frame_parse(p, c->rlen - c->rpos, c->frame_max, f);
    if (n > 0) {
        c->rpos += (size_t)n;
        return 1;
    }
    if (n == 0) return 0;
    if (c->rlen - c->rpos >= 8 && memcmp(p, "AMQP", 4) == 0)
        return perf_conn_fail(c,
                              "the broker answered with protocol header AMQP %u-%u-%u-%u: "
                              "it does not speak AMQP 0-9-1",
                              p[4], p[5], p[6], p[7]);
    return perf_conn_fail(c, "malformed frame from the broker (type %u)", p[0]);
}

int perf_conn_decode(perf_conn_t *c, const wn_frame_t *f, wn_method_t *m) {
    m->id = 0; /* named in the error even if the payload is too short for an id */
    int rc = wn_method_decode(f->payload, f->size, m);
    if (rc == 0) return 0;
    return perf_conn_fail(c, "malformed method from the broker (%s, code %d)",
                          wn_method_name(m->id) ? wn_method_name(m->id) : "unknown", rc);
}

/* ---- control methods ---------------------------------------------------- */

/* " (after queue.declare)": which of our methods the broker objected to. */
static const char *method_after(char *buf, size_t cap, uint16_t cls, uint16_t meth) {
    const char *name = cls ? wn_method_name(WN_METHOD_ID(cls, meth)) : NULL;
    if (name)
        snprintf(buf, cap, " (after %s)", name);
    else
        buf[0] = '\0';
    return buf;
}

static int conn_on_close(perf_conn_t *c, const wn_connection_close_t *m) {
    wn_method_t ok = {.id = WN_CONNECTION_CLOSE_OK};
    perf_conn_send_method(c, &ok);
    c->closed = true;
    char after[64];
    return perf_conn_fail(c, "the broker closed the connection: %u %.*s%s", m->reply_code,
                          (int)m->reply_text.len, (const char *)m->reply_text.ptr,
                          method_after(after, sizeof after, m->class_id, m->method_id));
}

static int conn_on_channel_close(perf_conn_t *c, const wn_channel_close_t *m) {
    wn_method_t ok = {.id = WN_CHANNEL_CLOSE_OK};
    perf_conn_send_method(c, &ok);
    char after[64];
    return perf_conn_fail(c, "the broker closed the channel: %u %.*s%s", m->reply_code,
                          (int)m->reply_text.len, (const char *)m->reply_text.ptr,
                          method_after(after, sizeof after, m->class_id, m->method_id));
}

int perf_conn_control(perf_conn_t *c, const wn_method_t *m) {
    switch (m->id) {
    case WN_CONNECTION_CLOSE:
        return conn_on_close(c, &m->u.connection_close);
    case WN_CHANNEL_CLOSE:
        return conn_on_channel_close(c, &m->u.channel_close);
    case WN_BASIC_CANCEL:
        return perf_conn_fail(c, "the broker cancelled the consumer (was its queue deleted?)");
    case WN_CONNECTION_BLOCKED:
        c->blocked = true;
        return 1;
    case WN_CONNECTION_UNBLOCKED:
        c->blocked = false;
        return 1;
    }
    return 0;
}

/* Read frames until the method `id` arrives (up to timeout_ms). */
static int conn_wait_method(perf_conn_t *c, uint32_t id, wn_method_t *m, int timeout_ms) {
    uint64_t deadline = perf_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        wn_frame_t f;
        int rc = perf_conn_next(c, &f);
        if (rc < 0) return -1;
        if (rc == 0) {
            uint64_t now = perf_now_ns();
            if (now >= deadline)
                return perf_conn_fail(c, "no %s from the broker within %d s", wn_method_name(id),
                                      timeout_ms / 1000);
            if (perf_conn_read(c, (int)((deadline - now) / 1000000u) + 1) < 0) return -1;
            continue;
        }
        if (f.type != WN_FRAME_METHOD) continue;
        if (perf_conn_decode(c, &f, m) < 0) return -1;
        if (m->id == id) return 0;
        if (perf_conn_control(c, m) < 0) return -1;
    }
}

int perf_conn_rpc(perf_conn_t *c, const wn_method_t *req, uint32_t reply_id, wn_method_t *reply) {
    if (perf_conn_send_method(c, req) < 0) return -1;
    return conn_wait_method(c, reply_id, reply, CONN_TIMEOUT_MS);
}

/* ---- handshake ---------------------------------------------------------- */

static wn_bytes_t conn_client_properties(uint8_t *buf, size_t cap, const char *name) {
    wn_writer_t w;
    wn_writer_init(&w, buf, cap);
    wn_table_put_str(&w, "product", "warren-perf");
    wn_table_put_str(&w, "version", PACKAGE_VERSION);
    wn_table_put_str(&w, "platform", "C11");
    wn_table_put_str(&w, "connection_name", name);
    size_t mark = wn_table_begin_nested(&w, "capabilities", WN_FIELD_TABLE);
    wn_table_put_bool(&w, "publisher_confirms", true);
    wn_table_put_bool(&w, "basic.nack", true);
    wn_table_put_bool(&w, "consumer_cancel_notify", true);
    wn_table_put_bool(&w, "connection.blocked", true);
    wn_table_put_bool(&w, "authentication_failure_close", true);
    wn_table_end(&w, mark);
    return wn_bytes(buf, w.overflow ? 0 : w.len);
}

static bool conn_has_plain(wn_bytes_t mechanisms) {
    const char *p = (const char *)mechanisms.ptr, *end = p + mechanisms.len;
    while (p < end) {
        const char *sp = memchr(p, ' ', (size_t)(end - p));
        size_t n = (size_t)((sp ? sp : end) - p);
        if (n == 5 && memcmp(p, "PLAIN", 5) == 0) return true;
        p += n + 1;
    }
    return false;
}

static int conn_start_ok(perf_conn_t *c, const perf_uri_t *uri, const char *name) {
    wn_method_t m;
    if (conn_wait_method(c, WN_CONNECTION_START, &m, CONN_TIMEOUT_MS) < 0) return -1;
    if (!conn_has_plain(m.u.connection_start.mechanisms))
        return perf_conn_fail(c, "the broker does not offer SASL PLAIN");
    uint8_t props[1024], response[600];
    int n = snprintf((char *)response, sizeof response, "%c%s%c%s", 0, uri->user, 0, uri->pass);
    wn_method_t ok = {.id = WN_CONNECTION_START_OK};
    ok.u.connection_start_ok.client_properties = conn_client_properties(props, sizeof props, name);
    ok.u.connection_start_ok.mechanism = WN_BYTES_LIT("PLAIN");
    ok.u.connection_start_ok.response = wn_bytes(response, (size_t)n);
    ok.u.connection_start_ok.locale = WN_BYTES_LIT("en_US");
    return perf_conn_send_method(c, &ok);
}

/* Heartbeats off: a thread busy publishing must not be closed for silence. */
static int conn_tune_ok(perf_conn_t *c) {
    wn_method_t m;
    if (conn_wait_method(c, WN_CONNECTION_TUNE, &m, CONN_TIMEOUT_MS) < 0) return -1;
    uint32_t offered = m.u.connection_tune.frame_max;
    c->frame_max = offered == 0 || offered > CONN_FRAME_MAX ? CONN_FRAME_MAX : offered;
    if (c->frame_max < WN_FRAME_MIN_SIZE) c->frame_max = WN_FRAME_MIN_SIZE;
    wn_method_t ok = {.id = WN_CONNECTION_TUNE_OK};
    ok.u.connection_tune_ok.channel_max = PERF_CHANNEL;
    ok.u.connection_tune_ok.frame_max = c->frame_max;
    ok.u.connection_tune_ok.heartbeat = 0;
    return perf_conn_send_method(c, &ok);
}

static int conn_handshake(perf_conn_t *c, const perf_uri_t *uri, const char *name) {
    if (perf_conn_write(c, wn_protocol_header, sizeof wn_protocol_header) < 0) return -1;
    if (conn_start_ok(c, uri, name) < 0 || conn_tune_ok(c) < 0) goto err;
    wn_method_t open = {.id = WN_CONNECTION_OPEN}, reply;
    open.u.connection_open.virtual_host = wn_cstr(uri->vhost);
    if (perf_conn_rpc(c, &open, WN_CONNECTION_OPEN_OK, &reply) < 0) goto err;
    wn_method_t chan = {.id = WN_CHANNEL_OPEN};
    return perf_conn_rpc(c, &chan, WN_CHANNEL_OPEN_OK, &reply);
err:
    if (strcmp(c->error, "the broker closed the socket") == 0)
        perf_conn_fail(c, "the broker closed the socket during the handshake "
                          "(wrong user, password or vhost?)");
    return -1;
}

int perf_conn_open(perf_conn_t *c, const perf_uri_t *uri, const char *name) {
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->frame_max = CONN_FRAME_MAX;
    c->rcap = CONN_RBUF_MIN > 2 * CONN_FRAME_MAX ? CONN_RBUF_MIN : 2 * CONN_FRAME_MAX;
    c->rbuf = malloc(c->rcap);
    if (!c->rbuf) return perf_conn_fail(c, "out of memory");
    if (conn_connect(c, uri) < 0 || conn_handshake(c, uri, name) < 0) {
        perf_conn_free(c);
        return -1;
    }
    return 0;
}

void perf_conn_close(perf_conn_t *c) {
    if (c->fd >= 0 && !c->closed) {
        wn_method_t m = {.id = WN_CONNECTION_CLOSE}, reply;
        m.u.connection_close.reply_code = WN_REPLY_SUCCESS;
        m.u.connection_close.reply_text = WN_BYTES_LIT("warren-perf done");
        if (perf_conn_send_method(c, &m) == 0)
            conn_wait_method(c, WN_CONNECTION_CLOSE_OK, &reply, CONN_CLOSE_MS);
    }
    perf_conn_free(c);
}
