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
import threading
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

WAKE = "wake"  # what durable mode sends on the channel

NOTIFY_PREFIX = 'Asynchronous notification "'
NOTIFY_MIDDLE = '" with payload "'
NOTIFY_SUFFIX = re.compile(r'" received from server process with PID \d+\.$')


class Note:
    """One captured notification."""

    def __init__(self, channel, payload):
        self.channel = channel
        self.payload = payload  # the raw text, exactly as sent
        if payload == WAKE:
            self.json = self.obj = None
        else:
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


def capture(sql, channels=("pginval",), db=None):
    """Run ``sql`` in a session LISTENing on ``channels``; return the
    notifications it received, in order."""
    script = "".join('LISTEN "%s";\n' % c for c in channels)
    script += sql.rstrip() + "\n" + "SELECT 1;\n"
    proc = PG.run_psql(["-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                       input=script, db=db)
    return parse_notifications(proc.stdout)


def sql(text, db=None):
    return PG.psql(text, db=db)


def sql_error(text, db=None):
    """Run ``text``, which must fail; return psql's stderr."""
    try:
        PG.psql(text, db=db)
    except PsqlError as exc:
        return exc.stderr
    raise AssertionError("expected an error from: %s" % text)


def literal(text):
    return "'%s'" % text.replace("'", "''")


def outbox(channel, db=None):
    """The payloads queued in pginval.outbox for ``channel``, in id order,
    as Note objects."""
    out = sql("SELECT payload FROM pginval.outbox WHERE channel = %s "
              "ORDER BY id" % literal(channel), db=db)
    return [Note(channel, line) for line in out.splitlines()]


def take_outbox(channel, db=None):
    """outbox(), then delete those rows."""
    notes = outbox(channel, db)
    sql("DELETE FROM pginval.outbox WHERE channel = %s" % literal(channel),
        db=db)
    return notes


def trigger_args(table, db=None):
    """{trigger name: [arguments]} of the pginval triggers of ``table``."""
    out = sql("SELECT tgname, encode(tgargs, 'hex') FROM pg_trigger "
              "WHERE tgrelid = %s::regclass AND tgname LIKE 'pginval\\_%%' "
              "ORDER BY 1" % literal(table), db=db)
    args = {}
    for line in out.splitlines():
        name, _, hexargs = line.partition("|")
        raw = bytes.fromhex(hexargs).decode()
        assert raw.endswith("\0"), raw
        args[name] = raw[:-1].split("\0")
    return args


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


# -- delivery modes ---------------------------------------------------------

def test_durable_mode_queues_exact_payloads():
    sql("CREATE TABLE dur (id int PRIMARY KEY, email text, plan text);"
        "INSERT INTO dur VALUES (7, 'old@x.io', 'free');"
        "SELECT pginval.watch('dur', '{id,email}', 'dur_chan', 'durable');")
    since = now_us()
    notes = capture("""
        INSERT INTO dur VALUES (42, 'a@x.io', 'free');
        UPDATE dur SET email = 'b@x.io' WHERE id = 42;
        UPDATE dur SET plan = plan;
        DELETE FROM dur WHERE id = 42;
        TRUNCATE dur;
    """, channels=["pginval", "dur_chan"])
    # One wake-up per transaction, on the table's channel; the no-op UPDATE
    # changes nothing and sends nothing.
    eq([(n.channel, n.payload) for n in notes], [("dur_chan", WAKE)] * 4,
       "wake-ups")
    queued = take_outbox("dur_chan")
    check_notes(queued, [
        '{"v":1,"t":"public.dur","op":"insert","ts":TS,"x":X,'
        '"n":{"id":"42","email":"a@x.io"}}',
        '{"v":1,"t":"public.dur","op":"update","ts":TS,"x":X,'
        '"o":{"id":"42","email":"a@x.io"},"n":{"id":"42","email":"b@x.io"}}',
        '{"v":1,"t":"public.dur","op":"delete","ts":TS,"x":X,'
        '"o":{"id":"42","email":"b@x.io"}}',
        '{"v":1,"t":"public.dur","op":"truncate","ts":TS,"x":X}',
    ], channel="dur_chan", since=since)
    xs = [n.obj["x"] for n in queued]
    assert xs[0] < xs[1] < xs[2] < xs[3], xs
    eq(queued[0].keys, ["v", "t", "op", "ts", "x", "n"], "insert keys")
    eq(outbox("dur_chan"), [], "taken rows are gone")


def test_durable_one_wake_per_transaction():
    sql("CREATE TABLE many (id int PRIMARY KEY, v text);"
        "CREATE TABLE many2 (id int PRIMARY KEY);"
        "CREATE TABLE many_n (id int PRIMARY KEY);"
        "SELECT pginval.watch('many', NULL, 'many_chan', 'durable');"
        "SELECT pginval.watch('many2', NULL, 'many_chan2', 'durable');"
        "SELECT pginval.watch('many_n', NULL, 'many_chan');")
    notes = capture("""
        BEGIN;
        INSERT INTO many SELECT g, 'a' FROM generate_series(1, 300) g;
        UPDATE many SET v = 'b';
        DELETE FROM many WHERE id > 100;
        COMMIT;
        INSERT INTO many VALUES (1000, 'c');
        BEGIN;
        INSERT INTO many VALUES (2000, 'd');
        ROLLBACK;
    """, channels=["many_chan"])
    eq([n.payload for n in notes], [WAKE, WAKE], "one wake per transaction")
    queued = take_outbox("many_chan")
    eq(len(queued), 300 + 300 + 200 + 1, "every row queued")
    eq(len({n.obj["x"] for n in queued[:-1]}), 1, "first transaction")
    eq(queued[-1].obj["n"], {"id": "1000"}, "second transaction")
    eq(sum(1 for n in queued if n.obj["op"] == "update"), 300, "updates")

    # One wake-up per channel; a notify-mode table on the same channel
    # still sends its payloads, beside the single wake-up.
    notes = capture("""
        BEGIN;
        INSERT INTO many VALUES (5001, 'x'), (5002, 'y');
        INSERT INTO many2 VALUES (1), (2);
        INSERT INTO many_n VALUES (1), (2);
        COMMIT;
    """, channels=["many_chan", "many_chan2"])
    eq(sorted((n.channel, n.payload if n.obj is None else n.obj["op"])
              for n in notes),
       [("many_chan", "insert"), ("many_chan", "insert"),
        ("many_chan", WAKE), ("many_chan2", WAKE)], "mixed transaction")
    eq(len(take_outbox("many_chan")), 2, "many queued")
    eq(len(take_outbox("many_chan2")), 2, "many2 queued")


def test_durable_oversized_row_is_stored_in_full():
    sql("""
        CREATE TABLE dblobs (id int PRIMARY KEY, name text, body text);
        SELECT pginval.watch('dblobs', '{id,name}', 'dblobs', 'durable');
    """)
    notes = capture("""
        INSERT INTO dblobs VALUES (1, repeat('n', 10000), 'small');
        INSERT INTO dblobs VALUES (2, repeat('日', 3000), 'small');
        UPDATE dblobs SET name = 'short' WHERE id = 1;
        UPDATE dblobs SET body = repeat('q', 100000) WHERE id = 2;
        DELETE FROM dblobs;
    """, channels=["dblobs"])
    eq([n.payload for n in notes], [WAKE] * 5, "wake-ups")
    queued = take_outbox("dblobs")
    eq([n.obj["op"] for n in queued],
       ["insert", "insert", "update", "update", "delete", "delete"], "ops")
    for n in queued:
        assert "big" not in n.obj, n.payload[:200]
    eq(queued[0].obj["n"], {"id": "1", "name": "n" * 10000}, "full image")
    eq(queued[1].obj["n"], {"id": "2", "name": "日" * 3000}, "multibyte")
    assert len(queued[1].payload.encode()) > 9000
    eq(queued[2].obj["o"], {"id": "1", "name": "n" * 10000}, "old image")
    eq(queued[2].obj["n"], {"id": "1", "name": "short"}, "new image")
    eq(sql("SELECT count(*) FROM dblobs").strip(), "0", "writes succeeded")


def test_poll_mode_queues_without_notify():
    sql("CREATE TABLE polled (id int PRIMARY KEY, v text);"
        "INSERT INTO polled VALUES (1, 'a');"
        "SELECT pginval.watch('polled', NULL, 'poll_chan', 'poll');")
    notes = capture("""
        INSERT INTO polled VALUES (2, 'b');
        BEGIN;
        UPDATE polled SET v = 'c' WHERE id = 1;
        DELETE FROM polled WHERE id = 2;
        COMMIT;
        TRUNCATE polled;
    """, channels=["pginval", "poll_chan"])
    eq(notes, [], "no notification at all")
    check_notes(take_outbox("poll_chan"), [
        '{"v":1,"t":"public.polled","op":"insert","ts":TS,"x":X,'
        '"n":{"id":"2"}}',
        '{"v":1,"t":"public.polled","op":"update","ts":TS,"x":X,'
        '"o":{"id":"1"},"n":{"id":"1"}}',
        '{"v":1,"t":"public.polled","op":"delete","ts":TS,"x":X,'
        '"o":{"id":"2"}}',
        '{"v":1,"t":"public.polled","op":"truncate","ts":TS,"x":X}',
    ], channel="poll_chan")
    # A rolled-back change leaves nothing behind.
    sql("BEGIN; INSERT INTO polled VALUES (3, 'd'); ROLLBACK;")
    eq(outbox("poll_chan"), [], "rollback")


def test_invalid_mode():
    sql("CREATE TABLE badmode (id int PRIMARY KEY);")
    for mode in ("'bogus'", "'NOTIFY'", "''", "NULL"):
        err = sql_error("SELECT pginval.watch('badmode', NULL, 'pginval', %s);"
                        % mode)
        contains(err, "pginval.watch: invalid mode", "message for %s" % mode)
        contains(err, "HINT:  The mode must be one of notify, durable, poll.",
                 "hint for %s" % mode)
    contains(sql_error("SELECT pginval.watch('badmode', NULL, 'pginval', "
                       "'bogus');"), "invalid mode 'bogus'", "names the mode")
    eq(sql("SELECT count(*) FROM pg_trigger "
           "WHERE tgrelid = 'badmode'::regclass").strip(), "0", "no triggers")
    eq(sql("SELECT count(*) FROM pginval.watched "
           "WHERE relid = 'badmode'::regclass").strip(), "0",
       "no registry row")
    # The registry refuses one too.
    err = sql_error("INSERT INTO pginval.watched "
                    "(relid, columns, channel, mode) "
                    "VALUES ('badmode', '{id}', 'pginval', 'bogus');")
    contains(err, "watched_mode_check", "check constraint")
    # Named arguments work.
    sql("SELECT pginval.watch('badmode', mode => 'poll');")
    eq(sql("SELECT channel, mode FROM pginval.watched_tables "
           "WHERE table_name = 'public.badmode'").strip(), "pginval|poll",
       "named argument")


def test_watch_refuses_pginval_tables():
    # Watching the outbox in durable mode would recurse on every insert.
    err = sql_error("SELECT pginval.watch('pginval.outbox', '{id}', "
                    "'pginval', 'durable');")
    contains(err, "is a table of pginval itself", "outbox")
    err = sql_error("SELECT pginval.watch('pginval.watched');")
    contains(err, "is a table of pginval itself", "registry")
    eq(sql("SELECT count(*) FROM pg_trigger t "
           "JOIN pg_class c ON c.oid = t.tgrelid "
           "WHERE c.relnamespace = 'pginval'::regnamespace").strip(), "0",
       "no triggers")


def test_watched_tables_view_shows_mode():
    sql("CREATE TABLE vm1 (id int PRIMARY KEY);"
        "CREATE TABLE vm2 (id int PRIMARY KEY);"
        "CREATE TABLE vm3 (id int PRIMARY KEY);"
        "SELECT pginval.watch('vm1');"
        "SELECT pginval.watch('vm2', NULL, 'vm', 'durable');"
        "SELECT pginval.watch('vm3', NULL, 'vm', 'poll');")
    # New columns are appended: existing readers keep their positions.
    eq(sql("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
           "WHERE attrelid = 'pginval.watched_tables'::regclass").strip(),
       "table_name,columns,channel,watched_at,mode", "view columns")
    eq(sql("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
           "WHERE attrelid = 'pginval.watched'::regclass AND attnum > 0 "
           "AND NOT attisdropped").strip(),
       "relid,columns,channel,watched_at,mode", "registry columns")
    eq(sql("SELECT table_name, channel, mode FROM pginval.watched_tables "
           "WHERE table_name LIKE 'public.vm_' ORDER BY 1").split(),
       ["public.vm1|pginval|notify", "public.vm2|vm|durable",
        "public.vm3|vm|poll"], "modes")


def test_watch_switches_modes():
    sql("CREATE TABLE sw (id int PRIMARY KEY, v text);"
        "SELECT pginval.watch('sw', NULL, 'sw_chan');")
    eq(trigger_args("sw"), {
        "pginval_ins_del": ["sw_chan", "notify", "id"],
        "pginval_trunc": ["sw_chan", "notify"],
        "pginval_upd": ["sw_chan", "notify", "id"],
    }, "notify triggers")

    def step(mode, value):
        sql("SELECT pginval.watch('sw', '{id,v}', 'sw_chan', '%s');" % mode)
        eq(sql("SELECT mode FROM pginval.watched_tables "
               "WHERE table_name = 'public.sw'").strip(), mode, "registry")
        eq(trigger_args("sw"), {
            "pginval_ins_del": ["sw_chan", mode, "id", "v"],
            "pginval_trunc": ["sw_chan", mode],
            "pginval_upd": ["sw_chan", mode, "id", "v"],
        }, "%s triggers" % mode)
        return capture("INSERT INTO sw VALUES (%d, '%s');" % (value, mode),
                       channels=["sw_chan"])

    notes = step("durable", 1)
    eq([n.payload for n in notes], [WAKE], "durable notifies a wake-up")
    eq([n.obj["n"] for n in outbox("sw_chan")], [{"id": "1", "v": "durable"}],
       "durable queues")

    notes = step("poll", 2)
    eq(notes, [], "poll sends nothing")
    eq([n.obj["n"]["id"] for n in outbox("sw_chan")], ["1", "2"],
       "poll queues")

    notes = step("notify", 3)
    eq([n.obj["n"] for n in notes], [{"id": "3", "v": "notify"}],
       "notify sends the payload")
    # What was queued before the switch stays for the daemon to drain.
    eq([n.obj["n"]["id"] for n in take_outbox("sw_chan")], ["1", "2"],
       "queue kept")
    eq(sql("SELECT count(*) FROM pginval.watched "
           "WHERE relid = 'sw'::regclass").strip(), "1", "one registry row")


FETCH_SQL = ("SELECT id, payload FROM pginval.outbox WHERE channel = $1 "
             "ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED")
ACK_SQL = "DELETE FROM pginval.outbox WHERE id = ANY($1::bigint[])"
PREPARE_DRAIN = ("PREPARE drain_fetch(text, int) AS %s;\n"
                 "PREPARE drain_ack(bigint[]) AS %s;\n" % (FETCH_SQL, ACK_SQL))


def test_outbox_privileges():
    # The writer needs no grant on pginval; the daemon's role needs
    # SELECT, UPDATE and DELETE on the outbox, and nothing else.
    sql("CREATE ROLE pginval_test_app;"
        "CREATE ROLE pginval_test_daemon;"
        "CREATE TABLE app_orders (id int PRIMARY KEY, v text);"
        "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON app_orders "
        "  TO pginval_test_app;"
        "GRANT SELECT, UPDATE, DELETE ON pginval.outbox "
        "  TO pginval_test_daemon;"
        "SELECT pginval.watch('app_orders', NULL, 'app_chan', 'durable');")
    notes = capture("""
        SET ROLE pginval_test_app;
        INSERT INTO app_orders VALUES (1, 'a');
        UPDATE app_orders SET v = 'b';
        DELETE FROM app_orders;
        TRUNCATE app_orders;
        RESET ROLE;
        SELECT pginval.watch('app_orders', NULL, 'app_chan', 'poll');
        SET ROLE pginval_test_app;
        INSERT INTO app_orders VALUES (2, 'c');
    """, channels=["app_chan"])
    eq([n.payload for n in notes], [WAKE] * 4, "wake-ups")
    eq(len(outbox("app_chan")), 5, "queued")
    err = sql_error("SET ROLE pginval_test_app;"
                    "SELECT payload FROM pginval.outbox;")
    contains(err, "permission denied for table outbox", "writer cannot read")
    ids = ",".join(sql("SELECT id FROM pginval.outbox "
                       "WHERE channel = 'app_chan'").split())
    out = sql("SET ROLE pginval_test_daemon;" + PREPARE_DRAIN
              + "BEGIN; EXECUTE drain_fetch('app_chan', 100);"
              "EXECUTE drain_ack('{%s}'); COMMIT;" % ids)
    eq(len(out.splitlines()), 5, "daemon role drains")
    eq(outbox("app_chan"), [], "drained")


def test_outbox_indexes_and_storage():
    eq(sql("SELECT indexrelid::regclass, pg_get_indexdef(indexrelid) "
           "FROM pg_index WHERE indrelid = 'pginval.outbox'::regclass "
           "ORDER BY indexrelid::regclass::text").splitlines(), [
        "pginval.outbox_channel_id_idx|CREATE INDEX outbox_channel_id_idx "
        "ON pginval.outbox USING btree (channel, id)",
        "pginval.outbox_pkey|CREATE UNIQUE INDEX outbox_pkey "
        "ON pginval.outbox USING btree (id)",
    ], "indexes")
    opts = sql("SELECT unnest(reloptions) FROM pg_class "
               "WHERE oid = 'pginval.outbox'::regclass").split()
    contains(opts, "autovacuum_vacuum_scale_factor=0", "vacuum")
    contains(opts, "autovacuum_vacuum_threshold=2000", "vacuum")
    eq(sql("SELECT relpersistence FROM pg_class "
           "WHERE oid = 'pginval.outbox'::regclass").strip(), "p", "logged")
    # ids are generated; a client cannot choose them.
    err = sql_error("INSERT INTO pginval.outbox (id, channel, payload) "
                    "VALUES (1, 'x', 'y');")
    contains(err, "GENERATED ALWAYS", "identity")

    # A small channel behind a large backlog of another: the drain reads
    # (channel, id) in order, with no sort and no filter over the others.
    sql("INSERT INTO pginval.outbox (channel, payload) "
        "SELECT 'idx_big', 'p' || g FROM generate_series(1, 20000) g;"
        "INSERT INTO pginval.outbox (channel, payload) "
        "SELECT 'idx_small', 'p' || g FROM generate_series(1, 10) g;"
        "ANALYZE pginval.outbox;")
    try:
        for fetch in (FETCH_SQL.replace("$1", "'idx_small'")
                      .replace("$2", "1000"),
                      "EXECUTE drain_fetch('idx_small', 1000)"):
            plan = sql(PREPARE_DRAIN + "EXPLAIN (COSTS OFF) " + fetch)
            contains(plan, "Index Scan using outbox_channel_id_idx", fetch)
            contains(plan, "LockRows", fetch)
            assert "Sort" not in plan and "Filter" not in plan, plan
            # The LIMIT sits above the row locking, so skipped rows do not
            # count against it.
            assert plan.index("Limit") < plan.index("LockRows"), plan
        out = sql(PREPARE_DRAIN + "BEGIN; EXECUTE drain_fetch('idx_small', 3);"
                  "COMMIT;").splitlines()
        eq([line.split("|")[1] for line in out], ["p1", "p2", "p3"],
           "oldest first")
        plan = sql(PREPARE_DRAIN
                   + "EXPLAIN (COSTS OFF) EXECUTE drain_ack('{1,2}')")
        contains(plan, "Index Scan using outbox_pkey", "delete by id")
    finally:
        sql("DELETE FROM pginval.outbox "
            "WHERE channel IN ('idx_big', 'idx_small'); "
            "ANALYZE pginval.outbox;")


def test_outbox_drain_skip_locked():
    # Two drains at once, with the daemon's statements: the second one
    # skips the rows the first has locked and takes the next ones.
    sql("CREATE TABLE dq (id int PRIMARY KEY);"
        "CREATE TABLE dq_go (go int);"
        "SELECT pginval.watch('dq', NULL, 'dq_chan', 'durable');"
        "INSERT INTO dq VALUES (1); INSERT INTO dq VALUES (2);"
        "INSERT INTO dq VALUES (3); INSERT INTO dq VALUES (4);"
        "INSERT INTO dq VALUES (5);")
    ids = [int(i) for i in sql("SELECT id FROM pginval.outbox "
                               "WHERE channel = 'dq_chan' "
                               "ORDER BY id").split()]
    eq(len(ids), 5, "queued")

    def rows(out):
        got = []
        for line in out.splitlines():
            row_id, _, payload = line.partition("|")
            got.append((int(row_id), json.loads(payload)["n"]["id"]))
        return got

    # Connection A takes two rows and holds them until dq_go gets a row (30 s
    # at most), then deletes them and commits.
    app = "pginval_test_drain_a"
    script_a = PREPARE_DRAIN + """
        BEGIN;
        EXECUTE drain_fetch('dq_chan', 2);
        DO $$
        BEGIN
            FOR i IN 1 .. 600 LOOP
                EXIT WHEN EXISTS (SELECT 1 FROM dq_go);
                PERFORM pg_sleep(0.05);
            END LOOP;
        END;
        $$;
        EXECUTE drain_ack('{%d,%d}');
        COMMIT;
    """ % (ids[0], ids[1])
    result = {}

    def connection_a():
        try:
            result["out"] = PG.run_psql(
                ["-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                input=script_a, env={"PGAPPNAME": app}).stdout
        except Exception as exc:  # reported by the main thread
            result["error"] = exc

    thread = threading.Thread(target=connection_a)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while sql("SELECT count(*) FROM pg_stat_activity "
                  "WHERE application_name = '%s' AND state = 'active' "
                  "AND query LIKE '%%DO $$%%'" % app).strip() != "1":
            assert "error" not in result, result["error"]
            assert time.monotonic() < deadline, "connection A did not start"
            time.sleep(0.05)

        # Connection B: the same statements, while A holds its rows.
        out = sql(PREPARE_DRAIN + "BEGIN; EXECUTE drain_fetch('dq_chan', 2);"
                  "EXECUTE drain_ack('{%d,%d}'); COMMIT;" % (ids[2], ids[3]))
        eq(rows(out), [(ids[2], "3"), (ids[3], "4")], "B skips A's rows")
        # A third drain finds what is left; plain reads are not blocked.
        out = sql(PREPARE_DRAIN + "BEGIN; EXECUTE drain_fetch('dq_chan', 100);"
                  "ROLLBACK;")
        eq(rows(out), [(ids[4], "5")], "C gets the rest")
        eq(sql("SELECT count(*) FROM pginval.outbox "
               "WHERE channel = 'dq_chan'").strip(), "3", "plain read")
    finally:
        sql("INSERT INTO dq_go VALUES (1);")
        thread.join(60)
    assert not thread.is_alive(), "connection A hangs"
    assert "error" not in result, result.get("error")
    eq(rows(result["out"]), [(ids[0], "1"), (ids[1], "2")], "A's rows")
    eq(sql("SELECT id FROM pginval.outbox WHERE channel = 'dq_chan'").split(),
       [str(ids[4])], "A and B deleted theirs")
    take_outbox("dq_chan")


# The layout of the first release: no mode anywhere, no outbox, triggers
# called with (channel, columns...) and on_truncate(channel).
OLD_LAYOUT = r"""
DROP FUNCTION pginval.watch(regclass, text[], text, text);
DROP FUNCTION pginval._install_triggers(regclass, text[], text, text);
CREATE FUNCTION pginval.watch(tbl regclass, columns text[] DEFAULT NULL,
                              channel text DEFAULT 'pginval')
RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
DROP VIEW pginval.watched_tables;
CREATE VIEW pginval.watched_tables AS
SELECT n.nspname::text || '.' || c.relname::text AS table_name,
       w.columns, w.channel, w.watched_at
  FROM pginval.watched w
  JOIN pg_catalog.pg_class c ON c.oid = w.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_trigger tg
                WHERE tg.tgrelid = c.oid AND tg.tgname = 'pginval_ins_del');
ALTER TABLE pginval.watched DROP COLUMN mode;
DROP TABLE pginval.outbox;
REVOKE USAGE ON SCHEMA pginval FROM PUBLIC;
"""

OLD_TRIGGERS = """
CREATE OR REPLACE TRIGGER pginval_ins_del AFTER INSERT OR DELETE ON {t}
    FOR EACH ROW EXECUTE FUNCTION pginval.on_row({args});
CREATE OR REPLACE TRIGGER pginval_upd AFTER UPDATE ON {t}
    FOR EACH ROW WHEN (NOT (OLD *= NEW))
    EXECUTE FUNCTION pginval.on_row({args});
CREATE OR REPLACE TRIGGER pginval_trunc AFTER TRUNCATE ON {t}
    FOR EACH STATEMENT EXECUTE FUNCTION pginval.on_truncate({chan});
"""


def test_upgrade_recreates_old_triggers():
    db = PG.create_database("upgrade")
    PG.psql_file(INSTALL, db=db)
    sql("CREATE TABLE up_a (id int PRIMARY KEY, email text, plan text);"
        "CREATE TABLE up_b (k text PRIMARY KEY);"
        "CREATE TABLE up_off (id int PRIMARY KEY);"
        "SELECT pginval.watch('up_a', '{id,email}');"
        "SELECT pginval.watch('up_b', NULL, 'chan_b');"
        "SELECT pginval.watch('up_off');", db=db)
    before = sql("SELECT relid, columns, channel, watched_at "
                 "FROM pginval.watched ORDER BY relid", db=db)
    sql(OLD_LAYOUT
        + OLD_TRIGGERS.format(t="up_a", args="'pginval', 'id', 'email'",
                              chan="'pginval'")
        + OLD_TRIGGERS.format(t="up_b", args="'chan_b', 'k'", chan="'chan_b'")
        # Triggers dropped by hand: the table stays unwatched.
        + "DROP TRIGGER pginval_ins_del ON up_off;"
          "DROP TRIGGER pginval_upd ON up_off;"
          "DROP TRIGGER pginval_trunc ON up_off;", db=db)
    eq(trigger_args("up_a", db)["pginval_ins_del"], ["pginval", "id", "email"],
       "old layout in place")

    PG.psql_file(INSTALL, db=db)

    eq(trigger_args("up_a", db), {
        "pginval_ins_del": ["pginval", "notify", "id", "email"],
        "pginval_trunc": ["pginval", "notify"],
        "pginval_upd": ["pginval", "notify", "id", "email"],
    }, "up_a triggers")
    eq(trigger_args("up_b", db), {
        "pginval_ins_del": ["chan_b", "notify", "k"],
        "pginval_trunc": ["chan_b", "notify"],
        "pginval_upd": ["chan_b", "notify", "k"],
    }, "up_b triggers")
    eq(trigger_args("up_off", db), {}, "unwatched table left alone")
    eq(sql("SELECT relid, columns, channel, watched_at "
           "FROM pginval.watched ORDER BY relid", db=db), before,
       "registry kept")
    eq(sql("SELECT table_name, mode FROM pginval.watched_tables "
           "ORDER BY 1", db=db).split(),
       ["public.up_a|notify", "public.up_b|notify"], "view")
    eq(sql("SELECT string_agg(oid::regprocedure::text, ',') FROM pg_proc "
           "WHERE proname = 'watch' "
           "AND pronamespace = 'pginval'::regnamespace", db=db).strip(),
       "pginval.watch(regclass,text[],text,text)", "one watch()")
    eq(sql("SELECT count(*) FROM pg_constraint "
           "WHERE conname = 'watched_mode_check'", db=db).strip(), "1",
       "constraint")

    since = now_us()
    notes = capture("""
        INSERT INTO up_a VALUES (1, 'a@x.io', 'free');
        UPDATE up_a SET email = 'b@x.io';
        DELETE FROM up_a;
        TRUNCATE up_a;
        INSERT INTO up_b VALUES ('k1');
        INSERT INTO up_off VALUES (1);
    """, channels=["pginval", "chan_b"], db=db)
    check_notes(notes[:4], [
        '{"v":1,"t":"public.up_a","op":"insert","ts":TS,"x":X,'
        '"n":{"id":"1","email":"a@x.io"}}',
        '{"v":1,"t":"public.up_a","op":"update","ts":TS,"x":X,'
        '"o":{"id":"1","email":"a@x.io"},"n":{"id":"1","email":"b@x.io"}}',
        '{"v":1,"t":"public.up_a","op":"delete","ts":TS,"x":X,'
        '"o":{"id":"1","email":"b@x.io"}}',
        '{"v":1,"t":"public.up_a","op":"truncate","ts":TS,"x":X}',
    ], since=since)
    check_notes(notes[4:], [
        '{"v":1,"t":"public.up_b","op":"insert","ts":TS,"x":X,'
        '"n":{"k":"k1"}}'], channel="chan_b", since=since)

    # The new modes work on the upgraded installation, for any writer.
    sql("SELECT pginval.watch('up_a', '{id}', 'pginval', 'durable');"
        "CREATE ROLE pginval_test_upgrade_app;"
        "GRANT INSERT ON up_a TO pginval_test_upgrade_app;", db=db)
    notes = capture("SET ROLE pginval_test_upgrade_app;"
                    "INSERT INTO up_a VALUES (2, 'c@x.io', 'pro');", db=db)
    eq([n.payload for n in notes], [WAKE], "durable after upgrade")
    eq([n.obj["n"] for n in outbox("pginval", db=db)], [{"id": "2"}],
       "outbox after upgrade")


def test_reinstall_leaves_current_triggers_alone():
    # Nothing to upgrade: re-running the file must not rewrite (and so lock)
    # the triggers of watched tables, nor drop what is queued.
    sql("INSERT INTO sw VALUES (100, 'x');"
        "SELECT pginval.watch('sw', NULL, 'sw_chan', 'poll');"
        "INSERT INTO sw VALUES (101, 'y');")
    query = ("SELECT tgrelid::regclass, tgname, xmin FROM pg_trigger "
             "WHERE tgname LIKE 'pginval\\_%' ORDER BY tgrelid, tgname")
    before = sql(query)
    assert before.count("\n") > 20, before
    PG.psql_file(INSTALL)
    eq(sql(query), before, "triggers untouched")
    eq([n.obj["n"]["id"] for n in take_outbox("sw_chan")], ["101"],
       "queue kept")


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
    eq(sql("SELECT to_regclass('pginval.outbox') IS NULL").strip(), "t",
       "outbox gone")
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
