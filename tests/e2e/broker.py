"""broker.py - one Warren broker per Python end-to-end test, like harness.c.

Owns the broker process and its temp dir (config, data dir, log): start()
writes the config for a free loopback port and waits until the port accepts,
stop() sends SIGTERM and reaps it, and an atexit hook plus PR_SET_PDEATHSIG
make sure no broker outlives the test. WARREN_TEST_EXTERNAL=host:port uses a
broker already running instead (external is then True).
"""
import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import tap

_live = []


def _kill_all():
    for b in list(_live):
        b.kill()


atexit.register(_kill_all)


def external():
    return bool(os.environ.get("WARREN_TEST_EXTERNAL"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    """A process's resident memory in bytes (0 once it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _die_with_parent():
    # Linux: PR_SET_PDEATHSIG = 1; the broker dies if the test is killed.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class Broker:
    def __init__(self, extra_conf=""):
        self.extra_conf = extra_conf
        self.proc = None
        self.dir = None
        self.host, self.port = "127.0.0.1", 0
        self.external = external()

    def start(self):
        """True once the broker accepts connections; a failed case otherwise."""
        if self.external:
            host, _, port = os.environ["WARREN_TEST_EXTERNAL"].rpartition(":")
            self.host, self.port = host or "127.0.0.1", int(port)
            return True
        self.dir = tempfile.mkdtemp(prefix="warren-e2e-py-")
        self.port = _free_port()
        self.conf = os.path.join(self.dir, "warren.conf")
        self.log = os.path.join(self.dir, "warren.log")
        with open(self.conf, "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n" % self.port)
            f.write("data_dir = %s/data\n" % self.dir)
            f.write("log.console.level = debug\n")
            f.write(self.extra_conf)
        self._spawn()
        _live.append(self)
        if self._wait_listening(10):
            return True
        tap.ok(False, "broker starts and listens on 127.0.0.1:%d" % self.port)
        self.log_tail()
        self.kill()
        return False

    def _spawn(self):
        binary = os.environ.get("WARREN_BIN", "../src/warren")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([binary, "--config", self.conf], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)

    def restart(self, sig=signal.SIGTERM, timeout=10):
        """Stop the broker with sig (SIGTERM, or SIGKILL for a crash) and start it
        again on the same config and data dir. Returns the old process's exit
        status (negative for a signal), or None if it did not start again."""
        self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = self.proc.wait()
        self._spawn()
        if not self._wait_listening(10):
            self.log_tail()
            return None
        return status

    def _wait_listening(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tap.diag("the broker exited with status %d before listening" % self.proc.returncode)
                return False
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def log_tail(self, lines=30):
        if self.dir and os.path.exists(self.log):
            with open(self.log, errors="replace") as f:
                tail = f.read().splitlines()[-lines:]
            tap.diag("---- broker log, last %d lines ----" % lines)
            for line in tail:
                tap.diag("| " + line)

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout=10):
        """SIGTERM and wait: the exit status, or None if it had to be killed."""
        if self.external:
            return 0
        status = None
        if self.proc:
            self.signal(signal.SIGTERM)
            try:
                status = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                tap.ok(False, "broker exits within %d s of SIGTERM (killed)" % timeout)
        if status != 0:
            self.log_tail()
        self.kill()
        return status

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self in _live:
            _live.remove(self)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
