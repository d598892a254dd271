"""smoke.py - warren-perf against a broker of its own, briefly, in each of its
main modes: no-ack, acks with a prefetch, persistent messages with confirms,
fan-out over three queues, topic routing; then the failures it must report
(bad credentials, a bad command line) and a check that it deleted its queues.

Every run uses --json, so the counts are read from the result object:
received must equal sent (times the queues, for fan-out) and the exit
status must be 0. The runs are rate- or count-limited so that the whole
test stays within a few seconds, sanitizer build included.

The tool is $WARREN_PERF_BIN, or tools/warren-perf beside the src/ of
$WARREN_BIN.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

import broker  # noqa: E402
import chaos_frames as F  # noqa: E402
import rawclient  # noqa: E402
import tap  # noqa: E402

RUN_TIMEOUT = 30


def perf_bin():
    if os.environ.get("WARREN_PERF_BIN"):
        return os.environ["WARREN_PERF_BIN"]
    warren = os.path.abspath(os.environ.get("WARREN_BIN", "../src/warren"))
    return os.path.join(os.path.dirname(os.path.dirname(warren)), "tools", "warren-perf")


def run(b, args, uri=None, quiet=False):
    """(exit status, result object or None, stderr) of one warren-perf run;
    unless quiet, the command and its output as diagnostics if it failed."""
    uri = uri or "amqp://guest:guest@%s:%d/%%2F" % (b.host, b.port)
    cmd = [perf_bin(), "-u", uri, "--json"] + args
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        tap.diag("timed out after %d s: %s" % (RUN_TIMEOUT, " ".join(cmd)))
        return None, None, ""
    try:
        result = json.loads(p.stdout)
    except ValueError:
        result = None
    if (p.returncode != 0 or result is None) and not quiet:
        tap.diag("$ " + " ".join(cmd))
        tap.diag("exit %s, stdout: %s" % (p.returncode, p.stdout.strip()))
        tap.diag(p.stderr.strip())
    return p.returncode, result, p.stderr


def check_mode(b, name, args, queues=1, confirms=False):
    rc, r, err = run(b, args)
    if not tap.ok(rc == 0 and r is not None and r["ok"], "%s: exit 0, ok" % name):
        return
    tap.ok(r["sent"] > 0, "%s: sent %d messages" % (name, r["sent"]))
    tap.ok(r["received"] == r["sent"] * queues and r["expected"] == r["received"],
           "%s: received %d = sent %d x %d queue(s)" % (name, r["received"], r["sent"], queues))
    if confirms:
        tap.ok(r["confirmed"] == r["sent"] and r["nacked"] == 0,
               "%s: every message confirmed (%d)" % (name, r["confirmed"]))
    if r["size"] >= 16:
        tap.ok(r["latency_us"]["samples"] == r["received"] and r["reordered"] == 0,
               "%s: a latency sample per message, none out of order" % name)
    tap.ok("runtime error" not in err and "Sanitizer" not in err, "%s: no sanitizer report" % name)


def check_failures(b):
    uri = "amqp://guest:wrong@%s:%d/%%2F" % (b.host, b.port)
    rc, r, err = run(b, ["-C", "10"], uri=uri, quiet=True)
    tap.ok(rc == 1 and r is not None and not r["ok"] and "403" in r["error"],
           "a refused login: exit 1, the broker's 403 in the error")
    p = subprocess.run([perf_bin(), "-e", "nonsense"], capture_output=True, text=True,
                       timeout=RUN_TIMEOUT)
    tap.ok(p.returncode == 2 and "-e" in p.stderr, "a bad option: exit 2 with a message")


def check_queues_deleted(b):
    c = rawclient.Client(b.host, b.port)
    c.sock.sendall(F.method(1, "queue.declare", 0, "warren-perf.q.1", True, False, False, False,
                            False, []))
    ftype, _, payload = c.next_frame()
    name, values = F.decode_method(payload)
    tap.ok(name == "channel.close" and values[0] == 404,
           "the queues are gone afterwards (passive declare: %s %s)" % (name, values and values[0]))
    c.sock.close()


def main():
    if not os.path.exists(perf_bin()):
        tap.bail("warren-perf not found at %s" % perf_bin())
    b = broker.Broker()
    if not b.start():
        return tap.done()
    check_mode(b, "no-ack, 2 producers, 200000 messages each", ["-x", "2", "-C", "200000"])
    check_mode(b, "ack every 10, prefetch 50", ["-z", "1.5", "-r", "20000", "-a", "10",
                                                "-q", "50"])
    check_mode(b, "confirms, persistent", ["-z", "1.5", "-c", "100", "-p", "-a", "50", "-q", "100"],
               confirms=True)
    check_mode(b, "fanout over 3 queues", ["-z", "1.5", "-r", "10000", "-x", "2", "-y", "3",
                                           "-e", "fanout", "--queues", "3"], queues=3)
    check_mode(b, "topic, 2 queues, 300 kB messages (3 body frames each)",
               ["-C", "100", "-y", "2", "-e", "topic", "-k", "a.b", "--queues", "2",
                "-s", "300000"], queues=2)
    check_failures(b)
    check_queues_deleted(b)
    tap.ok(b.stop() == 0, "the broker exits 0 on SIGTERM")
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
