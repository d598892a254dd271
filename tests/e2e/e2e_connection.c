/*
 * e2e_connection.c - the connection as an unchanged client library sees it:
 * librabbitmq-c logs in, reads the server properties, negotiates tune values,
 * opens and closes channels, and is refused for bad credentials or vhosts
 * with the codes RabbitMQ uses. AMQPLAIN and unknown mechanisms go through
 * the raw client, since librabbitmq-c only speaks PLAIN.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const amqp_field_value_t *find_entry(const amqp_table_t *t, const char *key) {
    for (int i = 0; t && i < t->num_entries; i++) {
        const amqp_table_entry_t *e = &t->entries[i];
        if (e->key.len == strlen(key) && memcmp(e->key.bytes, key, e->key.len) == 0)
            return &e->value;
    }
    return NULL;
}

static bool has_string(const amqp_table_t *t, const char *key) {
    const amqp_field_value_t *v = find_entry(t, key);
    if (!v || (v->kind != AMQP_FIELD_KIND_UTF8 && v->kind != AMQP_FIELD_KIND_BYTES)) return false;
    diag("server property %s = '%.*s'", key, (int)v->value.bytes.len,
         (const char *)v->value.bytes.bytes);
    return v->value.bytes.len > 0;
}

static void diag_capabilities(const amqp_table_t *caps) {
    for (int i = 0; caps && i < caps->num_entries; i++) {
        const amqp_table_entry_t *e = &caps->entries[i];
        diag("capability %.*s = %s", (int)e->key.len, (const char *)e->key.bytes,
             e->value.kind == AMQP_FIELD_KIND_BOOLEAN ? (e->value.value.boolean ? "true" : "false")
                                                      : "(not a boolean)");
    }
}

static void test_server_properties(const wt_broker_t *b) {
    wt_result_t r;
    amqp_connection_state_t conn = wt_amqp_connect(b, NULL, &r);
    ok(conn != NULL, "guest/guest logs in to / (%s)", r.str);
    if (!conn) return;
    const amqp_table_t *props = amqp_get_server_properties(conn);
    ok(has_string(props, "product"), "server properties carry product");
    ok(has_string(props, "version"), "server properties carry version");
    ok(has_string(props, "platform"), "server properties carry platform");
    const amqp_field_value_t *caps = find_entry(props, "capabilities");
    ok(caps && caps->kind == AMQP_FIELD_KIND_TABLE, "server properties carry a capabilities table");
    const amqp_table_t *ct =
        caps && caps->kind == AMQP_FIELD_KIND_TABLE ? &caps->value.table : NULL;
    diag_capabilities(ct);
    const amqp_field_value_t *afc = find_entry(ct, "authentication_failure_close");
    ok(afc && afc->kind == AMQP_FIELD_KIND_BOOLEAN && afc->value.boolean,
       "capability authentication_failure_close is true");
    ok(wt_amqp_close(conn), "connection.close 200 is answered with close-ok");
}

/* The broker's tune proposal, read with the raw client. */
static bool raw_tune(const wt_broker_t *b, wt_raw_t *c, int *channel_max, int *frame_max,
                     int *heartbeat) {
    wt_raw_login_t l = wt_raw_login_defaults();
    l.stop_after = WT_HS_TUNED;
    int r = wt_raw_handshake(c, b, &l, NULL);
    *channel_max = c->channel_max;
    *frame_max = (int)c->frame_max;
    *heartbeat = (int)c->heartbeat;
    return r == WT_HS_TUNED;
}

static void test_tune_defaults(const wt_broker_t *b) {
    wt_raw_t *c = calloc(1, sizeof *c);
    int cm, fm, hb;
    bool tuned = raw_tune(b, c, &cm, &fm, &hb);
    ok(tuned && cm == 2047 && fm == 131072 && hb == 60,
       "connection.tune proposes channel_max 2047, frame_max 131072, heartbeat 60 (got %d, %d, %d)",
       cm, fm, hb);
    wt_raw_close(c);
    free(c);

    wt_login_t l = {NULL, NULL, NULL, 10, 8192, 3};
    wt_result_t r;
    amqp_connection_state_t conn = wt_amqp_connect(b, &l, &r);
    ok(conn != NULL, "login asking channel_max 10, frame_max 8192, heartbeat 3 (%s)", r.str);
    if (!conn) return;
    ok(amqp_get_channel_max(conn) == 10, "negotiated channel_max is 10 (got %d)",
       amqp_get_channel_max(conn));
    ok(amqp_get_frame_max(conn) == 8192, "negotiated frame_max is 8192 (got %d)",
       amqp_get_frame_max(conn));
    ok(amqp_get_heartbeat(conn) == 3, "negotiated heartbeat is 3 (got %d)",
       amqp_get_heartbeat(conn));
    ok(amqp_channel_open(conn, 1) != NULL, "a channel opens on the tuned connection");
    ok(wt_amqp_close(conn), "and the connection closes cleanly");
}

/* tune-ok values the broker must refuse: RabbitMQ closes the socket (after
 * its 3 s silent-close delay) without opening the connection. */
static void test_tune_ok_refused(const wt_broker_t *b, const char *what, int channel_max,
                                 int frame_max) {
    wt_raw_t *c = calloc(1, sizeof *c);
    wt_raw_login_t l = wt_raw_login_defaults();
    wt_close_t close;
    l.channel_max = channel_max;
    l.frame_max = frame_max;
    l.heartbeat = 0;
    int r = wt_raw_handshake(c, b, &l, &close);
    if (r == WT_HS_CLOSED)
        diag("%s: connection.close %u '%s' (%u,%u)", what, close.code, close.text, close.class_id,
             close.method_id);
    ok(r != WT_HS_OPEN, "tune-ok with %s: connection.open is not answered with open-ok", what);
    double t = wt_raw_wait_eof(c, 6000);
    ok(t >= 0, "tune-ok with %s: the broker closes the socket (after %.2f s)", what, t);
    wt_raw_close(c);
    free(c);
}

/* Warren only: a configured frame_max and heartbeat are what tune proposes,
 * and the smaller frame_max wins. */
static void test_tune_configured(void) {
    const char *name = "configured frame_max 16384, heartbeat 0, channel_max 50";
    if (wt_external()) {
        wt_skip_external(name);
        return;
    }
    wt_broker_t b;
    if (!wt_broker_start(&b, "frame_max = 16384\nheartbeat = 0\nchannel_max = 50\n")) return;
    wt_raw_t *c = calloc(1, sizeof *c);
    int cm, fm, hb;
    bool tuned = raw_tune(&b, c, &cm, &fm, &hb);
    ok(tuned && cm == 50 && fm == 16384 && hb == 0,
       "%s: tune proposes 50, 16384, 0 (got %d, %d, %d)", name, cm, fm, hb);
    wt_raw_close(c);
    free(c);

    wt_login_t l = {NULL, NULL, NULL, 0, 131072, 0};
    amqp_connection_state_t conn = wt_amqp_connect(&b, &l, NULL);
    ok(conn && amqp_get_frame_max(conn) == 16384,
       "client asking frame_max 131072 gets the broker's 16384 (got %d)",
       conn ? amqp_get_frame_max(conn) : -1);
    ok(conn && amqp_get_channel_max(conn) == 50,
       "client asking channel_max 0 (no limit) gets the broker's 50 (got %d)",
       conn ? amqp_get_channel_max(conn) : -1);
    wt_amqp_close(conn);

    /* librabbitmq-c turns "no limit" into the 4096 minimum on its own side. */
    l.frame_max = 0;
    l.heartbeat = 3;
    conn = wt_amqp_connect(&b, &l, NULL);
    ok(conn != NULL, "client asking frame_max 0 and heartbeat 3 logs in");
    if (conn)
        diag("frame_max 0 -> %d, heartbeat 3 with broker 0 -> %d", amqp_get_frame_max(conn),
             amqp_get_heartbeat(conn));
    ok(conn && amqp_get_heartbeat(conn) == 3,
       "broker heartbeat 0, client 3: the client's value stands (got %d)",
       conn ? amqp_get_heartbeat(conn) : -1);
    wt_amqp_close(conn);
    test_tune_ok_refused(&b, "frame_max 131072 above the broker's 16384", 50, 131072);
    test_tune_ok_refused(&b, "channel_max 51 above the broker's 50", 51, 16384);
    ok(wt_broker_stop(&b) == 0, "broker exits 0");
}

static void test_channels(const wt_broker_t *b) {
    wt_login_t l = {NULL, NULL, NULL, 10, 131072, 0};
    wt_result_t r;
    amqp_connection_state_t conn = wt_amqp_connect(b, &l, &r);
    ok(conn != NULL, "login with channel_max 10 (%s)", r.str);
    if (!conn) return;
    int opened = 0, closed = 0;
    for (int ch = 1; ch <= 10; ch++)
        opened += amqp_channel_open(conn, (amqp_channel_t)ch) != NULL;
    ok(opened == 10, "channels 1..10 open (%d did)", opened);
    for (int ch = 1; ch <= 10; ch++) {
        amqp_rpc_reply_t cr = amqp_channel_close(conn, (amqp_channel_t)ch, AMQP_REPLY_SUCCESS);
        closed += cr.reply_type == AMQP_RESPONSE_NORMAL;
    }
    ok(closed == 10, "channels 1..10 close with close-ok (%d did)", closed);
    for (int ch = 1; ch <= 10; ch++)
        amqp_channel_open(conn, (amqp_channel_t)ch);
    ok(amqp_channel_open(conn, 11) == NULL, "an 11th open channel is refused");
    r = wt_amqp_result(conn);
    ok(r.code == 530, "with connection.close 530 NOT_ALLOWED (%s)", r.str);
    amqp_destroy_connection(conn);
}

static void test_channel_errors(const wt_broker_t *b) {
    wt_result_t r;
    amqp_connection_state_t conn = wt_amqp_connect(b, NULL, NULL);
    ok(conn != NULL, "login for the channel-error cases");
    if (!conn) return;
    ok(amqp_channel_open(conn, 1) != NULL, "channel 1 opens");
    ok(amqp_channel_open(conn, 1) == NULL, "opening channel 1 again fails");
    r = wt_amqp_result(conn);
    ok(r.code == 504 && r.method == AMQP_CONNECTION_CLOSE_METHOD,
       "second channel.open: connection.close 504 CHANNEL_ERROR (%s)", r.str);
    amqp_destroy_connection(conn);

    conn = wt_amqp_connect(b, NULL, NULL);
    if (!conn) return;
    amqp_queue_declare(conn, 5, amqp_cstring_bytes("wt-never"), 0, 0, 1, 1, amqp_empty_table);
    r = wt_amqp_result(conn);
    ok(r.code == 504 && r.method == AMQP_CONNECTION_CLOSE_METHOD,
       "queue.declare on a channel never opened: connection.close 504 (%s)", r.str);
    amqp_destroy_connection(conn);
}

static void test_bad_login(const wt_broker_t *b) {
    wt_result_t r;
    wt_login_t wrong = {"guest", "wrong", NULL, 0, 131072, 0};
    amqp_connection_state_t conn = wt_amqp_connect(b, &wrong, &r);
    ok(conn == NULL, "PLAIN with a wrong password is refused");
    ok(r.code == 403 && r.method == AMQP_CONNECTION_CLOSE_METHOD,
       "with connection.close 403 ACCESS_REFUSED (%s)", r.str);
    if (conn) amqp_destroy_connection(conn);

    wt_login_t nobody = {"nobody", "guest", NULL, 0, 131072, 0};
    conn = wt_amqp_connect(b, &nobody, &r);
    ok(conn == NULL && r.code == 403, "an unknown user: 403 ACCESS_REFUSED (%s)", r.str);
    if (conn) amqp_destroy_connection(conn);

    wt_login_t vhost = {NULL, NULL, "no-such-vhost", 0, 131072, 0};
    conn = wt_amqp_connect(b, &vhost, &r);
    ok(conn == NULL, "connection.open to an unknown vhost is refused");
    ok(r.code == 530, "with connection.close 530 NOT_ALLOWED (%s)", r.str);
    if (conn) amqp_destroy_connection(conn);
}

static int raw_login(const wt_broker_t *b, const char *mech, const void *resp, size_t resp_len,
                     wt_close_t *close) {
    wt_raw_t *c = calloc(1, sizeof *c);
    wt_raw_login_t l = wt_raw_login_defaults();
    l.mechanism = mech;
    l.response = resp;
    l.response_len = resp_len;
    memset(close, 0, sizeof *close);
    int r = wt_raw_handshake(c, b, &l, close);
    if (r == WT_HS_CLOSED) wt_raw_send_close_ok(c);
    wt_raw_close(c);
    free(c);
    return r;
}

static void test_mechanisms(const wt_broker_t *b) {
    uint8_t resp[256];
    wt_close_t close;
    size_t n = wt_amqplain_response(resp, sizeof resp, "guest", "guest");
    ok(raw_login(b, "AMQPLAIN", resp, n, &close) == WT_HS_OPEN,
       "AMQPLAIN with the right password opens the connection");
    n = wt_amqplain_response(resp, sizeof resp, "guest", "wrong");
    int r = raw_login(b, "AMQPLAIN", resp, n, &close);
    ok(r == WT_HS_CLOSED && close.code == 403,
       "AMQPLAIN with a wrong password: connection.close 403 (got %u '%s')", close.code,
       close.text);
    ok(raw_login(b, "PLAIN", "\0guest\0guest", 12, &close) == WT_HS_OPEN,
       "PLAIN by hand with the right password opens the connection");
    r = raw_login(b, "PLAIN", "\0guest\0wrong", 12, &close);
    ok(r == WT_HS_CLOSED && close.code == 403 && strstr(close.text, "ACCESS_REFUSED"),
       "PLAIN by hand with a wrong password: 403 ACCESS_REFUSED (got %u '%s')", close.code,
       close.text);

    /* RabbitMQ 3.10 closes the socket without a frame here; a broker that
     * explains itself with a connection.close is no worse. */
    wt_raw_t *c = calloc(1, sizeof *c);
    wt_raw_login_t l = wt_raw_login_defaults();
    l.mechanism = "NO-SUCH-MECHANISM";
    r = wt_raw_handshake(c, b, &l, &close);
    ok(r == WT_HS_CLOSED || r == WT_HS_FAILED, "an unknown mechanism is not tuned");
    if (r == WT_HS_CLOSED)
        diag("unknown mechanism: connection.close %u '%s'", close.code, close.text);
    double t = wt_raw_wait_eof(c, 6000);
    ok(t >= 0, "an unknown mechanism: the socket is closed (after %.2f s)", t);
    wt_raw_close(c);
    free(c);
}

int main(void) {
    wt_broker_t b;
    wt_init(60);
    if (!wt_broker_start(&b, NULL)) return tap_done();
    test_server_properties(&b);
    test_tune_defaults(&b);
    test_tune_ok_refused(&b, "frame_max 4095 below the 4096 minimum", 2047, 4095);
    test_tune_ok_refused(&b, "frame_max one above the broker's", 2047, 131073);
    test_tune_ok_refused(&b, "frame_max 0 (no limit)", 2047, 0);
    test_tune_ok_refused(&b, "channel_max 0 (no limit) above the broker's 2047", 0, 131072);
    test_channels(&b);
    test_channel_errors(&b);
    test_bad_login(&b);
    test_mechanisms(&b);
    ok(wt_broker_stop(&b) == 0, "broker exits 0 after SIGTERM");
    test_tune_configured();
    return tap_done();
}
