"""Running the pginval binary in tests, as a user would: a config file,
`pginval run`, a log file, signals; plus helpers to read messages.

PGINVAL_WRAPPER="valgrind ..." runs every daemon under a wrapper; a wrapper
exit status of 99 (valgrind's --error-exitcode) fails the test.
"""

import atexit
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import re
import tempfile
import time
import urllib.error
import urllib.request

from runner import eq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "pginval")
WRAPPER = shlex.split(os.environ.get("PGINVAL_WRAPPER", ""))
SLOW = 10 if WRAPPER else 1      # valgrind runs the daemon ~20x slower

DEFAULT_TABLES = {"public.users": "user:{id}, user:email:{email}"}


def write_config(path, pg, redis, tables, extra=None, targets=None,
                 redis_url=None):
    """tables: {"public.users": "user:{id}"} or {"public.users":
    {"keys": ..., "refresh": ..., "ttl": ...}}; extra: {"apply.reset":
    "flush", ...}; targets: {"name": "redis://..."} or {"name": {"url":
    ..., "cluster": "on", ...}}."""
    lines = ["# written by the test suite", "[postgres]",
             "conninfo = " + pg.conninfo + " application_name=pginval",
             "[redis]", "url = " + (redis_url or redis.url + "/0")]
    sections = {"redis": [], "daemon": ["log_level = debug",
                                        "reconnect_max = 1"]}
    for key, value in (extra or {}).items():
        section, name = key.split(".")
        sections.setdefault(section, []).append("%s = %s" % (name, value))
    lines += sections.pop("redis")
    for section, body in sections.items():
        lines += ["[%s]" % section] + body
    for table, spec in tables.items():
        if isinstance(spec, str):
            spec = {"keys": spec}
        lines.append("[table %s]" % table)
        lines += ["%s = %s" % kv for kv in spec.items()]
    for name, spec in (targets or {}).items():
        if isinstance(spec, str):
            spec = {"url": spec}
        lines += ["[target %s]" % name]
        lines += ["%s = %s" % kv for kv in spec.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class Daemon:
    """One `pginval run` process with its own config file and log."""

    def __init__(self, pg, redis, tables=None, extra=None, redis_url=None,
                 env=None):
        self.pg, self.redis = pg, redis
        self.dir = tempfile.mkdtemp(prefix="pginval-test-")
        atexit.register(shutil.rmtree, self.dir, True)
        self.config = os.path.join(self.dir, "pginval.conf")
        self.logfile = os.path.join(self.dir, "pginval.log")
        self.env = env
        self.write_config(tables, extra, redis_url)
        self.proc = None

    def write_config(self, tables=None, extra=None, redis_url=None):
        write_config(self.config, self.pg, self.redis,
                     DEFAULT_TABLES if tables is None else tables, extra,
                     redis_url=redis_url)

    def start(self, sub=None):
        """Start; with a subscriber, wait for the start reset and return it."""
        self.log = open(self.logfile, "ab")
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen(WRAPPER + [BIN, "run", "-c", self.config],
                                     stdin=subprocess.DEVNULL, env=env,
                                     stdout=self.log, stderr=self.log)
        atexit.register(self.kill)   # no daemon outlives a failed test
        if sub is None:
            return None
        first = next_msg(sub, 10)
        assert first is not None, "no start message:\n" + self.log_text()
        eq(first["op"], "reset", "first message")
        eq(first["seq"], 1, "first seq")
        eq(first["table"], None, "first reset is global")
        return first

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, expect=0, timeout=30):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            code = self.proc.returncode if self.proc else expect
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("daemon did not stop:\n" + self.log_text())
        self.log.close()
        if code == 99:
            raise AssertionError("valgrind found errors:\n" + self.log_text())
        eq(code, expect, "exit status; log:\n" + self.log_text())
        return code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        with open(self.logfile, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=10):
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            if needle in self.log_text():
                return
            time.sleep(0.05)
        raise AssertionError("%r not logged:\n%s" % (needle, self.log_text()))


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pginval-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.seen = []

    def wait(self, field, timeout=10):
        """The next datagram with a line equal to `field`, or matching it
        when it is a compiled regular expression."""
        match = field.fullmatch if hasattr(field, "fullmatch") else \
            (lambda line: line == field)
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            self.seen.append(msg)
            if any(match(line) for line in msg.split("\n")):
                return msg
        raise AssertionError("%r not received; got %r" % (field, self.seen))

    def close(self):
        self.sock.close()
        subprocess.run(["rm", "-rf", self.dir])


@contextlib.contextmanager
def running(pg, redis, sub=None, **kw):
    """A started Daemon, stopped (and its exit status checked) afterwards;
    its log is printed if the block fails."""
    d = Daemon(pg, redis, **kw)
    try:
        d.start(sub)
        yield d
    except BaseException:
        d.kill()
        print("--- daemon log ---\n" + d.log_text())
        raise
    d.stop()


def next_msg(sub, timeout=5):
    raw = sub.get(timeout * SLOW)
    return None if raw is None else json.loads(raw)


def collect(sub, n, items, what, timeout=5):
    """items(m) for each message m, read until n items have arrived."""
    out = []
    deadline = time.monotonic() + timeout * SLOW
    while len(out) < n:
        m = next_msg(sub, max(0.01, deadline - time.monotonic()) / SLOW)
        if m is None:
            raise AssertionError("got %d of %d %s: %r" % (len(out), n, what,
                                                         out))
        out += items(m)
    return out


def msgs(sub, n, timeout=5):
    return collect(sub, n, lambda m: [m], "messages", timeout)


def rows_of(m):
    """The row changes a message is about, as {"op", "table", "old"?,
    "new"?} dicts: one for a single change, several when changes of one
    table and op were merged (their images then come in "rows")."""
    if m["op"] not in ("insert", "update", "delete"):
        return []
    images = m["rows"] if "rows" in m else \
        [{k: m[k] for k in ("old", "new") if k in m}]
    return [dict(img, op=m["op"], table=m["table"], msg=m) for img in images]


def changes(sub, n, timeout=5):
    """Row changes, read until n have arrived (see rows_of)."""
    return collect(sub, n, rows_of, "changes", timeout)


def quiet(sub, timeout=0.3):
    """Asserts that nothing arrives within timeout. Alone, this passes when
    the sender is merely slow: use it only after a positive signal, or use
    settle()."""
    m = sub.get(timeout)
    assert m is None, "unexpected message: %r" % m


def settle(sub, pg, mode="notify", timeout=10):
    """The messages that arrive before a sentinel: a row inserted into a
    table of its own, watched in ``mode`` on channel pginval, whose message
    the relay publishes after everything it took in earlier (by the same
    path). ``eq(settle(sub, PG), [])`` checks that nothing more came,
    without a pause that passes when the relay is merely slow."""
    table = "pginval_sentinel_" + mode
    pg.psql("CREATE TABLE IF NOT EXISTS %s (id serial PRIMARY KEY);"
            "SELECT pginval.watch('%s', NULL, 'pginval', '%s') "
            "WHERE NOT EXISTS (SELECT FROM pginval.watched_tables "
            "WHERE table_name = 'public.%s');"
            "INSERT INTO %s DEFAULT VALUES;" % (table, table, mode, table,
                                                table))
    before = []
    deadline = time.monotonic() + timeout * SLOW
    while True:
        m = next_msg(sub, max(0.01, deadline - time.monotonic()) / SLOW)
        assert m is not None, "no sentinel; before it: %r" % before
        if m.get("table") == "public." + table:
            return before
        before.append(m)


def strip(m):
    """The parts of a message that a test can predict."""
    return {k: v for k, v in m.items() if k not in ("v", "seq", "epoch", "ts")}


def check_envelope(ms, epoch=None):
    """v, seq one step at a time, one epoch, plausible ts."""
    now = time.time() * 1e6
    for prev, m in zip([None] + ms, ms):
        eq(m["v"], 1, "v")
        assert isinstance(m["keys"], list)
        assert abs(now - m["ts"]) < 600e6, "ts %r is not now" % m["ts"]
        if prev is not None:
            eq(m["seq"], prev["seq"] + 1, "seq steps by one")
            eq(m["epoch"], prev["epoch"], "same epoch")
    if epoch is not None:
        eq(ms[0]["epoch"], epoch, "epoch")


@contextlib.contextmanager
def servers(module_globals, pg_settings=None):
    """A throwaway PostgreSQL and Redis for a whole test file, published as
    its PG and REDIS globals."""
    from servers import Postgres, Redis

    with Postgres(settings=pg_settings) as pg, Redis() as redis:
        module_globals["PG"], module_globals["REDIS"] = pg, redis
        yield


TEMPLATE = "pginval_template"
_COPIES = iter(range(1, 1000000))


def template_database(pg):
    """Creates the database that a file's setup fills and fresh_database
    copies, and points pg at it."""
    pg.psql('CREATE DATABASE "%s"' % TEMPLATE, db="postgres")
    pg.dbname = TEMPLATE


def fresh_database(pg):
    """Points pg (and every Daemon made after) at a new copy of the
    template: each test starts from what setup made, whatever the tests
    before it did. The previous copy is dropped."""
    old = pg.dbname
    name = "test_%d" % next(_COPIES)
    pg.psql('CREATE DATABASE "%s" TEMPLATE "%s"' % (name, TEMPLATE),
            db="postgres")
    pg.dbname = name
    if old != TEMPLATE:
        pg.psql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % old,
                db="postgres")


def main(module_globals, pg_settings=None):
    """The main of a test file that runs against one PostgreSQL and Redis."""
    import runner
    import sys

    return runner.run(module_globals, sys.argv[1:],
                      around=lambda: servers(module_globals, pg_settings))


def run_bin(*args, **kw):
    """Runs the binary to completion; returns the CompletedProcess."""
    return subprocess.run([BIN] + list(args), capture_output=True, text=True,
                          timeout=60, **kw)


def wait_for(fn, what, timeout=10):
    """fn()'s first true value, tried until timeout (scaled by SLOW)."""
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


def http_get(port, path):
    """(status, body) of a GET on a metrics listener."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                    timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text, name):
    """The value of the sample name (with its labels) in /metrics text."""
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    assert m, "%s not in metrics:\n%s" % (name, text)
    return float(m.group(1))


_SENTINELS = iter(range(1, 1 << 62))


def sentinel_sync(pg, sub, timeout=20):
    """The messages that arrive before a new row of the table "sentinel"
    (id int PRIMARY KEY), which the test file watches in wal mode on the
    channel: the stream carries it after everything committed earlier."""
    n = next(_SENTINELS)
    pg.psql("INSERT INTO sentinel VALUES (%d)" % n)
    out = []
    deadline = time.monotonic() + timeout * SLOW
    while True:
        m = next_msg(sub, max(0.01, deadline - time.monotonic()) / SLOW)
        assert m is not None, "no sentinel %d; before it: %r" % (n, out[-5:])
        # Its key is "sentinel:N" where a test's rules say so; without
        # row images ([redis] rows = off) only the key tells.
        if m.get("table") == "public.sentinel" and m["op"] == "insert" and \
                (int(m["new"]["id"]) == n if "new" in m else
                 m["keys"] == ["sentinel:%d" % n]):
            return out
        out.append(m)


def peak_rss_kb(pid):
    """A live process's peak RSS (VmHWM), or None when it runs under a
    wrapper (valgrind) or AddressSanitizer, whose own memory would count."""
    with open("/proc/%d/maps" % pid) as f:
        if WRAPPER or "libasan" in f.read():
            return None
    with open("/proc/%d/status" % pid) as f:
        return int(next(line.split()[1] for line in f
                        if line.startswith("VmHWM:")))


def signed(pg, prefix):
    """A payload as pginval's triggers would send it: ``prefix`` (what
    comes before the closing brace) with the authenticator under the key
    in ``pg``'s pginval.secret."""
    ik, ok = (bytes.fromhex(h) for h in pg.psql(
        "SELECT encode(ik, 'hex'), encode(ok, 'hex') FROM pginval.secret")
        .strip().split("|"))
    inner = hashlib.sha256(ik + prefix.encode() + b"}").digest()
    return prefix + ',"m":"%s"}' % hashlib.sha256(ok + inner).hexdigest()

