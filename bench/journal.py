#!/usr/bin/python3
"""Measure the journal: memory per stored message, and recovery time.

    bench/journal.py [--messages 1000000] [--queues 10] [--size 1024]
                     [--bin build/src/warren] [--dir DIR] [--keep] [--compare]

Starts a broker (its own data dir, a free loopback port), declares durable
queues, publishes persistent messages of --size bytes spread evenly over them
through the default exchange with publisher confirms (raw frames, pipelined,
so the client is not the bottleneck), and waits for every confirm. It prints:

  - publish rate (persistent, confirmed, fdatasync'd: journal.sync = batch);
  - the broker's resident memory (VmRSS) before and after, and the difference
    per stored message;
  - after kill -9 and a restart: the seconds until the broker listens, until
    every queue reports all its messages, and until a message has been
    consumed from every queue.

With --compare it then starts the reference RabbitMQ (Debian's package,
through ../shared/tools/reference-rabbitmq.sh beside the checkout, as the
interop suites do), runs the same publish (classic durable queues, persistent
messages, confirms) against it and prints both rates and their ratio.
RabbitMQ's classic queues confirm without fsync; Warren's figure is with
fsync before every confirm.

Standard library only; uses tests/e2e/chaos_frames.py to build frames.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "interop", "lib"))

import chaos_frames as F  # noqa: E402
from procs import rss_kib, wait_listening


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.reader = F.FrameReader()
        self.frames = []
        self.sock.sendall(F.PROTOCOL_HEADER)
        self.expect("connection.start")
        self.sock.sendall(F.start_ok())
        tune = self.expect("connection.tune")
        self.sock.sendall(F.method(0, "connection.tune-ok", tune[0], tune[1], 0) +
                          F.method(0, "connection.open", "/", "", False) +
                          F.method(1, "channel.open", ""))
        self.expect("connection.open-ok")
        self.expect("channel.open-ok")

    def frame(self):
        while not self.frames:
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("the broker closed the connection")
            self.frames += self.reader.feed(data)
        return self.frames.pop(0)

    def expect(self, name):
        ftype, _, payload = self.frame()
        got, values = F.decode_method(payload)
        if got != name:
            raise RuntimeError("expected %s, got %s %r" % (name, got, values))
        return values


def publish(c, queues, n, size):
    body = b"x" * size
    c.sock.sendall(F.method(1, "confirm.select", False))
    c.expect("confirm.select-ok")
    frames = [F.method(1, "basic.publish", 0, "", q, False, False) +
              F.header_frame(1, size, {"delivery-mode": 2}) + F.body_frame(1, body)
              for q in queues]
    sent = confirmed = 0
    singles = set()  # acked one by one above `confirmed` (a broker may ack out of order)
    window = 20000
    while confirmed < n:
        if sent < n and sent - confirmed < window:
            batch = min(1000, n - sent)
            c.sock.sendall(b"".join(frames[(sent + i) % len(queues)] for i in range(batch)))
            sent += batch
            continue
        ftype, _, payload = c.frame()
        name, v = F.decode_method(payload)
        if name == "basic.ack":
            if v[1]:
                confirmed = max(confirmed, v[0])
            elif v[0] > confirmed:
                singles.add(v[0])
            while confirmed + 1 in singles:
                confirmed += 1
                singles.discard(confirmed)
        elif name == "basic.nack":
            raise RuntimeError("the broker nacked message %d" % v[0])


def spawn(binary, conf, log):
    return subprocess.Popen([binary, "--config", conf], stdout=log, stderr=subprocess.STDOUT)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1000000)
    ap.add_argument("--queues", type=int, default=10)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "src", "warren"))
    ap.add_argument("--dir", help="where the data dir goes (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the data dir")
    ap.add_argument("--compare", action="store_true",
                    help="also publish to the reference RabbitMQ and print the ratio")
    a = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    rate = run_warren(a)
    if rate is None:
        return 1
    if a.compare:
        return compare(a, rate)
    return 0


def declare_queues(c, queues):
    for q in queues:
        c.sock.sendall(F.method(1, "queue.declare", 0, q, False, True, False, False, False, []))
        c.expect("queue.declare-ok")


def compare(a, warren_rate):
    import brokers
    host, port, owned = brokers.reference()
    if host is None:
        print("no RabbitMQ to compare with: %s" % port)
        return 1
    try:
        c = Conn(port, host)
        queues = ["bench.j.%d" % i for i in range(a.queues)]
        declare_queues(c, queues)
        t0 = time.monotonic()
        publish(c, queues, a.messages, a.size)
        dt = time.monotonic() - t0
        rate = a.messages / dt
        print("RabbitMQ: published %d persistent %d-byte messages to %d durable queues, "
              "confirmed, in %.1f s: %.0f msg/s" % (a.messages, a.size, a.queues, dt, rate))
        print("Warren / RabbitMQ, confirmed persistent publishes: %.2fx" % (warren_rate / rate))
        for q in queues:
            c.sock.sendall(F.method(1, "queue.delete", 0, q, False, False, False))
            c.expect("queue.delete-ok")
        c.sock.close()
    finally:
        if owned:
            owned.stop()
    return 0


def run_warren(a):

    top = tempfile.mkdtemp(prefix="warren-bench-journal-", dir=a.dir)
    port = free_port()
    conf = os.path.join(top, "warren.conf")
    with open(conf, "w") as f:
        f.write("listeners.tcp.default = 127.0.0.1:%d\ndata_dir = %s/data\n"
                "log.console.level = info\n" % (port, top))
    log = open(os.path.join(top, "warren.log"), "ab")
    proc = spawn(a.bin, conf, log)
    try:
        wait_listening(port, proc, seconds=600)
        queues = ["bench.j.%d" % i for i in range(a.queues)]
        c = Conn(port)
        declare_queues(c, queues)
        time.sleep(0.2)
        before = rss_kib(proc.pid)
        t0 = time.monotonic()
        publish(c, queues, a.messages, a.size)
        dt = time.monotonic() - t0
        time.sleep(0.5)
        after = rss_kib(proc.pid)
        print("published %d persistent %d-byte messages to %d durable queues, confirmed, "
              "in %.1f s: %.0f msg/s" % (a.messages, a.size, a.queues, dt, a.messages / dt))
        print("broker RSS %.1f MiB before, %.1f MiB after: %.1f bytes per stored message"
              % (before / 1024, after / 1024, (after - before) * 1024 / a.messages))
        c.sock.close()

        proc.send_signal(signal.SIGKILL)
        proc.wait()
        os.system("sync")
        t0 = time.monotonic()
        proc = spawn(a.bin, conf, log)
        wait_listening(port, proc, seconds=600)
        t_listen = time.monotonic() - t0
        c = Conn(port)
        total = 0
        for q in queues:
            c.sock.sendall(F.method(1, "queue.declare", 0, q, True, False, False, False, False,
                                    []))
            total += c.expect("queue.declare-ok")[1]
        t_counted = time.monotonic() - t0
        for q in queues:
            c.sock.sendall(F.method(1, "basic.get", 0, q, False))
            c.expect("basic.get-ok")
            c.frame()
            c.frame()
        t_consumed = time.monotonic() - t0
        print("after kill -9: listening in %.2f s, %d messages counted in %.2f s, "
              "a message consumed from each queue in %.2f s"
              % (t_listen, total, t_counted, t_consumed))
        print("broker RSS after recovery: %.1f MiB (%.1f bytes per message)"
              % (rss_kib(proc.pid) / 1024, rss_kib(proc.pid) * 1024 / max(total, 1)))
        if total != a.messages:
            print("MISMATCH: %d messages expected" % a.messages)
            return None
        return a.messages / dt
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if not a.keep:
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
