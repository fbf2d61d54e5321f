#!/usr/bin/env bash
# CPU time of the server process per request, for the bare proxy and gateway
# variants, in one run: steadier than req/s on a shared machine, since other
# processes' load changes how long a request waits far more than how much
# CPU it costs.
#
# Usage: scripts/bench/cpu.sh [variant ...]
#   a variant is a name and gateway flags, e.g. "slog=-slog-access-log";
#   default: gateway (as cmd/gateway serves) and slog (-slog-access-log).
#   env: DURATION=4s CONNS=32 PROCS=1 ROUNDS=3
#        RATE=4000: offer a fixed load (requests/s, with vegeta, installed
#        with go install when missing) instead of wrk's closed loop of CONNS
#        connections, so every target is measured at the same request rate.
# Rounds rotate the order of the targets; the figures are each target's
# median us/req and the median of its same-round ratios to the bare proxy.
set -euo pipefail

DURATION=${DURATION:-4s}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-}
CONNS=${CONNS:-32}
PROCS=${PROCS:-1}
KEY=gw_benchmark_key_0123456789abcdef
UP=127.0.0.1:18091
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("gateway=" "slog=-slog-access-log")

cd "$(dirname "$0")/../.."
# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
ensure_pkg wrk wrk || exit 1
# shellcheck disable=SC2046 # one address per word
ports_free "$UP" $(for p in $(seq 18092 $((18092 + ${#VARIANTS[@]}))); do echo 127.0.0.1:$p; done)
workspace # sets bin; the processes put in pids are stopped on exit
go build -o "$bin/" ./scripts/bench/upstream ./scripts/bench/bareproxy ./scripts/bench/gateway
vegeta=$(command -v vegeta || true)
if [ -n "$RATE" ] && [ -z "$vegeta" ]; then
	echo "installing vegeta" >&2
	GOBIN="$bin" go install github.com/tsenart/vegeta/v12@v12.12.0
	vegeta=$bin/vegeta
fi

# load URL DURATION -> the number of requests answered
load() {
	if [ -n "$RATE" ]; then
		echo "GET $1" | "$vegeta" attack -rate="$RATE" -duration="$2" -header "X-API-Key: $KEY" |
			"$vegeta" report -type=text | awk '/^Requests/ { gsub(",", ""); print $5 }'
	else
		wrk -t1 -c"$CONNS" -d"$2" -H "X-API-Key: $KEY" "$1" | awk '/requests in/ { print $1 }'
	fi
}

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
declare -A US # US[round.name] = us/req
n=${#names[@]}
for round in $(seq "$ROUNDS"); do
	for k in $(seq 0 $((n - 1))); do
		i=$(((k + round - 1) % n))
		url="http://127.0.0.1:${ports[$i]}/api/users/7"
		load "$url" 1s >/dev/null # warm up
		t0=$(ticks "${spids[$i]}")
		reqs=$(load "$url" "$DURATION")
		t1=$(ticks "${spids[$i]}")
		us=$(awk -v t="$((t1 - t0))" -v n="$reqs" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
		echo "  round $round: ${names[$i]} $us us/req ($reqs requests)" >&2
		US[$round.${names[$i]}]=$us
	done
done
median() { sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
[ -n "$RATE" ] && echo "at $RATE requests/s:" || echo "$CONNS connections, as fast as they go:"
for name in "${names[@]}"; do
	us=$(for r in $(seq "$ROUNDS"); do echo "${US[$r.$name]}"; done | median)
	x=$(for r in $(seq "$ROUNDS"); do awk -v a="${US[$r.$name]}" -v b="${US[$r.bare]}" 'BEGIN { print a / b }'; done | median)
	printf '%-12s %7.2f us/req  %sx the bare proxy\n' "$name" "$us" "$x"
done
