//go:build linux

// Command loadgen is the open-loop load generator behind `make bench`.
//
// It starts, each as its own process on 127.0.0.1, the fake upstream
// (llm/llmtest), a bare httputil.ReverseProxy to it (the floor any gateway
// pays), the same proxy committing one row to the database before each
// answer (the commit floor: the least a gateway that stores its turns
// before answering pays) and `parley serve`, on SQLite and then on
// PostgreSQL. It then sends completions at fixed rates, alternating
// between the upstream directly, the two proxies and Parley, streamed and
// not. Parley's requests are per-chat completions, so each one stores its
// conversation turn and records its usage, as in production.
//
// It reports the latency the proxy and Parley add over the direct calls
// (p50, p99, measured from each request's scheduled send time), the
// added time to the first content delta of streams, the CPU per request
// of each process (from /proc/PID/stat, and the PostgreSQL server's own),
// and the resident memory each adds per open stream with many streams
// held open at once.
//
//	go run ./bench/loadgen -parley bin/parley -postgres "$PARLEY_TEST_DATABASE_URL"
//
// `loadgen upstream` and `loadgen proxy URL` are the helper processes it
// starts from its own binary. Everything stops by itself when the run
// ends; the helpers also exit when the generator dies.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/parleyhq/parley/domain"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "upstream":
			exit(serveUpstream())
			return
		case "proxy":
			if len(os.Args) != 3 && len(os.Args) != 4 {
				exit(errors.New("usage: loadgen proxy URL [DSN]"))
			}
			exit(serveProxy(os.Args[2], strings.Join(os.Args[3:], "")))
			return
		}
	}
	cfg := config{}
	var rates, dbs string
	flag.StringVar(&cfg.parley, "parley", "bin/parley", "the parley binary to run")
	flag.StringVar(&rates, "rates", "500,1000,2000", "request rates to measure, per second")
	flag.DurationVar(&cfg.duration, "duration", 2*time.Second, "how long each target is loaded at each rate, per round")
	flag.IntVar(&cfg.rounds, "rounds", 3, "how many times the targets take turns at each rate")
	flag.DurationVar(&cfg.warmup, "warmup", 2*time.Second, "load at the lowest rate before measuring, per target and mode")
	flag.IntVar(&cfg.streams, "streams", 1000, "open streams held at once for the memory measurement (0 skips it)")
	flag.StringVar(&dbs, "databases", "sqlite,postgres", "databases to run Parley on")
	flag.StringVar(&cfg.postgres, "postgres", os.Getenv("PARLEY_TEST_DATABASE_URL"), "a PostgreSQL server URL; a fresh database is created on it per run")
	flag.StringVar(&childGOGC, "gogc", childGOGC, "GOGC of every process the run starts, Parley's and the helpers' alike (Parley's default is 400)")
	flag.Parse()
	var err error
	if cfg.rates, err = parseRates(rates); err != nil {
		exit(err)
	}
	cfg.databases = strings.Split(dbs, ",")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg, os.Stderr)
	if err != nil {
		exit(err)
	}
	rep.write(os.Stdout)
}

func exit(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func parseRates(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("-rates: %q is not a positive number of requests per second", f)
		}
		out = append(out, r)
	}
	return out, nil
}

// config is one run's settings.
type config struct {
	parley    string
	rates     []int
	duration  time.Duration
	rounds    int
	warmup    time.Duration
	streams   int
	databases []string
	postgres  string
}

func (c config) validate() error {
	switch {
	case len(c.rates) == 0:
		return errors.New("-rates: give at least one rate")
	case c.duration <= 0 || c.rounds <= 0:
		return errors.New("-duration and -rounds must be positive")
	}
	for _, db := range c.databases {
		switch db {
		case "sqlite":
		case "postgres":
			if c.postgres == "" {
				return errors.New("-databases names postgres but no server was given: set -postgres or PARLEY_TEST_DATABASE_URL (make bench starts a throwaway one)")
			}
		default:
			return fmt.Errorf("-databases: unknown database %q; use sqlite and postgres", db)
		}
	}
	if _, err := os.Stat(c.parley); err != nil {
		return fmt.Errorf("-parley: %w (make build makes bin/parley)", err)
	}
	return nil
}

// run measures everything cfg asks for, logging progress to log.
func run(ctx context.Context, cfg config, log io.Writer) (*report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "parley-loadgen-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	up, err := startHelper("upstream", dir, "upstream")
	if err != nil {
		return nil, err
	}
	defer up.stop()
	px, err := startHelper("proxy", dir, "proxy", strings.TrimSuffix(up.url, "/v1"))
	if err != nil {
		return nil, err
	}
	defer px.stop()
	c := newClient()
	direct := upstreamTarget("direct", up.url, up.pid())
	proxy := upstreamTarget("proxy", px.url+"/v1", px.pid())
	rep := &report{cfg: cfg, cells: map[cellKey]*result{}, memory: map[string]int64{}}
	if cfg.streams > 0 {
		// On a fresh process, as Parley's is measured, before load leaves
		// free heap behind to reuse.
		fmt.Fprintf(log, "memory: %d open streams through the proxy\n", cfg.streams)
		per, err := openStreams(ctx, c, proxy, cfg.streams)
		if err != nil {
			return nil, err
		}
		rep.memory["proxy"] = per
	}

	total0, steal0, err := machineTicks()
	if err != nil {
		return nil, err
	}
	for _, db := range cfg.databases {
		if err := runDatabase(ctx, cfg, dir, db, c, up.url, direct, proxy, rep, log); err != nil {
			return nil, fmt.Errorf("%s: %w", db, err)
		}
	}
	total, steal, err := machineTicks()
	if err != nil {
		return nil, err
	}
	if total > total0 {
		rep.steal = float64(steal-steal0) / float64(total-total0)
	}
	return rep, ctx.Err()
}

// runDatabase starts Parley on db and measures it against direct and proxy.
func runDatabase(ctx context.Context, cfg config, dir, db string, c *http.Client, upstreamURL string, direct, proxy target, rep *report, log io.Writer) error {
	env, dbCPU, cleanup, err := databaseEnv(ctx, cfg, dir, db)
	if err != nil {
		return err
	}
	defer cleanup()
	admin := domain.NewAPIKeySecret()
	env = append(env, "PARLEY_BOOTSTRAP_ADMIN_KEY="+admin)
	p, err := startParley(cfg.parley, dir, "parley-"+db, env)
	if err != nil {
		return err
	}
	defer p.stop()
	pt, err := parleyTarget(ctx, c, p, admin, upstreamURL)
	if err != nil {
		return err
	}
	// The commit floor writes to the same engine: a file of its own on
	// SQLite, Parley's database on PostgreSQL.
	floorDSN := "sqlite:" + filepath.Join(dir, "commit-floor.db")
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PARLEY_DATABASE_URL="); ok {
			floorDSN = v
		}
	}
	fl, err := startHelper("proxy-commit-"+db, dir, "proxy", strings.TrimSuffix(upstreamURL, "/v1"), floorDSN)
	if err != nil {
		return err
	}
	defer fl.stop()
	commit := upstreamTarget("commit", fl.url+"/v1", fl.pid())

	if cfg.streams > 0 {
		// On a fresh process, before load leaves free heap behind to reuse.
		fmt.Fprintf(log, "%s: memory: %d open streams through Parley\n", db, cfg.streams)
		per, err := openStreams(ctx, c, pt, cfg.streams)
		if err != nil {
			return err
		}
		rep.memory["parley/"+db] = per
	}
	targets := []target{direct, proxy, commit, pt}
	for _, stream := range []bool{false, true} {
		for _, t := range targets {
			if r := openLoop(ctx, c, t, cfg.rates[0], cfg.warmup, stream, noCPU); r.errors > 0 {
				return fmt.Errorf("warm-up of %s: %d of %d failed: %s", t.name, r.errors, r.sent, r.lastErr)
			}
		}
		for _, rate := range cfg.rates {
			for round := range cfg.rounds {
				for _, t := range targets {
					fmt.Fprintf(log, "%s: %s at %d/s, round %d: %s\n", db, mode(stream), rate, round+1, t.name)
					cpu := noCPU
					if t.name == "parley" || t.name == "commit" {
						cpu = dbCPU
					}
					r := openLoop(ctx, c, t, rate, cfg.duration, stream, cpu)
					if ctx.Err() != nil {
						return ctx.Err()
					}
					rep.cell(cellKey{db, stream, rate, t.name}).add(r)
				}
			}
		}
	}
	return nil
}

func mode(stream bool) string {
	if stream {
		return "stream"
	}
	return "json"
}

func noCPU() time.Duration { return 0 }
