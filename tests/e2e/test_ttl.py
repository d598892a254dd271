"""test_ttl.py - message TTL and queue x-expires.

- x-message-ttl: messages go when their time comes, nobody consuming.
- expiration property: a message expires in the middle of the queue, behind
  messages that do not (better than RabbitMQ, which waits until it reaches
  the head); the lower of the queue's TTL and the message's wins.
- A requeued message keeps its original expiry.
- TTL 0: delivered to a consumer waiting for it, otherwise gone at once.
- 10,000 messages with random expirations in one queue all go on time.
- Persistent messages with a TTL still expire after kill -9, at their
  original time.
- x-expires: an unused queue is deleted; consumers, basic.get and
  declarations (passive too) keep it, publishes do not.
- Declare-argument errors are RabbitMQ's (406 and its texts).
Run with Debian's python3 (pika).
"""
import random
import signal
import time

import pika

import tap
from broker import Broker
from pikahelp import connect as conn, drain_bodies as drain, ready as count, wait_count


def exists(c, q):
    ch = c.channel()
    try:
        ch.queue_declare(q, passive=True)
        ch.close()
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False


def test_queue_ttl(c):
    ch = c.channel()
    ch.queue_declare("t.q", arguments={"x-message-ttl": 200})
    for i in range(5):
        ch.basic_publish("", "t.q", b"m%d" % i)
    tap.ok(count(ch, "t.q") == 5, "x-message-ttl 200: 5 messages ready at first")
    t0 = time.monotonic()
    gone = wait_count(ch, "t.q", 0)
    took = time.monotonic() - t0
    tap.ok(gone and 0.1 < took < 1.0, "they expire with nobody consuming (%.2f s)" % took)


def test_middle(c):
    ch = c.channel()
    ch.queue_declare("t.mid")
    ch.basic_publish("", "t.mid", b"head")
    for i in range(1000):
        ch.basic_publish("", "t.mid", b"keep%d" % i)
    ch.basic_publish("", "t.mid", b"short", pika.BasicProperties(expiration="100"))
    ch.basic_publish("", "t.mid", b"tail")
    tap.ok(wait_count(ch, "t.mid", 1002, 2),
           "a message with expiration 100 behind 1001 others goes from the middle of the queue "
           "(better than RabbitMQ)")
    got = drain(ch, "t.mid")
    tap.ok(got[0] == b"head" and got[-1] == b"tail" and b"short" not in got and len(got) == 1002,
           "the others stay, in order")


def test_interleaved(c):
    ch = c.channel()
    ch.queue_declare("t.mix")
    for i in range(4000):
        props = pika.BasicProperties(expiration="100") if i % 2 else None
        ch.basic_publish("", "t.mix", b"%d" % i, props)
    tap.ok(wait_count(ch, "t.mix", 2000, 3),
           "2,000 of 4,000 messages, every other one, expire from the middle (better than RabbitMQ)")
    got = drain(ch, "t.mix")
    tap.ok(got == [b"%d" % i for i in range(0, 4000, 2)], "the others stay, in order")
    for i in range(3000):  # the ring is squeezed again and again behind a head that stays
        ch.basic_publish("", "t.mix", b"%d" % i,
                         pika.BasicProperties(expiration="50") if i else None)
    tap.ok(wait_count(ch, "t.mix", 1, 3) and drain(ch, "t.mix") == [b"0"],
           "2,999 expire behind one that stays")


def test_lower_wins(c):
    ch = c.channel()
    ch.queue_declare("t.low1", arguments={"x-message-ttl": 10000})
    ch.basic_publish("", "t.low1", b"x", pika.BasicProperties(expiration="100"))
    ch.queue_declare("t.low2", arguments={"x-message-ttl": 100})
    ch.basic_publish("", "t.low2", b"x", pika.BasicProperties(expiration="10000"))
    time.sleep(0.4)
    tap.ok(count(ch, "t.low1") == 0, "queue TTL 10 s, expiration 100 ms: gone after 400 ms")
    tap.ok(count(ch, "t.low2") == 0, "queue TTL 100 ms, expiration 10 s: gone after 400 ms")


def test_requeue_keeps_expiry(c):
    ch = c.channel()
    ch.queue_declare("t.rq", arguments={"x-message-ttl": 600})
    ch.basic_publish("", "t.rq", b"x")
    m, _, _ = ch.basic_get("t.rq")
    time.sleep(0.35)
    ch.basic_nack(m.delivery_tag, requeue=True)
    tap.ok(count(ch, "t.rq") == 1, "requeued before its TTL: back in the queue")
    time.sleep(0.45)  # 800 ms after the publish, 450 ms after the requeue
    tap.ok(count(ch, "t.rq") == 0, "it expires at its original time, not 600 ms after the requeue")
    # The same for a message expiring before others (the heap) requeued behind a head.
    ch.queue_declare("t.rq2")
    ch.basic_publish("", "t.rq2", b"first")
    ch.basic_publish("", "t.rq2", b"early", pika.BasicProperties(expiration="500"))
    m1, _, _ = ch.basic_get("t.rq2")
    m2, _, _ = ch.basic_get("t.rq2")
    ch.basic_nack(m2.delivery_tag, requeue=True)
    ch.basic_nack(m1.delivery_tag, requeue=True)
    tap.ok(count(ch, "t.rq2") == 2, "two requeued, the expiring one second")
    tap.ok(wait_count(ch, "t.rq2", 1, 2) and drain(ch, "t.rq2") == [b"first"],
           "the second expires behind the first (better than RabbitMQ)")


def test_ttl_zero(c):
    ch = c.channel()
    ch.queue_declare("t.zero", arguments={"x-message-ttl": 0})
    ch.basic_publish("", "t.zero", b"nobody")
    time.sleep(0.1)
    tap.ok(count(ch, "t.zero") == 0, "TTL 0 with no consumer: gone at once")
    ch.basic_publish("", "t.zero", b"get")
    tap.ok(ch.basic_get("t.zero")[0] is None, "basic.get right after the publish: empty")
    got = []
    ch.basic_consume("t.zero", lambda c_, m, p, body: got.append(body), auto_ack=True)
    ch.basic_publish("", "t.zero", b"waiting")
    deadline = time.monotonic() + 2
    while not got and time.monotonic() < deadline:
        c.process_data_events(0.05)
    tap.ok(got == [b"waiting"], "TTL 0 with a consumer waiting: delivered")
    ch.close()


def test_many(c):
    ch = c.channel()
    ch.queue_declare("t.many")
    rng = random.Random(7)
    for i in range(10000):
        ch.basic_publish("", "t.many", b"m",
                         pika.BasicProperties(expiration=str(rng.randint(50, 700))))
    ch.basic_publish("", "t.many", b"stays")
    tap.ok(wait_count(ch, "t.many", 1, 5), "10,000 random expirations (50-700 ms) all go on time")
    tap.ok(drain(ch, "t.many") == [b"stays"], "the one without an expiration stays")


def test_restart(b):
    c = conn(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare("t.dur", durable=True, arguments={"x-message-ttl": 1500})
    ch.queue_declare("t.dur2", durable=True)
    ch.queue_declare("t.idle.dur", durable=True, arguments={"x-expires": 2500})
    ch.basic_publish("", "t.dur", b"p", pika.BasicProperties(delivery_mode=2))
    ch.basic_publish("", "t.dur2", b"keep", pika.BasicProperties(delivery_mode=2))
    ch.basic_publish("", "t.dur2", b"p", pika.BasicProperties(delivery_mode=2, expiration="1500"))
    c.close()
    time.sleep(1.0)
    t0 = time.monotonic()
    status = b.restart(signal.SIGKILL)
    tap.ok(status is not None, "the broker restarts after kill -9")
    c = conn(b)
    ch = c.channel()
    tap.ok(count(ch, "t.dur") == 1 and count(ch, "t.dur2") == 2,
           "the persistent messages are back")
    tap.ok(wait_count(ch, "t.dur", 0, 3) and wait_count(ch, "t.dur2", 1, 3),
           "and still expire, x-message-ttl and expiration alike")
    took = time.monotonic() - t0
    tap.ok(took < 1.2, "at their original time, not a full TTL after the restart (%.2f s)" % took)
    tap.ok(exists(c, "t.idle.dur"), "a durable queue with x-expires is back after the restart")
    time.sleep(3.0)  # x-expires counts again from that passive declaration
    tap.ok(not exists(c, "t.idle.dur"), "and is deleted once unused for its x-expires")
    c.close()


def test_expires(c):
    ch = c.channel()
    ch.queue_declare("t.idle", arguments={"x-expires": 300})
    ch.basic_publish("", "t.idle", b"lost with the queue")
    time.sleep(0.6)
    tap.ok(not exists(c, "t.idle"), "x-expires 300: an unused queue is deleted")
    ch = c.channel()
    ch.queue_declare("t.used", arguments={"x-expires": 300})
    tag = ch.basic_consume("t.used", lambda *a: None)
    time.sleep(0.6)
    tap.ok(exists(c, "t.used"), "with a consumer it stays")
    ch.basic_cancel(tag)
    time.sleep(0.15)
    tap.ok(exists(c, "t.used"), "the countdown starts when the consumer goes")
    time.sleep(0.45)
    tap.ok(not exists(c, "t.used"), "then the queue is deleted")
    ch = c.channel()
    ch.queue_declare("t.get", arguments={"x-expires": 300})
    for _ in range(6):
        time.sleep(0.1)
        ch.basic_get("t.get")
    tap.ok(exists(c, "t.get"), "basic.get every 100 ms keeps it")
    for _ in range(6):
        time.sleep(0.1)
        ch.queue_declare("t.get", arguments={"x-expires": 300})
    tap.ok(exists(c, "t.get"), "so does a redeclaration")
    for _ in range(6):
        time.sleep(0.1)
        ch.queue_declare("t.get", passive=True)
    tap.ok(exists(c, "t.get"), "and a passive one (as RabbitMQ)")
    for _ in range(6):
        time.sleep(0.1)
        ch.basic_publish("", "t.get", b"x")
    time.sleep(0.1)
    tap.ok(not exists(c, "t.get"), "publishing does not keep it")


ARG_ERRORS = [
    ({"x-message-ttl": -1}, "invalid arg 'x-message-ttl' for queue 't.bad' in vhost '/': "
     "{value_negative,-1}"),
    ({"x-message-ttl": "10"}, "invalid arg 'x-message-ttl' for queue 't.bad' in vhost '/': "
     "\"expected integer, got longstr\""),
    ({"x-message-ttl": 315360000001}, "invalid arg 'x-message-ttl' for queue 't.bad' in vhost "
     "'/': {value_too_large,315360000001}"),
    ({"x-expires": 0}, "invalid arg 'x-expires' for queue 't.bad' in vhost '/': {value_zero,0}"),
    ({"x-expires": -5}, "invalid arg 'x-expires' for queue 't.bad' in vhost '/': "
     "{value_negative,-5}"),
    ({"x-dead-letter-exchange": 5}, "invalid type 'signedint' for arg 'x-dead-letter-exchange' "
     "in queue 't.bad' in vhost '/'"),
    ({"x-dead-letter-routing-key": "k"}, "invalid arg 'x-dead-letter-routing-key' for queue "
     "'t.bad' in vhost '/': routing_key_but_no_dlx_defined"),
    ({"x-dead-letter-exchange": "x", "x-dead-letter-routing-key": True},
     "invalid arg 'x-dead-letter-routing-key' for queue 't.bad' in vhost '/': "
     "{unacceptable_type,bool}"),
]


def test_arg_errors(c):
    for args, text in ARG_ERRORS:
        ch = c.channel()
        try:
            ch.queue_declare("t.bad", arguments=args)
            tap.ok(False, "declare with %r: 406" % args)
        except pika.exceptions.ChannelClosedByBroker as e:
            tap.ok(e.reply_code == 406 and e.reply_text == "PRECONDITION_FAILED - " + text,
                   "declare with %r: 406 %s" % (args, e.reply_text))
    ch = c.channel()
    ch.queue_declare("t.good", arguments={"x-message-ttl": 315360000000, "x-expires": 1000000,
                                          "x-dead-letter-exchange": "nowhere",
                                          "x-dead-letter-routing-key": "k"})
    tap.ok(True, "the largest TTL and a dead-letter exchange that does not exist are accepted")


def main():
    b = Broker()
    if not b.start():
        return tap.done()
    c = conn(b)
    for t in (test_queue_ttl, test_middle, test_interleaved, test_lower_wins, test_requeue_keeps_expiry,
              test_ttl_zero, test_many, test_expires, test_arg_errors):
        t(c)
    c.close()
    if not b.external:
        test_restart(b)
    tap.ok(b.stop() == 0, "the broker exits 0 on SIGTERM")
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
