#!/usr/bin/env python3
"""Redis nodes that forget acknowledged writes: a target of `pginval apply`
restarted from an older snapshot or without its data is found out at the
reconnect (INFO + ROLE, the replication-history rule) and repaired: the
messages it may have lost are replayed to it from [redis] stream when the
stream still holds them all, else it is reset, so the stale keys that came
back are deleted or swept; a plain reconnect and a complete
restart (SHUTDOWN SAVE, with a replica) are no alarm; the daemon with
action = delete sweeps every table after such a restart of its Redis; and
a Redis whose ACL refuses ROLE and INFO is written to, with one warning.

    python3 tests/integration/test_forget.py [-v] [name-substring ...]
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "consistency"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import harness  # noqa: E402
import runner  # noqa: E402
from pginval_proc import http_get, metric, wait_for  # noqa: E402
from runner import eq  # noqa: E402
from servers import Postgres, Redis, RedisError, free_port  # noqa: E402

PG = REDIS = None
TABLES = {"public.users": "user:{id}, user:email:{email}"}
BREAKS = "pginval_redis_history_breaks_total"


FAST_SYNC = ["--repl-diskless-sync-delay", "0"]   # a replica syncs at once


def offset(n):
    return int(n.info("replication")["master_repl_offset"])


def in_sync(m, r):
    wait_for(lambda: offset(r) >= offset(m), "the replica caught up")


def restart_complete(m):
    """SHUTDOWN SAVE, then the same server again from that snapshot."""
    try:
        m.command("SHUTDOWN", "SAVE")
    except (OSError, RedisError, ConnectionError):
        pass                          # the link goes with it
    m.proc.wait(timeout=20)
    m.restart()


def with_replica(test):
    """Runs test(m) with m a Redis that has a replica: one that never had
    one keeps no replication history across restarts."""
    with Redis(extra_args=FAST_SYNC) as m, \
            Redis(extra_args=FAST_SYNC + ["--replicaof", "127.0.0.1",
                                          str(m.port)]) as r:
        wait_for(lambda: r.info("replication").get("master_link_status")
                 == "up", "the replica in sync")
        test(m, r)


def sql(text):
    return PG.psql(text)


class Apply:
    """pginval apply with a target node and a daemon on the channel Redis
    (REDIS, or channel), with [redis] stream if stream is set. Without a
    target, apply's target is the channel's Redis."""

    def __init__(self, target=None, port=None, stream=None, channel=None):
        self.port = port or free_port()
        chan = channel or REDIS
        extra = {"redis.stream": stream} if stream else {}
        self.target = "t" if target else "default"
        self.d = harness.Daemon(PG, chan, TABLES, extra=dict(extra))
        self.a = harness.Apply(PG, chan, TABLES,
                               targets={"t": target.url + "/0"}
                               if target else None,
                               extra=dict(extra, **{
                                   "metrics.listen":
                                   "127.0.0.1:%d" % self.port}))

    def __enter__(self):
        self.d.start()
        self.a.start()
        self.a.wait_log("swept keys matching")     # the start reset
        return self

    def __exit__(self, exc, *rest):
        if exc is not None:
            for p in (self.a, self.d):
                print("--- %s log ---\n%s" % (p.command, p.log_text()))
                p.kill()
        else:
            self.a.stop()
            self.d.stop()
        return False

    def metric(self, name):
        status, text = http_get(self.port, "/metrics")
        eq(status, 200, "GET /metrics")
        return metric(text, name)

    def breaks(self):
        return self.metric('%s{target="%s"}' % (BREAKS, self.target))

    def confirmed(self):
        """Lets apply read ROLE after its last writes (the pipeline
        drained), which is what a restart is compared with."""
        time.sleep(0.3)


def fill(node, n):
    with node.connect() as c:
        for i in range(1, n + 1):
            c.command("SET", "user:%d" % i, "cached")


def update(n, tag):
    sql("UPDATE users SET name = '%s' WHERE id <= %d" % (tag, n))


def stale(node, n):
    return [i for i in range(1, n + 1)
            if node.command("EXISTS", "user:%d" % i)]


# -- tests --------------------------------------------------------------------

def setup():
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    sql("CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
        "SELECT pginval.watch('users', ARRAY['id', 'email']);"
        "INSERT INTO users SELECT i, 'u' || i || '@x.io', 'n' "
        "FROM generate_series(1, 50) i;")


def before_each():
    REDIS.command("FLUSHALL")


def test_restart_from_an_older_snapshot_resets_the_target():
    # Without a stream: a reset.
    def test(m, r):
        with Apply(m) as s:
            fill(m, 20)
            snap = m.snapshot()
            update(20, "a")
            wait_for(lambda: not stale(m, 20), "apply deleted the keys")
            s.confirmed()
            eq(s.breaks(), 0.0, "no break before the restart")
            # Restarted from the snapshot taken before the deletes.
            m.restart(rdb=snap)
            s.a.wait_log("may have forgotten writes it acknowledged")
            assert "offset went back" in s.a.log_text(), s.a.log_text()
            s.a.wait_log("target t: its Redis may have forgotten "
                         "invalidations; resetting it")
            wait_for(lambda: not stale(m, 20), "the reset swept them")
            eq(s.breaks(), 1.0, BREAKS)
    with_replica(test)


def snapshot_then_forget(m, s, tag):
    """Caches user:1..50 on m; apply deletes user:1..10, then m's
    snapshot is taken, then apply deletes user:1..20; m restarts from
    that snapshot, so that the second deletes come back undone."""
    fill(m, 50)
    update(10, tag + "1")
    wait_for(lambda: not stale(m, 10), "the first deletes")
    s.confirmed()
    snap = m.snapshot()
    update(20, tag + "2")
    wait_for(lambda: not stale(m, 20), "the second deletes")
    s.confirmed()
    eq(s.breaks(), 0.0, "no break before the restart")
    m.restart(rdb=snap)
    s.a.wait_log("may have forgotten writes it acknowledged")


def test_restart_from_an_older_snapshot_is_repaired_from_the_stream():
    """The stream lives on another Redis: only the messages the target
    may have lost are replayed to it. The keys they name go; keys no
    change named stay, which a reset would have swept."""
    def test(m, r):
        with Apply(m, stream="pginval:log") as s:
            snapshot_then_forget(m, s, "r")
            s.a.wait_log("target t: repaired")
            wait_for(lambda: not stale(m, 20), "the replay deleted them")
            eq(len(stale(m, 50)), 30, "user:21..50, which no change named, "
               "are still cached")
            text = s.a.log_text()
            assert "replaying to it the messages after seq" in text, text
            assert "resetting it" not in text, text
            eq(s.breaks(), 1.0, BREAKS)
            eq(s.metric('pginval_apply_repairs_total{result="done"}'), 1.0,
               "repairs")
            assert s.metric("pginval_apply_repaired_messages_total") >= 1
    with_replica(test)


def test_a_stream_that_forgot_too_resets_the_target():
    """The stream and the target are one Redis, restarted from an older
    snapshot: the stream lost the same messages, so the repair cannot
    be made from it (or apply's own replay found that first, and reset
    everything), and the target is reset."""
    def test(m, r):
        with Apply(channel=m, stream="pginval:log") as s:
            snapshot_then_forget(m, s, "s")
            wait_for(lambda: "the repair from the stream failed" in
                     s.a.log_text() or "resetting it (no last message" in
                     s.a.log_text(), "the repair refused or failed")
            wait_for(lambda: not stale(m, 50), "the reset swept them all")
            assert "target default: repaired" not in s.a.log_text()
            eq(s.metric('pginval_apply_repairs_total{result="failed"}'),
               1.0, "repairs")
    with_replica(test)


def test_restart_without_data_resets_the_target():
    with Redis() as m, Apply(m) as s:
        update(5, "b")
        wait_for(lambda: m.command("EXISTS", "pginval:m:{user:5}"),
                 "apply marked the keys")
        s.confirmed()
        m.restart_empty()
        s.a.wait_log("may have forgotten writes it acknowledged")
        s.a.wait_log("resetting it")
        eq(s.breaks(), 1.0, BREAKS)


def test_plain_reconnect_and_complete_restart_are_no_alarm():
    def test(m, r):
        with Apply(m) as s:
            fill(m, 10)
            update(10, "c")
            wait_for(lambda: not stale(m, 10), "apply deleted the keys")
            s.confirmed()
            # A reconnect to the same process.
            m.command("CLIENT", "KILL", "TYPE", "normal")
            s.a.wait_log("target t: connected to", count=2)
            # A complete restart: the snapshot holds every write.
            in_sync(m, r)
            restart_complete(m)
            s.a.wait_log("target t: connected to", count=3)
            fill(m, 10)
            update(10, "d")
            wait_for(lambda: not stale(m, 10), "apply still deletes")
            eq(s.breaks(), 0.0, BREAKS)
            assert "may have forgotten" not in s.a.log_text(), \
                s.a.log_text()
    with_replica(test)


def test_daemon_with_action_delete_resets_after_a_restart():
    port = free_port()
    with Redis() as m:
        d = harness.Daemon(PG, REDIS, TABLES, redis_url=m.url + "/0",
                           extra={"redis.action": "delete",
                                  "metrics.listen": "127.0.0.1:%d" % port})
        d.start()
        try:
            fill(m, 10)
            snap = m.snapshot()
            update(10, "e")
            wait_for(lambda: not stale(m, 10), "the daemon deleted them")
            time.sleep(0.3)
            m.restart(rdb=snap)
            d.wait_log("may have forgotten writes it acknowledged")
            d.wait_log("queued a reset: Redis may have forgotten keys")
            wait_for(lambda: not stale(m, 10), "the reset swept them")
            status, text = http_get(port, "/metrics")
            eq(metric(text, BREAKS), 1.0, BREAKS)
        except BaseException:
            print("--- run log ---\n" + d.log_text())
            d.kill()
            raise
        d.stop()


def test_role_and_info_refused_is_one_warning():
    with Redis() as m:
        m.command("ACL", "SETUSER", "default", "-role", "-info")
        d = harness.Daemon(PG, REDIS, TABLES, redis_url=m.url + "/0",
                           extra={"redis.action": "delete"})
        d.start()
        try:
            d.wait_log("redis: connected to 127.0.0.1:%d" % m.port)
            m.command("CLIENT", "KILL", "TYPE", "normal")
            d.wait_log("redis: connected to 127.0.0.1:%d" % m.port, count=2)
            fill(m, 3)
            update(3, "acl")
            wait_for(lambda: not stale(m, 3), "deletes without the check")
            text = d.log_text()
            eq(text.count("refused on 127.0.0.1:%d" % m.port), 1,
               "one warning that the check is off:\n" + text)
            assert "NOPERM" in text, text
        except BaseException:
            print("--- run log ---\n" + d.log_text())
            d.kill()
            raise
        d.stop()


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
