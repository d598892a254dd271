/*
 * dedup_log.c - the deduplication log (see dedup_log.h, docs/journal.md).
 *
 * Owns data_dir/dedup.log. Reads exchanges and queues to name the owners of
 * caches and, at start, to find them; changes caches only through dedup.h.
 */
#include "dedup_log.h"
#include "broker.h"
#include "dedup.h"
#include "exchange.h"
#include "fileio.h"
#include "log.h"
#include "queue.h"
#include "record.h"
#include "syncer.h"
#include "vhost.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { DLOG_ADD = 1, DLOG_FORGET = 2 };

#define DLOG_MAX_RECORD 4096
#define DLOG_SLACK      (1u << 20) /* rewrite once the log outgrows 2x snapshot + 1 MiB */

/* ---- owners ------------------------------------------------------------------------ */

static bool owner_durable(uint8_t kind, const void *owner) {
    if (kind == DEDUP_LOG_EXCHANGE) {
        const exchange_t *x = owner;
        return x->durable && !x->builtin;
    }
    const queue_t *q = owner;
    return q->durable_id != 0;
}

static void owner_names(uint8_t kind, const void *owner, wn_bytes_t *vhost, wn_bytes_t *name) {
    if (kind == DEDUP_LOG_EXCHANGE) {
        const exchange_t *x = owner;
        *vhost = wn_cstr(x->vhost->name);
        *name = wn_bytes(x->name, x->name_len);
    } else {
        const queue_t *q = owner;
        *vhost = wn_cstr(q->vhost->name);
        *name = wn_bytes(q->name, q->name_len);
    }
}

static dedup_t *owner_cache(uint8_t kind, vhost_t *vh, wn_bytes_t name) {
    if (kind == DEDUP_LOG_EXCHANGE) {
        exchange_t *x = exchange_find(vh, name);
        return x && owner_durable(kind, x) ? x->dedup : NULL;
    }
    queue_t *q = queue_find(vh, name);
    return q && owner_durable(kind, q) ? q->dedup : NULL;
}

/* ---- records ------------------------------------------------------------------------ */

static void encode(buf_t *out, uint8_t type, uint8_t kind, const void *owner, wn_bytes_t key,
                   uint64_t expires_ms) {
    uint8_t p[1 + 256 + 256 + 8 + 256];
    wn_bytes_t vhost, name;
    wn_writer_t w;
    owner_names(kind, owner, &vhost, &name);
    wn_writer_init(&w, p, sizeof p);
    wn_put8(&w, kind);
    wn_put_shortstr(&w, vhost);
    wn_put_shortstr(&w, name);
    if (type == DLOG_ADD) {
        wn_put64(&w, expires_ms);
        wn_put_shortstr(&w, key);
    }
    if (w.overflow) return;
    record_part_t part = {p, w.len};
    uint8_t *h = buf_reserve(out, RECORD_HEADER_SIZE + w.len);
    record_header(h, type, &part, 1);
    memcpy(h + RECORD_HEADER_SIZE, p, w.len);
    buf_commit(out, RECORD_HEADER_SIZE + w.len);
}

void dedup_log_add(uint8_t kind, const void *owner, wn_bytes_t key, uint64_t expires_ms) {
    dedup_log_t *l = &broker.dedup_log;
    if (l->fd < 0 || !owner_durable(kind, owner)) return;
    encode(&l->out, DLOG_ADD, kind, owner, key, expires_ms);
}

void dedup_log_forget(uint8_t kind, const void *owner) {
    dedup_log_t *l = &broker.dedup_log;
    if (l->fd < 0 || !owner_durable(kind, owner)) return;
    encode(&l->out, DLOG_FORGET, kind, owner, (wn_bytes_t){NULL, 0}, 0);
}

/* ---- snapshots ---------------------------------------------------------------------- */

typedef struct snap_ctx {
    buf_t *out;
    uint8_t kind;
    const void *owner;
} snap_ctx_t;

static void snap_entry(wn_bytes_t key, uint64_t expires_ms, void *ctx) {
    snap_ctx_t *c = ctx;
    encode(c->out, DLOG_ADD, c->kind, c->owner, key, expires_ms);
}

static void encode_snapshot(buf_t *out) {
    uint64_t now = (uint64_t)(ev_time() * 1000.0);
    for (vhost_t *vh = broker.vhosts.vhosts; vh; vh = vh->next) {
        exchange_t *x, *xt;
        queue_t *q, *qt;
        HASH_ITER(hh, vh->exchanges, x, xt) {
            snap_ctx_t c = {out, DEDUP_LOG_EXCHANGE, x};
            if (x->dedup && owner_durable(c.kind, x)) dedup_each(x->dedup, now, snap_entry, &c);
        }
        HASH_ITER(hh, vh->queues, q, qt) {
            snap_ctx_t c = {out, DEDUP_LOG_QUEUE, q};
            if (q->dedup && owner_durable(c.kind, q)) dedup_each(q->dedup, now, snap_entry, &c);
        }
    }
}

/* Write a snapshot beside the log, rename it over the log, reopen. */
static int snapshot(dedup_log_t *l) {
    buf_t snap = {0};
    char tmp[4096];
    int fd, rc = -1;
    snprintf(tmp, sizeof tmp, "%s.new", l->path);
    encode_snapshot(&snap);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || fileio_write_all(fd, buf_head(&snap), buf_pending(&snap)) < 0 ||
        fdatasync(fd) < 0 || rename(tmp, l->path) < 0) {
        log_error("cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    fileio_sync_dir(l->dir);
    if (l->fd >= 0) {
        if (broker.syncer) syncer_forget(broker.syncer, l->fd);
        close(l->fd);
    }
    l->fd = open(l->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    l->size = l->snapshot_size = buf_pending(&snap);
    rc = l->fd >= 0 ? 0 : -1;
out:
    if (fd >= 0) close(fd);
    if (rc < 0) unlink(tmp);
    buf_free(&snap);
    return rc;
}

void dedup_log_flush(void) {
    dedup_log_t *l = &broker.dedup_log;
    if (l->fd < 0 || buf_pending(&l->out) == 0) return;
    if (fileio_write_all(l->fd, buf_head(&l->out), buf_pending(&l->out)) < 0) {
        /* The window is lost for these values after a restart; nothing else. */
        log_error("cannot append to %s: %s", l->path, strerror(errno));
    } else {
        l->size += buf_pending(&l->out);
        if (broker.syncer && broker.cfg.journal_sync != JOURNAL_SYNC_OFF)
            syncer_request(broker.syncer, l->fd);
    }
    buf_consume(&l->out, buf_pending(&l->out));
    buf_release(&l->out);
    if (l->size > 2 * l->snapshot_size + DLOG_SLACK) snapshot(l);
}

/* ---- replay ------------------------------------------------------------------------ */

static void replay_record(const record_t *rec, void *ctx) {
    uint64_t now = *(const uint64_t *)ctx;
    wn_reader_t r;
    wn_reader_init(&r, rec->payload, rec->len);
    uint8_t kind = wn_get8(&r);
    wn_bytes_t vname = wn_get_shortstr(&r);
    wn_bytes_t name = wn_get_shortstr(&r);
    vhost_t *vh = r.err ? NULL : vhost_find(&broker.vhosts, vname);
    dedup_t *d = vh ? owner_cache(kind, vh, name) : NULL;
    if (!d) return; /* its owner is gone, or not deduplicating any more */
    if (rec->type == DLOG_FORGET) {
        dedup_clear(d);
        return;
    }
    uint64_t expires = wn_get64(&r);
    wn_bytes_t key = wn_get_shortstr(&r);
    if (!r.err && rec->type == DLOG_ADD) dedup_restore(d, key, expires, now);
}

int dedup_log_open(dedup_log_t *l, const char *data_dir) {
    char path[4096];
    uint8_t *data;
    size_t len;
    record_scan_t scan;
    uint64_t now = (uint64_t)(ev_time() * 1000.0);
    l->fd = -1;
    snprintf(path, sizeof path, "%s/dedup.log", data_dir);
    l->path = strdup(path);
    l->dir = strdup(data_dir);
    if (!l->path || !l->dir || fileio_read_all(l->path, &data, &len) < 0) {
        log_error("cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    record_scan(data, len, DLOG_MAX_RECORD, replay_record, &now, &scan);
    free(data);
    if (scan.skipped || scan.torn)
        log_warning("%s: skipped %zu bytes of corrupt records and %zu of a torn tail", l->path,
                    scan.skipped, scan.torn);
    if (snapshot(l) == 0) return 0;
    /* No room for a snapshot: append to the old log, cut at its last good record. */
    l->fd = open(l->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (l->fd < 0 || ftruncate(l->fd, (off_t)scan.end) < 0) {
        log_error("cannot open %s: %s", l->path, strerror(errno));
        return -1;
    }
    l->size = l->snapshot_size = scan.end;
    return 0;
}

void dedup_log_close(dedup_log_t *l) {
    if (l->fd >= 0) {
        dedup_log_flush();
        close(l->fd);
    }
    l->fd = -1;
    buf_free(&l->out);
    free(l->path);
    free(l->dir);
    l->path = l->dir = NULL;
}
