# Parley's tasks. `make run` starts the server on the embedded SQLite
# default; `make test` runs every test on SQLite and the store, API and MCP
# suites on PostgreSQL too (a throwaway cluster when PARLEY_TEST_DATABASE_URL
# is unset).
GO       ?= go
# The Go that builds, tests and runs Parley. Go 1.26.8 lacks the fixes of
# 1.26.9 and 1.26.10 to net/http, textproto and crypto/x509 that govulncheck
# finds Parley's code reaching (`make vuln`); the go command fetches this
# one through the module proxy on first use (~76 MB). go.mod stays at
# 1.26.8, so the language and its GODEBUG defaults do not change.
export GOTOOLCHAIN := go1.27.3
BIN      := bin/parley
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)

.PHONY: build run test test-sqlite e2e static lint vuln bench bench-go bench-instructions migrate clean

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/parley

run: build
	./$(BIN) serve

# The rest package, the longest, takes about 4 minutes here and 6 on a
# loaded host; go test's default 10-minute limit per package would fail a
# slower CI machine that still finishes within its 15 minutes.
TESTFLAGS ?= -race -count=1 -timeout 14m

test:
	scripts/with-postgres.sh scripts/with-redis.sh $(GO) test $(TESTFLAGS) ./...

test-sqlite:
	$(GO) test $(TESTFLAGS) ./...

e2e: build
	scripts/e2e.sh

lint: static
	GO=$(GO) scripts/vulncheck.sh

# What CI checks before the tests: formatting (the toolchain's gofmt),
# go vet and staticcheck. Not govulncheck, whose findings come with the
# database's day rather than with a change.
static:
	@unformatted="$$("$$($(GO) env GOROOT)/bin/gofmt" -l .)"; \
	if [ -n "$$unformatted" ]; then echo "gofmt -l lists:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# govulncheck against golang.org/x/vulndb as the module proxy serves it:
# vuln.go.dev is not reachable from here or from CI. Exits 3 when the code
# calls a vulnerable function. VULNDB_VERSION=... picks the database.
vuln:
	GO=$(GO) scripts/vulncheck.sh

# The open-loop load generator (docs/benchmarks.md), against a durable
# throwaway PostgreSQL unless PARLEY_TEST_DATABASE_URL names one.
# BENCHFLAGS passes flags, e.g. BENCHFLAGS="-rates 1000 -databases sqlite".
bench: build
	PARLEY_PG_DURABLE=1 scripts/with-postgres.sh $(GO) run ./bench/loadgen -parley $(BIN) $(BENCHFLAGS)

# Closed-loop testing.B benchmarks of the same three paths, and of the
# store's turn and usage writes, for profiling (-cpuprofile) and
# allocation counts.
bench-go:
	scripts/with-postgres.sh $(GO) test -run '^$$' -bench . -benchtime 2000x -count 3 ./bench/ ./store/

# Instructions per completion under valgrind's callgrind (user space), for
# the bare proxy, proxy+commit and Parley on SQLite: a count that does not
# move with the host, to A/B the hot path (~1 min; needs valgrind).
# INSTRFLAGS passes flags, e.g. INSTRFLAGS="-m stream" or "-b /tmp/old".
bench-instructions: build
	GO=$(GO) scripts/instructions.sh $(INSTRFLAGS)

migrate: build
	./$(BIN) migrate $(or $(CMD),up)

clean:
	rm -rf bin
