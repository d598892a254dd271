"""brokers.py - the brokers the interop suites talk to.

Warren: one broker per suite, from $WARREN_BIN, on a free loopback port with
a temp config and data dir; stop() sends SIGTERM and returns the exit status
(Warren exits 0 on SIGTERM). WARREN_TEST_EXTERNAL=host:port talks to a broker
that is already running instead (for instance RabbitMQ, to check a suite).

RabbitMQ: the reference broker for the side-by-side comparisons, either
already running (WARREN_REFERENCE=host:port; "none" means there is none) or
started here on free ports by shared/tools/reference-rabbitmq.sh beside the
checkout ($WARREN_SRCDIR/../shared/tools/). reference() says which, or why
there is none. Run as a program, this module starts and stops one for
script/test:

    brokers.py rabbitmq-start STATEFILE   # writes host:port to STATEFILE
    brokers.py rabbitmq-stop STATEFILE

Every broker started here dies with the process that started it (atexit for
RabbitMQ, PR_SET_PDEATHSIG for Warren), except the one rabbitmq-start leaves
for rabbitmq-stop.
"""
import atexit
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRCDIR = os.environ.get("WARREN_SRCDIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_live = []


def _cleanup():
    for b in list(_live):
        b.kill()


atexit.register(_cleanup)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def amqp_ready(host, port, timeout=1.0):
    """True when host:port answers the AMQP 0-9-1 header with a method frame."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            return s.recv(1) == b"\x01"
    except OSError:
        return False


def _die_with_parent():
    # Linux: PR_SET_PDEATHSIG = 1; the broker dies if the suite is killed.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class Warren:
    def __init__(self, extra_conf=""):
        self.extra_conf = extra_conf
        self.proc = None
        self.dir = None
        self.host, self.port = "127.0.0.1", 0
        self.external = bool(os.environ.get("WARREN_TEST_EXTERNAL"))
        self.error = None

    @property
    def url(self):
        return "amqp://guest:guest@%s:%d/" % (self.host, self.port)

    def start(self, seconds=10):
        """True once the broker answers AMQP; otherwise False and .error says why."""
        if self.external:
            host, _, port = os.environ["WARREN_TEST_EXTERNAL"].rpartition(":")
            self.host, self.port = host or "127.0.0.1", int(port)
            return True
        binary = os.environ.get("WARREN_BIN", os.path.join(SRCDIR, "build", "src", "warren"))
        if not os.access(binary, os.X_OK):
            self.error = "no broker binary at %s (set WARREN_BIN)" % binary
            return False
        self.dir = tempfile.mkdtemp(prefix="warren-interop-")
        self.port = free_port()
        self.conf = os.path.join(self.dir, "warren.conf")
        self.log = os.path.join(self.dir, "warren.log")
        with open(self.conf, "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n" % self.port)
            f.write("data_dir = %s/data\n" % self.dir)
            f.write("log.console.level = debug\n")
            f.write(self.extra_conf)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([binary, "--config", self.conf], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         preexec_fn=_die_with_parent)
        _live.append(self)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.error = "warren exited with status %d before listening" % self.proc.returncode
                return False
            if amqp_ready(self.host, self.port):
                return True
            time.sleep(0.02)
        self.error = "warren did not answer on 127.0.0.1:%d within %d s" % (self.port, seconds)
        return False

    def log_tail(self, lines=30):
        """The last lines of the broker's log, for a diagnostic."""
        if not self.dir or not os.path.exists(self.log):
            return []
        with open(self.log, errors="replace") as f:
            return f.read().splitlines()[-lines:]

    def stop(self, timeout=10):
        """SIGTERM and wait: the exit status, or None if it had to be killed."""
        if self.external:
            return 0
        status = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                status = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        elif self.proc:
            status = self.proc.returncode
        self.kill(keep_dir=status != 0)
        return status

    def kill(self, keep_dir=False):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self in _live:
            _live.remove(self)
        if self.dir and not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


def reference_script():
    return os.path.join(os.path.dirname(SRCDIR), "shared", "tools", "reference-rabbitmq.sh")


class RabbitMQ:
    """The reference RabbitMQ, started by reference-rabbitmq.sh on free ports."""

    def __init__(self, env=None):
        self.host, self.port = "127.0.0.1", 0
        self.error = None
        self.env = env  # extra environment for rabbitmq-server, e.g. RABBITMQ_CONF_ENV_FILE

    def start(self, seconds=120):
        script = reference_script()
        if not os.path.exists(script):
            self.error = "no reference broker script at %s" % script
            return False
        # The script also takes PORT+20000 (Erlang distribution) and a management port.
        for _ in range(50):
            port = random.randint(20000, 45000)
            if _port_free(port) and _port_free(port + 20000):
                break
        mgmt = free_port()
        self.port = port
        _live.append(self)
        try:
            run = subprocess.run(["bash", script, "start", str(port), str(mgmt)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, timeout=seconds,
                                 env=dict(os.environ, **(self.env or {})))
        except subprocess.TimeoutExpired:
            self.error = "reference-rabbitmq.sh start did not finish within %d s" % seconds
            return False
        if run.returncode != 0:
            self.error = "reference-rabbitmq.sh start failed: " + \
                run.stdout.decode(errors="replace").strip()
            return False
        deadline = time.monotonic() + 30
        while not amqp_ready(self.host, port):
            if time.monotonic() > deadline:
                self.error = "RabbitMQ on port %d does not answer AMQP" % port
                return False
            time.sleep(0.2)
        return True

    def stop(self):
        if self in _live:
            _live.remove(self)
        if not self.port:
            return
        subprocess.run(["bash", reference_script(), "stop", str(self.port)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        base = os.path.join(os.environ.get("TMPDIR", "/tmp"), "reference-rabbitmq-%d" % self.port)
        shutil.rmtree(base, ignore_errors=True)
        self.port = 0

    kill = stop


def reference():
    """(host, port, owned) of the reference RabbitMQ, or (None, why, None).

    owned is the RabbitMQ this process started (stop it when done), or None
    when it was already running."""
    env = os.environ.get("WARREN_REFERENCE", "")
    if env == "none":
        return None, "no reference RabbitMQ (WARREN_REFERENCE=none)", None
    if env:
        host, _, port = env.rpartition(":")
        host = host or "127.0.0.1"
        if not amqp_ready(host, int(port), timeout=5):
            return None, "the reference RabbitMQ at %s does not answer" % env, None
        return host, int(port), None
    r = RabbitMQ()
    if not r.start():
        r.stop()
        return None, r.error, None
    return r.host, r.port, r


def _main(argv):
    if len(argv) == 3 and argv[1] == "rabbitmq-start":
        r = RabbitMQ()
        if not r.start():
            print(r.error, file=sys.stderr)
            r.stop()
            return 1
        _live.remove(r)  # left running for rabbitmq-stop
        with open(argv[2], "w") as f:
            f.write("%s:%d\n" % (r.host, r.port))
        print("RabbitMQ listening on %s:%d" % (r.host, r.port))
        return 0
    if len(argv) == 3 and argv[1] == "rabbitmq-stop":
        try:
            with open(argv[2]) as f:
                port = int(f.read().strip().rpartition(":")[2])
        except (OSError, ValueError):
            return 0
        r = RabbitMQ()
        r.port = port
        r.stop()
        os.unlink(argv[2])
        return 0
    print("usage: %s rabbitmq-start|rabbitmq-stop STATEFILE" % argv[0], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
