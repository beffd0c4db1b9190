#!/usr/bin/env python3
"""Takeover times of a pginval group, measured: a pair of daemons in
durable mode under a light write load, and the active one either killed
(SIGKILL) or cut off (its PostgreSQL and Redis links black-holed through
proxies), RUNS times each.

    python3 tests/bench/ha_takeover.py [RUNS] [TAKEOVER_TIMEOUT]

Prints, per scenario, the median and maximum seconds from the fault to the
standby saying it took the lock, and for a partition also to the active
daemon's fence. Measurements, not assertions: it fails only if something
breaks (a key lost, epochs interleaved, a takeover before the fence).
"""

import os
import random
import signal
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import pginval_proc  # noqa: E402
import test_ha  # noqa: E402
from proxy import Proxy  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
TIMEOUT = sys.argv[2] if len(sys.argv) > 2 else "10"


def first_seen(daemons_needles, timeout=60):
    """{needle: seconds from now until it is in its daemon's log}."""
    t0 = time.monotonic()
    seen = {}
    while len(seen) < len(daemons_needles) and time.monotonic() - t0 < timeout:
        for d, needle in daemons_needles:
            if needle not in seen and needle in d.log_text():
                seen[needle] = time.monotonic() - t0
        time.sleep(0.01)
    missing = [n for _, n in daemons_needles if n not in seen]
    assert not missing, "never logged: %s" % missing
    return seen


def run_once(kind, n):
    chan, table, _ = test_ha.MODES["durable"]
    first = 100000 * (n + 1) + (50000 if kind == "partition" else 0)
    extra = {"daemon.takeover_timeout": TIMEOUT,
             "postgres.connect_timeout": "2"}
    col = test_ha.Collector(chan)
    proxies = []
    kw = {}
    if kind == "partition":
        proxies = [Proxy(test_ha.PG.host, test_ha.PG.port),
                   Proxy(test_ha.REDIS.host, test_ha.REDIS.port)]
        kw = {"first_pg": test_ha.proxied_pg(proxies[0]),
              "first_redis_url": "redis://127.0.0.1:%d/0" % proxies[1].port}
    a, b = test_ha.pair("durable", first_extra=extra, **kw)
    try:
        loader = test_ha.load(table, first, 200, pause=0.02)
        # At a random phase of the daemons' one-second ticks.
        time.sleep(1 + random.random())
        if kind == "kill":
            a.proc.send_signal(signal.SIGKILL)
            seen = first_seen([(b, "standby -> taking over")])
        else:
            for p in proxies:
                p.blackhole()
            seen = first_seen([(a, "ha: fenced"),
                               (b, "standby -> taking over")])
            assert seen["ha: fenced"] < seen["standby -> taking over"], seen
        loader.join(120)
        col.wait_keys(test_ha.keys_of(first, 200), timeout=60)
    finally:
        b.stop()
        a.kill()
        for p in proxies:
            p.close()
    assert len(test_ha.check_epochs(col.close())) == 2
    return seen


def main():
    results = {}
    with pginval_proc.servers(test_ha.__dict__,
                              pg_settings={"wal_level": "logical"}):
        test_ha.setup()
        for kind in ("kill", "partition"):
            for n in range(RUNS):
                for what, secs in run_once(kind, n).items():
                    results.setdefault((kind, what), []).append(secs)
                    print("%s run %d: %s after %.2fs" % (kind, n + 1, what,
                                                         secs), flush=True)
    print("\ntakeover_timeout = %ss, %d runs each" % (TIMEOUT, RUNS))
    print("%-10s %-24s %8s %8s" % ("fault", "until", "median", "max"))
    for (kind, what), xs in results.items():
        print("%-10s %-24s %7.2fs %7.2fs" % (kind, what, statistics.median(xs),
                                             max(xs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
