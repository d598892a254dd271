/*
 * store_int.h - what the message store's files share: store.c (writing,
 * reading back, deleting), store_compact.c and store_recover.c. Nothing
 * else includes it.
 */
#ifndef WARREN_STORE_INT_H
#define WARREN_STORE_INT_H

#include "record.h"
#include "store.h"

/* Record types of the message segments (docs/journal.md). */
enum { REC_MSG = 1, REC_ACK = 2, REC_DELIVERED = 3, REC_MOVED = 4 };

/* A MOVED record's fields before its MSG-like rest: order place, from place. */
#define MOVED_PREFIX 16

#define STORE_MAX_RECORD       (1u << 30)
#define STORE_COMPACT_INTERVAL 1.0 /* seconds between compactions */

segment_t *store_seg_find(store_t *s, uint32_t no);
void store_seg_path(const store_t *s, uint32_t no, char *out, size_t len);
/* Add a segment at the end of the table (numbers only grow). */
segment_t *store_seg_add(store_t *s, uint32_t no, int fd, uint64_t size);

/* Buffer a record for the current segment; its offset goes to *off. NULL if
 * there is no segment to put it in. */
segment_t *store_append(store_t *s, uint8_t type, const record_part_t *parts, int nparts,
                        uint32_t *off);
/* The bytes of a stored entry's record (from the file, or from the write buffer). */
const uint8_t *store_read_record(store_t *s, segment_t *g, const qentry_t *e);

/* Compact the segments worth it (store_compact.c). */
void store_compact(store_t *s);
/* Scan the segments into the durable queues (store_recover.c). 0 or -1 (logged). */
int store_recover(store_t *s);

#endif
