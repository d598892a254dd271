/*
 * e2e_ack.c - settling deliveries: basic.ack, basic.nack and basic.reject,
 * single and multiple; requeued messages going back to their original place
 * with redelivered set; requeue=false dropping them; unknown and already
 * settled delivery tags (406 "unknown delivery tag N"); unacked messages
 * returning in order when their channel or connection closes; and
 * basic.recover.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging/mhelp.h"

static void fill(amqp_connection_state_t c, amqp_channel_t ch, const char *q, int first, int n) {
    for (int i = first; i < first + n; i++) {
        char body[16];
        snprintf(body, sizeof body, "%d", i);
        mh_publish(c, ch, "", q, body, NULL);
    }
    mh_sync(c, ch);
}

/* basic.get n messages without ack; their tags into tags (may be NULL).
 * Returns how many came. */
static int get_n(amqp_connection_state_t c, amqp_channel_t ch, const char *q, int n,
                 uint64_t *tags) {
    for (int i = 0; i < n; i++) {
        mh_event_t ev;
        mh_kind_t k = mh_get(c, ch, q, false, &ev);
        if (tags) tags[i] = ev.delivery_tag;
        mh_event_free(&ev);
        if (k != MH_GET_OK) return i;
    }
    return n;
}

/* What a get returns, as "body/tag/r" (r: redelivered) plus the count. */
static const char *get_desc(amqp_connection_state_t c, amqp_channel_t ch, const char *q,
                            bool no_ack) {
    static char buf[4][64];
    static unsigned next;
    char *out = buf[next++ % 4];
    mh_event_t ev;
    mh_kind_t k = mh_get(c, ch, q, no_ack, &ev);
    if (k == MH_GET_OK)
        snprintf(out, sizeof buf[0], "%.*s/%llu/%s/%u", (int)ev.msg.body.len,
                 (const char *)ev.msg.body.bytes, (unsigned long long)ev.delivery_tag,
                 ev.redelivered ? "r" : "-", ev.message_count);
    else
        snprintf(out, sizeof buf[0], "%s", mh_kind_name(k));
    mh_event_free(&ev);
    return out;
}

/* The queue's contents read with no-ack gets: "body[r]" joined by ','. */
static const char *drain(amqp_connection_state_t c, amqp_channel_t ch, const char *q) {
    static char buf[4][256];
    static unsigned next;
    char *out = buf[next++ % 4];
    out[0] = '\0';
    for (;;) {
        mh_event_t ev;
        mh_kind_t k = mh_get(c, ch, q, true, &ev);
        if (k != MH_GET_OK) {
            if (k != MH_GET_EMPTY) snprintf(out, sizeof buf[0], "(%s)", mh_kind_name(k));
            mh_event_free(&ev);
            return out;
        }
        size_t len = strlen(out);
        snprintf(out + len, sizeof buf[0] - len, "%s%.*s%s", len ? "," : "", (int)ev.msg.body.len,
                 (const char *)ev.msg.body.bytes, ev.redelivered ? "r" : "");
        mh_event_free(&ev);
    }
}

static void test_ack(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for ack");
    if (!c) return;
    char q[256];
    uint64_t tags[8];
    mh_anon_queue(c, false, q, sizeof q);
    fill(c, 1, q, 1, 6);
    ok(get_n(c, 1, q, 6, tags) == 6 && tags[0] == 1 && tags[5] == 6,
       "get 6 messages unacked: tags 1..6");
    amqp_basic_ack(c, 1, 2, 0);
    amqp_basic_ack(c, 1, 4, 1);
    ok(mh_sync(c, 1), "ack 2, then ack 4 with multiple (settles 1, 3, 4)");
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    mh_channel_open(c, 1);
    const char *got = drain(c, 1, q);
    ok(strcmp(got, "5r,6r") == 0, "closing the channel returns only 5 and 6, redelivered (got %s)",
       got);

    /* Multiple with a tag beyond the last one is an unknown tag. */
    fill(c, 1, q, 1, 3);
    get_n(c, 1, q, 3, tags);
    amqp_basic_ack(c, 1, tags[2] + 100, 1);
    char text[128];
    snprintf(text, sizeof text, "PRECONDITION_FAILED - unknown delivery tag %llu",
             (unsigned long long)tags[2] + 100);
    mh_expect_async_error(c, 1, MH_CHANNEL, 406, text, 2000,
                          "ack multiple with a tag beyond the last delivered");
    got = drain(c, 1, q);
    ok(strcmp(got, "1r,2r,3r") == 0, "nothing was settled: all 3 are back (got '%s')", got);

    /* Tag 0 with multiple: everything outstanding. */
    fill(c, 1, q, 1, 3);
    get_n(c, 1, q, 3, tags);
    amqp_basic_ack(c, 1, 0, 1);
    mh_sync(c, 1);
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    mh_channel_open(c, 1);
    got = drain(c, 1, q);
    ok(got[0] == '\0', "ack with tag 0 and multiple settles all (left: '%s')", got);
    mh_close(c);
}

static void test_requeue_order(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for requeue order");
    if (!c) return;
    char q[256];
    uint64_t tags[8];
    mh_anon_queue(c, false, q, sizeof q);
    fill(c, 1, q, 1, 5);
    get_n(c, 1, q, 5, tags);
    amqp_basic_nack(c, 1, tags[2], 0, 1);
    amqp_basic_nack(c, 1, tags[0], 0, 1);
    mh_sync(c, 1);
    const char *g1 = get_desc(c, 1, q, false), *g2 = get_desc(c, 1, q, false);
    ok(strcmp(g1, "1/6/r/1") == 0,
       "nack 3 then 1 with requeue: the next get returns 1, tag 6, redelivered, 1 left (got %s)",
       g1);
    ok(strcmp(g2, "3/7/r/0") == 0, "then 3, tag 7, redelivered, 0 left (got %s)", g2);

    /* Requeued messages go back before the ones never delivered. */
    fill(c, 1, q, 6, 2);
    amqp_basic_reject(c, 1, 4, 1);  /* message 4 */
    amqp_basic_nack(c, 1, 7, 1, 1); /* 1, 2, 3, 5 (tags 6, 2, 7, 5) */
    mh_sync(c, 1);
    const char *got = drain(c, 1, q);
    ok(strcmp(got, "1r,2r,3r,4r,5r,6,7") == 0,
       "reject 4 and nack the rest with multiple: 1..5 redelivered in publish order, then 6, 7 "
       "(got %s)",
       got);
    mh_close(c);
}

static void test_requeue_to_consumer(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for requeue to a consumer");
    if (!c) return;
    char q[256];
    mh_anon_queue(c, false, q, sizeof q);
    fill(c, 1, q, 1, 1);
    mh_rpc(c, 1, amqp_basic_consume(c, 1, MH_B(q), MH_B("c"), 0, 0, 0, amqp_empty_table),
           "consume with acks");
    mh_event_t ev;
    mh_kind_t k = mh_wait(c, MH_DELIVER, 2000, &ev, NULL);
    uint64_t tag = ev.delivery_tag;
    ok(k == MH_DELIVER && !ev.redelivered && tag == 1, "first delivery: tag 1, not redelivered");
    mh_event_free(&ev);
    amqp_basic_reject(c, 1, tag, 1);
    k = mh_wait(c, MH_DELIVER, 2000, &ev, NULL);
    ok(k == MH_DELIVER && ev.redelivered && ev.delivery_tag == 2 && mh_bytes_eq(ev.msg.body, "1"),
       "rejected with requeue, it comes back to the consumer: tag 2, redelivered");
    tag = ev.delivery_tag;
    mh_event_free(&ev);
    amqp_basic_nack(c, 1, tag, 0, 0);
    k = mh_next(c, 300, &ev);
    mh_event_free(&ev);
    ok(k == MH_TIMEOUT, "nacked without requeue, it does not come back (got %s)", mh_kind_name(k));
    amqp_basic_cancel(c, 1, MH_B("c"));
    ok(mh_count(c, 1, q, NULL) == 0, "and the queue is empty");

    /* reject/nack with requeue=false drop what they settle. */
    uint64_t tags[4];
    fill(c, 1, q, 1, 3);
    get_n(c, 1, q, 3, tags);
    amqp_basic_reject(c, 1, tags[0], 0);
    amqp_basic_nack(c, 1, tags[2], 1, 0);
    mh_sync(c, 1);
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    mh_channel_open(c, 1);
    ok(mh_count(c, 1, q, NULL) == 0, "reject and nack multiple without requeue drop all 3");
    mh_close(c);
}

static void expect_unknown(amqp_connection_state_t c, uint64_t tag, const char *name) {
    char text[128];
    snprintf(text, sizeof text, "PRECONDITION_FAILED - unknown delivery tag %llu",
             (unsigned long long)tag);
    mh_expect_async_error(c, 1, MH_CHANNEL, 406, text, 2000, name);
}

static void test_unknown_tags(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for unknown delivery tags");
    if (!c) return;
    char q[256];
    uint64_t tags[4];
    mh_anon_queue(c, false, q, sizeof q);
    amqp_basic_ack(c, 1, 99, 0);
    expect_unknown(c, 99, "ack of a tag never delivered");
    fill(c, 1, q, 1, 2);
    get_n(c, 1, q, 2, tags);
    amqp_basic_ack(c, 1, tags[0], 0);
    amqp_basic_ack(c, 1, tags[0], 0);
    expect_unknown(c, tags[0], "ack of a tag already acked");
    /* The channel closed: its unacked message is back. */
    ok(mh_count(c, 1, q, NULL) == 1, "the channel's other unacked message was requeued");
    get_n(c, 1, q, 1, tags);
    amqp_basic_reject(c, 1, tags[0] + 1, 1);
    expect_unknown(c, tags[0] + 1, "reject of an unknown tag");
    get_n(c, 1, q, 1, tags);
    amqp_basic_nack(c, 1, tags[0] + 5, 0, 1);
    expect_unknown(c, tags[0] + 5, "nack of an unknown tag");
    get_n(c, 1, q, 1, tags);
    amqp_basic_ack(c, 1, 0, 0);
    expect_unknown(c, 0, "ack of tag 0 without multiple");

    /* Tags belong to their channel. */
    mh_channel_open(c, 2);
    get_n(c, 1, q, 1, tags);
    amqp_basic_ack(c, 2, tags[0], 0);
    char text[128];
    snprintf(text, sizeof text, "PRECONDITION_FAILED - unknown delivery tag %llu",
             (unsigned long long)tags[0]);
    mh_expect_async_error(c, 2, MH_CHANNEL, 406, text, 2000,
                          "ack on another channel than the delivery's");
    /* A no-ack delivery leaves nothing to ack. */
    mh_event_t ev;
    mh_kind_t k = mh_get(c, 1, q, false, &ev);
    mh_event_free(&ev);
    amqp_basic_ack(c, 1, 0, 1);
    mh_sync(c, 1);
    fill(c, 1, q, 10, 1);
    k = mh_get(c, 1, q, true, &ev);
    uint64_t noack_tag = ev.delivery_tag;
    mh_event_free(&ev);
    ok(k == MH_GET_OK, "a no-ack get");
    amqp_basic_ack(c, 1, noack_tag, 0);
    expect_unknown(c, noack_tag, "ack of a no-ack delivery");
    mh_close(c);
}

static void test_close_requeues(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b), c2 = mh_connect(b);
    ok(c && c2, "two connections for requeue on close");
    if (!c || !c2) {
        mh_close(c);
        mh_close(c2);
        return;
    }
    const char *q = mh_name("q-close");
    mh_queue(c, 1, q, false);
    fill(c, 1, q, 1, 5);
    mh_channel_open(c, 2);
    get_n(c, 2, q, 3, NULL);
    amqp_basic_ack(c, 2, 2, 0);
    amqp_channel_close(c, 2, AMQP_REPLY_SUCCESS);
    const char *got = drain(c, 1, q);
    ok(strcmp(got, "1r,3r,4,5") == 0,
       "closing a channel returns its unacked 1 and 3 before 4 and 5, redelivered (got %s)", got);

    /* The same through a consumer on another connection that goes away. */
    fill(c, 1, q, 1, 5);
    amqp_basic_qos(c2, 1, 0, 3, 0);
    mh_rpc(c2, 1, amqp_basic_consume(c2, 1, MH_B(q), MH_B("c"), 0, 0, 0, amqp_empty_table),
           "a consumer with prefetch 3 on another connection");
    int n = 0;
    for (int i = 0; i < 3; i++) {
        mh_event_t ev;
        n += mh_wait(c2, MH_DELIVER, 2000, &ev, NULL) == MH_DELIVER;
        mh_event_free(&ev);
    }
    ok(n == 3, "it holds 3 unacked deliveries");
    /* Acking 2 makes room for 4; wait for it so that the outcome is fixed. */
    amqp_basic_ack(c2, 1, 2, 0);
    mh_event_t ev;
    mh_kind_t k = mh_wait(c2, MH_DELIVER, 2000, &ev, NULL);
    ok(k == MH_DELIVER && mh_bytes_eq(ev.msg.body, "4"), "acking 2 brings 4");
    mh_event_free(&ev);
    mh_close(c2);
    double start = wt_now_ms();
    while (mh_count(c, 1, q, NULL) < 4 && wt_now_ms() - start < 2000)
        mh_sleep_ms(10);
    got = drain(c, 1, q);
    ok(strcmp(got, "1r,3r,4r,5") == 0,
       "closing the consumer's connection returns 1, 3 and 4 in place, redelivered (got %s)", got);
    mh_queue_delete(c, 1, q);
    mh_close(c);
}

static void test_recover(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for basic.recover");
    if (!c) return;
    char q[256];
    mh_anon_queue(c, false, q, sizeof q);
    fill(c, 1, q, 1, 3);
    get_n(c, 1, q, 2, NULL);
    mh_rpc(c, 1, amqp_basic_recover(c, 1, 1), "basic.recover requeue=true: recover-ok");
    const char *got = drain(c, 1, q);
    ok(strcmp(got, "1r,2r,3") == 0, "the unacked gets are back in order, redelivered (got %s)",
       got);

    /* With a consumer, recovered messages are delivered again. */
    fill(c, 1, q, 1, 2);
    mh_rpc(c, 1, amqp_basic_consume(c, 1, MH_B(q), MH_B("c"), 0, 0, 0, amqp_empty_table),
           "consume with acks");
    mh_event_t ev;
    int first = 0;
    for (int i = 0; i < 2; i++) {
        first += mh_wait(c, MH_DELIVER, 2000, &ev, NULL) == MH_DELIVER && !ev.redelivered;
        mh_event_free(&ev);
    }
    ok(first == 2, "two first deliveries");
    mh_rpc(c, 1, amqp_basic_recover(c, 1, 1), "basic.recover requeue=true");
    char bodies[32] = "";
    int again = 0;
    for (int i = 0; i < 2; i++) {
        if (mh_wait(c, MH_DELIVER, 2000, &ev, NULL) == MH_DELIVER && ev.redelivered) {
            again++;
            size_t len = strlen(bodies);
            snprintf(bodies + len, sizeof bodies - len, "%s%.*s", len ? "," : "",
                     (int)ev.msg.body.len, (const char *)ev.msg.body.bytes);
        }
        mh_event_free(&ev);
    }
    ok(again == 2 && strcmp(bodies, "1,2") == 0,
       "both are delivered again, redelivered, in order (got %s)", bodies);
    amqp_basic_ack(c, 1, 0, 1);
    ok(mh_sync(c, 1), "ack all");
    amqp_basic_cancel(c, 1, MH_B("c"));
    ok(mh_count(c, 1, q, NULL) == 0, "nothing is left");
    mh_close(c);
}

int main(void) {
    wt_broker_t b;
    wt_init(60);
    if (!wt_broker_start(&b, NULL)) return tap_done();
    test_ack(&b);
    test_requeue_order(&b);
    test_requeue_to_consumer(&b);
    test_unknown_tags(&b);
    test_close_requeues(&b);
    test_recover(&b);
    ok(wt_broker_stop(&b) == 0, "broker exits 0 after SIGTERM");
    return tap_done();
}
