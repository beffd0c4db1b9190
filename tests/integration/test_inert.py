#!/usr/bin/env python3
"""Hostile bytes stay inert, and secrets stay secret.

Row values, payloads and messages on the channel are chosen by whoever can
write a row or PUBLISH: escape sequences and forged newlines in them must
reach neither the operator's terminal (`pginval tail`) nor the log. Errors
about a malformed conninfo or Redis URL must not print the password in it,
`pginval tail` takes its Redis password from a file or the environment
rather than its command line, and no other process of the daemon's user
can read its memory or environment.

    python3 tests/integration/test_inert.py [-v] [name-substring ...]
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import pginval_proc  # noqa: E402
from pginval_proc import BIN, SLOW, msgs, run_bin, wait_for  # noqa: E402
from runner import eq  # noqa: E402
from servers import Redis  # noqa: E402

PG = None
REDIS = None

# What an attacker puts in a row value or a payload: a forged log line
# (with a journald priority), a window title (OSC 0, ended by BEL), a
# clipboard write (OSC 52), a screen clear, and CSI as a C1 control.
HOSTILE = ("42\n<3>fake line\r\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07"
           "\x1b[2J\x9b31m\x7f")
# The same, as pginval shows it.
HOSTILE_SHOWN = ("42\\n<3>fake line\\r\\x1b]0;pwned\\x07\\x1b]52;c;cHduZWQ="
                 "\\x07\\x1b[2J\\u009b31m\\x7f")


def sql(text):
    return PG.psql(text)


def sql_literal(s):
    """s as a PostgreSQL E'' literal, every character spelled out."""
    return "E'" + "".join("\\x%02x" % ord(c) if ord(c) < 0x80 and
                          not c.isalnum() else
                          ("\\u%04x" % ord(c) if ord(c) >= 0x80 else c)
                          for c in s) + "'"


def inert(data, what):
    """Asserts that data (bytes) is UTF-8 with no control character but
    newline: nothing a terminal would act on, no way to start a line
    other than at a real newline."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AssertionError("%s is not UTF-8 (%s): %r" % (what, e, data))
    bad = sorted({"U+%04X" % ord(c) for c in text
                  if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f})
    assert not bad, "%s holds control characters %s:\n%r" % (what, bad, text)
    return text


# -- tests --------------------------------------------------------------------

def setup():
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    sql("CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
        "SELECT pginval.watch('users', ARRAY['id', 'email']);")


def test_log_lines_are_escaped():
    """A junk NOTIFY payload is logged: with its newline it forged a line,
    with a "<3>" a journald priority, with ESC it drove the terminal of
    whoever read the log."""
    sub = REDIS.subscribe("pginval")
    d = pginval_proc.Daemon(PG, REDIS)
    # Make the daemon believe stderr is the journal, as under systemd: the
    # log then has "<N>" priorities, and a forged "<3>" line would count.
    open(d.logfile, "wb").close()
    st = os.stat(d.logfile)
    d.env = {"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)}
    d.start(sub)
    try:
        sql("SELECT pg_notify('pginval', %s)" % sql_literal("junk " +
                                                            HOSTILE))
        d.wait_log("fake line")
    finally:
        d.stop()
    with open(d.logfile, "rb") as f:
        text = inert(f.read(), "the log")
    lines = text.splitlines()
    for line in lines:
        assert re.match(r"<[3-7]>\S", line), "not a log line: %r" % line
        assert not line.startswith("<3>fake"), "a forged line: %r" % line
    shown = [line for line in lines if "fake line" in line]
    eq(len(shown), 1, "the payload is on one line")
    assert shown[0].startswith("<4>"), shown[0]
    assert "junk " + HOSTILE_SHOWN in shown[0], shown[0]


class Tail:
    """`pginval tail` with its output in a pipe, as a script or a pager
    would read it."""

    def __init__(self, *args, env=None):
        fd, self.errfile = tempfile.mkstemp(prefix="pginval-tail-")
        with os.fdopen(fd, "wb") as err:
            self.proc = subprocess.Popen(
                [BIN, "tail"] + list(args), stdout=subprocess.PIPE,
                stderr=err, env=dict(os.environ, **(env or {})))

    def stderr(self):
        with open(self.errfile, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        """SIGINT; returns what it printed, as bytes."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out = self.proc.communicate(timeout=10 * SLOW)[0]
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out = self.proc.communicate()[0]
        os.unlink(self.errfile)
        return out


def test_check_connect_escapes_what_it_prints():
    """check --connect quotes table names and server messages in its
    problem lines: a control character in them reaches the terminal
    escaped."""
    d = tempfile.mkdtemp(prefix="pginval-inert-")
    conf = os.path.join(d, "c.conf")
    with open(conf, "wb") as f:
        f.write(("[postgres]\nconninfo = %s\n[redis]\nurl = %s/0\n"
                 "[table public.x\x1b]0;pwned\x07y]\nkeys = x:{id}\n"
                 % (PG.conninfo, REDIS.url)).encode())
    r = subprocess.run([BIN, "check", "--connect", "-c", conf],
                       capture_output=True, timeout=60)
    shutil.rmtree(d, True)
    out = inert(r.stdout, "check --connect output")
    assert "problem: [table public.x\\x1b] (line 5) is not watched" in out, out
    eq(r.returncode, 1, out)


def subscribers(redis, password=None):
    with redis.connect() as c:
        if password is not None:
            c.command("AUTH", password)
        return c.command("PUBSUB", "NUMSUB", "pginval")[1]


def wait_subscribers(redis, base, tails, password=None):
    """Until the channel has base subscribers more, one per tail."""
    def count():
        return subscribers(redis, password)
    try:
        wait_for(lambda: count() >= base + len(tails) or
                 any(t.proc.poll() is not None for t in tails),
                 "tail to subscribe")
    except AssertionError:
        raise AssertionError("tail did not subscribe:\n" + "\n".join(
            t.stderr() for t in tails))
    assert all(t.proc.poll() is None for t in tails), \
        "tail exited:\n" + "\n".join(t.stderr() for t in tails)


def test_tail_escapes_what_it_prints():
    sub = REDIS.subscribe("pginval")
    with pginval_proc.running(PG, REDIS, sub) as d:
        base = subscribers(REDIS)
        tails = [Tail("-c", d.config), Tail("-c", d.config, "--json")]
        try:
            wait_subscribers(REDIS, base, tails)
            sql("INSERT INTO users VALUES (1, %s, 'n')" % sql_literal(HOSTILE))
            msgs(sub, 1)
            # Straight onto the channel: raw control bytes inside and
            # outside JSON strings, bytes that are not UTF-8, and text that
            # is not JSON at all.
            raw = [b'{"v":1,"op":"insert\x1b[2J","table":"t\x1b]0;x\x07",'
                   b'"keys":["k\xc2\x9b2m"],\n"reason":"r\x07"}',
                   b'{"v":1,"op":"reset","table":null,'
                   b'"keys":["\xff\x1b\x9b1m"]}',
                   b'not json \x1b]52;c;eA==\x07']
            for payload in raw:
                REDIS.command("PUBLISH", "pginval", payload)
            for payload in raw:
                eq(sub.get(5), payload)
            sql("DELETE FROM users")
            msgs(sub, 1)
            time.sleep(0.3 * SLOW)
        finally:
            human, as_json = (t.stop() for t in tails)
    text = inert(human, "tail's output")
    assert "insert   public.users             user:1 user:email:" + \
        HOSTILE_SHOWN in text, text
    for shown in ("insert\\x1b[2J", "t\\x1b]0;x\\x07", "k\\u009b2m",
                  "(r\\x07)", "reset    (all tables)             "
                  "\\xff\\x1b\\x9b1m",
                  "(not JSON) not json \\x1b]52;c;eA==\\x07"):
        assert shown in text, "%r not in:\n%s" % (shown, text)

    # --json: the same messages, still JSON that says the same thing.
    lines = inert(as_json, "tail --json's output").splitlines()
    eq(len(lines), 5, "one line per message:\n%s" % "\n".join(lines))
    row = json.loads(lines[0])
    eq(row["keys"], ["user:1", "user:email:" + HOSTILE])
    eq(row["new"]["email"], HOSTILE)
    foreign = json.loads(lines[1])
    eq((foreign["op"], foreign["table"], foreign["keys"], foreign["reason"]),
       ("insert\x1b[2J", "t\x1b]0;x\x07", ["k\x9b2m"], "r\x07"))
    # Not UTF-8, so not JSON: shown escaped, like text that is not JSON.
    assert lines[2].startswith('(not JSON) {"v":1,"op":"reset"') and \
        "\\xff\\x1b\\x9b1m" in lines[2], lines[2]
    assert lines[3].startswith("(not JSON) not json \\x1b"), lines[3]


# -- secrets ------------------------------------------------------------------

SECRET = "S3cr3tPw"


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def bad_configs():
    """(name, config text, the message that must name the problem)."""
    pg = PG.conninfo
    good_redis = "[redis]\nurl = %s/0\n" % REDIS.url
    return [
        ("conninfo URI with a bad %XX", "[postgres]\nconninfo = "
         "postgresql://u:%s%%zz@127.0.0.1/db\n" % SECRET + good_redis,
         ":2: conninfo in [postgres] is not a valid libpq connection "
         "string: an invalid %XX escape"),
        ("conninfo password cut by a space", "[postgres]\nconninfo = %s "
         "password=%s x%s\n" % (pg, SECRET, SECRET) + good_redis,
         ":2: conninfo in [postgres] is not a valid libpq connection "
         "string: a word without \"=\""),
        ("conninfo URI with a '/' in the password", "[postgres]\nconninfo "
         "= postgresql://u:%s/x@127.0.0.1/db\n" % SECRET + good_redis,
         ":2: conninfo in [postgres]: the URI has an '@' after its first "
         "'/'"),
        ("[apply] conninfo", "[postgres]\nconninfo = %s\n" % pg + good_redis
         + "[apply]\nconninfo = host=x '%s\n" % SECRET,
         ":6: conninfo in [apply] is not a valid libpq connection string: "
         "a word without \"=\""),
        ("redis URL with a '/' in the password", "[postgres]\nconninfo = "
         "%s\n[redis]\nurl = redis://:My%s/x@127.0.0.1/0\n" % (pg, SECRET),
         ":4: [redis] url: an '@' after the first '/'"),
        ("redis URL, bad database", "[postgres]\nconninfo = %s\n[redis]\n"
         "url = redis://127.0.0.1/%s\n" % (pg, SECRET),
         ":4: [redis] url: the database number after the '/' is not a "
         "whole number"),
        ("[target] url", "[postgres]\nconninfo = %s\n" % pg + good_redis +
         "[target eu]\nurl = redis://u:%s/x@127.0.0.1/0\n" % SECRET,
         ":6: [target eu] url: an '@' after the first '/'"),
        ("a password line without '='", "[postgres]\nconninfo = %s\n" % pg
         + "password %s:x\n" % SECRET + good_redis,
         ":3: unknown setting \"password\"... in [postgres]"),
    ]


def test_check_never_prints_a_secret():
    tmp = tempfile.mkdtemp(prefix="pginval-test-")
    try:
        for name, text, want in bad_configs():
            path = write(os.path.join(tmp, "bad.conf"), text)
            r = run_bin("check", "-c", path)
            out = r.stdout + r.stderr
            eq(r.returncode, 1, "%s: exit status; output:\n%s" % (name, out))
            assert SECRET not in out, "%s: the secret leaked:\n%s" % (name,
                                                                     out)
            assert path + want in out, "%s: %r not in:\n%s" % (name, want,
                                                               out)
    finally:
        shutil.rmtree(tmp, True)


def test_reload_never_logs_a_secret():
    sub = REDIS.subscribe("pginval")
    with pginval_proc.running(PG, REDIS, sub) as d:
        good = open(d.config).read()
        for name, text, want in bad_configs():
            write(d.config, text)
            mark = len(d.log_text())
            d.signal(signal.SIGHUP)
            wait_for(lambda: "keeping the running configuration" in
                     d.log_text()[mark:], "%s: the reload to fail" % name)
            log = d.log_text()[mark:]
            assert SECRET not in log, "%s: the secret leaked:\n%s" % (name,
                                                                     log)
            assert "reload: " + d.config + want in log, \
                "%s: %r not in:\n%s" % (name, want, log)
        write(d.config, good)
    assert SECRET not in d.log_text()


def test_tail_password_from_file_or_environment():
    """With requirepass, tail authenticates with the password from
    --password-file, PGINVAL_REDIS_PASSWORD or the configuration's
    password_file, none of which shows in ps."""
    with Redis() as redis:
        redis.command("CONFIG", "SET", "requirepass", SECRET)
        tmp = tempfile.mkdtemp(prefix="pginval-test-")
        pwfile = write(os.path.join(tmp, "redis.pw"), SECRET + "\n")
        config = write(os.path.join(tmp, "pginval.conf"),
                       "[postgres]\nconninfo = host=x\n[redis]\n"
                       "url = %s/0\npassword_file = %s\n" % (redis.url,
                                                             pwfile))
        url = redis.url + "/0"
        base = subscribers(redis, SECRET)
        tails = {
            "--password-file": Tail("--url", url, "--password-file", pwfile,
                                    "--json"),
            "environment": Tail("--url", url, "--json",
                                env={"PGINVAL_REDIS_PASSWORD": SECRET}),
            "config and --url": Tail("-c", config, "--url", url, "--json"),
        }
        try:
            wait_subscribers(redis, base, list(tails.values()), SECRET)
            for t in tails.values():
                with open("/proc/%d/cmdline" % t.proc.pid, "rb") as f:
                    assert SECRET.encode() not in f.read()
            with redis.connect() as c:
                c.command("AUTH", SECRET)
                c.command("PUBLISH", "pginval", '{"v":1,"op":"reset",'
                          '"table":null,"keys":[]}')
            time.sleep(0.3 * SLOW)
        finally:
            out = {name: t.stop() for name, t in tails.items()}
            shutil.rmtree(tmp, True)
        for name, text in out.items():
            eq(len(text.splitlines()), 1, name + ": the message arrived")
    # A missing file is said so, with the flag's name.
    r = run_bin("tail", "--url", REDIS.url, "--password-file",
                "/nonexistent/redis.pw")
    eq(r.returncode, 1, r.stderr)
    assert "pginval tail: --password-file: cannot read " \
        "/nonexistent/redis.pw" in r.stderr, r.stderr


def as_nobody(argv):
    return ["setpriv", "--reuid=nobody", "--regid=nogroup",
            "--clear-groups", "--"] + argv


def test_no_other_process_reads_the_daemon():
    """Non-dumpable: a process of the same user cannot read the daemon's
    environment (which holds PGINVAL_REDIS_PASSWORD) nor its memory."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        print("SKIP test_no_other_process_reads_the_daemon: needs root and "
              "setpriv")
        return
    with Redis() as redis:
        redis.command("CONFIG", "SET", "requirepass", SECRET)
        tmp = tempfile.mkdtemp(prefix="pginval-test-")
        os.chmod(tmp, 0o755)
        config = os.path.join(tmp, "pginval.conf")
        pginval_proc.write_config(config, PG, redis,
                                  pginval_proc.DEFAULT_TABLES)
        os.chmod(config, 0o644)
        log = open(os.path.join(tmp, "pginval.log"), "wb+")
        env = dict(os.environ, PGINVAL_REDIS_PASSWORD=SECRET)
        # The control: another process of that user, dumpable as usual.
        other = subprocess.Popen(as_nobody(["sleep", "60"]), env=env)
        daemon = subprocess.Popen(as_nobody([BIN, "run", "-c", config]),
                                  env=env, stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=log)
        try:
            def log_text():
                log.seek(0)
                return log.read().decode("utf-8", "replace")
            wait_for(lambda: "redis: connected to" in log_text(),
                     "the daemon to connect to Redis")

            def read_as_nobody(pid, what):
                return subprocess.run(
                    as_nobody(["cat", "/proc/%d/%s" % (pid, what)]),
                    capture_output=True, timeout=30)
            r = read_as_nobody(other.pid, "environ")
            eq(r.returncode, 0, "the control is readable: %r" % r.stderr)
            assert SECRET.encode() in r.stdout
            for what in ("environ", "mem"):
                r = read_as_nobody(daemon.pid, what)
                assert r.returncode != 0 and b"Permission denied" in \
                    r.stderr, "/proc/PID/%s of the daemon can be opened by " \
                    "its own user: %r" % (what, r.stderr)
                assert SECRET.encode() not in r.stdout
            eq(daemon.poll(), None, "the daemon runs:\n" + log_text())
        finally:
            for p in (daemon, other):
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(timeout=15 * SLOW)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
            log.close()
            shutil.rmtree(tmp, True)


if __name__ == "__main__":
    sys.exit(pginval_proc.main(globals()))
