/*
 * connection.h - one AMQP client connection: the socket, the handshake state
 * machine, frame parsing, heartbeats, buffered output, and its channels.
 *
 * States run forward only:
 *   AWAIT_HEADER -> AWAIT_START_OK -> AWAIT_TUNE_OK -> AWAIT_OPEN -> OPEN
 *   -> CLOSING (we sent connection.close, waiting for close-ok)
 *   -> DRAINING (output flushed and write side shut; reading until EOF)
 * and the connection is freed when the socket closes. Nothing frees a
 * connection while its frames are being processed: teardown is deferred to
 * the flush step at the end of the loop iteration.
 */
#ifndef WARREN_CONNECTION_H
#define WARREN_CONNECTION_H

#include "broker.h"
#include "buffer.h"
#include "frame.h"
#include "methods.h"
#include "outref.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct chan;

typedef enum conn_state {
    CONN_AWAIT_HEADER,
    CONN_AWAIT_START_OK,
    CONN_AWAIT_TUNE_OK,
    CONN_AWAIT_OPEN,
    CONN_OPEN,
    CONN_CLOSING,
    CONN_DRAINING,
    CONN_DEAD, /* socket closed; freed at the next flush */
} conn_state_t;

/* Client capabilities announced in connection.start-ok's client-properties. */
enum {
    CONN_CAP_AUTH_FAILURE_CLOSE = 1 << 0,
    CONN_CAP_CONSUMER_CANCEL_NOTIFY = 1 << 1,
    CONN_CAP_CONNECTION_BLOCKED = 1 << 2,
    CONN_CAP_PUBLISHER_CONFIRMS = 1 << 3,
    CONN_CAP_BASIC_NACK = 1 << 4,
};

typedef struct conn {
    int fd;
    conn_state_t state;
    ev_io rio, wio;
    ev_timer timer; /* handshake timeout, then heartbeats, then the closing grace period */

    char peer[64];  /* "127.0.0.1:40312" */
    char name[160]; /* "127.0.0.1:40312 -> 127.0.0.1:5672", as RabbitMQ names connections */
    bool peer_is_loopback;

    buf_t in;           /* a partial frame waiting for more bytes; empty (no memory) otherwise */
    buf_t out;          /* encoded frames not yet written */
    outrefs_t out_refs; /* large bodies written from their messages, between out's bytes */
    bool out_blocked;   /* output passed the high-water mark and has not yet drained
                           below the low one: no deliveries, no reading */
    bool published;     /* has published: a resource alarm blocks it */
    bool alarm_blocked; /* not read from while a resource alarm is raised (alarm.h) */
    bool flow_held;     /* not read from: it publishes to a queue in flow (flow.h) */

    /* Negotiated in tune / tune-ok. */
    uint16_t channel_max;
    uint32_t frame_max;
    uint16_t heartbeat;
    ev_tstamp last_recv, last_send;

    unsigned client_caps;
    user_t *user;
    vhost_t *vhost;

    struct queue *exclusive_queues; /* deleted when the connection closes */
    struct chan *confirm_list;      /* channels with publisher confirms to send */

    struct chan **chans; /* indexed by channel number, grown on demand */
    uint32_t nchans;     /* slots in chans */
    uint32_t open_chans;

    struct conn *prev, *next;
    struct conn *flush_next;
    bool in_flush_list;
} conn_t;

/* Take over an accepted, non-blocking socket. */
conn_t *conn_new(int fd, const struct sockaddr *peer, socklen_t peerlen);

/* Queue frames for writing; they go out in one write before the loop sleeps. */
void conn_send_method(conn_t *c, uint16_t channel, const wn_method_t *m);
void conn_send_raw(conn_t *c, const void *p, size_t n);

/* A method with content (deliver, get-ok, return): method frame, content
 * header carrying the message's properties as published, body frames. Large
 * bodies are written from msg itself, which holds a reference until then. */
void conn_send_content(conn_t *c, uint16_t channel, const wn_method_t *m, message_t *msg);

/* Stop or resume reading from a connection for a resource alarm; a client
 * with the connection.blocked capability is told (alarm.h). */
void conn_set_blocked(conn_t *c, bool blocked, const char *reason);

/* Stop or resume reading from a publisher for flow control (flow.h); the
 * client is not told. */
void conn_set_flow(conn_t *c, bool held);

/* Output is piling up faster than the client reads it: deliver no more to it. */
bool conn_is_backed_up(const conn_t *c);

/*
 * A hard error: send connection.close with `code` and the text
 * "<REPLY_NAME> - <fmt...>", naming the method that caused it (0 for none),
 * then wait for close-ok and drop everything else the client sends.
 */
void conn_close(conn_t *c, uint16_t code, uint32_t method_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Close the socket now-ish (after flushing output), without an AMQP close. */
void conn_drop(conn_t *c, const char *why);

/* Decode a method frame; on failure close the connection as RabbitMQ does
 * (501 "cannot decode ..." for bad arguments) and return false. */
bool conn_decode_method(conn_t *c, const wn_frame_t *f, wn_method_t *m);

/* Bytes as an Erlang binary (<<"abc">>, <<0,10>>), for RabbitMQ-style error texts. */
void conn_format_octets(const uint8_t *p, size_t n, char *out, size_t cap);

/* Write queued output for every connection that has some (the loop's prepare step). */
void conn_flush_all(void);

#endif
