#!/usr/bin/env bash
# CPU time of the server process per request, for the bare proxy and gateway
# variants, in one run: steadier than req/s on a shared machine, since other
# processes' load changes how long a request waits far more than how much
# CPU it costs.
#
# Usage: scripts/bench/cpu.sh [variant ...]
#   a variant is a name and gateway flags, e.g. "router=-fiber-router";
#   default: gateway (as cmd/gateway serves) and router (-fiber-router).
#   env: DURATION=4s CONNS=32 PROCS=1 ROUNDS=2
set -euo pipefail

DURATION=${DURATION:-4s}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-32}
PROCS=${PROCS:-1}
KEY=gw_benchmark_key_0123456789abcdef
UP=127.0.0.1:18091
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("gateway=" "router=-fiber-router")

cd "$(dirname "$0")/../.."
# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
ensure_pkg wrk wrk || exit 1
bin=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$bin"
}
trap cleanup EXIT
go build -o "$bin/" ./scripts/bench/upstream ./scripts/bench/bareproxy ./scripts/bench/gateway

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime + stime

GOMAXPROCS=$PROCS "$bin/upstream" -addr "$UP" & pids+=($!)
wait_ready "http://$UP/api/users/7"
names=(bare) ports=(18092) spids=()
GOMAXPROCS=$PROCS "$bin/bareproxy" -addr 127.0.0.1:18092 -upstream "$UP" & spids+=($!)
port=18093
for v in "${VARIANTS[@]}"; do
	name=${v%%=*} flags=${v#*=}
	# shellcheck disable=SC2086 # flags are words
	GOMAXPROCS=$PROCS "$bin/gateway" -addr 127.0.0.1:$port -upstream "http://$UP" -key "$KEY" $flags 2>/dev/null & spids+=($!)
	names+=("$name") ports+=($port)
	port=$((port + 1))
done
pids+=("${spids[@]}")
for i in "${!names[@]}"; do wait_ready "http://127.0.0.1:${ports[$i]}/api/users/7"; done

hz=$(getconf CLK_TCK)
declare -A best
for round in $(seq "$ROUNDS"); do
	for i in "${!names[@]}"; do
		url="http://127.0.0.1:${ports[$i]}/api/users/7"
		wrk -t1 -c"$CONNS" -d1s -H "X-API-Key: $KEY" "$url" >/dev/null
		t0=$(ticks "${spids[$i]}")
		n=$(wrk -t1 -c"$CONNS" -d"$DURATION" -H "X-API-Key: $KEY" "$url" | awk '/requests in/ { print $1 }')
		t1=$(ticks "${spids[$i]}")
		us=$(awk -v t="$((t1 - t0))" -v n="$n" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
		echo "  round $round: ${names[$i]} $us us/req ($n requests)" >&2
		b=${best[${names[$i]}]:-}
		if [ -z "$b" ] || awk -v a="$us" -v b="$b" 'BEGIN { exit !(a < b) }'; then best[${names[$i]}]=$us; fi
	done
done
for name in "${names[@]}"; do
	awk -v n="$name" -v u="${best[$name]}" -v b="${best[bare]}" 'BEGIN { printf "%-12s %6.2f us/req  %.2fx\n", n, u, u / b }'
done
