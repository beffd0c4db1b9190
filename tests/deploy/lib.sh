# Shared by the shell tests in tests/deploy: counters and checks that
# print "ok   ..." or "FAIL ..." lines, and the closing summary line.
passed=0 failed=0

pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() {
	failed=$((failed + 1))
	echo "FAIL $1"
	if [ -n "${2:-}" ]; then printf '%s\n' "$2" | sed 's/^/     /'; fi
}
# check DESCRIPTION COMMAND...: passes when COMMAND exits 0; its output is
# shown on failure.
check() {
	local what=$1 out
	shift
	if out=$("$@" 2>&1); then pass "$what"; else fail "$what" "$out"; fi
}
# same DESCRIPTION GOT WANT
same() {
	if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "$(printf 'got:  %s\nwant: %s' "$2" "$3")"; fi
}
