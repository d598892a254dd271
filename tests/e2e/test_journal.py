"""test_journal.py - persistent messages across restarts, and a damaged journal.

- After SIGTERM and after SIGKILL, persistent messages in durable queues come
  back with their properties and bodies byte for byte (a 1 MiB body too, and
  one routed to two queues in both); transient messages, and anything in a
  transient queue, do not. Messages published in a committed transaction
  come back; those of a rolled-back one do not.
- A torn tail on a message segment is cut with a log line; the messages
  before it are all there.
- A corrupt record in the middle of a segment is skipped with a log line;
  every other message is there and the broker serves as before.
- A confirm waits for the sync: with journal.sync_delay = 200 a lone
  persistent publish to a durable queue is confirmed no sooner than 200 ms
  later, a transient one at once.
- Segments that roll over and die at once (64 KiB segments, messages
  consumed as fast as they are confirmed) are deleted while their syncs may
  still be pending; the broker goes on and every publish is confirmed.
- journal.sync = always and off: confirms still come, and confirmed
  messages survive kill -9 (a broker crash; only an OS crash tells them apart).
- Compaction: two long-lived messages among thousands that come and go (64
  KiB segments) do not keep their segments, nor the later ones, on disk;
  after kill -9 they are back once each, in order, the one delivered and not
  acked marked redelivered.
Run with Debian's python3 (pika).
"""
import os
import signal
import time

import pika

import chaos_frames as F
import tap
from broker import Broker
from pikahelp import connect as conn, drain
from rawclient import Client

PROPS = pika.BasicProperties(delivery_mode=2, content_type="text/plain", priority=3,
                             correlation_id="c-1", message_id="m-1", timestamp=1700000000,
                             headers={"h": "v", "n": 7, "nested": {"a": [1, "x"]}})


def fill(b):
    c = conn(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare("j.d", durable=True)
    ch.queue_declare("j.d2", durable=True)
    ch.queue_declare("j.t", durable=False)
    ch.exchange_declare("j.fan", "fanout", durable=True)
    for q in ("j.d", "j.d2", "j.t"):
        ch.queue_bind(q, "j.fan")
    ch.basic_publish("", "j.d", b"first", PROPS)
    ch.basic_publish("", "j.d", b"transient", pika.BasicProperties(delivery_mode=1))
    ch.basic_publish("", "j.d", bytes(range(256)) * 4096, pika.BasicProperties(delivery_mode=2))
    ch.basic_publish("j.fan", "", b"fanned", pika.BasicProperties(delivery_mode=2))
    tx = c.channel()
    tx.tx_select()
    tx.basic_publish("", "j.d", b"committed", pika.BasicProperties(delivery_mode=2))
    tx.tx_commit()
    tx.basic_publish("", "j.d", b"rolled back", pika.BasicProperties(delivery_mode=2))
    tx.tx_rollback()
    c.close()


def check(b, how):
    c = conn(b)
    ch = c.channel()
    got = drain(ch, "j.d")
    bodies = [body for _, body in got]
    tap.ok(bodies == [b"first", bytes(range(256)) * 4096, b"fanned", b"committed"],
           "%s: the persistent messages are back, in order, transient and rolled back ones "
           "are not (%r)" % (how, [x[:12] for x in bodies]))
    if got:
        p = got[0][0]
        tap.ok((p.content_type, p.priority, p.correlation_id, p.message_id, p.timestamp,
                p.headers) == (PROPS.content_type, PROPS.priority, PROPS.correlation_id,
                               PROPS.message_id, PROPS.timestamp, PROPS.headers)
               and p.delivery_mode == 2,
               "%s: properties come back as published" % how)
    tap.ok([body for _, body in drain(ch, "j.d2")] == [b"fanned"],
           "%s: a message routed to two durable queues is in both" % how)
    tap.ok(not ch.queue_declare("j.t", passive=False, durable=False).method.message_count,
           "%s: the transient queue is gone with its message" % how)
    c.close()


def segments(b):
    d = os.path.join(b.dir, "data", "msgs")
    return [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".seg")]


def log_has(b, text):
    with open(b.log, errors="replace") as f:
        return text in f.read()


def kill(b):
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()


def publish_n(b, q, n):
    c = conn(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare(q, durable=True)
    for i in range(n):
        ch.basic_publish("", q, b"msg-%04d" % i + b"." * 200, pika.BasicProperties(delivery_mode=2))
    c.close()


def bodies(b, q):
    c = conn(b)
    got = [body[:8] for _, body in drain(c.channel(), q)]
    c.close()
    return got


def main():
    b = Broker()
    if b.external:
        tap.skip("journal", "needs to restart the broker")
        return tap.done()
    if not b.start():
        return tap.done()
    fill(b)
    tap.ok(b.restart(signal.SIGTERM) == 0, "stops on SIGTERM and starts again")
    check(b, "after SIGTERM")
    fill(b)
    tap.ok(b.restart(signal.SIGKILL) == -signal.SIGKILL, "starts again after SIGKILL")
    check(b, "after SIGKILL")

    # A torn tail: the start of a record, as a crash in the middle of a write leaves it.
    publish_n(b, "j.torn", 50)
    kill(b)
    with open(segments(b)[-1], "ab") as f:
        f.write(b"\x00\x00\x01\x00\x01partial record")
    b._spawn()
    tap.ok(b._wait_listening(10), "starts with a torn tail on the last segment")
    tap.ok(log_has(b, "torn tail"), "and logs the bytes it dropped")
    tap.ok(bodies(b, "j.torn") == [b"msg-%04d" % i for i in range(50)],
           "every message before the torn tail is there")

    # A corrupt record in the middle: that message is lost, the others are not.
    publish_n(b, "j.bad", 50)
    kill(b)
    seg = segments(b)[-1]  # written since the last start: only j.bad's messages
    with open(seg, "r+b") as f:
        data = f.read()
        at = data.find(b"msg-0025")
        f.seek(at)
        f.write(b"MSG-0025")
    b._spawn()
    tap.ok(b._wait_listening(10), "starts with a corrupt record in the middle of a segment")
    tap.ok(log_has(b, "corrupt record"), "and logs the bytes it skipped")
    got = bodies(b, "j.bad")
    tap.ok(got == [b"msg-%04d" % i for i in range(50) if i != 25],
           "every other message is there (%d of 50)" % len(got))
    publish_n(b, "j.bad", 3)
    tap.ok(len(bodies(b, "j.bad")) == 3, "and the broker goes on taking messages")
    tap.ok(b.stop() == 0, "exits 0 on SIGTERM")
    compaction()
    confirm_waits_for_sync()
    fast_rollover()
    for mode in ("always", "off"):
        sync_mode(mode)
    return tap.done()


def confirm_waits_for_sync():
    b = Broker("journal.sync_delay = 200\n")
    if not b.start():
        return
    c = conn(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare("j.wait", durable=True)
    took = {}
    for mode in (1, 2):
        t0 = time.monotonic()
        ch.basic_publish("", "j.wait", b"x", pika.BasicProperties(delivery_mode=mode))
        took[mode] = time.monotonic() - t0
    tap.ok(took[2] >= 0.19, "a persistent message's confirm waits for the batched fdatasync "
           "(%.0f ms with a 200 ms batch delay)" % (took[2] * 1000))
    tap.ok(took[1] < 0.19, "a transient message's confirm does not (%.0f ms)" % (took[1] * 1000))
    c.close()
    tap.ok(b.stop() == 0, "exits 0 on SIGTERM")


def fast_rollover():
    """Pipelined publishes (500 unconfirmed at a time) to a queue whose
    no-ack consumer empties it: 64 KiB segments roll over and die within
    the same sync round."""
    b = Broker("journal.segment_size = 65536\n")
    if not b.start():
        return
    con = Client(b.host, b.port)
    con.sock.sendall(F.method(1, "queue.declare", 0, "j.fast", False, True, False, False, False,
                              []))
    con.expect("queue.declare-ok")
    con.sock.sendall(F.method(1, "basic.consume", 0, "j.fast", "", False, True, False, False, []))
    con.expect("basic.consume-ok")
    pub = Client(b.host, b.port)
    pub.sock.sendall(F.method(1, "confirm.select", False))
    pub.expect("confirm.select-ok")
    total, sent, confirmed, received = 20000, 0, 0, 0
    one = (F.method(1, "basic.publish", 0, "", "j.fast", False, False) +
           F.header_frame(1, 1000, {"delivery-mode": 2}) + F.body_frame(1, bytes(1000)))
    deadline = time.monotonic() + 30
    while (confirmed < total or received < total) and time.monotonic() < deadline:
        if sent < total and sent - confirmed < 500:
            pub.sock.sendall(one * 100)
            sent += 100
        if not pub.pump(0.001) or not con.pump(0.001):
            break
        for ftype, _, payload in pub.frames:
            name, v = F.decode_method(payload)
            if name == "basic.ack":
                confirmed = v[0] if v[1] else max(confirmed, v[0])
        pub.frames = []
        received += sum(1 for ftype, _, _ in con.frames if ftype == F.FRAME_HEADER)
        con.frames = []
    tap.ok(confirmed == total and received == total,
           "20,000 persistent messages confirmed and consumed through fast-rolling segments "
           "(%d confirmed, %d received)" % (confirmed, received))
    tap.ok(not log_has(b, "fdatasync") and len(segments(b)) <= 3,
           "no failed sync, and dead segments are gone (%d left)" % len(segments(b)))
    pub.close()
    con.close()
    tap.ok(b.stop() == 0, "exits 0 on SIGTERM")


def sync_mode(mode):
    b = Broker("journal.sync = %s\n" % mode)
    if not b.start():
        return
    publish_n(b, "j.mode", 200)  # each publish waits for its confirm
    kill(b)
    b._spawn()
    tap.ok(b._wait_listening(10) and bodies(b, "j.mode") == [b"msg-%04d" % i for i in range(200)],
           "journal.sync = %s: 200 confirmed messages survive kill -9" % mode)
    tap.ok(b.stop() == 0, "journal.sync = %s: exits 0 on SIGTERM" % mode)


def churn(ch, n):
    """Messages that come and go, ten at a time: every segment then holds acks
    for the one before it."""
    for _ in range(n // 10):
        for _ in range(10):
            ch.basic_publish("", "churn", b"c" * 1000, pika.BasicProperties(delivery_mode=2))
        while ch.basic_get("churn", auto_ack=True)[0] is not None:
            pass


def compaction():
    b = Broker("journal.segment_size = 65536\n")
    if not b.start():
        return
    c = conn(b)
    ch = c.channel()
    ch.confirm_delivery()
    ch.queue_declare("keep", durable=True)
    ch.queue_declare("churn", durable=True)
    ch.basic_publish("", "keep", b"k1", pika.BasicProperties(delivery_mode=2))
    churn(ch, 600)
    ch.basic_publish("", "keep", b"k2", pika.BasicProperties(delivery_mode=2))
    churn(ch, 600)
    before = len(segments(b))
    time.sleep(2.5)  # compaction runs at most once a second
    after = len(segments(b))
    tap.ok(after <= 3, "segments held by two long-lived messages are compacted away "
           "(%d segments before, %d after)" % (before, after))
    tap.ok(log_has(b, "compacting"), "the log says what was compacted")
    holder = conn(b)
    m, _, body = holder.channel().basic_get("keep", auto_ack=False)
    tap.ok(body == b"k1", "k1 is delivered and not acked")
    kill(b)
    b._spawn()
    tap.ok(b._wait_listening(10), "starts after kill -9 with compacted segments")
    c = conn(b)
    ch = c.channel()
    got = []
    while True:
        m, _, body = ch.basic_get("keep", auto_ack=True)
        if m is None:
            break
        got.append((body, m.redelivered))
    tap.ok(got == [(b"k1", True), (b"k2", False)],
           "the long-lived messages are back once each, in order, k1 redelivered (%r)" % got)
    c.close()
    tap.ok(b.stop() == 0, "exits 0 on SIGTERM")


if __name__ == "__main__":
    raise SystemExit(main())
