"""test_examples.py - the programs in examples/ run against a broker of their own.

- retry_chain.py: jobs retried through dead-letter exchanges and TTL queues
  with growing delays (100, 200, 400 ms) and then parked; the worker reads
  its attempt from x-death. It checks itself and exits 0.
Run with Debian's python3 (pika).
"""
import os
import subprocess
import sys

import tap
from broker import Broker

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.environ.get("WARREN_SRCDIR", os.path.join(HERE, "..", "..")),
                        "examples")


def run_example(b, name, *args):
    cmd = [sys.executable, os.path.join(EXAMPLES, name), "--host", b.host, "--port",
           str(b.port)] + list(args)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode(errors="replace")
    if not tap.ok(p.returncode == 0, "%s %s exits 0" % (name, " ".join(args))):
        tap.diag(out)
    return out


def main():
    b = Broker()
    if not b.start():
        return tap.done()
    out = run_example(b, "retry_chain.py", "--jobs", "10")
    tap.ok(out.count("parked") == 2 and out.count("done") == 8,
           "retry_chain.py: 8 jobs done after up to 4 attempts, 2 parked")
    tap.ok(b.stop() == 0, "the broker exits 0 on SIGTERM")
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
