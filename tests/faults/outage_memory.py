#!/usr/bin/env python3
"""Memory through a long Redis outage, under write load (notify mode).

Redis is stopped for OUTAGE seconds (default 300) while a writer keeps
inserting rows; the daemon's resident memory (VmRSS) is sampled every 10
seconds. The queue is bounded (max_queue, max_queue_bytes), so memory
must level off instead of growing with the outage. Prints the samples and
one "N passed, M failed" line: it fails if RSS grows by more than 1 MB over
the second half of the outage.

    python3 tests/faults/outage_memory.py [OUTAGE_SECONDS]
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, HERE)

import pginval_proc  # noqa: E402
from run import Writer  # noqa: E402
from servers import Postgres, Redis  # noqa: E402


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main(argv):
    outage = int(argv[0]) if argv else 300
    with Postgres() as pg, Redis() as redis:
        pg.psql_file(os.path.join(ROOT, "sql", "pginval.sql"))
        pg.psql("CREATE TABLE items (id bigint PRIMARY KEY, at bigint NOT NULL "
                "DEFAULT 0); SELECT pginval.watch('items')")
        d = pginval_proc.Daemon(pg, redis, tables={"public.items": "item:{id}"},
                                extra={"daemon.log_level": "info",
                                       "daemon.max_keys": "1"})
        d.start(redis.subscribe("pginval"))
        writer = Writer(pg)
        writer.start()
        time.sleep(5)
        pid = d.proc.pid
        print("before the outage: %d kB" % rss_kb(pid))
        redis.stop()
        samples = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < outage:
            time.sleep(10)
            samples.append((time.monotonic() - t0, rss_kb(pid)))
            print("%4.0fs into the outage: %6d kB, %d rows written" % (
                samples[-1][0], samples[-1][1], writer.next_id - 1))
            sys.stdout.flush()
        writer.stop = True
        writer.join(30)
        redis.start()
        d.stop()
        log = d.log_text()
    half = next(kb for s, kb in samples if s >= outage / 2)
    end = samples[-1][1]
    ok = end - half <= 1024
    print("RSS half-way: %d kB, at the end: %d kB, peak: %d kB; "
          "queue-full resets: %d" % (half, end, max(kb for _, kb in samples),
                                     log.count("queue full")))
    print("%d passed, %d failed" % (int(ok), int(not ok)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
