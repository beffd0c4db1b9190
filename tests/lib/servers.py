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
import time

__all__ = [
    "Postgres", "Redis", "Subscriber", "RespConnection",
    "PsqlError", "RedisError", "ServerError", "free_port", "pg_bindir",
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
        proc = self._run_server_tool([
            self._bin("initdb"), "-D", self.datadir, "-A", "trust",
            "--nosync", "-U", self.user, "-E", "UTF8", "--locale=C"])
        if proc.returncode != 0:
            self._remove_tmpdir()
            _unregister(self)
            raise ServerError("initdb failed:\n" + proc.stdout + proc.stderr)
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

    def __init__(self, host, port, *channels, pattern=False, timeout=5.0):
        self.conn = RespConnection(host, port, timeout=timeout)
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


class Redis:
    """A throwaway redis-server, no persistence."""

    host = "127.0.0.1"

    def __init__(self, binary="redis-server", extra_args=()):
        self.binary = binary
        self.extra_args = list(extra_args)
        self.port = None
        self.tmpdir = None
        self.logfile = None
        self.proc = None

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
        return "redis://%s:%d" % (self.host, self.port)

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

    def _spawn(self):
        argv = [self.binary, "--port", str(self.port), "--bind", self.host,
                "--save", "", "--appendonly", "no", "--dir", self.tmpdir,
                "--daemonize", "no", "--logfile", self.logfile] \
            + self.extra_args
        # Own session: stop() can kill the whole process group.
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise ServerError("redis-server exited at start:\n"
                                  + self.log_tail())
            try:
                with RespConnection(self.host, self.port, timeout=1) as c:
                    if c.command("PING") == "PONG":
                        return
            except (OSError, RedisError):
                pass
            time.sleep(0.02)
        self._kill()
        raise ServerError("redis-server did not answer PING:\n"
                          + self.log_tail())

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

    def restart(self):
        """Stop and start again on the same port (data is not kept)."""
        self._kill()
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix="pginval-redis-", dir="/tmp")
            self.logfile = os.path.join(self.tmpdir, "redis.log")
        _register(self)
        self._spawn()
        return self

    def log_tail(self, nbytes=4000):
        try:
            with open(self.logfile, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - nbytes))
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def connect(self, timeout=5.0):
        """A new RespConnection (close it, or use it with ``with``)."""
        return RespConnection(self.host, self.port, timeout=timeout)

    def command(self, *args):
        """Send one command on a fresh connection and return the parsed
        reply; an error reply is raised as RedisError."""
        with self.connect() as conn:
            return conn.command(*args)

    def subscribe(self, *channels, timeout=5.0):
        """A Subscriber on ``channels``, already confirmed by Redis."""
        return Subscriber(self.host, self.port, *channels, timeout=timeout)

    def psubscribe(self, *patterns, timeout=5.0):
        return Subscriber(self.host, self.port, *patterns, pattern=True,
                          timeout=timeout)
