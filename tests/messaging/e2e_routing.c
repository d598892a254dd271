/*
 * e2e_routing.c - where published messages go: direct (several queues on one
 * key), fanout, topic (a matrix of patterns with *, #, a.#.b, #.#, empty
 * words against routing keys), headers (x-match all/any, void, typed
 * values), the default exchange by queue name, exchange-to-exchange
 * bindings (a diamond delivers one copy per queue; a cycle terminates),
 * alternate exchanges (taking unroutable messages, which then count as
 * routed for mandatory) and the CC/BCC headers (BCC removed on delivery).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "messaging/mhelp.h"

/* A server-named exclusive queue on channel 1; its name into out. */
static bool declare_x(amqp_connection_state_t c, const char *x, const char *type,
                      amqp_table_t args) {
    if (amqp_exchange_declare(c, 1, MH_B(x), MH_B(type), 0, 0, 0, 0, args)) return true;
    wt_result_t r = mh_result(c, 1);
    diag("declare %s: %s", x, r.str);
    return false;
}

static bool bind(amqp_connection_state_t c, const char *q, const char *x, const char *key,
                 amqp_table_t args) {
    if (amqp_queue_bind(c, 1, MH_B(q), MH_B(x), MH_B(key), args)) return true;
    wt_result_t r = mh_result(c, 1);
    diag("bind %s to %s with '%s': %s", q, x, key, r.str);
    return false;
}

static bool xbind(amqp_connection_state_t c, const char *dst, const char *src, const char *key) {
    if (amqp_exchange_bind(c, 1, MH_B(dst), MH_B(src), MH_B(key), amqp_empty_table)) return true;
    wt_result_t r = mh_result(c, 1);
    diag("bind exchange %s to %s with '%s': %s", dst, src, key, r.str);
    return false;
}

/* The bodies in a queue, joined by ','. */
static const char *contents(amqp_connection_state_t c, const char *q) {
    static char buf[4][1024];
    static unsigned next;
    char *out = buf[next++ % 4];
    if (mh_get_all(c, 1, q, out, sizeof buf[0]) < 0) snprintf(out, sizeof buf[0], "(error)");
    return out;
}

static void test_direct_fanout(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for direct and fanout routing");
    if (!c) return;
    char q1[256], q2[256], q3[256];
    const char *x = mh_name("x-direct");
    mh_anon_queue(c, true, q1, sizeof q1);
    mh_anon_queue(c, true, q2, sizeof q2);
    mh_anon_queue(c, true, q3, sizeof q3);
    declare_x(c, x, "direct", amqp_empty_table);
    bind(c, q1, x, "k", amqp_empty_table);
    bind(c, q2, x, "k", amqp_empty_table);
    bind(c, q2, x, "k", amqp_empty_table); /* binding twice is one binding */
    bind(c, q3, x, "other", amqp_empty_table);
    bind(c, q3, x, "k2", amqp_empty_table);
    mh_publish(c, 1, x, "k", "1", NULL);
    mh_publish(c, 1, x, "other", "2", NULL);
    mh_publish(c, 1, x, "k2", "3", NULL);
    mh_publish(c, 1, x, "K", "4", NULL); /* keys are case-sensitive */
    mh_publish(c, 1, x, "", "5", NULL);
    mh_sync(c, 1);
    const char *s;
    s = contents(c, q1);
    ok(strcmp(s, "1") == 0, "direct: queue 1 bound on 'k' gets '1' (got '%s')", s);
    s = contents(c, q2);
    ok(strcmp(s, "1") == 0, "direct: queue 2, bound twice on 'k', gets one copy of '1' (got '%s')",
       s);
    s = contents(c, q3);
    ok(strcmp(s, "2,3") == 0, "direct: queue 3 bound on 'other' and 'k2' gets '2,3' (got '%s')", s);

    /* The delivery says which exchange and key the message was published with. */
    mh_publish(c, 1, x, "k2", "6", NULL);
    mh_sync(c, 1);
    mh_event_t ev;
    mh_kind_t k = mh_get(c, 1, q3, true, &ev);
    ok(k == MH_GET_OK && strcmp(ev.exchange, x) == 0 && strcmp(ev.routing_key, "k2") == 0,
       "get-ok carries exchange %s and routing key 'k2' (got %s '%s' '%s')", x, mh_kind_name(k),
       ev.exchange, ev.routing_key);
    mh_event_free(&ev);

    const char *f = mh_name("x-fanout");
    declare_x(c, f, "fanout", amqp_empty_table);
    bind(c, q1, f, "", amqp_empty_table);
    bind(c, q2, f, "ignored", amqp_empty_table);
    bind(c, q3, f, "a", amqp_empty_table);
    bind(c, q3, f, "b", amqp_empty_table);
    mh_publish(c, 1, f, "whatever", "f1", NULL);
    mh_publish(c, 1, f, "", "f2", NULL);
    mh_sync(c, 1);
    s = contents(c, q1);
    ok(strcmp(s, "f1,f2") == 0, "fanout: queue 1 gets both (got '%s')", s);
    s = contents(c, q2);
    ok(strcmp(s, "f1,f2") == 0, "fanout: queue 2 gets both (got '%s')", s);
    s = contents(c, q3);
    ok(strcmp(s, "f1,f2") == 0, "fanout: queue 3, bound twice, gets one copy of each (got '%s')",
       s);
    mh_exchange_delete(c, 1, x);
    mh_exchange_delete(c, 1, f);
    mh_close(c);
}

static void test_default_exchange(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for default-exchange routing");
    if (!c) return;
    char q[256];
    mh_anon_queue(c, true, q, sizeof q);
    mh_publish(c, 1, "", q, "by-name", NULL);
    mh_publish(c, 1, "", mh_name("no-such-queue"), "lost", NULL);
    mh_sync(c, 1);
    mh_event_t ev;
    mh_kind_t k = mh_get(c, 1, q, true, &ev);
    ok(k == MH_GET_OK && ev.has_msg && mh_bytes_eq(ev.msg.body, "by-name"),
       "the default exchange routes by queue name");
    ok(k == MH_GET_OK && ev.exchange[0] == '\0' && strcmp(ev.routing_key, q) == 0,
       "get-ok has exchange '' and the queue's name as routing key (got '%s' '%s')", ev.exchange,
       ev.routing_key);
    mh_event_free(&ev);
    ok(mh_count(c, 1, q, NULL) == 0, "nothing else arrived");
    mh_close(c);
}

/* ---- topic ------------------------------------------------------------------------- */

static void test_topic(const wt_broker_t *b) {
    static const char *keys[] = {"",     "a",  "b",  "a.b",   "a.x.b", "a.x.y.b",
                                 "a..b", "a.", ".b", "x.a.b", "a.b.c"};
    static const struct {
        const char *pattern, *expect;
    } rows[] = {
        {"*", "K1,K2"},
        {"#", "K0,K1,K2,K3,K4,K5,K6,K7,K8,K9,K10"},
        {"a.*", "K3,K7"},
        {"a.#", "K1,K3,K4,K5,K6,K7,K10"},
        {"a.#.b", "K3,K4,K5,K6"},
        {"#.#", "K0,K1,K2,K3,K4,K5,K6,K7,K8,K9,K10"},
        {"*.b", "K3,K8"},
        {"a.*.b", "K4,K6"},
        {"#.b", "K2,K3,K4,K5,K6,K8,K9"},
        {"", "K0"},
        {"a..b", "K6"},
        {"*.*", "K3,K7,K8"},
        {"a.b", "K3"},
        {"#.a.#", "K1,K3,K4,K5,K6,K7,K9,K10"},
        {"*.#", "K1,K2,K3,K4,K5,K6,K7,K8,K9,K10"},
        {"#.*.#.b", "K3,K4,K5,K6,K8,K9"},
    };
    enum { NROWS = sizeof rows / sizeof rows[0], NKEYS = sizeof keys / sizeof keys[0] };
    char queues[NROWS][256];
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for topic routing");
    if (!c) return;
    const char *x = mh_name("x-topic");
    declare_x(c, x, "topic", amqp_empty_table);
    for (int i = 0; i < NROWS; i++) {
        mh_anon_queue(c, true, queues[i], sizeof queues[i]);
        bind(c, queues[i], x, rows[i].pattern, amqp_empty_table);
    }
    for (int k = 0; k < NKEYS; k++) {
        char body[8];
        snprintf(body, sizeof body, "K%d", k);
        mh_publish(c, 1, x, keys[k], body, NULL);
    }
    mh_sync(c, 1);
    for (int i = 0; i < NROWS; i++) {
        const char *got = contents(c, queues[i]);
        ok(strcmp(got, rows[i].expect) == 0, "topic pattern '%s' matches %s (got %s)",
           rows[i].pattern, rows[i].expect, got);
    }
    diag("keys: K0 '' K1 a K2 b K3 a.b K4 a.x.b K5 a.x.y.b K6 a..b K7 a. K8 .b K9 x.a.b K10 a.b.c");

    /* Unbinding one of two patterns that match leaves the other. */
    bind(c, queues[0], x, "a.b", amqp_empty_table);
    mh_publish(c, 1, x, "a.b", "both", NULL);
    mh_sync(c, 1);
    const char *got = contents(c, queues[0]);
    ok(strcmp(got, "both") == 0, "a queue bound with '*' and 'a.b' gets one copy (got '%s')", got);
    mh_rpc(c, 1, amqp_queue_unbind(c, 1, MH_B(queues[0]), MH_B(x), MH_B("*"), amqp_empty_table),
           "unbind '*'");
    mh_publish(c, 1, x, "a.b", "still", NULL);
    mh_publish(c, 1, x, "a", "not", NULL);
    mh_sync(c, 1);
    got = contents(c, queues[0]);
    ok(strcmp(got, "still") == 0, "after unbinding '*', 'a.b' still matches (got '%s')", got);
    mh_exchange_delete(c, 1, x);
    mh_close(c);
}

/* ---- headers ------------------------------------------------------------------------- */

static amqp_field_value_t fv_i32(int32_t v) {
    return (amqp_field_value_t){AMQP_FIELD_KIND_I32, {.i32 = v}};
}
static amqp_field_value_t fv_str(const char *s) {
    return (amqp_field_value_t){AMQP_FIELD_KIND_UTF8, {.bytes = MH_B(s)}};
}
static amqp_field_value_t fv_kind(amqp_field_value_kind_t kind) {
    return (amqp_field_value_t){kind, {.i64 = 0}};
}

typedef struct kv {
    const char *key;
    amqp_field_value_t value;
} kv_t;

/* A table from up to 4 key/values, NULL key ending the list. */
typedef struct tab {
    amqp_table_entry_t e[4];
    amqp_table_t t;
} tab_t;

static amqp_table_t make_table(tab_t *tb, const kv_t *kvs) {
    int n = 0;
    for (; n < 4 && kvs[n].key; n++) {
        tb->e[n].key = MH_B(kvs[n].key);
        tb->e[n].value = kvs[n].value;
    }
    tb->t = (amqp_table_t){n, tb->e};
    return tb->t;
}

static void test_headers(const wt_broker_t *b) {
    amqp_field_value_t one_i64 = {AMQP_FIELD_KIND_I64, {.i64 = 1}};
    amqp_field_value_t one_i8 = {AMQP_FIELD_KIND_I8, {.i8 = 1}};
    amqp_field_value_t one_f64 = {AMQP_FIELD_KIND_F64, {.f64 = 1.0}};
    const struct {
        const char *what;
        kv_t args[4];
        const char *expect;
    } bindings[] = {
        {"x-match all, a=1, b='x'",
         {{"x-match", fv_str("all")}, {"a", fv_i32(1)}, {"b", fv_str("x")}, {NULL, {0, {0}}}},
         "M2"},
        {"x-match any, a=1, b='x'",
         {{"x-match", fv_str("any")}, {"a", fv_i32(1)}, {"b", fv_str("x")}, {NULL, {0, {0}}}},
         "M1,M2,M3,M6,M8,M9"},
        {"no x-match (all), a=1", {{"a", fv_i32(1)}, {NULL, {0, {0}}}}, "M1,M2,M3,M8,M9"},
        {"x-match all, c=void (present)",
         {{"x-match", fv_str("all")}, {"c", fv_kind(AMQP_FIELD_KIND_VOID)}, {NULL, {0, {0}}}},
         "M4,M5"},
        {"x-match any and nothing else", {{"x-match", fv_str("any")}, {NULL, {0, {0}}}}, ""},
        {"x-match all and nothing else",
         {{"x-match", fv_str("all")}, {NULL, {0, {0}}}},
         "M0,M1,M2,M3,M4,M5,M6,M7,M8,M9"},
        {"a=1 as a 64-bit long",
         {{"x-match", fv_str("all")}, {"a", one_i64}, {NULL, {0, {0}}}},
         "M1,M2,M3,M8,M9"},
        {"a='1' as a string",
         {{"x-match", fv_str("all")}, {"a", fv_str("1")}, {NULL, {0, {0}}}},
         "M7"},
        {"x-match all, x-foo='bar' (x- keys ignored), a=1",
         {{"x-match", fv_str("all")}, {"x-foo", fv_str("bar")}, {"a", fv_i32(1)}, {NULL, {0, {0}}}},
         "M1,M2,M3,M8,M9"},
        {"x-match any, a=2, b='x'",
         {{"x-match", fv_str("any")}, {"a", fv_i32(2)}, {"b", fv_str("x")}, {NULL, {0, {0}}}},
         "M2,M6"},
    };
    const struct {
        kv_t h[3];
        bool none;
    } messages[] = {
        {{{NULL, {0, {0}}}}, true},                                        /* M0: no headers */
        {{{"a", fv_i32(1)}, {NULL, {0, {0}}}}, false},                     /* M1 */
        {{{"a", fv_i32(1)}, {"b", fv_str("x")}, {NULL, {0, {0}}}}, false}, /* M2 */
        {{{"a", one_i64}, {"b", fv_str("y")}, {NULL, {0, {0}}}}, false},   /* M3 */
        {{{"c", fv_kind(AMQP_FIELD_KIND_VOID)}, {NULL, {0, {0}}}}, false}, /* M4 */
        {{{"c", fv_str("anything")}, {NULL, {0, {0}}}}, false},            /* M5 */
        {{{"b", fv_str("x")}, {NULL, {0, {0}}}}, false},                   /* M6 */
        {{{"a", fv_str("1")}, {NULL, {0, {0}}}}, false},                   /* M7 */
        {{{"a", one_i8}, {NULL, {0, {0}}}}, false},                        /* M8 */
        {{{"a", one_f64}, {NULL, {0, {0}}}}, false},                       /* M9 */
    };
    enum { NB = sizeof bindings / sizeof bindings[0], NM = sizeof messages / sizeof messages[0] };
    char queues[NB][256];
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for headers routing");
    if (!c) return;
    const char *x = mh_name("x-headers");
    declare_x(c, x, "headers", amqp_empty_table);
    for (int i = 0; i < NB; i++) {
        tab_t tb;
        mh_anon_queue(c, true, queues[i], sizeof queues[i]);
        bind(c, queues[i], x, "", make_table(&tb, bindings[i].args));
    }
    for (int m = 0; m < NM; m++) {
        tab_t tb;
        char body[8];
        amqp_basic_properties_t p = {0};
        if (!messages[m].none) {
            p._flags = AMQP_BASIC_HEADERS_FLAG;
            p.headers = make_table(&tb, messages[m].h);
        }
        snprintf(body, sizeof body, "M%d", m);
        mh_publish(c, 1, x, "ignored", body, &p);
    }
    mh_sync(c, 1);
    for (int i = 0; i < NB; i++) {
        const char *got = contents(c, queues[i]);
        ok(strcmp(got, bindings[i].expect) == 0, "headers binding %s matches '%s' (got '%s')",
           bindings[i].what, bindings[i].expect, got);
    }
    diag("M0 none, M1 a=1, M2 a=1 b=x, M3 a=1L b=y, M4 c=void, M5 c=anything, M6 b=x, "
         "M7 a='1', M8 a=1 (int8), M9 a=1.0 (double)");
    mh_exchange_delete(c, 1, x);
    mh_close(c);
}

/* ---- exchange-to-exchange ------------------------------------------------------------------ */

static void test_e2e(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for exchange-to-exchange routing");
    if (!c) return;
    char q[256], q2[256], q3[256];
    const char *top = mh_name("x-top"), *left = mh_name("x-left"), *right = mh_name("x-right");
    mh_anon_queue(c, true, q, sizeof q);
    declare_x(c, top, "fanout", amqp_empty_table);
    declare_x(c, left, "direct", amqp_empty_table);
    declare_x(c, right, "topic", amqp_empty_table);
    ok(xbind(c, left, top, "") && xbind(c, right, top, ""), "bind %s and %s to %s", left, right,
       top);
    ok(bind(c, q, left, "k", amqp_empty_table) && bind(c, q, right, "#", amqp_empty_table) &&
           bind(c, q, top, "", amqp_empty_table),
       "bind one queue to all three exchanges");
    mh_publish(c, 1, top, "k", "diamond", NULL);
    mh_sync(c, 1);
    const char *got = contents(c, q);
    ok(strcmp(got, "diamond") == 0,
       "a diamond of bindings delivers one copy to the queue (got '%s')", got);

    /* The destination's own type filters what the source passes on. */
    mh_publish(c, 1, left, "k", "left", NULL);
    mh_publish(c, 1, right, "z.z", "right", NULL);
    mh_sync(c, 1);
    got = contents(c, q);
    ok(strcmp(got, "left,right") == 0, "the inner exchanges route on their own (got '%s')", got);
    const char *t2 = mh_name("x-topic2");
    char qt[256];
    mh_anon_queue(c, true, qt, sizeof qt);
    declare_x(c, t2, "fanout", amqp_empty_table);
    xbind(c, t2, right, "a.*");
    bind(c, qt, t2, "", amqp_empty_table);
    mh_publish(c, 1, right, "a.b", "match", NULL);
    mh_publish(c, 1, right, "b.c", "nomatch", NULL);
    mh_sync(c, 1);
    got = contents(c, qt);
    ok(strcmp(got, "match") == 0,
       "an e2e binding 'a.*' from a topic exchange passes only matching keys (got '%s')", got);
    got = contents(c, q);
    ok(strcmp(got, "match,nomatch") == 0, "the queue bound with '#' gets both (got '%s')", got);

    /* A cycle: each exchange is visited once. */
    const char *c1 = mh_name("x-cycle1"), *c2 = mh_name("x-cycle2");
    mh_anon_queue(c, true, q2, sizeof q2);
    mh_anon_queue(c, true, q3, sizeof q3);
    declare_x(c, c1, "fanout", amqp_empty_table);
    declare_x(c, c2, "fanout", amqp_empty_table);
    ok(xbind(c, c2, c1, "") && xbind(c, c1, c2, ""), "bind %s and %s to each other", c1, c2);
    bind(c, q2, c2, "", amqp_empty_table);
    bind(c, q3, c1, "", amqp_empty_table);
    mh_publish(c, 1, c1, "k", "cycle", NULL);
    ok(mh_sync(c, 1), "publishing into a cycle of exchanges terminates");
    got = contents(c, q2);
    ok(strcmp(got, "cycle") == 0, "the queue behind the cycle gets one copy (got '%s')", got);
    got = contents(c, q3);
    ok(strcmp(got, "cycle") == 0, "the queue on the entry exchange gets one copy (got '%s')", got);

    /* Unbinding an exchange stops the flow. */
    mh_rpc(c, 1, amqp_exchange_unbind(c, 1, MH_B(left), MH_B(top), MH_B(""), amqp_empty_table),
           "exchange.unbind %s from %s", left, top);
    mh_rpc(c, 1, amqp_queue_unbind(c, 1, MH_B(q), MH_B(top), MH_B(""), amqp_empty_table),
           "queue.unbind from %s", top);
    mh_publish(c, 1, top, "k", "via-right", NULL);
    mh_sync(c, 1);
    got = contents(c, q);
    ok(strcmp(got, "via-right") == 0, "after the unbinds one path remains (got '%s')", got);

    const char *all[] = {top, left, right, t2, c1, c2};
    for (int i = 0; i < 6; i++)
        mh_exchange_delete(c, 1, all[i]);
    mh_close(c);
}

/* ---- alternate exchanges --------------------------------------------------------------------- */

/* Events within ms: count of basic.return (first one into *ret). */
static int count_returns(amqp_connection_state_t c, int ms, mh_event_t *ret) {
    int n = 0;
    double deadline = wt_now_ms() + ms;
    memset(ret, 0, sizeof *ret);
    for (;;) {
        double left = deadline - wt_now_ms();
        if (left <= 0) return n;
        mh_event_t ev;
        mh_kind_t k = mh_next(c, (int)left, &ev);
        if (k == MH_TIMEOUT || k == MH_LOST) return n;
        if (k == MH_RETURN && n++ == 0) {
            *ret = ev;
            continue;
        }
        mh_event_free(&ev);
    }
}

static void test_alternate_exchange(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for alternate exchanges");
    if (!c) return;
    char q[256], qae[256];
    amqp_table_entry_t e = {MH_B("alternate-exchange"), fv_str("")};
    const char *x = mh_name("x-with-ae"), *ae = mh_name("x-ae");
    e.value = fv_str(ae);
    mh_anon_queue(c, true, q, sizeof q);
    mh_anon_queue(c, true, qae, sizeof qae);
    declare_x(c, ae, "fanout", amqp_empty_table);
    declare_x(c, x, "direct", (amqp_table_t){1, &e});
    bind(c, q, x, "k", amqp_empty_table);
    bind(c, qae, ae, "", amqp_empty_table);
    mh_publish(c, 1, x, "k", "routed", NULL);
    mh_publish(c, 1, x, "zz", "unroutable", NULL);
    mh_publish_ex(c, 1, x, "zz", true, false, MH_B("mandatory"), NULL);
    mh_sync(c, 1);
    mh_event_t ret;
    int n = count_returns(c, 300, &ret);
    mh_event_free(&ret);
    ok(n == 0, "a mandatory message taken by the alternate exchange is not returned (%d returns)",
       n);
    const char *got = contents(c, q);
    ok(strcmp(got, "routed") == 0, "the routable message goes to its queue only (got '%s')", got);
    got = contents(c, qae);
    ok(strcmp(got, "unroutable,mandatory") == 0,
       "the unroutable ones go to the alternate exchange's queue (got '%s')", got);

    /* Delivered through the alternate exchange, the message keeps its
     * original exchange and routing key. */
    mh_publish(c, 1, x, "zz", "again", NULL);
    mh_sync(c, 1);
    mh_event_t ev;
    mh_kind_t k = mh_get(c, 1, qae, true, &ev);
    ok(k == MH_GET_OK && strcmp(ev.exchange, x) == 0 && strcmp(ev.routing_key, "zz") == 0,
       "via the alternate exchange: get-ok says exchange %s, key 'zz' (got '%s' '%s')", x,
       ev.exchange, ev.routing_key);
    mh_event_free(&ev);

    /* An alternate exchange that routes nowhere, or does not exist: returned. */
    mh_rpc(c, 1, amqp_queue_unbind(c, 1, MH_B(qae), MH_B(ae), MH_B(""), amqp_empty_table),
           "unbind the alternate exchange's queue");
    mh_publish_ex(c, 1, x, "zz", true, false, MH_B("nowhere"), NULL);
    mh_sync(c, 1);
    n = count_returns(c, 300, &ret);
    ok(n == 1 && ret.reply_code == 312 && strcmp(ret.reply_text, "NO_ROUTE") == 0,
       "unroutable through the alternate exchange too: one basic.return 312 NO_ROUTE (%d, %d %s)",
       n, ret.reply_code, ret.reply_text);
    mh_event_free(&ret);
    const char *y = mh_name("x-missing-ae");
    e.value = fv_str(mh_name("x-never-declared"));
    declare_x(c, y, "direct", (amqp_table_t){1, &e});
    mh_publish_ex(c, 1, y, "zz", true, false, MH_B("missing-ae"), NULL);
    mh_sync(c, 1);
    n = count_returns(c, 300, &ret);
    ok(n == 1 && ret.reply_code == 312 && ret.has_msg && mh_bytes_eq(ret.msg.body, "missing-ae"),
       "an alternate exchange that does not exist: the message is returned (%d, %d)", n,
       ret.reply_code);
    mh_event_free(&ret);
    mh_exchange_delete(c, 1, x);
    mh_exchange_delete(c, 1, y);
    mh_exchange_delete(c, 1, ae);
    mh_close(c);
}

/* ---- CC and BCC ------------------------------------------------------------------------------ */

static amqp_field_value_t fv_array(amqp_field_value_t *items, int n) {
    amqp_field_value_t v = {AMQP_FIELD_KIND_ARRAY, {.i64 = 0}};
    v.value.array = (amqp_array_t){n, items};
    return v;
}

static void test_cc_bcc(const wt_broker_t *b) {
    amqp_connection_state_t c = mh_connect(b);
    ok(c != NULL, "connect for CC and BCC");
    if (!c) return;
    char qa[256], qb[256], qc[256], qd[256];
    const char *x = mh_name("x-cc");
    mh_anon_queue(c, true, qa, sizeof qa);
    mh_anon_queue(c, true, qb, sizeof qb);
    mh_anon_queue(c, true, qc, sizeof qc);
    mh_anon_queue(c, true, qd, sizeof qd);
    declare_x(c, x, "direct", amqp_empty_table);
    bind(c, qa, x, "a", amqp_empty_table);
    bind(c, qb, x, "b", amqp_empty_table);
    bind(c, qc, x, "c", amqp_empty_table);
    bind(c, qd, x, "d", amqp_empty_table);

    amqp_field_value_t cc_items[2] = {fv_str("b"), fv_str("a")};
    amqp_field_value_t bcc_items[1] = {fv_str("c")};
    amqp_table_entry_t h[3] = {{MH_B("CC"), fv_array(cc_items, 2)},
                               {MH_B("BCC"), fv_array(bcc_items, 1)},
                               {MH_B("other"), fv_i32(7)}};
    amqp_basic_properties_t p = {._flags = AMQP_BASIC_HEADERS_FLAG, .headers = {3, h}};
    mh_publish(c, 1, x, "a", "cc", &p);
    mh_sync(c, 1);

    const char *queues[3] = {qa, qb, qc};
    for (int i = 0; i < 3; i++) {
        mh_event_t ev;
        mh_kind_t k = mh_get(c, 1, queues[i], true, &ev);
        const amqp_table_t *hd = ev.has_msg ? &ev.msg.properties.headers : NULL;
        ok(k == MH_GET_OK, "the message reaches the queue on '%c' (routing key, CC, BCC)",
           "abc"[i]);
        ok(k == MH_GET_OK && strcmp(ev.routing_key, "a") == 0,
           "queue '%c': the delivered routing key is the published one (got '%s')", "abc"[i],
           ev.routing_key);
        const amqp_field_value_t *cc = mh_table_get(hd, "CC");
        ok(cc && mh_value_eq(cc, &h[0].value), "queue '%c': the CC header is delivered as sent",
           "abc"[i]);
        ok(hd && !mh_table_get(hd, "BCC"), "queue '%c': the BCC header is removed", "abc"[i]);
        const amqp_field_value_t *other = mh_table_get(hd, "other");
        ok(other && mh_value_eq(other, &h[2].value) && hd->num_entries == 2,
           "queue '%c': the other headers stay (%d entries)", "abc"[i], hd ? hd->num_entries : -1);
        mh_event_free(&ev);
    }
    ok(mh_count(c, 1, qa, NULL) == 0, "a key named by both routing key and CC: one copy");
    ok(mh_count(c, 1, qd, NULL) == 0, "the queue on 'd' gets nothing");

    /* CC alone with the default exchange: by queue name. */
    amqp_field_value_t cc_q[1] = {fv_str(qd)};
    amqp_table_entry_t h2[1] = {{MH_B("CC"), fv_array(cc_q, 1)}};
    amqp_basic_properties_t p2 = {._flags = AMQP_BASIC_HEADERS_FLAG, .headers = {1, h2}};
    mh_publish(c, 1, "", qa, "cc-default", &p2);
    mh_sync(c, 1);
    const char *got = contents(c, qd);
    ok(strcmp(got, "cc-default") == 0, "CC through the default exchange names a queue (got '%s')",
       got);
    got = contents(c, qa);
    ok(strcmp(got, "cc-default") == 0, "and the routing key's queue gets it too (got '%s')", got);

    /* BCC alone, mandatory: routed through BCC only, so not returned. */
    amqp_table_entry_t h3[1] = {{MH_B("BCC"), fv_array(bcc_items, 1)}};
    amqp_basic_properties_t p3 = {._flags = AMQP_BASIC_HEADERS_FLAG, .headers = {1, h3}};
    mh_publish_ex(c, 1, x, "nobody", true, false, MH_B("bcc-only"), &p3);
    mh_sync(c, 1);
    mh_event_t ret;
    int n = count_returns(c, 300, &ret);
    mh_event_free(&ret);
    ok(n == 0, "a mandatory message routed only by BCC is not returned (%d returns)", n);
    mh_event_t ev;
    mh_kind_t k = mh_get(c, 1, qc, true, &ev);
    ok(k == MH_GET_OK && ev.has_msg && mh_bytes_eq(ev.msg.body, "bcc-only"),
       "BCC alone routes the message");
    /* RabbitMQ removes the entry and keeps the (now empty) headers table. */
    ok(k == MH_GET_OK && ev.has_msg && (ev.msg.properties._flags & AMQP_BASIC_HEADERS_FLAG) &&
           ev.msg.properties.headers.num_entries == 0,
       "BCC alone: delivered with an empty headers table (flag %s, %d entries)",
       k == MH_GET_OK && (ev.msg.properties._flags & AMQP_BASIC_HEADERS_FLAG) ? "set" : "clear",
       k == MH_GET_OK ? ev.msg.properties.headers.num_entries : -1);
    mh_event_free(&ev);

    /* CC on a topic exchange goes through the exchange's matching. */
    const char *t = mh_name("x-cc-topic");
    char qt[256];
    mh_anon_queue(c, true, qt, sizeof qt);
    declare_x(c, t, "topic", amqp_empty_table);
    bind(c, qt, t, "a.*", amqp_empty_table);
    amqp_field_value_t cc_t[1] = {fv_str("a.b")};
    amqp_table_entry_t h4[1] = {{MH_B("CC"), fv_array(cc_t, 1)}};
    amqp_basic_properties_t p4 = {._flags = AMQP_BASIC_HEADERS_FLAG, .headers = {1, h4}};
    mh_publish(c, 1, t, "x.y.z", "cc-topic", &p4);
    mh_sync(c, 1);
    got = contents(c, qt);
    ok(strcmp(got, "cc-topic") == 0, "a CC key matches topic patterns (got '%s')", got);

    /* A CC that is not an array is refused. */
    amqp_table_entry_t h5[1] = {{MH_B("CC"), fv_str("b")}};
    amqp_basic_properties_t p5 = {._flags = AMQP_BASIC_HEADERS_FLAG, .headers = {1, h5}};
    mh_publish(c, 1, x, "a", "bad-cc", &p5);
    mh_expect_async_error(c, 1, MH_CHANNEL, 406,
                          "PRECONDITION_FAILED - invalid message: "
                          "{unacceptable_type_in_header,\"CC\",longstr}",
                          3000, "a CC header that is a string");
    mh_exchange_delete(c, 1, x);
    mh_exchange_delete(c, 1, t);
    mh_close(c);
}

int main(void) {
    wt_broker_t b;
    wt_init(60);
    if (!wt_broker_start(&b, NULL)) return tap_done();
    test_direct_fanout(&b);
    test_default_exchange(&b);
    test_topic(&b);
    test_headers(&b);
    test_e2e(&b);
    test_alternate_exchange(&b);
    test_cc_bcc(&b);
    ok(wt_broker_stop(&b) == 0, "broker exits 0 after SIGTERM");
    return tap_done();
}
