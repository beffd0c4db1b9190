#!/usr/bin/env python3
"""What REPLICA IDENTITY FULL costs writers, next to DEFAULT.

wal mode needs the old values of the watched columns in the WAL; when the
primary key (or another index) does not hold them, pginval.watch() sets
REPLICA IDENTITY FULL, and every UPDATE and DELETE then logs the whole old
row. This measures that on a throwaway server (wal_level = logical): a
10-column table whose rows carry a text payload of about 200 bytes, and N
single-row UPDATEs of one non-key column, each its own transaction, first
under DEFAULT, then under FULL. Prints the WAL bytes per UPDATE and the
elapsed time of each, and their ratios. A few seconds.

    python3 tests/bench/wal_identity.py [-n UPDATES]
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from servers import Postgres  # noqa: E402

ROWS = 1000

SETUP = """
CREATE TABLE bench (
    id int PRIMARY KEY, a int, b int, c bigint, d text, e text,
    f timestamptz, g boolean, h numeric, payload text);
INSERT INTO bench
SELECT i, i, i * 2, i * 3, 'd' || i, 'e' || i, now(), i %% 2 = 0, i / 7.0,
       repeat(md5(i::text), 7)
  FROM generate_series(1, %d) i;
VACUUM ANALYZE bench;
CREATE PROCEDURE bench_updates(n int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. n LOOP
        UPDATE bench SET a = a + 1 WHERE id = i %% %d + 1;
        COMMIT;
    END LOOP;
END;
$$;
""" % (ROWS, ROWS)

# One run: the WAL written and the time taken by n UPDATEs, measured in
# the server around the procedure call.
RUN = """
SELECT pg_current_wal_insert_lsn() AS lsn0, clock_timestamp() AS t0 \\gset
CALL bench_updates(%d);
SELECT pg_current_wal_insert_lsn() - :'lsn0'::pg_lsn,
       extract(epoch FROM clock_timestamp() - :'t0'::timestamptz);
"""


def measure(pg, identity, n):
    pg.psql("ALTER TABLE bench REPLICA IDENTITY %s; CHECKPOINT;" % identity)
    pg.psql(RUN % (n // 10))  # warm-up
    pg.psql("CHECKPOINT;")
    out = pg.psql(RUN % n).strip().splitlines()[-1]
    wal, secs = out.split("|")
    return int(wal) / n, float(secs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000,
                    help="UPDATEs per identity (default 20000)")
    args = ap.parse_args()
    n = max(100, min(args.n, 200000))
    # full_page_writes on, as in production: a checkpoint before each run
    # makes both pay the same first-touch page images.
    with Postgres(settings={"wal_level": "logical",
                            "full_page_writes": "on"}) as pg:
        pg.psql(SETUP)
        width = pg.psql("SELECT avg(pg_column_size(b.*))::int "
                        "FROM bench b").strip()
        default = measure(pg, "DEFAULT", n)
        full = measure(pg, "FULL", n)
    print("%d single-row UPDATEs of one non-key column, rows of %s bytes"
          % (n, width))
    print("  DEFAULT: %7.1f WAL bytes/UPDATE, %.2f s" % default)
    print("  FULL:    %7.1f WAL bytes/UPDATE, %.2f s" % full)
    print("  FULL/DEFAULT: WAL x%.2f, time x%.2f"
          % (full[0] / default[0], full[1] / default[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
