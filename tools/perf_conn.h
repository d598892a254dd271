/*
 * perf_conn.h - one blocking AMQP 0-9-1 client connection for warren-perf:
 * TCP connect, the handshake (PLAIN, heartbeats off), channel 1, and frame
 * I/O over a large read buffer parsed in place.
 *
 * Each producer and consumer thread owns one; nothing here is shared. When
 * the broker closes the channel or the connection, or the socket fails, a
 * call returns -1 and `error` says what happened in words for the user.
 */
#ifndef PERF_CONN_H
#define PERF_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "methods.h"
#include "perf_opts.h"

#define PERF_CHANNEL 1 /* every connection uses this one channel */

typedef struct perf_conn {
    int fd;
    uint32_t frame_max; /* negotiated */
    bool blocked;       /* connection.blocked received, no unblocked since */
    bool closed;        /* the broker closed the connection (close-ok sent) */
    uint8_t *rbuf;      /* frames are parsed in place here */
    size_t rcap;
    size_t rpos; /* first byte not yet parsed */
    size_t rlen; /* bytes held */
    char error[512];
} perf_conn_t;

/* Connect, shake hands and open channel 1. `name` is sent as the client's
 * connection_name. Returns 0 or -1 (error set; the connection is freed). */
int perf_conn_open(perf_conn_t *c, const perf_uri_t *uri, const char *name);

/* connection.close and wait (up to 2 s) for close-ok, then free. */
void perf_conn_close(perf_conn_t *c);
/* Close the socket and free the buffer without saying goodbye. */
void perf_conn_free(perf_conn_t *c);

/* Set c->error (printf-style) and return -1. */
int perf_conn_fail(perf_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Write all of buf, blocking. 0 or -1. */
int perf_conn_write(perf_conn_t *c, const void *buf, size_t len);
int perf_conn_send_method(perf_conn_t *c, const wn_method_t *m);

/* Wait up to timeout_ms (-1: forever) for bytes and append them to the read
 * buffer. 1 if some arrived, 0 on timeout, -1 on error or end of stream. */
int perf_conn_read(perf_conn_t *c, int timeout_ms);
/* The next whole frame in the read buffer: 1 (f set, valid until the next
 * perf_conn_read), 0 if none is complete, -1 on a malformed stream. */
int perf_conn_next(perf_conn_t *c, wn_frame_t *f);

/* The methods any frame loop must handle: connection.close, channel.close
 * and basic.cancel from the broker (answered, then -1 with error set),
 * connection.blocked/unblocked (tracked in c->blocked, 1). 0 for others. */
int perf_conn_control(perf_conn_t *c, const wn_method_t *m);
/* Decode a method frame; -1 with error set if it is malformed. */
int perf_conn_decode(perf_conn_t *c, const wn_frame_t *f, wn_method_t *m);

/* Send a synchronous method and wait (up to 10 s) for `reply_id`. Content
 * frames and unrelated methods that arrive meanwhile are skipped. */
int perf_conn_rpc(perf_conn_t *c, const wn_method_t *req, uint32_t reply_id, wn_method_t *reply);

#endif /* PERF_CONN_H */
