package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

// rawSession speaks streamable HTTP by hand, on a session of protocol
// 2025-06-18, to send what no SDK client sends.
type rawSession struct {
	t                 *testing.T
	url, key, session string
}

func newRawSession(t *testing.T, e *env) *rawSession {
	hs := e.httpServer(e.server(Options{}), 0)
	r := &rawSession{t: t, url: hs.URL, key: e.keys["editor"]}
	res, _ := r.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if r.session = res.Header.Get(server.HeaderKeySessionID); r.session == "" {
		t.Fatal("initialize gave no session id")
	}
	return r
}

// post sends body to /mcp with header's pairs over the usual ones, and
// returns the response with its body read.
func (r *rawSession) post(body string, header ...string) (*http.Response, string) {
	r.t.Helper()
	return r.postTo("/mcp", body, header...)
}

// postTo is post to path, or to a whole URL (an HTTP+SSE session's
// endpoint).
func (r *rawSession) postTo(path, body string, header ...string) (*http.Response, string) {
	r.t.Helper()
	res, got, err := r.send(context.Background(), path, body, header...)
	must(r.t, err)
	return res, got
}

func (r *rawSession) send(ctx context.Context, path, body string, header ...string) (*http.Response, string, error) {
	url := path
	if strings.HasPrefix(path, "/") {
		url = r.url + path
	}
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Authorization", "Bearer "+r.key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	if r.session != "" {
		req.Header.Set(server.HeaderKeySessionID, r.session)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, string(b), err
}

// hangingCall starts the completion id, which the upstream never answers,
// and returns once the upstream has it, with the channel closed when the
// upstream sees it cancelled.
func (r *rawSession) hangingCall(e *env, id string) (canceled <-chan struct{}) {
	r.t.Helper()
	started, canceled := e.upstream.hang()
	args, _ := json.Marshal(cancelArgs(e))
	// Ended by the test's end at the latest, before its server closes
	// (cleanups run last first), which would wait for it.
	ctx, end := context.WithCancel(context.Background())
	r.t.Cleanup(end)
	go r.send(ctx, "/mcp", fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"create-chat-completion","arguments":%s}}`, id, args))
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		r.t.Fatal("the upstream never got the call")
	}
	return canceled
}

// sseEndpoint is the URL an HTTP+SSE session takes its messages at.
func (s *session) sseEndpoint(t *testing.T) string {
	tr, ok := s.GetTransport().(*transport.SSE)
	if !ok {
		t.Fatalf("transport is %T", s.GetTransport())
	}
	return tr.GetEndpoint().String()
}

func notCanceled(t *testing.T, canceled <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-canceled:
		t.Fatalf("%s cancelled the call", what)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestCancelOnlyByAWellFormedNotification: over streamable HTTP Parley
// reads notifications/cancelled itself, before mcp-go. A cancellation
// mcp-go would refuse cancels nothing: member names in another case
// (encoding/json matches names regardless of case), a body not sent as
// JSON. A request that reuses the id of one running, which mcp-go refuses,
// does not take the first's place: a cancellation still reaches the first.
func TestCancelOnlyByAWellFormedNotification(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	r := newRawSession(t, e)
	canceled := r.hangingCall(e, "132")

	_, body := r.post(`{"jsonrpc":"2.0","METHOD":"notifications/cancelled","Params":{"RequestId":132}}`)
	notCanceled(t, canceled, "a cancellation with its names in capitals ("+body+")")
	r.post(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":132}}`, "Content-Type", "text/plain")
	notCanceled(t, canceled, "a cancellation sent as text/plain")

	if _, body := r.post(`{"jsonrpc":"2.0","id":132,"method":"ping"}`); !strings.Contains(body, "already") {
		t.Errorf("a ping reusing the running call's id: %s, want mcp-go's refusal of an id in use", body)
	}
	res, _ := r.post(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":132}}`)
	if res.StatusCode != http.StatusAccepted {
		t.Errorf("a cancellation: %d, want 202", res.StatusCode)
	}
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("a well-formed cancellation, after a request that reused the id, did not cancel the call")
	}
}

// TestInvalidMessagesRefused: a JSON-RPC batch, which no protocol version
// Parley's SDK serves as such takes, and a request id that is not a string
// or an integer, which MCP forbids (or an integer whose answer could not
// be matched to it, which held an SSE session's end), are refused with a 400 and JSON-RPC's
// "invalid request", over streamable HTTP and HTTP+SSE alike, as are a
// method and a jsonrpc version that are no string. mcp-go took
// the batch for a parse error, answered a null id with nothing, echoed the
// others, and never answered 1e400 (its SSE session then waited for it).
func TestInvalidMessagesRefused(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	r := newRawSession(t, e)
	ping := func(id string) string { return `{"jsonrpc":"2.0","id":` + id + `,"method":"ping"}` }
	sse := e.connect(overSSE, "editor", Options{}).sseEndpoint(t)
	for _, body := range []string{
		"[" + ping("1") + "]", " \n[" + ping("1") + "]",
		ping("null"), ping("true"), ping(`{"a":1}`), ping("[1]"), ping("1.5"), ping("1e400"), ping("-0.0"),
		// Integers whose answer Parley could not match to them: mcp-go
		// answers -0 as 0, and one of 400 digits past a float's range.
		ping("-0"), ping("1" + strings.Repeat("0", 400)),
		// A method that is no string is valid JSON, which mcp-go called
		// not JSON.
		`{"jsonrpc":"2.0","id":1,"method":5}`, `{"jsonrpc":"2.0","method":{"name":"ping"}}`,
		// A version that is no string: mcp-go answered a parse error with
		// id null, so the request waited for a response, an HTTP+SSE
		// session's 64 places filled, and its end held the shutdown.
		`{"jsonrpc":2,"id":1,"method":"ping"}`, `{"jsonrpc":null,"id":"x","method":"tools/list"}`,
	} {
		for _, path := range []string{"/mcp", sse} {
			res, got := r.postTo(path, body)
			if id, code := rpcError(got); res.StatusCode != http.StatusBadRequest || code != -32600 || id != "null" {
				t.Errorf("%s, %s: %d %s, want 400 with an invalid request error and id null", path, body, res.StatusCode, got)
			}
		}
	}
	for _, id := range []string{`"x"`, "7", "-3", "123456789012345678901234567890"} {
		if res, got := r.post(ping(id)); res.StatusCode != http.StatusOK || !strings.Contains(got, `"id":`+id) {
			t.Errorf("a ping with the id %s: %d %s, want it answered", id, res.StatusCode, got)
		}
	}
	// A client's error response is taken, as its result would be: mcp-go
	// answered that the session was unknown.
	for _, body := range []string{`{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}`, `{"jsonrpc":"2.0","id":1,"result":{}}`} {
		if res, got := r.post(body); res.StatusCode != http.StatusAccepted || got != "" {
			t.Errorf("a client's response %s: %d %s, want 202 and nothing", body, res.StatusCode, got)
		}
	}
}

// TestTrailingBytesRefused: a message followed by anything but white
// space is not JSON, over streamable HTTP and HTTP+SSE alike: a 400 with
// JSON-RPC's parse error. mcp-go's HTTP+SSE handler decoded the first
// value and ran it, so that Parley, which reads the whole body, did not
// see it: a cancellation went to mcp-go instead (which then answered the
// call), and a call was not waited for by the shutdown.
func TestTrailingBytesRefused(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	r := newRawSession(t, e)
	sse := e.connect(overSSE, "editor", Options{}).sseEndpoint(t)
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":5,"method":"ping"} trailing`,
		`{"jsonrpc":"2.0","id":6,"method":"ping"}}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}{}`,
	} {
		for _, path := range []string{"/mcp", sse} {
			res, got := r.postTo(path, body)
			if id, code := rpcError(got); res.StatusCode != http.StatusBadRequest || code != -32700 || id != "null" {
				t.Errorf("%s, %s: %d %s, want 400 with a parse error and id null", path, body, res.StatusCode, got)
			}
		}
	}
	// White space after the message is JSON's.
	if res, got := r.postTo(sse, `{"jsonrpc":"2.0","id":8,"method":"ping"}`+" \n"); res.StatusCode != http.StatusAccepted {
		t.Errorf("a ping with white space after it over HTTP+SSE: %d %s, want it taken", res.StatusCode, got)
	}
}

// rpcError reads the id and the error code of a JSON-RPC answer.
func rpcError(body string) (id string, code int) {
	var msg struct {
		ID    json.RawMessage
		Error struct{ Code int }
	}
	_ = json.Unmarshal([]byte(body), &msg)
	return string(msg.ID), msg.Error.Code
}

// TestJSONOnlyClientGetsJSON: a client whose Accept takes no event stream
// gets its completion's result as JSON, though it asked for progress:
// mcp-go would open an event stream to send the notifications.
func TestJSONOnlyClientGetsJSON(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	r := newRawSession(t, e)
	e.upstream.Enqueue(llmtest.Behavior{Deltas: []string{"one ", "two"}})
	args, _ := json.Marshal(cancelArgs(e))
	res, body := r.post(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"create-chat-completion","arguments":`+string(args)+`,"_meta":{"progressToken":"p"}}}`,
		"Accept", "application/json")
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || ct != "application/json" || !strings.Contains(body, "one two") {
		t.Errorf("a completion with a progress token, Accept: application/json: %d %s %s, want 200 and the result as JSON", res.StatusCode, ct, body)
	}
}

// TestCORSForAllowedOrigins: a page at an allowed origin can call MCP
// from a browser: its preflight, which carries no key, is answered with
// what the call may send, every method of the transports (the SDK's
// terminateSession sends DELETE /mcp and reads its 405; a preflight that
// refused DELETE made it throw); the call's answer lets the page read the
// session id, a 429's wait and the request id. An origin not allowed gets no CORS, only its 403; a request
// without an Origin (no browser) gets no CORS headers.
func TestCORSForAllowedOrigins(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	e.origins = []string{"https://app.example.com"}
	r := newRawSession(t, e)
	do := func(method, path string, header ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, r.url+path, nil)
		must(t, err)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		must(t, err)
		res.Body.Close()
		return res
	}
	for _, tc := range []struct{ path, method, origin string }{
		{"/mcp", "POST", "http://localhost:6274"}, {"/mcp", "POST", "https://app.example.com"},
		{"/sse", "GET", "http://127.0.0.1:5173"}, {"/message", "POST", "https://app.example.com"},
	} {
		// The headers a client of each protocol version sends: 2026-07-28's
		// Mcp-Method and Mcp-Name besides the older ones.
		const requested = "authorization,content-type,accept,mcp-protocol-version,mcp-session-id,last-event-id,mcp-method,mcp-name"
		res := do("OPTIONS", tc.path, "Origin", tc.origin, "Access-Control-Request-Method", tc.method,
			"Access-Control-Request-Headers", requested, "Access-Control-Request-Private-Network", "true")
		h := res.Header
		if res.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != tc.origin ||
			h.Get("Access-Control-Allow-Methods") != "GET, POST, DELETE" || h.Get("Access-Control-Allow-Private-Network") != "true" ||
			!slices.Contains(h.Values("Vary"), "Origin") {
			t.Errorf("preflight of %s %s from %s: %d %v; want 204 allowing the origin, GET, POST and DELETE and a private network", tc.method, tc.path, tc.origin, res.StatusCode, h)
		}
		allowed := strings.Split(strings.ToLower(strings.ReplaceAll(h.Get("Access-Control-Allow-Headers"), " ", "")), ",")
		for _, name := range strings.Split(requested, ",") {
			if !slices.Contains(allowed, name) {
				t.Errorf("preflight of %s %s allows headers %q, not %s, which a browser then refuses to send", tc.method, tc.path, h.Get("Access-Control-Allow-Headers"), name)
			}
		}
	}
	res := do("OPTIONS", "/mcp", "Origin", "http://evil.example", "Access-Control-Request-Method", "POST")
	if res.StatusCode != http.StatusForbidden || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from an origin not allowed: %d %v; want 403 without CORS", res.StatusCode, res.Header)
	}
	ping := `{"jsonrpc":"2.0","id":3,"method":"ping"}`
	call, _ := r.post(ping, "Origin", "https://app.example.com")
	if h := call.Header; call.StatusCode != http.StatusOK || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		h.Get("Access-Control-Expose-Headers") != "Mcp-Session-Id, WWW-Authenticate, Retry-After, X-Request-Id" {
		t.Errorf("a call from an allowed origin: %d %v; want 200 allowing the origin and exposing Mcp-Session-Id, WWW-Authenticate, Retry-After and X-Request-Id", call.StatusCode, h)
	}
	call, _ = r.post(ping)
	if call.StatusCode != http.StatusOK || call.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a call without an Origin: %d %v; want 200 without CORS", call.StatusCode, call.Header)
	}
}

// TestOriginChecked: a request whose Origin header is neither a loopback
// origin nor one the server was told to take gets 403, before its key is
// looked at, on every HTTP endpoint (MCP: "Servers MUST validate the Origin
// header on all incoming connections to prevent DNS rebinding attacks").
// A request without one (every client outside a browser) is served.
func TestOriginChecked(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	e.origins = []string{"https://app.example.com"}
	r := newRawSession(t, e)
	sse := e.connect(overSSE, "editor", Options{}).sseEndpoint(t)
	ping := `{"jsonrpc":"2.0","id":3,"method":"ping"}`
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true}, {"http://localhost:6274", true}, {"http://127.0.0.1:3000", true}, {"http://[::1]:8080", true},
		{"https://APP.example.com", true},
		{"http://evil.example", false}, {"https://app.example.com:8443", false}, {"null", false}, {"file://", false},
		{"http://localhost.evil.example", false}, {"http://127.0.0.1.nip.io", false},
	} {
		for _, path := range []string{"/mcp", sse} {
			res, body := r.postTo(path, ping, "Origin", tc.origin)
			if refused := res.StatusCode == http.StatusForbidden; refused == tc.ok ||
				refused && !strings.Contains(body, `"code":"forbidden"`) {
				t.Errorf("Origin %q, %s: %d %s, want it served: %v", tc.origin, path, res.StatusCode, body, tc.ok)
			}
		}
	}
	// The SSE stream's GET too, and before the key: none is sent here.
	req, err := http.NewRequest("GET", r.url+"/sse", nil)
	must(t, err)
	req.Header.Set("Origin", "http://evil.example")
	res, err := http.DefaultClient.Do(req)
	must(t, err)
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("GET /sse from an origin not allowed, without a key: %d, want 403", res.StatusCode)
	}
}
