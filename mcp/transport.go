package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/parleyhq/parley/domain"
	"github.com/parleyhq/parley/internal/requestid"
	"github.com/parleyhq/parley/internal/slowclient"
	"github.com/parleyhq/parley/internal/wire"
)

// MCP is served over three transports, a file each: streamable HTTP
// (transport_http.go), HTTP+SSE (transport_sse.go) and stdio
// (transport_stdio.go). This file holds what they share: the bearer-key
// guard, the error envelope and the shutdown-proof request context of the
// HTTP two, the JSON-RPC peek, and the writer that cuts a stream its
// client stopped reading. How a call the client cancels is ended, and its
// response left out, is in cancel.go.

// Authenticator returns the principal owning a bearer API key; errors of
// kind Unauthenticated mean the key is unknown or revoked. cmd/parley passes
// svcs.Users.Authenticate.
type Authenticator func(ctx context.Context, bearerKey string) (domain.Principal, error)

// Limits bound what a request over HTTP may hold of the server.
type Limits struct {
	// MaxBodyBytes caps a request's body (0: domain.DefaultMaxBodyBytes); a
	// larger one gets 413.
	MaxBodyBytes int64
	// BodyTimeout bounds the wait for a request's body once its headers
	// came (0: domain.DefaultRequestTimeout); a body not whole by then gets 400.
	BodyTimeout time.Duration
	// Origins are the origins ("https://app.example.com", or "*" for
	// any) whose requests are taken besides loopback ones: a request that
	// carries another Origin header gets 403, as MCP asks of a server to
	// keep DNS-rebinding pages out. Clients outside a browser send none.
	Origins []string
	// SSESessionsPerUser caps the HTTP+SSE sessions one user may hold open
	// at once (0: DefaultSSESessionsPerUser); a GET past it gets 429. A
	// session holds a connection, a file descriptor and some goroutines
	// for as long as its client keeps it, which keep-alives make forever.
	SSESessionsPerUser int
}

// DefaultSSESessionsPerUser is Limits.SSESessionsPerUser's default: an
// agent needs one session, and a user running many agents a few dozen.
const DefaultSSESessionsPerUser = 32

// originAllowed says whether a request with the Origin header origin may
// be served: it has none, it is a loopback one (a local tool such as the
// MCP Inspector), or lim.Origins lists it.
func (lim Limits) originAllowed(origin string) bool {
	return origin == "" || wire.OriginAllowed(lim.Origins, origin)
}

// allowCORS sets the CORS headers of a request from an allowed browser
// origin, and answers its preflight (an OPTIONS request that says which
// method will follow), which carries no key: it reports whether it did.
// The page may send the methods of MCP's transports (one the endpoint
// does not take then gets its 405, which the SDK reads: its
// terminateSession takes one as done, where a failed preflight throws)
// with the headers MCP's clients send, and read the session id, an
// authentication challenge, a 429's wait and the request id. A page on a public site
// calling a server on a private address (a local Parley) is asked about
// by the browser too (Private Network Access).
func allowCORS(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		h.Set("Access-Control-Expose-Headers", "Mcp-Session-Id, WWW-Authenticate, Retry-After, X-Request-Id")
		return false
	}
	h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network")
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-Id, Mcp-Method, Mcp-Name")
	if r.Header.Get("Access-Control-Request-Private-Network") == "true" {
		h.Set("Access-Control-Allow-Private-Network", "true")
	}
	h.Set("Access-Control-Max-Age", "3600")
	w.WriteHeader(http.StatusNoContent)
	return true
}

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

// jsonRPCMessage is what the transport reads of a JSON-RPC message: a
// request has a method and an id, a response an id and no method, a
// notification no id.
type jsonRPCMessage struct {
	// Version is jsonrpc as sent: mcp-go cannot read a message whose
	// version is no string at all.
	Version json.RawMessage `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"-"`      // RawMethod's string, or ""
	Result  *present        `json:"result"` // nil when absent or null
	Error   *present        `json:"error"`  // nil when absent or null

	// RawMethod is the method as sent, which may be no string: mcp-go
	// takes such a message for one that is not JSON.
	RawMethod json.RawMessage `json:"method"`
}

// present notes that a JSON value is there, without keeping it.
type present struct{}

func (*present) UnmarshalJSON([]byte) error { return nil }

// invalidMessage says why msg, a message sent over HTTP, must not reach
// mcp-go, in JSON-RPC's terms, or returns "". mcp-go takes a batch (a
// JSON array) for a parse error, and answers a request whose id is null,
// a boolean, an object or a fraction, which MCP forbids ("Requests MUST
// include a string or integer ID"): a null one with nothing at all, and
// one it cannot read back (1e400) never, leaving its session waiting for
// a response.
//
// m is msg as readJSONRPC read it.
func invalidMessage(msg []byte, m jsonRPCMessage) string {
	if b := bytes.TrimLeft(msg, " \t\r\n"); len(b) > 0 && b[0] == '[' {
		return "JSON-RPC batches are not supported: send each message in a request of its own"
	}
	if len(m.RawMethod) > 0 && m.RawMethod[0] != '"' && string(m.RawMethod) != "null" {
		return "method must be a string, such as \"tools/call\""
	}
	if len(m.Version) > 0 && m.Version[0] != '"' {
		// mcp-go answers it as a message that is not JSON, with no id:
		// nothing would answer the request it is.
		return "jsonrpc must be the string \"2.0\""
	}
	if m.ID == nil {
		return "" // not JSON (mcp-go says so), or a notification
	}
	id := strings.TrimPrefix(string(m.ID), "-")
	switch {
	case strings.HasPrefix(id, `"`):
		return ""
	case id == "" || strings.Trim(id, "0123456789") != "":
		return "id must be a string or an integer"
	case string(m.ID) == "-0" || idKey(m.ID) == "":
		// mcp-go answers -0 as 0, and one past a 64-bit float's range as
		// nothing Parley can match: its session would wait for the
		// response (pendingResponses) until it ended, and hold the
		// shutdown as long.
		return "an integer id must not be -0 and must be within about ±1.8e308; send a string or a smaller integer"
	}
	return ""
}

// writeInvalidMessage answers a message invalidMessage refused: 400, with
// a JSON-RPC error, as mcp-go answers a message it cannot parse.
func writeInvalidMessage(w http.ResponseWriter, why string) {
	writeJSONRPCError(w, mcpgo.INVALID_REQUEST, why)
}

// writeJSONRPCError answers 400 with the JSON-RPC error code and message,
// for no request (id null).
func writeJSONRPCError(w http.ResponseWriter, code int, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": nil,
		"error": map[string]any{"code": code, "message": message}})
}

// readJSONRPC decodes the id and method of msg; ok is false when it is not
// JSON or has no id. A message with a result has no method here, whatever
// it says: mcp-go takes it for a response, and answers nothing.
func readJSONRPC(msg []byte) (m jsonRPCMessage, ok bool) {
	err := json.Unmarshal(msg, &m)
	_ = json.Unmarshal(m.RawMethod, &m.Method) // "" when it is no string
	if err != nil || len(m.ID) == 0 || string(m.ID) == "null" {
		return m, false
	}
	if m.Result != nil {
		m.Method = ""
	}
	return m, true
}

// stallAfter is how long a write to a client may block before
// slowclient.Writer cuts it, for keep-alive interval keepAlive (0: the
// default): twice it, as on REST.
func stallAfter(keepAlive time.Duration) time.Duration {
	if keepAlive <= 0 {
		keepAlive = domain.DefaultKeepAlive
	}
	return slowclient.StallAfter(keepAlive)
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
// a body over the limit 413, a body not whole within lim.BodyTimeout 400;
// first of all, an Origin lim does not allow 403, and one it allows the
// headers of CORS (allowCORS), so that a page there can call.
// A key that could not be checked is logged to logger, with the request's
// context.
func guard(auth Authenticator, logger *slog.Logger, lim Limits, method string, next http.Handler) http.Handler {
	maxBodyBytes := lim.MaxBodyBytes
	if maxBodyBytes <= 0 {
		maxBodyBytes = domain.DefaultMaxBodyBytes
	}
	bodyTimeout := lim.BodyTimeout
	if bodyTimeout <= 0 {
		bodyTimeout = domain.DefaultRequestTimeout
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every answer depends on the Origin (CORS headers, or a 403), so
		// a shared cache keeps it apart per Origin, none included.
		w.Header().Add("Vary", "Origin")
		if origin := r.Header.Get("Origin"); !lim.originAllowed(origin) {
			refuse(w, domain.Forbidden, fmt.Sprintf(
				"requests from the origin %.100q are refused: MCP takes only loopback origins and those PARLEY_ALLOWED_ORIGINS or PARLEY_MCP_ALLOWED_ORIGINS list", origin))
			return
		} else if origin != "" && allowCORS(w, r) {
			return
		}
		key, err := wire.BearerKey(r.Header)
		if err != nil {
			w.Header().Set("WWW-Authenticate", wire.Challenge(r.Header)) // as the REST API answers
			refuse(w, domain.Unauthenticated, domain.MessageOf(err))
			return
		}
		p, err := auth(r.Context(), key)
		if err != nil {
			kind := domain.KindOf(err)
			if kind == domain.Unauthenticated {
				w.Header().Set("WWW-Authenticate", wire.Challenge(r.Header))
			} else {
				logger.Log(r.Context(), domain.LogLevel(err), "mcp authentication failed", "kind", kind.String(), "err", requestid.CappedError(err))
			}
			refuse(w, kind, domain.MessageOf(err))
			return
		}
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed",
				fmt.Sprintf("this endpoint takes only %s; the Allow header says so", method))
			return
		}
		if r.ContentLength > maxBodyBytes { // any method's, as the REST API's
			refuse(w, domain.TooLarge, wire.BodyTooLarge(r.ContentLength, maxBodyBytes))
			return
		}
		if r.Method == http.MethodPost && r.Body != nil {
			if err := wire.Uncompressed(r.Header.Get("Content-Encoding")); err != nil {
				refuse(w, domain.Invalid, domain.MessageOf(err))
				return
			}
			body, err := slowclient.ReadBody(w, r.Body, bodyTimeout)
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				refuse(w, domain.TooLarge, wire.BodyTooLarge(0, maxBodyBytes))
				return
			}
			if errors.Is(err, slowclient.ErrBodyTimeout) {
				refuse(w, domain.Invalid, slowclient.BodyTimeoutMessage(bodyTimeout))
				return
			}
			if err != nil {
				refuse(w, domain.Invalid, "the request body could not be read")
				return
			}
			// What it holds bounds what mcp-go's decoding costs (see
			// wire.Bounded), which comes before any of Parley's checks.
			if err := wire.Bounded(body); err != nil {
				refuse(w, domain.Invalid, domain.MessageOf(err))
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		requestid.SetUser(r.Context(), p.UserID) // for the access line too, which REST writes
		next.ServeHTTP(w, r.WithContext(domain.WithPrincipal(r.Context(), p)))
	})
	return http.MaxBytesHandler(h, maxBodyBytes)
}

// writeError writes REST's error envelope.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // as REST's answers
	_ = enc.Encode(map[string]any{"error": map[string]string{"code": code, "message": message}})
}
