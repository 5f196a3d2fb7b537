#!/usr/bin/env bash
# Counts the instructions each target executes per completion, in user
# space, under valgrind's callgrind: the bare proxy, the proxy committing
# one row to SQLite (proxy+commit), and Parley on SQLite storing each turn,
# the targets of `make bench` (docs/benchmarks.md). CPU time moves with the
# host; this count hardly does (runs of one build agree to within 1.5%),
# so it tells apart two builds of the hot path that differ by 2% or more,
# which `make bench` cannot. Run it on an idle machine: work that runs by
# the clock (the checkpoint, the usage batcher) adds more per request when
# valgrind runs slower.
#
#   scripts/instructions.sh [-n REQUESTS] [-m json|stream] [-b PARLEY_BIN] [-o DIR] [TARGET...]
#
# TARGETs are proxy, commit and parley (all three by default). -o keeps
# each count's callgrind file in DIR, for `callgrind_annotate
# --inclusive=no FILE` (build Parley without -s -w for its function names:
# `go build -o bin/parley-sym ./cmd/parley`).
#
# Requests go one at a time after a warm-up of 300, so each turn commits
# alone and usage is written in small batches: SQLite's share is larger
# than under the benchmark's load. The kernel's work (system calls, which
# every target makes) is not counted, so these ratios are larger than the
# CPU ratios of `make bench`.
set -euo pipefail
cd "$(dirname "$0")/.."

n=2000 mode=json bin=bin/parley keep=""
while getopts "n:m:b:o:" opt; do
  case $opt in
    n) n=$OPTARG ;;
    m) mode=$OPTARG ;;
    b) bin=$OPTARG ;;
    o) keep=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
[ $# -gt 0 ] || targets=(proxy commit parley)
case $mode in json) stream=false ;; stream) stream=true ;; *) echo "-m is json or stream" >&2; exit 2 ;; esac
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
[ -x "$bin" ] || { echo "instructions.sh: no Parley binary at $bin; run make build" >&2; exit 1; }

# The Makefile's Go, which builds bin/parley: the count depends on the
# compiler, so every target must be built by the same one.
export GOTOOLCHAIN="${GOTOOLCHAIN:-$(sed -n 's/^export GOTOOLCHAIN := //p' Makefile)}"

dir=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
# The helpers end when their standard input does: it is a pipe whose only
# writer is this script (fd 3), so they end with it, however it ends.
mkfifo "$dir/hold"
exec 3<>"$dir/hold"
${GO:-go} build -o "$dir/loadgen" ./bench/loadgen

# The targets run as the benchmark runs them, with three changes callgrind
# needs: Go times its locks with RDTSCP, which valgrind 3.19 cannot run;
# callgrind fails on the signals of asynchronous preemption; and valgrind
# runs one thread at a time, so with more than one P the idle ones spin
# looking for work, and the count would be the spinning.
measured=(env GODEBUG=cpu.rdtscp=off,asyncpreemptoff=1 GOMAXPROCS=1
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.%p")

# announced FILE: the first line a helper prints, its URL.
announced() {
  for _ in $(seq 600); do
    [ -s "$1" ] && { head -1 "$1"; return; }
    sleep 0.1
  done
  fail "no URL in $1 within a minute" "${1%.out}.log"
}

# fail MESSAGE LOG: says what went wrong, with the end of LOG.
fail() {
  echo "instructions.sh: $1; the end of $(basename "$2"):" >&2
  tail -20 "$2" >&2
  exit 1
}

"$dir/loadgen" upstream <"$dir/hold" >"$dir/upstream.out" 2>"$dir/upstream.log" 3>&- &
upstream=$(announced "$dir/upstream.out")

# count TARGET: starts it under callgrind, warms it up, then counts n
# requests; sets per[TARGET] to the instructions per request.
count() {
  local target=$1 pid url key body
  # The requests, and Parley's project, provider and chat, are those of
  # bench/loadgen (upstreamTarget and parleyTarget in setup.go), so the
  # two measure the same completions: change them together.
  key="sk-loadgen"
  body="{\"model\":\"fake\",\"stream\":$stream,\"stream_options\":{\"include_usage\":$stream},\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"
  case $target in
    proxy | commit)
      local dsn=()
      [ "$target" = commit ] && dsn=("sqlite:$dir/commit-floor.db")
      "${measured[@]}" "$dir/loadgen" proxy "${upstream%/v1}" "${dsn[@]}" <"$dir/hold" >"$dir/$target.out" 2>"$dir/$target.log" 3>&- &
      pid=$!
      url=$(announced "$dir/$target.out")/v1/chat/completions
      ;;
    parley)
      local port
      port=$(freeport)
      key=pk_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
      PARLEY_DATA_DIR="$dir/parley" PARLEY_ADDR="127.0.0.1:$port" PARLEY_ALLOW_PRIVATE_UPSTREAMS=true \
        PARLEY_BOOTSTRAP_ADMIN_KEY="$key" "${measured[@]}" "$bin" serve >/dev/null 2>"$dir/parley.log" 3>&- &
      pid=$!
      for _ in $(seq 1200); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
      curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || fail "Parley was not ready within two minutes" "$dir/parley.log"
      local api="http://127.0.0.1:$port/api/v1" project provider chat
      project=$(create "$api/projects" "$key" '{"name":"instructions"}')
      provider=$(create "$api/ai-providers" "$key" "{\"projectId\":\"$project\",\"name\":\"fake\",\"type\":\"openai-compatible\",\"baseUrl\":\"$upstream\",\"defaultModel\":\"fake\",\"apiKey\":\"sk-loadgen-0123456789\"}")
      chat=$(create "$api/chats" "$key" "{\"projectId\":\"$project\",\"aiProviderId\":\"$provider\"}")
      url="$api/chats/$chat/completions"
      body="{\"stream\":$stream,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}"
      ;;
    *) echo "instructions.sh: unknown target $target; pass proxy, commit or parley" >&2; exit 2 ;;
  esac
  send "$url" "$key" "$body" 300
  callgrind_control --instr=on "$pid" >/dev/null 2>&1
  send "$url" "$key" "$body" "$n"
  callgrind_control --dump "$pid" >/dev/null 2>&1
  local totals=""
  for _ in $(seq 100); do
    totals=$(awk '/^totals:/ {print $2}' "$dir"/callgrind."$pid".1 2>/dev/null || true)
    [ -n "$totals" ] && break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  [ -n "$totals" ] || fail "callgrind gave no count for $target" "$dir/$target.log"
  if [ -n "$keep" ]; then
    mkdir -p "$keep" && cp "$dir/callgrind.$pid.1" "$keep/$target-$mode.callgrind"
  fi
  per[$target]=$((totals / n))
}

# create URL KEY BODY: POSTs BODY and prints the new resource's id.
create() {
  curl -sf -H "Authorization: Bearer $2" -H "Content-Type: application/json" -d "$3" "$1" |
    grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4
}

# freeport: a port nothing listens on at 127.0.0.1.
freeport() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

# send URL KEY BODY N: N requests, one at a time, on one kept-alive
# connection; fails on any status over 299.
send() {
  local urls=()
  for _ in $(seq "$4"); do urls+=(--url "$1"); done
  curl -sf --fail-early -o /dev/null -H "Authorization: Bearer $2" -H "Content-Type: application/json" -d "$3" "${urls[@]}" >/dev/null
}

declare -A per
for t in "${targets[@]}"; do
  count "$t"
  echo "$t, $mode: ${per[$t]} instructions per request ($n requests)"
done
if [ -n "${per[parley]:-}" ]; then
  for t in proxy commit; do
    if [ -n "${per[$t]:-}" ]; then
      awk -v p="${per[parley]}" -v b="${per[$t]}" -v t="$t" 'BEGIN { printf "Parley ÷ %s: %.2f×\n", t, p / b }'
    fi
  done
fi
