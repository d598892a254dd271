/*
 * record.c - framing and checking journal records (see record.h and
 * docs/journal.md). CRC32C is Intel ISA-L's crc32_iscsi (Debian libisal-dev).
 */
#include "record.h"
#include "bytes.h"

#include <isa-l/crc.h>

uint32_t record_crc32c_more(uint32_t crc, const void *p, size_t n) {
    /* ISA-L takes the running CRC without the final inversion. */
    uint32_t c = ~crc;
    const unsigned char *b = p;
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        c = crc32_iscsi((unsigned char *)b, chunk, c);
        b += chunk;
        n -= (size_t)chunk;
    }
    return ~c;
}

uint32_t record_crc32c(const void *p, size_t n) {
    return record_crc32c_more(0, p, n);
}

void record_header(uint8_t hdr[RECORD_HEADER_SIZE], uint8_t type, const record_part_t *parts,
                   int nparts) {
    uint32_t crc = 0;
    size_t len = 0;
    for (int i = 0; i < nparts; i++) {
        crc = record_crc32c_more(crc, parts[i].p, parts[i].n);
        len += parts[i].n;
    }
    wn_store32(hdr, (uint32_t)len);
    hdr[4] = type;
    wn_store32(hdr + 5, crc);
    wn_store32(hdr + 9, record_crc32c(hdr, 9));
}

long record_check(const uint8_t *buf, size_t len, uint32_t max_len, record_t *r) {
    if (len < RECORD_HEADER_SIZE) return 0;
    if (wn_load32(buf + 9) != record_crc32c(buf, 9)) return -1;
    uint32_t plen = wn_load32(buf);
    if (plen > max_len) return -1;
    if (len - RECORD_HEADER_SIZE < plen) return 0;
    if (wn_load32(buf + 5) != record_crc32c(buf + RECORD_HEADER_SIZE, plen)) return -1;
    r->type = buf[4];
    r->len = plen;
    r->payload = buf + RECORD_HEADER_SIZE;
    return (long)(RECORD_HEADER_SIZE + plen);
}

/* The next offset at or after `from` where a whole good record starts, or len. */
static size_t record_resync(const uint8_t *buf, size_t len, size_t from, uint32_t max_len) {
    record_t r;
    for (size_t off = from; off + RECORD_HEADER_SIZE <= len; off++)
        if (record_check(buf + off, len - off, max_len, &r) > 0) return off;
    return len;
}

void record_scan(const uint8_t *buf, size_t len, uint32_t max_len,
                 void (*visit)(const record_t *r, void *ctx), void *ctx, record_scan_t *out) {
    size_t off = 0;
    *out = (record_scan_t){0};
    while (off < len) {
        record_t r;
        long n = record_check(buf + off, len - off, max_len, &r);
        if (n > 0) {
            r.offset = off;
            visit(&r, ctx);
            out->records++;
            off += (size_t)n;
            out->end = off;
            continue;
        }
        /* Incomplete or bad here: good records further on mean damage in the
         * middle, to be skipped; none means a torn tail. */
        size_t next = record_resync(buf, len, off + 1, max_len);
        if (next == len) break;
        out->skipped += next - off;
        out->corruptions++;
        off = next;
    }
    out->torn = len - out->end;
}
