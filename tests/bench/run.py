#!/usr/bin/env python3
"""pginval benchmarks: every pginval figure beside a reference measured in
the same run. `make bench` builds the binaries and runs this.

    python3 tests/bench/run.py [scenario ...]
        # write trust walwrite drain latency bulk fanin stream waldrain
        # wallatency fanout applyrate rowdrain invalidate

Environment: BENCH_N (drain rows, 200000), BENCH_BULK (bulk rows,
1000000), BENCH_RUNS (repetitions, 3), BENCH_RATE (latency tps, 2000),
BENCH_LATENCY_T (seconds, 10), BENCH_WRITE_T (seconds per write-path cell,
8), BENCH_FANIN_T (seconds, 8), BENCH_WALWRITE_T (seconds per cell of the
wal write path, 4), BENCH_WALWRITE_RUNS (its repetitions, 3),
BENCH_FANOUT_N (messages per fan-out run, 100000), BENCH_APPLY_N (keys
invalidated per apply run, 200000), BENCH_INVALIDATE_N (rows of the
invalidate UPDATE, 500000), BENCH_PGINVAL (the binary, ./pginval).

Prints a table on stdout and writes the same figures, with every run's raw
values, to tests/bench/out/results.json. Figures are measurements on the
machine at hand, not assertions: nothing here fails because a number is
low. See tests/bench/README.md.
"""

import binascii
import fcntl
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from servers import Postgres, Redis, Subscriber  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "tests", "recipes"))
from cache_aside import marker_key  # noqa: E402

OUT = os.path.join(HERE, "out")
PGINVAL = os.environ.get("BENCH_PGINVAL") or os.path.join(ROOT, "pginval")
REFRELAY = os.path.join(HERE, "refrelay")
SUB = os.path.join(HERE, "sub")


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


N = env_int("BENCH_N", 200000)
FANOUT_N = env_int("BENCH_FANOUT_N", 100000)
BULK = env_int("BENCH_BULK", 1000000)
RUNS = max(1, env_int("BENCH_RUNS", 3))
RATE = env_int("BENCH_RATE", 2000)
LATENCY_T = env_int("BENCH_LATENCY_T", 10)
WRITE_T = env_int("BENCH_WRITE_T", 8)
FANIN_T = env_int("BENCH_FANIN_T", 8)
WALWRITE_T = env_int("BENCH_WALWRITE_T", 4)
WALWRITE_RUNS = max(1, env_int("BENCH_WALWRITE_RUNS", 3))
FANIN_TABLES = 8
FANIN_CLIENTS = 64
LATENCY_ROWS = 100000
WRITE_ROWS = 100000
PG_CHANNEL = "pginval"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# What pginval publishes for one row of bench_a, for the subscriber check.
SAMPLE_MESSAGE = ('{"v":1,"seq":100000,"epoch":"%s","op":"update",'
                  '"table":"public.bench_a","keys":["bench:100000"],'
                  '"ts":1700000000000000,"old":{"id":"100000"},'
                  '"new":{"id":"100000"}}' % ("0" * 32))

_children = []


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def spawn(argv, **kw):
    proc = subprocess.Popen(argv, **kw)
    _children.append(proc)
    return proc


def reap(proc, timeout=15):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in _children:
        _children.remove(proc)


def kill_children():
    for proc in list(_children):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def readline(proc, timeout):
    """The next line of a child's stdout, or None after ``timeout``."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        return None
    line = proc.stdout.readline()
    return line.rstrip("\n") if line else None


def proc_cpu(pid):
    """CPU seconds (user + system) a live process has used: the on-CPU time
    of /proc/PID/schedstat, in nanoseconds, where the kernel keeps it; else
    utime + stime of /proc/PID/stat, in clock ticks (10 ms)."""
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_user_share(pid):
    """The part of a process's CPU time spent in user mode, from the clock
    ticks of /proc/PID/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])
    return user / (user + system) if user + system else None


def proc_hwm_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def pg_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def now_us_sql():
    return "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;"


# --------------------------------------------------------------------------
# Relays and the subscriber
# --------------------------------------------------------------------------

class PginvalRelay:
    name = "pginval"
    channel = "bench.pginval"

    def __init__(self, pg, redis, tables, stream=None, name=None,
                 outbox=False, sd_ready=False):
        self.pg, self.redis, self.tables = pg, redis, tables
        self.stream = stream        # [redis] stream, or None
        self.name = name or self.name
        self.outbox = outbox        # [outbox] enabled, polled every 5 ms
        # Wait for READY=1 on NOTIFY_SOCKET, not for the start reset: a
        # daemon whose tables are all durable, poll or wal sends none.
        self.sd_ready = sd_ready
        self.proc = self.sock = None

    def write_conf(self):
        conf = os.path.join(OUT, "pginval.conf")
        lines = ["# written by tests/bench/run.py", "[postgres]",
                 "conninfo = %s application_name=%s"
                 % (self.pg.conninfo, DAEMON_APP),
                 "channel = " + PG_CHANNEL, "", "[redis]",
                 "url = %s/0" % self.redis.url, "channel = " + self.channel,
                 "stream = " + self.stream if self.stream else "",
                 "", "[daemon]", "log_level = warn"]
        if self.outbox:
            lines += ["", "[outbox]", "enabled = on", "poll_interval = 0.005"]
        for table, keys in self.tables.items():
            lines += ["", "[table %s]" % table, "keys = " + keys]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return conf

    def start(self, tag):
        conf = self.write_conf()
        logfile = open(os.path.join(OUT, "pginval-%s.log" % tag), "ab")
        if self.sd_ready:
            self.proc, self.sock = spawn_ready(
                [PGINVAL, "run", "-c", conf], logfile,
                "pginval (see %s)" % conf)
            return self
        # The start reset tells that both connections are up.
        with Subscriber(self.redis.host, self.redis.port, self.channel) as s:
            self.proc = spawn([PGINVAL, "run", "-c", conf],
                              stdin=subprocess.DEVNULL, stdout=logfile,
                              stderr=logfile)
            logfile.close()
            first = s.get(timeout=15)
        if first is None or b'"op":"reset"' not in first:
            raise RuntimeError("pginval did not start; see %s" % conf)
        return self

    def stop(self):
        reap(self.proc)
        if self.sock is not None:
            close_socket(self.sock)
            self.sock = None


def spawn_ready(argv, logfile, what, timeout=30):
    """Starts a daemon with NOTIFY_SOCKET set and waits for its READY=1.
    Returns the process and the socket, which stays open for the daemon's
    later status lines until the caller closes it."""
    path = os.path.join(OUT, "notify.sock")
    if os.path.exists(path):
        os.remove(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    proc = spawn(argv, stdin=subprocess.DEVNULL, stdout=logfile,
                 stderr=logfile, env=env)
    logfile.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([sock], [], [], 0.2)
        if ready and b"READY=1" in sock.recv(4096):
            return proc, sock
    reap(proc)
    close_socket(sock)
    raise RuntimeError("%s did not become ready" % what)


def close_socket(sock):
    path = sock.getsockname()
    sock.close()
    os.remove(path)


class RefRelay:
    name = "reference"
    channel = "bench.ref"

    def __init__(self, pg, redis, tables=None):
        self.pg, self.redis = pg, redis
        self.proc = None

    def start(self, tag):
        self.proc = spawn([REFRELAY, self.pg.conninfo, PG_CHANNEL,
                           self.redis.host, str(self.redis.port),
                           self.channel], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, text=True)
        if readline(self.proc, 15) != "listening":
            raise RuntimeError("refrelay did not start")
        return self

    def stop(self):
        reap(self.proc)


class Sub:
    """The C subscriber: counts, bytes, keys and latencies of a channel."""

    def __init__(self, redis, channel, count=0, idle=0, timeout=0,
                 latency=False):
        argv = [SUB, redis.host, str(redis.port), channel]
        if count:
            argv += ["-n", str(count)]
        if idle:
            argv += ["-i", str(idle)]
        if timeout:
            argv += ["-t", str(timeout)]
        if latency:
            argv.append("-l")
        self.proc = spawn(argv, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, text=True)
        if readline(self.proc, 10) != "ready":
            raise RuntimeError("subscriber did not start")

    def result(self, timeout):
        line = readline(self.proc, timeout)
        if line is None:
            self.proc.send_signal(signal.SIGTERM)
            line = readline(self.proc, 10)
        reap(self.proc)
        return json.loads(line)


def relay_pair(pg, redis, tables):
    return [PginvalRelay(pg, redis, tables), RefRelay(pg, redis)]


class PyRelay:
    """tests/bench/pyrelay.py: psycopg2 and redis-py, parses the payloads
    and renders the same keys, verifies nothing. Drain and bulk only."""
    name = "python"
    channel = "bench.py"

    def __init__(self, pg, redis, tables):
        self.pg, self.redis, self.tables = pg, redis, tables
        self.proc = None

    def start(self, tag):
        py = psycopg2_python()
        self.proc = spawn([py, os.path.join(HERE, "pyrelay.py"),
                           self.pg.conninfo, PG_CHANNEL, self.redis.host,
                           str(self.redis.port), self.channel]
                          + ["%s=%s" % kv for kv in self.tables.items()],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          text=True)
        if readline(self.proc, 15) != "listening":
            raise RuntimeError("pyrelay.py did not start (Debian: "
                               "python3-psycopg2, python3-redis)")
        return self

    def stop(self):
        reap(self.proc)


def relay_trio(pg, redis, tables):
    return relay_pair(pg, redis, tables) + [PyRelay(pg, redis, tables)]


def stream_pair(pg, redis, tables):
    """pginval with [redis] stream, against pginval without it."""
    return [PginvalRelay(pg, redis, tables, stream=STREAM_KEY),
            PginvalRelay(pg, redis, tables, name="reference")]


def per_million(cpu, events):
    return cpu / events * 1e6 if events else None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs):
    """Median of every numeric field over the runs."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {k: median([r.get(k) for r in runs]) for k in keys}


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------

def setup_relay_db(pg, rows):
    pg.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    sql = ["CREATE TABLE bench_a (id int PRIMARY KEY, v int NOT NULL "
           "DEFAULT 0, pad text);",
           "INSERT INTO bench_a SELECT g, 0, md5(g::text) "
           "FROM generate_series(1, %d) g;" % rows,
           "SELECT pginval.watch('public.bench_a', ARRAY['id']);"]
    for i in range(1, FANIN_TABLES + 1):
        sql += ["CREATE TABLE fan_%d (id int PRIMARY KEY, a int, b int, "
                "v int NOT NULL DEFAULT 0);" % i,
                "INSERT INTO fan_%d SELECT g, g %% 1000, g %% 97, 0 "
                "FROM generate_series(1, 10000) g;" % i,
                "SELECT pginval.watch('public.fan_%d', "
                "ARRAY['id', 'a', 'b']);" % i]
    pg.psql("\n".join(sql))
    pg.psql("VACUUM ANALYZE")
    tables = {"public.bench_a": "bench:{id}"}
    for i in range(1, FANIN_TABLES + 1):
        tables["public.fan_%d" % i] = ("fan%d:{id}, fan%d:a:{a}, fan%d:b:{b}"
                                       % (i, i, i))
    return tables


def big_update(pg, redis, relay, rows, tag, update=None):
    """One UPDATE of ``rows`` rows committed at once, with the relay
    running; times from COMMIT to the last message received."""
    pg.psql("VACUUM bench_a")
    relay.start(tag)
    try:
        sub = Sub(redis, relay.channel, count=rows, idle=15,
                  timeout=60 + rows / 5000)
        cpu0 = proc_cpu(relay.proc.pid)
        out = pg.psql("BEGIN;\n%s\n"
                      "%s\n%s\nCOMMIT;\n%s"
                      % (now_us_sql(), (update or "UPDATE bench_a SET v = v "
                                        "+ 1 WHERE id <= %d;") % rows,
                         now_us_sql(), now_us_sql()))
        update_start, commit_start, commit_end = [int(x) for x in out.split()]
        res = sub.result(timeout=60 + rows / 5000)
        cpu = proc_cpu(relay.proc.pid) - cpu0
        hwm = proc_hwm_mb(relay.proc.pid)
        user_share = proc_user_share(relay.proc.pid)
    finally:
        relay.stop()
    took = (res["last_us"] - commit_start) / 1e6 if res["msgs"] else None
    delivery = (res["last_us"] - res["first_us"]) / 1e6 if res["msgs"] else 0
    return {
        "events": res["events"], "msgs": res["msgs"], "resets": res["resets"],
        "payload_bytes": res["bytes"], "payload_mb": res["bytes"] / 1e6,
        "keys": res["keys"],
        "update_s": (commit_start - update_start) / 1e6,
        "commit_s": (commit_end - commit_start) / 1e6,
        "first_msg_s": ((res["first_us"] - commit_start) / 1e6
                        if res["msgs"] else None),
        "commit_to_last_s": took,
        "events_per_s": res["events"] / took if took else None,
        "cpu_s": cpu,
        "cpu_s_per_m": per_million(cpu, res["events"]),
        "peak_rss_mb": hwm,
        "cpu_user_share": user_share,
        # Meaningful only over a delivery long enough to dwarf the
        # subscriber's own start.
        "sub_cpu_share": res["cpu_s"] / delivery if delivery >= 0.1 else None,
    }


def scenario_drain(pg, redis, tables, rows, label, pair=relay_pair,
                   update=None):
    out = {}
    for rep in range(RUNS):
        for relay in pair(pg, redis, tables):
            r = big_update(pg, redis, relay, rows, label, update)
            if getattr(relay, "stream", None):
                r["stream_len"] = redis.command("XLEN", relay.stream)
                r["stream_mb"] = redis.command(
                    "MEMORY", "USAGE", relay.stream, "SAMPLES", "0") / 1e6
                redis.command("DEL", relay.stream)
            log("%s %s run %d: %d changes (%d messages) in %.3fs, "
                "%.2f CPU s/M, %.1f MB"
                % (label, relay.name, rep + 1, r["events"], r["msgs"],
                   r["commit_to_last_s"] or -1, r["cpu_s_per_m"] or -1,
                   r["peak_rss_mb"] or -1))
            out.setdefault(relay.name, {"runs": []})["runs"].append(r)
    for v in out.values():
        v["median"] = summarize(v["runs"])
    return out


def pgbench(pg, script, clients, seconds, rate=None, threads=None,
            options=None):
    path = os.path.join(OUT, "pgbench-script.sql")
    with open(path, "w") as f:
        f.write(script)
    argv = [os.path.join(pg.bindir, "pgbench"), "-n", "-f", path,
            "-h", pg.host, "-p", str(pg.port), "-U", pg.user,
            "-c", str(clients), "-j", str(threads or min(clients, 2)),
            "-T", str(seconds)]
    if rate:
        argv += ["-R", str(rate)]
    argv.append(pg.dbname)
    env = pg_env()
    if options:
        env["PGOPTIONS"] = options
    proc = subprocess.run(argv, capture_output=True, text=True,
                          env=env, timeout=seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError("pgbench failed:\n" + proc.stdout + proc.stderr)
    tps = float(re.search(r"^tps = ([0-9.]+)", proc.stdout, re.M).group(1))
    txs = int(re.search(r"actually processed: (\d+)", proc.stdout).group(1))
    return tps, txs


def scenario_latency(pg, redis, tables):
    script = ("\\set id random(1, %d)\n"
              "UPDATE bench_a SET v = v + 1 WHERE id = :id;\n"
              % LATENCY_ROWS)
    out = {}
    pg.psql("VACUUM bench_a")
    for rep in range(RUNS):
        for relay in relay_pair(pg, redis, tables):
            relay.start("latency")
            try:
                sub = Sub(redis, relay.channel, idle=1.5,
                          timeout=LATENCY_T + 60, latency=True)
                cpu0 = proc_cpu(relay.proc.pid)
                tps, txs = pgbench(pg, script, 4, LATENCY_T, rate=RATE)
                res = sub.result(timeout=60)
                cpu = proc_cpu(relay.proc.pid) - cpu0
            finally:
                relay.stop()
            lat = res.get("lat", {})
            r = {"pgbench_tps": tps, "transactions": txs,
                 "events": res["events"], "msgs": res["msgs"],
                 "resets": res["resets"],
                 "p50_ms": lat.get("p50", 0) / 1000.0,
                 "p99_ms": lat.get("p99", 0) / 1000.0,
                 "p999_ms": lat.get("p999", 0) / 1000.0,
                 "max_ms": lat.get("max", 0) / 1000.0,
                 "cpu_s_per_m": per_million(cpu, res["events"])}
            log("latency %s run %d: %d changes (%d messages), p50 %.2f "
                "p99 %.2f p99.9 %.2f ms"
                % (relay.name, rep + 1, r["events"], r["msgs"], r["p50_ms"],
                   r["p99_ms"], r["p999_ms"]))
            out.setdefault(relay.name, {"runs": []})["runs"].append(r)
    for v in out.values():
        v["median"] = summarize(v["runs"])
    return out


def scenario_fanin(pg, redis, tables):
    script = ("\\set t random(1, %d)\n\\set id random(1, 10000)\n"
              "UPDATE fan_:t SET v = v + 1 WHERE id = :id;\n" % FANIN_TABLES)
    out = {}
    for rep in range(RUNS):
        for relay in relay_pair(pg, redis, tables):
            pg.psql("VACUUM " + ", ".join("fan_%d" % i for i in
                                          range(1, FANIN_TABLES + 1)))
            relay.start("fanin")
            try:
                sub = Sub(redis, relay.channel, idle=2,
                          timeout=FANIN_T + 120)
                cpu0 = proc_cpu(relay.proc.pid)
                tps, txs = pgbench(pg, script, FANIN_CLIENTS, FANIN_T,
                                   threads=2)
                end_us = time.time() * 1e6
                res = sub.result(timeout=120)
                cpu = proc_cpu(relay.proc.pid) - cpu0
            finally:
                relay.stop()
            span = (res["last_us"] - res["first_us"]) / 1e6
            keys = (res["keys"] if relay.name == "pginval"
                    else res["events"] * 3)
            r = {"pgbench_tps": tps, "transactions": txs,
                 "events": res["events"], "msgs": res["msgs"],
                 "resets": res["resets"], "keys": keys,
                 "events_per_s": res["events"] / span if span > 0 else None,
                 "msgs_per_s": res["msgs"] / span if span > 0 else None,
                 "keys_per_s": keys / span if span > 0 else None,
                 "tail_s": max(0.0, (res["last_us"] - end_us) / 1e6),
                 "cpu_s_per_m": per_million(cpu, res["events"])}
            log("fanin %s run %d: %d tx, %d changes, %d messages, "
                "%.0f changes/s, %.0f keys/s"
                % (relay.name, rep + 1, txs, r["events"], r["msgs"],
                   r["events_per_s"] or 0, r["keys_per_s"] or 0))
            out.setdefault(relay.name, {"runs": []})["runs"].append(r)
    for v in out.values():
        v["median"] = summarize(v["runs"])
    return out


def scenario_write(pgw):
    pgw.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    pgw.psql("CREATE TABLE wp (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, "
             "pad text);\n"
             "INSERT INTO wp SELECT g, 0, md5(g::text) "
             "FROM generate_series(1, %d) g;\nVACUUM ANALYZE wp;" % WRITE_ROWS)
    script = ("\\set id random(1, %d)\n"
              "UPDATE wp SET v = v + 1 WHERE id = :id;\n" % WRITE_ROWS)
    modes = ["unwatched", "notify", "durable", "poll"]
    out = {}
    # initdb --nosync and the load leave dirty pages behind: write them out
    # now, and warm up, so that the first measured run does not pay for it.
    pgw.psql("CHECKPOINT")
    os.sync()
    pgbench(pgw, script, 16, 3)
    for rep in range(RUNS):
        for clients in (1, 16):
            # A different order in each repetition, so that a disk growing
            # slower during the run does not always hit the same mode.
            for mode in modes[rep % 4:] + modes[:rep % 4]:
                if mode == "unwatched":
                    pgw.psql("SELECT pginval.unwatch('public.wp')")
                else:
                    pgw.psql("SELECT pginval.watch('public.wp', "
                             "ARRAY['id'], '%s', '%s')" % (PG_CHANNEL, mode))
                pgw.psql("TRUNCATE pginval.outbox; VACUUM wp; CHECKPOINT;")
                tps, txs = pgbench(pgw, script, clients, WRITE_T)
                key = "%s/%d" % (mode, clients)
                out.setdefault(key, {"runs": []})["runs"].append(
                    {"tps": tps, "transactions": txs})
                log("write %s, %d clients, run %d: %.0f tps"
                    % (mode, clients, rep + 1, tps))
    pgw.psql("SELECT pginval.unwatch('public.wp'); TRUNCATE pginval.outbox;")
    for v in out.values():
        v["median"] = summarize(v["runs"])
    return out


# What the trust measures cost a writer (scenario g): the shipped triggers
# (SECURITY DEFINER with search_path pinned, every payload signed) against
# the same triggers made as they were before them (SECURITY INVOKER, no SET,
# no key, so nothing is signed; the key is still looked up, and found
# missing). One client; commits waiting for the disk, as writers' do, and
# not waiting, so that the trigger's CPU is what differs.
UNHARDEN = ("ALTER FUNCTION pginval.on_statement() SECURITY INVOKER RESET ALL;"
            "ALTER FUNCTION pginval.on_row() SECURITY INVOKER RESET ALL;"
            "DELETE FROM pginval.secret;")


def scenario_trust(pgw):
    sqlfile = os.path.join(ROOT, "sql", "pginval.sql")
    pgw.psql_file(sqlfile)
    pgw.psql("CREATE TABLE wt (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, "
             "pad text);\n"
             "INSERT INTO wt SELECT g, 0, md5(g::text) "
             "FROM generate_series(1, %d) g;\nVACUUM ANALYZE wt;" % WRITE_ROWS)
    script = ("\\set id random(1, %d)\n"
              "UPDATE wt SET v = v + 1 WHERE id = :id;\n" % WRITE_ROWS)
    variants = ["unwatched", "hardened", "unhardened"]
    out = {}
    pgbench(pgw, script, 1, 3)
    for rep in range(RUNS):
        for sync in ("fsync", "nowait"):
            opts = None if sync == "fsync" else "-c synchronous_commit=off"
            for v in variants[rep % 3:] + variants[:rep % 3]:
                pgw.psql_file(sqlfile)
                if v == "unwatched":
                    pgw.psql("SELECT pginval.unwatch('public.wt')")
                else:
                    pgw.psql("SELECT pginval.watch('public.wt', ARRAY['id'], "
                             "'%s')" % PG_CHANNEL)
                if v == "unhardened":
                    pgw.psql(UNHARDEN)
                pgw.psql("VACUUM wt; CHECKPOINT;")
                tps, txs = pgbench(pgw, script, 1, WRITE_T, options=opts)
                out.setdefault("%s/%s" % (v, sync), {"runs": []})["runs"].append(
                    {"tps": tps, "transactions": txs})
                log("trust %s, %s, run %d: %.0f tps" % (v, sync, rep + 1, tps))
    pgw.psql_file(sqlfile)
    pgw.psql("SELECT pginval.unwatch('public.wt')")
    for v in out.values():
        v["median"] = summarize(v["runs"])
    return out


def subscriber_ceiling(redis, payload):
    """How fast the subscriber takes messages that redis-benchmark publishes
    pipelined: the receiving side's own limit on this machine."""
    rb = shutil.which("redis-benchmark")
    if rb is None:
        return None
    n = 200000
    sub = Sub(redis, "bench.cal", count=n, idle=5, timeout=60)
    subprocess.run([rb, "-h", redis.host, "-p", str(redis.port), "-c", "1",
                    "-P", "100", "-n", str(n), "-q", "PUBLISH", "bench.cal",
                    payload], capture_output=True, timeout=120)
    res = sub.result(timeout=30)
    span = (res["last_us"] - res["first_us"]) / 1e6
    return {"msgs": res["msgs"],
            "msgs_per_s": res["msgs"] / span if span > 0 else None,
            "sub_cpu_share": res["cpu_s"] / span if span > 0 else None,
            "payload_bytes": len(payload)}


# --------------------------------------------------------------------------
# wal mode: the write path, the drain and the latency, against a bare
# consumer of the same publication (pg_recvlogical, or walref.py)
# --------------------------------------------------------------------------

WAL_TABLE = "public.wb"
WAL_KEYS = {WAL_TABLE: "wb:{id}"}
DAEMON_APP = "pginval-bench"
REF_SLOT = "bench_ref"
# PostgreSQL's timestamps count microseconds from 2000-01-01.
PG_EPOCH_US = 946684800 * 1000000


def setup_wal_db(pg, rows):
    pg.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    pg.psql("CREATE TABLE wb (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, "
            "pad text);\n"
            "INSERT INTO wb SELECT g, 0, md5(g::text) "
            "FROM generate_series(1, %d) g;\nVACUUM ANALYZE wb;" % rows)


def wal_watch(pg, mode):
    """Watches wb in ``mode`` (None: unwatched); returns the channel's
    publication for wal mode."""
    if mode is None:
        pg.psql("SELECT pginval.unwatch('%s')" % WAL_TABLE)
        return None
    pg.psql("SELECT pginval.watch('%s', ARRAY['id'], '%s', '%s')"
            % (WAL_TABLE, PG_CHANNEL, mode))
    if mode != "wal":
        return None
    return pg.psql("SELECT pginval.publication('%s')" % PG_CHANNEL).strip()


def drop_slot(pg, slot, timeout=15):
    """Drops a slot once its consumer has gone; nothing if it is missing."""
    deadline = time.monotonic() + timeout
    while True:
        out = pg.psql("SELECT active FROM pg_replication_slots "
                      "WHERE slot_name = '%s'" % slot).strip()
        if not out:
            return
        if out == "f":
            pg.psql("SELECT pg_drop_replication_slot('%s')" % slot)
            return
        if time.monotonic() > deadline:
            raise RuntimeError("slot %s is still in use" % slot)
        time.sleep(0.1)


def walsender_pid(pg, app, proc=None, timeout=20):
    """The pid of the walsender streaming to ``app``, once it streams."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        out = pg.psql("SELECT pid FROM pg_stat_replication WHERE "
                      "application_name = '%s' AND state = 'streaming'"
                      % app).strip()
        if out:
            return int(out.splitlines()[0])
        time.sleep(0.05)
    raise RuntimeError("no walsender streams to %s" % app)


def daemon_slot():
    return "pginval_" + PG_CHANNEL


class RecvLogical:
    """pg_recvlogical on a pgoutput slot of the publication, writing to
    /dev/null, or to a pipe that a thread reads (``watch``): it notes the
    time at which a Commit message ends the output."""
    name = "pg_recvlogical"
    app = "pg_recvlogical"

    def __init__(self, pg, publication, watch=False):
        self.pg, self.publication, self.watch = pg, publication, watch
        self.proc = self.reader = None
        self.nbytes, self.tail = 0, b""
        self.commit_after, self.commit_seen = None, threading.Event()
        self.commit_at = self.commit_ts = None

    def start(self):
        drop_slot(self.pg, REF_SLOT)
        self.pg.psql("SELECT pg_create_logical_replication_slot('%s', "
                     "'pgoutput')" % REF_SLOT)
        argv = [os.path.join(self.pg.bindir, "pg_recvlogical"),
                "-d", self.pg.conninfo, "--slot", REF_SLOT, "-P", "pgoutput",
                "-o", "proto_version=1",
                "-o", "publication_names=" + self.publication,
                "--no-loop", "--start", "-f",
                "-" if self.watch else "/dev/null"]
        self.proc = spawn(argv, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE if self.watch else None,
                          env=pg_env())
        if self.watch:
            try:  # fewer, larger reads
                fcntl.fcntl(self.proc.stdout, fcntl.F_SETPIPE_SZ, 1 << 20)
            except (AttributeError, OSError):
                pass
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()
        self.walsender = walsender_pid(self.pg, self.app, self.proc)
        return self

    def _read(self):
        fd = self.proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return
            now = time.time()
            self.nbytes += len(chunk)
            self.tail = (self.tail + chunk)[-64:]
            # pg_recvlogical writes each message and a newline; pgoutput's
            # Commit is 'C', flags, commit LSN, end LSN, commit time.
            t = self.tail
            if (self.commit_after is not None and len(t) >= 27
                    and t[-27:-26] == b"C" and t[-1:] == b"\n"):
                ts = struct.unpack(">q", t[-9:-1])[0] + PG_EPOCH_US
                if ts >= self.commit_after:
                    self.commit_at, self.commit_ts = now * 1e6, ts
                    self.commit_seen.set()

    def stop(self):
        reap(self.proc)
        if self.reader is not None:
            self.reader.join(5)
        drop_slot(self.pg, REF_SLOT)


class WalRef:
    """walref.py: a replication client in Python that records each
    Commit's arrival time minus its commit time."""
    name = "replication client"
    app = "walref"

    def __init__(self, pg, publication):
        self.pg, self.publication = pg, publication

    def start(self):
        drop_slot(self.pg, REF_SLOT)
        self.pg.psql("SELECT pg_create_logical_replication_slot('%s', "
                     "'pgoutput')" % REF_SLOT)
        self.proc = spawn([psycopg2_python(), os.path.join(HERE, "walref.py"),
                           self.pg.dsn(application_name=self.app), REF_SLOT,
                           self.publication], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, text=True, env=pg_env())
        if readline(self.proc, 15) != "ready":
            raise RuntimeError("walref.py did not start")
        self.walsender = walsender_pid(self.pg, self.app, self.proc)
        return self

    def result(self):
        self.proc.send_signal(signal.SIGTERM)
        line = readline(self.proc, 15)
        reap(self.proc)
        drop_slot(self.pg, REF_SLOT)
        return json.loads(line)


_psycopg2_python = []


def psycopg2_python():
    """An interpreter that has psycopg2 (Debian's python3-psycopg2 is for
    the system's python3, which may not be the one running this)."""
    if not _psycopg2_python:
        for py in (sys.executable, "/usr/bin/python3"):
            if subprocess.run([py, "-c", "import psycopg2.extras"],
                              capture_output=True).returncode == 0:
                _psycopg2_python.append(py)
                break
        else:
            raise RuntimeError("no python3 with psycopg2 (Debian: "
                               "python3-psycopg2)")
    return _psycopg2_python[0]


def wal_daemon(pg, redis, tag, outbox=False):
    """pginval on wb, started and ready (its WAL stream up, in wal mode)."""
    relay = PginvalRelay(pg, redis, WAL_KEYS, outbox=outbox, sd_ready=True)
    return relay.start(tag)


# The write path: one cluster as users have it before pginval
# (wal_level = replica), where the trigger modes run, and one with
# wal_level = logical. Every daemon mode runs with the daemon consuming.
WALWRITE_MODES = ["replica", "logical", "wal", "pg_recvlogical", "notify",
                  "durable", "poll"]


def walwrite_cell(pgr, pgl, redis, mode, clients, script):
    pg = pgl if mode in ("logical", "wal", "pg_recvlogical") else pgr
    pub = wal_watch(pg, {"replica": None, "logical": None,
                         "pg_recvlogical": "wal"}.get(mode, mode))
    pg.psql("TRUNCATE pginval.outbox; VACUUM wb; CHECKPOINT;")
    relay = ref = sub = None
    r = {}
    try:
        if mode in ("wal", "notify", "durable", "poll"):
            drop_slot(pg, daemon_slot())
            relay = wal_daemon(pg, redis, "walwrite",
                               outbox=mode in ("durable", "poll"))
            sub = Sub(redis, relay.channel, idle=1.5, timeout=WALWRITE_T + 60)
            consumer = relay.proc.pid
        elif mode == "pg_recvlogical":
            ref = RecvLogical(pg, pub).start()
            consumer = ref.proc.pid
        sender = None
        if mode == "wal":
            sender = walsender_pid(pg, DAEMON_APP)
        elif ref is not None:
            sender = ref.walsender
        cpu0 = proc_cpu(consumer) if relay or ref else 0
        scpu0 = proc_cpu(sender) if sender else 0
        tps, txs = pgbench(pg, script, clients, WALWRITE_T)
        end_us = time.time() * 1e6
        r.update(tps=tps, transactions=txs)
        if sub is not None:
            res = sub.result(timeout=60)
            r.update(events=res["events"], msgs=res["msgs"],
                     resets=res["resets"],
                     tail_s=(max(0.0, (res["last_us"] - end_us) / 1e6)
                             if res["msgs"] else None))
        if relay or ref:
            r["consumer_cpu_s_per_m"] = per_million(
                proc_cpu(consumer) - cpu0, txs)
        if sender:
            r["walsender_cpu_s_per_m"] = per_million(
                proc_cpu(sender) - scpu0, txs)
    finally:
        if relay is not None:
            relay.stop()
        if ref is not None:
            ref.stop()
    if mode == "wal":
        drop_slot(pg, daemon_slot())
    return r


def scenario_walwrite(pgr, pgl, redis):
    script = ("\\set id random(1, %d)\n"
              "UPDATE wb SET v = v + 1 WHERE id = :id;\n" % WRITE_ROWS)
    for pg in (pgr, pgl):
        setup_wal_db(pg, WRITE_ROWS)
        pg.psql("CHECKPOINT")
    os.sync()
    for pg in (pgr, pgl):
        pgbench(pg, script, 16, 3)
    out = {}
    n = len(WALWRITE_MODES)
    for rep in range(WALWRITE_RUNS):
        for clients in (1, 16):
            # The order turns from one repetition to the next, so that a
            # disk growing slower does not always hit the same mode.
            k = rep * 3 % n
            for mode in WALWRITE_MODES[k:] + WALWRITE_MODES[:k]:
                r = walwrite_cell(pgr, pgl, redis, mode, clients, script)
                out.setdefault("%s/%d" % (mode, clients),
                               {"runs": []})["runs"].append(r)
                log("walwrite %s, %d clients, run %d: %.0f tps%s"
                    % (mode, clients, rep + 1, r["tps"],
                       ", %d changes received" % r["events"]
                       if "events" in r else ""))
    for v in out.values():
        v["median"] = summarize(v["runs"])
    return out


def timed_update(pg, rows, table="wb", sync_on=True):
    """One UPDATE of ``rows`` rows of ``table``; the clock before the
    UPDATE, before COMMIT and after it, in µs. With ``sync_on`` the commit
    flushes the WAL (see SYNC_ON); else the cluster's setting holds."""
    out = pg.psql("%sBEGIN;\n%s\nUPDATE %s SET v = v + 1 WHERE id <= %d;\n"
                  "%s\nCOMMIT;\n%s"
                  % ("SET synchronous_commit = on;\n" if sync_on else "",
                     now_us_sql(), table, rows, now_us_sql(), now_us_sql()))
    return [int(x) for x in out.split()]


def waldrain_daemon(pg, redis, rows):
    pg.psql("VACUUM wb")
    drop_slot(pg, daemon_slot())
    relay = wal_daemon(pg, redis, "waldrain")
    try:
        sub = Sub(redis, relay.channel, count=rows, idle=15,
                  timeout=60 + rows / 5000)
        sender = walsender_pid(pg, DAEMON_APP)
        cpu0, scpu0 = proc_cpu(relay.proc.pid), proc_cpu(sender)
        update_start, commit_start, commit_end = timed_update(pg, rows)
        res = sub.result(timeout=60 + rows / 5000)
        cpu = proc_cpu(relay.proc.pid) - cpu0
        scpu = proc_cpu(sender) - scpu0
        hwm = proc_hwm_mb(relay.proc.pid)
    finally:
        relay.stop()
    drop_slot(pg, daemon_slot())
    took = (res["last_us"] - commit_start) / 1e6 if res["msgs"] else None
    return {"events": res["events"], "msgs": res["msgs"],
            "resets": res["resets"],
            "update_s": (commit_start - update_start) / 1e6,
            "commit_s": (commit_end - commit_start) / 1e6,
            "first_msg_s": ((res["first_us"] - commit_start) / 1e6
                            if res["msgs"] else None),
            "commit_to_last_s": took,
            "events_per_s": res["events"] / took if took else None,
            "cpu_s_per_m": per_million(cpu, res["events"]),
            "walsender_cpu_s_per_m": per_million(scpu, res["events"]),
            "peak_rss_mb": hwm}


def waldrain_ref(pg, pub, rows):
    pg.psql("VACUUM wb")
    ref = RecvLogical(pg, pub, watch=True).start()
    try:
        cpu0, scpu0 = proc_cpu(ref.proc.pid), proc_cpu(ref.walsender)
        # The Commit that ends the output must carry a commit time after
        # this, so that it is the UPDATE's.
        ref.commit_after = time.time() * 1e6
        update_start, commit_start, commit_end = timed_update(pg, rows)
        ref.commit_seen.wait(60 + rows / 5000)
        cpu = proc_cpu(ref.proc.pid) - cpu0
        scpu = proc_cpu(ref.walsender) - scpu0
        hwm = proc_hwm_mb(ref.proc.pid)
    finally:
        ref.stop()
    took = ((ref.commit_at - commit_start) / 1e6
            if ref.commit_at is not None else None)
    # Nothing counts the changes in pg_recvlogical's output: the table
    # shows the rows updated.
    return {"events": rows, "msgs": None, "resets": 0,
            "update_s": (commit_start - update_start) / 1e6,
            "commit_s": (commit_end - commit_start) / 1e6,
            "commit_to_last_s": took,
            "events_per_s": rows / took if took else None,
            "cpu_s_per_m": per_million(cpu, rows),
            "walsender_cpu_s_per_m": per_million(scpu, rows),
            "peak_rss_mb": hwm, "output_mb": ref.nbytes / 1e6}


def scenario_waldrain(pg, redis, rows):
    pub = wal_watch(pg, "wal")
    out = {}
    for rep in range(RUNS):
        sides = [("pginval", waldrain_daemon, (pg, redis, rows)),
                 ("reference", waldrain_ref, (pg, pub, rows))]
        if rep % 2:
            sides.reverse()
        for name, fn, args in sides:
            r = fn(*args)
            log("waldrain %s run %d: %d changes in %.3fs, %.2f CPU s/M "
                "(walsender %.2f), %.1f MB"
                % (name, rep + 1, r["events"], r["commit_to_last_s"] or -1,
                   r["cpu_s_per_m"] or -1, r["walsender_cpu_s_per_m"] or -1,
                   r["peak_rss_mb"] or -1))
            out.setdefault(name, {"runs": []})["runs"].append(r)
    for v in out.values():
        v["median"] = summarize(v["runs"])
    return out


# A walsender sends only WAL that is flushed. The relay cluster commits
# without waiting for that (synchronous_commit = off), and the WAL writer
# flushes every wal_writer_delay (200 ms): the wal scenarios' writers
# commit with synchronous_commit = on, PostgreSQL's default (fsync is off
# in that cluster, so the flush costs little).
SYNC_ON = "-c synchronous_commit=on"


def scenario_wallatency(pg, redis):
    script = ("\\set id random(1, %d)\n"
              "UPDATE wb SET v = v + 1 WHERE id = :id;\n" % LATENCY_ROWS)
    pub = wal_watch(pg, "wal")
    out = {}
    for rep in range(RUNS):
        for name in (("pginval", "reference") if rep % 2 == 0
                     else ("reference", "pginval")):
            pg.psql("VACUUM wb")
            if name == "pginval":
                drop_slot(pg, daemon_slot())
                relay = wal_daemon(pg, redis, "wallatency")
                try:
                    sub = Sub(redis, relay.channel, idle=1.5,
                              timeout=LATENCY_T + 60, latency=True)
                    cpu0 = proc_cpu(relay.proc.pid)
                    tps, txs = pgbench(pg, script, 4, LATENCY_T, rate=RATE,
                                       options=SYNC_ON)
                    res = sub.result(timeout=60)
                    cpu = proc_cpu(relay.proc.pid) - cpu0
                finally:
                    relay.stop()
                drop_slot(pg, daemon_slot())
                events = res["events"]
            else:
                ref = WalRef(pg, pub).start()
                cpu0 = proc_cpu(ref.proc.pid)
                tps, txs = pgbench(pg, script, 4, LATENCY_T, rate=RATE,
                                   options=SYNC_ON)
                time.sleep(1)
                cpu = proc_cpu(ref.proc.pid) - cpu0
                res = ref.result()
                events = res["changes"]
            lat = res.get("lat", {})
            r = {"pgbench_tps": tps, "transactions": txs, "events": events,
                 "p50_ms": lat.get("p50", 0) / 1000.0,
                 "p99_ms": lat.get("p99", 0) / 1000.0,
                 "p999_ms": lat.get("p999", 0) / 1000.0,
                 "max_ms": lat.get("max", 0) / 1000.0,
                 "cpu_s_per_m": per_million(cpu, events)}
            log("wallatency %s run %d: %d changes, p50 %.2f p99 %.2f "
                "p99.9 %.2f ms" % (name, rep + 1, events, r["p50_ms"],
                                   r["p99_ms"], r["p999_ms"]))
            out.setdefault(name, {"runs": []})["runs"].append(r)
    for v in out.values():
        v["median"] = summarize(v["runs"])
    return out


# --------------------------------------------------------------------------
# Fan-out on a Redis Cluster: SPUBLISH against PUBLISH
# --------------------------------------------------------------------------

FANOUT_CHANNEL = "pginval"
FANOUT_DEPTH = 16
# One row change of a users table, as pginval publishes it.
FANOUT_MESSAGE = ('{"v":1,"seq":184200,"epoch":"6f1c9a0e2b7d4c1f8a3e5b6d7c8f'
                  '9a0b","op":"update","table":"public.users","keys":["user:'
                  '42","user:email:a@x.io"],"ts":1764240000123456}')
# What starts each delivered message on a subscriber's link, per kind.
FANOUT_MARK = {"SSUBSCRIBE": b"$8\r\nsmessage\r\n",
               "SUBSCRIBE": b"$7\r\nmessage\r\n"}


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def fanout_sub_main(host, port, verb, channel, count, timeout):
    """A counting subscriber in a process of its own (so that the
    publisher's process does not share its CPU): prints "ready" once
    subscribed, then, at ``count`` messages, after 5 s without data, or
    after ``timeout`` s, one line of JSON: msgs, bytes, cpu_s."""
    count, timeout = int(count), float(timeout)
    sock = socket.create_connection((host, int(port)))
    sock.sendall(resp(verb, channel))
    buf = b""
    while b"\r\n:1\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk or chunk.startswith(b"-"):
            sys.exit("fanout subscriber: %s %s on %s:%s: %r"
                     % (verb, channel, host, port, chunk))
        buf += chunk
    print("ready", flush=True)
    mark = FANOUT_MARK[verb]
    msgs, nbytes, tail = 0, 0, b""
    deadline = time.monotonic() + timeout
    sock.settimeout(5)
    while msgs < count and time.monotonic() < deadline:
        try:
            chunk = sock.recv(262144)
        except socket.timeout:
            break
        if not chunk:
            break
        nbytes += len(chunk)
        data = tail + chunk     # a mark may straddle two reads
        msgs += data.count(mark)
        tail = data[-(len(mark) - 1):]
    usage = os.times()
    print(json.dumps({"msgs": msgs, "bytes": nbytes,
                      "cpu_s": usage.user + usage.system}), flush=True)


def fanout_publish(node, verb, n):
    """Sends ``n`` copies of the message with ``verb``, pipelined
    FANOUT_DEPTH deep, on one raw link; returns (seconds, first error)."""
    cmd = resp(verb, FANOUT_CHANNEL, FANOUT_MESSAGE)
    sock = socket.create_connection((node.host, node.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    error = None
    sent = 0
    t0 = time.monotonic()
    try:
        while sent < n:
            k = min(FANOUT_DEPTH, n - sent)
            sock.sendall(cmd * k)
            got = 0
            while got < k:      # each reply is one line: :N or -ERR
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("redis %s closed the link" % node.addr)
                got += chunk.count(b"\n")
                if error is None and b"-" in chunk:
                    error = chunk.decode("utf-8", "replace").strip()
            sent += k
        return time.monotonic() - t0, error
    finally:
        sock.close()


def node_cpu(node):
    info = node.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def bus_sent(nodes):
    """cluster_stats_messages_publish{,shard}_sent summed over the nodes."""
    out = {"publish": 0, "publishshard": 0}
    for node in nodes:
        info = node.cluster_info()
        for kind in out:
            out[kind] += int(info.get("cluster_stats_messages_%s_sent"
                                      % kind, 0))
    return out


def fanout_run(cl, owner, mode, n):
    """One run of ``n`` messages in ``mode`` (spublish or publish)."""
    verb, sub_verb, subscribed = {
        # A sharded channel has subscribers on its shard only: the owner
        # is the one master that takes SSUBSCRIBE (the others: -MOVED).
        "spublish": ("SPUBLISH", "SSUBSCRIBE", [owner]),
        "publish": ("PUBLISH", "SUBSCRIBE", cl.masters()),
    }[mode]
    subs = []
    for node in subscribed:
        proc = spawn([sys.executable, os.path.abspath(__file__),
                      "--fanout-sub", node.host, str(node.port), sub_verb,
                      FANOUT_CHANNEL, str(n), str(60 + n / 1000)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     text=True)
        subs.append(proc)
        if readline(proc, 15) != "ready":
            raise RuntimeError("fanout subscriber on %s did not start"
                               % node.addr)
    cpu0 = [node_cpu(node) for node in cl.nodes]
    bus0 = bus_sent(cl.nodes)
    took, error = fanout_publish(owner, verb, n)
    got = []
    for proc in subs:
        line = readline(proc, 120 + n / 1000)
        reap(proc)
        got.append(json.loads(line)["msgs"] if line else 0)
    cpu = [b - a for a, b in zip(cpu0, [node_cpu(x) for x in cl.nodes])]
    bus1 = bus_sent(cl.nodes)
    kind = "publishshard" if mode == "spublish" else "publish"
    owner_i = cl.nodes.index(owner)
    return {"msgs": n, "seconds": took, "msgs_per_s": n / took,
            "subscribers": len(subs), "received": got,
            "min_received": min(got), "all_delivered": min(got) == n,
            "error": error,
            "cluster_cpu_us_per_msg": sum(cpu) / n * 1e6,
            "owner_cpu_us_per_msg": cpu[owner_i] / n * 1e6,
            "node_cpu_s": {node.addr: c for node, c in zip(cl.nodes, cpu)},
            "bus_per_msg": (bus1[kind] - bus0[kind]) / n}


def scenario_fanout():
    from servers import RedisCluster
    n = FANOUT_N
    out = {}
    with RedisCluster(masters=3, replicas=1) as cl:
        owner = cl.owner(cl.keyslot(FANOUT_CHANNEL))
        log("fanout: cluster ready in %.1fs; %s owns %s (slot %d)"
            % (cl.startup_s, owner.addr, FANOUT_CHANNEL,
               cl.keyslot(FANOUT_CHANNEL)))
        for rep in range(RUNS):
            for mode in ("spublish", "publish"):
                r = fanout_run(cl, owner, mode, n)
                log("fanout %s run %d: %d msgs in %.2fs (%.0f/s), cluster "
                    "CPU %.1f us/msg, owner %.1f us/msg, bus %.2f/msg, "
                    "received %s"
                    % (mode, rep + 1, n, r["seconds"], r["msgs_per_s"],
                       r["cluster_cpu_us_per_msg"],
                       r["owner_cpu_us_per_msg"], r["bus_per_msg"],
                       r["received"]))
                out.setdefault(mode, {"runs": []})["runs"].append(r)
    for v in out.values():
        v["median"] = summarize(v["runs"])
    return out


def fanout_problems(res):
    """What went wrong in the fan-out runs, as lines: lost deliveries,
    errors, and a bus count other than 1 (SPUBLISH: to the one replica)
    or 5 (PUBLISH: to every other node)."""
    lines = []
    for mode, want in (("spublish", 1), ("publish", 5)):
        for i, r in enumerate(res.get(mode, {}).get("runs", [])):
            if not r["all_delivered"]:
                lines.append("%s run %d: subscribers got %s of %d messages"
                             % (mode, i + 1, r["received"], r["msgs"]))
            if r["error"]:
                lines.append("%s run %d: error reply %s"
                             % (mode, i + 1, r["error"]))
            if abs(r["bus_per_msg"] - want) > 0.01:
                lines.append("%s run %d: %.3f bus messages per message, "
                             "not %d" % (mode, i + 1, r["bus_per_msg"], want))
    return lines


# --------------------------------------------------------------------------
# pginval apply: invalidations/s on a Redis Cluster against a single Redis
# --------------------------------------------------------------------------

APPLY_N = env_int("BENCH_APPLY_N", 200000)
APPLY_BATCH = 1000          # keys per message: [daemon] max_keys's default
APPLY_CHANNEL = "bench.apply"
APPLY_MARKER_TTL = 600      # s: the markers outlive the run and its check
APPLY_SAMPLE = 1000         # keys whose marker the check looks for
APPLY_CELLS = ("empty", "filled")


def apply_messages(n, epoch):
    """The messages of ``n`` keys user:1..n, APPLY_BATCH a message, seq
    from 1, with b"@TS@" where the send time goes."""
    out = []
    for seq, first in enumerate(range(1, n + 1, APPLY_BATCH), 1):
        keys = ",".join('"user:%d"' % i for i in
                        range(first, min(first + APPLY_BATCH, n + 1)))
        msg = ('{"v":1,"seq":%d,"epoch":"%s","op":"update","table":'
               '"public.users","keys":[%s],"ts":@TS@}' % (seq, epoch, keys))
        out.append(msg.encode())
    return out


def apply_metrics(port):
    """/metrics of apply as {name or name{labels}: value}."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    out = {}
    for line in data.split(b"\r\n\r\n", 1)[-1].decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def metric_sum(m, name):
    """A counter summed over its labels."""
    return sum(v for k, v in m.items()
               if k == name or k.startswith(name + "{"))


def hist_bound(m, name, q):
    """The upper bound of the histogram bucket that holds the q-th
    quantile: the buckets (0.5 ms to 10 s, about 2.5x apart) are too
    coarse to interpolate within."""
    buckets = sorted((float(k.split('le="')[1].split('"')[0]), v)
                     for k, v in m.items() if k.startswith(name + "_bucket{"))
    if not buckets or not buckets[-1][1]:
        return None
    for bound, count in buckets:
        if count >= q * buckets[-1][1]:
            return bound
    return None


def hist_mean(m, name):
    count = m.get(name + "_count")
    return m.get(name + "_sum", 0) / count if count else None


class ApplyTarget:
    """What apply invalidates: a single Redis, or a cluster's masters; the
    master of each slot, and every node's CPU."""

    def __init__(self, name, server):
        self.name, self.server = name, server
        self.cluster = hasattr(server, "masters")
        if self.cluster:
            self.nodes = list(server.nodes)
            self.masters = server.masters()
            owner = {}
            for start, end, port in self.masters[0].slot_map():
                for slot in range(start, end + 1):
                    owner[slot] = server.by_port(port)
            self.owner = owner
        else:
            self.nodes = self.masters = [server]

    def url(self):
        if self.cluster:
            return "url = %s\ncluster = on" % self.server.seed_url
        return "url = %s/0" % self.server.url

    def node_for(self, key):
        if not self.cluster:
            return self.server
        return self.owner[binascii.crc_hqx(key.encode(), 0) & 16383]

    def cpu(self):
        return [node_cpu(node) for node in self.nodes]

    def stats(self):
        """Summed over the masters: reads from client sockets, and the
        calls and microseconds of EVALSHA (INFO commandstats)."""
        out = {"reads": 0, "evalsha_calls": 0, "evalsha_usec": 0}
        for node in self.masters:
            info = node.info("stats", "commandstats")
            out["reads"] += int(info["total_reads_processed"])
            cmd = dict(kv.split("=") for kv in
                       info.get("cmdstat_evalsha", "calls=0,usec=0")
                       .split(","))
            out["evalsha_calls"] += int(cmd["calls"])
            out["evalsha_usec"] += int(cmd["usec"])
        return out

    def flush(self):
        for node in self.masters:
            node.command("FLUSHALL")

    def by_node(self, keys):
        out = {}
        for key in keys:
            out.setdefault(self.node_for(key), []).append(key)
        return out

    def fill(self, n):
        """SET user:1..n, pipelined on each master."""
        for node, keys in self.by_node(["user:%d" % i
                                        for i in range(1, n + 1)]).items():
            with node.connect(timeout=30) as conn:
                for i in range(0, len(keys), 10000):
                    part = keys[i:i + 10000]
                    conn.sock.sendall(b"".join(resp("SET", k, "1")
                                               for k in part))
                    for _ in part:
                        reply = conn.read_reply(timeout=30)
                        if reply != "OK":
                            raise RuntimeError("SET on %s: %r"
                                               % (node.addr, reply))

    def check(self, n):
        """Markers of a sample of the keys, each looked for on its slot's
        master; user:* keys left on any master."""
        step = max(1, n // APPLY_SAMPLE)
        sample = ["user:%d" % i for i in range(1, n + 1, step)]
        missing = 0
        for node, keys in self.by_node(sample).items():
            with node.connect() as conn:
                for key in keys:
                    conn.send("EXISTS", marker_key(key))
                for key in keys:
                    missing += conn.read_reply() != 1
        left = 0
        for node in self.masters:
            with node.connect() as conn:
                cursor = b"0"
                while True:
                    cursor, batch = conn.command("SCAN", cursor, "MATCH",
                                                 "user:*", "COUNT", 1000)
                    left += len(batch)
                    if cursor == b"0":
                        break
        return {"markers_checked": len(sample), "markers_missing": missing,
                "keys_left": left}


def proc_syscalls(pid):
    """read- and write-like system calls of a process so far
    (/proc/PID/io syscr + syscw)."""
    with open("/proc/%d/io" % pid) as f:
        io = dict(line.split(": ") for line in f.read().splitlines())
    return int(io["syscr"]) + int(io["syscw"])


def apply_settled(path, port, proc, timeout=60, quiet=0.5):
    """Waits until apply's start sweep is over: every pass it started
    (pginval_apply_sweeps_total) logged its end, and none started for
    ``quiet`` s. One end is not enough: the cluster's map, which comes
    during the first pass, makes it pass again."""
    wait_log(path, b"swept keys matching", proc, timeout)
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline and proc.poll() is None:
        with open(path, "rb") as f:
            ended = f.read().count(b"swept keys matching")
        started = metric_sum(apply_metrics(port), "pginval_apply_sweeps_total")
        if (started, ended) != last:
            last, since = (started, ended), time.monotonic()
        elif ended >= started and time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)
    raise RuntimeError("apply's start sweep did not settle within %ds "
                       "(passes started, ended: %s); see %s"
                       % (timeout, last, path))


def apply_conf(pg, channel_redis, target, port, channel=APPLY_CHANNEL,
               keys=APPLY_N, options=(), stream=None):
    """apply's configuration: ``keys`` sizes max_queue, ``options`` are
    more lines of [apply], ``stream`` [redis] stream."""
    conf = os.path.join(OUT, "apply-%s.conf" % target.name)
    with open(conf, "w") as f:
        f.write("\n".join([
            "# written by tests/bench/run.py",
            "[postgres]",
            "conninfo = %s application_name=%s" % (pg.conninfo, DAEMON_APP),
            "[redis]", "url = %s/0" % channel_redis.url,
            "channel = " + channel] + (
            ["stream = " + stream] if stream else []) + [
            # debug: the end of the start sweep is logged at that level.
            "[daemon]", "log_level = debug",
            "[metrics]", "listen = 127.0.0.1:%d" % port,
            # The whole burst waits in apply: the default (100000) would
            # replace it by a reset of the target.
            "[apply]", "marker_ttl = %d" % APPLY_MARKER_TTL,
            "max_queue = %d" % max(100000, 2 * keys)] + list(options) + [
            "[table public.users]", "keys = user:{id}",
            "[target %s]" % target.name, target.url(), ""]))
    return conf


def wait_log(path, needle, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with open(path, "rb") as f:
            if needle in f.read():
                return
        time.sleep(0.02)
    raise RuntimeError("apply did not log %r within %ds (exit %s); see %s"
                       % (needle.decode(), timeout, proc.poll(), path))


def apply_start(pg, channel_redis, target, tag, **conf):
    """A fresh apply on ``target`` (``conf``: apply_conf's options),
    subscribed and past its start sweep; returns (process, metrics port,
    log path). Its start is a reset: a sweep of user:* on every master."""
    from servers import free_port
    port = free_port()
    path = os.path.join(OUT, "apply-%s.log" % tag)
    logfile = open(path, "wb")
    proc = spawn([PGINVAL, "apply", "-c",
                  apply_conf(pg, channel_redis, target, port, **conf)],
                 stdin=subprocess.DEVNULL, stdout=logfile, stderr=logfile)
    logfile.close()
    try:
        wait_log(path, b"channel: subscribed", proc, 30)
        apply_settled(path, port, proc)
    except BaseException:
        reap(proc)
        raise
    return proc, port, path


def apply_wait_deleted(port, proc, n, deadline, gone=None,
                       clock=time.monotonic):
    """Polls apply's /metrics every 10 ms until
    pginval_apply_keys_deleted_total reaches ``n`` and ``gone()``, if
    given, holds; returns ``clock()`` then, or None at ``deadline`` (a
    time.monotonic()) or if apply exits."""
    while time.monotonic() < deadline and proc.poll() is None:
        m = apply_metrics(port)
        if (m.get("pginval_apply_keys_deleted_total", 0) >= n
                and (gone is None or gone())):
            return clock()
        time.sleep(0.01)
    return None


def apply_run(pg, channel_redis, target, cell, tag):
    """One apply, fresh, on ``target``; the burst of APPLY_N keys
    published at once; returns the figures."""
    n = APPLY_N
    target.flush()
    proc, port, _ = apply_start(pg, channel_redis, target, tag)
    try:
        if cell == "filled":
            target.fill(n)
        msgs = apply_messages(n, os.urandom(16).hex())
        m0 = apply_metrics(port)
        cpu0, tcpu0, st0 = proc_cpu(proc.pid), target.cpu(), target.stats()
        sys0 = proc_syscalls(proc.pid)
        with channel_redis.connect(timeout=30) as conn:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Every message carries the time the burst is sent as its ts.
            ts = b"%d" % int(time.time() * 1e6)
            burst = b"".join(resp("PUBLISH", APPLY_CHANNEL,
                                  msg.replace(b"@TS@", ts)) for msg in msgs)
            t0 = time.monotonic()
            conn.sock.sendall(burst)
            published = time.monotonic() - t0
            receivers = [conn.read_reply(timeout=30) for _ in msgs]
        done = apply_wait_deleted(port, proc, n, t0 + 60 + n / 2000)
        cpu = proc_cpu(proc.pid) - cpu0
        syscalls = proc_syscalls(proc.pid) - sys0
        tcpu = [b - a for a, b in zip(tcpu0, target.cpu())]
        st = {k: v - st0[k] for k, v in target.stats().items()}
        hwm = proc_hwm_mb(proc.pid)
        m = apply_metrics(port)
    finally:
        reap(proc)
    took = done - t0 if done else None
    deleted = m.get("pginval_apply_keys_deleted_total", 0)
    masters = [c for node, c in zip(target.nodes, tcpu)
               if node in target.masters]
    r = {"keys": n, "messages": len(msgs), "cell": cell,
         "publish_s": published, "seconds": took,
         "invalidations_per_s": n / took if took else None,
         "apply_cpu_ms_per_k": cpu / deleted * 1e6 if deleted else None,
         "target_cpu_ms_per_k": (sum(masters) / deleted * 1e6
                                 if deleted else None),
         "target_all_cpu_ms_per_k": (sum(tcpu) / deleted * 1e6
                                     if deleted else None),
         # Its metrics, polled every 10 ms, add a few per poll.
         "apply_syscalls_per_k": (syscalls / deleted * 1000
                                  if deleted else None),
         "node_cpu_s": {node.addr: c for node, c in zip(target.nodes, tcpu)},
         # How well the commands were batched: socket reads per 1000.
         "target_reads_per_k": (st["reads"] / deleted * 1000
                                if deleted else None),
         "evalsha_us_per_call": (st["evalsha_usec"] / st["evalsha_calls"]
                                 if st["evalsha_calls"] else None),
         "lag_mean_s": hist_mean(m, "pginval_apply_lag_seconds"),
         "lag_p99_le_s": hist_bound(m, "pginval_apply_lag_seconds", 0.99),
         "apply_peak_rss_mb": hwm,
         "keys_deleted": deleted,
         "keys_existed": m.get("pginval_apply_keys_existed_total", 0),
         "receivers": sorted(set(receivers), key=repr),
         "messages_applied": (metric_sum(m, "pginval_apply_messages_total")
                              - metric_sum(m0,
                                           "pginval_apply_messages_total")),
         "gaps": (metric_sum(m, "pginval_apply_gaps_total")
                  - metric_sum(m0, "pginval_apply_gaps_total")),
         "invalid": metric_sum(m, "pginval_apply_invalid_messages_total"),
         "overflows": metric_sum(m, "pginval_apply_overflows_total"),
         "command_errors": metric_sum(m,
                                      "pginval_apply_command_errors_total")}
    if took:
        r.update(target.check(n))
    return r


def scenario_applyrate(pg):
    from servers import RedisCluster
    out = {}
    with Redis() as channel, Redis() as single, \
            RedisCluster(masters=3, replicas=1) as cl:
        log("applyrate: cluster ready in %.1fs" % cl.startup_s)
        targets = [ApplyTarget("cluster", cl), ApplyTarget("single", single)]
        for rep in range(RUNS):
            for cell in APPLY_CELLS:
                for target in targets:
                    side = "pginval" if target.cluster else "reference"
                    r = apply_run(pg, channel, target, cell, "%s-%s-%d" % (
                        target.name, cell, rep + 1))
                    log("applyrate %s %s run %d: %d keys in %.3fs "
                        "(%.0f/s), apply %.3f ms/1000, redis %.3f ms/1000 "
                        "(all nodes %.3f), lag p99 <= %s s, existed %d, "
                        "markers missing %s, keys left %s"
                        % (cell, target.name, rep + 1, r["keys"],
                           r["seconds"] or -1,
                           r["invalidations_per_s"] or -1,
                           r["apply_cpu_ms_per_k"] or -1,
                           r["target_cpu_ms_per_k"] or -1,
                           r["target_all_cpu_ms_per_k"] or -1,
                           fmt(r["lag_p99_le_s"]), r["keys_existed"],
                           r.get("markers_missing"), r.get("keys_left")))
                    out.setdefault(cell, {}).setdefault(
                        side, {"runs": []})["runs"].append(r)
    for sides in out.values():
        for v in sides.values():
            v["median"] = summarize(v["runs"])
    return out


def applyrate_problems(res):
    """What went wrong in the apply runs, as lines: a run that did not
    finish, messages not all applied, gaps, bad messages, overflows,
    command errors, missing markers, keys left behind."""
    lines = []
    for cell, sides in res.items():
        for side, v in sides.items():
            for i, r in enumerate(v["runs"]):
                what = "%s %s run %d" % (cell, side, i + 1)
                want = {"receivers": [1], "messages_applied": r["messages"],
                        "invalid": 0, "overflows": 0, "command_errors": 0,
                        "markers_missing": 0, "keys_left": 0,
                        "keys_existed": r["keys"] if cell == "filled" else 0}
                if r["seconds"] is None:
                    lines.append("%s: %d of %d keys deleted before the "
                                 "timeout" % (what, r["keys_deleted"],
                                              r["keys"]))
                for field, value in want.items():
                    if field in r and r[field] != value:
                        lines.append("%s: %s is %r, not %r"
                                     % (what, field, r[field], value))
                # The subscription's own gap was counted before the burst.
                if r["gaps"]:
                    lines.append("%s: %d gaps during the burst"
                                 % (what, r["gaps"]))
    return lines


# --------------------------------------------------------------------------
# pginval apply: a bulk UPDATE invalidated, against redis-cli --pipe UNLINK
# --------------------------------------------------------------------------

INVALIDATE_N = env_int("BENCH_INVALIDATE_N", 500000)
INVALIDATE_TABLE = "public.users"
# Each cell is a configuration of apply: the extra lines of its [apply].
INVALIDATE_CELLS = {"guard": (), "nomarkers": ("markers = off",),
                    "stream": ()}
# The cell whose daemon and apply keep [redis] stream: apply then marks
# every message and keeps checkpoints for targets that forget.
INVALIDATE_STREAM = {"stream": "pginval:bench:log"}


def setup_invalidate_db(pg, rows):
    """users (id 1..rows), watched in notify mode: one key user:{id} per
    row."""
    pg.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    pg.psql("CREATE TABLE users (id int PRIMARY KEY, v int NOT NULL "
            "DEFAULT 0);\n"
            "INSERT INTO users SELECT g, 0 FROM generate_series(1, %d) g;\n"
            "SELECT pginval.watch('%s', ARRAY['id']);\n"
            "VACUUM ANALYZE users;" % (rows, INVALIDATE_TABLE))


def user_keys(redis):
    """Keys without a TTL in db 0: the cached user:* keys, since apply's
    markers (pginval:m:*) all carry one (PX marker_ttl). INFO keyspace
    counts both exactly, where DBSIZE alone cannot tell them apart."""
    db = redis.info("keyspace").get("db0")
    if not db:
        return 0
    kv = dict(item.split("=") for item in db.split(","))
    return int(kv["keys"]) - int(kv["expires"])


def apply_refused(conf):
    """`pginval check`'s complaint about apply's configuration, or None:
    a build that does not know a cell's setting refuses it."""
    proc = subprocess.run([PGINVAL, "check", "-c", conf],
                          capture_output=True, text=True, timeout=30)
    if proc.returncode == 0:
        return None
    return (proc.stderr or proc.stdout).strip().splitlines()[-1]


def invalidate_settle(target, n):
    """The target filled with user:1..n (pipelined SETs), then a second of
    rest so that the fill's work is over before the clock starts."""
    target.fill(n)
    if user_keys(target.server) != n:
        raise RuntimeError("the target holds %d user keys after the fill, "
                           "not %d" % (user_keys(target.server), n))
    time.sleep(1)


def invalidate_run(pg, channel, target, cell, tag):
    """One cell: a fresh apply and a fresh `pginval run`, the target
    filled, one UPDATE of every row; from COMMIT until apply counted every
    key deleted and the target holds no user key."""
    from servers import free_port
    n = INVALIDATE_N
    options = INVALIDATE_CELLS[cell]
    stream = INVALIDATE_STREAM.get(cell)
    conf = apply_conf(pg, channel, target, free_port(),
                      channel=PginvalRelay.channel, keys=n, options=options,
                      stream=stream)
    refused = apply_refused(conf)
    if refused:
        return {"cell": cell, "keys": n, "refused": refused}
    target.flush()
    pg.psql("VACUUM users")
    proc, port, path = apply_start(pg, channel, target, tag,
                                   channel=PginvalRelay.channel, keys=n,
                                   options=options, stream=stream)
    relay = PginvalRelay(pg, channel, {INVALIDATE_TABLE: "user:{id}"},
                         stream=stream)
    try:
        # apply first: the daemon's start reset, seq 1 of its epoch, then
        # reaches it, and the UPDATE's messages follow in sequence.
        resets0 = metric_sum(apply_metrics(port), "pginval_apply_resets_total")
        relay.start(tag)
        deadline = time.monotonic() + 15
        while metric_sum(apply_metrics(port),
                         "pginval_apply_resets_total") <= resets0:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("apply did not carry out the daemon's "
                                   "start reset; see %s" % path)
            time.sleep(0.02)
        # Its sweep must be over before the fill, which it would remove.
        apply_settled(path, port, proc)
        invalidate_settle(target, n)
        m0 = apply_metrics(port)
        cpu0, dcpu0 = proc_cpu(proc.pid), proc_cpu(relay.proc.pid)
        tcpu0 = sum(target.cpu())
        update_start, commit_start, commit_end = timed_update(
            pg, n, "users", sync_on=False)
        # The clock is PostgreSQL's (clock_timestamp()), the same as
        # time.time() on this machine.
        done = apply_wait_deleted(
            port, proc, n, time.monotonic() + 60 + n / 2000,
            gone=lambda: user_keys(target.server) == 0,
            clock=lambda: time.time() * 1e6)
        cpu = proc_cpu(proc.pid) - cpu0
        dcpu = proc_cpu(relay.proc.pid) - dcpu0
        tcpu = sum(target.cpu()) - tcpu0
        hwm = proc_hwm_mb(proc.pid)
        m = apply_metrics(port)
    finally:
        if relay.proc is not None:
            relay.stop()
        reap(proc)
    took = (done - commit_start) / 1e6 if done else None

    def delta(name):
        return metric_sum(m, name) - metric_sum(m0, name)

    deleted = delta("pginval_apply_keys_deleted_total")
    r = {"cell": cell, "keys": n,
         "update_s": (commit_start - update_start) / 1e6,
         "commit_s": (commit_end - commit_start) / 1e6,
         "seconds": took, "keys_per_s": n / took if took else None,
         "redis_cpu_s": tcpu,
         "redis_us_per_key": tcpu / n * 1e6,
         "apply_cpu_s": cpu, "apply_us_per_key": cpu / n * 1e6,
         "daemon_cpu_s": dcpu, "daemon_us_per_key": dcpu / n * 1e6,
         "apply_peak_rss_mb": hwm,
         "keys_deleted": deleted,
         "keys_existed": delta("pginval_apply_keys_existed_total"),
         "messages_applied": delta("pginval_apply_messages_total"),
         "user_keys_left": user_keys(target.server),
         "dbsize": target.server.command("DBSIZE"),
         "resets": delta("pginval_apply_resets_total"),
         "gaps": delta("pginval_apply_gaps_total"),
         "invalid": delta("pginval_apply_invalid_messages_total"),
         "overflows": delta("pginval_apply_overflows_total"),
         "command_errors": delta("pginval_apply_command_errors_total")}
    r.update(target.check(n))
    return r


def unlink_pipe_file(n, markers=False):
    """RESP of UNLINK user:1 ... user:n, one command per key, written
    before the runs: the input of `redis-cli --pipe`. With markers, each
    UNLINK follows a SET of the key's marker with PX, as the guard leaves
    it: what per-key markers cost Redis as plain commands."""
    path = os.path.join(OUT, "markers.resp" if markers else "unlink.resp")
    version = b"%d" % int(time.time() * 1e6)

    def cmds(i):
        key = b"user:%d" % i
        return ((resp("SET", b"pginval:m:{" + key + b"}", version, "PX",
                      APPLY_MARKER_TTL * 1000) if markers else b"") +
                resp("UNLINK", key))
    with open(path, "wb") as f:
        for first in range(1, n + 1, 10000):
            f.write(b"".join(cmds(i) for i in
                             range(first, min(first + 10000, n + 1))))
    return path


def invalidate_pipe(target, path, per_key=1):
    """The reference: the target filled the same way, then `redis-cli
    --pipe` of a plain UNLINK per key (per_key commands a key), timed
    until redis-cli has read the last reply and exited."""
    n = INVALIDATE_N
    target.flush()
    invalidate_settle(target, n)
    server = target.server
    tcpu0 = sum(target.cpu())
    with open(path, "rb") as f:
        t0 = time.monotonic()
        proc = subprocess.run(["redis-cli", "-h", server.host, "-p",
                               str(server.port), "--pipe"], stdin=f,
                              capture_output=True, text=True,
                              timeout=60 + n / 2000)
        took = time.monotonic() - t0
    tcpu = sum(target.cpu()) - tcpu0
    match = re.search(r"errors: (\d+), replies: (\d+)", proc.stdout)
    return {"keys": n, "seconds": took, "keys_per_s": n / took,
            "redis_cpu_s": tcpu, "redis_us_per_key": tcpu / n * 1e6,
            "exit": proc.returncode,
            "errors": int(match.group(1)) if match else None,
            "replies": (int(match.group(2)) // per_key if match
                        else None),
            "user_keys_left": user_keys(server),
            "dbsize": server.command("DBSIZE")}


def scenario_invalidate(pg, channel, target_redis):
    n = INVALIDATE_N
    t0 = time.monotonic()
    setup_invalidate_db(pg, n)
    paths = {"pipe": unlink_pipe_file(n),
             "markerpipe": unlink_pipe_file(n, markers=True)}
    log("invalidate: %d rows and the pipe files ready in %.1fs"
        % (n, time.monotonic() - t0))
    target = ApplyTarget("invalidate", target_redis)
    out = {name: {"runs": []} for name in list(INVALIDATE_CELLS) + list(paths)}
    try:
        invalidate_reps(pg, channel, target, paths, out)
    finally:
        for path in paths.values():
            os.remove(path)
    for v in out.values():
        v["median"] = (summarize(v["runs"]) if v["runs"]
                       and not v["runs"][0].get("refused") else {})
    return out


def invalidate_reps(pg, channel, target, paths, out):
    """RUNS repetitions of every cell and the pipe, the order reversed
    every other one; a cell that this build refuses is tried once."""
    n = INVALIDATE_N
    refused = set()
    for rep in range(RUNS):
        order = list(INVALIDATE_CELLS) + list(paths)
        if rep % 2:
            order.reverse()
        for name in order:
            if name in refused:
                continue
            if name in paths:
                r = invalidate_pipe(target, paths[name],
                                    2 if name == "markerpipe" else 1)
            else:
                r = invalidate_run(pg, channel, target, name,
                                   "invalidate-%s-%d" % (name, rep + 1))
            out[name]["runs"].append(r)
            if r.get("refused"):
                refused.add(name)
                log("invalidate %s: refused by this build: %s"
                    % (name, r["refused"]))
                continue
            log("invalidate %s run %d: %d keys in %.3fs (%.0f/s), redis "
                "%.2f us/key%s, user keys left %d"
                % (name, rep + 1, n, r["seconds"] or -1,
                   r["keys_per_s"] or -1, r["redis_us_per_key"],
                   "" if name in ("pipe", "markerpipe") else
                   ", apply %.2f us/key, daemon %.2f us/key, %d messages"
                   % (r["apply_us_per_key"], r["daemon_us_per_key"],
                      r["messages_applied"]),
                   r["user_keys_left"]))


def invalidate_problems(res):
    """What went wrong in the invalidate runs, as lines: a cell this build
    refuses, a run whose keys did not all go, counts that differ from the
    keys, gaps, resets, bad messages, overflows, command errors, and
    markers where the cell should (not) leave them."""
    lines = []
    for name, v in res.items():
        for i, r in enumerate(v["runs"]):
            what = "%s run %d" % (name, i + 1)
            if r.get("refused"):
                lines.append("%s: not measured, this build refuses its "
                             "configuration: %s" % (name, r["refused"]))
                continue
            n = r["keys"]
            if r["seconds"] is None:
                lines.append("%s: %d of %d keys deleted, %d user keys left "
                             "at the deadline" % (what, r["keys_deleted"], n,
                                                  r["user_keys_left"]))
            if name in ("pipe", "markerpipe"):
                want = {"exit": 0, "errors": 0, "replies": n,
                        "user_keys_left": 0,
                        "dbsize": n if name == "markerpipe" else 0}
            else:
                markers = name != "nomarkers"
                want = {"keys_deleted": n, "keys_existed": n,
                        "user_keys_left": 0, "keys_left": 0,
                        "dbsize": n if markers else 0,
                        "markers_missing": (0 if markers
                                            else r["markers_checked"]),
                        "resets": 0, "gaps": 0, "invalid": 0,
                        "overflows": 0, "command_errors": 0}
            for field, value in want.items():
                if r.get(field) != value:
                    lines.append("%s: %s is %r, not %r"
                                 % (what, field, r.get(field), value))
    return lines


def print_invalidate(res):
    """One line per measured cell: its rate and Redis CPU per key against
    the pipe's, as in the table (the median of the repetitions' ratios),
    with the absolute figures."""
    pipe = res.get("pipe")
    if not pipe or not pipe["median"]:
        return
    for cell in INVALIDATE_CELLS:
        v = res.get(cell)
        if not v or not v["median"]:
            continue
        a, b = v["median"], pipe["median"]

        def x(field):
            return median([ratio(p.get(field), q.get(field)) for p, q in
                           zip(v["runs"], pipe["runs"])])
        print("invalidate %s: keys/s x%s of the pipe's (%s against %s); "
              "Redis CPU per key x%s (%s us against %s us); apply %s us "
              "per key, the daemon %s."
              % (cell, fmt(x("keys_per_s")), fmt(a.get("keys_per_s")),
                 fmt(b.get("keys_per_s")), fmt(x("redis_us_per_key")),
                 fmt(a.get("redis_us_per_key")),
                 fmt(b.get("redis_us_per_key")),
                 fmt(a.get("apply_us_per_key")),
                 fmt(a.get("daemon_us_per_key"))))
    mp = res.get("markerpipe")
    if mp and mp["median"]:
        print("invalidate markerpipe: a marker SET with PX and an UNLINK per "
              "key as plain pipelined commands (what any per-key marker "
              "costs, without the atomicity): %s keys/s, Redis %s us per "
              "key." % (fmt(mp["median"].get("keys_per_s")),
                        fmt(mp["median"].get("redis_us_per_key"))))


# --------------------------------------------------------------------------
# Machine, table, JSON
# --------------------------------------------------------------------------

def machine_info(pg):
    info = {"nproc": os.cpu_count(), "kernel": platform.release()}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                info["mem_gb"] = round(int(line.split()[1]) / 1048576, 1)
    try:
        with open("/etc/debian_version") as f:
            info["debian"] = f.read().strip()
    except OSError:
        pass
    info["postgres"] = pg.psql("SHOW server_version").strip() if pg else "-"
    text = subprocess.run(["redis-server", "--version"], capture_output=True,
                          text=True).stdout
    match = re.search(r"v=(\S+)", text)
    info["redis"] = match.group(1) if match else text.strip()
    for pkg in ("hiredis", "libpq"):
        proc = subprocess.run(["pkg-config", "--modversion", pkg],
                              capture_output=True, text=True)
        info[pkg] = proc.stdout.strip()
    proc = subprocess.run(["git", "-C", ROOT, "describe", "--always",
                           "--dirty"], capture_output=True, text=True)
    info["source"] = proc.stdout.strip() or None
    try:
        proc = subprocess.run([PGINVAL, "--version"], capture_output=True,
                              text=True)
        info["pginval"] = (proc.stdout or proc.stderr).strip()
    except OSError:     # not built: fine for the fan-out alone
        info["pginval"] = None
    proc = subprocess.run([os.environ.get("CC") or "cc", "--version"],
                          capture_output=True, text=True)
    info["cc"] = proc.stdout.splitlines()[0] if proc.stdout else ""
    return info


def loadavg():
    """The 1-minute load average, or None."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if abs(v) >= 10000:
        return "{:,.0f}".format(v)
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.3g" % v if abs(v) < 1 else "%.2f" % v


def spread(runs_a, runs_b, field):
    """The larger half-range of the two sides' runs, relative to their
    median: how far a run strayed from the figure shown."""
    worst = None
    for runs in (runs_a, runs_b):
        values = [r.get(field) for r in runs if r.get(field) is not None]
        if len(values) < 2 or not statistics.median(values):
            continue
        half = (max(values) - min(values)) / 2 / abs(statistics.median(values))
        worst = half if worst is None else max(worst, half)
    return worst


def pyrelay_rows(rows, res):
    """The drains against pyrelay.py, where it ran (rows of a and d)."""
    for name, scn in (("drain", "a. drain %s rows (ref: Python relay)"
                       % "{:,}".format(N)),
                      ("bulk", "d. bulk UPDATE %s rows (ref: Python relay)"
                       % "{:,}".format(BULK))):
        s = res.get(name)
        if not s or "python" not in s:
            continue
        for metric, field in (("changes/s", "events_per_s"),
                              ("relay CPU s per 1M changes", "cpu_s_per_m"),
                              ("relay peak RSS (MB)", "peak_rss_mb"),
                              ("changes received", "events")):
            p = s["pginval"]["median"].get(field)
            r = s["python"]["median"].get(field)
            rows.append((scn, metric, p, r, ratio(p, r),
                         spread(s["pginval"]["runs"], s["python"]["runs"],
                                field)))


def invalidate_rows(rows, res):
    """n. a bulk UPDATE invalidated by apply, each cell against the
    pipe of the same repetitions."""
    s = res.get("invalidate", {})
    for cell in INVALIDATE_CELLS:
        a, b = s.get(cell), s.get("pipe")
        if not a or not a["median"] or not b or not b["median"]:
            continue
        scn = ("n. invalidate %s keys, %s (ref: redis-cli --pipe UNLINK)"
               % ("{:,}".format(INVALIDATE_N),
                  "markers on" if cell == "guard" else "markers off"))
        # (metric, field, whether the pipe has it); ratios are the median
        # of each repetition's own (cell / pipe of the same repetition).
        for metric, field, ref in (
                ("COMMIT -> all keys gone (s)", "seconds", True),
                ("keys/s", "keys_per_s", True),
                ("Redis CPU us per key", "redis_us_per_key", True),
                ("apply CPU us per key", "apply_us_per_key", False),
                ("daemon CPU us per key", "daemon_us_per_key", False),
                ("COMMIT itself (s)", "commit_s", False),
                ("messages applied", "messages_applied", False),
                ("apply peak RSS (MB)", "apply_peak_rss_mb", False)):
            rows.append((scn, metric, a["median"].get(field),
                         b["median"].get(field) if ref else None,
                         median([ratio(x.get(field), y.get(field)) for x, y
                                 in zip(a["runs"], b["runs"])])
                         if ref else None,
                         spread(a["runs"], b["runs"] if ref else a["runs"],
                                field)))
    a, b = s.get("guard"), s.get("markerpipe")
    if a and a["median"] and b and b["median"]:
        scn = ("n. invalidate %s keys, markers on (ref: redis-cli --pipe "
               "SET marker PX + UNLINK)" % "{:,}".format(INVALIDATE_N))
        for metric, field in (("keys/s", "keys_per_s"),
                              ("Redis CPU us per key", "redis_us_per_key")):
            rows.append((scn, metric, a["median"].get(field),
                         b["median"].get(field),
                         median([ratio(x.get(field), y.get(field)) for x, y
                                 in zip(a["runs"], b["runs"])]),
                         spread(a["runs"], b["runs"], field)))


def rowdrain_rows(rows, res):
    """m. the drain of single-row statements: pginval against refrelay,
    then against pyrelay.py."""
    s = res.get("rowdrain")
    if not s:
        return
    for ref, what in (("reference", "verbatim relay"),
                      ("python", "Python relay")):
        scn = "m. drain %s one-row NOTIFYs (ref: %s)" % (
            "{:,}".format(ROWDRAIN), what)
        for metric, field in (("COMMIT -> last message (s)",
                               "commit_to_last_s"),
                              ("changes/s", "events_per_s"),
                              ("relay CPU s per 1M changes", "cpu_s_per_m"),
                              ("relay peak RSS (MB)", "peak_rss_mb"),
                              ("changes received", "events"),
                              ("messages (PUBLISHes) received", "msgs")):
            p = s["pginval"]["median"].get(field)
            r = s[ref]["median"].get(field)
            rows.append((scn, metric, p, r, ratio(p, r),
                         spread(s["pginval"]["runs"], s[ref]["runs"],
                                field)))


def build_rows(res):
    """(scenario, metric, pginval, reference, ratio, spread) rows."""
    rows = []

    def pair(scn, metric, data, field):
        p = data["pginval"]["median"].get(field)
        r = data["reference"]["median"].get(field)
        rows.append((scn, metric, p, r, ratio(p, r),
                     spread(data["pginval"]["runs"], data["reference"]["runs"],
                            field)))

    s = res.get("drain")
    if s:
        scn = "a. drain %s rows" % "{:,}".format(N)
        pair(scn, "COMMIT itself (s)", s, "commit_s")
        pair(scn, "COMMIT -> last message (s)", s, "commit_to_last_s")
        pair(scn, "changes/s", s, "events_per_s")
        pair(scn, "relay CPU s per 1M changes", s, "cpu_s_per_m")
        pair(scn, "relay peak RSS (MB)", s, "peak_rss_mb")
        pair(scn, "changes received", s, "events")
        pair(scn, "messages (PUBLISHes) received", s, "msgs")
        pair(scn, "resets received", s, "resets")
    s = res.get("latency")
    if s:
        scn = "b. latency %d tx/s" % RATE
        pair(scn, "p50 (ms)", s, "p50_ms")
        pair(scn, "p99 (ms)", s, "p99_ms")
        pair(scn, "p99.9 (ms)", s, "p999_ms")
        pair(scn, "changes received", s, "events")
        pair(scn, "messages (PUBLISHes) received", s, "msgs")
        pair(scn, "relay CPU s per 1M changes", s, "cpu_s_per_m")
    s = res.get("write")
    if s:
        for clients in (1, 16):
            base = s.get("unwatched/%d" % clients)
            for mode in ("notify", "durable", "poll"):
                cell = s.get("%s/%d" % (mode, clients))
                if not cell or not base:
                    continue
                # The ratio is the median of each repetition's own ratio:
                # runs made minutes apart compare less well.
                p, r = cell["median"]["tps"], base["median"]["tps"]
                cell["median"]["ratio"] = median(
                    [ratio(a["tps"], b["tps"])
                     for a, b in zip(cell["runs"], base["runs"])])
                rows.append(("c. write path (fsync on)",
                             "tps %s, %d client%s (ref: unwatched)"
                             % (mode, clients, "s" if clients > 1 else ""),
                             p, r, cell["median"]["ratio"],
                             spread(cell["runs"], base["runs"], "tps")))
    s = res.get("bulk")
    if s:
        scn = "d. bulk UPDATE %s rows" % "{:,}".format(BULK)
        pair(scn, "COMMIT -> last message (s)", s, "commit_to_last_s")
        pair(scn, "changes/s", s, "events_per_s")
        pair(scn, "changes received", s, "events")
        pair(scn, "messages (ref: = NOTIFYs)", s, "msgs")
        pair(scn, "payload MB received", s, "payload_mb")
        pair(scn, "relay CPU s per 1M changes", s, "cpu_s_per_m")
        pair(scn, "relay peak RSS (MB)", s, "peak_rss_mb")
        pair(scn, "resets received", s, "resets")
    s = res.get("fanin")
    if s:
        scn = "e. fan-in %d clients, %d tables" % (FANIN_CLIENTS, FANIN_TABLES)
        pair(scn, "pgbench tps (writers)", s, "pgbench_tps")
        pair(scn, "changes/s received", s, "events_per_s")
        pair(scn, "messages/s received", s, "msgs_per_s")
        pair(scn, "keys/s (ref: 3 x changes)", s, "keys_per_s")
        pair(scn, "changes received", s, "events")
        pair(scn, "transactions committed", s, "transactions")
        pair(scn, "relay CPU s per 1M changes", s, "cpu_s_per_m")
    s = res.get("stream")
    if s:
        scn = "f. drain %s rows, stream on (ref: off)" % "{:,}".format(N)
        pair(scn, "COMMIT -> last message (s)", s, "commit_to_last_s")
        pair(scn, "changes/s", s, "events_per_s")
        pair(scn, "relay CPU s per 1M changes", s, "cpu_s_per_m")
        pair(scn, "relay peak RSS (MB)", s, "peak_rss_mb")
        pair(scn, "messages (PUBLISHes) received", s, "msgs")
        pair(scn, "stream entries (XLEN)", s, "stream_len")
        pair(scn, "stream memory (MB)", s, "stream_mb")
    s = res.get("trust")
    if s:
        for sync, what in (("fsync", "fsync on"),
                           ("nowait", "commit not waiting for fsync")):
            for a, b in (("hardened", "unhardened"), ("hardened", "unwatched"),
                         ("unhardened", "unwatched")):
                x, y = s["%s/%s" % (a, sync)], s["%s/%s" % (b, sync)]
                rows.append(("g. trust on/off, 1 client, " + what,
                             "tps notify %s (ref: %s)" % (a, b),
                             x["median"]["tps"], y["median"]["tps"],
                             median([ratio(p["tps"], r["tps"]) for p, r in
                                     zip(x["runs"], y["runs"])]),
                             spread(x["runs"], y["runs"], "tps")))
    s = res.get("walwrite")
    if s:
        def wcell(mode, clients, ref, metric, field="tps"):
            a, b = s.get("%s/%d" % (mode, clients)), s.get("%s/%d"
                                                           % (ref, clients))
            if not a or not b:
                return
            rows.append(("h. write path, wal mode (fsync on)",
                         metric % (clients, "s" if clients > 1 else ""),
                         a["median"].get(field), b["median"].get(field),
                         median([ratio(x.get(field), y.get(field)) for x, y
                                 in zip(a["runs"], b["runs"])]),
                         spread(a["runs"], b["runs"], field)))
        for clients in (1, 16):
            wcell("logical", clients, "replica",
                  "tps unwatched, wal_level logical, %d client%s "
                  "(ref: replica)")
            wcell("wal", clients, "replica",
                  "tps wal, %d client%s (ref: unwatched, replica)")
            wcell("wal", clients, "pg_recvlogical",
                  "tps wal, %d client%s (ref: pg_recvlogical)")
            wcell("pg_recvlogical", clients, "replica",
                  "tps pg_recvlogical, %d client%s (ref: unwatched, replica)")
            for mode in ("notify", "durable", "poll"):
                wcell(mode, clients, "replica", "tps " + mode +
                      ", daemon running, %d client%s (ref: unwatched)")
            wcell("wal", clients, "pg_recvlogical",
                  "walsender CPU s per 1M changes, %d client%s "
                  "(ref: pg_recvlogical's)", "walsender_cpu_s_per_m")
            wcell("wal", clients, "pg_recvlogical",
                  "consumer CPU s per 1M changes, %d client%s "
                  "(ref: pg_recvlogical)", "consumer_cpu_s_per_m")
            a = s.get("wal/%d" % clients)
            if a:
                rows.append(("h. write path, wal mode (fsync on)",
                             "changes received, wal, %d client%s (ref: "
                             "transactions)" % (clients,
                                                "s" if clients > 1 else ""),
                             a["median"].get("events"),
                             a["median"].get("transactions"),
                             median([ratio(x.get("events"),
                                           x.get("transactions"))
                                     for x in a["runs"]]), None))
    s = res.get("waldrain")
    if s:
        scn = "i. drain %s rows, wal (ref: pg_recvlogical)" % "{:,}".format(
            BULK)
        pair(scn, "COMMIT itself (s)", s, "commit_s")
        pair(scn, "COMMIT -> last message / Commit (s)", s,
             "commit_to_last_s")
        pair(scn, "changes/s", s, "events_per_s")
        pair(scn, "consumer CPU s per 1M changes", s, "cpu_s_per_m")
        pair(scn, "walsender CPU s per 1M changes", s,
             "walsender_cpu_s_per_m")
        d = s["pginval"]
        rows.append((scn, "pginval CPU per change (ref: its walsender's)",
                     d["median"].get("cpu_s_per_m"),
                     d["median"].get("walsender_cpu_s_per_m"),
                     median([ratio(r.get("cpu_s_per_m"),
                                   r.get("walsender_cpu_s_per_m"))
                             for r in d["runs"]]),
                     spread(d["runs"], d["runs"], "cpu_s_per_m")))
        pair(scn, "consumer peak RSS (MB)", s, "peak_rss_mb")
        pair(scn, "changes received (ref: rows)", s, "events")
        pair(scn, "messages (PUBLISHes) received", s, "msgs")
        pair(scn, "resets received", s, "resets")
    s = res.get("fanout")
    if s and "publish" in s and "spublish" in s:
        scn = ("k. fan-out %s msgs, 3+3 cluster, PUBLISH (ref: SPUBLISH)"
               % "{:,}".format(FANOUT_N))
        pub, spub = s["publish"], s["spublish"]
        for metric, field in (
                ("messages/s (one client, depth %d)" % FANOUT_DEPTH,
                 "msgs_per_s"),
                ("cluster CPU us per message (6 nodes)",
                 "cluster_cpu_us_per_msg"),
                ("owner CPU us per message", "owner_cpu_us_per_msg"),
                ("bus messages per message", "bus_per_msg"),
                ("subscribers (every master; ref: the owner)",
                 "subscribers"),
                ("fewest messages a subscriber got", "min_received")):
            rows.append((scn, metric, pub["median"].get(field),
                         spub["median"].get(field),
                         median([ratio(a.get(field), b.get(field)) for a, b
                                 in zip(pub["runs"], spub["runs"])]),
                         spread(pub["runs"], spub["runs"], field)))
    for cell, data in sorted(res.get("applyrate", {}).items()):
        if "pginval" not in data or "reference" not in data:
            continue
        scn = ("l. apply %s keys%s, 3+3 cluster (ref: single Redis)"
               % ("{:,}".format(APPLY_N),
                  ", pre-filled" if cell == "filled" else ""))
        pair(scn, "first PUBLISH -> last ack (s)", data, "seconds")
        pair(scn, "invalidations/s", data, "invalidations_per_s")
        pair(scn, "apply CPU ms per 1000 invalidations", data,
             "apply_cpu_ms_per_k")
        pair(scn, "apply read/write syscalls per 1000", data,
             "apply_syscalls_per_k")
        pair(scn, "Redis CPU ms per 1000, masters", data,
             "target_cpu_ms_per_k")
        pair(scn, "Redis CPU ms per 1000, all nodes", data,
             "target_all_cpu_ms_per_k")
        pair(scn, "Redis socket reads per 1000, masters", data,
             "target_reads_per_k")
        pair(scn, "EVALSHA us per call (commandstats)", data,
             "evalsha_us_per_call")
        pair(scn, "lag mean, from the burst's ts (s)", data, "lag_mean_s")
        pair(scn, "lag p99 at most (s; bucket bound)", data, "lag_p99_le_s")
        pair(scn, "apply peak RSS (MB)", data, "apply_peak_rss_mb")
        pair(scn, "keys that existed", data, "keys_existed")
    s = res.get("wallatency")
    if s:
        scn = "j. latency %d tx/s, wal (ref: replication client)" % RATE
        pair(scn, "p50 (ms)", s, "p50_ms")
        pair(scn, "p99 (ms)", s, "p99_ms")
        pair(scn, "p99.9 (ms)", s, "p999_ms")
        pair(scn, "changes received", s, "events")
        pair(scn, "consumer CPU s per 1M changes", s, "cpu_s_per_m")
    pyrelay_rows(rows, res)
    rowdrain_rows(rows, res)
    invalidate_rows(rows, res)
    return rows


def print_table(rows):
    head = ("scenario", "metric", "pginval", "reference", "ratio", "spread")
    cells = [head] + [(a, b, fmt(c), fmt(d), fmt(e),
                       "-" if f is None else "+-%.0f%%" % (100 * f))
                      for a, b, c, d, e, f in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(6)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    last = None
    for i, r in enumerate(cells):
        shown = list(r)
        if i > 0 and r[0] == last:
            shown[0] = ""
        last = r[0]
        print("  ".join(shown[j].ljust(widths[j]) if j < 2
                        else shown[j].rjust(widths[j]) for j in range(6)))
        if i == 0:
            print(line)
    print(line)


RELAY_SETTINGS = {"max_connections": "100", "shared_buffers": "256MB",
                  "max_wal_size": "4GB"}
WRITE_SETTINGS = {"fsync": "on", "synchronous_commit": "on",
                  "full_page_writes": "on", "max_connections": "100",
                  "shared_buffers": "128MB", "max_wal_size": "4GB"}
WAL_SETTINGS = {"wal_level": "logical", "max_replication_slots": "10",
                "max_wal_senders": "10"}
SCENARIOS = ["write", "trust", "walwrite", "drain", "latency", "bulk",
             "fanin", "stream", "waldrain", "wallatency", "fanout",
             "applyrate", "invalidate"]
STREAM_KEY = "bench:log"
WAL_ONLY = ("write", "trust", "walwrite", "waldrain", "wallatency")
# scenarios without the relay cluster
NO_RELAY = WAL_ONLY + ("fanout", "applyrate", "invalidate")
# m. The drain of single-row statements: one NOTIFY per change, as in the
# profile (tests/bench/instr.py), against refrelay and pyrelay.py.
SCENARIOS.append("rowdrain")
ROWDRAIN = env_int("BENCH_ROWDRAIN", 200000)
ROWDRAIN_SQL = ("DO $$ BEGIN FOR i IN 1..%d LOOP UPDATE bench_a SET v = v + 1 "
                "WHERE id = i; END LOOP; END $$;")


def run_scenarios(wanted, results, elapsed):
    """Runs the scenarios asked for; returns the machine description."""
    machine = None

    def timed(name, fn, *args):
        t0 = time.monotonic()
        results[name] = fn(*args)
        elapsed[name] = time.monotonic() - t0

    # The write path first: the relay scenarios leave a large data
    # directory behind, and deleting it can slow the disk's fsyncs.
    if "write" in wanted or "trust" in wanted:
        with Postgres(settings=WRITE_SETTINGS) as pgw:
            machine = machine_info(pgw)
            if "write" in wanted:
                timed("write", scenario_write, pgw)
            if "trust" in wanted:
                timed("trust", scenario_trust, pgw)
    if "walwrite" in wanted:
        with Postgres(settings=dict(WRITE_SETTINGS, wal_level="replica")) \
                as pgr, \
                Postgres(settings=dict(WRITE_SETTINGS, **WAL_SETTINGS)) \
                as pgl, Redis() as redis:
            machine = machine_info(pgl)
            timed("walwrite", scenario_walwrite, pgr, pgl, redis)
    if "waldrain" in wanted or "wallatency" in wanted:
        with Postgres(settings=dict(RELAY_SETTINGS, **WAL_SETTINGS)) as pg, \
                Redis() as redis:
            machine = machine_info(pg)
            t0 = time.monotonic()
            setup_wal_db(pg, max(BULK, LATENCY_ROWS))
            elapsed["walsetup"] = time.monotonic() - t0
            if "waldrain" in wanted:
                timed("waldrain", scenario_waldrain, pg, redis, BULK)
            if "wallatency" in wanted:
                timed("wallatency", scenario_wallatency, pg, redis)
    if "fanout" in wanted:
        machine = machine or machine_info(None)
        timed("fanout", scenario_fanout)
    if "applyrate" in wanted:
        # Its PostgreSQL only answers apply's connection: no refresh runs.
        with Postgres() as pg:
            machine = machine_info(pg)
            timed("applyrate", scenario_applyrate, pg)
    if "invalidate" in wanted:
        # A cluster of its own, with the relay scenarios' settings; the
        # channel's Redis and the target are apart, so that the target's
        # CPU is apply's work alone.
        with Postgres(settings=RELAY_SETTINGS) as pg, Redis() as channel, \
                Redis() as target:
            machine = machine_info(pg)
            timed("invalidate", scenario_invalidate, pg, channel, target)
    if not [w for w in wanted if w not in NO_RELAY]:
        return machine
    with Postgres(settings=RELAY_SETTINGS) as pg, Redis() as redis:
        machine = machine_info(pg)
        t0 = time.monotonic()
        tables = setup_relay_db(pg, max(N, BULK, LATENCY_ROWS, ROWDRAIN))
        elapsed["setup"] = time.monotonic() - t0
        if "drain" in wanted:
            results["subscriber_ceiling"] = subscriber_ceiling(
                redis, SAMPLE_MESSAGE)
            timed("drain", scenario_drain, pg, redis, tables, N, "drain",
                  relay_trio)
        if "latency" in wanted:
            timed("latency", scenario_latency, pg, redis, tables)
        if "bulk" in wanted:
            timed("bulk", scenario_drain, pg, redis, tables, BULK, "bulk",
                  relay_trio)
        if "fanin" in wanted:
            timed("fanin", scenario_fanin, pg, redis, tables)
        if "rowdrain" in wanted:
            timed("rowdrain", scenario_drain, pg, redis, tables, ROWDRAIN,
                  "rowdrain", relay_trio, ROWDRAIN_SQL)
        if "stream" in wanted:
            timed("stream", scenario_drain, pg, redis, tables, N, "stream",
                  stream_pair)
    return machine


def main(argv):
    wanted = [a for a in argv if not a.startswith("-")] or SCENARIOS
    unknown = [w for w in wanted if w not in SCENARIOS]
    if unknown:
        sys.exit("bench: unknown scenario %s (choose from %s)"
                 % (", ".join(unknown), " ".join(SCENARIOS)))
    global PGINVAL, REFRELAY, SUB
    os.makedirs(OUT, exist_ok=True)
    # fanout needs none of the binaries, applyrate and invalidate only
    # pginval.
    needed = [PGINVAL] if [w for w in wanted if w != "fanout"] else []
    if [w for w in wanted if w not in ("fanout", "applyrate", "invalidate")]:
        needed += [REFRELAY, SUB]
    if needed:
        for path in needed:
            if not os.access(path, os.X_OK):
                sys.exit("bench: %s is missing; run `make bench`" % path)
        # The runs use copies: a rebuild (or make clean) while they go on
        # must not mix versions, or pull a binary from under them.
        bindir = os.path.join(OUT, "bin")
        os.makedirs(bindir, exist_ok=True)
        copies = {path: shutil.copy2(path, bindir) for path in needed}
        PGINVAL, REFRELAY, SUB = [copies.get(path, path)
                                  for path in (PGINVAL, REFRELAY, SUB)]
    for name in os.listdir(OUT):
        if name.endswith(".log"):
            os.remove(os.path.join(OUT, name))
    started = time.monotonic()
    results, elapsed = {}, {}
    load_before = loadavg()
    try:
        machine = run_scenarios(wanted, results, elapsed)
    finally:
        kill_children()
    elapsed["total"] = time.monotonic() - started
    machine["loadavg_before"] = load_before

    rows = build_rows(results)
    note = ("Figures are measurements of one machine, not assertions; "
            "ratio = pginval / reference (write path: watched / unwatched, "
            "the median of each repetition's ratio); spread = half the range "
            "of the runs, relative to the median.")
    print("pginval benchmark: median of %d run%s per figure%s"
          % (RUNS, "s" if RUNS > 1 else "",
             " (%d for h)" % WALWRITE_RUNS if "walwrite" in results else ""))
    print("machine: %d cores, %s, %s GB RAM, kernel %s, Debian %s; "
          "PostgreSQL %s, Redis %s, libpq %s, hiredis %s"
          % (machine["nproc"], machine.get("cpu", "?"),
             machine.get("mem_gb", "?"), machine["kernel"],
             machine.get("debian", "?"), machine["postgres"],
             machine["redis"], machine["libpq"], machine["hiredis"]))
    print("pginval: %s (source %s)" % (machine["pginval"], machine["source"]))
    print(note)
    if load_before is not None and load_before > 0.25 * machine["nproc"]:
        print("WARNING: the load average was %.1f before the run started: "
              "other work shares these %d cores, and the figures are noisier "
              "for it." % (load_before, machine["nproc"]))
    print_table(rows)
    cal = results.get("subscriber_ceiling")
    if cal:
        shares = [r["sub_cpu_share"] for name in ("drain", "bulk")
                  for v in results.get(name, {}).values() for r in v["runs"]
                  if r.get("sub_cpu_share") is not None]
        print("subscriber check: it takes %s msgs/s of %d-byte payloads from "
              "redis-benchmark (busy %.0f%% of one core)%s."
              % (fmt(cal["msgs_per_s"]), cal["payload_bytes"],
                 100 * (cal["sub_cpu_share"] or 0),
                 "; during the drains it was busy at most %.0f%%"
                 % (100 * max(shares)) if shares else ""))
    fan = results.get("fanout")
    if fan and "publish" in fan and "spublish" in fan:
        def x(field):   # the median of the runs' ratios, as in the table
            return median([ratio(a[field], b[field]) for a, b in
                           zip(fan["publish"]["runs"],
                               fan["spublish"]["runs"])])
        p, q = fan["publish"]["median"], fan["spublish"]["median"]
        print("fan-out: PUBLISH / SPUBLISH, %d-byte message: cluster CPU per "
              "message x%.2f (%.1f / %.1f us), owner CPU x%.2f, messages/s "
              "x%.2f, bus messages %.2f / %.2f."
              % (len(FANOUT_MESSAGE), x("cluster_cpu_us_per_msg"),
                 p["cluster_cpu_us_per_msg"], q["cluster_cpu_us_per_msg"],
                 x("owner_cpu_us_per_msg"), x("msgs_per_s"),
                 p["bus_per_msg"], q["bus_per_msg"]))
        for line in fanout_problems(fan):
            print("WARNING: fan-out " + line)
    if results.get("applyrate"):
        for line in applyrate_problems(results["applyrate"]):
            print("WARNING: applyrate " + line)
    inv = results.get("invalidate")
    if inv:
        print_invalidate(inv)
        for line in invalidate_problems(inv):
            print("WARNING: invalidate " + line)
    print("elapsed: " + ", ".join("%s %.0fs" % kv for kv in elapsed.items()))
    doc = {"note": note, "machine": machine,
           "params": {"runs": RUNS, "drain_rows": N, "bulk_rows": BULK,
                      "latency_rate": RATE, "latency_seconds": LATENCY_T,
                      "write_seconds": WRITE_T, "fanin_seconds": FANIN_T,
                      "fanin_clients": FANIN_CLIENTS,
                      "fanin_tables": FANIN_TABLES,
                      "walwrite_seconds": WALWRITE_T,
                      "walwrite_runs": WALWRITE_RUNS,
                      "wal_postgres_settings": WAL_SETTINGS,
                      "relay_postgres_settings": RELAY_SETTINGS,
                      "write_postgres_settings": WRITE_SETTINGS,
                      "fanout_msgs": FANOUT_N, "fanout_depth": FANOUT_DEPTH,
                      "fanout_message_bytes": len(FANOUT_MESSAGE),
                      "applyrate_keys": APPLY_N,
                      "applyrate_keys_per_message": APPLY_BATCH,
                      "invalidate_keys": INVALIDATE_N},
           "table": [{"scenario": a, "metric": b, "pginval": c,
                      "reference": d, "ratio": e, "spread": f}
                     for a, b, c, d, e, f in rows],
           "scenarios": results, "elapsed_s": elapsed}
    path = os.path.join(OUT, "results.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print("results: " + os.path.relpath(path, os.getcwd()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fanout-sub"]:
        fanout_sub_main(*sys.argv[2:])
        sys.exit(0)
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:
        kill_children()
        sys.exit(130)
