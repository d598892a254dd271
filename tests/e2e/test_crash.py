"""test_crash.py - kill -9 the broker while it works; nothing confirmed is lost.

A publisher sends persistent messages with confirms (up to 500 in flight) to a
durable fanout exchange bound to two durable queues, while a consumer takes
from both and acknowledges most of what it gets. At a random moment the
broker is killed with SIGKILL and started again on the same data directory.
After every restart each queue is read whole and checked against what the
clients saw:

  - every message confirmed, and not acknowledged, is there exactly once
    (lost=0, duplicates=0);
  - no message whose acknowledgement the broker had answered for (the
    consumer follows its acks with basic.qos and waits for qos-ok) is back
    (resurrected=0);
  - every message the consumer had received and not acknowledged comes back
    with redelivered=true;
  - nothing comes back that was never published.

Then queue a is emptied (acked) and queue b's newest messages are requeued,
so a backlog lives on across crashes. Segments are small (256 KiB) so that rolling
over, deleting dead segments and recovering many files all happen; at the end
the data directory must hold few segments once everything is acknowledged.

  WARREN_CRASH_KILLS=N    kills (default 20)
  WARREN_CRASH_SEED=N     random seed (default 7000)

Standard library only.
"""
import os
import random
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chaos_frames as F  # noqa: E402
import tap  # noqa: E402
from rawclient import Client  # noqa: E402
from broker import Broker, external  # noqa: E402

KILLS = int(os.environ.get("WARREN_CRASH_KILLS", "20"))
SEED = int(os.environ.get("WARREN_CRASH_SEED", "7000"))
SEGMENT = 256 * 1024
QUEUES = ("crash.a", "crash.b")
WINDOW = 500  # unconfirmed publishes in flight
PER_CYCLE = 5000  # publishes per cycle at most
KEEP = 2000  # messages of queue b kept (requeued) at each check


def body_for(n, rng):
    return b"%08d:" % n + bytes(rng.randrange(10, 3000))


def msg_id(body):
    return int(body[:8])


class Model:
    """What the clients know, per queue."""

    def __init__(self):
        self.next_id = 1
        self.confirmed = set()
        self.acked = {q: set() for q in QUEUES}      # the broker answered after the ack
        self.unsure = {q: set() for q in QUEUES}     # acked, not known to have arrived
        self.held = {q: set() for q in QUEUES}       # received, not acked
        self.gone = {q: set() for q in QUEUES}       # acked for sure, ever


def run_traffic(b, model, rng, seconds):
    """Publish and consume until the deadline, then kill the broker."""
    pub = Client(b.host, b.port)
    con = Client(b.host, b.port)
    pub.sock.sendall(F.method(1, "confirm.select", False))
    pub.expect("confirm.select-ok")
    con.sock.sendall(F.method(1, "basic.qos", 0, 100, False))
    con.expect("basic.qos-ok")
    tags = {}
    for q in QUEUES:
        con.sock.sendall(F.method(1, "basic.consume", 0, q, "", False, False, False, False, []))
        tag = con.expect("basic.consume-ok")[0]
        tags[tag] = q
    pub.sock.setblocking(False)
    seq_ids = {}  # publish sequence number -> message id
    seq = 0
    pending_acks = []  # (queue, id, delivery tag) acked since the last qos
    sync_inflight = None
    deadline = time.monotonic() + seconds
    limit = model.next_id + PER_CYCLE
    while time.monotonic() < deadline:
        # Publish while the window has room.
        out = b""
        while len(seq_ids) < WINDOW and len(out) < 65536 and model.next_id < limit:
            n = model.next_id
            model.next_id += 1
            seq += 1
            seq_ids[seq] = n
            body = body_for(n, rng)
            out += (F.method(1, "basic.publish", 0, "crash.fx", "", False, False) +
                    F.header_frame(1, len(body), {"delivery-mode": 2}) + F.body_frame(1, body))
        if out:
            try:
                pub.sock.setblocking(True)
                pub.sock.sendall(out)
            except OSError:
                break
        pub.pump(0.001)
        for ftype, _, payload in pub.frames:
            if ftype != F.FRAME_METHOD:
                continue
            name, v = F.decode_method(payload)
            if name in ("basic.ack", "basic.nack"):
                upto = [s for s in seq_ids if s <= v[0]] if v[1] else [v[0]]
                for s in upto:
                    n = seq_ids.pop(s, None)
                    if n is not None and name == "basic.ack":
                        model.confirmed.add(n)
        pub.frames = []
        # Consume: ack most deliveries, keep some.
        con.pump(0.001)
        while con.frames:
            ftype, _, payload = con.frames.pop(0)
            name, v = F.decode_method(payload)
            if name == "basic.deliver":
                _, body = con.message(payload)
                q, n = tags[v[0]], msg_id(body)
                if rng.random() < 0.9:
                    con.sock.sendall(F.method(1, "basic.ack", v[1], False))
                    pending_acks.append((q, n))
                    model.unsure[q].add(n)
                else:
                    model.held[q].add(n)
            elif name == "basic.qos-ok" and sync_inflight is not None:
                for q, n in sync_inflight:
                    model.unsure[q].discard(n)
                    model.acked[q].add(n)
                sync_inflight = None
        if sync_inflight is None and pending_acks:
            con.sock.sendall(F.method(1, "basic.qos", 0, 100, False))
            sync_inflight, pending_acks = pending_acks, []
    os.kill(b.proc.pid, signal.SIGKILL)
    b.proc.wait()
    pub.close()
    con.close()


def read_queue(c, q):
    """Every message of q: a list of (id, redelivered)."""
    c.sock.sendall(F.method(1, "queue.declare", 0, q, True, False, False, False, False, []))
    count = c.expect("queue.declare-ok")[1]
    got = []
    if count == 0:
        return got
    c.sock.sendall(F.method(1, "basic.consume", 0, q, "check", False, False, False, False, []))
    c.expect("basic.consume-ok")
    while len(got) < count:
        ftype, _, payload = c.next_frame()
        name, v = F.decode_method(payload)
        if name != "basic.deliver":
            raise AssertionError("expected basic.deliver, got %s" % name)
        _, body = c.message(payload)
        got.append((msg_id(body), v[2]))
    c.sock.sendall(F.method(1, "basic.cancel", "check", False))
    c.expect("basic.cancel-ok")
    return got


def check_after_restart(b, model, cycle):
    c = Client(b.host, b.port)
    c.sock.sendall(F.method(1, "basic.qos", 0, 0, False))
    c.expect("basic.qos-ok")
    totals = {"confirmed": 0, "acked": 0, "recovered": 0, "lost": 0, "resurrected": 0,
              "duplicates": 0, "unknown": 0, "not_redelivered": 0}
    for q in QUEUES:
        got = read_queue(c, q)
        ids = [n for n, _ in got]
        seen = set(ids)
        # An ack the broker had not answered for may or may not have taken effect.
        expected = model.confirmed - model.gone[q] - model.acked[q] - model.unsure[q]
        totals["confirmed"] = len(model.confirmed)
        totals["acked"] += len(model.acked[q])
        totals["recovered"] += len(ids)
        totals["lost"] += len(expected - seen)
        totals["resurrected"] += len(seen & (model.acked[q] | model.gone[q]))
        totals["duplicates"] += len(ids) - len(seen)
        totals["unknown"] += len([n for n in seen if n >= model.next_id])
        redelivered = {n for n, r in got if r}
        totals["not_redelivered"] += len(model.held[q] & (seen - redelivered))
        if expected - seen:
            tap.diag("%s: lost %s" % (q, sorted(expected - seen)[:10]))
        # Start the next cycle from a known state: a is emptied, b keeps its messages.
        last = len(got)
        if q == "crash.a":
            c.sock.sendall(F.method(1, "basic.ack", last, True) if last else b"")
            model.gone[q] |= seen | model.acked[q] | model.unsure[q]
        else:
            # The oldest are acked, the newest KEEP requeued.
            cut = max(0, last - KEEP)
            if cut:
                c.sock.sendall(F.method(1, "basic.ack", cut, True))
            if last > cut:
                c.sock.sendall(F.method(1, "basic.nack", last, True, True))
            model.gone[q] |= {n for n, _ in got[:cut]}
            model.gone[q] |= model.acked[q] | (model.unsure[q] - set(ids[cut:]))
        c.sock.sendall(F.method(1, "channel.close", 200, "", 0, 0))
        c.expect("channel.close-ok")
        c.sock.sendall(F.method(1, "channel.open", ""))
        c.expect("channel.open-ok")
        model.acked[q], model.unsure[q], model.held[q] = set(), set(), set()
    # Whatever was published and never confirmed may or may not be there; it is
    # now known either way: what b holds stays in play, the rest is gone.
    c.sock.sendall(F.method(1, "queue.declare", 0, "crash.b", True, False, False, False, False, []))
    c.expect("queue.declare-ok")
    c.close()
    return totals


def setup(b):
    c = Client(b.host, b.port)
    c.sock.sendall(F.method(1, "exchange.declare", 0, "crash.fx", "fanout", False, True, False,
                            False, False, []))
    c.expect("exchange.declare-ok")
    for q in QUEUES:
        c.sock.sendall(F.method(1, "queue.declare", 0, q, False, True, False, False, False, []))
        c.expect("queue.declare-ok")
        c.sock.sendall(F.method(1, "queue.bind", 0, q, "crash.fx", "", False, []))
        c.expect("queue.bind-ok")
    c.close()


def segments(b):
    d = os.path.join(b.dir, "data", "msgs")
    return sorted(f for f in os.listdir(d) if f.endswith(".seg"))


def main():
    if external():
        tap.skip("kill -9 recovery", "needs a broker this test starts")
        return tap.done()
    rng = random.Random(SEED)
    b = Broker("journal.segment_size = %d\nlog.console.level = info\n" % SEGMENT)
    if not b.start():
        return tap.done()
    setup(b)
    model = Model()
    sums = {}
    for cycle in range(1, KILLS + 1):
        run_traffic(b, model, rng, rng.uniform(0.1, 0.6))
        b._spawn()
        if not tap.ok(b._wait_listening(15), "cycle %d: the broker starts after kill -9" % cycle):
            b.log_tail()
            break
        t = check_after_restart(b, model, cycle)
        for k, v in t.items():
            sums[k] = sums.get(k, 0) + v
        tap.diag("cycle %d: confirmed %d, acked %d, recovered %d, lost %d, resurrected %d, "
                 "duplicates %d, unknown %d, held but not redelivered %d, segments %d"
                 % (cycle, t["confirmed"], t["acked"], t["recovered"], t["lost"],
                    t["resurrected"], t["duplicates"], t["unknown"], t["not_redelivered"],
                    len(segments(b))))
        tap.ok(t["lost"] == 0 and t["resurrected"] == 0 and t["duplicates"] == 0 and
               t["unknown"] == 0,
               "cycle %d: nothing confirmed lost, nothing acked back, no duplicates" % cycle)
        tap.ok(t["not_redelivered"] == 0,
               "cycle %d: what was delivered and not acked comes back redelivered" % cycle)
    tap.diag("totals over %d kills: recovered %d, lost %d, resurrected %d, duplicates %d"
             % (KILLS, sums.get("recovered", 0), sums.get("lost", 0),
                sums.get("resurrected", 0), sums.get("duplicates", 0)))
    # Everything acknowledged: dead segments go.
    c = Client(b.host, b.port)
    for q in QUEUES:
        c.sock.sendall(F.method(1, "queue.purge", 0, q, False))
        c.expect("queue.purge-ok")
    c.close()
    time.sleep(0.3)
    segs = segments(b)
    tap.ok(len(segs) <= 2, "once every message is gone at most 2 segments remain (%d)" % len(segs))
    with open(b.log, errors="replace") as f:
        log = f.read()
    tap.ok("Sanitizer" not in log and "runtime error" not in log, "no sanitizer report in the log")
    tap.ok(b.stop() == 0, "the broker exits 0 on SIGTERM")
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
