#!/usr/bin/env python3
"""PostgreSQL failover: a primary with a streaming standby on loopback,
the daemon's conninfo naming both (standby first) with
target_session_attrs=read-write; the primary is stopped (immediate) and the
standby promoted. Per mode: notify sends a reset; durable and poll deliver
every change the standby had replayed, at least once; wal makes the slot
on the promoted server and resets the wal tables, naming why.

    python3 tests/integration/test_failover.py [-v] [name-substring ...]

Each test builds its own pair (a failover uses it up); Redis is shared.
"""

import contextlib
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import pginval_proc  # noqa: E402
import runner  # noqa: E402
from pginval_proc import SLOW, next_msg, rows_of  # noqa: E402
from runner import eq  # noqa: E402
from servers import Postgres, Redis  # noqa: E402

REDIS = None
TABLES = {"public.users": "user:{id}"}
OUTBOX = {"outbox.enabled": "on", "outbox.poll_interval": "0.05"}
UP_LINE = {"notify": "postgres: listening", "durable": "outbox: connected",
           "poll": "outbox: connected", "wal": "wal: streaming"}


class Pair:
    """A primary, pginval.sql installed and public.users watched in
    ``mode``, and its standby. ``conninfo`` names the standby first, so
    only target_session_attrs keeps the daemon off it."""

    def __init__(self, mode):
        self.primary = Postgres(settings={"wal_level": "logical"}).start()
        try:
            p = self.primary
            p.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
            p.psql("CREATE TABLE users (id int PRIMARY KEY, email text);"
                   "SELECT pginval.watch('users', NULL, 'pginval', '%s')"
                   % mode)
            self.standby = p.replica()
        except BaseException:
            self.primary.stop()
            raise
        self.conninfo = ("host=%s,%s port=%d,%d dbname=postgres "
                         "user=postgres target_session_attrs=read-write"
                         % (p.host, p.host, self.standby.port, p.port))

    def stop(self):
        self.standby.stop()
        self.primary.stop()

    def failover(self):
        """The standby has replayed everything; the primary dies; the
        standby takes over."""
        self.standby.wait_replayed()
        self.primary.halt("immediate")
        self.standby.promote()


def backends(pg):
    """The daemon's sessions on pg, as sorted backend types: its lock
    session (the group, run/ha.c) is one of the client backends."""
    return sorted(pg.psql("SELECT backend_type FROM pg_stat_activity "
                          "WHERE application_name = 'pginval'").splitlines())


def until_ids(sub, want, timeout=30):
    """Messages read until every id in ``want`` has come in a users change
    (some may come twice: at least once); returns them all."""
    out, seen = [], set()
    deadline = time.monotonic() + timeout * SLOW
    while not want <= seen:
        m = next_msg(sub, max(0.01, deadline - time.monotonic()) / SLOW)
        assert m is not None, "ids %r never came; got %r" % (
            sorted(want - seen), out[-8:])
        out.append(m)
        seen |= {int(r["new"]["id"]) for r in rows_of(m)
                 if r["table"] == "public.users" and "new" in r}
    return out


def insert(pg, ids):
    pg.psql("".join("INSERT INTO users VALUES (%d, 'e%d');" % (i, i)
                    for i in ids))


@contextlib.contextmanager
def failover_run(mode):
    """A pair and a daemon streaming from its primary; yields (pair,
    daemon, subscriber); the daemon's log is printed if the block fails."""
    pair = Pair(mode)
    sub = REDIS.subscribe("pginval")

    class Conn:
        conninfo = pair.conninfo
    extra = dict(OUTBOX) if mode in ("durable", "poll") else {}
    d = pginval_proc.Daemon(Conn, REDIS, tables=TABLES, extra=extra)
    try:
        d.start()
        d.wait_log(UP_LINE[mode], 20)
        insert(pair.primary, range(1, 4))
        until_ids(sub, {1, 2, 3})
        eq(backends(pair.standby), [], "sessions on the standby")
        yield pair, d, sub
        d.stop()
    except BaseException:
        d.kill()
        print("--- daemon log ---\n" + d.log_text())
        raise
    finally:
        sub.close()
        pair.stop()


def test_notify_resets_after_a_failover():
    with failover_run("notify") as (pair, d, sub):
        eq(backends(pair.primary), ["client backend"] * 2,
           "the lock and LISTEN sessions")
        pair.failover()
        d.wait_log("postgres: listening on channel \"pginval\" (%s:%d"
                   % (pair.standby.host, pair.standby.port), 30)
        insert(pair.standby, range(10, 13))
        ms = until_ids(sub, {10, 11, 12})
        resets = [m for m in ms if m["op"] == "reset"]
        eq(len(resets), 1, "one reset: %r" % ms)
        eq(resets[0]["table"], None, "a reset of everything")
        # Losing PostgreSQL fences the daemon (run/ha.c): it takes the
        # lock again on the promoted server and starts a new epoch, whose
        # first message is the reset.
        assert "no daemon was listening" in resets[0]["reason"], resets
        eq(resets[0]["seq"], 1, "the reset opens a new epoch")
        d.wait_log("ha: fenced")
        assert ms.index(resets[0]) < min(
            i for i, m in enumerate(ms) if rows_of(m)), "reset first: %r" % ms
        eq(backends(pair.standby), ["client backend"] * 2,
           "the lock and LISTEN sessions moved")


def outbox_failover(mode):
    """Changes that sit in the outbox when the primary dies (Redis paused:
    nothing is acknowledged) come from the promoted server's copy of it."""
    with failover_run(mode) as (pair, d, sub):
        REDIS.pause()
        try:
            insert(pair.primary, range(4, 9))
            pair.failover()
            waiting = int(pair.standby.psql(
                "SELECT count(*) FROM pginval.outbox"))
        finally:
            REDIS.resume()
        assert waiting >= 1, "no change was left in the outbox"
        d.wait_log("outbox: connected (%s:%d" % (pair.standby.host,
                                                 pair.standby.port), 30)
        insert(pair.standby, range(10, 13))
        ms = until_ids(sub, set(range(4, 9)) | {10, 11, 12})
        eq([m for m in ms if m["op"] == "reset"], [], "no reset")
        deadline = time.monotonic() + 20 * SLOW
        while time.monotonic() < deadline and int(pair.standby.psql(
                "SELECT count(*) FROM pginval.outbox")):
            time.sleep(0.05)
        eq(int(pair.standby.psql("SELECT count(*) FROM pginval.outbox")), 0,
           "the promoted server's outbox drained")
        return waiting


def test_durable_delivers_the_replicated_outbox():
    outbox_failover("durable")


def test_poll_delivers_the_replicated_outbox():
    outbox_failover("poll")


def test_wal_makes_the_slot_on_the_promoted_server():
    with failover_run("wal") as (pair, d, sub):
        eq(backends(pair.primary), ["client backend"] * 2 + ["walsender"],
           "the LISTEN session and the replication connection")
        pair.failover()
        d.wait_log("wal: streaming slot \"pginval_pginval\", publication "
                   "\"pginval_pginval\" (%s:%d" % (pair.standby.host,
                                                   pair.standby.port), 30)
        eq(pair.standby.psql("SELECT slot_type, plugin FROM "
                             "pg_replication_slots WHERE slot_name = "
                             "'pginval_pginval'").strip(),
           "logical|pgoutput", "the slot on the promoted server")
        insert(pair.standby, range(10, 13))
        ms = until_ids(sub, {10, 11, 12})
        resets = [m for m in ms if m["op"] == "reset"]
        eq([m["table"] for m in resets], ["public.users"], "resets: %r" % ms)
        assert "missing on this server (a failover?)" in \
            resets[0]["reason"], resets
        assert "is missing on %s:%d" % (pair.standby.host,
                                        pair.standby.port) in d.log_text()
        eq(backends(pair.standby), ["client backend"] * 2 + ["walsender"],
           "all moved")


def test_wal_confirms_nothing_of_the_old_slot_on_the_new():
    """The standby lags (stopped while the primary writes on): the old
    slot's confirmed position lies ahead of the promoted server's WAL. The
    new slot must not be confirmed up to it: a change made while no daemon
    runs still arrives at the next start."""
    with failover_run("wal") as (pair, d, sub):
        pair.standby.halt()
        p = pair.primary
        p.psql("CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad "
               "FROM generate_series(1, 100000) g")
        end = p.psql("SELECT pg_current_wal_insert_lsn()").strip()
        insert(p, [4])
        until_ids(sub, {4})
        deadline = time.monotonic() + 30 * SLOW
        while time.monotonic() < deadline and p.psql(
                "SELECT confirmed_flush_lsn >= '%s' FROM pg_replication_slots"
                " WHERE slot_name = 'pginval_pginval'" % end).strip() != "t":
            time.sleep(0.1)
        p.halt("immediate")
        pair.standby.restart()
        pair.standby.promote()
        behind = pair.standby.psql("SELECT pg_current_wal_lsn() < '%s'"
                                   % end).strip()
        eq(behind, "t", "the promoted server's WAL ends before the old flush")
        d.wait_log("wal: streaming slot \"pginval_pginval\", publication "
                   "\"pginval_pginval\" (%s:%d" % (pair.standby.host,
                                                   pair.standby.port), 30)
        insert(pair.standby, [10])
        until_ids(sub, {10})
        d.stop()
        insert(pair.standby, [11])
        d.start()
        d.wait_log("wal: streaming", 20)
        ms = until_ids(sub, {11})
        assert any(r["new"]["id"] == "11" for m in ms for r in rows_of(m))


def test_a_silent_first_host_is_passed_over():
    """The first host takes the TCP connection and never answers (a hung
    server; a machine that drops packets holds an attempt the same way):
    libpq would wait on it for ever, so the attempt times out and the next
    one starts at the next host."""
    pg = Postgres().start()
    try:
        with socket.socket() as silent:
            silent.bind(("127.0.0.1", 0))
            silent.listen(16)   # never accepted: the kernel completes them
            port = silent.getsockname()[1]
            pg.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
            pg.psql("CREATE TABLE users (id int PRIMARY KEY, email text);"
                    "SELECT pginval.watch('users')")

            class Conn:
                conninfo = ("host=127.0.0.1,127.0.0.1 port=%d,%d "
                            "dbname=postgres user=postgres" % (port, pg.port))
            sub = REDIS.subscribe("pginval")
            with pginval_proc.running(Conn, REDIS, tables=TABLES, extra={
                    "postgres.connect_timeout": "0.5"}) as d:
                d.wait_log("postgres: listening on channel \"pginval\" "
                           "(127.0.0.1:%d" % pg.port, 20)
                insert(pg, [1])
                until_ids(sub, {1})
            assert "timed out connecting to 127.0.0.1:%d" % port in \
                d.log_text(), d.log_text()
            sub.close()
    finally:
        pg.stop()


def main():
    global REDIS

    @contextlib.contextmanager
    def around():
        global REDIS
        with Redis() as redis:
            REDIS = redis
            yield

    return runner.run(globals(), sys.argv[1:], around=around)


if __name__ == "__main__":
    sys.exit(main())
