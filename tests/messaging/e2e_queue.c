/*
 * e2e_queue.c - queues as librabbitmq-c sees them: server-named queues,
 * passive declares, durable and argument equivalence on redeclare (406 with
 * RabbitMQ's texts), exclusive queues (405 for other connections, gone with
 * their owner), auto-delete (kept until a first consumer, gone with the
 * last), the counts in declare-ok, purge, delete with if-unused / if-empty,
 * unbind, 255-byte names, the empty name meaning the channel's last declared
 * queue, and basic.cancel to consumers of a deleted queue.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging/mhelp.h"

static amqp_queue_declare_ok_t *declare(amqp_connection_state_t c, amqp_channel_t ch, const char *q,
                                        bool passive, bool durable, bool exclusive,
                                        bool auto_delete, amqp_table_t args) {
    return amqp_queue_declare(c, ch, MH_B(q), passive, durable, exclusive, auto_delete, args);
}

static void copy_name(char *out, size_t cap, const amqp_queue_declare_ok_t *r) {
    snprintf(out, cap, "%.*s", r ? (int)r->queue.len : 0, r ? (const char *)r->queue.bytes : "");
}

static void no_queue_text(char *out, size_t cap, const char *q) {
    snprintf(out, cap, "NOT_FOUND - no queue '%s' in vhost '/'", q);
}

static void test_server_named(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for server-named queues");
    if (!c) return;
    char q1[256], q2[256];
    amqp_queue_declare_ok_t *r = declare(c, 1, "", 0, 0, 1, 0, amqp_empty_table);
    mh_rpc(c, 1, r, "queue.declare with an empty name");
    copy_name(q1, sizeof q1, r);
    ok(strncmp(q1, "amq.gen-", 8) == 0, "the broker names it amq.gen-... (got '%s')", q1);
    ok(r && r->message_count == 0 && r->consumer_count == 0,
       "declare-ok of a new queue: 0 messages, 0 consumers");
    bool clean = strlen(q1) > 8;
    for (const char *p = q1 + 8; *p; p++)
        clean = clean && (strchr("-_", *p) || (*p >= '0' && *p <= '9') ||
                          (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'));
    ok(clean, "the generated part is url-safe base64 (%zu characters)", strlen(q1) - 8);
    r = declare(c, 1, "", 0, 0, 1, 0, amqp_empty_table);
    copy_name(q2, sizeof q2, r);
    ok(r && strcmp(q1, q2) != 0 && strncmp(q2, "amq.gen-", 8) == 0,
       "a second server-named queue gets another name ('%s')", q2);
    mh_rpc(c, 1, declare(c, 1, q1, 1, 0, 0, 0, amqp_empty_table),
           "passive declare of the generated name finds it");

    /* A client may not use the amq. prefix itself. */
    declare(c, 1, "amq.wt-reserved", 0, 0, 0, 0, amqp_empty_table);
    mh_expect_error(c, 1, MH_CHANNEL, 403,
                    "ACCESS_REFUSED - queue name 'amq.wt-reserved' contains reserved prefix "
                    "'amq.*'",
                    "declare a queue named amq.wt-reserved");
    char text[300];
    declare(c, 1, "amq.wt-reserved", 1, 0, 0, 0, amqp_empty_table);
    no_queue_text(text, sizeof text, "amq.wt-reserved");
    mh_expect_error(c, 1, MH_CHANNEL, 404, text, "passive declare of amq.wt-reserved");
    mh_close(c);
}

static void test_passive_durable(const wt_broker_t *b) {
    char text[512];
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for passive and durable");
    if (!c) return;
    const char *missing = mh_name("q-missing");
    declare(c, 1, missing, 1, 0, 0, 0, amqp_empty_table);
    no_queue_text(text, sizeof text, missing);
    mh_expect_error(c, 1, MH_CHANNEL, 404, text, "passive declare of a missing queue");

    const char *d = mh_name("q-durable");
    mh_rpc(c, 1, declare(c, 1, d, 0, 1, 0, 0, amqp_empty_table), "declare a durable queue");
    mh_rpc(c, 1, declare(c, 1, d, 0, 1, 0, 0, amqp_empty_table),
           "redeclare it durable: declare-ok");
    mh_rpc(c, 1, declare(c, 1, d, 1, 0, 0, 0, amqp_empty_table),
           "passive declare ignores the durable flag");
    declare(c, 1, d, 0, 0, 0, 0, amqp_empty_table);
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '%s' in vhost '/': "
             "received 'false' but current is 'true'",
             d);
    mh_expect_error(c, 1, MH_CHANNEL, 406, text, "redeclare the durable queue as transient");
    declare(c, 1, d, 0, 1, 0, 1, amqp_empty_table);
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue '%s' in vhost '/': "
             "received 'true' but current is 'false'",
             d);
    mh_expect_error(c, 1, MH_CHANNEL, 406, text, "redeclare it auto-delete");
    declare(c, 1, d, 0, 1, 1, 0, amqp_empty_table);
    snprintf(text, sizeof text,
             "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s' in vhost "
             "'/'. It could be originally declared on another connection or the exclusive "
             "property value does not match that of the original declaration.",
             d);
    mh_expect_error(c, 1, MH_CHANNEL, 405, text, "redeclare it exclusive on the same connection");
    mh_rpc(c, 1, amqp_queue_delete(c, 1, MH_B(d), 0, 0),
           "after the refused exclusive redeclare, the queue can still be deleted");
    mh_close(c);
}

static amqp_table_t one_arg(amqp_table_entry_t *e, const char *key, amqp_field_value_t v) {
    e->key = MH_B(key);
    e->value = v;
    return (amqp_table_t){1, e};
}

static void test_arguments(const wt_broker_t *b) {
    char text[512];
    amqp_table_entry_t e;
    amqp_field_value_t ttl32 = {AMQP_FIELD_KIND_I32, {.i32 = 1000}};
    amqp_field_value_t ttl64 = {AMQP_FIELD_KIND_I64, {.i64 = 1000}};
    amqp_field_value_t ttl2000 = {AMQP_FIELD_KIND_I32, {.i32 = 2000}};
    amqp_field_value_t neg = {AMQP_FIELD_KIND_I32, {.i32 = -1}};
    amqp_field_value_t str = {AMQP_FIELD_KIND_UTF8, {.bytes = MH_B("1000")}};
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for argument equivalence");
    if (!c) return;
    const char *q = mh_name("q-ttl");
    mh_rpc(c, 1, declare(c, 1, q, 0, 0, 0, 0, one_arg(&e, "x-message-ttl", ttl32)),
           "declare with x-message-ttl 1000 (signed 32-bit)");
    mh_rpc(c, 1, declare(c, 1, q, 0, 0, 0, 0, one_arg(&e, "x-message-ttl", ttl64)),
           "redeclare with x-message-ttl 1000 as a 64-bit long: equivalent");
    declare(c, 1, q, 0, 0, 0, 0, one_arg(&e, "x-message-ttl", ttl2000));
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' in vhost '/': "
             "received '2000' but current is '1000'",
             q);
    mh_expect_error(c, 1, MH_CHANNEL, 406, text, "redeclare with x-message-ttl 2000");
    declare(c, 1, q, 0, 0, 0, 0, amqp_empty_table);
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' in vhost '/': "
             "received none but current is the value '1000' of type 'signedint'",
             q);
    mh_expect_error(c, 1, MH_CHANNEL, 406, text, "redeclare without x-message-ttl");
    mh_rpc(c, 1, declare(c, 1, q, 1, 0, 0, 0, amqp_empty_table),
           "a passive declare compares no arguments");
    mh_queue_delete(c, 1, q);

    const char *q2 = mh_name("q-noargs");
    mh_rpc(c, 1, declare(c, 1, q2, 0, 0, 0, 0, amqp_empty_table), "declare without arguments");
    declare(c, 1, q2, 0, 0, 0, 0, one_arg(&e, "x-message-ttl", ttl32));
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '%s' in vhost '/': "
             "received the value '1000' of type 'signedint' but current is none",
             q2);
    mh_expect_error(c, 1, MH_CHANNEL, 406, text, "redeclare adding x-message-ttl");
    amqp_field_value_t foo = {AMQP_FIELD_KIND_UTF8, {.bytes = MH_B("anything")}};
    mh_rpc(c, 1, declare(c, 1, q2, 0, 0, 0, 0, one_arg(&e, "x-wt-unknown", foo)),
           "redeclare adding an argument RabbitMQ does not know: declare-ok");
    mh_queue_delete(c, 1, q2);

    const char *q3 = mh_name("q-badttl");
    declare(c, 1, q3, 0, 0, 0, 0, one_arg(&e, "x-message-ttl", neg));
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '%s' in vhost '/': "
             "{value_negative,-1}",
             q3);
    mh_expect_error(c, 1, MH_CHANNEL, 406, text, "declare with x-message-ttl -1");
    declare(c, 1, q3, 1, 0, 0, 0, amqp_empty_table);
    no_queue_text(text, sizeof text, q3);
    mh_expect_error(c, 1, MH_CHANNEL, 404, text, "the queue refused for ttl -1 was not created");
    const char *q4 = mh_name("q-strttl");
    declare(c, 1, q4, 0, 0, 0, 0, one_arg(&e, "x-message-ttl", str));
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - invalid arg 'x-message-ttl' for queue '%s' in vhost '/': "
             "\"expected integer, got longstr\"",
             q4);
    mh_expect_error(c, 1, MH_CHANNEL, 406, text, "declare with x-message-ttl as a string");
    declare(c, 1, q4, 1, 0, 0, 0, amqp_empty_table);
    no_queue_text(text, sizeof text, q4);
    mh_expect_error(c, 1, MH_CHANNEL, 404, text,
                    "the queue refused for a string ttl was not created");
    mh_close(c);
}

static void test_exclusive(const wt_broker_t *b) {
    char text[512], q[256];
    amqp_connection_state_t owner = mh_connect(b), other = mh_connect(b);
    ok(owner && other, "two connections for exclusive queues");
    if (!owner || !other) {
        mh_close(owner);
        mh_close(other);
        return;
    }
    const char *name = mh_name("q-excl");
    amqp_queue_declare_ok_t *r = declare(owner, 1, name, 0, 0, 1, 0, amqp_empty_table);
    mh_rpc(owner, 1, r, "declare an exclusive queue");
    snprintf(q, sizeof q, "%s", name);
    mh_publish(owner, 1, "", q, "x", NULL);
    mh_rpc(owner, 1, declare(owner, 1, q, 0, 0, 1, 0, amqp_empty_table),
           "its owner may redeclare it");
    snprintf(text, sizeof text,
             "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '%s' in vhost "
             "'/'. It could be originally declared on another connection or the exclusive "
             "property value does not match that of the original declaration.",
             q);
    declare(other, 1, q, 0, 0, 1, 0, amqp_empty_table);
    mh_expect_error(other, 1, MH_CHANNEL, 405, text, "another connection declares it");
    declare(other, 1, q, 1, 0, 0, 0, amqp_empty_table);
    mh_expect_error(other, 1, MH_CHANNEL, 405, text, "another connection declares it passively");
    amqp_basic_consume(other, 1, MH_B(q), amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
    mh_expect_error(other, 1, MH_CHANNEL, 405, text, "another connection consumes from it");
    mh_event_t ev;
    mh_kind_t k = mh_get(other, 1, q, true, &ev);
    ok(k == MH_CHAN_CLOSE && ev.reply_code == 405,
       "another connection's basic.get: channel.close 405 (got %s %d)", mh_kind_name(k),
       ev.reply_code);
    mh_event_free(&ev);
    amqp_queue_purge(other, 1, MH_B(q));
    mh_expect_error(other, 1, MH_CHANNEL, 405, text, "another connection purges it");
    amqp_queue_delete(other, 1, MH_B(q), 0, 0);
    mh_expect_error(other, 1, MH_CHANNEL, 405, text, "another connection deletes it");
    amqp_queue_bind(other, 1, MH_B(q), MH_B("amq.fanout"), MH_B(""), amqp_empty_table);
    mh_expect_error(other, 1, MH_CHANNEL, 405, text, "another connection binds it");
    /* Publishing is not restricted. */
    mh_publish(other, 1, "", q, "y", NULL);
    mh_sync(other, 1);
    ok(mh_count(owner, 1, q, NULL) == 2, "another connection may publish to it");

    /* Closing the owner's channel keeps it; closing the connection deletes it. */
    amqp_channel_close(owner, 1, AMQP_REPLY_SUCCESS);
    mh_channel_open(owner, 2);
    ok(mh_count(owner, 2, q, NULL) == 2, "the queue outlives the channel that declared it");
    mh_close(owner);
    double ms = mh_wait_queue_gone(other, 1, q, 2000);
    ok(ms >= 0, "after its owner closes, it is gone (passive declare: 404 after %.0f ms)", ms);
    mh_rpc(other, 1, declare(other, 1, q, 0, 0, 1, 0, amqp_empty_table),
           "another connection may now declare the name exclusively");
    mh_close(other);
}

static amqp_basic_consume_ok_t *consume(amqp_connection_state_t c, amqp_channel_t ch, const char *q,
                                        const char *tag) {
    return amqp_basic_consume(c, ch, MH_B(q), tag ? MH_B(tag) : amqp_empty_bytes, 0, 1, 0,
                              amqp_empty_table);
}

static void test_auto_delete(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for auto-delete queues");
    if (!c) return;
    const char *q = mh_name("q-auto");
    mh_rpc(c, 1, declare(c, 1, q, 0, 0, 0, 1, amqp_empty_table), "declare an auto-delete queue");
    mh_publish(c, 1, "", q, "m", NULL);
    mh_sleep_ms(100);
    mh_rpc(c, 1, declare(c, 1, q, 1, 0, 0, 0, amqp_empty_table),
           "it stays while it never had a consumer");
    mh_event_t ev;
    mh_kind_t k = mh_get(c, 1, q, true, &ev);
    mh_event_free(&ev);
    ok(k == MH_GET_OK, "basic.get does not count as a consumer");
    mh_rpc(c, 1, declare(c, 1, q, 1, 0, 0, 0, amqp_empty_table), "it is still there after a get");
    mh_rpc(c, 1, consume(c, 1, q, "one"), "consumer 'one'");
    mh_rpc(c, 1, consume(c, 1, q, "two"), "consumer 'two'");
    mh_rpc(c, 1, amqp_basic_cancel(c, 1, MH_B("one")), "cancel 'one'");
    int consumers = -1;
    mh_count(c, 1, q, &consumers);
    ok(consumers == 1, "it stays while a consumer remains (%d)", consumers);
    mh_rpc(c, 1, amqp_basic_cancel(c, 1, MH_B("two")), "cancel 'two', the last consumer");
    double ms = mh_wait_queue_gone(c, 1, q, 2000);
    ok(ms >= 0, "the auto-delete queue is gone (passive declare: 404 after %.0f ms)", ms);

    /* A consumer that goes with its channel counts as cancelled. */
    mh_rpc(c, 1, declare(c, 1, q, 0, 0, 0, 1, amqp_empty_table), "declare it again");
    mh_channel_open(c, 2);
    mh_rpc(c, 2, consume(c, 2, q, "three"), "consume on channel 2");
    amqp_channel_close(c, 2, AMQP_REPLY_SUCCESS);
    ms = mh_wait_queue_gone(c, 1, q, 2000);
    ok(ms >= 0, "closing the consumer's channel deletes it (404 after %.0f ms)", ms);
    mh_close(c);
}

static void test_counts_purge_delete(const wt_broker_t *b) {
    char text[300];
    amqp_connection_state_t c = mh_connect(b), c2 = mh_connect(b);
    ok(c && c2, "two connections for counts, purge and delete");
    if (!c || !c2) {
        mh_close(c);
        mh_close(c2);
        return;
    }
    const char *q = mh_name("q-counts");
    mh_queue(c, 1, q, false);
    for (int i = 0; i < 5; i++)
        mh_publish(c, 1, "", q, "m", NULL);
    mh_sync(c, 1);
    amqp_queue_declare_ok_t *r = declare(c, 1, q, 0, 0, 0, 0, amqp_empty_table);
    ok(r && r->message_count == 5 && r->consumer_count == 0,
       "declare-ok counts 5 messages and 0 consumers (got %d, %d)", r ? (int)r->message_count : -1,
       r ? (int)r->consumer_count : -1);

    /* One consumer holding one unacked message. */
    amqp_basic_qos(c2, 1, 0, 1, 0);
    mh_rpc(c2, 1, amqp_basic_consume(c2, 1, MH_B(q), amqp_empty_bytes, 0, 0, 0, amqp_empty_table),
           "a consumer with prefetch 1 on another connection");
    mh_event_t ev;
    mh_kind_t k = mh_wait(c2, MH_DELIVER, 2000, &ev, NULL);
    mh_event_free(&ev);
    ok(k == MH_DELIVER, "it gets one message");
    int consumers = -1;
    int n = mh_count(c, 1, q, &consumers);
    ok(n == 4 && consumers == 1,
       "passive declare-ok: 4 ready (the unacked one not counted), 1 consumer (got %d, %d)", n,
       consumers);

    amqp_queue_delete(c, 1, MH_B(q), 1, 0);
    snprintf(text, sizeof text, "PRECONDITION_FAILED - queue '%s' in vhost '/' in use", q);
    mh_expect_error(c, 1, MH_CHANNEL, 406, text, "delete if-unused with a consumer");
    amqp_queue_delete(c, 1, MH_B(q), 0, 1);
    snprintf(text, sizeof text, "PRECONDITION_FAILED - queue '%s' in vhost '/' not empty", q);
    mh_expect_error(c, 1, MH_CHANNEL, 406, text, "delete if-empty with messages");

    amqp_queue_purge_ok_t *p = amqp_queue_purge(c, 1, MH_B(q));
    ok(p && p->message_count == 4, "purge-ok counts the 4 ready messages (got %d)",
       p ? (int)p->message_count : -1);
    n = mh_count(c, 1, q, &consumers);
    ok(n == 0, "after the purge: 0 ready (got %d)", n);
    mh_close(c2);
    mh_sleep_ms(100);
    n = mh_count(c, 1, q, &consumers);
    ok(n == 1 && consumers == 0,
       "the unacked message survived the purge and came back when its consumer left (%d, %d)", n,
       consumers);

    mh_publish(c, 1, "", q, "m", NULL);
    mh_publish(c, 1, "", q, "m", NULL);
    amqp_queue_delete_ok_t *d = amqp_queue_delete(c, 1, MH_B(q), 1, 0);
    ok(d && d->message_count == 3,
       "delete if-unused of an idle queue: delete-ok with 3 messages "
       "(got %d)",
       d ? (int)d->message_count : -1);
    d = amqp_queue_delete(c, 1, MH_B(q), 0, 0);
    ok(d && d->message_count == 0, "delete of a missing queue: delete-ok with 0 messages");
    mh_rpc(c, 1, d, "the channel is still open");
    mh_queue(c, 1, q, false);
    d = amqp_queue_delete(c, 1, MH_B(q), 1, 1);
    ok(d && d->message_count == 0, "delete if-unused and if-empty of an empty idle queue");
    mh_close(c);
}

static void test_unbind_and_names(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for unbind and names");
    if (!c) return;
    const char *q = mh_name("q-unbind");
    mh_queue(c, 1, q, false);
    mh_rpc(c, 1, amqp_queue_bind(c, 1, MH_B(q), MH_B("amq.direct"), MH_B(q), amqp_empty_table),
           "bind to amq.direct");
    mh_publish(c, 1, "amq.direct", q, "1", NULL);
    mh_rpc(c, 1, amqp_queue_unbind(c, 1, MH_B(q), MH_B("amq.direct"), MH_B(q), amqp_empty_table),
           "unbind");
    mh_publish(c, 1, "amq.direct", q, "2", NULL);
    mh_sync(c, 1);
    char got[64];
    mh_get_all(c, 1, q, got, sizeof got);
    ok(strcmp(got, "1") == 0, "after unbind nothing more is routed (got '%s')", got);
    mh_queue_delete(c, 1, q);

    char longname[256];
    snprintf(longname, sizeof longname, "%s-", mh_name("q-long"));
    size_t len = strlen(longname);
    memset(longname + len, 'n', 255 - len);
    longname[255] = '\0';
    amqp_queue_declare_ok_t *r = declare(c, 1, longname, 0, 0, 0, 0, amqp_empty_table);
    ok(r && r->queue.len == 255, "a queue name of 255 bytes is declared (got %d)",
       r ? (int)r->queue.len : -1);
    mh_publish(c, 1, "", longname, "long", NULL);
    mh_sync(c, 1);
    mh_event_t ev;
    mh_kind_t k = mh_get(c, 1, longname, true, &ev);
    ok(k == MH_GET_OK && strlen(ev.routing_key) == 255,
       "and routed to by the default exchange (routing key of %zu bytes)", strlen(ev.routing_key));
    mh_event_free(&ev);
    mh_queue_delete(c, 1, longname);
    mh_close(c);
}

static void test_empty_name(const wt_broker_t *b) {
    static const char *noprev = "NOT_FOUND - no previously declared queue";
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for the empty queue name");
    if (!c) return;
    amqp_queue_bind(c, 1, amqp_empty_bytes, MH_B("amq.direct"), MH_B("k"), amqp_empty_table);
    mh_expect_error(c, 1, MH_CHANNEL, 404, noprev, "queue.bind '' before any declare");
    mh_event_t ev;
    mh_kind_t k = mh_get(c, 1, "", true, &ev);
    ok(k == MH_CHAN_CLOSE && ev.reply_code == 404 && strcmp(ev.reply_text, noprev) == 0,
       "basic.get '' before any declare: 404 '%s' (got %s %d '%s')", noprev, mh_kind_name(k),
       ev.reply_code, ev.reply_text);
    mh_event_free(&ev);
    consume(c, 1, "", NULL);
    mh_expect_error(c, 1, MH_CHANNEL, 404, noprev, "basic.consume '' before any declare");
    amqp_queue_purge(c, 1, amqp_empty_bytes);
    mh_expect_error(c, 1, MH_CHANNEL, 404, noprev, "queue.purge '' before any declare");
    amqp_queue_delete(c, 1, amqp_empty_bytes, 0, 0);
    mh_expect_error(c, 1, MH_CHANNEL, 404, noprev, "queue.delete '' before any declare");

    char q[256];
    amqp_queue_declare_ok_t *r = declare(c, 1, "", 0, 0, 1, 0, amqp_empty_table);
    copy_name(q, sizeof q, r);
    mh_rpc(c, 1, r, "declare a server-named queue");
    const char *key = mh_name("k-empty");
    mh_rpc(c, 1,
           amqp_queue_bind(c, 1, amqp_empty_bytes, MH_B("amq.direct"), MH_B(key), amqp_empty_table),
           "queue.bind '' binds the last declared queue");
    mh_publish(c, 1, "amq.direct", key, "1", NULL);
    mh_publish(c, 1, "amq.direct", key, "2", NULL);
    mh_sync(c, 1);
    ok(mh_count(c, 1, q, NULL) == 2, "both messages reached %s", q);
    k = mh_get(c, 1, "", true, &ev);
    ok(k == MH_GET_OK && ev.has_msg && mh_bytes_eq(ev.msg.body, "1"),
       "basic.get '' reads the last declared queue");
    mh_event_free(&ev);
    amqp_queue_purge_ok_t *p = amqp_queue_purge(c, 1, amqp_empty_bytes);
    ok(p && p->message_count == 1, "queue.purge '' purges it (count %d)",
       p ? (int)p->message_count : -1);
    amqp_basic_consume_ok_t *co = consume(c, 1, "", "empty-name");
    mh_rpc(c, 1, co, "basic.consume '' consumes from it");
    mh_publish(c, 1, "amq.direct", key, "3", NULL);
    k = mh_wait(c, MH_DELIVER, 2000, &ev, NULL);
    ok(k == MH_DELIVER && ev.has_msg && mh_bytes_eq(ev.msg.body, "3"),
       "and the consumer gets what is published to it");
    mh_event_free(&ev);
    mh_rpc(c, 1, amqp_basic_cancel(c, 1, MH_B("empty-name")), "cancel");

    /* On another channel there is no last declared queue. */
    mh_channel_open(c, 2);
    amqp_queue_purge(c, 2, amqp_empty_bytes);
    mh_expect_error(c, 2, MH_CHANNEL, 404, noprev, "the last declared queue is per channel");

    /* A passive declare of '' is not taken as the last declared queue. */
    char text[300];
    declare(c, 1, "", 1, 0, 0, 0, amqp_empty_table);
    no_queue_text(text, sizeof text, "");
    mh_expect_error(c, 1, MH_CHANNEL, 404, text, "passive declare of ''");
    /* A reopened channel has forgotten its queue. */
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    mh_channel_open(c, 1);
    amqp_queue_purge(c, 1, amqp_empty_bytes);
    mh_expect_error(c, 1, MH_CHANNEL, 404, noprev, "a reopened channel has no last queue");

    r = declare(c, 1, "", 0, 0, 1, 0, amqp_empty_table);
    copy_name(q, sizeof q, r);
    amqp_queue_delete_ok_t *d = amqp_queue_delete(c, 1, amqp_empty_bytes, 0, 0);
    mh_rpc(c, 1, d, "queue.delete '' deletes the last declared queue");
    declare(c, 1, q, 1, 0, 0, 0, amqp_empty_table);
    no_queue_text(text, sizeof text, q);
    mh_expect_error(c, 1, MH_CHANNEL, 404, text, "it is gone");
    mh_close(c);
}

static void test_cancel_notify(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b), plain = mh_connect_ex(b, 0, false);
    ok(c && plain, "connect with and without consumer_cancel_notify");
    if (!c || !plain) {
        mh_close(c);
        mh_close(plain);
        return;
    }
    const char *q = mh_name("q-cancel");
    mh_queue(c, 1, q, false);
    mh_rpc(c, 1, consume(c, 1, q, "notify-me"), "consumer on a client with cancel-notify");
    mh_rpc(plain, 1, consume(plain, 1, q, "silent"), "consumer on a client without it");
    mh_rpc(c, 1, amqp_queue_delete(c, 1, MH_B(q), 0, 0), "delete the queue");
    mh_event_t ev;
    mh_kind_t k = mh_next(c, 2000, &ev);
    ok(k == MH_CANCEL && strcmp(ev.consumer_tag, "notify-me") == 0 && ev.channel == 1,
       "the client that announced consumer_cancel_notify gets basic.cancel 'notify-me' (got %s "
       "'%s')",
       mh_kind_name(k), ev.consumer_tag);
    mh_event_free(&ev);
    k = mh_next(plain, 500, &ev);
    ok(k == MH_TIMEOUT, "the client that did not announce it gets nothing (got %s)",
       mh_kind_name(k));
    mh_event_free(&ev);
    ok(mh_sync(c, 1) && mh_sync(plain, 1), "both channels stay open");
    /* The tag is free again on that channel. */
    mh_queue(c, 1, q, true);
    mh_rpc(c, 1, consume(c, 1, q, "notify-me"), "the cancelled tag can be used again");
    mh_close(c);
    mh_close(plain);
}

int main(void) {
    wt_broker_t b;
    wt_init(60);
    if (!wt_broker_start(&b, NULL)) return tap_done();
    test_server_named(&b);
    test_passive_durable(&b);
    test_arguments(&b);
    test_exclusive(&b);
    test_auto_delete(&b);
    test_counts_purge_delete(&b);
    test_unbind_and_names(&b);
    test_empty_name(&b);
    test_cancel_notify(&b);
    ok(wt_broker_stop(&b) == 0, "broker exits 0 after SIGTERM");
    return tap_done();
}
