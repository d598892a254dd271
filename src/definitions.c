/*
 * definitions.c - the definitions log (see definitions.h, docs/journal.md).
 *
 * Owns the log file. Reads and creates exchanges, queues, bindings and
 * vhosts through their modules while replaying; afterwards only observes
 * changes and writes them down.
 */
#include "definitions.h"
#include "broker.h"
#include "buffer.h"
#include "delay.h"
#include "exchange.h"
#include "fileio.h"
#include "log.h"
#include "queue.h"
#include "record.h"
#include "syncer.h"
#include "table.h"
#include "vhost.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define DEFS_VERSION       "warren-journal 1\n"
#define DEFS_MAX_RECORD    (16u << 20)
#define DEFS_COMPACT_SLACK (1u << 20) /* compact once the log outgrows 2x snapshot + 1 MiB */

enum {
    DEF_EXCHANGE_DECLARE = 64,
    DEF_EXCHANGE_DELETE = 65,
    DEF_QUEUE_DECLARE = 66,
    DEF_QUEUE_DELETE = 67,
    DEF_BINDING_ADD = 68,
    DEF_BINDING_REMOVE = 69,
    DEF_QUEUE_ID_FLOOR = 70, /* the next queue id: ids of deleted queues are never reused */
};

enum { DEF_DURABLE = 1, DEF_AUTO_DELETE = 2, DEF_INTERNAL = 4 };

/* ---- which objects are durable ----------------------------------------------- */

static bool exchange_recorded(const exchange_t *x) {
    return x->durable && !x->builtin;
}
static bool queue_recorded(const queue_t *q) {
    return q->durable && !q->exclusive;
}
static bool binding_recorded(const binding_t *b) {
    if (!b->source->durable) return false;
    return b->queue ? queue_recorded(b->queue) : b->exchange->durable;
}

/* ---- encoding ------------------------------------------------------------------ */

static void put_name(wn_writer_t *w, const char *s) {
    wn_put_shortstr(w, wn_cstr(s));
}

/* Start a record at the end of out: room for its header and up to `cap`
 * bytes of payload, which the caller writes through w. */
static uint8_t *record_begin(buf_t *out, size_t cap, wn_writer_t *w) {
    uint8_t *start = buf_reserve(out, RECORD_HEADER_SIZE + cap);
    wn_writer_init(w, start + RECORD_HEADER_SIZE, cap);
    return start;
}

/* Fill in the header and keep the record (dropped if the payload overflowed). */
static void record_end(buf_t *out, uint8_t *start, uint8_t type, const wn_writer_t *w) {
    if (w->overflow) return;
    record_part_t part = {w->buf, w->len};
    record_header(start, type, &part, 1);
    buf_commit(out, RECORD_HEADER_SIZE + w->len);
}

/* Room for a record's names (vhost, object, type or key: shortstrs). */
#define NAMES_ROOM 1280

static void encode_exchange(buf_t *out, const exchange_t *x, bool declared) {
    wn_writer_t w;
    uint8_t *start = record_begin(out, NAMES_ROOM + x->args.len, &w);
    put_name(&w, x->vhost->name);
    wn_put_shortstr(&w, wn_bytes(x->name, x->name_len));
    if (declared) {
        put_name(&w, x->ops->name);
        wn_put8(&w, (uint8_t)(DEF_DURABLE | (x->auto_delete ? DEF_AUTO_DELETE : 0) |
                              (x->internal ? DEF_INTERNAL : 0)));
        wn_put_longstr(&w, x->args);
        if (delay_store_id(x)) wn_put32(&w, delay_store_id(x)); /* delayed: its store id */
    }
    record_end(out, start, declared ? DEF_EXCHANGE_DECLARE : DEF_EXCHANGE_DELETE, &w);
}

static void encode_queue(buf_t *out, const queue_t *q, bool declared) {
    wn_writer_t w;
    uint8_t *start = record_begin(out, NAMES_ROOM + q->args.len, &w);
    put_name(&w, q->vhost->name);
    wn_put_shortstr(&w, wn_bytes(q->name, q->name_len));
    if (declared) {
        wn_put32(&w, q->durable_id);
        wn_put8(&w, (uint8_t)(DEF_DURABLE | (q->auto_delete ? DEF_AUTO_DELETE : 0)));
        wn_put_longstr(&w, q->args);
    }
    record_end(out, start, declared ? DEF_QUEUE_DECLARE : DEF_QUEUE_DELETE, &w);
}

static void encode_binding(buf_t *out, const binding_t *b, bool added) {
    wn_writer_t w;
    uint8_t *start = record_begin(out, NAMES_ROOM + b->args.len, &w);
    put_name(&w, b->source->vhost->name);
    /* Names may hold NUL bytes: write them by length, never by strlen. */
    wn_put_shortstr(&w, wn_bytes(b->source->name, b->source->name_len));
    wn_put8(&w, b->queue ? 0 : 1);
    wn_put_shortstr(&w, b->queue ? wn_bytes(b->queue->name, b->queue->name_len)
                                 : wn_bytes(b->exchange->name, b->exchange->name_len));
    wn_put_shortstr(&w, b->key);
    wn_put_longstr(&w, b->args);
    record_end(out, start, added ? DEF_BINDING_ADD : DEF_BINDING_REMOVE, &w);
}

/* ---- writing ---------------------------------------------------------------------- */

/* Everything live, as records: the queue id floor, exchanges and queues,
 * then the bindings. */
static void encode_snapshot(buf_t *out) {
    wn_writer_t w;
    uint8_t *start = record_begin(out, 4, &w);
    wn_put32(&w, broker.next_queue_id);
    record_end(out, start, DEF_QUEUE_ID_FLOOR, &w);
    for (vhost_t *vh = broker.vhosts.vhosts; vh; vh = vh->next) {
        exchange_t *x, *xt;
        queue_t *q, *qt;
        binding_t *b, *bt;
        HASH_ITER(hh, vh->exchanges, x, xt) if (exchange_recorded(x)) encode_exchange(out, x, true);
        HASH_ITER(hh, vh->queues, q, qt) if (queue_recorded(q)) encode_queue(out, q, true);
        HASH_ITER(hh, vh->bindings, b, bt) if (binding_recorded(b)) encode_binding(out, b, true);
    }
}

/* Write a snapshot beside the log and rename it over the log. */
static int definitions_compact(definitions_t *d) {
    buf_t snap = {0};
    char tmp[4096];
    int fd, rc = -1;

    snprintf(tmp, sizeof tmp, "%s.new", d->path);
    encode_snapshot(&snap);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0 || fileio_write_all(fd, buf_head(&snap), buf_pending(&snap)) < 0 ||
        fdatasync(fd) < 0) {
        log_error("cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, d->path) < 0 || fileio_sync_dir(d->dir) < 0) {
        log_error("cannot replace %s: %s", d->path, strerror(errno));
        goto out;
    }
    if (d->fd >= 0) {
        if (broker.syncer) syncer_forget(broker.syncer, d->fd);
        close(d->fd);
    }
    d->fd = open(d->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (d->fd < 0) {
        log_error("cannot open %s: %s", d->path, strerror(errno));
        goto out;
    }
    d->size = d->snapshot_size = buf_pending(&snap);
    rc = 0;
out:
    if (fd >= 0) close(fd);
    if (rc < 0) unlink(tmp);
    buf_free(&snap);
    return rc;
}

static void definitions_append(buf_t *rec) {
    definitions_t *d = &broker.defs;
    if (d->fd < 0 || d->suspended) return;
    if (fileio_write_all(d->fd, buf_head(rec), buf_pending(rec)) < 0) {
        log_error("cannot append to %s: %s; durable definitions may not survive a restart", d->path,
                  strerror(errno));
        return;
    }
    d->size += buf_pending(rec);
    if (broker.syncer) syncer_request(broker.syncer, d->fd);
    /* Not now: a deletion is recorded before it is applied, so a snapshot taken
     * here would still hold the object being deleted. */
    if (d->size > 2 * d->snapshot_size + DEFS_COMPACT_SLACK) d->compact_due = true;
}

void definitions_compact_if_due(definitions_t *d) {
    if (!d->compact_due || d->fd < 0) return;
    d->compact_due = false;
    definitions_compact(d);
}

void definitions_exchange(exchange_t *x, bool declared) {
    buf_t rec = {0};
    if (broker.defs.fd < 0 || broker.defs.suspended || !exchange_recorded(x)) return;
    encode_exchange(&rec, x, declared);
    definitions_append(&rec);
    buf_free(&rec);
}

void definitions_queue(queue_t *q, bool declared) {
    buf_t rec = {0};
    if (broker.defs.suspended || !queue_recorded(q)) return;
    if (declared && q->durable_id == 0) q->durable_id = broker.next_queue_id++;
    if (broker.defs.fd < 0) return;
    encode_queue(&rec, q, declared);
    definitions_append(&rec);
    buf_free(&rec);
}

void definitions_binding(binding_t *b, bool added) {
    buf_t rec = {0};
    if (broker.defs.fd < 0 || broker.defs.suspended || !binding_recorded(b)) return;
    encode_binding(&rec, b, added);
    definitions_append(&rec);
    buf_free(&rec);
}

/* ---- replay ---------------------------------------------------------------------- */

typedef struct replay {
    unsigned applied, ignored;
} replay_t;

static vhost_t *replay_vhost(wn_bytes_t name) {
    char buf[256];
    vhost_t *vh = vhost_find(&broker.vhosts, name);
    if (vh) return vh;
    /* Keep objects of a vhost no longer configured rather than lose them. */
    snprintf(buf, sizeof buf, "%.*s", (int)name.len, (const char *)name.ptr);
    log_warning("definitions: vhost '%s' is not configured; keeping its objects", buf);
    vh = vhost_add(&broker.vhosts, buf);
    if (vh && exchange_declare_builtins(vh) < 0) return NULL;
    return vh;
}

static bool args_ok(wn_bytes_t args) {
    return wn_table_validate(args.ptr, args.len) == 0;
}

/* A delayed exchange's store id, after its arguments (ids are never reused). */
static void replay_store_id(wn_reader_t *r, exchange_t *x) {
    uint32_t id = wn_reader_left(r) >= 4 ? wn_get32(r) : 0;
    if (id == 0) id = broker.next_queue_id++;
    if (id >= broker.next_queue_id) broker.next_queue_id = id + 1;
    delay_set_store_id(x, id);
}

static bool replay_exchange(wn_reader_t *r, vhost_t *vh, wn_bytes_t name, bool declare) {
    exchange_t *x = exchange_find(vh, name);
    if (!declare) {
        if (x && !x->builtin) exchange_delete(x);
        return true;
    }
    wn_bytes_t type = wn_get_shortstr(r);
    uint8_t flags = wn_get8(r);
    wn_bytes_t args = wn_get_longstr(r);
    const exchange_ops_t *ops = exchange_type_find(type);
    if (r->err || !ops || !args_ok(args)) return false;
    if (x) return true;
    x = exchange_create(vh, name, ops, true, flags & DEF_AUTO_DELETE, flags & DEF_INTERNAL, args);
    if (x && ops == &exchange_delayed_ops) replay_store_id(r, x);
    return x != NULL;
}

static bool replay_queue(wn_reader_t *r, vhost_t *vh, wn_bytes_t name, bool declare) {
    queue_t *q = queue_find(vh, name);
    if (!declare) {
        if (q) queue_delete(q);
        return true;
    }
    uint32_t id = wn_get32(r);
    uint8_t flags = wn_get8(r);
    wn_bytes_t args = wn_get_longstr(r);
    if (r->err || id == 0 || !args_ok(args)) return false;
    if (q) return true;
    /* Ids are never reused: the next one is past every id ever recorded. */
    if (id >= broker.next_queue_id) broker.next_queue_id = id + 1;
    q = queue_create(vh, name, true, false, flags & DEF_AUTO_DELETE, NULL, args);
    if (q) q->durable_id = id;
    return q != NULL;
}

static bool replay_binding(wn_reader_t *r, vhost_t *vh, wn_bytes_t source, bool add) {
    uint8_t kind = wn_get8(r);
    wn_bytes_t dest = wn_get_shortstr(r);
    wn_bytes_t key = wn_get_shortstr(r);
    wn_bytes_t args = wn_get_longstr(r);
    exchange_t *src = exchange_find(vh, source);
    queue_t *q = kind == 0 ? queue_find(vh, dest) : NULL;
    exchange_t *dx = kind == 1 ? exchange_find(vh, dest) : NULL;
    if (r->err || kind > 1 || !args_ok(args)) return false;
    if (!src || (!q && !dx)) return !add; /* its ends were deleted later in the log */
    binding_t *b = binding_find(src, q, dx, key, args);
    if (add && !b) return binding_add(src, q, dx, key, args) != NULL;
    if (!add && b) binding_remove(b);
    return true;
}

static void replay_record(const record_t *rec, void *ctx) {
    replay_t *rp = ctx;
    wn_reader_t r;
    wn_reader_init(&r, rec->payload, rec->len);
    if (rec->type == DEF_QUEUE_ID_FLOOR) {
        uint32_t floor = wn_get32(&r);
        if (!r.err && floor > broker.next_queue_id) broker.next_queue_id = floor;
        rp->applied++;
        return;
    }
    wn_bytes_t vname = wn_get_shortstr(&r);
    wn_bytes_t name = wn_get_shortstr(&r);
    vhost_t *vh = r.err ? NULL : replay_vhost(vname);
    bool ok = false;
    if (vh) {
        switch (rec->type) {
        case DEF_EXCHANGE_DECLARE:
        case DEF_EXCHANGE_DELETE:
            ok = replay_exchange(&r, vh, name, rec->type == DEF_EXCHANGE_DECLARE);
            break;
        case DEF_QUEUE_DECLARE:
        case DEF_QUEUE_DELETE:
            ok = replay_queue(&r, vh, name, rec->type == DEF_QUEUE_DECLARE);
            break;
        case DEF_BINDING_ADD:
        case DEF_BINDING_REMOVE:
            ok = replay_binding(&r, vh, name, rec->type == DEF_BINDING_ADD);
            break;
        }
    }
    if (ok)
        rp->applied++;
    else
        rp->ignored++;
}

static int check_version(const char *data_dir) {
    char path[4096], have[64] = "";
    snprintf(path, sizeof path, "%s/VERSION", data_dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        f = fopen(path, "w");
        if (!f || fputs(DEFS_VERSION, f) < 0 || fclose(f) != 0) {
            log_error("cannot write %s: %s", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (!fgets(have, sizeof have, f)) have[0] = '\0';
    fclose(f);
    if (strcmp(have, DEFS_VERSION) != 0) {
        log_error("%s says this data directory is '%.*s', not '%.*s': refusing to start", path,
                  (int)strcspn(have, "\n"), have, (int)strlen(DEFS_VERSION) - 1, DEFS_VERSION);
        return -1;
    }
    return 0;
}

int definitions_open(definitions_t *d, const char *data_dir) {
    replay_t rp = {0};
    record_scan_t scan;
    uint8_t *data;
    size_t len;
    char path[4096];

    d->fd = -1;
    if (check_version(data_dir) < 0) return -1;
    d->dir = strdup(data_dir);
    snprintf(path, sizeof path, "%s/definitions.log", data_dir);
    d->path = strdup(path);
    if (fileio_read_all(d->path, &data, &len) < 0) {
        log_error("cannot read %s: %s", d->path, strerror(errno));
        return -1;
    }
    d->suspended = true;
    record_scan(data, len, DEFS_MAX_RECORD, replay_record, &rp, &scan);
    d->suspended = false;
    free(data);
    if (scan.skipped)
        log_warning("%s: skipped %zu bytes of %u corrupt records", d->path, scan.skipped,
                    scan.corruptions);
    if (scan.torn) log_warning("%s: dropped %zu bytes of a torn tail", d->path, scan.torn);
    if (scan.records)
        log_info("definitions: replayed %zu records from %s (%u ignored)", scan.records, d->path,
                 rp.ignored);
    if (definitions_compact(d) == 0) return 0;
    /* No room for a snapshot (a full disk): go on appending to the old log,
     * cut at its last good record. */
    d->fd = open(d->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (d->fd < 0 || ftruncate(d->fd, (off_t)scan.end) < 0) {
        log_error("cannot open %s: %s", d->path, strerror(errno));
        return -1;
    }
    log_warning("definitions: appending to %s without a fresh snapshot", d->path);
    d->size = d->snapshot_size = scan.end;
    return 0;
}

void definitions_close(definitions_t *d) {
    if (d->fd >= 0) close(d->fd);
    d->fd = -1;
    free(d->path);
    free(d->dir);
    d->path = d->dir = NULL;
}
