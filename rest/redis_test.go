package rest_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/internal/tcpproxy"
	"github.com/parleyhq/parley/secret"
)

// testRedisURL is the Redis of the tests: $PARLEY_TEST_REDIS_URL (make test
// starts a throwaway one), else a local default. Without one reachable the
// test is skipped loudly, or fails with CI=true.
func testRedisURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("PARLEY_TEST_REDIS_URL")
	if u == "" {
		u = "redis://127.0.0.1:6379/0"
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatalf("PARLEY_TEST_REDIS_URL: %v", err)
	}
	c, err := net.DialTimeout("tcp", pu.Host, 2*time.Second)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Redis at %s is unreachable (%v); CI=true requires it", pu.Host, err)
		}
		t.Skipf("SKIPPED: Redis at %s is unreachable (%v): the shared limits are NOT TESTED", pu.Host, err)
	}
	c.Close()
	return u
}

// TestLimitsSharedThroughRedis runs two instances over one database: with
// PARLEY_REDIS_URL they count one project's requests together, so the
// third request of a 2-per-minute project is refused whichever instance
// the first two went to; without it each instance counts alone.
func TestLimitsSharedThroughRedis(t *testing.T) {
	redisURL := testRedisURL(t)
	for _, shared := range []bool{true, false} {
		name := map[bool]string{true: "redis", false: "memory"}[shared]
		t.Run(name, func(t *testing.T) {
			st := dbtest.SQLite(t)
			key := secret.GenerateKey() // replicas share the master key
			configure := func(c *app.Config) {
				c.SecretKey = key
				if shared {
					c.RedisURL = redisURL
				}
			}
			a, b := newHarness(t, st, configure), newHarness(t, st, configure)
			w := a.world()
			a.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", a.admin, map[string]any{"requestsPerMinute": 2})
			path := "/api/v1/chats/" + w.chat + "/completions"
			body := map[string]any{"messages": []any{userMessage("count me")}}
			a.must(200, "POST", path, a.admin, body)
			b.must(200, "POST", path, b.admin, body)
			r := a.call("POST", path, a.admin, body)
			switch {
			case shared && (r.Status != 429 || r.Header.Get("RateLimit-Policy") == ""):
				t.Errorf("third request through Redis = %d %s (RateLimit-Policy %q), want 429 with the project's policy",
					r.Status, r.Body, r.Header.Get("RateLimit-Policy"))
			case !shared && r.Status != 200:
				t.Errorf("third request, limits in memory = %d %s, want 200: instance a has counted one only", r.Status, r.Body)
			}
		})
	}
}

// TestRedisDownAtStart: a Redis that does not answer when Parley starts
// is an outage like one later on, not a reason to stay down: the server
// starts, says so in a warning, admits completions without limits (and
// without RateLimit-* headers, as nothing is counted), and applies the
// limits by itself once Redis answers, without a restart. It used to
// refuse to start, so a Redis restarting during a deploy took Parley down.
func TestRedisDownAtStart(t *testing.T) {
	u, err := url.Parse(testRedisURL(t))
	if err != nil || u.Scheme != "redis" {
		t.Skipf("PARLEY_TEST_REDIS_URL is not redis:// (%v): no proxy to it", err)
	}
	p := tcpproxy.Start(t, u.Host)
	u.Host = p.Addr()
	p.Down()
	inOneMinute(t, 20*time.Second)
	start := time.Now()
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) { c.RedisURL = u.String() }) // fails t if it does not start
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the start with Redis down took %v", d)
	}
	w := h.world()
	h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 1})
	path := "/api/v1/chats/" + w.chat + "/completions"
	body := map[string]any{"messages": []any{userMessage("count me")}}
	for i := range 3 {
		r := h.call("POST", path, h.admin, body)
		if r.Status != 200 || r.Header.Get("RateLimit-Policy") != "" {
			t.Fatalf("completion #%d with Redis down = %d (RateLimit-Policy %q) %s; want 200, uncounted",
				i+1, r.Status, r.Header.Get("RateLimit-Policy"), r.Body)
		}
	}
	if logs := h.logs.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "allowing without limits") {
		t.Errorf("no warning that the limits are not applied:\n%s", logs)
	}
	// And a counter an alert can watch: at least a call per completion.
	if got, ok := h.metrics().value("parley_rate_limiter_failed_open_total"); !ok || got < 3 {
		t.Errorf("parley_rate_limiter_failed_open_total = %v (there: %t) after 3 completions with Redis down; want at least 3", got, ok)
	}

	// Redis is back: within the breaker's longest backoff (2s) a request
	// is counted, and the next one refused.
	p.Up()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := h.call("POST", path, h.admin, body)
		if r.Status != 200 {
			t.Fatalf("completion as Redis comes back = %d %s", r.Status, r.Body)
		}
		if r.Header.Get("RateLimit-Remaining") == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the limits did not apply within 10s of Redis answering again")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := h.call("POST", path, h.admin, body); r.Status != 429 {
		t.Errorf("completion over the limit once Redis is back = %d %s, want 429", r.Status, r.Body)
	}
}

// TestRedisRefusalBeforeTheDatabase: a Redis that refuses the URL's
// database (or password) stops the start before the database is created
// or migrated, as every start bound to fail does.
func TestRedisRefusalBeforeTheDatabase(t *testing.T) {
	u, err := url.Parse(testRedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/9999" // no Redis has as many databases
	dir := t.TempDir()
	cfg := app.Config{DataDir: dir, RedisURL: u.String()}
	if a, err := app.Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "PARLEY_REDIS_URL") {
		if a != nil {
			a.Close()
		}
		t.Fatalf("Open with Redis refusing the database: %v; want an error naming PARLEY_REDIS_URL", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the refused start left %v in the data directory", entries)
	}
}
