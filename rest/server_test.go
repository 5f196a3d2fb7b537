package rest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
)

// TestJSONSentBeforeAccessLog checks that a JSON response reaches the
// client before the access log line is written: the log of the completion
// is held until the client has read the whole response, which it could
// not do if the response waited in the server's buffer for the log.
func TestJSONSentBeforeAccessLog(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		gate := &logGate{Handler: slog.NewTextHandler(io.Discard, nil), route: "/api/v1/chats/:chatId/completions", read: make(chan struct{})}
		h := newHarness(t, st, func(cfg *app.Config) { cfg.Logger = slog.New(gate) })
		w := h.world()

		r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("Hi")}})
		close(gate.read)
		if r.Status != 200 {
			t.Fatalf("completion = %d: %s", r.Status, r.Body)
		}
		if cl := r.Header.Get("Content-Length"); cl != strconv.Itoa(len(r.Body)) {
			t.Errorf("Content-Length = %q, body is %d bytes", cl, len(r.Body))
		}
		// The handler returns after the log line; wait for it.
		for deadline := time.Now().Add(5 * time.Second); gate.logged.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if gate.logged.Load() == 0 {
			t.Fatal("the completion's access log line was never written")
		}
		if gate.late.Load() {
			t.Error("the client got the response only after the access log line was written")
		}
	})
}

// logGate holds the access log line of one route until read is closed, for
// at most two seconds, and records whether it had to give up.
type logGate struct {
	slog.Handler
	route  string
	read   chan struct{}
	late   atomic.Bool
	logged atomic.Int32
}

func (g *logGate) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "request" && g.isRoute(r) {
		select {
		case <-g.read:
		case <-time.After(2 * time.Second):
			g.late.Store(true)
		}
		g.logged.Add(1)
	}
	return g.Handler.Handle(ctx, r)
}

func (g *logGate) isRoute(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == "path" && a.Value.String() == g.route
		return !found
	})
	return found
}

// TestStreamEndsInOneWrite checks that a stream's last events leave in the
// same write to the connection as the end of the chunked body, and that
// the stream is whole: with a flush of its own, [DONE] would cost a write,
// and the client would still wait for the next one to see the body end.
func TestStreamEndsInOneWrite(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		h := newHarness(t, st, nil)
		w := h.world()
		rec := &writeRecorder{}
		srv := httptest.NewUnstartedServer(h.app.Handler())
		srv.Listener = rec.wrap(srv.Listener)
		srv.Start()
		defer srv.Close()

		for _, path := range []string{"/api/v1/chats/" + w.chat + "/completions", "/api/v1/chats/completions"} {
			rec.reset()
			body := `{"stream": true, "messages": [{"role": "user", "content": "one two three"}], "aiProviderId": "` + w.provider + `"}`
			if strings.Contains(path, w.chat) {
				body = `{"stream": true, "messages": [{"role": "user", "content": "one two three"}]}`
			}
			req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+h.admin)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			events := readSSE(t, res)
			res.Body.Close()
			if len(events) < 3 || events[len(events)-1].raw != "[DONE]" {
				t.Fatalf("%s: stream does not end with [DONE]: %v", path, events)
			}
			writes := rec.all()
			last := writes[len(writes)-1]
			if !bytes.Contains(last, []byte("data: [DONE]\n\n")) || !bytes.HasSuffix(last, []byte("\r\n0\r\n\r\n")) {
				t.Errorf("%s: the last of %d writes is %q; want [DONE] and the end of the chunked body together", path, len(writes), last)
			}
		}
	})
}

// writeRecorder records what a server writes to its connections.
type writeRecorder struct {
	mu     sync.Mutex
	writes [][]byte
}

func (r *writeRecorder) wrap(l net.Listener) net.Listener { return recordingListener{l, r} }

func (r *writeRecorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = nil
}

func (r *writeRecorder) all() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes
}

type recordingListener struct {
	net.Listener
	rec *writeRecorder
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return recordingConn{c, l.rec}, nil
}

type recordingConn struct {
	net.Conn
	rec *writeRecorder
}

func (c recordingConn) Write(p []byte) (int, error) {
	c.rec.mu.Lock()
	c.rec.writes = append(c.rec.writes, bytes.Clone(p))
	c.rec.mu.Unlock()
	return c.Conn.Write(p)
}

// TestTrailingSlashSaysSo: a path with a trailing slash, which no route
// has, is a 404 that names the path without it.
func TestTrailingSlashSaysSo(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	for path, want := range map[string]string{"/api/v1/projects/": "/api/v1/projects", "/api/v1/me//": "/api/v1/me"} {
		r := h.call("GET", path, h.admin, nil)
		if r.Status != 404 || !strings.Contains(r.ErrorMessage(), "paths end without a slash ("+want+")") {
			t.Errorf("GET %s = %d %s; want 404 naming %s", path, r.Status, r.Body, want)
		}
	}
}

// TestPathParameterIsOneSegment: a path one segment longer than a route
// that ends in a parameter is no endpoint. Echo hands such a route the
// rest of the path, and the handler answered that a conversation named
// "cnv_…/turns" did not exist.
func TestPathParameterIsOneSegment(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		conv := h.must(200, "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin,
			map[string]any{"messages": []any{userMessage("hi")}})["conversationId"].(string)
		for _, path := range []string{
			"/api/v1/conversations/" + conv + "/turns",
			"/api/v1/documents/doc_1/versions",
			"/api/v1/ai-providers/aip_1/models",
			// A route that takes no GET: still no endpoint, not a 405.
			"/api/v1/projects/" + w.project + "/members/usr_1/roles",
		} {
			r := h.call("GET", path, h.admin, nil)
			if r.Status != 404 || !strings.Contains(r.ErrorMessage(), "no such endpoint") {
				t.Errorf("GET %s = %d %s; want 404, no such endpoint", path, r.Status, r.Body)
			}
		}
		if r := h.call("GET", "/api/v1/conversations/"+conv, h.admin, nil); r.Status != 200 {
			t.Errorf("GET the conversation itself = %d %s", r.Status, r.Body)
		}
		// An escaped slash is part of the one segment: the parameter is
		// read unescaped (TestPercentEncodedPathIDs), and names no
		// conversation.
		r := h.call("GET", "/api/v1/conversations/"+conv+"%2Fturns", h.admin, nil)
		if want := "conversation " + conv + "/turns does not exist"; r.Status != 404 || !strings.Contains(r.ErrorMessage(), want) {
			t.Errorf("GET %s%%2Fturns = %d %s; want 404, %s", conv, r.Status, r.Body, want)
		}
	})
}

// TestIDOfAnotherKind: an id of another kind of resource, in the path or
// as a body's conversationId, is still a 404, whose message says what kind
// of id was sent and what kind the request takes (as MCP's text does).
func TestIDOfAnotherKind(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		path := "/api/v1/chats/" + w.chat + "/completions"
		msg := h.must(200, "POST", path, h.admin, map[string]any{"messages": []any{userMessage("hi")}})["messageId"].(string)
		r := h.call("POST", path, h.admin, map[string]any{"conversationId": msg, "messages": []any{userMessage("again")}})
		if want := "conversation " + msg + " does not exist: that is a message id; pass a conversation id (cnv_…)"; r.Status != 404 || r.ErrorMessage() != want {
			t.Errorf("conversationId %s = %d %s; want 404, %s", msg, r.Status, r.Body, want)
		}
		r = h.call("GET", "/api/v1/chats/"+w.provider, h.admin, nil)
		if want := "chat " + w.provider + " does not exist: that is an AI provider id; pass a chat id (cht_…)"; r.Status != 404 || r.ErrorMessage() != want {
			t.Errorf("GET /chats/%s = %d %s; want 404, %s", w.provider, r.Status, r.Body, want)
		}
		r = h.call("PUT", "/api/v1/projects/"+w.project+"/members/"+w.chat, h.admin, map[string]any{"role": "viewer"})
		if want := "user " + w.chat + " does not exist: that is a chat id; pass a user id (usr_…)"; r.Status != 404 || r.ErrorMessage() != want {
			t.Errorf("PUT …/members/%s = %d %s; want 404, %s", w.chat, r.Status, r.Body, want)
		}
		r = h.call("DELETE", "/api/v1/projects/"+w.project+"/members/"+w.chat, h.admin, nil)
		if want := "member " + w.chat + " does not exist: that is a chat id; pass a member id (usr_…)"; r.Status != 404 || r.ErrorMessage() != want {
			t.Errorf("DELETE …/members/%s = %d %s; want 404, %s", w.chat, r.Status, r.Body, want)
		}
		me := h.must(200, "GET", "/api/v1/me", h.admin, nil)["id"].(string)
		r = h.call("DELETE", "/api/v1/users/"+me+"/api-keys/"+me, h.admin, nil)
		if want := "API key " + me + " does not exist: that is a user id; pass an API key id (key_…)"; r.Status != 404 || r.ErrorMessage() != want {
			t.Errorf("DELETE …/api-keys/%s = %d %s; want 404, %s", me, r.Status, r.Body, want)
		}
	})
}

// TestWrongMethodIs405: a known path asked with a method it does not take
// is a 405 that lists the methods it does, not "no such endpoint".
func TestWrongMethodIs405(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		for _, tt := range []struct{ method, path, allow string }{
			{"PUT", "/api/v1/chats/" + w.chat, "OPTIONS, DELETE, GET, HEAD, PATCH"},
			{"DELETE", "/api/v1/projects", "OPTIONS, GET, HEAD, POST"},
			{"POST", "/healthz", "OPTIONS, GET, HEAD"},
			// Mounted from outside the package, as MCP is.
			{"DELETE", "/metrics", "OPTIONS, GET, HEAD"},
			{"PROPFIND", "/metrics", "OPTIONS, GET, HEAD"},
			// A path of its own that a route with a parameter also matches.
			{"GET", "/api/v1/chats/completions", "OPTIONS, POST"},
			{"DELETE", "/api/v1/chats/completions", "OPTIONS, POST"},
			{"HEAD", "/api/v1/chats/completions", "OPTIONS, POST"},
		} {
			r := h.call(tt.method, tt.path, h.admin, map[string]any{})
			if tt.method == "HEAD" { // no body to read the error from
				if r.Status != 405 {
					t.Errorf("HEAD %s = %d; want 405", tt.path, r.Status)
				}
			} else if r.Status != 405 || r.ErrorCode() != "method_not_allowed" || !strings.Contains(r.ErrorMessage(), "Allow header") {
				t.Errorf("%s %s = %d %s; want 405 method_not_allowed", tt.method, tt.path, r.Status, r.Body)
			}
			if got := r.Header.Get("Allow"); got != tt.allow {
				t.Errorf("%s %s: Allow = %q; want %q", tt.method, tt.path, got, tt.allow)
			}
		}
		if r := h.call("GET", "/api/v1/nowhere", h.admin, nil); r.Status != 404 || r.ErrorCode() != "not_found" {
			t.Errorf("GET an unknown path = %d %s; want 404", r.Status, r.Body)
		}
		if r := h.call("PUT", "/api/v1/chats/"+w.chat, "", map[string]any{}); r.Status != 401 {
			t.Errorf("PUT a chat without a key = %d %s; want 401 before the method is looked at", r.Status, r.Body)
		}
		if r := h.call("GET", "/api/v1/chats/"+w.chat, "", nil); r.Status != 401 {
			t.Errorf("GET a chat without a key = %d %s; want 401", r.Status, r.Body)
		}
	})
}

// TestMountedHandlersRefuseUnknownMethods: the MCP handlers mounted beside
// the API get the methods HTTP and WebDAV define, /metrics GET and HEAD;
// any other method, QUERY included, is a 405 in the API's envelope, before
// the handler's own authentication, as on the API's own paths.
func TestMountedHandlersRefuseUnknownMethods(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	const mounted = "OPTIONS, CONNECT, DELETE, GET, HEAD, PATCH, POST, PROPFIND, PUT, TRACE, REPORT"
	for path, allow := range map[string]string{"/mcp": mounted, "/sse": mounted, "/message": mounted, "/metrics": "OPTIONS, GET, HEAD"} {
		for _, method := range []string{"QUERY", "BREW"} {
			for _, key := range []string{h.admin, ""} {
				r := h.call(method, path, key, nil)
				if r.Status != 405 || r.ErrorCode() != "method_not_allowed" {
					t.Errorf("%s %s (key %t) = %d %s; want 405 method_not_allowed", method, path, key != "", r.Status, r.Body)
				}
				if got := r.Header.Get("Allow"); got != allow {
					t.Errorf("%s %s: Allow = %q; want %q", method, path, got, allow)
				}
			}
		}
	}
}

// TestMountedHandlersCapTheirOwnBodies: MCP's endpoints check a request's
// Origin before anything else and cap its body themselves, so that a
// browser page at an allowed origin gets its CORS headers on a 413 (and can
// read it), and one at another origin its 403, whatever the body's size.
func TestMountedHandlersCapTheirOwnBodies(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) { c.MaxBodyBytes = 1024 })
	big := `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"` + strings.Repeat("x", 2048) + `"}}`
	for _, tc := range []struct {
		origin string
		status int
		cors   bool
	}{{"http://localhost:3000", 413, true}, {"http://evil.example", 403, false}} {
		req, err := http.NewRequest("POST", h.srv.URL+"/mcp", strings.NewReader(big))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+h.admin)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", tc.origin)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("Access-Control-Allow-Origin"); res.StatusCode != tc.status || (got == tc.origin) != tc.cors ||
			!slices.Contains(res.Header.Values("Vary"), "Origin") {
			t.Errorf("a body over the limit from %s: %d, Access-Control-Allow-Origin %q, Vary %q; want %d, CORS %v, Vary Origin",
				tc.origin, res.StatusCode, got, res.Header.Values("Vary"), tc.status, tc.cors)
		}
	}
}

// TestHeadAnswersAsGet: every GET route answers HEAD with GET's status and
// headers, Content-Length included where GET has one (openapi.json is sent
// chunked), and no body; as GET, it needs a key.
func TestHeadAnswersAsGet(t *testing.T) {
	each(t, func(t *testing.T, h *harness) {
		w := h.world()
		for _, path := range []string{"/healthz", "/openapi.json", "/api/v1/chats/" + w.chat, "/api/v1/projects?limit=1"} {
			g := h.call("GET", path, h.admin, nil)
			r := h.call("HEAD", path, h.admin, nil)
			if r.Status != 200 || g.Status != 200 {
				t.Errorf("HEAD %s = %d (GET %d); want 200", path, r.Status, g.Status)
			}
			if len(r.Body) != 0 {
				t.Errorf("HEAD %s sent a body of %d bytes", path, len(r.Body))
			}
			for _, k := range []string{"Content-Type", "Content-Length"} {
				if r.Header.Get(k) != g.Header.Get(k) {
					t.Errorf("HEAD %s: %s = %q, GET's %q", path, k, r.Header.Get(k), g.Header.Get(k))
				}
			}
			if r.Header.Get("Content-Type") == "" {
				t.Errorf("HEAD %s has no Content-Type", path)
			}
		}
		if r := h.call("HEAD", "/api/v1/chats/"+w.chat, "", nil); r.Status != 401 || len(r.Body) != 0 {
			t.Errorf("HEAD a chat without a key = %d, %d bytes; want 401 and no body", r.Status, len(r.Body))
		}
		if r := h.call("HEAD", "/api/v1/chats/cht_nope", h.admin, nil); r.Status != 404 {
			t.Errorf("HEAD a missing chat = %d; want 404", r.Status)
		}
	})
}

// TestAccessLogLine: every request logs one access line with its status,
// duration and the bytes of its response body, JSON, error, HEAD (none:
// net/http drops the body) and stream alike.
func TestAccessLogLine(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	bodies := map[string]int{} // request id → bytes the client read
	send := func(id, method, path, key string, body string) {
		req, err := http.NewRequest(method, h.srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Request-Id", id)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := testClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		bodies[id] = len(b)
	}
	send("log-json", "GET", "/api/v1/me", h.admin, "")
	send("log-404", "GET", "/nothing", "", "")
	send("log-head", "HEAD", "/healthz", "", "")
	send("log-stream", "POST", "/api/v1/chats/"+w.chat+"/completions", h.admin,
		`{"stream": true, "messages": [{"role": "user", "content": "one two three"}]}`)
	if bodies["log-stream"] < 100 {
		t.Fatalf("the stream's body is %d bytes; want a whole stream", bodies["log-stream"])
	}
	logs := h.finalLogs()
	for id, n := range bodies {
		var lines []string
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, "msg=request request_id="+id+" ") {
				lines = append(lines, line)
			}
		}
		if len(lines) != 1 {
			t.Errorf("request %s has %d access log lines, want 1:\n%s", id, len(lines), strings.Join(lines, "\n"))
			continue
		}
		for _, want := range []string{" status=", " duration_ms=", " bytes=" + strconv.Itoa(n) + " "} {
			if !strings.Contains(lines[0]+" ", want) {
				t.Errorf("access log line of %s (%d bytes sent) lacks %q: %s", id, n, strings.TrimSpace(want), lines[0])
			}
		}
	}
}

// TestResponsesAPISaysWhatToUse: a client of OpenAI's Responses API (the
// AI SDK's createOpenAI(…)(model), LangChain with some models) gets a 404
// that says Parley speaks Chat Completions and which client call does.
func TestResponsesAPISaysWhatToUse(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	for _, path := range []string{"/api/v1/responses", "/api/v1/chats/" + w.chat + "/responses"} {
		r := h.call("POST", path, h.admin, map[string]any{"model": "m", "input": "hi"})
		if r.Status != 404 || !strings.Contains(r.ErrorMessage(), "not its Responses API") || !strings.Contains(r.ErrorMessage(), "openai.chat(model)") {
			t.Errorf("POST %s = %d %s; want a 404 naming Chat Completions", path, r.Status, r.Body)
		}
	}
}

// TestBrowserPagesCanCallTheAPI: a page at an allowed origin, or at a
// loopback one (a dev server), can call the API from a browser: its
// preflight, which carries no key, is a 204 before authentication, with
// the methods and headers the TypeScript client sends; every answer names
// the origin and lets the page read a 429's wait, the rate limits and the
// request id. Without CORS the preflight was a 401 and the client failed
// as if Parley were down. Another origin gets no CORS (its browser keeps
// the answer from the page), and neither do /healthz and /metrics.
func TestBrowserPagesCanCallTheAPI(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), func(c *app.Config) {
		c.AllowedOrigins, c.MaxBodyBytes = []string{"https://app.example.com"}, 64<<10
	})
	w := h.world()
	var body io.Reader // of the next request sent
	send := func(method, path, origin string, header ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, h.srv.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	const requested = "authorization,content-type,accept,idempotency-key,x-request-id"
	for _, origin := range []string{"https://app.example.com", "http://localhost:5173", "http://127.0.0.1:3000"} {
		for _, tc := range []struct{ method, path string }{
			{"POST", "/api/v1/chats/" + w.chat + "/completions"}, {"GET", "/api/v1/chats"}, {"DELETE", "/api/v1/conversations/cnv_x"},
		} {
			res := send("OPTIONS", tc.path, origin, "Access-Control-Request-Method", tc.method,
				"Access-Control-Request-Headers", requested, "Access-Control-Request-Private-Network", "true")
			hd := res.Header
			allowed := strings.Split(strings.ToLower(strings.ReplaceAll(hd.Get("Access-Control-Allow-Headers"), " ", "")), ",")
			if res.StatusCode != http.StatusNoContent || hd.Get("Access-Control-Allow-Origin") != origin ||
				!strings.Contains(hd.Get("Access-Control-Allow-Methods"), tc.method) || hd.Get("Access-Control-Allow-Private-Network") != "true" {
				t.Errorf("preflight of %s %s from %s: %d %v; want 204 allowing the origin, %s and a private network", tc.method, tc.path, origin, res.StatusCode, hd, tc.method)
			}
			for _, name := range strings.Split(requested, ",") {
				if !slices.Contains(allowed, name) {
					t.Errorf("preflight from %s allows headers %q, not %s", origin, hd.Get("Access-Control-Allow-Headers"), name)
				}
			}
		}
		res := send("GET", "/api/v1/chats/"+w.chat, origin, "Authorization", "Bearer "+h.admin)
		expose := res.Header.Get("Access-Control-Expose-Headers")
		if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != origin {
			t.Errorf("GET from %s: %d %v; want 200 allowing the origin", origin, res.StatusCode, res.Header)
		}
		for _, name := range []string{"Retry-After", "RateLimit-Remaining", "RateLimit-Reset", "X-Request-Id", "X-Should-Retry", "Idempotent-Replayed"} {
			if !strings.Contains(expose, name) {
				t.Errorf("GET from %s exposes %q, not %s", origin, expose, name)
			}
		}
	}
	res := send("OPTIONS", "/api/v1/chats", "https://evil.example", "Access-Control-Request-Method", "GET")
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from an origin not allowed: %d %v; want no CORS", res.StatusCode, res.Header)
	}
	if res := send("GET", "/api/v1/chats", "https://evil.example", "Authorization", "Bearer "+h.admin); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("GET from an origin not allowed: %v; want no CORS", res.Header)
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		if res := send("GET", path, "https://app.example.com"); res.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET %s from an allowed origin: %v; want no CORS", path, res.Header)
		}
	}
	// A body over the limit is refused before the API's routes: the page
	// still reads the 413 (the client said "cannot reach Parley").
	body = strings.NewReader(`{"messages":[{"role":"user","content":"` + strings.Repeat("x", 70<<10) + `"}]}`)
	res = send("POST", "/api/v1/chats/"+w.chat+"/completions", "https://app.example.com", "Authorization", "Bearer "+h.admin, "Content-Type", "application/json")
	if res.StatusCode != http.StatusRequestEntityTooLarge || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("a body over the limit from an allowed origin: %d %v; want 413 allowing the origin", res.StatusCode, res.Header)
	}
}

// TestOddInputRefused: inputs a fuzzing review found taken or
// misdescribed, each a 400 (or 401) that says what to fix and changes
// nothing: an apiKey with an invisible character (a BOM a paste brought
// along, which the provider would refuse as a wrong key), two
// Authorization headers (which key answers?) on REST and MCP, 1e-400 as
// an integer (ParseFloat takes it to 0, which lifted a limit), and
// responseFormat json_schema without its jsonSchema (blamed on a name never sent).
func TestOddInputRefused(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	w := h.world()
	_, aliceKey := h.user("alice")

	r := h.call("POST", "/api/v1/ai-providers", h.admin, map[string]any{"projectId": w.project, "name": "bom", "type": "openai-compatible",
		"baseUrl": h.up.URL(), "defaultModel": "m", "apiKey": "sk-\u200bpasted-key-1234567890"})
	if r.Status != 400 || r.ErrorField() != "apiKey" || !strings.Contains(r.ErrorMessage(), "invisible") {
		t.Errorf("an apiKey with a zero-width space = %d %s, want 400 naming apiKey", r.Status, r.Body)
	}
	for _, path := range []string{"/api/v1/me", "/mcp"} {
		r, err := h.sendWith("GET", path, "", http.Header{"Authorization": {"Bearer " + h.admin, "Bearer " + aliceKey}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 401 || !strings.Contains(r.ErrorMessage(), "several Authorization headers") {
			t.Errorf("GET %s with two Authorization headers = %d %s, want 401 saying to send one", path, r.Status, r.Body)
		} // RFC 6750 §3.1: more than one way of sending a token is a malformed request.
		if got := r.Header.Get("WWW-Authenticate"); got != `Bearer realm="parley", error="invalid_request"` {
			t.Errorf("GET %s with two Authorization headers: WWW-Authenticate %q, want error=\"invalid_request\"", path, got)
		}
	}
	h.must(200, "PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, map[string]any{"requestsPerMinute": 5})
	if r := h.call("PUT", "/api/v1/projects/"+w.project+"/limits", h.admin, `{"requestsPerMinute":1e-400}`); r.Status != 400 || r.ErrorField() != "requestsPerMinute" {
		t.Errorf("requestsPerMinute 1e-400 = %d %s, want 400 naming it", r.Status, r.Body)
	}
	// An integer past 64 bits is told the range it is past.
	for _, n := range []string{"9223372036854775808", "1e19", "1e400"} {
		r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, `{"messages":[{"role":"user","content":"x"}],"maxTokens":`+n+`}`)
		if r.Status != 400 || r.ErrorField() != "maxTokens" || !strings.Contains(r.ErrorMessage(), "9223372036854775807") {
			t.Errorf("maxTokens %s = %d %s, want 400 giving the largest integer", n, r.Status, r.Body)
		}
	}
	if got := h.must(200, "GET", "/api/v1/projects/"+w.project+"/limits", h.admin, nil)["requestsPerMinute"]; got != 5.0 {
		t.Errorf("the refused limit changed it to %v; want 5", got)
	}
	// A name is one line: a line break or ESC (a terminal's escape
	// sequences) in one is refused, for every kind of resource.
	for _, tc := range []struct{ path, body string }{
		{"/api/v1/projects", `{"name":"p\u001b[31m"}`},
		{"/api/v1/chats", `{"projectId":"` + w.project + `","aiProviderId":"` + w.provider + `","name":"two\nlines"}`},
		{"/api/v1/documents", `{"projectId":"` + w.project + `","name":"d\u001bx","content":"x"}`},
		{"/api/v1/ai-providers", `{"projectId":"` + w.project + `","name":"p\u001b","type":"openai","defaultModel":"m","apiKey":"sk-1234567890abcdef"}`},
		{"/api/v1/users", `{"name":"u\n"}`},
		// Unicode's line separator, and a right-to-left override, which
		// reorders how a list or a terminal shows the text after it.
		{"/api/v1/documents", `{"projectId":"` + w.project + `","name":"FAQ\u2028Refunds","content":"x"}`},
		{"/api/v1/chats", `{"projectId":"` + w.project + `","aiProviderId":"` + w.provider + `","name":"\u202eQAF"}`},
	} {
		if r := h.call("POST", tc.path, h.admin, tc.body); r.Status != 400 || r.ErrorField() != "name" || !strings.Contains(r.ErrorMessage(), "control character") {
			t.Errorf("POST %s with a control character in its name = %d %s, want 400 naming name", tc.path, r.Status, r.Body)
		}
	}
	// A description may run over lines, but takes no ESC either.
	if r := h.call("POST", "/api/v1/projects", h.admin, `{"name":"p","description":"red\u001b[31m"}`); r.Status != 400 || r.ErrorField() != "description" || !strings.Contains(r.ErrorMessage(), "control character") {
		t.Errorf("a description with ESC = %d %s, want 400 naming description", r.Status, r.Body)
	}
	h.must(201, "POST", "/api/v1/projects", h.admin, map[string]any{"name": "lines", "description": "one\r\n\ttwo"})
	// The zero-width joiner, a format character too, holds emoji together.
	h.must(201, "POST", "/api/v1/projects", h.admin, map[string]any{"name": "team \U0001F468\u200D\U0001F469\u200D\U0001F467"})
	// A name or description stored before they took no control character
	// does not keep the rest of its resource from changing.
	old := h.project(h.admin, "old")
	doc := h.must(201, "POST", "/api/v1/documents", h.admin, map[string]any{"projectId": old, "name": "old doc", "content": "x"})["id"].(string)
	for _, q := range []string{"UPDATE projects SET name = 'old\x1b', description = 'red\x1b[31m' WHERE id = ?", "UPDATE documents SET name = 'old\ndoc' WHERE id = ?"} {
		id := old
		if strings.HasPrefix(q, "UPDATE documents") {
			id = doc
		}
		if err := h.app.Store.DB().Exec(q, id).Error; err != nil {
			t.Fatal(err)
		}
	}
	h.must(200, "PATCH", "/api/v1/projects/"+old, h.admin, map[string]any{"description": "plain"})
	h.must(200, "PATCH", "/api/v1/projects/"+old, h.admin, map[string]any{"name": "renamed"})
	h.must(200, "PATCH", "/api/v1/documents/"+doc, h.admin, map[string]any{"content": "y"})
	if r := h.call("PATCH", "/api/v1/documents/"+doc, h.admin, map[string]any{"name": "new\x1b"}); r.Status != 400 {
		t.Errorf("a new name with ESC = %d %s, want 400", r.Status, r.Body)
	}
	r = h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, `{"messages":[{"role":"user","content":"x"}],"responseFormat":{"type":"json_schema"}}`)
	if r.Status != 400 || r.ErrorField() != "responseFormat.jsonSchema" || !strings.Contains(r.ErrorMessage(), "is required") {
		t.Errorf("type json_schema alone = %d %s, want 400 naming responseFormat.jsonSchema as required", r.Status, r.Body)
	}
}

// TestRequestBodyContentType: a body is read as JSON when its Content-Type
// is JSON (a +json type too) or missing; another type, a form's as curl -d
// sends it, is refused, saying what to send, and creates nothing.
func TestRequestBodyContentType(t *testing.T) {
	h := newHarness(t, dbtest.SQLite(t), nil)
	for i, ct := range []string{"application/json; charset=utf-8", "application/merge-patch+json", ""} {
		r, err := h.sendWith("POST", "/api/v1/projects", h.admin, http.Header{"Content-Type": {ct}}, fmt.Sprintf(`{"name":"p%d"}`, i))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 201 {
			t.Errorf("POST with Content-Type %q = %d %s, want 201", ct, r.Status, r.Body)
		}
	}
	for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", "application/jsonx", "not a type"} {
		r, err := h.sendWith("POST", "/api/v1/projects", h.admin, http.Header{"Content-Type": {ct}}, `{"name":"refused"}`)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != 400 || r.ErrorCode() != "invalid_request" || !strings.Contains(r.ErrorMessage(), "Content-Type must be application/json") {
			t.Errorf("POST with Content-Type %q = %d %s, want 400 saying to send JSON", ct, r.Status, r.Body)
		}
	}
	list := h.must(200, "GET", "/api/v1/projects?limit=100", h.admin, nil)["data"].([]any)
	for _, p := range list {
		if p.(map[string]any)["name"] == "refused" {
			t.Errorf("a refused body created project %v", p)
		}
	}
	if len(list) != 3 {
		t.Errorf("%d projects, want the 3 sent as JSON", len(list))
	}
}
