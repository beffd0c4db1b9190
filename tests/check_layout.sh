#!/bin/sh
# Checks that the daemon's includes only point down its layers:
#   daemon/lib   generic parts, which know nothing of pginval
#   daemon/core  the domain (configuration, events, rules, the message format)
#   daemon/run, daemon/apply   the two commands; neither includes the other
#   daemon/*.c   main.c and tail.c at the top, which may include anything
# Each include of a daemon header names its folder ("lib/buf.h"): a bare
# name, or a path that climbs with "..", is refused as well, so that the
# layer of every include can be read where it is written.
# Usage: tests/check_layout.sh [DIR] (default: daemon). Exits 1 on a
# violation, after listing them all.
cd "$(dirname "$0")/.." || exit 1
dir=${1:-daemon}

find "$dir" -name '*.[ch]' | LC_ALL=C sort | while read -r f; do
	# The folder of f, relative to dir: "" at the top.
	rel=${f#"$dir"/}
	case $rel in
	*/*) echo "$f ${rel%%/*}" ;;
	*) echo "$f ." ;;
	esac
done | awk -v dir="$dir" '
function level(folder) {
	if (folder == "lib") return 1
	if (folder == "core") return 2
	if (folder == "run" || folder == "apply") return 3
	if (folder == ".") return 9
	return 0
}
function bad(file, line, text, why) {
	printf "layout: %s:%d: %s: %s\n", file, line, text, why
	nbad++
}
{
	file = $1; own = $2; files++
	if (level(own) == 0) {
		bad(file, 0, "file", "in a folder that is no layer (expected lib, core, run or apply)")
		next
	}
	n = 0
	while ((getline text < file) > 0) {
		n++
		if (text !~ /^[ \t]*#[ \t]*include[ \t]*"/)
			continue
		includes++
		inc = text
		sub(/^[ \t]*#[ \t]*include[ \t]*"/, "", inc)
		sub(/".*$/, "", inc)
		if (inc ~ /\.\./) {
			bad(file, n, text, "climbs with \"..\"; name the folder under " dir " instead")
			continue
		}
		if (inc !~ /\//) {
			# A bare name: only a header beside a top-level file.
			if (own == "." && (getline tmp < (dir "/" inc)) >= 0) {
				close(dir "/" inc)
				continue
			}
			bad(file, n, text, "names no folder (write \"lib/" inc "\", \"core/" inc "\"...)")
			continue
		}
		folder = inc
		sub(/\/.*$/, "", folder)
		if (level(folder) == 0) {
			bad(file, n, text, "\"" folder "\" is no layer")
		} else if (level(folder) > level(own)) {
			bad(file, n, text, own " is below " folder ": a file may include only from its own layer or those under it (lib < core < run, apply)")
		} else if (level(own) == 3 && level(folder) == 3 && folder != own) {
			bad(file, n, text, "run and apply must not include each other; move what both need into core or lib")
		}
	}
	close(file)
}
END {
	printf "layout: %d files, %d includes, %d going the wrong way\n", files, includes, nbad
	exit nbad > 0
}'
