#!/usr/bin/env bash
# Starts 3 gateway instances on loopback sharing PostgreSQL and Redis, with
# nginx in front as the load balancer. Ctrl-C stops everything it started.
#
#   DATABASE_URL, REDIS_URL, ADMIN_API_KEY   override the defaults below
#   LB_PORT (8080), BASE_PORT (3101)         where to listen
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${DATABASE_URL:=postgres://postgres@127.0.0.1:5432/gateway_cluster?sslmode=disable}"
: "${REDIS_URL:=redis://127.0.0.1:6379/0}"
: "${ADMIN_API_KEY:=cluster-admin-key-0123456789}"
: "${LB_PORT:=8080}"
: "${BASE_PORT:=3101}"
export DATABASE_URL REDIS_URL ADMIN_API_KEY

if ! command -v nginx >/dev/null; then
	echo "installing nginx from Debian's packages..."
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
db=$(basename "${DATABASE_URL%%\?*}")
psql "${DATABASE_URL/\/$db/\/postgres}" -tc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
	|| psql "${DATABASE_URL/\/$db/\/postgres}" -qc "CREATE DATABASE $db"

work=$(mktemp -d)
pids=()
cleanup() {
	trap - INT TERM EXIT
	echo "stopping..."
	kill "${pids[@]}" 2>/dev/null || true
	kill "$(cat "$work/nginx.pid" 2>/dev/null)" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup INT TERM EXIT

CGO_ENABLED=0 go build -o "$work/gateway" ./cmd/gateway
"$work/gateway" migrate

servers=""
for i in 1 2 3; do
	port=$((BASE_PORT + i - 1))
	PORT=$port INSTANCE_ID="gw-$i" SHUTDOWN_DELAY=1s TRUSTED_PROXIES=127.0.0.1 \
		"$work/gateway" >"$work/gw-$i.log" 2>&1 &
	pids+=($!)
	servers="$servers    server 127.0.0.1:$port max_fails=1 fail_timeout=2s;\n"
done

printf 'daemon off;\npid %s/nginx.pid;\nerror_log %s/nginx-error.log;\nevents {}\nhttp {\n  access_log off;\n  client_body_temp_path %s;\n  proxy_temp_path %s;\n  upstream gateway {\n%b    keepalive 64;\n  }\n  server {\n    listen 127.0.0.1:%s;\n    client_max_body_size 32m;\n    location / {\n      proxy_pass http://gateway;\n      proxy_http_version 1.1;\n      proxy_set_header Connection "";\n      proxy_set_header Host $host;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_next_upstream error timeout http_503;\n      proxy_request_buffering off;\n    }\n  }\n}\n' \
	"$work" "$work" "$work" "$work" "$servers" "$LB_PORT" >"$work/nginx.conf"
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)

for i in 1 2 3; do
	port=$((BASE_PORT + i - 1))
	for _ in $(seq 1 100); do curl -fs "127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
done
cat <<MSG
cluster up (logs in $work):
  load balancer  http://127.0.0.1:$LB_PORT
  instances      http://127.0.0.1:$BASE_PORT  http://127.0.0.1:$((BASE_PORT + 1))  http://127.0.0.1:$((BASE_PORT + 2))
  admin key      $ADMIN_API_KEY
Ctrl-C to stop.
MSG
wait
