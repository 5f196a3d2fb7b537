package rest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/internal/stalltest"
)

// TestStalledClientDoesNotHoldTheStream: a client that keeps its
// connection open but stops reading (its receive window full) must not
// hold a stream past PARLEY_MAX_STREAM_DURATION: the handler may not stay
// blocked writing to it forever, keeping the stream open (gauge, stream
// slot, goroutine) and its usage unrecorded until the client closes.
func TestStalledClientDoesNotHoldTheStream(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) {
		c.KeepAlive = 100 * time.Millisecond
		c.MaxStreamDuration = 500 * time.Millisecond
	})
	w := h.world()
	h.up.Enqueue(stalltest.Flood())
	n := h.up.Count()
	stalltest.Completion(t, h.srv.URL, h.admin, w.chat)

	if !h.up.WaitCanceledN(n, 5*time.Second) {
		t.Fatal("the upstream call was not cancelled at the maximum stream duration")
	}
	open := func() string {
		res, err := http.Get(h.srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "parley_open_streams ") {
				return strings.TrimPrefix(l, "parley_open_streams ")
			}
		}
		return "?"
	}
	deadline := time.Now().Add(5 * time.Second)
	for open() != "0" {
		if time.Now().After(deadline) {
			t.Fatalf("parley_open_streams = %s 5s after the stream's maximum duration, with the client still connected but not reading", open())
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.app.FlushUsage()
	var outcome string
	if err := h.app.Store.DB().Raw("SELECT outcome FROM usage_records WHERE stream ORDER BY created_at DESC LIMIT 1").Row().Scan(&outcome); err != nil {
		t.Fatalf("no usage record of the stalled stream: %v", err)
	}
	if outcome != "interrupted" {
		t.Errorf("the stalled stream is recorded as %q, want interrupted", outcome)
	}
}

// TestStalledClientDoesNotHoldAResponse: a client that asks for a large
// JSON response and does not read it has its response cut once a write has
// waited twice the keep-alive interval (at least a second), as a stream's
// is, rather than hold the handler and the response for as long as it
// keeps the connection.
func TestStalledClientDoesNotHoldAResponse(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) {
		c.KeepAlive = 100 * time.Millisecond
		c.MaxBodyBytes = 32 << 20 // the test's client escapes the document as the server does
	})
	w := h.world()
	// JSON writes '<' as \u003c: 12 MB of response, more than the sockets
	// between the server and a client that does not read can hold.
	doc := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": w.project, "name": "big",
		"content": strings.Repeat("<", 2<<20)})
	stalltest.Get(t, h.srv.URL, h.admin, "/api/v1/documents/"+doc["id"].(string))
	// The request is counted once its handler returned, which it does
	// within 5s only if its write was cut.
	h.waitMetric("parley_http_requests_total", 1, `route="/api/v1/documents/:documentId"`, `method="GET"`)
}

// TestBodyMustArrive: a request whose body stops coming is answered 400
// once the request timeout passed, completions included (which the
// request timeout does not otherwise bound), rather than hold its handler
// and the connection for as long as the client likes.
func TestBodyMustArrive(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) { c.RequestTimeout = 300 * time.Millisecond })
	w := h.world()
	for _, path := range []string{"/api/v1/documents", "/api/v1/chats/" + w.chat + "/completions"} {
		t.Run(path, func(t *testing.T) { stalltest.SlowBodyRefused(t, h.srv.URL, h.admin, path, 300*time.Millisecond) })
	}
}

// TestUnreadBodyMustArrive: a request answered without its body being
// read (no key, a refused one, an endpoint that reads none) is answered
// within the request timeout too: net/http reads what is left of a body
// before it answers, which waited for the client for ever, so that anyone,
// without a key, could hold connections and goroutines.
func TestUnreadBodyMustArrive(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) { c.RequestTimeout = 300 * time.Millisecond })
	for _, tc := range []struct {
		key, path string
		status    int
	}{
		{"", "/api/v1/projects", 401},
		{"pk_unknown", "/api/v1/projects", 401},
		{"", "/healthz", 405},
		{"", "/mcp", 401},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := stalltest.SlowBodyAnswered(t, h.srv.URL, tc.key, tc.path, 300*time.Millisecond); got != tc.status {
				t.Errorf("status %d, want %d", got, tc.status)
			}
		})
	}
}

// TestBodiesOfManyValuesRefusedBeforeDecoding: a body whose size is
// within the limit but which holds arrays longer than any request needs
// (empty messages by the million took gigabytes to decode, before the
// domain's bound of 1,000 refused them) is a 400 naming the array,
// refused before it is decoded, and changes nothing.
func TestBodiesOfManyValuesRefusedBeforeDecoding(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	many := func(item string) string { return strings.TrimSuffix(strings.Repeat(item+",", 50_000), ",") }
	for _, tc := range []struct{ path, body, field string }{
		{"/api/v1/chats/completions", `{"aiProviderId":"` + w.provider + `","messages":[` + many(`{}`) + `]}`, "messages"},
		{"/api/v1/chats/" + w.chat + "/completions", `{"messages":[{"role":"user","content":"x"}],"tools":[` + many(`{}`) + `]}`, "tools"},
		{"/api/v1/documents", `{"projectId":"` + w.project + `","name":"d","content":"x","metadata":{"a":[` + many(`0`) + `]}}`, "metadata.a"},
	} {
		before := h.up.Count()
		r := h.call("POST", tc.path, h.admin, tc.body)
		if r.Status != 400 || r.ErrorField() != tc.field || !strings.Contains(r.ErrorMessage(), "holds more than 4096 items") {
			t.Errorf("POST %s with 50,000 items = %d %.300s; want a 400 on %s", tc.path, r.Status, r.Body, tc.field)
		}
		if n := h.up.Count() - before; n != 0 {
			t.Errorf("POST %s: %d upstream calls, want none", tc.path, n)
		}
	}
	if docs := h.must(200, "GET", "/api/v1/documents?projectId="+w.project, h.admin, nil)["data"].([]any); len(docs) != 0 {
		t.Errorf("the refused document was created: %v", docs)
	}
}

// TestAnswersDoNotEscapeMarkup: <, > and & go in answers as themselves, not
// as six bytes each (\u003c), which made a page of chats whose system
// messages are markup six times their size.
func TestAnswersDoNotEscapeMarkup(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	const markup = "<b>a & b</b>"
	id := h.must(201, "POST", "/api/v1/chats", h.admin, map[string]any{"projectId": w.project, "aiProviderId": w.provider, "name": "c", "systemMessage": markup})["id"].(string)
	for _, path := range []string{"/api/v1/chats/" + id, "/api/v1/chats?projectId=" + w.project} {
		if r := h.call("GET", path, h.admin, nil); r.Status != 200 || !strings.Contains(string(r.Body), `"systemMessage":"`+markup+`"`) {
			t.Errorf("GET %s = %d %.300s; want the system message as it is", path, r.Status, r.Body)
		}
	}
}

// TestCompressedBodiesRefused: Parley decodes no Content-Encoding: a body
// sent with one (gzip, or a plain body so labelled) is a 400 saying to
// send it uncompressed, and changes nothing; identity is taken.
func TestCompressedBodiesRefused(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	for _, ce := range []string{"gzip", "br", "identity"} {
		r, err := h.sendWith("POST", "/api/v1/projects", h.admin, http.Header{"Content-Encoding": {ce}}, map[string]any{"name": "p-" + ce})
		if err != nil {
			t.Fatal(err)
		}
		if ce == "identity" {
			if r.Status != 201 {
				t.Errorf("Content-Encoding identity: %d %s; want 201", r.Status, r.Body)
			}
			continue
		}
		if r.Status != 400 || !strings.Contains(r.ErrorMessage(), "send the body uncompressed") {
			t.Errorf("Content-Encoding %s: %d %s; want a 400 saying to send it uncompressed", ce, r.Status, r.Body)
		}
	}
	if got := len(h.must(200, "GET", "/api/v1/projects", h.admin, nil)["data"].([]any)); got != 1 {
		t.Errorf("%d projects; want only the identity one", got)
	}
}
