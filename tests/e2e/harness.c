/*
 * harness.c - starts and stops the broker under test, and the two ways of
 * talking to it: librabbitmq-c, and a raw socket that sends hand-written
 * frames (for everything a well-behaved client library refuses to send).
 *
 * Process hygiene is the point of this file: the broker child is killed with
 * its parent (PR_SET_PDEATHSIG), by the atexit handler, and by the watchdog,
 * so a failing or hung test never leaves a broker behind.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <amqp_tcp_socket.h>

#include "bytes.h"

#define WT_MAX_LIVE 8

/* Brokers still running, for the atexit handler and the watchdog. Test
 * programs are single-threaded; this is the harness's only shared state. */
static wt_broker_t *wt_live[WT_MAX_LIVE];

double wt_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void wt_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- process bookkeeping ---------------------------------------------------- */

static void wt_live_add(wt_broker_t *b) {
    for (int i = 0; i < WT_MAX_LIVE; i++) {
        if (!wt_live[i]) {
            wt_live[i] = b;
            return;
        }
    }
}

static void wt_live_remove(wt_broker_t *b) {
    for (int i = 0; i < WT_MAX_LIVE; i++)
        if (wt_live[i] == b) wt_live[i] = NULL;
}

static int wt_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void wt_rm_tree(const char *dir) {
    if (dir[0]) nftw(dir, wt_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void wt_atexit_kill(void) {
    for (int i = 0; i < WT_MAX_LIVE; i++) {
        wt_broker_t *b = wt_live[i];
        if (!b || b->pid <= 0) continue;
        kill(b->pid, SIGKILL);
        waitpid(b->pid, NULL, 0);
        wt_rm_tree(b->dir);
        wt_live[i] = NULL;
    }
}

/* The watchdog, and SIGINT/SIGTERM/SIGHUP sent to the test itself: kill the
 * brokers and leave. Only async-signal-safe calls, as this may run anywhere. */
static void wt_on_signal(int sig) {
    static const char timeout[] = "Bail out! watchdog: the test took too long\n";
    static const char stopped[] = "Bail out! the test was stopped by a signal\n";
    for (int i = 0; i < WT_MAX_LIVE; i++)
        if (wt_live[i] && wt_live[i]->pid > 0) kill(wt_live[i]->pid, SIGKILL);
    ssize_t n = sig == SIGALRM ? write(STDOUT_FILENO, timeout, sizeof timeout - 1)
                               : write(STDOUT_FILENO, stopped, sizeof stopped - 1);
    (void)n;
    _exit(1);
}

void wt_init(unsigned seconds) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, wt_on_signal);
    signal(SIGINT, wt_on_signal);
    signal(SIGTERM, wt_on_signal);
    signal(SIGHUP, wt_on_signal);
    atexit(wt_atexit_kill);
    alarm(seconds);
}

bool wt_external(void) {
    const char *e = getenv("WARREN_TEST_EXTERNAL");
    return e && *e;
}

/* ---- starting the broker ------------------------------------------------------ */

static int wt_free_port(void) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    if (fd < 0) return -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static bool wt_write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return false;
    bool good = fputs(text, f) >= 0;
    return fclose(f) == 0 && good;
}

static bool wt_make_dir(wt_broker_t *b) {
    const char *tmp = getenv("TMPDIR");
    snprintf(b->dir, sizeof b->dir, "%s/warren-e2e-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(b->dir)) {
        diag("mkdtemp %s: %s", b->dir, strerror(errno));
        b->dir[0] = '\0';
        return false;
    }
    snprintf(b->conf_path, sizeof b->conf_path, "%s/warren.conf", b->dir);
    snprintf(b->log_path, sizeof b->log_path, "%s/warren.log", b->dir);
    return true;
}

static const char *wt_warren_bin(void) {
    const char *bin = getenv("WARREN_BIN");
    return bin && *bin ? bin : "../src/warren";
}

/* The child: stderr and stdout to the log, dies with the test program. */
static pid_t wt_spawn(const char *conf_path, const char *log_path) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, STDERR_FILENO);
        dup2(fd, STDOUT_FILENO);
        close(fd);
    }
    signal(SIGPIPE, SIG_DFL);
    execl(wt_warren_bin(), "warren", "--config", conf_path, (char *)NULL);
    fprintf(stderr, "exec %s: %s\n", wt_warren_bin(), strerror(errno));
    _exit(127);
}

static bool wt_port_accepts(const char *host, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    bool up = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return up;
}

static bool wt_use_external(wt_broker_t *b) {
    const char *e = getenv("WARREN_TEST_EXTERNAL");
    const char *colon = strrchr(e, ':');
    b->external = true;
    b->port = colon ? atoi(colon + 1) : 5672;
    snprintf(b->host, sizeof b->host, "%.*s", colon ? (int)(colon - e) : (int)strlen(e), e);
    return true;
}

/* Kill the broker if it runs and remove its temp dir, without a verdict. */
static void wt_broker_discard(wt_broker_t *b) {
    if (b->pid > 0) {
        kill(b->pid, SIGKILL);
        waitpid(b->pid, NULL, 0);
        b->pid = 0;
    }
    wt_live_remove(b);
    wt_rm_tree(b->dir);
    b->dir[0] = '\0';
}

/* 1: listening; 0: the broker exited first (perhaps the free port was taken
 * meanwhile, worth another try); -1: it neither listened nor exited. */
static int wt_wait_listening(wt_broker_t *b) {
    double deadline = wt_now_ms() + 10000;
    while (wt_now_ms() < deadline) {
        int status;
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            diag("the broker exited before listening on %d (status 0x%x)", b->port, status);
            b->pid = 0;
            return 0;
        }
        if (wt_port_accepts(b->host, b->port)) return 1;
        wt_sleep_ms(20);
    }
    diag("the broker did not accept connections on port %d within 10 s", b->port);
    return -1;
}

/* One attempt: a new port, dir and config, and the process. */
static int wt_broker_try_start(wt_broker_t *b, const char *extra_conf_lines) {
    char conf[8192];
    snprintf(b->host, sizeof b->host, "127.0.0.1");
    b->port = wt_free_port();
    if (b->port <= 0 || !wt_make_dir(b)) return -1;
    snprintf(conf, sizeof conf,
             "# written by the e2e harness\n"
             "listeners.tcp.default = 127.0.0.1:%d\n"
             "data_dir = %s/data\n"
             "log.console.level = debug\n"
             "%s\n",
             b->port, b->dir, extra_conf_lines ? extra_conf_lines : "");
    if (!wt_write_file(b->conf_path, conf)) {
        diag("cannot write %s", b->conf_path);
        wt_rm_tree(b->dir);
        return -1;
    }
    b->pid = wt_spawn(b->conf_path, b->log_path);
    if (b->pid < 0) b->pid = 0;
    wt_live_add(b);
    return b->pid > 0 ? wt_wait_listening(b) : -1;
}

bool wt_broker_start(wt_broker_t *b, const char *extra_conf_lines) {
    memset(b, 0, sizeof *b);
    if (wt_external()) return wt_use_external(b);
    for (int attempt = 1; attempt <= 3; attempt++) {
        int r = wt_broker_try_start(b, extra_conf_lines);
        if (r == 1) return true;
        wt_broker_log_tail(b, 30);
        wt_broker_discard(b);
        if (r < 0 || attempt == 3) break;
        diag("starting the broker again on another port");
    }
    ok(0, "broker starts and listens on 127.0.0.1");
    return false;
}

/* Wait for the child for up to timeout_ms. Returns true if it exited. */
static bool wt_reap(pid_t pid, int timeout_ms, int *status) {
    double deadline = wt_now_ms() + timeout_ms;
    do {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) return true;
        wt_sleep_ms(10);
    } while (wt_now_ms() < deadline);
    return false;
}

int wt_broker_stop(wt_broker_t *b) {
    int status = 0, result = -1;
    if (b->external) return 0;
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        if (!wt_reap(b->pid, 10000, &status)) {
            ok(0, "broker exits within 10 s of SIGTERM (killed)");
            wt_broker_log_tail(b, 30);
            kill(b->pid, SIGKILL);
            waitpid(b->pid, &status, 0);
        } else if (WIFEXITED(status)) {
            result = WEXITSTATUS(status);
        } else if (WIFSIGNALED(status)) {
            diag("the broker died by signal %d", WTERMSIG(status));
        }
        b->pid = 0;
    }
    if (result != 0) wt_broker_log_tail(b, 30);
    wt_broker_discard(b);
    return result;
}

static size_t wt_read_file(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f) {
        n = fread(out, 1, cap - 1, f);
        fclose(f);
    }
    out[n] = '\0';
    return n;
}

int wt_broker_run_config(const char *conf_lines, int timeout_ms, char *err, size_t err_cap,
                         char *conf_path, size_t conf_path_cap) {
    wt_broker_t b;
    int status = 0, result;
    memset(&b, 0, sizeof b);
    err[0] = '\0';
    if (!wt_make_dir(&b) || !wt_write_file(b.conf_path, conf_lines)) return -3;
    snprintf(conf_path, conf_path_cap, "%s", b.conf_path);
    b.pid = wt_spawn(b.conf_path, b.log_path);
    wt_live_add(&b);
    if (!wt_reap(b.pid, timeout_ms, &status)) {
        kill(b.pid, SIGKILL);
        waitpid(b.pid, &status, 0);
        result = -2;
    } else {
        result = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    wt_read_file(b.log_path, err, err_cap);
    wt_live_remove(&b);
    wt_rm_tree(b.dir);
    return result;
}

void wt_broker_log_tail(const wt_broker_t *b, int lines) {
    static char text[65536];
    if (b->external || !b->log_path[0]) return;
    size_t n = wt_read_file(b->log_path, text, sizeof text);
    const char *p = text + n;
    for (int seen = 0; p > text && seen <= lines; p--)
        if (p[-1] == '\n') seen++;
    diag("---- broker log (%s), last %d lines ----", b->log_path, lines);
    for (char *line = strtok((char *)p, "\n"); line; line = strtok(NULL, "\n"))
        diag("| %s", line);
}

/* ---- librabbitmq-c --------------------------------------------------------------- */

void wt_result_set(wt_result_t *res, amqp_rpc_reply_t r) {
    memset(res, 0, sizeof *res);
    res->type = r.reply_type;
    res->library_error = r.library_error;
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        snprintf(res->str, sizeof res->str, "normal reply");
        return;
    case AMQP_RESPONSE_NONE:
        snprintf(res->str, sizeof res->str, "no reply");
        return;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        snprintf(res->str, sizeof res->str, "library error: %s",
                 amqp_error_string2(r.library_error));
        return;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        break;
    }
    res->method = r.reply.id;
    if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD && r.reply.decoded) {
        amqp_connection_close_t *m = r.reply.decoded;
        res->code = m->reply_code;
        snprintf(res->text, sizeof res->text, "%.*s", (int)m->reply_text.len,
                 (const char *)m->reply_text.bytes);
        res->class_id = m->class_id;
        res->method_id = m->method_id;
    } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD && r.reply.decoded) {
        amqp_channel_close_t *m = r.reply.decoded;
        res->code = m->reply_code;
        snprintf(res->text, sizeof res->text, "%.*s", (int)m->reply_text.len,
                 (const char *)m->reply_text.bytes);
        res->class_id = m->class_id;
        res->method_id = m->method_id;
    }
    snprintf(res->str, sizeof res->str, "%s %d '%s' (%u,%u)",
             r.reply.id == AMQP_CONNECTION_CLOSE_METHOD ? "connection.close"
             : r.reply.id == AMQP_CHANNEL_CLOSE_METHOD  ? "channel.close"
                                                        : "server method",
             res->code, res->text, res->class_id, res->method_id);
}

wt_result_t wt_amqp_result(amqp_connection_state_t conn) {
    wt_result_t res;
    wt_result_set(&res, amqp_get_rpc_reply(conn));
    return res;
}

amqp_connection_state_t wt_amqp_connect(const wt_broker_t *b, const wt_login_t *login,
                                        wt_result_t *res) {
    wt_login_t def = {NULL, NULL, NULL, 0, 131072, 0};
    const wt_login_t *l = login ? login : &def;
    amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_LIBRARY_EXCEPTION};
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(conn);
    struct timeval tv = {5, 0};
    r.library_error = amqp_socket_open_noblock(s, b->host, b->port, &tv);
    if (r.library_error == AMQP_STATUS_OK) {
        amqp_set_handshake_timeout(conn, &tv);
        amqp_set_rpc_timeout(conn, &tv);
        r = amqp_login(conn, l->vhost ? l->vhost : "/", l->channel_max, l->frame_max, l->heartbeat,
                       AMQP_SASL_METHOD_PLAIN, l->user ? l->user : "guest",
                       l->pass ? l->pass : "guest");
    }
    /* The decoded reply lives in the connection's memory: copy it first. */
    if (res) wt_result_set(res, r);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return conn;
    amqp_destroy_connection(conn);
    return NULL;
}

bool wt_amqp_close(amqp_connection_state_t conn) {
    if (!conn) return false;
    amqp_rpc_reply_t r = amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    return r.reply_type == AMQP_RESPONSE_NORMAL;
}

/* ---- raw sockets ------------------------------------------------------------------- */

int wt_raw_connect(wt_raw_t *c, const wt_broker_t *b) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)b->port)};
    int one = 1;
    c->len = c->pending = 0;
    c->start_len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    inet_pton(AF_INET, b->host, &a.sin_addr);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
        diag("connect %s:%d: %s", b->host, b->port, strerror(errno));
        if (c->fd >= 0) close(c->fd);
        c->fd = -1;
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return WT_OK;
}

void wt_raw_close(wt_raw_t *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

bool wt_raw_send(wt_raw_t *c, const void *p, size_t n) {
    const uint8_t *q = p;
    while (n > 0) {
        ssize_t w = send(c->fd, q, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        q += w;
        n -= (size_t)w;
    }
    return true;
}

/* One read into c->buf: WT_OK (bytes added), WT_EOF (closed or reset) or
 * WT_TIMEOUT. The deadline is absolute so callers loop without drift. */
static int wt_raw_fill(wt_raw_t *c, double deadline) {
    if (c->len == sizeof c->buf) return WT_BAD;
    for (;;) {
        int left = (int)(deadline - wt_now_ms());
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (left < 0) left = 0;
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return WT_TIMEOUT;
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return WT_EOF;
        c->len += (size_t)n;
        return WT_OK;
    }
}

static void wt_raw_consume(wt_raw_t *c, size_t n) {
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

size_t wt_raw_recv_all(wt_raw_t *c, uint8_t *out, size_t cap, int timeout_ms, bool *eof) {
    double deadline = wt_now_ms() + timeout_ms;
    int r = WT_OK;
    wt_raw_consume(c, c->pending);
    c->pending = 0;
    while (c->len < cap && (r = wt_raw_fill(c, deadline)) == WT_OK)
        ;
    *eof = r == WT_EOF;
    size_t n = c->len < cap ? c->len : cap;
    memcpy(out, c->buf, n);
    wt_raw_consume(c, n);
    return n;
}

int wt_raw_read_frame(wt_raw_t *c, wt_frame_t *f, int timeout_ms) {
    double deadline = wt_now_ms() + timeout_ms;
    /* The last frame handed out stayed in the buffer so that its payload
     * pointer remained valid until now. */
    wt_raw_consume(c, c->pending);
    c->pending = 0;
    for (;;) {
        if (c->len >= 7) {
            uint32_t size = wn_load32(c->buf + 3);
            if (size > sizeof c->buf - 8) return WT_BAD;
            if (c->len >= (size_t)size + 8) {
                if (c->buf[7 + size] != 0xCE) return WT_BAD;
                f->type = c->buf[0];
                f->channel = wn_load16(c->buf + 1);
                f->size = size;
                f->payload = c->buf + 7;
                f->class_id = f->method_id = 0;
                if (f->type == WT_FRAME_METHOD && size >= 4) {
                    f->class_id = wn_load16(f->payload);
                    f->method_id = wn_load16(f->payload + 2);
                }
                c->pending = (size_t)size + 8;
                return WT_OK;
            }
        }
        int r = wt_raw_fill(c, deadline);
        if (r != WT_OK) return r;
    }
}

bool wt_decode_close(const wt_frame_t *f, wt_close_t *out) {
    wn_reader_t r;
    bool connection_close = f->class_id == 10 && f->method_id == 50;
    bool channel_close = f->class_id == 20 && f->method_id == 40;
    if (f->type != WT_FRAME_METHOD || !(connection_close || channel_close)) return false;
    wn_reader_init(&r, f->payload + 4, f->size - 4);
    out->code = wn_get16(&r);
    wn_bytes_t text = wn_get_shortstr(&r);
    out->class_id = wn_get16(&r);
    out->method_id = wn_get16(&r);
    snprintf(out->text, sizeof out->text, "%.*s", (int)text.len, (const char *)text.ptr);
    /* RabbitMQ's texts can hold Erlang's pretty-printing newlines; they
     * would break the TAP stream when shown. */
    for (char *p = out->text; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    return !r.err;
}

int wt_raw_expect_close(wt_raw_t *c, wt_close_t *out, wt_frame_t *f, int timeout_ms) {
    double deadline = wt_now_ms() + timeout_ms;
    wt_frame_t local;
    wt_frame_t *fr = f ? f : &local;
    memset(out, 0, sizeof *out);
    for (;;) {
        int left = (int)(deadline - wt_now_ms());
        int r = wt_raw_read_frame(c, fr, left > 0 ? left : 0);
        if (r != WT_OK) return r;
        if (fr->type == WT_FRAME_HEARTBEAT) continue;
        if (fr->channel == 0 && fr->class_id == 10 && wt_decode_close(fr, out)) return WT_OK;
        return WT_BAD;
    }
}

double wt_raw_wait_eof(wt_raw_t *c, int timeout_ms) {
    double start = wt_now_ms(), deadline = start + timeout_ms;
    c->pending = 0;
    for (;;) {
        c->len = 0;
        int r = wt_raw_fill(c, deadline);
        if (r == WT_EOF) return (wt_now_ms() - start) / 1000.0;
        if (r == WT_TIMEOUT) return -1;
    }
}

size_t wt_method_frame(uint8_t *out, size_t cap, uint16_t channel, uint16_t class_id,
                       uint16_t method_id, const void *args, size_t args_len) {
    wn_writer_t w;
    wn_writer_init(&w, out, cap);
    wn_put8(&w, WT_FRAME_METHOD);
    wn_put16(&w, channel);
    wn_put32(&w, (uint32_t)(4 + args_len));
    wn_put16(&w, class_id);
    wn_put16(&w, method_id);
    wn_put_raw(&w, args, args_len);
    wn_put8(&w, 0xCE);
    return w.overflow ? 0 : w.len;
}

bool wt_raw_send_method(wt_raw_t *c, uint16_t channel, uint16_t class_id, uint16_t method_id,
                        const void *args, size_t args_len) {
    uint8_t frame[8192];
    size_t n = wt_method_frame(frame, sizeof frame, channel, class_id, method_id, args, args_len);
    return n > 0 && wt_raw_send(c, frame, n);
}

bool wt_raw_send_close_ok(wt_raw_t *c) {
    return wt_raw_send_method(c, 0, 10, 51, NULL, 0);
}

/* ---- the raw handshake ---------------------------------------------------------------- */

wt_raw_login_t wt_raw_login_defaults(void) {
    wt_raw_login_t l = {0};
    l.channel_max = l.frame_max = l.heartbeat = -1;
    l.stop_after = WT_HS_OPEN;
    return l;
}

static void wt_put_table_str(wn_writer_t *w, const char *key, const char *val) {
    wn_put_shortstr(w, wn_cstr(key));
    wn_put8(w, 'S');
    wn_put_longstr(w, wn_cstr(val));
}

size_t wt_amqplain_response(uint8_t *out, size_t cap, const char *user, const char *pass) {
    wn_writer_t w;
    wn_writer_init(&w, out, cap);
    wt_put_table_str(&w, "LOGIN", user);
    wt_put_table_str(&w, "PASSWORD", pass);
    return w.overflow ? 0 : w.len;
}

/* client-properties announcing authentication_failure_close, as librabbitmq
 * and pika do, so that a refused login is told with a connection.close. */
static void wt_put_client_properties(wn_writer_t *w) {
    uint8_t body[256], caps[64];
    wn_writer_t t, cw;
    wn_writer_init(&cw, caps, sizeof caps);
    wn_put_shortstr(&cw, wn_cstr("authentication_failure_close"));
    wn_put8(&cw, 't');
    wn_put8(&cw, 1);
    wn_writer_init(&t, body, sizeof body);
    wt_put_table_str(&t, "product", "warren-e2e-raw");
    wn_put_shortstr(&t, wn_cstr("capabilities"));
    wn_put8(&t, 'F');
    wn_put_longstr(&t, wn_bytes(caps, cw.len));
    wn_put_longstr(w, wn_bytes(body, t.len));
}

static bool wt_send_start_ok(wt_raw_t *c, const wt_raw_login_t *l) {
    uint8_t args[1024], plain[512];
    const char *user = l->user ? l->user : "guest", *pass = l->pass ? l->pass : "guest";
    wn_bytes_t resp = wn_bytes(l->response, l->response_len);
    wn_writer_t w;
    if (!l->response) {
        int n = snprintf((char *)plain + 1, sizeof plain - 1, "%s%c%s", user, 0, pass);
        plain[0] = 0;
        resp = wn_bytes(plain, (size_t)n + 1);
    }
    wn_writer_init(&w, args, sizeof args);
    wt_put_client_properties(&w);
    wn_put_shortstr(&w, wn_cstr(l->mechanism ? l->mechanism : "PLAIN"));
    wn_put_longstr(&w, resp);
    wn_put_shortstr(&w, wn_cstr("en_US"));
    return !w.overflow && wt_raw_send_method(c, 0, 10, 11, args, w.len);
}

/* Read the next method frame on channel 0; a connection.close is reported
 * as WT_HS_CLOSED, anything but the expected method as WT_HS_FAILED. */
static int wt_expect_method(wt_raw_t *c, uint16_t method_id, wt_frame_t *f, wt_close_t *close) {
    int r;
    do {
        r = wt_raw_read_frame(c, f, 5000);
    } while (r == WT_OK && f->type == WT_FRAME_HEARTBEAT);
    if (r != WT_OK) {
        diag("handshake: %s waiting for method 10.%u",
             r == WT_EOF       ? "EOF"
             : r == WT_TIMEOUT ? "timeout"
                               : "garbage",
             method_id);
        return WT_HS_FAILED;
    }
    if (close && wt_decode_close(f, close) && f->class_id == 10) return WT_HS_CLOSED;
    if (f->type != WT_FRAME_METHOD || f->class_id != 10 || f->method_id != method_id) {
        diag("handshake: got frame type %u %u.%u, wanted 10.%u", f->type, f->class_id, f->method_id,
             method_id);
        return WT_HS_FAILED;
    }
    return WT_OK;
}

static bool wt_send_tune_ok(wt_raw_t *c, const wt_raw_login_t *l, const wt_frame_t *tune) {
    uint8_t args[8];
    wn_reader_t r;
    wn_writer_t w;
    wn_reader_init(&r, tune->payload + 4, tune->size - 4);
    uint16_t channel_max = wn_get16(&r);
    uint32_t frame_max = wn_get32(&r);
    uint16_t heartbeat = wn_get16(&r);
    c->channel_max = l->channel_max >= 0 ? (uint16_t)l->channel_max : channel_max;
    c->frame_max = l->frame_max >= 0 ? (uint32_t)l->frame_max : frame_max;
    c->heartbeat = l->heartbeat >= 0 ? (uint16_t)l->heartbeat : heartbeat;
    wn_writer_init(&w, args, sizeof args);
    wn_put16(&w, c->channel_max);
    wn_put32(&w, c->frame_max);
    wn_put16(&w, (uint16_t)c->heartbeat);
    return wt_raw_send_method(c, 0, 10, 31, args, w.len);
}

static bool wt_send_open(wt_raw_t *c, const char *vhost) {
    uint8_t args[300];
    wn_writer_t w;
    wn_writer_init(&w, args, sizeof args);
    wn_put_shortstr(&w, wn_cstr(vhost));
    wn_put_shortstr(&w, wn_cstr(""));
    wn_put8(&w, 0);
    return !w.overflow && wt_raw_send_method(c, 0, 10, 40, args, w.len);
}

int wt_raw_handshake(wt_raw_t *c, const wt_broker_t *b, const wt_raw_login_t *l,
                     wt_close_t *close) {
    static const uint8_t header[8] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};
    wt_frame_t f;
    int r;
    if (wt_raw_connect(c, b) != WT_OK || !wt_raw_send(c, header, sizeof header))
        return WT_HS_FAILED;
    if ((r = wt_expect_method(c, 10, &f, close)) != WT_OK) return r;
    c->start_len = f.size < sizeof c->start ? f.size : sizeof c->start;
    memcpy(c->start, f.payload, c->start_len);
    if (l->stop_after == WT_HS_STARTED) return WT_HS_STARTED;
    if (!wt_send_start_ok(c, l)) return WT_HS_FAILED;
    if ((r = wt_expect_method(c, 30, &f, close)) != WT_OK) return r;
    if (!wt_send_tune_ok(c, l, &f)) return WT_HS_FAILED;
    if (l->stop_after == WT_HS_TUNED) return WT_HS_TUNED;
    if (!wt_send_open(c, l->vhost ? l->vhost : "/")) return WT_HS_FAILED;
    if ((r = wt_expect_method(c, 41, &f, close)) != WT_OK) return r;
    return WT_HS_OPEN;
}

bool wt_raw_channel_open(wt_raw_t *c, uint16_t channel) {
    static const uint8_t args[1] = {0}; /* reserved shortstr "" */
    wt_frame_t f;
    if (!wt_raw_send_method(c, channel, 20, 10, args, sizeof args)) return false;
    int r;
    do {
        r = wt_raw_read_frame(c, &f, 5000);
    } while (r == WT_OK && f.type == WT_FRAME_HEARTBEAT);
    return r == WT_OK && f.channel == channel && f.class_id == 20 && f.method_id == 11;
}
