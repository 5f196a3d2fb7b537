package mcp

import (
	"context"
	"errors"
	"log/slog"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/parleyhq/parley/domain"
)

const (
	// settlePause is how long a streamed completion waits after its last
	// progress notification before returning the result. mcp-go writes
	// notifications from another goroutine (over HTTP sometimes on the
	// session's GET stream), so without it a client may read the result
	// first and drop the last deltas.
	settlePause = 50 * time.Millisecond
	// blockedWait bounds how long one notification waits for room in a
	// session's full notification queue before it is dropped.
	blockedWait = 5 * time.Second
)

// progressEmitter sends each delta of a streamed completion to the caller
// as a notifications/progress: progress counts the deltas (1, 2, ...) and
// message is the delta's text.
type progressEmitter struct {
	ctx     context.Context
	srv     *server.MCPServer
	token   mcpgo.ProgressToken
	log     *slog.Logger
	metrics Observer // may be nil
	started bool     // counted as an open stream
	n       int
}

// newProgressEmitter returns nil when the call carries no progress token:
// the completion then does not stream.
func newProgressEmitter(ctx context.Context, req mcpgo.CallToolRequest, d deps) *progressEmitter {
	if req.Params.Meta == nil || req.Params.Meta.ProgressToken == nil {
		return nil
	}
	srv := server.ServerFromContext(ctx)
	if srv == nil {
		return nil
	}
	return &progressEmitter{ctx: ctx, srv: srv, token: req.Params.Meta.ProgressToken, log: d.log, metrics: d.metrics}
}

// emitter returns e as a domain.Emitter, or a nil interface when e is nil.
func (e *progressEmitter) emitter() domain.Emitter {
	if e == nil {
		return nil
	}
	return e
}

// Start implements domain.Emitter: the stream is open from here on, as a
// REST stream is once its headers go out. The ids come with the result.
func (e *progressEmitter) Start(domain.CompletionMeta) error {
	if e.metrics != nil {
		e.metrics.StreamOpened()
		e.started = true
	}
	return nil
}

// Delta implements domain.Emitter: the text of each delta becomes a
// notification; tool call pieces do not (the result holds the calls). A
// notification that cannot be delivered is logged, never an error: the
// result still holds the whole reply.
func (e *progressEmitter) Delta(d domain.Delta) error {
	text := d.Content
	if text == "" {
		return nil
	}
	e.n++
	params := map[string]any{"progressToken": e.token, "progress": e.n, "message": text}
	deadline := time.Now().Add(blockedWait)
	for {
		err := e.srv.SendNotificationToClient(e.ctx, string(mcpgo.MethodNotificationProgress), params)
		if err == nil {
			return nil
		}
		if !errors.Is(err, server.ErrNotificationChannelBlocked) || time.Now().After(deadline) {
			e.log.DebugContext(e.ctx, "progress notification dropped", "progress", e.n, "err", err)
			return nil
		}
		// The session's queue is full: wait for the writer to catch up
		// rather than drop a delta.
		select {
		case <-e.ctx.Done():
			return nil
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// end closes the stream once the completion has returned: it is no longer
// counted as open, and end waits until the session's queue of
// notifications is written out and then settlePause more, so that every
// delta reaches the client before the result does.
func (e *progressEmitter) end(ctx context.Context) {
	if e == nil {
		return
	}
	if e.started {
		e.metrics.StreamClosed()
		e.started = false
	}
	if e.n == 0 {
		return
	}
	if s := server.ClientSessionFromContext(ctx); s != nil {
		ch := s.NotificationChannel()
		for deadline := time.Now().Add(time.Second); len(ch) > 0 && time.Now().Before(deadline); {
			time.Sleep(2 * time.Millisecond)
		}
	}
	t := time.NewTimer(settlePause)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
