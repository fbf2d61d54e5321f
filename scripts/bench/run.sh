#!/usr/bin/env bash
# Benchmarks the gateway against the ceiling of its stack, in one run:
#   direct   wrk -> upstream
#   bare     wrk -> bare fasthttp reverse proxy -> upstream (the ceiling)
#   gateway  wrk -> gateway (proxy.New: auth, match, weighted balance, transforms,
#            JSON access log, metrics) -> upstream
#   nolog    the same gateway with its access log dropped (what logging costs)
#   full     the full path: the gateway with the tenant's rate limit (high,
#            never reached) shared through Redis, and a circuit breaker
#            (shared) and retry block on the route
#   fiber    a bare Fiber proxy (middleware/proxy.Do), for reference
#   nginx    nginx as a keep-alive reverse proxy (one worker per PROCS), for
#            reference; installed with apt-get when missing, skipped if that fails
#   base     with BASE=<git revision>: the gateway built from that revision,
#            for a change's before/after ratio in one run (added to TARGETS)
# Two phases: throughput (CONNS connections) and latency (one connection, so
# p50 is service time rather than queueing). Prints requests/s, p50 and p99
# for each, each proxy's throughput as a ratio of the bare proxy's, and the
# median latency the gateway adds.
#
# Usage: scripts/bench/run.sh   (env: DURATION=4s CONNS=32 PROCS=1 ROUNDS=3
#                                TARGETS="direct bare gateway ..." REDIS_URL=redis://127.0.0.1:6379/0
#                                BASE=<git revision>)
# Every round measures every target, in an order rotated by one each round so
# that no target always follows the same neighbour. The table shows each
# target's best round; the ratios are the median over rounds of the ratio
# within a round, which cancels the slow drifts of a shared machine.
set -euo pipefail

DURATION=${DURATION:-4s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
PROCS=${PROCS:-1} # GOMAXPROCS of each server process, nginx's worker_processes
KEY=gw_benchmark_key_0123456789abcdef
UP=127.0.0.1:18081
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
TARGETS=${TARGETS:-"direct bare gateway nolog full fiber nginx"}
BASE=${BASE:-}
[ -z "$BASE" ] || [[ " $TARGETS " == *" base "* ]] || TARGETS="$TARGETS base"
declare -A ADDR=([direct]=$UP [bare]=127.0.0.1:18082 [gateway]=127.0.0.1:18083 [nolog]=127.0.0.1:18084
	[full]=127.0.0.1:18085 [fiber]=127.0.0.1:18086 [nginx]=127.0.0.1:18087 [base]=127.0.0.1:18088)

cd "$(dirname "$0")/../.."
# shellcheck source=scripts/bench/lib.sh
. scripts/bench/lib.sh
ensure_pkg wrk wrk || exit 1
if [[ " $TARGETS " == *" nginx "* ]] && ! ensure_pkg nginx nginx-light; then
	echo "nginx could not be installed: skipping it" >&2
	TARGETS=${TARGETS/nginx/}
fi

# shellcheck disable=SC2046 # one address per word
ports_free "$UP" $(for t in $TARGETS; do echo "${ADDR[$t]}"; done)
workspace # sets bin; the processes put in pids are stopped on exit

echo "building..." >&2
go build -o "$bin/" ./scripts/bench/upstream ./scripts/bench/bareproxy ./scripts/bench/gateway ./scripts/bench/fiberproxy
if [ -n "$BASE" ]; then
	rev=$(git rev-parse --verify "$BASE^{commit}")
	git worktree add --detach "$bin/base-src" "$rev" >/dev/null 2>&1
	(cd "$bin/base-src" && go build -o "$bin/base-gateway" ./scripts/bench/gateway)
	git worktree remove --force "$bin/base-src"
fi

gw() { GOMAXPROCS=$PROCS "$bin/gateway" -upstream "http://$UP" -key "$KEY" "$@" 2>/dev/null & pids+=($!); }
GOMAXPROCS=$PROCS "$bin/upstream" -addr "$UP" & pids+=($!)
for t in $TARGETS; do
	case $t in
	bare) GOMAXPROCS=$PROCS "$bin/bareproxy" -addr "${ADDR[bare]}" -upstream "$UP" & pids+=($!) ;;
	gateway) gw -addr "${ADDR[gateway]}" ;;
	base) GOMAXPROCS=$PROCS "$bin/base-gateway" -upstream "http://$UP" -key "$KEY" -addr "${ADDR[base]}" 2>/dev/null & pids+=($!) ;;
	nolog) gw -addr "${ADDR[nolog]}" -access-log=false ;;
	# Its own key prefix in the shared Redis; the limiter's keys expire by themselves.
	full) gw -addr "${ADDR[full]}" -redis "$REDIS_URL" -redis-prefix "bench:$$:" ;;
	fiber) GOMAXPROCS=$PROCS "$bin/fiberproxy" -addr "${ADDR[fiber]}" -upstream "http://$UP" & pids+=($!) ;;
	nginx)
		mkdir -p "$bin/nginx"
		cat >"$bin/nginx.conf" <<CONF
worker_processes $PROCS;
daemon off;
pid $bin/nginx.pid;
error_log $bin/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $bin/nginx;
  proxy_temp_path $bin/nginx;
  upstream up { server $UP; keepalive 128; }
  server {
    listen ${ADDR[nginx]};
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
		nginx -c "$bin/nginx.conf" -p "$bin/nginx" & pids+=($!) ;;
	esac
done

for t in $TARGETS; do wait_ready "http://${ADDR[$t]}/api/users/7"; done

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

declare -A R  # R[round.phase.target] = "rps p50 p99"
read -ra order <<<"$TARGETS"
n=${#order[@]}
for round in $(seq "$ROUNDS"); do
	for phase in throughput latency; do
		conns=$CONNS
		[ $phase = latency ] && conns=1
		for i in $(seq 0 $((n - 1))); do
			target=${order[$(((i + round - 1) % n))]}
			echo "  round $round, $phase: $target ($conns connections, $DURATION)..." >&2
			R[$round.$phase.$target]=$(run "$target" "http://${ADDR[$target]}/api/users/7" "$conns")
		done
	done
done

# best PHASE TARGET -> "rps p50 p99": the highest req/s and lowest p50, p99 of the rounds
best() {
	for round in $(seq "$ROUNDS"); do echo "${R[$round.$1.$2]}"; done |
		awk 'NR == 1 || $1 > r { r = $1 } NR == 1 || $2 < a { a = $2 } NR == 1 || $3 < b { b = $3 } END { print r, a, b }'
}
# ratio PHASE FIELD TARGET BASE -> the median over rounds of TARGET's FIELD / BASE's FIELD
ratio() {
	for round in $(seq "$ROUNDS"); do
		read -ra t <<<"${R[$round.$1.$3]}"
		read -ra b <<<"${R[$round.$1.$4]}"
		awk -v t="${t[$2]}" -v b="${b[$2]}" 'BEGIN { printf "%.4f\n", t / b }'
	done | sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.2fx (rounds %.2f-%.2f)", m, v[1], v[NR] }'
}
has() { [[ " $TARGETS " == *" $1 "* ]]; }

printf '\n%-10s %-8s %12s %10s %10s\n' phase target "req/s" "p50 us" "p99 us"
for phase in throughput latency; do
	for target in $TARGETS; do
		read -r rps p50 p99 <<<"$(best $phase "$target")"
		printf '%-10s %-8s %12s %10s %10s\n' "$phase" "$target" "$rps" "$p50" "$p99"
	done
done
if has bare; then
	echo
	echo "throughput as a ratio of the bare fasthttp proxy's, median of $ROUNDS rounds:"
	has gateway && echo "  gateway, limits off:          $(ratio throughput 0 gateway bare)   (goal >= 0.90x)"
	has nolog && echo "  gateway without access log:   $(ratio throughput 0 nolog bare)"
	has full && echo "  full path, shared rate limit: $(ratio throughput 0 full bare)   (goal >= 0.75x)"
	has fiber && echo "  bare Fiber proxy:             $(ratio throughput 0 fiber bare)"
	has nginx && echo "  nginx:                        $(ratio throughput 0 nginx bare)"
fi
if has gateway && has base; then echo "  gateway / base ($BASE):   $(ratio throughput 0 gateway base)"; fi
if has gateway && has fiber; then echo "  gateway / bare Fiber proxy:   $(ratio throughput 0 gateway fiber)"; fi
if has gateway && has nginx; then echo "  gateway / nginx:              $(ratio throughput 0 gateway nginx)"; fi
if has direct && has gateway; then
	read -r _ d50 _ <<<"$(best latency direct)"
	read -r _ g50 _ <<<"$(best latency gateway)"
	echo
	printf 'median latency added on an unloaded hop (best p50): gateway %.0f us over direct' "$(awk -v g="$g50" -v d="$d50" 'BEGIN { print g - d }')"
	if has bare; then read -r _ b50 _ <<<"$(best latency bare)"; printf ', %.0f us over the bare proxy' "$(awk -v g="$g50" -v b="$b50" 'BEGIN { print g - b }')"; fi
	if has full; then read -r _ f50 _ <<<"$(best latency full)"; printf '; full path %.0f us over direct' "$(awk -v f="$f50" -v d="$d50" 'BEGIN { print f - d }')"; fi
	echo " (goal <= 150 us)"
fi
