/*
 * mhelp.h - helpers for the messaging end-to-end tests: a librabbitmq-c
 * connection that announces consumer_cancel_notify, expected errors
 * (channel.close / connection.close answered with close-ok and the channel
 * reopened), a reader for everything the broker sends unasked (deliveries,
 * returns, confirms, cancels, closes) with a timeout on every wait, and deep
 * comparison of properties and field tables.
 *
 * Every name a test declares goes through mh_name() so that runs against a
 * long-lived external broker do not collide with one another.
 */
#ifndef MH_HELP_H
#define MH_HELP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <amqp.h>
#include <amqp_framing.h>

#include "e2e/harness.h"

/* ---- names and connections ------------------------------------------------ */

/* "wt-<pid>-<what>" in a static ring of buffers: valid for the next 31 calls. */
const char *mh_name(const char *what);

/* amqp_cstring_bytes for the common case. */
#define MH_B(s) amqp_cstring_bytes(s)

/* Log in as guest with `frame_max` (0: 131072), announcing consumer_cancel_notify
 * when `cancel_notify`, and open channel 1. NULL (with a diagnostic) on error. */
amqp_connection_state_t mh_connect_ex(const wt_broker_t *b, int frame_max, bool cancel_notify);
amqp_connection_state_t mh_connect(const wt_broker_t *b);

/* channel.open; true on open-ok. */
bool mh_channel_open(amqp_connection_state_t c, amqp_channel_t ch);

/* Close the connection (ignores a connection the broker already closed). */
void mh_close(amqp_connection_state_t c);

/* " # TODO why" for a known Warren discrepancy, "" against an external broker
 * (where the case must pass). Use as ok(cond, "name%s", mh_todo("why")). */
const char *mh_todo(const char *why);

/* ---- RPC results -------------------------------------------------------------- */

/* The last RPC's result. A channel.close is answered with close-ok and the
 * channel opened again; a connection.close is answered with close-ok. */
wt_result_t mh_result(amqp_connection_state_t c, amqp_channel_t ch);

enum { MH_CHANNEL = 1, MH_CONNECTION = 2 };

/* tap.h keeps its counters per translation unit, so the helpers that
 * report cases are static inline here and count in the test's file. */

/* One case: `ret` (the RPC's return value) is not NULL. On failure the
 * result is shown and the channel recovered as in mh_result. */
#define mh_rpc(c, ch, ret, ...)                                                                    \
    mh_rpc_report((c), (ch), (ret) != NULL, __FILE__, __LINE__, __VA_ARGS__)

static inline bool mh_rpc_report(amqp_connection_state_t c, amqp_channel_t ch, bool good,
                                 const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static inline bool mh_rpc_report(amqp_connection_state_t c, amqp_channel_t ch, bool good,
                                 const char *file, int line, const char *fmt, ...) {
    char name[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (good) {
        tap_result(1, file, line, "%s", name);
        return true;
    }
    wt_result_t r = mh_result(c, ch);
    tap_result(0, file, line, "%s (%s)", name, r.str);
    return false;
}

/* Two cases for a closing error: the broker closed the channel (scope
 * MH_CHANNEL) or the connection (MH_CONNECTION) with `code`, and the reply
 * text is `text` (not checked when NULL). `todo` (may be NULL) marks both
 * cases as a known discrepancy (see mh_todo). */
static inline bool mh_report_error(const char *file, int line, const char *todo, int got_scope,
                                   int got_code, const char *got_text, int scope, int code,
                                   const char *text, const char *name) {
    const char *what = scope == MH_CHANNEL ? "channel.close" : "connection.close";
    const char *got_what = got_scope == MH_CHANNEL      ? "channel.close"
                           : got_scope == MH_CONNECTION ? "connection.close"
                                                        : "no close";
    const char *mark = todo ? mh_todo(todo) : "";
    bool code_ok = got_scope == scope && got_code == code;
    tap_result(code_ok, file, line, "%s: %s %d%s", name, what, code, mark);
    if (!code_ok) diag("got %s %d '%s'", got_what, got_code, got_text);
    if (!text) return code_ok;
    bool text_ok = got_code == code && strcmp(got_text, text) == 0;
    tap_result(text_ok, file, line, "%s: reply text '%s'%s", name, text, mark);
    if (!text_ok) diag("got '%s'", got_text);
    return code_ok && text_ok;
}

/* The two cases for the failed RPC just made on ch (recovering as mh_result):
 * mh_expect_error(c, ch, scope, code, text, name). */
#define mh_expect_error(...)            mh_expect_error_at(__FILE__, __LINE__, NULL, __VA_ARGS__)
#define mh_expect_error_todo(todo, ...) mh_expect_error_at(__FILE__, __LINE__, todo, __VA_ARGS__)

static inline bool mh_expect_error_at(const char *file, int line, const char *todo,
                                      amqp_connection_state_t c, amqp_channel_t ch, int scope,
                                      int code, const char *text, const char *name) {
    wt_result_t r = mh_result(c, ch);
    int got = r.method == AMQP_CHANNEL_CLOSE_METHOD      ? MH_CHANNEL
              : r.method == AMQP_CONNECTION_CLOSE_METHOD ? MH_CONNECTION
                                                         : 0;
    if (!got) snprintf(r.text, sizeof r.text, "%.500s", r.str);
    return mh_report_error(file, line, todo, got, r.code, r.text, scope, code, text, name);
}

/* ---- what the broker sends unasked ---------------------------------------------- */

typedef enum {
    MH_TIMEOUT = 0,
    MH_LOST,       /* socket error or closed */
    MH_DELIVER,    /* basic.deliver + content */
    MH_GET_OK,     /* basic.get-ok + content (mh_get) */
    MH_GET_EMPTY,  /* basic.get-empty (mh_get) */
    MH_RETURN,     /* basic.return + content */
    MH_ACK,        /* basic.ack (confirms) */
    MH_NACK,       /* basic.nack (confirms) */
    MH_CANCEL,     /* basic.cancel from the broker */
    MH_CANCEL_OK,  /* basic.cancel-ok */
    MH_CHAN_CLOSE, /* channel.close (answered with close-ok) */
    MH_CONN_CLOSE, /* connection.close (answered with close-ok) */
    MH_OTHER,      /* any other method (see method) */
} mh_kind_t;

typedef struct mh_event {
    mh_kind_t kind;
    amqp_channel_t channel;
    amqp_method_number_t method;
    uint64_t delivery_tag;
    bool redelivered, multiple;
    uint32_t message_count;
    int reply_code;
    char reply_text[512];
    uint16_t class_id, method_id;
    char consumer_tag[256], exchange[256], routing_key[256];
    bool has_msg;
    amqp_message_t msg; /* properties and body, owned: mh_event_free */
} mh_event_t;

/* The next method the broker sends within timeout_ms (content read with it).
 * A close is answered with close-ok; channel closes are not reopened. */
mh_kind_t mh_next(amqp_connection_state_t c, int timeout_ms, mh_event_t *ev);
void mh_event_free(mh_event_t *ev);
const char *mh_kind_name(mh_kind_t k);

/* Like mh_next, but skips events of other kinds (freeing them) until one of
 * `kind` comes or timeout_ms passes: MH_TIMEOUT then. Counts the skipped. */
mh_kind_t mh_wait(amqp_connection_state_t c, mh_kind_t kind, int timeout_ms, mh_event_t *ev,
                  int *skipped);

/* basic.get: MH_GET_OK (content in ev), MH_GET_EMPTY, or MH_CHAN_CLOSE /
 * MH_CONN_CLOSE / MH_LOST (then ev->reply_*). */
mh_kind_t mh_get(amqp_connection_state_t c, amqp_channel_t ch, const char *queue, bool no_ack,
                 mh_event_t *ev);

/* basic.get (no_ack) until empty; the bodies joined by ',' into out.
 * Returns the number of messages, -1 on an error. */
int mh_get_all(amqp_connection_state_t c, amqp_channel_t ch, const char *queue, char *out,
               size_t cap);

/* Collect deliveries for `ms` milliseconds (any channel); their bodies,
 * joined by ',', into out (may be NULL). Returns how many; other events
 * are counted in *others (may be NULL). */
int mh_collect(amqp_connection_state_t c, int ms, char *out, size_t cap, int *others);

/* ---- publishing and queue state ------------------------------------------------- */

/* basic.publish of a text body; props may be NULL. */
bool mh_publish(amqp_connection_state_t c, amqp_channel_t ch, const char *exchange,
                const char *routing_key, const char *body, const amqp_basic_properties_t *props);
bool mh_publish_ex(amqp_connection_state_t c, amqp_channel_t ch, const char *exchange,
                   const char *routing_key, bool mandatory, bool immediate, amqp_bytes_t body,
                   const amqp_basic_properties_t *props);

/* A round trip on ch (a passive declare of amq.direct): everything sent on
 * the channel before it has been handled when it returns true. */
bool mh_sync(amqp_connection_state_t c, amqp_channel_t ch);

/* Passive queue.declare: message count (ready messages), -1 on error (the
 * channel is reopened). *consumers gets the consumer count (may be NULL). */
int mh_count(amqp_connection_state_t c, amqp_channel_t ch, const char *queue, int *consumers);

/* Declare a queue (not durable, not exclusive); false on an error. */
bool mh_queue(amqp_connection_state_t c, amqp_channel_t ch, const char *queue, bool auto_delete);
/* Declare a server-named exclusive queue on channel 1; its name goes to out. */
bool mh_anon_queue(amqp_connection_state_t c, bool auto_delete, char *out, size_t cap);

/* Poll with passive declares until the queue is gone (404): the milliseconds
 * it took, or -1 if it still exists after timeout_ms (or another error). The
 * broker may remove exclusive and auto-delete queues just after it answers. */
double mh_wait_queue_gone(amqp_connection_state_t c, amqp_channel_t ch, const char *queue,
                          int timeout_ms);

/* queue.delete, ignoring the result (for cleanup). */
void mh_queue_delete(amqp_connection_state_t c, amqp_channel_t ch, const char *queue);
void mh_exchange_delete(amqp_connection_state_t c, amqp_channel_t ch, const char *exchange);

/* ---- comparisons ------------------------------------------------------------------ */

bool mh_bytes_eq(amqp_bytes_t a, const char *s);
bool mh_value_eq(const amqp_field_value_t *a, const amqp_field_value_t *b);
bool mh_table_eq(const amqp_table_t *a, const amqp_table_t *b);

/* Compare all 14 properties; on a difference, false and its name in why. */
bool mh_props_eq(const amqp_basic_properties_t *a, const amqp_basic_properties_t *b, char *why,
                 size_t cap);

/* The entry `key` of a table, or NULL. */
const amqp_field_value_t *mh_table_get(const amqp_table_t *t, const char *key);

/* Sleep for ms milliseconds. */
void mh_sleep_ms(int ms);

/* Two cases: within timeout_ms the broker closes the channel or connection
 * (deliveries, acks and returns before it are skipped) with `code` and
 * `text`; the channel is reopened after a channel.close:
 * mh_expect_async_error(c, ch, scope, code, text, timeout_ms, name). */
#define mh_expect_async_error(...) mh_expect_async_error_at(__FILE__, __LINE__, NULL, __VA_ARGS__)
#define mh_expect_async_error_todo(todo, ...)                                                      \
    mh_expect_async_error_at(__FILE__, __LINE__, todo, __VA_ARGS__)

static inline bool mh_expect_async_error_at(const char *file, int line, const char *todo,
                                            amqp_connection_state_t c, amqp_channel_t ch, int scope,
                                            int code, const char *text, int timeout_ms,
                                            const char *name) {
    mh_event_t ev;
    mh_kind_t k;
    int got = 0;
    do {
        k = mh_next(c, timeout_ms, &ev);
        mh_event_free(&ev);
    } while (k == MH_DELIVER || k == MH_ACK || k == MH_RETURN);
    if (k == MH_CHAN_CLOSE) {
        got = MH_CHANNEL;
        if (ev.channel == ch) mh_channel_open(c, ch);
    } else if (k == MH_CONN_CLOSE) {
        got = MH_CONNECTION;
    } else {
        snprintf(ev.reply_text, sizeof ev.reply_text, "%s", mh_kind_name(k));
    }
    return mh_report_error(file, line, todo, got, ev.reply_code, ev.reply_text, scope, code, text,
                           name);
}

#endif /* MH_HELP_H */
