#!/bin/bash
# Tests deploy/Dockerfile without Docker, on a Debian 12 machine like the
# image's base:
#   - both stages are debian:12-slim, the runtime stage installs exactly the
#     five runtime libraries, copies the build stage's /out, runs as a
#     non-root user and has the documented ENTRYPOINT;
#   - every package either stage installs exists in the configured apt
#     repositories (apt-cache madison: a Packages index has it);
#   - the build stage's COPY and RUN steps, replayed here in a scratch
#     directory with /out redirected, succeed, and run "make" and
#     "make install PREFIX=/usr DESTDIR=/out" as CI and the README do;
#   - every system header the build included, and make, cc and pkg-config,
#     come from the build stage's packages or their dependencies;
#   - the installed binary links directly against exactly the runtime
#     stage's packages (plus libc6, which the base image has), and every
#     library it loads comes from those packages or their dependencies;
#   - the HEALTHCHECK suggested in a comment fails while the daemon cannot
#     reach its servers and passes once it can (real PostgreSQL and Redis,
#     started by tests/lib/servers.py).
# Needs the build dependencies, apt lists (apt-get update), python3,
# PostgreSQL and redis-server: scripts/install-deps. Prints
# "N passed, M failed" last.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
# The image is built from a clean tree with plain flags: a sanitizer or
# other options of the make that runs this test must not leak into it.
unset MAKEFLAGS MFLAGS MAKELEVEL SANITIZE CFLAGS LDFLAGS
DOCKERFILE=${DOCKERFILE:-deploy/Dockerfile}
TMP=$(mktemp -d /tmp/pginval-docker-test.XXXXXX)
daemon_pid=
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
. "$ROOT/tests/deploy/lib.sh"
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
}
words() { printf '%s\n' $1 | LC_ALL=C sort -u; }

# --- Parse the Dockerfile ------------------------------------------------------
# Instructions with their continuation lines joined; comment lines inside a
# continuation are dropped, as Docker does. Prints shell assignments.
parse() {
	python3 - "$DOCKERFILE" <<'EOF'
import json, re, shlex, sys

lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
instrs, cur = [], None
health = None
for i, line in enumerate(lines):
    s = line.strip()
    if cur is None and s.startswith("# HEALTHCHECK"):
        # The optional health check, commented out: "#     CMD [...]" follows.
        for nxt in lines[i + 1:]:
            m = re.match(r"#\s+CMD (\[.*\])\s*$", nxt)
            if m:
                health = json.loads(m.group(1))
                break
    if cur is None and (not s or s.startswith("#")):
        continue
    if cur is not None and s.startswith("#"):
        continue
    part = line.rstrip()
    cont = part.endswith("\\")
    part = part[:-1] if cont else part
    cur = part if cur is None else cur + " " + part.strip()
    if not cont:
        word, _, rest = cur.strip().partition(" ")
        instrs.append((word.upper(), rest.strip()))
        cur = None

stages = []
for word, rest in instrs:
    if word == "FROM":
        m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
        stages.append({"from": m.group(1), "name": m.group(2) or "",
                       "run": [], "copy": [], "user": "", "entrypoint": None})
    elif word == "RUN":
        stages[-1]["run"].append(rest)
    elif word == "COPY":
        stages[-1]["copy"].append(rest)
    elif word == "USER":
        stages[-1]["user"] = rest
    elif word == "ENTRYPOINT":
        stages[-1]["entrypoint"] = json.loads(rest)


def apt_packages(stage):
    pkgs = []
    for cmd in stage["run"]:
        toks = shlex.split(cmd)
        for j, t in enumerate(toks):
            if t == "install" and j > 0 and toks[j - 1].startswith("apt"):
                for p in toks[j + 1:]:
                    if p in ("&&", ";", "||"):
                        break
                    if not p.startswith("-"):
                        pkgs.append(p)
    return pkgs


build, runtime = stages[0], stages[-1]
out = {
    "NSTAGES": str(len(stages)),
    "BUILD_FROM": build["from"], "BUILD_NAME": build["name"],
    "RUNTIME_FROM": runtime["from"],
    "BUILD_PKGS": " ".join(apt_packages(build)),
    "RUNTIME_PKGS": " ".join(apt_packages(runtime)),
    "BUILD_CMDS": "\n".join(c for c in build["run"] if "apt-get" not in c),
    "BUILD_COPIES": "\n".join(c for c in build["copy"]
                              if not c.startswith("--from")),
    "RUNTIME_COPIES": "\n".join(runtime["copy"]),
    "RUNTIME_RUNS": "\n".join(runtime["run"]),
    "USER": runtime["user"],
    "ENTRYPOINT": json.dumps(runtime["entrypoint"]),
    "HEALTH_CMD": json.dumps(health) if health else "",
}
for k, v in out.items():
    print("%s=%s" % (k, shlex.quote(v)))
EOF
}
if ! vars=$(parse 2>&1); then
	fail "parse $DOCKERFILE" "$vars"
	finish
fi
eval "$vars"
pass "parse $DOCKERFILE"

same "two stages" "$NSTAGES" 2
same "build stage: FROM debian:12-slim AS build" "$BUILD_FROM $BUILD_NAME" "debian:12-slim build"
same "runtime stage: FROM debian:12-slim" "$RUNTIME_FROM" "debian:12-slim"
same "runtime stage installs exactly the five runtime libraries" \
	"$(words "$RUNTIME_PKGS")" "$(words "libpq5 libev4 libhiredis0.14 libinih1 libssl3")"
same "runtime stage copies the build stage's /out to /" "$RUNTIME_COPIES" "--from=build /out/ /"
same "ENTRYPOINT" "$ENTRYPOINT" '["pginval", "run", "-c", "/etc/pginval/pginval.conf"]'

uid=${USER%%:*}
case $uid in
''|0|root) fail "runs as a non-root user (USER $USER)" ;;
*) pass "runs as a non-root user (USER $USER)" ;;
esac
check "the USER's uid is created in the runtime stage" \
	grep -Eq -- "useradd .*--uid $uid( |$)" <<<"$RUNTIME_RUNS"

# --- Packages exist in apt --------------------------------------------------------
if [ -z "$(apt-cache madison libc6 2>/dev/null)" ]; then
	fail "apt lists are present" "apt-cache madison libc6 found nothing: run apt-get update"
else
	for p in $BUILD_PKGS $RUNTIME_PKGS; do
		m=$(apt-cache madison "$p" 2>/dev/null | grep ' Packages$' | head -n 1)
		if [ -n "$m" ]; then pass "apt has $p ($(echo "$m" | awk -F'|' '{gsub(/ /,"",$2); print $2}'))"
		else fail "apt has $p" "apt-cache madison $p: no Packages entry"; fi
	done
fi

# --- Replay the build stage -------------------------------------------------------
grep -Eq '(^|&& *)make( *&&| *$)' <<<"$BUILD_CMDS" &&
	grep -q 'make install PREFIX=/usr DESTDIR=/out' <<<"$BUILD_CMDS"
check "build stage runs make, then make install PREFIX=/usr DESTDIR=/out" test $? -eq 0

SRC=$TMP/src OUT=$TMP/out
mkdir -p "$SRC"
copy_ok=1
while read -r from to; do
	[ -z "$from" ] && continue
	if [ ! -e "$from" ]; then
		fail "COPY $from $to: $from exists" && copy_ok=0
		continue
	fi
	case $from in
	*/) mkdir -p "$SRC/$to" && cp -a "$from." "$SRC/$to" ;;
	*) cp -a "$from" "$SRC/$to" ;;
	esac || copy_ok=0
done <<<"$BUILD_COPIES"
[ "$copy_ok" = 1 ] && pass "build stage COPY sources exist"

cmds=${BUILD_CMDS//\/out/$OUT}
if (cd "$SRC" && sh -ec "$cmds") >"$TMP/build.log" 2>&1; then
	pass "build stage commands succeed: $(echo "$BUILD_CMDS" | tr '\n' ';')"
else
	fail "build stage commands succeed" "$(tail -n 30 "$TMP/build.log")"
	finish
fi
for f in usr/bin/pginval usr/share/pginval/pginval.sql etc/pginval/pginval.conf.example; do
	check "/out has $f" test -e "$OUT/$f"
done

# --- Build dependencies cover what the build used -------------------------------
# The dependency closure of a package list, as apt would install it.
closure() {
	apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
		--no-breaks --no-replaces --no-enhances "$@" 2>/dev/null |
		grep -v -e '^ ' -e '^<' | sed 's/:.*//' | LC_ALL=C sort -u
}
# The package that owns a path: tries it as given, with and without the
# /usr prefix (merged /usr), and resolved through symlinks.
owner() {
	local p=$1 q
	for q in "$p" "/usr$p" "${p#/usr}" "$(realpath -m "$p")"; do
		dpkg -S "$q" 2>/dev/null | grep -v '^diversion' | head -n 1 |
			sed 's/:.*//; s/, .*//' | grep . && return 0
	done
	return 1
}
# Packages (one per line) not in the closure file $1.
outside() { LC_ALL=C comm -23 - "$1"; }

closure $BUILD_PKGS >"$TMP/build-closure"
# The build's .d files (-MMD) leave system headers out: list every header
# with -M and the Makefile's own CFLAGS.
cflags=$(cd "$SRC" && printf 'print-cflags:\n\t@echo $(CFLAGS)\n' |
	make -s -f Makefile -f - print-cflags | sed 's/-MMD//; s/-MP//')
headers=$(cd "$SRC" && for c in daemon/*.c daemon/*/*.c; do cc $cflags -M "$c"; done |
	tr ' \\' '\n\n' | sed 's/:$//' | grep '^/' | sort -u)
nheaders=$(echo "$headers" | grep -c .)
# A header no package owns shows up as "?PATH".
for h in $headers; do
	owner "$h" || echo "?$h"
done | LC_ALL=C sort -u >"$TMP/header-pkgs"
extra=$(outside "$TMP/build-closure" <"$TMP/header-pkgs" | tr '\n' ' ')
if [ "$nheaders" -gt 20 ] && [ -z "$extra" ]; then
	pass "the $nheaders system headers come from the build stage's packages ($(tr '\n' ' ' <"$TMP/header-pkgs"))"
else
	fail "the system headers come from the build stage's packages" \
		"headers: $nheaders; packages not installed by the build stage: $extra"
fi
for tool in make cc pkg-config; do
	path=$(command -v "$tool") && pkg=$(owner "$(realpath "$path")") &&
		grep -qxF "$pkg" "$TMP/build-closure"
	check "$tool comes from the build stage's packages (${pkg:-?})" test $? -eq 0
done

# --- The binary needs only the runtime stage's libraries --------------------------
BIN=$OUT/usr/bin/pginval
closure $RUNTIME_PKGS >"$TMP/runtime-closure"
ldd_out=$(ldd "$BIN" 2>&1)
check "ldd resolves every library" sh -c "! grep -q 'not found' <<'EOF'
$ldd_out
EOF"
needed=$(readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
direct=$(for lib in $needed; do
	path=$(awk -v l="$lib" '$1 == l && $2 == "=>" { print $3 }' <<<"$ldd_out")
	owner "$path" || echo "?$lib"
done | LC_ALL=C sort -u)
same "direct libraries ($(echo $needed)) come from exactly the runtime packages and libc6" \
	"$(echo "$direct" | grep -vx libc6)" "$(words "$RUNTIME_PKGS")"
all=$(awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out" | sort -u)
nall=$(echo "$all" | grep -c .)
libpkgs=$(for l in $all; do owner "$l" || echo "?$l"; done | LC_ALL=C sort -u)
extra=$(outside "$TMP/runtime-closure" <<<"$libpkgs")
if [ -z "$extra" ]; then
	pass "all $nall loaded libraries come from the runtime packages' dependencies"
else
	fail "all loaded libraries come from the runtime packages' dependencies" \
		"not pulled in by the runtime stage: $extra"
fi

# --- The commented HEALTHCHECK -------------------------------------------------------
if [ -z "$HEALTH_CMD" ]; then
	fail "the Dockerfile suggests a HEALTHCHECK CMD"
	finish
fi
pass "the Dockerfile suggests a HEALTHCHECK CMD"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The command as Docker would exec it, on this test's port.
health() {
	python3 - "$HEALTH_CMD" "$port" <<'EOF'
import json, subprocess, sys
argv = [a.replace("9187", sys.argv[2]) for a in json.loads(sys.argv[1])]
sys.exit(subprocess.run(argv, timeout=10).returncode)
EOF
}
wait_metrics() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
# Unreachable servers: /healthz answers 503.
cat >"$TMP/down.conf" <<EOF
[postgres]
conninfo = host=127.0.0.1 port=1 dbname=app user=app
[redis]
url = redis://127.0.0.1:1/0
[metrics]
listen = 127.0.0.1:$port
EOF
"$BIN" run -c "$TMP/down.conf" 2>"$TMP/down.log" &
daemon_pid=$!
if wait_metrics; then
	if health >/dev/null 2>&1; then
		fail "HEALTHCHECK fails while PostgreSQL and Redis are unreachable"
	else
		pass "HEALTHCHECK fails while PostgreSQL and Redis are unreachable"
	fi
else
	fail "the daemon serves [metrics] listen" "$(cat "$TMP/down.log")"
fi
kill "$daemon_pid" 2>/dev/null
wait "$daemon_pid" 2>/dev/null
daemon_pid=

# Real servers: /healthz answers 200 once LISTEN is active and Redis is up.
out=$(PYTHONPATH=tests/lib python3 - "$BIN" "$port" "$TMP" "$HEALTH_CMD" <<'EOF' 2>&1
import json, subprocess, sys, time
from servers import Postgres, Redis

binary, port, tmp, health = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
argv = [a.replace("9187", port) for a in json.loads(health)]
with Postgres() as pg, Redis() as redis:
    pg.psql_file("sql/pginval.sql")
    conf = "%s/up.conf" % tmp
    with open(conf, "w") as f:
        f.write("[postgres]\nconninfo = %s\n[redis]\nurl = %s/0\n"
                "[metrics]\nlisten = 127.0.0.1:%s\n" % (pg.conninfo, redis.url, port))
    with open("%s/up.log" % tmp, "w") as log:
        d = subprocess.Popen([binary, "run", "-c", conf], stderr=log)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(argv, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                sys.exit("HEALTHCHECK never passed; daemon log:\n" +
                         open("%s/up.log" % tmp).read())
            time.sleep(0.2)
    finally:
        d.terminate()
        d.wait(30)
print("healthy")
EOF
)
if [ "$out" = healthy ]; then
	pass "HEALTHCHECK passes once the daemon listens on PostgreSQL and Redis is connected"
else
	fail "HEALTHCHECK passes once the daemon listens on PostgreSQL and Redis is connected" "$out"
fi

finish
