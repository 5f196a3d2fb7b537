package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/logtest"
	"github.com/redis/go-redis/v9"
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// newClock starts 37s into a minute, so 23s are left in the window.
func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 37, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testRedisURL is the Redis of the tests: $PARLEY_TEST_REDIS_URL, or the
// local default.
func testRedisURL() string {
	if u := os.Getenv("PARLEY_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

var (
	redisProbe     sync.Once
	redisProbeErr  error
	redisSkipShout sync.Once
)

// testRedis returns a client of the test Redis, closed at the end of t. When
// Redis is unreachable, t is skipped with a loud message, or fails when
// CI=true.
func testRedis(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(testRedisURL())
	if err != nil {
		t.Fatalf("PARLEY_TEST_REDIS_URL: %v", err)
	}
	redisProbe.Do(func() {
		c := redis.NewClient(opts)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		redisProbeErr = c.Ping(ctx).Err()
	})
	if redisProbeErr != nil {
		msg := fmt.Sprintf("Redis at %s is unreachable (%v): the Redis limiter is NOT TESTED", opts.Addr, redisProbeErr)
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI=true requires Redis (start one, or set PARLEY_TEST_REDIS_URL)", msg)
		}
		redisSkipShout.Do(func() {
			fmt.Fprintf(os.Stderr, "\n"+
				"**********************************************************************\n"+
				"*** ratelimit: SKIPPING the Redis tests. %s\n"+
				"*** Start Redis on 127.0.0.1:6379 or set PARLEY_TEST_REDIS_URL.\n"+
				"**********************************************************************\n\n", msg)
		})
		t.Skip("SKIPPED: " + msg)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testPrefix returns a random key prefix whose keys are deleted at the end of t.
func testPrefix(t *testing.T, c *redis.Client) string {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "parley-test:rl:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		var keys []string
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("cleanup: scan %s*: %v", prefix, err)
			return
		}
		for _, k := range keys { // one by one: keys of different windows differ in slot
			if err := c.Del(ctx, k).Err(); err != nil {
				t.Errorf("cleanup: del %s: %v", k, err)
			}
		}
	})
	return prefix
}

// newTestRedis returns a Redis limiter on c under prefix with clock, whose
// fail-open warnings fail t: in these tests Redis must work.
func newTestRedis(t *testing.T, c *redis.Client, prefix string, clock *fakeClock) *Redis {
	t.Helper()
	r := NewRedis(c, prefix)
	if clock != nil {
		r.Now = clock.Now
	}
	var logs logtest.Buffer
	r.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	t.Cleanup(func() {
		if s := logs.String(); s != "" {
			t.Errorf("the limiter failed open:\n%s", s)
		}
	})
	return r
}

// testLease is the stream lease of the lease tests: short, yet many Redis
// round trips long (renewals come every 250ms).
const testLease = 750 * time.Millisecond

// newLeasedRedis is newTestRedis with stream slots leased for testLease.
func newLeasedRedis(t *testing.T, c *redis.Client, prefix string) *Redis {
	t.Helper()
	r := newTestRedis(t, c, prefix, nil)
	r.StreamLease = testLease
	return r
}

// refreshersRunning returns how many refresher goroutines r runs.
func (r *Redis) refreshersRunning() int {
	r.slotsMu.Lock()
	defer r.slotsMu.Unlock()
	return r.refreshers
}

// renewalsDone returns how many renewal rounds r ran.
func (r *Redis) renewalsDone() int {
	r.slotsMu.Lock()
	defer r.slotsMu.Unlock()
	return r.renewals
}

// crash makes r stop renewing its slots without releasing them, as an
// instance that crashed (or lost Redis) does.
func (r *Redis) crash() {
	r.slotsMu.Lock()
	ids := make([]string, 0, len(r.held))
	for id := range r.held {
		ids = append(ids, id)
	}
	r.slotsMu.Unlock()
	for _, id := range ids {
		r.unhold(id)
	}
}

// waitFor polls cond every 10ms and fails t when it does not hold within d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitRenewals waits until r ran n more renewal rounds: with n >= 2, at
// least one of them began after the call.
func waitRenewals(t *testing.T, r *Redis, n int) {
	t.Helper()
	start := r.renewalsDone()
	waitFor(t, time.Duration(n+2)*testLease, fmt.Sprintf("%d renewals", n), func() bool {
		return r.renewalsDone() >= start+n
	})
}

// allow is l.Allow without the quotas, for the tests of what it counts and
// refuses.
func allow(ctx context.Context, l domain.Limiter, budgets []domain.Budget) error {
	_, _, err := l.Allow(ctx, budgets, 0)
	return err
}

// keySlots are max slots of key named as a key's.
func keySlots(key string, max int) domain.Slots { return domain.Slots{Key: key, Name: "key", Max: max} }

// acquire is l.Acquire of keySlots without the quota.
func acquire(ctx context.Context, l domain.Limiter, key string, max int) (func(), error) {
	release, _, err := l.Acquire(ctx, keySlots(key, max))
	return release, err
}
