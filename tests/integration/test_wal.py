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
sys.path.insert(0, os.path.join(ROOT, "tests", "consistency"))

import harness  # noqa: E402
import pginval_proc  # noqa: E402
from pginval_proc import (http_get, metric, peak_rss_kb,  # noqa: E402
                          next_msg, rows_of, run_bin, strip, wait_for)
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
    "public.events": "event:{id}",
}

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
    sql("TRUNCATE users, docs, child, parent, plain, events")


def setup():
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    sql("CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
        "CREATE TABLE docs (id int PRIMARY KEY, body text, n int);"
        "CREATE TABLE parent (id int PRIMARY KEY);"
        "CREATE TABLE child (id int PRIMARY KEY, p int REFERENCES parent);"
        "CREATE TABLE sentinel (id int PRIMARY KEY);"
        "CREATE TABLE plain (id int PRIMARY KEY, v text);"
        "CREATE TABLE events (id int, at int, PRIMARY KEY (id, at)) "
        "PARTITION BY RANGE (at);"
        "CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM (0) TO (10);"
        "CREATE TABLE events_2 PARTITION OF events FOR VALUES FROM (10) TO (20);"
        "CREATE TYPE mood AS ENUM ('sad', 'happy');"
        "CREATE DOMAIN short_text AS text CHECK (length(VALUE) < 10);")
    cols = ", ".join("%s %s" % (c, t) for c, t, _ in TYPES)
    sql("CREATE TABLE typed (id int PRIMARY KEY, %s);"
        "CREATE TABLE typed_n (id int PRIMARY KEY, %s);" % (cols, cols))
    names = "ARRAY['id', %s]" % ", ".join("'%s'" % c for c, _, _ in TYPES)
    for t, columns in (("users", "ARRAY['id', 'email']"),
                       ("docs", "ARRAY['id', 'body', 'n']"),
                       ("parent", "NULL"), ("child", "NULL"),
                       ("sentinel", "NULL"), ("typed", names),
                       ("events", "NULL")):
        sql("SELECT pginval.watch('%s', %s, 'pginval', 'wal')" % (t, columns))


def daemon(**kw):
    kw.setdefault("tables", TABLES)
    return pginval_proc.Daemon(PG, REDIS, **kw)


def sync(sub, timeout=20):
    return pginval_proc.sentinel_sync(PG, sub, timeout)


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
    sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        "WHERE slot_name = 'pginval_pginval'")
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
       ["public.child", "public.docs", "public.events", "public.parent",
        "public.sentinel", "public.typed", "public.users"],
       "a reset of each wal table")
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


def test_update_of_columns_outside_the_key():
    """The identity is the primary key (DEFAULT): the WAL sends no old
    values, and the old image is the new one, as the triggers send it."""
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        sql("INSERT INTO child (id) VALUES (5); UPDATE child SET p = NULL;"
            "UPDATE child SET id = 6")
        ms = sync(sub)
    finally:
        d.stop()
    eq([strip(m) for m in ms], [
        {"op": "insert", "table": "public.child", "keys": ["child:5"],
         "new": {"id": "5"}},
        {"op": "update", "table": "public.child", "keys": ["child:5"],
         "old": {"id": "5"}, "new": {"id": "5"}},
        {"op": "update", "table": "public.child",
         "keys": ["child:5", "child:6"],
         "old": {"id": "5"}, "new": {"id": "6"}},
    ])


def test_rows_off_sends_keys_only():
    sub = REDIS.subscribe("pginval")
    d = start(sub, extra={"redis.rows": "off"})
    try:
        sql("INSERT INTO users VALUES (1, 'a@x', 'n');"
            "UPDATE users SET email = 'b@x';"
            "DELETE FROM users;"
            "INSERT INTO child (id) VALUES (7), (8)")
        ms = sync(sub)
    finally:
        d.stop()
    # A merge may join the two children: their keys, in order, either way.
    eq([strip(m) for m in ms[:3]], [
        {"op": "insert", "table": "public.users",
         "keys": ["user:1", "user:email:a@x"]},
        {"op": "update", "table": "public.users",
         "keys": ["user:1", "user:email:a@x", "user:email:b@x"]},
        {"op": "delete", "table": "public.users",
         "keys": ["user:1", "user:email:b@x"]},
    ])
    eq([k for m in ms[3:] for k in m["keys"]], ["child:7", "child:8"])
    eq([sorted(set(m) & {"old", "new", "rows"}) for m in ms],
       [[]] * len(ms), "no row images")


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
        sql("INSERT INTO docs (id, body) SELECT 1, string_agg(md5(g::text), '') "
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


def test_partitions_go_by_the_root_and_their_truncates_arrive():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        sql("INSERT INTO events_1 VALUES (1, 5); INSERT INTO events VALUES "
            "(2, 15); UPDATE events SET at = 12 WHERE id = 1")
        # pgoutput does not publish a partition's TRUNCATE as the root's:
        # pginval's trigger puts it into the WAL, signed.
        sql("TRUNCATE events_2")
        sql("INSERT INTO events VALUES (3, 3); TRUNCATE events")
        ms = sync(sub)
    finally:
        d.stop()
    # A row that moves to another partition is published as its delete
    # and its insert.
    eq([(m["op"], m["table"], m["keys"]) for m in ms], [
        ("insert", "public.events", ["event:1"]),
        ("insert", "public.events", ["event:2"]),
        ("delete", "public.events", ["event:1"]),
        ("insert", "public.events", ["event:1"]),
        ("truncate", "public.events", []),
        ("insert", "public.events", ["event:3"]),
        ("truncate", "public.events", []),
    ])


def test_forged_messages_in_the_wal_are_dropped():
    sub = REDIS.subscribe("pginval")
    port = free_port()
    d = start(sub, extra={"metrics.listen": "127.0.0.1:%d" % port})
    try:
        # Anyone may write a logical decoding message; without the
        # triggers' authenticator it is counted, logged and dropped.
        sql("BEGIN; SELECT pg_logical_emit_message(true, 'pginval', "
            "'{\"v\":1,\"t\":\"public.users\",\"op\":\"truncate\","
            "\"ts\":1,\"x\":1}'); INSERT INTO plain VALUES (1, 'x'); COMMIT")
        ms = sync(sub)
        text = http_get(port, "/metrics")[1]
    finally:
        d.stop()
    eq(ms, [], "nothing published")
    eq(metric(text, 'pginval_forged_payloads_total{source="wal"}'), 1)
    assert "dropped a payload" in d.log_text()


def test_schema_changes():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        sql("ALTER TABLE docs ADD COLUMN extra int;"
            "INSERT INTO docs (id, body, n, extra) VALUES (7, 'b', 1, 2);"
            "ALTER TABLE docs RENAME TO docs2;"
            "INSERT INTO docs2 (id, body, n, extra) VALUES (8, 'c', 1, 2);"
            "ALTER TABLE docs2 RENAME TO docs;"
            "ALTER TABLE docs DROP COLUMN body;"
            "INSERT INTO docs (id, n, extra) VALUES (9, 1, 2)")
        ms = sync(sub)
        sql("ALTER TABLE docs ADD COLUMN body text; "
            "ALTER TABLE docs DROP COLUMN extra")
        # A watched table dropped: the others go on.
        sql("CREATE TABLE gone (id int PRIMARY KEY);"
            "SELECT pginval.watch('gone', NULL, 'pginval', 'wal');"
            "INSERT INTO gone VALUES (1); DROP TABLE gone;"
            "INSERT INTO users VALUES (77, 'after')")
        after = sync(sub)
        assert d.alive()
    finally:
        d.stop()
    eq([(m["table"], m["new"]) for m in ms], [
        ("public.docs", {"id": "7", "body": "b", "n": "1"}),
        ("public.docs2", {"id": "8", "body": "c", "n": "1"}),
        ("public.docs", {"id": "9", "n": "1"}),
    ], "renamed tables go by their new name; dropped columns are left out")
    # A table watched since the stream began makes the daemon read the
    # watched columns again (and what was not confirmed yet comes again);
    # dropped by then, its change is a reset of it, never a guess.
    gone = [m["op"] for m in after if m["table"] == "public.gone"]
    assert gone in (["insert"], ["reset"]), after
    eq((after[-1]["op"], after[-1]["keys"]),
       ("insert", ["user:77", "user:email:after"]))
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
        hwm = peak_rss_kb(d.proc.pid)
    finally:
        d.stop()
    got.update(ids(ms))
    eq(len(got), n, "every row, once at least")
    # The stream waits in the slot while the queue is at its bounds
    # (max_queue_bytes, 4 MB): memory does not grow with the transaction.
    if hwm is not None:
        assert hwm < 32 * 1024, "peak RSS %d kB" % hwm
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
    # Earlier changes may come again too (at least once).
    want = [int(i) for i in sql("SELECT id FROM users ORDER BY id").split()]
    assert len(want) >= 50, want
    got = set(int(r["new"]["id"]) for m in ms for r in rows_of(m)
              if r["table"] == "public.users" and
              r.get("new", {}).get("email") == "p")
    eq(sorted(got), want)
    # (Older changes may come again, resets among them; none for this.)
    assert not [m for m in ms if m["op"] == "reset" and
                m["table"] in (None, "public.users")], "no reset needed"
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
        try:
            ms = sync(sub, 30)
        except AssertionError:
            print(d.log_text()[-5000:])
            raise
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


def test_check_connect_says_what_wal_mode_needs():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    d.stop()
    r = run_bin("check", "--connect", "-c", d.config)
    out = r.stdout + r.stderr
    eq(r.returncode, 0, out)
    assert "ok: replication slot pginval_pginval keeps" in out, out
    assert "note: max_slot_wal_keep_size is -1" in out, out
    # Taken out of its publication by hand: its changes stop coming.
    sql("ALTER PUBLICATION pginval_pginval DROP TABLE docs")
    r = run_bin("check", "--connect", "-c", d.config)
    sql("ALTER PUBLICATION pginval_pginval ADD TABLE docs")
    out = r.stdout + r.stderr
    eq(r.returncode, 1, out)
    assert "[table public.docs]" in out, out
    # A role that may not stream, and a slot name taken by another kind.
    sql("CREATE ROLE norep LOGIN; GRANT SELECT ON pginval.secret TO norep;"
        "SELECT pg_create_physical_replication_slot('taken')")

    class AsNorep:
        conninfo = "host=%s port=%d dbname=%s user=norep" % (
            PG.host, PG.port, PG.dbname)
    d2 = pginval_proc.Daemon(AsNorep, REDIS, tables=TABLES,
                             extra={"postgres.slot": "taken"})
    r = run_bin("check", "--connect", "-c", d2.config)
    out = r.stdout + r.stderr
    sql("SELECT pg_drop_replication_slot('taken'); DROP OWNED BY norep;"
        "DROP ROLE norep")
    eq(r.returncode, 1, out)
    assert "fix: ALTER ROLE norep REPLICATION" in out, out
    assert "replication slot taken exists but is not a pgoutput slot" in out, \
        out


def test_a_role_of_its_own_streams():
    """The daemon's role as the docs have it: REPLICATION, and SELECT on
    the key; not the tables' owner, not a superuser."""
    sql("CREATE ROLE pgi LOGIN REPLICATION; "
        "GRANT SELECT ON pginval.secret TO pgi")

    class AsPgi:
        conninfo = "host=%s port=%d dbname=%s user=pgi" % (
            PG.host, PG.port, PG.dbname)
    sub = REDIS.subscribe("pginval")
    d = pginval_proc.Daemon(AsPgi, REDIS, tables=TABLES)
    try:
        d.start()
        d.wait_log("wal: streaming", 20)
        sync(sub)
        sql("INSERT INTO users VALUES (9, 'own')")
        ms = sync(sub)
    finally:
        d.stop()
        sql("DROP OWNED BY pgi; DROP ROLE pgi")
    eq([(m["op"], m["keys"]) for m in ms],
       [("insert", ["user:9", "user:email:own"])])


def test_apply_deletes_what_the_wal_made_stale():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    a = harness.Apply(PG, REDIS, TABLES)
    try:
        a.start()
        REDIS.command("SET", "user:4", "cached")
        REDIS.command("SET", "user:email:w@x", "cached")
        sql("INSERT INTO users VALUES (4, 'w@x')")
        sync(sub)
        wait_for(lambda: REDIS.command("EXISTS", "user:4", "user:email:w@x")
                 == 0, "apply to delete the keys")
    finally:
        a.stop()
        d.stop()


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
