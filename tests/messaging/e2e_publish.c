/*
 * e2e_publish.c - what a published message carries: bodies of 0, 1,
 * frame_max-8 (one body frame), frame_max-7 (two) and 1 MiB bytes, across
 * connections with different frame_max; all 14 basic properties and a nested
 * headers table with every field type, delivered unchanged through get,
 * consume and basic.return; mandatory returns (312 NO_ROUTE); immediate
 * (540); user-id and expiration checks; and max_message_size (406, Warren
 * only since it needs the broker's config).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "messaging/mhelp.h"

/* A body whose every byte depends on its size and position. */
static amqp_bytes_t make_body(size_t n) {
    amqp_bytes_t b = {n, n ? malloc(n) : NULL};
    for (size_t i = 0; i < n; i++)
        ((uint8_t *)b.bytes)[i] = (uint8_t)((i * 31 + n) ^ (i >> 8));
    return b;
}

static bool same_body(amqp_bytes_t a, amqp_bytes_t b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.bytes, b.bytes, a.len) == 0);
}

/* Publish each size on `pub` (frame_max pub_fm), read it back through
 * basic.get and through a consumer on `sub` (frame_max sub_fm). */
static void sizes_between(const wt_broker_t *b, int pub_fm, int sub_fm) {
    amqp_connection_state_t pub = mh_connect_ex(b, pub_fm, true);
    amqp_connection_state_t sub = mh_connect_ex(b, sub_fm, true);
    ok(pub && sub, "connections with frame_max %d (publisher) and %d (subscriber)", pub_fm, sub_fm);
    if (!pub || !sub) {
        mh_close(pub);
        mh_close(sub);
        return;
    }
    size_t sizes[] = {
        0,      1, (size_t)pub_fm - 8, (size_t)pub_fm - 7, (size_t)sub_fm - 8, (size_t)sub_fm - 7,
        1 << 20};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    char q[256];
    mh_anon_queue(sub, false, q, sizeof q);
    for (int i = 0; i < NS; i++) {
        amqp_bytes_t body = make_body(sizes[i]);
        ok(mh_publish_ex(pub, 1, "", q, false, false, body, NULL), "publish %zu bytes", sizes[i]);
        mh_sync(pub, 1);
        mh_event_t ev;
        mh_kind_t k = mh_get(sub, 1, q, true, &ev);
        ok(k == MH_GET_OK && ev.has_msg && same_body(ev.msg.body, body),
           "basic.get returns the %zu bytes unchanged (got %s, %zu bytes)", sizes[i],
           mh_kind_name(k), ev.has_msg ? ev.msg.body.len : 0);
        mh_event_free(&ev);
        free(body.bytes);
    }
    mh_rpc(sub, 1, amqp_basic_consume(sub, 1, MH_B(q), amqp_empty_bytes, 0, 1, 0, amqp_empty_table),
           "consume");
    for (int i = 0; i < NS; i++) {
        amqp_bytes_t body = make_body(sizes[i]);
        mh_publish_ex(pub, 1, "", q, false, false, body, NULL);
        free(body.bytes);
    }
    for (int i = 0; i < NS; i++) {
        amqp_bytes_t body = make_body(sizes[i]);
        mh_event_t ev;
        mh_kind_t k = mh_wait(sub, MH_DELIVER, 5000, &ev, NULL);
        ok(k == MH_DELIVER && ev.has_msg && same_body(ev.msg.body, body),
           "basic.deliver brings the %zu bytes unchanged, in order (got %s, %zu bytes)", sizes[i],
           mh_kind_name(k), ev.has_msg ? ev.msg.body.len : 0);
        mh_event_free(&ev);
        free(body.bytes);
    }
    mh_close(pub);
    mh_close(sub);
}

/* basic.get over a raw connection: the sizes of the body frames that carry
 * the message, into sizes (at most cap), their count returned; -1 if the
 * get-ok, the content header or a body frame did not come as it should. */
static int raw_get_body_frames(wt_raw_t *r, const char *q, uint64_t *body_size, uint32_t *sizes,
                               int cap) {
    uint8_t args[300];
    wn_writer_t w;
    wt_frame_t f;
    wn_writer_init(&w, args, sizeof args);
    wn_put16(&w, 0);
    wn_put_shortstr(&w, wn_cstr(q));
    wn_put8(&w, 1); /* no-ack */
    if (!wt_raw_send_method(r, 1, 60, 70, args, w.len)) return -1;
    if (wt_raw_read_frame(r, &f, 3000) != WT_OK || f.class_id != 60 || f.method_id != 71) return -1;
    if (wt_raw_read_frame(r, &f, 3000) != WT_OK || f.type != WT_FRAME_HEADER || f.size < 12)
        return -1;
    *body_size = wn_load64(f.payload + 4);
    uint64_t got = 0;
    int n = 0;
    while (got < *body_size) {
        if (wt_raw_read_frame(r, &f, 3000) != WT_OK || f.type != WT_FRAME_BODY) return -1;
        if (n < cap) sizes[n] = f.size;
        n++;
        got += f.size;
    }
    return n;
}

/* How the broker itself frames a body for a client with frame_max 4096: a
 * body frame carries at most frame_max - 8 bytes, so 4088 bytes take one
 * frame, 4089 two (4088 + 1), and an empty body none at all. */
static void test_body_frames(const wt_broker_t *b) {
    static const struct {
        size_t size;
        int frames;
        uint32_t first, last;
    } cases[] = {{0, 0, 0, 0},
                 {1, 1, 1, 1},
                 {4088, 1, 4088, 4088},
                 {4089, 2, 4088, 1},
                 {10000, 3, 4088, 1824}};
    amqp_connection_state_t c = mh_connect(b);
    wt_raw_t *r = calloc(1, sizeof *r);
    wt_raw_login_t l = wt_raw_login_defaults();
    l.frame_max = 4096;
    l.heartbeat = 0;
    bool up = c && wt_raw_handshake(r, b, &l, NULL) == WT_HS_OPEN && wt_raw_channel_open(r, 1);
    ok(up, "a raw connection with frame_max 4096 and a librabbitmq publisher");
    const char *q = mh_name("q-frames");
    if (up && mh_queue(c, 1, q, false)) {
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            amqp_bytes_t body = make_body(cases[i].size);
            mh_publish_ex(c, 1, "", q, false, false, body, NULL);
            free(body.bytes);
            mh_sync(c, 1);
            uint32_t sizes[8] = {0};
            uint64_t body_size = 0;
            int n = raw_get_body_frames(r, q, &body_size, sizes, 8);
            ok(n == cases[i].frames && body_size == cases[i].size &&
                   (n == 0 || (sizes[0] == cases[i].first && sizes[n - 1] == cases[i].last)),
               "a %zu-byte body reaches a frame_max 4096 client in %d body frame(s) (got %d: "
               "%u ... %u, header says %llu)",
               cases[i].size, cases[i].frames, n, sizes[0], n > 0 ? sizes[n - 1] : 0,
               (unsigned long long)body_size);
        }
        mh_queue_delete(c, 1, q);
    }
    wt_raw_close(r);
    free(r);
    mh_close(c);
}

/* ---- properties ---------------------------------------------------------------------- */

typedef struct props_buf {
    amqp_table_entry_t top[24], inner[4], deep[2];
    amqp_field_value_t array[4], inner_array[2];
    uint8_t blob[5];
    amqp_basic_properties_t p;
} props_buf_t;

#define FV(kind_, member, v)                                                                       \
    (amqp_field_value_t) {                                                                         \
        kind_, {                                                                                   \
            .member = v                                                                            \
        }                                                                                          \
    }

/* All 14 properties; the headers hold every field type RabbitMQ knows,
 * with a table in an array in a table. */
static const amqp_basic_properties_t *full_props(props_buf_t *pb) {
    amqp_table_entry_t *t = pb->top;
    int n = 0;
    memcpy(pb->blob, "\x00\x01\xfe\xff\x7f", 5);
    t[n++] = (amqp_table_entry_t){MH_B("bool"), FV(AMQP_FIELD_KIND_BOOLEAN, boolean, 1)};
    t[n++] = (amqp_table_entry_t){MH_B("i8"), FV(AMQP_FIELD_KIND_I8, i8, -128)};
    t[n++] = (amqp_table_entry_t){MH_B("u8"), FV(AMQP_FIELD_KIND_U8, u8, 255)};
    t[n++] = (amqp_table_entry_t){MH_B("i16"), FV(AMQP_FIELD_KIND_I16, i16, -32768)};
    t[n++] = (amqp_table_entry_t){MH_B("u16"), FV(AMQP_FIELD_KIND_U16, u16, 65535)};
    t[n++] = (amqp_table_entry_t){MH_B("i32"), FV(AMQP_FIELD_KIND_I32, i32, INT32_MIN)};
    t[n++] = (amqp_table_entry_t){MH_B("u32"), FV(AMQP_FIELD_KIND_U32, u32, UINT32_MAX)};
    t[n++] = (amqp_table_entry_t){MH_B("i64"), FV(AMQP_FIELD_KIND_I64, i64, INT64_MIN)};
    t[n++] = (amqp_table_entry_t){MH_B("f32"), FV(AMQP_FIELD_KIND_F32, f32, 1.5f)};
    t[n++] = (amqp_table_entry_t){MH_B("f64"), FV(AMQP_FIELD_KIND_F64, f64, -2.25e300)};
    amqp_field_value_t dec = {AMQP_FIELD_KIND_DECIMAL, {.decimal = {2, 12345}}};
    t[n++] = (amqp_table_entry_t){MH_B("decimal"), dec};
    t[n++] =
        (amqp_table_entry_t){MH_B("str"), FV(AMQP_FIELD_KIND_UTF8, bytes, MH_B("h\xc3\xa9llo"))};
    t[n++] = (amqp_table_entry_t){MH_B("bytes"),
                                  FV(AMQP_FIELD_KIND_BYTES, bytes, ((amqp_bytes_t){5, pb->blob}))};
    t[n++] = (amqp_table_entry_t){MH_B("ts"), FV(AMQP_FIELD_KIND_TIMESTAMP, u64, 1700000000ULL)};
    t[n++] = (amqp_table_entry_t){MH_B("void"), FV(AMQP_FIELD_KIND_VOID, i64, 0)};
    t[n++] = (amqp_table_entry_t){MH_B("empty-str"), FV(AMQP_FIELD_KIND_UTF8, bytes, MH_B(""))};
    t[n++] = (amqp_table_entry_t){MH_B("empty-table"),
                                  FV(AMQP_FIELD_KIND_TABLE, table, ((amqp_table_t){0, NULL}))};
    t[n++] = (amqp_table_entry_t){MH_B("empty-array"),
                                  FV(AMQP_FIELD_KIND_ARRAY, array, ((amqp_array_t){0, NULL}))};
    /* {"nested": [ 1, "two", {"deep": [true, void], "x": 3.0}, [] ]} */
    pb->inner_array[0] = FV(AMQP_FIELD_KIND_BOOLEAN, boolean, 1);
    pb->inner_array[1] = FV(AMQP_FIELD_KIND_VOID, i64, 0);
    pb->deep[0] = (amqp_table_entry_t){
        MH_B("deep"), FV(AMQP_FIELD_KIND_ARRAY, array, ((amqp_array_t){2, pb->inner_array}))};
    pb->deep[1] = (amqp_table_entry_t){MH_B("x"), FV(AMQP_FIELD_KIND_F64, f64, 3.0)};
    pb->array[0] = FV(AMQP_FIELD_KIND_I32, i32, 1);
    pb->array[1] = FV(AMQP_FIELD_KIND_UTF8, bytes, MH_B("two"));
    pb->array[2] = FV(AMQP_FIELD_KIND_TABLE, table, ((amqp_table_t){2, pb->deep}));
    pb->array[3] = FV(AMQP_FIELD_KIND_ARRAY, array, ((amqp_array_t){0, NULL}));
    pb->inner[0] = (amqp_table_entry_t){
        MH_B("list"), FV(AMQP_FIELD_KIND_ARRAY, array, ((amqp_array_t){4, pb->array}))};
    pb->inner[1] = (amqp_table_entry_t){MH_B("n"), FV(AMQP_FIELD_KIND_I64, i64, 42)};
    t[n++] = (amqp_table_entry_t){MH_B("nested"),
                                  FV(AMQP_FIELD_KIND_TABLE, table, ((amqp_table_t){2, pb->inner}))};

    amqp_basic_properties_t *p = &pb->p;
    memset(p, 0, sizeof *p);
    p->_flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_CONTENT_ENCODING_FLAG |
                AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_PRIORITY_FLAG |
                AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_REPLY_TO_FLAG |
                AMQP_BASIC_EXPIRATION_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_USER_ID_FLAG |
                AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_CLUSTER_ID_FLAG;
    p->content_type = MH_B("application/x-warren-test");
    p->content_encoding = MH_B("identity");
    p->headers = (amqp_table_t){n, t};
    p->delivery_mode = 2;
    p->priority = 7;
    p->correlation_id = MH_B("corr-1");
    p->reply_to = MH_B("reply-queue");
    p->expiration = MH_B("600000");
    p->message_id = MH_B("msg-1");
    p->timestamp = 1234567890;
    p->type = MH_B("test.type");
    p->user_id = MH_B("guest");
    p->app_id = MH_B("warren-e2e");
    p->cluster_id = MH_B("cluster-x");
    return p;
}

static void check_props(const mh_event_t *ev, mh_kind_t k, mh_kind_t want,
                        const amqp_basic_properties_t *sent, const char *via) {
    char why[128] = "no message";
    bool same = k == want && ev->has_msg && mh_props_eq(sent, &ev->msg.properties, why, sizeof why);
    ok(same, "all 14 properties and the nested headers arrive unchanged through %s (%s)", via, why);
    ok(k == want && ev->has_msg && mh_bytes_eq(ev->msg.body, "props"), "and the body (%s)", via);
}

static void test_properties(const wt_broker_t *b) {
    props_buf_t pb;
    const amqp_basic_properties_t *p = full_props(&pb);
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for properties");
    if (!c) return;
    char q[256];
    mh_anon_queue(c, false, q, sizeof q);
    mh_publish(c, 1, "", q, "props", p);
    mh_sync(c, 1);
    mh_event_t ev;
    mh_kind_t k = mh_get(c, 1, q, true, &ev);
    check_props(&ev, k, MH_GET_OK, p, "basic.get");
    mh_event_free(&ev);

    mh_rpc(c, 1, amqp_basic_consume(c, 1, MH_B(q), amqp_empty_bytes, 0, 1, 0, amqp_empty_table),
           "consume");
    mh_publish(c, 1, "", q, "props", p);
    k = mh_wait(c, MH_DELIVER, 3000, &ev, NULL);
    check_props(&ev, k, MH_DELIVER, p, "basic.deliver");
    mh_event_free(&ev);

    /* Nothing set at all: no flags come back. */
    amqp_basic_properties_t none = {0};
    mh_publish(c, 1, "", q, "props", &none);
    k = mh_wait(c, MH_DELIVER, 3000, &ev, NULL);
    check_props(&ev, k, MH_DELIVER, &none, "basic.deliver with no properties");
    mh_event_free(&ev);

    /* Mandatory and unroutable: basic.return with everything as sent. */
    const char *lost = mh_name("no-such-queue");
    ok(mh_publish_ex(c, 1, "", lost, true, false, MH_B("props"), p),
       "publish mandatory to a queue that does not exist");
    k = mh_wait(c, MH_RETURN, 3000, &ev, NULL);
    ok(k == MH_RETURN && ev.reply_code == 312 && strcmp(ev.reply_text, "NO_ROUTE") == 0,
       "basic.return 312 NO_ROUTE (got %s %d '%s')", mh_kind_name(k), ev.reply_code, ev.reply_text);
    ok(k == MH_RETURN && ev.exchange[0] == '\0' && strcmp(ev.routing_key, lost) == 0,
       "the return names exchange '' and routing key %s (got '%s' '%s')", lost, ev.exchange,
       ev.routing_key);
    check_props(&ev, k, MH_RETURN, p, "basic.return");
    mh_event_free(&ev);

    const char *x = mh_name("x-unrouted");
    mh_rpc(c, 1, amqp_exchange_declare(c, 1, MH_B(x), MH_B("topic"), 0, 0, 1, 0, amqp_empty_table),
           "declare %s", x);
    mh_publish_ex(c, 1, x, "a.b", true, false, MH_B("topic-return"), NULL);
    k = mh_wait(c, MH_RETURN, 3000, &ev, NULL);
    ok(k == MH_RETURN && ev.reply_code == 312 && strcmp(ev.exchange, x) == 0 &&
           strcmp(ev.routing_key, "a.b") == 0 && ev.has_msg &&
           mh_bytes_eq(ev.msg.body, "topic-return"),
       "an exchange without bindings returns a mandatory message with its exchange and key");
    mh_event_free(&ev);
    /* Not mandatory: dropped silently. */
    mh_publish_ex(c, 1, x, "a.b", false, false, MH_B("dropped"), NULL);
    mh_sync(c, 1);
    k = mh_next(c, 300, &ev);
    ok(k == MH_TIMEOUT, "an unroutable message without mandatory is dropped silently (got %s)",
       mh_kind_name(k));
    mh_event_free(&ev);
    /* Mandatory and routed: no return. */
    char q2[256];
    mh_anon_queue(c, false, q2, sizeof q2);
    mh_publish_ex(c, 1, "", q2, true, false, MH_B("routed"), NULL);
    mh_sync(c, 1);
    k = mh_next(c, 300, &ev);
    ok(k == MH_TIMEOUT, "a routed mandatory message is not returned (got %s)", mh_kind_name(k));
    mh_event_free(&ev);
    mh_exchange_delete(c, 1, x);
    mh_close(c);
}

/* librabbitmq-c encodes uint64_t as 'L'; RabbitMQ passes it through. */
static void test_u64_header(const wt_broker_t *b) {
    amqp_table_entry_t e[2] = {
        {MH_B("u64"), FV(AMQP_FIELD_KIND_U64, u64, UINT64_MAX)},
        {MH_B("after"), FV(AMQP_FIELD_KIND_UTF8, bytes, MH_B("still here"))},
    };
    amqp_basic_properties_t p = {._flags = AMQP_BASIC_HEADERS_FLAG, .headers = {2, e}};
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for a u64 header");
    if (!c) return;
    char q[256];
    mh_anon_queue(c, false, q, sizeof q);
    mh_publish(c, 1, "", q, "props", &p);
    mh_sync(c, 1);
    mh_event_t ev;
    mh_kind_t k = mh_get(c, 1, q, true, &ev);
    check_props(&ev, k, MH_GET_OK, &p, "basic.get with a u64 ('L') header");
    mh_event_free(&ev);
    mh_close(c);
}

static void test_publish_checks(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for publish checks");
    if (!c) return;
    char q[256];
    mh_anon_queue(c, false, q, sizeof q);
    amqp_basic_properties_t p = {._flags = AMQP_BASIC_USER_ID_FLAG, .user_id = MH_B("bob")};
    mh_publish(c, 1, "", q, "x", &p);
    mh_expect_async_error(c, 1, MH_CHANNEL, 406,
                          "PRECONDITION_FAILED - user_id property set to 'bob' but "
                          "authenticated user was 'guest'",
                          2000, "publish with user-id 'bob' as guest");
    mh_anon_queue(c, false, q, sizeof q);
    p = (amqp_basic_properties_t){._flags = AMQP_BASIC_EXPIRATION_FLAG, .expiration = MH_B("abc")};
    mh_publish(c, 1, "", q, "x", &p);
    mh_expect_async_error(c, 1, MH_CHANNEL, 406,
                          "PRECONDITION_FAILED - invalid expiration 'abc': no_integer", 2000,
                          "publish with expiration 'abc'");
    mh_anon_queue(c, false, q, sizeof q);
    p = (amqp_basic_properties_t){._flags = AMQP_BASIC_EXPIRATION_FLAG, .expiration = MH_B("-1")};
    mh_publish(c, 1, "", q, "x", &p);
    mh_expect_async_error(c, 1, MH_CHANNEL, 406,
                          "PRECONDITION_FAILED - invalid expiration '-1': {value_negative,-1}",
                          2000, "publish with expiration '-1'");

    /* In order: 200 messages come back as published. */
    mh_anon_queue(c, false, q, sizeof q);
    for (int i = 0; i < 200; i++) {
        char body[16];
        snprintf(body, sizeof body, "%d", i);
        mh_publish(c, 1, "", q, body, NULL);
    }
    mh_sync(c, 1);
    bool in_order = true;
    for (int i = 0; i < 200 && in_order; i++) {
        char body[16];
        mh_event_t ev;
        snprintf(body, sizeof body, "%d", i);
        in_order = mh_get(c, 1, q, true, &ev) == MH_GET_OK && mh_bytes_eq(ev.msg.body, body) &&
                   ev.message_count == (uint32_t)(199 - i);
        mh_event_free(&ev);
    }
    ok(in_order, "200 messages come back in publish order, message-count counting down");

    mh_publish_ex(c, 1, "", q, false, true, MH_B("immediate"), NULL);
    mh_expect_async_error(c, 1, MH_CONNECTION, 540, "NOT_IMPLEMENTED - immediate=true", 2000,
                          "publish with immediate=true");
    amqp_destroy_connection(c);
}

static void test_max_message_size(void) {
    const char *name = "max_message_size = 1000";
    if (wt_external()) {
        wt_skip_external(name);
        return;
    }
    wt_broker_t b;
    if (!wt_broker_start(&b, "max_message_size = 1000\n")) return;
    amqp_connection_state_t c = mh_connect(&b);
    ok(c != NULL, "connect to the broker with %s", name);
    if (c) {
        char q[256];
        mh_anon_queue(c, false, q, sizeof q);
        amqp_bytes_t body = make_body(1000);
        mh_publish_ex(c, 1, "", q, false, false, body, NULL);
        mh_sync(c, 1);
        ok(mh_count(c, 1, q, NULL) == 1, "a body of 1000 bytes is accepted");
        free(body.bytes);
        body = make_body(1001);
        mh_publish_ex(c, 1, "", q, false, false, body, NULL);
        free(body.bytes);
        mh_expect_async_error(c, 1, MH_CHANNEL, 406,
                              "PRECONDITION_FAILED - message size 1001 is larger than configured "
                              "max size 1000",
                              3000, "a body of 1001 bytes");
        ok(mh_count(c, 1, q, NULL) == 1, "the refused message was not enqueued");
        mh_close(c);
    }
    ok(wt_broker_stop(&b) == 0, "the broker with %s exits 0", name);
}

int main(void) {
    wt_broker_t b;
    wt_init(60);
    if (!wt_broker_start(&b, NULL)) return tap_done();
    sizes_between(&b, 131072, 131072);
    sizes_between(&b, 4096, 131072);
    sizes_between(&b, 131072, 4096);
    test_body_frames(&b);
    test_properties(&b);
    test_u64_header(&b);
    test_publish_checks(&b);
    ok(wt_broker_stop(&b) == 0, "broker exits 0 after SIGTERM");
    test_max_message_size();
    return tap_done();
}
