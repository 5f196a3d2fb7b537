package ratelimit

import (
	"context"
	"log/slog"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/logtest"
	"github.com/redis/go-redis/v9"
)

// Two instances on one prefix share requests, tokens and stream slots.
func TestRedisInstancesShareCounts(t *testing.T) {
	clock := newClock()
	c1, c2 := testRedis(t), testRedis(t) // two connections, as two servers have
	prefix := testPrefix(t, c1)
	a, b := newTestRedis(t, c1, prefix, clock), newTestRedis(t, c2, prefix, clock)

	p := project(3, 0)
	allowN(t, a, 2, p)
	allowN(t, b, 1, p)
	refused(t, allow(bg, a, []domain.Budget{p}), "project-requests-per-minute", 3)
	refused(t, allow(bg, b, []domain.Budget{p}), "project-requests-per-minute", 3)

	k := key("key_a", 0, 100)
	a.AddTokens(bg, []domain.Budget{k}, 60, domain.Reservation{})
	allowN(t, b, 1, k)
	b.AddTokens(bg, []domain.Budget{k}, 40, domain.Reservation{})
	refused(t, allow(bg, a, []domain.Budget{k}), "key-tokens-per-minute", 100)

	ra, err := acquire(bg, a, "prj_1/key_a", 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acquire(bg, b, "prj_1/key_a", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := acquire(bg, a, "prj_1/key_a", 2); domain.KindOf(err) != domain.RateLimited {
		t.Fatalf("third Acquire across instances: %v; want RateLimited", err)
	}
	ra()
	if _, err := acquire(bg, b, "prj_1/key_a", 2); err != nil {
		t.Fatalf("Acquire on b after a release on a: %v", err)
	}

	// Another prefix is another deployment.
	other := newTestRedis(t, c1, testPrefix(t, c1), clock)
	allowN(t, other, 3, p)
}

// Counters expire after two windows; stream slots after a lease (60s by default).
func TestRedisKeysExpire(t *testing.T) {
	clock := newClock()
	c := testRedis(t)
	prefix := testPrefix(t, c)
	r := newTestRedis(t, c, prefix, clock)
	b := []domain.Budget{project(10, 100)}
	allowN(t, r, 1, b...)
	r.AddTokens(bg, b, 5, domain.Reservation{})
	if _, err := acquire(bg, r, "prj_1/key_a", 3); err != nil {
		t.Fatal(err)
	}
	w, _ := window(clock.Now())
	for k, want := range map[string]time.Duration{
		r.windowKey(w, "req", "prj_1"): 2 * time.Minute,
		r.windowKey(w, "tok", "prj_1"): 2 * time.Minute,
		r.streamsKey("prj_1/key_a"):    defaultStreamLease,
	} {
		ttl, err := c.TTL(bg, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= want-5*time.Second || ttl > want {
			t.Errorf("TTL %s = %v; want about %v", k, ttl, want)
		}
	}
	if n, _ := c.Get(bg, r.windowKey(w, "tok", "prj_1")).Int(); n != 5 {
		t.Errorf("tokens = %d; want 5", n)
	}
}

// Without Redis, the limiter allows everything and warns (once per
// warnEvery, not once per call).
func TestRedisFailsOpen(t *testing.T) {
	c := redis.NewClient(&redis.Options{
		Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1, DialerRetries: 1,
	})
	defer c.Close()
	var logs logtest.Buffer
	r := NewRedis(c, "parley-test:down:")
	r.Logger = slog.New(slog.NewTextHandler(&logs, nil))

	b := []domain.Budget{project(1, 1)}
	for range 3 {
		if err := allow(bg, r, b); err != nil {
			t.Fatalf("Allow with Redis down = %v; want allowed", err)
		}
	}
	r.AddTokens(bg, b, 10, domain.Reservation{})
	release, err := acquire(bg, r, "k", 1)
	if err != nil || release == nil {
		t.Fatalf("Acquire with Redis down: release nil = %t, err = %v; want allowed", release == nil, err)
	}
	if n := r.refreshersRunning(); n != 1 {
		t.Errorf("%d refreshers run after a fail-open Acquire; want 1: its slot is held, to be put in Redis once it answers", n)
	}
	release()
	// Each call failed or skipped Redis: three allows, the tokens and the
	// stream slot, at least (a release may skip it too).
	if n := r.FailedOpen(); n < 5 {
		t.Errorf("FailedOpen() = %d after five calls with Redis down; want each counted", n)
	}
	out := logs.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "allowing without limits") || !strings.Contains(out, "op=allow") {
		t.Fatalf("log = %q; want a warning", out)
	}
	if n := strings.Count(out, "\n"); n != 1 {
		t.Errorf("%d log lines; want 1 (the rest suppressed for %v):\n%s", n, warnEvery, out)
	}
}

// A caller that went away is no reason to warn.
func TestRedisCanceledCallerDoesNotWarn(t *testing.T) {
	c := testRedis(t)
	var logs logtest.Buffer
	r := NewRedis(c, testPrefix(t, c))
	r.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cctx, cancel := context.WithCancel(bg)
	cancel()
	if err := allow(cctx, r, []domain.Budget{project(1, 0)}); err != nil {
		t.Fatalf("Allow = %v", err)
	}
	if s := logs.String(); s != "" {
		t.Fatalf("log = %q; want nothing", s)
	}
}

func TestOpen(t *testing.T) {
	l, closeFn, err := Open("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.(*Memory); !ok {
		t.Fatalf("Open(\"\") = %T; want *Memory", l)
	}
	if err := closeFn(); err != nil {
		t.Fatal(err)
	}

	for _, bad := range []string{"http://127.0.0.1:6379", "memory", "redis://user:s3cret@[::1",
		// No scheme, or no // after it: the whole value is no scheme to quote.
		"user:s3cret@127.0.0.1:6379", "redis:user:s3cret@127.0.0.1:6379",
		// A password with an unencoded / ? or # ends the host early, and
		// url.Parse quotes what it takes for the port: the password.
		"redis://:s3cret/x@127.0.0.1:6379", "redis://user:s3cret?x@127.0.0.1:6379", "rediss://:s3cret#x@127.0.0.1:6379"} {
		if _, _, err := Open(bad, nil); err == nil {
			t.Errorf("Open(%q) succeeded; want an error", bad)
		} else if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q) error reveals the password: %v", bad, err)
		}
	}

	// A Redis that does not answer is an outage: Open warns, without the
	// password, and returns the limiter failing open.
	var logs logtest.Buffer
	start := time.Now()
	down, closeDown, err := Open("redis://:s3cret@127.0.0.1:1/0", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("Open(unreachable Redis) = %v; want a limiter that fails open", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Open(unreachable Redis) took %v; want about a Redis timeout (1s) at most", d)
	}
	if q, _, err := down.Allow(bg, []domain.Budget{project(1, 0)}, 0); err != nil || q != nil {
		t.Errorf("Allow with Redis unreachable since the start = %+v, %v; want allowed, uncounted", q, err)
	}
	_ = closeDown()
	if s := logs.String(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "op=start") || strings.Contains(s, "s3cret") {
		t.Errorf("log of a start with Redis unreachable = %q; want a warning (op=start) without the password", s)
	}

	c := testRedis(t) // skips (or fails on CI) without Redis

	// A Redis that answers with an error is a setting to fix: Open fails.
	if u, err := neturl.Parse(testRedisURL()); err == nil && u.Scheme == "redis" {
		u.Path = "/99999" // no such database
		if _, _, err := Open(u.String(), slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "DB index") {
			t.Errorf("Open(a database Redis does not have) = %v; want Redis's refusal", err)
		}
	}
	l, closeFn, err = Open(testRedisURL(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	r, ok := l.(*Redis)
	if !ok {
		t.Fatalf("Open(redis) = %T; want *Redis", l)
	}
	if r.prefix != "parley:rl:" {
		t.Errorf("prefix = %q", r.prefix)
	}
	// A key of its own, so as not to touch real counters.
	k := "parley-test-open-" + time.Now().Format(time.RFC3339Nano)
	defer c.Del(bg, r.streamsKey(k))
	release, err := acquire(bg, r, k, 1)
	if err != nil {
		t.Fatal(err)
	}
	release()
}
