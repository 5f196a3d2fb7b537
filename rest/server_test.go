package rest_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/app"
	"github.com/parleyhq/parley/internal/dbtest"
	"github.com/parleyhq/parley/store"
)

// TestJSONSentBeforeAccessLog checks that a JSON response reaches the
// client before the access log line is written: the log of the completion
// is held until the client has read the whole response, which it could
// not do if the response waited in the server's buffer for the log.
func TestJSONSentBeforeAccessLog(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, st *store.Store) {
		gate := &logGate{Handler: slog.NewTextHandler(io.Discard, nil), route: "/api/v1/chats/:chatId/completions", read: make(chan struct{})}
		h := newHarness(t, st, func(cfg *app.Config) { cfg.Logger = slog.New(gate) })
		w := h.world()

		r := h.call("POST", "/api/v1/chats/"+w.chat+"/completions", h.admin, map[string]any{"messages": []any{userMessage("Hi")}})
		close(gate.read)
		if r.Status != 200 {
			t.Fatalf("completion = %d: %s", r.Status, r.Body)
		}
		if cl := r.Header.Get("Content-Length"); cl != strconv.Itoa(len(r.Body)) {
			t.Errorf("Content-Length = %q, body is %d bytes", cl, len(r.Body))
		}
		// The handler returns after the log line; wait for it.
		for deadline := time.Now().Add(5 * time.Second); gate.logged.Load() == 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if gate.logged.Load() == 0 {
			t.Fatal("the completion's access log line was never written")
		}
		if gate.late.Load() {
			t.Error("the client got the response only after the access log line was written")
		}
	})
}

// logGate holds the access log line of one route until read is closed, for
// at most two seconds, and records whether it had to give up.
type logGate struct {
	slog.Handler
	route  string
	read   chan struct{}
	late   atomic.Bool
	logged atomic.Int32
}

func (g *logGate) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "request" && g.isRoute(r) {
		select {
		case <-g.read:
		case <-time.After(2 * time.Second):
			g.late.Store(true)
		}
		g.logged.Add(1)
	}
	return g.Handler.Handle(ctx, r)
}

func (g *logGate) isRoute(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == "path" && a.Value.String() == g.route
		return !found
	})
	return found
}
