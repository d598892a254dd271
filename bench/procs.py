"""procs.py - what the benchmark scripts ask of a broker process: its
resident memory, and when it listens. Standard library only."""
import socket
import time


def rss_kib(pid):
    """Resident memory of process pid in KiB (0 once it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_listening(port, proc, seconds=30):
    """Return once 127.0.0.1:port accepts connections; RuntimeError if proc
    exits first or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the broker exited with %d" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError("the broker did not listen")
