"""test_priority.py - priority queues (x-max-priority).

Higher priority first, arrival order within a priority; no priority counts as
0 and one above the maximum as the maximum; a requeued message goes back to
its place; consumers get the same order; a message expires when its TTL runs
out even behind messages of higher priority; a durable priority queue keeps
its order across kill -9; a queue without x-max-priority ignores priorities.
Run with Debian's python3 (pika).
"""
import signal
import time

import pika

import tap
from broker import Broker
from pikahelp import connect as _connect, drain_bodies as drain


def connect(b):
    return _connect(b, heartbeat=0)

ORDER_IN = [(b"p1", 1), (b"p5a", 5), (b"none", None), (b"p10", 10), (b"p5b", 5), (b"p20", 20),
            (b"p0", 0)]
ORDER_OUT = [b"p10", b"p20", b"p5a", b"p5b", b"p1", b"none", b"p0"]


def publish_all(ch, queue, persistent=False):
    for body, prio in ORDER_IN:
        ch.basic_publish("", queue, body, pika.BasicProperties(
            priority=prio, delivery_mode=2 if persistent else 1))


def order(b, ch):
    ch.queue_declare("prio.q", arguments={"x-max-priority": 10})
    publish_all(ch, "prio.q")
    got = drain(ch, "prio.q")
    tap.ok(got == ORDER_OUT, "highest first, FIFO within a priority, none = 0, above the "
           "maximum = the maximum (%r)" % got)

    publish_all(ch, "prio.q")
    m1 = ch.basic_get("prio.q")[0]
    m2 = ch.basic_get("prio.q")[0]
    m3 = ch.basic_get("prio.q")[0]
    ch.basic_nack(m3.delivery_tag, requeue=True)
    ch.basic_nack(m1.delivery_tag, requeue=True)
    ch.basic_nack(m2.delivery_tag, requeue=True)
    got = drain(ch, "prio.q")
    tap.ok(got == ORDER_OUT, "requeued messages go back to their places (%r)" % got)

    ch.queue_declare("plain.q")
    publish_all(ch, "plain.q")
    got = drain(ch, "plain.q")
    tap.ok(got == [body for body, _ in ORDER_IN], "a queue without x-max-priority is FIFO")


def consumer_order(b, ch):
    ch.queue_declare("prio.c", arguments={"x-max-priority": 10})
    publish_all(ch, "prio.c")
    c = connect(b)
    cch = c.channel()
    got = []
    cch.basic_consume("prio.c", lambda c_, m, p, body: got.append(body), auto_ack=True)
    deadline = time.monotonic() + 5
    while len(got) < len(ORDER_OUT) and time.monotonic() < deadline:
        c.process_data_events(0.1)
    c.close()
    tap.ok(got == ORDER_OUT, "a consumer gets them in the same order (%r)" % got)


def ttl_behind_higher(b, ch):
    ch.queue_declare("prio.ttl", arguments={"x-max-priority": 5, "x-message-ttl": 600})
    ch.basic_publish("", "prio.ttl", b"old-low", pika.BasicProperties(priority=0))
    time.sleep(0.4)
    ch.basic_publish("", "prio.ttl", b"new-high", pika.BasicProperties(priority=5))
    time.sleep(0.4)  # old-low is past its TTL, behind new-high which is not
    n = ch.queue_declare("prio.ttl", passive=True).method.message_count
    got = drain(ch, "prio.ttl")
    tap.ok(n == 1 and got == [b"new-high"],
           "a message expires behind one of higher priority that has not (%d left, %r)" % (n, got))


def restart(b):
    c = connect(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare("prio.durable", durable=True, arguments={"x-max-priority": 10})
    publish_all(ch, "prio.durable", persistent=True)
    c.close()
    status = b.restart(signal.SIGKILL)
    c = connect(b)
    got = drain(c.channel(), "prio.durable")
    tap.ok(status is not None and got == ORDER_OUT,
           "a durable priority queue keeps its order across kill -9 (%r)" % got)
    c.close()


def main():
    b = Broker()
    if b.external:
        tap.skip("priority", "needs Warren's restart")
        return tap.done()
    if not b.start():
        return tap.done()
    c = connect(b)
    ch = c.channel()
    order(b, ch)
    consumer_order(b, ch)
    ttl_behind_higher(b, ch)
    c.close()
    restart(b)
    b.stop()
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
