"""test_dedup.py - x-message-deduplication on exchanges and queues (as LavinMQ).

- Exchange level: a message whose x-deduplication-header value was seen is
  routed nowhere; it is still confirmed, and not returned even when
  mandatory. Messages without the header are never dropped.
- Queue level: the message is routed as usual; only the deduplicating queue
  leaves the duplicate out.
- The window: x-cache-size entries (the oldest evicted first), x-cache-ttl
  ms (or the message's own x-cache-ttl header); x-deduplication-header names
  another header.
- Arguments: invalid values are a 406; a redeclaration with other values is
  inequivalent.
- Restarts: the caches of durable exchanges and queues survive SIGKILL for
  persistent messages; a deleted and redeclared queue starts empty.
Run with Debian's python3 (pika).
"""
import signal
import time

import pika

import tap
from broker import Broker
from pikahelp import connect as conn, drain_bodies, ready

DEDUP = {"x-message-deduplication": True}


def props(value=None, persistent=False, header="x-deduplication-header", **more):
    headers = dict(more)
    if value is not None:
        headers[header] = value
    return pika.BasicProperties(headers=headers or None, delivery_mode=2 if persistent else 1)


def counts(ch, qs):
    return [ready(ch, q) for q in qs]


def bodies(ch, q):
    return [body.decode() for body in drain_bodies(ch, q)]


def close_error(fn):
    try:
        fn()
    except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as e:
        return e.reply_code, e.reply_text
    return None


def test_exchange_level(b):
    c = conn(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.exchange_declare("dd.x", "direct", arguments=DEDUP)
    for q in ("dd.x.q1", "dd.x.q2"):
        ch.queue_declare(q)
        ch.queue_bind(q, "dd.x", "k")
    sent = [("a", "1"), ("a", "2"), ("b", "3"), (None, "4"), (None, "5"), ("a", "6"), (7, "7"),
            ("7", "8"), (7, "9")]
    for v, body in sent:
        ch.basic_publish("dd.x", "k", body.encode(), props(v))  # raises if nacked
    tap.ok(True, "every publish is confirmed, duplicates too")
    want = ["1", "3", "4", "5", "7", "8"]
    tap.ok(bodies(ch, "dd.x.q1") == want and bodies(ch, "dd.x.q2") == want,
           "duplicates are routed to no queue; no header, never a duplicate; 7 and '7' differ")
    try:
        ch.basic_publish("dd.x", "k", b"again", props("b"), mandatory=True)
        tap.ok(True, "a mandatory duplicate is confirmed, not returned")
    except pika.exceptions.UnroutableError:
        tap.ok(False, "a mandatory duplicate is confirmed, not returned")
    c.close()


def test_queue_level(b):
    c = conn(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.exchange_declare("dd.f", "fanout")
    ch.queue_declare("dd.q.dedup", arguments=DEDUP)
    ch.queue_declare("dd.q.plain")
    ch.queue_bind("dd.q.dedup", "dd.f")
    ch.queue_bind("dd.q.plain", "dd.f")
    for v, body in (("x", "1"), ("x", "2"), ("y", "3")):
        ch.basic_publish("dd.f", "", body.encode(), props(v), mandatory=True)
    tap.ok(bodies(ch, "dd.q.dedup") == ["1", "3"] and bodies(ch, "dd.q.plain") == ["1", "2", "3"],
           "queue level: only the deduplicating queue leaves the duplicate out")
    # Consumed messages stay in the window.
    ch.basic_publish("", "dd.q.dedup", b"4", props("x"))
    tap.ok(bodies(ch, "dd.q.dedup") == [], "a value stays in the window after its message is consumed")
    c.close()


def test_window(b):
    c = conn(b)
    ch = c.channel()
    ch.queue_declare("dd.size", arguments=dict(DEDUP, **{"x-cache-size": 2}))
    for v in ("a", "a", "b", "c", "a", "c"):
        ch.basic_publish("", "dd.size", v.encode(), props(v))
    tap.ok(bodies(ch, "dd.size") == ["a", "b", "c", "a"],
           "x-cache-size 2: the oldest value is evicted first")
    ch.queue_declare("dd.ttl", arguments=dict(DEDUP, **{"x-cache-ttl": 300}))
    ch.basic_publish("", "dd.ttl", b"1", props("t"))
    ch.basic_publish("", "dd.ttl", b"2", props("t"))
    ch.basic_publish("", "dd.ttl", b"3", props("u", **{"x-cache-ttl": 1000}))
    time.sleep(0.45)
    ch.basic_publish("", "dd.ttl", b"4", props("t"))
    ch.basic_publish("", "dd.ttl", b"5", props("u"))
    tap.ok(bodies(ch, "dd.ttl") == ["1", "3", "4"],
           "x-cache-ttl: a value is forgotten after the TTL; a message's x-cache-ttl overrides it")
    ch.queue_declare("dd.hdr", arguments=dict(DEDUP, **{"x-deduplication-header": "msg-id"}))
    ch.basic_publish("", "dd.hdr", b"1", props("m", header="msg-id"))
    ch.basic_publish("", "dd.hdr", b"2", props("m", header="msg-id"))
    ch.basic_publish("", "dd.hdr", b"3", props("m"))
    ch.basic_publish("", "dd.hdr", b"4", props("m"))
    tap.ok(bodies(ch, "dd.hdr") == ["1", "3", "4"], "x-deduplication-header names the header")
    c.close()


def test_args(b):
    c = conn(b)
    bad = [
        ({"x-message-deduplication": "yes"}, "invalid arg 'x-message-deduplication' for queue "
                                             "'dd.bad' in vhost '/': {unacceptable_type,longstr}"),
        (dict(DEDUP, **{"x-cache-size": "big"}), "invalid arg 'x-cache-size' for queue 'dd.bad' in "
                                                 "vhost '/': \"expected integer, got longstr\""),
        (dict(DEDUP, **{"x-cache-size": 0}), "invalid arg 'x-cache-size' for queue 'dd.bad' in "
                                             "vhost '/': {value_zero,0}"),
        (dict(DEDUP, **{"x-cache-ttl": -1}), "invalid arg 'x-cache-ttl' for queue 'dd.bad' in "
                                             "vhost '/': {value_negative,-1}"),
    ]
    for args, text in bad:
        err = close_error(lambda: c.channel().queue_declare("dd.bad", arguments=args))
        tap.ok(err == (406, "PRECONDITION_FAILED - " + text), "queue %s: %s" % (args, err))
    err = close_error(lambda: c.channel().exchange_declare(
        "dd.bad", "fanout", arguments=dict(DEDUP, **{"x-deduplication-header": 5})))
    tap.ok(err and err[0] == 406 and "invalid arg 'x-deduplication-header' for exchange 'dd.bad'"
           in err[1], "exchange with a bad header name: %s" % (err,))
    ch = c.channel()
    ch.queue_declare("dd.eq", arguments=dict(DEDUP, **{"x-cache-size": 10}))
    ch.queue_declare("dd.eq", arguments=dict(DEDUP, **{"x-cache-size": 10}))
    err = close_error(lambda: ch.queue_declare("dd.eq", arguments=dict(DEDUP, **{"x-cache-size": 20})))
    tap.ok(err == (406, "PRECONDITION_FAILED - inequivalent arg 'x-cache-size' for queue 'dd.eq' in "
                        "vhost '/': received '20' but current is '10'"),
           "another x-cache-size is inequivalent: %s" % (err,))
    ch = c.channel()
    ch.queue_declare("dd.plain", arguments={"x-cache-size": "any"})
    ch.queue_declare("dd.plain", arguments={"x-cache-size": 3})
    tap.ok(True, "without x-message-deduplication the other arguments are not checked (as RabbitMQ)")
    ch.exchange_declare("dd.xeq", "topic", arguments=DEDUP)
    err = close_error(lambda: ch.exchange_declare("dd.xeq", "topic"))
    tap.ok(err and err[0] == 406 and "inequivalent arg 'x-message-deduplication'" in err[1],
           "an exchange redeclared without deduplication is inequivalent: %s" % (err,))
    c.close()


def test_restart(b):
    c = conn(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.exchange_declare("dd.rx", "fanout", durable=True, arguments=DEDUP)
    ch.queue_declare("dd.rq", durable=True, arguments=DEDUP)
    ch.queue_declare("dd.rx.q", durable=True)
    ch.queue_bind("dd.rx.q", "dd.rx")
    ch.queue_declare("dd.rdel", durable=True, arguments=DEDUP)
    ch.basic_publish("dd.rx", "", b"x1", props("p", persistent=True))
    ch.basic_publish("dd.rx", "", b"x2", props("t"))  # transient: its value is not kept
    ch.basic_publish("", "dd.rq", b"q1", props("p", persistent=True))
    ch.basic_publish("", "dd.rq", b"q2", props("e", persistent=True, **{"x-cache-ttl": 200}))
    ch.basic_publish("", "dd.rdel", b"d1", props("p", persistent=True))
    ch.queue_delete("dd.rdel")
    ch.queue_declare("dd.rdel", durable=True, arguments=DEDUP)
    c.close()
    tap.ok(b.restart(signal.SIGKILL) is not None, "the broker comes back after SIGKILL")
    time.sleep(0.25)
    c = conn(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.basic_publish("dd.rx", "", b"x3", props("p", persistent=True))
    ch.basic_publish("dd.rx", "", b"x4", props("t", persistent=True))
    ch.basic_publish("", "dd.rq", b"q3", props("p", persistent=True))
    ch.basic_publish("", "dd.rq", b"q4", props("e", persistent=True))
    ch.basic_publish("", "dd.rdel", b"d2", props("p", persistent=True))
    tap.ok(bodies(ch, "dd.rx.q") == ["x1", "x4"],
           "an exchange's window survives a restart (for persistent messages)")
    tap.ok(bodies(ch, "dd.rq") == ["q1", "q2", "q4"],
           "a queue's window survives a restart; expired values do not come back")
    tap.ok(bodies(ch, "dd.rdel") == ["d2"], "a deleted and redeclared queue starts with an empty cache")
    c.close()
    tap.ok(b.restart(signal.SIGTERM) == 0, "the broker stops cleanly and comes back")
    c = conn(b)
    ch = c.channel()
    ch.basic_publish("", "dd.rq", b"q5", props("p", persistent=True))
    ch.basic_publish("", "dd.rq", b"q6", props("z", persistent=True))
    tap.ok(bodies(ch, "dd.rq") == ["q6"], "and after a second restart (the log was rewritten)")
    c.close()


def main():
    b = Broker()
    if not b.start():
        return tap.done()
    if b.external:
        tap.skip("deduplication", "external broker")
        return tap.done()
    for t in (test_exchange_level, test_queue_level, test_window, test_args, test_restart):
        t(b)
    tap.ok(b.stop() == 0, "the broker stops cleanly")
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
