/*
 * e2e_heartbeat.c - the broker's clocks: heartbeats sent while idle, a
 * silent client dropped after missed heartbeats, a client that disables
 * heartbeats left alone, and the handshake timeout for clients that never
 * finish opening. Each case is timed; bounds are loose enough for a loaded
 * machine but tight enough to catch a timer that never fires.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static const uint8_t heartbeat_frame[8] = {WT_FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, 0xCE};

static wt_raw_t *open_with_heartbeat(const wt_broker_t *b, int heartbeat) {
    wt_raw_t *c = calloc(1, sizeof *c);
    wt_raw_login_t l = wt_raw_login_defaults();
    l.heartbeat = heartbeat;
    if (wt_raw_handshake(c, b, &l, NULL) != WT_HS_OPEN) {
        ok(0, "raw connection with heartbeat %d opens", heartbeat);
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

/* Read for `ms`, answering with our own heartbeat every `beat_ms` (0: stay
 * silent). Returns heartbeats received; *other counts any other frame, *eof
 * tells whether the broker closed the socket. */
static int count_heartbeats(wt_raw_t *c, int ms, int beat_ms, int *other, bool *eof) {
    double end = wt_now_ms() + ms, next_beat = wt_now_ms() + beat_ms;
    int beats = 0;
    wt_frame_t f;
    *other = 0;
    *eof = false;
    while (wt_now_ms() < end) {
        if (beat_ms && wt_now_ms() >= next_beat) {
            wt_raw_send(c, heartbeat_frame, sizeof heartbeat_frame);
            next_beat += beat_ms;
        }
        int r = wt_raw_read_frame(c, &f, 50);
        if (r == WT_EOF || r == WT_BAD) {
            *eof = true;
            break;
        }
        if (r == WT_OK && f.type == WT_FRAME_HEARTBEAT && f.channel == 0)
            beats++;
        else if (r == WT_OK)
            (*other)++;
    }
    return beats;
}

static void test_heartbeats_sent(const wt_broker_t *b) {
    int other;
    bool eof;
    wt_raw_t *c = open_with_heartbeat(b, 1);
    if (!c) return;
    int beats = count_heartbeats(c, 3000, 300, &other, &eof);
    ok(beats >= 2, "heartbeat 1 s: the broker sends heartbeats while idle (%d in 3 s)", beats);
    ok(!eof && other == 0, "a client that sends its own heartbeats stays connected");
    ok(wt_raw_channel_open(c, 1), "and the connection still works");
    done_conn(c);
}

/* RabbitMQ drops a silent client ~3 intervals after its last frame, with no
 * connection.close; 2 to 6 s allows any sane "two missed heartbeats" rule. */
static void test_silent_client(const wt_broker_t *b) {
    wt_raw_t *c = open_with_heartbeat(b, 1);
    if (!c) return;
    double t = wt_raw_wait_eof(c, 8000);
    ok(t >= 1.5 && t <= 6.0, "heartbeat 1 s, silent client: disconnected after 1.5-6 s (%.2f s)",
       t);
    done_conn(c);
}

static void test_heartbeat_disabled(const wt_broker_t *b) {
    int other;
    bool eof;
    wt_raw_t *c = open_with_heartbeat(b, 0);
    if (!c) return;
    int beats = count_heartbeats(c, 3500, 0, &other, &eof);
    ok(beats == 0 && !eof, "heartbeat 0 from the client: no heartbeats, no disconnect (%d, %s)",
       beats, eof ? "closed" : "open");
    ok(wt_raw_channel_open(c, 1), "and the silent connection still works after 3.5 s");
    done_conn(c);
}

/* librabbitmq-c sends heartbeats only while it waits on the socket. */
static void test_library_heartbeats(const wt_broker_t *b) {
    wt_login_t l = {NULL, NULL, NULL, 0, 131072, 1};
    wt_result_t res;
    amqp_connection_state_t conn = wt_amqp_connect(b, &l, &res);
    ok(conn && amqp_get_heartbeat(conn) == 1, "librabbitmq-c negotiates heartbeat 1 (%s)", res.str);
    if (!conn) return;
    double end = wt_now_ms() + 3500;
    int status = AMQP_STATUS_TIMEOUT;
    while (wt_now_ms() < end && status == AMQP_STATUS_TIMEOUT) {
        amqp_frame_t frame;
        struct timeval tv = {0, 200000};
        status = amqp_simple_wait_frame_noblock(conn, &frame, &tv);
    }
    ok(status == AMQP_STATUS_TIMEOUT, "3.5 s of heartbeats both ways: no frame, no error (%s)",
       amqp_error_string2(status));
    ok(amqp_channel_open(conn, 1) != NULL, "and a channel opens afterwards");
    wt_amqp_close(conn);
}

/* Warren only: the configured heartbeat is what tune proposes, and a
 * client's tune-ok value overrides it either way, as in RabbitMQ. */
static void test_configured(void) {
    if (wt_external()) {
        wt_skip_external("configured heartbeat 0: a client asking 1 s gets heartbeats");
        wt_skip_external("configured heartbeat 1: a client asking 0 gets none");
        return;
    }
    wt_broker_t b;
    int other;
    bool eof;
    if (!wt_broker_start(&b, "heartbeat = 0\n")) return;
    wt_raw_t *c = open_with_heartbeat(&b, 1);
    if (c) {
        int beats = count_heartbeats(c, 2500, 300, &other, &eof);
        ok(beats >= 1, "configured heartbeat 0: a client asking 1 s gets heartbeats (%d)", beats);
        done_conn(c);
    }
    wt_broker_stop(&b);

    if (!wt_broker_start(&b, "heartbeat = 1\n")) return;
    if ((c = open_with_heartbeat(&b, 0))) {
        int beats = count_heartbeats(c, 3000, 0, &other, &eof);
        ok(beats == 0 && !eof, "configured heartbeat 1: a client asking 0 gets none (%d, %s)",
           beats, eof ? "closed" : "open");
        done_conn(c);
    }
    wt_broker_stop(&b);
}

/* Warren only (RabbitMQ's timeout is 10 s): handshake_timeout = 1000. */
static void test_handshake_timeout(void) {
    static const uint8_t header[8] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};
    const char *cases[] = {"connects and sends nothing", "sends only the protocol header",
                           "stops after tune-ok"};
    if (wt_external()) {
        for (int i = 0; i < 3; i++)
            wt_skip_external(cases[i]);
        return;
    }
    wt_broker_t b;
    if (!wt_broker_start(&b, "handshake_timeout = 1000\n")) return;
    for (int i = 0; i < 3; i++) {
        wt_raw_t *c = calloc(1, sizeof *c);
        wt_raw_login_t l = wt_raw_login_defaults();
        double start = wt_now_ms();
        bool ready;
        l.stop_after = WT_HS_TUNED;
        if (i == 0)
            ready = wt_raw_connect(c, &b) == WT_OK;
        else if (i == 1)
            ready = wt_raw_connect(c, &b) == WT_OK && wt_raw_send(c, header, 8);
        else
            ready = wt_raw_handshake(c, &b, &l, NULL) == WT_HS_TUNED;
        double t = wt_raw_wait_eof(c, 5000);
        if (t >= 0) t = (wt_now_ms() - start) / 1000.0;
        ok(ready && t >= 0.8 && t <= 3.0,
           "handshake_timeout 1000: a client that %s is dropped after 0.8-3 s (%.2f s)", cases[i],
           t);
        done_conn(c);
    }
    wt_raw_t *c = open_with_heartbeat(&b, 0);
    if (c) {
        struct timespec ts = {1, 500000000L};
        nanosleep(&ts, NULL);
        ok(wt_raw_channel_open(c, 1), "an opened connection outlives the handshake timeout");
        done_conn(c);
    }
    ok(wt_broker_stop(&b) == 0, "broker exits 0");
}

int main(void) {
    wt_broker_t b;
    wt_init(90);
    if (!wt_broker_start(&b, NULL)) return tap_done();
    test_heartbeats_sent(&b);
    test_silent_client(&b);
    test_heartbeat_disabled(&b);
    test_library_heartbeats(&b);
    ok(wt_broker_stop(&b) == 0, "broker exits 0 after SIGTERM");
    test_configured();
    test_handshake_timeout();
    return tap_done();
}
