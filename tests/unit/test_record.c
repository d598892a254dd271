/*
 * test_record.c - journal record framing (src/record.c): checksums, round
 * trips, torn tails at every offset, corruption anywhere, and resync speed.
 */
#include "record.h"
#include "tap.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXLEN (1u << 24)

typedef struct seen {
    size_t n;
    uint8_t types[64];
    uint32_t lens[64];
} seen_t;

static void visit(const record_t *r, void *ctx) {
    seen_t *s = ctx;
    if (s->n < 64) {
        s->types[s->n] = r->type;
        s->lens[s->n] = r->len;
    }
    s->n++;
}

/* Append one record with a payload of `n` bytes of `fill` to buf at *len. */
static void put(uint8_t *buf, size_t *len, uint8_t type, size_t n, uint8_t fill) {
    uint8_t *payload = malloc(n ? n : 1);
    memset(payload, fill, n);
    record_part_t part = {payload, n};
    record_header(buf + *len, type, &part, 1);
    memcpy(buf + *len + RECORD_HEADER_SIZE, payload, n);
    *len += RECORD_HEADER_SIZE + n;
    free(payload);
}

/* Five records of sizes 0, 1, 100, 1000, 40 with types 1..5. */
static size_t five(uint8_t *buf, size_t *ends) {
    static const size_t sizes[] = {0, 1, 100, 1000, 40};
    size_t len = 0;
    for (int i = 0; i < 5; i++) {
        put(buf, &len, (uint8_t)(i + 1), sizes[i], (uint8_t)(0x40 + i));
        ends[i] = len;
    }
    return len;
}

static void test_crc(void) {
    ok(record_crc32c("123456789", 9) == 0xE3069283u, "CRC32C check value of \"123456789\"");
    uint32_t c = record_crc32c_more(record_crc32c("1234", 4), "56789", 5);
    ok(c == 0xE3069283u, "CRC32C continued over two pieces");
    ok(record_crc32c("", 0) == 0, "CRC32C of nothing is 0");
}

static void test_parts(void) {
    uint8_t a[RECORD_HEADER_SIZE], b[RECORD_HEADER_SIZE];
    record_part_t three[] = {{"ab", 2}, {"", 0}, {"cdef", 4}};
    record_part_t one[] = {{"abcdef", 6}};
    record_header(a, 7, three, 3);
    record_header(b, 7, one, 1);
    ok(memcmp(a, b, sizeof a) == 0,
       "a header over three parts equals one over their concatenation");
}

static void test_round_trip(void) {
    uint8_t *buf = malloc(4096 + (1u << 20));
    size_t ends[5], len = five(buf, ends);
    seen_t s = {0};
    record_scan_t sc;
    record_scan(buf, len, MAXLEN, visit, &s, &sc);
    ok(s.n == 5 && sc.records == 5 && sc.end == len && sc.torn == 0 && sc.skipped == 0,
       "five records scan whole (%zu visited, end %zu of %zu)", s.n, sc.end, len);
    ok(s.types[0] == 1 && s.types[4] == 5 && s.lens[2] == 100 && s.lens[3] == 1000,
       "types and lengths come back");
    size_t big = 0;
    put(buf, &big, 9, 1u << 20, 0x5a);
    record_t r;
    ok(record_check(buf, big, MAXLEN, &r) == (long)big && r.len == (1u << 20) &&
           r.payload[7] == 0x5a,
       "a 1 MiB record checks");
    ok(record_check(buf, big, (1u << 20) - 1, &r) == -1, "a record longer than max_len is refused");
    free(buf);
}

static void test_torn(void) {
    uint8_t buf[4096];
    size_t ends[5], len = five(buf, ends);
    int bad = 0;
    /* Cut anywhere inside the last record: four records and a torn tail. */
    for (size_t cut = ends[3] + 1; cut < len; cut++) {
        seen_t s = {0};
        record_scan_t sc;
        record_scan(buf, cut, MAXLEN, visit, &s, &sc);
        if (s.n != 4 || sc.end != ends[3] || sc.torn != cut - ends[3] || sc.skipped != 0) bad++;
    }
    ok(bad == 0, "cut at each of the %zu offsets inside the last record: 4 records, the rest torn",
       len - ends[3] - 1);
    bad = 0;
    for (size_t cut = 0; cut < len; cut++) {
        seen_t s = {0};
        record_scan_t sc;
        record_scan(buf, cut, MAXLEN, visit, &s, &sc);
        size_t expect = 0;
        while (expect < 5 && ends[expect] <= cut)
            expect++;
        if (s.n != expect || sc.end + sc.torn != cut) bad++;
    }
    ok(bad == 0, "cut at every offset: exactly the whole records before the cut survive");
}

static void test_corrupt(void) {
    uint8_t buf[4096], copy[4096];
    size_t ends[5], len = five(buf, ends);
    int bad_mid = 0, bad_last = 0;
    /* Flip each byte of the middle record (index 2): the others survive. */
    for (size_t i = ends[1]; i < ends[2]; i++) {
        memcpy(copy, buf, len);
        copy[i] ^= 0x20;
        seen_t s = {0};
        record_scan_t sc;
        record_scan(copy, len, MAXLEN, visit, &s, &sc);
        if (s.n != 4 || sc.torn != 0 || sc.corruptions != 1 || sc.skipped != ends[2] - ends[1] ||
            s.types[2] != 4)
            bad_mid++;
    }
    ok(bad_mid == 0, "a flipped byte anywhere in a middle record skips just that record");
    for (size_t i = ends[3]; i < len; i++) {
        memcpy(copy, buf, len);
        copy[i] ^= 0x01;
        seen_t s = {0};
        record_scan_t sc;
        record_scan(copy, len, MAXLEN, visit, &s, &sc);
        if (s.n != 4 || sc.torn != len - ends[3] || sc.skipped != 0) bad_last++;
    }
    ok(bad_last == 0, "a flipped byte in the last record makes it a torn tail");

    /* Garbage before and between records is skipped. */
    size_t n = 0;
    memset(copy, 0xAB, 37);
    n = 37;
    memcpy(copy + n, buf, len);
    n += len;
    seen_t s = {0};
    record_scan_t sc;
    record_scan(copy, n, MAXLEN, visit, &s, &sc);
    ok(s.n == 5 && sc.skipped == 37 && sc.corruptions == 1 && sc.torn == 0,
       "37 bytes of garbage before the records are skipped");
}

static void test_resync_speed(void) {
    size_t n = 8u << 20;
    uint8_t *g = malloc(n + 64);
    srand(7);
    for (size_t i = 0; i < n; i++)
        g[i] = (uint8_t)rand();
    size_t len = n;
    put(g, &len, 3, 10, 0x11);
    seen_t s = {0};
    record_scan_t sc;
    clock_t t0 = clock();
    record_scan(g, len, MAXLEN, visit, &s, &sc);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    ok(s.n == 1 && sc.skipped == n, "8 MiB of random bytes then a record: the record is found");
    ok(secs < 5.0, "resync over 8 MiB of garbage stays linear (%.2fs)", secs);
    free(g);
}

int main(void) {
    test_crc();
    test_parts();
    test_round_trip();
    test_torn();
    test_corrupt();
    test_resync_speed();
    return tap_done();
}
