#!/usr/bin/python3
"""Measure how late delayed messages are routed with many of them pending.

    bench/delayed.py [--messages 100000] [--min-delay 15] [--spread 10]
                     [--size 64] [--persistent] [--bin build/src/warren]
    bench/delayed.py --memory-only [--messages 1000000] [--persistent] ...

Starts a broker (its own data dir, a free loopback port), declares an
x-delayed-message exchange (x-delayed-type direct; durable with
--persistent) bound to one queue, and publishes --messages messages with
x-delay spread evenly over [min-delay, min-delay + spread) seconds, in a
random order, each carrying its due time (the client's clock at publish plus
its delay). The minimum delay is longer than the publish takes, so every
message is pending at once. A consumer (raw frames, no-ack, in its own process,
so the publisher does not delay it) records when each arrives; the lateness of a
message is its arrival time minus its due time. Prints the publish time,
the broker's resident memory with everything pending, and p50 / p99 / max
lateness in ms.

The lateness includes the client's side (the publish pipeline, the
consumer's reading), so it is an upper bound of the broker's own. Debian's
python3-pika publishes.

--memory-only publishes with pipelined raw frames and confirms (an hour's
delay each, so nothing comes due), prints the publish rate and the broker's
memory per held message, and consumes nothing: how memory scales to
millions of held messages.
"""
import argparse
import multiprocessing
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

import pika
from procs import rss_kib, wait_listening

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def consume(port, n, out, ready):
    """A raw consumer (no-ack): only body frames are looked at, so the
    client's own time per message stays small next to the lateness."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
    sys.path.insert(0, HERE)
    import chaos_frames as F
    from journal import Conn
    c = Conn(port)
    c.sock.sendall(F.method(1, "basic.consume", 0, "bench.delayed.q", "", False, True, False,
                            False, []))
    c.expect("basic.consume-ok")
    ready.set()
    late, buf = [], b""
    while len(late) < n:
        data = c.sock.recv(1 << 20)
        if not data:
            break
        now = time.time()
        buf += data
        i = 0
        while len(buf) - i >= 7:
            ftype, size = buf[i], struct.unpack_from(">I", buf, i + 3)[0]
            if len(buf) - i < size + 8:
                break
            if ftype == 3:  # a body: its first 8 bytes are the due time
                late.append(now - struct.unpack_from("!d", buf, i + 7)[0])
            i += size + 8
        buf = buf[i:]
    out.put(late)
    c.sock.close()


def publish(port, n, min_delay, spread, size, persistent):
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = c.channel()
    delays = [int((min_delay + spread * i / n) * 1000) for i in range(n)]
    random.Random(1).shuffle(delays)
    pad = b"x" * max(0, size - 8)
    for d in delays:
        due = time.time() + d / 1000.0
        ch.basic_publish("bench.delayed", "k", struct.pack("!d", due) + pad,
                         pika.BasicProperties(headers={"x-delay": d},
                                              delivery_mode=2 if persistent else 1))
    c.close()


def publish_raw(port, n, size, persistent):
    """Pipelined publishes with confirms (frames from tests/e2e/chaos_frames.py)."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
    sys.path.insert(0, HERE)
    import chaos_frames as F
    from journal import Conn
    c = Conn(port)
    c.sock.sendall(F.method(1, "confirm.select", False))
    c.expect("confirm.select-ok")
    body = b"x" * size
    frames = [F.method(1, "basic.publish", 0, "bench.delayed", "k", False, False) +
              F.header_frame(1, size, {"delivery-mode": 2 if persistent else 1,
                                       "headers": [("x-delay", "I", 3600000 + i)]}) +
              F.body_frame(1, body) for i in range(1000)]
    sent = confirmed = 0
    while confirmed < n:
        if sent < n and sent - confirmed < 20000:
            batch = min(1000, n - sent)
            c.sock.sendall(b"".join(frames[:batch]))
            sent += batch
            continue
        _, _, payload = c.frame()
        name, v = F.decode_method(payload)
        if name == "basic.ack" and v[1]:
            confirmed = max(confirmed, v[0])
        elif name == "basic.ack":
            confirmed = max(confirmed, v[0])  # Warren acks in order
        elif name == "basic.nack":
            raise RuntimeError("the broker nacked message %d" % v[0])
    c.sock.close()


def memory_only(a, port, proc):
    rss0 = rss_kib(proc.pid)
    t0 = time.time()
    publish_raw(port, a.messages, a.size, a.persistent)
    took = time.time() - t0
    time.sleep(1)
    rss1 = rss_kib(proc.pid)
    print("held %d messages (%s, %d bytes) in %.1f s (%.0f msg/s, confirmed)"
          % (a.messages, "persistent, durable exchange" if a.persistent else "transient",
             a.size, took, a.messages / took))
    print("broker RSS: %d KiB (+%d KiB, %.0f bytes per held message)"
          % (rss1, rss1 - rss0, (rss1 - rss0) * 1024.0 / a.messages))


def percentile(sorted_ms, p):
    return sorted_ms[min(len(sorted_ms) - 1, int(p / 100.0 * len(sorted_ms)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--min-delay", type=float, default=15.0, help="seconds")
    ap.add_argument("--spread", type=float, default=10.0, help="seconds")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--persistent", action="store_true")
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "src", "warren"))
    a = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    tmp = tempfile.mkdtemp(prefix="warren-bench-delayed-")
    port = free_port()
    conf = os.path.join(tmp, "warren.conf")
    with open(conf, "w") as f:
        f.write("listeners.tcp.default = 127.0.0.1:%d\ndata_dir = %s/data\n" % (port, tmp))
        f.write("log.console.level = warning\n")
    log = open(os.path.join(tmp, "warren.log"), "wb")
    proc = subprocess.Popen([a.bin, "--config", conf], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc)
        c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        ch = c.channel()
        ch.exchange_declare("bench.delayed", "x-delayed-message", durable=a.persistent,
                            arguments={"x-delayed-type": "direct"})
        ch.queue_declare("bench.delayed.q", durable=a.persistent)
        ch.queue_bind("bench.delayed.q", "bench.delayed", "k")
        c.close()
        if a.memory_only:
            memory_only(a, port, proc)
            return 0
        rss0 = rss_kib(proc.pid)
        out, ready = multiprocessing.Queue(), multiprocessing.Event()
        consumer = multiprocessing.Process(target=consume, args=(port, a.messages, out, ready))
        consumer.start()
        ready.wait(10)
        t0 = time.time()
        publish(port, a.messages, a.min_delay, a.spread, a.size, a.persistent)
        took = time.time() - t0
        time.sleep(0.5)
        rss1 = rss_kib(proc.pid)
        print("published %d messages (%s, %d bytes) in %.1f s; the first is due %.1f s after "
              "the start" % (a.messages, "persistent, durable exchange" if a.persistent
                             else "transient", a.size, took, a.min_delay))
        if took >= a.min_delay:
            print("warning: publishing took longer than the shortest delay; not all were pending")
        print("broker RSS with all pending: %d KiB (+%d KiB, %.0f bytes per message)"
              % (rss1, rss1 - rss0, (rss1 - rss0) * 1024.0 / a.messages))
        late = sorted(x * 1000.0 for x in out.get(timeout=a.min_delay + a.spread + 120))
        consumer.join(10)
        print("lateness over %d messages: p50 %.1f ms, p99 %.1f ms, max %.1f ms, min %.1f ms"
              % (len(late), percentile(late, 50), percentile(late, 99), late[-1], late[0]))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
