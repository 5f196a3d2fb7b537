package mcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/slowclient"
	"github.com/parleyhq/parley/internal/wire"
)

// SSE serves srv over MCP's older HTTP+SSE transport: Stream for GET /sse
// and Message for POST /message. Both need the bearer key; a session's
// messages are accepted only from the user who opened it.
//
// A tool call's result travels on the session's event stream, not in the
// request that carried the call, so the stream must outlive the call, and
// it is the stream, not the request, whose closing cancels the call: a
// client that drops its stream cancels the calls it sent over the session.
// The server's shutdown does not end a stream (serveUntilShutdown); Close
// does, once every call the sessions were sent has its response written.
type SSE struct {
	Stream, Message http.Handler
	// KeepAlive is how long a session's event stream may be quiet before
	// it gets an SSE comment (": keep-alive"), as REST streams do, so that
	// proxies do not close it (which would cancel the session's calls);
	// 0 means 15s. Set it before serving.
	KeepAlive time.Duration

	srv      *server.SSEServer
	sseH     http.Handler // mcp-go's event stream handler
	msgH     http.Handler // mcp-go's message handler
	streams  sync.Map     // session id → *sseStream
	pending  pendingResponses
	sessions sessionCount
}

// sessionCount counts each user's open sessions against a cap.
type sessionCount struct {
	mu      sync.Mutex
	max     int
	perUser map[string]int
}

// sseCallsPerSession is how many requests an HTTP+SSE session may have
// awaiting their responses; another is refused (429) until one is
// answered. Its calls hold upstream connections, and the sessions' cap
// (PARLEY_MCP_SSE_SESSIONS_PER_USER) bounds a user's file descriptors only
// with this one.
const sseCallsPerSession = 64

// open counts a session of user, unless user holds max already.
func (c *sessionCount) open(user string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perUser[user] >= c.max {
		return false
	}
	if c.perUser == nil {
		c.perUser = map[string]int{}
	}
	c.perUser[user]++
	return true
}

// close uncounts a session open counted.
func (c *sessionCount) close(user string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perUser[user]--; c.perUser[user] <= 0 {
		delete(c.perUser, user)
	}
}

// NewSSE returns the HTTP+SSE transport of srv, mounted under basePath ("" at
// the root). lim and logger are as for StreamableHTTPHandler.
func NewSSE(srv *server.MCPServer, auth Authenticator, lim Limits, basePath string, logger *slog.Logger) *SSE {
	if logger == nil {
		logger = slog.Default()
	}
	x := &SSE{sessions: sessionCount{max: lim.SSESessionsPerUser}}
	if x.sessions.max <= 0 {
		x.sessions.max = DefaultSSESessionsPerUser
	}
	x.srv = server.NewSSEServer(srv,
		server.WithStaticBasePath(basePath),
		server.WithSSEDisableLocalhostProtection(true), // see StreamableHTTPHandler
		server.WithSSEMaxRequestBodyBytes(0),           // guard bounds the body: see StreamableHTTPHandler
		server.WithSSEContextFunc(principalContext),
		server.WithSessionIDGenerator(x.newSession),
	)
	x.sseH, x.msgH = x.srv.SSEHandler(), x.srv.MessageHandler()
	x.Stream = guard(auth, logger, lim, http.MethodGet, x.serveStream(auth))
	x.Message = guard(auth, logger, lim, http.MethodPost, http.HandlerFunc(x.serveMessage))
	return x
}

// newSession is mcp-go's session id generator: a random id, and the
// session's stream, kept for its messages; the id goes to the stream's
// handler through the context (sessionSlot).
func (x *SSE) newSession(ctx context.Context, r *http.Request) (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b)
	p, _ := domain.PrincipalFrom(ctx)
	st := &sseStream{owner: p.UserID, progress: progressLogFrom(ctx)}
	st.ended, st.end = context.WithCancelCause(context.Background())
	x.streams.Store(id, st)
	if slot, ok := ctx.Value(sessionSlot{}).(*string); ok {
		*slot = id
	}
	return id, nil
}

// serveStream serves a session's event stream (GET), under the user's cap
// on sessions, for as long as the client keeps it and its key stays valid.
func (x *SSE) serveStream(auth Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := domain.PrincipalFrom(r.Context())
		if !x.sessions.open(p.UserID) {
			// A session ends only when its client closes it: the wait
			// is the client's to cut short.
			w.Header().Set("Retry-After", "5")
			refuse(w, domain.RateLimited, fmt.Sprintf("you have %d HTTP+SSE sessions open, the most one user may (PARLEY_MCP_SSE_SESSIONS_PER_USER); "+
				"close one first, or use the streamable HTTP endpoint (/mcp), whose calls hold no connection between them", x.sessions.max))
			return
		}
		defer x.sessions.close(p.UserID)
		// The session lasts as long as its key: a key revoked or expired
		// (or its user deleted) ends the stream at the next check, and
		// with it the session's calls and its place under the cap.
		live, endLive := context.WithCancelCause(r.Context())
		defer endLive(nil)
		key, _ := wire.BearerKey(r.Header) // authenticated before this handler ran
		go recheckKey(live, endLive, auth, key, x.keepAlive())
		var id string
		defer func() {
			if id == "" {
				return
			}
			if st, ok := x.streams.LoadAndDelete(id); ok {
				st.(*sseStream).end(streamEndCause(live))
			}
			x.pending.forget(id)
		}()
		progress := &progressLog{}
		cw := slowclient.NewWriter(w, stallAfter(x.keepAlive()))
		defer cw.End()
		rw := &responseWatcher{ResponseWriter: cw, rc: http.NewResponseController(cw), session: &id, pending: &x.pending, progress: progress}
		defer rw.keepAlive(x.keepAlive())()
		ctx := withProgressLog(context.WithValue(live, sessionSlot{}, &id), progress)
		serveUntilShutdown(x.sseH, rw, r.WithContext(ctx))
	})
}

// serveMessage serves a message (POST) to one of the user's sessions: a
// call runs on the session's stream, answered there, within the session's
// bound on calls awaiting their responses.
func (x *SSE) serveMessage(w http.ResponseWriter, r *http.Request) {
	p, _ := domain.PrincipalFrom(r.Context())
	session := r.URL.Query().Get("sessionId")
	if session == "" {
		refuse(w, domain.Invalid, "sessionId is required: post to the endpoint the SSE stream's first event names")
		return
	}
	// Another user's session answers as one that does not exist, so that
	// the answer does not tell that it is open.
	st, ok := x.streams.Load(session)
	if !ok || st.(*sseStream).owner != p.UserID {
		refuse(w, domain.NotFound, "no such SSE session; open one with GET on the SSE endpoint")
		return
	}
	// mcp-go runs the call on a context the request's end does not
	// cancel; the stream's end will. The call's progress notifications are
	// written to the stream. A call cancelled before mcp-go starts it does
	// not run (skipCancelled).
	ctx := withSessionRequests(withStreamEnd(r.Context(), st.(*sseStream).ended), &x.pending, session)
	r = r.WithContext(withProgressLog(ctx, st.(*sseStream).progress))
	body, _ := io.ReadAll(r.Body) // guard buffered it
	r.Body = io.NopCloser(bytes.NewReader(body))
	// mcp-go decodes the body's first JSON value and ignores what follows,
	// where Parley reads it whole (readJSONRPC): a message with bytes
	// after it would run unseen by Parley's checks and bookkeeping. It is
	// not JSON, as streamable HTTP answers.
	if !json.Valid(body) {
		writeJSONRPCError(w, mcpgo.PARSE_ERROR, "the body is not one JSON value: send one JSON-RPC message, with nothing after it")
		return
	}
	m, ok := readJSONRPC(body)
	if why := invalidMessage(body, m); why != "" {
		writeInvalidMessage(w, why)
		return
	}
	if !ok || m.Method == "" { // a notification or a response: no result will follow
		// Parley ends the call itself (pendingResponses), which also drops
		// mcp-go's response to it (see cancel.go), and mcp-go does not see
		// the notification.
		if id, ok := cancelledRequest(body); ok {
			x.pending.cancel(session, id)
			w.WriteHeader(http.StatusAccepted)
			return
		}
		x.msgH.ServeHTTP(w, r)
		return
	}
	// Counted before mcp-go queues the call, whose response may be written
	// before ServeHTTP returns; uncounted if it was refused.
	id := idKey(m.ID)
	if !x.pending.tryAdd(session, id, sseCallsPerSession) {
		// Each POST is answered 202 at once and its call runs on: without a
		// bound one session held thousands of upstream calls, and the
		// server's file descriptors, under the sessions' cap.
		w.Header().Set("Retry-After", "1")
		refuse(w, domain.RateLimited, fmt.Sprintf("this HTTP+SSE session has %d requests awaiting their responses, the most one session may; "+
			"wait for one to be answered, or open another session", sseCallsPerSession))
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	x.msgH.ServeHTTP(rec, r)
	if rec.status != http.StatusAccepted {
		x.pending.remove(session, id)
	}
}

// Close waits until every call sent to an open session has its response
// written to the session's stream, or until ctx is done, then ends the
// streams. Call it on shutdown once the tool calls ended (Calls).
func (x *SSE) Close(ctx context.Context) error {
	err := x.pending.wait(ctx)
	x.srv.CloseSessions()
	return err
}

// sseStream is an open SSE session: the user who opened it, a context
// that ends with its event stream, and the progress notifications written
// to the stream.
type sseStream struct {
	owner    string
	ended    context.Context
	end      context.CancelCauseFunc
	progress *progressLog
}

// errStreamClosed is the cause of a call cancelled because its session's
// event stream closed; it is a context.Canceled, so the completion's usage
// is recorded as the client's disconnect.
var errStreamClosed = fmt.Errorf("the client closed the SSE stream: %w", context.Canceled)

// errKeyRefused ends an SSE session whose key no longer authenticates.
var errKeyRefused = errors.New("mcp: the SSE session's API key was revoked or has expired")

// recheckKey authenticates key again every interval while ctx lasts, and
// ends ctx (end) once it is refused as unauthenticated; a check that
// fails otherwise (the database unreachable) keeps the session.
func recheckKey(ctx context.Context, end context.CancelCauseFunc, auth Authenticator, key string, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := auth(ctx, key); domain.KindOf(err) == domain.Unauthenticated {
				end(errKeyRefused)
				return
			}
		}
	}
}

// streamEndCause says why the event stream served for a request with
// context ctx ended: the client left (errStreamClosed), or Close ended it
// on shutdown (domain.ErrShuttingDown).
func streamEndCause(ctx context.Context) error {
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), domain.ErrShuttingDown) {
		return errStreamClosed
	}
	return domain.ErrShuttingDown
}

type streamEndKey struct{}

// withStreamEnd returns ctx carrying ended, a context that ends with the
// SSE event stream the calls started under ctx answer on. Values survive
// mcp-go's detaching of the call from its request.
func withStreamEnd(ctx, ended context.Context) context.Context {
	return context.WithValue(ctx, streamEndKey{}, ended)
}

// streamEnd returns the context withStreamEnd put in ctx, or nil.
func streamEnd(ctx context.Context) context.Context {
	ended, _ := ctx.Value(streamEndKey{}).(context.Context)
	return ended
}

func (x *SSE) keepAlive() time.Duration {
	if x.KeepAlive > 0 {
		return x.KeepAlive
	}
	return domain.DefaultKeepAlive
}

// responseWatcher is a session's event stream: it tells pending when a
// response to a call is written, and drops the response to a call the
// client cancelled; it tells progress when a progress notification is
// written, and sends keep-alives while the stream is quiet. mcp-go writes
// each event in one Write.
type responseWatcher struct {
	http.ResponseWriter
	rc       *http.ResponseController
	session  *string
	pending  *pendingResponses
	progress *progressLog

	mu     sync.Mutex // one writer at a time: mcp-go's or a keep-alive
	wrote  time.Time  // of the last write; zero before the first
	halted bool
}

// keepAlive sends an SSE comment each time the stream has been quiet for
// every, once mcp-go has opened it, until the returned func is called.
func (w *responseWatcher) keepAlive(every time.Duration) (stop func()) {
	var t *time.Timer
	w.mu.Lock()
	defer w.mu.Unlock()
	t = time.AfterFunc(every, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.halted {
			return
		}
		if w.wrote.IsZero() { // mcp-go has not opened the stream yet
			t.Reset(every)
			return
		}
		if quiet := time.Since(w.wrote); quiet < every {
			t.Reset(every - quiet)
			return
		}
		if _, err := w.ResponseWriter.Write([]byte(": keep-alive\n\n")); err == nil {
			_ = w.rc.Flush()
		}
		w.wrote = time.Now()
		t.Reset(every)
	})
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.halted = true
		t.Stop()
	}
}

func (w *responseWatcher) Write(p []byte) (int, error) {
	data, event := bytes.CutPrefix(p, []byte("event: message\ndata: "))
	var response string // the id of the request it answers
	if event {
		data = bytes.TrimSpace(data)
		if m, ok := readJSONRPC(data); ok && m.Method == "" {
			response = idKey(m.ID)
			if w.pending.cancelled(*w.session, response) {
				w.pending.remove(*w.session, response)
				return len(p), nil
			}
		}
	}
	w.mu.Lock()
	n, err := w.ResponseWriter.Write(p)
	w.wrote = time.Now()
	w.mu.Unlock()
	if event && err == nil {
		if response != "" {
			w.pending.remove(*w.session, response)
		}
		w.progress.wrote(data)
	}
	return n, err
}

func (w *responseWatcher) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *responseWatcher) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusRecorder keeps the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

type sessionSlot struct{}
