#!/usr/bin/env python3
"""`pginval apply` against real servers: invalidation with markers, targets,
sweeps for truncate and reset, flush, the gap rules, refresh instead of
delete (and its fallbacks), replays from the stream instead of resets,
metrics and health, a dead target link,
SIGTERM and SIGHUP, the systemd notify protocol over a socket of the
test's own, and `pginval check` on apply's settings.

    python3 tests/integration/test_apply.py [-v] [name-substring ...]
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "consistency"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import harness  # noqa: E402
import runner  # noqa: E402
from pginval_proc import (NotifySocket, SLOW, http_get, metric,  # noqa: E402
                          wait_for)
from proxy import Proxy  # noqa: E402
from runner import eq  # noqa: E402
from servers import Postgres, Redis, free_port  # noqa: E402

PG = REDIS = None
TABLES = {"public.users": "user:{id}, user:email:{email}",
          "public.orders": "order:{id}, orders:customer:{customer_id}"}
REFRESH = {
    "public.users": {"keys": "user:{id}, user:email:{email}",
                     "refresh": "SELECT name FROM users WHERE id = $1::int",
                     "ttl": "2s"},
    "public.orders": {"keys": "order:{id}, orders:customer:{customer_id}",
                      "refresh": "SELECT (1 / (total - total))::text FROM "
                                 "orders WHERE id = $1::int"},
}


def rc(*args, redis=None):
    return (redis or REDIS).command(*args)


def marker(key):
    return "pginval:m:{%s}" % key


class Stack:
    """A daemon and an apply for one test; both stopped (exit 0) after."""

    def __init__(self, tables=TABLES, daemon=True, daemon_extra=None,
                 **apply_kw):
        self.d = harness.Daemon(PG, REDIS, TABLES, extra=daemon_extra) \
            if daemon else None
        self.a = harness.Apply(PG, REDIS, tables, **apply_kw)

    def __enter__(self):
        if self.d:
            self.d.start()
        try:
            self.a.start()
            self.a.wait_log("reset of every table")
            wait_for(lambda: "swept keys matching" in self.a.log_text() or
                     "FLUSHDB" in self.a.log_text(), "the start reset")
        except AssertionError:
            self.__exit__(AssertionError)
            raise
        time.sleep(0.1)
        return self

    def __exit__(self, exc, *rest):
        if exc is not None:
            for p in (self.a, self.d):
                if p is not None:
                    print("--- %s log ---\n%s" % (p.command, p.log_text()))
                    p.kill()
            return False
        self.a.stop()
        if self.d:
            self.d.stop()
        return False


def sql(text):
    return PG.psql(text)


# -- tests --------------------------------------------------------------------

def setup():
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    sql("CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
        "SELECT pginval.watch('users', ARRAY['id', 'email']);"
        "CREATE TABLE orders (id int PRIMARY KEY, customer_id int, "
        "total numeric);"
        "SELECT pginval.watch('orders', ARRAY['id', 'customer_id']);")


def before_each():
    rc("FLUSHALL")        # no test counts or sweeps another's keys


def test_check_accepts_apply_settings():
    d = harness.Apply(PG, REDIS, REFRESH, extra={
        "apply.reset": "flush", "apply.marker_ttl": "30s",
        "apply.marker_margin": "10ms", "apply.conninfo": "host=replica",
        "apply.refresh_timeout": "2s", "apply.max_queue": "1000"},
        targets={"eu": "redis://127.0.0.1:1/2", "us": "unix:/run/r.sock"})
    r = subprocess.run([harness.BIN, "check", "-c", d.config],
                       capture_output=True, text=True)
    eq(r.returncode, 0, r.stderr)


def test_check_reports_bad_apply_settings():
    path = os.path.join(harness.Apply(PG, REDIS, {}).dir, "bad.conf")
    with open(path, "w") as f:
        f.write("[postgres]\nconninfo = dbname=x\n"          # 1-2
                "[apply]\nreset = everything\n"               # 3-4
                "[table public.t]\nkeys = t:{id}\nttl = 5s\n"  # 5-7
                "[table public.u]\nrefresh = SELECT 1\n"      # 8-9
                "[target]\nurl = redis://h\n"                 # 10-11
                "[target eu]\nurl = rediss://h\nport = 1\n")  # 12-14
    r = subprocess.run([harness.BIN, "check", "-c", path],
                       capture_output=True, text=True)
    eq(r.returncode, 1, "exit status")
    for want in (':4: reset in [apply]: "everything" is not "patterns" or '
                 '"flush"',
                 ":7: [table public.t] ttl is for refresh, which is not set",
                 ":9: [table public.u] refresh: the query must use $1",
                 ":8: [table public.u] has no keys line",
                 ":11: [target] needs a name",
                 ":13: [target eu] url: expected redis://",
                 ':14: unknown setting "port" in [target eu]'):
        assert path + want in r.stderr, "%r not in:\n%s" % (want, r.stderr)


def test_deletes_keys_and_leaves_markers():
    with Stack() as s:
        for k in ("user:1", "user:email:a@x.io", "user:2"):
            rc("SET", k, "cached")
        t0 = time.time() * 1e6
        sql("INSERT INTO users VALUES (1, 'a@x.io', 'ann')")
        wait_for(lambda: rc("EXISTS", "user:1") == 0, "user:1 deleted")
        eq(rc("EXISTS", "user:email:a@x.io"), 0, "email key deleted")
        eq(rc("GET", "user:2"), b"cached", "other keys stay")
        m = int(rc("GET", marker("user:1")))
        assert t0 < m < time.time() * 1e6 + 1e6, "marker version %d" % m
        ttl = rc("PTTL", marker("user:1"))
        assert 8000 < ttl <= 10000, "marker ttl %d (marker_ttl = 10s)" % ttl
        eq(rc("EXISTS", marker("user:email:a@x.io")), 1, "both marked")


def evalsha_calls():
    stats = rc("INFO", "commandstats").decode()
    m = re.search(r"cmdstat_evalsha:calls=(\d+)", stats)
    return int(m.group(1)) if m else 0


def test_a_statement_s_keys_go_in_few_script_calls():
    """600 rows in one UPDATE: every key deleted and marked, in a few
    EVALSHAs of at most 256 keys (not one per key), and a marker from
    the future is not moved back."""
    n = 600
    sql("INSERT INTO users SELECT g, 'u' || g || '@x.io', 'u' "
        "FROM generate_series(1001, 1000 + %d) g" % n)
    with Stack(tables={"public.users": "user:{id}"}):
        for i in range(1001, 1001 + n):
            rc("SET", "user:%d" % i, "cached")
        future = int(time.time() * 1e6) + 3600 * 1000000
        rc("SET", marker("user:1001"), str(future), "PX", 60000)
        rc("CONFIG", "RESETSTAT")
        t0 = time.time() * 1e6
        sql("UPDATE users SET name = 'x' WHERE id > 1000")
        keys = ["user:%d" % i for i in range(1001, 1001 + n)]
        wait_for(lambda: rc("EXISTS", *keys) == 0, "%d keys deleted" % n)
        eq(int(rc("GET", marker("user:1001"))), future, "moved back")
        for i in range(1002, 1001 + n):
            m = int(rc("GET", marker("user:%d" % i)))
            assert t0 < m < time.time() * 1e6 + 1e6, "version %d" % m
            assert 0 < rc("PTTL", marker("user:%d" % i)) <= 10000
        calls = evalsha_calls()
        assert 3 <= calls <= 60, "%d EVALSHAs for %d keys" % (calls, n)
    sql("DELETE FROM users WHERE id > 1000")


def test_script_flushed_or_refused_still_deletes():
    """SCRIPT FLUSH: NOSCRIPT, sent again as EVAL (markers set). A user
    that may not run scripts: plain UNLINKs, and the refusal logged."""
    with Stack(tables={"public.users": "user:{id}"}) as s:
        rc("SCRIPT", "FLUSH")
        rc("SET", "user:31", "cached")
        sql("INSERT INTO users VALUES (31, 'f@x.io', 'f')")
        wait_for(lambda: rc("EXISTS", "user:31") == 0, "user:31 deleted")
        eq(rc("EXISTS", marker("user:31")), 1, "marked through EVAL")
    rc("ACL", "SETUSER", "noscript", "on", ">pw", "~*", "&*", "+@all",
       "-eval", "-evalsha", "-script")
    try:
        url = "redis://noscript:pw@127.0.0.1:%d/0" % REDIS.port
        with Stack(tables={"public.users": "user:{id}"},
                   targets={"t": url}) as s:
            rc("SET", "user:32", "cached")
            sql("INSERT INTO users VALUES (32, 'g@x.io', 'g')")
            wait_for(lambda: rc("EXISTS", "user:32") == 0, "user:32 deleted")
            eq(rc("EXISTS", marker("user:32")), 0, "no script, no marker")
            s.a.wait_log("pginval_invalidate (falling back to UNLINK) failed")
            s.a.wait_log("scripts are refused; invalidating with plain "
                         "UNLINKs")
            rc("SET", "user:33", "cached")
            sql("INSERT INTO users VALUES (33, 'h@x.io', 'h')")
            wait_for(lambda: rc("EXISTS", "user:33") == 0, "user:33 deleted")
            eq(s.a.log_text().count("falling back to UNLINK"), 1,
               "refusals logged (the second goes straight to UNLINK)")
    finally:
        rc("ACL", "DELUSER", "noscript")
        sql("DELETE FROM users WHERE id IN (31, 32, 33)")


def test_markers_off_deletes_with_plain_unlinks():
    with Stack(tables={"public.users": "user:{id}"},
               extra={"apply.markers": "off"}):
        rc("CONFIG", "RESETSTAT")
        for i in (41, 42, 43):
            rc("SET", "user:%d" % i, "cached")
        sql("INSERT INTO users SELECT g, g || '@x.io', 'm' "
            "FROM generate_series(41, 43) g")
        wait_for(lambda: rc("EXISTS", "user:41", "user:42", "user:43") == 0,
                 "keys deleted")
        eq([rc("EXISTS", marker("user:%d" % i)) for i in (41, 42, 43)],
           [0, 0, 0], "markers")
        eq(evalsha_calls(), 0, "EVALSHAs")
    sql("DELETE FROM users WHERE id BETWEEN 41 AND 43")


def test_daemon_with_rows_off_still_deletes():
    sub = REDIS.subscribe("pginval")
    with Stack(daemon_extra={"redis.rows": "off"}):
        for k in ("user:51", "user:email:r@x.io", "user:52"):
            rc("SET", k, "cached")
        sql("INSERT INTO users VALUES (51, 'r@x.io', 'ann')")
        wait_for(lambda: rc("EXISTS", "user:51", "user:email:r@x.io") == 0,
                 "keys deleted")
        eq(rc("GET", "user:52"), b"cached", "other keys stay")
        m = None
        while m is None or m["op"] == "reset":
            raw = sub.get(5 * SLOW)
            assert raw is not None, "no message on the channel"
            m = json.loads(raw)
        eq(m["keys"], ["user:51", "user:email:r@x.io"], "keys")
        eq(sorted(set(m) & {"old", "new", "rows"}), [], "no row images")
    sql("DELETE FROM users WHERE id = 51")


def test_targets_each_get_the_invalidations():
    with Redis() as eu, Redis() as us:
        targets = {"eu": eu.url + "/0", "us": us.url + "/3"}
        with Stack(targets=targets):
            for r in (eu, us):
                with r.connect() as c:
                    if r is us:
                        c.command("SELECT", 3)
                    c.command("SET", "user:5", "x")
                    c.command("SET", "keep", "x")
            rc("SET", "user:5", "channel redis")
            sql("INSERT INTO users VALUES (5, 'e@x.io', 'eve')")
            wait_for(lambda: eu.command("EXISTS", "user:5") == 0, "eu")
            with us.connect() as c:
                c.command("SELECT", 3)
                wait_for(lambda: c.command("EXISTS", "user:5") == 0, "us db 3")
                eq(c.command("GET", "keep"), b"x", "us keeps others")
            eq(rc("GET", "user:5"), b"channel redis",
               "the channel's Redis is not a target when targets are set")


def test_truncate_sweeps_the_table_patterns():
    with Stack() as s:
        with REDIS.connect() as c:
            for i in range(2500):
                c.send("SET", "user:%d" % i, "x")
            c.send("SET", "order:1", "x")
            c.send("SET", "unrelated:1", "x")
            for i in range(2502):
                c.read_reply()
        sql("TRUNCATE users")
        s.a.wait_log("truncate of public.users")
        wait_for(lambda: rc("DBSIZE") - len(rc("KEYS", "pginval:m:*")) == 2,
                 "2500 user keys swept")
        eq(rc("GET", "order:1"), b"x", "other tables' keys stay")
        eq(rc("GET", "unrelated:1"), b"x", "keys of no table stay")


def test_daemon_restart_resets_every_table():
    with Stack() as s:
        rc("SET", "user:9", "x")
        rc("SET", "orders:customer:9", "x")
        rc("SET", "unrelated:2", "x")
        s.d.stop()
        s.d.start()
        wait_for(lambda: rc("EXISTS", "user:9", "orders:customer:9") == 0,
                 "the daemon's start reset swept every table")
        eq(rc("GET", "unrelated:2"), b"x", "keys of no table stay")
        assert "reset of every table (reset: start" in s.a.log_text()


def test_reset_flush_empties_the_target():
    with Redis() as t:
        with Stack(targets={"cache": t.url + "/0"},
                   extra={"apply.reset": "flush"}) as s:
            t.command("SET", "unrelated", "x")
            s.d.stop()
            s.d.start()
            wait_for(lambda: t.command("DBSIZE") == 0, "FLUSHDB ASYNC")


def publish(body):
    return rc("PUBLISH", "pginval", json.dumps(body))


SENTINELS = iter(range(1, 1000000))


def handled(s, body, send=None):
    """Publishes ``body`` with a key of its own, and waits until apply has
    deleted that key: every message published before it has then been
    handled. What must NOT have happened is checked after this positive
    signal, never after a pause (which passes when apply is merely slow).
    Returns the number of resets of every table logged so far."""
    key = "user:sentinel%d" % next(SENTINELS)
    rc("SET", key, "x")
    (send or publish)(dict(body, keys=list(body.get("keys", [])) + [key]))
    wait_for(lambda: rc("EXISTS", key) == 0, "the sentinel " + key)
    return s.a.log_text().count("reset of every table")


def test_gaps_reset_everything():
    with Stack(daemon=False) as s:
        msg = {"v": 1, "epoch": "e1", "op": "update",
               "table": "public.users", "keys": ["user:70"], "ts": 1}
        rc("SET", "user:71", "x")
        resets = s.a.log_text().count("reset of every table")
        publish(dict(msg, seq=1))
        eq(handled(s, dict(msg, seq=2)), resets, "no gap yet: resets")
        eq(rc("EXISTS", "user:71"), 1, "no gap yet")
        publish(dict(msg, seq=4))
        s.a.wait_log("gap: seq 4 in epoch e1 does not follow the last one")
        wait_for(lambda: rc("EXISTS", "user:71") == 0, "gap reset")
        rc("SET", "user:72", "x")
        resets = s.a.log_text().count("reset of every table")
        eq(handled(s, dict(msg, seq=5)), resets, "back in step: resets")
        eq(rc("EXISTS", "user:72"), 1, "back in step")
        publish(dict(msg, epoch="e2", seq=3))
        s.a.wait_log("gap: seq 3 opens epoch e2, not 1")
        wait_for(lambda: rc("EXISTS", "user:72") == 0, "epoch gap reset")
        rc("SET", "user:73", "x")
        resets = s.a.log_text().count("reset of every table")
        eq(handled(s, dict(msg, epoch="e3", seq=1)), resets,
           "a new epoch from 1 is no gap: resets")
        eq(rc("EXISTS", "user:73"), 1, "a new epoch from 1 is no gap")
        eq(rc("PUBLISH", "pginval", "not json"), 1, "junk is received")
        s.a.wait_log("skipping a message: no epoch and seq")
        for junk in ('{"v":1,"epoch":"e3","seq":1e30,"op":"update"}',
                     '{"v":1,"epoch":"e3","seq":-5}',
                     '{"v":1,"epoch":"e3","seq":2,"op":"update",'
                     '"table":"public.users","keys":["user:73"],"ts":1e999}'):
            rc("PUBLISH", "pginval", junk)
        wait_for(lambda: rc("EXISTS", "user:73") == 0,
                 "out-of-range numbers neither crash nor stop apply")


def test_own_reconnect_is_a_reset():
    with Stack(daemon=False) as s:
        rc("SET", "user:80", "x")
        rc("CLIENT", "KILL", "TYPE", "pubsub")
        s.a.wait_log("resubscribed: messages sent meanwhile were missed")
        wait_for(lambda: rc("EXISTS", "user:80") == 0, "resubscribe reset")


STREAM = {"redis.stream": "pginval:log"}


def xadd(body):
    return rc("XADD", "pginval:log", "*", "message", json.dumps(body))


def sent(body):
    """What the daemon does: append to the stream, then publish."""
    xadd(body)
    publish(body)


def apply_metrics(s, port):
    status, text = http_get(port, "/metrics")
    eq(status, 200, "GET /metrics")
    return text


def test_stream_replays_a_gap_instead_of_resetting():
    port = free_port()
    rc("DEL", "pginval:log")
    extra = dict(STREAM, **{"metrics.listen": "127.0.0.1:%d" % port})
    with Stack(daemon=False, extra=extra) as s:
        msg = {"v": 1, "epoch": "r1", "op": "update",
               "table": "public.users", "ts": 1}
        for k in ("user:90", "user:91", "user:92", "user:93", "user:99"):
            rc("SET", k, "x")
        sent(dict(msg, seq=1, keys=["user:90"]))
        sent(dict(msg, seq=2, keys=["user:91"]))
        wait_for(lambda: rc("EXISTS", "user:91") == 0, "in step")
        xadd(dict(msg, seq=3, keys=["user:92"]))       # missed on the channel
        sent(dict(msg, seq=4, keys=["user:93"]))
        s.a.wait_log("gap: seq 4 in epoch r1 does not follow the last one; "
                     "replaying the missed messages")
        s.a.wait_log("replay: caught up with the stream")
        wait_for(lambda: rc("EXISTS", "user:92", "user:93") == 0,
                 "the missed message and the one after it applied")
        eq(rc("GET", "user:99"), b"x", "no reset: other keys stay")
        sent(dict(msg, seq=5, keys=["user:99"]))
        wait_for(lambda: rc("EXISTS", "user:99") == 0, "back in step")
        text = apply_metrics(s, port)
        eq(metric(text, 'pginval_apply_replays_total{result="done"}'), 1.0,
           "one replay")
        eq(metric(text, "pginval_apply_replayed_messages_total"), 2.0,
           "seq 3 and 4 read back")
        eq(metric(text, "pginval_apply_repeated_messages_total"), 1.0,
           "seq 4, held during the replay, skipped after it")
        eq(metric(text, 'pginval_apply_resets_total{scope="all"}'), 1.0,
           "only the start reset")


def test_stream_replays_a_long_gap_page_by_page():
    rc("DEL", "pginval:log")
    with Stack(daemon=False, extra=STREAM) as s, REDIS.connect() as c:
        msg = {"v": 1, "epoch": "r4", "op": "delete",
               "table": "public.users", "ts": 1}
        keys = ["user:%d" % (1000 + i) for i in range(250)]
        for k in keys + ["user:99"]:
            c.send("SET", k, "x")
        for k in keys + ["user:99"]:
            c.read_reply()
        sent(dict(msg, seq=1, keys=[]))
        for i, k in enumerate(keys):                 # 3 pages, missed
            c.send("XADD", "pginval:log", "*", "message",
                   json.dumps(dict(msg, seq=2 + i, keys=[k])))
        for k in keys:
            c.read_reply()
        sent(dict(msg, seq=252, keys=[]))
        s.a.wait_log("replay: caught up with the stream after 251 messages")
        wait_for(lambda: c.command("EXISTS", *keys) == 0, "all 250 keys")
        eq(c.command("GET", "user:99"), b"x", "no reset")
    rc("DEL", "pginval:log")


def test_stream_replays_what_a_resubscription_missed():
    rc("DEL", "pginval:log")
    with Stack(daemon=False, extra=STREAM) as s:
        msg = {"v": 1, "epoch": "r2", "op": "update",
               "table": "public.users", "ts": 1}
        for k in ("user:94", "user:95", "user:99"):
            rc("SET", k, "x")
        sent(dict(msg, seq=1, keys=["user:94"]))
        wait_for(lambda: rc("EXISTS", "user:94") == 0, "in step")
        rc("CLIENT", "KILL", "TYPE", "pubsub")
        xadd(dict(msg, seq=2, keys=["user:95"]))       # sent while away
        s.a.wait_log("resubscribed: replaying the messages sent meanwhile")
        s.a.wait_log("replay: caught up with the stream")
        wait_for(lambda: rc("EXISTS", "user:95") == 0, "the missed one")
        eq(rc("GET", "user:99"), b"x", "no reset")
        assert "resetting instead" not in s.a.log_text()


def test_stream_too_short_or_broken_means_a_reset():
    rc("DEL", "pginval:log")
    with Stack(daemon=False, extra=STREAM) as s:
        msg = {"v": 1, "epoch": "r3", "op": "update",
               "table": "public.users", "ts": 1, "keys": []}
        sent(dict(msg, seq=1))
        rc("DEL", "pginval:log")                       # trimmed, or lost
        rc("SET", "user:96", "x")
        sent(dict(msg, seq=3))
        s.a.wait_log("replay: message 1 of epoch r3 is older than stream "
                     '"pginval:log" holds')
        wait_for(lambda: rc("EXISTS", "user:96") == 0, "reset instead")
        rc("SET", "user:97", "x")
        resets = s.a.log_text().count("reset of every table")
        eq(handled(s, dict(msg, seq=4)), resets, "in step again: resets")
        eq(rc("GET", "user:97"), b"x", "in step again after the reset")
        rc("DEL", "pginval:log")
        rc("SET", "pginval:log", "not a stream")
        publish(dict(msg, seq=6))
        s.a.wait_log('reading stream "pginval:log" failed: WRONGTYPE')
        wait_for(lambda: rc("EXISTS", "user:97") == 0, "reset again")
        rc("DEL", "pginval:log")
        sent(dict(msg, seq=7))
        xadd(dict(msg, seq=8))              # missed; 9 is neither sent
        rc("SET", "user:98", "x")           # nor in the stream
        publish(dict(msg, seq=10))
        s.a.wait_log("replay: caught up with the stream after 1 message\n")
        s.a.wait_log("gap: seq 10 in epoch r3 does not follow the last one;"
                     " messages were missed, and the stream does not hold "
                     "them")
        wait_for(lambda: rc("EXISTS", "user:98") == 0, "a reset, no loop")
        rc("SET", "pginval:log", "not a stream")
        r = subprocess.run([harness.BIN, "check", "--connect", "-c",
                            s.a.config], capture_output=True, text=True)
        eq(r.returncode, 1, r.stdout)
        assert 'problem: redis: [redis] stream "pginval:log" is string on ' \
            in r.stdout, r.stdout
    rc("DEL", "pginval:log")


def test_daemon_appends_to_a_capped_stream():
    rc("DEL", "pginval:log")
    d = harness.Daemon(PG, REDIS, TABLES,
                       extra=dict(STREAM, **{"redis.stream_maxlen": "10"}))
    r = subprocess.run([harness.BIN, "check", "-c", d.config],
                       capture_output=True, text=True)
    assert 'channel "pginval", stream "pginval:log"; 2 table rules' \
        in r.stdout, r.stdout
    d.start()
    try:
        with REDIS.connect() as sub:
            sub.command("SUBSCRIBE", "pginval")
            for i in range(300):
                sql("INSERT INTO orders VALUES (%d, 1, 1)" % (1000 + i))
            got, want = [], {"order:%d" % (1000 + i) for i in range(300)}
            while want:     # changes may merge into fewer messages
                got.append(sub.read_reply()[2])
                want -= set(json.loads(got[-1])["keys"])
        entries = rc("XRANGE", "pginval:log", "-", "+")
        # Trimmed by whole nodes (stream-node-max-entries, 100).
        assert 10 <= len(entries) <= min(110, len(got)), \
            "MAXLEN ~ 10: %d entries after %d" % (len(entries), len(got))
        eq([e[1] for e in entries], [[b"message", m]
                                     for m in got[-len(entries):]],
           "the stream ends with exactly what was published")
        rc("DEL", "pginval:log")
        rc("SET", "pginval:log", "a string")
        sql("INSERT INTO orders VALUES (2000, 1, 1)")
        d.wait_log('XADD to stream "pginval:log" refused: WRONGTYPE')
        with REDIS.connect() as sub:
            sub.command("SUBSCRIBE", "pginval")
            sql("INSERT INTO orders VALUES (2001, 1, 1)")
            m = json.loads(sub.read_reply()[2])
            eq(m["keys"], ["order:2001", "orders:customer:1"],
               "still published")
        rc("DEL", "pginval:log")
        d.rewrite(extra={})                 # SIGHUP turns the stream off
        d.signal(signal.SIGHUP)
        d.wait_log("reload: configuration applied")
        with REDIS.connect() as sub:
            sub.command("SUBSCRIBE", "pginval")
            sql("INSERT INTO orders VALUES (2002, 1, 1)")
            sub.read_reply()
        eq(rc("EXISTS", "pginval:log"), 0, "no stream after the reload")
    finally:
        d.stop()
        rc("DEL", "pginval:log")
        sql("DELETE FROM orders WHERE id >= 1000")


def test_stream_end_to_end_with_the_daemon():
    rc("DEL", "pginval:log")
    with Stack(daemon_extra=STREAM, extra=STREAM) as s, \
            REDIS.connect() as c:
        c.command("SET", "user:99", "x")
        ids = list(range(300, 340))
        for i in ids:
            c.command("SET", "user:%d" % i, "x")
        c.command("SET", "user:299", "x")
        sql("INSERT INTO users VALUES (299, 'u299@x.io', 'u')")
        wait_for(lambda: c.command("EXISTS", "user:299") == 0,
                 "in step: apply has a position to replay from")
        # Connections made from now on fail their AUTH: apply cannot
        # subscribe again, while the daemon's link (and ours) stay.
        c.command("CONFIG", "SET", "requirepass", "s3cret")
        try:
            c.command("CLIENT", "KILL", "TYPE", "pubsub")
            for i in ids:
                sql("INSERT INTO users VALUES (%d, 'u%d@x.io', 'u')" % (i, i))
            wait_for(lambda: c.command("XLEN", "pginval:log") >= 3,
                     "the daemon published while apply was away")
            s.a.wait_log("channel: connection lost: NOAUTH")
        finally:
            c.command("CONFIG", "SET", "requirepass", "")
        s.a.wait_log("resubscribed: replaying the messages sent meanwhile")
        s.a.wait_log("replay: caught up with the stream")
        n = int(re.search(r"caught up with the stream after (\d+) message",
                          s.a.log_text()).group(1))
        assert n >= 1, "replayed %d messages" % n
        wait_for(lambda: c.command("EXISTS",
                                   *["user:%d" % i for i in ids]) == 0,
                 "every row's key deleted")
        eq(c.command("GET", "user:99"), b"x", "no reset: other keys stay")
        assert "resetting instead" not in s.a.log_text()
    rc("DEL", "pginval:log")


def test_refresh_sets_the_first_template_keys():
    with Stack(tables=REFRESH) as s:
        sql("INSERT INTO users VALUES (20, 'r@x.io', 'rita')")
        wait_for(lambda: rc("GET", "user:20") == b"rita", "user:20 refreshed")
        ttl = rc("PTTL", "user:20")
        assert 0 < ttl <= 2000, "ttl = 2s, got %d ms" % ttl
        eq(rc("EXISTS", "user:email:r@x.io"), 0,
           "user:email:* could be user:{id} too: deleted, not refreshed")
        sql("UPDATE users SET name = 'rita2' WHERE id = 20")
        wait_for(lambda: rc("GET", "user:20") == b"rita2", "refreshed again")
        sql("DELETE FROM users WHERE id = 20")
        wait_for(lambda: rc("EXISTS", "user:20") == 0, "no row: deleted")
        # A query that fails leaves the key deleted.
        rc("SET", "order:1", "stale")
        sql("INSERT INTO orders VALUES (1, 7, 10)")
        wait_for(lambda: rc("EXISTS", "order:1") == 0, "failed refresh")
        s.a.wait_log("refresh: order:1: ERROR:  division by zero")
        port = free_port()
    # Counted in the metrics.
    with Stack(tables=REFRESH, extra={
            "metrics.listen": "127.0.0.1:%d" % port}):
        sql("INSERT INTO users VALUES (21, 's@x.io', 'sam');"
            "INSERT INTO orders VALUES (2, 7, 10)")
        wait_for(lambda: rc("GET", "user:21") == b"sam", "refreshed")
        text = wait_for(lambda: (lambda t: t if metric(
            t, 'pginval_apply_refreshes_total{result="failed"}') >= 1
            else None)(http_get(port, "/metrics")[1]), "failed refresh")
        eq(metric(text, 'pginval_apply_refreshes_total{result="stored"}'),
           1.0, "stored")


def test_metrics_pass_promtool_and_healthz_follows_targets():
    port = free_port()
    with Redis() as t:
        with Stack(targets={"cache": t.url}, extra={
                "metrics.listen": "127.0.0.1:%d" % port}):
            t.command("SET", "user:30", "x")
            sql("INSERT INTO users VALUES (30, 'm@x.io', 'mo')")
            wait_for(lambda: t.command("EXISTS", "user:30") == 0, "deleted")
            status, text = http_get(port, "/metrics")
            eq(status, 200, "GET /metrics")
            r = subprocess.run(["promtool", "check", "metrics"], input=text,
                               capture_output=True, text=True)
            eq(r.returncode, 0, r.stdout + r.stderr)
            eq(metric(text, "pginval_apply_keys_deleted_total"), 2.0,
               "two keys invalidated")
            eq(metric(text, "pginval_apply_keys_existed_total"), 1.0,
               "one of them was cached")
            assert metric(text, "pginval_apply_lag_seconds_count") == 2
            eq(metric(text, 'pginval_apply_target_up{target="cache"}'), 1.0,
               "target up")
            assert metric(text, 'pginval_apply_resets_total{scope="all"}') \
                >= 1, "apply's start reset is counted"
            eq(http_get(port, "/healthz"),
               (200, "channel: subscribed, targets: cache ready\n"), "healthz")
            t._kill()
            wait_for(lambda: http_get(port, "/healthz")[0] == 503,
                     "503 with the target down")
            t.restart()
            wait_for(lambda: http_get(port, "/healthz")[0] == 200,
                     "200 once it is back")


def test_dead_target_link_is_found_and_commands_kept():
    with Redis() as t:
        proxy = Proxy("127.0.0.1", t.port)
        try:
            with Stack(targets={"cache": "redis://127.0.0.1:%d" % proxy.port},
                       extra={"redis.command_timeout": "1"}) as s:
                t.command("SET", "user:40", "x")
                proxy.blackhole()
                sql("INSERT INTO users VALUES (40, 'd@x.io', 'dan')")
                s.a.wait_log("target cache: no reply for", timeout=10)
                eq(t.command("EXISTS", "user:40"), 1, "not yet")
                proxy.heal()
                wait_for(lambda: t.command("EXISTS", "user:40") == 0,
                         "deleted after the reconnect", timeout=15)
        finally:
            proxy.close()


def test_sigterm_drains_and_sighup_reloads():
    s = Stack()
    with s:
        # Reload: add a refresh to users.
        s.a.rewrite(tables=REFRESH)
        s.a.signal(signal.SIGHUP)
        s.a.wait_log("reload: 2 table rules, 1 targets")
        sql("INSERT INTO users VALUES (50, 'h@x.io', 'hal')")
        wait_for(lambda: rc("GET", "user:50") == b"hal", "refresh after HUP")
        # A broken file keeps the running configuration.
        with open(s.a.config, "a") as f:
            f.write("[apply]\nreset = never\n")
        s.a.signal(signal.SIGHUP)
        s.a.wait_log("reload: keeping the running configuration")
    assert "shutdown: everything acknowledged" in s.a.log_text()


def test_systemd_notify_protocol():
    """READY=1 once subscribed with every target connected, STATUS= lines,
    WATCHDOG=1, RELOADING=1 and READY=1 around a reload, STOPPING=1."""
    ns = NotifySocket()
    with Redis() as t:
        t._kill()  # READY=1 must wait for the target
        a = harness.Apply(PG, REDIS, TABLES, targets={"cache": t.url},
                          env={"NOTIFY_SOCKET": ns.path,
                               "WATCHDOG_USEC": "400000"})
        try:
            a.start()           # subscribed, the target still down
            ns.wait("WATCHDOG=1")  # fed from the loop every 0.2 s
            ns.wait("WATCHDOG=1")
            assert not any("READY=1" in m for m in ns.seen), ns.seen
            t.restart()
            ns.wait("READY=1")
            # States, rates and counts, every 5 s.
            ns.wait(re.compile(r"STATUS=channel: subscribed, targets: cache "
                               r"ready; \d+ messages/s, \d+ keys/s, 0 "
                               r"messages, \d+ queued, 1 resets"), 15)
            a.signal(signal.SIGHUP)
            ns.wait("RELOADING=1")
            ns.wait("READY=1")
            ns.wait("WATCHDOG=1")
            a.signal(signal.SIGTERM)
            ns.wait("STOPPING=1")
            a.proc.wait(timeout=10 * SLOW)
            a.stop()            # checks the exit status: 0
        finally:
            a.kill()
            ns.close()


def test_help_and_version():
    r = subprocess.run([harness.BIN, "apply", "--help"], capture_output=True,
                       text=True)
    eq(r.returncode, 0, "apply --help")
    assert "usage: pginval apply" in r.stdout
    r = subprocess.run([harness.BIN, "apply", "--version"],
                       capture_output=True, text=True)
    assert r.stdout.startswith("pginval "), r.stdout
    r = subprocess.run([harness.BIN, "--help"], capture_output=True, text=True)
    assert "pginval apply" in r.stdout


def around():
    import contextlib

    @contextlib.contextmanager
    def servers():
        global PG, REDIS
        with Postgres() as pg, Redis() as rd:
            PG, REDIS = pg, rd
            yield
    return servers()


if __name__ == "__main__":
    sys.exit(runner.run(globals(), sys.argv[1:], around=around))
