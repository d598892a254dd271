/*
 * mhelp.c - the messaging tests' helpers: connecting with
 * consumer_cancel_notify, recovering from closes, reading unasked methods
 * with their content, and comparing properties and field tables deeply.
 *
 * Nothing here reports a TAP case (tap.h counts per translation unit); the
 * reporting helpers are the static inline ones in mhelp.h.
 */
#include "mhelp.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <amqp_tcp_socket.h>

const char *mh_name(const char *what) {
    static char ring[32][256];
    static unsigned next;
    char *out = ring[next++ % 32];
    snprintf(out, sizeof ring[0], "wt-%ld-%s", (long)getpid(), what);
    return out;
}

void mh_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *mh_todo(const char *why) {
    static char buf[512];
    if (wt_external()) return "";
    snprintf(buf, sizeof buf, " # TODO %s", why);
    return buf;
}

/* ---- connections ------------------------------------------------------------------ */

amqp_connection_state_t mh_connect_ex(const wt_broker_t *b, int frame_max, bool cancel_notify) {
    amqp_table_entry_t caps[1], props[2];
    amqp_table_t caps_table = {0, caps}, props_table = {0, props};
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    struct timeval tv = {5, 0};
    wt_result_t res;
    amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_LIBRARY_EXCEPTION};

    caps[0].key = MH_B("consumer_cancel_notify");
    caps[0].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    caps[0].value.value.boolean = 1;
    caps_table.num_entries = cancel_notify ? 1 : 0;
    props[0].key = MH_B("product");
    props[0].value.kind = AMQP_FIELD_KIND_UTF8;
    props[0].value.value.bytes = MH_B("warren-messaging-e2e");
    props[1].key = MH_B("capabilities");
    props[1].value.kind = AMQP_FIELD_KIND_TABLE;
    props[1].value.value.table = caps_table;
    props_table.num_entries = 2;

    r.library_error = amqp_socket_open_noblock(s, b->host, b->port, &tv);
    if (r.library_error == AMQP_STATUS_OK) {
        amqp_set_handshake_timeout(c, &tv);
        amqp_set_rpc_timeout(c, &tv);
        r = amqp_login_with_properties(c, "/", 0, frame_max ? frame_max : 131072, 0, &props_table,
                                       AMQP_SASL_METHOD_PLAIN, "guest", "guest");
    }
    wt_result_set(&res, r);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        diag("login failed: %s", res.str);
        amqp_destroy_connection(c);
        return NULL;
    }
    if (!mh_channel_open(c, 1)) {
        diag("channel 1 did not open");
        amqp_destroy_connection(c);
        return NULL;
    }
    return c;
}

amqp_connection_state_t mh_connect(const wt_broker_t *b) {
    return mh_connect_ex(b, 0, true);
}

bool mh_channel_open(amqp_connection_state_t c, amqp_channel_t ch) {
    return amqp_channel_open(c, ch) != NULL;
}

void mh_close(amqp_connection_state_t c) {
    if (c) wt_amqp_close(c);
}

/* ---- results -------------------------------------------------------------------------- */

static void mh_send_close_ok(amqp_connection_state_t c, amqp_channel_t ch, bool connection) {
    if (connection) {
        amqp_connection_close_ok_t ok_ = {0};
        amqp_send_method(c, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok_);
    } else {
        amqp_channel_close_ok_t ok_ = {0};
        amqp_send_method(c, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok_);
    }
}

wt_result_t mh_result(amqp_connection_state_t c, amqp_channel_t ch) {
    wt_result_t r = wt_amqp_result(c);
    if (r.type != AMQP_RESPONSE_SERVER_EXCEPTION) return r;
    if (r.method == AMQP_CHANNEL_CLOSE_METHOD) {
        mh_send_close_ok(c, ch, false);
        mh_channel_open(c, ch);
    } else if (r.method == AMQP_CONNECTION_CLOSE_METHOD) {
        mh_send_close_ok(c, 0, true);
    }
    return r;
}

/* ---- events ------------------------------------------------------------------------------ */

const char *mh_kind_name(mh_kind_t k) {
    static const char *names[] = {
        "timeout",       "connection lost",  "basic.deliver", "get-ok",       "get-empty",
        "basic.return",  "basic.ack",        "basic.nack",    "basic.cancel", "cancel-ok",
        "channel.close", "connection.close", "other method"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

static void mh_copy(char *out, size_t cap, amqp_bytes_t b) {
    snprintf(out, cap, "%.*s", (int)b.len, (const char *)b.bytes);
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
}

void mh_event_free(mh_event_t *ev) {
    if (ev->has_msg) amqp_destroy_message(&ev->msg);
    ev->has_msg = false;
}

static bool mh_read_content(amqp_connection_state_t c, amqp_channel_t ch, mh_event_t *ev) {
    amqp_rpc_reply_t r = amqp_read_message(c, ch, &ev->msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        diag("reading content on channel %u failed (reply type %d, error %d)", ch, r.reply_type,
             r.library_error);
        return false;
    }
    ev->has_msg = true;
    return true;
}

/* Fill ev from a method frame; read the content that follows a deliver,
 * get-ok or return. */
static mh_kind_t mh_decode(amqp_connection_state_t c, const amqp_frame_t *f, mh_event_t *ev) {
    void *d = f->payload.method.decoded;
    ev->channel = f->channel;
    ev->method = f->payload.method.id;
    switch (f->payload.method.id) {
    case AMQP_BASIC_DELIVER_METHOD: {
        amqp_basic_deliver_t *m = d;
        mh_copy(ev->consumer_tag, sizeof ev->consumer_tag, m->consumer_tag);
        mh_copy(ev->exchange, sizeof ev->exchange, m->exchange);
        mh_copy(ev->routing_key, sizeof ev->routing_key, m->routing_key);
        ev->delivery_tag = m->delivery_tag;
        ev->redelivered = m->redelivered;
        ev->kind = MH_DELIVER;
        return mh_read_content(c, f->channel, ev) ? MH_DELIVER : (ev->kind = MH_LOST);
    }
    case AMQP_BASIC_GET_OK_METHOD: {
        amqp_basic_get_ok_t *m = d;
        mh_copy(ev->exchange, sizeof ev->exchange, m->exchange);
        mh_copy(ev->routing_key, sizeof ev->routing_key, m->routing_key);
        ev->delivery_tag = m->delivery_tag;
        ev->redelivered = m->redelivered;
        ev->message_count = m->message_count;
        ev->kind = MH_GET_OK;
        return mh_read_content(c, f->channel, ev) ? MH_GET_OK : (ev->kind = MH_LOST);
    }
    case AMQP_BASIC_GET_EMPTY_METHOD:
        return ev->kind = MH_GET_EMPTY;
    case AMQP_BASIC_RETURN_METHOD: {
        amqp_basic_return_t *m = d;
        ev->reply_code = m->reply_code;
        mh_copy(ev->reply_text, sizeof ev->reply_text, m->reply_text);
        mh_copy(ev->exchange, sizeof ev->exchange, m->exchange);
        mh_copy(ev->routing_key, sizeof ev->routing_key, m->routing_key);
        ev->kind = MH_RETURN;
        return mh_read_content(c, f->channel, ev) ? MH_RETURN : (ev->kind = MH_LOST);
    }
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *m = d;
        ev->delivery_tag = m->delivery_tag;
        ev->multiple = m->multiple;
        return ev->kind = MH_ACK;
    }
    case AMQP_BASIC_NACK_METHOD: {
        amqp_basic_nack_t *m = d;
        ev->delivery_tag = m->delivery_tag;
        ev->multiple = m->multiple;
        return ev->kind = MH_NACK;
    }
    case AMQP_BASIC_CANCEL_METHOD: {
        amqp_basic_cancel_t *m = d;
        mh_copy(ev->consumer_tag, sizeof ev->consumer_tag, m->consumer_tag);
        return ev->kind = MH_CANCEL;
    }
    case AMQP_BASIC_CANCEL_OK_METHOD: {
        amqp_basic_cancel_ok_t *m = d;
        mh_copy(ev->consumer_tag, sizeof ev->consumer_tag, m->consumer_tag);
        return ev->kind = MH_CANCEL_OK;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
        amqp_channel_close_t *m = d;
        ev->reply_code = m->reply_code;
        mh_copy(ev->reply_text, sizeof ev->reply_text, m->reply_text);
        ev->class_id = m->class_id;
        ev->method_id = m->method_id;
        mh_send_close_ok(c, f->channel, false);
        return ev->kind = MH_CHAN_CLOSE;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_connection_close_t *m = d;
        ev->reply_code = m->reply_code;
        mh_copy(ev->reply_text, sizeof ev->reply_text, m->reply_text);
        ev->class_id = m->class_id;
        ev->method_id = m->method_id;
        mh_send_close_ok(c, 0, true);
        return ev->kind = MH_CONN_CLOSE;
    }
    default:
        return ev->kind = MH_OTHER;
    }
}

mh_kind_t mh_next(amqp_connection_state_t c, int timeout_ms, mh_event_t *ev) {
    double deadline = wt_now_ms() + timeout_ms;
    memset(ev, 0, sizeof *ev);
    amqp_maybe_release_buffers(c);
    for (;;) {
        double left = deadline - wt_now_ms();
        if (left < 0) left = 0;
        struct timeval tv = {(long)left / 1000, ((long)left % 1000) * 1000};
        amqp_frame_t f;
        int r = amqp_simple_wait_frame_noblock(c, &f, &tv);
        if (r == AMQP_STATUS_TIMEOUT) return ev->kind = MH_TIMEOUT;
        if (r != AMQP_STATUS_OK) return ev->kind = MH_LOST;
        /* Heartbeats and stray content frames are not events. */
        if (f.frame_type != AMQP_FRAME_METHOD) continue;
        return mh_decode(c, &f, ev);
    }
}

mh_kind_t mh_wait(amqp_connection_state_t c, mh_kind_t kind, int timeout_ms, mh_event_t *ev,
                  int *skipped) {
    double deadline = wt_now_ms() + timeout_ms;
    for (;;) {
        double left = deadline - wt_now_ms();
        mh_kind_t k = mh_next(c, left > 0 ? (int)left : 0, ev);
        if (k == kind || k == MH_TIMEOUT || k == MH_LOST) return k;
        if (skipped) (*skipped)++;
        if (k == MH_CONN_CLOSE) return k;
        mh_event_free(ev);
    }
}

mh_kind_t mh_get(amqp_connection_state_t c, amqp_channel_t ch, const char *queue, bool no_ack,
                 mh_event_t *ev) {
    memset(ev, 0, sizeof *ev);
    amqp_maybe_release_buffers(c);
    amqp_rpc_reply_t r = amqp_basic_get(c, ch, MH_B(queue), no_ack);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        amqp_frame_t f = {.frame_type = AMQP_FRAME_METHOD, .channel = ch};
        f.payload.method = r.reply;
        return mh_decode(c, &f, ev);
    }
    wt_result_t res = mh_result(c, ch);
    ev->reply_code = res.code;
    snprintf(ev->reply_text, sizeof ev->reply_text, "%s", res.text);
    if (res.method == AMQP_CHANNEL_CLOSE_METHOD) return ev->kind = MH_CHAN_CLOSE;
    if (res.method == AMQP_CONNECTION_CLOSE_METHOD) return ev->kind = MH_CONN_CLOSE;
    snprintf(ev->reply_text, sizeof ev->reply_text, "%.500s", res.str);
    return ev->kind = MH_LOST;
}

static void mh_append(char *out, size_t cap, amqp_bytes_t body) {
    size_t len = strlen(out);
    if (len + 1 >= cap) return;
    snprintf(out + len, cap - len, "%s%.*s", len ? "," : "", (int)body.len,
             (const char *)body.bytes);
}

int mh_get_all(amqp_connection_state_t c, amqp_channel_t ch, const char *queue, char *out,
               size_t cap) {
    int n = 0;
    if (out && cap) out[0] = '\0';
    for (;;) {
        mh_event_t ev;
        mh_kind_t k = mh_get(c, ch, queue, true, &ev);
        if (k == MH_GET_EMPTY) return n;
        if (k != MH_GET_OK) {
            diag("basic.get on '%s': %s %d %s", queue, mh_kind_name(k), ev.reply_code,
                 ev.reply_text);
            return -1;
        }
        if (out) mh_append(out, cap, ev.msg.body);
        mh_event_free(&ev);
        n++;
    }
}

int mh_collect(amqp_connection_state_t c, int ms, char *out, size_t cap, int *others) {
    double deadline = wt_now_ms() + ms;
    int n = 0;
    if (out && cap) out[0] = '\0';
    if (others) *others = 0;
    for (;;) {
        double left = deadline - wt_now_ms();
        if (left <= 0) return n;
        mh_event_t ev;
        mh_kind_t k = mh_next(c, (int)left, &ev);
        if (k == MH_TIMEOUT || k == MH_LOST) return n;
        if (k == MH_DELIVER) {
            if (out) mh_append(out, cap, ev.msg.body);
            n++;
        } else {
            diag("mh_collect: %s on channel %u", mh_kind_name(k), ev.channel);
            if (others) (*others)++;
        }
        mh_event_free(&ev);
    }
}

/* ---- publishing and queue state ------------------------------------------------------------ */

bool mh_publish_ex(amqp_connection_state_t c, amqp_channel_t ch, const char *exchange,
                   const char *routing_key, bool mandatory, bool immediate, amqp_bytes_t body,
                   const amqp_basic_properties_t *props) {
    return amqp_basic_publish(c, ch, MH_B(exchange), MH_B(routing_key), mandatory, immediate, props,
                              body) == AMQP_STATUS_OK;
}

bool mh_publish(amqp_connection_state_t c, amqp_channel_t ch, const char *exchange,
                const char *routing_key, const char *body, const amqp_basic_properties_t *props) {
    return mh_publish_ex(c, ch, exchange, routing_key, false, false, MH_B(body), props);
}

bool mh_sync(amqp_connection_state_t c, amqp_channel_t ch) {
    if (amqp_exchange_declare(c, ch, MH_B("amq.direct"), MH_B("direct"), 1, 0, 0, 0,
                              amqp_empty_table))
        return true;
    wt_result_t r = mh_result(c, ch);
    diag("sync on channel %u: %s", ch, r.str);
    return false;
}

int mh_count(amqp_connection_state_t c, amqp_channel_t ch, const char *queue, int *consumers) {
    amqp_queue_declare_ok_t *r =
        amqp_queue_declare(c, ch, MH_B(queue), 1, 0, 0, 0, amqp_empty_table);
    if (!r) {
        wt_result_t res = mh_result(c, ch);
        diag("passive declare of '%s': %s", queue, res.str);
        if (consumers) *consumers = -1;
        return -1;
    }
    if (consumers) *consumers = (int)r->consumer_count;
    return (int)r->message_count;
}

double mh_wait_queue_gone(amqp_connection_state_t c, amqp_channel_t ch, const char *queue,
                          int timeout_ms) {
    double start = wt_now_ms();
    for (;;) {
        if (!amqp_queue_declare(c, ch, MH_B(queue), 1, 0, 0, 0, amqp_empty_table)) {
            wt_result_t r = mh_result(c, ch);
            if (r.code == 404) return wt_now_ms() - start;
            /* 405: still there, exclusive to a connection on its way out. */
            if (r.code != 405) {
                diag("waiting for '%s' to go: %s", queue, r.str);
                return -1;
            }
        }
        if (wt_now_ms() - start > timeout_ms) return -1;
        mh_sleep_ms(10);
    }
}

bool mh_queue(amqp_connection_state_t c, amqp_channel_t ch, const char *queue, bool auto_delete) {
    if (amqp_queue_declare(c, ch, MH_B(queue), 0, 0, 0, auto_delete, amqp_empty_table)) return true;
    wt_result_t r = mh_result(c, ch);
    diag("declare of '%s': %s", queue, r.str);
    return false;
}

void mh_queue_delete(amqp_connection_state_t c, amqp_channel_t ch, const char *queue) {
    if (!amqp_queue_delete(c, ch, MH_B(queue), 0, 0)) mh_result(c, ch);
}

void mh_exchange_delete(amqp_connection_state_t c, amqp_channel_t ch, const char *exchange) {
    if (!amqp_exchange_delete(c, ch, MH_B(exchange), 0)) mh_result(c, ch);
}

/* ---- comparisons --------------------------------------------------------------------------- */

bool mh_bytes_eq(amqp_bytes_t a, const char *s) {
    size_t n = strlen(s);
    return a.len == n && (n == 0 || memcmp(a.bytes, s, n) == 0);
}

static bool mh_raw_eq(amqp_bytes_t a, amqp_bytes_t b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.bytes, b.bytes, a.len) == 0);
}

static bool mh_array_eq(const amqp_array_t *a, const amqp_array_t *b) {
    if (a->num_entries != b->num_entries) return false;
    for (int i = 0; i < a->num_entries; i++)
        if (!mh_value_eq(&a->entries[i], &b->entries[i])) return false;
    return true;
}

bool mh_value_eq(const amqp_field_value_t *a, const amqp_field_value_t *b) {
    if (a->kind != b->kind) return false;
    switch (a->kind) {
    case AMQP_FIELD_KIND_BOOLEAN:
        return !a->value.boolean == !b->value.boolean;
    case AMQP_FIELD_KIND_I8:
        return a->value.i8 == b->value.i8;
    case AMQP_FIELD_KIND_U8:
        return a->value.u8 == b->value.u8;
    case AMQP_FIELD_KIND_I16:
        return a->value.i16 == b->value.i16;
    case AMQP_FIELD_KIND_U16:
        return a->value.u16 == b->value.u16;
    case AMQP_FIELD_KIND_I32:
        return a->value.i32 == b->value.i32;
    case AMQP_FIELD_KIND_U32:
        return a->value.u32 == b->value.u32;
    case AMQP_FIELD_KIND_I64:
        return a->value.i64 == b->value.i64;
    case AMQP_FIELD_KIND_U64:
    case AMQP_FIELD_KIND_TIMESTAMP:
        return a->value.u64 == b->value.u64;
    case AMQP_FIELD_KIND_F32:
        return memcmp(&a->value.f32, &b->value.f32, sizeof a->value.f32) == 0;
    case AMQP_FIELD_KIND_F64:
        return memcmp(&a->value.f64, &b->value.f64, sizeof a->value.f64) == 0;
    case AMQP_FIELD_KIND_DECIMAL:
        return a->value.decimal.decimals == b->value.decimal.decimals &&
               a->value.decimal.value == b->value.decimal.value;
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
        return mh_raw_eq(a->value.bytes, b->value.bytes);
    case AMQP_FIELD_KIND_ARRAY:
        return mh_array_eq(&a->value.array, &b->value.array);
    case AMQP_FIELD_KIND_TABLE:
        return mh_table_eq(&a->value.table, &b->value.table);
    case AMQP_FIELD_KIND_VOID:
        return true;
    }
    return false;
}

/* Entry by entry in order: the broker must pass the table through as sent. */
bool mh_table_eq(const amqp_table_t *a, const amqp_table_t *b) {
    if (a->num_entries != b->num_entries) return false;
    for (int i = 0; i < a->num_entries; i++) {
        if (!mh_raw_eq(a->entries[i].key, b->entries[i].key)) return false;
        if (!mh_value_eq(&a->entries[i].value, &b->entries[i].value)) return false;
    }
    return true;
}

const amqp_field_value_t *mh_table_get(const amqp_table_t *t, const char *key) {
    for (int i = 0; t && i < t->num_entries; i++)
        if (mh_bytes_eq(t->entries[i].key, key)) return &t->entries[i].value;
    return NULL;
}

bool mh_props_eq(const amqp_basic_properties_t *a, const amqp_basic_properties_t *b, char *why,
                 size_t cap) {
    struct {
        amqp_flags_t flag;
        const char *name;
        const amqp_bytes_t *x, *y;
    } strs[] = {
        {AMQP_BASIC_CONTENT_TYPE_FLAG, "content-type", &a->content_type, &b->content_type},
        {AMQP_BASIC_CONTENT_ENCODING_FLAG, "content-encoding", &a->content_encoding,
         &b->content_encoding},
        {AMQP_BASIC_CORRELATION_ID_FLAG, "correlation-id", &a->correlation_id, &b->correlation_id},
        {AMQP_BASIC_REPLY_TO_FLAG, "reply-to", &a->reply_to, &b->reply_to},
        {AMQP_BASIC_EXPIRATION_FLAG, "expiration", &a->expiration, &b->expiration},
        {AMQP_BASIC_MESSAGE_ID_FLAG, "message-id", &a->message_id, &b->message_id},
        {AMQP_BASIC_TYPE_FLAG, "type", &a->type, &b->type},
        {AMQP_BASIC_USER_ID_FLAG, "user-id", &a->user_id, &b->user_id},
        {AMQP_BASIC_APP_ID_FLAG, "app-id", &a->app_id, &b->app_id},
        {AMQP_BASIC_CLUSTER_ID_FLAG, "cluster-id", &a->cluster_id, &b->cluster_id},
    };
    snprintf(why, cap, "equal");
    if (a->_flags != b->_flags) {
        snprintf(why, cap, "flags 0x%04x vs 0x%04x", a->_flags, b->_flags);
        return false;
    }
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        if ((a->_flags & strs[i].flag) && !mh_raw_eq(*strs[i].x, *strs[i].y)) {
            snprintf(why, cap, "%s differs", strs[i].name);
            return false;
        }
    }
    if ((a->_flags & AMQP_BASIC_HEADERS_FLAG) && !mh_table_eq(&a->headers, &b->headers)) {
        snprintf(why, cap, "headers differ");
        return false;
    }
    if ((a->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG) && a->delivery_mode != b->delivery_mode) {
        snprintf(why, cap, "delivery-mode %u vs %u", a->delivery_mode, b->delivery_mode);
        return false;
    }
    if ((a->_flags & AMQP_BASIC_PRIORITY_FLAG) && a->priority != b->priority) {
        snprintf(why, cap, "priority %u vs %u", a->priority, b->priority);
        return false;
    }
    if ((a->_flags & AMQP_BASIC_TIMESTAMP_FLAG) && a->timestamp != b->timestamp) {
        snprintf(why, cap, "timestamp differs");
        return false;
    }
    return true;
}

bool mh_anon_queue(amqp_connection_state_t c, bool auto_delete, char *out, size_t cap) {
    amqp_queue_declare_ok_t *r =
        amqp_queue_declare(c, 1, amqp_empty_bytes, 0, 0, 1, auto_delete, amqp_empty_table);
    if (!r) {
        mh_result(c, 1);
        out[0] = '\0';
        return false;
    }
    snprintf(out, cap, "%.*s", (int)r->queue.len, (const char *)r->queue.bytes);
    return true;
}
