#!/usr/bin/env python3
"""Instructions per change: the daemon's profile, reproducibly.

    python3 tests/bench/instr.py [notify] [packed] [wal] [--rows=off]

Runs `pginval run` under `valgrind --tool=callgrind` while it drains
UPDATEs committed in one transaction, once with BENCH_INSTR_SMALL (1000)
rows and once with BENCH_INSTR_N (20000); two key templates, `prof:{id}`
and `prof:pad:{pad}`. notify: single-row UPDATEs, one NOTIFY each.
packed: one UPDATE of all the rows, whose rows the triggers pack into a
few NOTIFYs (about 165 a payload). wal: single-row UPDATEs of a table in
wal mode. --rows=off runs the daemon with `[redis] rows = off`. The
instructions per change are the difference between the two runs divided
by the difference in rows, which removes start-up and shutdown. Prints
that figure per mode, and the functions that account for it: their own
instructions per change (self) and, for pginval's own functions, with
their callees (inclusive). The callgrind files stay in tests/bench/out/.
Needs ./pginval (BENCH_PGINVAL) and valgrind; nothing else of the bench.
"""

import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402
from servers import Postgres, Redis, Subscriber  # noqa: E402

SMALL = bench.env_int("BENCH_INSTR_SMALL", 1000)
BIG = bench.env_int("BENCH_INSTR_N", 20000)
TOP = bench.env_int("BENCH_INSTR_TOP", 25)
KEYS = "prof:{id}, prof:pad:{pad}"
MODES = {"notify": ("public.prof", "prof"), "wal": ("public.profw", "profw")}
# How each workload writes its rows: (table's mode, statement).
WORKLOADS = {
    "notify": ("notify", "DO $$ BEGIN FOR i IN 1..%(rows)d LOOP UPDATE %(table)s "
               "SET v = v + 1 WHERE id = i; END LOOP; END $$;"),
    "packed": ("notify", "UPDATE %(table)s SET v = v + 1 WHERE id <= %(rows)d;"),
    "wal": ("wal", "DO $$ BEGIN FOR i IN 1..%(rows)d LOOP UPDATE %(table)s "
            "SET v = v + 1 WHERE id = i; END LOOP; END $$;"),
}
COST = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*?)\s*$")


def setup(pg, rows):
    pg.psql_file(os.path.join(bench.ROOT, "sql", "pginval.sql"))
    sql = []
    for mode, (table, channel) in MODES.items():
        name = table.split(".")[1]
        sql += ["CREATE TABLE %s (id int PRIMARY KEY, v int NOT NULL "
                "DEFAULT 0, pad text);" % name,
                "INSERT INTO %s SELECT g, 0, md5(g::text) "
                "FROM generate_series(1, %d) g;" % (name, rows),
                "SELECT pginval.watch('%s', ARRAY['id', 'pad'], '%s', '%s');"
                % (table, channel, mode)]
    pg.psql("\n".join(sql) + "\nVACUUM ANALYZE;")


def write_conf(pg, redis, mode, rows):
    table, channel = MODES[mode]
    path = os.path.join(bench.OUT, "instr-%s.conf" % mode)
    with open(path, "w") as f:
        f.write("# written by tests/bench/instr.py\n[postgres]\n"
                "conninfo = %s application_name=%s\nchannel = %s\n\n"
                "[redis]\nurl = %s/0\nchannel = instr\n%s\n"
                "[daemon]\nlog_level = warn\n\n[table %s]\nkeys = %s\n"
                % (pg.conninfo, bench.DAEMON_APP, channel, redis.url,
                   "" if rows is None else "rows = %s\n" % rows, table, KEYS))
    return path


def changes(payload):
    """Row changes in one message (a reset counts none): its prof:{id}
    keys, one per row (every row has its own id)."""
    if b'"op":"reset"' in payload:
        return 0
    return payload.count(b'"prof:') - payload.count(b'"prof:pad:')


def one_run(pg, redis, work, rows, rows_opt):
    """Instructions of the daemon draining ``rows`` changes, and its
    callgrind file."""
    mode, statement = WORKLOADS[work]
    table, channel = MODES[mode]
    out = os.path.join(bench.OUT, "callgrind.%s%s.%d.out" % (
        work, "" if rows_opt is None else "-rows-" + rows_opt, rows))
    conf = write_conf(pg, redis, mode, rows_opt)
    log = open(os.path.join(bench.OUT, "instr-%s.log" % mode), "ab")
    with Subscriber(redis.host, redis.port, "instr") as sub:
        proc, sock = bench.spawn_ready(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
             bench.PGINVAL, "run", "-c", conf], log,
            "pginval under callgrind (see %s)" % conf, timeout=120)
        try:
            pg.psql("BEGIN;\n%s\nCOMMIT;"
                    % (statement % {"rows": rows, "table": table}))
            got, deadline = 0, time.monotonic() + 120 + rows / 200
            while got < rows and time.monotonic() < deadline:
                msg = sub.get(timeout=30)
                if msg is None:
                    break
                got += changes(msg)
        finally:
            bench.reap(proc, timeout=120)
            bench.close_socket(sock)
    if got != rows:
        raise RuntimeError("%s: %d changes of %d arrived" % (work, got, rows))
    if mode == "wal":
        bench.drop_slot(pg, "pginval_" + channel)
    return out


def costs(path, inclusive):
    """{function: instructions} from callgrind_annotate."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no",
         "--inclusive=" + ("yes" if inclusive else "no"), path],
        capture_output=True, text=True, check=True).stdout
    total, out = None, {}
    for line in text.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\(100.0%\)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
            continue
        m = COST.match(line)
        if m and inclusive and m.group(2).startswith(bench.ROOT + "/") \
                and not m.group(2).endswith("]"):
            continue    # the same function again, by its absolute path
        if m:
            name = re.sub(r"\s+\[.*\]$", "", m.group(2)).replace(
                bench.ROOT + "/", "")
            out[name] = out.get(name, 0) + int(m.group(1).replace(",", ""))
    if total is None:
        raise RuntimeError("no totals in %s" % path)
    return total, out


def report(mode, small, big):
    (t0, self0), (t1, self1) = costs(small, False), costs(big, False)
    per = (t1 - t0) / (BIG - SMALL)
    print("%s: %.0f instructions per change (%s rows: %s, %s rows: %s)"
          % (mode, per, "{:,}".format(SMALL), "{:,}".format(t0),
             "{:,}".format(BIG), "{:,}".format(t1)))
    for title, a, b, only_own in (
            ("self", self0, self1, False),
            ("inclusive, pginval's functions", costs(small, True)[1],
             costs(big, True)[1], True)):
        diff = {k: (b.get(k, 0) - a.get(k, 0)) / (BIG - SMALL) for k in b}
        if only_own:
            diff = {k: v for k, v in diff.items() if k.startswith("daemon/")}
        print("  %s, per change:" % title)
        for name, v in sorted(diff.items(), key=lambda kv: -kv[1])[:TOP]:
            print("  %8.0f %5.1f%%  %s" % (v, 100 * v / per, name))
    return per


def main(argv):
    rows_opt = None
    if "--rows=off" in argv or "--rows=on" in argv:
        rows_opt = "off" if "--rows=off" in argv else "on"
        argv = [a for a in argv if not a.startswith("--rows=")]
    wanted = argv or list(WORKLOADS)
    if [w for w in wanted if w not in WORKLOADS]:
        sys.exit("instr: workloads are %s, and --rows=off"
                 % " ".join(WORKLOADS))
    os.makedirs(bench.OUT, exist_ok=True)
    settings = dict(bench.RELAY_SETTINGS, **bench.WAL_SETTINGS)
    try:
        with Postgres(settings=settings) as pg, Redis() as redis:
            setup(pg, BIG)
            for work in wanted:
                files = [one_run(pg, redis, work, n, rows_opt)
                         for n in (SMALL, BIG)]
                report(work + ("" if rows_opt is None else
                               " (rows = %s)" % rows_opt), *files)
    finally:
        bench.kill_children()


if __name__ == "__main__":
    main(sys.argv[1:])
