"""tap.py - Test Anything Protocol output for Warren's Python end-to-end tests.

Owns the case counter and the plan line: ok() prints one case, skip() one
skipped case, diag() a comment, done() the plan and the exit status.
"""
import sys

_count = 0
_failed = 0


def ok(cond, name):
    """One test case; returns cond so callers can branch on it."""
    global _count, _failed
    _count += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", _count, name), flush=True)
    if not cond:
        _failed += 1
        caller = sys._getframe(1)
        print("#   failed at %s:%d" % (caller.f_code.co_filename, caller.f_lineno), flush=True)
    return bool(cond)


def skip(name, why):
    global _count
    _count += 1
    print("ok %d - %s # SKIP %s" % (_count, name, why), flush=True)


def diag(msg):
    for line in str(msg).splitlines() or [""]:
        print("# " + line, flush=True)


def bail(msg):
    print("Bail out! " + msg, flush=True)
    sys.exit(1)


def done():
    print("1..%d" % _count, flush=True)
    return 1 if _failed else 0
