// Package rest serves Parley's REST API with Echo. Handlers are thin: they
// decode, call one domain service method, and encode.
package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/requestid"
	"github.com/parleyhq/parley/internal/slowclient"
	"github.com/parleyhq/parley/internal/wire"
)

// Config configures the REST server.
type Config struct {
	// MaxBodyBytes caps every request body (PARLEY_MAX_BODY_BYTES).
	MaxBodyBytes int64
	// Ready reports whether the server can take traffic (for /readyz).
	Ready func(ctx context.Context) error
	// KeepAlive is the interval of SSE comment keep-alives, the first
	// counted from the request; 0 means 15s.
	KeepAlive time.Duration
	// RequestTimeout bounds every API request but completions (which run
	// as long as their stream, under the upstream's timeouts; the domain
	// bounds their lookups), so that a database that hangs answers 503 in
	// time instead of holding requests as long as their clients wait; 0
	// means 30s. It bounds, too, the wait for any request's body,
	// completions' included.
	RequestTimeout time.Duration
	// Origins are the browser origins, besides loopback ones, whose
	// pages may call the API (PARLEY_ALLOWED_ORIGINS): see cors.
	Origins []string
	// Metrics, when set, observes every request and open stream.
	Metrics Observer
	Logger  *slog.Logger
}

// Observer receives request and stream metrics; metrics.Metrics is one.
type Observer interface {
	ObserveRequest(route, method string, status int, d time.Duration)
	StreamOpened()
	StreamClosed()
}

// Server is the REST API over the domain services.
type Server struct {
	svcs *domain.Services
	cfg  Config
	log  *slog.Logger
	echo *echo.Echo

	// staticAllow holds the Allow header of each API path without
	// parameters, for shadowedStatic.
	staticAllow map[string]string
	// ownBodyLimit holds the paths mounted with Handle, whose handlers
	// cap bodies themselves (limitBody leaves them alone).
	ownBodyLimit map[string]bool
}

// New builds the REST API. Mount extra handlers (MCP, metrics) with Handle.
func New(svcs *domain.Services, cfg Config) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = domain.DefaultMaxBodyBytes
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = domain.DefaultKeepAlive
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = domain.DefaultRequestTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Path parameters are read percent-decoded, as query parameters are:
	// /projects/%70rj_… names prj_…. Routes still match the path as sent,
	// so an escaped slash in an id cannot reach another route.
	router := echo.NewRouter(echo.RouterConfig{UnescapePathParamValues: true})
	s := &Server{svcs: svcs, cfg: cfg, log: cfg.Logger, echo: echo.NewWithConfig(echo.Config{Router: router})}
	e := s.echo
	// Echo v5 logs (as JSON on stdout, by default) only a response's status
	// sent twice, which v4 logged below its level, that is never. Parley's
	// access log and error handler say what happened to each request;
	// Echo's lines would be in another form, without the request id, and
	// stdout is the protocol of `parley mcp`, which builds this server too.
	e.Logger = slog.New(slog.DiscardHandler)
	e.HTTPErrorHandler = s.handleError
	e.JSONSerializer = sendingSerializer{stall: s.stallAfter()}
	// CORS before the body's checks, so that a page can read their 413.
	e.Use(s.requestID, s.accessLog, s.recoverPanics, cors(cfg.Origins), s.bodyDeadline, s.limitBody, s.apiRoutes)

	get(e, "/healthz", func(c *echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	get(e, "/readyz", s.handleReady)
	get(e, "/openapi.json", handleOpenAPI)

	api := e.Group(apiPrefix) // its middleware is apiRoutes, see there
	get(api, "/me", noQuery(s.handleMe))
	get(api, "/users", s.handleUserList)
	api.POST("/users", noQuery(s.handleUserCreate))
	get(api, "/users/:userId/api-keys", s.handleAPIKeyList)
	api.POST("/users/:userId/api-keys", noQuery(s.handleAPIKeyCreate))
	api.DELETE("/users/:userId/api-keys/:keyId", noQuery(s.handleAPIKeyRevoke))

	get(api, "/projects", s.handleProjectList)
	api.POST("/projects", noQuery(s.handleProjectCreate))
	get(api, "/projects/:projectId", noQuery(s.handleProjectGet))
	api.PATCH("/projects/:projectId", noQuery(s.handleProjectUpdate))
	api.DELETE("/projects/:projectId", noQuery(s.handleProjectDelete))
	get(api, "/projects/:projectId/members", s.handleMemberList)
	api.PUT("/projects/:projectId/members/:userId", noQuery(s.handleMemberPut))
	api.DELETE("/projects/:projectId/members/:userId", noQuery(s.handleMemberDelete))
	get(api, "/projects/:projectId/usage", s.handleUsageGet)
	get(api, "/projects/:projectId/limits", noQuery(s.handleLimitsGet))
	api.PUT("/projects/:projectId/limits", noQuery(s.handleLimitsPut))

	get(api, "/ai-providers", s.handleProviderList)
	api.POST("/ai-providers", noQuery(s.handleProviderCreate))
	get(api, "/ai-providers/:providerId", noQuery(s.handleProviderGet))
	api.PATCH("/ai-providers/:providerId", noQuery(s.handleProviderUpdate))
	api.DELETE("/ai-providers/:providerId", noQuery(s.handleProviderDelete))

	get(api, "/documents", s.handleDocumentList)
	api.POST("/documents", noQuery(s.handleDocumentCreate))
	get(api, "/documents/:documentId", noQuery(s.handleDocumentGet))
	api.PATCH("/documents/:documentId", noQuery(s.handleDocumentUpdate))
	api.DELETE("/documents/:documentId", noQuery(s.handleDocumentDelete))

	get(api, "/chats", s.handleChatList)
	api.POST("/chats", noQuery(s.handleChatCreate))
	api.POST("/chats/completions", s.handleStatelessCompletion)
	get(api, "/chats/:chatId", noQuery(s.handleChatGet))
	api.PATCH("/chats/:chatId", noQuery(s.handleChatUpdate))
	api.DELETE("/chats/:chatId", noQuery(s.handleChatDelete))
	api.POST("/chats/:chatId/completions", s.handleChatCompletion)
	// The same at the paths OpenAI's SDKs post to, {baseURL}/chat/completions
	// (see openai.go).
	api.POST("/chat/completions", s.handleStatelessCompletion)
	api.POST("/chats/:chatId/chat/completions", s.handleChatCompletion)
	// A provider's models where the same SDKs ask for them (models.go).
	get(api, "/models", s.handleModelList)
	get(api, "/models/*", s.handleModel)
	get(api, "/chats/:chatId/models", s.handleChatModelList)
	get(api, "/chats/:chatId/models/*", s.handleChatModel)

	get(api, "/conversations", s.handleConversationList)
	get(api, "/conversations/:conversationId", noQuery(s.handleConversationGet))
	get(api, "/conversations/:conversationId/messages", s.handleConversationMessages)
	api.DELETE("/conversations/:conversationId", noQuery(s.handleConversationDelete))
	s.staticAllow = staticAllow(e.Router().Routes())
	return s
}

// noQuery refuses a query string on an endpoint that reads none, as
// knownQuery does a list's unknown parameters: a DELETE sent with
// ?dryRun=true would otherwise delete without a word. Completions are
// left to take one, which an SDK's defaultQuery may add.
func noQuery(h echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if c.Request().URL.RawQuery != "" {
			if err := knownQuery(c); err != nil {
				return err
			}
		}
		return h(c)
	}
}

// router is where routes are added: the server or a group of it.
type router interface {
	Match(methods []string, path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) echo.Routes
}

// get routes GET and HEAD at path to h. HTTP requires a server to answer
// HEAD wherever it answers GET (RFC 9110, section 9.3.2), and monitors and
// link checkers send it; net/http sends a HEAD response's headers, its
// Content-Length included, and drops its body.
func get(r router, path string, h echo.HandlerFunc) {
	r.Match([]string{http.MethodGet, http.MethodHead}, path, h)
}

// staticAllow maps each API path without parameters to the methods it
// takes, as Echo's Allow header lists them.
func staticAllow(routes echo.Routes) map[string]string {
	methods := map[string][]string{}
	for _, r := range routes {
		if strings.HasPrefix(r.Path, apiPrefix+"/") && !strings.ContainsAny(r.Path, ":*") {
			methods[r.Path] = append(methods[r.Path], r.Method)
		}
	}
	allow := make(map[string]string, len(methods))
	for p, ms := range methods {
		slices.Sort(ms)
		allow[p] = strings.Join(append([]string{http.MethodOptions}, ms...), ", ")
	}
	return allow
}

// shadowedStatic answers 405 when a path that has a route of its own
// reached a route with a parameter because its own does not take the
// method: GET /chats/completions matches GET /chats/:chatId, which would
// say that chat "completions" does not exist.
func (s *Server) shadowedStatic(c *echo.Context) error {
	allow, ok := s.staticAllow[c.Request().URL.Path]
	if !ok || c.Path() == c.Request().URL.Path {
		return nil
	}
	c.Response().Header().Set(echo.HeaderAllow, allow)
	return echo.ErrMethodNotAllowed
}

// Handle mounts h at path for the methods of handleMethods, outside the
// API's auth and body limit, inside request ids and logs: h checks and
// caps requests itself, as MCP's guard does (its Origin check comes
// first, and an allowed browser page must get CORS headers on a 413 too).
// Call it before serving.
func (s *Server) Handle(path string, h http.Handler) {
	if s.ownBodyLimit == nil {
		s.ownBodyLimit = map[string]bool{}
	}
	s.ownBodyLimit[path] = true
	s.echo.Match(handleMethods, path, echo.WrapHandler(h))
}

// handleMethods are the methods Handle routes to its handler: those HTTP
// and WebDAV define, which Echo v4's Any registered. Echo v5's Any takes
// every method, so QUERY or a made-up one would reach the handler rather
// than get the 405 and Allow header that the rest of the API answers.
var handleMethods = []string{
	http.MethodConnect, http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodOptions,
	http.MethodPatch, http.MethodPost, echo.PROPFIND, http.MethodPut, http.MethodTrace, echo.REPORT,
}

// HandleGet mounts h at path for GET and HEAD only, as Handle does
// otherwise: a read-only endpoint (metrics) answers other methods 405.
func (s *Server) HandleGet(path string, h http.Handler) {
	get(s.echo, path, echo.WrapHandler(h))
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

const headerRequestID = "X-Request-Id"

// requestID takes the caller's X-Request-Id when it is sane, else makes
// one, and returns it on the response and in the request's context, where
// requestid.LogHandler finds it for every line logged in its course.
func (s *Server) requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		id := c.Request().Header.Get(headerRequestID)
		if !requestid.Sane(id) {
			id = requestid.New()
		}
		c.Response().Header().Set(headerRequestID, id)
		c.SetRequest(c.Request().WithContext(requestid.With(c.Request().Context(), id)))
		return next(c)
	}
}

// accessLog logs one line per request: its status, duration and the bytes
// of its response body (a stream's, however long), never a body or a
// header value. requestid.LogHandler adds its id and, once its key was
// checked (here or by MCP's guard), its user's.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			s.handleError(c, err)
		}
		took := time.Since(start)
		pattern := route(c)
		status, size := 0, int64(0)
		if r := response(c); r != nil {
			status, size = r.Status, r.Size
		}
		if c.Request().Method == http.MethodHead {
			size = 0 // written as for GET, and dropped by net/http
		}
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.ObserveRequest(pattern, methodLabel(c.Request().Method), status, took)
		}
		// The record goes to the handler without its caller's pc, which
		// only a handler with AddSource reads (Parley's have none); the
		// Logger's runtime.Callers costs as much as the rest of the record.
		if h, cx := s.log.Handler(), ctx(c); h.Enabled(cx, slog.LevelInfo) {
			r := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
			r.AddAttrs(slog.String("method", logMethod(c.Request().Method)), slog.String("path", pattern),
				slog.Int("status", status), slog.Float64("duration_ms", requestid.Millis(took)), slog.Int64("bytes", size))
			_ = h.Handle(cx, r)
		}
		return nil
	}
}

// methodLabel is a request's method as a metric label: HTTP's own methods,
// and "other" for any other token, which a client may make up at will,
// without a key (each would be a new time series).
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// logMethod is a request's method as a log line has it: any token a
// client sends, with or without a key, so no longer than 32 bytes.
func logMethod(m string) string { return requestid.Capped(m, 32) }

// sendingSerializer writes a JSON response whole, with its Content-Length,
// and sends it at once. Otherwise net/http holds a small response in its
// buffer until ServeHTTP returns, so the client would wait for everything
// the middleware does after the handler: the access log line, metrics.
// A write the client does not take within stall is cut, as a stream's is:
// a client that asks for a large response (a document, a conversation)
// and does not read it would otherwise hold the handler and the response.
type sendingSerializer struct {
	echo.DefaultJSONSerializer
	stall time.Duration
}

// answerBuffers keeps the buffers answers are encoded in, up to
// maxPooledAnswer bytes each: a large answer's is left to the collector.
var answerBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledAnswer = 64 << 10

func (ss sendingSerializer) Serialize(c *echo.Context, v any, indent string) error {
	// An API's JSON is no HTML page: <, > and & go as themselves, not as
	// six bytes each (\u003c), which made a page of chats whose system
	// messages are markup six times its text.
	buf := answerBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledAnswer {
			buf.Reset()
			answerBuffers.Put(buf)
		}
	}()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		return err
	}
	b := buf.Bytes()
	c.Response().Header().Set(echo.HeaderContentLength, strconv.Itoa(len(b)))
	w := slowclient.NewWriter(c.Response(), ss.stall)
	defer w.End()
	if _, err := w.Write(b); err != nil {
		return err
	}
	// Flushed past Echo's Response, whose Flush drops the error; the write
	// deadline of the last piece bounds it.
	if err := http.NewResponseController(netWriter(c)).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// response returns the *echo.Response under c's writer, which keeps the
// status and whether it was sent; nil if c's writer does not unwrap to one.
// (Echo v5's Context.Response is an http.ResponseWriter, which c.JSON
// wraps while it writes.)
func response(c *echo.Context) *echo.Response {
	r, err := echo.UnwrapResponse(c.Response())
	if err != nil {
		return nil
	}
	return r
}

// netWriter returns the writer under Echo's Response, for an
// http.ResponseController: Echo's Flush drops the error that says the
// client is gone (or the write was cut), and panics where the writer
// cannot flush.
func netWriter(c *echo.Context) http.ResponseWriter {
	if r := response(c); r != nil {
		return r.ResponseWriter
	}
	return c.Response()
}

// recoverPanics makes a handler's panic an internal error (500, in the
// envelope), logged with its stack. A stream that opened ends its own
// (stream.run).
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = s.recovered(c, r)
			}
		}()
		return next(c)
	}
}

// recovered logs r, a recovered panic, with its stack and the request's
// route, and returns the internal error it becomes. http.ErrAbortHandler,
// net/http's way to abort a response, panics on.
func (s *Server) recovered(c *echo.Context, r any) error {
	if r == http.ErrAbortHandler {
		panic(r)
	}
	s.log.ErrorContext(ctx(c), "panic", "method", logMethod(c.Request().Method), "path", route(c), "panic", r, "stack", string(debug.Stack()))
	return &domain.Error{Kind: domain.Internal, Op: "rest.recover"}
}

// bodyDeadline gives a request's body the request timeout to arrive, also
// when nothing reads it (a request refused for its key, an endpoint that
// reads none): net/http reads what is left of a body before it answers,
// with no deadline of its own, so a client that never sent its body held
// its connection and goroutine for ever, without a key. A handler that
// reads the body (slowclient.ReadBody) sets its own and clears it; a
// method that takes none has its body drained here, and the deadline
// cleared, as once a body is read to its end net/http reads on in the
// background, and a deadline passing there would end a long GET (an MCP
// stream). A body that does not arrive in time, or is longer than
// net/http would drain, keeps the deadline, and its connection is closed
// after the answer.
func (s *Server) bodyDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r := c.Request()
		if r.ContentLength == 0 {
			return next(c)
		}
		rc := http.NewResponseController(netWriter(c))
		if rc.SetReadDeadline(time.Now().Add(s.cfg.RequestTimeout)) != nil {
			return next(c) // a writer that takes no deadlines (tests' recorders)
		}
		switch r.Method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
		default:
			// A body no endpoint reads is drained here, as net/http
			// drains one after a handler, so that the deadline can be
			// lifted; its first bytes are kept for noBody.
			const drained = 256 << 10
			head, _ := io.ReadAll(io.LimitReader(r.Body, noBodyHead))
			n, err := io.Copy(io.Discard, io.LimitReader(r.Body, drained+1))
			if err == nil && n <= drained {
				_ = rc.SetReadDeadline(time.Time{})
			}
			r.Body = struct {
				io.Reader
				io.Closer
			}{bytes.NewReader(head), r.Body}
		}
		return next(c)
	}
}

// limitBody caps the request body; a body over the limit is a 413. Paths
// mounted with Handle cap their own.
func (s *Server) limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if s.ownBodyLimit[c.Path()] {
			return next(c)
		}
		r := c.Request()
		if r.ContentLength > s.cfg.MaxBodyBytes {
			return domain.Errorf(domain.TooLarge, "%s", wire.BodyTooLarge(r.ContentLength, s.cfg.MaxBodyBytes))
		}
		r.Body = http.MaxBytesReader(c.Response(), r.Body, s.cfg.MaxBodyBytes)
		return next(c)
	}
}

// authenticate resolves the bearer key to a principal in the request context.
func (s *Server) authenticate(c *echo.Context) error {
	key, err := wire.BearerKey(c.Request().Header)
	if err != nil {
		return err
	}
	p, err := s.svcs.Users.Authenticate(c.Request().Context(), key)
	if err != nil {
		return err
	}
	requestid.SetUser(c.Request().Context(), p.UserID)
	c.SetRequest(c.Request().WithContext(domain.WithPrincipal(c.Request().Context(), p)))
	return nil
}

// apiPrefix is the path of the API's routes, which need an API key.
const apiPrefix = "/api/v1"

// apiRoutes checks the API's routes' requests (wholeSegments, then
// authenticate). It is not the group's middleware: Echo gives a group
// with middleware a catch-all 404 route, which also answers a known path
// asked with the wrong method, where the caller should get a 405 and the
// Allow header.
func (s *Server) apiRoutes(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if strings.HasPrefix(c.Path(), apiPrefix+"/") {
			if !strings.HasSuffix(c.Path(), "/completions") {
				ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.RequestTimeout)
				defer cancel()
				c.SetRequest(c.Request().WithContext(ctx))
			}
			if err := s.shadowedStatic(c); err != nil {
				return err
			}
			if err := wholeSegments(c); err != nil {
				return err
			}
			if err := s.authenticate(c); err != nil {
				return err
			}
			if err := noBody(c.Request()); err != nil {
				return err
			}
		}
		return next(c)
	}
}

// noBodyHead is how much of a body noBody reads: more than an empty
// object takes, with room for spaces.
const noBodyHead = 64

// noBody refuses a body sent with a GET or a DELETE, which no endpoint
// reads, as knownQuery refuses a query parameter it does not read: GET
// /chats sent {"projectId": ...} would answer the unfiltered list, and a
// DELETE sent {"dryRun": true} delete, without a word. An empty object or
// null, which some clients send with every request, says nothing and
// passes.
func noBody(r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodDelete ||
		r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	head, err := io.ReadAll(io.LimitReader(r.Body, noBodyHead))
	if err == nil && len(head) < noBodyHead {
		switch strings.Join(strings.Fields(string(head)), "") {
		case "", "{}", "null":
			return nil
		}
	}
	return domain.Errorf(domain.Invalid, "a %s here takes no request body; send nothing, or {}, as the body "+
		"(options, where the endpoint has any, go in query parameters: see /openapi.json)", r.Method)
}

// wholeSegments answers 404 when a path parameter took more than one
// segment. Echo (v4, and v5 still) gives a route that ends in a parameter
// the rest of the path (labstack/echo#2501), so GET
// /conversations/cnv_1/messages reached the conversation's handler, which
// said that conversation "cnv_1/messages" does not exist, instead of that
// there is no such endpoint. Segments are counted in the path as sent, so
// an escaped slash (%2F) is no segment boundary (the parameter holds it
// unescaped: see New). The check counts segments rather than reading the parameters:
// a route that does not take the request's method has none to read, and
// its 405 would say that the endpoint exists. A route that ends in * (a
// model's name, which may hold slashes) takes the rest of the path.
func wholeSegments(c *echo.Context) error {
	sent, route := strings.Count(c.Request().URL.EscapedPath(), "/"), strings.Count(c.Path(), "/")
	if sent != route && (sent < route || !strings.HasSuffix(c.Path(), "/*")) {
		return echo.ErrNotFound
	}
	return nil
}

// route is the pattern of the route c matched, "unmatched" when none did:
// a bounded set of values, for logs and metrics.
func route(c *echo.Context) string {
	if p := c.Path(); p != "" {
		return p
	}
	return "unmatched"
}

// readyTimeout bounds the readiness check: a database that hangs (a
// stalled network, a frozen proxy) must make /readyz answer 503 in time for
// a probe, not hold it until the probe gives up.
const readyTimeout = 2 * time.Second

func (s *Server) handleReady(c *echo.Context) error {
	if s.cfg.Ready != nil {
		rctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
		defer cancel()
		if err := s.cfg.Ready(rctx); err != nil {
			s.log.WarnContext(ctx(c), "not ready", "err", err)
			return domain.Errorf(domain.Unavailable, "not ready: the database does not answer, or takes no writes (the server's log says which)")
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// ctx returns the request's context.
func ctx(c *echo.Context) context.Context { return c.Request().Context() }

// page reads the limit, cursor and order query parameters of a list that
// also takes the query parameters filters names.
func page(c *echo.Context, filters ...string) (domain.Page, error) {
	if err := knownQuery(c, append(filters, "limit", "cursor", "order")...); err != nil {
		return domain.Page{}, err
	}
	for _, name := range filters {
		// A filter sent empty (?projectId=, ?groupBy=, a client's unset
		// variable) would read as left out and answer the list without
		// it, which looks like the filtered one: as a misspelt filter, it
		// is refused (knownQuery). An empty limit or cursor is the first
		// page of the default size, which it reads as.
		if c.QueryParams().Has(name) && c.QueryParam(name) == "" {
			what := "a value"
			if strings.HasSuffix(name, "Id") {
				what = "an id"
			}
			return domain.Page{}, domain.Invalidf(name, "%s is empty; pass %s, or leave %s out", name, what, name)
		}
	}
	return domain.ParsePage(c.QueryParam("limit"), c.QueryParam("cursor"), c.QueryParam("order"))
}

// knownQuery refuses a query parameter the endpoint does not take: a
// misspelt filter (?projectid=) would otherwise answer the unfiltered list
// as if it were the filtered one. It refuses one sent more than once too,
// of which only the first value would be read (?groupBy=model&groupBy=chat
// is not grouped by both), as a body's duplicate key is refused.
func knownQuery(c *echo.Context, names ...string) error {
	if err := readableQuery(c.Request().URL.RawQuery); err != nil {
		return err
	}
	for name, values := range c.QueryParams() {
		switch {
		case len(names) == 0:
			return domain.Invalidf(name, "unknown query parameter %q; this endpoint takes none", name)
		case !slices.Contains(names, name):
			return domain.Invalidf(name, "unknown query parameter %q; this endpoint takes %s (names are case-sensitive)", name, strings.Join(names, ", "))
		}
		if len(values) > 1 {
			return domain.Invalidf(name, "query parameter %q appears more than once; send it once", name)
		}
	}
	return nil
}

// readableQuery refuses a query with a pair Go's parser drops without a
// word: one holding a bad %-escape or a ';' (no longer a separator). A
// filter so sent would answer the unfiltered list.
//
// Past maxQueryPairs pairs it refuses the query whole: Go's parser drops
// every parameter of a query with more than 10,000, and no endpoint takes
// more than a few.
func readableQuery(raw string) error {
	const how = "escape %% as %%25 and ; as %%3B, and separate parameters with &"
	if strings.Count(raw, "&") >= maxQueryPairs {
		return domain.Invalidf("query", "the query holds more than %d parameters (each & separates two); send only those the endpoint takes", maxQueryPairs)
	}
	for pair := range strings.SplitSeq(raw, "&") {
		key, value, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(key)
		if err != nil || strings.Contains(key, ";") {
			return domain.Invalidf("query", "the query holds a parameter name that is not URL-encoded; "+how)
		}
		if _, err := url.QueryUnescape(value); err != nil || strings.Contains(value, ";") {
			return domain.Invalidf(name, "query parameter %q is not URL-encoded; "+how, name)
		}
	}
	return nil
}

// maxQueryPairs is the most &-separated pairs a query may hold.
const maxQueryPairs = 100

// listResponse is the shape of every list.
type listResponse[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"nextCursor" jsonschema:"nullable"`
}

func toList[T, R any](l domain.List[T], conv func(*T) R) listResponse[R] {
	out := listResponse[R]{Data: make([]R, 0, len(l.Items))}
	for i := range l.Items {
		out.Data = append(out.Data, conv(&l.Items[i]))
	}
	if l.NextCursor != "" {
		out.NextCursor = &l.NextCursor
	}
	return out
}

// timestamp formats times in responses: ISO 8601 UTC with milliseconds.
var timestamp = wire.Timestamp

type deletedResponse struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}
