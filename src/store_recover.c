/*
 * store_recover.c - recovery of the message segments at start (see store.h
 * and docs/journal.md, "Recovery").
 *
 * Scans every segment through mmap into a table of the (queue, segment,
 * offset) entries still live, cuts torn tails, and puts what survived into
 * the durable queues in publish order, as entries whose bodies stay on disk.
 */
#include "broker.h"
#include "expiry.h"
#include "delay.h"
#include "log.h"
#include "record.h"
#include "store.h"
#include "store_int.h"
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

/* (queue id, segment, offset) of every message found so far that is still in
 * its queue: open addressing with linear probing. */
typedef struct rentry {
    uint32_t qid, seg, off, len; /* qid 0: empty; len's top bit: delivered */
    uint32_t oseg, ooff;         /* where it was first written: its place in queue order */
    uint64_t at;                 /* when it expires (expiry.h); top bit: it expires early */
} rentry_t;

#define RENTRY_DELIVERED 0x80000000u
#define RENTRY_EARLY     (1ull << 63)

typedef struct recovery {
    store_t *s;
    rentry_t *tab;
    size_t cap, n;
    queue_t **queues;     /* by durable id - 1, up to nqueues */
    exchange_t **delayed; /* durable delayed exchanges, by store id - 1 (delay.h) */
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

static exchange_t *rdelayed(recovery_t *rc, uint32_t id) {
    return id && id <= rc->nqueues ? rc->delayed[id - 1] : NULL;
}

/* Does a record's id name something that still exists? */
static bool rknown(recovery_t *rc, uint32_t id) {
    return rqueue(rc, id) || rdelayed(rc, id);
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
    uint64_t published = wn_get64(&r);
    uint16_t nq = wn_get16(&r);
    wn_reader_t qr = r; /* the queue list; the message's TTL is in its properties, after it */
    wn_get_bytes(&r, (size_t)nq * (moved ? 5 : 4));
    wn_get_shortstr(&r);
    wn_get_shortstr(&r);
    wn_bytes_t props = wn_get_longstr(&r);
    uint64_t msg_ms = 0;
    bool has_msg_ttl = !r.err && message_props_expiration(props.ptr, props.len, &msg_ms);
    r = qr;
    for (uint16_t i = 0; i < nq && !r.err; i++) {
        e.qid = wn_get32(&r);
        uint32_t delivered = moved && (wn_get8(&r) & 1) ? RENTRY_DELIVERED : 0;
        if (r.err || !rknown(rc, e.qid)) continue;
        if (moved && rc->cap) {
            rentry_t *old = rfind(rc, e.qid, from_seg, from_off);
            if (old->qid) {
                delivered |= old->len & RENTRY_DELIVERED;
                rdel(rc, old);
            }
        }
        rentry_t put = e;
        bool early;
        put.len |= delivered;
        queue_t *q = rqueue(rc, e.qid); /* NULL: held by a delayed exchange, no TTL */
        put.at = q ? expiry_of(q, published, has_msg_ttl, msg_ms, &early) : EXPIRY_NEVER;
        if (!q) early = false;
        if (early) put.at |= RENTRY_EARLY;
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
    store_seg_path(s, no, path, sizeof path);
    int fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        log_error("cannot open %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    rc->seg = no;
    rc->g = store_seg_add(s, no, fd, 0);
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

/* Every durable queue and durable delayed exchange, by id. */
static int index_queues(recovery_t *rc) {
    rc->nqueues = broker.next_queue_id;
    rc->queues = calloc(rc->nqueues ? rc->nqueues : 1, sizeof *rc->queues);
    rc->delayed = calloc(rc->nqueues ? rc->nqueues : 1, sizeof *rc->delayed);
    if (!rc->queues || !rc->delayed) return -1;
    delay_index(rc->delayed, rc->nqueues);
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
        segment_t *g = store_seg_find(rc->s, r->seg);
        exchange_t *x = rdelayed(rc, r->qid);
        if (!g) continue;
        g->live++; /* counted first: a delayed message may be read back at once */
        g->live_bytes += e.len;
        if (x) {
            delay_recover(x, &e);
            continue;
        }
        queue_t *q = rqueue(rc, r->qid);
        uint32_t pos;
        if (queue_push_pos(q, NULL, &e, &pos)) {
            if (r->at != EXPIRY_NEVER)
                expiry_restore(q, pos, r->at & ~RENTRY_EARLY, (r->at & RENTRY_EARLY) != 0);
        } else {
            g->live--;
            g->live_bytes -= e.len;
        }
    }
    return n;
}

int store_recover(store_t *s) {
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
    free(rc.delayed);
    return rc_;
}
