#!/usr/bin/env python3
"""A relay in Python, the reference a user would write first: psycopg2
LISTEN, parse each trigger payload, render its keys from the same
templates as pginval's [table] sections, PUBLISH one message per payload,
pipelined (as refrelay.c, up to 1000 commands, then their replies). It
verifies no authenticator, keeps no queue and never reconnects.

    pyrelay.py CONNINFO PG_CHANNEL REDIS_HOST REDIS_PORT REDIS_CHANNEL \
        TABLE=TEMPLATES ...

TEMPLATES as in pginval's `keys` ("user:{id}, user:email:{email}").
Prints "listening" once both connections are up. Needs Debian's
python3-psycopg2 and python3-redis.
"""

import json
import re
import select
import sys
import uuid

import psycopg2
import psycopg2.extensions
import redis

BATCH = 1000
FIELD = re.compile(r"\{(\w+)\}")


def compile_keys(spec):
    """[(format string, columns)] for "a:{x}, b:{y}"."""
    out = []
    for tpl in (t.strip() for t in spec.split(",")):
        cols = FIELD.findall(tpl)
        out.append((FIELD.sub("%s", tpl.replace("%", "%%")), cols))
    return out


def render(templates, image, keys, seen):
    if not image:
        return
    for fmt, cols in templates:
        vals = [image.get(c) for c in cols]
        if None in vals:
            continue
        key = fmt % tuple(vals)
        if key not in seen:
            seen.add(key)
            keys.append(key)


def message(ev, templates, seq, epoch):
    """The message for one payload, in pginval's format."""
    keys, seen = [], set()
    out = {"v": 1, "seq": seq, "epoch": epoch, "op": ev["op"],
           "table": ev["t"], "keys": keys, "ts": ev.get("ts")}
    rows = ev.get("rows")
    if rows is not None:
        out["rows"] = [{"old": r.get("o"), "new": r.get("n")} for r in rows]
        for r in rows:
            render(templates, r.get("o"), keys, seen)
            render(templates, r.get("n"), keys, seen)
    else:
        for field, name in (("o", "old"), ("n", "new")):
            if ev.get(field) is not None:
                out[name] = ev[field]
                render(templates, ev[field], keys, seen)
    return json.dumps(out, separators=(",", ":"))


def main(argv):
    if len(argv) < 6:
        sys.exit("usage: pyrelay.py CONNINFO PG_CHANNEL REDIS_HOST "
                 "REDIS_PORT REDIS_CHANNEL TABLE=TEMPLATES ...")
    conninfo, pg_channel, host, port, channel = argv[1:6]
    tables = {}
    for arg in argv[6:]:
        table, spec = arg.split("=", 1)
        tables[table] = compile_keys(spec)
    pg = psycopg2.connect(conninfo)
    pg.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    pg.cursor().execute('LISTEN "%s"' % pg_channel.replace('"', '""'))
    r = redis.Redis(host=host, port=int(port))
    r.ping()
    epoch, seq = uuid.uuid4().hex, 0
    print("listening", flush=True)
    while True:
        select.select([pg], [], [])
        pg.poll()
        while pg.notifies:
            pipe = r.pipeline(transaction=False)
            batch = pg.notifies[:BATCH]
            del pg.notifies[:BATCH]
            for n in batch:
                try:
                    ev = json.loads(n.payload)
                except ValueError:
                    continue
                if not isinstance(ev, dict) or "op" not in ev:
                    continue
                seq += 1
                pipe.publish(channel, message(ev, tables.get(ev.get("t"), []),
                                              seq, epoch))
            pipe.execute()
            pg.poll()


if __name__ == "__main__":
    try:
        main(sys.argv)
    except KeyboardInterrupt:
        pass
