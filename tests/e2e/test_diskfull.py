"""test_diskfull.py - a full disk blocks publishers and loses nothing confirmed.

The data directory is a small tmpfs the test mounts (it needs root; without
it those cases are skipped), and the failure is also injected where no
filesystem can be mounted. Three situations:

1. disk_free_limit: with 12 MB of a 24 MB filesystem as the limit, a
   publisher of persistent messages (which announced the connection.blocked
   capability) gets connection.blocked "low on disk" once the journal has
   eaten the margin; what it publishes after that is not read (not
   confirmed); once a consumer empties the queue the dead segments go, the
   publisher gets connection.unblocked and every publish is confirmed.

2. ENOSPC: with no limit, publishing fills the filesystem; the failed write
   raises the journal alarm (connection.blocked "journal write failed") and
   holds the confirms of what could not be written; emptying the queue frees
   space, the held records are written, the publisher is unblocked and
   everything is confirmed. Filled again and killed with kill -9, the broker
   starts on the full filesystem, every confirmed message is in the queue,
   and once the queue is emptied publishing works again.

3. Injected ENOSPC (enospc_shim.so, LD_PRELOAD: writes to segments fail
   while a flag file exists): the same alarm, held confirms and release when
   writes work again, and nothing confirmed lost across kill -9.

Standard library only.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chaos_frames as F  # noqa: E402
import tap  # noqa: E402
from broker import Broker, external  # noqa: E402
from rawclient import Client  # noqa: E402

BODY = 4096
Q = "full.q"


def mount_tmpfs(size):
    d = tempfile.mkdtemp(prefix="warren-e2e-tmpfs-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s" % size, "tmpfs", d],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if r.returncode != 0:
        os.rmdir(d)
        return None
    return d


def umount(d):
    subprocess.run(["umount", "-l", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.rmdir(d)


class Publisher:
    """Persistent publishes with confirms; ids are the publish sequence numbers."""

    def __init__(self, b):
        self.c = Client(b.host, b.port, ["connection.blocked", "publisher_confirms"])
        self.c.sock.sendall(F.method(1, "confirm.select", False))
        self.c.expect("confirm.select-ok")
        self.sent = 0
        self.confirmed = set()
        self.nacked = set()
        self.blocked = None  # the reason, while blocked
        self.events = []

    def publish(self, n):
        out = b""
        for _ in range(n):
            self.sent += 1
            body = b"%08d:" % self.sent + bytes(BODY - 9)
            out += (F.method(1, "basic.publish", 0, "", Q, False, False) +
                    F.header_frame(1, len(body), {"delivery-mode": 2}) + F.body_frame(1, body))
        self.c.sock.sendall(out)

    def poll(self, seconds):
        deadline = time.monotonic() + seconds
        while True:
            if not self.c.pump(max(0, min(0.05, deadline - time.monotonic()))):
                return False
            for ftype, _, payload in self.c.frames:
                name, v = F.decode_method(payload)
                if name == "basic.ack":
                    self.confirmed.update(range(1 if v[1] else v[0], v[0] + 1))
                elif name == "basic.nack":
                    self.nacked.update(range(1 if v[1] else v[0], v[0] + 1))
                elif name == "connection.blocked":
                    self.blocked = v[0].decode()
                    self.events.append("blocked")
                elif name == "connection.unblocked":
                    self.blocked = None
                    self.events.append("unblocked")
            self.c.frames = []
            if time.monotonic() >= deadline:
                return True


def drain(b):
    """Empty the queue (acked); returns the ids it held."""
    c = Client(b.host, b.port)
    ids = []
    while True:
        c.sock.sendall(F.method(1, "basic.get", 0, Q, True))
        ftype, _, payload = c.next_frame()
        name, _ = F.decode_method(payload)
        if name == "basic.get-empty":
            break
        _, body = c.message(payload)
        ids.append(int(body[:8]))
    c.close()
    return ids


def declare(b):
    c = Client(b.host, b.port)
    c.sock.sendall(F.method(1, "queue.declare", 0, Q, False, True, False, False, False, []))
    c.expect("queue.declare-ok")
    c.close()


def broker_on(mnt, conf):
    b = Broker("data_dir = %s/data\njournal.segment_size = 1048576\n%s" % (mnt, conf))
    return b if b.start() else None


def low_disk_limit():
    mnt = mount_tmpfs("24m")
    if not mnt:
        tap.skip("disk_free_limit blocks and unblocks publishers", "cannot mount a tmpfs")
        return
    try:
        b = broker_on(mnt, "disk_free_limit.absolute = 12MB\n")
        if not b:
            return
        declare(b)
        p = Publisher(b)
        # About 4 MB/s: the once-a-second check sees the limit before the disk fills.
        while p.blocked is None and p.sent < 5000:
            p.publish(50)
            p.poll(0.05)
        tap.ok(p.blocked == "low on disk",
               "connection.blocked 'low on disk' after %d publishes (%r)" % (p.sent, p.blocked))
        p.poll(0.3)
        held_from = p.sent
        p.publish(20)
        p.poll(1.5)
        tap.ok(not any(s > held_from for s in p.confirmed),
               "publishes after the block are not read while it lasts")
        drained = drain(b)
        p.poll(3)
        tap.ok(p.events[-1:] == ["unblocked"],
               "connection.unblocked once the queue is emptied and its segments deleted")
        p.poll(2)
        tap.ok(len(p.confirmed) == p.sent,
               "every publish is confirmed in the end (%d of %d)" % (len(p.confirmed), p.sent))
        tap.ok(set(drained) <= p.confirmed | set(range(1, p.sent + 1)), "the drained ids are ours")
        tap.ok(b.stop() == 0, "the broker exits 0")
    finally:
        umount(mnt)


def fill(p):
    """Publish until the broker blocks the publisher."""
    limit = p.sent + 4000
    while p.blocked is None and p.sent < limit:
        p.publish(100)
        p.poll(0.02)
    p.poll(0.5)


def enospc():
    mnt = mount_tmpfs("8m")
    if not mnt:
        tap.skip("ENOSPC loses nothing confirmed", "cannot mount a tmpfs")
        return
    try:
        b = broker_on(mnt, "disk_free_limit.absolute = 0\n")
        if not b:
            return
        declare(b)
        p = Publisher(b)
        fill(p)
        tap.ok(p.blocked == "journal write failed",
               "a full disk raises the journal alarm: connection.blocked (%r)" % p.blocked)
        tap.ok(len(p.confirmed) < p.sent,
               "what could not be written is not confirmed (%d of %d confirmed)"
               % (len(p.confirmed), p.sent))
        gone = set(drain(b))
        p.poll(3)
        tap.ok(p.blocked is None and len(p.confirmed) == p.sent,
               "once space returns the held records are written: unblocked (%s), %d of %d "
               "confirmed, %d nacked" % (p.events, len(p.confirmed), p.sent, len(p.nacked)))
        gone |= set(drain(b))
        fill(p)
        confirmed = set(p.confirmed) - gone
        b.signal(signal.SIGKILL)
        b.proc.wait()
        b._spawn()
        if not tap.ok(b._wait_listening(10), "the broker starts again on the full filesystem"):
            b.log_tail()
            return
        ids = drain(b)
        tap.ok(confirmed <= set(ids),
               "every confirmed message is there after kill -9 (%d confirmed, %d recovered, "
               "%d lost)" % (len(confirmed), len(ids), len(confirmed - set(ids))))
        tap.ok(len(ids) == len(set(ids)), "no message twice")
        p2 = Publisher(b)
        p2.publish(10)
        p2.poll(2)
        tap.ok(len(p2.confirmed) == 10 and p2.blocked is None,
               "once the queue is emptied, publishing and confirms work again")
        with open(b.log, errors="replace") as f:
            log = f.read()
        tap.ok("Sanitizer" not in log and "runtime error" not in log, "no sanitizer report")
        tap.ok(b.stop() == 0, "the broker exits 0")
    finally:
        umount(mnt)


def with_shim(b, shim, flag, start):
    """Start (or respawn) the broker with the shim preloaded."""
    saved = {k: os.environ.get(k) for k in ("LD_PRELOAD", "WARREN_ENOSPC_FLAG", "ASAN_OPTIONS")}
    os.environ["LD_PRELOAD"] = shim
    os.environ["WARREN_ENOSPC_FLAG"] = flag
    # The sanitizer runtime wants to be first; the shim only wraps write().
    os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [saved["ASAN_OPTIONS"],
                                                        "verify_asan_link_order=0"]))
    try:
        if start:
            return b.start()
        b._spawn()
        return b._wait_listening(10)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def enospc_injected():
    top = os.path.dirname(os.path.dirname(os.path.abspath(
        os.environ.get("WARREN_BIN", "../src/warren"))))
    shim = os.path.join(top, "tests", "e2e", "enospc_shim.so")
    if not os.path.exists(shim):
        tap.skip("injected ENOSPC", "no %s" % shim)
        return
    flag = os.path.join(tempfile.mkdtemp(prefix="warren-e2e-flag-"), "full")
    b = Broker("disk_free_limit.absolute = 0\n")
    if not with_shim(b, shim, flag, True):
        return
    declare(b)
    p = Publisher(b)
    p.publish(100)
    p.poll(0.5)
    ok_before = len(p.confirmed)
    open(flag, "w").close()
    p.publish(100)
    p.poll(1.0)
    tap.ok(ok_before == 100 and p.blocked == "journal write failed",
           "injected: a failed write raises the journal alarm (%r)" % p.blocked)
    tap.ok(len(p.confirmed) == 100, "injected: nothing written since is confirmed (%d)"
           % len(p.confirmed))
    os.remove(flag)
    p.poll(2.5)
    tap.ok(p.blocked is None and len(p.confirmed) == 200,
           "injected: when writes work again the publisher is unblocked and all is confirmed "
           "(%d of 200)" % len(p.confirmed))
    open(flag, "w").close()
    p.publish(50)
    p.poll(1.0)
    confirmed = set(p.confirmed)
    b.signal(signal.SIGKILL)
    b.proc.wait()
    os.remove(flag)
    if not tap.ok(with_shim(b, shim, flag, False), "injected: starts again after kill -9"):
        return
    ids = drain(b)
    tap.ok(confirmed <= set(ids) and len(ids) == len(set(ids)),
           "injected: every confirmed message is there once (%d confirmed, %d recovered)"
           % (len(confirmed), len(ids)))
    tap.ok(b.stop() == 0, "injected: the broker exits 0")
    os.rmdir(os.path.dirname(flag))


def main():
    if external():
        tap.skip("disk full", "needs a broker this test starts")
        return tap.done()
    enospc_injected()
    if os.geteuid() != 0:
        tap.skip("disk full on a tmpfs", "mounting a tmpfs needs root")
        return tap.done()
    low_disk_limit()
    enospc()
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
