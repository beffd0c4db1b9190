#!/usr/bin/env python3
"""Operations: what the people who run pginval see and use.

Metrics checked by promtool, /healthz with either server down, the
systemd notify protocol over a socket of the test's own, `pginval tail`
in a real terminal (tmux), SIGHUP reloads that keep or move connections,
and `pginval check --connect` on good and broken setups.

    python3 tests/integration/test_ops.py [-v] [name-substring ...]
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import pginval_proc  # noqa: E402
from pginval_proc import (BIN, SLOW, NotifySocket, http_get,  # noqa: E402
                          metric, msgs, next_msg, run_bin, wait_for)
from runner import eq  # noqa: E402
from servers import Postgres, Redis, free_port  # noqa: E402

PG = None
REDIS = None


def sql(text, pg=None):
    return (pg or PG).psql(text)


def setup_db(pg):
    pg.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    pg.psql("CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
            "SELECT pginval.watch('users', ARRAY['id', 'email']);")


# -- tests --------------------------------------------------------------------

def setup():
    setup_db(PG)


def test_metrics_pass_promtool():
    port = free_port()
    sub = REDIS.subscribe("pginval")
    with pginval_proc.running(PG, REDIS, sub,
                              extra={"metrics.listen": "127.0.0.1:%d" % port}):
        sql("INSERT INTO users VALUES (1, 'a@x', 'n')")
        sql("UPDATE users SET email = 'b@x'")
        sql("SELECT pg_notify('pginval', 'junk')")
        sql("DELETE FROM users")
        msgs(sub, 3)
        status, text = http_get(port, "/metrics")
        eq(status, 200)
        r = subprocess.run(["promtool", "check", "metrics"], input=text,
                           capture_output=True, text=True)
        eq(r.returncode, 0, "promtool: " + r.stdout + r.stderr)
        eq(metric(text, 'pginval_events_total{table="public.users"}'), 3)
        eq(metric(text, 'pginval_forged_payloads_total{source="notify"}'), 1)
        eq(metric(text, 'pginval_decode_errors_total{kind="foreign"}'), 0)
        eq(metric(text, "pginval_messages_published_total"), 4)  # + reset
        eq(metric(text, "pginval_keys_published_total"), 2 + 3 + 2)
        eq(metric(text, 'pginval_resets_total{scope="all"}'), 1)
        eq(metric(text, 'pginval_up{side="postgres"}'), 1)
        eq(metric(text, 'pginval_up{side="redis"}'), 1)
        eq(metric(text, "pginval_lag_seconds_count"), 4)
        eq(metric(text, 'pginval_lag_seconds_bucket{le="+Inf"}'), 4)
        eq(metric(text, "pginval_queue_depth"), 0)
        eq(http_get(port, "/nope")[0], 404)


def test_healthz_follows_both_servers():
    port = free_port()
    with Postgres() as pg, Redis() as redis:
        setup_db(pg)
        sub = redis.subscribe("pginval")
        with pginval_proc.running(
                pg, redis, sub, extra={"metrics.listen": "127.0.0.1:%d" % port,
                                       "daemon.reconnect_max": "0.2"}):
            eq(http_get(port, "/healthz"),
               (200, "active; postgres: listening, redis: ready\n"))
            redis.stop()
            status, body = wait_for(
                lambda: (lambda r: r if r[0] == 503 else None)(
                    http_get(port, "/healthz")), "503 with Redis down")
            assert "redis: " in body and "ready" not in body, body
            redis.restart()
            wait_for(lambda: http_get(port, "/healthz")[0] == 200,
                     "200 after Redis is back")
            pg.halt()
            status, body = wait_for(
                lambda: (lambda r: r if r[0] == 503 else None)(
                    http_get(port, "/healthz")), "503 with PostgreSQL down")
            assert "postgres: " in body and "listening" not in body, body
            pg.restart()
            wait_for(lambda: http_get(port, "/healthz")[0] == 200,
                     "200 after PostgreSQL is back", 20)


def test_systemd_notify_protocol():
    ns = NotifySocket()
    with Redis() as redis:
        redis.stop()  # READY=1 must wait for Redis
        env = {"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "400000"}
        d = pginval_proc.Daemon(PG, redis, env=env,
                                redis_url="redis://127.0.0.1:%d/0" % free_port())
        try:
            d.start()
            ns.wait("WATCHDOG=1")  # fed from the loop every 0.2 s
            assert not any("READY=1" in m for m in ns.seen), ns.seen
            # Point it at a running Redis: READY only then.
            redis.start()
            d.write_config(redis_url=redis.url + "/0")
            d.signal(signal.SIGHUP)
            ns.wait("RELOADING=1")
            ns.wait("READY=1")
            # States, rates and counts, every 5 s.
            ns.wait(re.compile(r"STATUS=active; postgres: listening, redis: ready; "
                               r"\d+ events/s, \d+ messages/s, 1 published, "
                               r"0 queued, 1 resets"), 15)
            ns.wait("WATCHDOG=1")
            d.signal(signal.SIGTERM)
            ns.wait("STOPPING=1")
            d.proc.wait(timeout=10 * SLOW)
            d.stop()            # checks the exit status
        finally:
            d.kill()
            ns.close()


def tmux(*args):
    return subprocess.run(["tmux", "-L", "pginval-test"] + list(args),
                          capture_output=True, text=True)


def test_tail_in_a_terminal():
    sub = REDIS.subscribe("pginval")
    with pginval_proc.running(PG, REDIS, sub) as d:
        tmux("kill-server")
        r = tmux("new-session", "-d", "-x", "160", "-y", "40",
                 "%s tail -c %s; sleep 30" % (BIN, d.config))
        eq(r.returncode, 0, r.stderr)
        try:
            wait_for(lambda: "subscribed to" in tmux("capture-pane", "-p").stdout,
                     "tail to subscribe")
            sql("INSERT INTO users VALUES (7, 'seven@x', 'n')")
            sql("TRUNCATE users")
            wait_for(lambda: re.search(r"truncate +public\.users", tmux(
                "capture-pane", "-p").stdout), "the truncate first")
            # A message from elsewhere with a seq gap stands out.
            REDIS.command("PUBLISH", "pginval", json.dumps({
                "v": 1, "seq": 99, "epoch": "x", "op": "insert",
                "table": "public.users", "keys": ["k"], "ts": 0}))
            REDIS.command("PUBLISH", "pginval", json.dumps({
                "v": 1, "seq": 101, "epoch": "x", "op": "insert",
                "table": "public.users", "keys": ["k"], "ts": 0}))
            screen = wait_for(
                lambda: (lambda s: s if "gap: expected seq 100, got 101" in s
                         else None)(tmux("capture-pane", "-p").stdout),
                "the gap to show")
            assert re.search(r"insert +public\.users +user:7 user:email:seven@x",
                             screen), screen
            assert re.search(r"truncate +public\.users", screen), screen
            colored = tmux("capture-pane", "-p", "-e").stdout
            assert "\x1b[" in colored, "colours on a terminal"
            tmux("send-keys", "C-c")
            screen = wait_for(
                lambda: (lambda s: s if "gaps" in s else None)(
                    tmux("capture-pane", "-p").stdout), "the summary")
            assert re.search(r"4 messages \(4 shown\), 1 resets or truncates, "
                             r"2 gaps", screen), screen
        finally:
            tmux("kill-server")


def lines_of(p):
    """The lines p prints, as a list that a thread fills until EOF."""
    lines = []

    def read():
        for line in p.stdout:
            lines.append(line)
    threading.Thread(target=read, daemon=True).start()
    return lines


def test_tail_filters():
    # public.other: what the table filter lets through, as a sentinel.
    sql("CREATE TABLE IF NOT EXISTS other (id int PRIMARY KEY);"
        "SELECT pginval.watch('other');")
    sub = REDIS.subscribe("pginval")
    with pginval_proc.running(PG, REDIS, sub) as d:
        procs = {
            "table": subprocess.Popen([BIN, "tail", "-c", d.config, "--json",
                                       "--table", "public.other"],
                                      stdout=subprocess.PIPE, text=True),
            "key": subprocess.Popen([BIN, "tail", "--url", REDIS.url,
                                     "--json", "--key", "user:email:*@keep"],
                                    stdout=subprocess.PIPE, text=True),
        }
        out = {name: lines_of(p) for name, p in procs.items()}
        wait_for(lambda: REDIS.command("PUBSUB", "NUMSUB", "pginval")[1]
                 >= 3, "both tails subscribed")
        sql("INSERT INTO users VALUES (1, 'a@drop', 'n')")
        sql("INSERT INTO users VALUES (2, 'b@keep', 'n')")
        # Sentinels, one that each filter lets through: once a tail has
        # printed its own, it has seen every message before it.
        sql("INSERT INTO other VALUES (1)")
        sql("INSERT INTO users VALUES (3, 'z@keep', 'n')")
        msgs(sub, 4)
        wait_for(lambda: out["table"] and out["key"] and
                 '"user:3"' in out["key"][-1], "each tail's sentinel")
        for name, p in procs.items():
            p.send_signal(signal.SIGINT)
            p.wait(timeout=5)
        sql("DELETE FROM users; DELETE FROM other")
    eq([json.loads(line)["table"] for line in out["table"]],
       ["public.other"], "only messages about public.other")
    eq([json.loads(line)["keys"] for line in out["key"]],
       [["user:2", "user:email:b@keep"], ["user:3", "user:email:z@keep"]])


def test_reload_keeps_connections():
    sub = REDIS.subscribe("pginval")
    with pginval_proc.running(PG, REDIS, sub) as d:
        pid = sql("SELECT pid FROM pg_stat_activity "
                  "WHERE application_name = 'pginval'").strip()
        clients = [c for c in REDIS.command("CLIENT", "LIST").decode()
                   .splitlines() if " name=pginval " in c]
        eq(len(clients), 1, "one named Redis connection")
        d.write_config(tables={"public.users": "u:{id}"},
                       extra={"redis.channel": "other"})
        sub2 = REDIS.subscribe("other")
        d.signal(signal.SIGHUP)
        d.wait_log("reload: configuration applied")
        sql("INSERT INTO users VALUES (3, 'c@x', 'n')")
        m = next_msg(sub2)
        eq(m["keys"], ["u:3"])
        eq(sql("SELECT pid FROM pg_stat_activity "
               "WHERE application_name = 'pginval'").strip(), pid,
           "same PostgreSQL backend")
        eq([c.split()[0] for c in REDIS.command("CLIENT", "LIST").decode()
            .splitlines() if " name=pginval " in c],
           [c.split()[0] for c in clients], "same Redis connection")
        sql("DELETE FROM users")
        next_msg(sub2)


def test_reload_moves_to_another_redis():
    with Redis() as other:
        sub = REDIS.subscribe("pginval")
        with pginval_proc.running(PG, REDIS, sub) as d:
            sub2 = other.subscribe("pginval")
            d.write_config(redis_url=other.url + "/0")
            d.signal(signal.SIGHUP)
            d.wait_log("reload: Redis settings changed")
            d.wait_log("redis: connected to 127.0.0.1:%d" % other.port)
            sql("INSERT INTO users VALUES (4, 'd@x', 'n')")
            # The start reset may still have been in flight at the reload:
            # then it is sent again, to the new server, before the insert.
            m = next_msg(sub2)
            if m["op"] == "reset":
                m = next_msg(sub2)
            eq(m["keys"], ["user:4", "user:email:d@x"])
            assert m["seq"] in (2, 3), "the sequence continues: %r" % m
            sql("DELETE FROM users")
            next_msg(sub2)


def check_connect(config):
    r = run_bin("check", "--connect", "-c", config)
    return r.returncode, r.stdout + r.stderr


def test_check_connect():
    d = pginval_proc.Daemon(PG, REDIS, tables={
        "public.users": "user:{id}, user:email:{email}"})
    code, out = check_connect(d.config)
    eq(code, 0, out)
    assert "ok: public.users is watched with {id,email}" in out, out
    assert "0 problems found" in out, out

    sql("CREATE TABLE IF NOT EXISTS plain (id int PRIMARY KEY, slug text);"
        "CREATE TABLE IF NOT EXISTS narrow (id int PRIMARY KEY, slug text);"
        "SELECT pginval.watch('narrow');"
        "CREATE TABLE IF NOT EXISTS elsewhere (id int PRIMARY KEY);"
        "SELECT pginval.watch('elsewhere', NULL, 'bus');")
    d.write_config(tables={"public.plain": "p:{id}",
                           "public.narrow": "n:{id}:{slug}",
                           "public.elsewhere": "e:{id}"})
    code, out = check_connect(d.config)
    eq(code, 1, out)
    for want in [
            "problem: [table public.plain] (line 9) is not watched; fix: "
            "SELECT pginval.watch('public.plain', ARRAY['id']);",
            "problem: [table public.narrow] keys need column(s) slug, which "
            "the triggers do not send (watched: {id}); fix: SELECT "
            "pginval.watch('public.narrow', ARRAY['id', 'slug']);",
            "problem: [table public.elsewhere] notifies channel \"bus\" but "
            "[postgres] channel is \"pginval\"",
            "3 problems found"]:
        assert want in out, "%r not in:\n%s" % (want, out)

    PG.create_database("bare")
    bare = pginval_proc.Daemon(PG, REDIS,
                               redis_url="redis://127.0.0.1:%d" % free_port())
    with open(bare.config) as f:
        text = f.read().replace("dbname=postgres", "dbname=bare")
    with open(bare.config, "w") as f:
        f.write(text)
    code, out = check_connect(bare.config)
    eq(code, 1, out)
    assert "the pginval SQL API is not installed in database bare" in out, out
    assert "fix: psql -v ON_ERROR_STOP=1 -f share/pginval/pginval.sql" in out
    assert "problem: redis: cannot connect to 127.0.0.1:" in out, out


def test_check_connect_reports_apply_targets():
    """Each [target NAME] of apply is checked as [redis] is, under its
    name: a master that is up passes; a replica, a refused password and
    a Redis that is not there are problems; no password is shown."""
    pw = "t4rget-pw"
    with Redis(password=pw) as master, \
            Redis(password=pw, extra_args=[
                "--replicaof", "127.0.0.1", str(master.port)]) as replica:
        up = {"target up.url": master.url + "/2"}
        d = pginval_proc.Daemon(PG, REDIS, extra=up)
        code, out = check_connect(d.config)
        eq(code, 0, out)
        for want in ["\n[target up]\n",
                     "ok: target up: redis %s is a master" % master.addr,
                     "ok: target up: connected to redis %s, database 2"
                     % master.addr,
                     "0 problems found"]:
            assert want in out, "%r not in:\n%s" % (want, out)

        gone = free_port()
        d.write_config(extra=dict(up, **{
            "target rep.url": replica.url + "/0",
            "target badpw.url": "redis://:n0t-the-pw@%s/0" % master.addr,
            "target gone.url": "redis://127.0.0.1:%d/0" % gone}))
        code, out = check_connect(d.config)
        eq(code, 1, out)
        for want in [
                "ok: target up: connected to redis %s, database 2"
                % master.addr,
                "\n[target rep]\nproblem: target rep: %s is a replica, not "
                "a master: pginval apply writes only to a master; fix "
                "[target rep] url" % replica.addr,
                "\n[target badpw]\nproblem: target badpw: AUTH failed on "
                "%s: WRONGPASS" % master.addr,
                "\n[target gone]\nproblem: target gone: cannot connect to "
                "127.0.0.1:%d: Connection refused; fix [target gone] url"
                % gone,
                "3 problems found"]:
            assert want in out, "%r not in:\n%s" % (want, out)
        # The channel is [redis]'s: a target is not asked to PUBLISH.
        stats = master.command("INFO", "commandstats").decode()
        assert "cmdstat_role:" in stats, stats
        assert "cmdstat_publish:" not in stats, stats
        for secret in (pw, "n0t-the-pw"):
            assert secret not in out, "%s shown:\n%s" % (secret, out)


def write_secret(d, name, text, mode=0o600):
    path = os.path.join(d.dir, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, mode)
    return path


def test_secrets_redis_acl_and_postgres_password_file():
    with Redis() as redis:
        redis.command("ACL", "SETUSER", "pgi", "on", ">s3cr3t-redis", "~*",
                      "&*", "+@all")
        redis.command("ACL", "SETUSER", "default", "off")
        sql("DO $$ BEGIN CREATE ROLE pgi LOGIN SUPERUSER PASSWORD "
            "'s3cr3t-pg'; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        hba = os.path.join(PG.datadir, "pg_hba.conf")
        with open(hba) as f:
            rules = f.read()
        with open(hba, "w") as f:
            f.write("host all pgi 127.0.0.1/32 scram-sha-256\n" + rules)
        sql("SELECT pg_reload_conf()")

        class AsPgi:
            conninfo = PG.conninfo.replace("user=postgres", "user=pgi")

        d = pginval_proc.Daemon(AsPgi, redis,
                                redis_url="redis://pgi:@127.0.0.1:%d/0"
                                % redis.port)
        with open(d.config, "a") as f:
            f.write("[postgres]\npassword_file = %s\n" % write_secret(
                d, "pg.pw", "s3cr3t-pg"))
        env_d = dict(os.environ, PGINVAL_REDIS_PASSWORD="s3cr3t-redis")
        r = run_bin("check", "--connect", "-c", d.config, env=env_d)
        eq(r.returncode, 0, r.stdout + r.stderr)
        assert "warning" not in r.stderr, r.stderr
        # The Redis password from the environment; PostgreSQL's from a file.
        d.env = {"PGINVAL_REDIS_PASSWORD": "s3cr3t-redis"}
        d.start()
        try:
            d.wait_log("redis: connected to")
            d.wait_log("postgres: listening")
        finally:
            d.stop()
        # A wrong password is refused, and said so.
        d.env = {"PGINVAL_REDIS_PASSWORD": "wrong"}
        d.start()
        try:
            d.wait_log("redis: AUTH failed on 127.0.0.1:%d: WRONGPASS"
                       % redis.port)
        finally:
            d.stop()
        log = d.log_text()
        for secret in ("s3cr3t-pg", "s3cr3t-redis", "wrong"):
            assert secret not in log, "%s leaked into the log" % secret

        # A password inside a world-readable file earns a warning.
        d.write_config(redis_url="redis://pgi:s3cr3t-redis@127.0.0.1:%d/0"
                       % redis.port)
        os.chmod(d.config, 0o644)
        r = run_bin("check", "-c", d.config)
        assert "warning: the file holds a password and every user can " \
            "read it" in r.stderr, r.stderr
        os.chmod(d.config, 0o640)
        assert "warning" not in run_bin("check", "-c", d.config).stderr
        with open(hba, "w") as f:
            f.write(rules)
        sql("SELECT pg_reload_conf()")


if __name__ == "__main__":
    sys.exit(pginval_proc.main(globals()))
