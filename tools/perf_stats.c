/*
 * perf_stats.c - the log-linear latency histogram: bucket arithmetic,
 * recording from consumer threads, quantiles for the report.
 */
#include "perf_stats.h"

#include <string.h>

#define HIST_LINEAR (2 * PERF_HIST_SUB) /* values below this have a bucket each */
#define HIST_LIMIT  ((uint64_t)1 << PERF_HIST_MAX_BITS)

static unsigned hist_index(uint64_t v) {
    if (v >= HIST_LIMIT) v = HIST_LIMIT - 1;
    if (v < HIST_LINEAR) return (unsigned)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - PERF_HIST_SUB_BITS;
    return shift * PERF_HIST_SUB + (unsigned)(v >> shift);
}

static uint64_t hist_low(unsigned i) {
    if (i < HIST_LINEAR) return i;
    unsigned shift = i / PERF_HIST_SUB - 1;
    return (uint64_t)(i % PERF_HIST_SUB + PERF_HIST_SUB) << shift;
}

static uint64_t hist_width(unsigned i) {
    return i < HIST_LINEAR ? 1 : (uint64_t)1 << (i / PERF_HIST_SUB - 1);
}

void perf_hist_reset(perf_hist_t *h) {
    memset(h, 0, sizeof *h);
}

void perf_hist_add(perf_hist_t *into, const perf_hist_t *from) {
    for (unsigned i = 0; i < PERF_HIST_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
    into->count += from->count;
    if (from->max > into->max) into->max = from->max;
}

uint64_t perf_hist_quantile(const perf_hist_t *h, double q) {
    if (h->count == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.5);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < PERF_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t mid = hist_low(i) + hist_width(i) / 2;
            return mid < h->max ? mid : h->max;
        }
    }
    return h->max;
}

void perf_hist_live_record(perf_hist_live_t *h, uint64_t ns) {
    atomic_fetch_add_explicit(&h->buckets[hist_index(ns)], 1, memory_order_relaxed);
    uint64_t max = atomic_load_explicit(&h->max, memory_order_relaxed);
    while (ns > max && !atomic_compare_exchange_weak_explicit(
                           &h->max, &max, ns, memory_order_relaxed, memory_order_relaxed))
        ;
}

void perf_hist_live_take(perf_hist_live_t *h, perf_hist_t *into) {
    for (unsigned i = 0; i < PERF_HIST_BUCKETS; i++) {
        if (atomic_load_explicit(&h->buckets[i], memory_order_relaxed) == 0) continue;
        uint64_t n = atomic_exchange_explicit(&h->buckets[i], 0, memory_order_relaxed);
        into->buckets[i] += n;
        into->count += n;
    }
    uint64_t max = atomic_exchange_explicit(&h->max, 0, memory_order_relaxed);
    if (max > into->max) into->max = max;
}
