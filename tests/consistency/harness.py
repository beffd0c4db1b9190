"""Shared by the tests of `pginval apply` (tests/integration/test_apply.py,
tests/recipes/, tests/consistency/): an Apply process helper, in the style
of tests/lib/pginval_proc.Daemon, with a config writer that knows apply's
sections ([apply], [target NAME], refresh and ttl in [table]).
"""

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from pginval_proc import SLOW, WRAPPER, wait_for, write_config  # noqa: E402,F401
from pginval_proc import BIN as _BIN  # noqa: E402
from runner import eq  # noqa: E402

# PGINVAL_BIN runs another build of the binary (default: ./pginval).
BIN = os.environ.get("PGINVAL_BIN", _BIN)

FILL_LUA = os.path.join(ROOT, "daemon", "fill.lua")


class Proc:
    """One `pginval run` or `pginval apply` process with its own config;
    env adds to the environment it starts with."""

    def __init__(self, command, pg, redis, tables, env=None, **kw):
        self.command = command
        self.env = env
        self.dir = tempfile.mkdtemp(prefix="pginval-%s-" % command)
        atexit.register(shutil.rmtree, self.dir, True)
        self.config = os.path.join(self.dir, "pginval.conf")
        self.logfile = os.path.join(self.dir, command + ".log")
        self.pg, self.redis, self.tables, self.kw = pg, redis, tables, kw
        self.rewrite()
        self.proc = None
        self.log = None

    def rewrite(self, tables=None, **kw):
        if tables is not None:
            self.tables = tables
        self.kw.update(kw)
        write_config(self.config, self.pg, self.redis, self.tables,
                     **self.kw)

    def start(self, wait=None):
        """Starts; waits for the subscription (apply) or LISTEN (run),
        or for the log line wait, unless wait is ""."""
        if wait is None:
            wait = ("channel: subscribed" if self.command == "apply"
                    else "postgres: listening on channel")
        before = self.log_text().count(wait) if wait else 0
        self.log = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            WRAPPER + [BIN, self.command, "-c", self.config],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            env=dict(os.environ, **self.env) if self.env else None)
        atexit.register(self.kill)
        if wait:
            self.wait_log(wait, count=before + 1)
        return self

    def stop(self, expect=0, timeout=30):
        if self.proc is None:
            return expect
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("%s did not stop:\n%s"
                                     % (self.command, self.log_text()))
        code = self.proc.returncode
        self.log.close()
        if code == 99:
            raise AssertionError("valgrind found errors:\n" + self.log_text())
        eq(code, expect, "exit status; log:\n" + self.log_text())
        self.proc = None
        return code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, needle, timeout=10, count=None):
        """Waits until needle has been logged (count times, if given)."""
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            text = self.log_text()
            if (text.count(needle) >= count) if count else needle in text:
                return
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError("%r not logged by %s:\n%s"
                             % (needle, self.command, self.log_text()))


def Daemon(pg, redis, tables, **kw):
    return Proc("run", pg, redis, tables, **kw)


def Apply(pg, redis, tables, **kw):
    return Proc("apply", pg, redis, tables, **kw)
