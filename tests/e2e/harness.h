/*
 * harness.h - the end-to-end test harness: one Warren broker per test
 * program, reached through librabbitmq-c or through a raw socket.
 *
 * The harness owns the broker's life: a temp dir with its config, data dir
 * and log, a free loopback port, the process itself, and its removal on every
 * way out (stop, failure, atexit, the watchdog alarm). A raw connection owns
 * one socket and the bytes read from it but not yet parsed.
 *
 * WARREN_TEST_EXTERNAL=host:port points every test at a broker that is
 * already running (the reference RabbitMQ): nothing is started, and cases
 * that need Warren's config or process are reported as skipped.
 */
#ifndef WT_HARNESS_H
#define WT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <amqp.h>

#include "tap.h"

/* ---- the broker ----------------------------------------------------------- */

typedef struct wt_broker {
    char dir[256]; /* temp dir: config, data, log */
    char conf_path[320];
    char log_path[320];
    char host[64];
    int port;
    pid_t pid; /* 0 when not running */
    bool external;
} wt_broker_t;

/* Call first: arms a watchdog that kills the broker and fails the program
 * after `seconds`, so a hung test never outlives its run. */
void wt_init(unsigned seconds);

/* True when WARREN_TEST_EXTERNAL names the broker to test. */
bool wt_external(void);

/* One TAP case reported as skipped because the broker is external. */
#define wt_skip_external(name) ok(1, "%s # SKIP external broker", name)

/* Start a broker with the harness's config plus `extra_conf_lines` (may be
 * NULL). Fails a TAP case with the log's tail and returns false if it does
 * not accept connections within 10 s. */
bool wt_broker_start(wt_broker_t *b, const char *extra_conf_lines);

/* SIGTERM, wait up to 10 s (then SIGKILL, reported as a failed case).
 * Returns the exit status, or -1 if the broker died by a signal or had to be
 * killed. Removes the temp dir. For an external broker: returns 0. */
int wt_broker_stop(wt_broker_t *b);

/* Write a config from `conf_lines` alone (no defaults added), run the broker
 * on it and wait up to `timeout_ms` for it to exit. Returns the exit status,
 * -1 if it died by a signal, -2 if it was still running (then killed).
 * The broker's stderr is copied into `err` (NUL-terminated). */
int wt_broker_run_config(const char *conf_lines, int timeout_ms, char *err, size_t err_cap,
                         char *conf_path, size_t conf_path_cap);

/* Print the last `lines` lines of the broker's log as TAP diagnostics. */
void wt_broker_log_tail(const wt_broker_t *b, int lines);

/* ---- librabbitmq-c --------------------------------------------------------- */

typedef struct wt_login {
    const char *user, *pass, *vhost; /* NULL: guest, guest, "/" */
    int channel_max, frame_max, heartbeat;
} wt_login_t;

/* What an RPC ended with, copied out of librabbitmq-c's memory so that it
 * outlives the connection. code is the connection.close or channel.close
 * reply code, 0 for anything else; str a readable account for diag(). */
typedef struct wt_result {
    amqp_response_type_enum type;
    int library_error;
    amqp_method_number_t method; /* for a server exception */
    int code;
    char text[512];
    uint16_t class_id, method_id;
    char str[700];
} wt_result_t;

void wt_result_set(wt_result_t *res, amqp_rpc_reply_t r);

/* Log in. Returns the connection, or NULL with *res telling why (res may be
 * NULL). `login` NULL: guest/guest on "/", channel_max 0, frame_max 131072,
 * heartbeat 0. */
amqp_connection_state_t wt_amqp_connect(const wt_broker_t *b, const wt_login_t *login,
                                        wt_result_t *res);

/* The result of the last RPC on conn. */
wt_result_t wt_amqp_result(amqp_connection_state_t conn);

/* amqp_connection_close + amqp_destroy_connection; true if the close was
 * answered with close-ok. */
bool wt_amqp_close(amqp_connection_state_t conn);

/* ---- raw sockets ------------------------------------------------------------- */

enum { WT_FRAME_METHOD = 1, WT_FRAME_HEADER = 2, WT_FRAME_BODY = 3, WT_FRAME_HEARTBEAT = 8 };

typedef struct wt_raw {
    int fd;
    uint8_t buf[262144];
    size_t len;
    size_t pending; /* bytes of the last frame handed out, dropped on the next read */
    uint32_t frame_max, heartbeat; /* as negotiated by wt_raw_handshake */
    uint16_t channel_max;
    uint8_t start[4096]; /* connection.start payload, for the server properties */
    size_t start_len;
} wt_raw_t;

typedef struct wt_frame {
    uint8_t type;
    uint16_t channel;
    uint32_t size;
    const uint8_t *payload;       /* into wt_raw_t.buf; valid until the next read */
    uint16_t class_id, method_id; /* for method frames */
} wt_frame_t;

typedef struct wt_close {
    uint16_t code;
    char text[512];
    uint16_t class_id, method_id;
} wt_close_t;

/* Results of reading from a raw connection. */
enum { WT_OK = 1, WT_EOF = 0, WT_TIMEOUT = -1, WT_BAD = -2 };

/* Connect a TCP socket to the broker. Returns WT_OK, or -1 (errno-based diag). */
int wt_raw_connect(wt_raw_t *c, const wt_broker_t *b);
void wt_raw_close(wt_raw_t *c);
bool wt_raw_send(wt_raw_t *c, const void *p, size_t n);

/* Read whatever arrives within timeout_ms, up to cap bytes, into out; stops
 * at EOF (sets *eof). Returns the number of bytes. */
size_t wt_raw_recv_all(wt_raw_t *c, uint8_t *out, size_t cap, int timeout_ms, bool *eof);

/* Read one frame: WT_OK, WT_EOF (peer closed/reset), WT_TIMEOUT, WT_BAD
 * (bytes that are not a frame). */
int wt_raw_read_frame(wt_raw_t *c, wt_frame_t *f, int timeout_ms);

/* Skip heartbeats until a connection.close arrives: WT_OK with *out set,
 * WT_EOF if the socket closed first, WT_TIMEOUT, or WT_BAD if another frame
 * came (then *f, if not NULL, holds it). */
int wt_raw_expect_close(wt_raw_t *c, wt_close_t *out, wt_frame_t *f, int timeout_ms);

/* Discard input until the socket closes. Returns the seconds it took, or -1
 * if it was still open after timeout_ms. */
double wt_raw_wait_eof(wt_raw_t *c, int timeout_ms);

/* Decode a connection.close or channel.close payload; false if it is not one. */
bool wt_decode_close(const wt_frame_t *f, wt_close_t *out);

/* Build a method frame in out: returns its length, 0 if cap is too small. */
size_t wt_method_frame(uint8_t *out, size_t cap, uint16_t channel, uint16_t class_id,
                       uint16_t method_id, const void *args, size_t args_len);

/* Send a method frame. */
bool wt_raw_send_method(wt_raw_t *c, uint16_t channel, uint16_t class_id, uint16_t method_id,
                        const void *args, size_t args_len);

/* Send connection.close-ok (what a client owes the broker after a close). */
bool wt_raw_send_close_ok(wt_raw_t *c);

typedef struct wt_raw_login {
    const char *mechanism; /* NULL: PLAIN */
    const void *response;  /* NULL: PLAIN \0user\0pass from user/pass */
    size_t response_len;
    const char *user, *pass, *vhost; /* NULL: guest, guest, "/" */
    int channel_max;                 /* -1: the broker's proposal */
    int frame_max;                   /* -1: the broker's proposal */
    int heartbeat;                   /* -1: the broker's proposal */
    int stop_after;                  /* WT_HS_STARTED, WT_HS_TUNED or WT_HS_OPEN */
} wt_raw_login_t;

/* How far a raw handshake got. */
enum {
    WT_HS_FAILED = 10, /* EOF, timeout or an unexpected frame */
    WT_HS_CLOSED,      /* the broker sent connection.close (in *close) */
    WT_HS_STARTED,     /* connection.start received (stop_after) */
    WT_HS_TUNED,       /* tune-ok sent, open not sent (stop_after) */
    WT_HS_OPEN,        /* open-ok received */
};

/* Defaults for a raw login: guest/guest on "/", the broker's tune values. */
wt_raw_login_t wt_raw_login_defaults(void);

/* Protocol header, start → start-ok, tune → tune-ok, open → open-ok.
 * Returns one of WT_HS_*; *close is set for WT_HS_CLOSED. */
int wt_raw_handshake(wt_raw_t *c, const wt_broker_t *b, const wt_raw_login_t *l, wt_close_t *close);

/* Open a channel; true when channel.open-ok came back on it. */
bool wt_raw_channel_open(wt_raw_t *c, uint16_t channel);

/* An AMQPLAIN response: the LOGIN/PASSWORD table without its length prefix,
 * as RabbitMQ and the spec's AMQPLAIN expect. Returns its length. */
size_t wt_amqplain_response(uint8_t *out, size_t cap, const char *user, const char *pass);

/* Milliseconds on a monotonic clock. */
double wt_now_ms(void);

#endif /* WT_HARNESS_H */
