#!/usr/bin/python3
"""The cache-aside recipes of the README, end to end.

A PostgreSQL, a Redis, `pginval run` and `pginval apply` run for real; the
Python recipe (redis-py) and the Node recipe (ioredis) play the classic
race: a reader misses and reads the old row, a writer commits and apply
invalidates, then the reader fills. With the guard (pginval_fill) the fill
is refused; with a plain SET the stale value is stored. The marker rule is
checked three ways (C, Python, Node) against Redis Cluster's own
CLUSTER KEYSLOT.

    /usr/bin/python3 tests/recipes/test_recipes.py [-v] [name-substring ...]

Needs python3-redis (Debian's python3) and node; the npm packages are
installed by tests/recipes/install-node-deps.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "consistency"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import redis as redispy  # noqa: E402
import runner  # noqa: E402
from cache_aside import GuardedCache, PlainCache, key_slot, marker_key  # noqa: E402
from runner import eq  # noqa: E402
from servers import Postgres, Redis  # noqa: E402

PG = REDIS = DAEMON = APPLY = None
FILL = open(harness.FILL_LUA).read()
FILL_SHA = hashlib.sha1(FILL.encode()).hexdigest()
TABLES = {"public.users": "user:{id}, user:email:{email}",
          "public.kv": {"keys": "{id}", "allow_wide_sweep": "yes"}}
# Keys with and without hash tags, braces that make no tag, binary bytes.
ODD_KEYS = ["user:42", "{user:42}:profile", "a{b}c", "{a}{b}", "{{a}", "{}x",
            "a}b", "{}x}", "}", "{", "x{", "caf\u00e9:{\u00e9}", "sp ace",
            "glob*?[x]"]


def r():
    return redispy.Redis(host="127.0.0.1", port=REDIS.port)


def wait_marker_change(client, key, before, timeout=5):
    return harness.wait_for(lambda: client.get(marker_key(key)) != before,
                            "apply to invalidate %r" % key, timeout)


def setup():
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    PG.psql("CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
            "SELECT pginval.watch('users', ARRAY['id', 'email']);"
            "CREATE TABLE kv (id text PRIMARY KEY, v text);"
            "SELECT pginval.watch('kv', ARRAY['id']);"
            "INSERT INTO users SELECT g, 'u' || g || '@x.io', 'old' "
            "FROM generate_series(1, 10) g;")
    global DAEMON, APPLY
    DAEMON = harness.Daemon(PG, REDIS, TABLES).start()
    APPLY = harness.Apply(PG, REDIS, TABLES).start()
    APPLY.wait_log("swept keys matching", count=3)


def test_apply_loads_the_fill_script():
    client = r()
    eq(client.script_exists(FILL_SHA), [True], "SCRIPT EXISTS sha1(fill.lua)")
    assert FILL_SHA in APPLY.log_text(), "apply logs the fill script's SHA"


def test_fill_script_api():
    """EVALSHA sha 2 key marker value ttl_ms read_started_at_us [max_age_ms]."""
    c = r()
    sec, usec = c.time()
    now = sec * 1000000 + usec
    k = b"api:1"
    m = marker_key(k)

    def fill(started, *extra, key=k):
        return c.evalsha(FILL_SHA, 2, key, marker_key(key), b"v", 5000,
                         started, *extra)

    eq(fill(now), 1, "no marker: stored")
    eq(c.pttl(k) > 4000, True, "with the ttl")
    eq(fill(now), 0, "key present: refused")
    c.delete(k)
    c.set(m, now + 10)
    eq(fill(now), 0, "marker newer than the read: refused")
    eq(fill(now + 10), 0, "marker as new as the read: refused")
    eq(fill(now + 11), 1, "read started after the marker: stored")
    c.delete(k, m)
    eq(fill(now - 20 * 1000000), 0, "a read older than max_age: refused")
    eq(fill(now - 20 * 1000000, 30000), 1, "unless max_age allows it")
    c.delete(k)
    try:
        fill("soon")
        raise AssertionError("bad arguments accepted")
    except redispy.ResponseError as e:
        assert "pginval_fill" in str(e), e


def test_marker_rule_c_python_node_and_cluster_agree():
    # Python and Node compute the same names...
    out = subprocess.run(
        ["node", "-e", "const {markerKey}=require('./cache_aside.js');"
         "const ks=JSON.parse(process.argv[1]);"
         "console.log(JSON.stringify(ks.map(k=>markerKey(Buffer.from(k,'utf8')).toString('latin1'))))",
         json.dumps(ODD_KEYS)], cwd=HERE, capture_output=True, text=True,
        check=True).stdout
    node = [s.encode("latin1") for s in json.loads(out)]
    eq(node, [marker_key(k.encode()) for k in ODD_KEYS], "Node = Python")
    # ... as apply does: each row change leaves the marker Python names.
    c = r()
    for i, k in enumerate(ODD_KEYS):
        PG.psql("INSERT INTO kv VALUES ('%s', 'x')" % k.replace("'", "''"))
    for k in ODD_KEYS:
        harness.wait_for(lambda: c.exists(marker_key(k.encode())),
                         "the marker of %r" % k)
    # ... and every marker is in its key's slot, by Redis Cluster itself.
    tmp = tempfile.mkdtemp(prefix="pginval-cluster-")
    try:
        with Redis(extra_args=["--cluster-enabled", "yes",
                               "--cluster-config-file",
                               os.path.join(tmp, "nodes.conf")]) as cl:
            with cl.connect() as conn:
                for k in ODD_KEYS + [""]:
                    kb = k.encode()
                    ks = conn.command("CLUSTER", "KEYSLOT", kb)
                    eq(key_slot(kb), ks, "CRC16 slot of %r" % k)
                    eq(conn.command("CLUSTER", "KEYSLOT", marker_key(kb)), ks,
                       "slot of the marker of %r" % k)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def race(cache, key, row_id, new_name):
    """Plays the race; returns (what the reader got, what is cached)."""
    c = r()

    def load():
        old = PG.psql("SELECT name FROM users WHERE id = %d" % row_id).strip()
        before = c.get(marker_key(key))
        PG.psql("UPDATE users SET name = '%s' WHERE id = %d"
                % (new_name, row_id))
        wait_marker_change(c, key, before)      # apply invalidated the key
        return old.encode()

    got = cache.get(key, load)
    return got, c.get(key)


def test_python_recipe_refuses_a_racing_fill():
    cache = GuardedCache(r(), FILL)
    got, cached = race(cache, b"user:1", 1, "py-new")
    eq(got, b"old", "the reader read the old row")
    eq(cached, None, "the stale value was not stored")
    eq(cache.stats["refused"], 1, "one refusal")
    time.sleep(0.2)   # past [apply] marker_margin
    fresh = cache.get(b"user:1", lambda: PG.psql(
        "SELECT name FROM users WHERE id = 1").strip().encode())
    eq(fresh, b"py-new", "a later read")
    eq(r().get(b"user:1"), b"py-new", "fills the new value")
    eq(cache.stats["fills"], 1, "one fill")


def test_plain_set_stores_the_stale_value():
    """The same race without the guard: the classic bug."""
    cache = PlainCache(r(), FILL)
    got, cached = race(cache, b"user:2", 2, "plain-new")
    eq(got, b"old", "the reader read the old row")
    eq(cached, b"old", "plain SET stored the stale value after the "
       "invalidation")
    eq(PG.psql("SELECT name FROM users WHERE id = 2").strip(), "plain-new",
       "while the database says")


def test_node_recipe_refuses_a_racing_fill():
    subprocess.run([os.path.join(HERE, "install-node-deps")], check=True)
    env = dict(os.environ, REDIS_PORT=str(REDIS.port), FILL_LUA=harness.FILL_LUA,
               KEY="user:3", ROW_ID="3", PG_DSN=PG.conninfo,
               PSQL=os.path.join(PG.bindir, "psql"))
    env = {k: v for k, v in env.items() if not k.startswith("PG")
           or k == "PG_DSN"}
    proc = subprocess.run(["node", os.path.join(HERE, "race.js")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    eq(out["raced"], "old", "the reader read the old row")
    eq(out["invalidated"], True, "apply invalidated meanwhile")
    eq(out["cachedAfterRace"], None, "the stale value was not stored")
    eq(out["statsAfterRace"]["refused"], 1, "one refusal")
    eq(out["fresh"], "node-new", "a later read")
    eq(out["cachedAfterFresh"], "node-new", "fills the new value")
    eq(out["hit"], "node-new", "and is then a hit")


class own_daemon:
    """While a test runs a daemon of its own on the channel, setup's
    stands aside: daemons of one channel form a group, in which only one
    publishes (docs/operations.md, High availability)."""

    def __enter__(self):
        DAEMON.stop()

    def __exit__(self, *exc):
        DAEMON.start()
        return False


def test_apply_stops_cleanly():
    # A pair of its own, on a Redis of its own: the pair of setup serves
    # the other tests.
    with own_daemon(), Redis() as rd:
        d = harness.Daemon(PG, rd, TABLES).start()
        a = harness.Apply(PG, rd, TABLES).start()
        try:
            a.wait_log("swept keys matching", count=3)
        finally:
            a.stop()        # exit status 0, or this fails
            d.stop()


def test_sharded_subscriber_of_the_docs():
    """docs/messages.md's redis-py 4 subscriber for cluster = on: SSUBSCRIBE
    on a connection of its own at the channel's master, smessage pushes."""
    from servers import RedisCluster
    with own_daemon(), RedisCluster(masters=3, replicas=0) as cl:
        d = harness.Daemon(PG, REDIS, TABLES, redis_url=cl.seed_url,
                           extra={"redis.cluster": "on"}).start()
        try:
            owner = cl.owner(cl.keyslot("pginval"))
            c = redispy.Redis(host=owner.host, port=owner.port,
                              socket_timeout=10) \
                .connection_pool.get_connection("ssubscribe")
            c.send_command("SSUBSCRIBE", "pginval")
            eq(c.read_response()[0], b"ssubscribe", "subscribed")
            PG.psql("UPDATE users SET name = 'sharded' WHERE id = 7")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                kind, channel, data = c.read_response()[:3]
                if kind == b"smessage" and b"user:7" in data:
                    m = json.loads(data)
                    eq(m["table"], "public.users", "the message")
                    break
            else:
                raise AssertionError("no smessage for user:7")
            c.disconnect()
        finally:
            d.stop()


def around():
    import contextlib

    @contextlib.contextmanager
    def servers():
        global PG, REDIS
        with Postgres() as pg, Redis() as rd:
            PG, REDIS = pg, rd
            try:
                yield
            finally:
                for p in (APPLY, DAEMON):
                    if p is not None and p.alive():
                        try:
                            p.stop()
                        except Exception:
                            print("--- %s log ---\n%s" % (p.command,
                                                          p.log_text()))
                            p.kill()
                            raise
    return servers()


if __name__ == "__main__":
    sys.exit(runner.run(globals(), sys.argv[1:], around=around))
