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
import hashlib
import hmac
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


SIGNED = re.compile(r',"m":"([0-9a-f]{64})"\}$')


def secret_key(db=None):
    """The HMAC key's two padded blocks (ik, ok) from pginval.secret."""
    ik, ok = PG.psql("SELECT encode(ik, 'hex'), encode(ok, 'hex') "
                     "FROM pginval.secret", db=db).strip().split("|")
    return bytes.fromhex(ik), bytes.fromhex(ok)


def unsigned(wire, key):
    """The payload without its authenticator, which must be valid."""
    m = SIGNED.search(wire)
    assert m is not None, "payload without an authenticator: %r" % wire[-200:]
    body = wire[:m.start()] + "}"
    ik, ok = key
    inner = hashlib.sha256(ik + body.encode()).digest()
    want = hashlib.sha256(ok + inner).hexdigest()
    assert hmac.compare_digest(m.group(1), want), "bad MAC: %r" % wire[:200]
    return body


class Note:
    """One captured notification."""

    def __init__(self, channel, payload, key=None):
        self.channel = channel
        self.wire = payload  # the raw text, exactly as sent
        if payload == WAKE:
            self.payload = payload
            self.json = self.obj = None
        else:
            # What the trigger built, its authenticator checked and removed.
            self.payload = payload = unsigned(payload, key or secret_key())
            self.json = json.loads(payload, object_pairs_hook=list)
            self.obj = json.loads(payload)

    @property
    def keys(self):
        return [k for k, _ in self.json]

    def __repr__(self):
        return "Note(%r, %r)" % (self.channel, self.payload)


def parse_notifications(out, key):
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
        notes.append(Note(channel, rest[:m.start()], key))
    return notes


def capture(sql, channels=("pginval",), db=None):
    """Run ``sql`` in a session LISTENing on ``channels``; return the
    notifications it received, in order."""
    script = "".join('LISTEN "%s";\n' % c for c in channels)
    script += sql.rstrip() + "\n" + "SELECT 1;\n"
    proc = PG.run_psql(["-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                       input=script, db=db)
    return parse_notifications(proc.stdout, secret_key(db) if
                               NOTIFY_PREFIX in proc.stdout else None)


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
    key = secret_key(db) if out else None
    return [Note(channel, line, key) for line in out.splitlines()]


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


def rows_of(note):
    """The row descriptions of a payload, one-row or "rows" form, as a list
    of {"o": .., "n": ..} dicts (with only the keys the payload has)."""
    if "rows" in note.obj:
        return note.obj["rows"]
    return [{k: note.obj[k] for k in ("o", "n") if k in note.obj}]


def all_rows(notes):
    return [r for note in notes for r in rows_of(note)]


STATEMENT_TRIGGERS = ["pginval_del", "pginval_ins", "pginval_trunc",
                      "pginval_upd"]
ROW_TRIGGERS = ["pginval_ins_del", "pginval_trunc", "pginval_upd"]


def triggers(table, db=None):
    """{trigger name: (level, function, REFERENCING clause)} of the pginval
    triggers of ``table``."""
    out = sql("SELECT tgname, CASE WHEN tgtype & 1 = 1 THEN 'row' "
              "ELSE 'statement' END, tgfoid::regproc, "
              "coalesce(tgoldtable, '-'), coalesce(tgnewtable, '-') "
              "FROM pg_trigger WHERE tgrelid = %s::regclass "
              "AND tgname LIKE 'pginval\\_%%' ORDER BY 1" % literal(table),
              db=db)
    return {f[0]: tuple(f[1:]) for f in
            (line.split("|") for line in out.splitlines())}


STATEMENT_LAYOUT = {
    "pginval_del": ("statement", "pginval.on_statement", "pginval_rows", "-"),
    "pginval_ins": ("statement", "pginval.on_statement", "-", "pginval_rows"),
    "pginval_trunc": ("statement", "pginval.on_truncate", "-", "-"),
    "pginval_upd": ("statement", "pginval.on_statement", "pginval_old",
                    "pginval_new"),
}
ROW_LAYOUT = {
    "pginval_ins_del": ("row", "pginval.on_row", "-", "-"),
    "pginval_trunc": ("statement", "pginval.on_truncate", "-", "-"),
    "pginval_upd": ("row", "pginval.on_row", "-", "-"),
}


def check_sizes(notes, limit=8000):
    for note in notes:
        size = len(note.wire.encode())
        assert size < limit, "payload of %d bytes: %s..." % (
            size, note.payload[:200])


# -- tests --------------------------------------------------------------------
# In any order: each one creates its own tables in the database that setup
# installed pginval into.

def setup():
    PG.psql_file(INSTALL)


def test_install_is_idempotent():
    sql("CREATE TABLE reinstalled (id int PRIMARY KEY);"
        "SELECT pginval.watch('reinstalled');")
    watched = sql("SELECT count(*) FROM pginval.watched_tables")
    PG.psql_file(INSTALL)
    PG.psql_file(INSTALL)
    eq(sql("SELECT pginval.version()").strip(), "3", "version")
    eq(sql("SELECT provolatile FROM pg_proc "
           "WHERE oid = 'pginval.version()'::regprocedure").strip(), "i",
       "version() volatility")
    eq(sql("SELECT count(*) FROM pginval.watched_tables"), watched,
       "the watches stay")
    eq(len(capture("INSERT INTO reinstalled VALUES (1);")), 1, "still sent")


def test_watch_defaults_to_primary_key():
    sql("CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
        "SELECT pginval.watch('users');")
    eq(sql("SELECT table_name, columns, channel FROM pginval.watched_tables "
           "WHERE table_name = 'public.users'").strip(),
       "public.users|{id}|pginval", "registry")
    eq(sql("SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger "
           "WHERE tgrelid = 'users'::regclass").strip(),
       "pginval_del,pginval_ins,pginval_trunc,pginval_upd", "triggers")
    eq(triggers("users"), STATEMENT_LAYOUT, "statement triggers")


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
    # One payload per statement, describing both rows.
    eq([(n.obj["op"], rows_of(n)) for n in notes], [
        ("insert", [{"n": {"id": "1"}}, {"n": {"id": "2"}}]),
        ("update", [{"o": {"id": "1"}, "n": {"id": "11"}},
                    {"o": {"id": "2"}, "n": {"id": "12"}}]),
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
    # The largest payload NOTIFY takes is 7999 bytes, the authenticator
    # included; find the value length that lands exactly there, and check
    # one more byte switches to "big".
    sql("CREATE TABLE edge (id int PRIMARY KEY, s text);"
        "SELECT pginval.watch('edge', '{id,s}');")
    probe = capture("INSERT INTO edge VALUES (1, '');")[0]
    base = len(probe.payload.encode())
    fill = 7999 - 71 - base
    notes = capture("INSERT INTO edge VALUES (2, repeat('a', %d));"
                    "INSERT INTO edge VALUES (3, repeat('a', %d));"
                    % (fill, fill + 1))
    eq(len(notes[0].wire.encode()), 7999, "largest normal payload")
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
        "CREATE TABLE parted (id int PRIMARY KEY) PARTITION BY RANGE (id);"
        "CREATE TABLE parted_mid PARTITION OF parted FOR VALUES FROM (0) "
        "TO (10) PARTITION BY RANGE (id);")
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
    # A partitioned table below the root would miss the statements aimed
    # at the root.
    err = sql_error("SELECT pginval.watch('parted_mid');")
    contains(err, "public.parted_mid is a partition of public.parted",
             "partitioned partition")
    contains(err, "Watch public.parted, the root", "hint")
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
           "WHERE tgrelid = 'rew'::regclass").strip(), "4", "four triggers")
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


# -- statements of several rows ----------------------------------------------

def test_several_rows_in_one_payload():
    sql("CREATE TABLE multi (id int PRIMARY KEY, email text, plan text);"
        "SELECT pginval.watch('multi', '{id,email}');")
    since = now_us()
    notes = capture("""
        INSERT INTO multi VALUES (1, 'a@x.io', 'free'), (2, NULL, 'free'),
                                 (3, 'c@x.io', 'pro'), (4, 'd@x.io', 'pro');
        DELETE FROM multi WHERE id IN (1, 3);
        UPDATE multi SET email = upper(email), plan = 'team';
        UPDATE multi SET email = 'solo' WHERE id = 2;
    """)
    check_notes(notes, [
        '{"v":1,"t":"public.multi","op":"insert","ts":TS,"x":X,"rows":['
        '{"n":{"id":"1","email":"a@x.io"}},{"n":{"id":"2","email":null}},'
        '{"n":{"id":"3","email":"c@x.io"}},{"n":{"id":"4","email":"d@x.io"}}]}',
        '{"v":1,"t":"public.multi","op":"delete","ts":TS,"x":X,"rows":['
        '{"o":{"id":"1","email":"a@x.io"}},{"o":{"id":"3","email":"c@x.io"}}]}',
        '{"v":1,"t":"public.multi","op":"update","ts":TS,"x":X,"rows":['
        '{"o":{"id":"2","email":null},"n":{"id":"2","email":null}},'
        '{"o":{"id":"4","email":"d@x.io"},"n":{"id":"4","email":"D@X.IO"}}]}',
        # One row: the one-row form, as ever.
        '{"v":1,"t":"public.multi","op":"update","ts":TS,"x":X,'
        '"o":{"id":"2","email":null},"n":{"id":"2","email":"solo"}}',
    ], since=since)
    eq(notes[0].keys, ["v", "t", "op", "ts", "x", "rows"], "keys")
    xs = [n.obj["x"] for n in notes]
    assert xs[0] < xs[1] < xs[2] < xs[3], xs


def test_statement_payloads_share_ts_and_x():
    sql("CREATE TABLE shared (id int PRIMARY KEY, s text);"
        "SELECT pginval.watch('shared', '{id,s}');")
    notes = capture("INSERT INTO shared SELECT g, repeat('s', 500) "
                    "FROM generate_series(1, 100) g;")
    assert len(notes) > 5, len(notes)
    eq(len({(n.obj["ts"], n.obj["x"]) for n in notes}), 1, "one ts and x")
    eq([r["n"]["id"] for r in all_rows(notes)],
       [str(i) for i in range(1, 101)], "rows in order")


def test_statements_without_rows_send_nothing():
    sql("CREATE TABLE zero (id int PRIMARY KEY, v int);"
        "INSERT INTO zero VALUES (1, 1);"
        "SELECT pginval.watch('zero');")
    statements = """
        UPDATE zero SET v = 2 WHERE id = 99;
        DELETE FROM zero WHERE id = 99;
        INSERT INTO zero SELECT 5, 5 WHERE false;
        INSERT INTO zero VALUES (1, 1) ON CONFLICT DO NOTHING;
    """
    eq(capture(statements), [], "no payload")
    # The triggers take no transaction id either: a transaction that
    # changed nothing stays read-only.
    out = sql("BEGIN;" + statements +
              "SELECT pg_current_xact_id_if_assigned() IS NULL; COMMIT;")
    eq(out.strip(), "t", "no transaction id")


def test_columns_named_like_the_triggers_names():
    # Columns named like the aliases and variables of the trigger functions
    # change nothing.
    cols = ["ot", "nt", "r", "p", "x", "same", "several", "head", "o", "n",
            "e", "rn", "j", "oj", "nj", "new", "old", "payload", "cols"]
    sql("CREATE TABLE tricky (id int PRIMARY KEY, %s);"
        "INSERT INTO tricky SELECT g, %s FROM generate_series(1, 3) g;"
        "SELECT pginval.watch('tricky', '{id,ot,r,o}');"
        % (", ".join('"%s" text' % c for c in cols),
           ", ".join("'%s'" % c for c in cols)))
    notes = capture("""
        UPDATE tricky SET "e" = 'f' WHERE id = 1;
        UPDATE tricky SET "e" = 'g';
        INSERT INTO tricky (id, ot, r, o) VALUES (4, 'a', 'b', 'c');
        INSERT INTO tricky (id) VALUES (5), (6);
        DELETE FROM tricky WHERE id > 4;
        DELETE FROM tricky WHERE id = 4;
    """)
    image = {"id": "1", "ot": "ot", "r": "r", "o": "o"}
    eq([(n.obj["op"], rows_of(n)) for n in notes], [
        ("update", [{"o": image, "n": image}]),
        ("update", [{"o": dict(image, id=i), "n": dict(image, id=i)}
                    for i in ("2", "3", "1")]),
        ("insert", [{"n": {"id": "4", "ot": "a", "r": "b", "o": "c"}}]),
        ("insert", [{"n": {"id": i, "ot": None, "r": None, "o": None}}
                    for i in ("5", "6")]),
        ("delete", [{"o": {"id": i, "ot": None, "r": None, "o": None}}
                    for i in ("5", "6")]),
        ("delete", [{"o": {"id": "4", "ot": "a", "r": "b", "o": "c"}}]),
    ], "events")


def test_update_sends_only_changed_rows():
    sql("CREATE TABLE mixed (id int PRIMARY KEY, v int, f float8, j json);"
        "INSERT INTO mixed SELECT g, g, g / 2.0, '{\"a\": 1}' "
        "FROM generate_series(1, 10) g;"
        "SELECT pginval.watch('mixed');")
    notes = capture("""
        UPDATE mixed SET v = CASE WHEN id % 2 = 0 THEN v + 1 ELSE v END;
        UPDATE mixed SET v = v, f = f, j = j;
        UPDATE mixed SET v = CASE WHEN id = 3 THEN -3 ELSE v END;
        UPDATE mixed SET f = CASE WHEN id = 4 THEN 2.00 ELSE f END;
    """)
    check_notes(notes, [
        '{"v":1,"t":"public.mixed","op":"update","ts":TS,"x":X,"rows":['
        + ",".join('{"o":{"id":"%d"},"n":{"id":"%d"}}' % (i, i)
                   for i in (2, 4, 6, 8, 10)) + ']}',
        # Ten rows updated, one changed: a payload of one row has the
        # one-row form.
        '{"v":1,"t":"public.mixed","op":"update","ts":TS,"x":X,'
        '"o":{"id":"3"},"n":{"id":"3"}}',
    ])


def test_update_pairs_old_and_new_rows():
    # The n-th rows of the two transition tables are one row's two versions,
    # whichever join pairs them: a merge join or a hash join, spilling to
    # disk with the smallest work_mem, with the rows in no particular
    # physical order.
    sql("CREATE TABLE pairs (id int PRIMARY KEY, version int NOT NULL, "
        "pad text);"
        "INSERT INTO pairs SELECT g, g % 7, repeat('p', g % 90) "
        "FROM generate_series(1, 4000) g;"
        "UPDATE pairs SET pad = pad || 'x' WHERE id % 3 = 0;"
        "DELETE FROM pairs WHERE id % 11 = 0;"
        "INSERT INTO pairs SELECT g, 1, 'new' FROM generate_series(1, 4000) g"
        "  WHERE g % 11 = 0;"
        "SELECT pginval.watch('pairs', '{id,version}');")
    want = sorted(i for i in range(1, 4001) if i % 5 != 0)
    for setting in ("enable_hashjoin = off", "enable_mergejoin = off",
                    "work_mem = '64MB'"):
        before = dict(line.split("|") for line in
                      sql("SELECT id, version FROM pairs").split())
        notes = capture("SET work_mem = '64kB'; SET %s;"
                        "UPDATE pairs SET version = version + 1 + id %% 3, "
                        "  pad = pad || 'y' WHERE id %% 5 <> 0;" % setting)
        check_sizes(notes)
        rows = all_rows(notes)
        eq(sorted(int(r["n"]["id"]) for r in rows), want, setting)
        for r in rows:
            o, n = r["o"], r["n"]
            if (o["id"] != n["id"] or o["version"] != before[o["id"]]
                    or int(n["version"]) != int(o["version"]) + 1
                    + int(o["id"]) % 3):
                raise AssertionError("%s: mismatched pair %r" % (setting, r))


def test_packing_several_rows():
    # Descriptions of every size up to about 1 kB (those larger go alone,
    # see below), with multibyte characters: every payload stays under
    # NOTIFY's 8000 bytes, every row is described once, in order, and the
    # payloads are well filled.
    sql("CREATE TABLE packed (id int PRIMARY KEY, name text, v int);"
        "INSERT INTO packed SELECT g, repeat(CASE WHEN g % 4 = 0 THEN '日' "
        "  ELSE chr(97 + g % 26) END, (g * 37) % 150), 0 "
        "FROM generate_series(1, 5000) g;"
        "SELECT pginval.watch('packed', '{id,name}');")
    names = dict(line.split("|", 1) for line in
                 sql("SELECT id, name FROM packed").splitlines())
    for stmt, op in (("UPDATE packed SET v = 1", "update"),
                     ("DELETE FROM packed", "delete"),
                     ("INSERT INTO packed SELECT g, repeat(CASE WHEN g % 4 = 0 "
                      "THEN '日' ELSE chr(97 + g % 26) END, (g * 37) % 150), 0 "
                      "FROM generate_series(1, 5000) g", "insert")):
        # The order in which the statement changes the rows: that of a
        # sequential scan, or of generate_series().
        order = [int(i) for i in sql("SELECT id FROM packed "
                                     "ORDER BY ctid").split()]
        if op == "insert":
            order = list(range(1, 5001))
        notes = capture(stmt + ";")
        check_sizes(notes)
        rows = all_rows(notes)
        eq([n.obj["op"] for n in notes], [op] * len(notes), "op")
        images = [r.get("n", r.get("o")) for r in rows]
        if [int(i["id"]) for i in images] != order:
            raise AssertionError("%s: not every row once, in order" % op)
        for i in images:
            if i["name"] != names[i["id"]]:
                raise AssertionError("%s: wrong name for %s" % (op, i["id"]))
        for note in notes:
            assert "rows" in note.obj and len(note.obj["rows"]) <= 500, \
                note.payload[:200]
        # Each payload is filled to more than 6 kB but for the last one.
        total = sum(len(n.payload.encode()) for n in notes)
        assert len(notes) <= total // 6000 + 1, (len(notes), total)


def test_too_big_rows_in_a_statement():
    sql("CREATE TABLE bigmix (id int PRIMARY KEY, name text);"
        "SELECT pginval.watch('bigmix', '{id,name}');")
    since = now_us()
    notes = capture("""
        INSERT INTO bigmix VALUES (1, 'a'), (2, repeat('b', 9000)), (3, 'c'),
            (4, repeat('日', 3000)), (5, repeat('e', 3000)), (6, 'f');
        UPDATE bigmix SET name = name || '!' WHERE id IN (2, 4);
    """)
    # Short descriptions together, a long one alone, and for the rows too
    # large for any payload a single "big".
    check_notes(notes, [
        '{"v":1,"t":"public.bigmix","op":"insert","ts":TS,"x":X,"rows":['
        '{"n":{"id":"1","name":"a"}},{"n":{"id":"3","name":"c"}},'
        '{"n":{"id":"6","name":"f"}}]}',
        '{"v":1,"t":"public.bigmix","op":"insert","ts":TS,"x":X,'
        '"n":{"id":"5","name":"' + "e" * 3000 + '"}}',
        '{"v":1,"t":"public.bigmix","op":"insert","ts":TS,"x":X,"big":true}',
        '{"v":1,"t":"public.bigmix","op":"update","ts":TS,"x":X,"big":true}',
    ], since=since)
    eq(sql("SELECT count(*) FROM bigmix").strip(), "6", "writes succeeded")


def test_description_size_boundaries():
    # One row alone may use all 7999 bytes of a payload; packed rows never
    # make a payload longer.
    sql("CREATE TABLE bound (id int PRIMARY KEY, s text);"
        "SELECT pginval.watch('bound', '{id,s}');")
    probe = capture("INSERT INTO bound VALUES (1, '');")[0]
    fill = 7999 - len(probe.wire.encode())
    notes = capture("INSERT INTO bound VALUES (2, repeat('a', %d)), "
                    "(3, repeat('a', %d)), (4, 'x');" % (fill, fill + 1))
    eq(len(notes), 3, "three payloads")
    eq(rows_of(notes[0]), [{"n": {"id": "4", "s": "x"}}], "small row")
    eq(rows_of(notes[1]), [{"n": {"id": "2", "s": "a" * fill}}], "full row")
    eq(len(notes[1].wire.encode()), 7999, "largest payload")
    eq(notes[2].obj.get("big"), True, "one byte more is big")
    # Rows of about 1 kB, either side of the length that makes a row go
    # alone: each payload stays at 7999 bytes or less.
    for length in range(990, 1010, 3):
        notes = capture("INSERT INTO bound SELECT g, repeat('z', %d) "
                        "FROM generate_series(100, 140) g;"
                        "DELETE FROM bound WHERE id >= 100;" % length)
        check_sizes(notes)
        eq(sorted(int(r.get("n", r.get("o"))["id"]) for r in all_rows(notes)),
           sorted(list(range(100, 141)) * 2), "length %d" % length)


def test_value_encoding_in_statements():
    # The descriptions of several rows follow the same rules as the
    # one-row form.
    sql("""
        CREATE TABLE mvals (id int PRIMARY KEY, s text, n numeric, b boolean,
                            nul text, extra text, last text);
        SELECT pginval.watch('mvals', '{id,s,n,b,nul,last}');
    """)
    values = (r"""(%d, E'Zo\u00eb "q" \\ \n \t 日本 ''single''',
                  12345678901234567890.123400, true, NULL, 'e', 'l')""")
    notes = capture("INSERT INTO mvals VALUES %s;" % (values % 1)
                    + "INSERT INTO mvals VALUES %s, %s;" % (values % 2,
                                                            values % 3))
    eq(len(notes), 2, "two payloads")
    one = notes[0].payload[notes[0].payload.index(',"n":') + 1:-1]
    for i, r in enumerate(rows_of(notes[1])):
        eq(r["n"]["id"], str(i + 2), "id")
    elements = notes[1].payload[notes[1].payload.index('"rows":[') + 8:-2]
    eq(elements, ",".join("{%s}" % one.replace('"id":"1"', '"id":"%d"' % i)
                          for i in (2, 3)), "same text as one row")
    contains(notes[1].payload,
             r'"s":"Zoë \"q\" \\ \n \t 日本 ' + "'single'" + '"', "escaping")
    contains(notes[1].payload, '"nul":null,"last":"l"}', "null, 6th column")
    # Columns dropped since watch() are left out, past the third too.
    sql("ALTER TABLE mvals DROP COLUMN n, DROP COLUMN last;")
    notes = capture("UPDATE mvals SET extra = 'f' WHERE id = 1;"
                    "UPDATE mvals SET extra = 'g' WHERE id > 1;")
    eq(len(notes), 2, "two payloads")
    images = [notes[0].json[-2][1], notes[0].json[-1][1]]
    images += [image for element in dict(notes[1].json)["rows"]
               for _, image in element]
    for image in images:
        eq([k for k, _ in image], ["id", "s", "b", "nul"], "columns")


def test_composite_key_and_nulls_in_statements():
    sql("CREATE TABLE ccomp (a int, b text, c text, PRIMARY KEY (b, a));"
        "SELECT pginval.watch('ccomp');"
        "CREATE TABLE cnull (id int, code text, v int);"
        "SELECT pginval.watch('cnull', '{id,code}');")
    notes = capture("""
        INSERT INTO ccomp VALUES (1, 'x', 'y'), (2, 'x', 'y');
        UPDATE ccomp SET c = 'z';
        UPDATE ccomp SET a = a + 10, b = 'w';
        INSERT INTO cnull VALUES (NULL, NULL, 1), (1, NULL, 1), (NULL, 'k', 1);
        UPDATE cnull SET code = NULL, v = 2;
    """)
    check_notes(notes, [
        '{"v":1,"t":"public.ccomp","op":"insert","ts":TS,"x":X,"rows":['
        '{"n":{"b":"x","a":"1"}},{"n":{"b":"x","a":"2"}}]}',
        '{"v":1,"t":"public.ccomp","op":"update","ts":TS,"x":X,"rows":['
        '{"o":{"b":"x","a":"1"},"n":{"b":"x","a":"1"}},'
        '{"o":{"b":"x","a":"2"},"n":{"b":"x","a":"2"}}]}',
        '{"v":1,"t":"public.ccomp","op":"update","ts":TS,"x":X,"rows":['
        '{"o":{"b":"x","a":"1"},"n":{"b":"w","a":"11"}},'
        '{"o":{"b":"x","a":"2"},"n":{"b":"w","a":"12"}}]}',
        '{"v":1,"t":"public.cnull","op":"insert","ts":TS,"x":X,"rows":['
        '{"n":{"id":null,"code":null}},{"n":{"id":"1","code":null}},'
        '{"n":{"id":null,"code":"k"}}]}',
        '{"v":1,"t":"public.cnull","op":"update","ts":TS,"x":X,"rows":['
        '{"o":{"id":null,"code":null},"n":{"id":null,"code":null}},'
        '{"o":{"id":"1","code":null},"n":{"id":"1","code":null}},'
        '{"o":{"id":null,"code":"k"},"n":{"id":null,"code":null}}]}',
    ])


def test_json_columns_in_statements():
    sql("""
        CREATE TABLE jmulti (id int PRIMARY KEY, body json, meta jsonb);
        INSERT INTO jmulti SELECT g, '{"a": 1}', '{"b": 2}'
          FROM generate_series(1, 4) g;
        SELECT pginval.watch('jmulti', '{id,body,meta}');
    """)
    notes = capture("""
        UPDATE jmulti SET body = body, meta = meta;
        UPDATE jmulti SET body = '{"a": 1}', meta = '{"b":2}';
        UPDATE jmulti SET body = '{"a":1}' WHERE id <= 2;
    """)
    eq(len(notes), 1, "only the real change: %s" % [n.payload for n in notes])
    # The values are the text to_jsonb() gives them, normalised for json
    # too: the change shows in the comparison of the rows, not here.
    eq(rows_of(notes[0]), [
        {"o": {"id": str(i), "body": '{"a": 1}', "meta": '{"b": 2}'},
         "n": {"id": str(i), "body": '{"a": 1}', "meta": '{"b": 2}'}}
        for i in (1, 2)], "json text")


def test_upsert_and_merge():
    sql("CREATE TABLE ups (id int PRIMARY KEY, v int);"
        "INSERT INTO ups VALUES (1, 1), (2, 2);"
        "SELECT pginval.watch('ups');")
    # An upsert fires both the INSERT and the UPDATE statement triggers.
    notes = capture("INSERT INTO ups VALUES (2, 20), (3, 30), (4, 40) "
                    "ON CONFLICT (id) DO UPDATE SET v = excluded.v;")
    eq(sorted((n.obj["op"], json.dumps(rows_of(n))) for n in notes), [
        ("insert", json.dumps([{"n": {"id": "3"}}, {"n": {"id": "4"}}])),
        ("update", json.dumps([{"o": {"id": "2"}, "n": {"id": "2"}}])),
    ], "upsert")
    if int(sql("SHOW server_version_num")) < 150000:
        return  # no MERGE before PostgreSQL 15
    notes = capture("""
        MERGE INTO ups u USING (VALUES (1), (3), (5)) s(id) ON u.id = s.id
            WHEN MATCHED AND u.id = 1 THEN DELETE
            WHEN MATCHED THEN UPDATE SET v = 0
            WHEN NOT MATCHED THEN INSERT VALUES (s.id, 5);
    """)
    eq(sorted((n.obj["op"], json.dumps(rows_of(n))) for n in notes), [
        ("delete", json.dumps([{"o": {"id": "1"}}])),
        ("insert", json.dumps([{"n": {"id": "5"}}])),
        ("update", json.dumps([{"o": {"id": "3"}, "n": {"id": "3"}}])),
    ], "merge")


def test_packing_keeps_session_settings():
    # The packing query turns jit and enable_nestloop off for itself only.
    sql("CREATE TABLE keep (id int PRIMARY KEY, v int);"
        "INSERT INTO keep SELECT g, 0 FROM generate_series(1, 10) g;"
        "SELECT pginval.watch('keep');")
    out = sql("SET jit = on; SET enable_nestloop = on;"
              "UPDATE keep SET v = v + 1;"
              "SHOW jit; SHOW enable_nestloop;"
              "BEGIN; SET LOCAL jit = off; UPDATE keep SET v = v + 1;"
              "SHOW jit; SHOW enable_nestloop; COMMIT;"
              "SHOW jit;")
    eq(out.split(), ["on", "on", "off", "on", "on"], "settings")


def test_cached_plans_of_small_statements_serve_large_ones():
    # The packing query's plan may be cached after a few statements of two
    # rows; it must still work, and finish, for thousands.
    sql("CREATE TABLE plans (id int PRIMARY KEY, v int);"
        "INSERT INTO plans SELECT g, 0 FROM generate_series(1, 20000) g;"
        "SELECT pginval.watch('plans');")
    pairs = [(i, i + 1) for i in range(1, 20, 2)]
    started = time.monotonic()
    notes = capture("SET work_mem = '64kB';"
                    + "".join("UPDATE plans SET v = v + 1 WHERE id IN (%d, %d);"
                              % p for p in pairs)
                    + "UPDATE plans SET v = v + 1;"
                    + "".join("DELETE FROM plans WHERE id IN (%d, %d);"
                              % p for p in pairs)
                    + "DELETE FROM plans;")
    assert time.monotonic() - started < 60, "too slow"
    check_sizes(notes)
    rows = all_rows(notes)
    eq(sorted(int(r["o"]["id"]) for r in rows if "n" in r),
       sorted(list(range(1, 21)) + list(range(1, 20001))), "updates")
    eq(sorted(int(r["o"]["id"]) for r in rows if "n" not in r),
       list(range(1, 20001)), "deletes")


def test_partitions_and_inheritance_children_use_row_triggers():
    # A statement on a partitioned table or an inheritance parent fires the
    # row triggers of the child holding each row, but only the parent's
    # statement triggers: children keep row triggers.
    sql("CREATE TABLE meas (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);"
        "CREATE TABLE meas_1 PARTITION OF meas FOR VALUES FROM (0) TO (100);"
        "CREATE TABLE meas_2 (id int PRIMARY KEY, v int);"
        "SELECT pginval.watch('meas_1');"
        "SELECT pginval.watch('meas_2');")
    eq(triggers("meas_1"), ROW_LAYOUT, "partition")
    eq(triggers("meas_2"), STATEMENT_LAYOUT, "plain table")
    notes = capture("INSERT INTO meas VALUES (1, 0), (2, 0);"
                    "UPDATE meas SET v = 1; DELETE FROM meas;")
    eq([(n.obj["t"], n.obj["op"], rows_of(n)) for n in notes], [
        ("public.meas_1", "insert", [{"n": {"id": "1"}}]),
        ("public.meas_1", "insert", [{"n": {"id": "2"}}]),
        ("public.meas_1", "update", [{"o": {"id": "1"}, "n": {"id": "1"}}]),
        ("public.meas_1", "update", [{"o": {"id": "2"}, "n": {"id": "2"}}]),
        ("public.meas_1", "delete", [{"o": {"id": "1"}}]),
        ("public.meas_1", "delete", [{"o": {"id": "2"}}]),
    ], "row by row, through the parent")
    # Attached after watch(): watch() again switches it to row triggers,
    # and back once detached.
    sql("ALTER TABLE meas ATTACH PARTITION meas_2 FOR VALUES FROM (100) TO (200);"
        "SELECT pginval.watch('meas_2');")
    eq(triggers("meas_2"), ROW_LAYOUT, "attached")
    notes = capture("INSERT INTO meas VALUES (101, 0), (102, 0);")
    eq([(n.obj["t"], rows_of(n)) for n in notes],
       [("public.meas_2", [{"n": {"id": "101"}}]),
        ("public.meas_2", [{"n": {"id": "102"}}])], "through the parent")
    sql("ALTER TABLE meas DETACH PARTITION meas_2;"
        "SELECT pginval.watch('meas_2');")
    eq(triggers("meas_2"), STATEMENT_LAYOUT, "detached")
    eq(sql("SELECT table_name FROM pginval.watched_tables "
           "WHERE table_name LIKE 'public.meas%' ORDER BY 1").split(),
       ["public.meas_1", "public.meas_2"], "view")
    sql("SELECT pginval.unwatch('meas_1');")
    eq(triggers("meas_1"), {}, "unwatched partition")
    eq(capture("INSERT INTO meas VALUES (3, 0);"), [], "no events")

    # Inheritance: the child has row triggers; the parent's statement
    # triggers describe the child's rows that a statement on the parent
    # changes as the parent's, as queries on the parent return them.
    sql("CREATE TABLE animals (id int PRIMARY KEY, name text);"
        "CREATE TABLE dogs (breed text) INHERITS (animals);"
        "SELECT pginval.watch('animals', '{id}');"
        "SELECT pginval.watch('dogs', '{id}');")
    eq(triggers("animals"), STATEMENT_LAYOUT, "parent")
    eq(triggers("dogs"), ROW_LAYOUT, "child")
    notes = capture("INSERT INTO animals VALUES (1, 'cat');"
                    "INSERT INTO dogs VALUES (2, 'rex', 'lab'), (3, 'max', 'pug');"
                    "UPDATE animals SET name = upper(name);")
    eq(sorted((n.obj["t"], n.obj["op"], json.dumps(rows_of(n))) for n in notes),
       sorted([
           ("public.animals", "insert", json.dumps([{"n": {"id": "1"}}])),
           ("public.dogs", "insert", json.dumps([{"n": {"id": "2"}}])),
           ("public.dogs", "insert", json.dumps([{"n": {"id": "3"}}])),
           ("public.dogs", "update",
            json.dumps([{"o": {"id": "2"}, "n": {"id": "2"}}])),
           ("public.dogs", "update",
            json.dumps([{"o": {"id": "3"}, "n": {"id": "3"}}])),
           ("public.animals", "update",
            json.dumps([{"o": {"id": str(i)}, "n": {"id": str(i)}}
                        for i in (1, 2, 3)])),
       ]), "events")


PART_LAYOUT = {
    "pginval_part_del": ("statement", "pginval.on_statement", "pginval_rows",
                         "-"),
    "pginval_part_ins": ("statement", "pginval.on_statement", "-",
                         "pginval_rows"),
    "pginval_part_trunc": ("statement", "pginval.on_truncate", "-", "-"),
    "pginval_part_upd": ("statement", "pginval.on_statement", "pginval_old",
                         "pginval_new"),
}


def test_partitioned_root_covers_its_tree():
    sql("CREATE TABLE pr (id int, r text, v text, PRIMARY KEY (id, r)) "
        "PARTITION BY LIST (r);"
        "CREATE TABLE pr_a PARTITION OF pr FOR VALUES IN ('a');"
        "SELECT pginval.watch('pr', '{id,r}');"
        "CREATE TABLE pr_b PARTITION OF pr FOR VALUES IN ('b', 'c') "
        "PARTITION BY LIST (r);"
        "CREATE TABLE pr_b1 PARTITION OF pr_b FOR VALUES IN ('b');"
        "CREATE TABLE pr_c (LIKE pr);"
        "ALTER TABLE pr_b ATTACH PARTITION pr_c FOR VALUES IN ('c');")
    eq(triggers("pr"), STATEMENT_LAYOUT, "the root")
    for t in ("pr_a", "pr_b", "pr_b1", "pr_c"):
        eq(triggers(t), PART_LAYOUT, t)
        eq(trigger_args(t)["pginval_part_upd"], ["pginval", "notify", "id", "r"],
           t + " has the root's arguments")
    eq(sql("SELECT count(*) FROM pginval.uncovered_partitions").strip(), "0",
       "nothing uncovered")

    def seen(text):
        return [(n.obj["t"], n.obj["op"], rows_of(n)) for n in capture(text)]

    # The write patterns of real applications, through the root and
    # straight into partitions: packed payloads, the root's name.
    eq(seen("COPY pr FROM stdin;\n1\ta\tx\n2\tb\tx\n3\tc\tx\n\\.\n"
            "INSERT INTO pr_b1 VALUES (4, 'b', 'x'), (5, 'b', 'x');"), [
        ("public.pr", "insert", [{"n": {"id": "1", "r": "a"}},
                                 {"n": {"id": "2", "r": "b"}},
                                 {"n": {"id": "3", "r": "c"}}]),
        ("public.pr", "insert", [{"n": {"id": "4", "r": "b"}},
                                 {"n": {"id": "5", "r": "b"}}]),
    ], "COPY through the root, INSERT into a sub-partition")
    eq(seen("INSERT INTO pr VALUES (1, 'a', 'y') "
            "ON CONFLICT (id, r) DO UPDATE SET v = excluded.v;"
            "MERGE INTO pr_c t USING (VALUES (3, 'c')) s(id, r) "
            "ON t.id = s.id AND t.r = s.r WHEN MATCHED THEN DELETE;"
            "WITH d AS (DELETE FROM pr_b WHERE id = 4 RETURNING *) "
            "SELECT count(*) FROM d;"), [
        ("public.pr", "update", [{"o": {"id": "1", "r": "a"},
                                  "n": {"id": "1", "r": "a"}}]),
        ("public.pr", "delete", [{"o": {"id": "3", "r": "c"}}]),
        ("public.pr", "delete", [{"o": {"id": "4", "r": "b"}}]),
    ], "upsert, MERGE into a partition, writable CTE on a sub-tree")
    # Rows moved to another partition and rows left in place, in one
    # statement: each old row paired with its new version.
    notes = capture("UPDATE pr SET r = CASE id WHEN 1 THEN 'b' ELSE r END, "
                    "v = 'z';")
    eq(sorted((r["o"]["id"], r["o"]["r"], r["n"]["id"], r["n"]["r"])
              for r in all_rows(notes)),
       [("1", "a", "1", "b"), ("2", "b", "2", "b"), ("5", "b", "5", "b")],
       "pairs")
    eq({n.obj["t"] for n in notes}, {"public.pr"}, "the root's name")

    # A foreign-key cascade into a partitioned table.
    sql("CREATE TABLE owners (id int PRIMARY KEY);"
        "CREATE TABLE pets (id int, owner int REFERENCES owners "
        "ON DELETE CASCADE, kind text, PRIMARY KEY (id, kind)) "
        "PARTITION BY LIST (kind);"
        "CREATE TABLE pets_cat PARTITION OF pets FOR VALUES IN ('cat');"
        "SELECT pginval.watch('pets', '{id,owner}');"
        "INSERT INTO owners VALUES (1);"
        "INSERT INTO pets VALUES (7, 1, 'cat');")
    eq(seen("DELETE FROM owners;"),
       [("public.pets", "delete", [{"o": {"id": "7", "owner": "1"}}])],
       "cascade")

    # Renaming the root: the partitions send the new name, untouched.
    before = sql("SELECT tgrelid::regclass, tgname, xmin FROM pg_trigger "
                 "WHERE tgname LIKE 'pginval\\_part%' ORDER BY 1, 2")
    sql("ALTER TABLE pr RENAME TO pr2")
    eq(seen("INSERT INTO pr_a VALUES (9, 'a', 'x');"),
       [("public.pr2", "insert", [{"n": {"id": "9", "r": "a"}}])], "renamed")
    eq(sql("SELECT tgrelid::regclass, tgname, xmin FROM pg_trigger "
           "WHERE tgname LIKE 'pginval\\_part%' ORDER BY 1, 2"), before,
       "no trigger rewritten")

    # TRUNCATE of the root fires every table's trigger: one payload.
    eq(seen("TRUNCATE pr2;"), [("public.pr2", "truncate", [{}])], "truncate")

    # Who may run what: the event trigger's function runs as its owner on
    # every role's DDL, so it is pinned and closed to PUBLIC, like _root().
    for f in ("pginval._on_ddl()", "pginval._root(oid)"):
        eq(sql("SELECT has_function_privilege('public', %s, 'EXECUTE'), "
               "prosecdef OR prorettype <> 'event_trigger'::regtype, "
               "proconfig::text FROM pg_proc WHERE oid = %s::regprocedure"
               % (literal(f), literal(f))).strip(),
           "f|t|{\"search_path=pg_catalog, pg_temp\"}", f)
    eq(sql("SELECT proowner::regrole FROM pg_proc "
           "WHERE oid = 'pginval._root(oid)'::regprocedure").strip(),
       "pginval_trigger", "_root's owner")

    sql("SELECT pginval.unwatch('pr2')")
    eq(sql("SELECT string_agg(t.tgrelid::regclass || '.' || t.tgname, ' ') "
           "FROM pg_trigger t WHERE t.tgrelid IN (SELECT relid FROM "
           "pg_partition_tree('pr2')) AND t.tgname LIKE 'pginval%'").strip(),
       "", "unwatched, all of it")


def test_install_without_superuser_leaves_out_the_event_trigger():
    db = PG.create_database("nosuper")
    sql("CREATE ROLE pginval_test_inst CREATEROLE;"
        "GRANT CREATE ON DATABASE nosuper TO pginval_test_inst;")
    sql("GRANT CREATE ON SCHEMA public TO pginval_test_inst;", db=db)
    as_inst = ["-q", "-v", "ON_ERROR_STOP=1", "-c",
               "SET ROLE pginval_test_inst"]
    out = PG.run_psql(as_inst + ["-f", INSTALL], db=db).stderr
    contains(out, "WARNING:  pginval: installed without the event trigger "
             "pginval_partitions", "install")
    eq(sql("SELECT count(*) FROM pg_event_trigger", db=db).strip(), "0",
       "no event trigger")
    out = PG.run_psql(as_inst + [
        "-c", "CREATE TABLE np (id int PRIMARY KEY) PARTITION BY RANGE (id);"
        "CREATE TABLE np_1 PARTITION OF np FOR VALUES FROM (0) TO (10);"
        "SELECT pginval.watch('np');"
        "CREATE TABLE np_2 PARTITION OF np FOR VALUES FROM (10) TO (20);"],
        db=db).stderr
    contains(out, "WARNING:  pginval.watch: the event trigger "
             "pginval_partitions is not installed", "watch")
    eq(sql("SELECT partition, root, fix FROM pginval.uncovered_partitions",
           db=db).strip(),
       "public.np_2|public.np|SELECT pginval.watch('public.np', '{id}', "
       "'pginval', 'notify');", "listed")
    eq(len(capture("INSERT INTO np_1 VALUES (1);", db=db)), 1, "covered")
    eq(capture("INSERT INTO np_2 VALUES (11);", db=db), [], "not covered")
    # Running the file again covers it.
    PG.run_psql(as_inst + ["-f", INSTALL], db=db)
    eq(sql("SELECT count(*) FROM pginval.uncovered_partitions",
           db=db).strip(), "0", "re-run")
    eq([n.obj["t"] for n in capture("INSERT INTO np_2 VALUES (12);", db=db)],
       ["public.np"], "covered after the re-run")

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
    # A statement's rows share outbox rows, up to 500 to one.
    eq([(n.obj["op"], len(rows_of(n))) for n in queued],
       [("insert", 300), ("update", 300), ("delete", 200), ("insert", 1)],
       "one outbox row per statement")
    eq(len({n.obj["x"] for n in queued[:-1]}), 1, "first transaction")
    eq(queued[-1].obj["n"], {"id": "1000"}, "second transaction")
    eq([r["n"]["id"] for r in rows_of(queued[1])],
       [str(i) for i in range(1, 301)], "updated rows, in order")

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
       [("many_chan", "insert"), ("many_chan", WAKE), ("many_chan2", WAKE)],
       "mixed transaction")
    eq(len(all_rows(take_outbox("many_chan"))), 2, "many queued")
    eq(len(all_rows(take_outbox("many_chan2"))), 2, "many2 queued")


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


def test_durable_and_poll_several_rows():
    # Outbox rows take up to 500 rows and 64 kB; a row whose description
    # passes 8 kB gets an outbox row of its own, in full.
    sql("CREATE TABLE dmulti (id int PRIMARY KEY, name text);"
        "CREATE TABLE pmulti (id int PRIMARY KEY, name text);"
        "SELECT pginval.watch('dmulti', '{id,name}', 'dm_chan', 'durable');"
        "SELECT pginval.watch('pmulti', '{id,name}', 'pm_chan', 'poll');")
    for table, chan, wakes in (("dmulti", "dm_chan", [WAKE] * 4),
                               ("pmulti", "pm_chan", [])):
        notes = capture("""
            INSERT INTO {t} SELECT g, 'n' || g FROM generate_series(1, 1200) g;
            UPDATE {t} SET name = repeat('x', 9000) WHERE id = 7;
            UPDATE {t} SET name = name || '!' WHERE id <= 3 OR id = 7;
            BEGIN;
            UPDATE {t} SET name = repeat('w', 300) WHERE id > 1000;
            DELETE FROM {t} WHERE id > 100;
            COMMIT;
        """.format(t=table), channels=["pginval", chan])
        eq([n.payload for n in notes], wakes, "%s: wake-ups" % table)
        queued = take_outbox(chan)
        for n in queued:
            assert len(n.payload.encode()) <= 65536 or "rows" not in n.obj, \
                "%s: %d bytes" % (table, len(n.payload.encode()))
            assert len(rows_of(n)) <= 500, len(rows_of(n))
            assert "big" not in n.obj, n.payload[:200]
        # Outbox rows by statement: transaction and op.
        stmts = []
        for n in queued:
            key = (n.obj["x"], n.obj["op"])
            if not stmts or stmts[-1][0] != key:
                stmts.append((key, []))
            stmts[-1][1].append(n)
        eq([k[1] for k, _ in stmts],
           ["insert", "update", "update", "update", "delete"],
           "%s: statements" % table)
        inserted, one, mixed, updated, deleted = [v for _, v in stmts]
        eq(len(inserted), 3, "%s: 1200 small rows, 3 outbox rows" % table)
        eq([int(r["n"]["id"]) for r in all_rows(inserted)],
           list(range(1, 1201)), "%s: inserted rows" % table)
        eq([n.obj["n"] for n in one], [{"id": "7", "name": "x" * 9000}],
           "%s: one large row" % table)
        eq([rows_of(n) for n in mixed], [
            [{"o": {"id": str(i), "name": "n%d" % i},
              "n": {"id": str(i), "name": "n%d!" % i}} for i in (1, 2, 3)],
            [{"o": {"id": "7", "name": "x" * 9000},
              "n": {"id": "7", "name": "x" * 9000 + "!"}}],
        ], "%s: small rows together, a large one alone, in full" % table)
        # 200 descriptions of about 370 bytes: two outbox rows.
        eq(len(updated), 2, "%s: updated" % table)
        eq(sorted(int(r["o"]["id"]) for r in all_rows(updated)),
           list(range(1001, 1201)), "%s: updated rows" % table)
        eq(sorted(int(r["o"]["id"]) for r in all_rows(deleted)),
           list(range(101, 1201)), "%s: deleted rows" % table)


def test_invalid_mode():
    sql("CREATE TABLE badmode (id int PRIMARY KEY);")
    for mode in ("'bogus'", "'NOTIFY'", "''", "NULL"):
        err = sql_error("SELECT pginval.watch('badmode', NULL, 'pginval', %s);"
                        % mode)
        contains(err, "pginval.watch: invalid mode", "message for %s" % mode)
        contains(err, "HINT:  The mode must be one of notify, durable, "
                 "poll, wal.", "hint for %s" % mode)
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
       "relid,columns,channel,watched_at,mode,identities",
       "registry columns")
    eq(sql("SELECT table_name, channel, mode FROM pginval.watched_tables "
           "WHERE table_name LIKE 'public.vm_' ORDER BY 1").split(),
       ["public.vm1|pginval|notify", "public.vm2|vm|durable",
        "public.vm3|vm|poll"], "modes")


def test_watch_switches_modes():
    sql("CREATE TABLE sw (id int PRIMARY KEY, v text);"
        "SELECT pginval.watch('sw', NULL, 'sw_chan');")
    eq(trigger_args("sw"), {
        "pginval_del": ["sw_chan", "notify", "id"],
        "pginval_ins": ["sw_chan", "notify", "id"],
        "pginval_trunc": ["sw_chan", "notify"],
        "pginval_upd": ["sw_chan", "notify", "id"],
    }, "notify triggers")

    def step(mode, value):
        sql("SELECT pginval.watch('sw', '{id,v}', 'sw_chan', '%s');" % mode)
        eq(sql("SELECT mode FROM pginval.watched_tables "
               "WHERE table_name = 'public.sw'").strip(), mode, "registry")
        eq(trigger_args("sw"), {
            "pginval_del": ["sw_chan", mode, "id", "v"],
            "pginval_ins": ["sw_chan", mode, "id", "v"],
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


# Drops the triggers that watch() makes, leaving the registry as it is.
DROP_TRIGGERS = """
DROP TRIGGER pginval_ins ON {t};
DROP TRIGGER pginval_upd ON {t};
DROP TRIGGER pginval_del ON {t};
DROP TRIGGER pginval_trunc ON {t};
"""

# The layout of the first release: no mode anywhere, no outbox, triggers
# called with (channel, columns...) and on_truncate(channel), row triggers
# only. Run after DROP_TRIGGERS on every watched table.
OLD_LAYOUT = r"""
DROP FUNCTION pginval.on_statement();
DROP FUNCTION pginval._triggers(regclass, text[], text, text, boolean) CASCADE;
DROP FUNCTION pginval.watch(regclass, text[], text, text);
DROP FUNCTION pginval._install_triggers(regclass, text[], text, text, boolean);
CREATE FUNCTION pginval.watch(tbl regclass, columns text[] DEFAULT NULL,
                              channel text DEFAULT 'pginval')
RETURNS void LANGUAGE plpgsql AS $$ BEGIN END $$;
DROP VIEW pginval.watched_tables;
DROP VIEW pginval.uncovered_partitions;
DROP EVENT TRIGGER pginval_partitions;
DROP FUNCTION pginval._on_ddl();
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
    # up_off's triggers are not put back, as if dropped by hand: the table
    # stays unwatched.
    sql("".join(DROP_TRIGGERS.format(t=t) for t in ("up_a", "up_b", "up_off"))
        + OLD_LAYOUT
        + OLD_TRIGGERS.format(t="up_a", args="'pginval', 'id', 'email'",
                              chan="'pginval'")
        + OLD_TRIGGERS.format(t="up_b", args="'chan_b', 'k'", chan="'chan_b'"),
        db=db)
    eq(trigger_args("up_a", db)["pginval_ins_del"], ["pginval", "id", "email"],
       "old layout in place")

    PG.psql_file(INSTALL, db=db)

    eq(trigger_args("up_a", db), {
        "pginval_del": ["pginval", "notify", "id", "email"],
        "pginval_ins": ["pginval", "notify", "id", "email"],
        "pginval_trunc": ["pginval", "notify"],
        "pginval_upd": ["pginval", "notify", "id", "email"],
    }, "up_a triggers")
    eq(triggers("up_a", db), STATEMENT_LAYOUT, "up_a statement triggers")
    eq(trigger_args("up_b", db), {
        "pginval_del": ["chan_b", "notify", "k"],
        "pginval_ins": ["chan_b", "notify", "k"],
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
    eq(sql("SELECT evtfoid::regproc FROM pg_event_trigger "
           "WHERE evtname = 'pginval_partitions'", db=db).strip(),
       "pginval._on_ddl", "the event trigger")

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


# The previous release's layout: row triggers only, called with (channel,
# mode, columns...), and no on_statement() or _triggers(). Run after
# DROP_TRIGGERS on every watched table.
PREVIOUS_LAYOUT = r"""
DROP FUNCTION pginval._triggers(regclass, text[], text, text, boolean) CASCADE;
DROP FUNCTION pginval.on_statement();
CREATE OR REPLACE VIEW pginval.watched_tables AS
SELECT n.nspname::text || '.' || c.relname::text AS table_name,
       w.columns, w.channel, w.watched_at, w.mode
  FROM pginval.watched w
  JOIN pg_catalog.pg_class c ON c.oid = w.relid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_trigger tg
                WHERE tg.tgrelid = c.oid AND tg.tgname = 'pginval_ins_del');
"""

PREVIOUS_TRIGGERS = """
CREATE OR REPLACE TRIGGER pginval_ins_del AFTER INSERT OR DELETE ON {t}
    FOR EACH ROW EXECUTE FUNCTION pginval.on_row({args});
CREATE OR REPLACE TRIGGER pginval_upd AFTER UPDATE ON {t}
    FOR EACH ROW WHEN (NOT (OLD *= NEW))
    EXECUTE FUNCTION pginval.on_row({args});
CREATE OR REPLACE TRIGGER pginval_trunc AFTER TRUNCATE ON {t}
    FOR EACH STATEMENT EXECUTE FUNCTION pginval.on_truncate({chan}, {mode});
"""


def test_upgrade_replaces_row_triggers_by_statement_triggers():
    db = PG.create_database("upgrade_rows")
    PG.psql_file(INSTALL, db=db)
    sql("CREATE TABLE ur (id int PRIMARY KEY, v text);"
        "CREATE TABLE ur_poll (id int PRIMARY KEY, v text);"
        "CREATE TABLE ur_part (id int PRIMARY KEY) PARTITION BY RANGE (id);"
        "CREATE TABLE ur_part_1 PARTITION OF ur_part FOR VALUES FROM (0) TO (10);"
        "SELECT pginval.watch('ur', '{id,v}');"
        "SELECT pginval.watch('ur_poll', NULL, 'urp', 'poll');"
        "SELECT pginval.watch('ur_part_1', NULL, 'urp', 'durable');", db=db)
    registry = sql("SELECT * FROM pginval.watched ORDER BY relid", db=db)
    sql(DROP_TRIGGERS.format(t="ur") + DROP_TRIGGERS.format(t="ur_poll")
        + "DROP TRIGGER pginval_ins_del ON ur_part_1;"
          "DROP TRIGGER pginval_upd ON ur_part_1;"
          "DROP TRIGGER pginval_trunc ON ur_part_1;"
        + PREVIOUS_LAYOUT
        + PREVIOUS_TRIGGERS.format(t="ur", args="'pginval', 'notify', 'id', 'v'",
                                   chan="'pginval'", mode="'notify'")
        + PREVIOUS_TRIGGERS.format(t="ur_poll", args="'urp', 'poll', 'id'",
                                   chan="'urp'", mode="'poll'")
        + PREVIOUS_TRIGGERS.format(t="ur_part_1",
                                   args="'urp', 'durable', 'id'",
                                   chan="'urp'", mode="'durable'"), db=db)
    eq(triggers("ur", db), ROW_LAYOUT, "previous release")
    old_part = sql("SELECT tgname, xmin FROM pg_trigger "
                   "WHERE tgrelid = 'ur_part_1'::regclass ORDER BY 1", db=db)

    PG.psql_file(INSTALL, db=db)

    eq(triggers("ur", db), STATEMENT_LAYOUT, "ur")
    eq(trigger_args("ur", db), {
        "pginval_del": ["pginval", "notify", "id", "v"],
        "pginval_ins": ["pginval", "notify", "id", "v"],
        "pginval_trunc": ["pginval", "notify"],
        "pginval_upd": ["pginval", "notify", "id", "v"],
    }, "ur arguments")
    eq(triggers("ur_poll", db), STATEMENT_LAYOUT, "ur_poll")
    eq(trigger_args("ur_poll", db)["pginval_upd"], ["urp", "poll", "id"],
       "ur_poll arguments")
    # A partition keeps its row triggers, untouched.
    eq(sql("SELECT tgname, xmin FROM pg_trigger "
           "WHERE tgrelid = 'ur_part_1'::regclass ORDER BY 1", db=db),
       old_part, "partition untouched")
    eq(sql("SELECT * FROM pginval.watched ORDER BY relid", db=db), registry,
       "registry kept")
    eq(sql("SELECT table_name, mode FROM pginval.watched_tables ORDER BY 1",
           db=db).split(),
       ["public.ur|notify", "public.ur_part_1|durable", "public.ur_poll|poll"],
       "view")

    notes = capture("""
        INSERT INTO ur VALUES (1, 'a'), (2, 'b');
        UPDATE ur SET v = v || '!';
        DELETE FROM ur WHERE id = 1;
        INSERT INTO ur_poll VALUES (1, 'a'), (2, 'b');
        INSERT INTO ur_part VALUES (1), (2);
    """, channels=["pginval", "urp"], db=db)
    eq([(n.channel, n.payload if n.obj is None else n.obj["op"],
         None if n.obj is None else rows_of(n)) for n in notes], [
        ("pginval", "insert", [{"n": {"id": "1", "v": "a"}},
                               {"n": {"id": "2", "v": "b"}}]),
        ("pginval", "update", [{"o": {"id": "1", "v": "a"},
                                "n": {"id": "1", "v": "a!"}},
                               {"o": {"id": "2", "v": "b"},
                                "n": {"id": "2", "v": "b!"}}]),
        ("pginval", "delete", [{"o": {"id": "1", "v": "a!"}}]),
        ("urp", WAKE, None),
    ], "payloads")
    eq([(n.obj["t"], rows_of(n)) for n in take_outbox("urp", db=db)], [
        ("public.ur_poll", [{"n": {"id": "1"}}, {"n": {"id": "2"}}]),
        ("public.ur_part_1", [{"n": {"id": "1"}}]),
        ("public.ur_part_1", [{"n": {"id": "2"}}]),
    ], "outbox")

    # Run again: nothing left to change.
    before = sql("SELECT tgrelid::regclass, tgname, xmin FROM pg_trigger "
                 "WHERE tgname LIKE 'pginval\\_%' ORDER BY 1, 2", db=db)
    PG.psql_file(INSTALL, db=db)
    eq(sql("SELECT tgrelid::regclass, tgname, xmin FROM pg_trigger "
           "WHERE tgname LIKE 'pginval\\_%' ORDER BY 1, 2", db=db), before,
       "second run")


def test_reinstall_leaves_current_triggers_alone():
    # Nothing to upgrade: re-running the file must not rewrite (and so lock)
    # the triggers of watched tables, nor drop what is queued.
    sql("CREATE TABLE kept_poll (id int PRIMARY KEY, v text);"
        "CREATE TABLE kept_notify (id int PRIMARY KEY, v text);"
        "CREATE TABLE kept_durable (id int PRIMARY KEY, v text);"
        "SELECT pginval.watch('kept_notify');"
        "SELECT pginval.watch('kept_durable', NULL, 'kept_d', 'durable');"
        "INSERT INTO kept_poll VALUES (100, 'x');"
        "SELECT pginval.watch('kept_poll', NULL, 'kept_chan', 'poll');"
        "INSERT INTO kept_poll VALUES (101, 'y');")
    query = ("SELECT tgrelid::regclass, tgname, xmin FROM pg_trigger "
             "WHERE tgname LIKE 'pginval\\_%' ORDER BY tgrelid, tgname")
    before = sql(query)
    assert before.count("\n") >= 12, before
    PG.psql_file(INSTALL)
    eq(sql(query), before, "triggers untouched")
    eq([n.obj["n"]["id"] for n in take_outbox("kept_chan")], ["101"],
       "queue kept")


def test_reinstall_keeps_watches():
    sql("CREATE TABLE rewatched (id int PRIMARY KEY, email text, n text);"
        "SELECT pginval.watch('rewatched', ARRAY['id', 'email']);")
    before = sql("SELECT * FROM pginval.watched ORDER BY relid")
    PG.psql_file(INSTALL)
    eq(sql("SELECT * FROM pginval.watched ORDER BY relid"), before,
       "registry kept")
    notes = capture("INSERT INTO rewatched VALUES (1, 'e', 'n');")
    eq(len(notes), 1, "still watched")


def test_uninstall():
    sql("CREATE TABLE uninstalled (id int PRIMARY KEY, email text, n text);"
        "SELECT pginval.watch('uninstalled');")
    triggers = ("SELECT count(*) FROM pg_trigger "
                "WHERE tgname LIKE 'pginval\\_%'")
    assert int(sql(triggers)) > 0
    PG.psql_file(UNINSTALL)
    eq(sql("SELECT count(*) FROM pg_namespace "
           "WHERE nspname = 'pginval'").strip(), "0", "schema gone")
    eq(sql(triggers).strip(), "0", "triggers gone")
    eq(sql("SELECT to_regclass('pginval.outbox') IS NULL").strip(), "t",
       "outbox gone")
    eq(capture("INSERT INTO uninstalled VALUES (2, 'e', 'n');"), [],
       "no events")
    PG.psql_file(UNINSTALL)  # twice: fine
    # On a database that never had it, too; and install works again after.
    PG.create_database("fresh")
    PG.psql_file(UNINSTALL, db="fresh")
    PG.psql_file(INSTALL)
    eq(sql("SELECT pginval.version()").strip(), "3", "reinstalled")
    # The role pginval_trigger stays while a database uses it, and goes
    # with the last installation.
    role = "SELECT count(*) FROM pg_roles WHERE rolname = 'pginval_trigger'"
    PG.psql_file(INSTALL, db="fresh")
    PG.psql_file(UNINSTALL, db="fresh")
    eq(sql(role).strip(), "1", "role kept for the other database")
    eq(sql("SELECT pginval.version()").strip(), "3", "still installed")
    for db in sql("SELECT datname FROM pg_database "
                  "WHERE datallowconn").split():
        PG.psql_file(UNINSTALL, db=db)
    eq(sql(role).strip(), "0", "role gone with the last installation")
    PG.psql_file(INSTALL)


# -- runner -------------------------------------------------------------------

@contextlib.contextmanager
def server():
    global PG
    with Postgres() as pg:
        PG = pg
        yield


if __name__ == "__main__":
    sys.exit(runner.run(globals(), sys.argv[1:], around=server))
