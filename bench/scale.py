#!/usr/bin/python3
"""Measure what idle connections, empty queues and bindings cost a broker.

    bench/scale.py [--port N] [--pid PID] [--connections 10000] [--queues 100000]
                   [--bindings 1000000]

Connects to a running broker (guest/guest on 127.0.0.1), reads its resident
memory (VmRSS of PID) before and after each step, and prints bytes per idle
connection (each with one open channel), per empty queue, and per binding.
Uses raw AMQP frames so the client is never the bottleneck; queue.declare and
queue.bind are sent with nowait and confirmed with one synchronous call.
"""
import argparse
import resource
import socket
import struct
import time
from procs import rss_kib


def shortstr(s):
    b = s.encode()
    return bytes([len(b)]) + b


def frame(ftype, ch, payload):
    return struct.pack(">BHI", ftype, ch, len(payload)) + payload + b"\xce"


def method(ch, cls, mid, args=b""):
    return frame(1, ch, struct.pack(">HH", cls, mid) + args)


def read_frame(sock):
    hdr = b""
    while len(hdr) < 7:
        chunk = sock.recv(7 - len(hdr))
        if not chunk:
            raise EOFError("connection closed")
        hdr += chunk
    ftype, ch, size = struct.unpack(">BHI", hdr)
    body = b""
    while len(body) < size + 1:
        chunk = sock.recv(size + 1 - len(body))
        if not chunk:
            raise EOFError("connection closed")
        body += chunk
    return ftype, ch, body[:-1]


def read_method(sock):
    while True:
        ftype, ch, p = read_frame(sock)
        if ftype == 1:
            return struct.unpack(">HH", p[:4]), p[4:]


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"AMQP\x00\x00\x09\x01")
    read_method(s)  # start
    resp = b"\x00guest\x00guest"
    s.sendall(method(0, 10, 11, struct.pack(">I", 0) + shortstr("PLAIN") +
                     struct.pack(">I", len(resp)) + resp + shortstr("en_US")))
    _, tune = read_method(s)
    channel_max, frame_max, _ = struct.unpack(">HIH", tune[:8])
    # Take the broker's limits as they are (0 = none): some refuse a larger one.
    s.sendall(method(0, 10, 31, struct.pack(">HIH", channel_max or 2047, frame_max or 131072, 0)) +
              method(0, 10, 40, shortstr("/") + shortstr("") + b"\x00"))
    assert read_method(s)[0] == (10, 41)
    s.sendall(method(1, 20, 10, shortstr("")))
    assert read_method(s)[0] == (20, 11)
    return s


def sync(s):
    """A synchronous round trip, so every nowait method before it is done."""
    s.sendall(method(1, 50, 10, struct.pack(">H", 0) + shortstr("scale.sync") + b"\x00" +
                     struct.pack(">I", 0)))
    while read_method(s)[0] != (50, 11):
        pass


def declare_queues(s, n, prefix):
    batch = []
    for i in range(n):
        batch.append(method(1, 50, 10, struct.pack(">H", 0) + shortstr("%s%d" % (prefix, i)) +
                            b"\x10" + struct.pack(">I", 0)))  # no-wait
        if len(batch) == 1000:
            s.sendall(b"".join(batch))
            batch = []
    s.sendall(b"".join(batch))
    sync(s)


def bind_many(s, n, queue, exchange="amq.topic"):
    batch = []
    for i in range(n):
        batch.append(method(1, 50, 20, struct.pack(">H", 0) + shortstr(queue) + shortstr(exchange) +
                            shortstr("k.%d.*" % i) + b"\x01" + struct.pack(">I", 0)))
        if len(batch) == 2000:
            s.sendall(b"".join(batch))
            batch = []
    s.sendall(b"".join(batch))
    sync(s)


def queue_count(s, name):
    """message and consumer counts via passive declare; raises if it is missing."""
    s.sendall(method(1, 50, 10, struct.pack(">H", 0) + shortstr(name) + b"\x01" +
                     struct.pack(">I", 0)))
    (cls, mid), args = read_method(s)
    if (cls, mid) != (50, 11):
        raise SystemExit("queue %s missing: got method %d.%d" % (name, cls, mid))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--queues", type=int, default=100000)
    ap.add_argument("--bindings", type=int, default=1000000)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    # Queues and bindings first: memory freed by closed connections would
    # otherwise be reused and make them look cheaper than they are. A count
    # of 0 leaves that part out (bindings need a queue).
    s = connect(a.port)
    if a.queues:
        base = rss_kib(a.pid) * 1024
        t0 = time.time()
        declare_queues(s, a.queues, "scale.q.")
        queue_count(s, "scale.q.%d" % (a.queues - 1))
        after = rss_kib(a.pid) * 1024
        print("empty queues: %d in %.1fs, %.0f bytes each" % (
            a.queues, time.time() - t0, (after - base) / max(1, a.queues)))

    if a.queues and a.bindings:
        base = rss_kib(a.pid) * 1024
        t0 = time.time()
        bind_many(s, a.bindings, "scale.q.0")
        after = rss_kib(a.pid) * 1024
        print("topic bindings: %d in %.1fs, %.0f bytes each" % (
            a.bindings, time.time() - t0, (after - base) / max(1, a.bindings)))

    conns = []
    if a.connections:
        base = rss_kib(a.pid) * 1024
        t0 = time.time()
        for _ in range(a.connections):
            conns.append(connect(a.port))
        time.sleep(1)
        after = rss_kib(a.pid) * 1024
        print("idle connections: %d in %.1fs, %.0f bytes each (one channel open)" % (
            a.connections, time.time() - t0, (after - base) / max(1, a.connections)))
    for c in conns:
        c.close()
    s.close()


if __name__ == "__main__":
    main()
