/*
 * store.c - message segments: writing, reading back and deleting (see
 * store.h and docs/journal.md). Compaction is in store_compact.c, recovery
 * in store_recover.c.
 *
 * Owns the files under data_dir/msgs and the write buffer. Runs on the loop
 * thread only; fdatasync happens on the syncer's thread, which reports back
 * through store_synced.
 */
#include "store.h"
#include "alarm.h"
#include "broker.h"
#include "dedup_log.h"
#include "log.h"
#include "publish.h"
#include "record.h"
#include "store_int.h"
#include "syncer.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_FLUSH_AT (4u << 20) /* write the buffer out once it holds this much */
#define STORE_RETRY    1.0        /* seconds between attempts after a failed write */

typedef struct store_pending {
    uint64_t flush, ticket;
} store_pending_t;

/* ---- segments ------------------------------------------------------------------ */

segment_t *store_seg_find(store_t *s, uint32_t no) {
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

void store_seg_path(const store_t *s, uint32_t no, char *out, size_t len) {
    snprintf(out, len, "%s/%08" PRIu32 ".seg", s->dir, no);
}

/* Append a segment to the table (numbers only grow). */
segment_t *store_seg_add(store_t *s, uint32_t no, int fd, uint64_t size) {
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
    store_seg_path(s, no, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        log_error("cannot create %s: %s", path, strerror(errno));
        return NULL;
    }
    segment_t *g = store_seg_add(s, no, fd, 0);
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
        store_seg_path(s, g->no, path, sizeof path);
        if (unlink(path) < 0) log_warning("cannot delete %s: %s", path, strerror(errno));
        syncer_forget(broker.syncer, g->fd);
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
    /* Deduplication values first: their sync is requested before this one's,
     * so they are durable when the confirms that wait for it go out. */
    dedup_log_flush();
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
    if (!s->write_failed && ev_now(broker.loop) - s->last_compact >= STORE_COMPACT_INTERVAL)
        store_compact(s);
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
segment_t *store_append(store_t *s, uint8_t type, const record_part_t *parts, int nparts,
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
    uint32_t ids[64];
    if (n > 64) n = 64; /* more durable queues than this are written as several records */
    for (uint32_t i = 0; i < n; i++)
        ids[i] = qs[i]->durable_id;
    return store_write_msg_ids(m, ids, n, at);
}

bool store_write_msg_ids(message_t *m, const uint32_t *ids, uint32_t n, qentry_t *at) {
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
        wn_store32(head + h, ids[i]);
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
    segment_t *g = store_append(s, REC_MSG, parts, 4, &off);
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
static void write_ref(store_t *s, uint8_t type, uint32_t id, const qentry_t *e) {
    uint8_t p[12];
    uint32_t off;
    wn_store32(p, id);
    wn_store32(p + 4, e->seg);
    wn_store32(p + 8, e->off);
    record_part_t part = {p, sizeof p};
    segment_t *g = store_append(s, type, &part, 1, &off);
    if (g && e->seg < g->min_ref) g->min_ref = e->seg;
}

void store_ack(queue_t *q, const qentry_t *e) {
    store_ack_id(q->durable_id, !q->deleted, e);
}

void store_ack_id(uint32_t id, bool record, const qentry_t *e) {
    store_t *s = &broker.store;
    if (!e->seg || s->closed) return;
    if (record) write_ref(s, REC_ACK, id, e);
    segment_t *g = store_seg_find(s, e->seg);
    if (!g || g->live == 0) return;
    g->live_bytes -= g->live_bytes < e->len ? g->live_bytes : e->len;
    if (--g->live == 0) s->collect_due = true;
}

void store_delivered(queue_t *q, const qentry_t *e) {
    store_t *s = &broker.store;
    if (!e->seg || s->closed || q->deleted) return;
    write_ref(s, REC_DELIVERED, q->durable_id, e);
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
const uint8_t *store_read_record(store_t *s, segment_t *g, const qentry_t *e) {
    /* (While recovering, every segment is read from its file.) */
    if (!s->closed && g == seg_current(s) && (uint64_t)e->off + e->len > s->cur_written) {
        uint64_t at = e->off - s->cur_written;
        if (e->off < s->cur_written || at + e->len > buf_pending(&s->out)) return NULL;
        return buf_head(&s->out) + at;
    }
    if (!scratch_room(s, e->len)) return NULL;
    ssize_t n = pread(g->fd, s->scratch, e->len, (off_t)e->off);
    return n == (ssize_t)e->len ? s->scratch : NULL;
}

/* A message from a MSG or MOVED record. */
static message_t *decode_msg(const record_t *rec, uint64_t *published_ms) {
    wn_reader_t r;
    wn_basic_props_t props = {.flags = WN_BASIC_DELIVERY_MODE_FLAG | WN_BASIC_PRIORITY_FLAG,
                              .delivery_mode = 2};
    bool moved = rec->type == REC_MOVED;
    wn_reader_init(&r, rec->payload, rec->len);
    if (moved) wn_get_bytes(&r, MOVED_PREFIX);
    props.priority = wn_get8(&r);
    uint64_t ts = wn_get64(&r);
    if (published_ms) *published_ms = ts;
    uint16_t nq = wn_get16(&r);
    wn_get_bytes(&r, (size_t)nq * (moved ? 5 : 4));
    wn_bytes_t exchange = wn_get_shortstr(&r);
    wn_bytes_t rk = wn_get_shortstr(&r);
    wn_bytes_t pr = wn_get_longstr(&r);
    wn_bytes_t body = wn_get_longstr(&r);
    if (r.err) return NULL;
    message_t *m = message_new(exchange, rk, pr.ptr, (uint32_t)pr.len, (wn_bytes_t){NULL, 0},
                               body.len, &props);
    if (m) message_put_body(m, 0, body.ptr, body.len);
    return m;
}

message_t *store_load(const qentry_t *e) {
    return store_load_ts(e, NULL);
}

message_t *store_load_ts(const qentry_t *e, uint64_t *published_ms) {
    store_t *s = &broker.store;
    segment_t *g = store_seg_find(s, e->seg);
    record_t rec;
    const uint8_t *p = g ? store_read_record(s, g, e) : NULL;
    message_t *m = NULL;
    if (p && record_check(p, e->len, STORE_MAX_RECORD, &rec) == (long)e->len &&
        (rec.type == REC_MSG || rec.type == REC_MOVED))
        m = decode_msg(&rec, published_ms);
    if (!m)
        log_error("cannot read the message at %08" PRIu32 ".seg offset %" PRIu32
                  " back from the journal; it is dropped",
                  e->seg, e->off);
    return m;
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
