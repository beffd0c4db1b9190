"""Throwaway PostgreSQL and Redis servers for the integration tests.

Each server lives in its own temporary directory under /tmp, listens on a
free random port on 127.0.0.1 and is torn down (process and directory) on
stop(), when its ``with`` block ends, or at interpreter exit, so a failing
test never leaves a server behind.

    with Postgres() as pg, Redis() as redis:
        pg.psql("CREATE TABLE t (id int PRIMARY KEY)")
        sub = redis.subscribe("pginval")
        ...
        assert sub.get(timeout=5) == b"..."

Postgres.replica() makes a streaming Standby of a server, to promote
when the test stops the primary (a PostgreSQL failover).

RedisCluster (masters with replicas, slot moves, failovers, sharded
pub/sub) and RedisSentinel (a master, replicas and sentinels) build
topologies out of the same Redis processes:

    with RedisCluster(masters=3, replicas=1) as cl:
        slot = cl.keyslot("pginval")
        sub = cl.ssubscribe("pginval")
        cl.migrate_slot(slot, other_master)   # sub.get() -> Unsubscribed

FakeRedis is a scripted (or hostile) node instead: a loopback server
that answers each RESP command through a function the test gives.

PostgreSQL refuses to run as root; when the tests run as root, initdb,
pg_ctl and postgres are run as the "postgres" user through runuser(1).

Only the Python standard library is used.
"""

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

__all__ = [
    "Postgres", "Standby", "Redis", "Subscriber", "RespConnection",
    "PsqlError", "RedisError", "save", "ServerError", "free_port", "pg_bindir",
    "RedisCluster", "ClusterNode", "ShardedSubscriber", "Unsubscribed",
    "RedisSentinel", "SentinelNode", "FakeRedis",
]

_live = []             # servers to stop at exit, most recent last
_exit_hooked = False


def _stop_all():
    while _live:
        server = _live.pop()
        try:
            server.stop()
        except Exception as exc:  # keep going: stop the others anyway
            print("servers.py: stopping %r: %s" % (server, exc),
                  file=sys.stderr)


def _register(server):
    """Make sure ``server`` is stopped even if the test process dies early.

    atexit covers normal exits and uncaught exceptions; SIGTERM (e.g. a CI
    timeout) is turned into SystemExit so atexit runs then too.
    """
    global _exit_hooked
    if not _exit_hooked:
        _exit_hooked = True
        atexit.register(_stop_all)
        try:
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                signal.signal(signal.SIGTERM,
                              lambda signum, frame: sys.exit(128 + signum))
        except ValueError:
            pass  # not in the main thread
    if server not in _live:
        _live.append(server)


def _unregister(server):
    if server in _live:
        _live.remove(server)


class ServerError(Exception):
    """A server could not be started or stopped."""


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_pid_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        time.sleep(0.02)
    return False


# --------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------

def pg_bindir():
    """Directory holding initdb, pg_ctl and psql.

    $PG_BINDIR wins; then the Debian PostgreSQL 15 location; then whatever
    ``pg_config --bindir`` says.
    """
    env = os.environ.get("PG_BINDIR")
    if env:
        return env
    debian = "/usr/lib/postgresql/15/bin"
    if os.path.exists(os.path.join(debian, "initdb")):
        return debian
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True,
                             text=True, check=True).stdout.strip()
        if out and os.path.exists(os.path.join(out, "initdb")):
            return out
    except (OSError, subprocess.CalledProcessError):
        pass
    raise ServerError("cannot find the PostgreSQL binaries; set PG_BINDIR")


class PsqlError(Exception):
    """psql exited non-zero. ``stderr`` holds the server's message."""

    def __init__(self, returncode, stdout, stderr, sql=None):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.sql = sql
        super().__init__("psql failed (exit %d): %s"
                         % (returncode, stderr.strip()))


def _clean_env():
    # A PG* variable from the caller's environment (PGSERVICE, PGOPTIONS,
    # PGDATA...) must not leak into the throwaway cluster or its clients.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.pop("LANG", None)
    return env


class Postgres:
    """A throwaway PostgreSQL cluster.

    Attributes once started: ``host``, ``port``, ``user``, ``dbname``,
    ``conninfo``, ``tmpdir``, ``datadir``, ``logfile``.
    """

    host = "127.0.0.1"
    user = "postgres"
    dbname = "postgres"

    def __init__(self, bindir=None, settings=None):
        self.bindir = bindir or pg_bindir()
        self.settings = dict(settings or {})
        self.port = None
        self.tmpdir = None
        self.datadir = None
        self.logfile = None
        self.running = False
        self._as_postgres = os.geteuid() == 0

    def __repr__(self):
        return "<Postgres port=%s dir=%s>" % (self.port, self.tmpdir)

    def __enter__(self):
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def conninfo(self):
        return self.dsn()

    def dsn(self, dbname=None, **extra):
        """A libpq connection string; ``extra`` adds keywords such as
        application_name."""
        parts = ["host=%s" % self.host, "port=%d" % self.port,
                 "dbname=%s" % (dbname or self.dbname), "user=%s" % self.user]
        parts += ["%s=%s" % kv for kv in extra.items()]
        return " ".join(parts)

    def _bin(self, name):
        return os.path.join(self.bindir, name)

    def _server_cmd(self, argv):
        if self._as_postgres:
            return ["runuser", "-u", "postgres", "--"] + argv
        return argv

    def _run_server_tool(self, argv, timeout=120):
        # cwd: the postgres user may not be allowed into the caller's cwd.
        proc = subprocess.run(self._server_cmd(argv), cwd=self.tmpdir,
                              env=_clean_env(), capture_output=True,
                              text=True, timeout=timeout)
        return proc

    def start(self):
        """initdb a fresh cluster and start it on a free port."""
        if self.running:
            return self
        _register(self)
        self.tmpdir = tempfile.mkdtemp(prefix="pginval-pg-", dir="/tmp")
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.tmpdir, pw.pw_uid, pw.pw_gid)
        self.datadir = os.path.join(self.tmpdir, "data")
        self.logfile = os.path.join(self.tmpdir, "postgres.log")
        try:
            self._make_datadir()
        except BaseException:
            self._remove_tmpdir()
            _unregister(self)
            raise
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": "'%s'" % self.tmpdir,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "50",
            "shared_buffers": "32MB",
            "log_min_messages": "warning",
            "log_line_prefix": "'%m [%p] %a: '",
        }
        conf.update(self.settings)
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# throwaway test cluster\n")
            for key, value in conf.items():
                f.write("%s = %s\n" % (key, value))
        last_error = None
        for _ in range(5):  # another process may grab the port first
            self.port = free_port()
            try:
                self._pg_ctl_start()
                self.running = True
                return self
            except ServerError as exc:
                last_error = exc
        self._remove_tmpdir()
        _unregister(self)
        raise last_error

    def _make_datadir(self):
        proc = self._run_server_tool([
            self._bin("initdb"), "-D", self.datadir, "-A", "trust",
            "--nosync", "-U", self.user, "-E", "UTF8", "--locale=C"])
        if proc.returncode != 0:
            raise ServerError("initdb failed:\n" + proc.stdout + proc.stderr)

    def _pg_ctl_start(self):
        # The port goes on the command line rather than in postgresql.conf so
        # that a retry on another port needs no rewrite; restart() reuses it.
        proc = self._run_server_tool([
            self._bin("pg_ctl"), "-D", self.datadir, "-l", self.logfile,
            "-o", "-p %d" % self.port, "-w", "-t", "60", "start"])
        if proc.returncode != 0:
            self._kill_postmaster()
            raise ServerError("pg_ctl start failed:\n%s%s\n--- log tail:\n%s"
                              % (proc.stdout, proc.stderr, self.log_tail()))

    def _postmaster_pid(self):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError, TypeError):
            return None

    def _kill_postmaster(self):
        """Last resort: SIGQUIT (immediate shutdown), then SIGKILL."""
        pid = self._postmaster_pid()
        if not pid:
            return
        for sig, wait in ((signal.SIGQUIT, 10), (signal.SIGKILL, 5)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            if _wait_pid_gone(pid, wait):
                return

    def _shutdown(self, mode):
        if not self.running:
            return
        proc = self._run_server_tool([
            self._bin("pg_ctl"), "-D", self.datadir, "-m", mode, "-w",
            "-t", "60", "stop"])
        if proc.returncode != 0:
            self._kill_postmaster()
        self.running = False

    def halt(self, mode="fast"):
        """Stop the server but keep its data; restart() brings it back."""
        self._shutdown(mode)

    def stop(self, mode="fast"):
        """Stop the server and delete its data directory."""
        try:
            self._shutdown(mode)
        finally:
            self._remove_tmpdir()
            _unregister(self)

    def restart(self, mode="fast"):
        """Stop (``fast`` or ``immediate``) and start again on the same port
        with the same data. An immediate stop makes the start do crash
        recovery, as after a real crash."""
        self._shutdown(mode)
        self._pg_ctl_start()
        self.running = True
        return self

    def _remove_tmpdir(self):
        if self.tmpdir and os.path.isdir(self.tmpdir):
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = None

    def log_tail(self, nbytes=4000):
        try:
            with open(self.logfile, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - nbytes))
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    # -- clients ----------------------------------------------------------

    def run_psql(self, args=(), input=None, db=None, check=True,
                 timeout=120, env=None):
        """Run psql with ``args`` against the server; returns the
        CompletedProcess (UTF-8 text). Raises PsqlError when ``check`` and
        psql exits non-zero."""
        argv = [self._bin("psql"), "-X", "-d", self.dsn(db)] + list(args)
        full_env = _clean_env()
        full_env["PGCLIENTENCODING"] = "UTF8"
        if env:
            full_env.update(env)
        proc = subprocess.run(argv, input=input, capture_output=True,
                              encoding="utf-8", errors="replace",
                              env=full_env, timeout=timeout)
        if check and proc.returncode != 0:
            raise PsqlError(proc.returncode, proc.stdout, proc.stderr, input)
        return proc

    def psql(self, sql, db=None, check=True):
        """Run ``sql`` (any number of statements) and return stdout,
        unaligned and tuples-only (``-At``): one line per row, columns
        separated by ``|``."""
        proc = self.run_psql(["-q", "-At", "-v", "ON_ERROR_STOP=1", "-f", "-"],
                             input=sql, db=db, check=check)
        return proc.stdout

    def psql_file(self, path, db=None, check=True):
        """Run an SQL file the way an operator would install it."""
        proc = self.run_psql(["-q", "-At", "-v", "ON_ERROR_STOP=1", "-f",
                              path], db=db, check=check)
        return proc.stdout

    def create_database(self, name):
        self.psql('CREATE DATABASE "%s"' % name.replace('"', '""'))
        return name

    def terminate_backends(self, application_name):
        """Terminate every backend whose application_name matches; returns
        how many were signalled."""
        out = self.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = '%s' AND pid <> pg_backend_pid()"
            % application_name.replace("'", "''"))
        return int(out.strip() or 0)


    def replica(self, settings=None):
        """A started streaming replica of this server (see Standby)."""
        return Standby(self, settings).start()


class Standby(Postgres):
    """A streaming replica of a running Postgres: a ``pg_basebackup -R``
    of it, started on a port of its own. start() returns once it streams
    (pg_stat_wal_receiver); wait_replayed() waits until it has replayed
    what the primary had written by then; promote() makes it a primary.
    A failover, as the tests play it:

        standby = pg.replica()
        ...
        standby.wait_replayed()
        pg.halt("immediate")
        standby.promote()
    """

    def __init__(self, primary, settings=None):
        super().__init__(bindir=primary.bindir, settings=settings)
        self.primary = primary
        self.dbname = primary.dbname

    def __repr__(self):
        return "<Standby port=%s of %r>" % (self.port, self.primary)

    def _make_datadir(self):
        # -R writes standby.signal and primary_conninfo; the primary's
        # postgresql.conf comes along, and start() appends its own lines.
        proc = self._run_server_tool([
            self._bin("pg_basebackup"), "-D", self.datadir, "-R",
            "-X", "stream", "-c", "fast", "--no-sync",
            "-h", self.primary.host, "-p", str(self.primary.port),
            "-U", self.primary.user])
        if proc.returncode != 0:
            raise ServerError("pg_basebackup failed:\n" + proc.stdout +
                              proc.stderr)

    def start(self):
        super().start()

        def streaming():
            status = self.psql("SELECT status FROM pg_stat_wal_receiver",
                               db="postgres").strip()
            if status != "streaming":
                raise _NotYet("wal receiver status %r" % status)
            return True
        try:
            _wait("%r streaming" % self, streaming, 60, [self, self.primary])
        except BaseException:
            self.stop()
            raise
        return self

    def wait_replayed(self, timeout=30):
        """Until this standby has replayed every change the primary had
        written when called."""
        lsn = self.primary.psql("SELECT pg_current_wal_insert_lsn()",
                                db="postgres").strip()

        def replayed():
            if self.psql("SELECT pg_last_wal_replay_lsn() >= '%s'" % lsn,
                         db="postgres").strip() != "t":
                raise _NotYet("replay short of %s" % lsn)
            return True
        return _wait("%r replaying up to %s" % (self, lsn), replayed,
                     timeout, [self, self.primary])

    def promote(self):
        """pg_ctl promote, waiting until it takes writes."""
        proc = self._run_server_tool([
            self._bin("pg_ctl"), "-D", self.datadir, "-w", "-t", "60",
            "promote"])
        if proc.returncode != 0 or self.psql(
                "SELECT pg_is_in_recovery()", db="postgres").strip() != "f":
            raise ServerError("pg_ctl promote failed:\n%s%s\n--- log tail:"
                              "\n%s" % (proc.stdout, proc.stderr,
                                         self.log_tail()))
        return self


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


class RedisError(Exception):
    """An error reply (``-ERR ...``) from Redis."""


class _Incomplete(Exception):
    pass


def _parse(buf, pos):
    """Parse one RESP2 value from ``buf`` starting at ``pos``.

    Returns (value, next_pos); raises _Incomplete if ``buf`` ends first.
    Simple strings become str, bulk strings bytes (None when null),
    integers int, arrays lists (None when null) and errors RedisError
    instances (returned, not raised, so they can sit inside arrays).
    """
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete()
    kind, line = buf[pos:pos + 1], bytes(buf[pos + 1:end])
    pos = end + 2
    if kind == b"+":
        return line.decode("utf-8", "replace"), pos
    if kind == b"-":
        return RedisError(line.decode("utf-8", "replace")), pos
    if kind == b":":
        return int(line), pos
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, pos
        if len(buf) < pos + n + 2:
            raise _Incomplete()
        return bytes(buf[pos:pos + n]), pos + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, pos
        items = []
        for _ in range(n):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    raise RedisError("protocol error: unexpected %r" % bytes(buf[pos - 1:]))


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode("utf-8")
        else:
            data = str(arg).encode("ascii")
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RespConnection:
    """A minimal blocking RESP2 connection."""

    def __init__(self, host, port, timeout=5.0):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = bytearray()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def send(self, *args):
        self.sock.sendall(_encode(args))

    def read_reply(self, timeout=None):
        """Next reply. Raises socket.timeout if none is complete within
        ``timeout`` seconds (None: the connection's default timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                value, pos = _parse(self.buf, 0)
                del self.buf[:pos]
                return value
            except _Incomplete:
                pass
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("no complete reply")
                self.sock.settimeout(left)
            else:
                self.sock.settimeout(self.timeout)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk

    def command(self, *args):
        self.send(*args)
        reply = self.read_reply()
        if isinstance(reply, RedisError):
            raise reply
        return reply


class Subscriber:
    """A connection in subscribe mode.

    The constructor returns once Redis has confirmed every subscription, so
    anything published afterwards is received.
    """

    def __init__(self, host, port, *channels, pattern=False, timeout=5.0,
                 password=None):
        self.conn = RespConnection(host, port, timeout=timeout)
        if password:
            self.conn.command("AUTH", password)
        self.pattern = pattern
        verb = "PSUBSCRIBE" if pattern else "SUBSCRIBE"
        self.conn.send(verb, *channels)
        self._pending = []
        confirmed = 0
        while confirmed < len(channels):
            reply = self.conn.read_reply(timeout=timeout)
            if (isinstance(reply, list) and reply
                    and reply[0] in (b"subscribe", b"psubscribe")):
                confirmed += 1
            elif isinstance(reply, RedisError):
                raise reply
            else:
                self._pending.append(reply)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def get_message(self, timeout=5.0):
        """Next (channel, payload) pair as bytes, or None after ``timeout``
        seconds without one. Raises ConnectionError if Redis went away."""
        deadline = time.monotonic() + timeout
        while True:
            if self._pending:
                reply = self._pending.pop(0)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    reply = self.conn.read_reply(timeout=left)
                except socket.timeout:
                    return None
            if not isinstance(reply, list):
                continue
            if reply[0] == b"message" and len(reply) == 3:
                return reply[1], reply[2]
            if reply[0] == b"pmessage" and len(reply) == 4:
                return reply[2], reply[3]

    def get(self, timeout=5.0):
        """Payload of the next message as bytes, or None after ``timeout``."""
        msg = self.get_message(timeout)
        return None if msg is None else msg[1]

    def drain(self, timeout=0.2):
        """All payloads arriving until ``timeout`` seconds pass quietly."""
        out = []
        while True:
            payload = self.get(timeout)
            if payload is None:
                return out
            out.append(payload)


class FakeRedis:
    """A hostile or scripted Redis: a TCP server on a free loopback port
    that reads RESP commands and answers each through ``answer(cmd,
    port)``, where ``cmd`` is the command as a list of bytes and ``port``
    this server's (to name itself in a MOVED or a CLUSTER SLOTS). It
    returns the reply's bytes, or an iterable of byte strings sent in
    turn (a reply too big to build at once; empty: no reply at all).

    ``port``; ``accepted`` counts the connections. close() (or the end of
    a ``with`` block) stops listening and drops every connection."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.done = False
        self._conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def __repr__(self):
        return "<FakeRedis port=%s>" % self.port

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _serve(self):
        while not self.done:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            threading.Thread(target=self._talk, args=(conn,),
                             daemon=True).start()

    def _talk(self, conn):
        buf = bytearray()
        try:
            while not self.done:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while True:
                    try:
                        cmd, pos = _parse(buf, 0)
                    except _Incomplete:
                        break
                    del buf[:pos]
                    out = self.answer(cmd, self.port)
                    for part in [out] if isinstance(out, bytes) else out:
                        conn.sendall(part)
        except (OSError, RedisError):   # the peer left, or sent no RESP
            pass
        finally:
            conn.close()

    def close(self):
        self.done = True
        self.sock.close()
        for conn in self._conns:
            try:                # wakes the thread blocked in recv()
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def save(command, timeout=30):
    """SAVE through command; while a background save runs (a replica's
    full sync starts one) SAVE is refused, so wait for it to end."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return command("SAVE")
        except RedisError as e:
            if "in progress" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Redis:
    """A throwaway redis-server, no persistence.

    ``password`` sets ``requirepass`` (and ``masterauth``, so the server
    can also be a replica of another with the same password); connect()
    then authenticates, and ``url`` carries it.

    Beyond start/stop/restart: ``kill(sig)`` (SIGKILL by default: a crash;
    the directory stays for a later restart), ``pause()``/``resume()``
    (SIGSTOP/SIGCONT), ``snapshot()`` (SAVE, the RDB moved aside, its path
    returned), ``restart(rdb=path)`` (restart from that snapshot: a server
    that comes back with older data), ``restart_empty()`` (comes back with
    no data), ``info()`` and ``role()``.
    """

    host = "127.0.0.1"

    def __init__(self, binary="redis-server", extra_args=(), password=None):
        self.binary = binary
        self.extra_args = list(extra_args)
        self.password = password
        self.port = None
        self.tmpdir = None
        self.logfile = None
        self.proc = None
        self._snapshots = 0

    def __repr__(self):
        return "<Redis port=%s>" % self.port

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self):
        if self.password:
            return "redis://:%s@%s:%d" % (self.password, self.host, self.port)
        return "redis://%s:%d" % (self.host, self.port)

    @property
    def addr(self):
        """``127.0.0.1:PORT``."""
        return "%s:%d" % (self.host, self.port)

    def start(self):
        if self.running:
            return self
        _register(self)
        self.tmpdir = tempfile.mkdtemp(prefix="pginval-redis-", dir="/tmp")
        self.logfile = os.path.join(self.tmpdir, "redis.log")
        last_error = None
        for _ in range(5):  # another process may grab the port first
            self.port = free_port()
            try:
                self._spawn()
                return self
            except ServerError as exc:
                last_error = exc
        self.stop()
        raise last_error

    def _argv(self):
        argv = [self.binary, "--port", str(self.port), "--bind", self.host,
                "--save", "", "--appendonly", "no", "--dir", self.tmpdir,
                "--daemonize", "no", "--logfile", self.logfile]
        if self.password:
            argv += ["--requirepass", self.password,
                     "--masterauth", self.password]
        return argv + self._mode_args() + self.extra_args

    def _mode_args(self):
        """Arguments a subclass adds before ``extra_args``."""
        return []

    def _spawn(self):
        # Own session: stop() can kill the whole process group.
        self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        # PONG only once an RDB is loaded (-LOADING until then). Generous:
        # the machine may be busy with other servers.
        deadline = time.monotonic() + 30
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise ServerError("%s on port %s exited at start:\n%s"
                                  % (self.binary, self.port, self.log_tail()))
            try:
                with self.connect(timeout=1) as c:
                    if c.command("PING") == "PONG":
                        return
            except (OSError, RedisError) as exc:
                last = exc
            time.sleep(0.02)
        self._kill()
        raise ServerError("%s on port %s did not answer PING within 30 s "
                          "(last: %s):\n%s" % (self.binary, self.port, last,
                                               self.log_tail()))

    def _kill(self):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self):
        """Stop the server and delete its directory."""
        try:
            self._kill()
        finally:
            if self.tmpdir and os.path.isdir(self.tmpdir):
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
            _unregister(self)

    def restart(self, rdb=None):
        """Stop and start again on the same port (data is not kept: no
        save on shutdown). With ``rdb`` (a path from snapshot()), the
        server starts from that snapshot instead, as after a restart from
        an older backup."""
        self._kill()
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix="pginval-redis-", dir="/tmp")
            self.logfile = os.path.join(self.tmpdir, "redis.log")
        _register(self)
        dump = os.path.join(self.tmpdir, "dump.rdb")
        if rdb is not None:
            shutil.copyfile(rdb, dump)
        self._spawn()
        if rdb is not None:
            os.remove(dump)   # loaded: the next restart() starts empty
        return self

    def restart_empty(self):
        """Crash (SIGKILL: nothing saved) and start again with no data,
        as a server whose disk was lost."""
        self.kill()
        for name in ("dump.rdb", "appendonlydir"):
            path = os.path.join(self.tmpdir, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.remove(path)
        return self.restart()

    def snapshot(self):
        """SAVE, then move the RDB aside (so that a later restart() does
        not load it); returns the snapshot's path for restart(rdb=...)."""
        save(self.command)
        self._snapshots += 1
        path = os.path.join(self.tmpdir, "snapshot-%d.rdb" % self._snapshots)
        os.replace(os.path.join(self.tmpdir, "dump.rdb"), path)
        return path

    def kill(self, sig=signal.SIGKILL):
        """Send ``sig`` (a crash by default) and wait for the process to
        end. The directory stays: restart() brings the server back."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._kill()
        self.proc = None

    def pause(self):
        """SIGSTOP: the server stops answering, its links stay open."""
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.killpg(self.proc.pid, signal.SIGCONT)

    def log_tail(self, nbytes=4000):
        try:
            with open(self.logfile, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - nbytes))
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def connect(self, timeout=5.0):
        """A new RespConnection (close it, or use it with ``with``),
        authenticated when the server has a password."""
        conn = RespConnection(self.host, self.port, timeout=timeout)
        if self.password:
            try:
                conn.command("AUTH", self.password)
            except BaseException:
                conn.close()
                raise
        return conn

    def command(self, *args):
        """Send one command on a fresh connection and return the parsed
        reply; an error reply is raised as RedisError."""
        with self.connect() as conn:
            return conn.command(*args)

    def info(self, *sections):
        """INFO as a dict of str: str."""
        text = self.command("INFO", *sections).decode("utf-8", "replace")
        return _info_dict(text)

    def role(self):
        """ROLE, with bulk strings decoded: ['master', offset, [[ip,
        port, offset], ...]] or ['slave', ip, port, state, offset]."""
        return _decode(self.command("ROLE"))

    def subscribe(self, *channels, timeout=5.0):
        """A Subscriber on ``channels``, already confirmed by Redis."""
        return Subscriber(self.host, self.port, *channels, timeout=timeout,
                          password=self.password)

    def psubscribe(self, *patterns, timeout=5.0):
        return Subscriber(self.host, self.port, *patterns, pattern=True,
                          timeout=timeout, password=self.password)


def _info_dict(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, value = line.split(":", 1)
            out[key] = value
    return out


def _decode(value):
    """Bulk strings (bytes) to str, recursively; the rest as it is."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


# --------------------------------------------------------------------------
# Redis Cluster and Redis Sentinel
# --------------------------------------------------------------------------

class _NotYet(Exception):
    """What a wait is still waiting for."""


def _wait(what, check, timeout, logs=()):
    """Calls check() until it returns a true value, and returns that.

    check() raises _NotYet (or a Redis or socket error) to say why not
    yet; the last reason goes into the ServerError raised after
    ``timeout`` seconds, with the log tails of ``logs`` (servers, or a
    callable returning them)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = check()
            if value:
                return value
        except (_NotYet, RedisError, OSError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    msg = "%s: not within %g s (last: %s)" % (what, timeout, last)
    for server in (logs() if callable(logs) else logs):
        msg += "\n--- %r log tail:\n%s" % (server, server.log_tail(1500))
    raise ServerError(msg)


def _kv(flat):
    """A flat [key, value, ...] reply as a dict with str keys."""
    flat = _decode(flat)
    return dict(zip(flat[0::2], flat[1::2]))


class Unsubscribed(Exception):
    """A sharded subscriber got a ``sunsubscribe`` it did not ask for: its
    channel's slot left the node (a migration, a failover)."""

    def __init__(self, channel, count):
        self.channel = channel
        self.count = count
        super().__init__("unrequested sunsubscribe from %r (%d left)"
                         % (channel, count))


class ShardedSubscriber:
    """A connection in sharded subscribe mode (SSUBSCRIBE, Redis 7).

    The constructor follows ``-MOVED`` to the owner of the channels' slot
    (all channels must share a slot) and returns once every subscription
    is confirmed; ``host``/``port`` then say where it is. get() returns the
    next ``smessage`` payload and raises Unsubscribed for a
    ``sunsubscribe`` (this class never sends SUNSUBSCRIBE, so any is
    unrequested); get_event() returns every event as a tuple instead:
    ("smessage", channel, payload), ("sunsubscribe", channel, count),
    ("eof", None, None), or None after the timeout. resubscribe() starts
    over from the same node (or another), following MOVED again.
    """

    def __init__(self, host, port, *channels, timeout=5.0, password=None,
                 max_redirects=5):
        self.host, self.port = host, port
        self.channels = list(channels)
        self.timeout = timeout
        self.password = password
        self.max_redirects = max_redirects
        self.conn = None
        self._pending = []
        self._subscribe()

    def _subscribe(self):
        for _ in range(self.max_redirects + 1):
            self.close()
            self.conn = RespConnection(self.host, self.port,
                                       timeout=self.timeout)
            if self.password:
                self.conn.command("AUTH", self.password)
            self.conn.send("SSUBSCRIBE", *self.channels)
            confirmed = 0
            while confirmed < len(self.channels):
                reply = self.conn.read_reply(timeout=self.timeout)
                if isinstance(reply, RedisError):
                    words = str(reply).split()
                    if len(words) != 3 or words[0] != "MOVED":
                        self.close()
                        raise reply
                    host, _, port = words[2].rpartition(":")
                    self.host, self.port = host or self.host, int(port)
                    break
                if (isinstance(reply, list) and reply
                        and reply[0] == b"ssubscribe"):
                    confirmed += 1
                else:
                    self._pending.append(reply)
            else:
                return
        self.close()
        raise ServerError("SSUBSCRIBE %s: still redirected after %d MOVED"
                          % (" ".join(self.channels), self.max_redirects))

    def resubscribe(self, node=None):
        """Subscribe again (after an Unsubscribed or an EOF), following
        MOVED from the node it was on, or from ``node`` (anything with
        host and port: after an EOF, the old node may be gone). Events not
        read yet are dropped."""
        if node is not None:
            self.host, self.port = node.host, node.port
        self._pending = []
        self._subscribe()

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def get_event(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            if self._pending:
                reply = self._pending.pop(0)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    reply = self.conn.read_reply(timeout=left)
                except socket.timeout:
                    return None
                except (ConnectionError, OSError):
                    return ("eof", None, None)
            if not isinstance(reply, list) or len(reply) != 3:
                continue
            if reply[0] == b"smessage":
                return ("smessage", reply[1], reply[2])
            if reply[0] == b"sunsubscribe":
                return ("sunsubscribe", reply[1], reply[2])

    def get(self, timeout=5.0):
        """Payload of the next smessage as bytes, or None after
        ``timeout``. Raises Unsubscribed, or ConnectionError at EOF."""
        event = self.get_event(timeout)
        if event is None:
            return None
        if event[0] == "sunsubscribe":
            raise Unsubscribed(event[1], event[2])
        if event[0] == "eof":
            raise ConnectionError("redis %s:%d closed the sharded "
                                  "subscriber's link" % (self.host, self.port))
        return event[2]

    def drain(self, timeout=0.2):
        """All payloads arriving until ``timeout`` seconds pass quietly."""
        out = []
        while True:
            payload = self.get(timeout)
            if payload is None:
                return out
            out.append(payload)


# A replica loads a full sync from the socket instead of writing it to
# dump.rdb first, so that no node keeps an RDB a restart would load: a
# restart starts empty unless a test hands it a snapshot.
_NO_DUMP = ["--repl-diskless-load", "swapdb"]


class ClusterNode(Redis):
    """One redis-server of a RedisCluster: cluster mode, its nodes.conf in
    its own directory, and a bus port of its own (``cluster-port``, so
    that PORT+10000 need not be free). ``id`` is its node id."""

    def __init__(self, node_timeout=1500, extra_args=()):
        super().__init__(extra_args=extra_args)
        self.node_timeout = node_timeout
        self.bus_port = None
        self._bus_for = None
        self._id = None

    def __repr__(self):
        return "<ClusterNode %s:%s>" % (self.host, self.port)

    def _mode_args(self):
        if self._bus_for != self.port:   # a new port: a new bus port too
            self.bus_port, self._bus_for = free_port(), self.port
        return ["--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-port", str(self.bus_port),
                "--cluster-node-timeout", str(self.node_timeout),
                # A replica promotes however long its link was down: tests
                # stop replicas (SIGSTOP) on purpose.
                "--cluster-replica-validity-factor", "0",
                "--enable-debug-command", "local",
                # Replicas sync at once, not after the default 5 s; and
                # leave "loading" (offset 0 in CLUSTER SHARDS) within 1 s,
                # when the master's first ping reaches them, not 10 s.
                "--repl-diskless-sync-delay", "0",
                "--repl-ping-replica-period", "1"] + _NO_DUMP

    @property
    def id(self):
        if self._id is None:            # stable: nodes.conf keeps it
            self._id = _decode(self.command("CLUSTER", "MYID"))
        return self._id

    def cluster_info(self):
        return _info_dict(_decode(self.command("CLUSTER", "INFO")))

    def slot_map(self):
        """CLUSTER SLOTS as sorted (start, end, master_port) tuples."""
        return sorted((r[0], r[1], r[2][1])
                      for r in self.command("CLUSTER", "SLOTS"))

    def cluster_nodes(self):
        """CLUSTER NODES as dicts: id, port, flags (a set), master (an id
        or "-"), slots (the rest of the line)."""
        out = []
        for line in _decode(self.command("CLUSTER", "NODES")).splitlines():
            f = line.split()
            if len(f) < 8:
                continue
            addr = f[1].split("@")[0]
            out.append({"id": f[0], "port": int(addr.rpartition(":")[2]),
                        "flags": set(f[2].split(",")), "master": f[3],
                        "slots": f[8:]})
        return out


class RedisCluster:
    """A throwaway Redis Cluster: ``masters`` masters with ``replicas``
    replicas each, one redis-server per node on free loopback ports,
    created with ``redis-cli --cluster create``; ``replicas=0`` makes
    masters only (quicker to start, no failover).

    start() (or ``with``) returns once every node says cluster_state:ok,
    all agree on the slot map, and every node is ``online`` in CLUSTER
    SHARDS (replicas start as ``loading``); ``startup_s`` says how long
    that took. Nodes run with no persistence (``save ""`` unless ``save``
    is given) and ``--enable-debug-command local``.

    Topology (asked of a live node each time, never cached):
      nodes                 every ClusterNode (host, port, url, command())
      seed_url              redis://127.0.0.1:PORT of the first node
      keyslot(key)          CLUSTER KEYSLOT
      owner(slot)           the master serving the slot
      node_for(key)         owner(keyslot(key))
      masters()             the masters serving slots, by first slot
      replica_of(master)    a live replica of it, or None
      all_keys()            SCAN of every master, as a sorted list
      flushall()            FLUSHALL on every master
    Changes:
      migrate_slot(slot, dst)     the whole move, in one call; or in steps:
        start_migration(slot, dst)  IMPORTING on dst, MIGRATING on the
                                    owner (returns it): the slot is now
                                    MIGRATING, tests can act
        migrate_keys(slot, dst, keys=None)  MIGRATE those keys (default:
                                    all, GETKEYSINSLOT in batches)
        finish_migration(slot, dst) the remaining keys, SETSLOT NODE on
                                    every master, wait until all agree
      kill_master(node)     SIGKILL a master (remembers its replicas)
      wait_failover(old)    the promoted replica, once the cluster is ok
      snapshot(node)        SAVE, the RDB moved aside; returns its path
      restart_node(node, rdb=None)  same port and nodes.conf, starting from
                                    ``rdb`` if given, else empty (a
                                    replica then syncs from its master);
                                    waits until the cluster is ok and no
                                    node flags it failed
      wait_ok(replicas_online=False)
    Pub/sub:
      ssubscribe(*channels, node=None)  a ShardedSubscriber, at the owner
                                    unless ``node`` says where to start
      spublish(channel, payload)  SPUBLISH at the owner
    """

    def __init__(self, masters=3, replicas=1, node_timeout=1500, save=None,
                 extra_args=()):
        self.n_masters = masters
        self.n_replicas = replicas
        self.node_timeout = node_timeout
        self.args = list(extra_args)
        if save is not None:
            self.args += ["--save", save]
        self.nodes = []
        self.startup_s = None
        self._lost = {}          # killed master -> (its replicas, a slot)

    def __repr__(self):
        return "<RedisCluster %s>" % " ".join(n.addr for n in self.nodes
                                              if n.port)

    def __enter__(self):
        if not self.nodes:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        _register(self)
        t0 = time.monotonic()
        try:
            for _ in range(self.n_masters * (1 + self.n_replicas)):
                node = ClusterNode(self.node_timeout, self.args)
                self.nodes.append(node)
                node.start()
            self._create()
            self.wait_ok(replicas_online=True)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def _create(self):
        argv = (["redis-cli", "--cluster", "create"]
                + [n.addr for n in self.nodes]
                + ["--cluster-replicas", str(self.n_replicas),
                   "--cluster-yes"])
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=90)
        except subprocess.TimeoutExpired:
            raise ServerError("redis-cli --cluster create took over 90 s")
        if proc.returncode != 0:
            raise ServerError("redis-cli --cluster create failed (exit %d):"
                              "\n%s%s" % (proc.returncode, proc.stdout[-2000:],
                                          proc.stderr[-2000:]))

    def stop(self):
        try:
            for node in self.nodes:
                node.stop()
        finally:
            _unregister(self)

    @property
    def seed_url(self):
        return self.nodes[0].url

    def running(self):
        return [n for n in self.nodes if n.running]

    def _any(self):
        for node in self.running():
            try:
                if node.command("PING") == "PONG":
                    return node
            except (OSError, RedisError):
                pass
        raise ServerError("no node of %r answers" % self)

    def by_port(self, port):
        for node in self.nodes:
            if node.port == int(port):
                return node
        raise ServerError("no node of %r has port %s" % (self, port))

    # -- topology -----------------------------------------------------------

    def keyslot(self, key):
        return self._any().command("CLUSTER", "KEYSLOT", key)

    def owner(self, slot):
        for start, end, port in self._any().slot_map():
            if start <= slot <= end:
                return self.by_port(port)
        raise ServerError("slot %d is not served (%r)" % (slot, self))

    def node_for(self, key):
        return self.owner(self.keyslot(key))

    def masters(self):
        ports = []
        for _, _, port in self._any().slot_map():
            if port not in ports:
                ports.append(port)
        return [self.by_port(p) for p in ports]

    def replicas_of(self, master):
        """Live replicas of ``master``, as CLUSTER NODES says."""
        out = []
        for n in self._any().cluster_nodes():
            if n["master"] == master.id and not n["flags"] & {"fail",
                                                              "fail?"}:
                node = self.by_port(n["port"])
                if node.running:
                    out.append(node)
        return out

    def replica_of(self, master):
        replicas = self.replicas_of(master)
        return replicas[0] if replicas else None

    def all_keys(self):
        keys = set()
        for node in self.masters():
            with node.connect() as conn:
                cursor = b"0"
                while True:
                    cursor, batch = conn.command("SCAN", cursor, "COUNT",
                                                 1000)
                    keys.update(batch)
                    if cursor == b"0":
                        break
        return sorted(keys)

    def flushall(self):
        for node in self.masters():
            node.command("FLUSHALL")

    def _check_ok(self, replicas_online=False):
        live = self.running()
        views = {}
        for node in live:
            state = node.cluster_info().get("cluster_state")
            if state != "ok":
                raise _NotYet("%s says cluster_state:%s" % (node.addr, state))
            views[node.addr] = node.slot_map()
        if len({repr(v) for v in views.values()}) > 1:
            raise _NotYet("the nodes disagree on the slot map: %r" % views)
        if replicas_online:
            for node in live:
                health = {}
                for shard in node.command("CLUSTER", "SHARDS"):
                    for n in _kv(shard).get("nodes", []):
                        n = _kv(n)
                        health[n.get("port")] = n.get("health")
                for other in live:
                    if health.get(other.port) != "online":
                        raise _NotYet("%s sees %s as %s" % (
                            node.addr, other.addr, health.get(other.port)))
        return True

    def wait_ok(self, replicas_online=False, timeout=60):
        """Every running node: cluster_state:ok, the same slot map and,
        with ``replicas_online``, every running node online."""
        return _wait("cluster %r ready" % self,
                     lambda: self._check_ok(replicas_online), timeout,
                     self.running)

    # -- slot migration -----------------------------------------------------

    def start_migration(self, slot, dst):
        src = self.owner(slot)
        if src is dst:
            raise ServerError("slot %d is on %s already" % (slot, dst.addr))
        dst.command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.id)
        src.command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.id)
        return src

    def migrate_keys(self, slot, dst, keys=None, batch=100):
        """MIGRATE ``keys`` (default: every key of the slot still on the
        source) from the slot's owner to ``dst``; returns how many moved."""
        src = self.owner(slot)
        moved = 0
        while True:
            if keys is None:
                chunk = src.command("CLUSTER", "GETKEYSINSLOT", slot, batch)
            else:
                chunk, keys = keys[:batch], keys[batch:]
            if not chunk:
                return moved
            reply = src.command("MIGRATE", dst.host, dst.port, "", 0, 10000,
                                "REPLACE", "KEYS", *chunk)
            if reply == "OK":
                moved += len(chunk)

    def finish_migration(self, slot, dst):
        src = self.owner(slot)
        self.migrate_keys(slot, dst)
        # The target first: it bumps its epoch and wins any conflict.
        for node in [dst, src] + [m for m in self.masters()
                                  if m not in (dst, src)]:
            node.command("CLUSTER", "SETSLOT", slot, "NODE", dst.id)

        def moved():
            for node in self.running():
                for start, end, port in node.slot_map():
                    if start <= slot <= end and port != dst.port:
                        raise _NotYet("%s still maps slot %d to port %d"
                                      % (node.addr, slot, port))
            return True
        _wait("slot %d on %s everywhere" % (slot, dst.addr), moved, 30,
              self.running)

    def migrate_slot(self, slot, dst):
        """Move ``slot`` and its keys to master ``dst``."""
        self.start_migration(slot, dst)
        self.finish_migration(slot, dst)

    # -- failures and restarts ----------------------------------------------

    def kill_master(self, node):
        slots = [s for s, _, p in self._any().slot_map() if p == node.port]
        if not slots:
            raise ServerError("%s serves no slot: not a master" % node.addr)
        replicas = self.replicas_of(node)
        if not replicas:
            raise ServerError("%s has no live replica to promote" % node.addr)
        self._lost[node] = (replicas, slots[0])
        node.kill()

    def wait_failover(self, old, timeout=60):
        """The replica promoted in place of the killed master ``old``,
        once every running node says cluster_state:ok and maps the old
        master's slots to it (about node_timeout + 2 s)."""
        replicas, slot = self._lost[old]

        def promoted():
            new = None
            for node in replicas:
                if node.running and node.role()[0] == "master":
                    new = node
            if new is None:
                raise _NotYet("no replica of %s is a master yet" % old.addr)
            self._check_ok()
            if self.owner(slot) is not new:
                raise _NotYet("slot %d is not on %s yet" % (slot, new.addr))
            return new
        return _wait("failover of %s" % old.addr, promoted, timeout,
                     self.running)

    def snapshot(self, node):
        return node.snapshot()

    def restart_node(self, node, rdb=None, timeout=60):
        node.restart(rdb=rdb)

        def back():
            for other in self.running():
                for n in other.cluster_nodes():
                    if n["port"] == node.port and n["flags"] & {"fail",
                                                                "fail?"}:
                        raise _NotYet("%s flags %s %s" % (
                            other.addr, node.addr, ",".join(n["flags"])))
            return self._check_ok()
        _wait("%s back in the cluster" % node.addr, back, timeout,
              self.running)
        return node

    # -- sharded pub/sub ----------------------------------------------------

    def ssubscribe(self, *channels, node=None, timeout=5.0):
        node = node or self.node_for(channels[0])
        return ShardedSubscriber(node.host, node.port, *channels,
                                 timeout=timeout)

    def spublish(self, channel, payload):
        return self.node_for(channel).command("SPUBLISH", channel, payload)


class SentinelNode(Redis):
    """A redis-server in sentinel mode (``--sentinel``), with its own
    sentinel.conf (which Sentinel rewrites) in its directory."""

    def __init__(self, conf_lines, password=None, debug=()):
        super().__init__(password=password)
        self.conf_lines = list(conf_lines)
        self.debug = list(debug)

    def __repr__(self):
        return "<SentinelNode %s:%s>" % (self.host, self.port)

    def _argv(self):
        conf = os.path.join(self.tmpdir, "sentinel.conf")
        if not os.path.exists(conf):
            with open(conf, "w") as f:
                f.write("\n".join(self.conf_lines) + "\n")
        argv = [self.binary, conf, "--sentinel", "--port", str(self.port),
                "--bind", self.host, "--dir", self.tmpdir,
                "--daemonize", "no", "--logfile", self.logfile]
        if self.password:
            argv += ["--requirepass", self.password]
        return argv + self.extra_args

    def _spawn(self):
        super()._spawn()
        if self.debug:
            self.command("SENTINEL", "DEBUG", *self.debug)


class RedisSentinel:
    """A throwaway Sentinel setup: 1 master, ``replicas`` replicas and
    ``sentinels`` sentinels monitoring it as ``mymaster`` (quorum 2).

    ``password`` is the data nodes' requirepass (and masterauth; the
    sentinels get it as auth-pass); ``sentinel_password`` the sentinels'
    own requirepass (and sentinel-pass, between them). start() (or
    ``with``) returns once the replicas are in sync and every sentinel
    knows the master, every replica (link ok) and every other sentinel;
    ``startup_s`` says how long that took.

      data_nodes          the Redis data nodes (the first was the master)
      sentinels           the SentinelNode processes
      sentinel_addrs      "127.0.0.1:P1, 127.0.0.1:P2, 127.0.0.1:P3"
      master_addr()       (host, port) as the first answering sentinel says
      master              the data node that master_addr() names
      replica / replicas  the other running data node(s)
      failover()          SENTINEL FAILOVER; returns the new master once
                          every sentinel names it and its ROLE is master
      kill_master()       SIGKILL the master; returns the promoted replica
      wait_demoted(node)  until ``node`` is a replica of the current master
                          (an old master turns replica some 10 s after a
                          failover: it stays a writable master till then)
      restart_node(node, rdb=None)  restart a data node (Redis.restart)
    """

    name = "mymaster"

    def __init__(self, replicas=1, sentinels=3, down_after=1000,
                 password=None, sentinel_password=None, failover_timeout=3000,
                 quorum=2):
        self.n_replicas = replicas
        self.n_sentinels = sentinels
        self.down_after = down_after
        self.failover_timeout = failover_timeout
        self.quorum = quorum
        self.password = password
        self.sentinel_password = sentinel_password
        self.data_nodes = []
        self.sentinels = []
        self.startup_s = None

    def __repr__(self):
        return "<RedisSentinel %s>" % self.sentinel_addrs

    def __enter__(self):
        if not self.data_nodes:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _all(self):
        return self.data_nodes + self.sentinels

    def start(self):
        _register(self)
        t0 = time.monotonic()
        args = ["--enable-debug-command", "local",
                "--repl-diskless-sync-delay", "0"] + _NO_DUMP
        try:
            master = Redis(password=self.password, extra_args=args)
            self.data_nodes.append(master)
            master.start()
            for _ in range(self.n_replicas):
                node = Redis(password=self.password, extra_args=args)
                self.data_nodes.append(node)
                node.start()
                node.command("REPLICAOF", master.host, master.port)
            _wait("replicas in sync with %s" % master.addr,
                  lambda: self._in_sync(master), 60, self.data_nodes)
            # Started after the replicas are in sync: a sentinel learns
            # them from its first INFO of the master.
            for _ in range(self.n_sentinels):
                node = SentinelNode(self._sentinel_conf(master),
                                    password=self.sentinel_password,
                                    debug=["tilt-period", 5000])
                self.sentinels.append(node)
                node.start()
            _wait("sentinels ready", self._sentinels_ready, 60, self._all)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def _sentinel_conf(self, master):
        conf = ["sentinel monitor %s %s %d %d" % (self.name, master.host,
                                                  master.port, self.quorum),
                "sentinel down-after-milliseconds %s %d"
                % (self.name, self.down_after),
                "sentinel failover-timeout %s %d"
                % (self.name, self.failover_timeout),
                "sentinel parallel-syncs %s 1" % self.name]
        if self.password:
            conf.append("sentinel auth-pass %s %s" % (self.name,
                                                      self.password))
        if self.sentinel_password:
            conf.append("sentinel sentinel-pass %s" % self.sentinel_password)
        return conf

    def _in_sync(self, master):
        role = master.role()
        if len(role[2]) < self.n_replicas:
            raise _NotYet("%s has %d replicas" % (master.addr, len(role[2])))
        for node in self.data_nodes[1:]:
            role = node.role()
            if role[0] != "slave" or role[3] != "connected":
                raise _NotYet("%s: ROLE %r" % (node.addr, role))
        return True

    def _sentinels_ready(self):
        master = self.data_nodes[0]
        for s in self.sentinels:
            addr = s.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
            if addr is None or int(addr[1]) != master.port:
                raise _NotYet("%s names master %r" % (s.addr, addr))
            reps = [_kv(r) for r in s.command("SENTINEL", "REPLICAS",
                                              self.name)]
            ok = [r for r in reps if r.get("flags") == "slave"
                  and r.get("master-link-status") == "ok"]
            if len(ok) < self.n_replicas:
                raise _NotYet("%s knows replicas %r" % (s.addr, reps))
            peers = s.command("SENTINEL", "SENTINELS", self.name)
            if len(peers) < self.n_sentinels - 1:
                raise _NotYet("%s knows %d other sentinels" % (s.addr,
                                                               len(peers)))
        return True

    def stop(self):
        try:
            for node in self.sentinels + self.data_nodes:
                node.stop()
        finally:
            _unregister(self)

    @property
    def sentinel_addrs(self):
        return ", ".join(s.addr for s in self.sentinels)

    def master_addr(self):
        last = None
        for s in self.sentinels:
            if not s.running:
                continue
            try:
                addr = s.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                 self.name)
            except (OSError, RedisError) as exc:
                last = exc
                continue
            if addr:
                return _decode(addr[0]), int(addr[1])
        raise ServerError("no sentinel of %r names the master (last: %s)"
                          % (self, last))

    def _node(self, port):
        for node in self.data_nodes:
            if node.port == port:
                return node
        raise ServerError("the sentinels name port %d, not a data node of %r"
                          % (port, self))

    @property
    def master(self):
        return self._node(self.master_addr()[1])

    @property
    def replicas(self):
        master = self.master
        return [n for n in self.data_nodes if n is not master and n.running]

    @property
    def replica(self):
        replicas = self.replicas
        return replicas[0] if replicas else None

    def _wait_switch(self, old_port, timeout):
        def switched():
            ports = set()
            for s in self.sentinels:
                if s.running:
                    addr = s.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                     self.name)
                    ports.add(int(addr[1]))
            if len(ports) != 1 or old_port in ports:
                raise _NotYet("the sentinels name ports %r" % sorted(ports))
            new = self._node(ports.pop())
            if new.role()[0] != "master":
                raise _NotYet("%s: ROLE %r" % (new.addr, new.role()))
            return new
        return _wait("failover from port %d" % old_port, switched, timeout,
                     self._all)

    def failover(self, timeout=60):
        """A graceful failover; returns the new master node."""
        old = self.master_addr()[1]

        def asked():
            # -NOGOODSLAVE or -INPROG until the sentinels are settled.
            return self.sentinels[0].command("SENTINEL", "FAILOVER",
                                             self.name) == "OK"
        _wait("SENTINEL FAILOVER accepted", asked, timeout, self.sentinels)
        return self._wait_switch(old, timeout)

    def kill_master(self, timeout=60):
        """SIGKILL the master; returns the promoted replica (about
        down_after + 2 s later)."""
        old = self.master
        old.kill()
        return self._wait_switch(old.port, timeout)

    def wait_demoted(self, node, timeout=60):
        def demoted():
            role = node.role()
            if role[0] != "slave" or role[2] != self.master_addr()[1]:
                raise _NotYet("%s: ROLE %r" % (node.addr, role))
            return True
        return _wait("%s a replica" % node.addr, demoted, timeout, self._all)

    def restart_node(self, node, rdb=None):
        return node.restart(rdb=rdb)
