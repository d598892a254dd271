/*
 * store.h - persistent messages on disk: the message segments of the journal
 * (docs/journal.md, "Message segments").
 *
 * A persistent message routed to durable queues is written once, as a MSG
 * record naming every durable queue it reached; its queues keep only where
 * the record is (qentry_t.seg/off/len) and may drop the body from memory,
 * reading it back when it is delivered. ACK records say a message left a
 * queue; DELIVERED records say it was handed to a consumer (it comes back
 * redelivered after a restart).
 *
 * Records are appended to a buffer and written with one write() per loop
 * iteration (store_flush); the fsync thread then makes them durable, and
 * publish.c is told which flushes are on disk so that it can send the
 * confirms that waited for them. Segments whose messages are all gone are
 * deleted.
 *
 * Touches queues (recovery pushes the messages it finds) and nothing else.
 */
#ifndef WARREN_STORE_H
#define WARREN_STORE_H

#include "buffer.h"
#include "message.h"
#include "queue.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct segment {
    uint32_t no;          /* the file is msgs/<no>.seg, numbered from 1 in write order */
    int fd;               /* open for reading (and appending, for the current one) */
    uint64_t size;        /* bytes written to the file */
    uint64_t live;        /* (queue, message) pairs of its MSG records still in a queue */
    uint64_t live_bytes;  /* their record bytes (a record counted once per queue) */
    uint32_t min_ref;     /* the oldest segment its ACK and DELIVERED records refer to */
    uint64_t moved_flush; /* compacted: may go once this flush is durable */
    bool compacting;
} segment_t;

typedef struct store {
    char *dir; /* data_dir/msgs */
    int dir_fd;
    segment_t *segs; /* existing segments, by number; the last one is written to */
    uint32_t nsegs, cap;
    uint32_t next_no;
    buf_t out;                     /* records not yet written */
    uint64_t cur_written;          /* bytes of the current segment written to its file */
    bool dir_dirty;                /* a segment was created: the directory needs a sync */
    uint64_t flushes;              /* complete flushes so far */
    uint64_t durable_flush;        /* every flush up to this one is on stable storage */
    struct store_pending *pending; /* flushes waiting for their sync, oldest first */
    uint32_t npending, pending_cap;
    bool write_failed;      /* the last write() failed; records wait in `out` */
    ev_timer retry_timer;   /* tries again while write_failed */
    bool collect_due;       /* a segment may have become deletable */
    ev_tstamp last_compact; /* when segments were last compacted */
    uint64_t compactions;   /* segments compacted since start */
    bool closed;            /* not open yet, or tearing down: nothing is recorded */
    uint64_t messages;      /* MSG records written since start (for metrics) */
    uint8_t *scratch;       /* reading records back */
    size_t scratch_cap;
} store_t;

/* Create data_dir/msgs if needed and recover every segment in it into the
 * durable queues (which definitions_open has created). 0 or -1 (logged). */
int store_open(store_t *s, const char *data_dir);
/* Write what is buffered and close the files (nothing is deleted). */
void store_close(store_t *s);

/* Is this message kept on disk when it is routed to this queue? */
static inline bool store_wanted(const queue_t *q, const message_t *m) {
    return q->durable_id != 0 && m->delivery_mode == 2;
}

/* Append a MSG record for m naming these durable queues; fills *at with where
 * it is. false if it could not be buffered (the message is then not stored). */
bool store_write_msg(message_t *m, queue_t *const *qs, uint32_t n, qentry_t *at);
/* The same for owners named by their store ids (a durable delayed exchange's
 * id comes from the queue id space, delay.h). */
bool store_write_msg_ids(message_t *m, const uint32_t *ids, uint32_t n, qentry_t *at);

/* The message of a stored entry left its queue: recorded unless the queue
 * itself is gone, and counted off its segment. Nothing for unstored entries. */
void store_ack(queue_t *q, const qentry_t *e);
/* The same by store id: `record` false when the owner itself is gone. */
void store_ack_id(uint32_t id, bool record, const qentry_t *e);
/* A stored entry is being delivered for the first time. */
void store_delivered(queue_t *q, const qentry_t *e);

/* Read a stored entry's message back from disk; NULL (logged) if it cannot. */
message_t *store_load(const qentry_t *e);
/* The same, with the record's publish time (ms since the epoch). */
message_t *store_load_ts(const qentry_t *e, uint64_t *published_ms);

/* The flush that will carry every record appended so far: it is durable once
 * store.durable_flush reaches it. */
static inline uint64_t store_next_flush(const store_t *s) {
    return s->flushes + 1;
}

/* Write buffered records and ask for them to be synced (the loop calls this
 * before it writes replies, so no reply overtakes its record). */
void store_flush(void);
/* The fsync thread finished up to `ticket` (broker.c passes it on). */
void store_synced(uint64_t ticket, int err);

#endif
