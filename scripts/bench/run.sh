#!/usr/bin/env bash
# Benchmarks the gateway against the ceiling of its stack, in one run:
#   direct   wrk -> upstream
#   bare     wrk -> bare fasthttp reverse proxy -> upstream
#   gateway  wrk -> gateway (proxy.New: auth, match, weighted balance, transforms) -> upstream
#   nolog    the same gateway with its access log dropped (what logging costs)
#   full     the full path: the gateway with the tenant's rate limit (high,
#            never reached) shared through Redis, and a circuit breaker
#            (shared) and retry block on the route
# Two phases: throughput (CONNS connections) and latency (one connection, so
# p50 is service time rather than queueing). Prints requests/s, p50 and p99
# for each, the gateway's throughput as a ratio of the bare proxy's, and the
# median latency the gateway adds.
#
# Usage: scripts/bench/run.sh        (env: DURATION=6s CONNS=32 PROCS=1 ROUNDS=2
#                                     REDIS_URL=redis://127.0.0.1:6379/0)
# Targets are measured in turn, ROUNDS times over; each figure is the best of
# the rounds, which filters out bursts of load from other processes on a
# shared machine.
# "gateway" writes its JSON access log (one line per request, to /dev/null);
# "nolog" drops the lines unformatted.
set -euo pipefail

DURATION=${DURATION:-6s}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-32}
PROCS=${PROCS:-1}          # GOMAXPROCS of each server process
KEY=gw_benchmark_key_0123456789abcdef
UP=127.0.0.1:18081 BARE=127.0.0.1:18082 GW=127.0.0.1:18083 NOLOG=127.0.0.1:18084 FULL=127.0.0.1:18085
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
TARGETS="direct bare gateway nolog full"

cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

bin=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$bin"
}
trap cleanup EXIT

echo "building..." >&2
go build -o "$bin/" ./scripts/bench/upstream ./scripts/bench/bareproxy ./scripts/bench/gateway

GOMAXPROCS=$PROCS "$bin/upstream" -addr "$UP" & pids+=($!)
GOMAXPROCS=$PROCS "$bin/bareproxy" -addr "$BARE" -upstream "$UP" & pids+=($!)
GOMAXPROCS=$PROCS "$bin/gateway" -addr "$GW" -upstream "http://$UP" -key "$KEY" 2>/dev/null & pids+=($!)
GOMAXPROCS=$PROCS "$bin/gateway" -addr "$NOLOG" -upstream "http://$UP" -key "$KEY" -access-log=false & pids+=($!)
# Its own key prefix in the shared Redis; the limiter's keys expire by themselves.
GOMAXPROCS=$PROCS "$bin/gateway" -addr "$FULL" -upstream "http://$UP" -key "$KEY" -redis "$REDIS_URL" \
	-redis-prefix "bench:$$:" 2>/dev/null & pids+=($!)

wait_ready() { # poll with a deadline instead of sleeping a guessed time
	local url=$1 deadline=$((SECONDS + 20))
	until curl -fsS -o /dev/null -H "X-API-Key: $KEY" "$url"; do
		[ $SECONDS -lt $deadline ] || { echo "not ready: $url" >&2; exit 1; }
		sleep 0.1
	done
}
wait_ready "http://$UP/api/users/7"
wait_ready "http://$BARE/api/users/7"
wait_ready "http://$GW/api/users/7"
wait_ready "http://$NOLOG/api/users/7"
wait_ready "http://$FULL/api/users/7"

# run NAME URL CONNS -> "rps p50_us p99_us"
run() {
	local url=$2 conns=$3
	wrk -t1 -c"$conns" -d1s -H "X-API-Key: $KEY" "$url" >/dev/null # warm up
	wrk -t1 -c"$conns" -d"$DURATION" --latency -H "X-API-Key: $KEY" "$url" | awk '
		function us(v) {
			if (v ~ /us$/) { sub(/us$/, "", v); return v + 0 }
			if (v ~ /ms$/) { sub(/ms$/, "", v); return v * 1000 }
			if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000000 }
			return v + 0
		}
		$1 == "50%" { p50 = us($2) }
		$1 == "99%" { p99 = us($2) }
		$1 == "Requests/sec:" { rps = $2 }
		/Non-2xx/ { bad = $NF }
		END { if (bad > 0) { print "non-2xx responses: " bad > "/dev/stderr"; exit 1 }
		      printf "%.0f %.1f %.1f\n", rps, p50, p99 }'
}

declare -A R
for round in $(seq "$ROUNDS"); do
	for phase in throughput latency; do
		conns=$CONNS
		[ $phase = latency ] && conns=1
		for target in $TARGETS; do
			case $target in
			direct) url="http://$UP/api/users/7" ;;
			bare) url="http://$BARE/api/users/7" ;;
			gateway) url="http://$GW/api/users/7" ;;
			nolog) url="http://$NOLOG/api/users/7" ;;
			full) url="http://$FULL/api/users/7" ;;
			esac
			echo "  round $round, $phase: $target ($conns connections, $DURATION)..." >&2
			got=$(run "$target" "$url" "$conns")
			# keep the best: highest req/s, lowest p50 and p99
			R[$phase.$target]=$(awk -v a="${R[$phase.$target]:-}" -v b="$got" 'BEGIN {
				if (a == "") { print b; exit }
				split(a, x, " "); split(b, y, " ")
				printf "%s %s %s\n", (y[1] > x[1] ? y[1] : x[1]), (y[2] < x[2] ? y[2] : x[2]), (y[3] < x[3] ? y[3] : x[3]) }')
		done
	done
done
printf '\n%-10s %-8s %12s %10s %10s\n' phase target "req/s" "p50 us" "p99 us"
for phase in throughput latency; do
	for target in $TARGETS; do
		read -r rps p50 p99 <<<"${R[$phase.$target]}"
		printf '%-10s %-8s %12s %10s %10s\n' "$phase" "$target" "$rps" "$p50" "$p99"
	done
done
read -r brps _ _ <<<"${R[throughput.bare]}"
read -r grps _ _ <<<"${R[throughput.gateway]}"
read -r nrps _ _ <<<"${R[throughput.nolog]}"
read -r frps _ _ <<<"${R[throughput.full]}"
read -r _ d50 _ <<<"${R[latency.direct]}"
read -r _ b50 _ <<<"${R[latency.bare]}"
read -r _ g50 _ <<<"${R[latency.gateway]}"
read -r _ f50 _ <<<"${R[latency.full]}"
awk -v g="$grps" -v n="$nrps" -v f="$frps" -v b="$brps" -v d50="$d50" -v b50="$b50" -v g50="$g50" -v f50="$f50" 'BEGIN {
	printf "\nlimits off:  gateway throughput = %.2fx the bare proxy (goal >= 0.90x); without the access log %.2fx\n", g / b, n / b
	printf "shared limit on (full path): %.2fx the bare proxy (goal >= 0.75x)\n", f / b
	printf "median latency added: gateway %.0f us over direct, %.0f us over the bare proxy; full path %.0f us over direct (goal <= 150 us)\n", g50 - d50, g50 - b50, f50 - d50
}'
