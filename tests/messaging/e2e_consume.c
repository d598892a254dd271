/*
 * e2e_consume.c - getting messages out: consumer tags (server-generated
 * amq.ctag-..., client-chosen, reuse refused with 530), no-ack, exclusive
 * consumers (403), basic.cancel with and without nowait, basic.get and
 * get-empty with message counts, delivery tags per channel, competing
 * consumers in round robin, prefetch per consumer (global=false) and per
 * channel (global=true) counted exactly, and consumer priorities (x-priority).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging/mhelp.h"

static void fill(amqp_connection_state_t c, const char *q, int first, int n) {
    for (int i = first; i < first + n; i++) {
        char body[16];
        snprintf(body, sizeof body, "%d", i);
        mh_publish(c, 1, "", q, body, NULL);
    }
    mh_sync(c, 1);
}

static amqp_basic_consume_ok_t *consume(amqp_connection_state_t c, amqp_channel_t ch, const char *q,
                                        const char *tag, bool no_ack, bool exclusive,
                                        amqp_table_t args) {
    return amqp_basic_consume(c, ch, MH_B(q), tag ? MH_B(tag) : amqp_empty_bytes, 0, no_ack,
                              exclusive, args);
}

/* Deliveries seen on a connection, in arrival order. */
typedef struct seen {
    int n, others;
    amqp_channel_t channel[64];
    uint64_t tag[64];
    bool redelivered[64];
    char consumer[64][64];
    char body[64][16];
} seen_t;

/* Collect deliveries until quiet_ms pass without any event: the count is
 * exact because a broker that would send more has had that long to do so. */
static void collect(amqp_connection_state_t c, int quiet_ms, seen_t *s) {
    memset(s, 0, sizeof *s);
    for (;;) {
        mh_event_t ev;
        mh_kind_t k = mh_next(c, quiet_ms, &ev);
        if (k == MH_TIMEOUT || k == MH_LOST) return;
        if (k == MH_DELIVER && s->n < 64) {
            int i = s->n++;
            s->channel[i] = ev.channel;
            s->tag[i] = ev.delivery_tag;
            s->redelivered[i] = ev.redelivered;
            snprintf(s->consumer[i], sizeof s->consumer[i], "%.60s", ev.consumer_tag);
            snprintf(s->body[i], sizeof s->body[i], "%.*s", (int)ev.msg.body.len,
                     (const char *)ev.msg.body.bytes);
        } else {
            diag("collect: %s on channel %u", mh_kind_name(k), ev.channel);
            s->others++;
        }
        mh_event_free(&ev);
    }
}

/* The bodies delivered on a channel, joined by ','. */
static const char *bodies_on(const seen_t *s, amqp_channel_t ch, char *out, size_t cap) {
    out[0] = '\0';
    for (int i = 0; i < s->n; i++) {
        if (s->channel[i] != ch) continue;
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s", len ? "," : "", s->body[i]);
    }
    return out;
}

static int count_on(const seen_t *s, amqp_channel_t ch) {
    int n = 0;
    for (int i = 0; i < s->n; i++)
        n += s->channel[i] == ch;
    return n;
}

static void test_tags(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for consumer tags");
    if (!c) return;
    char q[256], tag[256];
    mh_anon_queue(c, false, q, sizeof q);
    amqp_basic_consume_ok_t *r = consume(c, 1, q, NULL, 1, 0, amqp_empty_table);
    snprintf(tag, sizeof tag, "%.*s", r ? (int)r->consumer_tag.len : 0,
             r ? (const char *)r->consumer_tag.bytes : "");
    ok(strncmp(tag, "amq.ctag-", 9) == 0 && strlen(tag) > 9,
       "an empty consumer tag gets a server-generated amq.ctag-... (got '%s')", tag);
    r = consume(c, 1, q, "my-tag", 1, 0, amqp_empty_table);
    ok(r && mh_bytes_eq(r->consumer_tag, "my-tag"), "a client-chosen tag is echoed in consume-ok");
    fill(c, q, 1, 2);
    seen_t s;
    collect(c, 200, &s);
    ok(s.n == 2 && ((strcmp(s.consumer[0], tag) == 0 && strcmp(s.consumer[1], "my-tag") == 0) ||
                    (strcmp(s.consumer[1], tag) == 0 && strcmp(s.consumer[0], "my-tag") == 0)),
       "each consumer's deliveries carry its tag (%d deliveries: '%s', '%s')", s.n, s.consumer[0],
       s.consumer[1]);
    mh_channel_open(c, 2);
    mh_rpc(c, 2, consume(c, 2, q, "my-tag", 1, 0, amqp_empty_table),
           "the same tag on another channel is allowed");
    consume(c, 1, q, "my-tag", 1, 0, amqp_empty_table);
    mh_expect_error(c, 1, MH_CONNECTION, 530,
                    "NOT_ALLOWED - attempt to reuse consumer tag 'my-tag'",
                    "reusing a consumer tag on its channel");
    amqp_destroy_connection(c);
}

static void test_no_ack_and_exclusive(const wt_broker_t *b) {
    char text[512];
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for no-ack and exclusive consumers");
    if (!c) return;
    char q[256];
    mh_anon_queue(c, false, q, sizeof q);
    mh_channel_open(c, 2);
    fill(c, q, 1, 3);
    mh_rpc(c, 2, consume(c, 2, q, "noack", 1, 0, amqp_empty_table), "a no-ack consumer");
    seen_t s;
    collect(c, 200, &s);
    ok(s.n == 3 && s.tag[0] == 1 && s.tag[1] == 2 && s.tag[2] == 3 && !s.redelivered[0],
       "it gets all 3 messages, delivery tags 1, 2, 3 (%d)", s.n);
    amqp_channel_close(c, 2, AMQP_REPLY_SUCCESS);
    int n = mh_count(c, 1, q, NULL);
    ok(n == 0, "no-ack deliveries are settled: closing the channel requeues nothing (%d)", n);

    mh_channel_open(c, 2);
    mh_rpc(c, 2, consume(c, 2, q, "excl", 1, 1, amqp_empty_table), "an exclusive consumer");
    snprintf(text, sizeof text, "ACCESS_REFUSED - queue '%s' in vhost '/' in exclusive use", q);
    consume(c, 1, q, "second", 1, 0, amqp_empty_table);
    mh_expect_error(c, 1, MH_CHANNEL, 403, text,
                    "a second consumer on an exclusively consumed queue");
    mh_rpc(c, 2, amqp_basic_cancel(c, 2, MH_B("excl")), "cancel the exclusive consumer");
    mh_rpc(c, 1, consume(c, 1, q, "plain", 1, 0, amqp_empty_table),
           "after it is cancelled, another consumer may come");
    consume(c, 2, q, "excl2", 1, 1, amqp_empty_table);
    mh_expect_error(c, 2, MH_CHANNEL, 403, text,
                    "an exclusive consumer on a queue with a consumer");
    mh_close(c);
}

static void send_cancel_nowait(amqp_connection_state_t c, amqp_channel_t ch, const char *tag) {
    amqp_basic_cancel_t m = {MH_B(tag), 1};
    amqp_send_method(c, ch, AMQP_BASIC_CANCEL_METHOD, &m);
}

static void test_cancel(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for basic.cancel");
    if (!c) return;
    char q[256];
    mh_anon_queue(c, false, q, sizeof q);
    mh_rpc(c, 1, consume(c, 1, q, "c1", 1, 0, amqp_empty_table), "consumer c1");
    amqp_basic_cancel_ok_t *r = amqp_basic_cancel(c, 1, MH_B("c1"));
    ok(r && mh_bytes_eq(r->consumer_tag, "c1"), "basic.cancel: cancel-ok names c1");
    fill(c, q, 1, 1);
    seen_t s;
    collect(c, 200, &s);
    ok(s.n == 0 && mh_count(c, 1, q, NULL) == 1, "a cancelled consumer gets nothing (%d)", s.n);
    mh_get_all(c, 1, q, NULL, 0);

    mh_rpc(c, 1, consume(c, 1, q, "c2", 1, 0, amqp_empty_table), "consumer c2");
    send_cancel_nowait(c, 1, "c2");
    fill(c, q, 2, 1);
    collect(c, 200, &s);
    ok(s.n == 0 && s.others == 0, "basic.cancel nowait: no cancel-ok and no deliveries (%d, %d)",
       s.n, s.others);
    ok(mh_count(c, 1, q, NULL) == 1, "the message stays in the queue");

    r = amqp_basic_cancel(c, 1, MH_B("never-was"));
    ok(r && mh_bytes_eq(r->consumer_tag, "never-was"),
       "basic.cancel of an unknown tag: cancel-ok, not an error");
    ok(mh_sync(c, 1), "the channel is still open");
    mh_close(c);
}

static void test_get(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for basic.get");
    if (!c) return;
    char q[256];
    mh_anon_queue(c, false, q, sizeof q);
    mh_event_t ev;
    mh_kind_t k = mh_get(c, 1, q, false, &ev);
    ok(k == MH_GET_EMPTY, "basic.get on an empty queue: get-empty (got %s)", mh_kind_name(k));
    mh_event_free(&ev);
    fill(c, q, 1, 3);
    for (int i = 1; i <= 3; i++) {
        k = mh_get(c, 1, q, false, &ev);
        char want[8];
        snprintf(want, sizeof want, "%d", i);
        ok(k == MH_GET_OK && mh_bytes_eq(ev.msg.body, want) && ev.delivery_tag == (uint64_t)i &&
               ev.message_count == (uint32_t)(3 - i) && !ev.redelivered,
           "get %d: body '%s', delivery tag %d, message-count %d (got tag %llu, count %u)", i, want,
           i, 3 - i, (unsigned long long)ev.delivery_tag, ev.message_count);
        mh_event_free(&ev);
    }
    k = mh_get(c, 1, q, false, &ev);
    ok(k == MH_GET_EMPTY, "then get-empty (got %s)", mh_kind_name(k));
    mh_event_free(&ev);

    /* Tags are per channel and shared by get and deliver. */
    fill(c, q, 4, 2);
    mh_rpc(c, 1, consume(c, 1, q, "after-get", 0, 0, amqp_empty_table), "consume after the gets");
    seen_t s;
    collect(c, 200, &s);
    ok(s.n == 2 && s.tag[0] == 4 && s.tag[1] == 5,
       "the consumer's delivery tags continue after the gets' (4, 5; got %d: %llu, %llu)", s.n,
       (unsigned long long)s.tag[0], (unsigned long long)s.tag[1]);
    mh_channel_open(c, 2);
    fill(c, q, 6, 1);
    k = mh_get(c, 2, q, true, &ev);
    ok(k == MH_GET_EMPTY, "the consumer took the new message before a get on channel 2 (%s)",
       mh_kind_name(k));
    mh_event_free(&ev);
    collect(c, 200, &s);
    amqp_basic_cancel(c, 1, MH_B("after-get"));
    fill(c, q, 7, 1);
    k = mh_get(c, 2, q, true, &ev);
    ok(k == MH_GET_OK && ev.delivery_tag == 1, "channel 2 numbers its own deliveries from 1 (%llu)",
       (unsigned long long)ev.delivery_tag);
    mh_event_free(&ev);
    mh_close(c);
}

static void test_round_robin(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for competing consumers");
    if (!c) return;
    char q[256], got[128];
    mh_anon_queue(c, false, q, sizeof q);
    mh_channel_open(c, 2);
    mh_channel_open(c, 3);
    mh_rpc(c, 2, consume(c, 2, q, "a", 1, 0, amqp_empty_table), "consumer a on channel 2");
    mh_rpc(c, 3, consume(c, 3, q, "b", 1, 0, amqp_empty_table), "consumer b on channel 3");
    fill(c, q, 1, 6);
    seen_t s;
    collect(c, 200, &s);
    ok(s.n == 6, "6 messages delivered (%d)", s.n);
    bodies_on(&s, 2, got, sizeof got);
    ok(strcmp(got, "1,3,5") == 0, "consumer a gets 1,3,5 (got %s)", got);
    bodies_on(&s, 3, got, sizeof got);
    ok(strcmp(got, "2,4,6") == 0, "consumer b gets 2,4,6 (got %s)", got);
    mh_close(c);
}

static void test_prefetch(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for prefetch");
    if (!c) return;
    char q1[256], q2[256], got[128];
    mh_anon_queue(c, false, q1, sizeof q1);
    mh_anon_queue(c, false, q2, sizeof q2);
    fill(c, q1, 1, 10);
    fill(c, q2, 101, 10);

    /* Per consumer: each consumer on the channel may hold 3. */
    mh_channel_open(c, 2);
    mh_rpc(c, 2, amqp_basic_qos(c, 2, 0, 3, 0), "basic.qos prefetch 3, global=false");
    mh_rpc(c, 2, consume(c, 2, q1, "p1", 0, 0, amqp_empty_table), "consumer p1");
    mh_rpc(c, 2, consume(c, 2, q2, "p2", 0, 0, amqp_empty_table), "consumer p2");
    seen_t s;
    collect(c, 200, &s);
    int n1 = 0, n2 = 0;
    for (int i = 0; i < s.n; i++) {
        n1 += strcmp(s.consumer[i], "p1") == 0;
        n2 += strcmp(s.consumer[i], "p2") == 0;
    }
    ok(s.n == 6 && n1 == 3 && n2 == 3,
       "per-consumer prefetch 3: 3 deliveries each before acks (p1 %d, p2 %d)", n1, n2);
    uint64_t first_p1 = 0;
    for (int i = 0; i < s.n && !first_p1; i++)
        if (strcmp(s.consumer[i], "p1") == 0) first_p1 = s.tag[i];
    amqp_basic_ack(c, 2, first_p1, 0);
    collect(c, 200, &s);
    ok(s.n == 1 && strcmp(s.consumer[0], "p1") == 0,
       "acking one of p1's brings exactly one more, to p1 (%d, '%s')", s.n, s.consumer[0]);
    amqp_channel_close(c, 2, AMQP_REPLY_SUCCESS);

    /* Per channel: all consumers on the channel share 4. */
    mh_channel_open(c, 3);
    mh_rpc(c, 3, amqp_basic_qos(c, 3, 0, 4, 1), "basic.qos prefetch 4, global=true");
    mh_rpc(c, 3, consume(c, 3, q1, "g1", 0, 0, amqp_empty_table), "consumer g1");
    mh_rpc(c, 3, consume(c, 3, q2, "g2", 0, 0, amqp_empty_table), "consumer g2");
    collect(c, 200, &s);
    ok(s.n == 4, "per-channel prefetch 4: 4 deliveries in all before acks (%d)", s.n);
    amqp_basic_ack(c, 3, s.tag[0], 0);
    amqp_basic_ack(c, 3, s.tag[1], 0);
    collect(c, 200, &s);
    ok(s.n == 2, "acking two brings exactly two more (%d)", s.n);
    amqp_basic_ack(c, 3, 0, 1);
    collect(c, 200, &s);
    ok(s.n == 4, "acking all (tag 0, multiple) brings 4 more (%d)", s.n);
    amqp_channel_close(c, 3, AMQP_REPLY_SUCCESS);

    /* Both: consumers limited to 2 each, the channel to 3. */
    mh_channel_open(c, 4);
    mh_rpc(c, 4, amqp_basic_qos(c, 4, 0, 2, 0), "basic.qos prefetch 2, global=false");
    mh_rpc(c, 4, amqp_basic_qos(c, 4, 0, 3, 1), "basic.qos prefetch 3, global=true");
    mh_rpc(c, 4, consume(c, 4, q1, "b1", 0, 0, amqp_empty_table), "consumer b1");
    collect(c, 200, &s);
    ok(s.n == 2, "the first consumer stops at its own limit of 2 (%d)", s.n);
    mh_rpc(c, 4, consume(c, 4, q2, "b2", 0, 0, amqp_empty_table), "consumer b2");
    collect(c, 200, &s);
    ok(s.n == 1 && strcmp(s.consumer[0], "b2") == 0,
       "the second consumer stops at the channel's limit of 3 (%d more)", s.n);
    amqp_channel_close(c, 4, AMQP_REPLY_SUCCESS);

    /* No-ack consumers are not limited by prefetch. */
    int ready = mh_count(c, 1, q1, NULL);
    mh_channel_open(c, 5);
    mh_rpc(c, 5, amqp_basic_qos(c, 5, 0, 1, 0), "basic.qos prefetch 1 for a no-ack consumer");
    mh_rpc(c, 5, consume(c, 5, q1, "free", 1, 0, amqp_empty_table), "no-ack consumer");
    collect(c, 200, &s);
    ok(s.n == ready && ready > 1, "prefetch does not limit a no-ack consumer (%d of %d)", s.n,
       ready);
    bodies_on(&s, 5, got, sizeof got);
    diag("no-ack consumer got %s", got);
    mh_close(c);
}

static void test_priorities(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for consumer priorities");
    if (!c) return;
    char q[256], got[128];
    mh_anon_queue(c, false, q, sizeof q);
    amqp_table_entry_t hi = {MH_B("x-priority"), {AMQP_FIELD_KIND_I32, {.i32 = 10}}};
    amqp_table_entry_t lo = {MH_B("x-priority"), {AMQP_FIELD_KIND_I32, {.i32 = 1}}};
    mh_channel_open(c, 2);
    mh_channel_open(c, 3);
    amqp_basic_qos(c, 2, 0, 10, 0);
    amqp_basic_qos(c, 3, 0, 2, 0);
    mh_rpc(c, 2, consume(c, 2, q, "low", 0, 0, (amqp_table_t){1, &lo}),
           "consumer with x-priority 1, prefetch 10");
    mh_rpc(c, 3, consume(c, 3, q, "high", 0, 0, (amqp_table_t){1, &hi}),
           "consumer with x-priority 10, prefetch 2");
    fill(c, q, 1, 6);
    seen_t s;
    collect(c, 200, &s);
    bodies_on(&s, 3, got, sizeof got);
    ok(strcmp(got, "1,2") == 0, "the high-priority consumer gets the first 2 (got %s)", got);
    bodies_on(&s, 2, got, sizeof got);
    ok(strcmp(got, "3,4,5,6") == 0, "the low-priority one gets the rest once it is full (got %s)",
       got);
    amqp_basic_ack(c, 3, 0, 1);
    fill(c, q, 7, 3);
    collect(c, 200, &s);
    bodies_on(&s, 3, got, sizeof got);
    ok(strcmp(got, "7,8") == 0, "after its acks, the high-priority consumer gets 7,8 (got %s)",
       got);
    bodies_on(&s, 2, got, sizeof got);
    ok(strcmp(got, "9") == 0, "and the low-priority one 9 (got %s)", got);
    ok(count_on(&s, 2) + count_on(&s, 3) == 3, "nothing else arrives");
    mh_close(c);
}

int main(void) {
    wt_broker_t b;
    wt_init(60);
    if (!wt_broker_start(&b, NULL)) return tap_done();
    test_tags(&b);
    test_no_ack_and_exclusive(&b);
    test_cancel(&b);
    test_get(&b);
    test_round_robin(&b);
    test_prefetch(&b);
    test_priorities(&b);
    ok(wt_broker_stop(&b) == 0, "broker exits 0 after SIGTERM");
    return tap_done();
}
