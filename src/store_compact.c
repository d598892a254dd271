/*
 * store_compact.c - compaction of mostly-dead message segments (see
 * store.h and docs/journal.md, "Disk bounds").
 *
 * Finds the queue entries and unacked deliveries that point into the
 * segments it picks, copies their messages forward as MOVED records and
 * points the entries at the copies. Reads queues and channels through
 * queue.h and consumer.h; writes only through store_int.h.
 */
#include "broker.h"
#include "connection.h"
#include "consumer.h"
#include "delay.h"
#include "log.h"
#include "record.h"
#include "store.h"
#include "store_int.h"
#include "vhost.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define COMPACT_MAX (64u << 20) /* live bytes copied by one compaction */

/* A segment mostly dead is compacted: the messages still in queues are copied
 * to the current segment as MOVED records and their entries (ready or
 * waiting for an ack) point at the copies; the old segment goes once the
 * copies are durable. A long-lived message so never holds a whole segment,
 * nor the later segments whose acks refer to it. */

typedef struct live_ref {
    uint32_t id; /* the queue's durable id, or a delayed exchange's store id */
    qentry_t *e;
    bool delivered;
} live_ref_t;

typedef struct compaction {
    store_t *s;
    live_ref_t *refs;
    size_t n, cap;
    bool oom;
} compaction_t;

static void compact_add(uint32_t id, qentry_t *e, bool delivered, compaction_t *c) {
    segment_t *g = e->seg ? store_seg_find(c->s, e->seg) : NULL;
    if (!g || !g->compacting) return;
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
    c->refs[c->n++] = (live_ref_t){id, e, delivered};
}

static void compact_visit(queue_t *q, qentry_t *e, bool delivered, void *ctx) {
    if (!q->deleted) compact_add(q->durable_id, e, delivered, ctx);
}

static void compact_visit_delayed(uint32_t store_id, qentry_t *e, void *ctx) {
    compact_add(store_id, e, false, ctx);
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
    segment_t *og = store_seg_find(s, from.seg);
    record_t rec;
    const uint8_t *p = og ? store_read_record(s, og, &from) : NULL;
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
        wn_store32(head + h, refs[i].id);
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
    segment_t *g = store_append(s, REC_MOVED, parts, 2, &off);
    free(rest);
    if (!g) return;
    og = store_seg_find(s, from.seg); /* the table may have moved when a segment was added */
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

void store_compact(store_t *s) {
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
    delay_each_stored(compact_visit_delayed, &c);
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
