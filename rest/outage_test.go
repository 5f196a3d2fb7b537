package rest_test

import (
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
)

// TestDatabaseDownIs503: with the database gone, requests that need it
// answer 503 unavailable (a dependency is down), not 500 internal, and so
// does /readyz.
func TestDatabaseDownIs503(t *testing.T) {
	st, p := dbtest.PostgresThroughProxy(t)
	h := newHarness(t, st, nil)
	h.must(201, "POST", "/api/v1/projects", h.admin, map[string]any{"name": "before"})
	p.Down()
	r := h.call("POST", "/api/v1/projects", h.admin, map[string]any{"name": "after"})
	if r.Status != 503 || r.ErrorCode() != "unavailable" {
		t.Errorf("a write with the database down = %d %s, want 503 unavailable", r.Status, r.Body)
	}
	if r := h.call("GET", "/readyz", "", nil); r.Status != 503 {
		t.Errorf("/readyz with the database down = %d %s, want 503", r.Status, r.Body)
	}
}

// TestReadyzWhenTheDatabaseHangs: a database that stops answering without
// closing its connections makes /readyz answer 503 once its check times
// out, where it used to wait as long as the client did.
func TestReadyzWhenTheDatabaseHangs(t *testing.T) {
	st, p := dbtest.PostgresThroughProxy(t)
	h := newHarness(t, st, nil)
	p.Stall()
	r, err := h.send("GET", "/readyz", "", nil)
	if err != nil {
		t.Fatalf("/readyz with the database hanging gave no answer within 30s: %v", err)
	}
	if r.Status != 503 {
		t.Errorf("/readyz with the database hanging = %d %s, want 503", r.Status, r.Body)
	}
	p.Down() // let the pool's stalled connections go before the cleanup closes the store
}

// TestRequestsWhenTheDatabaseHangs: with the database hanging, a request
// that needs it answers 503 unavailable once the request timeout passes,
// where it used to wait as long as its client did.
func TestRequestsWhenTheDatabaseHangs(t *testing.T) {
	st, p := dbtest.PostgresThroughProxy(t)
	h := newHarness(t, st, func(c *app.Config) { c.RequestTimeout = 300 * time.Millisecond })
	prj := h.project(h.admin, "p") // the admin's key is cached from here on
	p.Stall()
	r, err := h.send("GET", "/api/v1/projects/"+prj, h.admin, nil)
	if err != nil {
		t.Fatalf("a read with the database hanging gave no answer within 30s: %v", err)
	}
	if r.Status != 503 || r.ErrorCode() != "unavailable" {
		t.Errorf("a read with the database hanging = %d %s, want 503 unavailable", r.Status, r.Body)
	}
	p.Down() // let the pool's stalled connections go before the cleanup closes the store
}

// TestCompletionsWhenTheDatabaseHangs: with the database hanging, a
// completion whose lookups miss the cache (here the conversation's
// history) answers 503 unavailable once the request timeout passes, where
// it used to wait as long as its client did, and never calls the upstream.
func TestCompletionsWhenTheDatabaseHangs(t *testing.T) {
	st, p := dbtest.PostgresThroughProxy(t)
	h := newHarness(t, st, func(c *app.Config) { c.RequestTimeout = 300 * time.Millisecond })
	w := h.world()
	first := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin,
		map[string]any{"messages": []any{userMessage("hi")}})
	calls := h.up.Count()
	p.Stall()
	for _, stream := range []bool{false, true} {
		r, err := h.send("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{
			"conversationId": first["conversationId"], "messages": []any{userMessage("and then?")}, "stream": stream})
		if err != nil {
			t.Fatalf("stream %t: a continuation with the database hanging gave no answer within 30s: %v", stream, err)
		}
		if r.Status != 503 || r.ErrorCode() != "unavailable" {
			t.Errorf("stream %t: a continuation with the database hanging = %d %s, want 503 unavailable", stream, r.Status, r.Body)
		}
	}
	if n := h.up.Count() - calls; n != 0 {
		t.Errorf("the upstream got %d calls while the database hung, want 0", n)
	}
	p.Down() // let the pool's stalled connections go before the cleanup closes the store
}
