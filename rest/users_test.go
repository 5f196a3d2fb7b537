package rest_test

import (
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
)

// clock is a time the test moves by hand, for the services' Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now().UTC().Truncate(time.Millisecond)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// eachWithClock is each, with the services reading the time from a clock.
func eachWithClock(t *testing.T, body func(t *testing.T, h *harness, c *clock)) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		c := newClock()
		body(t, newHarness(t, st, func(cfg *app.Config) { cfg.Now = c.Now }), c)
	})
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// TestAPIKeyExpiry: a key made with expiresAt works until then and from
// then on answers 401 exactly as an unknown or revoked key does, on REST
// and on MCP over HTTP, though the key was cached as valid a moment
// before (the cache keeps keys for 2s).
func TestAPIKeyExpiry(t *testing.T) {
	eachWithClock(t, func(t *testing.T, h *harness, c *clock) {
		uid, _ := h.user("alice")
		exp := c.Now().Add(time.Hour)
		k := h.must(201, "POST", "/api/v1/users/"+uid+"/api-keys", h.admin, map[string]any{"name": "ci", "expiresAt": exp.Format(time.RFC3339Nano)})
		if got, want := k["expiresAt"], stamp(exp); got != want {
			t.Errorf("created key's expiresAt = %v, want %v", got, want)
		}
		key := k["key"].(string)
		revoked := h.must(201, "POST", "/api/v1/users/"+uid+"/api-keys", h.admin, map[string]any{"name": "gone"})
		h.must(200, "DELETE", "/api/v1/users/"+uid+"/api-keys/"+revoked["id"].(string), h.admin, nil)

		list := h.must(200, "GET", "/api/v1/users/"+uid+"/api-keys", h.admin, nil)["data"].([]any)
		byName := map[string]map[string]any{}
		for _, e := range list {
			e := e.(map[string]any)
			byName[e["name"].(string)] = e
		}
		if got, want := byName["ci"]["expiresAt"], stamp(exp); got != want {
			t.Errorf("listed expiresAt = %v, want %v", got, want)
		}
		if v, ok := byName["test"]["expiresAt"]; !ok || v != nil {
			t.Errorf("a key without an expiry lists expiresAt %v (present %t), want null", v, ok)
		}

		h.must(200, "GET", "/api/v1/me", key, nil) // now cached as valid
		c.Set(exp.Add(-time.Millisecond))
		h.must(200, "GET", "/api/v1/me", key, nil)
		c.Set(exp)
		expired := h.call("GET", "/api/v1/me", key, nil)
		gone := h.call("GET", "/api/v1/me", revoked["key"].(string), nil)
		unknown := h.call("GET", "/api/v1/me", "pk_"+strings.Repeat("x", 43), nil)
		for name, r := range map[string]*response{"expired": expired, "revoked": gone, "unknown": unknown} {
			if r.Status != 401 || r.Header.Get("WWW-Authenticate") != `Bearer realm="parley", error="invalid_token"` {
				t.Errorf("%s key = %d %s (WWW-Authenticate %q)", name, r.Status, r.Body, r.Header.Get("WWW-Authenticate"))
			}
		}
		// The same body (X-Request-Id aside), so that no answer tells an
		// expired key from a revoked or unknown one.
		if !reflect.DeepEqual(expired.JSON(), gone.JSON()) || !reflect.DeepEqual(expired.JSON(), unknown.JSON()) {
			t.Errorf("expired key answered %s; revoked %s; unknown %s", expired.Body, gone.Body, unknown.Body)
		}

		// MCP over HTTP checks the same key the same way.
		req, err := http.NewRequest("POST", h.srv.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		res, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") != `Bearer realm="parley", error="invalid_token"` {
			t.Errorf("expired key over MCP = %d (WWW-Authenticate %q), want 401 invalid_token", res.StatusCode, res.Header.Get("WWW-Authenticate"))
		}
	})
}

// TestAPIKeyExpiresAtRefused: expiresAt must be an RFC 3339 time in the
// future and at most 10 years ahead; anything else is a 400 naming it, and
// makes no key.
func TestAPIKeyExpiresAtRefused(t *testing.T) {
	eachWithClock(t, func(t *testing.T, h *harness, c *clock) {
		uid, _ := h.user("alice")
		now := c.Now()
		for _, tc := range []struct {
			name      string
			expiresAt any
			msg       string
		}{
			{"not a time", "tomorrow", "expiresAt must be an RFC 3339 time with a UTC offset, such as 2027-01-31T00:00:00Z"},
			{"a date alone", now.AddDate(0, 1, 0).Format("2006-01-02"), "expiresAt must be an RFC 3339 time with a UTC offset"},
			{"no offset", now.Add(time.Hour).Format("2006-01-02T15:04:05"), "expiresAt must be an RFC 3339 time with a UTC offset"},
			{"empty", "", "expiresAt must be an RFC 3339 time with a UTC offset"},
			{"a number", now.Add(time.Hour).Unix(), "expiresAt must be"},
			{"past", now.Add(-time.Minute).Format(time.RFC3339), "expiresAt must be in the future: " + now.Add(-time.Minute).Truncate(time.Second).Format(time.RFC3339) + " has passed"},
			{"now", now.Format(time.RFC3339Nano), "expiresAt must be in the future"},
			{"past 10 years", now.AddDate(10, 0, 0).Add(time.Second).Format(time.RFC3339Nano), "expiresAt must be at most 10 years ahead"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := h.call("POST", "/api/v1/users/"+uid+"/api-keys", h.admin, map[string]any{"name": "x", "expiresAt": tc.expiresAt})
				if r.Status != 400 || r.ErrorCode() != "invalid_request" || r.ErrorField() != "expiresAt" || !strings.HasPrefix(r.ErrorMessage(), tc.msg) {
					t.Errorf("= %d %s, want 400 naming expiresAt: %q", r.Status, r.Body, tc.msg)
				}
			})
		}
		if n := len(h.must(200, "GET", "/api/v1/users/"+uid+"/api-keys", h.admin, nil)["data"].([]any)); n != 1 {
			t.Errorf("%d keys after the refusals, want the 1 made with the user", n)
		}

		for name, tc := range map[string]struct {
			expiresAt any
			want      any
		}{
			"exactly 10 years":   {now.AddDate(10, 0, 0).Format(time.RFC3339Nano), stamp(now.AddDate(10, 0, 0))},
			"another offset":     {now.Add(time.Hour).In(time.FixedZone("", 2*3600)).Format(time.RFC3339Nano), stamp(now.Add(time.Hour))},
			"lower-case t and z": {strings.ToLower(now.Add(time.Hour).Format(time.RFC3339Nano)), stamp(now.Add(time.Hour))},
			"null":               {nil, nil},
		} {
			t.Run(name, func(t *testing.T) {
				k := h.must(201, "POST", "/api/v1/users/"+uid+"/api-keys", h.admin, map[string]any{"name": "x", "expiresAt": tc.expiresAt})
				if got, ok := k["expiresAt"]; !ok || got != tc.want {
					t.Errorf("expiresAt = %v (present %t), want %v", got, ok, tc.want)
				}
			})
		}
	})
}

// TestKeyMadeByExpiringKeyExpires: a key that expires makes only keys
// that expire by then, for its own user and, an admin's, for another:
// else a key given out for an hour could hand out one that never
// expires. A refusal is a 400 naming expiresAt and its bound, and makes
// no key.
func TestKeyMadeByExpiringKeyExpires(t *testing.T) {
	eachWithClock(t, func(t *testing.T, h *harness, c *clock) {
		uid, _ := h.user("alice")
		bob := h.must(201, "POST", "/api/v1/users", h.admin, map[string]any{"name": "bob", "isAdmin": true})["id"].(string)
		exp := c.Now().Add(time.Hour)
		short := h.must(201, "POST", "/api/v1/users/"+uid+"/api-keys", h.admin, map[string]any{"name": "hour", "expiresAt": exp.Format(time.RFC3339Nano)})["key"].(string)
		adminShort := h.must(201, "POST", "/api/v1/users/"+bob+"/api-keys", h.admin, map[string]any{"name": "hour", "expiresAt": exp.Format(time.RFC3339Nano)})["key"].(string)
		count := func() int {
			return len(h.must(200, "GET", "/api/v1/users/"+uid+"/api-keys", h.admin, nil)["data"].([]any))
		}
		before := count()

		bound := "the API key making this request expires at " + exp.UTC().Format(time.RFC3339Nano) + ", and a key it creates must expire by then"
		for name, tc := range map[string]struct {
			key       string
			expiresAt any
		}{
			"none":               {short, nil},
			"later":              {short, exp.Add(time.Second).Format(time.RFC3339Nano)},
			"an admin's, none":   {adminShort, nil},
			"an admin's, a year": {adminShort, exp.AddDate(1, 0, 0).Format(time.RFC3339Nano)},
		} {
			t.Run(name, func(t *testing.T) {
				r := h.call("POST", "/api/v1/users/"+uid+"/api-keys", tc.key, map[string]any{"name": "forever", "expiresAt": tc.expiresAt})
				if r.Status != 400 || r.ErrorField() != "expiresAt" || !strings.HasPrefix(r.ErrorMessage(), bound) {
					t.Errorf("= %d %s, want 400 naming expiresAt: %q", r.Status, r.Body, bound)
				}
			})
		}
		if n := count(); n != before {
			t.Errorf("%d keys after the refusals, want %d", n, before)
		}

		for _, at := range []time.Time{exp, exp.Add(-time.Minute)} {
			k := h.must(201, "POST", "/api/v1/users/"+uid+"/api-keys", short, map[string]any{"name": "ok", "expiresAt": at.Format(time.RFC3339Nano)})
			if got, want := k["expiresAt"], stamp(at); got != want {
				t.Errorf("expiresAt = %v, want %v", got, want)
			}
		}
		// A key that does not expire makes any key, as before.
		k := h.must(201, "POST", "/api/v1/users/"+uid+"/api-keys", h.admin, map[string]any{"name": "forever"})
		if v, ok := k["expiresAt"]; !ok || v != nil {
			t.Errorf("expiresAt = %v (present %t), want null", v, ok)
		}
	})
}

// TestAPIKeyRevokeAnswersTheKey: revoking answers the key as it is now
// listed, revokedAt set; revoking it again answers the same, with the
// first revokedAt.
func TestAPIKeyRevokeAnswersTheKey(t *testing.T) {
	eachWithClock(t, func(t *testing.T, h *harness, c *clock) {
		uid, key := h.user("alice")
		exp := c.Now().Add(24 * time.Hour).Truncate(time.Second)
		k := h.must(201, "POST", "/api/v1/users/"+uid+"/api-keys", key, map[string]any{"name": "laptop", "expiresAt": exp.Format(time.RFC3339)})
		path := "/api/v1/users/" + uid + "/api-keys/" + k["id"].(string)
		c.Set(c.Now().Add(time.Minute))
		revokedAt := stamp(c.Now())

		first := h.must(200, "DELETE", path, key, nil)
		want := map[string]any{"id": k["id"], "userId": uid, "name": "laptop", "hint": k["hint"], "createdAt": k["createdAt"],
			"revokedAt": revokedAt, "expiresAt": stamp(exp)}
		if !reflect.DeepEqual(first, want) {
			t.Errorf("DELETE = %v\nwant     %v", first, want)
		}
		var listed map[string]any
		for _, e := range h.must(200, "GET", "/api/v1/users/"+uid+"/api-keys", key, nil)["data"].([]any) {
			if e.(map[string]any)["id"] == k["id"] {
				listed = e.(map[string]any)
			}
		}
		if !reflect.DeepEqual(first, listed) {
			t.Errorf("DELETE = %v\nlisted   %v", first, listed)
		}

		c.Set(c.Now().Add(time.Hour))
		if again := h.must(200, "DELETE", path, key, nil); !reflect.DeepEqual(again, want) {
			t.Errorf("DELETE again = %v\nwant           %v", again, want)
		}
		if r := h.call("DELETE", "/api/v1/users/"+uid+"/api-keys/"+domain.NewID(domain.PrefixKey), key, nil); r.Status != 404 {
			t.Errorf("DELETE an unknown key = %d %s, want 404", r.Status, r.Body)
		}
	})
}
