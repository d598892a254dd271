"""test_chaos.py - a seeded chaos client attacks the broker over the socket;
the broker must stay up, answer a well-behaved client after every round,
exit 0 on SIGTERM, restart on what it wrote, and never trip a sanitizer.

One broker (frame_max 8192, max_message_size 65536) takes rounds of short
sessions, four at a time. Each session is drawn from its own seed (the base
seed plus its number) and is one of: garbage instead of, before or after the
protocol header; a broken handshake; a random mix of valid and invalid methods
of every class on random channels, publishes with random properties and body
splits (some lying about sizes, missing frames or interleaving methods), acks
of real and made-up delivery tags, malformed frames; or a flood of replies the
client never reads. It ends cleanly, mid-frame, with a reset, or after leaving
the broker's writes unread for a while. Sessions also check what the broker
sends them: well-formed frames, content that adds up, delivery tags and
confirms in sequence, a protocol header for a bad one, close-ok for a close.

After each round (one TAP case each) a checker connection must handshake,
declare a queue, publish with a confirm, get the same body back and close
within a few seconds. Then come deterministic cases for what the chaos found
(marked TODO while the bug stands), and the end: SIGTERM with stuck clients
connected must make the broker exit 0 within 10 s; a broker started on a copy
of its data dir must load whatever durable definitions the chaos left and pass
the checker; and no log may hold an AddressSanitizer, UBSan or LeakSanitizer
report.

  WARREN_CHAOS_SECONDS=N     run for about N seconds (default 20, rounds of 2 s)
  WARREN_CHAOS_BASE_SEED=N   first session's seed (default 91000)
  WARREN_CHAOS_SEED=A[,B..]  replay just these sessions (concurrently), then check
  WARREN_CHAOS_WORKERS=N     sessions at a time (default 4)
  WARREN_CHAOS_VERBOSE=1     a line per session (2: and every method in and out)
  WARREN_CHAOS_KEEP_LOG=F    copy the broker's log to F at the end

Standard library only.
"""
import collections
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import chaos_frames as F  # noqa: E402
import tap  # noqa: E402
from broker import Broker, external, rss_bytes  # noqa: E402

FRAME_MAX = 8192
MAX_MESSAGE = 65536
HANDSHAKE_TIMEOUT = 1.5
CONF = ("frame_max = %d\nmax_message_size = %d\nhandshake_timeout = %d\n"
        % (FRAME_MAX, MAX_MESSAGE, HANDSHAKE_TIMEOUT * 1000))
ROUND_SECONDS = 2.0    # per round: new sessions start for START_WINDOW s, then
START_WINDOW = 1.2     # the last ones finish and the checker runs
WORKERS = int(os.environ.get("WARREN_CHAOS_WORKERS") or 4)
SESSION_SECONDS = 4.0  # a session's own budget; closing may take CLOSE_WAIT more
CLOSE_WAIT = 5.0       # close-ok or EOF must come this soon after connection.close
REPLY_WAIT = 5.0       # and a handshake step's reply this soon
CHECK_SECONDS = 5.0

QUEUES = ["chaos.q%d" % i for i in range(6)]
EXCHANGES = ["chaos.x%d" % i for i in range(5)]
BUILTIN = ["", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"]
XTYPES = ["direct", "fanout", "topic", "headers"]
WORDS = ["a", "b", "k", "chaos", "q0", "#", "*", "", "x"]
ARG_KEYS = ["x-match", "x-priority", "alternate-exchange", "x-queue-type", "x-max-length",
            "x-message-ttl", "x-expires", "x-dead-letter-exchange", "x-max-priority",
            "x-overflow", "x-single-active-consumer", "CC", "BCC", "k", "a"]
FIELD_KINDS = "tbBsuIilLfdDSATFVx"

TRACE = os.environ.get("WARREN_CHAOS_VERBOSE") == "2"
EXTERNAL = external()

# Problems the broker is known to have, as (a substring of the problem's text,
# a name), each with its TODO regression case below: a session that hits one
# counts it but does not fail its round. None at the moment.
KNOWN = []


class Ended(Exception):
    """The session is over: the deadline passed or the socket failed."""


# ---- random values ---------------------------------------------------------------------

def rand_word(rng):
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789.-_"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20)))


def rand_bytes(rng, lo, hi):
    return rng.randbytes(rng.randint(lo, hi))


def rand_name(rng, pool):
    r = rng.random()
    if r < 0.6:
        return rng.choice(pool)
    if r < 0.67:
        return ""
    if r < 0.71:
        return rng.choice("abcz") * 255
    if r < 0.77:
        return "amq." + rand_word(rng)
    if r < 0.83:
        return rng.choice(BUILTIN)
    if r < 0.93:
        return rand_word(rng)
    return rand_bytes(rng, 1, 40)


def rand_key(rng):
    r = rng.random()
    if r < 0.3:
        return rng.choice(QUEUES)
    if r < 0.75:
        return ".".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5)))
    if r < 0.8:
        return "k" * 255
    if r < 0.9:
        return ""
    return rand_bytes(rng, 1, 30)


def rand_value(rng, depth):
    """(kind, value) of a random field of any type, nested up to depth."""
    kind = rng.choice(FIELD_KINDS if depth > 0 else FIELD_KINDS.replace("A", "").replace("F", ""))
    if kind == "t":
        return kind, rng.random() < 0.5
    if kind == "b":
        return kind, rng.randint(-128, 127)
    if kind == "B":
        return kind, rng.randint(0, 255)
    if kind == "s":
        return kind, rng.randint(-32768, 32767)
    if kind == "u":
        return kind, rng.randint(0, 65535)
    if kind == "I":
        return kind, rng.choice([0, 1, -1, 2**31 - 1, -2**31, rng.randint(-2**31, 2**31 - 1)])
    if kind == "i":
        return kind, rng.choice([0, 1, 2**32 - 1, rng.randint(0, 2**32 - 1)])
    if kind == "l":
        return kind, rng.choice([0, -1, 2**63 - 1, -2**63, rng.randint(-2**63, 2**63 - 1)])
    if kind in "LT":
        return kind, rng.choice([0, 2**64 - 1, rng.randint(0, 2**64 - 1)])
    if kind == "f":
        return kind, rng.choice([0.0, -1.5, 1e30, float("inf"), float("nan"), rng.random()])
    if kind == "d":
        return kind, rng.choice([0.0, -2.25, 1e300, float("-inf"), float("nan"), rng.random()])
    if kind == "D":
        return kind, (rng.randint(0, 255), rng.randint(0, 2**32 - 1))
    if kind in "Sx":
        return kind, rng.choice([b"", b"all", b"any", b"classic", rand_bytes(rng, 0, 300)])
    if kind == "A":
        return kind, [rand_value(rng, depth - 1) for _ in range(rng.randint(0, 4))]
    if kind == "F":
        return kind, rand_entries(rng, depth - 1)
    return "V", None


def rand_entries(rng, depth=2):
    entries = []
    for _ in range(rng.randint(0, 5)):
        r = rng.random()
        key = rng.choice(ARG_KEYS) if r < 0.6 else ("" if r < 0.65 else rand_word(rng))
        if r > 0.97:
            key = "k" * 255
        kind, v = rand_value(rng, depth)
        entries.append((key, kind, v))
    return entries


def sensible_args(rng, what):
    """Arguments the broker accepts, most of the time."""
    if what == "queue":
        choices = [[], [("x-queue-type", "S", b"classic")], [("x-max-length", "I", 10)],
                   [("x-message-ttl", "l", 60000)], [("x-expires", "I", 100000)],
                   [("x-max-priority", "B", 5)], [("x-queue-type", "S", b"quorum")]]
    elif what == "headers":
        choices = [[("x-match", "S", rng.choice([b"all", b"any", b"all-with-x", b"any-with-x"])),
                    ("k", "S", b"a"), ("n", "I", rng.randint(0, 3))],
                   [("x-match", "S", b"any")], [], [("a", "t", True)]]
    elif what == "exchange":
        choices = [[], [("alternate-exchange", "S", rng.choice(EXCHANGES + BUILTIN).encode())]]
    else:
        choices = [[], [("x-priority", "I", rng.randint(-5, 5))]]
    return rng.choice(choices)


def rand_args(rng, what):
    r = rng.random()
    if r < 0.6:
        return sensible_args(rng, what)
    if r < 0.95:
        return rand_entries(rng)
    # A malformed table: the broker must refuse it, not read past it.
    body = bytearray(F.table_body(rand_entries(rng)))
    if body:
        i = rng.randrange(len(body))
        body[i] = rng.randrange(256)
    return F.longstr(bytes(body[:rng.randint(0, len(body))]) + rand_bytes(rng, 0, 6))


def rand_field(rng, kind, name):
    """A random value for one method argument."""
    if kind == F.BIT:
        return rng.random() < 0.5
    if kind == F.OCTET:
        return rng.randint(0, 255)
    if kind == F.SHORT:
        return rng.choice([0, 0, 1, 200, 320, 404, 65535, rng.randint(0, 65535)])
    if kind == F.LONG:
        return rng.choice([0, 1, 4096, FRAME_MAX, 2**32 - 1, rng.randint(0, 2**32 - 1)])
    if kind in (F.LONGLONG, F.TIMESTAMP):
        return rng.choice([0, 1, 2, 2**64 - 1, rng.randint(0, 100), rng.randint(0, 2**64 - 1)])
    if kind == F.SHORTSTR:
        if "queue" in name:
            return rand_name(rng, QUEUES)
        if "exchange" in name or name in ("source", "destination"):
            return rand_name(rng, EXCHANGES)
        if name == "type":
            return rng.choice(XTYPES + ["x-custom", "", "DIRECT"])
        if name == "routing-key":
            return rand_key(rng)
        return rand_name(rng, ["", "ctag", "guest", "/", "en_US", "PLAIN"])
    if kind == F.LONGSTR:
        return rand_bytes(rng, 0, 300)
    if kind == F.TABLE:
        return rand_args(rng, "any")
    raise ValueError(kind)


def rand_props(rng):
    props = {}
    pick = rng.random()
    if pick < 0.3:
        return props
    candidates = {
        "content-type": lambda: rng.choice(["text/plain", "application/json", "", "x" * 255]),
        "content-encoding": lambda: rng.choice(["utf-8", "gzip", ""]),
        "headers": lambda: rand_headers(rng),
        "delivery-mode": lambda: rng.choice([1, 2, 0, 255]),
        "priority": lambda: rng.randint(0, 255),
        "correlation-id": lambda: rand_word(rng),
        "reply-to": lambda: rng.choice(QUEUES + ["amq.rabbitmq.reply-to", ""]),
        "expiration": lambda: rng.choice(["60000", "0", "1", "-1", "+5", "abc", "", "-0",
                                          "99999999999999999999", "4294967295", "4294967296"]),
        "message-id": lambda: rand_word(rng),
        "timestamp": lambda: rng.randint(0, 2**64 - 1),
        "type": lambda: rand_word(rng),
        "user-id": lambda: rng.choice(["guest", "guest", "", "admin", "gues"]),
        "app-id": lambda: rand_word(rng),
        "cluster-id": lambda: rand_word(rng),
    }
    for name, make in candidates.items():
        if rng.random() < 0.35:
            props[name] = make()
    return props


def rand_headers(rng):
    entries = rand_entries(rng, 2) if rng.random() < 0.5 else []
    r = rng.random()
    keys = [("S", rng.choice(QUEUES).encode()) for _ in range(rng.randint(0, 3))]
    if r < 0.2:
        entries.append(("CC", "A", keys))
    elif r < 0.35:
        entries.append(("BCC", "A", keys))
    elif r < 0.4:
        entries.append(("CC", "S", b"chaos.q0"))
    elif r < 0.45:
        entries.append(("BCC", "A", [rand_value(rng, 1) for _ in range(3)]))
    return entries


def split_body(rng, body, max_frame_body):
    """Body chunks of random sizes, each within max_frame_body."""
    chunks, i = [], 0
    style = rng.random()
    while i < len(body):
        if style < 0.1 and len(chunks) < 64:
            n = rng.randint(1, 16)
        elif style < 0.5:
            n = rng.randint(1, max_frame_body)
        else:
            n = max_frame_body
        chunks.append(body[i:i + n])
        i += n
    return chunks


# ---- statistics ---------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.sessions = 0
        self.frames = 0
        self.bytes = 0
        self.frames_in = 0
        self.kinds = collections.Counter()
        self.endings = collections.Counter()
        self.conn_codes = collections.Counter()
        self.chan_codes = collections.Counter()
        self.known = collections.Counter()

    def add(self, s):
        with self.lock:
            self.sessions += 1
            self.frames += s.frames
            self.bytes += s.bytes
            self.frames_in += s.frames_in
            self.kinds[s.kind] += 1
            self.endings[s.ending] += 1
            self.conn_codes.update(s.conn_codes)
            self.chan_codes.update(s.chan_codes)
            self.known.update(s.known)


# ---- one chaos session -------------------------------------------------------------------

class Session:
    """One connection driven by one seed."""

    def __init__(self, addr, seed):
        self.addr = addr
        self.seed = seed
        self.rng = random.Random(seed)
        self.deadline = time.monotonic() + SESSION_SECONDS
        self.sock = None
        self.reader = F.FrameReader()
        self.kind = "?"
        self.ending = "-"
        self.problems = []
        self.known = collections.Counter()
        self.frames = self.bytes = self.frames_in = 0
        self.conn_codes = collections.Counter()
        self.chan_codes = collections.Counter()
        self.in_sync = True     # what we sent ends on a frame boundary
        self.reading = True     # False: leave the broker's writes unread
        self.eof = False
        self.raw_in = bytearray()  # bytes before the first frame (a protocol header)
        self.expect_frames = True
        self.frame_limit = FRAME_MAX
        self.broker_close = None
        self.close_ok = False
        self.events = []        # (channel, method name, values) as they arrive
        self.chans = {}         # channel -> "open" | "closing" | "broker-closed"
        self.opened = set()     # channels we sent channel.open on, not yet answered
        self.close_ok_due = set()
        self.tags = collections.defaultdict(list)    # live delivery tags per channel
        self.next_tag = {}
        self.content_in = {}    # channel -> "header" or bytes of body still due
        self.consume_fifo = collections.defaultdict(collections.deque)
        self.publishes = collections.Counter()       # publishes sent per channel since open
        self.last_confirm = collections.Counter()
        self.ctags = collections.defaultdict(list)   # consumer tags acknowledged
        # How nasty a chaos session is: how often it picks a channel that is not
        # open, and how much weight malformed frames and random methods get.
        self.stray = self.rng.choice([0.0, 0.0, 0.005, 0.02, 0.1])
        self.nasty = self.rng.choice([0, 0.3, 1, 3])
        # Names: a session mostly works on a queue or two and an exchange, so that
        # its publishes, consumes and acks meet; other names from the pools.
        self.fav = self.rng.random() * 0.8
        self.fav_queues = self.rng.sample(QUEUES, 2)
        self.fav_exchange = self.rng.choice(EXCHANGES)
        self.channel_max = 2047
        self.heartbeat = 0

    # ---- bookkeeping

    def problem(self, what):
        for sig, name in KNOWN:
            if sig in what:
                self.known[name] += 1
                return
        self.problems.append(what)

    def alive(self):
        return self.broker_close is None and not self.eof

    # ---- I/O

    def connect(self, small_rcvbuf=False):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if small_rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(3)
        try:
            s.connect(self.addr)
        except OSError as e:
            s.close()
            self.problem("cannot connect: %s" % e)
            raise Ended("connect")
        s.setblocking(False)
        self.sock = s

    def _read_some(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self.eof = True
            return
        if not data:
            self.eof = True
            return
        if not self.expect_frames:
            self.raw_in += data
            return
        for ftype, ch, payload in self.reader.feed(data):
            self.on_frame(ftype, ch, payload)

    def send(self, data, nframes=1):
        view = memoryview(data)
        while view:
            now = time.monotonic()
            if now >= self.deadline:
                raise Ended("deadline")
            rl = [self.sock] if self.reading and not self.eof else []
            r, w, _ = select.select(rl, [self.sock], [], min(0.05, self.deadline - now))
            if r:
                self._read_some()
            if w:
                try:
                    n = self.sock.send(view[:65536])
                except BlockingIOError:
                    continue
                except OSError:
                    raise Ended("send failed")
                view = view[n:]
                self.bytes += n
        self.frames += nframes

    def poll(self, seconds=0.0):
        """Read what arrives within seconds (at least one non-blocking read)."""
        end = time.monotonic() + seconds
        while True:
            if self.eof or not self.reading:
                if seconds:
                    time.sleep(max(0.0, min(seconds, self.deadline - time.monotonic())))
                return
            left = max(0.0, end - time.monotonic())
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                self._read_some()
            if time.monotonic() >= end:
                return

    def wait_for(self, pred, seconds):
        """Read until pred() holds, EOF or the time runs out; pred()'s result."""
        end = min(time.monotonic() + seconds, self.deadline + CLOSE_WAIT)
        while not pred() and not self.eof and time.monotonic() < end:
            r, _, _ = select.select([self.sock], [], [], max(0.0, end - time.monotonic()))
            if r:
                self._read_some()
        return pred()

    def wait_method(self, name, seconds=3.0, channel=0):
        """Wait until the broker has sent this method (at any time so far)."""
        def seen():
            return any(ev[0] == channel and ev[1] == name for ev in self.events)
        return self.wait_for(lambda: seen() or self.broker_close is not None, seconds) and seen()

    # ---- what the broker sends

    def on_frame(self, ftype, ch, payload):
        self.frames_in += 1
        if ftype == "error":
            self.problem("broker sent a malformed frame: %s" % payload)
            self.eof = True
            return
        # A content header goes out whole, whatever the reader's frame_max, as in
        # RabbitMQ (the spec has no way to split one): only other frames count.
        if len(payload) + 8 > self.frame_limit and ftype != F.FRAME_HEADER:
            self.problem("broker sent a %d-byte frame (type %d) over frame_max %d"
                         % (len(payload) + 8, ftype, self.frame_limit))
        due = self.content_in.get(ch)
        if ftype == F.FRAME_METHOD:
            if due is not None:
                self.problem("broker sent a method on channel %d with content still due (%r)"
                             % (ch, due))
                del self.content_in[ch]
            try:
                name, values = F.decode_method(payload)
            except ValueError as e:
                self.problem("broker sent an undecodable method: %s" % e)
                return
            if name is None:
                self.problem("broker sent unknown method %d/%d" % tuple(values))
                return
            self.events.append((ch, name, values))
            if TRACE:
                tap.diag("  %d < ch %d %s %r" % (self.seed, ch, name, values[:2]))
            self.on_method(ch, name, values)
        elif ftype == F.FRAME_HEADER:
            if due != "header" or len(payload) < 14:
                self.problem("broker sent an unexpected content header on channel %d" % ch)
                return
            cls, size = F.decode_header(payload)
            if cls != 60:
                self.problem("broker sent a content header of class %d" % cls)
            if size:
                self.content_in[ch] = size
            else:
                del self.content_in[ch]
        elif ftype == F.FRAME_BODY:
            if not isinstance(due, int) or len(payload) > due:
                self.problem("broker sent %d body bytes on channel %d with %r due"
                             % (len(payload), ch, due))
                self.content_in.pop(ch, None)
                return
            if due == len(payload):
                del self.content_in[ch]
            else:
                self.content_in[ch] = due - len(payload)
        elif ftype == F.FRAME_HEARTBEAT:
            if ch != 0 or payload:
                self.problem("broker sent a heartbeat on channel %d with %d bytes"
                             % (ch, len(payload)))
        else:
            self.problem("broker sent a frame of type %d" % ftype)

    def on_method(self, ch, name, v):
        if name in F.CONTENT_METHODS:
            self.content_in[ch] = "header"
        if name == "connection.close":
            self.broker_close = (v[0], v[1])
            self.conn_codes[v[0]] += 1
        elif name == "connection.close-ok":
            self.close_ok = True
        elif name == "connection.tune":
            pass
        elif name == "channel.open-ok":
            self.chans[ch] = "open"
            self.opened.discard(ch)
            self.next_tag[ch] = 1
            self.tags[ch] = []
            self.last_confirm[ch] = 0
        elif name == "channel.close":
            self.chans[ch] = "broker-closed"
            self.chan_codes[v[0]] += 1
            self.consume_fifo[ch].clear()
            if self.rng.random() < 0.9:
                self.close_ok_due.add(ch)
        elif name == "channel.close-ok":
            self.chans.pop(ch, None)
            self.consume_fifo[ch].clear()
        elif name in ("basic.deliver", "basic.get-ok"):
            tag = v[1] if name == "basic.deliver" else v[0]
            want = self.next_tag.get(ch)
            if want is not None and tag != want:
                self.problem("%s on channel %d has delivery tag %d, expected %d"
                             % (name, ch, tag, want))
            self.next_tag[ch] = tag + 1
            self.tags[ch].append(tag)
        elif name == "basic.consume-ok":
            fifo = self.consume_fifo[ch]
            if fifo:
                sent = fifo.popleft()
                if sent and v[0] != sent:
                    self.problem("basic.consume-ok names consumer %r for basic.consume %r"
                                 % (v[0], sent))
            self.ctags[ch].append(v[0])
        elif name in ("basic.ack", "basic.nack") and ch in self.chans:
            tag = v[0]
            if tag <= self.last_confirm[ch] or tag > self.publishes[ch]:
                self.problem("publisher %s tag %d on channel %d after %d, with %d publishes sent"
                             % (name, tag, ch, self.last_confirm[ch], self.publishes[ch]))
            self.last_confirm[ch] = max(tag, self.last_confirm[ch])

    # ---- helpers that send

    def m(self, ch, name, *values):
        """Send a well-formed method, and remember what its replies will be checked against."""
        state = self.chans.get(ch)
        if name == "basic.publish":
            self.publishes[ch] += 1
        elif name == "basic.consume" and not values[6] and state not in ("closing",
                                                                         "broker-closed"):
            # consume-ok comes in order; None where the channel is not open yet.
            tag = values[2].encode() if isinstance(values[2], str) else values[2]
            self.consume_fifo[ch].append(tag if state == "open" else None)
        if TRACE:
            tap.diag("  %d > ch %d %s %r" % (self.seed, ch, name, [
                v if not isinstance(v, (bytes, str)) or len(v) < 40 else "%d bytes" % len(v)
                for v in values]))
        self.send(F.method(ch, name, *values))

    def rand_method(self, ch, name):
        _, _, fields, _ = F.METHODS[name]
        self.m(ch, name, *[rand_field(self.rng, kind, fname) for fname, kind in fields])

    def open_channels(self):
        return [c for c, st in self.chans.items() if st == "open"]

    def pick_channel(self):
        rng = self.rng
        live = self.open_channels() + sorted(self.opened - set(self.chans))
        r = rng.random()
        if live and r >= self.stray:
            return rng.choice(live)
        if r < self.stray / 3:
            return rng.choice([0, 65535, 2047, 2048, rng.randint(1, 65535)])
        return rng.randint(1, max(1, min(8, self.channel_max)))

    # ---- the handshake

    def header(self):
        self.send(F.PROTOCOL_HEADER)

    def need(self, name, after):
        """Wait for the reply to a handshake step; a problem if the broker is silent."""
        if self.wait_method(name, REPLY_WAIT):
            return True
        if self.alive():
            self.problem("no %s within %.0f s of %s" % (name, REPLY_WAIT, after))
        return False

    def handshake(self, frame_max=FRAME_MAX, channel_max=2047, heartbeat=0):
        self.header()
        if not self.need("connection.start", "the protocol header"):
            raise Ended("no start")
        self.send(F.start_ok())
        if not self.need("connection.tune", "start-ok"):
            raise Ended("no tune")
        self.frame_limit = frame_max or FRAME_MAX
        self.m(0, "connection.tune-ok", channel_max, frame_max, heartbeat)
        self.m(0, "connection.open", "/", "", False)
        if not self.need("connection.open-ok", "connection.open"):
            raise Ended("no open-ok")

    def channel_open(self, ch):
        self.opened.add(ch)
        self.m(ch, "channel.open", "")

    # ---- session kinds

    def run(self):
        rng = self.rng
        kinds = [("garbage", 10), ("handshake", 8), ("chaos", 74), ("flood", 8)]
        total = sum(w for _, w in kinds)
        r = rng.uniform(0, total)
        for self.kind, w in kinds:
            r -= w
            if r <= 0:
                break
        try:
            getattr(self, "kind_" + self.kind)()
        except Ended:
            pass
        finally:
            if self.sock:
                try:
                    self.sock.close()
                except OSError:
                    pass

    def kind_garbage(self):
        rng = self.rng
        self.expect_frames = False
        variant = rng.choice(["instead", "before", "after", "wrong-version", "split",
                              "partial", "twice", "0-9"])
        self.ending = variant
        self.connect()
        if variant == "instead":
            junk = rand_bytes(rng, 1, 64)
            if junk[:1] == b"A":
                junk = b"B" + junk[1:]
            self.send(junk)
            self.expect_bad_header()
        elif variant == "before":
            self.send(rng.choice([b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01",
                                  b"\x00", b"amqp"]) + F.PROTOCOL_HEADER)
            self.expect_bad_header()
        elif variant == "wrong-version":
            self.send(b"AMQP" + rng.choice([b"\x00\x00\x09\x00", b"\x01\x01\x00\x0a",
                                            b"\x00\x00\x08\x00", b"\x00\x00\x0a\x00",
                                            b"\x03\x01\x00\x00", rand_bytes(rng, 4, 4)]))
            self.expect_bad_header()
        elif variant == "split":
            cut = sorted(rng.sample(range(1, 8), rng.randint(1, 3)))
            for a, z in zip([0] + cut, cut + [8]):
                self.send(F.PROTOCOL_HEADER[a:z])
                time.sleep(rng.uniform(0.005, 0.02))
            self.wait_for(lambda: len(self.raw_in) >= 8, REPLY_WAIT)
            if self.raw_in[:4] == b"AMQP":
                self.problem("a protocol header sent in %d pieces was refused (the broker "
                             "answered with its own header)" % (len(cut) + 1))
                return
            self.expect_start_then(rng)
        elif variant == "0-9":
            self.send(b"AMQP\x01\x01\x00\x09")
            self.expect_start_then(rng)
        elif variant == "partial":
            self.send(F.PROTOCOL_HEADER[:rng.randint(1, 7)])
            if rng.random() < 0.2 and not EXTERNAL:
                # Say nothing more: the handshake timeout (ours) must close the socket.
                self.deadline = time.monotonic() + HANDSHAKE_TIMEOUT + 4
                if not self.wait_for(lambda: False, HANDSHAKE_TIMEOUT + 3) and not self.eof:
                    self.problem("a partial protocol header was not timed out in %.0f s"
                                 % (HANDSHAKE_TIMEOUT + 3))
            else:
                time.sleep(rng.uniform(0, 0.2))
        elif variant == "twice":
            self.send(F.PROTOCOL_HEADER * 2)
            self.expect_start_then(rng, already=True)
        elif variant == "after":
            self.header()
            self.expect_start_then(rng)

    def expect_bad_header(self):
        """A bad header gets AMQP 0-9-1's header back, then the socket closes."""
        self.wait_for(lambda: len(self.raw_in) >= 8, CLOSE_WAIT)
        if bytes(self.raw_in[:8]) != F.PROTOCOL_HEADER:
            self.problem("a bad protocol header was answered with %r" % bytes(self.raw_in[:16]))
        elif not self.wait_for(lambda: False, CLOSE_WAIT) and not self.eof:
            self.problem("the socket stayed open %.0f s after a bad protocol header" % CLOSE_WAIT)

    def expect_start_then(self, rng, already=False):
        """A good header: connection.start must follow; then some garbage."""
        self.expect_frames = True
        data = bytes(self.raw_in)
        self.raw_in.clear()
        for fr in self.reader.feed(data):
            self.on_frame(*fr)
        if not self.need("connection.start", "the protocol header"):
            return
        if already:
            return  # the second header is a bad frame: the broker closes
        self.send(rand_bytes(rng, 1, 200), nframes=0)
        self.in_sync = False
        self.poll(rng.uniform(0, 0.1))

    def kind_handshake(self):
        """A handshake that goes wrong at some step."""
        rng = self.rng
        self.connect()
        self.header()
        if not self.need("connection.start", "the protocol header"):
            return
        step = rng.choice(["start-ok", "tune-ok", "open", "order", "stall", "content"])
        self.ending = "hs-" + step
        if step == "start-ok":
            user, pw, mech, resp = "guest", "guest", "PLAIN", None
            which = rng.randrange(6)
            if which == 0:
                pw = "wrong"
            elif which == 1:
                user = rand_word(rng)
            elif which == 2:
                mech = rng.choice(["AMQPLAIN", "EXTERNAL", "", "plain", "x" * 255])
                if mech == "AMQPLAIN":
                    resp = rng.choice([F.table_body([("LOGIN", "S", b"guest"),
                                                     ("PASSWORD", "S", b"guest")]),
                                       F.table_body(rand_entries(rng)), rand_bytes(rng, 0, 20)])
            elif which == 3:
                resp = rng.choice([b"", b"\0", b"guest", b"\0guest", b"\0\0\0",
                                   rand_bytes(rng, 0, 300)])
            elif which == 4:
                resp = b"\0guest\0guest"
            props = None if rng.random() < 0.5 else rand_entries(rng)
            self.send(F.start_ok(user, pw, mech, props, resp))
        elif step == "tune-ok":
            self.send(F.start_ok())
            self.wait_method("connection.tune", REPLY_WAIT)
            self.m(0, "connection.tune-ok", rng.choice([0, 1, 2047, 2048, 65535]),
                   rng.choice([0, 1, 4095, 4096, FRAME_MAX, FRAME_MAX + 1, 2**32 - 1]),
                   rng.choice([0, 1, 60, 65535]))
            self.m(0, "connection.open", rng.choice(["/", "", "nope"]), "", False)
        elif step == "open":
            self.send(F.start_ok())
            self.wait_method("connection.tune", REPLY_WAIT)
            self.m(0, "connection.tune-ok", 2047, FRAME_MAX, 0)
            self.m(0, "connection.open", rand_name(rng, ["/", "%2F", "/x"]), rand_word(rng),
                   rng.random() < 0.5)
        elif step == "order":
            for _ in range(rng.randint(1, 4)):
                name = rng.choice([n for n, spec in F.METHODS.items()])
                self.rand_method(rng.choice([0, 0, 1]), name)
        elif step == "stall" and not EXTERNAL:  # the handshake timeout is ours
            self.send(F.start_ok())
            self.deadline = time.monotonic() + HANDSHAKE_TIMEOUT + 4
            if not self.wait_for(lambda: self.broker_close is not None, HANDSHAKE_TIMEOUT + 3) \
                    and not self.eof:
                self.problem("a stalled handshake was not timed out in %.0f s"
                             % (HANDSHAKE_TIMEOUT + 3))
            return
        elif step == "content":
            self.send(F.start_ok())
            self.send(rng.choice([F.header_frame(0, 5), F.body_frame(0, b"hello"),
                                  F.frame(F.FRAME_HEARTBEAT, 0, b"xx"),
                                  F.method(1, "channel.open", "")]))
        self.poll(rng.uniform(0, 0.1))
        self.finish()

    def kind_chaos(self):
        rng = self.rng
        self.connect()
        fm = rng.choice([FRAME_MAX, FRAME_MAX, 4096, rng.randint(4096, FRAME_MAX)])
        self.channel_max = rng.choice([2047, 2047, 2047, 16, 3])
        self.heartbeat = rng.choice([0, 0, 0, 60, 1])
        self.handshake(frame_max=fm, channel_max=self.channel_max, heartbeat=self.heartbeat)
        for ch in rng.sample(range(1, 4), rng.randint(0, 3)):
            self.channel_open(ch)
        if self.opened and rng.random() < 0.8:
            self.wait_for(lambda: not (self.opened - set(self.chans)) or not self.alive(), 1.0)
        ops = self.ops()
        names = [n for n, _ in ops]
        weights = [w for _, w in ops]
        for _ in range(rng.randint(1, 60)):
            if not self.alive():
                break
            for ch in sorted(self.close_ok_due):
                self.m(ch, "channel.close-ok")
                self.chans.pop(ch, None)
            self.close_ok_due.clear()
            op = rng.choices(names, weights)[0]
            if not self.open_channels() and not self.opened and rng.random() >= self.stray:
                op = "channel_open"
            getattr(self, "op_" + op)()
            if not self.in_sync:
                break
            self.poll(0)
        if self.broker_close is not None and self.in_sync and rng.random() < 0.3:
            # Frames after the broker's connection.close must be ignored.
            for _ in range(rng.randint(1, 5)):
                getattr(self, "op_" + rng.choices(names, weights)[0])()
                if not self.in_sync:
                    break
        self.finish()

    def kind_flood(self):
        """Make the broker write a lot, and do not read it."""
        rng = self.rng
        self.connect(small_rcvbuf=True)
        self.handshake()
        ch = 1
        self.channel_open(ch)
        self.wait_method("channel.open-ok", 3.0, channel=ch)
        self.reading = False
        self.deadline = time.monotonic() + 2.0
        how = rng.choice(["returns", "deliveries", "gets", "replies"])
        self.ending = "flood-" + how
        try:
            if how == "returns":
                body = rng.randbytes(rng.randint(8000, 60000))
                for _ in range(rng.randint(5, 40)):
                    self.publish_frames(ch, "amq.direct", "chaos.nowhere", True, body, {})
            elif how == "deliveries":
                q = "chaos.flood.%d" % self.seed
                self.m(ch, "queue.declare", 0, q, False, False, True, True, False, [])
                body = rng.randbytes(rng.randint(1000, 30000))
                for _ in range(rng.randint(5, 40)):
                    self.publish_frames(ch, "", q, False, body, {})
                self.m(ch, "basic.consume", 0, q, "", False, rng.random() < 0.7, False, False, [])
            elif how == "gets":
                q = rng.choice(QUEUES)
                for _ in range(rng.randint(50, 500)):
                    self.m(ch, "basic.get", 0, q, False)
            else:
                for i in range(rng.randint(100, 2000)):
                    self.m(ch, "queue.declare", 0, "chaos.q%d" % (i % 6), True, False, False,
                           False, False, [])
        except Ended:
            pass
        time.sleep(rng.uniform(0.2, 1.5))
        if rng.random() < 0.5:
            self.reading = True
            self.deadline = time.monotonic() + SESSION_SECONDS
            self.finish(force="clean")
        else:
            self.finish(force=rng.choice(["close", "reset"]))

    # ---- ending a session

    def finish(self, force=None):
        rng = self.rng
        how = force or rng.choices(["clean", "close", "mid-frame", "reset", "half-open",
                                    "shut-write"], [45, 15, 10, 10, 10, 10])[0]
        if self.ending == "-" or force:
            self.ending = how if self.ending == "-" else self.ending + "/" + how
        try:
            if how == "clean":
                self.close_cleanly()
            elif how == "mid-frame":
                f = F.method(1, "queue.declare", 0, "chaos.q0", False, False, False, False,
                             False, rand_entries(rng))
                self.send(f[:rng.randint(1, len(f) - 1)], nframes=0)
            elif how == "reset":
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif how == "half-open":
                self.reading = False
                for _ in range(rng.randint(1, 50)):
                    self.m(rng.randint(1, 3), "basic.get", 0, rng.choice(QUEUES), False)
                # With heartbeat 1, long enough for the broker to give up on us.
                time.sleep(rng.uniform(0.1, 3.0 if self.heartbeat == 1 else 1.0))
            elif how == "shut-write":
                self.sock.shutdown(socket.SHUT_WR)
                self.wait_for(lambda: False, 1.0)
        except (Ended, OSError):
            pass

    def close_cleanly(self):
        """connection.close (or close-ok for the broker's): close-ok or EOF must follow."""
        if not self.in_sync or self.eof:
            return
        self.reading = True
        self.deadline = max(self.deadline, time.monotonic() + CLOSE_WAIT + 1)
        if self.broker_close is not None and self.rng.random() < 0.8:
            self.m(0, "connection.close-ok")
            self.wait_for(lambda: False, 0.2 if EXTERNAL else CLOSE_WAIT)
        else:
            self.m(0, "connection.close", 200, "bye", 0, 0)
            self.wait_for(lambda: self.close_ok, CLOSE_WAIT)
        # Warren answers a close that crosses its own with close-ok and closes
        # its side once close-ok has gone either way; RabbitMQ does neither, so
        # none of this is checked against an external broker.
        if EXTERNAL:
            return
        if not self.eof and not self.close_ok:
            self.problem("neither close-ok nor EOF within %.0f s of closing (broker close %r)"
                         % (CLOSE_WAIT, self.broker_close))
        if self.close_ok and not self.wait_for(lambda: False, CLOSE_WAIT) and not self.eof:
            self.problem("the socket stayed open %.0f s after close-ok" % CLOSE_WAIT)

    # ---- the operations of a chaos session

    def ops(self):
        return [("channel_open", 6), ("channel_close", 3), ("channel_flow", 1),
                ("exchange_declare", 6), ("exchange_delete", 2), ("exchange_bind", 4),
                ("queue_declare", 8), ("queue_bind", 6), ("queue_unbind", 2),
                ("queue_purge", 2), ("queue_delete", 3),
                ("qos", 3), ("consume", 6), ("cancel", 3), ("get", 6), ("settle", 8),
                ("recover", 1), ("publish", 20), ("confirm", 3), ("tx", 3),
                ("any_method", 3 * self.nasty), ("malformed", 3 * self.nasty), ("pump", 4)]

    def qname(self):
        if self.rng.random() < self.fav:
            return self.rng.choice(self.fav_queues)
        return rand_name(self.rng, QUEUES)

    def xname(self):
        if self.rng.random() < self.fav / 2:
            return self.fav_exchange
        return rand_name(self.rng, EXCHANGES)

    def key(self):
        if self.rng.random() < self.fav:
            return self.rng.choice(self.fav_queues)
        return rand_key(self.rng)

    def op_channel_open(self):
        rng = self.rng
        top = max(1, min(8, self.channel_max))
        free = [c for c in range(1, top + 1) if c not in self.chans and c not in self.opened]
        if free and rng.random() >= self.stray:
            ch = rng.choice(free)
        else:
            ch = rng.randint(1, 8) if rng.random() < 0.8 else rng.choice([0, 2047, 2048, 65535])
        self.channel_open(ch)

    def op_channel_close(self):
        ch = self.pick_channel()
        if self.rng.random() < 0.8:
            self.chans[ch] = "closing"
            self.m(ch, "channel.close", 200, "bye", 0, 0)
        else:
            self.m(ch, "channel.close-ok")

    def op_channel_flow(self):
        self.m(self.pick_channel(), "channel.flow", self.rng.random() < 0.8)

    def padded(self, args):
        """Sometimes a few KB more arguments: durable declarations then fill
        definitions.log fast enough that it compacts during a run."""
        if isinstance(args, list) and self.rng.random() < 0.15:
            pad = self.rng.randint(1000, self.frame_limit - 1200)
            args = args + [("chaos-pad", "S", b"p" * pad)]
        return args

    def op_exchange_declare(self):
        rng = self.rng
        xtype = rng.choice(XTYPES) if rng.random() < 0.9 else rng.choice(["x-custom", ""])
        args = self.padded(rand_args(rng, "headers" if xtype == "headers" else "exchange"))
        self.m(self.pick_channel(), "exchange.declare", 0, self.xname(), xtype,
               rng.random() < 0.15, rng.random() < 0.3, rng.random() < 0.3,
               rng.random() < 0.15, rng.random() < 0.2, args)

    def op_exchange_delete(self):
        rng = self.rng
        self.m(self.pick_channel(), "exchange.delete", 0, self.xname(),
               rng.random() < 0.3, rng.random() < 0.2)

    def op_exchange_bind(self):
        rng = self.rng
        name = "exchange.bind" if rng.random() < 0.7 else "exchange.unbind"
        self.m(self.pick_channel(), name, 0, self.xname(), self.xname(),
               self.key(), rng.random() < 0.2, self.padded(rand_args(rng, "headers")))

    def op_queue_declare(self):
        rng = self.rng
        excl = rng.random() < 0.15
        self.m(self.pick_channel(), "queue.declare", 0, self.qname(),
               rng.random() < 0.1, rng.random() < 0.3, excl, rng.random() < 0.2,
               rng.random() < 0.2, self.padded(rand_args(rng, "queue")))

    def op_queue_bind(self):
        rng = self.rng
        self.m(self.pick_channel(), "queue.bind", 0, self.qname(),
               self.xname(), self.key(), rng.random() < 0.2,
               rand_args(rng, "headers"))

    def op_queue_unbind(self):
        rng = self.rng
        self.m(self.pick_channel(), "queue.unbind", 0, self.qname(),
               self.xname(), self.key(), rand_args(rng, "headers"))

    def op_queue_purge(self):
        rng = self.rng
        self.m(self.pick_channel(), "queue.purge", 0, self.qname(), rng.random() < 0.2)

    def op_queue_delete(self):
        rng = self.rng
        self.m(self.pick_channel(), "queue.delete", 0, self.qname(),
               rng.random() < 0.3, rng.random() < 0.3, rng.random() < 0.2)

    def op_qos(self):
        rng = self.rng
        size = 0 if rng.random() < 0.9 else rng.randint(1, 2**32 - 1)
        self.m(self.pick_channel(), "basic.qos", size, rng.choice([0, 1, 2, 10, 65535]),
               rng.random() < 0.3)

    def op_consume(self):
        rng = self.rng
        ch = self.pick_channel()
        r = rng.random()
        if r < 0.5:
            tag = ""
        elif r < 0.8:
            tag = "ctag%d" % rng.randint(0, 3)
        elif r < 0.85:
            tag = "t" * 255
        else:
            tag = rand_bytes(rng, 1, 20)
        no_wait = rng.random() < 0.15
        self.m(ch, "basic.consume", 0, self.qname(), tag, rng.random() < 0.1,
               rng.random() < 0.4, rng.random() < 0.1, no_wait, rand_args(rng, "consume"))

    def op_cancel(self):
        rng = self.rng
        ch = self.pick_channel()
        known = self.ctags.get(ch)
        tag = rng.choice(known) if known and rng.random() < 0.7 else rand_name(rng, ["ctag0"])
        self.m(ch, "basic.cancel", tag, rng.random() < 0.3)

    def op_get(self):
        rng = self.rng
        self.m(self.pick_channel(), "basic.get", 0, self.qname(), rng.random() < 0.3)

    def op_settle(self):
        rng = self.rng
        ch = self.pick_channel()
        tags = self.tags.get(ch)
        if tags and rng.random() < 0.8:
            tag = rng.choice(tags)
            tags.remove(tag)
        else:
            tag = rng.choice([0, 1, 2, 1000, 2**64 - 1, rng.randint(0, 50)])
        which = rng.choice(["basic.ack", "basic.nack", "basic.reject"])
        multiple = rng.random() < 0.25
        if which == "basic.ack":
            self.m(ch, which, tag, multiple)
        elif which == "basic.nack":
            self.m(ch, which, tag, multiple, rng.random() < 0.7)
        else:
            self.m(ch, which, tag, rng.random() < 0.7)

    def op_recover(self):
        rng = self.rng
        name = rng.choice(["basic.recover", "basic.recover-async"])
        self.m(self.pick_channel(), name, rng.random() < 0.9)

    def op_confirm(self):
        self.m(self.pick_channel(), "confirm.select", self.rng.random() < 0.3)

    def op_tx(self):
        name = self.rng.choice(["tx.select", "tx.commit", "tx.rollback"])
        self.m(self.pick_channel(), name)

    def op_any_method(self):
        """Any method at all, client's or server's, with random field values."""
        rng = self.rng
        name = rng.choice(sorted(F.METHODS))
        if name.startswith("connection.close") and rng.random() < 0.7:
            name = "basic.get"
        self.rand_method(rng.choice([0, self.pick_channel()]), name)
        if name in F.CONTENT_METHODS and rng.random() < 0.5:
            self.send(F.header_frame(self.pick_channel(), 3, {}) +
                      F.body_frame(self.pick_channel(), b"abc"), nframes=2)

    def op_pump(self):
        self.poll(self.rng.uniform(0, 0.05))

    def publish_frames(self, ch, exchange, key, mandatory, body, props, immediate=False):
        self.m(ch, "basic.publish", 0, exchange, key, mandatory, immediate)
        frames = [F.header_frame(ch, len(body), props)]
        frames += [F.body_frame(ch, c) for c in split_body(self.rng, body, self.frame_limit - 8)]
        self.send(b"".join(frames), nframes=len(frames))

    def op_publish(self):
        rng = self.rng
        ch = self.pick_channel()
        r = rng.random()
        if r < 0.5:
            exchange = ""
        elif r < 0.75:
            exchange = rng.choice(EXCHANGES + BUILTIN)
        else:
            exchange = self.xname()
        key = self.key()
        r = rng.random()
        if r < 0.6:
            size = rng.randint(0, 200)
        elif r < 0.9:
            size = rng.randint(200, 20000)
        else:
            size = rng.choice([MAX_MESSAGE - 1, MAX_MESSAGE, MAX_MESSAGE + 1,
                               rng.randint(20000, MAX_MESSAGE + 5000)])
        body = rng.randbytes(size)
        props = rand_props(rng)
        mandatory, immediate = rng.random() < 0.3, rng.random() < 0.03
        variant = rng.choices(
            ["normal", "interleave-other", "lie-bigger", "lie-smaller", "no-header", "no-body",
             "method-mid", "bad-class", "weight", "bad-flags", "raw-props", "oversized",
             "two-headers", "empty-frames", "huge-size"],
            [70, 8, 2, 2, 1, 2, 2, 1, 1, 1, 1, 1, 1, 3, 1])[0]
        maxb = self.frame_limit - 8
        if variant == "normal":
            self.publish_frames(ch, exchange, key, mandatory, body, props, immediate)
            return
        self.m(ch, "basic.publish", 0, exchange, key, mandatory, immediate)
        if variant == "no-header":
            self.send(F.body_frame(ch, body[:maxb]))
            return
        announced = len(body)
        hdr = None
        if variant == "lie-bigger":
            announced = len(body) + rng.randint(1, 100)
        elif variant == "lie-smaller" and body:
            announced = rng.randint(0, len(body) - 1)
        elif variant == "bad-class":
            hdr = F.header_frame(ch, len(body), props, class_id=rng.choice([0, 10, 50, 61, 65535]))
        elif variant == "weight":
            hdr = F.header_frame(ch, len(body), props, weight=rng.randint(1, 65535))
        elif variant == "bad-flags":
            hdr = F.header_frame(ch, len(body), props, flags=rng.choice([0x0001, 0x0002, 0x0003,
                                                                      0xFFFF, 0x8001]))
        elif variant == "raw-props":
            hdr = F.header_frame(ch, len(body), raw=rand_bytes(rng, 0, 40))
        elif variant == "huge-size":
            announced = rng.choice([2**63, 2**64 - 1, 2**32, MAX_MESSAGE * 4])
        self.send(hdr or F.header_frame(ch, announced, props))
        if variant == "two-headers":
            self.send(F.header_frame(ch, len(body), props))
        chunks = split_body(rng, body, maxb)
        if variant == "oversized":
            chunks = [body[:maxb] + b"x" * rng.randint(9, 500)] + chunks
        if variant == "empty-frames":
            chunks = [c for chunk in chunks for c in (b"", chunk)]
        if variant == "no-body":
            chunks = chunks[:rng.randint(0, max(0, len(chunks) - 1))]
        for i, c in enumerate(chunks):
            if variant == "interleave-other" and rng.random() < 0.5:
                other = self.pick_channel()
                if other != ch:
                    self.m(other, "basic.get", 0, self.qname(), True)
            if variant == "method-mid" and i == len(chunks) // 2:
                self.m(ch, "basic.get", 0, "chaos.q0", True)
            self.send(F.body_frame(ch, c))

    def op_malformed(self):
        rng = self.rng
        ch = self.pick_channel()
        name = rng.choice([n for n, spec in F.METHODS.items() if spec[3]])
        cls, mid, fields, _ = F.METHODS[name]
        args = F.pack_args(fields, [rand_field(rng, k, n) for n, k in fields])
        what = rng.choice(["truncated-args", "extra-bytes", "unknown-method", "unknown-class",
                           "bad-end", "oversized", "bad-type", "heartbeat-payload",
                           "heartbeat-channel", "short-payload", "unopened", "truncated-frame",
                           "lying-size", "content-idle"])
        if what == "truncated-args" and args:
            self.send(F.method_frame(ch, cls, mid, args[:rng.randrange(len(args))]))
        elif what == "extra-bytes":
            self.send(F.method_frame(ch, cls, mid, args + rand_bytes(rng, 1, 10)))
        elif what == "unknown-method":
            self.send(F.method_frame(ch, cls, rng.choice([0, 12, 99, 65535]), args))
        elif what == "unknown-class":
            self.send(F.method_frame(ch, rng.choice([0, 11, 30, 70, 100, 65535]), mid, args))
        elif what == "bad-end":
            self.send(F.frame(F.FRAME_METHOD, ch, F.method_payload(cls, mid, args),
                              end=rng.choice([0, 0xCD, 0xFF])))
        elif what == "oversized":
            self.send(F.frame(F.FRAME_METHOD, ch,
                              F.method_payload(cls, mid, args) +
                              b"\0" * (self.frame_limit + rng.randint(1, 100))))
        elif what == "bad-type":
            self.send(F.frame(rng.choice([0, 4, 7, 9, 65 & 0xFF, 255]), ch, args))
        elif what == "heartbeat-payload":
            self.send(F.frame(F.FRAME_HEARTBEAT, 0, rand_bytes(rng, 1, 20)))
        elif what == "heartbeat-channel":
            self.send(F.frame(F.FRAME_HEARTBEAT, ch or 1, b""))
        elif what == "short-payload":
            self.send(F.frame(F.FRAME_METHOD, ch, rand_bytes(rng, 0, 3)))
        elif what == "unopened":
            free = [c for c in range(1, 10) if c not in self.chans]
            self.send(F.method_frame(free[0] if free else 9, cls, mid, args))
        elif what == "content-idle":
            self.send(rng.choice([F.header_frame(ch, 3), F.body_frame(ch, b"abc")]))
        elif what == "truncated-frame":
            f = F.method_frame(ch, cls, mid, args)
            self.send(f[:rng.randint(1, len(f) - 1)], nframes=0)
            self.in_sync = False
        elif what == "lying-size":
            payload = F.method_payload(cls, mid, args)
            self.send(F.frame(F.FRAME_METHOD, ch, payload,
                              size=len(payload) + rng.randint(1, 200)))
            self.in_sync = False
        else:
            self.send(F.HEARTBEAT)


# ---- the well-behaved checker ------------------------------------------------------------

class Checker:
    """A blocking client that must get through one publish/get cycle in time."""

    def __init__(self, addr, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(CHECK_SECONDS)
        try:
            self.sock.connect(addr)
        except OSError:
            self.sock.close()
            raise
        self.reader = F.FrameReader()
        self.pending = collections.deque()
        self.deadline = time.monotonic() + CHECK_SECONDS

    def frame(self):
        while not self.pending:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise AssertionError("the broker closed the socket")
            for fr in self.reader.feed(data):
                if fr[0] == "error":
                    raise AssertionError("malformed frame: %s" % fr[2])
                if fr[0] != F.FRAME_HEARTBEAT:
                    self.pending.append(fr)
        return self.pending.popleft()

    def expect(self, name, channel=0):
        ftype, ch, payload = self.frame()
        if ftype != F.FRAME_METHOD:
            raise AssertionError("expected %s, got a frame of type %d" % (name, ftype))
        got, values = F.decode_method(payload)
        if got != name or ch != channel:
            raise AssertionError("expected %s on channel %d, got %s %r on channel %d"
                                 % (name, channel, got, values[:2], ch))
        return values

    def run(self, rng, round_no):
        s = self.sock
        s.sendall(F.PROTOCOL_HEADER)
        self.expect("connection.start")
        s.sendall(F.start_ok())
        tune = self.expect("connection.tune")
        if tune[1] != FRAME_MAX and not EXTERNAL:
            raise AssertionError("connection.tune offers frame_max %d" % tune[1])
        frame_max = tune[1] or FRAME_MAX
        s.sendall(F.method(0, "connection.tune-ok", tune[0], frame_max, 0) +
                  F.method(0, "connection.open", "/", "", False))
        self.expect("connection.open-ok")
        s.sendall(F.method(1, "channel.open", "") + F.method(1, "confirm.select", False))
        self.expect("channel.open-ok", 1)
        self.expect("confirm.select-ok", 1)
        q = "chaos.check.%d" % round_no
        s.sendall(F.method(1, "queue.declare", 0, q, False, False, False, False, False, []))
        got = self.expect("queue.declare-ok", 1)
        if got[0] != q.encode():
            raise AssertionError("declare-ok names %r" % got[0])
        body = rng.randbytes(rng.randint(1, 3 * frame_max))
        props = {"content-type": "application/octet-stream", "message-id": "check-%d" % round_no,
                 "headers": [("round", "I", round_no)]}
        chunks = [body[i:i + frame_max - 8] for i in range(0, len(body), frame_max - 8)]
        s.sendall(F.method(1, "basic.publish", 0, "", q, True, False) +
                  F.header_frame(1, len(body), props) +
                  b"".join(F.body_frame(1, c) for c in chunks))
        ack = self.expect("basic.ack", 1)
        if ack[0] != 1:
            raise AssertionError("publisher confirm for tag %d, not 1" % ack[0])
        s.sendall(F.method(1, "basic.get", 0, q, True))
        self.expect("basic.get-ok", 1)
        ftype, ch, payload = self.frame()
        if ftype != F.FRAME_HEADER or ch != 1 or F.decode_header(payload) != (60, len(body)):
            raise AssertionError("get-ok not followed by a %d-byte content header" % len(body))
        if payload[12:] != F.props_payload(props):
            raise AssertionError("properties came back changed")
        got_body = b""
        while len(got_body) < len(body):
            ftype, ch, payload = self.frame()
            if ftype != F.FRAME_BODY or ch != 1:
                raise AssertionError("expected body frames, got type %d" % ftype)
            got_body += payload
        if got_body != body:
            raise AssertionError("the body came back different (%d bytes, %d sent)"
                                 % (len(got_body), len(body)))
        s.sendall(F.method(1, "queue.delete", 0, q, False, False, False))
        self.expect("queue.delete-ok", 1)
        s.sendall(F.method(1, "channel.close", 200, "bye", 0, 0))
        self.expect("channel.close-ok", 1)
        s.sendall(F.method(0, "connection.close", 200, "bye", 0, 0))
        self.expect("connection.close-ok")

    def close(self):
        self.sock.close()


def check_broker(addr, rng, round_no):
    """None if the checker got through, else why not."""
    try:
        c = Checker(addr)
    except OSError as e:
        return "cannot connect: %s" % e
    try:
        c.run(rng, round_no)
        return None
    except (AssertionError, OSError, ValueError) as e:
        return "%s: %s" % (type(e).__name__, e)
    finally:
        c.close()


# ---- rounds ------------------------------------------------------------------------------

def run_sessions(addr, seeds, stats, round_deadline, verbose):
    """Run sessions four at a time: from the list `seeds`, or (seeds is an
    iterator) new seeds until the round's deadline. Returns [(seed, problems)]."""
    lock = threading.Lock()
    ran = []

    def worker():
        while True:
            with lock:
                if round_deadline is not None and time.monotonic() >= round_deadline:
                    return
                try:
                    seed = next(seeds)
                except StopIteration:
                    return
            s = Session(addr, seed)
            t = time.monotonic()
            s.run()
            s.elapsed = time.monotonic() - t
            stats.add(s)
            with lock:
                ran.append((seed, s.problems))
            if verbose:
                tap.diag("seed %d: %s ending %s, %.2f s, %d frames out, %d in, closes %s/%s%s"
                         % (seed, s.kind, s.ending, s.elapsed, s.frames, s.frames_in,
                            dict(s.conn_codes), dict(s.chan_codes),
                            "".join("\n  problem: " + p for p in s.problems)))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    # Every wait in a session is bounded; a worker still busy long after its
    # session's deadline is a hang (in the client, or a broker that never answers).
    limit = time.monotonic() + (round_deadline - time.monotonic() if round_deadline else 0) + 60
    for t in threads:
        t.join(max(0.0, limit - time.monotonic()))
    with lock:
        if any(t.is_alive() for t in threads):
            ran.append((-1, ["a session was still running 60 s after the round"]))
        ran.sort()
        return list(ran)


def seed_range(seeds):
    return "%d..%d" % (seeds[0], seeds[-1]) if seeds else "none"


def is_report(line):
    """A line of an AddressSanitizer, UBSan or LeakSanitizer report."""
    return "AddressSanitizer" in line or "runtime error" in line or "LeakSanitizer" in line


def scan_log(path):
    """A broker log's lines, and the indexes of sanitizer report lines."""
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    return lines, [i for i, line in enumerate(lines) if is_report(line)]


def main():
    seconds = float(os.environ.get("WARREN_CHAOS_SECONDS") or 20)
    base = int(os.environ.get("WARREN_CHAOS_BASE_SEED") or 91000)
    replay = os.environ.get("WARREN_CHAOS_SEED")
    verbose = bool(os.environ.get("WARREN_CHAOS_VERBOSE"))
    rounds = 1 if replay else max(1, int(round(seconds / ROUND_SECONDS)))

    b = Broker(CONF)
    if not b.start():
        return tap.done()
    addr = (b.host, b.port)
    stats = Stats()
    tap.diag("broker on %s:%d; %d rounds of %.1f s, %d sessions at a time, base seed %d"
             % (b.host, b.port, rounds, ROUND_SECONDS, WORKERS, base))
    if replay:
        tap.diag("replaying seeds %s" % replay)
        source = iter(int(x) for x in replay.split(","))
    else:
        source = iter(range(base, 2**62))
    t0 = time.monotonic()
    log_shown = False
    for rnd in range(1, rounds + 1):
        if not b.external and b.proc.poll() is not None:
            tap.ok(False, "round %d: the broker is running (it exited with %s)"
                   % (rnd, b.proc.returncode))
            continue
        deadline = None if replay else time.monotonic() + START_WINDOW
        ran = run_sessions(addr, source, stats, deadline, verbose)
        seeds = [seed for seed, _ in ran]
        failing = [(seed, p) for seed, p in ran if p]
        running = b.external or b.proc.poll() is None
        why = check_broker(addr, random.Random("check-%d-%d" % (base, rnd)), rnd) \
            if running else "the broker exited with status %s" % b.proc.returncode
        good = tap.ok(running and why is None and not failing,
                      "round %d: %d sessions (seeds %s), then a checker publishes, gets and "
                      "closes" % (rnd, len(ran), seed_range(seeds)))
        if not good:
            if why:
                tap.diag("checker: %s" % why)
            for seed, problems in failing:
                for p in problems:
                    tap.diag("seed %d: %s" % (seed, p))
            tap.diag("replay with WARREN_CHAOS_SEED=%s"
                     % ",".join(str(s) for s in (seeds if why else [s for s, _ in failing])))
            if why and not log_shown:
                b.log_tail(40)
                log_shown = True
        if not b.external and (rnd % 5 == 0 or rnd == rounds):
            tap.diag("after round %d: %d sessions, broker RSS %d KiB"
                     % (rnd, stats.sessions, rss_bytes(b.proc.pid) // 1024))
    elapsed = time.monotonic() - t0
    tap.diag("%d sessions in %.1f s: %d frames / %d bytes sent, %d frames received"
             % (stats.sessions, elapsed, stats.frames, stats.bytes, stats.frames_in))
    tap.diag("kinds %s" % dict(sorted(stats.kinds.items())))
    tap.diag("endings %s" % dict(sorted(stats.endings.items())))
    tap.diag("broker connection.close codes %s" % dict(sorted(stats.conn_codes.items())))
    tap.diag("broker channel.close codes %s" % dict(sorted(stats.chan_codes.items())))
    if stats.known:
        tap.diag("known problems hit: %s" % dict(stats.known))

    regression_cases(addr)
    final_cases(b, rounds)
    return tap.done()


def todo(cond, name, why):
    """A TAP case for a known bug, expected to fail until it is fixed (for the
    regression case of a KNOWN problem)."""
    tap._count += 1
    print("%s %d - %s # TODO %s" % ("ok" if cond else "not ok", tap._count, name, why),
          flush=True)


def raw_client(addr, frame_max=FRAME_MAX, rcvbuf=None):
    """A blocking socket past the handshake, with channel 1 open, and its reader."""
    c = Checker(addr, rcvbuf)
    c.sock.sendall(F.PROTOCOL_HEADER)
    c.expect("connection.start")
    c.sock.sendall(F.start_ok())
    tune = c.expect("connection.tune")
    c.sock.sendall(F.method(0, "connection.tune-ok", tune[0], frame_max, 0) +
                   F.method(0, "connection.open", "/", "", False) +
                   F.method(1, "channel.open", ""))
    c.expect("connection.open-ok")
    c.expect("channel.open-ok", 1)
    return c


def regression_cases(addr):
    """Deterministic cases for what chaos sessions found."""
    # The protocol header in two TCP segments: "AMQP", then "\0\0\x09\x01".
    got = b""
    try:
        s = socket.create_connection(addr, timeout=3)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(F.PROTOCOL_HEADER[:4])
        time.sleep(0.3)
        s.sendall(F.PROTOCOL_HEADER[4:])
        got = s.recv(7)
        s.close()
    except OSError as e:
        tap.diag("split header: %s" % e)
    tap.ok(got[:1] == bytes([F.FRAME_METHOD]),
           "a protocol header that arrives in two reads gets connection.start (got %r)" % got)

    # A consumer tag with a NUL byte: consume-ok echoes it whole, and a second
    # tag that differs after the NUL is another consumer.
    tags = []
    try:
        c = raw_client(addr)
        c.sock.sendall(F.method(1, "queue.declare", 0, "", False, False, True, True, False, []))
        c.expect("queue.declare-ok", 1)
        for tag in (b"chaos\0one", b"chaos\0two"):
            c.sock.sendall(F.method(1, "basic.consume", 0, "", tag, False, False, False, False,
                                    []))
            tags.append(c.expect("basic.consume-ok", 1)[0])
        c.sock.sendall(F.method(0, "connection.close", 200, "bye", 0, 0))
        c.expect("connection.close-ok")
        c.close()
    except (AssertionError, OSError, ValueError) as e:
        tap.diag("NUL in a consumer tag: %s" % e)
    tap.ok(tags == [b"chaos\0one", b"chaos\0two"],
           "consumer tags with a NUL byte come back whole in consume-ok (got %r)" % tags)

    # Left for the shutdown at the end: an auto-delete exchange whose only
    # binding is to the exchange declared just before it. Freeing that one
    # at shutdown removes the binding; the auto-delete exchange, next in line
    # to be freed, must not delete itself first (found as a use-after-free).
    done = False
    try:
        c = raw_client(addr)
        for name, auto in (("chaos.reg.dest", False), ("chaos.reg.src", True)):
            c.sock.sendall(F.method(1, "exchange.declare", 0, name, "direct", False, False, auto,
                                    False, False, []))
            c.expect("exchange.declare-ok", 1)
        c.sock.sendall(F.method(1, "exchange.bind", 0, "chaos.reg.dest", "chaos.reg.src", "k",
                                False, []))
        c.expect("exchange.bind-ok", 1)
        c.sock.sendall(F.method(0, "connection.close", 200, "bye", 0, 0))
        c.expect("connection.close-ok")
        c.close()
        done = True
    except (AssertionError, OSError, ValueError) as e:
        tap.diag("auto-delete exchange bound to another: %s" % e)
    tap.ok(done, "an auto-delete exchange bound to another is left for the shutdown")


def sigterm(b):
    """SIGTERM and wait up to 10 s: the exit status, or None if it had to be killed."""
    if b.proc.poll() is not None:
        return b.proc.returncode
    b.signal(signal.SIGTERM)
    try:
        return b.proc.wait(10)
    except subprocess.TimeoutExpired:
        b.proc.kill()
        b.proc.wait()
        return None


def show_hits(lines, hits):
    """The first sanitizer report of a log, or the log's tail if there is none."""
    for line in (lines[max(0, hits[0] - 5):hits[0] + 60] if hits else lines[-30:]):
        tap.diag("| " + line)


def restart_on_copy(b):
    """Start a broker on a copy of the stopped broker b's data dir, and get rid
    of b: (the new broker, not started yet; the copy's temp dir)."""
    data = tempfile.mkdtemp(prefix="warren-chaos-data-")
    shutil.copytree(os.path.join(b.dir, "data"), os.path.join(data, "data"), dirs_exist_ok=True)
    b.kill()
    return Broker(CONF + "data_dir = %s/data\n" % data), data


def pool_objects(addr):
    """Which of the sessions' queues and exchanges exist (a passive declare of
    each, on a channel of its own), or None if that could not be found out."""
    found = set()
    try:
        c = raw_client(addr)
        for ch, name in enumerate(QUEUES + EXCHANGES, start=1):
            if name in QUEUES:
                frame = F.method(ch, "queue.declare", 0, name, True, False, False, False, False,
                                 [])
            else:
                frame = F.method(ch, "exchange.declare", 0, name, "direct", True, False, False,
                                 False, False, [])
            c.deadline = time.monotonic() + CHECK_SECONDS
            c.sock.sendall(frame)
            _, _, payload = c.frame()
            if F.decode_method(payload)[0].endswith(".declare-ok"):
                found.add(name)
            c.sock.sendall(F.method(ch + 1, "channel.open", ""))
            c.expect("channel.open-ok", ch + 1)
        c.close()
    except (AssertionError, OSError, ValueError) as e:
        tap.diag("looking for the sessions' queues and exchanges: %s" % e)
        return None
    return found


NUL_QUEUE, NUL_EXCHANGE = b"chaos.nul\0queue", b"chaos.nul\0exchange"


def declare_nul_durables(addr):
    """A durable queue and exchange whose names hold a NUL byte; why not, or None."""
    try:
        c = raw_client(addr)
        c.sock.sendall(F.method(1, "queue.declare", 0, NUL_QUEUE, False, True, False, False,
                                False, []))
        c.expect("queue.declare-ok", 1)
        c.sock.sendall(F.method(1, "exchange.declare", 0, NUL_EXCHANGE, "fanout", False, True,
                                False, False, False, []))
        c.expect("exchange.declare-ok", 1)
        c.sock.sendall(F.method(0, "connection.close", 200, "bye", 0, 0))
        c.expect("connection.close-ok")
        c.close()
        return None
    except (AssertionError, OSError, ValueError) as e:
        return "declaring: %s" % e


def nul_durables_back(addr):
    """None if both are there again (passive declares), else what happened."""
    try:
        c = raw_client(addr)
        c.sock.sendall(F.method(1, "queue.declare", 0, NUL_QUEUE, True, False, False, False,
                                False, []))
        got = c.expect("queue.declare-ok", 1)
        if got[0] != NUL_QUEUE:
            return "declare-ok names %r" % got[0]
        c.sock.sendall(F.method(1, "exchange.declare", 0, NUL_EXCHANGE, "fanout", True, False,
                                False, False, False, []))
        c.expect("exchange.declare-ok", 1)
        c.close()
        return None
    except (AssertionError, OSError, ValueError) as e:
        return str(e)


def stuck_clients(addr):
    """Clients that are in the way of a shutdown: two that stopped reading with
    the broker's output to them backed up, one in the middle of a frame, one in
    the middle of the protocol header. Their sockets, to close after SIGTERM."""
    socks = []
    body = b"r" * 60000
    returns = (F.method(1, "basic.publish", 0, "amq.direct", "chaos.nowhere", True, False) +
               F.header_frame(1, len(body), {}) +
               b"".join(F.body_frame(1, body[i:i + FRAME_MAX - 8])
                        for i in range(0, len(body), FRAME_MAX - 8)))
    try:
        for _ in range(2):
            c = raw_client(addr, rcvbuf=4096)
            c.sock.settimeout(0.5)
            sent = 0
            try:
                for _ in range(300):  # 18 MB of mandatory returns, or until it blocks
                    c.sock.sendall(returns)
                    sent += 1
            except socket.timeout:
                pass
            tap.diag("a stuck client sent %d returned publishes before blocking" % sent)
            socks.append(c.sock)
        c = raw_client(addr)
        c.sock.sendall(F.method(1, "queue.declare", 0, "chaos.stuck", False, False, False,
                                True, False, [])[:9])
        socks.append(c.sock)
        s = socket.create_connection(addr, timeout=3)
        s.sendall(F.PROTOCOL_HEADER[:3])
        socks.append(s)
    except (AssertionError, OSError, ValueError) as e:
        tap.diag("setting up stuck clients: %s" % e)
    return socks


def compaction_zombie(reports):
    """A durable queue deleted by the very operation whose record makes
    definitions.log compact must stay deleted after a restart. The log compacts
    when it outgrows twice its last snapshot plus 1 MiB; a fresh broker's
    snapshot is the whole file, so exchange declarations of measured sizes
    bring the log to where the queue's declaration stays under that line and
    its deletion crosses it. None if the queue stays deleted, else what
    happened. Sanitizer report lines of both brokers' logs go to reports."""
    b, again, data = Broker(CONF), None, None
    try:
        if not b.start():
            return "the broker did not start"
        log = os.path.join(b.dir, "data", "definitions.log")
        limit = 2 * os.path.getsize(log) + (1 << 20)
        c = raw_client((b.host, b.port))

        def call(name, reply, *args):
            c.sock.sendall(F.method(1, name, *args))
            c.deadline = time.monotonic() + CHECK_SECONDS
            c.expect(reply, 1)
            return os.path.getsize(log)

        def exchange(name, pad):
            args = [("p", "S", b"p" * pad)] if pad >= 0 else []
            return call("exchange.declare", "exchange.declare-ok", 0, name, "fanout", False, True,
                        False, False, False, args)

        def queue(name):
            return call("queue.declare", "queue.declare-ok", 0, name, False, True, False, False,
                        False, [])

        def delete(name):
            return call("queue.delete", "queue.delete-ok", 0, name, False, False, False)

        # Record sizes: a queue's declaration and deletion (a name as long as
        # the target's), and an exchange declaration without arguments.
        size = os.path.getsize(log)
        q_declare = queue("chaos.zombiE") - size
        q_delete = delete("chaos.zombiE") - size - q_declare
        size = os.path.getsize(log)
        x_base = exchange("chaos.pad.0", -1) - size
        size = os.path.getsize(log)
        while limit - size > 8000:
            exchange("chaos.fill", 7000)
            size = call("exchange.delete", "exchange.delete-ok", 0, "chaos.fill", False, False)
        # Up to limit - q_declare - q_delete + 1 with one entry "p" of type S (7 bytes + pad).
        exchange("chaos.pad.1", limit - q_declare - q_delete + 1 - size - x_base - 7)
        inode = os.stat(log).st_ino
        size = queue("chaos.zombie")
        if size > limit or os.stat(log).st_ino != inode:
            return "the log compacted early (%d bytes, limit %d)" % (size, limit)
        delete("chaos.zombie")
        if os.stat(log).st_ino == inode:
            return "deleting the queue did not compact the log (%d bytes, limit %d)" \
                % (os.path.getsize(log), limit)
        c.close()
        sigterm(b)
        reports += [line for line in scan_log(b.log)[0] if is_report(line)]
        again, data = restart_on_copy(b)
        if not again.start():
            return "the broker did not restart"
        c = raw_client((again.host, again.port))
        c.sock.sendall(F.method(1, "queue.declare", 0, "chaos.zombie", True, False, False, False,
                                False, []))
        _, _, payload = c.frame()
        name, values = F.decode_method(payload)
        c.close()
        if name != "channel.close":
            return "after a restart, a passive declare of the deleted queue got %s %r" \
                % (name, values[:2])
        return None
    except (AssertionError, OSError, ValueError) as e:
        return "%s: %s" % (type(e).__name__, e)
    finally:
        if again and again.proc:
            sigterm(again)
            reports += [line for line in scan_log(again.log)[0] if is_report(line)]
        for broker in (b, again):
            if broker:
                broker.kill()
        if data:
            shutil.rmtree(data, ignore_errors=True)


def final_cases(b, rounds):
    names = ["SIGTERM makes the broker exit 0 within 10 s, with stuck clients connected",
             "the broker log has no sanitizer report",
             "the broker restarts on the data the chaos left, with none of the sessions' queues "
             "and exchanges that were gone back, and a checker gets through",
             "a durable queue and exchange with a NUL byte in their names survive a restart",
             "a durable queue deleted by the operation that compacts definitions.log stays "
             "deleted after a restart",
             "the restarted brokers exit 0 on SIGTERM and their logs have no sanitizer report"]
    if b.external:
        for name in names:
            tap.skip(name, "external broker")
        return
    addr = (b.host, b.port)
    before = pool_objects(addr)
    nul_why = declare_nul_durables(addr)
    stuck = stuck_clients(addr)
    t = time.monotonic()
    status = sigterm(b)
    took = time.monotonic() - t
    for sock in stuck:
        sock.close()
    if not tap.ok(status == 0, "%s (status %s in %.1f s)" % (names[0], status, took)):
        b.log_tail(30)
    keep = os.environ.get("WARREN_CHAOS_KEEP_LOG")
    if keep:
        shutil.copyfile(b.log, keep)
    lines, hits = scan_log(b.log)
    if not tap.ok(not hits, "the broker log (%d lines) has no AddressSanitizer, UBSan or "
                  "LeakSanitizer report" % len(lines)):
        show_hits(lines, hits)

    # Whatever durable exchanges, queues and bindings the sessions left (names
    # of any bytes, arguments of every type) must load again.
    tap.diag("data dir after the chaos: %s" % ", ".join(
        "%s %d bytes" % (f, os.path.getsize(os.path.join(b.dir, "data", f)))
        for f in sorted(os.listdir(os.path.join(b.dir, "data")))))
    again, data = restart_on_copy(b)
    reports = []
    try:
        # A broker that does not start has had its failing case from broker.py.
        if again.start():
            why = check_broker((again.host, again.port), random.Random("restart"), rounds + 1)
            after = pool_objects((again.host, again.port))
            if before is not None and after is not None:
                tap.diag("the sessions' queues and exchanges: %d before the restart, %d after "
                         "(the durable ones)" % (len(before), len(after)))
            if why is None and (before is None or after is None):
                why = "could not list the sessions' queues and exchanges"
            elif why is None and after - before:
                why = "deleted before the restart, back after it: %s" % sorted(after - before)
            if not tap.ok(why is None, names[2]):
                tap.diag("checker: %s" % why)
                again.log_tail(30)
            nul_why = nul_why or nul_durables_back((again.host, again.port))
        else:
            nul_why = "the broker did not restart"
        if not tap.ok(nul_why is None, names[3]):
            tap.diag(nul_why)
        zombie_why = compaction_zombie(reports)
        if not tap.ok(zombie_why is None, names[4]):
            tap.diag(zombie_why)
        status = sigterm(again) if again.proc else None
        lines, hits = scan_log(again.log) if again.proc else ([], [])
        if not tap.ok(status == 0 and not hits and not reports,
                      "%s (status %s)" % (names[5], status)):
            show_hits(lines, hits)
            for line in reports[:60]:
                tap.diag("| " + line)
    finally:
        again.kill()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
