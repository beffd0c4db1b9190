#!/usr/bin/env python3
"""Tests of wal mode in the SQL API (sql/pginval.sql, sql/uninstall.sql).

No daemon is involved: what the daemon would stream is read with
pg_logical_slot_get_binary_changes() and the pgoutput plugin, through the
channel's publication, and parsed here. One throwaway PostgreSQL server
(wal_level = logical) serves the whole file; each test works on its own
tables, and its own slot when it reads one.

    python3 tests/sql/test_sql_wal.py [-v] [name-substring ...]

Prints one line per failure (and per test with -v), then exactly one
summary line "N passed, M failed"; exits non-zero if anything failed.
"""

import contextlib
import json
import os
import re
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from servers import Postgres, PsqlError  # noqa: E402
import runner  # noqa: E402

INSTALL = os.path.join(ROOT, "sql", "pginval.sql")
UNINSTALL = os.path.join(ROOT, "sql", "uninstall.sql")

PG = None  # the server shared by all tests

eq = runner.eq


def sql(text, db=None):
    return PG.psql(text, db=db)


def one(text, db=None):
    return sql(text, db).strip()


def sql_error(text, db=None):
    """Run ``text``, which must fail; return psql's stderr."""
    try:
        PG.psql(text, db=db)
    except PsqlError as exc:
        return exc.stderr
    raise AssertionError("expected an error from: %s" % text)


def as_role(role, text, db=None, check=True):
    proc = PG.run_psql(["-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                       input="SET ROLE %s;\n%s" % (role, text), db=db,
                       check=check)
    return proc


def contains(haystack, needle, what=""):
    if needle not in haystack:
        raise AssertionError("%s: %r not in %r" % (what, needle, haystack))


def identity(table, db=None):
    """The replica identity of ``table``: 'd', 'n', 'f', or 'i:<index>'."""
    kind, idx = one("SELECT c.relreplident, coalesce((SELECT i.indexrelid::"
                    "regclass::text FROM pg_index i WHERE i.indrelid = c.oid "
                    "AND i.indisreplident), '') FROM pg_class c "
                    "WHERE c.oid = '%s'::regclass" % table, db).split("|")
    return "i:" + idx if kind == "i" else kind


def published(pub, db=None):
    """The tables in publication ``pub``, as regclass text, sorted."""
    return sql("SELECT r.prrelid::regclass::text FROM pg_publication_rel r "
               "JOIN pg_publication p ON p.oid = r.prpubid "
               "WHERE p.pubname = '%s' ORDER BY 1" % pub, db).split()


def trigger_names(table, db=None):
    return sql("SELECT tgname FROM pg_trigger WHERE tgrelid = '%s'::regclass "
               "AND tgname LIKE 'pginval%%' ORDER BY 1" % table, db).split()


# -- pgoutput (protocol version 1) ----------------------------------------------

def _tuple(b, i):
    n, = struct.unpack_from(">H", b, i)
    i += 2
    cols = []
    for _ in range(n):
        kind = chr(b[i])
        i += 1
        if kind in "nu":
            cols.append((kind, None))
        else:
            size, = struct.unpack_from(">I", b, i)
            i += 4
            cols.append((kind, b[i:i + size].decode()))
            i += size
    return cols, i


def _cstr(b, i):
    j = b.index(0, i)
    return b[i:j].decode(), j + 1


def parse_pgoutput(b):
    """One pgoutput message as a dict: kind, and for R the relation (name,
    replident, cols [(name, typid, key)]), for I/U/D relid, old_kind ('K',
    'O' or None), old and new [(kind, text)], for T the relids."""
    kind = chr(b[0])
    i = 1
    if kind == "R":
        relid, = struct.unpack_from(">I", b, i)
        i += 4
        nsp, i = _cstr(b, i)
        rel, i = _cstr(b, i)
        replident = chr(b[i])
        n, = struct.unpack_from(">H", b, i + 1)
        i += 3
        cols = []
        for _ in range(n):
            flags = b[i]
            name, i = _cstr(b, i + 1)
            typid, _ = struct.unpack_from(">Ii", b, i)
            i += 8
            cols.append((name, typid, bool(flags & 1)))
        return {"kind": "R", "relid": relid, "name": nsp + "." + rel,
                "replident": replident, "cols": cols}
    if kind in "IUD":
        relid, = struct.unpack_from(">I", b, i)
        m = {"kind": kind, "relid": relid, "old_kind": None, "old": None,
             "new": None}
        tag = chr(b[i + 4])
        i += 5
        if tag in "KO":
            m["old_kind"] = tag
            m["old"], i = _tuple(b, i)
            if kind == "U":
                tag = chr(b[i])
                i += 1
        if tag == "N":
            m["new"], i = _tuple(b, i)
        return m
    if kind == "T":
        n, = struct.unpack_from(">I", b, i)
        return {"kind": "T", "relids": list(struct.unpack_from(
            ">%dI" % n, b, i + 5))}
    return {"kind": kind}


@contextlib.contextmanager
def slot(name, db=None):
    sql("SELECT 1 FROM pg_create_logical_replication_slot('%s', 'pgoutput')"
        % name, db)
    try:
        yield
    finally:
        sql("SELECT pg_drop_replication_slot('%s')" % name, db)


def changes(name, pub, db=None, setup=""):
    """The Relation, Insert, Update, Delete and Truncate messages the slot
    ``name`` has for publication ``pub`` (consumed)."""
    out = sql(setup + "SELECT encode(data, 'hex') FROM "
              "pg_logical_slot_get_binary_changes('%s', NULL, NULL, "
              "'proto_version', '1', 'publication_names', '%s')"
              % (name, pub), db)
    msgs = [parse_pgoutput(bytes.fromhex(line)) for line in out.split()]
    return [m for m in msgs if m["kind"] in "RIUDT"]


def rels(msgs):
    return {m["relid"]: m for m in msgs if m["kind"] == "R"}


def oid(table, db=None):
    return int(one("SELECT '%s'::regclass::oid" % table, db))


# -- tests --------------------------------------------------------------------

def setup():
    PG.psql_file(INSTALL)


def test_version_and_reinstall_keep_wal_watches():
    eq(one("SELECT pginval.version()"), "3", "version")
    sql("CREATE TABLE re_w (id int PRIMARY KEY, name text);"
        "SELECT pginval.watch('re_w', '{id,name}', 're', 'wal');")
    before = sql("SELECT relid, columns, channel, mode, identities "
                 "FROM pginval.watched WHERE relid = 're_w'::regclass")
    PG.psql_file(INSTALL)
    eq(sql("SELECT relid, columns, channel, mode, identities "
           "FROM pginval.watched WHERE relid = 're_w'::regclass"), before,
       "registry row kept")
    eq(identity("re_w"), "f", "identity kept")
    eq(published("pginval_re"), ["re_w"], "still published")
    eq(one("SELECT mode FROM pginval.watched_tables "
           "WHERE table_name = 'public.re_w'"), "wal", "listed")


def test_upgrade_from_version_2():
    db = PG.create_database("upgrade_wal")
    PG.psql_file(INSTALL, db=db)
    sql("CREATE TABLE up2 (id int PRIMARY KEY);"
        "SELECT pginval.watch('up2');", db=db)
    # What version 2 had: no identities column, a check without 'wal'.
    sql("ALTER TABLE pginval.watched DROP COLUMN identities;"
        "DROP TYPE pginval.identity_change CASCADE;"
        "ALTER TABLE pginval.watched DROP CONSTRAINT watched_mode_check;"
        "ALTER TABLE pginval.watched ADD CONSTRAINT watched_mode_check "
        "CHECK (mode IN ('notify', 'durable', 'poll'));", db=db)
    contains(sql_error("UPDATE pginval.watched SET mode = 'wal'", db=db),
             "watched_mode_check", "the old check")
    PG.psql_file(INSTALL, db=db)
    sql("SELECT pginval.watch('up2', NULL, 'pginval', 'wal')", db=db)
    eq(one("SELECT mode || ' ' || identities::text FROM pginval.watched",
           db=db), "wal {}", "upgraded in place")
    eq(trigger_names("up2", db), [], "triggers dropped")
    eq(published("pginval_pginval", db), ["up2"], "published")


def test_watch_wal_publishes_and_installs_no_trigger():
    sql("CREATE TABLE pub_t (id int PRIMARY KEY, email text);"
        "SELECT pginval.watch('pub_t', NULL, 'pubchan', 'wal');")
    eq(trigger_names("pub_t"), [], "no trigger")
    eq(one("SELECT pubinsert AND pubupdate AND pubdelete AND pubtruncate "
           "AND pubviaroot AND NOT puballtables FROM pg_publication "
           "WHERE pubname = 'pginval_pubchan'"), "t", "publication options")
    eq(published("pginval_pubchan"), ["pub_t"], "in the publication")
    eq(identity("pub_t"), "d", "the primary key covers {id}: kept")
    eq(one("SELECT table_name || ' ' || mode FROM pginval.watched_tables "
           "WHERE channel = 'pubchan'"), "public.pub_t wal", "listed")
    # Watching again changes nothing.
    sql("SELECT pginval.watch('pub_t', NULL, 'pubchan', 'wal')")
    eq(published("pginval_pubchan"), ["pub_t"], "once")


def test_publication_name():
    eq(one("SELECT pginval.publication('abc')"), "pginval_abc", "short")
    long = "c" * 63
    eq(one("SELECT pginval.publication('%s')" % long),
       "pginval_" + __import__("hashlib").md5(long.encode()).hexdigest(),
       "hashed")
    eq(one("SELECT pginval.publication('%s')" % ("x" * 55)), "pginval_"
       + "x" * 55, "63 bytes fit")
    eq(one("SELECT provolatile FROM pg_proc WHERE oid = "
           "'pginval.publication(text)'::regprocedure"), "i", "immutable")
    sql("CREATE TABLE long_ch (id int PRIMARY KEY);"
        "SELECT pginval.watch('long_ch', NULL, '%s', 'wal');" % long)
    eq(published("pginval_" + __import__("hashlib").md5(
        long.encode()).hexdigest()), ["long_ch"], "long channel")


def test_identity_kept_when_it_covers():
    sql("CREATE TABLE keep_f (id int PRIMARY KEY, a text);"
        "ALTER TABLE keep_f REPLICA IDENTITY FULL;"
        "CREATE TABLE keep_d (a int, b int, c text, PRIMARY KEY (a, b));"
        "CREATE TABLE keep_i (id int PRIMARY KEY, a text NOT NULL, b text);"
        "CREATE UNIQUE INDEX keep_i_ida ON keep_i (id, a);"
        "ALTER TABLE keep_i REPLICA IDENTITY USING INDEX keep_i_ida;"
        "SELECT pginval.watch('keep_f', '{id,a}', 'keep', 'wal');"
        "SELECT pginval.watch('keep_d', '{b}', 'keep', 'wal');"
        "SELECT pginval.watch('keep_i', '{a}', 'keep', 'wal');")
    eq([identity(t) for t in ("keep_f", "keep_d", "keep_i")],
       ["f", "d", "i:keep_i_ida"], "identities")
    eq(one("SELECT count(*) FROM pginval.watched WHERE channel = 'keep' "
           "AND identities <> '{}'"), "0", "nothing recorded")
    sql("SELECT pginval.unwatch('keep_f'); SELECT pginval.unwatch('keep_d');"
        "SELECT pginval.unwatch('keep_i');")
    eq([identity(t) for t in ("keep_f", "keep_d", "keep_i")],
       ["f", "d", "i:keep_i_ida"], "untouched by unwatch")


def test_identity_index_chosen_else_full():
    sql("""
        CREATE TABLE idx_t (id int PRIMARY KEY, a text NOT NULL,
                            b text NOT NULL, c text NOT NULL, n text,
                            CONSTRAINT idx_def UNIQUE (id, a)
                                DEFERRABLE INITIALLY DEFERRED);
        CREATE UNIQUE INDEX idx_partial ON idx_t (id, a) WHERE b <> '';
        CREATE UNIQUE INDEX idx_expr ON idx_t (id, lower(a));
        CREATE UNIQUE INDEX idx_null ON idx_t (id, a, n);
        CREATE INDEX idx_plain ON idx_t (id, a);
        CREATE UNIQUE INDEX idx_wide ON idx_t (id, a, b, c);
        CREATE UNIQUE INDEX idx_narrow ON idx_t (a, id, b);
        CREATE UNIQUE INDEX idx_incl ON idx_t (a, id) INCLUDE (c);
        SELECT pginval.watch('idx_t', '{id,a}', 'idx', 'wal');
    """)
    # Only INCLUDE-less key columns count: idx_incl's key is (a, id).
    eq(identity("idx_t"), "i:idx_incl", "narrowest usable index")
    sql("SELECT pginval.watch('idx_t', '{id,b}', 'idx', 'wal')")
    eq(identity("idx_t"), "i:idx_narrow", "the narrowest for {id,b}")
    sql("SELECT pginval.watch('idx_t', '{id,n}', 'idx', 'wal')")
    eq(identity("idx_t"), "f", "n is nullable: no index, FULL")
    eq(one("SELECT (identities[1]).was::text || (identities[1]).set::text "
           "FROM "
           "pginval.watched WHERE relid = 'idx_t'::regclass"), "df",
       "recorded: found DEFAULT, set FULL")
    sql("SELECT pginval.unwatch('idx_t')")
    eq(identity("idx_t"), "d", "put back")


def test_identity_never_weakened():
    sql("CREATE TABLE weak (id int NOT NULL, a text NOT NULL, "
        "b text NOT NULL, c text);"
        "CREATE UNIQUE INDEX weak_ida ON weak (id, a);"
        "CREATE UNIQUE INDEX weak_idb ON weak (id, b);"
        "CREATE UNIQUE INDEX weak_idab ON weak (id, a, b);"
        "ALTER TABLE weak REPLICA IDENTITY USING INDEX weak_ida;"
        "SELECT pginval.watch('weak', '{id,b}', 'weak', 'wal');")
    # weak_idb would drop a, which the user's identity logs.
    eq(identity("weak"), "i:weak_idab", "covers a and b")
    sql("SELECT pginval.watch('weak', '{id,c}', 'weak', 'wal')")
    eq(identity("weak"), "f", "c is nullable")
    # Back to columns the user's identity covers: the user's identity.
    sql("SELECT pginval.watch('weak', '{id,a}', 'weak', 'wal')")
    eq(identity("weak"), "i:weak_ida", "the user's again")
    eq(one("SELECT identities FROM pginval.watched "
           "WHERE relid = 'weak'::regclass"), "{}", "nothing recorded")
    # NOTHING is no identity: anything covers more.
    sql("CREATE TABLE weak_n (id int PRIMARY KEY, a text);"
        "ALTER TABLE weak_n REPLICA IDENTITY NOTHING;"
        "SELECT pginval.watch('weak_n', '{id}', 'weak', 'wal');")
    eq(identity("weak_n"), "i:weak_n_pkey", "the primary key as an index")
    sql("SELECT pginval.unwatch('weak_n')")
    eq(identity("weak_n"), "n", "NOTHING put back")


def test_identity_changed_since_is_left_alone():
    sql("CREATE TABLE since_t (id int PRIMARY KEY, a text);"
        "SELECT pginval.watch('since_t', '{id,a}', 'since', 'wal');")
    eq(identity("since_t"), "f", "set")
    sql("ALTER TABLE since_t REPLICA IDENTITY USING INDEX since_t_pkey;"
        "SELECT pginval.unwatch('since_t');")
    eq(identity("since_t"), "i:since_t_pkey", "changed since: left alone")
    # Watched again: the user's identity is the one to put back.
    sql("SELECT pginval.watch('since_t', '{id,a}', 'since', 'wal');")
    eq(identity("since_t"), "f", "{id,a} needs FULL")
    eq(one("SELECT identities::text FROM pginval.watched "
           "WHERE relid = 'since_t'::regclass"),
       '{"(since_t,i,since_t_pkey,f,)"}', "recorded")
    sql("SELECT pginval.unwatch('since_t');")
    eq(identity("since_t"), "i:since_t_pkey", "put back")


def test_switch_modes_both_ways():
    sql("CREATE TABLE sw (id int PRIMARY KEY, a text);"
        "SELECT pginval.watch('sw', '{id,a}', 'sw', 'notify');")
    eq(len(trigger_names("sw")), 4, "notify triggers")
    sql("SELECT pginval.watch('sw', '{id,a}', 'sw', 'wal')")
    eq(trigger_names("sw"), [], "triggers dropped")
    eq(identity("sw"), "f", "identity set")
    eq(published("pginval_sw"), ["sw"], "published")
    sql("SELECT pginval.watch('sw', '{id,a}', 'sw', 'durable')")
    eq(trigger_names("sw"), ["pginval_del", "pginval_ins", "pginval_trunc",
                             "pginval_upd"], "triggers back")
    eq(identity("sw"), "d", "identity put back")
    eq(published("pginval_sw"), [], "out of the publication, which stays")
    eq(one("SELECT identities FROM pginval.watched "
           "WHERE relid = 'sw'::regclass"), "{}", "nothing recorded")


def test_channel_move():
    sql("CREATE TABLE mv (id int PRIMARY KEY, a text);"
        "SELECT pginval.watch('mv', '{id,a}', 'mv1', 'wal');"
        "SELECT pginval.watch('mv', '{id,a}', 'mv2', 'wal');")
    eq(published("pginval_mv1"), [], "left the old publication")
    eq(published("pginval_mv2"), ["mv"], "in the new one")
    eq(identity("mv"), "f", "identity kept")
    sql("SELECT pginval.unwatch('mv')")
    eq(identity("mv"), "d", "and put back at the end")


def test_switch_is_atomic():
    """A watch() that fails halfway leaves everything as it was, both ways:
    here the channel's publication belongs to another role."""
    sql("CREATE ROLE atom_owner LOGIN; CREATE ROLE atom_other;"
        "GRANT CREATE ON DATABASE postgres TO atom_owner;"
        "GRANT ALL ON pginval.watched TO atom_owner;"
        "GRANT pginval_trigger TO atom_owner;"  # trigger modes
        "CREATE TABLE atom (id int, a text) PARTITION BY LIST (id);"
        "CREATE TABLE atom_1 PARTITION OF atom FOR VALUES IN (1);"
        "ALTER TABLE atom OWNER TO atom_owner;"
        "ALTER TABLE atom_1 OWNER TO atom_owner;"
        "CREATE PUBLICATION pginval_atom2;"
        "ALTER PUBLICATION pginval_atom2 OWNER TO atom_other;")
    as_role("atom_owner",
            "SELECT pginval.watch('atom', '{id,a}', 'atom', 'notify');")
    before = sql("SELECT * FROM pginval.watched "
                 "WHERE relid = 'atom'::regclass")
    proc = as_role("atom_owner",
                   "SELECT pginval.watch('atom', '{id,a}', 'atom2', 'wal');",
                   check=False)
    contains(proc.stderr, "belongs to atom_other", "refused")
    eq(sql("SELECT * FROM pginval.watched WHERE relid = 'atom'::regclass"),
       before, "registry unchanged")
    eq([len(trigger_names(t)) for t in ("atom", "atom_1")], [4, 4],
       "triggers kept")
    eq([identity(t) for t in ("atom", "atom_1")], ["d", "d"],
       "identities unchanged")
    eq(published("pginval_atom2"), [], "not published")

    as_role("atom_owner",
            "SELECT pginval.watch('atom', '{id,a}', 'atom', 'wal');")
    sql("ALTER PUBLICATION pginval_atom OWNER TO atom_other;")
    before = sql("SELECT * FROM pginval.watched "
                 "WHERE relid = 'atom'::regclass")
    proc = as_role("atom_owner",
                   "SELECT pginval.watch('atom', '{id,a}', 'atom', 'poll');",
                   check=False)
    contains(proc.stderr, "atom_owner may not take public.atom out of the "
             "publication pginval_atom", "refused")
    contains(proc.stderr, "run this as atom_other", "hint")
    eq(sql("SELECT * FROM pginval.watched WHERE relid = 'atom'::regclass"),
       before, "registry unchanged")
    eq([trigger_names(t) for t in ("atom", "atom_1")],
       [["pginval_trunc"], ["pginval_part_trunc"]],
       "still only the TRUNCATE triggers of wal mode")
    eq([identity(t) for t in ("atom", "atom_1")], ["f", "f"],
       "identities unchanged")
    eq(published("pginval_atom"), ["atom"], "still published")
    sql("SELECT pginval.unwatch('atom')")
    eq([identity(t) for t in ("atom", "atom_1")], ["d", "d"], "put back")


def test_partitioned_root():
    sql("""
        CREATE TABLE ev (id int, k text, v text, PRIMARY KEY (id, k))
            PARTITION BY RANGE (id);
        CREATE TABLE ev_1 PARTITION OF ev FOR VALUES FROM (0) TO (100);
        CREATE TABLE ev_2 PARTITION OF ev FOR VALUES FROM (100) TO (200)
            PARTITION BY RANGE (id);
        CREATE TABLE ev_2a PARTITION OF ev_2 FOR VALUES FROM (100) TO (150);
        SELECT pginval.watch('ev', '{id,v}', 'ev', 'wal');
    """)
    eq(published("pginval_ev"), ["ev"], "the root only")
    eq([identity(t) for t in ("ev", "ev_1", "ev_2a")], ["f", "f", "f"],
       "FULL on the root and on every leaf")
    # Created later, with the event trigger: FULL too.
    sql("CREATE TABLE ev_3 PARTITION OF ev FOR VALUES FROM (200) TO (300)")
    eq(identity("ev_3"), "f", "new partition")
    eq(one("SELECT count(*) FROM pginval.uncovered_partitions "
           "WHERE root = 'public.ev'"), "0", "nothing uncovered")
    # Without the event trigger: published all the same, but listed.
    sql("ALTER EVENT TRIGGER pginval_partitions DISABLE;"
        "CREATE TABLE ev_4 PARTITION OF ev FOR VALUES FROM (300) TO (400);"
        "ALTER EVENT TRIGGER pginval_partitions ENABLE;")
    eq(identity("ev_4"), "d", "left DEFAULT")
    eq(sql("SELECT partition, fix FROM pginval.uncovered_partitions "
           "WHERE root = 'public.ev'").strip(),
       "public.ev_4|SELECT pginval.watch('public.ev', '{id,v}', 'ev', "
       "'wal');", "listed with its fix")
    with slot("ev_slot"):
        sql("INSERT INTO ev VALUES (350, 'k', 'v');"
            "INSERT INTO ev_4 VALUES (351, 'k', 'v');")
        msgs = changes("ev_slot", "pginval_ev")
    eq([m["relid"] for m in msgs if m["kind"] == "I"], [oid("ev")] * 2,
       "a partition created without the event trigger is published")
    sql("SELECT pginval.watch('ev', '{id,v}', 'ev', 'wal')")
    eq(identity("ev_4"), "f", "fixed by watch()")
    # Columns the root's primary key covers: DEFAULT everywhere again.
    sql("SELECT pginval.watch('ev', '{id,k}', 'ev', 'wal')")
    eq([identity(t) for t in ("ev", "ev_1", "ev_2a", "ev_3", "ev_4")],
       ["d"] * 5, "put back")
    sql("SELECT pginval.watch('ev', '{id,v}', 'ev', 'wal');"
        "SELECT pginval.unwatch('ev');")
    eq([identity(t) for t in ("ev", "ev_1", "ev_2a", "ev_3", "ev_4")],
       ["d"] * 5, "unwatch puts back")
    eq(published("pginval_ev"), [], "out of the publication")


def test_partition_watched_on_its_own_is_taken_over():
    sql("""
        CREATE TABLE own (id int PRIMARY KEY, v text) PARTITION BY LIST (id);
        CREATE TABLE own_1 PARTITION OF own FOR VALUES IN (1);
        CREATE TABLE own_2 PARTITION OF own FOR VALUES IN (2);
        SELECT pginval.watch('own_1', '{id,v}', 'own', 'wal');
        SELECT pginval.watch('own_2', '{id}', 'own', 'notify');
    """)
    eq(published("pginval_own"), ["own_1"], "on its own")
    eq(identity("own_1"), "f", "its identity")
    sql("SELECT pginval.watch('own', '{id}', 'own', 'wal')")
    eq(published("pginval_own"), ["own"], "the root replaces it")
    eq(trigger_names("own_2"), ["pginval_part_trunc"],
       "triggers dropped but the TRUNCATE one of a wal root's partition")
    eq(sql("SELECT relid::regclass FROM pginval.watched WHERE channel = "
           "'own' ORDER BY 1").split(), ["own"], "registry")
    eq([identity(t) for t in ("own", "own_1", "own_2")], ["d", "d", "d"],
       "own_1's identity put back, {id} covered by the key")
    for stmt in ("SELECT pginval.watch('own_1', '{id}', 'own', 'notify')",
                 "SELECT pginval.watch('own_1', '{id}', 'own', 'wal')",
                 "SELECT pginval.unwatch('own_1')"):
        contains(sql_error(stmt), "is a partition of public.own, which is "
                 "watched and covers it", stmt)


def test_pgoutput_stream():
    """What the daemon reads: the root's name for a partition's change, an
    old image of a watched non-key column once the identity changed, and
    none once unwatch() put the identity back."""
    sql("""
        CREATE TABLE st (id int PRIMARY KEY, email text, note text);
        INSERT INTO st VALUES (1, 'a@x', 'n');
        CREATE TABLE stp (id int PRIMARY KEY, email text)
            PARTITION BY RANGE (id);
        CREATE TABLE stp_1 PARTITION OF stp FOR VALUES FROM (0) TO (10);
        INSERT INTO stp VALUES (1, 'p@x');
        SELECT pginval.watch('st', '{id,email}', 'st', 'wal');
        SELECT pginval.watch('stp', '{id,email}', 'st', 'wal');
    """)
    st, stp = oid("st"), oid("stp")
    with slot("st_slot"):
        sql("UPDATE st SET email = 'b@x' WHERE id = 1;"
            "UPDATE stp_1 SET email = 'q@x' WHERE id = 1;"
            "DELETE FROM stp WHERE id = 1;"
            "TRUNCATE stp_1; TRUNCATE stp;")
        msgs = changes("st_slot", "pginval_st")
        r = rels(msgs)
        eq((r[st]["name"], r[st]["replident"]), ("public.st", "f"), "st")
        eq((r[stp]["name"], r[stp]["replident"]), ("public.stp", "f"),
           "the root's Relation")
        ups = [m for m in msgs if m["kind"] == "U"]
        eq([(m["relid"], m["old_kind"], m["old"]) for m in ups], [
            (st, "O", [("t", "1"), ("t", "a@x"), ("t", "n")]),
            (stp, "O", [("t", "1"), ("t", "p@x")])], "old images")
        dels = [m for m in msgs if m["kind"] == "D"]
        eq([(m["relid"], m["old"]) for m in dels],
           [(stp, [("t", "1"), ("t", "q@x")])], "delete, under the root")
        # PostgreSQL does not publish a TRUNCATE aimed at a partition when
        # publishing via the root: only the root's.
        eq([m["relids"] for m in msgs if m["kind"] == "T"], [[stp]],
           "truncates")

        sql("SELECT pginval.unwatch('st');"
            "SELECT pginval.watch('st', '{id}', 'st', 'wal');"
            "UPDATE st SET email = 'c@x' WHERE id = 1;")
        msgs = changes("st_slot", "pginval_st")
        eq(rels(msgs)[st]["replident"], "d", "identity put back")
        eq(rels(msgs)[st]["cols"][0], ("id", 23, True), "key flag")
        eq([(m["old_kind"], m["new"][1]) for m in msgs if m["kind"] == "U"],
           [(None, ("t", "c@x"))], "no old image: the key did not change")


# (type, values as SQL literals); each value is checked three ways: the
# text pgoutput sends, the trigger's text, and _wal_class().
TYPES = [
    ("int2", ["32767", "-32768"]), ("int4", ["0", "-2147483648"]),
    ("int8", ["9223372036854775807"]),
    ("numeric", ["1.50", "'NaN'", "'Infinity'", "-0.000001234", "1e30"]),
    ("text", [r"E'a \"q\" \\ é\n'"]), ("varchar(5)", ["'ab'"]),
    ("char(5)", ["'ab'"]), ("uuid", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"]),
    ("bytea", [r"'\x00ff'"]),
    ("date", ["'2024-01-02'", "'0044-03-15 BC'", "'infinity'"]),
    ("time", ["'03:04:05.12'"]),
    ("timetz", ["'03:04:05+05:30'", "'03:04:05+01'", "'03:04:05-00:19:32'"]),
    ("timestamp", ["'2024-01-02 03:04:05.123'", "'0044-03-15 12:00 BC'",
                   "'infinity'", "'-infinity'"]),
    ("timestamptz", ["'2024-01-02 03:04:05.5+00'", "'0044-03-15 12:00+00 BC'",
                     "'1900-01-01 00:00+00'", "'infinity'"]),
    ("interval", ["'1 year 2 mons 3 days 04:05:06.7'"]),
    ("inet", ["'192.168.0.1'", "'::1/64'"]), ("cidr", ["'10.0.0.0/8'"]),
    ("macaddr", ["'08:00:2b:01:02:03'"]), ("money", ["12.34"]),
    ("wal_mood", ["'happy'"]), ("wal_dtext", ["'x'"]),
    ("wal_dbool", ["true", "false"]), ("bool", ["true"]), ("oid", ["12345"]),
    ("bit(4)", ["B'1011'"]), ("int4range", ["'[1,5)'"]),
]


def rewrite(cls, text):
    """What the daemon does to pgoutput's text, by class."""
    if cls == "bool":
        return {"t": "true", "f": "false"}[text]
    if cls in ("timestamp", "timestamptz") and "infinity" not in text:
        text = text.replace(" ", "T", 1)
        if cls == "timestamptz":
            text = re.sub(r"([+-]\d\d)( BC)?$", r"\1:00\2", text)
    return text


def test_value_texts_match_the_triggers():
    sql("CREATE TYPE wal_mood AS ENUM ('happy', 'sad');"
        "CREATE DOMAIN wal_dtext AS text;"
        "CREATE DOMAIN wal_dbool AS boolean;")
    cols = ["c%d %s" % (i, t) for i, (t, _) in enumerate(TYPES)]
    names = ["c%d" % i for i in range(len(TYPES))]
    sql("CREATE TABLE vt_w (id int PRIMARY KEY, %s);"
        "CREATE TABLE vt_t (id int PRIMARY KEY, %s);"
        "SELECT pginval.watch('vt_w', '{id,%s}', 'vt', 'wal');"
        "SELECT pginval.watch('vt_t', '{id,%s}', 'vt_t', 'poll');"
        % (", ".join(cols), ", ".join(cols), ",".join(names),
           ",".join(names)))
    classes = dict(line.split("|") for line in sql(
        "SELECT col, class FROM pginval.wal_columns('vt')").split("\n")
        if line)
    eq(classes["c%d" % [t for t, _ in TYPES].index("timetz")], "text",
       "timetz: same text")
    depth = max(len(v) for _, v in TYPES)
    rows = []
    for n in range(depth):
        vals = [v[n % len(v)] for _, v in TYPES]
        rows.append("(%d, %s)" % (n, ", ".join(vals)))
    checked = 0
    for tz in ("UTC", "Asia/Kolkata", "Europe/Amsterdam",
               "America/Los_Angeles"):
        sql("TRUNCATE vt_w, vt_t; DELETE FROM pginval.outbox;")
        with slot("vt_slot"):
            sql("SET TimeZone = '%s';"
                "INSERT INTO vt_w VALUES %s; INSERT INTO vt_t VALUES %s;"
                % (tz, ", ".join(rows), ", ".join(rows)))
            msgs = changes("vt_slot", "pginval_vt",
                           setup="SET TimeZone = '%s';" % tz)
        wal = [m["new"] for m in msgs if m["kind"] == "I"]
        payloads = [json.loads(p) for p in sql(
            "SELECT payload FROM pginval.outbox WHERE channel = 'vt_t' "
            "ORDER BY id").splitlines()]
        trig = [r["n"] for p in payloads for r in p.get("rows", [p])]
        eq(len(wal), depth, "rows from the WAL")
        eq(len(trig), depth, "rows from the triggers")
        for w, t in zip(wal, trig):
            for i, name in enumerate(["id"] + names):
                cls = classes.get(name, "text")
                got = rewrite(cls, w[i][1])
                eq(got, t[name], "%s (%s) under %s: %r" % (
                    name, TYPES[i - 1][0] if i else "int", tz, w[i][1]))
                checked += 1
    assert checked > 200, checked


def test_wal_class():
    sql("CREATE TYPE wc_comp AS (a int);"
        "CREATE DOMAIN wc_dfloat AS float8;"
        "CREATE DOMAIN wc_darr AS int[];"
        "CREATE TYPE wc_enum AS ENUM ('a');"
        "CREATE FUNCTION wc_json(wc_enum) RETURNS json LANGUAGE sql "
        "AS $$ SELECT to_json($1::text) $$;"
        "CREATE CAST (wc_enum AS json) WITH FUNCTION wc_json(wc_enum);"
        "CREATE DOMAIN wc_dbool AS bool;")
    want = {"int4": "text", "text": "text", "bool": "bool",
            "wc_dbool": "bool", "timestamp": "timestamp",
            "timestamptz": "timestamptz", "timetz": "text", "date": "text",
            "json": "", "jsonb": "", "int4[]": "", "wc_comp": "",
            "float4": "", "float8": "", "wc_dfloat": "", "wc_darr": "",
            "wc_enum": "", "int2vector": "", "point": "text"}
    got = {t: one("SELECT coalesce(pginval._wal_class('%s'::regtype), '')"
                  % t) for t in want}
    eq(got, want, "classes")


def test_refused_types():
    sql("CREATE TABLE rt (id int PRIMARY KEY, j jsonb, f float8, "
        "a int[], ok text);")
    for col, typ in (("j", "jsonb"), ("f", "double precision"),
                     ("a", "integer[]")):
        err = sql_error("SELECT pginval.watch('rt', '{id,%s}', 'rt', 'wal')"
                        % col)
        contains(err, 'column "%s" of table public.rt is of type %s'
                 % (col, typ),
                 col)
        contains(err, "HINT:  Watch the table in another mode", col)
    sql("ALTER TABLE rt ADD COLUMN g int GENERATED ALWAYS AS (id * 2) STORED")
    err = sql_error("SELECT pginval.watch('rt', '{id,g}', 'rt', 'wal')")
    contains(err, 'column "g" of table public.rt is generated', "generated")
    sql("SELECT pginval.watch('rt', '{id,ok}', 'rt', 'wal');"
        "SELECT pginval.watch('rt', '{id,j}', 'rt', 'notify');")


def test_wal_columns():
    sql("CREATE SCHEMA \"We ird\";"
        "CREATE TABLE \"We ird\".\"T\" (b text, a int PRIMARY KEY, c bool, "
        "d timestamptz, gone text);"
        "CREATE TABLE wc_other (id int PRIMARY KEY);"
        "SELECT pginval.watch('\"We ird\".\"T\"', '{c,a,gone,d,b}', 'wc', "
        "'wal');"
        "SELECT pginval.watch('wc_other', NULL, 'wc', 'notify');"
        "ALTER TABLE \"We ird\".\"T\" DROP COLUMN gone;"
        "CREATE ROLE wc_daemon LOGIN;")
    rel = oid('"We ird"."T"')
    want = ["%d|We ird.T|c|16|bool" % rel, "%d|We ird.T|a|23|text" % rel,
            "%d|We ird.T|d|1184|timestamptz" % rel,
            "%d|We ird.T|b|25|text" % rel]
    eq(sql("SELECT * FROM pginval.wal_columns('wc')").split("\n")[:-1],
       want, "rows")
    eq(one("SELECT table_name FROM pginval.watched_tables "
           "WHERE channel = 'wc' AND mode = 'wal'"), "We ird.T",
       "spelled as watched_tables")
    # The daemon's role: neither owner nor superuser, no grant.
    proc = as_role("wc_daemon", "SELECT * FROM pginval.wal_columns('wc');")
    eq(proc.stdout.split("\n")[:-1], want, "as the daemon's role")
    eq(one("SELECT count(*) FROM pginval.wal_columns('nothing')"), "0",
       "another channel")


def test_privileges():
    sql("CREATE ROLE pv LOGIN; CREATE ROLE pv_other LOGIN;"
        "GRANT ALL ON pginval.watched TO pv;"
        "CREATE TABLE pv_t (id int PRIMARY KEY);"
        "ALTER TABLE pv_t OWNER TO pv;"
        "CREATE TABLE pv_victim (id int PRIMARY KEY);")
    proc = as_role("pv", "SELECT pginval.watch('pv_t', NULL, 'pv', 'wal');",
                   check=False)
    contains(proc.stderr, "pv may not create the publication pginval_pv",
             "no CREATE on the database")
    contains(proc.stderr, "GRANT CREATE ON DATABASE postgres TO pv", "hint")
    sql("CREATE PUBLICATION pginval_pv;"
        "ALTER PUBLICATION pginval_pv OWNER TO pv_other;")
    proc = as_role("pv", "SELECT pginval.watch('pv_t', NULL, 'pv', 'wal');",
                   check=False)
    contains(proc.stderr, "publication pginval_pv of channel pv belongs to "
             "pv_other", "someone else's publication")
    contains(proc.stderr, "ALTER PUBLICATION pginval_pv OWNER TO pv", "hint")
    sql("ALTER PUBLICATION pginval_pv OWNER TO pv;")
    as_role("pv", "SELECT pginval.watch('pv_t', NULL, 'pv', 'wal');")
    eq(one("SELECT pubupdate AND pubviaroot FROM pg_publication "
           "WHERE pubname = 'pginval_pv'"), "t", "options fixed")
    eq(published("pginval_pv"), ["pv_t"], "published")
    # A hostile role that owns the publication cannot add a table it does
    # not own, through watch() or by hand.
    proc = as_role("pv", "SELECT pginval.watch('pv_victim', NULL, 'pv', "
                   "'wal');", check=False)
    contains(proc.stderr, "pv may not watch public.pv_victim in wal mode",
             "not the owner")
    contains(proc.stderr, "Run pginval.watch() as postgres", "hint")
    proc = as_role("pv", "SELECT pginval._wal_publish('pv_victim', 'pv');",
                   check=False)
    contains(proc.stderr, "must be owner of table pv_victim", "by hand")
    eq(published("pginval_pv"), ["pv_t"], "victim not published")


def test_wal_level_warning():
    with Postgres() as pg:  # wal_level = replica
        pg.psql_file(INSTALL)
        out = pg.run_psql(["-q", "-At", "-v", "ON_ERROR_STOP=1", "-c",
                           "CREATE TABLE wl (id int PRIMARY KEY);"
                           "SELECT pginval.watch('wl', NULL, 'pginval', "
                           "'wal');"])
        contains(out.stderr, "WARNING:  pginval.watch: wal_level is replica",
                 "warning")
        contains(out.stderr, "HINT:  Run ALTER SYSTEM SET wal_level = "
                 "logical; then restart PostgreSQL.", "hint")
        eq(pg.psql("SELECT mode FROM pginval.watched_tables").strip(), "wal",
           "watched all the same")


def test_uninstall_drops_publications_and_restores_identities():
    db = PG.create_database("uninstall_wal")
    PG.psql_file(INSTALL, db=db)
    sql("CREATE TABLE un_a (id int PRIMARY KEY, a text);"
        "CREATE TABLE un_p (id int, a text) PARTITION BY LIST (id);"
        "CREATE TABLE un_p1 PARTITION OF un_p FOR VALUES IN (1);"
        "CREATE PUBLICATION mine;"
        "SELECT pginval.watch('un_a', '{id,a}', 'un', 'wal');"
        "SELECT pginval.watch('un_p', '{id,a}', 'un2', 'wal');"
        "SELECT pginval.watch('un_p', '{id,a}', 'un3', 'wal');", db=db)
    eq([identity(t, db) for t in ("un_a", "un_p", "un_p1")], ["f"] * 3, "set")
    PG.psql_file(UNINSTALL, db=db)
    eq([identity(t, db) for t in ("un_a", "un_p", "un_p1")], ["d"] * 3,
       "put back")
    eq(sql("SELECT pubname FROM pg_publication ORDER BY 1", db=db).split(),
       ["mine"], "pginval's publications dropped, even an empty one")


# -- runner -------------------------------------------------------------------

@contextlib.contextmanager
def server():
    global PG
    # A commit flushes its WAL, which logical decoding reads up to the
    # flushed position only (fsync stays off).
    with Postgres(settings={"wal_level": "logical",
                            "synchronous_commit": "on"}) as pg:
        PG = pg
        yield


if __name__ == "__main__":
    sys.exit(runner.run(globals(), sys.argv[1:], around=server))
