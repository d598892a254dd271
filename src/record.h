/*
 * record.h - the checksummed records that Warren's journal files are made of
 * (docs/journal.md): a 13-byte header (payload length, type, payload CRC32C,
 * header CRC32C) and the payload.
 *
 * This module only frames and checks bytes; it knows nothing of what the
 * payloads mean, and does no I/O.
 */
#ifndef WARREN_RECORD_H
#define WARREN_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RECORD_HEADER_SIZE 13

/* CRC32C (Castagnoli), the standard variant: crc32c("123456789") = 0xE3069283. */
uint32_t record_crc32c(const void *p, size_t n);
/* The same, continued over more bytes: pass the previous result. */
uint32_t record_crc32c_more(uint32_t crc, const void *p, size_t n);

/* A payload given in pieces (a message's names, properties and body). */
typedef struct record_part {
    const void *p;
    size_t n;
} record_part_t;

/* Fill a record header for a payload made of `parts`; the caller writes the
 * header and then the parts (one writev). */
void record_header(uint8_t hdr[RECORD_HEADER_SIZE], uint8_t type, const record_part_t *parts,
                   int nparts);

/* A record in a buffer (the payload points into it). */
typedef struct record {
    uint8_t type;
    uint32_t len;
    const uint8_t *payload;
    size_t offset; /* of the header, from the start of the scanned buffer */
} record_t;

/*
 * Check the record at buf. Returns its total size (> 0) when it is whole and
 * both checksums match; 0 when buf ends before the record does (the header
 * says so, or there are fewer than 13 bytes); -1 when the bytes cannot be a
 * record (a header checksum or an impossible length) or the payload is
 * corrupt.
 */
long record_check(const uint8_t *buf, size_t len, uint32_t max_len, record_t *r);

/* What a scan found. */
typedef struct record_scan {
    size_t records;       /* good records visited */
    size_t end;           /* offset just past the last good record */
    size_t skipped;       /* bytes of corrupt records skipped between good ones */
    unsigned corruptions; /* separate runs of corrupt bytes skipped */
    size_t torn;          /* bytes after `end` that hold no good record (a torn tail) */
} record_scan_t;

/*
 * Walk a whole file image: visit every good record in order. A corrupt record
 * followed by a good one is skipped (the scan resynchronises at the next
 * offset where a whole record verifies); bad bytes with no good record after
 * them are the torn tail, reported in out->torn for the caller to truncate.
 */
void record_scan(const uint8_t *buf, size_t len, uint32_t max_len,
                 void (*visit)(const record_t *r, void *ctx), void *ctx, record_scan_t *out);

#endif
