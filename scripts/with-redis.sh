#!/usr/bin/env bash
# with-redis.sh CMD [ARGS...]
#
# Runs CMD with PARLEY_TEST_REDIS_URL pointing at a Redis, so that the
# shared rate-limiter suite runs:
#   - when PARLEY_TEST_REDIS_URL is already set, CMD runs as is;
#   - else, when redis-server exists, a throwaway server is started on a
#     free port on 127.0.0.1 (nothing kept on disk) and stopped when CMD ends;
#   - else CMD runs without Redis after a loud warning, and with CI=true the
#     script fails.
set -euo pipefail

if [[ $# -eq 0 ]]; then
	echo "usage: $0 CMD [ARGS...]" >&2
	exit 2
fi
if [[ -n "${PARLEY_TEST_REDIS_URL:-}" ]]; then
	exec "$@"
fi
if ! command -v redis-server >/dev/null 2>&1; then
	echo "### Redis suite SKIPPED: no redis-server found and PARLEY_TEST_REDIS_URL is not set." >&2
	if [[ "${CI:-}" == "true" ]]; then
		exit 1
	fi
	exec "$@"
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
dir="$(mktemp -d)"
redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$dir" --daemonize no >"$dir/redis.log" 2>&1 &
pid=$!
cleanup() {
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
	if redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
		break
	fi
	sleep 0.05
done
echo "throwaway Redis on 127.0.0.1:$port" >&2
export PARLEY_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
set +e
"$@"
status=$?
set -e
exit "$status"
