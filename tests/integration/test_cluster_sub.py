#!/usr/bin/env python3
"""The channel subscription of `pginval apply` and `pginval tail` on a real
Redis Cluster: SSUBSCRIBE at the node that owns the channel's slot when
`cluster = on` (following -MOVED from a seed that is not the owner, and the
slot when it migrates), SUBSCRIBE on any node with `cluster = broadcast`,
and hostile nodes that answer the subscription with garbage, a reply too
big to hold, or a MOVED loop.

    python3 tests/integration/test_cluster_sub.py [-v] [name-substring ...]
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "consistency"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import harness  # noqa: E402
import runner  # noqa: E402
from pginval_proc import BIN, SLOW, wait_for  # noqa: E402
from runner import eq  # noqa: E402
from servers import FakeRedis, Redis, RedisCluster, RedisError  # noqa: E402

CHANNEL = "pginval"
SLOT = 9865             # CLUSTER KEYSLOT pginval
TABLES = {"public.users": "user:{id}"}
CLUSTER = TARGET = None


class FakePG:
    """apply needs a [postgres] conninfo, and connects only to refresh."""
    conninfo = "host=127.0.0.1 port=1 dbname=unused"


def others(node):
    """The masters other than node."""
    return [m for m in CLUSTER.masters() if m is not node]


SEQ = iter(range(1, 1000000))
EPOCH = "e%d" % os.getpid()


def message(key):
    return json.dumps({"v": 1, "epoch": EPOCH, "seq": next(SEQ),
                       "op": "update", "table": "public.users",
                       "keys": [key], "ts": 1})


def apply_proc(seed, mode):
    return harness.Apply(FakePG, TARGET, TABLES,
                         redis_url="redis://127.0.0.1:%d" % seed.port,
                         extra={"redis.cluster": mode},
                         targets={"t": TARGET.url + "/0"})


def started(a):
    """Waits for the start reset, so that it sweeps no key of the test."""
    a.start(wait="")
    a.wait_log('channel: subscribed to "%s"' % CHANNEL)
    a.wait_log("swept keys matching")
    return a


def invalidated(send, key):
    """SETs key on the target, sends a message about it with send, and
    waits until apply deleted it. Returns what send returned."""
    TARGET.command("SET", key, "x")
    n = send(message(key))
    wait_for(lambda: TARGET.command("EXISTS", key) == 0, "apply deletes " + key)
    return n


def spublish(node):
    return lambda body: node.command("SPUBLISH", CHANNEL, body)


# -- tests --------------------------------------------------------------------

def test_apply_follows_moved_from_a_seed_that_is_not_the_owner():
    owner = CLUSTER.owner(SLOT)
    seed = others(owner)[0]
    try:
        seed.command("SSUBSCRIBE", CHANNEL)
        raise AssertionError("the seed serves the channel")
    except RedisError as e:
        assert str(e).startswith("MOVED %d " % SLOT), e
    a = started(apply_proc(seed, "on"))
    try:
        log = a.log_text()
        assert ('"%s" is served by 127.0.0.1:%d (MOVED) (127.0.0.1:%d)'
                % (CHANNEL, owner.port, seed.port)) in log, log
        assert ('subscribed to "%s" on 127.0.0.1:%d (sharded'
                % (CHANNEL, owner.port)) in log, log
        eq(invalidated(spublish(owner), "user:1"), 1, "SPUBLISH receivers")
        eq(invalidated(spublish(owner), "user:2"), 1, "SPUBLISH receivers")
        # A sharded subscriber hears nothing of a broadcast PUBLISH.
        eq(owner.command("PUBLISH", CHANNEL, message("user:3")), 0,
           "PUBLISH receivers on the owner")
    finally:
        a.stop()


def test_apply_broadcast_subscribes_on_any_node():
    seed, other = CLUSTER.nodes[0], CLUSTER.nodes[2]
    a = started(apply_proc(seed, "broadcast"))
    try:
        assert ('subscribed to "%s" on 127.0.0.1:%d\n'
                % (CHANNEL, seed.port)) in a.log_text(), a.log_text()
        invalidated(lambda body: other.command("PUBLISH", CHANNEL, body),
                    "user:10")
        eq(other.command("PUBLISH", CHANNEL, "x"), 0,
           "PUBLISH counts the receiving node's subscribers only")
    finally:
        a.stop()


def test_apply_resubscribes_at_the_new_owner_after_a_migration():
    owner = CLUSTER.owner(SLOT)
    a = started(apply_proc(others(owner)[0], "on"))
    try:
        invalidated(spublish(owner), "user:20")
        TARGET.command("SET", "user:21", "x")
        dst = others(owner)[1]
        CLUSTER.migrate_slot(SLOT, dst)
        a.wait_log("127.0.0.1:%d unsubscribed us from \"%s\"" % (owner.port,
                                                                 CHANNEL))
        a.wait_log('subscribed to "%s" on 127.0.0.1:%d (sharded'
                   % (CHANNEL, dst.port))
        # The resubscription is a gap: without a stream, a reset.
        a.wait_log("resubscribed: messages sent meanwhile were missed")
        wait_for(lambda: TARGET.command("EXISTS", "user:21") == 0,
                 "the reset after the resubscription")
        eq(invalidated(spublish(dst), "user:22"), 1, "SPUBLISH receivers")
        try:
            owner.command("SSUBSCRIBE", CHANNEL)
            raise AssertionError("the old owner still serves the channel")
        except RedisError as e:
            eq(str(e), "MOVED %d 127.0.0.1:%d" % (SLOT, dst.port))
    finally:
        a.stop()


class Tail:
    def __init__(self, config):
        fd, self.errfile = tempfile.mkstemp(prefix="pginval-tail-")
        with os.fdopen(fd, "wb") as err:
            self.proc = subprocess.Popen([BIN, "tail", "-c", config],
                                         stdout=subprocess.PIPE, stderr=err)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.decode("utf-8", "replace"))

    def stderr(self):
        with open(self.errfile, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def shown(self, text):
        return any(text in line for line in self.lines)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            eq(self.proc.wait(timeout=10 * SLOW), 0, "tail's exit status")
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            os.unlink(self.errfile)


def test_tail_shows_spublished_messages_and_follows_a_migration():
    owner = CLUSTER.owner(SLOT)
    seed = others(owner)[0]
    a = apply_proc(seed, "on")      # only its config
    t = Tail(a.config)
    try:
        wait_for(lambda: 'subscribed to "%s" on 127.0.0.1:%d'
                 % (CHANNEL, owner.port) in t.stderr(), "tail subscribes")
        eq(owner.command("SPUBLISH", CHANNEL, message("user:30")), 1,
           "SPUBLISH receivers")
        wait_for(lambda: t.shown("user:30"), "tail shows user:30")
        dst = others(owner)[1]
        CLUSTER.migrate_slot(SLOT, dst)
        wait_for(lambda: 'subscribed to "%s" on 127.0.0.1:%d'
                 % (CHANNEL, dst.port) in t.stderr(), "tail resubscribes")
        wait_for(lambda: t.shown("!! gap: resubscribed"), "the gap line")
        eq(dst.command("SPUBLISH", CHANNEL, message("user:31")), 1,
           "SPUBLISH receivers at the new owner")
        wait_for(lambda: t.shown("user:31"), "tail shows user:31")
    except AssertionError:
        print("--- tail stderr ---\n" + t.stderr())
        raise
    finally:
        t.stop()


def fake_node(reply, slots=lambda port: [b"*0\r\n"]):
    """A FakeRedis that answers +OK to the login, slots(port) (default:
    an empty array) to CLUSTER SLOTS, and reply(port) to SSUBSCRIBE."""
    def answer(cmd, port):
        if cmd[0].upper() == b"SSUBSCRIBE":
            return reply(port)
        if cmd[0].upper() == b"CLUSTER":
            return slots(port)
        return b"+OK\r\n"
    return FakeRedis(answer)


def huge_bulk(port):
    yield b"$2000000000\r\n"
    chunk = b"x" * (1 << 20)
    for _ in range(20):         # 20 MB: past the 16 MB a message may have
        yield chunk


HOSTILE = {
    "garbage": (lambda port: [b"?\x1b[2Jnot resp\r\n"], "protocol error"),
    "a huge bulk": (huge_bulk, "a reply over 16777216 bytes"),
    "a huge array": (lambda port: [b"*2000000000\r\n"],
                     "a reply over 16777216 bytes"),
    "a MOVED loop": (lambda port: [b"-MOVED 9865 127.0.0.1:%d\r\n" % port],
                     "a MOVED to the node itself"),
    "a MOVED to an empty host": (lambda port: [b"-MOVED 9865 :%d\r\n" % port],
                                 "a MOVED to the node itself"),
    "a malformed MOVED": (lambda port: [b"-MOVED 9865 127.0.0.1:0x50\r\n"],
                          "a malformed MOVED reply"),
    "a foreign confirmation": (
        lambda port: [b"*3\r\n$10\r\nssubscribe\r\n$5\r\nother\r\n:1\r\n"],
        "an unexpected reply to the subscription"),
}


def test_hostile_nodes_neither_crash_nor_spin_apply():
    for what, (reply, logged) in HOSTILE.items():
        fake = fake_node(reply)
        a = harness.Apply(FakePG, TARGET, TABLES,
                          redis_url="redis://127.0.0.1:%d" % fake.port,
                          extra={"redis.cluster": "on"},
                          targets={"t": TARGET.url + "/0"})
        try:
            a.start(wait="")
            a.wait_log(logged, timeout=20)
            # Backoff with reconnect_max = 1: a handful of connects a
            # second at most, never a busy loop.
            t0, n0 = time.monotonic(), fake.accepted
            time.sleep(2)
            rate = (fake.accepted - n0) / (time.monotonic() - t0)
            assert rate <= 5, "%s: %.1f connects/s\n%s" % (what, rate,
                                                            a.log_text())
            assert a.alive(), "%s: apply died\n%s" % (what, a.log_text())
            assert "subscribed to" not in a.log_text(), what
        finally:
            a.stop()
            fake.close()


def many_elements(port):
    """A CLUSTER SLOTS reply of 3,000,000 integers: 12 MB on the wire,
    about 170 MB of reply objects in hiredis's reader without a cap."""
    yield b"*3000000\r\n"
    for _ in range(30):
        yield b":1\r\n" * 100000


def test_a_target_node_that_sends_a_huge_reply_is_dropped():
    """The target's links (the router's, as the daemon's sink) cap what
    one reply may cost (64 MB): a node that answers with millions of
    small elements is dropped and dialled again after a backoff, and the
    reply never reaches the slot map."""
    fake = fake_node(lambda port: [], slots=many_elements)
    a = harness.Apply(FakePG, TARGET, TABLES,
                      redis_url="redis://127.0.0.1:%d" % CLUSTER.nodes[0].port,
                      extra={"redis.cluster": "on"},
                      targets={"t": {"url": "redis://127.0.0.1:%d/0"
                                     % fake.port, "cluster": "on"}})
    try:
        a.start(wait="")
        a.wait_log("a reply over 67108864 bytes", timeout=30)
        t0, n0 = time.monotonic(), fake.accepted
        time.sleep(2)
        rate = (fake.accepted - n0) / (time.monotonic() - t0)
        assert rate <= 5, "%.1f connects/s\n%s" % (rate, a.log_text())
        assert a.alive(), "apply died\n" + a.log_text()
        assert "CLUSTER SLOTS:" not in a.log_text(), a.log_text()
    finally:
        a.stop()
        fake.close()


def around():
    import contextlib

    @contextlib.contextmanager
    def servers():
        global CLUSTER, TARGET
        with RedisCluster(masters=3, replicas=0) as cluster, \
                Redis() as target:
            CLUSTER, TARGET = cluster, target
            yield
    return servers()


if __name__ == "__main__":
    sys.exit(runner.run(globals(), sys.argv[1:], around=around))
