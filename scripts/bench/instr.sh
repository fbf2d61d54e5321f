#!/usr/bin/env bash
# User-space instructions per proxied request, for the bare proxy and
# gateway variants, counted by valgrind's callgrind: the same binary and
# load give the same count however busy the machine is, so a change of a
# few hundred instructions per request shows, where req/s moves by 15 %
# between runs of identical code. Kernel time (about half a proxy's CPU
# here, and the same for the bare proxy and the gateway) is not counted.
#
# Usage: scripts/bench/instr.sh [variant ...]
#   a variant is a name and gateway flags, e.g. "nolog=-access-log=false";
#   default: gateway (as cmd/gateway serves).
#   env: DURATION=10s (counted load per target, after 3s of warm-up)
#        TOP=25 (the gateway's top functions by own instructions; 0: none)
# Counts include the per-request share of background work (timers, the
# runtime's sysmon, Listener's checker), which valgrind's slowness (about
# 1,000-3,000 requests/s) inflates to a few hundred instructions.
set -euo pipefail

DURATION=${DURATION:-10s}
TOP=${TOP:-25}
KEY=gw_benchmark_key_0123456789abcdef
UP=127.0.0.1:18091
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("gateway=")

cd "$(dirname "$0")/../.."
# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
ensure_pkg wrk wrk || exit 1
ensure_pkg valgrind valgrind || exit 1
# shellcheck disable=SC2046 # one address per word
ports_free "$UP" $(for p in $(seq 18092 $((18092 + ${#VARIANTS[@]}))); do echo 127.0.0.1:$p; done)
workspace
go build -o "$bin/" ./scripts/bench/upstream ./scripts/bench/bareproxy ./scripts/bench/gateway

GOMAXPROCS=1 "$bin/upstream" -addr "$UP" & pids+=($!)
wait_ready "http://$UP/api/users/7"

# count NAME PORT COMMAND...: instructions per request of COMMAND under load.
count() {
	local name=$1 port=$2 out=$bin/cg.$1
	shift 2
	GOMAXPROCS=1 valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$bin/$name.log" 2>&1 &
	local vg=$!
	pids+=($vg)
	wait_ready "http://127.0.0.1:$port/api/users/7" 2>/dev/null # valgrind takes a few seconds to start
	local url="http://127.0.0.1:$port/api/users/7"
	wrk -t1 -c8 -d3s --timeout 10s -H "X-API-Key: $KEY" "$url" >/dev/null
	callgrind_control -z "$vg" >/dev/null 2>&1
	local reqs
	reqs=$(wrk -t1 -c8 -d"$DURATION" --timeout 10s -H "X-API-Key: $KEY" "$url" | awk '/requests in/ { print $1 }')
	callgrind_control -d "$vg" >/dev/null 2>&1
	kill "$vg" 2>/dev/null || true
	wait "$vg" 2>/dev/null || true
	local dump
	dump=$(ls -t "$out".* 2>/dev/null | head -1)
	[ -n "$dump" ] || { echo "callgrind wrote no profile for $name (see its log: valgrind can trip over Go's signals; run again)" >&2; exit 1; }
	local total
	total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
	echo "$name $((total / reqs)) $reqs $dump"
}

port=18092
read -r _ bare_n bare_reqs _ <<<"$(count bare $port "$bin/bareproxy" -addr 127.0.0.1:$port -upstream "$UP")"
printf '%-12s %7d instructions/request  1.00x  (%d requests)\n' bare "$bare_n" "$bare_reqs"
for v in "${VARIANTS[@]}"; do
	name=${v%%=*} flags=${v#*=}
	port=$((port + 1))
	# shellcheck disable=SC2086 # flags are words
	read -r _ n reqs dump <<<"$(count "$name" $port "$bin/gateway" -addr 127.0.0.1:$port -upstream "http://$UP" -key "$KEY" $flags)"
	printf '%-12s %7d instructions/request  %.2fx  (%d requests)\n' "$name" "$n" "$(awk -v a="$n" -v b="$bare_n" 'BEGIN { print a / b }')" "$reqs"
	if [ "$TOP" -gt 0 ]; then
		callgrind_annotate "$dump" 2>/dev/null | awk -v n="$reqs" -v top="$TOP" '
			/^ *[0-9,]+ \(/ && !/PROGRAM TOTALS/ && k < top {
				c = $1; gsub(",", "", c); f = $0; sub(/.*%\) +/, "", f); sub(/^[^:]*:/, "", f); sub(/ \[.*/, "", f)
				printf "    %6d  %s\n", c / n, f; k++
			}'
	fi
done
