/*
 * store.c - message segments: writing, reading back, deleting, recovering
 * (see store.h and docs/journal.md).
 *
 * Owns the files under data_dir/msgs and the write buffer. Runs on the loop
 * thread only; fdatasync happens on the syncer's thread, which reports back
 * through store_synced.
 */
#include "store.h"
#include "alarm.h"
#include "broker.h"
#include "connection.h"
#include "consumer.h"
#include "log.h"
#include "publish.h"
#include "record.h"
#include "syncer.h"
#include "vhost.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { REC_MSG = 1, REC_ACK = 2, REC_DELIVERED = 3, REC_MOVED = 4 };

/* A MOVED record's fields before the MSG-like rest: order place, from place. */
#define MOVED_PREFIX 16

#define STORE_MAX_RECORD (1u << 30)
#define STORE_FLUSH_AT   (4u << 20)  /* write the buffer out once it holds this much */
#define STORE_RETRY      1.0         /* seconds between attempts after a failed write */
#define COMPACT_INTERVAL 1.0         /* seconds between compactions */
#define COMPACT_MAX      (64u << 20) /* live bytes copied by one compaction */

typedef struct store_pending {
    uint64_t flush, ticket;
} store_pending_t;

static void compact(store_t *s);

/* ---- segments ------------------------------------------------------------------ */

static segment_t *seg_find(store_t *s, uint32_t no) {
    uint32_t lo = 0, hi = s->nsegs;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (s->segs[mid].no < no)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->nsegs && s->segs[lo].no == no ? &s->segs[lo] : NULL;
}

static segment_t *seg_current(store_t *s) {
    return s->nsegs ? &s->segs[s->nsegs - 1] : NULL;
}

static void seg_path(const store_t *s, uint32_t no, char *out, size_t len) {
    snprintf(out, len, "%s/%08" PRIu32 ".seg", s->dir, no);
}

/* Append a segment to the table (numbers only grow). */
static segment_t *seg_add(store_t *s, uint32_t no, int fd, uint64_t size) {
    if (s->nsegs == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 16;
        segment_t *segs = realloc(s->segs, cap * sizeof *segs);
        if (!segs) return NULL;
        s->segs = segs;
        s->cap = cap;
    }
    segment_t *g = &s->segs[s->nsegs++];
    *g = (segment_t){.no = no, .fd = fd, .size = size, .live = 0, .min_ref = no};
    if (no >= s->next_no) s->next_no = no + 1;
    return g;
}

/* Start a new segment to write to. */
static segment_t *seg_create(store_t *s) {
    char path[4096];
    uint32_t no = s->next_no;
    seg_path(s, no, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        log_error("cannot create %s: %s", path, strerror(errno));
        return NULL;
    }
    segment_t *g = seg_add(s, no, fd, 0);
    if (!g) close(fd);
    s->cur_written = 0;
    s->dir_dirty = true;
    return g;
}

/* A segment may go once none of its messages is in a queue and no older
 * segment its ACK/DELIVERED records refer to is left (or those messages
 * would come back at the next recovery). The one being written stays. */
static void seg_collect(store_t *s) {
    char path[4096];
    s->collect_due = false;
    for (uint32_t i = 0; i + 1 < s->nsegs;) {
        segment_t *g = &s->segs[i];
        bool older_needed = i > 0 && s->segs[i - 1].no >= g->min_ref;
        bool copy_pending = g->moved_flush > s->durable_flush;
        if (g->live > 0 || older_needed || copy_pending) {
            i++;
            continue;
        }
        seg_path(s, g->no, path, sizeof path);
        if (unlink(path) < 0) log_warning("cannot delete %s: %s", path, strerror(errno));
        close(g->fd);
        memmove(g, g + 1, (s->nsegs - i - 1) * sizeof *g);
        s->nsegs--;
        /* The next one may have waited for this one: look at it again. */
    }
}

/* ---- writing ---------------------------------------------------------------------- */

static void store_notify(store_t *s, uint64_t durable) {
    if (durable <= s->durable_flush) return;
    s->durable_flush = durable;
    s->collect_due = true; /* compacted segments may go now */
    publish_durable(durable);
}

static void pending_push(store_t *s, uint64_t flush, uint64_t ticket) {
    if (s->npending == s->pending_cap) {
        uint32_t cap = s->pending_cap ? s->pending_cap * 2 : 16;
        store_pending_t *p = realloc(s->pending, cap * sizeof *p);
        if (!p) abort(); /* a handful of entries: the broker cannot go on without them */
        s->pending = p;
        s->pending_cap = cap;
    }
    s->pending[s->npending++] = (store_pending_t){flush, ticket};
}

/* Ask for the current segment to be synced; the flush is durable when it is. */
static void request_sync(store_t *s, int fd) {
    if (broker.cfg.journal_sync == JOURNAL_SYNC_OFF) {
        store_notify(s, s->flushes);
        return;
    }
    if (s->dir_dirty) {
        /* A new segment's directory entry must be durable before its records are. */
        if (syncer_request(broker.syncer, s->dir_fd) == 0) fsync(s->dir_fd);
        s->dir_dirty = false;
    }
    uint64_t ticket = syncer_request(broker.syncer, fd);
    if (ticket == 0) { /* the syncer is full: sync here rather than promise nothing */
        if (fdatasync(fd) == 0) store_notify(s, s->flushes);
        return;
    }
    pending_push(s, s->flushes, ticket);
}

static void write_failed(store_t *s, int err) {
    if (!s->write_failed)
        log_error("cannot write to the message journal: %s; confirms wait until it can",
                  strerror(err));
    s->write_failed = true;
    alarm_set(ALARM_JOURNAL, true);
    if (!ev_is_active(&s->retry_timer)) {
        ev_timer_set(&s->retry_timer, STORE_RETRY, 0.);
        ev_timer_start(broker.loop, &s->retry_timer);
    }
}

/* Write the buffer to the current segment. */
static bool flush_out(store_t *s) {
    segment_t *g = seg_current(s);
    if (!g || buf_pending(&s->out) == 0) return true;
    while (buf_pending(&s->out) > 0) {
        ssize_t n = write(g->fd, buf_head(&s->out), buf_pending(&s->out));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            write_failed(s, n < 0 ? errno : ENOSPC);
            return false;
        }
        buf_consume(&s->out, (size_t)n);
        s->cur_written += (uint64_t)n;
    }
    if (s->write_failed) {
        log_info("writing to the message journal again");
        s->write_failed = false;
        alarm_set(ALARM_JOURNAL, false);
    }
    if (s->out.cap > STORE_FLUSH_AT) buf_release(&s->out);
    s->flushes++;
    request_sync(s, g->fd);
    return true;
}

void store_flush(void) {
    store_t *s = &broker.store;
    if (s->closed) return;
    if (!s->write_failed && ev_now(broker.loop) - s->last_compact >= COMPACT_INTERVAL) compact(s);
    flush_out(s);
    if (s->collect_due) seg_collect(s);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)w;
    (void)revents;
    store_flush();
}

void store_synced(uint64_t ticket, int err) {
    store_t *s = &broker.store;
    uint32_t done = 0;
    if (err) {
        /* After a failed fdatasync nothing says what reached the disk: stop,
         * and let recovery read what is there. */
        log_error("fdatasync of the journal failed: %s; stopping", strerror(err));
        broker_shutdown("the journal cannot be synced");
        return;
    }
    while (done < s->npending && s->pending[done].ticket <= ticket)
        done++;
    if (done == 0) return;
    uint64_t flush = s->pending[done - 1].flush;
    memmove(s->pending, s->pending + done, (s->npending - done) * sizeof *s->pending);
    s->npending -= done;
    store_notify(s, flush);
}

/* Room for a record of `size` bytes in the current segment: a full segment
 * is written out and a new one started. NULL if no segment can be had. */
static segment_t *seg_for(store_t *s, uint64_t size) {
    segment_t *g = seg_current(s);
    if (g && g->size > 0 && g->size + size > broker.cfg.journal_segment_size) {
        /* Records never straddle a rollover: a segment that cannot be written
         * out (a full disk) grows past its size until it can. */
        if (!flush_out(s)) return g;
        g = NULL;
        s->collect_due = true;
    }
    return g ? g : seg_create(s);
}

/* Buffer a record whose payload is `parts`; returns its offset in *off. */
static segment_t *append(store_t *s, uint8_t type, const record_part_t *parts, int nparts,
                         uint32_t *off) {
    uint64_t size = RECORD_HEADER_SIZE;
    for (int i = 0; i < nparts; i++)
        size += parts[i].n;
    if (size > STORE_MAX_RECORD) return NULL;
    segment_t *g = seg_for(s, size);
    if (!g) return NULL;
    uint8_t *p = buf_reserve(&s->out, size);
    record_header(p, type, parts, nparts);
    p += RECORD_HEADER_SIZE;
    for (int i = 0; i < nparts; i++) {
        if (parts[i].n) memcpy(p, parts[i].p, parts[i].n);
        p += parts[i].n;
    }
    buf_commit(&s->out, size);
    *off = (uint32_t)g->size;
    g->size += size;
    if (buf_pending(&s->out) >= STORE_FLUSH_AT) flush_out(s);
    return g;
}

bool store_write_msg(message_t *m, queue_t *const *qs, uint32_t n, qentry_t *at) {
    store_t *s = &broker.store;
    /* priority, timestamp, queue count, queue ids, exchange, routing key, props length */
    uint8_t head[1 + 8 + 2 + 4 * 64 + 256 + 256 + 4];
    uint8_t tail[4];
    uint64_t ts = (uint64_t)(ev_now(broker.loop) * 1000.0);
    size_t h = 0;

    if (s->closed || n == 0) return false;
    if (n > 64) n = 64; /* more durable queues than this are written as several records */
    head[h++] = m->priority;
    for (int i = 7; i >= 0; i--)
        head[h++] = (uint8_t)(ts >> (8 * i));
    head[h++] = (uint8_t)(n >> 8);
    head[h++] = (uint8_t)n;
    for (uint32_t i = 0; i < n; i++, h += 4)
        wn_store32(head + h, qs[i]->durable_id);
    head[h++] = m->exchange_len;
    memcpy(head + h, message_exchange(m).ptr, m->exchange_len);
    h += m->exchange_len;
    head[h++] = m->routing_key_len;
    memcpy(head + h, message_routing_key(m).ptr, m->routing_key_len);
    h += m->routing_key_len;
    wn_store32(head + h, m->props_len);
    h += 4;
    wn_store32(tail, (uint32_t)m->body_len);
    record_part_t parts[] = {
        {head, h}, {message_props(m), m->props_len}, {tail, 4}, {message_body(m), m->body_len}};
    uint32_t off;
    segment_t *g = append(s, REC_MSG, parts, 4, &off);
    if (!g) return false;
    at->seg = g->no;
    at->off = off;
    at->len = (uint32_t)(RECORD_HEADER_SIZE + h + m->props_len + 4 + m->body_len);
    g->live += n;
    g->live_bytes += (uint64_t)n * at->len;
    s->messages++;
    return true;
}

/* An ACK or DELIVERED record: queue id, segment, offset. */
static void write_ref(store_t *s, uint8_t type, const queue_t *q, const qentry_t *e) {
    uint8_t p[12];
    uint32_t off;
    wn_store32(p, q->durable_id);
    wn_store32(p + 4, e->seg);
    wn_store32(p + 8, e->off);
    record_part_t part = {p, sizeof p};
    segment_t *g = append(s, type, &part, 1, &off);
    if (g && e->seg < g->min_ref) g->min_ref = e->seg;
}

void store_ack(queue_t *q, const qentry_t *e) {
    store_t *s = &broker.store;
    if (!e->seg || s->closed) return;
    if (!q->deleted) write_ref(s, REC_ACK, q, e);
    segment_t *g = seg_find(s, e->seg);
    if (!g || g->live == 0) return;
    g->live_bytes -= g->live_bytes < e->len ? g->live_bytes : e->len;
    if (--g->live == 0) s->collect_due = true;
}

void store_delivered(queue_t *q, const qentry_t *e) {
    store_t *s = &broker.store;
    if (!e->seg || s->closed || q->deleted) return;
    write_ref(s, REC_DELIVERED, q, e);
}

/* ---- reading back ------------------------------------------------------------------- */

static bool scratch_room(store_t *s, size_t n) {
    if (n <= s->scratch_cap) return true;
    uint8_t *p = realloc(s->scratch, n);
    if (!p) return false;
    s->scratch = p;
    s->scratch_cap = n;
    return true;
}

/* The bytes of a record: from the file, or from the buffer if not written yet. */
static const uint8_t *read_record(store_t *s, segment_t *g, const qentry_t *e) {
    if (g == seg_current(s) && (uint64_t)e->off + e->len > s->cur_written) {
        uint64_t at = e->off - s->cur_written;
        if (e->off < s->cur_written || at + e->len > buf_pending(&s->out)) return NULL;
        return buf_head(&s->out) + at;
    }
    if (!scratch_room(s, e->len)) return NULL;
    ssize_t n = pread(g->fd, s->scratch, e->len, (off_t)e->off);
    return n == (ssize_t)e->len ? s->scratch : NULL;
}

/* A message from a MSG or MOVED record. */
static message_t *decode_msg(const record_t *rec) {
    wn_reader_t r;
    wn_basic_props_t props = {.flags = WN_BASIC_DELIVERY_MODE_FLAG | WN_BASIC_PRIORITY_FLAG,
                              .delivery_mode = 2};
    bool moved = rec->type == REC_MOVED;
    wn_reader_init(&r, rec->payload, rec->len);
    if (moved) wn_get_bytes(&r, MOVED_PREFIX);
    props.priority = wn_get8(&r);
    wn_get64(&r); /* timestamp */
    uint16_t nq = wn_get16(&r);
    wn_get_bytes(&r, (size_t)nq * (moved ? 5 : 4));
    wn_bytes_t exchange = wn_get_shortstr(&r);
    wn_bytes_t rk = wn_get_shortstr(&r);
    wn_bytes_t pr = wn_get_longstr(&r);
    wn_bytes_t body = wn_get_longstr(&r);
    if (r.err) return NULL;
    message_t *m = message_new(exchange, rk, pr.ptr, (uint32_t)pr.len, (wn_bytes_t){NULL, 0},
                               body.len, &props);
    if (m) message_append_body(m, body.ptr, body.len);
    return m;
}

message_t *store_load(const qentry_t *e) {
    store_t *s = &broker.store;
    segment_t *g = seg_find(s, e->seg);
    record_t rec;
    const uint8_t *p = g ? read_record(s, g, e) : NULL;
    message_t *m = NULL;
    if (p && record_check(p, e->len, STORE_MAX_RECORD, &rec) == (long)e->len &&
        (rec.type == REC_MSG || rec.type == REC_MOVED))
        m = decode_msg(&rec);
    if (!m)
        log_error("cannot read the message at %08" PRIu32 ".seg offset %" PRIu32
                  " back from the journal; it is dropped",
                  e->seg, e->off);
    return m;
}

/* ---- compaction ------------------------------------------------------------------------ */

/* A segment mostly dead is compacted: the messages still in queues are copied
 * to the current segment as MOVED records and their entries (ready or
 * waiting for an ack) point at the copies; the old segment goes once the
 * copies are durable. A long-lived message so never holds a whole segment,
 * nor the later segments whose acks refer to it. */

typedef struct live_ref {
    queue_t *q;
    qentry_t *e;
    bool delivered;
} live_ref_t;

typedef struct compaction {
    store_t *s;
    live_ref_t *refs;
    size_t n, cap;
    bool oom;
} compaction_t;

static void compact_visit(queue_t *q, qentry_t *e, bool delivered, void *ctx) {
    compaction_t *c = ctx;
    segment_t *g = e->seg ? seg_find(c->s, e->seg) : NULL;
    if (!g || !g->compacting || q->deleted) return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        live_ref_t *r = realloc(c->refs, cap * sizeof *r);
        if (!r) {
            c->oom = true;
            return;
        }
        c->refs = r;
        c->cap = cap;
    }
    c->refs[c->n++] = (live_ref_t){q, e, delivered};
}

static int cmp_ref(const void *a, const void *b) {
    const qentry_t *x = ((const live_ref_t *)a)->e, *y = ((const live_ref_t *)b)->e;
    if (x->seg != y->seg) return x->seg < y->seg ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Copy one message (refs[0..n), all at the same place, n <= 64) to the
 * current segment and point its entries at the copy. */
static void compact_one(store_t *s, live_ref_t *refs, size_t n) {
    qentry_t from = *refs[0].e;
    segment_t *og = seg_find(s, from.seg);
    record_t rec;
    const uint8_t *p = og ? read_record(s, og, &from) : NULL;
    if (!p || record_check(p, from.len, STORE_MAX_RECORD, &rec) != (long)from.len) return;
    wn_reader_t r;
    wn_reader_init(&r, rec.payload, rec.len);
    uint8_t head[MOVED_PREFIX + 1 + 8 + 2 + 5 * 64];
    size_t h = 0;
    if (rec.type == REC_MOVED) { /* keeps the place it was first written */
        memcpy(head, wn_get_bytes(&r, 8).ptr, 8);
    } else {
        wn_store32(head, from.seg);
        wn_store32(head + 4, from.off);
    }
    wn_store32(head + 8, from.seg);
    wn_store32(head + 12, from.off);
    h = MOVED_PREFIX;
    if (rec.type == REC_MOVED) wn_get_bytes(&r, 8);
    memcpy(head + h, wn_get_bytes(&r, 9).ptr, 9); /* priority, timestamp */
    h += 9;
    uint16_t nq = wn_get16(&r);
    wn_get_bytes(&r, (size_t)nq * (rec.type == REC_MOVED ? 5 : 4));
    if (r.err) return;
    head[h++] = (uint8_t)(n >> 8);
    head[h++] = (uint8_t)n;
    for (size_t i = 0; i < n; i++, h += 5) {
        wn_store32(head + h, refs[i].q->durable_id);
        head[h + 4] = refs[i].delivered ? 1 : 0;
    }
    /* The rest (names, properties, body) is copied as it is; it lives in the
     * scratch buffer or the write buffer, so take a copy before appending. */
    size_t rest_len = wn_reader_left(&r);
    uint8_t *rest = malloc(rest_len ? rest_len : 1);
    if (!rest) return;
    memcpy(rest, r.p, rest_len);
    record_part_t parts[] = {{head, h}, {rest, rest_len}};
    uint32_t off;
    segment_t *g = append(s, REC_MOVED, parts, 2, &off);
    free(rest);
    if (!g) return;
    og = seg_find(s, from.seg); /* the table may have moved when a segment was added */
    uint32_t len = (uint32_t)(RECORD_HEADER_SIZE + h + rest_len);
    for (size_t i = 0; i < n; i++) {
        qentry_t *e = refs[i].e;
        og->live--;
        og->live_bytes -= og->live_bytes < e->len ? og->live_bytes : e->len;
        e->seg = g->no;
        e->off = off;
        e->len = len;
        g->live++;
        g->live_bytes += len;
    }
    if (from.seg < g->min_ref) g->min_ref = from.seg;
}

/* Mark the segments worth compacting; false if there are none. */
static bool compact_pick(store_t *s) {
    uint64_t budget = COMPACT_MAX;
    bool any = false;
    for (uint32_t i = 0; i + 1 < s->nsegs; i++) {
        segment_t *g = &s->segs[i];
        if (g->live == 0 || g->live_bytes * 2 >= g->size || g->live_bytes > budget) continue;
        g->compacting = true;
        budget -= g->live_bytes;
        any = true;
    }
    return any;
}

static void compact(store_t *s) {
    compaction_t c = {.s = s};
    s->last_compact = ev_now(broker.loop);
    if (!compact_pick(s)) return;
    for (vhost_t *vh = broker.vhosts.vhosts; vh; vh = vh->next) {
        queue_t *q, *tmp;
        HASH_ITER(hh, vh->queues, q, tmp) {
            if (q->durable_id) queue_each_ready(q, compact_visit, &c);
        }
    }
    for (conn_t *conn = broker.conns; conn; conn = conn->next)
        for (uint32_t i = 0; i < conn->nchans; i++)
            if (conn->chans[i]) consumer_each_unacked(conn->chans[i], compact_visit, &c);
    uint32_t picked = 0;
    for (uint32_t i = 0; i < s->nsegs; i++)
        picked += s->segs[i].compacting;
    log_info("journal: compacting %" PRIu32 " segments: copying %zu live messages", picked, c.n);
    if (!c.oom) {
        qsort(c.refs, c.n, sizeof *c.refs, cmp_ref);
        for (size_t i = 0, j; i < c.n; i = j) {
            for (j = i + 1; j < c.n && j - i < 64 && c.refs[j].e->seg == c.refs[i].e->seg &&
                            c.refs[j].e->off == c.refs[i].e->off;
                 j++)
                ;
            compact_one(s, c.refs + i, j - i);
        }
    }
    for (uint32_t i = 0; i < s->nsegs; i++) {
        segment_t *g = &s->segs[i];
        if (!g->compacting) continue;
        g->compacting = false;
        g->moved_flush = store_next_flush(s);
        s->compactions++;
        if (g->live)
            log_warning("journal: %" PRIu64 " messages of %08" PRIu32 ".seg were not found to copy",
                        g->live, g->no);
    }
    s->collect_due = true;
    free(c.refs);
}

/* ---- recovery ------------------------------------------------------------------------- */

/* (queue id, segment, offset) of every message found so far that is still in
 * its queue: open addressing with linear probing. */
typedef struct rentry {
    uint32_t qid, seg, off, len; /* qid 0: empty; len's top bit: delivered */
    uint32_t oseg, ooff;         /* where it was first written: its place in queue order */
} rentry_t;

#define RENTRY_DELIVERED 0x80000000u

typedef struct recovery {
    store_t *s;
    rentry_t *tab;
    size_t cap, n;
    queue_t **queues; /* by durable id - 1, up to nqueues */
    uint32_t nqueues;
    uint32_t seg; /* being scanned */
    segment_t *g;
    bool oom;
} recovery_t;

static size_t rhash(uint32_t qid, uint32_t seg, uint32_t off, size_t mask) {
    uint64_t x = ((uint64_t)seg << 32 | off) ^ ((uint64_t)qid * 0x9E3779B97F4A7C15ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return (size_t)x & mask;
}

static rentry_t *rfind(recovery_t *rc, uint32_t qid, uint32_t seg, uint32_t off) {
    size_t mask = rc->cap - 1;
    for (size_t i = rhash(qid, seg, off, mask);; i = (i + 1) & mask) {
        rentry_t *e = &rc->tab[i];
        if (e->qid == 0 || (e->qid == qid && e->seg == seg && e->off == off)) return e;
    }
}

static bool rgrow(recovery_t *rc) {
    size_t cap = rc->cap ? rc->cap * 2 : 1u << 16;
    rentry_t *old = rc->tab;
    size_t ocap = rc->cap;
    rc->tab = calloc(cap, sizeof *rc->tab);
    if (!rc->tab) {
        rc->tab = old;
        return false;
    }
    rc->cap = cap;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].qid) *rfind(rc, old[i].qid, old[i].seg, old[i].off) = old[i];
    free(old);
    return true;
}

static void rput(recovery_t *rc, const rentry_t *r) {
    if ((rc->n + 1) * 2 > rc->cap && !rgrow(rc)) {
        rc->oom = true;
        return;
    }
    rentry_t *e = rfind(rc, r->qid, r->seg, r->off);
    if (e->qid == 0) rc->n++;
    *e = *r;
}

/* Remove with backward shifting, so that probe chains stay whole. */
static void rdel(recovery_t *rc, rentry_t *e) {
    size_t mask = rc->cap - 1;
    size_t i = (size_t)(e - rc->tab), j = i;
    for (;;) {
        j = (j + 1) & mask;
        rentry_t *f = &rc->tab[j];
        if (f->qid == 0) break;
        size_t home = rhash(f->qid, f->seg, f->off, mask);
        /* f may move to i if its home is not in (i, j] cyclically. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            rc->tab[i] = *f;
            i = j;
        }
    }
    rc->tab[i].qid = 0;
    rc->n--;
}

static queue_t *rqueue(recovery_t *rc, uint32_t qid) {
    return qid && qid <= rc->nqueues ? rc->queues[qid - 1] : NULL;
}

static void rdel(recovery_t *rc, rentry_t *e);

/* MSG: an entry for each named queue. MOVED: the same, each taking over the
 * entry (and the delivered mark) of the place it was copied from. */
static void recover_msg(recovery_t *rc, const record_t *rec) {
    wn_reader_t r;
    bool moved = rec->type == REC_MOVED;
    rentry_t e = {.seg = rc->seg,
                  .off = (uint32_t)rec->offset,
                  .len = RECORD_HEADER_SIZE + rec->len,
                  .oseg = rc->seg,
                  .ooff = (uint32_t)rec->offset};
    uint32_t from_seg = 0, from_off = 0;
    wn_reader_init(&r, rec->payload, rec->len);
    if (moved) {
        e.oseg = wn_get32(&r);
        e.ooff = wn_get32(&r);
        from_seg = wn_get32(&r);
        from_off = wn_get32(&r);
        if (from_seg < rc->g->min_ref) rc->g->min_ref = from_seg;
    }
    wn_get8(&r);
    wn_get64(&r);
    uint16_t nq = wn_get16(&r);
    for (uint16_t i = 0; i < nq && !r.err; i++) {
        e.qid = wn_get32(&r);
        uint32_t delivered = moved && (wn_get8(&r) & 1) ? RENTRY_DELIVERED : 0;
        if (r.err || !rqueue(rc, e.qid)) continue;
        if (moved && rc->cap) {
            rentry_t *old = rfind(rc, e.qid, from_seg, from_off);
            if (old->qid) {
                delivered |= old->len & RENTRY_DELIVERED;
                rdel(rc, old);
            }
        }
        rentry_t put = e;
        put.len |= delivered;
        rput(rc, &put);
    }
}

static void recover_ref(recovery_t *rc, const record_t *rec) {
    if (rec->len != 12) return;
    uint32_t qid = wn_load32(rec->payload), seg = wn_load32(rec->payload + 4);
    uint32_t off = wn_load32(rec->payload + 8);
    if (seg < rc->g->min_ref) rc->g->min_ref = seg;
    if (!rc->cap) return;
    rentry_t *e = rfind(rc, qid, seg, off);
    if (e->qid == 0) return;
    if (rec->type == REC_ACK)
        rdel(rc, e);
    else
        e->len |= RENTRY_DELIVERED;
}

static void recover_record(const record_t *rec, void *ctx) {
    recovery_t *rc = ctx;
    if (rec->offset > UINT32_MAX) return;
    if (rec->type == REC_MSG || rec->type == REC_MOVED)
        recover_msg(rc, rec);
    else if (rec->type == REC_ACK || rec->type == REC_DELIVERED)
        recover_ref(rc, rec);
}

/* Scan one segment file into the table, truncating a torn tail. */
static int recover_segment(recovery_t *rc, uint32_t no) {
    store_t *s = rc->s;
    char path[4096];
    struct stat st;
    record_scan_t scan = {0};
    seg_path(s, no, path, sizeof path);
    int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        log_error("cannot open %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    rc->seg = no;
    rc->g = seg_add(s, no, fd, 0);
    if (!rc->g) {
        close(fd);
        return -1;
    }
    if (st.st_size > 0) {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            log_error("cannot map %s: %s", path, strerror(errno));
            return -1;
        }
        madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
        record_scan(map, (size_t)st.st_size, STORE_MAX_RECORD, recover_record, rc, &scan);
        munmap(map, (size_t)st.st_size);
    }
    if (scan.skipped)
        log_warning("%s: skipped %zu bytes of %u corrupt records", path, scan.skipped,
                    scan.corruptions);
    if (scan.torn) {
        log_warning("%s: dropped %zu bytes of a torn tail", path, scan.torn);
        if (ftruncate(fd, (off_t)scan.end) < 0)
            log_warning("cannot truncate %s: %s", path, strerror(errno));
    }
    rc->g->size = scan.end;
    return 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The segment numbers in the directory, ascending. */
static int list_segments(store_t *s, uint32_t **out, uint32_t *n) {
    DIR *d = opendir(s->dir);
    struct dirent *de;
    uint32_t cap = 0;
    *out = NULL;
    *n = 0;
    if (!d) return -1;
    while ((de = readdir(d)) != NULL) {
        char *end;
        unsigned long no = strtoul(de->d_name, &end, 10);
        if (end == de->d_name || strcmp(end, ".seg") != 0 || no == 0 || no > UINT32_MAX) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            uint32_t *p = realloc(*out, cap * sizeof *p);
            if (!p) {
                closedir(d);
                return -1;
            }
            *out = p;
        }
        (*out)[(*n)++] = (uint32_t)no;
    }
    closedir(d);
    if (*n) qsort(*out, *n, sizeof **out, cmp_u32);
    return 0;
}

/* Every durable queue, by id. */
static int index_queues(recovery_t *rc) {
    rc->nqueues = broker.next_queue_id;
    rc->queues = calloc(rc->nqueues ? rc->nqueues : 1, sizeof *rc->queues);
    if (!rc->queues) return -1;
    for (vhost_t *vh = broker.vhosts.vhosts; vh; vh = vh->next) {
        queue_t *q, *tmp;
        HASH_ITER(hh, vh->queues, q, tmp) {
            if (q->durable_id && q->durable_id <= rc->nqueues) rc->queues[q->durable_id - 1] = q;
        }
    }
    return 0;
}

static int cmp_rentry(const void *a, const void *b) {
    const rentry_t *x = a, *y = b;
    if (x->qid != y->qid) return x->qid < y->qid ? -1 : 1;
    if (x->oseg != y->oseg) return x->oseg < y->oseg ? -1 : 1;
    return x->ooff < y->ooff ? -1 : x->ooff > y->ooff;
}

/* Put what survived into the queues, in the order it was published. */
static size_t recover_into_queues(recovery_t *rc) {
    size_t n = 0;
    for (size_t i = 0; i < rc->cap; i++)
        if (rc->tab[i].qid) rc->tab[n++] = rc->tab[i];
    qsort(rc->tab, n, sizeof *rc->tab, cmp_rentry);
    for (size_t i = 0; i < n; i++) {
        rentry_t *r = &rc->tab[i];
        qentry_t e = {.seg = r->seg, .off = r->off, .len = r->len & ~RENTRY_DELIVERED};
        if (r->len & RENTRY_DELIVERED) e.flags = QENTRY_REDELIVERED;
        segment_t *g = seg_find(rc->s, r->seg);
        if (g && queue_push(rqueue(rc, r->qid), NULL, &e)) {
            g->live++;
            g->live_bytes += e.len;
        }
    }
    return n;
}

static int store_recover(store_t *s) {
    recovery_t rc = {.s = s};
    uint32_t *nos, nsegs;
    int rc_ = -1;
    ev_tstamp t0 = ev_time();
    uint64_t bytes = 0;

    if (list_segments(s, &nos, &nsegs) < 0 || index_queues(&rc) < 0) {
        log_error("cannot read %s: %s", s->dir, strerror(errno));
        free(nos);
        return -1;
    }
    for (uint32_t i = 0; i < nsegs; i++) {
        if (recover_segment(&rc, nos[i]) < 0) goto out;
        bytes += s->segs[s->nsegs - 1].size;
    }
    if (rc.oom) {
        log_error("out of memory recovering the message journal");
        goto out;
    }
    size_t n = rc.cap ? recover_into_queues(&rc) : 0;
    if (nsegs)
        log_info("journal: recovered %zu messages from %" PRIu32 " segments (%.1f MiB) in %.2f s",
                 n, nsegs, (double)bytes / 1048576.0, ev_time() - t0);
    rc_ = 0;
out:
    free(nos);
    free(rc.tab);
    free(rc.queues);
    return rc_;
}

/* ---- opening and closing ----------------------------------------------------------------- */

int store_open(store_t *s, const char *data_dir) {
    char path[4096];
    s->closed = true;
    s->dir_fd = -1;
    s->next_no = 1;
    snprintf(path, sizeof path, "%s/msgs", data_dir);
    s->dir = strdup(path);
    if (!s->dir || (mkdir(s->dir, 0750) < 0 && errno != EEXIST)) {
        log_error("cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    s->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dir_fd < 0) {
        log_error("cannot open %s: %s", s->dir, strerror(errno));
        return -1;
    }
    if (store_recover(s) < 0) return -1;
    ev_init(&s->retry_timer, on_retry);
    s->closed = false;
    /* Write to a fresh segment; the recovered ones go once their messages do. */
    if (!seg_create(s)) return -1;
    seg_collect(s);
    return 0;
}

void store_close(store_t *s) {
    if (!s->closed) flush_out(s);
    s->closed = true;
    if (ev_is_active(&s->retry_timer)) ev_timer_stop(broker.loop, &s->retry_timer);
    for (uint32_t i = 0; i < s->nsegs; i++)
        close(s->segs[i].fd);
    if (s->dir_fd >= 0) close(s->dir_fd);
    buf_free(&s->out);
    free(s->segs);
    free(s->pending);
    free(s->scratch);
    free(s->dir);
    memset(s, 0, sizeof *s);
    s->closed = true;
    s->dir_fd = -1;
}
