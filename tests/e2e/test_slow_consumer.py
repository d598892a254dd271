"""test_slow_consumer.py - one slow consumer never stalls the others.

A consumer that stops reading its socket (no-ack, so no prefetch holds the
broker back) must not stop deliveries to a consumer of another queue, nor to
a second consumer of its own queue, and the broker must stop writing to it
once its output backs up instead of buffering without bound: the broker's
memory stays near the size of the messages held in queues. Run with
Debian's python3 (pika).
"""
import os
import socket
import time

import pika

import tap
from broker import Broker, rss_bytes as rss

BODY = b"x" * 4096
ROUNDS = 6000  # 24 MiB to each queue


def stuck_consumer(b, queue):
    """A pika connection that consumes `queue` with no-ack and then is never read."""
    params = pika.ConnectionParameters(b.host, b.port, heartbeat=0)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.basic_consume(queue, lambda *a: None, auto_ack=True)
    conn.process_data_events(0.1)
    # Shrink its receive buffer so that the broker backs up quickly.
    sock = conn._impl._transport._sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return conn


def main():
    b = Broker()
    if b.external:
        tap.skip("slow consumer", "needs the broker's pid")
        return tap.done()
    if not b.start():
        return tap.done()
    pid = b.proc.pid
    params = pika.ConnectionParameters(b.host, b.port, heartbeat=0)
    setup = pika.BlockingConnection(params)
    sch = setup.channel()
    for q in ("slow", "fast"):
        sch.queue_declare(q)

    stuck = stuck_consumer(b, "slow")
    fast = pika.BlockingConnection(params)
    fch = fast.channel()
    got = {"fast": 0, "slow-peer": 0}
    fch.basic_consume("fast", lambda c, m, p, body: got.__setitem__("fast", got["fast"] + 1),
                      auto_ack=True)
    peer = pika.BlockingConnection(params)
    pch = peer.channel()
    pch.basic_qos(prefetch_count=50)

    def on_peer(c, m, p, body):
        got["slow-peer"] += 1
        c.basic_ack(m.delivery_tag)
    pch.basic_consume("slow", on_peer)

    base = rss(pid)
    pub = pika.BlockingConnection(params)
    pubch = pub.channel()
    t0 = time.time()
    for i in range(ROUNDS):
        pubch.basic_publish("", "slow", BODY)
        pubch.basic_publish("", "fast", BODY)
        if i % 200 == 0:
            fast.process_data_events(0)
            peer.process_data_events(0)
    deadline = time.time() + 20
    while time.time() < deadline and got["fast"] < ROUNDS:
        fast.process_data_events(0.05)
        peer.process_data_events(0)
    elapsed = time.time() - t0
    tap.ok(got["fast"] == ROUNDS,
           "the consumer of another queue got all %d messages (%d) in %.1fs"
           % (ROUNDS, got["fast"], elapsed))
    tap.ok(got["slow-peer"] > 0,
           "a second consumer of the stuck consumer's queue keeps getting messages (%d)"
           % got["slow-peer"])
    grown = rss(pid) - base
    # 24 MiB of 'slow' messages wait in the queue or in the stuck socket; the
    # broker may hold them, but must not also buffer them again per connection.
    if os.environ.get("WARREN_SANITIZERS") == "yes":
        tap.skip("broker memory stays bounded", "AddressSanitizer's quarantine inflates RSS")
    else:
        tap.ok(grown < 80 * 2**20,
               "broker memory grew by %.1f MiB (bound 80 MiB)" % (grown / 2**20))
    for c in (pub, peer, fast, setup):
        c.close()
    stuck._impl._transport._sock.close()
    tap.ok(b.stop() == 0, "broker exits 0 after SIGTERM")
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
