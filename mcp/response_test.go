package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/llm/llmtest"
)

// TestStreamableRefusalsInEnvelope checks that the refusals mcp-go writes
// as plain text reach the client in the error envelope, as guard's do,
// with a message that says what to send.
func TestStreamableRefusalsInEnvelope(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	hs := e.httpServer(e.server(Options{}), 0)
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	for _, tc := range []struct {
		name, session, contentType, version, body string
		status                                    int
		code, says                                string
	}{
		{"a malformed session id", "nope", "application/json", "2025-06-18", list, 404, "not_found", "initialize"},
		{"no session id", "", "application/json", "2025-06-18", list, 400, "invalid_request", "Mcp-Session-Id is required"},
		{"a body that is not JSON by its type", "", "text/plain", "2025-06-18", list, 400, "invalid_request", "Content-Type must be application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", hs.URL+"/mcp", strings.NewReader(tc.body))
			must(t, err)
			req.Header.Set("Authorization", "Bearer "+e.keys["editor"])
			req.Header.Set("Content-Type", tc.contentType)
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("MCP-Protocol-Version", tc.version)
			if tc.session != "" {
				req.Header.Set(server.HeaderKeySessionID, tc.session)
			}
			res, err := http.DefaultClient.Do(req)
			must(t, err)
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, body)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json: %s", ct, body)
			}
			var env struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal(body, &env); err != nil {
				t.Fatalf("body %q is not the error envelope: %v", body, err)
			}
			if env.Error.Code != tc.code || !strings.Contains(env.Error.Message, tc.says) {
				t.Errorf("error %+v, want code %q and a message saying %q", env.Error, tc.code, tc.says)
			}
		})
	}
}

// TestUnsupportedProtocolVersion: a request whose MCP-Protocol-Version
// mcp-go does not speak, a date or not (a draft's "DRAFT-2027-v1", which
// mcp-go took for a version to come), gets MCP's unsupported-version
// error (-32022) with the versions there are, for its id; initialize,
// which agrees on a version in its body, goes on without the header.
func TestUnsupportedProtocolVersion(t *testing.T) {
	r := newRawSession(t, newEnv(t, dbtest.SQLite(t)))
	r.session = "" // the version is checked before the session
	for _, v := range []string{"1999-01-01", "bogus", "DRAFT-2027-v1"} {
		res, body := r.post(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, "MCP-Protocol-Version", v)
		var got struct {
			ID    int `json:"id"`
			Error struct {
				Code int `json:"code"`
				Data struct {
					Supported []string `json:"supported"`
					Requested string   `json:"requested"`
				} `json:"data"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(body), &got); err != nil || res.StatusCode != 400 || got.ID != 2 || got.Error.Code != -32022 ||
			got.Error.Data.Requested != v || !slices.Contains(got.Error.Data.Supported, "2025-11-25") {
			t.Errorf("version %q: %d %s, want 400 with -32022 for id 2 naming the versions there are", v, res.StatusCode, body)
		}
	}
	// What is wrong with the message itself is said first.
	for body, code := range map[string]string{`{"jsonrpc":"2.0","id":2,`: "-32700", `[{"jsonrpc":"2.0","id":2,"method":"tools/list"}]`: "-32600"} {
		if res, got := r.post(body, "MCP-Protocol-Version", "bogus"); res.StatusCode != 400 || !strings.Contains(got, `"code":`+code) {
			t.Errorf("%s with an unknown version: %d %s, want %s", body, res.StatusCode, got, code)
		}
	}
	res, body := r.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
		"MCP-Protocol-Version", "DRAFT-2027-v1")
	if res.StatusCode != 200 || !strings.Contains(body, `"protocolVersion":"2025-06-18"`) {
		t.Errorf("initialize with a draft's header: %d %s, want it answered", res.StatusCode, body)
	}
}

// TestStreamableCallKeptAlive checks that a call's response that stays
// quiet (a completion the model takes long to answer) gets SSE comments,
// so that proxies do not close it, and that the answer still reaches
// the client: raw, as the stream's one event, and through mcp-go's
// client on both protocol versions. A client that takes only JSON gets
// none.
func TestStreamableCallKeptAlive(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	e.keepAlive = 100 * time.Millisecond
	hs := e.httpServer(e.server(Options{}), 0)
	call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create-chat-completion","arguments":{"aiProviderId":"` +
		e.provider.ID + `","messages":[{"role":"user","content":"slow"}]}}}`
	var session string
	post := func(accept, body string) *http.Response {
		req, err := http.NewRequest("POST", hs.URL+"/mcp", strings.NewReader(body))
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+e.keys["editor"])
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", accept)
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		if session != "" {
			req.Header.Set(server.HeaderKeySessionID, session)
		}
		res, err := http.DefaultClient.Do(req)
		must(t, err)
		return res
	}
	res := post("application/json, text/event-stream", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	res.Body.Close()
	if session = res.Header.Get(server.HeaderKeySessionID); session == "" {
		t.Fatal("initialize returned no session id")
	}

	e.upstream.Enqueue(llmtest.Behavior{Delay: 600 * time.Millisecond, Reply: "worth the wait"})
	res = post("application/json, text/event-stream", call)
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("a quiet call's response is %q, want an event stream: %s", ct, b)
	}
	var keepAlives int
	var events []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		switch line := sc.Text(); {
		case line == ": keep-alive":
			if len(events) > 0 {
				t.Errorf("a keep-alive after the answer")
			}
			keepAlives++
		case strings.HasPrefix(line, "data: "):
			events = append(events, strings.TrimPrefix(line, "data: "))
		}
	}
	if keepAlives < 2 {
		t.Errorf("%d keep-alives in 600ms at one per 100ms of quiet, want several", keepAlives)
	}
	if len(events) != 1 || !strings.Contains(events[0], `"id":7`) || !strings.Contains(events[0], "worth the wait") {
		t.Fatalf("events %q, want the call's answer", events)
	}

	e.upstream.Enqueue(llmtest.Behavior{Delay: 300 * time.Millisecond, Reply: "plain"})
	res = post("application/json", call)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "application/json" || !json.Valid(body) || !strings.Contains(string(body), "plain") {
		t.Errorf("a client that takes only JSON got %q: %s", ct, body)
	}

	// A call with a progress token: mcp-go opens the event stream with the
	// first notification; the quiet between them gets comments, never
	// inside an event.
	e.upstream.Enqueue(llmtest.Behavior{ChunkDelay: 250 * time.Millisecond, Deltas: []string{"a", "b", "c"}})
	res = post("application/json, text/event-stream", strings.Replace(call, `"arguments"`, `"_meta":{"progressToken":"p"},"arguments"`, 1))
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	keepAlives, events = 0, nil
	for _, block := range strings.Split(strings.TrimSpace(string(raw)), "\n\n") {
		switch {
		case block == ": keep-alive":
			keepAlives++
		case strings.HasPrefix(block, "event: message\ndata: ") && !strings.Contains(block, ": keep-alive"):
			events = append(events, block)
		default:
			t.Errorf("a block that is neither a comment nor an event: %q", block)
		}
	}
	if keepAlives == 0 || len(events) < 4 || !strings.Contains(events[len(events)-1], `"id":7`) {
		t.Errorf("%d keep-alives and events %q, want comments between the progress events and the answer", keepAlives, events)
	}

	for _, over := range []string{overHTTP, overHTTPLegacy} {
		t.Run(over, func(t *testing.T) {
			s := e.connect(over, "editor", Options{})
			e.upstream.Enqueue(llmtest.Behavior{Delay: 400 * time.Millisecond, Reply: "kept"})
			var out completionOut
			s.ok(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("slow")}, &out)
			if !strings.Contains(out.Content, "kept") {
				t.Errorf("content %q, want the upstream's reply", out.Content)
			}
		})
	}
}

// TestStdioLastMessageWithoutNewline checks that a message the agent
// ends with its input rather than a newline (a script's printf, a pipe
// closed after a single request) is answered before ServeStdio returns.
func TestStdioLastMessageWithoutNewline(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	stdioMu.Lock()
	defer stdioMu.Unlock()
	in := strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}` + "\n" +
		`{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n" +
		`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	var out bytes.Buffer
	if err := ServeStdio(context.Background(), e.server(Options{}), Fixed(e.principals["editor"]), 0, in, &out, newTestLogger(e.logs)); err != nil {
		t.Fatalf("ServeStdio at the end of its input: %v", err)
	}
	var ids []string
	for line := range strings.Lines(out.String()) {
		var res struct {
			ID     json.RawMessage `json:"id"`
			Result struct {
				Tools []struct{ Name string } `json:"tools"`
			} `json:"result"`
		}
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			t.Fatalf("a line of output is not JSON: %q", line)
		}
		ids = append(ids, string(res.ID))
		if string(res.ID) == "2" && !slices.ContainsFunc(res.Result.Tools, func(tl struct{ Name string }) bool { return tl.Name == "create-chat-completion" }) {
			t.Errorf("tools/list answered without create-chat-completion: %s", line)
		}
	}
	// mcp-go answers a session's requests on workers of its own, so in
	// either order, as JSON-RPC allows: under load tools/list's answer
	// came first.
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"1", "2"}) {
		t.Errorf("responses to ids %v, want one each to 1 and 2; output:\n%s", ids, out.String())
	}
}

// startStdio starts an initialized stdio server of e whose message limit
// is limit, and returns how to send it a line and its output's lines; it
// ends with the test.
func startStdio(t *testing.T, e *env, limit int64) (send func(string), lines *bufio.Reader) {
	t.Helper()
	stdioMu.Lock()
	serverIn, clientOut := io.Pipe()
	clientIn, serverOut := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeStdio(ctx, e.server(Options{}), Fixed(e.principals["editor"]), limit, serverIn, serverOut, newTestLogger(e.logs))
	}()
	t.Cleanup(func() {
		_ = clientOut.Close()
		cancel()
		<-done
		stdioMu.Unlock()
	})
	lines = bufio.NewReader(clientIn)
	send = func(msg string) {
		t.Helper()
		if _, err := io.WriteString(clientOut, msg+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	readLine(t, lines)
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return send, lines
}

// TestStdioBoundsWhatDecodingCosts: a stdio message of many small values
// (5,000 empty messages) is dropped before mcp-go decodes it, answered
// with an Invalid Request error naming the array, and the session goes on.
func TestStdioBoundsWhatDecodingCosts(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	send, lines := startStdio(t, e, 8<<20)
	send(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"create-chat-completion-for-chat","arguments":{"chatId":"cht_x",` +
		`"systemMessage":"` + strings.Repeat("x", 70_000) + `","messages":[` + strings.TrimSuffix(strings.Repeat(`{},`, 5000), ",") + `]}}}`)
	if got := readLine(t, lines); !strings.Contains(got, `"id":5`) || !strings.Contains(got, `-32600`) || !strings.Contains(got, "holds more than 4096 items") {
		t.Errorf("answer to a message of 5,000 messages: %.300s; want -32600 naming the array", got)
	}
	send(`{"jsonrpc":"2.0","id":6,"method":"ping"}`)
	if got := readLine(t, lines); !strings.Contains(got, `"id":6`) || !strings.Contains(got, `"result"`) {
		t.Errorf("after it, ping got %s", got)
	}
}

// TestStdioMessageOverLimit checks that a stdio message over the limit is
// dropped as it arrives, not held whole, and answered with an Invalid
// Request error for its id, and that the session goes on.
func TestStdioMessageOverLimit(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	send, lines := startStdio(t, e, 1024)
	huge := strings.Repeat("x", 64<<10)
	for _, tc := range []struct{ msg, id string }{
		{`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"create-chat","arguments":{"name":"` + huge + `"}}}`, `5`},
		// The TypeScript SDK writes the id last.
		{`{"method":"tools/call","params":{"name":"create-chat","arguments":{"name":"` + huge + `"}},"jsonrpc":"2.0","id":"late"}`, `"late"`},
		{`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"` + huge, `null`},
	} {
		send(tc.msg)
		var res struct {
			ID    json.RawMessage `json:"id"`
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(readLine(t, lines)), &res); err != nil {
			t.Fatal(err)
		}
		if string(res.ID) != tc.id || res.Error.Code != -32600 || !strings.Contains(res.Error.Message, "1024-byte limit") {
			t.Errorf("answer to a message over the limit: id %s, error %+v; want id %s, -32600 naming the limit", res.ID, res.Error, tc.id)
		}
	}
	send(`{"jsonrpc":"2.0","id":6,"method":"ping"}`)
	if got := readLine(t, lines); !strings.Contains(got, `"id":6`) || !strings.Contains(got, `"result"`) {
		t.Errorf("after messages over the limit, ping got %s", got)
	}
}

// TestTooLongLineFindsTheID: the id of a message over the limit is the
// top-level object's "id" member's value wherever it comes, however the
// message arrives, and null where it cannot be read.
func TestTooLongLineFindsTheID(t *testing.T) {
	for _, tc := range []struct{ msg, id string }{
		{`{"jsonrpc":"2.0","id":12,"method":"x","params":{}}`, `12`},
		{`{"params":{"id":1,"a":[{"id":2}],"s":"\\\",\"id\":3"},"method":"x", "id" : "a,}\"b" }`, `"a,}\"b"`},
		{`{"id":-1.5e3,"id":7}`, `7`}, // the last, as encoding/json reads it
		{` { "id" : null , "method":"x"}`, `null`},
		{`{"method":"x","params":{"id":4}}`, `null`},
		{`{"id":{"a":1}}`, `null`},
		{`{"id":[1]}`, `null`},
		{`{"id":true}`, `null`},
		{`{"id":12abc}`, `null`}, // not JSON: its answer could not be written
		{`{"id":"\x"}`, `null`},
		{`{"id":"` + strings.Repeat("x", maxIDBytes) + `"}`, `null`},
		{`{"id":5`, `null`},    // never ended
		{`[{"id":5}]`, `null`}, // a batch
		{`{"idx":5,"i":6}`, `null`},
		{`{"i\u0064":5}`, `null`}, // an escaped name is not read
	} {
		for _, piece := range []int{len(tc.msg), 1, 3} {
			var got json.RawMessage
			l := &tooLongLine{answer: func(id json.RawMessage) { got = id }}
			for b := []byte(tc.msg); len(b) > 0; b = b[min(piece, len(b)):] {
				_, _ = l.Write(b[:min(piece, len(b))])
			}
			l.End()
			if string(got) != tc.id {
				t.Errorf("%s in pieces of %d: id %s, want %s", tc.msg, piece, got, tc.id)
			}
		}
	}
}

// TestKeepAliveNeverOpensInitialize: the answer to initialize carries the
// session id in its Mcp-Session-Id header, which a keep-alive that opened
// the response as a stream first would have sent without (and the client's
// next message is then refused for want of it). With a keep-alive due
// before any answer, both protocol versions still connect and call a tool.
func TestKeepAliveNeverOpensInitialize(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	e.keepAlive = time.Microsecond
	for _, over := range []string{overHTTP, overHTTPLegacy} {
		for range 5 {
			var out listOut[chatOut]
			e.connect(over, "editor", Options{}).ok(t, "list-chats", obj{"projectId": e.project.ID}, &out)
		}
	}
}

// TestKeepAliveRacesTheAnswer sends calls whose answer comes about when
// the first keep-alive is due, so that the keep-alive that opens the
// stream and mcp-go's answer meet (run with -race, as make test does):
// whichever goes first, the client gets the answer, as JSON or as the
// stream's event.
func TestKeepAliveRacesTheAnswer(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	e.keepAlive = 2 * time.Millisecond
	e.upstream.Script(func(n int, _ llmtest.Request) llmtest.Behavior {
		return llmtest.Behavior{Delay: time.Duration(1500+n%10*100) * time.Microsecond, Reply: "on time"}
	})
	s := e.connect(overHTTPLegacy, "editor", Options{})
	// Each caller is a subtest, whose goroutine may fail it (t.Run may be
	// called from several goroutines at once).
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			t.Run(fmt.Sprint("caller ", i), func(t *testing.T) {
				for range 25 {
					var out completionOut
					s.ok(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("now")}, &out)
					if out.Content != "on time" {
						t.Fatalf("content %q, want the upstream's reply", out.Content)
					}
				}
			})
		})
	}
	wg.Wait()
}
