/*
 * perf_stats.h - latency histograms for warren-perf, and the clock.
 *
 * Log-linear buckets, as HdrHistogram: values below 64 ns get a bucket each,
 * above that every power of two is split into 32 buckets, so any value is
 * known to about 3% with a fixed 9 KiB table and no allocation per message.
 * Values are nanoseconds, up to 2^40 (18 minutes); larger ones land in the
 * last bucket.
 *
 * A consumer records into a perf_hist_live_t with relaxed atomics (one
 * uncontended add per message); the reporting thread moves the counts out
 * once a second into plain perf_hist_t for the second and for the run.
 */
#ifndef PERF_STATS_H
#define PERF_STATS_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define PERF_HIST_SUB_BITS 5
#define PERF_HIST_SUB      (1u << PERF_HIST_SUB_BITS)
#define PERF_HIST_MAX_BITS 40
#define PERF_HIST_BUCKETS  ((PERF_HIST_MAX_BITS - PERF_HIST_SUB_BITS + 1) * PERF_HIST_SUB)

typedef struct perf_hist {
    uint64_t count;
    uint64_t max;
    uint64_t buckets[PERF_HIST_BUCKETS];
} perf_hist_t;

typedef struct perf_hist_live {
    _Atomic uint64_t max;
    _Atomic uint64_t buckets[PERF_HIST_BUCKETS];
} perf_hist_live_t;

static inline uint64_t perf_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void perf_hist_reset(perf_hist_t *h);
void perf_hist_add(perf_hist_t *into, const perf_hist_t *from);
/* The value (ns) at quantile q (0..1): the middle of its bucket, at most the
 * maximum seen. 0 for an empty histogram. */
uint64_t perf_hist_quantile(const perf_hist_t *h, double q);

void perf_hist_live_record(perf_hist_live_t *h, uint64_t ns);
/* Move everything recorded so far into `into` and start again from zero. */
void perf_hist_live_take(perf_hist_live_t *h, perf_hist_t *into);

#endif /* PERF_STATS_H */
