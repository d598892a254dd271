/*
 * e2e_protocol.c - what the broker does with input no client library would
 * send: a wrong protocol header, frames too large or badly terminated,
 * unknown frame types and methods, truncated arguments, frames on the wrong
 * channel, and methods after the broker has closed the connection. Every
 * expectation is the reference RabbitMQ 3.10's answer, measured with the
 * same raw client.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "harness.h"

static const uint8_t amqp_header[8] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};

/* ---- helpers ------------------------------------------------------------------ */

/* A handshaken connection (frame_max as asked, -1 for the broker's) with
 * channel 1 open if `channel1`. NULL (and a failed case) if that fails. */
static wt_raw_t *open_conn(const wt_broker_t *b, int frame_max, bool channel1) {
    wt_raw_t *c = calloc(1, sizeof *c);
    wt_raw_login_t l = wt_raw_login_defaults();
    l.frame_max = frame_max;
    l.heartbeat = 0;
    bool good = wt_raw_handshake(c, b, &l, NULL) == WT_HS_OPEN;
    if (good && channel1) good = wt_raw_channel_open(c, 1);
    if (!good) {
        ok(0, "raw connection opens%s", channel1 ? " with channel 1" : "");
        wt_raw_close(c);
        free(c);
        return NULL;
    }
    return c;
}

static void done_conn(wt_raw_t *c) {
    wt_raw_close(c);
    free(c);
}

/* The broker must answer with connection.close `code` whose text starts with
 * `prefix` and names class,method `cls`,`mid`; the client answers close-ok
 * and the broker must then close the socket. */
static void expect_close(wt_raw_t *c, const char *what, int code, const char *prefix, int cls,
                         int mid) {
    wt_close_t close;
    wt_frame_t f;
    int r = wt_raw_expect_close(c, &close, &f, 5000);
    if (r == WT_BAD)
        diag("%s: got frame type %u on channel %u (%u.%u) instead", what, f.type, f.channel,
             f.class_id, f.method_id);
    if (r == WT_OK) diag("%s: '%s' (%u,%u)", what, close.text, close.class_id, close.method_id);
    ok(r == WT_OK && close.code == code && strncmp(close.text, prefix, strlen(prefix)) == 0 &&
           close.class_id == cls && close.method_id == mid,
       "%s: connection.close %d %s... (%d,%d) (got %s %u '%s' (%u,%u))", what, code, prefix, cls,
       mid,
       r == WT_OK        ? "close"
       : r == WT_EOF     ? "EOF"
       : r == WT_TIMEOUT ? "nothing"
                         : "another frame",
       close.code, close.text, close.class_id, close.method_id);
    wt_raw_send_close_ok(c);
    double t = wt_raw_wait_eof(c, 5000);
    ok(t >= 0, "%s: then the socket is closed (%.2f s)", what, t);
}

/* Where RabbitMQ's code differs from the spec's for the same fault (an
 * internal error, or CHANNEL_ERROR for a method on channel 0), accept either. */
static void expect_close_any(wt_raw_t *c, const char *what, int code, int rabbit_code) {
    wt_close_t close;
    int r = wt_raw_expect_close(c, &close, NULL, 5000);
    ok(r == WT_OK && (close.code == code || close.code == rabbit_code),
       "%s: connection.close %d (RabbitMQ: %d) (got %u '%s')", what, code, rabbit_code, close.code,
       close.text);
    wt_raw_send_close_ok(c);
    double t = wt_raw_wait_eof(c, 5000);
    ok(t >= 0, "%s: then the socket is closed (%.2f s)", what, t);
}

static bool send_frame(wt_raw_t *c, uint8_t type, uint16_t channel, const void *payload,
                       size_t len) {
    uint8_t hdr[7];
    static const uint8_t end = 0xCE;
    hdr[0] = type;
    wn_store16(hdr + 1, channel);
    wn_store32(hdr + 3, (uint32_t)len);
    return wt_raw_send(c, hdr, sizeof hdr) && wt_raw_send(c, payload, len) &&
           wt_raw_send(c, &end, 1);
}

/* ---- protocol header ------------------------------------------------------------ */

static void test_bad_header(const wt_broker_t *b, const char *name, const void *bytes, size_t n) {
    wt_raw_t *c = calloc(1, sizeof *c);
    uint8_t got[64];
    bool eof = false;
    size_t len = 0;
    if (wt_raw_connect(c, b) == WT_OK && wt_raw_send(c, bytes, n))
        len = wt_raw_recv_all(c, got, sizeof got, 3000, &eof);
    ok(len == 8 && memcmp(got, amqp_header, 8) == 0,
       "header %s: the broker answers exactly AMQP 0 0 9 1 (%zu bytes)", name, len);
    ok(eof, "header %s: and closes the socket", name);
    done_conn(c);
}

/* RabbitMQ also takes the pre-0-9-1 header AMQP 1 1 0 9 and answers it
 * with connection.start; tell what this broker does. */
static void diag_old_header(const wt_broker_t *b) {
    wt_raw_t *c = calloc(1, sizeof *c);
    uint8_t got[16];
    bool eof = false;
    size_t len = 0;
    if (wt_raw_connect(c, b) == WT_OK && wt_raw_send(c, "AMQP\x01\x01\x00\x09", 8))
        len = wt_raw_recv_all(c, got, sizeof got, 1000, &eof);
    diag("header AMQP 1 1 0 9: %s (RabbitMQ 3.10 sends connection.start)",
         len >= 8 && got[0] == WT_FRAME_METHOD          ? "a frame (connection.start)"
         : len == 8 && memcmp(got, amqp_header, 8) == 0 ? "AMQP 0 0 9 1"
                                                        : "something else");
    done_conn(c);
}

static void test_headers(const wt_broker_t *b) {
    diag_old_header(b);
    test_bad_header(b, "AMQP 0 0 9 0", "AMQP\0\0\x09\x00", 8);
    test_bad_header(b, "AMQP 0 0 8 0", "AMQP\0\0\x08\x00", 8);
    test_bad_header(b, "HTTP GET", "HTTP/1.1 GET /\r\n\r\n", 18);
}

/* ---- framing errors -------------------------------------------------------------- */

static void test_oversized(const wt_broker_t *b) {
    static uint8_t payload[10000];
    wt_raw_t *c = open_conn(b, 4096, false);
    if (!c) return;
    ok(c->frame_max == 4096, "frame_max 4096 sent in tune-ok");
    send_frame(c, WT_FRAME_METHOD, 0, payload, sizeof payload);
    expect_close(c, "a 10000-byte method frame with frame_max 4096", 501, "FRAME_ERROR", 0, 0);
    done_conn(c);

    /* Only the header: the broker must refuse before the payload arrives. */
    uint8_t hdr[7] = {WT_FRAME_METHOD, 0, 1};
    wn_store32(hdr + 3, 10000);
    if (!(c = open_conn(b, 4096, true))) return;
    wt_raw_send(c, hdr, sizeof hdr);
    expect_close(c, "the header of a 10000-byte frame on channel 1", 501, "FRAME_ERROR", 0, 0);
    done_conn(c);
}

/* basic.publish to the default exchange with a body frame of `body` bytes,
 * then channel.close: close-ok on channel 1 proves the frames were taken. */
static void publish_body(wt_raw_t *c, size_t body) {
    static uint8_t bytes[8192];
    uint8_t args[64], header[14];
    wn_writer_t w;
    wn_writer_init(&w, args, sizeof args);
    wn_put16(&w, 0);
    wn_put_shortstr(&w, wn_cstr(""));
    wn_put_shortstr(&w, wn_cstr("wt-nowhere"));
    wn_put8(&w, 0);
    wt_raw_send_method(c, 1, 60, 40, args, w.len);
    wn_store16(header, 60);
    wn_store16(header + 2, 0);
    wn_store64(header + 4, body);
    wn_store16(header + 12, 0);
    send_frame(c, WT_FRAME_HEADER, 1, header, sizeof header);
    memset(bytes, 'x', body);
    send_frame(c, WT_FRAME_BODY, 1, bytes, body);
}

/* True if a body frame of `body` bytes on a frame_max 4096 connection is
 * taken: channel.close after it is answered with close-ok. */
static bool body_accepted(const wt_broker_t *b, size_t body, bool *closed) {
    static const uint8_t close_args[] = {0, 200, 0, 0, 0, 0, 0};
    wt_raw_t *c = open_conn(b, 4096, true);
    wt_frame_t f;
    wt_close_t close;
    if (!c) return false;
    publish_body(c, body);
    wt_raw_send_method(c, 1, 20, 40, close_args, sizeof close_args);
    int r = wt_raw_read_frame(c, &f, 5000);
    bool taken = r == WT_OK && f.channel == 1 && f.class_id == 20 && f.method_id == 41;
    bool is_close = r == WT_OK && wt_decode_close(&f, &close);
    *closed = is_close && close.code == 501;
    if (is_close)
        diag("body frame of %zu bytes: %s %u '%s' (%u,%u)", body,
             f.class_id == 10 ? "connection.close" : "channel.close", close.code, close.text,
             close.class_id, close.method_id);
    done_conn(c);
    return taken;
}

/* The spec counts the 8 bytes of framing in frame_max; RabbitMQ allows a
 * further 8 bytes of "fudge" for old clients that did not (payload up to
 * frame_max). Both agree on frame_max - 8 and on frame_max + 1. */
static void test_frame_max_boundary(const wt_broker_t *b) {
    bool closed;
    ok(body_accepted(b, 4096 - 8, &closed),
       "a body frame of exactly frame_max (4088 + 8 bytes) is accepted");
    bool fudge = body_accepted(b, 4096, &closed);
    diag("a body payload of 4096 bytes (frame_max + 8 on the wire): %s (RabbitMQ: accepted)",
         fudge    ? "accepted"
         : closed ? "501"
                  : "no answer");
    wt_raw_t *c = open_conn(b, 4096, true);
    if (!c) return;
    publish_body(c, 4096 + 1);
    expect_close(c, "a body payload of frame_max + 1 bytes", 501, "FRAME_ERROR", 0, 0);
    done_conn(c);
}

static void test_frame_end(const wt_broker_t *b) {
    uint8_t frame[64];
    static const uint8_t close_args[] = {0, 200, 3, 'b', 'y', 'e', 0, 0, 0, 0};
    wt_raw_t *c = open_conn(b, -1, false);
    if (!c) return;
    size_t n = wt_method_frame(frame, sizeof frame, 0, 10, 50, close_args, sizeof close_args);
    frame[n - 1] = 0x00;
    wt_raw_send(c, frame, n);
    expect_close(c, "frame-end 0x00 instead of 0xCE", 501, "FRAME_ERROR", 0, 0);
    done_conn(c);
}

static void test_unknown_frame_type(const wt_broker_t *b) {
    wt_raw_t *c = open_conn(b, -1, false);
    if (!c) return;
    send_frame(c, 9, 0, "abc", 3);
    expect_close(c, "frame type 9 on channel 0", 501, "FRAME_ERROR", 0, 0);
    done_conn(c);
    if (!(c = open_conn(b, -1, true))) return;
    send_frame(c, 5, 1, "abc", 3);
    expect_close(c, "frame type 5 on channel 1", 501, "FRAME_ERROR", 0, 0);
    done_conn(c);
}

static void test_truncated(const wt_broker_t *b) {
    wt_raw_t *c = open_conn(b, -1, false);
    if (!c) return;
    wt_raw_send_method(c, 1, 20, 10, NULL, 0);
    expect_close(c, "channel.open without its arguments", 501, "FRAME_ERROR", 20, 10);
    done_conn(c);
    if (!(c = open_conn(b, -1, true))) return;
    wt_raw_send_method(c, 1, 50, 10,
                       "\0\0\x05"
                       "ab",
                       5);
    expect_close(c, "queue.declare cut short", 501, "FRAME_ERROR", 50, 10);
    done_conn(c);
    if (!(c = open_conn(b, -1, true))) return;
    send_frame(c, WT_FRAME_METHOD, 1, "\0\x14", 2);
    expect_close(c, "a method frame of 2 bytes", 501, "FRAME_ERROR", 0, 0);
    done_conn(c);
    if (!(c = open_conn(b, -1, false))) return;
    wt_raw_send_method(c, 0, 10, 50, "\0", 1);
    expect_close_any(c, "connection.close cut short", 501, 541);
    done_conn(c);
    if (!(c = open_conn(b, -1, false))) return;
    send_frame(c, WT_FRAME_HEARTBEAT, 0, "xx", 2);
    expect_close(c, "a heartbeat frame with a payload", 501, "FRAME_ERROR", 0, 0);
    done_conn(c);
}

/* RabbitMQ 3.10's reader crashes on an unknown method id and drops the
 * socket without a frame; the spec's answer would be 540 NOT_IMPLEMENTED or
 * 503 COMMAND_INVALID. Either is accepted; the socket must close. */
static void test_unknown_method(const wt_broker_t *b, uint16_t channel, uint16_t cls,
                                uint16_t mid) {
    wt_raw_t *c = open_conn(b, -1, channel != 0);
    wt_close_t close;
    if (!c) return;
    wt_raw_send_method(c, channel, cls, mid, NULL, 0);
    int r = wt_raw_expect_close(c, &close, NULL, 5000);
    if (r == WT_OK)
        diag("method %u.%u: connection.close %u '%s' (%u,%u)", cls, mid, close.code, close.text,
             close.class_id, close.method_id);
    else
        diag("method %u.%u: %s", cls, mid, r == WT_EOF ? "socket closed without a frame" : "?");
    ok(r == WT_EOF || (r == WT_OK && (close.code == 540 || close.code == 503)),
       "unknown method %u.%u on channel %u: closed, or connection.close 540/503", cls, mid,
       channel);
    if (r == WT_OK) wt_raw_send_close_ok(c);
    double t = wt_raw_wait_eof(c, 5000);
    ok(r == WT_EOF || t >= 0, "unknown method %u.%u: the socket is closed", cls, mid);
    done_conn(c);
}

/* ---- frames in the wrong place ---------------------------------------------------- */

static void test_wrong_channel(const wt_broker_t *b) {
    static const uint8_t close_args[] = {0, 200, 0, 0, 0, 0, 0};
    uint8_t header[14];
    wt_raw_t *c = open_conn(b, -1, false);
    if (!c) return;
    wt_raw_send_method(c, 3, 20, 40, close_args, sizeof close_args);
    expect_close(c, "channel.close on a channel never opened", 504, "CHANNEL_ERROR", 20, 40);
    done_conn(c);
    if (!(c = open_conn(b, -1, false))) return;
    wt_raw_send_method(c, 3, 20, 41, NULL, 0);
    expect_close(c, "channel.close-ok on a channel never opened", 504, "CHANNEL_ERROR", 20, 41);
    done_conn(c);

    wn_store16(header, 60);
    wn_store16(header + 2, 0);
    wn_store64(header + 4, 3);
    wn_store16(header + 12, 0);
    if (!(c = open_conn(b, -1, true))) return;
    send_frame(c, WT_FRAME_HEADER, 1, header, sizeof header);
    expect_close(c, "a content header with no publish", 505, "UNEXPECTED_FRAME", 0, 0);
    done_conn(c);
    if (!(c = open_conn(b, -1, true))) return;
    send_frame(c, WT_FRAME_BODY, 1, "abc", 3);
    expect_close(c, "a content body with no publish", 505, "UNEXPECTED_FRAME", 0, 0);
    done_conn(c);
    if (!(c = open_conn(b, -1, false))) return;
    send_frame(c, WT_FRAME_HEADER, 0, header, sizeof header);
    expect_close(c, "a content header on channel 0", 505, "UNEXPECTED_FRAME", 0, 0);
    done_conn(c);
    if (!(c = open_conn(b, -1, false))) return;
    wt_raw_send_method(c, 0, 60, 40, "\0\0\0\x01q\0", 6);
    expect_close_any(c, "basic.publish on channel 0", 503, 504);
    done_conn(c);
    if (!(c = open_conn(b, -1, true))) return;
    send_frame(c, WT_FRAME_HEARTBEAT, 1, NULL, 0);
    expect_close(c, "a heartbeat on channel 1", 505, "UNEXPECTED_FRAME", 0, 0);
    done_conn(c);
}

/* RabbitMQ checks how MANY channels are open against channel_max, not the
 * channel number; tell what the broker does with a high number. */
static void diag_channel_number(const wt_broker_t *b) {
    wt_raw_t *c = calloc(1, sizeof *c);
    wt_raw_login_t l = wt_raw_login_defaults();
    wt_close_t close;
    l.channel_max = 3;
    l.heartbeat = 0;
    if (wt_raw_handshake(c, b, &l, NULL) == WT_HS_OPEN) {
        wt_raw_send_method(c, 100, 20, 10, "", 1);
        wt_frame_t f;
        int r = wt_raw_read_frame(c, &f, 2000);
        if (r == WT_OK && wt_decode_close(&f, &close))
            diag("channel.open 100 with channel_max 3: connection.close %u '%s'", close.code,
                 close.text);
        else
            diag("channel.open 100 with channel_max 3: %s (RabbitMQ 3.10 opens it)",
                 r == WT_OK && f.method_id == 11 ? "opened" : "no answer");
    }
    done_conn(c);
}

/* ---- closing ------------------------------------------------------------------------ */

static void test_client_close(const wt_broker_t *b) {
    static const uint8_t args[] = {0, 200, 7, 'G', 'o', 'o', 'd', 'b', 'y', 'e', 0, 0, 0, 0};
    wt_raw_t *c = open_conn(b, -1, true);
    wt_frame_t f;
    if (!c) return;
    wt_raw_send_method(c, 0, 10, 50, args, sizeof args);
    int r = wt_raw_read_frame(c, &f, 5000);
    ok(r == WT_OK && f.channel == 0 && f.class_id == 10 && f.method_id == 51,
       "client connection.close 200: the broker answers close-ok (got %u.%u)", f.class_id,
       f.method_id);
    done_conn(c);
}

/* After its connection.close the broker discards everything but close and
 * close-ok (spec 2.2.4; RabbitMQ does the same). */
static void test_after_server_close(const wt_broker_t *b) {
    static const uint8_t open_args[1] = {0};
    wt_raw_t *c = open_conn(b, -1, true);
    wt_close_t close;
    wt_frame_t f;
    if (!c) return;
    wt_raw_send_method(c, 1, 20, 10, open_args, 1);
    int r = wt_raw_expect_close(c, &close, NULL, 5000);
    ok(r == WT_OK && close.code == 504 && close.class_id == 20 && close.method_id == 10,
       "a second channel.open on channel 1: connection.close 504 (20,10) (got %u '%s')", close.code,
       close.text);
    wt_raw_send_method(c, 5, 20, 10, open_args, 1);
    r = wt_raw_read_frame(c, &f, 1000);
    ok(r == WT_TIMEOUT, "a channel.open sent after the broker's close is ignored (%s)",
       r == WT_TIMEOUT ? "nothing came"
       : r == WT_EOF   ? "socket closed"
                       : "a frame came");
    wt_raw_send_close_ok(c);
    double t = wt_raw_wait_eof(c, 5000);
    ok(t >= 0, "close-ok then closes the socket (%.2f s)", t);
    done_conn(c);
}

int main(void) {
    wt_broker_t b;
    wt_init(90);
    if (!wt_broker_start(&b, NULL)) return tap_done();
    test_headers(&b);
    test_oversized(&b);
    test_frame_max_boundary(&b);
    test_frame_end(&b);
    test_unknown_frame_type(&b);
    test_truncated(&b);
    test_unknown_method(&b, 1, 99, 10);
    test_unknown_method(&b, 1, 60, 99);
    test_unknown_method(&b, 0, 10, 99);
    test_wrong_channel(&b);
    diag_channel_number(&b);
    test_client_close(&b);
    test_after_server_close(&b);
    ok(wt_broker_stop(&b) == 0, "broker exits 0 after SIGTERM");
    return tap_done();
}
