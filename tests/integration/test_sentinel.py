#!/usr/bin/env python3
"""Redis Sentinel: `pginval run` and `pginval apply` find the master through
the sentinels (which have a password of their own, the data nodes another),
follow a SENTINEL FAILOVER under write load and the promotion after a
SIGKILLed master, with no stale key at the end; a daemon pointed at a
replica refuses to write there; a wrong sentinel_password is a clear error
that does not show it; and `pginval check` (and --connect) on these
settings.

    python3 tests/integration/test_sentinel.py [-v] [name-substring ...]
"""

import os
import select
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "consistency"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import harness  # noqa: E402
import runner  # noqa: E402
from pginval_proc import wait_for  # noqa: E402
from runner import eq  # noqa: E402
from servers import (Postgres, Redis, RedisSentinel,  # noqa: E402
                     RespConnection)

PG = None
TABLES = {"public.users": "user:{id}, user:email:{email}"}
DATA_PW = "d4ta-pw"
SENTINEL_PW = "s3ntinel-pw"
ROWS = 50
FAST_SYNC = ["--repl-diskless-sync-delay", "0"]   # a replica syncs at once


class Topology:
    """1 master + 1 replica (requirepass) + 3 sentinels (requirepass),
    all closed at the end."""

    def __init__(self):
        self.rs = RedisSentinel(replicas=1, sentinels=3, password=DATA_PW,
                                sentinel_password=SENTINEL_PW,
                                failover_timeout=5000).start()
        # Ready for a failover: each sentinel knows the replica and the
        # two other sentinels. master and replica stay the nodes they
        # were at the start, whatever fails over.
        self.master, self.replica = self.rs.data_nodes
        self.sentinels = self.rs.sentinels

    def list(self):
        return self.rs.sentinel_addrs

    def settings(self, section, password=SENTINEL_PW):
        out = {section + ".url": "redis://:%s@127.0.0.1:1/0" % DATA_PW,
               section + ".sentinels": self.list(),
               section + ".master": "mymaster"}
        if password:
            out[section + ".sentinel_password"] = password
        return out

    def master_port(self):
        return int(self.sentinels[0].command(
            "SENTINEL", "get-master-addr-by-name", "mymaster")[1])

    def node(self, port):
        return self.master if self.master.port == port else self.replica

    def close(self):
        self.rs.stop()


class Stack:
    """A daemon and an apply, both on the Sentinel setup (apply's channel
    and its target t)."""

    def __init__(self, topo):
        extra = topo.settings("redis")
        self.d = harness.Daemon(PG, None, TABLES, extra=extra,
                                redis_url=extra.pop("redis.url"))
        extra = topo.settings("redis")
        extra.update(topo.settings("target t"))
        self.a = harness.Apply(PG, None, TABLES, extra=extra,
                               redis_url=extra.pop("redis.url"))

    def __enter__(self):
        self.d.start()
        self.a.start()
        self.a.wait_log("swept keys matching")     # the start reset
        return self

    def __exit__(self, exc, *rest):
        if exc is not None:
            for p in (self.a, self.d):
                print("--- %s log ---\n%s" % (p.command, p.log_text()))
                p.kill()
        else:
            self.a.stop()
            self.d.stop()
        return False

    def connected(self, port, count=1):
        needle = "connected to 127.0.0.1:%d" % port
        self.d.wait_log("redis: " + needle, timeout=30, count=count)
        self.a.wait_log("target t: " + needle, timeout=30, count=count)


def sql(text):
    return PG.psql(text)


def fill(node):
    with node.connect() as c:
        for i in range(1, ROWS + 1):
            c.command("SET", "user:%d" % i, "cached")


def stale(node):
    return [i for i in range(1, ROWS + 1)
            if node.command("EXISTS", "user:%d" % i)]


def load(commits):
    """Updates rows in a loop (commits commits, about 20 ms apart), in
    the background: every row is updated at least once."""
    return subprocess.Popen(
        [PG._bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", PG.dsn(), "-c",
         "DO $$ BEGIN FOR i IN 1..%d LOOP UPDATE users SET name = 'n' || i "
         "WHERE id = 1 + i %% %d; COMMIT; PERFORM pg_sleep(0.02); END LOOP; "
         "END $$;" % (commits, ROWS)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)


def finish(p):
    out, _ = p.communicate(timeout=60)
    eq(p.returncode, 0, "the load: %s" % out)


# -- tests --------------------------------------------------------------------

def setup():
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    sql("CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
        "SELECT pginval.watch('users', ARRAY['id', 'email']);"
        "INSERT INTO users SELECT i, 'u' || i || '@x.io', 'n' "
        "FROM generate_series(1, %d) i;" % ROWS)


def test_check_accepts_and_refuses_sentinel_settings():
    d = harness.Daemon(PG, None, TABLES, redis_url="redis://127.0.0.1:1/0",
                       extra={"redis.sentinels": "127.0.0.1:1, [::1]:2",
                              "redis.master": "mymaster",
                              "redis.sentinel_password": "pw"})
    r = subprocess.run([harness.BIN, "check", "-c", d.config],
                       capture_output=True, text=True)
    eq(r.returncode, 0, r.stdout + r.stderr)
    for extra, want in (
            ({"redis.sentinels": "127.0.0.1:1"}, "sentinels needs master"),
            ({"redis.master": "m"}, "master is set but sentinels is not"),
            ({"redis.sentinels": "127.0.0.1:1", "redis.master": "m",
              "redis.cluster": "on"}, "cluster and sentinels exclude"),
            ({"redis.sentinels": "127.0.0.1:x", "redis.master": "m"},
             "is not host:port")):
        d.rewrite(extra=extra)
        r = subprocess.run([harness.BIN, "check", "-c", d.config],
                           capture_output=True, text=True)
        eq(r.returncode, 1, "check of %r" % extra)
        assert want in r.stderr, "%r not in:\n%s" % (want, r.stderr)


def test_check_connect_reports_the_master():
    topo = Topology()
    try:
        extra = topo.settings("redis")
        d = harness.Daemon(PG, None, TABLES, extra=extra,
                           redis_url=extra.pop("redis.url"))
        r = subprocess.run([harness.BIN, "check", "--connect", "-c",
                            d.config], capture_output=True, text=True)
        eq(r.returncode, 0, r.stdout + r.stderr)
        for want in ('master "mymaster" is at 127.0.0.1:%d'
                     % topo.master.port,
                     "redis 127.0.0.1:%d is a master" % topo.master.port):
            assert want in r.stdout, "%r not in:\n%s" % (want, r.stdout)
        # Wrong password: the problem says so, without the password.
        extra = topo.settings("redis", password="n0t-the-pw")
        del extra["redis.url"]
        d.rewrite(extra=extra)
        r = subprocess.run([harness.BIN, "check", "--connect", "-c",
                            d.config], capture_output=True, text=True)
        eq(r.returncode, 1, r.stdout + r.stderr)
        assert "AUTH refused: WRONGPASS" in r.stdout, r.stdout
        assert "n0t-the-pw" not in r.stdout + r.stderr, r.stdout
    finally:
        topo.close()


def test_check_connect_reports_a_sentinel_target():
    topo = Topology()
    try:
        extra = topo.settings("redis")
        extra.update(topo.settings("target t"))
        a = harness.Apply(PG, None, TABLES, extra=extra,
                          redis_url=extra.pop("redis.url"))
        r = subprocess.run([harness.BIN, "check", "--connect", "-c",
                            a.config], capture_output=True, text=True)
        eq(r.returncode, 0, r.stdout + r.stderr)
        for want in ('\n[target t]\nok: target t: sentinel 127.0.0.1:',
                     'master "mymaster" is at 127.0.0.1:%d'
                     % topo.master.port,
                     "ok: target t: redis 127.0.0.1:%d is a master"
                     % topo.master.port):
            assert want in r.stdout, "%r not in:\n%s" % (want, r.stdout)
        # The target's sentinel_password refused: a problem of the target
        # alone, which does not show the password.
        extra.update(topo.settings("target t", password="n0t-the-pw"))
        a.rewrite(extra=extra)
        r = subprocess.run([harness.BIN, "check", "--connect", "-c",
                            a.config], capture_output=True, text=True)
        eq(r.returncode, 1, r.stdout + r.stderr)
        assert 'problem: target t: no sentinel gave the address of master ' \
            '"mymaster"' in r.stdout, r.stdout
        assert "AUTH refused: WRONGPASS" in r.stdout, r.stdout
        assert "1 problem found" in r.stdout, r.stdout
        assert "n0t-the-pw" not in r.stdout + r.stderr, r.stdout
    finally:
        topo.close()


def test_follows_a_failover_under_load():
    topo = Topology()
    try:
        with Stack(topo) as s:
            old = topo.master
            s.connected(old.port)
            fill(old)
            p = load(200)
            time.sleep(1)
            eq(topo.sentinels[1].command("SENTINEL", "FAILOVER", "mymaster"),
               "OK", "SENTINEL FAILOVER")
            finish(p)
            new = topo.node(topo.master_port())
            assert new is topo.replica, "the replica was promoted"
            s.d.wait_log('master "mymaster" switched to 127.0.0.1:', timeout=30)
            s.connected(new.port)
            # Every row was updated after the switch, too: no stale key.
            wait_for(lambda: not stale(new), "no stale key on the new "
                     "master", timeout=30)
            # And the links work on the new master.
            fill(new)
            sql("UPDATE users SET name = 'after'")
            wait_for(lambda: not stale(new), "invalidations on the new "
                     "master")
    finally:
        topo.close()


def test_follows_the_promotion_after_a_killed_master():
    topo = Topology()
    try:
        with Stack(topo) as s:
            s.connected(topo.master.port)
            topo.master.kill()
            wait_for(lambda: topo.master_port() == topo.replica.port,
                     "the sentinels promoted the replica", timeout=30)
            s.connected(topo.replica.port)
            fill(topo.replica)
            sql("UPDATE users SET name = 'killed'")
            wait_for(lambda: not stale(topo.replica), "invalidations on "
                     "the promoted replica")
    finally:
        topo.close()


def test_tail_subscribes_at_the_master():
    topo = Topology()
    try:
        extra = topo.settings("redis")
        d = harness.Daemon(PG, None, TABLES, extra=extra,
                           redis_url=extra.pop("redis.url"))
        p = subprocess.Popen([harness.BIN, "tail", "-c", d.config],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        try:
            line = ""
            deadline = time.monotonic() + 20
            while "subscribed" not in line and time.monotonic() < deadline:
                if select.select([p.stderr], [], [], 0.5)[0]:
                    line = p.stderr.readline()
            assert 'subscribed to "pginval" on 127.0.0.1:%d' \
                % topo.master.port in line, line
        finally:
            p.terminate()
            p.wait(timeout=10)
    finally:
        topo.close()


def test_refuses_to_write_to_a_replica():
    m = Redis(extra_args=FAST_SYNC).start()
    r = Redis(extra_args=FAST_SYNC + ["--replicaof", "127.0.0.1",
                                      str(m.port)]).start()
    try:
        d = harness.Daemon(PG, None, TABLES, redis_url=r.url + "/0",
                           extra={"daemon.shutdown_timeout": "1"})
        sub = RespConnection("127.0.0.1", r.port)
        sub.command("SUBSCRIBE", "pginval")
        d.start(wait="")
        try:
            d.wait_log("127.0.0.1:%d is a replica of 127.0.0.1:%d: pginval "
                       "writes only to a master" % (r.port, m.port))
            sql("UPDATE users SET name = 'replica' WHERE id = 1")
            d.wait_log("redis: 127.0.0.1:%d is a replica" % r.port, count=2)
            assert "redis: connected to" not in d.log_text(), d.log_text()
            try:
                got = sub.read_reply(timeout=0.5)
            except OSError:
                got = None
            eq(got, None, "nothing published on the replica")
        finally:
            sub.close()
            d.stop()
    finally:
        m.stop()
        r.stop()


def test_a_demoted_master_is_left_and_the_write_sent_again():
    m = Redis(extra_args=FAST_SYNC).start()
    other = Redis(extra_args=FAST_SYNC).start()
    try:
        d = harness.Daemon(PG, None, TABLES, redis_url=m.url + "/0",
                           extra={"redis.action": "delete"})
        d.start()
        try:
            d.wait_log("redis: connected to 127.0.0.1:%d" % m.port)
            other.command("SET", "user:1", "cached")
            m.command("REPLICAOF", "127.0.0.1", other.port)
            wait_for(lambda: m.command("EXISTS", "user:1"), "m in sync")
            sql("UPDATE users SET name = 'demoted' WHERE id = 1")
            d.wait_log("127.0.0.1:%d is a replica now" % m.port)
            d.wait_log("127.0.0.1:%d is a replica of 127.0.0.1:%d"
                       % (m.port, other.port))
            eq(m.command("EXISTS", "user:1"), 1, "not deleted on a replica")
            m.command("REPLICAOF", "NO", "ONE")
            d.wait_log("redis: connected to 127.0.0.1:%d" % m.port, count=2)
            wait_for(lambda: not m.command("EXISTS", "user:1"),
                     "the deletion, sent again to the master")
        except BaseException:
            print("--- run log ---\n" + d.log_text())
            d.kill()
            raise
        d.stop()
    finally:
        m.stop()
        other.stop()


def test_wrong_sentinel_password_is_a_clear_error():
    topo = Topology()
    try:
        extra = topo.settings("redis", password="wr0ng-sentinel-pw")
        extra["daemon.shutdown_timeout"] = "1"
        d = harness.Daemon(PG, None, TABLES, extra=extra,
                           redis_url=extra.pop("redis.url"))
        d.start(wait="")
        try:
            d.wait_log("AUTH refused: WRONGPASS")
            d.wait_log('no sentinel gave the address of master "mymaster"')
            text = d.log_text()
            line = [ln for ln in text.splitlines()
                    if "no sentinel gave the address" in ln][0]
            for n in topo.sentinels:          # each asked once, in turn
                eq(line.count("127.0.0.1:%d: AUTH refused" % n.port), 1,
                   "sentinel %d in %r" % (n.port, line))
            assert "wr0ng-sentinel-pw" not in text, text
            assert DATA_PW not in text, text
            assert "redis: connected to" not in text, text
        finally:
            d.stop()
    finally:
        topo.close()


def around():
    import contextlib

    @contextlib.contextmanager
    def servers():
        global PG
        with Postgres() as pg:
            PG = pg
            yield
    return servers()


if __name__ == "__main__":
    sys.exit(runner.run(globals(), sys.argv[1:], around=around))
