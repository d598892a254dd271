"""tap.py - Test Anything Protocol output for Warren's interop suites.

Owns the case counter and the plan line: ok() prints one case (a known
Warren bug is passed as todo= and printed "# TODO", which TAP readers count
as expected to fail), is_() one case comparing two values, skip() a skipped
case, diag() a comment, done() the plan and the exit status.
"""
import sys

_count = 0
_failed = 0


def ok(cond, name, todo=None):
    """One test case; returns cond so callers can branch on it."""
    global _count, _failed
    _count += 1
    line = "%s %d - %s" % ("ok" if cond else "not ok", _count, name.replace("#", "\\#"))
    if todo:
        line += " # TODO " + todo
    print(line, flush=True)
    if not cond and not todo:
        _failed += 1
        caller = sys._getframe(1)
        if caller.f_code.co_name == "is_":
            caller = caller.f_back
        print("#   failed at %s:%d" % (caller.f_code.co_filename, caller.f_lineno), flush=True)
    return bool(cond)


def is_(got, want, name, todo=None):
    """One case: got == want, with both printed when they differ."""
    if ok(got == want, name, todo):
        return True
    diag("     got: %r" % (got,))
    diag("expected: %r" % (want,))
    return False


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
