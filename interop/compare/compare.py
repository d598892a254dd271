"""compare.py - side by side with RabbitMQ: each scenario runs through pika
against the reference RabbitMQ and against Warren, and what the client saw
(a transcript of deliveries, counts, flags, and the codes and texts of
errors) must be the same. On a mismatch both transcripts are printed.

The scenarios are the subtle ones: the order of messages after nack, reject,
recover and channel or connection close; prefetch accounting per consumer
and per channel; redelivered flags; basic.get and declare-ok counts; and the
reply code, text and scope (channel or connection) of the common errors.
Methods pika refuses to send (immediate, a reused consumer tag) go out
through pika's own frame writer.

The reference comes from WARREN_REFERENCE=host:port, or is started here by
shared/tools/reference-rabbitmq.sh beside the checkout; without one every
case is a TAP SKIP. WARREN_COMPARE_ONLY=substring runs only the matching
cases; WARREN_COMPARE_VERBOSE=1 prints every transcript.
"""
import difflib
import os
import re
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import brokers  # noqa: E402
import tap  # noqa: E402

try:
    import pika
    import pika.exceptions as pe
    from pika import spec
except ImportError:
    tap.ok(False, "pika is importable by %s: install Debian's python3-pika" % sys.executable)
    sys.exit(tap.done())

PREFIX = "cmp.%d." % os.getpid()
SETTLE = 0.2  # seconds to let deliveries arrive before counting them

# Scenarios that Warren still gets wrong, with how: reported as TAP TODO.
# Remove an entry when Warren is fixed: until then the fixed case prints
# "ok ... # TODO", which script/test lists.
KNOWN = {}


class Run:
    """One scenario against one broker: its connections and its transcript."""

    def __init__(self, host, port, tag):
        self.host, self.port, self.tag = host, port, tag
        self.lines = []
        self.conns = []
        self.queues, self.exchanges = [], []

    def log(self, *fields):
        text = " ".join(str(f) for f in fields)
        self.lines.append(re.sub(r"amq\.gen-[A-Za-z0-9_-]+", "amq.gen-*", text))

    def connect(self):
        params = pika.ConnectionParameters(
            self.host, self.port, credentials=pika.PlainCredentials("guest", "guest"),
            connection_attempts=1, socket_timeout=5, blocked_connection_timeout=5)
        conn = pika.BlockingConnection(params)
        self.conns.append(conn)
        return conn

    def channel(self, conn=None):
        conn = conn or (self.conns[0] if self.conns else self.connect())
        return conn.channel()

    def queue(self, ch, suffix="q", log=True, **kw):
        name = PREFIX + self.tag + "." + suffix
        ch.queue_delete(name)
        ok = ch.queue_declare(name, **kw).method
        if log:
            self.log("declare-ok", suffix, ok.message_count, ok.consumer_count)
        self.queues.append(name)
        return name

    def exchange(self, ch, suffix, type_="direct", **kw):
        name = PREFIX + self.tag + "." + suffix
        ch.exchange_delete(name)
        ch.exchange_declare(name, type_, **kw)
        self.exchanges.append(name)
        return name

    def publish(self, q, n, first=1):
        """n messages "first".."first+n-1" into q, each confirmed (so routed)."""
        ch = self.channel()
        ch.confirm_delivery()
        for i in range(first, first + n):
            ch.basic_publish("", q, str(i).encode())
        ch.close()

    def get(self, ch, q, auto_ack=False):
        method, _, body = ch.basic_get(q, auto_ack=auto_ack)
        if method is None:
            self.log("get-empty")
            return None
        self.log("get", body.decode(), "redelivered" if method.redelivered else "-",
                 "count=%d" % method.message_count, "tag=%d" % method.delivery_tag)
        return method.delivery_tag

    def get_all(self, ch, q, auto_ack=True):
        while self.get(ch, q, auto_ack) is not None:
            pass

    def wait_queue(self, ch, q, ready, consumers=None, seconds=3):
        """Poll until q has ready messages (and consumers): requeues after a
        close happen asynchronously in RabbitMQ."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ok = ch.queue_declare(q, passive=True).method
            if ok.message_count >= ready and consumers in (None, ok.consumer_count):
                return
            time.sleep(0.01)

    def wait_queue_gone(self, ch, q, seconds=3):
        """Poll until q no longer exists (auto-delete is asynchronous in RabbitMQ)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            probe = ch.connection.channel()
            try:
                probe.queue_declare(q, passive=True)
                probe.close()
            except pe.ChannelClosedByBroker:
                return
            time.sleep(0.01)

    def settle(self, seconds=SETTLE, quiet=0.1, limit=3.0):
        """Let deliveries arrive: at least seconds, then until no frame has
        arrived on any connection for quiet seconds (at most limit)."""
        start = last = time.monotonic()
        frames = None
        while True:
            for c in self.conns:
                if c.is_open:
                    c.process_data_events(time_limit=0.01)
            now = time.monotonic()
            seen = sum(c._impl.frames_received for c in self.conns)
            if seen != frames:
                frames, last = seen, now
            if now - start >= seconds and now - last >= quiet or now - start >= limit:
                return

    def attempt(self, what, action, ch=None, probe=True):
        """Run action; log its result or the broker's close (code, text, scope).

        With probe, a basic.qos round trip on ch afterwards catches errors
        that asynchronous methods (publish, ack) cause."""
        try:
            result = action()
            if probe and ch is not None:
                ch.basic_qos(prefetch_count=0)
            self.log(what, "->", "ok", describe(result))
        except pe.ChannelClosedByBroker as e:
            self.log(what, "->", "channel.close", e.reply_code, e.reply_text)
        except pe.ConnectionClosedByBroker as e:
            self.log(what, "->", "connection.close", e.reply_code, e.reply_text)

    def close(self):
        for c in self.conns:
            try:
                if c.is_open:
                    c.close()
            except Exception:
                pass
        if self.queues or self.exchanges:
            try:
                conn = self.connect()
                for q in self.queues:
                    ch = conn.channel()
                    ch.queue_delete(q)
                for x in self.exchanges:
                    ch = conn.channel()
                    ch.exchange_delete(x)
                conn.close()
            except Exception:
                pass


def describe(result):
    """The fields of a pika method frame worth comparing."""
    method = getattr(result, "method", None)
    if isinstance(method, spec.Queue.DeclareOk):
        return "declare-ok %s %d %d" % (method.queue, method.message_count, method.consumer_count)
    if isinstance(method, (spec.Queue.PurgeOk, spec.Queue.DeleteOk)):
        return "%s %d" % (method.NAME, method.message_count)
    if method is not None:
        return method.NAME
    return "" if result is None else repr(result)


SCENARIOS = []


def scenario(name):
    def register(fn):
        SCENARIOS.append((name, fn))
        return fn
    return register


def raw(ch, method, content=None):
    """Send a method pika would not (immediate, a reused consumer tag)."""
    ch._impl._send_method(method, content)


# ---- ordering after nack / reject / recover / close ----------------------

@scenario("requeue order: get 6, nack tag 4 then tag 2 singly, get all again")
def _(r):
    ch = r.channel(r.connect())
    q = r.queue(ch)
    r.publish(q, 6)
    tags = [r.get(ch, q) for _ in range(6)]
    ch.basic_nack(tags[3], requeue=True)
    ch.basic_nack(tags[1], requeue=True)
    r.get_all(ch, q)


@scenario("requeue order: get 6, nack multiple=true up to tag 6")
def _(r):
    ch = r.channel(r.connect())
    q = r.queue(ch)
    r.publish(q, 6)
    tags = [r.get(ch, q) for _ in range(6)]
    ch.basic_nack(tags[5], multiple=True, requeue=True)
    r.get_all(ch, q)


@scenario("requeue order: get 6, ack 1, drop 3, reject 5 and 2, nack multiple the rest")
def _(r):
    ch = r.channel(r.connect())
    q = r.queue(ch)
    r.publish(q, 6)
    tags = [r.get(ch, q) for _ in range(6)]
    ch.basic_ack(tags[0])
    ch.basic_nack(tags[2], requeue=False)
    ch.basic_reject(tags[4], requeue=True)
    ch.basic_reject(tags[1], requeue=True)
    ch.basic_nack(tags[5], multiple=True, requeue=True)
    r.get_all(ch, q)


@scenario("requeue order: get 3 of 6, nack 2 then 1, get two, nack 3 back in front of 4")
def _(r):
    ch = r.channel(r.connect())
    q = r.queue(ch)
    r.publish(q, 6)
    tags = [r.get(ch, q) for _ in range(3)]
    ch.basic_nack(tags[1], requeue=True)
    ch.basic_nack(tags[0], requeue=True)
    r.get(ch, q, auto_ack=True)
    r.get(ch, q, auto_ack=True)
    ch.basic_nack(tags[2], requeue=True)
    r.get_all(ch, q)


@scenario("requeue order: consumer with prefetch 2 nacks its second delivery, then acks")
def _(r):
    # One step at a time: when an ack and a nack arrive together, which
    # message the freed credit goes to is timing, in RabbitMQ as anywhere.
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch)
    r.publish(q, 6)
    ch.basic_qos(prefetch_count=2)
    tags = []

    def on_msg(c, method, props, body):
        r.log("deliver", body.decode(), "redelivered" if method.redelivered else "-",
              "tag=%d" % method.delivery_tag)
        tags.append(method.delivery_tag)

    ch.basic_consume(q, on_msg, consumer_tag="c1")
    r.settle()
    r.log("nack tag 2")
    ch.basic_nack(2, requeue=True)
    r.settle()
    r.log("ack tag 1")
    ch.basic_ack(1)
    r.settle()
    r.log("ack all")
    ch.basic_ack(tags[-1], multiple=True)
    r.settle()


@scenario("requeue order: unlimited consumer, nack multiple=true up to message 3")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch)
    r.publish(q, 6)
    seen = []

    def on_msg(c, method, props, body):
        r.log("deliver", body.decode(), "redelivered" if method.redelivered else "-",
              "tag=%d" % method.delivery_tag)
        seen.append(method.delivery_tag)
        if len(seen) == 6:
            c.basic_nack(seen[2], multiple=True, requeue=True)

    ch.basic_consume(q, on_msg, consumer_tag="c1")
    r.settle()
    ch.basic_ack(0, multiple=True)
    r.settle(0.05)
    r.log("after ack-all:", describe(ch.queue_declare(q, passive=True)))


@scenario("requeue order: nack multiple with delivery tag 0 (everything outstanding)")
def _(r):
    ch = r.channel(r.connect())
    q = r.queue(ch)
    r.publish(q, 5)
    tags = [r.get(ch, q) for _ in range(4)]
    ch.basic_ack(tags[1])
    ch.basic_nack(0, multiple=True, requeue=True)
    r.get_all(ch, q, auto_ack=False)
    ch.basic_ack(0, multiple=True)
    r.log("after ack multiple with tag 0:", describe(ch.queue_declare(q, passive=True)))


@scenario("redelivered: a cancelled consumer's unacked deliveries stay unacked until close")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch)
    r.publish(q, 4)
    c = conn.channel()
    c.basic_qos(prefetch_count=3)
    got = []
    c.basic_consume(q, lambda ch_, m, p, b: got.append(m.delivery_tag), consumer_tag="gone")
    r.settle()
    c.basic_cancel("gone")
    r.log("delivered:", got, "after cancel:", describe(ch.queue_declare(q, passive=True)))
    c.basic_ack(got[0])
    c.close()
    r.wait_queue(ch, q, 3)
    r.get_all(ch, q)


@scenario("redelivered: get 4 of 6, ack 1, close the channel, get all on another")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch)
    r.publish(q, 6)
    tags = [r.get(ch, q) for _ in range(4)]
    ch.basic_ack(tags[0])
    ch.close()
    ch = r.channel(conn)
    r.wait_queue(ch, q, 5)
    r.get_all(ch, q)


@scenario("redelivered: consumer's unacked deliveries after its connection closes")
def _(r):
    a = r.connect()
    ch = a.channel()
    q = r.queue(ch)
    r.publish(q, 5)
    got = []
    ch.basic_consume(q, lambda c, m, p, b: got.append(b.decode()), consumer_tag="gone")
    r.settle()
    r.log("delivered before close:", got)
    a.close()
    ch = r.connect().channel()
    r.wait_queue(ch, q, 5)
    r.get_all(ch, q)


@scenario("redelivered: basic.recover(requeue=true) with 3 unacked gets")
def _(r):
    ch = r.channel(r.connect())
    q = r.queue(ch)
    r.publish(q, 5)
    tags = [r.get(ch, q) for _ in range(3)]
    ch.basic_ack(tags[1])
    ch.basic_recover(requeue=True)
    r.get_all(ch, q)


@scenario("redelivered: tx.rollback keeps acks undone, messages stay unacked")
def _(r):
    ch = r.channel(r.connect())
    q = r.queue(ch)
    r.publish(q, 3)
    ch.tx_select()
    tags = [r.get(ch, q) for _ in range(3)]
    ch.basic_ack(tags[2], multiple=True)
    ch.tx_rollback()
    ch.basic_recover(requeue=True)
    r.get_all(ch, q)


# ---- prefetch accounting --------------------------------------------------

def counting_consumers(r, ch, queues, tags=("A", "B"), auto_ack=False):
    got = {t: [] for t in tags}

    def make(tag):
        return lambda c, m, p, b: got[tag].append(m.delivery_tag)
    for tag, q in zip(tags, queues):
        ch.basic_consume(q, make(tag), auto_ack=auto_ack, consumer_tag=tag)
    return got


def log_counts(r, got, when):
    r.log(when, " ".join("%s=%d" % (t, len(v)) for t, v in sorted(got.items())))


@scenario("prefetch: qos 3 global=false, two consumers on one channel, 20 messages")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch)
    r.publish(q, 20)
    ch.basic_qos(prefetch_count=3, global_qos=False)
    got = counting_consumers(r, ch, [q, q])
    r.settle()
    log_counts(r, got, "settled:")
    ch.basic_ack(got["A"][0])
    r.settle()
    log_counts(r, got, "after one ack of A:")
    r.log(describe(r.channel(conn).queue_declare(q, passive=True)))


@scenario("prefetch: qos 3 global=true, two consumers on one channel, 20 messages")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch)
    r.publish(q, 20)
    ch.basic_qos(prefetch_count=3, global_qos=True)
    got = counting_consumers(r, ch, [q, q])
    r.settle()
    log_counts(r, got, "settled:")
    ch.basic_ack(got["A"][0])
    r.settle()
    log_counts(r, got, "after one ack of A:")


@scenario("prefetch: qos 2 global=false and qos 5 global=true together, two consumers")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch)
    r.publish(q, 20)
    ch.basic_qos(prefetch_count=2, global_qos=False)
    ch.basic_qos(prefetch_count=5, global_qos=True)
    got = counting_consumers(r, ch, [q, q, q], tags=("A", "B", "C"))
    r.settle()
    log_counts(r, got, "settled:")
    ch.basic_ack(got["A"][-1], multiple=True)
    r.settle()
    log_counts(r, got, "after multiple ack:")


@scenario("prefetch: qos 3 global=false set between two consumers (only the later is limited)")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch)
    got = {"A": [], "B": []}
    ch.basic_consume(q, lambda c, m, p, b: got["A"].append(m.delivery_tag), consumer_tag="A")
    ch.basic_qos(prefetch_count=3, global_qos=False)
    ch.basic_consume(q, lambda c, m, p, b: got["B"].append(m.delivery_tag), consumer_tag="B")
    r.publish(q, 20)
    r.settle()
    log_counts(r, got, "settled:")


@scenario("prefetch: qos 3 global=false, consumers on two queues, acks multiple")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q1 = r.queue(ch, "q1")
    q2 = r.queue(ch, "q2")
    r.publish(q1, 10)
    r.publish(q2, 10)
    ch.basic_qos(prefetch_count=3)
    got = counting_consumers(r, ch, [q1, q2])
    r.settle()
    log_counts(r, got, "settled:")
    ch.basic_ack(max(got["A"] + got["B"]), multiple=True)
    r.settle()
    log_counts(r, got, "after ack multiple of everything:")


@scenario("prefetch: basic.get and no-ack consumers are not limited by qos 1")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch)
    r.publish(q, 10)
    ch.basic_qos(prefetch_count=1, global_qos=True)
    for _ in range(3):
        r.get(ch, q)
    got = counting_consumers(r, ch, [q], tags=("A",), auto_ack=True)
    r.settle()
    log_counts(r, got, "no-ack consumer:")


@scenario("prefetch: qos 1 on each of two channels, the next message goes to the one that acks")
def _(r):
    conn = r.connect()
    ch1, ch2 = conn.channel(), conn.channel()
    q = r.queue(ch1)
    r.publish(q, 6)
    ch1.basic_qos(prefetch_count=1)
    ch2.basic_qos(prefetch_count=1)
    got = {"A": [], "B": []}

    def make(tag):
        return lambda c, m, p, b: got[tag].append((m.delivery_tag, b.decode()))
    ch1.basic_consume(q, make("A"), consumer_tag="A")
    ch2.basic_consume(q, make("B"), consumer_tag="B")
    r.settle()
    r.log("settled:", got)
    ch1.basic_ack(got["A"][-1][0])
    r.settle()
    r.log("after A acks:", got)
    ch2.basic_ack(got["B"][-1][0])
    r.settle()
    r.log("after B acks:", got)


@scenario("prefetch: consumer priorities, x-priority 5 served before 0 while it has credit")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch)
    ch.basic_qos(prefetch_count=2)
    got = {"low": [], "high": []}
    ch.basic_consume(q, lambda c, m, p, b: got["low"].append(b.decode()), consumer_tag="low")
    ch.basic_consume(q, lambda c, m, p, b: got["high"].append(b.decode()), consumer_tag="high",
                     arguments={"x-priority": 5})
    r.publish(q, 6)
    r.settle()
    r.log("settled:", got)
    ch.basic_ack(0, multiple=True)
    r.settle()
    r.log("after ack all:", got)


# ---- transactions and queue lifecycle -----------------------------------

@scenario("tx: publishes and acks take effect at commit, rollback discards them")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch)
    tx = conn.channel()
    tx.tx_select()
    for i in range(2):
        tx.basic_publish("", q, b"t%d" % i)
    r.log("before commit:", describe(ch.queue_declare(q, passive=True)))
    tx.tx_commit()
    r.log("after commit:", describe(ch.queue_declare(q, passive=True)))
    tx.basic_publish("", q, b"rolled back")
    tx.tx_rollback()
    r.log("after rollback:", describe(ch.queue_declare(q, passive=True)))
    tag = r.get(tx, q)
    tx.basic_ack(tag)
    tx.tx_rollback()
    tx.basic_recover(requeue=True)
    r.log("ack rolled back, recovered:", describe(ch.queue_declare(q, passive=True)))
    r.get_all(ch, q)


@scenario("lifecycle: auto-delete after the last consumer, exclusive across channels")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch, "auto", auto_delete=True)
    r.publish(q, 1)
    r.attempt("declare-ok before any consumer", lambda: ch.queue_declare(q, passive=True))
    c = conn.channel()
    c.basic_consume(q, lambda *a: None, consumer_tag="one")
    c.basic_consume(q, lambda *a: None, consumer_tag="two")
    c.basic_cancel("one")
    r.attempt("after one of two cancels", lambda: ch.queue_declare(q, passive=True))
    c.basic_cancel("two")
    r.wait_queue_gone(ch, q)
    r.attempt("after the last cancels", lambda: ch.queue_declare(q, passive=True))
    ch = conn.channel()
    x = r.queue(ch, "excl", exclusive=True)
    other = conn.channel()
    r.attempt("another channel of the owner declares it",
              lambda: other.queue_declare(x, exclusive=True))
    r.attempt("and consumes from it",
              lambda: other.basic_consume(x, lambda *a: None, consumer_tag="mine"))


@scenario("properties: every basic property and header field type round-trips")
def _(r):
    import datetime
    import decimal
    ch = r.channel(r.connect())
    q = r.queue(ch)
    headers = {"int": 7, "long": 1 << 40, "neg": -3, "true": True, "false": False,
               "str": "h\u00e9llo", "bytes": b"\x00\xff", "none": None,
               "decimal": decimal.Decimal("3.14"),
               "time": datetime.datetime(2024, 1, 2, 3, 4, 5),
               "list": [1, "two", [3], {"four": 4}], "table": {"nested": {"deep": [True]}},
               "empty-list": [], "empty-table": {}}
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="gzip", headers=headers,
        delivery_mode=2, priority=3, correlation_id="corr", reply_to="replies",
        expiration="60000", message_id="mid", timestamp=1700000000, type="kind",
        user_id="guest", app_id="interop")
    pub = r.channel()
    pub.confirm_delivery()
    pub.basic_publish("", q, b"body", props)
    pub.basic_publish("", q, b"", pika.BasicProperties())
    for _ in range(2):
        method, got, body = ch.basic_get(q, auto_ack=True)
        fields = {k: v for k, v in vars(got).items() if v is not None}
        r.log("body", body, "properties", sorted(fields.items(), key=lambda kv: kv[0]))


# ---- routing ------------------------------------------------------------------

def routed(r, ch, exchange, bindings, messages):
    """Bind one queue per (name, key, args), publish (key, headers) messages,
    log what each queue got."""
    names = {}
    for name, key, args in bindings:
        names[name] = r.queue(ch, name, log=False)
        ch.queue_bind(names[name], exchange, key, arguments=args)
    pub = r.channel()
    pub.confirm_delivery()
    for i, (key, headers) in enumerate(messages):
        pub.basic_publish(exchange, key, ("%d:%s" % (i, key)).encode(),
                          pika.BasicProperties(headers=headers))
    for name, _, _ in bindings:
        got = []
        while True:
            method, _, body = ch.basic_get(names[name], auto_ack=True)
            if method is None:
                break
            got.append(body.decode())
        r.log(name, "<-", got)


@scenario("routing: topic bindings with *, # and empty words")
def _(r):
    ch = r.channel(r.connect())
    x = r.exchange(ch, "topic", "topic")
    patterns = ["#", "*", "a.*", "a.#", "#.b", "a.#.b", "*.*", "#.#", "a.*.#", "", "a..b", "*.b.#"]
    keys = ["", "a", "b", "a.b", "a.b.b", "a.x.y.b", "a..b", ".", "a.", ".b", "c.b.d", "a.b.c"]
    routed(r, ch, x, [("p%d[%s]" % (i, p), p, None) for i, p in enumerate(patterns)],
           [(k, None) for k in keys])


@scenario("routing: headers exchange, x-match all and any, absent and typed values")
def _(r):
    ch = r.channel(r.connect())
    x = r.exchange(ch, "headers", "headers")
    bindings = [
        ("all-ab", "", {"x-match": "all", "a": 1, "b": "two"}),
        ("any-ab", "", {"x-match": "any", "a": 1, "b": "two"}),
        ("default", "", {"a": 1}),
        ("empty-all", "", {"x-match": "all"}),
        ("empty-any", "", {"x-match": "any"}),
    ]
    messages = [("", {"a": 1, "b": "two"}), ("", {"a": 1}), ("", {"b": "two", "c": 3}),
                ("", {"a": "1"}), ("", {}), ("", None), ("", {"a": 1, "b": "other"})]
    routed(r, ch, x, bindings, messages)


@scenario("routing: alternate exchange, exchange-to-exchange bindings, CC and BCC")
def _(r):
    ch = r.channel(r.connect())
    ae = r.exchange(ch, "ae", "fanout")
    x = r.exchange(ch, "main", "direct", arguments={"alternate-exchange": ae})
    inner = r.exchange(ch, "inner", "topic")
    ch.exchange_bind(inner, x, "to-inner")
    qa = r.queue(ch, "unrouted", log=False)
    ch.queue_bind(qa, ae)
    qd = r.queue(ch, "direct", log=False)
    ch.queue_bind(qd, x, "k")
    qt = r.queue(ch, "inner", log=False)
    ch.queue_bind(qt, inner, "#")
    qc = r.queue(ch, "cc", log=False)
    ch.queue_bind(qc, x, "cc-key")
    pub = r.channel()
    pub.confirm_delivery()
    for key, headers in [("k", None), ("nothing", None), ("to-inner", None),
                         ("k", {"CC": ["cc-key"]}), ("nothing", {"BCC": ["cc-key"]})]:
        pub.basic_publish(x, key, ("%s %s" % (key, headers)).encode(),
                          pika.BasicProperties(headers=headers))
    for q in (qa, qd, qt, qc):
        while True:
            method, props, body = ch.basic_get(q, auto_ack=True)
            if method is None:
                break
            r.log(q.rsplit(".", 1)[1], "<-", body.decode(), method.routing_key, props.headers)


# ---- basic.get and declare-ok counts ---------------------------------------

@scenario("counts: basic.get message_count with unacked messages elsewhere")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch)
    r.publish(q, 6)
    other = conn.channel()
    other.basic_qos(prefetch_count=2)
    other.basic_consume(q, lambda *a: None, consumer_tag="holder")
    r.settle()
    for _ in range(5):
        r.get(ch, q)
    r.log(describe(ch.queue_declare(q, passive=True)))


@scenario("counts: declare-ok, purge-ok and delete-ok message and consumer counts")
def _(r):
    conn = r.connect()
    ch = r.channel(conn)
    q = r.queue(ch, durable=False)
    r.publish(q, 5)
    r.log(describe(ch.queue_declare(q)))
    c1, c2 = conn.channel(), conn.channel()
    for c, tag in ((c1, "c1"), (c2, "c2")):
        c.basic_qos(prefetch_count=1)
        c.basic_consume(q, lambda *a: None, consumer_tag=tag)
    r.settle()
    r.log(describe(ch.queue_declare(q, passive=True)))
    r.log(describe(ch.queue_purge(q)))
    r.log(describe(ch.queue_declare(q, passive=True)))
    c1.close()
    r.wait_queue(ch, q, 1, consumers=1)
    r.log("after closing c1:", describe(ch.queue_declare(q, passive=True)))
    r.publish(q, 2, first=10)
    r.settle()
    r.log(describe(ch.queue_declare(q, passive=True)))
    r.log(describe(ch.queue_delete(q)))


@scenario("counts: server-named exclusive queue, redeclare by name, delete")
def _(r):
    conn = r.connect()
    ch = conn.channel()
    ok = ch.queue_declare("", exclusive=True).method
    r.log(describe(ch.queue_declare("", exclusive=True)))
    r.publish(ok.queue, 3)
    r.attempt("passive redeclare", lambda: ch.queue_declare(ok.queue, passive=True))
    r.attempt("delete", lambda: ch.queue_delete(ok.queue))
    r.attempt("delete again", lambda: ch.queue_delete(ok.queue))
    ch = conn.channel()
    ok = ch.queue_declare("", exclusive=True).method
    r.attempt("redeclare by its amq.gen- name", lambda: ch.queue_declare(ok.queue, exclusive=True))


# ---- TTL and dead-lettering ---------------------------------------------------

# The content-header properties exactly as they arrived, to compare x-death
# byte for byte (pika decodes them into dicts, which would hide field order
# and types).
_RAW_PROPS = []
_decode_props = spec.BasicProperties.decode


def _keep_raw_props(self, encoded, offset=0):
    _RAW_PROPS.append(bytes(encoded[offset:]))
    return _decode_props(self, encoded, offset)


spec.BasicProperties.decode = _keep_raw_props


def raw_props_hex():
    """The last message's properties in hex, x-death times blanked ("time", T, 8 bytes)."""
    return re.sub(r"(0474696d6554)[0-9a-f]{16}", r"\1<time>", _RAW_PROPS[-1].hex())


def dl_get(r, ch, q, what):
    method, _, body = ch.basic_get(q, auto_ack=True)
    if method is None:
        r.log(what, "get-empty")
        return None, None
    r.log(what, body.decode(), "exchange=%s" % method.exchange.replace(PREFIX, ""),
          "rk=%s" % method.routing_key.replace(PREFIX, ""), raw_props_hex().replace(
              PREFIX.encode().hex(), "<prefix>"))
    return method, body


def wait_count(ch, q, n, seconds=3):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ch.queue_declare(q, passive=True).method.message_count == n:
            return
        time.sleep(0.02)


@scenario("dead-letter: reject, nack, expiry and repeats: x-death and headers byte for byte")
def _(r):
    ch = r.channel(r.connect())
    dlx = r.exchange(ch, "dlx", "fanout")
    dlq = r.queue(ch, "dlq")
    ch.queue_bind(dlq, dlx)
    src = r.queue(ch, "src", arguments={"x-dead-letter-exchange": dlx})
    keyed = r.queue(ch, "keyed", arguments={"x-dead-letter-exchange": "",
                                            "x-dead-letter-routing-key": dlq})
    ttl = r.queue(ch, "ttl", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                        "x-dead-letter-routing-key": src})
    headers = {"zz": 1, "CC": [keyed], "aa": "x", "BCC": ["nowhere"], "Ab": [1, "two"]}
    ch.confirm_delivery()
    ch.basic_publish("", src, b"one", pika.BasicProperties(
        headers=headers, expiration="60000", delivery_mode=2, content_type="text/plain"))
    ch.basic_publish("", src, b"two", pika.BasicProperties(headers={"k": "v"}))
    ch.basic_publish("", src, b"three")
    m1 = ch.basic_get(src)[0]
    m2 = ch.basic_get(src)[0]
    m3 = ch.basic_get(src)[0]
    ch.basic_reject(m1.delivery_tag, requeue=False)
    ch.basic_nack(m3.delivery_tag, multiple=True, requeue=False)
    wait_count(ch, dlq, 3)
    for _ in range(3):
        dl_get(r, ch, dlq, "rejected")
    # "one" went to keyed too (its CC): dead-lettered from there with a routing key, CC goes.
    m = ch.basic_get(keyed)[0]
    ch.basic_reject(m.delivery_tag, requeue=False)
    wait_count(ch, dlq, 1)
    dl_get(r, ch, dlq, "keyed")
    # Round trips: src -> (reject) -> dlq; back through ttl -> (expired) -> src, three times.
    ch.basic_publish("", ttl, b"loop", pika.BasicProperties(headers={"k": "v"}, expiration="100000"))
    for i in range(3):
        wait_count(ch, src, 1)
        m = ch.basic_get(src)[0]
        ch.basic_reject(m.delivery_tag, requeue=False)
        wait_count(ch, dlq, 1)
        _, body = dl_get(r, ch, dlq, "round %d" % i)
        ch.basic_publish("", ttl, body, pika.BasicProperties(headers=_decode_headers()))
    wait_count(ch, src, 1)
    dl_get(r, ch, src, "last")


def _decode_headers():
    props = pika.BasicProperties()
    _decode_props(props, _RAW_PROPS[-1])
    return props.headers


@scenario("dead-letter: x-death headers that clients wrote: grouping, missing counts, order")
def _(r):
    import datetime
    ch = r.channel(r.connect())
    dlq = r.queue(ch, "dlq")
    src = r.queue(ch, "src", arguments={"x-dead-letter-exchange": "",
                                        "x-dead-letter-routing-key": dlq})
    t = datetime.datetime(2024, 1, 1)

    def death(q, reason, count=None, **extra):
        d = {"reason": reason, "queue": q, "time": t, "exchange": "", "routing-keys": [q]}
        if count is not None:
            d["count"] = count
        d.update(extra)
        return d
    cases = [
        [death("a", "expired", 1), death("b", "rejected", 2), death("c", "expired", 1)],
        [death("a", "expired", 1), death(src, "rejected", 2, zzz=1, aaa="x"),
         death("c", "expired", 1)],
        [death("a", "expired", 1), death("a", "expired", 2), death("c", "expired", 1)],
        [death(src, "rejected", 5), death(src, "rejected", 1)],
        [{"queue": "a", "reason": "expired"}, {"queue": "a", "reason": "expired", "x": 1},
         {"queue": "b", "reason": "expired"}],
        [{"queue": src, "reason": "rejected"}, {"queue": src, "reason": "rejected"}, {"queue": "b"}],
        [{"reason": "rejected"}, {"reason": "rejected"}, {}],
        [{"queue": src, "reason": "rejected"}],
        [],
        "not an array",
    ]
    ch.confirm_delivery()
    for i, xd in enumerate(cases):
        ch.basic_publish("", src, b"%d" % i, pika.BasicProperties(
            headers={"x-death": xd, "x-first-death-queue": "client"}))
        m = ch.basic_get(src)[0]
        ch.basic_reject(m.delivery_tag, requeue=False)
        wait_count(ch, dlq, 1)
        dl_get(r, ch, dlq, "case %d" % i)


@scenario("dead-letter: expired cycles are dropped, missing exchange drops, a reject keeps it going")
def _(r):
    ch = r.channel(r.connect())
    ch.confirm_delivery()
    # a queue whose expired messages come back to itself: dropped at once
    self_loop = r.queue(ch, "self", arguments={"x-message-ttl": 20, "x-dead-letter-exchange": ""})
    ch.basic_publish("", self_loop, b"loop")
    time.sleep(0.3)
    r.log("self loop", ch.queue_declare(self_loop, passive=True).method.message_count)
    # two TTL queues feeding each other: dropped when it reaches the first again
    a = r.queue(ch, "a", arguments={"x-message-ttl": 20, "x-dead-letter-exchange": "",
                                    "x-dead-letter-routing-key": PREFIX + r.tag + ".b"})
    b = r.queue(ch, "b", arguments={"x-message-ttl": 20, "x-dead-letter-exchange": "",
                                    "x-dead-letter-routing-key": a})
    ch.basic_publish("", a, b"ping")
    time.sleep(0.4)
    r.log("two queues", ch.queue_declare(a, passive=True).method.message_count,
          ch.queue_declare(b, passive=True).method.message_count)
    # a missing dead-letter exchange: the message is dropped
    gone = r.queue(ch, "gone", arguments={"x-dead-letter-exchange": PREFIX + "no-such-exchange"})
    ch.basic_publish("", gone, b"x")
    m = ch.basic_get(gone)[0]
    ch.basic_reject(m.delivery_tag, requeue=False)
    r.log("missing dlx", ch.queue_declare(gone, passive=True).method.message_count)
    # with a rejection in the cycle the message goes round
    work = r.queue(ch, "work", arguments={"x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": PREFIX + r.tag + ".retry"})
    r.queue(ch, "retry", arguments={"x-message-ttl": 20, "x-dead-letter-exchange": "",
                                    "x-dead-letter-routing-key": work})
    ch.basic_publish("", work, b"job")
    for i in range(3):
        wait_count(ch, work, 1)
        m, props, _ = ch.basic_get(work)
        if m is None:
            r.log("round", i, "get-empty")
            break
        r.log("round", i, [(d["queue"].replace(PREFIX, ""), d["reason"], d["count"])
                           for d in (props.headers or {}).get("x-death", [])])
        ch.basic_reject(m.delivery_tag, requeue=False)


@scenario("ttl: queue TTL, message expiration (the lower wins), TTL 0, requeue keeps the expiry")
def _(r):
    ch = r.channel(r.connect())
    ch.confirm_delivery()
    q = r.queue(ch, "ttl", arguments={"x-message-ttl": 300})
    ch.basic_publish("", q, b"queue-ttl")
    ch.basic_publish("", q, b"shorter", pika.BasicProperties(expiration="100"))
    ch.basic_publish("", q, b"longer", pika.BasicProperties(expiration="100000"))
    time.sleep(0.15)
    m, _, body = ch.basic_get(q)
    r.log("after 150 ms", body, "count", m.message_count)
    ch.basic_nack(m.delivery_tag, requeue=True)
    time.sleep(0.3)
    r.log("after 450 ms", ch.queue_declare(q, passive=True).method.message_count)
    z = r.queue(ch, "zero", arguments={"x-message-ttl": 0})
    ch.basic_publish("", z, b"nobody waits")
    time.sleep(0.1)
    r.log("ttl 0, no consumer", ch.queue_declare(z, passive=True).method.message_count)
    got = []
    ch.basic_consume(z, lambda c, m, p, b: got.append(b), auto_ack=True)
    ch.basic_publish("", z, b"delivered")
    r.settle()
    r.log("ttl 0, consumer waiting", got)
    e = r.queue(ch, "exp")
    ch.basic_publish("", e, b"zero", pika.BasicProperties(expiration="0"))
    ch.basic_publish("", e, b"kept")
    time.sleep(0.1)
    r.log("expiration 0", ch.basic_get(e, auto_ack=True)[2])


# ---- length limits ---------------------------------------------------------------

def publish_logged(r, ch, exchange, key, bodies):
    """Publish each body on a confirming channel; log ack or nack."""
    for body in bodies:
        try:
            ch.basic_publish(exchange, key, body)
            r.log("publish", body, "ack")
        except pika.exceptions.NackError:
            r.log("publish", body, "nack")


@scenario("max-length: drop-head dead-letters the oldest (x-death byte for byte), bytes count bodies")
def _(r):
    ch = r.channel(r.connect())
    ch.confirm_delivery()
    dlq = r.queue(ch, "dlq")
    q = r.queue(ch, "len", arguments={"x-max-length": 2, "x-dead-letter-exchange": "",
                                      "x-dead-letter-routing-key": dlq})
    publish_logged(r, ch, "", q, [b"a", b"b", b"c", b"d"])
    wait_count(ch, dlq, 2)
    r.get_all(ch, q)
    for _ in range(2):
        dl_get(r, ch, dlq, "dropped")
    b = r.queue(ch, "bytes", arguments={"x-max-length-bytes": 10})
    publish_logged(r, ch, "", b, [b"1234", b"5678", b"9abc", b"de", b"fghijklmnop"])
    r.get_all(ch, b)


@scenario("max-length: reject-publish nacks at the limit (messages and bytes), others still get it")
def _(r):
    ch = r.channel(r.connect())
    ch.confirm_delivery()
    fan = r.exchange(ch, "fan", "fanout")
    q = r.queue(ch, "rej", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    other = r.queue(ch, "other")
    ch.queue_bind(q, fan)
    ch.queue_bind(other, fan)
    publish_logged(r, ch, fan, "", [b"a", b"b", b"c"])
    r.get_all(ch, q)
    r.get_all(ch, other)
    b = r.queue(ch, "rejbytes", arguments={"x-max-length-bytes": 10,
                                           "x-overflow": "reject-publish"})
    publish_logged(r, ch, "", b, [b"1234", b"5678", b"9abc", b"de"])
    r.get_all(ch, b)
    d = r.queue(ch, "rejdlq")
    x = r.queue(ch, "rejdlx", arguments={"x-max-length": 1, "x-overflow": "reject-publish-dlx",
                                         "x-dead-letter-exchange": "",
                                         "x-dead-letter-routing-key": d})
    publish_logged(r, ch, "", x, [b"kept", b"refused"])
    wait_count(ch, d, 1)
    r.get_all(ch, x)
    dl_get(r, ch, d, "refused")


# ---- priorities -----------------------------------------------------------------

@scenario("priority: highest first, FIFO within one, none = 0, capped at the maximum, requeue")
def _(r):
    ch = r.channel(r.connect())
    ch.confirm_delivery()
    q = r.queue(ch, "prio", arguments={"x-max-priority": 10})
    for body, prio in ((b"p1", 1), (b"p5a", 5), (b"none", None), (b"p10", 10), (b"p5b", 5),
                       (b"p20", 20), (b"p0", 0)):
        ch.basic_publish("", q, body, pika.BasicProperties(priority=prio))
    tags = [r.get(ch, q) for _ in range(3)]
    ch.basic_nack(tags[2], requeue=True)
    ch.basic_nack(tags[0], requeue=True)
    r.get_all(ch, q)


# ---- errors: code, text and whether the channel or the connection closes ----

def error_case(name, action, setup=None):
    """A scenario whose transcript is the outcome of action(r, ch, q)."""
    @scenario("error: " + name)
    def _(r):
        conn = r.connect()
        ch = conn.channel()
        q = r.queue(ch, log=False)
        # What setups and actions may leave behind, for Run.close to delete.
        r.queues += [q + s for s in (".ttl", ".neg", ".str")]
        r.exchanges += [q + s for s in (".ex", ".int", ".odd")]
        if setup:
            setup(r, ch, q)
        ch = conn.channel()
        r.attempt(name, lambda: action(r, ch, q), ch)
        r.log("connection open afterwards:", conn.is_open)


def other_connection_exclusive(r, ch, q):
    owner = r.connect()
    owner.channel().queue_declare(q + ".x", exclusive=True)


def missing(r, suffix="missing"):
    return PREFIX + r.tag + "." + suffix


error_case("passive declare of a missing exchange (404)",
           lambda r, ch, q: ch.exchange_declare(missing(r), passive=True))
error_case("publish to a missing exchange (404)",
           lambda r, ch, q: ch.basic_publish(missing(r), "k", b"x"))
error_case("bind a queue to a missing exchange (404)",
           lambda r, ch, q: ch.queue_bind(q, missing(r), "k"))
error_case("passive declare of a missing queue (404)",
           lambda r, ch, q: ch.queue_declare(missing(r), passive=True))
error_case("bind a missing queue (404)",
           lambda r, ch, q: ch.queue_bind(missing(r), "amq.direct", "k"))
error_case("consume from a missing queue (404)",
           lambda r, ch, q: ch.basic_consume(missing(r), lambda *a: None))
error_case("basic.get from a missing queue (404)",
           lambda r, ch, q: ch.basic_get(missing(r)))
error_case("purge a missing queue (404)",
           lambda r, ch, q: ch.queue_purge(missing(r)))
error_case("delete a missing queue (no error)",
           lambda r, ch, q: ch.queue_delete(missing(r)))
error_case("delete a missing exchange (no error)",
           lambda r, ch, q: ch.exchange_delete(missing(r)))
error_case("redeclare a queue with another durable (406)",
           lambda r, ch, q: ch.queue_declare(q, durable=True))
error_case("redeclare a queue with another auto_delete (406)",
           lambda r, ch, q: ch.queue_declare(q, auto_delete=True))
error_case("redeclare a queue with another x-message-ttl (406)",
           lambda r, ch, q: ch.queue_declare(q + ".ttl", arguments={"x-message-ttl": 2000}),
           setup=lambda r, ch, q: ch.queue_declare(q + ".ttl", arguments={"x-message-ttl": 1000}))
error_case("redeclare a queue adding x-message-ttl (406)",
           lambda r, ch, q: ch.queue_declare(q, arguments={"x-message-ttl": 1000}))
error_case("redeclare a queue adding x-max-length (406)",
           lambda r, ch, q: ch.queue_declare(q, arguments={"x-max-length": 10}))
error_case("declare a queue with a negative x-message-ttl (406)",
           lambda r, ch, q: ch.queue_declare(q + ".neg", arguments={"x-message-ttl": -1}))
error_case("declare a queue with a string x-expires (406)",
           lambda r, ch, q: ch.queue_declare(q + ".str", arguments={"x-expires": "soon"}))
error_case("redeclare an exchange with another type (406)",
           lambda r, ch, q: ch.exchange_declare(q + ".ex", "topic"),
           setup=lambda r, ch, q: ch.exchange_declare(q + ".ex", "direct"))
error_case("redeclare an exchange with another durable (406)",
           lambda r, ch, q: ch.exchange_declare(q + ".ex", "direct", durable=True),
           setup=lambda r, ch, q: ch.exchange_declare(q + ".ex", "direct"))
error_case("redeclare amq.direct as it is (no error)",
           lambda r, ch, q: ch.exchange_declare("amq.direct", "direct", durable=True))
error_case("redeclare amq.direct as fanout (406)",
           lambda r, ch, q: ch.exchange_declare("amq.direct", "fanout", durable=True))
error_case("declare another connection's exclusive queue (405)",
           lambda r, ch, q: ch.queue_declare(q + ".x"), setup=other_connection_exclusive)
error_case("passive declare of another connection's exclusive queue (405)",
           lambda r, ch, q: ch.queue_declare(q + ".x", passive=True),
           setup=other_connection_exclusive)
error_case("redeclare one's own exclusive queue without exclusive (405)",
           lambda r, ch, q: ch.queue_declare(q + ".x"),
           setup=lambda r, ch, q: ch.queue_declare(q + ".x", exclusive=True))
error_case("redeclare a queue as exclusive (405)",
           lambda r, ch, q: ch.queue_declare(q, exclusive=True))
error_case("consume from another connection's exclusive queue (405)",
           lambda r, ch, q: ch.basic_consume(q + ".x", lambda *a: None),
           setup=other_connection_exclusive)
error_case("basic.get from another connection's exclusive queue (405)",
           lambda r, ch, q: ch.basic_get(q + ".x"), setup=other_connection_exclusive)
error_case("delete another connection's exclusive queue (405)",
           lambda r, ch, q: ch.queue_delete(q + ".x"), setup=other_connection_exclusive)
error_case("declare an exchange named amq.* (403)",
           lambda r, ch, q: ch.exchange_declare("amq.interop-" + r.tag, "direct"))
error_case("declare a queue named amq.* (403)",
           lambda r, ch, q: ch.queue_declare("amq.interop-" + r.tag))
error_case("delete amq.direct (403)",
           lambda r, ch, q: ch.exchange_delete("amq.direct"))
error_case("bind a queue to the default exchange (403)",
           lambda r, ch, q: ch.queue_bind(q, "", "k"))
error_case("declare the default exchange (403)",
           lambda r, ch, q: ch.exchange_declare("", "direct"))
error_case("delete the default exchange (403)",
           lambda r, ch, q: ch.exchange_delete(""))
error_case("exclusive consume on a queue with a consumer (403)",
           lambda r, ch, q: ch.basic_consume(q, lambda *a: None, exclusive=True),
           setup=lambda r, ch, q: ch.basic_consume(q, lambda *a: None))
error_case("consume on a queue with an exclusive consumer (403)",
           lambda r, ch, q: ch.basic_consume(q, lambda *a: None),
           setup=lambda r, ch, q: ch.basic_consume(q, lambda *a: None, exclusive=True))
error_case("ack an unknown delivery tag (406)",
           lambda r, ch, q: ch.basic_ack(42))
error_case("ack a delivery tag twice (406)",
           lambda r, ch, q: (r.publish(q, 1), ch.basic_get(q), ch.basic_ack(1), ch.basic_ack(1)))
error_case("reject an unknown delivery tag (406)",
           lambda r, ch, q: ch.basic_reject(7, requeue=True))
error_case("nack multiple beyond the last tag (406)",
           lambda r, ch, q: (r.publish(q, 1), ch.basic_get(q), ch.basic_nack(5, multiple=True)))
error_case("queue.delete if_unused with a consumer (406)",
           lambda r, ch, q: ch.queue_delete(q, if_unused=True),
           setup=lambda r, ch, q: ch.basic_consume(q, lambda *a: None))
error_case("queue.delete if_empty with messages (406)",
           lambda r, ch, q: ch.queue_delete(q, if_empty=True),
           setup=lambda r, ch, q: r.publish(q, 2))
error_case("exchange.delete if_unused with a binding (406)",
           lambda r, ch, q: ch.exchange_delete(q + ".ex", if_unused=True),
           setup=lambda r, ch, q: (ch.exchange_declare(q + ".ex", "fanout"),
                                   ch.queue_bind(q, q + ".ex")))
error_case("tx.commit on a non-transactional channel (406)",
           lambda r, ch, q: ch.tx_commit())
error_case("confirm.select on a transactional channel (406)",
           lambda r, ch, q: (ch.tx_select(), ch.confirm_delivery()))
error_case("publish with immediate=true (540)",
           lambda r, ch, q: raw(ch, spec.Basic.Publish(exchange="", routing_key=q, immediate=True),
                                (pika.BasicProperties(), b"now")))
error_case("basic.qos with prefetch_size (540)",
           lambda r, ch, q: ch.basic_qos(prefetch_size=1000, prefetch_count=1))
error_case("consume with a consumer tag in use on the channel (530)",
           lambda r, ch, q: (ch.basic_consume(q, lambda *a: None, consumer_tag="dup"),
                             raw(ch, spec.Basic.Consume(queue=q, consumer_tag="dup"))))
error_case("declare an exchange of an unknown type (503)",
           lambda r, ch, q: ch.exchange_declare(q + ".odd", "no-such-type"))
error_case("unbind a binding that does not exist (no error)",
           lambda r, ch, q: ch.queue_unbind(q, "amq.direct", "never-bound"))
error_case("bind an exchange to a missing exchange (404)",
           lambda r, ch, q: ch.exchange_bind("amq.fanout", missing(r), "k"))
error_case("cancel an unknown consumer tag (no error)",
           lambda r, ch, q: raw(ch, spec.Basic.Cancel(consumer_tag="never-consumed")))
error_case("publish with a user_id other than the connection's (406)",
           lambda r, ch, q: ch.basic_publish("", q, b"x", pika.BasicProperties(user_id="mallory")))
error_case("publish with an expiration that is not a number (406)",
           lambda r, ch, q: ch.basic_publish("", q, b"x", pika.BasicProperties(expiration="soon")))
error_case("publish to an internal exchange (403)",
           lambda r, ch, q: ch.basic_publish(q + ".int", "k", b"x"),
           setup=lambda r, ch, q: ch.exchange_declare(q + ".int", "fanout", internal=True))


# ---- driver -----------------------------------------------------------------

def run_one(host, port, index, fn):
    r = Run(host, port, "s%d" % index)
    try:
        fn(r)
    except Exception as e:
        r.log("EXCEPTION", type(e).__name__, e)
        r.trace = traceback.format_exc()
    finally:
        r.close()
    return r


def show(ref, war):
    diff = list(difflib.unified_diff(ref.lines, war.lines, "RabbitMQ", "Warren", lineterm="", n=99))
    tap.diag("RabbitMQ:")
    for line in ref.lines:
        tap.diag("    " + line)
    tap.diag("Warren:")
    for line in war.lines:
        tap.diag("    " + line)
    if diff:
        tap.diag("diff:")
        for line in diff[2:]:
            tap.diag("    " + line)
    for r in (ref, war):
        if getattr(r, "trace", None):
            tap.diag(r.trace)


def main():
    only = os.environ.get("WARREN_COMPARE_ONLY", "")
    verbose = bool(os.environ.get("WARREN_COMPARE_VERBOSE"))
    cases = [(i, n, f) for i, (n, f) in enumerate(SCENARIOS) if only in n]
    host, port, owned = brokers.reference()
    if host is None:
        for _, name, _ in cases:
            tap.skip(name, port)
        return tap.done()
    warren = brokers.Warren()
    if not warren.start():
        tap.ok(False, "Warren starts: %s" % warren.error)
        if owned:
            owned.stop()
        return tap.done()
    tap.diag("RabbitMQ at %s:%d, Warren at %s:%d" % (host, port, warren.host, warren.port))
    try:
        for i, name, fn in cases:
            ref = run_one(host, port, i, fn)
            war = run_one(warren.host, warren.port, i, fn)
            same = ref.lines == war.lines and not any(
                line.startswith("EXCEPTION") for line in ref.lines)
            if not tap.ok(same, name, todo=KNOWN.get(name)) or verbose:
                show(ref, war)
        log = warren.log_tail()
        status = warren.stop()
        if not tap.ok(status == 0, "Warren exits 0 on SIGTERM (status %r)" % (status,)):
            for line in log:
                tap.diag("| " + line)
    finally:
        if owned:
            owned.stop()
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
