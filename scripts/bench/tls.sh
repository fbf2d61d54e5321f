#!/usr/bin/env bash
# TLS cost through the real binary (cmd/gateway, embedded store), in one run:
# the same gateway started twice, plain HTTP and with TLS_CERT_FILE/KEY_FILE
# (a self-signed ECDSA P-256 certificate), in front of the bench upstream.
#   keep-alive  wrk, CONNS connections reused: requests/s, TLS as a ratio of plain
#   handshake   wrk with Connection: close (a new connection, so a full TLS
#               handshake, per request): requests/s, and what a handshake
#               costs: 1/rps_tls - 1/rps_plain, machine time at saturation,
#               wrk's side of the handshake included (it shares the cores)
# Rounds alternate the two so that drift on a shared machine hits both.
# Usage: scripts/bench/tls.sh   (env: DURATION=5s CONNS=32 ROUNDS=3)
set -euo pipefail
DURATION=${DURATION:-5s}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
cd "$(dirname "$0")/../.."
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
go build -o "$dir/gateway" ./cmd/gateway
go build -o "$dir/upstream" ./scripts/bench/upstream
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
UP=127.0.0.1:18191 PLAIN=18192 TLS=18193 ADMIN=bench-admin-key-0123456789
"$dir/upstream" -addr $UP & pids+=($!)
start() { # port, extra env...
  local port=$1; shift
  env "$@" PORT="$port" HOST=127.0.0.1 ADMIN_API_KEY=$ADMIN DATA_DIR="$dir/data-$port" LOG_LEVEL=warn \
    "$dir/gateway" >"$dir/log-$port" 2>&1 & pids+=($!)
}
start $PLAIN
start $TLS TLS_CERT_FILE="$dir/cert.pem" TLS_KEY_FILE="$dir/key.pem"
for base in http://127.0.0.1:$PLAIN https://127.0.0.1:$TLS; do
  for _ in $(seq 100); do curl -skf "$base/ready" >/dev/null && break; sleep 0.1; done
  key=$(curl -sk -XPOST "$base/admin/tenants" -H "X-Admin-Key: $ADMIN" -d '{"name":"bench"}' | sed 's/.*"apiKey":"\([^"]*\)".*/\1/')
  tid=$(curl -sk "$base/admin/tenants" -H "X-Admin-Key: $ADMIN" | sed 's/.*"id":"\([^"]*\)".*/\1/')
  curl -skf -XPOST "$base/admin/routes" -H "X-Admin-Key: $ADMIN" \
    -d "{\"tenantId\":\"$tid\",\"path\":\"/\",\"upstreams\":[{\"url\":\"http://$UP\"}]}" >/dev/null
  echo "$key" >"$dir/key-${base##*:}"
done
sleep 0.5
rps() { # url, key, extra wrk args...
  local url=$1 key=$2; shift 2
  wrk -t1 -c"$CONNS" -d"$DURATION" -H "X-API-Key: $key" "$@" "$url/bench" | awk '/Requests\/sec/ {print $2}'
}
for r in $(seq "$ROUNDS"); do
  p=$(rps http://127.0.0.1:$PLAIN "$(cat "$dir/key-$PLAIN")")
  t=$(rps https://127.0.0.1:$TLS "$(cat "$dir/key-$TLS")")
  pc=$(rps http://127.0.0.1:$PLAIN "$(cat "$dir/key-$PLAIN")" -H "Connection: close")
  tc=$(rps https://127.0.0.1:$TLS "$(cat "$dir/key-$TLS")" -H "Connection: close")
  awk -v r="$r" -v p="$p" -v t="$t" -v pc="$pc" -v tc="$tc" -v c="$CONNS" 'BEGIN {
    printf "round %d  keep-alive: plain %.0f req/s, tls %.0f req/s, ratio %.3f | new connection per request: plain %.0f, tls %.0f req/s, ratio %.3f, a handshake costs %.3f ms of the machine at saturation\n",
      r, p, t, t/p, pc, tc, tc/pc, (1/tc - 1/pc)*1000 }'
done
