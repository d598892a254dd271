/*
 * perf_producer.c - a producer thread: one connection, publishing to the
 * run's exchange as fast as allowed (by -r, the confirm window -c, -C and
 * connection.blocked) until the main thread says stop.
 *
 * A message's frames (basic.publish, content header, body) are the same for
 * every message but for the 16 bytes of timestamp and sequence number at
 * the start of the body. So the batch buffer is laid out once with as many
 * copies as fit in 64 KiB, and a batch only stamps those bytes and writes a
 * prefix of the buffer: about one system call per thousand small messages.
 *
 * The socket is driven with poll() for both directions, so the thread never
 * sits in a blocking write while confirms or a connection.close wait to be
 * read.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "perf_conn.h"
#include "perf_run.h"

#define PRODUCER_BATCH_BYTES (64u * 1024)
#define PRODUCER_POLL_MS     100
#define PRODUCER_SEQ_BITS    48 /* a body's sequence: producer index << 48 | number */

typedef struct producer {
    perf_producer_t *p;
    perf_run_t *run;
    const perf_opts_t *o;
    perf_conn_t conn;
    uint8_t *buf;       /* batch_max copies of one message's frames */
    size_t msg_len;     /* bytes of one message */
    size_t body_at;     /* offset of the body within a message */
    uint32_t batch_max; /* messages in buf */
    size_t out_off;     /* bytes of the current batch written */
    size_t out_len;     /* bytes of the current batch */
    uint32_t out_count; /* messages in the current batch */
    uint64_t placed;    /* messages put into batches; also the last publish tag */
    uint64_t sent;      /* messages whose batch was fully written */
    uint64_t low_tag;   /* lowest publish tag not yet confirmed */
    uint8_t *acked;     /* ring over [low_tag, placed]: confirmed out of order */
    uint64_t confirmed;
    uint64_t nacked;
    uint64_t start_ns;
} producer_t;

/* ---- the batch buffer --------------------------------------------------- */

/* One message's frames into out; returns the length, or 0 if cap is short. */
static size_t producer_encode(producer_t *pr, uint8_t *out, size_t cap) {
    const perf_opts_t *o = pr->o;
    wn_method_t pub = {.id = WN_BASIC_PUBLISH};
    pub.u.basic_publish.exchange = wn_cstr(o->exchange);
    pub.u.basic_publish.routing_key = wn_cstr(o->routing_key);
    size_t n = wn_frame_encode_method(out, cap, PERF_CHANNEL, &pub);
    wn_content_header_t h = {.class_id = WN_CLASS_BASIC, .body_size = o->size};
    h.props.flags = WN_BASIC_DELIVERY_MODE_FLAG;
    h.props.delivery_mode = o->persistent ? 2 : 1;
    size_t hn = n ? wn_frame_encode_header(out + n, cap - n, PERF_CHANNEL, &h) : 0;
    if (hn == 0) return 0;
    n += hn;
    pr->body_at = n + WN_FRAME_HEADER_SIZE;
    uint32_t chunk_max = pr->conn.frame_max - WN_FRAME_OVERHEAD;
    for (uint32_t off = 0; off < o->size;) {
        uint32_t chunk = o->size - off < chunk_max ? o->size - off : chunk_max;
        if (cap - n < chunk + WN_FRAME_OVERHEAD) return 0;
        wn_frame_header_write(out + n, WN_FRAME_BODY, PERF_CHANNEL, chunk);
        memset(out + n + WN_FRAME_HEADER_SIZE, 0, chunk);
        out[n + WN_FRAME_HEADER_SIZE + chunk] = WN_FRAME_END;
        n += chunk + WN_FRAME_OVERHEAD;
        off += chunk;
    }
    return n;
}

static int producer_prepare(producer_t *pr) {
    size_t chunks = pr->o->size / (pr->conn.frame_max - WN_FRAME_OVERHEAD) + 1;
    size_t cap = 2048 + pr->o->size + chunks * WN_FRAME_OVERHEAD;
    uint8_t *one = malloc(cap);
    pr->msg_len = one ? producer_encode(pr, one, cap) : 0;
    if (pr->msg_len == 0) {
        free(one);
        return perf_conn_fail(&pr->conn, "cannot build the message frames");
    }
    pr->batch_max = PRODUCER_BATCH_BYTES / pr->msg_len;
    if (pr->batch_max == 0) pr->batch_max = 1;
    pr->buf = malloc(pr->batch_max * pr->msg_len);
    pr->acked = calloc(pr->o->confirm ? pr->o->confirm : 1, 1);
    if (pr->buf)
        for (uint32_t i = 0; i < pr->batch_max; i++)
            memcpy(pr->buf + i * pr->msg_len, one, pr->msg_len);
    free(one);
    return pr->buf && pr->acked ? 0 : perf_conn_fail(&pr->conn, "out of memory");
}

/* Write the send time and the sequence number into the next n messages. */
static void producer_stage(producer_t *pr, uint32_t n) {
    if (pr->o->size >= 16) {
        uint64_t now = perf_now_ns();
        uint64_t seq = (uint64_t)pr->p->index << PRODUCER_SEQ_BITS | pr->placed;
        for (uint32_t i = 0; i < n; i++) {
            uint8_t *body = pr->buf + i * pr->msg_len + pr->body_at;
            wn_store64(body, now);
            wn_store64(body + 8, seq + i + 1);
        }
    }
    pr->placed += n;
    pr->out_off = 0;
    pr->out_len = n * pr->msg_len;
    pr->out_count = n;
}

/* ---- how much to publish next ------------------------------------------- */

static uint64_t min_u64(uint64_t a, uint64_t b) {
    return a < b ? a : b;
}

/* Messages the rate allows now; if none, *wait_ms until the next one. A
 * producer that fell behind (blocked, or a slow broker) catches up by at
 * most 100 ms worth, so a pause is not followed by a burst. */
static uint64_t producer_rate_room(producer_t *pr, int *wait_ms) {
    double rate = pr->o->rate;
    double elapsed = (double)(perf_now_ns() - pr->start_ns) / 1e9;
    double room = rate * elapsed + 1 - (double)pr->placed; /* the first goes at once */
    double most = rate / 10 + 1;
    if (room > most) {
        pr->start_ns += (uint64_t)((room - most) / rate * 1e9);
        room = most;
    }
    /* Whole milliseconds' worth per write: waking for every confirm to
     * send one message would cost a system call or two per message. */
    double least = rate / 1000 < 1 ? 1 : rate / 1000;
    if (room >= least) return (uint64_t)room;
    double wait = (least - room) / rate * 1000;
    *wait_ms = wait < 1 ? 1 : wait > PRODUCER_POLL_MS ? PRODUCER_POLL_MS : (int)wait;
    return 0;
}

static uint32_t producer_batch(producer_t *pr, int *wait_ms) {
    const perf_opts_t *o = pr->o;
    if (pr->conn.blocked) return 0;
    uint64_t n = pr->batch_max;
    if (o->count) n = min_u64(n, o->count - pr->placed);
    if (o->confirm) n = min_u64(n, o->confirm - (pr->placed + 1 - pr->low_tag));
    if (o->rate > 0 && n > 0) n = min_u64(n, producer_rate_room(pr, wait_ms));
    return (uint32_t)n;
}

static bool producer_finished(producer_t *pr) {
    if (atomic_load(&pr->run->stop_producing)) return true;
    return pr->o->count && pr->placed == pr->o->count;
}

/* ---- confirms ----------------------------------------------------------- */

static void producer_settle_one(producer_t *pr, bool nack) {
    if (nack)
        pr->nacked++;
    else
        pr->confirmed++;
}

static int producer_on_confirm(producer_t *pr, uint64_t tag, bool multiple, bool nack) {
    uint32_t window = pr->o->confirm;
    if (window == 0 || tag > pr->placed || (tag < pr->low_tag && !multiple) ||
        (!multiple && pr->acked[tag % window]))
        return perf_conn_fail(&pr->conn,
                              "the broker confirmed delivery tag %llu, which is not outstanding",
                              (unsigned long long)tag);
    if (!multiple) {
        pr->acked[tag % window] = 1;
        producer_settle_one(pr, nack);
    }
    /* Advance past everything confirmed: all tags up to `tag` if multiple. */
    while (pr->low_tag <= pr->placed &&
           (pr->acked[pr->low_tag % window] || (multiple && pr->low_tag <= tag))) {
        if (!pr->acked[pr->low_tag % window]) producer_settle_one(pr, nack);
        pr->acked[pr->low_tag % window] = 0;
        pr->low_tag++;
    }
    return 0;
}

/* ---- the socket --------------------------------------------------------- */

static int producer_frames(producer_t *pr) {
    wn_frame_t f;
    wn_method_t m;
    int rc;
    while ((rc = perf_conn_next(&pr->conn, &f)) == 1) {
        if (f.type != WN_FRAME_METHOD) continue; /* returned content: not mandatory, none */
        if (perf_conn_decode(&pr->conn, &f, &m) < 0) return -1;
        if (m.id == WN_BASIC_ACK)
            rc = producer_on_confirm(pr, m.u.basic_ack.delivery_tag, m.u.basic_ack.multiple, false);
        else if (m.id == WN_BASIC_NACK)
            rc =
                producer_on_confirm(pr, m.u.basic_nack.delivery_tag, m.u.basic_nack.multiple, true);
        else
            rc = perf_conn_control(&pr->conn, &m);
        if (rc < 0) return -1;
    }
    atomic_store_explicit(&pr->p->confirmed, pr->confirmed, memory_order_relaxed);
    atomic_store_explicit(&pr->p->nacked, pr->nacked, memory_order_relaxed);
    atomic_store_explicit(&pr->p->blocked, pr->conn.blocked, memory_order_relaxed);
    return rc;
}

static int producer_write(producer_t *pr) {
    ssize_t n = send(pr->conn.fd, pr->buf + pr->out_off, pr->out_len - pr->out_off,
                     MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n < 0) return perf_conn_fail(&pr->conn, "write to the broker failed: %s", strerror(errno));
    pr->out_off += (size_t)n;
    if (pr->out_off == pr->out_len && pr->out_count) {
        pr->sent += pr->out_count;
        pr->out_count = 0;
        atomic_store_explicit(&pr->p->sent, pr->sent, memory_order_relaxed);
    }
    return 0;
}

/* Wait up to timeout_ms for the socket; read what came, write what is due. */
static int producer_pump(producer_t *pr, int timeout_ms) {
    bool pending = pr->out_off < pr->out_len;
    struct pollfd pfd = {.fd = pr->conn.fd, .events = POLLIN | (pending ? POLLOUT : 0)};
    int rc = poll(&pfd, 1, timeout_ms);
    if (rc < 0 && errno != EINTR) return perf_conn_fail(&pr->conn, "poll: %s", strerror(errno));
    if (rc <= 0) return 0;
    if (pfd.revents & (POLLIN | POLLERR | POLLHUP)) {
        if (perf_conn_read(&pr->conn, 0) < 0 || producer_frames(pr) < 0) return -1;
    }
    if (pfd.revents & POLLOUT) return producer_write(pr);
    return 0;
}

/* A batch still unwritten long after the stop: the broker is not reading
 * (blocked, or stuck), and the run must end anyway. */
static bool producer_stuck(producer_t *pr, uint64_t *stop_seen) {
    if (!atomic_load(&pr->run->stop_producing)) return false;
    uint64_t now = perf_now_ns();
    if (*stop_seen == 0) *stop_seen = now;
    return now - *stop_seen > (uint64_t)(pr->o->drain * 1e9);
}

static int producer_loop(producer_t *pr) {
    uint64_t stop_seen = 0;
    while (!atomic_load(&pr->run->failed)) {
        int wait_ms = PRODUCER_POLL_MS;
        if (pr->out_off == pr->out_len) {
            if (producer_finished(pr)) return 0;
            uint32_t n = producer_batch(pr, &wait_ms);
            if (n) {
                producer_stage(pr, n);
                wait_ms = PRODUCER_POLL_MS;
            }
        } else if (producer_stuck(pr, &stop_seen)) {
            return perf_conn_fail(&pr->conn, "the broker took no data for %g s after the stop%s",
                                  pr->o->drain, pr->conn.blocked ? " (blocked)" : "");
        }
        if (producer_pump(pr, wait_ms) < 0) return -1;
    }
    return 0;
}

/* After the last publish: wait for the outstanding confirms, for --drain
 * seconds at most (the main thread reports any that never came). */
static int producer_settle(producer_t *pr) {
    uint64_t end = perf_now_ns() + (uint64_t)(pr->o->drain * 1e9);
    while (pr->o->confirm && pr->low_tag <= pr->placed && !atomic_load(&pr->run->failed) &&
           perf_now_ns() < end)
        if (producer_pump(pr, PRODUCER_POLL_MS) < 0) return -1;
    return 0;
}

static int producer_start(producer_t *pr, const char *name) {
    if (perf_conn_open(&pr->conn, &pr->o->uri, name) < 0) return -1;
    if (pr->o->confirm) {
        wn_method_t m = {.id = WN_CONFIRM_SELECT}, reply;
        if (perf_conn_rpc(&pr->conn, &m, WN_CONFIRM_SELECT_OK, &reply) < 0) return -1;
    }
    pr->low_tag = 1;
    pr->start_ns = perf_now_ns();
    return producer_prepare(pr);
}

void *perf_producer_main(void *arg) {
    perf_producer_t *p = arg;
    producer_t pr = {.p = p, .run = p->run, .o = p->run->opts, .conn = {.fd = -1}};
    char who[32], name[64];
    snprintf(who, sizeof who, "producer %u", p->index + 1);
    snprintf(name, sizeof name, "warren-perf %s", who);
    if (producer_start(&pr, name) < 0 || producer_loop(&pr) < 0 || producer_settle(&pr) < 0)
        perf_fail(p->run, who, "%s", pr.conn.error);
    perf_conn_close(&pr.conn);
    free(pr.buf);
    free(pr.acked);
    atomic_store(&p->done, true);
    return NULL;
}
