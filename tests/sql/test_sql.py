#!/usr/bin/env python3
"""Tests of the SQL API (sql/pginval.sql, sql/uninstall.sql) on its own.

No daemon is involved: notifications are captured by psql itself, which
prints every NOTIFY its session LISTENs to. One throwaway PostgreSQL server
serves the whole file; each test works on its own tables.

    python3 tests/sql/test_sql.py [-v] [name-substring ...]

Prints one line per failure (and per test with -v), then exactly one
summary line "N passed, M failed"; exits non-zero if anything failed.
"""

import contextlib
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# No __pycache__ inside the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from servers import Postgres, PsqlError  # noqa: E402
import runner  # noqa: E402

INSTALL = os.path.join(ROOT, "sql", "pginval.sql")
UNINSTALL = os.path.join(ROOT, "sql", "uninstall.sql")

PG = None  # the server shared by all tests

NOTIFY_PREFIX = 'Asynchronous notification "'
NOTIFY_MIDDLE = '" with payload "'
NOTIFY_SUFFIX = re.compile(r'" received from server process with PID \d+\.$')


class Note:
    """One captured notification."""

    def __init__(self, channel, payload):
        self.channel = channel
        self.payload = payload  # the raw text, exactly as sent
        self.json = json.loads(payload, object_pairs_hook=list)
        self.obj = json.loads(payload)

    @property
    def keys(self):
        return [k for k, _ in self.json]

    def __repr__(self):
        return "Note(%r, %r)" % (self.channel, self.payload)


def parse_notifications(out):
    """Pick the notifications out of psql's output.

    Our payloads never contain a raw newline (to_json escapes them), so one
    line is one notification; the payload itself may contain the closing
    text psql prints, hence the search for the last occurrence.
    """
    notes = []
    for line in out.splitlines():
        if not line.startswith(NOTIFY_PREFIX):
            continue
        rest = line[len(NOTIFY_PREFIX):]
        channel, sep, rest = rest.partition(NOTIFY_MIDDLE)
        assert sep, "notification without payload: %r" % line
        m = None
        for m in NOTIFY_SUFFIX.finditer(rest):
            pass
        assert m is not None, "cannot parse: %r" % line
        notes.append(Note(channel, rest[:m.start()]))
    return notes


def capture(sql, channels=("pginval",)):
    """Run ``sql`` in a session LISTENing on ``channels``; return the
    notifications it received, in order."""
    script = "".join('LISTEN "%s";\n' % c for c in channels)
    script += sql.rstrip() + "\n" + "SELECT 1;\n"
    proc = PG.run_psql(["-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                       input=script)
    return parse_notifications(proc.stdout)


def sql(text):
    return PG.psql(text)


def sql_error(text):
    """Run ``text``, which must fail; return psql's stderr."""
    try:
        PG.psql(text)
    except PsqlError as exc:
        return exc.stderr
    raise AssertionError("expected an error from: %s" % text)


# -- assertions -------------------------------------------------------------

eq = runner.eq


def contains(haystack, needle, what=""):
    if needle not in haystack:
        raise AssertionError("%s: %r not in %r" % (what, needle, haystack))


TS_X = re.compile(r'"ts":(\d+),"x":(\d+)')


def check_note(note, want, channel="pginval", since=None):
    """Compare a notification with the expected payload text, in which the
    literal ``TS`` and ``X`` stand for the timestamp and transaction id
    (checked for type and plausibility instead)."""
    eq(note.channel, channel, "channel")
    m = TS_X.search(note.payload)
    assert m, "no ts/x in %r" % note.payload
    eq(TS_X.sub('"ts":TS,"x":X', note.payload, count=1), want, "payload")
    ts, x = note.obj["ts"], note.obj["x"]
    assert isinstance(ts, int) and isinstance(x, int), note.payload
    now = int(time.time() * 1_000_000)
    low = since if since is not None else now - 600_000_000
    # Same machine, same clock: allow a little skew between the two reads.
    assert low - 5_000_000 <= ts <= now + 5_000_000, \
        "implausible ts %d (window %d..%d)" % (ts, low, now)
    assert x > 0, "implausible x %d" % x


def check_notes(notes, wants, channel="pginval", since=None):
    eq(len(notes), len(wants),
       "number of notifications: %s" % [n.payload for n in notes])
    for note, want in zip(notes, wants):
        check_note(note, want, channel, since)


def now_us():
    return int(time.time() * 1_000_000)


# -- tests --------------------------------------------------------------------
# Run in definition order; each one creates its own tables.

def test_install_is_idempotent():
    PG.psql_file(INSTALL)
    PG.psql_file(INSTALL)
    eq(sql("SELECT pginval.version()").strip(), "1", "version")
    eq(sql("SELECT provolatile FROM pg_proc "
           "WHERE oid = 'pginval.version()'::regprocedure").strip(), "i",
       "version() volatility")
    eq(sql("SELECT count(*) FROM pginval.watched_tables").strip(), "0",
       "no watched tables yet")


def test_watch_defaults_to_primary_key():
    sql("CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
        "SELECT pginval.watch('users');")
    eq(sql("SELECT table_name, columns, channel FROM pginval.watched_tables "
           "WHERE table_name = 'public.users'").strip(),
       "public.users|{id}|pginval", "registry")
    eq(sql("SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger "
           "WHERE tgrelid = 'users'::regclass").strip(),
       "pginval_ins_del,pginval_trunc,pginval_upd", "triggers")


def test_insert_update_delete():
    sql("CREATE TABLE accounts (id int PRIMARY KEY, email text, plan text);"
        "SELECT pginval.watch('accounts', '{id,email}');")
    since = now_us()
    notes = capture("""
        INSERT INTO accounts VALUES (42, 'a@x.io', 'free');
        UPDATE accounts SET email = 'b@x.io' WHERE id = 42;
        DELETE FROM accounts WHERE id = 42;
    """)
    check_notes(notes, [
        '{"v":1,"t":"public.accounts","op":"insert","ts":TS,"x":X,'
        '"n":{"id":"42","email":"a@x.io"}}',
        '{"v":1,"t":"public.accounts","op":"update","ts":TS,"x":X,'
        '"o":{"id":"42","email":"a@x.io"},"n":{"id":"42","email":"b@x.io"}}',
        '{"v":1,"t":"public.accounts","op":"delete","ts":TS,"x":X,'
        '"o":{"id":"42","email":"b@x.io"}}',
    ], since=since)
    eq(notes[0].keys, ["v", "t", "op", "ts", "x", "n"], "insert keys")
    eq(notes[1].keys, ["v", "t", "op", "ts", "x", "o", "n"], "update keys")
    # Three transactions, in order, three distinct increasing ids and times.
    xs = [n.obj["x"] for n in notes]
    assert xs[0] < xs[1] < xs[2], xs
    tss = [n.obj["ts"] for n in notes]
    assert tss[0] <= tss[1] <= tss[2], tss


def test_same_transaction_shares_x_and_rollback_sends_nothing():
    sql("CREATE TABLE batch (id int PRIMARY KEY);"
        "SELECT pginval.watch('batch');")
    notes = capture("""
        BEGIN;
        INSERT INTO batch VALUES (1), (2);
        UPDATE batch SET id = id + 10;
        COMMIT;
        BEGIN;
        INSERT INTO batch VALUES (3);
        ROLLBACK;
    """)
    eq([(n.obj["op"], n.obj.get("o"), n.obj.get("n")) for n in notes], [
        ("insert", None, {"id": "1"}),
        ("insert", None, {"id": "2"}),
        ("update", {"id": "1"}, {"id": "11"}),
        ("update", {"id": "2"}, {"id": "12"}),
    ], "events")
    eq(len({n.obj["x"] for n in notes}), 1, "one transaction id")
    eq(sql("SELECT pg_current_xact_id() > '%d'::xid8" % notes[0].obj["x"]).strip(),
       "t", "x is a real transaction id")


def test_noop_update_sends_nothing():
    sql("CREATE TABLE noop (id int PRIMARY KEY, v text, f float8);"
        "INSERT INTO noop VALUES (1, 'a', 1.5), (2, NULL, NULL);"
        "SELECT pginval.watch('noop');")
    notes = capture("""
        UPDATE noop SET v = v, f = f;
        UPDATE noop SET id = id;
        UPDATE noop SET v = 'a' WHERE id = 1;
        UPDATE noop SET v = NULL WHERE id = 2;
    """)
    eq(notes, [], "no-op updates")


def test_update_of_unwatched_column_sends_event():
    sql("CREATE TABLE profile (id int PRIMARY KEY, bio text);"
        "INSERT INTO profile VALUES (7, 'old');"
        "SELECT pginval.watch('profile');")
    notes = capture("UPDATE profile SET bio = 'new';")
    check_notes(notes, [
        '{"v":1,"t":"public.profile","op":"update","ts":TS,"x":X,'
        '"o":{"id":"7"},"n":{"id":"7"}}'])


def test_truncate():
    sql("CREATE TABLE trunc (id int PRIMARY KEY);"
        "INSERT INTO trunc VALUES (1), (2);"
        "SELECT pginval.watch('trunc');")
    since = now_us()
    notes = capture("TRUNCATE trunc;")
    check_notes(notes, [
        '{"v":1,"t":"public.trunc","op":"truncate","ts":TS,"x":X}'],
        since=since)


def test_composite_primary_key_in_key_order():
    # Key order (b, a) differs from table order (a, b).
    sql("CREATE TABLE comp (a int, b text, c text, PRIMARY KEY (b, a));"
        "SELECT pginval.watch('comp');")
    eq(sql("SELECT columns FROM pginval.watched_tables "
           "WHERE table_name = 'public.comp'").strip(), "{b,a}", "columns")
    notes = capture("INSERT INTO comp VALUES (1, 'x', 'y');"
                    "UPDATE comp SET c = 'z';")
    check_notes(notes, [
        '{"v":1,"t":"public.comp","op":"insert","ts":TS,"x":X,'
        '"n":{"b":"x","a":"1"}}',
        '{"v":1,"t":"public.comp","op":"update","ts":TS,"x":X,'
        '"o":{"b":"x","a":"1"},"n":{"b":"x","a":"1"}}'])


def test_primary_key_include_columns_are_not_keys():
    sql("CREATE TABLE incl (id int, extra text, "
        "PRIMARY KEY (id) INCLUDE (extra));"
        "SELECT pginval.watch('incl');")
    eq(sql("SELECT columns FROM pginval.watched_tables "
           "WHERE table_name = 'public.incl'").strip(), "{id}", "columns")


def test_value_encoding():
    sql("""
        CREATE TABLE vals (id int PRIMARY KEY, s text, n numeric, u uuid,
                           big bigint, b boolean, f float8, nul text);
        SELECT pginval.watch('vals', '{id,s,n,u,big,b,f,nul}');
    """)
    notes = capture(r"""
        INSERT INTO vals VALUES (1,
            E'Zo\u00eb "q" \\ \n \t 日本 ''single''',
            12345678901234567890.123400,
            'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
            9223372036854775807, true, 0.1, NULL);
    """)
    eq(len(notes), 1, "one notification")
    note = notes[0]
    eq(note.obj["n"], {
        "id": "1",
        "s": 'Zo\u00eb "q" \\ \n \t 日本 \'single\'',
        "n": "12345678901234567890.123400",
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "big": "9223372036854775807",
        "b": "true",
        "f": "0.1",
        "nul": None,
    }, "values")
    # Exact text: JSON-escaped by to_json, non-ASCII left as UTF-8, NULL as
    # a JSON null, every other value a string.
    contains(note.payload,
             r'"s":"Zoë \"q\" \\ \n \t 日本 ' + "'single'" + '"', "escaping")
    contains(note.payload, '"n":"12345678901234567890.123400"', "numeric")
    contains(note.payload, '"nul":null}', "null")


def test_date_time_values_use_iso_form():
    # Documents a property of to_jsonb(): date/time values are sent in ISO
    # 8601 form, not in the DateStyle text form.
    sql("""
        CREATE TABLE events (id int PRIMARY KEY, at timestamptz, d date);
        SELECT pginval.watch('events', '{id,at,d}');
    """)
    notes = capture("SET TimeZone = 'UTC';"
                    "INSERT INTO events VALUES "
                    "(1, '2024-01-02 03:04:05.5+00', '2024-01-02');")
    eq(notes[0].obj["n"],
       {"id": "1", "at": "2024-01-02T03:04:05.5+00:00", "d": "2024-01-02"},
       "values")


def test_quoted_identifiers():
    sql('''
        CREATE SCHEMA "My Schema";
        CREATE TABLE "My Schema"."Odd ""Table""" (
            "Key Col" int PRIMARY KEY, "x""y" text);
        SELECT pginval.watch('"My Schema"."Odd ""Table"""', NULL, 'odd chan');
    ''')
    eq(sql("SELECT table_name, columns FROM pginval.watched_tables "
           "WHERE channel = 'odd chan'").strip(),
       'My Schema.Odd "Table"|{"Key Col"}', "registry")
    notes = capture('INSERT INTO "My Schema"."Odd ""Table""" VALUES (1, 2);',
                    channels=["odd chan"])
    check_notes(notes, [
        '{"v":1,"t":"My Schema.Odd \\"Table\\"","op":"insert","ts":TS,"x":X,'
        '"n":{"Key Col":"1"}}'], channel="odd chan")


def test_json_column_noop_detection():
    # json has no equality operator; the image comparison still works.
    sql("""
        CREATE TABLE docs (id int PRIMARY KEY, body json, meta jsonb);
        INSERT INTO docs VALUES (1, '{"a": 1}', '{"b": 2}');
        SELECT pginval.watch('docs');
    """)
    notes = capture("""
        UPDATE docs SET body = body, meta = meta;
        UPDATE docs SET body = '{"a": 1}';
        UPDATE docs SET body = '{"a":1}';
        UPDATE docs SET meta = '{"b": 3}';
    """)
    eq([n.obj["op"] for n in notes], ["update", "update"],
       "only real changes: %s" % [n.payload for n in notes])


def test_json_column_watched():
    sql("""
        CREATE TABLE jdocs (id int PRIMARY KEY, body jsonb);
        SELECT pginval.watch('jdocs', '{id,body}');
    """)
    notes = capture("""INSERT INTO jdocs VALUES (1, '{"k": "v\\"q"}');""")
    eq(notes[0].obj["n"], {"id": "1", "body": '{"k": "v\\"q"}'}, "jsonb text")


def test_oversized_row():
    sql("""
        CREATE TABLE blobs (id int PRIMARY KEY, name text, payload text);
        SELECT pginval.watch('blobs', '{id,name}');
    """)
    notes = capture("""
        INSERT INTO blobs VALUES (1, repeat('n', 10000), 'small');
        INSERT INTO blobs VALUES (2, 'small', repeat('p', 10000));
        UPDATE blobs SET name = 'short' WHERE id = 1;
        UPDATE blobs SET payload = repeat('q', 10000) WHERE id = 2;
        DELETE FROM blobs WHERE id = 2;
    """)
    check_notes(notes, [
        '{"v":1,"t":"public.blobs","op":"insert","ts":TS,"x":X,"big":true}',
        '{"v":1,"t":"public.blobs","op":"insert","ts":TS,"x":X,'
        '"n":{"id":"2","name":"small"}}',
        # The old image is still too large.
        '{"v":1,"t":"public.blobs","op":"update","ts":TS,"x":X,"big":true}',
        '{"v":1,"t":"public.blobs","op":"update","ts":TS,"x":X,'
        '"o":{"id":"2","name":"small"},"n":{"id":"2","name":"small"}}',
        '{"v":1,"t":"public.blobs","op":"delete","ts":TS,"x":X,'
        '"o":{"id":"2","name":"small"}}',
    ])
    eq(sql("SELECT id, length(name) FROM blobs ORDER BY id").split(),
       ["1|5"], "writes succeeded")


def test_payload_size_boundary():
    # The largest payload NOTIFY takes is 7999 bytes; find the value length
    # that lands exactly there, and check one more byte switches to "big".
    sql("CREATE TABLE edge (id int PRIMARY KEY, s text);"
        "SELECT pginval.watch('edge', '{id,s}');")
    probe = capture("INSERT INTO edge VALUES (1, '');")[0]
    base = len(probe.payload.encode())
    fill = 7999 - base
    notes = capture("INSERT INTO edge VALUES (2, repeat('a', %d));"
                    "INSERT INTO edge VALUES (3, repeat('a', %d));"
                    % (fill, fill + 1))
    eq(len(notes[0].payload.encode()), 7999, "largest normal payload")
    eq(notes[0].obj["n"]["s"], "a" * fill, "value kept")
    eq(notes[1].obj.get("big"), True, "one byte more is big")


def test_multibyte_size_is_counted_in_bytes():
    sql("CREATE TABLE mb (id int PRIMARY KEY, s text);"
        "SELECT pginval.watch('mb', '{id,s}');")
    # 3000 characters, 9000 bytes.
    notes = capture("INSERT INTO mb VALUES (1, repeat('日', 3000));")
    eq(notes[0].obj.get("big"), True, "big")


def test_watch_without_primary_key_fails_with_hint():
    sql("CREATE TABLE nopk (a int, b text);")
    err = sql_error("SELECT pginval.watch('nopk');")
    contains(err, "has no primary key", "message")
    contains(err, "HINT:", "hint")
    contains(err, "columns", "hint text")
    # With explicit columns it works.
    sql("SELECT pginval.watch('nopk', '{a}');")
    notes = capture("INSERT INTO nopk VALUES (5, 'x');")
    eq(notes[0].obj["n"], {"a": "5"}, "explicit columns")


def test_watch_argument_errors():
    sql("CREATE TABLE errs (id int PRIMARY KEY, v text);"
        "CREATE VIEW errs_view AS SELECT * FROM errs;"
        "CREATE TABLE parted (id int PRIMARY KEY) PARTITION BY RANGE (id);")
    err = sql_error("SELECT pginval.watch('errs', '{id,nope}');")
    contains(err, 'column "nope" of table public.errs does not exist', "msg")
    err = sql_error("SELECT pginval.watch('errs', '{}');")
    contains(err, "no columns", "empty array")
    err = sql_error("SELECT pginval.watch('errs', '{id,id}');")
    contains(err, "duplicate column", "duplicates")
    err = sql_error("SELECT pginval.watch('errs', ARRAY['id', NULL]);")
    contains(err, "NULL column", "null element")
    err = sql_error("SELECT pginval.watch('errs', '{ID}');")
    contains(err, 'column "ID"', "names are exact, not folded")
    err = sql_error("SELECT pginval.watch('errs', NULL, '');")
    contains(err, "invalid channel", "empty channel")
    err = sql_error("SELECT pginval.watch('errs', NULL, repeat('c', 64));")
    contains(err, "invalid channel", "long channel")
    err = sql_error("SELECT pginval.watch('errs_view');")
    contains(err, "is not a table", "view")
    err = sql_error("SELECT pginval.watch('parted');")
    contains(err, "partitioned", "partitioned table")
    err = sql_error("SELECT pginval.watch('no_such_table');")
    contains(err, 'relation "no_such_table" does not exist', "missing table")
    # A system column is not a watchable column.
    err = sql_error("SELECT pginval.watch('errs', '{ctid}');")
    contains(err, 'column "ctid"', "system column")
    # None of that left anything behind.
    eq(sql("SELECT count(*) FROM pg_trigger "
           "WHERE tgrelid = 'errs'::regclass").strip(), "0", "no triggers")
    eq(sql("SELECT count(*) FROM pginval.watched "
           "WHERE relid = 'errs'::regclass").strip(), "0", "no registry row")
    # 63 bytes is the longest channel NOTIFY accepts.
    sql("SELECT pginval.watch('errs', NULL, repeat('c', 63));")
    notes = capture("INSERT INTO errs VALUES (1, 'v');", channels=["c" * 63])
    eq(len(notes), 1, "63-byte channel works")


def test_unwatch():
    sql("CREATE TABLE gone (id int PRIMARY KEY);"
        "SELECT pginval.watch('gone');")
    eq(len(capture("INSERT INTO gone VALUES (1);")), 1, "watched")
    sql("SELECT pginval.unwatch('gone');")
    notes = capture("INSERT INTO gone VALUES (2); UPDATE gone SET id = id + 10;"
                    "DELETE FROM gone; TRUNCATE gone;")
    eq(notes, [], "no events after unwatch")
    eq(sql("SELECT count(*) FROM pg_trigger "
           "WHERE tgrelid = 'gone'::regclass").strip(), "0", "triggers gone")
    eq(sql("SELECT count(*) FROM pginval.watched_tables "
           "WHERE table_name = 'public.gone'").strip(), "0", "registry")
    sql("SELECT pginval.unwatch('gone');")  # again: fine
    sql("SELECT pginval.unwatch(NULL);")


def test_rewatch_changes_columns_and_channel():
    sql("CREATE TABLE rew (id int PRIMARY KEY, slug text, other text);"
        "SELECT pginval.watch('rew');")
    first = sql("SELECT watched_at FROM pginval.watched "
                "WHERE relid = 'rew'::regclass")
    sql("SELECT pginval.watch('rew', '{slug}', 'chan2');")
    eq(sql("SELECT columns, channel FROM pginval.watched_tables "
           "WHERE table_name = 'public.rew'").strip(), "{slug}|chan2",
       "registry updated")
    eq(sql("SELECT count(*) FROM pginval.watched "
           "WHERE relid = 'rew'::regclass").strip(), "1", "one row")
    assert sql("SELECT watched_at FROM pginval.watched "
               "WHERE relid = 'rew'::regclass") != first, "watched_at"
    eq(sql("SELECT count(*) FROM pg_trigger "
           "WHERE tgrelid = 'rew'::regclass").strip(), "3", "three triggers")
    notes = capture("INSERT INTO rew VALUES (1, 's', 'o');",
                    channels=["pginval", "chan2"])
    check_notes(notes, [
        '{"v":1,"t":"public.rew","op":"insert","ts":TS,"x":X,'
        '"n":{"slug":"s"}}'], channel="chan2")


def test_watched_tables_view():
    sql("CREATE SCHEMA app;"
        "CREATE TABLE app.items (id int PRIMARY KEY);"
        "CREATE TABLE app.doomed (id int PRIMARY KEY);"
        "SELECT pginval.watch('app.items', NULL, 'items');"
        "SELECT pginval.watch('app.doomed');")
    rows = sql("SELECT table_name, columns, channel, "
               "watched_at <= now() FROM pginval.watched_tables "
               "WHERE table_name LIKE 'app.%' ORDER BY 1").split()
    eq(rows, ["app.doomed|{id}|pginval|t", "app.items|{id}|items|t"], "view")
    # A dropped table disappears from the view; a renamed one follows.
    sql("DROP TABLE app.doomed; ALTER TABLE app.items RENAME TO things;")
    rows = sql("SELECT table_name FROM pginval.watched_tables "
               "WHERE table_name LIKE 'app.%'").split()
    eq(rows, ["app.things"], "after drop and rename")
    notes = capture("INSERT INTO app.things VALUES (1);", channels=["items"])
    eq(notes[0].obj["t"], "app.things", "payload follows the rename")
    # The next watch()/unwatch() purges the stale row.
    sql("SELECT pginval.unwatch('app.things');")
    eq(sql("SELECT count(*) FROM pginval.watched w WHERE NOT EXISTS "
           "(SELECT 1 FROM pg_class c WHERE c.oid = w.relid)").strip(), "0",
       "stale rows purged")


def test_dropped_and_renamed_watched_columns():
    # The WHEN clause compares whole rows (OLD *= NEW), which creates no
    # dependency on single columns: PostgreSQL lets the column go, and the
    # trigger then leaves the key out of the images.
    sql("CREATE TABLE shrink (id int PRIMARY KEY, email text, code text, "
        "note text);"
        "SELECT pginval.watch('shrink', '{id,email,code}');"
        "INSERT INTO shrink VALUES (1, 'a@x', 'c1', 'n');")
    sql("ALTER TABLE shrink DROP COLUMN email;"
        "ALTER TABLE shrink RENAME COLUMN code TO code2;")
    notes = capture("""
        INSERT INTO shrink VALUES (2, 'c2', 'n');
        UPDATE shrink SET note = 'm' WHERE id = 1;
        UPDATE shrink SET note = note;
        DELETE FROM shrink WHERE id = 2;
    """)
    check_notes(notes, [
        '{"v":1,"t":"public.shrink","op":"insert","ts":TS,"x":X,'
        '"n":{"id":"2"}}',
        '{"v":1,"t":"public.shrink","op":"update","ts":TS,"x":X,'
        '"o":{"id":"1"},"n":{"id":"1"}}',
        '{"v":1,"t":"public.shrink","op":"delete","ts":TS,"x":X,'
        '"o":{"id":"2"}}',
    ])
    # Every watched column gone: the images are empty objects, still sent.
    sql("ALTER TABLE shrink DROP COLUMN id;")
    notes = capture("UPDATE shrink SET note = 'z';")
    check_notes(notes, [
        '{"v":1,"t":"public.shrink","op":"update","ts":TS,"x":X,'
        '"o":{},"n":{}}'])


def test_custom_channel():
    sql("CREATE TABLE chan (id int PRIMARY KEY);"
        "SELECT pginval.watch('chan', NULL, 'CacheBus');")
    notes = capture("INSERT INTO chan VALUES (1); TRUNCATE chan;",
                    channels=["pginval", "CacheBus"])
    check_notes(notes, [
        '{"v":1,"t":"public.chan","op":"insert","ts":TS,"x":X,'
        '"n":{"id":"1"}}',
        '{"v":1,"t":"public.chan","op":"truncate","ts":TS,"x":X}',
    ], channel="CacheBus")


def test_reinstall_keeps_watches():
    before = sql("SELECT * FROM pginval.watched ORDER BY relid")
    PG.psql_file(INSTALL)
    eq(sql("SELECT * FROM pginval.watched ORDER BY relid"), before,
       "registry kept")
    notes = capture("INSERT INTO users VALUES (1, 'e', 'n');")
    eq(len(notes), 1, "still watched")


def test_uninstall():
    triggers = ("SELECT count(*) FROM pg_trigger "
                "WHERE tgname LIKE 'pginval\\_%'")
    assert int(sql(triggers)) > 0
    PG.psql_file(UNINSTALL)
    eq(sql("SELECT count(*) FROM pg_namespace "
           "WHERE nspname = 'pginval'").strip(), "0", "schema gone")
    eq(sql(triggers).strip(), "0", "triggers gone")
    eq(capture("INSERT INTO users VALUES (2, 'e', 'n');"), [], "no events")
    PG.psql_file(UNINSTALL)  # twice: fine
    # On a database that never had it, too; and install works again after.
    PG.create_database("fresh")
    PG.psql_file(UNINSTALL, db="fresh")
    PG.psql_file(INSTALL)
    eq(sql("SELECT pginval.version()").strip(), "1", "reinstalled")


# -- runner -------------------------------------------------------------------

@contextlib.contextmanager
def server():
    global PG
    with Postgres() as pg:
        PG = pg
        yield


if __name__ == "__main__":
    sys.exit(runner.run(globals(), sys.argv[1:], around=server))
