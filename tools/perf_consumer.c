/*
 * perf_consumer.c - a consumer thread: one connection consuming one of the
 * run's queues, counting whole messages, measuring latency from the send
 * time in each body, checking each producer's sequence numbers, and
 * acknowledging every -a messages with multiple=true (or not at all).
 *
 * Each read takes whatever the socket holds (up to the buffer, 256 KiB or
 * more), all complete frames in it are handled where they lie, and the acks
 * they caused go out in one write. Reading the clock once per read is
 * precise enough for latency and keeps the per-message cost to a few loads.
 *
 * The acks are written with a blocking write. That cannot deadlock against
 * a broker that stops reading us while we do not read it: one read's worth
 * of acks is a few kilobytes, far below what the socket buffers hold.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "perf_conn.h"
#include "perf_run.h"

#define CONSUMER_POLL_MS  100
#define CONSUMER_SEQ_BITS 48 /* see perf_producer.c */
#define CONSUMER_ACK_BUF  8192

typedef struct consumer {
    perf_consumer_t *cn;
    perf_run_t *run;
    const perf_opts_t *o;
    perf_conn_t conn;
    uint64_t tag;       /* delivery tag of the message being read */
    bool redelivered;   /* ... and its redelivered flag */
    bool want_header;   /* a basic.deliver came; its content header is next */
    uint64_t body_size; /* of the message being read */
    uint64_t body_left; /* its body bytes still to come */
    uint64_t unacked;   /* messages since the last ack */
    uint64_t received;
    uint64_t reordered;
    uint64_t now_ns;    /* when the current read returned */
    uint64_t *last_seq; /* per producer: the highest sequence number seen */
    uint8_t acks[CONSUMER_ACK_BUF];
    size_t acks_len;
} consumer_t;

/* ---- acks --------------------------------------------------------------- */

static int consumer_flush(consumer_t *cs) {
    if (cs->acks_len == 0) return 0;
    int rc = perf_conn_write(&cs->conn, cs->acks, cs->acks_len);
    cs->acks_len = 0;
    return rc;
}

static int consumer_ack(consumer_t *cs) {
    if (CONSUMER_ACK_BUF - cs->acks_len < 64 && consumer_flush(cs) < 0) return -1;
    wn_method_t m = {.id = WN_BASIC_ACK};
    m.u.basic_ack.delivery_tag = cs->tag;
    m.u.basic_ack.multiple = true;
    cs->acks_len += wn_frame_encode_method(cs->acks + cs->acks_len, CONSUMER_ACK_BUF - cs->acks_len,
                                           PERF_CHANNEL, &m);
    cs->unacked = 0;
    return 0;
}

/* ---- one message -------------------------------------------------------- */

static int consumer_message_done(consumer_t *cs) {
    cs->received++;
    if (cs->o->ack_every == 0) return 0;
    return ++cs->unacked >= cs->o->ack_every ? consumer_ack(cs) : 0;
}

/* The first 16 body bytes: send time, then producer index << 48 | number. */
static void consumer_stamp(consumer_t *cs, const uint8_t *body) {
    uint64_t sent_ns = wn_load64(body), seq = wn_load64(body + 8);
    perf_hist_live_record(&cs->cn->latency, cs->now_ns > sent_ns ? cs->now_ns - sent_ns : 0);
    uint64_t producer = seq >> CONSUMER_SEQ_BITS;
    uint64_t number = seq & ((1ull << CONSUMER_SEQ_BITS) - 1);
    if (producer >= cs->o->producers) return; /* not one of ours */
    if (number <= cs->last_seq[producer] && !cs->redelivered) cs->reordered++;
    if (number > cs->last_seq[producer]) cs->last_seq[producer] = number;
}

static int consumer_method(consumer_t *cs, const wn_frame_t *f) {
    wn_method_t m;
    if (perf_conn_decode(&cs->conn, f, &m) < 0) return -1;
    if (m.id != WN_BASIC_DELIVER) return perf_conn_control(&cs->conn, &m) < 0 ? -1 : 0;
    if (cs->want_header || cs->body_left)
        return perf_conn_fail(&cs->conn, "basic.deliver in the middle of a message");
    cs->tag = m.u.basic_deliver.delivery_tag;
    cs->redelivered = m.u.basic_deliver.redelivered;
    cs->want_header = true;
    return 0;
}

/* Content header payload: class (2), weight (2), body size (8), flags... */
static int consumer_header(consumer_t *cs, const wn_frame_t *f) {
    if (!cs->want_header || f->size < 14)
        return perf_conn_fail(&cs->conn, "unexpected content header from the broker");
    cs->want_header = false;
    cs->body_size = cs->body_left = wn_load64(f->payload + 4);
    return cs->body_size == 0 ? consumer_message_done(cs) : 0;
}

static int consumer_body(consumer_t *cs, const wn_frame_t *f) {
    if (f->size > cs->body_left)
        return perf_conn_fail(&cs->conn, "body frame beyond the announced body size");
    if (cs->body_left == cs->body_size && cs->body_size >= 16 && f->size >= 16)
        consumer_stamp(cs, f->payload);
    cs->body_left -= f->size;
    return cs->body_left == 0 ? consumer_message_done(cs) : 0;
}

static int consumer_frame(consumer_t *cs, const wn_frame_t *f) {
    switch (f->type) {
    case WN_FRAME_METHOD:
        return consumer_method(cs, f);
    case WN_FRAME_HEADER:
        return consumer_header(cs, f);
    case WN_FRAME_BODY:
        return consumer_body(cs, f);
    }
    return 0; /* heartbeat */
}

/* ---- the loop ----------------------------------------------------------- */

static int consumer_loop(consumer_t *cs) {
    while (!atomic_load(&cs->run->stop_consuming) && !atomic_load(&cs->run->failed)) {
        if (perf_conn_read(&cs->conn, CONSUMER_POLL_MS) < 0) return -1;
        cs->now_ns = perf_now_ns();
        wn_frame_t f;
        int rc;
        while ((rc = perf_conn_next(&cs->conn, &f)) == 1)
            if (consumer_frame(cs, &f) < 0) return -1;
        atomic_store_explicit(&cs->cn->received, cs->received, memory_order_relaxed);
        atomic_store_explicit(&cs->cn->reordered, cs->reordered, memory_order_relaxed);
        if (rc < 0 || consumer_flush(cs) < 0) return -1;
    }
    /* Acknowledge the tail, so the broker has nothing to requeue. */
    if (cs->unacked && consumer_ack(cs) < 0) return -1;
    return consumer_flush(cs);
}

static int consumer_start(consumer_t *cs, const char *name) {
    cs->last_seq = calloc(cs->o->producers ? cs->o->producers : 1, sizeof *cs->last_seq);
    if (!cs->last_seq) return perf_conn_fail(&cs->conn, "out of memory");
    if (perf_conn_open(&cs->conn, &cs->o->uri, name) < 0) return -1;
    wn_method_t m, reply;
    if (cs->o->prefetch) {
        m = (wn_method_t){.id = WN_BASIC_QOS};
        m.u.basic_qos.prefetch_count = cs->o->prefetch;
        if (perf_conn_rpc(&cs->conn, &m, WN_BASIC_QOS_OK, &reply) < 0) return -1;
    }
    char queue[96], tag[64];
    perf_queue_name(queue, sizeof queue, cs->o, cs->cn->queue);
    snprintf(tag, sizeof tag, "warren-perf-%u", cs->cn->index + 1);
    m = (wn_method_t){.id = WN_BASIC_CONSUME};
    m.u.basic_consume.queue = wn_cstr(queue);
    m.u.basic_consume.consumer_tag = wn_cstr(tag);
    m.u.basic_consume.no_ack = cs->o->ack_every == 0;
    return perf_conn_rpc(&cs->conn, &m, WN_BASIC_CONSUME_OK, &reply);
}

void *perf_consumer_main(void *arg) {
    perf_consumer_t *cn = arg;
    consumer_t *cs = calloc(1, sizeof *cs);
    char who[32], name[64];
    snprintf(who, sizeof who, "consumer %u", cn->index + 1);
    snprintf(name, sizeof name, "warren-perf %s", who);
    if (!cs) {
        perf_fail(cn->run, who, "out of memory");
        atomic_store(&cn->ready, true);
        return NULL;
    }
    *cs = (consumer_t){.cn = cn, .run = cn->run, .o = cn->run->opts, .conn = {.fd = -1}};
    if (consumer_start(cs, name) < 0) {
        perf_fail(cn->run, who, "%s", cs->conn.error);
    } else {
        atomic_store(&cn->ready, true);
        if (consumer_loop(cs) < 0) perf_fail(cn->run, who, "%s", cs->conn.error);
    }
    atomic_store(&cn->ready, true);
    perf_conn_close(&cs->conn);
    free(cs->last_seq);
    free(cs);
    return NULL;
}
