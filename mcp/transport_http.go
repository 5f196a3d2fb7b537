package mcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/slowclient"
)

// StreamableHTTPHandler serves srv over MCP's streamable HTTP transport, for
// mounting at /mcp. Every request must carry 'Authorization: Bearer <key>':
// without a valid key it gets 401 before any MCP processing. Bodies over
// lim.MaxBodyBytes get 413, and bodies not whole within lim.BodyTimeout
// 400. It takes only POST; other methods get 405 with
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
//     only its form, as it does for sessions begun on another replica. So
//     no session idle TTL is set: it would have mcp-go remember every id
//     it is sent, made-up ones too, for that long.
//
// And a request the client cancels with notifications/cancelled gets no
// response, which mcp-go would send (liveRequests).
//
// keepAlive is PARLEY_SSE_KEEPALIVE (0 means 15s): a response quiet that
// long gets an SSE comment (keptAlive; not initialize's, answered at once
// with the session id in a header), and a write to a response that the
// client has not taken after twice it is cut (slowclient.Writer). mcp-go's
// plain-text refusals are put in the error envelope (plainErrors).
//
// logger (nil: slog.Default()) takes the transport's own lines: a key that
// could not be checked (the database is down), logged with the request's
// context so that requestid.LogHandler names its request id,
// and mcp-go's transport warnings.
func StreamableHTTPHandler(srv *server.MCPServer, auth Authenticator, lim Limits, keepAlive time.Duration, logger *slog.Logger) http.Handler {
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
		// guard bounds the body (lim.MaxBodyBytes) and has read it: mcp-go's
		// own bound would refuse, in its words, what Parley's takes.
		server.WithMaxRequestBodyBytes(0),
		server.WithStreamableHTTPLogger(slog.New(transportLog{logger.Handler()})),
	)
	var live liveRequests
	stall := stallAfter(keepAlive)
	if keepAlive <= 0 {
		keepAlive = domain.DefaultKeepAlive
	}
	return guard(auth, logger, lim, http.MethodPost, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sid := r.Header.Get(server.HeaderKeySessionID); sid != "" {
			r = r.WithContext(withClientSession(r.Context(), sid))
		}
		if !acceptsEventStream(r.Header.Get("Accept")) {
			r = r.WithContext(withJSONOnly(r.Context()))
		}
		bindSession(r)
		session := r.Header.Get(server.HeaderKeySessionID)
		body, _ := io.ReadAll(r.Body) // guard buffered it
		r.Body = io.NopCloser(bytes.NewReader(body))
		msg, ok := readJSONRPC(body)
		if why := invalidMessage(body, msg); why != "" {
			writeInvalidMessage(w, why)
			return
		}
		if v := r.Header.Get(server.HeaderKeyProtocolVersion); v != "" && !mcpgo.IsValidProtocolVersion(v) && json.Valid(body) {
			// mcp-go answers an unknown version in plain text, or, for
			// what sorts after its latest ("DRAFT-…", "bogus" too), takes
			// it for a version to come and asks for its _meta. initialize,
			// which agrees on a version in its body, goes without it (a
			// client falling back to initialize with a draft's header);
			// anything else is told the versions there are, by MCP's
			// unsupported-version error, so that it can choose one. What
			// is wrong with the message itself is said first: a body that
			// is no JSON gets mcp-go's parse error, and one MCP forbids
			// invalidMessage's.
			if msg.Method != "initialize" {
				writeUnsupportedVersion(w, msg.ID, v)
				return
			}
			r.Header.Del(server.HeaderKeyProtocolVersion)
		}
		if ok && msg.Error != nil && len(msg.RawMethod) == 0 {
			// A client's error response, to a request Parley never sends
			// (it asks clients nothing): taken, as MCP says, where mcp-go
			// looked for a pending request and answered the session unknown.
			w.WriteHeader(http.StatusAccepted)
			return
		}
		cw := slowclient.NewWriter(w, stall)
		defer cw.End()
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
		case string(mcpgo.MethodNotificationCancelled):
			// Parley ends the call itself (liveRequests), which also
			// keeps mcp-go's response to it from the client (see
			// cancel.go), and mcp-go does not see the notification.
			// Without a session id there is nothing to cancel: such
			// callers (protocol 2026-07-28) cancel by closing the request.
			// One mcp-go would refuse (msg matched the method's name in
			// any case) goes to mcp-go, which does.
			if id, ok := cancelledRequest(body); ok && isJSON(r) {
				if session != "" {
					live.cancel(session, id)
				}
				w.WriteHeader(http.StatusAccepted)
				return
			}
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
		if ok && msg.Method != "" && session != "" {
			live.serve(h, w, r, session, idKey(msg.ID))
			return
		}
		serveUntilShutdown(h, w, r)
	}))
}

// writeUnsupportedVersion answers 400 with MCP's unsupported protocol
// version error (-32022) for the request id (none: null), naming the
// versions mcp-go speaks, so that a client can choose one.
func writeUnsupportedVersion(w http.ResponseWriter, id json.RawMessage, version string) {
	e := mcpgo.UnsupportedProtocolVersionError{Version: version, Supported: mcpgo.ValidProtocolVersions}.JSONRPCError()
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": e.JSONRPC, "id": id, "error": e.Error})
}

// isJSON says whether r's body is JSON by its Content-Type, as mcp-go
// requires of every message.
func isJSON(r *http.Request) bool {
	media, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return media == "application/json"
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

// serve serves r, the request with id of session, so that cancel can end
// it. A cancelled request gets no response (see cancel.go): mcp-go writes
// none once the request's context is done, and the client that keeps the
// request open gets an event stream that ends without one (a request is
// answered with JSON or a stream, and a stream may end early), or, when
// it takes only JSON, 204 and no body.
func (l *liveRequests) serve(h http.Handler, w http.ResponseWriter, r *http.Request, session, id string) {
	ctx, end := context.WithCancelCause(r.Context())
	defer end(nil)
	key, req := session+"\x00"+id, &liveRequest{end: end}
	l.mu.Lock()
	if l.reqs == nil {
		l.reqs = map[string]*liveRequest{}
	}
	if l.reqs[key] == nil {
		// Not another request with the id, which mcp-go refuses (an id
		// in use): a cancel names the first.
		l.reqs[key] = req
	}
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
		if jsonOnly(r.Context()) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
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
