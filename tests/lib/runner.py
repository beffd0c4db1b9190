"""A tiny test runner shared by the Python test files.

Runs every ``test_*`` function of a module in definition order, prints one
line per failure (and per test with -v), then exactly one summary line
"N passed, M failed", and returns the exit status. Arguments that do not
start with "-" select tests by substring; the first test always runs,
because later ones may build on it.
"""

import sys
import time
import traceback


def run(module_globals, argv, around=None):
    """Run the tests; ``around`` is an optional context manager factory
    that wraps the whole run (for example, starting servers)."""
    verbose = "-v" in argv
    wanted = [a for a in argv if not a.startswith("-")]
    tests = [(name, fn) for name, fn in module_globals.items()
             if name.startswith("test_") and callable(fn)]
    if wanted:
        tests = [t for i, t in enumerate(tests)
                 if i == 0 or any(w in t[0] for w in wanted)]
    passed = failed = 0
    started = time.monotonic()

    def run_all():
        nonlocal passed, failed
        for name, fn in tests:
            t0 = time.monotonic()
            try:
                fn()
            except Exception:
                failed += 1
                print("FAIL %s" % name)
                print(traceback.format_exc().rstrip())
            else:
                passed += 1
                if verbose:
                    print("ok   %s (%.2fs)" % (name, time.monotonic() - t0))
            sys.stdout.flush()

    if around is None:
        run_all()
    else:
        with around():
            run_all()
    if verbose:
        print("(%.1fs)" % (time.monotonic() - started))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def eq(got, want, what=""):
    """assert got == want, with both in the message."""
    if got != want:
        raise AssertionError("%s\n  got:  %r\n  want: %r" % (what, got, want))
