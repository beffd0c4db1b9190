#!/usr/bin/env python3
"""The bare replication client of the wal latency scenario: streams a slot
with pgoutput (psycopg2's LogicalReplicationConnection) and records, for
each transaction, the arrival time of its Commit message minus the commit
time that the message carries. Both clocks are this machine's.

    walref.py CONNINFO SLOT PUBLICATION

Prints "ready" once the stream has started, then, on SIGTERM, one line of
JSON: commits, changes (Insert, Update and Delete messages), cpu_s, and
lat: n, p50, p99, p999, max in microseconds. It confirms what it read
every second, as a consumer would.
"""

import json
import os
import select
import signal
import struct
import sys
import time

import psycopg2
import psycopg2.extras

# PostgreSQL's timestamps count microseconds from 2000-01-01.
PG_EPOCH_US = 946684800 * 1000000
stop = False


def on_term(signum, frame):
    global stop
    stop = True


def pct(values, q):
    """Nearest-rank percentile of sorted values, as the subscriber's."""
    r = int(q * len(values) + 0.999999)
    return values[max(r, 1) - 1]


def main(conninfo, slot, publication):
    signal.signal(signal.SIGTERM, on_term)
    conn = psycopg2.connect(
        conninfo,
        connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(slot_name=slot, decode=False,
                          options={"proto_version": "1",
                                   "publication_names": publication})
    print("ready", flush=True)
    lat, changes, last_fb, lsn = [], 0, time.monotonic(), 0
    while not stop:
        msg = cur.read_message()
        if msg is None:
            select.select([cur], [], [], 0.2)
        else:
            kind = msg.payload[:1]
            if kind == b"C":
                ts = struct.unpack_from(">q", msg.payload, 18)[0]
                lat.append(time.time() * 1e6 - (ts + PG_EPOCH_US))
            elif kind in (b"I", b"U", b"D"):
                changes += 1
            lsn = msg.data_start
        if lsn and time.monotonic() - last_fb >= 1:
            cur.send_feedback(flush_lsn=lsn)
            last_fb = time.monotonic()
    lat.sort()
    t = os.times()
    out = {"commits": len(lat), "changes": changes,
           "cpu_s": t.user + t.system, "lat": {"n": len(lat)}}
    if lat:
        out["lat"].update(p50=pct(lat, 0.5), p99=pct(lat, 0.99),
                          p999=pct(lat, 0.999), max=lat[-1])
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: walref.py CONNINFO SLOT PUBLICATION")
    main(*sys.argv[1:])
