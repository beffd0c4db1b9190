#!/bin/bash
# Tests "make install" and "make uninstall", the systemd units (the
# daemon's, pginval.service, and apply's, pginval-apply.service) and the
# man page:
#   - make install DESTDIR=... PREFIX=/usr lays out exactly the expected
#     files, with the expected modes and contents, and the units'
#     ExecStart= follows BINDIR (for PREFIX=/usr, the default /usr/local and
#     a custom BINDIR);
#   - make uninstall removes them all but leaves a real configuration;
#   - systemd-analyze verify accepts each installed unit, including its
#     Documentation=man:pginval(8) against the installed man page, and
#     rejects a broken copy (so the check itself is live);
#   - systemd-analyze security rates each unit's exposure at 2.0 or less,
#     the directives the commands rely on are present, and TimeoutStopSec
#     leaves room for the default shutdown_timeout;
#   - mandoc -Tlint reports nothing but notes about other manuals on this
#     machine, and the man page documents every setting, option and
#     environment variable the sources define (check_manpage.py).
# Needs: make, cc, systemd-analyze (package systemd), mandoc, python3; run
# scripts/install-deps first. Prints "N passed, M failed" last.
set -u

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 1
TMP=$(mktemp -d /tmp/pginval-install-test.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
. "$ROOT/tests/deploy/lib.sh"
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	fail "$1 is installed" "not found: run scripts/install-deps (package ${2:-$1})"
	return 1
}
# The files (and symlinks) under a tree, relative, sorted.
tree() { (cd "$1" && find . \( -type f -o -type l \) | sed 's|^\./||' | LC_ALL=C sort); }

have_analyze=1 have_mandoc=1
need systemd-analyze systemd || have_analyze=0
need mandoc || have_mandoc=0
if ! need python3; then
	echo "$passed passed, $failed failed"
	exit 1
fi

# --- make install PREFIX=/usr ---------------------------------------------------
if ! make pginval >"$TMP/build.log" 2>&1; then
	fail "make builds pginval" "$(tail -n 30 "$TMP/build.log")"
	echo "$passed passed, $failed failed"
	exit 1
fi
pass "make builds pginval"

D=$TMP/usr
check "make install PREFIX=/usr DESTDIR=..." make install PREFIX=/usr DESTDIR="$D"
same "PREFIX=/usr installs exactly the expected files" "$(tree "$D")" \
"etc/pginval/pginval.conf.example
usr/bin/pginval
usr/lib/systemd/system/pginval-apply.service
usr/lib/systemd/system/pginval.service
usr/share/man/man8/pginval.8
usr/share/pginval/pginval.conf.example
usr/share/pginval/pginval.sql
usr/share/pginval/uninstall.sql"

modes=$(cd "$D" && find . -type f -printf '%m %P\n' | LC_ALL=C sort -k2)
same "file modes: 755 for the binary, 644 for the rest" "$modes" \
"644 etc/pginval/pginval.conf.example
755 usr/bin/pginval
644 usr/lib/systemd/system/pginval-apply.service
644 usr/lib/systemd/system/pginval.service
644 usr/share/man/man8/pginval.8
644 usr/share/pginval/pginval.conf.example
644 usr/share/pginval/pginval.sql
644 usr/share/pginval/uninstall.sql"

for pair in sql/pginval.sql:usr/share/pginval/pginval.sql \
    sql/uninstall.sql:usr/share/pginval/uninstall.sql \
    deploy/pginval.conf.example:usr/share/pginval/pginval.conf.example \
    deploy/pginval.conf.example:etc/pginval/pginval.conf.example \
    docs/pginval.8:usr/share/man/man8/pginval.8; do
	check "${pair#*:} is a copy of ${pair%%:*}" cmp "${pair%%:*}" "$D/${pair#*:}"
done

check "the installed binary runs (--version)" \
	sh -c "'$D/usr/bin/pginval' --version | grep -Eq '^pginval [0-9]+\\.[0-9]+'"
check "the installed example configuration passes pginval check" \
	"$D/usr/bin/pginval" check -c "$D/etc/pginval/pginval.conf.example"

# Each unit, with the command it runs.
UNITS="pginval.service:run pginval-apply.service:apply"
for pair in $UNITS; do
	name=${pair%%:*} cmd=${pair#*:}
	unit=$D/usr/lib/systemd/system/$name
	same "installed $name: ExecStart= uses BINDIR=/usr/bin" \
		"$(grep '^ExecStart=' "$unit")" \
		"ExecStart=/usr/bin/pginval $cmd -c /etc/pginval/pginval.conf"
	same "installed $name: no /usr/local path left" \
		"$(grep -n '/usr/local/' "$unit")" ""
	# Nothing but the paths differs from the source in deploy/.
	same "installed $name differs from the source only in its paths" \
		"$(sed -e 's|/usr/bin/pginval|/usr/local/bin/pginval|g' \
		    -e 's|/usr/share/pginval/|/usr/local/share/pginval/|g' "$unit" |
		    diff "deploy/$name" - 2>&1)" ""
done

# --- the default prefix, and a custom BINDIR ----------------------------------
L=$TMP/local
check "make install DESTDIR=... (default PREFIX)" make install DESTDIR="$L"
same "the default PREFIX is /usr/local, configuration in /usr/local/etc" "$(tree "$L")" \
"usr/local/bin/pginval
usr/local/etc/pginval/pginval.conf.example
usr/local/lib/systemd/system/pginval-apply.service
usr/local/lib/systemd/system/pginval.service
usr/local/share/man/man8/pginval.8
usr/local/share/pginval/pginval.conf.example
usr/local/share/pginval/pginval.sql
usr/local/share/pginval/uninstall.sql"
for name in pginval.service pginval-apply.service; do
	same "default PREFIX: $name is installed unchanged" \
		"$(cmp "deploy/$name" "$L/usr/local/lib/systemd/system/$name" 2>&1)" ""
done
# The FILES section of the man page names the default-prefix paths.
for f in $(sed -n '/^\.Sh FILES/,/^\.Sh /s/^\.It Pa \(\/usr\/local\/[^ ]*\)$/\1/p' docs/pginval.8); do
	check "man page FILES: $f is installed" test -e "$L$f"
done

C=$TMP/custom
check "make install BINDIR=/opt/pginval/sbin" \
	make install PREFIX=/usr BINDIR=/opt/pginval/sbin DESTDIR="$C"
for pair in $UNITS; do
	same "custom BINDIR: ExecStart= of ${pair%%:*} follows it" \
		"$(grep '^ExecStart=' "$C/usr/lib/systemd/system/${pair%%:*}")" \
		"ExecStart=/opt/pginval/sbin/pginval ${pair#*:} -c /etc/pginval/pginval.conf"
done
check "custom BINDIR: the binary is there" test -x "$C/opt/pginval/sbin/pginval"

# --- systemd-analyze ------------------------------------------------------------
if [ "$have_analyze" = 1 ]; then
	for pair in $UNITS; do
		name=${pair%%:*} cmd=${pair#*:}
		unit=$D/usr/lib/systemd/system/$name
		# verify checks that ExecStart= exists and that Documentation=
		# man:pginval(8) resolves, so point both at the installed tree.
		rm -rf "$TMP/units" "$TMP/broken"
		mkdir -p "$TMP/units" "$TMP/broken"
		sed "s|^ExecStart=/usr/bin/pginval |ExecStart=$D/usr/bin/pginval |" "$unit" \
			>"$TMP/units/$name"
		check "systemd-analyze verify accepts the installed $name" \
			env MANPATH="$D/usr/share/man" systemd-analyze verify "$TMP/units/$name"
		check "systemd-analyze verify accepts deploy/$name (ExecStart= -> ./pginval)" \
			sh -c "sed 's|^ExecStart=/usr/local/bin/pginval |ExecStart=$ROOT/pginval |' \
			    'deploy/$name' >'$TMP/units/$name' &&
			    MANPATH='$D/usr/share/man' systemd-analyze verify '$TMP/units/$name'"
		# A control: the same check must fail for a missing binary.
		sed "s|^ExecStart=/usr/bin/pginval |ExecStart=$TMP/nonexistent/pginval |" "$unit" \
			>"$TMP/broken/$name"
		if env MANPATH="$D/usr/share/man" systemd-analyze verify \
		    "$TMP/broken/$name" >"$TMP/broken.log" 2>&1; then
			fail "systemd-analyze verify rejects a $name whose ExecStart= is missing" \
				"$(cat "$TMP/broken.log")"
		else
			pass "systemd-analyze verify rejects a $name whose ExecStart= is missing"
		fi
		check "systemd-analyze security: $name exposure 2.0 or less" \
			systemd-analyze security --offline=yes --threshold=20 "$TMP/units/$name"
		echo "     ($name: $(systemd-analyze security --offline=yes "$TMP/units/$name" 2>&1 |
			grep 'Overall exposure' | sed 's/^→ //'))"
	done
fi

# The directives the commands' behaviour depends on, as documented.
default_st=$(sed -n 's/.*"daemon", "shutdown_timeout", OPT_SECONDS, [^,]*, "\([0-9]*\)".*/\1/p' daemon/core/config.c)
for pair in $UNITS; do
	name=${pair%%:*} cmd=${pair#*:}
	for d in 'Type=notify' 'NotifyAccess=main' \
	    "ExecStart=/usr/local/bin/pginval $cmd -c /etc/pginval/pginval.conf" \
	    'ExecReload=/bin/kill -HUP $MAINPID' 'WatchdogSec=30' 'Restart=on-failure' \
	    'DynamicUser=yes' 'SupplementaryGroups=pginval' 'ProtectSystem=strict' \
	    'ProtectHome=yes' 'PrivateTmp=yes' 'PrivateDevices=yes' 'NoNewPrivileges=yes' \
	    'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6' \
	    'SystemCallFilter=@system-service' 'SystemCallArchitectures=native' \
	    'CapabilityBoundingSet=' 'MemoryDenyWriteExecute=yes' 'LockPersonality=yes' \
	    'RestrictNamespaces=yes' 'RestrictRealtime=yes' 'ProtectKernelTunables=yes' \
	    'ProtectKernelModules=yes' 'ProtectKernelLogs=yes' 'ProtectControlGroups=yes' \
	    'ProtectClock=yes' 'ProtectHostname=yes' 'ProtectProc=invisible' 'UMask=0077'; do
		check "$name has $d" grep -qxF "$d" "deploy/$name"
	done
	# SIGTERM drains for up to shutdown_timeout: systemd must wait longer.
	stop_sec=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)$/\1/p' "deploy/$name")
	check "$name: TimeoutStopSec ($stop_sec) is above the default shutdown_timeout ($default_st)" \
		test -n "$default_st" -a -n "$stop_sec" -a "${stop_sec:-0}" -gt "${default_st:-999}"
	# The watchdog is fed every WatchdogSec/2 from the loop; STATUS= every 5 s.
	check "$name: WatchdogSec is at least 10 s (the loop feeds it every half)" \
		test "$(sed -n 's/^WatchdogSec=\([0-9]*\)$/\1/p' "deploy/$name")" -ge 10
done

# --- make uninstall ------------------------------------------------------------------
check "make uninstall PREFIX=/usr DESTDIR=..." make uninstall PREFIX=/usr DESTDIR="$D"
same "make uninstall removes every installed file" "$(tree "$D")" ""
check "make uninstall removes the empty etc/pginval directory" test ! -e "$D/etc/pginval"

make install PREFIX=/usr DESTDIR="$D" >/dev/null 2>&1
echo "[postgres]" >"$D/etc/pginval/pginval.conf"
check "make uninstall (with a real pginval.conf in place)" make uninstall PREFIX=/usr DESTDIR="$D"
same "make uninstall keeps the real pginval.conf and nothing else" "$(tree "$D")" \
	"etc/pginval/pginval.conf"
check "make uninstall (default PREFIX)" make uninstall DESTDIR="$L"
same "make uninstall (default PREFIX) removes every installed file" "$(tree "$L")" ""

# --- the man page --------------------------------------------------------------------
if [ "$have_mandoc" = 1 ]; then
	check "mandoc -Tlint: no warnings or errors" \
		sh -c 'out=$(mandoc -Tlint -Wwarning docs/pginval.8 2>&1); rc=$?; printf "%s" "$out"; [ $rc -eq 0 ] && [ -z "$out" ]'
	# Style notes about other manuals depend on what this machine has
	# installed; any other style note is a real one.
	same "mandoc -Tlint: no style notes" \
		"$(mandoc -Tlint -Wstyle docs/pginval.8 2>&1 |
		    grep -v -e 'referenced manual not found' -e 'outdated mandoc.db')" ""
	check "mandoc renders the page with a NAME line" \
		sh -c "mandoc -Tascii docs/pginval.8 | col -b | grep -q 'pginval - relay PostgreSQL row changes'"
fi
out=$(python3 tests/deploy/check_manpage.py "$ROOT" 2>&1)
while IFS= read -r line; do
	case $line in
	PASS\ *) pass "man page: ${line#PASS }" ;;
	FAIL\ *) fail "man page: ${line#FAIL }" ;;
	*) fail "check_manpage.py: unexpected output" "$line" ;;
	esac
done <<EOF
$out
EOF

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
