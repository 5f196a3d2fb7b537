#!/usr/bin/env bash
# vulncheck.sh [GOVULNCHECK ARGS...]
#
# Runs govulncheck (default: on ./...) against the Go vulnerability database
# as the Go module proxy serves it, because vuln.go.dev, govulncheck's default
# source, is not reachable from the development machines or CI:
#   - the module golang.org/x/vulndb holds every report as an OSV file in
#     data/osv/; `go mod download` fetches it (~25 MB) into the module cache;
#   - govulncheck reads a directory of OSV files given as -db file://DIR and
#     builds the index in memory (vuln.go.dev's index/ is not needed).
# That second point is an undocumented feature of govulncheck, so its version
# is pinned: a govulncheck without it fails with "unrecognized vulndb format".
# (x/vulndb's own cmd/indexdb writes the documented layout, but building it
# downloads ~160 MB of Cloud dependencies.)
#
# VULNDB_VERSION picks the database (default: the proxy's latest). Exits 3,
# as govulncheck does, when the code calls a vulnerable function.
set -euo pipefail
cd "$(dirname "$0")/.."

GO="${GO:-go}"
GOVULNCHECK=golang.org/x/vuln/cmd/govulncheck@v1.9.0
VULNDB_VERSION="${VULNDB_VERSION:-latest}"

if ! info="$("$GO" mod download -json "golang.org/x/vulndb@$VULNDB_VERSION")"; then
	echo "vulncheck: cannot download golang.org/x/vulndb@$VULNDB_VERSION from the module proxy:" >&2
	echo "$info" >&2
	exit 1
fi
field() { sed -n "s/^\t\"$1\": \"\(.*\)\",\$/\1/p" <<<"$info"; }
osv="$(field Dir)/data/osv"
if ! compgen -G "$osv/GO-*.json" >/dev/null; then
	# An empty directory would make govulncheck report no vulnerabilities.
	echo "vulncheck: no OSV reports in $osv; has golang.org/x/vulndb moved them?" >&2
	exit 1
fi
echo "vulncheck: database golang.org/x/vulndb@$(field Version) from the module proxy" >&2

# Installed into bin/ rather than `go run`, which turns exit 3 into 1.
GOBIN="$PWD/bin" "$GO" install "$GOVULNCHECK"
if [[ $# -eq 0 ]]; then
	set -- ./...
fi
exec bin/govulncheck -db "file://$osv" "$@"
