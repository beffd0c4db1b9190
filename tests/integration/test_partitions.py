#!/usr/bin/env python3
"""Partitioned tables: watching the root covers every partition.

A root watched with pginval.watch() invalidates for every partition of its
tree, whenever it was created or attached, at any depth, under the root's
name, for writes through the root and writes straight into a partition,
in every delivery mode; TRUNCATE of the root or of one partition is one
truncate of the root; a row moved by an update of the partition key
invalidates its old key and its new one. A partition watched on its own
keeps working, and `pginval check --connect` names what is left uncovered.
Each test asserts the messages that reach the Redis channel from the
binary, against a real PostgreSQL.

    python3 tests/integration/test_partitions.py [-v] [name-substring ...]
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import pginval_proc  # noqa: E402
from pginval_proc import (changes, msgs, run_bin, settle,  # noqa: E402
                          strip, wait_for)
from runner import eq  # noqa: E402
from servers import PsqlError  # noqa: E402

PG = None
REDIS = None

TABLES = {"public.meas": "meas:{id}:{day}",
          "public.jobs": "job:{id}",
          "public.alone_1": "alone:{id}"}
OUTBOX = {"outbox.enabled": "on", "outbox.poll_interval": "0.05"}


def sql(text):
    return PG.psql(text)


def daemon(sub, tables=None):
    return pginval_proc.running(PG, REDIS, sub, tables=tables or TABLES,
                                extra=OUTBOX)


def summary(rows):
    """(table, op, keys of the message) for each row change."""
    return [(r["table"], r["op"], r.get("old"), r.get("new")) for r in rows]


def setup():
    pginval_proc.template_database(PG)
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    sql("""
        CREATE TABLE meas (id int, day date, v text, PRIMARY KEY (id, day))
            PARTITION BY RANGE (day);
        CREATE TABLE meas_2024_01 PARTITION OF meas
            FOR VALUES FROM ('2024-01-01') TO ('2024-02-01');
        SELECT pginval.watch('meas', ARRAY['id', 'day']);
    """)


def before_each():
    pginval_proc.fresh_database(PG)


PARTITIONS = {
    "meas_2024_02": "CREATE TABLE meas_2024_02 PARTITION OF meas "
                    "FOR VALUES FROM ('2024-02-01') TO ('2024-03-01');",
    "meas_2025": "CREATE TABLE meas_2025 PARTITION OF meas "
                 "FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') "
                 "PARTITION BY RANGE (day);"
                 "CREATE TABLE meas_2025_h1 PARTITION OF meas_2025 "
                 "FOR VALUES FROM ('2025-01-01') TO ('2025-07-01');"
                 "CREATE TABLE meas_2025_h2 PARTITION OF meas_2025 "
                 "FOR VALUES FROM ('2025-07-01') TO ('2026-01-01') "
                 "PARTITION BY RANGE (day);"
                 "CREATE TABLE meas_2025_q4 PARTITION OF meas_2025_h2 "
                 "FOR VALUES FROM ('2025-10-01') TO ('2026-01-01');",
}


def partitions(*names):
    """Adds partitions of meas that a test needs (before its daemon
    starts: nothing is sent)."""
    sql("".join(PARTITIONS[n] for n in names))


def test_partition_created_after_watch():
    sub = REDIS.subscribe("pginval")
    with daemon(sub):
        sql("CREATE TABLE meas_2024_02 PARTITION OF meas "
            "FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')")
        sql("INSERT INTO meas VALUES (1, '2024-02-03', 'a'), "
            "(2, '2024-01-05', 'b')")
        sql("INSERT INTO meas_2024_02 VALUES (3, '2024-02-04', 'c')")
        sql("UPDATE meas_2024_02 SET v = 'x' WHERE id = 3")
        sql("DELETE FROM meas_2024_02 WHERE id = 1")
        rows = changes(sub, 5)
        eq(summary(rows), [
            ("public.meas", "insert", None, {"id": "1", "day": "2024-02-03"}),
            ("public.meas", "insert", None, {"id": "2", "day": "2024-01-05"}),
            ("public.meas", "insert", None, {"id": "3", "day": "2024-02-04"}),
            ("public.meas", "update", {"id": "3", "day": "2024-02-04"},
             {"id": "3", "day": "2024-02-04"}),
            ("public.meas", "delete", {"id": "1", "day": "2024-02-03"}, None),
        ], "through the root and straight into the new partition")
        eq(rows[2]["msg"]["keys"], ["meas:3:2024-02-04"], "the root's keys")
        eq(settle(sub, PG), [], "nothing more")
    sql("TRUNCATE meas")


def test_partition_attached_after_watch():
    sub = REDIS.subscribe("pginval")
    with daemon(sub):
        sql("CREATE TABLE meas_2024_03 (id int NOT NULL, day date NOT NULL, "
            "v text);"
            "INSERT INTO meas_2024_03 VALUES (10, '2024-03-01', 'old');"
            "ALTER TABLE meas ATTACH PARTITION meas_2024_03 "
            "FOR VALUES FROM ('2024-03-01') TO ('2024-04-01')")
        sql("UPDATE meas_2024_03 SET v = 'new' WHERE id = 10")
        sql("INSERT INTO meas VALUES (11, '2024-03-02', 'r')")
        sql("DELETE FROM meas_2024_03")
        eq(summary(changes(sub, 4)), [
            ("public.meas", "update", {"id": "10", "day": "2024-03-01"},
             {"id": "10", "day": "2024-03-01"}),
            ("public.meas", "insert", None, {"id": "11", "day": "2024-03-02"}),
            ("public.meas", "delete", {"id": "10", "day": "2024-03-01"}, None),
            ("public.meas", "delete", {"id": "11", "day": "2024-03-02"}, None),
        ], "the attached partition speaks for the root")
        eq(settle(sub, PG), [], "nothing more")
        # Detached, it no longer does: its triggers go with it.
        sql("ALTER TABLE meas DETACH PARTITION meas_2024_03;"
            "INSERT INTO meas_2024_03 VALUES (12, '2024-03-03', 'gone')")
        eq(settle(sub, PG), [], "nothing more")
        eq(sql("SELECT count(*) FROM pg_trigger WHERE tgrelid = "
               "'meas_2024_03'::regclass AND tgname LIKE 'pginval%'").strip(),
           "0", "no pginval trigger left on the detached table")


def test_partition_key_update_invalidates_both_keys():
    partitions("meas_2024_02")
    sub = REDIS.subscribe("pginval")
    with daemon(sub):
        sql("INSERT INTO meas VALUES (20, '2024-01-10', 'a'), "
            "(21, '2024-01-11', 'b')")
        changes(sub, 2)
        # Moves one row to another partition, and leaves the other.
        sql("UPDATE meas SET day = day + CASE id WHEN 20 THEN 30 ELSE 1 END "
            "WHERE id IN (20, 21)")
        rows = changes(sub, 2)
        eq(sorted(summary(rows), key=str), sorted([
            ("public.meas", "update", {"id": "20", "day": "2024-01-10"},
             {"id": "20", "day": "2024-02-09"}),
            ("public.meas", "update", {"id": "21", "day": "2024-01-11"},
             {"id": "21", "day": "2024-01-12"}),
        ], key=str), "old and new rows paired")
        keys = sorted(k for m in {id(r["msg"]): r["msg"] for r in rows}
                      .values() for k in m["keys"])
        eq(keys, ["meas:20:2024-01-10", "meas:20:2024-02-09",
                  "meas:21:2024-01-11", "meas:21:2024-01-12"],
           "the old keys and the new ones")
        eq(settle(sub, PG), [], "nothing more")
    sql("TRUNCATE meas")


def test_sub_partitioned_root():
    sub = REDIS.subscribe("pginval")
    with daemon(sub):
        sql("CREATE TABLE meas_2025 PARTITION OF meas "
            "FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') "
            "PARTITION BY RANGE (day);"
            "CREATE TABLE meas_2025_h1 PARTITION OF meas_2025 "
            "FOR VALUES FROM ('2025-01-01') TO ('2025-07-01');"
            "CREATE TABLE meas_2025_h2 PARTITION OF meas_2025 "
            "FOR VALUES FROM ('2025-07-01') TO ('2026-01-01') "
            "PARTITION BY RANGE (day);"
            "CREATE TABLE meas_2025_q4 PARTITION OF meas_2025_h2 "
            "FOR VALUES FROM ('2025-10-01') TO ('2026-01-01')")
        sql("INSERT INTO meas VALUES (30, '2025-02-01', 'root')")
        sql("INSERT INTO meas_2025 VALUES (31, '2025-03-01', 'middle')")
        sql("INSERT INTO meas_2025_h1 VALUES (32, '2025-04-01', 'leaf')")
        sql("INSERT INTO meas_2025_q4 VALUES (33, '2025-11-01', 'deep')")
        # Moves a row from one sub-tree of meas_2025 to the other.
        sql("UPDATE meas_2025 SET day = '2025-12-01' WHERE id = 31")
        eq(summary(changes(sub, 5)), [
            ("public.meas", "insert", None, {"id": "30", "day": "2025-02-01"}),
            ("public.meas", "insert", None, {"id": "31", "day": "2025-03-01"}),
            ("public.meas", "insert", None, {"id": "32", "day": "2025-04-01"}),
            ("public.meas", "insert", None, {"id": "33", "day": "2025-11-01"}),
            ("public.meas", "update", {"id": "31", "day": "2025-03-01"},
             {"id": "31", "day": "2025-12-01"}),
        ], "every level, under the root's name")
        eq(settle(sub, PG), [], "nothing more")
    sql("TRUNCATE meas")


def test_truncate_of_root_or_partition():
    partitions("meas_2024_02", "meas_2025")
    sub = REDIS.subscribe("pginval")
    with daemon(sub):
        sql("TRUNCATE meas_2024_01")
        m = msgs(sub, 1)[0]
        eq((m["op"], m["table"]), ("truncate", "public.meas"), "a partition")
        eq(settle(sub, PG), [], "nothing more")
        sql("TRUNCATE meas_2025")  # a partitioned partition, 3 below it
        m = msgs(sub, 1)[0]
        eq((m["op"], m["table"]), ("truncate", "public.meas"), "a sub-tree")
        eq(settle(sub, PG), [], "nothing more")
        # The root's TRUNCATE fires the trigger of every table of the tree:
        # one message all the same.
        sql("TRUNCATE meas")
        m = msgs(sub, 1)[0]
        eq((m["op"], m["table"]), ("truncate", "public.meas"), "the root")
        eq(settle(sub, PG), [], "nothing more")
        # A truncate rolled back to a savepoint takes its mark along: the
        # next one is sent.
        sql("BEGIN; SAVEPOINT s; TRUNCATE meas; ROLLBACK TO s;"
            "TRUNCATE meas_2024_02; COMMIT;")
        m = msgs(sub, 1)[0]
        eq((m["op"], m["table"]), ("truncate", "public.meas"),
           "after a rolled back savepoint")
        eq(settle(sub, PG), [], "nothing more")


def test_durable_and_poll_roots():
    sql("""
        CREATE TABLE jobs (id int, queue text, PRIMARY KEY (id, queue))
            PARTITION BY LIST (queue);
        CREATE TABLE jobs_a PARTITION OF jobs FOR VALUES IN ('a');
        SELECT pginval.watch('jobs', NULL, 'pginval', 'durable');
        CREATE TABLE jobs_b PARTITION OF jobs FOR VALUES IN ('b');
    """)
    sub = REDIS.subscribe("pginval")
    with daemon(sub):
        for mode in ("durable", "poll"):
            sql("SELECT pginval.watch('jobs', NULL, 'pginval', '%s');"
                "CREATE TABLE jobs_%s PARTITION OF jobs FOR VALUES IN ('%s')"
                % (mode, mode[0] * 2, mode[0] * 2))
            sql("INSERT INTO jobs SELECT i, 'a' FROM generate_series(1, 3) i")
            sql("INSERT INTO jobs_b VALUES (4, 'b')")
            sql("INSERT INTO jobs_%s VALUES (5, '%s')"
                % (mode[0] * 2, mode[0] * 2))
            eq(sorted(r["new"]["id"] for r in changes(sub, 5)
                      if r["table"] == "public.jobs"),
               ["1", "2", "3", "4", "5"], mode)
            eq(settle(sub, PG, mode), [], mode + ": nothing more")
            wait_for(lambda: sql("SELECT count(*) FROM pginval.outbox")
                     .strip() == "0", "the outbox drained")
            sql("TRUNCATE jobs")
            eq(msgs(sub, 1)[0]["op"], "truncate", mode)
            eq(settle(sub, PG, mode), [], mode + ": one truncate")


def test_partition_watched_on_its_own():
    sql("""
        CREATE TABLE alone (id int PRIMARY KEY) PARTITION BY RANGE (id);
        CREATE TABLE alone_1 PARTITION OF alone FOR VALUES FROM (0) TO (10);
        CREATE TABLE alone_2 PARTITION OF alone FOR VALUES FROM (10) TO (20);
        SELECT pginval.watch('alone_1');
    """)
    sub = REDIS.subscribe("pginval")
    with daemon(sub):
        sql("INSERT INTO alone VALUES (1), (11)")
        sql("INSERT INTO alone_1 VALUES (2)")
        eq(summary(changes(sub, 2)), [
            ("public.alone_1", "insert", None, {"id": "1"}),
            ("public.alone_1", "insert", None, {"id": "2"}),
        ], "under its own name; the unwatched partition sends nothing")
        eq(settle(sub, PG), [], "nothing more")
    # Watching the root takes it over.
    out = PG.run_psql(["-q", "-c", "SELECT pginval.watch('alone')"]).stderr
    assert "alone_1 is a partition of public.alone, which covers it" in out, \
        out
    eq(sql("SELECT table_name FROM pginval.watched_tables "
           "WHERE table_name LIKE 'public.alone%'").split(), ["public.alone"],
       "the root's registry row only")
    for stmt, needle in [("SELECT pginval.watch('alone_2')", "which is "
                          "watched and covers it"),
                         ("SELECT pginval.unwatch('alone_1')", "which is "
                          "watched and covers it")]:
        try:
            sql(stmt)
            raise AssertionError("accepted: " + stmt)
        except PsqlError as exc:
            assert needle in exc.stderr, exc.stderr
    sql("SELECT pginval.unwatch('alone')")
    eq(sql("SELECT count(*) FROM pg_trigger t JOIN pg_class c "
           "ON c.oid = t.tgrelid WHERE c.relname LIKE 'alone%' "
           "AND t.tgname LIKE 'pginval%'").strip(), "0", "all of it unwatched")


def check_connect(config):
    r = run_bin("check", "--connect", "-c", config)
    return r.returncode, r.stdout + r.stderr


def test_check_connect_names_what_is_left_uncovered():
    sql("""
        CREATE TABLE jobs (id int, queue text, PRIMARY KEY (id, queue))
            PARTITION BY LIST (queue);
        CREATE TABLE jobs_a PARTITION OF jobs FOR VALUES IN ('a');
        SELECT pginval.watch('jobs');
    """)
    d = pginval_proc.Daemon(PG, REDIS, tables={
        "public.meas": "meas:{id}:{day}"})
    code, out = check_connect(d.config)
    eq(code, 0, out)
    assert "ok: every partition of a watched table is covered" in out, out

    # Without the event trigger, a new partition is left uncovered; a
    # covered partition named in a [table] section never matches.
    sql("ALTER EVENT TRIGGER pginval_partitions DISABLE;"
        "CREATE TABLE meas_2026 PARTITION OF meas "
        "FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
        "DROP TRIGGER pginval_upd ON meas")
    d.write_config(tables={"public.meas": "meas:{id}:{day}",
                           "public.meas_2024_01": "m:{id}"})
    code, out = check_connect(d.config)
    eq(code, 1, out)
    for want in [
            "problem: partition public.meas_2026 of watched table "
            "public.meas is not covered (no pginval trigger: changes made to "
            "it directly are not seen); fix: SELECT pginval.watch("
            "'public.meas', '{id,day}', 'pginval', 'notify');",
            "problem: postgres: the partitioned table(s) public.jobs, public.meas are "
            "watched, but the event trigger pginval_partitions is missing "
            "or disabled",
            "problem: [table public.meas_2024_01] (line ",
            ") is a partition "
            "of public.meas, which is watched: its changes come as "
            "public.meas's, so this section never matches; fix: name the "
            "section [table public.meas]",
            "problem: [table public.meas] lacks some of its pginval triggers"
            " (dropped by hand?), so some of its changes are not sent; fix: "
            "SELECT pginval.watch('public.meas', '{id,day}', 'pginval', "
            "'notify');",
            "4 problems found"]:
        assert want in out, "%r not in:\n%s" % (want, out)
    # The fix it gives fixes it.
    sql("SELECT pginval.watch('public.meas', '{id,day}', 'pginval', "
        "'notify');"
        "ALTER EVENT TRIGGER pginval_partitions ENABLE;")
    d.write_config(tables={"public.meas": "meas:{id}:{day}"})
    code, out = check_connect(d.config)
    eq(code, 0, out)


def test_ddl_never_fails_for_the_event_trigger():
    # A covered partition whose triggers were dropped by hand, and held by
    # a writer's open transaction: the next ATTACH of a partition cannot
    # lock it to repair it, within its lock_timeout. The DDL succeeds all
    # the same, with a warning, and check --connect names the partitions
    # left uncovered.
    sql("DROP TRIGGER pginval_part_ins ON meas_2024_01")
    argv = [PG._bin("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
            "-d", PG.dsn(None)]
    hold = subprocess.Popen(argv, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        hold.stdin.write("BEGIN; INSERT INTO meas_2024_01 VALUES "
                         "(40, '2024-01-01', 'h'); SELECT 'held';\n")
        hold.stdin.flush()
        eq(hold.stdout.readline().strip(), "held", "the writer holds a lock")
        r = PG.run_psql(["-q", "-v", "ON_ERROR_STOP=1", "-c",
                         "CREATE TABLE meas_2027 (LIKE meas INCLUDING ALL);"
                         "SET lock_timeout = '200ms';"
                         "ALTER TABLE meas ATTACH PARTITION meas_2027 "
                         "FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')"],
                        check=False)
        eq(r.returncode, 0, "the DDL succeeded: " + r.stderr)
        assert "WARNING:  pginval: could not update the triggers of the " \
            "partition tree of public.meas" in r.stderr, r.stderr
    finally:
        hold.stdin.write("ROLLBACK;\n")
        hold.stdin.close()
        hold.wait(timeout=30)
    eq(sql("SELECT to_regclass('meas_2027') IS NOT NULL").strip(), "t",
       "created")
    d = pginval_proc.Daemon(PG, REDIS, tables={
        "public.meas": "meas:{id}:{day}"})
    code, out = check_connect(d.config)
    eq(code, 1, out)
    assert "problem: partition public.meas_2024_01 of watched table " \
        "public.meas is not covered" in out, out
    assert "problem: partition public.meas_2027 of watched table " \
        "public.meas is not covered" in out, out
    # Once the writer is gone, the next DDL on the tree repairs them all.
    sql("CREATE TABLE meas_2028 PARTITION OF meas "
        "FOR VALUES FROM ('2028-01-01') TO ('2029-01-01')")
    code, out = check_connect(d.config)
    eq(code, 0, out)
    sub = REDIS.subscribe("pginval")
    with daemon(sub):
        sql("INSERT INTO meas_2024_01 VALUES (41, '2024-01-02', 'x')")
        sql("INSERT INTO meas_2027 VALUES (42, '2027-01-02', 'y')")
        eq([r["new"]["id"] for r in changes(sub, 2)], ["41", "42"],
           "both covered again")
    sql("TRUNCATE meas")


def test_renamed_root_keeps_its_partitions():
    sub = REDIS.subscribe("pginval")
    tables = {"app.readings": "r:{id}"}
    with daemon(sub, tables):
        sql("CREATE SCHEMA app; ALTER TABLE meas SET SCHEMA app;"
            "ALTER TABLE app.meas RENAME TO readings;"
            "INSERT INTO meas_2024_01 VALUES (50, '2024-01-03', 'z')")
        m = msgs(sub, 1)[0]
        eq(strip(m), {"op": "insert", "table": "app.readings",
                      "keys": ["r:50"],
                      "new": {"id": "50", "day": "2024-01-03"}},
           "the partitions send the root's new name")


if __name__ == "__main__":
    sys.exit(pginval_proc.main(globals()))
