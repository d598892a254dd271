/*
 * perf_main.c - warren-perf's main thread: declare the queues, start the
 * consumers and then the producers, report once a second, stop the
 * producers, let the consumers drain, check that every message arrived as
 * often as it should, delete the queues and print the result.
 *
 * The exit status is the verdict: 0 only when nothing failed and the counts
 * add up, 1 otherwise, 2 for a bad command line.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "perf_run.h"

#define MAIN_SLEEP_MS 10
#define NS_PER_S      1000000000ull

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

void perf_fail(perf_run_t *run, const char *who, const char *fmt, ...) {
    char msg[sizeof run->error];
    int n = snprintf(msg, sizeof msg, "%s: ", who);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof msg) vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "warren-perf: %s\n", msg);
    pthread_mutex_lock(&run->lock);
    if (!run->error[0]) memcpy(run->error, msg, sizeof msg);
    pthread_mutex_unlock(&run->lock);
    atomic_store(&run->failed, true);
}

static void sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- counting ----------------------------------------------------------- */

typedef struct totals {
    uint64_t sent, confirmed, nacked, received, reordered;
    bool blocked;
    bool producers_done;
} totals_t;

static void run_totals(perf_run_t *run, totals_t *t) {
    const perf_opts_t *o = run->opts;
    memset(t, 0, sizeof *t);
    t->producers_done = true;
    for (unsigned i = 0; i < o->producers; i++) {
        perf_producer_t *p = &run->producers[i];
        t->sent += atomic_load_explicit(&p->sent, memory_order_relaxed);
        t->confirmed += atomic_load_explicit(&p->confirmed, memory_order_relaxed);
        t->nacked += atomic_load_explicit(&p->nacked, memory_order_relaxed);
        t->blocked |= atomic_load_explicit(&p->blocked, memory_order_relaxed);
        t->producers_done &= atomic_load(&p->done);
    }
    for (unsigned i = 0; i < o->consumers; i++) {
        perf_consumer_t *c = &run->consumers[i];
        t->received += atomic_load_explicit(&c->received, memory_order_relaxed);
        t->reordered += atomic_load_explicit(&c->reordered, memory_order_relaxed);
    }
}

/* How many queues each message is counted in: every queue gets every
 * message (they are all bound with the routing key), but only queues with a
 * consumer are read. */
static uint64_t run_fanout(const perf_opts_t *o) {
    return o->consumers < o->queues ? o->consumers : o->queues;
}

/* ---- the once-a-second report ------------------------------------------- */

typedef struct ticker {
    uint64_t start_ns;
    uint64_t last_ns;
    totals_t last;
    perf_hist_t second;
} ticker_t;

static uint64_t per_second(uint64_t n, uint64_t ns) {
    return ns ? (uint64_t)((double)n * NS_PER_S / (double)ns + 0.5) : 0;
}

static void run_tick(perf_run_t *run, ticker_t *tk, perf_hist_t *latency) {
    uint64_t now = perf_now_ns();
    if (now - tk->last_ns < NS_PER_S) return;
    totals_t t;
    run_totals(run, &t);
    perf_hist_reset(&tk->second);
    for (unsigned i = 0; i < run->opts->consumers; i++)
        perf_hist_live_take(&run->consumers[i].latency, &tk->second);
    perf_hist_add(latency, &tk->second);
    uint64_t ns = now - tk->last_ns;
    uint64_t rates[3] = {
        per_second(t.sent - tk->last.sent, ns),
        per_second(t.confirmed + t.nacked - tk->last.confirmed - tk->last.nacked, ns),
        per_second(t.received - tk->last.received, ns)};
    perf_report_tick(run->opts, (double)(now - tk->start_ns) / NS_PER_S, rates, &tk->second,
                     t.blocked);
    tk->last = t;
    tk->last_ns = now;
}

/* ---- threads ------------------------------------------------------------ */

static int run_start_consumers(perf_run_t *run) {
    const perf_opts_t *o = run->opts;
    for (unsigned i = 0; i < o->consumers; i++) {
        perf_consumer_t *c = &run->consumers[i];
        if (pthread_create(&c->thread, NULL, perf_consumer_main, c) != 0) {
            perf_fail(run, "main", "cannot start consumer thread %u", i + 1);
            return -1;
        }
        c->started = true;
    }
    for (unsigned i = 0; i < o->consumers && !atomic_load(&run->failed); i++)
        while (!atomic_load(&run->consumers[i].ready) && !atomic_load(&run->failed))
            sleep_ms(MAIN_SLEEP_MS);
    return atomic_load(&run->failed) ? -1 : 0;
}

static int run_start_producers(perf_run_t *run) {
    for (unsigned i = 0; i < run->opts->producers; i++) {
        perf_producer_t *p = &run->producers[i];
        if (pthread_create(&p->thread, NULL, perf_producer_main, p) != 0) {
            perf_fail(run, "main", "cannot start producer thread %u", i + 1);
            return -1;
        }
        p->started = true;
    }
    return 0;
}

static void run_join(perf_run_t *run) {
    for (unsigned i = 0; i < run->opts->producers; i++)
        if (run->producers[i].started) pthread_join(run->producers[i].thread, NULL);
    for (unsigned i = 0; i < run->opts->consumers; i++)
        if (run->consumers[i].started) pthread_join(run->consumers[i].thread, NULL);
}

/* ---- the phases --------------------------------------------------------- */

/* Until the time is up, every producer has sent its -C messages, Ctrl-C or
 * a failure; then wait (reporting) for the producers to settle. */
static void run_produce(perf_run_t *run, ticker_t *tk, perf_result_t *res) {
    const perf_opts_t *o = run->opts;
    uint64_t end = o->seconds > 0 ? tk->start_ns + (uint64_t)(o->seconds * NS_PER_S) : UINT64_MAX;
    totals_t t = {0};
    while (!atomic_load(&run->failed) && !interrupted && perf_now_ns() < end) {
        run_totals(run, &t);
        if (t.producers_done) break;
        sleep_ms(MAIN_SLEEP_MS);
        run_tick(run, tk, &res->latency);
    }
    res->seconds = (double)(perf_now_ns() - tk->start_ns) / NS_PER_S;
    atomic_store(&run->stop_producing, true);
    do {
        sleep_ms(MAIN_SLEEP_MS);
        run_tick(run, tk, &res->latency);
        run_totals(run, &t);
    } while (!t.producers_done);
}

/* Until the consumers have everything the producers sent (or had
 * confirmed), for --drain seconds at most. */
static void run_drain(perf_run_t *run, ticker_t *tk, perf_result_t *res) {
    const perf_opts_t *o = run->opts;
    totals_t t;
    run_totals(run, &t);
    uint64_t expected = (o->confirm ? t.confirmed : t.sent) * run_fanout(o);
    uint64_t begin = perf_now_ns(), end = begin + (uint64_t)(o->drain * NS_PER_S);
    while (!atomic_load(&run->failed) && t.received < expected && perf_now_ns() < end) {
        sleep_ms(MAIN_SLEEP_MS);
        run_tick(run, tk, &res->latency);
        run_totals(run, &t);
    }
    res->drain_seconds = (double)(perf_now_ns() - begin) / NS_PER_S;
    res->expected = expected;
    res->checked = o->consumers > 0;
}

/* ---- the verdict -------------------------------------------------------- */

static void result_problem(perf_result_t *res, const char *fmt, ...) {
    size_t n = strlen(res->error);
    if (n && n + 2 < sizeof res->error) n += (size_t)snprintf(res->error + n, 3, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->error + n, sizeof res->error - n, fmt, ap);
    va_end(ap);
    res->ok = false;
}

static void run_check(perf_run_t *run, perf_result_t *res) {
    totals_t t;
    run_totals(run, &t);
    res->sent = t.sent;
    res->confirmed = t.confirmed;
    res->nacked = t.nacked;
    res->received = t.received;
    res->reordered = t.reordered;
    res->ok = true;
    if (run->error[0]) result_problem(res, "%s", run->error);
    if (t.nacked)
        result_problem(res, "the broker nacked %llu messages", (unsigned long long)t.nacked);
    if (run->opts->confirm && t.confirmed + t.nacked < t.sent)
        result_problem(res, "%llu messages were never confirmed",
                       (unsigned long long)(t.sent - t.confirmed - t.nacked));
    if (res->checked && t.received < res->expected)
        result_problem(res,
                       "received %llu of %llu messages within the %g s drain (lost, or the "
                       "consumers are slower than the producers: --drain waits longer)",
                       (unsigned long long)t.received, (unsigned long long)res->expected,
                       run->opts->drain);
    if (res->checked && t.received > res->expected)
        result_problem(res, "received %llu messages, expected %llu: some arrived twice",
                       (unsigned long long)t.received, (unsigned long long)res->expected);
    if (t.reordered)
        result_problem(res, "%llu messages arrived out of their producer's order",
                       (unsigned long long)t.reordered);
}

/* ---- main --------------------------------------------------------------- */

static int run_alloc(perf_run_t *run, const perf_opts_t *o) {
    run->opts = o;
    pthread_mutex_init(&run->lock, NULL);
    run->producers = calloc(o->producers ? o->producers : 1, sizeof *run->producers);
    run->consumers = calloc(o->consumers ? o->consumers : 1, sizeof *run->consumers);
    if (!run->producers || !run->consumers) return -1;
    for (unsigned i = 0; i < o->producers; i++)
        run->producers[i] = (perf_producer_t){.run = run, .index = i};
    for (unsigned i = 0; i < o->consumers; i++)
        run->consumers[i] = (perf_consumer_t){.run = run, .index = i, .queue = i % o->queues + 1};
    return 0;
}

static void run_all(perf_run_t *run, perf_result_t *res) {
    const perf_opts_t *o = run->opts;
    if (o->consumers && o->consumers < o->queues)
        fprintf(stderr,
                "warren-perf: warning: %u of %u queues have no consumer; "
                "their messages are not counted\n",
                o->queues - o->consumers, o->queues);
    if (perf_setup_declare(run) < 0) return;
    ticker_t tk = {0};
    if (run_start_consumers(run) == 0) {
        tk.start_ns = tk.last_ns = perf_now_ns();
        if (run_start_producers(run) == 0) run_produce(run, &tk, res);
    }
    atomic_store(&run->stop_producing, true);
    if (!atomic_load(&run->failed)) run_drain(run, &tk, res);
    atomic_store(&run->stop_consuming, true);
    run_join(run);
    for (unsigned i = 0; i < o->consumers; i++) /* what came after the last tick */
        perf_hist_live_take(&run->consumers[i].latency, &res->latency);
    perf_setup_teardown(run);
}

int main(int argc, char **argv) {
    static perf_opts_t opts;
    int rc = perf_opts_parse(&opts, argc, argv);
    if (rc != 0) return rc > 0 ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_sigint, .sa_flags = SA_RESETHAND};
    sigaction(SIGINT, &sa, NULL);

    static perf_run_t run;
    static perf_result_t res;
    if (run_alloc(&run, &opts) < 0) {
        fprintf(stderr, "warren-perf: out of memory\n");
        return 1;
    }
    perf_report_start(&opts);
    run_all(&run, &res);
    run_check(&run, &res);
    perf_report_result(&opts, &res);
    free(run.producers);
    free(run.consumers);
    return res.ok ? 0 : 1;
}
