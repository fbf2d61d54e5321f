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
#        BASE=<git revision>: also count the gateway built from that
#          revision (as "base"), in the same run, and print each variant's
#          ratio to it: the before/after figure of a change.
# Counts include the per-request share of background work (timers, the
# runtime's sysmon, Listener's checker), which valgrind's slowness (about
# 1,000-3,000 requests/s) inflates to a few hundred instructions; every
# target is driven for the same time, so the shares are comparable.
#
# valgrind used to abort now and then on Go's asynchronous preemption
# signals (an assertion in callgrind's signal handling), leaving no
# profile: the programs run with GODEBUG=asyncpreemptoff=1, which the
# request path does not notice, and a target whose run leaves no profile is
# run again (up to three times).
set -euo pipefail

DURATION=${DURATION:-10s}
TOP=${TOP:-25}
BASE=${BASE:-}
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
ports_free "$UP" $(for p in $(seq 18092 $((18093 + ${#VARIANTS[@]}))); do echo 127.0.0.1:$p; done)
workspace
go build -o "$bin/" ./scripts/bench/upstream ./scripts/bench/bareproxy ./scripts/bench/gateway
if [ -n "$BASE" ]; then
	rev=$(git rev-parse --verify "$BASE^{commit}")
	git worktree add --detach "$bin/base-src" "$rev" >/dev/null 2>&1
	(cd "$bin/base-src" && go build -o "$bin/base-gateway" ./scripts/bench/gateway)
	git worktree remove --force "$bin/base-src"
fi

GOMAXPROCS=1 "$bin/upstream" -addr "$UP" & pids+=($!)
wait_ready "http://$UP/api/users/7"

# count NAME PORT COMMAND...: instructions per request of COMMAND under load;
# prints "NAME INSTRUCTIONS REQUESTS PROFILE".
count() {
	local name=$1 port=$2 try
	shift 2
	for try in 1 2 3; do
		if count_once "$name.$try" "$port" "$@"; then return; fi
		echo "callgrind wrote no profile for $name (try $try; its log: $(tail -1 "$bin/$name.$try.log"))" >&2
	done
	exit 1
}

count_once() {
	local name=$1 port=$2 out=$bin/cg.$1
	shift 2
	GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$bin/$name.log" 2>&1 &
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
	[ -n "$dump" ] || return 1
	local total
	total=$(callgrind_annotate --auto=no "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
	[ -n "$total" ] && [ "${reqs:-0}" -gt 0 ] || return 1
	echo "${name%.*} $((total / reqs)) $reqs $dump"
}

# top DUMP REQUESTS: the functions with the most own instructions per request.
top() {
	[ "$TOP" -gt 0 ] || return 0
	callgrind_annotate --auto=no "$1" 2>/dev/null | awk -v n="$2" -v top="$TOP" '
		/^ *[0-9,]+ \(/ && !/PROGRAM TOTALS/ && k < top {
			c = $1; gsub(",", "", c); f = $0; sub(/.*%\) +/, "", f); sub(/^[^:]*:/, "", f); sub(/ \[.*/, "", f)
			printf "    %6d  %s\n", c / n, f; k++
		}'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'; }

port=18092
read -r _ bare_n bare_reqs _ <<<"$(count bare $port "$bin/bareproxy" -addr 127.0.0.1:$port -upstream "$UP")"
[ -n "$bare_n" ] || exit 1
printf '%-12s %7d instructions/request  1.00x  (%d requests)\n' bare "$bare_n" "$bare_reqs"
base_n=
if [ -n "$BASE" ]; then
	port=$((port + 1))
	read -r _ base_n base_reqs base_dump <<<"$(count base $port "$bin/base-gateway" -addr 127.0.0.1:$port -upstream "http://$UP" -key "$KEY")"
	[ -n "$base_n" ] || exit 1
	printf '%-12s %7d instructions/request  %s  (%d requests; %s)\n' base "$base_n" "$(ratio "$base_n" "$bare_n")" "$base_reqs" "$BASE"
	top "$base_dump" "$base_reqs"
fi
for v in "${VARIANTS[@]}"; do
	name=${v%%=*} flags=${v#*=}
	port=$((port + 1))
	# shellcheck disable=SC2086 # flags are words
	read -r _ n reqs dump <<<"$(count "$name" $port "$bin/gateway" -addr 127.0.0.1:$port -upstream "http://$UP" -key "$KEY" $flags)"
	[ -n "$n" ] || exit 1
	vs_base=
	[ -z "$base_n" ] || vs_base=", $(ratio "$n" "$base_n") of base"
	printf '%-12s %7d instructions/request  %s  (%d requests%s)\n' "$name" "$n" "$(ratio "$n" "$bare_n")" "$reqs" "$vs_base"
	top "$dump" "$reqs"
done
