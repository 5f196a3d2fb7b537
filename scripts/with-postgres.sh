#!/usr/bin/env bash
# with-postgres.sh CMD [ARGS...]
#
# Runs CMD with PARLEY_TEST_DATABASE_URL pointing at a PostgreSQL server, so
# that the PostgreSQL test suites run:
#   - when PARLEY_TEST_DATABASE_URL is already set, CMD runs as is;
#   - else, when initdb and pg_ctl exist (on PATH, in `pg_config --bindir`,
#     or the newest /usr/lib/postgresql/*/bin), a throwaway cluster is
#     started on a free port on 127.0.0.1 and removed when CMD ends;
#   - else CMD runs without PostgreSQL after a loud warning, and with CI=true
#     the script fails.
set -euo pipefail

if [[ $# -eq 0 ]]; then
	echo "usage: $0 CMD [ARGS...]" >&2
	exit 2
fi

if [[ -n "${PARLEY_TEST_DATABASE_URL:-}" ]]; then
	exec "$@"
fi

find_bindir() {
	local dir
	if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
		dirname "$(command -v initdb)"
		return 0
	fi
	if command -v pg_config >/dev/null 2>&1; then
		dir="$(pg_config --bindir 2>/dev/null || true)"
		if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
			echo "$dir"
			return 0
		fi
	fi
	for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		if [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
			echo "$dir"
			return 0
		fi
	done
	return 1
}

if ! bindir="$(find_bindir)"; then
	{
		echo "########################################################################"
		echo "### PostgreSQL suite SKIPPED: no initdb/pg_ctl found and"
		echo "### PARLEY_TEST_DATABASE_URL is not set. Install PostgreSQL or set it."
		echo "########################################################################"
	} >&2
	if [[ "${CI:-}" == "true" ]]; then
		echo "CI=true: the PostgreSQL suite must run; failing." >&2
		exit 1
	fi
	exec "$@"
fi

free_port() {
	python3 - <<'EOF' 2>/dev/null && return 0
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
	local port
	for port in $(shuf -i 20000-60000 -n 50); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	return 1
}

tmp="$(mktemp -d "${TMPDIR:-/tmp}/parley-pg.XXXXXX")"
data="$tmp/data"
as_pg=()
if [[ "$(id -u)" == "0" ]]; then
	# initdb refuses to run as root.
	chown postgres: "$tmp"
	chmod 700 "$tmp"
	as_pg=(runuser -u postgres --)
fi

cleanup() {
	local rc=$?
	"${as_pg[@]}" "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"${as_pg[@]}" "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$tmp/initdb.log" 2>&1 ||
	"${as_pg[@]}" "$bindir/initdb" -D "$data" -U postgres -A trust -E UTF8 >"$tmp/initdb.log" 2>&1 || {
	cat "$tmp/initdb.log" >&2
	exit 1
}

# Tests need no durability; benchmarks (PARLEY_PG_DURABLE=1) measure the
# commits a production server makes.
durability="-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
if [[ "${PARLEY_PG_DURABLE:-}" == "1" ]]; then
	durability=""
fi

started=""
for attempt in 1 2 3 4 5; do
	port="$(free_port)"
	if "${as_pg[@]}" "$bindir/pg_ctl" -D "$data" -l "$tmp/postgres.log" -w -t 30 \
		-o "-k $tmp -p $port -h 127.0.0.1 $durability -c max_connections=300" \
		start >/dev/null 2>&1; then
		started=1
		break
	fi
done
if [[ -z "$started" ]]; then
	echo "with-postgres.sh: could not start PostgreSQL from $bindir:" >&2
	cat "$tmp/postgres.log" >&2 || true
	exit 1
fi

export PARLEY_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
echo "with-postgres.sh: throwaway PostgreSQL ($("$bindir/postgres" --version 2>/dev/null | awk '{print $3}')) on 127.0.0.1:$port" >&2

# Not exec: the EXIT trap must stop the cluster.
set +e
"$@"
