#!/usr/bin/env python3
"""The loop never waits on a peer, and the NOTIFY queue is watched.

A systemd notify socket that nobody reads, idle and slow connections on the
metrics port, a process out of file descriptors: invalidations, reloads
and /healthz must keep working through each. Then a listener that sits in
an open transaction and holds PostgreSQL's NOTIFY queue back: the daemon
reports the queue's usage as a metric, in /healthz (degraded, still 200),
in its log and in `pginval check --connect`.

    python3 tests/integration/test_loop.py [-v] [name-substring ...]
"""

import errno
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import pginval_proc  # noqa: E402
from pginval_proc import (SLOW, http_get, next_msg,  # noqa: E402
                          run_bin, wait_for)
from runner import eq  # noqa: E402
from servers import free_port  # noqa: E402

PG = None
REDIS = None


def sql(text):
    return PG.psql(text)


def metrics_extra(port, **more):
    extra = {"metrics.listen": "127.0.0.1:%d" % port}
    extra.update(more)
    return extra


def timed_healthz(port, timeout=2.0):
    """(status, body, seconds) of one /healthz on a fresh connection; a
    refused or unanswered probe is status 0."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError as e:
        return 0, str(e), time.monotonic() - t0
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.[01] (\d+)", head)
    return (int(m.group(1)) if m else 0), body.decode(), \
        time.monotonic() - t0


class Idlers:
    """Connections that send nothing, from several local addresses, opened
    without waiting (a full accept queue must not stall the test)."""

    def __init__(self, port, count, sources=20):
        self.port, self.count, self.sources = port, count, sources
        self.socks = []
        self.opened = 0

    def _open(self, i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.%d" % (2 + i % self.sources), 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", self.port))
        self.opened += 1
        return s

    @staticmethod
    def closed(s):
        """Whether the server closed s (EOF or reset)."""
        try:
            return s.recv(1) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def top_up(self):
        """Replaces what the server closed, so that count stay open."""
        live = [s for s in self.socks if not self.closed(s)]
        for s in self.socks:
            if s not in live:
                s.close()
        while len(live) < self.count:
            live.append(self._open(self.opened))
        self.socks = live

    def all_closed(self):
        return all(self.closed(s) for s in self.socks)

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []


class NotifySocket:
    """systemd's NOTIFY_SOCKET, as a busy PID 1 has it: nobody reads, and
    its queue is full before the daemon starts."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pginval-notify-")
        self.path = os.path.join(self.dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.filler.setblocking(False)
        self.filled = 0
        for _ in range(10000):
            try:
                self.filler.sendto(b"X-TEST=filler", self.path)
            except BlockingIOError:
                break
            self.filled += 1
        assert 0 < self.filled < 10000, "queue did not fill"

    def read_all(self, timeout):
        """Every datagram that arrives within timeout, as lists of lines."""
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                out.append(self.sock.recv(4096).decode().split("\n"))
            except socket.timeout:
                break
        return out

    def close(self):
        self.sock.close()
        self.filler.close()
        subprocess.run(["rm", "-rf", self.dir])


def setup_db(pg):
    pg.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
    pg.psql("CREATE TABLE users (id int PRIMARY KEY, email text, name text);"
            "SELECT pginval.watch('users', ARRAY['id', 'email']);")


def insert_flows(sub, uid, keys=None):
    """Inserts a row and asserts that its invalidation arrives."""
    sql("INSERT INTO users VALUES (%d, 'u%d@x', 'n')" % (uid, uid))
    m = next_msg(sub, 10)
    assert m is not None, "no invalidation for row %d" % uid
    eq(m["keys"], keys or ["user:%d" % uid, "user:email:u%d@x" % uid])


# -- tests --------------------------------------------------------------------

def setup():
    setup_db(PG)


def test_full_notify_socket_does_not_stop_the_loop():
    ns = NotifySocket()
    sub = REDIS.subscribe("pginval")
    env = {"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "100000"}
    d = pginval_proc.Daemon(PG, REDIS, env=env)
    try:
        # The socket is full from the start: READY=1, STATUS= lines and a
        # WATCHDOG=1 every 50 ms all find it full.
        d.start(sub)
        insert_flows(sub, 1)
        d.write_config(tables={"public.users": "u:{id}"})
        d.signal(signal.SIGHUP)
        d.wait_log("reload: configuration applied")
        insert_flows(sub, 2, ["u:2"])
        time.sleep(1)
        insert_flows(sub, 3, ["u:3"])
        log = d.log_text()
        eq(log.count("cannot send to NOTIFY_SOCKET"), 1,
           "one warning for the whole time it was full:\n" + log)
        # Once systemd reads again, the latest state arrives: READY=1
        # (after the reload) with a status line.
        got = ns.read_all(3 * SLOW)
        daemon_msgs = [m for m in got if m != ["X-TEST=filler"]]
        eq(len(got) - len(daemon_msgs), ns.filled, "the filler datagrams")
        assert any("READY=1" in m for m in daemon_msgs), got
        assert any(any(line.startswith("STATUS=active; postgres: listening")
                       for line in m) for m in daemon_msgs), got
        d.wait_log("NOTIFY_SOCKET takes messages again")
        d.signal(signal.SIGTERM)
        d.proc.wait(timeout=10 * SLOW)
        assert any("STOPPING=1" in m for m in ns.read_all(1)), "STOPPING=1"
        d.stop()
    except BaseException:
        d.kill()
        print("--- daemon log ---\n" + d.log_text())
        raise
    finally:
        ns.close()


def test_idle_connections_do_not_block_healthz():
    port = free_port()
    sub = REDIS.subscribe("pginval")
    with pginval_proc.running(PG, REDIS, sub, extra=metrics_extra(port)):
        idle = Idlers(port, 160)
        slow = None
        try:
            idle.top_up()
            time.sleep(0.3)
            # A slowloris: one byte of a request head per second.
            slow = socket.create_connection(("127.0.0.1", port), 2)
            slow_since = time.monotonic()
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            for i in range(12):
                idle.top_up()
                if i < len(head) and not Idlers.closed(slow):
                    try:
                        slow.send(head[i:i + 1])
                    except OSError:
                        pass
                status, body, took = timed_healthz(port)
                eq((status, body),
                   (200, "active; postgres: listening, redis: ready\n"),
                   "probe %d (%.2fs)" % (i, took))
                assert took < 2, "probe %d took %.2fs" % (i, took)
                time.sleep(max(0, slow_since + i + 1 - time.monotonic()))
            assert Idlers.closed(slow), "the slowloris outlived 5s"
            # Left alone, the idle ones are closed within the head timeout.
            wait_for(idle.all_closed, "idle connections to be closed", 8)
            assert idle.opened > 160, "connections were evicted"
            insert_flows(sub, 10)
        finally:
            idle.close()
            if slow is not None:
                slow.close()


def test_fd_limit_leaves_room_for_redis():
    port = free_port()
    sub = REDIS.subscribe("pginval")
    saved = pginval_proc.WRAPPER
    pginval_proc.WRAPPER = ["prlimit", "--nofile=64:64", "--"] + saved
    try:
        with pginval_proc.running(PG, REDIS, sub,
                                  extra=metrics_extra(port)) as d:
            idle = Idlers(port, 150)
            try:
                t0 = time.monotonic()
                while time.monotonic() - t0 < 2:
                    idle.top_up()
                    time.sleep(0.1)
                # The Redis connection is lost while the port is flooded:
                # reconnecting needs a descriptor.
                connects = d.log_text().count("redis: connected to")
                REDIS.command("CLIENT", "KILL", "TYPE", "normal", "SKIPME",
                              "yes")

                def reconnected():
                    idle.top_up()   # the flood goes on meanwhile
                    return d.log_text().count("redis: connected to") > \
                        connects
                wait_for(reconnected, "Redis to reconnect", 10)
                sql("INSERT INTO users VALUES (20, 'u20@x', 'n')")
                keys = []
                for _ in range(5):
                    m = next_msg(sub, 10)
                    assert m is not None, "no invalidation after reconnect"
                    keys += m["keys"]
                    if "user:20" in keys:
                        break
                assert "user:20" in keys, keys
                log = d.log_text()
                assert len(log.splitlines()) < 200, "log of %d lines" % \
                    len(log.splitlines())
            finally:
                idle.close()
            wait_for(lambda: http_get(port, "/healthz")[0] == 200,
                     "/healthz after the flood", 10)
    finally:
        pginval_proc.WRAPPER = saved


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_out_of_descriptors_backs_off():
    port = free_port()
    sub = REDIS.subscribe("pginval")
    with pginval_proc.running(PG, REDIS, sub, extra=metrics_extra(port)) as d:
        pid = d.proc.pid
        before = len(d.log_text().splitlines())
        # Something else took the descriptors: a few are left.
        hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
        resource.prlimit(pid, resource.RLIMIT_NOFILE,
                         (open_fds(pid) + 4, hard))
        idle = Idlers(port, 100)
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 3:
                idle.top_up()
                time.sleep(0.1)
            insert_flows(sub, 30)
            lines = d.log_text().splitlines()[before:]
            assert len(lines) < 20, "%d log lines in 3s:\n%s" % (
                len(lines), "\n".join(lines[:20]))
            assert any("cannot accept a connection: Too many open files; "
                       "not accepting for" in line for line in lines), lines
        finally:
            idle.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (1024, hard))
        wait_for(lambda: timed_healthz(port)[0] == 200,
                 "/healthz once the descriptors are back", 20)
        insert_flows(sub, 31)


def queue_usage(port):
    """pginval_notify_queue_usage, if above 0."""
    m = re.search(r"^pginval_notify_queue_usage (\S+)$",
                  http_get(port, "/metrics")[1], re.M)
    return float(m.group(1)) if m and float(m.group(1)) > 0 else None


def test_notify_queue_usage():
    port = free_port()
    sub = REDIS.subscribe("pginval")
    extra = metrics_extra(port, **{"postgres.notify_queue_warn": "0.01%",
                                   "daemon.health_interval": "0.3"})
    with pginval_proc.running(PG, REDIS, sub, extra=extra) as d:
        eq(http_get(port, "/healthz"),
           (200, "active; postgres: listening, redis: ready\n"))
        r = run_bin("check", "--connect", "-c", d.config)
        assert re.search(r"^ok: the NOTIFY queue is 0% full \(warning at "
                         r"0\.01%\)$", r.stdout, re.M), r.stdout
        # A session that LISTENs and then idles in a transaction pins the
        # queue; about 5 MB of notifications go in behind it.
        pin = subprocess.Popen(
            [os.path.join(PG.bindir, "psql"), "-X", "-q", "-d",
             PG.dsn(application_name="pinner")],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, text=True)
        try:
            pin.stdin.write("LISTEN anything;\nBEGIN;\nSELECT 1;\n")
            pin.stdin.flush()
            wait_for(lambda: sql("SELECT count(*) FROM pg_stat_activity "
                                 "WHERE application_name = 'pinner' AND "
                                 "state = 'idle in transaction'").strip()
                     == "1", "the pinning session")
            sql("SELECT pg_notify('filler', i || repeat('x', 7900)) "
                "FROM generate_series(1, 600) i")
            usage = wait_for(lambda: queue_usage(port), "usage above 0", 10)
            assert 0.0001 < usage < 0.01, usage
            status, body = http_get(port, "/healthz")
            eq(status, 200, "degraded is not down")
            assert re.fullmatch(r"active; postgres: listening, redis: ready; "
                                r"degraded: the NOTIFY queue is [0-9.]+% "
                                r"full \(notify_queue_warn is 0\.01%\)\n",
                                body), body
            d.wait_log("postgres: the NOTIFY queue is")
            assert "idle_in_transaction_session_timeout" in d.log_text()
            r = run_bin("check", "--connect", "-c", d.config)
            eq(r.returncode, 1, r.stdout)
            assert re.search(r"^problem: postgres: the NOTIFY queue is "
                             r"[0-9.]+% full \(notify_queue_warn is 0\.01%\)",
                             r.stdout, re.M), r.stdout
            # Writers still commit meanwhile, and invalidations flow.
            insert_flows(sub, 40)
        finally:
            pin.stdin.write("ROLLBACK;\n")
            pin.stdin.close()
            pin.wait(timeout=10)
        # Without the pin the queue empties, and health is plain again.
        wait_for(lambda: http_get(port, "/healthz")[1] ==
                 "active; postgres: listening, redis: ready\n",
                 "healthy again", 10)
        d.wait_log("under notify_queue_warn again")


if __name__ == "__main__":
    sys.exit(pginval_proc.main(globals()))
