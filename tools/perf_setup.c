/*
 * perf_setup.c - the topology a run uses: the exchange "warren-perf.<type>"
 * and the queues "warren-perf.q.1".."N", each bound to it with the routing
 * key. Declared and purged before the run on a connection of their own, and
 * the queues deleted after it (unless --keep). Queues are "<prefix>.q.N",
 * "warren-perf" unless --prefix says otherwise.
 *
 * The exchange is always durable, whether or not -p is given, so that runs
 * with and without -p agree on its declaration; it is left in place, since
 * another run may be using it. Queues follow -p and are deleted at the end.
 */
#include <stdio.h>

#include "perf_conn.h"
#include "perf_run.h"

void perf_queue_name(char *buf, size_t cap, const perf_opts_t *o, unsigned i) {
    snprintf(buf, cap, "%s.q.%u", o->prefix, i);
}

static int setup_exchange(perf_conn_t *c, const perf_opts_t *o) {
    wn_method_t m = {.id = WN_EXCHANGE_DECLARE}, reply;
    m.u.exchange_declare.exchange = wn_cstr(o->exchange);
    m.u.exchange_declare.type = wn_cstr(o->exchange_type);
    m.u.exchange_declare.durable = true;
    return perf_conn_rpc(c, &m, WN_EXCHANGE_DECLARE_OK, &reply);
}

static int setup_queue(perf_conn_t *c, const perf_opts_t *o, const char *name) {
    wn_method_t m = {.id = WN_QUEUE_DECLARE}, reply;
    m.u.queue_declare.queue = wn_cstr(name);
    m.u.queue_declare.durable = o->persistent;
    m.u.queue_declare.arguments = wn_bytes(o->queue_args, o->queue_args_len);
    if (perf_conn_rpc(c, &m, WN_QUEUE_DECLARE_OK, &reply) < 0) return -1;

    m = (wn_method_t){.id = WN_QUEUE_BIND};
    m.u.queue_bind.queue = wn_cstr(name);
    m.u.queue_bind.exchange = wn_cstr(o->exchange);
    m.u.queue_bind.routing_key = wn_cstr(o->routing_key);
    if (perf_conn_rpc(c, &m, WN_QUEUE_BIND_OK, &reply) < 0) return -1;

    m = (wn_method_t){.id = WN_QUEUE_PURGE};
    m.u.queue_purge.queue = wn_cstr(name);
    return perf_conn_rpc(c, &m, WN_QUEUE_PURGE_OK, &reply);
}

int perf_setup_declare(perf_run_t *run) {
    const perf_opts_t *o = run->opts;
    perf_conn_t c;
    if (perf_conn_open(&c, &o->uri, "warren-perf setup") < 0) {
        perf_fail(run, "setup", "%s", c.error);
        return -1;
    }
    if (setup_exchange(&c, o) < 0) {
        perf_fail(run, "setup", "declaring exchange %s: %s", o->exchange, c.error);
        goto err;
    }
    for (unsigned i = 1; i <= o->queues; i++) {
        char name[96];
        perf_queue_name(name, sizeof name, o, i);
        if (setup_queue(&c, o, name) < 0) {
            perf_fail(run, "setup", "declaring queue %s: %s", name, c.error);
            goto err;
        }
    }
    perf_conn_close(&c);
    return 0;
err:
    perf_conn_close(&c);
    return -1;
}

void perf_setup_teardown(perf_run_t *run) {
    const perf_opts_t *o = run->opts;
    perf_conn_t c;
    if (o->keep) return;
    if (perf_conn_open(&c, &o->uri, "warren-perf teardown") < 0) {
        fprintf(stderr, "warren-perf: teardown: %s\n", c.error);
        return;
    }
    for (unsigned i = 1; i <= o->queues; i++) {
        char name[96];
        perf_queue_name(name, sizeof name, o, i);
        wn_method_t m = {.id = WN_QUEUE_DELETE}, reply;
        m.u.queue_delete.queue = wn_cstr(name);
        if (perf_conn_rpc(&c, &m, WN_QUEUE_DELETE_OK, &reply) < 0) {
            fprintf(stderr, "warren-perf: teardown: deleting queue %s: %s\n", name, c.error);
            break;
        }
    }
    perf_conn_close(&c);
}
