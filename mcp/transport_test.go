package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/internal/logtest"
	"github.com/parleyhq/parley/internal/stalltest"
	"github.com/parleyhq/parley/llm/llmtest"
	"github.com/parleyhq/parley/store"
)

var allTools = []string{
	"create-chat", "create-chat-completion", "create-chat-completion-for-chat", "create-document",
	"delete-chat", "delete-conversation", "delete-document", "get-ai-provider", "get-chat", "get-conversation", "get-document",
	"get-project", "get-usage", "list-ai-providers", "list-chats", "list-conversations", "list-documents",
	"list-messages", "list-models", "list-projects", "update-chat", "update-document",
}

var readTools = []string{
	"get-ai-provider", "get-chat", "get-conversation", "get-document", "get-project", "get-usage",
	"list-ai-providers", "list-chats", "list-conversations", "list-documents", "list-messages", "list-models", "list-projects",
}

// TestTransports runs a chat's life over every transport: list the tools,
// create a chat, stream completions with progress (every delta must
// arrive, call after call), read the conversation, cancel a call, delete
// the chat.
func TestTransports(t *testing.T) {
	for _, over := range []string{overHTTP, overHTTPLegacy, overSSE, overStdio} {
		t.Run(over, func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, st *store.Store) { testTransport(t, st, over) })
		})
	}
}

func testTransport(t *testing.T, st *store.Store, over string) {
	e := newEnv(t, st)
	s := e.connect(over, "editor", Options{})
	ctx := context.Background()

	tools, err := s.ListTools(ctx, mcpgo.ListToolsRequest{})
	must(t, err)
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, allTools) {
		t.Fatalf("tools/list = %q, want %q", names, allTools)
	}

	var chat chatOut
	s.ok(t, "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.provider.ID, "name": over}, &chat)

	deltas := make([]string, 30)
	for i := range deltas {
		deltas[i] = fmt.Sprintf("d%02d|", i)
	}
	e.upstream.reply(deltas...)
	var conv string
	for i := range 20 {
		token := fmt.Sprintf("%s-%d", over, i)
		args := obj{"chatId": chat.ID, "messages": userMsg(fmt.Sprintf("turn %d", i))}
		if conv != "" {
			args["conversationId"] = conv
		}
		res, err := s.callErr(t, "create-chat-completion-for-chat", args, token)
		must(t, err)
		if res.IsError {
			t.Fatalf("call %d: %s", i, text(res))
		}
		var out completionOut
		decode(t, res, &out)
		checkStream(t, s, token, deltas, out)
		conv = out.ConversationID
	}

	// Concurrent calls in one session: each call's deltas must reach it.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			token := fmt.Sprintf("%s-concurrent-%d", over, i)
			res, err := s.callErr(t, "create-chat-completion-for-chat", obj{"chatId": chat.ID, "messages": userMsg("together")}, token)
			if err != nil || res.IsError {
				errs <- fmt.Errorf("concurrent call %d: %v %v", i, err, res)
				return
			}
			if got, want := len(s.notes(token)), len(deltas); got != want {
				errs <- fmt.Errorf("concurrent call %d got %d of %d deltas", i, got, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	var c conversationOut
	s.ok(t, "get-conversation", obj{"conversationId": conv}, &c)
	if len(c.Messages) != 40 {
		t.Fatalf("conversation has %d messages, want 40", len(c.Messages))
	}

	if over == overSSE {
		// mcp-go's client cancels nothing over SSE, where closing
		// the request is no cancellation; other clients send
		// notifications/cancelled, which must reach the upstream.
		tr := s.GetTransport()
		call := func(ctx context.Context) error {
			params := obj{"name": "create-chat-completion", "arguments": cancelArgs(e)}
			_, err := tr.SendRequest(ctx, transport.JSONRPCRequest{JSONRPC: mcpgo.JSONRPC_VERSION,
				ID: mcpgo.NewRequestId("cancel-me"), Method: string(mcpgo.MethodToolsCall), Params: params})
			return err
		}
		notify := func() {
			n := mcpgo.JSONRPCNotification{JSONRPC: mcpgo.JSONRPC_VERSION, Notification: mcpgo.Notification{
				Method: string(mcpgo.MethodNotificationCancelled),
				Params: mcpgo.NotificationParams{AdditionalFields: map[string]any{"requestId": "cancel-me", "reason": "test"}},
			}}
			must(t, tr.SendNotification(context.Background(), n))
		}
		checkCancel(t, e, call, notify)
	} else {
		checkCancel(t, e, callTool(e, s), nil)
	}

	var del deletedOut
	s.ok(t, "delete-chat", obj{"chatId": chat.ID}, &del)
	if !del.Deleted || del.ID != chat.ID {
		t.Fatalf("delete-chat = %+v", del)
	}
}

// TestReadOnly checks that read-only mode registers only the read tools.
func TestReadOnly(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overHTTP, "editor", Options{ReadOnly: true})
	tools, err := s.ListTools(context.Background(), mcpgo.ListToolsRequest{})
	must(t, err)
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, readTools) {
		t.Fatalf("read-only tools/list = %q, want %q", names, readTools)
	}
	// A tool the session does not offer is a JSON-RPC error, as for any
	// unknown tool name (README, MCP errors).
	_, err = s.callErr(t, "create-chat", obj{"projectId": e.project.ID, "aiProviderId": e.provider.ID}, nil)
	if err == nil || !strings.Contains(err.Error(), "tool 'create-chat' not found") {
		t.Fatalf("create-chat in read-only mode: %v; want a JSON-RPC error naming the tool", err)
	}
}

// TestInstructionsNameListedTools checks that the server's instructions
// name only tools the session lists: in read-only mode a model told to
// call create-chat-completion-for-chat would call a tool that is not there.
func TestInstructionsNameListedTools(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	for _, readOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("readOnly=%v", readOnly), func(t *testing.T) {
			s := e.connect(overHTTP, "editor", Options{ReadOnly: readOnly})
			tools, err := s.ListTools(context.Background(), mcpgo.ListToolsRequest{})
			must(t, err)
			listed := map[string]bool{}
			for _, tool := range tools.Tools {
				listed[tool.Name] = true
			}
			text := s.init.Instructions
			if text == "" {
				t.Fatal("no instructions")
			}
			for _, name := range allTools {
				named := regexp.MustCompile(`(^|[^a-z-])` + name + `($|[^a-z-])`).MatchString(text)
				if named && !listed[name] {
					t.Errorf("instructions name %s, which tools/list does not offer:\n%s", name, text)
				}
			}
		})
	}
}

// TestToolAnnotations checks over a session that every tool sets all four
// annotations, an output schema and a description for every input field.
func TestToolAnnotations(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overHTTP, "editor", Options{})
	tools, err := s.ListTools(context.Background(), mcpgo.ListToolsRequest{})
	must(t, err)
	for _, tool := range tools.Tools {
		a := tool.Annotations
		if a.ReadOnlyHint == nil || a.DestructiveHint == nil || a.IdempotentHint == nil || a.OpenWorldHint == nil {
			t.Errorf("%s: annotations %+v are not all set", tool.Name, a)
			continue
		}
		readOnly := slices.Contains(readTools, tool.Name)
		if *a.ReadOnlyHint != readOnly {
			t.Errorf("%s: readOnlyHint %v", tool.Name, *a.ReadOnlyHint)
		}
		if want := strings.HasPrefix(tool.Name, "delete-") || strings.HasPrefix(tool.Name, "update-"); *a.DestructiveHint != want {
			t.Errorf("%s: destructiveHint %v", tool.Name, *a.DestructiveHint)
		}
		// The tools that call the AI provider reach outside Parley.
		if want := strings.Contains(tool.Name, "completion") || tool.Name == "list-models"; *a.OpenWorldHint != want {
			t.Errorf("%s: openWorldHint %v", tool.Name, *a.OpenWorldHint)
		}
		if tool.OutputSchema.Type != "object" {
			t.Errorf("%s: output schema type %q", tool.Name, tool.OutputSchema.Type)
		}
		if tool.Description == "" {
			t.Errorf("%s: no description", tool.Name)
		}
		for _, field := range undescribed("", tool.InputSchema.Properties) {
			t.Errorf("%s: input field %s has no description", tool.Name, field)
		}
	}
}

// undescribed returns the paths of the properties, at any depth, that have
// no description: those of nested objects, array items and anyOf branches
// too (the object form of toolChoice, a message's fields).
func undescribed(path string, props map[string]any) []string {
	var out []string
	for name, p := range props {
		s, _ := p.(map[string]any)
		if d, _ := s["description"].(string); d == "" {
			out = append(out, path+name)
		}
		out = append(out, nested(path+name, s)...)
	}
	return out
}

// nested returns undescribed's paths inside schema s.
func nested(path string, s map[string]any) []string {
	var out []string
	if props, ok := s["properties"].(map[string]any); ok {
		out = append(out, undescribed(path+".", props)...)
	}
	if items, ok := s["items"].(map[string]any); ok {
		out = append(out, nested(path+"[]", items)...)
	}
	for _, key := range []string{"anyOf", "oneOf"} {
		branches, _ := s[key].([]any)
		for _, b := range branches {
			bs, _ := b.(map[string]any)
			out = append(out, nested(path, bs)...)
		}
	}
	return out
}

// TestHTTPBoundsWhatDecodingCosts: a body of many small values (here
// 5,000 empty messages, which cost a few hundred megabytes to decode) is
// refused before mcp-go decodes it, as a 400 naming the array.
func TestHTTPBoundsWhatDecodingCosts(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	hs := e.httpServer(e.server(Options{}), 8<<20)
	messages := strings.TrimSuffix(strings.Repeat(`{},`, 5000), ",")
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create-chat-completion-for-chat","arguments":{"chatId":"cht_x",` +
		`"systemMessage":"` + strings.Repeat("x", 70_000) + `","messages":[` + messages + `]}}}`
	status, b := postJSON(t, hs.URL+"/mcp", e.keys["editor"], body)
	var env struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(b), &env); err != nil || status != 400 || env.Error.Code != "invalid_request" ||
		!strings.Contains(env.Error.Message, "params.arguments.messages holds more than 4096 items") {
		t.Fatalf("%d %.300s; want a 400 invalid_request naming the array", status, b)
	}
}

// TestHTTPCompressedBodyRefused: a POST with a Content-Encoding, which
// Parley does not decode, is a 400 saying to send it uncompressed.
func TestHTTPCompressedBodyRefused(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	hs := e.httpServer(e.server(Options{}), 1<<20)
	status, b := postJSON(t, hs.URL+"/mcp", e.keys["editor"], `{"jsonrpc":"2.0","id":1,"method":"ping"}`, "Content-Encoding", "gzip")
	if status != 400 || !strings.Contains(b, "send the body uncompressed") {
		t.Errorf("a gzip-labelled POST: %d %s; want a 400 saying to send it uncompressed", status, b)
	}
}

// postJSON posts body to url with key, as an MCP client over streamable
// HTTP does, with more headers as name, value pairs, and returns the
// status and the answer's body.
func postJSON(t *testing.T, url, key, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", url, strings.NewReader(body))
	must(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	must(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestHTTPAuth checks that every HTTP endpoint refuses a missing or wrong
// key with 401 and a challenge, before any MCP processing.
func TestHTTPAuth(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	hs := e.httpServer(e.server(Options{}), 1024)
	initBody := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	for _, tc := range []struct {
		name, method, path, auth, body string
		status                         int
		challenge                      string
	}{
		{"mcp without a key", "POST", "/mcp", "", initBody, 401, `Bearer realm="parley"`},
		{"mcp with a wrong key", "POST", "/mcp", "Bearer pk_wrong", initBody, 401, `Bearer realm="parley", error="invalid_token"`},
		{"mcp with another scheme", "POST", "/mcp", "Basic " + e.keys["editor"], initBody, 401, `Bearer realm="parley"`},
		{"sse without a key", "GET", "/sse", "", "", 401, `Bearer realm="parley"`},
		{"message with a wrong key", "POST", "/message?sessionId=x", "Bearer pk_wrong", initBody, 401, `Bearer realm="parley", error="invalid_token"`},
		{"mcp with a key", "POST", "/mcp", "Bearer " + e.keys["editor"], initBody, 200, ""},
		{"mcp body over the limit", "POST", "/mcp", "Bearer " + e.keys["editor"], strings.Repeat(" ", 2000) + initBody, 413, ""},
		{"mcp GET stream is not offered", "GET", "/mcp", "Bearer " + e.keys["editor"], "", 405, ""},
		{"mcp sessions are not ended by DELETE", "DELETE", "/mcp", "Bearer " + e.keys["editor"], "", 405, ""},
		{"mcp takes no PUT", "PUT", "/mcp", "Bearer " + e.keys["editor"], initBody, 405, ""},
		{"mcp takes no HEAD", "HEAD", "/mcp", "Bearer " + e.keys["editor"], "", 405, ""},
		{"sse takes only GET", "POST", "/sse", "Bearer " + e.keys["editor"], initBody, 405, ""},
		{"message takes only POST", "GET", "/message?sessionId=x", "Bearer " + e.keys["editor"], "", 405, ""},
		{"a wrong method without a key", "DELETE", "/mcp", "", "", 401, `Bearer realm="parley"`},
		{"mcp session-less cancellation is ignored", "POST", "/mcp", "Bearer " + e.keys["editor"],
			`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`, 202, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, hs.URL+tc.path, strings.NewReader(tc.body))
			must(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			res, err := http.DefaultClient.Do(req)
			must(t, err)
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, body)
			}
			if got := res.Header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			if tc.status == 401 || tc.status == 413 {
				var env struct {
					Error struct{ Code, Message string } `json:"error"`
				}
				if err := json.Unmarshal(body, &env); err != nil || env.Error.Message == "" {
					t.Fatalf("body %s is not the error envelope", body)
				}
				if want := map[int]string{401: "unauthenticated", 413: "payload_too_large"}[tc.status]; env.Error.Code != want {
					t.Errorf("code %q, want %q", env.Error.Code, want)
				}
			}
		})
	}
}

// TestHTTPBodyLimitIsParleys checks that PARLEY_MAX_BODY_BYTES alone
// bounds a request over HTTP: mcp-go has a limit of its own (4 MiB since
// v1.5), which must not refuse, in its own words, a body Parley takes.
func TestHTTPBodyLimitIsParleys(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	srv := e.server(Options{})
	hs := e.httpServer(srv, domain.DefaultMaxBodyBytes)
	// JSON allows whitespace before a value: 5 MiB of it, under Parley's
	// 8 MiB and over mcp-go's 4.
	pad := strings.Repeat(" ", 5<<20)
	post := func(url, body string) (int, string) {
		t.Helper()
		return postJSON(t, url, e.keys["editor"], pad+body)
	}
	initBody := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	if status, body := post(hs.URL+"/mcp", initBody); status != http.StatusOK || !strings.Contains(body, `"serverInfo"`) {
		t.Errorf("streamable HTTP, a 5 MiB initialize: %d %.200s, want 200 and the server's info", status, body)
	}

	s := e.connect(overSSE, "editor", Options{})
	tr, ok := s.GetTransport().(*transport.SSE)
	if !ok {
		t.Fatalf("transport is %T", s.GetTransport())
	}
	// e.connect's server has the default limit too; its message endpoint
	// answers 202 once it has taken a request, whose response then comes
	// on the session's stream.
	if status, body := post(tr.GetEndpoint().String(), `{"jsonrpc":"2.0","id":99,"method":"ping"}`); status != http.StatusAccepted {
		t.Errorf("HTTP+SSE, a 5 MiB ping: %d %.200s, want 202", status, body)
	}
}

// TestHTTPBodyMustArrive: a request whose body stops coming is answered
// 400 in the envelope once the body timeout passed, rather than hold its
// handler, and the connection, for as long as the client likes.
func TestHTTPBodyMustArrive(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	e.bodyTimeout = 300 * time.Millisecond
	hs := e.httpServer(e.server(Options{}), 0)
	for _, path := range []string{"/mcp", "/message?sessionId=x"} {
		t.Run(path, func(t *testing.T) { stalltest.SlowBodyRefused(t, hs.URL, e.keys["editor"], path, e.bodyTimeout) })
	}
}

// TestSSESessionBelongsToItsUser checks that one user cannot post into
// another user's SSE session.
func TestSSESessionBelongsToItsUser(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overSSE, "editor", Options{})
	tr, ok := s.GetTransport().(*transport.SSE)
	if !ok {
		t.Fatalf("transport is %T", s.GetTransport())
	}
	endpoint := tr.GetEndpoint().String()
	body := `{"jsonrpc":"2.0","id":99,"method":"tools/list"}`
	post := func(user, endpoint string) (int, string) {
		req, _ := http.NewRequest("POST", endpoint, bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.keys[user])
		res, err := http.DefaultClient.Do(req)
		must(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(b))
	}
	// Another user's session and one that does not exist get the same
	// answer, so that the answer does not tell that a session is open.
	const noSession = `{"error":{"code":"not_found","message":"no such SSE session; open one with GET on the SSE endpoint"}}`
	u, err := url.Parse(endpoint)
	must(t, err)
	q := u.Query()
	q.Set("sessionId", "0123456789abcdef0123456789abcdef")
	u.RawQuery = q.Encode()
	for name, ep := range map[string]string{"another user's session": endpoint, "a session that does not exist": u.String()} {
		if got, b := post("outsider", ep); got != http.StatusNotFound || b != noSession {
			t.Errorf("outsider posting into %s: %d %s, want 404 %s", name, got, b, noSession)
		}
	}
	q.Del("sessionId")
	u.RawQuery = q.Encode()
	if got, b := post("editor", u.String()); got != http.StatusBadRequest || !strings.HasPrefix(b, `{"error":{"code":"invalid_request","message":"sessionId`) {
		t.Errorf("posting without a sessionId: %d %s, want 400 invalid_request naming sessionId", got, b)
	}
	if got, _ := post("editor", endpoint); got != http.StatusAccepted {
		t.Errorf("editor posting into its own session: %d, want 202", got)
	}
}

// TestStdioActsAsItsPrincipal checks the stdio transport's identity.
func TestStdioActsAsItsPrincipal(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overStdio, "outsider", Options{})
	var l listOut[projectOut]
	s.ok(t, "list-projects", obj{}, &l)
	if len(l.Data) != 1 || l.Data[0].ID != e.otherProject.ID {
		t.Fatalf("outsider over stdio sees %+v", l)
	}
	s.fails(t, "get-project", obj{"projectId": e.project.ID}, "not_found")
}

// TestStdioKeyRevokedMidSession: a stdio session outlives many calls, so
// its key is checked at each; revoked, it stops working at the next call,
// as a revoked key does over HTTP, not when the agent restarts parley mcp.
func TestStdioKeyRevokedMidSession(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overStdio, "editor", Options{})
	var p projectOut
	s.ok(t, "get-project", obj{"projectId": e.project.ID}, &p)
	editor := e.principals["editor"]
	_, err := e.svcs.Users.RevokeAPIKey(e.ctx("editor"), editor.UserID, editor.KeyID)
	must(t, err)
	s.fails(t, "get-project", obj{"projectId": e.project.ID}, "unauthenticated")
}

// TestKeyExpiresMidSession: a session outlives its key's expiry; from
// then on each request is refused as a revoked key's is: over HTTP a 401
// with the very body a wrong key gets, over stdio an unauthenticated
// result at the next call.
func TestKeyExpiresMidSession(t *testing.T) {
	for _, over := range []string{overHTTP, overSSE, overStdio} {
		t.Run(over, func(t *testing.T) {
			e := newEnv(t, dbtest.SQLite(t))
			var mu sync.Mutex
			now := time.Now().UTC()
			e.configure(func(d *domain.Deps) {
				d.Now = func() time.Time {
					mu.Lock()
					defer mu.Unlock()
					return now
				}
			})
			exp := now.Add(time.Hour)
			k, err := e.svcs.Users.CreateAPIKey(e.ctx("admin"), e.principals["editor"].UserID, domain.APIKeyCreate{Name: "expiring", ExpiresAt: &exp})
			must(t, err)
			e.keys["expiring"] = k.Secret
			s := e.connect(over, "expiring", Options{})
			var p projectOut
			s.ok(t, "get-project", obj{"projectId": e.project.ID}, &p)

			mu.Lock()
			now = exp
			mu.Unlock()
			if over == overStdio {
				s.fails(t, "get-project", obj{"projectId": e.project.ID}, "unauthenticated")
				return
			}
			if _, err := s.callErr(t, "get-project", obj{"projectId": e.project.ID}, nil); err == nil {
				t.Fatal("get-project with the expired key succeeded")
			}
			hs := e.httpServer(e.server(Options{}), 0)
			post := func(key string) (int, string, string) {
				req, err := http.NewRequest("POST", hs.URL+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
				must(t, err)
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				res, err := http.DefaultClient.Do(req)
				must(t, err)
				defer res.Body.Close()
				b, _ := io.ReadAll(res.Body)
				return res.StatusCode, res.Header.Get("WWW-Authenticate"), string(b)
			}
			code, challenge, body := post(k.Secret)
			wCode, wChallenge, wBody := post("pk_wrong")
			if code != 401 || challenge != wChallenge || body != wBody {
				t.Errorf("expired key: %d %q %s\nwant as a wrong key: %d %q %s", code, challenge, body, wCode, wChallenge, wBody)
			}
		})
	}
}

// TestErrorMapping checks the one mapping from domain kinds: user-facing
// kinds are tool error results starting with the REST code, internal faults
// protocol errors that reveal nothing and are logged.
func TestErrorMapping(t *testing.T) {
	var logs logtest.Buffer
	d := deps{log: newTestLogger(&logs)}
	ctx := context.Background()
	keyLimit := &domain.Error{Kind: domain.RateLimited, Message: "rate limit reached: 600 requests per minute for this API key; retry in 12s",
		RetryAfter: 12 * time.Second, Details: map[string]any{"limit": 600, "limitName": "key-requests-per-minute", "remaining": 0, "resetSeconds": 12, "windowSeconds": 60}}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{domain.NotFoundf("chat", "cht_x"), "not_found: chat cht_x does not exist"},
		{domain.Errorf(domain.Forbidden, "no"), "forbidden: no"},
		{domain.Invalidf("messages", "messages must not be empty"), "invalid_request: messages must not be empty"},
		{domain.Errorf(domain.Conflict, "busy"), "conflict: busy"},
		{&domain.Error{Kind: domain.RateLimited, Message: "slow down", RetryAfter: 1500 * time.Millisecond}, "rate_limited: slow down (retry after 2s)"},
		{keyLimit, "rate_limited: rate limit reached: 600 requests per minute for this API key; retry in 12s " +
			"(retry after 12s; limit key-requests-per-minute: 600 per 60s, 0 remaining, resets in 12s)"},
		{domain.Errorf(domain.TooLarge, "big"), "payload_too_large: big"},
		{&domain.Error{Kind: domain.Upstream, Message: "the AI provider failed", Err: fmt.Errorf("key sk-secret")}, "upstream_error: the AI provider failed"},
		{domain.Errorf(domain.Timeout, "late"), "upstream_timeout: late"},
		{domain.Errorf(domain.Unavailable, "down"), "unavailable: down"},
		{domain.Errorf(domain.Unauthenticated, "who"), "unauthenticated: who"},
	} {
		res, err := toolError(ctx, d, "t", tc.err)
		if err != nil || !res.IsError || text(res) != tc.want {
			t.Errorf("%v: got %v / %q, want tool error %q", tc.err, err, text(res), tc.want)
		}
	}
	// The provider failing is the operator's to know of at the default
	// level, as over REST, and a database that is down (unavailable, REST's
	// 503) is an error; what the caller must fix is a debug line.
	for _, line := range strings.Split(logs.String(), "\n") {
		if line == "" {
			continue
		}
		want := "level=DEBUG"
		switch {
		case strings.Contains(line, "kind=upstream_error") || strings.Contains(line, "kind=upstream_timeout"):
			want = "level=WARN"
		case strings.Contains(line, "kind=unavailable"):
			want = "level=ERROR"
		}
		if !strings.Contains(line, want) {
			t.Errorf("want %s: %s", want, line)
		}
	}
	internal := domain.Wrap("chats.Create", fmt.Errorf(`pq: relation "chats" violates; SELECT * FROM secrets`))
	res, err := toolError(ctx, d, "create-chat", internal)
	if res != nil || err == nil {
		t.Fatalf("internal: got %v, %v; want a protocol error", res, err)
	}
	if strings.Contains(err.Error(), "SELECT") || strings.Contains(err.Error(), "chats.Create") {
		t.Errorf("protocol error %q leaks its cause", err)
	}
	if !strings.Contains(logs.String(), "SELECT * FROM secrets") || !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("the cause was not logged at error level: %s", logs.String())
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := toolError(cctx, d, "t", domain.Wrap("x", context.Canceled)); err != errCanceled {
		t.Errorf("cancelled call: %v", err)
	}
}

// TestSSEStreamClosedCancelsCalls: over HTTP+SSE a call runs apart from the
// request that carried it, so it is the session's event stream closing
// that cancels it: the upstream sees its request cancelled and the usage
// is recorded as client_disconnect, as when a call's request closes over
// the other transports.
func TestSSEStreamClosedCancelsCalls(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"without Calls", Options{}},
		{"with Calls", Options{Calls: &Calls{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, dbtest.SQLite(t))
			s := e.connect(overSSE, "editor", tc.opts)
			// mcp-go's client sends no cancellation over SSE: only its
			// stream closing tells the server.
			checkCancel(t, e, callTool(e, s), func() { must(t, s.Close()) })
		})
	}
}

// TestSSESessionKeepAlive: a session's event stream that has nothing to
// send (no call, or a call whose upstream is quiet) gets an SSE comment
// each KeepAlive, as REST streams do, so that a proxy's idle timeout does
// not close it, which would cancel every call of the session.
func TestSSESessionKeepAlive(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	x := NewSSE(e.server(Options{}), e.svcs.Users.Authenticate, Limits{}, "", nil)
	x.KeepAlive = 100 * time.Millisecond
	hs := httptest.NewServer(x.Stream)
	defer hs.Close()
	req, _ := http.NewRequest("GET", hs.URL, nil)
	req.Header.Set("Authorization", "Bearer "+e.keys["editor"])
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res, err := http.DefaultClient.Do(req.WithContext(ctx))
	must(t, err)
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	var lines []string
	start := time.Now()
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == ": keep-alive" {
			if d := time.Since(start); d < 50*time.Millisecond {
				t.Errorf("the first keep-alive came after %v, before the stream was quiet for 100ms", d)
			}
			return
		}
	}
	t.Fatalf("no keep-alive within 3s on a quiet SSE session (keep-alive 100ms): %q", lines)
}

// TestSSESessionsPerUser: a user holds at most Limits.SSESessionsPerUser
// HTTP+SSE sessions at once; one more is a 429 with Retry-After, which
// holds no other user back, and a session closed frees its place. Without
// the cap any key could hold sessions, each a connection and a file
// descriptor kept open by keep-alives, until the server had none left.
func TestSSESessionsPerUser(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	x := NewSSE(e.server(Options{}), e.svcs.Users.Authenticate, Limits{SSESessionsPerUser: 2}, "", nil)
	hs := httptest.NewServer(x.Stream)
	t.Cleanup(hs.Close) // after the sessions' cleanups close them: Close waits for them
	open := func(user string) (*http.Response, context.CancelFunc) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL, nil)
		req.Header.Set("Authorization", "Bearer "+e.keys[user])
		res, err := http.DefaultClient.Do(req)
		must(t, err)
		t.Cleanup(func() { res.Body.Close() })
		return res, cancel
	}
	var first context.CancelFunc
	for i := range 2 {
		res, cancel := open("editor")
		if res.StatusCode != http.StatusOK {
			t.Fatalf("session %d of 2: %d", i+1, res.StatusCode)
		}
		if i == 0 {
			first = cancel
		}
	}
	res, _ := open("editor")
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a third session: %d, want 429", res.StatusCode)
	}
	body, _ := io.ReadAll(res.Body)
	if res.Header.Get("Retry-After") != "5" || !strings.Contains(string(body), `"rate_limited"`) || !strings.Contains(string(body), "PARLEY_MCP_SSE_SESSIONS_PER_USER") {
		t.Errorf("a third session: Retry-After %q, %s; want 5, rate_limited naming the limit", res.Header.Get("Retry-After"), body)
	}
	if res, _ := open("viewer"); res.StatusCode != http.StatusOK {
		t.Errorf("another user's session: %d, want 200", res.StatusCode)
	}
	// The server sees the first session end once its connection closes.
	first()
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, cancel := open("editor")
		if res.StatusCode == http.StatusOK {
			break
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("a session after one was closed: %d, want 200", res.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSSESessionEndsWithItsKey: an HTTP+SSE session whose key is revoked
// ends at the next keep-alive interval, freeing its place under the cap
// for the user's other keys; without that, a revoked (leaked) key's open
// sessions, kept alive by keep-alives, locked its user out of HTTP+SSE.
func TestSSESessionEndsWithItsKey(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	x := NewSSE(e.server(Options{}), e.svcs.Users.Authenticate, Limits{SSESessionsPerUser: 1}, "", nil)
	x.KeepAlive = 100 * time.Millisecond
	hs := httptest.NewServer(x.Stream)
	t.Cleanup(hs.Close)
	editor := e.principals["editor"].UserID
	leaked, err := e.svcs.Users.CreateAPIKey(e.ctx("editor"), editor, domain.APIKeyCreate{Name: "leaked"})
	must(t, err)
	get := func(key string) *http.Response {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		must(t, err)
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	res := get(leaked.Secret)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("a session: %d", res.StatusCode)
	}
	if other := get(e.keys["editor"]); other.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a second session at a cap of 1: %d, want 429", other.StatusCode)
	}
	_, err = e.svcs.Users.RevokeAPIKey(e.ctx("editor"), editor, leaked.ID)
	must(t, err)
	start := time.Now()
	if _, err := io.Copy(io.Discard, res.Body); err != nil {
		t.Fatalf("the revoked key's stream did not end: %v", err)
	}
	t.Logf("the stream ended %v after the revocation", time.Since(start))
	// The server frees the place as the handler returns, just after the
	// stream's end reaches the client.
	deadline := time.Now().Add(2 * time.Second)
	for get(e.keys["editor"]).StatusCode != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the user's other key got no session after the revoked key's ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBehindSameHostProxy checks that MCP over HTTP answers requests that a
// reverse proxy on the same host forwards to Parley's loopback address with
// the public Host header (Caddy's and Traefik's default, nginx's with
// proxy_set_header Host $host), as the REST API does. Every request is
// authenticated by its bearer key, so mcp-go's DNS rebinding protection,
// meant for servers without authentication, only breaks such deployments.
func TestBehindSameHostProxy(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	hs := e.httpServer(e.server(Options{}), 0) // listens on 127.0.0.1
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/mcp", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`},
		{"GET", "/sse", ""},
	} {
		req, err := http.NewRequest(tc.method, hs.URL+tc.path, strings.NewReader(tc.body))
		must(t, err)
		req.Host = "parley.example.com"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+e.keys["editor"])
		res, err := http.DefaultClient.Do(req)
		must(t, err)
		var b []byte
		if tc.method == "POST" {
			b, _ = io.ReadAll(res.Body)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s %s with Host parley.example.com: %d %s, want 200", tc.method, tc.path, res.StatusCode, b)
		}
	}
}

// TestStreamableSessionBelongsToItsUser checks that one user cannot cancel
// another user's call by posting notifications/cancelled with the other
// user's Mcp-Session-Id, as the SSE transport already refuses one user's
// messages in another's session.
func TestStreamableSessionBelongsToItsUser(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	hs := e.httpServer(e.server(Options{}), 0)
	post := func(ctx context.Context, user, session, body string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, "POST", hs.URL+"/mcp", strings.NewReader(body))
		must(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		req.Header.Set("Authorization", "Bearer "+e.keys[user])
		if session != "" {
			req.Header.Set(server.HeaderKeySessionID, session)
		}
		return http.DefaultClient.Do(req)
	}
	res, err := post(context.Background(), "editor", "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	must(t, err)
	res.Body.Close()
	sid := res.Header.Get(server.HeaderKeySessionID)
	if sid == "" {
		t.Fatal("initialize returned no session id")
	}

	started, canceled := e.upstream.hang()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create-chat-completion","arguments":{"aiProviderId":"` +
			e.provider.ID + `","messages":[{"role":"user","content":"wait"}]}}}`
		if res, err := post(ctx, "editor", sid, call); err == nil {
			var b bytes.Buffer
			_, _ = b.ReadFrom(res.Body)
			res.Body.Close()
		}
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream never got the request")
	}
	cancelBody := `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"not yours"}}`
	res, err = post(context.Background(), "outsider", sid, cancelBody)
	must(t, err)
	res.Body.Close()
	select {
	case <-canceled:
		t.Fatal("another user's notifications/cancelled cancelled the editor's call")
	case <-time.After(500 * time.Millisecond):
	}
	res, err = post(context.Background(), "editor", sid, cancelBody)
	must(t, err)
	res.Body.Close()
	select {
	case <-canceled:
	case <-time.After(2 * time.Second):
		t.Fatal("the editor's own notifications/cancelled did not cancel its call")
	}
	<-done
}

// TestStalledReaderIsCut: a client that keeps its connection but stops
// reading (its receive window full) must not hold an MCP stream, and
// what waits on it, for ever: a write that has not gone out after twice
// the keep-alive interval is cut, as on REST streams, and the stream ends
// as for a client that left. Over HTTP+SSE the stream is the session's
// (its calls' notifications and results); over streamable HTTP, a call's
// response stream.
func TestStalledReaderIsCut(t *testing.T) {
	for _, over := range []string{overSSE, overHTTP} {
		t.Run(over, func(t *testing.T) {
			e := newEnv(t, dbtest.SQLite(t))
			deltas := make([]string, 80)
			for i := range deltas {
				deltas[i] = strings.Repeat("x", 64<<10)
			}
			e.upstream.reply(deltas...)
			const keepAlive = 100 * time.Millisecond // writes are cut after 1s (the least)
			// mcp-go's transport logs to the default logger.
			var logs logtest.Buffer
			defer slog.SetDefault(slog.Default())
			slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
			srv := e.server(Options{})
			var open atomic.Int64 // requests being served
			count := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					open.Add(1)
					defer open.Add(-1)
					next.ServeHTTP(w, r)
				})
			}
			hs, hc, post := e.smallBufferServer(t, srv, over, keepAlive, count)
			initialize := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
			call := func(id int) string {
				return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"create-chat-completion",`+
					`"arguments":{"aiProviderId":"%s","messages":[{"role":"user","content":"hi"}]},"_meta":{"progressToken":%d}}}`, id, e.provider.ID, id)
			}
			var stalled io.ReadCloser // the stream the client stops reading
			if over == overSSE {
				var endpoint string
				stalled, endpoint = e.openSSE(t, hs, hc)
				for _, msg := range []string{initialize, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, call(1), call(2)} {
					post(endpoint, "", msg).Body.Close()
				}
			} else {
				res := post(hs.URL, "", initialize)
				res.Body.Close()
				stalled = post(hs.URL, res.Header.Get(server.HeaderKeySessionID), call(1)).Body
			}
			defer stalled.Close()
			// ...and the client reads no more.
			deadline := time.Now().Add(10 * time.Second)
			for open.Load() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the stream is still served 10s after its client stopped reading (keep-alive %v)", keepAlive)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// The client's doing, not Parley's fault: no error logged
			// (at the default level, nothing at all).
			if l := logs.String(); l != "" {
				t.Errorf("cutting the stream of a client that stopped reading logged:\n%.2000s", l)
			}
		})
	}
}

// TestSessionIDsLeaveNothing: the streamable HTTP transport keeps no state
// for a session id it is sent. mcp-go checks only an id's form, and with a
// session idle TTL it remembered every id it saw for that long: a caller
// with any valid key could grow the server by sending made-up ids.
func TestSessionIDsLeaveNothing(t *testing.T) {
	srv := newServer(&domain.Services{}, Options{})
	auth := func(context.Context, string) (domain.Principal, error) { return domain.Principal{UserID: "usr_x"}, nil }
	h := StreamableHTTPHandler(srv, auth, Limits{}, 0, nil)
	ping := func(session string) {
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
		req.Header.Set("Authorization", "Bearer k")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		req.Header.Set(server.HeaderKeySessionID, session)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("ping: %d %s", rec.Code, rec.Body)
		}
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// Session ids of a UUID's form, as mcp-go checks them.
	id := func(i int) string { return fmt.Sprintf("mcp-session-%08x-0000-4000-8000-%012x", i, i) }
	for i := range 1000 { // warm up
		ping(id(i))
	}
	before := heap()
	const n = 20_000
	for i := range n {
		ping(id(1000 + i))
	}
	after := heap()
	// mcp-go's TTL map held about 190 bytes per id.
	grown := int64(after) - int64(before)
	t.Logf("%d pings with distinct session ids: the heap grew by %d bytes", n, grown)
	if grown > n*32 {
		t.Errorf("%d pings with distinct session ids grew the heap by %d bytes (%d per id)", n, grown, grown/n)
	}
	runtime.KeepAlive(h)
}

// TestAbandonedSessionsLeaveNothing: clients that leave without ending
// their sessions (no DELETE over streamable HTTP, the event stream dropped
// over HTTP+SSE) after a streamed call leave no goroutine behind: a
// server that lives for months sees many of them.
func TestAbandonedSessionsLeaveNothing(t *testing.T) {
	for _, over := range []string{overHTTP, overHTTPLegacy, overSSE} {
		t.Run(over, func(t *testing.T) {
			e := newEnv(t, dbtest.SQLite(t))
			hs := e.httpServer(e.server(Options{}), 0)
			abandon := func(i int) {
				tr := &http.Transport{}
				hc := &http.Client{Transport: tr}
				auth := map[string]string{"Authorization": "Bearer " + e.keys["editor"]}
				var c *client.Client
				if over == overSSE {
					var err error
					c, err = client.NewSSEMCPClient(hs.URL+"/sse", client.WithHeaders(auth), client.WithHTTPClient(hc))
					must(t, err)
				} else {
					x, err := transport.NewStreamableHTTP(hs.URL+"/mcp", transport.WithHTTPHeaders(auth), transport.WithHTTPBasicClient(hc))
					must(t, err)
					var copts []client.ClientOption
					if over == overHTTPLegacy {
						//lint:ignore SA1019 this case tests the legacy (2025-06-18) protocol on purpose
						copts = append(copts, client.WithLegacyProtocolOnly())
					}
					c = client.NewClient(x, copts...)
				}
				must(t, c.Start(context.Background()))
				init := mcpgo.InitializeRequest{}
				init.Params.ClientInfo = mcpgo.Implementation{Name: "parley-test", Version: "1"}
				if over != overHTTP {
					init.Params.ProtocolVersion = "2025-06-18"
				}
				_, err := c.Initialize(context.Background(), init)
				must(t, err)
				s := &session{Client: c}
				res, err := s.callErr(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("hi")}, i)
				if err != nil || res.IsError {
					t.Fatalf("call %d: %v %v", i, err, res)
				}
				// The client goes: its connections close, and nothing
				// tells the server the session ended.
				if over == overSSE {
					must(t, c.GetTransport().(*transport.SSE).Close())
				}
				tr.CloseIdleConnections()
			}
			abandon(0) // the upstream's pooled connection, and the like, stay
			time.Sleep(200 * time.Millisecond)
			before := runtime.NumGoroutine()
			for i := 1; i <= 20; i++ {
				abandon(i)
			}
			after := runtime.NumGoroutine()
			for deadline := time.Now().Add(5 * time.Second); after > before && time.Now().Before(deadline); after = runtime.NumGoroutine() {
				time.Sleep(50 * time.Millisecond)
			}
			if after > before {
				var b strings.Builder
				_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
				t.Fatalf("%d goroutines before 20 abandoned sessions, %d 5s after:\n%s", before, after, b.String())
			}
		})
	}
}

// TestUnansweredMessageHoldsNoShutdown: mcp-go answers no message that
// carries a result, as a response would, even with a method and an id;
// over HTTP+SSE the shutdown waits (SSE.Close) for the responses a
// session's requests are owed, and must not wait for one that never comes.
func TestUnansweredMessageHoldsNoShutdown(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	x := NewSSE(e.server(Options{}), e.svcs.Users.Authenticate, Limits{}, "", nil)
	mux := http.NewServeMux()
	mux.Handle("/sse", x.Stream)
	mux.Handle("/message", x.Message)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/sse", nil)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+e.keys["editor"])
	res, err := http.DefaultClient.Do(req)
	must(t, err)
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "data: ") {
	}
	endpoint := hs.URL + strings.TrimPrefix(sc.Text(), "data: ")
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":9,"method":"tools/list","result":{}}`,
	} {
		req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(msg))
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+e.keys["editor"])
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		must(t, err)
		res.Body.Close()
	}
	time.Sleep(200 * time.Millisecond) // initialize's response is written
	wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
	defer wcancel()
	if err := x.Close(wctx); err != nil {
		t.Fatalf("SSE.Close with only an unanswerable message sent: %v; want it to wait for nothing", err)
	}
}

// TestSlowReaderIsNotCut: a client that reads, only slowly, is not taken
// for one that stopped: a large result that takes longer than the stall
// bound to go out, but keeps going out, arrives whole.
func TestSlowReaderIsNotCut(t *testing.T) {
	for _, over := range []string{overSSE, overHTTP} {
		t.Run(over, func(t *testing.T) {
			e := newEnv(t, dbtest.SQLite(t))
			content := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
			doc, err := e.svcs.Documents.Create(e.ctx("editor"), domain.DocumentCreate{ProjectID: e.project.ID, Name: "big", Content: content})
			must(t, err)
			const keepAlive = 100 * time.Millisecond // writes are cut after 1s (the least)
			srv := e.server(Options{})
			hs, hc, post := e.smallBufferServer(t, srv, over, keepAlive, func(h http.Handler) http.Handler { return h })
			initialize := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
			get := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-document","arguments":{"documentId":"` + doc.ID + `"}}}`
			var body io.ReadCloser
			if over == overSSE {
				var endpoint string
				body, endpoint = e.openSSE(t, hs, hc)
				for _, msg := range []string{initialize, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, get} {
					res := post(endpoint, "", msg)
					res.Body.Close()
					if res.StatusCode >= 300 {
						t.Fatalf("posting %.60s… = %d", msg, res.StatusCode)
					}
				}
			} else {
				res := post(hs.URL, "", initialize)
				res.Body.Close()
				body = post(hs.URL, res.Header.Get(server.HeaderKeySessionID), get).Body
			}
			defer body.Close()
			// Read 16 KiB every 25ms: about 640 KB/s, so that the
			// result takes some 1.6s, longer than the stall bound.
			var got bytes.Buffer
			buf := make([]byte, 16<<10)
			start := time.Now()
			for !strings.Contains(got.String(), `"id":1,`) || !strings.HasSuffix(strings.TrimRight(got.String(), "\r\n"), "}") {
				n, err := body.Read(buf)
				got.Write(buf[:n])
				if err == io.EOF && over == overHTTP { // the response is the result alone
					break
				}
				if err != nil {
					t.Fatalf("after %d bytes in %v: %v", got.Len(), time.Since(start), err)
				}
				if time.Since(start) > time.Minute { // keep-alives alone would keep this loop reading
					t.Fatalf("no result after %v (%d bytes read): %.300s", time.Since(start), got.Len(), got.String())
				}
				time.Sleep(25 * time.Millisecond)
			}
			if !strings.Contains(got.String(), content) {
				t.Fatalf("the result (%d bytes) lacks the document's content", got.Len())
			}
			if d := time.Since(start); d < 1200*time.Millisecond {
				t.Fatalf("the result took only %v: the test did not read slower than the stall bound, and shows nothing", d)
			}
		})
	}
}

// readLine reads one line of r, a byte at a time (r is read on later).
func readLine(t *testing.T, r io.Reader) string {
	t.Helper()
	var b []byte
	c := make([]byte, 1)
	for {
		if _, err := r.Read(c); err != nil {
			t.Fatal(err)
		}
		if c[0] == '\n' {
			return strings.TrimRight(string(b), "\r")
		}
		b = append(b, c[0])
	}
}

// TestTransportLogLevels: of mcp-go's streamable HTTP transport's log,
// Parley keeps the warnings and errors, but an error the client caused is
// a debug line, shown only at PARLEY_LOG_LEVEL=debug.
func TestTransportLogLevels(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var out logtest.Buffer
		log := slog.New(transportLog{slog.NewTextHandler(&out, &slog.HandlerOptions{Level: level})})
		log.Info("Rejected GET request: streaming is disabled")
		log.Error("Failed to write SSE event during drain", "err", "write: broken pipe")
		log.Error("Failed to handle sampling response", "err", "no active session")
		log.Error("Failed to register POST session", "err", "boom")
		log.Warn("failed to terminate session during CloseSessions")
		want := []string{
			`level=ERROR msg="Failed to register POST session"`,
			`level=WARN msg="failed to terminate session during CloseSessions"`,
		}
		if level == slog.LevelDebug {
			want = append([]string{
				`level=DEBUG msg="Failed to write SSE event during drain"`,
				`level=DEBUG msg="Failed to handle sampling response"`,
			}, want...)
		}
		got := regexp.MustCompile(`level=\w+ msg="[^"]*"`).FindAllString(out.String(), -1)
		if !slices.Equal(got, want) {
			t.Errorf("at %v: logged\n%s\nwant lines starting\n%s", level, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// openSSE opens the editor's HTTP+SSE session on hs with hc: its event
// stream, read up to the endpoint event and no further, and the URL of
// that endpoint, to post the session's messages to.
func (e *env) openSSE(t *testing.T, hs *httptest.Server, hc *http.Client) (stream io.ReadCloser, endpoint string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, hs.URL+"/sse", nil)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+e.keys["editor"])
	res, err := hc.Do(req)
	must(t, err)
	for line := ""; !strings.HasPrefix(line, "data: "); {
		line = readLine(t, res.Body)
		endpoint = hs.URL + strings.TrimPrefix(line, "data: ")
	}
	return res.Body, endpoint
}

// smallBufferServer serves srv over the transport named by over (HTTP+SSE,
// else streamable HTTP) with keepAlive, its stream handler wrapped in
// wrap, on a listener and for a client whose socket buffers are small, as
// a slow network's: the server's writes soon wait for the client to read.
// post sends the editor's JSON-RPC message body to url, in session when
// it is not "".
func (e *env) smallBufferServer(t *testing.T, srv *server.MCPServer, over string, keepAlive time.Duration,
	wrap func(http.Handler) http.Handler) (hs *httptest.Server, hc *http.Client, post func(url, session, body string) *http.Response) {
	t.Helper()
	var h http.Handler
	if over == overSSE {
		x := NewSSE(srv, e.svcs.Users.Authenticate, Limits{}, "", nil)
		x.KeepAlive = keepAlive
		mux := http.NewServeMux()
		mux.Handle("/sse", wrap(x.Stream))
		mux.Handle("/message", x.Message)
		h = mux
	} else {
		h = wrap(StreamableHTTPHandler(srv, e.svcs.Users.Authenticate, Limits{}, keepAlive, nil))
	}
	hs = httptest.NewUnstartedServer(h)
	hs.Listener = smallBuffers{hs.Listener}
	hs.Start()
	t.Cleanup(hs.Close)
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, smallBuffer)
		})
	}}
	hc = &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
	post = func(url, session, body string) *http.Response {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+e.keys["editor"])
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		if session != "" {
			req.Header.Set(server.HeaderKeySessionID, session)
		}
		res, err := hc.Do(req)
		must(t, err)
		return res
	}
	return hs, hc, post
}

// TestStdioCallsLogTheirRequestID: a call over stdio has no HTTP request
// to take an id from, so it gets one of its own, named first on the lines
// logged in its course; each call another.
func TestStdioCallsLogTheirRequestID(t *testing.T) {
	e := newEnv(t, dbtest.SQLite(t))
	s := e.connect(overStdio, "editor", Options{})
	for range 2 {
		e.upstream.Enqueue(llmtest.Behavior{Status: 500})
		s.fails(t, "create-chat-completion", obj{"aiProviderId": e.provider.ID, "messages": userMsg("x")}, "upstream_error")
	}
	idOf := regexp.MustCompile(`^time=\S+ level=\S+ msg=("[^"]*"|\S+) request_id=(req_[0-9a-f]{24}) `)
	// Each call logs two lines: Parley's, and mcp-go's mcp.tool line.
	ids := map[string]int{}
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if !strings.Contains(line, "mcp tool call: upstream failed") && !strings.Contains(line, "msg=mcp.tool ") {
			continue
		}
		m := idOf.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("a call's line names no request id first: %s", line)
			continue
		}
		ids[m[2]]++
	}
	if len(ids) != 2 || slices.Max(slices.Collect(maps.Values(ids))) != 2 {
		t.Errorf("two failed calls' lines name request ids %v, want two, each twice:\n%s", ids, e.logs.String())
	}
}

// TestGuardRefusesAsREST: a key the authenticator cannot check gets the
// status REST gives the same kind (one table, wire.Status), and is logged
// at the level REST logs it (domain.LogLevel): a database that does not
// answer as an error, a client that left at debug.
func TestGuardRefusesAsREST(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		level  string
	}{
		{domain.Errorf(domain.Unavailable, "the database does not answer"), 503, "level=ERROR"},
		{errors.New("disk I/O error"), 500, "level=ERROR"},
		{domain.Errorf(domain.Canceled, "the client left"), 499, "level=DEBUG"},
		{domain.Errorf(domain.Conflict, "the key is being rotated"), 409, "level=DEBUG"},
		{domain.Errorf(domain.RateLimited, "too many attempts"), 429, "level=DEBUG"},
	} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		auth := func(context.Context, string) (domain.Principal, error) { return domain.Principal{}, tc.err }
		h := guard(auth, log, Limits{}, http.MethodPost, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			t.Error("the guard let the request through")
		}))
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer k")
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status || !strings.Contains(logs.String(), tc.level) || !strings.Contains(logs.String(), "mcp authentication failed") {
			t.Errorf("%v: %d, logged %q; want %d, logged at %s", tc.err, rec.Code, logs.String(), tc.status, tc.level)
		}
	}
}
