#!/usr/bin/env python3
"""Trust: only pginval's own triggers can make the daemon act.

Attacks from roles with no grants at all: forged NOTIFYs and outbox rows,
pginval's trigger functions attached to tables of their own, and functions,
operators and types planted in a schema on a writer's search_path. Each
test asserts what the attack achieves against the real SQL, the binary and
the Redis channel: nothing.

    python3 tests/integration/test_trust.py [-v] [name-substring ...]
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import pginval_proc  # noqa: E402
from pginval_proc import (http_get, metric, msgs, next_msg,  # noqa: E402
                          run_bin, settle, signed, strip, wait_for)
from runner import eq  # noqa: E402
from servers import PsqlError, free_port  # noqa: E402

PG = None
REDIS = None

TABLES = {"public.users": "user:{id}, user:email:{email}",
          "public.orders": "order:{id}",
          "public.events_eu": "event:{id}",
          "public.mal": "mal:{id}"}
OUTBOX = {"outbox.enabled": "on", "outbox.poll_interval": "0.05"}


def sql(text):
    return PG.psql(text)


def as_role(role, text):
    """Runs text as role (SET ROLE: every privilege check is the role's)."""
    return PG.psql("SET ROLE %s;\n%s" % (role, text))


def refused(role, text, needle):
    try:
        as_role(role, text)
    except PsqlError as exc:
        assert needle in exc.stderr, exc.stderr
        return
    raise AssertionError("%s could run: %s" % (role, text))


def daemon(sub=None, extra=None, **kw):
    return pginval_proc.running(PG, REDIS, sub, tables=TABLES,
                                extra=dict(OUTBOX, **(extra or {})), **kw)


def setup():
    pginval_proc.template_database(PG)
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    sql("""
        CREATE ROLE mallory LOGIN;
        CREATE ROLE app LOGIN;
        CREATE TABLE users (id int PRIMARY KEY, email text, name text);
        CREATE TABLE orders (id int PRIMARY KEY, note text);
        CREATE TABLE events (id int, region text, PRIMARY KEY (id, region))
            PARTITION BY LIST (region);
        CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
        SELECT pginval.watch('users', ARRAY['id', 'email']);
        SELECT pginval.watch('orders', NULL, 'pginval', 'durable');
        SELECT pginval.watch('events_eu');
        GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON users, orders,
            events, events_eu TO app;
        -- A writable place for planted code to leave its mark, and the
        -- CREATE on public that PostgreSQL granted to PUBLIC before 15.
        CREATE TABLE pwned (who text, what text);
        GRANT INSERT ON pwned TO PUBLIC;
        GRANT CREATE ON SCHEMA public TO mallory;
    """)


def before_each():
    pginval_proc.fresh_database(PG)


def test_forged_notifications_are_dropped():
    """Forged row events, truncates and resets, with no authenticator or a
    wrong one, from a role with no grants: none reaches the channel."""
    port = free_port()
    sub = REDIS.subscribe("pginval")
    forged = [
        '{"v":1,"t":"public.users","op":"truncate","ts":1,"x":1}',
        '{"v":1,"t":"public.users","op":"delete","ts":1,"x":1,'
        '"o":{"id":"1","email":"a@x"}}',
        '{"v":1,"t":"public.users","op":"update","ts":1,"x":1,"big":true}',
        # A MAC of the right shape, but not under the database's key.
        '{"v":1,"t":"public.users","op":"truncate","ts":1,"x":1,'
        '"m":"%s"}' % ("ab" * 32),
    ]
    with daemon(sub, extra={"metrics.listen": "127.0.0.1:%d" % port}) as d:
        notify = "".join("SELECT pg_notify('pginval', %s);\n"
                         % ("'" + f.replace("'", "''") + "'") for f in forged)
        as_role("mallory", notify)
        # The flood that once cost Redis 94% of a core in sweeps.
        as_role("mallory", "DO $$ BEGIN FOR i IN 1..20000 LOOP "
                "PERFORM pg_notify('pginval', '{\"v\":1,\"t\":\"public.users\","
                "\"op\":\"truncate\",\"ts\":' || i || ',\"x\":1}'); "
                "END LOOP; END $$")
        as_role("app", "INSERT INTO users VALUES (1, 'a@x', 'n')")
        m = next_msg(sub)
        eq(strip(m), {"op": "insert", "table": "public.users",
                      "keys": ["user:1", "user:email:a@x"],
                      "new": {"id": "1", "email": "a@x"}},
           "the real change is the first message after the start")
        eq(settle(sub, PG), [], "the forged payloads send nothing")
        text = http_get(port, "/metrics")[1]
        eq(metric(text, 'pginval_forged_payloads_total{source="notify"}'),
           len(forged) + 20000)
        d.wait_log("dropped a payload")
    log = d.log_text()
    assert log.count("dropped a payload") <= 10, "logged with a rate limit"
    assert ", %d forged," % (len(forged) + 20000) in log, log[-1000:]
    sql("TRUNCATE users")


def test_outbox_is_closed_to_other_roles():
    """Only the triggers write the outbox; a row that is there without
    their authenticator (left by an older installation) is dropped."""
    refused("mallory", "INSERT INTO pginval.outbox (channel, payload) "
            "VALUES ('pginval', '{\"v\":1,\"t\":\"public.orders\","
            "\"op\":\"truncate\"}')", "permission denied")
    sql("INSERT INTO pginval.outbox (channel, payload) VALUES ('pginval', "
        "'{\"v\":1,\"t\":\"public.orders\",\"op\":\"truncate\",\"ts\":1,"
        "\"x\":1}')")
    port = free_port()
    sub = REDIS.subscribe("pginval")
    with daemon(sub, extra={"metrics.listen": "127.0.0.1:%d" % port}) as d:
        # A writer with no grant on the outbox still writes to its table.
        as_role("app", "INSERT INTO orders VALUES (7, 'x')")
        m = next_msg(sub)
        eq((m["op"], m["keys"]), ("insert", ["order:7"]), "the real change")
        eq(settle(sub, PG, "durable"), [], "the forged row sends nothing")
        wait_for(lambda: sql("SELECT count(*) FROM pginval.outbox").strip()
                 == "0", "the outbox emptied")
        eq(metric(http_get(port, "/metrics")[1],
                  'pginval_forged_payloads_total{source="outbox"}'), 1)
    assert "dropped a payload" in d.log_text()


def test_trigger_functions_cannot_be_borrowed():
    """pginval's trigger functions cannot be attached to another table,
    called directly, nor can the key be read."""
    as_role("mallory", "CREATE TABLE mal_t (id int);")
    for fn, args in (("on_row", "'pginval', 'notify', 'id'"),
                     ("on_statement", "'pginval', 'notify', 'id'"),
                     ("on_truncate", "'pginval', 'notify'")):
        refused("mallory", "CREATE TRIGGER x AFTER INSERT ON mal_t FOR "
                "EACH ROW EXECUTE FUNCTION pginval.%s(%s)" % (fn, args),
                "permission denied for function pginval.%s" % fn)
        refused("mallory", "CREATE TEMP TABLE tt (id int); CREATE TRIGGER x "
                "AFTER TRUNCATE ON tt EXECUTE FUNCTION pginval.%s(%s)"
                % (fn, args), "permission denied for function pginval.%s" % fn)
    refused("mallory", "SELECT pginval._send_row('pginval', 'notify', "
            "'{id}', 'public.users', 'truncate', NULL, NULL)",
            "permission denied for function")
    refused("mallory", "SELECT * FROM pginval.secret",
            "permission denied for table secret")
    refused("mallory", "SELECT pginval._signed('{}', '', '')",
            "permission denied for function")
    # What PUBLIC may still do.
    eq(as_role("mallory", "SELECT pginval.version()").strip(), "3")


# Planted in public, as mallory, in every form that could capture a call
# made by pginval's SQL: the same signature as pg_catalog's (which wins
# when a writer's search_path puts public first), a more exact one (which
# wins even when pg_catalog comes first), and types named like the
# built-in ones. Each body records that it ran and tries to make mallory a
# superuser.
PLANT = r"""
DO $plant$
DECLARE
    body text := $b$BEGIN
        INSERT INTO public.pwned VALUES (current_user, 'PLANTED');
        BEGIN
            ALTER ROLE mallory SUPERUSER;
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        RETURN NULL;
    END$b$;
    body_set text := $b$BEGIN
        INSERT INTO public.pwned VALUES (current_user, 'PLANTED');
        RETURN;
    END$b$;
    p record;
    i int := 0;
BEGIN
    FOR p IN
        SELECT pr.proname, pg_get_function_identity_arguments(pr.oid) AS args,
               pg_get_function_result(pr.oid) AS res,
               pr.proretset OR pg_get_function_result(pr.oid) = 'void' AS setof
          FROM pg_proc pr
         WHERE pr.pronamespace = 'pg_catalog'::regnamespace
           AND pr.prokind = 'f'
           AND pr.proname IN ('to_json', 'to_jsonb', 'lower', 'octet_length',
               'pg_notify', 'pg_current_xact_id', 'substr', 'left', 'encode',
               'sha256', 'convert_to', 'set_config', 'current_setting',
               'ceil', 'unnest', 'concat_ws', 'clock_timestamp',
               'date_part', 'extract', 'textcat', 'jsonb_exists',
               'jsonb_object_field_text', 'cardinality', 'format',
               'quote_literal', 'now', 'int8', 'text', 'numeric',
               'array_length', 'pg_trigger_depth', 'get_byte', 'set_byte')
    LOOP
        BEGIN
            EXECUTE format('CREATE FUNCTION public.%I(%s) RETURNS %s '
                           'LANGUAGE plpgsql AS %L', p.proname, p.args, p.res,
                           CASE WHEN p.setof THEN body_set ELSE body END);
            INSERT INTO public.planted VALUES ('function', p.proname);
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END LOOP;
    -- More exact than pg_catalog's polymorphic and variadic ones.
    FOR p IN SELECT * FROM (VALUES
        ('to_json', 'text', 'json'), ('to_json', 'name', 'json'),
        ('to_jsonb', 'record', 'jsonb'), ('to_jsonb', 'text', 'jsonb'),
        ('concat_ws', 'text, text, text', 'text'),
        ('concat_ws', 'text, text, text, text', 'text'),
        ('concat_ws', 'text, text, text, text, text', 'text'),
        ('row_number', '', 'bigint'), ('pg_notify', 'name, text', 'void'),
        ('string_agg', 'text, unknown', 'text')) AS v(proname, args, res)
    LOOP
        BEGIN
            EXECUTE format('CREATE FUNCTION public.%I(%s) RETURNS %s '
                           'LANGUAGE plpgsql AS %L', p.proname, p.args, p.res,
                           CASE WHEN p.res = 'void' THEN body_set ELSE body END);
            INSERT INTO public.planted VALUES ('function', p.proname);
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END LOOP;
    FOR p IN
        SELECT op.oprname, format_type(op.oprleft, NULL) AS l,
               format_type(op.oprright, NULL) AS r,
               format_type(op.oprresult, NULL) AS res
          FROM pg_operator op
         WHERE op.oprnamespace = 'pg_catalog'::regnamespace
           AND op.oprname IN ('||', '=', '<>', '?', '->>', '*', '-', '+',
                              '/', '>', '<', '<=', '>=', '*=', '#')
           AND op.oprleft <> 0 AND op.oprright <> 0
        UNION ALL
        SELECT * FROM (VALUES ('||', 'text', 'bigint', 'text'),
                              ('||', 'text', 'integer', 'text'),
                              ('=', 'text', 'unknown', 'boolean')) AS v
    LOOP
        i := i + 1;
        BEGIN
            EXECUTE format('CREATE FUNCTION public.op_%s(%s, %s) RETURNS %s '
                           'LANGUAGE plpgsql AS %L', i, p.l, p.r, p.res, body);
            EXECUTE format('CREATE OPERATOR public.%s (LEFTARG = %s, '
                           'RIGHTARG = %s, FUNCTION = public.op_%s)',
                           p.oprname, p.l, p.r, i);
            INSERT INTO public.planted VALUES ('operator', p.oprname);
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END LOOP;
    FOR p IN SELECT unnest(ARRAY['text', 'json', 'jsonb', 'bytea', 'name',
                                 'regclass', 'bool', 'int8', 'numeric'])
                    AS proname
    LOOP
        BEGIN
            EXECUTE format('CREATE TYPE public.%I AS ENUM (%L)', p.proname,
                           'PLANTED');
            INSERT INTO public.planted VALUES ('type', p.proname);
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END LOOP;
    BEGIN
        CREATE FUNCTION public.sum_step(bigint, int) RETURNS bigint
            LANGUAGE plpgsql AS $b$BEGIN
                INSERT INTO public.pwned VALUES (current_user, 'PLANTED');
                RETURN 0; END$b$;
        CREATE AGGREGATE public.sum(int) (SFUNC = public.sum_step,
                                          STYPE = bigint);
        INSERT INTO public.planted VALUES ('aggregate', 'sum');
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
END;
$plant$;
"""


def test_planted_overloads_never_run():
    """Superuser writes, with public first on its search_path, to tables
    watched in every mode and layout, one row and many: none of the planted
    functions, operators or types runs, and the invalidations are right."""
    sql("CREATE TABLE planted (kind text, name text);"
        "GRANT INSERT ON planted TO mallory;")
    as_role("mallory", PLANT)
    counts = dict(line.split("|") for line in sql(
        "SELECT kind, count(*) FROM planted GROUP BY kind").split())
    assert int(counts["function"]) >= 60, counts
    assert int(counts["operator"]) >= 100, counts
    assert int(counts["type"]) >= 5, counts
    assert int(counts["aggregate"]) == 1, counts

    sub = REDIS.subscribe("pginval")
    with daemon(sub):
        # No operator in these statements, so that only pginval's SQL could
        # reach what was planted.
        PG.psql("""
            SET search_path = public, pg_catalog;
            INSERT INTO users VALUES (1, 'a@x', 'n');
            INSERT INTO users VALUES (2, 'b@x', 'n'), (3, 'c@x', 'n');
            UPDATE users SET email = 'z@x';
            DELETE FROM users;
            INSERT INTO orders VALUES (1, 'x'), (2, 'y');
            UPDATE orders SET note = 'z';
            INSERT INTO events_eu VALUES (5, 'eu');
            TRUNCATE users, orders;
        """)
        # Read up to both truncates, the last of each table's stream:
        # waiting messages may merge, so their number is not fixed.
        got = []
        while not {("truncate", "public.users"),
                   ("truncate", "public.orders")} <= \
                {g[:2] for g in got}:
            assert len(got) < 20, "more messages than changes: %r" % got
            m = next_msg(sub, timeout=10)
            assert m is not None, "messages stopped at %r" % got
            got.append((m["op"], m["table"], sorted(m["keys"])))
    eq(sql("SELECT count(*) FROM pwned").strip(), "0",
       "planted code ran: %s" % sql("SELECT * FROM pwned LIMIT 5"))
    eq(sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'").strip(),
       "f", "mallory is no superuser")
    zs = ["user:1", "user:2", "user:3", "user:email:a@x", "user:email:b@x",
          "user:email:c@x", "user:email:z@x"]
    # Waiting messages may merge: compare the keys each op made stale.
    want = {"insert": ["user:1", "user:2", "user:3", "user:email:a@x",
                       "user:email:b@x", "user:email:c@x"],
            "update": zs,
            "delete": ["user:1", "user:2", "user:3", "user:email:z@x"],
            "truncate": []}
    for op, keys in want.items():
        have = sorted({k for g in got if g[1] == "public.users" and g[0] == op
                       for k in g[2]})
        eq(have, keys, op)
    eq([(g[0], g[2]) for g in got if g[1] == "public.events_eu"],
       [("insert", ["event:5"])], "the partition (row layout)")
    eq(sorted({g[0] for g in got if g[1] == "public.orders"}),
       ["insert", "truncate", "update"], "the durable table")
    sql("DROP OWNED BY mallory; DELETE FROM planted;")
    sql("GRANT CREATE ON SCHEMA public TO mallory; "
        "GRANT INSERT ON planted TO mallory;")


def test_cast_to_json_runs_without_privilege():
    """The owner of a watched table can make to_jsonb() run its code (a
    cast to json of a type it owns). That code runs as pginval_trigger,
    which can do nothing but what the triggers do: never as the writer or
    the installer, so never as a superuser."""
    as_role("mallory", r"""
        CREATE TYPE mood AS ENUM ('ok');
        CREATE FUNCTION mood_json(mood) RETURNS json LANGUAGE plpgsql AS $b$
        BEGIN
            INSERT INTO public.pwned VALUES (current_user, 'cast');
            BEGIN
                ALTER ROLE mallory SUPERUSER;
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
            RETURN '"ok"'::json;
        END$b$;
        CREATE CAST (mood AS json) WITH FUNCTION mood_json(mood);
        CREATE TABLE mal (id int PRIMARY KEY, m mood);
        GRANT ALL ON mal TO PUBLIC;
    """)
    sql("SELECT pginval.watch('mal')")
    sub = REDIS.subscribe("pginval")
    with daemon(sub):
        sql("INSERT INTO mal VALUES (1, 'ok')")  # a superuser writes
        m = next_msg(sub)
        eq((m["table"], m["keys"]), ("public.mal", ["mal:1"]))
    eq(sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'").strip(),
       "f", "mallory is no superuser")
    eq(sql("SELECT DISTINCT who FROM pwned").split(), ["pginval_trigger"],
       "the cast ran as pginval_trigger")
    sql("SELECT pginval.unwatch('mal'); DELETE FROM pwned")


def test_daemon_role_needs_the_key():
    """A daemon role that cannot read the key is told what to grant, and
    publishes nothing until it can; check --connect says the same."""
    sql("CREATE ROLE pgi LOGIN;"
        "GRANT SELECT, UPDATE, DELETE ON pginval.outbox TO pgi;")
    d = pginval_proc.Daemon(PG, REDIS, tables=TABLES)
    conf = d.config
    with open(conf) as f:
        text = f.read().replace("user=%s" % PG.user, "user=pgi")
    with open(conf, "w") as f:
        f.write(text)
    r = run_bin("check", "--connect", "-c", conf)
    assert "GRANT SELECT ON pginval.secret" in r.stdout, r.stdout + r.stderr
    eq(r.returncode, 1, r.stdout)
    sub = REDIS.subscribe("pginval")
    d.start()
    try:
        d.wait_log("GRANT SELECT ON pginval.secret TO this role")
        assert next_msg(sub, 0.5) is None, "published without a key"
        sql("GRANT SELECT ON pginval.secret TO pgi")
        first = next_msg(sub, 10)
        eq(first["op"], "reset", "the start, once the key is read")
        as_role("app", "INSERT INTO users VALUES (9, 'k@x', 'n')")
        eq(next_msg(sub)["keys"], ["user:9", "user:email:k@x"])
    finally:
        d.stop()
    r = run_bin("check", "--connect", "-c", conf)
    assert "ok: the payloads' key is readable" in r.stdout, r.stdout
    sql("TRUNCATE users")


def test_install_without_superuser():
    """A role with CREATEROLE installs pginval (in a database of its own);
    one without is told what to ask for; the triggers then work the same."""
    sql("CREATE ROLE installer LOGIN CREATEROLE; CREATE ROLE plain LOGIN;"
        "CREATE DATABASE ni OWNER installer; CREATE DATABASE np OWNER plain;")
    path = os.path.join(ROOT, "sql", "pginval.sql")
    dbs = sql("SELECT datname FROM pg_database WHERE datallowconn").split()
    if sql("SELECT count(*) FROM pg_roles "
           "WHERE rolname = 'pginval_trigger'").strip() == "1":
        # As if this were the cluster's first installation.
        for db in dbs:
            PG.psql("REASSIGN OWNED BY pginval_trigger TO postgres;"
                    "DROP OWNED BY pginval_trigger;", db=db)
        sql("DROP ROLE pginval_trigger")
    r = PG.run_psql(["-q", "-v", "ON_ERROR_STOP=1", "-d",
                     PG.dsn("np", user="plain"), "-f", path], check=False)
    assert r.returncode != 0, r.stdout
    assert "may not create it" in r.stderr and "CREATE ROLE pginval_trigger " \
        "NOLOGIN; GRANT pginval_trigger TO plain;" in r.stderr, r.stderr
    as_installer = ["-d", PG.dsn("ni", user="installer")]
    PG.run_psql(["-q", "-v", "ON_ERROR_STOP=1", "-f", path] + as_installer)
    out = PG.run_psql(["-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"] +
                      as_installer, input="""
        CREATE TABLE t (id int PRIMARY KEY);
        SELECT pginval.watch('t');
        LISTEN pginval;
        INSERT INTO t VALUES (1);
        SELECT proowner::regrole FROM pg_proc
         WHERE oid = 'pginval.on_statement()'::regprocedure;
    """).stdout
    assert "pginval_trigger" in out, out
    # The superuser's installations (this test's database, and the one
    # the next tests' databases are copied from) are whole again.
    for db in (PG.dbname, pginval_proc.TEMPLATE):
        PG.psql_file(path, db=db)
    eq(sql("SELECT proowner::regrole FROM pg_proc WHERE oid = "
           "'pginval.on_row()'::regprocedure").strip(), "pginval_trigger")


if __name__ == "__main__":
    sys.exit(pginval_proc.main(globals()))
