package mcp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
)

// Authenticator returns the principal owning a bearer API key; errors of
// kind Unauthenticated mean the key is unknown or revoked. cmd/parley passes
// svcs.Users.Authenticate.
type Authenticator func(ctx context.Context, bearerKey string) (domain.Principal, error)

// DefaultMaxBodyBytes caps MCP request bodies when the caller passes 0.
const DefaultMaxBodyBytes = 8 << 20

// sessionIdleTTL is how long an idle streamable HTTP session's state is kept.
const sessionIdleTTL = time.Hour

// StreamableHTTPHandler serves srv over MCP's streamable HTTP transport, for
// mounting at /mcp. Every request must carry 'Authorization: Bearer <key>':
// without a valid key it gets 401 before any MCP processing. Bodies over
// maxBodyBytes get 413. It takes only POST; other methods get 405 with
// Allow: POST, which the protocol allows for both GET (no standalone
// stream) and DELETE (the server does not let clients end sessions, which
// keep no state here anyway).
//
// Two departures from mcp-go's defaults keep every progress notification on
// the response stream of the call it belongs to:
//   - The standalone GET stream is not offered: Parley sends nothing
//     outside a request, and mcp-go would route some of a call's
//     notifications to it.
//   - A session's server-side state is dropped right after initialize, so
//     that each later request gets a session object, and a notification
//     queue, of its own. mcp-go otherwise shares one queue among a
//     session's concurrent requests, whose streams then take, and drop,
//     each other's notifications. The session id stays valid: mcp-go checks
//     only its form, as it does for sessions begun on another replica.
//
// And a request the client cancels with notifications/cancelled gets no
// response, which mcp-go would send (liveRequests).
//
// keepAlive is PARLEY_SSE_KEEPALIVE (0 means 15s): a response quiet that
// long gets an SSE comment (keptAlive; not initialize's, answered at once
// with the session id in a header), and a write to a response that the
// client has not taken after twice it is cut (stallCutter). mcp-go's
// plain-text refusals are put in the error envelope (plainErrors).
//
// logger (nil: slog.Default()) takes the transport's own lines: a key that
// could not be checked (the database is down), logged with the request's
// context so that requestid.LogHandler names its request id,
// and mcp-go's transport warnings.
func StreamableHTTPHandler(srv *server.MCPServer, auth Authenticator, maxBodyBytes int64, keepAlive time.Duration, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.Default()
	}
	h := server.NewStreamableHTTPServer(srv,
		server.WithHTTPContextFunc(principalContext),
		server.WithDisableStreaming(true),
		// Every request carries a bearer key (guard), which a DNS-rebinding
		// page cannot send; mcp-go's Host check would only refuse a reverse
		// proxy on the same host that forwards the public Host header.
		server.WithDisableLocalhostProtection(true),
		server.WithSessionIdleTTL(sessionIdleTTL),
		server.WithStreamableHTTPLogger(slog.New(transportLog{logger.Handler()})),
	)
	var live liveRequests
	stall := stallAfter(keepAlive)
	if keepAlive <= 0 {
		keepAlive = defaultKeepAlive
	}
	return guard(auth, logger, maxBodyBytes, http.MethodPost, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bindSession(r)
		session := r.Header.Get(server.HeaderKeySessionID)
		body, _ := io.ReadAll(r.Body) // guard buffered it
		r.Body = io.NopCloser(bytes.NewReader(body))
		var msg struct {
			Method string `json:"method"`
		}
		_ = json.Unmarshal(body, &msg)
		cw := newStallCutter(w, stall)
		defer cw.end()
		w = cw
		if msg.Method != "initialize" {
			// Not initialize, which is answered at once, and whose
			// Mcp-Session-Id header a keep-alive that opened the response
			// as a stream first would leave out.
			kw, endKeepAlive := withKeepAlives(cw, r, keepAlive)
			defer endKeepAlive()
			w = kw
		}
		pw := &plainErrors{ResponseWriter: w}
		defer pw.finish(r)
		w = pw
		switch msg.Method {
		case "notifications/cancelled":
			// Parley ends the call itself (liveRequests), and mcp-go does
			// not see the notification: it would take the number 7 and
			// the string "7" for one id, and cancel the wrong call.
			// Without a session id there is nothing to cancel: such
			// callers (protocol 2026-07-28) cancel by closing the request.
			if id, ok := cancelledRequest(body); ok && session != "" {
				live.cancel(session, id)
			}
			w.WriteHeader(http.StatusAccepted)
			return
		case "initialize":
			buf := &bufferedResponse{header: http.Header{}}
			h.ServeHTTP(buf, r)
			if id := buf.header.Get(server.HeaderKeySessionID); id != "" {
				end, _ := http.NewRequestWithContext(context.Background(), http.MethodDelete, r.URL.String(), nil)
				end.Host = r.Host
				end.Header.Set(server.HeaderKeySessionID, id)
				out := &bufferedResponse{header: http.Header{}}
				h.ServeHTTP(out, end)
				if out.status != http.StatusOK {
					logger.ErrorContext(r.Context(), "mcp: dropping a new session's state failed", "status", out.status, "body", out.body.String())
				}
			}
			buf.copyTo(w)
			return
		}
		if m, ok := readJSONRPC(body); ok && m.Method != "" && session != "" {
			live.serve(h, w, r, session, idKey(m.ID))
			return
		}
		serveUntilShutdown(h, w, r)
	}))
}

// liveRequests are the requests being served to streamable HTTP sessions
// that may cancel them with notifications/cancelled (protocol 2025-06-18
// and 2025-11-25), by session and id. The zero value is ready.
type liveRequests struct {
	mu   sync.Mutex
	reqs map[string]*liveRequest // by session and idKey
}

type liveRequest struct {
	end context.CancelCauseFunc
}

// errRequestCancelled ends a request its client cancelled; it is a
// context.Canceled, so a completion's usage is recorded as the client's
// disconnect.
var errRequestCancelled = fmt.Errorf("the client cancelled the request: %w", context.Canceled)

// serve serves r, the request with id of session, so that cancel can end
// it. A cancelled request gets no response (see cancel.go): mcp-go writes
// none once the request's context is done, and the client that keeps the
// request open gets an event stream that ends without one (a request is
// answered with JSON or a stream, and a stream may end early).
func (l *liveRequests) serve(h http.Handler, w http.ResponseWriter, r *http.Request, session, id string) {
	ctx, end := context.WithCancelCause(r.Context())
	defer end(nil)
	key, req := session+"\x00"+id, &liveRequest{end: end}
	l.mu.Lock()
	if l.reqs == nil {
		l.reqs = map[string]*liveRequest{}
	}
	l.reqs[key] = req
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		if l.reqs[key] == req {
			delete(l.reqs, key)
		}
		l.mu.Unlock()
	}()
	hw := &headerWatcher{ResponseWriter: w}
	serveUntilShutdown(h, hw, r.WithContext(ctx))
	if errors.Is(context.Cause(ctx), errRequestCancelled) && !hw.wrote.Load() {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
	}
}

// cancel ends the request with id of session, if it is being served.
func (l *liveRequests) cancel(session, id string) {
	l.mu.Lock()
	req := l.reqs[session+"\x00"+id]
	l.mu.Unlock()
	if req != nil {
		req.end(errRequestCancelled)
	}
}

// headerWatcher notes whether the response's header was written. It
// flushes, as mcp-go streams only to a writer that does.
type headerWatcher struct {
	http.ResponseWriter
	wrote atomic.Bool
}

func (w *headerWatcher) WriteHeader(status int) {
	w.wrote.Store(true)
	w.ResponseWriter.WriteHeader(status)
}

func (w *headerWatcher) Write(p []byte) (int, error) {
	w.wrote.Store(true)
	return w.ResponseWriter.Write(p)
}

func (w *headerWatcher) Flush() {
	w.wrote.Store(true)
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *headerWatcher) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bindSession binds the request's Mcp-Session-Id to its caller: mcp-go
// keys a session's in-flight calls (which notifications/cancelled cancels)
// by the session id alone and checks only its form, so without this any
// user who learnt another's session id could cancel that user's calls. The
// id mcp-go sees is derived from the caller's user id and the id the client
// sent, so the same client id names a different session for each user; the
// client keeps the id initialize gave it. As the SSE transport refuses one
// user's messages in another's session, this one keeps users' sessions
// apart.
func bindSession(r *http.Request) {
	sid := r.Header.Get(server.HeaderKeySessionID)
	if sid == "" || !strings.HasPrefix(sid, sessionIDPrefix) {
		return // mcp-go refuses a malformed id itself
	}
	p, _ := domain.PrincipalFrom(r.Context())
	sum := sha256.Sum256([]byte(p.UserID + "\x00" + sid))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x50 // a name-based UUID, as mcp-go's ids are UUIDs
	b[8] = b[8]&0x3f | 0x80
	r.Header.Set(server.HeaderKeySessionID, fmt.Sprintf("%s%x-%x-%x-%x-%x", sessionIDPrefix, b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

// sessionIDPrefix begins the session ids mcp-go makes and accepts.
const sessionIDPrefix = "mcp-session-"

// serveUntilShutdown serves r with a context that the server's shutdown
// does not end, only the client leaving: mcp-go takes a done request
// context for a client that left and writes no response, so a call ended
// by the shutdown would reach its client as an empty reply. The shutdown
// reaches the tool handler through Calls instead, and the call ends with
// an error result that says so (toolError).
func serveUntilShutdown(h http.Handler, w http.ResponseWriter, r *http.Request) {
	parent := r.Context()
	ctx, leave := context.WithCancelCause(context.WithoutCancel(parent))
	defer leave(nil)
	stop := context.AfterFunc(parent, func() {
		if cause := context.Cause(parent); !errors.Is(cause, domain.ErrShuttingDown) {
			leave(cause)
		}
	})
	defer stop()
	h.ServeHTTP(w, r.WithContext(ctx))
}

// bufferedResponse holds a small, non-streamed response.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) copyTo(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}

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

	srv     *server.SSEServer
	pending pendingResponses
}

// NewSSE returns the HTTP+SSE transport of srv, mounted under basePath ("" at
// the root). logger is as for StreamableHTTPHandler.
func NewSSE(srv *server.MCPServer, auth Authenticator, maxBodyBytes int64, basePath string, logger *slog.Logger) *SSE {
	if logger == nil {
		logger = slog.Default()
	}
	x := &SSE{}
	var streams sync.Map // session id → *sseStream
	x.srv = server.NewSSEServer(srv,
		server.WithStaticBasePath(basePath),
		server.WithSSEDisableLocalhostProtection(true), // see StreamableHTTPHandler
		server.WithSSEContextFunc(principalContext),
		server.WithSessionIDGenerator(func(ctx context.Context, r *http.Request) (string, error) {
			b := make([]byte, 16)
			if _, err := rand.Read(b); err != nil {
				return "", err
			}
			id := hex.EncodeToString(b)
			p, _ := domain.PrincipalFrom(ctx)
			st := &sseStream{owner: p.UserID, progress: progressLogFrom(ctx)}
			st.ended, st.end = context.WithCancelCause(context.Background())
			streams.Store(id, st)
			if slot, ok := ctx.Value(sessionSlot{}).(*string); ok {
				*slot = id
			}
			return id, nil
		}),
	)
	sseH, msgH := x.srv.SSEHandler(), x.srv.MessageHandler()
	x.Stream = guard(auth, logger, maxBodyBytes, http.MethodGet, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id string
		defer func() {
			if id == "" {
				return
			}
			if st, ok := streams.LoadAndDelete(id); ok {
				st.(*sseStream).end(streamEndCause(r.Context()))
			}
			x.pending.forget(id)
		}()
		progress := &progressLog{}
		cw := newStallCutter(w, stallAfter(x.keepAlive()))
		defer cw.end()
		rw := &responseWatcher{ResponseWriter: cw, rc: http.NewResponseController(cw), session: &id, pending: &x.pending, progress: progress}
		defer rw.keepAlive(x.keepAlive())()
		ctx := withProgressLog(context.WithValue(r.Context(), sessionSlot{}, &id), progress)
		serveUntilShutdown(sseH, rw, r.WithContext(ctx))
	}))
	x.Message = guard(auth, logger, maxBodyBytes, http.MethodPost, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := domain.PrincipalFrom(r.Context())
		session := r.URL.Query().Get("sessionId")
		if session == "" {
			writeError(w, http.StatusBadRequest, "invalid_request", "sessionId is required: post to the endpoint the SSE stream's first event names")
			return
		}
		// Another user's session answers as one that does not exist, so
		// that the answer does not tell that it is open.
		st, ok := streams.Load(session)
		if !ok || st.(*sseStream).owner != p.UserID {
			writeError(w, http.StatusNotFound, "not_found", "no such SSE session; open one with GET on the SSE endpoint")
			return
		}
		// mcp-go runs the call on a context the request's end does not
		// cancel; the stream's end will. The call's progress
		// notifications are written to the stream. A call cancelled
		// before mcp-go starts it does not run (skipCancelled).
		ctx := withSessionRequests(withStreamEnd(r.Context(), st.(*sseStream).ended), &x.pending, session)
		r = r.WithContext(withProgressLog(ctx, st.(*sseStream).progress))
		body, _ := io.ReadAll(r.Body) // guard buffered it
		r.Body = io.NopCloser(bytes.NewReader(body))
		m, ok := readJSONRPC(body)
		if !ok || m.Method == "" { // a notification or a response: no result will follow
			// Parley ends the call itself (pendingResponses), and mcp-go
			// does not see the notification: it would take the number 7
			// and the string "7" for one id, and cancel the wrong call.
			if id, ok := cancelledRequest(body); ok {
				x.pending.cancel(session, id)
				w.WriteHeader(http.StatusAccepted)
				return
			}
			msgH.ServeHTTP(w, r)
			return
		}
		// Counted before mcp-go queues the call, whose response may be
		// written before ServeHTTP returns; uncounted if it was refused.
		id := idKey(m.ID)
		x.pending.add(session, id)
		rec := &statusRecorder{ResponseWriter: w}
		msgH.ServeHTTP(rec, r)
		if rec.status != http.StatusAccepted {
			x.pending.remove(session, id)
		}
	}))
	return x
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

// jsonRPCMessage is what the transport reads of a JSON-RPC message: a
// request has a method and an id, a response an id and no method, a
// notification no id.
type jsonRPCMessage struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Result *present        `json:"result"` // nil when absent or null
}

// present notes that a JSON value is there, without keeping it.
type present struct{}

func (*present) UnmarshalJSON([]byte) error { return nil }

// readJSONRPC decodes the id and method of msg; ok is false when it is not
// JSON or has no id. A message with a result has no method here, whatever
// it says: mcp-go takes it for a response, and answers nothing.
func readJSONRPC(msg []byte) (m jsonRPCMessage, ok bool) {
	if json.Unmarshal(msg, &m) != nil || len(m.ID) == 0 || string(m.ID) == "null" {
		return m, false
	}
	if m.Result != nil {
		m.Method = ""
	}
	return m, true
}

// defaultKeepAlive is SSE.KeepAlive's default, REST's too.
const defaultKeepAlive = 15 * time.Second

// minStall is the shortest a write to a client may block before it is
// cut, as on REST.
const minStall = time.Second

// stallAfter is how long a write to a client may block, for keep-alive
// interval keepAlive (0: the default): twice it, as on REST streams.
func stallAfter(keepAlive time.Duration) time.Duration {
	if keepAlive <= 0 {
		keepAlive = defaultKeepAlive
	}
	return max(2*keepAlive, minStall)
}

// stallCutter is the writer of an MCP event stream (an HTTP+SSE
// session's, a streamable HTTP call's response) that cuts a write the
// client does not take in time. A client that keeps its connection but
// stops reading would otherwise block mcp-go's write for as long as it
// likes, and with it the stream: its goroutines, its calls' results (and,
// over HTTP+SSE, the shutdown, which waits for those) and the connection.
// Each write and flush gets a write deadline after from its start, a
// large write each stallPiece of it, so that a client that reads, only
// slowly, is not cut from a large result; a cut write fails, on which
// net/http ends the request's context, and the stream ends as for a
// client that left (HTTP+SSE: its calls are cancelled). end clears the
// deadline for what net/http writes once the handler returns.
type stallCutter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	after time.Duration
}

func newStallCutter(w http.ResponseWriter, after time.Duration) *stallCutter {
	return &stallCutter{ResponseWriter: w, rc: http.NewResponseController(w), after: after}
}

func (w *stallCutter) arm() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.after)) }

func (w *stallCutter) end() { _ = w.rc.SetWriteDeadline(time.Time{}) }

// stallPiece is how much of a write has a write deadline of its own.
const stallPiece = 64 << 10

func (w *stallCutter) Write(p []byte) (n int, err error) {
	if len(p) == 0 {
		w.arm()
		return w.ResponseWriter.Write(p)
	}
	for len(p) > 0 {
		piece := p[:min(len(p), stallPiece)]
		w.arm()
		m, err := w.ResponseWriter.Write(piece)
		n += m
		if err != nil {
			return n, err
		}
		p = p[len(piece):]
	}
	return n, nil
}

// FlushError is what http.ResponseController's Flush calls.
func (w *stallCutter) FlushError() error {
	w.arm()
	return w.rc.Flush()
}

// Flush makes the writer an http.Flusher, which mcp-go streams only to.
func (w *stallCutter) Flush() { _ = w.FlushError() }

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *stallCutter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (x *SSE) keepAlive() time.Duration {
	if x.KeepAlive > 0 {
		return x.KeepAlive
	}
	return defaultKeepAlive
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

// pendingResponses counts the requests whose response a session has yet
// to write, by session and request id (idKey), and knows which of them the
// client cancelled: those get no response, and the tool calls serving them
// are ended (see cancel.go).
type pendingResponses struct {
	mu       sync.Mutex
	sessions map[string]map[string]*pendingRequest // session → request id
	n        inFlight
}

// pendingRequest is a request still to be answered.
type pendingRequest struct {
	cancelled bool
	calls     []*context.CancelCauseFunc // the ends of the tool calls serving it (watch)
}

func (p *pendingResponses) add(session, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions == nil {
		p.sessions = map[string]map[string]*pendingRequest{}
	}
	ids := p.sessions[session]
	if ids == nil {
		ids = map[string]*pendingRequest{}
		p.sessions[session] = ids
	}
	if _, ok := ids[id]; ok {
		return
	}
	ids[id] = &pendingRequest{}
	p.n.add(1)
}

// cancel notes that the client cancelled the request, if it is pending,
// and ends the tool call serving it.
func (p *pendingResponses) cancel(session, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	req := p.sessions[session][id]
	if req == nil {
		return
	}
	req.cancelled = true
	for _, end := range req.calls {
		(*end)(errRequestCancelled)
	}
}

// cancelled says whether the client cancelled the pending request.
func (p *pendingResponses) cancelled(session, id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	req := p.sessions[session][id]
	return req != nil && req.cancelled
}

// watch has cancel end the tool call serving the pending request with
// end, until the returned func is called; a request cancelled already is
// ended at once.
func (p *pendingResponses) watch(session, id string, end context.CancelCauseFunc) (stop func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	req := p.sessions[session][id]
	if req == nil {
		return func() {}
	}
	if req.cancelled {
		end(errRequestCancelled)
		return func() {}
	}
	ref := &end
	req.calls = append(req.calls, ref)
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if i := slices.Index(req.calls, ref); i >= 0 {
			req.calls = slices.Delete(req.calls, i, i+1)
		}
	}
}

func (p *pendingResponses) remove(session, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := p.sessions[session]
	if _, ok := ids[id]; ok {
		delete(ids, id)
		if len(ids) == 0 {
			delete(p.sessions, session)
		}
		p.n.add(-1)
	}
}

// forget drops a session that ended: its responses will not be written.
func (p *pendingResponses) forget(session string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.sessions[session])
	delete(p.sessions, session)
	p.n.add(-n)
}

func (p *pendingResponses) wait(ctx context.Context) error {
	p.mu.Lock()
	zero := p.n.zero
	p.mu.Unlock()
	return waitZero(ctx, zero)
}

type sessionSlot struct{}

// Caller says who a stdio session acts as. ServeStdio asks it at every
// tool call, not once at the start: a session lives as long as the agent
// that started it, and a key revoked meanwhile must stop working there as
// it does over HTTP, where every request brings its key.
type Caller func(ctx context.Context) (domain.Principal, error)

// Fixed is the Caller that is always p: the local admin, who has no key.
func Fixed(p domain.Principal) Caller {
	return func(context.Context) (domain.Principal, error) { return p, nil }
}

type callerKey struct{}

// callerFrom returns the Caller ServeStdio put in ctx, nil over HTTP,
// where guard put the principal itself.
func callerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// ServeStdio serves srv over stdio (in, out) as caller until in ends or
// ctx is cancelled. out carries only the protocol; mcp-go's own errors are
// logged to logger (nil: slog.Default()) at error level. The progress notifications written to out are recorded, so that
// a streamed call's result follows its notifications (progressLog), and a
// request the client cancels gets no response (stdioOutput). A message
// over maxMessageBytes (0: DefaultMaxBodyBytes), which mcp-go would hold
// whole however long, is dropped as it arrives and answered with an
// Invalid Request error (tooLongMessage).
func ServeStdio(ctx context.Context, srv *server.MCPServer, caller Caller, maxMessageBytes int64, in io.Reader, out io.Writer, logger *slog.Logger) error {
	if maxMessageBytes <= 0 {
		maxMessageBytes = DefaultMaxBodyBytes
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := server.NewStdioServer(srv)
	s.SetErrorLogger(slog.NewLogLogger(logger.Handler(), slog.LevelError))
	progress, pending := &progressLog{}, &pendingResponses{}
	s.SetContextFunc(func(ctx context.Context) context.Context {
		ctx = withSessionRequests(context.WithValue(ctx, callerKey{}, caller), pending, stdioSession)
		return withProgressLog(ctx, progress)
	})
	output := stdioOutput{out, &sync.Mutex{}, progress, pending}
	in = &lineFilter{r: in, keep: func(msg []byte) bool { return watchRequests(pending, msg) },
		max: int(min(maxMessageBytes, math.MaxInt32)), tooLong: func(start []byte) {
			_, _ = output.Write(tooLongMessage(start, maxMessageBytes))
		}}
	err := s.Listen(ctx, in, output)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// stdioSession is the key of the one session of a stdio server in its
// pendingResponses.
const stdioSession = ""

// watchRequests notes in pending the request msg is or, if it is a
// notifications/cancelled, cancels the request it names. It sees each
// message the client sends over stdio before mcp-go does, and says whether
// mcp-go is to see it: never a cancellation, as mcp-go would take the
// number 7 and the string "7" for one id and cancel the wrong call.
func watchRequests(pending *pendingResponses, msg []byte) bool {
	if m, ok := readJSONRPC(msg); ok {
		if m.Method != "" {
			pending.add(stdioSession, idKey(m.ID))
		}
		return true
	}
	if id, ok := cancelledRequest(msg); ok {
		pending.cancel(stdioSession, id)
		return false
	}
	return true
}

// tooLongMessage is the answer to a message over the limit of limit bytes,
// of which start is the beginning: an Invalid Request error for the id
// that start names before its params, else for id null (JSON-RPC's id
// when the request's cannot be read).
func tooLongMessage(start []byte, limit int64) []byte {
	id := json.RawMessage("null")
	dec := json.NewDecoder(bytes.NewReader(start))
	if t, err := dec.Token(); err == nil && t == json.Delim('{') {
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				break
			}
			var v json.RawMessage
			if dec.Decode(&v) != nil {
				break
			}
			if key == "id" {
				id = v
				break
			}
		}
	}
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "error": map[string]any{
		"code": -32600, "message": "the message is over the " + strconv.FormatInt(limit, 10) +
			"-byte limit (PARLEY_MAX_BODY_BYTES) and was dropped; send a smaller one"}})
	return append(b, '\n')
}

// stdioOutput is a stdio session's output: it records the progress
// notifications written in progress, and drops the response to a request
// the client cancelled. mcp-go writes each message, a line of JSON, in one
// Write; mu keeps its writes and the reader's (tooLongMessage) whole.
type stdioOutput struct {
	io.Writer
	mu       *sync.Mutex
	progress *progressLog
	pending  *pendingResponses
}

func (w stdioOutput) Write(p []byte) (int, error) {
	var response string // the id of the request it answers
	if m, ok := readJSONRPC(p); ok && m.Method == "" {
		response = idKey(m.ID)
		if w.pending.cancelled(stdioSession, response) {
			w.pending.remove(stdioSession, response)
			return len(p), nil
		}
	}
	w.mu.Lock()
	n, err := w.Writer.Write(p)
	w.mu.Unlock()
	if response != "" {
		w.pending.remove(stdioSession, response)
	}
	if err == nil {
		w.progress.wrote(p)
	}
	return n, err
}

// principalContext carries the principal that guard put in the request's
// context into the context mcp-go gives tool handlers.
func principalContext(ctx context.Context, r *http.Request) context.Context {
	if p, ok := domain.PrincipalFrom(r.Context()); ok {
		return domain.WithPrincipal(ctx, p)
	}
	return ctx
}

// guard authenticates the bearer key, checks the method and caps the body
// before next sees the request: a missing or wrong key gets 401 with a
// WWW-Authenticate challenge, a method other than method 405 with Allow,
// a body over the limit 413. A key that could not be checked is logged to
// logger, with the request's context.
func guard(auth Authenticator, logger *slog.Logger, maxBodyBytes int64, method string, next http.Handler) http.Handler {
	if maxBodyBytes <= 0 {
		maxBodyBytes = DefaultMaxBodyBytes
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := bearerKey(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
			writeError(w, http.StatusUnauthorized, domain.Unauthenticated.String(),
				"authentication required: send an API key as 'Authorization: Bearer <key>'")
			return
		}
		p, err := auth(r.Context(), key)
		if err != nil {
			kind := domain.KindOf(err)
			if kind == domain.Unauthenticated {
				w.Header().Set("WWW-Authenticate", `Bearer realm="parley", error="invalid_token"`)
				writeError(w, http.StatusUnauthorized, kind.String(), domain.MessageOf(err))
				return
			}
			status := http.StatusInternalServerError
			if kind == domain.Unavailable {
				status = http.StatusServiceUnavailable
			}
			logger.ErrorContext(r.Context(), "mcp authentication failed", "kind", kind.String(), "err", err)
			writeError(w, status, kind.String(), domain.MessageOf(err))
			return
		}
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
				fmt.Sprintf("this endpoint takes only %s; the Allow header says so", method))
			return
		}
		if r.Method == http.MethodPost && r.Body != nil {
			if r.ContentLength > maxBodyBytes {
				writeError(w, http.StatusRequestEntityTooLarge, domain.TooLarge.String(), tooLarge(maxBodyBytes))
				return
			}
			body, err := io.ReadAll(r.Body)
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeError(w, http.StatusRequestEntityTooLarge, domain.TooLarge.String(), tooLarge(maxBodyBytes))
				return
			}
			if err != nil {
				writeError(w, http.StatusBadRequest, domain.Invalid.String(), "the request body could not be read")
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r.WithContext(domain.WithPrincipal(r.Context(), p)))
	})
	return http.MaxBytesHandler(h, maxBodyBytes)
}

func tooLarge(limit int64) string {
	return "the request body is over the " + strconv.FormatInt(limit, 10) + "-byte limit"
}

// bearerKey returns the key of an "Authorization: Bearer <key>" header.
func bearerKey(h string) (string, bool) {
	scheme, key, ok := strings.Cut(h, " ")
	key = strings.TrimSpace(key)
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return "", false
	}
	return key, true
}

// writeError writes REST's error envelope.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": message}})
}

// transportLog is the handler of mcp-go's streamable HTTP transport's
// log. It keeps its warnings and errors (mcp-go logs every refused GET at
// info), but one that the client caused is a debug line, as over REST: a
// write to a client that left, or that stopped reading and was cut, which
// mcp-go logs as an error for each notification still queued, and a
// response to a request Parley never sent.
type transportLog struct{ slog.Handler }

// clientCaused are the messages of mcp-go's errors that the client caused.
var clientCaused = []string{"Failed to write", "Failed to handle sampling response"}

func (h transportLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && (h.Handler.Enabled(ctx, l) || h.Handler.Enabled(ctx, slog.LevelDebug))
}

func (h transportLog) Handle(ctx context.Context, r slog.Record) error {
	for _, prefix := range clientCaused {
		if strings.HasPrefix(r.Message, prefix) {
			r.Level = slog.LevelDebug
			break
		}
	}
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h transportLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return transportLog{h.Handler.WithAttrs(attrs)}
}

func (h transportLog) WithGroup(name string) slog.Handler {
	return transportLog{h.Handler.WithGroup(name)}
}
