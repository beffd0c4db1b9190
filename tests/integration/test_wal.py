#!/usr/bin/env python3
"""wal mode: capture from the WAL with pgoutput, end to end, against a
server started with wal_level = logical.

    python3 tests/integration/test_wal.py [-v] [name-substring ...]

The slot lives for the whole file, as it would in production: each daemon
resumes where the one before it stopped. So each test first reads what is
left on the stream up to a sentinel (sync()), and reads its own messages up
to another one.
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
from pginval_proc import (SLOW, http_get, metric, next_msg,  # noqa: E402
                          rows_of, strip, wait_for)
from proxy import Proxy  # noqa: E402
from servers import free_port  # noqa: E402
from runner import eq  # noqa: E402


PG = None
REDIS = None
TABLES = {
    "public.users": "user:{id}, user:email:{email}",
    "public.docs": "doc:{id}",
    "public.parent": "parent:{id}",
    "public.child": "child:{id}",
    "public.sentinel": "sentinel:{id}",
}
SENTINEL = [0]

# Column types whose values must reach subscribers with the same text
# from the WAL as from the triggers.
TYPES = [
    ("i2", "int2", "-32768"), ("i8", "int8", "9007199254740993"),
    ("num", "numeric", "'12.3400'"), ("nan", "numeric", "'NaN'"),
    ("b", "boolean", "true"), ("bf", "boolean", "false"),
    ("t", "text", "E'tab\\there \"quoted\" \\\\ back'"),
    ("vc", "varchar(5)", "'héllo'"), ("ch", "char(4)", "'ab'"),
    ("u", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    ("d", "date", "'2024-02-29'"), ("ts", "timestamp", "'2024-01-02 03:04:05.678'"),
    ("tsbc", "timestamp", "'0044-03-15 12:00:00 BC'"),
    ("tsi", "timestamp", "'infinity'"),
    ("tz", "timestamptz", "'2024-01-02 03:04:05+05:30'"),
    ("tm", "time", "'23:59:59.5'"), ("ttz", "timetz", "'10:00:00-04'"),
    ("iv", "interval", "'1 day 02:00:00'"), ("by", "bytea", "'\\x00ff'"),
    ("ip", "inet", "'10.0.0.1/8'"), ("mood", "mood", "'happy'"),
    ("dom", "short_text", "'dom'"), ("nul", "text", "NULL"),
]


def sql(text):
    return PG.psql(text).strip()


def before_each():
    sql("TRUNCATE users, docs, child, parent, plain")


def setup():
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    sql("CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
        "CREATE TABLE docs (id int PRIMARY KEY, body text, n int);"
        "CREATE TABLE parent (id int PRIMARY KEY);"
        "CREATE TABLE child (id int PRIMARY KEY, p int REFERENCES parent);"
        "CREATE TABLE sentinel (id int PRIMARY KEY);"
        "CREATE TABLE plain (id int PRIMARY KEY, v text);"
        "CREATE TYPE mood AS ENUM ('sad', 'happy');"
        "CREATE DOMAIN short_text AS text CHECK (length(VALUE) < 10);")
    cols = ", ".join("%s %s" % (c, t) for c, t, _ in TYPES)
    sql("CREATE TABLE typed (id int PRIMARY KEY, %s);"
        "CREATE TABLE typed_n (id int PRIMARY KEY, %s);" % (cols, cols))
    names = "ARRAY['id', %s]" % ", ".join("'%s'" % c for c, _, _ in TYPES)
    for t, columns in (("users", "ARRAY['id', 'email']"),
                       ("docs", "ARRAY['id', 'body', 'n']"),
                       ("parent", "NULL"), ("child", "NULL"),
                       ("sentinel", "NULL"), ("typed", names)):
        sql("SELECT pginval.watch('%s', %s, 'pginval', 'wal')" % (t, columns))


def daemon(**kw):
    kw.setdefault("tables", TABLES)
    return pginval_proc.Daemon(PG, REDIS, **kw)


def sync(sub, timeout=20):
    """The messages before a new sentinel row's, which the stream carries
    after everything committed earlier."""
    SENTINEL[0] += 1
    sql("INSERT INTO sentinel VALUES (%d)" % SENTINEL[0])
    out = []
    deadline = time.monotonic() + timeout * SLOW
    while True:
        m = next_msg(sub, max(0.01, deadline - time.monotonic()) / SLOW)
        assert m is not None, "no sentinel %d; before it: %r" % (
            SENTINEL[0], out[-5:])
        if m.get("table") == "public.sentinel" and m["op"] == "insert" and \
                int(m["new"]["id"]) == SENTINEL[0]:
            return out
        out.append(m)


def start(sub=None, **kw):
    """A daemon that is streaming, with what was left before it read."""
    d = daemon(**kw)
    d.start()
    d.wait_log("wal: streaming", 20)
    if sub is not None:
        sync(sub)
    return d


def ids(ms, table="public.users", image="new"):
    return [int(r[image]["id"]) for m in ms for r in rows_of(m)
            if r["table"] == table and image in r]


def test_first_start_makes_the_slot_and_resets():
    sub = REDIS.subscribe("pginval")
    d = daemon()
    try:
        d.start()
        d.wait_log("wal: streaming", 20)
        before = sync(sub)
        before_ts = int(sql("SELECT (extract(epoch FROM clock_timestamp()) "
                            "* 1e6)::int8"))
        sql("INSERT INTO users VALUES (1, 'a@x', 'n');"
            "UPDATE users SET email = 'b@x';"
            "UPDATE users SET name = 'm';"
            "DELETE FROM users")
        ms = sync(sub)
        eq(int(sql("SELECT count(*) FROM pg_replication_slots WHERE "
                   "slot_name = 'pginval_pginval' AND plugin = 'pgoutput'")),
           1, "the slot")
    finally:
        d.stop()
    resets = [m for m in before if m["op"] == "reset"]
    eq(sorted(m["table"] for m in resets if m["table"]),
       ["public.child", "public.docs", "public.parent", "public.sentinel",
        "public.typed", "public.users"], "a reset of each wal table")
    assert "slot was made" in resets[0]["reason"], resets[0]
    eq([strip(m) for m in ms], [
        {"op": "insert", "table": "public.users",
         "keys": ["user:1", "user:email:a@x"],
         "new": {"id": "1", "email": "a@x"}},
        {"op": "update", "table": "public.users",
         "keys": ["user:1", "user:email:a@x", "user:email:b@x"],
         "old": {"id": "1", "email": "a@x"}, "new": {"id": "1", "email": "b@x"}},
        {"op": "update", "table": "public.users",
         "keys": ["user:1", "user:email:b@x"],
         "old": {"id": "1", "email": "b@x"}, "new": {"id": "1", "email": "b@x"}},
        {"op": "delete", "table": "public.users",
         "keys": ["user:1", "user:email:b@x"],
         "old": {"id": "1", "email": "b@x"}},
    ])
    # ts is the commit's time, not the daemon's.
    assert all(before_ts <= m["ts"] for m in ms), ms
    assert all(ms[i]["ts"] <= ms[i + 1]["ts"] for i in range(3)), ms


def test_values_have_the_triggers_text():
    names = "ARRAY['id', %s]" % ", ".join("'%s'" % c for c, _, _ in TYPES)
    sql("SELECT pginval.watch('typed_n', %s, 'pginval', 'notify')" % names)
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        values = ", ".join(v for _, _, v in TYPES)
        sql("INSERT INTO typed VALUES (1, %s);"
            "INSERT INTO typed_n VALUES (1, %s)" % (values, values))
        ms = sync(sub)
    finally:
        d.stop()
    sql("SELECT pginval.unwatch('typed_n')")
    by = {m["table"]: m for m in ms}
    eq(by["public.typed"]["new"], by["public.typed_n"]["new"],
       "the same text from the WAL as from the triggers")


def test_restart_resumes_without_a_reset():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    d.stop()
    # Written while no daemon runs: the slot keeps it.
    sql("INSERT INTO users SELECT g, 'r' || g FROM generate_series(1, 300) g")
    d = daemon()
    try:
        d.start()
        ms = sync(sub)
    finally:
        d.stop()
    eq(ms[0]["seq"], 1, "a new epoch, and no reset before the changes")
    assert not [m for m in ms if m["op"] == "reset"], ms
    eq(sorted(ids(ms)), list(range(1, 301)))
    sql("DELETE FROM users")


def test_unchanged_toast_value_comes_from_the_old_image():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        # Random text does not compress: stored out of line.
        sql("INSERT INTO docs SELECT 1, string_agg(md5(g::text), '') "
            "FROM generate_series(1, 400) g")
        sql("UPDATE docs SET n = 1")
        ms = sync(sub)
    finally:
        d.stop()
    body = sql("SELECT body FROM docs WHERE id = 1")
    eq([m["op"] for m in ms], ["insert", "update"])
    eq(ms[1]["new"]["body"], body, "the unchanged value, from the old image")
    eq(ms[1]["old"]["body"], body)
    sql("DELETE FROM docs")


def test_truncate_of_several_tables_and_cascade():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        sql("INSERT INTO parent VALUES (1); INSERT INTO child VALUES (1, 1);"
            "TRUNCATE parent CASCADE;"
            "INSERT INTO users VALUES (1, 'x');"
            "TRUNCATE users, docs")
        ms = sync(sub)
    finally:
        d.stop()
    truncs = [m["table"] for m in ms if m["op"] == "truncate"]
    eq(sorted(truncs[:2]), ["public.child", "public.parent"], "cascade")
    eq(sorted(truncs[2:]), ["public.docs", "public.users"], "one statement")


def test_schema_changes():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        sql("ALTER TABLE docs ADD COLUMN extra int;"
            "INSERT INTO docs VALUES (7, 'b', 1, 2);"
            "ALTER TABLE docs RENAME TO docs2;"
            "INSERT INTO docs2 VALUES (8, 'c', 1, 2);"
            "ALTER TABLE docs2 RENAME TO docs;"
            "ALTER TABLE docs DROP COLUMN body;"
            "INSERT INTO docs VALUES (9, 1, 2)")
        ms = sync(sub)
        sql("ALTER TABLE docs ADD COLUMN body text")
        assert d.alive()
    finally:
        d.stop()
    eq([(m["table"], m["new"]) for m in ms], [
        ("public.docs", {"id": "7", "body": "b", "n": "1"}),
        ("public.docs2", {"id": "8", "body": "c", "n": "1"}),
        ("public.docs", {"id": "9", "n": "1"}),
    ], "renamed tables go by their new name; dropped columns are left out")
    sql("DELETE FROM docs")


def test_only_unwatched_writes_still_advance_the_slot():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        sql("INSERT INTO plain SELECT g, 'v' FROM generate_series(1, 2000) g")
        target = sql("SELECT pg_current_wal_lsn()")
        wait_for(lambda: sql(
            "SELECT confirmed_flush_lsn >= '%s' FROM pg_replication_slots "
            "WHERE slot_name = 'pginval_pginval'" % target) == "t",
            "the slot to be confirmed past unwatched writes", 30)
        eq(sync(sub), [], "nothing published for them")
    finally:
        d.stop()


def test_sigkill_in_a_large_transaction_loses_nothing():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    n = 100000
    try:
        sql("INSERT INTO users SELECT g, 'k' || g FROM "
            "generate_series(1, %d) g" % n)
        got = set()
        while len(got) < 1000:
            m = next_msg(sub, 20)
            assert m is not None, "nothing streamed"
            got.update(ids([m]))
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
    finally:
        d.kill()
    d = daemon()
    try:
        d.start()
        ms = sync(sub, 120)
    finally:
        d.stop()
    got.update(ids(ms))
    eq(len(got), n, "every row, once at least")
    sql("DELETE FROM users")
    sync_after = start(sub)
    sync_after.stop()


def test_postgres_immediate_restart_loses_nothing():
    sub = REDIS.subscribe("pginval")
    d = start(sub, extra={"daemon.health_interval": "1"})
    try:
        sql("INSERT INTO users SELECT g, 'p' FROM generate_series(1, 50) g")
        PG.restart("immediate")
        sql("INSERT INTO users SELECT g, 'p' FROM generate_series(51, 100) g")
        ms = sync(sub, 60)
    finally:
        d.stop()
    # The test server commits asynchronously: an immediate shutdown may
    # lose the last commits. What is in the table is the truth.
    want = [int(i) for i in sql("SELECT id FROM users ORDER BY id").split()]
    assert len(want) >= 50, want
    eq(sorted(set(ids(ms))), want)
    assert not [m for m in ms if m["op"] == "reset"], "no reset needed"
    sql("DELETE FROM users")


def test_redis_outage_loses_nothing():
    sub = REDIS.subscribe("pginval")
    d = start(sub, extra={"redis.command_timeout": "1",
                          "daemon.health_interval": "1"})
    try:
        os.kill(REDIS.proc.pid, signal.SIGSTOP)
        try:
            sql("INSERT INTO users SELECT g, 'o' FROM "
                "generate_series(1, 500) g")
            time.sleep(3)
        finally:
            os.kill(REDIS.proc.pid, signal.SIGCONT)
        sub = REDIS.subscribe("pginval")
        # What went out while the subscriber was frozen too is in the
        # slot until acknowledged: the daemon sends it again.
        ms = sync(sub, 60)
        sql("INSERT INTO users SELECT g, 'o' FROM generate_series(501, 600) g")
        ms += sync(sub)
    finally:
        d.stop()
    got = set(ids(ms))
    assert set(range(501, 601)) <= got, sorted(set(range(501, 601)) - got)[:5]
    sql("DELETE FROM users")


def test_dropped_slot_is_made_again_with_a_reset():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    d.stop()
    sql("SELECT pg_drop_replication_slot('pginval_pginval')")
    sql("INSERT INTO users VALUES (42, 'gone')")   # not in any slot
    d = daemon()
    try:
        d.start()
        d.wait_log("wal: streaming", 20)
        ms = sync(sub)
    finally:
        d.stop()
    resets = [m for m in ms if m["op"] == "reset"]
    assert "public.users" in [m["table"] for m in resets], ms
    assert "slot was made" in resets[0]["reason"]
    sql("DELETE FROM users")


def test_invalidated_slot_is_made_again_with_a_reset():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    d.stop()
    sql("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB';"
        "SELECT pg_reload_conf()")
    try:
        for _ in range(6):
            sql("INSERT INTO plain SELECT g, repeat('w', 500) FROM "
                "generate_series(1, 2000) g ON CONFLICT (id) DO UPDATE "
                "SET v = EXCLUDED.v || 'x'; SELECT pg_switch_wal(); CHECKPOINT")
            if sql("SELECT wal_status FROM pg_replication_slots WHERE "
                   "slot_name = 'pginval_pginval'") == "lost":
                break
        eq(sql("SELECT wal_status FROM pg_replication_slots WHERE "
               "slot_name = 'pginval_pginval'"), "lost", "invalidated")
        d = daemon()
        d.start()
        try:
            d.wait_log("wal: streaming", 20)
            ms = sync(sub, 30)
        finally:
            d.stop()
    finally:
        sql("ALTER SYSTEM RESET max_slot_wal_keep_size;"
            "SELECT pg_reload_conf()")
    resets = [m for m in ms if m["op"] == "reset"]
    assert resets and "invalidated" in resets[0]["reason"], ms
    assert "invalidated" in d.log_text()


def test_half_open_link_is_noticed():
    proxy = Proxy(PG.host, PG.port)

    class ProxiedPg:
        conninfo = "host=127.0.0.1 port=%d dbname=%s user=%s" % (
            proxy.port, PG.dbname, PG.user)

    sub = REDIS.subscribe("pginval")
    d = pginval_proc.Daemon(ProxiedPg, REDIS, tables=TABLES, extra={
        "daemon.health_interval": "1", "postgres.connect_timeout": "2"})
    try:
        d.start()
        d.wait_log("wal: streaming", 20)
        sync(sub)
        proxy.blackhole()
        sql("INSERT INTO users SELECT g, 'h' FROM generate_series(1, 20) g")
        d.wait_log("wal: no word from the server", 15)
        proxy.heal()
        ms = sync(sub, 30)
    finally:
        d.stop()
        proxy.close()
    eq(sorted(set(ids(ms))), list(range(1, 21)))
    sql("DELETE FROM users")


def test_two_channels_two_slots():
    sql("CREATE TABLE other (id int PRIMARY KEY);"
        "SELECT pginval.watch('other', NULL, 'chan2', 'wal')")
    sub = REDIS.subscribe("pginval")
    sub2 = REDIS.subscribe("chan2")
    d = start(sub)
    d2 = daemon(tables={"public.other": "other:{id}"},
                extra={"postgres.channel": "chan2", "redis.channel": "chan2"})
    try:
        d2.start()
        d2.wait_log("wal: streaming", 20)
        next_msg(sub2, 10)   # the new slot's reset
        sql("INSERT INTO other VALUES (1); INSERT INTO users VALUES (5, 'c')")
        ms = sync(sub)
        m2 = next_msg(sub2, 10)
    finally:
        d.stop()
        d2.stop()
    eq([m["table"] for m in ms], ["public.users"])
    eq((m2["table"], m2["keys"]), ("public.other", ["other:1"]))
    eq(sql("SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM "
           "pg_replication_slots"), "pginval_chan2,pginval_pginval")
    sql("SELECT pg_drop_replication_slot('pginval_chan2');"
        "SELECT pginval.unwatch('other'); DELETE FROM users")


def test_delete_action_and_metrics():
    sub = REDIS.subscribe("pginval")
    port = free_port()
    d = start(sub, extra={"redis.action": "delete",
                          "metrics.listen": "127.0.0.1:%d" % port,
                          "daemon.health_interval": "1"})
    try:
        REDIS.command("SET", "user:3", "cached")
        sql("INSERT INTO users VALUES (3, 'd')")
        sync(sub)
        eq(REDIS.command("EXISTS", "user:3"), 0, "unlinked")
        wait_for(lambda: "pginval_wal_retained_bytes" in
                 http_get(port, "/metrics")[1], "slot sizes", 10)
        text = http_get(port, "/metrics")[1]
    finally:
        d.stop()
    eq(metric(text, "pginval_wal_up"), 1)
    assert metric(text, "pginval_wal_changes_total") >= 1
    assert metric(text, "pginval_wal_retained_bytes") >= 0
    sql("DELETE FROM users")


if __name__ == "__main__":
    sys.exit(pginval_proc.main(globals(),
                               pg_settings={"wal_level": "logical"}))
