//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/dbtest"
)

// TestMain lets the test binary play the helper processes, since the
// generator starts them from its own executable.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "upstream":
			exit(serveUpstream())
			return
		case "proxy":
			exit(serveProxy(os.Args[2], strings.Join(os.Args[3:], "")))
			return
		}
	}
	os.Exit(m.Run())
}

func TestMachineTicks(t *testing.T) {
	total0, steal0, err := machineTicks()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); {
	} // spin, so that at least a clock tick passes on this CPU
	total, steal, err := machineTicks()
	if err != nil {
		t.Fatal(err)
	}
	if total <= total0 || steal < steal0 {
		t.Errorf("machine ticks went from (%d, steal %d) to (%d, steal %d); want the total to grow and steal not to fall", total0, steal0, total, steal)
	}
	if steal-steal0 > total-total0 {
		t.Errorf("steal grew by %d ticks, more than the total's %d", steal-steal0, total-total0)
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, 5}, {90, 9}, {99, 10}, {100, 10}, {1, 1}} {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("p%v = %v; want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v; want 0", got)
	}
}

// TestShortRun runs the whole generator briefly against a freshly built
// parley, on SQLite and, when a server is given, on PostgreSQL: every
// request of every target must succeed, every figure must be measured.
func TestShortRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs parley")
	}
	bin := filepath.Join(t.TempDir(), "parley")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/parley").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := config{
		parley: bin, rates: []int{100, 200}, duration: 300 * time.Millisecond, rounds: 1,
		warmup: 100 * time.Millisecond, streams: 50, databases: []string{"sqlite"},
		postgres: os.Getenv(dbtest.EnvURL),
	}
	switch {
	case cfg.postgres != "":
		cfg.databases = append(cfg.databases, "postgres")
	case dbtest.PostgresRequired():
		t.Fatal("PostgreSQL required (CI=true or PARLEY_REQUIRE_POSTGRES=1) but " + dbtest.EnvURL + " is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := run(ctx, cfg, &testLog{t})
	if err != nil {
		t.Fatal(err)
	}
	for _, db := range cfg.databases {
		for _, stream := range []bool{false, true} {
			for _, rate := range cfg.rates {
				for _, target := range []string{"direct", "proxy", "commit", "parley"} {
					k := cellKey{db, stream, rate, target}
					c, ok := rep.cells[k]
					switch {
					case !ok:
						t.Errorf("%v: not measured", k)
					case c.errors > 0:
						t.Errorf("%v: %d of %d failed: %s", k, c.errors, c.sent, c.lastErr)
					case len(c.total) != c.sent || c.sent != rate*300/1000:
						t.Errorf("%v: %d answered of %d sent; want %d", k, len(c.total), c.sent, rate*300/1000)
					case stream && len(c.ttft) != c.sent:
						t.Errorf("%v: %d first tokens of %d", k, len(c.ttft), c.sent)
					}
				}
			}
		}
		for _, target := range []string{"commit", "parley"} {
			var cpu time.Duration
			for _, rate := range cfg.rates {
				cpu += rep.cells[cellKey{db, false, rate, target}].cpu
			}
			if cpu <= 0 {
				t.Errorf("%s: the CPU of %s was not measured", db, target)
			}
		}
		if rep.memory["parley/"+db] <= 0 {
			t.Errorf("%s: memory per open stream = %d bytes; want a measured growth", db, rep.memory["parley/"+db])
		}
	}
	var out strings.Builder
	rep.write(&out)
	for _, want := range []string{"### Parley on sqlite, json", "### Parley on sqlite, stream", "| 200/s |", "proxy+commit adds", "Memory per open stream", "| proxy |", "every process at GOGC=400"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// testLog sends the generator's progress to the test log.
type testLog struct{ t *testing.T }

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestRatio(t *testing.T) {
	run := func(cpu time.Duration, n int) result {
		return result{cpu: cpu, total: make([]time.Duration, n)}
	}
	var a, b result
	a.add(run(300, 1)) // round 1: 300 ÷ 100
	b.add(run(100, 1))
	a.add(run(600, 4)) // round 2: 150 ÷ 100
	b.add(run(400, 4))
	if got, want := ratio(&a, &b), "1.8× (1.5–3.0)"; got != want { // the run: 900/5 ÷ 500/5
		t.Errorf("ratio over two rounds = %q; want %q", got, want)
	}
	var c, d result
	c.add(run(300, 1))
	d.add(run(100, 1))
	if got, want := ratio(&c, &d), "3.0×"; got != want {
		t.Errorf("ratio of one round = %q; want %q", got, want)
	}
	if got, want := ratio(&c, &result{}), "–"; got != want {
		t.Errorf("ratio over nothing measured = %q; want %q", got, want)
	}
}

// TestChildEnv: the processes a run starts get none of the generator's
// PARLEY_ settings or runtime tuning, and one GOGC for all, so that the
// floor and Parley run alike and Parley on the database the run names.
func TestChildEnv(t *testing.T) {
	got := childEnv([]string{"PATH=/bin", "PARLEY_DATABASE_URL=postgres://elsewhere", "PARLEY_LOG_LEVEL=error", "GOGC=off", "GOMEMLIMIT=1GiB", "HOME=/root"},
		[]string{"PARLEY_ADDR=127.0.0.1:1"})
	want := []string{"PATH=/bin", "HOME=/root", "GOGC=" + childGOGC, "PARLEY_ADDR=127.0.0.1:1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("childEnv = %q; want %q", got, want)
	}
}
