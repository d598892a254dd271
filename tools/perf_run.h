/*
 * perf_run.h - the state of one warren-perf run, shared between the main
 * thread (which starts, times, reports and stops everything) and the
 * producer and consumer threads (which each own one connection).
 *
 * Threads share only counters and flags, all atomics: each producer and
 * consumer writes its own counters, the main thread reads them once a
 * second. No locks on the message path.
 */
#ifndef PERF_RUN_H
#define PERF_RUN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "perf_opts.h"
#include "perf_stats.h"

typedef struct perf_run perf_run_t;

typedef struct perf_producer {
    perf_run_t *run;
    unsigned index; /* 0-based; messages print it 1-based */
    pthread_t thread;
    bool started;
    _Atomic uint64_t sent;      /* written to the socket */
    _Atomic uint64_t confirmed; /* basic.ack from the broker */
    _Atomic uint64_t nacked;    /* basic.nack from the broker */
    _Atomic bool blocked;       /* connection.blocked in force */
    _Atomic bool done;          /* stopped publishing, confirms settled */
} perf_producer_t;

typedef struct perf_consumer {
    perf_run_t *run;
    unsigned index;
    unsigned queue; /* 1-based: warren-perf.q.<queue> */
    pthread_t thread;
    bool started;
    _Atomic uint64_t received;  /* whole messages */
    _Atomic uint64_t reordered; /* a producer's sequence number went backwards */
    _Atomic bool ready;         /* consume-ok received */
    perf_hist_live_t latency;
} perf_consumer_t;

struct perf_run {
    const perf_opts_t *opts;
    perf_producer_t *producers;
    perf_consumer_t *consumers;
    _Atomic bool stop_producing;
    _Atomic bool stop_consuming;
    _Atomic bool failed;  /* some thread reported an error */
    pthread_mutex_t lock; /* guards error */
    char error[512];      /* the first error reported */
};

/* Print "warren-perf: <who>: <message>" to stderr and mark the run failed;
 * the first such message is kept in run->error for the result. */
void perf_fail(perf_run_t *run, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Thread bodies (pthread start routines). */
void *perf_producer_main(void *producer);
void *perf_consumer_main(void *consumer);

/* Declare the exchange and queues, bind and purge them (perf_setup.c).
 * 0, or -1 after perf_fail. */
int perf_setup_declare(perf_run_t *run);
/* The name of queue i (from 1) of a run. */
void perf_queue_name(char *buf, size_t cap, const perf_opts_t *o, unsigned i);
/* Delete the queues; failures are reported but do not fail the run. */
void perf_setup_teardown(perf_run_t *run);

/* The numbers a run ends with (perf_main.c fills, perf_report.c prints). */
typedef struct perf_result {
    double seconds; /* from the first publish to the stop */
    double drain_seconds;
    uint64_t sent, confirmed, nacked, received, expected, reordered;
    bool checked; /* received was compared with expected */
    bool ok;
    char error[512];
    perf_hist_t latency;
} perf_result_t;

/* One second's numbers (text, or to stderr in JSON mode). */
void perf_report_tick(const perf_opts_t *o, double at_s, const uint64_t delta[3],
                      const perf_hist_t *latency, bool blocked);
void perf_report_start(const perf_opts_t *o);
void perf_report_result(const perf_opts_t *o, const perf_result_t *r);

#endif /* PERF_RUN_H */
