"""test_delayed.py - x-delayed-message exchanges (as the rabbitmq_delayed_message_exchange plugin).

- Declaring: a missing or non-string x-delayed-type is a 406 with the plugin's
  text, an unknown type a 503; an equivalent redeclaration is fine, another
  x-delayed-type or another type is a 406.
- Timing and order: messages come out in the order of their due times, none
  early and none much late; an absent, zero or negative x-delay routes at
  once; the x-delay header is delivered negated, as the plugin does.
- Routing by each x-delayed-type (direct, fanout, topic, headers) with the
  bindings of the moment the message is due: a binding added while a message
  waits gets it, one removed does not.
- Mandatory: a message that would route nowhere at publish is returned at
  once and never delivered; a routable one is not returned.
- Confirms come when the message is held, not when it is due.
- Restarts: persistent messages held by a durable delayed exchange come back
  after SIGKILL and are routed when due (also when that time passed while
  the broker was down); transient ones do not. Deleting the exchange drops
  what it held.
- Compaction (64 KiB segments, thousands of messages coming and going): a
  held message is copied forward with the rest, comes back once after
  SIGKILL, on time.
- kill -9 at random moments while persistent delayed messages are published
  (with confirms), held and routed, 5 times: every confirmed message reaches
  the queue exactly once (WARREN_DELAYED_KILLS, WARREN_DELAYED_SEED).
Run with Debian's python3 (pika).
"""
import os
import random
import signal
import time

import pika

import tap
from broker import Broker
from pikahelp import connect as conn

DX = "x-delayed-message"


def props(delay=None, persistent=False, **headers):
    if delay is not None:
        headers["x-delay"] = delay
    return pika.BasicProperties(headers=headers or None, delivery_mode=2 if persistent else 1)


def close_error(fn):
    """Run fn; the (code, text) the broker closed the channel or connection with."""
    try:
        fn()
    except (pika.exceptions.ChannelClosedByBroker, pika.exceptions.ConnectionClosedByBroker) as e:
        return e.reply_code, e.reply_text
    return None


def collect(c, ch, queue, n, timeout):
    """Consume n messages; [(body, seconds since start, headers)]."""
    got = []
    t0 = time.monotonic()

    def on_msg(chan, m, p, body):
        got.append((body, time.monotonic() - t0, p.headers))
        chan.basic_ack(m.delivery_tag)

    tag = ch.basic_consume(queue, on_msg)
    while len(got) < n and time.monotonic() - t0 < timeout:
        c.process_data_events(time_limit=0.01)
    ch.basic_cancel(tag)
    return got


def test_declare(b):
    c = conn(b)
    for args, want in (({}, 406), ({"x-delayed-type": 5}, 406), ({"x-delayed-type": DX}, 406)):
        err = close_error(lambda: c.channel().exchange_declare("d.bad", DX, arguments=args))
        tap.ok(err == (want, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an "
                             "existing exchange type"), "x-delayed-type %r: %s" % (args, err))
    err = close_error(lambda: c.channel().exchange_declare("d.bad", DX,
                                                           arguments={"x-delayed-type": "foo"}))
    tap.ok(err == (503, "COMMAND_INVALID - unknown exchange type 'foo'"),
           "unknown x-delayed-type closes the connection with 503: %s" % (err,))
    c = conn(b)
    ch = c.channel()
    ch.exchange_declare("d.eq", DX, durable=True, arguments={"x-delayed-type": "direct"})
    ch.exchange_declare("d.eq", DX, durable=True, arguments={"x-delayed-type": "direct"})
    tap.ok(True, "an equivalent redeclaration is accepted")
    err = close_error(lambda: ch.exchange_declare("d.eq", DX, durable=True,
                                                  arguments={"x-delayed-type": "fanout"}))
    tap.ok(err == (406, "PRECONDITION_FAILED - inequivalent arg 'x-delayed-type' for exchange "
                        "'d.eq' in vhost '/': received 'fanout' but current is 'direct'"),
           "another x-delayed-type is inequivalent: %s" % (err,))
    ch = c.channel()
    err = close_error(lambda: ch.exchange_declare("d.eq", "direct", durable=True))
    tap.ok(err and err[0] == 406 and "inequivalent arg 'type'" in err[1]
           and "received 'direct' but current is 'x-delayed-message'" in err[1],
           "another exchange type is inequivalent: %s" % (err,))
    ch = c.channel()
    ch.exchange_declare("d.eq", DX, passive=True)
    tap.ok(True, "a passive declare finds it")
    ch.exchange_delete("d.eq")
    c.close()


def test_order_and_timing(b):
    c = conn(b)
    ch = c.channel()
    ch.exchange_declare("d.order", DX, arguments={"x-delayed-type": "direct"})
    ch.queue_declare("d.order.q")
    ch.queue_bind("d.order.q", "d.order", "k")
    delays = [400, 100, 300, 200, 0, None, -50, 250, 100]
    for i, d in enumerate(delays):
        ch.basic_publish("d.order", "k", ("%d:%s" % (i, d)).encode(), props(d))
    got = collect(c, ch, "d.order.q", len(delays), 5)
    tap.ok(len(got) == len(delays), "every delayed message arrives (%d)" % len(got))
    order = [g[0].decode() for g in got]
    tap.ok(order[:3] == ["4:0", "5:None", "6:-50"], "undelayed messages route at once: %s" % order)
    tap.ok(order[3:] == ["1:100", "8:100", "3:200", "7:250", "2:300", "0:400"],
           "then in due order, ties in arrival order: %s" % order[3:])
    late = []
    for body, t, headers in got:
        d = body.decode().split(":")[1]
        d = int(d) if d != "None" else 0
        late.append((t * 1000 - max(d, 0), d))
    tap.ok(all(l >= -5 for l, _ in late), "none early (lateness ms: %s)" % [round(l) for l, _ in late])
    tap.ok(all(l < 400 for l, _ in late), "none much late")
    hdr = {g[0].decode(): g[2] for g in got}
    tap.ok(hdr["0:400"] == {"x-delay": -400} and hdr["4:0"] == {"x-delay": 0},
           "x-delay is delivered negated: %s" % hdr["0:400"])
    # A string x-delay, as the plugin reads it.
    ch.basic_publish("d.order", "k", b"str", props("150"))
    got = collect(c, ch, "d.order.q", 1, 3)
    tap.ok(got and got[0][1] >= 0.14, "a string x-delay delays too (%.3f s)" % (got[0][1] if got else -1))
    c.close()


def bind_set(ch, x, qs):
    for q, key, args in qs:
        ch.queue_declare(q)
        ch.queue_bind(q, x, key, arguments=args)


def counts(ch, qs):
    return [ch.queue_declare(q, passive=True).method.message_count for q in qs]


def test_types(b):
    c = conn(b)
    ch = c.channel()
    cases = [
        ("direct", [("t.d1", "a", None), ("t.d2", "b", None)], "a", None, [1, 0]),
        ("fanout", [("t.f1", "a", None), ("t.f2", "b", None)], "zzz", None, [1, 1]),
        ("topic", [("t.t1", "a.*", None), ("t.t2", "#.c", None), ("t.t3", "x", None)], "a.c", None,
         [1, 1, 0]),
        ("headers", [("t.h1", "", {"x-match": "all", "k": "v"}),
                     ("t.h2", "", {"x-match": "any", "k": "w", "j": 1})], "", {"k": "v"}, [1, 0]),
    ]
    for typ, qs, key, hdrs, want in cases:
        x = "d.type." + typ
        ch.exchange_declare(x, DX, arguments={"x-delayed-type": typ})
        bind_set(ch, x, qs)
        ch.basic_publish(x, key, b"m", props(100, **(hdrs or {})))
        time.sleep(0.05)
        before = counts(ch, [q for q, _, _ in qs])
        time.sleep(0.25)
        after = counts(ch, [q for q, _, _ in qs])
        tap.ok(before == [0] * len(qs) and after == want,
               "x-delayed-type %s routes by its rules when due: %s then %s" % (typ, before, after))
    err = close_error(lambda: ch.queue_bind("t.h1", "d.type.headers", "",
                                            arguments={"x-match": "nope"}))
    tap.ok(err and err[0] == 406, "a headers binding is checked by the delayed type: %s" % (err,))
    c.close()


def test_bindings_when_due(b):
    c = conn(b)
    ch = c.channel()
    ch.exchange_declare("d.late", DX, arguments={"x-delayed-type": "direct"})
    ch.queue_declare("d.late.q")
    ch.queue_declare("d.gone.q")
    ch.queue_bind("d.gone.q", "d.late", "g")
    ch.basic_publish("d.late", "k", b"bound later", props(300))
    ch.basic_publish("d.late", "g", b"unbound before", props(300))
    time.sleep(0.05)
    ch.queue_bind("d.late.q", "d.late", "k")
    ch.queue_unbind("d.gone.q", "d.late", "g")
    time.sleep(0.45)
    tap.ok(counts(ch, ["d.late.q", "d.gone.q"]) == [1, 0],
           "routed with the bindings of the moment it is due")
    c.close()


def test_mandatory(b):
    c = conn(b)
    ch = c.channel()
    returned = []
    ch.add_on_return_callback(lambda chan, m, p, body: returned.append((body, time.monotonic())))
    ch.exchange_declare("d.mand", DX, arguments={"x-delayed-type": "direct"})
    ch.queue_declare("d.mand.q")
    ch.queue_bind("d.mand.q", "d.mand", "ok")
    t0 = time.monotonic()
    ch.basic_publish("d.mand", "nowhere", b"unroutable", props(500), mandatory=True)
    ch.basic_publish("d.mand", "ok", b"routable", props(200), mandatory=True)
    while time.monotonic() - t0 < 0.15:
        c.process_data_events(time_limit=0.01)
    tap.ok([r[0] for r in returned] == [b"unroutable"] and returned[0][1] - t0 < 0.15,
           "a mandatory message that routes nowhere is returned at publish: %s" % returned)
    ch.queue_bind("d.mand.q", "d.mand", "nowhere")
    while time.monotonic() - t0 < 0.8:
        c.process_data_events(time_limit=0.01)
    bodies = []
    while True:
        m, p, body = ch.basic_get("d.mand.q", auto_ack=True)
        if m is None:
            break
        bodies.append(body)
    tap.ok(bodies == [b"routable"] and len(returned) == 1,
           "the returned one is never delivered; the routable one is, unreturned: %s" % bodies)
    c.close()


def test_confirms(b):
    c = conn(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.exchange_declare("d.conf", DX, durable=True, arguments={"x-delayed-type": "fanout"})
    ch.queue_declare("d.conf.q", durable=True)
    ch.queue_bind("d.conf.q", "d.conf")
    t0 = time.monotonic()
    for i in range(20):
        ch.basic_publish("d.conf", "", b"c%d" % i, props(1000, persistent=i % 2 == 0))
    took = time.monotonic() - t0
    tap.ok(took < 0.8, "20 delayed publishes confirmed when held, in %.3f s, not when due" % took)
    tap.ok(counts(ch, ["d.conf.q"]) == [0], "and nothing routed yet")
    c.close()


def test_restart(b):
    c = conn(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.exchange_declare("d.dur", DX, durable=True, arguments={"x-delayed-type": "topic"})
    ch.exchange_declare("d.tmp", DX, durable=False, arguments={"x-delayed-type": "direct"})
    ch.queue_declare("d.dur.q", durable=True)
    ch.queue_bind("d.dur.q", "d.dur", "r.#")
    ch.queue_bind("d.dur.q", "d.tmp", "r")
    ch.basic_publish("d.dur", "r.1", b"persistent 1500", props(1500, persistent=True))
    ch.basic_publish("d.dur", "r.2", b"persistent 200", props(200, persistent=True))
    ch.basic_publish("d.dur", "r.3", b"transient", props(1000))
    ch.basic_publish("d.tmp", "r", b"non-durable exchange", props(1000, persistent=True))
    ch.exchange_declare("d.del", DX, durable=True, arguments={"x-delayed-type": "fanout"})
    ch.queue_bind("d.dur.q", "d.del")
    ch.basic_publish("d.del", "", b"deleted exchange", props(500, persistent=True))
    ch.exchange_delete("d.del")
    t0 = time.monotonic()
    c.close()
    status = b.restart(signal.SIGKILL)
    tap.ok(status is not None, "the broker comes back after SIGKILL")
    time.sleep(0.3)  # past the 200 ms one's due time while it was down
    c = conn(b)
    ch = c.channel()
    ch.exchange_declare("d.dur", DX, passive=True)
    tap.ok(True, "the durable delayed exchange survives")
    got = collect(c, ch, "d.dur.q", 2, 4)
    bodies = [g[0] for g in got]
    tap.ok(bodies == [b"persistent 200", b"persistent 1500"],
           "persistent delayed messages come back, in due order: %s" % bodies)
    if len(got) == 2:
        late = (time.monotonic() - got[1][1]) - t0  # when collection began, since the publish
        tap.ok(got[1][2] == {"x-delay": -1500}, "with their negated x-delay")
        tap.diag("the 1500 ms one arrived %.3f s after its publish" % (late + got[1][1]))
    time.sleep(0.3)
    tap.ok(counts(ch, ["d.dur.q"]) == [0], "transient ones, and those of deleted or non-durable "
                                            "exchanges, do not come back")
    c.close()
    b.restart(signal.SIGTERM)
    c = conn(b)
    ch = c.channel()
    ch.basic_publish("d.dur", "r.x", b"after", props(100))
    time.sleep(0.4)
    tap.ok(counts(ch, ["d.dur.q"]) == [1], "it routes after a second restart (bindings kept)")
    c.close()


def test_compaction():
    b = Broker("journal.segment_size = 65536\n")
    if not b.start():
        return
    c = conn(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.exchange_declare("c.dx", DX, durable=True, arguments={"x-delayed-type": "fanout"})
    ch.queue_declare("c.q", durable=True)
    ch.queue_bind("c.q", "c.dx")
    ch.queue_declare("c.churn", durable=True)
    t0 = time.monotonic()
    ch.basic_publish("c.dx", "", b"held", props(6000, persistent=True))
    churn = c.channel()  # no confirms: quicker
    body = b"x" * 1024
    for i in range(6):
        for _ in range(300):
            churn.basic_publish("", "c.churn", body, props(persistent=True))
        while churn.basic_get("c.churn", auto_ack=True)[0] is not None:
            pass
        time.sleep(0.25)  # compaction runs at most once a second
    with open(b.log, errors="replace") as f:
        compactions = [l for l in f if "journal: compacting" in l]
    tap.ok(any("copying 0 " not in l for l in compactions),
           "the held message's segment is compacted (%d compactions)" % len(compactions))
    c.close()
    tap.ok(b.restart(signal.SIGKILL) is not None, "the broker comes back after SIGKILL")
    c = conn(b)
    ch = c.channel()
    got = collect(c, ch, "c.q", 1, 10)
    arrived = time.monotonic() - t0
    time.sleep(0.3)
    tap.ok([g[0] for g in got] == [b"held"] and counts(ch, ["c.q"]) == [0],
           "it comes back once")
    tap.ok(5.95 <= arrived < 7.5, "when due: %.2f s after its publish, delay 6 s" % arrived)
    tap.ok(b.stop() == 0, "the broker stops cleanly")


def test_kills():
    kills = int(os.environ.get("WARREN_DELAYED_KILLS", "5"))
    rng = random.Random(int(os.environ.get("WARREN_DELAYED_SEED", "7")))
    b = Broker()
    if not b.start():
        return
    c = conn(b)
    ch = c.channel()
    ch.exchange_declare("k.dx", DX, durable=True, arguments={"x-delayed-type": "fanout"})
    ch.queue_declare("k.q", durable=True)
    ch.queue_bind("k.q", "k.dx")
    c.close()
    confirmed, seq = set(), 0
    for _ in range(kills):
        c = conn(b)
        ch = c.channel()
        ch.confirm_delivery()
        for _ in range(rng.randrange(100, 400)):
            seq += 1
            ch.basic_publish("k.dx", "", b"%d" % seq, props(rng.randrange(0, 1500), persistent=True))
            confirmed.add(seq)
        time.sleep(rng.random() * 1.0)  # some are routed, some still held
        if b.restart(signal.SIGKILL) is None:
            tap.ok(False, "the broker comes back after SIGKILL")
            return
    time.sleep(1.6)
    c = conn(b)
    ch = c.channel()
    got = []
    while True:
        m, p, body = ch.basic_get("k.q", auto_ack=True)
        if m is None:
            break
        got.append(int(body))
    missing = confirmed - set(got)
    dups = len(got) - len(set(got))
    tap.ok(not missing and dups == 0,
           "%d kills: %d confirmed delayed messages all routed once (%d missing, %d twice)"
           % (kills, len(confirmed), len(missing), dups))
    c.close()
    tap.ok(b.stop() == 0, "the broker stops cleanly")


def main():
    b = Broker()
    if not b.start():
        return tap.done()
    if b.external:
        tap.skip("delayed exchanges", "external broker")
        return tap.done()
    for t in (test_declare, test_order_and_timing, test_types, test_bindings_when_due,
              test_mandatory, test_confirms, test_restart):
        t(b)
    tap.ok(b.stop() == 0, "the broker stops cleanly")
    test_compaction()
    test_kills()
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
