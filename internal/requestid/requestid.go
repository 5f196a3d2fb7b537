// Package requestid carries a request's id in its context and puts it on
// every log line written in the request's course, with the id of the user
// who sent it once the request's key was checked. The REST API takes the
// id from X-Request-Id or makes one; an MCP tool call that arrives with
// none (stdio) is given one. Both adapters share it, as they share the
// log.
package requestid

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

type key struct{}

// request is what a request's context carries: its id, and its user once
// known. The user is set on the context With made, after it was made (a
// key is checked further in), and read by every line logged through it.
type request struct {
	id   string
	user atomic.Pointer[string]

	mu    sync.Mutex
	attrs []slog.Attr // Annotate's
}

// New returns a fresh id: "req_" and 24 hex digits.
func New() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "req_" + hex.EncodeToString(b)
}

// With returns ctx carrying id, and room for the request's user.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, key{}, &request{id: id})
}

// From returns the id ctx carries, or "".
func From(ctx context.Context) string {
	if r, ok := ctx.Value(key{}).(*request); ok {
		return r.id
	}
	return ""
}

// SetUser names the user who sent the request that ctx, or a context it
// was derived from, carries the id of (With): the lines logged in its
// course from then on name the user, the access line written once it
// ends too, though it is written with the context the key was checked
// under. Without an id in ctx it does nothing.
func SetUser(ctx context.Context, userID string) {
	if r, ok := ctx.Value(key{}).(*request); ok {
		r.user.Store(&userID)
	}
}

// Annotate adds attrs to the lines logged in the course of the request
// whose id ctx carries (With), from then on, as SetUser adds its user: the
// access line written once it ends among them, so that a failed
// completion's lines name its project, provider and outcome. An attr whose
// key was added before replaces it (a retried call's upstream id). Without
// an id in ctx it does nothing.
func Annotate(ctx context.Context, attrs ...slog.Attr) {
	r, ok := ctx.Value(key{}).(*request)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range attrs {
		if i := slices.IndexFunc(r.attrs, func(b slog.Attr) bool { return b.Key == a.Key }); i >= 0 {
			r.attrs[i] = a
		} else {
			r.attrs = append(r.attrs, a)
		}
	}
}

// Forget takes the attr named name out of what Annotate added.
func Forget(ctx context.Context, name string) {
	if r, ok := ctx.Value(key{}).(*request); ok {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.attrs = slices.DeleteFunc(r.attrs, func(a slog.Attr) bool { return a.Key == name })
	}
}

// Sane says whether id, a caller's, may be used as is: 1 to 128 printable
// ASCII characters, nothing a log line or a header would mangle.
func Sane(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if r < 0x21 || r > 0x7e {
			return false
		}
	}
	return true
}

// LogHandler returns h adding request_id, first on the line, to every
// record logged with a context that carries one, user_id after it once
// SetUser named the user, and what Annotate added. h already so wrapped is returned as it is.
func LogHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(handler); ok {
		return h
	}
	return handler{h}
}

type handler struct{ slog.Handler }

func (h handler) Handle(ctx context.Context, r slog.Record) error {
	if req, ok := ctx.Value(key{}).(*request); ok {
		// The attributes are gathered first and added at once: each
		// AddAttrs past a record's first five grows its slice again.
		var buf [16]slog.Attr
		attrs := append(buf[:0], slog.String("request_id", req.id))
		if user := req.user.Load(); user != nil {
			attrs = append(attrs, slog.String("user_id", *user))
		}
		req.mu.Lock()
		attrs = append(attrs, req.attrs...)
		req.mu.Unlock()
		r.Attrs(func(a slog.Attr) bool {
			attrs = append(attrs, a)
			return true
		})
		nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
		nr.AddAttrs(attrs...)
		r = nr
	}
	return h.Handler.Handle(ctx, r)
}

func (h handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return handler{h.Handler.WithAttrs(attrs)}
}

func (h handler) WithGroup(name string) slog.Handler { return handler{h.Handler.WithGroup(name)} }

// Millis is d as the log lines give a duration: milliseconds, to the
// microsecond (duration_ms, completion_ms, ttft_ms).
func Millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// Capped returns s, or its first max bytes (whole characters) and how long
// it was: for log lines that copy what a client sent, which must not let
// a request write megabytes of log.
func Capped(s string, max int) string {
	if len(s) <= max {
		return s
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// MaxLoggedError is the most of an error's text a log line of a refused
// request keeps: an error may quote what the client sent (an unknown
// field, an id) at any length.
const MaxLoggedError = 1024

// CappedError is err's text, cut at MaxLoggedError bytes.
func CappedError(err error) string { return Capped(err.Error(), MaxLoggedError) }
