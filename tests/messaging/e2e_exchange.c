/*
 * e2e_exchange.c - exchanges as librabbitmq-c sees them: declaring each
 * type, redeclaring equivalently and inequivalently (406 with RabbitMQ's
 * "inequivalent arg" texts), passive declares, unknown types (503), the
 * reserved amq. prefix and the default exchange (403), delete with and
 * without if-unused, auto-delete after the last binding goes, and publishing
 * to missing (404) and internal (403) exchanges.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging/mhelp.h"

/* A one-entry arguments table holding alternate-exchange = ae. */
static amqp_table_t ae_args(amqp_table_entry_t *e, const char *ae) {
    e->key = MH_B("alternate-exchange");
    e->value.kind = AMQP_FIELD_KIND_UTF8;
    e->value.value.bytes = MH_B(ae);
    return (amqp_table_t){1, e};
}

static amqp_exchange_declare_ok_t *declare(amqp_connection_state_t c, const char *name,
                                           const char *type, bool passive, bool durable,
                                           bool auto_delete, bool internal, amqp_table_t args) {
    return amqp_exchange_declare(c, 1, MH_B(name), MH_B(type), passive, durable, auto_delete,
                                 internal, args);
}

static void test_declare_types(const wt_broker_t *b) {
    static const char *types[] = {"direct", "fanout", "topic", "headers"};
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for declare-each-type");
    if (!c) return;
    for (int i = 0; i < 4; i++) {
        char what[64];
        snprintf(what, sizeof what, "x-%s", types[i]);
        const char *x = mh_name(what);
        mh_rpc(c, 1, declare(c, x, types[i], 0, 0, 0, 0, amqp_empty_table),
               "exchange.declare type %s: declare-ok", types[i]);
        mh_rpc(c, 1, declare(c, x, types[i], 0, 0, 0, 0, amqp_empty_table),
               "redeclare %s with the same type and flags: declare-ok", types[i]);
        mh_rpc(c, 1, declare(c, x, types[i], 1, 0, 0, 0, amqp_empty_table),
               "passive declare of the %s exchange: declare-ok", types[i]);
        mh_rpc(c, 1, amqp_exchange_delete(c, 1, MH_B(x), 0), "exchange.delete %s: delete-ok",
               types[i]);
        amqp_exchange_declare(c, 1, MH_B(x), MH_B(types[i]), 1, 0, 0, 0, amqp_empty_table);
        char text[300];
        snprintf(text, sizeof text, "NOT_FOUND - no exchange '%s' in vhost '/'", x);
        mh_expect_error(c, 1, MH_CHANNEL, 404, text, "passive declare after delete");
    }
    /* The predeclared exchanges exist with their types. */
    static const char *amq[][2] = {{"amq.direct", "direct"},
                                   {"amq.fanout", "fanout"},
                                   {"amq.topic", "topic"},
                                   {"amq.headers", "headers"},
                                   {"amq.match", "headers"}};
    for (int i = 0; i < 5; i++)
        mh_rpc(c, 1, declare(c, amq[i][0], amq[i][1], 0, 1, 0, 0, amqp_empty_table),
               "redeclare %s (%s, durable): declare-ok", amq[i][0], amq[i][1]);
    mh_close(c);
}

static void expect_inequivalent(amqp_connection_state_t c, const char *x, const char *arg,
                                const char *received, const char *current, const char *name) {
    char text[512];
    snprintf(text, sizeof text,
             "PRECONDITION_FAILED - inequivalent arg '%s' for exchange '%s' in vhost '/': "
             "received %s but current is %s",
             arg, x, received, current);
    mh_expect_error(c, 1, MH_CHANNEL, 406, text, name);
}

static void test_redeclare(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for redeclare");
    if (!c) return;
    const char *x = mh_name("x-redeclare");
    amqp_table_entry_t e;
    mh_rpc(c, 1, declare(c, x, "direct", 0, 0, 0, 0, amqp_empty_table), "declare %s direct", x);

    declare(c, x, "fanout", 0, 0, 0, 0, amqp_empty_table);
    expect_inequivalent(c, x, "type", "'fanout'", "'direct'", "redeclare as fanout");
    declare(c, x, "direct", 0, 1, 0, 0, amqp_empty_table);
    expect_inequivalent(c, x, "durable", "'true'", "'false'", "redeclare durable");
    declare(c, x, "direct", 0, 0, 1, 0, amqp_empty_table);
    expect_inequivalent(c, x, "auto_delete", "'true'", "'false'", "redeclare auto-delete");
    declare(c, x, "direct", 0, 0, 0, 1, amqp_empty_table);
    expect_inequivalent(c, x, "internal", "'true'", "'false'", "redeclare internal");
    declare(c, x, "direct", 0, 0, 0, 0, ae_args(&e, "ae"));
    expect_inequivalent(c, x, "alternate-exchange", "the value 'ae' of type 'longstr'", "none",
                        "redeclare adding alternate-exchange");

    /* Arguments other than alternate-exchange are not compared. */
    amqp_table_entry_t other = {MH_B("x-whatever"), {AMQP_FIELD_KIND_UTF8, {.bytes = MH_B("v")}}};
    mh_rpc(c, 1, declare(c, x, "direct", 0, 0, 0, 0, (amqp_table_t){1, &other}),
           "redeclare with an unrelated argument: declare-ok");
    /* A passive declare compares nothing. */
    mh_rpc(c, 1, declare(c, x, "fanout", 1, 1, 1, 0, amqp_empty_table),
           "passive redeclare with another type and flags: declare-ok");

    const char *y = mh_name("x-with-ae");
    mh_rpc(c, 1, declare(c, y, "direct", 0, 0, 0, 0, ae_args(&e, "ae")),
           "declare an exchange with alternate-exchange 'ae'");
    mh_rpc(c, 1, declare(c, y, "direct", 0, 0, 0, 0, ae_args(&e, "ae")),
           "redeclare with the same alternate-exchange: declare-ok");
    declare(c, y, "direct", 0, 0, 0, 0, amqp_empty_table);
    expect_inequivalent(c, y, "alternate-exchange", "none", "the value 'ae' of type 'longstr'",
                        "redeclare without the alternate-exchange");
    declare(c, y, "direct", 0, 0, 0, 0, ae_args(&e, "ae3"));
    expect_inequivalent(c, y, "alternate-exchange", "'ae3'", "'ae'",
                        "redeclare with another alternate-exchange");

    mh_exchange_delete(c, 1, x);
    mh_exchange_delete(c, 1, y);
    mh_close(c);
}

static void test_declare_errors(const wt_broker_t *b) {
    char text[300];
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for declare errors");
    if (!c) return;
    const char *missing = mh_name("x-missing");
    declare(c, missing, "direct", 1, 0, 0, 0, amqp_empty_table);
    snprintf(text, sizeof text, "NOT_FOUND - no exchange '%s' in vhost '/'", missing);
    mh_expect_error(c, 1, MH_CHANNEL, 404, text, "passive declare of a missing exchange");

    declare(c, "amq.wt-reserved", "direct", 0, 0, 0, 0, amqp_empty_table);
    mh_expect_error(c, 1, MH_CHANNEL, 403,
                    "ACCESS_REFUSED - exchange name 'amq.wt-reserved' contains reserved "
                    "prefix 'amq.*'",
                    "declare amq.wt-reserved");

    static const char *default_text =
        "ACCESS_REFUSED - operation not permitted on the default exchange";
    declare(c, "", "direct", 0, 0, 0, 0, amqp_empty_table);
    mh_expect_error(c, 1, MH_CHANNEL, 403, default_text, "declare the default exchange");
    declare(c, "", "direct", 1, 0, 0, 0, amqp_empty_table);
    mh_expect_error(c, 1, MH_CHANNEL, 403, default_text, "passive declare of the default exchange");
    amqp_exchange_delete(c, 1, MH_B(""), 0);
    mh_expect_error(c, 1, MH_CHANNEL, 403, default_text, "delete the default exchange");

    amqp_queue_declare_ok_t *q =
        amqp_queue_declare(c, 1, amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
    char qname[256];
    snprintf(qname, sizeof qname, "%.*s", q ? (int)q->queue.len : 0,
             q ? (const char *)q->queue.bytes : "");
    amqp_queue_bind(c, 1, MH_B(qname), MH_B(""), MH_B("k"), amqp_empty_table);
    mh_expect_error(c, 1, MH_CHANNEL, 403, default_text, "queue.bind to the default exchange");
    amqp_queue_unbind(c, 1, MH_B(qname), MH_B(""), MH_B("k"), amqp_empty_table);
    mh_expect_error(c, 1, MH_CHANNEL, 403, default_text, "queue.unbind from the default exchange");
    amqp_exchange_bind(c, 1, MH_B(""), MH_B("amq.fanout"), MH_B("k"), amqp_empty_table);
    mh_expect_error(c, 1, MH_CHANNEL, 403, default_text,
                    "exchange.bind with the default exchange as destination");
    amqp_exchange_bind(c, 1, MH_B("amq.fanout"), MH_B(""), MH_B("k"), amqp_empty_table);
    mh_expect_error(c, 1, MH_CHANNEL, 403, default_text,
                    "exchange.bind with the default exchange as source");

    amqp_exchange_delete(c, 1, MH_B("amq.direct"), 0);
    mh_expect_error(c, 1, MH_CHANNEL, 403,
                    "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not "
                    "allowed",
                    "delete amq.direct");

    amqp_queue_bind(c, 1, MH_B(qname), MH_B(missing), MH_B("k"), amqp_empty_table);
    snprintf(text, sizeof text, "NOT_FOUND - no exchange '%s' in vhost '/'", missing);
    mh_expect_error(c, 1, MH_CHANNEL, 404, text, "queue.bind to a missing exchange");
    amqp_exchange_bind(c, 1, MH_B("amq.fanout"), MH_B(missing), MH_B("k"), amqp_empty_table);
    mh_expect_error(c, 1, MH_CHANNEL, 404, text, "exchange.bind from a missing source");
    amqp_exchange_bind(c, 1, MH_B(missing), MH_B("amq.fanout"), MH_B("k"), amqp_empty_table);
    mh_expect_error(c, 1, MH_CHANNEL, 404, text, "exchange.bind to a missing destination");
    const char *noq = mh_name("q-missing");
    amqp_queue_bind(c, 1, MH_B(noq), MH_B("amq.direct"), MH_B("k"), amqp_empty_table);
    snprintf(text, sizeof text, "NOT_FOUND - no queue '%s' in vhost '/'", noq);
    mh_expect_error(c, 1, MH_CHANNEL, 404, text, "queue.bind of a missing queue");
    mh_rpc(c, 1, amqp_queue_unbind(c, 1, MH_B(qname), MH_B(missing), MH_B("k"), amqp_empty_table),
           "queue.unbind from a missing exchange: unbind-ok");
    mh_rpc(c, 1,
           amqp_queue_unbind(c, 1, MH_B(qname), MH_B("amq.direct"), MH_B("never-bound"),
                             amqp_empty_table),
           "queue.unbind of a binding that does not exist: unbind-ok");

    /* An unknown type closes the connection. */
    declare(c, mh_name("x-bogus"), "bogus", 0, 0, 0, 0, amqp_empty_table);
    mh_expect_error(c, 1, MH_CONNECTION, 503, "COMMAND_INVALID - unknown exchange type 'bogus'",
                    "declare with type 'bogus'");
    amqp_destroy_connection(c);
}

static void test_delete(const wt_broker_t *b) {
    char text[300];
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for delete");
    if (!c) return;
    const char *x = mh_name("x-del"), *y = mh_name("x-del-dst"), *q = mh_name("q-del");
    mh_rpc(c, 1, declare(c, x, "direct", 0, 0, 0, 0, amqp_empty_table), "declare %s", x);
    mh_rpc(c, 1, declare(c, y, "fanout", 0, 0, 0, 0, amqp_empty_table), "declare %s", y);
    mh_queue(c, 1, q, false);
    mh_rpc(c, 1, amqp_queue_bind(c, 1, MH_B(q), MH_B(x), MH_B("k"), amqp_empty_table),
           "bind a queue to %s", x);
    amqp_exchange_delete(c, 1, MH_B(x), 1);
    snprintf(text, sizeof text, "PRECONDITION_FAILED - exchange '%s' in vhost '/' in use", x);
    mh_expect_error(c, 1, MH_CHANNEL, 406, text, "delete if-unused with a queue binding");
    mh_rpc(c, 1, amqp_queue_unbind(c, 1, MH_B(q), MH_B(x), MH_B("k"), amqp_empty_table),
           "unbind the queue");

    /* Bindings where the exchange is the destination do not count as use. */
    mh_rpc(c, 1, amqp_exchange_bind(c, 1, MH_B(y), MH_B(x), MH_B("k"), amqp_empty_table),
           "bind %s -> %s", x, y);
    amqp_exchange_delete(c, 1, MH_B(x), 1);
    mh_expect_error(c, 1, MH_CHANNEL, 406, text,
                    "delete if-unused of the source of an e2e binding");
    mh_rpc(c, 1, amqp_exchange_delete(c, 1, MH_B(y), 1),
           "delete if-unused of an exchange bound only as destination: delete-ok");
    /* The binding went with its destination. */
    mh_rpc(c, 1, amqp_exchange_delete(c, 1, MH_B(x), 1),
           "delete if-unused once its destination is gone: delete-ok");
    mh_rpc(c, 1, amqp_exchange_delete(c, 1, MH_B(x), 0), "delete a missing exchange: delete-ok");
    mh_rpc(c, 1, amqp_exchange_delete(c, 1, MH_B(x), 1),
           "delete if-unused of a missing exchange: delete-ok");

    /* Deleting an exchange drops its bindings: redeclared, it routes nowhere. */
    mh_rpc(c, 1, declare(c, x, "direct", 0, 0, 0, 0, amqp_empty_table), "declare %s again", x);
    mh_rpc(c, 1, amqp_queue_bind(c, 1, MH_B(q), MH_B(x), MH_B("k"), amqp_empty_table),
           "bind the queue again");
    mh_rpc(c, 1, amqp_exchange_delete(c, 1, MH_B(x), 0), "delete it with its binding");
    mh_rpc(c, 1, declare(c, x, "direct", 0, 0, 0, 0, amqp_empty_table), "declare it once more");
    mh_publish(c, 1, x, "k", "m", NULL);
    mh_sync(c, 1);
    ok(mh_count(c, 1, q, NULL) == 0, "the old binding did not come back");
    mh_queue_delete(c, 1, q);
    mh_exchange_delete(c, 1, x);
    mh_close(c);
}

static void passive_gone(amqp_connection_state_t c, const char *x, const char *name) {
    char text[300];
    declare(c, x, "direct", 1, 0, 0, 0, amqp_empty_table);
    snprintf(text, sizeof text, "NOT_FOUND - no exchange '%s' in vhost '/'", x);
    mh_expect_error(c, 1, MH_CHANNEL, 404, text, name);
}

static void test_auto_delete(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for auto-delete exchanges");
    if (!c) return;
    const char *x = mh_name("x-auto"), *q = mh_name("q-auto");
    mh_queue(c, 1, q, false);
    mh_rpc(c, 1, declare(c, x, "direct", 0, 0, 1, 0, amqp_empty_table),
           "declare an auto-delete exchange");
    mh_rpc(c, 1, declare(c, x, "direct", 1, 0, 0, 0, amqp_empty_table),
           "it exists before it ever had a binding");
    mh_rpc(c, 1, amqp_queue_bind(c, 1, MH_B(q), MH_B(x), MH_B("a"), amqp_empty_table), "bind a");
    mh_rpc(c, 1, amqp_queue_bind(c, 1, MH_B(q), MH_B(x), MH_B("b"), amqp_empty_table), "bind b");
    mh_rpc(c, 1, amqp_queue_unbind(c, 1, MH_B(q), MH_B(x), MH_B("a"), amqp_empty_table),
           "unbind a");
    mh_rpc(c, 1, declare(c, x, "direct", 1, 0, 0, 0, amqp_empty_table),
           "it exists while one binding remains");
    mh_rpc(c, 1, amqp_queue_unbind(c, 1, MH_B(q), MH_B(x), MH_B("b"), amqp_empty_table),
           "unbind b, the last binding");
    passive_gone(c, x, "auto-delete exchange gone after its last unbind");

    /* The last binding can also go with its queue. */
    const char *q2 = mh_name("q-auto2");
    mh_queue(c, 1, q2, false);
    mh_rpc(c, 1, declare(c, x, "fanout", 0, 0, 1, 0, amqp_empty_table),
           "declare the auto-delete exchange again");
    mh_rpc(c, 1, amqp_queue_bind(c, 1, MH_B(q2), MH_B(x), MH_B(""), amqp_empty_table),
           "bind a queue to it");
    mh_rpc(c, 1, amqp_queue_delete(c, 1, MH_B(q2), 0, 0), "delete the queue");
    passive_gone(c, x, "auto-delete exchange gone when its last bound queue is deleted");

    /* Or with an exchange-to-exchange binding where it is the source. */
    const char *y = mh_name("x-auto-dst");
    mh_rpc(c, 1, declare(c, x, "fanout", 0, 0, 1, 0, amqp_empty_table),
           "declare the auto-delete exchange a third time");
    mh_rpc(c, 1, declare(c, y, "fanout", 0, 0, 0, 0, amqp_empty_table), "declare %s", y);
    mh_rpc(c, 1, amqp_exchange_bind(c, 1, MH_B(y), MH_B(x), MH_B(""), amqp_empty_table),
           "bind it to %s", y);
    mh_rpc(c, 1, amqp_exchange_unbind(c, 1, MH_B(y), MH_B(x), MH_B(""), amqp_empty_table),
           "remove that exchange-to-exchange binding");
    passive_gone(c, x, "auto-delete exchange gone after its last e2e binding is removed");
    mh_queue_delete(c, 1, q);
    mh_exchange_delete(c, 1, y);
    mh_close(c);
}

static void test_publish_errors(const wt_broker_t *b) {
    char text[300];
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for publish errors");
    if (!c) return;
    const char *missing = mh_name("x-nowhere");
    ok(mh_publish(c, 1, missing, "k", "m", NULL), "publish to a missing exchange is sent");
    snprintf(text, sizeof text, "NOT_FOUND - no exchange '%s' in vhost '/'", missing);
    mh_expect_async_error(c, 1, MH_CHANNEL, 404, text, 3000, "publish to a missing exchange");

    const char *in = mh_name("x-internal"), *front = mh_name("x-front"), *q = mh_name("q-int");
    mh_rpc(c, 1, declare(c, in, "fanout", 0, 0, 0, 1, amqp_empty_table),
           "declare an internal exchange");
    ok(mh_publish(c, 1, in, "k", "m", NULL), "publish to the internal exchange is sent");
    snprintf(text, sizeof text,
             "ACCESS_REFUSED - cannot publish to internal exchange '%s' in vhost '/'", in);
    mh_expect_async_error(c, 1, MH_CHANNEL, 403, text, 3000, "publish to an internal exchange");

    /* An internal exchange still routes what reaches it through a binding. */
    mh_queue(c, 1, q, false);
    mh_rpc(c, 1, declare(c, front, "fanout", 0, 0, 0, 0, amqp_empty_table), "declare %s", front);
    mh_rpc(c, 1, amqp_exchange_bind(c, 1, MH_B(in), MH_B(front), MH_B(""), amqp_empty_table),
           "bind the internal exchange to %s", front);
    mh_rpc(c, 1, amqp_queue_bind(c, 1, MH_B(q), MH_B(in), MH_B(""), amqp_empty_table),
           "bind a queue to the internal exchange");
    mh_publish(c, 1, front, "k", "through", NULL);
    mh_sync(c, 1);
    char got[64];
    ok(mh_get_all(c, 1, q, got, sizeof got) == 1 && strcmp(got, "through") == 0,
       "a message published to %s reaches the queue behind the internal exchange (got '%s')", front,
       got);
    mh_queue_delete(c, 1, q);
    mh_exchange_delete(c, 1, in);
    mh_exchange_delete(c, 1, front);
    mh_close(c);
}

/* Deleting an auto-delete exchange removes its bindings, which must not
 * delete it a second time on the way. Last: a broker that gets this wrong
 * may not survive it. */
static void test_delete_auto_delete_with_bindings(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for deleting a bound auto-delete exchange");
    if (!c) return;
    const char *x = mh_name("x-auto-bound"), *q = mh_name("q-auto-bound");
    mh_queue(c, 1, q, false);
    mh_rpc(c, 1, declare(c, x, "fanout", 0, 0, 1, 0, amqp_empty_table),
           "declare an auto-delete exchange");
    mh_rpc(c, 1, amqp_queue_bind(c, 1, MH_B(q), MH_B(x), MH_B("a"), amqp_empty_table), "bind a");
    mh_rpc(c, 1, amqp_queue_bind(c, 1, MH_B(q), MH_B(x), MH_B("b"), amqp_empty_table), "bind b");
    mh_rpc(c, 1, amqp_exchange_delete(c, 1, MH_B(x), 0),
           "exchange.delete of the auto-delete exchange with two bindings: delete-ok");
    passive_gone(c, x, "the deleted auto-delete exchange is gone");
    ok(mh_count(c, 1, q, NULL) == 0, "its queue is still there");
    mh_queue_delete(c, 1, q);
    mh_close(c);
}

int main(void) {
    wt_broker_t b;
    wt_init(60);
    if (!wt_broker_start(&b, NULL)) return tap_done();
    test_declare_types(&b);
    test_redeclare(&b);
    test_declare_errors(&b);
    test_delete(&b);
    test_auto_delete(&b);
    test_publish_errors(&b);
    test_delete_auto_delete_with_bindings(&b);
    ok(wt_broker_stop(&b) == 0, "broker exits 0 after SIGTERM");
    return tap_done();
}
