"""test_flow.py - a queue whose consumers fall behind holds back its publishers.

With `queue_flow_threshold` set low, a publisher that floods a queue whose
consumer acknowledges slowly stops being read once the queue passes the
threshold (the queue stays near it), and goes on when the consumer catches
up; every message arrives once and in order. A queue without consumers, and
one whose consumers take nothing (prefetch full, no acks), do not hold their
publishers back. A bad threshold is refused. Run with Debian's python3 (pika).
"""
import os
import subprocess
import tempfile
import threading
import time

import pika

import chaos_frames as F
import tap
from broker import Broker
from pikahelp import ready, wait_for
from rawclient import Client

THRESHOLD = 1000
SIZE = 1024  # the flood is far bigger than the sockets' buffers
SLACK = 600  # one read of the broker's 256 KiB input buffer is about 240 such publishes


def params(b):
    return pika.ConnectionParameters(b.host, b.port, heartbeat=0, blocked_connection_timeout=None)


class Publisher(threading.Thread):
    """Publishes n numbered messages to `queue` as fast as the broker reads them."""

    def __init__(self, b, queue, n):
        super().__init__(daemon=True)
        self.b, self.queue, self.n = b, queue, n
        self.sent = 0
        self.error = None

    def run(self):
        try:
            conn = pika.BlockingConnection(params(self.b))
            ch = conn.channel()
            for i in range(self.n):
                ch.basic_publish("", self.queue, b"%08d" % i + b"f" * (SIZE - 8))
                self.sent = i + 1
            conn.close()
        except Exception as e:  # reported by the test that waits for it
            self.error = e


class Consumer(Client):
    """A raw consumer whose pace the test sets: take() acks at most `limit`
    deliveries (all of them when None) and returns the numbers received."""

    def __init__(self, b, queue, prefetch):
        super().__init__(b.host, b.port)
        self.sock.sendall(F.method(1, "basic.qos", 0, prefetch, False))
        self.expect("basic.qos-ok")
        self.sock.sendall(F.method(1, "basic.consume", 0, queue, "", False, False, False, False,
                                   []))
        self.expect("basic.consume-ok")
        self.unacked = []  # (tag, number), in order

    def _collect(self):
        while len(self.frames) >= 3:
            name, values = F.decode_method(self.frames[0][2])
            assert name == "basic.deliver", name
            size = F.decode_header(self.frames[1][2])[1]
            body, used = b"", 2
            while len(body) < size and used < len(self.frames):
                body += self.frames[used][2]
                used += 1
            if len(body) < size:
                return
            del self.frames[:used]
            self.unacked.append((values[1], int(body[:8])))

    def take(self, wait, limit=None):
        self.pump(wait)
        self._collect()
        n = len(self.unacked) if limit is None else min(limit, len(self.unacked))
        if n == 0:
            return []
        taken, self.unacked = self.unacked[:n], self.unacked[n:]
        self.sock.sendall(F.method(1, "basic.ack", taken[-1][0], True))
        return [num for _, num in taken]


def held_then_released(b):
    n = 50000
    watch = pika.BlockingConnection(params(b)).channel()
    watch.queue_declare("flow.slow")
    cons = Consumer(b, "flow.slow", 10)
    got = []
    pub = Publisher(b, "flow.slow", n)
    pub.start()
    peak = 0
    t_end = time.monotonic() + 3
    while time.monotonic() < t_end:
        got += cons.take(0.005, 1)  # about 200 messages a second
        peak = max(peak, ready(watch, "flow.slow"))
    tap.ok(THRESHOLD < peak <= THRESHOLD + SLACK,
           "the queue passes the threshold and stays near it while its consumer is slow "
           "(peak %d ready, threshold %d)" % (peak, THRESHOLD))
    tap.ok(pub.sent < n, "the publisher is held back (%d of %d published after 3 s)" % (pub.sent, n))
    tap.ok(pub.is_alive() and pub.error is None, "the held publisher's connection stays open")

    deadline = time.monotonic() + 60
    while len(got) < n and time.monotonic() < deadline:
        got += cons.take(0.01)
    pub.join(10)
    tap.ok(pub.error is None and pub.sent == n,
           "the publisher goes on once the consumer catches up (%d sent, error %r)"
           % (pub.sent, pub.error))
    tap.ok(got == list(range(n)), "every message arrives once, in order (%d of %d)" % (len(got), n))
    cons.close()
    watch.connection.close()


def no_consumer_not_held(b):
    n = 5000
    watch = pika.BlockingConnection(params(b)).channel()
    watch.queue_declare("flow.idle")
    pub = Publisher(b, "flow.idle", n)
    pub.start()
    pub.join(30)
    tap.ok(pub.error is None and pub.sent == n and wait_for(lambda: ready(watch, "flow.idle") == n, 10),
           "a queue without consumers takes every message past the threshold (%d ready)"
           % ready(watch, "flow.idle"))
    watch.queue_delete("flow.idle")
    watch.connection.close()


def stalled_consumer_not_held(b):
    n = 5000
    watch = pika.BlockingConnection(params(b)).channel()
    watch.queue_declare("flow.stuck")
    stuck = pika.BlockingConnection(params(b))
    sch = stuck.channel()
    sch.basic_qos(prefetch_count=5)
    sch.basic_consume("flow.stuck", lambda *a: None)  # never acks
    stuck.process_data_events(0.2)
    t0 = time.monotonic()
    pub = Publisher(b, "flow.stuck", n)
    pub.start()
    pub.join(30)
    took = time.monotonic() - t0
    tap.ok(pub.error is None and pub.sent == n and
           wait_for(lambda: ready(watch, "flow.stuck") == n - 5, 10),
           "a consumer that takes nothing does not hold publishers back for long "
           "(all %d published in %.1f s, %d ready)" % (pub.sent, took, ready(watch, "flow.stuck")))
    stuck.close()
    watch.queue_delete("flow.stuck")
    watch.connection.close()


def bad_threshold_refused():
    binary = os.environ.get("WARREN_BIN", "../src/warren")
    with tempfile.TemporaryDirectory() as d:
        conf = os.path.join(d, "warren.conf")
        with open(conf, "w") as f:
            f.write("data_dir = %s\nqueue_flow_threshold = lots\n" % d)
        run = subprocess.run([binary, "--config", conf], capture_output=True, text=True, timeout=10)
    tap.ok(run.returncode != 0 and "queue_flow_threshold" in run.stderr + run.stdout,
           "a bad queue_flow_threshold is refused at startup")


def main():
    b = Broker("queue_flow_threshold = %d\n" % THRESHOLD)
    if b.external:
        tap.skip("flow control", "needs Warren's queue_flow_threshold")
        return tap.done()
    if not b.start():
        return tap.done()
    held_then_released(b)
    no_consumer_not_held(b)
    stalled_consumer_not_held(b)
    bad_threshold_refused()
    b.stop()
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
