package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/logtest"
	"github.com/parleyhq/parley/internal/requestid"
	"github.com/parleyhq/parley/policy"
	"github.com/parleyhq/parley/secret"
	"github.com/parleyhq/parley/store"
)

// env is a Parley with real services over a real store, a fake upstream
// speaking the OpenAI wire protocol over HTTP, and seeded users:
//
//	admin     system admin
//	editor    editor of project
//	viewer    viewer of project
//	outsider  owner of otherProject only
type env struct {
	t        *testing.T
	deps     domain.Deps
	svcs     *domain.Services
	store    *store.Store
	upstream *upstream
	logs     *logtest.Buffer
	// onRequest, when set, is mcp-go's first OnRequestInitialization
	// hook in the servers e makes: it runs before Parley's own.
	onRequest server.OnRequestInitializationFunc
	// keepAlive is the keep-alive interval of the HTTP servers e makes
	// (0: the default).
	keepAlive time.Duration
	// bodyTimeout bounds the wait for a request's body in the HTTP
	// servers e makes (0: the default).
	bodyTimeout time.Duration
	// origins are the browser origins the HTTP transports take besides
	// loopback ones (Limits.Origins).
	origins []string
	// maxStdioBytes is the message limit of the stdio servers e makes
	// (0: the default).
	maxStdioBytes int64

	keys       map[string]string // user name → API key
	principals map[string]domain.Principal

	project, otherProject   *domain.Project
	provider, otherProvider *domain.AIProvider
	otherChat               *domain.Chat
	document                *domain.Document
}

func newEnv(t *testing.T, st *store.Store) *env {
	t.Helper()
	ctx := context.Background()
	authz, err := policy.New()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: st, upstream: newUpstream(t), logs: &logtest.Buffer{}, keys: map[string]string{}, principals: map[string]domain.Principal{}}
	e.useAuthorizer(authz)

	adminKey := domain.NewAPIKeySecret()
	must(t, e.svcs.Users.EnsureAdminKey(ctx, adminKey))
	e.addPrincipal("admin", adminKey)
	admin := e.ctx("admin")
	for _, name := range []string{"editor", "viewer", "outsider"} {
		u, err := e.svcs.Users.Create(admin, domain.UserCreate{Name: name})
		must(t, err)
		k, err := e.svcs.Users.CreateAPIKey(admin, u.ID, domain.APIKeyCreate{Name: "test"})
		must(t, err)
		e.addPrincipal(name, k.Secret)
	}

	e.project, err = e.svcs.Projects.Create(admin, domain.ProjectCreate{Name: "Main", Description: "the project under test"})
	must(t, err)
	_, err = e.svcs.Projects.PutMember(admin, e.project.ID, e.principals["editor"].UserID, domain.RoleEditor)
	must(t, err)
	_, err = e.svcs.Projects.PutMember(admin, e.project.ID, e.principals["viewer"].UserID, domain.RoleViewer)
	must(t, err)
	e.provider, err = e.svcs.Providers.Create(admin, domain.ProviderCreate{ProjectID: e.project.ID, Name: "fake",
		Type: domain.ProviderOpenAICompatible, BaseURL: e.upstream.URL(), DefaultModel: "fake-model", APIKey: "sk-test-0123456789abcdef"})
	must(t, err)
	e.document, err = e.svcs.Documents.Create(admin, domain.DocumentCreate{ProjectID: e.project.ID, Name: "facts",
		Content: "Parley stores conversations.", MimeType: "text/plain"})
	must(t, err)

	out := e.ctx("outsider")
	e.otherProject, err = e.svcs.Projects.Create(out, domain.ProjectCreate{Name: "Other"})
	must(t, err)
	e.otherProvider, err = e.svcs.Providers.Create(out, domain.ProviderCreate{ProjectID: e.otherProject.ID, Name: "theirs",
		Type: domain.ProviderOpenAICompatible, BaseURL: e.upstream.URL(), DefaultModel: "fake-model", APIKey: "sk-test-fedcba9876543210"})
	must(t, err)
	e.otherChat, err = e.svcs.Chats.Create(out, domain.ChatCreate{ProjectID: e.otherProject.ID, AIProviderID: e.otherProvider.ID, Name: "secret plans"})
	must(t, err)
	return e
}

// useAuthorizer makes e's services decide permissions with authz, over
// the same store and upstream.
func (e *env) useAuthorizer(authz domain.Authorizer) {
	kr, err := secret.NewKeyring(make([]byte, 32))
	must(e.t, err)
	e.deps = domain.Deps{Store: e.store, Authz: authz, Sealer: kr, LLM: e.upstream.llm(),
		AllowPrivateUpstreams: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	e.svcs = domain.NewServices(e.deps)
}

// configure makes e's services anew over the same store, upstream and
// authorizer, with deps changed by f.
func (e *env) configure(f func(*domain.Deps)) {
	f(&e.deps)
	e.svcs = domain.NewServices(e.deps)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) addPrincipal(name, key string) {
	p, err := e.svcs.Users.Authenticate(context.Background(), key)
	must(e.t, err)
	e.keys[name], e.principals[name] = key, p
}

// ctx returns a context acting as the named user, for seeding.
func (e *env) ctx(name string) context.Context {
	return domain.WithPrincipal(context.Background(), e.principals[name])
}

// supportChat makes a chat named "support" on e's project and provider.
func (e *env) supportChat() *domain.Chat {
	e.t.Helper()
	chat, err := e.svcs.Chats.Create(e.ctx("admin"), domain.ChatCreate{ProjectID: e.project.ID, AIProviderID: e.provider.ID, Name: "support"})
	must(e.t, err)
	return chat
}

// server returns Parley's MCP server; it validates every structured result
// against the tool's output schema, so a result that breaks its schema
// fails the test as an error result.
func (e *env) server(opts Options) *server.MCPServer {
	if opts.Logger == nil {
		opts.Logger = newTestLogger(e.logs)
	}
	srv := newServer(e.svcs, opts, server.WithOutputSchemaValidation())
	if e.onRequest != nil {
		h := srv.GetHooks()
		if h == nil {
			h = &server.Hooks{}
			server.WithHooks(h)(srv)
		}
		h.OnRequestInitialization = append([]server.OnRequestInitializationFunc{e.onRequest}, h.OnRequestInitialization...)
	}
	return srv
}

// httpServer serves the MCP HTTP transports as cmd/parley mounts them.
func (e *env) httpServer(srv *server.MCPServer, maxBody int64) *httptest.Server {
	mux := http.NewServeMux()
	lim := Limits{MaxBodyBytes: maxBody, BodyTimeout: e.bodyTimeout, Origins: e.origins}
	mux.Handle("/mcp", StreamableHTTPHandler(srv, e.svcs.Users.Authenticate, lim, e.keepAlive, nil))
	x := NewSSE(srv, e.svcs.Users.Authenticate, lim, "", nil)
	x.KeepAlive = e.keepAlive
	sse, msg := x.Stream, x.Message
	mux.Handle("/sse", sse)
	mux.Handle("/message", msg)
	hs := httptest.NewServer(mux)
	e.t.Cleanup(hs.Close)
	return hs
}

// transports a test can connect over.
const (
	overHTTP       = "streamable-http"
	overHTTPLegacy = "streamable-http-2025-06-18"
	overSSE        = "sse"
	overStdio      = "stdio"
)

// session is a client connected as one user, with the progress
// notifications it received.
type session struct {
	*client.Client
	wire     *wireLog
	mu       sync.Mutex
	progress map[any][]progressEvent
	// init is the server's answer to initialize.
	init *mcpgo.InitializeResult
}

type progressEvent struct {
	Progress float64
	Message  string
}

// connect starts a client session as user over the named transport.
func (e *env) connect(over, user string, opts Options) *session {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv := e.server(opts)
	auth := map[string]string{"Authorization": "Bearer " + e.keys[user]}
	wire := &wireLog{}
	hc := &http.Client{Transport: wire.tap(http.DefaultTransport)}
	var c *client.Client
	var err error
	switch over {
	case overHTTP, overHTTPLegacy:
		hs := e.httpServer(srv, 0)
		var copts []client.ClientOption
		if over == overHTTPLegacy {
			//lint:ignore SA1019 this case tests the legacy (2025-06-18) protocol on purpose
			copts = append(copts, client.WithLegacyProtocolOnly())
		}
		tr, terr := transport.NewStreamableHTTP(hs.URL+"/mcp", transport.WithHTTPHeaders(auth), transport.WithHTTPBasicClient(hc))
		must(t, terr)
		c = client.NewClient(tr, copts...)
	case overSSE:
		hs := e.httpServer(srv, 0)
		c, err = client.NewSSEMCPClient(hs.URL+"/sse", client.WithHeaders(auth), client.WithHTTPClient(hc))
		must(t, err)
	case overStdio:
		c = e.stdioClient(srv, e.keyCaller(user), wire)
	default:
		t.Fatalf("unknown transport %q", over)
	}
	s := &session{Client: c, wire: wire, progress: map[any][]progressEvent{}}
	c.OnNotification(func(n mcpgo.JSONRPCNotification) {
		if n.Method != string(mcpgo.MethodNotificationProgress) {
			return
		}
		f := n.Params.AdditionalFields
		p, _ := f["progress"].(float64)
		m, _ := f["message"].(string)
		s.mu.Lock()
		s.progress[tokenKey(f["progressToken"])] = append(s.progress[tokenKey(f["progressToken"])], progressEvent{p, m})
		s.mu.Unlock()
	})
	// The SSE transport's stream lives as long as Start's context.
	must(t, c.Start(context.Background()))
	t.Cleanup(func() { _ = c.Close() })
	init := mcpgo.InitializeRequest{}
	init.Params.ClientInfo = mcpgo.Implementation{Name: "parley-test", Version: "1"}
	if over != overHTTP {
		init.Params.ProtocolVersion = "2025-06-18"
	}
	res, err := c.Initialize(ctx, init)
	if err != nil {
		t.Fatalf("initialize over %s: %v", over, err)
	}
	s.init = res
	return s
}

// keyCaller is the Caller of `parley mcp` started with user's API key.
func (e *env) keyCaller(user string) Caller {
	key := e.keys[user]
	return func(ctx context.Context) (domain.Principal, error) { return e.svcs.Users.Authenticate(ctx, key) }
}

// stdioMu serialises stdio sessions: mcp-go keeps one stdio session per
// process.
var stdioMu sync.Mutex

// stdioClient serves srv over stdio to a client, whose responses are
// recorded in wire (nil: none).
func (e *env) stdioClient(srv *server.MCPServer, caller Caller, wire *wireLog) *client.Client {
	stdioMu.Lock()
	serverIn, clientOut := io.Pipe()
	clientIn, serverOut := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeStdio(ctx, srv, caller, e.maxStdioBytes, serverIn, serverOut, newTestLogger(e.logs))
	}()
	e.t.Cleanup(func() {
		_ = clientOut.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("ServeStdio: %v", err)
			}
		case <-time.After(5 * time.Second):
			e.t.Errorf("ServeStdio did not return after its input closed")
		}
		_ = serverOut.Close()
		stdioMu.Unlock()
	})
	var in io.Reader = clientIn
	if wire != nil {
		in = &lineFilter{r: clientIn, keep: wire.seen}
	}
	return client.NewClient(transport.NewIO(in, clientOut, io.NopCloser(strings.NewReader(""))))
}

// wireLog records the JSON-RPC responses a client read off the wire, by
// id: mcp-go's client drops a response to an id it is not waiting for
// without a word.
type wireLog struct {
	mu        sync.Mutex
	responses map[string]string // idKey → the response
}

// seen records line, a line of JSON-RPC messages or of an event stream,
// if it is a response, and keeps every line.
func (l *wireLog) seen(line []byte) bool {
	line = bytes.TrimSpace(bytes.TrimPrefix(line, []byte("data:")))
	if m, ok := readJSONRPC(line); ok && m.Method == "" {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.responses == nil {
			l.responses = map[string]string{}
		}
		l.responses[idKey(m.ID)] = string(line)
	}
	return true
}

// response returns the response to the request with the given id, if the
// client received one.
func (l *wireLog) response(id any) (string, bool) {
	b, err := json.Marshal(id)
	if err != nil {
		return "", false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.responses[idKey(b)]
	return r, ok
}

// tap returns an HTTP transport over base whose response bodies are
// recorded in l as they are read.
func (l *wireLog) tap(base http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		res, err := base.RoundTrip(r)
		if err == nil {
			res.Body = struct {
				io.Reader
				io.Closer
			}{&lineFilter{r: res.Body, keep: l.seen}, res.Body}
		}
		return res, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// tokenKey normalises a progress token: JSON numbers decode as float64.
func tokenKey(v any) any {
	if f, ok := v.(float64); ok {
		return int64(f)
	}
	return v
}

func (s *session) notes(token any) []progressEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]progressEvent(nil), s.progress[tokenKey(token)]...)
}

// call runs a tool and returns its result; protocol errors fail the test.
func (s *session) call(t *testing.T, name string, args any) *mcpgo.CallToolResult {
	t.Helper()
	res, err := s.callErr(t, name, args, nil)
	if err != nil {
		t.Fatalf("%s: protocol error: %v", name, err)
	}
	return res
}

func (s *session) callErr(t *testing.T, name string, args any, token any) (*mcpgo.CallToolResult, error) {
	t.Helper()
	// Generous: a result of megabytes under -race on a loaded machine took
	// over 20s; a call that hangs still fails.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return s.callCtx(ctx, name, args, token)
}

func (s *session) callCtx(ctx context.Context, name string, args any, token any) (*mcpgo.CallToolResult, error) {
	req := mcpgo.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	if token != nil {
		req.Params.Meta = &mcpgo.Meta{ProgressToken: token}
	}
	return s.CallTool(ctx, req)
}

// ok runs a tool that must succeed and decodes its structured content into out.
func (s *session) ok(t *testing.T, name string, args any, out any) *mcpgo.CallToolResult {
	t.Helper()
	res := s.call(t, name, args)
	if res.IsError {
		t.Fatalf("%s(%v): error result: %s", name, args, text(res))
	}
	decode(t, res, out)
	return res
}

// fails runs a tool that must fail with an error result whose text starts
// with code, and returns the text.
func (s *session) fails(t *testing.T, name string, args any, code string) string {
	t.Helper()
	res := s.call(t, name, args)
	msg := text(res)
	if !res.IsError {
		t.Fatalf("%s(%v): want a %s error result, got success: %s", name, args, code, msg)
	}
	if !strings.HasPrefix(msg, code+": ") {
		t.Fatalf("%s(%v): error text %q does not start with %q", name, args, msg, code+": ")
	}
	return msg
}

func decode(t *testing.T, res *mcpgo.CallToolResult, out any) {
	t.Helper()
	if out == nil {
		return
	}
	if res.StructuredContent == nil {
		t.Fatalf("result has no structured content: %s", text(res))
	}
	b, err := json.Marshal(res.StructuredContent)
	must(t, err)
	must(t, json.Unmarshal(b, out))
}

// text returns the result's text content.
func text(res *mcpgo.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(mcpgo.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// newTestLogger logs to w at debug level, naming request ids as
// cmd/parley's logger does.
func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(requestid.LogHandler(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
}
