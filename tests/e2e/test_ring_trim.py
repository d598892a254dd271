"""test_ring_trim.py - a queue gives back the memory a burst took once drained.

A queue's ready messages sit in a ring of 32-byte slots that doubles as the
queue grows. A burst of 500,000 messages grows it to 16 MiB; once consumers
(or a purge) have taken all but a few, the ring is cut back, so the broker's
resident memory returns to near where it was before the burst instead of
keeping the ring's high-water mark for the queue's lifetime. Checked through
the broker's RSS, around a consumed burst and a purged one, with messages
still flowing in order afterwards. Run with Debian's python3.
"""
import os
import socket
import time

import chaos_frames as F
import tap
from broker import Broker, rss_bytes
from rawclient import Client

BURST = 500000
BODY = b"0123456789abcdef"
# The ring alone is 16 MiB at this size (524,288 slots of 32 bytes); the
# messages' own memory goes back to malloc, which may keep some of it.
RING_BYTES = 524288 * 32


def publish_burst(c, queue, n):
    """n publishes of BODY to the default exchange, pipelined, then a sync."""
    one = (F.method(1, "basic.publish", 0, "", queue, False, False) +
           F.header_frame(1, len(BODY)) + F.body_frame(1, BODY))
    batch = one * 10000
    for _ in range(n // 10000):
        c.sock.sendall(batch)
    return ready_count(c, queue)


def ready_count(c, queue):
    c.sock.sendall(F.method(1, "queue.declare", 0, queue, True, False, False, False, False, []))
    return c.expect("queue.declare-ok")[1]


def consume_all(b, c, queue):
    """Let a no-ack consumer on a second connection take the whole queue,
    discarding what it receives, until c sees the queue empty."""
    d = Client(b.host, b.port)
    d.sock.sendall(F.method(1, "basic.consume", 0, queue, "t", False, True, False, False, []))
    d.sock.setblocking(False)
    deadline = time.monotonic() + 60
    left = ready_count(c, queue)
    while left and time.monotonic() < deadline:
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            try:
                if not d.sock.recv(1 << 20):
                    break
            except BlockingIOError:
                time.sleep(0.005)
        left = ready_count(c, queue)
    d.close()
    return left == 0


def settled_rss(pid):
    """RSS once the broker's periodic trim (every 10 s) has run."""
    time.sleep(11)
    return rss_bytes(pid)


def check_burst(b, how):
    c = Client(b.host, b.port)
    queue = "ring-trim-" + how
    c.sock.sendall(F.method(1, "queue.declare", 0, queue, False, False, False, False, False, []))
    c.expect("queue.declare-ok")
    before = settled_rss(b.proc.pid)
    count = publish_burst(c, queue, BURST)
    tap.ok(count == BURST, "%s: the burst is queued (%d messages)" % (how, count))
    full = settled_rss(b.proc.pid)
    if how == "consumed":
        tap.ok(consume_all(b, c, queue), "consumed: every message of the burst delivered")
    else:
        c.sock.sendall(F.method(1, "queue.purge", 0, queue, False))
        tap.ok(c.expect("queue.purge-ok")[0] == BURST, "purged: all %d messages" % BURST)
    after = settled_rss(b.proc.pid)
    tap.diag("%s: RSS %.1f MB before, %.1f MB with the burst, %.1f MB after" %
             (how, before / 1e6, full / 1e6, after / 1e6))
    tap.ok(full - before > RING_BYTES, "%s: the burst took more than the ring's 16 MiB" % how)
    tap.ok(after - before < RING_BYTES / 2,
           "%s: drained, the queue holds less than half its ring's high-water mark" % how)
    # The queue still works, in order, after its ring was cut.
    for i in range(3):
        c.sock.sendall(F.method(1, "basic.publish", 0, "", queue, False, False) +
                       F.header_frame(1, 2) + F.body_frame(1, b"m%d" % i))
    got = []
    for _ in range(3):
        c.sock.sendall(F.method(1, "basic.get", 0, queue, True))
        c.expect("basic.get-ok")
        got.append(c.message(None)[1])
    tap.ok(got == [b"m0", b"m1", b"m2"], "%s: the queue goes on in order afterwards" % how)
    c.close()


def main():
    b = Broker()
    if b.external:
        tap.skip("ring trim", "needs a broker this test starts")
        return tap.done()
    if os.environ.get("WARREN_SANITIZERS") == "yes":
        # The sanitizer allocator keeps freed memory in quarantine: RSS says nothing.
        tap.skip("ring trim", "RSS is not meaningful under the sanitizers")
        return tap.done()
    if not b.start():
        return tap.done()
    try:
        check_burst(b, "consumed")
        check_burst(b, "purged")
    except (AssertionError, OSError, socket.timeout) as e:
        tap.ok(False, "the bursts went through: %r" % e)
    tap.ok(b.stop() == 0, "the broker exits 0")
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
