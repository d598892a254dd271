/*
 * e2e_shutdown.c - the broker's process life, Warren only: SIGTERM closes
 * every client with 320 CONNECTION_FORCED and exits 0; a bad config file is
 * refused at start with the file and line named, before anything listens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <signal.h>

#include "harness.h"

/* Wait for the connection.close the broker owes this client; its reply code,
 * or -1 if something else (or nothing) came. */
static int forced_close_code(amqp_connection_state_t conn, char *text, size_t cap) {
    amqp_frame_t frame;
    struct timeval tv = {5, 0};
    text[0] = '\0';
    int status = amqp_simple_wait_frame_noblock(conn, &frame, &tv);
    if (status != AMQP_STATUS_OK) {
        snprintf(text, cap, "%s", amqp_error_string2(status));
        return -1;
    }
    if (frame.frame_type != AMQP_FRAME_METHOD || frame.channel != 0 ||
        frame.payload.method.id != AMQP_CONNECTION_CLOSE_METHOD) {
        snprintf(text, cap, "frame type %u on channel %u", frame.frame_type, frame.channel);
        return -1;
    }
    amqp_connection_close_t *m = frame.payload.method.decoded;
    amqp_connection_close_ok_t close_ok = {0};
    snprintf(text, cap, "%.*s", (int)m->reply_text.len, (const char *)m->reply_text.bytes);
    amqp_send_method(conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
    return m->reply_code;
}

static void test_sigterm(void) {
    wt_broker_t b;
    if (!wt_broker_start(&b, NULL)) return;
    amqp_connection_state_t a = wt_amqp_connect(&b, NULL, NULL);
    amqp_connection_state_t c = wt_amqp_connect(&b, NULL, NULL);
    ok(a && c, "two clients connect");
    ok(c && amqp_channel_open(c, 1) != NULL, "the second opens a channel");
    kill(b.pid, SIGTERM);
    char text[512];
    int code = a ? forced_close_code(a, text, sizeof text) : -1;
    ok(code == 320, "SIGTERM: client 1 gets connection.close 320 (got %d '%s')", code, text);
    code = c ? forced_close_code(c, text, sizeof text) : -1;
    ok(code == 320 && strstr(text, "CONNECTION_FORCED") == text,
       "SIGTERM: client 2 gets connection.close 320 CONNECTION_FORCED (got %d '%s')", code, text);
    if (a) amqp_destroy_connection(a);
    if (c) amqp_destroy_connection(c);
    double start = wt_now_ms();
    int status = wt_broker_stop(&b);
    ok(status == 0, "the broker exits with status 0 (got %d)", status);
    diag("exit %.2f s after the clients' close-ok", (wt_now_ms() - start) / 1000.0);
}

/* Runs the broker on `conf` and checks it refuses it, naming file:line. */
static void test_bad_config(const char *what, const char *conf, int line) {
    char err[8192], path[400], where[440];
    int status = wt_broker_run_config(conf, 5000, err, sizeof err, path, sizeof path);
    ok(status > 0, "%s: the broker exits non-zero (got %d)", what, status);
    snprintf(where, sizeof where, "%s:%d", path, line);
    ok(strstr(err, where) != NULL, "%s: stderr names %s", what, where);
    if (!strstr(err, where)) diag("stderr: %s", err);
}

int main(void) {
    wt_init(60);
    if (wt_external()) {
        wt_skip_external("SIGTERM closes clients with 320 and exits 0");
        wt_skip_external("bad config files are refused");
        return tap_done();
    }
    test_sigterm();
    test_bad_config("unknown key",
                    "# a comment\nlisteners.tcp.default = 127.0.0.1:1\nno_such_key = 1\n", 3);
    test_bad_config("heartbeat = abc", "heartbeat = abc\n", 1);
    test_bad_config("frame_max = -5", "\n\nframe_max = -5\n", 3);
    test_bad_config("a line without '='", "log.console.level = info\njust some words\n", 2);
    return tap_done();
}
