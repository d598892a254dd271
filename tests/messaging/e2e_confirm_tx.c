/*
 * e2e_confirm_tx.c - publisher confirms and transactions: confirm.select,
 * an ack covering every publish sequence number from 1 (multiple allowed),
 * basic.return before the ack of a mandatory unroutable message, sequence
 * numbers per channel, tx and confirm excluding each other (406); tx.select,
 * commit and rollback for publishes (routed only at commit) and for acks
 * (rolled back acks stay unacked), and tx.commit / tx.rollback outside a
 * transaction (406).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging/mhelp.h"

/* What confirms say about sequence numbers 1..n on one channel. RabbitMQ
 * acks an unroutable publish at once and a routed one when its queues have
 * it, so acks need not come in order; a multiple ack settles every
 * outstanding number up to its tag. */
typedef struct confirms {
    int acked[64]; /* times each seq was settled */
    int nacks, others, acks, multiples;
} confirms_t;

static bool all_settled(const confirms_t *cf, int n) {
    for (int s = 1; s <= n; s++)
        if (cf->acked[s] == 0) return false;
    return true;
}

/* Read events on channel ch until seq 1..n are all acked (or nacked), or
 * timeout_ms pass. Returns true if every seq was settled exactly once. */
static bool collect_confirms(amqp_connection_state_t c, amqp_channel_t ch, int n, int timeout_ms,
                             confirms_t *cf) {
    double deadline = wt_now_ms() + timeout_ms;
    memset(cf, 0, sizeof *cf);
    while (!all_settled(cf, n)) {
        double left = deadline - wt_now_ms();
        if (left <= 0) break;
        mh_event_t ev;
        mh_kind_t k = mh_next(c, (int)left, &ev);
        if (k == MH_TIMEOUT || k == MH_LOST) break;
        if (ev.channel == ch && (k == MH_ACK || k == MH_NACK)) {
            uint64_t tag = ev.delivery_tag < 64 ? ev.delivery_tag : 63;
            if (ev.multiple) {
                cf->multiples++;
                for (uint64_t s = 1; s <= tag; s++)
                    if (cf->acked[s] == 0) cf->acked[s] = 1;
            } else {
                cf->acked[tag]++;
            }
            if (k == MH_ACK)
                cf->acks++;
            else
                cf->nacks++;
        } else {
            diag("confirms: %s on channel %u", mh_kind_name(k), ev.channel);
            cf->others++;
        }
        mh_event_free(&ev);
    }
    bool once = true;
    for (int s = 1; s < 64; s++)
        once = once && cf->acked[s] == (s <= n);
    return once;
}

static void test_confirms(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for publisher confirms");
    if (!c) return;
    char q1[256], q2[256];
    mh_anon_queue(c, false, q1, sizeof q1);
    mh_anon_queue(c, false, q2, sizeof q2);
    const char *x = mh_name("x-confirm");
    amqp_exchange_declare(c, 1, MH_B(x), MH_B("fanout"), 0, 0, 0, 0, amqp_empty_table);
    amqp_queue_bind(c, 1, MH_B(q1), MH_B(x), amqp_empty_bytes, amqp_empty_table);
    amqp_queue_bind(c, 1, MH_B(q2), MH_B(x), amqp_empty_bytes, amqp_empty_table);
    mh_channel_open(c, 2);
    mh_rpc(c, 2, amqp_confirm_select(c, 2), "confirm.select: select-ok");
    mh_rpc(c, 2, amqp_confirm_select(c, 2), "confirm.select again: select-ok");

    /* 30 publishes of every kind: to a queue, to two queues, unroutable. */
    for (int i = 0; i < 30; i++) {
        switch (i % 3) {
        case 0:
            mh_publish(c, 2, "", q1, "direct", NULL);
            break;
        case 1:
            mh_publish(c, 2, x, "", "fanout", NULL);
            break;
        default:
            mh_publish(c, 2, "", mh_name("nowhere"), "dropped", NULL);
        }
    }
    confirms_t cf;
    bool all = collect_confirms(c, 2, 30, 3000, &cf);
    ok(all, "every sequence number 1..30 is acked exactly once, none beyond (%d acks)", cf.acks);
    ok(cf.nacks == 0 && cf.others == 0, "no nacks and nothing else (%d nacks, %d others)", cf.nacks,
       cf.others);
    diag("30 publishes confirmed by %d basic.ack, %d of them multiple", cf.acks, cf.multiples);
    ok(mh_count(c, 1, q1, NULL) == 20 && mh_count(c, 1, q2, NULL) == 10,
       "the confirmed messages are in their queues");

    /* A mandatory unroutable message: basic.return, then its ack. */
    mh_publish(c, 2, "", q1, "31", NULL);
    mh_publish_ex(c, 2, "", mh_name("nowhere"), true, false, MH_B("32"), NULL);
    mh_publish(c, 2, "", q1, "33", NULL);
    mh_event_t ev;
    int order_ok = 0, seen_return = 0;
    uint64_t acked = 30;
    while (acked < 33) {
        mh_kind_t k = mh_next(c, 2000, &ev);
        if (k == MH_RETURN) {
            seen_return = 1;
            order_ok = acked < 32;
        } else if (k == MH_ACK) {
            if (ev.delivery_tag >= 32 && !seen_return) order_ok = 0;
            acked = ev.delivery_tag > acked ? ev.delivery_tag : acked;
        } else {
            mh_event_free(&ev);
            break;
        }
        mh_event_free(&ev);
    }
    ok(seen_return && order_ok && acked == 33,
       "the basic.return of mandatory publish 32 comes before the ack covering 32 (acked to %llu)",
       (unsigned long long)acked);

    /* Sequence numbers are per channel. */
    mh_channel_open(c, 3);
    amqp_confirm_select(c, 3);
    mh_publish(c, 3, "", q1, "other-channel", NULL);
    mh_kind_t k = mh_wait(c, MH_ACK, 2000, &ev, NULL);
    ok(k == MH_ACK && ev.channel == 3 && ev.delivery_tag == 1,
       "another channel in confirm mode numbers from 1 (got %s %llu on %u)", mh_kind_name(k),
       (unsigned long long)ev.delivery_tag, ev.channel);
    mh_event_free(&ev);

    amqp_tx_select(c, 2);
    mh_expect_error(c, 2, MH_CHANNEL, 406,
                    "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
                    "tx.select on a channel in confirm mode");
    mh_channel_open(c, 4);
    mh_rpc(c, 4, amqp_tx_select(c, 4), "tx.select on a fresh channel");
    amqp_confirm_select(c, 4);
    mh_expect_error(c, 4, MH_CHANNEL, 406,
                    "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
                    "confirm.select on a transactional channel");
    mh_exchange_delete(c, 1, x);
    mh_close(c);
}

static void test_tx_publish(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for transactional publishes");
    if (!c) return;
    char q[256];
    mh_anon_queue(c, false, q, sizeof q);
    mh_channel_open(c, 2);
    mh_rpc(c, 2, amqp_tx_select(c, 2), "tx.select: select-ok");
    mh_rpc(c, 2, amqp_tx_select(c, 2), "tx.select again: select-ok");
    mh_publish(c, 2, "", q, "1", NULL);
    mh_publish(c, 2, "", q, "2", NULL);
    mh_sync(c, 2);
    ok(mh_count(c, 1, q, NULL) == 0, "uncommitted publishes are not routed");
    mh_rpc(c, 2, amqp_tx_commit(c, 2), "tx.commit: commit-ok");
    ok(mh_count(c, 1, q, NULL) == 2, "after commit both are in the queue");
    mh_publish(c, 2, "", q, "3", NULL);
    mh_rpc(c, 2, amqp_tx_rollback(c, 2), "tx.rollback: rollback-ok");
    mh_rpc(c, 2, amqp_tx_commit(c, 2), "tx.commit after the rollback");
    ok(mh_count(c, 1, q, NULL) == 2, "the rolled back publish is discarded");
    mh_publish(c, 2, "", q, "4", NULL);
    mh_rpc(c, 2, amqp_tx_commit(c, 2), "the channel stays transactional: commit");
    char got[64];
    mh_get_all(c, 1, q, got, sizeof got);
    ok(strcmp(got, "1,2,4") == 0, "the queue holds 1,2,4 (got %s)", got);

    /* A mandatory unroutable publish is returned when committed. */
    mh_publish_ex(c, 2, "", mh_name("nowhere"), true, false, MH_B("tx-return"), NULL);
    mh_sync(c, 2);
    mh_event_t ev;
    mh_kind_t k = mh_next(c, 300, &ev);
    ok(k == MH_TIMEOUT, "no basic.return before the commit (got %s)", mh_kind_name(k));
    mh_event_free(&ev);
    mh_rpc(c, 2, amqp_tx_commit(c, 2), "commit the mandatory publish");
    k = mh_wait(c, MH_RETURN, 2000, &ev, NULL);
    ok(k == MH_RETURN && ev.reply_code == 312 && ev.has_msg &&
           mh_bytes_eq(ev.msg.body, "tx-return"),
       "the commit returns it with 312 (got %s %d)", mh_kind_name(k), ev.reply_code);
    mh_event_free(&ev);

    /* Closing a channel drops its uncommitted publishes. */
    mh_publish(c, 2, "", q, "5", NULL);
    amqp_channel_close(c, 2, AMQP_REPLY_SUCCESS);
    ok(mh_count(c, 1, q, NULL) == 0, "closing the channel discards an uncommitted publish");

    amqp_tx_commit(c, 1);
    mh_expect_error(c, 1, MH_CHANNEL, 406, "PRECONDITION_FAILED - channel is not transactional",
                    "tx.commit without tx.select");
    amqp_tx_rollback(c, 1);
    mh_expect_error(c, 1, MH_CHANNEL, 406, "PRECONDITION_FAILED - channel is not transactional",
                    "tx.rollback without tx.select");
    mh_close(c);
}

static void test_tx_acks(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for transactional acks");
    if (!c) return;
    char q[256];
    mh_anon_queue(c, false, q, sizeof q);
    for (int i = 1; i <= 3; i++) {
        char body[8];
        snprintf(body, sizeof body, "%d", i);
        mh_publish(c, 1, "", q, body, NULL);
    }
    mh_sync(c, 1);
    mh_channel_open(c, 2);
    mh_rpc(c, 2, amqp_tx_select(c, 2), "tx.select");
    mh_event_t ev;
    int n = 0;
    for (int i = 0; i < 3; i++) {
        n += mh_get(c, 2, q, false, &ev) == MH_GET_OK;
        mh_event_free(&ev);
    }
    ok(n == 3, "get 3 unacked on the transactional channel");
    amqp_basic_ack(c, 2, 1, 0);
    amqp_basic_ack(c, 2, 2, 0);
    mh_rpc(c, 2, amqp_tx_rollback(c, 2), "ack 1 and 2, then tx.rollback");
    /* Rolled back acks leave the messages unacked: acking them again works. */
    amqp_basic_ack(c, 2, 1, 0);
    mh_rpc(c, 2, amqp_tx_commit(c, 2), "ack 1 again and commit (the tag is still valid)");
    amqp_basic_reject(c, 2, 3, 1);
    mh_rpc(c, 2, amqp_tx_rollback(c, 2), "reject 3 with requeue, then roll back");
    ok(mh_count(c, 1, q, NULL) == 0, "nothing was requeued by the rolled back reject");
    amqp_channel_close(c, 2, AMQP_REPLY_SUCCESS);
    char got[64];
    mh_get_all(c, 1, q, got, sizeof got);
    ok(strcmp(got, "2,3") == 0,
       "closing the channel returns 2 and 3, whose acks were rolled back (got %s)", got);
    mh_close(c);
}

int main(void) {
    wt_broker_t b;
    wt_init(60);
    if (!wt_broker_start(&b, NULL)) return tap_done();
    test_confirms(&b);
    test_tx_publish(&b);
    test_tx_acks(&b);
    ok(wt_broker_stop(&b) == 0, "broker exits 0 after SIGTERM");
    return tap_done();
}
