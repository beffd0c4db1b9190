#!/usr/bin/env python3
"""Fault suite: every invalidation is either delivered or announced.

Each scenario runs the daemon under a steady write load (one insert into
`items` every few milliseconds, from a psql session of its own), injects a
fault, heals it, lets the pipeline drain, and then counts:

  expected   rows committed (read back from the table: the truth)
  delivered  rows whose invalidation a subscriber received
  resets     resets, sequence gaps and subscriber reconnects it saw
  worst      the longest time from a row change to its delivery

and asserts:

  notify mode:  every lost row is covered: after it was committed, and
                before the subscriber received any later ordinary message,
                the subscriber saw a reset (or a gap, or its own
                reconnect, which the message contract treats as a reset);
  durable and wal modes: pginval loses nothing. The only rows a subscriber may miss
                are those published while it was itself disconnected from
                Redis (pub/sub keeps nothing for absent subscribers), and
                its own reconnect covers them; no reset is needed.

    python3 tests/faults/run.py [-v] [scenario-substring ...] [--mode=notify|durable|wal]

Ends with a table and one "N passed, M failed" line.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import pginval_proc  # noqa: E402
from proxy import Proxy  # noqa: E402
from servers import Postgres, Redis, RespConnection  # noqa: E402

# Inserts per second, and seconds of load before and after each fault;
# FAULTS_RATE and FAULTS_STEADY make a longer run.
RATE = float(os.environ.get("FAULTS_RATE", 150))
STEADY = float(os.environ.get("FAULTS_STEADY", 2.0))


class Writer(threading.Thread):
    """Inserts rows at a steady rate through one psql session, restarting
    it when the server goes away. What committed is read back later."""

    def __init__(self, pg):
        super().__init__(daemon=True)
        self.pg = pg
        self.stop = False
        self.next_id = 1

    def _spawn(self):
        return subprocess.Popen(
            ["psql", "-X", "-q", "-h", self.pg.host, "-p", str(self.pg.port),
             "-U", self.pg.user, "-d", self.pg.dbname],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, text=True)

    def run(self):
        psql = self._spawn()
        while not self.stop:
            try:
                psql.stdin.write("INSERT INTO items (id) VALUES (%d);\n"
                                 % self.next_id)
                psql.stdin.flush()
            except (BrokenPipeError, OSError):
                psql.wait()
                time.sleep(0.2)
                psql = self._spawn()
                continue
            self.next_id += 1
            time.sleep(1.0 / RATE)
        try:
            psql.stdin.close()
        except OSError:
            pass
        psql.wait(timeout=30)


class Subscriber(threading.Thread):
    """Records every message with its arrival time, and every reconnect."""

    def __init__(self, redis):
        super().__init__(daemon=True)
        self.redis = redis
        self.stop = False
        self.log = []           # ("msg", dict, t) or ("reconnect", None, t)
        self.ready = threading.Event()

    def run(self):
        first = True
        while not self.stop:
            try:
                sub = self.redis.subscribe("pginval", timeout=1)
            except (OSError, Exception):
                time.sleep(0.1)
                continue
            if not first:
                self.log.append(("reconnect", None, time.time()))
            first = False
            self.ready.set()
            try:
                while not self.stop:
                    raw = sub.get(0.2)
                    if raw is not None:
                        self.log.append(("msg", json.loads(raw), time.time()))
            except (OSError, ConnectionError, Exception):
                pass
            finally:
                sub.close()


def message_time(m, committed):
    """When the newest change in m happened. A message that merged several
    changes carries the earliest "ts"; its rows tell the rest."""
    ats = [committed.get(int(r["new"]["id"]), 0)
           for r in pginval_proc.rows_of(m) if "new" in r]
    return max(ats + [m["ts"]])


def covering_events(log, committed, own_reconnects_only=False):
    """The subscriber's view: ordinary messages, and the moments it must
    drop everything (reset/truncate, a seq gap, its own reconnect)."""
    out = []                    # (kind, ts_us, payload)
    epoch, seq = None, None
    for kind, m, t in log:
        if kind == "reconnect":
            out.append(("cover", t * 1e6, None))
            epoch = None
            continue
        if own_reconnects_only:
            out.append(("msg", message_time(m, committed), m))
            continue
        gap = (m["seq"] != seq + 1) if m["epoch"] == epoch else \
            (epoch is not None and m["seq"] != 1)
        if epoch is None and m["seq"] != 1 and out:
            gap = True
        epoch, seq = m["epoch"], m["seq"]
        if gap:
            out.append(("cover", m["ts"], None))
        if m["op"] in ("reset", "truncate"):
            out.append(("cover", m["ts"], None))
        else:
            out.append(("msg", message_time(m, committed), m))
    return out


def analyse(pg, sub, mode):
    rows = pg.psql("SELECT id, at FROM items ORDER BY id")
    committed = {int(i): int(a) for i, a in
                 (line.split("|") for line in rows.splitlines() if line)}
    first_seen = {}
    resets = 0
    for kind, m, t in sub.log:
        if kind == "reconnect":
            resets += 1
            continue
        if m["op"] in ("reset", "truncate"):
            resets += 1
            continue
        for r in pginval_proc.rows_of(m):
            if r["table"] == "public.items" and "new" in r:
                first_seen.setdefault(int(r["new"]["id"]), t)
    delivered = set(first_seen) & set(committed)
    lost = sorted(set(committed) - delivered)
    worst = max([first_seen[i] - committed[i] / 1e6 for i in delivered] or [0])
    uncovered = []
    if lost:
        # Durable mode must not need the daemon's resets at all: the only
        # loss allowed is pub/sub's, to a subscriber that was away, which
        # its own reconnect covers.
        events = covering_events(sub.log, committed, mode != "notify")
        for i in lost:
            at = committed[i]
            covered = False
            for kind, ts, _ in events:
                if kind == "msg" and ts > at:
                    break               # an ordinary message came first
                if kind == "cover" and ts >= at:
                    covered = True
                    break
            if not covered:
                uncovered.append(i)
    ok = not uncovered
    return {"expected": len(committed), "delivered": len(delivered),
            "lost": len(lost), "uncovered": len(uncovered), "resets": resets,
            "worst": worst, "ok": ok,
            "detail": "lost %s" % lost[:10] if not ok else ""}


class Env:
    """Servers, proxies in front of them, and the daemon's settings."""

    def __init__(self, pg, redis):
        self.pg, self.redis = pg, redis
        self.pg_proxy = Proxy(pg.host, pg.port)
        self.redis_proxy = Proxy(redis.host, redis.port)

    def daemon(self, mode):
        class ProxiedPg:
            conninfo = "host=127.0.0.1 port=%d dbname=%s user=%s" % (
                self.pg_proxy.port, self.pg.dbname, self.pg.user)
        return pginval_proc.Daemon(
            ProxiedPg, self.redis,
            tables={"public.items": "item:{id}"},
            redis_url="redis://127.0.0.1:%d/0" % self.redis_proxy.port,
            extra={"daemon.health_interval": "1", "redis.command_timeout": "2",
                   "postgres.connect_timeout": "2",
                   "redis.connect_timeout": "2",
                   "daemon.reconnect_max": "0.5", "daemon.log_level": "info",
                   "outbox.enabled": "on" if mode == "durable" else "off",
                   "outbox.poll_interval": "0.5"})


def restart_daemon(env, state):
    state["daemon"].proc.send_signal(signal.SIGKILL)
    state["daemon"].proc.wait()
    time.sleep(1.5)
    state["daemon"].start()


def freeze_redis(env, state):
    os.kill(env.redis.proc.pid, signal.SIGSTOP)
    time.sleep(10)
    os.kill(env.redis.proc.pid, signal.SIGCONT)


def terminate_backends(env, state):
    env.pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'pginval'")


def blackhole(proxy_name, seconds=6):
    def fault(env, state):
        proxy = getattr(env, proxy_name)
        proxy.blackhole()
        time.sleep(seconds)
        proxy.heal()
    return fault


SCENARIOS = [
    ("redis restart", lambda env, st: env.redis.restart()),
    ("redis frozen 10s", freeze_redis),
    ("pg_terminate_backend", terminate_backends),
    ("postgres fast restart", lambda env, st: env.pg.restart("fast")),
    ("postgres immediate restart",
     lambda env, st: env.pg.restart("immediate")),
    ("daemon SIGKILL + restart", restart_daemon),
    ("redis black hole 6s", blackhole("redis_proxy")),
    ("postgres black hole 6s", blackhole("pg_proxy")),
]


def run_scenario(env, name, fault, mode):
    pg = env.pg
    pg.psql("SELECT pginval.watch('items', NULL, 'pginval', '%s');"
            "TRUNCATE items; DELETE FROM pginval.outbox;" % mode)
    sub = Subscriber(env.redis)
    sub.start()
    sub.ready.wait(10)
    state = {"daemon": env.daemon(mode)}
    state["daemon"].start()
    time.sleep(1.0)
    writer = Writer(pg)
    writer.start()
    time.sleep(STEADY)
    fault(env, state)
    time.sleep(STEADY)
    writer.stop = True
    writer.join(60)
    # Drain: until everything committed arrived, or the channel has been
    # quiet for 3 s with nothing left in the outbox; at most 30 s.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        result = analyse(pg, sub, mode)
        quiet = sub.log and time.time() - sub.log[-1][2] > 3
        if result["lost"] == 0 or (quiet and pg.psql(
                "SELECT count(*) FROM pginval.outbox").strip() == "0"):
            break
        time.sleep(0.5)
    sub.stop = True
    sub.join(5)
    state["daemon"].stop()
    result = analyse(pg, sub, mode)
    if not result["ok"]:
        result["detail"] += "\n--- daemon log ---\n" + \
            state["daemon"].log_text()[-4000:]
    return result


def main(argv):
    verbose = "-v" in argv
    modes = ["notify", "durable", "wal"]
    for a in argv:
        if a.startswith("--mode="):
            modes = [a.split("=", 1)[1]]
    wanted = [a for a in argv if not a.startswith("-")]
    results = []
    with Postgres(settings={"wal_level": "logical"}) as pg, \
            Redis() as redis:
        pg.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
        pg.psql("CREATE TABLE items (id bigint PRIMARY KEY, at bigint NOT NULL "
                "DEFAULT (extract(epoch FROM clock_timestamp()) * 1000000)"
                "::bigint)")
        env = Env(pg, redis)
        try:
            for mode in modes:
                for name, fault in SCENARIOS:
                    if wanted and not any(w in name for w in wanted):
                        continue
                    t0 = time.monotonic()
                    r = run_scenario(env, name, fault, mode)
                    r.update(name=name, mode=mode,
                             secs=time.monotonic() - t0)
                    results.append(r)
                    if verbose or not r["ok"]:
                        print("%s %s/%s (%.0fs) %s" % (
                            "ok  " if r["ok"] else "FAIL", mode, name,
                            r["secs"], r["detail"]))
                    sys.stdout.flush()
        finally:
            env.pg_proxy.close()
            env.redis_proxy.close()
    print("\n%-28s %-8s %8s %9s %5s %7s %9s  %s" % (
        "scenario", "mode", "expected", "delivered", "lost", "resets",
        "worst", "verdict"))
    for r in results:
        print("%-28s %-8s %8d %9d %5d %7d %8.2fs  %s" % (
            r["name"], r["mode"], r["expected"], r["delivered"], r["lost"],
            r["resets"], r["worst"], "ok" if r["ok"] else
            "FAIL (%d uncovered)" % r["uncovered"]))
    passed = sum(1 for r in results if r["ok"])
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
