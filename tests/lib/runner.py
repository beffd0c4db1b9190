"""A tiny test runner shared by the Python test files.

Runs every ``test_*`` function of a module in definition order, prints one
line per failure (and per test with -v), then exactly one summary line
"N passed, M failed", and returns the exit status.

A module's function named ``setup``, if any, is a fixture: it runs once
before the tests and is not counted as a test. If it fails, no test runs
and the run counts one failure. A function named ``before_each`` is a
fixture too: it runs before every test (a fresh database, an empty Redis)
and its failure is that test's. Tests do not depend on each other: each
builds what it needs itself, so any one of them runs alone and in any
order.

Options:
  -v              one line per test, with its time
  --reverse       run the tests in reverse definition order
  --shuffle SEED  run the tests in an order shuffled by SEED
  --list          print the names of the selected tests, run nothing
Other arguments select tests: by their full names if any is one, else by
substring of their names.
"""

import random
import sys
import time
import traceback


def usage(msg):
    print("runner: %s\nusage: FILE [-v] [--reverse | --shuffle SEED] "
          "[--list] [name-substring ...]" % msg)
    return 2


def run(module_globals, argv, around=None):
    """Run the tests; ``around`` is an optional context manager factory
    that wraps the whole run (for example, starting servers)."""
    verbose = reverse = listing = False
    seed = None
    wanted = []
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "-v":
            verbose = True
        elif a == "--reverse":
            reverse = True
        elif a == "--list":
            listing = True
        elif a == "--shuffle":
            if not args:
                return usage("--shuffle needs a seed (an integer)")
            try:
                seed = int(args.pop(0))
            except ValueError:
                return usage("--shuffle needs a seed (an integer)")
        elif a.startswith("-"):
            return usage("unknown option %s" % a)
        else:
            wanted.append(a)
    tests = [(name, fn) for name, fn in module_globals.items()
             if name.startswith("test_") and callable(fn)]
    if wanted:
        exact = [t for t in tests if t[0] in wanted]
        tests = exact or [t for t in tests if any(w in t[0] for w in wanted)]
    if reverse:
        tests.reverse()
    if seed is not None:
        random.Random(seed).shuffle(tests)
    if listing:
        for name, _ in tests:
            print(name)
        return 0
    setup = module_globals.get("setup")
    before_each = module_globals.get("before_each")
    passed = failed = 0
    started = time.monotonic()

    def one(name, fn):
        """Runs fn; True if it passed."""
        t0 = time.monotonic()
        try:
            fn()
        except Exception:
            print("FAIL %s" % name)
            print(traceback.format_exc().rstrip())
            sys.stdout.flush()
            return False
        if verbose:
            print("ok   %s (%.2fs)" % (name, time.monotonic() - t0))
            sys.stdout.flush()
        return True

    def run_all():
        nonlocal passed, failed
        if callable(setup) and not one("setup", setup):
            print("setup failed: %d tests not run" % len(tests))
            failed += 1
            return
        for name, fn in tests:
            if callable(before_each):
                fn = (lambda f: lambda: (before_each(), f()))(fn)
            if one(name, fn):
                passed += 1
            else:
                failed += 1

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
