# Shared by run.sh, cpu.sh and instr.sh (sourced; KEY must be set).

# ensure_pkg COMMAND PACKAGE: install PACKAGE from the distribution when COMMAND is missing.
ensure_pkg() {
	command -v "$1" >/dev/null && return
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	command -v apt-get >/dev/null || { echo "$1 is missing and apt-get is not here: install $2" >&2; return 1; }
	echo "installing $2" >&2
	$sudo apt-get install -y "$2" >/dev/null 2>&1 || { $sudo apt-get update >/dev/null && $sudo apt-get install -y "$2" >/dev/null; }
}

# wait_ready URL: poll with a deadline instead of sleeping a guessed time.
wait_ready() {
	local url=$1 deadline=$((SECONDS + 20))
	until curl -fsS -o /dev/null -H "X-API-Key: $KEY" "$url"; do
		[ $SECONDS -lt $deadline ] || { echo "not ready: $url" >&2; exit 1; }
		sleep 0.1
	done
}

# workspace: a temporary directory in $bin for the built programs, and $pids,
# the processes to stop; both are cleaned up when the script exits.
workspace() {
	bin=$(mktemp -d)
	pids=()
	trap cleanup EXIT
}

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$bin"
}

# ports_free HOST:PORT...: stop when something already listens on one of
# them: a server left behind by an earlier run would answer in place of the
# one this run starts (which fails to bind), and be measured instead.
ports_free() {
	local a busy=
	for a in "$@"; do
		if (exec 3<>"/dev/tcp/${a%:*}/${a##*:}") 2>/dev/null; then busy+=" $a"; fi
	done
	[ -z "$busy" ] || { echo "already in use, stop what listens there first:$busy" >&2; exit 1; }
}
