"""test_dead_letter.py - dead-letter exchanges.

- basic.reject and basic.nack (single, multiple) with requeue=false, and
  expired messages, go to x-dead-letter-exchange with RabbitMQ's x-death
  header (count, reason, queue, time, exchange, routing-keys,
  original-expiration) and x-first-death-* headers; the expiration property
  is removed.
- x-dead-letter-routing-key replaces the routing key and removes CC; without
  it the CC keys route the copy too. BCC never shows.
- A repeated death increments count and moves its entry to the front; the
  first death's time and the x-first-death-* headers do not change.
- A missing dead-letter exchange drops the message; so do purge, queue
  deletion and x-expires (no dead-lettering), as in RabbitMQ.
- Transactions: a nack without requeue dead-letters at commit, not before,
  and not after a rollback.
- Messages whose bodies are on disk only (past 1,024 in a durable queue)
  are read back and dead-lettered when they expire.
- A persistent message dead-lettered into a durable queue survives kill -9.
- kill -9 while messages are being rejected and expiring into a durable
  dead-letter queue, several times: every confirmed message is afterwards in
  its source queue or in the dead-letter queue (the copy is journaled before
  the original's removal). WARREN_DLX_KILLS sets the number of kills (5).
Run with Debian's python3 (pika).
"""
import datetime
import os
import random
import signal
import threading
import time

import pika

import tap
from broker import Broker
from pikahelp import connect as conn, ready as count, wait_at_least as wait_count


def setup(ch, src, dlq, **src_args):
    ch.queue_declare(dlq)
    args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
    args.update(src_args)
    ch.queue_declare(src, arguments=args)


def test_reject(c):
    ch = c.channel()
    ch.exchange_declare("d.x", "direct")
    ch.queue_declare("d.dlq")
    ch.queue_bind("d.dlq", "d.x", "d.src")
    ch.queue_declare("d.src", arguments={"x-dead-letter-exchange": "d.x"})
    ch.basic_publish("", "d.src", b"rejected", pika.BasicProperties(
        headers={"app": "h"}, content_type="text/plain"))
    m, _, _ = ch.basic_get("d.src")
    ch.basic_reject(m.delivery_tag, requeue=False)
    tap.ok(wait_count(ch, "d.dlq", 1), "basic.reject requeue=false: the message is dead-lettered")
    m, p, body = ch.basic_get("d.dlq", auto_ack=True)
    h = p.headers or {}
    xd = h.get("x-death", [{}])
    d = xd[0]
    tap.ok(body == b"rejected" and m.exchange == "d.x" and m.routing_key == "d.src",
           "delivered from the dead-letter exchange with the original routing key")
    tap.ok(len(xd) == 1 and d.get("count") == 1 and d.get("reason") == "rejected" and
           d.get("queue") == "d.src" and d.get("exchange") == "" and
           d.get("routing-keys") == ["d.src"] and isinstance(d.get("time"), datetime.datetime),
           "x-death: count 1, reason, queue, exchange, routing-keys, time (%r)" % xd)
    tap.ok(list(d) == ["count", "reason", "queue", "time", "exchange", "routing-keys"],
           "x-death fields in RabbitMQ's order for a first death")
    tap.ok(h.get("x-first-death-queue") == "d.src" and h.get("x-first-death-reason") ==
           "rejected" and h.get("x-first-death-exchange") == "" and h.get("app") == "h" and
           p.content_type == "text/plain", "x-first-death-* set; other headers and properties kept")


def test_nack_multiple(c):
    ch = c.channel()
    setup(ch, "d.n", "d.ndlq")
    for i in range(5):
        ch.basic_publish("", "d.n", b"%d" % i)
    tags = [ch.basic_get("d.n")[0].delivery_tag for _ in range(5)]
    ch.basic_nack(tags[0], requeue=False)
    ch.basic_nack(tags[-1], multiple=True, requeue=False)
    tap.ok(wait_count(ch, "d.ndlq", 5), "nack single and multiple requeue=false: all 5 dead-lettered")
    got = [ch.basic_get("d.ndlq", auto_ack=True)[2] for _ in range(5)]
    tap.ok(got == [b"0", b"1", b"2", b"3", b"4"], "in order (%r)" % got)


def test_expired(c):
    ch = c.channel()
    setup(ch, "d.e", "d.edlq")
    ch.basic_publish("", "d.e", b"exp", pika.BasicProperties(expiration="50", delivery_mode=2))
    tap.ok(wait_count(ch, "d.edlq", 1), "an expired message is dead-lettered")
    m, p, _ = ch.basic_get("d.edlq", auto_ack=True)
    d = p.headers["x-death"][0]
    tap.ok(d["reason"] == "expired" and d.get("original-expiration") == "50" and
           p.expiration is None and p.delivery_mode == 2 and m.routing_key == "d.edlq",
           "reason expired, original-expiration '50', expiration removed, delivery mode kept, "
           "routing key from x-dead-letter-routing-key")
    ch.queue_declare("d.e2", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                        "x-dead-letter-routing-key": "d.edlq"})
    ch.basic_publish("", "d.e2", b"queue ttl")
    tap.ok(wait_count(ch, "d.edlq", 1), "x-message-ttl: dead-lettered too")
    _, p, _ = ch.basic_get("d.edlq", auto_ack=True)
    tap.ok("original-expiration" not in p.headers["x-death"][0],
           "no original-expiration when the message had none")


def test_cc_bcc(c):
    ch = c.channel()
    ch.exchange_declare("d.ccx", "direct")
    for q in ("d.cc.main", "d.cc.copy"):
        ch.queue_declare(q)
    ch.queue_bind("d.cc.main", "d.ccx", "main")
    ch.queue_bind("d.cc.copy", "d.ccx", "copy")
    ch.queue_declare("d.cc.keep", arguments={"x-dead-letter-exchange": "d.ccx"})
    ch.queue_declare("d.cc.keyed", arguments={"x-dead-letter-exchange": "d.ccx",
                                              "x-dead-letter-routing-key": "main"})
    ch.exchange_declare("d.ccin", "direct")
    ch.queue_bind("d.cc.keep", "d.ccin", "main")
    ch.queue_bind("d.cc.keyed", "d.ccin", "k")
    hdrs = {"CC": ["copy"], "BCC": ["k"]}
    ch.basic_publish("d.ccin", "main", b"cc", pika.BasicProperties(headers=hdrs))
    for q in ("d.cc.keep", "d.cc.keyed"):
        m = ch.basic_get(q)[0]
        ch.basic_reject(m.delivery_tag, requeue=False)
    time.sleep(0.2)
    tap.ok(count(ch, "d.cc.main") == 2 and count(ch, "d.cc.copy") == 1,
           "without a dead-letter routing key the CC keys route the copy too; with one, only it")
    _, p, _ = ch.basic_get("d.cc.copy", auto_ack=True)
    tap.ok(p.headers.get("CC") == ["copy"] and "BCC" not in p.headers and
           p.headers["x-death"][0]["routing-keys"] == ["main", "copy"],
           "CC kept, BCC absent, routing-keys lists the CC key (%r)" % p.headers)
    got = [ch.basic_get("d.cc.main", auto_ack=True)[1].headers for _ in range(2)]
    keyed = [h for h in got if h["x-death"][0]["queue"] == "d.cc.keyed"]
    tap.ok(len(keyed) == 1 and "CC" not in keyed[0] and "BCC" not in keyed[0],
           "with a dead-letter routing key CC is removed")


def test_repeat(c):
    ch = c.channel()
    ch.queue_declare("d.work", arguments={"x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": "d.retry"})
    ch.queue_declare("d.retry", arguments={"x-message-ttl": 30, "x-dead-letter-exchange": "",
                                           "x-dead-letter-routing-key": "d.work"})
    ch.basic_publish("", "d.work", b"job")
    seen = []
    for _ in range(4):
        if not wait_count(ch, "d.work", 1):
            break
        m, p, _ = ch.basic_get("d.work")
        seen.append(p.headers)
        ch.basic_reject(m.delivery_tag, requeue=False)
    last = seen[-1]
    xd = last["x-death"]
    tap.ok(len(seen) == 4 and [(d["queue"], d["reason"], d["count"]) for d in xd] ==
           [("d.retry", "expired", 3), ("d.work", "rejected", 3)],
           "after 3 rounds: x-death has one entry per {queue, reason}, count 3, latest first")
    tap.ok(xd[0]["time"] == seen[1]["x-death"][0]["time"] and
           last["x-first-death-queue"] == "d.work" and last["x-first-death-reason"] == "rejected",
           "the first time and the x-first-death-* headers stay")
    tap.ok(list(xd[0]) == sorted(xd[0]), "a repeated entry's fields are sorted, as RabbitMQ")
    m = ch.basic_get("d.work")  # leave nothing behind
    ch.queue_purge("d.work")


def test_drops(c):
    ch = c.channel()
    ch.queue_declare("d.miss", arguments={"x-dead-letter-exchange": "d.no-such-exchange"})
    ch.basic_publish("", "d.miss", b"x")
    m = ch.basic_get("d.miss")[0]
    ch.basic_reject(m.delivery_tag, requeue=False)
    tap.ok(count(ch, "d.miss") == 0, "a missing dead-letter exchange: the message is dropped")
    setup(ch, "d.p", "d.pdlq")
    ch.basic_publish("", "d.p", b"x")
    ch.queue_purge("d.p")
    ch.basic_publish("", "d.p", b"y")
    ch.queue_delete("d.p")
    setup(ch, "d.gone", "d.pdlq", **{"x-expires": 100})
    ch.basic_publish("", "d.gone", b"z")
    time.sleep(0.4)
    tap.ok(count(ch, "d.pdlq") == 0, "purge, delete and x-expires do not dead-letter")
    setup(ch, "d.del", "d.pdlq")
    ch.basic_publish("", "d.del", b"x")
    m = ch.basic_get("d.del")[0]
    ch2 = c.channel()
    ch2.queue_delete("d.del")
    ch.basic_reject(m.delivery_tag, requeue=False)
    time.sleep(0.1)
    tap.ok(count(ch, "d.pdlq") == 0, "a reject after the queue was deleted does not dead-letter")


def test_tx(c):
    ch = c.channel()
    setup(ch, "d.tx", "d.txdlq")
    ch.basic_publish("", "d.tx", b"a")
    ch.basic_publish("", "d.tx", b"b")
    ch.tx_select()
    m1 = ch.basic_get("d.tx")[0]
    m2 = ch.basic_get("d.tx")[0]
    ch.basic_nack(m1.delivery_tag, requeue=False)
    tap.ok(count(ch, "d.txdlq") == 0, "in a transaction, nothing is dead-lettered before commit")
    ch.tx_commit()
    tap.ok(wait_count(ch, "d.txdlq", 1), "the nack dead-letters at commit")
    ch.basic_nack(m2.delivery_tag, requeue=False)
    ch.tx_rollback()
    ch.close()
    ch = c.channel()
    time.sleep(0.1)
    tap.ok(count(ch, "d.txdlq") == 1 and count(ch, "d.tx") == 1,
           "a rolled-back nack does not; the message returns when the channel closes")


def test_durable(b):
    c = conn(b)
    ch = c.channel()
    ch.queue_declare("d.ddlq", durable=True)
    ch.queue_declare("d.dsrc", durable=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "d.ddlq"})
    ch.confirm_delivery()
    ch.basic_publish("", "d.dsrc", b"keep me", pika.BasicProperties(delivery_mode=2))
    m = ch.basic_get("d.dsrc")[0]
    ch.basic_reject(m.delivery_tag, requeue=False)
    wait_count(ch, "d.ddlq", 1)
    ch.queue_declare("d.dsrc", passive=True)  # a round trip: the reject was handled
    c.close()
    time.sleep(0.05)
    tap.ok(b.restart(signal.SIGKILL) is not None, "restart after kill -9")
    c = conn(b)
    ch = c.channel()
    m, p, body = ch.basic_get("d.ddlq", auto_ack=True)
    tap.ok(body == b"keep me" and count(ch, "d.dsrc") == 0 and
           p.headers["x-death"][0]["queue"] == "d.dsrc",
           "a dead-lettered persistent message is in the durable dead-letter queue after kill -9, "
           "and not back in its source")
    c.close()


def test_cold(c):
    """Past 1,024 messages a durable queue keeps bodies on disk only: expired
    ones are read back to be dead-lettered, from the head and from the middle."""
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare("d.cold.dlq", durable=True)
    dl = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "d.cold.dlq"}
    ch.queue_declare("d.cold.ttl", durable=True, arguments=dict(dl, **{"x-message-ttl": 1000}))
    ch.queue_declare("d.cold.exp", durable=True, arguments=dl)
    n = 1500
    ch = c.channel()  # no confirms: all of them in well under the TTL
    for i in range(n):
        ch.basic_publish("", "d.cold.ttl", b"t%d" % i, pika.BasicProperties(delivery_mode=2))
        ch.basic_publish("", "d.cold.exp", b"e%d" % i,
                         pika.BasicProperties(delivery_mode=2, expiration="1000"))
    tap.ok(count(ch, "d.cold.ttl") == n and count(ch, "d.cold.exp") == n,
           "%d messages in each queue before they expire" % n)
    ok = wait_count(ch, "d.cold.dlq", 2 * n, 10)
    bodies = set()
    while True:
        m, _, body = ch.basic_get("d.cold.dlq", auto_ack=True)
        if m is None:
            break
        bodies.add(body)
    want = {b"t%d" % i for i in range(n)} | {b"e%d" % i for i in range(n)}
    tap.ok(ok and bodies == want and count(ch, "d.cold.ttl") == 0 and count(ch, "d.cold.exp") == 0,
           "%d persistent messages in durable TTL queues, most of them on disk only, are all "
           "dead-lettered with their bodies (%d)" % (2 * n, len(bodies)))


# ---- kill -9 while dead-lettering ------------------------------------------------

def crash_publisher(b, ids, stop):
    try:
        c = conn(b)
        ch = c.channel()
        ch.confirm_delivery()
        i = 0
        while not stop.is_set():
            q = "c.src" if i % 2 == 0 else "c.ttl"
            mid = "%d" % i
            ch.basic_publish("", q, mid.encode(), pika.BasicProperties(delivery_mode=2))
            ids.append(mid)  # confirmed (the blocking channel waited for the ack)
            i += 1
    except Exception:
        pass


def crash_rejecter(b, stop):
    try:
        c = conn(b)
        ch = c.channel()
        ch.basic_qos(prefetch_count=50)

        def on(ch_, m, p, body):
            ch_.basic_reject(m.delivery_tag, requeue=False)
        ch.basic_consume("c.src", on)
        while not stop.is_set():
            c.process_data_events(0.01)
    except Exception:
        pass


def crash_declare(b):
    c = conn(b)
    ch = c.channel()
    ch.queue_declare("c.dlq", durable=True)
    dl = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "c.dlq"}
    ch.queue_declare("c.src", durable=True, arguments=dl)
    ch.queue_declare("c.ttl", durable=True, arguments=dict(dl, **{"x-message-ttl": 20}))
    c.close()


def crash_round(b, rng, n):
    ids, stop = [], threading.Event()
    threads = [threading.Thread(target=crash_publisher, args=(b, ids, stop)),
               threading.Thread(target=crash_rejecter, args=(b, stop))]
    for t in threads:
        t.start()
    time.sleep(rng.uniform(0.3, 1.0))
    status = b.restart(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(10)
    if status is None:
        tap.ok(False, "kill %d: the broker restarts" % n)
        return False
    c = conn(b)
    ch = c.channel()
    # Recovered messages in c.ttl expire 20 ms after the restart: give them time.
    deadline = time.monotonic() + 5
    while count(ch, "c.ttl") and time.monotonic() < deadline:
        time.sleep(0.05)
    found = {}
    for q in ("c.src", "c.ttl", "c.dlq"):
        while True:
            m, _, body = ch.basic_get(q, auto_ack=True)
            if m is None:
                break
            found[body.decode()] = found.get(body.decode(), 0) + 1
    c.close()
    lost = [i for i in ids if i not in found]
    dups = sum(1 for v in found.values() if v > 1)
    ok = tap.ok(not lost and len(ids) > 0,
                "kill %d: all %d confirmed messages are in their queue or the dead-letter queue "
                "(%d duplicates)" % (n, len(ids), dups))
    if not ok:
        tap.diag("lost: %r" % lost[:20])
    return ok


def test_crash(b):
    kills = int(os.environ.get("WARREN_DLX_KILLS", "5"))
    rng = random.Random(int(os.environ.get("WARREN_DLX_SEED", str(int(time.time())))))
    crash_declare(b)
    for n in range(1, kills + 1):
        if not crash_round(b, rng, n):
            b.log_tail()
            break


def main():
    b = Broker()
    if not b.start():
        return tap.done()
    c = conn(b)
    for t in (test_reject, test_nack_multiple, test_expired, test_cc_bcc, test_repeat,
              test_drops, test_tx, test_cold):
        t(c)
    c.close()
    if not b.external:
        test_durable(b)
        test_crash(b)
    tap.ok(b.stop() == 0, "the broker exits 0 on SIGTERM")
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
