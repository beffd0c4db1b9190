#!/usr/bin/env python3
"""Durable and poll modes: the outbox, end to end.

    python3 tests/integration/test_durable.py [-v] [name-substring ...]
"""

import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import pginval_proc  # noqa: E402
from pginval_proc import (SLOW, changes, msgs, next_msg, quiet,  # noqa: E402
                          rows_of, strip)
from runner import eq  # noqa: E402


PG = None
REDIS = None
OUTBOX = {"outbox.enabled": "on", "outbox.poll_interval": "0.05"}


def sql(text):
    return PG.psql(text)


def daemon(sub=None, extra=None, **kw):
    return pginval_proc.running(PG, REDIS, sub, extra=dict(OUTBOX, **(extra or {})),
                                **kw)


def start(sub, extra=None):
    """A daemon whose first message need not be a reset."""
    d = pginval_proc.Daemon(PG, REDIS, extra=dict(OUTBOX, **(extra or {})))
    d.start()
    d.wait_log("outbox: connected")
    return d


def fresh():
    """Each test starts with no rows and an empty outbox, whatever the one
    before it left."""
    sql("TRUNCATE users; DELETE FROM pginval.outbox")


def outbox_rows():
    """Row changes waiting in the outbox (an outbox row may describe
    several changes of one statement)."""
    return int(sql("SELECT coalesce(sum(CASE WHEN payload::jsonb ? 'rows' "
                   "THEN jsonb_array_length(payload::jsonb -> 'rows') "
                   "ELSE 1 END), 0) FROM pginval.outbox"))


def wait_empty(timeout=10):
    deadline = time.monotonic() + timeout * SLOW
    while outbox_rows() and time.monotonic() < deadline:
        time.sleep(0.05)
    eq(outbox_rows(), 0, "outbox drained")


def setup():
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    sql("CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
        "SELECT pginval.watch('users', ARRAY['id', 'email'], 'pginval', "
        "'durable');")


def test_durable_delivers_and_deletes():
    fresh()
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        sql("INSERT INTO users VALUES (1, 'a@x', 'n');"
            "UPDATE users SET email = 'b@x';")
        ms = msgs(sub, 2)
        wait_empty()
        sql("DELETE FROM users")
        m = next_msg(sub)
        wait_empty()
        # Every table on the channel is durable: nothing to reset.
        assert "every table on the channel uses the outbox" in d.log_text()
    finally:
        d.stop()
    eq(ms[0]["seq"], 1, "no reset first: nothing could have been lost")
    eq([strip(x) for x in ms + [m]], [
        {"op": "insert", "table": "public.users",
         "keys": ["user:1", "user:email:a@x"],
         "new": {"id": "1", "email": "a@x"}},
        {"op": "update", "table": "public.users",
         "keys": ["user:1", "user:email:a@x", "user:email:b@x"],
         "old": {"id": "1", "email": "a@x"}, "new": {"id": "1", "email": "b@x"}},
        {"op": "delete", "table": "public.users",
         "keys": ["user:1", "user:email:b@x"],
         "old": {"id": "1", "email": "b@x"}},
    ])


def test_catch_up_on_start():
    fresh()
    # Written while no daemon runs: kept in the outbox, delivered later.
    sql("INSERT INTO users SELECT g, 'c' || g, 'n' FROM generate_series(1, 2500) g")
    eq(outbox_rows(), 2500)
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        rows = changes(sub, 2500, timeout=30)
        wait_empty()
    finally:
        d.stop()
    eq(sorted(int(r["new"]["id"]) for r in rows), list(range(1, 2501)))
    sql("TRUNCATE users; DELETE FROM pginval.outbox")


def test_oversized_row_arrives_whole():
    fresh()
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        big = "x" * 20000
        sql("INSERT INTO users VALUES (5, '%s', 'n')" % big)
        m = next_msg(sub)
    finally:
        d.stop()
    eq(m["keys"], ["user:5", "user:email:" + big])
    sql("TRUNCATE users; DELETE FROM pginval.outbox")


def test_redis_down_keeps_rows_until_acknowledged():
    fresh()
    sub = REDIS.subscribe("pginval")
    d = start(sub, extra={"redis.command_timeout": "1"})
    try:
        os.kill(REDIS.proc.pid, signal.SIGSTOP)
        try:
            sql("INSERT INTO users SELECT g, 'r' || g, 'n' "
                "FROM generate_series(1, 20) g")
            # The rows were taken and published, and the publish timed out:
            # a positive signal that the daemon had its chance to err.
            d.wait_log("no reply for")
            eq(outbox_rows(), 20, "nothing deleted without an ack")
        finally:
            os.kill(REDIS.proc.pid, signal.SIGCONT)
        got = set()
        deadline = time.monotonic() + 30 * SLOW
        while len(got) < 20 and time.monotonic() < deadline:
            m = next_msg(sub, 1)
            for r in rows_of(m) if m is not None else []:
                got.add(int(r["new"]["id"]))
        wait_empty(30)
    finally:
        d.stop()
    eq(got, set(range(1, 21)))
    sql("TRUNCATE users; DELETE FROM pginval.outbox")


def test_two_daemons_never_take_the_same_rows():
    fresh()
    sub = REDIS.subscribe("pginval")
    extra = {"outbox.batch": "50"}
    a = start(sub, extra)
    b = pginval_proc.Daemon(PG, REDIS, extra=dict(OUTBOX, **extra))
    b.start()
    b.wait_log("-> standby:")
    try:
        # The second daemon of the channel stands by (test_ha.py): only
        # the active one drains. One statement per row, so that there are
        # many outbox rows.
        sql("DO $$ BEGIN FOR g IN 1..4000 LOOP INSERT INTO users "
            "VALUES (g, 'k' || g, 'n'); END LOOP; END $$")
        rows = changes(sub, 4000, timeout=60)
        wait_empty()
        quiet(sub, 1.0)
    finally:
        a.stop()
        b.stop()
    ids = [int(r["new"]["id"]) for r in rows]
    eq(len(ids), len(set(ids)), "no row delivered twice")
    eq(sorted(ids), list(range(1, 4001)))
    epochs = {r["msg"]["epoch"] for r in rows}
    eq(len(epochs), 1, "only the active daemon published")
    sql("TRUNCATE users; DELETE FROM pginval.outbox")


def test_poll_mode_sends_no_notify():
    fresh()
    sql("SELECT pginval.watch('users', ARRAY['id', 'email'], 'pginval', 'poll')")
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        sql("INSERT INTO users VALUES (9, 'p@x', 'n')")
        eq(next_msg(sub)["keys"], ["user:9", "user:email:p@x"])
        wait_empty()
    finally:
        d.stop()
    sql("SELECT pginval.watch('users', ARRAY['id', 'email'], 'pginval', "
        "'durable'); TRUNCATE users; DELETE FROM pginval.outbox")


def test_mixed_modes_still_reset_at_start():
    fresh()
    sql("CREATE TABLE notes (id int PRIMARY KEY); SELECT pginval.watch('notes')")
    sub = REDIS.subscribe("pginval")
    with daemon(sub):   # asserts the first message is a reset
        sql("INSERT INTO notes VALUES (1)")
        eq(next_msg(sub)["table"], "public.notes")
    sql("SELECT pginval.unwatch('notes')")


def test_outbox_off_warns_about_waiting_rows():
    fresh()
    sub = REDIS.subscribe("pginval")
    with pginval_proc.running(PG, REDIS) as d:
        d.wait_log("postgres: listening")
        sql("INSERT INTO users VALUES (11, 'w@x', 'n')")
        d.wait_log("[outbox] enabled is off")
    eq(outbox_rows(), 1, "the row waits for a daemon that drains")
    sub2 = REDIS.subscribe("pginval")
    d = start(sub2)
    try:
        eq(next_msg(sub2)["keys"], ["user:11", "user:email:w@x"])
    finally:
        d.stop()
    sub.close()
    sql("TRUNCATE users; DELETE FROM pginval.outbox")


if __name__ == "__main__":
    sys.exit(pginval_proc.main(globals()))
