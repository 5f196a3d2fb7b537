package ratelimit

import (
	"log/slog"
	"net"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/logtest"
	"github.com/parleyhq/parley/internal/tcpproxy"
	"github.com/redis/go-redis/v9"
)

// proxyURL returns the test Redis's URL through p; t is skipped when that Redis
// is not on TCP without TLS.
func proxyURL(t *testing.T, p *tcpproxy.Proxy) string {
	t.Helper()
	u, err := neturl.Parse(testRedisURL())
	if err != nil || u.Scheme != "redis" {
		t.Skipf("PARLEY_TEST_REDIS_URL is not redis:// (%v): no proxy to it", err)
	}
	u.Host = p.Addr()
	return u.String()
}

// Once Redis goes down, the limiter skips it: calls fail open without a
// dial each, all but one probe per backoff; once Redis is back, the first
// call after the backoff uses it again.
func TestRedisOutageSkipsRedis(t *testing.T) {
	c := testRedis(t)
	p := tcpproxy.Start(t, c.Options().Addr)
	var logs logtest.Buffer
	l, closeFn, err := Open(proxyURL(t, p), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	r := l.(*Redis)
	r.prefix = testPrefix(t, c)
	clock, brClock := newClock(), newClock()
	r.Now, r.br.now = clock.Now, brClock.Now
	direct := newTestRedis(t, c, r.prefix, clock) // another instance, on Redis itself

	p1 := project(2, 0)
	allowN(t, r, 1, p1)
	allowN(t, direct, 1, p1)
	refused(t, allow(bg, r, []domain.Budget{p1}), "project-requests-per-minute", 2)

	p.Down()
	dials := p.Dials()
	for i := range 50 {
		// Allowed, and counted nowhere: no quota to report.
		if q, _, err := r.Allow(bg, []domain.Budget{p1}, 0); err != nil || q != nil {
			t.Fatalf("Allow #%d with Redis down = %+v, %v; want allowed, no quotas", i+1, q, err)
		}
		release, q, err := r.Acquire(bg, keySlots("prj_1/key_a", 1))
		if err != nil || q != (domain.Quota{}) {
			t.Fatalf("Acquire #%d with Redis down = %+v, %v; want allowed, no quota", i+1, q, err)
		}
		release()
		r.AddTokens(bg, []domain.Budget{project(0, 10)}, 5, domain.Reservation{})
	}
	if n := p.Dials() - dials; n > 1 {
		t.Errorf("200 calls with Redis down dialled it %d times; want at most 1 (then Redis is skipped)", n)
	}

	// After the backoff, 50 concurrent calls: one probes, the others skip.
	brClock.Add(breakerMin)
	dials = p.Dials()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if err := allow(bg, r, []domain.Budget{p1}); err != nil {
				t.Errorf("Allow with Redis down = %v; want allowed", err)
			}
		})
	}
	wg.Wait()
	if n := p.Dials() - dials; n > 1 {
		t.Errorf("50 concurrent calls after the backoff dialled Redis %d times; want at most 1 (one probe)", n)
	}

	// Redis is back: after the (doubled) backoff, the first call uses it.
	p.Up()
	brClock.Add(breakerMax)
	refused(t, allow(bg, r, []domain.Budget{p1}), "project-requests-per-minute", 2)
	p2 := domain.Budget{Key: "prj_2", Name: "project", RequestsPerMinute: 1}
	allowN(t, r, 1, p2)
	refused(t, allow(bg, direct, []domain.Budget{p2}), "project-requests-per-minute", 1)

	var warnings, recoveries int
	for line := range strings.Lines(logs.String()) {
		switch {
		case strings.Contains(line, "go-redis:"): // its own lines, if any
		case strings.Contains(line, "level=WARN") && strings.Contains(line, "skipping Redis until it answers again"):
			warnings++
		case strings.Contains(line, "level=INFO") && strings.Contains(line, "Redis answers again"):
			recoveries++
		default:
			t.Errorf("unexpected log line: %s", line)
		}
	}
	if warnings != 1 || recoveries != 1 {
		t.Errorf("%d warnings and %d recoveries logged; want 1 of each:\n%s", warnings, recoveries, logs.String())
	}
}

// go-redis's own lines (here: a failed dial) go to Open's logger, not to stderr.
func TestOpenRoutesRedisLogs(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	var logs logtest.Buffer
	openDown := func(logger *slog.Logger) {
		t.Helper()
		_, closeFn, err := Open("redis://"+addr+"/0", logger)
		if err != nil {
			t.Fatalf("Open(unreachable Redis) = %v; want a limiter that fails open", err)
		}
		_ = closeFn()
	}
	openDown(slog.New(slog.NewTextHandler(&logs, nil)))
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "go-redis: connection pool: failed to dial") {
		t.Fatalf("log = %q; want go-redis's failed dial at warn", out)
	}

	// Another Open moves go-redis's lines to its logger.
	var logs2 logtest.Buffer
	openDown(slog.New(slog.NewTextHandler(&logs2, nil)))
	if !strings.Contains(logs2.String(), "failed to dial") || logs.String() != out {
		t.Fatalf("second Open: its log = %q, the first's grew to %q; want the lines in the second only", logs2.String(), logs.String())
	}
}

// Open's client fails fast by default, and keeps what the URL sets.
func TestClientOptions(t *testing.T) {
	for _, tc := range []struct {
		name, url  string
		dial, read time.Duration
		pool       time.Duration
		retries    int
	}{
		{"Defaults", "redis://127.0.0.1:6379/0", redisTimeout, redisTimeout, redisTimeout, -1},
		{"FromTheURL", "redis://127.0.0.1:6379/0?dial_timeout=3s&read_timeout=2&pool_timeout=4s&max_retries=2",
			3 * time.Second, 2 * time.Second, 4 * time.Second, 2},
		{"DisabledInTheURL", "redis://127.0.0.1:6379/0?read_timeout=-1&max_retries=-1", redisTimeout, -1, redisTimeout, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := clientOptions(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if o.DialTimeout != tc.dial || o.ReadTimeout != tc.read || o.PoolTimeout != tc.pool || o.MaxRetries != tc.retries {
				t.Errorf("DialTimeout %v, ReadTimeout %v, PoolTimeout %v, MaxRetries %d; want %v, %v, %v, %d",
					o.DialTimeout, o.ReadTimeout, o.PoolTimeout, o.MaxRetries, tc.dial, tc.read, tc.pool, tc.retries)
			}
			if got, want := o.DialerRetries, 1; got != want {
				t.Errorf("DialerRetries = %d; want %d", got, want)
			}
			if o.WriteTimeout != 0 {
				t.Errorf("WriteTimeout = %v; want 0 (go-redis makes it follow ReadTimeout)", o.WriteTimeout)
			}
		})
	}
}

// While Redis stays down, each probe's failed dial is a line of go-redis's
// own: they are kept to one per warnEvery, as the limiter's warnings are,
// rather than one every backoff for as long as the outage lasts.
func TestRedisLogsAreThrottled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now: each dial fails
	opts, err := clientOptions("redis://" + addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	var logs logtest.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	routeRedisLogs(logger)
	client := redis.NewClient(opts)
	defer client.Close()
	r := NewRedis(client, "parley-test:rl:")
	r.Logger = logger
	brClock := newClock()
	r.br.now = brClock.Now
	for range 20 { // 20 probes, each dialling a Redis that is down
		brClock.Add(breakerMax)
		if err := allow(bg, r, []domain.Budget{project(1, 0)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "go-redis:"); n != 1 {
		t.Errorf("%d lines of go-redis's logged over 20 probes within %s; want 1:\n%s", n, warnEvery, logs.String())
	}
}

// A stream slot whose release Redis missed (it was down) is freed as soon
// as Redis answers again: it was freed only by the next Acquire of its key
// on the same instance, and meanwhile every other instance counted it,
// refusing streams with none open for up to a lease. Then, when the
// instance that orphaned it made no other call to Redis, it was freed only
// at its refresher's next tick (a lease/3, 20 s by default): the refresher
// tries again at the breaker's pace.
func TestRedisFreesOrphansWhenItIsBack(t *testing.T) {
	for _, idle := range []bool{false, true} {
		t.Run(map[bool]string{false: "with a call", true: "idle"}[idle], func(t *testing.T) {
			c := testRedis(t)
			p := tcpproxy.Start(t, c.Options().Addr)
			l, closeFn, err := Open(proxyURL(t, p), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer closeFn()
			r := l.(*Redis)
			r.prefix = testPrefix(t, c)
			brClock := newClock()
			if !idle {
				r.br.now = brClock.Now
			}
			other := newTestRedis(t, c, r.prefix, nil) // another instance, on Redis itself
			const key = "prj_1/key_a"

			release, err := acquire(bg, r, key, 1)
			if err != nil {
				t.Fatal(err)
			}
			p.Down()
			release() // fails: the slot stays in Redis, orphaned
			if _, err := acquire(bg, other, key, 1); domain.KindOf(err) != domain.RateLimited {
				t.Fatalf("another instance's Acquire while the slot is orphaned = %v; want it still counted (RateLimited)", err)
			}
			p.Up()
			if !idle {
				brClock.Add(breakerMax)
				allowN(t, r, 1, project(5, 0)) // any call that reaches Redis: the breaker closes
			}
			waitFor(t, 5*time.Second, "the orphaned slot to be freed", func() bool { return c.ZCard(bg, r.streamsKey(key)).Val() == 0 })
			release, err = acquire(bg, other, key, 1)
			if err != nil {
				t.Fatalf("another instance's Acquire once Redis is back = %v; want the slot free", err)
			}
			release()
			waitFor(t, 5*time.Second, "the refresher to end", func() bool { return r.refreshersRunning() == 0 })
		})
	}
}
