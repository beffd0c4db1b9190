#!/usr/bin/env python3
"""Poison, storms and sweeps: inputs that an attacker (or bad luck) makes
expensive. A message Redis refuses becomes a reset instead of being sent
forever; an outbox row too big to read becomes a reset of its table
without being read; a flood of truncates of one table merges into a few
sweeps; a key template whose sweep would reach other applications' keys
is refused unless the table opts in.

    python3 tests/integration/test_poison.py [-v] [name-substring ...]
"""

import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "consistency"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import harness  # noqa: E402
import pginval_proc  # noqa: E402
from pginval_proc import (SLOW, http_get, metric, next_msg,  # noqa: E402
                          run_bin, wait_for)
from runner import eq  # noqa: E402
from servers import free_port  # noqa: E402

PG = None
REDIS = None
OUTBOX = {"outbox.enabled": "on", "outbox.poll_interval": "0.05"}


def sql(text):
    return PG.psql(text)


def rc(*args):
    return REDIS.command(*args)


def resp(*args):
    """One command in the Redis protocol."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def pipeline(commands):
    """Sends every command at once on one connection and reads the
    replies: thousands per second, as a busy publisher would."""
    with REDIS.connect(timeout=30) as c:
        c.sock.sendall(b"".join(resp(*cmd) for cmd in commands))
        return [c.read_reply() for _ in commands]


def log_lines(proc):
    return proc.log_text().count("\n")


# -- tests --------------------------------------------------------------------

def setup():
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    sql("CREATE TABLE big (id int PRIMARY KEY, v text);"
        "SELECT pginval.watch('big', ARRAY['id', 'v'], 'pginval', "
        "'durable');"
        "CREATE TABLE small (id int PRIMARY KEY, v text);"
        "SELECT pginval.watch('small', ARRAY['id'], 'pginval', 'durable');")


# -- templates whose sweeps would reach other applications' keys --------------

def write_conf(path, keys, extra=""):
    with open(path, "w") as f:
        f.write("[postgres]\nconninfo = %s\n"          # 1-2
                "[redis]\nurl = %s/0\n"                  # 3-4
                "[table public.kv]\n"                    # 5
                "keys = %s\n%s" % (PG.conninfo, REDIS.url, keys, extra))


def test_check_refuses_a_template_that_begins_with_a_column():
    d = harness.Apply(PG, REDIS, {})
    path = os.path.join(d.dir, "wide.conf")
    write_conf(path, "kv:{id}, {tenant}:kv:{id}")
    r = run_bin("check", "-c", path)
    eq(r.returncode, 1, "exit status; " + r.stderr)
    want = (path + ":6: [table public.kv] keys: template 2 begins with a "
            "{column}, so a truncate or reset of the table would remove "
            "every key matching \"*:kv:*\", other applications' keys too; "
            "begin each template with fixed text (as in \"kv:{id}\"), or "
            "set allow_wide_sweep = yes in [table public.kv] if this Redis "
            "holds nothing else that matches")
    assert want in r.stderr, "%r not in:\n%s" % (want, r.stderr)
    # The same file, with the table's explicit consent.
    write_conf(path, "kv:{id}, {tenant}:kv:{id}", "allow_wide_sweep = yes\n")
    r = run_bin("check", "-c", path)
    eq(r.returncode, 0, "exit status with allow_wide_sweep; " + r.stderr)


def test_run_and_apply_refuse_to_start_with_a_wide_template():
    d = harness.Apply(PG, REDIS, {})
    path = os.path.join(d.dir, "wide.conf")
    write_conf(path, "{id}")
    for command in ("run", "apply"):
        r = run_bin(command, "-c", path)
        eq(r.returncode, 1, command + " exit status; " + r.stderr)
        assert path + ":6: [table public.kv] keys: template 1 begins with " \
            "a {column}" in r.stderr, r.stderr
        assert "matching \"*\"" in r.stderr, r.stderr


def test_reload_keeps_the_running_rules_over_a_wide_template():
    a = harness.Apply(PG, REDIS, {"public.kv": "kv:{id}"})
    a.start()
    try:
        a.rewrite(tables={"public.kv": "{id}"})
        a.signal(signal.SIGHUP)
        a.wait_log("reload: " + a.config)
        a.wait_log("template 1 begins with a {column}")
        rc("SET", "kv:1", "x")
        rc("SET", "unrelated", "x")
        rc("PUBLISH", "pginval", json.dumps({
            "v": 1, "seq": 1, "epoch": "e-reload", "op": "truncate",
            "table": "public.kv", "keys": [], "ts": 1}))
        wait_for(lambda: rc("EXISTS", "kv:1") == 0, "kv:1 swept")
        eq(rc("EXISTS", "unrelated"), 1, "only kv:* was swept")
        assert a.alive()
    finally:
        a.stop()
    rc("FLUSHDB")


# -- a flood of truncates ----------------------------------------------------

def test_a_flood_of_truncates_merges_into_few_sweeps():
    port = free_port()
    a = harness.Apply(PG, REDIS, {"public.flood": "flood:{id}"},
                      extra={"metrics.listen": "127.0.0.1:%d" % port})
    rc("FLUSHDB")
    # Other keys, so that every pass of SCAN has work to do.
    pipeline([("SET", "other:%d" % i, "x") for i in range(3000)])
    a.start()
    try:
        a.wait_log("swept keys matching")      # the start's reset
        time.sleep(0.3)
        rc("CONFIG", "RESETSTAT")
        lines = log_lines(a)
        # A steady stream for a few seconds: 100 truncates every 20 ms,
        # with keys cached in between.
        epoch, seq, rounds, per_round = "e-flood", 0, 100, 100
        for r in range(rounds):
            pipeline([("SET", "flood:%d:%d" % (r, i), "cached")
                      for i in range(10)])
            msgs = []
            for _ in range(per_round):
                seq += 1
                msgs.append(("PUBLISH", "pginval", json.dumps({
                    "v": 1, "seq": seq, "epoch": epoch, "op": "truncate",
                    "table": "public.flood", "keys": [], "ts": 1})))
            pipeline(msgs)
            time.sleep(0.02)

        def received():
            _, text = http_get(port, "/metrics")
            return metric(text, "pginval_apply_messages_total") >= seq

        wait_for(received, "apply to take every truncate", 60)
        # Every key written before the last truncate goes.
        wait_for(lambda: rc("KEYS", "flood:*") == [], "flood:* swept", 30)
        _, text = http_get(port, "/metrics")
        stats = rc("INFO", "commandstats").decode()
    finally:
        a.stop()
    eq(len(rc("KEYS", "other:*")), 3000, "other keys kept")
    scans = 0
    for line in stats.splitlines():
        if line.startswith("cmdstat_scan:"):
            scans = int(line.split("calls=")[1].split(",")[0])
    # Passes start at most every 0.1 s: a few dozen in the flood's few
    # seconds (about 5 SCANs each), not one for every few truncates.
    assert 0 < scans < 300, "%d SCANs for %d truncates" % (scans, seq)
    sweeps = metric(text, "pginval_apply_sweeps_total")
    merged = metric(text, "pginval_apply_sweeps_merged_total")
    assert sweeps < 80, "%d sweeps" % sweeps
    assert merged > seq - 100, "%d merged" % merged
    eq(metric(text, "pginval_apply_resets_total{scope=\"table\"}"), seq,
       "every truncate counted")
    # The truncates are counted; the lines about them are rate-limited.
    added = log_lines(a) - lines
    assert added < 100, "%d log lines for %d truncates" % (added, seq)
    rc("FLUSHDB")



# -- outbox rows too big to read ----------------------------------------------

TABLES = {"public.big": "big:{id}", "public.small": "small:{id}"}


def hwm_kb(pid):
    """The process's peak resident memory, VmHWM, in kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def outbox_count():
    return int(sql("SELECT count(*) FROM pginval.outbox"))


def fresh():
    sql("TRUNCATE big, small; DELETE FROM pginval.outbox")
    rc("FLUSHDB")


def test_outbox_row_over_max_payload_is_a_table_reset_unread():
    fresh()
    port = free_port()
    sub = REDIS.subscribe("pginval")
    d = pginval_proc.Daemon(PG, REDIS, TABLES, extra=dict(OUTBOX, **{
        "outbox.max_payload": "64kB",
        "metrics.listen": "127.0.0.1:%d" % port}))
    d.start()
    try:
        d.wait_log("outbox: connected")
        sql("INSERT INTO small VALUES (1, 'a')")
        eq(next_msg(sub)["keys"], ["small:1"], "a change before")
        before = hwm_kb(d.proc.pid)
        # A real change whose outbox row is 20 MB: its watched column.
        sql("INSERT INTO big VALUES (7, repeat('x', 20000000))")
        m = next_msg(sub, 30)
        eq((m["op"], m["table"], m["keys"][:3]), ("reset", "public.big", []),
           "a reset of the table: %.300r" % m)
        assert "over [outbox] max_payload (65536)" in m["reason"], m
        wait_for(lambda: outbox_count() == 0, "the row deleted")
        # Not read: the daemon's peak memory hardly moved.
        grew = hwm_kb(d.proc.pid) - before
        assert grew < 8000, "peak RSS grew by %d kB" % grew
        # A row that is not pginval's at all, over the limit, names no
        # table: a reset of everything.
        sql("INSERT INTO pginval.outbox (channel, payload) "
            "VALUES ('pginval', repeat('y', 100000))")
        m = next_msg(sub, 10)
        eq((m["op"], m["table"]), ("reset", None), "a global reset")
        # Nor does one whose name holds an escape (a control character,
        # say): it is not logged, and the reset covers every table.
        sql("INSERT INTO pginval.outbox (channel, payload) VALUES "
            "('pginval', '{\"v\":1,\"t\":\"public.\\u001bbig\",' "
            "|| repeat(' ', 100000) || '}')")
        m = next_msg(sub, 10)
        eq((m["op"], m["table"]), ("reset", None), "a global reset")
        sql("INSERT INTO small VALUES (2, 'b')")
        eq(next_msg(sub)["keys"], ["small:2"], "changes still flow")
        wait_for(lambda: outbox_count() == 0, "the outbox drained")
        _, text = http_get(port, "/metrics")
        eq(metric(text, "pginval_outbox_oversized_total"), 3, "counted")
    except BaseException:
        print(d.log_text())
        raise
    finally:
        d.stop()
    log = d.log_text()
    assert "over [outbox] max_payload (65536), was not read; queued a " \
        "reset of table public.big instead" in log, log[-3000:]
    assert "was not read; queued a reset of every table instead" in log, \
        log[-3000:]


def test_outbox_batch_is_bounded_in_bytes():
    fresh()
    sub = REDIS.subscribe("pginval")
    d = pginval_proc.Daemon(PG, REDIS, TABLES, extra=dict(OUTBOX, **{
        "outbox.max_batch_bytes": "64kB"}))
    d.start()
    try:
        d.wait_log("outbox: connected")
        # One statement per row: 20 outbox rows of 40 kB, one per batch.
        sql("DO $$ BEGIN FOR g IN 1..20 LOOP INSERT INTO big "
            "VALUES (g, repeat('z', 40000)); END LOOP; END $$")
        got = set()
        deadline = time.monotonic() + 30 * SLOW
        while len(got) < 20 and time.monotonic() < deadline:
            m = next_msg(sub, 5)
            assert m is not None and m["op"] == "insert", m
            got.update(m["keys"])
        eq(got, {"big:%d" % i for i in range(1, 21)}, "every row delivered")
        wait_for(lambda: outbox_count() == 0, "the outbox drained")
    finally:
        d.stop()
    drains = d.log_text().count("outbox: delivered and deleted 1 rows")
    assert drains >= 15, "%d batches of one row" % drains


# -- messages that Redis refuses ----------------------------------------------

def refused_then_reset(extra, tables):
    """A durable change whose message is over Redis's proto-max-bulk-len:
    sent 3 times, then replaced by a reset of its table, which is
    acknowledged, so the outbox row goes. Returns the daemon's log."""
    fresh()
    port = free_port()
    sub = REDIS.subscribe("pginval")
    d = pginval_proc.Daemon(PG, REDIS, tables, extra=dict(OUTBOX, **dict({
        "outbox.max_payload": "8MB", "outbox.ack_timeout": "2",
        "metrics.listen": "127.0.0.1:%d" % port}, **extra)))
    rc("CONFIG", "SET", "proto-max-bulk-len", "1mb")
    d.start()
    try:
        d.wait_log("outbox: connected")
        rc("SET", "big:1", "cached")
        sql("INSERT INTO big VALUES (1, repeat('x', 1100000))")
        m = next_msg(sub, 20)
        assert m is not None, "nothing arrived"
        eq((m["op"], m["table"]), ("reset", "public.big"),
           "a reset of the table: %.300r" % m)
        assert "refused by Redis" in m["reason"], m["reason"]
        wait_for(lambda: outbox_count() == 0, "the row acknowledged")
        sql("INSERT INTO small VALUES (3, 'c')")
        m = next_msg(sub, 10)
        eq((m["op"], m["keys"]), ("insert", ["small:3"]), "changes flow")
        # Not sent forever: quiet once replaced.
        time.sleep(3)
        _, text = http_get(port, "/metrics")
        eq(metric(text, "pginval_messages_replaced_total"), 1, "counted")
        log = d.log_text()
    except BaseException:
        print(d.log_text()[-5000:])
        raise
    finally:
        rc("CONFIG", "SET", "proto-max-bulk-len", "512mb")
        d.stop()
    eq(log.count("sending it again"), 2, "two more tries")
    assert log.count("connected to") <= 5, log[-3000:]
    assert log.count("\n") < 100, "%d log lines" % log.count("\n")
    return log


def test_a_message_redis_refuses_becomes_a_table_reset():
    log = refused_then_reset({}, TABLES)
    assert "a message about public.big was refused 3 times (PUBLISH: " \
        "ERR Protocol error: invalid bulk length)" in log, log[-3000:]


def test_a_message_the_stream_refuses_becomes_a_table_reset():
    # With the stream on, the XADD is the first command Redis cannot read.
    log = refused_then_reset({"redis.stream": "pginval:log"}, TABLES)
    assert "(XADD: ERR Protocol error: invalid bulk length)" in log, \
        log[-3000:]


def test_a_key_redis_refuses_to_unlink_becomes_a_table_reset():
    # The stream on, action = delete and a key made of the big value:
    # the UNLINK is the first command Redis cannot read.
    log = refused_then_reset({"redis.stream": "pginval:log",
                              "redis.action": "delete"},
                             dict(TABLES, **{"public.big":
                                             "big:{id}, bigv:{v}"}))
    assert "(UNLINK: ERR Protocol error" in log, log[-3000:]
    # The reset swept the table's keys instead.
    eq(rc("EXISTS", "big:1"), 0, "big:1 swept")
    entries = rc("XRANGE", "pginval:log", "-", "+")
    last = json.loads(entries[-2][1][1])
    eq((last["op"], last["table"]), ("reset", "public.big"), "in the stream")

pginval_proc.main(globals())
