#!/usr/bin/env python3
"""The Redis topologies of tests/lib/servers.py, against the real servers:
cluster routing facts, a slot migration seen by sharded subscribers, a
master killed and replaced, a node restarted from an older snapshot,
Sentinel failovers, a single Redis restarted from a snapshot, and a
scripted node (FakeRedis) answering through a test's function. Other
suites build on these helpers; this file proves they do what they say.

    python3 tests/integration/test_topo_harness.py [-v] [name-substring ...]
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import runner  # noqa: E402
from runner import eq  # noqa: E402
from servers import (FakeRedis, Redis, RedisCluster,  # noqa: E402
                     RedisError, RedisSentinel, RespConnection,
                     Unsubscribed)

SLOT = 9865     # of "pginval" and "{pginval}:log"


def keys_in(node):
    return sorted(node.command("KEYS", "*"))


def fill(cluster, keys):
    for k in keys:
        cluster.node_for(k).command("SET", k, k)


def test_cluster_routing():
    with RedisCluster(masters=3, replicas=1) as cl:
        eq(len(cl.nodes), 6, "nodes")
        eq(cl.keyslot("pginval"), SLOT, "slot of the channel")
        eq(cl.keyslot("{pginval}:log"), SLOT, "slot of the stream")
        eq(cl.keyslot("pginval:log"), 1337, "slot without the hash tag")
        masters = cl.masters()
        eq(len(masters), 3, "masters")
        covered = sum(e - s + 1 for s, e, _ in masters[0].slot_map())
        eq(covered, 16384, "slots covered")
        for m in masters:
            r = cl.replica_of(m)
            assert r is not None and r not in masters, (m, r)
            role = r.role()
            eq((role[0], role[2]), ("slave", m.port), "ROLE of %r" % r)
            eq(m.role()[2][0][1], str(r.port), "ROLE of %r" % m)
        owner = cl.owner(SLOT)
        assert owner in masters
        eq(cl.seed_url, "redis://127.0.0.1:%d" % cl.nodes[0].port, "seed")
        other = [m for m in masters if m is not owner][0]
        try:
            other.command("SET", "{pginval}:k", "v")
            raise AssertionError("a non-owner took the write")
        except RedisError as exc:
            eq(str(exc), "MOVED %d %s" % (SLOT, owner.addr), "redirect")
        fill(cl, ["a", "b", "c", "{pginval}:k"])
        eq(cl.all_keys(), [b"a", b"b", b"c", b"{pginval}:k"], "all keys")
        for m in masters:
            eq(keys_in(m), sorted(k.encode() for k in ("a", "b", "c",
                                                       "{pginval}:k")
                                  if cl.node_for(k) is m), "keys of %r" % m)
        assert b"{pginval}:k" in keys_in(owner)
        # A sharded subscriber started elsewhere follows MOVED.
        with cl.ssubscribe("pginval", node=other) as sub:
            eq(sub.port, owner.port, "subscriber's node")
            eq(cl.spublish("pginval", "hello"), 1, "SPUBLISH receivers")
            eq(sub.get(timeout=5), b"hello", "smessage")
        # Nothing a restart would load: replicas sync without dump.rdb.
        for n in cl.nodes:
            assert not os.path.exists(os.path.join(n.tmpdir, "dump.rdb")), n


def test_cluster_migrate_slot():
    with RedisCluster(masters=3, replicas=1) as cl:
        src = cl.owner(SLOT)
        dst = [m for m in cl.masters() if m is not src][0]
        keys = ["{pginval}:k%d" % i for i in range(250)]   # 3 batches
        fill(cl, keys + ["elsewhere"])
        on_master = cl.ssubscribe("pginval")
        on_replica = cl.ssubscribe("pginval", node=cl.replica_of(src))
        eq(on_replica.port, cl.replica_of(src).port, "replica subscriber")

        eq(cl.start_migration(SLOT, dst), src, "source")
        # MIGRATING: the source still serves the channel and its keys...
        # (The count is of the node's own subscribers: the replica's
        # hears it through replication.)
        eq(cl.spublish("pginval", "during"), 1, "SPUBLISH while migrating")
        eq(on_master.get(timeout=5), b"during", "smessage while migrating")
        eq(on_replica.get(timeout=5), b"during", "smessage on the replica")
        eq(src.command("GET", keys[0]), keys[0].encode(), "GET on source")
        # ... and sends what it no longer has to the target.
        eq(cl.migrate_keys(SLOT, dst, keys=keys[:10]), 10, "keys moved")
        try:
            src.command("GET", keys[0])
            raise AssertionError("the source served a moved key")
        except RedisError as exc:
            eq(str(exc), "ASK %d %s" % (SLOT, dst.addr), "redirect")

        cl.finish_migration(SLOT, dst)
        eq(cl.owner(SLOT), dst, "owner after the move")
        eq(keys_in(dst), sorted(k.encode() for k in keys), "keys on target")
        assert not src.command("CLUSTER", "GETKEYSINSLOT", SLOT, 10)
        eq(len(cl.all_keys()), len(keys) + 1, "no key lost")
        for sub in (on_master, on_replica):
            try:
                sub.get(timeout=5)
                raise AssertionError("no sunsubscribe on %d" % sub.port)
            except Unsubscribed as exc:
                eq((exc.channel, exc.count), (b"pginval", 0), "sunsubscribe")
        on_master.resubscribe()
        eq(on_master.port, dst.port, "resubscribed at the new owner")
        cl.spublish("pginval", "after")
        eq(on_master.get(timeout=5), b"after", "smessage after the move")
        on_master.close()
        on_replica.close()


def test_cluster_kill_master():
    with RedisCluster(masters=3, replicas=1) as cl:
        old = cl.owner(SLOT)
        replica = cl.replica_of(old)
        fill(cl, ["{pginval}:a", "{pginval}:b"])
        eq(old.command("WAIT", 1, 5000), 1, "replicas acked")
        sub = cl.ssubscribe("pginval", node=replica)
        on_old = cl.ssubscribe("pginval")
        cl.kill_master(old)
        eq(on_old.get_event(timeout=5), ("eof", None, None), "dead master")
        new = cl.wait_failover(old)
        eq(new, replica, "promoted")
        eq(new.role()[0], "master", "ROLE")
        eq(cl.owner(SLOT), new, "owner")
        eq(keys_in(new), [b"{pginval}:a", b"{pginval}:b"], "keys kept")
        # The replica's own subscriber stays subscribed through it.
        cl.spublish("pginval", "promoted")
        eq(sub.get(timeout=5), b"promoted", "smessage after the failover")
        sub.close()
        # Starting over from any live master finds the new owner.
        on_old.resubscribe(node=[m for m in cl.masters() if m is not new][0])
        eq(on_old.port, new.port, "resubscribed at the promoted replica")
        cl.spublish("pginval", "again")
        eq(on_old.get(timeout=5), b"again", "smessage after resubscribing")
        on_old.close()
        cl.restart_node(old)
        eq(old.role()[:3], ["slave", "127.0.0.1", new.port], "old master")


def test_cluster_restart_from_snapshot():
    with RedisCluster(masters=3, replicas=1) as cl:
        master = cl.owner(SLOT)
        fill(cl, ["{pginval}:old"])
        snap = cl.snapshot(master)
        fill(cl, ["{pginval}:new"])
        before = master.info("replication")
        cl.restart_node(master, rdb=snap)
        eq(cl.owner(SLOT), master, "still the owner")
        eq(keys_in(master), [b"{pginval}:old"], "keys after the restart")
        after = master.info("replication")
        # What the "forgetting" check reads: the old history is replid2,
        # and it continues from the snapshot's offset, before the end.
        eq(after["master_replid2"], before["master_replid"], "replid2")
        assert (int(after["second_repl_offset"]) - 1
                < int(before["master_repl_offset"])), (before, after)


def test_sentinel_failover():
    with RedisSentinel(replicas=1, sentinels=3) as st:
        eq(len(st.sentinel_addrs.split(", ")), 3, st.sentinel_addrs)
        old = st.master
        eq(st.master_addr(), ("127.0.0.1", old.port), "master_addr")
        replica = st.replica
        eq(replica.role()[:3], ["slave", "127.0.0.1", old.port], "replica")
        new = st.failover()
        eq(new, replica, "new master")
        eq(st.master_addr(), ("127.0.0.1", new.port), "master_addr after")
        new.command("SET", "k", "v")


def test_sentinel_kill_master_with_passwords():
    with RedisSentinel(password="d4ta", sentinel_password="s3cret") as st:
        for server in (st.sentinels[0], st.master):
            with RespConnection(server.host, server.port) as conn:
                try:
                    conn.command("PING")
                    raise AssertionError("%r answered without AUTH" % server)
                except RedisError as exc:
                    assert str(exc).startswith("NOAUTH"), exc
        old = st.master
        old.command("SET", "k", "v")
        eq(old.command("WAIT", 1, 5000), 1, "replica acked")
        new = st.kill_master()
        assert new is not old
        eq(st.master_addr(), ("127.0.0.1", new.port), "master_addr")
        eq(new.command("GET", "k"), b"v", "key on the promoted replica")


def test_redis_restart_from_snapshot():
    with Redis() as r:
        r.command("SET", "early", "1")
        snap = r.snapshot()
        r.command("SET", "late", "2")
        r.restart(rdb=snap)
        eq(keys_in(r), [b"early"], "keys after a restart from the snapshot")
        r.restart()
        eq(keys_in(r), [], "keys after a plain restart")
        r.command("SET", "k", "v")
        run_id = r.info("server")["run_id"]
        r.restart_empty()
        eq(keys_in(r), [], "keys after restart_empty")
        assert r.info("server")["run_id"] != run_id


def test_fake_redis_answers_through_the_function():
    seen = []

    def answer(cmd, port):
        seen.append(cmd)
        if cmd[0] == b"PING":
            return b"+PONG\r\n"
        return [b"-MOVED 1 127.0.0.1:", b"%d\r\n" % port]   # in 2 parts
    with FakeRedis(answer) as fake:
        with RespConnection("127.0.0.1", fake.port) as conn:
            eq(conn.command("PING"), "PONG", "a reply in one piece")
            try:
                conn.command("SET", "k", "v")
                raise AssertionError("SET answered without an error")
            except RedisError as exc:
                eq(str(exc), "MOVED 1 127.0.0.1:%d" % fake.port, "parts")
        eq(seen, [[b"PING"], [b"SET", b"k", b"v"]], "the commands seen")
        kept = RespConnection("127.0.0.1", fake.port)
        eq(kept.command("PING"), "PONG", "a second link")
        eq(fake.accepted, 2, "connections accepted")
    try:
        kept.read_reply(timeout=5)
        raise AssertionError("a link outlived close()")
    except ConnectionError:
        pass
    finally:
        kept.close()


if __name__ == "__main__":
    sys.exit(runner.run(globals(), sys.argv[1:]))
