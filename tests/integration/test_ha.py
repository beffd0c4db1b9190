#!/usr/bin/env python3
"""High availability: several `pginval run` on one channel form a group
through an advisory lock in PostgreSQL; one is active, the others stand by
and take over when it dies or is cut off.

    python3 tests/integration/test_ha.py [-v] [name-substring ...]

Each mode has a channel of its own, so that the first message of an epoch
says what it would say in production: durable (hadur), poll (hapol),
notify (hanot) and wal (hawal).
"""

import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import pginval_proc  # noqa: E402
from pginval_proc import SLOW, http_get, metric, wait_for  # noqa: E402
from proxy import Proxy  # noqa: E402
from servers import free_port  # noqa: E402
from runner import eq  # noqa: E402
import json  # noqa: E402


PG = None
REDIS = None
MODES = {
    "durable": ("hadur", "public.ditems", {"outbox.enabled": "on",
                                          "outbox.poll_interval": "0.05",
                                          "outbox.ack_timeout": "2"}),
    "poll": ("hapol", "public.pitems", {"outbox.enabled": "on",
                                       "outbox.poll_interval": "0.05",
                                       "outbox.ack_timeout": "2"}),
    "notify": ("hanot", "public.nitems", {}),
    "wal": ("hawal", "public.witems", {}),
}


def sql(text):
    return PG.psql(text)


def setup():
    PG.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    for mode, (chan, table, _) in MODES.items():
        sql("CREATE TABLE %s (id int PRIMARY KEY, v text);"
            "SELECT pginval.watch('%s', NULL, '%s', '%s')" % (
                table, table, chan, mode))


class Member(pginval_proc.Daemon):
    """A daemon of a mode's group, with a metrics listener; pg and redis
    may be proxies' stand-ins."""

    def __init__(self, mode, pg=None, redis_url=None, extra=None):
        chan, table, more = MODES[mode]
        self.mode = mode
        self.port = free_port()
        opts = {"postgres.channel": chan, "redis.channel": chan,
                "metrics.listen": "127.0.0.1:%d" % self.port}
        opts.update(more)
        opts.update(extra or {})
        super().__init__(pg or PG, REDIS, tables={table: "item:{id}"},
                         extra=opts, redis_url=redis_url)

    def healthz(self):
        return http_get(self.port, "/healthz")

    def active(self):
        return metric(http_get(self.port, "/metrics")[1], "pginval_active")


def proxied_pg(proxy):
    class ProxiedPg:
        conninfo = "host=127.0.0.1 port=%d dbname=%s user=%s" % (
            proxy.port, PG.dbname, PG.user)
    return ProxiedPg


def pair(mode, first_extra=None, first_pg=None, first_redis_url=None):
    """Starts an active daemon, then a standby."""
    a = Member(mode, pg=first_pg, redis_url=first_redis_url,
               extra=first_extra)
    b = Member(mode, extra=first_extra)
    a.start()
    a.wait_log("-> active:", 20)
    b.start()
    b.wait_log("-> standby:", 20)
    return a, b


class Collector:
    """Every message on a channel, in order, read by a thread of its own."""

    def __init__(self, chan):
        self.sub = REDIS.subscribe(chan)
        self.msgs = []
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            raw = self.sub.get(0.2)
            if raw is not None:
                self.msgs.append(json.loads(raw))

    def keys(self):
        return {k for m in list(self.msgs) for k in m.get("keys", [])}

    def wait_keys(self, want, timeout=30):
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline and not want <= self.keys():
            time.sleep(0.05)
        missing = want - self.keys()
        assert not missing, "%d keys never arrived, e.g. %s" % (
            len(missing), sorted(missing)[:5])

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sub.close()
        return self.msgs


def check_epochs(ms):
    """The epochs in the order they began; asserts that none comes back
    after another began (no interleaving), and that each starts at seq 1
    and counts one by one."""
    order, seqs = [], {}
    for m in ms:
        e = m["epoch"]
        if not order or order[-1] != e:
            assert e not in order, "epoch %s came back after %s: %s" % (
                e, order[-1], [(x["epoch"][:6], x["seq"]) for x in ms])
            order.append(e)
            eq(m["seq"], 1, "the first message of epoch %s" % e)
        else:
            eq(m["seq"], seqs[e] + 1, "seq in epoch %s" % e)
        seqs[e] = m["seq"]
    return order


def load(table, first, count, pause=0.005):
    """Inserts rows first.. first+count-1, one transaction each, in a
    thread; bounded in count and by psql's own end."""
    body = ("DO $$ BEGIN FOR i IN %d..%d LOOP INSERT INTO %s VALUES (i, 'x');"
            " COMMIT; PERFORM pg_sleep(%g); END LOOP; END $$" % (
                first, first + count - 1, table, pause))
    t = threading.Thread(target=sql, args=(body,), daemon=True)
    t.start()
    return t


def keys_of(first, count):
    return {"item:%d" % i for i in range(first, first + count)}


def takeover_after_kill(mode, first, count=400):
    """SIGKILLs the active daemon of a pair under load; returns the
    seconds until the standby said it was active, the messages and the
    standby."""
    chan, table, _ = MODES[mode]
    col = Collector(chan)
    a, b = pair(mode)
    try:
        loader = load(table, first, count)
        time.sleep(0.5)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        t0 = time.monotonic()
        b.wait_log("-> active:", 30)
        took = time.monotonic() - t0
        loader.join(60)
        col.wait_keys(keys_of(first, count))
    except BaseException:
        print("--- standby log ---\n" + b.log_text()[-6000:])
        b.kill()
        col.close()
        raise
    b.stop()
    return took, col.close(), a


def test_one_active_one_standby():
    a, b = pair("durable")
    try:
        eq(a.active(), 1.0, "the first daemon is active")
        eq(b.active(), 0.0, "the second one stands by")
        st, body = a.healthz()
        eq(st, 200, "the active daemon is healthy: " + body)
        assert body.startswith("active; "), body
        st, body = b.healthz()
        eq(st, 200, "a standby is healthy too: " + body)
        assert body.startswith("standby: the lock of channel \"hadur\" is "
                               "held by backend "), body
        # A standby has nothing in flight: it leaves at once, and the
        # active daemon stays.
        b.stop()
        eq(a.active(), 1.0, "still active")
    finally:
        b.kill()
        a.stop()
    assert "ha: standby -> stopped: shutting down" in b.log_text()


def test_lost_lock_session_fences_a_lone_daemon():
    # Ending the lock session is what a partition does: the daemon stops
    # publishing, takes the lock again, and goes on in a new epoch.
    chan, table, _ = MODES["notify"]
    col = Collector(chan)
    d = Member("notify")
    try:
        d.start()
        d.wait_log("-> active:", 20)
        d.wait_log("postgres: listening", 10)
        sql("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype "
            "= 'advisory' AND classid = 1885825398")
        d.wait_log("ha: fenced", 10)
        wait_for(lambda: d.log_text().count("-> active:") == 2, "active again")
        wait_for(lambda: d.log_text().count("postgres: listening") == 2,
                 "listening again")
        sql("INSERT INTO %s VALUES (100, 'x')" % table)
        wait_for(lambda: "item:100" in col.keys(), "a change after it")
        eq(d.active(), 1.0, "active again")
        assert "pginval_fences_total 1\n" in http_get(d.port, "/metrics")[1]
    finally:
        d.stop()
    epochs = check_epochs(col.close())
    eq(len(epochs), 2, "a new epoch after the fence")


def test_reload():
    chan, table, _ = MODES["notify"]
    col = Collector(chan)
    d = Member("notify")
    try:
        d.start()
        d.wait_log("-> active:", 20)
        d.signal(signal.SIGHUP)
        d.wait_log("SIGHUP: reloading")
        # Unchanged lock settings: the relay takes the new file, and the
        # daemon stays active in its epoch.
        d.write_config({table: "item:{id}, other:{id}"}, dict(
            d_extra(d), **{}))
        d.signal(signal.SIGHUP)
        wait_for(lambda: d.log_text().count("SIGHUP: reloading") == 2,
                 "the second reload")
        sql("INSERT INTO %s VALUES (200, 'x')" % table)
        wait_for(lambda: "other:200" in col.keys(), "the new rules")
        eq(d.log_text().count("ha: fenced"), 0, "no fence")
        # A new takeover_timeout: the lock connection is made again.
        d.write_config({table: "item:{id}"}, dict(
            d_extra(d), **{"daemon.takeover_timeout": "8"}))
        d.signal(signal.SIGHUP)
        d.wait_log("the lock connection's settings changed")
        wait_for(lambda: d.log_text().count("-> active:") == 2, "active again")
        wait_for(lambda: d.log_text().count("postgres: listening") == 2,
                 "listening again")
        sql("INSERT INTO %s VALUES (201, 'x')" % table)
        wait_for(lambda: "item:201" in col.keys(), "a change after it")
    finally:
        d.stop()
    eq(len(check_epochs(col.close())), 2, "a new epoch after the new lock")


def d_extra(d):
    chan, _, more = MODES[d.mode]
    return dict(more, **{"postgres.channel": chan, "redis.channel": chan,
                         "metrics.listen": "127.0.0.1:%d" % d.port})


def carries_on_after_sigkill(mode, first):
    """SIGKILL of the active daemon in a mode whose every table uses the
    outbox: one epoch switch, and the new epoch has nothing to reset: it
    carries on with the outbox."""
    took, ms, a = takeover_after_kill(mode, first)
    print("takeover after SIGKILL (%s): %.2fs" % (mode, took))
    epochs = check_epochs(ms)
    eq(len(epochs), 2, "one epoch switch")
    first_new = [m for m in ms if m["epoch"] == epochs[1]][0]
    assert first_new["op"] != "reset", first_new


def test_durable_takeover_after_sigkill():
    carries_on_after_sigkill("durable", 1000)


def test_poll_takeover_after_sigkill():
    carries_on_after_sigkill("poll", 500)


def test_notify_takeover_resets():
    chan, table, _ = MODES["notify"]
    col = Collector(chan)
    a, b = pair("notify")
    try:
        sql("INSERT INTO %s VALUES (1, 'x')" % table)
        wait_for(lambda: "item:1" in col.keys(), "the first change")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait()
        b.wait_log("-> active:", 30)
        b.wait_log("postgres: listening", 10)
        sql("INSERT INTO %s VALUES (2, 'x')" % table)
        wait_for(lambda: "item:2" in col.keys(), "a change after takeover")
    finally:
        b.stop()
    ms = col.close()
    epochs = check_epochs(ms)
    eq(len(epochs), 2, "one epoch switch")
    new = [m for m in ms if m["epoch"] == epochs[1]]
    eq((new[0]["op"], new[0]["table"]), ("reset", None),
       "the new epoch begins with a reset: the gap is unknown")


def partition(mode, first):
    """Cuts the active daemon of a pair off (its PostgreSQL and Redis links
    black-holed) under load; asserts it fenced itself before the standby
    took over, that every change arrived and that no epoch interleaved.
    Returns both daemons' logs."""
    chan, table, _ = MODES[mode]
    pgp = Proxy(PG.host, PG.port)
    rp = Proxy(REDIS.host, REDIS.port)
    col = Collector(chan)
    extra = {"daemon.takeover_timeout": "6", "postgres.connect_timeout": "2"}
    a, b = pair(mode, first_extra=extra, first_pg=proxied_pg(pgp),
                first_redis_url="redis://127.0.0.1:%d/0" % rp.port)
    try:
        if mode == "wal":
            a.wait_log("wal: streaming", 20)
        sql("INSERT INTO %s SELECT g, 'x' FROM generate_series(%d, %d) g"
            % (table, first, first + 9))
        col.wait_keys(keys_of(first, 10))
        loader = load(table, first + 10, 300, pause=0.02)
        time.sleep(0.5)
        pgp.blackhole()
        rp.blackhole()
        fenced = active = None
        deadline = time.monotonic() + 30 * SLOW
        while (fenced is None or active is None) and \
                time.monotonic() < deadline:
            now = time.monotonic()
            if fenced is None and "ha: fenced" in a.log_text():
                fenced = now
            if active is None and "standby -> taking over" in b.log_text():
                active = now
            time.sleep(0.02)
        assert fenced is not None, "no fence"
        assert active is not None, "no takeover"
        assert fenced < active, "the standby took over before the fence"
        loader.join(60)
        col.wait_keys(keys_of(first + 10, 300), timeout=40)
    except BaseException:
        print("--- active log ---\n" + a.log_text()[-6000:])
        print("--- standby log ---\n" + b.log_text()[-6000:])
        raise
    finally:
        b.stop()
        a.kill()
        pgp.close()
        rp.close()
    epochs = check_epochs(col.close())
    eq(len(epochs), 2, "one epoch switch")
    eq(a.log_text().count("ha: fenced"), 1, "fenced once")
    return a.log_text(), b.log_text()


def test_partitioned_active_is_fenced_first():
    partition("durable", 5000)


def test_partitioned_wal_slot_is_taken():
    # The cut-off daemon's walsender holds the slot until
    # wal_sender_timeout (60 s); the new active daemon ends it.
    _, blog = partition("wal", 5000)
    assert "was still streamed by backend" in blog, blog[-4000:]


def test_wal_takeover_after_sigkill():
    took, ms, a = takeover_after_kill("wal", 1)
    print("takeover after SIGKILL (wal): %.2fs" % took)
    eq(len(check_epochs(ms)), 2, "one epoch switch")


if __name__ == "__main__":
    sys.exit(pginval_proc.main(globals(),
                               pg_settings={"wal_level": "logical"}))
