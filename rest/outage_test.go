package rest_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
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
	// The database comes back (the pool's stalled connections closed), so
	// the cleanup's usage flush writes at once rather than retrying for
	// its 10 s.
	p.Down()
	p.Resume()
	p.Up()
}

// TestCompletionsWhileTheDatabaseIsDown: PostgreSQL goes away while Parley
// serves completions whose lookups the cache answers, then comes back.
// A stateless completion stores nothing but its usage record, so it
// answers; a per-chat one whose turn cannot be stored answers 503
// unavailable (streamed: the reply, then an unavailable error event and
// [DONE]), saying to retry, without a secret. Every usage record is kept
// while the database is down and written once it is back, the unstored
// turns' with the outcome not_stored; and completions work again, without a
// restart.
func TestCompletionsWhileTheDatabaseIsDown(t *testing.T) {
	st, p := dbtest.PostgresThroughProxy(t)
	// The key, chat and provider the requests read stay cached while the
	// database is away, on a machine slow enough to take 2s (the default)
	// to get there: what is under test is the turn's write.
	h := newHarness(t, st, func(c *app.Config) { c.CacheTTL = time.Minute })
	w := h.world()
	chatPath := "/api/v1/chats/" + w.chat + "/completions"
	h.must(200, "POST", chatPath, h.admin, map[string]any{"messages": []any{userMessage("before")}})

	p.Down()
	called := h.up.Count()
	h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": w.provider, "messages": []any{userMessage("stateless")}})
	// A turn's write waits a few seconds for the database to come back
	// (a restart): the stream opens first, and both wait at once.
	streamed := stream(t, h, chatPath, map[string]any{"messages": []any{userMessage("streamed")}})
	r := h.call("POST", chatPath, h.admin, map[string]any{"messages": []any{userMessage("per chat")}})
	if r.Status != 503 || r.ErrorCode() != "unavailable" || !strings.Contains(r.ErrorMessage(), "retry") {
		t.Errorf("a per-chat completion whose turn cannot be stored = %d %s; want 503 unavailable saying to retry", r.Status, r.Body)
	}
	e, events := streamError(t, streamed)
	if e["code"] != "unavailable" {
		t.Errorf("the stream's error = %v; want an unavailable error", e)
	}
	for _, body := range []string{string(r.Body), events[len(events)-2].raw} {
		for _, secret := range []string{upstreamKey, "postgres", "127.0.0.1", "sql"} {
			if strings.Contains(strings.ToLower(body), secret) {
				t.Errorf("an answer while the database is down holds %q: %s", secret, body)
			}
		}
	}
	conv, _ := events[0].data["conversationId"].(string)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(h.logs.String(), "usage records not written; kept and retried"); {
		if time.Now().After(deadline) {
			t.Fatalf("no usage write failed within 5s of the database going down:\n%s", h.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	p.Up()
	// Before and stateless; per chat and streamed, each that ran: one
	// whose write failed refuses the next per-chat completion for a few
	// seconds, before it goes upstream (and is recorded), so on a slow
	// machine the stream's may refuse the JSON one.
	ran := h.up.Count() - called - 1
	if ran < 1 {
		t.Fatalf("%d per-chat completions reached the upstream while the database was down; want the stream's at least", ran)
	}
	want := map[string]float64{"ok": 2, "not_stored": float64(ran)}
	deadline := time.Now().Add(15 * time.Second)
	for {
		page := h.usagePage(t, w.project, "groupBy=outcome")
		got := map[string]float64{}
		for k, g := range page.totals {
			got[k] = g.requests
		}
		if len(got) == len(want) && got["ok"] == want["ok"] && got["not_stored"] == want["not_stored"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage requests by outcome 15s after the database came back = %v; want %v", got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := h.call("GET", "/api/v1/conversations/"+conv, h.admin, nil); r.Status != 404 {
		t.Errorf("the conversation of the stream whose turn was not stored = %d %s; want 404", r.Status, r.Body)
	}
	h.must(200, "POST", chatPath, h.admin, map[string]any{"messages": []any{userMessage("after")}})
	if logs := h.logs.String(); !strings.Contains(logs, "usage backlog written") {
		t.Errorf("no line says the usage kept while the database was down was written:\n%s", logs)
	}
}

// TestCompletionsWhileTheDiskIsFull: SQLite's disk fills (here its page
// limit) while Parley serves completions. The first per-chat completion
// goes upstream and cannot store its turn (503); those after it are
// refused before they go upstream, where each would be paid for and lost,
// with Retry-After (a wrong one still gets its 400), and /readyz says not
// ready; stateless ones, which store only their usage, still answer. Once
// space is freed, the refusal ends within its 5 s, and completions store
// their turns again.
func TestCompletionsWhileTheDiskIsFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	st, err := store.Open(context.Background(), "sqlite:"+path+"?_pragma=max_page_count(3000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(context.Background(), "up", nil); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, st, nil)
	w := h.world()
	chatPath := "/api/v1/chats/" + w.chat + "/completions"
	h.must(200, "POST", chatPath, h.admin, map[string]any{"messages": []any{userMessage("before")}})
	// Documents fill it, smaller and smaller, until not even a short one
	// fits.
	var docs []string
	for size := 1 << 20; size >= 16; {
		r := h.call("POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": fmt.Sprint("filler ", len(docs)),
			"content": strings.Repeat("x", size)})
		switch r.Status {
		case 201:
			docs = append(docs, r.JSON()["id"].(string))
		case 503:
			size /= 4
		default:
			t.Fatalf("filling the disk: %d %s, want 201s and 503s", r.Status, r.Body)
		}
	}

	// A turn of a long message needs pages of its own too.
	long := strings.Repeat("many words ", 2000)
	before := h.up.Count()
	if r := h.call("POST", chatPath, h.admin, map[string]any{"messages": []any{userMessage(long)}}); r.Status != 503 || h.up.Count() != before+1 {
		t.Fatalf("the first per-chat completion on a full disk = %d %s, %d calls upstream; want 503 after one", r.Status, r.Body, h.up.Count()-before)
	}
	// Past the first's usage record, which fits where its turn did not.
	time.Sleep(600 * time.Millisecond)
	r := h.call("POST", chatPath, h.admin, map[string]any{"messages": []any{userMessage(long)}})
	if r.Status != 503 || r.Header.Get("Retry-After") == "" || !strings.Contains(r.ErrorMessage(), "nothing was sent to the AI provider") {
		t.Errorf("a per-chat completion after a turn was refused = %d %s (Retry-After %q); want 503 with Retry-After, nothing sent",
			r.Status, r.Body, r.Header.Get("Retry-After"))
	}
	if h.up.Count() != before+1 {
		t.Errorf("%d calls upstream after the first turn was refused, want none", h.up.Count()-before-1)
	}
	if r := h.call("GET", "/readyz", "", nil); r.Status != 503 {
		t.Errorf("/readyz with turns refused = %d %s, want 503", r.Status, r.Body)
	}
	// A request of the caller's to fix is still its 400.
	if r := h.call("POST", chatPath, h.admin, map[string]any{"messages": []any{userMessage("x")}, "temperature": 7}); r.Status != 400 {
		t.Errorf("a wrong request while turns are refused = %d %s, want its 400", r.Status, r.Body)
	}
	h.must(200, "POST", "/api/v1/chats/completions", h.admin, map[string]any{"aiProviderId": w.provider, "messages": []any{userMessage("stateless")}})

	for _, id := range docs {
		h.must(200, "DELETE", "/api/v1/documents/"+id, h.admin, nil)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if r := h.call("GET", "/readyz", "", nil); r.Status == 200 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("/readyz 10s after space was freed = %d %s, want 200", r.Status, r.Body)
		}
	}
	h.must(200, "POST", chatPath, h.admin, map[string]any{"messages": []any{userMessage("after")}})
}
