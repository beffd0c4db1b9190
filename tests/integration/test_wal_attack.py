#!/usr/bin/env python3
"""wal mode under attack: hostile names, a table owner who changes the
table or the publication under the daemon, forged and huge messages in
the WAL, huge rows and wide transactions, another consumer on the slot,
a walsender killed again and again. Against a server started with
wal_level = logical.

    python3 tests/integration/test_wal_attack.py [-v] [name-substring ...]

As in test_wal.py, the slot of channel pginval lives for the whole file:
each test first reads what is left on the stream up to a sentinel
(sync()), then its own messages up to another one.
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import pginval_proc  # noqa: E402
from pginval_proc import (http_get, metric, peak_rss_kb,  # noqa: E402
                          next_msg, rows_of, run_bin, signed, wait_for)
from servers import PsqlError, free_port  # noqa: E402
from runner import eq  # noqa: E402


PG = None
REDIS = None
TABLES = {
    "public.users": "user:{id}, user:email:{email}",
    "public.sentinel": "sentinel:{id}",
}


def sql(text):
    return PG.psql(text).strip()


def setup():
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    sql("CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, "
        "name text);"
        "CREATE TABLE sentinel (id int PRIMARY KEY);"
        "CREATE TABLE plain (id int PRIMARY KEY, v text)")
    for t, columns in (("users", "ARRAY['id', 'email']"),
                       ("sentinel", "NULL")):
        sql("SELECT pginval.watch('%s', %s, 'pginval', 'wal')" % (t, columns))


def before_each():
    # What a test did to the table or the publication, undone.
    sql("SELECT pginval.watch('users', ARRAY['id', 'email'], 'pginval', "
        "'wal'); TRUNCATE users")


def daemon(**kw):
    kw.setdefault("tables", TABLES)
    return pginval_proc.Daemon(PG, REDIS, **kw)


def sync(sub, timeout=20):
    return pginval_proc.sentinel_sync(PG, sub, timeout)


def start(sub=None, **kw):
    d = daemon(**kw)
    d.start()
    d.wait_log("wal: streaming", 20)
    if sub is not None:
        sync(sub)
    return d




def user_ops(ms):
    """(op, keys) of the messages about users."""
    return [(m["op"], m["keys"]) for m in ms if m["table"] == "public.users"]


def reset_of(ms, table="public.users"):
    return [m for m in ms if m["op"] == "reset" and m["table"] == table]


# -- the table owner changes the table or the publication ------------------

def test_row_filter_column_list_and_options_are_undone():
    """A row filter, a column list or fewer kinds of change in the
    publication would hide changes from the slot for good (it decodes
    with the publication as it was): the event trigger undoes them."""
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        sql("INSERT INTO users VALUES (1, 'a@x')")
        sql("BEGIN; ALTER PUBLICATION pginval_pginval DROP TABLE users;"
            "ALTER PUBLICATION pginval_pginval ADD TABLE users "
            "WHERE (id > 100); COMMIT")
        sql("INSERT INTO users VALUES (5, 'f@x')")
        sql("BEGIN; ALTER PUBLICATION pginval_pginval DROP TABLE users;"
            "ALTER PUBLICATION pginval_pginval ADD TABLE users (id, email);"
            "COMMIT")
        sql("ALTER PUBLICATION pginval_pginval SET (publish = 'insert')")
        sql("UPDATE users SET email = 'g@x' WHERE id = 5")
        sql("ALTER PUBLICATION pginval_pginval SET "
            "(publish_via_partition_root = false)")
        sql("DELETE FROM users WHERE id = 5")
        ms = sync(sub)
        published = sql("SELECT pubupdate AND pubviaroot AND prqual IS NULL "
                        "AND prattrs IS NULL FROM pg_publication p JOIN "
                        "pg_publication_rel r ON r.prpubid = p.oid WHERE "
                        "pubname = 'pginval_pginval' AND "
                        "prrelid = 'users'::regclass")
    finally:
        d.stop()
    eq(published, "t", "published whole again")
    eq(user_ops(ms), [
        ("insert", ["user:1", "user:email:a@x"]),
        ("insert", ["user:5", "user:email:f@x"]),
        ("update", ["user:5", "user:email:f@x", "user:email:g@x"]),
        ("delete", ["user:5", "user:email:g@x"]),
    ])


def test_partly_published_table_is_reset_and_reported():
    """Without the event trigger (a non-superuser installed pginval.sql),
    a table published in part is not watched: what still comes is a
    reset of it, and check --connect names it."""
    sub = REDIS.subscribe("pginval")
    sql("ALTER EVENT TRIGGER pginval_publications DISABLE;"
        "BEGIN; ALTER PUBLICATION pginval_pginval DROP TABLE users;"
        "ALTER PUBLICATION pginval_pginval ADD TABLE users "
        "WHERE (id > 100); COMMIT")
    d = start(sub)
    try:
        sql("INSERT INTO users VALUES (500, 'g@x')")
        ms = sync(sub)
        r = run_bin("check", "--connect", "-c", d.config)
    finally:
        d.stop()
        sql("ALTER EVENT TRIGGER pginval_publications ENABLE")
    eq([m["op"] for m in ms if m["table"] == "public.users"], ["reset"])
    eq(r.returncode, 1, r.stdout + r.stderr)
    assert "[table public.users]" in r.stdout + r.stderr, r.stdout


def test_identity_weakened_after_watch():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        sql("INSERT INTO users VALUES (1, 'a@x')")
        sql("ALTER TABLE users REPLICA IDENTITY DEFAULT")
        sql("UPDATE users SET email = 'b@x'")
        # PostgreSQL itself refuses an UPDATE that it cannot publish.
        try:
            sql("ALTER TABLE users REPLICA IDENTITY NOTHING;"
                "UPDATE users SET email = 'c@x'")
            refused = ""
        except PsqlError as e:
            refused = str(e)
        ms = sync(sub)
    finally:
        d.stop()
    assert "does not have a replica identity" in refused, refused
    eq([m["op"] for m in ms if m["table"] == "public.users"],
       ["insert", "reset"])
    assert "replica identity" in reset_of(ms)[0]["reason"], ms
    assert "became a reset of its table" in d.log_text()


def test_watched_column_renamed_dropped_retyped():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        sql("INSERT INTO users VALUES (1, 'a@x')")
        sql("ALTER TABLE users RENAME email TO mail;"
            "UPDATE users SET mail = 'b@x'")
        sql("ALTER TABLE users RENAME mail TO email;"
            "ALTER TABLE users ALTER email TYPE json USING to_json(email);"
            "UPDATE users SET email = '\"c@x\"'")
        sql("ALTER TABLE users DROP COLUMN email;"
            "INSERT INTO users VALUES (2)")
        ms = sync(sub)
        assert d.alive()
    finally:
        d.stop()
        sql("ALTER TABLE users DROP COLUMN name;"
            "ALTER TABLE users ADD COLUMN email text;"
            "ALTER TABLE users ADD COLUMN name text")
    # (at least once: a reconnect may send some again)
    ops = [m["op"] for m in ms if m["table"] == "public.users"]
    eq(ops[0], "insert", ms)
    assert ops.count("reset") >= 3 and "update" not in ops, ms


def test_publication_dropped_and_made_again():
    """The slot cannot be decoded past a change made while its
    publication was gone, even once it is back: the daemon makes the slot
    again, with a reset, instead of failing (and sending the same
    transactions again) forever."""
    sub = REDIS.subscribe("pginval")
    d = start(sub, extra={"daemon.health_interval": "1"})
    try:
        sql("DROP PUBLICATION pginval_pginval")
        sql("INSERT INTO users VALUES (1, 'a@x')")    # decoded without it
        d.wait_log('publication "pginval_pginval" of channel "pginval" is '
                   'missing', 10)
        sql("SELECT pginval.watch('users', ARRAY['id', 'email'], "
            "'pginval', 'wal');"
            "SELECT pginval.watch('sentinel', NULL, 'pginval', 'wal')")
        d.wait_log("was dropped while replication slot", 10)
        sql("UPDATE users SET email = 'c@x'")
        ms = sync(sub, 15)
    finally:
        d.stop()
    resets = reset_of(ms)
    assert resets and "publication was dropped" in resets[0]["reason"], ms
    eq(user_ops(ms)[-1], ("update", ["user:1", "user:email:a@x",
                                     "user:email:c@x"]))


# -- names --------------------------------------------------------------

def test_channel_with_quotes_and_backslash():
    chan = 'we"ird\\cha\'n'
    sql("CREATE TABLE chan_t (id int PRIMARY KEY);"
        "SELECT pginval.watch('chan_t', NULL, %s, 'wal')"
        % ("'" + chan.replace("'", "''") + "'"))
    sub = REDIS.subscribe(chan)
    d = daemon(tables={}, extra={"postgres.channel": chan,
                                 "redis.channel": chan})
    try:
        d.start()
        d.wait_log("wal: streaming", 20)
        sql("INSERT INTO chan_t VALUES (1)")
        ms = [next_msg(sub, 10), next_msg(sub, 10)]
    finally:
        d.stop()
        sql("SELECT pginval.unwatch('chan_t'); DROP TABLE chan_t;"
            "SELECT pg_drop_replication_slot(slot_name) FROM "
            "pg_replication_slots WHERE slot_name LIKE 'pginval_we_ird_cha_n_%'")
    eq([(m["op"], m["table"]) for m in ms],
       [("reset", "public.chan_t"), ("insert", "public.chan_t")])
    eq(ms[1]["new"], {"id": "1"})


def test_slot_names_that_are_not_names_are_refused():
    for slot in ['a"b', "Upper", "a-b", "x" * 64, "sl\\ot", "é"]:
        d = daemon(extra={"postgres.slot": slot})
        r = run_bin("check", "-c", d.config)
        eq(r.returncode, 1, "slot %r: %s" % (slot, r.stdout + r.stderr))
        assert "is not a replication slot name" in r.stdout + r.stderr


HOSTILE_SCHEMA = 'sch "q" \\b'
HOSTILE_TABLE = "t\x01a\tb üx" + "é" * 27   # 63 bytes
HOSTILE_COLS = ['c"q\'', "sp ace\\", "ctl\x1b[31m", "ü" * 31 + "x"]


def test_hostile_names_come_as_the_triggers_send_them():
    def ident(s):
        return '"' + s.replace('"', '""') + '"'

    def lit(s):
        return "'" + s.replace("'", "''") + "'"
    assert len(HOSTILE_TABLE.encode()) == 63
    cols = ", ".join("%s text" % ident(c) for c in HOSTILE_COLS)
    arr = "ARRAY[%s]" % ", ".join(lit(c) for c in HOSTILE_COLS)
    sql("CREATE SCHEMA %s;"
        "CREATE TABLE %s.%s (id int PRIMARY KEY, %s);"
        "CREATE TABLE %s.twin (id int PRIMARY KEY, %s)"
        % (ident(HOSTILE_SCHEMA), ident(HOSTILE_SCHEMA),
           ident(HOSTILE_TABLE), cols, ident(HOSTILE_SCHEMA), cols))
    wal = "%s.%s" % (ident(HOSTILE_SCHEMA), ident(HOSTILE_TABLE))
    twin = "%s.twin" % ident(HOSTILE_SCHEMA)
    sql("SELECT pginval.watch(%s, %s, 'pginval', 'wal');"
        "SELECT pginval.watch(%s, %s, 'pginval', 'notify')"
        % (lit(wal), arr, lit(twin), arr))
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    values = "1, 'v\"1', E'v\\\\2', E'\\x1b]0;x\\x07', 'ü'"
    try:
        sql("INSERT INTO %s VALUES (%s); INSERT INTO %s VALUES (%s)"
            % (wal, values, twin, values))
        ms = sync(sub)
        ms = [m for m in ms if m["op"] == "insert"]
        while len(ms) < 2:
            m = next_msg(sub, 5)
            assert m is not None, ms
            ms.append(m)
    finally:
        d.stop()
        sql("SELECT pginval.unwatch(%s); SELECT pginval.unwatch(%s);"
            "DROP SCHEMA %s CASCADE" % (lit(wal), lit(twin),
                                        ident(HOSTILE_SCHEMA)))
    by = {m["table"]: m for m in ms}
    want = "%s.%s" % (HOSTILE_SCHEMA, HOSTILE_TABLE)
    assert want in by, sorted(by)
    eq(by[want]["new"], by[HOSTILE_SCHEMA + ".twin"]["new"],
       "the same columns and values as the triggers")
    eq(sorted(by[want]["new"]), sorted(HOSTILE_COLS))
    assert "\x1b" not in d.log_text() and "\x01" not in d.log_text()


# -- forged, huge and wide -------------------------------------------------

def test_forged_and_huge_messages_are_dropped_and_counted():
    sub = REDIS.subscribe("pginval")
    port = free_port()
    d = start(sub, extra={"metrics.listen": "127.0.0.1:%d" % port})
    try:
        # Valid-looking: the form of a signed payload, a wrong "m".
        sql("SELECT pg_logical_emit_message(true, 'pginval', '{\"v\":1,"
            "\"t\":\"public.users\",\"op\":\"truncate\",\"ts\":1,\"x\":1,"
            "\"m\":\"' || md5(g::text) || md5(g::text) || '\"}') "
            "FROM generate_series(1, 20000) g")
        # Signed right, but not transactional: never the triggers'.
        payload = signed(PG, '{"v":1,"t":"public.users","op":"truncate",'
                         '"ts":1,"x":1')
        sql("SELECT pg_logical_emit_message(false, 'pginval', %s) "
            "FROM generate_series(1, 100)" % ("'" + payload + "'"))
        sql("SELECT pg_logical_emit_message(false, 'pginval', "
            "repeat('y', 30000000))")
        sql("BEGIN; SELECT pg_logical_emit_message(true, 'pginval', "
            "repeat('y', 30000000)); INSERT INTO users VALUES (3, 'z');"
            "COMMIT")
        ms = sync(sub, 60)
        text = http_get(port, "/metrics")[1]
        hwm = peak_rss_kb(d.proc.pid)
    finally:
        d.stop()
    eq(user_ops(ms), [("insert", ["user:3", "user:email:z"])])
    # The 20,001 in transactions, and the 101 outside any.
    eq(metric(text, 'pginval_forged_payloads_total{source="wal"}'), 20102)
    lines = d.log_text().count("dropped a payload")
    assert 1 <= lines <= 30, "%d log lines" % lines
    # A message is read whole (libpq): memory follows the largest one,
    # not their number.
    if hwm is not None:
        assert hwm < 160 * 1024, "peak RSS %d kB" % hwm


def test_huge_values_become_a_reset_and_memory_stays_bounded():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        # 100 MB in an unwatched column: the message stays small.
        sql("INSERT INTO users VALUES (1, 'a', repeat('n', 100000000))")
        # 2 MB in a watched one: a reset, not a 6 MB message.
        sql("UPDATE users SET email = repeat('e', 2000000), name = 'm'")
        ms = sync(sub, 60)
        hwm = peak_rss_kb(d.proc.pid)
    finally:
        d.stop()
    eq([m["op"] for m in ms if m["table"] == "public.users"],
       ["insert", "reset"])
    assert len(str(ms[0])) < 1000
    assert "more than a message carries" in reset_of(ms)[0]["reason"], ms
    if hwm is not None:
        assert hwm < 450 * 1024, "peak RSS %d kB" % hwm


def test_many_unknown_tables_in_one_transaction():
    """3,000 tables added to the publication by hand, written in one
    transaction: a reset of each, no reconnect storm, and the changes of
    watched tables that follow arrive."""
    n = 3000
    for k in range(0, n, 500):
        sql("DO $$ BEGIN FOR i IN %d..%d LOOP EXECUTE format("
            "'CREATE TABLE wide%%s (id int PRIMARY KEY); ALTER PUBLICATION "
            "pginval_pginval ADD TABLE wide%%s', i, i); END LOOP; END $$"
            % (k + 1, k + 500))
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    try:
        sql("DO $$ BEGIN FOR i IN 1..%d LOOP EXECUTE format("
            "'INSERT INTO wide%%s VALUES (1)', i); END LOOP; END $$;"
            "INSERT INTO users VALUES (1, 'after')" % n)
        ms = sync(sub, 60)
        hwm = peak_rss_kb(d.proc.pid)
    finally:
        d.stop()
        for k in range(0, n, 500):
            sql("DO $$ BEGIN FOR i IN %d..%d LOOP EXECUTE format("
                "'DROP TABLE wide%%s', i); END LOOP; END $$" % (k + 1, k + 500))
    wide = [m for m in ms if (m["table"] or "").startswith("public.wide")]
    eq(len(wide), n)
    assert all(m["op"] == "reset" for m in wide)
    eq(user_ops(ms), [("insert", ["user:1", "user:email:after"])])
    eq(d.log_text().count("retrying in"), 0, "no reconnect")
    if hwm is not None:
        assert hwm < 64 * 1024, "peak RSS %d kB" % hwm


# -- other consumers, a hostile server ---------------------------------------

def test_another_consumer_on_the_slot_is_left_alone():
    sub = REDIS.subscribe("pginval")
    d = start(sub)
    d.stop()
    other = subprocess.Popen(
        [os.path.join(PG.bindir, "pg_recvlogical"), "-d", PG.dsn(),
         "--slot", "pginval_pginval", "--start", "-o", "proto_version=1",
         "-o", "publication_names=pginval_pginval", "-f", "-"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: sql("SELECT active FROM pg_replication_slots WHERE "
                             "slot_name = 'pginval_pginval'") == "t",
                 "pg_recvlogical to hold the slot")
        d = daemon()
        d.start()
        d.wait_log('replication slot "pginval_pginval" is active for PID')
        d.wait_log("retrying in")
        time.sleep(1)
        eq(other.poll(), None, "the other consumer still runs")
    finally:
        other.terminate()
        other.wait()
    try:
        d.wait_log("wal: streaming", 20)
        sql("INSERT INTO users VALUES (9, 'q')")
        ms = sync(sub)
    finally:
        d.stop()
    eq(user_ops(ms), [("insert", ["user:9", "user:email:q"])])
    assert "ending it" not in d.log_text()


def test_walsender_terminated_again_and_again():
    sub = REDIS.subscribe("pginval")
    d = start(sub, extra={"daemon.health_interval": "1"})
    try:
        for i in range(20):
            sql("INSERT INTO users VALUES (%d, 'k')" % i)
            sql("SELECT pg_terminate_backend(active_pid) FROM "
                "pg_replication_slots WHERE slot_name = 'pginval_pginval'")
            time.sleep(0.05)
        ms = sync(sub, 60)
        assert d.alive()
    finally:
        d.stop()
    got = set(int(r["new"]["id"]) for m in ms for r in rows_of(m)
              if r["table"] == "public.users")
    eq(sorted(got), list(range(20)), "every row, at least once")


if __name__ == "__main__":
    sys.exit(pginval_proc.main(globals(),
                               pg_settings={"wal_level": "logical"}))
